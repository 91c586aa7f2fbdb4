//! A 3-node cluster in one process (function-call router), each node on its own ringlog
//! directory: elects a leader, replicates entries from 16 concurrent clients while each node
//! in turn is killed (nodes 1 and 3: the log abandoned as a killed process would leave it,
//! staged records dropped; node 2: dropped without a close) and restarted from disk; afterwards no acknowledged entry is missing and
//! the three logs are equal.
//!
//! `RINGLOG_RAFT_ENTRIES` sets the number of entries (default 10,000).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn entries_count() -> u64 {
    std::env::var("RINGLOG_RAFT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

const CLIENTS: u64 = 16;

fn payload(client: u64, seq: u64) -> Vec<u8> {
    let mut p = vec![0u8; 100];
    p[..8].copy_from_slice(&client.to_le_bytes());
    p[8..16].copy_from_slice(&seq.to_le_bytes());
    p[16..].fill((client * 31 + seq) as u8);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_each_node_killed_in_turn() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(root.path(), &[1, 2, 3]).await;
    let leader = cluster.leader(Duration::from_secs(20)).await;
    eprintln!("leader elected: node {leader}");

    let total = entries_count();
    // Five phases: all up, then node 1, 2, 3 killed in turn (each restarted before the
    // next), then all up again.
    let phases = 5u64;
    let per_phase = total / phases;
    let rafts = Arc::new(tokio::sync::RwLock::new(
        cluster
            .nodes
            .iter()
            .map(|(id, n)| (*id, n.raft.clone()))
            .collect::<BTreeMap<_, _>>(),
    ));
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut seq = 0u64;
    for phase in 0..phases {
        let victim = (1..=3).contains(&phase).then_some(phase);
        // Writers run while the victim is killed, then while it is restarted and catches up.
        let writers = spawn_writers(rafts.clone(), seq, per_phase);
        seq += per_phase;
        if let Some(victim) = victim {
            tokio::time::sleep(Duration::from_millis(150)).await;
            rafts.write().await.remove(&victim);
            if victim == 2 {
                cluster.drop_unclosed(victim).await;
                eprintln!("phase {phase}: dropped node {victim} without a close");
            } else {
                cluster.kill(victim).await;
                eprintln!("phase {phase}: killed node {victim} (log abandoned)");
            }
            tokio::time::sleep(Duration::from_millis(600)).await;
            cluster.start_node(victim).await;
            rafts
                .write()
                .await
                .insert(victim, cluster.nodes[&victim].raft.clone());
            eprintln!("phase {phase}: restarted node {victim}");
        }
        for (index, p) in writers.await.unwrap() {
            assert!(
                acked.insert(index, p).is_none(),
                "two writes acknowledged at {index}"
            );
        }
        eprintln!("phase {phase}: {} writes acknowledged", acked.len());
    }
    assert_eq!(acked.len() as u64, per_phase * phases);

    let last = cluster.last_log_index().await;
    cluster.wait_applied(last, Duration::from_secs(60)).await;
    for node in cluster.nodes.values() {
        node.raft.shutdown().await.unwrap();
    }
    let router = cluster.router.clone();
    for id in 1..=3 {
        router.remove(id);
    }
    drop(cluster);

    let logs: Vec<_> = futures_join(root.path()).await;
    for (id, log) in logs.iter().enumerate() {
        let by_index = payloads(log);
        let lost = acked
            .iter()
            .filter(|(index, p)| by_index.get(index) != Some(*p))
            .count();
        assert_eq!(
            lost,
            0,
            "node {}: acknowledged entries lost or changed",
            id + 1
        );
    }
    assert_eq!(logs[0].len(), logs[1].len());
    assert_eq!(logs[1].len(), logs[2].len());
    for (i, ((a, b), c)) in logs[0].iter().zip(&logs[1]).zip(&logs[2]).enumerate() {
        assert_eq!(a.log_id, b.log_id, "entry {i}");
        assert_eq!(b.log_id, c.log_id, "entry {i}");
    }
    assert_eq!(payloads(&logs[0]), payloads(&logs[1]));
    assert_eq!(payloads(&logs[1]), payloads(&logs[2]));
    eprintln!(
        "{} acknowledged entries, 0 lost; logs equal on 3 nodes ({} entries each)",
        acked.len(),
        logs[0].len()
    );
}

async fn futures_join(root: &std::path::Path) -> Vec<Vec<openraft::Entry<TC>>> {
    let mut out = Vec::new();
    for id in 1..=3 {
        out.push(dump(&node_dir(root, id)).await);
    }
    out
}

fn spawn_writers(
    rafts: Arc<tokio::sync::RwLock<BTreeMap<u64, openraft::Raft<TC>>>>,
    first_seq: u64,
    count: u64,
) -> tokio::task::JoinHandle<Vec<(u64, Vec<u8>)>> {
    tokio::spawn(async move {
        let mut handles = Vec::new();
        for client in 0..CLIENTS {
            let rafts = rafts.clone();
            handles.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let mut s = first_seq + client;
                while s < first_seq + count {
                    let p = payload(client, s);
                    let index = write(&rafts, p.clone()).await;
                    out.push((index, p));
                    s += CLIENTS;
                }
                out
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    })
}
