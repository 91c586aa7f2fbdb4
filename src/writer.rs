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
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

mod commit;
mod handoff;
mod records;
mod rollover;

use handoff::{Handoff, Staged};
pub(crate) use records::Records;

use crate::engine::Engine;
use crate::entry::LastSeq;
use crate::housekeeping::{Checkpoint, Chore, PendingChores};
use crate::idempotency::IdIndex;
use crate::sync::{Condvar, Mutex, MutexGuard, RwLock};

use crate::error::{Error, Result};
use crate::format::{self, IndexEntry, MARKER_BYTES, SEGMENT_HEADER_BYTES};
use crate::io::{Backend, BackendKind, CheckedBackend, MappedWrites, PoisonCause};
use crate::open::ActiveEnd;
use crate::options::{Durability, Options};
use crate::segment::{self, now_ms, Segment, Spare};
use crate::trim::Cuts;
use crate::watermark::Watermarks;

/// Durable bytes between checkpoints of the active segment.
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// Longest the writer waits for the last flush's producers to append again.
const GATHER_MAX: Duration = Duration::from_micros(100);

/// With mapped writes, how far ahead of the copies the pages are faulted in (one step
/// at a time, as the copies cross into a step).
const MAPPED_POPULATE_BYTES: u64 = 1 << 20;

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
    /// Where its bytes end in the segment. With mapped writes `buf` stays empty: the
    /// bytes are in the segment's mapping already.
    end_position: u64,
}

/// Why the last segment preparation failed (kept to hand to appenders).
#[derive(Clone)]
pub(crate) struct PrepareFailure {
    pub(crate) path: PathBuf,
    pub(crate) kind: std::io::ErrorKind,
    pub(crate) message: String,
}

impl PrepareFailure {
    pub(crate) fn to_error(&self) -> Error {
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
    pub(crate) position: u64,
    /// Position of the last index entry made in `segment`.
    last_entry_position: Option<u64>,
    next_offset: u64,
    last_timestamp_ms: u64,
    /// The last caller sequence staged or found on disk (`append_seq`): the next must be
    /// above it. Checked and moved under this lock, so two producers never pass the
    /// check with the same one. Read from disk when first needed (`entry.rs`).
    pub(crate) last_seq: LastSeq,
    /// The ids the log holds (`idempotency.rs`): checked and recorded under this lock.
    pub(crate) ids: IdIndex,
    pub(crate) spare: Option<Spare>,
    pub(crate) spare_failure: Option<PrepareFailure>,
    /// A spare exists or its preparation was asked for.
    pub(crate) spare_requested: bool,
    /// Bytes the next spare must hold at least (a batch waits for it).
    pub(crate) spare_min_bytes: u64,
    /// Who commits next: a producer or the engine's writer (see `handoff.rs`).
    handoff: Handoff,
    pub(crate) closed: bool,
    stop_writer: bool,
    /// A trim or truncation is moving the log to a new segment: producers wait.
    pub(crate) frozen: bool,
    /// A cut (or, with mapped writes, the committer's rollover) took the spare to
    /// activate it: no other may be prepared until staging moved to it (it would get the
    /// same id, and replace it).
    pub(crate) spare_taken_by_cut: bool,
    /// With mapped writes (docs/design.md 3.4): `segment` mapped for writing, once the
    /// committer has made it ready (activated, its write bound over all of it).
    map: Option<segment::WritableMap>,
    /// With mapped writes: a producer waits for the committer to make staging's
    /// segment writable (map it), or to move staging to the spare (`roll_wanted`).
    mapping_requested: bool,
    /// With mapped writes: the next record does not fit; the committer must flush this
    /// segment, activate the spare and map it before anyone copies into it.
    roll_wanted: bool,
    /// With mapped writes: the end of the bytes a producer waits to copy, past the
    /// segment's write bound (the committer extends the bound beyond it).
    bound_wanted: u64,
}

impl Staging {
    /// What is staged, for the hand-off.
    fn staged(&self) -> Staged {
        // A producer waiting for the mapping waits for the committer: no lazy delay.
        let bytes = if self.mapping_requested {
            self.staged_bytes.max(handoff::LAZY_WRITE_BYTES)
        } else {
            self.staged_bytes
        };
        Staged {
            pending: !self.chunks.is_empty() || self.mapping_requested,
            bytes,
            closing: self.stop_writer,
        }
    }

    /// The offset the next staged record gets.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Where the next record goes: segment, position and offset.
    pub(crate) fn cursor(&self) -> (Arc<Segment>, u64, u64) {
        (self.segment.clone(), self.position, self.next_offset)
    }

    /// After a cut: new records go to the start of `segment`, from `offset`. Nothing is
    /// staged (staging is frozen and was committed).
    pub(crate) fn restart_at(&mut self, segment: Arc<Segment>, offset: u64) {
        debug_assert!(self.chunks.is_empty(), "a cut with records staged");
        if offset < self.next_offset {
            // A truncation: the records from `offset` on are gone, and with them their
            // ids and caller sequences (`entry.rs`, `idempotency.rs`).
            self.last_seq = LastSeq::Unknown;
            self.ids.forget_from(offset);
        }
        self.segment = segment;
        // Mapped again, once the committer has made the new segment ready.
        self.map = None;
        self.roll_wanted = false;
        self.position = SEGMENT_HEADER_BYTES;
        self.last_entry_position = None;
        self.next_offset = offset;
        self.spare_min_bytes = 0;
        self.spare_requested = false;
        self.spare_taken_by_cut = false;
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
    /// After a cut: the segment (already replaced) is new, and its first record is
    /// `offset`.
    pub(crate) fn reset_to(&mut self, offset: u64) {
        self.written_position = SEGMENT_HEADER_BYTES;
        self.durable_position = SEGMENT_HEADER_BYTES;
        self.checkpoint_position = SEGMENT_HEADER_BYTES;
        self.background_flush_position = SEGMENT_HEADER_BYTES;
        self.bound_requested = 0;
        self.written_offset = offset;
        self.durable_offset = offset;
    }

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
    /// Trims and truncations, for iterators (see `trim.rs`).
    pub(crate) cuts: Cuts,
    /// Held through a trim, truncation or retention pass: one at a time.
    pub(crate) cutting: Mutex<()>,
    /// Removed segments' files waiting to become new ones (`recycle.rs`).
    pub(crate) free_files: crate::recycle::FreeFiles,
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
    /// With mapped writes, who hears of each copy (the simulated disk; see
    /// [`crate::io::MappedWrites`]).
    mapped_sink: Option<Arc<dyn MappedWrites>>,
    /// With mapped writes: the committer's durable position in the active segment, for
    /// the commit markers producers write (a lower value only claims less).
    mapped_durable_position: AtomicU64,
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
    /// Where the active segment's data ends, and what of it is known durable.
    pub(crate) active: ActiveEnd,
    pub(crate) spare: Option<Spare>,
    /// See [`Chore::RemoveLeftovers`].
    pub(crate) leftovers: Vec<PathBuf>,
    /// Removed segments' files found at open, to reuse (`recycle.rs`).
    pub(crate) free_files: Vec<PathBuf>,
    pub(crate) backend: Box<dyn Backend>,
    /// The backend to report, when not `backend`'s own (a store's topics write through
    /// companions of the store's backend).
    pub(crate) backend_kind: Option<BackendKind>,
    pub(crate) backend_fallback: Option<String>,
    pub(crate) read_only: bool,
    /// The first offset readers may read (a trim may have recorded one past the first
    /// segment's base).
    pub(crate) first_offset: u64,
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
        // `Shared::stage`), until they reach full size: a small log never reserves a
        // big second file.
        let prepare = start.spare.is_none()
            && !start.read_only
            && (opts.spare_at_activation(active.header.segment_bytes)
                || start.active.end.position * 2 >= active.header.segment_bytes);
        let mut first_chores = Vec::new();
        if prepare {
            first_chores.push(Chore::PrepareSpare);
        }
        let mut leftovers = start.leftovers;
        let mut free_files = Vec::new();
        if !start.read_only {
            // Reused when recycling is on (at most the most a log keeps), else deleted.
            let keep = if opts.recycle_segments {
                crate::recycle::MAX_FREE_FILES
            } else {
                0
            };
            let mut found = start.free_files;
            leftovers.extend(found.split_off(keep.min(found.len())));
            free_files = found;
        }
        if !leftovers.is_empty() {
            first_chores.push(Chore::RemoveLeftovers(leftovers));
        }
        if !start.read_only && opts.retention.is_active() {
            first_chores.push(Chore::Retention);
        }
        if !start.read_only && active.write_bound() <= start.active.end.position {
            let step = segment::write_bound_step(active.header.segment_bytes);
            first_chores.push(Chore::Checkpoint(Checkpoint {
                segment: active.clone(),
                data_end: start.active.durable.position,
                next_offset: start.active.durable.offset,
                reserve_bound: start.active.end.position + step,
            }));
        }
        // The first record appended after open gets an index entry of its own, so reads of
        // new records never walk through older data (damage there must not hide them).
        let last_entry_position = None;
        let first_offset = start.first_offset;
        debug_assert!(first_offset >= start.segments[0].base_offset());
        let backend_kind = start.backend_kind.unwrap_or_else(|| start.backend.kind());
        let mapped_sink = start.backend.mapped_writes();
        let marks = Arc::new(Watermarks::new(
            start.active.end.offset,
            start.active.durable.offset,
            opts.readers_see_written(),
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
                    position: start.active.end.position,
                    last_entry_position,
                    next_offset: start.active.end.offset,
                    last_timestamp_ms: 0,
                    last_seq: LastSeq::Unknown,
                    ids: IdIndex::new(start.active.end.offset),
                    spare: start.spare,
                    spare_failure: None,
                    spare_requested: prepare,
                    spare_min_bytes: 0,
                    handoff: Handoff::new(),
                    closed: false,
                    stop_writer: false,
                    frozen: false,
                    spare_taken_by_cut: false,
                    map: None,
                    mapping_requested: false,
                    roll_wanted: false,
                    bound_wanted: 0,
                }),
                room_cv: Condvar::new(),
                commit: Mutex::new(Committer {
                    backend: Box::new(backend),
                    segment: active,
                    written_position: start.active.end.position,
                    durable_position: start.active.durable.position,
                    written_offset: start.active.end.offset,
                    durable_offset: start.active.durable.offset,
                    last_sync: Instant::now(),
                    checkpoint_position: start.active.durable.position,
                    bound_requested: 0,
                    background_flush_position: start.active.durable.position,
                }),
                flusher: Mutex::new(flusher as Box<dyn Backend>),
                marks,
                segments: RwLock::new(start.segments),
                first_offset: AtomicU64::new(first_offset),
                cuts: Cuts::default(),
                cutting: Mutex::new(()),
                free_files: crate::recycle::FreeFiles::new(free_files),
                poison_cause: Mutex::new(None),
                chores: Mutex::new(PendingChores::default()),
                housekeeping: Mutex::new(()),
                counters: Counters::default(),
                opts,
                engine,
                self_ref: self_ref.clone(),
                writer_queued: AtomicBool::new(false),
                chores_queued: AtomicBool::new(false),
                mapped_sink,
                mapped_durable_position: AtomicU64::new(start.active.durable.position),
            }
        });
        for chore in first_chores {
            shared.request_chore(chore);
        }
        if !shared.read_only {
            // Timestamps never decrease across a reopen: start from the last record's.
            let last = shared.tail_timestamp_ms(start.active.end.offset);
            shared.staging.lock().last_timestamp_ms = last;
        }
        shared
    }

    // -----------------------------------------------------------------------------------
    // Producers
    // -----------------------------------------------------------------------------------

    /// Encodes `payloads` as consecutive records into staging. Returns their offsets and
    /// whether the writer thread was parked at that moment.
    pub(crate) fn stage(&self, payloads: &[&[u8]]) -> Result<(Range<u64>, bool)> {
        self.stage_at(payloads, None)
    }

    /// Like [`Shared::stage`], with the records' timestamp given (else the wall clock's);
    /// either way raised to the last record's, so timestamps never decrease.
    pub(crate) fn stage_at(
        &self,
        payloads: &[&[u8]],
        timestamp_ms: Option<u64>,
    ) -> Result<(Range<u64>, bool)> {
        self.stage_records(Records::Plain(payloads), timestamp_ms)
    }

    /// Like [`Shared::stage_at`], for plain records or an entry. An entry's caller
    /// sequence must be above the log's last one ([`Error::SequenceViolation`], nothing
    /// staged); it is checked and becomes the last one under the staging lock. An entry
    /// staged "once" whose id the log holds is not staged: the result is the empty range
    /// at the offset of the record that has it.
    pub(crate) fn stage_records(
        &self,
        records: Records<'_>,
        timestamp_ms: Option<u64>,
    ) -> Result<(Range<u64>, bool)> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let max = self.opts.max_record_bytes_effective();
        let mut frames_bytes = 0u64;
        for i in 0..records.count() {
            let len = records.body_bytes(i);
            if len > max {
                return Err(Error::RecordTooLarge {
                    record_bytes: len,
                    max_record_bytes: max,
                });
            }
            frames_bytes += records.frame_bytes(i);
        }
        let room = self.opts.segment_bytes_effective() - SEGMENT_HEADER_BYTES - MARKER_BYTES;
        if frames_bytes > room {
            return Err(Error::RecordTooLarge {
                record_bytes: frames_bytes,
                max_record_bytes: room,
            });
        }
        let mapped = self.opts.writes_mapped();
        let mut st = self.staging.lock();
        if records.count() == 0 {
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
            if st.frozen {
                self.room_cv.wait(&mut st);
                continue;
            }
            if records.seq().is_some() && st.last_seq == LastSeq::Unknown {
                // The first sequence since open: the last one on disk is read outside
                // the lock (no sequence is staged until it is known).
                drop(st);
                self.load_last_seq()?;
                st = self.staging.lock();
                continue;
            }
            if records.extended()
                && st.segment.header.format_version < format::EXTENDED_FRAMES_VERSION
            {
                // A segment of an older format version (a log written by an older build)
                // holds only plain frames: extended ones start in the next segment.
                self.roll_staging(&mut st, SEGMENT_HEADER_BYTES + MARKER_BYTES + frames_bytes)?;
                continue;
            }
            if mapped && (st.roll_wanted || !st.map.as_ref().is_some_and(|m| m.maps(&st.segment))) {
                // Only the committer activates and maps a segment (docs/design.md 3.4).
                st.mapping_requested = true;
                self.wait_for_mapping(&mut st);
                continue;
            }
            // (Mapped chunks hold no buffer: nothing to bound.)
            if !mapped
                && st.staged_bytes > 0
                && st.staged_bytes + frames_bytes > self.opts.max_batch_bytes
            {
                if st.handoff.room_needed() {
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
                if mapped && st.position + needed > st.segment.writable_bound() {
                    // No byte is written at or past the durable write bound (4.3): the
                    // committer extends it (the housekeeper usually has, ahead of need).
                    st.bound_wanted = st.position + needed;
                    st.mapping_requested = true;
                    self.wait_for_mapping(&mut st);
                    continue;
                }
                break;
            }
            self.roll_staging(&mut st, SEGMENT_HEADER_BYTES + MARKER_BYTES + frames_bytes)?;
        }
        // After the wait above (which lets go of the lock): checked and moved under the
        // same lock as the staging, so no two producers pass it with one sequence or, for
        // `append_once`, one id.
        let id_hash = records.id().map(|id| st.ids.hash(id));
        let first_offset = self.first_offset.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(original) = id_hash
            .filter(|_| records.once())
            .and_then(|h| st.ids.find(h, first_offset))
        {
            return Ok((original..original, false));
        }
        if let Some(provided) = records.seq() {
            st.last_seq.advance(provided)?;
        }
        let opens_chunk = !st
            .chunks
            .last()
            .is_some_and(|c| Arc::ptr_eq(&c.segment, &st.segment));
        if opens_chunk {
            let buf = if mapped {
                Vec::new()
            } else {
                let mut buf = st.free.pop().unwrap_or_default();
                buf.clear();
                buf.resize(MARKER_BYTES as usize, 0);
                buf
            };
            let chunk = Chunk {
                segment: st.segment.clone(),
                start_position: st.position,
                buf,
                first_offset: st.next_offset,
                end_offset: st.next_offset,
                end_position: st.position + MARKER_BYTES,
            };
            st.chunks.push(chunk);
            if mapped {
                // The marker goes in now, not when the committer takes the chunk: a
                // zero word here would end the data before the records that follow,
                // and a process crash would lose them (docs/design.md 3.4).
                let durable_position = self
                    .mapped_durable_position
                    .load(std::sync::atomic::Ordering::SeqCst)
                    .min(st.position);
                let position = st.position;
                self.copy_mapped(&mut st, position, MARKER_BYTES, |out, seed| {
                    format::encode_marker(out, seed, now_ms(), durable_position)
                })?;
            }
            st.position += MARKER_BYTES;
            st.staged_bytes += MARKER_BYTES;
        }
        let timestamp_ms = timestamp_ms
            .unwrap_or_else(now_ms)
            .max(st.last_timestamp_ms);
        st.last_timestamp_ms = timestamp_ms;
        let first = st.next_offset;
        let interval = self.opts.index_interval_bytes;
        for i in 0..records.count() {
            let frame_bytes = records.frame_bytes(i);
            let continues = i + 1 < records.count();
            let stamp = (st.next_offset, timestamp_ms);
            if mapped {
                let position = st.position;
                self.copy_mapped(&mut st, position, frame_bytes, |out, seed| {
                    records.encode(i, out, seed, stamp, continues)
                })?;
            } else {
                let seed = st.segment.seed;
                let chunk = st.chunks.last_mut().expect("a chunk is open");
                let at = chunk.buf.len();
                chunk.buf.resize(at + frame_bytes as usize, 0);
                records.encode(i, &mut chunk.buf[at..], seed, stamp, continues);
            }
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
        let st = &mut *st;
        let chunk = st.chunks.last_mut().expect("a chunk is open");
        chunk.end_position = st.position;
        chunk.end_offset = st.next_offset;
        if let Some(hash) = id_hash {
            st.ids.staged(hash, first, first_offset);
        }
        st.staged_bytes += frames_bytes;
        if st.spare.is_none()
            && !st.spare_requested
            && st.position * 2 >= st.segment.header.segment_bytes
        {
            st.spare_requested = true;
            self.request_chore(Chore::PrepareSpare);
        }
        debug_assert!(
            mapped || chunk.start_position + chunk.buf.len() as u64 == st.position,
            "chunk and staging position disagree"
        );
        if mapped {
            // Complete in the page cache, and every record before them too (copied
            // under this lock, in order): readers of unflushed records may have them.
            self.marks.advance_written(st.next_offset);
            let step = MAPPED_POPULATE_BYTES;
            if st.position / step != (st.position - frames_bytes) / step || opens_chunk {
                // Crossed into a new step: fault the next one in ahead of the copies.
                let ahead = (st.position / step + 1) * step;
                if let Some(map) = &st.map {
                    map.populate(ahead, step);
                }
            }
        }
        Ok((first..st.next_offset, st.handoff.parked()))
    }

    /// With mapped writes: has `encode` fill the `len` bytes at `position` of staging's
    /// segment through its writable mapping (the seed is the segment's), and tells the
    /// simulated disk, if there is one. Under the staging lock, so copies happen in
    /// staging order.
    fn copy_mapped(
        &self,
        st: &mut Staging,
        position: u64,
        len: u64,
        encode: impl FnOnce(&mut [u8], u32),
    ) -> Result<()> {
        let seed = st.segment.seed;
        let slot = st
            .map
            .as_mut()
            .and_then(|map| map.slot(position, len))
            .ok_or_else(|| {
                Error::corruption(
                    &st.segment.path,
                    position,
                    "a mapped write past the segment's mapping (a bug: please report it)",
                )
            })?;
        let old = self.mapped_sink.as_ref().map(|_| slot.to_vec());
        encode(slot, seed);
        if let (Some(sink), Some(old)) = (&self.mapped_sink, old) {
            let file = st.segment.file()?;
            sink.copied(&file, position, &old, slot);
        }
        Ok(())
    }

    /// The offset the next record gets, and the timestamp of the last one staged (0 if
    /// none since open, and the log was empty).
    pub(crate) fn staged_end(&self) -> (u64, u64) {
        let st = self.staging.lock();
        (st.next_offset, st.last_timestamp_ms)
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
            // Someone holds the commit lock. Not every holder looks at staging again when
            // it lets go (`segments()` does not), so hand the work to the writer, which
            // takes the lock in turn.
            self.wake_writer_if_work();
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
        let staged = st.staged();
        if st
            .handoff
            .wake_writer(staged, self.opts.durability == Durability::Sync)
        {
            self.schedule_writer();
        }
    }

    /// Puts this log on the engine writer's ready list.
    /// A mapped producer waits for the committer to map or activate a segment, or to
    /// extend the write bound (`mapping_requested` is set). The writer is scheduled
    /// whether or not the hand-off says it is parked, and the wait is bounded: crash_sim's
    /// mapped mode once hung here with the writer idle and the request unseen (after the
    /// first write bound of a segment became a promise the housekeeper keeps); a lost
    /// wake-up now costs at most the bound, not the log.
    fn wait_for_mapping(&self, st: &mut MutexGuard<'_, Staging>) {
        let _ = st.handoff.room_needed();
        self.schedule_writer();
        let _ = self
            .room_cv
            .wait_for(st, std::time::Duration::from_millis(20));
    }

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
        {
            let mut first = self.poison_cause.lock();
            if first.is_none() {
                crate::telemetry::poisoned(&self.dir, &cause);
            }
            first.get_or_insert(cause);
        }
        self.marks.poison();
        self.room_cv.notify_all();
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
        self.marks.close(false);
        self.leave_engine();
    }

    /// Stops new appends, commits and flushes what is staged, and persists the index
    /// files the housekeeper had not written yet; after it the engine runs nothing more
    /// for this log. Returns what the clean-shutdown checkpoint must say (the active
    /// segment, its data end and next offset): the caller writes it, and no older
    /// checkpoint can be written after it.
    pub(crate) fn shutdown(&self) -> Result<Option<(Arc<Segment>, u64, u64)>> {
        if self.read_only {
            self.staging.lock().closed = true;
            self.marks.close(false);
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
        // Wakes producers, and ends blocked followers (after what was just committed).
        self.marks.close(false);
        self.leave_engine();
        result
    }

    /// After close: every segment's descriptors (its own and the background flusher's)
    /// and the spare's. Mappings stay, for the reads that go on after close.
    pub(crate) fn release_files(&self) {
        for segment in self.segments.read().iter() {
            segment.release_file();
            segment.close_flush_handle();
        }
        let mut st = self.staging.lock();
        st.spare.take();
        st.map.take();
    }

    /// Drops this log from its engine's queues once it is shut down.
    fn leave_engine(&self) {
        if let Some(engine) = &self.engine {
            engine.forget(self);
        }
    }
}
