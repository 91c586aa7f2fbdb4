//! The public handle.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::follow::Follower;
use crate::io::{self, FaultPlan};
use crate::open::Access;
use crate::options::{Durability, Options};
use crate::reader::{Iter, Record, RecordRef};
use crate::report::{RecoveryReport, SegmentInfo, Stats};
use crate::writer::{Shared, Start};

/// Name of the lock file inside a log directory.
const LOCK_FILE: &str = "ringlog.lock";

/// How far ahead of the wall clock [`Log::append_at`] accepts a timestamp: a day.
const APPEND_AT_AHEAD_MAX_MS: u64 = 24 * 60 * 60 * 1000;

/// A durable, append-only, segmented log: one directory opened with [`Log::open`], or a
/// topic of a [`Store`](crate::Store).
///
/// `Log` is a cheap handle: `Clone + Send + Sync`. Clone it (or share it in an `Arc`)
/// between any number of producer and reader threads. For a log opened with
/// [`Log::open`], dropping the last handle closes the log; a topic's handles close
/// nothing when dropped (the store owns the topic: see [`Log::close`]).
#[derive(Clone)]
pub struct Log {
    core: Arc<LogCore>,
}

/// What every handle of one open log shares.
pub(crate) struct LogCore {
    shared: Arc<Shared>,
    /// The engine this log started for itself (`Log::open`), stopped at close; `None`
    /// for a read-only log and for a store's topic (the store's engine serves it).
    own_engine: Option<Arc<Engine>>,
    /// The directory's writer lock (`None` for read-only logs and store topics, whose
    /// store holds the lock).
    lock: Mutex<Option<File>>,
    report: RecoveryReport,
    closed: AtomicBool,
    /// Held for the whole of a close or abandon: a second caller (another handle, the
    /// store reopening or removing the topic, the store closing) waits for the first to
    /// finish, so nothing opens, removes or unlocks the directory while the old instance
    /// still writes to it.
    closing: crate::sync::Mutex<()>,
    /// The topic was removed from its store: every later call is [`Error::Closed`].
    removed: AtomicBool,
    /// The named consumers that have handles (see [`Log::consumer`]).
    consumers: crate::consumer::Registry,
    /// `Log::in_memory`: its directory, removed after the close (fields drop after
    /// `Drop::drop`).
    ephemeral: parking_lot::Mutex<Option<crate::memory::EphemeralDir>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.core.shared.dir)
            .field("first_offset", &self.first_offset())
            .field("next_offset", &self.next_offset())
            .field("durable_offset", &self.durable_offset())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens the log in `dir`, creating the directory and an empty log if needed, and
    /// recovers it (see [`RecoveryPolicy`](crate::RecoveryPolicy)). Takes the directory's
    /// writer lock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`], [`Error::Locked`] if another writer has the directory,
    /// [`Error::Corruption`] for damaged durable data (or a torn tail under `Strict`),
    /// [`Error::Io`].
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        Log::open_with_faults(dir, opts, FaultPlan::default())
    }

    /// Like [`Log::open`], with planned I/O failures injected into the writer's backend.
    #[doc(hidden)]
    pub fn open_with_faults(
        dir: impl AsRef<Path>,
        opts: Options,
        faults: FaultPlan,
    ) -> Result<Log> {
        opts.validate()?;
        let (backend, backend_fallback) = io::select(opts.io).map_err(|e| {
            Error::InvalidOptions(format!(
                "IoBackend::Uring was requested but io_uring cannot be used: {e}"
            ))
        })?;
        Log::open_inner(dir.as_ref(), opts, faults.wrap(backend), backend_fallback)
    }

    /// Like [`Log::open`], with the writer's (and recovery's) I/O going through
    /// `backend`: a simulated disk for crash tests. Not a stable API.
    #[doc(hidden)]
    pub fn open_with_backend(
        dir: impl AsRef<Path>,
        opts: Options,
        backend: Box<dyn io::Backend>,
    ) -> Result<Log> {
        opts.validate()?;
        Log::open_inner(dir.as_ref(), opts, backend, None)
    }

    fn open_inner(
        dir: &Path,
        opts: Options,
        backend: Box<dyn io::Backend>,
        backend_fallback: Option<String>,
    ) -> Result<Log> {
        crate::store::refuse_store_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let lock = lock_dir(dir)?;
        Log::start(
            dir,
            opts,
            backend,
            (None, backend_fallback),
            Some(lock),
            None,
        )
    }

    /// Opens a store's topic: its directory exists, the store holds the lock, and the
    /// store's `engine` serves it, its writes going through `backend`.
    /// `reported` is the store's backend and why it fell back, if it did.
    pub(crate) fn open_topic(
        dir: &Path,
        opts: Options,
        backend: Box<dyn io::Backend>,
        reported: (io::BackendKind, Option<String>),
        engine: Arc<Engine>,
    ) -> Result<Log> {
        opts.validate()?;
        let (kind, fallback) = reported;
        Log::start(
            dir,
            opts,
            backend,
            (Some(kind), fallback),
            None,
            Some(engine),
        )
    }

    /// Recovers the log in `dir` and has `engine` serve it (an engine of its own when
    /// `None`); `lock` is kept until close.
    fn start(
        dir: &Path,
        opts: Options,
        mut backend: Box<dyn io::Backend>,
        (backend_kind, backend_fallback): (Option<io::BackendKind>, Option<String>),
        lock: Option<File>,
        engine: Option<Arc<Engine>>,
    ) -> Result<Log> {
        let dir = dir.to_path_buf();
        let _span = crate::telemetry::open_span(&dir);
        let recovered = crate::open::recover(&dir, &opts, Access::Write, backend.as_mut())?;
        let active = recovered.segments.last().map(|s| s.header);
        // Unless a size was given, new segments take the size of the active one; growing
        // segments grow toward `segment_bytes` (64 MiB unless set) instead. With default
        // options a log grows if its active segment says it was growing (a new log
        // does); an existing one made with a fixed size keeps it.
        let undecided = opts.segment_growth.is_none() && opts.segment_bytes.is_none();
        let opts = match active {
            Some(h) if undecided && !h.grows => opts.inherit_segment_bytes(h.segment_bytes),
            Some(h) if !opts.grows_segments() => opts.inherit_segment_bytes(h.segment_bytes),
            // A log made with larger segments than the default keeps their size.
            Some(h) if h.segment_bytes > opts.segment_bytes_effective() => {
                opts.inherit_segment_bytes(h.segment_bytes)
            }
            _ => opts,
        };
        opts.validate()?;
        let (engine, own_engine) = match engine {
            Some(engine) => (engine, None),
            None => {
                let engine = Engine::start(None)?;
                (engine.clone(), Some(engine))
            }
        };
        let control_dir = dir.clone();
        let shared = Shared::new(
            dir,
            opts,
            Start {
                segments: recovered.segments,
                active: recovered.active,
                spare: recovered.spare,
                leftovers: recovered.leftovers,
                free_files: recovered.free_files,
                backend,
                backend_kind,
                backend_fallback,
                read_only: false,
                first_offset: recovered.first_offset,
            },
            Some(engine),
        );
        // Readers in other processes wait on it instead of polling (`control.rs`).
        if let Some(control) = crate::control::Control::open_writer(&control_dir) {
            shared.marks.attach_control(control);
        }
        if let Some(start) = recovered.restart_at {
            // A trim past the end that a crash interrupted: the log continues there.
            if let Err(e) = shared.trim_before(start) {
                shared.abandon();
                return Err(e);
            }
        }
        Ok(Log::from_core(LogCore {
            shared,
            own_engine,
            lock: Mutex::new(lock),
            report: recovered.report,
            closed: AtomicBool::new(false),
            closing: crate::sync::Mutex::new(()),
            removed: AtomicBool::new(false),
            consumers: Default::default(),
            ephemeral: Default::default(),
        }))
    }

    /// Opens the log in `dir` for reading only, beside a writer in this or another
    /// process (no lock is taken and nothing on disk changes). Readers see the records
    /// found valid at open; [`Log::refresh`] looks for newer ones. A torn tail simply ends
    /// the readable data (it may be a batch the writer is still writing); damage to
    /// durable data is still an error. Appends fail with [`Error::ReadOnly`].
    ///
    /// # Errors
    ///
    /// [`Error::NotALog`] when `dir` holds no log (no segment files),
    /// [`Error::InvalidOptions`] for invalid `opts`, [`Error::Corruption`], [`Error::Io`].
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // Before anything is read: while it is held, the writer recycles no segment
        // file this handle may map (`recycle.rs`).
        let lease = crate::recycle::ReaderLease::take(&dir);
        let mut no_writes = io::PwriteBackend::default();
        let recovered = crate::open::recover(&dir, &opts, Access::ReadOnly, &mut no_writes)?;
        let shared = Shared::new(
            dir,
            opts.read_unflushed(true),
            Start {
                segments: recovered.segments,
                active: recovered.active,
                spare: None,
                leftovers: Vec::new(),
                free_files: Vec::new(),
                backend: Box::new(io::PwriteBackend::default()),
                backend_kind: None,
                backend_fallback: None,
                read_only: true,
                first_offset: recovered.first_offset,
            },
            None,
        );
        Ok(Log::from_core(LogCore {
            shared,
            own_engine: None,
            // Released at close, with the handle.
            lock: Mutex::new(lease.map(crate::recycle::ReaderLease::into_file)),
            report: recovered.report,
            closed: AtomicBool::new(false),
            closing: crate::sync::Mutex::new(()),
            removed: AtomicBool::new(false),
            consumers: Default::default(),
            ephemeral: Default::default(),
        }))
    }

    /// For a log opened read-only: looks for records (and segments) written since open
    /// or the last refresh, and returns the new read watermark. On a writable log it
    /// just returns the read watermark.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::Corruption`] while reading new segments.
    pub fn refresh(&self) -> Result<u64> {
        if self.core.shared.read_only {
            self.core.shared.refresh()
        } else {
            Ok(self.core.shared.visible_offset())
        }
    }

    /// Whether this handle was opened with [`Log::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.core.shared.read_only
    }

    /// Describes every segment: offsets, records, bytes used, sealed or active, index
    /// entries. Loads sealed segments' indexes if they were not loaded yet.
    ///
    /// The active segment's records (and end offset) and used bytes are taken at one
    /// moment, from the same watermark: the records written so far and the position
    /// they end at where readers see written records ([`Durability::None`](crate::Durability::None),
    /// [`Options::read_unflushed`](crate::Options::read_unflushed), a read-only handle),
    /// else the records the writer has flushed and the position they end at. A background
    /// flush can make a few more records readable before the writer takes note of it.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] if a sealed segment's index must be rebuilt and its data is
    /// damaged; [`Error::Io`].
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        // The segment list and the active segment's (end offset, end position) under the
        // lock that moves both: the reader's cursor for a read-only handle, the commit
        // lock for a writer (a rollover swaps the active segment under it).
        let (segments, (active_end_offset, active_end_position)) = if self.core.shared.read_only {
            let staging = self.core.shared.staging.lock();
            let (_, position, next_offset) = staging.cursor();
            (
                self.core.shared.segments.read().clone(),
                (next_offset, position),
            )
        } else {
            let c = self.core.shared.commit.lock();
            let end = if self.core.shared.opts.readers_see_written() {
                (c.written_offset, c.written_position)
            } else {
                (c.durable_offset, c.durable_position)
            };
            (self.core.shared.segments.read().clone(), end)
        };
        let mut out = Vec::with_capacity(segments.len());
        for segment in &segments {
            let end_offset = *segment.end_offset.read();
            let (end_offset, used_bytes) = match end_offset {
                Some(end) => {
                    self.core.shared.ensure_index(segment, false)?;
                    let data_end = segment.index.read().data_end;
                    (end, data_end.unwrap_or(segment.header.segment_bytes))
                }
                None => (active_end_offset, active_end_position),
            };
            out.push(SegmentInfo {
                segment_id: segment.id(),
                path: segment.path.clone(),
                base_offset: segment.base_offset(),
                end_offset,
                records_count: end_offset.saturating_sub(segment.base_offset()),
                used_bytes,
                segment_bytes: segment.header.segment_bytes,
                sealed: segment.end_offset.read().is_some(),
                index_entries: segment.index.read().entries.len() as u64,
                created_ms: segment.header.created_ms,
            });
        }
        Ok(out)
    }

    /// Appends one record and returns its offset. Under [`Durability::Sync`] it returns
    /// once the record is durable; otherwise once it is staged.
    ///
    /// # Errors
    ///
    /// [`Error::RecordTooLarge`], [`Error::Poisoned`] after an I/O failure,
    /// [`Error::Closed`], [`Error::Io`] when no new segment could be prepared.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        self.append_batch(&[payload]).map(|range| range.start)
    }

    /// Appends several records atomically: they get consecutive offsets, go into the same
    /// segment and the same write, and after a crash either all of them or none survive.
    ///
    /// # Errors
    ///
    /// As [`Log::append`]; also [`Error::RecordTooLarge`] when the batch does not fit in
    /// one segment.
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>> {
        self.check_not_removed()?;
        let (range, writer_idle) = self.core.shared.stage(payloads)?;
        if range.is_empty() {
            return Ok(range);
        }
        if self.core.shared.opts.durability == Durability::Sync {
            self.core.shared.kick(writer_idle, true)?;
            self.core.shared.wait_durable(range.end - 1)?;
        } else {
            self.core.shared.kick(writer_idle, false)?;
        }
        Ok(range)
    }

    /// Stages one record and returns at once with a ticket that resolves to its offset
    /// when the append is done (durable under [`Durability::Sync`]). Wait on it with
    /// [`AppendTicket::wait`] or `.await` it (no runtime needed).
    ///
    /// # Errors
    ///
    /// As [`Log::append`], for what can fail before the write.
    pub fn submit(&self, payload: &[u8]) -> Result<AppendTicket> {
        self.check_not_removed()?;
        let (range, writer_idle) = self.core.shared.stage(&[payload])?;
        self.core.shared.kick(writer_idle, false)?;
        Ok(AppendTicket {
            shared: self.core.shared.clone(),
            offset: range.start,
        })
    }

    /// Makes every record appended so far durable, whatever the durability mode.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if a write or flush failed (now or earlier), [`Error::Closed`].
    pub fn sync(&self) -> Result<()> {
        self.check_not_removed()?;
        if self.core.shared.read_only {
            return Err(Error::ReadOnly);
        }
        if self.core.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        let result = {
            let mut committer = self.core.shared.commit.lock();
            self.core.shared.commit_pending(&mut committer, true)
        };
        self.core.shared.kick(true, false)?;
        result
    }

    /// Reads the record at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] outside `first_offset()..` the read watermark;
    /// [`Error::Corruption`] if its bytes fail their checksum.
    pub fn read(&self, offset: u64) -> Result<Record> {
        self.check_not_removed()?;
        self.core.shared.read(offset)
    }

    /// Iterates records from `from` in offset order, up to the read watermark. An
    /// out-of-range `from` yields one [`Error::OffsetOutOfRange`].
    pub fn iter(&self, from: u64) -> Iter {
        if let Err(e) = self.check_not_removed() {
            return Iter::failed_with(self.core.shared.clone(), e);
        }
        Iter::new(self.core.shared.clone(), from)
    }

    /// Calls `visit` on each record from `from` in offset order, up to the read
    /// watermark, until it returns `false`; returns the offset after the last record
    /// visited. The records are borrowed from the segment mappings, with no copy and no
    /// reference count each: the fastest way through a log. Every record is checked as
    /// [`Log::iter`] checks it.
    ///
    /// ```
    /// # fn main() -> ringlog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = ringlog::Log::open(dir.path(), ringlog::Options::default())?;
    /// log.append(b"one")?;
    /// log.append(b"two")?;
    /// let mut bytes = 0;
    /// let end = log.scan(0, |record| {
    ///     bytes += record.payload().len();
    ///     true
    /// })?;
    /// assert_eq!((end, bytes), (2, 6));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Log::iter`] yields them: [`Error::OffsetOutOfRange`] for an out-of-range
    /// `from`; [`Error::Corruption`] at a damaged record (the records before it were
    /// visited).
    pub fn scan(&self, from: u64, visit: impl FnMut(RecordRef<'_>) -> bool) -> Result<u64> {
        let mut iter = self.iter(from);
        iter.visit(visit)?;
        Ok(iter.next_offset())
    }

    /// Up to `max_records` records starting at `from`.
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if `from` is outside the readable range (`from` equal
    /// to the read watermark gives an empty vector); [`Error::Corruption`].
    pub fn read_range(&self, from: u64, max_records: usize) -> Result<Vec<Record>> {
        self.iter(from).take(max_records).collect()
    }

    /// The last `n` readable records, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`].
    pub fn tail(&self, n: usize) -> Result<Vec<Record>> {
        self.check_not_removed()?;
        let end = self.core.shared.visible_offset();
        let first = self.first_offset();
        let from = end.saturating_sub(n as u64).max(first);
        self.read_range(from, n)
    }

    // -----------------------------------------------------------------------------------
    // Waiting for durability, and named consumers (see `consumer.rs`)
    // -----------------------------------------------------------------------------------

    /// Blocks until the record at `offset` is durable (`durable_offset() > offset`),
    /// whatever the durability mode: under [`Durability::None`] that is the next
    /// [`Log::sync`], background flush or close. Returns at once if it already is.
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if `offset >= next_offset()` when called (no append
    /// could make it durable); [`Error::Poisoned`] if a write or flush fails before it is
    /// durable; [`Error::Closed`] if the log is (or gets) stopped before it is durable.
    pub fn wait_durable(&self, offset: u64) -> Result<()> {
        if let Some(early) = self.durable_or_refused(offset) {
            return early;
        }
        if self.core.shared.marks.wait_durable(offset) {
            Ok(())
        } else {
            Err(self.stopped_error())
        }
    }

    /// A future for [`Log::wait_durable`], woken by the writer: await it on any executor
    /// (no runtime needed). The range check happens now, at the call.
    pub fn wait_durable_async(&self, offset: u64) -> crate::WaitDurable {
        let early = self.durable_or_refused(offset);
        crate::durable::WaitDurable::new(self.clone(), offset, early)
    }

    /// `Some` when waiting for `offset` is over before it starts: durable already, out of
    /// range, or the log stopped.
    fn durable_or_refused(&self, offset: u64) -> Option<Result<()>> {
        if let Err(e) = self.check_not_removed() {
            return Some(Err(e));
        }
        if self.durable_offset() > offset {
            return Some(Ok(()));
        }
        let next = self.next_offset();
        if offset >= next {
            return Some(Err(Error::OffsetOutOfRange {
                offset,
                first: self.first_offset(),
                next,
            }));
        }
        if self.core.shared.marks.is_poisoned() {
            return Some(Err(self.stopped_error()));
        }
        if self.core.closed.load(SeqCst) {
            return Some(Err(Error::Closed));
        }
        None
    }

    /// One poll of [`WaitDurable`](crate::WaitDurable): ready once `offset` is durable or
    /// the log stopped; else `waker` is registered with the watermarks.
    pub(crate) fn poll_durable(&self, offset: u64, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let marks = &self.core.shared.marks;
        for registered in [false, true] {
            if marks.durable() > offset {
                return Poll::Ready(Ok(()));
            }
            if marks.is_poisoned() {
                return Poll::Ready(Err(self.stopped_error()));
            }
            if !registered {
                marks.register(offset, cx.waker());
            }
        }
        Poll::Pending
    }

    /// Why waiting for durability ended without it: the log was stopped (`abandon`, a
    /// removed topic) or poisoned by a failure.
    fn stopped_error(&self) -> Error {
        let closed_by_stop = self
            .core
            .shared
            .poison_cause()
            .is_some_and(|cause| cause.operation == "close");
        if closed_by_stop || self.core.removed.load(SeqCst) {
            Error::Closed
        } else {
            self.core.shared.poisoned()
        }
    }

    /// The consumer `name` of this log: a durable position (the next offset to read) that
    /// survives restarts and crashes, created on first use. Handles of one name share
    /// their state. A consumer that never committed has no position and holds nothing
    /// back. Positions live in `consumers/<name>` in the log's directory; a read-only log
    /// reads them (and follows a writer's commits) but cannot commit.
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// log.append_batch(&[b"a".as_slice(), b"b", b"c"])?;
    ///
    /// let indexer = log.consumer("indexer")?;
    /// let from = indexer.position().unwrap_or(log.first_offset());
    /// for record in log.iter(from) {
    ///     let record = record?;
    ///     // ... process the record, then say so durably:
    ///     indexer.commit(record.offset() + 1)?;
    /// }
    /// assert_eq!(indexer.position(), Some(3));
    /// log.close()?;
    ///
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// assert_eq!(log.consumer("indexer")?.position(), Some(3));
    /// assert_eq!(log.consumers()?, vec![("indexer".to_string(), Some(3))]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for a name outside the topic alphabet (1 to 200 bytes of
    /// ASCII letters, digits, `.`, `_`, `-`; not `.` or `..`), [`Error::Closed`],
    /// [`Error::Corruption`] if neither slot of its position file is valid,
    /// [`Error::Io`].
    pub fn consumer(&self, name: &str) -> Result<crate::Consumer> {
        self.core.consumers.consumer(self, name)
    }

    /// Every consumer of this log, by name, with its committed position (`None` if it
    /// never committed).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::Corruption`] for a position file with no valid slot,
    /// [`Error::Io`].
    pub fn consumers(&self) -> Result<Vec<(String, Option<u64>)>> {
        self.core.consumers.list(self)
    }

    /// Removes consumer `name` durably; commits through its existing handles fail with
    /// [`Error::UnknownConsumer`], and [`Log::consumer`] creates it afresh.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`], [`Error::UnknownConsumer`], [`Error::ReadOnly`],
    /// [`Error::Closed`], [`Error::Io`].
    pub fn remove_consumer(&self, name: &str) -> Result<()> {
        self.core.consumers.remove(self, name)
    }

    /// Fails with [`Error::Closed`] once the log is closed or the topic removed.
    pub(crate) fn check_open(&self) -> Result<()> {
        self.check_not_removed()?;
        if self.core.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Follows the log from `from`: a [`Follower`] yields the records from there on, in
    /// offset order, then each new one as it becomes readable (blocking in between, or
    /// pending as a `Stream`). `from` may be anywhere in `first_offset()..=next_offset()`,
    /// also past the read watermark (a record staged but not readable yet: the follower
    /// waits for it). The follower keeps the log open while it exists.
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// let mut follower = log.follow(log.next_offset())?;
    /// let producer = log.clone();
    /// std::thread::spawn(move || producer.append(b"news"));
    /// let record = follower.next().unwrap()?; // blocks until it is durable
    /// assert_eq!(record.payload(), b"news");
    /// assert_eq!(follower.position(), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if `from` is below `first_offset()` or past
    /// `next_offset()`; [`Error::Closed`] for a removed topic.
    pub fn follow(&self, from: u64) -> Result<Follower> {
        self.check_not_removed()?;
        let first = self.first_offset();
        let next = self.next_offset();
        if from < first || from > next {
            return Err(Error::OffsetOutOfRange {
                offset: from,
                first,
                next,
            });
        }
        Ok(Follower::new(self.clone(), self.core.shared.clone(), from))
    }

    /// The first offset whose record's timestamp is at or after `ts_ms` (milliseconds
    /// since the Unix epoch), among the readable records; [`Log::next_offset`] if there
    /// is none. Timestamps never decrease along a log, so `log.follow(log.seek_time(t)?)`
    /// follows everything since `t`. (If records are staged but not readable yet, and
    /// the last of them is at or after `ts_ms`, the answer is the first of them: no
    /// record at or after `ts_ms` is ever skipped.)
    ///
    /// No scan: a binary search over the segments by their first record's timestamp,
    /// then over the sparse index entries of one segment, then a walk of at most one
    /// index interval (4 KiB by default).
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// log.append_at(1_000, b"a")?;
    /// log.append_at(2_000, b"b")?;
    /// assert_eq!(log.seek_time(1_500)?, 1);
    /// assert_eq!(log.seek_time(2_000)?, 1);
    /// assert_eq!(log.seek_time(2_001)?, log.next_offset());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] if a record it reads fails its checks; [`Error::Io`] when a
    /// segment cannot be mapped; [`Error::Closed`] for a removed topic.
    pub fn seek_time(&self, ts_ms: u64) -> Result<u64> {
        self.check_not_removed()?;
        self.core.shared.seek_time(ts_ms)
    }

    /// Appends one record with the timestamp `ts_ms` (milliseconds since the Unix epoch)
    /// instead of the wall clock's, and returns its offset; durable when it returns as
    /// for [`Log::append`]. Timestamps never decrease along a log: one below the last
    /// record's is raised to it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTimestamp`] for a timestamp more than a day ahead of the wall
    /// clock (it would pin every later record's timestamp); otherwise as [`Log::append`].
    pub fn append_at(&self, ts_ms: u64, payload: &[u8]) -> Result<u64> {
        self.check_not_removed()?;
        check_append_timestamp(ts_ms)?;
        let (range, writer_idle) = self.core.shared.stage_at(&[payload], Some(ts_ms))?;
        if self.core.shared.opts.durability == Durability::Sync {
            self.core.shared.kick(writer_idle, true)?;
            self.core.shared.wait_durable(range.start)?;
        } else {
            self.core.shared.kick(writer_idle, false)?;
        }
        Ok(range.start)
    }

    /// Up to `max_records` readable records just below `offset`, in offset order (the
    /// last of them is `offset - 1`): a page backwards from `offset`.
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// log.append_batch(&[b"a".as_slice(), b"b", b"c"])?;
    /// let page: Vec<u64> = log.read_before(3, 2)?.iter().map(|r| r.offset()).collect();
    /// assert_eq!(page, [1, 2]);
    /// assert!(log.read_before(0, 10)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if `offset` is below `first_offset()` or past the read
    /// watermark; [`Error::Corruption`].
    pub fn read_before(&self, offset: u64, max_records: usize) -> Result<Vec<Record>> {
        self.check_not_removed()?;
        let first = self.first_offset();
        let visible = self.core.shared.visible_offset();
        if offset < first || offset > visible {
            return Err(Error::OffsetOutOfRange {
                offset,
                first,
                next: visible,
            });
        }
        let from = offset
            .saturating_sub(u64::try_from(max_records).unwrap_or(u64::MAX))
            .max(first);
        self.read_range(from, (offset - from) as usize)
    }

    /// Removes every record below `offset`; returns the new [`Log::first_offset`].
    ///
    /// `first_offset()` becomes `offset` at once: reads below it get
    /// [`Error::OffsetOutOfRange`] naming the new range, and iterators and followers
    /// positioned below it get that error once and continue at `offset`. The new start is
    /// recorded durably (`log.start`, docs/design.md 4.9) before anything is deleted, so a
    /// reopen after any crash agrees; then the segments wholly below `offset` are
    /// deleted (a segment a reader still maps stays valid for it, and its space returns
    /// when the last [`Record`] of it drops: [`Stats::pending_release_bytes`]). The
    /// segment holding `offset` stays; its records below `offset` are never returned.
    ///
    /// `offset <= first_offset()` changes nothing. `offset > next_offset()` empties the
    /// log and the next append gets `offset` (a new segment starts there), durable when it
    /// returns: what Raft needs to purge past its last entry, and Kafka's
    /// `truncateFullyAndStartAt`.
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// for i in 0..10u8 {
    ///     log.append(&[i])?;
    /// }
    /// assert_eq!(log.trim_before(4)?, 4);
    /// assert!(log.read(3).is_err());
    /// assert_eq!(log.read(4)?.payload(), [4]);
    /// // Past the end: empty, and appends continue there.
    /// log.trim_before(100)?;
    /// assert_eq!((log.first_offset(), log.next_offset()), (100, 100));
    /// assert_eq!(log.append(b"next")?, 100);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`], [`Error::Closed`], [`Error::Poisoned`], [`Error::Io`] (the
    /// start could not be recorded: nothing changed; or a segment could not be deleted
    /// after it was: the next trim or open deletes it).
    ///
    /// [`Stats::pending_release_bytes`]: crate::Stats::pending_release_bytes
    pub fn trim_before(&self, offset: u64) -> Result<u64> {
        self.check_not_removed()?;
        self.core.shared.trim_before(offset)
    }

    /// Removes `offset` and every record after it: `next_offset()` becomes `offset`, and
    /// the next append gets it. Raft's conflict resolution.
    ///
    /// Durable when it returns: everything below `offset` is flushed, and a new segment
    /// starting at `offset` is activated (its header written and synced); that activation
    /// is the commit point. The removed records stay in their files, past where the new
    /// segment begins, so no read or recovery ever takes them again, after any crash, and
    /// a [`Record`] a reader still holds keeps its bytes (nothing mapped is changed).
    /// Segments wholly past the cut are deleted. Iterators and followers that had yielded
    /// (or were positioned past) a removed record get [`Error::Truncated`] once and go on
    /// from `offset`. Works under every durability mode.
    ///
    /// `offset == next_offset()` removes nothing (it flushes).
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// for term in [b"t1", b"t1", b"t1", b"t1"] {
    ///     log.append(term)?;
    /// }
    /// log.truncate_from(2)?;
    /// assert_eq!(log.next_offset(), 2);
    /// assert_eq!(log.append(b"t2")?, 2);
    /// assert_eq!(log.read(2)?.payload(), b"t2");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if `offset` is below `first_offset()` or past
    /// `next_offset()`; [`Error::ReadOnly`], [`Error::Closed`], [`Error::Poisoned`],
    /// [`Error::Io`] (a failed write or flush poisons the log, as for an append).
    pub fn truncate_from(&self, offset: u64) -> Result<()> {
        self.check_not_removed()?;
        self.core.shared.truncate_from(offset)
    }

    /// Applies the log's [`Retention`](crate::Retention) now: deletes its oldest whole
    /// sealed segments while a limit is exceeded (never the active segment, and with
    /// `keep_consumers` never one holding records at or after a committed consumer
    /// position), and says what went and why. It also runs in the background after every
    /// rollover and at open, never blocking appends. Like [`Log::trim_before`], the new
    /// start is recorded before a file is deleted, and a deleted segment a reader still
    /// maps stays valid for it.
    ///
    /// ```
    /// use ringlog::{Log, Options, Retention};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let opts = Options::default()
    ///     .segment_bytes(64 << 10)
    ///     .retention(Retention::default().max_segments(2));
    /// let log = Log::open(dir.path(), opts)?;
    /// for _ in 0..200 {
    ///     log.append(&[7u8; 1000])?;
    /// }
    /// let report = log.apply_retention()?;
    /// assert!(log.segments()?.len() <= 2);
    /// assert_eq!(report.first_offset, log.first_offset());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`], [`Error::Io`] (the start could not be recorded: nothing was
    /// deleted).
    pub fn apply_retention(&self) -> Result<crate::RetentionReport> {
        self.check_not_removed()?;
        self.core.shared.apply_retention()
    }

    /// An in-memory log's directory goes when the last handle drops.
    pub(crate) fn keep_until_dropped(&self, dir: crate::memory::EphemeralDir) {
        *self.core.ephemeral.lock() = Some(dir);
    }

    /// Copies the log into `dest` (a new or empty directory) without stopping the
    /// writer: a log that [`Log::open`] opens and [`verify`](crate::verify) finds clean,
    /// holding exactly the records below [`Log::durable_offset`] at one moment during the
    /// call (the moment of its snapshot: records made durable while the files are
    /// copied are not in it), from [`Log::first_offset`] at that moment, with the
    /// consumer positions as they are when they are copied (after the snapshot: a
    /// position may be past the copy's end). Sealed segments are hard-linked when `dest`
    /// is on the same file system (nothing writes to a sealed segment again), else
    /// copied; the active segment is copied up to the durable watermark, then zeros to
    /// its full size. A trim, truncation or retention pass during the copy waits only
    /// for the snapshot, and a segment it deletes is still copied whole (from its
    /// mapping). Everything is synced (files and directories) before it returns.
    ///
    /// On a read-only handle the copy holds what a fresh read-only open of the directory
    /// finds (whole, checksummed batches the writer has written, which under
    /// `Durability::None` or `Interval` may be more than it has made durable).
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path().join("live"), Options::default().segment_bytes(64 << 10))?;
    /// for i in 0..1000u32 {
    ///     log.append(&i.to_le_bytes())?;
    /// }
    /// let report = log.backup(dir.path().join("copy"))?;
    /// assert_eq!(report.logs[0].next_offset, 1000);
    /// assert!(ringlog::verify(dir.path().join("copy"))?.is_clean());
    /// let copy = Log::open(dir.path().join("copy"), Options::default())?;
    /// assert_eq!(copy.read(999)?.payload(), 999u32.to_le_bytes());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BackupDestination`] if `dest` is not empty (or not a directory);
    /// [`Error::Io`] (what was copied so far stays in `dest`); [`Error::Poisoned`] if a
    /// flush the backup needed failed.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<crate::BackupReport> {
        self.check_not_removed()?;
        crate::backup::backup_log(self, dest.as_ref())
    }

    /// The writer state every handle shares (for the backup).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.core.shared
    }

    /// The first offset in the log.
    pub fn first_offset(&self) -> u64 {
        self.core.shared.first_offset.load(SeqCst)
    }

    /// The offset the next append will get.
    pub fn next_offset(&self) -> u64 {
        self.core.shared.staging.lock().next_offset()
    }

    /// Every offset below this one is durable.
    pub fn durable_offset(&self) -> u64 {
        self.core.shared.marks.durable()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.core.shared.dir
    }

    /// Counters and state: backend (and why, if it fell back), segments, bytes, records,
    /// fsyncs, records per fsync.
    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = &self.core.shared.counters;
        let (segments_count, segments_bytes) = {
            let segments = self.core.shared.segments.read();
            (
                segments.len() as u64,
                segments.iter().map(|s| s.header.segment_bytes).sum(),
            )
        };
        let fsyncs_count = counters.fsyncs.load(Relaxed);
        let records_synced = counters.records_synced.load(Relaxed);
        let next_offset = self.next_offset();
        let first_offset = self.first_offset();
        let (pending_release_segments, pending_release_bytes) =
            self.core.shared.cuts.pending_release();
        Stats {
            backend: self.core.shared.backend_kind,
            backend_fallback_reason: self.core.shared.backend_fallback.clone(),
            segments_count,
            bytes_written: counters.bytes_written.load(Relaxed),
            segments_bytes,
            records_count: next_offset.saturating_sub(first_offset),
            first_offset,
            next_offset,
            durable_offset: self.durable_offset(),
            fsyncs_count,
            batches_count: counters.batches.load(Relaxed),
            records_per_fsync: if fsyncs_count == 0 {
                0.0
            } else {
                records_synced as f64 / fsyncs_count as f64
            },
            pending_release_segments,
            pending_release_bytes,
            recycled_segments_count: self.core.shared.free_files.recycled_count(),
            free_segment_files: self.core.shared.free_files.count() as u64,
        }
    }

    /// What poisoned the log (the first failed operation, its file and error kind), if
    /// anything did: see [`Error::Poisoned`].
    pub fn poison_cause(&self) -> Option<crate::PoisonCause> {
        self.core.shared.poison_cause()
    }

    /// What open found on disk and did about it.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.core.report
    }

    /// Flushes everything, writes a clean-shutdown checkpoint, stops the background
    /// threads and releases the directory lock: for every handle of this log (a store's
    /// topic is closed for every handle; [`Store::topic`](crate::Store::topic) opens it
    /// again). Later calls do nothing; later appends fail with [`Error::Closed`]; records
    /// already appended stay readable through the handles. Dropping the last handle of a
    /// log opened with [`Log::open`] does the same, ignoring errors.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] or [`Error::Io`] if the final flush failed.
    pub fn close(&self) -> Result<()> {
        self.core.close()
    }

    /// Stops the log as a killed process would: staged records are dropped, nothing more
    /// is written or flushed, no clean-shutdown checkpoint; the threads stop and the lock
    /// is released. For crash tests. Not a stable API.
    #[doc(hidden)]
    pub fn abandon(&self) {
        self.core.abandon()
    }

    fn from_core(core: LogCore) -> Log {
        Log {
            core: Arc::new(core),
        }
    }

    /// The shared core, for the store that owns a topic.
    pub(crate) fn core(&self) -> &Arc<LogCore> {
        &self.core
    }

    /// Appends `records` as [`Log::append_batch`] does (durable on return under
    /// [`Durability::Sync`]), with their timestamp given or the wall clock's.
    pub(crate) fn append_records(
        &self,
        records: crate::writer::Records<'_>,
        timestamp_ms: Option<u64>,
    ) -> Result<Range<u64>> {
        self.check_not_removed()?;
        if let Some(ts_ms) = timestamp_ms {
            check_append_timestamp(ts_ms)?;
        }
        let (range, writer_idle) = self.core.shared.stage_records(records, timestamp_ms)?;
        if range.is_empty() {
            return Ok(range);
        }
        if self.core.shared.opts.durability == Durability::Sync {
            self.core.shared.kick(writer_idle, true)?;
            self.core.shared.wait_durable(range.end - 1)?;
        } else {
            self.core.shared.kick(writer_idle, false)?;
        }
        Ok(range)
    }

    /// A handle on a core the store keeps.
    pub(crate) fn from_arc(core: Arc<LogCore>) -> Log {
        Log { core }
    }

    /// Fails with [`Error::Closed`] once the topic was removed from its store.
    fn check_not_removed(&self) -> Result<()> {
        if self.core.removed.load(SeqCst) {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl LogCore {
    /// Whether a close has begun (it may still be running: [`LogCore::close`] waits for
    /// it).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Closes the log and marks it removed: every later call through a handle is
    /// [`Error::Closed`].
    pub(crate) fn close_removed(&self) -> Result<()> {
        self.removed.store(true, SeqCst);
        self.shared.marks.close(true);
        self.close()
    }

    pub(crate) fn close(&self) -> Result<()> {
        let _closing = self.closing.lock();
        if self.closed.swap(true, SeqCst) {
            return Ok(());
        }
        let result = self.shared.shutdown();
        if let Some(engine) = &self.own_engine {
            engine.stop();
        }
        let result = match result {
            Ok(Some((segment, data_end, next_offset))) => {
                segment.persist_index(&self.shared.dir, data_end, next_offset, true, 0)
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        // Nothing writes again: the descriptors go (reads keep working: a segment is
        // mapped by name when first read).
        self.shared.release_files();
        self.lock.lock().take();
        result
    }

    pub(crate) fn abandon(&self) {
        let _closing = self.closing.lock();
        if self.closed.swap(true, SeqCst) {
            return;
        }
        self.shared.abandon();
        if let Some(engine) = &self.own_engine {
            engine.stop();
        }
        self.lock.lock().take();
    }
}

impl Drop for LogCore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Refuses a record timestamp more than a day ahead of the wall clock: one bad value
/// would pin every later record's (timestamps never decrease).
fn check_append_timestamp(ts_ms: u64) -> Result<()> {
    let limit_ms = crate::segment::now_ms().saturating_add(APPEND_AT_AHEAD_MAX_MS);
    if ts_ms > limit_ms {
        return Err(Error::InvalidTimestamp {
            ts_ms,
            reason: format!(
                "more than a day ahead of the wall clock (at most {limit_ms} now); \
                 timestamps never decrease, so it would pin every later record's"
            ),
        });
    }
    Ok(())
}

/// Takes the directory's advisory writer lock.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            // Informational: who holds the lock (`ringlog info` shows it).
            let pid = format!("{}\n", std::process::id());
            let _ = file.set_len(0);
            let _ = std::os::unix::fs::FileExt::write_all_at(&file, pid.as_bytes(), 0);
            Ok(file)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(Error::io("lock directory", &path, e.into())),
    }
}

/// The process id of the writer holding the log in `dir`, if one does.
///
/// # Errors
///
/// [`Error::Io`] if the lock file exists but cannot be read.
pub fn lock_holder(dir: impl AsRef<Path>) -> Result<Option<u32>> {
    let path = dir.as_ref().join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open lock file", &path, e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
            Ok(None)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io("read lock file", &path, e))?;
            Ok(Some(text.trim().parse().unwrap_or(0)))
        }
        Err(e) => Err(Error::io("lock directory", &path, e.into())),
    }
}

/// A staged append. Resolves to the record's offset once the append is done: durable
/// under [`Durability::Sync`], staged otherwise.
#[must_use = "a ticket does nothing unless waited on or awaited"]
pub struct AppendTicket {
    shared: Arc<Shared>,
    offset: u64,
}

impl std::fmt::Debug for AppendTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendTicket")
            .field("offset", &self.offset)
            .finish()
    }
}

impl AppendTicket {
    /// The offset the record got.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn is_done(&self) -> bool {
        self.shared.opts.durability != Durability::Sync || self.shared.marks.durable() > self.offset
    }

    /// Blocks until the append is done.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if a write or flush failed before the record was durable.
    pub fn wait(self) -> Result<u64> {
        if self.is_done() {
            return Ok(self.offset);
        }
        self.shared.wait_durable(self.offset)
    }
}

impl Future for AppendTicket {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        if self.is_done() {
            return Poll::Ready(Ok(self.offset));
        }
        if self.shared.marks.is_poisoned() {
            return Poll::Ready(Err(self.shared.poisoned()));
        }
        self.shared.marks.register(self.offset, cx.waker());
        if self.is_done() {
            return Poll::Ready(Ok(self.offset));
        }
        if self.shared.marks.is_poisoned() {
            return Poll::Ready(Err(self.shared.poisoned()));
        }
        Poll::Pending
    }
}
