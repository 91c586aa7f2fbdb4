//! Real power cuts: small ext4 and xfs filesystems on loop devices; a writer child
//! appends durably (single records and batches, 64 KiB segments so rollovers are
//! frequent) and reports each acknowledged offset; the parent fires the filesystem
//! shutdown ioctl without flushing the log (`FS_IOC_SHUTDOWN` with
//! `FSOP_FLAGS_NOLOGFLUSH`, what xfstests uses to simulate a power cut: the disk keeps
//! only what the filesystem had made durable), kills the child, unmounts, remounts
//! (journal recovery), and checks:
//! - G1: every acknowledged record is there, intact;
//! - G2: a gap-free prefix of what was appended, whole batches only, no phantoms, no
//!   records of an earlier incarnation;
//! - G4: after the first failed append, nothing more is acknowledged (the rest are
//!   `Poisoned`).
//!
//! The next child recovers the log left by the cut (some cuts hit that recovery).
//!
//! Root, `losetup` and loop devices are needed; xfs also needs `mkfs.xfs` (xfsprogs).
//! Prints `SKIP` lines otherwise. `RINGLOG_POWERCUTS` (default 20) sets the cuts per
//! filesystem, `RINGLOG_SEED` replays the choices (timing still varies).

#[path = "common/cut_reliability.rs"]
mod cut_reliability;
#[path = "common/reliability.rs"]
mod reliability;
#[path = "common/store_reliability.rs"]
mod store_reliability;

use std::path::Path;
use std::time::{Duration, Instant};

use reliability::{
    env_u64, have_program, is_root, run, seed, shutdown_fs, LoopGuard, Model, MountGuard, Rng,
    Watchdog, WriterChild,
};

/// The writer child: re-executed by `power_cuts_*`, never run on its own.
#[test]
#[ignore = "child process of the power-cut tests (runs only when re-executed by them)"]
fn powercut_child() {
    reliability::writer_child_main();
}

/// The store writer child (8 topics, creations, removals): re-executed by
/// `power_cuts_ext4_store`, never run on its own.
#[test]
#[ignore = "child process of the store power-cut test (runs only when re-executed by it)"]
fn powercut_store_child() {
    store_reliability::store_child_main();
}

/// The writers of the ZeroFill runs pin it; the fallocate runs below pin
/// `Preallocate::Fallocate`.
const PINNED: &str = "zerofill";

/// How the cut is fired.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cut {
    /// The shutdown ioctl while the child runs: a flush in progress may straddle it.
    Live,
    /// The child is stopped first (SIGSTOP, every thread back in user space), then the
    /// filesystem shut down: as at a real power cut, no system call returns after it.
    Frozen,
}

#[test]
fn power_cuts_ext4() {
    power_cuts("ext4", PINNED, Cut::Live);
}

#[test]
fn power_cuts_xfs() {
    power_cuts("xfs", PINNED, Cut::Live);
}

/// `Preallocate::Fallocate` keeps every acknowledged record through power cuts that
/// stop the writer first (0 lost in 200 cuts each on ext4 and xfs, docs/design.md 3.2).
#[test]
fn power_cuts_ext4_fallocate() {
    power_cuts("ext4", "fallocate", Cut::Frozen);
}

#[test]
fn power_cuts_xfs_fallocate() {
    power_cuts("xfs", "fallocate", Cut::Frozen);
}

/// Mapped writes (`Durability::None`, each append then `sync()`ed): the flush covers
/// what producers copied into the mapping, on segments that were never zero-filled
/// (`Fallocate`, the choice for W3) and on zero-filled ones.
#[test]
fn power_cuts_ext4_mapped_fallocate() {
    power_cuts_writing("ext4", "fallocate", Cut::Frozen, "mapped-synced");
}

#[test]
fn power_cuts_xfs_mapped_zerofill() {
    power_cuts_writing("xfs", PINNED, Cut::Live, "mapped-synced");
}

/// Why fallocate looked unsafe: with the shutdown fired while the child runs, an
/// `fdatasync` in progress across it can return success on ext4 although the
/// conversion of the unwritten extents it wrote failed (the journal was aborted):
/// `ext4_end_io_end` does not pass that error on, and the inode's datasync transaction
/// was not advanced, so the flush finds nothing left to commit. The records it
/// "acknowledged" read back as zeros from the first block that was unwritten. Each loss
/// was of an ACK read after the shutdown began, which a real power cut cannot produce.
/// Kept to show the kernel behaviour; not a ringlog fault.
#[test]
#[ignore = "shows an ext4 shutdown artifact: a flush straddling FS_IOC_SHUTDOWN returns success for unconverted unwritten extents"]
fn shutdown_artifact_ext4_fallocate_live() {
    power_cuts("ext4", "fallocate", Cut::Live);
}

/// The library's own choice of preallocation (`Fallocate` since 2026-12-06). Frozen cuts,
/// as for `power_cuts_ext4_fallocate`: a live cut reproduces the ext4 shutdown artifact
/// above (CI saw it once with the new default: 3 records of the one ACK read after the
/// shutdown began), which a real power cut cannot produce.
#[test]
fn power_cuts_ext4_default_preallocation() {
    power_cuts("ext4", "default", Cut::Frozen);
}

/// A small filesystem of type `fs` on a loop device over a sparse image, mounted; torn
/// down (unmounted, detached, deleted) on drop, in that order.
struct Rig {
    guard: MountGuard,
    lo: LoopGuard,
    fs: String,
    mountpoint: std::path::PathBuf,
    _work: tempfile::TempDir,
}

impl Rig {
    /// `None` (after printing why, as `SKIP`) when this machine cannot run the test.
    fn set_up(test: &str, fs: &str) -> Option<Rig> {
        if !is_root() {
            println!("{test}: SKIP: not root (loop devices and mounts need root)");
            return None;
        }
        for program in ["losetup", "mount", "umount"] {
            if !have_program(program) {
                println!("{test}: SKIP: {program} not found");
                return None;
            }
        }
        let mkfs = format!("mkfs.{fs}");
        if !have_program(&mkfs) {
            let package = if fs == "xfs" { "xfsprogs" } else { "e2fsprogs" };
            println!("{test}: SKIP: {mkfs} not found (install {package})");
            return None;
        }
        let work = tempfile::tempdir().expect("tempdir");
        let image = work.path().join(format!("{fs}.img"));
        // xfs refuses filesystems under 300 MiB; the image is sparse either way.
        let image_bytes: u64 = if fs == "xfs" { 320 << 20 } else { 128 << 20 };
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(image_bytes))
            .expect("create image");
        let lo = match LoopGuard::attach(&image) {
            Ok(lo) => lo,
            Err(e) => {
                println!("{test}: SKIP: no loop device: {e}");
                return None;
            }
        };
        let mkfs_args: Vec<&str> = if fs == "xfs" {
            vec!["-q", "-f", &lo.device]
        } else {
            vec!["-q", "-F", &lo.device]
        };
        if let Err(e) = run(&mkfs, &mkfs_args) {
            println!("{test}: SKIP: {mkfs} failed: {e}");
            return None;
        }
        let mountpoint = work.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let guard = match MountGuard::mount(&lo.device, &mountpoint, &["-t", fs]) {
            Ok(g) => g,
            Err(e) => {
                println!("{test}: SKIP: cannot mount {fs}: {e}");
                return None;
            }
        };
        Some(Rig {
            guard,
            lo,
            fs: fs.to_string(),
            mountpoint,
            _work: work,
        })
    }

    /// Unmounts (after a cut) and mounts again, which replays the journal.
    fn remount(&mut self) -> Result<(), String> {
        self.guard
            .unmount()
            .map_err(|e| format!("unmount after the cut: {e}"))?;
        self.guard = MountGuard::mount(&self.lo.device, &self.mountpoint, &["-t", &self.fs])
            .map_err(|e| format!("remount after the cut: {e}"))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Recovery,
    Rollover,
    Anytime,
}

#[derive(Default)]
struct Totals {
    cuts: u64,
    acked: u64,
    acked_before_cut: u64,
    survivors: u64,
    during_recovery: u64,
    at_rollover: u64,
    failed_appends_seen: u64,
    poisoned_after: u64,
    other_after: u64,
    acks_after_failure: u64,
    open_errors: u64,
}

fn power_cuts(fs: &str, preallocate: &str, cut_mode: Cut) {
    power_cuts_writing(fs, preallocate, cut_mode, "buffered");
}

/// `writes`: "buffered" (`Durability::Sync`), or "mapped-synced" (`Durability::None`
/// with mapped writes, each append followed by a `sync()` that acknowledges it).
fn power_cuts_writing(fs: &str, preallocate: &str, cut_mode: Cut, writes: &str) {
    let test =
        format!("powercut {fs} (preallocate {preallocate}, cut {cut_mode:?}, writes {writes})");
    let Some(mut rig) = Rig::set_up(&test, fs) else {
        return;
    };
    let cuts = env_u64("RINGLOG_POWERCUTS", 20);
    let seed = seed(&test);
    let mut rng = Rng::new(seed ^ fs.len() as u64);
    let dir = rig.mountpoint.join("log");
    let watchdog = Watchdog::start("powercut", Duration::from_secs(120));
    let started = Instant::now();
    let mut model = Model::default();
    let mut t = Totals::default();
    let mut failure = None;
    for cut in 1..=cuts {
        let generation = cut as u32;
        let when = match rng.below(100) {
            0..=11 => When::Recovery,
            12..=31 => When::Rollover,
            _ => When::Anytime,
        };
        let delay_us = match when {
            When::Recovery => rng.below(5_000),
            When::Rollover => rng.below(2_000),
            When::Anytime => rng.range(5_000, 250_000),
        };
        let io = if rng.chance(0.5) { "pwrite" } else { "auto" };
        watchdog.case(|| format!("{fs} cut {cut} {when:?} {delay_us} us io {io}"));
        let mut child = WriterChild::spawn_with(
            "powercut_child",
            &dir,
            generation,
            rng.next_u64(),
            io,
            &[
                ("RINGLOG_PREALLOCATE", preallocate),
                (reliability::CHILD_WRITES_ENV, writes),
            ],
        );
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut armed: Option<Instant> = None;
        loop {
            if armed.is_some_and(|at| Instant::now() >= at) || Instant::now() >= give_up {
                break;
            }
            let wait = armed
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            let Some(line) = child.next_line(wait) else {
                if child.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                continue;
            };
            if armed.is_none() {
                let word = line.text.split_whitespace().next().unwrap_or("");
                let fire = matches!(
                    (when, word),
                    (When::Recovery, "OPENING")
                        | (When::Rollover, "ROLLING")
                        | (When::Anytime, "OPENED")
                );
                if fire {
                    armed = Some(line.at + Duration::from_micros(delay_us));
                }
            }
        }
        // The power cut.
        if cut_mode == Cut::Frozen {
            freeze(child.child.id());
        }
        let shutdown_started = Instant::now();
        if let Err(e) = shutdown_fs(&rig.mountpoint) {
            failure = Some(format!("cut {cut}: {e}"));
            break;
        }
        let cut_at = Instant::now();
        // Let the child run into the dead filesystem for a moment, then kill it.
        while cut_at.elapsed() < Duration::from_millis(60) {
            if child.next_line(Duration::from_millis(10)).is_none()
                && child.child.try_wait().ok().flatten().is_some()
            {
                break;
            }
        }
        child.kill();
        if let Err(e) = child.finish(Duration::from_secs(20)) {
            failure = Some(format!("cut {cut}: {e}"));
            break;
        }
        let report = child.report();
        let report_lines: Vec<(Instant, String)> =
            child.seen.iter().map(|l| (l.at, l.text.clone())).collect();
        let acked_before_cut = child
            .seen
            .iter()
            .filter(|l| l.at < cut_at && l.text.starts_with("ACK "))
            .filter_map(|l| {
                let mut w = l.text.split_whitespace().skip(1);
                let start: u64 = w.next()?.parse().ok()?;
                let end: u64 = w.next()?.parse().ok()?;
                Some(end - start)
            })
            .sum::<u64>();
        drop(child);
        if let Err(e) = rig.remount() {
            failure = Some(format!("cut {cut}: {e}"));
            break;
        }
        t.cuts += 1;
        t.acked_before_cut += acked_before_cut;
        if report.opened.is_empty() {
            t.during_recovery += 1;
        }
        if when == When::Rollover && armed.is_some() {
            t.at_rollover += 1;
        }
        if report.open_error.is_some() {
            t.open_errors += 1;
        }
        if report.first_failure.is_some() {
            t.failed_appends_seen += 1;
        }
        t.poisoned_after += report.poisoned_after_failure;
        t.acks_after_failure += report.acks_after_failure;
        if report.acks_after_failure > 0 {
            failure = Some(format!(
                "cut {cut}: G4: {} appends acknowledged after the first failure {:?}",
                report.acks_after_failure, report.first_failure
            ));
            break;
        }
        // Later appends fail with Poisoned after a failed write or flush; a failed
        // segment preparation does not poison (it is retried), so they fail with it again.
        t.other_after += report.other_errors_after_failure;
        watchdog.case(|| format!("{fs} cut {cut}: checking"));
        match model.check(&dir, generation, &report) {
            Ok(counts) => {
                t.acked += counts.acked_new;
                t.survivors += counts.unacked_survivors;
            }
            Err(e) => {
                let late: Vec<&str> = report_lines
                    .iter()
                    .filter(|(at, text)| *at >= shutdown_started && text.starts_with("ACK "))
                    .map(|(_, text)| text.as_str())
                    .collect();
                failure = Some(format!(
                    "cut {cut} ({when:?}, {delay_us} us, io {io}): {e}; ACK lines read after the shutdown began: {late:?}"
                ));
                break;
            }
        }
        if cut % 20 == 0 || cut == cuts {
            println!(
                "{test}: {cut}/{cuts} cuts, {} records in the log, {} acknowledged, {:.0} s",
                model.records.len(),
                t.acked,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(failure) = failure {
        let keep = std::env::temp_dir().join(format!("ringlog-powercut-{fs}-{preallocate}-{seed}"));
        let _ = std::fs::remove_dir_all(&keep);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let _ = std::fs::create_dir_all(&keep);
            for entry in entries.flatten() {
                let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
            }
            eprintln!("{test}: the log is kept at {}", keep.display());
        }
        panic!("{test}: {failure}");
    }
    // The writer's own recovery agrees, and a clean close reopens clean.
    {
        let log = ringlog::Log::open(&dir, reliability::child_options(ringlog::IoBackend::Auto))
            .expect("final writer open");
        assert_eq!(log.next_offset(), model.records.len() as u64);
        log.close().expect("close");
    }
    rig.guard.unmount().expect("final unmount");
    println!(
        "{test}: {} power cuts in {:.1} s: {} records acknowledged ({} before their cut), 0 lost; {} unacknowledged records survived whole; {} cuts during the child's recovery, {} at a rollover; {} children saw their appends fail after the cut, {} later appends got Poisoned and {} another error (a failed segment preparation, which does not poison), 0 acknowledged after a failure; {} recoveries failed because the cut hit them; {} records in the log",
        t.cuts,
        started.elapsed().as_secs_f64(),
        t.acked,
        t.acked_before_cut,
        t.survivors,
        t.during_recovery,
        t.at_rollover,
        t.failed_appends_seen,
        t.poisoned_after,
        t.other_after,
        t.open_errors,
        model.records.len()
    );
}

/// The trim-and-truncate child: re-executed by `power_cuts_ext4_trim_truncate`.
#[test]
#[ignore = "child process of the power-cut tests (runs only when re-executed by them)"]
fn powercut_cut_child() {
    cut_reliability::cut_child_main();
}

/// Power cuts while a child appends, truncates and trims (docs/design.md 4.9), each
/// checked as `tests/kill9_cut.rs` checks a kill, with only what the child said before
/// the cut taken as done: the first offset is the last trim that returned (or the one in
/// flight), every acknowledged record not truncated is there, a truncation in flight
/// happened whole or not at all, and no record past a cut is older than the cut.
#[test]
fn power_cuts_ext4_trim_truncate() {
    let test = "powercut ext4 trim/truncate";
    let Some(mut rig) = Rig::set_up(test, "ext4") else {
        return;
    };
    let cuts = env_u64("RINGLOG_POWERCUTS", 20);
    let seed = seed(test);
    let mut rng = Rng::new(seed);
    let dir = rig.mountpoint.join("log");
    let watchdog = Watchdog::start("powercut", Duration::from_secs(120));
    let started = Instant::now();
    let mut model = cut_reliability::Model::default();
    let (mut truncations, mut trims, mut in_flight) = (0, 0, 0);
    for cut in 1..=cuts {
        let on_cut = rng.chance(0.5);
        let delay_us = rng.range(2_000, 150_000);
        watchdog.case(|| format!("{test} cut {cut} (on a cut: {on_cut}, {delay_us} us)"));
        let mut child = WriterChild::spawn(
            "powercut_cut_child",
            &dir,
            cut as u32,
            rng.next_u64(),
            "auto",
        );
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut armed: Option<Instant> = None;
        while Instant::now() < give_up && armed.is_none_or(|at| Instant::now() < at) {
            let Some(line) = child.next_line(Duration::from_millis(20)) else {
                if child.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                continue;
            };
            let word = line.text.split_whitespace().next().unwrap_or("");
            match word {
                "TRUNCATING" | "TRIMMING" if on_cut => break,
                "OPENED" if armed.is_none() => {
                    armed = Some(line.at + Duration::from_micros(delay_us));
                }
                _ => {}
            }
        }
        // What the child said before the cut began is what returned; what it said while
        // the filesystem went down (successes and failures) may or may not have.
        let before_cut = Instant::now();
        shutdown_fs(&rig.mountpoint).unwrap_or_else(|e| panic!("{test} cut {cut}: {e}"));
        let cut_at = Instant::now();
        while cut_at.elapsed() < Duration::from_millis(60) {
            if child.next_line(Duration::from_millis(10)).is_none()
                && child.child.try_wait().ok().flatten().is_some()
            {
                break;
            }
        }
        child.kill();
        child
            .finish(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{test} cut {cut}: {e}"));
        let lines: Vec<String> = child
            .seen
            .iter()
            .filter(|l| l.at < before_cut)
            .map(|l| l.text.clone())
            .collect();
        // Cuts begun or finished while the filesystem went down may or may not have
        // happened (in order: a prefix of them did).
        let maybe: Vec<String> = child
            .seen
            .iter()
            .filter(|l| l.at >= before_cut)
            .map(|l| l.text.clone())
            .filter(|l| l.starts_with("TRUNCAT") || l.starts_with("TRIMM"))
            .collect();
        drop(child);
        if let Some(bad) = lines
            .iter()
            .find(|l| l.starts_with("FAIL") || l.starts_with("OPENERR"))
        {
            panic!("{test} cut {cut}: before the cut the child said {bad}");
        }
        truncations += lines.iter().filter(|l| l.starts_with("TRUNCATED")).count();
        trims += lines.iter().filter(|l| l.starts_with("TRIMMED")).count();
        in_flight += usize::from(
            !maybe.is_empty()
                || lines
                    .last()
                    .is_some_and(|l| l.starts_with("TRUNCATING") || l.starts_with("TRIMMING")),
        );
        rig.remount()
            .unwrap_or_else(|e| panic!("{test} cut {cut}: remount: {e}"));
        watchdog.case(|| format!("{test} cut {cut}: checking"));
        if let Err(e) = model.check_maybe(&dir, &lines, &maybe) {
            let tail: Vec<&String> = lines.iter().rev().take(8).rev().collect();
            let keep = std::env::temp_dir().join(format!("ringlog-powercut-cuts-{seed}"));
            let _ = copy_tree(&dir, &keep);
            eprintln!("{test}: the log is kept at {}", keep.display());
            panic!("{test} cut {cut} (seed {seed}): {e}; the child's last lines before the cut: {tail:?}");
        }
    }
    rig.guard.unmount().expect("final unmount");
    println!(
        "{test}: {cuts} power cuts in {:.1} s: {truncations} truncations and {trims} trims returned before their cut, {in_flight} cuts with a truncation or trim in flight; {} acknowledged records checked at the end",
        started.elapsed().as_secs_f64(),
        model.acked.len()
    );
}

/// A store of 8 topics under power cuts: the child of `tests/common/store_reliability.rs`
/// appends durably to 8 topics from 4 threads while another creates, appends to and
/// removes topics; each cut is checked as `tests/store_kill9.rs` checks a kill (every
/// acknowledged record and topic creation there, removed topics never back, unfinished
/// creations absent or whole, no half topic), plus the filesystem's journal replay.
#[test]
fn power_cuts_ext4_store() {
    power_cuts_store("ext4");
}

/// When a store's power is cut: right after the child's `OPENING`, `CREATING`,
/// `REMOVING`, `ROLLING` (plus a delay), or a random moment after `STORE_OPENED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreWhen {
    Recovery,
    Create,
    Remove,
    Rollover,
    Anytime,
}

#[derive(Default)]
struct StoreTotals {
    cuts: u64,
    acked: u64,
    acked_before_cut: u64,
    created: u64,
    removed: u64,
    unacked_creations_kept: u64,
    unacked_creations_gone: u64,
    unacked_removals_done: u64,
    unacked_removals_undone: u64,
    survivors: u64,
    leftovers: u64,
    children_with_failures: u64,
    during_recovery: u64,
}

fn power_cuts_store(fs: &str) {
    use store_reliability::{final_check, parse_event, parse_events, Event, StoreModel};

    let test = format!("powercut {fs} store ({PINNED})");
    let Some(mut rig) = Rig::set_up(&test, fs) else {
        return;
    };
    let cuts = env_u64("RINGLOG_POWERCUTS", 20);
    let seed = seed(&test);
    let mut rng = Rng::new(seed ^ 0x5707E);
    let dir = rig.mountpoint.join("store");
    let watchdog = Watchdog::start("powercut store", Duration::from_secs(120));
    let started = Instant::now();
    let mut model = StoreModel::default();
    let mut t = StoreTotals::default();
    let mut failure = None;
    for cut in 1..=cuts {
        let generation = cut as u32;
        let when = match rng.below(100) {
            0..=11 => StoreWhen::Recovery,
            12..=26 => StoreWhen::Create,
            27..=41 => StoreWhen::Remove,
            42..=56 => StoreWhen::Rollover,
            _ => StoreWhen::Anytime,
        };
        let delay_us = match when {
            StoreWhen::Recovery => rng.below(8_000),
            StoreWhen::Create | StoreWhen::Remove => rng.below(3_000),
            StoreWhen::Rollover => rng.below(2_000),
            StoreWhen::Anytime => rng.range(5_000, 250_000),
        };
        let nth = match when {
            StoreWhen::Create | StoreWhen::Remove | StoreWhen::Rollover => rng.range(1, 4),
            _ => 1,
        };
        let io = if rng.chance(0.5) { "pwrite" } else { "auto" };
        watchdog.case(|| format!("{fs} store cut {cut} {when:?} #{nth} {delay_us} us io {io}"));
        let mut child = WriterChild::spawn_with(
            "powercut_store_child",
            &dir,
            generation,
            rng.next_u64(),
            io,
            &[("RINGLOG_PREALLOCATE", PINNED)],
        );
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut armed: Option<Instant> = None;
        let mut triggers = 0;
        loop {
            if armed.is_some_and(|at| Instant::now() >= at) || Instant::now() >= give_up {
                break;
            }
            let wait = armed
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            let Some(line) = child.next_line(wait) else {
                if child.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                continue;
            };
            if armed.is_none() {
                let trigger = matches!(
                    (when, parse_event(&line.text)),
                    (StoreWhen::Recovery, Some(Event::Opening))
                        | (StoreWhen::Create, Some(Event::Creating(_)))
                        | (StoreWhen::Remove, Some(Event::Removing(_)))
                        | (StoreWhen::Rollover, Some(Event::Rolling(_)))
                        | (StoreWhen::Anytime, Some(Event::StoreOpened))
                );
                if trigger {
                    triggers += 1;
                    if triggers >= nth {
                        armed = Some(line.at + Duration::from_micros(delay_us));
                    }
                }
            }
        }
        // The power cut: the child stopped first, as a real one lets no system call
        // return after it (a live shutdown ioctl lets a flush straddle it, and on ext4
        // that flush can report success for `fallocate`d blocks it never converted:
        // the default preallocation since 2026-12-06, see `Cut`).
        freeze(child.child.id());
        if let Err(e) = shutdown_fs(&rig.mountpoint) {
            failure = Some(format!("cut {cut}: {e}"));
            break;
        }
        let cut_at = Instant::now();
        while cut_at.elapsed() < Duration::from_millis(60) {
            if child.next_line(Duration::from_millis(10)).is_none()
                && child.child.try_wait().ok().flatten().is_some()
            {
                break;
            }
        }
        child.kill();
        if let Err(e) = child.finish(Duration::from_secs(20)) {
            failure = Some(format!("cut {cut}: {e}"));
            break;
        }
        let events = parse_events(&child.seen);
        let acked_before_cut: u64 = events
            .iter()
            .filter(|(at, _)| *at < cut_at)
            .map(|(_, e)| match e {
                Event::Ack { start, end, .. } => end - start,
                _ => 0,
            })
            .sum();
        let opened = events.iter().any(|(_, e)| matches!(e, Event::StoreOpened));
        drop(child);
        if let Err(e) = rig.remount() {
            failure = Some(format!("cut {cut}: {e}"));
            break;
        }
        watchdog.case(|| format!("{fs} store cut {cut}: checking"));
        match model.check(&dir, generation, &events, true) {
            Ok(counts) => {
                t.cuts += 1;
                t.acked += counts.acked_records;
                t.acked_before_cut += acked_before_cut;
                t.created += counts.created;
                t.removed += counts.removed;
                t.unacked_creations_kept += counts.unacked_creations_kept;
                t.unacked_creations_gone += counts.unacked_creations_gone;
                t.unacked_removals_done += counts.unacked_removals_done;
                t.unacked_removals_undone += counts.unacked_removals_undone;
                t.survivors += counts.unacked_survivors;
                t.leftovers += counts.leftovers_on_disk;
                t.children_with_failures += u64::from(counts.failures > 0);
                t.during_recovery += u64::from(!opened);
            }
            Err(e) => {
                failure = Some(format!(
                    "cut {cut} ({when:?} #{nth}, {delay_us} us, io {io}; seed {seed}): {e}"
                ));
                break;
            }
        }
        if cut % 20 == 0 || cut == cuts {
            println!(
                "{test}: {cut}/{cuts} cuts, {} topics, {} records in the store, {} acknowledged, {:.0} s",
                model.live_topics().len(),
                model.total_records(),
                t.acked,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if failure.is_none() {
        watchdog.case(|| format!("{fs} store: final writer open"));
        if let Err(e) = final_check(&dir, &model) {
            failure = Some(format!("after the last cut (seed {seed}): {e}"));
        }
    }
    if let Some(failure) = failure {
        let keep = std::env::temp_dir().join(format!("ringlog-powercut-{fs}-store-{seed}"));
        let _ = std::fs::remove_dir_all(&keep);
        if copy_tree(&dir, &keep).is_ok() {
            eprintln!("{test}: the store is kept at {}", keep.display());
        }
        panic!("{test}: {failure}");
    }
    rig.guard.unmount().expect("final unmount");
    println!(
        "{test}: {} power cuts in {:.1} s: {} records acknowledged ({} before their cut), 0 lost; {} topics created and {} removed (acknowledged), 0 lost, 0 came back; unacknowledged: {} creations found whole, {} absent, {} removals found done, {} not done; {} unacknowledged records survived whole; {} +new+/+gone+ directories left by cuts, all removed at the next open; {} cuts before the store opened, {} children saw operations fail after their cut; {} topics and {} records in the store",
        t.cuts,
        started.elapsed().as_secs_f64(),
        t.acked,
        t.acked_before_cut,
        t.created,
        t.removed,
        t.unacked_creations_kept,
        t.unacked_creations_gone,
        t.unacked_removals_done,
        t.unacked_removals_undone,
        t.survivors,
        t.leftovers,
        t.during_recovery,
        t.children_with_failures,
        model.live_topics().len(),
        model.total_records(),
    );
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Stops process `pid` (SIGSTOP) and waits until each of its threads that runs user code
/// is stopped, so that none is inside a system call when the filesystem shuts down.
/// io_uring's kernel workers (`iou-*`) never stop and are not waited for.
fn freeze(pid: u32) {
    // SAFETY: kill(2) with a pid this test spawned and has not reaped yet.
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        let running = tasks.flatten().any(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            !comm.contains("(iou-") && !rest.starts_with('T') && !rest.starts_with('t')
        });
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("child {pid} did not stop within 5 s");
}
