//! A follower in another process: a read-only handle's follower in a child process
//! while a writer process appends, is killed (`SIGKILL`) and restarted 20 times. The
//! follower waits on the writer's control file (no polling) and must see every record
//! once, in order, exactly as the log holds it at the end, and never crash (no SIGBUS).
//!
//! `RINGLOG_FOLLOW_KILLS` (default 20) sets the number of writer kills.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringlog::{Log, Options};

const DIR_ENV: &str = "RINGLOG_FOLLOW_DIR";
const GENERATION_ENV: &str = "RINGLOG_FOLLOW_GENERATION";
/// The payload that ends the follower.
const END: &[u8] = b"end";

fn options() -> Options {
    // Small segments: the writer rolls over many times while followed.
    Options::default().segment_bytes(64 << 10)
}

/// The writer child: appends until killed (or, for generation 0, appends the end
/// marker and exits).
#[test]
#[ignore = "child process of a_follower_in_another_process_survives_writer_kills"]
fn follow_process_writer_child() {
    let dir = std::env::var(DIR_ENV).expect("dir");
    let generation: u64 = std::env::var(GENERATION_ENV)
        .expect("generation")
        .parse()
        .expect("number");
    let log = Log::open(&dir, options()).expect("writer open");
    if generation == 0 {
        log.append(END).expect("append end");
        log.close().expect("close");
        return;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "open").unwrap();
    stdout.flush().unwrap();
    for i in 0u64.. {
        let payload = format!(
            "gen {generation} record {i} {}",
            "x".repeat((i % 300) as usize)
        );
        if i % 7 == 3 {
            let second = format!("{payload} second");
            log.append_batch(&[payload.as_bytes(), second.as_bytes()])
                .expect("batch");
        } else {
            log.append(payload.as_bytes()).expect("append");
        }
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The follower child: follows from 0 and prints each record's offset and payload
/// length until the end marker.
#[test]
#[ignore = "child process of a_follower_in_another_process_survives_writer_kills"]
fn follow_process_follower_child() {
    let dir = std::env::var(DIR_ENV).expect("dir");
    let log = Log::open_read_only(&dir, options()).expect("read-only open");
    let mut follower = log.follow(0).expect("follow");
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for record in &mut follower {
        let record = record.expect("follow");
        // Marked: the test harness prints its own words on the same line first.
        writeln!(
            out,
            "followed {} {}",
            record.offset(),
            crc32(record.payload())
        )
        .unwrap();
        if record.payload() == END {
            break;
        }
    }
    out.flush().unwrap();
}

fn crc32(bytes: &[u8]) -> u32 {
    // FNV-1a: enough to tell payloads apart in a test.
    let mut h = 0x811c_9dc5u32;
    for b in bytes {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    h
}

fn child(test: &str, dir: &Path, generation: u64) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DIR_ENV, dir)
        .env(GENERATION_ENV, generation.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

#[test]
fn a_follower_in_another_process_survives_writer_kills() {
    let kills: u64 = std::env::var("RINGLOG_FOLLOW_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    // The log exists before the follower opens it; the writer made its control file.
    Log::open(dir.path(), options()).unwrap().close().unwrap();
    assert!(dir.path().join("ringlog.control").exists());
    let mut follower = child("follow_process_follower_child", dir.path(), 0);
    let follower_out = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(follower_out).lines() {
            let line = line.unwrap();
            let Some(at) = line.find("followed ") else {
                continue;
            };
            let mut parts = line[at + "followed ".len()..].split(' ');
            let (Some(offset), Some(crc)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let (Ok(offset), Ok(crc)) = (offset.parse::<u64>(), crc.parse::<u32>()) {
                seen.push((offset, crc));
            }
        }
        seen
    });
    let started = Instant::now();
    for generation in 1..=kills {
        let mut writer = child("follow_process_writer_child", dir.path(), generation);
        let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
        // Opened (recovered): now let it append for a while, then kill it.
        let _ = lines.next();
        std::thread::sleep(Duration::from_millis(20 + (generation * 37) % 80));
        writer.kill().unwrap();
        writer.wait().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "took too long"
        );
    }
    // The last writer appends the end marker and closes.
    let mut last = child("follow_process_writer_child", dir.path(), 0);
    assert!(last.wait().unwrap().success(), "the last writer failed");
    let status = follower.wait().unwrap();
    assert!(status.success(), "the follower process failed: {status:?}");
    let seen = reader.join().unwrap();

    // Every record of the log, once, in order, as the log holds it.
    let log = Log::open_read_only(dir.path(), options()).unwrap();
    let held: Vec<(u64, u32)> = log
        .iter(0)
        .map(|r| {
            let r = r.unwrap();
            (r.offset(), crc32(r.payload()))
        })
        .collect();
    assert!(
        held.len() > kills as usize,
        "the writers appended {} records",
        held.len()
    );
    assert_eq!(
        seen.len(),
        held.len(),
        "the follower saw {} records, the log holds {}",
        seen.len(),
        held.len()
    );
    for (i, (got, want)) in seen.iter().zip(&held).enumerate() {
        assert_eq!(
            got, want,
            "record {i}: followed {got:?}, the log holds {want:?}"
        );
    }
    println!(
        "follower in another process: {} records followed across {kills} writer kills, every one once, in order",
        seen.len()
    );
}
