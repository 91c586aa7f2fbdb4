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

use crate::format::{self, FrameError, FrameKind, IndexEntry};

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

/// Scans the frames of one segment (`bytes` is the whole file).
pub(crate) fn scan(
    bytes: &[u8],
    seed: u32,
    mut start: ScanStart,
    index_interval_bytes: u64,
) -> ScanOutcome {
    let mut position = start.position;
    let mut next_offset = start.offset;
    let mut entries = std::mem::take(&mut start.entries);
    // End of the last complete batch: records of a batch whose last record is missing
    // never survive alone.
    let mut complete = (position, next_offset);
    let len = bytes.len() as u64;
    let problem = loop {
        if start.stop_offset == Some(next_offset) || position >= len {
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
    let stopped_at = position;
    let (end_position, end_offset) = complete;
    let problem = if end_offset < next_offset {
        Some(format!(
            "batch starting at offset {end_offset} is incomplete: {}",
            problem.as_deref().unwrap_or("its last record is missing")
        ))
    } else {
        problem
    };
    entries.retain(|e| e.offset < end_offset);
    let reached_stop = start.stop_offset == Some(end_offset);
    let tail = if problem.is_none() && (reached_stop || stopped_at >= len) {
        match start.stop_offset {
            Some(stop) if !reached_stop => Tail::Corrupt {
                position: end_position,
                reason: format!(
                    "segment ends at offset {end_offset} but the next segment starts at {stop}"
                ),
            },
            _ => Tail::Full,
        }
    } else {
        judge_tail(bytes, seed, end_position, stopped_at, problem, &start)
    };
    ScanOutcome {
        end_position,
        next_offset: end_offset,
        records_count: end_offset - start.offset,
        entries,
        tail,
    }
}

/// Decides what the data from `position` on is: clean end, torn tail or corruption.
fn judge_tail(
    bytes: &[u8],
    seed: u32,
    position: u64,
    stopped_at: u64,
    problem: Option<String>,
    start: &ScanStart,
) -> Tail {
    let past = look_past(bytes, seed, stopped_at, start.search_end);
    if let Some(stop) = start.stop_offset {
        return Tail::Corrupt {
            position,
            reason: format!(
                "{}; this sealed segment must hold records up to offset {stop}",
                problem.as_deref().unwrap_or("data ends early")
            ),
        };
    }
    let proof = if start.proven_durable > position {
        Some(format!(
            "the index checkpoint shows bytes up to {} were durable",
            start.proven_durable
        ))
    } else if past.marker_durable > position {
        Some(format!(
            "a commit marker at {} shows bytes up to {} were durable",
            past.marker_position, past.marker_durable
        ))
    } else {
        None
    };
    let what = problem
        .clone()
        .unwrap_or_else(|| "zeroed bytes followed by written data".to_string());
    if let Some(proof) = proof {
        return Tail::Corrupt {
            position,
            reason: format!("{what}; {proof}"),
        };
    }
    if problem.is_none() && past.last_nonzero_end <= stopped_at {
        return Tail::Clean;
    }
    Tail::Torn {
        position,
        garbage_end: past
            .last_nonzero_end
            .max(stopped_at + format::FRAME_ALIGN_BYTES),
        reason: what,
    }
}

struct LookPast {
    marker_durable: u64,
    marker_position: u64,
    last_nonzero_end: u64,
}

/// Searches the bytes after `from` (up to `search_end`) for valid frames and the last
/// non-zero byte.
fn look_past(bytes: &[u8], seed: u32, from: u64, search_end: u64) -> LookPast {
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
        let frame_len = ((word >> 32) as u32 & !format::FRAME_CONTINUES) as u64;
        let plausible = frame_len >= format::FRAME_HEADER_BYTES
            && position + format::padded_frame_bytes(frame_len) <= len
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
            Builder {
                bytes: vec![0; SEG],
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
                },
                256,
            )
        }
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
}
