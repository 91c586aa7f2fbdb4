//! Trimming the start and truncating the end of a log (docs/design.md 4.9): what reads,
//! iterators, followers and a reopen see afterwards, under every durability mode.

use std::path::Path;
use std::time::Duration;

use ringlog::{Durability, Error, Log, Options};

const SEGMENT_BYTES: u64 = 64 << 10;

fn opts(durability: Durability) -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(durability)
}

const MODES: [Durability; 3] = [
    Durability::Sync,
    Durability::Interval(Duration::from_millis(5)),
    Durability::None,
];

/// The payload of record `offset` in life `life` (1 before a cut, 2 after).
fn payload(offset: u64, life: u8) -> Vec<u8> {
    let len = 200 + (offset as usize * 131) % 1500;
    let mut out = vec![life; len];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

fn fill(log: &Log, count: u64, life: u8) {
    for _ in 0..count {
        let next = log.next_offset();
        assert_eq!(log.append(&payload(next, life)).unwrap(), next);
    }
    log.sync().unwrap();
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

/// Every record from `first_offset()` to the read watermark, checked against `life_of`.
fn check_contents(log: &Log, life_of: impl Fn(u64) -> u8, context: &str) {
    let first = log.first_offset();
    let mut expected = first;
    for record in log.iter(first) {
        let record = record.unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(record.offset(), expected, "{context}");
        assert_eq!(
            record.payload(),
            payload(expected, life_of(expected)).as_slice(),
            "{context}: wrong bytes at {expected}"
        );
        expected += 1;
    }
    assert_eq!(
        expected,
        log.next_offset(),
        "{context}: iteration ended early"
    );
}

#[test]
fn trim_before_drops_whole_segments_and_hides_the_rest_across_reopen() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), opts(mode)).unwrap();
        fill(&log, 400, 1);
        let segments_before = segment_files(dir.path()).len();
        assert!(segments_before >= 5, "{segments_before} segments");
        assert_eq!(log.trim_before(250).unwrap(), 250);
        assert_eq!(log.first_offset(), 250);
        match log.read(249) {
            Err(Error::OffsetOutOfRange { offset, first, .. }) => {
                assert_eq!((offset, first), (249, 250));
            }
            other => panic!("{mode:?}: read below the start: {other:?}"),
        }
        assert_eq!(log.read(250).unwrap().payload(), payload(250, 1));
        assert!(segment_files(dir.path()).len() < segments_before);
        // Trimming lower again changes nothing.
        assert_eq!(log.trim_before(10).unwrap(), 250);
        check_contents(&log, |_| 1, "after trim");
        log.close().unwrap();

        let log = Log::open(dir.path(), opts(mode)).unwrap();
        assert_eq!((log.first_offset(), log.next_offset()), (250, 400));
        check_contents(&log, |_| 1, "reopened");
        let reader = Log::open_read_only(dir.path(), opts(mode)).unwrap();
        assert_eq!(reader.first_offset(), 250);
        assert!(reader.read(249).is_err());
        assert_eq!(reader.read(250).unwrap().payload(), payload(250, 1));
        fill(&log, 10, 1);
        check_contents(&log, |_| 1, "appended after trim");
        let report = ringlog::verify(dir.path()).unwrap();
        assert!(
            report.problems.is_empty(),
            "{mode:?}: {:?}",
            report.problems
        );
    }
}

#[test]
fn trim_past_the_end_empties_the_log_and_continues_there() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), opts(mode)).unwrap();
        fill(&log, 150, 1);
        assert_eq!(log.trim_before(1_000).unwrap(), 1_000);
        assert_eq!((log.first_offset(), log.next_offset()), (1_000, 1_000));
        assert!(log.durable_offset() >= 1_000);
        assert_eq!(log.iter(1_000).count(), 0);
        assert_eq!(log.append(&payload(1_000, 2)).unwrap(), 1_000);
        log.sync().unwrap();
        // The old segments are gone: the new one (and perhaps its spare) remain.
        assert!(
            segment_files(dir.path()).len() <= 2,
            "{:?}",
            segment_files(dir.path())
        );
        drop(log);
        let log = Log::open(dir.path(), opts(mode)).unwrap();
        assert_eq!((log.first_offset(), log.next_offset()), (1_000, 1_001));
        check_contents(&log, |_| 2, "reopened after a restart");
        let report = ringlog::verify(dir.path()).unwrap();
        assert!(
            report.problems.is_empty(),
            "{mode:?}: {:?}",
            report.problems
        );
    }
}

#[test]
fn truncate_from_cuts_the_end_and_the_next_append_takes_the_offset() {
    for mode in MODES {
        // In the active segment, across segments, at a segment's base, everything.
        for cut in [395, 120, 0] {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(dir.path(), opts(mode)).unwrap();
            fill(&log, 400, 1);
            log.truncate_from(cut).unwrap();
            assert_eq!(log.next_offset(), cut, "{mode:?} cut {cut}");
            assert!(log.durable_offset() >= cut);
            assert!(
                log.read(cut).is_err(),
                "{mode:?} cut {cut}: old record readable"
            );
            fill(&log, 30, 2);
            let life = |o: u64| if o < cut { 1 } else { 2 };
            check_contents(&log, life, &format!("{mode:?} cut {cut}"));
            drop(log);
            let log = Log::open(dir.path(), opts(mode)).unwrap();
            assert_eq!(log.next_offset(), cut + 30, "{mode:?} cut {cut} reopened");
            check_contents(&log, life, &format!("{mode:?} cut {cut} reopened"));
            let report = ringlog::verify(dir.path()).unwrap();
            assert!(
                report.problems.is_empty(),
                "{mode:?} cut {cut}: {:?}",
                report.problems
            );
        }
    }
}

#[test]
fn truncate_at_a_segment_boundary_and_twice_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    fill(&log, 300, 1);
    let boundary = log.segments().unwrap()[2].base_offset;
    log.truncate_from(boundary).unwrap();
    fill(&log, 5, 2);
    log.truncate_from(boundary - 3).unwrap();
    fill(&log, 5, 3);
    let life = |o: u64| if o < boundary - 3 { 1 } else { 3 };
    check_contents(&log, life, "two truncations");
    drop(log);
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!(log.next_offset(), boundary + 2);
    check_contents(&log, life, "two truncations, reopened");
}

#[test]
fn truncate_refuses_offsets_outside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    fill(&log, 50, 1);
    log.trim_before(10).unwrap();
    assert!(matches!(
        log.truncate_from(51),
        Err(Error::OffsetOutOfRange { offset: 51, .. })
    ));
    assert!(matches!(
        log.truncate_from(9),
        Err(Error::OffsetOutOfRange { offset: 9, .. })
    ));
    log.truncate_from(50).unwrap();
    assert_eq!(log.next_offset(), 50);
    check_contents(&log, |_| 1, "nothing cut");
}

#[test]
fn a_follower_past_the_cut_is_told_and_goes_on_with_the_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    fill(&log, 100, 1);
    let mut behind = log.follow(40).unwrap();
    let mut ahead = log.follow(0).unwrap();
    for _ in 0..90 {
        ahead.next().unwrap().unwrap();
    }
    log.truncate_from(60).unwrap();
    fill(&log, 5, 2);
    match ahead.next() {
        Some(Err(Error::Truncated { at: 60 })) => {}
        other => panic!("follower past the cut: {other:?}"),
    }
    for expected in 60..65 {
        let record = ahead.next().unwrap().unwrap();
        assert_eq!(record.offset(), expected);
        assert_eq!(record.payload(), payload(expected, 2));
    }
    // The follower behind the cut never sees it.
    for expected in 40..65 {
        let record = behind.next().unwrap().unwrap();
        assert_eq!(record.offset(), expected);
        let life = if expected < 60 { 1 } else { 2 };
        assert_eq!(record.payload(), payload(expected, life));
    }
    assert!(behind.next_timeout(Duration::from_millis(20)).is_none());
}

#[test]
fn records_of_deleted_segments_stay_valid_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    fill(&log, 400, 1);
    let held = log.read(3).unwrap();
    let tail = log.read(390).unwrap();
    log.trim_before(300).unwrap();
    log.truncate_from(380).unwrap();
    fill(&log, 20, 2);
    let stats = log.stats();
    assert!(stats.pending_release_segments >= 1, "{stats:?}");
    assert!(stats.pending_release_bytes >= SEGMENT_BYTES);
    assert_eq!(held.payload(), payload(3, 1));
    assert_eq!(tail.payload(), payload(390, 1));
    drop(held);
    drop(tail);
    let stats = log.stats();
    assert_eq!(stats.pending_release_segments, 0, "{stats:?}");
    assert_eq!(log.read(390).unwrap().payload(), payload(390, 2));
}

#[test]
fn an_iterator_below_a_trim_is_told_and_moves_to_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    fill(&log, 300, 1);
    let mut iter = log.iter(0);
    assert_eq!(iter.next().unwrap().unwrap().offset(), 0);
    log.trim_before(200).unwrap();
    match iter.next() {
        Some(Err(Error::OffsetOutOfRange {
            offset: 1,
            first: 200,
            ..
        })) => {}
        other => panic!("iterator below the trim: {other:?}"),
    }
    assert_eq!(iter.next().unwrap().unwrap().offset(), 200);
}

#[test]
fn appends_racing_a_truncation_get_offsets_that_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    fill(&log, 200, 1);
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let log = log.clone();
            scope.spawn(move || {
                for _ in 0..200 {
                    let body = vec![10 + t; 100];
                    let offset = log.append(&body).unwrap();
                    // Either it is still there, or a truncation removed it.
                    if let Ok(record) = log.read(offset) {
                        if record.payload() == body.as_slice() {
                            continue;
                        }
                    }
                }
            });
        }
        for cut in [150u64, 140, 130] {
            std::thread::sleep(Duration::from_millis(2));
            log.truncate_from(cut).unwrap();
        }
    });
    let next = log.next_offset();
    let mut expected = 0;
    for record in log.iter(0) {
        assert_eq!(record.unwrap().offset(), expected);
        expected += 1;
    }
    assert_eq!(expected, next);
    drop(log);
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!(log.next_offset(), next);
}

#[test]
fn a_trim_past_the_end_racing_appends_never_repeats_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    fill(&log, 50, 1);
    let offsets = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..300 {
                    let offset = log.append(&[9u8; 64]).unwrap();
                    offsets.lock().unwrap().push(offset);
                }
            });
        }
        for _ in 0..20 {
            let target = log.next_offset() + 3;
            let first = log.trim_before(target).unwrap();
            assert!(first >= target.min(log.next_offset()));
        }
    });
    let mut offsets = offsets.into_inner().unwrap();
    let total = offsets.len();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), total, "an offset was handed out twice");
    let next = log.next_offset();
    drop(log);
    let log = Log::open(dir.path(), opts(Durability::Sync)).unwrap();
    assert_eq!(log.next_offset(), next);
    let mut expected = log.first_offset();
    for record in log.iter(expected) {
        assert_eq!(record.unwrap().offset(), expected);
        expected += 1;
    }
    assert_eq!(expected, next);
}
