//! A store: many named logs (topics) in one directory, under one writer lock.
//!
//! ```text
//! mystore/
//!   ringlog.store          marks the directory as a store (format version)
//!   ringlog.lock           the one writer lock (flock), holding the writer's pid
//!   topics/
//!     orders/              a topic: a log directory in the single-log format
//!       topic.options      the options it was created with (or "the store's")
//!       00000000000000000000.seg ...
//!     +new+audit/          a creation a crash interrupted (removed at open)
//!     +gone+jobs.42+<n>/   a removal a crash interrupted (removed at open)
//! ```
//!
//! A topic directory holds exactly what a single log's directory holds (segments, index
//! files) plus its options file, so one recovery, one reader and one `verify` serve
//! both. A topic is created in a temporary directory that is complete (options file and
//! first segment synced) before it is renamed into place and the rename made durable:
//! after a crash a topic either exists whole or not at all. Removal renames the
//! directory away (durably) before deleting anything, so a removed topic never comes
//! back half. Topic names never contain `+`, so temporary names cannot collide with
//! them.

mod describe;
mod meta;
mod name;

pub use describe::{Description, TopicDescription};

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::io::{self, Backend};
use crate::log::{Log, LogCore};
use crate::open::Access;
use crate::options::Options;
use crate::segment::sync_dir;

use meta::{decode_topic_options, encode_topic_options, TopicOptions, STORE_MARKER};
pub(crate) use meta::{STORE_MARKER_FILE, TOPICS_DIR, TOPIC_OPTIONS_FILE};
pub(crate) use name::{check_topic_name, TOPIC_NAME_MAX_BYTES};

/// Most open topics that no handle refers to (idle) a store keeps open: past it, the
/// least recently asked for are closed, letting go of their file descriptor, mapping
/// and memory (the next `topic()` opens them again). Well under the common 1,024
/// descriptors a process may open.
const IDLE_TOPICS_MAX: usize = 256;

/// An idle topic not asked for in this long is closed (looked at, at most once a second,
/// when a topic is asked for).
const IDLE_TOPIC_TIMEOUT: Duration = Duration::from_secs(30);

/// The topics a store has open, and when each was last asked for.
#[derive(Default)]
struct OpenTopics {
    topics: HashMap<String, OpenTopic>,
    /// Counts `topic()` calls: the order topics were last asked for.
    asked: u64,
    /// When idle topics were last looked at.
    swept: Option<Instant>,
}

struct OpenTopic {
    core: Arc<LogCore>,
    last_asked: u64,
    last_asked_at: Instant,
}

impl OpenTopics {
    fn get(&mut self, name: &str) -> Option<&Arc<LogCore>> {
        self.asked += 1;
        let asked = self.asked;
        self.topics.get_mut(name).map(|topic| {
            topic.last_asked = asked;
            topic.last_asked_at = Instant::now();
            &topic.core
        })
    }

    fn insert(&mut self, name: String, core: Arc<LogCore>) {
        self.asked += 1;
        let last_asked = self.asked;
        self.topics.insert(
            name,
            OpenTopic {
                core,
                last_asked,
                last_asked_at: Instant::now(),
            },
        );
    }

    fn remove(&mut self, name: &str) -> Option<Arc<LogCore>> {
        self.topics.remove(name).map(|topic| topic.core)
    }

    /// Closes topics that no handle refers to (idle) and that were not asked for in
    /// [`IDLE_TOPIC_TIMEOUT`], and the least recently asked for idle ones while more than
    /// [`IDLE_TOPICS_MAX`] are open. Only the store holds an idle topic (handles are made
    /// under the store's lock, or cloned from one), so nobody can be using it.
    fn close_idle(&mut self) {
        let now = Instant::now();
        let due = self
            .swept
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if !due && self.topics.len() <= IDLE_TOPICS_MAX {
            return;
        }
        self.swept = Some(now);
        let mut idle: Vec<(u64, Instant, String)> = self
            .topics
            .iter()
            .filter(|(_, topic)| Arc::strong_count(&topic.core) == 1)
            .map(|(name, topic)| (topic.last_asked, topic.last_asked_at, name.clone()))
            .collect();
        idle.sort_unstable();
        let excess = idle.len().saturating_sub(IDLE_TOPICS_MAX);
        let to_close: Vec<String> = idle
            .into_iter()
            .enumerate()
            .filter(|(i, (_, at, _))| *i < excess || now.duration_since(*at) >= IDLE_TOPIC_TIMEOUT)
            .map(|(_, (_, _, name))| name)
            .collect();
        for name in to_close {
            if let Some(core) = self.remove(&name) {
                // Its data is durable as far as its durability mode promised; a failed
                // final flush poisoned it already and is reported to nobody here: the
                // next open recovers it from disk.
                let _ = core.close();
            }
        }
    }

    fn open_count(&self) -> u64 {
        self.topics
            .values()
            .filter(|topic| !topic.core.is_closed())
            .count() as u64
    }
}

/// Prefix of a topic directory being created.
const CREATING_PREFIX: &str = "+new+";
/// Prefix of a topic directory being removed.
const REMOVING_PREFIX: &str = "+gone+";

/// Many named logs ("topics") in one directory, under one writer lock.
///
/// Every topic is a [`Log`] with its own dense offsets from 0: every method of `Log`
/// works on it. Topics are created on first use, durably. `Store` is a cheap handle
/// (`Clone + Send + Sync`); dropping the last handle closes every topic, as
/// [`Store::close`] does. Dropping a topic's handles closes nothing.
///
/// ```
/// use ringlog::{Durability, Options, Store};
///
/// # fn main() -> ringlog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default())?;
/// let orders = store.topic("orders")?;                // created, durably, on first use
/// assert_eq!(orders.append(b"order 1")?, 0);            // offsets are per topic
/// let audit = store.topic_with(
///     "audit",
///     Options::default().segment_bytes(1 << 20).durability(Durability::None),
/// )?;                                                   // its own options, persisted
/// assert_eq!(audit.append(b"login")?, 0);
/// assert_eq!(store.topics()?, ["audit", "orders"]);
/// store.remove_topic("audit")?;                         // durable; its handles get Closed
/// assert!(audit.append(b"late").is_err());
/// store.close()?;
///
/// let store = Store::open(dir.path(), Options::default())?;
/// assert_eq!(store.topic("orders")?.read(0)?.payload(), b"order 1");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    dir: PathBuf,
    topics_dir: PathBuf,
    /// Every topic's defaults.
    opts: Options,
    read_only: bool,
    /// The store's writer lock (`None` when read-only or closed).
    lock: Mutex<Option<File>>,
    /// The threads (and the io_uring ring) every topic shares (`None` when read-only).
    engine: Option<Arc<Engine>>,
    /// Gives each topic its backend for writes and flushes.
    backends: Option<Mutex<Backends>>,
    /// Open topics. Held while a topic is opened, created or removed, so that those
    /// never race for one name.
    open: Mutex<OpenTopics>,
    closed: AtomicBool,
    /// `Store::in_memory`: its directory, removed after the close.
    ephemeral: parking_lot::Mutex<Option<crate::memory::EphemeralDir>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("read_only", &self.inner.read_only)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir`, creating the directory and an empty store if needed,
    /// and takes its writer lock. Topics are opened (and recovered) when first asked
    /// for, so opening a store costs the same whatever the number of topics.
    ///
    /// `opts` are every topic's defaults; [`Store::topic_with`] gives a topic its own.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`]; [`Error::Locked`] if another writer has the store;
    /// [`Error::WrongKind`] if `dir` holds a single log; [`Error::Io`].
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Store> {
        let (backend, fallback) = io::select(opts.io).map_err(|e| {
            Error::InvalidOptions(format!(
                "IoBackend::Uring was requested but io_uring cannot be used: {e}"
            ))
        })?;
        Store::open_inner(dir.as_ref(), opts, backend, fallback)
    }

    /// Like [`Store::open`], with every topic's I/O going through `backend` (each topic
    /// gets a companion of it): a simulated disk for crash tests. Not a stable API.
    #[doc(hidden)]
    pub fn open_with_backend(
        dir: impl AsRef<Path>,
        opts: Options,
        backend: Box<dyn Backend>,
    ) -> Result<Store> {
        Store::open_inner(dir.as_ref(), opts, backend, None)
    }

    fn open_inner(
        dir: &Path,
        mut opts: Options,
        backend: Box<dyn Backend>,
        fallback: Option<String>,
    ) -> Result<Store> {
        opts.validate()?;
        opts.segment_growth.get_or_insert(true);
        let dir = dir.to_path_buf();
        refuse_single_log_dir(&dir)?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let lock = crate::log::lock_dir(&dir)?;
        let marker = dir.join(STORE_MARKER_FILE);
        let existing = match std::fs::read(&marker) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("read store marker", &marker, e)),
        };
        match existing {
            // An empty marker and no topic yet: a first open that a crash cut short
            // (before the marker was written under another name and renamed, an empty
            // one could be left behind): finish it.
            Some(bytes) if !bytes.is_empty() || has_entries(&dir.join(TOPICS_DIR)) => {
                check_marker(&marker, &bytes)?
            }
            _ => write_marker(&dir)?,
        }
        let topics_dir = dir.join(TOPICS_DIR);
        match std::fs::create_dir(&topics_dir) {
            Ok(()) => sync_dir(&dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create directory", &topics_dir, e)),
        }
        remove_leftovers(&topics_dir)?;
        let backends = Backends {
            source: backend.companion(),
            kind: backend.kind(),
            fallback,
        };
        let engine = Engine::start(Some(backend))?;
        Ok(Store::new(
            dir,
            topics_dir,
            opts,
            Some(lock),
            Some((engine, backends)),
        ))
    }

    /// Opens the store in `dir` for reading only, beside a writer in this or another
    /// process: no lock is taken and nothing on disk changes. [`Store::topics`] lists
    /// what is there at each call; [`Store::topic`] opens a topic read-only (see
    /// [`Log::open_read_only`]).
    ///
    /// # Errors
    ///
    /// [`Error::WrongKind`] if `dir` is not a store; [`Error::Io`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let marker = dir.join(STORE_MARKER_FILE);
        match std::fs::read(&marker) {
            Ok(bytes) => check_marker(&marker, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::WrongKind {
                    reason: format!(
                        "holds no ringlog store (no {STORE_MARKER_FILE}); check the path"
                    ),
                    path: dir,
                })
            }
            Err(e) => return Err(Error::io("read store marker", &marker, e)),
        }
        let topics_dir = dir.join(TOPICS_DIR);
        Ok(Store::new(dir, topics_dir, Options::default(), None, None))
    }

    /// A writable store has its lock, engine and backends; a read-only one none.
    fn new(
        dir: PathBuf,
        topics_dir: PathBuf,
        opts: Options,
        lock: Option<File>,
        engine: Option<(Arc<Engine>, Backends)>,
    ) -> Store {
        let (engine, backends) = match engine {
            Some((engine, backends)) => (Some(engine), Some(Mutex::new(backends))),
            None => (None, None),
        };
        Store {
            inner: Arc::new(StoreInner {
                dir,
                topics_dir,
                opts,
                read_only: engine.is_none(),
                lock: Mutex::new(lock),
                engine,
                backends,
                open: Mutex::new(OpenTopics::default()),
                closed: AtomicBool::new(false),
                ephemeral: Default::default(),
            }),
        }
    }

    /// The topic `name`, created (with the store's options) if it does not exist yet;
    /// durable when it returns. Every call for one name gives a handle on the same
    /// topic. A topic created with [`Store::topic_with`] keeps its own options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`]; [`Error::Closed`] after [`Store::close`];
    /// [`Error::UnknownTopic`] for a read-only store without it; what
    /// [`Log::open`] returns for a damaged topic.
    pub fn topic(&self, name: &str) -> Result<Log> {
        self.topic_inner(name, TopicOptions::Store, true)
    }

    /// The topic `name` if the store holds it (never created): `None` when it does not.
    pub(crate) fn existing_topic(&self, name: &str) -> Result<Option<Log>> {
        match self.topic_inner(name, TopicOptions::Store, false) {
            Ok(log) => Ok(Some(log)),
            Err(Error::UnknownTopic { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Copies the store into `dest` (a new or empty directory) without stopping its
    /// writer: `ringlog.store`, and each topic with its `topic.options`, copied as
    /// [`Log::backup`] copies a log (each topic from a snapshot of its own, taken in
    /// turn: the topics are not copied at one common moment). The copy opens with
    /// [`Store::open`] and each topic verifies clean. Topics are opened to be copied
    /// (the store closes idle ones as usual); a topic removed during the backup is left
    /// out, or copied as it was before its removal. On a read-only store, each topic is
    /// copied as a read-only [`Log::backup`] does.
    ///
    /// ```
    /// use ringlog::{Options, Store};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path().join("live"), Options::default())?;
    /// store.topic("orders")?.append(b"order 1")?;
    /// store.topic("audit")?.append(b"login")?;
    /// let report = store.backup(dir.path().join("copy"))?;
    /// assert_eq!(report.logs.len(), 2);
    /// let copy = Store::open(dir.path().join("copy"), Options::default())?;
    /// assert_eq!(copy.topic("orders")?.read(0)?.payload(), b"order 1");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BackupDestination`] if `dest` is not empty (or not a directory);
    /// [`Error::Closed`] after [`Store::close`]; what [`Log::backup`] returns, or
    /// opening a damaged topic does; [`Error::Io`].
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<crate::BackupReport> {
        if self.inner.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        crate::backup::backup_store(self, dest.as_ref())
    }

    /// The topic `name`, created with its own options `opts` if it does not exist yet
    /// (persisted with it: reopening it, by either method, uses them). The I/O backend
    /// is the store's.
    ///
    /// # Errors
    ///
    /// As [`Store::topic`]; [`Error::InvalidOptions`] if `opts` are invalid, or if the
    /// topic exists with other options.
    pub fn topic_with(&self, name: &str, opts: Options) -> Result<Log> {
        opts.validate()?;
        let opts = Options {
            io: self.inner.opts.io,
            segment_growth: Some(opts.segment_growth.unwrap_or(true)),
            ..opts
        };
        self.topic_inner(name, TopicOptions::Own(opts), true)
    }

    fn topic_inner(&self, name: &str, wanted: TopicOptions, create: bool) -> Result<Log> {
        check_topic_name(name)?;
        let inner = &self.inner;
        let mut open = inner.open.lock();
        if inner.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        let dir = inner.topics_dir.join(name);
        if let Some(core) = open.get(name).cloned() {
            if !core.is_closed() {
                if let TopicOptions::Own(wanted) = &wanted {
                    let persisted = self.read_topic_options(name, &dir)?;
                    check_same_options(name, &persisted, wanted)?;
                }
                let log = Log::from_arc(core);
                open.close_idle();
                return Ok(log);
            }
            // Closed through one of its handles: wait for that close to finish (it may
            // still be flushing) before the topic is opened again.
            let _ = core.close();
            open.remove(name);
        }
        let exists = self.topic_exists(name, &dir)?;
        if !exists && (inner.read_only || !create) {
            return Err(Error::UnknownTopic {
                name: name.to_string(),
                store: inner.dir.clone(),
            });
        }
        let log = if inner.read_only {
            Log::open_read_only(&dir, Options::default())?
        } else {
            if !exists {
                self.create_topic(name, &wanted)?;
            }
            let persisted = self.read_topic_options(name, &dir)?;
            if let TopicOptions::Own(wanted) = &wanted {
                check_same_options(name, &persisted, wanted)?;
            }
            let (Some(engine), Some(backends)) = (&inner.engine, &inner.backends) else {
                return Err(Error::Closed);
            };
            let (backend, reported) = {
                let backends = backends.lock();
                (
                    backends.source.companion(),
                    (backends.kind, backends.fallback.clone()),
                )
            };
            Log::open_topic(&dir, persisted, backend, reported, engine.clone())?
        };
        open.insert(name.to_string(), log.core().clone());
        open.close_idle();
        Ok(log)
    }

    /// Whether `dir` holds the topic `name`; a file or a foreign directory in its place
    /// is an error, never overwritten.
    fn topic_exists(&self, name: &str, dir: &Path) -> Result<bool> {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat topic directory", dir, e)),
            Ok(meta) if !meta.is_dir() => Err(Error::InvalidTopic {
                name: name.to_string(),
                reason: format!(
                    "{} is not a directory; move it out of the store",
                    dir.display()
                ),
            }),
            Ok(_) if !dir.join(TOPIC_OPTIONS_FILE).exists() => Err(Error::InvalidTopic {
                name: name.to_string(),
                reason: format!(
                    "{} is a directory without {TOPIC_OPTIONS_FILE}, not a topic; move it out of the store",
                    dir.display()
                ),
            }),
            Ok(_) => Ok(true),
        }
    }

    /// The options a topic runs with: its own, or the store's.
    fn read_topic_options(&self, name: &str, dir: &Path) -> Result<Options> {
        let path = dir.join(TOPIC_OPTIONS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read topic options", &path, e))?;
        let persisted = decode_topic_options(&bytes, &self.inner.opts).map_err(|reason| {
            Error::corruption(
                &path,
                0,
                format!("the options file of topic {name:?} is damaged: {reason}"),
            )
        })?;
        Ok(match persisted {
            TopicOptions::Store => self.inner.opts.clone(),
            TopicOptions::Own(opts) => opts,
        })
    }

    /// Creates topic `name` whole, or not at all (see the module documentation).
    fn create_topic(&self, name: &str, options: &TopicOptions) -> Result<()> {
        let topics_dir = &self.inner.topics_dir;
        let tmp = topics_dir.join(format!("{CREATING_PREFIX}{name}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
        }
        let result = (|| {
            std::fs::create_dir(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
            write_synced(
                &tmp.join(TOPIC_OPTIONS_FILE),
                encode_topic_options(options).as_bytes(),
            )?;
            let engine_opts = match options {
                TopicOptions::Store => &self.inner.opts,
                TopicOptions::Own(opts) => opts,
            };
            // The first segment, so that a topic directory is always a complete log
            // (its preparation syncs the file and the directory).
            let mut backend = crate::io::PwriteBackend::default();
            let created = crate::open::recover(&tmp, engine_opts, Access::Write, &mut backend)?;
            // And its clean checkpoint (synced), so that the first open trusts the
            // empty segment instead of searching all of it for data.
            if let Some(first) = created.segments.first() {
                first.persist_index(&tmp, crate::format::SEGMENT_HEADER_BYTES, 0, true, 0)?;
            }
            drop(created);
            let dir = topics_dir.join(name);
            std::fs::rename(&tmp, &dir).map_err(|e| Error::io("rename topic directory", &dir, e))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        sync_dir(topics_dir)
    }

    /// Every topic's name, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the store's directory cannot be read.
    pub fn topics(&self) -> Result<Vec<String>> {
        let topics_dir = &self.inner.topics_dir;
        let entries = match std::fs::read_dir(topics_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.inner.read_only => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(Error::io("read directory", topics_dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", topics_dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = entry.path();
            if check_topic_name(&name).is_ok()
                && path.is_dir()
                && path.join(TOPIC_OPTIONS_FILE).exists()
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes topic `name`, durably: its handles get [`Error::Closed`] from then on,
    /// and its files go. Records a reader already holds stay readable (their mappings
    /// outlive the files).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`], [`Error::UnknownTopic`], [`Error::ReadOnly`],
    /// [`Error::Closed`], [`Error::Io`].
    pub fn remove_topic(&self, name: &str) -> Result<()> {
        check_topic_name(name)?;
        let inner = &self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        let mut open = inner.open.lock();
        if inner.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        let dir = inner.topics_dir.join(name);
        if !self.topic_exists(name, &dir)? {
            return Err(Error::UnknownTopic {
                name: name.to_string(),
                store: inner.dir.clone(),
            });
        }
        if let Some(core) = open.remove(name) {
            // Its data is going: a failed final flush changes nothing.
            let _ = core.close_removed();
        }
        static REMOVALS: AtomicU64 = AtomicU64::new(0);
        let gone = inner.topics_dir.join(format!(
            "{REMOVING_PREFIX}{name}+{}.{}",
            std::process::id(),
            REMOVALS.fetch_add(1, SeqCst)
        ));
        std::fs::rename(&dir, &gone).map_err(|e| Error::io("rename topic directory", &dir, e))?;
        sync_dir(&inner.topics_dir)?;
        // Best effort: the next open removes what is left.
        let _ = std::fs::remove_dir_all(&gone);
        Ok(())
    }

    /// What the store's shared threads did since open: how appends to different topics
    /// shared flushes.
    pub fn stats(&self) -> StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        let open_topics = self.inner.open.lock().open_count();
        let Some(engine) = &self.inner.engine else {
            return StoreStats {
                open_topics,
                ..StoreStats::default()
            };
        };
        let counters = &engine.counters;
        let (backend, backend_fallback_reason) = match &self.inner.backends {
            Some(backends) => {
                let backends = backends.lock();
                (Some(backends.kind), backends.fallback.clone())
            }
            None => (None, None),
        };
        StoreStats {
            open_topics,
            threads: 3,
            backend,
            backend_fallback_reason,
            commits_alone: counters.commits_alone.load(Relaxed),
            flush_cycles: counters.flush_cycles.load(Relaxed),
            cycle_fsyncs: counters.cycle_fsyncs.load(Relaxed),
        }
    }

    /// Stops every topic as a killed process would (see `Log::abandon`), stops the
    /// threads and releases the lock. For crash tests. Not a stable API.
    #[doc(hidden)]
    pub fn abandon(&self) {
        let inner = &self.inner;
        let mut open = inner.open.lock();
        if inner.closed.swap(true, SeqCst) {
            return;
        }
        for (_, topic) in open.topics.drain() {
            topic.core.abandon();
        }
        if let Some(engine) = &inner.engine {
            engine.stop();
        }
        inner.lock.lock().take();
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether this handle was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Closes every open topic (each as [`Log::close`] does) and releases the writer
    /// lock. Later calls do nothing; later [`Store::topic`] calls and appends through
    /// topic handles fail with [`Error::Closed`]. Dropping the last handle of the store
    /// does the same, ignoring errors.
    ///
    /// # Errors
    ///
    /// The first error a topic's close returned (every topic is closed all the same).
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }
}

impl StoreInner {
    fn close(&self) -> Result<()> {
        let mut open = self.open.lock();
        if self.closed.swap(true, SeqCst) {
            return Ok(());
        }
        let mut first_error = None;
        let mut names: Vec<_> = open.topics.keys().cloned().collect();
        names.sort();
        for name in names {
            if let Some(core) = open.remove(&name) {
                if let Err(e) = core.close() {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(engine) = &self.engine {
            engine.stop();
        }
        self.lock.lock().take();
        first_error.map_or(Ok(()), Err)
    }
}

impl Store {
    /// An in-memory store's directory goes when the last handle drops.
    pub(crate) fn keep_until_dropped(&self, dir: crate::memory::EphemeralDir) {
        *self.inner.ephemeral.lock() = Some(dir);
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Where a store's topics get their backends.
struct Backends {
    /// Each topic writes and flushes through a companion of it.
    source: Box<dyn Backend>,
    /// The store's backend (its ring flushes cycles over several topics), and why it
    /// fell back to `pwritev`, if it did: what every topic reports.
    kind: io::BackendKind,
    fallback: Option<String>,
}

/// What [`Store::stats`] returns.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StoreStats {
    /// Topics open now (opened since the store was, and not closed or removed).
    pub open_topics: u64,
    /// Background threads the store runs for all its topics (0 when read-only).
    pub threads: u64,
    /// The store's I/O backend (`None` when read-only).
    pub backend: Option<io::BackendKind>,
    /// Why `IoBackend::Auto` fell back to `pwritev`, if it did.
    pub backend_fallback_reason: Option<String>,
    /// Turns of the shared writer thread for one topic alone.
    pub commits_alone: u64,
    /// Turns of the shared writer over several topics at once that flushed files: each
    /// wrote every topic's staged records, then flushed them together.
    pub flush_cycles: u64,
    /// `fdatasync`s issued in those cycles (per cycle: `cycle_fsyncs / flush_cycles`).
    pub cycle_fsyncs: u64,
}

/// `topic_with` on an existing topic must ask for the options it has.
fn check_same_options(name: &str, persisted: &Options, wanted: &Options) -> Result<()> {
    let as_text = |o: &Options| encode_topic_options(&TopicOptions::Own(o.clone()));
    if as_text(persisted) == as_text(wanted) {
        return Ok(());
    }
    Err(Error::InvalidOptions(format!(
        "topic {name:?} exists with other options ({}); open it with Store::topic to use them",
        describe_options(persisted)
    )))
}

fn describe_options(o: &Options) -> String {
    format!(
        "segment_bytes {}, durability {:?}, recovery {:?}",
        o.segment_bytes_effective(),
        o.durability,
        o.recovery
    )
}

fn check_marker(path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes == STORE_MARKER.as_bytes() {
        return Ok(());
    }
    Err(Error::corruption(
        path,
        0,
        "not a store marker this version knows (a newer ringlog's store, or damage)",
    ))
}

/// `Store::open` on a directory that holds a single log refuses: the two layouts are
/// different, and a store never adopts a log's files.
fn refuse_single_log_dir(dir: &Path) -> Result<()> {
    if dir.join(STORE_MARKER_FILE).exists() {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().and_then(crate::segment::parse_name).is_some() {
            return Err(Error::WrongKind {
                path: dir.to_path_buf(),
                reason: "holds a single log, not a store; open it with Log::open".into(),
            });
        }
    }
    Ok(())
}

/// `Log::open` on a store, or on one of its topics, refuses: a topic's writer lock is
/// its store's.
pub(crate) fn refuse_store_dir(dir: &Path) -> Result<()> {
    if dir.join(STORE_MARKER_FILE).exists() {
        return Err(Error::WrongKind {
            path: dir.to_path_buf(),
            reason: "holds a store of topics, not a single log; open it with Store::open".into(),
        });
    }
    if dir.join(TOPIC_OPTIONS_FILE).exists() {
        let store = dir
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| PathBuf::from(".."), Path::to_path_buf);
        return Err(Error::WrongKind {
            path: dir.to_path_buf(),
            reason: format!(
                "is a topic of the store at {}; open it with Store::open on that directory and Store::topic (or read it with Log::open_read_only)",
                store.display()
            ),
        });
    }
    Ok(())
}

/// The directory whose writer lock covers the log in `dir`: its store's for a topic,
/// its own otherwise.
pub(crate) fn lock_dir_of(dir: &Path) -> PathBuf {
    if dir.join(TOPIC_OPTIONS_FILE).exists() {
        if let Some(store) = dir.parent().and_then(Path::parent) {
            if store.join(STORE_MARKER_FILE).exists() {
                return store.to_path_buf();
            }
        }
    }
    dir.to_path_buf()
}

/// Writes the store marker whole under another name and renames it into place, so a
/// crash leaves no marker or a complete one.
fn write_marker(dir: &Path) -> Result<()> {
    let marker = dir.join(STORE_MARKER_FILE);
    let tmp = dir.join(format!("{STORE_MARKER_FILE}.tmp"));
    write_synced(&tmp, STORE_MARKER.as_bytes())?;
    std::fs::rename(&tmp, &marker).map_err(|e| Error::io("rename store marker", &marker, e))?;
    sync_dir(dir)
}

/// Whether `dir` exists and holds anything.
fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Removes what crashes left of topic creations (never acknowledged) and removals
/// (acknowledged: the rename away was durable).
fn remove_leftovers(topics_dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(topics_dir).map_err(|e| Error::io("read directory", topics_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", topics_dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(CREATING_PREFIX) || name.starts_with(REMOVING_PREFIX) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Writes a new file and syncs it (the caller syncs the directory).
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| Error::io("create", path, e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io("write", path, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", path, e))
}
