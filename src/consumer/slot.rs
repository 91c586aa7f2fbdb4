//! A consumer position file's bytes: two alternating, checksummed slots. Pure code, no
//! I/O (the file handling is in `consumer.rs`).
//!
//! ```text
//! file (8 KiB):   slot 0 at byte 0 | zeros | slot 1 at byte 4096 | zeros
//!
//! slot (256 bytes, little-endian):
//!   0..8     magic "RLCONSMR"
//!   8..10    format version (1)
//!   10..12   name length in bytes (1..=200)
//!   12..16   flags: bit 0 = a position is stored; other bits zero
//!   16..24   sequence number: slot = sequence % 2
//!   24..32   position: the next offset to read (0 when no position is stored)
//!   32..232  consumer name, zero-padded
//!   232..252 reserved, zero
//!   252..256 CRC32C of bytes 0..252
//! ```
//!
//! A commit writes sequence `s + 1` into the slot that does not hold the latest valid
//! sequence `s`; reading takes the valid slot with the higher sequence. A torn or damaged
//! slot fails its checksum and never wins.

use crate::store::TOPIC_NAME_MAX_BYTES;

/// The first bytes of every slot.
pub(crate) const SLOT_MAGIC: [u8; 8] = *b"RLCONSMR";
/// The slot format this build reads and writes.
pub(crate) const SLOT_VERSION: u16 = 1;
/// Bytes of one slot.
pub(crate) const SLOT_BYTES: usize = 256;
/// Distance between the two slots: each has a 4 KiB page (and device block) of its own,
/// so writing one never rewrites a block that holds the other.
pub(crate) const SLOT_STRIDE_BYTES: u64 = 4096;
/// Bytes of a position file: two slot pages.
pub(crate) const FILE_BYTES: u64 = 2 * SLOT_STRIDE_BYTES;

const VERSION_AT: usize = 8;
const NAME_LEN_AT: usize = 10;
const FLAGS_AT: usize = 12;
const SEQUENCE_AT: usize = 16;
const POSITION_AT: usize = 24;
const NAME_AT: usize = 32;
const RESERVED_AT: usize = NAME_AT + TOPIC_NAME_MAX_BYTES;
const CRC_AT: usize = SLOT_BYTES - 4;
const FLAG_HAS_POSITION: u32 = 1;

const _: () = assert!(RESERVED_AT <= CRC_AT);
const _: () = assert!(SLOT_BYTES as u64 <= SLOT_STRIDE_BYTES);
const _: () = assert!(SLOT_STRIDE_BYTES % 4096 == 0);
const _: () = assert!(TOPIC_NAME_MAX_BYTES <= u16::MAX as usize);

/// What one slot says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Orders the slots: the valid one with the higher sequence is the position.
    pub(crate) sequence: u64,
    /// The committed next offset to read; `None` before the first commit.
    pub(crate) position: Option<u64>,
}

/// A slot read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A whole slot with a valid checksum.
    Valid(Slot),
    /// Never written, torn or damaged: it never wins. Says why.
    Invalid(&'static str),
}

/// Byte position of the slot that holds `sequence`.
pub(crate) fn slot_position_bytes(sequence: u64) -> u64 {
    (sequence % 2) * SLOT_STRIDE_BYTES
}

/// The bytes of a slot for consumer `name` (a checked name: at most 200 bytes).
pub(crate) fn encode_slot(name: &str, slot: Slot) -> [u8; SLOT_BYTES] {
    debug_assert!(!name.is_empty(), "consumer names are checked before use");
    debug_assert!(
        name.len() <= TOPIC_NAME_MAX_BYTES,
        "consumer names are checked before use"
    );
    let name = &name.as_bytes()[..name.len().min(TOPIC_NAME_MAX_BYTES)];
    let mut out = [0u8; SLOT_BYTES];
    out[..VERSION_AT].copy_from_slice(&SLOT_MAGIC);
    out[VERSION_AT..NAME_LEN_AT].copy_from_slice(&SLOT_VERSION.to_le_bytes());
    out[NAME_LEN_AT..FLAGS_AT].copy_from_slice(&(name.len() as u16).to_le_bytes());
    let flags = if slot.position.is_some() {
        FLAG_HAS_POSITION
    } else {
        0
    };
    out[FLAGS_AT..SEQUENCE_AT].copy_from_slice(&flags.to_le_bytes());
    out[SEQUENCE_AT..POSITION_AT].copy_from_slice(&slot.sequence.to_le_bytes());
    out[POSITION_AT..NAME_AT].copy_from_slice(&slot.position.unwrap_or(0).to_le_bytes());
    out[NAME_AT..NAME_AT + name.len()].copy_from_slice(name);
    let crc = crc32c::crc32c(&out[..CRC_AT]);
    out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(
        decode_slot(
            &out,
            std::str::from_utf8(name).unwrap_or_default(),
            slot.sequence % 2
        ),
        Ok(Decoded::Valid(slot)),
        "a slot must read back as written"
    );
    out
}

/// Reads the slot in `bytes` (the slot's bytes, or fewer if the file ended early) found
/// at slot index `slot_index` of consumer `name`'s file.
///
/// # Errors
///
/// A slot with a valid checksum that cannot be taken (an unknown format version, another
/// consumer's name, a sequence in the wrong slot, unknown flags): the file was not
/// written by this build for this consumer, and guessing would be worse than refusing.
pub(crate) fn decode_slot(bytes: &[u8], name: &str, slot_index: u64) -> Result<Decoded, String> {
    let Some(bytes) = bytes.get(..SLOT_BYTES) else {
        return Ok(Decoded::Invalid("the file ends inside the slot"));
    };
    let (body, crc) = bytes.split_at(CRC_AT);
    if bytes.iter().all(|&b| b == 0) {
        return Ok(Decoded::Invalid("never written"));
    }
    if crc32c::crc32c(body) != u32_at(crc, 0) {
        return Ok(Decoded::Invalid("checksum mismatch (torn or damaged)"));
    }
    if body.get(..VERSION_AT) != Some(SLOT_MAGIC.as_slice()) {
        return Err("not a consumer position slot (bad magic)".into());
    }
    let version = u16_at(body, VERSION_AT);
    if version != SLOT_VERSION {
        return Err(format!(
            "slot format version {version}; this build reads version {SLOT_VERSION} only (upgrade ringlog)"
        ));
    }
    let name_len = usize::from(u16_at(body, NAME_LEN_AT));
    let stored = body.get(NAME_AT..NAME_AT + name_len.min(TOPIC_NAME_MAX_BYTES));
    if name_len > TOPIC_NAME_MAX_BYTES || stored != Some(name.as_bytes()) {
        return Err(format!(
            "the slot belongs to consumer {:?}, not {name:?}",
            String::from_utf8_lossy(stored.unwrap_or_default())
        ));
    }
    let padding_and_reserved = body.get(NAME_AT + name_len..CRC_AT).unwrap_or_default();
    if padding_and_reserved.iter().any(|&b| b != 0) {
        return Err("non-zero bytes after the name".into());
    }
    let flags = u32_at(body, FLAGS_AT);
    if flags & !FLAG_HAS_POSITION != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let sequence = u64_at(body, SEQUENCE_AT);
    if sequence % 2 != slot_index {
        return Err(format!("sequence {sequence} found in slot {slot_index}"));
    }
    let position_raw = u64_at(body, POSITION_AT);
    let position = if flags & FLAG_HAS_POSITION != 0 {
        Some(position_raw)
    } else if position_raw == 0 {
        None
    } else {
        return Err("a position without the flag that says one is stored".into());
    };
    Ok(Decoded::Valid(Slot { sequence, position }))
}

/// The position a whole file (`file_bytes`, however long it turned out) holds: the valid
/// slot with the higher sequence.
///
/// # Errors
///
/// Neither slot valid, or a slot [`decode_slot`] refuses; the reason names the slot.
pub(crate) fn pick_slot(file_bytes: &[u8], name: &str) -> Result<Slot, String> {
    let mut best: Option<Slot> = None;
    let mut reasons = Vec::new();
    for slot_index in 0..2u64 {
        let at = (slot_index * SLOT_STRIDE_BYTES) as usize;
        let bytes = file_bytes.get(at..).unwrap_or_default();
        match decode_slot(bytes, name, slot_index).map_err(|e| format!("slot {slot_index}: {e}"))? {
            Decoded::Valid(slot) => {
                if best.is_none_or(|b| slot.sequence > b.sequence) {
                    best = Some(slot);
                }
            }
            Decoded::Invalid(reason) => reasons.push(format!("slot {slot_index}: {reason}")),
        }
    }
    best.ok_or_else(|| format!("neither position slot is valid ({})", reasons.join("; ")))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(src) = bytes.get(at..at + 2) {
        b.copy_from_slice(src);
    }
    u16::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, slots: &[Slot]) -> Vec<u8> {
        let mut out = vec![0u8; FILE_BYTES as usize];
        for slot in slots {
            let at = slot_position_bytes(slot.sequence) as usize;
            out[at..at + SLOT_BYTES].copy_from_slice(&encode_slot(name, *slot));
        }
        out
    }

    #[test]
    fn round_trips() {
        for (name, position) in [
            ("a", None),
            ("indexer", Some(0)),
            ("x.y-z_9", Some(u64::MAX - 1)),
            (&*"n".repeat(200), Some(42)),
        ] {
            for sequence in [0, 1, 2, 7, u64::MAX] {
                let slot = Slot { sequence, position };
                let bytes = encode_slot(name, slot);
                assert_eq!(
                    decode_slot(&bytes, name, sequence % 2),
                    Ok(Decoded::Valid(slot))
                );
            }
        }
    }

    #[test]
    fn the_higher_valid_sequence_wins() {
        let old = Slot {
            sequence: 4,
            position: Some(10),
        };
        let new = Slot {
            sequence: 5,
            position: Some(20),
        };
        assert_eq!(pick_slot(&file("c", &[old, new]), "c"), Ok(new));
        let newer = Slot {
            sequence: 6,
            position: Some(30),
        };
        assert_eq!(pick_slot(&file("c", &[new, newer]), "c"), Ok(newer));
        // Only one ever written: a new consumer.
        let first = Slot {
            sequence: 0,
            position: None,
        };
        assert_eq!(pick_slot(&file("c", &[first]), "c"), Ok(first));
    }

    #[test]
    fn every_single_bit_flip_of_a_slot_is_rejected() {
        let slot = Slot {
            sequence: 9,
            position: Some(0x0123_4567_89ab),
        };
        let name = "indexer";
        let bytes = encode_slot(name, slot);
        for bit in 0..SLOT_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode_slot(&flipped, name, 1), Ok(Decoded::Invalid(_))),
                "bit {bit}: {:?}",
                decode_slot(&flipped, name, 1)
            );
            // In a file, the flip leaves the other slot in charge.
            let older = Slot {
                sequence: 8,
                position: Some(5),
            };
            let mut whole = file(name, &[older, slot]);
            let at = slot_position_bytes(9) as usize;
            whole[at..at + SLOT_BYTES].copy_from_slice(&flipped);
            assert_eq!(pick_slot(&whole, name), Ok(older), "bit {bit}");
        }
    }

    #[test]
    fn torn_slots_never_win() {
        let older = Slot {
            sequence: 2,
            position: Some(7),
        };
        let newer = Slot {
            sequence: 3,
            position: Some(8),
        };
        let whole = file("c", &[older, newer]);
        let at = slot_position_bytes(3) as usize;
        // A write that reached the disk only in part: any prefix of the new slot over
        // the bytes that were there (zeros, or an older slot).
        for under in [
            [0u8; SLOT_BYTES],
            encode_slot(
                "c",
                Slot {
                    sequence: 1,
                    position: Some(3),
                },
            ),
        ] {
            for cut in 1..SLOT_BYTES {
                let mut torn = whole.clone();
                torn[at..at + SLOT_BYTES].copy_from_slice(&under);
                torn[at..at + cut].copy_from_slice(&whole[at..at + cut]);
                // The old value, or the new one if the bytes not written happened to
                // hold the new slot's bytes already; never anything else.
                let got = pick_slot(&torn, "c").unwrap();
                assert!(got == older || got == newer, "cut {cut}: {got:?}");
            }
        }
        // A file cut short keeps the first slot.
        assert_eq!(pick_slot(&whole[..SLOT_BYTES], "c"), Ok(older));
    }

    #[test]
    fn refuses_what_it_cannot_take() {
        assert!(pick_slot(&[0u8; FILE_BYTES as usize], "c")
            .unwrap_err()
            .contains("neither"));
        let slot = Slot {
            sequence: 1,
            position: Some(3),
        };
        // Another consumer's file.
        assert!(decode_slot(&encode_slot("a", slot), "b", 1)
            .unwrap_err()
            .contains("\"a\""));
        // In the wrong slot.
        assert!(decode_slot(&encode_slot("a", slot), "a", 0).is_err());
        // A newer version, with a valid checksum.
        let mut newer = encode_slot("a", slot);
        newer[VERSION_AT..NAME_LEN_AT].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32c::crc32c(&newer[..CRC_AT]);
        newer[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_slot(&newer, "a", 1)
            .unwrap_err()
            .contains("version 2"));
    }
}
