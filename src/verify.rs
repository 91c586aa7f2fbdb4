//! Offline checks of a whole log directory (`verify`) and the one repair ringlog makes
//! on request (`repair`: cutting a torn tail, never anything durable).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{self, FrameKind, IndexFile, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::log::Log;
use crate::open::list_dir;
use crate::options::{Options, RecoveryPolicy};
use crate::recovery::{self, ScanStart, Tail};
use crate::report::Truncation;
use crate::segment::{self, Segment};

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
/// Changes nothing on disk, takes no lock, and may run beside a writer (whose unfinished
/// batch can then show as a torn tail).
///
/// # Errors
///
/// [`Error::Io`] if the directory or a file cannot be read. Damage is reported in the
/// [`VerifyReport`], not as an error.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let listing = list_dir(dir)?;
    if listing.segments.is_empty() {
        return Err(Error::NotALog {
            path: dir.to_path_buf(),
        });
    }
    let mut report = VerifyReport::default();
    let mut headers = Vec::new();
    for (id, path) in &listing.segments {
        let file = File::open(path).map_err(|e| Error::io("open segment", path, e))?;
        let (header, len) =
            segment::read_header(&file).map_err(|e| Error::io("read segment", path, e))?;
        headers.push((*id, path.clone(), file, header, len));
    }
    let last_activated = headers
        .iter()
        .filter(|(id, _, _, h, _)| matches!(h, Ok(h) if h.is_activated() && h.segment_id == *id))
        .map(|(id, ..)| *id)
        .max();
    let mut chain: Vec<(PathBuf, File, SegmentHeader, u64)> = Vec::new();
    for (id, path, file, header, len) in headers {
        let in_chain = last_activated.is_some_and(|last| id <= last);
        match header {
            Ok(h) if h.is_activated() && h.segment_id == id && len >= h.segment_bytes => {
                chain.push((path, file, h, len))
            }
            Ok(h) if !h.is_activated() && !in_chain => {} // a spare
            other => {
                let data = has_data(&file, len);
                if in_chain || data {
                    report.problems.push(Problem {
                        kind: ProblemKind::Header,
                        path,
                        position: 0,
                        length_bytes: SEGMENT_HEADER_BYTES,
                        message: match other {
                            Err(e) => format!("segment header: {e}"),
                            Ok(h) => format!(
                                "header of segment {} (base {}), file of {len} bytes, in the chain of activated segments",
                                h.segment_id, h.base_offset
                            ),
                        },
                    });
                }
            }
        }
    }
    for pair in chain.windows(2) {
        let (a, b) = (&pair[0].2, &pair[1].2);
        if a.segment_id + 1 != b.segment_id || b.base_offset <= a.base_offset {
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
    report.first_offset = chain.first().map_or(0, |c| c.2.base_offset);
    let stops: Vec<Option<u64>> = (0..chain.len())
        .map(|i| chain.get(i + 1).map(|next| next.2.base_offset))
        .collect();
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
        check_segment(dir, &segment, stop, &mut report);
    }
    Ok(report)
}

fn has_data(file: &File, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut word = [0u8; 8];
    len >= SEGMENT_HEADER_BYTES + 8
        && file.read_exact_at(&mut word, SEGMENT_HEADER_BYTES).is_ok()
        && word != [0u8; 8]
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

/// Scans one segment and compares its index file with what the scan found.
fn check_segment(dir: &Path, segment: &Segment, stop: Option<u64>, report: &mut VerifyReport) {
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
    let index = segment.load_index_file(dir);
    let proven = index
        .as_ref()
        .filter(|_| stop.is_none())
        .map_or(SEGMENT_HEADER_BYTES, |i| i.data_end);
    let outcome = recovery::scan(
        bytes,
        segment.seed,
        ScanStart {
            proven_durable: proven,
            ..ScanStart::from_data_start(segment.base_offset(), stop)
        },
        4096,
    );
    report.records_checked += outcome.records_count;
    report.next_offset = report.next_offset.max(outcome.next_offset);
    let path = segment.path.clone();
    match outcome.tail {
        Tail::Clean | Tail::Full => {}
        Tail::Corrupt { position, reason } => report.problems.push(Problem {
            kind: ProblemKind::Corruption,
            path: path.clone(),
            position,
            length_bytes: 0,
            message: reason,
        }),
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
    let index_path = segment::index_path(dir, segment.id());
    let Ok(index_bytes) = std::fs::read(&index_path) else {
        return;
    };
    let mut index_problem = |message: String| {
        report.problems.push(Problem {
            kind: ProblemKind::Index,
            path: index_path.clone(),
            position: 0,
            length_bytes: 0,
            message: format!("{message}; it is ignored and rebuilt from the data"),
        })
    };
    let file = match IndexFile::decode(&index_bytes, segment.header.segment_bytes) {
        Ok(file) => file,
        Err(e) => return index_problem(format!("damaged index: {e}")),
    };
    if file.segment_id != segment.id()
        || file.nonce != segment.header.nonce
        || file.base_offset != segment.base_offset()
    {
        return index_problem("index belongs to another incarnation of this segment".into());
    }
    if stop.is_some()
        && (file.next_offset != outcome.next_offset || file.data_end != outcome.end_position)
    {
        return index_problem(format!(
            "index says the data ends at byte {} (offset {}), the data ends at byte {} (offset {})",
            file.data_end, file.next_offset, outcome.end_position, outcome.next_offset
        ));
    }
    for entry in &file.entries {
        let at = entry.position as usize;
        let ok = format::decode_frame(&bytes[at..], segment.seed).is_ok_and(
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
    if outcome.end_position >= file.data_end {
        if let Err(why) = recovery::check_checkpoint(bytes, segment.base_offset(), &file) {
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
/// else. Takes the writer lock. With `dry_run`, reports what it would cut.
///
/// # Errors
///
/// [`Error::Corruption`] (refusing to change anything) when the log has damage other
/// than a torn tail; [`Error::Locked`] if a writer has the log open; [`Error::Io`].
pub fn repair(dir: impl AsRef<Path>, dry_run: bool) -> Result<RepairReport> {
    let dir = dir.as_ref();
    let found = verify(dir)?;
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
        let opts = Options::default().recovery(RecoveryPolicy::TruncateTorn);
        let log = Log::open(dir, opts)?;
        report.truncated = log
            .recovery_report()
            .scanned
            .iter()
            .filter_map(|s| s.truncated.clone().map(|t| (s.path.clone(), t)))
            .collect();
        report.removed.extend(log.recovery_report().removed.clone());
        log.close()?;
    }
    Ok(report)
}
