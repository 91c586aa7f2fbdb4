//! Group commit: taking what producers staged, writing it with one call per chunk,
//! flushing once for all of it, and publishing what the flush covered; and the engine
//! writer's turn for a log (alone, pipelined) or for several logs (one cycle).

use crate::telemetry;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handoff::Turn;
use super::{Chunk, Committer, Service, Shared};
use super::{FREE_BUFFERS_MAX, GATHER_MAX};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::{self, MARKER_BYTES};
use crate::options::Durability;
use crate::segment::{now_ms, Segment};
use crate::sync::{self};
use crate::watermark::Watermarks;

impl Shared {
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

    pub(super) fn take_chunks(&self) -> Vec<Chunk> {
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

    pub(super) fn recycle(&self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        let mut st = self.staging.lock();
        for buf in buffers {
            if st.free.len() < FREE_BUFFERS_MAX && buf.capacity() > 0 {
                st.free.push(buf);
            }
        }
    }

    /// Fills in a chunk's commit marker: durable bytes of its segment at this moment.
    pub(super) fn seal_chunk(&self, c: &Committer, chunk: &mut Chunk) {
        debug_assert_eq!(chunk.start_position, c.written_position, "gap in segment");
        format::encode_marker(
            &mut chunk.buf[..MARKER_BYTES as usize],
            chunk.segment.seed,
            now_ms(),
            c.durable_position,
        );
    }

    /// Records that `chunk` is in the file.
    pub(super) fn note_written(
        &self,
        c: &mut Committer,
        chunk_start: u64,
        chunk_bytes: u64,
        end_offset: u64,
    ) {
        self.counters.batches.fetch_add(1, Relaxed);
        self.counters.bytes_written.fetch_add(chunk_bytes, Relaxed);
        telemetry::written(&self.dir, end_offset - c.written_offset, chunk_bytes);
        c.written_position = chunk_start + chunk_bytes;
        debug_assert!(end_offset >= c.written_offset, "offsets went backwards");
        c.written_offset = end_offset;
    }

    /// Writes `chunks` one call each (rolling over where they move to a new segment),
    /// then flushes if asked or due. Does not wake waiters.
    pub(super) fn commit_chunks(
        &self,
        c: &mut Committer,
        chunks: Vec<Chunk>,
        sync: bool,
    ) -> Result<()> {
        self.write_chunks(c, chunks)?;
        if self.flush_due(c, sync) {
            self.flush(c)?;
        }
        Ok(())
    }

    /// Writes `chunks` one call each, rolling over where they move to a new segment;
    /// with mapped writes, then makes staging's segment ready if a producer waits for it.
    pub(super) fn write_chunks(&self, c: &mut Committer, chunks: Vec<Chunk>) -> Result<()> {
        self.write_chunk_list(c, chunks)?;
        if self.opts.writes_mapped() {
            self.prepare_mapping(c)?;
        }
        Ok(())
    }

    /// Writes `chunks` one call each, rolling over where they move to a new segment.
    /// With mapped writes their bytes are in the segment already: they are only noted.
    pub(super) fn write_chunk_list(&self, c: &mut Committer, chunks: Vec<Chunk>) -> Result<()> {
        let mut buffers = Vec::with_capacity(chunks.len());
        let mut mapped_any = false;
        for mut chunk in chunks {
            if self.opts.writes_mapped() {
                // Staging moves to a segment only once the committer has activated it
                // (`prepare_mapping`), or a cut has (and reset the committer to it).
                debug_assert!(
                    Arc::ptr_eq(&chunk.segment, &c.segment),
                    "a mapped chunk outside the committer's segment"
                );
                debug_assert_eq!(chunk.start_position, c.written_position, "gap in segment");
                debug_assert!(chunk.end_position <= c.segment.write_bound());
                // Has the housekeeper extend the bound ahead of the producers.
                self.ensure_write_bound(c, chunk.end_position)?;
                self.note_written(
                    c,
                    chunk.start_position,
                    chunk.end_position - chunk.start_position,
                    chunk.end_offset,
                );
                mapped_any = true;
                continue;
            }
            if !Arc::ptr_eq(&chunk.segment, &c.segment) {
                self.roll(c, &chunk.segment)?;
            }
            self.seal_chunk(c, &mut chunk);
            self.ensure_write_bound(c, chunk.start_position + chunk.buf.len() as u64)?;
            let segment = &chunk.segment;
            let file = segment.file()?;
            if let Err(e) = c
                .backend
                .write_all_at(&file, chunk.start_position, &chunk.buf)
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
        if mapped_any {
            self.marks.announce_written();
        }
        self.recycle(buffers);
        self.maybe_flush_in_background(c);
        Ok(())
    }

    /// Whether what is written must be flushed now: asked for (`sync`), or due under
    /// the durability mode.
    pub(super) fn flush_due(&self, c: &Committer, sync: bool) -> bool {
        let due = match self.opts.durability {
            Durability::Sync => true,
            Durability::Interval(every) => c.last_sync.elapsed() >= every,
            Durability::None => false,
        };
        (sync || due) && c.has_unflushed()
    }

    /// Waits up to `budget` for as many records to be staged as the last flush carried
    /// (spinning a little, then yielding the CPU to the producers it waits for).
    pub(super) fn gather(&self, last_records: u64, budget: Duration) {
        if last_records < 2 {
            return;
        }
        let start = Instant::now();
        let backoff = sync::Backoff::new();
        while start.elapsed() < budget {
            let staged = {
                let st = self.staging.lock();
                st.next_offset - st.chunks.first().map_or(st.next_offset, |c| c.first_offset)
            };
            if staged >= last_records {
                return;
            }
            backoff.snooze();
        }
    }

    /// The writer thread's commit under `Durability::Sync`: each batch is one
    /// write-and-flush submission, and while it runs the producers of the batch before
    /// it are woken (waking dozens of threads costs as much CPU as a flush takes). Loops
    /// while work is staged, a bounded number of times so `sync()` callers get a turn.
    pub(super) fn commit_pipelined(&self, c: &mut Committer, engine: &Engine) -> Result<()> {
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
            let file = segment.file()?;
            c.backend.start_write_sync(&file, start, chunk.buf);
            Watermarks::request_wake(&self.marks);
            let (result, buf) = c.backend.finish_write_sync();
            last_chain = chain_start.elapsed();
            self.recycle([buf]);
            if let Err(e) = result {
                return Err(Error::io("write and fdatasync", &segment.path, e));
            }
            telemetry::flushed(&self.dir, end_offset - c.durable_offset, last_chain);
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
    pub(super) fn flush(&self, c: &mut Committer) -> Result<()> {
        let target_offset = c.written_offset;
        let target_position = c.written_position;
        let _span = telemetry::flush_span(&self.dir);
        let started = Instant::now();
        if let Err(e) = c.backend.sync_data(&*c.segment.file()?) {
            return Err(Error::io("fdatasync", &c.segment.path, e));
        }
        telemetry::flushed(
            &self.dir,
            target_offset - c.durable_offset,
            started.elapsed(),
        );
        self.publish_flush(c, target_offset, target_position)
    }

    /// After a flush of the committer's segment that covered everything written up to
    /// `target_position` (records below `target_offset`) returned success: publishes it,
    /// unless the log was poisoned meanwhile.
    pub(super) fn publish_flush(
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
        self.mapped_durable_position
            .store(c.durable_position, std::sync::atomic::Ordering::SeqCst);
        self.maybe_checkpoint(c);
        Ok(())
    }

    /// Decides, under the staging lock, whether the writer commits now, or parks this
    /// log (until scheduled, or until a small unsynced batch has waited long enough, or
    /// an `Interval` flush comes due).
    pub(super) fn writer_check(&self) -> std::result::Result<(), Service> {
        let mut st = self.staging.lock();
        let staged = st.staged();
        let sync = self.opts.durability == Durability::Sync;
        match st
            .handoff
            .writer_turn(Instant::now(), staged, sync, || self.interval_due_in())
        {
            Turn::Commit => Ok(()),
            Turn::Park(at) => Err(Service::Park(at)),
            Turn::Stop => Err(Service::Stopped),
        }
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
            let mut open_files = Vec::with_capacity(segments.len());
            for segment in &segments {
                match segment.file() {
                    Ok(file) => open_files.push(file),
                    // The active segment keeps its file open: never happens.
                    Err(_) => return outcomes,
                }
            }
            let files: Vec<&std::fs::File> = open_files.iter().map(|f| &**f).collect();
            let started = Instant::now();
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
                        let records = offset - c.durable_offset;
                        telemetry::flushed(&topic.dir, records, started.elapsed());
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
    pub(super) fn interval_due_in(&self) -> Option<Duration> {
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
}
