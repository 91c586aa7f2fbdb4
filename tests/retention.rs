//! Retention (docs/design.md 4.9): whole segments go by bytes, age and count, never the
//! active one, never what a committed consumer still needs; readers keep what they hold.

use std::time::{Duration, Instant};

use ringlog::{Durability, Log, Options, Retention, RetentionReason};

const SEGMENT_BYTES: u64 = 64 << 10;

fn opts(retention: Retention) -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Sync)
        .retention(retention)
}

fn body(offset: u64) -> Vec<u8> {
    let mut out = vec![(offset % 251) as u8; 1000];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

fn fill(log: &Log, count: u64) {
    for _ in 0..count {
        let next = log.next_offset();
        log.append(&body(next)).unwrap();
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn check_readable(log: &Log) {
    let first = log.first_offset();
    let mut expected = first;
    for record in log.iter(first) {
        let record = record.unwrap();
        assert_eq!(record.offset(), expected);
        assert_eq!(record.payload(), body(expected).as_slice());
        expected += 1;
    }
    assert_eq!(expected, log.next_offset());
}

#[test]
fn max_segments_keeps_the_newest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Retention::default().max_segments(3))).unwrap();
    fill(&log, 600);
    let report = log.apply_retention().unwrap();
    assert!(log.segments().unwrap().len() <= 3);
    assert!(report
        .removed
        .iter()
        .all(|r| r.reason == RetentionReason::MaxSegments));
    assert_eq!(report.first_offset, log.first_offset());
    assert_eq!(log.first_offset(), log.segments().unwrap()[0].base_offset);
    check_readable(&log);
    drop(log);
    let log = Log::open(dir.path(), opts(Retention::default())).unwrap();
    assert!(log.segments().unwrap().len() <= 3);
    check_readable(&log);
}

#[test]
fn max_bytes_bounds_the_files_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 5 * SEGMENT_BYTES;
    let log = Log::open(dir.path(), opts(Retention::default().max_bytes(max_bytes))).unwrap();
    for _ in 0..10 {
        fill(&log, 200);
        let report = log.apply_retention().unwrap();
        assert!(report
            .removed
            .iter()
            .all(|r| r.reason == RetentionReason::MaxBytes));
        let used = dir_bytes(dir.path());
        // The bound: max_bytes plus the active segment and its spare (and their indexes).
        assert!(
            used <= max_bytes + 2 * SEGMENT_BYTES + 2 * 4096,
            "{used} bytes on disk, max {max_bytes}"
        );
        assert!(report.bytes_after <= report.bytes_before);
    }
    check_readable(&log);
}

#[test]
fn max_age_goes_by_the_newest_record_of_each_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        opts(Retention::default().max_age(Duration::from_secs(3600))),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let old = now - 2 * 3600 * 1000;
    for _ in 0..300 {
        let next = log.next_offset();
        log.append_at(old, &body(next)).unwrap();
    }
    let old_end = log.next_offset();
    fill(&log, 5);
    // The background pass after each rollover may have gone first.
    let report = log.apply_retention().unwrap();
    assert!(report
        .removed
        .iter()
        .all(|r| r.reason == RetentionReason::MaxAge));
    assert!(report.removed.iter().all(|r| r.end_offset <= old_end));
    assert!(log.first_offset() > 0, "no old segment went");
    // The segment holding the newest old records also holds new ones: it stays.
    assert!(log.first_offset() <= old_end);
    assert!(log.segments().unwrap().len() <= 2);
    check_readable(&log);
}

#[test]
fn a_committed_consumer_keeps_what_it_still_needs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        opts(Retention::default().max_segments(2).keep_consumers(true)),
    )
    .unwrap();
    let slow = log.consumer("slow").unwrap();
    let _never = log.consumer("never-committed").unwrap();
    fill(&log, 60);
    slow.commit(50).unwrap();
    fill(&log, 540);
    let report = log.apply_retention().unwrap();
    assert_eq!(report.kept_for_consumers, Some(50));
    assert!(log.first_offset() <= 50, "first {}", log.first_offset());
    assert_eq!(log.read(50).unwrap().payload(), body(50));
    // Once it moves on, its old records may go.
    slow.commit(590).unwrap();
    log.apply_retention().unwrap();
    assert!(log.first_offset() > 50);
    assert!(log.segments().unwrap().len() <= 2);
    check_readable(&log);
}

#[test]
fn retention_runs_in_the_background_after_rollovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Retention::default().max_segments(3))).unwrap();
    fill(&log, 2_000);
    // The housekeeper runs after each rollover: wait for it (a bound, not a timing).
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.segments().unwrap().len() > 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(log.segments().unwrap().len() <= 3);
    assert!(log.first_offset() > 0);
    check_readable(&log);
}

#[test]
fn a_reader_holding_records_of_deleted_segments_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Retention::default().max_segments(2))).unwrap();
    // Records held as they are appended: retention (also in the background) deletes
    // their segments under them.
    let mut held = Vec::new();
    for _ in 0..300 {
        let offset = log.append(&body(log.next_offset())).unwrap();
        if offset % 7 == 0 {
            held.push(log.read(offset).unwrap());
        }
    }
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            // A reader going through the log while retention deletes under it: every
            // record it gets is right, and a trimmed one is out of range, never wrong.
            let mut seen = 0u64;
            for _ in 0..20 {
                let first = log.first_offset();
                for record in log.iter(first).take(500) {
                    match record {
                        Ok(record) => {
                            assert_eq!(record.payload(), body(record.offset()).as_slice());
                            seen += 1;
                        }
                        Err(ringlog::Error::OffsetOutOfRange { .. }) => {}
                        Err(e) => panic!("reader: {e}"),
                    }
                }
            }
            seen
        })
    };
    for _ in 0..5 {
        fill(&log, 100);
        log.apply_retention().unwrap();
    }
    assert!(reader.join().unwrap() > 0);
    assert!(log.stats().pending_release_segments > 0);
    for record in &held {
        assert_eq!(record.payload(), body(record.offset()).as_slice());
    }
    drop(held);
    assert_eq!(log.stats().pending_release_segments, 0);
}
