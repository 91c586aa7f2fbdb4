//! `ringlog`: inspect, verify, repair, follow, ingest into, trim, truncate, back up and
//! benchmark ringlog logs from the shell. Run `ringlog --help` for the commands.

mod cli;
mod cmd;
mod failure;
mod latency;
mod render;
mod signals;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A bug must still end in one line on stderr and exit 2, never in a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        eprintln!(
            "ringlog: error: internal error{location}: {}; please report it",
            message.replace(['\n', '\r'], " ")
        );
    }));
    // clap prints usage errors itself and exits with 2 (and 0 for --help / --version).
    let cli = cli::Cli::parse();
    match std::panic::catch_unwind(|| cmd::run(cli.command)) {
        Ok(Ok(code)) => code,
        Ok(Err(failure)) => failure.report(),
        Err(_) => ExitCode::from(failure::EXIT_USAGE_OR_IO),
    }
}
