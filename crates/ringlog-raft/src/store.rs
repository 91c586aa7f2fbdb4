//! [`LogStore`]: openraft's `RaftLogStorage` and `RaftLogReader` on a ringlog `Log`.

// openraft's traits return its `StorageError` (224 bytes); the helpers return what the
// trait methods pass on.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    CommittedLeaderId, Entry, LeaderId, LogId, OptionalSend, RaftLogReader, RaftTypeConfig,
    StorageError, StorageIOError, Vote,
};
use tokio::sync::mpsc;

use crate::header::{self, RecordData};
use crate::meta::{SlotFile, SlotState};

/// Pending flush callbacks a store keeps before `append` waits for the flusher.
const FLUSH_QUEUE_LEN: usize = 4096;

const META_KIND: u32 = 1;
const COMMITTED_KIND: u32 = 2;
const META_VOTE: u32 = 1;
const META_VOTE_COMMITTED: u32 = 2;
const META_PURGED: u32 = 4;
const COMMITTED_PRESENT: u32 = 1;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The log failed to open or to finish a purge.
    #[error("ringlog: {0}")]
    Log(#[from] ringlog::Error),
    /// A sidecar file (`raft.meta`, `raft.committed`) could not be read or written.
    #[error("{path}: {source}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// The last record is not an entry this crate wrote.
    #[error("{0}")]
    Format(String),
}

type StoreResult<T> = Result<T, StorageError<u64>>;

fn log_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()
}

fn read_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::read_logs(&std::io::Error::other(e.to_string())).into()
}

fn log_id(term: u64, node_id: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node_id), index)
}

/// Vote and purged log id, as in `raft.meta`.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    vote: Option<Vote<u64>>,
    purged: Option<LogId<u64>>,
}

impl Meta {
    fn from_slot(s: &SlotState) -> Meta {
        let vote = (s.flags & META_VOTE != 0).then(|| Vote {
            leader_id: LeaderId::new(s.values[0], s.values[1]),
            committed: s.flags & META_VOTE_COMMITTED != 0,
        });
        let purged =
            (s.flags & META_PURGED != 0).then(|| log_id(s.values[2], s.values[3], s.values[4]));
        Meta { vote, purged }
    }

    fn to_slot(self) -> SlotState {
        let mut s = SlotState::default();
        if let Some(v) = self.vote {
            s.flags |= META_VOTE;
            if v.committed {
                s.flags |= META_VOTE_COMMITTED;
            }
            s.values[0] = v.leader_id.term;
            s.values[1] = v.leader_id.node_id;
        }
        if let Some(p) = self.purged {
            s.flags |= META_PURGED;
            s.values[2] = p.leader_id.term;
            s.values[3] = p.leader_id.node_id;
            s.values[4] = p.index;
        }
        s
    }
}

/// Entries appended but maybe not yet readable from the log (ringlog's readers see records
/// once they are durable): `entries[i]` is the encoded entry of index `start + i`, and
/// `start + entries.len()` is the next index. Everything below `start` is readable from
/// the log (it is pruned only once durable).
#[derive(Debug, Default)]
struct Tail {
    start: u64,
    entries: VecDeque<Vec<u8>>,
    last_log_id: Option<LogId<u64>>,
}

impl Tail {
    fn next_index(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// Drops cached entries below `durable` (they are readable from the log now).
    fn prune_below(&mut self, durable: u64) {
        while self.start < durable && !self.entries.is_empty() {
            self.entries.pop_front();
            self.start += 1;
        }
    }
}

struct Shared {
    /// Replaced only when an empty log must restart below its start (see `restart_at`).
    log_slot: RwLock<ringlog::Log>,
    /// The options to recreate the log with (`None` for a log given to `with_log`).
    opts: Option<ringlog::Options>,
    dir: PathBuf,
    meta_file: Mutex<SlotFile>,
    meta: Mutex<Meta>,
    committed_file: Mutex<(SlotFile, Option<LogId<u64>>)>,
    tail: Mutex<Tail>,
    /// Bumped before each truncation: a flush callback of an append made in an earlier
    /// epoch whose offset the truncation removed was made durable by the truncation's
    /// flush (or is gone), so it completes successfully.
    epoch: AtomicU64,
    counters: Arc<StoreCounters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn log(&self) -> ringlog::Log {
        self.log_slot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Restarts an empty log at `index` below its start: ringlog's start only moves up, so
    /// the (empty) log directory is removed and created again. Nothing is lost: the log holds
    /// no entry. openraft's suite appends below a purge point into an empty log.
    fn restart_at(&self, index: u64) -> StoreResult<()> {
        let Some(opts) = self.opts.clone() else {
            return Err(log_err(format!(
                "append of index {index} below the start of an empty log given to with_log"
            )));
        };
        let mut slot = self.log_slot.write().unwrap_or_else(|p| p.into_inner());
        debug_assert_eq!(slot.first_offset(), slot.next_offset());
        let dir = slot.dir().to_path_buf();
        slot.close().map_err(log_err)?;
        std::fs::remove_dir_all(&dir).map_err(log_err)?;
        let log = ringlog::Log::open(&dir, opts).map_err(log_err)?;
        if index > 0 {
            log.trim_before(index).map_err(log_err)?;
        }
        *slot = log;
        Ok(())
    }

    /// Entries `[start, end)` (clipped to what the log holds), in order.
    fn read_entries<C>(&self, start: u64, end: u64) -> StoreResult<Vec<Entry<C>>>
    where
        C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
        C::D: RecordData,
    {
        let tail = lock(&self.tail);
        let start = start.max(self.log().first_offset());
        let end = end.min(tail.next_index());
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - start) as usize);
        let log_end = end.min(tail.start);
        if start < log_end {
            for record in self.log().iter(start).take((log_end - start) as usize) {
                let record = record.map_err(read_err)?;
                out.push(header::decode::<C>(record.payload(), record.offset()).map_err(read_err)?);
            }
            if out.len() as u64 != log_end - start {
                return Err(read_err(format!(
                    "log {}: read {} entries from index {start}, expected {}",
                    self.log().dir().display(),
                    out.len(),
                    log_end - start
                )));
            }
        }
        for index in start.max(tail.start)..end {
            let bytes = &tail.entries[(index - tail.start) as usize];
            out.push(header::decode::<C>(bytes, index).map_err(read_err)?);
        }
        Ok(out)
    }

    /// The log id of the entry at `index`, from the cache or the log.
    fn log_id_at(&self, tail: &Tail, index: u64) -> StoreResult<LogId<u64>> {
        if index >= tail.start {
            let bytes = tail
                .entries
                .get((index - tail.start) as usize)
                .ok_or_else(|| read_err(format!("no entry at index {index}")))?;
            return header::decode_log_id(bytes, index).map_err(read_err);
        }
        let record = self.log().read(index).map_err(read_err)?;
        header::decode_log_id(record.payload(), index).map_err(read_err)
    }

    fn write_meta(&self, meta: Meta) -> StoreResult<()> {
        let mut file = lock(&self.meta_file);
        file.write(&meta.to_slot(), true).map_err(|e| {
            StorageError::from(StorageIOError::write_vote(&std::io::Error::new(
                e.kind(),
                format!("{}: {e}", file.path().display()),
            )))
        })?;
        *lock(&self.meta) = meta;
        Ok(())
    }

    /// Waits until every entry appended so far is durable.
    async fn wait_all_durable(&self) -> StoreResult<()> {
        let next = self.log().next_offset();
        if next > self.log().first_offset() && self.log().durable_offset() < next {
            self.log()
                .wait_durable_async(next - 1)
                .await
                .map_err(log_err)?;
        }
        Ok(())
    }
}

/// What a store did, counted since it was opened (see [`LogStore::counters`]).
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Entries appended.
    pub entries_appended: AtomicU64,
    /// Truncations started that remove at least one entry (some may have failed).
    pub truncations: AtomicU64,
    /// Purges started that trim the log (some may have failed).
    pub purges: AtomicU64,
}

/// One append's flush callback, waiting for ringlog's durable watermark to pass `index`.
struct PendingFlush<C: RaftTypeConfig> {
    index: u64,
    epoch: u64,
    callback: LogFlushed<C>,
}

/// openraft's log storage on a ringlog log. See the crate docs for the mapping.
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<Shared>,
    flusher: Option<mpsc::Sender<PendingFlush<C>>>,
    buf: Vec<u8>,
}

/// A reader of a [`LogStore`]'s entries, for openraft's replication tasks.
pub struct LogReader<C> {
    shared: Arc<Shared>,
    _c: std::marker::PhantomData<fn() -> C>,
}

impl<C> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        LogReader {
            shared: self.shared.clone(),
            _c: std::marker::PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    C::D: RecordData,
{
    /// Opens the store in `dir`: the log in `dir/log` (opened with `opts`, its durability
    /// forced to `Durability::Sync`: the flush callbacks follow the durable watermark), the
    /// sidecars `dir/raft.meta` and `dir/raft.committed`. Creates what is missing.
    ///
    /// # Errors
    ///
    /// [`OpenError`].
    pub fn open(dir: impl AsRef<Path>, opts: ringlog::Options) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Meta {
            path: dir.to_path_buf(),
            source,
        })?;
        let opts = opts.durability(ringlog::Durability::Sync);
        let log = ringlog::Log::open(dir.join("log"), opts.clone())?;
        Self::open_inner(log, dir, Some(opts))
    }

    /// A store on an open log (opened with `Durability::Sync`), its sidecars in `meta_dir`.
    /// For tests on ringlog's simulated disk.
    ///
    /// # Errors
    ///
    /// [`OpenError`].
    pub fn with_log(log: ringlog::Log, meta_dir: &Path) -> Result<Self, OpenError> {
        Self::open_inner(log, meta_dir, None)
    }

    fn open_inner(
        log: ringlog::Log,
        meta_dir: &Path,
        opts: Option<ringlog::Options>,
    ) -> Result<Self, OpenError> {
        let meta_path = meta_dir.join("raft.meta");
        let (meta_file, slot) =
            SlotFile::open(&meta_path, META_KIND).map_err(|source| OpenError::Meta {
                path: meta_path.clone(),
                source,
            })?;
        let meta = Meta::from_slot(&slot);
        let committed_path = meta_dir.join("raft.committed");
        let (committed_file, slot) =
            SlotFile::open(&committed_path, COMMITTED_KIND).map_err(|source| OpenError::Meta {
                path: committed_path.clone(),
                source,
            })?;
        let committed = (slot.flags & COMMITTED_PRESENT != 0)
            .then(|| log_id(slot.values[0], slot.values[1], slot.values[2]));
        // A purge persists its log id before trimming: finish one a crash interrupted.
        if let Some(purged) = meta.purged {
            if log.first_offset() <= purged.index {
                log.trim_before(purged.index + 1)?;
            }
        }
        let next = log.next_offset();
        let last_log_id = if next > log.first_offset() {
            let record = log.read(next - 1)?;
            Some(header::decode_log_id(record.payload(), next - 1).map_err(OpenError::Format)?)
        } else {
            meta.purged
        };
        let shared = Shared {
            log_slot: RwLock::new(log),
            opts,
            dir: meta_dir.to_path_buf(),
            meta_file: Mutex::new(meta_file),
            meta: Mutex::new(meta),
            committed_file: Mutex::new((committed_file, committed)),
            tail: Mutex::new(Tail {
                start: next,
                entries: VecDeque::new(),
                last_log_id,
            }),
            epoch: AtomicU64::new(0),
            counters: Arc::default(),
        };
        Ok(LogStore {
            shared: Arc::new(shared),
            flusher: None,
            buf: Vec::new(),
        })
    }

    /// The ringlog log under the store (for tests, stats and crash simulation).
    pub fn log(&self) -> ringlog::Log {
        self.shared.log()
    }

    /// What this store did since it was opened (shared: keep it to read it later).
    pub fn counters(&self) -> Arc<StoreCounters> {
        self.shared.counters.clone()
    }

    /// The flusher task's queue, started on the current tokio runtime when needed.
    fn flusher(&mut self) -> mpsc::Sender<PendingFlush<C>> {
        if let Some(tx) = &self.flusher {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        let (tx, rx) = mpsc::channel(FLUSH_QUEUE_LEN);
        tokio::spawn(run_flusher(Arc::downgrade(&self.shared), rx));
        self.flusher = Some(tx.clone());
        tx
    }
}

/// Fires each flush callback, in append order, once ringlog's durable watermark has passed
/// its last entry: one task per store, however many appends. While idle it holds the store
/// only weakly, so dropping the store closes the log at once (a reopen right after a drop
/// does not find the directory locked).
async fn run_flusher<C: RaftTypeConfig>(
    shared: Weak<Shared>,
    mut rx: mpsc::Receiver<PendingFlush<C>>,
) {
    while let Some(pending) = rx.recv().await {
        let result = flush_one(&shared, pending.index, pending.epoch).await;
        pending.callback.log_io_completed(result);
    }
}

async fn flush_one(shared: &Weak<Shared>, index: u64, epoch: u64) -> std::io::Result<()> {
    let Some(log) = shared.upgrade().map(|s| s.log()) else {
        return Err(std::io::Error::other(
            "the store was dropped before the flush",
        ));
    };
    let waited = log.wait_durable_async(index).await;
    let Some(shared) = shared.upgrade() else {
        return waited.map_err(|e| std::io::Error::other(e.to_string()));
    };
    match waited {
        Ok(()) => {
            let durable = log.durable_offset();
            lock(&shared.tail).prune_below(durable);
            Ok(())
        }
        // Truncated away after a truncation's flush: nothing left to flush.
        Err(ringlog::Error::OffsetOutOfRange { .. }) if epoch < shared.epoch.load(SeqCst) => Ok(()),
        Err(e) => Err(std::io::Error::other(format!(
            "{}: flush of index {index}: {e}",
            log.dir().display()
        ))),
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    C::D: RecordData,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<C::Entry>> {
        let (start, end) = bounds(&range);
        self.shared.read_entries::<C>(start, end)
    }
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    C::D: RecordData,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<C::Entry>> {
        let (start, end) = bounds(&range);
        self.shared.read_entries::<C>(start, end)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    C::D: RecordData,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> StoreResult<LogState<C>> {
        let purged = lock(&self.shared.meta).purged;
        let last = lock(&self.shared.tail).last_log_id.or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: self.shared.clone(),
            _c: std::marker::PhantomData,
        }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StoreResult<()> {
        // io-ordering: the vote is never durable ahead of a log write made before it.
        self.shared.wait_all_durable().await?;
        let mut meta = *lock(&self.shared.meta);
        meta.vote = Some(*vote);
        self.shared.write_meta(meta)
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<u64>>> {
        Ok(lock(&self.shared.meta).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StoreResult<()> {
        let Some(c) = committed else {
            return Ok(());
        };
        // Written only once the log is durable through it, and never flushed: after a
        // crash it may be older (or absent), never ahead of the log.
        if self.shared.log().durable_offset() <= c.index {
            return Ok(());
        }
        let mut guard = lock(&self.shared.committed_file);
        if guard.1.is_some_and(|old| old >= c) {
            return Ok(());
        }
        let slot = SlotState {
            flags: COMMITTED_PRESENT,
            values: [c.leader_id.term, c.leader_id.node_id, c.index, 0, 0],
        };
        guard.0.write(&slot, false).map_err(log_err)?;
        guard.1 = Some(c);
        Ok(())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<u64>>> {
        Ok(lock(&self.shared.committed_file).1)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> StoreResult<()>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut last_index = None;
        let epoch = self.shared.epoch.load(SeqCst);
        for entry in entries {
            let index = entry.log_id.index;
            let next = self.shared.log().next_offset();
            if index != next {
                // An empty (or fully purged) log may start anywhere.
                if self.shared.log().first_offset() == next {
                    if index > next {
                        self.shared.log().trim_before(index).map_err(log_err)?;
                    } else {
                        self.shared.restart_at(index)?;
                    }
                    let mut tail = lock(&self.shared.tail);
                    debug_assert!(tail.entries.is_empty());
                    tail.start = index;
                } else {
                    return Err(log_err(format!(
                        "{}: append of index {index}, but the next index is {next}: Raft logs have no holes",
                        self.shared.dir.display()
                    )));
                }
            }
            header::encode(&entry, &mut self.buf).map_err(log_err)?;
            let mut tail = lock(&self.shared.tail);
            let ticket = self.shared.log().submit(&self.buf).map_err(log_err)?;
            debug_assert_eq!(ticket.offset(), index);
            if tail.entries.is_empty() {
                tail.start = index;
            }
            debug_assert_eq!(tail.next_index(), index);
            tail.entries.push_back(std::mem::take(&mut self.buf));
            tail.last_log_id = Some(entry.log_id);
            last_index = Some(index);
            self.shared.counters.entries_appended.fetch_add(1, SeqCst);
        }
        match last_index {
            None => callback.log_io_completed(Ok(())),
            Some(index) => {
                let tx = self.flusher();
                let pending = PendingFlush {
                    index,
                    epoch,
                    callback,
                };
                if let Err(mpsc::error::SendError(pending)) = tx.send(pending).await {
                    pending.callback.log_io_completed(Err(std::io::Error::other(
                        "the store's flusher stopped",
                    )));
                }
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StoreResult<()> {
        let index = log_id.index;
        self.shared.epoch.fetch_add(1, SeqCst);
        if index >= self.shared.log().next_offset() {
            return Ok(());
        }
        self.shared.counters.truncations.fetch_add(1, SeqCst);
        self.shared.log().truncate_from(index).map_err(log_err)?;
        let mut tail = lock(&self.shared.tail);
        if index >= tail.start {
            let keep = (index - tail.start) as usize;
            tail.entries.truncate(keep);
        } else {
            tail.entries.clear();
            tail.start = index;
        }
        tail.last_log_id = if index > self.shared.log().first_offset() {
            Some(self.shared.log_id_at(&tail, index - 1)?)
        } else {
            lock(&self.shared.meta).purged
        };
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StoreResult<()> {
        // Purged entries were applied, so they are durable; make sure before recording it.
        let index = log_id.index;
        if index < self.shared.log().next_offset() && self.shared.log().durable_offset() <= index {
            self.shared
                .log()
                .wait_durable_async(index)
                .await
                .map_err(log_err)?;
        }
        let mut meta = *lock(&self.shared.meta);
        if meta.purged.is_none_or(|p| p < log_id) {
            meta.purged = Some(log_id);
            self.shared.write_meta(meta)?;
        }
        self.shared.counters.purges.fetch_add(1, SeqCst);
        self.shared.log().trim_before(index + 1).map_err(log_err)?;
        let mut tail = lock(&self.shared.tail);
        if tail.next_index() <= index + 1 {
            tail.entries.clear();
            tail.start = index + 1;
            tail.last_log_id = Some(log_id);
        } else {
            tail.prune_below(index + 1);
        }
        Ok(())
    }
}
