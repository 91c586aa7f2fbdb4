//! Segment management on the write path: moving staging to the next segment, activating
//! it (sealing the one before), the write bound that keeps recovery's search short, and
//! asking the housekeeper for checkpoints and background flushes. (Preparing the next
//! segment is a chore: `housekeeping.rs`.)

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::CHECKPOINT_BYTES;
use super::{Committer, Shared, Staging};
use crate::error::{Error, Result};
use crate::format::{self, SEGMENT_HEADER_BYTES};
use crate::housekeeping::{Checkpoint, Chore};
use crate::options::Durability;
use crate::segment::{self, Segment};
use crate::sync::MutexGuard;

impl Shared {
    /// Moves staging to the spare segment, or waits for one to be prepared that holds at
    /// least `needed_bytes`.
    pub(super) fn roll_staging(
        &self,
        st: &mut MutexGuard<'_, Staging>,
        needed_bytes: u64,
    ) -> Result<()> {
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
        if self.opts.writes_mapped() && st.spare.is_some() {
            // Producers copy into a segment only once it is activated, after its
            // predecessor is durable (4.1): the committer does both, then maps it.
            st.roll_wanted = true;
            st.mapping_requested = true;
            if st.handoff.room_needed() {
                self.schedule_writer();
            }
            self.room_cv.wait(st);
            return Ok(());
        }
        match st.spare.take() {
            Some(spare) => {
                let header = format::SegmentHeader {
                    base_offset: st.next_offset,
                    grows: self.opts.grows_segments(),
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
                if self
                    .opts
                    .spare_at_activation(st.segment.header.segment_bytes)
                {
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

    /// With mapped writes (docs/design.md 3.4), when a producer waits for it: moves
    /// staging to the spare (writing what is staged in the old segment, flushing it and
    /// activating the spare first, as [`Shared::roll`] does), or maps staging's segment
    /// (after open, or a cut), or extends its write bound past what the producer wants
    /// to copy. The bound is durable before any producer copies below it. A failure
    /// poisons the log (the waiting producers then get the error).
    pub(super) fn prepare_mapping(&self, c: &mut Committer) -> Result<()> {
        let (next, leftover, bound_wanted) = {
            let mut st = self.staging.lock();
            if !st.mapping_requested {
                return Ok(());
            }
            let bound_wanted = std::mem::take(&mut st.bound_wanted);
            if !st.roll_wanted {
                (None, Vec::new(), bound_wanted)
            } else if let Some(spare) = st.spare.take() {
                let header = format::SegmentHeader {
                    base_offset: st.next_offset,
                    ..spare.header
                };
                let len = header.segment_bytes;
                let next = match Segment::new(spare.path, spare.file, header, len) {
                    Ok(next) => next,
                    Err(e) => {
                        drop(st);
                        let error = self.poison(e);
                        self.room_cv.notify_all();
                        return Err(error);
                    }
                };
                // Until staging moves to it, staging's segment is still the old one: no
                // spare may be prepared meanwhile (it would get this one's id and be
                // renamed over it), as when a cut takes the spare.
                st.spare_taken_by_cut = true;
                // Everything staged in the old segment is written before it is sealed.
                st.staged_bytes = 0;
                (Some(next), std::mem::take(&mut st.chunks), 0)
            } else {
                // A cut took the spare meanwhile: the producer looks again.
                st.roll_wanted = false;
                st.mapping_requested = false;
                drop(st);
                self.room_cv.notify_all();
                return Ok(());
            }
        };
        let result = self.make_mappable(c, next, leftover, bound_wanted);
        let result = result.map_err(|e| {
            if self.marks.is_poisoned() {
                e
            } else {
                self.poison(e)
            }
        });
        self.room_cv.notify_all();
        result
    }

    fn make_mappable(
        &self,
        c: &mut Committer,
        next: Option<Arc<Segment>>,
        leftover: Vec<super::Chunk>,
        bound_wanted: u64,
    ) -> Result<()> {
        if let Some(next) = &next {
            self.write_chunk_list(c, leftover)?;
            next.bytes()?;
            next.index.write().loaded = true;
            // Before any write to it (see `Segment::open_flush_handle`).
            let _ = next.open_flush_handle();
            self.roll(c, next)?;
        }
        let segment = c.segment.clone();
        if next.is_none() && !Arc::ptr_eq(&self.staging.lock().segment, &segment) {
            return Err(Error::corruption(
                &segment.path,
                0,
                "staging and committer disagree on the active segment (a bug: please report it)",
            ));
        }
        // A step past what is wanted (or past the data, for a segment mapped now), as
        // the housekeeper extends it: recovery's search stays that short.
        let step = segment::write_bound_step(segment.header.segment_bytes);
        let from = if next.is_some() {
            SEGMENT_HEADER_BYTES
        } else {
            bound_wanted.max(self.staging.lock().position)
        };
        let wanted = (from + step).min(segment.header.segment_bytes);
        if segment.write_bound() < wanted {
            if let Err(e) = segment.persist_index(
                &self.dir,
                c.durable_position,
                c.durable_offset,
                false,
                wanted,
            ) {
                // Recovery then searches the whole segment, as with no index file.
                segment.drop_write_bound(&self.dir).map_err(|_| e)?;
            }
        }
        if next.is_none() {
            let mut st = self.staging.lock();
            if st.map.as_ref().is_some_and(|map| map.maps(&segment)) {
                // Only the bound was wanted.
                st.mapping_requested = false;
                return Ok(());
            }
        }
        let map = segment::WritableMap::new(&segment)?;
        self.mapped_durable_position
            .store(c.durable_position, Relaxed);
        let mut st = self.staging.lock();
        if next.is_some() {
            st.spare_taken_by_cut = false;
            st.segment = segment;
            st.position = SEGMENT_HEADER_BYTES;
            st.last_entry_position = None;
            st.spare_min_bytes = 0;
            st.spare_requested = false;
            if self
                .opts
                .spare_at_activation(st.segment.header.segment_bytes)
            {
                st.spare_requested = true;
                self.request_chore(Chore::PrepareSpare);
            }
        }
        st.map = Some(map);
        st.roll_wanted = false;
        st.mapping_requested = false;
        Ok(())
    }

    /// Every [`CHECKPOINT_BYTES`] of durable data, has the housekeeper checkpoint the
    /// active segment, so recovery after a crash scans at most that much.
    pub(super) fn maybe_checkpoint(&self, c: &mut Committer) {
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
    pub(super) fn maybe_flush_in_background(&self, c: &mut Committer) {
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
    pub(super) fn ensure_write_bound(&self, c: &mut Committer, end: u64) -> Result<()> {
        let segment = c.segment.clone();
        let step = segment::write_bound_step(segment.header.segment_bytes);
        if segment.write_bound() == 0 && segment.reserve_first_bound(end + step) {
            // The first write to a segment just activated: no index file of it can
            // exist, so the housekeeper writes the first one (with this bound) while
            // the writer goes on (a file created, synced, renamed and its directory
            // synced on the commit path cost every producer 2-9 ms at each rollover).
            c.bound_requested = end + step;
            self.request_chore(Chore::Checkpoint(Checkpoint {
                segment,
                data_end: c.durable_position,
                next_offset: c.durable_offset,
                reserve_bound: end + step,
            }));
            return Ok(());
        }
        let bound = segment.writable_bound();
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
    pub(super) fn roll(&self, c: &mut Committer, next: &Arc<Segment>) -> Result<()> {
        let _span = crate::telemetry::rollover_span(&self.dir, next.id());
        if c.has_unflushed() {
            self.flush(c)?;
        }
        let header = next.header.encode();
        let next_file = next.file()?;
        if let Err(e) = c.backend.write_all_at(&next_file, 0, &header) {
            return Err(Error::io("write segment header", &next.path, e));
        }
        if let Err(e) = c.backend.sync_data(&next_file) {
            return Err(Error::io("fdatasync", &next.path, e));
        }
        self.counters.fsyncs.fetch_add(1, Relaxed);
        let sealed = std::mem::replace(&mut c.segment, next.clone());
        *sealed.end_offset.write() = Some(next.base_offset());
        // Nothing writes to it again: its descriptor goes (readers map it by name).
        sealed.release_file();
        self.segments.write().push(next.clone());
        let data_end = c.written_position;
        self.request_chore(Chore::Seal {
            segment: sealed,
            data_end,
            next_offset: next.base_offset(),
        });
        if self.opts.retention.is_active() {
            self.request_chore(Chore::Retention);
        }
        c.written_position = SEGMENT_HEADER_BYTES;
        c.durable_position = SEGMENT_HEADER_BYTES;
        c.checkpoint_position = SEGMENT_HEADER_BYTES;
        c.bound_requested = 0;
        c.background_flush_position = SEGMENT_HEADER_BYTES;
        // The new segment has no write bound yet: the first write reserves one, with
        // an index file the housekeeper writes only now that the activation header is
        // durable (an index file beside a segment that is not activated means damage).
        Ok(())
    }
}
