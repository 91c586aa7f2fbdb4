//! A simulated disk for crash tests: a [`Backend`] that forwards every write to the real
//! file but remembers, per write, the bytes it replaced, until a flush of that file makes
//! it durable. A test then "crashes" (stops the log with `Log::abandon`) and turns the
//! files into one of the states a power cut could leave: unflushed writes dropped, a
//! random subset applied, or torn at 512-byte sectors (each piece kept, reverted, zeroed
//! or filled with garbage). Bytes that were durable are never changed: a device writes a
//! sector atomically, so a torn write damages only what it was writing.
//!
//! It can also stop at the N-th operation (as if power failed right then) and fail the
//! N-th write or flush with an error. A failed flush behaves as Linux's does after a
//! writeback error: the writes it was to make durable are lost for good (the page cache
//! keeps them, so they read back, but they never reach the disk), and a later flush of
//! the same file "succeeds" without them. Not a stable API.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::io::{write_sync_now, Backend, BackendKind, Completed, MappedWrites};

/// A write not yet made durable by a flush.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    /// The file written.
    pub path: PathBuf,
    /// Where.
    pub position: u64,
    /// The bytes it replaced.
    pub old: Vec<u8>,
    /// The bytes it wrote.
    pub new: Vec<u8>,
}

/// What a crash does to the writes that were not flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// All of them are lost.
    DropAll,
    /// All of them made it (a process crash).
    KeepAll,
    /// Each write is kept or lost whole, at random.
    Subset,
    /// Each 512-byte piece of each write is kept, lost, zeroed or garbage, at random.
    Torn,
}

#[derive(Default)]
struct State {
    operations_count: u64,
    stop_at: Option<u64>,
    fail_at: Option<(u64, i32)>,
    stopped: bool,
    /// Oldest first; `true` marks a write a failed flush lost (a later flush does not
    /// make it durable).
    pending: Vec<(PendingWrite, bool)>,
    flushes_count: u64,
    /// Failed flushes so far, per file: like Linux's per-file writeback error counter,
    /// which each open file description reports once (see `SimBackend::seen_errors`).
    flush_errors: HashMap<PathBuf, u64>,
}

/// The shared state of a simulated disk; clone the `Arc` to keep a handle.
#[derive(Default)]
pub struct SimDisk {
    state: Mutex<State>,
}

impl SimDisk {
    /// A disk that works until told otherwise.
    pub fn new() -> Arc<SimDisk> {
        Arc::new(SimDisk::default())
    }

    /// Power fails just before operation `n` (1-based; writes and flushes count): it and
    /// every later operation fail with EIO and change nothing.
    pub fn stop_at(&self, n: u64) {
        self.state.lock().stop_at = Some(n);
    }

    /// Operation `n` fails with `errno` (e.g. EIO = 5, ENOSPC = 28): a write changes
    /// nothing, a flush loses the file's unflushed writes. Later operations work again
    /// (a later flush "succeeds", as on Linux).
    pub fn fail_at(&self, n: u64, errno: i32) {
        self.state.lock().fail_at = Some((n, errno));
    }

    /// Operations so far.
    pub fn operations_count(&self) -> u64 {
        self.state.lock().operations_count
    }

    /// Successful flushes so far.
    pub fn flushes_count(&self) -> u64 {
        self.state.lock().flushes_count
    }

    /// Whether power has failed (`stop_at` was reached).
    pub fn stopped(&self) -> bool {
        self.state.lock().stopped
    }

    /// Takes the writes not made durable, oldest first.
    pub fn take_pending(&self) -> Vec<PendingWrite> {
        let pending = std::mem::take(&mut self.state.lock().pending);
        pending.into_iter().map(|(write, _)| write).collect()
    }

    /// The writes not made durable, oldest first, leaving them in place.
    pub fn pending(&self) -> Vec<PendingWrite> {
        let st = self.state.lock();
        st.pending.iter().map(|(write, _)| write.clone()).collect()
    }

    /// A backend writing through this disk.
    pub fn backend(self: &Arc<Self>) -> Box<dyn Backend> {
        // Like a file description opened now: Linux reports to it only the writeback
        // errors that happen after it was opened.
        let seen_errors = self.state.lock().flush_errors.clone();
        Box::new(SimBackend {
            disk: self.clone(),
            started: Completed::default(),
            seen_errors,
        })
    }

    /// Counts an operation; errors if power has failed or this one must fail.
    fn begin(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        st.operations_count += 1;
        let n = st.operations_count;
        if st.stop_at == Some(n) {
            st.stopped = true;
        }
        if st.stopped {
            return Err(io::Error::from_raw_os_error(5));
        }
        if let Some((at, errno)) = st.fail_at {
            if at == n {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }
}

/// Applies a crash to the pending writes, in the directory `dir` (which may be a copy of
/// the one they were made in, `original_dir`): those made under `original_dir` (its
/// subdirectories included), to the same relative paths under `dir`. `seed` drives the
/// random choices.
pub fn apply_crash(
    pending: &[PendingWrite],
    original_dir: &Path,
    dir: &Path,
    mode: CrashMode,
    seed: u64,
) -> io::Result<()> {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Pending paths are canonical (read from /proc/self/fd).
    let original_dir = original_dir
        .canonicalize()
        .unwrap_or_else(|_| original_dir.to_path_buf());
    // Newest first, so reverting a write restores what the one before it left.
    for write in pending.iter().rev() {
        // Only writes under `original_dir`: another directory's (another topic of a
        // store) are not this crash's to apply, and never to the live files.
        let Ok(relative) = write.path.strip_prefix(&original_dir) else {
            continue;
        };
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(relative))
        {
            Ok(file) => file,
            // Deleted (a trim or truncation), and the deletion stands: its unflushed
            // writes went with it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let keep_whole = next() % 2 == 0;
        let mut at = 0usize;
        while at < write.new.len() {
            let absolute = write.position + at as u64;
            let piece = (512 - (absolute % 512) as usize).min(write.new.len() - at);
            let range = at..at + piece;
            let fate = match mode {
                CrashMode::DropAll => 1,
                CrashMode::KeepAll => 0,
                CrashMode::Subset => u64::from(!keep_whole),
                CrashMode::Torn => next() % 4,
            };
            match fate {
                0 => {}
                1 => file.write_all_at(&write.old[range], absolute)?,
                2 => file.write_all_at(&vec![0u8; piece], absolute)?,
                _ => {
                    let garbage: Vec<u8> = (0..piece).map(|_| next() as u8).collect();
                    file.write_all_at(&garbage, absolute)?
                }
            }
            at += piece;
        }
    }
    Ok(())
}

struct SimBackend {
    disk: Arc<SimDisk>,
    started: Completed,
    /// The flush errors of each file this backend has reported: a backend stands for
    /// one open file description per file, and a flush through it fails once for every
    /// failed flush through another (Linux's `errseq`), so two descriptions never hide
    /// an error from each other.
    seen_errors: HashMap<PathBuf, u64>,
}

fn path_of(file: &File) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default()
}

impl Backend for SimBackend {
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
        self.disk.begin()?;
        let mut old = vec![0u8; bytes.len()];
        let len = file.metadata()?.len();
        let readable = len.saturating_sub(position).min(bytes.len() as u64) as usize;
        file.read_exact_at(&mut old[..readable], position)?;
        file.write_all_at(bytes, position)?;
        let write = PendingWrite {
            path: path_of(file),
            position,
            old,
            new: bytes.to_vec(),
        };
        self.disk.state.lock().pending.push((write, false));
        Ok(())
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        let path = path_of(file);
        let begun = self.disk.begin();
        let mut st = self.disk.state.lock();
        let errors = st.flush_errors.get(&path).copied().unwrap_or(0);
        let seen = self.seen_errors.entry(path.clone()).or_insert(0);
        match begun {
            Ok(()) if *seen < errors => {
                // Another description's flush failed since: this one reports it too.
                *seen = errors;
                Err(io::Error::from_raw_os_error(5))
            }
            Ok(()) => {
                st.pending.retain(|(w, lost)| *lost || w.path != path);
                st.flushes_count += 1;
                Ok(())
            }
            Err(e) => {
                let power_failed = st.stopped;
                if !power_failed {
                    for (w, lost) in &mut st.pending {
                        *lost |= w.path == path;
                    }
                    *seen = errors + 1;
                    st.flush_errors.insert(path, errors + 1);
                }
                Err(e)
            }
        }
    }

    fn start_write_sync(&mut self, file: &File, position: u64, bytes: Vec<u8>) {
        let result = write_sync_now(self, file, position, &bytes);
        self.started.store(result, bytes);
    }

    fn finish_write_sync(&mut self) -> (io::Result<()>, Vec<u8>) {
        self.started.take()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Simulated
    }

    fn companion(&self) -> Box<dyn Backend> {
        self.disk.backend()
    }

    fn mapped_writes(&self) -> Option<Arc<dyn MappedWrites>> {
        Some(self.disk.clone())
    }
}

/// A copy into a writable mapping is a write to the page cache like any other: pending
/// until a flush of its file, then durable. It is no operation of the disk's (a memory
/// copy cannot fail or be stopped at), and it is kept even after power failed (the
/// process goes on copying into memory; the crash then drops it).
impl MappedWrites for SimDisk {
    fn copied(&self, file: &File, position: u64, old: &[u8], new: &[u8]) {
        let write = PendingWrite {
            path: path_of(file),
            position,
            old: old.to_vec(),
            new: new.to_vec(),
        };
        self.state.lock().pending.push((write, false));
    }
}
