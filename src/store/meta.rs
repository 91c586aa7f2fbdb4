//! The files that make a directory a store, and a topic's persisted options: pure
//! encoding and decoding, no I/O.
//!
//! A topic's options file is text (`key value` lines) so that an operator can read it,
//! with a CRC32C of everything before its last line, so that a damaged one is refused
//! rather than misread:
//!
//! ```text
//! ringlog-topic 1
//! options own
//! segment_bytes 1048576
//! durability interval 5000us
//! ...
//! crc32c 5a1f00c2
//! ```
//!
//! `options store` (and no other keys) means the topic follows the options its store is
//! opened with; `options own` lists every option the topic was created with.

use std::time::Duration;

use crate::options::{Durability, Options, Preallocate, RecoveryPolicy};

/// The file that marks a directory as a store.
pub(crate) const STORE_MARKER_FILE: &str = "ringlog.store";
/// What the store marker holds.
pub(crate) const STORE_MARKER: &str = "ringlog store\nversion 1\n";
/// A topic's options file, inside its directory.
pub(crate) const TOPIC_OPTIONS_FILE: &str = "topic.options";
/// The store's subdirectory of topics.
pub(crate) const TOPICS_DIR: &str = "topics";

const TOPIC_MAGIC_LINE: &str = "ringlog-topic 1";

/// A topic's options as persisted.
#[derive(Debug, Clone)]
pub(crate) enum TopicOptions {
    /// The store's options, whatever they are when it is opened.
    Store,
    /// The topic's own, fixed when it was created.
    Own(Options),
}

/// Encodes a topic options file.
pub(crate) fn encode_topic_options(options: &TopicOptions) -> String {
    let mut text = format!("{TOPIC_MAGIC_LINE}\n");
    match options {
        TopicOptions::Store => text.push_str("options store\n"),
        TopicOptions::Own(o) => {
            text.push_str("options own\n");
            let line = |key: &str, value: String| format!("{key} {value}\n");
            let or_default = |v: Option<u64>| v.map_or("default".to_string(), |v| v.to_string());
            text.push_str(&line("segment_bytes", or_default(o.segment_bytes)));
            text.push_str(&line(
                "durability",
                match o.durability {
                    Durability::Sync => "sync".into(),
                    Durability::None => "none".into(),
                    Durability::Interval(d) => format!("interval {}us", d.as_micros()),
                },
            ));
            text.push_str(&line(
                "recovery",
                match o.recovery {
                    RecoveryPolicy::TruncateTorn => "truncate_torn".into(),
                    RecoveryPolicy::Strict => "strict".into(),
                },
            ));
            text.push_str(&line("max_record_bytes", or_default(o.max_record_bytes)));
            text.push_str(&line(
                "index_interval_bytes",
                o.index_interval_bytes.to_string(),
            ));
            text.push_str(&line(
                "preallocate",
                match o.preallocate {
                    None => "default".into(),
                    Some(Preallocate::ZeroFill) => "zero_fill".into(),
                    Some(Preallocate::Fallocate) => "fallocate".into(),
                },
            ));
            text.push_str(&line("read_unflushed", o.read_unflushed.to_string()));
            text.push_str(&line("max_batch_bytes", o.max_batch_bytes.to_string()));
            text.push_str(&line(
                "segment_growth",
                match o.segment_growth {
                    None => "default".into(),
                    Some(grows) => grows.to_string(),
                },
            ));
        }
    }
    let crc = crc32c::crc32c(text.as_bytes());
    text.push_str(&format!("crc32c {crc:08x}\n"));
    text
}

/// Decodes a topic options file. `base` supplies what the file does not say (the I/O
/// backend, which is the store's). The error says what is wrong, for a `Corruption`.
pub(crate) fn decode_topic_options(bytes: &[u8], base: &Options) -> Result<TopicOptions, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let without_newline = text
        .strip_suffix('\n')
        .ok_or("the file does not end with a newline (cut short?)")?;
    let body_end = without_newline
        .rfind('\n')
        .map(|at| at + 1)
        .ok_or("too short to hold a checksum line")?;
    let (body, crc_line) = without_newline.split_at(body_end);
    // Exactly `crc32c ` and 8 lowercase hex digits: one spelling per value.
    let stored = crc_line
        .strip_prefix("crc32c ")
        .filter(|hex| hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("the last line is not `crc32c <8 hex digits>`")?;
    if crc32c::crc32c(body.as_bytes()) != stored {
        return Err("checksum mismatch".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(TOPIC_MAGIC_LINE) {
        return Err(format!(
            "the first line is not `{TOPIC_MAGIC_LINE}` (another format version?)"
        ));
    }
    match lines.next() {
        Some("options store") => return Ok(TopicOptions::Store),
        Some("options own") => {}
        other => return Err(format!("expected `options store|own`, found {other:?}")),
    }
    let mut o = base.clone();
    let mut seen = 0;
    for line in lines {
        let (key, value) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {line:?} is not `key value`"))?;
        let number = || -> Result<u64, String> {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}: {value:?} is not a number"))
        };
        let number_or_default = || -> Result<Option<u64>, String> {
            if value == "default" {
                Ok(None)
            } else {
                number().map(Some)
            }
        };
        match key {
            "segment_bytes" => o.segment_bytes = number_or_default()?,
            "durability" => {
                o.durability = match value {
                    "sync" => Durability::Sync,
                    "none" => Durability::None,
                    _ => {
                        let micros = value
                            .strip_prefix("interval ")
                            .and_then(|v| v.strip_suffix("us"))
                            .and_then(|v| v.parse::<u64>().ok())
                            .ok_or_else(|| format!("durability: {value:?} is not known"))?;
                        Durability::Interval(Duration::from_micros(micros))
                    }
                }
            }
            "recovery" => {
                o.recovery = match value {
                    "truncate_torn" => RecoveryPolicy::TruncateTorn,
                    "strict" => RecoveryPolicy::Strict,
                    _ => return Err(format!("recovery: {value:?} is not known")),
                }
            }
            "max_record_bytes" => o.max_record_bytes = number_or_default()?,
            "index_interval_bytes" => o.index_interval_bytes = number()?,
            "preallocate" => {
                o.preallocate = match value {
                    "default" => None,
                    "zero_fill" => Some(Preallocate::ZeroFill),
                    "fallocate" => Some(Preallocate::Fallocate),
                    _ => return Err(format!("preallocate: {value:?} is not known")),
                }
            }
            "read_unflushed" => {
                o.read_unflushed = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("read_unflushed: {value:?} is not a boolean")),
                }
            }
            "max_batch_bytes" => o.max_batch_bytes = number()?,
            "segment_growth" => {
                o.segment_growth = match value {
                    "default" => None,
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => return Err(format!("segment_growth: {value:?} is not known")),
                }
            }
            _ => return Err(format!("unknown option {key:?}")),
        }
        seen += 1;
    }
    if seen != 9 {
        return Err(format!("{seen} options where 9 belong"));
    }
    Ok(TopicOptions::Own(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_options_round_trip() {
        let o = Options::default()
            .segment_bytes(1 << 20)
            .durability(Durability::Interval(Duration::from_millis(5)))
            .recovery(RecoveryPolicy::Strict)
            .max_record_bytes(1000)
            .index_interval_bytes(128)
            .preallocate(Preallocate::Fallocate)
            .read_unflushed(true)
            .max_batch_bytes(1 << 20)
            .segment_growth(false);
        let text = encode_topic_options(&TopicOptions::Own(o.clone()));
        let TopicOptions::Own(back) =
            decode_topic_options(text.as_bytes(), &Options::default()).expect("decodes")
        else {
            panic!("not own options");
        };
        assert_eq!(encode_topic_options(&TopicOptions::Own(back)), text);
    }

    #[test]
    fn store_options_round_trip() {
        let text = encode_topic_options(&TopicOptions::Store);
        assert!(matches!(
            decode_topic_options(text.as_bytes(), &Options::default()),
            Ok(TopicOptions::Store)
        ));
    }

    #[test]
    fn every_damage_is_refused() {
        let text = encode_topic_options(&TopicOptions::Own(Options::default()));
        let bytes = text.as_bytes();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.to_vec();
                damaged[at] ^= 1 << bit;
                assert!(
                    decode_topic_options(&damaged, &Options::default()).is_err(),
                    "flip of bit {bit} at byte {at} accepted"
                );
            }
        }
        for len in 0..bytes.len() - 1 {
            assert!(decode_topic_options(&bytes[..len], &Options::default()).is_err());
        }
    }
}
