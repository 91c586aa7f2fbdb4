//! Append latency across rollovers with segment recycling on and off, in the same run
//! (docs/design.md 4.9, "When to use it"). Two workloads, each run with recycling off,
//! then on, `ROUNDS` times alternately, under retention so that segments are removed at
//! the rate they are made:
//!
//! - `sync`: one producer, 1 KiB `Durability::Sync` appends, 1 MiB segments,
//!   `max_segments(4)`, for `SECONDS` seconds (dozens of rollovers);
//! - `none`: one producer, 1 KiB `Durability::None` appends at full speed, 64 MiB
//!   segments, `max_bytes(512 MiB)`, 2 GiB in all.
//!
//! Prints p50 / p99 / p99.9 / max, appends over 2 ms, rollovers and recycled segments.
//!
//! ```text
//! cargo run --release --example recycle_rollovers -- [ROUNDS=2] [SECONDS=8]
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use ringlog::{Durability, Log, Options, Retention};

struct Figures {
    latencies_ns: Vec<u64>,
    rollovers: u64,
    recycled: u64,
    seconds: f64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn run(dir: &Path, sync: bool, recycle: bool, seconds: u64) -> Figures {
    let opts = if sync {
        Options::default()
            .segment_bytes(1 << 20)
            .durability(Durability::Sync)
            .retention(Retention::default().max_segments(4))
    } else {
        Options::default()
            .segment_bytes(64 << 20)
            .durability(Durability::None)
            .retention(Retention::default().max_bytes(512 << 20))
    }
    .recycle_segments(recycle);
    let log = Log::open(dir, opts).expect("open");
    let payload = vec![0x5au8; 1024];
    let mut latencies_ns = Vec::with_capacity(4 << 20);
    let started = Instant::now();
    let deadline = Duration::from_secs(seconds);
    let total_records = (2u64 << 30) / 1024;
    let mut first_segment = None;
    loop {
        let t = Instant::now();
        log.append(&payload).expect("append");
        latencies_ns.push(t.elapsed().as_nanos() as u64);
        if first_segment.is_none() {
            first_segment = log
                .segments()
                .ok()
                .and_then(|s| s.last().map(|s| s.segment_id));
        }
        let done = if sync {
            started.elapsed() >= deadline
        } else {
            latencies_ns.len() as u64 >= total_records
        };
        if done {
            break;
        }
    }
    log.sync().expect("sync");
    let seconds = started.elapsed().as_secs_f64();
    let last_segment = log
        .segments()
        .ok()
        .and_then(|s| s.last().map(|s| s.segment_id))
        .unwrap_or(0);
    let recycled = log.stats().recycled_segments_count;
    log.close().expect("close");
    latencies_ns.sort_unstable();
    Figures {
        latencies_ns,
        rollovers: last_segment - first_segment.unwrap_or(0),
        recycled,
        seconds,
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(2);
    let seconds = args.get(1).copied().unwrap_or(8);
    for sync in [true, false] {
        let name = if sync { "sync" } else { "none" };
        for round in 0..rounds {
            let mut p999 = [0u64; 2];
            for (i, recycle) in [false, true].into_iter().enumerate() {
                let dir = tempfile::tempdir().expect("tempdir");
                let f = run(dir.path(), sync, recycle, seconds);
                let l = &f.latencies_ns;
                let over_2ms = l.iter().filter(|&&n| n > 2_000_000).count();
                p999[i] = percentile(l, 0.999);
                println!(
                    "{name} round {round} recycle {recycle:5}: {} appends in {:.1} s ({:.0}/s), p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.2} ms, >2 ms {over_2ms}, rollovers {}, recycled {}",
                    l.len(),
                    f.seconds,
                    l.len() as f64 / f.seconds,
                    percentile(l, 0.5) as f64 / 1e3,
                    percentile(l, 0.99) as f64 / 1e3,
                    p999[i] as f64 / 1e3,
                    l.last().copied().unwrap_or(0) as f64 / 1e6,
                    f.rollovers,
                    f.recycled,
                );
            }
            println!(
                "{name} round {round}: p99.9 on/off {:.2}x",
                p999[1] as f64 / p999[0].max(1) as f64
            );
        }
    }
}
