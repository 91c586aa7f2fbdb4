//! `ringlog import DIR --jsonl FILE... [--topic T] [--key-field F] [--id-field F]
//! [--seq-field F] [--time-field F] [--skip-bad] [--json]`: migrates a hand-written
//! JSON-lines event log into ringlog, one record per line (the line's bytes are the
//! payload), with the named fields as key, idempotency id, caller sequence and timestamp.
//!
//! - Rotated files (`F.1`, `F.2`, ...: the runtime that wrote them renames the current
//!   file to `.1` and shifts older ones up) are read oldest first, `F` last.
//! - A torn last line (the end of the last file, not a whole JSON value, no newline after
//!   it: a crash mid-write) is reported and left out.
//! - A malformed line anywhere else stops the import with its file, line number and byte
//!   position; everything before it is imported (and durable), nothing after it.
//!   `--skip-bad` imports the rest instead, counting and naming each line it skipped.
//! - Re-running after an interruption appends nothing twice when lines carry an id
//!   (`--id-field`: the log's idempotency index decides) or a sequence (`--seq-field`:
//!   a sequence not above the log's last is taken as imported already). Without either,
//!   a re-run appends the lines again: say so in the output.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use ringlog::{Durability, Entry, Error, Log, Options};
use serde_json::Value;

use crate::cli::ImportArgs;
use crate::failure::{CliResult, Failure};

/// What an import did.
#[derive(Default, serde::Serialize)]
struct Outcome {
    files: Vec<String>,
    lines_read: u64,
    imported: u64,
    first_offset: Option<u64>,
    next_offset: u64,
    /// Lines whose id or sequence the log held already.
    already_imported: u64,
    /// Malformed lines skipped under --skip-bad: "file:line (byte N): reason".
    skipped: Vec<String>,
    /// A torn last line left out: "file:line (byte N)".
    torn_tail: Option<String>,
    dedup: &'static str,
}

/// Runs `import`.
pub fn run(args: &ImportArgs) -> CliResult<()> {
    let files = ordered_files(&args.jsonl)?;
    let target = super::Target::new(&args.dir, args.topic.as_deref());
    target.check_writable()?;
    // Flushed once at the end (and before a stop on a bad line): an import is a batch.
    let options = Options::default().durability(Durability::None);
    let writable = target.open_writable(options, None)?;
    let log = &writable.log;
    let fail = |e: Error| target.fail(e);
    let mut outcome = Outcome {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        next_offset: log.next_offset(),
        dedup: match (&args.id_field, &args.seq_field) {
            (Some(_), _) => "by idempotency id",
            (None, Some(_)) => "by caller sequence",
            (None, None) => "none: a re-run appends every line again",
        },
        ..Outcome::default()
    };
    let result = import_files(log, args, &files, &mut outcome);
    // What was appended is made durable whatever stopped the import.
    let synced = log.sync().map_err(fail);
    outcome.next_offset = log.next_offset();
    let closed = writable.close().map_err(fail);
    result?;
    synced?;
    closed?;
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        serde_json::to_string(&outcome).unwrap_or_default()
    } else {
        describe(&outcome)
    };
    writeln!(out, "{text}").map_err(Failure::from_stdout)
}

fn describe(o: &Outcome) -> String {
    let mut text = format!(
        "imported {} of {} lines from {} file(s): offsets {}..{} (durable)",
        o.imported,
        o.lines_read,
        o.files.len(),
        o.first_offset.unwrap_or(o.next_offset),
        o.next_offset
    );
    if o.already_imported > 0 {
        text.push_str(&format!(
            "; {} line(s) were imported already",
            o.already_imported
        ));
    }
    if !o.skipped.is_empty() {
        text.push_str(&format!("; skipped {} malformed line(s):", o.skipped.len()));
        for line in &o.skipped {
            text.push_str(&format!("\n  {line}"));
        }
    }
    if let Some(torn) = &o.torn_tail {
        text.push_str(&format!(
            "\ntorn last line {torn} left out (a write the crash cut short)"
        ));
    }
    text.push_str(&format!("\ndeduplication: {}", o.dedup));
    text
}

/// Each file's rotations oldest first, then the file.
fn ordered_files(given: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    for file in given {
        if !file.is_file() {
            return Err(Failure::usage(format!(
                "--jsonl {}: no such file; pass the event log's current file (its rotations F.1, F.2, ... are found beside it)",
                file.display()
            )));
        }
        let mut rotations = Vec::new();
        for index in 1.. {
            let mut name = file.as_os_str().to_os_string();
            name.push(format!(".{index}"));
            let rotated = PathBuf::from(name);
            if !rotated.is_file() {
                break;
            }
            rotations.push(rotated);
        }
        out.extend(rotations.into_iter().rev());
        out.push(file.clone());
    }
    Ok(out)
}

fn import_files(
    log: &Log,
    args: &ImportArgs,
    files: &[PathBuf],
    outcome: &mut Outcome,
) -> CliResult<()> {
    for (file_index, path) in files.iter().enumerate() {
        let last_file = file_index + 1 == files.len();
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::usage(format!("cannot open {}: {e}", path.display())))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        let (mut line_number, mut position) = (0u64, 0u64);
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            if read == 0 {
                break;
            }
            line_number += 1;
            let at = position;
            position += read as u64;
            let complete = line.last() == Some(&b'\n');
            let text = trim_line(&line);
            if text.is_empty() {
                continue;
            }
            outcome.lines_read += 1;
            let place = format!("{}:{line_number} (byte {at})", path.display());
            let value: Value = match serde_json::from_slice(text) {
                Ok(value) => value,
                Err(e) => {
                    if last_file && !complete {
                        // The end of the log, cut short by a crash mid-write.
                        outcome.torn_tail = Some(place);
                        break;
                    }
                    if args.skip_bad {
                        outcome.skipped.push(format!("{place}: {e}"));
                        continue;
                    }
                    return Err(Failure::usage(format!(
                        "malformed line at {place}: {e}; the {} lines before it are imported \
                         (offsets up to {}), nothing after it; fix or remove the line and run \
                         the import again{}, or pass --skip-bad",
                        outcome.imported,
                        log.next_offset(),
                        if outcome.dedup.starts_with("none") {
                            " (without --id-field or --seq-field it appends the lines before it again)"
                        } else {
                            ""
                        }
                    )));
                }
            };
            import_line(log, args, text, &value, &place, outcome)?;
        }
    }
    Ok(())
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// A field's value as record bytes: a string's text, else its JSON.
fn field_bytes(value: &Value, field: &str) -> Option<Vec<u8>> {
    match value.get(field)? {
        Value::String(s) => Some(s.clone().into_bytes()),
        Value::Null => None,
        other => Some(other.to_string().into_bytes()),
    }
}

fn import_line(
    log: &Log,
    args: &ImportArgs,
    text: &[u8],
    value: &Value,
    place: &str,
    outcome: &mut Outcome,
) -> CliResult<()> {
    let bad = |what: String| Failure::usage(format!("line {place}: {what}"));
    let key = args
        .key_field
        .as_deref()
        .and_then(|f| field_bytes(value, f));
    let id = args.id_field.as_deref().and_then(|f| field_bytes(value, f));
    let seq = match args.seq_field.as_deref() {
        None => None,
        Some(field) => match value.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| bad(format!("{field} is {v}, not an unsigned integer")))?,
            ),
        },
    };
    let timestamp = match args.time_field.as_deref() {
        None => None,
        Some(field) => match value.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .ok_or_else(|| bad(format!("{field} is {n}, not milliseconds")))?,
            ),
            Some(Value::String(s)) => Some(
                parse_rfc3339_ms(s)
                    .ok_or_else(|| bad(format!("{field} {s:?} is not an RFC 3339 time")))?,
            ),
            Some(other) => return Err(bad(format!("{field} is {other}, not a time"))),
        },
    };
    if let (Some(seq), None) = (seq, &id) {
        if log.last_seq().is_some_and(|last| seq <= last) {
            outcome.already_imported += 1;
            return Ok(());
        }
    }
    let mut entry = Entry::new(text);
    if let Some(key) = &key {
        entry = entry.key(key);
    }
    if let Some(seq) = seq {
        entry = entry.seq(seq);
    }
    if let Some(ts) = timestamp {
        entry = entry.timestamp_ms(ts);
    }
    let result = match &id {
        Some(id) => log.append_entry_once(entry.id(id)),
        None => log.append_entry(entry).map(|offset| (offset, true)),
    };
    match result {
        Ok((offset, true)) => {
            outcome.imported += 1;
            outcome.first_offset.get_or_insert(offset);
            Ok(())
        }
        Ok((_, false)) => {
            outcome.already_imported += 1;
            Ok(())
        }
        Err(Error::SequenceViolation { last, provided }) => Err(bad(format!(
            "its sequence {provided} is not above the last imported one {last}: the event log's sequences go backwards here"
        ))),
        Err(e) => Err(Failure::from_log(e, log.dir())),
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time: `YYYY-MM-DDTHH:MM:SS`, an
/// optional fraction, then `Z` or `±HH:MM` (a space may stand for the `T`).
fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let minutes = digits(at + 1, 2)? * 60 + digits(at + 4, 2)?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1_000 + millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-12-06T10:00:00Z"),
            Some(1_796_551_200_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-06T10:00:00.5Z"),
            Some(1_796_551_200_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-06T12:00:00.123456+02:00"),
            Some(1_796_551_200_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T23:59:59Z"),
            Some(951_868_799_000)
        );
        for bad in [
            "2026-12-06",
            "2026-13-06T10:00:00Z",
            "2026-12-06T10:00:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn rotations_are_read_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        for name in ["events.jsonl", "events.jsonl.1", "events.jsonl.2"] {
            std::fs::write(dir.path().join(name), b"{}\n").unwrap();
        }
        let order: Vec<String> = ordered_files(&[file])
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(order, ["events.jsonl.2", "events.jsonl.1", "events.jsonl"]);
    }
}
