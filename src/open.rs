//! Opening a log directory: classify its files, check the chain of segments, recover
//! the active segment's tail (see [`crate::recovery`]), and hand the writer its start.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, IndexFile, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::io::Backend;
use crate::options::{Durability, Options, RecoveryPolicy};
use crate::recovery::{self, ScanStart, Tail};
use crate::report::{RecoveryReport, SegmentScan, Truncation};
use crate::segment::{self, Segment, Spare};
use crate::trim;

/// A point in a segment: a byte position, and the offset of the record that starts
/// there (or would: the next one). Keeps positions and offsets apart by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentPoint {
    pub(crate) position: u64,
    pub(crate) offset: u64,
}

/// Where the active segment's data ends, and how much of it is known durable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActiveEnd {
    /// The end of the valid data (the next record goes there).
    pub(crate) end: SegmentPoint,
    /// Every byte below it is known durable.
    pub(crate) durable: SegmentPoint,
}

/// What recovery hands to the writer.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    /// The active segment's end of data and durable point.
    pub(crate) active: ActiveEnd,
    pub(crate) spare: Option<Spare>,
    /// Files of interrupted segment preparations, for the housekeeper to remove.
    pub(crate) leftovers: Vec<PathBuf>,
    /// Removed segments' files waiting for reuse (`recycle.rs`), oldest first.
    pub(crate) free_files: Vec<PathBuf>,
    pub(crate) report: RecoveryReport,
    /// The log's first offset: the first segment's base, or the start a trim recorded.
    pub(crate) first_offset: u64,
    /// A trim past the end that a crash interrupted before its new segment was
    /// activated: the writer finishes it (the log continues at this offset).
    pub(crate) restart_at: Option<u64>,
}

/// A segment file and what its header says.
pub(crate) struct Found {
    pub(crate) id: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) header: std::result::Result<SegmentHeader, format::FormatError>,
    pub(crate) len: u64,
    /// The first record's timestamp as its header says (a hint for `seek_time`).
    pub(crate) first_timestamp: Option<u64>,
}

impl Found {
    /// Opens segment file `id` and reads its header.
    pub(crate) fn read(id: u64, path: PathBuf, writable: bool) -> Result<Found> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| Error::io("open segment", &path, e))?;
        let (header, len, first_timestamp) = segment::read_header_and_first_timestamp(&file)
            .map_err(|e| Error::io("read segment", &path, e))?;
        Ok(Found {
            id,
            path,
            file,
            header,
            len,
            first_timestamp,
        })
    }

    /// Its header, if that says it was activated (it belongs to the chain of segments;
    /// a file shorter than its header says is reported when it is opened).
    pub(crate) fn activated(&self) -> Option<SegmentHeader> {
        match &self.header {
            Ok(h) if h.is_activated() && h.segment_id == self.id => Some(*h),
            _ => None,
        }
    }

    pub(crate) fn spare(&self) -> Option<SegmentHeader> {
        match &self.header {
            Ok(h)
                if !h.is_activated() && h.segment_id == self.id && self.len >= h.segment_bytes =>
            {
                Some(*h)
            }
            _ => None,
        }
    }

    /// Whether any byte past the header is not zero: records were written there. A
    /// spare's data region is all zeros; `thorough` reads all of it (for files whose
    /// header is damaged), else its first 4 KiB. A recycled spare's data region holds
    /// its earlier life's bytes: it holds data if a frame valid under its own nonce
    /// starts where its first frame would.
    pub(crate) fn has_data(&self, thorough: bool) -> std::io::Result<bool> {
        if let Some(header) = self.spare().filter(|h| h.recycled) {
            return self.holds_own_frame(&header);
        }
        let end = if thorough {
            self.len
        } else {
            self.len.min(4096)
        };
        let mut chunk = vec![0u8; 1 << 20];
        let mut position = SEGMENT_HEADER_BYTES;
        while position < end {
            let len = chunk.len().min((end - position) as usize);
            self.file.read_exact_at(&mut chunk[..len], position)?;
            if chunk[..len].iter().any(|b| *b != 0) {
                return Ok(true);
            }
            position += len as u64;
        }
        Ok(false)
    }

    fn holds_own_frame(&self, header: &SegmentHeader) -> std::io::Result<bool> {
        let mut head = [0u8; format::FRAME_HEADER_BYTES as usize];
        if self.len < SEGMENT_HEADER_BYTES + head.len() as u64 {
            return Ok(false);
        }
        self.file.read_exact_at(&mut head, SEGMENT_HEADER_BYTES)?;
        let frame_len = u64::from(
            u32::from_le_bytes([head[4], head[5], head[6], head[7]]) & format::FRAME_LENGTH_MASK,
        );
        let padded = format::padded_frame_bytes(frame_len.max(format::FRAME_HEADER_BYTES));
        if SEGMENT_HEADER_BYTES + padded > self.len {
            return Ok(false);
        }
        let mut frame = vec![0u8; padded as usize];
        self.file.read_exact_at(&mut frame, SEGMENT_HEADER_BYTES)?;
        Ok(format::decode_frame(&frame, format::frame_seed(header.nonce)).is_ok())
    }

    pub(crate) fn why_broken(&self) -> String {
        match &self.header {
            Err(e) => format!("segment header: {e}"),
            Ok(h) if h.segment_id != self.id => {
                format!(
                    "header names segment {} but the file is {}",
                    h.segment_id, self.id
                )
            }
            Ok(h) => format!(
                "file is {} bytes, its header says {}",
                self.len, h.segment_bytes
            ),
        }
    }
}

/// The files of a log directory, by kind.
pub(crate) struct Listing {
    /// Segment files by id.
    pub(crate) segments: BTreeMap<u64, PathBuf>,
    /// Ids that have an index file.
    pub(crate) indexes: Vec<u64>,
    /// Leftover temporary files of interrupted index writes and segment preparations.
    pub(crate) temporaries: Vec<PathBuf>,
    /// Removed segments' files waiting for reuse (`recycle.rs`).
    pub(crate) free: Vec<PathBuf>,
}

/// Lists the files of a log directory; other files are ignored.
pub(crate) fn list_dir(dir: &Path) -> Result<Listing> {
    let mut listing = Listing {
        segments: BTreeMap::new(),
        indexes: Vec::new(),
        temporaries: Vec::new(),
        free: Vec::new(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        // Only a reader gets here without creating the directory first.
        std::io::ErrorKind::NotFound => Error::NotALog {
            path: dir.to_path_buf(),
        },
        _ => Error::io("read directory", dir, e),
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".idx.tmp") || name.ends_with(".seg.tmp") {
            listing.temporaries.push(entry.path());
            continue;
        }
        if crate::recycle::is_free_name(name) {
            listing.free.push(entry.path());
            continue;
        }
        match segment::parse_name(name) {
            Some((id, "seg")) => {
                listing.segments.insert(id, entry.path());
            }
            Some((id, _)) => listing.indexes.push(id),
            None => {}
        }
    }
    Ok(listing)
}

/// How `recover` may touch the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The writer: may create, remove, zero and sync.
    Write,
    /// A reader beside a possible writer: changes nothing; a torn tail just ends the
    /// readable data.
    ReadOnly,
}

/// Opens (creating if needed) the segments of `dir` and recovers the active one, in
/// phases: list the files, classify them (the chain of activated segments, a spare,
/// leftovers), check the chain, recover the active segment's tail, clean up.
pub(crate) fn recover(
    dir: &Path,
    opts: &Options,
    access: Access,
    backend: &mut dyn Backend,
) -> Result<Recovered> {
    let _span = crate::telemetry::recovery_span(dir);
    let started = std::time::Instant::now();
    let recovered = recover_phases(dir, opts, access, backend);
    crate::telemetry::recovered(dir, started.elapsed());
    recovered
}

/// [`recover`]'s phases.
fn recover_phases(
    dir: &Path,
    opts: &Options,
    access: Access,
    backend: &mut dyn Backend,
) -> Result<Recovered> {
    let writable = access == Access::Write;
    let mut report = RecoveryReport::default();
    let mut listing = list_dir(dir)?;
    listing.free.sort();
    let free_files = std::mem::take(&mut listing.free);
    let leftovers = take_temporaries(listing.temporaries, writable, &mut report)?;
    let classified = classify(dir, listing.segments, &listing.indexes, access, &mut report)?;
    if classified.chain.is_empty() {
        if !writable {
            return Err(Error::NotALog {
                path: dir.to_path_buf(),
            });
        }
        let segment = create_first(dir, opts, classified.spare)?;
        let start = SegmentPoint {
            position: SEGMENT_HEADER_BYTES,
            offset: 0,
        };
        let restart_at = trim::read_start(dir)?.filter(|&start| start > 0);
        return Ok(Recovered {
            segments: vec![segment],
            active: ActiveEnd {
                end: start,
                durable: start,
            },
            spare: None,
            leftovers,
            free_files,
            report,
            first_offset: 0,
            restart_at,
        });
    }
    let start = trim::read_start(dir)?;
    let (chain, dead) = split_truncated(classified.chain);
    let (chain, trimmed) = split_trimmed(chain, start);
    let segments = check_chain(dir, chain)?;
    if writable {
        // A trim or truncation that a crash interrupted: finish deleting.
        for f in trimmed {
            remove(
                &f.path,
                "segment below the log's start (trimmed)",
                &mut report,
            )?;
        }
        for f in dead {
            remove(&f.path, "segment past a truncation", &mut report)?;
        }
    }
    let active = segments.last().expect("chain is not empty").clone();
    let active_end = recover_active(dir, opts, &active, access, backend, &mut report)?;
    if writable {
        remove_orphan_indexes(dir, &segments, listing.indexes, &mut report)?;
    }
    let base = segments[0].base_offset();
    let start = start.unwrap_or(base).max(base);
    Ok(Recovered {
        segments,
        active: active_end,
        spare: classified.spare,
        leftovers,
        free_files,
        report,
        first_offset: start.min(active_end.end.offset),
        restart_at: (start > active_end.end.offset).then_some(start),
    })
}

/// Splits off the segments a truncation cut away: those whose ids a later segment's
/// header names (`dropped_before`: the ids right before it). That header is checksummed
/// and was written only after those segments were complete, so it decides, whatever
/// state a crash left their files in.
pub(crate) fn split_truncated<T: HasHeader>(chain: Vec<T>) -> (Vec<T>, Vec<T>) {
    let cut_ranges: Vec<(u64, u64)> = chain
        .iter()
        .filter_map(|f| f.activated_header())
        .filter(|h| h.dropped_before > 0)
        .map(|h| {
            let from = h.segment_id.saturating_sub(u64::from(h.dropped_before));
            (from, h.segment_id)
        })
        .collect();
    chain.into_iter().partition(|f| {
        !cut_ranges
            .iter()
            .any(|&(from, to)| (from..to).contains(&f.segment_id()))
    })
}

/// What [`split_truncated`] needs of a segment file.
pub(crate) trait HasHeader {
    fn segment_id(&self) -> u64;
    fn activated_header(&self) -> Option<SegmentHeader>;
}

impl HasHeader for Found {
    fn segment_id(&self) -> u64 {
        self.id
    }
    fn activated_header(&self) -> Option<SegmentHeader> {
        self.activated()
    }
}

/// Splits off the segments wholly below the start a trim recorded (`start`): those
/// before the last one whose base offset is at or below it. A truncation's dead
/// segments never qualify (the segment that cut them starts at or below their base,
/// and comes later), and gaps among the trimmed files (unlinks a crash reordered) do
/// not matter.
fn split_trimmed(chain: Vec<Found>, start: Option<u64>) -> (Vec<Found>, Vec<Found>) {
    let Some(start) = start else {
        return (chain, Vec::new());
    };
    let keep_from = chain
        .iter()
        .rposition(|f| f.activated().is_some_and(|h| h.base_offset <= start))
        .unwrap_or(0);
    let mut chain = chain;
    let kept = chain.split_off(keep_from);
    (kept, chain)
}

/// Phase 1: temporary files. Interrupted index writes are removed now; interrupted
/// segment preparations are left to the housekeeper, after open (unlinking a partly
/// zero-filled 64 MiB file took 1.6-3.7 ms, strace, three kills): returned.
fn take_temporaries(
    temporaries: Vec<PathBuf>,
    writable: bool,
    report: &mut RecoveryReport,
) -> Result<Vec<PathBuf>> {
    let mut leftovers = Vec::new();
    if !writable {
        return Ok(leftovers);
    }
    for path in temporaries {
        if path.to_string_lossy().ends_with(".seg.tmp") {
            let why = "unfinished segment preparation (removed in the background)";
            report.removed.push((path.clone(), why.to_string()));
            leftovers.push(path);
        } else {
            remove(&path, "unfinished index file", report)?;
        }
    }
    Ok(leftovers)
}

/// What the segment files are.
struct Classified {
    /// Every file up to the last activated one, by id: the chain to check.
    chain: Vec<Found>,
    /// The prepared segment after it, if there is one (intact, holding no data).
    spare: Option<Spare>,
}

/// Phase 2: reads every segment's header and sorts the files into the chain (up to the
/// last activated segment), the spare after it, and what an interrupted preparation or
/// activation left (removed by a writer). Refuses what shows that activated segments or
/// acknowledged records are gone.
fn classify(
    dir: &Path,
    segment_files: BTreeMap<u64, PathBuf>,
    index_ids: &[u64],
    access: Access,
    report: &mut RecoveryReport,
) -> Result<Classified> {
    let writable = access == Access::Write;
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    for (id, path) in segment_files {
        found.insert(id, Found::read(id, path, writable)?);
    }
    let last_activated = found
        .values()
        .filter(|f| f.activated().is_some())
        .map(|f| f.id)
        .max();
    let ids: Vec<u64> = found.keys().copied().collect();
    if let Some(lost) = lost_segment(dir, &ids, index_ids, last_activated) {
        return Err(lost);
    }
    let mut classified = Classified {
        chain: Vec::new(),
        spare: None,
    };
    for (id, f) in found {
        if last_activated.is_some_and(|last| id <= last) {
            classified.chain.push(f);
            continue;
        }
        // Past the last activated segment: a spare, or a preparation or activation
        // that a crash interrupted (nothing was ever appended to it).
        let data = f
            .has_data(f.spare().is_none())
            .map_err(|e| Error::io("read segment", &f.path, e))?;
        if data && !writable {
            // A live writer may have activated this spare since its header was read:
            // read it again. `refresh` picks the segment up if so.
            let (now, _) =
                segment::read_header(&f.file).map_err(|e| Error::io("read segment", &f.path, e))?;
            if now.is_ok_and(|h| h.is_activated() && h.segment_id == id) {
                continue;
            }
        }
        if let Some(why) = beyond_refusal(dir, &f, data, index_ids) {
            return Err(Error::corruption(&f.path, 0, why));
        }
        let next_id = last_activated.map_or(0, |l| l + 1);
        match f.spare() {
            Some(header) if id == next_id && classified.spare.is_none() && !data => {
                classified.spare = Some(Spare {
                    path: f.path,
                    file: f.file,
                    header,
                });
            }
            _ => {
                let why = match f.spare() {
                    Some(_) => "spare segment out of sequence".to_string(),
                    None => format!("half-prepared segment ({})", f.why_broken()),
                };
                if writable {
                    remove(&f.path, &why, report)?;
                }
            }
        }
    }
    Ok(classified)
}

/// A brand-new log: its first segment, from the spare a crash left or prepared now.
fn create_first(dir: &Path, opts: &Options, spare: Option<Spare>) -> Result<Arc<Segment>> {
    let spare = match spare {
        Some(s) => s,
        None => segment::prepare(
            dir,
            0,
            opts.first_segment_bytes(),
            opts.preallocate_effective(),
            &mut |_| segment::ZeroChunk::Rushed,
        )?,
    };
    let segment = activate_in_place(spare, 0, opts.grows_segments())?;
    segment.index.write().loaded = true;
    Ok(segment)
}

/// Phase 3: every file of the chain must be an activated segment, the ids consecutive,
/// the base offsets increasing, except after a truncation: a segment whose header says
/// it cut away the segments before it (`dropped_before`, taken out by
/// [`split_truncated`]) follows the one before them. Maps the segments (lazily) and
/// links each to its successor's base offset.
fn check_chain(dir: &Path, chain: Vec<Found>) -> Result<Vec<Arc<Segment>>> {
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(chain.len());
    for f in chain {
        let Some(header) = f.activated() else {
            return Err(Error::corruption(
                &f.path,
                0,
                format!("{} in the middle of the log", f.why_broken()),
            ));
        };
        let dropped = u64::from(header.dropped_before);
        let dropped_from = f.id.saturating_sub(dropped);
        if let Some(previous) = segments.last() {
            let expected = dropped_from.saturating_sub(1);
            if previous.id() != expected {
                return Err(Error::corruption(
                    segment::segment_path(dir, previous.id() + 1),
                    0,
                    format!(
                        "segment {} is missing between segments {} and {}",
                        previous.id() + 1,
                        previous.id(),
                        f.id
                    ),
                ));
            }
            // Equal when the one before holds no records: a growing log's first batch
            // too large for the segment it was staged for went on to a larger one.
            if header.base_offset < previous.base_offset() {
                return Err(Error::corruption(
                    &f.path,
                    24,
                    format!(
                        "base offset {} does not follow segment {}'s base offset {}",
                        header.base_offset,
                        previous.id(),
                        previous.base_offset()
                    ),
                ));
            }
            *previous.end_offset.write() = Some(header.base_offset);
            // Sealed: nothing writes to it again, and it is mapped by name when read.
            previous.release_file();
        }
        let segment = Segment::new(f.path, f.file, header, f.len)?;
        if let Some(ts) = f.first_timestamp {
            segment.set_first_timestamp_hint(ts);
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// Phase 5: index files of segments that are gone.
fn remove_orphan_indexes(
    dir: &Path,
    segments: &[Arc<Segment>],
    index_ids: Vec<u64>,
    report: &mut RecoveryReport,
) -> Result<()> {
    for id in index_ids {
        if !segments.iter().any(|s| s.id() == id) {
            remove(
                &segment::index_path(dir, id),
                "index of a missing segment",
                report,
            )?;
        }
    }
    Ok(())
}

/// Why a file past the last activated segment shows damage (open refuses it, verify
/// reports it), given whether it holds `data` (see [`Found::has_data`]).
pub(crate) fn beyond_refusal(
    dir: &Path,
    f: &Found,
    data: bool,
    index_ids: &[u64],
) -> Option<String> {
    if data {
        // Records are written only after the activation header is durable.
        let why = match f.spare() {
            Some(_) => "the header is a spare's (never activated)".to_string(),
            None => f.why_broken(),
        };
        return Some(format!("{why}, yet the segment holds data"));
    }
    if f.spare().is_none() && index_ids.contains(&f.id) && has_index_file(dir, f.id) {
        // Only activated segments get an index file: this is one whose header (or the
        // whole file) was lost, not an interrupted preparation.
        return Some(format!(
            "{}, yet its index file shows it was activated",
            f.why_broken()
        ));
    }
    None
}

/// A segment that the files past the last activated one show existed, and is gone:
/// appending at the end of the last activated segment could then hand out offsets that
/// were acknowledged in it, so open refuses (docs/design.md 4.1, step 4). The writer
/// creates segment files in id order and never removes one it has prepared, so:
///
/// - a segment file past the last activated one (a spare, or anything else) whose
///   predecessor is missing means that predecessor was prepared and taken into use, and
///   may have been activated with acknowledged records;
/// - an intact index file naming a segment past the last activated one whose file is
///   missing means that segment was activated (only activated segments get one).
///
/// - the last activated segment's index file says it was sealed: its successor was
///   activated, and is gone.
///
/// `ids` are the segment files present, ascending. Both the active segment's file and
/// its index file lost, with no later file, are detected when the segment before had its
/// sealed index written (the housekeeper writes it right after the rollover, unsynced: a
/// power cut just after a rollover can take it away with the loss undetected).
pub(crate) fn lost_segment(
    dir: &Path,
    ids: &[u64],
    index_ids: &[u64],
    last_activated: Option<u64>,
) -> Option<Error> {
    let after = last_activated.map_or(0, |last| last + 1);
    let remedy = |missing: u64| {
        let after_it = match last_activated {
            Some(last) => format!("the files after segment {last}"),
            None => "every segment file".to_string(),
        };
        format!(
            "restore {} (and its index file) from a copy; to accept that its records are lost, remove {after_it} and open again",
            segment::segment_path(dir, missing).display()
        )
    };
    let mut expected = after;
    for &id in ids.iter().filter(|id| **id >= after) {
        if id > expected {
            return Some(Error::corruption(
                segment::segment_path(dir, expected),
                0,
                format!(
                    "segment {expected} is missing, yet segment {id} after it exists: it was taken into use and may hold acknowledged records, which appending would hand out again; {}",
                    remedy(expected)
                ),
            ));
        }
        expected = id + 1;
    }
    if let Some(last) = last_activated {
        let sealed = std::fs::read(segment::index_path(dir, last))
            .ok()
            .and_then(|bytes| IndexFile::decode(&bytes, format::MAX_SEGMENT_BYTES).ok())
            .is_some_and(|file| file.segment_id == last && file.sealed);
        let missing = last + 1;
        // A successor whose file is there but whose header is not an activated one's is
        // damage of its own, reported as such when the file is classified.
        if sealed && !ids.contains(&missing) {
            return Some(Error::corruption(
                segment::segment_path(dir, missing),
                0,
                format!(
                    "segment {missing} is missing, yet segment {last}'s index file shows it was sealed (segment {missing} was activated after it): it may hold acknowledged records, which appending would hand out again; {}",
                    remedy(missing)
                ),
            ));
        }
    }
    let orphan = index_ids
        .iter()
        .copied()
        .filter(|id| *id >= after && !ids.contains(id) && has_index_file(dir, *id))
        .min()?;
    Some(Error::corruption(
        segment::segment_path(dir, orphan),
        0,
        format!(
            "segment {orphan} is missing, yet its index file shows it was activated: it may hold acknowledged records, which appending would hand out again; {}",
            remedy(orphan)
        ),
    ))
}

/// Whether segment `id` has an intact index file naming it.
fn has_index_file(dir: &Path, id: u64) -> bool {
    std::fs::read(segment::index_path(dir, id))
        .ok()
        .and_then(|bytes| IndexFile::decode(&bytes, format::MAX_SEGMENT_BYTES).ok())
        .is_some_and(|file| file.segment_id == id)
}

/// Phase 4: finds the end of the active segment's data and applies the recovery policy
/// to a torn tail. Under `Durability::Sync` it then makes the result durable and writes
/// a (non-clean) checkpoint; otherwise the recovered tail becomes durable with the log's
/// next flush, as an unsynced append would. Returns the end, and what is known durable.
fn recover_active(
    dir: &Path,
    opts: &Options,
    active: &Arc<Segment>,
    access: Access,
    backend: &mut dyn Backend,
    report: &mut RecoveryReport,
) -> Result<ActiveEnd> {
    let bytes = active.bytes()?;
    let checkpoint = active.load_index_file(dir);
    let mut start =
        ScanStart::from_data_start(active.base_offset(), None).in_recycled(active.header.recycled);
    // What a writer may have written past the end is bounded by a trusted index file's
    // write bound (the search stops there); without one the whole segment is searched.
    let mut proven = (SEGMENT_HEADER_BYTES, active.base_offset());
    let mut unchecked_offsets = 0..0;
    if let Some(idx) = checkpoint {
        match recovery::check_checkpoint(bytes, active.base_offset(), &idx) {
            Ok(()) => {
                let at = idx.data_end as usize;
                // Nothing was written past a clean close: zeros there, or in a recycled
                // segment no frame of its own (its earlier life's bytes).
                let ends_there = at + 8 > bytes.len()
                    || bytes[at..at + 8] == [0u8; 8]
                    || (active.header.recycled
                        && format::decode_frame(&bytes[at..], active.seed).is_err());
                report.clean_shutdown = idx.clean && ends_there;
                unchecked_offsets = active.base_offset()..idx.next_offset;
                proven = (idx.data_end, idx.next_offset);
                start = ScanStart {
                    position: idx.data_end,
                    offset: idx.next_offset,
                    proven_durable: idx.data_end,
                    stop_offset: None,
                    entries: idx.entries,
                    search_end: idx.write_bound,
                    recycled: active.header.recycled,
                };
            }
            Err(why) => {
                // The checkpoint disagrees with the data: scan the segment from its start
                // instead. A checksum-valid checkpoint still proves that the bytes below
                // its data end were durable, so a scan that stops before there has found
                // damage to durable data, not a torn tail (4.2).
                report.checkpoint_rejected = Some(why);
                start.proven_durable = idx.data_end;
            }
        }
    }
    let mut zeroed = false;
    let (end, next_offset, entries) = if report.clean_shutdown {
        (start.position, start.offset, start.entries)
    } else {
        let scan_start = start.position;
        let outcome = recovery::scan(bytes, active.seed, start, opts.index_interval_bytes);
        let mut truncated = None;
        match outcome.tail {
            Tail::Clean | Tail::Full => {}
            Tail::Corrupt { position, reason } => {
                return Err(Error::corruption(&active.path, position, reason));
            }
            Tail::Torn {
                position,
                garbage_end,
                reason,
            } => {
                if opts.recovery == RecoveryPolicy::Strict && access == Access::Write {
                    return Err(Error::Corruption {
                        segment: active.path.clone(),
                        position,
                        reason: format!("{}: {reason}", crate::error::TORN_TAIL),
                    });
                }
                if access == Access::Write {
                    zero_range(backend, active, position, garbage_end)?;
                    zeroed = true;
                }
                truncated = Some(Truncation {
                    position,
                    bytes: garbage_end - position,
                    reason,
                });
            }
        }
        report.scanned.push(SegmentScan {
            segment_id: active.id(),
            path: active.path.clone(),
            base_offset: active.base_offset(),
            scan_start_position: scan_start,
            data_end_position: outcome.end_position,
            records_scanned: outcome.records_count,
            next_offset: outcome.next_offset,
            truncated,
        });
        (outcome.end_position, outcome.next_offset, outcome.entries)
    };
    {
        let mut index = active.index.write();
        index.entries = entries;
        index.unchecked_offsets = unchecked_offsets;
        index.loaded = true;
    }
    active.release_resident();
    let end_point = SegmentPoint {
        position: end,
        offset: next_offset,
    };
    let whole = ActiveEnd {
        end: end_point,
        durable: end_point,
    };
    if access == Access::ReadOnly {
        return Ok(whole);
    }
    if report.clean_shutdown {
        // Everything was synced at close; only the clean flag must go before anything
        // is appended past it. Rewriting the file in place (same length) needs no
        // directory sync; a torn rewrite fails its checksum and costs a scan, no more.
        active.clear_clean_flag(dir)?;
        // Nothing past `end` was written; the loaded file's bound is not relied on (its
        // rename may not be durable): the writer reserves its own.
        active.start_write_bound(end);
        return Ok(whole);
    }
    if opts.durability != Durability::Sync {
        // An unsynced log: what was read may be only in the page cache (a process
        // crash), and it stays unacknowledged until the next flush, which covers it
        // (docs/design.md 4.1). Open waits for no flush. Everything past `end` that the
        // index file's bound covers is zero now, and nothing past that bound was ever
        // written.
        // The search covered everything the last writer can have written (its files
        // carry at least the bound it relied on), and found it zero past `end`, or
        // zeroed it: the bound starts over there, and the writer reserves its own (the
        // loaded file's may be in the page cache only).
        active.start_write_bound(end);
        // Zeroing a torn tail synced the whole file: then all of it is durable.
        let durable = if zeroed {
            end_point
        } else {
            SegmentPoint {
                position: proven.0,
                offset: proven.1,
            }
        };
        return Ok(ActiveEnd {
            end: end_point,
            durable,
        });
    }
    // What was read may have been only in the page cache (a process crash): make it
    // durable before it is reported durable, then move the checkpoint. Everything past
    // `end` is zero now (searched, and any torn bytes zeroed), so the write bound starts
    // over from there.
    backend
        .sync_data(&*active.file()?)
        .map_err(|e| Error::io("fdatasync", &active.path, e))?;
    active.start_write_bound(end);
    let step = segment::write_bound_step(active.header.segment_bytes);
    active.persist_index(dir, end, next_offset, false, end + step)?;
    Ok(whole)
}

/// Writes zeros over `start..end` of the segment and syncs them, so a torn tail can
/// never come back after a later crash.
fn zero_range(backend: &mut dyn Backend, segment: &Segment, start: u64, end: u64) -> Result<()> {
    let end = end.min(segment.header.segment_bytes);
    let zeros = vec![0u8; (end - start).min(1 << 20) as usize];
    let file = segment.file()?;
    let mut position = start;
    while position < end {
        let len = zeros.len().min((end - position) as usize);
        backend
            .write_all_at(&file, position, &zeros[..len])
            .map_err(|e| Error::io("zero torn tail", &segment.path, e))?;
        position += len as u64;
    }
    backend
        .sync_data(&file)
        .map_err(|e| Error::io("fdatasync", &segment.path, e))
}

/// Writes and syncs the activated header of a spare (used for a brand-new log).
fn activate_in_place(spare: Spare, base_offset: u64, grows: bool) -> Result<Arc<Segment>> {
    let header = SegmentHeader {
        base_offset,
        grows,
        ..spare.header
    };
    spare
        .file
        .write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write segment header", &spare.path, e))?;
    spare
        .file
        .sync_data()
        .map_err(|e| Error::io("fdatasync", &spare.path, e))?;
    let len = header.segment_bytes;
    Segment::new(spare.path, spare.file, header, len)
}

fn remove(path: &Path, why: &str, report: &mut RecoveryReport) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
    report.removed.push((path.to_path_buf(), why.to_string()));
    Ok(())
}
