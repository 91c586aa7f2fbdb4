//! `ringlog append DIR [--file F] [--batch N]`: appends each line of stdin (or of F) as a
//! record and prints the offset range. Records are durable when it prints. A progress bar
//! goes to stderr when stderr is a terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ringlog::{AppendTicket, Log, Options};

use crate::cli::AppendArgs;
use crate::failure::{CliResult, Failure};

/// Runs `append`.
pub fn run(args: &AppendArgs) -> CliResult<()> {
    let (input, input_bytes): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = File::open(path).map_err(|e| {
                Failure::usage(format!(
                    "cannot open --file {}: {e}; check the path",
                    path.display()
                ))
            })?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::with_capacity(1 << 20, file)), len)
        }
        None => (Box::new(std::io::stdin().lock()), None),
    };
    let segment_bytes = args
        .segment_size
        .or_else(|| existing_segment_bytes(&args.dir))
        .unwrap_or(64 << 20);
    let options = Options::default().segment_bytes(segment_bytes);
    let log = Log::open(&args.dir, options).map_err(|e| Failure::from_log(e, &args.dir))?;
    let progress = progress_bar(input_bytes);
    progress.set_message("0 lines");
    let appended = ingest(&log, input, args, &progress);
    progress.finish_and_clear();
    let appended = appended?;
    log.close().map_err(|e| Failure::from_log(e, &args.dir))?;
    let mut out = std::io::stdout().lock();
    let line = if appended.is_empty() {
        format!(
            "appended 0 records (the log's next offset is {})",
            appended.start
        )
    } else {
        format!(
            "appended {} records: offsets {}..{} (durable)",
            appended.end - appended.start,
            appended.start,
            appended.end
        )
    };
    writeln!(out, "{line}").map_err(Failure::from_stdout)
}

/// Reads lines and appends them: one pipelined record each with `--batch 1`, else atomic
/// batches of `--batch` lines. Returns the offsets appended.
fn ingest(
    log: &Log,
    mut input: Box<dyn BufRead>,
    args: &AppendArgs,
    progress: &ProgressBar,
) -> CliResult<Range<u64>> {
    let fail = |e| Failure::from_log(e, &args.dir);
    let batch_records = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let start = log.next_offset();
    let mut end = start;
    let mut last_ticket: Option<AppendTicket> = None;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut line = Vec::new();
    let mut lines_count = 0u64;
    loop {
        line.clear();
        let read_bytes = input.read_until(b'\n', &mut line).map_err(|e| {
            Failure::usage(format!(
                "cannot read the input: {e}; check the file or pipe"
            ))
        })?;
        if read_bytes == 0 {
            break;
        }
        progress.inc(read_bytes as u64);
        let record = strip_line_end(&line);
        if batch_records == 1 {
            let ticket = log.submit(record).map_err(fail)?;
            end = ticket.offset() + 1;
            last_ticket = Some(ticket);
        } else {
            pending.push(record.to_vec());
            if pending.len() == batch_records {
                end = append_pending(log, &mut pending).map_err(fail)?.end;
            }
        }
        lines_count += 1;
        if lines_count % 1024 == 0 {
            progress.set_message(format!("{lines_count} lines"));
        }
    }
    if !pending.is_empty() {
        end = append_pending(log, &mut pending).map_err(fail)?.end;
    }
    if let Some(ticket) = last_ticket {
        // Offsets become durable in order: the last one covers all before it.
        ticket.wait().map_err(fail)?;
    }
    Ok(start..end)
}

/// Appends `pending` as one atomic batch and empties it.
fn append_pending(log: &Log, pending: &mut Vec<Vec<u8>>) -> ringlog::Result<Range<u64>> {
    let payloads: Vec<&[u8]> = pending.iter().map(Vec::as_slice).collect();
    let range = log.append_batch(&payloads);
    pending.clear();
    range
}

/// The line without its `\n` or `\r\n`.
fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The segment size of the log already in `dir`, so new segments match it.
fn existing_segment_bytes(dir: &Path) -> Option<u64> {
    if !dir.is_dir() {
        return None;
    }
    let log = Log::open_read_only(dir, Options::default()).ok()?;
    let segments = log.segments().ok()?;
    segments.last().map(|s| s.segment_bytes)
}

/// A progress bar on stderr when stderr is a terminal (bytes of `--file`, or a spinner
/// for stdin); hidden otherwise.
fn progress_bar(input_bytes: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match input_bytes {
        Some(total_bytes) => {
            let bar = ProgressBar::new(total_bytes);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let spinner = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {bytes} read, {msg} {elapsed}")
            {
                spinner.set_style(style);
            }
            spinner.enable_steady_tick(Duration::from_millis(200));
            spinner
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_line_end;

    #[test]
    fn line_ends() {
        assert_eq!(strip_line_end(b"abc\n"), b"abc");
        assert_eq!(strip_line_end(b"abc\r\n"), b"abc");
        assert_eq!(strip_line_end(b"abc"), b"abc");
        assert_eq!(strip_line_end(b"\n"), b"");
    }
}
