//! A store of topics through the tool, run as a user would (the binary, real files):
//! `--topic NAME` on every command, `ringlog topics`, the mix-ups of a store and a single
//! log, invalid names, repair beside the store's writer, `bench --topics` and `tail -f`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    arg, build_log, ndjson, one_error_line, ringlog, ringlog_command, ringlog_with_stdin,
};
use serde_json::Value;

/// `ringlog append STORE --topic NAME [EXTRA...]` fed `lines`; asserts it appended them
/// at `first..first + lines.len()`.
fn append(store: &Path, topic: &str, extra: &[&str], lines: &[&str], first: u64) {
    let mut args = vec!["append", arg(store), "--topic", topic];
    args.extend_from_slice(extra);
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let run = ringlog_with_stdin(&args, input.as_bytes());
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "appended {} records: offsets {first}..{} (durable)\n",
            lines.len(),
            first + lines.len() as u64
        )
    );
}

/// The payloads `dump --json` prints for a topic, with their offsets.
fn dumped(store: &Path, topic: &str) -> Vec<(u64, String)> {
    let run = ringlog(&["dump", arg(store), "--topic", topic, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    ndjson(&run.stdout)
        .iter()
        .map(|r| {
            (
                r["offset"].as_u64().unwrap(),
                r["payload"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Bytes the files of `dir` take on disk (what `du` counts).
fn allocated_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

#[test]
fn two_topics_are_appended_to_and_read_back_each_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // The store is created by the first append; one topic with its own segment size.
    append(&store, "orders", &[], &["o-0", "o-1", "o-2"], 0);
    append(&store, "audit", &["--segment-size", "64KiB"], &["a-0"], 0);
    append(&store, "audit", &["--segment-size", "64KiB"], &["a-1"], 1);
    append(&store, "orders", &[], &["o-3"], 3);
    assert!(store.join("ringlog.store").is_file());

    let expect = |names: &[&str]| -> Vec<(u64, String)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u64, n.to_string()))
            .collect()
    };
    assert_eq!(
        dumped(&store, "orders"),
        expect(&["o-0", "o-1", "o-2", "o-3"])
    );
    assert_eq!(dumped(&store, "audit"), expect(&["a-0", "a-1"]));

    let run = ringlog(&["tail", arg(&store), "--topic", "orders", "-n", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(
        lines[0].starts_with("offset 2 ") && lines[0].ends_with("  o-2"),
        "{run:?}"
    );
    assert!(
        lines[1].starts_with("offset 3 ") && lines[1].ends_with("  o-3"),
        "{run:?}"
    );

    for (topic, records, segment_bytes) in [("orders", 4, None), ("audit", 2, Some(65536))] {
        let topic_dir = store.join("topics").join(topic);
        let run = ringlog(&["info", arg(&store), "--topic", topic, "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        let info: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(info["store"], arg(&store), "{info}");
        assert_eq!(info["topic"], topic, "{info}");
        assert_eq!(info["dir"], arg(&topic_dir), "{info}");
        assert_eq!(info["records_count"], records, "{info}");
        assert_eq!(info["next_offset"], records, "{info}");
        assert_eq!(info["lock_holder_pid"], Value::Null, "{info}");
        if let Some(bytes) = segment_bytes {
            assert_eq!(info["segments"][0]["segment_bytes"], bytes, "{info}");
        }
        let kinds: Vec<&str> = info["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"options"), "{kinds:?}");
        assert!(kinds.contains(&"segment"), "{kinds:?}");
        let run = ringlog(&["info", arg(&store), "--topic", topic]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            run.stdout.starts_with(&format!(
                "topic           {topic} of the store {}\n",
                store.display()
            )),
            "{run:?}"
        );
        assert!(
            run.stdout.contains(&format!("records         {records}\n")),
            "{run:?}"
        );

        let run = ringlog(&["verify", arg(&store), "--topic", topic]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            run.stdout
                .ends_with(&format!("{records} records (offsets 0..{records})\n")),
            "{run:?}"
        );
        let run = ringlog(&["verify", arg(&store), "--topic", topic, "--json"]);
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["dir"], arg(&topic_dir), "{report}");
        assert_eq!(report["records_checked"], records, "{report}");
    }
    // A topic's own options stay its own: another segment size is refused, changing
    // nothing.
    let run = ringlog(&[
        "append",
        arg(&store),
        "--topic",
        "audit",
        "--segment-size",
        "128KiB",
    ]);
    let line = one_error_line(&run, 2);
    assert!(line.contains("exists with other options"), "{line}");
    assert!(line.contains("drop --segment-size"), "{line}");
    assert_eq!(dumped(&store, "audit").len(), 2);
}

#[test]
fn topics_lists_records_offsets_and_disk_used() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path();
    append(store, "orders", &[], &["o-0", "o-1", "o-2"], 0);
    append(
        store,
        "agent.events",
        &["--segment-size", "64KiB"],
        &["e-0"],
        0,
    );

    let run = ringlog(&["topics", arg(store), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let listing: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listing["dir"], arg(store));
    assert_eq!(listing["topics_count"], 2);
    assert_eq!(listing["records_count"], 4);
    assert_eq!(listing["lock_holder_pid"], Value::Null);
    let topics = listing["topics"].as_array().unwrap();
    let mut total = 0;
    for (row, (name, records)) in topics.iter().zip([("agent.events", 1), ("orders", 3)]) {
        let topic_dir = store.join("topics").join(name);
        assert_eq!(row["name"], name, "{row}");
        assert_eq!(row["dir"], arg(&topic_dir), "{row}");
        assert_eq!(row["records_count"], records, "{row}");
        assert_eq!(row["first_offset"], 0, "{row}");
        assert_eq!(row["next_offset"], records, "{row}");
        assert_eq!(row["error"], Value::Null, "{row}");
        let allocated = allocated_bytes(&topic_dir);
        assert!(allocated >= 64 << 10, "{name}: {allocated}");
        assert_eq!(row["allocated_bytes"], allocated, "{row}");
        total += allocated;
    }
    assert_eq!(listing["allocated_bytes"], total);

    let run = ringlog(&["topics", arg(store)]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], format!("store        {}", store.display()));
    assert_eq!(lines[1], "lock holder  none (no writer has the store open)");
    let rows: Vec<Vec<&str>> = lines[4..6]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..4], ["agent.events", "1", "0", "1"], "{lines:?}");
    assert_eq!(rows[1][..4], ["orders", "3", "0", "3"], "{lines:?}");
    assert!(lines[7].starts_with("2 topic(s), 4 records, "), "{lines:?}");

    // A topic created by an append of nothing is listed with no records; a single log
    // and a plain directory are refused.
    let quiet = tmp.path().join("quiet");
    let run = ringlog(&["append", arg(&quiet), "--topic", "t"]);
    assert_eq!(
        run.stdout,
        "appended 0 records (the log's next offset is 0)\n"
    );
    let run = ringlog(&["topics", arg(&quiet), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let listing: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listing["topics_count"], 1, "{listing}");
    assert_eq!(listing["topics"][0]["name"], "t", "{listing}");
    assert_eq!(listing["topics"][0]["records_count"], 0, "{listing}");
    let log = tmp.path().join("log");
    build_log(&log, 3);
    let line = one_error_line(&ringlog(&["topics", arg(&log)]), 2);
    assert!(
        line.contains("is a single log, not a store of topics"),
        "{line}"
    );
    let plain = tempfile::tempdir().unwrap();
    let line = one_error_line(&ringlog(&["topics", arg(plain.path())]), 2);
    assert!(line.contains("holds no ringlog store"), "{line}");
}

#[test]
fn a_store_needs_topic_and_a_single_log_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    append(&store, "orders", &[], &["o-0"], 0);
    let log = tmp.path().join("log");
    build_log(&log, 3);
    let before_log = common::snapshot(&log);

    let commands: [&[&str]; 6] = [
        &["info"],
        &["dump"],
        &["tail"],
        &["verify"],
        &["repair"],
        &["append"],
    ];
    // Refused commands get an empty stdin: they refuse before reading it (and input
    // piped to a process that already exited would break the pipe).
    for command in commands {
        let mut args = command.to_vec();
        args.push(arg(&store));
        let line = one_error_line(&ringlog(&args), 2);
        assert_eq!(
            line,
            format!(
                "ringlog: error: {s} is a store of topics; pass --topic NAME (ringlog topics {s} lists them)",
                s = store.display()
            ),
            "{args:?}"
        );

        let mut args = command.to_vec();
        args.extend([arg(&log), "--topic", "orders"]);
        let line = one_error_line(&ringlog(&args), 2);
        assert!(
            line.contains(&format!(
                "{} is a single log, not a store of topics; drop --topic",
                log.display()
            )),
            "{args:?}: {line}"
        );
    }
    let line = one_error_line(&ringlog(&["bench", arg(&store), "--records", "1"]), 2);
    assert!(
        line.contains("is a store of topics; pass --topics N"),
        "{line}"
    );
    let line = one_error_line(
        &ringlog(&["bench", arg(&log), "--topics", "2", "--records", "1"]),
        2,
    );
    assert!(
        line.contains("is a single log, not a store of topics"),
        "{line}"
    );
    // Nothing was appended, and the single log did not become a store.
    assert_eq!(common::snapshot(&log), before_log);
    assert!(!log.join("ringlog.store").exists());
    assert_eq!(dumped(&store, "orders").len(), 1);

    // A topic's own directory is the store's to write: append there is refused, with
    // the command to use instead; reading it directly works.
    let topic_dir = store.join("topics").join("orders");
    let line = one_error_line(&ringlog(&["append", arg(&topic_dir)]), 2);
    assert!(
        line.ends_with(&format!(
            "pass the store: {} --topic orders",
            store.display()
        )),
        "{line}"
    );
    let run = ringlog(&["dump", arg(&topic_dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with("  o-0\n"), "{run:?}");
    // A missing store: nothing to read.
    let missing = tmp.path().join("missing");
    let line = one_error_line(&ringlog(&["dump", arg(&missing), "--topic", "t"]), 2);
    assert!(line.contains("does not exist"), "{line}");
    assert!(!missing.exists());
}

#[test]
fn invalid_topic_names_are_refused_with_the_library_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    append(&store, "orders", &[], &["o-0"], 0);
    for (name, reason) in [
        ("a/b", "'/' at byte 1 is not allowed"),
        ("..", "`.` and `..` name directories, not topics"),
        ("", "a topic name cannot be empty"),
    ] {
        for command in ["info", "dump", "tail", "verify", "repair", "append"] {
            let run = ringlog(&[command, arg(&store), "--topic", name]);
            let line = one_error_line(&run, 2);
            assert_eq!(
                line,
                format!(
                    "ringlog: error: invalid topic name {name:?}: {reason}{}",
                    if reason.ends_with("allowed") {
                        "; use ASCII letters, digits, `.`, `_` and `-`"
                    } else {
                        ""
                    }
                ),
                "{command}"
            );
        }
    }
    // A name that is valid but absent: read-only commands say how to list them.
    for command in ["info", "dump", "verify", "repair"] {
        let line = one_error_line(&ringlog(&[command, arg(&store), "--topic", "nope"]), 2);
        assert!(line.contains("has no topic \"nope\""), "{command}: {line}");
        assert!(
            line.contains(&format!("`ringlog topics {}`", store.display())),
            "{command}: {line}"
        );
    }
    assert_eq!(
        std::fs::read_dir(store.join("topics")).unwrap().count(),
        1,
        "a refused name left a directory behind"
    );
    // The first append of a new store with an invalid name leaves no store behind.
    let new_store = tmp.path().join("new");
    let line = one_error_line(&ringlog(&["append", arg(&new_store), "--topic", "a b"]), 2);
    assert!(line.contains("invalid topic name \"a b\""), "{line}");
    assert!(!new_store.exists());
}

/// A `ringlog append STORE --topic NAME` process and the pipe that feeds it.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Writer {
    /// Starts the writer and waits until it holds the store's lock.
    fn start(store: &Path, topic: &str) -> Writer {
        let mut child = ringlog_command()
            .args(["append", arg(store), "--topic", topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringlog append");
        let stdin = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ringlog::lock_holder(store).ok().flatten() != Some(child.id()) {
            assert!(Instant::now() < deadline, "the writer never took the lock");
            std::thread::sleep(Duration::from_millis(5));
        }
        Writer { child, stdin }
    }

    /// Closes its input; returns what it printed, after checking it exited cleanly.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let output = self.child.wait_with_output().expect("wait for the writer");
        assert!(output.status.success(), "writer failed: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }
}

#[test]
fn repair_of_a_topic_is_refused_while_a_writer_holds_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path();
    append(store, "other", &[], &["y-0"], 0);
    let mut writer = Writer::start(store, "x");
    let input = writer.stdin.as_mut().unwrap();
    input.write_all(b"one\ntwo\nthree\n").unwrap();
    input.flush().unwrap();
    // Let the writer create the topic and append: the topic is undamaged. (Until the
    // writer has created it, `dump` says the store has no such topic.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let appended = || {
        let run = ringlog(&["dump", arg(store), "--topic", "x", "--json"]);
        if run.code != 0 {
            assert!(run.stderr.contains("has no topic"), "{run:?}");
            return 0;
        }
        ndjson(&run.stdout).len()
    };
    while appended() < 3 {
        assert!(Instant::now() < deadline, "the writer never appended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = writer.child.id();
    let topic_dir = store.join("topics").join("x");
    let before = common::snapshot(&topic_dir);
    // The store's one lock covers every topic, the one being written and the others,
    // whichever way the topic is named.
    for args in [
        vec!["repair", arg(store), "--topic", "x", "--dry-run"],
        vec!["repair", arg(store), "--topic", "x"],
        vec!["repair", arg(store), "--topic", "other"],
        vec!["repair", arg(&topic_dir)],
    ] {
        let line = one_error_line(&ringlog(&args), 2);
        assert!(
            line.contains("locked by another writer"),
            "{args:?}: {line}"
        );
        assert!(line.contains(&format!("(pid {pid})")), "{args:?}: {line}");
    }
    assert_eq!(
        common::snapshot(&topic_dir),
        before,
        "repair touched a live topic"
    );
    // Read-only commands work beside the writer, and see it.
    let run = ringlog(&["verify", arg(store), "--topic", "x"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = ringlog(&["topics", arg(store), "--json"]);
    let listing: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listing["lock_holder_pid"], pid, "{listing}");
    let run = ringlog(&["info", arg(store), "--topic", "other", "--json"]);
    let info: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(info["lock_holder_pid"], pid, "{info}");

    assert_eq!(
        writer.finish(),
        "appended 3 records: offsets 0..3 (durable)\n"
    );
    let run = ringlog(&["repair", arg(store), "--topic", "x"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "nothing to repair: no torn tail or damaged index found\n"
    );
}

#[test]
fn bench_spreads_producers_over_topics_and_reports_flush_cycles() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let run = ringlog(&[
        "bench",
        arg(&store),
        "--topics",
        "4",
        "--records",
        "2000",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .starts_with("bench: 16 producers over 4 topics, "),
        "{run:?}"
    );
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["records"], 2000, "{summary}");
    assert_eq!(summary["topics"], 4, "{summary}");
    assert_eq!(summary["dir"], arg(&store), "{summary}");
    let fsyncs = summary["fsyncs"].as_u64().unwrap();
    assert!(fsyncs > 0, "{summary}");
    let cycles = summary["flush_cycles"].as_u64().expect("flush_cycles");
    match cycles {
        0 => assert_eq!(summary["fsyncs_per_cycle"], Value::Null, "{summary}"),
        _ => {
            let per_cycle = summary["fsyncs_per_cycle"].as_f64().unwrap();
            // A cycle flushes several topics: at least one fdatasync each time.
            assert!(per_cycle >= 1.0, "{summary}");
            assert!(
                per_cycle * cycles as f64 <= fsyncs as f64 + 0.5,
                "{summary}"
            );
        }
    }

    // Producer i appended to bench-{i % 4}: all four topics hold records, 2000 in all.
    let run = ringlog(&["topics", arg(&store), "--json"]);
    let listing: Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = listing["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bench-0", "bench-1", "bench-2", "bench-3"]);
    assert_eq!(listing["records_count"], 2000, "{listing}");
    for topic in listing["topics"].as_array().unwrap() {
        assert!(topic["records_count"].as_u64().unwrap() > 0, "{topic}");
    }

    // The text summary says the same; a single log's JSON has no store fields.
    let run = ringlog(&[
        "bench",
        "--topics",
        "2",
        "--records",
        "200",
        "--producers",
        "4",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let last = run.stdout.lines().last().unwrap();
    assert!(last.starts_with("2 topics: "), "{run:?}");
    assert!(
        last.contains(" flush cycles over several topics"),
        "{run:?}"
    );
    let run = ringlog(&["bench", "--records", "100", "--producers", "2", "--json"]);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["topics"], Value::Null, "{summary}");
    assert_eq!(summary["flush_cycles"], Value::Null, "{summary}");
    assert_eq!(summary["fsyncs_per_cycle"], Value::Null, "{summary}");
}

#[test]
fn tail_follow_on_a_topic_sees_a_record_another_process_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path();
    append(store, "t", &[], &["first"], 0);
    let mut tail = ringlog_command()
        .args([
            "tail",
            arg(store),
            "--topic",
            "t",
            "-n",
            "1",
            "-f",
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
    let next_line = || lines_rx.recv_timeout(Duration::from_secs(20));
    let line = next_line().expect("tail printed the last record");
    assert!(
        line.starts_with("offset 0 ") && line.ends_with("  first"),
        "{line}"
    );
    // Another topic's record is not this topic's; then one to this topic.
    append(store, "u", &[], &["elsewhere"], 0);
    append(store, "t", &[], &["second"], 1);
    let line = next_line();
    tail.kill().unwrap();
    tail.wait().unwrap();
    let line = line.expect("tail -f saw the record appended by another process");
    assert!(
        line.starts_with("offset 1 ") && line.ends_with("  second"),
        "{line}"
    );
}
