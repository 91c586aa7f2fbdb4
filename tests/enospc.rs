//! A full disk (G8): on a small tmpfs (root only; mounted here, unmounted by a guard)
//! the disk fills during appends (the log itself fills it, or another writer does while
//! segments are being prepared, or it is full before the log is created). Appends must
//! fail with an error (no panic, no hang), acknowledged records survive a reopen after
//! space is freed, and no half-prepared segment is left behind.
//!
//! Prints `SKIP` (and passes) when not root or when tmpfs cannot be mounted.

#[path = "common/reliability.rs"]
mod reliability;

use std::path::Path;
use std::time::{Duration, Instant};

use reliability::{is_root, make_payload, parse_payload, Meta, MountGuard, Watchdog};
use ringlog::{Durability, Error, IoBackend, Log, Options, Preallocate};

const SEGMENT_BYTES: u64 = 64 << 10;

fn options(io: IoBackend, prealloc: Preallocate) -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Sync)
        .preallocate(prealloc)
        .io(io)
}

/// Mounts a tmpfs of `size` at a fresh temp dir, or prints why not.
fn small_tmpfs(test: &str, size: &str) -> Option<(tempfile::TempDir, MountGuard)> {
    if !is_root() {
        println!("{test}: SKIP: not root (mounting a tmpfs needs root)");
        return None;
    }
    let mountpoint = tempfile::tempdir().expect("tempdir");
    match MountGuard::mount(
        "tmpfs",
        mountpoint.path(),
        &["-t", "tmpfs", "-o", &format!("size={size},mode=0755")],
    ) {
        Ok(guard) => Some((mountpoint, guard)),
        Err(e) => {
            println!("{test}: SKIP: cannot mount a tmpfs: {e}");
            None
        }
    }
}

fn payload(offset: u64, len: u32) -> Vec<u8> {
    make_payload(Meta {
        offset,
        generation: 1,
        len,
        batch_start: offset,
        batch_len: 1,
    })
}

/// Segment files that are not a complete activated segment or a complete spare.
fn half_prepared(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.ends_with(".tmp") {
            out.push(format!("{name}: leftover temporary file"));
        }
        if !name.ends_with(".seg") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        match ringlog::fuzzing::decode_segment_header(&bytes) {
            Some((_, _, _, size)) if size == bytes.len() as u64 => {}
            Some((_, _, _, size)) => {
                out.push(format!("{name}: {} bytes, header says {size}", bytes.len()))
            }
            None => out.push(format!("{name}: {} bytes, no valid header", bytes.len())),
        }
    }
    out
}

/// Checks that the log in `dir` opens and holds exactly records `0..acked` (plus,
/// possibly, records that were written but whose append failed), each intact.
fn check_reopen(dir: &Path, opts: &Options, acked: u64) -> Result<u64, String> {
    let log = Log::open(dir, opts.clone()).map_err(|e| format!("reopen: {e}"))?;
    let next = log.next_offset();
    if next < acked {
        return Err(format!(
            "reopen found {next} records, {acked} were acknowledged"
        ));
    }
    for (i, record) in log.iter(0).enumerate() {
        let record = record.map_err(|e| format!("read {i}: {e}"))?;
        parse_payload(i as u64, record.payload())?;
    }
    log.close().map_err(|e| format!("close: {e}"))?;
    Ok(next)
}

/// Appends until the first error (or `limit` appends). Returns (acknowledged, error).
fn append_until_error(log: &Log, len: u32, limit: u64) -> (u64, Option<Error>) {
    let mut acked = log.next_offset();
    for _ in 0..limit {
        match log.append(&payload(acked, len)) {
            Ok(offset) => {
                assert_eq!(offset, acked);
                acked += 1;
            }
            Err(e) => return (acked, Some(e)),
        }
    }
    (acked, None)
}

#[test]
fn full_disk_during_appends_and_segment_preparation() {
    let Some((mountpoint, mut guard)) = small_tmpfs("enospc", "2m") else {
        return;
    };
    let watchdog = Watchdog::start("enospc", Duration::from_secs(60));
    let started = Instant::now();
    let mut lines = Vec::new();
    for (io, prealloc) in [
        (IoBackend::Pwrite, Preallocate::ZeroFill),
        (IoBackend::Auto, Preallocate::ZeroFill),
        (IoBackend::Pwrite, Preallocate::Fallocate),
    ] {
        let what = format!("{io:?}/{prealloc:?}");
        let opts = options(io, prealloc);

        // 1. The log itself fills the disk; a ballast file makes room later.
        watchdog.case(|| format!("{what}: the log fills the disk"));
        let dir = mountpoint.path().join("log");
        let ballast = mountpoint.path().join("ballast");
        std::fs::write(&ballast, vec![0xAB; 256 << 10]).unwrap();
        let log = Log::open(&dir, opts.clone()).expect("open on an empty tmpfs");
        let (acked, error) = append_until_error(&log, 700, 100_000);
        let error = error.expect("a 2 MiB disk fills up");
        // Later appends fail too (no panic, no hang), and acknowledge nothing.
        let mut later_errors = 0;
        for _ in 0..20 {
            match log.append(&payload(acked, 700)) {
                Err(_) => later_errors += 1,
                Ok(offset) => panic!("{what}: append acknowledged offset {offset} on a full disk"),
            }
        }
        // (Listed after close: while the log is open its housekeeper may be retrying a
        // preparation, whose file exists until the retry fails and removes it.)
        let close = log.close();
        drop(log);
        let leftovers = half_prepared(&dir);
        std::fs::remove_file(&ballast).unwrap();
        let reopened = check_reopen(&dir, &opts, acked).unwrap_or_else(|e| panic!("{what}: {e}"));
        // After the reopen there is room again for at least a segment's worth.
        let log = Log::open(&dir, opts.clone()).unwrap();
        let (more, _) = append_until_error(&log, 700, 50);
        assert_eq!(
            more,
            reopened + 50,
            "{what}: appends resume after space is freed"
        );
        log.close().unwrap();
        assert!(
            leftovers.is_empty(),
            "{what}: half-prepared files left behind: {leftovers:?}"
        );
        lines.push(format!(
            "{what}: log filled the disk after {acked} acknowledged records: first error `{error}`; {later_errors}/20 later appends failed, 0 acknowledged; close: {}; no half-prepared segment; reopen after freeing space: {reopened} records, all intact; appends resumed",
            match &close {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error `{e}`"),
            }
        ));
        std::fs::remove_dir_all(&dir).unwrap();

        // 2. Another writer fills the disk while the log appends (and its housekeeper
        //    prepares segments).
        watchdog.case(|| format!("{what}: another writer fills the disk"));
        let log = Log::open(&dir, opts.clone()).unwrap();
        let filler_path = mountpoint.path().join("filler");
        let filler = std::thread::spawn({
            let filler_path = filler_path.clone();
            move || {
                use std::io::Write;
                let mut file = std::fs::File::create(&filler_path).unwrap();
                let chunk = vec![0x11u8; 16 << 10];
                let mut written = 0u64;
                while file.write_all(&chunk).is_ok() {
                    written += chunk.len() as u64;
                    std::thread::sleep(Duration::from_micros(300));
                }
                written
            }
        });
        let (acked, error) = append_until_error(&log, 300, 100_000);
        let filler_bytes = filler.join().unwrap();
        let error = error.expect("the disk fills up");
        let _ = log.close();
        drop(log);
        let leftovers = half_prepared(&dir);
        std::fs::remove_file(&filler_path).unwrap();
        let reopened = check_reopen(&dir, &opts, acked).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            leftovers.is_empty(),
            "{what}: half-prepared files left behind: {leftovers:?}"
        );
        lines.push(format!(
            "{what}: another writer filled the disk ({} KiB) during appends: {acked} acknowledged, then `{error}`; no half-prepared segment; reopen: {reopened} records, all intact",
            filler_bytes >> 10
        ));
        std::fs::remove_dir_all(&dir).unwrap();

        // 3. Less than a segment free when the log is created: open fails cleanly.
        watchdog.case(|| format!("{what}: full before the log is created"));
        let filler = fill_leaving(mountpoint.path(), SEGMENT_BYTES / 2);
        let result = Log::open(&dir, opts.clone());
        let outcome = match &result {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("error `{e}`"),
        };
        drop(result);
        let leftovers = if dir.exists() {
            half_prepared(&dir)
        } else {
            Vec::new()
        };
        std::fs::remove_file(&filler).unwrap();
        assert!(
            leftovers.is_empty(),
            "{what}: half-prepared files left behind: {leftovers:?}"
        );
        let reopened = check_reopen(&dir, &opts, 0).unwrap_or_else(|e| panic!("{what}: {e}"));
        lines.push(format!(
            "{what}: disk full before creation: open -> {outcome}; no half-prepared segment; open after freeing space -> ok ({reopened} records)"
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
    for line in &lines {
        println!("enospc: {line}");
    }
    println!(
        "enospc: {} scenarios in {:.1} s",
        lines.len(),
        started.elapsed().as_secs_f64()
    );
    drop(watchdog);
    guard.unmount().expect("unmount the tmpfs");
}

/// Fills the filesystem at `dir` until less than `leave` bytes are free; returns the
/// filler file.
fn fill_leaving(dir: &Path, leave: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x22u8; 4096];
    loop {
        let stat = rustix::fs::statvfs(dir).unwrap();
        let free = stat.f_bavail * stat.f_frsize;
        if free < leave {
            break;
        }
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    file.sync_all().ok();
    path
}
