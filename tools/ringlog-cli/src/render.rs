//! Printing records (shared by `dump` and `tail`): one line of text or one NDJSON object
//! per record, with the payload as UTF-8, hex, base64 or left out.

use std::fmt::Write as _;
use std::io::Write;

use ringlog::Record;
use serde::Serialize;

use crate::cli::PayloadFormat;
use crate::failure::{CliResult, Failure};

/// How records are printed.
#[derive(Debug, Clone, Copy)]
pub struct RecordStyle {
    /// Payload encoding.
    pub payload: PayloadFormat,
    /// NDJSON instead of text.
    pub json: bool,
}

/// One record as an NDJSON line.
#[derive(Serialize)]
struct RecordJson<'a> {
    offset: u64,
    timestamp_ms: u64,
    time: String,
    length_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_encoding: Option<&'a str>,
    /// An entry's caller sequence, key, id and headers (left out for plain records):
    /// bytes shown as `--payload utf8` shows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(&'a str, String)>,
}

impl RecordStyle {
    /// Writes `record` as one line to `out`.
    pub fn write(&self, out: &mut impl Write, record: &Record) -> CliResult<()> {
        let payload = encode_payload(record.payload(), self.payload);
        let line = if self.json {
            let json = RecordJson {
                offset: record.offset(),
                timestamp_ms: record.timestamp_ms(),
                time: format_time_ms(record.timestamp_ms()),
                length_bytes: record.payload().len(),
                payload,
                payload_encoding: match self.payload {
                    PayloadFormat::Utf8 => Some("utf8"),
                    PayloadFormat::Hex => Some("hex"),
                    PayloadFormat::Base64 => Some("base64"),
                    PayloadFormat::None => None,
                },
                seq: record.seq(),
                key: record.key().map(escape_utf8),
                id: record.id().map(escape_utf8),
                headers: record
                    .headers()
                    .map(|(name, value)| (name, escape_utf8(value)))
                    .collect(),
            };
            serde_json::to_string(&json)
                .map_err(|e| Failure::usage(format!("cannot encode a record as JSON: {e}")))?
        } else {
            let mut line = format!(
                "offset {}  time {}  length {}",
                record.offset(),
                format_time_ms(record.timestamp_ms()),
                record.payload().len()
            );
            if let Some(seq) = record.seq() {
                let _ = write!(line, "  seq {seq}");
            }
            if let Some(key) = record.key() {
                let _ = write!(line, "  key {}", escape_utf8(key));
            }
            if let Some(id) = record.id() {
                let _ = write!(line, "  id {}", escape_utf8(id));
            }
            for (name, value) in record.headers() {
                let _ = write!(line, "  {name}={}", escape_utf8(value));
            }
            if let Some(payload) = payload {
                line.push_str("  ");
                line.push_str(&payload);
            }
            line
        };
        writeln!(out, "{line}").map_err(Failure::from_stdout)
    }
}

/// The payload in the chosen encoding; `None` for [`PayloadFormat::None`].
pub fn encode_payload(bytes: &[u8], format: PayloadFormat) -> Option<String> {
    match format {
        PayloadFormat::Utf8 => Some(escape_utf8(bytes)),
        PayloadFormat::Hex => Some(hex(bytes)),
        PayloadFormat::Base64 => Some(base64(bytes)),
        PayloadFormat::None => None,
    }
}

/// Text with control characters escaped (`\n`, `\t`, `\u{1b}`) and invalid UTF-8 bytes
/// shown as `\xNN`, so a record always stays on one line.
pub fn escape_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.extend(c.escape_default()),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Standard base64 (RFC 4648) with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-11-22T05:38:28.123Z`.
pub fn format_time_ms(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(hex(b"\x00\xffA"), "00ff41");
        assert_eq!(escape_utf8(b"a\tb\n\xffc\\"), "a\\tb\\n\\xffc\\\\");
        assert_eq!(escape_utf8("héllo".as_bytes()), "héllo");
    }

    #[test]
    fn times() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            format_time_ms(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
    }
}
