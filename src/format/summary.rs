//! The entry summary of a sealed segment (`<id>.entries`): the idempotency ids its
//! records carry, each with its offset, and its highest caller sequence. Derived data,
//! like an index file: written beside a sealed segment the first time something needs
//! it, checked against the segment (id, nonce, offsets) and its checksum when read, and
//! rebuilt from the segment when missing or wrong. Drawn in `docs/design.md` 2.2.3.
//!
//! Pure code: no I/O; [`EntrySummary::decode`] takes untrusted bytes.

use super::extension::MAX_ID_BYTES;
use super::FormatError;

/// Magic at the start of every entry summary file.
pub const SUMMARY_MAGIC: [u8; 8] = *b"RLENTRY\x01";
/// The only entry summary version this build reads and writes (a file of another
/// version is rebuilt).
pub const SUMMARY_VERSION: u32 = 1;
/// Bytes of the fixed part of a summary file.
pub const SUMMARY_HEADER_BYTES: u64 = 64;
/// Bytes of one id's fixed part: offset delta `u32`, id length `u16`.
const ID_FIXED_BYTES: usize = 6;

const FLAG_HAS_SEQ: u32 = 1;

const _: () = assert!(SUMMARY_HEADER_BYTES % 8 == 0);
const _: () = assert!(MAX_ID_BYTES <= u16::MAX as usize);

/// What a sealed segment's records carry beside their payloads, for idempotent appends
/// and caller sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    /// The segment summarised.
    pub segment_id: u64,
    /// That segment's nonce (a summary of an earlier file of the same name never matches).
    pub nonce: u64,
    /// That segment's base offset.
    pub base_offset: u64,
    /// The offset after its last record: the summary covers `base_offset..end_offset`.
    pub end_offset: u64,
    /// The highest caller sequence of its records.
    pub last_seq: Option<u64>,
    /// (offset, id) of every record with an idempotency id, in offset order.
    pub ids: Vec<(u64, Vec<u8>)>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn bad(field: &'static str, value: u64) -> FormatError {
    FormatError::BadField { field, value }
}

impl EntrySummary {
    /// Encodes the file, checksum included. Offsets must lie in
    /// `base_offset..end_offset`, strictly increasing, and the segment's offsets span
    /// less than 2^32 (as a segment's always do), ids at most 1 KiB.
    pub fn encode(&self) -> Vec<u8> {
        let body_bytes: usize = self
            .ids
            .iter()
            .map(|(_, id)| ID_FIXED_BYTES + id.len())
            .sum();
        let mut out = vec![0u8; SUMMARY_HEADER_BYTES as usize + body_bytes];
        out[0..8].copy_from_slice(&SUMMARY_MAGIC);
        out[8..12].copy_from_slice(&SUMMARY_VERSION.to_le_bytes());
        let flags = if self.last_seq.is_some() {
            FLAG_HAS_SEQ
        } else {
            0
        };
        out[12..16].copy_from_slice(&flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        out[32..40].copy_from_slice(&self.base_offset.to_le_bytes());
        out[40..48].copy_from_slice(&self.end_offset.to_le_bytes());
        out[48..56].copy_from_slice(&self.last_seq.unwrap_or(0).to_le_bytes());
        out[56..60].copy_from_slice(&(self.ids.len() as u32).to_le_bytes());
        let mut at = SUMMARY_HEADER_BYTES as usize;
        for (offset, id) in &self.ids {
            debug_assert!(*offset >= self.base_offset && *offset < self.end_offset);
            debug_assert!(id.len() <= MAX_ID_BYTES);
            let delta = (offset - self.base_offset) as u32;
            out[at..at + 4].copy_from_slice(&delta.to_le_bytes());
            out[at + 4..at + 6].copy_from_slice(&(id.len() as u16).to_le_bytes());
            out[at + 6..at + 6 + id.len()].copy_from_slice(id);
            at += ID_FIXED_BYTES + id.len();
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[0..60]), &out[64..]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a summary file: magic, version, checksum, flags, offsets in
    /// range and strictly increasing, id lengths within the limit and the bytes present,
    /// the id count matching the body exactly (never trusted alone).
    pub fn decode(bytes: &[u8]) -> Result<EntrySummary, FormatError> {
        if (bytes.len() as u64) < SUMMARY_HEADER_BYTES {
            return Err(FormatError::Short {
                needed_bytes: SUMMARY_HEADER_BYTES,
                available_bytes: bytes.len() as u64,
            });
        }
        if bytes.get(0..8) != Some(&SUMMARY_MAGIC[..]) {
            return Err(FormatError::BadMagic);
        }
        let field = |at| u32_at(bytes, at).ok_or(bad("summary header", at as u64));
        let word = |at| u64_at(bytes, at).ok_or(bad("summary header", at as u64));
        let stored = field(60)?;
        let computed = crc32c::crc32c_append(
            crc32c::crc32c(bytes.get(0..60).unwrap_or_default()),
            bytes.get(64..).unwrap_or_default(),
        );
        if stored != computed {
            return Err(FormatError::ChecksumMismatch { stored, computed });
        }
        let version = field(8)?;
        if version != SUMMARY_VERSION {
            return Err(FormatError::UnknownVersion(version));
        }
        let flags = field(12)?;
        if flags & !FLAG_HAS_SEQ != 0 {
            return Err(bad("summary flags", flags as u64));
        }
        let mut summary = EntrySummary {
            segment_id: word(16)?,
            nonce: word(24)?,
            base_offset: word(32)?,
            end_offset: word(40)?,
            last_seq: (flags & FLAG_HAS_SEQ != 0).then_some(word(48)?),
            ids: Vec::new(),
        };
        if summary.end_offset < summary.base_offset
            || summary.end_offset - summary.base_offset > u32::MAX as u64
        {
            return Err(bad("summary end offset", summary.end_offset));
        }
        let ids_count = field(56)? as usize;
        // Each id takes at least its fixed part: the count cannot ask for more than the
        // bytes hold.
        let body = bytes
            .get(SUMMARY_HEADER_BYTES as usize..)
            .unwrap_or_default();
        if ids_count > body.len() / ID_FIXED_BYTES {
            return Err(bad("summary id count", ids_count as u64));
        }
        summary.ids.reserve(ids_count);
        let mut at = 0usize;
        let mut previous: Option<u64> = None;
        for _ in 0..ids_count {
            let delta = u32_at(body, at).ok_or(bad("summary id", at as u64))? as u64;
            let len = body
                .get(at + 4..at + 6)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                .ok_or(bad("summary id", at as u64))?;
            if len > MAX_ID_BYTES {
                return Err(bad("summary id length", len as u64));
            }
            let id = body
                .get(at + ID_FIXED_BYTES..at + ID_FIXED_BYTES + len)
                .ok_or(bad("summary id", at as u64))?;
            let offset = summary.base_offset + delta;
            if offset >= summary.end_offset || previous.is_some_and(|p| offset <= p) {
                return Err(bad("summary id offset", offset));
            }
            previous = Some(offset);
            summary.ids.push((offset, id.to_vec()));
            at += ID_FIXED_BYTES + len;
        }
        if at != body.len() {
            return Err(bad("summary length", bytes.len() as u64));
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EntrySummary {
        EntrySummary {
            segment_id: 3,
            nonce: 0xfeed,
            base_offset: 1000,
            end_offset: 1100,
            last_seq: Some(77),
            ids: vec![
                (1000, b"evt-a".to_vec()),
                (1003, Vec::new()),
                (1099, vec![0xff; 1024]),
            ],
        }
    }

    #[test]
    fn round_trips() {
        for summary in [
            sample(),
            EntrySummary {
                last_seq: None,
                ids: Vec::new(),
                ..sample()
            },
        ] {
            assert_eq!(EntrySummary::decode(&summary.encode()), Ok(summary));
        }
    }

    #[test]
    fn detects_every_bit_flip_and_cut() {
        let bytes = sample().encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(EntrySummary::decode(&damaged).is_err(), "bit {bit}");
        }
        for len in 0..bytes.len() {
            assert!(EntrySummary::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
    }

    /// Re-seals a summary whose bytes were changed.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..60]), &bytes[64..]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn refuses_wrong_fields_under_a_valid_checksum() {
        let good = sample().encode();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("version", {
                let mut b = good.clone();
                b[8] = 2;
                b
            }),
            ("flags", {
                let mut b = good.clone();
                b[12] = 2;
                b
            }),
            ("end below base", {
                let mut b = good.clone();
                b[40..48].copy_from_slice(&999u64.to_le_bytes());
                b
            }),
            ("count too high", {
                let mut b = good.clone();
                b[56] = 4;
                b
            }),
            ("count huge", {
                let mut b = good.clone();
                b[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
                b
            }),
            ("count too low", {
                let mut b = good.clone();
                b[56] = 2;
                b
            }),
            ("offset past the end", {
                let mut b = good.clone();
                b[64..68].copy_from_slice(&100u32.to_le_bytes());
                b
            }),
            ("offsets out of order", {
                let mut b = good.clone();
                // The second id's delta (3) -> 0, the first's.
                let second = 64 + 6 + 5;
                b[second..second + 4].copy_from_slice(&0u32.to_le_bytes());
                b
            }),
            ("id too long", {
                let mut b = good.clone();
                let third = 64 + 6 + 5 + 6;
                b[third + 4..third + 6].copy_from_slice(&1025u16.to_le_bytes());
                b
            }),
        ];
        for (what, bytes) in cases {
            assert!(
                EntrySummary::decode(&reseal(bytes)).is_err(),
                "{what}: accepted"
            );
        }
    }
}
