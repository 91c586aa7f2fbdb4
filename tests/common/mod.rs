//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ringlog::{IoBackend, Options};

/// The backends to run a test against: io_uring when this kernel allows it (the skip is
/// printed), and the pwritev fallback always.
pub fn backends() -> Vec<IoBackend> {
    let mut out = Vec::new();
    let probe = tempfile::tempdir().expect("tempdir");
    match ringlog::Log::open(probe.path(), small(IoBackend::Uring)) {
        Ok(_) => out.push(IoBackend::Uring),
        Err(e) => eprintln!("SKIP io_uring backend: {e}"),
    }
    out.push(IoBackend::Pwrite);
    out
}

/// Options with tiny segments, so tests roll over often.
pub fn small(io: IoBackend) -> Options {
    Options::default().segment_bytes(64 << 10).io(io)
}

/// A payload that names its own offset, so a read can be checked exactly.
pub fn payload(offset: u64, len: usize) -> Vec<u8> {
    let mut out = offset.to_le_bytes().to_vec();
    let mut x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len.max(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out.truncate(len.max(8));
    out
}

/// Payload length for record `i` in mixed-size tests.
pub fn mixed_len(i: u64) -> usize {
    [8usize, 100, 1000, 3000, 17][(i % 5) as usize]
}

/// Segment files in `dir`, sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

/// The position just past the last non-zero byte of `file`'s data, rounded up to 8.
pub fn data_end(file: &Path) -> u64 {
    let bytes = std::fs::read(file).expect("read segment");
    let last = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1) as u64;
    (last + 7) & !7
}

/// The active (highest activated) segment: the last file with data past its header.
pub fn active_segment(dir: &Path) -> PathBuf {
    segment_files(dir)
        .into_iter()
        .rev()
        .find(|p| data_end(p) > 64)
        .expect("a segment with data")
}

/// An index file in the documented format (docs/design.md 2.4), with a valid checksum.
pub fn encode_index(
    segment_id: u64,
    nonce: u64,
    base_offset: u64,
    data_end: u64,
    next_offset: u64,
    clean: bool,
    entries: &[(u64, u64)],
) -> Vec<u8> {
    let mut out = vec![0u8; 72 + entries.len() * 8];
    out[0..8].copy_from_slice(b"RLINDEX\x01");
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    out[12..16].copy_from_slice(&(clean as u32).to_le_bytes());
    out[16..24].copy_from_slice(&segment_id.to_le_bytes());
    out[24..32].copy_from_slice(&nonce.to_le_bytes());
    out[32..40].copy_from_slice(&base_offset.to_le_bytes());
    out[40..48].copy_from_slice(&data_end.to_le_bytes());
    out[48..56].copy_from_slice(&next_offset.to_le_bytes());
    // No write bound: recovery searches the whole segment past the end of data.
    out[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    out[64..68].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, (offset, position)) in entries.iter().enumerate() {
        let at = 72 + i * 8;
        out[at..at + 4].copy_from_slice(&((offset - base_offset) as u32).to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&(*position as u32).to_le_bytes());
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[0..68]), &out[72..]);
    out[68..72].copy_from_slice(&crc.to_le_bytes());
    out
}
