//! Crash states of a store (`ringlog::sim`): several topics written at once by several
//! threads (two `Sync` topics with two producers each; two `Interval` topics, which the
//! shared writer writes and flushes in one cycle; one `None` topic; the unsynced ones
//! `sync()` every few appends), power
//! failing before every write or flush in turn, each moment turned into dropped / kept /
//! subset / torn states. Every state is reopened as a store and checked, per topic:
//! every acknowledged record present and intact, a gap-free prefix of what was
//! appended, whole batches only, no record that was never written.
//!
//! `RINGLOG_SEED=<n>` replays one seed; `RINGLOG_STORE_CRASH_VARIANTS=<n>` sets the
//! states per crash point (default 24).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringlog::sim::{apply_crash, CrashMode, SimDisk};
use ringlog::{Durability, IoBackend, Log, Options, Store};

const TOPICS: [(&str, Durability, usize); 5] = [
    ("sync-a", Durability::Sync, 2),
    ("sync-b", Durability::Sync, 2),
    (
        "interval-a",
        Durability::Interval(Duration::from_micros(500)),
        1,
    ),
    (
        "interval-b",
        Durability::Interval(Duration::from_micros(500)),
        1,
    ),
    ("none", Durability::None, 1),
];

fn store_opts() -> Options {
    Options::default()
        .segment_bytes(64 << 10)
        .io(IoBackend::Pwrite)
}

fn topic_opts(durability: Durability) -> Options {
    store_opts().durability(durability)
}

/// The payload of part `part` of step `step` of producer `producer` of topic number
/// `topic`: self-describing (its first 4 bytes say whose it is, and which part of a
/// batch of `parts`), so a recovered record can be checked without knowing in advance
/// which offset it got (producers of one topic race for offsets).
fn payload(topic: usize, producer: usize, step: u64, part: u8, parts: u8) -> Vec<u8> {
    let len = 300 + (step as usize * 977 + topic * 131 + producer * 71 + part as usize * 13) % 5000;
    let mut out = vec![(step as u8) ^ (topic as u8) ^ (part << 4); len];
    out[..5].copy_from_slice(&[topic as u8, producer as u8, step as u8, part, parts]);
    out
}

/// Who wrote a record, from its payload (`None`: not a payload this test writes).
fn author(bytes: &[u8]) -> Option<(usize, usize, u64, u8, u8)> {
    let head = bytes.get(..5)?;
    let who = (
        head[0] as usize,
        head[1] as usize,
        u64::from(head[2]),
        head[3],
        head[4],
    );
    (payload(who.0, who.1, who.2, who.3, who.4) == bytes).then_some(who)
}

/// What one topic's producers had acknowledged: offset -> (producer, step, part).
#[derive(Default, Clone, Debug)]
struct TopicOracle {
    acked: BTreeMap<u64, (usize, u64, u8)>,
}

/// Runs the workload on every topic at once; returns each topic's oracle.
fn workload(store: &Store) -> BTreeMap<&'static str, TopicOracle> {
    let oracles: Arc<Mutex<BTreeMap<&'static str, TopicOracle>>> = Arc::default();
    let mut threads = Vec::new();
    for (index, (name, durability, producers)) in TOPICS.into_iter().enumerate() {
        let Ok(topic) = store.topic_with(name, topic_opts(durability)) else {
            continue;
        };
        oracles.lock().unwrap().entry(name).or_default();
        for producer in 0..producers {
            let topic = topic.clone();
            let oracles = oracles.clone();
            threads.push(std::thread::spawn(move || {
                produce(&topic, index, name, durability, producer, &oracles)
            }));
        }
    }
    for thread in threads {
        thread.join().unwrap();
    }
    let out = oracles.lock().unwrap().clone();
    out
}

fn produce(
    topic: &Log,
    index: usize,
    name: &'static str,
    durability: Durability,
    producer: usize,
    oracles: &Mutex<BTreeMap<&'static str, TopicOracle>>,
) {
    // Under `None`, appends count as acknowledged once a `sync()` after them returned.
    let mut unsynced = Vec::new();
    for step in 0..12u64 {
        let parts: u8 = if (step + producer as u64) % 4 == 3 {
            2
        } else {
            1
        };
        let bodies: Vec<Vec<u8>> = (0..parts)
            .map(|part| payload(index, producer, step, part, parts))
            .collect();
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        let Ok(range) = topic.append_batch(&refs) else {
            return;
        };
        let records: Vec<(u64, (usize, u64, u8))> = range
            .zip(0..parts)
            .map(|(offset, part)| (offset, (producer, step, part)))
            .collect();
        if durability == Durability::Sync {
            oracles
                .lock()
                .unwrap()
                .get_mut(name)
                .unwrap()
                .acked
                .extend(records);
        } else {
            unsynced.extend(records);
            if step % 3 == 2 {
                if topic.sync().is_err() {
                    return;
                }
                let mut oracles = oracles.lock().unwrap();
                oracles
                    .get_mut(name)
                    .unwrap()
                    .acked
                    .extend(unsynced.drain(..));
            }
        }
    }
}

fn check(log: &Log, index: usize, oracle: &TopicOracle, context: &str) -> u64 {
    // An unsynced topic's readers see durable records only, and recovery flushes
    // nothing under `Interval`: make what it recovered readable.
    log.sync()
        .unwrap_or_else(|e| panic!("{context}: sync after recovery: {e}"));
    let next = log.next_offset();
    if let Some((&last, _)) = oracle.acked.iter().next_back() {
        assert!(
            next > last,
            "{context}: lost acknowledged records: next {next}, acknowledged up to {last}"
        );
    }
    let mut expected = log.first_offset();
    let mut seen = std::collections::BTreeSet::new();
    let mut open_batch: Option<(usize, u64)> = None;
    for record in log.iter(log.first_offset()) {
        let record = record.unwrap_or_else(|e| panic!("{context}: read failed: {e}"));
        let offset = record.offset();
        assert_eq!(offset, expected, "{context}: gap or reorder");
        let (topic, producer, step, part, parts) = author(record.payload())
            .unwrap_or_else(|| panic!("{context}: record {offset} was never written"));
        assert_eq!(topic, index, "{context}: record {offset} of another topic");
        assert!(
            seen.insert((producer, step, part)),
            "{context}: record {offset} is a duplicate"
        );
        if let Some(&acked) = oracle.acked.get(&offset) {
            assert_eq!(
                acked,
                (producer, step, part),
                "{context}: record {offset} is not the acknowledged one"
            );
        }
        match open_batch.take() {
            Some(batch) => assert!(
                batch == (producer, step) && part == 1,
                "{context}: batch {batch:?} broken at {offset}"
            ),
            None => assert_eq!(part, 0, "{context}: record {offset} starts mid-batch"),
        }
        if part + 1 < parts {
            open_batch = Some((producer, step));
        }
        expected += 1;
    }
    assert_eq!(expected, next, "{context}: iteration stopped early");
    assert!(
        open_batch.is_none(),
        "{context}: the last batch {open_batch:?} was cut"
    );
    next
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn scratch_root() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn every_crash_point_of_a_store_recovers_every_topic() {
    let only_seed: Option<u64> = std::env::var("RINGLOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let variants: u64 = std::env::var("RINGLOG_STORE_CRASH_VARIANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let root = scratch_root();
    let total_ops = {
        let disk = SimDisk::new();
        let dir = root.path().join("dry");
        let store = Store::open_with_backend(&dir, store_opts(), disk.backend()).unwrap();
        let oracles = workload(&store);
        for (name, oracle) in &oracles {
            assert!(
                oracle.acked.len() >= 10,
                "dry run: {name} acked {}",
                oracle.acked.len()
            );
        }
        println!("dry run: {:?}", store.stats());
        store.close().unwrap();
        disk.operations_count()
    };
    let (mut states, mut acked_checked, mut cycles) = (0u64, 0u64, 0u64);
    for stop in 1..=total_ops + 1 {
        let dir = root.path().join(format!("stop-{stop}"));
        let disk = SimDisk::new();
        disk.stop_at(stop);
        let store = Store::open_with_backend(&dir, store_opts(), disk.backend()).unwrap();
        let oracles = workload(&store);
        cycles += store.stats().flush_cycles;
        store.abandon();
        drop(store);
        let pending = disk.take_pending();
        for variant in 0..variants {
            let seed = stop * 1_000_003 + variant + (7 << 40);
            if only_seed.is_some_and(|s| s != seed) {
                continue;
            }
            let mode = match variant {
                0 => CrashMode::DropAll,
                1 => CrashMode::KeepAll,
                v if v % 2 == 0 => CrashMode::Subset,
                _ => CrashMode::Torn,
            };
            let state = root.path().join(format!("state-{seed}"));
            copy_tree(&dir, &state);
            apply_crash(&pending, &dir, &state, mode, seed).unwrap();
            let context =
                format!("seed {seed} (stop {stop}, {mode:?}; replay with RINGLOG_SEED={seed})");
            let store = Store::open(&state, store_opts())
                .unwrap_or_else(|e| panic!("{context}: store open failed: {e}"));
            for (index, (name, _, _)) in TOPICS.iter().enumerate() {
                let Some(oracle) = oracles.get(name) else {
                    continue;
                };
                let topic = store
                    .topic(name)
                    .unwrap_or_else(|e| panic!("{context}: topic {name}: {e}"));
                check(&topic, index, oracle, &format!("{context} topic {name}"));
                acked_checked += oracle.acked.len() as u64;
            }
            store.close().unwrap();
            drop(store);
            std::fs::remove_dir_all(&state).unwrap();
            states += 1;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!(
        "store crash states: {states} checked over {} crash points ({cycles} flush cycles over \
         several topics before the crashes), {acked_checked} acknowledged records checked, \
         0 lost, 0 phantoms/duplicates/torn records",
        total_ops + 1
    );
    if only_seed.is_none() {
        assert!(states >= 200, "too few states: {states}");
        assert!(
            cycles > 0,
            "the writer never flushed several topics in one cycle"
        );
    }
}

/// A failed flush poisons the topic whose file it was, and only it: the files are
/// separate, so the failure cannot have lost another topic's data, and the other topics
/// go on acknowledging (and keep what they acknowledged through a power cut).
#[test]
fn a_failed_flush_poisons_its_topic_only() {
    let root = scratch_root();
    let dir = root.path().join("store");
    let disk = SimDisk::new();
    let store = Store::open_with_backend(&dir, store_opts(), disk.backend()).unwrap();
    let a = store.topic("a").unwrap();
    let b = store.topic("b").unwrap();
    a.append(b"a0").unwrap();
    b.append(b"b0").unwrap();
    // The next disk operation is a's write; the one after, its flush: fail the flush.
    disk.fail_at(disk.operations_count() + 2, 5);
    match a.append(b"a1") {
        Err(ringlog::Error::Poisoned { .. }) | Err(ringlog::Error::Io { .. }) => {}
        other => panic!("a's failed flush acknowledged: {other:?}"),
    }
    assert!(matches!(
        a.append(b"a2"),
        Err(ringlog::Error::Poisoned { .. })
    ));
    assert_eq!(a.durable_offset(), 1);
    // The cause is typed: the operation, the file, the kind of error.
    let cause = a.poison_cause().expect("a is poisoned");
    assert_eq!(cause.operation, "fdatasync");
    assert!(
        cause
            .path
            .as_ref()
            .is_some_and(|p| p.extension().is_some_and(|e| e == "seg")),
        "{cause:?}"
    );
    assert!(cause.kind.is_some(), "{cause:?}");
    assert!(b.poison_cause().is_none());
    // Nothing more of a's reaches the disk: its backends refuse every operation.
    let before = disk.operations_count();
    assert!(a.sync().is_err());
    assert!(a.append(b"a3").is_err());
    assert_eq!(disk.operations_count(), before);
    // b goes on.
    assert_eq!(b.append(b"b1").unwrap(), 1);
    assert_eq!(b.append(b"b2").unwrap(), 2);
    store.abandon();
    drop((a, b, store));
    let pending = disk.take_pending();
    apply_crash(&pending, &dir, &dir, CrashMode::DropAll, 1).unwrap();
    let store = Store::open(&dir, store_opts()).unwrap();
    let a = store.topic("a").unwrap();
    let b = store.topic("b").unwrap();
    assert_eq!(a.read(0).unwrap().payload(), b"a0");
    let b_records: Vec<Vec<u8>> = b.iter(0).map(|r| r.unwrap().payload().to_vec()).collect();
    assert_eq!(b_records, [b"b0".to_vec(), b"b1".to_vec(), b"b2".to_vec()]);
}
