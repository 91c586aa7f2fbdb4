//! Segment recycling (`Options::recycle_segments`, docs/design.md 4.9): removed segments'
//! files become new segments; their earlier records can never be read as new ones, after
//! any crash; nothing is recycled that a reader, a read-only handle or a hard link still
//! sees.

use std::path::{Path, PathBuf};

use ringlog::sim::{apply_crash, CrashMode, SimDisk};
use ringlog::{Durability, IoBackend, Log, Options, RecoveryPolicy, Retention};

const SEGMENT_BYTES: u64 = 64 << 10;

fn opts() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Sync)
        .recycle_segments(true)
        .retention(Retention::default().max_segments(3))
}

/// The same without retention: a background retention pass could trim while a check
/// reads.
fn steady() -> Options {
    opts().retention(Retention::default())
}

/// Record `offset` of life `life`: its size depends on the offset only, so a later life
/// writing the same offsets puts frames of the same size at the same positions.
fn body(offset: u64, life: u8) -> Vec<u8> {
    let len = 200 + (offset as usize * 131) % 900;
    let mut out = vec![life; len];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

fn check(log: &Log, life_of: impl Fn(u64) -> u8, context: &str) {
    let first = log.first_offset();
    let mut expected = first;
    for record in log.iter(first) {
        let record = record.unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(record.offset(), expected, "{context}");
        assert_eq!(
            record.payload(),
            body(expected, life_of(expected)).as_slice(),
            "{context}: wrong bytes at offset {expected}"
        );
        expected += 1;
    }
    assert_eq!(expected, log.next_offset(), "{context}: ended early");
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

fn free_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "free"))
        .collect();
    out.sort();
    out
}

/// The recycled flag of a segment file's header (format version 3: bit 31 of the word
/// at byte 56).
fn is_recycled(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let word = u32::from_le_bytes(bytes[56..60].try_into().unwrap());
    version >= 3 && word >> 31 == 1
}

/// Appends until `count` segments have been prepared from recycled files.
fn append_until_recycled(log: &Log, count: u64, life: u8) {
    let started = std::time::Instant::now();
    while log.stats().recycled_segments_count < count {
        let next = log.next_offset();
        log.append(&body(next, life)).unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no recycling after {} records: {:?}",
            log.next_offset(),
            log.stats()
        );
    }
}

#[test]
fn removed_segments_become_new_ones_and_every_record_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_until_recycled(&log, 5, 1);
    let recycled = segment_files(dir.path())
        .iter()
        .filter(|p| is_recycled(p))
        .count();
    assert!(recycled >= 1, "no recycled segment file in the log");
    // Never more files than the retention limit, a spare and two waiting for reuse.
    assert!(segment_files(dir.path()).len() + free_files(dir.path()).len() <= 3 + 1 + 2);
    let next = log.next_offset();
    log.close().unwrap();

    let log = Log::open(dir.path(), steady()).unwrap();
    assert_eq!(log.next_offset(), next);
    check(&log, |_| 1, "reopened");
    log.close().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_until_recycled(&log, 3, 1);
    log.close().unwrap();
    let log = Log::open(dir.path(), steady()).unwrap();
    check(&log, |_| 1, "after more recycling");
    log.close().unwrap();
    let report = ringlog::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn recycled_segments_open_strict_after_a_clean_close_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_until_recycled(&log, 4, 1);
    // Stop in the middle of a recycled segment.
    let next = log.next_offset();
    log.abandon();
    drop(log);
    let strict = steady().recovery(RecoveryPolicy::Strict);
    let log = Log::open(dir.path(), strict.clone()).unwrap();
    assert_eq!(log.next_offset(), next);
    check(&log, |_| 1, "after a crash");
    log.close().unwrap();
    let log = Log::open(dir.path(), strict).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.next_offset(), next);
}

/// The test: a recycled file full of valid old records, written again by a
/// later life at the same offsets with frames of the same sizes at the same positions
/// (a truncation takes the log back to where the recycled file's records began). Only
/// the nonce tells the lives apart; no old record may ever be read.
#[test]
fn a_recycled_file_full_of_valid_old_records_never_reads_as_new() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Sync)
        .recycle_segments(true);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    while log.segments().unwrap().len() < 6 {
        let next = log.next_offset();
        log.append(&body(next, 1)).unwrap();
    }
    // The third segment's records and everything after go: its file (full of valid
    // records of life 1) and the ones after it wait for reuse.
    let segments = log.segments().unwrap();
    let cut = segments[2].base_offset;
    log.truncate_from(cut).unwrap();
    assert!(log.stats().free_segment_files >= 1, "{:?}", log.stats());
    // Life 2 writes the same offsets with the same sizes; the truncation's new segment
    // is a fresh spare, the ones after it recycled files.
    append_until_recycled(&log, 2, 2);
    let life = |offset: u64| if offset < cut { 1 } else { 2 };
    check(&log, life, "live");
    let next = log.next_offset();
    log.abandon();
    drop(log);
    let log = Log::open(dir.path(), opts.clone().recovery(RecoveryPolicy::Strict)).unwrap();
    assert_eq!(log.next_offset(), next);
    check(&log, life, "after a crash");
    // Past the end, nothing: no old record of a recycled file is there to find.
    assert!(log.read(next).is_err());
    log.close().unwrap();
    assert!(ringlog::verify(dir.path()).unwrap().is_clean());
}

/// Crash states of appends into a recycled segment on the simulated disk: every write
/// and flush stopped in turn, unflushed writes dropped, kept, or torn; each state reopens
/// to every acknowledged record and nothing of the file's earlier life.
#[test]
fn crash_states_in_a_recycled_segment_keep_acknowledged_records_only() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    // A log whose spare is a recycled file, its active segment full of life 1.
    let sim_opts = opts().io(IoBackend::Pwrite);
    {
        let log = Log::open(&base, sim_opts.clone()).unwrap();
        append_until_recycled(&log, 2, 1);
        log.close().unwrap();
    }
    let start = {
        let log = Log::open(&base, sim_opts.clone()).unwrap();
        let next = log.next_offset();
        log.close().unwrap();
        next
    };
    const APPENDS: u64 = 120;
    // How many operations the appends make.
    let probe = root.path().join("probe");
    copy_dir(&base, &probe);
    let disk = SimDisk::new();
    let log = Log::open_with_backend(&probe, sim_opts.clone(), disk.backend()).unwrap();
    let before = disk.operations_count();
    for offset in start..start + APPENDS {
        log.append(&body(offset, 2)).unwrap();
    }
    let ops = disk.operations_count() - before;
    log.abandon();
    drop(log);
    let mut recycled_active = 0;
    for stop in (1..=ops + 1).step_by(((ops / 40) as usize).max(1)) {
        for (variant, mode) in [
            CrashMode::DropAll,
            CrashMode::KeepAll,
            CrashMode::Subset,
            CrashMode::Torn,
        ]
        .into_iter()
        .enumerate()
        {
            let context = format!("stop {stop}/{ops} {mode:?}");
            let dir = root.path().join(format!("s{stop}-{variant}"));
            copy_dir(&base, &dir);
            let disk = SimDisk::new();
            disk.stop_at(before + stop);
            let log = Log::open_with_backend(&dir, sim_opts.clone(), disk.backend()).unwrap();
            let mut acknowledged = start;
            for offset in start..start + APPENDS {
                match log.append(&body(offset, 2)) {
                    Ok(got) => {
                        assert_eq!(got, offset);
                        acknowledged = offset + 1;
                    }
                    Err(_) => break,
                }
            }
            log.abandon();
            drop(log);
            apply_crash(
                &disk.take_pending(),
                &dir,
                &dir,
                mode,
                stop * 31 + variant as u64,
            )
            .unwrap();
            let log = Log::open(&dir, steady().io(IoBackend::Pwrite))
                .unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
            let next = log.next_offset();
            assert!(
                next >= acknowledged,
                "{context}: lost acknowledged records: next {next} < {acknowledged}"
            );
            assert!(next <= start + APPENDS, "{context}: records from nowhere");
            check(&log, |offset| if offset < start { 1 } else { 2 }, &context);
            if segment_files(&dir).iter().any(|p| is_recycled(p)) {
                recycled_active += 1;
            }
            // Appending after recovery, and a second life, stay consistent.
            for offset in next..next + 5 {
                assert_eq!(log.append(&body(offset, 2)).unwrap(), offset);
            }
            log.close().unwrap();
            let log = Log::open(&dir, steady().recovery(RecoveryPolicy::Strict))
                .unwrap_or_else(|e| panic!("{context}: second reopen: {e}"));
            assert_eq!(log.next_offset(), next + 5, "{context}");
            drop(log);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(recycled_active > 0, "no state had a recycled segment");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_record_still_held_keeps_its_segment_from_being_recycled() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts().retention(Retention::default())).unwrap();
    while log.segments().unwrap().len() < 4 {
        let next = log.next_offset();
        log.append(&body(next, 1)).unwrap();
    }
    // A large record is mapped, not copied: it holds its segment.
    let held = log.read(0).unwrap();
    let second_base = log.segments().unwrap()[1].base_offset;
    log.trim_before(second_base).unwrap();
    assert_eq!(
        log.stats().free_segment_files,
        0,
        "a held segment was recycled"
    );
    assert_eq!(held.payload(), body(0, 1).as_slice());
    drop(held);
    // Later ones, held by nobody, are kept for reuse.
    trim_until_kept(&log);
}

/// Trims the oldest segment (appending while fewer than three remain) until one was
/// kept for reuse: a segment the housekeeper still holds at that moment (a chore of it
/// waiting) is deleted instead, so one trim alone may not keep it.
fn trim_until_kept(log: &Log) {
    for _ in 0..50 {
        if log.stats().free_segment_files > 0 {
            return;
        }
        while log.segments().unwrap().len() < 3 {
            let next = log.next_offset();
            log.append(&body(next, 1)).unwrap();
        }
        let second = log.segments().unwrap()[1].base_offset;
        log.trim_before(second).unwrap();
    }
    panic!("no segment kept for reuse in 50 trims: {:?}", log.stats());
}

#[test]
fn a_read_only_handle_or_a_hard_link_keeps_segments_from_being_recycled() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts().retention(Retention::default())).unwrap();
    while log.segments().unwrap().len() < 5 {
        let next = log.next_offset();
        log.append(&body(next, 1)).unwrap();
    }
    let reader = Log::open_read_only(dir.path(), Options::default()).unwrap();
    let bases: Vec<u64> = log
        .segments()
        .unwrap()
        .iter()
        .map(|s| s.base_offset)
        .collect();
    log.trim_before(bases[1]).unwrap();
    assert_eq!(log.stats().free_segment_files, 0, "recycled under a reader");
    // The reader still reads what it saw at open (its mapping of segment 1 included).
    let record = reader.read(bases[1]).unwrap();
    assert_eq!(record.payload(), body(bases[1], 1).as_slice());
    drop(record);
    reader.close().unwrap();

    // A hard link (a backup's) to the next segment: deleted, not recycled, so the
    // linked copy never changes.
    let linked = dir.path().join("backup-link");
    std::fs::hard_link(&segment_files(dir.path())[0], &linked).unwrap();
    let copy = std::fs::read(&linked).unwrap();
    log.trim_before(bases[2]).unwrap();
    assert_eq!(
        log.stats().free_segment_files,
        0,
        "recycled a hard-linked file"
    );
    // Without either, segments are kept again.
    trim_until_kept(&log);
    append_until_recycled(&log, 1, 1);
    assert_eq!(std::fs::read(&linked).unwrap(), copy);
}

/// The states a crash can leave around a recycling, made by hand: each opens, keeps
/// every record, and never shows a record of a file's earlier life.
#[test]
fn every_file_state_a_crash_leaves_around_a_recycling_opens() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    let (free, spare) = {
        let log = Log::open(&base, opts().retention(Retention::default())).unwrap();
        // A segment the housekeeper still holds (a chore of it waiting) is deleted, not
        // recycled: trim one segment at a time until one was kept.
        let mut tries = 0;
        while free_files(&base).is_empty() {
            tries += 1;
            assert!(tries < 50, "no segment recycled in {tries} trims");
            while log.segments().unwrap().len() < 4 {
                let next = log.next_offset();
                log.append(&body(next, 1)).unwrap();
            }
            let second = log.segments().unwrap()[1].base_offset;
            log.trim_before(second).unwrap();
        }
        let free = free_files(&base);
        assert_eq!(free.len(), 1);
        log.close().unwrap();
        // The spare after the active segment, if the housekeeper prepared it in time.
        let spare = segment_files(&base).into_iter().find(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes[24..32] == [0xff; 8]
        });
        (free[0].clone(), spare)
    };
    let next = Log::open_read_only(&base, Options::default())
        .unwrap()
        .next_offset();
    let free_name = free.file_name().unwrap().to_owned();
    let spare_name = spare.as_ref().map(|s| s.file_name().unwrap().to_owned());
    type MakeState<'a> = Box<dyn Fn(&Path) + 'a>;
    let states: Vec<(&str, MakeState)> = vec![
        ("the free file waits", Box::new(|_: &Path| {})),
        (
            // The rename to `.free` undone by a power cut: a segment below the start.
            "rename to free undone",
            Box::new(|dir: &Path| {
                let id = free_name.to_str().unwrap().trim_end_matches(".free");
                std::fs::rename(dir.join(&free_name), dir.join(format!("{id}.seg"))).unwrap();
            }),
        ),
        (
            // Taken for a spare, renamed to the temporary name, header not yet written
            // (no spare then: the one the close left is removed).
            "renamed to tmp, old header",
            Box::new(|dir: &Path| {
                let tmp = match &spare_name {
                    Some(name) => {
                        std::fs::remove_file(dir.join(name)).unwrap();
                        dir.join(name).with_extension("seg.tmp")
                    }
                    None => dir.join("00000000000000000099.seg.tmp"),
                };
                std::fs::rename(dir.join(&free_name), tmp).unwrap();
            }),
        ),
    ];
    for (what, make) in states {
        for recycle in [true, false] {
            let dir = root
                .path()
                .join(format!("{what}-{recycle}").replace(' ', "-"));
            copy_dir(&base, &dir);
            make(&dir);
            let opts = opts()
                .retention(Retention::default())
                .recycle_segments(recycle)
                .recovery(RecoveryPolicy::Strict);
            let log = Log::open(&dir, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(log.next_offset(), next, "{what}");
            check(&log, |_| 1, what);
            let more = log.next_offset() + 400;
            while log.next_offset() < more {
                let n = log.next_offset();
                log.append(&body(n, 1)).unwrap();
            }
            check(&log, |_| 1, what);
            log.close().unwrap();
            assert!(ringlog::verify(&dir).unwrap().is_clean(), "{what}");
            if !recycle {
                assert!(free_files(&dir).is_empty(), "{what}: free file kept");
            }
        }
    }
}
