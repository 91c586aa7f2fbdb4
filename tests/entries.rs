//! Entries (docs/design.md 2.2.1): keys, headers, idempotency ids and caller sequences
//! stored in the frame. Round trips, reopen and rollover, the limits, sequence
//! violations (also from many threads at once), damage to an extension block under a
//! valid checksum, and power cuts on the simulated disk.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Barrier};

use ringlog::sim::{apply_crash, CrashMode, SimDisk};
use ringlog::{Durability, Entry, Error, IoBackend, Log, Options};

const SEGMENT_BYTES: u64 = 64 << 10;

fn opts() -> Options {
    Options::default().segment_bytes(SEGMENT_BYTES)
}

/// The fields of entry `i` of the tests' logs: every combination of key, id, sequence and
/// headers appears, with sizes that vary.
struct Fields {
    key: Option<Vec<u8>>,
    id: Option<Vec<u8>>,
    seq: Option<u64>,
    headers: Vec<(String, Vec<u8>)>,
    payload: Vec<u8>,
}

fn fields(i: u64) -> Fields {
    Fields {
        key: (i % 2 == 0).then(|| format!("job-{}", i / 3).into_bytes()),
        id: (i % 3 != 1).then(|| format!("evt-{i:06}").into_bytes()),
        seq: (i % 5 != 4).then_some(1000 + i * 3),
        headers: (0..i % 4)
            .map(|h| {
                (
                    format!("h{h}"),
                    vec![b'a' + (h as u8); (i as usize * 7 + h as usize) % 90],
                )
            })
            .collect(),
        payload: common::payload(i, common::mixed_len(i)),
    }
}

fn append_fields(log: &Log, f: &Fields) -> ringlog::Result<u64> {
    let mut entry = Entry::new(&f.payload);
    if let Some(key) = &f.key {
        entry = entry.key(key);
    }
    if let Some(id) = &f.id {
        entry = entry.id(id);
    }
    if let Some(seq) = f.seq {
        entry = entry.seq(seq);
    }
    for (name, value) in &f.headers {
        entry = entry.header(name, value);
    }
    log.append_entry(entry)
}

fn check_record(log: &Log, offset: u64, f: &Fields) {
    let record = log
        .read(offset)
        .unwrap_or_else(|e| panic!("read {offset}: {e}"));
    assert_eq!(
        record.payload(),
        f.payload.as_slice(),
        "payload of {offset}"
    );
    assert_eq!(record.key(), f.key.as_deref(), "key of {offset}");
    assert_eq!(record.id(), f.id.as_deref(), "id of {offset}");
    assert_eq!(record.seq(), f.seq, "seq of {offset}");
    let headers: Vec<(String, Vec<u8>)> = record
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    assert_eq!(headers, f.headers, "headers of {offset}");
    for (name, value) in &f.headers {
        assert_eq!(record.header(name), Some(value.as_slice()));
    }
    assert_eq!(record.header("absent"), None);
}

/// The last sequence among entries `0..n`.
fn last_seq_of(n: u64) -> Option<u64> {
    (0..n).rev().find_map(|i| fields(i).seq)
}

#[test]
fn entries_read_back_across_reopen_and_rollover() {
    for io in common::backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = 400u64;
        {
            let log = Log::open(dir.path(), opts().io(io)).expect("open");
            assert_eq!(log.last_seq(), None);
            for i in 0..count {
                assert_eq!(append_fields(&log, &fields(i)).expect("append"), i);
                assert_eq!(log.last_seq(), last_seq_of(i + 1));
            }
            assert!(
                log.segments().expect("segments").len() >= 4,
                "rolled over several times"
            );
            for i in 0..count {
                check_record(&log, i, &fields(i));
            }
            log.close().expect("close");
        }
        let log = Log::open(dir.path(), opts().io(io)).expect("reopen");
        assert_eq!(log.last_seq(), last_seq_of(count));
        for (i, record) in log.iter(0).enumerate() {
            let record = record.expect("iterate");
            assert_eq!(record.offset(), i as u64);
            assert_eq!(record.seq(), fields(i as u64).seq);
        }
        for i in [0, 1, 2, 3, 4, 199, count - 1] {
            check_record(&log, i, &fields(i));
        }
        let report = ringlog::verify(dir.path()).expect("verify");
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.records_checked, count);
        drop(log);
        let read_only = Log::open_read_only(dir.path(), opts()).expect("read-only");
        assert_eq!(read_only.last_seq(), last_seq_of(count));
        check_record(&read_only, 7, &fields(7));
    }
}

#[test]
fn entry_takes_any_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), opts()).expect("open");
    let owned_key = String::from("job-1");
    let owned_value = vec![1u8, 2, 3];
    let offset = log
        .append_entry(
            Entry::new("text payload")
                .key(&owned_key)
                .id(b"evt".as_slice())
                .header("bytes", &owned_value)
                .header("text", "value"),
        )
        .expect("entry");
    let record = log.read(offset).expect("read");
    assert_eq!(record.payload(), b"text payload");
    assert_eq!(record.key(), Some(&b"job-1"[..]));
    assert_eq!(record.id(), Some(&b"evt"[..]));
    assert_eq!(record.header("bytes"), Some(&[1u8, 2, 3][..]));
    assert_eq!(record.header("text"), Some(&b"value"[..]));
}

#[test]
fn plain_records_stay_plain_and_the_same_size() {
    let plain = tempfile::tempdir().expect("tempdir");
    let through_entries = tempfile::tempdir().expect("tempdir");
    let a = Log::open(plain.path(), opts()).expect("open");
    let b = Log::open(through_entries.path(), opts()).expect("open");
    for i in 0..50 {
        let payload = common::payload(i, common::mixed_len(i));
        assert_eq!(a.append(&payload).expect("append"), i);
        assert_eq!(
            b.append_entry(Entry::new(&payload).timestamp_ms(1_000))
                .expect("entry"),
            i
        );
        let record = b.read(i).expect("read");
        assert_eq!(record.key(), None);
        assert_eq!(record.id(), None);
        assert_eq!(record.seq(), None);
        assert_eq!(record.headers().count(), 0);
        assert_eq!(record.timestamp_ms(), 1_000);
    }
    let used = |log: &Log| -> Vec<u64> {
        log.segments()
            .expect("segments")
            .iter()
            .map(|s| s.used_bytes)
            .collect()
    };
    assert_eq!(
        used(&a),
        used(&b),
        "an entry with no fields is a plain frame"
    );
    // And an entry with a field costs its extension block only.
    let before = used(&b);
    b.append_entry(Entry::new(b"0123456789abcdef").key(b"k"))
        .expect("entry");
    let after = used(&b);
    // Frame header 24 + extension 8 + key 2 + 1 + payload 16 = 51, padded to 56, plus a
    // 32-byte commit marker.
    assert_eq!(after.last().unwrap() - before.last().unwrap(), 56 + 32);
}

#[test]
fn sequence_violations_append_nothing_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), opts()).expect("open");
        // Any first sequence is accepted, 0 included.
        assert_eq!(log.append_seq(0, b"zero").expect("seq 0"), 0);
        assert_eq!(log.append_seq(5, b"five").expect("seq 5"), 1);
        log.append(b"plain, no seq").expect("plain");
        for bad in [0, 4, 5] {
            match log.append_seq(bad, b"refused") {
                Err(Error::SequenceViolation { last, provided }) => {
                    assert_eq!((last, provided), (5, bad));
                }
                other => panic!("seq {bad}: {other:?}"),
            }
            match log.append_entry(Entry::new(b"refused").key(b"k").seq(bad)) {
                Err(Error::SequenceViolation { last: 5, provided }) => assert_eq!(provided, bad),
                other => panic!("entry seq {bad}: {other:?}"),
            }
        }
        let message = log.append_seq(3, b"x").unwrap_err().to_string();
        assert!(
            message.contains("3") && message.contains("5") && message.contains("increase"),
            "{message}"
        );
        assert_eq!(log.next_offset(), 3, "refused appends appended nothing");
        assert_eq!(log.last_seq(), Some(5));
        assert_eq!(log.append_seq(6, b"six").expect("seq 6"), 3);
        log.close().expect("close");
    }
    let log = Log::open(dir.path(), opts()).expect("reopen");
    assert_eq!(log.last_seq(), Some(6));
    assert!(matches!(
        log.append_seq(6, b"again"),
        Err(Error::SequenceViolation {
            last: 6,
            provided: 6
        })
    ));
    assert_eq!(log.append_seq(u64::MAX, b"max").expect("max"), 4);
    assert!(matches!(
        log.append_seq(u64::MAX, b"past max"),
        Err(Error::SequenceViolation { .. })
    ));
    let seqs: Vec<Option<u64>> = log.iter(0).map(|r| r.expect("read").seq()).collect();
    assert_eq!(seqs, [Some(0), Some(5), None, Some(6), Some(u64::MAX)]);
}

/// The last sequence is found again when the active segment holds none (the records
/// since it are plain ones in later segments), and after a crash (no clean close).
#[test]
fn last_seq_is_recovered_from_older_segments_and_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), opts()).expect("open");
        for i in 0..20 {
            log.append_seq(10 + i, b"sequenced").expect("seq");
        }
        let filler = vec![7u8; 3000];
        while log.segments().expect("segments").len() < 4 {
            log.append(&filler).expect("plain");
        }
        assert_eq!(log.last_seq(), Some(29));
        log.abandon();
    }
    let log = Log::open(dir.path(), opts()).expect("reopen after abandon");
    assert!(!log.recovery_report().clean_shutdown);
    assert_eq!(log.last_seq(), Some(29));
    assert!(log.append_seq(29, b"x").is_err());
    let offset = log.append_seq(30, b"y").expect("30");
    assert_eq!(log.read(offset).expect("read").seq(), Some(30));
    log.append(&vec![1u8; 60_000])
        .expect("a record that fills a segment");
    log.close().expect("close");
    drop(log);
    // The first call after this open is an append: it reads the last sequence itself.
    let log = Log::open(dir.path(), opts()).expect("reopen");
    assert!(matches!(
        log.append_seq(30, b"z"),
        Err(Error::SequenceViolation {
            last: 30,
            provided: 30
        })
    ));
    assert_eq!(log.last_seq(), Some(30));
}

#[test]
fn concurrent_append_seq_never_accepts_a_sequence_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), opts().durability(Durability::Sync)).expect("open");
    let threads = 4;
    let seqs_per_thread = 150u64;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut accepted = Vec::new();
                // Every thread tries every sequence, in the same order: each is taken
                // by exactly one of them, or refused because a higher one got in first.
                for seq in 1..=seqs_per_thread {
                    let payload = format!("thread {t} seq {seq}");
                    match log.append_seq(seq, payload.as_bytes()) {
                        Ok(offset) => accepted.push((seq, offset)),
                        Err(Error::SequenceViolation { last, provided }) => {
                            assert_eq!(provided, seq);
                            assert!(last >= seq);
                        }
                        Err(e) => panic!("append_seq: {e}"),
                    }
                }
                accepted
            })
        })
        .collect();
    let mut all: Vec<(u64, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort_by_key(|(_, offset)| *offset);
    let seqs: BTreeSet<u64> = all.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs.len(), all.len(), "a sequence was accepted twice");
    assert_eq!(
        log.next_offset(),
        all.len() as u64,
        "one record per success"
    );
    assert!(seqs.contains(&seqs_per_thread), "the last one was taken");
    // Offsets and sequences increase together, and each record holds its own.
    for pair in all.windows(2) {
        assert!(pair[0].1 < pair[1].1 && pair[0].0 < pair[1].0, "{pair:?}");
    }
    for (seq, offset) in &all {
        assert_eq!(log.read(*offset).expect("read").seq(), Some(*seq));
    }
    assert_eq!(log.last_seq(), Some(seqs_per_thread));
}

#[test]
fn bad_entries_are_refused_and_append_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), opts()).expect("open");
    log.append_seq(1, b"first").expect("first");
    let long = vec![b'k'; 1025];
    let names: Vec<String> = (0..33).map(|i| format!("h{i}")).collect();
    let big = vec![0u8; 40 << 10];
    let long_name = "n".repeat(65);
    let cases: Vec<(&str, Entry<'_>)> = vec![
        ("key", Entry::new(b"p").key(&long)),
        ("id", Entry::new(b"p").id(&long)),
        ("header \"kïnd\"", Entry::new(b"p").header("kïnd", b"v")),
        ("header \"a b\"", Entry::new(b"p").header("a b", b"v")),
        ("header \"\"", Entry::new(b"p").header("", b"v")),
        (
            "header \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\"",
            Entry::new(b"p").header(&long_name, b"v"),
        ),
        (
            "header \"kind\"",
            Entry::new(b"p").header("kind", b"1").header("kind", b"2"),
        ),
        (
            "headers",
            names
                .iter()
                .fold(Entry::new(b"p"), |e, n| e.header(n, b"v")),
        ),
        (
            "headers",
            Entry::new(b"p").header("a", &big).header("b", &big),
        ),
    ];
    for (field, entry) in cases {
        match log.append_entry(entry.seq(2)) {
            Err(Error::InvalidEntry { field: got, reason }) => {
                assert_eq!(got, field, "{reason}");
                let message = Error::InvalidEntry { field: got, reason }.to_string();
                assert!(message.contains("nothing was appended"), "{message}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(log.next_offset(), 1, "nothing appended");
    assert_eq!(
        log.last_seq(),
        Some(1),
        "a refused entry's sequence is not taken"
    );
    // The limits themselves are accepted.
    let key = vec![b'k'; 1024];
    let name = "n".repeat(64);
    let mut entry = Entry::new(b"p").key(&key).id(&key).header(&name, b"v");
    for n in &names[..31] {
        entry = entry.header(n, b"");
    }
    let offset = log.append_entry(entry.seq(2)).expect("at the limits");
    let record = log.read(offset).expect("read");
    assert_eq!(record.key(), Some(key.as_slice()));
    assert_eq!(record.headers().count(), 32);
    // A day ahead of the clock is refused as for append_at.
    assert!(matches!(
        log.append_entry(Entry::new(b"p").timestamp_ms(u64::MAX)),
        Err(Error::InvalidTimestamp { .. })
    ));
    // A read-only handle appends nothing.
    drop(log);
    let read_only = Log::open_read_only(dir.path(), opts()).expect("read-only");
    assert!(matches!(
        read_only.append_seq(9, b"p"),
        Err(Error::ReadOnly)
    ));
}

/// Finds the first extended frame in a segment file (bit 30 of the length word).
fn first_extended_frame(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut at = 64;
    while at + 24 <= bytes.len() {
        let word = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?);
        if word == 0 {
            return None;
        }
        let len = (word & ((1 << 30) - 1)) as usize;
        let padded = (len + 7) & !7;
        if word & (1 << 30) != 0 {
            return Some((at, padded));
        }
        at += padded;
    }
    None
}

/// An extension block that breaks the format under a valid checksum (a buggy or
/// hostile writer) is damage: reads of it fail with the segment and position, its
/// neighbours still read, verify reports it, and nothing panics.
#[test]
fn a_malformed_extension_is_corruption_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), opts()).expect("open");
        log.append(b"before").expect("plain");
        log.append_entry(Entry::new(b"payload").key(b"job-1").header("kind", b"x"))
            .expect("entry");
        log.append(b"after").expect("plain");
        log.close().expect("close");
    }
    let segment = common::segment_files(dir.path())
        .into_iter()
        .next()
        .expect("segment");
    let pristine = std::fs::read(&segment).expect("read");
    let nonce = u64::from_le_bytes(pristine[32..40].try_into().unwrap());
    let (at, padded) = first_extended_frame(&pristine).expect("an extended frame");
    // (what, byte of the frame, value): the block is at +24 (length u32, fields, count,
    // reserved u16), the key length at +32, the key "job-1" at +34, then the header name
    // length at +39 and "kind" at +40.
    let forgeries: [(&str, usize, u8); 6] = [
        ("block past the frame", 24, 200),
        ("unknown field bit", 28, 0x42),
        ("reserved bytes", 30, 1),
        ("header count", 29, 9),
        ("key length", 32, 0xff),
        ("header name", 41, b' '),
    ];
    for (what, byte, value) in forgeries {
        let mut bytes = pristine.clone();
        let frame = &mut bytes[at..at + padded];
        assert_ne!(frame[byte], value, "{what}: changes a byte");
        frame[byte] = value;
        ringlog::fuzzing::seal_frame(nonce, frame);
        assert!(
            ringlog::fuzzing::decode_record(frame, nonce).is_none(),
            "{what}: the forged frame decodes"
        );
        std::fs::write(&segment, &bytes).expect("write");
        let log = Log::open(dir.path(), opts())
            .unwrap_or_else(|e| panic!("{what}: open after a clean close: {e}"));
        match log.read(1) {
            Err(Error::Corruption {
                segment: path,
                position,
                reason,
            }) => {
                assert_eq!(path, segment, "{what}");
                assert_eq!(position, at as u64, "{what}: {reason}");
                assert!(reason.contains("extension"), "{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(log.read(0).expect("before").payload(), b"before");
        assert_eq!(log.read(2).expect("after").payload(), b"after");
        drop(log);
        let report = ringlog::verify(dir.path()).expect("verify");
        assert!(!report.is_clean(), "{what}: verify found nothing");
    }
    std::fs::write(&segment, &pristine).expect("restore");
    let log = Log::open(dir.path(), opts()).expect("open restored");
    assert_eq!(log.read(1).expect("entry").key(), Some(&b"job-1"[..]));
}

/// Sequences that go backwards on disk (forged under valid checksums: no writer makes
/// them) are reported by verify, with the segment and the position of the record; open
/// takes the highest as the last one.
#[test]
fn verify_reports_sequences_that_go_backwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), opts()).expect("open");
        log.append_seq(5, b"five").expect("5");
        log.append(b"plain").expect("plain");
        log.append_seq(6, b"six").expect("6");
        log.close().expect("close");
    }
    let report = ringlog::verify(dir.path()).expect("verify");
    assert!(report.is_clean(), "{:?}", report.problems);
    let segment = common::segment_files(dir.path())
        .into_iter()
        .next()
        .expect("segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let nonce = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
    let (first, padded) = first_extended_frame(&bytes).expect("seq 5");
    let (second_rel, second_padded) =
        first_extended_frame_after(&bytes, first + padded).expect("seq 6");
    let frame = &mut bytes[second_rel..second_rel + second_padded];
    // The sequence is the first field after the 8 fixed bytes of the block.
    frame[32..40].copy_from_slice(&4u64.to_le_bytes());
    ringlog::fuzzing::seal_frame(nonce, frame);
    std::fs::write(&segment, &bytes).expect("write");
    let report = ringlog::verify(dir.path()).expect("verify");
    let problem = report
        .problems
        .iter()
        .find(|p| p.message.contains("sequence"))
        .unwrap_or_else(|| panic!("not reported: {:?}", report.problems));
    assert_eq!(problem.kind, ringlog::ProblemKind::Corruption);
    assert_eq!(problem.path, segment);
    assert_eq!(problem.position, second_rel as u64);
    assert!(
        problem.message.contains("sequence 4 at offset 2") && problem.message.contains('5'),
        "{}",
        problem.message
    );
    let log = Log::open(dir.path(), opts()).expect("open");
    assert_eq!(log.read(2).expect("read").seq(), Some(4));
    assert_eq!(log.last_seq(), Some(5), "the highest on disk");
    assert!(log.append_seq(5, b"x").is_err());
}

fn first_extended_frame_after(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let (at, padded) = first_extended_frame(bytes.get(from - 64..)?)?;
    Some((at + from - 64, padded))
}

/// Entries on a store's topic.
#[test]
fn entries_on_a_store_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = ringlog::Store::open(dir.path(), opts()).expect("store");
        let topic = store.topic("jobs").expect("topic");
        topic.append_seq(1, b"a").expect("seq");
        topic
            .append_entry(Entry::new(b"b").key(b"job-9").seq(2))
            .expect("entry");
        assert!(topic.append_seq(2, b"c").is_err());
        store.close().expect("close");
    }
    let store = ringlog::Store::open(dir.path(), opts()).expect("reopen");
    let topic = store.topic("jobs").expect("topic");
    assert_eq!(topic.last_seq(), Some(2));
    assert_eq!(topic.read(1).expect("read").key(), Some(&b"job-9"[..]));
}

fn sim_opts() -> Options {
    opts().durability(Durability::Sync).io(IoBackend::Pwrite)
}

/// Power fails before every write or flush of a workload of entries (sequences, keys,
/// headers; single appends and batches of plain records between them), in every crash
/// mode: every acknowledged entry is back with its fields, nothing else is, and the
/// recovered last sequence is the last surviving record's, so the next `append_seq`
/// continues from it.
#[test]
fn entries_survive_power_cuts_on_the_simulated_disk() {
    let root = tempfile::tempdir().expect("tempdir");
    let workload = |log: &Log| -> u64 {
        let mut acked = 0;
        for i in 0..40u64 {
            let result = if i % 7 == 6 {
                let a = common::payload(i, 500);
                log.append_batch(&[&a, b"batch tail"])
                    .map(|r| r.end)
                    .map(|end| (end, None))
            } else {
                let f = fields(i);
                append_fields(log, &f).map(|o| (o + 1, f.seq))
            };
            match result {
                Ok((end, _)) => acked = end,
                Err(_) => break,
            }
        }
        acked
    };
    // What record `offset` must be: the workload is deterministic, so replaying it into
    // a fresh log names every offset.
    let reference = root.path().join("reference");
    let total_ops = {
        let disk = SimDisk::new();
        let log = Log::open_with_backend(&reference, sim_opts(), disk.backend()).expect("open");
        let acked = workload(&log);
        assert!(acked > 40, "{acked}");
        log.close().expect("close");
        disk.operations_count()
    };
    let reference = Log::open_read_only(&reference, sim_opts()).expect("reference");
    let mut states = 0;
    for stop in 1..=total_ops + 1 {
        let dir = root.path().join(format!("stop-{stop}"));
        let disk = SimDisk::new();
        disk.stop_at(stop);
        let log = Log::open_with_backend(&dir, sim_opts(), disk.backend()).expect("open");
        let acked = workload(&log);
        log.abandon();
        drop(log);
        let pending = disk.take_pending();
        for (variant, mode) in [
            CrashMode::DropAll,
            CrashMode::KeepAll,
            CrashMode::Subset,
            CrashMode::Torn,
        ]
        .into_iter()
        .enumerate()
        {
            let state = root.path().join(format!("state-{stop}-{variant}"));
            copy_dir(&dir, &state);
            let seed = stop * 31 + variant as u64;
            apply_crash(&pending, &dir, &state, mode, seed).expect("crash");
            let context = format!("stop {stop} {mode:?}");
            let log = Log::open(&state, sim_opts())
                .unwrap_or_else(|e| panic!("{context}: recovery: {e}"));
            let next = log.next_offset();
            assert!(next >= acked, "{context}: lost acknowledged records");
            let mut last_seq = None;
            for record in log.iter(0) {
                let record = record.unwrap_or_else(|e| panic!("{context}: {e}"));
                let want = reference.read(record.offset()).expect("reference record");
                assert_eq!(record.payload(), want.payload(), "{context}");
                assert_eq!(record.key(), want.key(), "{context}");
                assert_eq!(record.id(), want.id(), "{context}");
                assert_eq!(record.seq(), want.seq(), "{context}");
                assert!(record.headers().eq(want.headers()), "{context}");
                last_seq = record.seq().or(last_seq);
            }
            assert_eq!(log.last_seq(), last_seq, "{context}");
            let next_seq = last_seq.map_or(0, |s| s + 1);
            if let Some(last) = last_seq {
                assert!(log.append_seq(last, b"again").is_err(), "{context}");
            }
            assert_eq!(log.append_seq(next_seq, b"next").expect("next"), next);
            drop(log);
            std::fs::remove_dir_all(&state).expect("remove state");
            states += 1;
        }
        std::fs::remove_dir_all(&dir).expect("remove dir");
    }
    assert!(states > 40, "{states} crash states");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Idempotent appends
// ---------------------------------------------------------------------------------------

#[test]
fn append_once_appends_an_id_once_across_reopen_and_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), opts()).expect("open");
        assert_eq!(log.append_once(b"evt-1", b"one").expect("1"), (0, true));
        assert_eq!(
            log.append_once(b"evt-1", b"one again").expect("dup"),
            (0, false)
        );
        log.append(b"plain").expect("plain");
        // An id appended by append_entry counts too.
        assert_eq!(
            log.append_entry(Entry::new(b"two").id(b"evt-2").key(b"k"))
                .expect("entry"),
            2
        );
        assert_eq!(
            log.append_once(b"evt-2", b"two again").expect("dup"),
            (2, false)
        );
        let (offset, appended) = log
            .append_entry_once(Entry::new(b"three").id(b"evt-3").seq(9))
            .expect("3");
        assert_eq!((offset, appended), (3, true));
        // A duplicate's sequence is neither checked nor taken.
        assert_eq!(
            log.append_entry_once(Entry::new(b"three").id(b"evt-3").seq(1))
                .expect("dup"),
            (3, false)
        );
        assert_eq!(log.last_seq(), Some(9));
        assert_eq!(log.next_offset(), 4);
        assert!(matches!(
            log.append_entry_once(Entry::new(b"no id").key(b"k")),
            Err(Error::InvalidEntry { field, .. }) if field == "id"
        ));
        log.close().expect("close");
    }
    {
        let log = Log::open(dir.path(), opts()).expect("reopen");
        assert_eq!(log.append_once(b"evt-1", b"x").expect("dup"), (0, false));
        assert_eq!(log.append_once(b"evt-3", b"x").expect("dup"), (3, false));
        assert_eq!(log.append_once(b"evt-4", b"four").expect("4"), (4, true));
        assert_eq!(log.read(4).expect("read").id(), Some(&b"evt-4"[..]));
        // Abandoned: no clean close, as after a crash (the appends were durable).
        log.abandon();
    }
    let log = Log::open(dir.path(), opts()).expect("reopen after abandon");
    assert!(!log.recovery_report().clean_shutdown);
    for (id, offset) in [
        (&b"evt-1"[..], 0),
        (b"evt-2", 2),
        (b"evt-3", 3),
        (b"evt-4", 4),
    ] {
        assert_eq!(log.append_once(id, b"again").expect("dup"), (offset, false));
    }
    assert_eq!(log.next_offset(), 5);
    drop(log);
    let read_only = Log::open_read_only(dir.path(), opts()).expect("read-only");
    assert!(matches!(
        read_only.append_once(b"evt-9", b"x"),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn concurrent_duplicates_append_exactly_once() {
    for durability in [Durability::Sync, Durability::None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), opts().durability(durability)).expect("open");
        // Ids already on disk before the first append_once of this open.
        log.append_entry(Entry::new(b"old").id(b"id-0"))
            .expect("old");
        log.close().expect("close");
        drop(log);
        let log = Log::open(dir.path(), opts().durability(durability)).expect("reopen");
        let threads = 4;
        let ids = 120u64;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let log = log.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..ids)
                        .map(|i| {
                            let id = format!("id-{i}");
                            let payload = format!("thread {t} id {i}");
                            log.append_once(id.as_bytes(), payload.as_bytes())
                                .expect("append_once")
                        })
                        .collect::<Vec<(u64, bool)>>()
                })
            })
            .collect();
        let results: Vec<Vec<(u64, bool)>> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        log.sync().expect("sync");
        assert_eq!(log.next_offset(), ids, "{durability:?}: one record per id");
        for i in 0..ids as usize {
            let offsets: BTreeSet<u64> = results.iter().map(|r| r[i].0).collect();
            assert_eq!(offsets.len(), 1, "{durability:?}: id-{i} at {offsets:?}");
            let appended = results.iter().filter(|r| r[i].1).count();
            let want = usize::from(i != 0);
            assert_eq!(
                appended, want,
                "{durability:?}: id-{i} appended {appended}x"
            );
            let offset = *offsets.first().unwrap();
            assert_eq!(
                log.read(offset).expect("read").id(),
                Some(format!("id-{i}").as_bytes())
            );
        }
    }
}

/// Power cuts at every write or flush of a workload of `append_once` calls; after
/// each recovery the whole workload runs again: every id whose record survived returns
/// its offset and appends nothing, the others are appended, and in the end each id is
/// in the log exactly once.
#[test]
fn append_once_after_power_cuts_on_the_simulated_disk() {
    let root = tempfile::tempdir().expect("tempdir");
    let ids = 30u64;
    let id = |i: u64| format!("evt-{i:03}").into_bytes();
    let workload = |log: &Log| -> u64 {
        let mut acked = 0;
        for i in 0..ids {
            match log.append_once(&id(i), &common::payload(i, common::mixed_len(i))) {
                Ok((offset, _)) => acked = acked.max(offset + 1),
                Err(_) => break,
            }
        }
        acked
    };
    let total_ops = {
        let disk = SimDisk::new();
        let dir = root.path().join("dry");
        let log = Log::open_with_backend(&dir, sim_opts(), disk.backend()).expect("open");
        assert_eq!(workload(&log), ids);
        log.close().expect("close");
        disk.operations_count()
    };
    let mut states = 0;
    for stop in 1..=total_ops + 1 {
        let dir = root.path().join(format!("stop-{stop}"));
        let disk = SimDisk::new();
        disk.stop_at(stop);
        let log = Log::open_with_backend(&dir, sim_opts(), disk.backend()).expect("open");
        let acked = workload(&log);
        log.abandon();
        drop(log);
        let pending = disk.take_pending();
        for (variant, mode) in [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Torn]
            .into_iter()
            .enumerate()
        {
            let state = root.path().join(format!("state-{stop}-{variant}"));
            copy_dir(&dir, &state);
            apply_crash(&pending, &dir, &state, mode, stop * 7 + variant as u64).expect("crash");
            let context = format!("stop {stop} {mode:?}");
            let log = Log::open(&state, sim_opts())
                .unwrap_or_else(|e| panic!("{context}: recovery: {e}"));
            let survived = log.next_offset();
            assert!(survived >= acked, "{context}: lost acknowledged records");
            for i in 0..ids {
                let (offset, appended) = log
                    .append_once(&id(i), &common::payload(i, common::mixed_len(i)))
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                // Ids are appended in order, so the survivors are offsets 0..survived.
                if i < survived {
                    assert_eq!((offset, appended), (i, false), "{context}: id {i}");
                } else {
                    assert_eq!((offset, appended), (i, true), "{context}: id {i}");
                }
            }
            let in_log: Vec<Vec<u8>> = log
                .iter(0)
                .map(|r| r.expect("read").id().expect("an id").to_vec())
                .collect();
            assert_eq!(in_log, (0..ids).map(id).collect::<Vec<_>>(), "{context}");
            drop(log);
            std::fs::remove_dir_all(&state).expect("remove");
            states += 1;
        }
        std::fs::remove_dir_all(&dir).expect("remove");
    }
    assert!(states > 20, "{states} crash states");
}

/// The entry summaries of sealed segments (`<id>.entries`, docs/design.md 2.2.3): written
/// by the first `append_once` (or sequence check) that reads a sealed segment, used by
/// the next opens instead of a walk, and rebuilt when missing, damaged or stale.
#[test]
fn sealed_segments_get_entry_summaries_that_later_opens_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summaries = |dir: &Path| -> Vec<std::path::PathBuf> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "entries"))
            .collect();
        out.sort();
        out
    };
    let filler = vec![3u8; 3000];
    {
        let log = Log::open(dir.path(), opts()).expect("open");
        for i in 0..100u64 {
            let id = format!("evt-{i}");
            let offset = if i > 30 { i + 1 } else { i };
            assert_eq!(
                log.append_once(id.as_bytes(), &filler).expect("once"),
                (offset, true)
            );
            if i == 30 {
                log.append_seq(500, b"sequenced").expect("seq");
            }
        }
        assert!(log.segments().expect("segments").len() >= 3);
        log.close().expect("close");
    }
    assert!(summaries(dir.path()).is_empty(), "nothing needed one yet");
    let sealed_count = {
        let log = Log::open(dir.path(), opts()).expect("reopen");
        assert_eq!(
            log.append_once(b"evt-7", b"again").expect("dup"),
            (7, false)
        );
        // Sequence 500 is in a sealed segment: found through its summary.
        assert_eq!(log.last_seq(), Some(500));
        let sealed = log
            .segments()
            .expect("segments")
            .iter()
            .filter(|s| s.sealed)
            .count();
        log.close().expect("close");
        sealed
    };
    let files = summaries(dir.path());
    assert_eq!(
        files.len(),
        sealed_count,
        "one per sealed segment: {files:?}"
    );
    let written: Vec<_> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read summary"))
        .collect();
    // Used as they are by the next open.
    {
        let log = Log::open(dir.path(), opts()).expect("reopen");
        assert_eq!(
            log.append_once(b"evt-40", b"again").expect("dup"),
            (41, false)
        );
        log.close().expect("close");
    }
    for (file, bytes) in files.iter().zip(&written) {
        assert_eq!(
            &std::fs::read(file).expect("read"),
            bytes,
            "{file:?} rewritten"
        );
    }
    // Damaged, lost or from another segment: ignored and rebuilt.
    let mut damaged = written[0].clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x20;
    std::fs::write(&files[0], &damaged).expect("damage");
    std::fs::remove_file(&files[1]).expect("lose");
    if files.len() > 2 {
        std::fs::write(&files[2], &written[0]).expect("another segment's");
    }
    {
        let log = Log::open(dir.path(), opts()).expect("reopen");
        for i in 0..100u64 {
            let id = format!("evt-{i}");
            let want = if i > 30 { i + 1 } else { i };
            assert_eq!(
                log.append_once(id.as_bytes(), b"x").expect("dup"),
                (want, false)
            );
        }
        assert_eq!(log.last_seq(), Some(500));
        log.close().expect("close");
    }
    for (file, bytes) in files.iter().zip(&written) {
        assert_eq!(&std::fs::read(file).expect("rebuilt"), bytes, "{file:?}");
    }
    let report = ringlog::verify(dir.path()).expect("verify");
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// A truncation takes the sequences and ids of the records it cuts away with it (the
/// Raft case: a suffix is rewritten): the last sequence is the last one below the cut,
/// and an id cut away is appended again; below the cut nothing changes. The same after a
/// reopen, and through sealed segments' summaries.
#[test]
fn truncation_forgets_the_sequences_and_ids_it_cuts_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let filler = vec![5u8; 3000];
    let log = Log::open(dir.path(), opts()).expect("open");
    for i in 0..60u64 {
        let id = format!("evt-{i}");
        let entry = Entry::new(&filler).id(&id).seq(100 + i);
        assert_eq!(log.append_entry(entry).expect("entry"), i);
    }
    assert!(log.segments().expect("segments").len() >= 3);
    // Ids loaded (summaries of the sealed segments written) before the cut.
    assert_eq!(log.append_once(b"evt-50", b"x").expect("dup"), (50, false));
    log.truncate_from(20).expect("truncate");
    assert_eq!(log.next_offset(), 20);
    assert_eq!(log.last_seq(), Some(119), "the last one below the cut");
    assert!(matches!(
        log.append_seq(119, b"x"),
        Err(Error::SequenceViolation {
            last: 119,
            provided: 119
        })
    ));
    assert_eq!(log.append_seq(120, b"rewritten").expect("seq 120"), 20);
    assert_eq!(
        log.append_once(b"evt-50", b"again").expect("cut"),
        (21, true)
    );
    assert_eq!(log.append_once(b"evt-19", b"x").expect("kept"), (19, false));
    log.close().expect("close");
    drop(log);
    let log = Log::open(dir.path(), opts()).expect("reopen");
    assert_eq!(log.last_seq(), Some(120));
    assert_eq!(log.append_once(b"evt-50", b"x").expect("dup"), (21, false));
    assert_eq!(log.append_once(b"evt-30", b"x").expect("cut"), (22, true));
    assert_eq!(log.append_once(b"evt-3", b"x").expect("kept"), (3, false));
    drop(log);
    let report = ringlog::verify(dir.path()).expect("verify");
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// A trim forgets the ids of the records it removes, at once and after a reopen; caller
/// sequences never go backwards across a trim (the last one is kept while the log is
/// open, and found again below the trimmed start).
#[test]
fn trimmed_ids_are_forgotten_and_sequences_keep_increasing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), opts()).expect("open");
    for i in 0..10u64 {
        let id = format!("evt-{i}");
        let entry = Entry::new(b"small").id(&id).seq(10 + i);
        assert_eq!(log.append_entry(entry).expect("entry"), i);
    }
    assert_eq!(log.append_once(b"evt-2", b"x").expect("dup"), (2, false));
    assert_eq!(log.trim_before(5).expect("trim"), 5);
    assert_eq!(
        log.append_once(b"evt-2", b"again").expect("trimmed"),
        (10, true)
    );
    assert_eq!(log.append_once(b"evt-2", b"x").expect("dup"), (10, false));
    assert_eq!(log.append_once(b"evt-7", b"x").expect("kept"), (7, false));
    assert!(log.append_seq(19, b"x").is_err());
    log.close().expect("close");
    drop(log);
    let log = Log::open(dir.path(), opts()).expect("reopen");
    assert_eq!(log.first_offset(), 5);
    assert_eq!(
        log.append_once(b"evt-3", b"again").expect("trimmed"),
        (11, true)
    );
    assert_eq!(log.append_once(b"evt-2", b"x").expect("dup"), (10, false));
    assert_eq!(log.append_once(b"evt-8", b"x").expect("kept"), (8, false));
    assert_eq!(log.last_seq(), Some(19));
    assert!(log.append_seq(19, b"x").is_err());
}

/// Segments a trim deletes take their entry summaries with them.
#[test]
fn a_trim_deletes_the_entry_summaries_of_the_segments_it_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), opts()).expect("open");
    let filler = vec![0u8; 3000];
    for i in 0..80u64 {
        let id = format!("evt-{i}");
        assert_eq!(
            log.append_entry(Entry::new(&filler).id(&id))
                .expect("entry"),
            i
        );
    }
    log.close().expect("close");
    drop(log);
    let log = Log::open(dir.path(), opts()).expect("reopen");
    // The first append_once after the open writes the sealed segments' summaries.
    assert_eq!(log.append_once(b"evt-9", b"x").expect("dup"), (9, false));
    let has_summary = |id: u64| dir.path().join(format!("{id:020}.entries")).exists();
    let sealed: Vec<u64> = log
        .segments()
        .expect("segments")
        .iter()
        .filter(|s| s.sealed)
        .map(|s| s.segment_id)
        .collect();
    assert!(sealed.len() >= 2, "{sealed:?}");
    assert!(sealed.iter().all(|id| has_summary(*id)), "{sealed:?}");
    log.trim_before(79).expect("trim");
    assert!(
        sealed.iter().all(|id| !has_summary(*id)),
        "summaries left behind"
    );
    assert_eq!(
        log.append_once(b"evt-9", b"x").expect("trimmed"),
        (80, true)
    );
    assert_eq!(log.append_once(b"evt-79", b"x").expect("kept"), (79, false));
}

/// Entries carry their timestamps like plain records: `seek_time` (which walks frame
/// headers) finds them across rollovers, and iteration and following read them.
#[test]
fn entries_are_found_by_time_and_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), opts()).expect("open");
    let filler = vec![9u8; 2500];
    for i in 0..80u64 {
        let key = format!("k-{i}");
        let entry = Entry::new(&filler)
            .key(&key)
            .seq(i)
            .timestamp_ms(1_000_000 + i * 10);
        log.append_entry(entry).expect("entry");
        if i % 3 == 0 {
            log.append_at(1_000_000 + i * 10, b"plain").expect("plain");
        }
    }
    assert!(log.segments().expect("segments").len() >= 3);
    let at = log.seek_time(1_000_000 + 500).expect("seek");
    let record = log.read(at).expect("read");
    assert_eq!(record.timestamp_ms(), 1_000_000 + 500);
    assert_eq!(record.key(), Some(&b"k-50"[..]));
    let mut follower = log.follow(at).expect("follow");
    let next = follower.next().expect("one").expect("record");
    assert_eq!(next.offset(), at);
    assert_eq!(next.seq(), Some(50));
}
