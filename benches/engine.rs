//! Criterion benchmarks of the engine: append throughput by record size, durability and
//! producer count (with the naive `pwrite` + `fdatasync` per record baseline beside every
//! durable group), sequential scan, random reads, and open time.
//!
//! `cargo bench --bench engine` (all), or e.g. `cargo bench --bench engine -- append/sync`.
//! `benches/targets.rs` prints the targets as ratios instead.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringlog::{Durability, Log, Options};

const RECORD_SIZES: [usize; 3] = [128, 1024, 16 << 10];
const PRODUCERS: [usize; 4] = [1, 4, 16, 64];

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(".").expect("tempdir")
}

/// Time for `producers` threads to append `records_total` records between them.
fn append_time(
    log: &Arc<Log>,
    producers: usize,
    record_bytes: usize,
    records_total: u64,
) -> Duration {
    let per_thread = records_total.div_ceil(producers as u64);
    let barrier = Arc::new(Barrier::new(producers + 1));
    let handles: Vec<_> = (0..producers)
        .map(|_| {
            let log = log.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let record = vec![0x5Au8; record_bytes];
                barrier.wait();
                for _ in 0..per_thread {
                    log.append(&record).expect("append");
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for handle in handles {
        handle.join().expect("producer");
    }
    log.sync().expect("sync");
    start.elapsed()
}

/// Naive baseline: one thread, `pwrite` + `fdatasync` per record, preallocated file.
fn naive_time(dir: &Path, record_bytes: usize, records: u64) -> Duration {
    let path = dir.join("naive.dat");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create");
    let bytes_total = record_bytes as u64 * records;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < bytes_total {
        file.write_all_at(&zeros, at).expect("zero");
        at += zeros.len() as u64;
    }
    file.sync_all().expect("sync");
    let record = vec![0x5Au8; record_bytes];
    let start = Instant::now();
    for i in 0..records {
        file.write_all_at(&record, i * record_bytes as u64)
            .expect("write");
        rustix::fs::fdatasync(&file).expect("fdatasync");
    }
    start.elapsed()
}

fn append(c: &mut Criterion) {
    for (name, durability) in [("sync", Durability::Sync), ("none", Durability::None)] {
        let mut group = c.benchmark_group(format!("append/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        for record_bytes in RECORD_SIZES {
            group.throughput(Throughput::Bytes(record_bytes as u64));
            if durability == Durability::Sync {
                group.bench_with_input(
                    BenchmarkId::new("naive-pwrite-fdatasync", record_bytes),
                    &record_bytes,
                    |b, &record_bytes| {
                        let dir = scratch();
                        b.iter_custom(|iters| naive_time(dir.path(), record_bytes, iters));
                    },
                );
            }
            for producers in PRODUCERS {
                let id = BenchmarkId::new(format!("ringlog-{producers}p"), record_bytes);
                group.bench_with_input(id, &record_bytes, |b, &record_bytes| {
                    let dir = scratch();
                    let log = Arc::new(
                        Log::open(dir.path(), Options::default().durability(durability))
                            .expect("open"),
                    );
                    b.iter_custom(|iters| append_time(&log, producers, record_bytes, iters));
                });
            }
        }
        group.finish();
    }
}

/// A closed log of `records` records of `record_bytes`, in a fresh directory.
fn filled(record_bytes: usize, records: u64) -> tempfile::TempDir {
    let dir = scratch();
    let log = Log::open(dir.path(), Options::default().durability(Durability::None)).expect("open");
    let record = vec![0x5Au8; record_bytes];
    for _ in 0..records {
        log.append(&record).expect("append");
    }
    log.close().expect("close");
    dir
}

fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for (record_bytes, records) in [(100usize, 1_000_000u64), (16 << 10, 10_000)] {
        let dir = filled(record_bytes, records);
        let log = Log::open(dir.path(), Options::default()).expect("open");
        group.throughput(Throughput::Bytes(record_bytes as u64 * records));
        group.bench_function(BenchmarkId::new("scan", record_bytes), |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for record in log.iter(0) {
                    bytes += record.expect("record").payload().len();
                }
                bytes
            })
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("random", record_bytes), |b| {
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                log.read(x % records).expect("read").payload().len()
            })
        });
    }
    group.finish();
}

fn open_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group.sample_size(20);
    for segments in [2u64, 20] {
        let dir = scratch();
        {
            let opts = Options::default()
                .segment_bytes(1 << 20)
                .durability(Durability::None);
            let log = Log::open(dir.path(), opts).expect("open");
            let record = vec![0x5Au8; 1000];
            while log.stats().segments_count < segments {
                log.append(&record).expect("append");
            }
            log.close().expect("close");
        }
        group.bench_function(BenchmarkId::new("clean", segments), |b| {
            b.iter(|| {
                let log =
                    Log::open(dir.path(), Options::default().segment_bytes(1 << 20)).expect("open");
                log.close().expect("close");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, reads, open_time);
criterion_main!(benches);
