//! Backups of live logs and stores (docs/design.md 4.10): the copy opens, verifies clean
//! and holds exactly the records below the durable watermark of the backup's snapshot,
//! also beside a writer, trims, truncations and retention running during it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use ringlog::{Durability, Error, Log, Options, Retention, Store};

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

/// The payload of record `offset` in life `life` (1 before a truncation, 2 after).
fn payload(offset: u64, life: u8) -> Vec<u8> {
    let len = 100 + (offset as usize * 131) % 900;
    let mut out = vec![life; len];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

fn fill(log: &Log, count: u64, life: u8) {
    for _ in 0..count {
        let next = log.next_offset();
        assert_eq!(log.append(&payload(next, life)).unwrap(), next);
    }
}

/// Verifies the copy in `dir`, opens it and checks that it holds exactly `first..next`
/// with the right bytes (`life_of` says which life each offset is from).
fn check_copy(dir: &Path, first: u64, next: u64, life_of: impl Fn(u64) -> u8, context: &str) {
    let verified = ringlog::verify(dir).unwrap();
    assert!(
        verified.is_clean(),
        "{context}: verify found {:?}",
        verified.problems
    );
    assert_eq!(
        (verified.first_offset, verified.next_offset),
        (first, next),
        "{context}: verify's range"
    );
    let copy = Log::open(dir, Options::default()).unwrap();
    assert_eq!(
        (copy.first_offset(), copy.next_offset()),
        (first, next),
        "{context}: the copy's range"
    );
    let mut expected = first;
    for record in copy.iter(first) {
        let record = record.unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(record.offset(), expected, "{context}");
        assert_eq!(
            record.payload(),
            payload(expected, life_of(expected)).as_slice(),
            "{context}: wrong bytes at {expected}"
        );
        expected += 1;
    }
    assert_eq!(expected, next, "{context}: records missing at the end");
    if first > 0 {
        assert!(
            matches!(copy.read(first - 1), Err(Error::OffsetOutOfRange { .. })),
            "{context}: a trimmed record is readable in the copy"
        );
    }
    // The copy is a working log: it takes appends where it ends.
    assert_eq!(copy.append(b"after").unwrap(), next, "{context}");
    copy.close().unwrap();
}

#[test]
fn a_backup_holds_every_durable_record_and_links_sealed_segments() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("live"), opts(mode)).unwrap();
        fill(&log, 500, 1);
        log.sync().unwrap();
        fill(&log, 7, 1);
        let durable = log.durable_offset();
        let sealed = log.segments().unwrap().len() as u64 - 1;
        assert!(sealed >= 3, "the workload must roll over");
        let copy = dir.path().join("copy");
        let report = log.backup(&copy).unwrap();
        let context = format!("{mode:?}");
        let copied = &report.logs[0];
        assert!(copied.next_offset >= durable, "{context}");
        assert!(copied.next_offset <= log.next_offset(), "{context}");
        assert_eq!(copied.segments_count, sealed + 1, "{context}");
        assert_eq!(report.files_linked, sealed, "{context}: same file system");
        assert_eq!(report.link_fallbacks, 0, "{context}");
        assert!(!copy.join("ringlog.lock").exists(), "{context}");
        assert!(!copy.join("ringlog.control").exists(), "{context}");
        check_copy(&copy, 0, copied.next_offset, |_| 1, &context);
        // The live log goes on, and the copy does not share its future.
        fill(&log, 300, 1);
        log.close().unwrap();
        let reopened = Log::open_read_only(&copy, Options::default()).unwrap();
        assert_eq!(reopened.next_offset(), copied.next_offset + 1, "{context}");
    }
}

#[test]
fn the_active_segment_is_cut_at_the_durable_watermark() {
    let dir = tempfile::tempdir().unwrap();
    // A long interval: appends stay unflushed until the explicit sync.
    let log = Log::open(
        dir.path().join("live"),
        opts(Durability::Interval(Duration::from_secs(3600))),
    )
    .unwrap();
    fill(&log, 40, 1);
    log.sync().unwrap();
    fill(&log, 10, 1);
    let durable = log.durable_offset();
    assert!(durable < 50, "appends after the sync must be unflushed");
    let copy = dir.path().join("copy");
    let report = log.backup(&copy).unwrap();
    assert_eq!(report.logs[0].next_offset, durable);
    // Full size, zeros past the durable data (before the copy is opened: its writer
    // prepares a spare).
    let segments: Vec<_> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let bytes = std::fs::read(&segments[0]).unwrap();
    assert_eq!(bytes.len() as u64, SEGMENT_BYTES);
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    // The unflushed appends reach the live file when the writer gets to them (it writes
    // small unsynced batches lazily): wait for them (a bound, not a timing).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let live = loop {
        let live = std::fs::read(dir.path().join("live/00000000000000000000.seg")).unwrap();
        let live_end = live.iter().rposition(|b| *b != 0).unwrap() + 1;
        if live_end > end || std::time::Instant::now() > deadline {
            break live;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(end < live.iter().rposition(|b| *b != 0).unwrap() + 1);
    assert_eq!(bytes[..end], live[..end]);
    check_copy(&copy, 0, durable, |_| 1, "interval");
}

#[test]
fn a_backup_beside_a_writer_thread_is_a_clean_prefix() {
    for mode in [Durability::Sync, Durability::None] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("live"), opts(mode)).unwrap();
        fill(&log, 50, 1);
        log.sync().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut appended = 0u64;
                while !stop.load(SeqCst) && appended < 200_000 {
                    let next = log.next_offset();
                    log.append(&payload(next, 1)).unwrap();
                    appended += 1;
                }
            })
        };
        for round in 0..6 {
            // Let the writer get a segment further between backups.
            let target = log.next_offset() + 150;
            while log.next_offset() < target && !writer.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let durable_before = log.durable_offset();
            let copy = dir.path().join(format!("copy-{round}"));
            let report = log.backup(&copy).unwrap();
            let next_after = log.next_offset();
            let copied = &report.logs[0];
            let context = format!("{mode:?} round {round}");
            assert!(copied.next_offset >= durable_before, "{context}");
            assert!(copied.next_offset <= next_after, "{context}");
            check_copy(&copy, 0, copied.next_offset, |_| 1, &context);
        }
        stop.store(true, SeqCst);
        writer.join().unwrap();
        assert!(log.segments().unwrap().len() > 2, "the writer rolled over");
    }
}

#[test]
fn a_backup_after_trim_and_truncate_keeps_the_start_and_the_cut() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("live"), opts(mode)).unwrap();
        fill(&log, 400, 1);
        log.sync().unwrap();
        // Inside a segment: the copy must record the start.
        let segments = log.segments().unwrap();
        let start = segments[2].base_offset + 3;
        assert_eq!(log.trim_before(start).unwrap(), start);
        log.truncate_from(350).unwrap();
        fill(&log, 60, 2);
        log.sync().unwrap();
        let copy = dir.path().join("copy");
        let report = log.backup(&copy).unwrap();
        let context = format!("{mode:?}");
        assert_eq!(report.logs[0].first_offset, start, "{context}");
        assert_eq!(report.logs[0].next_offset, 410, "{context}");
        assert!(copy.join("log.start").exists(), "{context}");
        check_copy(&copy, start, 410, |o| if o < 350 { 1 } else { 2 }, &context);

        // Trimmed past the end: the copy is empty and continues there.
        log.trim_before(1_000).unwrap();
        let copy = dir.path().join("copy-empty");
        let report = log.backup(&copy).unwrap();
        assert_eq!(
            (report.logs[0].first_offset, report.logs[0].next_offset),
            (1_000, 1_000),
            "{context}"
        );
        check_copy(&copy, 1_000, 1_000, |_| 1, &context);
    }
}

#[test]
fn a_backup_during_trims_and_retention_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = opts(Durability::Sync).retention(Retention::default().max_segments(3));
    let log = Log::open(dir.path().join("live"), options).unwrap();
    fill(&log, 300, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut appended = 0u64;
            while !stop.load(SeqCst) && appended < 100_000 {
                let next = log.next_offset();
                log.append(&payload(next, 1)).unwrap();
                appended += 1;
                if appended % 97 == 0 {
                    // Trims to just past the first segment, now and then.
                    let target = log.first_offset() + 20;
                    log.trim_before(target.min(log.durable_offset())).unwrap();
                }
            }
        })
    };
    for round in 0..8 {
        let copy = dir.path().join(format!("copy-{round}"));
        let report = log.backup(&copy).unwrap();
        let copied = &report.logs[0];
        check_copy(
            &copy,
            copied.first_offset,
            copied.next_offset,
            |_| 1,
            &format!("round {round}"),
        );
    }
    stop.store(true, SeqCst);
    writer.join().unwrap();
    assert!(log.first_offset() > 0, "retention or trims moved the start");
}

#[test]
fn a_backup_keeps_consumer_positions() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("live"), opts(Durability::Sync)).unwrap();
    fill(&log, 100, 1);
    log.consumer("indexer").unwrap().commit(42).unwrap();
    log.consumer("idle").unwrap();
    // A leftover of an interrupted creation is not a consumer, and not copied.
    std::fs::write(dir.path().join("live/consumers/ghost+creating"), b"x").unwrap();
    let copy = dir.path().join("copy");
    let report = log.backup(&copy).unwrap();
    assert_eq!(report.logs[0].consumers_count, 2);
    assert!(!copy.join("consumers/ghost+creating").exists());
    check_copy(&copy, 0, 100, |_| 1, "consumers");
    let copy = Log::open(&copy, Options::default()).unwrap();
    let mut consumers = copy.consumers().unwrap();
    consumers.sort();
    assert_eq!(
        consumers,
        vec![
            ("idle".to_string(), None),
            ("indexer".to_string(), Some(42))
        ]
    );
}

#[test]
fn a_read_only_handle_backs_up_what_the_directory_holds() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let log = Log::open(&live, opts(Durability::Sync)).unwrap();
    fill(&log, 300, 1);
    let reader = Log::open_read_only(&live, Options::default()).unwrap();
    // The reader's view is older than the directory: the backup looks again.
    fill(&log, 50, 1);
    let copy = dir.path().join("copy");
    let report = reader.backup(&copy).unwrap();
    assert_eq!(report.logs[0].next_offset, 350);
    check_copy(&copy, 0, 350, |_| 1, "read-only");
}

#[test]
fn a_store_backup_copies_every_topic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("live"), Options::default()).unwrap();
    let names = ["alpha", "beta", "gamma"];
    for (i, name) in names.iter().enumerate() {
        let topic = if i == 2 {
            store
                .topic_with(name, opts(Durability::Sync).segment_growth(false))
                .unwrap()
        } else {
            store.topic(name).unwrap()
        };
        fill(&topic, 100 * (i as u64 + 1), 1);
        topic.sync().unwrap();
    }
    store
        .topic("alpha")
        .unwrap()
        .consumer("c")
        .unwrap()
        .commit(5)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (beta, stop) = (store.topic("beta").unwrap(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(SeqCst) && beta.next_offset() < 50_000 {
                let next = beta.next_offset();
                beta.append(&payload(next, 1)).unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let copy = dir.path().join("copy");
    let report = store.backup(&copy).unwrap();
    stop.store(true, SeqCst);
    writer.join().unwrap();
    assert_eq!(report.logs.len(), 3);
    let copied = Store::open(&copy, Options::default()).unwrap();
    assert_eq!(copied.topics().unwrap(), names);
    for logged in &report.logs {
        let name = logged.topic.clone().unwrap();
        let topic_dir = copy.join("topics").join(&name);
        let verified = ringlog::verify(&topic_dir).unwrap();
        assert!(verified.is_clean(), "{name}: {:?}", verified.problems);
        let topic = copied.topic(&name).unwrap();
        assert_eq!(topic.next_offset(), logged.next_offset, "{name}");
        for offset in 0..logged.next_offset {
            assert_eq!(
                topic.read(offset).unwrap().payload(),
                payload(offset, 1).as_slice(),
                "{name} at {offset}"
            );
        }
    }
    assert!(report.logs[1].next_offset >= 200);
    assert_eq!(report.logs[0].next_offset, 100);
    assert_eq!(report.logs[2].next_offset, 300);
    // Own options travel with the topic.
    assert_eq!(
        std::fs::read(copy.join("topics/gamma/topic.options")).unwrap(),
        std::fs::read(dir.path().join("live/topics/gamma/topic.options")).unwrap()
    );
    assert_eq!(
        copied.topic("alpha").unwrap().consumers().unwrap(),
        vec![("c".to_string(), Some(5))]
    );
    // A backup creates no topic of the live store.
    assert_eq!(store.topics().unwrap(), names);
}

#[test]
fn a_read_only_store_backs_up_beside_its_writer() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = Store::open(&live, Options::default()).unwrap();
    fill(&store.topic("one").unwrap(), 80, 1);
    fill(&store.topic("two").unwrap(), 30, 1);
    store.topic("one").unwrap().sync().unwrap();
    store.topic("two").unwrap().sync().unwrap();
    let reader = Store::open_read_only(&live).unwrap();
    let copy = dir.path().join("copy");
    let report = reader.backup(&copy).unwrap();
    let ranges: Vec<_> = report
        .logs
        .iter()
        .map(|l| (l.topic.clone().unwrap(), l.next_offset))
        .collect();
    assert_eq!(ranges, vec![("one".into(), 80), ("two".into(), 30)]);
    drop(store);
    let copied = Store::open(&copy, Options::default()).unwrap();
    assert_eq!(copied.topic("one").unwrap().next_offset(), 80);
}

#[test]
fn a_backup_refuses_a_destination_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("live"), opts(Durability::Sync)).unwrap();
    fill(&log, 10, 1);
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), b"mine").unwrap();
    let err = log.backup(&dest).unwrap_err();
    assert!(
        matches!(err, Error::BackupDestination { .. }),
        "wrong error: {err}"
    );
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        1,
        "nothing added"
    );
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        log.backup(&file),
        Err(Error::BackupDestination { .. })
    ));
    // Inside the log's own directory: refused, and nothing is left there.
    let inside = dir.path().join("live/backup");
    let err = log.backup(&inside).unwrap_err();
    assert!(err.to_string().contains("is inside"), "{err}");
    assert!(!inside.exists());
    // An empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(log.backup(&empty).unwrap().logs[0].next_offset, 10);
}

#[test]
fn a_backup_to_another_file_system_copies_instead_of_linking() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm to back up to");
        return;
    };
    let device = |p: &Path| std::fs::metadata(p).unwrap().dev();
    if device(dir.path()) == device(other.path()) {
        eprintln!("skipped: /dev/shm is on the same file system as the temporary directory");
        return;
    }
    let log = Log::open(dir.path().join("live"), opts(Durability::Sync)).unwrap();
    fill(&log, 400, 1);
    let sealed = log.segments().unwrap().len() as u64 - 1;
    let copy = other.path().join("copy");
    let report = log.backup(&copy).unwrap();
    assert_eq!(report.files_linked, 0);
    assert_eq!(report.link_fallbacks, sealed);
    check_copy(&copy, 0, 400, |_| 1, "another file system");
}

#[test]
fn a_backup_during_truncations_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    // `Sync`: under `None` and `Interval` a background flush racing a truncation
    // poisons the log (tests/cut_races.rs).
    let log = Log::open(dir.path().join("live"), opts(Durability::Sync)).unwrap();
    fill(&log, 200, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(SeqCst) && round < 20_000 {
                round += 1;
                fill(&log, 30, (round % 200) as u8 + 2);
                // Cut back the last few records, or trim a few off the start.
                let next = log.next_offset();
                match round % 6 {
                    0 => log.truncate_from(next - 7).unwrap(),
                    1 | 3 => {
                        log.trim_before(log.first_offset() + 5).unwrap();
                    }
                    _ => log.sync().unwrap(),
                }
            }
        })
    };
    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(5));
        let copy = dir.path().join(format!("copy-{round}"));
        let report = log.backup(&copy).unwrap();
        let copied = &report.logs[0];
        let context = format!("round {round}");
        let verified = ringlog::verify(&copy).unwrap();
        assert!(verified.is_clean(), "{context}: {:?}", verified.problems);
        let reopened = Log::open(&copy, Options::default()).unwrap();
        assert_eq!(
            (reopened.first_offset(), reopened.next_offset()),
            (copied.first_offset, copied.next_offset),
            "{context}"
        );
        let mut expected = copied.first_offset;
        for record in reopened.iter(copied.first_offset) {
            let record = record.unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(record.offset(), expected, "{context}");
            assert_eq!(
                record.payload()[..8],
                expected.to_le_bytes(),
                "{context}: the bytes of another record at {expected}"
            );
            expected += 1;
        }
        assert_eq!(expected, copied.next_offset, "{context}");
    }
    stop.store(true, SeqCst);
    writer.join().unwrap();
}

#[test]
fn a_store_backup_beside_topic_removals_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("live"), Options::default()).unwrap();
    fill(&store.topic("kept").unwrap(), 50, 1);
    store.topic("kept").unwrap().sync().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) && n < 10_000 {
                let name = format!("tmp-{}", n % 4);
                let topic = store.topic(&name).unwrap();
                fill(&topic, 3, 1);
                topic.sync().unwrap();
                store.remove_topic(&name).unwrap();
                n += 1;
            }
            n
        })
    };
    for round in 0..10 {
        let copy = dir.path().join(format!("copy-{round}"));
        let report = store.backup(&copy).unwrap();
        let copied = Store::open(&copy, Options::default()).unwrap();
        let names = copied.topics().unwrap();
        assert!(names.contains(&"kept".to_string()), "round {round}");
        assert_eq!(names.len(), report.logs.len(), "round {round}");
        for logged in &report.logs {
            let name = logged.topic.clone().unwrap();
            let verified = ringlog::verify(copy.join("topics").join(&name)).unwrap();
            assert!(
                verified.is_clean(),
                "round {round} {name}: {:?}",
                verified.problems
            );
            let topic = copied.topic(&name).unwrap();
            assert_eq!(
                topic.next_offset(),
                logged.next_offset,
                "round {round} {name}"
            );
            for offset in 0..logged.next_offset {
                assert_eq!(
                    topic.read(offset).unwrap().payload(),
                    payload(offset, 1).as_slice()
                );
            }
        }
        copied.close().unwrap();
    }
    stop.store(true, SeqCst);
    assert!(churn.join().unwrap() > 0);
}

#[test]
fn snapshots_the_copy_holds_the_records_for_are_copied() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("live"), opts(Durability::Sync)).unwrap();
    fill(&log, 20, 1);
    log.save_snapshot(10, b"state at 10").unwrap();
    log.save_snapshot(20, b"state at 20").unwrap();
    let copy = dir.path().join("copy");
    log.backup(&copy).unwrap();
    let restored = Log::open(&copy, Options::default()).unwrap();
    let snapshot = restored.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (snapshot.offset(), snapshot.bytes()),
        (20, b"state at 20".as_slice())
    );
}
