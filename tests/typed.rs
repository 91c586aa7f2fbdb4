//! Typed events (`TypedLog`, feature `serde`; the tests build the library with it).

use serde::{Deserialize, Serialize};

use ringlog::{Codec, Error, Log, Options, TypedLog};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum JobEvent {
    Started { job: u64, name: String },
    Finished { job: u64, ok: bool },
}

fn events() -> Vec<JobEvent> {
    (0..50u64)
        .map(|job| {
            if job % 2 == 0 {
                JobEvent::Started {
                    job,
                    name: format!("job-{job}"),
                }
            } else {
                JobEvent::Finished {
                    job,
                    ok: job % 3 != 0,
                }
            }
        })
        .collect()
}

#[test]
fn both_codecs_round_trip_across_a_reopen() {
    for codec in [Codec::Json, Codec::Binary] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default().segment_bytes(64 << 10);
        {
            let typed: TypedLog<JobEvent> =
                TypedLog::with_codec(Log::open(dir.path(), opts.clone()).unwrap(), codec);
            for (i, event) in events().iter().enumerate() {
                assert_eq!(typed.append(event).unwrap(), i as u64);
            }
            let first = typed.append_batch(&events()[..3]).unwrap();
            assert_eq!(first, 50);
        }
        let typed: TypedLog<JobEvent> =
            TypedLog::with_codec(Log::open(dir.path(), opts).unwrap(), codec);
        let back: Vec<JobEvent> = typed
            .iter(0)
            .take(50)
            .collect::<ringlog::Result<_>>()
            .unwrap();
        assert_eq!(back, events(), "{codec:?}");
        assert_eq!(typed.read(51).unwrap(), events()[1]);
        let mut follower = typed.follow(52).unwrap();
        assert_eq!(follower.next().unwrap().unwrap(), events()[2]);
        typed.append(&events()[7]).unwrap();
        assert_eq!(follower.next().unwrap().unwrap(), events()[7]);
    }
    // JSON stays readable as text.
    let log = Log::in_memory(Options::default()).unwrap();
    let typed: TypedLog<JobEvent> = TypedLog::new(log.clone());
    typed.append(&events()[1]).unwrap();
    assert_eq!(
        log.read(0).unwrap().payload(),
        br#"{"Finished":{"job":1,"ok":true}}"#
    );
}

#[test]
fn a_payload_that_does_not_decode_names_its_offset() {
    let log = Log::in_memory(Options::default()).unwrap();
    log.append(b"not json at all").unwrap();
    let typed: TypedLog<JobEvent> = TypedLog::new(log.clone());
    match typed.read(0) {
        Err(Error::Decode { offset: 0, reason }) => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }
    match typed.iter(0).next() {
        Some(Err(Error::Decode { offset: 0, .. })) => {}
        other => panic!("{other:?}"),
    }
    // A value of another type: also a Decode error, never a wrong value.
    let numbers: TypedLog<u64> = TypedLog::with_codec(log.clone(), Codec::Binary);
    numbers.append(&7).unwrap();
    assert!(matches!(
        typed.read(1),
        Err(Error::Decode { offset: 1, .. })
    ));
    assert_eq!(numbers.read(1).unwrap(), 7);
}
