//! `verify` and `repair` beside a writer in another process (`ringlog append` fed from a
//! pipe): verify reports nothing a quiescent log would not have, repair refuses.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{arg, one_error_line, ringlog, ringlog_command, snapshot};

/// A `ringlog append DIR` process and the pipe that feeds it.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Writer {
    /// Starts `ringlog append DIR --segment-size 64KiB` and waits until it holds the lock.
    fn start(dir: &Path) -> Writer {
        let child = ringlog_command()
            .args(["append", arg(dir), "--segment-size", "64KiB"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringlog append");
        let mut writer = Writer { stdin: None, child };
        writer.stdin = writer.child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ringlog::lock_holder(dir).ok().flatten() != Some(writer.child.id()) {
            assert!(Instant::now() < deadline, "the writer never took the lock");
            std::thread::sleep(Duration::from_millis(5));
        }
        writer
    }

    /// Closes its input and checks it appended and exited cleanly.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let output = self.child.wait_with_output().expect("wait for the writer");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "writer failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

#[test]
fn verify_beside_a_running_writer_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::start(dir.path());
    let mut input = writer.stdin.take().expect("the writer's stdin");
    let stop = Arc::new(AtomicBool::new(false));
    // Feeds lines in bursts, so the log rolls over a 64 KiB segment every few tens of
    // milliseconds without growing past what a debug build verifies quickly.
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let burst: String = (0..40)
                .map(|i| format!("some event {i:03} {}\n", "z".repeat(80)))
                .collect();
            let mut bursts_count = 0u64;
            while !stop.load(Ordering::Relaxed) && bursts_count < 20_000 {
                input.write_all(burst.as_bytes()).expect("feed the writer");
                bursts_count += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            bursts_count
        })
    };
    // The writer creates the log when it starts: verify a log, not its absence.
    let created = Instant::now();
    while !std::fs::read_dir(dir.path())
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .unwrap_or(false)
    {
        assert!(
            created.elapsed() < Duration::from_secs(30),
            "the writer never created the log"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let mut runs_count = 0;
    let mut failures = Vec::new();
    // Spread over about three seconds of rollovers, and bounded both ways: at most 100
    // runs, and none starts after 6 seconds.
    while runs_count < 100 && started.elapsed() < Duration::from_secs(6) {
        let run = ringlog(&["verify", arg(dir.path())]);
        runs_count += 1;
        if run.code != 0 {
            failures.push(run);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    stop.store(true, Ordering::Relaxed);
    let bursts_count = feeder.join().expect("feeder");
    let summary = writer.finish();
    let records_count = bursts_count * 40;
    assert_eq!(
        summary,
        format!("appended {records_count} records: offsets 0..{records_count} (durable)\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {runs_count} verify runs beside the writer reported problems; the first: {:?}",
        failures.len(),
        failures[0]
    );
    let segments_count = common::segment_files(dir.path()).len();
    assert!(
        segments_count >= 10,
        "the writer rolled over only {segments_count} segments: the test proves little"
    );
    // And the quiescent log is clean and whole.
    let run = ringlog(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("records (offsets 0..{records_count})")),
        "{run:?}"
    );
}

#[test]
fn repair_beside_a_running_writer_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::start(dir.path());
    let mut input = writer.stdin.take().expect("the writer's stdin");
    input.write_all(b"one\ntwo\nthree\n").unwrap();
    input.flush().unwrap();
    // Let the writer append and checkpoint: the log is undamaged.
    std::thread::sleep(Duration::from_millis(300));
    let pid = writer.child.id();
    let before = snapshot(dir.path());
    for args in [
        vec!["repair", arg(dir.path()), "--dry-run"],
        vec!["repair", arg(dir.path())],
    ] {
        let run = ringlog(&args);
        let line = one_error_line(&run, 2);
        assert!(line.contains("locked by another writer"), "{line}");
        assert!(line.contains(&format!("(pid {pid})")), "{line}");
    }
    assert_eq!(snapshot(dir.path()), before, "repair touched a live log");
    drop(input);
    assert_eq!(
        writer.finish(),
        "appended 3 records: offsets 0..3 (durable)\n"
    );
}
