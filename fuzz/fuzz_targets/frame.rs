//! Frame decoding of arbitrary bytes: never panics; whatever decodes is well formed and
//! re-encodes to the same bytes; a valid frame with any one bit flipped, or cut short,
//! never decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlog::fuzzing::{decode_frame, decode_record, encode_entry_record, encode_record, EntryFields};

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Checks what `decode_frame` says about arbitrary `bytes`.
fn check_arbitrary(bytes: &[u8], nonce: u64) {
    let Some((offset, payload_len, padded)) = decode_frame(bytes, nonce) else {
        return;
    };
    assert!(padded as usize <= bytes.len(), "frame runs past the input");
    assert_eq!(padded % 8, 0, "frames are 8-byte aligned");
    if bytes[7] & 0x40 != 0 {
        // An extended record (format version 2): checked by the `entry` target's rules.
        check_extended(bytes, nonce, offset, payload_len, padded);
        return;
    }
    assert!(
        payload_len + 24 <= padded && padded < payload_len + 32,
        "padding"
    );
    match offset {
        None => assert_eq!((payload_len, padded), (8, 32), "commit marker shape"),
        Some(offset) => {
            assert_ne!(offset, u64::MAX);
            // Without the batch-continues bit, re-encoding gives the same bytes.
            if bytes[7] & 0x80 == 0 {
                let timestamp = u64_at(bytes, 16);
                let payload = &bytes[24..24 + payload_len as usize];
                let again = encode_record(nonce, offset, timestamp, payload);
                assert_eq!(&again[..], &bytes[..padded as usize], "re-encoding differs");
            }
        }
    }
}

/// An extended frame that decoded: its fields re-encode to the same bytes.
fn check_extended(bytes: &[u8], nonce: u64, offset: Option<u64>, payload_len: u64, padded: u64) {
    let offset = offset.expect("a commit marker is never extended");
    let record = decode_record(bytes, nonce).expect("decode_frame accepted it");
    assert_eq!(record.offset, offset);
    assert_eq!(record.payload.len() as u64, payload_len);
    assert!(record.extension_bytes >= 8);
    assert!(payload_len + record.extension_bytes + 24 <= padded);
    assert!(padded < payload_len + record.extension_bytes + 32, "padding");
    if bytes[7] & 0x80 == 0 {
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        let fields = EntryFields {
            seq: record.seq,
            key: record.key.as_deref(),
            id: record.id.as_deref(),
            headers: &headers,
        };
        let again = encode_entry_record(nonce, offset, record.timestamp_ms, fields, &record.payload)
            .expect("decoded fields are within the limits");
        assert_eq!(&again[..], &bytes[..padded as usize], "re-encoding differs");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let nonce = u64_at(data, 0);
    let selector = u32::from_le_bytes(data[8..12].try_into().unwrap());
    let rest = &data[12..];
    check_arbitrary(rest, nonce);

    // A valid frame built from the input.
    let offset = (selector as u64).wrapping_mul(0x9E37_79B9) % (1 << 48);
    let payload = &rest[..rest.len().min(4096)];
    let frame = encode_record(nonce, offset, selector as u64, payload);
    let expected = Some((Some(offset), payload.len() as u64, frame.len() as u64));
    assert_eq!(
        decode_frame(&frame, nonce),
        expected,
        "a valid frame decodes"
    );
    let mut with_tail = frame.clone();
    with_tail.extend_from_slice(rest);
    assert_eq!(
        decode_frame(&with_tail, nonce),
        expected,
        "bytes after a frame do not matter"
    );
    // Any one bit flipped: never valid (the CRC covers every byte but itself, padding
    // included).
    let bit = selector as usize % (frame.len() * 8);
    let mut damaged = frame.clone();
    damaged[bit / 8] ^= 1 << (bit % 8);
    assert_eq!(
        decode_frame(&damaged, nonce),
        None,
        "bit {bit} flip undetected"
    );
    // Another segment's nonce: never valid.
    assert_eq!(decode_frame(&frame, nonce ^ 1), None, "foreign nonce");
    // Cut short: never valid.
    let cut = selector as usize % frame.len();
    assert_eq!(
        decode_frame(&frame[..cut], nonce),
        None,
        "frame cut at {cut}"
    );
});
