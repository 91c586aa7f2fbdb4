//! kill -9 during trims and truncations: a child process appends (Sync), and every few
//! appends truncates the end or trims the start, reporting each step over a pipe; the
//! parent SIGKILLs it at random moments, then checks what is on disk (docs/design.md 4.9):
//! - the first offset is the last trim that returned, or the one in flight;
//! - every acknowledged record not removed by a truncation that returned is there, with
//!   its exact bytes; a truncation in flight either happened whole or not at all;
//! - no record a truncation removed ever comes back: every record at or past a cut
//!   carries an epoch at least the cut's (records are stamped with the epoch they were
//!   appended in, which grows at every cut and every generation).
//!
//! The next child recovers the same directory. `RINGLOG_KILL9_CUT_CYCLES` (default 30)
//! sets the number of kills, `RINGLOG_SEED` replays a run's choices.

#[path = "common/reliability.rs"]
mod reliability;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reliability::{
    env_u64, seed, Rng, Watchdog, WriterChild, CHILD_DIR_ENV, CHILD_GEN_ENV, CHILD_SEED_ENV,
};
use ringlog::{Durability, Log, Options};

const SEGMENT_BYTES: u64 = 64 << 10;
const CHILD_TEST: &str = "kill9_cut_child";

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Sync)
}

fn payload(offset: u64, epoch: u64, len: usize) -> Vec<u8> {
    let mut out = vec![(offset % 251) as u8; len.max(16)];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out[8..16].copy_from_slice(&epoch.to_le_bytes());
    out
}

fn epoch_of(bytes: &[u8]) -> Option<(u64, u64)> {
    let offset = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let epoch = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((offset, epoch))
}

/// The child: appends, truncates and trims until killed, saying what it does.
#[test]
#[ignore = "child process of kill9_cut_cycles (runs only when re-executed by it)"]
fn kill9_cut_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let generation = env_u64(CHILD_GEN_ENV, 1);
    let mut rng = Rng::new(env_u64(CHILD_SEED_ENV, 1));
    let say = |line: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say("OPENING".into());
    let log = match Log::open(&dir, options()) {
        Ok(log) => log,
        Err(e) => {
            say(format!("OPENERR {e}"));
            std::process::exit(3);
        }
    };
    say(format!(
        "OPENED {} {}",
        log.first_offset(),
        log.next_offset()
    ));
    // Epochs grow across generations and at every cut.
    let mut epoch = generation << 32;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let roll = rng.below(100);
        if roll < 4 {
            let (first, next) = (log.first_offset(), log.next_offset());
            let at = next.saturating_sub(rng.below(30)).max(first);
            epoch += 1;
            say(format!("TRUNCATING {at} {epoch}"));
            match log.truncate_from(at) {
                Ok(()) => say(format!("TRUNCATED {at} {epoch}")),
                Err(e) => {
                    say(format!("FAIL truncate {e}"));
                    std::process::exit(4);
                }
            }
        } else if roll < 7 {
            let (first, next) = (log.first_offset(), log.next_offset());
            let at = (first + rng.below(40)).min(next);
            say(format!("TRIMMING {at}"));
            match log.trim_before(at) {
                Ok(new_first) => say(format!("TRIMMED {new_first}")),
                Err(e) => {
                    say(format!("FAIL trim {e}"));
                    std::process::exit(4);
                }
            }
        } else {
            let count = if rng.chance(0.3) { rng.range(2, 5) } else { 1 };
            let start = log.next_offset();
            let bodies: Vec<Vec<u8>> = (start..start + count)
                .map(|o| payload(o, epoch, rng.range(16, 1500) as usize))
                .collect();
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            match log.append_batch(&refs) {
                Ok(range) => say(format!("ACK {} {} {epoch}", range.start, range.end)),
                Err(e) => {
                    say(format!("FAIL append {e}"));
                    std::process::exit(4);
                }
            }
        }
    }
    let _ = log.close();
    say("CLOSED".into());
}

/// What the parent knows from every child so far.
#[derive(Default)]
struct Model {
    /// Acknowledged records still in the log (not removed by a truncation that
    /// returned), by offset: the epoch they were appended in.
    acked: BTreeMap<u64, u64>,
    /// Truncations that returned: (cut, epoch). Every record at or past a cut carries an
    /// epoch at least its.
    cuts: Vec<(u64, u64)>,
    /// The first offset as the last trim that returned left it.
    first: u64,
}

impl Model {
    fn learn(&mut self, lines: &[String]) -> (Option<(u64, u64)>, Option<u64>) {
        let (mut truncating, mut trimming) = (None, None);
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| {
                words
                    .get(i)
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            match words.first() {
                Some(&"ACK") => {
                    for offset in number(1)..number(2) {
                        self.acked.insert(offset, number(3));
                    }
                }
                Some(&"TRUNCATING") => truncating = Some((number(1), number(2))),
                Some(&"TRUNCATED") => {
                    truncating = None;
                    self.acked.retain(|&o, _| o < number(1));
                    self.cuts.push((number(1), number(2)));
                }
                Some(&"TRIMMING") => trimming = Some(number(1)),
                Some(&"TRIMMED") => {
                    trimming = None;
                    self.first = self.first.max(number(1));
                    let first = self.first;
                    self.acked.retain(|&o, _| o >= first);
                }
                _ => {}
            }
        }
        (truncating, trimming)
    }

    fn check(&mut self, dir: &std::path::Path, lines: &[String]) -> Result<(u64, u64), String> {
        let (truncating, trimming) = self.learn(lines);
        let log = Log::open_read_only(dir, options()).map_err(|e| format!("open: {e}"))?;
        let (first, next) = (log.first_offset(), log.next_offset());
        if first != self.first && Some(first) != trimming {
            return Err(format!(
                "first offset {first}: trims left {}, in flight {trimming:?}",
                self.first
            ));
        }
        self.first = first;
        self.acked.retain(|&o, _| o >= first);
        if let Some((at, epoch)) = truncating {
            // Whole or not at all: cut exactly there, or every acknowledged record kept.
            let kept_all = self
                .acked
                .keys()
                .next_back()
                .is_none_or(|&last| last < next);
            if next == at.max(first) && !kept_all {
                self.acked.retain(|&o, _| o < at);
                self.cuts.push((at, epoch));
            } else if !kept_all {
                return Err(format!(
                    "a truncation at {at} in flight left the log ending at {next}"
                ));
            } else if next == at.max(first) {
                self.cuts.push((at, epoch));
            }
        }
        for (&offset, &epoch) in &self.acked {
            let record = log
                .read(offset)
                .map_err(|e| format!("acknowledged record {offset} (epoch {epoch}): {e}"))?;
            match epoch_of(record.payload()) {
                Some((o, e)) if o == offset && e == epoch => {}
                other => {
                    return Err(format!(
                        "record {offset}: WRONG BYTES {other:?}, epoch {epoch}"
                    ))
                }
            }
        }
        let mut expected = first;
        for record in log.iter(first) {
            let record = record.map_err(|e| format!("iter at {expected}: {e}"))?;
            let (o, e) = epoch_of(record.payload()).ok_or("short record")?;
            if o != expected || record.offset() != expected {
                return Err(format!("record {expected} carries offset {o}"));
            }
            for &(cut, cut_epoch) in &self.cuts {
                if o >= cut && e < cut_epoch {
                    return Err(format!(
                        "record {o} of epoch {e} came back past the cut at {cut} (epoch {cut_epoch})"
                    ));
                }
            }
            expected += 1;
        }
        if expected != next {
            return Err(format!("iteration ended at {expected}, next {next}"));
        }
        Ok((first, next))
    }
}

#[test]
fn kill9_cut_cycles() {
    let cycles = env_u64("RINGLOG_KILL9_CUT_CYCLES", 30);
    let seed = seed("kill9_cut");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let _watchdog = Watchdog::start("kill9_cut", Duration::from_secs(300));
    let mut model = Model::default();
    let (mut truncations, mut trims) = (0, 0);
    for cycle in 1..=cycles {
        let mut child = WriterChild::spawn(
            CHILD_TEST,
            dir.path(),
            cycle as u32,
            rng.below(u64::MAX),
            "auto",
        );
        // Kill at a random moment after it opened, often right after it starts a cut.
        let kill_after = Duration::from_millis(rng.range(5, 120));
        let on_cut = rng.chance(0.5);
        let mut opened_at = None;
        while let Some(line) = child.next_line(Duration::from_secs(20)) {
            if line.text.starts_with("OPENED") {
                opened_at = Some(line.at);
            }
            if on_cut && (line.text.starts_with("TRUNCATING") || line.text.starts_with("TRIMMING"))
            {
                break;
            }
            if opened_at.is_some_and(|at| at.elapsed() >= kill_after) {
                break;
            }
            if line.text.starts_with("OPENERR") || line.text.starts_with("FAIL") {
                panic!("seed {seed} cycle {cycle}: child said {}", line.text);
            }
        }
        child.kill();
        child.finish(Duration::from_secs(20)).expect("reap");
        let lines: Vec<String> = child.seen.iter().map(|l| l.text.clone()).collect();
        truncations += lines.iter().filter(|l| l.starts_with("TRUNCATED")).count();
        trims += lines.iter().filter(|l| l.starts_with("TRIMMED")).count();
        if let Some(bad) = lines
            .iter()
            .find(|l| l.starts_with("FAIL") || l.starts_with("OPENERR"))
        {
            panic!("seed {seed} cycle {cycle}: child said {bad}");
        }
        if let Err(e) = model.check(dir.path(), &lines) {
            panic!("seed {seed} cycle {cycle}: {e}");
        }
    }
    eprintln!(
        "kill9_cut: {cycles} kills, {truncations} truncations and {trims} trims returned, {} acknowledged records checked at the end",
        model.acked.len()
    );
    assert!(truncations > 0 && trims > 0, "no cut ran");
}
