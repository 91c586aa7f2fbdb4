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
///
/// # Panics
///
/// If a range lies outside `bytes` or is shorter than 8 bytes (the caller found them by
/// reading their length words).
pub(crate) fn frame_crcs(bytes: &[u8], seed: u32, frames: &[Range<usize>], crcs: &mut [u32]) {
    debug_assert_eq!(frames.len(), crcs.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        for (group, out) in frames.chunks(LANES).zip(crcs.chunks_mut(LANES)) {
            let lanes: [&[u8]; LANES] =
                std::array::from_fn(|lane| group.get(lane).map_or(&[][..], |f| &bytes[f.clone()]));
            #[expect(unsafe_code, reason = "calls a function compiled for SSE 4.2")]
            // SAFETY: `interleaved` only needs the CPU to support SSE 4.2, which was
            // detected just above.
            unsafe {
                interleaved(lanes, seed, out)
            };
        }
        return;
    }
    for (frame, crc) in frames.iter().zip(crcs.iter_mut()) {
        *crc = crc32c::crc32c_append(seed, &bytes[frame.start + 4..frame.end]);
    }
}

/// Frames up to this long are checked with one chain of `crc32` instructions by
/// [`frame_crc`]; longer ones by the crc32c crate, whose three chains side by side pay
/// for their setup from about here on.
const ONE_CHAIN_MAX_BYTES: usize = 512;

/// The checksum of one frame (as [`frame_crcs`]), for a random read. The crc32c crate's
/// setup for its three-way split cost a 128-byte frame about 300 instructions, a fifth
/// of a random read's; one chain of `crc32` is about 40.
pub(crate) fn frame_crc(frame: &[u8], seed: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if frame.len() <= ONE_CHAIN_MAX_BYTES
        && frame.len() >= 8
        && frame.len() % 8 == 0
        && std::arch::is_x86_feature_detected!("sse4.2")
    {
        let mut crc = [0u32];
        #[expect(unsafe_code, reason = "calls a function compiled for SSE 4.2")]
        // SAFETY: `interleaved` only needs the CPU to support SSE 4.2, which was
        // detected just above.
        unsafe {
            interleaved([frame, &[], &[], &[]], seed, &mut crc)
        };
        return crc[0];
    }
    crc32c::crc32c_append(seed, frame.get(4..).unwrap_or_default())
}

/// The 8-byte word at `at` of `bytes`, little-endian.
///
/// # Safety
///
/// `at + 8 <= bytes.len()`.
#[inline(always)]
#[expect(
    unsafe_code,
    reason = "the lock-step loop's loads, bounds checked once before it"
)]
unsafe fn word_at(bytes: &[u8], at: usize) -> u64 {
    debug_assert!(at + 8 <= bytes.len());
    // SAFETY: the caller guarantees `at + 8 <= bytes.len()`; any alignment is allowed.
    u64::from_le(unsafe { bytes.as_ptr().add(at).cast::<u64>().read_unaligned() })
}

/// Up to [`LANES`] frames (`frames[..count]` are real, the rest empty; `count` is the
/// length of `crcs`): their common length in lock step, then each one's rest.
///
/// The lock-step loop reads its words without bounds checks (one check of the common
/// length before it): with them, and one iterator per lane, it took three times the
/// instructions of the `crc32` it runs, and the checksums were a third of a scan's
/// instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn interleaved(frames: [&[u8]; LANES], seed: u32, crcs: &mut [u32]) {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let count = crcs.len();
    debug_assert!(count <= LANES);
    let mut state = [0u64; LANES];
    for (lane, frame) in frames.iter().enumerate().take(count) {
        debug_assert!(frame.len() % 8 == 0 && frame.len() >= 8);
        let head = frame
            .get(4..8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        // The crc32c crate's convention: the state is the complement of the CRC.
        state[lane] = u64::from(_mm_crc32_u32(!seed, head));
    }
    let mut done = 8;
    if count == LANES {
        let common = frames.iter().map(|f| f.len()).min().unwrap_or(0);
        let [f0, f1, f2, f3] = frames;
        // Each lane is at least `common` bytes long, so every word read below is in it.
        assert!(
            f0.len() >= common && f1.len() >= common && f2.len() >= common && f3.len() >= common
        );
        while done + 8 <= common {
            #[expect(unsafe_code, reason = "bounds checked before the loop")]
            // SAFETY: `done + 8 <= common`, and every lane is at least `common` bytes
            // (asserted above).
            unsafe {
                state[0] = _mm_crc32_u64(state[0], word_at(f0, done));
                state[1] = _mm_crc32_u64(state[1], word_at(f1, done));
                state[2] = _mm_crc32_u64(state[2], word_at(f2, done));
                state[3] = _mm_crc32_u64(state[3], word_at(f3, done));
            }
            done += 8;
        }
    }
    for (lane, frame) in frames.iter().enumerate().take(count) {
        let rest = frame[done..].chunks_exact(8);
        let crc = rest.fold(state[lane], |crc, word| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            _mm_crc32_u64(crc, u64::from_le_bytes(bytes))
        });
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
                    let alone = frame_crc(&bytes[frame.clone()], seed);
                    assert_eq!(alone, expected, "frame {frame:?} alone, seed {seed:#x}");
                }
            }
        }
    }
}
