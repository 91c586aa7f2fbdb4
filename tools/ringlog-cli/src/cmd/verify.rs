//! `ringlog verify DIR [--topic NAME] [--json]`: checks every header, record checksum, offset and index;
//! prints `ok` or each problem with its file and byte position, and what `repair` would do
//! about it. Exit 0 clean, 1 problems found, 2 usage or I/O error. Never changes the log.

use std::io::Write;
use std::process::ExitCode;

use ringlog::{Problem, ProblemKind, VerifyReport};
use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::failure::{CliResult, Failure, EXIT_DAMAGED};

/// The JSON form of a report.
#[derive(Debug, Serialize)]
struct ReportJson {
    ok: bool,
    dir: String,
    /// The command that repairs this log (not printed in JSON).
    #[serde(skip)]
    repair_command: String,
    segments_checked: u64,
    records_checked: u64,
    first_offset: u64,
    next_offset: u64,
    problems: Vec<ProblemJson>,
}

/// The JSON form of one problem.
#[derive(Debug, Serialize)]
struct ProblemJson {
    kind: &'static str,
    path: String,
    position: u64,
    length_bytes: u64,
    message: String,
    /// What `ringlog repair` does about it.
    repair_action: String,
}

/// Runs `verify`.
pub fn run(args: &VerifyArgs) -> CliResult<ExitCode> {
    let target = super::Target::new(&args.dir, args.topic.as_deref());
    let log_dir = target.existing_log_dir()?;
    let report = ringlog::verify(&log_dir).map_err(|e| target.fail(e))?;
    let json = ReportJson {
        ok: report.is_clean(),
        dir: log_dir.display().to_string(),
        repair_command: format!("ringlog repair {target}"),
        segments_checked: report.segments_checked,
        records_checked: report.records_checked,
        first_offset: report.first_offset,
        next_offset: report.next_offset,
        problems: report.problems.iter().map(problem_json).collect(),
    };
    let text = if args.json {
        serde_json::to_string(&json)
            .map_err(|e| Failure::usage(format!("cannot encode the report as JSON: {e}")))?
    } else {
        render_text(&report, &json)
    };
    writeln!(std::io::stdout().lock(), "{text}").map_err(Failure::from_stdout)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGED)
    })
}

/// Short name of a problem kind.
fn kind_name(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Header => "header",
        ProblemKind::Chain => "chain",
        ProblemKind::Corruption => "corruption",
        ProblemKind::TornTail => "torn_tail",
        ProblemKind::Index => "index",
    }
}

/// What `ringlog repair` does about a problem.
fn repair_action(problem: &Problem) -> String {
    match problem.kind {
        ProblemKind::TornTail => format!(
            "repair would cut {} bytes from byte {} of {}",
            problem.length_bytes,
            problem.position,
            problem.path.display()
        ),
        ProblemKind::Index => format!(
            "repair would remove {} (it is rebuilt from the data)",
            problem.path.display()
        ),
        ProblemKind::Header | ProblemKind::Chain | ProblemKind::Corruption => {
            "repair refuses: this is damage to durable data; restore the segment from a copy"
                .to_string()
        }
    }
}

fn problem_json(problem: &Problem) -> ProblemJson {
    ProblemJson {
        kind: kind_name(problem.kind),
        path: problem.path.display().to_string(),
        position: problem.position,
        length_bytes: problem.length_bytes,
        message: problem.message.replace(['\n', '\r'], " "),
        repair_action: repair_action(problem),
    }
}

/// `ok (...)`, or one line per problem and a count.
fn render_text(report: &VerifyReport, json: &ReportJson) -> String {
    let checked = format!(
        "{} segments, {} records (offsets {}..{})",
        report.segments_checked, report.records_checked, report.first_offset, report.next_offset
    );
    if report.is_clean() {
        return format!("ok: checked {checked}");
    }
    let mut lines = vec![format!("checked {checked}")];
    for problem in &json.problems {
        lines.push(format!(
            "{}: {} at byte {}: {}",
            problem.kind, problem.path, problem.position, problem.message
        ));
        lines.push(format!("  -> {}", problem.repair_action));
    }
    let refused = report.corruption().count();
    lines.push(if refused == 0 {
        format!(
            "{} problem(s), all of which `{}` fixes",
            report.problems.len(),
            json.repair_command
        )
    } else {
        format!(
            "{} problem(s), {refused} of them damage to durable data: `ringlog repair` refuses to change this log",
            report.problems.len()
        )
    });
    lines.join("\n")
}
