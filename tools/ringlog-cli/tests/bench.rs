//! `bench`: sizes checked before anything is allocated, fsyncs of the run itself, an
//! existing log's segment size kept, a file given as DIR, and Ctrl-C.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, build_log, one_error_line, ringlog, ringlog_command, Run};
use ringlog::{Log, Options};

/// Runs `ringlog bench ARGS` with `TMPDIR` set to `tmp` and `RUST_BACKTRACE=1`.
fn bench_in_tmp(tmp: &Path, args: &[&str]) -> Run {
    let output = ringlog_command()
        .arg("bench")
        .args(args)
        .env("TMPDIR", tmp)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn left_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn record_sizes_past_the_limit_are_refused_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    for size in ["100GiB", "2GiB", "4194305"] {
        let started = Instant::now();
        let run = bench_in_tmp(tmp.path(), &["--record-size", size, "--records", "1"]);
        let line = one_error_line(&run, 2);
        assert!(
            line.contains("--record-size") && line.contains("4194304 bytes"),
            "{size}: {line}"
        );
        assert!(!run.stderr.contains("backtrace"), "{size}: {run:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{size}: refused only after {:?}",
            started.elapsed()
        );
        assert_eq!(
            left_in(tmp.path()),
            Vec::<std::path::PathBuf>::new(),
            "{size}"
        );
    }
    // The limit depends on the segment size: what fits after the header and a marker.
    let run = bench_in_tmp(
        tmp.path(),
        &[
            "--record-size",
            "65409",
            "--segment-size",
            "64KiB",
            "--records",
            "1",
        ],
    );
    let line = one_error_line(&run, 2);
    assert!(line.contains("65408 bytes"), "{line}");
    let run = bench_in_tmp(
        tmp.path(),
        &[
            "--record-size",
            "65408",
            "--segment-size",
            "64KiB",
            "--records",
            "3",
            "--producers",
            "1",
            "--io",
            "pwrite",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("3 records sent"), "{run:?}");
    assert_eq!(left_in(tmp.path()), Vec::<std::path::PathBuf>::new());
}

/// `N fsyncs` and `X records per fsync` from the text summary.
fn text_fsyncs(stdout: &str) -> (u64, Option<f64>) {
    let line = stdout.lines().nth(1).unwrap();
    let (fsyncs, rest) = line.split_once(" fsyncs").unwrap();
    let per_fsync = rest
        .strip_prefix(", ")
        .and_then(|r| r.split_once(" records per fsync"))
        .map(|(n, _)| n.parse().unwrap());
    (fsyncs.parse().unwrap(), per_fsync)
}

#[test]
fn fsyncs_are_those_of_the_run_and_multiply_back_to_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    // Few small records under `none`: nothing is flushed during the run.
    let small = [
        "--durability",
        "none",
        "--records",
        "100",
        "--record-size",
        "100",
        "--producers",
        "2",
        "--io",
        "pwrite",
    ];
    let run = bench_in_tmp(tmp.path(), &small);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(text_fsyncs(&run.stdout), (0, None), "{run:?}");
    let run = bench_in_tmp(tmp.path(), &[&small[..], &["--json"]].concat());
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["fsyncs"], 0, "{summary}");
    assert_eq!(summary["records_per_fsync"], serde_json::Value::Null);

    // 20 MB under `none` with 1 MiB segments: rollovers and background flushes.
    for durability in ["none", "sync"] {
        let many = [
            "--durability",
            durability,
            "--records",
            "20000",
            "--record-size",
            "1000",
            "--segment-size",
            "1MiB",
            "--producers",
            "4",
            "--io",
            "pwrite",
        ];
        let run = bench_in_tmp(tmp.path(), &[&many[..], &["--json"]].concat());
        assert_eq!(run.code, 0, "{run:?}");
        let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let fsyncs = summary["fsyncs"].as_u64().unwrap();
        assert!(fsyncs > 0, "{durability}: {summary}");
        let per_fsync = summary["records_per_fsync"].as_f64().unwrap();
        assert!(
            (per_fsync * fsyncs as f64 - 20000.0).abs() < 0.5,
            "{durability}: {fsyncs} fsyncs x {per_fsync} records per fsync is not 20000"
        );
        let run = bench_in_tmp(tmp.path(), &many);
        assert_eq!(run.code, 0, "{run:?}");
        let (fsyncs, per_fsync) = text_fsyncs(&run.stdout);
        let per_fsync = per_fsync.unwrap();
        assert!(
            (per_fsync * fsyncs as f64 - 20000.0).abs() <= 0.05 * fsyncs as f64 + 0.5,
            "{durability}: {}",
            run.stdout
        );
    }
}

#[test]
fn bench_into_an_existing_log_keeps_its_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 10); // 64 KiB segments
    let args = [
        "bench",
        arg(dir.path()),
        "--records",
        "2000",
        "--producers",
        "2",
        "--record-size",
        "100",
        "--io",
        "pwrite",
        "--durability",
        "none",
        "--json",
    ];
    let run = ringlog(&args);
    assert_eq!(run.code, 0, "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["segment_bytes"], 64 << 10, "{summary}");
    let log = Log::open_read_only(dir.path(), Options::default()).unwrap();
    let segments = log.segments().unwrap();
    assert!(segments.len() > 2, "rolled over: {segments:?}");
    for segment in segments {
        assert_eq!(segment.segment_bytes, 64 << 10, "{segment:?}");
    }
    for file in common::segment_files(dir.path()) {
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            64 << 10,
            "{file:?}"
        );
    }

    // --segment-size still changes it for new segments.
    let run = ringlog(&[&args[..], &["--segment-size", "128KiB"]].concat());
    assert_eq!(run.code, 0, "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["segment_bytes"], 128 << 10, "{summary}");
}

#[test]
fn a_regular_file_as_dir_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.txt");
    std::fs::write(&file, b"not a log\n").unwrap();
    for args in [
        vec!["bench", arg(&file), "--records", "1"],
        vec!["append", arg(&file)],
    ] {
        let line = one_error_line(&ringlog(&args), 2);
        assert!(
            line.contains(&format!("{} is not a directory", file.display())),
            "{args:?}: {line}"
        );
        assert!(!line.contains("os error 17"), "{args:?}: {line}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a log\n");
}

/// Sends `signal` (e.g. "INT") to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn interrupted_bench_removes_its_temporary_directory() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = ringlog_command()
            .args([
                "bench",
                "--duration",
                "60s",
                "--producers",
                "2",
                "--record-size",
                "100",
                "--segment-size",
                "1MiB",
                "--io",
                "pwrite",
            ])
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first stderr line comes once the log is open and the producers start.
        let mut stderr = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\n") {
            assert_eq!(stderr.read(&mut byte).unwrap(), 1, "bench ended early");
            seen.push(byte[0]);
        }
        assert_eq!(left_in(tmp.path()).len(), 1, "the temporary log is there");
        std::thread::sleep(Duration::from_millis(300));
        send_signal(child.id(), signal);
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}: {rest}");
        assert!(
            rest.contains(&format!("interrupted by SIG{signal}")),
            "{signal}: {rest}"
        );
        assert!(stdout.contains(" records sent, "), "{signal}: {stdout}");
        assert_eq!(
            left_in(tmp.path()),
            Vec::<std::path::PathBuf>::new(),
            "{signal}: the temporary log was left behind"
        );
    }
}
