//! Offline checks of a whole log directory (`verify`) and the one repair ringlog makes
//! on request (`repair`: cutting a torn tail, never anything durable).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{self, FrameKind, IndexFile, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::io::PwriteBackend;
use crate::log::{lock_dir, lock_holder};
use crate::open::{self, list_dir, Access, Found};
use crate::options::{Options, RecoveryPolicy};
use crate::recovery::{self, ScanStart, Tail};
use crate::report::Truncation;
use crate::segment::{self, Segment};
use crate::trim;

/// What kind of problem `verify` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A segment header that fails its checks where data is.
    Header,
    /// Segments that do not chain: a missing id, or base offsets out of order.
    Chain,
    /// Damaged durable data: a record that fails its checks with durable data after it.
    Corruption,
    /// A torn tail at the end of the active segment: `repair` (or opening with
    /// `RecoveryPolicy::TruncateTorn`) cuts it.
    TornTail,
    /// A persisted index that is damaged, stale or disagrees with the data; it is
    /// ignored and rebuilt from the data, so no read is affected.
    Index,
}

/// One problem, with where it is.
#[derive(Debug, Clone)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The file.
    pub path: PathBuf,
    /// Byte position in that file.
    pub position: u64,
    /// Bytes affected, where known (a torn tail's extent).
    pub length_bytes: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: {} at byte {}: {}",
            self.kind,
            self.path.display(),
            self.position,
            self.message
        )
    }
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Activated segments checked.
    pub segments_checked: u64,
    /// Records whose checksums and offsets were checked.
    pub records_checked: u64,
    /// Offset of the first record.
    pub first_offset: u64,
    /// Offset after the last valid record.
    pub next_offset: u64,
    /// Everything wrong, in file order.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// No problems at all.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Problems that `repair` will not fix (anything but a torn tail or an index).
    pub fn corruption(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| !matches!(p.kind, ProblemKind::TornTail | ProblemKind::Index))
    }
}

/// Reads every segment of the log in `dir` and checks every header, every record's
/// checksum and offset, the chain of segments, and each persisted index against the data.
/// Reports every state in which [`Log::open`](crate::Log::open) would refuse the log. Changes nothing on
/// disk and takes no lock.
///
/// Beside a writer (one holds the directory's lock when verify starts or ends), it checks
/// what the writer has published and reports nothing a quiescent log would not have: the
/// segment headers are read until two reads in a row agree (a snapshot of the chain),
/// the active segment's unfinished batch is not a torn tail, and a sealed segment's index
/// file may still be its last checkpoint (docs/design.md 4.6).
///
/// # Errors
///
/// [`Error::Io`] if the directory or a file cannot be read, [`Error::NotALog`] when it
/// holds no segment files. Damage is reported in the [`VerifyReport`], not as an error.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let lock_dir_path = crate::store::lock_dir_of(dir);
    let beside_writer = lock_holder(&lock_dir_path)?.is_some();
    let report = check(dir, beside_writer)?;
    if beside_writer || lock_holder(&lock_dir_path)?.is_none() {
        return Ok(report);
    }
    // A writer took the log while it was checked: check again, as beside it.
    check(dir, true)
}

/// How often [`survey`] reads the directory before it gives up waiting for two reads
/// in a row that agree (each one is a listing and a 64-byte read per segment; a writer
/// changes a header once per rollover).
const SURVEY_ATTEMPTS: usize = 20;

/// Lists the segment files of `dir` and reads their headers, again and again until two
/// reads in a row agree, so that a writer activating segments meanwhile cannot show a
/// chain that never existed. Returns the files by id and the ids with an index file.
fn survey(dir: &Path) -> Result<(Vec<Found>, Vec<u64>)> {
    let mut previous: Option<Vec<(u64, HeaderRead, u64)>> = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let listing = list_dir(dir)?;
        let mut found = Vec::with_capacity(listing.segments.len());
        let mut vanished = false;
        for (id, path) in listing.segments {
            match Found::read(id, path, false) {
                Ok(f) => found.push(f),
                // Removed since the listing (a writer's open removes spares out of
                // sequence): read the directory again.
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && attempts < SURVEY_ATTEMPTS =>
                {
                    vanished = true;
                }
                Err(e) => return Err(e),
            }
        }
        let read: Vec<_> = found
            .iter()
            .map(|f| (f.id, f.header.clone(), f.len))
            .collect();
        let stable = !vanished && previous.as_ref() == Some(&read);
        if stable || attempts >= SURVEY_ATTEMPTS {
            return Ok((found, listing.indexes));
        }
        previous = (!vanished).then_some(read);
    }
}

type HeaderRead = std::result::Result<SegmentHeader, crate::format::FormatError>;

/// The checks of [`verify`]; `beside_writer` as it describes.
fn check(dir: &Path, beside_writer: bool) -> Result<VerifyReport> {
    let (found, index_ids) = survey(dir)?;
    if found.is_empty() {
        return Err(Error::NotALog {
            path: dir.to_path_buf(),
        });
    }
    let mut report = VerifyReport::default();
    let last_activated = found
        .iter()
        .filter(|f| f.activated().is_some())
        .map(|f| f.id)
        .max();
    let ids: Vec<u64> = found.iter().map(|f| f.id).collect();
    if let Some(Error::Corruption {
        segment,
        position,
        reason,
    }) = open::lost_segment(dir, &ids, &index_ids, last_activated)
    {
        report.problems.push(Problem {
            kind: ProblemKind::Chain,
            path: segment,
            position,
            length_bytes: 0,
            message: reason,
        });
    }
    // Segments a truncation cut away (a crash left them for open to delete) are not
    // part of the log, whatever their state.
    let (found, _cut_away) = open::split_truncated(found);
    let mut chain: Vec<(PathBuf, File, SegmentHeader, u64)> = Vec::new();
    for f in found {
        let in_chain = last_activated.is_some_and(|last| f.id <= last);
        if !in_chain {
            // Past the last activated segment: what open refuses there.
            let data = f
                .has_data(f.spare().is_none())
                .map_err(|e| Error::io("read segment", &f.path, e))?;
            let Some(why) = open::beyond_refusal(dir, &f, data, &index_ids) else {
                continue;
            };
            if beside_writer && activated_since(&f)? {
                continue; // The writer activated it after the survey.
            }
            report.problems.push(Problem {
                kind: ProblemKind::Header,
                path: f.path,
                position: 0,
                length_bytes: SEGMENT_HEADER_BYTES,
                message: why,
            });
            continue;
        }
        match f.activated() {
            Some(h) if f.len >= h.segment_bytes => chain.push((f.path, f.file, h, f.len)),
            _ => {
                let message = match &f.header {
                    Err(e) => format!("segment header: {e}"),
                    Ok(h) => format!(
                        "header of segment {} (base {}), file of {} bytes, in the chain of activated segments",
                        h.segment_id, h.base_offset, f.len
                    ),
                };
                report.problems.push(Problem {
                    kind: ProblemKind::Header,
                    path: f.path,
                    position: 0,
                    length_bytes: SEGMENT_HEADER_BYTES,
                    message,
                });
            }
        }
    }
    // What a trim or truncation removed (and a crash may have left for open to delete)
    // is not part of the log.
    let start = match trim::read_start(dir) {
        Ok(start) => start,
        Err(e) => {
            let path = dir.join(trim::START_FILE);
            report
                .problems
                .push(problem_from(ProblemKind::Corruption, &path, e));
            None
        }
    };
    if let Some(start) = start {
        if let Some(keep_from) = chain.iter().rposition(|c| c.2.base_offset <= start) {
            chain.drain(..keep_from);
        }
    }
    for pair in chain.windows(2) {
        let (a, b) = (&pair[0].2, &pair[1].2);
        let follows = a.segment_id + 1 + u64::from(b.dropped_before) == b.segment_id;
        // Equal bases: the first holds no records (see `open::check_chain`).
        if !follows || b.base_offset < a.base_offset {
            report.problems.push(Problem {
                kind: ProblemKind::Chain,
                path: pair[1].0.clone(),
                position: 0,
                length_bytes: 0,
                message: format!(
                    "segment {} (base offset {}) does not follow segment {} (base offset {})",
                    b.segment_id, b.base_offset, a.segment_id, a.base_offset
                ),
            });
        }
    }
    report.first_offset = chain
        .first()
        .map_or(0, |c| c.2.base_offset.max(start.unwrap_or(0)));
    let stops: Vec<Option<u64>> = (0..chain.len())
        .map(|i| chain.get(i + 1).map(|next| next.2.base_offset))
        .collect();
    // Caller sequences strictly increase along the log (`entry.rs`).
    let mut previous_seq = None;
    for ((path, file, header, len), stop) in chain.into_iter().zip(stops) {
        let segment = match Segment::new(path.clone(), file, header, len) {
            Ok(s) => s,
            Err(e) => {
                report
                    .problems
                    .push(problem_from(ProblemKind::Corruption, &path, e));
                continue;
            }
        };
        check_segment(dir, &segment, stop, beside_writer, &mut report);
        let end = stop.unwrap_or(u64::MAX);
        if let Some((position, message)) =
            crate::entry::backward_sequence(&segment, end, &mut previous_seq)
        {
            report.problems.push(Problem {
                kind: ProblemKind::Corruption,
                path: segment.path.clone(),
                position,
                length_bytes: 0,
                message,
            });
        }
    }
    for (path, message) in crate::snapshot::check_snapshots(dir, report.next_offset) {
        report.problems.push(Problem {
            kind: ProblemKind::Corruption,
            path,
            position: 0,
            length_bytes: 0,
            message,
        });
    }
    Ok(report)
}

/// Whether the header of `f` now says it was activated (it did not when read).
fn activated_since(f: &Found) -> Result<bool> {
    let (now, _) =
        segment::read_header(&f.file).map_err(|e| Error::io("read segment", &f.path, e))?;
    Ok(now.is_ok_and(|h| h.is_activated() && h.segment_id == f.id))
}

fn problem_from(kind: ProblemKind, path: &Path, error: Error) -> Problem {
    let position = match &error {
        Error::Corruption { position, .. } => *position,
        _ => 0,
    };
    Problem {
        kind,
        path: path.to_path_buf(),
        position,
        length_bytes: 0,
        message: error.to_string(),
    }
}

/// Scans one segment and compares its index file with what the scan found. `stop` is
/// the next segment's base offset (`None`: the active segment). Beside a writer, the
/// active segment's data past what is durable may be a batch being written, and a sealed
/// segment's index file may still be its last checkpoint: neither is reported.
fn check_segment(
    dir: &Path,
    segment: &Segment,
    stop: Option<u64>,
    beside_writer: bool,
    report: &mut VerifyReport,
) {
    report.segments_checked += 1;
    let bytes = match segment.bytes() {
        Ok(bytes) => bytes,
        Err(e) => {
            report
                .problems
                .push(problem_from(ProblemKind::Corruption, &segment.path, e));
            return;
        }
    };
    // Read once, before the data: beside a writer, the data only grows past it.
    let index_path = segment::index_path(dir, segment.id());
    let index_bytes = std::fs::read(&index_path).ok();
    let index = index_bytes
        .as_ref()
        .map(|b| IndexFile::decode(b, segment.header.segment_bytes));
    let matching = match &index {
        Some(Ok(file))
            if file.segment_id == segment.id()
                && file.nonce == segment.header.nonce
                && file.base_offset == segment.base_offset() =>
        {
            Some(file)
        }
        _ => None,
    };
    let proven = matching
        .filter(|_| stop.is_none())
        .map_or(SEGMENT_HEADER_BYTES, |i| i.data_end);
    let outcome = recovery::scan(
        bytes,
        segment.seed,
        ScanStart {
            proven_durable: proven,
            ..ScanStart::from_data_start(segment.base_offset(), stop)
                .in_recycled(segment.header.recycled)
        },
        4096,
    );
    report.records_checked += outcome.records_count;
    report.next_offset = report.next_offset.max(outcome.next_offset);
    let path = segment.path.clone();
    // Where the data is damaged: the index is compared with the data below it only.
    let mut damaged_at = None;
    match outcome.tail {
        Tail::Clean | Tail::Full => {}
        Tail::Corrupt { position, reason } => {
            damaged_at = Some(position);
            report.problems.push(Problem {
                kind: ProblemKind::Corruption,
                path: path.clone(),
                position,
                length_bytes: 0,
                message: reason,
            })
        }
        // Beside a writer: the batch it is writing now. Nothing proves it durable.
        Tail::Torn { .. } if beside_writer && stop.is_none() => {}
        Tail::Torn {
            position,
            garbage_end,
            reason,
        } => report.problems.push(Problem {
            kind: ProblemKind::TornTail,
            path: path.clone(),
            position,
            length_bytes: garbage_end - position,
            message: format!("{reason}; `ringlog repair` cuts it"),
        }),
    }
    let mut index_problem = |message: String| {
        report.problems.push(Problem {
            kind: ProblemKind::Index,
            path: index_path.clone(),
            position: 0,
            length_bytes: 0,
            message: format!("{message}; it is ignored and rebuilt from the data"),
        })
    };
    let file = match index {
        None => return,
        Some(Err(e)) => return index_problem(format!("damaged index: {e}")),
        Some(Ok(_)) => match matching {
            Some(file) => file,
            None => {
                return index_problem("index belongs to another incarnation of this segment".into())
            }
        },
    };
    let agrees = |file: &IndexFile| {
        outcome.end_position >= file.data_end
            && recovery::check_checkpoint(bytes, segment.base_offset(), file).is_ok()
    };
    let ends_elsewhere =
        file.next_offset != outcome.next_offset || file.data_end != outcome.end_position;
    // A sealed segment's index file says where its data ends. Not when the data is
    // damaged (reported above: the index is what it should be), nor beside a writer
    // while it is still the checkpoint written before the rollover (the housekeeper
    // replaces it).
    let stale_beside_writer = beside_writer && file.data_end < outcome.end_position && agrees(file);
    if stop.is_some() && damaged_at.is_none() && ends_elsewhere && !stale_beside_writer {
        return index_problem(format!(
            "index says the data ends at byte {} (offset {}), the data ends at byte {} (offset {})",
            file.data_end, file.next_offset, outcome.end_position, outcome.next_offset
        ));
    }
    let below_damage = |position: u64| damaged_at.is_none_or(|damage| position < damage);
    for entry in file.entries.iter().filter(|e| below_damage(e.position)) {
        let ok = bytes
            .get(entry.position as usize..)
            .and_then(|at| format::decode_frame(at, segment.seed).ok())
            .is_some_and(
                |f| matches!(f.kind, FrameKind::Record { offset, .. } if offset == entry.offset),
            );
        if !ok {
            return index_problem(format!(
                "index entry for offset {} points at byte {}, which does not hold it",
                entry.offset, entry.position
            ));
        }
    }
    // What open checks of a checkpoint. Only when the data itself is whole up to the
    // index's data end: below it, damage is the data's (reported above), and the index
    // is what proves those bytes were durable.
    if damaged_at.is_none() && outcome.end_position >= file.data_end {
        if let Err(why) = recovery::check_checkpoint(bytes, segment.base_offset(), file) {
            index_problem(format!("index disagrees with the data: {why}"));
        }
    }
}

/// What `repair` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Torn tails cut (zeroed and synced).
    pub truncated: Vec<(PathBuf, Truncation)>,
    /// Files removed (damaged indexes, half-prepared segments).
    pub removed: Vec<(PathBuf, String)>,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// Cuts a torn tail (and removes damaged index files) in the log in `dir`, and nothing
/// else. Takes the directory's writer lock before it reads any segment, and holds it to
/// the end, `dry_run` or not. With `dry_run`, reports what it would cut.
///
/// # Errors
///
/// [`Error::Locked`] while a writer has the log open (nothing is read or changed);
/// [`Error::Corruption`] (refusing to change anything) when the log has damage other
/// than a torn tail; [`Error::NotALog`]; [`Error::Io`].
pub fn repair(dir: impl AsRef<Path>, dry_run: bool) -> Result<RepairReport> {
    let dir = dir.as_ref();
    // Not a log: no lock file is left behind in a directory that holds none.
    if list_dir(dir)?.segments.is_empty() {
        return Err(Error::NotALog {
            path: dir.to_path_buf(),
        });
    }
    // A store's topic is covered by the store's lock.
    let _lock = lock_dir(&crate::store::lock_dir_of(dir))?;
    let found = check(dir, false)?;
    if let Some(problem) = found.corruption().next() {
        return Err(Error::corruption(
            &problem.path,
            problem.position,
            format!(
                "{}; repair only cuts torn tails and refuses to touch damaged durable data",
                problem.message
            ),
        ));
    }
    let mut report = RepairReport {
        dry_run,
        ..RepairReport::default()
    };
    for problem in &found.problems {
        match problem.kind {
            ProblemKind::TornTail => report.truncated.push((
                problem.path.clone(),
                Truncation {
                    position: problem.position,
                    bytes: problem.length_bytes,
                    reason: problem.message.clone(),
                },
            )),
            ProblemKind::Index => report
                .removed
                .push((problem.path.clone(), problem.message.clone())),
            _ => {}
        }
    }
    if dry_run || report.truncated.is_empty() && report.removed.is_empty() {
        return Ok(report);
    }
    for (path, _) in &report.removed {
        std::fs::remove_file(path).map_err(|e| Error::io("remove index file", path, e))?;
    }
    if !report.truncated.is_empty() {
        // Open's recovery, under the lock this holds: it zeroes the torn tail, syncs,
        // and writes a new checkpoint.
        let opts = Options::default().recovery(RecoveryPolicy::TruncateTorn);
        let mut backend = PwriteBackend::default();
        let recovered = open::recover(dir, &opts, Access::Write, &mut backend)?;
        for path in &recovered.leftovers {
            std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
        }
        report.truncated = recovered
            .report
            .scanned
            .iter()
            .filter_map(|s| s.truncated.clone().map(|t| (s.path.clone(), t)))
            .collect();
        report.removed.extend(recovered.report.removed.clone());
    }
    Ok(report)
}
