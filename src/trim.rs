//! Cutting a log at either end without rewriting a file (docs/design.md 4.9).
//!
//! - **Trim** (`trim_before`): the log's new first offset goes into the start file
//!   (`log.start`, written whole and renamed into place, then the directory synced)
//!   before anything is deleted; then the segments wholly below it are unlinked, oldest
//!   first. At open, segments wholly below the recorded start are deleted again (a crash
//!   may have left some), so a trimmed record never returns.
//! - **Truncate** (`truncate_from`): everything is flushed, then a new segment is
//!   activated whose base offset is the cut, and whose header names the segments the cut
//!   removed (`dropped_before`). That activation (header written and synced) is the
//!   commit point: records at or past the cut that are still in older segments lie past
//!   where the next segment begins, so no read, recovery or verify ever takes them, and
//!   nothing mapped is changed under a reader. Segments wholly past the cut are unlinked
//!   after it; at open, the header says which to delete if a crash left them.
//! - **Trim past the end** (`trim_before(n)` with `n > next_offset()`): the start file
//!   first, then a new segment at base `n`, then the older segments go.
//!
//! A deleted segment stays mapped while a reader holds one of its records (unlinked,
//! never shrunk: no SIGBUS, no changed bytes); its space returns when the last reference
//! drops. Iterators and followers learn of cuts through [`Cuts`].

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};

use crate::error::{Error, Result};
use crate::format;
use crate::housekeeping::Chore;
use crate::options::Durability;
use crate::segment::{self, Segment, Spare};
use crate::sync::Mutex;
use crate::writer::{Committer, Shared};

/// Name of the start file in a log directory.
pub(crate) const START_FILE: &str = "log.start";
const START_MAGIC: [u8; 8] = *b"RLSTART\x01";
const START_VERSION: u32 = 1;
/// Bytes of the start file.
const START_FILE_BYTES: usize = 32;
const _: () = assert!(START_FILE_BYTES % 8 == 0);

/// The start file's bytes:
///
/// ```text
///  0..8   magic "RLSTART\x01"
///  8..12  version u32 = 1
/// 12..16  reserved, zero
/// 16..24  start u64: the log's first offset; nothing below it is ever read again
/// 24..28  reserved, zero
/// 28..32  CRC32C of bytes 0..28
/// ```
pub(crate) fn encode_start(start: u64) -> [u8; START_FILE_BYTES] {
    let mut out = [0u8; START_FILE_BYTES];
    out[0..8].copy_from_slice(&START_MAGIC);
    out[8..12].copy_from_slice(&START_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&start.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a start file; the reason when it is not a valid one.
pub(crate) fn decode_start(bytes: &[u8]) -> std::result::Result<u64, String> {
    let Some(bytes) = bytes.get(..START_FILE_BYTES) else {
        return Err(format!(
            "{} bytes, a start file has {START_FILE_BYTES}",
            bytes.len()
        ));
    };
    let word = |at: usize| -> [u8; 4] { [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]] };
    if bytes[0..8] != START_MAGIC {
        return Err("bad magic".into());
    }
    let stored = u32::from_le_bytes(word(28));
    let computed = crc32c::crc32c(&bytes[0..28]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let version = u32::from_le_bytes(word(8));
    if version != START_VERSION {
        return Err(format!("unknown version {version}"));
    }
    let mut start = [0u8; 8];
    start.copy_from_slice(&bytes[16..24]);
    Ok(u64::from_le_bytes(start))
}

/// The start a trim recorded in `dir`, if any. A damaged file is corruption: without
/// it, trimmed records of the first segment could be read again.
pub(crate) fn read_start(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(START_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read start file", &path, e)),
    };
    decode_start(&bytes).map(Some).map_err(|why| {
        Error::corruption(
            &path,
            0,
            format!(
                "{why}; it records where the log starts after a trim. Restore it, or \
                 remove it to read the trimmed records that are still on disk"
            ),
        )
    })
}

/// Records `start` durably: written whole to a temporary file, synced, renamed over the
/// start file, and the directory synced. A crash leaves the old file or the new one.
pub(crate) fn write_start(dir: &Path, start: u64) -> Result<()> {
    let path = dir.join(START_FILE);
    let tmp = dir.join(format!("{START_FILE}.tmp"));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode_start(start))?;
        file.sync_data()
    })();
    written.map_err(|e| Error::io("write start file", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename start file", &path, e))?;
    segment::sync_dir(dir)
}

/// Removes a segment's files (best effort for the index: a leftover one is removed at
/// the next open).
pub(crate) fn remove_segment_files(dir: &Path, id: u64) -> Result<()> {
    let path = segment::segment_path(dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove segment", &path, e)),
    }
    let _ = std::fs::remove_file(segment::index_path(dir, id));
    // Its entry summary, if it had one (derived data: a leftover is never read again).
    let _ = std::fs::remove_file(crate::summary::summary_path(dir, id));
    Ok(())
}

/// What iterators and followers need to know of cuts: a generation that moves at each
/// trim and truncation, and where each truncation cut.
#[derive(Default)]
pub(crate) struct Cuts {
    generation: AtomicU64,
    /// `(generation it made, offset it cut at)`, one per truncation (they are rare).
    truncations: Mutex<Vec<(u64, u64)>>,
    /// Segments deleted from the log that a reader may still map.
    retired: Mutex<Vec<Weak<Segment>>>,
}

impl Cuts {
    /// Moves whenever the log is trimmed or truncated.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    /// The lowest offset a truncation after generation `seen` cut at.
    pub(crate) fn truncated_since(&self, seen: u64) -> Option<u64> {
        self.truncations
            .lock()
            .iter()
            .filter(|(generation, _)| *generation > seen)
            .map(|(_, at)| *at)
            .min()
    }

    fn truncated(&self, at: u64) {
        let mut truncations = self.truncations.lock();
        let generation = self.generation.load(SeqCst) + 1;
        truncations.push((generation, at));
        self.generation.store(generation, SeqCst);
    }

    /// A read-only handle saw the writer's truncation at `at`.
    pub(crate) fn truncated_read_only(&self, at: u64) {
        self.truncated(at);
    }

    fn trimmed(&self) {
        self.generation.fetch_add(1, SeqCst);
    }

    fn retire(&self, segment: &Arc<Segment>) {
        let mut retired = self.retired.lock();
        retired.retain(|weak| weak.strong_count() > 0);
        retired.push(Arc::downgrade(segment));
    }

    /// Deleted segments still mapped by a reader: how many, and their bytes.
    pub(crate) fn pending_release(&self) -> (u64, u64) {
        let mut retired = self.retired.lock();
        retired.retain(|weak| weak.strong_count() > 0);
        retired
            .iter()
            .filter_map(Weak::upgrade)
            .fold((0, 0), |(count, bytes), s| {
                (count + 1, bytes + s.header.segment_bytes)
            })
    }
}

/// What a cut-over does besides starting a new segment at `base`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CutKind {
    /// `truncate_from(base)`: records from `base` on are gone.
    Truncate,
    /// `trim_before(base)` past the end: every record is gone; the log continues at `base`.
    Restart,
}

impl Shared {
    /// See [`Log::trim_before`](crate::Log::trim_before).
    pub(crate) fn trim_before(&self, offset: u64) -> Result<u64> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let _cutting = self.cutting.lock();
        self.check_open()?;
        let first = self.first_offset.load(SeqCst);
        if offset <= first {
            return Ok(first);
        }
        let next = self.staged_end().0;
        if offset <= next && offset > self.visible_offset() {
            // Records below the new start must be readable (the log never starts past
            // what readers can see): commit and flush what is staged.
            let mut c = self.commit.lock();
            self.commit_pending(&mut c, true)?;
        }
        if offset > next {
            // Past the end: the start first (a crash after it finishes the restart at
            // open), then a segment at `offset`, then the old ones go.
            write_start(&self.dir, offset)?;
            self.cut_over(offset, CutKind::Restart)?;
        } else {
            write_start(&self.dir, offset)?;
        }
        self.first_offset.store(offset, SeqCst);
        self.cuts.trimmed();
        crate::telemetry::trimmed(&self.dir, offset);
        self.remove_segments_below(offset)?;
        Ok(offset)
    }

    /// Deletes the segments wholly below `start` (never the active one), oldest first:
    /// the caller recorded `start` durably.
    pub(crate) fn remove_segments_below(&self, start: u64) -> Result<()> {
        let doomed: Vec<Arc<Segment>> = {
            let mut segments = self.segments.write();
            let keep_from = segments
                .iter()
                .position(|s| s.end_offset.read().is_none_or(|end| end > start))
                .unwrap_or(segments.len());
            segments.drain(..keep_from).collect()
        };
        for segment in &doomed {
            self.retire_segment(segment);
        }
        for segment in doomed {
            self.dispose_segment(segment)?;
        }
        Ok(())
    }

    /// Deletes the files of a segment removed from the log, or keeps its file to become
    /// a new segment (`Options::recycle_segments`; `recycle.rs` says when it may).
    fn dispose_segment(&self, segment: Arc<Segment>) -> Result<()> {
        let id = segment.id();
        if self.opts.recycle_segments && !self.read_only {
            let segment_bytes = self.opts.segment_bytes_effective();
            // Whether kept or not, the rest goes as for a deleted segment.
            let _kept = self.free_files.keep(&self.dir, segment, segment_bytes);
        }
        remove_segment_files(&self.dir, id)
    }

    fn retire_segment(&self, segment: &Arc<Segment>) {
        segment.retire();
        segment.release_file();
        segment.close_flush_handle();
        self.cuts.retire(segment);
    }

    /// After a trim recorded a new start: iterators look again.
    pub(crate) fn cuts_trimmed(&self) {
        self.cuts.trimmed();
    }

    /// See [`Log::truncate_from`](crate::Log::truncate_from).
    pub(crate) fn truncate_from(&self, offset: u64) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let _cutting = self.cutting.lock();
        self.check_open()?;
        let first = self.first_offset.load(SeqCst);
        if offset < first {
            return Err(self.out_of_range(offset));
        }
        self.cut_over(offset, CutKind::Truncate)
    }

    fn check_open(&self) -> Result<()> {
        if self.marks.is_poisoned() {
            return Err(self.poisoned());
        }
        if self.staging.lock().closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Starts a new active segment at `base`: stops staging, commits and flushes what is
    /// staged, activates a spare with base offset `base` (the commit point), moves the
    /// writer and the readers' view to it, then deletes the segments the cut removed.
    fn cut_over(&self, base: u64, kind: CutKind) -> Result<()> {
        let next = {
            let mut st = self.staging.lock();
            if st.closed {
                return Err(Error::Closed);
            }
            st.frozen = true;
            st.next_offset()
        };
        // Staging is frozen: `next` stays the end, and no producer takes the spare.
        let result = match kind {
            CutKind::Truncate if base > next => Err(self.out_of_range(base)),
            // Nothing past it: the call is a flush.
            CutKind::Truncate if base == next => self.flush_everything(),
            // Appends reached the new start meanwhile: the log continues as it is (the
            // caller trims below it), its records made readable first.
            CutKind::Restart if base <= next => self.flush_everything(),
            _ => self
                .spare_for_cut()
                .and_then(|spare| self.cut_over_frozen(base, kind, spare)),
        };
        let mut st = self.staging.lock();
        st.frozen = false;
        drop(st);
        self.room_cv.notify_all();
        for segment in result? {
            self.dispose_segment(segment)?;
        }
        Ok(())
    }

    /// Commits what is staged and flushes everything written.
    fn flush_everything(&self) -> Result<Vec<Arc<Segment>>> {
        let mut c = self.commit.lock();
        self.commit_pending(&mut c, true)?;
        Ok(Vec::new())
    }

    /// A spare a cut took and did not activate: it is the spare again.
    fn give_back(&self, spare: Spare, error: Error) -> Error {
        let mut st = self.staging.lock();
        st.spare_taken_by_cut = false;
        st.spare = Some(spare);
        error
    }

    /// [`Shared::cut_over`] with staging frozen and `spare` in hand: returns the
    /// segments to delete.
    fn cut_over_frozen(&self, base: u64, kind: CutKind, spare: Spare) -> Result<Vec<Arc<Segment>>> {
        let mut c = self.commit.lock();
        if let Err(e) = self.commit_pending(&mut c, true) {
            return Err(self.give_back(spare, e));
        }
        debug_assert_eq!(spare.header.segment_id, c.segment.id() + 1);
        // A background flush publishes nothing while the watermarks move back.
        let _flusher = self.flusher.lock();
        let segments = self.segments.read().clone();
        let dead: Vec<Arc<Segment>> = segments
            .iter()
            .filter(|s| s.base_offset() >= base)
            .cloned()
            .collect();
        let predecessor = segments
            .iter()
            .rev()
            .find(|s| s.base_offset() < base)
            .cloned();
        // Where the predecessor's kept data ends, if the cut moves its end (its sealed
        // index must say so).
        let predecessor_end = match (&predecessor, kind) {
            (Some(p), CutKind::Truncate) => match self.kept_data_end(p, base, &c) {
                Ok(position) => position,
                Err(e) => return Err(self.give_back(spare, e)),
            },
            _ => None,
        };
        // Every id between the predecessor and the new segment is cut away (some may be
        // gone already, deleted by an earlier truncation); with no predecessor, all.
        let spare_id = spare.header.segment_id;
        let dropped = match &predecessor {
            Some(p) => spare_id - p.id() - 1,
            None => spare_id,
        };
        debug_assert!(dead.len() as u64 <= dropped);
        let header = format::SegmentHeader {
            base_offset: base,
            grows: self.opts.grows_segments(),
            // More than 2^31 segments would have to exist for this to saturate.
            dropped_before: dropped.min(u64::from(format::MAX_DROPPED_BEFORE)) as u32,
            ..spare.header
        };
        let Spare { path, file, .. } = spare;
        // A failure poisons the log (the checked backend): the file's header is unknown.
        if let Err(e) = c.backend.write_all_at(&file, 0, &header.encode()) {
            return Err(Error::io("write segment header", &path, e));
        }
        if let Err(e) = c.backend.sync_data(&file) {
            return Err(Error::io("fdatasync", &path, e));
        }
        self.counters
            .fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let len = header.segment_bytes;
        let fresh = Segment::new(path, file, header, len).map_err(|e| self.poison(e))?;
        fresh.bytes().map_err(|e| self.poison(e))?;
        fresh.index.write().loaded = true;
        if self.opts.durability != Durability::Sync {
            let _ = fresh.open_flush_handle();
        }
        // The cut is durable: every view moves to the new segment.
        {
            let mut list = self.segments.write();
            list.retain(|s| s.base_offset() < base);
            if let Some(p) = &predecessor {
                *p.end_offset.write() = Some(base);
                p.release_file();
            }
            list.push(fresh.clone());
        }
        for segment in &dead {
            self.retire_segment(segment);
        }
        let old_active = std::mem::replace(&mut c.segment, fresh.clone());
        old_active.release_file();
        c.reset_to(base);
        let fresh_bytes = fresh.header.segment_bytes;
        self.staging.lock().restart_at(fresh, base);
        self.marks.reset_to(base);
        if kind == CutKind::Truncate {
            self.cuts.truncated(base);
            crate::telemetry::truncated(&self.dir, base);
        }
        if let (Some(p), Some(data_end)) = (predecessor, predecessor_end) {
            self.request_chore(Chore::Seal {
                segment: p,
                data_end,
                next_offset: base,
            });
        }
        if self.opts.spare_at_activation(fresh_bytes) {
            self.staging.lock().spare_requested = true;
            self.request_chore(Chore::PrepareSpare);
        }
        self.marks.wake();
        Ok(dead)
    }

    /// Where the data `segment` keeps after a cut at `offset` ends (after its record
    /// `offset - 1`), or `None` if the cut does not move its end.
    fn kept_data_end(
        &self,
        segment: &Arc<Segment>,
        offset: u64,
        c: &Committer,
    ) -> Result<Option<u64>> {
        let end = *segment.end_offset.read();
        if end == Some(offset) {
            return Ok(None);
        }
        if end.is_none() && offset == c.written_offset {
            return Ok(Some(c.written_position));
        }
        if offset == segment.base_offset() {
            return Ok(Some(format::SEGMENT_HEADER_BYTES));
        }
        let (_, after) = self.find(segment, offset - 1)?;
        Ok(Some(after))
    }

    /// A prepared segment for a cut-over: the spare, or one prepared now (staging is
    /// frozen, so no producer takes it meanwhile).
    fn spare_for_cut(&self) -> Result<Spare> {
        let mut st = self.staging.lock();
        loop {
            if let Some(spare) = st.spare.take() {
                st.spare_taken_by_cut = true;
                return Ok(spare);
            }
            if self.marks.is_poisoned() {
                return Err(self.poisoned());
            }
            if let Some(failure) = st.spare_failure.take() {
                return Err(failure.to_error());
            }
            st.spare_requested = true;
            self.request_chore(Chore::PrepareSpare);
            self.room_cv.wait(&mut st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_file_round_trips_and_refuses_damage() {
        let bytes = encode_start(12_345);
        assert_eq!(decode_start(&bytes), Ok(12_345));
        for byte in 0..START_FILE_BYTES {
            for bit in 0..8 {
                let mut flipped = bytes;
                flipped[byte] ^= 1 << bit;
                assert!(decode_start(&flipped).is_err(), "flip at {byte}.{bit}");
            }
        }
        assert!(decode_start(&bytes[..31]).is_err());
    }

    #[test]
    fn truncations_since_a_generation() {
        let cuts = Cuts::default();
        assert_eq!(cuts.truncated_since(0), None);
        cuts.truncated(50);
        let seen = cuts.generation();
        cuts.trimmed();
        cuts.truncated(70);
        assert_eq!(cuts.truncated_since(0), Some(50));
        assert_eq!(cuts.truncated_since(seen), Some(70));
        assert_eq!(cuts.truncated_since(cuts.generation()), None);
    }
}
