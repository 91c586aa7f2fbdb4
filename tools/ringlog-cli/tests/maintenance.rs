//! `trim`, `truncate`, `backup` and what `info` says after them: dry runs change
//! nothing, cuts are refused beside a writer in another process (`ringlog append` fed
//! from a pipe, as in `tests/live.rs`), and backups taken beside it open and verify.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use common::{arg, build_log, one_error_line, payload, ringlog, ringlog_command, snapshot};
use ringlog::{Log, Options, Store};

/// A `ringlog append DIR [--topic NAME]` process and the pipe that feeds it.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Writer {
    /// Starts the writer and waits until it holds the lock of `lock_dir`.
    fn start(args: &[&str], lock_dir: &Path) -> Writer {
        let child = ringlog_command()
            .arg("append")
            .args(args)
            .args(["--segment-size", "64KiB"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringlog append");
        let mut writer = Writer { stdin: None, child };
        writer.stdin = writer.child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ringlog::lock_holder(lock_dir).ok().flatten() != Some(writer.child.id()) {
            assert!(Instant::now() < deadline, "the writer never took the lock");
            std::thread::sleep(Duration::from_millis(5));
        }
        writer
    }

    /// Closes its input and checks that it exited cleanly.
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

fn json(run: &common::Run) -> serde_json::Value {
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

fn read_all(dir: &Path) -> (u64, Vec<Vec<u8>>) {
    let log = Log::open_read_only(dir, Options::default()).unwrap();
    let first = log.first_offset();
    let records = log
        .iter(first)
        .map(|r| r.unwrap().payload().to_vec())
        .collect();
    (first, records)
}

#[test]
fn trim_dry_run_changes_nothing_and_trim_does_what_it_said() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2_000);
    let segments = common::segment_files(dir.path()).len();
    assert!(segments >= 4, "the log must have several segments");
    let before = snapshot(dir.path());
    let dry = json(&ringlog(&[
        "trim",
        arg(dir.path()),
        "--before",
        "1300",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(snapshot(dir.path()), before, "a dry run changed the log");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["records_removed"], 1300);
    assert_eq!(dry["first_offset"], 1300);
    assert_eq!(dry["next_offset"], 2000);
    let predicted = dry["segments_deleted"].as_array().unwrap().clone();
    assert!(!predicted.is_empty(), "{dry}");
    let text = ringlog(&["trim", arg(dir.path()), "--before", "1300", "--dry-run"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout
            .starts_with("would trim 1300 records (offsets 0..1300), would delete "),
        "{text:?}"
    );
    assert!(
        text.stdout.contains("dry run: nothing was changed"),
        "{text:?}"
    );
    assert_eq!(snapshot(dir.path()), before);

    let done = json(&ringlog(&[
        "trim",
        arg(dir.path()),
        "--before",
        "1300",
        "--json",
    ]));
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["segments_deleted"].as_array().unwrap(), &predicted);
    assert_eq!(done["records_removed"], 1300);
    let (first, records) = read_all(dir.path());
    assert_eq!(first, 1300);
    assert_eq!(records.len(), 700);
    assert_eq!(records[0], payload(1300));
    for id in predicted {
        let id = id.as_u64().unwrap();
        assert!(
            !dir.path().join(format!("{id:020}.seg")).exists(),
            "segment {id} is still there"
        );
    }
    // Nothing below the start any more: a second trim there does nothing.
    let again = ringlog(&["trim", arg(dir.path()), "--before", "10"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.stdout,
        "nothing to trim: the log holds offsets 1300..2000\n"
    );
    // And info shows the recorded start.
    let info = json(&ringlog(&["info", arg(dir.path()), "--json"]));
    assert_eq!(info["first_offset"], 1300);
    assert_eq!(info["start_recorded"], true);
    assert!(info["retention"].is_null());
    assert!(info["retention_note"]
        .as_str()
        .unwrap()
        .contains("not persisted"));
    assert_eq!(info["pending_release_bytes"], 0);
    let text = ringlog(&["info", arg(dir.path())]);
    assert!(
        text.stdout
            .contains("first offset    1300 (recorded by a trim, log.start)"),
        "{text:?}"
    );
}

#[test]
fn truncate_dry_run_changes_nothing_and_truncate_cuts_the_end() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2_000);
    let before = snapshot(dir.path());
    let dry = json(&ringlog(&[
        "truncate",
        arg(dir.path()),
        "--from",
        "600",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(snapshot(dir.path()), before, "a dry run changed the log");
    assert_eq!(dry["records_removed"], 1400);
    assert_eq!(
        (dry["removed_from"].clone(), dry["removed_to"].clone()),
        (600.into(), 2000.into())
    );
    assert_eq!(dry["next_offset"], 600);
    let predicted = dry["segments_deleted"].as_array().unwrap().clone();
    assert!(!predicted.is_empty(), "{dry}");
    let done = json(&ringlog(&[
        "truncate",
        arg(dir.path()),
        "--from",
        "600",
        "--json",
    ]));
    assert_eq!(done["segments_deleted"].as_array().unwrap(), &predicted);
    assert_eq!(done["next_offset"], 600);
    let (first, records) = read_all(dir.path());
    assert_eq!((first, records.len()), (0, 600));
    assert_eq!(records[599], payload(599));
    let verify = ringlog(&["verify", arg(dir.path())]);
    assert_eq!(verify.code, 0, "{verify:?}");
    // The next append gets the cut offset.
    let appended = common::ringlog_with_stdin(&["append", arg(dir.path())], b"after\n");
    assert_eq!(
        appended.stdout,
        "appended 1 records: offsets 600..601 (durable)\n"
    );
    // Out of range: refused, naming the range.
    let run = ringlog(&["truncate", arg(dir.path()), "--from", "5000"]);
    let line = one_error_line(&run, 2);
    assert!(line.contains("holds offsets 0..601"), "{line}");
    let run = ringlog(&["truncate", arg(dir.path()), "--from", "5000", "--dry-run"]);
    let line = one_error_line(&run, 2);
    assert!(line.contains("holds offsets 0..601"), "{line}");
}

#[test]
fn cuts_of_a_missing_log_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    for args in [
        vec!["trim", arg(&missing), "--before", "3"],
        vec!["truncate", arg(&missing), "--from", "3"],
    ] {
        let run = ringlog(&args);
        one_error_line(&run, 2);
        assert!(!missing.exists(), "{args:?} created the log");
    }
    let store = dir.path().join("store");
    Store::open(&store, Options::default())
        .unwrap()
        .topic("a")
        .unwrap();
    let run = ringlog(&["trim", arg(&store), "--topic", "nope", "--before", "3"]);
    let line = one_error_line(&run, 2);
    assert!(line.contains("no topic \"nope\""), "{line}");
    assert!(!store.join("topics/nope").exists());
}

#[test]
fn cuts_beside_a_writer_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::start(&[arg(dir.path())], dir.path());
    let mut input = writer.stdin.take().unwrap();
    input.write_all(b"one\ntwo\nthree\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = writer.child.id();
    let before = snapshot(dir.path());
    for args in [
        vec!["trim", arg(dir.path()), "--before", "1", "--dry-run"],
        vec!["trim", arg(dir.path()), "--before", "1"],
        vec!["truncate", arg(dir.path()), "--from", "1", "--dry-run"],
        vec!["truncate", arg(dir.path()), "--from", "1"],
    ] {
        let run = ringlog(&args);
        let line = one_error_line(&run, 2);
        assert!(
            line.contains("locked by another writer"),
            "{args:?}: {line}"
        );
        assert!(line.contains(&format!("(pid {pid})")), "{args:?}: {line}");
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused cut touched the log"
    );
    drop(input);
    assert_eq!(
        writer.finish(),
        "appended 3 records: offsets 0..3 (durable)\n"
    );
}

#[test]
fn a_topic_cut_beside_the_store_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut writer = Writer::start(&[arg(&store), "--topic", "t"], &store);
    let mut input = writer.stdin.take().unwrap();
    input.write_all(b"a\nb\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = writer.child.id();
    let run = ringlog(&["trim", arg(&store), "--topic", "t", "--before", "1"]);
    let line = one_error_line(&run, 2);
    assert!(line.contains(&format!("(pid {pid})")), "{line}");
    let run = ringlog(&[
        "truncate",
        arg(&store),
        "--topic",
        "t",
        "--from",
        "1",
        "--dry-run",
    ]);
    let line = one_error_line(&run, 2);
    assert!(line.contains(&format!("(pid {pid})")), "{line}");
    drop(input);
    writer.finish();
    // Once it is gone, the topic is cut.
    let run = ringlog(&["truncate", arg(&store), "--topic", "t", "--from", "1"]);
    assert_eq!(
        run.stdout,
        "truncated 1 records (offsets 1..2), no segment file deleted; the log holds offsets 0..1\n",
        "{run:?}"
    );
}

#[test]
fn backup_of_a_log_and_of_a_store_opens_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    build_log(&live, 1_500);
    let trimmed = ringlog(&["trim", arg(&live), "--before", "100"]);
    assert_eq!(trimmed.code, 0, "{trimmed:?}");
    let before = snapshot(&live);
    let copy = dir.path().join("copy");
    let out = json(&ringlog(&["backup", arg(&live), arg(&copy), "--json"]));
    assert_eq!(snapshot(&live), before, "backup changed the source");
    assert_eq!(out["kind"], "log");
    assert_eq!(out["logs"][0]["first_offset"], 100);
    assert_eq!(out["logs"][0]["next_offset"], 1500);
    assert!(out["files_linked"].as_u64().unwrap() >= 2, "{out}");
    let verify = ringlog(&["verify", arg(&copy)]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert_eq!(read_all(&copy), read_all(&live));
    // A second backup into the same place is refused.
    let run = ringlog(&["backup", arg(&live), arg(&copy)]);
    let line = one_error_line(&run, 2);
    assert!(line.contains("is not empty"), "{line}");

    // A store: every topic, or one as a single log.
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir, Options::default()).unwrap();
    for (name, count) in [("a", 30u64), ("b", 70)] {
        let topic = store.topic(name).unwrap();
        for i in 0..count {
            topic.append(&payload(i)).unwrap();
        }
    }
    store.close().unwrap();
    let copy = dir.path().join("store-copy");
    let run = ringlog(&["backup", arg(&store_dir), arg(&copy)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("topic a: 30 records (offsets 0..30)"),
        "{run:?}"
    );
    assert!(run.stdout.contains("backed up the store"), "{run:?}");
    let copied = Store::open(&copy, Options::default()).unwrap();
    assert_eq!(copied.topics().unwrap(), ["a", "b"]);
    assert_eq!(copied.topic("b").unwrap().next_offset(), 70);
    copied.close().unwrap();
    let one = dir.path().join("topic-copy");
    let run = ringlog(&["backup", arg(&store_dir), arg(&one), "--topic", "b"]);
    assert_eq!(run.code, 0, "{run:?}");
    let log = Log::open(&one, Options::default()).unwrap();
    assert_eq!(log.next_offset(), 70);
    assert_eq!(log.read(69).unwrap().payload(), payload(69));
}

#[test]
fn backup_beside_a_running_writer_is_a_clean_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let mut writer = Writer::start(&[arg(&live)], &live);
    let mut input = writer.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut line = 0u64;
        for _ in 0..150 {
            let burst: String = (0..40)
                .map(|_| {
                    line += 1;
                    format!("event {line:07} {}\n", "z".repeat(80))
                })
                .collect();
            input.write_all(burst.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        line
    });
    let mut copies = Vec::new();
    let mut segments_count = 0;
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(60));
        let copy = dir.path().join(format!("copy-{round}"));
        let run = ringlog(&["backup", arg(&live), arg(&copy), "--json"]);
        let out = json(&run);
        segments_count = out["logs"][0]["segments_count"].as_u64().unwrap();
        copies.push((copy, out["logs"][0]["next_offset"].as_u64().unwrap()));
    }
    let lines = feeder.join().unwrap();
    writer.finish();
    for (copy, next) in &copies {
        let verify = ringlog(&["verify", arg(copy)]);
        assert_eq!(verify.code, 0, "{}: {verify:?}", copy.display());
        let (first, records) = read_all(copy);
        assert_eq!((first, records.len() as u64), (0, *next));
        for (i, record) in records.iter().enumerate() {
            let expected = format!("event {:07} {}", i + 1, "z".repeat(80));
            assert_eq!(record, expected.as_bytes(), "{}", copy.display());
        }
    }
    assert!(
        copies.windows(2).all(|w| w[0].1 <= w[1].1),
        "later copies hold no fewer records"
    );
    assert!(
        segments_count >= 3,
        "the last copy has {segments_count} segments: the writer hardly rolled over"
    );
    assert!(lines >= copies.last().unwrap().1);
}
