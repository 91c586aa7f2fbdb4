//! Finding records by time, and reading backwards from an offset.
//!
//! Timestamps never decrease along a log (the writer raises each to the last one, also
//! across reopens), so the sparse offset index is also a time index: the first record at
//! or after a time is found by binary search over the segments by the timestamp of each
//! one's first record, then, within the one segment that holds the answer, over its
//! index entries (each points at a record frame whose header carries its timestamp),
//! then a walk of at most one index interval. The search reads frame headers only
//! (offset and timestamp, 24 bytes: no checksum of the payload); its answer is then
//! proven with two fully checked reads (the record found is at or after the time, the
//! one before it before it). If a header misled the search (damage), or the proof
//! fails, the search runs again reading every probed frame in full, so damage is
//! reported as every read reports it. Cost: O(log segments + log entries) header reads
//! in the mapping (and, for a sealed segment not read since open, loading its index
//! file), plus two checked reads. Measured in `examples/seek_probe.rs`.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use crate::error::Result;
use crate::format::{self, SEGMENT_HEADER_BYTES};
use crate::reader::{read_frame, Record};
use crate::segment::Segment;
use crate::writer::Shared;

impl Shared {
    /// The first offset whose record's timestamp is at or after `ts_ms`, among the
    /// readable records; past them, `next_offset` if no record staged after them can
    /// qualify either (their timestamps are at most the last one staged), else the read
    /// watermark (the first record not yet readable, which may).
    pub(crate) fn seek_time(&self, ts_ms: u64) -> Result<u64> {
        let visible = self.visible_offset();
        let first = self.first_offset.load(SeqCst);
        if let Some(offset) = self.seek_readable(ts_ms, first, visible)? {
            return Ok(offset);
        }
        let (next_offset, last_staged_ms) = self.staged_end();
        if next_offset > visible && last_staged_ms >= ts_ms {
            return Ok(visible);
        }
        Ok(next_offset)
    }

    /// [`Shared::seek_time`] among the records `first..visible`: `None` when none of
    /// them is at or after `ts_ms`.
    fn seek_readable(&self, ts_ms: u64, first: u64, visible: u64) -> Result<Option<u64>> {
        if first >= visible {
            return Ok(None);
        }
        // A trim may have left records below `first` in its segment: an answer there
        // means `first` itself (timestamps never decrease).
        if let Some(found) = self.seek_by_headers(ts_ms, first, visible) {
            let found = found.map(|offset| offset.max(first));
            if self.proves(found, ts_ms, first, visible) {
                return Ok(found);
            }
        }
        Ok(self
            .seek_checked(ts_ms, first, visible)?
            .map(|offset| offset.max(first)))
    }

    /// Whether the checked records around `found` make it the answer: the record at it
    /// is at or after `ts_ms`, the one before it (if readable) before it.
    fn proves(&self, found: Option<u64>, ts_ms: u64, first: u64, visible: u64) -> bool {
        let before_ok = |offset: u64| {
            offset < first
                || self
                    .read(offset)
                    .is_ok_and(|record| record.timestamp_ms() < ts_ms)
        };
        match found {
            Some(offset) if offset >= first && offset < visible => {
                self.read(offset)
                    .is_ok_and(|record| record.timestamp_ms() >= ts_ms)
                    && offset.checked_sub(1).is_none_or(before_ok)
            }
            Some(_) => false,
            None => before_ok(visible - 1),
        }
    }

    /// The header-only search (see the module documentation): `None` if a header was
    /// not what the index said (damage, or a race with a cut): the checked search then
    /// decides.
    fn seek_by_headers(&self, ts_ms: u64, first: u64, visible: u64) -> Option<Option<u64>> {
        let count = self
            .segments
            .read()
            .partition_point(|s| s.base_offset() < visible);
        let (mut low, mut high) = (0, count);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.first_header_from(middle, count, visible)? {
                Some((ts, holding)) if ts < ts_ms => low = holding + 1,
                _ => high = middle,
            }
        }
        if low == 0 {
            return Some(Some(first));
        }
        let segment = self.segments.read().get(low - 1)?.clone();
        let end = segment.end_offset.read().unwrap_or(u64::MAX).min(visible);
        self.ensure_index(&segment, false).ok()?;
        let bytes = segment.bytes().ok()?;
        let header_at = |position: u64| format::peek_header(bytes.get(position as usize..)?);
        let (mut offset, mut position) = (segment.base_offset(), format::SEGMENT_HEADER_BYTES);
        {
            let index = segment.index.read();
            let count = index.entries.partition_point(|e| e.offset < end);
            let (mut low, mut high) = (0, count);
            while low < high {
                let middle = low + (high - low) / 2;
                let entry = *index.entries.get(middle)?;
                let (at, ts, _) = header_at(entry.position)?;
                if at != entry.offset {
                    return None;
                }
                if ts < ts_ms {
                    (offset, position) = (entry.offset, entry.position);
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
        }
        // The walk: frames from there (commit markers skipped) to the first record at or
        // after `ts_ms`, at most one index interval.
        loop {
            let (at, ts, padded) = header_at(position)?;
            if at == format::MARKER_OFFSET {
                position += padded;
                continue;
            }
            if at != offset {
                return None;
            }
            if ts >= ts_ms {
                return Some(Some(offset));
            }
            offset += 1;
            position += padded;
            if offset >= end {
                return Some((end < visible).then_some(end));
            }
        }
    }

    /// The timestamp in the first record header of the segment at `position` in the
    /// list (or the first non-empty one after it below `count`), and where that segment
    /// is; `Some(None)` if all are empty, `None` if a header is not a record's.
    fn first_header_from(
        &self,
        mut position: usize,
        count: usize,
        visible: u64,
    ) -> Option<Option<(u64, usize)>> {
        while position < count {
            let segment = self.segments.read().get(position)?.clone();
            let end = segment.end_offset.read().unwrap_or(u64::MAX).min(visible);
            if segment.base_offset() < end {
                // Read with its header at open, or here once (no page of it is read
                // again for this).
                let ts = match segment.first_timestamp_hint() {
                    Some(ts) => ts,
                    None => {
                        let bytes = segment.bytes().ok()?;
                        let ts =
                            crate::segment::first_record_timestamp(bytes, segment.base_offset())?;
                        segment.set_first_timestamp_hint(ts);
                        ts
                    }
                };
                return Some(Some((ts, position)));
            }
            position += 1;
        }
        Some(None)
    }

    /// [`Shared::seek_readable`] reading every probed frame in full.
    fn seek_checked(&self, ts_ms: u64, first: u64, visible: u64) -> Result<Option<u64>> {
        // Segments that hold readable records (a prefix of the list: base offsets
        // increase). Segments are only ever added at the end while we look.
        let count = self
            .segments
            .read()
            .partition_point(|s| s.base_offset() < visible);
        // Binary search: segments below `low` start before `ts_ms` (and `low - 1` holds
        // records); from `high` on, at or after it (an empty one counts as the next).
        let (mut low, mut high) = (0, count);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.first_timestamp_from(middle, count, visible)? {
                Some((ts, holding)) if ts < ts_ms => low = holding + 1,
                _ => high = middle,
            }
        }
        if low == 0 {
            // The first record is at or after `ts_ms`.
            return Ok(Some(first));
        }
        let segment = self.segments.read()[low - 1].clone();
        let end = segment.end_offset.read().unwrap_or(u64::MAX).min(visible);
        let start = self.last_entry_before(&segment, ts_ms, end)?;
        // A walk of at most one index interval (the next entry is at or after `ts_ms`).
        let (mut record, mut after) = self.find(&segment, start)?;
        loop {
            if record.timestamp_ms() >= ts_ms {
                return Ok(Some(record.offset()));
            }
            let next = record.offset() + 1;
            if next >= end {
                // The answer is the next segment's first record, or none is readable.
                return Ok((end < visible).then_some(end));
            }
            (record, after) = read_frame(&segment, after, next)?;
        }
    }

    /// The timestamp of the first record of the segment at `position` in the list, or of
    /// the first non-empty one after it below `count`, and where that segment is in the
    /// list; `None` if all are empty.
    fn first_timestamp_from(
        &self,
        mut position: usize,
        count: usize,
        visible: u64,
    ) -> Result<Option<(u64, usize)>> {
        while position < count {
            let segment = self.segments.read()[position].clone();
            let end = segment.end_offset.read().unwrap_or(u64::MAX).min(visible);
            if segment.base_offset() < end {
                let record = self.first_record(&segment)?;
                return Ok(Some((record.timestamp_ms(), position)));
            }
            position += 1;
        }
        Ok(None)
    }

    /// A segment's first record, read without loading its index (it starts the data,
    /// after commit markers); through the index if that fails, to report damage as
    /// every read does.
    fn first_record(&self, segment: &Arc<Segment>) -> Result<Record> {
        match read_frame(segment, SEGMENT_HEADER_BYTES, segment.base_offset()) {
            Ok((record, _)) => Ok(record),
            Err(_) => self
                .find(segment, segment.base_offset())
                .map(|(record, _)| record),
        }
    }

    /// The offset of the last index entry of `segment` below `end` whose record is
    /// before `ts_ms` (the segment's first record is, by the caller's search).
    fn last_entry_before(&self, segment: &Arc<Segment>, ts_ms: u64, end: u64) -> Result<u64> {
        self.ensure_index(segment, false)?;
        let count = segment
            .index
            .read()
            .entries
            .partition_point(|e| e.offset < end);
        let mut best = segment.base_offset();
        let (mut low, mut high) = (0, count);
        while low < high {
            let middle = low + (high - low) / 2;
            // One entry at a time under the lock: a read that fails from an entry
            // rebuilds the index, and the entries are the same records after it.
            let Some(entry) = segment.index.read().entries.get(middle).copied() else {
                break;
            };
            let (record, _) = self.find(segment, entry.offset)?;
            if record.timestamp_ms() < ts_ms {
                best = best.max(entry.offset);
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(best)
    }
}
