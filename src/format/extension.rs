//! The extension block of an extended record frame (format version 2): the record's
//! caller sequence, key, idempotency id and headers, between the frame header and the
//! payload. Drawn in `docs/design.md` 2.2.1.
//!
//! Pure code, like the rest of `format`: [`Extension::encode`] writes a block the caller
//! validated with [`Extension::validate`]; [`decode`] takes untrusted bytes (the frame's
//! checksum has passed, but a checksum proves only who wrote them) and checks every
//! length, bit and name before anything reads a field, so that a malformed block is a
//! [`FrameError`](super::FrameError) naming what is wrong, never a panic.

/// Bytes of the fixed part of an extension block: its length, field bits, header count
/// and a reserved zero.
pub const EXTENSION_FIXED_BYTES: u64 = 8;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest idempotency id, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Longest header name, in bytes (visible ASCII only).
pub const MAX_HEADER_NAME_BYTES: usize = 64;
/// Most headers on one record.
pub const MAX_HEADERS_COUNT: usize = 32;
/// Most bytes of one extension block, its fixed part included.
pub const MAX_EXTENSION_BYTES: u64 = 64 << 10;

/// Field bit: a `u64` caller sequence follows the fixed part.
const FIELD_SEQ: u8 = 1;
/// Field bit: a key (`u16` length, bytes) follows.
const FIELD_KEY: u8 = 2;
/// Field bit: an idempotency id (`u16` length, bytes) follows.
const FIELD_ID: u8 = 4;
const FIELDS_KNOWN: u8 = FIELD_SEQ | FIELD_KEY | FIELD_ID;

const _: () = assert!(EXTENSION_FIXED_BYTES % 8 == 0);
// Every length inside a block fits its field: key and id lengths and header value
// lengths are `u16`, name lengths `u8`, the header count `u8`.
const _: () = assert!(MAX_KEY_BYTES <= u16::MAX as usize);
const _: () = assert!(MAX_ID_BYTES <= u16::MAX as usize);
const _: () = assert!(MAX_HEADER_NAME_BYTES <= u8::MAX as usize);
const _: () = assert!(MAX_HEADERS_COUNT <= u8::MAX as usize);
const _: () = assert!(MAX_EXTENSION_BYTES <= u16::MAX as u64 + 1);
// A block fits in a frame's length (whether a record with it fits in a segment is
// `Options::max_record_bytes`'s question: the limit counts extension and payload).
const _: () = assert!(MAX_EXTENSION_BYTES < super::FRAME_LENGTH_MASK as u64);

/// The fields of a record to encode (borrowed from the caller's entry).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extension<'a> {
    /// The caller's sequence number.
    pub seq: Option<u64>,
    /// What the record is about.
    pub key: Option<&'a [u8]>,
    /// The idempotency id.
    pub id: Option<&'a [u8]>,
    /// Headers as (name, value), in order.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Why an extension cannot be encoded: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidExtension {
    /// The field: `key`, `id`, `headers`, or `header "name"`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidExtension {
    InvalidExtension {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Whether `name` is a header name the format accepts: 1 to 64 bytes of visible ASCII
/// (`!` to `~`: no spaces, no control characters).
fn valid_header_name(name: &[u8]) -> bool {
    (1..=MAX_HEADER_NAME_BYTES).contains(&name.len()) && name.iter().all(u8::is_ascii_graphic)
}

impl Extension<'_> {
    /// Whether there is nothing to encode (the record is a plain frame).
    pub fn is_empty(&self) -> bool {
        self.seq.is_none() && self.key.is_none() && self.id.is_none() && self.headers.is_empty()
    }

    /// Bytes the encoded block takes, fixed part included (no overflow for any input:
    /// lengths are summed as `u64`).
    pub fn encoded_bytes(&self) -> u64 {
        let mut bytes = EXTENSION_FIXED_BYTES;
        if self.seq.is_some() {
            bytes += 8;
        }
        if let Some(key) = self.key {
            bytes += 2 + key.len() as u64;
        }
        if let Some(id) = self.id {
            bytes += 2 + id.len() as u64;
        }
        for (name, value) in self.headers {
            bytes += 1 + name.len() as u64 + 2 + value.len() as u64;
        }
        bytes
    }

    /// Checks every limit (docs/design.md 2.2.1): key and id at most 1 KiB; at most 32
    /// headers, each named by 1 to 64 bytes of visible ASCII, no name twice; the whole
    /// block at most 64 KiB.
    pub fn validate(&self) -> Result<(), InvalidExtension> {
        if let Some(key) = self.key {
            if key.len() > MAX_KEY_BYTES {
                return Err(invalid(
                    "key",
                    format!(
                        "{} bytes, more than the limit of {MAX_KEY_BYTES}",
                        key.len()
                    ),
                ));
            }
        }
        if let Some(id) = self.id {
            if id.len() > MAX_ID_BYTES {
                return Err(invalid(
                    "id",
                    format!("{} bytes, more than the limit of {MAX_ID_BYTES}", id.len()),
                ));
            }
        }
        if self.headers.len() > MAX_HEADERS_COUNT {
            return Err(invalid(
                "headers",
                format!(
                    "{} headers, more than the limit of {MAX_HEADERS_COUNT}",
                    self.headers.len()
                ),
            ));
        }
        for (i, (name, _)) in self.headers.iter().enumerate() {
            if !valid_header_name(name.as_bytes()) {
                return Err(invalid(
                    format!("header {name:?}"),
                    format!(
                        "a header name is 1 to {MAX_HEADER_NAME_BYTES} bytes of visible ASCII \
                         (no spaces or control characters); this one is {} bytes",
                        name.len()
                    ),
                ));
            }
            if self.headers[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(invalid(
                    format!("header {name:?}"),
                    "given twice (a name appears at most once per record)",
                ));
            }
        }
        let bytes = self.encoded_bytes();
        if bytes > MAX_EXTENSION_BYTES {
            return Err(invalid(
                "headers",
                format!(
                    "key, id and headers take {bytes} bytes encoded, more than the limit of \
                     {MAX_EXTENSION_BYTES}"
                ),
            ));
        }
        Ok(())
    }

    /// Writes the block into `out`, exactly [`Extension::encoded_bytes`] long. The
    /// extension must have passed [`Extension::validate`].
    pub fn encode(&self, out: &mut [u8]) {
        debug_assert!(self.validate().is_ok());
        debug_assert!(!self.is_empty());
        debug_assert_eq!(out.len() as u64, self.encoded_bytes());
        let mut fields = 0u8;
        let mut at = EXTENSION_FIXED_BYTES as usize;
        let mut put = |bytes: &[u8], at: &mut usize| {
            out[*at..*at + bytes.len()].copy_from_slice(bytes);
            *at += bytes.len();
        };
        if let Some(seq) = self.seq {
            fields |= FIELD_SEQ;
            put(&seq.to_le_bytes(), &mut at);
        }
        if let Some(key) = self.key {
            fields |= FIELD_KEY;
            put(&(key.len() as u16).to_le_bytes(), &mut at);
            put(key, &mut at);
        }
        if let Some(id) = self.id {
            fields |= FIELD_ID;
            put(&(id.len() as u16).to_le_bytes(), &mut at);
            put(id, &mut at);
        }
        for (name, value) in self.headers {
            put(&[name.len() as u8], &mut at);
            put(name.as_bytes(), &mut at);
            put(&(value.len() as u16).to_le_bytes(), &mut at);
            put(value, &mut at);
        }
        debug_assert_eq!(at, out.len());
        let block_bytes = at as u32;
        out[0..4].copy_from_slice(&block_bytes.to_le_bytes());
        out[4] = fields;
        out[5] = self.headers.len() as u8;
        out[6..8].fill(0);
    }
}

/// A decoded, checked extension block, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionView<'a> {
    /// Bytes of the block, fixed part included: the payload starts this far past the
    /// frame header.
    pub block_bytes: u64,
    /// The caller's sequence number.
    pub seq: Option<u64>,
    /// The key.
    pub key: Option<&'a [u8]>,
    /// The idempotency id.
    pub id: Option<&'a [u8]>,
    /// The encoded headers (checked by [`decode`]); [`ExtensionView::headers`] walks them.
    headers: &'a [u8],
}

impl<'a> ExtensionView<'a> {
    /// The headers, in the order they were given.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.headers }
    }
}

/// Walks encoded headers as (name, value). Ends early (never panics) at anything that
/// does not parse, which [`decode`] has ruled out for the blocks it returned.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<(&'a str, &'a [u8])> {
        let mut cursor = Cursor {
            bytes: self.rest,
            at: 0,
        };
        let (name, value) = cursor.header().ok()?;
        let name = std::str::from_utf8(name).ok()?;
        self.rest = self.rest.get(cursor.at..)?;
        Some((name, value))
    }
}

/// Reads fields off untrusted bytes, every read bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

const PAST_THE_BLOCK: &str = "extension field runs past its block";

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(len).ok_or(PAST_THE_BLOCK)?;
        let out = self.bytes.get(self.at..end).ok_or(PAST_THE_BLOCK)?;
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.take(N)?.try_into().map_err(|_| PAST_THE_BLOCK)
    }

    fn u16_prefixed(&mut self) -> Result<&'a [u8], &'static str> {
        let len = u16::from_le_bytes(self.array()?);
        self.take(len as usize)
    }

    /// One header: a name (checked) and its value.
    fn header(&mut self) -> Result<(&'a [u8], &'a [u8]), &'static str> {
        let [name_len] = self.array::<1>()?;
        let name = self.take(name_len as usize)?;
        if !valid_header_name(name) {
            return Err("extension header name is not 1 to 64 bytes of visible ASCII");
        }
        Ok((name, self.u16_prefixed()?))
    }
}

/// Decodes and checks the extension block at the start of `body` (a frame's bytes after
/// its header, up to its unpadded length). Every length is checked against the bytes
/// present and the format's limits; unknown field bits, a non-zero reserved field, an
/// empty block, a header name that breaks the rules or appears twice, and bytes left
/// over in the block are all refused.
pub fn decode(body: &[u8]) -> Result<ExtensionView<'_>, &'static str> {
    let mut fixed = Cursor { bytes: body, at: 0 };
    let block_bytes = u32::from_le_bytes(
        fixed
            .array()
            .map_err(|_| "extension block runs past the frame")?,
    ) as u64;
    let [fields, headers_count] = fixed.array()?;
    let reserved = u16::from_le_bytes(fixed.array()?);
    if block_bytes < EXTENSION_FIXED_BYTES {
        return Err("extension block shorter than its fixed part");
    }
    if block_bytes > MAX_EXTENSION_BYTES {
        return Err("extension block longer than the format allows");
    }
    let block = body
        .get(..block_bytes as usize)
        .ok_or("extension block runs past the frame")?;
    if fields & !FIELDS_KNOWN != 0 {
        return Err("unknown extension field bits");
    }
    if reserved != 0 {
        return Err("non-zero reserved extension bytes");
    }
    if fields == 0 && headers_count == 0 {
        return Err("empty extension block");
    }
    if headers_count as usize > MAX_HEADERS_COUNT {
        return Err("more extension headers than the format allows");
    }
    let mut cursor = Cursor {
        bytes: block,
        at: EXTENSION_FIXED_BYTES as usize,
    };
    let seq = if fields & FIELD_SEQ != 0 {
        Some(u64::from_le_bytes(cursor.array()?))
    } else {
        None
    };
    let key = if fields & FIELD_KEY != 0 {
        let key = cursor.u16_prefixed()?;
        if key.len() > MAX_KEY_BYTES {
            return Err("extension key longer than the format allows");
        }
        Some(key)
    } else {
        None
    };
    let id = if fields & FIELD_ID != 0 {
        let id = cursor.u16_prefixed()?;
        if id.len() > MAX_ID_BYTES {
            return Err("extension id longer than the format allows");
        }
        Some(id)
    } else {
        None
    };
    let headers_start = cursor.at;
    let mut names: [&[u8]; MAX_HEADERS_COUNT] = [&[]; MAX_HEADERS_COUNT];
    for i in 0..headers_count as usize {
        let (name, _) = cursor.header()?;
        if names[..i].contains(&name) {
            return Err("extension header name appears twice");
        }
        names[i] = name;
    }
    if cursor.at != block.len() {
        return Err("extension block has bytes past its last field");
    }
    Ok(ExtensionView {
        block_bytes,
        seq,
        key,
        id,
        headers: block.get(headers_start..).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(ext: &Extension<'_>) -> Vec<u8> {
        ext.validate().expect("valid extension");
        let mut out = vec![0xAA; ext.encoded_bytes() as usize];
        ext.encode(&mut out);
        out
    }

    fn full() -> Vec<u8> {
        let headers: &[(&str, &[u8])] = &[("kind", b"job.started"), ("trace-id", b"")];
        encoded(&Extension {
            seq: Some(41),
            key: Some(b"job-42"),
            id: Some(b"evt-1"),
            headers,
        })
    }

    #[test]
    fn every_combination_round_trips() {
        let headers: &[(&str, &[u8])] = &[("kind", b"v"), ("b", b"\x00\xff")];
        for bits in 0..16u8 {
            let ext = Extension {
                seq: (bits & 1 != 0).then_some(u64::MAX - 3),
                key: (bits & 2 != 0).then_some(b"k".as_slice()),
                id: (bits & 4 != 0).then_some(b"".as_slice()),
                headers: if bits & 8 != 0 { headers } else { &[] },
            };
            if ext.is_empty() {
                continue;
            }
            let bytes = encoded(&ext);
            let mut body = bytes.clone();
            body.extend_from_slice(b"payload after it");
            let view = decode(&body).expect("decodes");
            assert_eq!(view.block_bytes, bytes.len() as u64);
            assert_eq!(view.seq, ext.seq);
            assert_eq!(view.key, ext.key);
            assert_eq!(view.id, ext.id);
            assert_eq!(view.headers().collect::<Vec<_>>(), ext.headers.to_vec());
        }
    }

    #[test]
    fn limits_are_refused_with_the_field_named() {
        let long = vec![b'x'; MAX_KEY_BYTES + 1];
        let err = Extension {
            key: Some(&long),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "key");
        let err = Extension {
            id: Some(&long),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "id");
        for name in ["", "kïnd", "has space", "tab\t", &"n".repeat(65)] {
            let headers: &[(&str, &[u8])] = &[(name, b"v")];
            let err = Extension {
                headers,
                ..Default::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(err.field, format!("header {name:?}"), "{name:?}");
        }
        let names: Vec<String> = (0..33).map(|i| format!("h{i}")).collect();
        let headers: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        assert_eq!(
            Extension {
                headers: &headers,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .field,
            "headers"
        );
        assert!(Extension {
            headers: &headers[..32],
            ..Default::default()
        }
        .validate()
        .is_ok());
        let twice: &[(&str, &[u8])] = &[("a", b"1"), ("a", b"2")];
        assert!(Extension {
            headers: twice,
            ..Default::default()
        }
        .validate()
        .is_err());
        let big = vec![0u8; 40 << 10];
        let headers: &[(&str, &[u8])] = &[("a", &big), ("b", &big)];
        let err = Extension {
            headers,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "headers");
        assert!(err.reason.contains("65536"), "{}", err.reason);
    }

    #[test]
    fn the_largest_block_round_trips() {
        // 64 KiB exactly: fixed 8, one header of 1 + 1 + 2 + value.
        let value = vec![7u8; (MAX_EXTENSION_BYTES - 12) as usize];
        let headers: &[(&str, &[u8])] = &[("v", &value)];
        let ext = Extension {
            headers,
            ..Default::default()
        };
        assert_eq!(ext.encoded_bytes(), MAX_EXTENSION_BYTES);
        let bytes = encoded(&ext);
        assert_eq!(
            decode(&bytes).expect("decodes").headers().next(),
            Some(("v", &value[..]))
        );
    }

    /// Sets the block length word of an encoded block.
    fn with_block_bytes(mut bytes: Vec<u8>, block_bytes: u32) -> Vec<u8> {
        bytes[0..4].copy_from_slice(&block_bytes.to_le_bytes());
        bytes
    }

    #[test]
    fn every_malformed_block_is_refused() {
        let good = full();
        let len = good.len() as u32;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("short fixed part", good[..5].to_vec()),
            ("length below fixed", with_block_bytes(good.clone(), 4)),
            ("length past body", with_block_bytes(good.clone(), len + 1)),
            ("length over limit", {
                let mut b = with_block_bytes(good.clone(), (MAX_EXTENSION_BYTES + 8) as u32);
                b.resize((MAX_EXTENSION_BYTES + 8) as usize, 0);
                b
            }),
            ("unknown field bit", {
                let mut b = good.clone();
                b[4] |= 0x08;
                b
            }),
            ("reserved", {
                let mut b = good.clone();
                b[6] = 1;
                b
            }),
            ("empty", {
                let mut b = vec![0u8; 8];
                b[0] = 8;
                b
            }),
            ("too many headers", {
                let mut b = good.clone();
                b[5] = 33;
                b
            }),
            ("header count past block", {
                let mut b = good.clone();
                b[5] = 3;
                b
            }),
            ("header count short of block", {
                let mut b = good.clone();
                b[5] = 1;
                b
            }),
            ("key length past block", {
                let mut b = good.clone();
                // seq is 8 bytes at 8..16; the key length at 16..18.
                b[16..18].copy_from_slice(&u16::MAX.to_le_bytes());
                b
            }),
            ("non-ascii header name", {
                let mut b = good.clone();
                let at = b.windows(4).position(|w| w == b"kind").expect("name");
                b[at] = 0xC3;
                b
            }),
            ("space in header name", {
                let mut b = good.clone();
                let at = b.windows(4).position(|w| w == b"kind").expect("name");
                b[at] = b' ';
                b
            }),
            ("zero-length header name", {
                let headers: &[(&str, &[u8])] = &[("k", b"")];
                let mut b = encoded(&Extension {
                    headers,
                    ..Default::default()
                });
                // name_len 1 -> 0: "k" becomes the first byte of the value length.
                b[8] = 0;
                b
            }),
            ("duplicate header", {
                let headers: &[(&str, &[u8])] = &[("ab", b""), ("ac", b"")];
                let mut b = encoded(&Extension {
                    headers,
                    ..Default::default()
                });
                let at = b.windows(2).rposition(|w| w == b"ac").expect("name");
                b[at + 1] = b'b';
                b
            }),
            ("trailing bytes", {
                let mut b = good.clone();
                b.push(0);
                let len = b.len() as u32;
                with_block_bytes(b, len)
            }),
        ];
        for (what, bytes) in cases {
            assert!(decode(&bytes).is_err(), "{what}: accepted");
        }
        // Key and id over the limit, lengths consistent.
        for field in [FIELD_KEY, FIELD_ID] {
            let mut b = vec![0u8; 8];
            b[4] = field;
            b.extend_from_slice(&((MAX_KEY_BYTES + 1) as u16).to_le_bytes());
            b.resize(b.len() + MAX_KEY_BYTES + 1, b'x');
            let len = b.len() as u32;
            let b = with_block_bytes(b, len);
            assert!(decode(&b).is_err(), "field {field} over its limit");
        }
    }

    #[test]
    fn any_prefix_and_any_byte_value_never_panic() {
        let good = full();
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for at in 0..good.len() {
            for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = good.clone();
                b[at] = value;
                if let Ok(view) = decode(&b) {
                    // Whatever decodes is consistent with itself.
                    assert!(view.block_bytes as usize <= b.len());
                    let _ = view.headers().count();
                }
            }
        }
    }
}
