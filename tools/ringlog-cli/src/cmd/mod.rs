//! One module per command; [`run`] dispatches.

mod append;
mod backup;
mod bench;
mod cut;
mod dump;
mod import;
mod info;
mod repair;
mod tail;
mod target;
mod topics;
mod verify;

pub use target::Target;

use std::path::Path;
use std::process::ExitCode;

use ringlog::{Log, Options};

use crate::cli::Command;
use crate::failure::{CliResult, Failure};

/// Runs one command; `Ok` carries the exit code (`verify` exits 1 on problems).
pub fn run(command: Command) -> CliResult<ExitCode> {
    match command {
        Command::Info(args) => info::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Dump(args) => dump::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Tail(args) => tail::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Append(args) => append::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => verify::run(&args),
        Command::Repair(args) => repair::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Topics(args) => topics::run(&args),
        Command::Trim(args) => cut::run_trim(&args).map(|()| ExitCode::SUCCESS),
        Command::Truncate(args) => cut::run_truncate(&args).map(|()| ExitCode::SUCCESS),
        Command::Backup(args) => backup::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Import(args) => import::run(&args).map(|()| ExitCode::SUCCESS),
    }
}

/// Checks that `dir` is a directory with segment files (`*.seg`) in it: `verify` and
/// `repair` would otherwise report an empty, clean "log" for any directory.
pub fn require_log_dir(dir: &Path) -> CliResult<()> {
    if !dir.is_dir() {
        return Err(not_a_directory(dir));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::usage(format!(
            "cannot read the directory {}: {e}; check its permissions",
            dir.display()
        ))
    })?;
    let has_segments = entries
        .filter_map(Result::ok)
        .any(|entry| entry.path().extension().is_some_and(|ext| ext == "seg"));
    if has_segments {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "{} holds no ringlog log (no .seg files); pass the directory of an existing log",
            dir.display()
        )))
    }
}

/// Checks a `DIR` that a writing command creates if needed: it may be missing, but a
/// path that exists must be a directory (else opening would fail with "File exists").
pub fn require_dir_or_missing(dir: &Path) -> CliResult<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(not_a_directory(dir));
    }
    Ok(())
}

/// The segment size of the log already in `dir`, so that new segments match it (a
/// writing command keeps it unless `--segment-size` is given).
pub fn existing_segment_bytes(dir: &Path) -> Option<u64> {
    if !dir.is_dir() {
        return None;
    }
    let log = Log::open_read_only(dir, Options::default()).ok()?;
    let segments = log.segments().ok()?;
    segments.last().map(|s| s.segment_bytes)
}

/// The failure for a `DIR` argument that is not a directory.
pub fn not_a_directory(dir: &Path) -> Failure {
    if dir.exists() {
        Failure::usage(format!(
            "{} is not a directory; pass the log's directory",
            dir.display()
        ))
    } else {
        Failure::usage(format!(
            "{} does not exist; pass the directory of an existing log",
            dir.display()
        ))
    }
}
