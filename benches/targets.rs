//! The performance targets, each measured as a ratio against a baseline taken in
//! the same run on the same disk. Prints a table; asserts nothing (machines are noisy).
//!
//! `cargo bench --bench targets` (set `RINGLOG_BENCH_DIR` to bench another disk, and
//! `RINGLOG_BENCH_SCALE` to a fraction like 0.2 for a quick run).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ringlog::{Durability, IoBackend, Log, Options, Store};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("RINGLOG_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("tempdir"),
        None => tempfile::tempdir_in(".").expect("tempdir"),
    }
}

fn scale() -> f64 {
    std::env::var("RINGLOG_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(10)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A zero-filled, synced file of `bytes`.
fn preallocated(path: &Path, bytes: u64) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create");
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < bytes {
        file.write_all_at(&zeros, at).expect("zero");
        at += zeros.len() as u64;
    }
    file.sync_all().expect("sync");
    file
}

/// Naive baseline: one thread, pwrite + fdatasync per record. Latencies in ns.
fn naive(dir: &Path, record_bytes: usize, n: usize) -> Vec<u64> {
    let file = preallocated(
        &dir.join("naive.dat"),
        (n * record_bytes) as u64 + (1 << 20),
    );
    let record = vec![0x42u8; record_bytes];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        file.write_all_at(&record, (i * record_bytes) as u64)
            .unwrap();
        rustix::fs::fdatasync(&file).unwrap();
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    lat
}

/// Group-commit ceiling: one thread, one pwrite of `group` records + one fdatasync.
/// Returns records per second.
fn ceiling(dir: &Path, record_bytes: usize, group: usize, duration: Duration) -> f64 {
    let bytes_total = 1u64 << 30;
    let file = preallocated(&dir.join("ceiling.dat"), bytes_total);
    let batch = vec![0x42u8; record_bytes * group];
    let start = Instant::now();
    let mut records = 0u64;
    let mut at = 0u64;
    while start.elapsed() < duration {
        if at + batch.len() as u64 > bytes_total {
            at = 0;
        }
        file.write_all_at(&batch, at).unwrap();
        rustix::fs::fdatasync(&file).unwrap();
        at += batch.len() as u64;
        records += group as u64;
    }
    records as f64 / start.elapsed().as_secs_f64()
}

/// Sequential bandwidth: 1 MiB writes, one fdatasync at the end. Bytes per second.
fn disk_bandwidth(dir: &Path, bytes_total: u64) -> f64 {
    let file = preallocated(&dir.join("bw.dat"), bytes_total);
    let chunk = vec![0x42u8; 1 << 20];
    let start = Instant::now();
    let mut at = 0;
    while at < bytes_total {
        file.write_all_at(&chunk, at).unwrap();
        at += chunk.len() as u64;
    }
    rustix::fs::fdatasync(&file).unwrap();
    bytes_total as f64 / start.elapsed().as_secs_f64()
}

/// Page-cache bandwidth: 1 MiB write() calls to a fresh file, no sync.
fn page_cache_bandwidth(dir: &Path, bytes_total: u64) -> f64 {
    let path = dir.join("pc.dat");
    let file = File::create(&path).unwrap();
    let chunk = vec![0x42u8; 1 << 20];
    let start = Instant::now();
    let mut at = 0;
    while at < bytes_total {
        file.write_all_at(&chunk, at).unwrap();
        at += chunk.len() as u64;
    }
    let rate = bytes_total as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path).unwrap();
    rate
}

fn open(dir: &Path, durability: Durability, io: IoBackend) -> Log {
    Log::open(dir, Options::default().durability(durability).io(io)).expect("open")
}

/// One producer, durable appends: per-append latencies (sorted, ns).
fn ringlog_single(dir: &Path, io: IoBackend, record_bytes: usize, n: usize) -> Vec<u64> {
    ringlog_single_with(dir, Options::default().io(io), record_bytes, n)
}

fn ringlog_single_with(dir: &Path, opts: Options, record_bytes: usize, n: usize) -> Vec<u64> {
    let log = Log::open(dir, opts).expect("open");
    let record = vec![0x42u8; record_bytes];
    for _ in 0..50 {
        log.append(&record).unwrap();
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        log.append(&record).unwrap();
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    lat
}

/// `producers` threads appending for `duration`. Returns (records/s, stats).
fn ringlog_many(
    dir: &Path,
    io: IoBackend,
    durability: Durability,
    record_bytes: usize,
    producers: usize,
    duration: Duration,
) -> (f64, ringlog::Stats) {
    let log = Arc::new(open(dir, durability, io));
    let barrier = Arc::new(Barrier::new(producers + 1));
    let handles: Vec<_> = (0..producers)
        .map(|_| {
            let log = log.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let record = vec![0x42u8; record_bytes];
                barrier.wait();
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < duration {
                    log.append(&record).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    log.sync().unwrap();
    let rate = total as f64 / start.elapsed().as_secs_f64();
    (rate, log.stats())
}

/// `producers` threads appending durably for `duration` to topics of one store: each to
/// its own topic (`own_topics`), or all to one. Returns (records/s, the store's stats).
fn store_many(
    dir: &Path,
    io: IoBackend,
    own_topics: bool,
    producers: usize,
    duration: Duration,
) -> (f64, ringlog::StoreStats) {
    let store = Store::open(dir, Options::default().io(io)).expect("open store");
    let topics: Vec<Log> = (0..producers)
        .map(|i| {
            let name = if own_topics {
                format!("t{i}")
            } else {
                "t".into()
            };
            store.topic(&name).expect("topic")
        })
        .collect();
    let barrier = Arc::new(Barrier::new(producers + 1));
    let handles: Vec<_> = topics
        .into_iter()
        .map(|log| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let record = vec![0x42u8; 1024];
                barrier.wait();
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < duration {
                    log.append(&record).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let stats = store.stats();
    store.close().expect("close");
    (rate, stats)
}

/// Resident memory of this process, bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Open file descriptors and memory mappings of this process.
fn fds_and_maps() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
    (fds, maps)
}

/// Bytes the files under `dir` take on disk (what `du` counts).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += disk_bytes(&entry.path());
        }
    }
    total
}

/// A store of `topics` topics holding one 100-byte record each: disk, resident memory,
/// descriptors and mappings with every topic open, and the time a warm reopen takes
/// (store, then every topic).
fn small_topics(dir: &Path, topics: usize) {
    let (fds_before, maps_before) = fds_and_maps();
    let rss_before = resident_bytes();
    let store = Store::open(dir, Options::default()).expect("open store");
    let handles: Vec<Log> = (0..topics)
        .map(|i| {
            let topic = store.topic(&format!("run-{i}")).expect("topic");
            topic.append(&[0x42u8; 100]).expect("append");
            topic
        })
        .collect();
    let rss = resident_bytes().saturating_sub(rss_before);
    let (fds, maps) = fds_and_maps();
    let threads = store.stats().threads;
    drop(handles);
    // Asking for a topic closes idle ones beyond the store's bound.
    drop(store.topic("run-0").expect("topic"));
    let (fds_idle, maps_idle) = fds_and_maps();
    store.close().expect("close");
    let disk = disk_bytes(dir);
    let start = Instant::now();
    let store = Store::open(dir, Options::default()).expect("reopen");
    let listed = store.topics().expect("topics").len();
    let store_open = start.elapsed();
    for i in 0..topics {
        store.topic(&format!("run-{i}")).expect("topic");
    }
    let all_open = start.elapsed();
    store.close().expect("close");
    println!(
        "| {topics} topics x one 100 B record: disk (du) | {:.1} MiB | 128 MiB | {:.2} | ≤ 1 |",
        disk as f64 / (1 << 20) as f64,
        disk as f64 / (128u64 << 20) as f64
    );
    println!(
        "| {topics} topics open: resident memory added | {:.1} MiB | 64 MiB | {:.2} | ≤ 1 |",
        rss as f64 / (1 << 20) as f64,
        rss as f64 / (64u64 << 20) as f64
    );
    println!(
        "| {topics} topics open, every handle held: threads, descriptors, mappings added | {threads} threads, {} fds, {} maps | - | - | bounded |",
        fds.saturating_sub(fds_before),
        maps.saturating_sub(maps_before)
    );
    println!(
        "| {topics} topics, handles dropped (idle topics closed past 256): descriptors, mappings added | {} fds, {} maps | - | - | bounded |",
        fds_idle.saturating_sub(fds_before),
        maps_idle.saturating_sub(maps_before)
    );
    println!(
        "| {topics} topics: warm reopen, store ({listed} topics listed) / store and every topic | {:.2} ms / {:.1} ms | 100 ms | {:.2} | ≤ 1 |",
        store_open.as_secs_f64() * 1e3,
        all_open.as_secs_f64() * 1e3,
        all_open.as_secs_f64() / 0.1
    );
}

/// One producer, `Durability::None`, `n` records of `record_bytes`; bytes/s of payload.
fn ringlog_unsynced(dir: &Path, io: IoBackend, record_bytes: usize, n: usize) -> f64 {
    let log = open(dir, Durability::None, io);
    let record = vec![0x42u8; record_bytes];
    let start = Instant::now();
    for _ in 0..n {
        log.append(&record).unwrap();
    }
    // Everything handed to the OS (not synced): wait for the writer to drain.
    while log.stats().bytes_written == 0 || log.stats().next_offset > written(&log) {
        std::thread::yield_now();
    }
    let rate = (n * record_bytes) as f64 / start.elapsed().as_secs_f64();
    log.close().unwrap();
    rate
}

fn written(log: &Log) -> u64 {
    // Under Durability::None readers see written records: the iterator's reach is the
    // written watermark.
    log.tail(1)
        .ok()
        .and_then(|v| v.last().map(|r| r.offset() + 1))
        .unwrap_or(0)
}

/// Scan of a log of `n` records of `record_bytes`; bytes/s of payload, checksums verified.
fn ringlog_scan(dir: &Path, record_bytes: usize, n: usize) -> f64 {
    {
        let log = open(dir, Durability::None, IoBackend::Auto);
        let record = vec![0x42u8; record_bytes];
        for _ in 0..n {
            log.append(&record).unwrap();
        }
        log.close().unwrap();
    }
    let log = open(dir, Durability::None, IoBackend::Auto);
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let mut bytes = 0usize;
        for rec in log.iter(0) {
            bytes += rec.unwrap().payload().len();
        }
        assert_eq!(bytes, n * record_bytes);
        best = best.max(bytes as f64 / start.elapsed().as_secs_f64());
    }
    best
}

/// memcpy of a buffer far larger than the CPU caches, as a scan's data is.
fn memcpy_bandwidth() -> f64 {
    let src = vec![0x42u8; 256 << 20];
    let mut dst = vec![0u8; 256 << 20];
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
        best = best.max(src.len() as f64 / start.elapsed().as_secs_f64());
    }
    best
}

/// Builds a log of `segments` full segments (closed cleanly), then times open.
fn open_time(dir: &Path, segments: usize, segment_bytes: u64) -> Duration {
    let opts = || {
        Options::default()
            .segment_bytes(segment_bytes)
            .durability(Durability::None)
    };
    {
        let log = Log::open(dir, opts()).unwrap();
        let record = vec![0x42u8; 1000];
        while log.stats().segments_count < segments as u64 {
            log.append(&record).unwrap();
        }
        log.close().unwrap();
    }
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let log = Log::open(dir, opts()).unwrap();
        best = best.min(start.elapsed());
        log.close().unwrap();
    }
    best
}

/// End-to-end latency of `followers` in-process followers: from a `Sync` append's return
/// to each follower yielding that record (negative when the follower, woken by the flush,
/// got there before the producer returned). Returns (deltas of every follower and record,
/// sorted, ns; append latencies, sorted, ns).
fn follow_latency(dir: &Path, io: IoBackend, followers: usize, n: usize) -> (Vec<i64>, Vec<u64>) {
    let log = Log::open(dir, Options::default().io(io)).expect("open");
    let record = vec![0x42u8; 100];
    let epoch = Instant::now();
    let handles: Vec<_> = (0..followers)
        .map(|_| {
            let mut follower = log.follow(0).expect("follow");
            std::thread::spawn(move || {
                let mut seen = Vec::with_capacity(n);
                for _ in 0..n {
                    follower.next().expect("record").expect("read");
                    seen.push(epoch.elapsed().as_nanos() as i64);
                }
                seen
            })
        })
        .collect();
    let mut returned = Vec::with_capacity(n);
    let mut append_ns = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        log.append(&record).unwrap();
        let done = epoch.elapsed().as_nanos() as i64;
        append_ns.push(t.elapsed().as_nanos() as u64);
        returned.push(done);
    }
    let mut deltas = Vec::with_capacity(n * followers);
    for handle in handles {
        let seen = handle.join().unwrap();
        // The first records are warm-up (threads starting, first mappings).
        deltas.extend(seen.iter().zip(&returned).skip(50).map(|(s, r)| s - r));
    }
    log.close().unwrap();
    deltas.sort_unstable();
    append_ns.sort_unstable();
    (deltas, append_ns)
}

/// One producer appending `n` records of 100 B under `Durability::None` and one follower
/// reading them as they are written. Returns (appends/s, records/s the follower yielded,
/// both from the start).
fn follow_rate(dir: &Path, io: IoBackend, n: usize) -> (f64, f64) {
    let log = open(dir, Durability::None, io);
    let record = vec![0x42u8; 100];
    let mut follower = log.follow(0).expect("follow");
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        for _ in 0..n {
            follower.next().expect("record").expect("read");
        }
        start.elapsed()
    });
    for _ in 0..n {
        log.append(&record).unwrap();
    }
    let appended = start.elapsed();
    log.sync().unwrap();
    let followed = reader.join().unwrap();
    log.close().unwrap();
    (
        n as f64 / appended.as_secs_f64(),
        n as f64 / followed.as_secs_f64(),
    )
}

/// `seek_time` on a log of `n` records of 100 B in 1 MiB segments, one record a
/// millisecond apart: latencies of `seeks` seeks to pseudo-random times (sorted, ns) and
/// the number of segments.
fn seek_time(dir: &Path, io: IoBackend, n: usize, seeks: usize) -> (Vec<u64>, usize) {
    let opts = Options::default()
        .io(io)
        .durability(Durability::None)
        .segment_bytes(1 << 20);
    let log = Log::open(dir, opts).expect("open");
    let record = vec![0x42u8; 100];
    let base = 1_600_000_000_000u64;
    for i in 0..n as u64 {
        log.append_at(base + i, &record).unwrap();
    }
    log.sync().unwrap();
    let segments = log.segments().unwrap().len();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut lat = Vec::with_capacity(seeks);
    for _ in 0..seeks {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let target = x % n as u64;
        let t = Instant::now();
        let found = log.seek_time(base + target).unwrap();
        lat.push(t.elapsed().as_nanos() as u64);
        assert_eq!(found, target);
    }
    log.close().unwrap();
    lat.sort_unstable();
    (lat, segments)
}

/// Consumer `commit` latency against one `pwrite` of 4 KiB + `fdatasync` in place on a
/// preallocated file, interleaved in one loop so both see the same disk. Sorted ns.
fn consumer_commits(dir: &Path, n: usize) -> (Vec<u64>, Vec<u64>) {
    std::fs::create_dir_all(dir).expect("create bench dir");
    let file = preallocated(&dir.join("consumer-baseline.dat"), 1 << 20);
    let block = vec![0x42u8; 4096];
    let log = Log::open(
        dir.join("consumers-log"),
        Options::default().segment_bytes(1 << 20),
    )
    .expect("open");
    log.append(b"one").expect("append");
    let consumer = log.consumer("bench").expect("consumer");
    let (mut ours, mut base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let t = Instant::now();
        file.write_all_at(&block, 0).unwrap();
        rustix::fs::fdatasync(&file).unwrap();
        base.push(t.elapsed().as_nanos() as u64);
        let t = Instant::now();
        consumer.commit((i % 2) as u64).expect("commit");
        ours.push(t.elapsed().as_nanos() as u64);
    }
    log.close().expect("close");
    ours.sort_unstable();
    base.sort_unstable();
    (ours, base)
}

/// Whether the section named `name` runs (`RINGLOG_BENCH_ONLY=scan,open` picks some).
fn wanted(name: &str) -> bool {
    std::env::var("RINGLOG_BENCH_ONLY").map_or(true, |only| only.split(',').any(|o| o == name))
}

fn row(name: &str, value: String, baseline: String, ratio: f64, target: &str) {
    println!("| {name} | {value} | {baseline} | {ratio:.2} | {target} |");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = bench_dir();
    let d = dir.path();
    let io = match std::env::var("RINGLOG_BENCH_IO").as_deref() {
        Ok("pwrite") => IoBackend::Pwrite,
        Ok("uring") => IoBackend::Uring,
        _ => IoBackend::Auto,
    };
    let fresh = |name: &str| -> PathBuf {
        let p = d.join(name);
        let _ = std::fs::remove_dir_all(&p);
        p
    };
    let secs = Duration::from_secs_f64(3.0 * scale().max(0.2));
    println!("| measure | ringlog | baseline | ratio | target |");
    println!("|---|---|---|---|---|");

    if wanted("latency") {
        let n = scaled(5000);
        let base = naive(d, 1024, n);
        let ours = ringlog_single(&fresh("single"), io, 1024, n);
        let us = |v: u64| format!("{:.1} µs", v as f64 / 1000.0);
        let (b50, b99) = (percentile(&base, 0.5), percentile(&base, 0.99));
        let (o50, o99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
        row(
            "1 producer, Sync, 1 KiB: p50",
            us(o50),
            us(b50),
            o50 as f64 / b50 as f64,
            "≤ 1.2",
        );
        row(
            "1 producer, Sync, 1 KiB: p99",
            us(o99),
            us(b99),
            o99 as f64 / b99 as f64,
            "≤ 2.0",
        );
    }
    if wanted("producers") {
        let base = naive(d, 1024, scaled(2000));
        let naive_rate = 1e9 / (base.iter().sum::<u64>() as f64 / base.len() as f64);
        for producers in [4usize, 16, 64] {
            let ceil = ceiling(d, 1024, producers, secs);
            let (rate, stats) =
                ringlog_many(&fresh("many"), io, Durability::Sync, 1024, producers, secs);
            row(
                &format!(
                    "{producers} producers, Sync, 1 KiB: records/s vs ceiling (recs/fsync {:.1})",
                    stats.records_per_fsync
                ),
                format!("{rate:.0}"),
                format!("{ceil:.0}"),
                rate / ceil,
                if producers == 64 { "≥ 0.8" } else { "-" },
            );
            row(
                &format!("{producers} producers, Sync, 1 KiB: vs naive"),
                format!("{rate:.0}"),
                format!("{naive_rate:.0}"),
                rate / naive_rate,
                if producers == 64 { "≥ 30" } else { "-" },
            );
        }
    }
    if wanted("topics") {
        // Group commit across topics: each producer on its own topic of one store,
        // against all of them on one topic, in the same run.
        let (one, _) = store_many(&fresh("store-one"), io, false, 16, secs);
        let (own, stats) = store_many(&fresh("store-own"), io, true, 16, secs);
        let per_cycle = if stats.flush_cycles == 0 {
            0.0
        } else {
            stats.cycle_fsyncs as f64 / stats.flush_cycles as f64
        };
        row(
            &format!(
                "16 producers, Sync, 1 KiB, each on its own topic vs all on one (flush cycles {}, fdatasyncs per cycle {per_cycle:.1}, writer turns for one topic {})",
                stats.flush_cycles, stats.commits_alone
            ),
            format!("{own:.0}"),
            format!("{one:.0}"),
            own / one,
            "≥ 0.6",
        );
    }
    if wanted("small-topics") {
        small_topics(&fresh("small-topics"), scaled(1000).max(100));
    }
    if wanted("bandwidth") {
        let bw = disk_bandwidth(d, 512 << 20);
        let (rate, stats) = ringlog_many(&fresh("big"), io, Durability::Sync, 16 << 10, 64, secs);
        row(
            &format!(
                "64 producers, Sync, 16 KiB: MB/s vs disk (recs/fsync {:.1})",
                stats.records_per_fsync
            ),
            format!("{:.0}", rate * 16384.0 / 1e6),
            format!("{:.0}", bw / 1e6),
            rate * 16384.0 / bw,
            "≥ 0.7",
        );
    }
    if wanted("unsynced") {
        let pc = page_cache_bandwidth(d, 1 << 30);
        let unsynced = ringlog_unsynced(&fresh("none"), io, 100, scaled(5_000_000));
        row(
            "None, 1 producer, 100 B: MB/s vs page cache",
            format!("{:.0}", unsynced / 1e6),
            format!("{:.0}", pc / 1e6),
            unsynced / pc,
            "≥ 0.3",
        );
    }
    if wanted("scan") {
        let memcpy = memcpy_bandwidth();
        for (record_bytes, n, target) in [
            (100usize, scaled(2_000_000), "≥ 0.3"),
            (16 << 10, scaled(20_000), "≥ 0.6"),
        ] {
            let scan = ringlog_scan(&fresh("scan"), record_bytes, n);
            row(
                &format!("scan {record_bytes} B records: MB/s vs memcpy"),
                format!("{:.0}", scan / 1e6),
                format!("{:.0}", memcpy / 1e6),
                scan / memcpy,
                target,
            );
        }
    }
    if wanted("preallocate") {
        for mode in [
            ringlog::Preallocate::ZeroFill,
            ringlog::Preallocate::Fallocate,
        ] {
            let opts = Options::default().io(io).preallocate(mode);
            let path = fresh("prealloc");
            let start = Instant::now();
            drop(Log::open(&path, opts.clone()).unwrap());
            let prepare = start.elapsed();
            let lat = ringlog_single_with(&path, opts, 1024, scaled(3000));
            println!(
                "| preallocate {mode:?}: open of a new 64 MiB log {:.1} ms; 1 KiB Sync append p50 {:.1} µs p99 {:.1} µs | | | | |",
                prepare.as_secs_f64() * 1e3,
                percentile(&lat, 0.5) as f64 / 1e3,
                percentile(&lat, 0.99) as f64 / 1e3
            );
        }
    }
    if wanted("follow") {
        let us = |v: i64| format!("{:.1} µs", v as f64 / 1000.0);
        for followers in [1usize, 8] {
            let (deltas, append_ns) =
                follow_latency(&fresh("follow-latency"), io, followers, scaled(3000));
            let p = |q: f64| deltas[((deltas.len() as f64 * q) as usize).min(deltas.len() - 1)];
            println!(
                "| {followers} follower(s), Sync, 100 B: append return -> follower yields it, p50 {} p99 {} (append itself p50 {} p99 {}) | | | | p50 ≤ 50 µs above the flush |",
                us(p(0.5)),
                us(p(0.99)),
                us(percentile(&append_ns, 0.5) as i64),
                us(percentile(&append_ns, 0.99) as i64),
            );
        }
        let (append_rate, follow_rate) = follow_rate(&fresh("follow-rate"), io, scaled(10_000_000));
        row(
            "None, 1 producer + 1 follower, 100 B: follower records/s vs append rate",
            format!("{follow_rate:.0}"),
            format!("{append_rate:.0}"),
            follow_rate / append_rate,
            "≥ 0.9",
        );
        let (lat, segments) = seek_time(&fresh("seek-time"), io, scaled(500_000), 10_000);
        println!(
            "| seek_time, {segments} segments of 1 MiB, 100 B records: p50 {:.1} µs p99 {:.1} µs | | | | ≤ 20 µs (10 GiB log) |",
            percentile(&lat, 0.5) as f64 / 1e3,
            percentile(&lat, 0.99) as f64 / 1e3
        );
    }
    if wanted("consumers") {
        let (ours, base) = consumer_commits(&fresh("consumers"), scaled(2000));
        let us = |v: u64| format!("{:.1} µs", v as f64 / 1000.0);
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            let (o, b) = (percentile(&ours, p), percentile(&base, p));
            row(
                &format!("consumer commit vs 4 KiB pwrite+fdatasync: {label}"),
                us(o),
                us(b),
                o as f64 / b as f64,
                if p == 0.5 { "≤ 1.2" } else { "-" },
            );
        }
    }
    if wanted("open") {
        let small = open_time(&fresh("open-small"), 3, 1 << 20);
        let large = open_time(&fresh("open-large"), 30, 1 << 20);
        row(
            "open time, 30 vs 3 segments",
            format!("{:.2} ms", large.as_secs_f64() * 1e3),
            format!("{:.2} ms", small.as_secs_f64() * 1e3),
            large.as_secs_f64() / small.as_secs_f64(),
            "≤ 1.5",
        );
    }
}
