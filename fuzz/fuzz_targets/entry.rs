//! Extended record frames (format version 2: key, headers, id, sequence). Arbitrary bytes
//! as an extension block never panic the decoder, and whatever decodes stays inside its
//! block; an entry built from the input round-trips exactly; any one bit flip of it, a
//! foreign nonce, or a cut never decodes; its extension block rewritten from the input and
//! re-sealed (a valid checksum over malformed fields) either decodes to fields that
//! re-encode to the same bytes or is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlog::fuzzing::{
    decode_extension, decode_frame, decode_record, encode_entry_record, seal_frame, EntryFields,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let nonce = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let selector = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let rest = &data[16..];

    // Arbitrary bytes as an extension block.
    if let Some((block_bytes, _, key, id, headers)) = decode_extension(rest) {
        assert!(block_bytes as usize <= rest.len());
        assert!(block_bytes >= 8);
        assert!(key.map_or(0, |k| k.len()) <= 1024);
        assert!(id.map_or(0, |i| i.len()) <= 1024);
        assert!(headers <= 32);
    }

    // An entry built from the input: fields cut from it by the selector's bits.
    let take = |from: usize, len: usize| -> &[u8] {
        let from = from.min(rest.len());
        &rest[from..(from + len).min(rest.len())]
    };
    let key = (selector & 1 != 0).then(|| take(0, (selector >> 8) as usize % 40));
    let id = (selector & 2 != 0).then(|| take(3, (selector >> 16) as usize % 40));
    let seq = (selector & 4 != 0).then_some(selector >> 3);
    let names = ["kind", "trace-id", "x"];
    let headers_count = (selector >> 24) as usize % 4;
    let headers: Vec<(&str, &[u8])> = names[..headers_count.min(3)]
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, take(i * 5, (selector >> (32 + i * 4)) as usize % 16)))
        .collect();
    let payload = take(7, 4096);
    let fields = EntryFields {
        seq,
        key,
        id,
        headers: &headers,
    };
    let offset = selector % (1 << 48);
    let frame = encode_entry_record(nonce, offset, selector, fields, payload).expect("within limits");
    let record = decode_record(&frame, nonce).expect("a valid frame decodes");
    assert_eq!(record.offset, offset);
    assert_eq!(record.payload, payload);
    assert_eq!(record.seq, seq);
    assert_eq!(record.key.as_deref(), key);
    assert_eq!(record.id.as_deref(), id);
    assert_eq!(record.headers.len(), headers.len());
    let bit = (selector as usize) % (frame.len() * 8);
    let mut damaged = frame.clone();
    damaged[bit / 8] ^= 1 << (bit % 8);
    assert_eq!(decode_frame(&damaged, nonce), None, "bit {bit} flip undetected");
    assert_eq!(decode_frame(&frame, nonce ^ 1), None, "foreign nonce");
    let cut = selector as usize % frame.len();
    assert_eq!(decode_frame(&frame[..cut], nonce), None, "cut at {cut}");

    // Malformed fields under a valid checksum: the input overwrites the extension block.
    if record.extension_bytes > 0 {
        let mut forged = frame.clone();
        let block_end = 24 + record.extension_bytes as usize;
        for (to, from) in forged[24..block_end].iter_mut().zip(rest.iter().skip(11)) {
            *to = *from;
        }
        seal_frame(nonce, &mut forged);
        if let Some(again) = decode_record(&forged, nonce) {
            assert!(again.extension_bytes == 0 || again.extension_bytes >= 8);
            assert!(again.headers.len() <= 32);
        }
    }
});
