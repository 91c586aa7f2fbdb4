//! Index files: parsing arbitrary bytes never panics and accepts only well-formed
//! indexes; an index built from a full scan of a real segment (`build_segment`) round
//! trips; and lookups through any accepted index, damaged ones included (checksum
//! recomputed, so the damage gets past the checksum), follow the reader's rules (start at
//! the last entry at or before the offset, walk checked frames forward) and either find
//! exactly the position the full scan found or fail: never another record. The check
//! open makes of a checkpoint accepts the index built from the scan, and accepts a
//! damaged one only if its data end is a frame boundary of the data with exactly its
//! next offset's records before it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlog::fuzzing::{build_segment, check_checkpoint, decode_frame, decode_index, scan_segment};

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

/// An index file in the documented format (docs/design.md 2.4).
fn encode_index(
    nonce: u64,
    base: u64,
    data_end: u64,
    next_offset: u64,
    clean: bool,
    entries: &[(u64, u64)],
) -> Vec<u8> {
    let mut out = vec![0u8; 72 + entries.len() * 8];
    out[0..8].copy_from_slice(b"RLINDEX\x01");
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    out[12..16].copy_from_slice(&(clean as u32).to_le_bytes());
    out[16..24].copy_from_slice(&0u64.to_le_bytes());
    out[24..32].copy_from_slice(&nonce.to_le_bytes());
    out[32..40].copy_from_slice(&base.to_le_bytes());
    out[40..48].copy_from_slice(&data_end.to_le_bytes());
    out[48..56].copy_from_slice(&next_offset.to_le_bytes());
    // No write bound: recovery searches the whole segment past the end of data.
    out[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    out[64..68].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, (offset, position)) in entries.iter().enumerate() {
        let at = 72 + i * 8;
        out[at..at + 4].copy_from_slice(&((offset - base) as u32).to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&(*position as u32).to_le_bytes());
    }
    fix_crc(&mut out);
    out
}

fn fix_crc(out: &mut [u8]) {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[0..68]), &out[72..]);
    out[68..72].copy_from_slice(&crc.to_le_bytes());
}

/// What a decoded index must satisfy, whatever bytes it came from.
fn check_decoded(bytes: &[u8], decoded: &(u64, u64, Vec<(u64, u64)>)) {
    let (data_end, next_offset, entries) = decoded;
    assert!(
        (64..=SEGMENT_BYTES).contains(data_end),
        "data end {data_end}"
    );
    assert_eq!(bytes.len(), 72 + entries.len() * 8, "entry count vs length");
    for pair in entries.windows(2) {
        assert!(
            pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1,
            "entries not increasing"
        );
    }
    for &(offset, position) in entries {
        assert!(
            position >= 64 && position < *data_end,
            "entry position {position}"
        );
        assert!(
            offset < *next_offset,
            "entry offset {offset} >= next {next_offset}"
        );
    }
}

/// The reader's lookup: from the last entry at or before `target` (or the data start),
/// walk frames, each checked (CRC, and the offset the walk expects), to `target`.
/// `None` is an error (the reader reports corruption and, for a sealed segment, rebuilds
/// the index from the data).
fn lookup(image: &[u8], nonce: u64, base: u64, entries: &[(u64, u64)], target: u64) -> Option<u64> {
    let floor = entries.iter().rev().find(|e| e.0 <= target).copied();
    let (mut position, mut expected) = match floor {
        Some((offset, position)) => (position, offset),
        None => (64, base),
    };
    loop {
        let (offset, _, padded) = decode_frame(image.get(position as usize..)?, nonce)?;
        match offset {
            None => {}
            Some(o) if o == target => return Some(position),
            Some(o) if o == expected && o < target => expected += 1,
            Some(_) => return None,
        }
        position += padded;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 20 {
        return;
    }
    // A. Arbitrary bytes as an index file.
    if let Some(decoded) = decode_index(data, SEGMENT_BYTES) {
        check_decoded(data, &decoded);
    }
    let mut fixed = data.to_vec();
    if fixed.len() >= 72 {
        // The same with a valid checksum, so parsing gets past it.
        fixed[0..8].copy_from_slice(b"RLINDEX\x01");
        fixed[8..12].copy_from_slice(&2u32.to_le_bytes());
        let entries = (fixed.len() - 72) / 8;
        fixed.truncate(72 + entries * 8);
        fixed[64..68].copy_from_slice(&(entries as u32).to_le_bytes());
        fix_crc(&mut fixed);
        if let Some(decoded) = decode_index(&fixed, SEGMENT_BYTES) {
            check_decoded(&fixed, &decoded);
        }
    }

    // B. A real segment, its full scan, an index from it, and lookups.
    let nonce = u64_at(data, 0) | 1;
    let base = u64_at(data, 8) % (1 << 40);
    let interval = 64 + (u16::from_le_bytes([data[16], data[17]]) as u64 % 4096);
    let rest = &data[18..];
    let split = rest.len() * 2 / 3;
    let (source, damage) = rest.split_at(split);
    let mut payloads: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    while at < source.len() {
        let len = (source[at] as usize * 5) % 900;
        let end = (at + 1 + len).min(source.len());
        payloads.push(&source[at + 1..end]);
        at = end;
    }
    let mut image = build_segment(SEGMENT_BYTES, base, nonce, &payloads);
    // The data and a clean end; the zeros after it only slow the fuzzer down.
    let keep = (frames_end(&image, nonce) + 64).min(image.len());
    image.truncate(keep);
    let scan = scan_segment(&image, interval).expect("a built segment scans");
    // The truth: every record's position, by walking every frame from the start; and
    // every frame boundary with the records before it.
    let mut truth = Vec::new();
    let mut boundaries = vec![(64u64, 0u64)];
    let mut position = 64u64;
    while position < scan.end_position {
        let (offset, _, padded) = decode_frame(&image[position as usize..], nonce).unwrap();
        if offset.is_some() {
            truth.push(position);
        }
        position += padded;
        boundaries.push((position, truth.len() as u64));
    }
    assert_eq!(truth.len() as u64, scan.records_count);
    let index = encode_index(
        nonce,
        base,
        scan.end_position,
        scan.next_offset,
        true,
        &scan.entries,
    );
    let decoded = decode_index(&index, SEGMENT_BYTES).expect("an index built from a scan decodes");
    check_decoded(&index, &decoded);
    assert_eq!(
        decoded,
        (scan.end_position, scan.next_offset, scan.entries.clone())
    );
    assert_eq!(
        check_checkpoint(&image, &index),
        Some(Ok(())),
        "the check at open refuses an index built from the data"
    );
    // Lookups of up to 48 records spread over the segment (all of them when fewer).
    let step = truth.len().div_ceil(48).max(1);
    let sample: Vec<(usize, u64)> = truth
        .iter()
        .copied()
        .enumerate()
        .filter(|(k, _)| k % step == 0 || *k + 1 == truth.len())
        .collect();
    for &(k, expect) in &sample {
        let target = base + k as u64;
        assert_eq!(
            lookup(&image, nonce, base, &decoded.2, target),
            Some(expect),
            "lookup of {target} through a correct index"
        );
    }
    // Damaged index bytes, checksum recomputed: accepted or not, a lookup never lands on
    // another record.
    if damage.len() >= 3 && index.len() > 72 {
        let mut bad = index.clone();
        for chunk in damage.chunks_exact(3) {
            let pos = 16 + u16::from_le_bytes([chunk[0], chunk[1]]) as usize % (bad.len() - 16);
            if (64..72).contains(&pos) {
                continue; // keep the count and checksum words
            }
            bad[pos] ^= chunk[2] | 1;
        }
        fix_crc(&mut bad);
        if let Some(decoded) = decode_index(&bad, SEGMENT_BYTES) {
            check_decoded(&bad, &decoded);
            if let Some(Ok(())) = check_checkpoint(&image, &bad) {
                let (data_end, next_offset) = (decoded.0, decoded.1);
                assert!(
                    boundaries.contains(&(data_end, next_offset - base)),
                    "the check at open accepted data end {data_end} before offset {next_offset}"
                );
            }
            for &(k, expect) in &sample {
                let target = base + k as u64;
                if let Some(found) = lookup(&image, nonce, base, &decoded.2, target) {
                    assert_eq!(
                        found, expect,
                        "a damaged index led the lookup of {target} to another record"
                    );
                }
            }
        }
    }
});
