//! `ringlog dump DIR [--topic NAME] [--from OFFSET] [--count N] [--payload ...] [--json]`:
//! one record per line (NDJSON with `--json`). Read-only.

use std::io::{BufWriter, Write};

use crate::cli::DumpArgs;
use crate::failure::{CliResult, Failure};
use crate::render::RecordStyle;

/// Runs `dump`.
pub fn run(args: &DumpArgs) -> CliResult<()> {
    let target = super::Target::new(&args.dir, args.topic.as_deref());
    let opened = target.open_read_only()?;
    let log = &opened.log;
    let style = RecordStyle {
        payload: args.payload,
        json: args.json,
    };
    let from = args.from.unwrap_or_else(|| log.first_offset());
    let count = args.count.unwrap_or(u64::MAX);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for record in log
        .iter(from)
        .take(usize::try_from(count).unwrap_or(usize::MAX))
    {
        let record = record.map_err(|e| target.fail(e))?;
        style.write(&mut out, &record)?;
    }
    out.flush().map_err(Failure::from_stdout)
}
