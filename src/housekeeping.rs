//! A log's chores, run by its engine's housekeeper thread off the appenders' path:
//! preparing the next segment, persisting index files (checkpoints of the active
//! segment, write bounds, sealed segments' indexes), background flushes of unsynced
//! logs, and removing what an interrupted preparation left.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Error;
use crate::segment::{self, Segment, ZeroChunk};
use crate::writer::{PrepareFailure, Shared};

/// One chore, as asked for.
pub(crate) enum Chore {
    /// Prepare the next segment (the spare).
    PrepareSpare,
    /// Write the active segment's index file.
    Checkpoint(Checkpoint),
    /// Persist a sealed segment's index.
    Seal {
        segment: Arc<Segment>,
        /// End of its data.
        data_end: u64,
        /// The offset after its last record.
        next_offset: u64,
    },
    /// Without `Durability::Sync`: flush the active segment in the background, then
    /// checkpoint it.
    BackgroundFlush {
        segment: Arc<Segment>,
        /// What the flush covers: the written end, and the offset there.
        written_position: u64,
        written_offset: u64,
    },
    /// Remove files of interrupted segment preparations found at open.
    RemoveLeftovers(Vec<PathBuf>),
    /// A retention pass (after a rollover, and at open), if the options set limits.
    Retention,
}

/// An index file for an active segment.
pub(crate) struct Checkpoint {
    pub(crate) segment: Arc<Segment>,
    /// Every byte below it is durable.
    pub(crate) data_end: u64,
    /// The offset of the first record at or after `data_end`.
    pub(crate) next_offset: u64,
    /// A write bound to reserve (0: keep the segment's).
    pub(crate) reserve_bound: u64,
}

/// A log's chores waiting for the housekeeper, merged as they are asked for.
#[derive(Default)]
pub(crate) struct PendingChores {
    prepare: bool,
    /// One per segment (a newer one replaces a waiting one, keeping the larger bound).
    checkpoints: Vec<Checkpoint>,
    seals: Vec<(Arc<Segment>, u64, u64)>,
    background_flush: Option<(Arc<Segment>, u64, u64)>,
    leftovers: Vec<PathBuf>,
    retention: bool,
    /// The log is shut down: nothing more is run for it.
    stopped: bool,
}

impl PendingChores {
    /// Adds `chore`; false if the log is shut down (it is dropped).
    pub(crate) fn add(&mut self, chore: Chore) -> bool {
        if self.stopped {
            return false;
        }
        match chore {
            Chore::PrepareSpare => self.prepare = true,
            Chore::Checkpoint(next) => match self
                .checkpoints
                .iter_mut()
                .find(|waiting| Arc::ptr_eq(&waiting.segment, &next.segment))
            {
                Some(waiting) => {
                    let reserve_bound = waiting.reserve_bound.max(next.reserve_bound);
                    *waiting = Checkpoint {
                        reserve_bound,
                        ..next
                    };
                }
                None => self.checkpoints.push(next),
            },
            Chore::Seal {
                segment,
                data_end,
                next_offset,
            } => self.seals.push((segment, data_end, next_offset)),
            Chore::BackgroundFlush {
                segment,
                written_position,
                written_offset,
            } => self.background_flush = Some((segment, written_position, written_offset)),
            Chore::RemoveLeftovers(paths) => self.leftovers.extend(paths),
            Chore::Retention => self.retention = true,
        }
        true
    }

    /// Whether a chore is waiting that keeps the writer going or recovery short (a write
    /// bound, a checkpoint, a background flush).
    pub(crate) fn has_urgent(&self) -> bool {
        !self.checkpoints.is_empty() || self.background_flush.is_some()
    }

    /// Stops taking chores; returns those still waiting (the caller finishes the index
    /// files among them, or drops them).
    pub(crate) fn stop(&mut self) -> PendingChores {
        self.stopped = true;
        std::mem::take(self)
    }
}

impl Shared {
    /// Asks for `chore`, and has the housekeeper run it.
    pub(crate) fn request_chore(&self, chore: Chore) {
        if self.chores.lock().add(chore) {
            if let (Some(engine), Some(me)) = (&self.engine, self.self_ref.upgrade()) {
                engine.schedule_chores(me);
            }
        }
    }

    /// The housekeeper's turn for this log: every chore waiting, the urgent ones first.
    pub(crate) fn run_chores(&self, engine: &Engine) {
        let _running = self.housekeeping.lock();
        let pending = {
            let mut chores = self.chores.lock();
            if chores.stopped {
                return;
            }
            std::mem::take(&mut *chores)
        };
        for path in pending.leftovers {
            // Best effort: the next open finds it again otherwise.
            let _ = std::fs::remove_file(path);
        }
        self.do_urgent_chores(pending.background_flush, pending.checkpoints);
        self.persist_seals(pending.seals);
        // Recycling: what retention removes can be the next spare, so it goes first.
        let retention_first = self.opts.recycle_segments;
        if pending.retention && retention_first {
            self.apply_retention_in_background();
        }
        if pending.prepare {
            self.prepare_spare(engine);
        }
        if pending.retention && !retention_first {
            self.apply_retention_in_background();
        }
    }

    /// Persists sealed segments' indexes.
    fn persist_seals(&self, seals: Vec<(Arc<Segment>, u64, u64)>) {
        for (segment, data_end, next_offset) in seals {
            segment.close_flush_handle();
            // Best effort: a missing index is rebuilt from the data when needed.
            let _ = segment.persist_sealed_index(&self.dir, data_end, next_offset);
        }
    }

    /// The chores that keep the active segment's recovery short and its writer going
    /// (background flush, checkpoints, write bounds), taken from the queue. The caller
    /// holds `housekeeping`.
    pub(crate) fn urgent_chores_locked(&self) {
        let (background_flush, checkpoints) = {
            let mut chores = self.chores.lock();
            if chores.stopped {
                return;
            }
            (
                chores.background_flush.take(),
                std::mem::take(&mut chores.checkpoints),
            )
        };
        self.do_urgent_chores(background_flush, checkpoints);
    }

    /// [`Shared::urgent_chores_locked`] unless another thread runs this log's chores.
    pub(crate) fn urgent_chores(&self) {
        if let Some(_running) = self.housekeeping.try_lock() {
            self.urgent_chores_locked();
        }
    }

    fn do_urgent_chores(
        &self,
        background_flush: Option<(Arc<Segment>, u64, u64)>,
        checkpoints: Vec<Checkpoint>,
    ) {
        if let Some((segment, position, offset)) = background_flush {
            self.flush_in_background(&segment, position, offset);
        }
        for c in checkpoints {
            // Sealed since? Its final index is (or will be) written instead. A failed
            // reservation is retried by the committer when it needs it.
            if c.segment.end_offset.read().is_none() {
                let _ = c.segment.persist_index(
                    &self.dir,
                    c.data_end,
                    c.next_offset,
                    false,
                    c.reserve_bound,
                );
            }
        }
    }

    /// Stops the housekeeper from running anything more for this log, waits out a run
    /// in progress, and persists the index files still waiting (a sealed segment's
    /// index, checkpoints); spare preparation and background flushes are dropped.
    pub(crate) fn finish_chores(&self) {
        let _running = self.housekeeping.lock();
        let pending = self.chores.lock().stop();
        self.do_urgent_chores(None, pending.checkpoints);
        self.persist_seals(pending.seals);
    }

    /// Stops the housekeeper from running anything more for this log and drops what
    /// waits, as a killed process would.
    pub(crate) fn drop_chores(&self) {
        let _running = self.housekeeping.lock();
        drop(self.chores.lock().stop());
    }

    fn prepare_spare(&self, engine: &Engine) {
        let (id, segment_bytes) = {
            let st = self.staging.lock();
            // Only while one is asked for: a request merged while the housekeeper was
            // preparing the previous spare would otherwise prepare the one after it at
            // once (for a growing log, a segment 1.5x the new active one, before that one
            // is half full: 16 MiB of records took 2.3x their size on disk).
            if st.spare.is_some() || st.closed || st.spare_taken_by_cut || !st.spare_requested {
                return;
            }
            let bytes = self
                .opts
                .next_segment_bytes(st.segment.header.segment_bytes, st.spare_min_bytes);
            (st.segment.id() + 1, bytes)
        };
        // A removed segment's file first, if one waits (`recycle.rs`): one header write.
        let recycled = match self.free_files.take() {
            Some(free) if self.opts.recycle_segments => {
                let spare = segment::prepare_recycled(&self.dir, id, &free, segment_bytes).ok();
                if spare.is_some() {
                    self.free_files.count_recycled();
                }
                spare
            }
            Some(free) => {
                let _ = std::fs::remove_file(free);
                None
            }
            None => None,
        };
        // Checkpoints and background flushes asked for meanwhile (of this log and of
        // the others waiting for the housekeeper) do not wait for it.
        let result = match recycled {
            Some(spare) => Ok(spare),
            None => segment::prepare(
                &self.dir,
                id,
                segment_bytes,
                self.opts.preallocate_effective(),
                &mut |zeroed_bytes| loop {
                    self.urgent_chores_locked();
                    engine.urgent_chores(self);
                    if let Some(next) = self.pace_zero_fill(zeroed_bytes, segment_bytes) {
                        break next;
                    }
                },
            ),
        };
        let mut st = self.staging.lock();
        match result {
            Ok(spare) if st.segment.id() + 1 == id && !st.spare_taken_by_cut => {
                st.spare = Some(spare);
                st.spare_failure = None;
            }
            Ok(_) => st.spare_requested = false,
            Err(e) => {
                st.spare_requested = false;
                let (kind, message) = match &e {
                    Error::Io { source, .. } => (source.kind(), source.to_string()),
                    other => (std::io::ErrorKind::Other, other.to_string()),
                };
                st.spare_failure = Some(PrepareFailure {
                    path: segment::segment_path(&self.dir, id),
                    kind,
                    message,
                });
            }
        }
        drop(st);
        self.room_cv.notify_all();
    }

    /// Between the chunks of a spare's zero-fill: paces it, and says how to write its
    /// next chunk. While the spare is more than a quarter of a segment ahead of the
    /// active one: small chunks, each flushed, with a wait of up to `PACE_MAX` before
    /// each (ended early once commits fill the active segment enough), so the
    /// zero-fill's writes spread over the time the active segment takes to fill instead
    /// of queueing in front of the committer's flushes. While it is less ahead: small
    /// flushed chunks, no wait. When it is at most an eighth ahead, or appenders wait
    /// for it, or the log closes: as fast as it goes (1 MiB chunks, one flush at the
    /// end). `None` when an urgent chore of this log (a write bound, a checkpoint) came
    /// meanwhile: the caller runs it, then asks again. Other logs' urgent chores, run
    /// between chunks, wait at most `PACE_MAX` more.
    fn pace_zero_fill(&self, zeroed_bytes: u64, spare_bytes: u64) -> Option<ZeroChunk> {
        const PACE_MAX: std::time::Duration = std::time::Duration::from_millis(10);
        const PACE_SLICE: std::time::Duration = std::time::Duration::from_millis(1);
        const SMALL_CHUNK: ZeroChunk = ZeroChunk::Flushed(256 << 10);
        if zeroed_bytes >= spare_bytes {
            return Some(ZeroChunk::Rushed);
        }
        let deadline = std::time::Instant::now() + PACE_MAX;
        let mut st = self.staging.lock();
        loop {
            let active_bytes = st.segment.header.segment_bytes.max(1);
            // Fractions in 1/1024ths of each segment.
            let active_filled = st.position.saturating_mul(1024) / active_bytes;
            let spare_zeroed = zeroed_bytes.saturating_mul(1024) / spare_bytes.max(1);
            let waited_for = st.spare_min_bytes > 0 || st.closed || st.frozen;
            if waited_for || spare_zeroed <= active_filled + 128 {
                return Some(ZeroChunk::Rushed);
            }
            let now = std::time::Instant::now();
            if spare_zeroed <= active_filled + 256 || now >= deadline {
                return Some(SMALL_CHUNK);
            }
            // Lock order: staging, then chores.
            if self.chores.lock().has_urgent() {
                return None;
            }
            let _ = self
                .room_cv
                .wait_for(&mut st, (deadline - now).min(PACE_SLICE));
        }
    }

    /// The housekeeper's background flush (see `Shared::maybe_flush_in_background`).
    /// A failure poisons the log: the unflushed data may be lost.
    fn flush_in_background(&self, segment: &Arc<Segment>, position: u64, offset: u64) {
        if segment.end_offset.read().is_some() {
            return; // Sealed since: the rollover flushed it.
        }
        // Held through the publish: `abandon` takes it before poisoning, so a flush is
        // either wholly before (and counted) or does nothing.
        let mut flusher = self.flusher.lock();
        // Sealed while we waited (a truncation may have moved the watermarks back since:
        // what this flush covers is not the log's any more).
        if self.marks.is_poisoned() || segment.end_offset.read().is_some() {
            return;
        }
        // No description opened before the writes: the committer's flushes cover them.
        match segment.with_flush_handle(|file| flusher.sync_data(file)) {
            None => return,
            Some(Ok(())) => {}
            // The checked flusher poisoned the log already.
            Some(Err(_)) => return,
        }
        self.counters.fsyncs.fetch_add(1, Relaxed);
        // Not if a failure elsewhere poisoned the log meanwhile: nothing is acknowledged
        // after it, and no checkpoint says it is durable.
        if !self.marks.publish_durable_unless_poisoned(offset) {
            return;
        }
        drop(flusher);
        if segment.end_offset.read().is_none() {
            let _ = segment.persist_index(&self.dir, position, offset, false, 0);
        }
    }
}
