//! Snapshots beside the log (`Log::save_snapshot`, `Log::latest_snapshot`): durable
//! when saved, the newest intact one wins, a crash mid-save leaves the previous one.

use ringlog::{Error, Log, Options};

fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, Options::default().segment_bytes(1 << 20)).unwrap()
}

fn snap_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_newest_snapshot_survives_a_reopen_and_two_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(log.latest_snapshot().unwrap(), None);
    for i in 0..5u64 {
        log.append(&i.to_le_bytes()).unwrap();
        log.save_snapshot(log.next_offset(), format!("state {i}").as_bytes())
            .unwrap();
    }
    drop(log);
    let log = open(dir.path());
    let snapshot = log.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (snapshot.offset(), snapshot.bytes()),
        (5, b"state 4".as_slice())
    );
    assert_eq!(snap_files(dir.path()).len(), 2);
    let reader = Log::open_read_only(dir.path(), Options::default()).unwrap();
    assert_eq!(reader.latest_snapshot().unwrap().unwrap().offset(), 5);
}

#[test]
fn a_snapshot_past_the_end_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(b"one").unwrap();
    assert!(matches!(
        log.save_snapshot(2, b"future"),
        Err(Error::OffsetOutOfRange { offset: 2, .. })
    ));
    assert_eq!(log.latest_snapshot().unwrap(), None);
    let reader = Log::open_read_only(dir.path(), Options::default()).unwrap();
    assert!(matches!(
        reader.save_snapshot(0, b"x"),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(b"a").unwrap();
    log.save_snapshot(1, b"first").unwrap();
    log.append(b"b").unwrap();
    log.save_snapshot(2, b"second").unwrap();
    let files = snap_files(dir.path());
    let newest = files.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(newest, &bytes).unwrap();
    let snapshot = log.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (snapshot.offset(), snapshot.bytes()),
        (1, b"first".as_slice())
    );
    // Both damaged: an error naming the file, not a silent None.
    let oldest = files.first().unwrap();
    std::fs::write(oldest, b"garbage").unwrap();
    match log.latest_snapshot() {
        Err(Error::Corruption { segment, .. }) => {
            assert!(segment.ends_with(newest.file_name().unwrap()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_crash_mid_save_leaves_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(b"a").unwrap();
    log.save_snapshot(1, b"kept").unwrap();
    // What a crash during a save leaves: a temporary file, whole or torn, never renamed.
    let tmp = dir.path().join("snapshots").join("+999.0.snap.tmp");
    std::fs::write(&tmp, b"RLSNAP\x01\0torn").unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.latest_snapshot().unwrap().unwrap().bytes(), b"kept");
    log.append(b"b").unwrap();
    log.save_snapshot(2, b"next").unwrap();
    assert_eq!(log.latest_snapshot().unwrap().unwrap().bytes(), b"next");
    assert!(!tmp.exists(), "the crashed save's temporary file is left");
    let report = ringlog::verify(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn verify_reports_a_damaged_snapshot_and_one_ahead_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(b"a").unwrap();
    log.save_snapshot(1, b"good").unwrap();
    drop(log);
    assert!(ringlog::verify(dir.path()).unwrap().problems.is_empty());
    let snapshot = snap_files(dir.path()).pop().unwrap();
    // A snapshot of records the log does not hold (a copy from elsewhere, or a log that
    // lost its tail).
    let ahead = dir.path().join("snapshots").join(format!("{:020}.snap", 9));
    let log = open(dir.path());
    for _ in 0..9 {
        log.append(b"x").unwrap();
    }
    log.save_snapshot(9, b"ahead").unwrap();
    log.truncate_from(2).unwrap();
    drop(log);
    let report = ringlog::verify(dir.path()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path == ahead && p.message.contains("ends at 2")),
        "{:?}",
        report.problems
    );
    let mut bytes = std::fs::read(&snapshot).unwrap();
    bytes[42] ^= 0xFF;
    std::fs::write(&snapshot, bytes).unwrap();
    let report = ringlog::verify(dir.path()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path == snapshot && p.message.contains("damaged snapshot")),
        "{:?}",
        report.problems
    );
}
