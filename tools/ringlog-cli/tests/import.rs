//! `ringlog import`: a JSON-lines event log (with rotations) into ringlog, with keys,
//! idempotency ids, sequences and timestamps from its fields; torn tails, malformed
//! lines and re-runs.

mod common;

use common::{arg, one_error_line, ringlog};
use ringlog::{Log, Options};

fn event(seq: u64) -> String {
    format!(
        r#"{{"seq":{seq},"ts":"2026-12-06T10:00:{:02}.{:03}Z","event_type":"job_started","job_id":"job-{}","id":"evt-{seq}"}}"#,
        seq / 1000 % 60,
        seq % 1000,
        seq % 3
    )
}

/// The job runtime's layout: events.jsonl.2 (oldest), .1, then events.jsonl.
fn write_rotated(dir: &std::path::Path, lines: &[String]) -> std::path::PathBuf {
    let file = dir.join("events.jsonl");
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(3)).collect();
    for (name, chunk) in ["events.jsonl.2", "events.jsonl.1", "events.jsonl"]
        .iter()
        .zip(chunks)
    {
        let text: String = chunk.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join(name), text).unwrap();
    }
    file
}

fn import(log: &std::path::Path, file: &std::path::Path, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "import",
        arg(log),
        "--jsonl",
        arg(file),
        "--key-field",
        "job_id",
        "--seq-field",
        "seq",
        "--time-field",
        "ts",
    ];
    args.extend_from_slice(extra);
    ringlog(&args)
}

#[test]
fn rotated_files_import_oldest_first_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=30).map(event).collect();
    let file = write_rotated(dir.path(), &lines);
    let log_dir = dir.path().join("log");
    let run = import(&log_dir, &file, &["--id-field", "id"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("imported 30 of 30 lines from 3 file(s): offsets 0..30"),
        "{}",
        run.stdout
    );
    let log = Log::open_read_only(&log_dir, Options::default()).unwrap();
    for (offset, line) in lines.iter().enumerate() {
        let record = log.read(offset as u64).unwrap();
        let seq = offset as u64 + 1;
        assert_eq!(record.payload(), line.as_bytes());
        assert_eq!(record.seq(), Some(seq));
        assert_eq!(record.key(), Some(format!("job-{}", seq % 3).as_bytes()));
        assert_eq!(record.id(), Some(format!("evt-{seq}").as_bytes()));
        assert_eq!(record.timestamp_ms(), 1_796_551_200_000 + seq);
    }
    drop(log);
    // A re-run appends nothing twice.
    let again = import(&log_dir, &file, &["--id-field", "id"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("imported 0 of 30"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("30 line(s) were imported already"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_torn_last_line_is_reported_and_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut text: String = (1..=5).map(|s| format!("{}\n", event(s))).collect();
    text.push_str(&event(6)[..40]);
    std::fs::write(&file, text).unwrap();
    let log_dir = dir.path().join("log");
    let run = import(&log_dir, &file, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("imported 5 of 6 lines"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(":6 (byte "), "{}", run.stdout);
    assert!(run.stdout.contains("torn last line"), "{}", run.stdout);
    let log = Log::open_read_only(&log_dir, Options::default()).unwrap();
    assert_eq!(log.next_offset(), 5);
}

#[test]
fn a_malformed_line_stops_the_import_there_and_a_rerun_after_the_fix_appends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut lines: Vec<String> = (1..=10).map(event).collect();
    let good = lines[6].clone();
    lines[6] = "{not json".to_string();
    std::fs::write(
        &file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let log_dir = dir.path().join("log");
    let run = import(&log_dir, &file, &[]);
    let error = one_error_line(&run, 2);
    let byte = lines[..6].iter().map(|l| l.len() + 1).sum::<usize>();
    assert!(
        error.contains(&format!("events.jsonl:7 (byte {byte})")),
        "{error}"
    );
    assert!(error.contains("6 lines before it are imported"), "{error}");
    let log = Log::open_read_only(&log_dir, Options::default()).unwrap();
    assert_eq!(log.next_offset(), 6, "nothing after the bad line");
    drop(log);
    // Fixed, and run again: the sequences decide what is in already.
    lines[6] = good;
    std::fs::write(
        &file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let again = import(&log_dir, &file, &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("imported 4 of 10"),
        "{}",
        again.stdout
    );
    let log = Log::open_read_only(&log_dir, Options::default()).unwrap();
    assert_eq!(log.next_offset(), 10);
    for offset in 0..10u64 {
        assert_eq!(log.read(offset).unwrap().seq(), Some(offset + 1));
    }
}

#[test]
fn skip_bad_imports_the_rest_and_names_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut lines: Vec<String> = (1..=8).map(event).collect();
    lines[2] = "garbage".to_string();
    lines[5] = "{\"seq\": 6,".to_string();
    std::fs::write(
        &file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let log_dir = dir.path().join("log");
    let run = import(&log_dir, &file, &["--skip-bad", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(out["imported"], 6);
    let skipped = out["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2);
    assert!(
        skipped[0].as_str().unwrap().contains("events.jsonl:3"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].as_str().unwrap().contains("events.jsonl:6"),
        "{skipped:?}"
    );
}

#[test]
fn a_topic_of_a_store_takes_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(
        &file,
        (1..=3)
            .map(|s| format!("{}\n", event(s)))
            .collect::<String>(),
    )
    .unwrap();
    let store = dir.path().join("store");
    let run = import(&store, &file, &["--topic", "jobs"]);
    assert_eq!(run.code, 0, "{run:?}");
    let store = ringlog::Store::open_read_only(&store).unwrap();
    assert_eq!(store.topic("jobs").unwrap().next_offset(), 3);
}
