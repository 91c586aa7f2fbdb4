//! Frame checksums of several frames at once, for scans.
//!
//! A frame's CRC32C ([`format::frame_crc`](crate::format)) is one dependent chain of
//! `crc32` instructions, 8 bytes each, with a latency of 3 cycles and a throughput of one
//! per cycle: a 128-byte frame alone leaves two thirds of the unit idle, and small frames
//! are too short for the crc32c crate's own three-way split to start. A scan knows the
//! next frames ahead, so it runs the chains of four frames side by side. The result is
//! bit for bit the same as [`crc32c::crc32c_append`]; without SSE 4.2 it is that.

use std::ops::Range;

/// Frames handled side by side.
const LANES: usize = 4;

/// For each frame `bytes[range]` (8-byte aligned start, length a multiple of 8 and at
/// least 8), the frame checksum: CRC32C seeded with `seed` over every byte but the first
/// four. Writes `crcs[i]` for `frames[i]`.
pub(crate) fn frame_crcs(bytes: &[u8], seed: u32, frames: &[Range<usize>], crcs: &mut [u32]) {
    debug_assert_eq!(frames.len(), crcs.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        for (group, out) in frames.chunks(LANES).zip(crcs.chunks_mut(LANES)) {
            #[expect(unsafe_code, reason = "calls a function compiled for SSE 4.2")]
            // SAFETY: `interleaved` only needs the CPU to support SSE 4.2, which was
            // detected just above.
            unsafe {
                interleaved(bytes, seed, group, out)
            };
        }
        return;
    }
    for (frame, crc) in frames.iter().zip(crcs.iter_mut()) {
        *crc = crc32c::crc32c_append(seed, &bytes[frame.start + 4..frame.end]);
    }
}

/// One frame's checksum (as [`frame_crcs`] for a single frame): for the writer, which
/// seals one frame at a time. The crc32c crate sets up a three-way split that a frame of
/// 128 bytes is too short to use (~180 instructions per frame in callgrind, against ~50
/// for the plain chain here).
pub(crate) fn frame_crc(frame: &[u8], seed: u32) -> u32 {
    debug_assert!(frame.len() % 8 == 0 && frame.len() >= 8);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        #[expect(unsafe_code, reason = "calls a function compiled for SSE 4.2")]
        // SAFETY: `chain` only needs the CPU to support SSE 4.2, which was detected just
        // above.
        return unsafe { chain(frame, seed) };
    }
    crc32c::crc32c_append(seed, &frame[4..])
}

/// The CRC32C chain of one frame, 8 bytes per step (the first step 4).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn chain(frame: &[u8], seed: u32) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let (head, words) = frame.split_at(8);
    let head = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    // The crc32c crate's convention: the state is the complement of the CRC.
    let state = u64::from(_mm_crc32_u32(!seed, head));
    let state = words
        .chunks_exact(8)
        .fold(state, |crc, word| _mm_crc32_u64(crc, le_word(word)));
    !(state as u32)
}

/// An 8-byte chunk as a little-endian word.
#[inline(always)]
fn le_word(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// Up to [`LANES`] frames: their common length in lock step, then each one's rest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn interleaved(bytes: &[u8], seed: u32, frames: &[Range<usize>], crcs: &mut [u32]) {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    debug_assert!(frames.len() <= LANES);
    let mut state = [0u64; LANES];
    let mut at = [0usize; LANES];
    let mut common_words = usize::MAX;
    for (lane, frame) in frames.iter().enumerate() {
        debug_assert!(frame.start % 8 == 0 && frame.len() % 8 == 0 && frame.len() >= 8);
        let head = u32::from_le_bytes([
            bytes[frame.start + 4],
            bytes[frame.start + 5],
            bytes[frame.start + 6],
            bytes[frame.start + 7],
        ]);
        // The crc32c crate's convention: the state is the complement of the CRC.
        state[lane] = u64::from(_mm_crc32_u32(!seed, head));
        at[lane] = frame.start + 8;
        common_words = common_words.min((frame.end - at[lane]) / 8);
    }
    if frames.len() == LANES && common_words > 0 {
        let words = |lane: usize| bytes[at[lane]..at[lane] + common_words * 8].chunks_exact(8);
        let lanes = words(0).zip(words(1)).zip(words(2)).zip(words(3));
        for (((w0, w1), w2), w3) in lanes {
            state[0] = _mm_crc32_u64(state[0], le_word(w0));
            state[1] = _mm_crc32_u64(state[1], le_word(w1));
            state[2] = _mm_crc32_u64(state[2], le_word(w2));
            state[3] = _mm_crc32_u64(state[3], le_word(w3));
        }
        for a in &mut at {
            *a += common_words * 8;
        }
    }
    for (lane, frame) in frames.iter().enumerate() {
        let rest = bytes[at[lane]..frame.end].chunks_exact(8);
        let crc = rest.fold(state[lane], |crc, word| _mm_crc32_u64(crc, le_word(word)));
        crcs[lane] = !(crc as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_crc32c_crate_for_every_mix_of_lengths() {
        let bytes: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let lengths = [8usize, 16, 24, 32, 128, 136, 200, 1024];
        for seed in [0u32, 1, 0xdead_beef] {
            for count in 1..=9 {
                let mut frames = Vec::new();
                let mut start = 0;
                for i in 0..count {
                    let len = lengths[(i * 7 + count) % lengths.len()];
                    frames.push(start..start + len);
                    start += len;
                }
                let mut crcs = vec![0; frames.len()];
                frame_crcs(&bytes, seed, &frames, &mut crcs);
                for (frame, crc) in frames.iter().zip(&crcs) {
                    let expected = crc32c::crc32c_append(seed, &bytes[frame.start + 4..frame.end]);
                    assert_eq!(*crc, expected, "frame {frame:?}, seed {seed:#x}");
                    let one = frame_crc(&bytes[frame.clone()], seed);
                    assert_eq!(one, expected, "one frame {frame:?}, seed {seed:#x}");
                }
            }
        }
    }
}
