//! `seek_time` on a large log: builds one of `GIB` GiB (4 KiB records, 64 MiB segments,
//! one timestamp per 1,000 records, `Durability::None`), then times `seek_time` to random
//! times: right after a reopen (sealed segments not yet mapped or indexed: each probe
//! maps a segment and loads its index file) and warm.
//!
//! ```text
//! cargo run --release --example seek_probe -- [GIB=10]
//! ```

use std::time::Instant;

use ringlog::{Durability, Log, Options};

fn main() {
    let gib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let root = tempfile::tempdir_in(".").expect("tempdir");
    let opts = Options::default()
        .segment_bytes(64 << 20)
        .durability(Durability::None);
    let records = (gib << 30) / 4096;
    let base_ms = 1_700_000_000_000u64;
    {
        let log = Log::open(root.path(), opts.clone()).expect("open");
        let payload = vec![0x42u8; 4096 - 24];
        let started = Instant::now();
        for i in 0..records {
            log.append_at(base_ms + i / 1_000, &payload)
                .expect("append");
        }
        log.close().expect("close");
        println!(
            "built {gib} GiB: {records} records in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let log = Log::open(root.path(), opts).expect("reopen");
    let segments = log.segments().map(|s| s.len()).unwrap_or(0);
    let last_ms = base_ms + (records - 1) / 1_000;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in ["cold (after reopen)", "warm"] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let ts = base_ms + next() % (last_ms - base_ms + 1);
            let started = Instant::now();
            let offset = log.seek_time(ts).expect("seek");
            times.push(started.elapsed().as_nanos() as u64);
            assert_eq!(offset, (ts - base_ms) * 1_000, "seek_time({ts})");
        }
        times.sort_unstable();
        println!(
            "{round}: seek_time over {segments} segments: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            times[times.len() / 2] as f64 / 1e3,
            times[times.len() * 99 / 100] as f64 / 1e3,
            times[times.len() - 1] as f64 / 1e3
        );
    }
}
