// A stateful run store: one topic per run, appends idempotent by event id (a retried
// request appends nothing twice), queries after / before / limit / tail, and compaction
// as a snapshot of the run's state plus a trim, never a rewrite of the file.
//
// What it replaces: a JSON-lines file per run with an in-memory id map rebuilt by
// scanning, torn-tail repair by hand, and compaction by rewriting the whole file.
//
//     cargo run --example run_store

use ringlog::{Entry, Options, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Options::default())?;
    let run = store.topic("run-7f3a")?;
    let mut appended = 0;
    for (event_id, step) in [
        ("e1", "fetch"),
        ("e2", "parse"),
        ("e2", "parse"), // a retried request
        ("e3", "score"),
        ("e4", "store"),
        ("e3", "score"), // and another
    ] {
        let (offset, new) = run.append_entry_once(Entry::new(step).id(event_id))?;
        if new {
            appended += 1;
        } else {
            println!("{event_id} is already at offset {offset}");
        }
    }
    assert_eq!(appended, 4);
    // Queries: after an offset with a limit, before an offset, the tail.
    let after: Vec<String> = run
        .read_range(1, 2)?
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
        .collect();
    let before: Vec<u64> = run.read_before(3, 10)?.iter().map(|r| r.offset()).collect();
    let tail = run.tail(1)?;
    println!(
        "after 1 (limit 2): {after:?}; before 3: {before:?}; last: #{}",
        tail[0].offset()
    );
    assert_eq!(after, ["parse", "score"]);
    assert_eq!(before, [0, 1, 2]);

    // Compaction: the run's state as of now, then the events before it go.
    let state = format!("steps done: {}", run.next_offset());
    run.save_snapshot(run.next_offset(), state.as_bytes())?;
    run.trim_before(run.next_offset())?;
    run.append_entry_once(Entry::new("report").id("e5"))?;
    // A reader after a restart: the snapshot, then the events after it.
    let snapshot = run.latest_snapshot()?.expect("saved above");
    let rest: Vec<String> = run
        .iter(snapshot.offset())
        .map(|r| r.map(|r| String::from_utf8_lossy(r.payload()).into_owned()))
        .collect::<ringlog::Result<_>>()?;
    println!(
        "state {:?} at offset {}, then {rest:?}",
        String::from_utf8_lossy(snapshot.bytes()),
        snapshot.offset()
    );
    assert_eq!(rest, ["report"]);
    // Ids of trimmed records are forgotten: only what the log holds is deduplicated.
    assert_eq!(run.first_offset(), 4);
    store.close()?;
    Ok(())
}
