//! Appends durably from several threads into a temporary directory, reads everything
//! back, and prints throughput and latency.
//!
//! `cargo run --release --example demo [producers] [records_per_producer] [record_bytes]`

use std::sync::Arc;
use std::time::Instant;

use ringlog::{Log, Options};

fn main() -> ringlog::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let producers = args.next().and_then(Result::ok).unwrap_or(8);
    let per_producer = args.next().and_then(Result::ok).unwrap_or(2_000);
    let record_bytes = args.next().and_then(Result::ok).unwrap_or(1024);
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");
    let log = Arc::new(Log::open(dir.path(), Options::default())?);

    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let log = log.clone();
            std::thread::spawn(move || -> ringlog::Result<Vec<u64>> {
                let mut latencies_ns = Vec::with_capacity(per_producer);
                let mut record = vec![p as u8; record_bytes];
                for i in 0..per_producer {
                    record[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    let t = Instant::now();
                    log.append(&record)?;
                    latencies_ns.push(t.elapsed().as_nanos() as u64);
                }
                Ok(latencies_ns)
            })
        })
        .collect();
    let mut latencies_ns = Vec::new();
    for h in handles {
        latencies_ns.extend(h.join().expect("producer thread")?);
    }
    let elapsed = start.elapsed();
    latencies_ns.sort_unstable();
    let total = latencies_ns.len();
    let pct = |p: f64| latencies_ns[((total as f64 * p) as usize).min(total - 1)] as f64 / 1e3;
    let stats = log.stats();
    println!(
        "appended {total} records of {record_bytes} B from {producers} threads, durable each: \
         {:.0} records/s, {:.1} MB/s",
        total as f64 / elapsed.as_secs_f64(),
        (total * record_bytes) as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "latency p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "{} fsyncs, {:.1} records per fsync, backend {:?}{}",
        stats.fsyncs_count,
        stats.records_per_fsync,
        stats.backend,
        stats
            .backend_fallback_reason
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );

    let start = Instant::now();
    let mut bytes = 0usize;
    let mut count = 0usize;
    for record in log.iter(log.first_offset()) {
        let record = record?;
        bytes += record.payload().len();
        count += 1;
    }
    assert_eq!(count, total, "every acknowledged record reads back");
    println!(
        "read back {count} records ({:.1} MB) in {:.1} ms, checksums verified",
        bytes as f64 / 1e6,
        start.elapsed().as_secs_f64() * 1e3
    );
    log.close()
}
