//! The command line: every command, flag and default, parsed by clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::{self, DurabilityArg, IoArg};

/// Inspect, verify, repair, follow, ingest into, trim, truncate, back up and benchmark
/// ringlog logs.
///
/// Exit codes: 0 success; 1 the log is damaged (verify found a problem, repair refused,
/// a read hit corruption); 2 usage or I/O error.
#[derive(Debug, Parser)]
#[command(name = "ringlog", version, about, long_about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// One `ringlog` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Segments, offsets, sizes, format version and lock holder of a log (read-only).
    Info(InfoArgs),
    /// Print records, one per line (read-only).
    Dump(DumpArgs),
    /// Print the last records; with -f keep printing new ones as they become durable.
    Tail(TailArgs),
    /// Append each line of stdin (or of a file) as a record.
    Append(AppendArgs),
    /// Check every header, checksum, offset and index (read-only). Exit 0 clean, 1 damaged.
    Verify(VerifyArgs),
    /// Cut a torn tail (and only that); refuse on damage in the middle of the log.
    Repair(RepairArgs),
    /// Measure append throughput and latency with concurrent producers.
    Bench(BenchArgs),
    /// List the topics of a store: records, offsets and disk used (read-only).
    Topics(TopicsArgs),
    /// Remove the records below an offset (whole segments are deleted); refused beside a
    /// writer.
    Trim(TrimArgs),
    /// Remove the records from an offset on (the next append gets it); refused beside a
    /// writer.
    Truncate(TruncateArgs),
    /// Copy a log or store, live or not, into a new directory that opens and verifies
    /// clean (read-only on DIR).
    Backup(BackupArgs),
    /// Import a JSON-lines event log (and its rotated files, oldest first): one record
    /// per line, named fields as key, idempotency id, sequence and timestamp.
    Import(ImportArgs),
}

/// `ringlog info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The log's directory, or the store's with --topic.
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (DIR is then a store of topics, not a single log).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// How payload bytes are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadFormat {
    /// As text; invalid UTF-8 and control characters are escaped.
    Utf8,
    /// Lowercase hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
    /// Not printed (offset, time and length only).
    None,
}

/// `ringlog dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The log's directory, or the store's with --topic.
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (DIR is then a store of topics, not a single log).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// First offset to print [default: the log's first offset].
    #[arg(long, value_name = "OFFSET")]
    pub from: Option<u64>,
    /// Most records to print [default: all].
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// How payloads are printed.
    #[arg(long, value_enum, default_value_t = PayloadFormat::Utf8)]
    pub payload: PayloadFormat,
    /// Print NDJSON: one JSON object per record.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The log's directory, or the store's with --topic.
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (DIR is then a store of topics, not a single log).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// How many of the last records to print first.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    pub records: u64,
    /// Keep printing new records as they become durable, until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// How often to look for new records with --follow (at least 1ms: smaller values,
    /// 0 included, are raised to it).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = units::parse_duration)]
    pub poll_interval: Duration,
    /// How payloads are printed.
    #[arg(long, value_enum, default_value_t = PayloadFormat::Utf8)]
    pub payload: PayloadFormat,
    /// Print NDJSON: one JSON object per record.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The log's directory, or the store's with --topic (created if needed).
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (the store and the topic are created if needed).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Read lines from this file instead of stdin.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// Lines per atomic batch: all of a batch survive a crash or none. With 1, every line
    /// is its own record and appends are pipelined.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    /// Size of new segment files [default: the log's current segment size, else 64MiB].
    /// With --topic: a new topic is created with it as its own option, persisted; an
    /// existing topic must have been created with the same.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_bytes)]
    pub segment_size: Option<u64>,
}

/// `ringlog verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log's directory, or the store's with --topic.
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (DIR is then a store of topics, not a single log).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The log's directory, or the store's with --topic.
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (DIR is then a store of topics, not a single log).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Report what would be cut, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `ringlog bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Log directory to append to, or store directory with --topics [default: a
    /// temporary directory, removed afterwards].
    pub dir: Option<PathBuf>,
    /// Spread the producers over N topics of a store: producer i appends to topic
    /// bench-{i % N}.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub topics: Option<u64>,
    /// Stop after this many records.
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub records: Option<u64>,
    /// Stop after this long (e.g. 10s, 500ms) [default: 10s unless --records is given].
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// Payload bytes per record (e.g. 1KiB, 100).
    #[arg(long, value_name = "SIZE", default_value = "1KiB", value_parser = units::parse_bytes)]
    pub record_size: u64,
    /// Threads appending concurrently.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub producers: u64,
    /// sync (durable when append returns), interval:DURATION (e.g. interval:1ms) or none.
    #[arg(long, value_name = "MODE", default_value = "sync", value_parser = units::parse_durability)]
    pub durability: DurabilityArg,
    /// I/O backend: auto, uring or pwrite.
    #[arg(long, value_name = "BACKEND", default_value = "auto", value_parser = units::parse_io)]
    pub io: IoArg,
    /// Size of new segment files [default: the log's current segment size, else 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = units::parse_bytes)]
    pub segment_size: Option<u64>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// The store's directory.
    pub dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog trim`.
#[derive(Debug, Args)]
pub struct TrimArgs {
    /// The log's directory, or the store's with --topic.
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (DIR is then a store of topics, not a single log).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Records below OFFSET go; it becomes the first offset. Past the end, the log is
    /// emptied and the next append gets OFFSET.
    #[arg(long, value_name = "OFFSET")]
    pub before: u64,
    /// Say what would go (records, segment files, bytes), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog truncate`.
#[derive(Debug, Args)]
pub struct TruncateArgs {
    /// The log's directory, or the store's with --topic.
    pub dir: PathBuf,
    /// Topic NAME of the store in DIR (DIR is then a store of topics, not a single log).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// OFFSET and every record after it go; the next append gets OFFSET.
    #[arg(long, value_name = "OFFSET")]
    pub from: u64,
    /// Say what would go (records, segment files, bytes), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The log's directory, or the store's with --topic (created if needed).
    pub dir: PathBuf,
    /// The JSON-lines files; each with its rotations (`F.1`, `F.2`, ..., read oldest
    /// first: the highest number first, F itself last).
    #[arg(long = "jsonl", value_name = "FILE", required = true, num_args = 1..)]
    pub jsonl: Vec<PathBuf>,
    /// Topic NAME of the store in DIR (the store and the topic are created if needed).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// The field whose value becomes the record's key (a string or a number).
    #[arg(long, value_name = "FIELD")]
    pub key_field: Option<String>,
    /// The field whose value becomes the record's idempotency id: a line whose id the log
    /// holds is not appended again (so a re-run appends nothing twice).
    #[arg(long, value_name = "FIELD")]
    pub id_field: Option<String>,
    /// The field whose value (an unsigned integer) becomes the record's caller sequence:
    /// a line whose sequence is not above the log's last is taken as imported already.
    #[arg(long, value_name = "FIELD")]
    pub seq_field: Option<String>,
    /// The field whose value becomes the record's timestamp: milliseconds since the Unix
    /// epoch, or an RFC 3339 time ("2026-12-06T10:00:00Z", offsets and fractions
    /// accepted). Timestamps never decrease along a log: an earlier one is raised.
    #[arg(long, value_name = "FIELD")]
    pub time_field: Option<String>,
    /// Import the lines after a malformed one too, counting and naming each skipped line
    /// (without it, a malformed line stops the import: nothing after it is imported).
    #[arg(long)]
    pub skip_bad: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ringlog backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The log's directory, or the store's (every topic is copied, or only --topic).
    pub dir: PathBuf,
    /// Where the copy goes: a new or empty directory.
    pub dest: PathBuf,
    /// Copy only topic NAME of the store in DIR, as a single log in DEST.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}
