//! Options, durability modes, tickets and the smaller promises of the API.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{backends, payload, small};
use ringlog::{Durability, Error, Log, Options};

#[test]
fn segment_sizes_are_validated_and_files_are_exactly_that_size() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        0u64,
        4096,
        (64 << 10) - 4096,
        (64 << 10) + 1,
        (64 << 10) + 100,
        2 << 30,
    ] {
        match Log::open(dir.path(), Options::default().segment_bytes(bad)) {
            Err(Error::InvalidOptions(msg)) => assert!(msg.contains("segment_bytes"), "{msg}"),
            other => panic!("segment_bytes {bad}: {other:?}"),
        }
    }
    for good in [64 << 10, (64 << 10) + 4096, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options::default().segment_bytes(good)).unwrap();
        log.append(b"x").unwrap();
        log.close().unwrap();
        for seg in common::segment_files(dir.path()) {
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), good, "{seg:?}");
        }
    }
}

#[test]
fn oversized_records_and_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        small(ringlog::IoBackend::Pwrite).max_record_bytes(1000),
    )
    .unwrap();
    match log.append(&[0u8; 1001]) {
        Err(Error::RecordTooLarge {
            record_bytes,
            max_record_bytes,
        }) => {
            assert_eq!((record_bytes, max_record_bytes), (1001, 1000));
        }
        other => panic!("{other:?}"),
    }
    let big = vec![0u8; 1000];
    let batch: Vec<&[u8]> = (0..100).map(|_| big.as_slice()).collect();
    assert!(matches!(
        log.append_batch(&batch),
        Err(Error::RecordTooLarge { .. })
    ));
    assert_eq!(
        log.append(&big).unwrap(),
        0,
        "a refused append takes no offset"
    );
    assert!(Log::open(
        tempfile::tempdir().unwrap().path(),
        small(ringlog::IoBackend::Pwrite).max_record_bytes(1 << 20)
    )
    .is_err());
}

#[test]
fn empty_batch_and_closed_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    assert_eq!(log.append_batch(&[]).unwrap(), 0..0);
    log.append(b"a").unwrap();
    log.close().unwrap();
    log.close().unwrap();
    assert!(matches!(log.append(b"b"), Err(Error::Closed)));
    assert!(matches!(log.sync(), Err(Error::Closed)));
    assert_eq!(
        log.read(0).unwrap().payload(),
        b"a",
        "reads still work after close"
    );
}

#[test]
fn none_durability_needs_sync_and_readers_see_written_records() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small(io).durability(Durability::None)).unwrap();
        // 20 small records: less than the unflushed bytes that start a background flush
        // (half a write-bound step: 4 KiB with these 64 KiB segments).
        for i in 0..20 {
            log.append(&payload(i, 100)).unwrap();
        }
        wait_for(|| log.iter(0).count() == 20);
        assert_eq!(log.durable_offset(), 0);
        log.sync().unwrap();
        assert_eq!(log.durable_offset(), 20);
        // Past it, the log flushes in the background without a sync().
        for i in 20..200 {
            log.append(&payload(i, 100)).unwrap();
        }
        wait_for(|| log.durable_offset() > 20);
    }
}

#[test]
fn interval_durability_flushes_on_its_own() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let opts = small(io).durability(Durability::Interval(Duration::from_millis(5)));
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        for i in 0..20 {
            log.append(&payload(i, 100)).unwrap();
        }
        wait_for(|| log.durable_offset() == 20);
        assert_eq!(log.read(19).unwrap().payload(), payload(19, 100).as_slice());
        drop(log);
        // Written-but-not-durable records are visible only when asked for.
        let log = Log::open(dir.path(), opts.clone().read_unflushed(true)).unwrap();
        assert_eq!(log.next_offset(), 20);
    }
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: the ticket needs no runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(100)),
        }
    }
}

#[test]
fn tickets_resolve_by_wait_and_by_await() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small(io)).unwrap();
        let tickets: Vec<_> = (0..32)
            .map(|i| log.submit(&payload(i, 200)).unwrap())
            .collect();
        for (i, ticket) in tickets.into_iter().enumerate() {
            let offset = if i % 2 == 0 {
                ticket.wait().unwrap()
            } else {
                block_on(ticket).unwrap()
            };
            assert_eq!(offset, i as u64);
            assert!(log.durable_offset() > offset);
        }
        let stats = log.stats();
        assert_eq!(stats.records_count, 32);
        assert!(
            stats.fsyncs_count >= 1 && stats.fsyncs_count <= 32,
            "{stats:?}"
        );
    }
}

#[test]
fn log_is_send_and_sync_and_records_outlive_the_log() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_sync::<Log>();
    assert_send_static::<ringlog::Record>();
    let dir = tempfile::tempdir().unwrap();
    let record = {
        let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
        log.append(b"kept").unwrap();
        log.read(0).unwrap()
    };
    let handle = std::thread::spawn(move || record.payload().to_vec());
    assert_eq!(handle.join().unwrap(), b"kept");
}

#[test]
fn an_existing_log_keeps_its_segment_size_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    log.append(b"first").unwrap();
    log.close().unwrap();
    // Default options: new segments keep the log's 64 KiB.
    let log = Log::open(
        dir.path(),
        Options::default().io(ringlog::IoBackend::Pwrite),
    )
    .unwrap();
    let record = vec![7u8; 5000];
    while log.stats().segments_count < 3 {
        log.append(&record).unwrap();
    }
    log.close().unwrap();
    for seg in common::segment_files(dir.path()) {
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), 64 << 10, "{seg:?}");
    }
    assert!(matches!(
        Log::open_read_only(tempfile::tempdir().unwrap().path(), Options::default()),
        Err(Error::NotALog { .. })
    ));
    assert!(matches!(
        ringlog::verify(tempfile::tempdir().unwrap().path()),
        Err(Error::NotALog { .. })
    ));
    assert_eq!(ringlog::FORMAT_VERSION, 3);
}

#[test]
fn close_right_after_a_checkpoint_succeeds_and_is_clean() {
    // The housekeeper checkpoints the active segment every few MiB; a close racing with
    // it once failed renaming a shared temporary file.
    let dir = tempfile::tempdir().unwrap();
    let record = vec![3u8; 64 << 10];
    let mut next = 0;
    for round in 0..8 {
        let log = Log::open(dir.path(), Options::default().durability(Durability::Sync)).unwrap();
        assert_eq!(log.next_offset(), next, "round {round}");
        if round > 0 {
            assert!(log.recovery_report().clean_shutdown, "round {round}");
        }
        for _ in 0..70 {
            log.append(&record).unwrap();
        }
        next += 70;
        log.close().unwrap();
    }
}

/// Bytes one record of `payload_bytes` takes in a segment: frame header and padding.
fn frame_bytes(payload_bytes: u64) -> u64 {
    24 + payload_bytes.div_ceil(8) * 8
}

#[test]
fn segments_gives_records_and_used_bytes_of_the_active_segment_from_one_moment() {
    for io in backends() {
        for read_unflushed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            // Written at once, flushed only after a minute: written and durable differ.
            let opts = small(io)
                .durability(Durability::Interval(Duration::from_secs(60)))
                .read_unflushed(read_unflushed);
            let log = Log::open(dir.path(), opts).unwrap();
            for i in 0..10 {
                log.append(&payload(i, 100)).unwrap();
            }
            wait_for(|| log.stats().bytes_written > 0);
            let active = log.segments().unwrap().pop().unwrap();
            assert!(!active.sealed);
            let records_bytes = active.records_count * frame_bytes(100);
            if active.records_count == 0 {
                assert_eq!(active.used_bytes, 64, "{read_unflushed}: {active:?}");
            } else {
                // Header, the records, and the commit marker of each write.
                assert!(
                    active.used_bytes >= 64 + records_bytes + 32
                        && active.used_bytes <= 64 + records_bytes + 32 * active.records_count,
                    "{read_unflushed}: {active:?}"
                );
            }
            assert_eq!(
                active.end_offset,
                active.base_offset + active.records_count,
                "{active:?}"
            );
            if read_unflushed {
                wait_for(|| log.segments().unwrap()[0].records_count == 10);
            } else {
                assert_eq!(active.records_count, 0, "nothing is durable yet");
            }
            log.close().unwrap();
        }
    }
}

#[test]
fn reads_work_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    for i in 0..2000 {
        log.append(&payload(i, 100)).unwrap();
    }
    log.close().unwrap();
    assert!(log.segments().unwrap().len() > 1, "rolled over");
    assert_eq!(
        log.read(1500).unwrap().payload(),
        payload(1500, 100).as_slice()
    );
    let all: Vec<u64> = log.iter(0).map(|r| r.unwrap().offset()).collect();
    assert_eq!(all, (0..2000).collect::<Vec<u64>>());
    let last = log.tail(3).unwrap();
    assert_eq!(last.len(), 3);
    assert_eq!(last[2].payload(), payload(1999, 100).as_slice());
}

#[test]
fn records_of_every_size_around_the_inline_limit_read_back_and_outlive_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    let limit = ringlog::Record::INLINE_PAYLOAD_BYTES;
    // Sizes on both sides of the limit, and tiny ones, cycled so that records of each
    // size land at many positions, segment ends included.
    let sizes: Vec<usize> = [0, 1, 7, 8, 9, 200, 1000]
        .into_iter()
        .chain(limit - 9..=limit + 9)
        .collect();
    let len = |offset: u64| sizes[(offset as usize * 7) % sizes.len()];
    let bytes = |offset: u64| {
        let mut p = payload(offset, len(offset));
        p.truncate(len(offset));
        p
    };
    let count = 3000u64;
    for offset in 0..count {
        assert_eq!(log.append(&bytes(offset)).unwrap(), offset);
    }
    assert!(
        log.segments().unwrap().len() > 3,
        "rolled over several times"
    );
    let scanned: Vec<ringlog::Record> = log.iter(0).map(|r| r.unwrap()).collect();
    assert_eq!(scanned.len() as u64, count);
    for (offset, record) in (0..count).zip(&scanned) {
        assert_eq!(record.offset(), offset);
        assert_eq!(
            record.payload(),
            bytes(offset).as_slice(),
            "offset {offset}"
        );
    }
    let read: Vec<ringlog::Record> = (0..count).rev().map(|o| log.read(o).unwrap()).collect();
    log.close().unwrap();
    drop(log);
    // Kept records, and clones of them, stay valid once the log is gone.
    for (record, offset) in read.iter().zip((0..count).rev()) {
        assert_eq!(
            record.clone().payload(),
            bytes(offset).as_slice(),
            "offset {offset}"
        );
    }
    assert_eq!(scanned[2999].payload(), bytes(2999).as_slice());
}

#[test]
fn scan_visits_what_iter_yields_and_stops_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    let count = 2000u64;
    for offset in 0..count {
        log.append(&payload(offset, 20 + (offset as usize * 13) % 300))
            .unwrap();
    }
    assert!(
        log.segments().unwrap().len() > 3,
        "rolled over several times"
    );
    let mut seen = Vec::new();
    let end = log
        .scan(5, |record| {
            assert_eq!(
                record.payload(),
                payload(record.offset(), 20 + (record.offset() as usize * 13) % 300).as_slice()
            );
            seen.push((record.offset(), record.timestamp_ms()));
            true
        })
        .unwrap();
    assert_eq!(end, count);
    let iterated: Vec<(u64, u64)> = log
        .iter(5)
        .map(|r| r.map(|r| (r.offset(), r.timestamp_ms())).unwrap())
        .collect();
    assert_eq!(seen, iterated);
    // Stopped by the visitor: the offset after the last record visited.
    let mut visited = 0;
    let end = log
        .scan(0, |record| {
            visited += 1;
            record.offset() < 1234
        })
        .unwrap();
    assert_eq!((visited, end), (1235, 1235));
    assert!(matches!(
        log.scan(count + 1, |_| true),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.scan(count, |_| panic!("nothing to visit")).unwrap(),
        count
    );
}

#[test]
fn scan_reports_damage_where_iter_does_after_visiting_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let count = 1500u64;
    {
        let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
        for offset in 0..count {
            log.append(&payload(offset, 100)).unwrap();
        }
        log.close().unwrap();
    }
    // A flipped bit in the middle of the second segment's data.
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let damaged = &segments[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    bytes[20_000] ^= 0x10;
    std::fs::write(damaged, &bytes).unwrap();

    let log = Log::open_read_only(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    let mut iterated = Vec::new();
    let iter_error = log
        .iter(0)
        .find_map(|r| match r {
            Ok(record) => {
                iterated.push(record.offset());
                None
            }
            Err(e) => Some(e),
        })
        .expect("iter reports the damage");
    let mut scanned = Vec::new();
    let scan_error = log
        .scan(0, |record| {
            scanned.push(record.offset());
            true
        })
        .expect_err("scan reports the damage");
    assert!(
        matches!(scan_error, Error::Corruption { .. }),
        "{scan_error}"
    );
    assert_eq!(scan_error.to_string(), iter_error.to_string());
    assert!(scan_error
        .to_string()
        .contains(&damaged.display().to_string()));
    assert_eq!(scanned, iterated);
    assert!(!scanned.is_empty() && (scanned.len() as u64) < count);
}

/// A growing log's first record too large for its 64 KiB first segment goes to a larger
/// one, leaving the first empty with the same base offset: that chain opens again (it was
/// refused as "base offset 0 does not follow segment 0's base offset 0"), for a log and
/// for a store's topic.
#[test]
fn a_first_record_larger_than_the_first_growing_segment_reopens() {
    let big = vec![9u8; 200 << 10];
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Options::default()).unwrap();
        assert_eq!(log.append(&big).unwrap(), 0);
        assert_eq!(log.append(b"after").unwrap(), 1);
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.next_offset(), 2);
    assert_eq!(log.read(0).unwrap().payload(), big.as_slice());
    assert_eq!(log.read(1).unwrap().payload(), b"after");
    drop(log);
    assert!(ringlog::verify(dir.path()).unwrap().is_clean());

    let root = tempfile::tempdir().unwrap();
    {
        let store = ringlog::Store::open(root.path(), Options::default()).unwrap();
        let topic = store.topic("big").unwrap();
        assert_eq!(topic.append(&big).unwrap(), 0);
        store.close().unwrap();
    }
    let store = ringlog::Store::open(root.path(), Options::default()).unwrap();
    let topic = store.topic("big").unwrap();
    assert_eq!(topic.next_offset(), 1);
    assert_eq!(topic.read(0).unwrap().payload(), big.as_slice());
}
