//! Crash states of trims and truncations on the simulated disk (docs/design.md 4.9):
//! power fails before every write or flush a cut makes, each moment becomes several crash
//! states (unflushed writes torn at random, and the unlinks after the commit point lost or
//! not), and each state must reopen to either the log before the cut or the log after it,
//! never a mix, never an old record past a truncation, never a trimmed one, also after
//! new appends and a second reopen.
//!
//! `RINGLOG_CRASH_VARIANTS=<n>` changes the number of states per crash point (default 6).

use std::path::Path;

use ringlog::sim::{apply_crash, CrashMode, SimDisk};
use ringlog::{Durability, IoBackend, Log, Options};

const SEGMENT_BYTES: u64 = 64 << 10;
const RECORDS: u64 = 300;

fn opts() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Sync)
        .io(IoBackend::Pwrite)
}

fn payload(offset: u64, life: u8) -> Vec<u8> {
    let len = 300 + (offset as usize * 977) % 1500;
    let mut out = vec![life; len];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    TrimBefore(u64),
    TruncateFrom(u64),
}

impl Cut {
    fn apply(self, log: &Log) -> ringlog::Result<()> {
        match self {
            Cut::TrimBefore(offset) => log.trim_before(offset).map(drop),
            Cut::TruncateFrom(offset) => log.truncate_from(offset),
        }
    }

    /// Whether the reopened log shows the cut done (`true`) or not; panics on a mix.
    /// The last `unsynced` records were appended unflushed just before the cut: a crash
    /// may take them unless the cut flushed them.
    fn judge(self, log: &Log, unsynced: u64, context: &str) -> bool {
        let (first, next) = (log.first_offset(), log.next_offset());
        let whole = |next: u64| (RECORDS - unsynced..=RECORDS).contains(&next);
        match self {
            Cut::TrimBefore(at) if at > RECORDS => {
                if (first, next) == (at, at) {
                    return true;
                }
                assert!(
                    first == 0 && whole(next),
                    "{context}: half a restart: {first}..{next}"
                );
                false
            }
            Cut::TrimBefore(at) => {
                assert!(whole(next), "{context}: next {next}");
                assert!(first == 0 || first == at, "{context}: first {first}");
                first == at
            }
            Cut::TruncateFrom(at) => {
                assert_eq!(first, 0, "{context}");
                assert!(next == at || whole(next), "{context}: next {next}");
                next == at
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        // A live log's temporary files come and go meanwhile.
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::copy(entry.path(), to.join(entry.file_name())) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copy {}: {e}", entry.path().display()),
            }
        }
    }
}

/// Puts back the segment files (and their indexes) of `before` that are missing: unlinks
/// after the cut's commit point whose directory entries a power cut took back. (A spare
/// prepared after `before` and deleted is not put back: only activated segments are
/// deleted, so that case does not arise.)
fn restore_unlinked(before: &Path, dir: &Path) {
    for entry in std::fs::read_dir(before).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if (name_str.ends_with(".seg") || name_str.ends_with(".idx")) && !dir.join(&name).exists() {
            std::fs::copy(entry.path(), dir.join(&name)).unwrap();
        }
    }
}

/// The segment files of `dir` and what their headers say, for a failure message.
fn listing(dir: &Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
            if name.ends_with(".seg") && bytes.len() >= 64 {
                let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                let dropped = u32::from_le_bytes(bytes[56..60].try_into().unwrap());
                format!(
                    "{name}: id {} base {:#x} dropped {dropped}\n",
                    word(16),
                    word(24)
                )
            } else {
                format!("{name}: {} bytes\n", bytes.len())
            }
        })
        .collect()
}

fn check_records(log: &Log, cut: Cut, done: bool, context: &str) {
    let first = log.first_offset();
    let mut expected = first;
    for record in log.iter(first) {
        let record = record.unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(record.offset(), expected, "{context}");
        let life = match cut {
            Cut::TruncateFrom(at) if done && expected >= at => 2,
            Cut::TrimBefore(at) if done && at > RECORDS => 2,
            _ => 1,
        };
        assert_eq!(
            record.payload(),
            payload(expected, life).as_slice(),
            "{context}: wrong bytes at {expected}"
        );
        expected += 1;
    }
    assert_eq!(expected, log.next_offset(), "{context}: ended early");
}

fn variants() -> u64 {
    std::env::var("RINGLOG_CRASH_VARIANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// Appends the last `unsynced` records of the first life without flushing them.
fn append_unsynced(log: &Log, unsynced: u64) {
    for offset in RECORDS - unsynced..RECORDS {
        assert_eq!(log.append(&payload(offset, 1)).unwrap(), offset);
    }
}

fn explore(cut: Cut, unsynced: u64) {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    {
        let log = Log::open(&base, opts()).unwrap();
        for offset in 0..RECORDS - unsynced {
            assert_eq!(log.append(&payload(offset, 1)).unwrap(), offset);
        }
        log.close().unwrap();
    }
    let crash_opts = || {
        if unsynced > 0 {
            opts().durability(Durability::None)
        } else {
            opts()
        }
    };
    // How many operations the cut makes on the simulated disk.
    let probe = root.path().join("probe");
    copy_dir(&base, &probe);
    let disk = SimDisk::new();
    let log = Log::open_with_backend(&probe, crash_opts(), disk.backend()).unwrap();
    append_unsynced(&log, unsynced);
    let before = disk.operations_count();
    cut.apply(&log).unwrap();
    let cut_ops = disk.operations_count() - before;
    drop(log);
    let mut states = 0;
    for stop in 1..=cut_ops + 1 {
        for seed in 0..variants() {
            let context = format!("{cut:?} stop {stop}/{cut_ops} seed {seed}");
            let dir = root.path().join(format!("s{stop}-{seed}"));
            copy_dir(&base, &dir);
            let disk = SimDisk::new();
            let log = Log::open_with_backend(&dir, crash_opts(), disk.backend()).unwrap();
            append_unsynced(&log, unsynced);
            // The files as they are when the cut begins (page cache included): what a
            // deletion the crash takes back brings back.
            let pre = root.path().join(format!("pre{stop}-{seed}"));
            copy_dir(&dir, &pre);
            disk.stop_at(disk.operations_count() + stop);
            let returned = cut.apply(&log).is_ok();
            // After the power failed, nothing happened: the deletions the process went on
            // to make (the simulated disk does not stop them) are undone, like those a
            // crash after the commit point loses when their directory was not synced.
            let stopped = disk.stopped();
            log.abandon();
            if stopped || seed % 2 == 1 {
                restore_unlinked(&pre, &dir);
            }
            std::fs::remove_dir_all(&pre).unwrap();
            let pending = disk.take_pending();
            apply_crash(&pending, &dir, &dir, CrashMode::Torn, seed).unwrap();
            let log = Log::open(&dir, opts()).unwrap_or_else(|e| {
                panic!(
                    "{context} (returned {returned}, stopped {stopped}): {e}\n{}",
                    listing(&dir)
                )
            });
            let done = cut.judge(&log, unsynced, &context);
            if returned && !stopped {
                assert!(done, "{context}: the cut returned but did not survive");
            }
            check_records(&log, cut, false, &context);
            // A second life: new records where the cut left the end, then a reopen.
            let next = log.next_offset();
            for offset in next..next + 5 {
                assert_eq!(log.append(&payload(offset, 2)).unwrap(), offset);
            }
            drop(log);
            let log = Log::open(&dir, opts()).unwrap_or_else(|e| panic!("{context}: {e}"));
            let after = Cut::TruncateFrom(next);
            check_records(&log, after, true, &format!("{context}, second life"));
            let report = ringlog::verify(&dir).unwrap();
            assert!(
                report.problems.is_empty(),
                "{context}: {:?}",
                report.problems
            );
            drop(log);
            std::fs::remove_dir_all(&dir).unwrap();
            states += 1;
        }
    }
    eprintln!("{cut:?}: {cut_ops} operations, {states} crash states");
}

// Each cut twice: after a clean close (the cut is a header write and a flush), and with
// ten records appended unflushed under `Durability::None` just before it (the cut
// commits and flushes them first).

#[test]
fn crash_states_of_a_truncation_in_the_active_segment() {
    explore(Cut::TruncateFrom(RECORDS - 17), 0);
    explore(Cut::TruncateFrom(RECORDS - 17), 10);
    explore(Cut::TruncateFrom(RECORDS - 4), 10);
}

#[test]
fn crash_states_of_a_truncation_across_segments() {
    explore(Cut::TruncateFrom(40), 0);
    explore(Cut::TruncateFrom(40), 10);
}

#[test]
fn crash_states_of_a_truncation_of_everything() {
    explore(Cut::TruncateFrom(0), 0);
    explore(Cut::TruncateFrom(0), 10);
}

#[test]
fn crash_states_of_a_trim() {
    explore(Cut::TrimBefore(170), 0);
    explore(Cut::TrimBefore(170), 10);
}

#[test]
fn crash_states_of_a_trim_past_the_end() {
    explore(Cut::TrimBefore(RECORDS + 1_000), 0);
    explore(Cut::TrimBefore(RECORDS + 1_000), 10);
}
