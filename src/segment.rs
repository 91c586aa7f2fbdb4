//! Segment files: naming, preparation, mapping, and the in-memory sparse index.
//!
//! A segment is a fixed-size file `<id>.seg`, preallocated and synced before it is
//! needed. Its header is written twice: once when it is prepared (base offset
//! unassigned), once more when the writer activates it (base offset set). Readers map it
//! read-only; the file never shrinks while it is mapped.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::error::{Error, Result};
use crate::format::{self, IndexEntry, IndexFile, SegmentHeader};
use crate::options::Preallocate;
use crate::sync::{AtomicBool, AtomicU64, Mutex, RwLock};

/// File name of segment `id`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// File name of the persisted index of segment `id`.
pub(crate) fn index_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.idx"))
}

/// Parses `<id>.seg` / `<id>.idx` names.
pub(crate) fn parse_name(name: &str) -> Option<(u64, &'static str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id = stem.parse().ok()?;
    match ext {
        "seg" => Some((id, "seg")),
        "idx" => Some((id, "idx")),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch (0 before it).
///
/// Every append reads it: straight from `clock_gettime` (the vDSO), since
/// `SystemTime::now().duration_since(UNIX_EPOCH)` cost ~100 instructions per append
/// (callgrind), a seventh of an unsynced append's.
pub(crate) fn now_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let (Ok(seconds), Ok(nanos)) = (u64::try_from(now.tv_sec), u64::try_from(now.tv_nsec)) else {
        return 0;
    };
    seconds * 1000 + nanos / 1_000_000
}

/// A random 64-bit nonce from the kernel, mixed with the clock in the unlikely case
/// `getrandom` is unavailable.
pub(crate) fn random_nonce() -> u64 {
    let mut bytes = [0u8; 8];
    let filled = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .map(|n| n == 8)
        .unwrap_or(false);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let nonce = if filled {
        u64::from_le_bytes(bytes)
    } else {
        clock ^ (std::process::id() as u64).rotate_left(32)
    };
    // Zero would make a prepared header easy to confuse with an empty file.
    nonce.max(1)
}

/// `fsync` a directory, so entries created or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// A prepared segment: the file exists at full size, zero past its header, and the
/// header (with an unassigned base offset) and directory entry are durable.
pub(crate) struct Spare {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) header: SegmentHeader,
}

/// Creates, sizes, zero-fills (or allocates) and syncs segment `id`, then writes and
/// syncs its prepared header and the directory. A partial file is removed on failure.
pub(crate) fn prepare(
    dir: &Path,
    id: u64,
    segment_bytes: u64,
    preallocate: Preallocate,
    between_chunks: &mut dyn FnMut(u64) -> ZeroChunk,
) -> Result<Spare> {
    // Prepared under a temporary name and renamed into place once its header is
    // durable: a file with a segment's name always had a valid header, so one without
    // is damage (searched for data at open), and an interrupted preparation is only a
    // temporary file to remove (which costs open nothing, where searching a 64 MiB file
    // for data made an open take 137 ms after a kill -9 during preparation).
    let path = segment_path(dir, id);
    let tmp = path.with_extension("seg.tmp");
    let result =
        prepare_at(&tmp, id, segment_bytes, preallocate, between_chunks).and_then(|mut spare| {
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io("rename prepared segment", &path, e))?;
            spare.path = path.clone();
            Ok(spare)
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let spare = result?;
    sync_dir(dir)?;
    Ok(spare)
}

/// Prepares segment `id` from `free`, a removed segment's file kept for reuse
/// (`recycle.rs`): renamed to the temporary name, given a new header (new nonce, the
/// recycled flag) that is synced, renamed into place, directory synced. Its bytes past
/// the header stay as they were. On failure the file is deleted (the caller prepares a
/// fresh one).
pub(crate) fn prepare_recycled(
    dir: &Path,
    id: u64,
    free: &Path,
    segment_bytes: u64,
) -> Result<Spare> {
    let path = segment_path(dir, id);
    let tmp = path.with_extension("seg.tmp");
    let result = std::fs::rename(free, &tmp)
        .map_err(|e| Error::io("rename recycled segment", free, e))
        .and_then(|()| write_recycled_header(&tmp, id, segment_bytes))
        .and_then(|mut spare| {
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io("rename prepared segment", &path, e))?;
            spare.path = path.clone();
            Ok(spare)
        });
    if result.is_err() {
        let _ = std::fs::remove_file(free);
        let _ = std::fs::remove_file(&tmp);
    }
    let spare = result?;
    sync_dir(dir)?;
    Ok(spare)
}

fn write_recycled_header(path: &Path, id: u64, segment_bytes: u64) -> Result<Spare> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open recycled segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat recycled segment", path, e))?
        .len();
    if len != segment_bytes {
        return Err(Error::io(
            "recycle segment",
            path,
            io::Error::other(format!("{len} bytes, not {segment_bytes}")),
        ));
    }
    let header = SegmentHeader {
        format_version: format::FORMAT_VERSION,
        segment_id: id,
        base_offset: format::UNASSIGNED_BASE,
        nonce: random_nonce(),
        created_ms: now_ms(),
        segment_bytes,
        dropped_before: 0,
        recycled: true,
        grows: false,
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write segment header", path, e))?;
    file.sync_data()
        .map_err(|e| Error::io("fdatasync segment", path, e))?;
    Ok(Spare {
        path: path.to_path_buf(),
        file,
        header,
    })
}

/// `between_chunks` runs between the chunks of a zero-fill (which takes tens of
/// milliseconds for a 64 MiB segment), for a caller with more urgent work, with the
/// bytes zeroed so far; it says how to write the next chunk.
///
/// Unflushed chunks are 2 MiB and aligned: they leave the file in the page cache as
/// 2 MiB folios (ext4 has large folios since Linux 6.16), which the kernel maps into
/// readers' mappings (placed at 2 MiB boundaries) as huge pages; the data written over
/// the zeros later keeps them. With 1 MiB writes no page of a segment was mapped huge,
/// and a random read paid a 4 KiB page walk, about half its time on a virtual machine
/// (docs/design.md 4.4.1). Paced, flushed chunks are smaller (3.2.1), so a segment
/// zeroed while appenders are slow gets fewer huge pages.
fn prepare_at(
    path: &Path,
    id: u64,
    segment_bytes: u64,
    preallocate: Preallocate,
    between_chunks: &mut dyn FnMut(u64) -> ZeroChunk,
) -> Result<Spare> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io("create segment", path, e))?;
    match preallocate {
        Preallocate::Fallocate => {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, segment_bytes)
                .map_err(|e| Error::io("fallocate segment", path, e.into()))?;
        }
        Preallocate::ZeroFill => {
            // Reserve the blocks first so a full disk fails here, cleanly, rather than
            // part-way through; then write zeros so every extent is written, not
            // unwritten, and later flushes carry no metadata.
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, segment_bytes)
                .map_err(|e| Error::io("fallocate segment", path, e.into()))?;
            zero_fill(&file, path, segment_bytes, between_chunks)?;
        }
    }
    file.sync_data()
        .map_err(|e| Error::io("fdatasync segment", path, e))?;
    let header = SegmentHeader {
        format_version: format::FORMAT_VERSION,
        segment_id: id,
        base_offset: format::UNASSIGNED_BASE,
        nonce: random_nonce(),
        created_ms: now_ms(),
        segment_bytes,
        dropped_before: 0,
        recycled: false,
        grows: false,
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write segment header", path, e))?;
    file.sync_data()
        .map_err(|e| Error::io("fdatasync segment", path, e))?;
    Ok(Spare {
        path: path.to_path_buf(),
        file,
        header,
    })
}

/// How a zero-fill writes its next chunk (see [`zero_fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroChunk {
    /// Write this many bytes (at most [`ZERO_FILL_CHUNK_MAX_BYTES`]) and flush them: a
    /// commit's flush then waits for at most that much of the zero-fill.
    Flushed(u64),
    /// Write [`ZERO_FILL_CHUNK_MAX_BYTES`] and go on, for the flush at the end (the
    /// fastest, for when appenders need the spare soon).
    Rushed,
}

/// The largest chunk of a zero-fill: 2 MiB, for huge pages (see [`prepare_at`]).
pub(crate) const ZERO_FILL_CHUNK_MAX_BYTES: u64 = 2 << 20;

/// Writes zeros over `segment_bytes` of `file`, a chunk at a time, each chunk flushed or
/// not as `between_chunks` says. Written all at once and flushed at the end, the flush
/// of 64 MiB (or the kernel's writeback of it) held the disk for tens of milliseconds
/// while the committer's flushes queued behind it; flushed a chunk at a time, the
/// zero-fill is slower, so it only does so while the spare is well ahead of need.
/// `between_chunks` runs after each chunk with the bytes zeroed so far.
fn zero_fill(
    file: &File,
    path: &Path,
    segment_bytes: u64,
    between_chunks: &mut dyn FnMut(u64) -> ZeroChunk,
) -> Result<()> {
    let zeros = vec![0u8; ZERO_FILL_CHUNK_MAX_BYTES.min(segment_bytes) as usize];
    let mut position = 0;
    let mut next = ZeroChunk::Rushed;
    while position < segment_bytes {
        let (chunk_bytes, flush) = match next {
            ZeroChunk::Flushed(bytes) => (bytes.clamp(4 << 10, ZERO_FILL_CHUNK_MAX_BYTES), true),
            ZeroChunk::Rushed => (ZERO_FILL_CHUNK_MAX_BYTES, false),
        };
        let len = (chunk_bytes as usize).min((segment_bytes - position) as usize);
        file.write_all_at(&zeros[..len], position)
            .map_err(|e| Error::io("zero-fill segment", path, e))?;
        if flush {
            file.sync_data()
                .map_err(|e| Error::io("fdatasync segment", path, e))?;
        }
        position += len as u64;
        next = between_chunks(position);
    }
    Ok(())
}

/// A shared, writable mapping of an activated segment's whole file, for
/// `Options::mapped_writes`: producers copy their frames into it under the staging lock
/// (which owns it), so what they copy is in the page cache, where readers of this and
/// other processes and a flush of the file find it, as soon as the copy is done.
pub(crate) struct WritableMap {
    map: MmapMut,
    /// The segment mapped (its id and base offset), for assertions.
    segment_id: u64,
    base_offset: u64,
}

impl WritableMap {
    /// Maps all of `segment`'s file for writing, through the descriptor it keeps open.
    pub(crate) fn new(segment: &Segment) -> Result<WritableMap> {
        let file = segment.file()?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", &segment.path, e))?
            .len();
        if len < segment.header.segment_bytes {
            return Err(Error::corruption(
                &segment.path,
                len,
                "file is shorter than its header says; it cannot be mapped for writing",
            ));
        }
        // SAFETY: the mapping covers `segment_bytes`, no more than the file holds (checked
        // just above), and every block of it is allocated (preallocated, zero-filled or
        // `fallocate`d, before the segment was prepared), so no access faults past the end
        // of the file or on a hole a full disk could not fill (no SIGBUS). ringlog never
        // shrinks a segment file; it only deletes whole files, and the pages of a deleted
        // file stay valid while this mapping lives. Nothing else writes these bytes while
        // it exists: the activation header was written before it was made (and bytes
        // below the data start are never handed out), the committer writes nothing into
        // the segment under mapped writes, and readers only read through mappings of
        // their own, so the `&mut [u8]` it hands out (under the staging lock, one at a
        // time) is the only writer of the bytes it covers.
        let map = unsafe {
            MmapOptions::new()
                .len(segment.header.segment_bytes as usize)
                .map_mut(&*file)
                .map_err(|e| Error::io("mmap segment for writing", &segment.path, e))?
        };
        Ok(WritableMap {
            map,
            segment_id: segment.id(),
            base_offset: segment.base_offset(),
        })
    }

    /// Whether this maps `segment`.
    pub(crate) fn maps(&self, segment: &Segment) -> bool {
        self.segment_id == segment.id() && self.base_offset == segment.base_offset()
    }

    /// Faults in, writable, the pages of `len` bytes from `position` (clamped to the
    /// segment), in one call (`MADV_POPULATE_WRITE`, Linux 5.14): a page fault per 4 KiB
    /// page costs the producer that touches it first more than the copies into it. Only
    /// a hint: nothing happens on an older kernel.
    pub(crate) fn populate(&self, position: u64, len: u64) {
        let start = (position as usize).min(self.map.len());
        let end = (position.saturating_add(len) as usize).min(self.map.len());
        if start < end {
            let _ = self
                .map
                .advise_range(memmap2::Advice::PopulateWrite, start, end - start);
        }
    }

    /// The bytes at `position`, `len` long, to copy into. `None` past the segment's end
    /// (never asked for: staging checks the room first).
    pub(crate) fn slot(&mut self, position: u64, len: u64) -> Option<&mut [u8]> {
        let start = usize::try_from(position).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.map.get_mut(start..end)
    }
}

/// The sparse index of one segment, in memory.
#[derive(Debug, Default)]
pub(crate) struct SegmentIndex {
    /// Entries, strictly increasing.
    pub(crate) entries: Vec<IndexEntry>,
    /// Whether `entries` is complete for the segment's readable data. Sealed segments
    /// load it lazily from their index file (or a scan).
    pub(crate) loaded: bool,
    /// End of a sealed segment's data, once known.
    pub(crate) data_end: Option<u64>,
    /// Offsets whose entries were loaded from an index file and not derived from the
    /// data since. A read that fails from one of them rebuilds the index; from any other
    /// entry the failure is the data's.
    pub(crate) unchecked_offsets: Range<u64>,
}

impl SegmentIndex {
    /// The last entry at or before `offset`.
    pub(crate) fn floor(&self, offset: u64) -> Option<IndexEntry> {
        self.bracket(offset).0
    }

    /// The last entry at or before `offset`, and the one after it (where the walk from the
    /// first will not need to go).
    ///
    /// Entries are about evenly spaced (one per `index_interval_bytes` of records), so the
    /// search starts where `offset` would be if they were exactly, and widens from there: a
    /// random read touches one or two cache lines of a large index, where a binary search
    /// over a 64 MiB segment's 16 K entries misses the cache at its last half dozen steps.
    pub(crate) fn bracket(&self, offset: u64) -> (Option<IndexEntry>, Option<IndexEntry>) {
        let entries = &self.entries;
        let after = match (entries.first(), entries.last()) {
            (Some(first), Some(last)) if offset >= first.offset && offset < last.offset => {
                let span = u128::from(last.offset - first.offset);
                let guess = (u128::from(offset - first.offset) * (entries.len() as u128 - 1) / span)
                    as usize;
                // Widen a window around the guess until it holds the answer, then search it.
                let mut step = 1;
                let (mut low, mut high) = (guess, guess + 1);
                while low > 0 && entries[low].offset > offset {
                    low = low.saturating_sub(step);
                    step *= 2;
                }
                step = 1;
                while high < entries.len() && entries[high - 1].offset <= offset {
                    high = (high + step).min(entries.len());
                    step *= 2;
                }
                low + entries[low..high].partition_point(|e| e.offset <= offset)
            }
            _ => entries.partition_point(|e| e.offset <= offset),
        };
        let floor = after.checked_sub(1).map(|i| entries[i]);
        (floor, entries.get(after).copied())
    }

    /// Whether `entry` came from an index file and was not checked against the data.
    pub(crate) fn is_unchecked(&self, entry: IndexEntry) -> bool {
        self.unchecked_offsets.contains(&entry.offset)
    }

    /// Replaces the entries for offsets below `end_offset` with `rebuilt`, made by a
    /// checked scan of the data, and keeps the later ones: the writer may have added
    /// entries for records staged since the scan began, and those must stay.
    pub(crate) fn replace_below(&mut self, rebuilt: Vec<IndexEntry>, end_offset: u64) {
        debug_assert!(rebuilt.iter().all(|e| e.offset < end_offset));
        debug_assert!(rebuilt
            .windows(2)
            .all(|w| w[0].offset < w[1].offset && w[0].position < w[1].position));
        let last = rebuilt.last().copied();
        // A later entry is kept if it also lies past the rebuilt ones: one that does not
        // came from a file and contradicts the data.
        let later = self
            .entries
            .iter()
            .copied()
            .filter(|e| e.offset >= end_offset && last.is_none_or(|l| e.position > l.position));
        let entries: Vec<IndexEntry> = rebuilt.into_iter().chain(later).collect();
        debug_assert!(entries
            .windows(2)
            .all(|w| w[0].offset < w[1].offset && w[0].position < w[1].position));
        self.entries = entries;
        self.unchecked_offsets.start = self.unchecked_offsets.start.max(end_offset);
    }
}

/// How far past what it has written the writer extends a segment's write bound at a
/// time: an eighth of the segment, from 8 KiB to 8 MiB. Recovery after a crash searches
/// at most about this much past the end of data.
pub(crate) fn write_bound_step(segment_bytes: u64) -> u64 {
    (segment_bytes / 8).clamp(8 << 10, 8 << 20) & !(format::FRAME_ALIGN_BYTES - 1)
}

/// An activated segment, as readers and the writer share it.
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    /// The open file, while the segment can be written (the active one, and during its
    /// recovery). A sealed segment lets it go ([`Segment::release_file`]) and opens the
    /// file again by name only to map it, so a log holds one descriptor however many
    /// segments it has. (A plain lock: never held across another.)
    file: parking_lot::Mutex<Option<Arc<File>>>,
    pub(crate) header: SegmentHeader,
    /// Checksum seed derived from the nonce.
    pub(crate) seed: u32,
    map: OnceLock<Mmap>,
    /// A file description of its own for background flushes (opened before the writes
    /// they cover: see [`Segment::flush_handle`]).
    flush_file: Mutex<Option<File>>,
    pub(crate) index: RwLock<SegmentIndex>,
    /// For a sealed segment: the first offset of the next segment; where its data ends.
    pub(crate) end_offset: RwLock<Option<u64>>,
    /// Index files are written one at a time; this holds the largest write bound any of
    /// them carried (each new one carries at least as much).
    promised_bound: Mutex<u64>,
    /// The largest write bound of an index file known durable: the writer writes no byte
    /// at or past it (docs/design.md 4.3). Zero until the first is written.
    write_bound: AtomicU64,
    /// The bound of the first index file asked for while none could exist (0: none
    /// asked that way): every index file of the segment carries at least this much,
    /// so the writer may write below it before the file is durable
    /// ([`Segment::reserve_first_bound`]).
    first_bound: AtomicU64,
    /// Deleted from its log by a trim, truncation or retention: nothing persists its
    /// index again (readers may still map it).
    retired: AtomicBool,
    /// The timestamp in its first record's header, unchecked: a hint for `seek_time`'s
    /// search (read with the header at open, or at the first search), whose answer is
    /// proven by checked reads.
    first_timestamp_hint: OnceLock<u64>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Segment {
    /// Wraps an open segment file of `len` bytes whose header is `header` (activated).
    /// The file is mapped on first use, so opening a log with many sealed segments costs
    /// no mapping for the ones never read.
    pub(crate) fn new(
        path: PathBuf,
        file: File,
        header: SegmentHeader,
        len: u64,
    ) -> Result<Arc<Segment>> {
        debug_assert!(header.is_activated());
        if len < header.segment_bytes {
            return Err(Error::corruption(
                &path,
                len,
                format!(
                    "file is {len} bytes but its header says {}; it was truncated",
                    header.segment_bytes
                ),
            ));
        }
        Ok(Arc::new(Segment {
            path,
            file: parking_lot::Mutex::new(Some(Arc::new(file))),
            seed: format::frame_seed(header.nonce),
            header,
            map: OnceLock::new(),
            flush_file: Mutex::new(None),
            index: RwLock::new(SegmentIndex::default()),
            end_offset: RwLock::new(None),
            promised_bound: Mutex::new(0),
            write_bound: AtomicU64::new(0),
            first_bound: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            first_timestamp_hint: OnceLock::new(),
        }))
    }

    /// The segment's file: the one it keeps open, or (a sealed segment) opened again
    /// read-only, for the caller alone.
    pub(crate) fn file(&self) -> Result<Arc<File>> {
        if let Some(file) = self.file.lock().as_ref() {
            return Ok(file.clone());
        }
        File::open(&self.path)
            .map(Arc::new)
            .map_err(|e| Error::io("open segment", &self.path, e))
    }

    /// See [`Segment::first_timestamp_hint`]'s field.
    pub(crate) fn first_timestamp_hint(&self) -> Option<u64> {
        self.first_timestamp_hint.get().copied()
    }

    /// Remembers the first record's timestamp as its header says.
    pub(crate) fn set_first_timestamp_hint(&self, timestamp_ms: u64) {
        let _ = self.first_timestamp_hint.set(timestamp_ms);
    }

    /// Marks the segment deleted from its log (see `trim.rs`).
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Whether the segment was deleted from its log.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Closes the descriptor the segment keeps: it is sealed, and nothing writes to it
    /// again (a mapping keeps the file itself alive).
    pub(crate) fn release_file(&self) {
        self.file.lock().take();
    }

    /// The whole file, mapped read-only (mapping it now if this is the first use).
    pub(crate) fn bytes(&self) -> Result<&[u8]> {
        if let Some(map) = self.map.get() {
            return Ok(map);
        }
        let file = self.file()?;
        // SAFETY: the mapping covers exactly `segment_bytes`, and the file is at least that
        // long (checked in `Segment::new`) and fully allocated (preallocated before
        // activation), so no page of the mapping lies past the end of the file or in a
        // hole. ringlog never truncates a segment file it has mapped; it only deletes whole
        // files, which keeps the pages alive until the last mapping is dropped.
        let map = unsafe {
            MmapOptions::new()
                .len(self.header.segment_bytes as usize)
                .map(&*file)
                .map_err(|e| Error::io("mmap segment", &self.path, e))?
        };
        // Two threads may race to map; the loser's mapping is dropped.
        Ok(self.map.get_or_init(|| map))
    }

    /// Lets go of the pages of the mapping this process has touched (they stay in the
    /// page cache; the next read maps them again). Opening a log reads a few bytes of
    /// its active segment, and the kernel then maps up to 64 KiB around them: a store
    /// of many small topics would keep all of it resident for nothing.
    pub(crate) fn release_resident(&self) {
        if let Some(map) = self.map.get() {
            // SAFETY: the mapping is shared and read-only: dropping its page table
            // entries changes no byte a reader sees (the next access maps the same page
            // cache pages, the file's current contents, as any access does), so slices
            // into it stay valid.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    /// Maps the pages of `range` of the mapping into this process now, in one call
    /// (`MADV_POPULATE_READ`), for a scan about to read them: one page fault per 16 pages
    /// (the kernel's fault-around) cost a scan of small records about as much as
    /// checking them. Only a hint: nothing happens if the segment is not mapped yet or
    /// the kernel is older than 5.14.
    pub(crate) fn populate(&self, range: Range<usize>) {
        if let Some(map) = self.map.get() {
            let end = range.end.min(map.len());
            if range.start < end {
                let _ = map.advise_range(
                    memmap2::Advice::PopulateRead,
                    range.start,
                    end - range.start,
                );
            }
        }
    }

    /// Opens the file description background flushes use: call it before writing to the
    /// segment. A description of its own, because Linux reports a writeback error once
    /// per open file description: with the writer's own, whichever flush came first
    /// would consume the error and the other could report success for lost data.
    pub(crate) fn open_flush_handle(&self) -> io::Result<()> {
        let mut handle = self.flush_file.lock();
        if handle.is_none() {
            *handle = Some(File::open(&self.path)?);
        }
        Ok(())
    }

    /// Runs `flush` on the background flush description, if one was opened (and not
    /// closed since).
    pub(crate) fn with_flush_handle<T>(&self, flush: impl FnOnce(&File) -> T) -> Option<T> {
        self.flush_file.lock().as_ref().map(flush)
    }

    /// Closes the background flush description (a sealed segment needs none).
    pub(crate) fn close_flush_handle(&self) {
        self.flush_file.lock().take();
    }

    /// The mapping of a segment some record was read from (so already mapped).
    #[inline]
    pub(crate) fn mapped(&self) -> &[u8] {
        debug_assert!(
            self.map.get().is_some(),
            "records come from mapped segments"
        );
        self.map.get().map_or(&[], |m| &m[..])
    }

    /// The segment's id.
    pub(crate) fn id(&self) -> u64 {
        self.header.segment_id
    }

    /// The offset of its first record.
    pub(crate) fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// Writes its index file: a checkpoint (`data_end`, `next_offset`, the entries below
    /// them) and the write bound, which is the largest asked for so far and at least
    /// `reserve`. Synced when the bound grows (the writer relies on it only once it is
    /// durable) or when `clean`; otherwise not: a checkpoint is checked on load and
    /// rebuilt from the data when missing or damaged.
    pub(crate) fn persist_index(
        &self,
        dir: &Path,
        data_end: u64,
        next_offset: u64,
        clean: bool,
        reserve: u64,
    ) -> Result<()> {
        self.persist_index_file(dir, data_end, next_offset, clean, false, reserve)
    }

    /// Persists the index of a segment just sealed (its successor is activated), saying
    /// so: a log whose last segment has such an index lost the segments after it.
    pub(crate) fn persist_sealed_index(
        &self,
        dir: &Path,
        data_end: u64,
        next_offset: u64,
    ) -> Result<()> {
        self.persist_index_file(dir, data_end, next_offset, false, true, 0)
    }

    fn persist_index_file(
        &self,
        dir: &Path,
        data_end: u64,
        next_offset: u64,
        clean: bool,
        sealed: bool,
        reserve: u64,
    ) -> Result<()> {
        let mut promised = self.promised_bound.lock();
        if self.is_retired() {
            // Deleted from the log: an index file now would only be an orphan.
            return Ok(());
        }
        // Synced whenever it is to extend what the writer may rely on, whatever an
        // earlier, failed write promised.
        let grows = reserve > self.write_bound();
        let write_bound = (*promised).max(reserve).max(data_end);
        let entries = self.index.read().entries.clone();
        let file = IndexFile {
            segment_id: self.id(),
            nonce: self.header.nonce,
            base_offset: self.base_offset(),
            data_end,
            next_offset,
            write_bound,
            clean,
            sealed,
            entries: entries
                .into_iter()
                .filter(|e| e.offset < next_offset && e.position < data_end)
                .collect(),
        };
        // Promised before the file exists: a failed write may still have left it.
        *promised = write_bound;
        write_file_synced(&index_path(dir, self.id()), &file.encode(), clean || grows)?;
        if clean || grows {
            self.write_bound.fetch_max(write_bound, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The write bound the writer may rely on (see [`Segment::persist_index`]).
    pub(crate) fn write_bound(&self) -> u64 {
        self.write_bound.load(Ordering::SeqCst)
    }

    /// What the writer may write below: the durable write bound, or the first bound
    /// while no index file with a smaller one can exist
    /// ([`Segment::reserve_first_bound`]).
    pub(crate) fn writable_bound(&self) -> u64 {
        self.write_bound()
            .max(self.first_bound.load(Ordering::SeqCst))
    }

    /// For a segment no index file was ever asked for since its activation: promises
    /// `bound` to every index file written from now on, so the writer may write below
    /// it at once, while the first file is written off its path. Recovery searches a
    /// segment without an index file to its end, and one with a file up to that file's
    /// bound, at least `bound`: either way it finds everything written below `bound`.
    /// False if a file may exist already (the writer then relies only on durable ones).
    pub(crate) fn reserve_first_bound(&self, bound: u64) -> bool {
        let mut promised = self.promised_bound.lock();
        if *promised != 0 || self.is_retired() {
            return false;
        }
        *promised = bound;
        self.first_bound.store(bound, Ordering::SeqCst);
        true
    }

    /// After recovery: nothing past `bound` is written (it was searched and zeroed, or a
    /// durable index file says so).
    pub(crate) fn start_write_bound(&self, bound: u64) {
        let mut promised = self.promised_bound.lock();
        *promised = bound;
        self.write_bound.store(bound, Ordering::SeqCst);
    }

    /// When an index file that extends the bound cannot be written (a full disk):
    /// removes the segment's index file, so recovery searches the whole segment, and
    /// lifts the bound for good.
    pub(crate) fn drop_write_bound(&self, dir: &Path) -> Result<()> {
        let mut promised = self.promised_bound.lock();
        *promised = format::NO_WRITE_BOUND;
        let path = index_path(dir, self.id());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove index file", &path, e)),
        }
        sync_dir(dir)?;
        self.write_bound
            .store(format::NO_WRITE_BOUND, Ordering::SeqCst);
        Ok(())
    }

    /// Rewrites its (clean) index file in place with the clean-shutdown flag cleared, and
    /// syncs it.
    pub(crate) fn clear_clean_flag(&self, dir: &Path) -> Result<()> {
        let path = index_path(dir, self.id());
        let mut file = self
            .load_index_file(dir)
            .ok_or_else(|| Error::corruption(&path, 0, "index file changed during open"))?;
        file.clean = false;
        let handle = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open index file", &path, e))?;
        handle
            .write_all_at(&file.encode(), 0)
            .map_err(|e| Error::io("write index file", &path, e))?;
        handle
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &path, e))
    }

    /// Loads and checks its persisted index file. `None` when missing, damaged or stale.
    pub(crate) fn load_index_file(&self, dir: &Path) -> Option<IndexFile> {
        let bytes = std::fs::read(index_path(dir, self.id())).ok()?;
        let file = IndexFile::decode(&bytes, self.header.segment_bytes).ok()?;
        let matches = file.segment_id == self.id()
            && file.nonce == self.header.nonce
            && file.base_offset == self.base_offset();
        matches.then_some(file)
    }
}

/// Replaces `path` with `bytes` (write to a temporary name, optionally sync, rename).
/// Temporary names are unique per call, so concurrent writers never share one.
pub(crate) fn write_file_synced(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    static TEMPORARIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = TEMPORARIES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{unique}.idx.tmp", std::process::id()));
    let result = (|| -> io::Result<()> {
        let file = File::create(&tmp)?;
        file.write_all_at(bytes, 0)?;
        if sync {
            file.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io("write index file", path, e))?;
    if sync {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Asks the CPU to start loading `bytes` (of a mapping) into its caches, for a reader that
/// will soon read them: a scan, ahead of the frames it checks; a random read, over the
/// frames it walks. Only a hint: it changes no byte and never faults.
pub(crate) fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..bytes.len()).step_by(64) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is in the
        // target's baseline), and it only hints: the address is never dereferenced (and
        // lies inside the slice anyway: `at < bytes.len()`).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().wrapping_add(at).cast()) };
    }
}

/// Reads the header of a segment file. Also returns the file's length.
pub(crate) fn read_header(
    file: &File,
) -> io::Result<(Result<SegmentHeader, format::FormatError>, u64)> {
    let (header, len, _) = read_header_and_first_timestamp(file)?;
    Ok((header, len))
}

/// Bytes read at the start of a segment at open: its header and, in the same read, the
/// first frames (a commit marker, then the first record's header), whose timestamp is a
/// hint for `seek_time`.
const OPEN_READ_BYTES: usize = 512;

/// [`read_header`], and the timestamp the first record's header carries (unchecked).
pub(crate) fn read_header_and_first_timestamp(
    file: &File,
) -> io::Result<(Result<SegmentHeader, format::FormatError>, u64, Option<u64>)> {
    let len = file.metadata()?.len();
    let mut bytes = [0u8; OPEN_READ_BYTES];
    let available = (len as usize).min(bytes.len());
    file.read_exact_at(&mut bytes[..available], 0)?;
    let bytes = &bytes[..available];
    let header = SegmentHeader::decode(bytes);
    let first_timestamp = header
        .as_ref()
        .ok()
        .filter(|h| h.is_activated())
        .and_then(|h| first_record_timestamp(bytes, h.base_offset));
    Ok((header, len, first_timestamp))
}

/// The timestamp in the header of the record `base_offset` among the first frames in
/// `bytes` (the start of a segment file), skipping commit markers; unchecked.
pub(crate) fn first_record_timestamp(bytes: &[u8], base_offset: u64) -> Option<u64> {
    let mut at = format::SEGMENT_HEADER_BYTES;
    loop {
        let (offset, timestamp_ms, padded) = format::peek_header(bytes.get(at as usize..)?)?;
        if offset == format::MARKER_OFFSET {
            at += padded;
            continue;
        }
        return (offset == base_offset).then_some(timestamp_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::SEGMENT_HEADER_BYTES;

    /// An activated segment of 64 KiB in a new directory.
    fn activated(dir: &Path) -> Arc<Segment> {
        let spare = prepare(dir, 1, 64 << 10, Preallocate::ZeroFill, &mut |_| {
            ZeroChunk::Flushed(16 << 10)
        })
        .unwrap();
        let header = SegmentHeader {
            base_offset: 0,
            ..spare.header
        };
        Segment::new(spare.path, spare.file, header, 64 << 10).unwrap()
    }

    #[test]
    fn a_fresh_segment_promises_its_first_bound_to_every_index_file() {
        let dir = tempfile::tempdir().unwrap();
        let segment = activated(dir.path());
        assert_eq!(segment.writable_bound(), 0);
        assert!(segment.reserve_first_bound(8 << 10));
        assert_eq!(segment.write_bound(), 0, "nothing durable yet");
        assert_eq!(segment.writable_bound(), 8 << 10);
        assert!(!segment.reserve_first_bound(16 << 10), "only the first");
        // A checkpoint that reserves nothing still carries the promised bound.
        segment
            .persist_index(dir.path(), SEGMENT_HEADER_BYTES, 0, false, 0)
            .unwrap();
        let file = segment.load_index_file(dir.path()).unwrap();
        assert_eq!(file.write_bound, 8 << 10);
        // The first file that grows the bound makes it durable.
        segment
            .persist_index(dir.path(), SEGMENT_HEADER_BYTES, 0, false, 8 << 10)
            .unwrap();
        assert_eq!(segment.write_bound(), 8 << 10);
    }

    #[test]
    fn a_segment_with_an_index_file_promises_no_first_bound() {
        let dir = tempfile::tempdir().unwrap();
        let segment = activated(dir.path());
        segment
            .persist_index(dir.path(), SEGMENT_HEADER_BYTES, 0, false, 4 << 10)
            .unwrap();
        assert!(!segment.reserve_first_bound(32 << 10));
        assert_eq!(segment.writable_bound(), 4 << 10);
        let other = tempfile::tempdir().unwrap();
        let recovered = activated(other.path());
        recovered.start_write_bound(SEGMENT_HEADER_BYTES);
        assert!(!recovered.reserve_first_bound(32 << 10), "after recovery");
    }

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/x");
        let p = segment_path(dir, 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_name(name), Some((42, "seg")));
        assert_eq!(parse_name("00000000000000000042.idx"), Some((42, "idx")));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_name("00000000000000000042.idx.tmp"), None);
    }

    #[test]
    fn floor_finds_the_last_entry_at_or_before() {
        let index = SegmentIndex {
            entries: vec![
                IndexEntry {
                    offset: 10,
                    position: 64,
                },
                IndexEntry {
                    offset: 20,
                    position: 5000,
                },
            ],
            loaded: true,
            data_end: None,
            unchecked_offsets: 0..0,
        };
        assert_eq!(index.floor(9), None);
        assert_eq!(index.floor(10).unwrap().position, 64);
        assert_eq!(index.floor(19).unwrap().position, 64);
        assert_eq!(index.floor(25).unwrap().position, 5000);
    }

    #[test]
    fn bracket_agrees_with_a_binary_search_on_even_and_uneven_entries() {
        let even: Vec<IndexEntry> = (0..1000)
            .map(|i| entry(100 + i * 32, 64 + i * 4096))
            .collect();
        // Clustered: long runs of close entries, then large gaps.
        let uneven: Vec<IndexEntry> = (0..1000u64)
            .map(|i| {
                entry(
                    100 + i * 3 + (i / 100) * 10_000 + (i % 7) * (i / 500),
                    64 + i * 64,
                )
            })
            .scan(0, |last, e| {
                *last = (*last + 1).max(e.offset);
                Some(entry(*last, e.position))
            })
            .collect();
        for entries in [even, uneven] {
            let index = SegmentIndex {
                entries: entries.clone(),
                loaded: true,
                data_end: None,
                unchecked_offsets: 0..0,
            };
            let last = entries.last().unwrap().offset;
            for offset in (0..last + 100)
                .step_by(7)
                .chain([99, 100, 101, last - 1, last, last + 1])
            {
                let after = entries.partition_point(|e| e.offset <= offset);
                let expected = (
                    after.checked_sub(1).map(|i| entries[i]),
                    entries.get(after).copied(),
                );
                assert_eq!(index.bracket(offset), expected, "offset {offset}");
            }
        }
    }

    fn entry(offset: u64, position: u64) -> IndexEntry {
        IndexEntry { offset, position }
    }

    #[test]
    fn a_rebuild_replaces_what_it_scanned_and_keeps_the_writers_later_entries() {
        let mut index = SegmentIndex {
            // From a checkpoint (the entry for 20 points at the wrong byte), then two
            // entries the writer added for records staged after open.
            entries: vec![
                entry(10, 64),
                entry(20, 5008),
                entry(40, 9000),
                entry(50, 12000),
            ],
            loaded: true,
            data_end: None,
            unchecked_offsets: 10..40,
        };
        assert!(index.is_unchecked(entry(20, 5008)));
        assert!(!index.is_unchecked(entry(40, 9000)));
        // A scan of what was written when it began: records 10..45.
        let rebuilt = vec![
            entry(10, 64),
            entry(20, 5000),
            entry(30, 7000),
            entry(44, 9500),
        ];
        index.replace_below(rebuilt, 45);
        assert_eq!(
            index.entries,
            vec![
                entry(10, 64),
                entry(20, 5000),
                entry(30, 7000),
                entry(44, 9500),
                entry(50, 12000)
            ]
        );
        assert!(index.unchecked_offsets.is_empty());
        assert!(!index.is_unchecked(entry(20, 5000)));
    }

    #[test]
    fn a_rebuild_that_stopped_early_leaves_later_file_entries_unchecked() {
        let mut index = SegmentIndex {
            entries: vec![
                entry(10, 64),
                entry(20, 5000),
                entry(30, 6000),
                entry(35, 7000),
            ],
            loaded: true,
            data_end: None,
            unchecked_offsets: 10..40,
        };
        // Damage stopped the scan after record 24, at byte 6500: the entry for 30 lies
        // before the rebuilt ones end (it contradicts the data) and goes; 35 stays,
        // still unchecked.
        index.replace_below(vec![entry(10, 64), entry(20, 5000), entry(23, 6400)], 25);
        assert_eq!(
            index.entries,
            vec![
                entry(10, 64),
                entry(20, 5000),
                entry(23, 6400),
                entry(35, 7000)
            ]
        );
        assert_eq!(index.unchecked_offsets, 25..40);
        assert!(index.is_unchecked(entry(35, 7000)));
    }
}
