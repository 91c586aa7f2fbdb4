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
//! (The workload and the checks: `tests/common/cut_reliability.rs`.) The next child
//! recovers the same directory. `RINGLOG_KILL9_CUT_CYCLES` (default 30)
//! sets the number of kills, `RINGLOG_SEED` replays a run's choices.

#[path = "common/cut_reliability.rs"]
mod cut_reliability;
#[path = "common/reliability.rs"]
mod reliability;

use std::time::Duration;

use cut_reliability::Model;
use reliability::{env_u64, seed, Rng, Watchdog, WriterChild};

const CHILD_TEST: &str = "kill9_cut_child";

/// The child: re-executed by `kill9_cut_cycles`, never run on its own.
#[test]
#[ignore = "child process of kill9_cut_cycles (runs only when re-executed by it)"]
fn kill9_cut_child() {
    cut_reliability::cut_child_main();
}

#[test]
fn kill9_cut_cycles() {
    let cycles = env_u64("RINGLOG_KILL9_CUT_CYCLES", 30);
    let seed = seed("kill9_cut");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let _watchdog = Watchdog::start("kill9_cut", Duration::from_secs(300));
    let mut model = Model::default();
    let (mut truncations, mut trims, mut recycled) = (0, 0, 0);
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
        recycled += lines.iter().filter(|l| l.starts_with("RECYCLED")).count();
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
        "kill9_cut: {cycles} kills, {truncations} truncations and {trims} trims returned, {recycled} segments prepared from recycled files, {} acknowledged records checked at the end",
        model.acked.len()
    );
    assert!(truncations > 0 && trims > 0, "no cut ran");
}
