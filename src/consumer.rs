//! Named consumers: a durable position per consumer, in `consumers/<name>` inside the log
//! directory (a store topic's directory is a log directory).
//!
//! Each file holds two alternating checksummed slots (see `slot.rs` and `docs/design.md`
//! section 2.5). A commit writes the slot not holding the latest position in place with
//! `pwrite` and makes it durable with `fdatasync`: no rename, no directory sync, no change
//! of the file's size, so the flush is one data block. Creating a consumer writes its
//! file under a temporary name, syncs it, renames it into place and syncs the directory,
//! once per consumer.

mod slot;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::log::Log;
use crate::segment::sync_dir;
use crate::store::check_topic_name;
use slot::{encode_slot, pick_slot, slot_position_bytes, Slot, FILE_BYTES};

/// The subdirectory of a log directory that holds consumer position files.
pub(crate) const CONSUMERS_DIR: &str = "consumers";

/// How a position file being created is named until it is renamed into place. `+` is
/// never in a consumer name, so a leftover cannot be taken for a consumer.
const CREATING_SUFFIX: &str = "+creating";

/// `AtomicU64` value for "no position committed".
const NO_POSITION: u64 = u64::MAX;

/// The consumers of one open log that have handles: two handles of one name share one
/// state, so they see each other's commits and their commits are serialized.
#[derive(Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<String, Weak<State>>>,
}

/// One consumer's state, shared by its handles.
struct State {
    name: String,
    path: PathBuf,
    /// The last position committed (or read), [`NO_POSITION`] if none. Read without the
    /// commit lock.
    position: AtomicU64,
    /// Removed by [`Log::remove_consumer`]: commits through old handles fail.
    removed: AtomicBool,
    /// Held for the whole of a commit: commits of one consumer are serialized.
    commit: Mutex<Committed>,
}

/// What the writer of a position file must know.
struct Committed {
    /// The file, open for writing (for reading only on a read-only log); `None` on a
    /// read-only log before a writer created it.
    file: Option<File>,
    /// The sequence of the latest valid slot: the next commit writes `sequence + 1` into
    /// the other slot. It moves only after a commit's flush succeeded, so a failed commit
    /// is retried in the same slot and never overwrites the last acknowledged position.
    sequence: u64,
}

/// A named consumer of a log: a position (the next offset to read) that survives restarts
/// and crashes. Get one with [`Log::consumer`].
///
/// `Consumer` is `Clone + Send + Sync`; every handle of one name on one open log shares
/// the same state.
#[derive(Clone)]
pub struct Consumer {
    log: Log,
    state: Arc<State>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.state.name)
            .field("position", &self.position())
            .field("path", &self.state.path)
            .finish()
    }
}

impl Consumer {
    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The committed next offset to read, or `None` if the consumer never committed.
    ///
    /// On a read-only log this reads the position file again, so it follows the commits of
    /// a writer in another process (keeping the last value read if the file cannot be
    /// read at the moment).
    pub fn position(&self) -> Option<u64> {
        if self.log.is_read_only() {
            let _ = self.reload();
        }
        match self.state.position.load(SeqCst) {
            NO_POSITION => None,
            position => Some(position),
        }
    }

    /// Follows the log from the committed position (from `first_offset()` if the
    /// consumer never committed): see [`Log::follow`]. The follower does not commit;
    /// call [`Consumer::commit`] as records are processed.
    ///
    /// # Errors
    ///
    /// As [`Log::follow`]: [`Error::OffsetOutOfRange`] if the position is outside the
    /// log (below a trimmed start, or past what a crash left of an unsynced log).
    pub fn follow(&self) -> Result<crate::Follower> {
        let from = self.position().unwrap_or_else(|| self.log.first_offset());
        self.log.follow(from)
    }

    /// Stores `next`, the first offset not yet processed, durably: after this returns,
    /// a crash leaves `next` as the position (or a later commit's). Commits of one
    /// consumer from several threads are serialized; the last one wins. A position may
    /// move backwards (to process records again).
    ///
    /// A position can be above what a crash leaves of the log under
    /// [`Durability::None`](crate::Durability::None) or `Interval`, if it covered records
    /// that were not durable yet: commit positions at or below
    /// [`Log::durable_offset`] (or [`Log::wait_durable`] first) to rule that out.
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if `next > log.next_offset()`, [`Error::ReadOnly`] on a
    /// read-only log, [`Error::Closed`] once the log is closed, [`Error::UnknownConsumer`]
    /// once the consumer was removed, [`Error::Io`] if the write or flush failed (the
    /// position is then the previous one or `next`; commit again).
    pub fn commit(&self, next: u64) -> Result<()> {
        if self.log.is_read_only() {
            return Err(Error::ReadOnly);
        }
        self.log.check_open()?;
        let next_offset = self.log.next_offset();
        if next > next_offset {
            return Err(Error::OffsetOutOfRange {
                offset: next,
                first: self.log.first_offset(),
                next: next_offset,
            });
        }
        let state = &self.state;
        let mut committed = state.commit.lock();
        if state.removed.load(SeqCst) {
            return Err(self.unknown());
        }
        let Some(file) = committed.file.as_ref() else {
            return Err(Error::ReadOnly);
        };
        let slot = Slot {
            sequence: committed.sequence + 1,
            position: Some(next),
        };
        let bytes = encode_slot(&state.name, slot);
        file.write_all_at(&bytes, slot_position_bytes(slot.sequence))
            .map_err(|e| Error::io("write consumer position", &state.path, e))?;
        rustix::fs::fdatasync(file)
            .map_err(|e| Error::io("fdatasync consumer position", &state.path, e.into()))?;
        committed.sequence = slot.sequence;
        state.position.store(next, SeqCst);
        Ok(())
    }

    /// Reads the position file again (read-only logs), taking what it says if it is at
    /// least as new as what this handle knows.
    fn reload(&self) -> Result<()> {
        let state = &self.state;
        let mut committed = state.commit.lock();
        if committed.file.is_none() {
            match File::open(&state.path) {
                Ok(file) => committed.file = Some(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io("open consumer position", &state.path, e)),
            }
        }
        let Some(file) = committed.file.as_ref() else {
            return Ok(());
        };
        let slot = read_slot(file, &state.path, &state.name)?;
        if slot.sequence >= committed.sequence {
            committed.sequence = slot.sequence;
            state
                .position
                .store(slot.position.unwrap_or(NO_POSITION), SeqCst);
        }
        Ok(())
    }

    fn unknown(&self) -> Error {
        Error::UnknownConsumer {
            name: self.state.name.clone(),
            log: self.log.dir().to_path_buf(),
        }
    }
}

impl Registry {
    /// The consumer `name` of `log`, created (durably) on first use on a writable log.
    pub(crate) fn consumer(&self, log: &Log, name: &str) -> Result<Consumer> {
        check_topic_name(name)?;
        log.check_open()?;
        let mut open = self.open.lock();
        if let Some(state) = open.get(name).and_then(Weak::upgrade) {
            if !state.removed.load(SeqCst) {
                return Ok(Consumer {
                    log: log.clone(),
                    state,
                });
            }
        }
        open.retain(|_, state| state.strong_count() > 0);
        let dir = log.dir().join(CONSUMERS_DIR);
        let path = dir.join(name);
        let read_only = log.is_read_only();
        let file = match OpenOptions::new().read(true).write(!read_only).open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if read_only {
                    None
                } else {
                    Some(create(log.dir(), &dir, &path, name)?)
                }
            }
            Err(e) => return Err(Error::io("open consumer position", &path, e)),
        };
        if let (Some(file), false) = (&file, read_only) {
            // What a crashed writer left in the page cache may not be durable yet: flush
            // it before reading, so that the slot the next commit overwrites is never the
            // only durable one (2.5).
            rustix::fs::fdatasync(file)
                .map_err(|e| Error::io("fdatasync consumer position", &path, e.into()))?;
        }
        let slot = match &file {
            Some(file) => read_slot(file, &path, name)?,
            None => Slot {
                sequence: 0,
                position: None,
            },
        };
        let state = Arc::new(State {
            name: name.to_string(),
            path,
            position: AtomicU64::new(slot.position.unwrap_or(NO_POSITION)),
            removed: AtomicBool::new(false),
            commit: Mutex::new(Committed {
                file,
                sequence: slot.sequence,
            }),
        });
        open.insert(name.to_string(), Arc::downgrade(&state));
        Ok(Consumer {
            log: log.clone(),
            state,
        })
    }

    /// Every consumer of `log` that has a position file, by name, with its position.
    pub(crate) fn list(&self, log: &Log) -> Result<Vec<(String, Option<u64>)>> {
        log.check_open()?;
        let dir = log.dir().join(CONSUMERS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Leftovers of creations a crash interrupted, and anything else not ours.
            if check_topic_name(&name).is_err() {
                continue;
            }
            let live = if log.is_read_only() {
                None
            } else {
                self.open.lock().get(&name).and_then(Weak::upgrade)
            };
            let position = match live {
                Some(state) => match state.position.load(SeqCst) {
                    NO_POSITION => None,
                    position => Some(position),
                },
                None => {
                    let path = entry.path();
                    let file = match File::open(&path) {
                        Ok(file) => file,
                        // Removed since the listing.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io("open consumer position", &path, e)),
                    };
                    read_slot(&file, &path, &name)?.position
                }
            };
            out.push((name, position));
        }
        out.sort();
        Ok(out)
    }

    /// Removes consumer `name` of `log` durably; its handles' commits fail from then on.
    pub(crate) fn remove(&self, log: &Log, name: &str) -> Result<()> {
        check_topic_name(name)?;
        if log.is_read_only() {
            return Err(Error::ReadOnly);
        }
        log.check_open()?;
        let mut open = self.open.lock();
        let dir = log.dir().join(CONSUMERS_DIR);
        let path = dir.join(name);
        if let Some(state) = open.remove(name).and_then(|s| s.upgrade()) {
            // Wait out a commit in flight; no commit starts after this.
            let mut committed = state.commit.lock();
            state.removed.store(true, SeqCst);
            committed.file = None;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::UnknownConsumer {
                    name: name.to_string(),
                    log: log.dir().to_path_buf(),
                })
            }
            Err(e) => return Err(Error::io("remove consumer position", &path, e)),
        }
        sync_dir(&dir)
    }
}

/// Creates the position file of a new consumer: both slot pages written (slot 0: sequence
/// 0, no position) under a temporary name and synced, renamed into place, and the
/// directories synced. Returns the file open for reading and writing.
fn create(log_dir: &Path, dir: &Path, path: &Path, name: &str) -> Result<File> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    let tmp = dir.join(format!("{name}{CREATING_SUFFIX}"));
    let mut bytes = vec![0u8; FILE_BYTES as usize];
    let first = Slot {
        sequence: 0,
        position: None,
    };
    let at = slot_position_bytes(first.sequence) as usize;
    let encoded = encode_slot(name, first);
    if let Some(dst) = bytes.get_mut(at..at + encoded.len()) {
        dst.copy_from_slice(&encoded);
    }
    {
        let file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all_at(&bytes, 0)
            .map_err(|e| Error::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename consumer position", path, e))?;
    sync_dir(dir)?;
    // The `consumers` entry itself, in case this call (or a crashed one) created it.
    sync_dir(log_dir)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open consumer position", path, e))
}

/// The position `file` holds.
fn read_slot(file: &File, path: &Path, name: &str) -> Result<Slot> {
    let mut bytes = vec![0u8; FILE_BYTES as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        let Some(rest) = bytes.get_mut(filled..) else {
            break;
        };
        match file.read_at(rest, filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read consumer position", path, e)),
        }
    }
    bytes.truncate(filled);
    pick_slot(&bytes, name).map_err(|reason| {
        Error::corruption(
            path,
            0,
            format!(
                "{reason}; the consumer's position is lost: remove it (Log::remove_consumer) and commit a position again"
            ),
        )
    })
}

/// The lowest committed position of the consumers of the log in `log_dir`, read from
/// their files (a consumer that never committed holds nothing back): what retention with
/// `keep_consumers` must keep. A commit racing this read is seen as its old position or
/// its new one, never lower than the old.
pub(crate) fn committed_floor(log_dir: &Path) -> Result<Option<u64>> {
    let dir = log_dir.join(CONSUMERS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read directory", &dir, e)),
    };
    let mut floor: Option<u64> = None;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if check_topic_name(&name).is_err() {
            continue;
        }
        let path = entry.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open consumer position", &path, e)),
        };
        if let Some(position) = read_slot(&file, &path, &name)?.position {
            floor = Some(floor.map_or(position, |f| f.min(position)));
        }
    }
    Ok(floor)
}
