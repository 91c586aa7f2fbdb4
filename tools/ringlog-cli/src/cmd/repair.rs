//! `ringlog repair DIR [--topic NAME] [--dry-run]`: cuts a torn tail (and removes damaged index files,
//! which are rebuilt from the data), reporting exactly what it cut; refuses, changing
//! nothing, when the log has damage anywhere else.

use std::io::Write;

use ringlog::RepairReport;

use crate::cli::RepairArgs;
use crate::failure::{CliResult, Failure};

/// Runs `repair`.
pub fn run(args: &RepairArgs) -> CliResult<()> {
    let target = super::Target::new(&args.dir, args.topic.as_deref());
    // For a topic, the library takes the store's writer lock.
    let log_dir = target.existing_log_dir()?;
    let report = ringlog::repair(&log_dir, args.dry_run).map_err(|e| target.fail(e))?;
    let text = render_text(&report);
    writeln!(std::io::stdout().lock(), "{text}").map_err(Failure::from_stdout)
}

/// One line per cut or removal, or that there was nothing to do.
fn render_text(report: &RepairReport) -> String {
    let (cut, remove) = if report.dry_run {
        ("would cut", "would remove")
    } else {
        ("cut", "removed")
    };
    let mut lines = Vec::new();
    for (path, truncation) in &report.truncated {
        lines.push(format!(
            "{cut} {} bytes from byte {} of {}: {}",
            truncation.bytes,
            truncation.position,
            path.display(),
            truncation
                .reason
                .trim_end_matches("; `ringlog repair` cuts it")
        ));
    }
    for (path, why) in &report.removed {
        lines.push(format!("{remove} {}: {why}", path.display()));
    }
    if lines.is_empty() {
        lines.push("nothing to repair: no torn tail or damaged index found".to_string());
    } else if report.dry_run {
        lines.push("dry run: nothing was changed; run without --dry-run to repair".to_string());
    }
    lines.join("\n")
}
