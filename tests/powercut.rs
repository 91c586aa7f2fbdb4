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

#[path = "common/reliability.rs"]
mod reliability;

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

/// The writers pin `Preallocate::ZeroFill`: with `Preallocate::Fallocate` (which the
/// library also picks by itself under `Sync` once segments fill fast) acknowledged
/// records are lost; see the ignored `bug_*` tests below.
const PINNED: &str = "zerofill";

#[test]
fn power_cuts_ext4() {
    power_cuts("ext4", PINNED);
}

#[test]
fn power_cuts_xfs() {
    power_cuts("xfs", PINNED);
}

/// With `Preallocate::Fallocate`, power cuts lose records whose appends returned Ok
/// under `Durability::Sync` (G1), on ext4 and xfs alike: typically the last batch or
/// two before the cut, whose bytes past some point read back as zeros. With ZeroFill,
/// 0 of 480 cuts lost anything; a plain fallocate + pwrite + fdatasync loop (no
/// ringlog) lost nothing either, under the same shutdown ioctl on the same kernel.
#[test]
#[ignore = "known: with Preallocate::Fallocate power cuts lose acknowledged records on this kernel (the default is ZeroFill)"]
fn bug_power_cuts_ext4_fallocate() {
    power_cuts("ext4", "fallocate");
}

#[test]
#[ignore = "known: with Preallocate::Fallocate power cuts lose acknowledged records on this kernel (the default is ZeroFill)"]
fn bug_power_cuts_xfs_fallocate() {
    power_cuts("xfs", "fallocate");
}

/// The library's own choice of preallocation (an earlier adaptive default switched to
/// fallocate under load and lost acknowledged records here).
#[test]
fn power_cuts_ext4_default_preallocation() {
    power_cuts("ext4", "default");
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

fn power_cuts(fs: &str, preallocate: &str) {
    let test = format!("powercut {fs} (preallocate {preallocate})");
    if !is_root() {
        println!("{test}: SKIP: not root (loop devices and mounts need root)");
        return;
    }
    for program in ["losetup", "mount", "umount"] {
        if !have_program(program) {
            println!("{test}: SKIP: {program} not found");
            return;
        }
    }
    let mkfs = format!("mkfs.{fs}");
    if !have_program(&mkfs) {
        let package = if fs == "xfs" { "xfsprogs" } else { "e2fsprogs" };
        println!("{test}: SKIP: {mkfs} not found (install {package})");
        return;
    }
    let cuts = env_u64("RINGLOG_POWERCUTS", 20);
    let seed = seed(&test);
    let mut rng = Rng::new(seed ^ fs.len() as u64);
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
            return;
        }
    };
    let mkfs_args: Vec<&str> = if fs == "xfs" {
        vec!["-q", "-f", &lo.device]
    } else {
        vec!["-q", "-F", &lo.device]
    };
    if let Err(e) = run(&mkfs, &mkfs_args) {
        println!("{test}: SKIP: {mkfs} failed: {e}");
        return;
    }
    let mountpoint = work.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mount = |mp: &Path| MountGuard::mount(&lo.device, mp, &["-t", fs]);
    let mut guard = match mount(&mountpoint) {
        Ok(g) => g,
        Err(e) => {
            println!("{test}: SKIP: cannot mount {fs}: {e}");
            return;
        }
    };
    let dir = mountpoint.join("log");
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
            &[("RINGLOG_PREALLOCATE", preallocate)],
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
        if let Err(e) = shutdown_fs(&mountpoint) {
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
        if let Err(e) = guard.unmount() {
            failure = Some(format!("cut {cut}: unmount after the cut: {e}"));
            break;
        }
        guard = match mount(&mountpoint) {
            Ok(g) => g,
            Err(e) => {
                failure = Some(format!("cut {cut}: remount after the cut: {e}"));
                break;
            }
        };
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
                failure = Some(format!("cut {cut} ({when:?}, {delay_us} us, io {io}): {e}"));
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
    guard.unmount().expect("final unmount");
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
