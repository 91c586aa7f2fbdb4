//! `ringlog tail DIR [--topic NAME] [-n N] [-f|--follow] [--json]`: the last N records; with `-f` it keeps
//! printing records as the writer (in this or another process) makes them durable, until
//! interrupted. Read-only.

use std::io::{BufWriter, Write};
use std::time::Duration;

use crate::cli::TailArgs;
use crate::failure::{CliResult, Failure};
use crate::render::RecordStyle;

/// The shortest wait between looks for new records with `--follow`: a smaller
/// `--poll-interval` (0 included) would spin a core.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Runs `tail`.
pub fn run(args: &TailArgs) -> CliResult<()> {
    let target = super::Target::new(&args.dir, args.topic.as_deref());
    let opened = target.open_read_only()?;
    let log = &opened.log;
    let style = RecordStyle {
        payload: args.payload,
        json: args.json,
    };
    let fail = |e| target.fail(e);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let last = usize::try_from(args.records).unwrap_or(usize::MAX);
    // `tail` reads up to the read watermark, which only `refresh` moves: following
    // continues exactly after it, even when -n 0 printed nothing.
    let next_offset = log.refresh().map_err(fail)?;
    for record in log.tail(last).map_err(fail)? {
        style.write(&mut out, &record)?;
    }
    out.flush().map_err(Failure::from_stdout)?;
    if !args.follow {
        return Ok(());
    }
    // The follower sleeps on the writer's control file and wakes when the writer (in
    // another process) writes: no polling. `--poll-interval` stays accepted for scripts;
    // it only matters for a writer of an earlier release, which has no control file.
    let _ = args.poll_interval.max(MIN_POLL_INTERVAL);
    let follower = log.follow(next_offset).map_err(fail)?;
    for record in follower {
        let record = record.map_err(fail)?;
        style.write(&mut out, &record)?;
        out.flush().map_err(Failure::from_stdout)?;
    }
    Ok(())
}
