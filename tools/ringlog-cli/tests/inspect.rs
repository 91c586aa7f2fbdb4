//! `info`, `dump` and `tail` on real logs: text and JSON output, read-only behaviour.

mod common;

use common::{arg, build_log, ndjson, payload, ringlog, snapshot};
use ringlog::{Log, Options};

#[test]
fn info_describes_segments_offsets_and_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 3000);
    let before = snapshot(dir.path());

    let run = ringlog(&["info", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let version = format!("format version  {}", ringlog::FORMAT_VERSION);
    for expected in [
        version.as_str(),
        "lock holder     none",
        "offsets         first 0, next 3000, durable 3000",
        "records         3000",
        "sealed",
        "active",
    ] {
        assert!(run.stdout.contains(expected), "{expected}: {}", run.stdout);
    }

    let run = ringlog(&["info", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let info: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(info["format_version"], ringlog::FORMAT_VERSION);
    assert_eq!(info["next_offset"], 3000);
    assert_eq!(info["lock_holder_pid"], serde_json::Value::Null);
    let segments = info["segments"].as_array().unwrap();
    assert!(segments.len() > 3, "{info}");
    let records: u64 = segments
        .iter()
        .map(|s| s["records_count"].as_u64().unwrap())
        .sum();
    assert_eq!(records, 3000);
    assert_eq!(segments[0]["state"], "sealed");
    assert_eq!(segments.last().unwrap()["state"], "active");
    assert_eq!(segments[0]["segment_bytes"], common::SEGMENT_BYTES);
    assert_eq!(snapshot(dir.path()), before, "info changed the log");
}

#[test]
fn info_works_beside_a_writer_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Log::open(dir.path(), Options::default().segment_bytes(64 << 10)).unwrap();
    writer.append(b"hello").unwrap();
    let run = ringlog(&["info", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let info: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(info["lock_holder_pid"], std::process::id());
    assert_eq!(info["next_offset"], 1);
    let run = ringlog(&["tail", arg(dir.path())]);
    assert!(run.stdout.ends_with("length 5  hello\n"), "{run:?}");
    writer.close().unwrap();
}

#[test]
fn dump_prints_every_record_in_each_encoding() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 1200);
    let before = snapshot(dir.path());

    let run = ringlog(&["dump", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1200);
    assert!(lines[7].starts_with("offset 7  time 20"), "{}", lines[7]);
    let text = String::from_utf8(payload(7)).unwrap();
    assert!(
        lines[7].ends_with(&format!("length 100  {text}")),
        "{}",
        lines[7]
    );

    let run = ringlog(&[
        "dump",
        arg(dir.path()),
        "--from",
        "1000",
        "--count",
        "5",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let records = ndjson(&run.stdout);
    assert_eq!(records.len(), 5);
    for (i, record) in records.iter().enumerate() {
        let offset = 1000 + i as u64;
        assert_eq!(record["offset"], offset);
        assert_eq!(record["length_bytes"], 100);
        assert!(record["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let text = String::from_utf8(payload(offset)).unwrap();
        assert_eq!(record["payload"], text.as_str());
    }

    let run = ringlog(&["dump", arg(dir.path()), "--count", "1", "--payload", "hex"]);
    assert!(
        run.stdout
            .trim_end()
            .contains("length 100  7265636f72642d30303030302d7878"),
        "{run:?}"
    );
    let run = ringlog(&[
        "dump",
        arg(dir.path()),
        "--count",
        "1",
        "--json",
        "--payload",
        "base64",
    ]);
    let record = &ndjson(&run.stdout)[0];
    assert!(record["payload"]
        .as_str()
        .unwrap()
        .starts_with("cmVjb3JkLTAwMDAwLXh4"));
    assert_eq!(record["payload_encoding"], "base64");
    let run = ringlog(&["dump", arg(dir.path()), "--count", "1", "--payload", "none"]);
    assert!(run.stdout.trim_end().ends_with("length 100"), "{run:?}");
    assert_eq!(snapshot(dir.path()), before, "dump changed the log");
}

#[test]
fn tail_prints_the_last_records() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 500);
    let run = ringlog(&["tail", arg(dir.path()), "-n", "3"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("offset 497 "), "{}", lines[0]);
    assert!(lines[2].contains("record-00499-"), "{}", lines[2]);

    let run = ringlog(&["tail", arg(dir.path()), "--json"]);
    let records = ndjson(&run.stdout);
    assert_eq!(records.len(), 10, "default -n is 10");
    assert_eq!(records[9]["offset"], 499);
    let run = ringlog(&["tail", arg(dir.path()), "-n", "0"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
}

#[test]
fn info_shows_every_file_of_the_log_and_the_disk_it_takes() {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        Options::default().segment_bytes(common::SEGMENT_BYTES),
    )
    .unwrap();
    log.append(b"one").unwrap();
    // The spare is prepared in the background: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while common::segment_files(dir.path()).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no spare segment");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    log.close().unwrap();
    let mut files: Vec<(String, u64, u64)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            (path.display().to_string(), meta.len(), meta.blocks() * 512)
        })
        .collect();
    files.sort();
    let spare = common::segment_files(dir.path()).pop().unwrap();

    let run = ringlog(&["info", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let info: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let spares = info["spare_segments"].as_array().unwrap();
    assert_eq!(spares.len(), 1, "{info}");
    assert_eq!(spares[0]["path"], spare.display().to_string());
    assert_eq!(spares[0]["state"], "spare");
    assert_eq!(spares[0]["segment_bytes"], common::SEGMENT_BYTES);
    let mut listed: Vec<(String, u64, u64)> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["length_bytes"].as_u64().unwrap(),
                f["allocated_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, files, "{info}");
    let kinds: Vec<&str> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for kind in ["segment", "spare", "index", "lock"] {
        assert!(kinds.contains(&kind), "{kind}: {info}");
    }
    let length: u64 = files.iter().map(|f| f.1).sum();
    let allocated: u64 = files.iter().map(|f| f.2).sum();
    assert_eq!(info["disk_length_bytes"], length, "{info}");
    assert_eq!(info["disk_allocated_bytes"], allocated, "{info}");
    assert!(allocated >= 2 * common::SEGMENT_BYTES, "{info}");

    let run = ringlog(&["info", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let spare_id = spare
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let spare_row = run
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{spare_id} ")))
        .unwrap_or_else(|| panic!("no row for the spare: {}", run.stdout));
    assert!(spare_row.contains("spare"), "{spare_row}");
    assert!(
        run.stdout.contains(&format!(
            "disk            {} files: {} long, {} allocated",
            files.len(),
            format_kib(length),
            format_kib(allocated)
        )),
        "{}",
        run.stdout
    );
}

/// `ringlog`'s rendering of a size of whole KiB below 1 MiB.
fn format_kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

#[test]
fn dump_shows_the_fields_of_entries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Options::default().segment_bytes(64 << 10)).unwrap();
        log.append(b"plain").unwrap();
        log.append_entry(
            ringlog::Entry::new(b"started")
                .key(b"job-42")
                .id(b"evt-1")
                .seq(7)
                .header("kind", b"job.started"),
        )
        .unwrap();
        log.close().unwrap();
    }
    let run = ringlog(&["dump", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].ends_with("length 5  plain"), "{}", lines[0]);
    assert!(
        lines[1].ends_with("length 7  seq 7  key job-42  id evt-1  kind=job.started  started"),
        "{}",
        lines[1]
    );
    let run = ringlog(&["dump", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let records = ndjson(&run.stdout);
    assert!(records[0].get("seq").is_none(), "{}", records[0]);
    assert!(records[0].get("headers").is_none(), "{}", records[0]);
    assert_eq!(records[1]["seq"], 7);
    assert_eq!(records[1]["key"], "job-42");
    assert_eq!(records[1]["id"], "evt-1");
    assert_eq!(
        records[1]["headers"],
        serde_json::json!([["kind", "job.started"]])
    );
    assert_eq!(records[1]["payload"], "started");
}
