//! Read-only handles beside a writer, `verify` and `repair`.

mod common;

use common::{backends, payload, small};
use ringlog::{Error, Log, ProblemKind};

#[test]
fn read_only_handle_follows_a_writer_across_rollovers() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Log::open(dir.path(), small(io)).unwrap();
        for i in 0..100 {
            writer.append(&payload(i, 500)).unwrap();
        }
        let reader = Log::open_read_only(dir.path(), small(io)).unwrap();
        assert!(reader.is_read_only());
        assert_eq!(reader.next_offset(), 100);
        assert!(matches!(reader.append(b"x"), Err(Error::ReadOnly)));
        assert!(matches!(reader.sync(), Err(Error::ReadOnly)));
        for i in 100..1000 {
            writer.append(&payload(i, 500)).unwrap();
        }
        assert_eq!(reader.refresh().unwrap(), 1000);
        assert!(reader.stats().segments_count > 5);
        for (i, rec) in reader.iter(0).enumerate() {
            assert_eq!(rec.unwrap().payload(), payload(i as u64, 500).as_slice());
        }
        assert_eq!(
            ringlog::lock_holder(dir.path()).unwrap(),
            Some(std::process::id())
        );
        writer.close().unwrap();
        assert_eq!(ringlog::lock_holder(dir.path()).unwrap(), None);
        let segments = reader.segments().unwrap();
        assert_eq!(segments.first().unwrap().base_offset, 0);
        assert_eq!(segments.last().unwrap().end_offset, 1000);
        assert_eq!(segments.iter().map(|s| s.records_count).sum::<u64>(), 1000);
        assert!(segments[..segments.len() - 1].iter().all(|s| s.sealed));
    }
}

fn build(dir: &std::path::Path, n: u64) {
    let log = Log::open(dir, small(ringlog::IoBackend::Pwrite)).unwrap();
    for i in 0..n {
        log.append(&payload(i, 300)).unwrap();
    }
    log.close().unwrap();
}

#[test]
fn verify_reports_clean_corrupt_torn_and_index_problems() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 600);
    let report = ringlog::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.records_checked, 600);
    assert_eq!((report.first_offset, report.next_offset), (0, 600));

    // Torn tail on the active segment.
    let active = common::active_segment(dir.path());
    let end = common::data_end(&active);
    let mut bytes = std::fs::read(&active).unwrap();
    bytes[end as usize..end as usize + 50].fill(0x77);
    std::fs::write(&active, &bytes).unwrap();
    let report = ringlog::verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::TornTail);
    assert_eq!(report.problems[0].position, end);
    assert_eq!(report.corruption().count(), 0);

    // A flipped payload byte in a sealed segment.
    let first = &common::segment_files(dir.path())[0];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[2000] ^= 4;
    std::fs::write(first, &bytes).unwrap();
    // And a damaged index file.
    let idx = first.with_extension("idx");
    let mut idx_bytes = std::fs::read(&idx).unwrap();
    idx_bytes[70] ^= 1;
    std::fs::write(&idx, &idx_bytes).unwrap();
    let report = ringlog::verify(dir.path()).unwrap();
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&ProblemKind::Corruption), "{kinds:?}");
    assert!(kinds.contains(&ProblemKind::Index), "{kinds:?}");
    let corrupt = report.corruption().next().unwrap();
    assert_eq!(&corrupt.path, first);
    assert!(corrupt.position <= 2000 && 2000 - corrupt.position < 400);
}

#[test]
fn repair_cuts_a_torn_tail_and_refuses_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300);
    let active = common::active_segment(dir.path());
    let end = common::data_end(&active);
    let mut bytes = std::fs::read(&active).unwrap();
    bytes[end as usize..end as usize + 40].fill(0x33);
    std::fs::write(&active, &bytes).unwrap();

    let dry = ringlog::repair(dir.path(), true).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.truncated.len(), 1);
    assert_eq!(dry.truncated[0].1.position, end);
    assert_eq!(
        std::fs::read(&active).unwrap(),
        bytes,
        "dry run changed nothing"
    );

    let done = ringlog::repair(dir.path(), false).unwrap();
    assert_eq!(done.truncated[0].1.position, end);
    assert!(ringlog::verify(dir.path()).unwrap().is_clean());
    let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    assert_eq!(log.next_offset(), 300);
    drop(log);

    // Damage in the middle: repair refuses and changes nothing.
    let first = &common::segment_files(dir.path())[0];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[1000] ^= 0x80;
    std::fs::write(first, &bytes).unwrap();
    match ringlog::repair(dir.path(), false) {
        Err(Error::Corruption { segment, .. }) => assert_eq!(&segment, first),
        other => panic!("repair must refuse: {other:?}"),
    }
    assert_eq!(&std::fs::read(first).unwrap(), &bytes);
}

#[test]
fn verify_reports_a_checkpoint_that_disagrees_with_the_data() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300);
    let active = common::active_segment(dir.path());
    let idx = active.with_extension("idx");
    let segment = std::fs::read(&active).unwrap();
    let (id, base, nonce, _) = ringlog::fuzzing::decode_segment_header(&segment).unwrap();
    let (data_end, next_offset, entries) =
        ringlog::fuzzing::decode_index(&std::fs::read(&idx).unwrap(), 64 << 10).unwrap();
    assert_eq!(next_offset, 300);
    // Checksum-valid, entries right, one record short of what its data end holds.
    let forged = common::encode_index(id, nonce, base, data_end, 299, true, &entries);
    std::fs::write(&idx, forged).unwrap();
    let report = ringlog::verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.kind, ProblemKind::Index);
    assert_eq!(problem.path, idx);
    assert!(
        problem.message.contains("disagrees with the data"),
        "{}",
        problem.message
    );
    assert_eq!(report.next_offset, 300);

    let done = ringlog::repair(dir.path(), false).unwrap();
    assert_eq!(done.removed.len(), 1, "{:?}", done.removed);
    assert_eq!(done.removed[0].0, idx);
    assert!(ringlog::verify(dir.path()).unwrap().is_clean());
    let log = Log::open(dir.path(), small(ringlog::IoBackend::Pwrite)).unwrap();
    assert_eq!(log.next_offset(), 300);
    assert_eq!(
        log.read(299).unwrap().payload(),
        payload(299, 300).as_slice()
    );
}
