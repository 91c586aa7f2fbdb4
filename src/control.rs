//! The control file: how a writer tells readers in other processes that records moved,
//! without them polling.
//!
//! `ringlog.control` in a log's (or topic's) directory is one page, mapped shared by the
//! writer (read-write) and by read-only handles (read-only):
//!
//! ```text
//!  0  magic "RLCTRL\x01\0"
//!  8  version u32 = 1
//! 12  wake word u32     bumped (wrapping) after every publish; readers FUTEX_WAIT on it
//! 16  sequence u64      a seqlock: odd while the writer updates 24..60
//! 24  generation u64    random, new at each writer open
//! 32  written u64       every record below it is written
//! 40  durable u64       every record below it is durable
//! 48  reserved u64 = 0
//! 56  crc u32           CRC32C of bytes 24..56
//! 60  reserved u32 = 0
//! ```
//!
//! After each move of its written or durable watermark the writer updates the fields
//! (sequence odd, fields, checksum, sequence even), bumps the wake word and wakes every
//! process waiting on it (a shared futex: the kernel keys it by the file's page, so it
//! works across processes). A reader loads the wake word, looks for new records
//! (`refresh`), and only if there are none sleeps on the word while it still holds the
//! value loaded: a publish in between changes the word, so the sleep returns at once.
//! Nothing is lost if the writer dies: readers sleep with a bound (a second) and look
//! again, and the next writer reuses the file (never truncated, never recreated), so its
//! publishes wake readers that mapped it before.
//!
//! The watermarks in it are informational (`snapshot`): a reader takes records only
//! after checking them itself (whole, checksummed batches), so a stale or damaged
//! control file can delay a wake-up, never show a wrong record.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use memmap2::{Mmap, MmapMut, MmapOptions};
use rustix::thread::futex;

/// The control file's name in a log directory.
pub(crate) const CONTROL_FILE: &str = "ringlog.control";

const CONTROL_BYTES: u64 = 4096;
const MAGIC: [u8; 8] = *b"RLCTRL\x01\0";
const VERSION: u32 = 1;

const WAKE_AT: usize = 12;
const SEQUENCE_AT: usize = 16;
const GENERATION_AT: usize = 24;
const WRITTEN_AT: usize = 32;
const DURABLE_AT: usize = 40;
const CRC_AT: usize = 56;

const _: () = assert!(WAKE_AT % 4 == 0);
const _: () = assert!(SEQUENCE_AT % 8 == 0 && GENERATION_AT % 8 == 0);
const _: () = assert!(WRITTEN_AT % 8 == 0 && DURABLE_AT % 8 == 0);
const _: () = assert!(CRC_AT % 4 == 0 && CRC_AT + 8 <= CONTROL_BYTES as usize);

/// The mapping: the writer's read-write, a reader's read-only.
enum Map {
    Writer(MmapMut),
    Reader(Mmap),
}

/// A mapped control file.
pub(crate) struct Control {
    map: Map,
    /// The seqlock has one writer at a time (the committer and the housekeeper's
    /// background flush both publish). A plain lock: never held across another.
    updating: parking_lot::Mutex<()>,
}

impl Control {
    /// The writer's: creates the file if needed (it only ever grows to one page; an
    /// existing one is reused, so readers that mapped it keep hearing), claims it with a
    /// new generation. `None` if it cannot be set up (readers then find new records a
    /// second later).
    pub(crate) fn open_writer(dir: &Path) -> Option<Control> {
        let path = dir.join(CONTROL_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ok()?;
        if file.metadata().ok()?.len() < CONTROL_BYTES {
            file.set_len(CONTROL_BYTES).ok()?;
        }
        // SAFETY: the file is at least CONTROL_BYTES long (just checked or extended) and
        // ringlog never shrinks it, so every page of the mapping is backed by the file.
        // Other processes see and change its bytes only through atomics at aligned
        // offsets (the wake word, the sequence) or under the seqlock, which a reader
        // validates; no Rust reference to plain bytes of it is handed out.
        let map = unsafe {
            MmapOptions::new()
                .len(CONTROL_BYTES as usize)
                .map_mut(&file)
                .ok()?
        };
        let control = Control {
            map: Map::Writer(map),
            updating: parking_lot::Mutex::new(()),
        };
        control.claim();
        Some(control)
    }

    /// A reader's: maps the file read-only if a writer made it. `None` otherwise.
    pub(crate) fn open_reader(dir: &Path) -> Option<Control> {
        let file = File::open(dir.join(CONTROL_FILE)).ok()?;
        if file.metadata().ok()?.len() < CONTROL_BYTES {
            return None;
        }
        // SAFETY: as in `open_writer`: the file is at least a page long and never
        // shrinks; this process only reads it, through atomics and a validated seqlock.
        let map = unsafe {
            MmapOptions::new()
                .len(CONTROL_BYTES as usize)
                .map(&file)
                .ok()?
        };
        let control = Control {
            map: Map::Reader(map),
            updating: parking_lot::Mutex::new(()),
        };
        control.has_magic().then_some(control)
    }

    fn base(&self) -> *const u8 {
        match &self.map {
            Map::Writer(map) => map.as_ptr(),
            Map::Reader(map) => map.as_ptr(),
        }
    }

    fn atomic_u32(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `at` is a 4-aligned offset inside the page-aligned mapping (checked at
        // compile time), which lives as long as `self`; the bytes are only accessed
        // atomically, by this and other processes.
        unsafe { &*(self.base().add(at).cast::<AtomicU32>()) }
    }

    fn atomic_u64(&self, at: usize) -> &AtomicU64 {
        // SAFETY: as in `atomic_u32`, at an 8-aligned offset.
        unsafe { &*(self.base().add(at).cast::<AtomicU64>()) }
    }

    fn has_magic(&self) -> bool {
        let magic = self.atomic_u64(0).load(SeqCst).to_le_bytes();
        let version = self.atomic_u32(8).load(SeqCst);
        magic == MAGIC && version == VERSION
    }

    /// Writes the magic and version if missing, and a new generation.
    fn claim(&self) {
        if !self.has_magic() {
            self.atomic_u64(0).store(u64::from_le_bytes(MAGIC), SeqCst);
            self.atomic_u32(8).store(VERSION, SeqCst);
        }
        let generation = crate::segment::random_nonce();
        self.update(|c| c.atomic_u64(GENERATION_AT).store(generation, SeqCst));
    }

    /// Updates the fields under the seqlock and the checksum (the writer only).
    fn update(&self, change: impl FnOnce(&Control)) {
        let _one_writer = self.updating.lock();
        let sequence = self.atomic_u64(SEQUENCE_AT);
        let before = sequence.load(SeqCst);
        // Odd while updating (an earlier writer killed mid-update left it odd: go on).
        sequence.store(before | 1, SeqCst);
        change(self);
        let crc = crc32c::crc32c(&self.fields());
        self.atomic_u32(CRC_AT).store(crc, SeqCst);
        sequence.store((before | 1) + 1, SeqCst);
    }

    /// Bytes 24..56 as the checksum covers them.
    fn fields(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, at) in [GENERATION_AT, WRITTEN_AT, DURABLE_AT, 48]
            .into_iter()
            .enumerate()
        {
            let value = self.atomic_u64(at).load(SeqCst);
            out[i * 8..i * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// The writer's watermarks moved: records them, and wakes every waiting reader.
    pub(crate) fn publish(&self, written: u64, durable: u64) {
        if !matches!(self.map, Map::Writer(_)) {
            return;
        }
        self.update(|c| {
            c.atomic_u64(WRITTEN_AT).store(written, SeqCst);
            c.atomic_u64(DURABLE_AT).store(durable, SeqCst);
        });
        let word = self.atomic_u32(WAKE_AT);
        word.fetch_add(1, SeqCst);
        // Shared (no FUTEX_PRIVATE): waiters in other processes are keyed by the page.
        let _ = futex::wake(word, futex::Flags::empty(), u32::MAX);
    }

    /// The wake word now: load it before looking for records, then [`Control::wait`]
    /// with it.
    pub(crate) fn wake_word(&self) -> u32 {
        self.atomic_u32(WAKE_AT).load(SeqCst)
    }

    /// Sleeps until the writer publishes (the word is no longer `seen`), or `timeout`.
    pub(crate) fn wait(&self, seen: u32, timeout: Duration) {
        let word = self.atomic_u32(WAKE_AT);
        if word.load(SeqCst) != seen {
            return;
        }
        let timeout = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let _ = futex::wait(word, futex::Flags::empty(), seen, Some(&timeout));
    }

    /// The writer's generation and watermarks, if a consistent and intact copy can be
    /// read (a few tries while the writer updates). Readers do not need them (they check
    /// every record they take); tests and diagnostics read them.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Option<ControlSnapshot> {
        let sequence = self.atomic_u64(SEQUENCE_AT);
        for _ in 0..100 {
            let before = sequence.load(SeqCst);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let fields = self.fields();
            let crc = self.atomic_u32(CRC_AT).load(SeqCst);
            if sequence.load(SeqCst) != before {
                continue;
            }
            if crc32c::crc32c(&fields) != crc {
                return None;
            }
            let at = |i: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&fields[i * 8..i * 8 + 8]);
                u64::from_le_bytes(bytes)
            };
            return Some(ControlSnapshot {
                generation: at(0),
                written: at(1),
                durable: at(2),
            });
        }
        None
    }
}

/// What a control file says (see [`Control::snapshot`]).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControlSnapshot {
    pub(crate) generation: u64,
    pub(crate) written: u64,
    pub(crate) durable: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_what_the_writer_publishes_and_is_woken() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Control::open_reader(dir.path()).is_none(), "no file yet");
        let writer = Control::open_writer(dir.path()).unwrap();
        let reader = Control::open_reader(dir.path()).unwrap();
        let first = reader.snapshot().unwrap();
        writer.publish(10, 7);
        let now = reader.snapshot().unwrap();
        assert_eq!((now.written, now.durable), (10, 7));
        assert_eq!(now.generation, first.generation);
        // A reader waiting on the word it saw is woken by the next publish.
        let seen = reader.wake_word();
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            reader.wait(seen, Duration::from_secs(30));
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        writer.publish(11, 11);
        assert!(waiter.join().unwrap() < Duration::from_secs(20));
    }

    #[test]
    fn a_new_writer_reuses_the_file_with_a_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let first = Control::open_writer(dir.path()).unwrap();
        first.publish(5, 5);
        let reader = Control::open_reader(dir.path()).unwrap();
        let generation = reader.snapshot().unwrap().generation;
        drop(first);
        let second = Control::open_writer(dir.path()).unwrap();
        let now = reader.snapshot().unwrap();
        assert_ne!(now.generation, generation);
        // A new writer publishes what it recovered.
        second.publish(6, 6);
        assert_eq!(reader.snapshot().unwrap().written, 6);
    }

    #[test]
    fn a_damaged_control_file_is_no_snapshot_and_no_panic() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Control::open_writer(dir.path()).unwrap();
        writer.publish(3, 3);
        drop(writer);
        let path = dir.path().join(CONTROL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[33] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let reader = Control::open_reader(dir.path()).unwrap();
        assert!(reader.snapshot().is_none());
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(Control::open_reader(dir.path()).is_none());
    }
}
