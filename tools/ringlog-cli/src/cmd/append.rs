//! `ringlog append DIR [--topic NAME] [--file F] [--batch N]`: appends each line of stdin (or of F) as a
//! record and prints the offset range. Records are durable when it prints. A progress bar
//! goes to stderr when stderr is a terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::ops::Range;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ringlog::{AppendTicket, Error, Log, Options};

use crate::cli::AppendArgs;
use crate::failure::{CliResult, Failure};
use crate::signals::{self, Interruptible};

/// Segment size of a new log when `--segment-size` is not given.
const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Runs `append`.
pub fn run(args: &AppendArgs) -> CliResult<()> {
    let target = super::Target::new(&args.dir, args.topic.as_deref());
    target.check_writable()?;
    let (input, input_bytes): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = File::open(path).map_err(|e| {
                Failure::usage(format!(
                    "cannot open --file {}: {e}; check the path",
                    path.display()
                ))
            })?;
            let len = file.metadata().ok().map(|m| m.len());
            let reader = BufReader::with_capacity(1 << 20, Interruptible(file));
            (Box::new(reader), len)
        }
        None => (
            Box::new(BufReader::with_capacity(
                1 << 20,
                Interruptible(std::io::stdin()),
            )),
            None,
        ),
    };
    // A single log keeps its segment size unless told otherwise. A store's topic runs
    // with the store's options (the defaults), or with its own, persisted when
    // `--segment-size` creates it.
    let (options, own_options) = match (&args.topic, args.segment_size) {
        (None, given) => {
            let segment_bytes = given
                .or_else(|| super::existing_segment_bytes(&args.dir))
                .unwrap_or(DEFAULT_SEGMENT_BYTES);
            (Options::default().segment_bytes(segment_bytes), None)
        }
        (Some(_), None) => (Options::default(), None),
        (Some(_), Some(segment_bytes)) => (
            Options::default(),
            Some(Options::default().segment_bytes(segment_bytes)),
        ),
    };
    let fail = |e| target.fail(e);
    let record_limit_bytes = own_options
        .as_ref()
        .unwrap_or(&options)
        .record_limit_bytes()
        .map_err(fail)?;
    signals::install()
        .map_err(|e| Failure::usage(format!("cannot handle SIGINT and SIGTERM: {e}")))?;
    let writable = signals::with_signals_blocked(|| target.open_writable(options, own_options))?;
    let log = &writable.log;
    let progress = progress_bar(input_bytes);
    progress.set_message("0 lines");
    let mut ingest = Ingest {
        log,
        target,
        start: log.next_offset(),
        end: log.next_offset(),
        last_ticket: None,
    };
    let outcome = ingest.lines(input, args, record_limit_bytes, &progress);
    progress.finish_and_clear();
    // Offsets become durable in order: the last ticket covers every record before it.
    let waited = ingest
        .last_ticket
        .take()
        .map_or(Ok(()), |t| t.wait().map(drop));
    let (start, end) = (ingest.start, ingest.end);
    match (outcome, waited) {
        (Ok(()), Ok(())) => {}
        (Err(cause), _) => return Err(ingest.failed(cause)),
        (Ok(()), Err(e)) => return Err(ingest.failed(fail(e))),
    }
    writable.close().map_err(fail)?;
    if let Some(stop) = signals::received() {
        return Err(Failure::interrupted(
            stop,
            format!(
                "{}; resume from input line {}",
                durable_lines(start, end),
                end - start + 1
            ),
        ));
    }
    let mut out = std::io::stdout().lock();
    let line = if start == end {
        format!("appended 0 records (the log's next offset is {start})")
    } else {
        format!(
            "appended {} records: offsets {start}..{end} (durable)",
            end - start
        )
    };
    writeln!(out, "{line}").map_err(Failure::from_stdout)
}

/// What one run of `append` has submitted: input line `n` (from 1) is offset
/// `start + n - 1`.
struct Ingest<'a> {
    log: &'a Log,
    /// The log, or the store's topic, as the user named it.
    target: super::Target<'a>,
    /// The log's next offset before the first line.
    start: u64,
    /// The offset after the last record submitted.
    end: u64,
    /// The last record submitted alone (`--batch 1`), not yet waited for.
    last_ticket: Option<AppendTicket>,
}

impl Ingest<'_> {
    /// Reads lines and appends them: one pipelined record each with `--batch 1`, else
    /// atomic batches of `--batch` lines. Stops at the end of the input or at SIGINT or
    /// SIGTERM (a line being read then is not appended).
    fn lines(
        &mut self,
        mut input: Box<dyn BufRead>,
        args: &AppendArgs,
        record_limit_bytes: u64,
        progress: &ProgressBar,
    ) -> CliResult<()> {
        let target = self.target;
        let fail = |e| target.fail(e);
        let batch_records = usize::try_from(args.batch).unwrap_or(usize::MAX);
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut line = Vec::new();
        let mut lines_count = 0u64;
        loop {
            line.clear();
            // At most the limit, a `\r\n` and one byte more: a longer line is refused
            // without reading all of it into memory.
            let read_bytes = Read::take(&mut input, record_limit_bytes + 3)
                .read_until(b'\n', &mut line)
                .map_err(|e| {
                    Failure::usage(format!(
                        "cannot read the input: {e}; check the file or pipe"
                    ))
                })?;
            if signals::received().is_some() || read_bytes == 0 {
                break;
            }
            progress.inc(read_bytes as u64);
            lines_count += 1;
            let record = strip_line_end(&line);
            let record_bytes = record.len() as u64;
            if record_bytes > record_limit_bytes {
                let shown = if line.ends_with(b"\n") {
                    format!("{record_bytes} bytes")
                } else {
                    format!("at least {record_bytes} bytes")
                };
                return Err(Failure::usage(format!(
                    "line {lines_count} of the input is {shown}: it exceeds the limit of {record_limit_bytes} bytes per record; use records of at most {record_limit_bytes} bytes"
                )));
            }
            if batch_records == 1 {
                let ticket = self.log.submit(record).map_err(fail)?;
                self.end = ticket.offset() + 1;
                self.last_ticket = Some(ticket);
            } else {
                pending.push(record.to_vec());
                if pending.len() == batch_records {
                    self.append_pending(&mut pending)?;
                }
            }
            if lines_count % 1024 == 0 {
                progress.set_message(format!("{lines_count} lines"));
            }
        }
        if !pending.is_empty() {
            self.append_pending(&mut pending)?;
        }
        Ok(())
    }

    /// Appends `pending` as one atomic batch and empties it.
    fn append_pending(&mut self, pending: &mut Vec<Vec<u8>>) -> CliResult<()> {
        let lines_count = pending.len() as u64;
        let first_line = self.end - self.start + 1;
        match append_pending(self.log, pending) {
            Ok(range) => {
                self.end = range.end;
                Ok(())
            }
            Err(Error::RecordTooLarge {
                record_bytes,
                max_record_bytes,
            }) => {
                // Every line fits alone (checked as read): the batch does not fit a segment.
                let fitting = (max_record_bytes * lines_count / record_bytes.max(1)).max(1);
                Err(Failure::usage(format!(
                    "the batch of input lines {first_line} to {} takes {record_bytes} bytes in the log, more than one segment holds ({max_record_bytes} bytes); a batch must fit in one segment: use a smaller --batch (at most {fitting} for lines like these) or a larger --segment-size",
                    first_line + lines_count - 1
                )))
            }
            Err(e) => Err(self.target.fail(e)),
        }
    }

    /// `cause`, with what of this input is durable and where to resume.
    fn failed(&self, cause: Failure) -> Failure {
        let Failure::Message { message, exit_code } = cause else {
            return cause;
        };
        // After a failure only what was flushed counts (a failed flush poisons the log,
        // and records staged after it are lost); nothing past `end` is ours.
        let durable = self.log.durable_offset().clamp(self.start, self.end);
        let _ = self.log.close();
        Failure::Message {
            message: format!(
                "{message}; {}; resume from input line {}",
                durable_lines(self.start, durable),
                durable - self.start + 1
            ),
            exit_code,
        }
    }
}

/// "3 records are durable: offsets 0..3 (input lines 1 to 3)", or that none is.
fn durable_lines(start: u64, durable: u64) -> String {
    match durable - start {
        0 => format!("nothing from this input is durable (the log's next offset is {start})"),
        1 => format!("1 record is durable: offset {start} (input line 1)"),
        lines => format!(
            "{lines} records are durable: offsets {start}..{durable} (input lines 1 to {lines})"
        ),
    }
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
