//! Races between a truncation and the housekeeper (found while testing backups beside
//! truncations; both fixed, these are their regression tests):
//!
//! - Under `Durability::None` (and `Interval`) the housekeeper flushes the active segment
//!   in the background. It checked that the segment was still active *before* it took
//!   the flusher lock, which `truncate_from` holds while it moves the watermarks back to
//!   the cut: a flush that had passed the check published its old offset, past the cut,
//!   as durable (in a debug build the housekeeper panicked, "durable passed written";
//!   in a release build records appended at the cut counted as durable before any flush
//!   covered them). It now looks again once it holds the flusher.
//! - A cut takes the spare and only later moves staging to it; a spare preparation the
//!   cut asked for could run in between, prepare the same id again and rename the new
//!   file over the segment being activated (every record past it unreachable at reopen).
//!   No spare is prepared now while a cut holds one (`Staging::spare_taken_by_cut`).
//!
//! `RINGLOG_CUT_RACE_ROUNDS` (default 600) sets the rounds of each test; the bugs showed
//! within 3,000 and 2,426 rounds (debug builds).

use std::time::Duration;

use ringlog::{Durability, Log, Options};

fn rounds() -> u64 {
    std::env::var("RINGLOG_CUT_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

#[test]
fn a_background_flush_never_publishes_past_a_truncation() {
    for mode in [
        Durability::None,
        Durability::Interval(Duration::from_millis(1)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(
            dir.path(),
            Options::default().segment_bytes(64 << 10).durability(mode),
        )
        .unwrap();
        for round in 0..rounds() {
            // About 8 KiB: past the background-flush step of a 64 KiB segment (4 KiB).
            for _ in 0..16 {
                log.append(&[round as u8; 500])
                    .unwrap_or_else(|e| panic!("{mode:?} round {round}: {e}"));
            }
            let next = log.next_offset();
            log.truncate_from(next - 8)
                .unwrap_or_else(|e| panic!("{mode:?} round {round}: {e}"));
            assert!(
                log.durable_offset() <= log.next_offset(),
                "{mode:?} round {round}: durable {} past next {}",
                log.durable_offset(),
                log.next_offset()
            );
        }
    }
}

/// A cut's spare is never replaced by another preparation of the same id: every record
/// kept reads back after a close and reopen.
#[test]
fn a_spare_prepared_during_a_cut_never_replaces_the_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_bytes(64 << 10)
        .durability(Durability::Sync);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for round in 0..rounds() {
        for i in 0..16u64 {
            let mut payload = vec![0u8; 500];
            payload[..8].copy_from_slice(&(round * 16 + i).to_le_bytes());
            log.append(&payload)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            kept.push(payload);
        }
        let next = log.next_offset();
        log.truncate_from(next - 8)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        kept.truncate(kept.len() - 8);
    }
    log.close().unwrap();
    let reopened = Log::open(dir.path(), opts).unwrap();
    assert_eq!(reopened.next_offset(), kept.len() as u64, "records lost");
    for (offset, payload) in kept.iter().enumerate() {
        assert_eq!(
            reopened.read(offset as u64).unwrap().payload(),
            payload.as_slice(),
            "at {offset}"
        );
    }
}
