//! Helpers shared by the reliability tests (corruption, kill -9, ENOSPC, power cuts,
//! model): seeded randomness, self-describing payloads, a writer child process and the
//! checker of guarantees G1/G2 against what the child acknowledged, mounts and loop
//! devices with cleanup guards, and a watchdog that turns a hang into a failure.
//!
//! Included from the test files with `#[path = "common/reliability.rs"] mod reliability;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringlog::{Durability, IoBackend, Log, Options, RecoveryPolicy};

// ---------------------------------------------------------------------------------------
// Randomness and knobs
// ---------------------------------------------------------------------------------------

/// A small, fast, seedable generator (splitmix64). Tests must be replayable from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// The run's seed: `RINGLOG_SEED` if set, else from the clock. Printed with how to
/// replay it.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("RINGLOG_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("RINGLOG_SEED={s:?} is not a u64")),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            nanos ^ (std::process::id() as u64) << 32
        }
    };
    println!("{test}: seed {seed} (replay with RINGLOG_SEED={seed})");
    seed
}

/// A numeric knob from the environment.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number")),
        Err(_) => default,
    }
}

/// A temporary directory on tmpfs (`/dev/shm`) when there is one: for tests that check
/// decoding and recovery logic rather than the disk, fsyncs there cost nothing.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("ringlog-test-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

// ---------------------------------------------------------------------------------------
// Watchdog
// ---------------------------------------------------------------------------------------

/// Aborts the process (after printing the case) if one case runs longer than `limit`:
/// a hang is a failure (G5), and must not stall CI silently.
pub struct Watchdog {
    case: Arc<Mutex<String>>,
    started: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
}

impl Watchdog {
    pub fn start(test: &'static str, limit: Duration) -> Watchdog {
        let case = Arc::new(Mutex::new(String::from("(setup)")));
        let started = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        {
            let (case, started, stop) = (case.clone(), started.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    let since = epoch.elapsed().as_millis() as u64 - started.load(Ordering::SeqCst);
                    if since > limit.as_millis() as u64 && !stop.load(Ordering::SeqCst) {
                        let case = case.lock().map(|c| c.clone()).unwrap_or_default();
                        eprintln!(
                            "{test}: HANG: case {case:?} ran for more than {limit:?}; aborting"
                        );
                        std::process::abort();
                    }
                }
            });
        }
        Watchdog {
            case,
            started,
            stop,
            epoch,
        }
    }

    /// Starts timing a new case.
    pub fn case(&self, describe: impl FnOnce() -> String) {
        self.started
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
        if let Ok(mut c) = self.case.lock() {
            *c = describe();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// Self-describing payloads
// ---------------------------------------------------------------------------------------

/// Bytes of the self-describing header at the start of every payload.
pub const META_BYTES: usize = 32;

/// What a payload says about itself: checked on every read after a crash, so a torn,
/// misplaced, resurrected or phantom record cannot pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The offset it was appended at.
    pub offset: u64,
    /// The writer generation (cycle) that appended it.
    pub generation: u32,
    /// Whole payload length.
    pub len: u32,
    /// First offset of its batch, and the batch's record count.
    pub batch_start: u64,
    pub batch_len: u32,
}

/// Builds the payload for `meta` (`meta.len >= META_BYTES`).
pub fn make_payload(meta: Meta) -> Vec<u8> {
    let len = (meta.len as usize).max(META_BYTES);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&meta.offset.to_le_bytes());
    out.extend_from_slice(&meta.generation.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&meta.batch_start.to_le_bytes());
    out.extend_from_slice(&meta.batch_len.to_le_bytes());
    let check = crc32c::crc32c(&out);
    out.extend_from_slice(&check.to_le_bytes());
    let mut x = meta.offset.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (meta.generation as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

/// Parses and fully checks a payload read at `offset`.
pub fn parse_payload(offset: u64, payload: &[u8]) -> Result<Meta, String> {
    if payload.len() < META_BYTES {
        return Err(format!(
            "offset {offset}: payload of {} bytes is too short",
            payload.len()
        ));
    }
    let u64_at = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().unwrap());
    let meta = Meta {
        offset: u64_at(0),
        generation: u32_at(8),
        len: u32_at(12),
        batch_start: u64_at(16),
        batch_len: u32_at(24),
    };
    if meta.offset != offset {
        return Err(format!(
            "offset {offset}: record says it is offset {}",
            meta.offset
        ));
    }
    if meta.len as usize != payload.len() {
        return Err(format!(
            "offset {offset}: payload is {} bytes, it says {}",
            payload.len(),
            meta.len
        ));
    }
    if make_payload(meta) != payload {
        return Err(format!(
            "offset {offset}: payload bytes differ from what was appended"
        ));
    }
    if !(meta.batch_start <= offset && offset < meta.batch_start + meta.batch_len as u64) {
        return Err(format!(
            "offset {offset}: outside its batch {}..+{}",
            meta.batch_start, meta.batch_len
        ));
    }
    Ok(meta)
}

// ---------------------------------------------------------------------------------------
// The writer child (kill -9 and power-cut tests)
// ---------------------------------------------------------------------------------------

/// Environment variable that puts a re-executed test binary in writer-child mode: the
/// log directory.
pub const CHILD_DIR_ENV: &str = "RINGLOG_CHILD_DIR";
/// The child's writer generation (the cycle that spawned it).
pub const CHILD_GEN_ENV: &str = "RINGLOG_CHILD_GEN";
/// The seed of the child's choices.
pub const CHILD_SEED_ENV: &str = "RINGLOG_CHILD_SEED";
/// The child's I/O backend: `pwrite`, `uring` or `auto`.
pub const CHILD_IO_ENV: &str = "RINGLOG_CHILD_IO";

/// Segment size the children write with: small, so rollovers are frequent.
pub const CHILD_SEGMENT_BYTES: u64 = 64 << 10;

pub fn child_options(io: IoBackend) -> Options {
    let opts = Options::default()
        .segment_bytes(CHILD_SEGMENT_BYTES)
        .durability(Durability::Sync)
        .recovery(RecoveryPolicy::TruncateTorn)
        .io(io);
    // `RINGLOG_CHILD_WRITES=mapped` has the child append under `Durability::None` with
    // mapped writes: an append that returned is then acknowledged (it must survive a kill
    // of the process, not a power cut).
    // `mapped-synced` the same, with a `sync()` after each append, whose return
    // acknowledges it (durable: it must survive a power cut).
    let opts = match std::env::var(CHILD_WRITES_ENV).as_deref() {
        Ok("mapped" | "mapped-synced") => opts.durability(Durability::None).mapped_writes(true),
        _ => opts,
    };
    // `RINGLOG_PREALLOCATE=zerofill|fallocate` pins the preallocation mode (default: the
    // library's choice).
    match std::env::var("RINGLOG_PREALLOCATE").as_deref() {
        Ok("zerofill") => opts.preallocate(ringlog::Preallocate::ZeroFill),
        Ok("fallocate") => opts.preallocate(ringlog::Preallocate::Fallocate),
        _ => opts,
    }
}

/// See [`child_options`].
pub const CHILD_WRITES_ENV: &str = "RINGLOG_CHILD_WRITES";

fn frame_bytes(payload_len: u64) -> u64 {
    (24 + payload_len + 7) & !7
}

/// The body of the writer child. Does nothing unless the child environment is set.
///
/// Protocol (one line each on stdout, flushed at once):
/// `OPENING`, `OPENED <next_offset>`, `ROLLING` (the next append should move to a new
/// segment), `ACK <start> <end>` after an append or batch returned Ok (durable),
/// (Under `RINGLOG_CHILD_WRITES=mapped`, returned Ok: in the page cache.)
/// `FAIL <start> <end> <error>` for the first failed append, `ERR <poisoned|other>
/// <error>` for later ones, `CLOSING`, `CLOSED`, `OPENERR <error>`, `DONE`.
pub fn writer_child_main() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let generation: u32 = env_u64(CHILD_GEN_ENV, 1) as u32;
    let mut rng = Rng::new(env_u64(CHILD_SEED_ENV, 1));
    let io = match std::env::var(CHILD_IO_ENV).as_deref() {
        Ok("pwrite") => IoBackend::Pwrite,
        Ok("uring") => IoBackend::Uring,
        _ => IoBackend::Auto,
    };
    let out = std::io::stdout();
    let say = |line: String| {
        let mut out = out.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let synced_after_append = std::env::var(CHILD_WRITES_ENV).as_deref() == Ok("mapped-synced");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failed = false;
    'reopen: loop {
        say("OPENING".into());
        let log = match Log::open(&dir, child_options(io)) {
            Ok(log) => log,
            Err(e) => {
                say(format!("OPENERR {e}"));
                std::process::exit(3);
            }
        };
        say(format!("OPENED {}", log.next_offset()));
        let mut used = log
            .segments()
            .ok()
            .and_then(|s| s.last().map(|s| s.used_bytes))
            .unwrap_or(64);
        let mut until_reopen = rng.range(50, 600);
        while Instant::now() < deadline {
            let count = if rng.chance(0.3) { rng.range(2, 8) } else { 1 };
            let start = log.next_offset();
            let payloads: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    let len = if rng.chance(0.1) {
                        rng.range(1000, 6000)
                    } else {
                        rng.range(META_BYTES as u64, 700)
                    };
                    make_payload(Meta {
                        offset: start + i,
                        generation,
                        len: len as u32,
                        batch_start: start,
                        batch_len: count as u32,
                    })
                })
                .collect();
            let needed: u64 = 32
                + payloads
                    .iter()
                    .map(|p| frame_bytes(p.len() as u64))
                    .sum::<u64>();
            if used + needed > CHILD_SEGMENT_BYTES {
                say("ROLLING".into());
                used = 64;
            }
            used += needed;
            let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
            let result = if count == 1 && rng.chance(0.5) {
                log.append(refs[0]).map(|o| o..o + 1)
            } else {
                log.append_batch(&refs)
            };
            let result = match result {
                Ok(range) if synced_after_append => log.sync().map(|()| range),
                other => other,
            };
            match result {
                Ok(range) => {
                    if range != (start..start + count) {
                        say(format!(
                            "FAIL {start} {} offsets {range:?} are not the expected ones",
                            start + count
                        ));
                        std::process::exit(4);
                    }
                    say(format!("ACK {} {}", range.start, range.end));
                }
                Err(e) if !failed => {
                    failed = true;
                    say(format!("FAIL {start} {} {e}", start + count));
                }
                Err(e) => {
                    let kind = if matches!(e, ringlog::Error::Poisoned { .. }) {
                        "poisoned"
                    } else {
                        "other"
                    };
                    say(format!("ERR {kind} {e}"));
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            until_reopen -= 1;
            if until_reopen == 0 && !failed {
                say("CLOSING".into());
                let closed = log.close();
                say(format!("CLOSED {closed:?}"));
                drop(log);
                continue 'reopen;
            }
        }
        say("DONE".into());
        return;
    }
}

/// A line from the child, with when it arrived.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// A running writer child and its output.
pub struct WriterChild {
    pub child: Child,
    pub lines: Receiver<Line>,
    pub spawned: Instant,
    pub seen: Vec<Line>,
}

impl WriterChild {
    /// Re-executes this test binary running only `child_test` (an ignored test that
    /// calls [`writer_child_main`]).
    pub fn spawn(child_test: &str, dir: &Path, generation: u32, seed: u64, io: &str) -> Self {
        Self::spawn_with(child_test, dir, generation, seed, io, &[])
    }

    /// Like [`WriterChild::spawn`], with extra environment variables for the child.
    pub fn spawn_with(
        child_test: &str,
        dir: &Path,
        generation: u32,
        seed: u64,
        io: &str,
        envs: &[(&str, &str)],
    ) -> Self {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .envs(envs.iter().copied())
            .args([
                "--exact",
                child_test,
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir)
            .env(CHILD_GEN_ENV, generation.to_string())
            .env(CHILD_SEED_ENV, seed.to_string())
            .env(CHILD_IO_ENV, io)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(mut text) = line else { break };
                // libtest prints "test <name> ... " without a newline before the
                // child's first line.
                if text.starts_with("test ") {
                    if let Some(at) = text.find(" ... ") {
                        text = text[at + 5..].to_string();
                    }
                }
                if tx
                    .send(Line {
                        at: Instant::now(),
                        text,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        WriterChild {
            child,
            lines: rx,
            spawned: Instant::now(),
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for the next line; `None` on timeout or end of output.
    pub fn next_line(&mut self, timeout: Duration) -> Option<Line> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(_) => None,
        }
    }

    /// SIGKILL now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Reaps the child (after a kill) and collects every line it printed before dying.
    /// Fails if it does not exit within `timeout`.
    pub fn finish(&mut self, timeout: Duration) -> Result<(), String> {
        let until = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => {
                    let _ = self.child.kill();
                    return Err(format!("child did not exit within {timeout:?} of SIGKILL"));
                }
                Err(e) => return Err(format!("wait: {e}")),
            }
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        Ok(())
    }

    /// What the child reported, parsed.
    pub fn report(&self) -> ChildReport {
        let mut report = ChildReport::default();
        for line in &self.seen {
            let mut words = line.text.split_whitespace();
            match words.next() {
                Some("ACK") => {
                    let start: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    let end: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    if report.first_failure.is_some() {
                        report.acks_after_failure += 1;
                    }
                    report.acks.push((start, end));
                }
                Some("OPENED") => {
                    let next: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    report.opened.push(next);
                }
                Some("FAIL") => {
                    report.first_failure.get_or_insert(line.text.clone());
                }
                Some("ERR") => {
                    if words.next() == Some("poisoned") {
                        report.poisoned_after_failure += 1;
                    } else {
                        report.other_errors_after_failure += 1;
                    }
                }
                Some("OPENERR") => report.open_error = Some(line.text.clone()),
                Some("ROLLING") => report.rollings += 1,
                Some("CLOSED") => report.closes += 1,
                _ => {}
            }
        }
        report
    }
}

impl Drop for WriterChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one writer child said.
#[derive(Debug, Default, Clone)]
pub struct ChildReport {
    pub acks: Vec<(u64, u64)>,
    pub opened: Vec<u64>,
    pub first_failure: Option<String>,
    pub acks_after_failure: u64,
    pub poisoned_after_failure: u64,
    pub other_errors_after_failure: u64,
    pub open_error: Option<String>,
    pub rollings: u64,
    pub closes: u64,
}

impl ChildReport {
    pub fn acked_records(&self) -> u64 {
        self.acks.iter().map(|(s, e)| e - s).sum()
    }
}

// ---------------------------------------------------------------------------------------
// The checker (G1, G2, batch atomicity, no resurrection)
// ---------------------------------------------------------------------------------------

/// What the checker has verified so far: the metadata of every record in the log, as
/// found by the last check. Records once seen after a crash (so on disk, or made durable
/// by the next recovery) must stay byte for byte.
#[derive(Debug, Default)]
pub struct Model {
    pub records: Vec<Meta>,
    /// Every acknowledged range, with the generation that acknowledged it.
    pub acked: BTreeMap<u64, (u64, u32)>,
}

/// Counts from one check.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckCounts {
    pub records: u64,
    pub new_records: u64,
    pub acked_new: u64,
    pub unacked_survivors: u64,
    pub segments: u64,
}

impl Model {
    /// Opens `dir` read-only and checks, against everything acknowledged so far (the
    /// child of `generation` acknowledged `report.acks`):
    /// - G1: every acknowledged record is present, with its exact bytes;
    /// - G2: offsets are a gap-free prefix from 0, every record is valid, whole batches
    ///   only, and records past what the previous check saw were written by this
    ///   generation (no phantoms, no resurrected records of an earlier incarnation);
    /// - records seen by earlier checks never change or disappear;
    /// - a writer's recovery (`OPENED n`) found exactly the end the previous check saw.
    pub fn check(
        &mut self,
        dir: &Path,
        generation: u32,
        report: &ChildReport,
    ) -> Result<CheckCounts, String> {
        for &(start, end) in &report.acks {
            for offset in start..end {
                self.acked.insert(offset, (end, generation));
            }
        }
        let before = self.records.len() as u64;
        for &opened in &report.opened {
            // The first OPENED of a generation recovered the previous check's state;
            // later ones reopened after a clean close in the same child.
            if opened < before {
                return Err(format!(
                    "a writer recovered to offset {opened}, but offsets up to {before} were in the log"
                ));
            }
        }
        if let Some(&first) = report.opened.first() {
            if first != before {
                return Err(format!(
                    "the writer's recovery found the log ending at {first}, the read-only check at {before}"
                ));
            }
        }
        let log = match Log::open_read_only(dir, child_options(IoBackend::Pwrite)) {
            Ok(log) => log,
            // A crash while the very first writer was still creating the log, before it
            // acknowledged anything: there may be no log yet.
            Err(ringlog::Error::NotALog { .. }) if before == 0 && self.acked.is_empty() => {
                return Ok(CheckCounts::default());
            }
            Err(e) => return Err(format!("open after crash failed: {e}")),
        };
        let next = log.next_offset();
        if log.first_offset() != 0 {
            return Err(format!("first offset is {}", log.first_offset()));
        }
        let mut found = Vec::with_capacity(next as usize);
        for (i, record) in log.iter(0).enumerate() {
            let record = record.map_err(|e| format!("reading offset {i}: {e}"))?;
            if record.offset() != i as u64 {
                return Err(format!("record {i} has offset {}", record.offset()));
            }
            found.push(parse_payload(i as u64, record.payload())?);
        }
        if found.len() as u64 != next {
            return Err(format!(
                "iteration gave {} records, next_offset is {next}",
                found.len()
            ));
        }
        // G1: everything acknowledged is there (the acked map holds offsets of every
        // generation; an offset acked earlier must still hold that generation's record).
        if let Some((&missing, &(end, gen))) = self.acked.range(next..).next() {
            let lost = self.acked.range(next..).count();
            return Err(format!(
                "acknowledged offset {missing} (batch ending at {end}, acknowledged by generation {gen}; this is generation {generation}, whose writer recovered the log to {:?}) is lost: the log ends at {next}; {lost} acknowledged records lost; the previous check saw {before} records",
                report.opened.first()
            ));
        }
        for (&offset, &(end, gen)) in &self.acked {
            let meta = found[offset as usize];
            if meta.generation != gen || meta.batch_start + meta.batch_len as u64 != end {
                return Err(format!(
                    "acknowledged offset {offset} (generation {gen}, batch ending {end}) now holds {meta:?}"
                ));
            }
        }
        // Earlier checks' records never change.
        if (found.len() as u64) < before {
            return Err(format!(
                "the log shrank from {before} to {} records",
                found.len()
            ));
        }
        for (i, (old, new)) in self.records.iter().zip(&found).enumerate() {
            if old != new {
                return Err(format!("offset {i} changed from {old:?} to {new:?}"));
            }
        }
        // New records come from this generation only, in whole batches.
        let mut unacked = 0;
        for meta in &found[before as usize..] {
            if meta.generation != generation {
                return Err(format!(
                    "offset {} holds a record of generation {} past the previous end {before} (generation {generation} wrote there): resurrected or phantom",
                    meta.offset, meta.generation
                ));
            }
            if !self.acked.contains_key(&meta.offset) {
                unacked += 1;
            }
        }
        let mut i = 0usize;
        while i < found.len() {
            let m = found[i];
            if m.batch_start != m.offset {
                return Err(format!(
                    "offset {} starts a run but belongs to the batch starting at {}",
                    m.offset, m.batch_start
                ));
            }
            for k in 0..m.batch_len as usize {
                let Some(r) = found.get(i + k) else {
                    return Err(format!(
                        "batch {}..+{} is torn: the log ends at {}",
                        m.batch_start,
                        m.batch_len,
                        found.len()
                    ));
                };
                if r.batch_start != m.batch_start
                    || r.batch_len != m.batch_len
                    || r.generation != m.generation
                {
                    return Err(format!("batch {m:?} is mixed with {r:?}"));
                }
            }
            i += m.batch_len as usize;
        }
        let segments = log.stats().segments_count;
        let counts = CheckCounts {
            records: next,
            new_records: next - before,
            acked_new: report.acked_records(),
            unacked_survivors: unacked,
            segments,
        };
        self.records = found;
        Ok(counts)
    }
}

// ---------------------------------------------------------------------------------------
// Root, commands, mounts, loop devices
// ---------------------------------------------------------------------------------------

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command; Ok(stdout) on success, Err(description) otherwise.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {} {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

pub fn have_program(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}

/// A mounted filesystem, unmounted on drop (lazily if still busy).
pub struct MountGuard {
    pub target: PathBuf,
    pub mounted: bool,
}

impl MountGuard {
    pub fn mount(source: &str, target: &Path, args: &[&str]) -> Result<MountGuard, String> {
        let target_str = target.to_str().expect("utf-8 path");
        let mut all: Vec<&str> = args.to_vec();
        all.push(source);
        all.push(target_str);
        run("mount", &all)?;
        Ok(MountGuard {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    pub fn unmount(&mut self) -> Result<(), String> {
        if !self.mounted {
            return Ok(());
        }
        let target = self.target.to_str().expect("utf-8 path").to_string();
        let mut last = String::new();
        for _ in 0..50 {
            match run("umount", &[&target]) {
                Ok(_) => {
                    self.mounted = false;
                    return Ok(());
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            if let Some(target) = self.target.to_str() {
                if run("umount", &[target]).is_err() {
                    let _ = run("umount", &["-l", target]);
                }
            }
            self.mounted = false;
        }
    }
}

/// A loop device over an image file, detached on drop.
pub struct LoopGuard {
    pub device: String,
}

impl LoopGuard {
    pub fn attach(image: &Path) -> Result<LoopGuard, String> {
        let out = run(
            "losetup",
            &["--find", "--show", image.to_str().expect("utf-8 path")],
        )?;
        let device = out.trim().to_string();
        if device.is_empty() {
            return Err("losetup printed no device".into());
        }
        Ok(LoopGuard { device })
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = run("losetup", &["-d", &self.device]);
    }
}

/// Fires the filesystem shutdown ioctl on the filesystem holding `path`, without
/// flushing the log (`FS_IOC_SHUTDOWN` / `EXT4_IOC_SHUTDOWN` / `XFS_IOC_GOINGDOWN` with
/// `FSOP_FLAGS_NOLOGFLUSH`): what the disk has is what a power cut would leave.
pub fn shutdown_fs(path: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    // _IOR('X', 125, __u32)
    const FS_IOC_SHUTDOWN: u64 = (2 << 30) | (4 << 16) | ((b'X' as u64) << 8) | 125;
    const FSOP_FLAGS_NOLOGFLUSH: u32 = 2;
    let dir = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let flags: u32 = FSOP_FLAGS_NOLOGFLUSH;
    // SAFETY: the descriptor is open for the duration of the call, and the argument
    // points at a live u32, which is what this ioctl reads.
    let rc = unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            FS_IOC_SHUTDOWN as libc::c_ulong,
            &flags as *const u32,
        )
    };
    if rc != 0 {
        return Err(format!(
            "FS_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
