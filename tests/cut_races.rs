//! Races between a truncation and the housekeeper's background flush (found while
//! testing backups beside truncations; reported, not fixed here: the fix belongs in
//! `housekeeping.rs` / `trim.rs`, which another change owns).
//!
//! Under `Durability::None` (and `Interval`) the housekeeper flushes the active segment
//! in the background (`Shared::flush_in_background`). It checks that the segment is still
//! active *before* it takes the flusher lock; `truncate_from` takes that lock while it
//! moves the watermarks back to the cut, seals the old active segment, but leaves its
//! background-flush descriptor open. A flush that passed the check and waited for the
//! lock then publishes its old offset, past the cut, as durable: in a debug build the
//! housekeeper panics ("durable passed written") and the log is poisoned; in a release
//! build the durable watermark passes the written one, so records appended at the cut
//! offsets count as durable before any flush covers them (a G1 violation). The first
//! test shows it in a debug build (within a second); in a release build its check rarely
//! lands in the moment the watermark is wrong.

use std::time::Duration;

use ringlog::{Durability, Log, Options};

#[test]
#[ignore = "bug in truncate_from vs. the background flush: see the module docs"]
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
        for round in 0..3_000u64 {
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

/// A cut (`truncate_from`, or `trim_before` past the end) takes the spare in
/// `spare_for_cut` and only later, after activating it, moves staging to it
/// (`restart_at`). If the spare was not ready when the cut began, `spare_for_cut` asked
/// the housekeeper for one more preparation; that second `prepare_spare` can run in the
/// window where `st.spare` is empty and `st.segment` is still the old segment, so it
/// prepares the same id again and `segment::prepare` renames the new file over the
/// segment being activated. If it also finishes inside the window, the stale spare is
/// kept, and the next cut takes a spare whose id is the active segment's
/// (`debug_assert_eq!(spare.header.segment_id, c.segment.id() + 1)` in `trim.rs`). In
/// a release build the records appended after the cut went to an inode that no longer
/// has a name, and the directory holds an unactivated spare in its place: in a release
/// build (`cargo test --release --test cut_races -- --ignored`, 56 s) the reopen fails
/// with "00000000000000000355.seg ... in the middle of the log", so every record is out
/// of reach. In a debug build the `debug_assert` fires first (after 2,426 rounds, 110 s).
/// Hence ignored.
#[test]
#[ignore = "bug in the cut-over vs. spare preparation: see the doc comment"]
fn a_spare_prepared_during_a_cut_never_replaces_the_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_bytes(64 << 10)
        .durability(Durability::Sync);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for round in 0..4_000u64 {
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
