// An event bus: topics, subscribers that catch up on history and then follow new events
// as they are published (blocking, never polling), consumer positions that survive a
// restart, trimming what every consumer has read, and a description of the bus.
//
// What it replaces: per-topic files read from the start on every poll, cursor files
// rewritten by rename, and compaction by rewriting.
//
//     cargo run --example event_bus

use std::time::Duration;

use ringlog::{Options, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Options::default())?;
    let orders = store.topic("orders")?;
    store.topic("audit")?.append(b"bus started")?;
    for n in 1..=3 {
        orders.append(format!("order {n}").as_bytes())?;
    }

    // A subscriber: history first, then new events as they come.
    let billing = orders.consumer("billing")?;
    let mut follower = billing.follow()?;
    let subscriber = std::thread::spawn(move || -> ringlog::Result<Vec<String>> {
        let mut seen = Vec::new();
        while let Some(record) = follower.next_timeout(Duration::from_secs(5)) {
            let record = record?;
            seen.push(String::from_utf8_lossy(record.payload()).into_owned());
            if seen.len() == 5 {
                break;
            }
        }
        Ok(seen)
    });
    orders.append(b"order 4")?;
    orders.append(b"order 5")?;
    let seen = subscriber.join().expect("subscriber")?;
    println!("billing saw {seen:?}");
    assert_eq!(seen.len(), 5);
    // It processed everything: its position is durable when commit returns.
    billing.commit(orders.next_offset())?;

    // After a restart the consumer resumes where it left off.
    drop(billing);
    drop(orders);
    store.close()?;
    let store = Store::open(dir.path(), Options::default())?;
    let orders = store.topic("orders")?;
    let billing = orders.consumer("billing")?;
    assert_eq!(billing.position(), Some(5));
    orders.append(b"order 6")?;
    let next = billing.follow()?.next().expect("one more")?;
    println!(
        "after restart billing resumes at #{}: {:?}",
        next.offset(),
        String::from_utf8_lossy(next.payload())
    );
    assert_eq!(next.offset(), 5);

    // Everything every consumer has read can go.
    let read_by_all = orders
        .consumers()?
        .iter()
        .filter_map(|(_, position)| *position)
        .min()
        .unwrap_or(0);
    orders.trim_before(read_by_all)?;
    println!("{}", store.describe()?);
    assert_eq!(orders.first_offset(), 5);
    store.close()?;
    Ok(())
}
