//! Corruption injection on the real files of a small log (64 KiB segments, a few hundred
//! records appended durably in three sessions, closed cleanly): every single-bit flip of
//! the active segment up to its data end and 512 bytes past it, zeroed sectors, garbage
//! runs, truncation of each segment file to every length (every 8 bytes, every byte for
//! the first 200), hostile length fields, damaged and forged segment headers, and
//! damaged, stale, truncated, swapped and forged index files.
//!
//! Each case opens the damaged log (read-only, and with the writer's `TruncateTorn` open
//! on a sample) and reads every record back. Accepted outcomes: the open fails, or it
//! succeeds and every record reads back byte-identical or fails with an error. Failures:
//! wrong bytes, a panic, a hang (watchdog), or an open that succeeds with fewer records
//! than were acknowledged (all of them were, by the clean close). Cases that remove the
//! active segment's checkpoint (as a crash would) may cut the last batch (it is the only
//! ambiguous one, docs/design.md 4.2). Index damage must not even cause an error (G6).
//!
//! `RINGLOG_SEED` replays the random cases (garbage runs).

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::encode_index;
use reliability::{fast_tempdir, seed, Rng, Watchdog};
use ringlog::{Error, IoBackend, Log, Options, RecoveryPolicy};

const SEGMENT_BYTES: u64 = 64 << 10;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .io(IoBackend::Pwrite)
        .recovery(RecoveryPolicy::TruncateTorn)
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn idx_name(id: u64) -> String {
    format!("{id:020}.idx")
}

/// One frame of a pristine segment.
#[derive(Debug, Clone, Copy)]
struct FrameAt {
    start: u64,
    end: u64,
    /// `None` for a commit marker.
    offset: Option<u64>,
}

/// The pristine log: its files, what was appended, and where things are.
struct Pristine {
    dir: tempfile::TempDir,
    files: BTreeMap<String, Vec<u8>>,
    payloads: Vec<Vec<u8>>,
    /// Activated segment ids, oldest first; the last is the active one.
    segments: Vec<u64>,
    spare: Option<u64>,
    data_end: BTreeMap<u64, u64>,
    frames: BTreeMap<u64, Vec<FrameAt>>,
    /// Index files as they were at earlier clean closes (stale checkpoints).
    stale: Vec<(String, Vec<u8>)>,
}

impl Pristine {
    fn active(&self) -> u64 {
        *self.segments.last().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Rewrites every file as it was and removes any other.
    fn restore_all(&self) {
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if !self.files.contains_key(&name) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        for (name, bytes) in &self.files {
            let path = self.path(name);
            if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                std::fs::write(&path, bytes).unwrap();
            }
        }
    }

    fn restore_file(&self, name: &str) {
        match self.files.get(name) {
            Some(bytes) => std::fs::write(self.path(name), bytes).unwrap(),
            None => {
                let _ = std::fs::remove_file(self.path(name));
            }
        }
    }

    fn frame_containing(&self, segment: u64, byte: u64) -> Option<FrameAt> {
        self.frames[&segment]
            .iter()
            .find(|f| f.start <= byte && byte < f.end)
            .copied()
    }
}

fn build_pristine() -> Pristine {
    let dir = fast_tempdir();
    let mut rng = Rng::new(7);
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut stale = Vec::new();
    // Three sessions; each stops once the log has `segments` segments and the active one
    // holds at least `active_bytes`; the index files of the first two are kept as
    // stale checkpoints.
    for (session, (segments, active_bytes)) in [(2u64, 2048u64), (3, 2048), (3, 6144)]
        .into_iter()
        .enumerate()
    {
        let log = Log::open(dir.path(), options()).unwrap();
        assert_eq!(log.next_offset(), payloads.len() as u64);
        let mut appends = 0u64;
        loop {
            let info = log.segments().unwrap();
            let used = info.last().unwrap().used_bytes;
            if info.len() as u64 >= segments && used >= active_bytes && appends > 3 {
                break;
            }
            let count = if appends % 7 == 3 { rng.range(2, 4) } else { 1 };
            let start = payloads.len() as u64;
            let batch: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    let len = if rng.chance(0.08) {
                        rng.range(1000, 3000)
                    } else {
                        rng.range(8, 600)
                    };
                    common::payload(start + i, len as usize)
                })
                .collect();
            let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
            assert_eq!(log.append_batch(&refs).unwrap(), start..start + count);
            payloads.extend(batch);
            appends += 1;
        }
        // The last append of the last session is a batch, so the no-checkpoint cases
        // see a batch at the end.
        if session == 2 {
            let start = payloads.len() as u64;
            let batch: Vec<Vec<u8>> = (0..3)
                .map(|i| common::payload(start + i, 40 + 30 * i as usize))
                .collect();
            let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
            assert_eq!(log.append_batch(&refs).unwrap(), start..start + 3);
            payloads.extend(batch);
        }
        log.close().unwrap();
        if session < 2 {
            let active = segments - 1;
            let bytes = std::fs::read(dir.path().join(idx_name(active))).unwrap();
            stale.push((idx_name(active), bytes));
        }
    }
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        files.insert(name, std::fs::read(entry.path()).unwrap());
    }
    let mut segments = Vec::new();
    let mut spare = None;
    let mut data_end = BTreeMap::new();
    let mut frames = BTreeMap::new();
    for (name, bytes) in &files {
        let Some(id) = name.strip_suffix(".seg") else {
            continue;
        };
        let id: u64 = id.parse().unwrap();
        let (hid, base, nonce, _) = ringlog::fuzzing::decode_segment_header(bytes).unwrap();
        assert_eq!(hid, id);
        if base == u64::MAX {
            spare = Some(id);
            continue;
        }
        segments.push(id);
        let mut list = Vec::new();
        let mut at = 64u64;
        while let Some((offset, _, padded)) =
            ringlog::fuzzing::decode_frame(&bytes[at as usize..], nonce)
        {
            list.push(FrameAt {
                start: at,
                end: at + padded,
                offset,
            });
            at += padded;
        }
        data_end.insert(id, at);
        frames.insert(id, list);
    }
    segments.sort();
    assert_eq!(segments, vec![0, 1, 2], "expected three activated segments");
    let total: u64 = frames
        .values()
        .flatten()
        .filter(|f| f.offset.is_some())
        .count() as u64;
    assert_eq!(total, payloads.len() as u64);
    Pristine {
        dir,
        files,
        payloads,
        segments,
        spare,
        data_end,
        frames,
        stale,
    }
}

// ---------------------------------------------------------------------------------------
// Running one case
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    ReadOnly,
    Writer,
}

/// What the damaged log did.
#[derive(Debug)]
enum Verdict {
    /// Open refused.
    OpenError(#[allow(dead_code)] String),
    /// Opened; some records failed to read (with an error), none read wrong.
    ReadErrors {
        unreadable: u64,
        /// (file, byte position) of the first error.
        first: Option<(PathBuf, u64)>,
    },
    /// Opened, and every record read back byte-identical.
    Intact,
    /// Opened with a cut: the records from the given offset are gone (allowed only
    /// where the case allows it).
    Cut { next_offset: u64 },
}

/// What a case allows.
#[derive(Debug, Clone, Copy)]
struct Allow {
    /// The open may end the log at or after this offset (a crash-like case may cut what
    /// no intact commit marker proves durable). `None`: no record may be missing.
    cut_from: Option<u64>,
    /// The case must read everything back (index damage, G6).
    must_be_intact: bool,
    /// Forged, checksum-valid inputs: a silent cut is reported, not failed.
    forged: bool,
    /// Records from this offset are read back (damage confined to the active segment
    /// cannot change sealed ones; the writer's check always reads everything).
    read_from: u64,
}

const STRICT: Allow = Allow {
    cut_from: None,
    must_be_intact: false,
    forged: false,
    read_from: 0,
};

/// Known library bugs. The sweeps count them instead of failing, unless
/// `RINGLOG_STRICT=1`. Each bug the sweeps found has a regression test at the end of
/// this file; a variant goes once its cases cannot happen any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Known {
    /// After damage in the active segment that a clean checkpoint skipped over, a record
    /// appended (and acknowledged) by the writer cannot be read back.
    AppendAfterDamageUnreadable,
}

fn strict() -> bool {
    std::env::var_os("RINGLOG_STRICT").is_some_and(|v| v != "0")
}

/// A failed case: a known bug, or anything else (always a failure).
#[derive(Debug)]
struct Failure {
    known: Option<Known>,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            known: None,
            message,
        }
    }
}

fn known(kind: Known, message: String) -> Failure {
    Failure {
        known: Some(kind),
        message,
    }
}

thread_local! {
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

static PANIC_MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_hook);
}

fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if QUIET_PANICS.with(|q| q.get()) {
            if let Ok(mut m) = PANIC_MESSAGES.lock() {
                m.push(info.to_string());
            }
        } else {
            previous(info);
        }
    }));
}

fn corruption_at(e: &Error) -> Option<(PathBuf, u64)> {
    match e {
        Error::Corruption {
            segment, position, ..
        } => Some((segment.clone(), *position)),
        _ => None,
    }
}

/// Opens the log in `p.dir` and reads every record. `Err` is a test failure.
fn check(p: &Pristine, opener: Opener, allow: Allow) -> Result<Verdict, Failure> {
    QUIET_PANICS.with(|q| q.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| check_inner(p, opener, allow)));
    QUIET_PANICS.with(|q| q.set(false));
    match result {
        Ok(r) => r,
        Err(_) => {
            let message = PANIC_MESSAGES
                .lock()
                .map(|m| m.last().cloned().unwrap_or_default())
                .unwrap_or_default();
            Err(format!("PANIC: {message}").into())
        }
    }
}

fn check_inner(p: &Pristine, opener: Opener, allow: Allow) -> Result<Verdict, Failure> {
    let n = p.payloads.len() as u64;
    let log = match opener {
        Opener::ReadOnly => Log::open_read_only(p.dir.path(), options()),
        Opener::Writer => Log::open(p.dir.path(), options()),
    };
    let log = match log {
        Ok(log) => log,
        Err(e) => return Ok(Verdict::OpenError(e.to_string())),
    };
    let next = log.next_offset();
    let first_offset = log.first_offset();
    let mut cut = None;
    if first_offset != 0 {
        if !allow.forged {
            return Err(format!("open succeeded with first offset {first_offset}, not 0").into());
        }
        cut = Some(0);
    }
    if next < n {
        match allow.cut_from {
            Some(from) if next >= from => cut = Some(next),
            _ if allow.forged => cut = Some(next),
            _ => {
                return Err(format!(
                    "open succeeded with {next} records; {n} were acknowledged ({:?})",
                    log.recovery_report()
                )
                .into());
            }
        }
    }
    // Records past what was appended must never read.
    for offset in n..next.min(n + 8) {
        if let Ok(record) = log.read(offset) {
            return Err(format!(
                "phantom record at offset {offset} ({} bytes)",
                record.payload().len()
            )
            .into());
        }
    }
    let readable = next.min(n);
    let mut unreadable = 0u64;
    let mut first = None;
    let mut failed_at = None;
    let read_from = if opener == Opener::Writer {
        first_offset
    } else {
        allow.read_from.clamp(first_offset, readable)
    };
    for (i, record) in log.iter(read_from).enumerate() {
        let i = read_from + i as u64;
        match record {
            Ok(record) => {
                if i >= readable {
                    return Err(format!("iteration returned a phantom record at {i}").into());
                }
                if record.offset() != i || record.payload() != p.payloads[i as usize].as_slice() {
                    return Err(format!(
                        "WRONG BYTES from iter at offset {i} (record says offset {})",
                        record.offset()
                    )
                    .into());
                }
            }
            Err(e) => {
                first = corruption_at(&e);
                failed_at = Some(i);
                break;
            }
        }
    }
    if let Some(from) = failed_at {
        for offset in from.max(first_offset)..readable {
            match log.read(offset) {
                Ok(record) => {
                    if record.offset() != offset
                        || record.payload() != p.payloads[offset as usize].as_slice()
                    {
                        return Err(format!("WRONG BYTES from read at offset {offset}").into());
                    }
                }
                Err(e) => {
                    unreadable += 1;
                    if first.is_none() {
                        first = corruption_at(&e);
                    }
                }
            }
        }
    }
    if opener == Opener::Writer {
        // The writer goes on: a new record lands right after what it kept, and a reopen
        // sees the same log (no old record comes back after the cut).
        let extra = common::payload(next, 77);
        let got = log
            .append(&extra)
            .map_err(|e| format!("append after recovery failed: {e}"))?;
        if got != next {
            return Err(format!("append after recovery got offset {got}, expected {next}").into());
        }
        // Readable at once, by the writer that acknowledged it...
        let same_process = log.read(next).map(|r| r.payload() == extra.as_slice());
        log.close().map_err(|e| format!("close: {e}"))?;
        drop(log);
        // ...and after a reopen.
        let again = Log::open_read_only(p.dir.path(), options())
            .map_err(|e| format!("reopen after the writer's recovery failed: {e}"))?;
        if again.next_offset() != next + 1 {
            return Err(format!(
                "reopen after the writer's recovery: next offset {} instead of {}",
                again.next_offset(),
                next + 1
            )
            .into());
        }
        let reread = again.read(next);
        let unreadable_error = match (&same_process, &reread) {
            (Err(e), _) => Some((corruption_at(e), format!("in the writer: {e}"))),
            (_, Err(e)) => Some((corruption_at(e), format!("after a reopen: {e}"))),
            _ => None,
        };
        if let Some((at, e)) = unreadable_error {
            let message =
                format!("the record appended (and acknowledged) after recovery cannot be read {e}");
            if at.is_some_and(|(_, pos)| pos < p.data_end[&p.active()] + 8) {
                return Err(known(Known::AppendAfterDamageUnreadable, message));
            }
            return Err(message.into());
        }
        let same = matches!(same_process, Ok(true))
            && reread.is_ok_and(|r| r.payload() == extra.as_slice());
        if !same {
            return Err("WRONG BYTES for the record appended after recovery"
                .to_string()
                .into());
        }
        for offset in 0..readable {
            if let Ok(record) = again.read(offset) {
                if record.payload() != p.payloads[offset as usize].as_slice() {
                    return Err(
                        format!("WRONG BYTES at {offset} after the writer's recovery").into(),
                    );
                }
            }
        }
    }
    if allow.must_be_intact && (failed_at.is_some() || cut.is_some()) {
        return Err(format!(
            "index damage made records unreadable: {unreadable} unreadable from {failed_at:?}, cut {cut:?}, first error at {first:?}"
        )
        .into());
    }
    Ok(match (cut, failed_at) {
        (Some(next_offset), None) => Verdict::Cut { next_offset },
        (_, Some(_)) => Verdict::ReadErrors {
            unreadable: unreadable.max(1),
            first,
        },
        (None, None) => Verdict::Intact,
    })
}

// ---------------------------------------------------------------------------------------
// Tallies
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    checked: u64,
    open_errors: u64,
    read_errors: u64,
    intact: u64,
    cut: u64,
    /// Intact although the damage was inside the data: then `verify` must see it.
    intact_in_data: u64,
    verify_detected: u64,
    precise_position: u64,
    positioned: u64,
    max_unreadable: u64,
    known: BTreeMap<Known, u64>,
    known_examples: Vec<String>,
    failures: Vec<String>,
}

impl Tally {
    fn add(
        &mut self,
        label: impl FnOnce() -> String,
        result: Result<Verdict, Failure>,
    ) -> Option<Verdict> {
        self.checked += 1;
        match result {
            Ok(v) => {
                match &v {
                    Verdict::OpenError(_) => self.open_errors += 1,
                    Verdict::ReadErrors { unreadable, .. } => {
                        self.read_errors += 1;
                        self.max_unreadable = self.max_unreadable.max(*unreadable);
                    }
                    Verdict::Intact => self.intact += 1,
                    Verdict::Cut { .. } => self.cut += 1,
                }
                Some(v)
            }
            Err(Failure {
                known: Some(kind),
                message,
            }) if !strict() => {
                *self.known.entry(kind).or_default() += 1;
                if self.known_examples.len() < 3 {
                    self.known_examples.push(format!("{}: {message}", label()));
                }
                None
            }
            Err(Failure { message, .. }) => {
                let line = format!("{}: {message}", label());
                if self.failures.len() < 20 {
                    eprintln!("FAILURE {line}");
                }
                self.failures.push(line);
                None
            }
        }
    }

    fn detected(&self) -> u64 {
        self.open_errors + self.read_errors
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: {} checked, {} detected ({} at open, {} on read, max {} records unreadable), {} intact, {} cut (allowed), {} failures (wrong bytes, panics, silent loss)",
            self.checked,
            self.detected(),
            self.open_errors,
            self.read_errors,
            self.max_unreadable,
            self.intact,
            self.cut,
            self.failures.len()
        );
        self.print_known();
    }

    fn print_known(&self) {
        for (kind, count) in &self.known {
            println!("  KNOWN BUG {kind:?}: {count} cases (RINGLOG_STRICT=1 fails on them)");
        }
        for example in &self.known_examples {
            println!("    e.g. {example}");
        }
    }
}

/// Writes `bytes` at `at` of `name`.
fn poke(p: &Pristine, name: &str, at: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(p.path(name))
        .unwrap();
    file.write_all_at(bytes, at).unwrap();
}

/// Restores `len` bytes at `at` of `name` from the pristine copy.
fn unpoke(p: &Pristine, name: &str, at: u64, len: usize) {
    let original = &p.files[name][at as usize..at as usize + len];
    poke(p, name, at, original);
}

fn remove_checkpoint(p: &Pristine) {
    let _ = std::fs::remove_file(p.path(&idx_name(p.active())));
}

/// What a crash-like case (no checkpoint) may cut, given the damaged byte ranges of the
/// active segment: everything after the last intact commit marker (nothing proves it
/// durable: docs/design.md 4.2). Under `Sync` a marker's durable position is its own
/// position.
fn crash_like(p: &Pristine, damaged: &[(u64, u64)]) -> Allow {
    let frames = &p.frames[&p.active()];
    let intact = |f: &FrameAt| !damaged.iter().any(|&(a, b)| a < f.end && f.start < b);
    let last_marker = frames
        .iter()
        .rev()
        .find(|f| f.offset.is_none() && intact(f))
        .map_or(0, |f| f.start);
    let cut_from = frames
        .iter()
        .find(|f| f.start > last_marker && f.offset.is_some())
        .and_then(|f| f.offset)
        .unwrap_or(p.payloads.len() as u64);
    Allow {
        cut_from: Some(cut_from),
        ..STRICT
    }
}

/// What a case damaging `ranges` of segment `id` allows.
fn allow_for(p: &Pristine, checkpoint: bool, id: u64, ranges: &[(u64, u64)]) -> Allow {
    let in_active: &[(u64, u64)] = if id == p.active() { ranges } else { &[] };
    let base = if checkpoint {
        STRICT
    } else {
        crash_like(p, in_active)
    };
    Allow {
        read_from: if id == p.active() { active_base(p) } else { 0 },
        ..base
    }
}

fn active_base(p: &Pristine) -> u64 {
    p.frames[&p.active()].iter().find_map(|f| f.offset).unwrap()
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// Every single-bit flip of the active segment's bytes up to its data end plus 512
/// bytes, with the clean checkpoint.
#[test]
fn every_bit_flip_of_the_active_segment_clean_checkpoint() {
    bit_flips(true);
}

/// The same without the checkpoint (as after a crash): the scan at open must tell
/// damage to durable records (an error) from a torn last batch (cut).
#[test]
fn every_bit_flip_of_the_active_segment_no_checkpoint() {
    bit_flips(false);
}

fn bit_flips(checkpoint: bool) {
    install_quiet_panic_hook();
    let p = build_pristine();
    let active = p.active();
    let name = seg_name(active);
    let data_end = p.data_end[&active];
    let span = data_end + 512;
    assert!(
        data_end >= 4096 + 64,
        "the active segment holds >= 4 KiB of data"
    );
    let watchdog = Watchdog::start("bit flips", Duration::from_secs(60));
    let started = Instant::now();
    let mut all_failures = Vec::new();
    {
        p.restore_all();
        if !checkpoint {
            remove_checkpoint(&p);
        }
        let mut tally = Tally::default();
        let mut writer = Tally::default();
        let mut past_end_harmless = 0u64;
        for byte in 0..span {
            for bit in 0..8u8 {
                watchdog.case(|| format!("flip byte {byte} bit {bit} checkpoint {checkpoint}"));
                let original = p.files[&name][byte as usize];
                poke(&p, &name, byte, &[original ^ (1 << bit)]);
                let allow = allow_for(&p, checkpoint, active, &[(byte, byte + 1)]);
                let label =
                    || format!("flip {name} byte {byte} bit {bit} (checkpoint {checkpoint})");
                let verdict = tally.add(label, check(&p, Opener::ReadOnly, allow));
                match &verdict {
                    Some(Verdict::Intact) if byte < data_end => {
                        tally.intact_in_data += 1;
                        let report = ringlog::verify(p.dir.path()).unwrap();
                        if report.is_clean() {
                            let line = format!(
                                "flip {name} byte {byte} bit {bit} (checkpoint {checkpoint}): inside the data, yet undetected by open, reads and verify"
                            );
                            eprintln!("FAILURE {line}");
                            tally.failures.push(line);
                        } else {
                            tally.verify_detected += 1;
                        }
                    }
                    Some(Verdict::Intact) => past_end_harmless += 1,
                    Some(Verdict::ReadErrors {
                        first: Some((file, position)),
                        ..
                    }) => {
                        tally.positioned += 1;
                        let frame = p.frame_containing(active, byte);
                        if *file == p.path(&name) && frame.is_some_and(|f| f.start == *position) {
                            tally.precise_position += 1;
                        }
                    }
                    _ => {}
                }
                // The writer's open (TruncateTorn) on a sample, and on every flip near
                // the end of the data, where recovery has choices to make.
                let near_end = byte + 64 >= data_end && byte < data_end + 16;
                if (byte * 8 + bit as u64) % 127 == 0 || near_end && bit % 4 == 0 {
                    watchdog.case(|| {
                        format!("writer: flip byte {byte} bit {bit} checkpoint {checkpoint}")
                    });
                    let label = || {
                        format!("writer open: flip {name} byte {byte} bit {bit} (checkpoint {checkpoint})")
                    };
                    writer.add(label, check(&p, Opener::Writer, allow));
                    p.restore_all();
                    if !checkpoint {
                        remove_checkpoint(&p);
                    }
                } else {
                    unpoke(&p, &name, byte, 1);
                }
            }
        }
        let what = if checkpoint {
            "bit flips, clean checkpoint"
        } else {
            "bit flips, checkpoint removed (crash-like)"
        };
        println!(
            "{what}: {} flips of {span} bytes ({data_end} bytes of data + 512): {} detected at open or on read, {} inside the data seen only by verify, {} past the data end harmless, {} cut (last batch, allowed), 0 wrong bytes expected, {} failures; error position = the damaged frame in {}/{} read errors",
            tally.checked,
            tally.detected(),
            tally.verify_detected,
            past_end_harmless,
            tally.cut,
            tally.failures.len(),
            tally.precise_position,
            tally.positioned
        );
        tally.print_known();
        writer.print(&format!("  {what}, writer open sample"));
        all_failures.extend(tally.failures);
        all_failures.extend(writer.failures);
    }
    p.restore_all();
    println!("bit flips: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        all_failures.is_empty(),
        "{} failures, first: {:?}",
        all_failures.len(),
        &all_failures[..all_failures.len().min(5)]
    );
}

/// Zeroed 512-byte sectors and random garbage runs, in every segment, with and without
/// the active checkpoint.
#[test]
fn zeroed_sectors_and_garbage_runs() {
    install_quiet_panic_hook();
    let p = build_pristine();
    let seed = seed("garbage runs");
    let mut rng = Rng::new(seed);
    let watchdog = Watchdog::start("sectors", Duration::from_secs(60));
    let started = Instant::now();
    let mut failures = Vec::new();
    for checkpoint in [true, false] {
        p.restore_all();
        if !checkpoint {
            remove_checkpoint(&p);
        }
        let mut sectors = Tally::default();
        let mut garbage = Tally::default();
        let mut writer = Tally::default();
        let mut ids = p.segments.clone();
        ids.extend(p.spare);
        for &id in &ids {
            let name = seg_name(id);
            let bytes = &p.files[&name];
            for sector in 0..bytes.len() / 512 {
                let at = (sector * 512) as u64;
                if bytes[sector * 512..sector * 512 + 512]
                    .iter()
                    .all(|b| *b == 0)
                {
                    continue;
                }
                watchdog.case(|| format!("zero sector {sector} of {name}"));
                let allow = allow_for(&p, checkpoint, id, &[(at, at + 512)]);
                poke(&p, &name, at, &[0u8; 512]);
                let label =
                    || format!("zeroed sector {sector} of {name} (checkpoint {checkpoint})");
                sectors.add(label, check(&p, Opener::ReadOnly, allow));
                if sector % 4 == 1 {
                    let label = || {
                        format!("writer open: zeroed sector {sector} of {name} (checkpoint {checkpoint})")
                    };
                    writer.add(label, check(&p, Opener::Writer, allow));
                    p.restore_all();
                    if !checkpoint {
                        remove_checkpoint(&p);
                    }
                } else {
                    unpoke(&p, &name, at, 512);
                }
            }
        }
        for case in 0..3000u64 {
            let id = p.segments[rng.below(p.segments.len() as u64) as usize];
            let name = seg_name(id);
            let end = p.data_end[&id] + 512;
            let len = rng.range(1, 1024).min(SEGMENT_BYTES - 1) as usize;
            let at = rng.below(end).min(SEGMENT_BYTES - len as u64);
            let mut junk = vec![0u8; len];
            rng.fill(&mut junk);
            if rng.chance(0.2) {
                // Plausible frame words: a small length, so parsers try to follow it.
                for chunk in junk.chunks_mut(8).filter(|c| c.len() == 8) {
                    chunk[4..8].copy_from_slice(&(rng.range(24, 4000) as u32).to_le_bytes());
                }
            }
            watchdog.case(|| format!("garbage case {case}: {len} bytes at {at} of {name}"));
            let allow = allow_for(&p, checkpoint, id, &[(at, at + len as u64)]);
            poke(&p, &name, at, &junk);
            let label = || {
                format!("garbage case {case} (seed {seed}): {len} bytes at {at} of {name} (checkpoint {checkpoint})")
            };
            garbage.add(label, check(&p, Opener::ReadOnly, allow));
            if case % 16 == 0 {
                let label = || {
                    format!("writer open: garbage case {case} (seed {seed}) at {at} of {name} (checkpoint {checkpoint})")
                };
                writer.add(label, check(&p, Opener::Writer, allow));
                p.restore_all();
                if !checkpoint {
                    remove_checkpoint(&p);
                }
            } else {
                unpoke(&p, &name, at, len);
            }
        }
        let suffix = if checkpoint {
            "clean checkpoint"
        } else {
            "checkpoint removed"
        };
        sectors.print(&format!("zeroed sectors, {suffix}"));
        garbage.print(&format!("garbage runs, {suffix}"));
        writer.print(&format!(
            "  sectors and garbage, {suffix}, writer open sample"
        ));
        failures.extend(sectors.failures);
        failures.extend(garbage.failures);
        failures.extend(writer.failures);
    }
    p.restore_all();
    println!(
        "sectors and garbage: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Every segment file truncated to every length (every byte for the first 200 bytes,
/// then every 8 bytes).
#[test]
fn truncated_segment_files() {
    install_quiet_panic_hook();
    let p = build_pristine();
    let watchdog = Watchdog::start("truncation", Duration::from_secs(60));
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut ids = p.segments.clone();
    ids.extend(p.spare);
    for &id in &ids {
        let name = seg_name(id);
        let mut tally = Tally::default();
        let mut writer = Tally::default();
        let lengths = (0..200u64).chain((200..SEGMENT_BYTES).step_by(8));
        for len in lengths {
            watchdog.case(|| format!("truncate {name} to {len}"));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(p.path(&name))
                .unwrap();
            file.set_len(len).unwrap();
            drop(file);
            // A file cut short loses everything from `len`.
            let allow = allow_for(&p, true, id, &[(len, SEGMENT_BYTES)]);
            let label = || format!("{name} truncated to {len} bytes");
            tally.add(label, check(&p, Opener::ReadOnly, allow));
            if len % 512 == 0 || len < 80 {
                let label = || format!("writer open: {name} truncated to {len} bytes");
                writer.add(label, check(&p, Opener::Writer, allow));
                p.restore_all();
            } else {
                p.restore_file(&name);
            }
        }
        let role = if Some(id) == p.spare {
            "spare"
        } else if id == p.active() {
            "active"
        } else {
            "sealed"
        };
        tally.print(&format!("truncation of {role} segment {id}"));
        writer.print(&format!(
            "  truncation of {role} segment {id}, writer open sample"
        ));
        failures.extend(tally.failures);
        failures.extend(writer.failures);
    }
    p.restore_all();
    println!("truncation: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Length fields of 0, u32::MAX, past the segment end and slightly off, in every frame
/// of the active segment and of the first sealed one.
#[test]
fn hostile_length_fields() {
    install_quiet_panic_hook();
    let p = build_pristine();
    let watchdog = Watchdog::start("lengths", Duration::from_secs(60));
    let started = Instant::now();
    let mut failures = Vec::new();
    for checkpoint in [true, false] {
        let mut tally = Tally::default();
        let mut writer = Tally::default();
        p.restore_all();
        if !checkpoint {
            remove_checkpoint(&p);
        }
        for id in [p.segments[0], p.active()] {
            let name = seg_name(id);
            for (k, frame) in p.frames[&id].iter().enumerate() {
                let at = frame.start;
                let word = u32::from_le_bytes(
                    p.files[&name][at as usize + 4..at as usize + 8]
                        .try_into()
                        .unwrap(),
                );
                let past_end = (SEGMENT_BYTES - at + 8) as u32;
                let variants: [(&str, Vec<u8>, u64); 6] = [
                    ("length 0", 0u32.to_le_bytes().to_vec(), 4),
                    ("crc and length 0", vec![0u8; 8], 0),
                    ("length u32::MAX", u32::MAX.to_le_bytes().to_vec(), 4),
                    (
                        "length past the segment end",
                        past_end.to_le_bytes().to_vec(),
                        4,
                    ),
                    ("length + 8", (word + 8).to_le_bytes().to_vec(), 4),
                    ("length - 8", (word.max(32) - 8).to_le_bytes().to_vec(), 4),
                ];
                for (what, bytes, rel) in variants {
                    let pos = at + rel;
                    watchdog.case(|| format!("{what} at frame {k} of {name}"));
                    let allow = allow_for(&p, checkpoint, id, &[(pos, pos + bytes.len() as u64)]);
                    poke(&p, &name, pos, &bytes);
                    let label = || {
                        format!("{what} in frame {k} at {at} of {name} (checkpoint {checkpoint})")
                    };
                    tally.add(label, check(&p, Opener::ReadOnly, allow));
                    if k % 5 == 0 {
                        let label = || {
                            format!("writer open: {what} in frame {k} at {at} of {name} (checkpoint {checkpoint})")
                        };
                        writer.add(label, check(&p, Opener::Writer, allow));
                        p.restore_all();
                        if !checkpoint {
                            remove_checkpoint(&p);
                        }
                    } else {
                        unpoke(&p, &name, pos, bytes.len());
                    }
                }
            }
        }
        let suffix = if checkpoint {
            "clean checkpoint"
        } else {
            "checkpoint removed"
        };
        tally.print(&format!("hostile length fields, {suffix}"));
        writer.print(&format!(
            "  hostile length fields, {suffix}, writer open sample"
        ));
        failures.extend(tally.failures);
        failures.extend(writer.failures);
    }
    p.restore_all();
    println!("length fields: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// A segment header with a valid checksum over the given fields.
fn forge_header(original: &[u8], edit: impl FnOnce(&mut [u8; 64])) -> Vec<u8> {
    let mut h: [u8; 64] = original[..64].try_into().unwrap();
    edit(&mut h);
    let crc = crc32c::crc32c(&h[0..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h.to_vec()
}

/// Every bit flip of every segment header, and forged (checksum-valid) headers with
/// wrong fields, on sealed, active and spare segments.
#[test]
fn damaged_segment_headers() {
    install_quiet_panic_hook();
    let p = build_pristine();
    let watchdog = Watchdog::start("headers", Duration::from_secs(60));
    let mut failures = Vec::new();
    let mut ids = p.segments.clone();
    ids.extend(p.spare);
    let mut flips = Tally::default();
    let mut forged = Tally::default();
    let mut forged_cut = Vec::new();
    for &id in &ids {
        let name = seg_name(id);
        for bit in 0..512u64 {
            watchdog.case(|| format!("header bit {bit} of {name}"));
            let byte = bit / 8;
            let original = p.files[&name][byte as usize];
            poke(&p, &name, byte, &[original ^ (1 << (bit % 8))]);
            let allow = allow_for(&p, true, id, &[(byte, byte + 1)]);
            let label = || format!("header of {name}, bit {bit}");
            flips.add(label, check(&p, Opener::ReadOnly, allow));
            if bit % 16 == 0 {
                let label = || format!("writer open: header of {name}, bit {bit}");
                flips.add(label, check(&p, Opener::Writer, allow));
                p.restore_all();
            } else {
                unpoke(&p, &name, byte, 1);
            }
        }
        let orig = &p.files[&name];
        let u64_at = |i: usize| u64::from_le_bytes(orig[i..i + 8].try_into().unwrap());
        let set_u64 =
            |h: &mut [u8; 64], i: usize, v: u64| h[i..i + 8].copy_from_slice(&v.to_le_bytes());
        let set_u32 =
            |h: &mut [u8; 64], i: usize, v: u32| h[i..i + 4].copy_from_slice(&v.to_le_bytes());
        let base = u64_at(24);
        let forgeries: Vec<(&str, Vec<u8>)> = vec![
            ("version 2", forge_header(orig, |h| set_u32(h, 8, 2))),
            (
                "header_bytes 128",
                forge_header(orig, |h| set_u32(h, 12, 128)),
            ),
            (
                "segment id + 1",
                forge_header(orig, |h| set_u64(h, 16, id + 1)),
            ),
            (
                "segment id - 1",
                forge_header(orig, |h| set_u64(h, 16, id.wrapping_sub(1))),
            ),
            (
                "base offset + 1",
                forge_header(orig, |h| set_u64(h, 24, base.wrapping_add(1))),
            ),
            (
                "base offset - 1",
                forge_header(orig, |h| set_u64(h, 24, base.wrapping_sub(1))),
            ),
            (
                "base offset unassigned",
                forge_header(orig, |h| set_u64(h, 24, u64::MAX)),
            ),
            ("base offset 0", forge_header(orig, |h| set_u64(h, 24, 0))),
            (
                "nonce changed",
                forge_header(orig, |h| set_u64(h, 32, u64_at(32) ^ 1)),
            ),
            ("created_ms 0", forge_header(orig, |h| set_u64(h, 40, 0))),
            (
                "segment_bytes 128 KiB",
                forge_header(orig, |h| set_u64(h, 48, 128 << 10)),
            ),
            (
                "segment_bytes 60 KiB",
                forge_header(orig, |h| set_u64(h, 48, 60 << 10)),
            ),
            (
                "segment_bytes u64::MAX",
                forge_header(orig, |h| set_u64(h, 48, u64::MAX)),
            ),
            ("reserved 1", forge_header(orig, |h| set_u32(h, 56, 1))),
        ];
        for (what, header) in forgeries {
            for opener in [Opener::ReadOnly, Opener::Writer] {
                watchdog.case(|| format!("forged header {what} of {name} {opener:?}"));
                poke(&p, &name, 0, &header);
                let allow = Allow {
                    forged: true,
                    ..allow_for(&p, true, id, &[(0, 64)])
                };
                let label = || format!("{opener:?}: forged header of {name}: {what}");
                if let Some(Verdict::Cut { next_offset }) =
                    forged.add(label, check(&p, opener, allow))
                {
                    forged_cut.push(format!(
                        "{opener:?} open of segment {id} with {what}: opened Ok ending at offset {next_offset} of {}",
                        p.payloads.len()
                    ));
                }
                p.restore_all();
            }
        }
    }
    flips.print("segment header bit flips (sealed, active, spare)");
    forged.print("forged checksum-valid segment headers");
    for line in &forged_cut {
        println!("  note: {line}");
    }
    failures.extend(flips.failures);
    failures.extend(forged.failures);
    p.restore_all();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Files to replace (`Some`) or remove (`None`), by name.
type FileEdits = Vec<(String, Option<Vec<u8>>)>;

/// G6: damaged, truncated, missing, stale and swapped index files never cause a wrong
/// read, nor any error (they are rebuilt from the data); forged checksum-valid ones
/// never cause a wrong read.
#[test]
fn damaged_stale_and_forged_index_files() {
    install_quiet_panic_hook();
    let p = build_pristine();
    let watchdog = Watchdog::start("index", Duration::from_secs(60));
    let started = Instant::now();
    let g6 = Allow {
        must_be_intact: true,
        ..STRICT
    };
    let mut flips = Tally::default();
    let mut truncations = Tally::default();
    let mut other = Tally::default();
    let mut forged = Tally::default();
    let mut forged_notes = Vec::new();
    for &id in &p.segments {
        let name = idx_name(id);
        let Some(bytes) = p.files.get(&name) else {
            continue;
        };
        for bit in 0..bytes.len() as u64 * 8 {
            watchdog.case(|| format!("index bit {bit} of {name}"));
            let byte = bit / 8;
            poke(&p, &name, byte, &[bytes[byte as usize] ^ (1 << (bit % 8))]);
            let label = || format!("{name} bit {bit}");
            flips.add(label, check(&p, Opener::ReadOnly, g6));
            if bit % 13 == 0 {
                let label = || format!("writer open: {name} bit {bit}");
                flips.add(label, check(&p, Opener::Writer, g6));
                p.restore_all();
            } else {
                unpoke(&p, &name, byte, 1);
            }
        }
        for len in 0..bytes.len() {
            watchdog.case(|| format!("{name} truncated to {len}"));
            std::fs::write(p.path(&name), &bytes[..len]).unwrap();
            let label = || format!("{name} truncated to {len}");
            truncations.add(label, check(&p, Opener::ReadOnly, g6));
            if len % 8 == 0 {
                let label = || format!("writer open: {name} truncated to {len}");
                truncations.add(label, check(&p, Opener::Writer, g6));
                p.restore_all();
            } else {
                p.restore_file(&name);
            }
        }
    }
    // Missing, stale, swapped, empty, garbage.
    let mut cases: Vec<(String, FileEdits)> = Vec::new();
    for &id in &p.segments {
        let name = idx_name(id);
        cases.push((format!("{name} missing"), vec![(name.clone(), None)]));
        cases.push((
            format!("{name} empty"),
            vec![(name.clone(), Some(Vec::new()))],
        ));
        cases.push((
            format!("{name} all zeros"),
            vec![(name.clone(), Some(vec![0u8; 256]))],
        ));
        let mut junk = vec![0u8; 64 + 8 * 20];
        Rng::new(id).fill(&mut junk);
        cases.push((format!("{name} garbage"), vec![(name.clone(), Some(junk))]));
        for &other_id in &p.segments {
            if other_id != id {
                cases.push((
                    format!("{} in place of {name}", idx_name(other_id)),
                    vec![(name.clone(), p.files.get(&idx_name(other_id)).cloned())],
                ));
            }
        }
    }
    cases.push((
        "all index files missing".into(),
        p.segments.iter().map(|&id| (idx_name(id), None)).collect(),
    ));
    for (name, bytes) in &p.stale {
        cases.push((
            format!("stale {name} from an earlier clean close"),
            vec![(name.clone(), Some(bytes.clone()))],
        ));
    }
    cases.push((
        "leftover .idx.tmp beside the index".into(),
        vec![(
            format!("{}.tmp", idx_name(p.active())),
            Some(vec![0x55; 100]),
        )],
    ));
    for (what, files) in &cases {
        for opener in [Opener::ReadOnly, Opener::Writer] {
            watchdog.case(|| format!("{what} {opener:?}"));
            for (name, content) in files {
                match content {
                    Some(bytes) => std::fs::write(p.path(name), bytes).unwrap(),
                    None => {
                        let _ = std::fs::remove_file(p.path(name));
                    }
                }
            }
            let label = || format!("{opener:?}: {what}");
            other.add(label, check(&p, opener, g6));
            p.restore_all();
        }
    }
    // Forged, checksum-valid index files with wrong contents.
    for &id in &p.segments {
        let name = idx_name(id);
        let seg = &p.files[&seg_name(id)];
        let Some((_, base, nonce, _)) = ringlog::fuzzing::decode_segment_header(seg) else {
            continue;
        };
        let Some((data_end, next_offset, entries)) =
            ringlog::fuzzing::decode_index(&p.files[&name], SEGMENT_BYTES)
        else {
            panic!("pristine {name} does not decode");
        };
        let clean = p.files[&name][12] & 1 == 1;
        let records: Vec<FrameAt> = p.frames[&id]
            .iter()
            .filter(|f| f.offset.is_some())
            .copied()
            .collect();
        let mut forgeries: Vec<(&str, Vec<u8>)> = Vec::new();
        let shift =
            |d: u64| -> Vec<(u64, u64)> { entries.iter().map(|&(o, pos)| (o, pos + d)).collect() };
        forgeries.push((
            "entries 8 bytes late",
            encode_index(id, nonce, base, data_end, next_offset, clean, &shift(8)),
        ));
        forgeries.push((
            "entries name the next offset",
            encode_index(
                id,
                nonce,
                base,
                data_end,
                next_offset,
                clean,
                &entries
                    .iter()
                    .map(|&(o, pos)| (o + 1, pos))
                    .collect::<Vec<_>>(),
            ),
        ));
        forgeries.push((
            "entries point at the previous record",
            encode_index(
                id,
                nonce,
                base,
                data_end,
                next_offset,
                clean,
                &entries
                    .iter()
                    .filter_map(|&(o, pos)| {
                        let k = records.iter().position(|r| r.start == pos)?;
                        (k > 0).then(|| (o, records[k - 1].start))
                    })
                    .collect::<Vec<_>>(),
            ),
        ));
        forgeries.push((
            "entries point into payloads",
            encode_index(id, nonce, base, data_end, next_offset, clean, &shift(40)),
        ));
        forgeries.push((
            "no entries",
            encode_index(id, nonce, base, data_end, next_offset, clean, &[]),
        ));
        forgeries.push((
            "every record an entry",
            encode_index(
                id,
                nonce,
                base,
                data_end,
                next_offset,
                clean,
                &records
                    .iter()
                    .map(|r| (r.offset.unwrap(), r.start))
                    .collect::<Vec<_>>(),
            ),
        ));
        forgeries.push((
            "next offset + 5, data end unchanged",
            encode_index(id, nonce, base, data_end, next_offset + 5, clean, &entries),
        ));
        forgeries.push((
            "next offset - 1, data end unchanged",
            encode_index(
                id,
                nonce,
                base,
                data_end,
                next_offset.saturating_sub(1).max(base),
                clean,
                &entries,
            ),
        ));
        if let Some(last) = records.last() {
            // A checkpoint one record short, consistent with itself.
            let kept: Vec<(u64, u64)> = entries
                .iter()
                .copied()
                .filter(|&(_, pos)| pos < last.start)
                .collect();
            forgeries.push((
                "one record short, consistent",
                encode_index(
                    id,
                    nonce,
                    base,
                    last.start,
                    last.offset.unwrap(),
                    clean,
                    &kept,
                ),
            ));
            forgeries.push((
                "one record short, marked clean",
                encode_index(
                    id,
                    nonce,
                    base,
                    last.start,
                    last.offset.unwrap(),
                    true,
                    &kept,
                ),
            ));
        }
        forgeries.push((
            "data end past the data, marked clean",
            encode_index(
                id,
                nonce,
                base,
                (data_end + 4096).min(SEGMENT_BYTES),
                next_offset,
                true,
                &entries,
            ),
        ));
        forgeries.push((
            "another nonce",
            encode_index(id, nonce ^ 1, base, data_end, next_offset, clean, &entries),
        ));
        for (what, bytes) in forgeries {
            for opener in [Opener::ReadOnly, Opener::Writer] {
                watchdog.case(|| format!("forged {name}: {what} {opener:?}"));
                std::fs::write(p.path(&name), &bytes).unwrap();
                let allow = Allow {
                    forged: true,
                    ..STRICT
                };
                let label = || format!("{opener:?}: forged {name}: {what}");
                match forged.add(label, check(&p, opener, allow)) {
                    Some(Verdict::Intact) | None => {}
                    Some(v) => forged_notes.push(format!("{opener:?}, {name}, {what}: {v:?}")),
                }
                p.restore_all();
            }
        }
    }
    flips.print("index file bit flips (G6: must read everything)");
    truncations.print("index file truncations (G6)");
    other.print("missing, empty, garbage, swapped, stale index files (G6)");
    forged.print("forged checksum-valid index files (no wrong bytes)");
    for line in &forged_notes {
        println!("  note: forged index: {line}");
    }
    println!("index files: {:.1} s", started.elapsed().as_secs_f64());
    let failures: Vec<String> = [
        flips.failures,
        truncations.failures,
        other.failures,
        forged.failures,
    ]
    .concat();
    p.restore_all();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

// ---------------------------------------------------------------------------------------
// Bugs found by the sweeps above, one regression test each.
// ---------------------------------------------------------------------------------------

fn read_all(log: &Log, n: u64) -> Result<Vec<Vec<u8>>, String> {
    (0..n)
        .map(|i| {
            log.read(i)
                .map(|r| r.payload().to_vec())
                .map_err(|e| format!("offset {i}: {e}"))
        })
        .collect()
}

/// Zeroing the first sector of the active segment (header and the first records, as a
/// torn or zeroed sector would) makes open take it for an interrupted preparation:
/// `has_data` looks only at the 8 bytes at 64, so the file is ignored (read-only) or
/// deleted with its checkpoint (writer), and every acknowledged record in it is gone
/// without an error, although its clean checkpoint `.idx` and the spare after it prove
/// it was active. (Cut short of its header, the next test.)
#[test]
fn active_segment_with_zeroed_first_sector_is_reported_not_dropped() {
    let p = build_pristine();
    let n = p.payloads.len() as u64;
    let name = seg_name(p.active());
    poke(&p, &name, 0, &[0u8; 512]);
    match Log::open_read_only(p.dir.path(), options()) {
        Err(_) => {}
        Ok(log) => assert_eq!(
            log.next_offset(),
            n,
            "read-only open succeeded without the active segment's records"
        ),
    }
    let seg = p.path(&name);
    match Log::open(p.dir.path(), options()) {
        Err(_) => {}
        Ok(log) => {
            assert!(
                seg.exists(),
                "the writer deleted {}: {:?}",
                seg.display(),
                log.recovery_report()
            );
            assert_eq!(log.next_offset(), n, "{:?}", log.recovery_report());
        }
    }
}

/// The active segment's file cut short of its header (to 0..64 bytes): open took it for
/// an interrupted preparation (the header is unreadable, and no data is left to
/// see), so read-only dropped its records and the writer deleted it with its
/// checkpoint and the spare after it. Found by the truncation sweep (64 lengths, each
/// opener). Only activated segments get an index file: with one there, it is
/// corruption.
#[test]
fn active_segment_truncated_below_its_header_is_reported_not_dropped() {
    let p = build_pristine();
    let name = seg_name(p.active());
    let seg = p.path(&name);
    for len in [0u64, 1, 40, 63] {
        p.restore_all();
        let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        file.set_len(len).unwrap();
        drop(file);
        for opener in [Opener::ReadOnly, Opener::Writer] {
            let opened = match opener {
                Opener::ReadOnly => Log::open_read_only(p.dir.path(), options()),
                Opener::Writer => Log::open(p.dir.path(), options()),
            };
            match opened {
                Err(Error::Corruption {
                    segment, reason, ..
                }) => {
                    assert_eq!(segment, seg, "{opener:?}, {len} bytes");
                    assert!(
                        reason.contains("index file shows it was activated"),
                        "{reason}"
                    );
                }
                other => panic!("{opener:?} open of {name} cut to {len} bytes: {other:?}"),
            }
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "left alone");
            assert!(p.path(&idx_name(p.active())).exists());
        }
    }
    p.restore_all();
}

/// An activated segment whose header reads as a prepared spare (base offset unassigned,
/// valid checksum: the activation header write lost while data writes survived) but
/// that holds data: open deletes it as "spare segment out of sequence". A file past the
/// last activated segment with a *broken* header and data is corruption
/// (docs/design.md 4.1 step 4); with a valid spare header and data it is deleted.
#[test]
fn spare_header_with_data_is_reported_not_deleted() {
    let p = build_pristine();
    let n = p.payloads.len() as u64;
    let name = seg_name(p.active());
    let forged = forge_header(&p.files[&name], |h| {
        h[24..32].copy_from_slice(&u64::MAX.to_le_bytes())
    });
    poke(&p, &name, 0, &forged);
    let seg = p.path(&name);
    match Log::open(p.dir.path(), options()) {
        Err(_) => {}
        Ok(log) => {
            let report = log.recovery_report().clone();
            assert!(
                seg.exists(),
                "the writer deleted a segment holding {} records: {report:?}",
                n - active_base(&p)
            );
            assert_eq!(log.next_offset(), n, "{report:?}");
        }
    }
}

/// Damage in the active segment between its last index entry and the end that a clean
/// checkpoint covers: the record's checksum and length words zeroed. Before open checked
/// the checkpoint against the data, the writer opened, appended and acknowledged a
/// record that could then not be read, neither by the writer nor after a reopen (the
/// read walked from the last index entry and stopped at the damaged frame). Now the
/// check at open walks those frames, finds the damage below the checkpoint's durable
/// end, and reports it (docs/design.md 4.2); a writer that opens anyway must keep its
/// acknowledged records readable.
#[test]
fn append_after_damage_in_active_segment_stays_readable() {
    let p = build_pristine();
    let n = p.payloads.len() as u64;
    let name = seg_name(p.active());
    let (_, _, entries) =
        ringlog::fuzzing::decode_index(&p.files[&idx_name(p.active())], SEGMENT_BYTES).unwrap();
    let last_entry = entries.last().unwrap().1;
    let victim = p.frames[&p.active()]
        .iter()
        .find(|f| f.start > last_entry && f.offset.is_some())
        .copied()
        .unwrap();
    // The record's checksum and length words, zeroed.
    poke(&p, &name, victim.start, &[0u8; 8]);
    let log = match Log::open(p.dir.path(), options()) {
        Err(Error::Corruption {
            segment, position, ..
        }) => {
            // Reported at the damaged record, or at the start of its batch.
            assert_eq!(segment, p.path(&name));
            let frame_start = p.frames[&p.active()].iter().any(|f| f.start == position);
            assert!(
                frame_start && position <= victim.start,
                "damage at byte {} reported at byte {position}",
                victim.start
            );
            return;
        }
        other => other.unwrap(),
    };
    assert_eq!(log.next_offset(), n);
    let offset = log.append(b"acknowledged after the reopen").unwrap();
    assert_eq!(offset, n);
    let read = log.read(offset).map(|r| r.payload().to_vec());
    assert_eq!(
        read.as_deref().map_err(|e| e.to_string()),
        Ok(b"acknowledged after the reopen".as_slice()),
        "the damaged record is offset {:?} at byte {}",
        victim.offset,
        victim.start
    );
}

/// A bit flip in a commit marker (a frame that holds no record) must not hide the
/// intact records after it (docs/design.md 4.4: a damaged frame does not hide its
/// neighbours). Found failing by the sweeps before reads walked frame headers only; kept
/// as a regression test.
#[test]
fn damaged_commit_marker_does_not_hide_following_records() {
    let p = build_pristine();
    let name = seg_name(p.active());
    let frames = &p.frames[&p.active()];
    let (_, _, entries) =
        ringlog::fuzzing::decode_index(&p.files[&idx_name(p.active())], SEGMENT_BYTES).unwrap();
    let entry_positions: Vec<u64> = entries.iter().map(|e| e.1).collect();
    // A marker after the first index entry, followed by a record that is not itself an
    // index entry.
    let k = (1..frames.len() - 1)
        .find(|&k| {
            frames[k].offset.is_none()
                && frames[k].start > entry_positions[0]
                && !entry_positions.contains(&frames[k + 1].start)
        })
        .unwrap();
    let marker = frames[k];
    let next = frames[k + 1].offset.unwrap();
    // Flip a bit of the marker's durable-position field.
    let at = marker.start + 24;
    poke(&p, &name, at, &[p.files[&name][at as usize] ^ 1]);
    let log = Log::open_read_only(p.dir.path(), options()).unwrap();
    let read = log.read(next).map(|r| r.payload().to_vec());
    assert_eq!(
        read.map_err(|e| e.to_string()),
        Ok(p.payloads[next as usize].clone()),
        "record {next} is intact; only the marker at byte {} before it is damaged",
        marker.start
    );
}

/// A checksum-valid clean checkpoint whose next offset is one less than what its data
/// end holds. Found by the forged-index sweep: open trusted it without looking at the
/// data, the writer handed out an offset that was already in the segment, and reading it
/// returned the older record. Open now walks the frames from the checkpoint's last index
/// entry to its data end, sees that they disagree, and scans the segment instead.
#[test]
fn inconsistent_clean_checkpoint_does_not_reuse_an_offset() {
    let p = build_pristine();
    let n = p.payloads.len() as u64;
    let id = p.active();
    let (_, base, nonce, _) =
        ringlog::fuzzing::decode_segment_header(&p.files[&seg_name(id)]).unwrap();
    let (data_end, next_offset, entries) =
        ringlog::fuzzing::decode_index(&p.files[&idx_name(id)], SEGMENT_BYTES).unwrap();
    assert_eq!(next_offset, n);
    let forged = encode_index(id, nonce, base, data_end, n - 1, true, &entries);
    std::fs::write(p.path(&idx_name(id)), forged).unwrap();
    let log = Log::open(p.dir.path(), options()).unwrap();
    let report = log.recovery_report().clone();
    assert!(!report.clean_shutdown, "{report:?}");
    let why = report.checkpoint_rejected.clone().unwrap_or_default();
    assert!(why.contains(&format!("the data says offset {n}")), "{why}");
    assert_eq!(log.next_offset(), n);
    let offset = log.append(b"new").unwrap();
    assert_eq!(offset, n);
    let back = log.read(offset).unwrap().payload().to_vec();
    assert_eq!(back, b"new", "offset {offset} reads back another record");
    assert_eq!(read_all(&log, n).unwrap(), p.payloads);
    log.close().unwrap();
    drop(log);
    // The close wrote a checkpoint from the data: the next open trusts it.
    let log = Log::open_read_only(p.dir.path(), options()).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.recovery_report().checkpoint_rejected, None);
    assert_eq!(log.next_offset(), n + 1);
    assert_eq!(log.read(n).unwrap().payload(), b"new");
}

/// A checksum-valid active checkpoint whose entries point 8 bytes past their records.
/// Found by the forged-index sweep: reads of the active segment failed, where a sealed
/// segment's index is rebuilt from the data (G6: "a missing, stale or damaged index
/// never causes a wrong read; it is rebuilt"). The last entry is wrong too, so open does
/// not use the checkpoint; `tests/checkpoint.rs` covers wrong entries that pass the
/// check at open and are rebuilt by a read.
#[test]
fn active_checkpoint_entries_are_rebuilt() {
    let p = build_pristine();
    let n = p.payloads.len() as u64;
    let id = p.active();
    let (_, base, nonce, _) =
        ringlog::fuzzing::decode_segment_header(&p.files[&seg_name(id)]).unwrap();
    let (data_end, next_offset, entries) =
        ringlog::fuzzing::decode_index(&p.files[&idx_name(id)], SEGMENT_BYTES).unwrap();
    let shifted: Vec<(u64, u64)> = entries.iter().map(|&(o, pos)| (o, pos + 8)).collect();
    std::fs::write(
        p.path(&idx_name(id)),
        encode_index(id, nonce, base, data_end, next_offset, true, &shifted),
    )
    .unwrap();
    let log = Log::open_read_only(p.dir.path(), options()).unwrap();
    assert!(log.recovery_report().checkpoint_rejected.is_some());
    let all = read_all(&log, n).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all, p.payloads);
    let log = Log::open(p.dir.path(), options()).unwrap();
    let all = read_all(&log, n).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all, p.payloads);
    assert_eq!(log.append(b"new").unwrap(), n);
    assert_eq!(log.read(n).unwrap().payload(), b"new");
}

/// Regression (found by the garbage sweep, seed 1796554798114158923, case 620): garbage
/// whose 8-byte words all carry a plausible frame length, over the first record of the
/// active segment, with its checkpoint gone. The search past the damage for commit
/// markers spends a bounded number of checksum bytes; the garbage's fake frames used it
/// all up before the real markers after it were reached, so the damage to durable
/// records was cut as a torn tail (14 acknowledged records lost without an error). The
/// search now checksums only frames that could be real (a marker's exact length, a
/// record's offset in range).
#[test]
fn garbage_with_plausible_lengths_does_not_hide_the_markers_after_it() {
    let p = build_pristine();
    p.restore_all();
    remove_checkpoint(&p);
    let active = p.active();
    let name = seg_name(active);
    let frames = &p.frames[&active];
    let first_record = frames.iter().find(|f| f.offset.is_some()).unwrap();
    // Runs of garbage over the first records, every 8-byte word a plausible frame length
    // of 24 B to 4 KiB (as the sweep's), 987 bytes long as in the case found.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for variant in 0..200 {
        let at = first_record.start + 8 * (next() % 128);
        let mut junk = vec![0u8; 987];
        for chunk in junk.chunks_mut(8) {
            let x = next();
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            if chunk.len() == 8 {
                chunk[4..8].copy_from_slice(&(24 + (x >> 20) % 3976).to_le_bytes()[..4]);
            }
        }
        let allow = allow_for(&p, false, active, &[(at, at + junk.len() as u64)]);
        poke(&p, &name, at, &junk);
        if let Err(failure) = check(&p, Opener::ReadOnly, allow) {
            panic!(
                "variant {variant}, {} bytes at {at}: {}",
                junk.len(),
                failure.message
            );
        }
        p.restore_all();
        remove_checkpoint(&p);
    }
    p.restore_all();
}
