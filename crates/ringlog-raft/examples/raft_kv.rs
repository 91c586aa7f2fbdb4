//! A replicated key-value store on three in-process openraft nodes, each keeping its Raft
//! log in its own ringlog directory: written, read back on every node, a node killed
//! (its log abandoned as a killed process would leave it) and restarted from disk, and
//! read back again.
//!
//! ```text
//! cargo run -p ringlog-raft --example raft_kv
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, LogId, Raft};
use ringlog_raft::cluster::Router;
use ringlog_raft::mem::{App, MemStateMachine};
use ringlog_raft::{LogStore, RecordData};
use serde::{Deserialize, Serialize};

/// A write: what goes into the log (as JSON, the record's body).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Request {
    Set { key: String, value: String },
    Delete { key: String },
}

impl RecordData for Request {
    fn encode_into(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("a request serializes");
    }
    fn decode_from(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// What a write returns: the previous value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Response(Option<String>);

openraft::declare_raft_types!(
    Kv: D = Request, R = Response, SnapshotData = std::io::Cursor<Vec<u8>>
);

/// The state machine's application: a map.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct KvMap(BTreeMap<String, String>);

impl App<Kv> for KvMap {
    fn apply(&mut self, _log_id: &LogId<u64>, request: &Request) -> Response {
        match request {
            Request::Set { key, value } => Response(self.0.insert(key.clone(), value.clone())),
            Request::Delete { key } => Response(self.0.remove(key)),
        }
    }
}

type Sm = MemStateMachine<Kv, KvMap>;

struct Node {
    raft: Raft<Kv>,
    sm: Sm,
    log: ringlog::Log,
}

async fn start_node(root: &std::path::Path, id: u64, router: &Router<Kv>) -> Node {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    };
    let config = Arc::new(config.validate().expect("valid config"));
    let store = LogStore::<Kv>::open(
        root.join(format!("node-{id}")),
        ringlog::Options::default().segment_bytes(4 << 20),
    )
    .expect("open the node's log");
    let log = store.log();
    let sm = Sm::default();
    let raft = Raft::new(id, config, router.for_node(id), store, sm.clone())
        .await
        .expect("start the node");
    router.add(id, raft.clone());
    Node { raft, sm, log }
}

async fn leader(nodes: &BTreeMap<u64, Node>) -> u64 {
    for _ in 0..500 {
        for (id, node) in nodes {
            if node.raft.metrics().borrow().current_leader == Some(*id) {
                return *id;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader within 10 s");
}

async fn set(raft: &Raft<Kv>, key: String, value: String) -> u64 {
    let resp = raft
        .client_write(Request::Set { key, value })
        .await
        .expect("the write commits");
    resp.log_id.index
}

async fn wait_applied(node: &Node, index: u64) {
    node.raft
        .wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(Some(index), "caught up")
        .await
        .expect("the node catches up");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let router = Router::<Kv>::default();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start_node(root.path(), id, &router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3).map(|id| (id, BasicNode::default())).collect();
    nodes[&1]
        .raft
        .initialize(members)
        .await
        .expect("initialize");
    let first_leader = leader(&nodes).await;
    println!("leader: node {first_leader}");

    let mut last = 0;
    for i in 0..100 {
        last = set(
            &nodes[&first_leader].raft,
            format!("key-{i:03}"),
            format!("value {i}"),
        )
        .await;
    }
    for (id, node) in &nodes {
        wait_applied(node, last).await;
        let count = node.sm.read(|m| m.0.len());
        let v = node.sm.read(|m| m.0.get("key-042").cloned());
        println!("node {id}: {count} keys, key-042 = {v:?}");
        assert_eq!(count, 100);
    }

    // Kill a follower: its log stops as a killed process's would, nothing is closed.
    let victim = (1..=3).find(|id| *id != first_leader).expect("a follower");
    router.remove(victim);
    let node = nodes.remove(&victim).expect("running");
    node.log.abandon();
    let _ = node.raft.shutdown().await;
    drop(node);
    println!("killed node {victim}");

    let leader_id = leader(&nodes).await;
    for i in 100..150 {
        last = set(
            &nodes[&leader_id].raft,
            format!("key-{i:03}"),
            format!("value {i}"),
        )
        .await;
    }
    println!("wrote 50 more keys with node {victim} down");

    nodes.insert(victim, start_node(root.path(), victim, &router).await);
    wait_applied(&nodes[&victim], last).await;
    let node = &nodes[&victim];
    let count = node.sm.read(|m| m.0.len());
    let v = node.sm.read(|m| m.0.get("key-142").cloned());
    println!(
        "node {victim} restarted from its ringlog directory: {count} keys, key-142 = {v:?}, log {}..{}",
        node.log.first_offset(),
        node.log.next_offset()
    );
    assert_eq!(count, 150);
    assert_eq!(v.as_deref(), Some("value 142"));

    for node in nodes.values() {
        node.raft.shutdown().await.expect("shutdown");
    }
    println!("ok");
}
