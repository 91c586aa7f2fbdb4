//! kill -9: a child process appends durably (single records and atomic batches, across
//! rollovers) and reports each acknowledged offset over a pipe; the parent SIGKILLs it at
//! random moments (some mid-recovery of the previous crash, some mid-rollover, some
//! mid-close), then checks G1/G2 on what is on disk: every acknowledged record present
//! and intact, a gap-free prefix, every record valid, whole batches only, no phantoms and
//! no resurrected records. The next child recovers the same log, so recovery after
//! recovery (G7) is exercised too.
//!
//! `RINGLOG_KILL9_CYCLES` (default 100) sets the number of kills, `RINGLOG_SEED` replays a
//! run's choices (timing still varies).

#[path = "common/reliability.rs"]
mod reliability;

use std::time::{Duration, Instant};

use reliability::{env_u64, seed, Model, Rng, Watchdog, WriterChild};

/// The writer child: re-executed by `kill9_cycles`, never run on its own.
#[test]
#[ignore = "child process of kill9_cycles (runs only when re-executed by it)"]
fn kill9_child() {
    reliability::writer_child_main();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Right after the child says it is opening: mid-recovery of the previous crash.
    Recovery,
    /// Right after the child announces an append that moves to a new segment.
    Rollover,
    /// Right after the child starts closing (clean shutdown in progress).
    Closing,
    /// A random moment after it opened.
    Anytime,
}

#[test]
fn kill9_cycles() {
    kill9_run("kill9", &[]);
}

/// The same under `Durability::None` with mapped writes: every append that returned
/// (not only what a `sync()` covered) must be there after the kill, whole.
#[test]
fn kill9_cycles_mapped_none() {
    kill9_run(
        "kill9 (mapped, None)",
        &[(reliability::CHILD_WRITES_ENV, "mapped")],
    );
}

fn kill9_run(label: &str, envs: &[(&str, &str)]) {
    let cycles = env_u64("RINGLOG_KILL9_CYCLES", 100);
    let seed = seed(label);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let watchdog = Watchdog::start("kill9", Duration::from_secs(120));
    let mut model = Model::default();
    let started = Instant::now();
    let mut by_mode = std::collections::BTreeMap::<&str, u64>::new();
    let (mut acked_total, mut survivors_total, mut mid_recovery, mut opened_total) =
        (0u64, 0u64, 0u64, 0u64);
    let mut rollovers_seen = 0u64;
    let mut failures = Vec::new();
    for cycle in 1..=cycles {
        let generation = cycle as u32;
        let when = match rng.below(100) {
            0..=19 => When::Recovery,
            20..=39 => When::Rollover,
            40..=44 => When::Closing,
            _ => When::Anytime,
        };
        let io = if rng.chance(0.5) { "pwrite" } else { "auto" };
        let child_seed = rng.next_u64();
        let delay_us = match when {
            When::Recovery => {
                if rng.chance(0.3) {
                    0
                } else {
                    rng.below(6000)
                }
            }
            When::Rollover | When::Closing => rng.below(3000),
            When::Anytime => rng.range(2_000, 400_000),
        };
        watchdog.case(|| format!("cycle {cycle} {when:?} delay {delay_us} us io {io}"));
        let mut child =
            WriterChild::spawn_with("kill9_child", dir.path(), generation, child_seed, io, envs);
        // Wait for the trigger, then the delay, then SIGKILL.
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut armed: Option<Instant> = None;
        let mut rolls = 0;
        let roll_target = rng.range(1, 2);
        loop {
            if let Some(at) = armed {
                if Instant::now() >= at {
                    break;
                }
            }
            if Instant::now() >= give_up {
                break;
            }
            let wait = armed
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            let Some(line) = child.next_line(wait) else {
                if child.child.try_wait().ok().flatten().is_some() {
                    break; // exited on its own (an open error: reported below)
                }
                continue;
            };
            if armed.is_some() {
                continue;
            }
            let word = line.text.split_whitespace().next().unwrap_or("");
            let fire = match (when, word) {
                (When::Recovery, "OPENING") => true,
                (When::Anytime, "OPENED") => true,
                (When::Rollover, "ROLLING") => {
                    rolls += 1;
                    rolls >= roll_target
                }
                (When::Closing, "CLOSING") => true,
                _ => false,
            };
            if fire {
                armed = Some(line.at + Duration::from_micros(delay_us));
            }
        }
        child.kill();
        if let Err(e) = child.finish(Duration::from_secs(10)) {
            failures.push(format!("cycle {cycle}: {e}"));
            break;
        }
        let report = child.report();
        *by_mode
            .entry(match (when, armed.is_some()) {
                (When::Recovery, true) => "during recovery",
                (When::Rollover, true) => "at a rollover",
                (When::Closing, true) => "during close",
                (When::Anytime, true) => "at a random moment",
                (_, false) => "after its trigger never came (20 s)",
            })
            .or_default() += 1;
        if report.opened.is_empty() {
            mid_recovery += 1;
        }
        if std::env::var_os("RINGLOG_KILL9_DEBUG").is_some() {
            let t0 = child.seen.first().map(|l| l.at);
            for l in child.seen.iter().take(4) {
                eprintln!("  {:?} {:?} {}", when, t0.map(|t| l.at - t), l.text);
            }
        }
        opened_total += report.opened.len() as u64;
        rollovers_seen += report.rollings;
        if let Some(e) = &report.open_error {
            failures.push(format!(
                "cycle {cycle}: the child could not open the log after the previous kill: {e}"
            ));
            break;
        }
        if report.first_failure.is_some() {
            failures.push(format!(
                "cycle {cycle}: an append failed without any fault: {:?}",
                report.first_failure
            ));
            break;
        }
        watchdog.case(|| format!("cycle {cycle}: checking"));
        match model.check(dir.path(), generation, &report) {
            Ok(counts) => {
                acked_total += counts.acked_new;
                survivors_total += counts.unacked_survivors;
                if cycle % 10 == 0 || cycle == cycles {
                    println!(
                        "{label}: cycle {cycle}/{cycles}: {} records in {} segments, {} acked so far",
                        counts.records, counts.segments, acked_total
                    );
                }
            }
            Err(e) => {
                failures.push(format!(
                    "cycle {cycle} (killed {when:?}, {delay_us} us, io {io}): {e}"
                ));
                let keep = std::env::temp_dir().join(format!("ringlog-kill9-failure-{seed}"));
                let _ = std::fs::remove_dir_all(&keep);
                let _ = copy_dir(dir.path(), &keep);
                eprintln!("kill9: failing log kept at {}", keep.display());
                break;
            }
        }
    }
    // Finally the writer's own recovery, in this process: it must agree and continue.
    if failures.is_empty() {
        let log = ringlog::Log::open(
            dir.path(),
            reliability::child_options(ringlog::IoBackend::Auto),
        )
        .expect("final writer open");
        assert_eq!(log.next_offset(), model.records.len() as u64);
        log.close().expect("close");
        let log = ringlog::Log::open_read_only(
            dir.path(),
            reliability::child_options(ringlog::IoBackend::Auto),
        )
        .expect("reopen");
        assert!(log.recovery_report().clean_shutdown);
        assert_eq!(log.next_offset(), model.records.len() as u64);
    }
    println!(
        "{label}: {} cycles in {:.1} s: killed {by_mode:?}; {mid_recovery} killed before recovery finished, {opened_total} opens; {acked_total} records acknowledged, 0 lost; {survivors_total} unacknowledged records survived whole; {} records in the log; {rollovers_seen} rollovers announced",
        cycles,
        started.elapsed().as_secs_f64(),
        model.records.len(),
    );
    assert!(
        failures.is_empty(),
        "kill9 failures:\n{}",
        failures.join("\n")
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}
