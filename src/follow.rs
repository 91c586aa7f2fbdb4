//! Following a log: a [`Follower`] yields the history from an offset, then each new
//! record as it becomes readable, blocking (or pending, as a `Stream`) in between,
//! never polling a writable log. And how a read-only handle finds what a writer in
//! another process appended: by scanning past the end it knows, picking up the segments
//! the writer activates.
//!
//! A follower blocked at the end of a writable log sleeps on its own futex word,
//! registered with the offset it waits for (`Watermarks::wait_readable`); whoever moves
//! the read watermark wakes exactly the followers whose offset became readable (see
//! `watermark.rs`). It reads from the segment mappings, like any reader: the writer never
//! waits for it, and a slow follower misses nothing.

use std::fs::File;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::control::Control;
use crate::error::{Error, Result};
use crate::format::SEGMENT_HEADER_BYTES;
use crate::log::Log;
use crate::reader::{Iter, Record};
use crate::recovery::{self, ScanStart};
use crate::segment::{self, Segment};
use crate::watermark::{OPEN, REMOVED};
use crate::writer::Shared;

/// How often a follower of a read-only handle looks for records a writer in another
/// process appended ([`Log::refresh`]) when the writer has no control file (a writer of
/// an earlier release, or one that could not make it).
pub(crate) const READ_ONLY_REFRESH_INTERVAL: Duration = Duration::from_millis(10);

/// Longest a follower of a read-only handle sleeps on the writer's control file before
/// it looks again on its own (a writer killed between its write and its wake-up, or
/// replaced by a new one): a bound, not a poll; publishes wake it at once.
pub(crate) const READ_ONLY_MAX_WAIT: Duration = Duration::from_secs(1);

/// Follows a log: yields its records in offset order from a starting offset, then each
/// new one as it becomes readable (durable under [`Durability::Sync`] and
/// [`Durability::Interval`], written under [`Durability::None`] or with
/// [`Options::read_unflushed`]), blocking in between. Made by [`Log::follow`].
///
/// As an [`Iterator`], `next()` blocks until the next record is readable and returns
/// `None` only after an error ended the follower; [`Follower::next_timeout`] waits at
/// most a given time. As a [`futures_core::Stream`] it is pending at the end and is woken
/// by the writer, under any executor (no runtime is needed).
///
/// A follower waits without polling: the writer (or the engine's waker thread) wakes it
/// when its next record becomes readable. A follower of a read-only handle
/// ([`Log::open_read_only`], the writer in another process) sleeps on a futex in the
/// writer's control file (`ringlog.control`, mapped by both processes), which the writer
/// wakes after every write and flush, and then looks for the new records
/// ([`Log::refresh`]); it survives the writer's rollovers, its `kill -9` and its restart.
///
/// A follower reads from the segment mappings like any reader: it never slows the
/// writer, and a slow one misses nothing. It ends with [`Error::Closed`] once the log is
/// closed (by [`Log::close`] or [`Store::remove_topic`](crate::Store::remove_topic)) and
/// it has yielded every record that was readable then (none, for a removed topic), and
/// with [`Error::Poisoned`] at the end of a poisoned log; after an error it yields
/// nothing more. A follower is a handle of its log: the log stays open while one exists.
///
/// ```
/// use std::time::Duration;
/// use ringlog::{Log, Options};
///
/// # fn main() -> ringlog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
/// log.append(b"before")?;
/// let mut follower = log.follow(0)?;
/// let reader = std::thread::spawn(move || -> ringlog::Result<Vec<u8>> {
///     let mut seen = Vec::new();
///     for record in follower.by_ref().take(2) {
///         seen.extend_from_slice(record?.payload());
///     }
///     // Nothing more arrives: `next_timeout` gives up.
///     assert!(follower.next_timeout(Duration::from_millis(10)).is_none());
///     Ok(seen)
/// });
/// log.append(b"+after")?;
/// assert_eq!(reader.join().unwrap()?, b"before+after");
/// # Ok(())
/// # }
/// ```
///
/// [`Durability::Sync`]: crate::Durability::Sync
/// [`Durability::Interval`]: crate::Durability::Interval
/// [`Durability::None`]: crate::Durability::None
/// [`Options::read_unflushed`]: crate::Options::read_unflushed
pub struct Follower {
    /// Keeps the log open while the follower exists.
    _log: Log,
    shared: Arc<Shared>,
    iter: Iter,
    /// After an error: yields nothing more.
    ended: bool,
    /// A read-only handle's stream: a timer is armed to wake the task for a refresh.
    refresh_timer_armed: Arc<AtomicBool>,
    /// Records yielded (the lag metric is reported every [`FOLLOWER_LAG_EVERY`]).
    yielded: u64,
}

/// How often (in records yielded) a follower reports its lag to the `metrics` feature.
const FOLLOWER_LAG_EVERY: u64 = 1024;

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("position", &self.position())
            .field("lag", &self.lag())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// A follower of `log` (whose shared state is `shared`) from `from`, which the
    /// caller checked: `first_offset() <= from <= next_offset()`.
    pub(crate) fn new(log: Log, shared: Arc<Shared>, from: u64) -> Follower {
        Follower {
            _log: log,
            iter: Iter::unchecked(shared.clone(), from),
            shared,
            ended: false,
            refresh_timer_armed: Arc::new(AtomicBool::new(false)),
            yielded: 0,
        }
    }

    /// The offset of the next record the follower will yield. (Through a
    /// `&mut Follower`, `f.position()` names [`Iterator::position`]: write
    /// `Follower::position(f)` there.)
    pub fn position(&self) -> u64 {
        self.iter.next_offset()
    }

    /// Records readable now that the follower has not yielded yet.
    pub fn lag(&self) -> u64 {
        self.shared.visible_offset().saturating_sub(self.position())
    }

    /// Like `next()`, waiting at most `timeout` for the next record: `None` when none
    /// became readable in time (or the follower has ended).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Record>> {
        let deadline = Instant::now().checked_add(timeout);
        self.next_until(deadline)
    }

    /// The next record, waiting for it until `deadline` (`None`: for ever).
    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<Record>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(item) = self.try_next() {
                return Some(item);
            }
            let position = Follower::position(self);
            if self.shared.read_only {
                // The writer is in another process: load its control file's wake word,
                // look for new records, and sleep on the word only if there are none (a
                // publish in between changes it, so no wake-up is lost).
                let control = self.shared.reader_control();
                let seen = control.as_ref().map(|c| c.wake_word());
                if let Err(e) = self.shared.refresh() {
                    return Some(self.end(e));
                }
                if let Some(item) = self.try_next() {
                    return Some(item);
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return None;
                }
                let bound = now
                    + if control.is_some() {
                        READ_ONLY_MAX_WAIT
                    } else {
                        READ_ONLY_REFRESH_INTERVAL
                    };
                let until = deadline.map_or(bound, |d| d.min(bound));
                match (control, seen) {
                    (Some(control), Some(seen)) => {
                        control.wait(seen, until.saturating_duration_since(now));
                    }
                    // Woken sooner if another thread of this process refreshes.
                    _ => {
                        self.shared.marks.wait_readable(position, Some(until));
                    }
                }
            } else if !self.shared.marks.wait_readable(position, deadline) {
                return self.try_next();
            }
        }
    }

    /// The next record if one is readable now; the end of the follower if the log was
    /// closed or poisoned; `None` if it must wait.
    fn try_next(&mut self) -> Option<Result<Record>> {
        if self.ended {
            return None;
        }
        let marks = &self.shared.marks;
        if marks.state() == REMOVED {
            return Some(self.end(Error::Closed));
        }
        match self.iter.next() {
            Some(Ok(record)) => {
                self.yielded += 1;
                if self.yielded % FOLLOWER_LAG_EVERY == 0 {
                    crate::telemetry::follower_lag(&self.shared.dir, self.lag());
                }
                return Some(Ok(record));
            }
            // The log was cut under the follower: it says so, and goes on.
            Some(Err(e)) if !self.iter.has_failed() => return Some(Err(e)),
            Some(Err(e)) => return Some(self.end(e)),
            None => {}
        }
        let closed = marks.state() != OPEN;
        let poisoned = marks.is_poisoned();
        if !closed && !poisoned {
            return None;
        }
        // Closing (or poisoning) comes after the last watermark move: what became
        // readable before it is still yielded.
        match self.iter.next() {
            Some(Ok(record)) => Some(Ok(record)),
            Some(Err(e)) if !self.iter.has_failed() => Some(Err(e)),
            Some(Err(e)) => Some(self.end(e)),
            None if closed => Some(self.end(Error::Closed)),
            None => {
                let error = self.shared.poisoned();
                Some(self.end(error))
            }
        }
    }

    fn end(&mut self, error: Error) -> Result<Record> {
        self.ended = true;
        Err(error)
    }

    /// For a read-only handle's stream: wakes the task when the writer publishes (its
    /// control file's wake word moves from what was seen) or after a while, to refresh.
    fn arm_refresh_timer(
        &self,
        cx: &Context<'_>,
        control: Option<(u32, Arc<Control>)>,
    ) -> Result<()> {
        if self.refresh_timer_armed.swap(true, SeqCst) {
            return Ok(());
        }
        let armed = self.refresh_timer_armed.clone();
        let waker = cx.waker().clone();
        std::thread::Builder::new()
            .name("ringlog-follow-timer".into())
            .spawn(move || {
                match control {
                    Some((seen, control)) => control.wait(seen, READ_ONLY_MAX_WAIT),
                    None => std::thread::sleep(READ_ONLY_REFRESH_INTERVAL),
                }
                armed.store(false, SeqCst);
                waker.wake();
            })
            .map(drop)
            .map_err(|e| {
                self.refresh_timer_armed.store(false, SeqCst);
                Error::io("spawn thread", "ringlog-follow-timer", e)
            })
    }
}

impl Iterator for Follower {
    type Item = Result<Record>;

    /// The next record, blocking until it is readable. `None` only after the follower
    /// ended with an error.
    fn next(&mut self) -> Option<Result<Record>> {
        self.next_until(None)
    }
}

impl futures_core::Stream for Follower {
    type Item = Result<Record>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Record>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        // A read-only handle: the control file's wake word, loaded before looking (see
        // `next_until`).
        let mut control = None;
        if this.shared.read_only {
            control = this.shared.reader_control().map(|c| (c.wake_word(), c));
            if let Err(e) = this.shared.refresh() {
                return Poll::Ready(Some(this.end(e)));
            }
        }
        if let Some(item) = this.try_next() {
            return Poll::Ready(Some(item));
        }
        this.shared
            .marks
            .register_follower(Follower::position(this), cx.waker());
        // Readable (or closed) before we registered? Then no wake may come.
        if let Some(item) = this.try_next() {
            return Poll::Ready(Some(item));
        }
        if this.shared.read_only {
            if let Err(e) = this.arm_refresh_timer(cx, control) {
                return Poll::Ready(Some(this.end(e)));
            }
        }
        Poll::Pending
    }
}

/// Where the valid data a refresh found ends.
struct Found {
    end_position: u64,
    next_offset: u64,
}

impl Shared {
    /// A read-only handle's view of the writer's control file: attached on first use,
    /// once a writer has made one.
    pub(crate) fn reader_control(&self) -> Option<Arc<Control>> {
        if let Some(control) = self.marks.control() {
            return Some(control.clone());
        }
        let control = Control::open_reader(&self.dir)?;
        self.marks.attach_control(control).cloned()
    }

    /// Scans for records appended since the last look; returns the new read watermark.
    /// Only whole, checksummed records (and whole batches) are taken; a batch the writer
    /// is still writing is picked up by a later call.
    pub(crate) fn refresh(&self) -> Result<u64> {
        debug_assert!(self.read_only, "the writer knows its own end");
        let mut st = self.staging.lock();
        loop {
            let (active, position, next_offset) = st.cursor();
            let last_entry = active.index.read().entries.last().copied();
            // The valid frames past what it knows, whole batches only; nothing is judged
            // or searched past them (a read-only handle repairs nothing, and searching
            // the rest of a 64 MiB segment at every wake-up cost ~7 ms each).
            let frames = recovery::read_frames(
                active.bytes()?,
                active.seed,
                ScanStart {
                    position,
                    offset: next_offset,
                    proven_durable: position,
                    stop_offset: None,
                    entries: last_entry.into_iter().collect(),
                    search_end: u64::MAX,
                    recycled: active.header.recycled,
                },
                self.opts.index_interval_bytes,
            );
            let outcome = Found {
                end_position: frames.complete_position,
                next_offset: frames.complete_offset,
            };
            if outcome.next_offset > next_offset {
                let fresh = frames
                    .entries
                    .into_iter()
                    .filter(|e| e.offset < outcome.next_offset)
                    .skip(last_entry.is_some() as usize);
                active.index.write().entries.extend(fresh);
                st.advance_to(active.clone(), outcome.end_position, outcome.next_offset);
                self.marks.publish_written(outcome.next_offset, false);
                // A read-only handle is never poisoned.
                let _ = self.marks.publish_durable(outcome.next_offset, true);
            }
            let Some(next) = self.open_next_segment(&active, outcome.next_offset)? else {
                return Ok(outcome.next_offset);
            };
            *active.end_offset.write() = Some(next.base_offset());
            // Sealed now: mapped already, or mapped by name when read.
            active.release_file();
            self.segments.write().push(next.clone());
            if next.base_offset() < outcome.next_offset {
                // The writer truncated this segment at the next one's base.
                self.cuts.truncated_read_only(next.base_offset());
                self.marks.reset_to(next.base_offset());
            }
            let base = next.base_offset();
            st.advance_to(next, SEGMENT_HEADER_BYTES, base);
        }
    }

    /// The segment after `active`, if the writer has activated it and it starts where
    /// `active`'s data ends, or inside it (a truncation cut `active` there: the records
    /// past it are gone). A truncation that removed `active` itself is seen at reopen.
    fn open_next_segment(
        &self,
        active: &Segment,
        end_offset: u64,
    ) -> Result<Option<std::sync::Arc<Segment>>> {
        let path = segment::segment_path(&self.dir, active.id() + 1);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open segment", &path, e)),
        };
        let (header, len) =
            segment::read_header(&file).map_err(|e| Error::io("read segment", &path, e))?;
        match header {
            Ok(h)
                if h.is_activated()
                    && len >= h.segment_bytes
                    && (h.base_offset == end_offset
                        || (h.dropped_before == 0
                            && h.base_offset > active.base_offset()
                            && h.base_offset < end_offset)) =>
            {
                let segment = Segment::new(path, file, h, len)?;
                segment.index.write().loaded = true;
                Ok(Some(segment))
            }
            // Still a spare, mid-activation, or the old segment is not fully visible yet.
            _ => Ok(None),
        }
    }
}
