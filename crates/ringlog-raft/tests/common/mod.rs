//! A 3-node in-process cluster on ringlog stores, for the cluster tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Entry, EntryPayload, Raft, RaftLogReader, SnapshotPolicy};
use ringlog_raft::cluster::Router;
use ringlog_raft::mem::{AppliedLog, MemStateMachine};
use ringlog_raft::LogStore;

openraft::declare_raft_types!(
    pub TC: D = Vec<u8>, R = (), SnapshotData = std::io::Cursor<Vec<u8>>
);

pub type Sm = MemStateMachine<TC, AppliedLog<Vec<u8>>>;

pub fn store_opts() -> ringlog::Options {
    ringlog::Options::default().segment_bytes(4 << 20)
}

pub fn raft_config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // The logs are compared whole at the end: never purge them.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: 512,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

pub struct Node {
    pub id: u64,
    pub raft: Raft<TC>,
    pub sm: Sm,
    pub log: ringlog::Log,
    pub counters: Arc<ringlog_raft::StoreCounters>,
}

pub struct Cluster {
    pub root: PathBuf,
    pub config: Arc<Config>,
    /// Some(state machines by node) to keep each node's state machine across its restarts
    /// (a state machine that persists what it applies, as openraft expects when logs are
    /// purged); None to start each node with an empty one.
    pub kept_sms: Option<BTreeMap<u64, Sm>>,
    pub router: Router<TC>,
    pub nodes: BTreeMap<u64, Node>,
}

pub fn node_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("node-{id}"))
}

impl Cluster {
    pub async fn start(root: &Path, ids: &[u64]) -> Cluster {
        Cluster::start_with(root, ids, raft_config()).await
    }

    pub async fn start_with(root: &Path, ids: &[u64], config: Arc<Config>) -> Cluster {
        let mut cluster = Cluster {
            root: root.to_path_buf(),
            config,
            kept_sms: None,
            router: Router::default(),
            nodes: BTreeMap::new(),
        };
        for &id in ids {
            cluster.start_node(id).await;
        }
        let members: BTreeMap<u64, BasicNode> =
            ids.iter().map(|&id| (id, BasicNode::default())).collect();
        cluster.nodes[&ids[0]]
            .raft
            .initialize(members)
            .await
            .expect("initialize");
        cluster
    }

    pub async fn start_node(&mut self, id: u64) {
        let store: LogStore<TC> =
            LogStore::open(node_dir(&self.root, id), store_opts()).expect("open the store");
        self.run_node(id, store).await;
    }

    /// Starts node `id` with its log on ringlog's simulated disk `disk`.
    pub async fn start_node_sim(&mut self, id: u64, disk: &Arc<ringlog::sim::SimDisk>) {
        let dir = node_dir(&self.root, id);
        let opts = store_opts()
            .durability(ringlog::Durability::Sync)
            .io(ringlog::IoBackend::Pwrite);
        let log = ringlog::Log::open_with_backend(dir.join("log"), opts, disk.backend())
            .expect("open the log on the simulated disk");
        let store: LogStore<TC> = LogStore::with_log(log, &dir).expect("open the store");
        self.run_node(id, store).await;
    }

    async fn run_node(&mut self, id: u64, mut store: LogStore<TC>) {
        if let Some(sm) = self.kept_sms.as_ref().and_then(|k| k.get(&id)) {
            let state = store.get_log_state().await.expect("log state");
            let applied = sm.last_applied();
            // It applied only committed entries, which its log had made durable first.
            assert!(
                applied <= state.last_log_id,
                "node {id} starts with its state machine at {applied:?} ahead of its log (last {:?}, purged {:?}, log {}..{})",
                    state.last_log_id,
                    state.last_purged_log_id,
                    store.log().first_offset(),
                store.log().next_offset()
            );
        }
        let log = store.log();
        let counters = store.counters();
        let sm = match &mut self.kept_sms {
            Some(kept) => kept.entry(id).or_default().clone(),
            None => Sm::default(),
        };
        let raft = Raft::new(
            id,
            self.config.clone(),
            self.router.for_node(id),
            store,
            sm.clone(),
        )
        .await
        .expect("start raft");
        self.router.add(id, raft.clone());
        self.nodes.insert(
            id,
            Node {
                id,
                raft,
                sm,
                log,
                counters,
            },
        );
    }

    /// Kills node `id`: unreachable at once, its log stopped as a killed process would
    /// (staged records dropped, nothing more written), then dropped without a close.
    pub async fn kill(&mut self, id: u64) -> Node {
        self.router.remove(id);
        let node = self.nodes.remove(&id).expect("a running node");
        node.log.abandon();
        self.keep_sm(&node);
        let _ = node.raft.shutdown().await;
        node
    }

    /// With `kept_sms`, what the node's state machine holds now is what its next life
    /// starts with (a copy: the dead node's state machine task may still apply what it
    /// was given, as a process's last instructions would never reach the disk).
    fn keep_sm(&mut self, node: &Node) {
        if let Some(kept) = &mut self.kept_sms {
            kept.insert(node.id, node.sm.deep_clone());
        }
    }

    /// Stops node `id` by dropping it without a close (ringlog's drop flushes what is
    /// staged; nothing else is shut down in order).
    pub async fn drop_unclosed(&mut self, id: u64) {
        self.router.remove(id);
        let node = self.nodes.remove(&id).expect("a running node");
        let _ = node.raft.shutdown().await;
        self.keep_sm(&node);
        drop(node);
    }

    pub async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            for node in self.nodes.values() {
                let m = node.raft.metrics().borrow().clone();
                if m.current_leader == Some(node.id) {
                    return node.id;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running node's log and state machine reached `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) {
        for node in self.nodes.values() {
            node.raft
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), "caught up")
                .await
                .unwrap_or_else(|e| panic!("node {} did not apply {index}: {e}", node.id));
        }
    }

    /// The last log index of the leader.
    pub async fn last_log_index(&self) -> u64 {
        let leader = self.leader(Duration::from_secs(20)).await;
        let m = self.nodes[&leader].raft.metrics().borrow().clone();
        m.last_log_index.expect("the leader has a log")
    }
}

/// Writes `payload` through whichever node leads, retrying across elections and kills.
/// Returns the index it was committed at.
pub async fn write(rafts: &tokio::sync::RwLock<BTreeMap<u64, Raft<TC>>>, payload: Vec<u8>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut hint: Option<u64> = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "write did not commit within 60 s"
        );
        let target = {
            let rafts = rafts.read().await;
            let by_hint = hint.and_then(|h| rafts.get(&h).cloned());
            by_hint.or_else(|| {
                rafts
                    .values()
                    .find(|r| {
                        let m = r.metrics().borrow().clone();
                        m.current_leader == Some(m.id)
                    })
                    .cloned()
            })
        };
        let Some(raft) = target else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        match raft.client_write(payload.clone()).await {
            Ok(resp) => return resp.log_id.index,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                hint = f.leader_id;
                if hint.is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(_) => {
                hint = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Every entry of the store in `dir`, opened from disk.
pub async fn dump(dir: &Path) -> Vec<Entry<TC>> {
    let mut store: LogStore<TC> = LogStore::open(dir, store_opts()).expect("reopen the store");
    let state = store.get_log_state().await.expect("log state");
    let first = state.last_purged_log_id.map_or(0, |l| l.index + 1);
    let end = state.last_log_id.map_or(0, |l| l.index + 1);
    let entries = store
        .try_get_log_entries(first..end)
        .await
        .expect("read the log");
    assert_eq!(
        entries.len() as u64,
        end - first,
        "{}: a hole",
        dir.display()
    );
    entries
}

/// The normal entries' payloads by index.
pub fn payloads(entries: &[Entry<TC>]) -> BTreeMap<u64, Vec<u8>> {
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Normal(d) => Some((e.log_id.index, d.clone())),
            _ => None,
        })
        .collect()
}

pub fn ids(n: u64) -> BTreeSet<u64> {
    (1..=n).collect()
}
