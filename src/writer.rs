//! The write path: staging, group commit, rollover, and the background threads.
//!
//! Producers encode their frames straight into a shared staging buffer (one `memcpy`
//! and one CRC per record, under the staging lock; no system call, no allocation). The
//! committer takes everything staged at once, fills in each chunk's commit marker,
//! writes each chunk with one backend call and then flushes once: every record staged
//! while the previous flush was running shares the next one.
//!
//! Who commits: the writer thread, whenever work is staged. When it is parked and a
//! `Durability::Sync` producer arrives, that producer commits inline instead (handing
//! work to a parked thread costs more than the flush on small machines); anything
//! staged meanwhile goes back to the writer thread.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::housekeeping::{Checkpoint, Chore, PendingChores};
use crate::sync::{self, Condvar, Mutex, MutexGuard, RwLock};

use crate::error::{Error, Result};
use crate::format::{self, IndexEntry, MARKER_BYTES, SEGMENT_HEADER_BYTES};
use crate::io::{Backend, BackendKind, CheckedBackend, PoisonCause};
use crate::options::{Durability, Options};
use crate::segment::{self, now_ms, Segment, Spare};
use crate::watermark::Watermarks;

/// Durable bytes between checkpoints of the active segment.
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// Without `Durability::Sync`, staged bytes that make a batch worth waking the writer.
const LAZY_WRITE_BYTES: u64 = 64 << 10;

/// Without `Durability::Sync`, longest a smaller batch waits before it is written.
const LAZY_WRITE_DELAY: Duration = Duration::from_millis(1);

/// Longest the writer waits for the last flush's producers to append again.
const GATHER_MAX: Duration = Duration::from_micros(100);

/// Most idle buffers kept for reuse.
const FREE_BUFFERS_MAX: usize = 4;

/// Bytes staged for one segment, to be written with one call at `start_position`.
pub(crate) struct Chunk {
    segment: Arc<Segment>,
    start_position: u64,
    /// Starts with room for the commit marker, then whole frames.
    buf: Vec<u8>,
    /// Offset of its first record.
    first_offset: u64,
    /// Offset after its last record.
    end_offset: u64,
}

/// Why the last segment preparation failed (kept to hand to appenders).
#[derive(Clone)]
pub(crate) struct PrepareFailure {
    pub(crate) path: PathBuf,
    pub(crate) kind: std::io::ErrorKind,
    pub(crate) message: String,
}

impl PrepareFailure {
    fn to_error(&self) -> Error {
        Error::io(
            "prepare next segment",
            &self.path,
            std::io::Error::new(self.kind, self.message.clone()),
        )
    }
}

/// State shared by producers under the staging lock.
pub(crate) struct Staging {
    chunks: Vec<Chunk>,
    free: Vec<Vec<u8>>,
    staged_bytes: u64,
    /// Segment new frames go into, and the next position in it.
    pub(crate) segment: Arc<Segment>,
    position: u64,
    /// Position of the last index entry made in `segment`.
    last_entry_position: Option<u64>,
    next_offset: u64,
    last_timestamp_ms: u64,
    pub(crate) spare: Option<Spare>,
    pub(crate) spare_failure: Option<PrepareFailure>,
    /// A spare exists or its preparation was asked for.
    pub(crate) spare_requested: bool,
    /// Bytes the next spare must hold at least (a batch waits for it).
    pub(crate) spare_min_bytes: u64,
    /// The engine's writer will not look at this log again unless scheduled
    /// ([`Engine::schedule_writer`]) or its timed wait ends.
    writer_idle: bool,
    /// The writer parked this log with a timeout, waiting for a small batch to grow.
    writer_lazy: bool,
    /// When the writer parked this log to let a small batch grow: the next look
    /// commits it whatever its size.
    lazy_since: Option<Instant>,
    pub(crate) closed: bool,
    stop_writer: bool,
}

impl Staging {
    /// The offset the next staged record gets.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Where the next record goes: segment, position and offset.
    pub(crate) fn cursor(&self) -> (Arc<Segment>, u64, u64) {
        (self.segment.clone(), self.position, self.next_offset)
    }

    /// Moves the cursor (read-only logs, after finding new data).
    pub(crate) fn advance_to(&mut self, segment: Arc<Segment>, position: u64, next_offset: u64) {
        self.segment = segment;
        self.position = position;
        self.next_offset = next_offset;
    }
}

/// State owned by whoever holds the commit lock.
pub(crate) struct Committer {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) segment: Arc<Segment>,
    /// End of what has been written to `segment`.
    pub(crate) written_position: u64,
    /// End of what is durable in `segment`.
    pub(crate) durable_position: u64,
    pub(crate) written_offset: u64,
    pub(crate) durable_offset: u64,
    last_sync: Instant,
    /// Durable position of the segment's last checkpoint.
    checkpoint_position: u64,
    /// The write bound last asked of the housekeeper for `segment`.
    bound_requested: u64,
    /// Without `Durability::Sync`: the written position of `segment` the housekeeper was
    /// last asked to flush in the background.
    background_flush_position: u64,
}

impl Committer {
    /// Whether anything written to the segment is not yet flushed: records, or only a
    /// commit marker (recovery can leave one alone past the durable end, and a clean
    /// checkpoint must not claim it durable).
    fn has_unflushed(&self) -> bool {
        self.written_offset > self.durable_offset || self.written_position > self.durable_position
    }
}

/// Counters reported by `stats()`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) fsyncs: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) records_synced: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
}

/// Everything the log's handles and threads share.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    /// Opened with `Log::open_read_only`: no writer, no threads, refreshed by scanning.
    pub(crate) read_only: bool,
    pub(crate) opts: Options,
    pub(crate) backend_kind: BackendKind,
    pub(crate) backend_fallback: Option<String>,
    pub(crate) staging: Mutex<Staging>,
    /// Producers wait here for staging room or a spare segment.
    pub(crate) room_cv: Condvar,
    pub(crate) commit: Mutex<Committer>,
    /// The housekeeper's backend for background flushes (see [`Chore::BackgroundFlush`]).
    pub(crate) flusher: Mutex<Box<dyn Backend>>,
    pub(crate) marks: Arc<Watermarks>,
    /// Activated segments, oldest first: what readers search.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) first_offset: AtomicU64,
    /// What poisoned the log, first.
    poison_cause: Mutex<Option<PoisonCause>>,
    pub(crate) chores: Mutex<PendingChores>,
    /// Held by whoever runs this log's chores.
    pub(crate) housekeeping: Mutex<()>,
    pub(crate) counters: Counters,
    /// The threads that write, flush and wake for this log (`None` when read-only).
    pub(crate) engine: Option<Arc<Engine>>,
    /// This log, for putting it on the engine's queues.
    pub(crate) self_ref: Weak<Shared>,
    /// On the engine writer's ready list.
    pub(crate) writer_queued: AtomicBool,
    /// On the engine housekeeper's list.
    pub(crate) chores_queued: AtomicBool,
}

/// What the engine's writer does with a log after looking at it.
pub(crate) enum Service {
    /// Look again now (it committed; more may be staged).
    Again,
    /// Nothing to do: look again when scheduled, or at this moment.
    Park(Option<Instant>),
    /// Shut down or poisoned: never again.
    Stopped,
}

/// What `Shared::new` needs from recovery.
pub(crate) struct Start {
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) active_end_position: u64,
    pub(crate) next_offset: u64,
    /// What is known durable in the active segment: (position, offset there).
    pub(crate) durable: (u64, u64),
    pub(crate) spare: Option<Spare>,
    /// See [`Chore::RemoveLeftovers`].
    pub(crate) leftovers: Vec<PathBuf>,
    pub(crate) backend: Box<dyn Backend>,
    /// The backend to report, when not `backend`'s own (a store's topics write through
    /// companions of the store's backend).
    pub(crate) backend_kind: Option<BackendKind>,
    pub(crate) backend_fallback: Option<String>,
    pub(crate) read_only: bool,
}

impl Shared {
    /// A log's shared state; a writable one is served by `engine`'s threads.
    pub(crate) fn new(
        dir: PathBuf,
        opts: Options,
        start: Start,
        engine: Option<Arc<Engine>>,
    ) -> Arc<Shared> {
        let active = start
            .segments
            .last()
            .expect("recovery yields an active segment")
            .clone();
        if opts.durability != Durability::Sync && !start.read_only {
            // Before any write to it (see `Segment::open_flush_handle`).
            let _ = active.open_flush_handle();
        }
        // Recovery left no write bound this process made durable itself unless it wrote
        // a synced index file: reserve one now, ahead of the first append.
        // Growing segments get a spare only once the active one is half full (see
        // `Shared::stage`): a small log never reserves a second file.
        let prepare = start.spare.is_none()
            && !start.read_only
            && (!opts.grows_segments()
                || start.active_end_position * 2 >= active.header.segment_bytes);
        let mut first_chores = Vec::new();
        if prepare {
            first_chores.push(Chore::PrepareSpare);
        }
        if !start.leftovers.is_empty() {
            first_chores.push(Chore::RemoveLeftovers(start.leftovers));
        }
        if !start.read_only && active.write_bound() <= start.active_end_position {
            let step = segment::write_bound_step(active.header.segment_bytes);
            first_chores.push(Chore::Checkpoint(Checkpoint {
                segment: active.clone(),
                data_end: start.durable.0,
                next_offset: start.durable.1,
                reserve_bound: start.active_end_position + step,
            }));
        }
        // The first record appended after open gets an index entry of its own, so reads of
        // new records never walk through older data (damage there must not hide them).
        let last_entry_position = None;
        let first_offset = start.segments[0].base_offset();
        let backend_kind = start.backend_kind.unwrap_or_else(|| start.backend.kind());
        let marks = Arc::new(Watermarks::new(
            start.next_offset,
            start.durable.1,
            engine.clone(),
        ));
        let shared = Arc::new_cyclic(|self_ref: &Weak<Shared>| {
            // The log's backends poison it at their first failure and refuse everything
            // after it (`io::checked`).
            let poisoner = self_ref.clone();
            let backend = CheckedBackend::new(
                start.backend,
                Arc::new(move |cause| {
                    if let Some(shared) = poisoner.upgrade() {
                        shared.poison_with_cause(cause);
                    }
                }),
            );
            let flusher = Box::new(backend.background_flusher());
            Shared {
                dir,
                read_only: start.read_only,
                backend_kind,
                backend_fallback: start.backend_fallback,
                staging: Mutex::new(Staging {
                    chunks: Vec::new(),
                    free: Vec::new(),
                    staged_bytes: 0,
                    segment: active.clone(),
                    position: start.active_end_position,
                    last_entry_position,
                    next_offset: start.next_offset,
                    last_timestamp_ms: 0,
                    spare: start.spare,
                    spare_failure: None,
                    spare_requested: prepare,
                    spare_min_bytes: 0,
                    // Parked: the engine looks at it once scheduled.
                    writer_idle: true,
                    writer_lazy: false,
                    lazy_since: None,
                    closed: false,
                    stop_writer: false,
                }),
                room_cv: Condvar::new(),
                commit: Mutex::new(Committer {
                    backend: Box::new(backend),
                    segment: active,
                    written_position: start.active_end_position,
                    durable_position: start.durable.0,
                    written_offset: start.next_offset,
                    durable_offset: start.durable.1,
                    last_sync: Instant::now(),
                    checkpoint_position: start.durable.0,
                    bound_requested: 0,
                    background_flush_position: start.durable.0,
                }),
                flusher: Mutex::new(flusher as Box<dyn Backend>),
                marks,
                segments: RwLock::new(start.segments),
                first_offset: AtomicU64::new(first_offset),
                poison_cause: Mutex::new(None),
                chores: Mutex::new(PendingChores::default()),
                housekeeping: Mutex::new(()),
                counters: Counters::default(),
                opts,
                engine,
                self_ref: self_ref.clone(),
                writer_queued: AtomicBool::new(false),
                chores_queued: AtomicBool::new(false),
            }
        });
        for chore in first_chores {
            shared.request_chore(chore);
        }
        shared
    }

    // -----------------------------------------------------------------------------------
    // Producers
    // -----------------------------------------------------------------------------------

    /// Encodes `payloads` as consecutive records into staging. Returns their offsets and
    /// whether the writer thread was parked at that moment.
    pub(crate) fn stage(&self, payloads: &[&[u8]]) -> Result<(Range<u64>, bool)> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let max = self.opts.max_record_bytes_effective();
        let mut frames_bytes = 0u64;
        for payload in payloads {
            let len = payload.len() as u64;
            if len > max {
                return Err(Error::RecordTooLarge {
                    record_bytes: len,
                    max_record_bytes: max,
                });
            }
            frames_bytes += format::record_bytes(len);
        }
        let room = self.opts.segment_bytes_effective() - SEGMENT_HEADER_BYTES - MARKER_BYTES;
        if frames_bytes > room {
            return Err(Error::RecordTooLarge {
                record_bytes: frames_bytes,
                max_record_bytes: room,
            });
        }
        let mut st = self.staging.lock();
        if payloads.is_empty() {
            if self.marks.is_poisoned() {
                return Err(self.poisoned());
            }
            if st.closed {
                return Err(Error::Closed);
            }
            let next = st.next_offset;
            return Ok((next..next, false));
        }
        loop {
            if self.marks.is_poisoned() {
                return Err(self.poisoned());
            }
            if st.closed {
                return Err(Error::Closed);
            }
            if st.staged_bytes > 0 && st.staged_bytes + frames_bytes > self.opts.max_batch_bytes {
                if st.writer_idle {
                    st.writer_idle = false;
                    self.schedule_writer();
                }
                self.room_cv.wait(&mut st);
                continue;
            }
            let opens_chunk = !st
                .chunks
                .last()
                .is_some_and(|c| Arc::ptr_eq(&c.segment, &st.segment));
            let needed = frames_bytes + if opens_chunk { MARKER_BYTES } else { 0 };
            if st.position + needed <= st.segment.header.segment_bytes {
                break;
            }
            self.roll_staging(&mut st, SEGMENT_HEADER_BYTES + MARKER_BYTES + frames_bytes)?;
        }
        let opens_chunk = !st
            .chunks
            .last()
            .is_some_and(|c| Arc::ptr_eq(&c.segment, &st.segment));
        if opens_chunk {
            let mut buf = st.free.pop().unwrap_or_default();
            buf.clear();
            buf.resize(MARKER_BYTES as usize, 0);
            let chunk = Chunk {
                segment: st.segment.clone(),
                start_position: st.position,
                buf,
                first_offset: st.next_offset,
                end_offset: st.next_offset,
            };
            st.chunks.push(chunk);
            st.position += MARKER_BYTES;
            st.staged_bytes += MARKER_BYTES;
        }
        let timestamp_ms = now_ms().max(st.last_timestamp_ms);
        st.last_timestamp_ms = timestamp_ms;
        let first = st.next_offset;
        let st = &mut *st;
        let chunk = st.chunks.last_mut().expect("a chunk is open");
        let seed = st.segment.seed;
        let interval = self.opts.index_interval_bytes;
        for (i, payload) in payloads.iter().enumerate() {
            let frame_bytes = format::record_bytes(payload.len() as u64);
            let at = chunk.buf.len();
            chunk.buf.resize(at + frame_bytes as usize, 0);
            let continues = i + 1 < payloads.len();
            format::encode_record(
                &mut chunk.buf[at..],
                seed,
                st.next_offset,
                timestamp_ms,
                payload,
                continues,
            );
            if st
                .last_entry_position
                .is_none_or(|p| st.position - p >= interval)
            {
                st.segment.index.write().entries.push(IndexEntry {
                    offset: st.next_offset,
                    position: st.position,
                });
                st.last_entry_position = Some(st.position);
            }
            st.position += frame_bytes;
            st.next_offset += 1;
        }
        chunk.end_offset = st.next_offset;
        st.staged_bytes += frames_bytes;
        if st.spare.is_none()
            && !st.spare_requested
            && st.position * 2 >= st.segment.header.segment_bytes
        {
            st.spare_requested = true;
            self.request_chore(Chore::PrepareSpare);
        }
        debug_assert_eq!(
            chunk.start_position + chunk.buf.len() as u64,
            st.position,
            "chunk and staging position disagree"
        );
        Ok((first..st.next_offset, st.writer_idle))
    }

    /// Moves staging to the spare segment, or waits for one to be prepared that holds at
    /// least `needed_bytes`.
    fn roll_staging(&self, st: &mut MutexGuard<'_, Staging>, needed_bytes: u64) -> Result<()> {
        if st
            .spare
            .as_ref()
            .is_some_and(|spare| spare.header.segment_bytes < needed_bytes)
        {
            // A growing log's spare too small for this batch: replace it by one large
            // enough. It was never activated, so removing it is safe at any moment (a
            // crash before the removal leaves a valid spare, after it none).
            if let Some(small) = st.spare.take() {
                let _ = std::fs::remove_file(&small.path);
            }
        }
        match st.spare.take() {
            Some(spare) => {
                let header = format::SegmentHeader {
                    base_offset: st.next_offset,
                    ..spare.header
                };
                let len = header.segment_bytes;
                let segment = Segment::new(spare.path, spare.file, header, len)?;
                segment.bytes()?;
                segment.index.write().loaded = true;
                if self.opts.durability != Durability::Sync {
                    // Before any write to it (see `Segment::open_flush_handle`); without it,
                    // the segment is only flushed by the committer.
                    let _ = segment.open_flush_handle();
                }
                st.segment = segment;
                st.position = SEGMENT_HEADER_BYTES;
                st.last_entry_position = None;
                st.spare_min_bytes = 0;
                st.spare_requested = false;
                if !self.opts.grows_segments() {
                    st.spare_requested = true;
                    self.request_chore(Chore::PrepareSpare);
                }
                Ok(())
            }
            None => {
                st.spare_min_bytes = st.spare_min_bytes.max(needed_bytes);
                st.spare_requested = true;
                if let Some(failure) = st.spare_failure.take() {
                    self.request_chore(Chore::PrepareSpare);
                    return Err(failure.to_error());
                }
                self.request_chore(Chore::PrepareSpare);
                self.room_cv.wait(st);
                Ok(())
            }
        }
    }

    /// After staging: make sure someone will commit. Producers that must wait for
    /// durability commit inline when the writer is parked.
    pub(crate) fn kick(&self, writer_idle: bool, commit_inline: bool) -> Result<()> {
        if !writer_idle {
            return Ok(());
        }
        if commit_inline {
            if let Some(mut committer) = self.commit.try_lock() {
                let result = self.commit_pending(&mut committer, true);
                drop(committer);
                self.wake_writer_if_work();
                return result;
            }
            // The holder re-checks staging after releasing the lock.
            return Ok(());
        }
        self.wake_writer_if_work();
        Ok(())
    }

    /// Wakes a parked writer if work is staged. Without `Durability::Sync` nobody waits
    /// for a write, so the writer is woken only once a batch is worth a system call (or
    /// finds the work itself within [`LAZY_WRITE_DELAY`]): a wake-up per append would
    /// cost more than the append.
    fn wake_writer_if_work(&self) {
        let mut st = self.staging.lock();
        // A writer parked with nothing to do must hear of the first chunk (it then waits
        // at most LAZY_WRITE_DELAY for more); one already waiting for more is woken only
        // when the batch is worth it.
        let worth_it = self.opts.durability == Durability::Sync
            || !st.writer_lazy
            || st.staged_bytes >= LAZY_WRITE_BYTES
            || st.closed;
        if !st.chunks.is_empty() && st.writer_idle && worth_it {
            st.writer_idle = false;
            self.schedule_writer();
        }
    }

    /// Puts this log on the engine writer's ready list.
    fn schedule_writer(&self) {
        if let (Some(engine), Some(me)) = (&self.engine, self.self_ref.upgrade()) {
            engine.schedule_writer(me);
        }
    }

    /// Blocks until `offset` is durable. Errors if the log was poisoned first.
    pub(crate) fn wait_durable(&self, offset: u64) -> Result<u64> {
        if self.marks.wait_durable(offset) {
            Ok(offset)
        } else {
            Err(self.poisoned())
        }
    }

    pub(crate) fn poisoned(&self) -> Error {
        let cause = self
            .poison_cause
            .lock()
            .as_ref()
            .map_or_else(|| "unknown failure".to_string(), ToString::to_string);
        Error::Poisoned { cause }
    }

    /// What poisoned the log, if anything did.
    pub(crate) fn poison_cause(&self) -> Option<PoisonCause> {
        self.poison_cause.lock().clone()
    }

    // -----------------------------------------------------------------------------------
    // Committing
    // -----------------------------------------------------------------------------------

    /// Writes everything staged, then flushes if `sync` (or the durability mode) asks.
    /// Wakes waiters before returning.
    pub(crate) fn commit_pending(&self, c: &mut Committer, sync: bool) -> Result<()> {
        if self.marks.is_poisoned() {
            return Err(self.poisoned());
        }
        let chunks = self.take_chunks();
        let result = self.commit_chunks(c, chunks, sync);
        self.marks.wake();
        result
    }

    fn take_chunks(&self) -> Vec<Chunk> {
        let chunks = {
            let mut st = self.staging.lock();
            st.staged_bytes = 0;
            std::mem::take(&mut st.chunks)
        };
        if !chunks.is_empty() {
            self.room_cv.notify_all();
        }
        chunks
    }

    fn recycle(&self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        let mut st = self.staging.lock();
        for buf in buffers {
            if st.free.len() < FREE_BUFFERS_MAX && buf.capacity() > 0 {
                st.free.push(buf);
            }
        }
    }

    /// Fills in a chunk's commit marker: durable bytes of its segment at this moment.
    fn seal_chunk(&self, c: &Committer, chunk: &mut Chunk) {
        debug_assert_eq!(chunk.start_position, c.written_position, "gap in segment");
        format::encode_marker(
            &mut chunk.buf[..MARKER_BYTES as usize],
            chunk.segment.seed,
            now_ms(),
            c.durable_position,
        );
    }

    /// Records that `chunk` is in the file.
    fn note_written(&self, c: &mut Committer, chunk_start: u64, chunk_bytes: u64, end_offset: u64) {
        self.counters.batches.fetch_add(1, Relaxed);
        self.counters.bytes_written.fetch_add(chunk_bytes, Relaxed);
        c.written_position = chunk_start + chunk_bytes;
        debug_assert!(end_offset >= c.written_offset, "offsets went backwards");
        c.written_offset = end_offset;
    }

    /// Writes `chunks` one call each (rolling over where they move to a new segment),
    /// then flushes if asked or due. Does not wake waiters.
    fn commit_chunks(&self, c: &mut Committer, chunks: Vec<Chunk>, sync: bool) -> Result<()> {
        self.write_chunks(c, chunks)?;
        if self.flush_due(c, sync) {
            self.flush(c)?;
        }
        Ok(())
    }

    /// Writes `chunks` one call each, rolling over where they move to a new segment.
    fn write_chunks(&self, c: &mut Committer, chunks: Vec<Chunk>) -> Result<()> {
        let mut buffers = Vec::with_capacity(chunks.len());
        for mut chunk in chunks {
            if !Arc::ptr_eq(&chunk.segment, &c.segment) {
                self.roll(c, &chunk.segment)?;
            }
            self.seal_chunk(c, &mut chunk);
            self.ensure_write_bound(c, chunk.start_position + chunk.buf.len() as u64)?;
            let segment = &chunk.segment;
            if let Err(e) = c
                .backend
                .write_all_at(&segment.file, chunk.start_position, &chunk.buf)
            {
                // The checked backend poisoned the log already.
                return Err(Error::io("write", &segment.path, e));
            }
            self.note_written(
                c,
                chunk.start_position,
                chunk.buf.len() as u64,
                chunk.end_offset,
            );
            self.marks.publish_written(c.written_offset, false);
            buffers.push(chunk.buf);
        }
        self.recycle(buffers);
        self.maybe_flush_in_background(c);
        Ok(())
    }

    /// Whether what is written must be flushed now: asked for (`sync`), or due under
    /// the durability mode.
    fn flush_due(&self, c: &Committer, sync: bool) -> bool {
        let due = match self.opts.durability {
            Durability::Sync => true,
            Durability::Interval(every) => c.last_sync.elapsed() >= every,
            Durability::None => false,
        };
        (sync || due) && c.has_unflushed()
    }

    /// Waits up to `budget` for as many records to be staged as the last flush carried
    /// (yielding the CPU to the producers it waits for).
    fn gather(&self, last_records: u64, budget: Duration) {
        if last_records < 2 {
            return;
        }
        let start = Instant::now();
        while start.elapsed() < budget {
            let staged = {
                let st = self.staging.lock();
                st.next_offset - st.chunks.first().map_or(st.next_offset, |c| c.first_offset)
            };
            if staged >= last_records {
                return;
            }
            sync::yield_now();
        }
    }

    /// The writer thread's commit under `Durability::Sync`: each batch is one
    /// write-and-flush submission, and while it runs the producers of the batch before
    /// it are woken (waking dozens of threads costs as much CPU as a flush takes). Loops
    /// while work is staged, a bounded number of times so `sync()` callers get a turn.
    fn commit_pipelined(&self, c: &mut Committer, engine: &Engine) -> Result<()> {
        const ROUNDS_MAX: usize = 64;
        let mut last_records = 0u64;
        let mut last_chain = Duration::ZERO;
        for round in 0..ROUNDS_MAX {
            if round > 0 && engine.others_ready() {
                // Other logs wait for the writer: they share the next cycle with what
                // is staged here.
                break;
            }
            if self.marks.is_poisoned() {
                self.marks.wake();
                return Err(self.poisoned());
            }
            // Wake the last flush's producers now and give them a moment to append
            // again, so they share the next flush instead of splitting into two
            // alternating half-size groups (measured: 2.0 -> 3.1 records per fsync with
            // 4 producers, 8.1 -> 12.3 with 16, 25 -> 59 with 64).
            Watermarks::request_wake(&self.marks);
            self.gather(last_records, (last_chain / 2).min(GATHER_MAX));
            let mut chunks = self.take_chunks();
            let single = chunks.len() == 1 && Arc::ptr_eq(&chunks[0].segment, &c.segment);
            if !single {
                // Nothing staged, or a rollover: the plain path, waking as it ends.
                let result = self.commit_chunks(c, chunks, true);
                self.marks.wake();
                return result;
            }
            let mut chunk = chunks.pop().expect("one chunk");
            self.seal_chunk(c, &mut chunk);
            self.ensure_write_bound(c, chunk.start_position + chunk.buf.len() as u64)?;
            let (start, bytes, end_offset) = (
                chunk.start_position,
                chunk.buf.len() as u64,
                chunk.end_offset,
            );
            let segment = chunk.segment;
            last_records = end_offset - c.written_offset;
            let chain_start = Instant::now();
            c.backend.start_write_sync(&segment.file, start, chunk.buf);
            Watermarks::request_wake(&self.marks);
            let (result, buf) = c.backend.finish_write_sync();
            last_chain = chain_start.elapsed();
            self.recycle([buf]);
            if let Err(e) = result {
                return Err(Error::io("write and fdatasync", &segment.path, e));
            }
            self.note_written(c, start, bytes, end_offset);
            self.counters.fsyncs.fetch_add(1, Relaxed);
            self.marks.publish_written(end_offset, false);
            if !self.marks.publish_durable(end_offset, false) {
                // Another thread's failure meanwhile: acknowledge nothing.
                self.marks.wake();
                return Err(self.poisoned());
            }
            self.counters
                .records_synced
                .fetch_add(end_offset - c.durable_offset, Relaxed);
            c.last_sync = Instant::now();
            c.durable_position = c.written_position;
            c.durable_offset = end_offset;
            self.maybe_checkpoint(c);
        }
        self.marks.wake();
        Ok(())
    }

    /// `fdatasync`s the committer's segment and publishes what it covered.
    fn flush(&self, c: &mut Committer) -> Result<()> {
        let target_offset = c.written_offset;
        let target_position = c.written_position;
        if let Err(e) = c.backend.sync_data(&c.segment.file) {
            return Err(Error::io("fdatasync", &c.segment.path, e));
        }
        self.publish_flush(c, target_offset, target_position)
    }

    /// After a flush of the committer's segment that covered everything written up to
    /// `target_position` (records below `target_offset`) returned success: publishes it,
    /// unless the log was poisoned meanwhile.
    fn publish_flush(
        &self,
        c: &mut Committer,
        target_offset: u64,
        target_position: u64,
    ) -> Result<()> {
        self.counters.fsyncs.fetch_add(1, Relaxed);
        if !self.marks.publish_durable(target_offset, false) {
            // Another thread's write or flush failed meanwhile: acknowledge nothing.
            return Err(self.poisoned());
        }
        self.counters
            .records_synced
            .fetch_add(target_offset - c.durable_offset, Relaxed);
        c.last_sync = Instant::now();
        c.durable_position = target_position;
        c.durable_offset = target_offset;
        self.maybe_checkpoint(c);
        Ok(())
    }

    /// Every [`CHECKPOINT_BYTES`] of durable data, has the housekeeper checkpoint the
    /// active segment, so recovery after a crash scans at most that much.
    fn maybe_checkpoint(&self, c: &mut Committer) {
        if c.durable_position - c.checkpoint_position < CHECKPOINT_BYTES {
            return;
        }
        c.checkpoint_position = c.durable_position;
        self.request_chore(Chore::Checkpoint(Checkpoint {
            segment: c.segment.clone(),
            data_end: c.durable_position,
            next_offset: c.durable_offset,
            reserve_bound: 0,
        }));
    }

    /// Without `Durability::Sync`, has the housekeeper flush the active segment (and then
    /// checkpoint it) every half write-bound step of unflushed data (4 MiB with 64 MiB
    /// segments): off the writer's path, and so a crash leaves recovery only that much
    /// to scan. Nothing waits for these flushes; `durable_offset()` moves with them.
    fn maybe_flush_in_background(&self, c: &mut Committer) {
        if self.opts.durability == Durability::Sync {
            return;
        }
        let every = segment::write_bound_step(c.segment.header.segment_bytes) / 2;
        if c.written_position < c.background_flush_position + every || !c.has_unflushed() {
            return;
        }
        c.background_flush_position = c.written_position;
        self.request_chore(Chore::BackgroundFlush {
            segment: c.segment.clone(),
            written_position: c.written_position,
            written_offset: c.written_offset,
        });
    }

    /// Before the committer writes up to `end` of its segment: the segment's durable
    /// write bound must cover it, since recovery searches no further past the end of
    /// data (docs/design.md 4.3). The housekeeper extends the bound ahead of need; when
    /// it has not, the committer does it here. If the index file cannot be written (a
    /// full disk), the segment's index file goes and its bound with it: recovery then
    /// searches all of it.
    fn ensure_write_bound(&self, c: &mut Committer, end: u64) -> Result<()> {
        let segment = c.segment.clone();
        let bound = segment.write_bound();
        let step = segment::write_bound_step(segment.header.segment_bytes);
        if end <= bound {
            let wanted = end + step;
            if end + step / 2 > bound && wanted > c.bound_requested {
                c.bound_requested = wanted;
                self.request_chore(Chore::Checkpoint(Checkpoint {
                    segment,
                    data_end: c.durable_position,
                    next_offset: c.durable_offset,
                    reserve_bound: wanted,
                }));
            }
            return Ok(());
        }
        let result = segment.persist_index(
            &self.dir,
            c.durable_position,
            c.durable_offset,
            false,
            end + step,
        );
        match result {
            Ok(()) => Ok(()),
            Err(e) => segment
                .drop_write_bound(&self.dir)
                .map_err(|_| self.poison(e)),
        }
    }

    /// Seals the committer's segment and activates `next`: everything in the old segment
    /// is made durable first, then the activation header is written and synced before any
    /// record goes into `next`. So an activated segment implies a complete predecessor,
    /// and a segment with data implies a durable header.
    fn roll(&self, c: &mut Committer, next: &Arc<Segment>) -> Result<()> {
        if c.has_unflushed() {
            self.flush(c)?;
        }
        let header = next.header.encode();
        if let Err(e) = c.backend.write_all_at(&next.file, 0, &header) {
            return Err(Error::io("write segment header", &next.path, e));
        }
        if let Err(e) = c.backend.sync_data(&next.file) {
            return Err(Error::io("fdatasync", &next.path, e));
        }
        self.counters.fsyncs.fetch_add(1, Relaxed);
        let sealed = std::mem::replace(&mut c.segment, next.clone());
        *sealed.end_offset.write() = Some(next.base_offset());
        self.segments.write().push(next.clone());
        let data_end = c.written_position;
        self.request_chore(Chore::Seal {
            segment: sealed,
            data_end,
            next_offset: next.base_offset(),
        });
        c.written_position = SEGMENT_HEADER_BYTES;
        c.durable_position = SEGMENT_HEADER_BYTES;
        c.checkpoint_position = SEGMENT_HEADER_BYTES;
        c.bound_requested = 0;
        c.background_flush_position = SEGMENT_HEADER_BYTES;
        // The new segment has no write bound yet: the first write reserves one, with
        // an index file written only now that the activation header is durable (an
        // index file beside a segment that is not activated means damage).
        Ok(())
    }

    /// Records the first failure, poisons the log, and returns the error to report.
    pub(crate) fn poison(&self, error: Error) -> Error {
        let cause = match &error {
            Error::Io {
                operation,
                path,
                source,
            } => PoisonCause {
                operation,
                path: Some(path.clone()),
                kind: Some(source.kind()),
                message: source.to_string(),
            },
            Error::Closed => PoisonCause {
                operation: "close",
                path: None,
                kind: None,
                message: "the log was stopped".into(),
            },
            other => PoisonCause {
                operation: "stop",
                path: None,
                kind: None,
                message: other.to_string(),
            },
        };
        self.poison_with_cause(cause);
        error
    }

    /// Poisons the log: the first cause is kept, every waiter is woken, and no watermark
    /// moves again.
    pub(crate) fn poison_with_cause(&self, cause: PoisonCause) {
        self.poison_cause.lock().get_or_insert(cause);
        self.marks.poison();
        self.room_cv.notify_all();
    }

    // -----------------------------------------------------------------------------------
    // The engine's writer (see `engine.rs`)
    // -----------------------------------------------------------------------------------

    /// Decides, under the staging lock, whether the writer commits now, or parks this
    /// log (until scheduled, or until a small unsynced batch has waited long enough, or
    /// an `Interval` flush comes due).
    fn writer_check(&self) -> std::result::Result<(), Service> {
        let mut st = self.staging.lock();
        st.writer_idle = false;
        st.writer_lazy = false;
        let waited_for_more = st.lazy_since.take().is_some();
        let lazy = self.opts.durability != Durability::Sync
            && st.staged_bytes < LAZY_WRITE_BYTES
            && !waited_for_more;
        if st.stop_writer && st.chunks.is_empty() {
            return Err(Service::Stopped);
        }
        if (!st.chunks.is_empty() && !lazy) || st.stop_writer {
            return Ok(());
        }
        let mut timeout = self.interval_due_in();
        if timeout == Some(Duration::ZERO) {
            return Ok(());
        }
        let now = Instant::now();
        if !st.chunks.is_empty() {
            // A small batch: let it grow for a moment, then write it anyway.
            timeout = Some(timeout.map_or(LAZY_WRITE_DELAY, |t| t.min(LAZY_WRITE_DELAY)));
            st.lazy_since = Some(now);
        }
        st.writer_idle = true;
        st.writer_lazy = !st.chunks.is_empty();
        Err(Service::Park(timeout.map(|t| now + t)))
    }

    /// The engine writer's turn for this log alone: commits what is staged (pipelined
    /// under `Durability::Sync`), as a writer thread of its own would.
    pub(crate) fn service(&self, engine: &Engine) -> Service {
        if let Err(outcome) = self.writer_check() {
            return outcome;
        }
        if self.marks.is_poisoned() {
            return Service::Stopped;
        }
        let mut committer = self.commit.lock();
        let _ = match self.opts.durability {
            Durability::Sync => self.commit_pipelined(&mut committer, engine),
            _ => self.commit_pending(&mut committer, false),
        };
        Service::Again
    }

    /// The engine writer's turn for several logs at once: every log's staged chunks are
    /// written, then every file that must be flushed is flushed together, then each log
    /// publishes what its flush covered. One failure poisons only the log whose write or
    /// flush failed: the files are separate, so it cannot have lost another log's data.
    pub(crate) fn service_cycle(topics: &[Arc<Shared>], engine: &Engine) -> Vec<Service> {
        let mut outcomes: Vec<Service> = Vec::with_capacity(topics.len());
        let mut committing = Vec::new();
        for (i, topic) in topics.iter().enumerate() {
            outcomes.push(match topic.writer_check() {
                Err(outcome) => outcome,
                Ok(()) if topic.marks.is_poisoned() => Service::Stopped,
                Ok(()) => {
                    // Only the engine's writer ever holds two logs' commit locks (a
                    // producer committing inline, `sync()` and close hold one), so
                    // waiting for one here cannot deadlock.
                    committing.push((i, topic.commit.lock()));
                    Service::Again
                }
            });
        }
        let mut flushes = Vec::new();
        for (i, c) in committing.iter_mut() {
            let topic = &topics[*i];
            let chunks = topic.take_chunks();
            if topic.write_chunks(c, chunks).is_ok() && topic.flush_due(c, false) {
                flushes.push((*i, c.written_offset, c.written_position));
            }
        }
        if !flushes.is_empty() {
            let segments: Vec<Arc<Segment>> = flushes
                .iter()
                .map(|&(i, _, _)| {
                    let c = &committing
                        .iter()
                        .find(|(j, _)| *j == i)
                        .expect("committing")
                        .1;
                    c.segment.clone()
                })
                .collect();
            let files: Vec<&std::fs::File> = segments.iter().map(|s| &s.file).collect();
            // Through the store's ring; a log's own engine has none (and never runs a
            // cycle), so then each file is flushed through its own log's backend.
            let results = engine.sync_many(&files).unwrap_or_else(|| {
                flushes
                    .iter()
                    .zip(&files)
                    .map(|(&(i, _, _), file)| {
                        let c = &mut committing
                            .iter_mut()
                            .find(|(j, _)| *j == i)
                            .expect("committing")
                            .1;
                        c.backend.sync_data(file)
                    })
                    .collect()
            });
            drop(files);
            for (((i, offset, position), result), segment) in
                flushes.into_iter().zip(results).zip(segments)
            {
                let topic = &topics[i];
                let c = &mut committing
                    .iter_mut()
                    .find(|(j, _)| *j == i)
                    .expect("committing")
                    .1;
                match result {
                    Ok(()) => {
                        let _ = topic.publish_flush(c, offset, position);
                    }
                    Err(e) => {
                        topic.poison(Error::io("fdatasync", &segment.path, e));
                    }
                }
            }
        }
        for (i, committer) in committing {
            drop(committer);
            Watermarks::request_wake(&topics[i].marks);
        }
        outcomes
    }

    /// Under `Interval`, how long until unsynced data must be flushed (`None`: nothing
    /// pending, or another mode).
    fn interval_due_in(&self) -> Option<Duration> {
        let Durability::Interval(every) = self.opts.durability else {
            return None;
        };
        if self.marks.written() <= self.marks.durable() {
            return None;
        }
        let Some(c) = self.commit.try_lock() else {
            return Some(every);
        };
        Some(every.saturating_sub(c.last_sync.elapsed()))
    }

    // -----------------------------------------------------------------------------------
    // Shutting down
    // -----------------------------------------------------------------------------------

    /// Stops everything without writing: see `Log::abandon`.
    pub(crate) fn abandon(&self) {
        {
            let mut st = self.staging.lock();
            st.closed = true;
            st.stop_writer = true;
            st.chunks.clear();
        }
        // Waiting producers must not hang; the error says what happened. No background
        // flush is half done when the poison lands (see `flush_in_background`).
        let flusher = self.flusher.lock();
        self.poison(Error::Closed);
        drop(flusher);
        // Wait out a commit in progress, so nothing is written after this returns.
        drop(self.commit.lock());
        self.drop_chores();
        self.marks.wake();
    }

    /// Stops new appends, commits and flushes what is staged, and persists the index
    /// files the housekeeper had not written yet; after it the engine runs nothing more
    /// for this log. Returns what the clean-shutdown checkpoint must say (the active
    /// segment, its data end and next offset): the caller writes it, and no older
    /// checkpoint can be written after it.
    pub(crate) fn shutdown(&self) -> Result<Option<(Arc<Segment>, u64, u64)>> {
        if self.read_only {
            self.staging.lock().closed = true;
            return Ok(None);
        }
        {
            let mut st = self.staging.lock();
            st.closed = true;
            st.stop_writer = true;
        }
        self.room_cv.notify_all();
        let result = {
            let mut c = self.commit.lock();
            self.commit_pending(&mut c, true)
                .map(|()| Some((c.segment.clone(), c.written_position, c.written_offset)))
        };
        self.finish_chores();
        self.marks.wake();
        result
    }
}
