//! The engine: the threads every log of a store shares, whatever the number of logs.
//!
//! Three threads serve all of an engine's logs ("topics"); a log opened alone with
//! `Log::open` gets an engine of its own.
//!
//! - **Writer.** Commits what producers staged. A topic with work is put on the ready
//!   list (once: [`Shared::writer_queued`]); a topic that waits for a small unsynced batch
//!   to grow, or for an `Interval` flush to come due, is put on the timed list. When one
//!   topic is ready the writer runs its pipelined commit (as a log of its own would);
//!   when several are, it runs one *cycle* over them: every topic's staged chunks are
//!   written, then every file that needs it is flushed, the flushes issued together (one
//!   io_uring submission on a store's ring), then each topic publishes what its flush
//!   covered. So durable appends to different topics share flush cycles.
//! - **Housekeeper.** Runs topics' chores (spare preparation, checkpoints, write bounds,
//!   background flushes, sealed indexes), one topic at a time in the order asked for;
//!   while it zero-fills a spare it runs every queued topic's urgent chores between
//!   chunks.
//! - **Waker.** Wakes producers blocked on a durable watermark, for every topic whose
//!   watermark moved (see [`WakeHub`]), off the writer's path.
//!
//! Lock order: a topic's commit lock, then its staging lock, then the engine's queue
//! locks. The engine never takes a topic lock while it holds a queue lock; the writer
//! holds several topics' commit locks only in a cycle (nobody else ever holds two, nor
//! waits for an engine thread while holding one, so this cannot deadlock).

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::io::Backend;
use crate::sync::{self, AtomicBool, Condvar, Futex, JoinHandle, Mutex};
use crate::watermark::Watermarks;
use crate::writer::{Service, Shared};

/// Topics the writer thread must look at.
#[derive(Default)]
struct WriterQueue {
    /// To service now.
    ready: Vec<Arc<Shared>>,
    /// To service at (or after) a moment: a lazy unsynced batch, an interval flush.
    timed: Vec<(Instant, Arc<Shared>)>,
    stop: bool,
}

/// Topics with chores for the housekeeper.
#[derive(Default)]
struct ChoreQueue {
    topics: std::collections::VecDeque<Arc<Shared>>,
    stop: bool,
}

/// Threads and queues shared by every log of a store.
pub(crate) struct Engine {
    writer: Mutex<WriterQueue>,
    writer_cv: Condvar,
    chores: Mutex<ChoreQueue>,
    chores_cv: Condvar,
    pub(crate) wakes: WakeHub,
    /// A store's own backend for the flushes of a multi-topic cycle (its io_uring ring,
    /// when there is one). `None` for a log's own engine: its one topic flushes through
    /// its committer's backend.
    ring: Option<Mutex<Box<dyn Backend>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) counters: EngineCounters,
}

/// What the engine's writer did (see `Store::stats`).
#[derive(Default)]
pub(crate) struct EngineCounters {
    /// Turns of the writer for one log alone.
    pub(crate) commits_alone: std::sync::atomic::AtomicU64,
    /// Cycles over several logs that flushed at least one file.
    pub(crate) flush_cycles: std::sync::atomic::AtomicU64,
    /// Files flushed in those cycles.
    pub(crate) cycle_fsyncs: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// Starts the engine's three threads. `ring` is the store's backend (see
    /// [`Engine::ring`]).
    pub(crate) fn start(ring: Option<Box<dyn Backend>>) -> Result<Arc<Engine>> {
        let engine = Arc::new(Engine {
            writer: Mutex::new(WriterQueue::default()),
            writer_cv: Condvar::new(),
            chores: Mutex::new(ChoreQueue::default()),
            chores_cv: Condvar::new(),
            wakes: WakeHub::new(),
            ring: ring.map(Mutex::new),
            threads: Mutex::new(Vec::new()),
            counters: EngineCounters::default(),
        });
        for (name, body) in [
            ("ringlog-writer", Engine::writer_loop as fn(&Engine)),
            ("ringlog-housekeeper", Engine::housekeeper_loop),
            ("ringlog-waker", Engine::waker_loop),
        ] {
            let for_thread = engine.clone();
            match sync::spawn(name, move || body(&for_thread)) {
                Ok(handle) => engine.threads.lock().push(handle),
                Err(e) => {
                    engine.stop();
                    return Err(Error::io("spawn thread", name, e));
                }
            }
        }
        Ok(engine)
    }

    /// Stops the threads once their queues are empty of work that can run, and joins
    /// them. Every topic must have been shut down first.
    pub(crate) fn stop(&self) {
        self.writer.lock().stop = true;
        self.writer_cv.notify_all();
        self.chores.lock().stop = true;
        self.chores_cv.notify_all();
        self.wakes.stop();
        let threads = std::mem::take(&mut *self.threads.lock());
        for handle in threads {
            let _ = handle.join();
        }
        // What the stopped threads left queued (logs parked with a timeout) would keep
        // those logs, and through them this engine, alive.
        let mut writer = self.writer.lock();
        writer.ready.clear();
        writer.timed.clear();
        drop(writer);
        self.chores.lock().topics.clear();
        self.wakes.queue.lock().clear();
    }

    /// Has the writer look at `topic` now.
    pub(crate) fn schedule_writer(&self, topic: Arc<Shared>) {
        if topic.writer_queued.swap(true, SeqCst) {
            return;
        }
        self.writer.lock().ready.push(topic);
        self.writer_cv.notify_one();
    }

    /// Has the writer look at `topic` at `at`.
    fn schedule_writer_at(&self, at: Instant, topic: Arc<Shared>) {
        let mut queue = self.writer.lock();
        if let Some(entry) = queue.timed.iter_mut().find(|(_, t)| Arc::ptr_eq(t, &topic)) {
            entry.0 = entry.0.min(at);
        } else {
            queue.timed.push((at, topic));
        }
        drop(queue);
        self.writer_cv.notify_one();
    }

    /// Drops `topic` from every queue: it was shut down, and a queued reference would keep
    /// its files and mappings open (an `Interval` topic's deadline can be a while away).
    pub(crate) fn forget(&self, topic: &Shared) {
        let is = |t: &Arc<Shared>| std::ptr::eq(Arc::as_ptr(t), topic);
        {
            let mut queue = self.writer.lock();
            queue.ready.retain(|t| !is(t));
            queue.timed.retain(|(_, t)| !is(t));
        }
        self.chores.lock().topics.retain(|t| !is(t));
    }

    /// Whether other topics wait for the writer (a long pipelined commit of one topic
    /// then yields to them).
    pub(crate) fn others_ready(&self) -> bool {
        self.writer
            .try_lock()
            .is_some_and(|queue| !queue.ready.is_empty())
    }

    /// Has the housekeeper run `topic`'s chores.
    pub(crate) fn schedule_chores(&self, topic: Arc<Shared>) {
        if topic.chores_queued.swap(true, SeqCst) {
            return;
        }
        self.chores.lock().topics.push_back(topic);
        self.chores_cv.notify_one();
    }

    /// The urgent chores of every other topic waiting for the housekeeper: run between
    /// the chunks of a long spare preparation of `current`.
    pub(crate) fn urgent_chores(&self, current: &Shared) {
        let waiting: Vec<Arc<Shared>> = self.chores.lock().topics.iter().cloned().collect();
        for topic in waiting {
            if !std::ptr::eq(Arc::as_ptr(&topic), current) {
                topic.urgent_chores();
            }
        }
    }

    fn writer_loop(&self) {
        loop {
            let batch = {
                let mut queue = self.writer.lock();
                loop {
                    if !queue.ready.is_empty() {
                        break std::mem::take(&mut queue.ready);
                    }
                    let now = Instant::now();
                    if queue.timed.iter().any(|(at, _)| *at <= now) {
                        let (due, later) = std::mem::take(&mut queue.timed)
                            .into_iter()
                            .partition(|(at, _)| *at <= now);
                        queue.timed = later;
                        break due.into_iter().map(|(_, t)| t).collect();
                    }
                    if queue.stop {
                        return;
                    }
                    match queue.timed.iter().map(|(at, _)| *at).min() {
                        Some(earliest) => {
                            self.writer_cv
                                .wait_for(&mut queue, earliest.saturating_duration_since(now));
                            // Returned early or on time: the earliest one is looked at
                            // either way (a topic looked at early commits what it has,
                            // as a lazy writer woken early does).
                            if queue.ready.is_empty() {
                                if let Some(at) =
                                    queue.timed.iter().position(|(a, _)| *a == earliest)
                                {
                                    let (_, topic) = queue.timed.swap_remove(at);
                                    queue.ready.push(topic);
                                }
                            }
                        }
                        None => self.writer_cv.wait(&mut queue),
                    }
                }
            };
            let mut batch = batch;
            dedup_topics(&mut batch);
            for topic in &batch {
                topic.writer_queued.store(false, SeqCst);
            }
            let serviced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if batch.len() == 1 {
                    self.counters.commits_alone.fetch_add(1, Relaxed);
                    vec![batch[0].service(self)]
                } else {
                    Shared::service_cycle(&batch, self)
                }
            }));
            let outcomes = match serviced {
                Ok(outcomes) => outcomes,
                Err(_) => {
                    // A bug: producers of these logs must not wait forever, and the
                    // other logs of the store go on.
                    for topic in &batch {
                        topic.poison(Error::Poisoned {
                            cause: "the writer thread panicked".into(),
                        });
                    }
                    continue;
                }
            };
            for (topic, outcome) in batch.into_iter().zip(outcomes) {
                match outcome {
                    Service::Again => self.schedule_writer(topic),
                    Service::Park(Some(at)) => self.schedule_writer_at(at, topic),
                    Service::Park(None) | Service::Stopped => {}
                }
            }
        }
    }

    fn housekeeper_loop(&self) {
        loop {
            let topic = {
                let mut queue = self.chores.lock();
                loop {
                    if let Some(topic) = queue.topics.pop_front() {
                        break topic;
                    }
                    if queue.stop {
                        return;
                    }
                    self.chores_cv.wait(&mut queue);
                }
            };
            topic.chores_queued.store(false, SeqCst);
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                topic.run_chores(self);
            }));
            if ran.is_err() {
                // A bug: this topic's appenders (waiting for a spare, say) must not wait
                // forever, and the other topics' chores go on.
                topic.poison(Error::Poisoned {
                    cause: "the housekeeper thread panicked".into(),
                });
            }
        }
    }

    fn waker_loop(&self) {
        self.wakes.run();
    }

    /// Flushes `files` (one per topic of a cycle) together through the store's ring;
    /// `None` when the engine has no ring (a log's own engine).
    pub(crate) fn sync_many(&self, files: &[&std::fs::File]) -> Option<Vec<std::io::Result<()>>> {
        let ring = self.ring.as_ref()?;
        self.counters.flush_cycles.fetch_add(1, Relaxed);
        self.counters
            .cycle_fsyncs
            .fetch_add(files.len() as u64, Relaxed);
        Some(ring.lock().sync_many(files))
    }
}

/// Removes repeated topics, keeping the first of each.
fn dedup_topics(topics: &mut Vec<Arc<Shared>>) {
    let mut seen: Vec<*const Shared> = Vec::with_capacity(topics.len());
    topics.retain(|t| {
        let p = Arc::as_ptr(t);
        if seen.contains(&p) {
            false
        } else {
            seen.push(p);
            true
        }
    });
}

/// The waker thread's queue: watermarks whose waiters may be ready.
///
/// A flush's committer asks for a wake ([`WakeHub::request`]) instead of waking blocked
/// producers itself: waking 30+ threads from the committer cost ~380 µs per batch on
/// two cores, twice a flush; the waker thread does it while the next flush runs.
pub(crate) struct WakeHub {
    queue: Mutex<Vec<Arc<Watermarks>>>,
    /// Bumped to ask the waker thread to look at the queue.
    requests: Futex,
    stop: AtomicBool,
}

impl WakeHub {
    fn new() -> WakeHub {
        WakeHub {
            queue: Mutex::new(Vec::new()),
            requests: Futex::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Asks the waker thread to wake `marks`' waiters whose offsets are durable.
    pub(crate) fn request(&self, marks: &Arc<Watermarks>) {
        if !marks.wake_queued.swap(true, SeqCst) {
            self.queue.lock().push(marks.clone());
        }
        self.requests.word().fetch_add(1, SeqCst);
        self.requests.wake_one();
    }

    fn run(&self) {
        let mut seen = self.requests.word().load(SeqCst);
        loop {
            let batch = std::mem::take(&mut *self.queue.lock());
            for marks in batch {
                // Cleared first: a request that comes meanwhile queues it again.
                marks.wake_queued.store(false, SeqCst);
                // A panicking `Waker` (an executor's) must not stop the wake-ups of every
                // other topic: the waiters it left are woken at the next request.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| marks.wake()));
            }
            if self.stop.load(SeqCst) && self.queue.lock().is_empty() {
                return;
            }
            self.requests.wait(seen);
            seen = self.requests.word().load(SeqCst);
        }
    }

    fn stop(&self) {
        self.stop.store(true, SeqCst);
        self.requests.word().fetch_add(1, SeqCst);
        self.requests.wake_one();
    }
}
