//! Mapped writes (`Options::mapped_writes`): a record whose append returned is readable at
//! once, by this handle and by a read-only handle (as another process would read it), with
//! no `sync()` and no wait for the writer thread, across rollovers and under `Interval`
//! with `read_unflushed(true)`. (Crash states: `tests/crash_sim.rs`; `kill -9`:
//! `tests/kill9.rs`; power cuts: `tests/powercut.rs`.)

use std::time::Duration;

use ringlog::{Durability, Log, Options, Preallocate};

fn payload(offset: u64) -> Vec<u8> {
    let mut out = vec![(offset % 253) as u8; 40 + (offset as usize * 37) % 900];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out
}

fn check_readable_at_once(opts: Options) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    let reader = Log::open_read_only(dir.path(), opts).unwrap();
    // 64 KiB segments: about 130 records each, so this crosses many rollovers.
    for offset in 0..2_000u64 {
        assert_eq!(log.append(&payload(offset)).unwrap(), offset);
        let record = log
            .read(offset)
            .unwrap_or_else(|e| panic!("record {offset} right after its append: {e}"));
        assert_eq!(record.payload(), payload(offset).as_slice());
        if offset % 97 == 0 {
            assert_eq!(reader.refresh().unwrap(), offset + 1, "read-only handle");
            let record = reader.read(offset).unwrap();
            assert_eq!(record.payload(), payload(offset).as_slice());
        }
    }
    assert!(log.segments().unwrap().len() > 10, "rollovers happened");
    log.close().unwrap();
    let log = Log::open_read_only(dir.path(), Options::default()).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.iter(0).count(), 2_000);
}

#[test]
fn an_unsynced_mapped_append_is_readable_at_once() {
    for preallocate in [Preallocate::ZeroFill, Preallocate::Fallocate] {
        check_readable_at_once(
            Options::default()
                .segment_bytes(64 << 10)
                .durability(Durability::None)
                .mapped_writes(true)
                .preallocate(preallocate),
        );
    }
}

#[test]
fn under_interval_with_read_unflushed_too() {
    check_readable_at_once(
        Options::default()
            .segment_bytes(64 << 10)
            .durability(Durability::Interval(Duration::from_secs(3600)))
            .read_unflushed(true)
            .mapped_writes(true),
    );
}
