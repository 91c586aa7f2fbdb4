//! W3's append path alone, for profiling (callgrind, perf): N 100-byte records from one
//! producer under `Durability::None`, then one `sync()`, then every record read back and
//! checked. `W3_MAPPED=1` turns on `Options::mapped_writes`, `W3_FALLOCATE=1` uses
//! `Preallocate::Fallocate`, `W3_SEGMENT_MB` sets the segment size (default 64),
//! `W3_VERIFY=0` skips the read-back.
//!
//! ```text
//! cargo run --release --example w3_profile -- DIR [N=1000000]
//! valgrind --tool=callgrind target/release/examples/w3_profile /tmp/w3 300000
//! ```
use std::time::Instant;

fn main() -> ringlog::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/tmp/w3-profile".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let _ = std::fs::remove_dir_all(&dir);
    let log = ringlog::Log::open(
        &dir,
        ringlog::Options::default().durability(ringlog::Durability::None),
    )?;
    let payload = [7u8; 100];
    let start = Instant::now();
    for _ in 0..n {
        log.append(&payload)?;
    }
    let appended = start.elapsed();
    log.sync()?;
    let total = start.elapsed();
    println!(
        "{n} appends: {:.2} M/s append-only, {:.2} M/s incl. sync ({:.0} MB/s)",
        n as f64 / appended.as_secs_f64() / 1e6,
        n as f64 / total.as_secs_f64() / 1e6,
        n as f64 * 100.0 / total.as_secs_f64() / 1e6
    );
    if std::env::var("W3_VERIFY").as_deref() == Ok("0") {
        return log.close();
    }
    let expected = n;
    let mut seen = 0u64;
    for record in log.iter(0) {
        let record = record?;
        assert_eq!(record.payload(), &payload[..]);
        seen += 1;
    }
    assert_eq!(seen, expected, "records read back");
    log.close()
}
