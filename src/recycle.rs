//! Segment recycling (`Options::recycle_segments`, docs/design.md 4.9): the files of
//! segments that a trim or retention removed become the log's next segments, instead of
//! being deleted while new files are allocated and zero-filled.
//!
//! A removed segment's file is renamed to `<id>.free` (its index files are deleted) when
//! nothing can still read it:
//! - no [`Record`](crate::Record) or reader of this process holds it (the log held the
//!   last reference);
//! - no read-only handle has the log open, in any process: each holds a shared `flock`
//!   on the log's directory from before it reads the directory until it closes, and the
//!   writer renames only while it holds that lock exclusively (taken without waiting);
//! - no other name links to it (a backup's hard link would see its bytes change);
//! - it has the log's full segment size.
//!
//! The housekeeper prepares the next spare from a `.free` file when one is waiting:
//! renamed to `<id>.seg.tmp`, a new header written (new id, new nonce, the recycled
//! flag) and synced, renamed to `<id>.seg`, directory synced: the same steps and crash
//! states as a fresh preparation without the zero-fill. The earlier records stay in the
//! file until overwritten; their checksums are seeded with the earlier nonce, so none
//! reads as a record of the new segment, and recovery knows (from the flag) not to take
//! them for a torn tail (`recovery.rs`).
//!
//! Crash states: a rename to `.free` that a power cut undid leaves the segment below the
//! log's start, deleted again at open; a `.free` file is reused (or deleted when the
//! option is off); a `.seg.tmp` is removed at open like any interrupted preparation.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{flock, FlockOperation};

use crate::segment::Segment;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::sync::Mutex;

/// Extension of a removed segment's file waiting for reuse.
pub(crate) const FREE_EXTENSION: &str = "free";

/// Most files waiting for reuse: one covers the next rollover; a second, a burst of
/// removals. More would only hold disk space.
pub(crate) const MAX_FREE_FILES: usize = 2;

/// The name of removed segment `id`'s file while it waits for reuse.
pub(crate) fn free_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{FREE_EXTENSION}"))
}

/// Whether `name` is a file waiting for reuse.
pub(crate) fn is_free_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        ext == FREE_EXTENSION && stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A read-only handle's shared lock on the log's directory: while any is held, the
/// writer recycles nothing. Released when dropped. (A lock on the directory itself, so
/// that taking it creates and changes nothing on disk.)
#[derive(Debug)]
pub(crate) struct ReaderLease {
    dir: File,
}

impl ReaderLease {
    /// Takes the lease on `dir`, waiting while the writer is renaming a file for reuse
    /// (microseconds). `None` if the directory cannot be opened (open then fails anyway).
    pub(crate) fn take(dir: &Path) -> Option<ReaderLease> {
        let file = File::open(dir).ok()?;
        flock(&file, FlockOperation::LockShared).ok()?;
        Some(ReaderLease { dir: file })
    }

    /// The locked directory (the lease lasts as long as it is open).
    pub(crate) fn into_file(self) -> File {
        self.dir
    }
}

/// The files of one log waiting for reuse, oldest first.
pub(crate) struct FreeFiles {
    files: Mutex<Vec<PathBuf>>,
    /// Spares prepared from them since open.
    recycled: AtomicU64,
}

impl FreeFiles {
    /// The files a crash or a close left (found at open).
    pub(crate) fn new(found: Vec<PathBuf>) -> FreeFiles {
        FreeFiles {
            files: Mutex::new(found),
            recycled: AtomicU64::new(0),
        }
    }

    /// Takes a file to prepare the next segment from.
    pub(crate) fn take(&self) -> Option<PathBuf> {
        let mut files = self.files.lock();
        (!files.is_empty()).then(|| files.remove(0))
    }

    /// Counts a spare prepared from one.
    pub(crate) fn count_recycled(&self) {
        self.recycled.fetch_add(1, Relaxed);
    }

    /// Spares prepared from them since open.
    pub(crate) fn recycled_count(&self) -> u64 {
        self.recycled.load(Relaxed)
    }

    /// How many files wait.
    pub(crate) fn count(&self) -> usize {
        self.files.lock().len()
    }

    /// Renames removed `segment`'s file for reuse if nothing can still read it (see the
    /// module docs) and fewer than [`MAX_FREE_FILES`] wait; `segment` must already be out
    /// of the log's list. Returns whether it did: if not, the caller deletes the file.
    pub(crate) fn keep(&self, dir: &Path, segment: Arc<Segment>, segment_bytes: u64) -> bool {
        if Arc::strong_count(&segment) != 1 || segment.header.segment_bytes != segment_bytes {
            return false;
        }
        let mut files = self.files.lock();
        if files.len() >= MAX_FREE_FILES {
            return false;
        }
        let path = segment.path.clone();
        // Unmapped before the file changes hands.
        drop(segment);
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if meta.nlink() != 1 || meta.len() != segment_bytes {
            return false;
        }
        // Held until the rename is done: a read-only handle opening now waits for it,
        // then finds the segment gone (as if deleted).
        let Ok(lock) = File::open(dir) else {
            return false;
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return false;
        }
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(crate::segment::parse_name)
            .map(|(id, _)| id)
        else {
            return false;
        };
        let free = free_path(dir, id);
        if std::fs::rename(&path, &free).is_err() {
            return false;
        }
        drop(lock);
        files.push(free);
        true
    }
}
