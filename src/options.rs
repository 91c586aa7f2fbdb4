//! Options for opening a log.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::format;

/// Smallest accepted `index_interval_bytes`.
pub(crate) const MIN_INDEX_INTERVAL_BYTES: u64 = 64;
/// Largest accepted `index_interval_bytes`: the check of a checkpoint at open relies on
/// it (docs/design.md 4.3).
pub(crate) const MAX_INDEX_INTERVAL_BYTES: u64 = 1 << 20;

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// An append returns only after the `fdatasync` that covers it. Appends from many
    /// threads share flushes (group commit). Readers see only durable records.
    Sync,
    /// Appends return once the record is staged in this process's memory, not yet in
    /// the file: the writer thread writes staged records soon after (typically within
    /// milliseconds), and a flush runs at least this often. Until the write, a crash of
    /// the process (`kill -9`, `abort()`) loses the record; until the flush, a crash of
    /// the machine or a power cut does. Readers see only durable records (written ones
    /// with [`Options::read_unflushed`]).
    Interval(Duration),
    /// Appends return once the record is staged in this process's memory, not yet in
    /// the file: the writer thread writes staged records soon after (typically within
    /// milliseconds), and nothing waits for a flush until [`Log::sync`](crate::Log::sync)
    /// or close. Until the write, a crash of the process (`kill -9`, `abort()`) loses the
    /// record; until a flush, a crash of the machine or a power cut does. The log still
    /// flushes in the background every few MiB written (4 MiB with the default 64 MiB
    /// segments), off the appenders' path, so that recovery after a crash has little to
    /// scan; `durable_offset()` moves with those flushes. Readers see records once they
    /// are written, so `read(offset)` right after `append` can fail with
    /// [`Error::OffsetOutOfRange`] for those few milliseconds; after
    /// [`Log::sync`](crate::Log::sync) every record appended before it is readable.
    None,
}

/// What opening a log does with a torn tail: incomplete or checksum-failing data at the
/// end of what was written, which a crash can leave behind. Damage to durable data in the
/// middle of the log is an error under every policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPolicy {
    /// Zero the torn tail, sync, report it in [`Log::recovery_report`](crate::Log::recovery_report), and open.
    TruncateTorn,
    /// Refuse to open: [`Error::Corruption`] names the segment and position.
    Strict,
}

/// How writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring when it can be set up and probed, `pwritev` otherwise.
    Auto,
    /// io_uring, or fail to open.
    Uring,
    /// `pwritev` + `fdatasync`.
    Pwrite,
}

/// How segment files are given their blocks before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocate {
    /// Write zeros over the whole file once, off the hot path. Later flushes then only
    /// write data blocks (no extent conversion), which is what makes `fdatasync` cheap.
    ZeroFill,
    /// `fallocate`: fast to prepare and writes each byte once, but every flush converts
    /// unwritten extents (a durable append costs more). Power cuts keep every
    /// acknowledged record (the losses once seen were an artifact of the test's
    /// shutdown ioctl racing a flush: docs/design.md 3.2).
    Fallocate,
}

/// Options for [`Log::open`](crate::Log::open). A builder: every setter takes and returns
/// `Self`.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) segment_bytes: Option<u64>,
    pub(crate) durability: Durability,
    pub(crate) recovery: RecoveryPolicy,
    pub(crate) io: IoBackend,
    pub(crate) max_record_bytes: Option<u64>,
    pub(crate) index_interval_bytes: u64,
    pub(crate) preallocate: Option<Preallocate>,
    pub(crate) read_unflushed: bool,
    pub(crate) max_batch_bytes: u64,
    pub(crate) segment_growth: Option<bool>,
    pub(crate) retention: crate::Retention,
    pub(crate) recycle_segments: bool,
    pub(crate) mapped_writes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: None,
            durability: Durability::Sync,
            recovery: RecoveryPolicy::TruncateTorn,
            io: IoBackend::Auto,
            max_record_bytes: None,
            index_interval_bytes: 4 << 10,
            preallocate: None,
            read_unflushed: false,
            max_batch_bytes: 4 << 20,
            segment_growth: None,
            retention: crate::Retention::default(),
            recycle_segments: false,
            mapped_writes: false,
        }
    }
}

impl Options {
    /// How much of the log to keep: oldest whole segments are deleted by total bytes,
    /// age and count, in the background after each rollover (see [`crate::Retention`]
    /// and [`Log::apply_retention`](crate::Log::apply_retention)). Default: keep
    /// everything. Not persisted: each open (and, in a store, the store's options or
    /// `topic_with`'s) says it.
    #[must_use]
    pub fn retention(mut self, retention: crate::Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Reuse the files of segments that retention or a trim removed as the log's next
    /// segments, instead of deleting them and zero-filling new ones. Default `false`.
    ///
    /// A recycled file keeps its blocks, so preparing it costs one header write and a
    /// sync instead of writing the whole file (and a full disk cannot stop a rollover).
    /// Its earlier records stay in it until overwritten; they are checksummed under the
    /// earlier segment's nonce and can never be read as new ones (docs/design.md 4.2).
    /// A file is recycled only when nothing may still read it: no [`Record`] of this
    /// process holds it, no read-only handle (in any process) has the log open, no hard
    /// link to it exists (a backup), and it has the log's full segment size; otherwise it
    /// is deleted as usual. At most two such files wait for reuse, named `<id>.free`, and
    /// they count toward [`Retention::max_bytes`](crate::Retention::max_bytes). When to
    /// use it: docs/design.md 4.9.
    ///
    /// [`Record`]: crate::Record
    #[must_use]
    pub fn recycle_segments(mut self, recycle: bool) -> Self {
        self.recycle_segments = recycle;
        self
    }

    /// Size of each new segment file on disk, header included: any multiple of 4 KiB from
    /// 64 KiB to 1 GiB. Default: the size of the existing log's active segment, or 64 MiB
    /// for a new log.
    pub fn segment_bytes(mut self, segment_bytes: u64) -> Self {
        self.segment_bytes = Some(segment_bytes);
        self
    }

    /// The segment size new segments get.
    pub(crate) fn segment_bytes_effective(&self) -> u64 {
        self.segment_bytes.unwrap_or(64 << 20)
    }

    /// Unless a size was set, new segments take the size of the existing log's.
    pub(crate) fn inherit_segment_bytes(mut self, existing: u64) -> Self {
        self.segment_bytes.get_or_insert(existing);
        self
    }

    /// Under [`Durability::None`] and [`Durability::Interval`], producers copy their
    /// frames straight into a shared writable mapping of the active segment instead of a
    /// staging buffer the writer thread writes later: an append that returned is in the
    /// page cache at once, so it survives a `kill -9` of the process and other processes
    /// can read it; flushes stay `fdatasync`. A process killed in the middle of a copy
    /// leaves a torn tail (cut at the next open under [`RecoveryPolicy::TruncateTorn`],
    /// refused under `Strict`). No effect under [`Durability::Sync`]. Default `false`
    /// (docs/design.md 3.4). Not persisted.
    #[must_use]
    pub fn mapped_writes(mut self, mapped_writes: bool) -> Self {
        self.mapped_writes = mapped_writes;
        self
    }

    /// Whether producers write through the segment mapping.
    pub(crate) fn writes_mapped(&self) -> bool {
        self.mapped_writes && self.durability != Durability::Sync
    }

    /// When appends are durable. Default [`Durability::Sync`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// What opening does with a torn tail. Default [`RecoveryPolicy::TruncateTorn`].
    pub fn recovery(mut self, recovery: RecoveryPolicy) -> Self {
        self.recovery = recovery;
        self
    }

    /// Which I/O backend writes. Default [`IoBackend::Auto`].
    pub fn io(mut self, io: IoBackend) -> Self {
        self.io = io;
        self
    }

    /// Largest accepted record payload. Default: 4 MiB, or what fits in one segment
    /// after its header and a commit marker if that is less. At most that room.
    pub fn max_record_bytes(mut self, max_record_bytes: u64) -> Self {
        self.max_record_bytes = Some(max_record_bytes);
        self
    }

    /// Payload bytes one record can hold in a segment of `segment_bytes`.
    fn record_room(&self) -> u64 {
        self.segment_bytes_effective()
            - format::SEGMENT_HEADER_BYTES
            - format::MARKER_BYTES
            - format::FRAME_HEADER_BYTES
            - format::FRAME_ALIGN_BYTES
    }

    /// The largest record payload a log opened with these options takes: the
    /// [`Options::max_record_bytes`] setting, else 4 MiB or what fits in one segment after
    /// its header and a commit marker, if that is less (65,408 bytes with 64 KiB
    /// segments). A tool can check a size against it before allocating anything.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] when the options are invalid (as [`Log::open`](crate::Log::open)
    /// would refuse them).
    pub fn record_limit_bytes(&self) -> Result<u64> {
        self.validate()?;
        Ok(self.max_record_bytes_effective())
    }

    /// The effective record size limit.
    pub(crate) fn max_record_bytes_effective(&self) -> u64 {
        self.max_record_bytes
            .unwrap_or_else(|| self.record_room().min(4 << 20))
    }

    /// Distance in bytes between sparse index entries. Default 4 KiB; 64 B to 1 MiB.
    pub fn index_interval_bytes(mut self, index_interval_bytes: u64) -> Self {
        self.index_interval_bytes = index_interval_bytes;
        self
    }

    /// How segments get their blocks. Default [`Preallocate::Fallocate`], chosen by
    /// measurement (docs/design.md 3.2): a zero-filled segment's zeros compete with the
    /// commits' flushes for the disk (durable appends stalled for tens of milliseconds
    /// around rollovers) and write every byte twice; `ZeroFill` makes each flush a
    /// little cheaper (no extent conversion) for small durable records.
    pub fn preallocate(mut self, preallocate: Preallocate) -> Self {
        self.preallocate = Some(preallocate);
        self
    }

    /// How new segments get their blocks.
    pub(crate) fn preallocate_effective(&self) -> Preallocate {
        self.preallocate.unwrap_or(Preallocate::Fallocate)
    }

    /// Let readers see records that are written but not yet durable (a crash may take
    /// them back). Default `false`; always the case under [`Durability::None`].
    pub fn read_unflushed(mut self, read_unflushed: bool) -> Self {
        self.read_unflushed = read_unflushed;
        self
    }

    /// Most bytes gathered into one write before producers wait for the writer.
    /// Default 4 MiB; at least 64 KiB.
    pub fn max_batch_bytes(mut self, max_batch_bytes: u64) -> Self {
        self.max_batch_bytes = max_batch_bytes;
        self
    }

    /// Whether a new log starts with small segments that grow: the first is 64 KiB, each
    /// next one 1.5 times the size of the one before (rounded up to 4 KiB), up to
    /// [`segment_bytes`](Options::segment_bytes) (a batch too large for that size gets a
    /// segment large enough). Segments stay preallocated and fixed-size once created.
    /// So a log holding a few records takes 64 KiB of disk, not `segment_bytes` plus a
    /// spare, and a small log never takes more than about 1.8 times its data (the next
    /// segment is prepared once the active one is half full, until they reach full
    /// size). Default: on for a [`Store`](crate::Store)'s topics, and for
    /// [`Log::open`](crate::Log::open) unless `segment_bytes` is set (then every
    /// segment has that size, as before).
    pub fn segment_growth(mut self, segment_growth: bool) -> Self {
        self.segment_growth = Some(segment_growth);
        self
    }

    /// Whether new segments grow (see [`Options::segment_growth`]).
    pub(crate) fn grows_segments(&self) -> bool {
        self.segment_growth.unwrap_or(self.segment_bytes.is_none())
    }

    /// Whether the segment after an active one of `active_bytes` is prepared as soon as
    /// that one becomes active (full-size segments: the rollover never waits for it), or
    /// only once it is half full (growing segments: a small log holds no big spare).
    pub(crate) fn spare_at_activation(&self, active_bytes: u64) -> bool {
        !self.grows_segments() || active_bytes >= self.segment_bytes_effective()
    }

    /// The size of a new log's first segment.
    pub(crate) fn first_segment_bytes(&self) -> u64 {
        let target = self.segment_bytes_effective();
        if self.grows_segments() {
            format::MIN_SEGMENT_BYTES.min(target)
        } else {
            target
        }
    }

    /// The size of the segment after one of `previous_bytes`, which must hold at least
    /// `needed_bytes` (header, marker and frames of the batch waiting for it).
    pub(crate) fn next_segment_bytes(&self, previous_bytes: u64, needed_bytes: u64) -> u64 {
        let target = self.segment_bytes_effective();
        if !self.grows_segments() {
            return target;
        }
        // 1.5x, not 2x: the last segment (and the spare prepared when it is half full)
        // is then at most about as large as everything before it, so disk use stays
        // within ~1.8x of the data at every size (2x growth reached 2.7x at half full).
        let grow = |bytes: u64| {
            bytes
                .saturating_add(bytes / 2)
                .next_multiple_of(format::SEGMENT_ALIGN_BYTES)
        };
        let mut bytes = grow(previous_bytes).max(format::MIN_SEGMENT_BYTES);
        while bytes < needed_bytes && bytes < target {
            bytes = grow(bytes);
        }
        bytes.min(target)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let segment_bytes = self.segment_bytes_effective();
        if !format::valid_segment_bytes(segment_bytes) {
            return Err(Error::InvalidOptions(format!(
                "segment_bytes {segment_bytes} must be a multiple of 4 KiB from 64 KiB to 1 GiB"
            )));
        }
        let room = self.record_room();
        let max_record_bytes = self.max_record_bytes_effective();
        if max_record_bytes == 0 || max_record_bytes > room {
            return Err(Error::InvalidOptions(format!(
                "max_record_bytes {max_record_bytes} must be from 1 to {room} for segments of {segment_bytes} bytes"
            )));
        }
        if !(MIN_INDEX_INTERVAL_BYTES..=MAX_INDEX_INTERVAL_BYTES)
            .contains(&self.index_interval_bytes)
        {
            return Err(Error::InvalidOptions(format!(
                "index_interval_bytes {} must be from 64 B to 1 MiB",
                self.index_interval_bytes
            )));
        }
        if self.max_batch_bytes < 64 << 10 {
            return Err(Error::InvalidOptions(format!(
                "max_batch_bytes {} must be at least 64 KiB",
                self.max_batch_bytes
            )));
        }
        if let Durability::Interval(interval) = self.durability {
            if interval.is_zero() {
                return Err(Error::InvalidOptions(
                    "Durability::Interval needs a non-zero interval; use Durability::Sync".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether readers may see written-but-not-durable records.
    pub(crate) fn readers_see_written(&self) -> bool {
        self.read_unflushed || self.durability == Durability::None
    }
}
