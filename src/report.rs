//! What `stats()` and `recovery_report()` return.

use std::path::PathBuf;

use crate::io::BackendKind;

/// A snapshot of the log's state and counters since open.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The I/O backend in use.
    pub backend: BackendKind,
    /// Why `IoBackend::Auto` fell back to `pwritev`, if it did.
    pub backend_fallback_reason: Option<String>,
    /// Activated segments (sealed plus the active one).
    pub segments_count: u64,
    /// Bytes of record and marker frames written since open.
    pub bytes_written: u64,
    /// Bytes the segment files occupy on disk (spare excluded).
    pub segments_bytes: u64,
    /// Records in the log: `next_offset - first_offset`.
    pub records_count: u64,
    /// First offset in the log.
    pub first_offset: u64,
    /// Offset the next append gets.
    pub next_offset: u64,
    /// Every offset below this is durable.
    pub durable_offset: u64,
    /// `fdatasync` calls since open.
    pub fsyncs_count: u64,
    /// Batch writes since open.
    pub batches_count: u64,
    /// Records made durable per `fdatasync`, on average since open.
    pub records_per_fsync: f64,
    /// Segments deleted by a trim, truncation or retention that a reader still maps
    /// (a [`Record`](crate::Record) of theirs is alive): their disk space returns when
    /// the last such reference drops.
    pub pending_release_segments: u64,
    /// The bytes of those segments.
    pub pending_release_bytes: u64,
    /// Segments prepared since open from the file of a removed one, instead of a new
    /// zero-filled file ([`Options::recycle_segments`](crate::Options::recycle_segments)).
    pub recycled_segments_count: u64,
    /// Removed segments' files waiting to be reused (`<id>.free`).
    pub free_segment_files: u64,
}

/// What opening the log found on disk and did about it.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Whether the log was closed cleanly last time (the active segment's checkpoint said
    /// so, and its end was confirmed).
    pub clean_shutdown: bool,
    /// Why the active segment's checkpoint (its index file) was not used, when it was
    /// there, intact, and disagreed with the data: the segment was then scanned from its
    /// start, and the checkpoint rewritten (by a writer).
    pub checkpoint_rejected: Option<String>,
    /// Every segment whose records were scanned at open (sealed segments are not scanned:
    /// their persisted indexes are loaded lazily and checked against the data).
    pub scanned: Vec<SegmentScan>,
    /// Files removed or rewritten, and why (half-prepared spares, stale temporaries).
    pub removed: Vec<(PathBuf, String)>,
}

/// One scanned segment.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// Segment id.
    pub segment_id: u64,
    /// Its file.
    pub path: PathBuf,
    /// Offset of its first record.
    pub base_offset: u64,
    /// Where the scan started (a checkpoint, or the data start).
    pub scan_start_position: u64,
    /// End of valid data after recovery.
    pub data_end_position: u64,
    /// Records read by the scan.
    pub records_scanned: u64,
    /// Offset the next record gets.
    pub next_offset: u64,
    /// What was cut, if anything.
    pub truncated: Option<Truncation>,
}

/// A torn tail that recovery zeroed.
#[derive(Debug, Clone)]
pub struct Truncation {
    /// First byte zeroed.
    pub position: u64,
    /// Bytes zeroed.
    pub bytes: u64,
    /// Why the data there was not valid.
    pub reason: String,
}

/// One segment of the log, as [`Log::segments`](crate::Log::segments) describes it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Segment id (its file name).
    pub segment_id: u64,
    /// Its file.
    pub path: PathBuf,
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset after its last record.
    pub end_offset: u64,
    /// Records it holds.
    pub records_count: u64,
    /// Bytes of its file in use: header and frames.
    pub used_bytes: u64,
    /// Size of its file.
    pub segment_bytes: u64,
    /// Sealed (full, read-only) rather than active.
    pub sealed: bool,
    /// Entries of its sparse index.
    pub index_entries: u64,
    /// Milliseconds since the Unix epoch when it was prepared.
    pub created_ms: u64,
}
