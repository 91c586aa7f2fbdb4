//! Entries: records that carry a key, headers, an idempotency id or a caller sequence
//! beside their payload, stored in the frame (an extension block, format version 2:
//! `docs/design.md` 2.2.1) and readable without decoding the payload. A record without
//! any of them is a plain frame, byte for byte what [`Log::append`] writes.
//!
//! Caller sequences strictly increase along a log: the check and the staging happen
//! under the staging lock, and the last sequence is read from disk when a handle first
//! needs it (see [`Shared::load_last_seq`] for what that reads).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::extension::{self, ExtensionView, HeaderIter};
use crate::format::{self, Extension, MARKER_OFFSET, SEGMENT_HEADER_BYTES};
use crate::reader::Record;
use crate::segment::Segment;
use crate::writer::{Records, Shared};
use crate::Log;

/// A record to append with [`Log::append_entry`]: a payload and, optionally, a key, headers,
/// an idempotency id, a caller sequence and a timestamp. Key, headers, id and sequence
/// are stored in the record's frame and read back with [`Record::key`],
/// [`Record::header`], [`Record::headers`], [`Record::id`] and [`Record::seq`].
///
/// Limits (checked before anything is appended, [`Error::InvalidEntry`]): a key and an
/// id of at most 1 KiB each; at most 32 headers, each named by 1 to 64 bytes of visible
/// ASCII (`!` to `~`), no name twice; key, id, sequence and headers together at most
/// 64 KiB encoded (8 bytes, plus 8 for a sequence, 2 + length for a key or an id, and
/// 3 + name + value per header). An entry with none of them is stored as a plain record,
/// exactly as [`Log::append`] stores it.
///
/// ```
/// use ringlog::{Entry, Log, Options};
///
/// # fn main() -> ringlog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
/// let offset = log.append_entry(
///     Entry::new(b"{\"job\": 42}")
///         .key(b"job-42")
///         .header("kind", b"job.started")
///         .id(b"evt-0001")
///         .seq(7),
/// )?;
/// let record = log.read(offset)?;
/// assert_eq!(record.key(), Some(&b"job-42"[..]));
/// assert_eq!(record.header("kind"), Some(&b"job.started"[..]));
/// assert_eq!(record.id(), Some(&b"evt-0001"[..]));
/// assert_eq!(record.seq(), Some(7));
/// assert_eq!(record.payload(), b"{\"job\": 42}");
/// assert_eq!(log.last_seq(), Some(7));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Entry<'a> {
    payload: &'a [u8],
    key: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    seq: Option<u64>,
    timestamp_ms: Option<u64>,
    headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Entry<'a> {
    /// An entry with this payload and nothing else (yet). Takes anything that is bytes:
    /// `b"..."`, `&[u8]`, `&Vec<u8>`, `&str`, `&String`.
    pub fn new<P: AsRef<[u8]> + ?Sized>(payload: &'a P) -> Entry<'a> {
        Entry {
            payload: payload.as_ref(),
            ..Entry::default()
        }
    }

    /// The entity the record is about (a job id, an account): at most 1 KiB. Keys may
    /// repeat along a log; a key does not deduplicate (see [`Entry::id`]).
    #[must_use]
    pub fn key<K: AsRef<[u8]> + ?Sized>(mut self, key: &'a K) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    /// Adds a header: `name` is 1 to 64 bytes of visible ASCII, given at most once per
    /// entry; at most 32 headers. Their order is kept.
    #[must_use]
    pub fn header<V: AsRef<[u8]> + ?Sized>(mut self, name: &'a str, value: &'a V) -> Self {
        self.headers.push((name, value.as_ref()));
        self
    }

    /// The event's idempotency id: at most 1 KiB, stored in the record.
    #[must_use]
    pub fn id<I: AsRef<[u8]> + ?Sized>(mut self, id: &'a I) -> Self {
        self.id = Some(id.as_ref());
        self
    }

    /// A caller sequence: must be above the log's last one ([`Log::last_seq`]), else the
    /// append is [`Error::SequenceViolation`] and appends nothing.
    #[must_use]
    pub fn seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// The record's timestamp (milliseconds since the Unix epoch) instead of the wall
    /// clock's, as [`Log::append_at`] takes it: raised to the last record's, and refused
    /// more than a day ahead of the wall clock.
    #[must_use]
    pub fn timestamp_ms(mut self, timestamp_ms: u64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    fn extension(&self) -> Extension<'_> {
        Extension {
            seq: self.seq,
            key: self.key,
            id: self.id,
            headers: &self.headers,
        }
    }
}

impl Log {
    /// Appends one entry (its payload with its key, headers, id, sequence and timestamp)
    /// and returns its offset; durable when it returns as for [`Log::append`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEntry`] for an entry over a limit (see [`Entry`]),
    /// [`Error::SequenceViolation`] for a sequence not above [`Log::last_seq`],
    /// [`Error::InvalidTimestamp`] as for [`Log::append_at`]; nothing is appended for
    /// any of them. Otherwise as [`Log::append`].
    pub fn append_entry(&self, entry: Entry<'_>) -> Result<u64> {
        let extension = entry.extension();
        extension
            .validate()
            .map_err(|invalid| Error::InvalidEntry {
                field: invalid.field,
                reason: invalid.reason,
            })?;
        let payloads = [entry.payload];
        let records = if extension.is_empty() {
            Records::Plain(&payloads)
        } else {
            Records::Entry {
                payload: entry.payload,
                extension: &extension,
                once: false,
            }
        };
        self.append_records(records, entry.timestamp_ms)
            .map(|range| range.start)
    }

    /// Appends `payload` with the idempotency id `id` unless the log already holds a
    /// record with that id: returns (offset, true) when it appended, (the original
    /// record's offset, false) when not. See [`Log::append_entry_once`].
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// assert_eq!(log.append_once(b"evt-1", b"charged 10")?, (0, true));
    /// assert_eq!(log.append_once(b"evt-1", b"charged 10")?, (0, false)); // a retry
    /// assert_eq!(log.next_offset(), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Log::append_entry_once`].
    pub fn append_once(&self, id: &[u8], payload: &[u8]) -> Result<(u64, bool)> {
        self.append_entry_once(Entry::new(payload).id(id))
    }

    /// Appends `entry` unless the log already holds a record with its id ([`Entry::id`],
    /// required): returns (offset, true) when it appended, (the offset of the first
    /// record with that id, false) when it appended nothing. Of concurrent calls with one
    /// id, exactly one appends (the id is checked and recorded under the staging lock);
    /// the others return its offset, under [`Durability::Sync`](crate::Durability::Sync)
    /// once it is durable. Ids are found across reopens and crashes: those of the
    /// records in the log (every acknowledged one), not of records a crash cut before
    /// they were acknowledged, nor of trimmed ones. Records appended with an id by
    /// [`Log::append_entry`] count too. With a duplicate id, the entry's sequence is not
    /// checked and does not become the last one.
    ///
    /// The first call after an open reads the ids of the records in the log: one small
    /// summary file per sealed segment (built by walking the segment the first time) and
    /// the active segment's records (`docs/design.md` 2.2.2; memory about 24 to 50 bytes
    /// per id). Calls after it look up a table in memory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEntry`] if the entry has no id or breaks a limit,
    /// [`Error::Corruption`] if damage keeps the ids of the log from being read;
    /// otherwise as [`Log::append_entry`].
    pub fn append_entry_once(&self, entry: Entry<'_>) -> Result<(u64, bool)> {
        let extension = entry.extension();
        if extension.id.is_none() {
            return Err(Error::InvalidEntry {
                field: "id".to_string(),
                reason: "append_once and append_entry_once need an idempotency id \
                         (Entry::id)"
                    .to_string(),
            });
        }
        extension
            .validate()
            .map_err(|invalid| Error::InvalidEntry {
                field: invalid.field,
                reason: invalid.reason,
            })?;
        let shared = self.shared();
        if shared.read_only {
            return Err(Error::ReadOnly);
        }
        shared.load_ids()?;
        let records = Records::Entry {
            payload: entry.payload,
            extension: &extension,
            once: true,
        };
        let range = self.append_records(records, entry.timestamp_ms)?;
        if !range.is_empty() {
            return Ok((range.start, true));
        }
        // A duplicate: the original may still be on its way to the disk.
        if shared.opts.durability == crate::Durability::Sync {
            shared.wait_durable(range.start)?;
        }
        Ok((range.start, false))
    }

    /// Appends one record with the caller sequence `seq`, which must be above the log's
    /// last one, and returns its offset; durable when it returns as for [`Log::append`].
    /// Concurrent calls are ordered: of two with the same `seq`, one fails.
    ///
    /// ```
    /// use ringlog::{Error, Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// log.append_seq(10, b"first")?;
    /// assert!(matches!(
    ///     log.append_seq(10, b"again"),
    ///     Err(Error::SequenceViolation { last: 10, provided: 10 })
    /// ));
    /// log.append_seq(12, b"later")?;
    /// assert_eq!(log.last_seq(), Some(12));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::SequenceViolation`] if `seq` is not above [`Log::last_seq`] (nothing is
    /// appended); otherwise as [`Log::append`].
    pub fn append_seq(&self, seq: u64, payload: &[u8]) -> Result<u64> {
        self.append_entry(Entry::new(payload).seq(seq))
    }

    /// The last caller sequence of the log: the highest appended (or staged) through
    /// [`Log::append_seq`] or [`Entry::seq`], found again after a reopen or a crash from
    /// the last record that has one (read from disk by the first call that needs it:
    /// `docs/design.md` 2.2.1). `None` if no record has one. On a read-only handle, what
    /// the records it can read say (looked up at each call).
    pub fn last_seq(&self) -> Option<u64> {
        let shared = self.shared();
        if shared.read_only {
            return shared.last_seq_on_disk(u64::MAX);
        }
        loop {
            if let LastSeq::Known(last) = shared.staging.lock().last_seq {
                return last;
            }
            // Never fails (damage ends a walk), and leaves the sequence known.
            let _ = shared.load_last_seq();
        }
    }
}

impl Record {
    /// The record's extension block, decoded (checked already when the frame was read).
    fn extension(&self) -> Option<ExtensionView<'_>> {
        let block = self.extension_block();
        if block.is_empty() {
            return None;
        }
        extension::decode(block).ok()
    }

    /// The record's key ([`Entry::key`]), if it has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.extension()?.key
    }

    /// The record's idempotency id ([`Entry::id`]), if it has one.
    pub fn id(&self) -> Option<&[u8]> {
        self.extension()?.id
    }

    /// The record's caller sequence ([`Log::append_seq`], [`Entry::seq`]), if it has one.
    pub fn seq(&self) -> Option<u64> {
        self.extension()?.seq
    }

    /// The value of the header `name`, if the record has it.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value)
    }

    /// The record's headers as (name, value), in the order they were given.
    pub fn headers(&self) -> Headers<'_> {
        Headers {
            inner: self.extension().map(|view| view.headers()),
        }
    }
}

/// The headers of a [`Record`], as (name, value) in the order they were given.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    inner: Option<HeaderIter<'a>>,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<(&'a str, &'a [u8])> {
        self.inner.as_mut()?.next()
    }
}

/// What a writable log knows of its last caller sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastSeq {
    /// Not read from disk yet: no sequence was staged since open.
    Unknown,
    /// The last sequence staged or on disk (`None`: no record has one).
    Known(Option<u64>),
}

impl LastSeq {
    /// Takes `provided` as the last sequence if it is above the current one, else
    /// [`Error::SequenceViolation`]. The sequence must be known.
    pub(crate) fn advance(&mut self, provided: u64) -> Result<()> {
        let LastSeq::Known(last) = *self else {
            debug_assert!(false, "a sequence staged before the last one was read");
            return Err(Error::InvalidEntry {
                field: "seq".to_string(),
                reason: "the log's last sequence is not known yet".to_string(),
            });
        };
        if let Some(last) = last.filter(|&last| provided <= last) {
            return Err(Error::SequenceViolation { last, provided });
        }
        *self = LastSeq::Known(Some(provided));
        Ok(())
    }
}

impl Shared {
    /// Reads the log's last caller sequence from disk into staging, unless it is known.
    /// Runs outside the staging lock; no sequence is staged until it is known, so the
    /// records found at open are all it must read.
    pub(crate) fn load_last_seq(&self) -> Result<()> {
        let end = {
            let st = self.staging.lock();
            if st.last_seq != LastSeq::Unknown {
                return Ok(());
            }
            st.ids.open_end_offset()
        };
        let last = self.last_seq_on_disk(end);
        let mut st = self.staging.lock();
        if st.last_seq == LastSeq::Unknown {
            st.last_seq = LastSeq::Known(last);
        }
        Ok(())
    }

    /// Reads the ids of the records found at open into the staging's id index, unless
    /// that was done (`idempotency.rs`). Runs outside the staging lock: appends go on
    /// meanwhile (their ids are recorded as they are staged).
    fn load_ids(&self) -> Result<()> {
        let (hasher, end) = {
            let st = self.staging.lock();
            if st.ids.is_loaded() {
                return Ok(());
            }
            (st.ids.hasher(), st.ids.open_end_offset())
        };
        let mut on_disk = HashMap::new();
        // Records below the first offset (trimmed, though still in the first segment's
        // file) are not in the log: their ids are not either.
        let first = self.first_offset.load(std::sync::atomic::Ordering::SeqCst);
        let segments = self.segments.read().clone();
        for segment in &segments {
            if segment.base_offset() >= end {
                break;
            }
            let sealed_end = *segment.end_offset.read();
            if let Some(sealed_end) = sealed_end {
                // A sealed segment: its summary file, or a walk that writes one.
                let summary =
                    crate::summary::sealed_summary(&self.dir, segment, sealed_end, self.read_only)?;
                for (offset, id) in summary.ids.iter().filter(|(o, _)| *o >= first) {
                    on_disk.entry(hasher.hash(id)).or_insert(*offset);
                }
                continue;
            }
            let segment_end = end;
            let stop = walk_extensions(segment, segment_end, |offset, _, view| {
                if let Some(id) = view.id.filter(|_| offset >= first) {
                    on_disk.entry(hasher.hash(id)).or_insert(offset);
                }
            })?;
            if stop.offset < segment_end {
                return Err(Error::corruption(
                    &segment.path,
                    stop.position,
                    format!(
                        "record {} cannot be read while reading the ids of the log for \
                         append_once",
                        stop.offset
                    ),
                ));
            }
        }
        self.staging.lock().ids.install(on_disk);
        Ok(())
    }

    /// The caller sequence of the last record below `end_offset` that has one, from the
    /// segments: the newest segment's records walked from its start (frame headers only;
    /// the checksum and extension block of each extended frame checked), then, only while
    /// none is found, the segments before it, newest first.
    ///
    /// So the cost is bounded by the segment size when the newest segment holds a
    /// sequenced record (a log whose records all carry sequences), and otherwise grows
    /// with the segments written since the last one that does. A damaged frame ends the
    /// walk of its segment (reads and `verify` report the damage).
    pub(crate) fn last_seq_on_disk(&self, end_offset: u64) -> Option<u64> {
        let (active, _, cursor_offset) = self.staging.lock().cursor();
        let end_offset = end_offset.min(cursor_offset);
        let segments = self.segments.read().clone();
        for segment in segments.iter().rev() {
            if segment.base_offset() >= end_offset {
                continue;
            }
            let sealed_end = *segment.end_offset.read();
            let last = match sealed_end {
                Some(sealed_end) if !Arc::ptr_eq(segment, &active) => {
                    // Its summary file, or a walk that writes one; past damage, what a
                    // walk up to it finds.
                    crate::summary::sealed_summary(&self.dir, segment, sealed_end, self.read_only)
                        .map(|summary| summary.last_seq)
                        .unwrap_or_else(|_| last_seq_in(segment, sealed_end.min(end_offset)))
                }
                _ => last_seq_in(segment, end_offset),
            };
            if last.is_some() {
                return last;
            }
        }
        None
    }
}

/// The caller sequence of the last record below `end_offset` in `segment` that has one.
fn last_seq_in(segment: &Segment, end_offset: u64) -> Option<u64> {
    let mut last = None;
    // The highest, which is the last one unless the data breaks the rule (`verify`
    // reports that): a new sequence must be above every one the log holds. A damaged
    // frame ends the walk (reads and `verify` report it).
    let _ = walk_extensions(segment, end_offset, |_, _, view| {
        last = last.max(view.seq);
    });
    last
}

/// For `verify`: the first record of `segment` (below `end_offset`) whose caller sequence
/// is not above the one before it, `previous` carrying (sequence, offset) across
/// segments. Returns its position and what is wrong.
pub(crate) fn backward_sequence(
    segment: &Segment,
    end_offset: u64,
    previous: &mut Option<(u64, u64)>,
) -> Option<(u64, String)> {
    let mut found = None;
    let _ = walk_extensions(segment, end_offset, |offset, position, view| {
        let Some(seq) = view.seq else {
            return;
        };
        if found.is_some() {
            return;
        }
        if let Some((last, last_offset)) = *previous {
            if seq <= last {
                found = Some((
                    position,
                    format!(
                        "caller sequence {seq} at offset {offset} is not above sequence \
                         {last} at offset {last_offset}: sequences must strictly increase"
                    ),
                ));
            }
        }
        *previous = Some((seq, offset));
    });
    found
}

/// Where a walk of a segment's records stopped: the offset it expected next, at this
/// position.
pub(crate) struct WalkStop {
    /// The offset the walk expected next.
    pub(crate) offset: u64,
    /// Where that record should have been.
    pub(crate) position: u64,
}

/// Calls `each(offset, position, extension)` for every extended record of `segment`
/// below `end_offset`, in order. Reads frame headers only, and checks the checksum and
/// extension block of each extended frame; stops at the first frame that is not the
/// expected record (damage, or the end of data) and says where.
pub(crate) fn walk_extensions(
    segment: &Segment,
    end_offset: u64,
    mut each: impl FnMut(u64, u64, ExtensionView<'_>),
) -> Result<WalkStop> {
    let bytes = segment.bytes()?;
    let mut position = SEGMENT_HEADER_BYTES;
    let mut expected = segment.base_offset();
    // Bounded: every step moves at least one frame header forward.
    while expected < end_offset {
        let Some(rest) = bytes.get(position as usize..) else {
            break;
        };
        let Some((offset, padded_bytes)) = format::peek_frame(rest) else {
            break;
        };
        if offset != MARKER_OFFSET {
            if offset != expected {
                break;
            }
            if format::peek_extended(rest) {
                let Ok(frame) = format::decode_frame(rest, segment.seed) else {
                    break;
                };
                let block_end = (format::FRAME_HEADER_BYTES + frame.extension_bytes) as usize;
                let block = rest
                    .get(format::FRAME_HEADER_BYTES as usize..block_end)
                    .unwrap_or_default();
                if let Ok(view) = extension::decode(block) {
                    each(offset, position, view);
                }
            }
            expected += 1;
        }
        position += padded_bytes;
    }
    Ok(WalkStop {
        offset: expected,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_with_nothing_but_a_payload_has_an_empty_extension() {
        let entry = Entry::new(b"p").timestamp_ms(5);
        assert!(entry.extension().is_empty());
        let entry = Entry::new(b"p").header("a", b"1").header("b", b"2");
        let extension = entry.extension();
        assert!(!extension.is_empty());
        assert_eq!(extension.headers, &[("a", &b"1"[..]), ("b", &b"2"[..])]);
    }
}
