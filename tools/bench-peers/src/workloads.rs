//! The workloads W1-W6, run against every peer on fresh directories.

use std::io::{BufRead, BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use hdrhistogram::Histogram;

use crate::disk;
use crate::payload::{Payloads, XorShift};
use crate::peer::{Mode, Peer, PeerId};
use crate::peers::ringlog;
use crate::report::{format_bytes, Better, Column, RowKind, Table, Unit};

/// The hidden subcommand that appends forever until killed (W6).
pub const CRASH_WRITER: &str = "__crash-writer";

/// Sizes and time limits of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub peers: Vec<PeerId>,
    pub w1_records: u64,
    pub w1_warmup_records: u64,
    pub w1_budget: Duration,
    pub w2_warmup: Duration,
    pub w2_duration: Duration,
    pub w3_records: u64,
    pub w3_record_bytes: usize,
    pub read_budget: Duration,
    pub w5_reads: u64,
    pub crash_after: Duration,
}

impl Plan {
    pub fn full(peers: Vec<PeerId>) -> Plan {
        Plan {
            peers,
            w1_records: 2_000,
            w1_warmup_records: 100,
            w1_budget: Duration::from_secs(5),
            w2_warmup: Duration::from_millis(300),
            w2_duration: Duration::from_millis(1500),
            w3_records: 10_000_000,
            w3_record_bytes: 100,
            read_budget: Duration::from_secs(10),
            w5_reads: 1_000_000,
            crash_after: Duration::from_millis(300),
        }
    }

    pub fn quick(peers: Vec<PeerId>) -> Plan {
        Plan {
            peers,
            w1_records: 200,
            w1_warmup_records: 20,
            w1_budget: Duration::from_secs(1),
            w2_warmup: Duration::from_millis(50),
            w2_duration: Duration::from_millis(250),
            w3_records: 200_000,
            w3_record_bytes: 100,
            read_budget: Duration::from_secs(2),
            w5_reads: 20_000,
            crash_after: Duration::from_millis(100),
        }
    }
}

/// Runs workloads in fresh subdirectories of one scratch directory.
pub struct Bench<'a> {
    pub plan: &'a Plan,
    root: &'a Path,
    dirs: AtomicUsize,
}

impl<'a> Bench<'a> {
    pub fn new(plan: &'a Plan, root: &'a Path) -> Bench<'a> {
        Bench {
            plan,
            root,
            dirs: AtomicUsize::new(0),
        }
    }

    /// A new, not yet existing, directory path for one log.
    pub(crate) fn fresh_dir(&self, label: &str) -> PathBuf {
        let n = self.dirs.fetch_add(1, Relaxed);
        self.root.join(format!("{n:02}-{label}"))
    }
}

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn percentiles(h: &Histogram<u64>) -> [f64; 3] {
    [0.5, 0.99, 0.999].map(|q| h.value_at_quantile(q) as f64)
}

pub(crate) fn row_kind(peer: PeerId, needs_durability: bool) -> RowKind {
    match peer {
        PeerId::Ringlog | PeerId::RinglogMapped => RowKind::Ringlog,
        _ => RowKind::Peer {
            eligible: peer.is_durable() || !needs_durability,
        },
    }
}

/// Runs `f`, turning errors and panics into a message for the table.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("panicked: {message}"))
        }
    }
}

fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))
}

fn split<T>(outcome: Result<(T, String), String>) -> (Result<T, String>, String) {
    match outcome {
        Ok((value, note)) => (Ok(value), note),
        Err(e) => (Err(e), String::new()),
    }
}

// ---------------------------------------------------------------------------------------
// W1

/// W1: durable appends of 1 KiB from one producer, each acknowledged once durable.
pub fn w1(bench: &Bench) -> Table {
    let plan = bench.plan;
    let payloads = Payloads::new(1024);
    let mut table = Table::new(
        "W1",
        "durable appends, 1 producer, 1 KiB records, each acknowledged once durable",
        vec![
            Column {
                name: "records/s",
                unit: Unit::Rate,
            },
            Column {
                name: "p50",
                unit: Unit::Nanos,
            },
            Column {
                name: "p99",
                unit: Unit::Nanos,
            },
            Column {
                name: "p99.9",
                unit: Unit::Nanos,
            },
            Column {
                name: "max",
                unit: Unit::Nanos,
            },
        ],
        1,
        Better::Lower,
    );
    for &peer in &plan.peers {
        eprintln!("[W1] {}", peer.name());
        let outcome = guarded(|| {
            let dir = bench.fresh_dir(&format!("{}-w1", peer.name()));
            let log = peer.open(&dir, Mode::Durable)?;
            for i in 0..plan.w1_warmup_records {
                log.append_durable(0, payloads.get(i))?;
            }
            let mut latencies = latency_histogram();
            let start = Instant::now();
            let mut done = 0;
            while done < plan.w1_records && start.elapsed() < plan.w1_budget {
                let t = Instant::now();
                log.append_durable(0, payloads.get(done))?;
                latencies.record(t.elapsed().as_nanos() as u64)?;
                done += 1;
            }
            let elapsed = start.elapsed();
            log.close()?;
            remove(&dir)?;
            Ok((
                w1_values(&latencies, done, elapsed),
                budget_note(done, plan.w1_records),
            ))
        });
        let (values, note) = split(outcome);
        table.push(peer.name(), row_kind(peer, true), values, note);
    }
    eprintln!("[W1] disk");
    let outcome = guarded(|| {
        let (latencies, done, elapsed) =
            disk::pwrite_fdatasync_each(bench.root, &payloads, plan.w1_records, plan.w1_budget)?;
        Ok((
            w1_values(&latencies, done, elapsed),
            budget_note(done, plan.w1_records),
        ))
    });
    let (values, note) = split(outcome);
    table.push(
        "disk: pwrite + fdatasync per record",
        RowKind::Ceiling,
        values,
        format!(
            "preallocated zero-filled file{}{note}",
            if note.is_empty() { "" } else { "; " }
        ),
    );
    table
}

fn w1_values(latencies: &Histogram<u64>, done: u64, elapsed: Duration) -> Vec<f64> {
    let [p50, p99, p999] = percentiles(latencies);
    vec![
        done as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
        p999,
        latencies.max() as f64,
    ]
}

fn budget_note(done: u64, planned: u64) -> String {
    if done < planned {
        format!("time budget: {done} of {planned} records")
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------------------
// W2

/// W2: durable appends from `producers` threads, each with one append at a time.
pub fn w2(bench: &Bench, producers: usize, record_bytes: usize) -> Table {
    let plan = bench.plan;
    let payloads = Payloads::new(record_bytes);
    let mut table = Table::new(
        format!("W2 {producers}×{}", format_bytes(record_bytes as f64)),
        format!(
            "durable appends, {producers} producer threads, {} records",
            format_bytes(record_bytes as f64)
        ),
        vec![
            Column {
                name: "records/s",
                unit: Unit::Rate,
            },
            Column {
                name: "p50",
                unit: Unit::Nanos,
            },
            Column {
                name: "p99",
                unit: Unit::Nanos,
            },
            Column {
                name: "p99.9",
                unit: Unit::Nanos,
            },
            Column {
                name: "max",
                unit: Unit::Nanos,
            },
        ],
        0,
        Better::Higher,
    );
    let label = format!("w2-{producers}x{record_bytes}");
    for &peer in &plan.peers {
        eprintln!("[W2 {producers} x {record_bytes} B] {}", peer.name());
        let outcome = guarded(|| {
            let dir = bench.fresh_dir(&format!("{}-{label}", peer.name()));
            let log = peer.open(&dir, Mode::Durable)?;
            let (done, latencies) = run_producers(
                &*log,
                producers,
                &payloads,
                plan.w2_warmup,
                plan.w2_duration,
            )?;
            log.close()?;
            remove(&dir)?;
            Ok((
                latency_values(done as f64 / plan.w2_duration.as_secs_f64(), &latencies),
                String::new(),
            ))
        });
        let (values, note) = split(outcome);
        table.push(peer.name(), row_kind(peer, true), values, note);
    }
    if plan.peers.contains(&PeerId::Ringlog) {
        eprintln!("[W2 {producers} x {record_bytes} B] ringlog submit");
        let outcome = guarded(|| {
            let dir = bench.fresh_dir(&format!("ringlog-submit-{label}"));
            let log = ringlog::open_log(&dir, Mode::Durable)?;
            let payload = payloads.get(0);
            ringlog::submit_pipelined(&log, payload, producers, plan.w2_warmup)?;
            let (done, elapsed, latencies) =
                ringlog::submit_pipelined(&log, payload, producers, plan.w2_duration)?;
            let stats = log.stats();
            log.close().context("ringlog: close")?;
            remove(&dir)?;
            let note = format!(
                "one thread, `submit` + `wait`, {producers} in flight; {:.1} records per fsync",
                stats.records_per_fsync
            );
            Ok((
                latency_values(done as f64 / elapsed.as_secs_f64(), &latencies),
                note,
            ))
        });
        let (values, note) = split(outcome);
        table.push(
            format!("ringlog submit ×{producers}"),
            RowKind::Ringlog,
            values,
            note,
        );
    }
    eprintln!("[W2 {producers} x {record_bytes} B] ceiling");
    let outcome = guarded(|| {
        let (done, elapsed, latencies) = disk::group_commit_ceiling(
            bench.root,
            &payloads,
            producers,
            plan.w2_warmup,
            plan.w2_duration,
        )?;
        Ok(latency_values(
            done as f64 / elapsed.as_secs_f64(),
            &latencies,
        ))
    });
    table.push(
        format!("ceiling: 1 thread, pwrite of {producers} records + fdatasync"),
        RowKind::Ceiling,
        outcome,
        "preallocated zero-filled file; latencies are of each batch",
    );
    table
}

/// A rate, then the p50, p99, p99.9 and max of `latencies`.
fn latency_values(rate: f64, latencies: &Histogram<u64>) -> Vec<f64> {
    let [p50, p99, p999] = percentiles(latencies);
    vec![rate, p50, p99, p999, latencies.max() as f64]
}

/// An append slower than this is a stall (issue 14).
const STALL_NS: u64 = 2_000_000;

/// Segment size of the stall workload: small, so a short run crosses many rollovers.
const STALL_SEGMENT_BYTES: u64 = 4 << 20;

/// Rollovers the stall workload crosses at least (it runs longer if it must, up to
/// `STALL_DURATION_MAX`).
const STALL_ROLLOVERS_MIN: u64 = 50;
const STALL_DURATION_MAX: Duration = Duration::from_secs(30);

/// W2 stalls: ringlog's durable appends from `producers` threads on 4 MiB segments, so
/// the run crosses at least 50 rollovers (each with its spare's zero-fill, its
/// checkpoints and write-bound extensions), counting the appends over 2 ms; then, in the
/// same run, the disk's own `pwrite` + `fdatasync` per record, whose p99.9 ringlog's
/// is compared with.
pub fn w2_stalls(bench: &Bench, producers: usize) -> Table {
    let plan = bench.plan;
    let payloads = Payloads::new(1024);
    let mut table = Table::new(
        format!("W2 stalls {producers}×1 KiB"),
        format!(
            "durable appends, {producers} producer threads, 1 KiB records, {} segments: \
             at least {STALL_ROLLOVERS_MIN} rollovers",
            format_bytes(STALL_SEGMENT_BYTES as f64)
        ),
        vec![
            Column {
                name: "records/s",
                unit: Unit::Rate,
            },
            Column {
                name: "p50",
                unit: Unit::Nanos,
            },
            Column {
                name: "p99.9",
                unit: Unit::Nanos,
            },
            Column {
                name: "max",
                unit: Unit::Nanos,
            },
            Column {
                name: "over 2 ms",
                unit: Unit::Count,
            },
            Column {
                name: "rollovers",
                unit: Unit::Count,
            },
        ],
        2,
        Better::Lower,
    );
    if plan.peers.contains(&PeerId::Ringlog) {
        eprintln!("[W2 stalls {producers} x 1 KiB] ringlog");
        let outcome = guarded(|| {
            let dir = bench.fresh_dir(&format!("ringlog-stalls-{producers}"));
            let log = ringlog::open_log_with_segments(&dir, STALL_SEGMENT_BYTES)?;
            let peer = ringlog::Ringlog::new(log);
            let segments_before = peer.log().stats().segments_count;
            let mut done = 0;
            let mut elapsed = Duration::ZERO;
            let mut latencies = latency_histogram();
            let mut rollovers = 0;
            while rollovers < STALL_ROLLOVERS_MIN && elapsed < STALL_DURATION_MAX {
                let (n, h) = run_producers(
                    &peer,
                    producers,
                    &payloads,
                    Duration::ZERO,
                    plan.w2_duration,
                )?;
                done += n;
                elapsed += plan.w2_duration;
                latencies.add(&h)?;
                rollovers = peer.log().stats().segments_count - segments_before;
            }
            Box::new(peer).close()?;
            remove(&dir)?;
            let over: u64 = latencies
                .iter_recorded()
                .filter(|v| v.value_iterated_to() > STALL_NS)
                .map(|v| v.count_at_value())
                .sum();
            let [p50, _, p999] = percentiles(&latencies);
            Ok((
                vec![
                    done as f64 / elapsed.as_secs_f64(),
                    p50,
                    p999,
                    latencies.max() as f64,
                    over as f64,
                    rollovers as f64,
                ],
                format!("{done} appends"),
            ))
        });
        let (values, note) = split(outcome);
        table.push("ringlog", RowKind::Ringlog, values, note);
    }
    eprintln!("[W2 stalls {producers} x 1 KiB] disk");
    let outcome = guarded(|| {
        let (latencies, done, elapsed) =
            disk::pwrite_fdatasync_each(bench.root, &payloads, plan.w1_records, plan.w1_budget)?;
        let over: u64 = latencies
            .iter_recorded()
            .filter(|v| v.value_iterated_to() > STALL_NS)
            .map(|v| v.count_at_value())
            .sum();
        let [p50, _, p999] = percentiles(&latencies);
        Ok(vec![
            done as f64 / elapsed.as_secs_f64(),
            p50,
            p999,
            latencies.max() as f64,
            over as f64,
            f64::NAN,
        ])
    });
    table.push(
        "disk: pwrite + fdatasync per record",
        RowKind::Ceiling,
        outcome,
        "1 thread, the same run; ringlog's p99.9 ÷ this p99.9 is the ratio",
    );
    table
}

/// Runs `producers` threads appending durably for `warmup + duration`; counts (and times)
/// the appends that complete inside the measured window.
fn run_producers(
    log: &dyn Peer,
    producers: usize,
    payloads: &Payloads,
    warmup: Duration,
    duration: Duration,
) -> Result<(u64, Histogram<u64>)> {
    let barrier = Barrier::new(producers + 1);
    let failed = AtomicBool::new(false);
    let begin = std::sync::OnceLock::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..producers)
            .map(|producer| {
                let (barrier, failed, begin) = (&barrier, &failed, &begin);
                scope.spawn(move || -> Result<(u64, Histogram<u64>)> {
                    barrier.wait();
                    let begin: Instant = *begin.get().expect("set before the barrier");
                    let (window_start, window_end) = (begin + warmup, begin + warmup + duration);
                    let mut latencies = latency_histogram();
                    let mut done = 0;
                    let mut i = producer as u64;
                    while !failed.load(Relaxed) {
                        let t = Instant::now();
                        if t >= window_end {
                            break;
                        }
                        if let Err(e) = log.append_durable(producer, payloads.get(i)) {
                            failed.store(true, Relaxed);
                            return Err(e.context(format!("producer {producer}")));
                        }
                        let end = Instant::now();
                        if end >= window_start && end < window_end {
                            latencies.record((end - t).as_nanos() as u64)?;
                            done += 1;
                        }
                        i += producers as u64;
                    }
                    Ok((done, latencies))
                })
            })
            .collect();
        begin.set(Instant::now()).expect("set once");
        barrier.wait();
        let mut total = 0;
        let mut latencies = latency_histogram();
        for worker in workers {
            let (done, h) = worker
                .join()
                .map_err(|_| anyhow!("a producer thread panicked"))??;
            total += done;
            latencies.add(&h)?;
        }
        Ok((total, latencies))
    })
}

// ---------------------------------------------------------------------------------------
// W3-W6

/// The tables of the workloads that share W3's data.
pub struct DataTables {
    pub w3: Table,
    pub w4: Table,
    pub w5: Table,
    pub w6_clean: Table,
    pub w6_crash: Table,
}

pub fn data_workloads(bench: &Bench) -> DataTables {
    let plan = bench.plan;
    let n = plan.w3_records;
    let size = plan.w3_record_bytes;
    let mut tables = DataTables {
        w3: Table::new(
            "W3",
            format!("bulk appends, not durable, {n} records of {size} B from 1 producer, one sync at the end"),
            vec![
                Column { name: "records/s", unit: Unit::Rate },
                Column { name: "payload", unit: Unit::BytesRate },
            ],
            0,
            Better::Higher,
        ),
        w4: Table::new(
            "W4",
            "sequential read of W3's records (checksums verified where the format has them; page cache warm)",
            vec![
                Column { name: "records/s", unit: Unit::Rate },
                Column { name: "payload", unit: Unit::BytesRate },
            ],
            0,
            Better::Higher,
        ),
        w5: Table::new(
            "W5",
            format!("{} random reads of W3's records by record number", plan.w5_reads),
            vec![Column { name: "reads/s", unit: Unit::Rate }],
            0,
            Better::Higher,
        ),
        w6_clean: Table::new(
            "W6 clean",
            "open of W3's log after a clean close",
            vec![Column { name: "open time", unit: Unit::Nanos }],
            0,
            Better::Lower,
        ),
        w6_crash: Table::new(
            "W6 crash",
            "open of W3's log after kill -9 of a process appending to it",
            vec![Column { name: "open time", unit: Unit::Nanos }],
            0,
            Better::Lower,
        ),
    };
    let payloads = Payloads::new(size);
    for &peer in &plan.peers {
        let results = on_peer_data(bench, peer, &payloads);
        let kind = |needs_durability| row_kind(peer, needs_durability);
        let ([w3, w4, w5, clean, crash], w4_other) = results;
        let (v, note) = split(w3);
        tables.w3.push(peer.name(), kind(true), v, note);
        let (v, note) = split(w4);
        tables.w4.push(peer.name(), kind(false), v, note);
        if let Some((label, outcome)) = w4_other {
            let (v, note) = split(outcome);
            tables.w4.push(label, kind(false), v, note);
        }
        let (v, note) = split(w5);
        tables.w5.push(peer.name(), kind(false), v, note);
        let (v, note) = split(clean);
        tables
            .w6_clean
            .push(peer.name(), kind(false), v, open_note(peer, note));
        let (v, note) = split(crash);
        tables
            .w6_crash
            .push(peer.name(), kind(false), v, open_note(peer, note));
    }
    disk_data_rows(bench, &payloads, &mut tables);
    tables
}

type Outcome = Result<(Vec<f64>, String), String>;

/// What a peer's open does, where that explains its time.
fn open_note(peer: PeerId, note: String) -> String {
    let what = match peer {
        PeerId::Commitlog => "no recovery: trusts its index and file lengths, checks nothing",
        PeerId::Okaywal => "replays (reads and checks) every entry not checkpointed",
        PeerId::RaftEngine => "replays every log file to rebuild its in-memory index",
        PeerId::Sqlite => "reads the schema; after a crash, rebuilds the WAL index",
        PeerId::JsonLines | PeerId::Framed | PeerId::Channel => {
            "scans the whole file to rebuild the record index"
        }
        PeerId::Walrus => "rebuilds its block chain from the files",
        PeerId::Spacetime => "checks the last segment's commits from its offset index",
        PeerId::Ringlog | PeerId::RinglogMapped => return note,
    };
    if note.is_empty() {
        what.to_string()
    } else {
        format!("{note}; {what}")
    }
}

/// W3, then W4, W5 and W6 on the data W3 wrote, for one peer.
/// A second W4 row of the same peer: its label and outcome.
type OtherScan = Option<(&'static str, Outcome)>;

fn on_peer_data(bench: &Bench, peer: PeerId, payloads: &Payloads) -> ([Outcome; 5], OtherScan) {
    let plan = bench.plan;
    let n = plan.w3_records;
    let name = peer.name();
    let dir = bench.fresh_dir(&format!("{name}-w3"));
    let skipped = |why: &str| Err(format!("skipped: {why}"));

    eprintln!("[W3] {name}");
    let mut log = None;
    let w3 = guarded(|| {
        let opened = peer.open(&dir, Mode::Bulk)?;
        let start = Instant::now();
        opened.append(&mut payloads.iter(0..n))?;
        opened.sync()?;
        let elapsed = start.elapsed().as_secs_f64();
        log = Some(opened);
        let bytes = dir_bytes(&dir)?;
        Ok((
            vec![
                n as f64 / elapsed,
                (n * payloads.size() as u64) as f64 / elapsed,
            ],
            format!("{} on disk", format_bytes(bytes as f64)),
        ))
    });
    let Some(log) = log.filter(|_| w3.is_ok()) else {
        let _ = std::fs::remove_dir_all(&dir);
        let skipped_all = [
            w3,
            skipped("W3 failed"),
            skipped("W3 failed"),
            skipped("W3 failed"),
            skipped("W3 failed"),
        ];
        return (skipped_all, None);
    };

    eprintln!("[W4] {name}");
    let w4 = guarded(|| timed_scan(plan, payloads, |visit| log.read_sequential(visit)));
    let w4_other = log.other_scan().map(|label| {
        eprintln!("[W4] {label}");
        let outcome =
            guarded(|| timed_scan(plan, payloads, |visit| log.read_sequential_other(visit)));
        (label, outcome)
    });

    eprintln!("[W5] {name}");
    let w5 = guarded(|| {
        let mut rng = XorShift::new(7);
        let start = Instant::now();
        let mut done = 0;
        while done < plan.w5_reads {
            if done % 1024 == 0 && start.elapsed() > plan.read_budget {
                break;
            }
            let index = rng.below(n);
            let mut ok = false;
            log.read_at(index, &mut |payload| ok = payloads.matches(index, payload))?;
            ensure!(ok, "record {index} does not hold what was appended");
            done += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let note = if done < plan.w5_reads {
            format!("time budget: {done} of {} reads", plan.w5_reads)
        } else {
            String::new()
        };
        Ok((vec![done as f64 / elapsed], note))
    });

    let closed = guarded(|| log.close());
    if let Err(e) = closed {
        let _ = std::fs::remove_dir_all(&dir);
        let why = format!("close after W5 failed: {e}");
        return ([w3, w4, w5, skipped(&why), skipped(&why)], w4_other);
    }

    eprintln!("[W6 clean] {name}");
    let clean = guarded(|| {
        let bytes = dir_bytes(&dir)?;
        let elapsed = timed_open(peer, &dir, payloads, n)?;
        Ok((
            vec![elapsed.as_nanos() as f64],
            format!("log of {}", format_bytes(bytes as f64)),
        ))
    });

    eprintln!("[W6 crash] {name}");
    let crash = guarded(|| {
        crash_writer_and_kill(peer, &dir, plan.crash_after)?;
        let bytes = dir_bytes(&dir)?;
        let elapsed = timed_open(peer, &dir, payloads, n)?;
        Ok((
            vec![elapsed.as_nanos() as f64],
            format!("log of {}", format_bytes(bytes as f64)),
        ))
    });

    if let Err(e) = remove(&dir) {
        eprintln!("warning: {e:#}");
    }
    ([w3, w4, w5, clean, crash], w4_other)
}

/// Times one scan of W3's records (`scan` visits them) and checks what it visits.
fn timed_scan(
    plan: &Plan,
    payloads: &Payloads,
    scan: impl FnOnce(&mut dyn FnMut(&[u8]) -> bool) -> Result<()>,
) -> Result<(Vec<f64>, String)> {
    let n = plan.w3_records;
    let start = Instant::now();
    let mut read = 0u64;
    let mut mismatch = None;
    let mut out_of_time = false;
    scan(&mut |payload| {
        if !payloads.matches(read, payload) {
            mismatch = Some(read);
            return false;
        }
        read += 1;
        if read % 4096 == 0 && start.elapsed() > plan.read_budget {
            out_of_time = true;
            return false;
        }
        true
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(at) = mismatch {
        bail!("record {at} does not hold what was appended");
    }
    ensure!(out_of_time || read == n, "read {read} records of {n}");
    Ok((
        vec![
            read as f64 / elapsed,
            (read * payloads.size() as u64) as f64 / elapsed,
        ],
        budget_note(read, n),
    ))
}

/// Times opening the log, then checks (untimed) that W3's first and last records survived.
fn timed_open(peer: PeerId, dir: &Path, payloads: &Payloads, n: u64) -> Result<Duration> {
    let start = Instant::now();
    let log = peer.open(dir, Mode::Bulk)?;
    let elapsed = start.elapsed();
    for index in [0, n - 1] {
        let mut ok = false;
        log.read_at(index, &mut |payload| ok = payloads.matches(index, payload))
            .with_context(|| format!("after reopening, read record {index}"))?;
        ensure!(
            ok,
            "after reopening, record {index} does not hold what was appended"
        );
    }
    log.close()?;
    Ok(elapsed)
}

/// Starts this program as a writer appending to `dir` forever, lets it run for `after`
/// once it has appended, and kills it with SIGKILL.
fn crash_writer_and_kill(peer: PeerId, dir: &Path, after: Duration) -> Result<()> {
    let exe = std::env::current_exe().context("find own executable")?;
    let mut child = Command::new(exe)
        .arg(CRASH_WRITER)
        .arg(peer.name())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the crash writer")?;
    let stdout = child.stdout.take().context("crash writer stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("read from the crash writer")?;
    if line.trim() != "ready" {
        let status = child.wait().context("wait for the crash writer")?;
        bail!("the crash writer stopped before appending ({status})");
    }
    std::thread::sleep(after);
    child.kill().context("kill -9 the crash writer")?;
    child.wait().context("reap the crash writer")?;
    Ok(())
}

/// The hidden subcommand: opens the log, appends batches of records forever (syncing every
/// ten batches), and says "ready" once the first batch is in.
pub fn crash_writer(peer: PeerId, dir: &Path) -> Result<()> {
    let log = peer.open(dir, Mode::Bulk)?;
    let payloads = Payloads::new(100);
    let mut stdout = std::io::stdout();
    let mut next = 0u64;
    loop {
        log.append(&mut payloads.iter(next..next + 1000))?;
        next += 1000;
        if next % 10_000 == 0 {
            log.sync()?;
        }
        if next == 1000 {
            writeln!(stdout, "ready").context("stdout")?;
            stdout.flush().context("stdout")?;
        }
    }
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // A log's background thread may have renamed or removed a temporary file
            // since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("stat {}", entry.path().display())),
        };
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The disk's references for W3, W4 and W5 on the same payload bytes.
fn disk_data_rows(bench: &Bench, payloads: &Payloads, tables: &mut DataTables) {
    let plan = bench.plan;
    let n = plan.w3_records;
    let size = payloads.size() as u64;
    let path = bench.root.join("disk-w3.dat");
    eprintln!("[W3-W5] disk");
    let written = guarded(|| disk::sequential_write(&path, payloads, n));
    let w3 = written.map(|elapsed| {
        let secs = elapsed.as_secs_f64();
        vec![n as f64 / secs, (n * size) as f64 / secs]
    });
    let ok = w3.is_ok();
    tables.w3.push(
        "ceiling: 1 MiB writes + one fdatasync",
        RowKind::Ceiling,
        w3,
        "the payload bytes alone, no framing",
    );
    if !ok {
        return;
    }
    let w4 = guarded(|| {
        let (bytes, elapsed) = disk::sequential_read(&path)?;
        let secs = elapsed.as_secs_f64();
        Ok(vec![(bytes / size) as f64 / secs, bytes as f64 / secs])
    });
    tables.w4.push(
        "ceiling: 1 MiB reads",
        RowKind::Ceiling,
        w4,
        "no parsing, no checks",
    );
    let w5 = guarded(|| {
        let (done, elapsed) =
            disk::random_reads(&path, size as usize, n, plan.w5_reads, plan.read_budget)?;
        Ok(vec![done as f64 / elapsed.as_secs_f64()])
    });
    tables.w5.push(
        "ceiling: pread of one record",
        RowKind::Ceiling,
        w5,
        "position computed, no index, no checks",
    );
    if let Err(e) = std::fs::remove_file(&path) {
        eprintln!("warning: remove {}: {e}", path.display());
    }
}
