//! Crash-state exploration on the simulated disk (`ringlog::sim`): for a small workload
//! (a few segments, tens of records, batches, rollovers), power fails before every
//! write or flush in turn, and each of those moments becomes many crash states (unflushed
//! writes dropped, kept, a random subset, or torn at sectors; index files and spares
//! lost). Every state is recovered and checked against an oracle (G1, G2, G3), some
//! crash again during recovery and after new appends (G7).
//!
//! `RINGLOG_SEED=<n>` replays one seed; `RINGLOG_CRASH_VARIANTS=<n>` changes the number
//! of random states per crash point (default 40).

use std::path::{Path, PathBuf};

use ringlog::sim::{apply_crash, CrashMode, PendingWrite, SimDisk};
use ringlog::{Durability, IoBackend, Log, Options};

const SEGMENT_BYTES: u64 = 64 << 10;

fn opts() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Sync)
        .io(IoBackend::Pwrite)
}

/// How the first life writes: `Sync` (at most one unflushed batch at a crash), `None`
/// with a `sync()` every few appends (many unflushed batches, so crashes leave holes),
/// or `None` with mapped writes (producers copy into the segment's mapping: every
/// append that returned is in the page cache, and a process crash keeps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    Sync,
    Unsynced,
    Mapped,
}

impl Writer {
    fn durability(self) -> Durability {
        match self {
            Writer::Sync => Durability::Sync,
            Writer::Unsynced | Writer::Mapped => Durability::None,
        }
    }
}

fn first_life_opts(writer: Writer) -> Options {
    opts()
        .durability(writer.durability())
        .mapped_writes(writer == Writer::Mapped)
}

/// The payload of the record at `offset` in the first life of the log.
fn first_life(offset: u64) -> Vec<u8> {
    let len = 600 + (offset as usize * 1237) % 7000;
    let mut out = vec![(offset % 251) as u8; len];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

/// The payload of a record appended after a recovery: different bytes, and either
/// shorter or exactly as long as the first life's (so the frames that follow line up with
/// old ones, which must not come back).
fn second_life(offset: u64) -> Vec<u8> {
    let len = if offset % 2 == 0 {
        first_life(offset).len()
    } else {
        40
    };
    let mut out = vec![0xEE; len];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

/// What the workload did: records acknowledged, and the batches (ranges) it appended.
#[derive(Default, Clone)]
struct Oracle {
    acked: u64,
    /// Appends that returned Ok (under `Sync` the same as `acked`).
    returned: u64,
    batches: Vec<std::ops::Range<u64>>,
}

/// Appends single records and batches of three until an error; returns the oracle. Under
/// `Durability::None` it syncs every fifth step, and only synced records count as
/// acknowledged.
fn workload(log: &Log, durability: Durability) -> Oracle {
    let mut oracle = Oracle::default();
    let mut staged = 0;
    for step in 0..30u64 {
        let next = log.next_offset();
        let result = if step % 4 == 3 {
            let bodies: Vec<Vec<u8>> = (next..next + 3).map(first_life).collect();
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            oracle.batches.push(next..next + 3);
            log.append_batch(&refs)
        } else {
            log.append(&first_life(next)).map(|o| o..o + 1)
        };
        match result {
            Ok(range) if durability == Durability::Sync => {
                oracle.acked = range.end;
                oracle.returned = range.end;
            }
            Ok(range) => {
                staged = range.end;
                oracle.returned = range.end;
            }
            Err(_) => break,
        }
        if durability != Durability::Sync && step % 5 == 4 {
            match log.sync() {
                Ok(()) => oracle.acked = staged,
                Err(_) => break,
            }
        }
    }
    oracle
}

/// Checks a recovered log against the oracle; returns its next offset.
fn check(log: &Log, oracle: &Oracle, payload: impl Fn(u64) -> Vec<u8>, context: &str) -> u64 {
    let next = log.next_offset();
    assert!(
        next >= oracle.acked,
        "{context}: lost acknowledged records: next {next} < acked {}",
        oracle.acked
    );
    let mut expected = log.first_offset();
    for record in log.iter(log.first_offset()) {
        let record = record.unwrap_or_else(|e| panic!("{context}: read failed: {e}"));
        assert_eq!(record.offset(), expected, "{context}: gap or reorder");
        assert_eq!(
            record.payload(),
            payload(expected).as_slice(),
            "{context}: wrong bytes at {expected}"
        );
        expected += 1;
    }
    assert_eq!(expected, next, "{context}: iteration stopped early");
    for batch in &oracle.batches {
        assert!(
            next <= batch.start || next >= batch.end,
            "{context}: batch {batch:?} cut at {next}"
        );
    }
    next
}

fn scratch_root() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Loses, at random, index files and spare segments whose directory entries a crash
/// could take back (they are rebuilt or re-prepared).
fn forget_files(dir: &Path, seed: u64) {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last_seg = segments
        .iter()
        .rev()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .cloned();
    for (i, path) in segments.iter().enumerate() {
        let roll = seed.wrapping_mul(31).wrapping_add(i as u64 * 17) % 3 == 0;
        let is_idx = path.extension().is_some_and(|e| e == "idx");
        let is_spare = Some(path) == last_seg.as_ref() && {
            let bytes = std::fs::read(path).unwrap();
            bytes[24..32] == [0xFF; 8]
        };
        if roll && (is_idx || is_spare) {
            std::fs::remove_file(path).unwrap();
        }
    }
}

struct Counts {
    states: u64,
    double_crashes: u64,
    second_life_crashes: u64,
}

/// Recovery crashes at `stop` (an operation of recovery itself), then recovers again: the
/// result must equal the undisturbed recovery's.
fn crash_during_recovery(
    dir: &Path,
    scratch: &Path,
    stop: u64,
    seed: u64,
    expected_next: u64,
    oracle: &Oracle,
) {
    let twice = scratch.join(format!("recovery-{stop}-{seed}"));
    copy_dir(dir, &twice);
    let disk = SimDisk::new();
    disk.stop_at(stop);
    if let Ok(log) = Log::open_with_backend(&twice, opts(), disk.backend()) {
        log.abandon();
    }
    let pending = disk.take_pending();
    apply_crash(&pending, &twice, &twice, CrashMode::Torn, seed).unwrap();
    let log = Log::open(&twice, opts())
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after a crash in recovery: {e}"));
    let next = check(
        &log,
        oracle,
        first_life,
        &format!("seed {seed} recovery crash at {stop}"),
    );
    assert_eq!(
        next, expected_next,
        "seed {seed}: recover(crash(recover)) != recover"
    );
    drop(log);
    std::fs::remove_dir_all(&twice).unwrap();
}

/// After a recovery, appends shorter records, crashes again, and checks no old record
/// comes back past the new ones.
fn crash_after_reappending(dir: &Path, recovered_next: u64, seed: u64, oracle: &Oracle) {
    let disk = SimDisk::new();
    // Power fails again part-way through the new appends (or, late, not at all).
    disk.stop_at(1 + seed % 9);
    let log = match Log::open_with_backend(dir, opts(), disk.backend()) {
        Ok(log) => log,
        Err(_) => {
            // It failed during its own recovery: that is the double-crash case.
            let pending = disk.take_pending();
            apply_crash(&pending, dir, dir, CrashMode::Torn, seed).unwrap();
            return;
        }
    };
    assert_eq!(log.next_offset(), recovered_next);
    let mut acked = recovered_next;
    for _ in 0..3 {
        let next = log.next_offset();
        if log.append(&second_life(next)).is_ok() {
            acked = next + 1;
        }
    }
    log.abandon();
    let pending = disk.take_pending();
    apply_crash(&pending, dir, dir, CrashMode::Torn, seed).unwrap();
    let log =
        Log::open(dir, opts()).unwrap_or_else(|e| panic!("seed {seed}: second life reopen: {e}"));
    let payload = |o: u64| {
        if o < recovered_next {
            first_life(o)
        } else {
            second_life(o)
        }
    };
    // First-life batches past the recovered end were cut whole; the new records are
    // single appends.
    let second = Oracle {
        acked,
        returned: acked,
        batches: oracle
            .batches
            .iter()
            .filter(|b| b.end <= recovered_next)
            .cloned()
            .collect(),
    };
    let context = format!("seed {seed} second life (recovered {recovered_next}, acked {acked})");
    let next = check(&log, &second, payload, &context);
    assert!(
        next >= acked,
        "seed {seed}: second life lost acknowledged records"
    );
}

fn explore(writer: Writer, variants: u64, only_seed: Option<u64>) -> Counts {
    let durability = writer.durability();
    let root = scratch_root();
    // A dry run counts the operations of the whole workload.
    let total_ops = {
        let disk = SimDisk::new();
        let dir = root.path().join("dry");
        let log = Log::open_with_backend(&dir, first_life_opts(writer), disk.backend()).unwrap();
        let oracle = workload(&log, durability);
        assert!(
            oracle.acked >= 20,
            "the dry run appends everything: {}",
            oracle.acked
        );
        log.close().unwrap();
        disk.operations_count()
    };
    let mut counts = Counts {
        states: 0,
        double_crashes: 0,
        second_life_crashes: 0,
    };
    for stop in 1..=total_ops + 1 {
        let dir = root.path().join(format!("stop-{stop}"));
        let disk = SimDisk::new();
        disk.stop_at(stop);
        let log = Log::open_with_backend(&dir, first_life_opts(writer), disk.backend()).unwrap();
        let oracle = workload(&log, durability);
        log.abandon();
        drop(log);
        let pending: Vec<PendingWrite> = disk.take_pending();
        for variant in 0..variants + 2 {
            let seed = stop * 1_000_003
                + variant
                + match writer {
                    Writer::Sync => 0,
                    Writer::Unsynced => 1 << 40,
                    Writer::Mapped => 1 << 41,
                };
            if only_seed.is_some_and(|s| s != seed) {
                continue;
            }
            let mode = match variant {
                0 => CrashMode::DropAll,
                1 => CrashMode::KeepAll,
                v if v % 2 == 0 => CrashMode::Subset,
                _ => CrashMode::Torn,
            };
            let state = root.path().join(format!("state-{seed}"));
            copy_dir(&dir, &state);
            apply_crash(&pending, &dir, &state, mode, seed).unwrap();
            if variant % 5 == 4 {
                forget_files(&state, seed);
            }
            let context =
                format!("seed {seed} (stop {stop}, {mode:?}; replay with RINGLOG_SEED={seed})");
            let log = Log::open(&state, opts())
                .unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
            let next = check(&log, &oracle, first_life, &context);
            if writer == Writer::Mapped && mode == CrashMode::KeepAll {
                // A process crash: what the producers copied was in the page cache.
                assert!(
                    next >= oracle.returned,
                    "{context}: a process crash lost returned mapped appends: next {next} < {}",
                    oracle.returned
                );
            }
            drop(log);
            counts.states += 1;
            if variant % 8 == 5 {
                for recovery_stop in 1..=3 {
                    crash_during_recovery(&state, root.path(), recovery_stop, seed, next, &oracle);
                    counts.double_crashes += 1;
                }
            }
            if variant % 8 == 6 {
                crash_after_reappending(&state, next, seed, &oracle);
                counts.second_life_crashes += 1;
            }
            std::fs::remove_dir_all(&state).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    counts
}

#[test]
fn every_crash_point_in_every_mode_recovers_a_valid_prefix() {
    let only_seed = std::env::var("RINGLOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let variants = std::env::var("RINGLOG_CRASH_VARIANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(160);
    let mut total = 0;
    for writer in [Writer::Sync, Writer::Unsynced, Writer::Mapped] {
        let counts = explore(writer, variants, only_seed);
        println!(
            "simulated crash states ({writer:?} writer): {} checked, 0 acknowledged records lost, \
             0 phantoms/duplicates/torn records; {} crashes during recovery, {} crashes after re-appending",
            counts.states, counts.double_crashes, counts.second_life_crashes
        );
        total += counts.states;
    }
    println!("simulated crash states in all: {total}");
    if only_seed.is_none() {
        assert!(total >= 1000, "too few states explored: {total}");
    }
}

/// The simulated disk models mapped writes: what producers copied is in the page cache
/// (a process crash keeps it all), and unflushed until a flush (a power cut that drops
/// unflushed writes takes it away again, leaving what `sync()` covered).
#[test]
fn mapped_copies_are_unflushed_writes_until_a_flush() {
    let root = scratch_root();
    for (mode, survivors) in [(CrashMode::KeepAll, 7), (CrashMode::DropAll, 4)] {
        let dir = root.path().join(format!("{mode:?}"));
        let disk = SimDisk::new();
        let log =
            Log::open_with_backend(&dir, first_life_opts(Writer::Mapped), disk.backend()).unwrap();
        for offset in 0..4 {
            assert_eq!(log.append(&first_life(offset)).unwrap(), offset);
        }
        log.sync().unwrap();
        let bodies: Vec<Vec<u8>> = (4..7).map(first_life).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        assert_eq!(log.append_batch(&refs).unwrap(), 4..7);
        log.abandon();
        drop(log);
        let pending = disk.take_pending();
        assert!(
            pending.len() >= 4,
            "the marker and three frames copied after the sync are pending: {}",
            pending.len()
        );
        apply_crash(&pending, &dir, &dir, mode, 1).unwrap();
        let log = Log::open(&dir, opts()).unwrap();
        let oracle = Oracle {
            acked: 4,
            returned: 7,
            batches: std::iter::once(4..7).collect(),
        };
        assert_eq!(
            check(&log, &oracle, first_life, &format!("{mode:?}")),
            survivors,
            "{mode:?}"
        );
    }
}
