//! In-memory pieces: a state machine for tests and examples, and a log store that keeps
//! everything in memory (the upper bound the benchmark compares against).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, RaftTypeConfig,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The application a [`MemStateMachine`] applies entries to.
pub trait App<C: RaftTypeConfig>:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Applies one normal entry's data and returns the response.
    fn apply(&mut self, log_id: &LogId<C::NodeId>, data: &C::D) -> C::R;
}

/// An application that keeps every applied entry's data in order (for tests).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedLog<D> {
    /// `(index, data)` of every applied normal entry.
    pub applied: Vec<(u64, D)>,
}

impl<D> Default for AppliedLog<D> {
    fn default() -> Self {
        AppliedLog {
            applied: Vec::new(),
        }
    }
}

impl<C> App<C> for AppliedLog<C::D>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: Clone + Serialize + DeserializeOwned,
    C::R: Default,
{
    fn apply(&mut self, log_id: &LogId<u64>, data: &C::D) -> C::R {
        self.applied.push((log_id.index, data.clone()));
        C::R::default()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct SmState<C: RaftTypeConfig, A> {
    last_applied: Option<LogId<C::NodeId>>,
    membership: StoredMembership<C::NodeId, C::Node>,
    #[serde(bound = "A: Serialize + DeserializeOwned")]
    app: A,
}

impl<C: RaftTypeConfig, A: Clone> Clone for SmState<C, A> {
    fn clone(&self) -> Self {
        SmState {
            last_applied: self.last_applied.clone(),
            membership: self.membership.clone(),
            app: self.app.clone(),
        }
    }
}

struct StoredSnapshot<C: RaftTypeConfig> {
    meta: SnapshotMeta<C::NodeId, C::Node>,
    data: Vec<u8>,
}

struct SmInner<C: RaftTypeConfig, A> {
    state: SmState<C, A>,
    snapshot: Option<StoredSnapshot<C>>,
    snapshots_built: u64,
}

/// A state machine in memory (lost at restart: openraft applies the log again). Clones
/// share the state.
pub struct MemStateMachine<C: RaftTypeConfig, A> {
    inner: Arc<Mutex<SmInner<C, A>>>,
}

impl<C: RaftTypeConfig, A> Clone for MemStateMachine<C, A> {
    fn clone(&self) -> Self {
        MemStateMachine {
            inner: self.inner.clone(),
        }
    }
}

impl<C: RaftTypeConfig, A: Default> Default for MemStateMachine<C, A> {
    fn default() -> Self {
        MemStateMachine {
            inner: Arc::new(Mutex::new(SmInner {
                state: SmState {
                    last_applied: None,
                    membership: StoredMembership::default(),
                    app: A::default(),
                },
                snapshot: None,
                snapshots_built: 0,
            })),
        }
    }
}

impl<C: RaftTypeConfig, A: Clone> MemStateMachine<C, A> {
    /// A copy that shares nothing with this one: what a state machine that persists each
    /// apply would find at a restart if its process died now (tests keep it across a
    /// node's kill, while the dead node's tasks may still touch the original).
    pub fn deep_clone(&self) -> Self {
        let inner = lock(&self.inner);
        MemStateMachine {
            inner: Arc::new(Mutex::new(SmInner {
                state: inner.state.clone(),
                snapshot: inner.snapshot.as_ref().map(|s| StoredSnapshot {
                    meta: s.meta.clone(),
                    data: s.data.clone(),
                }),
                snapshots_built: inner.snapshots_built,
            })),
        }
    }
}

impl<C: RaftTypeConfig, A> MemStateMachine<C, A> {
    /// Reads the application state.
    pub fn read<T>(&self, f: impl FnOnce(&A) -> T) -> T {
        f(&lock(&self.inner).state.app)
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId<C::NodeId>> {
        lock(&self.inner).state.last_applied.clone()
    }
}

fn sm_err<NID: openraft::NodeId>(e: impl std::fmt::Display) -> StorageError<NID> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

impl<C, A> RaftSnapshotBuilder<C> for MemStateMachine<C, A>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>>,
    A: App<C>,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let mut inner = lock(&self.inner);
        let data = serde_json::to_vec(&inner.state).map_err(sm_err)?;
        inner.snapshots_built += 1;
        let snapshot_id = format!(
            "{}-{}",
            inner.state.last_applied.as_ref().map_or(0, |l| l.index),
            inner.snapshots_built
        );
        let meta = SnapshotMeta {
            last_log_id: inner.state.last_applied.clone(),
            last_membership: inner.state.membership.clone(),
            snapshot_id,
        };
        inner.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<C, A> RaftStateMachine<C> for MemStateMachine<C, A>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>, Entry = Entry<C>>,
    C::R: Default,
    A: App<C>,
{
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<C::NodeId>>,
            StoredMembership<C::NodeId, C::Node>,
        ),
        StorageError<C::NodeId>,
    > {
        let inner = lock(&self.inner);
        Ok((
            inner.state.last_applied.clone(),
            inner.state.membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = lock(&self.inner);
        let mut out = Vec::new();
        for entry in entries {
            inner.state.last_applied = Some(entry.log_id.clone());
            match entry.payload {
                EntryPayload::Blank => out.push(C::R::default()),
                EntryPayload::Normal(data) => {
                    let r = inner.state.app.apply(&entry.log_id, &data);
                    out.push(r)
                }
                EntryPayload::Membership(m) => {
                    inner.state.membership = StoredMembership::new(Some(entry.log_id.clone()), m);
                    out.push(C::R::default())
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<C::NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let data = snapshot.into_inner();
        let state: SmState<C, A> = serde_json::from_slice(&data).map_err(sm_err)?;
        let mut inner = lock(&self.inner);
        inner.state = SmState {
            last_applied: meta.last_log_id.clone(),
            membership: meta.last_membership.clone(),
            app: state.app,
        };
        inner.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        let inner = lock(&self.inner);
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

struct MemLogInner<C: RaftTypeConfig> {
    entries: BTreeMap<u64, Entry<C>>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
    purged: Option<LogId<C::NodeId>>,
}

/// A log store in memory: every write "durable" at once. The upper bound for the
/// benchmark; never use it where a crash matters. Clones share the log.
pub struct MemLogStore<C: RaftTypeConfig> {
    inner: Arc<Mutex<MemLogInner<C>>>,
}

impl<C: RaftTypeConfig> Clone for MemLogStore<C> {
    fn clone(&self) -> Self {
        MemLogStore {
            inner: self.inner.clone(),
        }
    }
}

impl<C: RaftTypeConfig> Default for MemLogStore<C> {
    fn default() -> Self {
        MemLogStore {
            inner: Arc::new(Mutex::new(MemLogInner {
                entries: BTreeMap::new(),
                vote: None,
                committed: None,
                purged: None,
            })),
        }
    }
}

impl<C> RaftLogReader<C> for MemLogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let inner = lock(&self.inner);
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl<C> RaftLogStorage<C> for MemLogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Clone,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let inner = lock(&self.inner);
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id.clone())
            .or_else(|| inner.purged.clone());
        Ok(LogState {
            last_purged_log_id: inner.purged.clone(),
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        lock(&self.inner).vote = Some(vote.clone());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(lock(&self.inner).vote.clone())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        lock(&self.inner).committed = committed;
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(lock(&self.inner).committed.clone())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = lock(&self.inner);
            for entry in entries {
                inner.entries.insert(entry.log_id.index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        lock(&self.inner).entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut inner = lock(&self.inner);
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        inner.purged = Some(log_id);
        Ok(())
    }
}
