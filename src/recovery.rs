//! Finding the end of valid data, and telling a torn tail from corruption.
//!
//! The rules (docs/design.md, "Recovery"):
//! - Frames are read from a start position whose bytes are known durable (the segment's
//!   data start, or the checkpoint of its index file) until the first position `P` that
//!   holds no valid frame.
//! - Bytes past `P` are then searched for valid frames. Commit markers found there say
//!   how far the segment was durable when they were written. If any proves `P` durable,
//!   the bad frame is corruption of acknowledged data: an error under every policy.
//! - Otherwise what starts at `P` is a torn tail (it could have been in flight at a
//!   crash): `Strict` refuses to open, `TruncateTorn` zeroes it up to the last non-zero
//!   byte, syncs, and opens.
//! - In a recycled segment the bytes past the data are an earlier life's, never zeros,
//!   and never valid under this segment's nonce: only frames that validate under it
//!   (an incomplete last batch, or frames past `P`) make a torn tail, zeroed up to the
//!   last of them; other bytes there end the data cleanly.

use crate::format::{self, FrameError, FrameKind, IndexEntry, IndexFile, SEGMENT_HEADER_BYTES};
use crate::options::MAX_INDEX_INTERVAL_BYTES;

/// Where a scan starts and what it knows.
#[derive(Debug, Clone)]
pub(crate) struct ScanStart {
    /// First frame position (8-aligned, at or after the header).
    pub(crate) position: u64,
    /// Offset the first record there must carry.
    pub(crate) offset: u64,
    /// Every byte below this position is known durable.
    pub(crate) proven_durable: u64,
    /// Sealed segments: the scan must reach this offset (the next segment's base).
    pub(crate) stop_offset: Option<u64>,
    /// Index entries already known, continued by the scan.
    pub(crate) entries: Vec<IndexEntry>,
    /// No byte at or past this position was ever written (a durable write bound from
    /// the index file): the search past the end of data stops there. `u64::MAX`
    /// searches to the end of the segment.
    pub(crate) search_end: u64,
    /// The segment is recycled ([`format::SegmentHeader::recycled`]): bytes past its
    /// data are an earlier life's, so only frames valid under its nonce count there.
    pub(crate) recycled: bool,
}

impl ScanStart {
    /// A scan of a whole segment from its data start, nothing known durable beyond the
    /// header, searching to the end; `stop_offset` as for sealed segments.
    pub(crate) fn from_data_start(base_offset: u64, stop_offset: Option<u64>) -> ScanStart {
        ScanStart {
            position: format::SEGMENT_HEADER_BYTES,
            offset: base_offset,
            proven_durable: format::SEGMENT_HEADER_BYTES,
            stop_offset,
            entries: Vec::new(),
            search_end: u64::MAX,
            recycled: false,
        }
    }

    /// The same start in a segment whose header says whether it is `recycled`.
    pub(crate) fn in_recycled(mut self, recycled: bool) -> ScanStart {
        self.recycled = recycled;
        self
    }
}

/// How the data of a scanned segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// A zero length word with nothing written after it.
    Clean,
    /// The scan reached its stop offset, or the segment is full.
    Full,
    /// Bytes at `position` that could have been in flight at a crash; the last non-zero
    /// byte ends before `garbage_end`.
    Torn {
        position: u64,
        garbage_end: u64,
        reason: String,
    },
    /// Damage to bytes that were durable.
    Corrupt { position: u64, reason: String },
}

/// What a scan found.
#[derive(Debug, Clone)]
pub(crate) struct ScanOutcome {
    /// End of the last valid frame.
    pub(crate) end_position: u64,
    /// Offset the next record will get.
    pub(crate) next_offset: u64,
    /// Records read by this scan.
    pub(crate) records_count: u64,
    /// Sparse index entries for all valid records (the given ones included).
    pub(crate) entries: Vec<IndexEntry>,
    /// How the data ends.
    pub(crate) tail: Tail,
}

/// Most bytes a search past a bad frame checksums, as a multiple of the segment size:
/// hostile bytes can make every position look like a frame header, and open must still
/// finish in bounded time.
const LOOKAHEAD_CRC_BUDGET_FACTOR: u64 = 4;

/// The valid frames read from a start, as far as they go.
#[derive(Debug, Clone)]
pub(crate) struct Frames {
    /// Where reading stopped: at the stop offset, at the end of the data, or at the first
    /// position that holds no valid frame.
    pub(crate) stopped_at: u64,
    /// Offset after the last valid record.
    pub(crate) next_offset: u64,
    /// End position of the last complete batch.
    pub(crate) complete_position: u64,
    /// Offset after the last complete batch.
    pub(crate) complete_offset: u64,
    /// Sparse index entries for every valid record read (the given ones included).
    pub(crate) entries: Vec<IndexEntry>,
    /// Why reading stopped short of the stop offset and the end of the data, if it did.
    pub(crate) problem: Option<String>,
}

/// Reads frames, each checked in full (CRC, and the offset expected next), from
/// `start` until the stop offset, the end of the data, or the first position that holds
/// no valid frame. Whole batches or not: [`scan`] cuts an incomplete last batch, a read
/// needs every valid record.
pub(crate) fn read_frames(
    bytes: &[u8],
    seed: u32,
    start: ScanStart,
    index_interval_bytes: u64,
) -> Frames {
    let mut position = start.position;
    let mut next_offset = start.offset;
    let mut entries = start.entries;
    // End of the last complete batch: records of a batch whose last record is missing
    // never survive alone.
    let mut complete = (position, next_offset);
    let len = bytes.len() as u64;
    let problem = loop {
        if start.stop_offset == Some(next_offset) {
            // The next segment starts here: what lies past (records a truncation cut
            // away) is not this segment's, and a batch cut there ends here.
            complete = (position, next_offset);
            break None;
        }
        if position >= len {
            break None;
        }
        match format::decode_frame(&bytes[position as usize..], seed) {
            Ok(frame) => match frame.kind {
                FrameKind::Record { offset, continues } if offset == next_offset => {
                    let due = entries
                        .last()
                        .is_none_or(|e| position - e.position >= index_interval_bytes);
                    if due {
                        entries.push(IndexEntry { offset, position });
                    }
                    next_offset += 1;
                    position += frame.padded_bytes;
                    if !continues {
                        complete = (position, next_offset);
                    }
                }
                FrameKind::Record { offset, .. } => {
                    break Some(format!(
                        "record carries offset {offset} where offset {next_offset} belongs"
                    ))
                }
                FrameKind::Marker { durable_position } if durable_position <= position => {
                    position += frame.padded_bytes;
                    if complete.1 == next_offset {
                        complete.0 = position;
                    }
                }
                FrameKind::Marker { durable_position } => {
                    break Some(format!(
                        "commit marker claims durability up to {durable_position}, past itself"
                    ))
                }
            },
            Err(FrameError::End) => break None,
            Err(FrameError::Invalid(why)) => break Some(why.to_string()),
        }
    };
    Frames {
        stopped_at: position,
        next_offset,
        complete_position: complete.0,
        complete_offset: complete.1,
        entries,
        problem,
    }
}

/// Scans the frames of one segment (`bytes` is the whole file).
pub(crate) fn scan(
    bytes: &[u8],
    seed: u32,
    start: ScanStart,
    index_interval_bytes: u64,
) -> ScanOutcome {
    let start_offset = start.offset;
    let proven_durable = start.proven_durable;
    let stop_offset = start.stop_offset;
    let search_end = start.search_end;
    let recycled = start.recycled;
    let frames = read_frames(bytes, seed, start, index_interval_bytes);
    let stopped_at = frames.stopped_at;
    let end_position = frames.complete_position;
    let end_offset = frames.complete_offset;
    let problem = if end_offset < frames.next_offset {
        Some(format!(
            "batch starting at offset {end_offset} is incomplete: {}",
            frames
                .problem
                .as_deref()
                .unwrap_or("its last record is missing")
        ))
    } else {
        frames.problem
    };
    let mut entries = frames.entries;
    entries.retain(|e| e.offset < end_offset);
    let len = bytes.len() as u64;
    let reached_stop = stop_offset == Some(end_offset);
    let tail = if problem.is_none() && (reached_stop || stopped_at >= len) {
        match stop_offset {
            Some(stop) if !reached_stop => Tail::Corrupt {
                position: end_position,
                reason: format!(
                    "segment ends at offset {end_offset} but the next segment starts at {stop}"
                ),
            },
            _ => Tail::Full,
        }
    } else {
        let judged = Judged {
            position: end_position,
            offset: end_offset,
            stopped_at,
            problem,
            proven_durable,
            stop_offset,
            search_end,
            recycled,
        };
        judge_tail(bytes, seed, judged)
    };
    ScanOutcome {
        end_position,
        next_offset: end_offset,
        records_count: end_offset - start_offset,
        entries,
        tail,
    }
}

/// Most bytes past a checkpoint's last index entry at which one of its frames may start.
/// The writer gives a record an entry once it starts an index interval (at most 1 MiB)
/// past the last entry; after an index rebuild on a read (reader.rs) the gap can grow to
/// two intervals. A checkpoint that needs a longer walk is not trusted: the check at open
/// stays bounded whatever the file says.
const CHECKPOINT_WALK_BYTES: u64 = 2 * MAX_INDEX_INTERVAL_BYTES;

/// Checks a checkpoint (the active segment's index file, already decoded, so its entries
/// increase and lie below its data end) against the data, reading frame headers only:
/// the first entry names the segment's first record, the last entry holds its record,
/// and a walk from there lands exactly on `data_end`, after the last record of a whole
/// batch, having counted records up to `next_offset`. Costs a page or two, never a scan.
/// Entries in between are checked when a read follows one (reader.rs). Returns why the
/// checkpoint disagrees with the data.
pub(crate) fn check_checkpoint(
    bytes: &[u8],
    base_offset: u64,
    checkpoint: &IndexFile,
) -> Result<(), String> {
    let data_end = checkpoint.data_end;
    let next_offset = checkpoint.next_offset;
    let (Some(first), Some(last)) = (checkpoint.entries.first(), checkpoint.entries.last()) else {
        if next_offset == base_offset && data_end == SEGMENT_HEADER_BYTES {
            return Ok(());
        }
        return Err(format!(
            "it has no index entries, yet says the data ends at byte {data_end} before offset {next_offset}"
        ));
    };
    if first.offset != base_offset {
        return Err(format!(
            "its first index entry names offset {}, not the segment's first record {base_offset}",
            first.offset
        ));
    }
    for entry in [first, last] {
        let held = bytes
            .get(entry.position as usize..)
            .and_then(format::peek_frame)
            .map(|(offset, _)| offset);
        if held != Some(entry.offset) {
            return Err(format!(
                "its index entry for offset {} points at byte {}, which does not hold it",
                entry.offset, entry.position
            ));
        }
    }
    let (position, offset, _) =
        walk_headers(bytes, SEGMENT_HEADER_BYTES, base_offset, first.position)?;
    if position != first.position || offset != base_offset {
        return Err(format!(
            "the segment's first record is not at byte {}, where its first index entry says",
            first.position
        ));
    }
    let (position, offset, continues) = walk_headers(bytes, last.position, last.offset, data_end)?;
    if position != data_end {
        return Err(format!(
            "its data end {data_end} falls inside a frame that ends at byte {position}"
        ));
    }
    if offset != next_offset {
        return Err(format!(
            "it says offset {next_offset} comes next at byte {data_end}, the data says offset {offset}"
        ));
    }
    if continues {
        return Err(format!("its data end {data_end} is inside an atomic batch"));
    }
    Ok(())
}

/// Follows frames by their headers alone (length and offset, no checksum) from
/// `position`, where record `offset` or a commit marker before it starts, until a frame
/// ends at or past `until`. Returns the position reached, the offset after the last
/// record passed, and whether that record's batch continues; or why the frames do not
/// follow on.
fn walk_headers(
    bytes: &[u8],
    mut position: u64,
    mut offset: u64,
    until: u64,
) -> Result<(u64, u64, bool), String> {
    let limit = position.saturating_add(CHECKPOINT_WALK_BYTES);
    let mut continues = false;
    while position < until {
        if position >= limit {
            return Err(format!(
                "no index entry within {CHECKPOINT_WALK_BYTES} bytes before byte {position}"
            ));
        }
        let at = bytes.get(position as usize..).unwrap_or_default();
        let Some((found, padded_bytes)) = format::peek_frame(at) else {
            return Err(format!("no frame starts at byte {position}"));
        };
        if found == format::MARKER_OFFSET {
            // A commit marker.
        } else if found == offset {
            offset += 1;
            continues = format::peek_continues(at);
        } else {
            return Err(format!(
                "byte {position} holds offset {found} where offset {offset} belongs"
            ));
        }
        position += padded_bytes;
    }
    Ok((position, offset, continues))
}

/// What [`judge_tail`] decides about.
struct Judged {
    /// End of the last complete batch.
    position: u64,
    /// The offset of the record after it: every record past it has this offset or more.
    offset: u64,
    /// Where reading stopped.
    stopped_at: u64,
    /// Why, if not at a clean end.
    problem: Option<String>,
    /// Every byte below this position is known durable.
    proven_durable: u64,
    /// Sealed segments: the offset the data must reach.
    stop_offset: Option<u64>,
    /// Where the search past the end of data stops (see [`ScanStart::search_end`]).
    search_end: u64,
    /// See [`ScanStart::recycled`].
    recycled: bool,
}

/// Decides what the data from `position` on is: clean end, torn tail or corruption.
fn judge_tail(bytes: &[u8], seed: u32, judged: Judged) -> Tail {
    let Judged {
        position,
        offset,
        stopped_at,
        problem,
        proven_durable,
        stop_offset,
        search_end,
        recycled,
    } = judged;
    let past = look_past(bytes, seed, stopped_at, offset, search_end);
    // What this segment wrote past the end: any non-zero byte in a fresh segment; in a
    // recycled one only frames valid under its nonce (the rest is an earlier life's).
    let written_end = if recycled {
        past.last_valid_end
    } else {
        past.last_nonzero_end
    };
    if let Some(stop) = stop_offset {
        return Tail::Corrupt {
            position,
            reason: format!(
                "{}; this sealed segment must hold records up to offset {stop}",
                problem.as_deref().unwrap_or("data ends early")
            ),
        };
    }
    let proof = if proven_durable > position {
        Some(format!(
            "the index checkpoint shows bytes up to {proven_durable} were durable"
        ))
    } else if past.marker_durable > position {
        Some(format!(
            "a commit marker at {} shows bytes up to {} were durable",
            past.marker_position, past.marker_durable
        ))
    } else {
        None
    };
    let what = match &problem {
        Some(problem) => problem.clone(),
        None if written_end > stopped_at => "zeroed bytes followed by written data".to_string(),
        None => "the data ends here".to_string(),
    };
    if let Some(proof) = proof {
        return Tail::Corrupt {
            position,
            reason: format!("{what}; {proof}"),
        };
    }
    // A recycled segment's data may end at any byte of its earlier life: only frames
    // of its own past the last complete batch (read, or found by the search) are torn.
    let ends_cleanly = if recycled {
        position == stopped_at && written_end <= stopped_at
    } else {
        problem.is_none() && written_end <= stopped_at
    };
    if ends_cleanly {
        return Tail::Clean;
    }
    Tail::Torn {
        position,
        garbage_end: written_end.max(stopped_at + format::FRAME_ALIGN_BYTES),
        reason: what,
    }
}

struct LookPast {
    marker_durable: u64,
    marker_position: u64,
    /// End of the last non-zero 8-byte word.
    last_nonzero_end: u64,
    /// End of the last frame that validates under the segment's nonce.
    last_valid_end: u64,
}

/// Searches the bytes after `from` (up to `search_end`) for valid frames and the last
/// non-zero byte. Records there have offsets from `offset_floor` on.
///
/// The checksums it computes are bounded (hostile bytes that look like frame headers
/// everywhere must still open in bounded time), so it spends them only on frames that
/// could be real: a commit marker is exactly [`format::MARKER_BYTES`] long, and a record
/// past `from` has an offset at or above `offset_floor` and at most one more per frame
/// header that fits in the bytes left. Garbage with plausible lengths once used up the
/// budget before the real markers after it were reached, and damage to durable records
/// was then cut as a torn tail.
fn look_past(bytes: &[u8], seed: u32, from: u64, offset_floor: u64, search_end: u64) -> LookPast {
    // Valid data past the bound means the bound is wrong: search everything.
    let len = if search_end >= from {
        search_end.min(bytes.len() as u64)
    } else {
        bytes.len() as u64
    };
    let bytes = &bytes[..len as usize];
    let mut found = LookPast {
        marker_durable: 0,
        marker_position: 0,
        last_nonzero_end: from,
        last_valid_end: from,
    };
    let mut crc_budget = len.saturating_mul(LOOKAHEAD_CRC_BUDGET_FACTOR);
    let mut position = from;
    while position + 8 <= len {
        let at = position as usize;
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        if word == 0 {
            position += 8;
            continue;
        }
        found.last_nonzero_end = position + 8;
        let frame_len = ((word >> 32) as u32 & format::FRAME_LENGTH_MASK) as u64;
        let claimed_offset = bytes
            .get(at + 8..at + 16)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        let could_be_real = match claimed_offset {
            Some(u64::MAX) => frame_len == format::MARKER_BYTES,
            Some(claimed) => {
                claimed >= offset_floor
                    && claimed - offset_floor <= (len - position) / format::FRAME_HEADER_BYTES
            }
            None => false,
        };
        let plausible = frame_len >= format::FRAME_HEADER_BYTES
            && position + format::padded_frame_bytes(frame_len) <= len
            && could_be_real
            && crc_budget >= frame_len;
        if plausible {
            crc_budget -= frame_len;
            if let Ok(frame) = format::decode_frame(&bytes[at..], seed) {
                if let FrameKind::Marker { durable_position } = frame.kind {
                    if durable_position <= position && durable_position > found.marker_durable {
                        found.marker_durable = durable_position;
                        found.marker_position = position;
                    }
                }
                found.last_nonzero_end = position + frame.padded_bytes;
                found.last_valid_end = position + frame.padded_bytes;
                position += frame.padded_bytes;
                continue;
            }
        }
        position += 8;
    }
    if position < len && bytes[position as usize..].iter().any(|b| *b != 0) {
        found.last_nonzero_end = len;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_marker, encode_record, record_bytes, MARKER_BYTES};

    const SEG: usize = 64 << 10;

    struct Builder {
        bytes: Vec<u8>,
        position: usize,
        offset: u64,
        seed: u32,
        continues: bool,
    }

    impl Builder {
        fn new() -> Builder {
            Builder::with_len(SEG)
        }
        fn with_len(len: usize) -> Builder {
            Builder {
                bytes: vec![0; len],
                position: 64,
                offset: 100,
                seed: format::frame_seed(77),
                continues: false,
            }
        }
        fn record(&mut self, payload_bytes: usize) -> usize {
            let at = self.position;
            let n = record_bytes(payload_bytes as u64) as usize;
            let payload = vec![0x5a; payload_bytes];
            encode_record(
                &mut self.bytes[at..at + n],
                self.seed,
                self.offset,
                1,
                &payload,
                self.continues,
            );
            self.offset += 1;
            self.position += n;
            at
        }
        fn marker(&mut self, durable: u64) -> usize {
            let at = self.position;
            let n = MARKER_BYTES as usize;
            encode_marker(&mut self.bytes[at..at + n], self.seed, 1, durable);
            self.position += n;
            at
        }
        fn scan(&self, proven: u64) -> ScanOutcome {
            scan(
                &self.bytes,
                self.seed,
                ScanStart {
                    position: 64,
                    offset: 100,
                    proven_durable: proven,
                    stop_offset: None,
                    entries: vec![],
                    search_end: u64::MAX,
                    recycled: false,
                },
                256,
            )
        }
    }

    /// A segment file whose earlier life (another nonce, other offsets and frame
    /// boundaries) filled it with valid frames, now holding `records` frames of its own.
    fn recycled_with(records: usize) -> Builder {
        let mut old = Builder::new();
        old.seed = format::frame_seed(12345);
        old.offset = 7;
        while old.position + 2000 < SEG {
            old.record(300 + old.position % 700);
            if old.offset % 5 == 0 {
                old.marker(old.position as u64);
            }
        }
        let mut b = Builder::new();
        b.bytes = old.bytes;
        for i in 0..records {
            b.record(40 + i * 13);
        }
        b
    }

    fn scan_recycled(b: &Builder, proven: u64) -> ScanOutcome {
        scan(
            &b.bytes,
            b.seed,
            ScanStart::from_data_start(100, None)
                .in_recycled(true)
                .tap_proven(proven),
            256,
        )
    }

    impl ScanStart {
        fn tap_proven(mut self, proven: u64) -> ScanStart {
            self.proven_durable = proven;
            self
        }
    }

    #[test]
    fn an_earlier_lifes_frames_end_a_recycled_segment_cleanly() {
        for records in [0, 1, 5, 40] {
            let b = recycled_with(records);
            let out = scan_recycled(&b, 64);
            assert_eq!(out.tail, Tail::Clean, "{records} records");
            assert_eq!(out.next_offset, 100 + records as u64);
            assert_eq!(out.end_position, b.position as u64);
            // The same bytes in a segment not marked recycled are a torn tail.
            assert!(matches!(b.scan(64).tail, Tail::Torn { .. }), "{records}");
        }
    }

    #[test]
    fn own_frames_past_the_end_of_a_recycled_segment_are_a_torn_tail() {
        // An incomplete batch of its own: cut, and zeroed up to its last frame.
        let mut b = recycled_with(3);
        let batch_start = b.position as u64;
        b.continues = true;
        b.record(100);
        let end = b.record(100) as u64 + record_bytes(100);
        let out = scan_recycled(&b, 64);
        match out.tail {
            Tail::Torn {
                position,
                garbage_end,
                ..
            } => {
                assert_eq!(position, batch_start);
                assert!(garbage_end >= end, "{garbage_end} < {end}");
            }
            other => panic!("expected a torn tail, got {other:?}"),
        }
        assert_eq!(out.next_offset, 103);
        // A frame of its own after a damaged one: torn, up to that frame.
        let mut b = recycled_with(3);
        let hole = b.position;
        b.record(64);
        let after = b.record(64) as u64 + record_bytes(64);
        b.bytes[hole + 30] ^= 0xff;
        match scan_recycled(&b, 64).tail {
            Tail::Torn { garbage_end, .. } => assert!(garbage_end >= after),
            other => panic!("expected a torn tail, got {other:?}"),
        }
    }

    #[test]
    fn damage_proven_durable_in_a_recycled_segment_is_corruption() {
        let mut b = recycled_with(6);
        let damaged = b.position - record_bytes(40 + 5 * 13) as usize;
        b.marker(b.position as u64);
        b.bytes[damaged + 30] ^= 0xff;
        assert!(matches!(scan_recycled(&b, 64).tail, Tail::Corrupt { .. }));
        let b = recycled_with(6);
        let mut damaged_bytes = b.bytes.clone();
        damaged_bytes[200] ^= 0xff;
        let out = scan(
            &damaged_bytes,
            b.seed,
            ScanStart::from_data_start(100, None)
                .in_recycled(true)
                .tap_proven(b.position as u64),
            256,
        );
        assert!(matches!(out.tail, Tail::Corrupt { .. }), "{:?}", out.tail);
    }

    #[test]
    fn clean_end_after_records_and_markers() {
        let mut b = Builder::new();
        b.marker(64);
        for _ in 0..20 {
            b.record(50);
        }
        let end = b.position as u64;
        let out = b.scan(64);
        assert_eq!(out.tail, Tail::Clean);
        assert_eq!(out.end_position, end);
        assert_eq!(out.next_offset, 120);
        assert_eq!(out.records_count, 20);
        assert_eq!(out.entries[0].offset, 100);
        assert!(out
            .entries
            .windows(2)
            .all(|w| w[1].position - w[0].position >= 256));
    }

    #[test]
    fn garbage_after_the_end_is_a_torn_tail() {
        let mut b = Builder::new();
        b.record(10);
        let end = b.position;
        b.bytes[end..end + 13].fill(0xee);
        let out = b.scan(64);
        match out.tail {
            Tail::Torn {
                position,
                garbage_end,
                ..
            } => {
                assert_eq!(position, end as u64);
                assert!(garbage_end >= (end + 13) as u64);
            }
            other => panic!("expected torn tail, got {other:?}"),
        }
    }

    #[test]
    fn bad_record_proven_durable_by_a_later_marker_is_corruption() {
        let mut b = Builder::new();
        let first = b.record(10);
        let second_batch = b.position as u64;
        b.marker(second_batch);
        b.record(10);
        b.bytes[first + 30] ^= 1;
        match b.scan(64).tail {
            Tail::Corrupt { position, reason } => {
                assert_eq!(position, first as u64);
                assert!(reason.contains("commit marker"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn bad_record_in_the_last_batch_is_torn() {
        let mut b = Builder::new();
        b.marker(64);
        b.record(10);
        let batch = b.position as u64;
        b.marker(64);
        let victim = b.record(10);
        b.record(10);
        b.bytes[victim + 26] ^= 1;
        let _ = batch;
        assert!(
            matches!(b.scan(64).tail, Tail::Torn { position, .. } if position == victim as u64)
        );
    }

    #[test]
    fn zeroed_durable_bytes_are_corruption() {
        let mut b = Builder::new();
        let first = b.record(100);
        b.record(100);
        let end = b.position as u64;
        b.bytes[first..first + 8].fill(0);
        assert!(
            matches!(b.scan(end).tail, Tail::Corrupt { position, .. } if position == first as u64)
        );
    }

    #[test]
    fn sealed_segment_must_reach_its_stop_offset() {
        let mut b = Builder::new();
        b.record(10);
        let out = scan(
            &b.bytes,
            b.seed,
            ScanStart {
                position: 64,
                offset: 100,
                proven_durable: 64,
                stop_offset: Some(102),
                entries: vec![],
                search_end: u64::MAX,
                recycled: false,
            },
            256,
        );
        assert!(matches!(out.tail, Tail::Corrupt { .. }));
    }

    #[test]
    fn an_incomplete_batch_is_cut_whole() {
        let mut b = Builder::new();
        b.record(10);
        let batch_start = b.position as u64;
        b.continues = true;
        b.record(10);
        b.record(10);
        // The batch's last record never made it.
        let out = b.scan(64);
        assert_eq!(out.next_offset, 101);
        assert_eq!(out.end_position, batch_start);
        assert!(matches!(out.tail, Tail::Torn { position, .. } if position == batch_start));
    }

    #[test]
    fn hostile_bytes_scan_in_bounded_time() {
        let mut b = Builder::new();
        b.record(10);
        let end = b.position;
        // Every word claims a plausible frame length.
        for chunk in b.bytes[end..].chunks_exact_mut(8) {
            chunk[4..8].copy_from_slice(&(4000u32).to_le_bytes());
        }
        assert!(matches!(b.scan(64).tail, Tail::Torn { .. }));
    }

    /// The checkpoint a writer would write for the data built so far (index interval 256).
    fn checkpoint_of(b: &Builder) -> IndexFile {
        let out = b.scan(64);
        assert!(matches!(out.tail, Tail::Clean), "{:?}", out.tail);
        IndexFile {
            segment_id: 0,
            nonce: 77,
            base_offset: 100,
            data_end: out.end_position,
            next_offset: out.next_offset,
            write_bound: u64::MAX,
            clean: true,
            sealed: false,
            entries: out.entries,
        }
    }

    /// Batches of one record, each after a commit marker, as `Sync` appends write them.
    fn appended(records: usize, payload_bytes: usize) -> Builder {
        let mut b = Builder::new();
        for _ in 0..records {
            let at = b.position as u64;
            b.marker(at);
            b.record(payload_bytes);
        }
        b
    }

    fn rejection(b: &Builder, checkpoint: &IndexFile) -> String {
        match check_checkpoint(&b.bytes, 100, checkpoint) {
            Ok(()) => panic!("accepted {checkpoint:?}"),
            Err(why) => why,
        }
    }

    #[test]
    fn a_checkpoint_written_for_the_data_agrees_with_it() {
        let b = appended(40, 50);
        let checkpoint = checkpoint_of(&b);
        assert!(checkpoint.entries.len() > 3);
        assert_eq!(checkpoint.next_offset, 140);
        assert_eq!(check_checkpoint(&b.bytes, 100, &checkpoint), Ok(()));
        // An older checkpoint of the same data (fewer records) agrees too.
        let mut older = checkpoint.clone();
        let kept = older.entries.len() - 1;
        older.entries.truncate(kept);
        let last = older.entries[kept - 1];
        older.data_end = last.position + record_bytes(50);
        older.next_offset = last.offset + 1;
        assert_eq!(check_checkpoint(&b.bytes, 100, &older), Ok(()));
    }

    #[test]
    fn an_empty_segment_has_no_entries_and_no_records() {
        let b = Builder::new();
        let empty = IndexFile {
            segment_id: 0,
            nonce: 77,
            base_offset: 100,
            data_end: 64,
            next_offset: 100,
            write_bound: u64::MAX,
            clean: true,
            sealed: false,
            entries: vec![],
        };
        assert_eq!(check_checkpoint(&b.bytes, 100, &empty), Ok(()));
        let b = appended(5, 50);
        let mut no_entries = checkpoint_of(&b);
        no_entries.entries.clear();
        assert!(rejection(&b, &no_entries).contains("no index entries"));
    }

    #[test]
    fn a_data_end_inside_a_frame_is_rejected() {
        let b = appended(40, 50);
        let mut checkpoint = checkpoint_of(&b);
        checkpoint.data_end -= 8;
        let why = rejection(&b, &checkpoint);
        assert!(why.contains("inside a frame"), "{why}");
        assert!(
            why.contains(&format!("ends at byte {}", b.position)),
            "{why}"
        );
    }

    #[test]
    fn a_next_offset_that_disagrees_with_the_data_is_rejected() {
        let b = appended(40, 50);
        for next_offset in [139, 141, 145, u64::MAX] {
            let mut checkpoint = checkpoint_of(&b);
            checkpoint.next_offset = next_offset;
            let why = rejection(&b, &checkpoint);
            assert!(why.contains("the data says offset 140"), "{why}");
        }
    }

    #[test]
    fn a_data_end_past_the_data_is_rejected() {
        let b = appended(40, 50);
        let mut checkpoint = checkpoint_of(&b);
        checkpoint.data_end += 4096;
        let why = rejection(&b, &checkpoint);
        assert!(
            why.contains(&format!("no frame starts at byte {}", b.position)),
            "{why}"
        );
    }

    #[test]
    fn the_first_entry_names_the_first_record() {
        let b = appended(40, 50);
        let mut missing = checkpoint_of(&b);
        missing.entries.remove(0);
        assert!(rejection(&b, &missing).contains("first index entry names offset"));
        // At the commit marker before the first record instead of the record.
        let mut early = checkpoint_of(&b);
        early.entries[0].position = 64;
        assert!(rejection(&b, &early).contains("does not hold it"));
    }

    #[test]
    fn the_last_entry_holds_its_record() {
        let b = appended(40, 50);
        for shift in [8u64, 24, 40] {
            let mut checkpoint = checkpoint_of(&b);
            checkpoint.entries.last_mut().unwrap().position += shift;
            // Whatever the bytes there look like, the walk does not end at the data end
            // with the right count.
            rejection(&b, &checkpoint);
        }
        let mut checkpoint = checkpoint_of(&b);
        checkpoint.entries.last_mut().unwrap().offset += 1;
        assert!(rejection(&b, &checkpoint).contains("does not hold it"));
    }

    #[test]
    fn a_data_end_inside_an_atomic_batch_is_rejected() {
        let mut b = appended(10, 50);
        let at = b.position as u64;
        b.marker(at);
        b.continues = true;
        b.record(50);
        let inside = (b.position as u64, b.offset);
        b.continues = false;
        b.record(50);
        let mut checkpoint = checkpoint_of(&b);
        assert_eq!(check_checkpoint(&b.bytes, 100, &checkpoint), Ok(()));
        checkpoint.data_end = inside.0;
        checkpoint.next_offset = inside.1;
        checkpoint.entries.retain(|e| e.position < inside.0);
        assert!(rejection(&b, &checkpoint).contains("inside an atomic batch"));
    }

    #[test]
    fn the_walk_after_the_last_entry_is_bounded() {
        let mut b = Builder::with_len(4 << 20);
        while (b.position as u64) < CHECKPOINT_WALK_BYTES + (256 << 10) {
            let at = b.position as u64;
            b.marker(at);
            b.record(4000);
        }
        let checkpoint = checkpoint_of(&b);
        assert_eq!(check_checkpoint(&b.bytes, 100, &checkpoint), Ok(()));
        // Only the first entry kept: the walk would cross more than the bound.
        let mut sparse = checkpoint.clone();
        sparse.entries.truncate(1);
        assert!(rejection(&b, &sparse).contains("no index entry within"));
    }
}
