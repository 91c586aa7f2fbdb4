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
