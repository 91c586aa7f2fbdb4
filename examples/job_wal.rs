// A job runtime's write-ahead log: every job's `started` and `finished` events go to one
// topic, keyed by job id, with the event kind as a header. On restart the runtime replays
// the log into its state (which jobs run, which finished how), and shows the last events,
// without decoding payloads it does not need.
//
// What it replaces: a JSON-lines file with an fsync per event, rotation by renaming, and
// a reader that scans the whole file for the last N lines.
//
//     cargo run --example job_wal

use std::collections::BTreeMap;

use ringlog::{Durability, Entry, Options, Store};

/// What the runtime knows of a job after replay.
#[derive(Debug, PartialEq)]
enum JobState {
    Running,
    Finished { ok: bool },
}

fn record_job(store: &Store, job: &str, kind: &str, detail: &str) -> ringlog::Result<u64> {
    let wal = store.topic("jobs")?;
    let payload = format!(r#"{{"job":"{job}","detail":"{detail}"}}"#);
    wal.append_entry(Entry::new(&payload).key(job).header("kind", kind))
}

fn replay(store: &Store) -> ringlog::Result<BTreeMap<String, JobState>> {
    let wal = store.topic("jobs")?;
    let mut jobs = BTreeMap::new();
    for record in wal.iter(wal.first_offset()) {
        let record = record?;
        let job = String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned();
        let state = match record.header("kind") {
            Some(b"job.started") => JobState::Running,
            Some(b"job.finished") => JobState::Finished { ok: true },
            Some(b"job.failed") => JobState::Finished { ok: false },
            _ => continue,
        };
        jobs.insert(job, state);
    }
    Ok(jobs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let opts = Options::default().durability(Durability::Sync);
    {
        let store = Store::open(dir.path(), opts.clone())?;
        record_job(&store, "job-1", "job.started", "build")?;
        record_job(&store, "job-2", "job.started", "test")?;
        record_job(&store, "job-1", "job.finished", "ok")?;
        record_job(&store, "job-3", "job.started", "deploy")?;
        record_job(&store, "job-2", "job.failed", "exit 1")?;
        // The process dies here: no close (every append above was durable on return).
    }
    let store = Store::open(dir.path(), opts)?;
    let jobs = replay(&store)?;
    println!("after restart: {jobs:?}");
    assert_eq!(jobs["job-1"], JobState::Finished { ok: true });
    assert_eq!(jobs["job-2"], JobState::Finished { ok: false });
    assert_eq!(jobs["job-3"], JobState::Running);
    // The last events, straight from the end of the log.
    let last = store.topic("jobs")?.tail(2)?;
    for record in &last {
        println!(
            "#{} {} {}",
            record.offset(),
            String::from_utf8_lossy(record.header("kind").unwrap_or_default()),
            String::from_utf8_lossy(record.payload())
        );
    }
    assert_eq!(last[1].header("kind"), Some(&b"job.failed"[..]));
    store.close()?;
    Ok(())
}
