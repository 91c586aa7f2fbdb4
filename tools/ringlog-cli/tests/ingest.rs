//! `append`, `tail -f` following another process, and `bench`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{arg, ringlog, ringlog_command, ringlog_with_stdin};
use ringlog::{Log, Options};

fn read_all(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let log = Log::open_read_only(dir, Options::default()).unwrap();
    log.iter(log.first_offset())
        .map(|r| r.unwrap().payload().to_vec())
        .collect()
}

#[test]
fn append_takes_lines_from_stdin_and_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let run = ringlog_with_stdin(
        &["append", arg(&log_dir), "--segment-size", "64KiB"],
        b"alpha\r\n\nbeta\xff\ngamma",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "appended 4 records: offsets 0..4 (durable)\n");
    assert_eq!(
        run.stderr, "",
        "no progress bar when stderr is not a terminal"
    );

    let input = dir.path().join("input.txt");
    let lines: Vec<String> = (0..1000)
        .map(|i| format!("line {i} {}", "y".repeat(90)))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let run = ringlog(&[
        "append",
        arg(&log_dir),
        "--file",
        arg(&input),
        "--batch",
        "64",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "appended 1000 records: offsets 4..1004 (durable)\n"
    );

    let records = read_all(&log_dir);
    assert_eq!(records.len(), 1004);
    assert_eq!(
        records[..4],
        [
            b"alpha".to_vec(),
            vec![],
            b"beta\xff".to_vec(),
            b"gamma".to_vec()
        ]
    );
    assert_eq!(records[1003], lines[999].as_bytes());
    let log = Log::open_read_only(&log_dir, Options::default()).unwrap();
    let segments = log.segments().unwrap();
    assert!(segments.len() > 1, "rolled over");
    assert!(
        segments.iter().all(|s| s.segment_bytes == 64 << 10),
        "kept the log's size"
    );

    let run = ringlog(&["append", arg(&log_dir)]);
    assert_eq!(
        run.stdout,
        "appended 0 records (the log's next offset is 1004)\n"
    );
}

#[test]
fn tail_follow_prints_records_another_process_appends() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path(), Options::default().segment_bytes(64 << 10))
        .unwrap()
        .close()
        .unwrap();
    let mut tail = ringlog_command()
        .args([
            "tail",
            arg(dir.path()),
            "-f",
            "--json",
            "--poll-interval",
            "10ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });

    // Another process appends, across several segment rollovers.
    let records: Vec<String> = (0..2000)
        .map(|i| format!("followed-{i:04}-{}", "z".repeat(40)))
        .collect();
    let run = ringlog_with_stdin(
        &["append", arg(dir.path())],
        (records.join("\n") + "\n").as_bytes(),
    );
    assert_eq!(run.code, 0, "{run:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < records.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => seen.push(serde_json::from_str::<serde_json::Value>(&line).unwrap()),
            Err(_) => break,
        }
    }
    tail.kill().unwrap();
    tail.wait().unwrap();
    assert_eq!(
        seen.len(),
        records.len(),
        "tail -f saw only {} records",
        seen.len()
    );
    for (i, record) in seen.iter().enumerate() {
        assert_eq!(record["offset"], i as u64);
        assert_eq!(record["payload"], records[i].as_str());
    }
}

#[test]
fn bench_into_a_directory_prints_a_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = ringlog(&[
        "bench",
        arg(dir.path()),
        "--records",
        "400",
        "--producers",
        "4",
        "--record-size",
        "100",
        "--segment-size",
        "1MiB",
        "--io",
        "pwrite",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["records"], 400);
    assert_eq!(summary["record_bytes"], 100);
    assert_eq!(summary["producers"], 4);
    assert_eq!(summary["durability"], "sync");
    assert_eq!(summary["backend"], "pwritev");
    assert!(summary["fsyncs"].as_u64().unwrap() > 0);
    assert!(summary["records_per_fsync"].as_f64().unwrap() >= 1.0);
    let percentiles: Vec<u64> = [
        "latency_ns_p50",
        "latency_ns_p95",
        "latency_ns_p99",
        "latency_ns_p999",
        "latency_ns_max",
    ]
    .iter()
    .map(|key| summary[key].as_u64().unwrap())
    .collect();
    assert!(
        percentiles.windows(2).all(|w| w[0] <= w[1]),
        "{percentiles:?}"
    );
    assert!(summary["records_per_sec"].as_f64().unwrap() > 0.0);
    assert!(
        run.stderr
            .starts_with("bench: 4 producers, 100-byte records"),
        "{run:?}"
    );
    assert_eq!(
        read_all(dir.path()).len(),
        400,
        "the records are in the log"
    );
}

#[test]
fn bench_without_a_directory_uses_and_removes_a_temporary_one() {
    let tmp = tempfile::tempdir().unwrap();
    let output = ringlog_command()
        .args([
            "bench",
            "--duration",
            "400ms",
            "--producers",
            "2",
            "--record-size",
            "0.5KiB",
            "--segment-size",
            "1MiB",
            "--durability",
            "interval:1ms",
        ])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(" records sent, "), "{stdout}");
    assert!(stdout.contains(" 99.9th."), "{stdout}");
    assert!(
        stdout.contains("durability interval:1ms, 2 producers, 512-byte records"),
        "{stdout}"
    );
    assert!(stderr.contains("(temporary)"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the temporary log was not removed: {left:?}"
    );
}

#[test]
fn an_oversized_line_halfway_names_its_line_and_what_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let input = dir.path().join("input.txt");
    let mut text = b"one\ntwo\nthree\n".to_vec();
    text.extend(vec![b'x'; 5 << 20]);
    text.extend(b"\nfive\n");
    std::fs::write(&input, &text).unwrap();
    let run = ringlog(&["append", arg(&log_dir), "--file", arg(&input)]);
    let line = common::one_error_line(&run, 2);
    assert!(line.contains("line 4 of the input"), "{line}");
    assert!(
        line.contains("exceeds the limit of 4194304 bytes"),
        "{line}"
    );
    assert!(
        line.contains("3 records are durable: offsets 0..3 (input lines 1 to 3)"),
        "{line}"
    );
    assert!(line.contains("resume from input line 4"), "{line}");
    assert_eq!(
        read_all(&log_dir),
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

#[test]
fn an_oversized_batch_says_batch_and_suggests_a_smaller_one() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let input = dir.path().join("input.txt");
    // 40 lines of 1000 bytes fit in a 64 KiB segment; 100 do not.
    let lines: Vec<String> = (0..300)
        .map(|i| format!("{i:04}{}", "b".repeat(996)))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let run = ringlog(&[
        "append",
        arg(&log_dir),
        "--segment-size",
        "64KiB",
        "--file",
        arg(&input),
        "--batch",
        "40",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = ringlog(&[
        "append",
        arg(&log_dir),
        "--file",
        arg(&input),
        "--batch",
        "100",
    ]);
    let line = common::one_error_line(&run, 2);
    assert!(line.contains("batch of input lines 1 to 100"), "{line}");
    assert!(line.contains("use a smaller --batch"), "{line}");
    assert!(
        line.contains("nothing from this input is durable (the log's next offset is 300)"),
        "{line}"
    );
    assert_eq!(read_all(&log_dir).len(), 300);
}

#[test]
fn interrupted_append_reports_what_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let fifo = dir.path().join("input.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let child = ringlog_command()
        .args(["append", arg(&log_dir), "--file", arg(&fifo)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The writer end stays open, so `append` waits for more input after these lines.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let lines: String = (1..=100).map(|i| format!("event {i}\n")).collect();
    std::io::Write::write_all(&mut writer, lines.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let durable = Log::open_read_only(&log_dir, Options::default())
            .map(|log| log.next_offset())
            .unwrap_or(0);
        if durable == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "the lines were not appended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    drop(writer);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(
        stderr.contains("100 records are durable: offsets 0..100 (input lines 1 to 100)"),
        "{stderr}"
    );
    assert!(stderr.contains("resume from input line 101"), "{stderr}");
    assert_eq!(read_all(&log_dir).len(), 100);
}

/// Unmounts the tmpfs when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_halfway_reports_what_is_durable() {
    let mountpoint = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs"])
        .arg(mountpoint.path())
        .stderr(Stdio::null())
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        println!(
            "a_full_disk_halfway_reports_what_is_durable: SKIP: cannot mount a tmpfs (needs root)"
        );
        return;
    }
    let _unmount = Unmount(mountpoint.path().to_path_buf());
    let log_dir = mountpoint.path().join("log");
    let input_dir = tempfile::tempdir().unwrap();
    let input = input_dir.path().join("input.txt");
    // 2 MB of lines into 512 KiB of disk.
    let lines: String = (1..=4000)
        .map(|i| format!("{i:06} {}\n", "e".repeat(490)))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let run = ringlog(&[
        "append",
        arg(&log_dir),
        "--segment-size",
        "64KiB",
        "--file",
        arg(&input),
    ]);
    let line = common::one_error_line(&run, 2);
    assert!(line.contains("free some disk space"), "{line}");
    let durable = Log::open_read_only(&log_dir, Options::default())
        .unwrap()
        .next_offset();
    assert!(durable > 0 && durable < 4000, "{durable}: {line}");
    assert!(
        line.contains(&format!(
            "{durable} records are durable: offsets 0..{durable} (input lines 1 to {durable}); resume from input line {}",
            durable + 1
        )),
        "{line}"
    );
    let records = read_all(&log_dir);
    assert_eq!(records.len() as u64, durable);
    assert!(records
        .last()
        .unwrap()
        .starts_with(format!("{durable:06} ").as_bytes()));
}
