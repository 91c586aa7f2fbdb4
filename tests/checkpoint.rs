//! The active segment's checkpoint (its index file) against the data it describes.
//!
//! Open checks a checkpoint with a bounded walk of frame headers (docs/design.md 4.3):
//! one that disagrees with the data is not used, and the segment is scanned from its
//! start instead, with no error and no record lost. Entries the walk does not reach are
//! checked when a read follows one; a wrong one makes the read rebuild the index from the
//! data, also while the writer appends (4.4). The forged index files here have valid
//! checksums: only their contents are wrong.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reliability::{fast_tempdir, Rng};
use ringlog::{Error, IoBackend, Log, Options};

const SEGMENT_BYTES: u64 = 1 << 20;
const INTERVAL_BYTES: u64 = 256;
/// Largest payload appended: entries are at most two intervals plus a frame apart.
const MAX_PAYLOAD_BYTES: u64 = 300;

fn options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .index_interval_bytes(INTERVAL_BYTES)
        .io(IoBackend::Pwrite)
}

/// A one-segment log, closed cleanly, and what its files hold.
struct Fixture {
    dir: tempfile::TempDir,
    payloads: Vec<Vec<u8>>,
    nonce: u64,
    data_end: u64,
    entries: Vec<(u64, u64)>,
    /// Where each record starts, by offset.
    positions: Vec<u64>,
    /// A batch of three in the middle: its first offset.
    batch_start: u64,
}

fn payload_len(offset: u64) -> usize {
    [8usize, 120, 300, 40, 75][(offset % 5) as usize]
}

impl Fixture {
    /// `records` appended one by one, but for a batch of three in the middle.
    fn new(records: u64) -> Fixture {
        let dir = fast_tempdir();
        let log = Log::open(dir.path(), options()).unwrap();
        let batch_start = records / 2;
        let mut payloads = Vec::new();
        while (payloads.len() as u64) < records {
            let offset = payloads.len() as u64;
            if offset == batch_start {
                let batch: Vec<Vec<u8>> = (offset..offset + 3)
                    .map(|o| common::payload(o, payload_len(o)))
                    .collect();
                let refs: Vec<&[u8]> = batch.iter().map(|p| p.as_slice()).collect();
                assert_eq!(log.append_batch(&refs).unwrap(), offset..offset + 3);
                payloads.extend(batch);
            } else {
                let payload = common::payload(offset, payload_len(offset));
                assert_eq!(log.append(&payload).unwrap(), offset);
                payloads.push(payload);
            }
        }
        log.close().unwrap();
        drop(log);
        let segment = std::fs::read(dir.path().join(seg_name(0))).unwrap();
        let (_, base, nonce, _) = ringlog::fuzzing::decode_segment_header(&segment).unwrap();
        assert_eq!(base, 0);
        let index = std::fs::read(dir.path().join(idx_name(0))).unwrap();
        let (data_end, next_offset, entries) =
            ringlog::fuzzing::decode_index(&index, SEGMENT_BYTES).unwrap();
        assert_eq!(next_offset, records);
        assert_eq!(index[12] & 1, 1, "closed cleanly");
        let mut positions = Vec::new();
        let mut at = 64u64;
        while let Some((offset, _, padded)) =
            ringlog::fuzzing::decode_frame(&segment[at as usize..], nonce)
        {
            if let Some(offset) = offset {
                assert_eq!(offset, positions.len() as u64);
                positions.push(at);
            }
            at += padded;
        }
        assert_eq!(at, data_end);
        assert_eq!(positions.len() as u64, records);
        Fixture {
            dir,
            payloads,
            nonce,
            data_end,
            entries,
            positions,
            batch_start,
        }
    }

    fn records(&self) -> u64 {
        self.payloads.len() as u64
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the checkpoint with a checksum-valid one saying what it is given.
    fn forge(&self, data_end: u64, next_offset: u64, entries: &[(u64, u64)]) {
        let bytes = common::encode_index(0, self.nonce, 0, data_end, next_offset, true, entries);
        std::fs::write(self.path(&idx_name(0)), bytes).unwrap();
    }

    /// Every record reads back byte-identical, by offset and by iteration.
    fn check_reads(&self, log: &Log) {
        let n = self.records();
        assert_eq!(log.first_offset(), 0);
        assert!(log.next_offset() >= n);
        for offset in (0..n).rev() {
            let record = log
                .read(offset)
                .unwrap_or_else(|e| panic!("read {offset}: {e}"));
            assert_eq!(record.offset(), offset);
            assert_eq!(record.payload(), self.payloads[offset as usize], "{offset}");
        }
        for (i, record) in log.iter(0).take(n as usize).enumerate() {
            let record = record.unwrap_or_else(|e| panic!("iter at {i}: {e}"));
            assert_eq!(record.offset(), i as u64);
            assert_eq!(record.payload(), self.payloads[i]);
        }
    }

    /// Opens read-only, then as the writer: neither trusts the checkpoint, both read
    /// everything; the writer appends at the right offset, and its clean close leaves a
    /// checkpoint the next open trusts.
    fn expect_rejected(&self, because: &str) {
        let n = self.records();
        let reader = Log::open_read_only(self.dir.path(), options()).unwrap();
        let report = reader.recovery_report().clone();
        let why = report.checkpoint_rejected.as_deref().unwrap_or_default();
        assert!(
            why.contains(because),
            "rejected because {why:?}: {report:?}"
        );
        assert!(!report.clean_shutdown);
        assert_eq!(report.scanned[0].scan_start_position, 64);
        assert_eq!(reader.next_offset(), n);
        self.check_reads(&reader);
        drop(reader);

        let log = Log::open(self.dir.path(), options()).unwrap();
        let report = log.recovery_report().clone();
        assert!(report.checkpoint_rejected.is_some(), "{report:?}");
        assert_eq!(log.next_offset(), n);
        self.check_reads(&log);
        let extra = common::payload(n, 99);
        assert_eq!(log.append(&extra).unwrap(), n);
        assert_eq!(log.read(n).unwrap().payload(), extra);
        log.close().unwrap();
        drop(log);

        let log = Log::open(self.dir.path(), options()).unwrap();
        let report = log.recovery_report();
        assert!(report.clean_shutdown, "{report:?}");
        assert_eq!(report.checkpoint_rejected, None);
        assert_eq!(log.next_offset(), n + 1);
        self.check_reads(&log);
        assert_eq!(log.read(n).unwrap().payload(), extra);
    }

    /// The checkpoint's entries with positions below `data_end`.
    fn entries_below(&self, data_end: u64) -> Vec<(u64, u64)> {
        self.entries
            .iter()
            .copied()
            .filter(|&(_, position)| position < data_end)
            .collect()
    }

    /// The entries with every one but the first and the last moved `shift` bytes on:
    /// what open checks agrees with the data, the rest does not.
    fn middle_entries_shifted(&self, shift: u64) -> Vec<(u64, u64)> {
        let last = self.entries.len() - 1;
        self.entries
            .iter()
            .enumerate()
            .map(|(k, &(offset, position))| {
                if k == 0 || k == last {
                    (offset, position)
                } else {
                    (offset, position + shift)
                }
            })
            .collect()
    }
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn idx_name(id: u64) -> String {
    format!("{id:020}.idx")
}

#[test]
fn a_checkpoint_that_agrees_with_the_data_is_trusted_without_a_scan() {
    let fx = Fixture::new(300);
    for read_only in [true, false] {
        let log = if read_only {
            Log::open_read_only(fx.dir.path(), options()).unwrap()
        } else {
            Log::open(fx.dir.path(), options()).unwrap()
        };
        let report = log.recovery_report();
        assert!(report.clean_shutdown, "{report:?}");
        assert_eq!(report.checkpoint_rejected, None);
        assert!(report.scanned.is_empty(), "{report:?}");
        assert_eq!(log.next_offset(), 300);
        fx.check_reads(&log);
    }
}

#[test]
fn a_data_end_inside_a_frame_is_not_trusted() {
    let fx = Fixture::new(300);
    let k = 250;
    let data_end = fx.positions[k] + 8;
    fx.forge(data_end, k as u64 + 1, &fx.entries_below(data_end));
    fx.expect_rejected("inside a frame");
}

#[test]
fn a_next_offset_too_high_is_not_trusted() {
    let fx = Fixture::new(300);
    fx.forge(fx.data_end, 305, &fx.entries);
    fx.expect_rejected("the data says offset 300");
}

#[test]
fn a_next_offset_too_low_is_not_trusted() {
    let fx = Fixture::new(300);
    fx.forge(fx.data_end, 299, &fx.entries);
    fx.expect_rejected("the data says offset 300");
}

#[test]
fn a_first_entry_past_the_first_record_is_not_trusted() {
    let fx = Fixture::new(300);
    fx.forge(fx.data_end, 300, &fx.entries[1..]);
    fx.expect_rejected("first index entry names offset");
}

#[test]
fn a_checkpoint_without_entries_is_not_trusted() {
    let fx = Fixture::new(300);
    fx.forge(fx.data_end, 300, &[]);
    fx.expect_rejected("no index entries");
}

#[test]
fn a_data_end_inside_an_atomic_batch_is_not_trusted() {
    let fx = Fixture::new(300);
    let inside = fx.batch_start + 1;
    let data_end = fx.positions[inside as usize];
    fx.forge(data_end, inside, &fx.entries_below(data_end));
    fx.expect_rejected("inside an atomic batch");
}

/// Entries out of order or past the data end never pass the decoder: the file is
/// ignored as a damaged one is, and the segment scanned.
#[test]
fn entries_out_of_order_or_past_the_data_end_are_ignored() {
    let fx = Fixture::new(300);
    let mut swapped = fx.entries.clone();
    swapped.swap(1, 2);
    let mut past = fx.entries.clone();
    past.push((299, fx.data_end + 8));
    for entries in [swapped, past] {
        fx.forge(fx.data_end, 300, &entries);
        let log = Log::open_read_only(fx.dir.path(), options()).unwrap();
        let report = log.recovery_report();
        assert_eq!(report.checkpoint_rejected, None, "ignored, not rejected");
        assert!(!report.clean_shutdown);
        assert_eq!(report.scanned[0].scan_start_position, 64);
        assert_eq!(report.scanned[0].records_scanned, 300);
        fx.check_reads(&log);
    }
}

/// A checkpoint that says bytes past the data were durable cannot be told from durable
/// bytes that were lost (zeroed): open reports it where the data ends, and changes
/// nothing.
#[test]
fn a_data_end_past_the_data_is_reported_as_lost_durable_data() {
    let fx = Fixture::new(300);
    fx.forge(fx.data_end + 4096, 300, &fx.entries);
    let forged = std::fs::read(fx.path(&idx_name(0))).unwrap();
    for read_only in [true, false] {
        let opened = if read_only {
            Log::open_read_only(fx.dir.path(), options())
        } else {
            Log::open(fx.dir.path(), options())
        };
        match opened {
            Err(Error::Corruption {
                segment,
                position,
                reason,
            }) => {
                assert_eq!(segment, fx.path(&seg_name(0)));
                assert_eq!(position, fx.data_end);
                assert!(reason.contains("were durable"), "{reason}");
            }
            other => panic!("expected corruption at {}, got {other:?}", fx.data_end),
        }
    }
    assert_eq!(std::fs::read(fx.path(&idx_name(0))).unwrap(), forged);
}

/// Damage to a frame header that the walk at open crosses is damage below a durable
/// checkpoint: an error at open with its position, never a cut.
#[test]
fn damage_the_walk_at_open_crosses_is_reported() {
    let fx = Fixture::new(300);
    let victim = fx.positions[299];
    assert!(victim > fx.entries.last().unwrap().1);
    let path = fx.path(&seg_name(0));
    let mut segment = std::fs::read(&path).unwrap();
    // The record's offset field.
    segment[victim as usize + 8] ^= 1;
    std::fs::write(&path, &segment).unwrap();
    for read_only in [true, false] {
        let opened = if read_only {
            Log::open_read_only(fx.dir.path(), options())
        } else {
            Log::open(fx.dir.path(), options())
        };
        match opened {
            Err(Error::Corruption {
                segment, position, ..
            }) => {
                assert_eq!(segment, path);
                assert_eq!(position, victim);
            }
            other => panic!("expected corruption at {victim}, got {other:?}"),
        }
    }
}

/// Entries between the first and the last that point at the wrong bytes pass the check
/// at open; a read that follows one rebuilds the index from the data.
#[test]
fn wrong_entries_between_the_first_and_the_last_are_rebuilt_on_read() {
    let fx = Fixture::new(400);
    assert!(fx.entries.len() > 20, "{} entries", fx.entries.len());
    for shift in [8, 40] {
        fx.forge(fx.data_end, 400, &fx.middle_entries_shifted(shift));
        for read_only in [true, false] {
            let log = if read_only {
                Log::open_read_only(fx.dir.path(), options()).unwrap()
            } else {
                Log::open(fx.dir.path(), options()).unwrap()
            };
            let report = log.recovery_report();
            assert!(report.clean_shutdown, "trusted at open: {report:?}");
            assert_eq!(report.checkpoint_rejected, None);
            fx.check_reads(&log);
            let entries = log.segments().unwrap()[0].index_entries;
            assert_eq!(
                entries as usize,
                fx.entries.len(),
                "rebuilt with the same interval"
            );
        }
    }
}

/// A read-only handle that rebuilt its index keeps following the writer.
#[test]
fn a_read_only_handle_rebuilds_and_follows_the_writer() {
    let fx = Fixture::new(400);
    fx.forge(fx.data_end, 400, &fx.middle_entries_shifted(8));
    let reader = Log::open_read_only(fx.dir.path(), options()).unwrap();
    let writer = Log::open(fx.dir.path(), options()).unwrap();
    let more: Vec<Vec<u8>> = (400..600)
        .map(|o| common::payload(o, payload_len(o)))
        .collect();
    for (i, payload) in more.iter().enumerate() {
        assert_eq!(writer.append(payload).unwrap(), 400 + i as u64);
        if i == 100 {
            // Midway: the reader rebuilds while the writer goes on.
            assert_eq!(reader.refresh().unwrap(), 501);
            fx.check_reads(&reader);
        }
    }
    assert_eq!(reader.refresh().unwrap(), 600);
    fx.check_reads(&reader);
    for (i, payload) in more.iter().enumerate() {
        let offset = 400 + i as u64;
        assert_eq!(reader.read(offset).unwrap().payload(), payload.as_slice());
        assert_eq!(writer.read(offset).unwrap().payload(), payload.as_slice());
    }
}

/// The writer adds index entries while a read rebuilds the index: none of them may be
/// lost or wrong. Each round forges the checkpoint, appends from another thread, and
/// has the main thread read through a wrong entry at a random moment meanwhile.
#[test]
fn a_rebuild_while_the_writer_appends_keeps_every_record_reachable() {
    let fx = Fixture::new(400);
    let mut payloads = fx.payloads.clone();
    let mut rng = Rng::new(reliability::seed("rebuild while appending"));
    let path = fx.path(&idx_name(0));
    for round in 0..8 {
        // The checkpoint the last close wrote, its middle entries shifted.
        let bytes = std::fs::read(&path).unwrap();
        let (data_end, next_offset, entries) =
            ringlog::fuzzing::decode_index(&bytes, SEGMENT_BYTES).unwrap();
        assert_eq!(next_offset, payloads.len() as u64);
        let last = entries.len() - 1;
        let shifted: Vec<(u64, u64)> = entries
            .iter()
            .enumerate()
            .map(|(k, &(o, p))| {
                if k == 0 || k == last {
                    (o, p)
                } else {
                    (o, p + 8)
                }
            })
            .collect();
        fx.forge(data_end, next_offset, &shifted);

        let log = Arc::new(Log::open(fx.dir.path(), options()).unwrap());
        assert_eq!(log.recovery_report().checkpoint_rejected, None);
        let before = log.segments().unwrap()[0].clone();
        let start = payloads.len() as u64;
        let count = 300u64;
        let appended: Vec<Vec<u8>> = (start..start + count)
            .map(|o| common::payload(o, payload_len(o)))
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let appender = {
            let log = log.clone();
            let appended = appended.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                for (i, payload) in appended.iter().enumerate() {
                    assert_eq!(log.append(payload).unwrap(), start + i as u64);
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        // Through a wrong entry: rebuilds while the appender runs (or after it).
        let (offset, _) = shifted[1 + rng.below(last as u64 - 1) as usize];
        assert_eq!(
            log.read(offset + 1).unwrap().payload(),
            payloads[offset as usize + 1],
            "round {round}"
        );
        while !done.load(Ordering::SeqCst) {
            let offset = rng.below(log.durable_offset());
            let expected = if offset < start {
                &payloads[offset as usize]
            } else {
                &appended[(offset - start) as usize]
            };
            assert_eq!(log.read(offset).unwrap().payload(), expected.as_slice());
        }
        appender.join().unwrap();
        payloads.extend(appended);
        for (offset, payload) in payloads.iter().enumerate() {
            let record = log.read(offset as u64).unwrap();
            assert_eq!(record.payload(), payload.as_slice(), "round {round}");
        }
        // The appended bytes have entries at most two intervals and a frame apart.
        let after = log.segments().unwrap()[0].clone();
        assert_eq!(after.segment_id, 0, "still one segment");
        let new_bytes = after.used_bytes - before.used_bytes;
        let gap_max = 2 * INTERVAL_BYTES + 24 + MAX_PAYLOAD_BYTES + 32;
        assert!(
            after.index_entries >= before.index_entries + new_bytes / gap_max,
            "round {round}: {} entries before, {} after, for {new_bytes} new bytes",
            before.index_entries,
            after.index_entries
        );
        log.close().unwrap();
    }
}

/// A sealed segment's index file gets the same check when it is loaded: one whose data
/// end disagrees with the data is not used (it would misstate the segment's size), and
/// the index is rebuilt from the data.
#[test]
fn a_sealed_index_that_disagrees_with_the_data_is_rebuilt() {
    let dir = fast_tempdir();
    let small = options().segment_bytes(64 << 10);
    let log = Log::open(dir.path(), small.clone()).unwrap();
    for offset in 0..600 {
        log.append(&common::payload(offset, 300)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let log = Log::open_read_only(dir.path(), small.clone()).unwrap();
    let truth = log.segments().unwrap()[0].clone();
    assert!(truth.sealed);
    drop(log);

    let idx = dir.path().join(idx_name(0));
    let segment = std::fs::read(dir.path().join(seg_name(0))).unwrap();
    let (_, base, nonce, _) = ringlog::fuzzing::decode_segment_header(&segment).unwrap();
    let (data_end, next_offset, entries) =
        ringlog::fuzzing::decode_index(&std::fs::read(&idx).unwrap(), 64 << 10).unwrap();
    assert_eq!(
        (data_end, next_offset),
        (truth.used_bytes, truth.end_offset)
    );
    // The right next offset (the next segment's base), a data end one record short.
    let last = entries.last().unwrap().1;
    let short: Vec<(u64, u64)> = entries.iter().copied().filter(|e| e.1 < last).collect();
    let forged = common::encode_index(0, nonce, base, last, next_offset, false, &short);
    std::fs::write(&idx, forged).unwrap();

    let log = Log::open_read_only(dir.path(), small).unwrap();
    let info = log.segments().unwrap()[0].clone();
    assert_eq!(info.used_bytes, truth.used_bytes);
    assert_eq!(info.index_entries, truth.index_entries);
    for offset in 0..600 {
        let record = log.read(offset).unwrap();
        assert_eq!(record.payload(), common::payload(offset, 300).as_slice());
    }
}

/// Damage that makes a sealed segment's index file fail the check at load (here, a
/// record header after its last entry) is the data's fault: the file's entries are still
/// used, and only the damaged record fails to read, with its position.
#[test]
fn damage_in_a_sealed_segment_does_not_hide_its_other_records() {
    let dir = fast_tempdir();
    let small = options().segment_bytes(64 << 10);
    let log = Log::open(dir.path(), small.clone()).unwrap();
    for offset in 0..600 {
        log.append(&common::payload(offset, 300)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let path = dir.path().join(seg_name(0));
    let mut segment = std::fs::read(&path).unwrap();
    let (_, _, nonce, _) = ringlog::fuzzing::decode_segment_header(&segment).unwrap();
    let mut records = Vec::new();
    let mut at = 64u64;
    while let Some((offset, _, padded)) =
        ringlog::fuzzing::decode_frame(&segment[at as usize..], nonce)
    {
        if let Some(offset) = offset {
            records.push((offset, at));
        }
        at += padded;
    }
    let (victim, position) = *records.last().unwrap();
    // The record's offset field.
    segment[position as usize + 8] ^= 1;
    std::fs::write(&path, &segment).unwrap();

    let log = Log::open_read_only(dir.path(), small).unwrap();
    for offset in 0..600 {
        match log.read(offset) {
            Ok(record) => {
                assert_ne!(offset, victim, "the damaged record read back");
                assert_eq!(record.payload(), common::payload(offset, 300).as_slice());
            }
            Err(Error::Corruption {
                segment,
                position: at,
                ..
            }) => {
                assert_eq!(offset, victim, "record {offset} is intact");
                assert_eq!(segment, path);
                assert_eq!(at, position);
            }
            Err(e) => panic!("read {offset}: {e}"),
        }
    }
}
