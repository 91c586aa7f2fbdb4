//! A proptest state machine against a simple in-memory model: random sequences of
//! append, batch, submit, sync, read, iter, tail, read_range, a read-only handle beside
//! the writer, reopen (close + open), drop without close, and reopen with an injected
//! write, fsync or short-write failure (`FaultPlan`), under `Durability::Sync` and
//! `Durability::None`, on both backends, with 64 KiB segments so rollovers happen.
//!
//! Checked after every step: reads return exactly what the model holds; acknowledged
//! records (Ok under `Sync`, or covered by an Ok `sync()`/close) survive every reopen; a
//! reopen finds a prefix of what was submitted that contains every acknowledged record;
//! after the first failure nothing succeeds (G4: appends, batches and syncs all fail, the
//! next append with `Poisoned`), and reads of durable records still work.
//!
//! `RINGLOG_MODEL_CASES` (default 600) sets the number of cases, `RINGLOG_SEED` replays a
//! run (the failing case is shrunk and printed).

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use ringlog::{Durability, Error, FaultPlan, IoBackend, Log, Options};

#[derive(Debug, Clone, Copy)]
enum Fault {
    Write,
    Sync,
    ShortWrite,
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Batch(Vec<usize>),
    Submit(usize),
    Sync,
    Read(u16),
    Iter(u16),
    Tail(u8),
    ReadRange(u16, u8),
    ReadOnly,
    Reopen,
    DropReopen,
    ReopenWithFault(Fault, u8),
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..400,
        3 => 400usize..3000,
        1 => 8000usize..20000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => payload_len().prop_map(Op::Append),
        3 => vec(payload_len(), 0..6).prop_map(Op::Batch),
        2 => payload_len().prop_map(Op::Submit),
        2 => Just(Op::Sync),
        4 => any::<u16>().prop_map(Op::Read),
        2 => any::<u16>().prop_map(Op::Iter),
        1 => any::<u8>().prop_map(Op::Tail),
        1 => (any::<u16>(), any::<u8>()).prop_map(|(a, b)| Op::ReadRange(a, b)),
        1 => Just(Op::ReadOnly),
        1 => Just(Op::Reopen),
        1 => Just(Op::DropReopen),
        1 => (prop_oneof![Just(Fault::Write), Just(Fault::Sync), Just(Fault::ShortWrite)], 1u8..5)

            .prop_map(|(f, n)| Op::ReopenWithFault(f, n)),
    ]
}

/// Counts over the whole run.
#[derive(Default)]
struct Counts {
    cases: AtomicU64,
    ops: AtomicU64,
    reopens: AtomicU64,
    faults_planned: AtomicU64,
    faults_fired: AtomicU64,
    faults_fired_at_open: AtomicU64,
    poisoned_checks: AtomicU64,
    acked: AtomicU64,
    unacked_lost_after_failure: AtomicU64,
    unacked_kept_after_failure: AtomicU64,
    rollovers: AtomicU64,
}

struct Model {
    /// Records that may be in the log, in offset order.
    records: Vec<Vec<u8>>,
    /// `records[..acked]` are acknowledged and must survive.
    acked: usize,
    /// An operation failed since the last (re)open: nothing may succeed any more.
    failed: bool,
}

fn body(offset: u64, len: usize, salt: u64) -> Vec<u8> {
    let mut out = common::payload(offset ^ salt.rotate_left(32), len.max(8));
    out.truncate(len);
    out
}

struct Case<'a> {
    dir: tempfile::TempDir,
    opts: Options,
    log: Option<Log>,
    model: Model,
    counts: &'a Counts,
    salt: u64,
    /// `Durability::Sync` (else `None`).
    sync: bool,
    /// A fault plan is armed since the last reopen.
    faults_armed: bool,
}

type R = Result<(), String>;

impl Case<'_> {
    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn sync_mode(&self) -> bool {
        self.sync
    }

    fn next_body(&mut self, len: usize) -> Vec<u8> {
        let offset = self.model.records.len() as u64;
        body(offset, len, self.salt)
    }

    /// An append-like operation returned `result` for `bodies`.
    fn appended(
        &mut self,
        bodies: Vec<Vec<u8>>,
        result: ringlog::Result<std::ops::Range<u64>>,
    ) -> R {
        let start = self.model.records.len() as u64;
        match result {
            Ok(range) => {
                if self.model.failed {
                    return Err(format!("G4: append acknowledged {range:?} after a failure"));
                }
                if range != (start..start + bodies.len() as u64) {
                    return Err(format!(
                        "append got {range:?}, expected {start}..+{}",
                        bodies.len()
                    ));
                }
                self.model.records.extend(bodies);
                if self.sync_mode() {
                    self.model.acked = self.model.records.len();
                    if self.log().durable_offset() < self.model.acked as u64 {
                        return Err("acknowledged below the durable offset".into());
                    }
                }
                Ok(())
            }
            Err(e) => {
                let first = !self.model.failed;
                match &e {
                    Error::Poisoned { .. } if !first => {}
                    Error::Io { .. } | Error::Poisoned { .. } if first => {
                        // The first failure: its records may or may not have been
                        // written; they are not acknowledged.
                        self.counts.faults_fired.fetch_add(1, Ordering::Relaxed);
                        self.model.failed = true;
                        // Staged (and perhaps written) before the failure, or refused
                        // before staging: present or not, they end the log.
                        self.model.records.extend(bodies);
                        // G4: the log is poisoned now.
                        let next = self.log().append(b"after the failure");
                        if !matches!(next, Err(Error::Poisoned { .. })) {
                            return Err(format!(
                                "G4: the append after a failure gave {next:?}, not Poisoned"
                            ));
                        }
                        self.counts.poisoned_checks.fetch_add(1, Ordering::Relaxed);
                        if self.log().sync().is_ok() {
                            return Err("G4: sync() succeeded after a failure".into());
                        }
                    }
                    other => return Err(format!("unexpected append error: {other}")),
                }
                Ok(())
            }
        }
    }

    /// Records below this are certainly visible to readers (acknowledged); above it
    /// they may or may not be yet.
    fn visible(&self) -> u64 {
        self.model.acked as u64
    }

    fn check_record(&self, offset: u64, got: ringlog::Result<ringlog::Record>) -> R {
        let known = self.model.acked as u64;
        match got {
            Ok(record) => {
                let expected =
                    self.model.records.get(offset as usize).ok_or_else(|| {
                        format!("read {offset}: a record that was never appended")
                    })?;
                if record.offset() != offset || record.payload() != expected.as_slice() {
                    return Err(format!("read {offset}: WRONG BYTES"));
                }
                Ok(())
            }
            Err(Error::OffsetOutOfRange { .. }) if offset >= known => Ok(()),
            Err(e) => Err(format!("read {offset} (acknowledged below {known}): {e}")),
        }
    }

    fn reopen(&mut self, close: bool, mut faults: FaultPlan) -> R {
        let log = self.log.take().expect("open");
        if close {
            let result = log.close();
            match (&result, self.model.failed) {
                (Ok(()), true) => return Err("G4: close succeeded after a failure".into()),
                (Ok(()), false) => self.model.acked = self.model.records.len(),
                (Err(_), true) => {}
                // A fault the model had not seen yet (the writer thread hit it).
                (Err(_), false) if self.faults_armed => self.model.failed = true,
                (Err(e), false) => return Err(format!("close failed without a fault: {e}")),
            }
        } else if !self.model.failed && !self.faults_armed {
            // Drop closes best effort; with no fault that flushes everything.
            self.model.acked = self.model.records.len();
        }
        drop(log);
        self.counts.reopens.fetch_add(1, Ordering::Relaxed);
        let log = match Log::open_with_faults(self.dir.path(), self.opts.clone(), faults) {
            Ok(log) => log,
            // Recovery's own writes and flushes go through the faulty backend too: a
            // fault may fire there. Open fails; a plain open then recovers.
            Err(Error::Io { .. }) if faults != FaultPlan::default() => {
                self.counts
                    .faults_fired_at_open
                    .fetch_add(1, Ordering::Relaxed);
                faults = FaultPlan::default();
                Log::open(self.dir.path(), self.opts.clone())
                    .map_err(|e| format!("open after a fault failed the previous open: {e}"))?
            }
            Err(e) => return Err(format!("reopen: {e}")),
        };
        let next = log.next_offset();
        let (acked, all) = (self.model.acked as u64, self.model.records.len() as u64);
        if next < acked || next > all {
            return Err(format!(
                "reopen found {next} records: {acked} acknowledged, {all} submitted"
            ));
        }
        if self.model.failed {
            self.counts
                .unacked_kept_after_failure
                .fetch_add(next - acked, Ordering::Relaxed);
            self.counts
                .unacked_lost_after_failure
                .fetch_add(all - next, Ordering::Relaxed);
        }
        for (i, record) in log.iter(0).enumerate() {
            let record = record.map_err(|e| format!("after reopen, record {i}: {e}"))?;
            if record.payload() != self.model.records[i].as_slice() {
                return Err(format!("after reopen, record {i}: WRONG BYTES"));
            }
        }
        self.model.records.truncate(next as usize);
        self.model.acked = next as usize;
        self.model.failed = false;
        self.faults_armed = faults != FaultPlan::default();
        self.log = Some(log);
        Ok(())
    }

    fn step(&mut self, op: &Op) -> R {
        self.counts.ops.fetch_add(1, Ordering::Relaxed);
        let n = self.model.records.len() as u64;
        match op {
            Op::Append(len) => {
                let b = self.next_body(*len);
                let result = self.log().append(&b).map(|o| o..o + 1);
                self.appended(vec![b], result)
            }
            Op::Batch(lens) => {
                let start = self.model.records.len() as u64;
                let bodies: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, l)| body(start + i as u64, *l, self.salt))
                    .collect();
                let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
                let result = self.log().append_batch(&refs);
                if bodies.is_empty() {
                    return match result {
                        Ok(r) if r.is_empty() && r.start == start => Ok(()),
                        Err(Error::Poisoned { .. }) if self.model.failed => Ok(()),
                        // The writer thread hit an armed fault the model had not seen.
                        Err(Error::Poisoned { .. }) if self.faults_armed => {
                            self.counts.faults_fired.fetch_add(1, Ordering::Relaxed);
                            self.model.failed = true;
                            Ok(())
                        }
                        other => Err(format!("empty batch: {other:?}")),
                    };
                }
                self.appended(bodies, result)
            }
            Op::Submit(len) => {
                let b = self.next_body(*len);
                let result = self
                    .log()
                    .submit(&b)
                    .and_then(|t| t.wait())
                    .map(|o| o..o + 1);
                self.appended(vec![b], result)
            }
            Op::Sync => match self.log().sync() {
                Ok(()) if self.model.failed => Err("G4: sync() succeeded after a failure".into()),
                Ok(()) => {
                    self.model.acked = self.model.records.len();
                    if self.log().durable_offset() != n {
                        return Err(format!(
                            "sync returned with durable offset {} of {n}",
                            self.log().durable_offset()
                        ));
                    }
                    Ok(())
                }
                Err(Error::Poisoned { .. }) if self.model.failed => Ok(()),
                Err(e @ (Error::Io { .. } | Error::Poisoned { .. })) => {
                    // The failure surfaced at the flush.
                    let _ = e;
                    self.counts.faults_fired.fetch_add(1, Ordering::Relaxed);
                    self.model.failed = true;
                    Ok(())
                }
                Err(e) => Err(format!("sync: {e}")),
            },
            Op::Read(i) => {
                if n == 0 {
                    return self.check_record(0, self.log().read(0));
                }
                let offset = *i as u64 % (n + 1);
                self.check_record(offset, self.log().read(offset))
            }
            Op::Iter(from) => {
                let from = *from as u64 % (n + 1);
                let known = self.visible();
                let mut count = 0u64;
                for (k, record) in self.log().iter(from).enumerate() {
                    let offset = from + k as u64;
                    match record {
                        Err(Error::OffsetOutOfRange { .. }) if k == 0 && from > known => {
                            return Ok(())
                        }
                        other => self.check_record(offset, other)?,
                    }
                    count += 1;
                }
                if from < known && count < known - from {
                    return Err(format!(
                        "iter({from}) stopped after {count} records; {known} are acknowledged"
                    ));
                }
                Ok(())
            }
            Op::Tail(k) => {
                let k = *k as usize % 40;
                let tail = self.log().tail(k).map_err(|e| format!("tail: {e}"))?;
                if tail.len() > k {
                    return Err("tail returned too many".into());
                }
                if tail.len() < k.min(self.model.acked) {
                    return Err(format!(
                        "tail({k}) returned {} with {} acknowledged",
                        tail.len(),
                        self.model.acked
                    ));
                }
                for (i, r) in tail.iter().enumerate() {
                    if i > 0 && r.offset() != tail[i - 1].offset() + 1 {
                        return Err("tail is not consecutive".into());
                    }
                    self.check_record(r.offset(), Ok(r.clone()))?;
                }
                if let Some(last) = tail.last() {
                    if (last.offset() + 1) < self.model.acked as u64 {
                        return Err("tail does not end at the last acknowledged record".into());
                    }
                }
                Ok(())
            }
            Op::ReadRange(from, max) => {
                let from = *from as u64 % (n + 1);
                let max = *max as usize % 50;
                let known = self.model.acked as u64;
                match self.log().read_range(from, max) {
                    Ok(records) => {
                        if from < known && (records.len() as u64) < (known - from).min(max as u64) {
                            return Err(format!(
                                "read_range({from}, {max}) returned {}",
                                records.len()
                            ));
                        }
                        for (k, r) in records.into_iter().enumerate() {
                            self.check_record(from + k as u64, Ok(r))?;
                        }
                        Ok(())
                    }
                    Err(Error::OffsetOutOfRange { .. }) if from > known => Ok(()),
                    Err(e) => Err(format!("read_range({from}, {max}): {e}")),
                }
            }
            Op::ReadOnly => {
                let ro = Log::open_read_only(self.dir.path(), self.opts.clone())
                    .map_err(|e| format!("read-only open beside the writer: {e}"))?;
                let seen = ro.next_offset();
                if self.sync_mode() && seen < self.model.acked as u64 {
                    return Err(format!(
                        "read-only handle sees {seen} records, {} acknowledged",
                        self.model.acked
                    ));
                }
                if seen > n {
                    return Err(format!(
                        "read-only handle sees {seen} records, {n} submitted"
                    ));
                }
                for (i, r) in ro.iter(0).enumerate() {
                    let r = r.map_err(|e| format!("read-only read {i}: {e}"))?;
                    if r.payload() != self.model.records[i].as_slice() {
                        return Err(format!("read-only read {i}: WRONG BYTES"));
                    }
                }
                Ok(())
            }
            Op::Reopen => self.reopen(true, FaultPlan::default()),
            Op::DropReopen => self.reopen(false, FaultPlan::default()),
            Op::ReopenWithFault(fault, nth) => {
                let nth = Some(*nth as u64);
                let plan = match fault {
                    Fault::Write => FaultPlan {
                        fail_write: nth,
                        ..FaultPlan::default()
                    },
                    Fault::Sync => FaultPlan {
                        fail_sync: nth,
                        ..FaultPlan::default()
                    },
                    Fault::ShortWrite => FaultPlan {
                        short_write: nth,
                        ..FaultPlan::default()
                    },
                };
                self.counts.faults_planned.fetch_add(1, Ordering::Relaxed);
                self.reopen(true, plan)
            }
        }
    }
}

fn run_case(sync: bool, uring: bool, ops: &[Op], counts: &Counts) -> R {
    counts.cases.fetch_add(1, Ordering::Relaxed);
    let dir = reliability::fast_tempdir();
    let durability = if sync {
        Durability::Sync
    } else {
        Durability::None
    };
    let opts = Options::default()
        .segment_bytes(64 << 10)
        .durability(durability)
        .io(if uring {
            IoBackend::Auto
        } else {
            IoBackend::Pwrite
        });
    let log = Log::open(dir.path(), opts.clone()).map_err(|e| format!("open: {e}"))?;
    let mut case = Case {
        dir,
        opts,
        log: Some(log),
        model: Model {
            records: Vec::new(),
            acked: 0,
            failed: false,
        },
        counts,
        salt: ops.len() as u64,
        sync,
        faults_armed: false,
    };
    for (i, op) in ops.iter().enumerate() {
        case.step(op).map_err(|e| format!("step {i} {op:?}: {e}"))?;
    }
    // Finally everything acknowledged is there after a clean reopen.
    case.reopen(true, FaultPlan::default())
        .map_err(|e| format!("final reopen: {e}"))?;
    counts
        .acked
        .fetch_add(case.model.acked as u64, Ordering::Relaxed);
    counts
        .rollovers
        .fetch_add(case.log().stats().segments_count - 1, Ordering::Relaxed);
    case.log
        .take()
        .unwrap()
        .close()
        .map_err(|e| format!("final close: {e}"))?;
    Ok(())
}

#[test]
fn model_state_machine() {
    let seed = reliability::seed("model");
    let cases = reliability::env_u64("RINGLOG_MODEL_CASES", 600) as u32;
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 400,
        ..Config::default()
    };
    let counts = Counts::default();
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    let strategy = (any::<bool>(), any::<bool>(), vec(op(), 1..120));
    let result = runner.run(&strategy, |(sync, uring, ops)| {
        run_case(sync, uring, &ops, &counts).map_err(TestCaseError::fail)
    });
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "model: {} cases ({} runs), {} operations, {} reopens, {} segment rollovers, {} records acknowledged and found after the final reopen; injected faults: {} planned, {} fired in appends or syncs, {} first failures of an append were checked at once (next append Poisoned, sync fails): all held, {} failed the open's recovery instead, 0 acknowledgements after a failure; unacknowledged records after a failure: {} kept, {} lost; {:.1} s",
        cases,
        c(&counts.cases),
        c(&counts.ops),
        c(&counts.reopens),
        c(&counts.rollovers),
        c(&counts.acked),
        c(&counts.faults_planned),
        c(&counts.faults_fired),
        c(&counts.poisoned_checks),
        c(&counts.faults_fired_at_open),
        c(&counts.unacked_kept_after_failure),
        c(&counts.unacked_lost_after_failure),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("model: {e:?}\n(replay with RINGLOG_SEED={seed})");
    }
}
