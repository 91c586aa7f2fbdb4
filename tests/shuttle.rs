//! The group-commit hand-off under a model checker (issue item 9): the real engine
//! (producers staging records, the writer thread committing and flushing, inline commits,
//! the waker thread, the housekeeper preparing spare segments, rollover, close) with every
//! lock, condition variable, atomic, futex and thread replaced by
//! [shuttle](https://docs.rs/shuttle)'s (see `src/sync.rs`), and the disk by the simulated
//! one (`ringlog::sim`). Shuttle's PCT scheduler runs each scenario many times, each
//! time with a different interleaving of the threads, and fails on:
//!
//! - a deadlock or lost wake-up: every thread blocked (a producer waiting for a flush
//!   nobody will do, a writer nobody will wake) is reported by shuttle itself;
//! - an acknowledgement before the covering flush: at the moment an append (or a
//!   `sync()`) returns Ok, the test takes the disk's durable image (the files with every
//!   unflushed write reverted) and requires the acknowledged record in it, byte for byte;
//! - an acknowledgement after a failure: a failed flush loses its writes for good in the
//!   simulator (a later flush "succeeds" without them, as on Linux), so an ack that
//!   trusted a later flush fails the same check;
//! - wrong offsets: acknowledged offsets are distinct, and after close the log holds
//!   exactly the records appended, in offset order.
//!
//! Shuttle needs the whole crate built against it, so this test exists only in that
//! build:
//!
//! ```text
//! RUSTFLAGS="--cfg ringlog_shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test --release --test shuttle
//! ```
//!
//! (`.ci/reliability.sh` runs it.) `RINGLOG_SHUTTLE_ITERATIONS` (default 300) sets the
//! schedules per scenario. A failure prints the schedule; `RINGLOG_SHUTTLE_REPLAY` set
//! to it together with `RINGLOG_SHUTTLE_TEST=<name>` replays it.
#![cfg(ringlog_shuttle)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ringlog::sim::{apply_crash, CrashMode, SimDisk};
use ringlog::{Durability, Error, Log, Options};

/// Acknowledged records checked against the durable image, over the whole run.
static ACKS_CHECKED: AtomicU64 = AtomicU64::new(0);

/// Schedules explored per scenario (and per failure point, for the failure scenario).
fn iterations() -> usize {
    std::env::var("RINGLOG_SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// Runs `scenario` under the PCT scheduler (or replays one schedule).
fn explore(name: &str, iterations: usize, scenario: impl Fn() + Send + Sync + 'static) {
    let replay = std::env::var("RINGLOG_SHUTTLE_REPLAY").ok();
    if let Some(schedule) = replay {
        if std::env::var("RINGLOG_SHUTTLE_TEST").ok().as_deref() == Some(name) {
            shuttle::replay(scenario, &schedule);
        }
        return;
    }
    let mut config = shuttle::Config::new();
    // The engine's frames, the simulator and recovery need more than the 32 KiB default.
    config.stack_size = 1 << 20;
    config.max_steps = shuttle::MaxSteps::FailAfter(2_000_000);
    let scheduler = shuttle::scheduler::PctScheduler::new(3, iterations);
    let before = ACKS_CHECKED.load(Relaxed);
    shuttle::Runner::new(scheduler, config).run(scenario);
    println!(
        "{name}: {iterations} schedules explored, {} acknowledged records found durable at their acknowledgement",
        ACKS_CHECKED.load(Relaxed) - before
    );
}

/// Small segments (64 KiB) and records large enough that a few appends roll over.
fn options(durability: Durability) -> Options {
    Options::default()
        .segment_bytes(64 << 10)
        .durability(durability)
}

/// The payload of the `i`-th record of producer `producer`: 12 KiB, naming both.
fn payload(producer: u64, i: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 << 10);
    let mut x = (producer << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    out.extend_from_slice(&producer.to_le_bytes());
    out.extend_from_slice(&i.to_le_bytes());
    while out.len() < 12 << 10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("ringlog-shuttle-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// One scenario's log on a simulated disk.
struct World {
    dir: tempfile::TempDir,
    disk: Arc<SimDisk>,
    log: Log,
}

impl World {
    fn open(durability: Durability, disk: Arc<SimDisk>) -> Result<World, Error> {
        World::open_with(options(durability), disk)
    }

    fn open_with(opts: Options, disk: Arc<SimDisk>) -> Result<World, Error> {
        let dir = tempdir();
        let log = Log::open_with_backend(dir.path(), opts, disk.backend())?;
        Ok(World { dir, disk, log })
    }

    /// Requires `records` (offset, payload) to be in the disk's durable image *now*:
    /// called right after the acknowledgement, before any other thread can run (taking
    /// the image is plain file I/O, which shuttle never interrupts).
    fn assert_durable(&self, records: &[(u64, Vec<u8>)], what: &str) {
        let image = durable_image(&self.disk, self.dir.path());
        let log = Log::open_read_only(image.path(), options(Durability::Sync))
            .unwrap_or_else(|e| panic!("{what}: the durable image does not open: {e}"));
        for (offset, payload) in records {
            match log.read(*offset) {
                Ok(record) => {
                    assert!(
                        record.payload() == payload.as_slice(),
                        "{what}: offset {offset} is durable with other bytes"
                    );
                    ACKS_CHECKED.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    panic!("{what}: offset {offset} was acknowledged but is not durable: {e}")
                }
            }
        }
    }

    /// Requires the disk's durable image to hold every record below `durable_offset()`
    /// now.
    fn assert_durable_offset_held(&self) {
        let durable = self.log.durable_offset();
        if durable == 0 {
            return;
        }
        let image = durable_image(&self.disk, self.dir.path());
        let log = Log::open_read_only(image.path(), options(Durability::None))
            .expect("open durable image");
        assert!(
            log.next_offset() >= durable,
            "durable_offset() said {durable}, the disk holds {}",
            log.next_offset()
        );
    }
}

/// A copy of `dir` as a power cut right now would leave it: every write the simulated
/// disk has not made durable reverted.
fn durable_image(disk: &SimDisk, dir: &Path) -> tempfile::TempDir {
    // Snapshot first (no shuttle operation in between), then build the copy.
    let pending = disk.pending();
    let files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read file");
            (p, bytes)
        })
        .collect();
    let image = tempdir();
    for (path, bytes) in files {
        let name = path.file_name().expect("file name");
        std::fs::write(image.path().join(name), bytes).expect("write copy");
    }
    let original = dir.canonicalize().expect("canonical dir");
    apply_crash(&pending, &original, image.path(), CrashMode::DropAll, 0).expect("revert");
    image
}

/// After close: the log holds exactly `expected` (offset -> payload), and nothing else.
fn assert_log_holds(dir: &Path, expected: &BTreeMap<u64, Vec<u8>>) {
    let log = Log::open_read_only(dir, options(Durability::Sync)).expect("reopen");
    assert_eq!(log.first_offset(), 0);
    assert_eq!(
        log.next_offset(),
        expected.len() as u64,
        "records after close"
    );
    for (offset, payload) in expected {
        let record = log.read(*offset).expect("read after close");
        assert!(
            record.payload() == payload.as_slice(),
            "offset {offset} after close"
        );
    }
}

/// Three producers under `Durability::Sync` (one appending batches, one using
/// `submit` and waiting on the ticket, blocking or as a future), enough data for two rollovers; every acknowledgement is checked
/// against the durable image at the moment it returns.
#[test]
fn sync_producers_across_rollovers() {
    explore("sync_producers_across_rollovers", iterations(), || {
        let world = Arc::new(World::open(Durability::Sync, SimDisk::new()).expect("open"));
        let producers: Vec<_> = (0..3u64)
            .map(|producer| {
                let world = world.clone();
                shuttle::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..3u64 {
                        match producer {
                            0 => {
                                let (a, b) = (payload(0, 2 * i), payload(0, 2 * i + 1));
                                let range = world.log.append_batch(&[&a, &b]).expect("batch");
                                assert_eq!(range.end - range.start, 2);
                                let got = vec![(range.start, a), (range.start + 1, b)];
                                world.assert_durable(&got, "append_batch");
                                acked.extend(got);
                            }
                            1 => {
                                let p = payload(1, i);
                                let ticket = world.log.submit(&p).expect("submit");
                                // Blocking, then as a future (its waker path).
                                let offset = if i % 2 == 0 {
                                    ticket.wait()
                                } else {
                                    shuttle::future::block_on(ticket)
                                }
                                .expect("ticket");
                                world.assert_durable(&[(offset, p.clone())], "ticket");
                                acked.push((offset, p));
                            }
                            _ => {
                                let p = payload(producer, i);
                                let offset = world.log.append(&p).expect("append");
                                world.assert_durable(&[(offset, p.clone())], "append");
                                acked.push((offset, p));
                            }
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut expected = BTreeMap::new();
        for handle in producers {
            for (offset, payload) in handle.join().expect("producer") {
                assert!(
                    expected.insert(offset, payload).is_none(),
                    "offset {offset} twice"
                );
            }
        }
        world.log.close().expect("close");
        assert_log_holds(world.dir.path(), &expected);
    });
}

/// `Durability::None`: producers append without waiting, one of them calls `sync()`
/// after each append; whatever was appended before a `sync()` returned Ok is durable
/// then. A third thread reads `durable_offset()` and requires everything below it to be
/// durable.
#[test]
fn unsynced_appends_and_sync() {
    explore("unsynced_appends_and_sync", iterations(), || {
        let world = Arc::new(World::open(Durability::None, SimDisk::new()).expect("open"));
        let mut handles = Vec::new();
        for producer in 0..2u64 {
            let world = world.clone();
            handles.push(shuttle::thread::spawn(move || {
                let mut appended = Vec::new();
                for i in 0..3u64 {
                    let p = payload(producer, i);
                    let offset = world.log.append(&p).expect("append");
                    appended.push((offset, p));
                    if producer == 0 {
                        world.log.sync().expect("sync");
                        world.assert_durable(&appended, "sync");
                    }
                }
                appended
            }));
        }
        let watcher = {
            let world = world.clone();
            shuttle::thread::spawn(move || {
                for _ in 0..4 {
                    world.assert_durable_offset_held();
                    shuttle::thread::yield_now();
                }
                Vec::new()
            })
        };
        handles.push(watcher);
        let mut expected = BTreeMap::new();
        for handle in handles {
            for (offset, payload) in handle.join().expect("thread") {
                assert!(
                    expected.insert(offset, payload).is_none(),
                    "offset {offset} twice"
                );
            }
        }
        world.log.close().expect("close");
        assert_log_holds(world.dir.path(), &expected);
    });
}

/// Mapped writes under `Durability::None` (docs/design.md 3.4): two producers copy into
/// the segment's mapping across rollovers (each of which waits for the committer to
/// activate and map the next segment), one of them calls `sync()` after each append,
/// and each reads its record back the moment its append returns. No lost wake-up between
/// a producer waiting for a mapping and the writer, a `sync()` covers what was copied
/// before it, and every returned append is in the log after close.
#[test]
fn mapped_appends_rollovers_and_sync() {
    explore("mapped_appends_rollovers_and_sync", iterations(), || {
        let opts = options(Durability::None).mapped_writes(true);
        let world = Arc::new(World::open_with(opts, SimDisk::new()).expect("open"));
        let mut handles = Vec::new();
        for producer in 0..2u64 {
            let world = world.clone();
            handles.push(shuttle::thread::spawn(move || {
                let mut appended = Vec::new();
                for i in 0..4u64 {
                    let p = payload(producer, i);
                    let offset = world.log.append(&p).expect("append");
                    let record = world.log.read(offset).expect("read at once");
                    assert_eq!(record.payload(), p.as_slice(), "record {offset}");
                    appended.push((offset, p));
                    if producer == 0 {
                        world.log.sync().expect("sync");
                        world.assert_durable(&appended, "sync");
                    }
                }
                appended
            }));
        }
        let mut expected = BTreeMap::new();
        for handle in handles {
            for (offset, payload) in handle.join().expect("thread") {
                assert!(
                    expected.insert(offset, payload).is_none(),
                    "offset {offset} twice"
                );
            }
        }
        world.log.close().expect("close");
        assert_log_holds(world.dir.path(), &expected);
    });
}

/// `close()` racing two `Sync` producers: each append is acknowledged durably or fails
/// with `Closed` (nothing hangs), and the closed log holds exactly the acknowledged
/// records plus any whose append was cut short by the close after they were staged
/// (they form the offsets between, and must be whole).
#[test]
fn close_races_producers() {
    explore("close_races_producers", iterations(), || {
        let world = Arc::new(World::open(Durability::Sync, SimDisk::new()).expect("open"));
        let producers: Vec<_> = (0..2u64)
            .map(|producer| {
                let world = world.clone();
                shuttle::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..3u64 {
                        let p = payload(producer, i);
                        match world.log.append(&p) {
                            Ok(offset) => {
                                world.assert_durable(&[(offset, p.clone())], "append");
                                acked.push((offset, p));
                            }
                            Err(Error::Closed) => break,
                            Err(e) => panic!("append during close: {e}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        world.log.close().expect("close");
        let mut acked = BTreeMap::new();
        for handle in producers {
            for (offset, payload) in handle.join().expect("producer") {
                assert!(
                    acked.insert(offset, payload).is_none(),
                    "offset {offset} twice"
                );
            }
        }
        let log = Log::open_read_only(world.dir.path(), options(Durability::Sync)).expect("reopen");
        for (offset, payload) in &acked {
            let record = log.read(*offset).expect("acknowledged record after close");
            assert!(record.payload() == payload.as_slice(), "offset {offset}");
        }
        assert!(log.next_offset() <= 6, "more records than appends");
    });
}

/// Two followers blocked at the end of the log while a producer appends: each append
/// must wake them (a lost wake-up leaves them asleep, which shuttle reports as a
/// deadlock: nothing else wakes them before they have every record). Then `close()`
/// must wake them again, to end with `Closed`. Under `Sync` (the read watermark is the
/// durable one, moved by the flush) and under `None` (the written one, moved by the
/// write, which `sync()` forces).
#[test]
fn followers_are_woken_and_ended_by_close() {
    for durability in [Durability::Sync, Durability::None] {
        let name = format!("followers_are_woken_and_ended_by_close {durability:?}");
        explore(&name, iterations(), move || {
            let world = Arc::new(World::open(durability, SimDisk::new()).expect("open"));
            let (got_all, all_got) = shuttle::sync::mpsc::channel();
            let followers: Vec<_> = (0..2)
                .map(|_| {
                    let mut follower = world.log.follow(0).expect("follow");
                    let got_all = got_all.clone();
                    shuttle::thread::spawn(move || {
                        for offset in 0..3 {
                            let record = follower.next().expect("a record").expect("read");
                            assert_eq!(record.offset(), offset);
                        }
                        got_all.send(()).expect("send");
                        match follower.next() {
                            Some(Err(Error::Closed)) => {}
                            other => panic!("after close: {other:?}"),
                        }
                    })
                })
                .collect();
            let producer = {
                let world = world.clone();
                shuttle::thread::spawn(move || {
                    for i in 0..3u64 {
                        world.log.append(&payload(0, i)).expect("append");
                    }
                    if durability != Durability::Sync {
                        world.log.sync().expect("sync");
                    }
                })
            };
            producer.join().expect("producer");
            for _ in 0..2 {
                all_got.recv().expect("a follower got every record");
            }
            world.log.close().expect("close");
            for follower in followers {
                follower.join().expect("follower");
            }
        });
    }
}

/// The `n`-th disk operation fails (a write or a flush, with EIO) while three `Sync`
/// producers append: the log is poisoned (later appends and `sync()` fail; nobody
/// hangs), every acknowledgement that did return was durable without the failed
/// operation's writes, and no producer is acknowledged after it has seen an error.
#[test]
fn failure_poisons_every_producer() {
    let failures = AtomicU64::new(0);
    let failures = Arc::new(failures);
    let per_point = (iterations() / 10).max(10);
    for n in 1..=12u64 {
        let failures = failures.clone();
        explore("failure_poisons_every_producer", per_point, move || {
            let disk = SimDisk::new();
            let world = match World::open(Durability::Sync, disk.clone()) {
                Ok(world) => Arc::new(world),
                Err(_) => return,
            };
            // Counted from here: recovery's operations at open are not the target.
            disk.fail_at(disk.operations_count() + n, 5);
            let producers: Vec<_> = (0..3u64)
                .map(|producer| {
                    let world = world.clone();
                    shuttle::thread::spawn(move || {
                        let mut failed = false;
                        for i in 0..3u64 {
                            let p = payload(producer, i);
                            match world.log.append(&p) {
                                Ok(offset) => {
                                    assert!(!failed, "acknowledged after an error");
                                    world.assert_durable(&[(offset, p)], "append");
                                }
                                Err(Error::Poisoned { .. }) | Err(Error::Io { .. }) => {
                                    failed = true;
                                }
                                Err(e) => panic!("unexpected error: {e}"),
                            }
                        }
                        failed
                    })
                })
                .collect();
            let mut any_failed = false;
            for handle in producers {
                any_failed |= handle.join().expect("producer");
            }
            if any_failed {
                failures.fetch_add(1, Relaxed);
                assert!(
                    world.log.sync().is_err(),
                    "sync() after poisoning succeeded"
                );
            }
            let _ = world.log.close();
        });
    }
    println!(
        "failure_poisons_every_producer: {} schedules ended poisoned",
        failures.load(Relaxed)
    );
    assert!(
        failures.load(Relaxed) > 0,
        "no injected failure ever reached the log"
    );
}

/// `Durability::None` with the `n`-th disk operation failing (EIO), so that the failure
/// can land on a write, a `sync()`'s flush or a background flush of the housekeeper (the
/// producers write past the background-flush threshold of these 64 KiB segments): every
/// `sync()` that returns Ok has made what was appended before it durable, nothing is
/// acknowledged once a producer has seen an error, and `durable_offset()` never covers a
/// record the disk does not hold.
#[test]
fn unsynced_failure_poisons_background_flushes_too() {
    let per_point = (iterations() / 10).max(10);
    for n in 1..=12u64 {
        explore(
            "unsynced_failure_poisons_background_flushes_too",
            per_point,
            move || {
                let disk = SimDisk::new();
                let world = match World::open(Durability::None, disk.clone()) {
                    Ok(world) => Arc::new(world),
                    Err(_) => return,
                };
                disk.fail_at(disk.operations_count() + n, 5);
                let producers: Vec<_> = (0..2u64)
                    .map(|producer| {
                        let world = world.clone();
                        shuttle::thread::spawn(move || {
                            let mut appended = Vec::new();
                            let mut failed = false;
                            for i in 0..3u64 {
                                let p = payload(producer, i);
                                match world.log.append(&p) {
                                    Ok(offset) => {
                                        assert!(!failed, "an append succeeded after an error");
                                        appended.push((offset, p));
                                    }
                                    Err(_) => failed = true,
                                }
                                match world.log.sync() {
                                    Ok(()) => {
                                        assert!(!failed, "sync() succeeded after an error");
                                        world.assert_durable(&appended, "sync");
                                    }
                                    Err(_) => failed = true,
                                }
                            }
                        })
                    })
                    .collect();
                for _ in 0..3 {
                    world.assert_durable_offset_held();
                    shuttle::thread::yield_now();
                }
                for handle in producers {
                    handle.join().expect("producer");
                }
                let _ = world.log.close();
            },
        );
    }
}

/// A store: two `Sync` topics, each with its own producer, and an unsynced topic whose
/// producer calls `sync()`, all served by the store's one writer, housekeeper and waker
/// (a topic with work is scheduled on the writer's ready list; several ready at once are
/// written and flushed in one cycle). Every acknowledgement is checked against the
/// durable image of its own topic at the moment it returns; after close every topic
/// holds exactly what was appended to it.
#[test]
fn store_topics_share_one_engine() {
    explore("store_topics_share_one_engine", iterations(), || {
        let dir = tempdir();
        let disk = SimDisk::new();
        let store = ringlog::Store::open_with_backend(
            dir.path(),
            options(Durability::Sync).segment_growth(false),
            disk.backend(),
        )
        .expect("open store");
        let topics = [
            ("a", Durability::Sync),
            ("b", Durability::Sync),
            ("c", Durability::None),
        ];
        let mut handles = Vec::new();
        for (producer, (name, durability)) in topics.into_iter().enumerate() {
            let log = store
                .topic_with(name, options(durability).segment_growth(false))
                .expect("topic");
            let topic_dir = dir.path().join("topics").join(name);
            let disk = disk.clone();
            handles.push(shuttle::thread::spawn(move || {
                let world = World {
                    dir: tempfile::tempdir().expect("placeholder"),
                    disk,
                    log,
                };
                let check = |records: &[(u64, Vec<u8>)], what: &str| {
                    let image = durable_image(&world.disk, &topic_dir);
                    let log = Log::open_read_only(image.path(), options(Durability::Sync))
                        .unwrap_or_else(|e| panic!("{what}: the durable image does not open: {e}"));
                    for (offset, payload) in records {
                        let record = log.read(*offset).unwrap_or_else(|e| {
                            panic!("{what}: offset {offset} acknowledged but not durable: {e}")
                        });
                        assert!(record.payload() == payload.as_slice(), "{what}: {offset}");
                        ACKS_CHECKED.fetch_add(1, Relaxed);
                    }
                };
                let mut appended = Vec::new();
                for i in 0..3u64 {
                    let p = payload(producer as u64, i);
                    let offset = world.log.append(&p).expect("append");
                    appended.push((offset, p));
                    if durability == Durability::Sync {
                        check(&appended[appended.len() - 1..], name);
                    } else {
                        world.log.sync().expect("sync");
                        check(&appended, name);
                    }
                }
                (name, appended)
            }));
        }
        let mut expected = BTreeMap::new();
        for handle in handles {
            let (name, appended) = handle.join().expect("producer");
            expected.insert(name, appended.into_iter().collect::<BTreeMap<_, _>>());
        }
        store.close().expect("close");
        for (name, records) in &expected {
            assert_log_holds(&dir.path().join("topics").join(name), records);
        }
    });
}

/// A store whose `n`-th disk operation fails (EIO) while two `Sync` topics are written:
/// the topic whose write or flush failed is poisoned and acknowledges nothing after it;
/// the other topic is never poisoned by it (its files are its own).
#[test]
fn store_failure_poisons_only_its_topic() {
    let per_point = (iterations() / 10).max(10);
    for n in 1..=8u64 {
        explore(
            "store_failure_poisons_only_its_topic",
            per_point,
            move || {
                let dir = tempdir();
                let disk = SimDisk::new();
                let store = ringlog::Store::open_with_backend(
                    dir.path(),
                    options(Durability::Sync).segment_growth(false),
                    disk.backend(),
                )
                .expect("open store");
                let logs: Vec<Log> = ["a", "b"]
                    .iter()
                    .map(|name| store.topic(name).expect("topic"))
                    .collect();
                disk.fail_at(disk.operations_count() + n, 5);
                let handles: Vec<_> = logs
                    .into_iter()
                    .enumerate()
                    .map(|(producer, log)| {
                        shuttle::thread::spawn(move || {
                            let mut failed = false;
                            for i in 0..3u64 {
                                match log.append(&payload(producer as u64, i)) {
                                    Ok(_) => assert!(!failed, "acknowledged after an error"),
                                    Err(Error::Poisoned { .. }) | Err(Error::Io { .. }) => {
                                        failed = true
                                    }
                                    Err(e) => panic!("unexpected error: {e}"),
                                }
                            }
                            (failed, log.poison_cause().is_some())
                        })
                    })
                    .collect();
                let outcomes: Vec<(bool, bool)> = handles
                    .into_iter()
                    .map(|h| h.join().expect("producer"))
                    .collect();
                // Exactly one operation failed: at most one topic is poisoned.
                assert!(
                    outcomes.iter().filter(|(_, poisoned)| *poisoned).count() <= 1,
                    "{outcomes:?}"
                );
                for (failed, poisoned) in outcomes {
                    assert_eq!(
                        failed, poisoned,
                        "an error without poison, or poison unseen"
                    );
                }
                let _ = store.close();
            },
        );
    }
}

/// Two `Sync` producers racing with the same caller sequences and the same idempotency
/// ids (docs/design.md 2.2.1, 2.2.2), on a log reopened so that the first of them also
/// races the load of the last sequence and of the ids on disk: each sequence is taken at
/// most once and they increase with the offsets; each id is appended exactly once, every
/// caller gets its offset, and that record is durable when either of them returns.
#[test]
fn sequences_and_idempotent_appends_race() {
    explore(
        "sequences_and_idempotent_appends_race",
        iterations(),
        || {
            let disk = SimDisk::new();
            let world = World::open(Durability::Sync, disk.clone()).expect("open");
            world.log.append_seq(1, b"seq 1").expect("seq 1");
            world.log.append_once(b"id-0", b"id 0").expect("id 0");
            world.log.close().expect("close");
            let log =
                Log::open_with_backend(world.dir.path(), options(Durability::Sync), disk.backend())
                    .expect("reopen");
            let world = Arc::new(World {
                dir: world.dir,
                disk,
                log,
            });
            let mut handles = Vec::new();
            for producer in 0..2u64 {
                let world = world.clone();
                handles.push(shuttle::thread::spawn(move || {
                    let mut seqs = Vec::new();
                    let mut ids = Vec::new();
                    for i in 0..2u64 {
                        let seq = 2 + i;
                        match world
                            .log
                            .append_seq(seq, format!("{producer} seq {seq}").as_bytes())
                        {
                            Ok(offset) => seqs.push((seq, offset)),
                            Err(Error::SequenceViolation { last, provided }) => {
                                assert!(last >= provided, "refused {provided} below {last}");
                            }
                            Err(e) => panic!("append_seq: {e}"),
                        }
                        let id = format!("id-{i}");
                        let (offset, appended) = world
                            .log
                            .append_once(id.as_bytes(), b"payload")
                            .expect("append_once");
                        let record = (
                            offset,
                            world.log.read(offset).expect("read").payload().to_vec(),
                        );
                        world.assert_durable(&[record], "append_once");
                        ids.push((id, offset, appended));
                    }
                    (seqs, ids)
                }));
            }
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();
            let mut seqs: Vec<(u64, u64)> = results.iter().flat_map(|(s, _)| s.clone()).collect();
            seqs.sort_by_key(|(_, offset)| *offset);
            for pair in seqs.windows(2) {
                assert!(pair[0].0 < pair[1].0, "sequences out of order: {seqs:?}");
            }
            let taken: std::collections::BTreeSet<u64> = seqs.iter().map(|(s, _)| *s).collect();
            assert_eq!(taken.len(), seqs.len(), "a sequence taken twice: {seqs:?}");
            for i in 0..2 {
                let calls: Vec<&(String, u64, bool)> =
                    results.iter().map(|(_, ids)| &ids[i]).collect();
                assert_eq!(calls[0].1, calls[1].1, "one offset per id: {calls:?}");
                let appended = calls.iter().filter(|c| c.2).count();
                assert_eq!(appended, usize::from(i != 0), "{calls:?}");
            }
            assert_eq!(world.log.last_seq(), taken.last().copied().or(Some(1)));
            world.log.close().expect("close");
        },
    );
}
