//! Written and durable watermarks, and waiting for them to pass an offset.
//!
//! A blocked producer registers the offset it waits for and sleeps on a futex word of its
//! own; waking (done by the waker thread, off the writer's path) wakes exactly the
//! producers whose records became durable. Waking every waiter on each flush would also
//! wake those waiting for the next flush, only to sleep again: on a 2-core machine with
//! 64 producers those context switches were a large part of the cost of an append.
//! Async tickets register a `Waker` instead.
//!
//! Followers (`Log::follow`) wait the same way on the *readable* watermark: the durable
//! one, or the written one where readers see written records (`Durability::None`,
//! `Options::read_unflushed`, a read-only handle). Whoever moves a watermark wakes (or
//! asks the waker thread to wake) the waiters of both kinds whose offsets became ready;
//! closing the log wakes every follower, to end it with `Error::Closed`.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crate::control::Control;
use crate::engine::Engine;
use crossbeam_utils::CachePadded;

use crate::sync::{thread_parker, AtomicBool, AtomicU32, AtomicU64, Futex, Mutex};

/// The log's progress, as offsets: every record below `written` is in the file (page
/// cache), every record below `durable` is on stable storage.
pub(crate) struct Watermarks {
    /// Each on a cache line of its own: producers, readers and followers read them on
    /// every append, read and wait, while the committer moves them and producers
    /// register as sleepers beside them.
    written: CachePadded<AtomicU64>,
    durable: CachePadded<AtomicU64>,
    poisoned: AtomicBool,
    /// Orders [`Watermarks::poison`] with background publishes.
    poison_gate: Mutex<()>,
    /// Blocked producers: the offset each waits for, and its futex word.
    sleepers: Mutex<Vec<(u64, Arc<Futex>)>>,
    sleepers_count: AtomicU32,
    wakers: Mutex<Vec<(u64, Waker)>>,
    wakers_pending: AtomicBool,
    /// Readers see `written` (else `durable`): what followers wait on.
    readers_see_written: bool,
    /// Blocked followers: the offset each waits to become readable, and its futex word.
    followers: Mutex<Vec<(u64, Arc<Futex>)>>,
    followers_count: AtomicU32,
    /// Async followers: the offset each waits to become readable.
    follower_wakers: Mutex<Vec<(u64, Waker)>>,
    follower_wakers_pending: AtomicBool,
    /// [`OPEN`], [`CLOSED`] or [`REMOVED`]: followers end once it is not `OPEN`.
    state: AtomicU32,
    /// The engine whose waker thread runs [`Watermarks::wake`] when asked (`None` for a
    /// read-only log, whose watermarks nobody waits on).
    engine: Option<Arc<Engine>>,
    /// On the engine waker's queue.
    pub(crate) wake_queued: AtomicBool,
    /// The control file through which readers in other processes hear of moves (see
    /// `control.rs`): the writer's, or a read-only handle's once the writer made one.
    control: std::sync::OnceLock<Arc<Control>>,
}

impl Watermarks {
    /// The watermarks after recovery: everything below `written` is in the file, and
    /// everything below `durable` is known durable. Readers (and followers) see what is
    /// written if `readers_see_written`, else what is durable.
    pub(crate) fn new(
        written: u64,
        durable: u64,
        readers_see_written: bool,
        engine: Option<Arc<Engine>>,
    ) -> Watermarks {
        debug_assert!(durable <= written, "durable passed written");
        Watermarks {
            written: CachePadded::new(AtomicU64::new(written)),
            durable: CachePadded::new(AtomicU64::new(durable)),
            poisoned: AtomicBool::new(false),
            poison_gate: Mutex::new(()),
            sleepers: Mutex::new(Vec::new()),
            sleepers_count: AtomicU32::new(0),
            wakers: Mutex::new(Vec::new()),
            wakers_pending: AtomicBool::new(false),
            readers_see_written,
            followers: Mutex::new(Vec::new()),
            followers_count: AtomicU32::new(0),
            follower_wakers: Mutex::new(Vec::new()),
            follower_wakers_pending: AtomicBool::new(false),
            state: AtomicU32::new(OPEN),
            engine,
            wake_queued: AtomicBool::new(false),
            control: std::sync::OnceLock::new(),
        }
    }

    /// Attaches the control file (once): a writer's publishes go to it from now on.
    pub(crate) fn attach_control(&self, control: Control) -> Option<&Arc<Control>> {
        let _ = self.control.set(Arc::new(control));
        self.publish_control();
        self.control.get()
    }

    /// The control file, if one is attached.
    pub(crate) fn control(&self) -> Option<&Arc<Control>> {
        self.control.get()
    }

    /// Tells readers in other processes the watermarks moved.
    fn publish_control(&self) {
        if let Some(control) = self.control.get() {
            control.publish(self.written(), self.durable());
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(SeqCst)
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(SeqCst)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(SeqCst)
    }

    /// The read watermark: every record below it is readable.
    pub(crate) fn readable(&self) -> u64 {
        if self.readers_see_written {
            self.written()
        } else {
            self.durable()
        }
    }

    /// [`OPEN`], [`CLOSED`] or [`REMOVED`].
    pub(crate) fn state(&self) -> u32 {
        self.state.load(SeqCst)
    }

    /// The log was closed (or its topic removed, if `removed`): wakes every follower, to
    /// end. Records already readable stay so.
    pub(crate) fn close(&self, removed: bool) {
        self.state
            .fetch_max(if removed { REMOVED } else { CLOSED }, SeqCst);
        self.wake();
    }

    /// Whether nobody waits for anything (the common case: nothing to wake).
    fn nobody_waits(&self) -> bool {
        self.sleepers_count.load(SeqCst) == 0
            && !self.wakers_pending.load(SeqCst)
            && self.followers_count.load(SeqCst) == 0
            && !self.follower_wakers_pending.load(SeqCst)
    }

    /// With mapped writes: a producer's records below `offset` are complete in the page
    /// cache. Readers of this process see them at once; the control file (other
    /// processes' followers) and waiters hear of them at the committer's next
    /// [`Watermarks::announce_written`], so no append pays for a system call.
    pub(crate) fn advance_written(&self, offset: u64) {
        self.written.fetch_max(offset, SeqCst);
    }

    /// With mapped writes: publishes the written watermark the producers moved.
    pub(crate) fn announce_written(&self) {
        self.publish_control();
    }

    /// Moves the written watermark; wakes waiters now if `wake`, else the caller must
    /// call [`Watermarks::wake`] soon (it batches wake-ups behind the next flush).
    pub(crate) fn publish_written(&self, offset: u64, wake: bool) {
        let previous = self.written.fetch_max(offset, SeqCst);
        debug_assert!(previous <= offset, "written watermark moved backwards");
        if previous < offset {
            self.publish_control();
        }
        if wake {
            self.wake();
        }
    }

    /// Moves the durable watermark, unless the log is poisoned (atomically with respect
    /// to [`Watermarks::poison`]: nothing is acknowledged after the first failure, even
    /// by a flush that succeeded on another file description). Returns whether it
    /// moved; see [`Watermarks::publish_written`] for `wake`.
    #[must_use]
    pub(crate) fn publish_durable(&self, offset: u64, wake: bool) -> bool {
        debug_assert!(offset <= self.written(), "durable passed written");
        {
            let _gate = self.poison_gate.lock();
            if self.is_poisoned() {
                return false;
            }
            let previous = self.durable.fetch_max(offset, SeqCst);
            debug_assert!(previous <= offset, "durable watermark moved backwards");
        }
        self.publish_control();
        if wake {
            self.wake();
        }
        true
    }

    /// Moves the durable watermark to at least `offset` (a background flush, which may
    /// finish after a newer one) unless the log is poisoned, like
    /// [`Watermarks::publish_durable`]; wakes the waiters that became durable. Returns
    /// whether the log was not poisoned.
    #[must_use]
    pub(crate) fn publish_durable_unless_poisoned(self: &Arc<Self>, offset: u64) -> bool {
        debug_assert!(offset <= self.written(), "durable passed written");
        let _gate = self.poison_gate.lock();
        if self.is_poisoned() {
            return false;
        }
        if self.durable.fetch_max(offset, SeqCst) < offset {
            Watermarks::request_wake(self);
            self.publish_control();
        }
        true
    }

    /// After a truncation (or a restart past the end): both watermarks move to `offset`,
    /// down or up. The caller holds the commit lock and the background flusher, so
    /// nothing publishes meanwhile.
    pub(crate) fn reset_to(&self, offset: u64) {
        {
            let _gate = self.poison_gate.lock();
            self.written.store(offset, SeqCst);
            self.durable.store(offset, SeqCst);
        }
        self.publish_control();
    }

    /// Marks the log poisoned and wakes every waiter; no watermark moves after this.
    pub(crate) fn poison(&self) {
        {
            let _gate = self.poison_gate.lock();
            self.poisoned.store(true, SeqCst);
        }
        self.wake();
    }

    /// Asks the engine's waker thread to wake everyone whose offset is durable: the
    /// committer then does not pay for waking dozens of threads (each wake-up can
    /// preempt it) between two flushes.
    pub(crate) fn request_wake(marks: &Arc<Watermarks>) {
        if marks.nobody_waits() {
            return;
        }
        match &marks.engine {
            Some(engine) => engine.wakes.request(marks),
            None => marks.wake(),
        }
    }

    /// Wakes every blocked producer and async ticket whose offset is durable (all of
    /// them once the log is poisoned), and every follower whose offset is readable (all
    /// of them once the log is poisoned or closed).
    pub(crate) fn wake(&self) {
        self.wake_followers();
        if self.sleepers_count.load(SeqCst) > 0 {
            let poisoned = self.is_poisoned();
            let durable = self.durable();
            let mut ready = Vec::new();
            {
                let mut sleepers = self.sleepers.lock();
                sleepers.retain(|(target, parker)| {
                    let done = poisoned || *target < durable;
                    if done {
                        ready.push(parker.clone());
                    }
                    !done
                });
                self.sleepers_count.store(sleepers.len() as u32, SeqCst);
            }
            for parker in ready {
                parker.word().store(1, SeqCst);
                parker.wake_one();
            }
        }
        if self.wakers_pending.load(SeqCst) {
            let mut wakers = self.wakers.lock();
            let poisoned = self.is_poisoned();
            let durable = self.durable();
            wakers.retain(|(target, waker)| {
                let done = poisoned || *target < durable;
                if done {
                    waker.wake_by_ref();
                }
                !done
            });
            self.wakers_pending.store(!wakers.is_empty(), SeqCst);
        }
    }

    /// Wakes the followers whose offset is readable (all once poisoned or closed).
    fn wake_followers(&self) {
        let all = || self.is_poisoned() || self.state() != OPEN;
        if self.followers_count.load(SeqCst) > 0 {
            let all = all();
            let readable = self.readable();
            let mut ready = Vec::new();
            {
                let mut followers = self.followers.lock();
                followers.retain(|(target, parker)| {
                    let done = all || *target < readable;
                    if done {
                        ready.push(parker.clone());
                    }
                    !done
                });
                self.followers_count.store(followers.len() as u32, SeqCst);
            }
            for parker in ready {
                parker.word().store(1, SeqCst);
                parker.wake_one();
            }
        }
        if self.follower_wakers_pending.load(SeqCst) {
            let mut wakers = self.follower_wakers.lock();
            let all = all();
            let readable = self.readable();
            wakers.retain(|(target, waker)| {
                let done = all || *target < readable;
                if done {
                    waker.wake_by_ref();
                }
                !done
            });
            self.follower_wakers_pending
                .store(!wakers.is_empty(), SeqCst);
        }
    }

    /// Whether a follower waiting for `offset` need wait no longer: it is readable, or
    /// the log is poisoned or closed.
    fn follower_ready(&self, offset: u64) -> bool {
        self.readable() > offset || self.is_poisoned() || self.state() != OPEN
    }

    /// Blocks until `offset` is readable, or the log is poisoned or closed (true), or
    /// `deadline` passes (false). Sleeps on this thread's futex; whoever moves the read
    /// watermark wakes it (see [`Watermarks::wake`]).
    pub(crate) fn wait_readable(&self, offset: u64, deadline: Option<Instant>) -> bool {
        let parker = thread_parker();
        loop {
            if self.follower_ready(offset) {
                return true;
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return false,
                },
            };
            parker.word().store(0, SeqCst);
            {
                let mut followers = self.followers.lock();
                followers.push((offset, parker.clone()));
                self.followers_count.store(followers.len() as u32, SeqCst);
            }
            // Published before we registered? Then no wake may come: look again.
            if !self.follower_ready(offset) {
                match timeout {
                    None => parker.wait(0),
                    Some(left) => parker.wait_for(0, left),
                }
            }
            if parker.word().load(SeqCst) == 0 {
                // Not woken (ready before sleeping, timed out, or spurious): still
                // registered, unless a wake is taking it out right now.
                self.unregister_follower(&parker);
            }
        }
    }

    fn unregister_follower(&self, parker: &Arc<Futex>) {
        let mut followers = self.followers.lock();
        followers.retain(|(_, p)| !Arc::ptr_eq(p, parker));
        self.followers_count.store(followers.len() as u32, SeqCst);
    }

    /// Registers `waker` to be woken once `offset` is readable (or the log is poisoned
    /// or closed).
    pub(crate) fn register_follower(&self, offset: u64, waker: &Waker) {
        let mut wakers = self.follower_wakers.lock();
        match wakers
            .iter_mut()
            .find(|(o, w)| *o == offset && w.will_wake(waker))
        {
            Some(_) => {}
            None => wakers.push((offset, waker.clone())),
        }
        self.follower_wakers_pending.store(true, SeqCst);
    }

    /// Blocks until `offset` is durable (true) or the log is poisoned (false).
    pub(crate) fn wait_durable(&self, offset: u64) -> bool {
        let parker = thread_parker();
        loop {
            if self.durable() > offset {
                return true;
            }
            if self.is_poisoned() {
                return false;
            }
            parker.word().store(0, SeqCst);
            {
                let mut sleepers = self.sleepers.lock();
                sleepers.push((offset, parker.clone()));
                self.sleepers_count.store(sleepers.len() as u32, SeqCst);
            }
            // Published before we registered? Then no wake may come: look again.
            if self.durable() > offset || self.is_poisoned() {
                continue;
            }
            parker.wait(0);
        }
    }

    /// Registers `waker` to be woken once `offset` is durable (or the log poisoned).
    pub(crate) fn register(&self, offset: u64, waker: &Waker) {
        let mut wakers = self.wakers.lock();
        match wakers
            .iter_mut()
            .find(|(o, w)| *o == offset && w.will_wake(waker))
        {
            Some(_) => {}
            None => wakers.push((offset, waker.clone())),
        }
        self.wakers_pending.store(true, SeqCst);
    }
}

/// [`Watermarks::state`]: the log is open.
pub(crate) const OPEN: u32 = 0;
/// [`Watermarks::state`]: the log was closed.
pub(crate) const CLOSED: u32 = 1;
/// [`Watermarks::state`]: the log was closed as its topic was removed from its store.
pub(crate) const REMOVED: u32 = 2;
