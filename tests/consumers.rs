//! Named consumers (durable positions) and waiting for durability.

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use ringlog::{Consumer, Durability, Error, FaultPlan, Log, Options, Store};

/// Byte layout constants of a position file (docs/design.md, 2.5).
const SLOT_BYTES: usize = 256;
const SLOT_STRIDE_BYTES: usize = 4096;
const FILE_BYTES: usize = 2 * SLOT_STRIDE_BYTES;

fn opts() -> Options {
    Options::default().segment_bytes(1 << 20)
}

fn with_records(dir: &Path, records_count: usize) -> Log {
    let log = Log::open(dir, opts()).unwrap();
    let payloads: Vec<Vec<u8>> = (0..records_count).map(|i| vec![i as u8; 16]).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    log.append_batch(&refs).unwrap();
    log
}

fn position_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("consumers").join(name)
}

/// What a position file's bytes say, read through a scratch log (that never opened a
/// handle of `name`, so it reads the file): `Err` for a file with no valid slot.
fn decode(scratch: &Log, name: &str, bytes: &[u8]) -> ringlog::Result<Option<u64>> {
    // In place, not by truncating and rewriting: ext4 flushes a file replaced that way
    // at close, which made this test wait on the disk 65 536 times.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(position_file(scratch.dir(), name))
        .unwrap();
    file.write_all_at(bytes, 0).unwrap();
    if file.metadata().unwrap().len() != bytes.len() as u64 {
        file.set_len(bytes.len() as u64).unwrap();
    }
    let all = scratch.consumers()?;
    let found: Vec<_> = all.into_iter().filter(|(n, _)| n == name).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    Ok(found[0].1)
}

/// A scratch log whose `consumers/` holds a file named `name`.
fn scratch(dir: &Path, name: &str) -> Log {
    let log = Log::open(dir, opts()).unwrap();
    std::fs::create_dir_all(dir.join("consumers")).unwrap();
    std::fs::write(position_file(dir, name), [0u8; FILE_BYTES]).unwrap();
    log
}

// ---------------------------------------------------------------------------------------
// Positions
// ---------------------------------------------------------------------------------------

#[test]
fn positions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_records(dir.path(), 10);
    let indexer = log.consumer("indexer").unwrap();
    let mailer = log.consumer("mailer").unwrap();
    let idle = log.consumer("idle").unwrap();
    assert_eq!(indexer.name(), "indexer");
    assert_eq!(indexer.position(), None);
    indexer.commit(3).unwrap();
    indexer.commit(7).unwrap();
    mailer.commit(10).unwrap();
    assert_eq!(indexer.position(), Some(7));
    assert_eq!(mailer.position(), Some(10));
    assert_eq!(idle.position(), None);
    log.close().unwrap();
    drop((indexer, mailer, idle, log));

    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(
        log.next_offset(),
        10,
        "the consumers directory is not part of the log"
    );
    assert_eq!(
        log.consumers().unwrap(),
        vec![
            ("idle".to_string(), None),
            ("indexer".to_string(), Some(7)),
            ("mailer".to_string(), Some(10)),
        ]
    );
    let indexer = log.consumer("indexer").unwrap();
    assert_eq!(indexer.position(), Some(7));
    // Backwards is allowed: process again.
    indexer.commit(2).unwrap();
    drop(indexer);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.consumer("indexer").unwrap().position(), Some(2));
    // Nothing in the consumers directory is a problem for verify.
    log.close().unwrap();
    drop(log);
    let report = ringlog::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.next_offset, 10);
    let repair = ringlog::repair(dir.path(), false).unwrap();
    assert!(repair.truncated.is_empty(), "{repair:?}");
    assert!(repair.removed.is_empty(), "{repair:?}");
    assert!(position_file(dir.path(), "indexer").exists());
}

#[test]
fn handles_of_one_name_share_their_state() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<Consumer>();

    let dir = tempfile::tempdir().unwrap();
    let log = with_records(dir.path(), 100);
    let a = log.consumer("x").unwrap();
    let b = log.clone().consumer("x").unwrap();
    a.commit(5).unwrap();
    assert_eq!(b.position(), Some(5));
    b.commit(6).unwrap();
    assert_eq!(a.position(), Some(6));
    assert_eq!(a.clone().position(), Some(6));

    // Commits from many threads are serialized; the last one wins, in memory and on disk.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let c = log.consumer("x").unwrap();
            thread::spawn(move || {
                for i in 0..20u64 {
                    c.commit(t * 20 + i).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let last = a.position().unwrap();
    assert!(
        last % 20 == 19,
        "the last commit of some thread, got {last}"
    );
    drop((a, b));
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.consumer("x").unwrap().position(), Some(last));
}

#[test]
fn removal() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_records(dir.path(), 10);
    let old = log.consumer("gone").unwrap();
    old.commit(4).unwrap();
    log.consumer("kept").unwrap().commit(1).unwrap();
    log.remove_consumer("gone").unwrap();
    assert!(!position_file(dir.path(), "gone").exists());
    assert_eq!(
        log.consumers().unwrap(),
        vec![("kept".to_string(), Some(1))]
    );
    assert!(matches!(
        old.commit(5),
        Err(Error::UnknownConsumer { ref name, .. }) if name == "gone"
    ));
    assert!(matches!(
        log.remove_consumer("gone"),
        Err(Error::UnknownConsumer { .. })
    ));
    // Created afresh, with no position.
    let new = log.consumer("gone").unwrap();
    assert_eq!(new.position(), None);
    new.commit(2).unwrap();
    assert_eq!(new.position(), Some(2));
    log.close().unwrap();
    drop((old, new, log));
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(
        log.consumers().unwrap(),
        vec![("gone".to_string(), Some(2)), ("kept".to_string(), Some(1))]
    );
}

#[test]
fn invalid_names_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_records(dir.path(), 1);
    for name in [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "a b",
        "é",
        "a+creating",
        &"x".repeat(201),
    ] {
        assert!(
            matches!(log.consumer(name), Err(Error::InvalidTopic { .. })),
            "{name:?}"
        );
        assert!(
            matches!(log.remove_consumer(name), Err(Error::InvalidTopic { .. })),
            "{name:?}"
        );
    }
    assert!(!dir.path().join("consumers").exists());
    let long = "n".repeat(200);
    log.consumer(&long).unwrap().commit(1).unwrap();
    assert_eq!(log.consumers().unwrap(), vec![(long, Some(1))]);
}

#[test]
fn commit_beyond_next_offset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_records(dir.path(), 3);
    let c = log.consumer("c").unwrap();
    c.commit(3).unwrap();
    match c.commit(4) {
        Err(Error::OffsetOutOfRange {
            offset: 4,
            first: 0,
            next: 3,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(c.position(), Some(3));
    log.append(b"more").unwrap();
    c.commit(4).unwrap();
    assert_eq!(c.position(), Some(4));
    log.close().unwrap();
    assert!(matches!(c.commit(4), Err(Error::Closed)));
    assert!(matches!(log.consumer("d"), Err(Error::Closed)));
}

#[test]
fn read_only_logs_read_positions_and_follow_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = with_records(dir.path(), 10);
    let ro = Log::open_read_only(dir.path(), opts()).unwrap();
    // Not created yet: a read-only handle creates nothing.
    let seen = ro.consumer("c").unwrap();
    assert_eq!(seen.position(), None);
    assert_eq!(ro.consumers().unwrap(), vec![]);
    assert!(!dir.path().join("consumers").exists());

    let c = writer.consumer("c").unwrap();
    c.commit(4).unwrap();
    assert_eq!(seen.position(), Some(4));
    c.commit(9).unwrap();
    assert_eq!(seen.position(), Some(9));
    assert_eq!(ro.consumers().unwrap(), vec![("c".to_string(), Some(9))]);
    assert!(matches!(seen.commit(1), Err(Error::ReadOnly)));
    assert!(matches!(ro.remove_consumer("c"), Err(Error::ReadOnly)));
    assert_eq!(c.position(), Some(9));
}

#[test]
fn store_topics_have_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let orders = store.topic("orders").unwrap();
    let jobs = store.topic("jobs").unwrap();
    orders.append_batch(&[b"a".as_slice(), b"b"]).unwrap();
    jobs.append(b"j").unwrap();
    orders.consumer("billing").unwrap().commit(2).unwrap();
    jobs.consumer("billing").unwrap().commit(1).unwrap();
    // Another handle of the same topic shares the consumer.
    assert_eq!(
        store
            .topic("orders")
            .unwrap()
            .consumer("billing")
            .unwrap()
            .position(),
        Some(2)
    );
    assert_eq!(store.topics().unwrap(), vec!["jobs", "orders"]);
    drop((orders, jobs));
    store.close().unwrap();
    drop(store);

    let store = Store::open(dir.path(), opts()).unwrap();
    let orders = store.topic("orders").unwrap();
    assert_eq!(orders.next_offset(), 2);
    assert_eq!(
        orders.consumers().unwrap(),
        vec![("billing".to_string(), Some(2))]
    );
    assert_eq!(
        store.topic("jobs").unwrap().consumers().unwrap(),
        vec![("billing".to_string(), Some(1))]
    );
    let c = orders.consumer("billing").unwrap();
    store.remove_topic("orders").unwrap();
    assert!(matches!(c.commit(1), Err(Error::Closed)));
}

// ---------------------------------------------------------------------------------------
// Crash safety of the position file
// ---------------------------------------------------------------------------------------

/// Every state a crash can leave of one commit (the new slot written up to any byte, in
/// either order) reads as the previous position or the new one.
#[test]
fn every_torn_commit_reads_as_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_records(&dir.path().join("log"), 100);
    let scratch = scratch(&dir.path().join("scratch"), "c");
    let c = log.consumer("c").unwrap();
    let path = position_file(log.dir(), "c");
    for old in 0..6u64 {
        c.commit(old).unwrap();
        let before = std::fs::read(&path).unwrap();
        let new = old + 50;
        c.commit(new).unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(before.len(), FILE_BYTES);
        assert_eq!(after.len(), FILE_BYTES);
        let changed: Vec<usize> = (0..FILE_BYTES).filter(|&i| before[i] != after[i]).collect();
        let (first, last) = (changed[0], *changed.last().unwrap());
        assert!(
            last - first < SLOT_BYTES,
            "one slot changed: {first}..{last}"
        );
        let slot = first - first % SLOT_STRIDE_BYTES;
        for cut in 0..=SLOT_BYTES {
            // The first `cut` bytes reached the disk, or the last ones.
            for prefix in [true, false] {
                let mut torn = before.clone();
                let range = if prefix {
                    slot..slot + cut
                } else {
                    slot + cut..slot + SLOT_BYTES
                };
                torn[range.clone()].copy_from_slice(&after[range]);
                let got = decode(&scratch, "c", &torn).unwrap();
                assert!(
                    got == Some(old) || got == Some(new),
                    "cut {cut} prefix {prefix}: {got:?}"
                );
            }
        }
    }
}

/// Copies of the position file taken at random moments while another thread commits read
/// as a position committed no earlier than the last acknowledged when the copy began, and
/// no later than the one in flight when it ended; tearing or cutting the copy's in-flight
/// slot leaves the previous position. Never another value.
#[test]
fn copies_taken_during_commits_read_as_a_committed_position() {
    let dir = tempfile::tempdir().unwrap();
    let commits_count: u64 = 400;
    let log = with_records(&dir.path().join("log"), commits_count as usize + 1);
    let scratch = scratch(&dir.path().join("scratch"), "c");
    let c = log.consumer("c").unwrap();
    c.commit(0).unwrap();
    let path = position_file(log.dir(), "c");
    let acked = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let committer = {
        let (acked, started, done, c) = (acked.clone(), started.clone(), done.clone(), c.clone());
        thread::spawn(move || {
            for next in 1..=commits_count {
                started.store(next, SeqCst);
                c.commit(next).unwrap();
                acked.store(next, SeqCst);
            }
            done.store(true, SeqCst);
        })
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    let (mut copies, mut in_flight_seen) = (0u64, 0u64);
    while !done.load(SeqCst) {
        thread::sleep(Duration::from_micros(random(300) as u64));
        let low = acked.load(SeqCst);
        let bytes = std::fs::read(&path).unwrap();
        let high = started.load(SeqCst);
        copies += 1;
        let got = decode(&scratch, "c", &bytes);
        if high - low >= 2 {
            // The copy spanned whole commits: not a state one crash can leave.
            continue;
        }
        let got = got.unwrap().unwrap();
        assert!(low <= got && got <= high, "{low} <= {got} <= {high}");
        if got > low {
            in_flight_seen += 1;
        }
        // A crash while commit `low + 1` is in flight (started or about to) tears or
        // loses its slot: commit `n` has sequence `n + 1` (the creation had 0), so its
        // slot is `(n + 1) % 2`, the one holding commit `low - 1`. `low` remains.
        let in_flight = low + 1;
        let slot = ((in_flight + 1) as usize % 2) * SLOT_STRIDE_BYTES;
        let mut torn = bytes.clone();
        let cut = random(SLOT_BYTES);
        for b in &mut torn[slot + cut..slot + SLOT_BYTES] {
            *b ^= 1 + random(255) as u8;
        }
        let got = decode(&scratch, "c", &torn).unwrap();
        assert_eq!(got, Some(low), "torn {in_flight} at {cut}");
        // A file cut inside slot 1 keeps slot 0 only: even sequences, odd positions.
        let cut_len = random(SLOT_STRIDE_BYTES + SLOT_BYTES);
        match decode(&scratch, "c", &bytes[..cut_len]) {
            Ok(Some(p)) => assert!(p % 2 == 1 && p <= high, "{cut_len}: {p}"),
            Ok(None) => assert!(low <= 1, "{cut_len}: slot 0 still the creation's"),
            Err(e) => assert!(
                matches!(e, Error::Corruption { .. })
                    && (cut_len < SLOT_BYTES || (high > low && high % 2 == 1)),
                "{cut_len}: {e}"
            ),
        }
    }
    committer.join().unwrap();
    assert!(copies > 10, "only {copies} copies");
    assert_eq!(c.position(), Some(commits_count));
    eprintln!("{copies} copies, {in_flight_seen} showed a commit in flight");
}

/// Every single bit flipped anywhere in a position file reads as one of the two committed
/// positions (the flipped slot loses), never another value.
#[test]
fn every_bit_flip_of_a_position_file_reads_as_a_committed_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = with_records(&dir.path().join("log"), 100);
    let scratch = scratch(&dir.path().join("scratch"), "c");
    let c = log.consumer("c").unwrap();
    c.commit(41).unwrap();
    c.commit(42).unwrap();
    let bytes = std::fs::read(position_file(log.dir(), "c")).unwrap();
    assert_eq!(bytes.len(), FILE_BYTES);
    assert_eq!(decode(&scratch, "c", &bytes).unwrap(), Some(42));
    let mut flips_to_older = 0;
    for bit in 0..FILE_BYTES * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let got = decode(&scratch, "c", &flipped).unwrap();
        match got {
            Some(42) => {}
            Some(41) => flips_to_older += 1,
            other => panic!("bit {bit}: {other:?}"),
        }
    }
    // Commit 42 has sequence 2: slot 0. Each of its bits falls back to 41.
    assert_eq!(flips_to_older, SLOT_BYTES * 8);
}

// ---------------------------------------------------------------------------------------
// wait_durable
// ---------------------------------------------------------------------------------------

#[test]
fn wait_durable_blocks_until_a_sync_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts().durability(Durability::None)).unwrap();
    let offset = log.append(b"unsynced").unwrap();
    log.append(b"after").unwrap();
    assert!(log.durable_offset() <= offset, "nothing flushed it yet");
    let synced = Arc::new(AtomicBool::new(false));
    let syncer = {
        let (log, synced) = (log.clone(), synced.clone());
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            synced.store(true, SeqCst);
            log.sync().unwrap();
        })
    };
    let started = Instant::now();
    log.wait_durable(offset).unwrap();
    assert!(synced.load(SeqCst), "returned before the sync");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(log.durable_offset() > offset);
    syncer.join().unwrap();
}

#[test]
fn wait_durable_returns_at_once_for_a_durable_offset_and_refuses_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let offset = log.append(b"durable").unwrap();
    let started = Instant::now();
    log.wait_durable(offset).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    for beyond in [offset + 1, offset + 1000, u64::MAX] {
        match log.wait_durable(beyond) {
            Err(Error::OffsetOutOfRange {
                offset: o, next, ..
            }) => {
                assert_eq!((o, next), (beyond, offset + 1));
            }
            other => panic!("{beyond}: {other:?}"),
        }
    }
}

#[test]
fn wait_durable_reports_poison() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan {
        fail_sync: Some(1),
        ..FaultPlan::default()
    };
    let log = Log::open_with_faults(dir.path(), opts().durability(Durability::None), plan).unwrap();
    let offset = log.append(b"lost").unwrap();
    let waiter = {
        let log = log.clone();
        thread::spawn(move || log.wait_durable(offset))
    };
    thread::sleep(Duration::from_millis(100));
    assert!(log.sync().is_err());
    assert!(matches!(
        waiter.join().unwrap(),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        log.wait_durable(offset),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn wait_durable_reports_a_stop_as_closed_and_a_close_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts().durability(Durability::None)).unwrap();
    let offset = log.append(b"dropped").unwrap();
    // `append` under None returns once staged; wait until the writer wrote it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.read(offset).is_err() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let waiter = {
        let log = log.clone();
        thread::spawn(move || log.wait_durable(offset))
    };
    thread::sleep(Duration::from_millis(100));
    log.abandon();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
    assert!(matches!(log.wait_durable(offset), Err(Error::Closed)));
    drop(log);

    // A clean close flushes: the waiter's record becomes durable.
    let log = Log::open(dir.path(), opts().durability(Durability::None)).unwrap();
    let offset = log.append(b"kept").unwrap();
    let waiter = {
        let log = log.clone();
        thread::spawn(move || log.wait_durable(offset))
    };
    thread::sleep(Duration::from_millis(100));
    log.close().unwrap();
    waiter.join().unwrap().unwrap();
    assert!(log.durable_offset() > offset);
}

// ---------------------------------------------------------------------------------------
// wait_durable_async under a plain executor
// ---------------------------------------------------------------------------------------

struct ThreadWaker {
    thread: thread::Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
        self.thread.unpark();
    }
}

/// Runs `future` on this thread; also returns how many times it was polled.
fn block_on<F: Future>(future: F) -> (F::Output, u32) {
    let waker_state = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(waker_state.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return (out, polls);
        }
        while !waker_state.woken.swap(false, SeqCst) {
            thread::park_timeout(Duration::from_secs(5));
            assert!(polls < 1000, "woken too often");
        }
    }
}

#[test]
fn wait_durable_async_is_woken_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts().durability(Durability::None)).unwrap();
    let offset = log.append(b"unsynced").unwrap();
    assert!(log.durable_offset() <= offset);
    let future = log.wait_durable_async(offset);
    assert_eq!(future.offset(), offset);
    let syncer = {
        let log = log.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            log.sync().unwrap();
        })
    };
    let started = Instant::now();
    let (result, polls) = block_on(future);
    result.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(polls >= 2, "it waited");
    assert!(log.durable_offset() > offset);
    syncer.join().unwrap();

    // Durable already: ready at the first poll. Out of range: refused at the call.
    let (result, polls) = block_on(log.wait_durable_async(offset));
    result.unwrap();
    assert_eq!(polls, 1);
    let beyond = log.wait_durable_async(log.next_offset());
    log.append(b"too late to count").unwrap();
    log.sync().unwrap();
    assert!(matches!(
        block_on(beyond).0,
        Err(Error::OffsetOutOfRange { .. })
    ));

    // Poisoned while waiting.
    drop(log);
    let plan = FaultPlan {
        fail_sync: Some(1),
        ..FaultPlan::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with_faults(dir.path(), opts().durability(Durability::None), plan).unwrap();
    let offset = log.append(b"lost").unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let waiter = {
        let (log, barrier) = (log.clone(), barrier.clone());
        thread::spawn(move || {
            let future = log.wait_durable_async(offset);
            barrier.wait();
            block_on(future).0
        })
    };
    barrier.wait();
    thread::sleep(Duration::from_millis(100));
    assert!(log.sync().is_err());
    assert!(matches!(
        waiter.join().unwrap(),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn a_consumer_follows_from_its_committed_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = ringlog::Log::open(
        dir.path(),
        ringlog::Options::default().segment_bytes(1 << 20),
    )
    .unwrap();
    for i in 0..5u8 {
        log.append(&[i]).unwrap();
    }
    let c = log.consumer("reader").unwrap();
    // Never committed: from the first offset.
    let mut f = c.follow().unwrap();
    assert_eq!(f.next().unwrap().unwrap().offset(), 0);
    c.commit(3).unwrap();
    let mut f = c.follow().unwrap();
    let got: Vec<u64> = (0..2)
        .map(|_| f.next().unwrap().unwrap().offset())
        .collect();
    assert_eq!(got, [3, 4]);
    // At the end it waits for the next record.
    assert!(f
        .next_timeout(std::time::Duration::from_millis(20))
        .is_none());
    log.append(b"later").unwrap();
    assert_eq!(
        f.next_timeout(std::time::Duration::from_secs(10))
            .unwrap()
            .unwrap()
            .payload(),
        b"later"
    );
}
