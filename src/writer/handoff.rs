//! The hand-off between a log's producers and the engine's writer: who commits staged
//! work next, and when. Pure state, no files, no threads: the caller holds the staging
//! lock around every call and does what the answer says (schedule the writer, commit
//! inline, commit, park).
//!
//! - A producer that staged work and finds the writer *parked* must see to it: under
//!   `Durability::Sync` it commits inline (handing a record to a parked thread costs
//!   more than the flush on small machines), otherwise it schedules the writer, unless
//!   the writer is only waiting for a small unsynced batch to grow and the batch is not
//!   worth a system call yet.
//! - The writer, when it looks at the log, commits what is staged, or parks: until
//!   scheduled, or with a deadline when a small unsynced batch may grow for
//!   [`LAZY_WRITE_DELAY`] or an `Interval` flush comes due. A batch it already let grow
//!   is committed the next time, whatever its size.

use std::time::{Duration, Instant};

/// Without `Durability::Sync`, staged bytes that make a batch worth waking the writer.
pub(crate) const LAZY_WRITE_BYTES: u64 = 64 << 10;

/// Without `Durability::Sync`, longest a smaller batch waits before it is written.
pub(crate) const LAZY_WRITE_DELAY: Duration = Duration::from_millis(1);

/// The hand-off's state (kept under the staging lock).
#[derive(Debug)]
pub(crate) struct Handoff {
    /// The writer will not look at the log unless scheduled, or its deadline passes.
    parked: bool,
    /// Parked with a deadline, waiting for a small batch to grow.
    lazy: bool,
    /// When the writer let a small batch grow: the next look commits it.
    lazy_since: Option<Instant>,
}

/// What is staged, as the hand-off needs to know it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged {
    /// Chunks are waiting to be written.
    pub(crate) pending: bool,
    pub(crate) bytes: u64,
    /// The log is closing (everything staged must go now).
    pub(crate) closing: bool,
}

/// What the writer does when it looks at the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Commit what is staged now.
    Commit,
    /// Nothing to do: look again when scheduled, or at this moment.
    Park(Option<Instant>),
    /// Stopped, with nothing staged: never again.
    Stop,
}

impl Handoff {
    /// A new log's: parked (the writer looks at it once scheduled).
    pub(crate) fn new() -> Handoff {
        Handoff {
            parked: true,
            lazy: false,
            lazy_since: None,
        }
    }

    /// Whether the writer is parked: a producer that staged work must see to it.
    pub(crate) fn parked(&self) -> bool {
        self.parked
    }

    /// A producer has staged work (or waits for room): whether it must schedule the
    /// writer now (the writer then counts as scheduled). `sync`: the log's durability
    /// is `Sync` (every wait matters).
    pub(crate) fn wake_writer(&mut self, staged: Staged, sync: bool) -> bool {
        // A writer parked with nothing to do must hear of the first chunk (it then waits
        // at most LAZY_WRITE_DELAY for more); one already waiting for more is woken only
        // when the batch is worth it.
        let worth_it = sync || !self.lazy || staged.bytes >= LAZY_WRITE_BYTES || staged.closing;
        if staged.pending && self.parked && worth_it {
            self.parked = false;
            return true;
        }
        false
    }

    /// A producer waits for staging room: the writer must empty it.
    pub(crate) fn room_needed(&mut self) -> bool {
        std::mem::replace(&mut self.parked, false)
    }

    /// The writer looks at the log at `now`. `sync`: the durability is `Sync`;
    /// `interval_due`: under `Interval`, how long until unflushed data must be flushed
    /// (`None`: nothing waits for a flush).
    pub(crate) fn writer_turn(
        &mut self,
        now: Instant,
        staged: Staged,
        sync: bool,
        interval_due: impl FnOnce() -> Option<Duration>,
    ) -> Turn {
        self.parked = false;
        self.lazy = false;
        let waited_for_more = self.lazy_since.take().is_some();
        let lazy = !sync && staged.bytes < LAZY_WRITE_BYTES && !waited_for_more;
        if staged.closing && !staged.pending {
            return Turn::Stop;
        }
        if (staged.pending && !lazy) || staged.closing {
            return Turn::Commit;
        }
        let mut timeout = interval_due();
        if timeout == Some(Duration::ZERO) {
            return Turn::Commit;
        }
        if staged.pending {
            // A small batch: let it grow for a moment, then write it anyway.
            timeout = Some(timeout.map_or(LAZY_WRITE_DELAY, |t| t.min(LAZY_WRITE_DELAY)));
            self.lazy_since = Some(now);
        }
        self.parked = true;
        self.lazy = staged.pending;
        Turn::Park(timeout.map(|t| now + t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(bytes: u64) -> Staged {
        Staged {
            pending: bytes > 0,
            bytes,
            closing: false,
        }
    }

    #[test]
    fn a_new_log_is_parked_and_its_first_producer_wakes_the_writer() {
        let mut h = Handoff::new();
        assert!(h.parked());
        assert!(!h.wake_writer(staged(0), false), "nothing staged");
        assert!(h.wake_writer(staged(100), false));
        assert!(!h.parked());
        assert!(!h.wake_writer(staged(200), false), "scheduled once");
    }

    #[test]
    fn a_sync_batch_is_committed_at_once() {
        let mut h = Handoff::new();
        let now = Instant::now();
        assert_eq!(h.writer_turn(now, staged(100), true, || None), Turn::Commit);
        assert_eq!(
            h.writer_turn(now, staged(0), true, || None),
            Turn::Park(None)
        );
        assert!(h.parked());
    }

    #[test]
    fn a_small_unsynced_batch_may_grow_once_then_goes_whatever_its_size() {
        let mut h = Handoff::new();
        let now = Instant::now();
        assert_eq!(
            h.writer_turn(now, staged(100), false, || None),
            Turn::Park(Some(now + LAZY_WRITE_DELAY))
        );
        // Producers of a lazy writer wake it only for a batch worth it.
        assert!(!h.wake_writer(staged(200), false));
        assert!(h.wake_writer(staged(LAZY_WRITE_BYTES), false));
        // Looked at again (woken, or the deadline passed): it commits.
        assert_eq!(
            h.writer_turn(now, staged(300), false, || None),
            Turn::Commit
        );
    }

    #[test]
    fn a_large_unsynced_batch_and_a_closing_log_are_committed_at_once() {
        let mut h = Handoff::new();
        let now = Instant::now();
        assert_eq!(
            h.writer_turn(now, staged(LAZY_WRITE_BYTES), false, || None),
            Turn::Commit
        );
        let closing = Staged {
            closing: true,
            ..staged(10)
        };
        assert_eq!(h.writer_turn(now, closing, false, || None), Turn::Commit);
        let closed = Staged {
            closing: true,
            ..staged(0)
        };
        assert_eq!(h.writer_turn(now, closed, false, || None), Turn::Stop);
    }

    #[test]
    fn an_interval_flush_comes_due() {
        let mut h = Handoff::new();
        let now = Instant::now();
        let every = Duration::from_millis(5);
        assert_eq!(
            h.writer_turn(now, staged(0), false, || Some(every)),
            Turn::Park(Some(now + every))
        );
        assert_eq!(
            h.writer_turn(now, staged(0), false, || Some(Duration::ZERO)),
            Turn::Commit
        );
        // A small batch waits no longer than the lazy delay, nor than the interval.
        assert_eq!(
            h.writer_turn(now, staged(10), false, || Some(Duration::from_micros(300))),
            Turn::Park(Some(now + Duration::from_micros(300)))
        );
    }

    #[test]
    fn a_producer_waiting_for_room_unparks_the_writer_once() {
        let mut h = Handoff::new();
        assert!(h.room_needed());
        assert!(!h.room_needed());
    }
}
