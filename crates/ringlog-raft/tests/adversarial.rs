//! The adversarial sequences, directly on the store: append 10 → truncate at 5 → append 3
//! at a new term → reopen; and truncate at 5 → power cut (ringlog's simulated disk, at
//! every write and flush the truncation and the appends after it make) → reopen: 1–4
//! present, nothing truncated comes back, and the acknowledged entries of the new term
//! are there.

mod common;

use std::path::Path;

use common::*;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
use ringlog::sim::{apply_crash, CrashMode, SimDisk};
use ringlog_raft::LogStore;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<TC> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(format!("term {term} index {index}").into_bytes()),
    }
}

fn sim_opts() -> ringlog::Options {
    store_opts()
        .durability(ringlog::Durability::Sync)
        .io(ringlog::IoBackend::Pwrite)
}

/// `(term, index)` of every entry in the store, and checks each payload matches its id.
async fn terms(store: &mut LogStore<TC>) -> Vec<(u64, u64)> {
    let state = store.get_log_state().await.unwrap();
    let end = state.last_log_id.map_or(0, |l| l.index + 1);
    let entries = store.try_get_log_entries(0..end + 10).await.unwrap();
    entries
        .iter()
        .map(|e| {
            let (term, index) = (e.log_id.leader_id.term, e.log_id.index);
            match &e.payload {
                EntryPayload::Normal(p) => assert_eq!(p, &entry(term, index).payload_bytes()),
                other => panic!("unexpected payload {other:?}"),
            }
            (term, index)
        })
        .collect()
}

trait PayloadBytes {
    fn payload_bytes(&self) -> Vec<u8>;
}

impl PayloadBytes for Entry<TC> {
    fn payload_bytes(&self) -> Vec<u8> {
        match &self.payload {
            EntryPayload::Normal(p) => p.clone(),
            _ => Vec::new(),
        }
    }
}

fn expect(ranges: &[(u64, std::ops::RangeInclusive<u64>)]) -> Vec<(u64, u64)> {
    ranges
        .iter()
        .flat_map(|(term, r)| r.clone().map(move |i| (*term, i)))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn append_truncate_append_at_a_new_term_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let after = expect(&[(1, 1..=4), (2, 5..=7)]);
    {
        let mut store: LogStore<TC> = LogStore::open(dir.path(), store_opts()).unwrap();
        store
            .blocking_append((1..=10).map(|i| entry(1, i)))
            .await
            .unwrap();
        assert_eq!(terms(&mut store).await, expect(&[(1, 1..=10)]));
        store.truncate(log_id(1, 5)).await.unwrap();
        assert_eq!(terms(&mut store).await, expect(&[(1, 1..=4)]));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 4)));
        store
            .blocking_append((5..=7).map(|i| entry(2, i)))
            .await
            .unwrap();
        assert_eq!(terms(&mut store).await, after);
        // An append that would leave a hole is refused.
        assert!(store.blocking_append([entry(2, 9)]).await.is_err());
        // Dropped without a close, as a killed process leaves it.
        store.log().abandon();
    }
    let mut store: LogStore<TC> = LogStore::open(dir.path(), store_opts()).unwrap();
    assert_eq!(terms(&mut store).await, after);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 7)));
    assert_eq!(state.last_purged_log_id, None);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// Puts back files the process deleted after the power failed (the simulated disk does
/// not stop deletions; a real power cut would have stopped the process first).
fn restore_unlinked(pre: &Path, dir: &Path) {
    for item in std::fs::read_dir(pre).unwrap() {
        let item = item.unwrap();
        let target = dir.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            restore_unlinked(&item.path(), &target);
        } else if !target.exists() {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// Runs `steps` (the truncation at 5, then three appends at term 2) on a store of ten
/// term-1 entries on the simulated disk, with the power cut before operation `stop` of
/// the steps. Returns how many steps returned successfully and whether the power failed.
async fn crash_run(dir: &Path, stop: Option<u64>, seed: u64) -> (usize, bool) {
    let log_dir = dir.join("log");
    // Ten durable entries, written through the real disk.
    {
        let mut store: LogStore<TC> = LogStore::open(dir, store_opts()).unwrap();
        store
            .blocking_append((1..=10).map(|i| entry(1, i)))
            .await
            .unwrap();
        store.log().close().unwrap();
    }
    let pre = dir.with_extension("pre");
    copy_dir(&log_dir, &pre);
    let disk = SimDisk::new();
    let log = ringlog::Log::open_with_backend(&log_dir, sim_opts(), disk.backend()).unwrap();
    let mut store: LogStore<TC> = LogStore::with_log(log, dir).unwrap();
    if let Some(stop) = stop {
        disk.stop_at(disk.operations_count() + stop);
    }
    let mut returned = 0;
    if store.truncate(log_id(1, 5)).await.is_ok() {
        returned += 1;
        for i in 5..=7 {
            if store.blocking_append([entry(2, i)]).await.is_err() {
                break;
            }
            returned += 1;
        }
    }
    let stopped = disk.stopped();
    store.log().abandon();
    drop(store);
    if stopped {
        restore_unlinked(&pre, &log_dir);
    }
    std::fs::remove_dir_all(&pre).unwrap();
    apply_crash(
        &disk.take_pending(),
        &log_dir,
        &log_dir,
        CrashMode::Torn,
        seed,
    )
    .unwrap();
    (returned, stopped)
}

#[tokio::test(flavor = "current_thread")]
async fn truncate_then_power_cut_at_every_operation() {
    let root = tempfile::tempdir().unwrap();
    // How many operations the steps make when nothing fails.
    let probe = root.path().join("probe");
    let disk_ops = {
        let (returned, stopped) = crash_run(&probe, None, 0).await;
        assert_eq!((returned, stopped), (4, false));
        // Count by running again with a stop far away.
        let dir = root.path().join("count");
        let mut n = 1;
        loop {
            let (returned, stopped) =
                crash_run(&dir.with_extension(n.to_string()), Some(n), 0).await;
            if !stopped {
                assert_eq!(returned, 4);
                break n;
            }
            n += 1;
            assert!(n < 10_000, "the steps never finish");
        }
    };
    eprintln!(
        "the truncation and three appends make {} disk operations",
        disk_ops - 1
    );
    let mut states = 0;
    for stop in 1..=disk_ops {
        for seed in 0..4u64 {
            let context = format!("stop {stop}/{disk_ops} seed {seed}");
            let dir = root.path().join(format!("s{stop}-{seed}"));
            let (returned, _stopped) = crash_run(&dir, Some(stop), seed).await;
            let mut store: LogStore<TC> = LogStore::open(&dir, store_opts())
                .unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
            let got = terms(&mut store).await;
            // 1–4 always; then either the old 5–10 whole (the truncation did not happen),
            // or a prefix of the new term's 5–7 holding at least what was acknowledged.
            assert_eq!(&got[..4], &expect(&[(1, 1..=4)])[..], "{context}: {got:?}");
            let rest = &got[4..];
            if returned == 0 && rest == expect(&[(1, 5..=10)]).as_slice() {
                states += 1;
                continue;
            }
            assert!(
                rest.iter().all(|&(term, _)| term == 2),
                "{context}: truncated entries came back: {got:?} (returned {returned})"
            );
            assert!(rest.len() <= 3, "{context}: {got:?}");
            assert!(
                rest.len() + 1 >= returned,
                "{context}: acknowledged entries lost: {got:?} (returned {returned})"
            );
            // A second life: the log goes on from where the crash left it.
            let next = 5 + rest.len() as u64;
            store.blocking_append([entry(3, next)]).await.unwrap();
            drop(store);
            let mut store: LogStore<TC> = LogStore::open(&dir, store_opts()).unwrap();
            let again = terms(&mut store).await;
            assert_eq!(again.len(), got.len() + 1, "{context}: {again:?}");
            assert_eq!(again.last(), Some(&(3, next)), "{context}");
            states += 1;
        }
    }
    eprintln!("{states} crash states checked");
}
