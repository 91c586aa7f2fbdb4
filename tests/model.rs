//! A proptest state machine against a simple in-memory model: random sequences of
//! append, batch, submit, sync, read, iter, tail, read_range, a read-only handle beside
//! the writer, reopen (close + open), drop without close, reopen with an injected
//! write, fsync or short-write failure (`FaultPlan`), crash, and re-appending after a
//! cut, under `Durability::Sync` and `Durability::None`, on three disks: io_uring,
//! `pwritev`, and the simulated disk of `ringlog::sim` (a third of the cases each), with
//! 64 KiB segments so rollovers happen.
//!
//! A crash stops the log with `Log::abandon`. On the simulated disk it is a power cut:
//! the writes not yet flushed are dropped, kept, kept as a random subset, or torn at
//! 512-byte sectors (`CrashMode`), and index files may be lost. On the real backends it
//! is a process crash (written bytes stay in the page cache). A crash may come at the
//! end of a burst of appends during which power fails at a chosen write or flush
//! (`SimDisk::stop_at`), so writes are in flight; under `None` the burst lets the writer
//! thread write without a flush, so several unflushed writes can be torn apart. Power
//! may fail again during the recovery that follows (the result must equal an
//! undisturbed recovery of the same files: G7). After a crash, records may be
//! re-appended with the lengths and batch boundaries of the cut ones, so their frames
//! line up with cut frames that must never come back (G7).
//!
//! Checked after every step: reads return exactly what the model holds; acknowledged
//! records (Ok under `Sync`, covered by an Ok `sync()`/close, or below
//! `durable_offset()` at a crash) survive every reopen and crash; a reopen or crash
//! recovers a gap-free prefix of what was submitted, each record exactly as submitted
//! (every payload differs from the one a cut removed at its offset), that contains every
//! acknowledged record and ends at a batch boundary (G1, G2); the model then learns how
//! many unacknowledged records survived (after a `DropAll` power cut: exactly the
//! flushed ones under `Sync`, at least them under `None`, whose background flushes can
//! cover more than they count), and appends continue at the next offset; after the first failure
//! nothing succeeds (G4: appends, batches and syncs all fail, the next append with
//! `Poisoned`), and reads of durable records still work.
//!
//! `RINGLOG_MODEL_CASES` (default 600) sets the number of cases, `RINGLOG_SEED` replays a
//! run (the failing case is shrunk and printed).

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use ringlog::sim::{apply_crash, CrashMode, SimDisk};
use ringlog::{Durability, Error, FaultPlan, IoBackend, Log, Options};

/// Where the log's writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disk {
    /// io_uring (`IoBackend::Auto`: `pwritev` where the kernel has no usable ring).
    Uring,
    /// `pwritev`.
    Pwrite,
    /// The simulated disk (`ringlog::sim`): real files, but unflushed writes are
    /// remembered so a crash can drop, keep or tear them.
    Sim,
}

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
    Crash(Crash),
    /// Re-appends records as long as the ones the last cut removed at the same offsets,
    /// so that the frames after them line up with cut ones, which must never come back
    /// (G7). See [`Reappend`].
    Reappend(Reappend),
}

/// A crash: `Log::abandon`, then on the simulated disk a power cut (`apply_crash` of the
/// unflushed writes in `mode`, driven by `seed`), on the real backends a process crash
/// (what was written stays in the page cache); then a reopen.
#[derive(Debug, Clone)]
struct Crash {
    mode: CrashMode,
    seed: u64,
    /// First a burst of appends during which power may fail.
    burst: Option<Burst>,
    /// Power fails again at this operation of the reopen's recovery (simulated disk
    /// only); the next reopen must find what an undisturbed recovery finds (G7).
    in_recovery: Option<u8>,
    /// Index files (checkpoints) are lost, each with probability 1/2.
    forget_indexes: bool,
    /// After the reopen, records are re-appended as `Op::Reappend` does.
    reappend: Option<Reappend>,
}

/// Re-appending after a cut: `groups` appends or batches, each written by itself (under
/// `Durability::None`, a `sync()` after each), with the lengths of the cut records at
/// those offsets and, unless `split`, the cut batches' boundaries. Split, a single
/// record can line up with the first record of a torn batch whose other records
/// survived. Where nothing was cut, a 100-byte record.
#[derive(Debug, Clone, Copy)]
struct Reappend {
    groups: u8,
    split: bool,
}

fn reappend() -> impl Strategy<Value = Reappend> {
    (1u8..5, any::<bool>()).prop_map(|(groups, split)| Reappend { groups, split })
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..400,
        3 => 400usize..3000,
        1 => 8000usize..20000,
    ]
}

/// Appends just before a crash, so that it finds writes in flight.
#[derive(Debug, Clone)]
struct Burst {
    /// Power fails at this disk operation of the burst (a write or a flush, a rollover's
    /// included; simulated disk only). Past the burst's last operation, nothing fails.
    stop: u8,
    /// Appends (one length) and batches (more), and what follows each.
    appends: Vec<(Vec<usize>, After)>,
}

/// Under `Durability::None`, what follows an append of a burst. The burst ends as if
/// with `Written`, so that the crash finds unflushed writes (several separate ones if
/// `Written` came earlier too, and a subset crash can then leave holes).
#[derive(Debug, Clone, Copy)]
enum After {
    /// `sync()`.
    Sync,
    /// Waiting until the writer thread has written what is staged, without a flush.
    Written,
    /// Nothing: the next append joins the same write.
    Staged,
}

fn burst() -> impl Strategy<Value = Burst> {
    let append = (
        prop_oneof![
            3 => vec(payload_len(), 1..2),
            1 => vec(payload_len(), 2..5),
        ],
        prop_oneof![
            1 => Just(After::Sync),
            2 => Just(After::Written),
            1 => Just(After::Staged),
        ],
    );
    (1u8..10, vec(append, 1..5)).prop_map(|(stop, appends)| Burst { stop, appends })
}

fn crash() -> impl Strategy<Value = Crash> {
    (
        prop_oneof![
            Just(CrashMode::DropAll),
            Just(CrashMode::KeepAll),
            Just(CrashMode::Subset),
            Just(CrashMode::Torn),
        ],
        any::<u64>(),
        proptest::option::weighted(0.3, burst()),
        proptest::option::weighted(0.2, 1u8..4),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.5, reappend()),
    )
        .prop_map(
            |(mode, seed, burst, in_recovery, forget_indexes, reappend)| Crash {
                mode,
                seed,
                burst,
                in_recovery,
                forget_indexes,
                reappend,
            },
        )
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
        2 => crash().prop_map(Op::Crash),
        1 => reappend().prop_map(Op::Reappend),
    ]
}

/// Counts over the whole run.
#[derive(Default)]
struct Counts {
    cases: AtomicU64,
    cases_by_disk: [AtomicU64; 3],
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
    /// Power cuts on the simulated disk, by `CrashMode` (DropAll, KeepAll, Subset, Torn).
    power_cuts: [AtomicU64; 4],
    process_crashes: AtomicU64,
    /// Power failed at a write or flush of a burst of appends.
    power_failed_mid_burst: AtomicU64,
    /// Crashes after re-appending at offsets an earlier crash had cut (G7).
    crashes_over_cut_offsets: AtomicU64,
    /// Acknowledged records found intact after crashes (summed over crashes).
    crash_acked_checked: AtomicU64,
    /// Unacknowledged records a crash cut, or that survived it whole.
    crash_records_cut: AtomicU64,
    crash_unacked_kept: AtomicU64,
    /// Crashes during recovery: planned, recovery actually cut (open failed), and
    /// results compared with an undisturbed recovery.
    recovery_crashes: AtomicU64,
    recovery_cut: AtomicU64,
    /// Records appended as long as the cut record at their offset.
    reappended: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct Model {
    /// Records that may be in the log, in offset order.
    records: Vec<Vec<u8>>,
    /// `ends_batch[i]`: record `i` is a single append or the last of its batch, so a
    /// recovered log may end after it (G2: batches survive only whole).
    ends_batch: Vec<bool>,
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
    disk: Disk,
    /// The simulated disk under the open log (on `Disk::Sim`).
    sim: Option<Arc<SimDisk>>,
    model: Model,
    counts: &'a Counts,
    salt: u64,
    /// Opens so far: part of every payload, so a record written after a recovery
    /// differs from the one it replaced at the same offset, and a cut record that came
    /// back (G7) cannot pass for it.
    life: u64,
    /// Where the last recovery ended, and the end of the records crashes have cut.
    recovered_at: u64,
    cut_to: u64,
    /// The lengths of the records the last cut removed, from offset `cut_from` on, and
    /// whether each ended its batch.
    cut_from: u64,
    cut_lens: Vec<(usize, bool)>,
    /// `Durability::Sync` (else `None`).
    sync: bool,
    /// A fault plan is armed since the last reopen.
    faults_armed: bool,
}

type R = Result<(), String>;

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Each index file (checkpoint) of `dir` is lost with probability 1/2: a crash can take
/// back an unsynced one, and recovery must not need them.
fn forget_indexes(dir: &Path, seed: u64) -> R {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    paths.sort();
    for (i, path) in paths.iter().enumerate() {
        if seed.rotate_right(i as u32 % 64) & 1 == 1 {
            std::fs::remove_file(path).map_err(|e| format!("remove {path:?}: {e}"))?;
        }
    }
    Ok(())
}

impl Case<'_> {
    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn sync_mode(&self) -> bool {
        self.sync
    }

    fn next_body(&self, offset: u64, len: usize) -> Vec<u8> {
        body(offset, len, self.salt ^ self.life.wrapping_mul(0x9E37_79B9))
    }

    /// Opens the log on this case's disk (a fresh simulated one on `Disk::Sim`) with
    /// `faults` injected.
    fn open(&mut self, faults: FaultPlan) -> ringlog::Result<Log> {
        self.life += 1;
        match self.disk {
            Disk::Sim => {
                let sim = SimDisk::new();
                let log = Log::open_with_backend(
                    self.dir.path(),
                    self.opts.clone(),
                    faults.wrap(sim.backend()),
                );
                self.sim = Some(sim);
                log
            }
            Disk::Uring | Disk::Pwrite => {
                Log::open_with_faults(self.dir.path(), self.opts.clone(), faults)
            }
        }
    }

    /// An append-like operation returned `result` for `bodies`.
    fn appended(
        &mut self,
        bodies: Vec<Vec<u8>>,
        result: ringlog::Result<std::ops::Range<u64>>,
    ) -> R {
        let start = self.model.records.len() as u64;
        let count = bodies.len();
        let ends_batch = (0..count).map(|i| i + 1 == count);
        match result {
            Ok(range) => {
                if self.model.failed {
                    return Err(format!("G4: append acknowledged {range:?} after a failure"));
                }
                if range != (start..start + count as u64) {
                    return Err(format!("append got {range:?}, expected {start}..+{count}"));
                }
                self.model.records.extend(bodies);
                self.model.ends_batch.extend(ends_batch);
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
                        self.model.ends_batch.extend(ends_batch);
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

    /// Checks a freshly recovered log against the model (G1, G2) and teaches the model
    /// what survived: a gap-free prefix of what was submitted, each record exactly as
    /// submitted, holding every acknowledged record and ending at a batch boundary.
    /// Every record found is durable now, so all of them count as acknowledged.
    fn recovered(&mut self, log: Log, crashed: bool) -> R {
        let next = log.next_offset();
        let (acked, all) = (self.model.acked as u64, self.model.records.len() as u64);
        if log.first_offset() != 0 {
            return Err(format!("recovered log starts at {}", log.first_offset()));
        }
        if next < acked || next > all {
            return Err(format!(
                "recovery found {next} records: {acked} acknowledged, {all} submitted"
            ));
        }
        if next > 0 && !self.model.ends_batch[next as usize - 1] {
            return Err(format!(
                "G2: recovery found {next} records, ending inside a batch"
            ));
        }
        let mut found = 0u64;
        for (i, record) in log.iter(0).enumerate() {
            let record = record.map_err(|e| format!("after recovery, record {i}: {e}"))?;
            if record.offset() != i as u64 {
                return Err(format!(
                    "after recovery, record {i} has offset {}",
                    record.offset()
                ));
            }
            if record.payload() != self.model.records[i].as_slice() {
                return Err(format!(
                    "after recovery, record {i}: WRONG BYTES (acknowledged below {acked})"
                ));
            }
            found += 1;
        }
        if found != next {
            return Err(format!(
                "after recovery, iteration found {found} of {next} records"
            ));
        }
        if next < all {
            self.cut_from = next;
            self.cut_lens = self.model.records[next as usize..]
                .iter()
                .map(Vec::len)
                .zip(self.model.ends_batch[next as usize..].iter().copied())
                .collect();
        }
        if crashed {
            add(&self.counts.crash_acked_checked, acked);
            add(&self.counts.crash_unacked_kept, next - acked);
            add(&self.counts.crash_records_cut, all - next);
            if next < all {
                self.cut_to = self.cut_to.max(all);
            }
        } else if self.model.failed {
            add(&self.counts.unacked_kept_after_failure, next - acked);
            add(&self.counts.unacked_lost_after_failure, all - next);
        }
        self.model.records.truncate(next as usize);
        self.model.ends_batch.truncate(next as usize);
        self.model.acked = next as usize;
        self.model.failed = false;
        self.recovered_at = next;
        self.log = Some(log);
        Ok(())
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
        let log = match self.open(faults) {
            Ok(log) => log,
            // Recovery's own writes and flushes go through the faulty backend too: a
            // fault may fire there. Open fails; a plain open then recovers.
            Err(Error::Io { .. }) if faults != FaultPlan::default() => {
                self.counts
                    .faults_fired_at_open
                    .fetch_add(1, Ordering::Relaxed);
                faults = FaultPlan::default();
                self.open(faults)
                    .map_err(|e| format!("open after a fault failed the previous open: {e}"))?
            }
            Err(e) => return Err(format!("reopen: {e}")),
        };
        self.faults_armed = faults != FaultPlan::default();
        self.recovered(log, false)
    }

    /// Under `Durability::None`: waits until the writer thread has written what is
    /// staged (it does so within about a millisecond, without a flush; readers see
    /// written records under `None`), or, bounded, until it is clear it will not (power
    /// failed, or a fault poisoned the log).
    fn wait_written(&self) {
        let Some(last) = (self.model.records.len() as u64).checked_sub(1) else {
            return;
        };
        for _ in 0..200 {
            if self.model.failed
                || self.log().read(last).is_ok()
                || self.sim.as_ref().is_some_and(|sim| sim.stopped())
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    /// A crash (see [`Crash`]) and the reopen after it.
    fn crash(&mut self, crash: &Crash) -> R {
        if let Some(burst) = &crash.burst {
            if let Some(sim) = &self.sim {
                sim.stop_at(sim.operations_count() + u64::from(burst.stop));
            }
            for (i, (lens, after)) in burst.appends.iter().enumerate() {
                match lens.as_slice() {
                    [len] => self.step(&Op::Append(*len))?,
                    _ => self.step(&Op::Batch(lens.clone()))?,
                }
                let last = i + 1 == burst.appends.len();
                match (self.sync_mode(), after) {
                    (true, _) => {}
                    (false, After::Sync) => self.step(&Op::Sync)?,
                    (false, After::Written) => self.wait_written(),
                    (false, After::Staged) if last => self.wait_written(),
                    (false, After::Staged) => {}
                }
            }
            if self.sim.as_ref().is_some_and(|sim| sim.stopped()) {
                add(&self.counts.power_failed_mid_burst, 1);
            }
        }
        let log = self.log.take().expect("open");
        // G1: whatever is below the durable watermark is acknowledged too (under
        // `Durability::None`, a rollover's flush moves it without a `sync()`).
        let durable = log.durable_offset();
        let submitted = self.model.records.len() as u64;
        if durable > submitted {
            return Err(format!(
                "durable offset {durable} with {submitted} records submitted"
            ));
        }
        self.model.acked = self.model.acked.max(durable as usize);
        if submitted > self.recovered_at && self.cut_to > self.recovered_at {
            add(&self.counts.crashes_over_cut_offsets, 1);
        }
        log.abandon();
        // Nothing is written or flushed after `abandon`: with every unflushed write
        // dropped, exactly the flushed records can survive under `Sync` (more would mean
        // a record reached the file without going through the backend). The simulated
        // disk is fresh at every open, so what the last recovery found is durable on it.
        // Under `None` the log may count less than the disk holds: its open waits for no
        // flush (`durable_offset()` starts at the checkpoint), and a background flush
        // covers whatever was written when it ran but counts only what was written when
        // it was asked for. There, at least the flushed records survive.
        let flushed = log.durable_offset().max(self.recovered_at);
        drop(log);
        let dir = self.dir.path().to_path_buf();
        match self.sim.take() {
            Some(sim) => {
                let pending = sim.take_pending();
                apply_crash(&pending, &dir, &dir, crash.mode, crash.seed)
                    .map_err(|e| format!("apply_crash: {e}"))?;
                add(&self.counts.power_cuts[crash.mode as usize], 1);
            }
            None => add(&self.counts.process_crashes, 1),
        }
        if crash.forget_indexes {
            forget_indexes(&dir, crash.seed)?;
        }
        let log = match (crash.in_recovery, self.disk) {
            (Some(stop), Disk::Sim) => self.crash_in_recovery(crash, stop)?,
            _ => self
                .open(FaultPlan::default())
                .map_err(|e| format!("open after a {:?} crash: {e}", crash.mode))?,
        };
        self.faults_armed = false;
        let survivors = log.next_offset();
        let exact = self.sync;
        if self.disk == Disk::Sim
            && crash.mode == CrashMode::DropAll
            && (survivors < flushed || (exact && survivors != flushed))
        {
            return Err(format!(
                "a DropAll crash left {} records; {flushed} were flushed",
                log.next_offset()
            ));
        }
        self.recovered(log, true)?;
        match crash.reappend {
            Some(how) => self.reappend(how),
            None => Ok(()),
        }
    }

    /// See [`Reappend`].
    fn reappend(&mut self, how: Reappend) -> R {
        for _ in 0..how.groups {
            let offset = self.model.records.len() as u64;
            let mut lens = Vec::new();
            if let Some(cut) = offset
                .checked_sub(self.cut_from)
                .and_then(|i| self.cut_lens.get(i as usize..))
            {
                for (len, ends_batch) in cut {
                    lens.push(*len);
                    if *ends_batch || how.split {
                        break;
                    }
                }
            }
            add(&self.counts.reappended, lens.len() as u64);
            match lens.as_slice() {
                [] => self.step(&Op::Append(100))?,
                [len] => self.step(&Op::Append(*len))?,
                _ => self.step(&Op::Batch(lens))?,
            }
            if !self.sync_mode() {
                self.step(&Op::Sync)?;
            }
        }
        Ok(())
    }

    /// Power fails again at operation `stop` of the recovery after a crash; returns the
    /// log the next open recovers, after checking that it holds exactly what an
    /// undisturbed recovery (of a copy) finds: recover(crash(recover(x))) = recover(x).
    fn crash_in_recovery(&mut self, crash: &Crash, stop: u8) -> Result<Log, String> {
        add(&self.counts.recovery_crashes, 1);
        let reference_dir = reliability::fast_tempdir();
        copy_dir(self.dir.path(), reference_dir.path()).map_err(|e| format!("copy: {e}"))?;
        let sim = SimDisk::new();
        sim.stop_at(u64::from(stop));
        match Log::open_with_backend(self.dir.path(), self.opts.clone(), sim.backend()) {
            // Recovery needed fewer operations: the crash comes right after it.
            Ok(log) => log.abandon(),
            Err(Error::Io { .. }) => add(&self.counts.recovery_cut, 1),
            Err(e) => return Err(format!("recovery cut at operation {stop}: {e}")),
        }
        let pending = sim.take_pending();
        let dir = self.dir.path();
        apply_crash(&pending, dir, dir, crash.mode, crash.seed.rotate_left(17))
            .map_err(|e| format!("apply_crash in recovery: {e}"))?;
        let log = self
            .open(FaultPlan::default())
            .map_err(|e| format!("open after a crash in recovery at {stop}: {e}"))?;
        let reference = Log::open(reference_dir.path(), self.opts.clone())
            .map_err(|e| format!("undisturbed recovery: {e}"))?;
        let next = log.next_offset();
        if reference.next_offset() != next {
            return Err(format!(
                "G7: recovery crashed at operation {stop} found {next} records, an \
                 undisturbed one {}",
                reference.next_offset()
            ));
        }
        for offset in 0..next {
            let (a, b) = (log.read(offset), reference.read(offset));
            match (a, b) {
                (Ok(a), Ok(b)) if a.payload() == b.payload() => {}
                (a, b) => {
                    return Err(format!(
                        "G7: record {offset} after a crash in recovery: {:?}, undisturbed: {:?}",
                        a.map(|r| r.payload().len()),
                        b.map(|r| r.payload().len())
                    ))
                }
            }
        }
        reference
            .close()
            .map_err(|e| format!("close the reference: {e}"))?;
        Ok(log)
    }

    fn step(&mut self, op: &Op) -> R {
        self.counts.ops.fetch_add(1, Ordering::Relaxed);
        let n = self.model.records.len() as u64;
        match op {
            Op::Append(len) => {
                let b = self.next_body(n, *len);
                let result = self.log().append(&b).map(|o| o..o + 1);
                self.appended(vec![b], result)
            }
            Op::Batch(lens) => {
                let start = self.model.records.len() as u64;
                let bodies: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, l)| self.next_body(start + i as u64, *l))
                    .collect();
                let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
                let result = self.log().append_batch(&refs);
                // A batch is atomic, so it must fit in one segment (64 KiB here, less its
                // header and a commit marker); a larger one is refused, changing nothing.
                let frames_bytes: u64 = lens.iter().map(|&l| (24 + l as u64 + 7) & !7).sum();
                if frames_bytes > (64 << 10) - 64 - 32 {
                    return match result {
                        Err(Error::RecordTooLarge { .. }) => Ok(()),
                        other => Err(format!(
                            "a batch of {frames_bytes} bytes, larger than a segment: {other:?}"
                        )),
                    };
                }
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
                let b = self.next_body(n, *len);
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
            Op::Crash(crash) => self.crash(crash),
            Op::Reappend(how) => self.reappend(*how),
        }
    }
}

fn run_case(sync: bool, disk: Disk, ops: &[Op], counts: &Counts) -> R {
    counts.cases.fetch_add(1, Ordering::Relaxed);
    add(&counts.cases_by_disk[disk as usize], 1);
    let dir = reliability::fast_tempdir();
    let durability = if sync {
        Durability::Sync
    } else {
        Durability::None
    };
    let opts = Options::default()
        .segment_bytes(64 << 10)
        .durability(durability)
        .io(match disk {
            Disk::Uring => IoBackend::Auto,
            // On the simulated disk, only the undisturbed reference recoveries of
            // `crash_in_recovery` use a real backend.
            Disk::Pwrite | Disk::Sim => IoBackend::Pwrite,
        });
    let mut case = Case {
        dir,
        opts,
        log: None,
        disk,
        sim: None,
        model: Model {
            records: Vec::new(),
            ends_batch: Vec::new(),
            acked: 0,
            failed: false,
        },
        counts,
        salt: ops.len() as u64,
        life: 0,
        recovered_at: 0,
        cut_to: 0,
        cut_from: 0,
        cut_lens: Vec::new(),
        sync,
        faults_armed: false,
    };
    let log = case
        .open(FaultPlan::default())
        .map_err(|e| format!("open: {e}"))?;
    case.log = Some(log);
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
    let disk = prop_oneof![Just(Disk::Uring), Just(Disk::Pwrite), Just(Disk::Sim)];
    let strategy = (any::<bool>(), disk, vec(op(), 1..120));
    let result = runner.run(&strategy, |(sync, disk, ops)| {
        run_case(sync, disk, &ops, &counts).map_err(TestCaseError::fail)
    });
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "model: {} cases ({} runs: {} io_uring, {} pwrite, {} simulated disk), {} operations, {} reopens, {} segment rollovers, {} records acknowledged and found after the final reopen; injected faults: {} planned; failures (planned faults, or power failing in a burst) surfacing in appends or syncs: {}, {} first failures of an append were checked at once (next append Poisoned, sync fails): all held, {} failed the open's recovery instead, 0 acknowledgements after a failure; unacknowledged records after a failure: {} kept, {} lost; {:.1} s",
        cases,
        c(&counts.cases),
        c(&counts.cases_by_disk[Disk::Uring as usize]),
        c(&counts.cases_by_disk[Disk::Pwrite as usize]),
        c(&counts.cases_by_disk[Disk::Sim as usize]),
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
    let cuts = &counts.power_cuts;
    println!(
        "model crashes: {} power cuts on the simulated disk ({} DropAll, each leaving exactly the flushed records under Sync and at least them under None, {} KeepAll, {} Subset, {} Torn; power failed at a write or flush of a burst of appends in {}), {} process crashes on the real backends, {} after re-appending at offsets an earlier crash cut ({} records re-appended as long as the cut ones); {} acknowledged records checked intact after crashes, {} unacknowledged records cut by crashes, {} survived whole; {} crashes during recovery ({} cut it), each equal to an undisturbed recovery",
        cuts.iter().map(c).sum::<u64>(),
        c(&cuts[CrashMode::DropAll as usize]),
        c(&cuts[CrashMode::KeepAll as usize]),
        c(&cuts[CrashMode::Subset as usize]),
        c(&cuts[CrashMode::Torn as usize]),
        c(&counts.power_failed_mid_burst),
        c(&counts.process_crashes),
        c(&counts.crashes_over_cut_offsets),
        c(&counts.reappended),
        c(&counts.crash_acked_checked),
        c(&counts.crash_records_cut),
        c(&counts.crash_unacked_kept),
        c(&counts.recovery_crashes),
        c(&counts.recovery_cut),
    );
    if let Err(e) = result {
        panic!("model: {e:?}\n(replay with RINGLOG_SEED={seed})");
    }
}
