//! `verify` reports every state that open refuses, and blames damaged data, not a correct
//! index; open refuses to hand out offsets a lost segment may have acknowledged; `repair`
//! takes the writer lock before it reads anything.

mod common;

use std::path::{Path, PathBuf};

use common::{payload, small};
use ringlog::{Error, IoBackend, Log, ProblemKind};

/// A closed log of `n` records of 300 bytes in 64 KiB segments.
fn build(dir: &Path, n: u64) {
    let log = Log::open(dir, small(IoBackend::Pwrite)).unwrap();
    for i in 0..n {
        log.append(&payload(i, 300)).unwrap();
    }
    log.close().unwrap();
}

/// Every file in `dir` but the lock file, with its contents.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("ringlog.lock"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn set_len(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

/// Damage that open refuses, each with the file the refusal names.
#[test]
fn verify_reports_every_state_that_open_refuses() {
    type Damage = fn(&Path, &Path) -> PathBuf;
    let cases: [(&str, Damage); 7] = [
        ("active segment cut to 0 bytes", |_, active| {
            set_len(active, 0);
            active.to_path_buf()
        }),
        ("active segment cut to 63 bytes", |_, active| {
            set_len(active, 63);
            active.to_path_buf()
        }),
        ("active segment deleted, its index kept", |_, active| {
            std::fs::remove_file(active).unwrap();
            active.to_path_buf()
        }),
        (
            "active segment and its index deleted, the spare after it kept",
            |_, active| {
                std::fs::remove_file(active).unwrap();
                std::fs::remove_file(active.with_extension("idx")).unwrap();
                active.to_path_buf()
            },
        ),
        ("every segment but the spare deleted", |dir, active| {
            let spare = spare_after(active);
            for path in common::segment_files(dir) {
                if path != spare {
                    std::fs::remove_file(&path).unwrap();
                    let _ = std::fs::remove_file(path.with_extension("idx"));
                }
            }
            dir.join("00000000000000000000.seg")
        }),
        (
            "active segment, its index and the spare deleted (the one before says it was sealed)",
            |_, active| {
                std::fs::remove_file(spare_after(active)).unwrap();
                std::fs::remove_file(active).unwrap();
                std::fs::remove_file(active.with_extension("idx")).unwrap();
                active.to_path_buf()
            },
        ),
        ("data in the spare", |_, active| {
            let spare = spare_after(active);
            let mut bytes = std::fs::read(&spare).unwrap();
            bytes[100..140].fill(0x5a);
            std::fs::write(&spare, bytes).unwrap();
            spare
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 600);
        let active = common::active_segment(dir.path());
        assert!(spare_after(&active).exists(), "{what}: no spare to keep");
        let named = damage(dir.path(), &active);
        let before = files(dir.path());

        for read_only in [false, true] {
            let opened = if read_only {
                Log::open_read_only(dir.path(), small(IoBackend::Pwrite))
            } else {
                Log::open(dir.path(), small(IoBackend::Pwrite))
            };
            match opened {
                Err(Error::Corruption { segment, .. }) => {
                    assert_eq!(segment, named, "{what} (read-only: {read_only})")
                }
                Ok(log) => panic!(
                    "{what}: open (read-only: {read_only}) handed out offset {} after a log that reached 600",
                    log.next_offset()
                ),
                Err(e) => panic!("{what}: {e}"),
            }
            assert_eq!(
                files(dir.path()),
                before,
                "{what}: a refused open changed the log"
            );
        }

        let report = ringlog::verify(dir.path()).unwrap();
        let refused: Vec<_> = report.corruption().collect();
        assert!(
            refused.iter().any(|p| p.path == named),
            "{what}: verify does not report {}: {:?}",
            named.display(),
            report.problems
        );
        match ringlog::repair(dir.path(), false) {
            Err(Error::Corruption { .. }) => {}
            other => panic!("{what}: repair must refuse: {other:?}"),
        }
        assert_eq!(
            files(dir.path()),
            before,
            "{what}: verify or repair changed the log"
        );
    }
}

/// The spare segment file prepared after `active`.
fn spare_after(active: &Path) -> PathBuf {
    let name = active.file_stem().unwrap().to_str().unwrap();
    let id: u64 = name.parse().unwrap();
    active.with_file_name(format!("{:020}.seg", id + 1))
}

/// A flipped bit in a record's payload, in a sealed segment and in the active one below
/// its clean checkpoint: the index files are right, and only the data is reported.
#[test]
fn verify_blames_damaged_data_not_the_index() {
    for sealed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 600);
        let segment = if sealed {
            common::segment_files(dir.path())[0].clone()
        } else {
            common::active_segment(dir.path())
        };
        let index = segment.with_extension("idx");
        assert!(index.exists());
        let damaged_byte = 200; // inside the segment's first record
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[damaged_byte] ^= 4;
        std::fs::write(&segment, &bytes).unwrap();

        let report = ringlog::verify(dir.path()).unwrap();
        assert_eq!(
            report.problems.len(),
            1,
            "sealed {sealed}: {:?}",
            report.problems
        );
        let problem = &report.problems[0];
        assert_eq!(problem.kind, ProblemKind::Corruption, "{problem}");
        assert_eq!(problem.path, segment);
        assert!(problem.position <= damaged_byte as u64, "{problem}");
        assert!(problem.position >= 64, "{problem}");
    }
}

/// `repair` beside a writer (here, in this process): refused before anything is read,
/// dry run included, with nothing damaged and with a torn tail alike.
#[test]
fn repair_beside_a_writer_is_refused_with_locked() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300);
    let writer = Log::open(dir.path(), small(IoBackend::Pwrite)).unwrap();
    writer.append(b"one more").unwrap();
    // The writer's own files change under it: compare names (the index files are what
    // a repair beside a writer removed).
    let names = || -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
            .collect();
        names.sort();
        names
    };
    let before = names();
    assert!(before
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "idx")));
    for dry_run in [true, false] {
        match ringlog::repair(dir.path(), dry_run) {
            Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
            other => panic!("repair (dry run: {dry_run}) beside a writer: {other:?}"),
        }
    }
    assert_eq!(names(), before, "repair touched a live log");
    writer.close().unwrap();
    let done = ringlog::repair(dir.path(), false).unwrap();
    assert!(done.truncated.is_empty() && done.removed.is_empty());
}
