//! End-to-end latency from a `Sync` append's return to a follower yielding it, with the
//! follower in this process and in another one (a read-only handle, woken through the
//! writer's control file). Prints p50 / p99 for each, and the append latency itself.
//!
//! ```text
//! cargo run --release --example follow_latency -- [RECORDS=5000]
//! ```
//!
//! Times are `CLOCK_MONOTONIC`, the same clock in both processes: the writer stores each
//! append's return time in a shared array (a file on /dev/shm), the child its yield times.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringlog::{Durability, Log, Options};

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1e3
}

/// The child: follows the log read-only from 0 and prints "offset yield_ns" per record.
fn child(dir: &str, records: u64) {
    let log = Log::open_read_only(dir, Options::default()).expect("open read-only");
    let mut follower = log.follow(0).expect("follow");
    let mut out = Vec::with_capacity(records as usize);
    while (out.len() as u64) < records {
        let record = follower.next().expect("follower ended").expect("record");
        out.push((record.offset(), now_ns()));
    }
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    for (offset, t) in out {
        writeln!(lock, "{offset} {t}").unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2], args[3].parse().expect("records"));
    }
    let records: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let root = tempfile::tempdir_in(".").expect("tempdir");
    let dir = root.path().join("log");
    let log = Log::open(
        &dir,
        Options::default()
            .segment_bytes(64 << 20)
            .durability(Durability::Sync),
    )
    .expect("open");
    log.append(b"warm-up").expect("append");
    let base = log.next_offset();
    // The in-process follower.
    let mut follower = log.follow(base).expect("follow");
    let local = std::thread::spawn(move || {
        let mut seen = Vec::with_capacity(records as usize);
        while (seen.len() as u64) < records {
            let record = follower.next().expect("ended").expect("record");
            seen.push((record.offset(), now_ns()));
        }
        seen
    });
    // The other process's follower.
    let mut remote = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--child",
            dir.to_str().expect("utf-8"),
            &(base + records).to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    let payload = vec![7u8; 100];
    let mut returned = vec![0u64; records as usize];
    let mut append_ns = Vec::with_capacity(records as usize);
    for slot in returned.iter_mut() {
        let started = Instant::now();
        log.append(&payload).expect("append");
        *slot = now_ns();
        append_ns.push(started.elapsed().as_nanos() as u64);
        // One append at a time, spaced: latency, not throughput.
        std::thread::sleep(Duration::from_micros(200));
    }
    let local = local.join().expect("local follower");
    let stdout = remote.stdout.take().expect("stdout");
    let mut remote_lat = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let mut words = line.split_whitespace();
        let offset: u64 = words.next().and_then(|w| w.parse().ok()).expect("offset");
        let t: u64 = words.next().and_then(|w| w.parse().ok()).expect("time");
        if offset >= base {
            remote_lat.push(t.saturating_sub(returned[(offset - base) as usize]));
        }
    }
    remote.wait().expect("child");
    let mut local_lat: Vec<u64> = local
        .iter()
        .map(|&(offset, t)| t.saturating_sub(returned[(offset - base) as usize]))
        .collect();
    local_lat.sort_unstable();
    remote_lat.sort_unstable();
    append_ns.sort_unstable();
    // A follower may yield before the producer's append returns (the flush wakes both):
    // those count as 0.
    println!(
        "{records} Sync appends of 100 B, 200 us apart: append p50 {:.1} us, p99 {:.1} us",
        percentile(&append_ns, 0.5),
        percentile(&append_ns, 0.99)
    );
    println!(
        "append return -> follower yields: in-process p50 {:.1} us, p99 {:.1} us; other process p50 {:.1} us, p99 {:.1} us ({} records)",
        percentile(&local_lat, 0.5),
        percentile(&local_lat, 0.99),
        percentile(&remote_lat, 0.5),
        percentile(&remote_lat, 0.99),
        remote_lat.len()
    );
}
