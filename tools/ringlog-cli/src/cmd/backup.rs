//! `ringlog backup DIR DEST [--topic NAME] [--json]`: copies a log, a store, or one
//! topic of a store (as a single log) into DEST, a new or empty directory, with the
//! library's `Log::backup` / `Store::backup`. Read-only on DIR: it works beside a
//! writer in another process (taking no lock and changing nothing there), and copies
//! what a read-only open finds: whole, checksummed batches the writer has written
//! (with `Durability::None` or `Interval`, possibly more than it has made durable).

use std::io::Write;

use ringlog::{BackupReport, Log, Store};
use serde::Serialize;

use crate::cli::BackupArgs;
use crate::failure::{CliResult, Failure};
use crate::units::format_bytes;

use super::target::{classify, DirKind};
use super::Target;

/// Everything `backup` prints.
#[derive(Debug, Serialize)]
struct BackupOutput {
    source: String,
    dest: String,
    /// `log`, `store` or `topic` (one topic copied as a single log).
    kind: &'static str,
    logs: Vec<LogRow>,
    files_linked: u64,
    files_copied: u64,
    bytes_linked: u64,
    bytes_copied: u64,
    link_fallbacks: u64,
}

/// One log of the copy.
#[derive(Debug, Serialize)]
struct LogRow {
    topic: Option<String>,
    dir: String,
    first_offset: u64,
    next_offset: u64,
    records_count: u64,
    segments_count: u64,
    consumers_count: u64,
}

/// Runs `backup`.
pub fn run(args: &BackupArgs) -> CliResult<()> {
    let target = Target::new(&args.dir, args.topic.as_deref());
    let fail = |e| target.fail(e);
    let whole_store = args.topic.is_none() && classify(&args.dir) == DirKind::Store;
    let (kind, report) = if whole_store {
        let store = Store::open_read_only(&args.dir).map_err(fail)?;
        ("store", store.backup(&args.dest).map_err(fail)?)
    } else {
        let opened = target.open_read_only()?;
        let kind = if opened.store.is_some() {
            "topic"
        } else {
            "log"
        };
        (kind, backup_log(&opened.log, args)?)
    };
    let output = BackupOutput {
        source: args.dir.display().to_string(),
        dest: args.dest.display().to_string(),
        kind,
        logs: report
            .logs
            .iter()
            .map(|l| LogRow {
                topic: l.topic.clone(),
                dir: l.dir.display().to_string(),
                first_offset: l.first_offset,
                next_offset: l.next_offset,
                records_count: l.next_offset - l.first_offset,
                segments_count: l.segments_count,
                consumers_count: l.consumers_count,
            })
            .collect(),
        files_linked: report.files_linked,
        files_copied: report.files_copied,
        bytes_linked: report.bytes_linked,
        bytes_copied: report.bytes_copied,
        link_fallbacks: report.link_fallbacks,
    };
    let text = if args.json {
        serde_json::to_string(&output)
            .map_err(|e| Failure::usage(format!("cannot encode the report as JSON: {e}")))?
    } else {
        render_text(&output)
    };
    writeln!(std::io::stdout().lock(), "{text}").map_err(Failure::from_stdout)
}

fn backup_log(log: &Log, args: &BackupArgs) -> CliResult<BackupReport> {
    log.backup(&args.dest)
        .map_err(|e| Failure::from_log(e, &args.dir))
}

/// One line per log, then what was linked and copied.
fn render_text(output: &BackupOutput) -> String {
    let mut lines = Vec::new();
    for log in &output.logs {
        let name = log
            .topic
            .as_ref()
            .map_or(String::new(), |t| format!("topic {t}: "));
        lines.push(format!(
            "{name}{} records (offsets {}..{}) in {} segment file(s){} -> {}",
            log.records_count,
            log.first_offset,
            log.next_offset,
            log.segments_count,
            match log.consumers_count {
                0 => String::new(),
                n => format!(", {n} consumer position(s)"),
            },
            log.dir
        ));
    }
    lines.push(format!(
        "backed up the {} {} to {}: {} file(s) linked ({}), {} file(s) written ({}){}; synced",
        output.kind,
        output.source,
        output.dest,
        output.files_linked,
        format_bytes(output.bytes_linked),
        output.files_copied,
        format_bytes(output.bytes_copied),
        match output.link_fallbacks {
            0 => String::new(),
            n => format!(", {n} sealed segment(s) copied because a hard link was not possible"),
        }
    ));
    lines.join("\n")
}
