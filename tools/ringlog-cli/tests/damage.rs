//! `verify` and `repair`: exit codes on clean, corrupted and torn logs; repair cuts a torn
//! tail and nothing else.

mod common;

use common::{
    arg, build_log, flip_bit, one_error_line, ringlog, ringlog_with_stdin, segment_files, snapshot,
    tear_tail,
};
use ringlog::{Log, Options};

#[test]
fn verify_a_clean_log_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2000);
    let run = ringlog(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("ok"), "{run:?}");
    assert!(
        run.stdout.contains("2000 records (offsets 0..2000)"),
        "{run:?}"
    );

    let run = ringlog(&["verify", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["records_checked"], 2000);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn verify_a_corrupted_sealed_segment_exits_1_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2000);
    let first = segment_files(dir.path())[0].clone();
    flip_bit(&first, 30_000); // the middle of a sealed 64 KiB segment
    let before = snapshot(dir.path());

    let run = ringlog(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 1, "{run:?}");
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("corruption: "))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(line.contains(arg(&first)), "{line}");
    assert!(line.contains("at byte "), "{line}");

    let run = ringlog(&["verify", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problem = &report["problems"][0];
    assert_eq!(problem["kind"], "corruption");
    assert_eq!(problem["path"], arg(&first));
    let position = problem["position"].as_u64().unwrap();
    assert!(position <= 30_000 && position > 64, "{problem}");
    assert_eq!(snapshot(dir.path()), before, "verify changed the log");
}

#[test]
fn verify_counts_a_torn_tail_and_says_what_repair_would_cut() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 700);
    let (segment, position) = tear_tail(dir.path(), 40);
    let run = ringlog(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = format!("torn_tail: {} at byte {position}: ", segment.display());
    assert!(run.stdout.contains(&expected), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("repair would cut 40 bytes from byte {position}")),
        "{run:?}"
    );
}

#[test]
fn repair_cuts_a_torn_tail_and_reports_exactly_what() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 700);
    let (segment, position) = tear_tail(dir.path(), 40);
    let before = snapshot(dir.path());

    let run = ringlog(&["repair", arg(dir.path()), "--dry-run"]);
    assert_eq!(run.code, 0, "{run:?}");
    let expected = format!(
        "would cut 40 bytes from byte {position} of {}",
        segment.display()
    );
    assert!(run.stdout.starts_with(&expected), "{run:?}");
    assert!(
        run.stdout.contains("dry run: nothing was changed"),
        "{run:?}"
    );
    assert_eq!(snapshot(dir.path()), before, "--dry-run changed the log");

    let run = ringlog(&["repair", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let expected = format!("cut 40 bytes from byte {position} of {}", segment.display());
    assert!(run.stdout.starts_with(&expected), "{run:?}");
    let bytes = std::fs::read(&segment).unwrap();
    let cut = &bytes[position as usize..position as usize + 40];
    assert!(
        cut != [0x77; 40],
        "the garbage is still there: {cut:?} (data ends at {})",
        common::data_end(&segment)
    );

    let run = ringlog(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let log = Log::open_read_only(dir.path(), Options::default()).unwrap();
    assert_eq!(log.next_offset(), 700, "no record was lost");
    let run = ringlog(&["repair", arg(dir.path())]);
    assert_eq!(
        run.stdout.trim(),
        "nothing to repair: no torn tail or damaged index found"
    );
}

#[test]
fn repair_refuses_corruption_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2000);
    let first = segment_files(dir.path())[0].clone();
    flip_bit(&first, 30_000);
    let before = snapshot(dir.path());
    for args in [
        vec!["repair", arg(dir.path())],
        vec!["repair", arg(dir.path()), "--dry-run"],
    ] {
        let run = ringlog(&args);
        let line = one_error_line(&run, 1);
        assert!(line.contains(arg(&first)), "{line}");
        assert!(
            line.contains("refuses to touch damaged durable data"),
            "{line}"
        );
        assert!(line.contains("restore that segment from a copy"), "{line}");
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused repair changed the log"
    );
}

#[test]
fn repair_beside_a_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 10);
    tear_tail(dir.path(), 16);
    // The writer's own open cuts the tail, so tear it again while it holds the lock.
    let writer = Log::open(dir.path(), Options::default().segment_bytes(64 << 10)).unwrap();
    tear_tail(dir.path(), 16);
    let run = ringlog(&["repair", arg(dir.path())]);
    let line = one_error_line(&run, 2);
    assert!(line.contains("locked by another writer"), "{line}");
    assert!(
        line.contains(&format!("pid {}", std::process::id())),
        "{line}"
    );
    writer.close().unwrap();
}

#[test]
fn verify_and_repair_report_an_active_segment_cut_below_its_header() {
    for len in [0u64, 63] {
        let dir = tempfile::tempdir().unwrap();
        build_log(dir.path(), 2000);
        let active = common::active_segment(dir.path());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&active)
            .unwrap();
        file.set_len(len).unwrap();
        drop(file);
        let before = snapshot(dir.path());

        let run = ringlog(&["verify", arg(dir.path())]);
        assert_eq!(run.code, 1, "cut to {len}: {run:?}");
        let expected = format!("header: {} at byte 0: ", active.display());
        assert!(run.stdout.contains(&expected), "cut to {len}: {run:?}");
        assert!(run.stdout.contains("repair refuses"), "{run:?}");

        let run = ringlog(&["repair", arg(dir.path())]);
        let line = one_error_line(&run, 1);
        assert!(line.contains(arg(&active)), "{line}");
        assert_eq!(snapshot(dir.path()), before, "cut to {len}");
    }
}

#[test]
fn a_deleted_active_segment_and_index_are_reported_and_no_offset_is_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2000);
    let active = common::active_segment(dir.path());
    std::fs::remove_file(&active).unwrap();
    std::fs::remove_file(active.with_extension("idx")).unwrap();
    let before = snapshot(dir.path());

    let run = ringlog(&["verify", arg(dir.path())]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = format!("chain: {} at byte 0: ", active.display());
    assert!(run.stdout.contains(&expected), "{run:?}");
    assert!(run.stdout.contains("is missing"), "{run:?}");

    let run = ringlog_with_stdin(&["append", arg(dir.path())], b"after the loss\n");
    let line = one_error_line(&run, 1);
    assert!(line.contains(arg(&active)), "{line}");
    assert!(line.contains("restore"), "{line}");
    assert_eq!(run.stdout, "", "{run:?}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn verify_blames_damaged_data_not_a_correct_index() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2000);
    let first = segment_files(dir.path())[0].clone();
    flip_bit(&first, 30_000); // a payload byte in the middle of a sealed segment
    let run = ringlog(&["verify", arg(dir.path()), "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "corruption", "{report}");
    assert_eq!(problems[0]["path"], arg(&first));
    assert!(
        problems[0]["repair_action"]
            .as_str()
            .unwrap()
            .starts_with("repair refuses"),
        "{report}"
    );
}
