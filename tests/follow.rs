//! The read side: followers (blocking, with a timeout, and as a `Stream`), seeking by
//! time, caller-given timestamps, and reading backwards.

mod common;

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::payload;
use futures_core::Stream;
use ringlog::{Durability, Error, Follower, Log, Options, Record, Store};

/// Longest any test waits for something that must happen: past it, a hang.
const WATCHDOG: Duration = Duration::from_secs(20);

fn small() -> Options {
    Options::default().segment_bytes(64 << 10)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `body` on a thread and returns what it returns, failing the test if it takes
/// longer than [`WATCHDOG`] (a hang).
fn within_watchdog<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    rx.recv_timeout(WATCHDOG)
        .expect("hung: no result within the watchdog timeout")
}

/// Takes `n` records from `follower` and checks they are `from..from + n`, each with its
/// own payload.
fn expect_records(follower: &mut Follower, from: u64, n: u64, len: usize) {
    for offset in from..from + n {
        let record = follower
            .next()
            .expect("a follower only ends after an error")
            .unwrap();
        assert_eq!(record.offset(), offset);
        assert_eq!(record.payload(), payload(offset, len), "offset {offset}");
    }
}

/// A minimal executor: polls on this thread, parks until woken.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The stream's next item, as a future.
fn next_item(
    follower: &mut Follower,
) -> impl Future<Output = Option<ringlog::Result<Record>>> + '_ {
    std::future::poll_fn(move |cx| Pin::new(&mut *follower).poll_next(cx))
}

#[test]
fn a_follower_is_send_and_static() {
    fn check<T: Send + 'static>() {}
    check::<Follower>();
}

#[test]
fn followers_cross_rollovers_under_every_durability_mode() {
    for durability in [
        Durability::Sync,
        Durability::Interval(Duration::from_millis(2)),
        Durability::None,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small().durability(durability)).unwrap();
        let total = 3_000u64;
        let follower = log.follow(0).unwrap();
        let reader = std::thread::spawn(move || {
            let mut follower = follower;
            expect_records(&mut follower, 0, total, 200);
            follower
        });
        for start in (0..total).step_by(10) {
            let batch: Vec<Vec<u8>> = (start..start + 10).map(|o| payload(o, 200)).collect();
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            log.append_batch(&refs).unwrap();
        }
        if durability != Durability::Sync {
            log.sync().unwrap();
        }
        let deadline = Instant::now() + WATCHDOG;
        while !reader.is_finished() {
            assert!(Instant::now() < deadline, "{durability:?}: follower hung");
            std::thread::sleep(Duration::from_millis(5));
        }
        let follower = reader.join().unwrap();
        assert_eq!(follower.position(), total);
        assert_eq!(follower.lag(), 0);
        assert!(log.segments().unwrap().len() >= 5, "rolled over");
    }
}

#[test]
fn many_followers_see_every_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    let total = 400u64;
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let mut follower = log.follow(0).unwrap();
            std::thread::spawn(move || expect_records(&mut follower, 0, total, 64))
        })
        .collect();
    for offset in 0..total {
        assert_eq!(log.append(&payload(offset, 64)).unwrap(), offset);
    }
    within_watchdog(move || {
        for reader in readers {
            reader.join().unwrap();
        }
    });
}

#[test]
fn followers_start_before_any_record_at_the_end_and_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    let mut before_any = log.follow(0).unwrap();
    assert_eq!(before_any.position(), 0);
    assert_eq!(before_any.lag(), 0);
    for offset in 0..50 {
        log.append(&payload(offset, 32)).unwrap();
    }
    let mut at_end = log.follow(50).unwrap();
    let mut middle = log.follow(20).unwrap();
    assert_eq!(before_any.lag(), 50);
    assert_eq!(middle.lag(), 30);
    assert_eq!(at_end.lag(), 0);
    expect_records(&mut before_any, 0, 50, 32);
    expect_records(&mut middle, 20, 30, 32);
    let log2 = log.clone();
    let producer = std::thread::spawn(move || {
        for offset in 50..60 {
            log2.append(&payload(offset, 32)).unwrap();
        }
    });
    let (before_any, middle, at_end) = within_watchdog(move || {
        expect_records(&mut at_end, 50, 10, 32);
        expect_records(&mut middle, 50, 10, 32);
        expect_records(&mut before_any, 50, 10, 32);
        (before_any, middle, at_end)
    });
    producer.join().unwrap();
    for f in [&before_any, &middle, &at_end] {
        assert_eq!(f.position(), 60);
    }
}

#[test]
fn follow_refuses_offsets_outside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    log.append(b"x").unwrap();
    assert!(log.follow(1).is_ok(), "next_offset() is a valid start");
    match log.follow(2) {
        Err(Error::OffsetOutOfRange {
            offset: 2,
            first: 0,
            next: 1,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_follower_may_start_at_a_record_not_yet_readable() {
    // Under Interval, an append returns once staged: next_offset() is ahead of what
    // readers see until the flush.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        small().durability(Durability::Interval(Duration::from_secs(3600))),
    )
    .unwrap();
    log.append(&payload(0, 16)).unwrap();
    let mut follower = log.follow(1).unwrap();
    log.append(&payload(1, 16)).unwrap();
    assert!(follower.next_timeout(Duration::from_millis(20)).is_none());
    log.sync().unwrap();
    let record = follower
        .next_timeout(WATCHDOG)
        .expect("woken by the flush")
        .unwrap();
    assert_eq!(record.offset(), 1);
}

#[test]
fn next_timeout_at_the_end_gives_up_then_wakes_for_a_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    log.append(&payload(0, 16)).unwrap();
    let mut follower = log.follow(0).unwrap();
    expect_records(&mut follower, 0, 1, 16);
    let start = Instant::now();
    assert!(follower.next_timeout(Duration::from_millis(50)).is_none());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(follower.next_timeout(Duration::ZERO).is_none());
    let log2 = log.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        log2.append(&payload(1, 16)).unwrap();
    });
    let record = follower.next_timeout(WATCHDOG).unwrap().unwrap();
    assert_eq!(record.offset(), 1);
    assert_eq!(record.payload(), payload(1, 16));
    producer.join().unwrap();
}

#[test]
fn a_follower_is_a_stream_woken_by_the_writer() {
    for durability in [Durability::Sync, Durability::None] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small().durability(durability)).unwrap();
        log.append(&payload(0, 40)).unwrap();
        let mut follower = log.follow(0).unwrap();
        let log2 = log.clone();
        let producer = std::thread::spawn(move || {
            for offset in 1..200 {
                log2.append(&payload(offset, 40)).unwrap();
                if offset % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            log2.sync().unwrap();
        });
        let follower = within_watchdog(move || {
            block_on(async {
                for offset in 0..200 {
                    let record = next_item(&mut follower).await.unwrap().unwrap();
                    assert_eq!(record.offset(), offset);
                    assert_eq!(record.payload(), payload(offset, 40));
                }
            });
            follower
        });
        producer.join().unwrap();
        assert_eq!(follower.position(), 200);
        // Closing ends a pending stream with Closed, then nothing.
        let mut follower = follower;
        let closer = {
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                log.close().unwrap();
            })
        };
        let (first, second) = within_watchdog(move || {
            block_on(async {
                let first = next_item(&mut follower).await;
                let second = next_item(&mut follower).await;
                (first, second)
            })
        });
        closer.join().unwrap();
        assert!(matches!(first, Some(Err(Error::Closed))), "{first:?}");
        assert!(second.is_none());
    }
}

#[test]
fn close_ends_a_blocked_follower_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    log.append(&payload(0, 16)).unwrap();
    let mut follower = log.follow(1).unwrap();
    let blocked = std::thread::spawn(move || {
        let item = follower.next();
        (item, follower.next())
    });
    std::thread::sleep(Duration::from_millis(50));
    log.close().unwrap();
    let (item, after) = within_watchdog(move || blocked.join().unwrap());
    assert!(matches!(item, Some(Err(Error::Closed))), "{item:?}");
    assert!(after.is_none(), "nothing after the end");
    // A follower made after close yields what is readable, then Closed.
    let mut late = log.follow(0).unwrap();
    assert_eq!(late.next().unwrap().unwrap().offset(), 0);
    assert!(matches!(late.next(), Some(Err(Error::Closed))));
}

#[test]
fn a_follower_yields_what_close_flushed_before_ending() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        small().durability(Durability::Interval(Duration::from_secs(3600))),
    )
    .unwrap();
    let mut follower = log.follow(0).unwrap();
    for offset in 0..5 {
        log.append(&payload(offset, 16)).unwrap();
    }
    let reader = std::thread::spawn(move || {
        let offsets: Vec<u64> = follower
            .by_ref()
            .map_while(|r| r.ok().map(|r| r.offset()))
            .collect();
        offsets
    });
    std::thread::sleep(Duration::from_millis(20));
    log.close().unwrap();
    let offsets = within_watchdog(move || reader.join().unwrap());
    assert_eq!(offsets, [0, 1, 2, 3, 4]);
}

#[test]
fn a_follower_crosses_a_close_and_reopen_with_a_new_handle() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    for offset in 0..300 {
        log.append(&payload(offset, 500)).unwrap();
    }
    let mut old = log.follow(0).unwrap();
    expect_records(&mut old, 0, 100, 500);
    log.close().unwrap();
    drop(log);
    // The old handle's follower: what was readable, then Closed.
    expect_records(&mut old, 100, 200, 500);
    assert!(matches!(old.next(), Some(Err(Error::Closed))));
    let position = old.position();
    drop(old);
    let log = Log::open(dir.path(), small()).unwrap();
    let mut new = log.follow(position).unwrap();
    let log2 = log.clone();
    let producer = std::thread::spawn(move || {
        for offset in 300..400 {
            log2.append(&payload(offset, 500)).unwrap();
        }
    });
    within_watchdog(move || expect_records(&mut new, 300, 100, 500));
    producer.join().unwrap();
}

#[test]
fn removing_a_topic_ends_its_followers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let topic = store.topic("events").unwrap();
    let other = store.topic("other").unwrap();
    topic.append(&payload(0, 16)).unwrap();
    other.append(&payload(0, 16)).unwrap();
    let mut blocked = topic.follow(1).unwrap();
    let mut behind = topic.follow(0).unwrap();
    let mut unrelated = other.follow(1).unwrap();
    let waiting = std::thread::spawn(move || blocked.next());
    std::thread::sleep(Duration::from_millis(50));
    drop(topic);
    store.remove_topic("events").unwrap();
    let item = within_watchdog(move || waiting.join().unwrap());
    assert!(matches!(item, Some(Err(Error::Closed))), "{item:?}");
    // A removed topic's follower ends at once, however far behind.
    assert!(matches!(behind.next(), Some(Err(Error::Closed))));
    // Other topics' followers go on.
    other.append(&payload(1, 16)).unwrap();
    let record = unrelated.next_timeout(WATCHDOG).unwrap().unwrap();
    assert_eq!(record.offset(), 1);
}

#[test]
fn a_follower_keeps_a_store_topic_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let topic = store.topic("t").unwrap();
    let mut follower = topic.follow(0).unwrap();
    drop(topic);
    let again = store.topic("t").unwrap();
    again.append(&payload(0, 8)).unwrap();
    let record = follower.next_timeout(WATCHDOG).unwrap().unwrap();
    assert_eq!(record.payload(), payload(0, 8));
}

#[test]
fn a_read_only_follower_sees_a_writer_without_being_told() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Log::open(dir.path(), small()).unwrap();
    writer.append(&payload(0, 300)).unwrap();
    let reader = Log::open_read_only(dir.path(), Options::default()).unwrap();
    let mut follower = reader.follow(0).unwrap();
    expect_records(&mut follower, 0, 1, 300);
    assert!(follower.next_timeout(Duration::from_millis(30)).is_none());
    let producer = std::thread::spawn(move || {
        for offset in 1..500 {
            writer.append(&payload(offset, 300)).unwrap();
        }
        writer
    });
    within_watchdog(move || expect_records(&mut follower, 1, 499, 300));
    producer.join().unwrap().close().unwrap();
}

#[test]
fn a_read_only_follower_stream_is_woken_to_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Log::open(dir.path(), small()).unwrap();
    writer.append(&payload(0, 10)).unwrap();
    let reader = Log::open_read_only(dir.path(), Options::default()).unwrap();
    let mut follower = reader.follow(1).unwrap();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        writer.append(&payload(1, 10)).unwrap();
        writer
    });
    let record = within_watchdog(move || block_on(next_item(&mut follower)))
        .unwrap()
        .unwrap();
    assert_eq!(record.offset(), 1);
    producer.join().unwrap().close().unwrap();
}

// ---------------------------------------------------------------------------------------
// Timestamps and seek_time
// ---------------------------------------------------------------------------------------

#[test]
fn seek_time_exact_between_before_the_first_and_after_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.seek_time(0).unwrap(), 0, "empty log: next_offset()");
    let base = now_ms() - 10_000_000;
    // Timestamps base, base+10, ... with repeats: offsets 2k and 2k+1 share one.
    for offset in 0..100u64 {
        log.append_at(base + (offset / 2) * 10, &payload(offset, 40))
            .unwrap();
    }
    assert_eq!(log.seek_time(0).unwrap(), 0, "before the first");
    assert_eq!(log.seek_time(base).unwrap(), 0);
    assert_eq!(
        log.seek_time(base + 10).unwrap(),
        2,
        "exact: first of equals"
    );
    assert_eq!(log.seek_time(base + 15).unwrap(), 4, "between");
    assert_eq!(log.seek_time(base + 490).unwrap(), 98, "the last timestamp");
    assert_eq!(log.seek_time(base + 491).unwrap(), 100, "after the last");
    assert_eq!(log.seek_time(u64::MAX).unwrap(), log.next_offset());
}

#[test]
fn seek_time_across_segments_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small().index_interval_bytes(256);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    let base = now_ms() - 50_000_000;
    let total = 3_000u64;
    for offset in 0..total {
        log.append_at(base + offset * 3, &payload(offset, 120))
            .unwrap();
    }
    let segments = log.segments().unwrap();
    assert!(segments.len() >= 5, "{} segments", segments.len());
    let check = |log: &Log| {
        for offset in (0..total).step_by(7).chain([total - 1]) {
            let ts = base + offset * 3;
            assert_eq!(log.seek_time(ts).unwrap(), offset, "exact {offset}");
            assert_eq!(log.seek_time(ts + 1).unwrap(), offset + 1, "between");
        }
        // Every segment's first record, and the moment just before it.
        for segment in log.segments().unwrap() {
            let ts = base + segment.base_offset * 3;
            assert_eq!(log.seek_time(ts).unwrap(), segment.base_offset);
            assert_eq!(log.seek_time(ts - 1).unwrap(), segment.base_offset);
        }
        assert_eq!(log.seek_time(base - 1).unwrap(), 0);
        assert_eq!(log.seek_time(base + total * 3).unwrap(), total);
    };
    check(&log);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    check(&log);
    let reader = Log::open_read_only(dir.path(), Options::default()).unwrap();
    check(&reader);
    drop((log, reader));
    // A crash that lost every index file: rebuilt from the data, same answers.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let log = Log::open(dir.path(), opts).unwrap();
    check(&log);
}

#[test]
fn seek_time_after_a_trim_answers_from_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small().index_interval_bytes(256)).unwrap();
    let base = now_ms() - 50_000_000;
    for offset in 0..2_000u64 {
        log.append_at(base + offset * 3, &payload(offset, 120))
            .unwrap();
    }
    let first = log.segments().unwrap()[2].base_offset + 5;
    log.trim_before(first).unwrap();
    assert_eq!(log.seek_time(base).unwrap(), first, "before the start");
    assert_eq!(log.seek_time(base + (first - 3) * 3).unwrap(), first);
    assert_eq!(log.seek_time(base + (first + 10) * 3).unwrap(), first + 10);
}

#[test]
fn a_damaged_timestamp_never_gives_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small().index_interval_bytes(256);
    let base = now_ms() - 50_000_000;
    {
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        for offset in 0..1_000u64 {
            log.append_at(base + offset * 3, &payload(offset, 120))
                .unwrap();
        }
        log.close().unwrap();
    }
    // The header of a record an index entry points at now claims a far later time: the
    // header-only search is misled; the checked reads catch it.
    let segment = dir.path().join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut position = 64usize;
    let mut damaged = None;
    while position + 24 <= bytes.len() {
        let len =
            u32::from_le_bytes(bytes[position + 4..position + 8].try_into().unwrap()) & !(1 << 31);
        if len == 0 {
            break;
        }
        let offset = u64::from_le_bytes(bytes[position + 8..position + 16].try_into().unwrap());
        if offset == 200 {
            bytes[position + 16..position + 24].copy_from_slice(&(base + 2_000_000).to_le_bytes());
            damaged = Some(position);
            break;
        }
        position += ((len as usize) + 7) & !7;
    }
    assert!(damaged.is_some(), "record 200 not found");
    std::fs::write(&segment, &bytes).unwrap();
    let log = Log::open(dir.path(), opts).unwrap();
    for offset in [150u64, 199, 201, 250, 900] {
        match log.seek_time(base + offset * 3) {
            Ok(found) => assert_eq!(found, offset, "seek_time for record {offset}"),
            Err(ringlog::Error::Corruption { .. }) => {}
            Err(e) => panic!("{offset}: {e}"),
        }
    }
}

#[test]
fn timestamps_never_decrease_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = now_ms() + 3_600_000;
    {
        let log = Log::open(dir.path(), small()).unwrap();
        log.append(b"now").unwrap();
        log.append_at(ahead, b"an hour ahead").unwrap();
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), small()).unwrap();
    let offset = log.append(b"after reopen").unwrap();
    let record = log.read(offset).unwrap();
    assert!(
        record.timestamp_ms() >= ahead,
        "{} < {ahead}",
        record.timestamp_ms()
    );
    let all: Vec<u64> = log.iter(0).map(|r| r.unwrap().timestamp_ms()).collect();
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "{all:?}");
    // Also after a crash (no clean close).
    log.append_at(ahead + 5, b"later").unwrap();
    log.abandon();
    drop(log);
    let log = Log::open(dir.path(), small()).unwrap();
    let offset = log.append(b"after crash").unwrap();
    assert!(log.read(offset).unwrap().timestamp_ms() >= ahead + 5);
}

#[test]
fn append_at_clamps_to_the_last_timestamp_and_refuses_the_far_future() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    let base = now_ms() - 1_000;
    let a = log.append_at(base, b"a").unwrap();
    let b = log.append_at(base - 500, b"earlier: raised").unwrap();
    let c = log.append(b"wall clock").unwrap();
    assert_eq!(log.read(a).unwrap().timestamp_ms(), base);
    assert_eq!(log.read(b).unwrap().timestamp_ms(), base);
    assert!(log.read(c).unwrap().timestamp_ms() >= base);
    let far = now_ms() + 2 * 24 * 3_600_000;
    match log.append_at(far, b"far") {
        Err(Error::InvalidTimestamp { ts_ms, reason }) => {
            assert_eq!(ts_ms, far);
            assert!(reason.contains("day"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log.next_offset(), 3, "nothing appended");
    // Just under a day ahead is accepted, and pins what follows.
    let near = now_ms() + 23 * 3_600_000;
    let d = log.append_at(near, b"near").unwrap();
    let e = log.append(b"after").unwrap();
    assert_eq!(log.read(d).unwrap().timestamp_ms(), near);
    assert_eq!(log.read(e).unwrap().timestamp_ms(), near);
}

// ---------------------------------------------------------------------------------------
// read_before
// ---------------------------------------------------------------------------------------

#[test]
fn read_before_at_both_ends_and_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    assert!(log.read_before(0, 5).unwrap().is_empty());
    let total = 1_000u64;
    for offset in 0..total {
        log.append(&payload(offset, 300)).unwrap();
    }
    let offsets = |records: Vec<Record>| -> Vec<u64> {
        records
            .iter()
            .map(|r| {
                assert_eq!(r.payload(), payload(r.offset(), 300));
                r.offset()
            })
            .collect()
    };
    assert!(log.read_before(0, 10).unwrap().is_empty(), "start");
    assert_eq!(offsets(log.read_before(3, 10).unwrap()), [0, 1, 2]);
    assert_eq!(
        offsets(log.read_before(total, 3).unwrap()),
        [total - 3, total - 2, total - 1],
        "end"
    );
    assert!(log.read_before(total, 0).unwrap().is_empty());
    let segments = log.segments().unwrap();
    assert!(segments.len() >= 3);
    let boundary = segments[1].base_offset;
    assert_eq!(
        offsets(log.read_before(boundary + 2, 5).unwrap()),
        (boundary - 3..boundary + 2).collect::<Vec<_>>(),
        "across a segment boundary"
    );
    let everything = offsets(log.read_before(total, usize::MAX).unwrap());
    assert_eq!(everything, (0..total).collect::<Vec<_>>());
    match log.read_before(total + 1, 1) {
        Err(Error::OffsetOutOfRange { offset, .. }) => assert_eq!(offset, total + 1),
        other => panic!("{other:?}"),
    }
}

/// The same stream under tokio's current-thread runtime: woken by the writer thread, not
/// by a poll, and `wait_durable_async` beside it.
#[test]
fn a_follower_stream_and_wait_durable_async_under_tokio() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small().durability(Durability::None)).unwrap();
    let mut follower = log.follow(0).unwrap();
    let producer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for offset in 0..100 {
                log.append(&payload(offset, 24)).unwrap();
                if offset % 25 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            log.sync().unwrap();
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log2 = log.clone();
    within_watchdog(move || {
        runtime.block_on(async {
            for offset in 0..100 {
                let record = next_item(&mut follower).await.unwrap().unwrap();
                assert_eq!(record.offset(), offset);
                assert_eq!(record.payload(), payload(offset, 24));
            }
            log2.wait_durable_async(99).await.unwrap();
            assert!(log2.durable_offset() >= 100);
        })
    });
    producer.join().unwrap();
}
