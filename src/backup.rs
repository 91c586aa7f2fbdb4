//! Backup: a consistent copy of a live log or store (docs/design.md 4.10).
//!
//! A log is copied from one snapshot of its state, taken under the lock every trim,
//! truncation and retention pass holds (so none runs while it is taken) and the commit
//! lock (so the segment list and the durable watermark belong together):
//!
//! - every segment of the snapshot is mapped before that lock is let go, so a segment that
//!   a trim or retention deletes during the copy is still read whole from its mapping
//!   (deleted files are unlinked, never shrunk or rewritten);
//! - sealed segments are hard-linked into the copy when the link works (same file system:
//!   nothing ever writes to a sealed segment again), and copied from the mapping when it
//!   does not (another file system, or the file deleted since the snapshot);
//! - the active segment is copied up to the durable watermark of the snapshot, and zeros
//!   after it up to its full size (segments are preallocated, fixed-size files); it gets
//!   no index file, so the copy's first open scans it;
//! - a sealed segment's index file is copied when it is the sealed index the housekeeper
//!   writes and agrees with the data (the check open makes), and left out otherwise (it
//!   is rebuilt on first read): a copy of a checkpoint written before the rollover would
//!   make `verify` report a stale index in the copy;
//! - `log.start` is written when the snapshot's first offset lies inside its first
//!   segment; consumer position files are copied as they are at the time of the copy.
//!
//! A read-only handle has no durable watermark: its backup copies what a fresh read-only
//! look at the directory finds (whole, checksummed batches), and looks again when a file
//! went away before it could be mapped.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use crate::consumer::CONSUMERS_DIR;
use crate::error::{Error, Result};
use crate::log::Log;
use crate::segment::{self, Segment};
use crate::snapshot::SNAPSHOTS_DIR;
use crate::store::Store;
use crate::writer::Shared;

/// How many times a read-only backup looks at the directory again when the writer
/// deleted a file it was about to read.
const READ_ONLY_ATTEMPTS_MAX: u32 = 8;
/// Bytes written at a time when a segment is copied.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// What [`Log::backup`] or [`Store::backup`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// One entry per log copied: the log itself, or each topic of a store.
    pub logs: Vec<LogBackup>,
    /// Sealed segment files hard-linked into the copy.
    pub files_linked: u64,
    /// Files written into the copy (segments that could not be linked, the active
    /// segment, index files, consumer positions, the start and store files).
    pub files_copied: u64,
    /// Bytes of the linked segment files.
    pub bytes_linked: u64,
    /// Bytes written into the copy.
    pub bytes_copied: u64,
    /// Sealed segments that were copied because linking failed (another file system,
    /// or the file was deleted by a trim or retention during the backup).
    pub link_fallbacks: u64,
}

/// One log of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogBackup {
    /// The topic, for a store's backup.
    pub topic: Option<String>,
    /// The log's directory in the copy.
    pub dir: PathBuf,
    /// The copy's first offset.
    pub first_offset: u64,
    /// The copy's next offset: it holds the records `first_offset..next_offset`.
    pub next_offset: u64,
    /// Segment files in the copy.
    pub segments_count: u64,
    /// Consumer position files copied.
    pub consumers_count: u64,
    /// Snapshots taken: more than one when a read-only backup found a file gone.
    pub attempts: u32,
}

/// One moment of a log: the segments to copy (mapped), and where the copy ends.
struct Snapshot {
    /// Every segment of the log, oldest first; all but the last are sealed.
    segments: Vec<Arc<Segment>>,
    first_offset: u64,
    /// Where the last segment's copied data ends, and the offset after its last record.
    end_position: u64,
    end_offset: u64,
}

/// See [`Log::backup`].
pub(crate) fn backup_log(log: &Log, dest: &Path) -> Result<BackupReport> {
    let created = prepare_dest(dest)?;
    refuse_inside(log.dir(), dest, created)?;
    let mut report = BackupReport::default();
    let result = copy_log(log, dest, None, &mut report).and_then(|copied| {
        report.logs.push(copied);
        finish_dest(dest, created)
    });
    result.map(|()| report)
}

/// See [`Store::backup`].
pub(crate) fn backup_store(store: &Store, dest: &Path) -> Result<BackupReport> {
    use crate::store::{STORE_MARKER_FILE, TOPICS_DIR, TOPIC_OPTIONS_FILE};
    let created = prepare_dest(dest)?;
    refuse_inside(store.dir(), dest, created)?;
    let mut report = BackupReport::default();
    copy_small_file(
        &store.dir().join(STORE_MARKER_FILE),
        &dest.join(STORE_MARKER_FILE),
        &mut report,
    )?;
    let topics_dest = dest.join(TOPICS_DIR);
    create_dir(&topics_dest)?;
    for name in store.topics()? {
        // Gone since the listing (removed): left out, as if listed a moment later.
        let Some(log) = store.existing_topic(&name)? else {
            continue;
        };
        let options = log.dir().join(TOPIC_OPTIONS_FILE);
        let options_bytes = match std::fs::read(&options) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read topic options", &options, e)),
        };
        let topic_dest = topics_dest.join(&name);
        create_dir(&topic_dest)?;
        write_new_file(&topic_dest.join(TOPIC_OPTIONS_FILE), &options_bytes)?;
        report.files_copied += 1;
        report.bytes_copied += options_bytes.len() as u64;
        let mut copying = BackupReport::default();
        match copy_log(&log, &topic_dest, Some(name), &mut copying) {
            Ok(copied) => {
                report.logs.push(copied);
                report.files_linked += copying.files_linked;
                report.files_copied += copying.files_copied;
                report.bytes_linked += copying.bytes_linked;
                report.bytes_copied += copying.bytes_copied;
                report.link_fallbacks += copying.link_fallbacks;
            }
            // Removed during the copy (its files went before they were mapped): left
            // out, as if listed a moment later.
            Err(_) if !log.dir().join(TOPIC_OPTIONS_FILE).exists() => {
                std::fs::remove_dir_all(&topic_dest)
                    .map_err(|e| Error::io("remove directory", &topic_dest, e))?;
                report.files_copied -= 1;
                report.bytes_copied -= options_bytes.len() as u64;
                continue;
            }
            Err(e) => return Err(e),
        }
        segment::sync_dir(&topic_dest)?;
    }
    segment::sync_dir(&topics_dest)?;
    finish_dest(dest, created)?;
    Ok(report)
}

/// Refuses a `dest` that holds anything; creates it if missing. Returns whether it was
/// created (its parent is then synced at the end).
fn prepare_dest(dest: &Path) -> Result<bool> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::BackupDestination {
                    path: dest.to_path_buf(),
                    reason: "is not empty; a backup goes into a new or empty directory".into(),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|e| Error::io("create directory", dest, e))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::BackupDestination {
            path: dest.to_path_buf(),
            reason: "is not a directory".into(),
        }),
        Err(e) => Err(Error::io("read directory", dest, e)),
    }
}

/// Refuses a `dest` inside the directory being copied (the copy would become part of
/// what it copies), removing it again if the backup created it.
fn refuse_inside(source: &Path, dest: &Path, created: bool) -> Result<()> {
    let (Ok(source), Ok(dest_real)) = (source.canonicalize(), dest.canonicalize()) else {
        return Ok(());
    };
    if !dest_real.starts_with(&source) {
        return Ok(());
    }
    if created {
        let _ = std::fs::remove_dir(dest);
    }
    Err(Error::BackupDestination {
        path: dest.to_path_buf(),
        reason: format!(
            "is inside {}, the directory being copied; choose a directory outside it",
            source.display()
        ),
    })
}

/// Syncs the copy's top directory (and its parent, if the backup created it).
fn finish_dest(dest: &Path, created: bool) -> Result<()> {
    segment::sync_dir(dest)?;
    if created {
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            segment::sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Copies one log into the empty directory `dest`.
fn copy_log(
    log: &Log,
    dest: &Path,
    topic: Option<String>,
    report: &mut BackupReport,
) -> Result<LogBackup> {
    if !log.is_read_only() {
        let snapshot = snapshot_writer(log)?;
        return copy_snapshot(&snapshot, log.dir(), dest, topic, 1, report);
    }
    // Read-only: a fresh look at the directory each time (this handle's view may be
    // stale, and a file the writer deleted since cannot be mapped any more).
    let mut attempts = 0;
    loop {
        attempts += 1;
        let fresh = Log::open_read_only(log.dir(), log.shared().opts.clone())
            .and_then(|fresh| snapshot_reader(fresh.shared()));
        match fresh {
            Ok(snapshot) => {
                return copy_snapshot(&snapshot, log.dir(), dest, topic, attempts, report)
            }
            Err(e) if attempts >= READ_ONLY_ATTEMPTS_MAX => return Err(e),
            // The writer rolled over, trimmed or truncated while we looked: look again.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(u64::from(attempts))),
        }
    }
}

/// The writer's snapshot: no trim, truncation or retention pass runs while it is taken
/// (the cutting lock), and the segment list and durable watermark are read together
/// (the commit lock: a rollover moves both under it). Every segment is mapped before the
/// cutting lock goes, so none can be deleted before it is.
fn snapshot_writer(log: &Log) -> Result<Snapshot> {
    let shared = log.shared();
    // A trim above the durable watermark (records staged, not yet flushed): flush, so
    // that the copy's start is not past its end. Bounded: each flush covers the start.
    for _ in 0..2 {
        let cutting = shared.cutting.lock();
        let (mut snapshot, flushed_offset) = {
            let c = shared.commit.lock();
            let segments = shared.segments.read().clone();
            debug_assert!(
                segments.last().is_some_and(|s| Arc::ptr_eq(s, &c.segment)),
                "the committer writes the newest segment"
            );
            // A background flush (`Durability::None`, `Interval`) publishes the durable
            // watermark without the committer's durable position: where it ends is
            // found below. Only within what the committer has written (the flush
            // covered a batch boundary of the active segment).
            let flushed = shared.marks.durable();
            let flushed_offset = (flushed > c.durable_offset
                && flushed <= c.written_offset
                && flushed > c.segment.base_offset())
            .then_some(flushed);
            let snapshot = Snapshot {
                segments,
                first_offset: shared.first_offset.load(SeqCst),
                end_position: c.durable_position,
                end_offset: c.durable_offset,
            };
            (snapshot, flushed_offset)
        };
        if let (Some(offset), Some(active)) = (flushed_offset, snapshot.segments.last()) {
            // The position after its last record: the bytes below it do not change
            // (written, and no cut runs while the cutting lock is held).
            let (_, after) = shared.find(active, offset - 1)?;
            snapshot.end_position = after;
            snapshot.end_offset = offset;
        }
        if snapshot.first_offset > snapshot.end_offset {
            drop(cutting);
            log.sync()?;
            continue;
        }
        for segment in &snapshot.segments {
            segment.bytes()?;
        }
        drop(cutting);
        return Ok(snapshot);
    }
    Err(Error::Poisoned {
        cause: "a flush did not cover the log's first offset".into(),
    })
}

/// A read-only handle's snapshot: the records it found at open.
fn snapshot_reader(shared: &Shared) -> Result<Snapshot> {
    let (active, end_position, end_offset) = shared.staging.lock().cursor();
    let segments = shared.segments.read().clone();
    if !segments.last().is_some_and(|s| Arc::ptr_eq(s, &active)) {
        return Err(Error::io(
            "back up",
            &active.path,
            std::io::Error::other("the writer moved to a new segment while the backup looked"),
        ));
    }
    let first_offset = shared.first_offset.load(SeqCst);
    // Segments wholly below the start are the writer's to delete (a crash left them).
    let segments: Vec<Arc<Segment>> = segments
        .into_iter()
        .filter(|s| s.end_offset.read().is_none_or(|end| end > first_offset))
        .collect();
    for segment in &segments {
        segment.bytes()?;
    }
    Ok(Snapshot {
        segments,
        first_offset,
        end_position,
        end_offset,
    })
}

/// Writes the files of `snapshot` into `dest` and syncs them.
fn copy_snapshot(
    snapshot: &Snapshot,
    source: &Path,
    dest: &Path,
    topic: Option<String>,
    attempts: u32,
    report: &mut BackupReport,
) -> Result<LogBackup> {
    let Some((active, sealed)) = snapshot.segments.split_last() else {
        return Err(Error::NotALog {
            path: source.to_path_buf(),
        });
    };
    for segment in sealed {
        copy_sealed(segment, source, dest, report)?;
    }
    copy_active(active, dest, snapshot.end_position, report)?;
    let first_segment_base = snapshot
        .segments
        .first()
        .map_or(snapshot.first_offset, |s| s.base_offset());
    if snapshot.first_offset > first_segment_base {
        crate::trim::write_start(dest, snapshot.first_offset)?;
        report.files_copied += 1;
    }
    let consumers_count = copy_side_files(source, dest, CONSUMERS_DIR, report, |_| true)?;
    // Snapshots of state the copy holds the records for (a later one would be ahead of
    // the copy's log).
    let end = snapshot.end_offset;
    copy_side_files(source, dest, SNAPSHOTS_DIR, report, |name| {
        name.strip_suffix(".snap")
            .and_then(|stem| stem.parse::<u64>().ok())
            .is_some_and(|offset| offset <= end)
    })?;
    segment::sync_dir(dest)?;
    Ok(LogBackup {
        topic,
        dir: dest.to_path_buf(),
        first_offset: snapshot.first_offset.min(snapshot.end_offset),
        next_offset: snapshot.end_offset,
        segments_count: snapshot.segments.len() as u64,
        consumers_count,
        attempts,
    })
}

/// A sealed segment: linked (or copied from its mapping), and its index file if it is
/// the sealed one and agrees with the data.
fn copy_sealed(
    segment: &Arc<Segment>,
    source: &Path,
    dest: &Path,
    report: &mut BackupReport,
) -> Result<()> {
    let bytes = segment.bytes()?;
    let target = segment::segment_path(dest, segment.id());
    if link_same_segment(segment, &target) {
        report.files_linked += 1;
        report.bytes_linked += bytes.len() as u64;
    } else {
        let _ = std::fs::remove_file(&target);
        write_segment(&target, bytes, bytes.len() as u64)?;
        report.files_copied += 1;
        report.bytes_copied += bytes.len() as u64;
        report.link_fallbacks += 1;
    }
    let end_offset = *segment.end_offset.read();
    if let Some(file) = segment.load_index_file(source) {
        let agrees = file.sealed
            && Some(file.next_offset) == end_offset
            && crate::recovery::check_checkpoint(bytes, segment.base_offset(), &file).is_ok();
        if agrees {
            let encoded = file.encode();
            write_new_file(&segment::index_path(dest, segment.id()), &encoded)?;
            report.files_copied += 1;
            report.bytes_copied += encoded.len() as u64;
        }
    }
    segment.release_resident();
    Ok(())
}

/// Hard-links the segment's file to `target`, and checks that the file linked is this
/// segment (its header): false when either fails.
fn link_same_segment(segment: &Segment, target: &Path) -> bool {
    if std::fs::hard_link(&segment.path, target).is_err() {
        return false;
    }
    let same = File::open(target)
        .and_then(|file| segment::read_header(&file))
        .is_ok_and(|(header, len)| {
            len == segment.header.segment_bytes && header.is_ok_and(|h| h == segment.header)
        });
    same && File::open(target).and_then(|f| f.sync_all()).is_ok()
}

/// The active segment: its bytes up to `end_position`, then zeros to its full size.
fn copy_active(
    segment: &Arc<Segment>,
    dest: &Path,
    end_position: u64,
    report: &mut BackupReport,
) -> Result<()> {
    let bytes = segment.bytes()?;
    let end = usize::try_from(end_position)
        .ok()
        .and_then(|end| bytes.get(..end))
        .ok_or_else(|| {
            Error::corruption(
                &segment.path,
                end_position,
                "the durable watermark lies past the end of the segment",
            )
        })?;
    let target = segment::segment_path(dest, segment.id());
    write_segment(&target, end, segment.header.segment_bytes)?;
    report.files_copied += 1;
    report.bytes_copied += segment.header.segment_bytes;
    Ok(())
}

/// Writes `data` and zeros after it up to `total_bytes` to a new file, synced.
fn write_segment(target: &Path, data: &[u8], total_bytes: u64) -> Result<()> {
    debug_assert!(data.len() as u64 <= total_bytes);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)?;
        for chunk in data.chunks(COPY_CHUNK_BYTES) {
            file.write_all(chunk)?;
        }
        let zeros = vec![0u8; COPY_CHUNK_BYTES];
        let mut left = total_bytes - data.len() as u64;
        while left > 0 {
            let n = left.min(COPY_CHUNK_BYTES as u64);
            file.write_all(&zeros[..n as usize])?;
            left -= n;
        }
        file.sync_all()
    })();
    written.map_err(|e| Error::io("write backup segment", target, e))
}

/// Copies the files of the log's subdirectory `dir` (consumer positions, snapshots) that
/// `wanted` accepts, never the leftovers of interrupted creations (`+` names).
fn copy_side_files(
    source: &Path,
    dest: &Path,
    dir: &str,
    report: &mut BackupReport,
    wanted: impl Fn(&str) -> bool,
) -> Result<u64> {
    let from = source.join(dir);
    let entries = match std::fs::read_dir(&from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read directory", &from, e)),
    };
    let to = dest.join(dir);
    create_dir(&to)?;
    let mut count = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", &from, e))?;
        let name = entry.file_name();
        if name.to_str().is_none_or(|n| n.contains('+') || !wanted(n)) {
            continue;
        }
        // Removed since the listing: left out.
        let bytes = match std::fs::read(entry.path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read", entry.path(), e)),
        };
        write_new_file(&to.join(&name), &bytes)?;
        report.files_copied += 1;
        report.bytes_copied += bytes.len() as u64;
        count += 1;
    }
    segment::sync_dir(&to)?;
    Ok(count)
}

fn copy_small_file(from: &Path, to: &Path, report: &mut BackupReport) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| Error::io("read", from, e))?;
    write_new_file(to, &bytes)?;
    report.files_copied += 1;
    report.bytes_copied += bytes.len() as u64;
    Ok(())
}

/// Writes a new file whole and syncs it.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    written.map_err(|e| Error::io("write backup file", path, e))
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir(path).map_err(|e| Error::io("create directory", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_must_be_missing_or_an_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("a/b");
        assert!(prepare_dest(&missing).unwrap(), "created");
        assert!(missing.is_dir());
        assert!(!prepare_dest(&missing).unwrap(), "empty: taken as it is");
        std::fs::write(missing.join("x"), b"x").unwrap();
        let err = prepare_dest(&missing).unwrap_err();
        assert!(matches!(err, Error::BackupDestination { .. }), "{err}");
        let err = prepare_dest(&missing.join("x")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn a_segment_copy_is_the_data_then_zeros_at_full_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        let data: Vec<u8> = (0..(COPY_CHUNK_BYTES + 100)).map(|i| i as u8 | 1).collect();
        let total = 3 * COPY_CHUNK_BYTES as u64 + 8;
        write_segment(&path, &data, total).unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len() as u64, total);
        assert_eq!(&written[..data.len()], data.as_slice());
        assert!(written[data.len()..].iter().all(|b| *b == 0));
        // Never over an existing file.
        assert!(write_segment(&path, &data, total).is_err());
    }
}
