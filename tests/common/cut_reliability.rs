//! The trim-and-truncate workload of the kill -9 and power-cut tests
//! (`tests/kill9_cut.rs`, `tests/powercut.rs`): a child that appends durably and every few
//! appends truncates the end or trims the start, saying each step on stdout, and the
//! parent's model that checks a log it left (docs/design.md 4.9):
//! - the first offset is the last trim that returned, or the one in flight;
//! - every acknowledged record not removed by a truncation that returned is there, with
//!   its exact bytes; a truncation in flight either happened whole or not at all;
//! - no record a truncation removed ever comes back: every record at or past a cut
//!   carries an epoch at least the cut's (records are stamped with the epoch they were
//!   appended in, which grows at every cut and every generation).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::reliability::{env_u64, Rng, CHILD_DIR_ENV, CHILD_GEN_ENV, CHILD_SEED_ENV};
use ringlog::{Durability, Log, Options};

const SEGMENT_BYTES: u64 = 64 << 10;

/// Options of the child and of the parent's read-only checks.
pub fn options() -> Options {
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

/// The child: appends, truncates and trims until killed, saying what it does. Called by
/// an ignored test of the including file, re-executed by its parent.
pub fn cut_child_main() {
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
    // Two generations of three recycle removed segments' files (docs/design.md 4.9), so
    // the runs cover both ways a trim or truncation disposes of them, and logs whose
    // recycled files a later generation without recycling opens (and the reverse).
    let opts = options().recycle_segments(generation % 3 != 0);
    let log = match Log::open(&dir, opts) {
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
    let mut recycled = 0;
    while Instant::now() < deadline {
        // Says when a segment was prepared from a removed one's file (the parent counts).
        let now_recycled = log.stats().recycled_segments_count;
        if now_recycled > recycled {
            recycled = now_recycled;
            say(format!("RECYCLED {recycled}"));
        }
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
#[derive(Default, Clone)]
pub struct Model {
    /// Acknowledged records still in the log (not removed by a truncation that
    /// returned), by offset: the epoch they were appended in.
    pub acked: BTreeMap<u64, u64>,
    /// Truncations that returned: (cut, epoch). Every record at or past a cut carries an
    /// epoch at least its.
    pub cuts: Vec<(u64, u64)>,
    /// The first offset as the last trim that returned left it.
    pub first: u64,
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

    /// Like [`Model::check`], where the cuts of `maybe` (lines said while power failed)
    /// may or may not have happened, in order: the log must match one prefix of them.
    pub fn check_maybe(
        &mut self,
        dir: &std::path::Path,
        lines: &[String],
        maybe: &[String],
    ) -> Result<(u64, u64), String> {
        let mut errors = Vec::new();
        for taken in 0..=maybe.len() {
            let mut candidate = self.clone();
            let mut all = lines.to_vec();
            all.extend_from_slice(&maybe[..taken]);
            match candidate.check(dir, &all) {
                Ok(end) => {
                    *self = candidate;
                    return Ok(end);
                }
                Err(e) => errors.push(format!("with {taken} of {maybe:?}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    pub fn check(&mut self, dir: &std::path::Path, lines: &[String]) -> Result<(u64, u64), String> {
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
