//! A week of ingest in minutes: 1 KiB records appended at full speed (`Durability::None`)
//! until `GIB` GiB went in, once with `Retention::max_bytes(MAX_GIB)` and once without,
//! in the same run. Prints the most disk the log's directory took (sampled every 20 ms)
//! against the bound (max_bytes plus the active segment and its spare), and append
//! latency percentiles of both runs with their ratio.
//!
//! ```text
//! cargo run --release --example retention_soak -- [GIB=20] [MAX_GIB=1]
//! ```

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringlog::{Durability, Log, Options, Retention};

const RECORD_BYTES: usize = 1024;
const SEGMENT_BYTES: u64 = 64 << 20;

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

struct Run {
    latencies_ns: Vec<u32>,
    max_disk_bytes: u64,
    seconds: f64,
    first_offset: u64,
}

fn run(dir: &Path, total_bytes: u64, retention: Option<Retention>) -> Run {
    let mut opts = Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::None);
    if let Some(r) = retention {
        opts = opts.retention(r);
    }
    let log = Log::open(dir, opts).expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let max_disk = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_disk, dir) = (stop.clone(), max_disk.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max_disk.fetch_max(dir_bytes(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let records = total_bytes / RECORD_BYTES as u64;
    let payload = vec![0x5Au8; RECORD_BYTES];
    let mut latencies_ns = Vec::with_capacity(records as usize);
    let started = Instant::now();
    for _ in 0..records {
        let t = Instant::now();
        log.append(&payload).expect("append");
        latencies_ns.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
    }
    log.sync().expect("sync");
    let seconds = started.elapsed().as_secs_f64();
    // One pass more after the last rollover's, so the final state is within the bound.
    let _ = log.apply_retention();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let first_offset = log.first_offset();
    log.close().expect("close");
    Run {
        latencies_ns,
        max_disk_bytes: max_disk.load(Ordering::Relaxed).max(dir_bytes(dir)),
        seconds,
        first_offset,
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let gib: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20.0);
    let max_gib: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let total = (gib * (1u64 << 30) as f64) as u64;
    let max_bytes = (max_gib * (1u64 << 30) as f64) as u64;
    let root = tempfile::tempdir_in(".").expect("tempdir");
    let mut results = Vec::new();
    for (name, retention) in [
        ("without retention", None),
        ("max_bytes", Some(Retention::default().max_bytes(max_bytes))),
    ] {
        let dir = root.path().join(name.replace(' ', "-"));
        let mut r = run(&dir, total, retention);
        std::fs::remove_dir_all(&dir).expect("remove");
        r.latencies_ns.sort_unstable();
        let l = &r.latencies_ns;
        println!(
            "{name:>18}: {gib} GiB in {:.1} s ({:.2} M records/s), most disk {:.3} GiB, first offset {}; append p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            r.seconds,
            l.len() as f64 / r.seconds / 1e6,
            r.max_disk_bytes as f64 / (1u64 << 30) as f64,
            r.first_offset,
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 0.999),
            l[l.len() - 1],
        );
        results.push(r);
    }
    let bound = max_bytes + 2 * SEGMENT_BYTES + (1 << 20);
    let with = &results[1];
    println!(
        "disk bound max_bytes + two segments = {:.3} GiB: {}; p99.9 with / without retention = {:.2}",
        bound as f64 / (1u64 << 30) as f64,
        if with.max_disk_bytes <= bound { "met" } else { "MISSED" },
        percentile(&results[1].latencies_ns, 0.999) as f64
            / percentile(&results[0].latencies_ns, 0.999).max(1) as f64
    );
}
