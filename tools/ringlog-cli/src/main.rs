//! `ringlog`: inspect, verify, repair, follow, ingest into and benchmark ringlog logs
//! from the shell. Run `ringlog --help` for the commands.

mod cli;
mod cmd;
mod failure;
mod latency;
mod render;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2 (and 0 for --help / --version).
    let cli = cli::Cli::parse();
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
