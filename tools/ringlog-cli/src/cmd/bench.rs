//! `ringlog bench [DIR] [--topics N] [--records N | --duration 10s] [--record-size 1KiB]
//! [--producers 16] [--durability sync|interval:1ms|none] [--io auto|uring|pwrite] [--json]`:
//! producers append fixed-size records as fast as they can, to one log or spread over the
//! topics of a store; a progress line goes to stderr every few seconds, then a summary in
//! the shape of kafka-producer-perf-test's (or one JSON object).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringlog::{BackendKind, Log, Options, Stats, Store};
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::failure::{CliResult, Failure};
use crate::latency::{self, format_latency, LiveCounters, Totals};
use crate::signals;

use super::target::DirKind;
use crate::units::format_duration;

/// Default run length when neither `--records` nor `--duration` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Time between progress lines.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// How often the coordinator checks for the end of the run.
const TICK: Duration = Duration::from_millis(20);

/// The summary, also printed as JSON with `--json`.
#[derive(Debug, Serialize)]
struct Summary {
    records: u64,
    elapsed_sec: f64,
    records_per_sec: f64,
    /// 10^6 bytes of payload per second.
    megabytes_per_sec: f64,
    record_bytes: u64,
    producers: u64,
    durability: String,
    io_requested: String,
    backend: &'static str,
    backend_fallback_reason: Option<String>,
    latency_ns_avg: f64,
    latency_ns_max: u64,
    latency_ns_p50: u64,
    latency_ns_p95: u64,
    latency_ns_p99: u64,
    latency_ns_p999: u64,
    /// Appends that took longer than [`STALL_NS`]: stalls (issue 14 counts them).
    appends_over_2ms: u64,
    /// Segments the run moved to (summed over the topics).
    rollovers: u64,
    /// `fdatasync` calls during the run (not those of opening the log, nor of closing it).
    fsyncs: u64,
    /// `records / fsyncs`; `null` when nothing was flushed during the run.
    records_per_fsync: Option<f64>,
    /// Bytes of record and marker frames written during the run.
    bytes_written: u64,
    segment_bytes: u64,
    /// `null` for the temporary directory.
    dir: Option<String>,
    /// Topics of the store the producers were spread over; `null` for a single log.
    topics: Option<u64>,
    /// The store's flush cycles during the run: turns of its writer that wrote and
    /// flushed several topics together; `null` for a single log.
    flush_cycles: Option<u64>,
    /// `fdatasync`s per flush cycle; `null` when there was no cycle.
    fsyncs_per_cycle: Option<f64>,
}

/// What stops the producers.
struct Limits {
    stop: AtomicBool,
    /// Records not yet claimed, with `--records`.
    records_left: Option<AtomicU64>,
}

impl Limits {
    /// Claims one record to append; `false` when the run is over.
    fn claim(&self) -> bool {
        if self.stop.load(Relaxed) {
            return false;
        }
        match &self.records_left {
            None => true,
            Some(left) => left
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// Segment size of a new log when `--segment-size` is not given.
const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Runs `bench`.
pub fn run(args: &BenchArgs) -> CliResult<()> {
    if let Some(dir) = &args.dir {
        check_dir(dir, args.topics)?;
    }
    // A single log keeps its segment size; a store's topics follow the store's options.
    let existing_segment_bytes = match args.topics {
        None => args.dir.as_deref().and_then(super::existing_segment_bytes),
        Some(_) => None,
    };
    let segment_bytes = args
        .segment_size
        .or(existing_segment_bytes)
        .unwrap_or(DEFAULT_SEGMENT_BYTES);
    let options = Options::default()
        .segment_bytes(segment_bytes)
        .durability(args.durability.0)
        .io(args.io.0);
    // Before anything is created or allocated: each producer holds one record.
    let record_limit_bytes = options
        .record_limit_bytes()
        .map_err(|e| Failure::from_log(e, args.dir.as_deref().unwrap_or(Path::new("."))))?;
    if args.record_size > record_limit_bytes {
        return Err(Failure::usage(format!(
            "--record-size {} is more than a record can hold with {segment_bytes}-byte segments ({record_limit_bytes} bytes); use --record-size {record_limit_bytes} or less",
            args.record_size
        )));
    }
    signals::install()
        .map_err(|e| Failure::usage(format!("cannot handle SIGINT and SIGTERM: {e}")))?;
    let temp_dir = match &args.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("ringlog-bench-")
                .tempdir()
                .map_err(|e| {
                    Failure::usage(format!(
                        "cannot create a temporary directory in {}: {e}; pass a DIR or set TMPDIR",
                        std::env::temp_dir().display()
                    ))
                })?,
        ),
    };
    let dir: PathBuf = match (&args.dir, &temp_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => return Err(Failure::usage("no directory to benchmark in")),
    };
    let result = bench_in(args, options, segment_bytes, &dir);
    let removed = temp_dir.is_some();
    if let Some(temp) = temp_dir {
        temp.close().map_err(|e| {
            Failure::usage(format!(
                "cannot remove the temporary directory {}: {e}; remove it by hand",
                dir.display()
            ))
        })?;
    }
    let summary = result?;
    let text = if args.json {
        serde_json::to_string(&summary)
            .map_err(|e| Failure::usage(format!("cannot encode the summary as JSON: {e}")))?
    } else {
        render_text(&summary)
    };
    writeln!(std::io::stdout().lock(), "{text}").map_err(Failure::from_stdout)?;
    match signals::received() {
        None => Ok(()),
        Some(stop) => Err(Failure::interrupted(
            stop,
            format!(
                "the run stopped after {} records; {}",
                summary.records,
                if removed {
                    format!("the temporary directory {} was removed", dir.display())
                } else {
                    format!("the records appended are in {}", dir.display())
                }
            ),
        )),
    }
}

/// Checks that `dir` suits the run: a single log (or nothing) without `--topics`, a store
/// (or nothing) with it.
fn check_dir(dir: &Path, topics: Option<u64>) -> CliResult<()> {
    super::require_dir_or_missing(dir)?;
    let shown = dir.display();
    match (super::target::classify(dir), topics) {
        (DirKind::Store, None) => Err(Failure::usage(format!(
            "{shown} is a store of topics; pass --topics N to spread the producers over N of its topics (ringlog topics {shown} lists them)"
        ))),
        (DirKind::SingleLog, Some(_)) => Err(Failure::usage(format!(
            "{shown} is a single log, not a store of topics; drop --topics to bench it, or pass another DIR"
        ))),
        (DirKind::Topic { store, name }, _) => Err(Failure::usage(format!(
            "{shown} is the directory of topic {name} of the store {}; pass another DIR",
            store.display()
        ))),
        _ => Ok(()),
    }
}

/// What the producers append to: one log, or topics of a store.
struct Appendees {
    /// Producer `i` appends to `logs[i % logs.len()]`.
    logs: Vec<Log>,
    /// The store, with `--topics`.
    store: Option<Store>,
}

impl Appendees {
    /// Opens the log in `dir`, or the store in `dir` and its topics `bench-0` to
    /// `bench-{N-1}` (created if needed).
    fn open(dir: &Path, options: Options, topics: Option<u64>) -> ringlog::Result<Appendees> {
        let Some(topics_count) = topics else {
            return Ok(Appendees {
                logs: vec![Log::open(dir, options)?],
                store: None,
            });
        };
        let store = Store::open(dir, options)?;
        let logs = (0..topics_count)
            .map(|i| store.topic(&format!("bench-{i}")))
            .collect::<ringlog::Result<Vec<Log>>>();
        match logs {
            Ok(logs) => Ok(Appendees {
                logs,
                store: Some(store),
            }),
            Err(e) => {
                let _ = store.close();
                Err(e)
            }
        }
    }

    fn stats(&self) -> Vec<Stats> {
        self.logs.iter().map(Log::stats).collect()
    }

    fn close(&self) -> ringlog::Result<()> {
        match &self.store {
            Some(store) => store.close(),
            None => self.logs.iter().try_for_each(Log::close),
        }
    }
}

/// Opens the log (or store) in `dir`, runs the producers, and summarizes.
fn bench_in(
    args: &BenchArgs,
    options: Options,
    segment_bytes: u64,
    dir: &Path,
) -> CliResult<Summary> {
    let fail = |e| Failure::from_log(e, dir);
    let duration = match args.records {
        Some(_) => args.duration,
        None => Some(args.duration.unwrap_or(DEFAULT_DURATION)),
    };
    let appendees = signals::with_signals_blocked(|| Appendees::open(dir, options, args.topics))
        .map_err(fail)?;
    let backend = appendees.logs.first().map(|log| log.stats().backend);
    eprintln!(
        "bench: {} producers{}, {}-byte records, durability {}, io {} ({}), {} in {}{}",
        args.producers,
        match args.topics {
            Some(n) => format!(" over {n} topics"),
            None => String::new(),
        },
        args.record_size,
        args.durability,
        args.io,
        backend.map_or("none", backend_name),
        match (args.records, duration) {
            (Some(n), _) => format!("{n} records"),
            (None, Some(d)) => format_duration(d),
            (None, None) => "until done".into(),
        },
        dir.display(),
        if args.dir.is_none() {
            " (temporary)"
        } else {
            ""
        }
    );
    let limits = Arc::new(Limits {
        stop: AtomicBool::new(false),
        records_left: args.records.map(AtomicU64::new),
    });
    let live = Arc::new(LiveCounters::default());
    // The run's own fsyncs: those of opening (and recovering) the log are not its.
    let stats_before = appendees.stats();
    let store_before = appendees.store.as_ref().map(Store::stats);
    let start = Instant::now();
    let mut producers = Vec::new();
    for producer in 0..args.producers {
        let spawned = signals::with_signals_blocked(|| {
            let log = &appendees.logs[producer as usize % appendees.logs.len()];
            spawn_producer(producer, args.record_size, log, &limits, &live)
        });
        match spawned {
            Ok(handle) => producers.push(handle),
            Err(e) => {
                limits.stop.store(true, Relaxed);
                for handle in producers {
                    let _ = handle.join();
                }
                return Err(Failure::usage(format!(
                    "cannot start producer thread {producer}: {e}; use fewer --producers"
                )));
            }
        }
    }
    let elapsed = coordinate(
        &producers,
        &limits,
        &live,
        duration,
        args.record_size,
        start,
    );
    let histogram = collect(producers, dir)?;
    let stats = appendees.stats();
    let store_after = appendees.store.as_ref().map(Store::stats);
    appendees.close().map_err(fail)?;
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let records = histogram.len();
    let records_per_sec = records as f64 / seconds;
    // Summed over the topics: each counts the fdatasyncs of its own files.
    let delta = |field: fn(&Stats) -> u64| -> u64 {
        stats
            .iter()
            .zip(&stats_before)
            .map(|(after, before)| field(after) - field(before))
            .sum()
    };
    let fsyncs = delta(|s| s.fsyncs_count);
    let (flush_cycles, cycle_fsyncs) = match (&store_before, &store_after) {
        (Some(before), Some(after)) => (
            Some(after.flush_cycles - before.flush_cycles),
            after.cycle_fsyncs - before.cycle_fsyncs,
        ),
        _ => (None, 0),
    };
    let first = stats
        .first()
        .ok_or_else(|| Failure::usage("no log to benchmark"))?;
    Ok(Summary {
        records,
        elapsed_sec: seconds,
        records_per_sec,
        megabytes_per_sec: records_per_sec * args.record_size as f64 / 1e6,
        record_bytes: args.record_size,
        producers: args.producers,
        durability: args.durability.to_string(),
        io_requested: args.io.to_string(),
        backend: backend_name(first.backend),
        backend_fallback_reason: first.backend_fallback_reason.clone(),
        latency_ns_avg: histogram.mean(),
        latency_ns_max: histogram.max(),
        latency_ns_p50: histogram.value_at_quantile(0.50),
        latency_ns_p95: histogram.value_at_quantile(0.95),
        latency_ns_p99: histogram.value_at_quantile(0.99),
        latency_ns_p999: histogram.value_at_quantile(0.999),
        appends_over_2ms: histogram
            .iter_recorded()
            .filter(|v| v.value_iterated_to() > STALL_NS)
            .map(|v| v.count_at_value())
            .sum(),
        rollovers: delta(|s| s.segments_count),
        fsyncs,
        records_per_fsync: (fsyncs > 0).then(|| records as f64 / fsyncs as f64),
        bytes_written: delta(|s| s.bytes_written),
        segment_bytes,
        dir: args.dir.as_ref().map(|d| d.display().to_string()),
        topics: args.topics,
        flush_cycles,
        fsyncs_per_cycle: flush_cycles
            .filter(|&cycles| cycles > 0)
            .map(|cycles| cycle_fsyncs as f64 / cycles as f64),
    })
}

/// An append slower than this is a stall.
const STALL_NS: u64 = 2_000_000;

/// One producer: appends `record_bytes`-byte records while `limits` allow, timing each.
fn spawn_producer(
    producer: u64,
    record_bytes: u64,
    log: &Log,
    limits: &Arc<Limits>,
    live: &Arc<LiveCounters>,
) -> std::io::Result<JoinHandle<ringlog::Result<Histogram<u64>>>> {
    let (log, limits, live) = (log.clone(), limits.clone(), live.clone());
    let payload: Vec<u8> = (0..record_bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(producer as u8))
        .collect();
    std::thread::Builder::new()
        .name(format!("bench-producer-{producer}"))
        .spawn(move || {
            let mut histogram = latency::new_histogram();
            while limits.claim() {
                let started = Instant::now();
                if let Err(e) = log.append(&payload) {
                    limits.stop.store(true, Relaxed);
                    return Err(e);
                }
                let latency_ns = latency::latency_ns(started.elapsed());
                histogram.saturating_record(latency_ns);
                live.record(latency_ns);
            }
            Ok(histogram)
        })
}

/// Waits for the end of the run (duration over, or every producer done), printing a
/// progress line every [`PROGRESS_INTERVAL`]. Returns the run's length.
fn coordinate(
    producers: &[JoinHandle<ringlog::Result<Histogram<u64>>>],
    limits: &Limits,
    live: &LiveCounters,
    duration: Option<Duration>,
    record_bytes: u64,
    start: Instant,
) -> Duration {
    let mut totals = Totals::default();
    let mut last_line = start;
    loop {
        std::thread::sleep(TICK);
        if producers.iter().all(JoinHandle::is_finished) {
            return start.elapsed();
        }
        let over = duration.is_some_and(|d| start.elapsed() >= d) || signals::received().is_some();
        if over && !limits.stop.swap(true, Relaxed) {
            // Appends in flight still count; the run ends when the producers return.
            continue;
        }
        if last_line.elapsed() >= PROGRESS_INTERVAL {
            let (window, now) = live.window(totals);
            eprintln!(
                "[{:>5.1}s] {}",
                start.elapsed().as_secs_f64(),
                window.describe(last_line.elapsed(), record_bytes)
            );
            totals = now;
            last_line = Instant::now();
        }
    }
}

/// Joins the producers and merges their histograms; the first append error fails the run.
fn collect(
    producers: Vec<JoinHandle<ringlog::Result<Histogram<u64>>>>,
    dir: &Path,
) -> CliResult<Histogram<u64>> {
    let mut merged = latency::new_histogram();
    let mut first_error = None;
    for handle in producers {
        match handle.join() {
            Ok(Ok(histogram)) => {
                // Same bounds on both sides: adding cannot fail.
                let _ = merged.add(&histogram);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(Failure::from_log(e, dir));
            }
            Err(_) => {
                first_error.get_or_insert(Failure::usage("a producer thread panicked"));
            }
        }
    }
    match first_error {
        Some(failure) => Err(failure),
        None => Ok(merged),
    }
}

/// `io_uring`, `pwritev`, or `simulated` (test backends).
fn backend_name(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Uring => "io_uring",
        BackendKind::Pwrite => "pwritev",
        _ => "simulated",
    }
}

/// kafka-producer-perf-test's final line, then ringlog's flush statistics (and the store's,
/// with `--topics`).
fn render_text(s: &Summary) -> String {
    let mut text = render_single(s);
    if let (Some(topics), Some(cycles)) = (s.topics, s.flush_cycles) {
        text.push_str(&format!(
            "\n{topics} topics: {cycles} flush cycles over several topics{}.",
            s.fsyncs_per_cycle
                .map_or(String::new(), |per_cycle| format!(
                    ", {per_cycle:.1} fdatasyncs per cycle"
                ))
        ));
    }
    text
}

/// The summary of a single log's run (and the first two lines of a store's).
fn render_single(s: &Summary) -> String {
    let fsyncs = match s.records_per_fsync {
        Some(per_fsync) => format!("{} fsyncs, {per_fsync:.1} records per fsync", s.fsyncs),
        None => format!("{} fsyncs", s.fsyncs),
    };
    let fallback = s
        .backend_fallback_reason
        .as_ref()
        .map_or(String::new(), |why| format!(" (fell back: {why})"));
    format!(
        "{} records sent, {:.1} records/sec ({:.2} MB/sec), {} avg latency, {} max latency, {} 50th, {} 95th, {} 99th, {} 99.9th.\n\
         {fsyncs}, backend {}{fallback}, durability {}, {} producers, {}-byte records, {:.2} s.\n\
         {} appends over 2 ms, {} rollovers.",
        s.records,
        s.records_per_sec,
        s.megabytes_per_sec,
        format_latency(s.latency_ns_avg),
        format_latency(s.latency_ns_max as f64),
        format_latency(s.latency_ns_p50 as f64),
        format_latency(s.latency_ns_p95 as f64),
        format_latency(s.latency_ns_p99 as f64),
        format_latency(s.latency_ns_p999 as f64),
        s.backend,
        s.durability,
        s.producers,
        s.record_bytes,
        s.elapsed_sec,
        s.appends_over_2ms,
        s.rollovers
    )
}
