//! Segment scan (what recovery runs) over arbitrary bytes behind a valid header, and over
//! real segments (built with `build_segment`) with fuzz-chosen damage: never panics, and
//! what it reports is consistent with the bytes: the records it counts are exactly the
//! valid frames from the data start to its end position, in offset order; index entries
//! strictly increase and each points at the record it names; positions are in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlog::fuzzing::{build_segment, decode_frame, scan_segment};

const SEGMENT_BYTES: u64 = 64 << 10;

/// End of the valid frames from the data start.
fn frames_end(image: &[u8], nonce: u64) -> usize {
    let mut at = 64usize;
    while let Some((_, _, padded)) = decode_frame(&image[at..], nonce) {
        at += padded as usize;
    }
    at
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn check(
    image: &[u8],
    base: u64,
    nonce: u64,
    interval: u64,
) -> Option<ringlog::fuzzing::ScanSummary> {
    let summary = scan_segment(image, interval)?;
    let len = image.len() as u64;
    assert!(
        ["clean", "full", "torn", "corrupt"].contains(&summary.tail),
        "{summary:?}"
    );
    assert!(
        summary.end_position >= 64 && summary.end_position <= len.max(64),
        "{summary:?}"
    );
    assert_eq!(summary.end_position % 8, 0, "{summary:?}");
    assert_eq!(
        summary.next_offset,
        base + summary.records_count,
        "{summary:?}"
    );
    match summary.problem_position {
        Some(p) => {
            assert!(
                summary.tail == "torn" || summary.tail == "corrupt",
                "{summary:?}"
            );
            assert!(p >= 64 && p <= len, "{summary:?}");
        }
        None => assert!(
            summary.tail == "clean" || summary.tail == "full",
            "{summary:?}"
        ),
    }
    // The counted records are exactly the valid frames from 64 to the end position.
    let mut at = 64u64;
    let mut next = base;
    while at < summary.end_position {
        let (offset, _, padded) = decode_frame(&image[at as usize..], nonce)
            .unwrap_or_else(|| panic!("no valid frame at {at} below the end {summary:?}"));
        if let Some(offset) = offset {
            assert_eq!(offset, next, "record out of order at {at}");
            next += 1;
        }
        at += padded;
    }
    assert_eq!(at, summary.end_position, "frames overrun the end position");
    assert_eq!(next, summary.next_offset, "record count");
    // Index entries: strictly increasing, in range, each naming its record.
    for pair in summary.entries.windows(2) {
        assert!(
            pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1,
            "entries not increasing {summary:?}"
        );
    }
    for &(offset, position) in &summary.entries {
        assert!(
            offset >= base && offset < summary.next_offset,
            "entry offset {offset}"
        );
        assert!(
            position >= 64 && position < summary.end_position,
            "entry position {position}"
        );
        let frame = decode_frame(&image[position as usize..], nonce);
        assert!(
            matches!(frame, Some((Some(o), _, _)) if o == offset),
            "entry ({offset}, {position})"
        );
    }
    if summary.records_count > 0 {
        assert!(!summary.entries.is_empty(), "records but no index entry");
    }
    // Deterministic.
    assert_eq!(scan_segment(image, interval).as_ref(), Some(&summary));
    Some(summary)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 20 {
        return;
    }
    let mode = data[0];
    let nonce = u64_at(data, 1) | 1;
    let base = u64_at(data, 9) % (1 << 48);
    let interval = 64 + (u16::from_le_bytes([data[17], data[18]]) as u64 % 8192);
    let rest = &data[19..];
    let header = build_segment(SEGMENT_BYTES, base, nonce, &[]);
    match mode % 3 {
        // Arbitrary bytes (of any length) behind a valid header.
        0 => {
            let mut image = header[..64].to_vec();
            image.extend_from_slice(rest);
            check(&image, base, nonce, interval).expect("a valid header scans");
        }
        // A real segment from payloads taken from the input, then damaged.
        _ => {
            let split = rest.len() / 2;
            let (source, damage) = rest.split_at(split);
            let mut payloads: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            while at < source.len() {
                let len = (source[at] as usize * 7) % 1500;
                let end = (at + 1 + len).min(source.len());
                payloads.push(&source[at + 1..end]);
                at = end;
            }
            let mut image = build_segment(SEGMENT_BYTES, base, nonce, &payloads);
            // Keep the data and some zeros after it (a clean end): scanning 64 KiB of
            // zeros each run would only slow the fuzzer down.
            let keep = (frames_end(&image, nonce) + 8 + (data[18] as usize) * 8).min(image.len());
            image.truncate(keep);
            let pristine = check(&image, base, nonce, interval).expect("a built segment scans");
            assert!(
                pristine.tail == "clean" || pristine.tail == "full",
                "{pristine:?}"
            );
            assert!(pristine.records_count <= payloads.len() as u64);
            // Damage: (position, xor) pairs over the data written.
            let span = image.len() as u64;
            for chunk in damage.chunks_exact(3).filter(|_| span > 64) {
                let pos = 64 + u16::from_le_bytes([chunk[0], chunk[1]]) as u64 % (span - 64);
                image[pos as usize] ^= chunk[2] | 1;
            }
            if mode % 3 == 2 {
                // Cut the image short too.
                let keep = 64 + (damage.len() * 97) % image.len();
                image.truncate(keep);
            }
            if let Some(damaged) = check(&image, base, nonce, interval) {
                // Damage never adds records beyond what was written.
                assert!(
                    damaged.next_offset <= pristine.next_offset.max(base),
                    "{damaged:?} vs {pristine:?}"
                );
            }
        }
    }
});
