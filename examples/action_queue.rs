// An action queue's write-ahead log: actions carry the caller's own sequence numbers,
// which must strictly increase and survive restarts; recovery is strict (a damaged log
// is refused, never silently shortened); and after a failed write or flush the log
// stays failed (poisoned) instead of acknowledging anything it may not hold.
//
// What it replaces: a binary frame file with a hand-written CRC check, "repair by
// truncating partial frames", and a writer flag that must be remembered after an error.
//
//     cargo run --example action_queue

use ringlog::{Durability, Error, FaultPlan, Log, Options, RecoveryPolicy};

fn opts() -> Options {
    Options::default()
        .durability(Durability::Sync)
        .recovery(RecoveryPolicy::Strict)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    {
        let queue = Log::open(dir.path(), opts())?;
        for seq in [10, 11, 15] {
            queue.append_seq(seq, format!("action {seq}").as_bytes())?;
        }
        // A duplicate or a step back is refused, and changes nothing.
        match queue.append_seq(15, b"action 15 again") {
            Err(Error::SequenceViolation { last, provided }) => {
                println!("refused: sequence {provided} after {last}")
            }
            other => panic!("expected a sequence violation, got {other:?}"),
        }
        queue.close()?;
    }
    // After a restart the last sequence is known again.
    let queue = Log::open(dir.path(), opts())?;
    assert_eq!(queue.last_seq(), Some(15));
    queue.append_seq(16, b"action 16")?;
    let sequences: Vec<u64> = queue
        .iter(0)
        .map(|r| r.map(|r| r.seq().unwrap_or(0)))
        .collect::<ringlog::Result<_>>()?;
    println!("sequences in the log: {sequences:?}");
    assert_eq!(sequences, [10, 11, 15, 16]);
    queue.close()?;

    // A disk that fails a flush (simulated): the append that needed it fails, and every
    // later one too, with the cause; reopening recovers what was durable.
    let failing = Log::open_with_faults(
        dir.path(),
        opts(),
        FaultPlan {
            fail_sync: Some(1),
            ..FaultPlan::default()
        },
    )?;
    let first = failing.append_seq(17, b"action 17");
    println!("append during the failure: {first:?}");
    assert!(first.is_err());
    match failing.append_seq(18, b"action 18") {
        Err(Error::Poisoned { cause }) => println!("poisoned: {cause}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    drop(failing);
    let queue = Log::open(dir.path(), opts())?;
    println!(
        "after reopening: last sequence {:?}, {} actions",
        queue.last_seq(),
        queue.next_offset()
    );
    assert!(queue.last_seq() >= Some(16));
    Ok(())
}
