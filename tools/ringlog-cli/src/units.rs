//! Human units on the command line: sizes (`64MiB`, `1KiB`, `4096`), durations (`10s`,
//! `500ms`), durability modes (`sync`, `interval:1ms`, `none`) and I/O backends.

use std::time::Duration;

use ringlog::{Durability, IoBackend};

/// Parses a size in bytes: a number with an optional unit. `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`, `T`/`TiB` are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of 1000; `B` or
/// no unit is bytes. Units are case-insensitive; a fraction is allowed (`1.5KiB`) when the
/// result is a whole number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
            "unknown size unit '{unit}'; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB), e.g. 64MiB"
        ))
        }
    };
    scale(number, multiplier as f64, "bytes")
}

/// Parses a duration: a number and a unit (`ns`, `us`, `ms`, `s`, `m`/`min`, `h`), e.g.
/// `10s`, `500ms`, `1.5s`. A bare `0` is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let nanos_per_unit: f64 = match unit.to_ascii_lowercase().as_str() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" | "sec" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "" if number == "0" => 1.0,
        "" => return Err(format!("'{text}' needs a unit, e.g. {text}s or {text}ms")),
        _ => {
            return Err(format!(
                "unknown duration unit '{unit}'; use ns, us, ms, s, m or h, e.g. 500ms or 10s"
            ))
        }
    };
    scale(number, nanos_per_unit, "nanoseconds").map(Duration::from_nanos)
}

/// Splits `"1.5KiB"` into `("1.5", "KiB")`, allowing spaces between them.
fn split_number(text: &str) -> Result<(&str, &str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("'{text}' does not start with a number"));
    }
    Ok((number, unit.trim()))
}

/// `number * multiplier`, required to be a whole, representable count of `what`.
fn scale(number: &str, multiplier: f64, what: &str) -> Result<u64, String> {
    let cleaned = number.replace('_', "");
    if let Ok(whole) = cleaned.parse::<u64>() {
        return whole
            .checked_mul(multiplier as u64)
            .ok_or_else(|| format!("{number} is too large"));
    }
    let value: f64 = cleaned
        .parse()
        .map_err(|_| format!("'{number}' is not a number"))?;
    let scaled = value * multiplier;
    if !scaled.is_finite() || scaled >= u64::MAX as f64 {
        return Err(format!("{number} is too large"));
    }
    if scaled.fract() != 0.0 {
        return Err(format!("{number} is not a whole number of {what}"));
    }
    Ok(scaled as u64)
}

/// A parsed `--durability` value (kept printable for summaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurabilityArg(pub Durability);

impl std::fmt::Display for DurabilityArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Durability::Sync => write!(f, "sync"),
            Durability::Interval(every) => write!(f, "interval:{}", format_duration(every)),
            Durability::None => write!(f, "none"),
        }
    }
}

/// Parses `sync`, `interval:DURATION` or `none`.
pub fn parse_durability(text: &str) -> Result<DurabilityArg, String> {
    let lower = text.trim().to_ascii_lowercase();
    match lower.as_str() {
        "sync" => Ok(DurabilityArg(Durability::Sync)),
        "none" => Ok(DurabilityArg(Durability::None)),
        _ => match lower.strip_prefix("interval:") {
            Some(every) => {
                let every = parse_duration(every)?;
                if every.is_zero() {
                    return Err("interval:0 never flushes; use sync or a non-zero interval".into());
                }
                Ok(DurabilityArg(Durability::Interval(every)))
            }
            None => Err(format!(
                "unknown durability '{text}'; use sync, interval:DURATION (e.g. interval:1ms) or none"
            )),
        },
    }
}

/// A parsed `--io` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoArg(pub IoBackend);

impl std::fmt::Display for IoArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            IoBackend::Auto => "auto",
            IoBackend::Uring => "uring",
            IoBackend::Pwrite => "pwrite",
        })
    }
}

/// Parses `auto`, `uring` (or `io_uring`) or `pwrite`.
pub fn parse_io(text: &str) -> Result<IoArg, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(IoArg(IoBackend::Auto)),
        "uring" | "io_uring" | "io-uring" => Ok(IoArg(IoBackend::Uring)),
        "pwrite" | "pwritev" => Ok(IoArg(IoBackend::Pwrite)),
        _ => Err(format!(
            "unknown I/O backend '{text}'; use auto, uring or pwrite"
        )),
    }
}

/// `10s`, `500ms`, `1.5s`, `250us`: the shortest exact-enough form.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        "0s".into()
    } else if nanos % 1_000_000_000 == 0 {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

/// `1.5 KiB`, `64.0 MiB`, `512 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1KiB"), Ok(1024));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64 mib"), Ok(64 << 20));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert!(parse_bytes("1.3B").is_err());
        assert!(parse_bytes("10XB")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_bytes("KiB").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("10parsecs").is_err());
        assert_eq!(format_duration(Duration::from_millis(1)), "1ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
    }

    #[test]
    fn modes() {
        assert_eq!(
            parse_durability("sync"),
            Ok(DurabilityArg(Durability::Sync))
        );
        assert_eq!(
            parse_durability("interval:1ms"),
            Ok(DurabilityArg(Durability::Interval(Duration::from_millis(
                1
            ))))
        );
        assert!(parse_durability("interval:0s").is_err());
        assert!(parse_durability("fast").is_err());
        assert_eq!(
            parse_durability("interval:1ms").map(|d| d.to_string()),
            Ok("interval:1ms".to_string())
        );
        assert_eq!(parse_io("uring"), Ok(IoArg(IoBackend::Uring)));
        assert!(parse_io("aio").is_err());
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(100), "100 B");
    }
}
