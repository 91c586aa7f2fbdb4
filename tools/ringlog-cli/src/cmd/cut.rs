//! `ringlog trim DIR --before OFFSET` and `ringlog truncate DIR --from OFFSET` (both
//! `[--topic NAME] [--dry-run] [--json]`): cut a log at either end with the library's
//! `Log::trim_before` / `Log::truncate_from`. Both need the writer lock, so both are
//! refused beside a writer (`--dry-run` too, which then opens nothing writable: it
//! checks the lock and reads the log read-only, so it changes nothing on disk).

use std::io::Write;

use ringlog::{Error, Options, SegmentInfo};
use serde::Serialize;

use crate::cli::{TrimArgs, TruncateArgs};
use crate::failure::{CliResult, Failure};
use crate::units::format_bytes;

use super::Target;

/// Which end is cut, and where.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// `trim --before OFFSET`.
    Trim(u64),
    /// `truncate --from OFFSET`.
    Truncate(u64),
}

impl Cut {
    fn name(self) -> &'static str {
        match self {
            Cut::Trim(_) => "trim",
            Cut::Truncate(_) => "truncate",
        }
    }

    fn offset(self) -> u64 {
        match self {
            Cut::Trim(offset) | Cut::Truncate(offset) => offset,
        }
    }
}

/// What a cut removes (or, with `--dry-run`, would remove).
#[derive(Debug, Serialize)]
struct CutReport {
    /// `trim` or `truncate`.
    operation: &'static str,
    /// `--before` or `--from`.
    offset: u64,
    dry_run: bool,
    first_offset_before: u64,
    next_offset_before: u64,
    /// Records removed: offsets `removed_from..removed_to`.
    records_removed: u64,
    removed_from: u64,
    removed_to: u64,
    /// Segment files deleted (their index files go with them).
    segments_deleted: Vec<u64>,
    /// Their sizes, summed (the space they take returns once no reader maps them).
    segment_bytes_deleted: u64,
    /// The log's range after the cut.
    first_offset: u64,
    next_offset: u64,
}

/// Runs `trim`.
pub fn run_trim(args: &TrimArgs) -> CliResult<()> {
    let target = Target::new(&args.dir, args.topic.as_deref());
    run(&target, Cut::Trim(args.before), args.dry_run, args.json)
}

/// Runs `truncate`.
pub fn run_truncate(args: &TruncateArgs) -> CliResult<()> {
    let target = Target::new(&args.dir, args.topic.as_deref());
    run(&target, Cut::Truncate(args.from), args.dry_run, args.json)
}

fn run(target: &Target<'_>, cut: Cut, dry_run: bool, json: bool) -> CliResult<()> {
    // A topic's own directory is refused (its writer is the store's), and the log (or
    // topic) must exist: a cut never creates one.
    target.check_writable()?;
    target.existing_log_dir()?;
    let report = if dry_run {
        // A topic's writer holds its store's lock: DIR either way.
        let lock_dir = target.dir.to_path_buf();
        if ringlog::lock_holder(&lock_dir)
            .map_err(|e| target.fail(e))?
            .is_some()
        {
            return Err(target.fail(Error::Locked { path: lock_dir }));
        }
        let opened = target.open_read_only()?;
        let log = &opened.log;
        let segments = log.segments().map_err(|e| target.fail(e))?;
        predict(
            cut,
            &segments,
            (log.first_offset(), log.next_offset()),
            true,
        )
        .map_err(|e| target.fail(e))?
    } else {
        let opened = target.open_writable(Options::default(), None)?;
        let log = &opened.log;
        let fail = |e| target.fail(e);
        let before = log.segments().map_err(fail)?;
        let range = (log.first_offset(), log.next_offset());
        let mut report = predict(cut, &before, range, false).map_err(|e| target.fail(e))?;
        match cut {
            Cut::Trim(offset) => log.trim_before(offset).map(drop),
            Cut::Truncate(offset) => log.truncate_from(offset),
        }
        .map_err(|e| target.fail(e))?;
        // What went, as the log says after the cut.
        let after = log.segments().map_err(|e| target.fail(e))?;
        let deleted: Vec<&SegmentInfo> = before
            .iter()
            .filter(|s| !after.iter().any(|a| a.segment_id == s.segment_id))
            .collect();
        report.segments_deleted = deleted.iter().map(|s| s.segment_id).collect();
        report.segment_bytes_deleted = deleted.iter().map(|s| s.segment_bytes).sum();
        report.first_offset = log.first_offset();
        report.next_offset = log.next_offset();
        opened.close().map_err(|e| target.fail(e))?;
        report
    };
    let text = if json {
        serde_json::to_string(&report)
            .map_err(|e| Failure::usage(format!("cannot encode the report as JSON: {e}")))?
    } else {
        render_text(&report)
    };
    writeln!(std::io::stdout().lock(), "{text}").map_err(Failure::from_stdout)
}

/// What `cut` removes from a log of `segments` holding `first..next`: what the library
/// does (`trim.rs`), worked out beforehand.
fn predict(
    cut: Cut,
    segments: &[SegmentInfo],
    (first, next): (u64, u64),
    dry_run: bool,
) -> Result<CutReport, Error> {
    let (removed, deleted, after): (_, Vec<&SegmentInfo>, _) = match cut {
        Cut::Trim(offset) if offset <= first => ((first, first), Vec::new(), (first, next)),
        // Past the end: every record and segment goes; the log continues at `offset`.
        Cut::Trim(offset) if offset > next => {
            ((first, next), segments.iter().collect(), (offset, offset))
        }
        Cut::Trim(offset) => (
            (first, offset),
            segments
                .iter()
                .filter(|s| s.sealed && s.end_offset <= offset)
                .collect(),
            (offset, next),
        ),
        Cut::Truncate(offset) if offset < first || offset > next => {
            return Err(Error::OffsetOutOfRange {
                offset,
                first,
                next,
            })
        }
        Cut::Truncate(offset) if offset == next => ((next, next), Vec::new(), (first, next)),
        Cut::Truncate(offset) => (
            (offset, next),
            segments
                .iter()
                .filter(|s| s.base_offset >= offset)
                .collect(),
            (first, offset),
        ),
    };
    Ok(CutReport {
        operation: cut.name(),
        offset: cut.offset(),
        dry_run,
        first_offset_before: first,
        next_offset_before: next,
        records_removed: removed.1 - removed.0,
        removed_from: removed.0,
        removed_to: removed.1,
        segments_deleted: deleted.iter().map(|s| s.segment_id).collect(),
        segment_bytes_deleted: deleted.iter().map(|s| s.segment_bytes).sum(),
        first_offset: after.0,
        next_offset: after.1,
    })
}

/// One line of what went (or would go), and the range after.
fn render_text(report: &CutReport) -> String {
    let dry = report.dry_run;
    let verb = match (report.operation, dry) {
        ("trim", true) => "would trim",
        ("trim", false) => "trimmed",
        (_, true) => "would truncate",
        (_, false) => "truncated",
    };
    if report.records_removed == 0
        && report.segments_deleted.is_empty()
        && report.first_offset == report.first_offset_before
        && report.next_offset == report.next_offset_before
    {
        return format!(
            "nothing to {}: the log holds offsets {}..{}",
            report.operation, report.first_offset_before, report.next_offset_before
        );
    }
    let segments = match report.segments_deleted.len() {
        0 if dry => "no segment file would be deleted".to_string(),
        0 => "no segment file deleted".to_string(),
        n => format!(
            "{} {n} segment file(s) ({})",
            if dry { "would delete" } else { "deleted" },
            format_bytes(report.segment_bytes_deleted)
        ),
    };
    let mut text = format!(
        "{verb} {} records (offsets {}..{}), {segments}; the log {} offsets {}..{}",
        report.records_removed,
        report.removed_from,
        report.removed_to,
        if dry { "would hold" } else { "holds" },
        report.first_offset,
        report.next_offset
    );
    if dry {
        text.push_str(&format!(
            "\ndry run: nothing was changed; run without --dry-run to {}",
            report.operation
        ));
    }
    text
}
