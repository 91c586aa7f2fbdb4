//! Retention: deleting a log's oldest whole segments by total bytes, age and count, never
//! the active one, and (with `keep_consumers`) never what a committed consumer position
//! still needs. A pass is a trim at the end of the last segment it deletes
//! (`trim.rs`): the start recorded first, then the files unlinked. It runs in the
//! background after every rollover, and on demand ([`Log::apply_retention`]).
//!
//! [`Log::apply_retention`]: crate::Log::apply_retention

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::segment::{now_ms, Segment};
use crate::trim;
use crate::writer::Shared;

/// How much of a log to keep: set with [`Options::retention`](crate::Options::retention).
/// Every limit is off by default; retention deletes the oldest whole segments while any
/// limit is exceeded, never the active segment.
///
/// ```
/// use std::time::Duration;
/// use ringlog::{Options, Retention};
///
/// let opts = Options::default().retention(
///     Retention::default()
///         .max_bytes(10 << 30)
///         .max_age(Duration::from_secs(7 * 24 * 3600))
///         .keep_consumers(true),
/// );
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub(crate) max_bytes: Option<u64>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) max_segments: Option<u64>,
    pub(crate) keep_consumers: bool,
}

impl Retention {
    /// Most bytes the log's files may take (segments, their index files, the spare, the
    /// start file and consumer positions): the oldest segments go while the total is
    /// above it, so use stays at most `max_bytes` plus the active segment and its spare.
    /// Default: no limit.
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// A sealed segment goes once its newest record is older than this (by its
    /// timestamp). Default: no limit.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Most segments the log keeps, the active one included (at least 1). Default: no
    /// limit.
    #[must_use]
    pub fn max_segments(mut self, max_segments: u64) -> Self {
        self.max_segments = Some(max_segments.max(1));
        self
    }

    /// Never delete a segment holding records at or after a committed consumer position
    /// (the lowest of them; a consumer that never committed holds nothing back).
    /// Default: false.
    #[must_use]
    pub fn keep_consumers(mut self, keep: bool) -> Self {
        self.keep_consumers = keep;
        self
    }

    /// Whether any limit is set.
    pub(crate) fn is_active(&self) -> bool {
        self.max_bytes.is_some() || self.max_age.is_some() || self.max_segments.is_some()
    }
}

/// Why retention deleted a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetentionReason {
    /// The log's files took more than [`Retention::max_bytes`].
    MaxBytes,
    /// Its newest record was older than [`Retention::max_age`].
    MaxAge,
    /// The log had more than [`Retention::max_segments`] segments.
    MaxSegments,
}

/// A segment retention deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedSegment {
    /// Its id (file name).
    pub segment_id: u64,
    /// Its first offset.
    pub base_offset: u64,
    /// The offset after its last record.
    pub end_offset: u64,
    /// Bytes its files took.
    pub bytes: u64,
    /// The limit that removed it (the first that applied).
    pub reason: RetentionReason,
}

/// What a retention pass did ([`Log::apply_retention`](crate::Log::apply_retention)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted, oldest first.
    pub removed: Vec<RemovedSegment>,
    /// The log's first offset afterwards.
    pub first_offset: u64,
    /// Bytes of the log's files before and after the pass.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// When a limit was exceeded but a committed consumer position kept the next
    /// segment: that position.
    pub kept_for_consumers: Option<u64>,
}

impl Shared {
    /// One retention pass under the log's options (see [`Retention`]).
    pub(crate) fn apply_retention(&self) -> Result<RetentionReport> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let _cutting = self.cutting.lock();
        self.apply_retention_locked()
    }

    /// The housekeeper's pass: skipped when a trim or truncation is running (it may be
    /// waiting for the housekeeper to prepare a segment); the next rollover tries again.
    pub(crate) fn apply_retention_in_background(&self) {
        if let Some(_cutting) = self.cutting.try_lock() {
            // Best effort: the next rollover (or `apply_retention`) tries again.
            let _ = self.apply_retention_locked();
        }
    }

    fn apply_retention_locked(&self) -> Result<RetentionReport> {
        let policy = self.opts.retention.clone();
        let bytes_before = self.files_bytes()?;
        let mut report = RetentionReport {
            first_offset: self.first_offset.load(SeqCst),
            bytes_before,
            bytes_after: bytes_before,
            ..RetentionReport::default()
        };
        if !policy.is_active() {
            return Ok(report);
        }
        let floor = if policy.keep_consumers {
            crate::consumer::committed_floor(&self.dir)?
        } else {
            None
        };
        let segments = self.segments.read().clone();
        let count = segments.len() as u64;
        let now = now_ms();
        let mut remaining = bytes_before;
        for (i, segment) in segments.iter().enumerate() {
            // Never the active segment.
            let Some(end) = *segment.end_offset.read() else {
                break;
            };
            let kept = count - i as u64;
            let reason = if policy.max_segments.is_some_and(|k| kept > k) {
                RetentionReason::MaxSegments
            } else if policy.max_bytes.is_some_and(|m| remaining > m) {
                RetentionReason::MaxBytes
            } else if policy.max_age.is_some_and(|age| {
                self.newest_ms(segment, end)
                    .is_some_and(|t| now.saturating_sub(t) > age.as_millis() as u64)
            }) {
                RetentionReason::MaxAge
            } else {
                break;
            };
            if let Some(floor) = floor.filter(|&f| end > f) {
                report.kept_for_consumers = Some(floor);
                break;
            }
            let bytes = segment_files_bytes(&self.dir, segment);
            remaining = remaining.saturating_sub(bytes);
            report.removed.push(RemovedSegment {
                segment_id: segment.id(),
                base_offset: segment.base_offset(),
                end_offset: end,
                bytes,
                reason,
            });
        }
        // The list's references go first: a removed segment nobody else holds can be
        // recycled (`recycle.rs`).
        drop(segments);
        let Some(last) = report.removed.last() else {
            return Ok(report);
        };
        let start = last.end_offset;
        if start > self.first_offset.load(SeqCst) {
            trim::write_start(&self.dir, start)?;
            self.first_offset.store(start, SeqCst);
            self.cuts_trimmed();
        }
        self.remove_segments_below(start)?;
        report.first_offset = self.first_offset.load(SeqCst);
        report.bytes_after = self.files_bytes()?;
        crate::telemetry::retention_removed(
            &self.dir,
            report.removed.len() as u64,
            report.removed.iter().map(|r| r.bytes).sum(),
            report.first_offset,
        );
        Ok(report)
    }

    /// The timestamp of the newest record of a sealed segment ending at `end`, if it
    /// reads.
    fn newest_ms(&self, segment: &Arc<Segment>, end: u64) -> Option<u64> {
        let last = end.checked_sub(1)?;
        self.find(segment, last).ok().map(|(r, _)| r.timestamp_ms())
    }

    /// Bytes of every file in the log's directory (consumers included).
    pub(crate) fn files_bytes(&self) -> Result<u64> {
        let mut total = 0;
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| Error::io("read directory", &self.dir, e))?;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                total += meta.len();
            } else if meta.is_dir() {
                if let Ok(inner) = std::fs::read_dir(entry.path()) {
                    total += inner
                        .flatten()
                        .filter_map(|e| e.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum::<u64>();
                }
            }
        }
        Ok(total)
    }
}

/// Bytes of a segment's files (the segment and its index file).
fn segment_files_bytes(dir: &std::path::Path, segment: &Segment) -> u64 {
    let index =
        std::fs::metadata(crate::segment::index_path(dir, segment.id())).map_or(0, |m| m.len());
    segment.header.segment_bytes + index
}
