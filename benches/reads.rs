//! The read path alone, for profiling: a scan through `Log::iter` (and `Log::scan`), and
//! random reads through `Log::read`, over a log of small unsynced records (issue 14's W3
//! data: 100 B records). Prints nanoseconds per record; asserts that what it read is what
//! was appended.
//!
//! `cargo bench --bench reads` (10 M records); `RINGLOG_READS_RECORDS=200000` for a run
//! small enough for `valgrind --tool=callgrind`; `RINGLOG_READS_ONLY=scan|callback|read` for
//! one part; `RINGLOG_READS_INDEX_INTERVAL` to set `index_interval_bytes`; `RINGLOG_BENCH_DIR`
//! to choose the disk.

use std::time::Instant;

use ringlog::{Durability, Log, Options};

const RECORD_BYTES: usize = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Distinct payloads (prime, so a read of the wrong record is caught unless it is off by
/// a multiple of it); record `i` carries payload `i % POOL_LEN`, as in tools/bench-peers.
const POOL_LEN: usize = 1021;

struct Payloads(Vec<u8>);

impl Payloads {
    fn new() -> Payloads {
        let mut state = 0x5eedu64;
        Payloads(
            (0..POOL_LEN * RECORD_BYTES)
                .map(|_| b'A' + (next_random(&mut state) % 26) as u8)
                .collect(),
        )
    }

    fn get(&self, i: u64) -> &[u8] {
        &self.0[(i as usize % POOL_LEN) * RECORD_BYTES..][..RECORD_BYTES]
    }

    fn check(&self, i: u64, bytes: &[u8]) {
        assert!(
            self.get(i) == bytes,
            "record {i} does not hold what was appended"
        );
    }
}

/// CPU time of this thread: on a shared machine, steadier than the wall clock (time spent
/// waiting for a CPU is not counted; time waiting on memory is).
fn thread_cpu_ns() -> u128 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
}

/// xorshift64*: reproducible random offsets without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let records_count = env_u64("RINGLOG_READS_RECORDS", 10_000_000);
    let reads_count = env_u64("RINGLOG_READS_READS", (records_count / 10).max(1000));
    let only = std::env::var("RINGLOG_READS_ONLY").unwrap_or_default();
    let dir = match std::env::var_os("RINGLOG_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("tempdir"),
        None => tempfile::tempdir_in(".").expect("tempdir"),
    };
    let mut options = Options::default().durability(Durability::None);
    if let Ok(interval) = std::env::var("RINGLOG_READS_INDEX_INTERVAL") {
        options = options.index_interval_bytes(interval.parse().expect("a number of bytes"));
    }
    let log = Log::open(dir.path(), options.clone()).unwrap();
    let payloads = Payloads::new();
    for i in 0..records_count {
        log.append(payloads.get(i)).unwrap();
    }
    // Reopened, so the reads start on fresh mappings, as they do after appends.
    log.close().unwrap();
    let log = Log::open(dir.path(), options).unwrap();

    if only.is_empty() || only == "scan" {
        for round in 0..3 {
            let start = Instant::now();
            let cpu_start = thread_cpu_ns();
            let mut next = 0;
            for record in log.iter(0) {
                let record = record.unwrap();
                payloads.check(next, record.payload());
                next += 1;
            }
            assert_eq!(next, records_count);
            let ns = start.elapsed().as_nanos() as f64 / records_count as f64;
            let cpu_ns = (thread_cpu_ns() - cpu_start) as f64 / records_count as f64;
            println!(
                "iter, round {round}: {ns:.1} ns/record ({:.1} M records/s), CPU {cpu_ns:.1} ns/record",
                1e3 / ns
            );
        }
    }
    if only.is_empty() || only == "callback" {
        for round in 0..3 {
            let start = Instant::now();
            let cpu_start = thread_cpu_ns();
            let mut next = 0;
            log.scan(0, |record| {
                payloads.check(next, record.payload());
                next += 1;
                true
            })
            .unwrap();
            assert_eq!(next, records_count);
            let ns = start.elapsed().as_nanos() as f64 / records_count as f64;
            let cpu_ns = (thread_cpu_ns() - cpu_start) as f64 / records_count as f64;
            println!(
                "scan (callback), round {round}: {ns:.1} ns/record ({:.1} M records/s), CPU {cpu_ns:.1} ns/record",
                1e3 / ns
            );
        }
    }
    if only.is_empty() || only == "read" {
        for round in 0..3 {
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            let start = Instant::now();
            let cpu_start = thread_cpu_ns();
            for _ in 0..reads_count {
                let offset =
                    ((next_random(&mut state) as u128 * records_count as u128) >> 64) as u64;
                payloads.check(offset, log.read(offset).unwrap().payload());
            }
            let ns = start.elapsed().as_nanos() as f64 / reads_count as f64;
            let cpu_ns = (thread_cpu_ns() - cpu_start) as f64 / reads_count as f64;
            println!(
                "read, round {round}: {ns:.1} ns/read, CPU {cpu_ns:.1} ns/read ({reads_count} random reads)"
            );
        }
    }
    log.close().unwrap();
}
