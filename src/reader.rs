//! The read path: records are slices of read-only segment mappings.
//!
//! A read resolves an offset with a binary search over segment base offsets, then the
//! segment's sparse index, then a short forward walk in which every frame's checksum and
//! offset are checked. Readers take no lock the writer holds while writing.

use std::ops::Range;
use std::sync::Arc;

use crate::crc;
use crate::error::{Error, Result};
use crate::format::{self, FrameError, FrameKind, SEGMENT_HEADER_BYTES};
use crate::recovery::{self, ScanStart, Tail};
use crate::segment::{self, Segment};
use crate::writer::Shared;

/// One record: its offset, timestamp and payload. Stays valid however long it is kept:
/// a payload of up to [`Record::INLINE_PAYLOAD_BYTES`] is copied into it; a larger one
/// stays in place (zero copy) and the record holds a reference to its segment's mapping.
#[derive(Clone)]
pub struct Record {
    offset: u64,
    timestamp_ms: u64,
    /// The segment whose mapping holds the payload (a large one, or an entry's); `None`
    /// when the payload is copied into `body`.
    ///
    /// A small payload is copied, because copying it costs less than the two atomic
    /// reference count updates (one when the record is made, one when it is dropped) that
    /// holding the mapping costs: a scan of small records spent about a third of its time
    /// on them (docs/design.md 4.4).
    segment: Option<Arc<Segment>>,
    payload_bytes: u32,
    /// The copy (its first `payload_bytes` bytes), or for a payload left in the mapping,
    /// where it is ([`Mapped`]).
    ///
    /// Plain fields rather than an enum: an iterator hands records out through
    /// `Option<Result<Record>>`, and with an enum its tag and this record's bytes were
    /// moved in pieces of other widths than they were stored in, which the CPU cannot
    /// forward from store to load (a stall each time).
    body: Body,
}

/// Where a payload left in the mapping is, kept in the first bytes of [`Body`].
#[derive(Clone, Copy)]
struct Mapped {
    /// Byte position of the payload in the segment (segments are at most
    /// [`format::MAX_SEGMENT_BYTES`], which fits a `u32`).
    position: u32,
    /// An entry's extension block, just before the payload (0: a plain record).
    extension_bytes: u32,
}

impl Mapped {
    fn to_body(self) -> Body {
        let mut body = Body([0; Record::INLINE_PAYLOAD_BYTES]);
        body.0[..4].copy_from_slice(&self.position.to_le_bytes());
        body.0[4..8].copy_from_slice(&self.extension_bytes.to_le_bytes());
        body
    }

    fn from_body(body: &Body) -> Mapped {
        let word = |at: usize| {
            u32::from_le_bytes([body.0[at], body.0[at + 1], body.0[at + 2], body.0[at + 3]])
        };
        Mapped {
            position: word(0),
            extension_bytes: word(4),
        }
    }
}

#[derive(Clone, Copy)]
struct Body([u8; Record::INLINE_PAYLOAD_BYTES]);

// Two cache lines, the same as its frame for a payload of the largest inline size.
const _: () = assert!(std::mem::size_of::<Record>() <= 128);
const _: () = assert!(format::MAX_SEGMENT_BYTES <= u32::MAX as u64);

impl Record {
    /// Payloads up to this many bytes are copied into the record; larger ones are read
    /// in place from the segment's mapping.
    pub const INLINE_PAYLOAD_BYTES: usize = 100;

    /// The record's offset in the log.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Milliseconds since the Unix epoch when the record was appended, or the time given
    /// to [`Log::append_at`](crate::Log::append_at); never decreasing along the log, also
    /// across reopens.
    #[inline]
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The payload: a slice of the segment mapping, or of the record's own copy of a
    /// small payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let bytes = self.payload_bytes as usize;
        match &self.segment {
            None => self.body.0.get(..bytes).unwrap_or_default(),
            Some(segment) => {
                let position = Mapped::from_body(&self.body).position as usize;
                segment
                    .mapped()
                    .get(position..position + bytes)
                    .unwrap_or_default()
            }
        }
    }

    /// The record's extension block (key, headers, id, sequence), empty for a plain
    /// record: checked when the frame was read (`entry.rs` reads its fields).
    pub(crate) fn extension_block(&self) -> &[u8] {
        let Some(segment) = &self.segment else {
            return &[];
        };
        let mapped = Mapped::from_body(&self.body);
        let position = mapped.position as usize;
        let start = position - mapped.extension_bytes as usize;
        segment.mapped().get(start..position).unwrap_or_default()
    }
}

/// A record borrowed from its segment's mapping, as [`Log::scan`](crate::Log::scan) hands
/// it to its visitor: checked like every record a read returns, and valid for the call.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    offset: u64,
    timestamp_ms: u64,
    payload: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// The record's offset in the log.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// As [`Record::timestamp_ms`].
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The payload, borrowed from the segment mapping (zero copy).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("payload_bytes", &self.payload().len())
            .finish()
    }
}

impl Shared {
    /// First offset readers cannot see yet.
    pub(crate) fn visible_offset(&self) -> u64 {
        self.marks.readable()
    }

    pub(crate) fn out_of_range(&self, offset: u64) -> Error {
        Error::OffsetOutOfRange {
            offset,
            first: self.first_offset.load(std::sync::atomic::Ordering::SeqCst),
            next: self.visible_offset(),
        }
    }

    /// The segment holding `offset`.
    pub(crate) fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        let segments = self.segments.read();
        let after = segments.partition_point(|s| s.base_offset() <= offset);
        after.checked_sub(1).map(|i| segments[i].clone())
    }

    /// Loads a sealed segment's index on first use: from its index file when that is
    /// intact and agrees with the data (the same bounded check as a checkpoint at open),
    /// otherwise by scanning the segment (and rewriting the file).
    pub(crate) fn ensure_index(&self, segment: &Segment, rebuild: bool) -> Result<()> {
        if segment.index.read().loaded && !rebuild {
            return Ok(());
        }
        let mut index = segment.index.write();
        if index.loaded && !rebuild {
            return Ok(());
        }
        let Some(end_offset) = *segment.end_offset.read() else {
            // The active segment's index is always loaded; nothing to rebuild from.
            return Ok(());
        };
        // An index file that names the right end but fails the check: kept in case the
        // scan finds the data damaged (then the file may well be right).
        let mut disagreeing = None;
        if !rebuild {
            if let Some(file) = segment.load_index_file(&self.dir) {
                if file.next_offset == end_offset {
                    let bytes = segment.bytes()?;
                    if recovery::check_checkpoint(bytes, segment.base_offset(), &file).is_ok() {
                        index.entries = file.entries;
                        index.data_end = Some(file.data_end);
                        index.unchecked_offsets = segment.base_offset()..end_offset;
                        index.loaded = true;
                        return Ok(());
                    }
                    disagreeing = Some(file);
                }
            }
        }
        let outcome = recovery::scan(
            segment.bytes()?,
            segment.seed,
            ScanStart::from_data_start(segment.base_offset(), Some(end_offset))
                .in_recycled(segment.header.recycled),
            self.opts.index_interval_bytes,
        );
        if let Tail::Corrupt { position, reason } = outcome.tail {
            if let Some(file) = disagreeing {
                // Damaged data, not (only) a wrong index: keep the file's entries, all
                // unchecked, so reads of the intact records still find them; a read
                // that fails from one rebuilds, and reports the damage.
                index.entries = file.entries;
                index.data_end = Some(file.data_end);
                index.unchecked_offsets = segment.base_offset()..end_offset;
                index.loaded = true;
                return Ok(());
            }
            return Err(Error::corruption(&segment.path, position, reason));
        }
        index.entries = outcome.entries;
        index.data_end = Some(outcome.end_position);
        index.unchecked_offsets = Default::default();
        index.loaded = true;
        drop(index);
        // Best effort: the next open loads it instead of scanning again. A read-only
        // handle changes nothing on disk.
        if !self.read_only {
            let _ = segment.persist_sealed_index(&self.dir, outcome.end_position, end_offset);
        }
        Ok(())
    }

    /// The timestamp of the last record below `end_offset` (the end of what recovery
    /// found, readable or not yet), or 0 for an empty log. Damage that keeps it from
    /// being read also gives 0: reads of that record report it.
    pub(crate) fn tail_timestamp_ms(&self, end_offset: u64) -> u64 {
        let first = self.first_offset.load(std::sync::atomic::Ordering::SeqCst);
        let Some(last) = end_offset.checked_sub(1).filter(|&last| last >= first) else {
            return 0;
        };
        self.segment_for(last)
            .and_then(|segment| self.find(&segment, last).ok())
            .map_or(0, |(record, _)| record.timestamp_ms)
    }

    /// Reads the record at `offset`, checked against its checksum.
    pub(crate) fn read(&self, offset: u64) -> Result<Record> {
        let first = self.first_offset.load(std::sync::atomic::Ordering::SeqCst);
        if offset < first || offset >= self.visible_offset() {
            return Err(self.out_of_range(offset));
        }
        let segment = self
            .segment_for(offset)
            .ok_or_else(|| self.out_of_range(offset))?;
        let (record, _) = self
            .find(&segment, offset)
            .map_err(|e| self.explain_missing(e, offset))?;
        Ok(record)
    }

    /// A segment file that is gone when a read maps it (sealed segments are mapped by
    /// name on first use): a trim or retention deleted it since the read looked (the
    /// record is out of range now), or the topic was removed (the log is closed).
    /// Anything else is the error as it is.
    pub(crate) fn explain_missing(&self, error: Error, offset: u64) -> Error {
        let missing = matches!(&error, Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound);
        if !missing {
            return error;
        }
        let first = self.first_offset.load(std::sync::atomic::Ordering::SeqCst);
        if offset < first {
            return self.out_of_range(offset);
        }
        if self.marks.state() != crate::watermark::OPEN {
            return Error::Closed;
        }
        error
    }

    /// Finds and reads the record `offset` (known to be visible) in `segment`; returns
    /// it and the position after it.
    pub(crate) fn find(&self, segment: &Arc<Segment>, offset: u64) -> Result<(Record, u64)> {
        let (floor, next, unchecked) = {
            // One read lock for both the loaded check and the search.
            let mut index = segment.index.read();
            if !index.loaded {
                drop(index);
                self.ensure_index(segment, false)?;
                index = segment.index.read();
            }
            // Where the record is if the segment's records are all the same size: its
            // page starts loading (the costly part of a random read: a TLB miss, then the
            // line) while the index is searched.
            if let (Some(first), Some(last)) = (index.entries.first(), index.entries.last()) {
                prefetch_walk(segment, Some(*first), Some(*last), offset, 1)?;
            }
            let (floor, next) = index.bracket(offset);
            (floor, next, floor.is_some_and(|e| index.is_unchecked(e)))
        };
        prefetch_walk(segment, floor, next, offset, LINES_WALKED)?;
        let found = walk(segment, floor, offset).and_then(|p| read_frame(segment, p, offset));
        match found {
            Err(_) if unchecked => {
                // The entry came from an index file: a stale or damaged index never
                // yields a wrong read or an error of its own. Rebuild it from the data
                // and walk again from what the data says.
                self.rebuild_index(segment, offset)?;
                let floor = segment.index.read().floor(offset);
                walk(segment, floor, offset).and_then(|p| read_frame(segment, p, offset))
            }
            other => other,
        }
    }

    /// Rebuilds the index of `segment` from its data, which must reach the record
    /// `target`.
    fn rebuild_index(&self, segment: &Segment, target: u64) -> Result<()> {
        if segment.end_offset.read().is_some() {
            return self.ensure_index(segment, true);
        }
        // The active segment. Only what is written is scanned (the writer may be writing
        // past it right now), and entries the writer adds meanwhile, for records staged
        // past the scan, are kept.
        let written = self.marks.written();
        let frames = recovery::read_frames(
            segment.bytes()?,
            segment.seed,
            ScanStart::from_data_start(segment.base_offset(), Some(written))
                .in_recycled(segment.header.recycled),
            self.opts.index_interval_bytes,
        );
        if frames.next_offset <= target {
            // Written records are valid: what stops the scan before one is damage.
            let reason = frames
                .problem
                .unwrap_or_else(|| "data ends before the record".to_string());
            return Err(corruption(
                segment,
                frames.stopped_at,
                format!("{reason} (reading offset {target})"),
            ));
        }
        segment
            .index
            .write()
            .replace_below(frames.entries, frames.next_offset);
        Ok(())
    }
}

fn corruption(segment: &Segment, position: u64, reason: impl Into<String>) -> Error {
    Error::corruption(&segment.path, position, reason)
}

/// Before a walk from `floor` to the record `target`: asks the CPU for the last `lines`
/// cache lines up to the end of the target's frame, where it would be if the frames
/// between `floor` and `next` were all the same size, so that they load together rather
/// than one after the other (each frame header gives the next one's position, and on a
/// virtual machine the first touch of a page is a costly two-level page walk). Only a
/// hint: the walk reads and checks every header all the same, wherever they are.
fn prefetch_walk(
    segment: &Segment,
    floor: Option<format::IndexEntry>,
    next: Option<format::IndexEntry>,
    target: u64,
    lines: u64,
) -> Result<()> {
    let (Some(floor), Some(next)) = (floor, next) else {
        return Ok(());
    };
    let (Some(records), Some(bytes_between)) = (
        next.offset.checked_sub(floor.offset).filter(|&n| n > 0),
        next.position.checked_sub(floor.position),
    ) else {
        return Ok(());
    };
    let frame_bytes = (bytes_between / records).max(format::FRAME_HEADER_BYTES);
    let steps = target.saturating_sub(floor.offset);
    // The last `lines` lines through the end of the target's frame, as far as the frames
    // are all the same size.
    let end = (floor.position + (steps + 1) * frame_bytes).min(next.position);
    let start = end.saturating_sub(lines * 64).max(floor.position);
    let bytes = segment.bytes()?;
    segment::prefetch(bytes.get(start as usize..end as usize).unwrap_or_default());
    Ok(())
}

/// Lines a random read asks for ahead of its walk: an index interval's worth, at the
/// default interval (4 KiB).
const LINES_WALKED: u64 = 64;

/// Walks frames from an index entry (or the data start) to the record `target`.
fn walk(segment: &Segment, floor: Option<format::IndexEntry>, target: u64) -> Result<u64> {
    match walk_headers(segment, floor, target)? {
        Some(position) => Ok(position),
        None => walk_checked(segment, floor, target),
    }
}

/// The fast walk: reads only the length and offset of the frames before the target (the
/// caller checks the target frame in full). Returns `None` at anything unexpected, for
/// the checked walk to explain or step over.
fn walk_headers(
    segment: &Segment,
    floor: Option<format::IndexEntry>,
    target: u64,
) -> Result<Option<u64>> {
    let (mut position, mut expected) = match floor {
        Some(entry) => (entry.position, entry.offset),
        None => (SEGMENT_HEADER_BYTES, segment.base_offset()),
    };
    let bytes = segment.bytes()?;
    // Each step moves forward by at least a frame header, so the walk ends at the end
    // of the mapping at the latest.
    loop {
        let Some(rest) = bytes.get(position as usize..) else {
            return Ok(None);
        };
        let Some((offset, padded_bytes)) = format::peek_frame(rest) else {
            return Ok(None);
        };
        if offset == target {
            return Ok(Some(position));
        }
        if offset == expected && offset < target {
            expected += 1;
        } else if offset != format::MARKER_OFFSET {
            return Ok(None);
        }
        position += padded_bytes;
    }
}

/// The checked walk: every frame's checksum is verified on the way.
fn walk_checked(segment: &Segment, floor: Option<format::IndexEntry>, target: u64) -> Result<u64> {
    let (mut position, mut expected) = match floor {
        Some(entry) => (entry.position, entry.offset),
        None => (SEGMENT_HEADER_BYTES, segment.base_offset()),
    };
    let bytes = segment.bytes()?;
    loop {
        let frame = match decode_at(segment, bytes, position) {
            Ok(frame) => frame,
            Err(e) => match skip_damaged(segment, bytes, position, expected, target) {
                Some(after) => {
                    // A damaged record before the target: its neighbours are still
                    // readable. The target itself is always fully checked.
                    position = after;
                    expected += 1;
                    continue;
                }
                None => return Err(e),
            },
        };
        match frame.kind {
            FrameKind::Marker { .. } => {}
            FrameKind::Record { offset, .. } if offset == target => return Ok(position),
            FrameKind::Record { offset, .. } if offset == expected && offset < target => {
                expected += 1;
            }
            FrameKind::Record { offset, .. } => {
                return Err(corruption(
                    segment,
                    position,
                    format!("found offset {offset} where offset {expected} belongs"),
                ))
            }
        }
        position += frame.padded_bytes;
    }
}

/// For a frame that fails its checks on the way to `target`: if its length word leads to
/// a valid record carrying the next expected offset, returns that record's position.
fn skip_damaged(
    segment: &Segment,
    bytes: &[u8],
    position: u64,
    expected: u64,
    target: u64,
) -> Option<u64> {
    if expected >= target {
        return None;
    }
    let at = position as usize;
    let word = u32::from_le_bytes(bytes.get(at + 4..at + 8)?.try_into().ok()?);
    let frame_len = (word & format::FRAME_LENGTH_MASK) as u64;
    if frame_len < format::FRAME_HEADER_BYTES {
        return None;
    }
    let after = position + format::padded_frame_bytes(frame_len);
    let mut probe = after;
    loop {
        let next = format::decode_frame(bytes.get(probe as usize..)?, segment.seed).ok()?;
        match next.kind {
            FrameKind::Marker { .. } => probe += next.padded_bytes,
            FrameKind::Record { offset, .. } => return (offset == expected + 1).then_some(after),
        }
    }
}

fn decode_at(segment: &Segment, bytes: &[u8], position: u64) -> Result<format::Frame> {
    if position >= bytes.len() as u64 {
        return Err(corruption(segment, position, "data ends before the record"));
    }
    let seed = segment.seed;
    let frame = format::decode_frame_with(&bytes[position as usize..], |frame| {
        crc::frame_crc(frame, seed)
    });
    frame.map_err(|e| match e {
        FrameError::End => corruption(segment, position, "data ends before the record"),
        FrameError::Invalid(why) => corruption(segment, position, why),
    })
}

/// Reads the record `expected` at `position` (skipping commit markers). Returns it and
/// the position after it.
pub(crate) fn read_frame(
    segment: &Arc<Segment>,
    mut position: u64,
    expected: u64,
) -> Result<(Record, u64)> {
    let bytes = segment.bytes()?;
    loop {
        let frame = decode_at(segment, bytes, position)?;
        match frame.kind {
            FrameKind::Marker { .. } => position += frame.padded_bytes,
            FrameKind::Record { offset, .. } if offset == expected => {
                let record = Checked::new(position, &frame).record(segment, offset);
                return Ok((record, position + frame.padded_bytes));
            }
            FrameKind::Record { offset, .. } => {
                return Err(corruption(
                    segment,
                    position,
                    format!("found offset {offset} where offset {expected} belongs"),
                ))
            }
        }
    }
}

/// Where a checked record's payload lies, and its timestamp.
#[derive(Clone, Copy, Default)]
struct Checked {
    timestamp_ms: u64,
    payload_position: usize,
    payload_bytes: usize,
    /// An entry's extension block, just before the payload (0: a plain record).
    extension_bytes: u32,
}

impl Checked {
    /// The record of `frame`, which starts at `position`.
    fn new(position: u64, frame: &format::Frame) -> Checked {
        Checked {
            timestamp_ms: frame.timestamp_ms,
            payload_position: (position + format::FRAME_HEADER_BYTES + frame.extension_bytes)
                as usize,
            payload_bytes: frame.payload_bytes as usize,
            // An extension block is at most 64 KiB (`entry.rs`).
            extension_bytes: u32::try_from(frame.extension_bytes).unwrap_or(u32::MAX),
        }
    }

    /// The record, in `segment` (mapped: its frame was checked).
    #[inline(always)]
    fn record(self, segment: &Arc<Segment>, offset: u64) -> Record {
        // An entry keeps its extension block readable in the mapping.
        let copied =
            self.payload_bytes <= Record::INLINE_PAYLOAD_BYTES && self.extension_bytes == 0;
        let (segment, body) = if copied {
            let mapped = segment
                .mapped()
                .get(self.payload_position..)
                .unwrap_or_default();
            // A copy of fixed length is a few vector moves, where one of the payload's
            // length is a call to memcpy; the bytes past the payload (the rest of its
            // frame, or the next one's) are never shown. At the end of the mapping, the
            // exact length. (Not zeroed first: that was a call to memset.)
            let window = mapped
                .get(..Record::INLINE_PAYLOAD_BYTES)
                .and_then(|window| window.try_into().ok());
            let body = match window {
                Some(window) => Body(window),
                None => copy_short(mapped.get(..self.payload_bytes).unwrap_or_default()),
            };
            (None, body)
        } else {
            let mapped = Mapped {
                // Positions in a segment fit (`format::MAX_SEGMENT_BYTES`).
                position: self.payload_position as u32,
                extension_bytes: self.extension_bytes,
            };
            (Some(segment.clone()), mapped.to_body())
        };
        Record {
            offset,
            timestamp_ms: self.timestamp_ms,
            segment,
            // At most a segment's size.
            payload_bytes: self.payload_bytes as u32,
            body,
        }
    }
}

/// The copy of a payload at the very end of a mapping (kept out of line, so that the
/// fixed-length copy stays a few moves).
#[cold]
#[inline(never)]
fn copy_short(payload: &[u8]) -> Body {
    let mut body = Body([0; Record::INLINE_PAYLOAD_BYTES]);
    body.0[..payload.len()].copy_from_slice(payload);
    body
}

/// How far ahead of itself a scan has the mapping populated.
const POPULATE_AHEAD_BYTES: usize = 2 << 20;

/// Frames a scan checks at a time: their checksums run side by side (`crate::crc`).
const AHEAD_FRAMES: usize = 16;

/// Iterates records in offset order from a starting offset up to the read watermark.
///
/// Returns `None` once it reaches the watermark; calling `next` again later yields
/// records appended since. After an error it yields nothing more, except after the two
/// that say the log was cut under it, from which it continues: [`Error::Truncated`]
/// (records it was past were removed by [`Log::truncate_from`]; it continues at the cut)
/// and [`Error::OffsetOutOfRange`] when a trim removed the records it was at (it
/// continues at the new first offset).
///
/// [`Log::truncate_from`]: crate::Log::truncate_from
pub struct Iter {
    shared: Arc<Shared>,
    next: u64,
    /// The log's cut generation when last looked at (see `trim.rs`).
    generation: u64,
    /// The read watermark as last seen; re-read only when `next` reaches it.
    visible: u64,
    cursor: Option<Cursor>,
    failed: bool,
    pending: Option<Error>,
}

/// Where the iterator is: the segment, the position of the next frame, and the offset
/// the segment ends at (`u64::MAX` while it was the active segment); and the records
/// checked ahead of the iterator: `ahead[taken..checked]` are the records from the
/// iterator's next offset on, and `position` lies past the last of them.
struct Cursor {
    segment: Arc<Segment>,
    position: u64,
    end_offset: u64,
    ahead: [Checked; AHEAD_FRAMES],
    taken: usize,
    checked: usize,
    /// The mapping is populated below this position (`Segment::populate`).
    populated: usize,
}

impl Cursor {
    fn new(segment: Arc<Segment>, position: u64, end_offset: u64) -> Cursor {
        Cursor {
            segment,
            position,
            end_offset,
            ahead: [Checked::default(); AHEAD_FRAMES],
            taken: 0,
            checked: 0,
            populated: 0,
        }
    }

    /// The record `offset`, if it was checked ahead.
    fn take(&mut self, offset: u64) -> Option<Record> {
        let checked = *self.ahead[..self.checked].get(self.taken)?;
        self.taken += 1;
        Some(checked.record(&self.segment, offset))
    }

    /// Checks the frames of records from `next` (below `limit`) ahead, all of them in
    /// full (checksum, offset, padding), the checksums of several at once. Stops before
    /// anything unexpected, which the caller's frame-by-frame read then explains.
    fn check_ahead(&mut self, next: u64, limit: u64) -> Result<()> {
        debug_assert_eq!(self.taken, self.checked);
        self.taken = 0;
        self.checked = 0;
        let bytes = self.segment.bytes()?;
        let mut frames: [Range<usize>; AHEAD_FRAMES] = std::array::from_fn(|_| 0..0);
        let mut frames_count = 0;
        let mut position = self.position as usize;
        let mut expected = next;
        while frames_count < AHEAD_FRAMES && expected < limit {
            let Some((offset, padded_bytes)) = bytes.get(position..).and_then(format::peek_frame)
            else {
                break;
            };
            if offset == expected {
                expected += 1;
            } else if offset != format::MARKER_OFFSET {
                break;
            }
            frames[frames_count] = position..position + padded_bytes as usize;
            frames_count += 1;
            position += padded_bytes as usize;
        }
        if position + POPULATE_AHEAD_BYTES / 2 > self.populated {
            let start = self.populated.max(position);
            self.populated = start + POPULATE_AHEAD_BYTES;
            self.segment.populate(start..self.populated);
        }
        // The next frames, while these are checked and read: a scan waits on memory more
        // than on anything else.
        let ahead = (position - self.position as usize).clamp(1 << 10, 4 << 10);
        segment::prefetch(
            bytes
                .get(position..)
                .map_or(&[], |rest| &rest[..ahead.min(rest.len())]),
        );
        let frames = &frames[..frames_count];
        let mut crcs = [0u32; AHEAD_FRAMES];
        crc::frame_crcs(bytes, self.segment.seed, frames, &mut crcs[..frames_count]);
        let mut expected = next;
        for (frame, crc) in frames.iter().zip(crcs) {
            let Ok(decoded) = format::decode_frame_with(&bytes[frame.start..], |_| crc) else {
                break;
            };
            match decoded.kind {
                FrameKind::Marker { .. } => {}
                FrameKind::Record { offset, .. } if offset == expected => {
                    self.ahead[self.checked] = Checked::new(frame.start as u64, &decoded);
                    self.checked += 1;
                    expected += 1;
                }
                FrameKind::Record { .. } => break,
            }
            self.position = frame.end as u64;
        }
        Ok(())
    }
}

impl Iter {
    pub(crate) fn new(shared: Arc<Shared>, from: u64) -> Iter {
        let first = shared
            .first_offset
            .load(std::sync::atomic::Ordering::SeqCst);
        let visible = shared.visible_offset();
        let pending = (from < first || from > visible).then(|| shared.out_of_range(from));
        Iter {
            generation: shared.cuts.generation(),
            shared,
            next: from,
            visible,
            cursor: None,
            failed: false,
            pending,
        }
    }

    /// An iterator from `from` that does not check it against the read watermark: a
    /// follower may start past it (at a record staged but not yet readable).
    pub(crate) fn unchecked(shared: Arc<Shared>, from: u64) -> Iter {
        let visible = shared.visible_offset();
        Iter {
            generation: shared.cuts.generation(),
            shared,
            next: from,
            visible,
            cursor: None,
            failed: false,
            pending: None,
        }
    }

    /// An iterator that yields `error` once, then nothing.
    pub(crate) fn failed_with(shared: Arc<Shared>, error: Error) -> Iter {
        let mut iter = Iter::new(shared, 0);
        iter.pending = Some(error);
        iter
    }

    /// The offset of the record `next` will return.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Whether an error ended the iterator.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed
    }

    /// After a trim or truncation since the last look: the error that says so if it
    /// removed records at or before where the iterator is, and the position moved to
    /// what the log holds now.
    fn check_cuts(&mut self) -> Result<()> {
        let generation = self.shared.cuts.generation();
        if generation == self.generation {
            return Ok(());
        }
        let truncated = self.shared.cuts.truncated_since(self.generation);
        self.generation = generation;
        self.cursor = None;
        self.visible = self.shared.visible_offset();
        if let Some(at) = truncated.filter(|&at| at < self.next) {
            self.next = at;
            return Err(Error::Truncated { at });
        }
        let first = self
            .shared
            .first_offset
            .load(std::sync::atomic::Ordering::SeqCst);
        if self.next < first {
            let error = self.shared.out_of_range(self.next);
            self.next = first;
            return Err(error);
        }
        Ok(())
    }

    /// Calls `visit` on each record from the next one up to the read watermark, until it
    /// returns `false` (the iterator then stands after that record). Records checked ahead
    /// are handed over as borrowed slices, with no copy or reference count.
    pub(crate) fn visit(&mut self, mut visit: impl FnMut(RecordRef<'_>) -> bool) -> Result<()> {
        loop {
            if let Some(cursor) = &mut self.cursor {
                let bytes = cursor.segment.mapped();
                while let Some(checked) = cursor.ahead[..cursor.checked].get(cursor.taken) {
                    cursor.taken += 1;
                    let record = RecordRef {
                        offset: self.next,
                        timestamp_ms: checked.timestamp_ms,
                        payload: &bytes[checked.payload_position..][..checked.payload_bytes],
                    };
                    self.next += 1;
                    if !visit(record) {
                        return Ok(());
                    }
                }
            }
            // One record the slow way (which checks the next ones ahead), or the end.
            match self.next() {
                None => return Ok(()),
                Some(Err(error)) => return Err(error),
                Some(Ok(record)) => {
                    let record = RecordRef {
                        offset: record.offset,
                        timestamp_ms: record.timestamp_ms,
                        payload: record.payload(),
                    };
                    if !visit(record) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn advance(&mut self) -> Result<Record> {
        if let Some(cursor) = &mut self.cursor {
            if let Some(record) = cursor.take(self.next) {
                self.next += 1;
                return Ok(record);
            }
            if self.next < cursor.end_offset {
                cursor.check_ahead(self.next, self.visible.min(cursor.end_offset))?;
                if let Some(record) = cursor.take(self.next) {
                    self.next += 1;
                    return Ok(record);
                }
                match read_frame(&cursor.segment, cursor.position, self.next) {
                    Ok((record, after)) => {
                        cursor.position = after;
                        self.next += 1;
                        return Ok(record);
                    }
                    // Still the active segment: the error is real.
                    Err(e)
                        if cursor.end_offset != u64::MAX
                            || cursor.segment.end_offset.read().is_none() =>
                    {
                        return Err(e)
                    }
                    // The segment was sealed since: the record is in the next one.
                    Err(_) => {}
                }
            }
        }
        let segment = self
            .shared
            .segment_for(self.next)
            .ok_or_else(|| self.shared.out_of_range(self.next))?;
        let (record, after) = self
            .shared
            .find(&segment, self.next)
            .map_err(|e| self.shared.explain_missing(e, self.next))?;
        let end_offset = segment.end_offset.read().unwrap_or(u64::MAX);
        self.cursor = Some(Cursor::new(segment, after, end_offset));
        self.next += 1;
        Ok(record)
    }
}

impl Iterator for Iter {
    type Item = Result<Record>;

    /// The common step, a record checked ahead (no cut since), is small and inlined into
    /// the caller's loop, so the record is built once, where the caller receives it: built
    /// in a function of its own and moved out through `Option<Result<_>>`, its bytes were
    /// copied twice more, and reloaded in pieces of other widths than they were stored in
    /// (store-forwarding stalls): a third of `next`'s time (docs/design.md 4.4).
    #[inline]
    fn next(&mut self) -> Option<Result<Record>> {
        if let Some(cursor) = &mut self.cursor {
            if cursor.taken < cursor.checked && self.shared.cuts.generation() == self.generation {
                let checked = cursor.ahead[cursor.taken];
                cursor.taken += 1;
                let offset = self.next;
                self.next += 1;
                return Some(Ok(checked.record(&cursor.segment, offset)));
            }
        }
        self.next_slow()
    }
}

impl Iter {
    /// [`Iterator::next`] for everything but a record checked ahead: errors, cuts, the
    /// read watermark, the next frames to check, the next segment.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        if let Some(error) = self.pending.take() {
            self.failed = true;
            return Some(Err(error));
        }
        if let Err(error) = self.check_cuts() {
            return Some(Err(error));
        }
        if self.next >= self.visible {
            self.visible = self.shared.visible_offset();
            if self.next >= self.visible {
                return None;
            }
        }
        match self.advance() {
            Ok(record) => Some(Ok(record)),
            Err(error) => {
                self.failed = true;
                // Nothing checked ahead is handed out after the error.
                self.cursor = None;
                Some(Err(error))
            }
        }
    }
}
