//! Replicated durable appends on a 3-node in-process cluster: 16 concurrent clients on the
//! leader each write 1 KiB entries one after another; records/s and the latency of a write
//! (until committed and applied on the leader), p50 and p99. Run once with each node's log
//! in ringlog (every entry `fdatasync`ed before it counts) and once with openraft-style
//! in-memory log stores (the upper bound: nothing is written to disk).
//!
//! ```text
//! cargo run --release -p ringlog-raft --example bench_replication [-- both|ringlog|memory|disk [batched]]
//! ```
//!
//! With `batched`, the clients hand their records to one proposer task on the leader,
//! which proposes what came in meanwhile as one entry (see `run_proposer`).
//!
//! `RINGLOG_RAFT_BENCH_SECS` (default 10) sets the measured time per store, after a
//! 1-second warm-up; `RINGLOG_RAFT_BENCH_CLIENTS` (default 16) the number of clients.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, LogId, Raft};
use ringlog_raft::cluster::Router;
use ringlog_raft::mem::{App, MemLogStore, MemStateMachine};
use ringlog_raft::LogStore;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    Tc: D = Vec<u8>, R = (), SnapshotData = std::io::Cursor<Vec<u8>>
);

/// Counts what it applies (the benchmark measures the log, not the state machine).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    entries: u64,
    bytes: u64,
}

impl App<Tc> for Count {
    fn apply(&mut self, _log_id: &LogId<u64>, data: &Vec<u8>) {
        self.entries += 1;
        self.bytes += data.len() as u64;
    }
}

type Sm = MemStateMachine<Tc, Count>;

const PAYLOAD_BYTES: usize = 1024;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid config"))
}

struct Figures {
    records_per_s: f64,
    latency_us_p50: u64,
    latency_us_p99: u64,
    records: u64,
}

/// A client's request to the batching proposer: its record, and where to say it committed.
type Proposal = (Vec<u8>, tokio::sync::oneshot::Sender<()>);

/// Proposes what the clients sent meanwhile as one entry (up to `MAX_BATCH` records, each
/// a u32 length and its bytes), one entry at a time: the application-level group commit an
/// application on openraft 0.9 uses, whose leader flushes each entry before the next.
async fn run_proposer(raft: Raft<Tc>, mut rx: tokio::sync::mpsc::Receiver<Proposal>) {
    const MAX_BATCH: usize = 64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut entry = Vec::with_capacity(batch.len() * (PAYLOAD_BYTES + 4));
        for (record, _) in &batch {
            entry.extend_from_slice(&(record.len() as u32).to_le_bytes());
            entry.extend_from_slice(record);
        }
        raft.client_write(entry).await.expect("the batch commits");
        for (_, done) in batch {
            let _ = done.send(());
        }
    }
}

async fn run<LS: RaftLogStorage<Tc>>(
    mut make_store: impl FnMut(u64) -> LS,
    batched: bool,
) -> Figures {
    let router = Router::<Tc>::default();
    let mut rafts = BTreeMap::new();
    for id in 1..=3u64 {
        let raft = Raft::new(
            id,
            config(),
            router.for_node(id),
            make_store(id),
            Sm::default(),
        )
        .await
        .expect("start a node");
        router.add(id, raft.clone());
        rafts.insert(id, raft);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3).map(|id| (id, BasicNode::default())).collect();
    rafts[&1].initialize(members).await.expect("initialize");
    let leader = loop {
        if let Some(l) = rafts[&1].metrics().borrow().current_leader {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let raft = rafts[&leader].clone();
    let proposer = batched.then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Proposal>(1024);
        tokio::spawn(run_proposer(raft.clone(), rx));
        tx
    });
    let clients = env("RINGLOG_RAFT_BENCH_CLIENTS", 16);
    let measured = Duration::from_secs(env("RINGLOG_RAFT_BENCH_SECS", 10));
    let warmup = Duration::from_secs(1);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for client in 0..clients {
        let raft = raft.clone();
        let stop = stop.clone();
        let proposer = proposer.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut payload = vec![(client as u8).wrapping_add(i as u8); PAYLOAD_BYTES];
                payload[..8].copy_from_slice(&i.to_le_bytes());
                let t = Instant::now();
                match &proposer {
                    None => {
                        raft.client_write(payload).await.expect("the write commits");
                    }
                    Some(proposer) => {
                        let (done, committed) = tokio::sync::oneshot::channel();
                        proposer
                            .send((payload, done))
                            .await
                            .expect("the proposer runs");
                        committed.await.expect("the batch commits");
                    }
                }
                if t.duration_since(start) >= warmup {
                    latencies_us.push(t.elapsed().as_micros() as u64);
                }
                i += 1;
            }
            latencies_us
        }));
    }
    tokio::time::sleep(warmup + measured).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("a client"));
    }
    let elapsed = start.elapsed() - warmup;
    drop(proposer);
    for raft in rafts.values() {
        raft.shutdown().await.expect("shutdown");
    }
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        records_per_s: all.len() as f64 / elapsed.as_secs_f64(),
        latency_us_p50: at(0.50),
        latency_us_p99: at(0.99),
        records: all.len() as u64,
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:>8}: {:>8.0} records/s  p50 {:>6} µs  p99 {:>6} µs  ({} records)",
        f.records_per_s, f.latency_us_p50, f.latency_us_p99, f.records
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let batched = std::env::args().nth(2).as_deref() == Some("batched");
    if batched {
        println!("batched: each entry carries the records the clients sent while the previous one committed (up to 64)");
    }
    let mut ringlog_figures = None;
    let mut memory_figures = None;
    if which == "both" || which == "ringlog" {
        let root = tempfile::tempdir().expect("a temporary directory");
        let path = root.path().to_path_buf();
        let mut logs = Vec::new();
        let f = run(
            |id| {
                let store = LogStore::<Tc>::open(
                    path.join(format!("node-{id}")),
                    ringlog::Options::default(),
                )
                .expect("open the node's log");
                logs.push(store.log());
                store
            },
            batched,
        )
        .await;
        print("ringlog", &f);
        for (i, log) in logs.iter().enumerate() {
            let stats = log.stats();
            println!(
                "    node {}: {} records, {} fsyncs, {:.1} records per fsync",
                i + 1,
                stats.records_count,
                stats.fsyncs_count,
                stats.records_per_fsync
            );
        }
        ringlog_figures = Some(f);
    }
    if which == "both" || which == "memory" {
        let f = run(|_| MemLogStore::<Tc>::default(), batched).await;
        print("memory", &f);
        memory_figures = Some(f);
    }
    if which == "both" || which == "disk" {
        // The reference: one ringlog log, one producer, durable 1 KiB appends back to back:
        // what one fdatasync after another allows (openraft 0.9's leader waits for each of
        // its appends to be flushed before it handles the next write).
        let root = tempfile::tempdir().expect("a temporary directory");
        let log = ringlog::Log::open(
            root.path(),
            ringlog::Options::default().durability(ringlog::Durability::Sync),
        )
        .expect("open a log");
        let payload = vec![7u8; PAYLOAD_BYTES];
        let measured = Duration::from_secs(env("RINGLOG_RAFT_BENCH_SECS", 10));
        let start = Instant::now();
        let mut latencies_us = Vec::new();
        while start.elapsed() < measured {
            let t = Instant::now();
            log.append(&payload).expect("append");
            latencies_us.push(t.elapsed().as_micros() as u64);
        }
        let elapsed = start.elapsed();
        latencies_us.sort_unstable();
        let at = |q: f64| {
            latencies_us[((latencies_us.len() as f64 * q) as usize).min(latencies_us.len() - 1)]
        };
        print(
            "1 log",
            &Figures {
                records_per_s: latencies_us.len() as f64 / elapsed.as_secs_f64(),
                latency_us_p50: at(0.5),
                latency_us_p99: at(0.99),
                records: latencies_us.len() as u64,
            },
        );
    }
    if let (Some(r), Some(m)) = (ringlog_figures, memory_figures) {
        println!(
            "ringlog / memory throughput: {:.2}x",
            r.records_per_s / m.records_per_s
        );
    }
}
