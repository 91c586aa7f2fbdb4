//! `Log::in_memory` and `Store::in_memory`: the same API, nothing on disk, nothing left.

use ringlog::{Log, Options, Store};

#[test]
fn an_in_memory_log_works_like_a_log_and_leaves_nothing() {
    let log = Log::in_memory(Options::default().segment_bytes(64 << 10)).unwrap();
    let dir = log.dir().to_path_buf();
    assert!(dir.starts_with("/dev/shm") || dir.starts_with(std::env::temp_dir()));
    for i in 0..500u32 {
        assert_eq!(log.append(&i.to_le_bytes()).unwrap(), u64::from(i));
    }
    let mut follower = log.follow(490).unwrap();
    assert_eq!(follower.next().unwrap().unwrap().offset(), 490);
    log.truncate_from(400).unwrap();
    log.trim_before(100).unwrap();
    assert_eq!((log.first_offset(), log.next_offset()), (100, 400));
    assert_eq!(log.read(399).unwrap().payload(), 399u32.to_le_bytes());
    assert!(log.segments().unwrap().len() > 1);
    let clone = log.clone();
    drop(log);
    assert!(dir.exists(), "removed while a handle lives");
    drop(follower);
    drop(clone);
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn an_in_memory_store_works_like_a_store_and_leaves_nothing() {
    let store = Store::in_memory().unwrap();
    let dir = {
        let orders = store.topic("orders").unwrap();
        let jobs = store.topic("jobs").unwrap();
        orders.append(b"o1").unwrap();
        jobs.append(b"j1").unwrap();
        assert_eq!(store.topics().unwrap(), ["jobs", "orders"]);
        orders
            .dir()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf()
    };
    assert!(dir.exists());
    let two = Store::in_memory().unwrap();
    assert!(
        two.topics().unwrap().is_empty(),
        "in-memory stores are separate"
    );
    drop(store);
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn describe_lists_every_topic_with_its_offsets_and_bytes() {
    let store = Store::in_memory().unwrap();
    let orders = store.topic("orders").unwrap();
    for i in 0..10u8 {
        orders.append(&[i; 100]).unwrap();
    }
    orders.trim_before(4).unwrap();
    orders.consumer("billing").unwrap().commit(6).unwrap();
    store.topic("audit").unwrap();
    let d = store.describe().unwrap();
    assert_eq!(d.format_version, ringlog::FORMAT_VERSION);
    assert!(!d.read_only);
    let names: Vec<&str> = d.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["audit", "orders"]);
    let o = &d.topics[1];
    assert_eq!((o.first_offset, o.next_offset, o.records_count), (4, 10, 6));
    assert_eq!(o.consumers, [("billing".to_string(), Some(6))]);
    assert!(o.bytes >= 64 << 10);
    let text = d.to_string();
    assert!(
        text.contains("orders") && text.contains("billing@6"),
        "{text}"
    );
}
