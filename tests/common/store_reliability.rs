//! The store writer child and its checker, shared by the store kill -9 and power-cut
//! tests (`tests/store_kill9.rs`, `tests/powercut.rs`).
//!
//! The child opens a [`Store`] and, from several threads, appends durably to 8 base
//! topics (`t0`..`t7`, two per writer thread, so each topic has one appender and its
//! offsets are known before each append), while a churn thread creates new topics
//! (`d<generation>.<k>`, never reused), appends to them, and removes some. It reports
//! every acknowledged event on stdout; the parent kills it (or cuts the power), then
//! [`StoreModel::check`] compares the store on disk with what was acknowledged.
//!
//! Included from the test files after `reliability`:
//! `#[path = "common/store_reliability.rs"] mod store_reliability;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringlog::{IoBackend, Log, Store};

use crate::reliability::{
    child_options, env_u64, make_payload, parse_payload, Line, Meta, Rng, CHILD_DIR_ENV,
    CHILD_GEN_ENV, CHILD_IO_ENV, CHILD_SEED_ENV, CHILD_SEGMENT_BYTES, META_BYTES,
};

/// Topics every child appends to.
pub const BASE_TOPICS_COUNT: usize = 8;
/// Appending threads; each owns `BASE_TOPICS_COUNT / WRITER_THREADS_COUNT` base topics.
const WRITER_THREADS_COUNT: usize = 4;
/// Most topics the churn thread keeps besides the base ones (it removes above this).
const DYNAMIC_TOPICS_MAX: usize = 10;
/// Bytes of the topic identifier in front of every payload.
const TOPIC_ID_BYTES: usize = 8;

const _: () = assert!(BASE_TOPICS_COUNT % WRITER_THREADS_COUNT == 0);

pub fn base_topic(index: usize) -> String {
    format!("t{index}")
}

fn is_base_topic(name: &str) -> bool {
    (0..BASE_TOPICS_COUNT).any(|i| base_topic(i) == name)
}

/// FNV-1a of the topic name: the first 8 bytes of each of its payloads, so that a record
/// found in another topic cannot pass.
fn topic_id(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    })
}

/// A payload of topic `topic`: its id, then the self-describing payload of `meta`
/// (`meta.len` is the length of that part, at least `META_BYTES`).
pub fn make_store_payload(topic: &str, meta: Meta) -> Vec<u8> {
    let mut out = topic_id(topic).to_le_bytes().to_vec();
    out.extend_from_slice(&make_payload(meta));
    out
}

/// Parses and fully checks a payload read from `topic` at `offset`.
pub fn parse_store_payload(topic: &str, offset: u64, payload: &[u8]) -> Result<Meta, String> {
    let Some((id, rest)) = payload.split_first_chunk::<TOPIC_ID_BYTES>() else {
        return Err(format!(
            "topic {topic} offset {offset}: payload of {} bytes is too short",
            payload.len()
        ));
    };
    if u64::from_le_bytes(*id) != topic_id(topic) {
        return Err(format!(
            "topic {topic} offset {offset}: the record belongs to another topic (id {:#x})",
            u64::from_le_bytes(*id)
        ));
    }
    parse_payload(offset, rest).map_err(|e| format!("topic {topic}: {e}"))
}

/// The checksum an `ACK` line carries for a batch: CRC32C over the CRC32C of each payload.
fn batch_checksum(payload_checksums: impl IntoIterator<Item = u32>) -> u32 {
    payload_checksums
        .into_iter()
        .fold(0, |c, p| crc32c::crc32c_append(c, &p.to_le_bytes()))
}

// ---------------------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------------------

/// One line on stdout, ended by ` $` so that the parent can tell a whole line from the
/// start of one cut by the kill.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line} $");
    let _ = out.flush();
}

/// Dynamic topic names handed out by this child (across its store reopens).
static DYNAMIC_NAMES: AtomicU64 = AtomicU64::new(0);

/// The body of the store writer child. Does nothing unless the child environment is set.
///
/// Protocol (one line each, ending in ` $`): `OPENING`, `LEFTOVER <entry>` (a temporary
/// directory still in `topics/` after `Store::open` returned), `STORE_OPENED <topics>`,
/// `CREATING <t>`, `CREATED <t> <next_offset>` (`topic()` returned for a topic that did
/// not exist), `OPENED <t> <next_offset>` (for one that did), `ROLLING <t>`,
/// `ACK <t> <start> <end> <checksum>` (an append or batch returned Ok),
/// `FAIL <t> <what>` (an operation failed), `REMOVING <t>`, `REMOVED <t>`
/// (`remove_topic` returned Ok), `CLOSING`, `CLOSED <Ok|error>`, `OPENERR <error>`,
/// `DONE`.
pub fn store_child_main() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let generation = env_u64(CHILD_GEN_ENV, 1) as u32;
    let mut rng = Rng::new(env_u64(CHILD_SEED_ENV, 1));
    let io = match std::env::var(CHILD_IO_ENV).as_deref() {
        Ok("pwrite") => IoBackend::Pwrite,
        Ok("uring") => IoBackend::Uring,
        _ => IoBackend::Auto,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        say("OPENING");
        let store = match Store::open(&dir, child_options(io)) {
            Ok(store) => store,
            Err(e) => {
                say(&format!("OPENERR {}", one_line(&e)));
                std::process::exit(3);
            }
        };
        if let Ok(entries) = std::fs::read_dir(dir.join("topics")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('+') {
                    say(&format!("LEFTOVER {name}"));
                }
            }
        }
        let listed: BTreeSet<String> = match store.topics() {
            Ok(names) => names.into_iter().collect(),
            Err(e) => {
                say(&format!("OPENERR topics(): {}", one_line(&e)));
                std::process::exit(3);
            }
        };
        say(&format!("STORE_OPENED {}", listed.len()));
        let listed = Arc::new(listed);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..WRITER_THREADS_COUNT {
            let names: Vec<String> = (t..BASE_TOPICS_COUNT)
                .step_by(WRITER_THREADS_COUNT)
                .map(base_topic)
                .collect();
            let (store, listed, stop) = (store.clone(), listed.clone(), stop.clone());
            let seed = rng.next_u64();
            threads.push(std::thread::spawn(move || {
                writer_thread(&store, &names, &listed, generation, seed, &stop)
            }));
        }
        {
            let (store, listed, stop) = (store.clone(), listed.clone(), stop.clone());
            let seed = rng.next_u64();
            threads.push(std::thread::spawn(move || {
                churn_thread(&store, &listed, generation, seed, &stop)
            }));
        }
        let run_until = (Instant::now() + Duration::from_millis(rng.range(50, 800))).min(deadline);
        while Instant::now() < run_until && !threads.iter().all(|t| t.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        for thread in threads {
            let _ = thread.join();
        }
        say("CLOSING");
        match store.close() {
            Ok(()) => say("CLOSED Ok"),
            Err(e) => say(&format!("CLOSED {}", one_line(&e))),
        }
    }
    say("DONE");
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

/// A topic the child appends to, with its estimate of the active segment's use (to
/// announce rollovers).
struct Appender {
    name: String,
    log: Log,
    used_bytes: u64,
}

/// `store.topic(name)`, announced: `CREATING`/`CREATED` for a topic that was not listed
/// at open, `OPENED` for one that was.
fn open_topic(store: &Store, name: &str, existed: bool) -> Option<Appender> {
    if !existed {
        say(&format!("CREATING {name}"));
    }
    match store.topic(name) {
        Ok(log) => {
            let word = if existed { "OPENED" } else { "CREATED" };
            say(&format!("{word} {name} {}", log.next_offset()));
            let used_bytes = log
                .segments()
                .ok()
                .and_then(|s| s.last().map(|s| s.used_bytes))
                .unwrap_or(64);
            Some(Appender {
                name: name.to_string(),
                log,
                used_bytes,
            })
        }
        Err(e) => {
            say(&format!("FAIL {name} topic(): {}", one_line(&e)));
            None
        }
    }
}

/// Appends one record or batch to `to` and reports it. Err after a failure (reported).
fn append_one(to: &mut Appender, generation: u32, rng: &mut Rng) -> Result<(), ()> {
    let count = if rng.chance(0.3) { rng.range(2, 8) } else { 1 };
    let start = to.log.next_offset();
    let payloads: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let len = if rng.chance(0.1) {
                rng.range(1000, 6000)
            } else {
                rng.range(META_BYTES as u64, 700)
            };
            make_store_payload(
                &to.name,
                Meta {
                    offset: start + i,
                    generation,
                    len: len as u32,
                    batch_start: start,
                    batch_len: count as u32,
                },
            )
        })
        .collect();
    let needed: u64 = 32
        + payloads
            .iter()
            .map(|p| (24 + p.len() as u64 + 7) & !7)
            .sum::<u64>();
    if to.used_bytes + needed > CHILD_SEGMENT_BYTES {
        say(&format!("ROLLING {}", to.name));
        to.used_bytes = 64;
    }
    to.used_bytes += needed;
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let result = if count == 1 && rng.chance(0.5) {
        to.log.append(refs[0]).map(|o| o..o + 1)
    } else {
        to.log.append_batch(&refs)
    };
    match result {
        Ok(range) if range == (start..start + count) => {
            let checksum = batch_checksum(payloads.iter().map(|p| crc32c::crc32c(p)));
            say(&format!(
                "ACK {} {} {} {checksum}",
                to.name, range.start, range.end
            ));
            Ok(())
        }
        Ok(range) => {
            say(&format!(
                "FAIL {} append at {start}..{} returned offsets {range:?}",
                to.name,
                start + count
            ));
            Err(())
        }
        Err(e) => {
            say(&format!(
                "FAIL {} append at {start}..{}: {}",
                to.name,
                start + count,
                one_line(&e)
            ));
            Err(())
        }
    }
}

/// Appends to its base topics (opening or creating them first) until `stop`.
fn writer_thread(
    store: &Store,
    names: &[String],
    listed: &BTreeSet<String>,
    generation: u32,
    seed: u64,
    stop: &AtomicBool,
) {
    let mut rng = Rng::new(seed);
    let mut topics = Vec::new();
    for name in names {
        match open_topic(store, name, listed.contains(name)) {
            Some(topic) => topics.push(topic),
            None => return,
        }
    }
    while !stop.load(Ordering::SeqCst) {
        let k = rng.below(topics.len() as u64) as usize;
        if append_one(&mut topics[k], generation, &mut rng).is_err() {
            return;
        }
    }
}

/// Creates, appends to and removes the dynamic topics until `stop`.
fn churn_thread(
    store: &Store,
    listed: &BTreeSet<String>,
    generation: u32,
    seed: u64,
    stop: &AtomicBool,
) {
    let mut rng = Rng::new(seed);
    // (name, handle once opened)
    let mut dynamic: Vec<(String, Option<Appender>)> = listed
        .iter()
        .filter(|n| !is_base_topic(n))
        .map(|n| (n.clone(), None))
        .collect();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.below(15)));
        let roll = rng.below(10);
        if dynamic.len() < 2 || (roll <= 3 && dynamic.len() < DYNAMIC_TOPICS_MAX) {
            let name = format!(
                "d{generation}.{}",
                DYNAMIC_NAMES.fetch_add(1, Ordering::SeqCst)
            );
            let Some(mut topic) = open_topic(store, &name, false) else {
                return;
            };
            for _ in 0..rng.range(0, 3) {
                if append_one(&mut topic, generation, &mut rng).is_err() {
                    return;
                }
            }
            dynamic.push((name, Some(topic)));
        } else if roll <= 6 || dynamic.len() >= DYNAMIC_TOPICS_MAX {
            let k = rng.below(dynamic.len() as u64) as usize;
            let (name, handle) = dynamic.swap_remove(k);
            say(&format!("REMOVING {name}"));
            if let Err(e) = store.remove_topic(&name) {
                say(&format!("FAIL {name} remove_topic: {}", one_line(&e)));
                return;
            }
            say(&format!("REMOVED {name}"));
            // Its open handles are closed.
            if let Some(topic) = handle {
                match topic.log.append(b"after removal") {
                    Err(ringlog::Error::Closed) => {}
                    other => {
                        say(&format!(
                            "FAIL {name} an append after remove_topic returned {other:?}, not Closed"
                        ));
                        return;
                    }
                }
            }
        } else {
            let k = rng.below(dynamic.len() as u64) as usize;
            let (name, handle) = &mut dynamic[k];
            if handle.is_none() {
                let Some(topic) = open_topic(store, name, true) else {
                    return;
                };
                *handle = Some(topic);
            }
            if let Some(topic) = handle {
                for _ in 0..rng.range(1, 3) {
                    if append_one(topic, generation, &mut rng).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the child said
// ---------------------------------------------------------------------------------------

/// One whole line of the child, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opening,
    Leftover(String),
    StoreOpened,
    Creating(String),
    Created(String, u64),
    Opened(String, u64),
    Rolling(String),
    Ack {
        topic: String,
        start: u64,
        end: u64,
        checksum: u32,
    },
    Fail(String),
    Removing(String),
    Removed(String),
    Closing,
    Closed(String),
    OpenErr(String),
    Done,
}

/// Parses a line; `None` for a line cut short by the kill (no ` $` at its end) or for
/// anything else the child did not print.
pub fn parse_event(text: &str) -> Option<Event> {
    let text = text.strip_suffix(" $")?;
    let mut words = text.split_whitespace();
    let word = words.next()?;
    let mut name = || words.next().map(str::to_string);
    let event = match word {
        "OPENING" => Event::Opening,
        "LEFTOVER" => Event::Leftover(name()?),
        "STORE_OPENED" => Event::StoreOpened,
        "CREATING" => Event::Creating(name()?),
        "ROLLING" => Event::Rolling(name()?),
        "REMOVING" => Event::Removing(name()?),
        "REMOVED" => Event::Removed(name()?),
        "CLOSING" => Event::Closing,
        "DONE" => Event::Done,
        "CREATED" | "OPENED" => {
            let topic = name()?;
            let next = words.next()?.parse().ok()?;
            if word == "CREATED" {
                Event::Created(topic, next)
            } else {
                Event::Opened(topic, next)
            }
        }
        "ACK" => Event::Ack {
            topic: name()?,
            start: words.next()?.parse().ok()?,
            end: words.next()?.parse().ok()?,
            checksum: words.next()?.parse().ok()?,
        },
        "FAIL" => Event::Fail(text.to_string()),
        "CLOSED" => Event::Closed(text["CLOSED".len()..].trim().to_string()),
        "OPENERR" => Event::OpenErr(text.to_string()),
        _ => return None,
    };
    Some(event)
}

/// Every whole line of `lines`, parsed, with when it arrived.
pub fn parse_events(lines: &[Line]) -> Vec<(Instant, Event)> {
    lines
        .iter()
        .filter_map(|l| parse_event(&l.text).map(|e| (l.at, e)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------

/// What the checker knows of one topic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicState {
    /// Not on disk (never created, or a creation that did not take).
    Absent,
    /// `CREATING` said, `CREATED` not: on disk whole, or not at all.
    Creating,
    /// Created (acknowledged or seen on disk): must be there.
    Live,
    /// `REMOVING` said, `REMOVED` not: there whole, or gone.
    Removing,
    /// Removal acknowledged, or seen to have happened: never there again.
    Removed,
}

/// A batch the child acknowledged.
#[derive(Debug, Clone, Copy)]
struct AckedBatch {
    start: u64,
    end: u64,
    checksum: u32,
    generation: u32,
}

#[derive(Debug)]
struct TopicModel {
    state: TopicState,
    /// What the last check found in it.
    records: Vec<Meta>,
    /// Batches acknowledged, not yet checked on disk.
    unchecked: Vec<AckedBatch>,
}

impl TopicModel {
    fn new() -> TopicModel {
        TopicModel {
            state: TopicState::Absent,
            records: Vec::new(),
            unchecked: Vec::new(),
        }
    }
}

/// Counts from one check.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreCheckCounts {
    /// Records the child acknowledged (all found).
    pub acked_records: u64,
    /// Acknowledged topic creations and removals.
    pub created: u64,
    pub removed: u64,
    /// Unacknowledged creations found whole on disk / found absent.
    pub unacked_creations_kept: u64,
    pub unacked_creations_gone: u64,
    /// Unacknowledged removals found done / found not done.
    pub unacked_removals_done: u64,
    pub unacked_removals_undone: u64,
    /// Unacknowledged records found whole.
    pub unacked_survivors: u64,
    /// Temporary directories (`+new+`, `+gone+`) the crash left, before the next open.
    pub leftovers_on_disk: u64,
    /// Topics and records in the store now.
    pub topics: u64,
    pub records: u64,
    /// Failed operations (`FAIL`), failed opens and closes the child reported.
    pub failures: u64,
}

/// The checker's knowledge of the store: every topic name ever announced.
#[derive(Debug, Default)]
pub struct StoreModel {
    topics: BTreeMap<String, TopicModel>,
}

impl StoreModel {
    /// Topics that must be in the store now, sorted.
    pub fn live_topics(&self) -> Vec<String> {
        self.topics
            .iter()
            .filter(|(_, t)| t.state == TopicState::Live)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Records of `topic` as the last check found them.
    pub fn records_count(&self, topic: &str) -> u64 {
        self.topics.get(topic).map_or(0, |t| t.records.len() as u64)
    }

    /// Records in every live topic.
    pub fn total_records(&self) -> u64 {
        self.topics.values().map(|t| t.records.len() as u64).sum()
    }

    /// Applies what the child of `generation` said (`events`), then opens the store in
    /// `dir` read-only and checks it. With `faults_expected` false (kill -9), any failed
    /// operation of the child is an error; with it (power cuts) failures are counted.
    ///
    /// Checks:
    /// - every acknowledged created topic exists, unless its removal was acknowledged; a
    ///   removed topic never comes back, in `topics()` or as a directory; an
    ///   unacknowledged creation is absent or a whole topic; no directory in `topics/`
    ///   other than topics and the temporary ones the next open removes (and the child
    ///   said none were left after its open);
    /// - every acknowledged record is at its offset with the acknowledged bytes
    ///   (checksum); each topic is a gap-free prefix from 0 of what was appended to it,
    ///   whole batches only, every record valid and of this topic; records past what the
    ///   last check saw come from this generation; what the last check saw never
    ///   changes;
    /// - the child's first open of a topic recovered exactly what the last check saw.
    pub fn check(
        &mut self,
        dir: &Path,
        generation: u32,
        events: &[(Instant, Event)],
        faults_expected: bool,
    ) -> Result<StoreCheckCounts, String> {
        let mut counts = StoreCheckCounts::default();
        self.apply_events(generation, events, faults_expected, &mut counts)?;
        self.check_disk(dir, generation, &mut counts)?;
        Ok(counts)
    }

    fn apply_events(
        &mut self,
        generation: u32,
        events: &[(Instant, Event)],
        faults_expected: bool,
        counts: &mut StoreCheckCounts,
    ) -> Result<(), String> {
        // Topics this child opened or created already: the first open must find exactly
        // what the last check saw.
        let mut touched = BTreeSet::new();
        for (_, event) in events {
            match event {
                Event::Leftover(entry) => {
                    return Err(format!(
                        "topics/{entry} was still there after Store::open returned (a crash leftover open must remove)"
                    ))
                }
                Event::Creating(name) => {
                    let topic = self.topics.entry(name.clone()).or_insert_with(TopicModel::new);
                    match topic.state {
                        TopicState::Absent => topic.state = TopicState::Creating,
                        state => {
                            return Err(format!(
                                "the child created topic {name}, which the checker has as {state:?}: topics() did not list it"
                            ))
                        }
                    }
                }
                Event::Created(name, next) => {
                    let topic = self.topic_mut(name)?;
                    if topic.state != TopicState::Creating {
                        return Err(format!("CREATED {name} in state {:?}", topic.state));
                    }
                    if *next != 0 {
                        return Err(format!(
                            "the new topic {name} starts at offset {next}, not 0"
                        ));
                    }
                    topic.state = TopicState::Live;
                    topic.records.clear();
                    touched.insert(name.clone());
                    counts.created += 1;
                }
                Event::Opened(name, next) => {
                    let topic = self.topic_mut(name)?;
                    if topic.state != TopicState::Live {
                        return Err(format!("OPENED {name} in state {:?}", topic.state));
                    }
                    let seen = topic.records.len() as u64;
                    if touched.insert(name.clone()) {
                        if *next != seen {
                            return Err(format!(
                                "the child's recovery of topic {name} found it ending at offset {next}, the last check at {seen}"
                            ));
                        }
                    } else if *next < seen {
                        return Err(format!(
                            "topic {name} reopened at {next}, below the {seen} records checked before"
                        ));
                    }
                }
                Event::Ack {
                    topic: name,
                    start,
                    end,
                    checksum,
                } => {
                    let topic = self.topic_mut(name)?;
                    if topic.state != TopicState::Live {
                        return Err(format!(
                            "an append to topic {name} was acknowledged in state {:?}",
                            topic.state
                        ));
                    }
                    if start >= end {
                        return Err(format!("ACK {name} {start} {end}: empty range"));
                    }
                    topic.unchecked.push(AckedBatch {
                        start: *start,
                        end: *end,
                        checksum: *checksum,
                        generation,
                    });
                    counts.acked_records += end - start;
                }
                Event::Removing(name) => {
                    let topic = self.topic_mut(name)?;
                    if topic.state != TopicState::Live {
                        return Err(format!("REMOVING {name} in state {:?}", topic.state));
                    }
                    topic.state = TopicState::Removing;
                }
                Event::Removed(name) => {
                    let topic = self.topic_mut(name)?;
                    if topic.state != TopicState::Removing {
                        return Err(format!("REMOVED {name} in state {:?}", topic.state));
                    }
                    topic.state = TopicState::Removed;
                    topic.records = Vec::new();
                    topic.unchecked = Vec::new();
                    counts.removed += 1;
                }
                Event::Fail(what) | Event::OpenErr(what) => {
                    counts.failures += 1;
                    if !faults_expected {
                        return Err(format!("the child failed without any fault: {what}"));
                    }
                }
                Event::Closed(result) if result != "Ok" => {
                    counts.failures += 1;
                    if !faults_expected {
                        return Err(format!("Store::close failed without any fault: {result}"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut TopicModel, String> {
        self.topics
            .get_mut(name)
            .ok_or_else(|| format!("the child used topic {name}, which it never announced"))
    }

    fn check_disk(
        &mut self,
        dir: &Path,
        generation: u32,
        counts: &mut StoreCheckCounts,
    ) -> Result<(), String> {
        let store = match Store::open_read_only(dir) {
            Ok(store) => store,
            // Killed while the very first child was creating the store, before anything
            // was acknowledged.
            Err(ringlog::Error::WrongKind { .. })
                if self
                    .topics
                    .values()
                    .all(|t| matches!(t.state, TopicState::Absent | TopicState::Creating)) =>
            {
                for topic in self.topics.values_mut() {
                    topic.state = TopicState::Absent;
                }
                return Ok(());
            }
            Err(e) => return Err(format!("Store::open_read_only after the crash: {e}")),
        };
        let listed: BTreeSet<String> = store
            .topics()
            .map_err(|e| format!("topics() after the crash: {e}"))?
            .into_iter()
            .collect();
        // Nothing half: every entry of topics/ is a listed topic or a temporary directory.
        let topics_dir = dir.join("topics");
        if let Ok(entries) = std::fs::read_dir(&topics_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("+new+") || name.starts_with("+gone+") {
                    counts.leftovers_on_disk += 1;
                } else if !listed.contains(&name) {
                    return Err(format!(
                        "topics/{name} is on disk but is not a topic (half created or half removed; checker state {:?})",
                        self.topics.get(&name).map(|t| t.state)
                    ));
                }
            }
        }
        for name in &listed {
            let Some(topic) = self.topics.get_mut(name) else {
                return Err(format!(
                    "topic {name} is in the store, but no child ever created it"
                ));
            };
            match topic.state {
                TopicState::Absent => {
                    return Err(format!(
                        "topic {name} is in the store, but its creation was never started since it was last absent"
                    ))
                }
                TopicState::Removed => {
                    return Err(format!(
                        "topic {name} came back after its removal was acknowledged (or seen done)"
                    ))
                }
                TopicState::Creating => {
                    counts.unacked_creations_kept += 1;
                    topic.state = TopicState::Live;
                    topic.records.clear();
                }
                TopicState::Removing => {
                    counts.unacked_removals_undone += 1;
                    topic.state = TopicState::Live;
                }
                TopicState::Live => {}
            }
        }
        for (name, topic) in &mut self.topics {
            if listed.contains(name) {
                continue;
            }
            match topic.state {
                TopicState::Live => {
                    return Err(format!(
                        "topic {name} is gone: its creation was acknowledged (or it was seen) and its removal never started; {} records were in it at the last check, {} acknowledged batches since",
                        topic.records.len(),
                        topic.unchecked.len()
                    ))
                }
                TopicState::Creating => {
                    counts.unacked_creations_gone += 1;
                    topic.state = TopicState::Absent;
                    topic.records.clear();
                }
                TopicState::Removing => {
                    counts.unacked_removals_done += 1;
                    topic.state = TopicState::Removed;
                    topic.records = Vec::new();
                    topic.unchecked = Vec::new();
                }
                TopicState::Absent | TopicState::Removed => {}
            }
        }
        for name in &listed {
            let log = store
                .topic(name)
                .map_err(|e| format!("topic {name}: open read-only after the crash: {e}"))?;
            let topic = self.topics.get_mut(name).expect("listed topics are known");
            let survivors = check_topic(name, &log, topic, generation)?;
            counts.unacked_survivors += survivors;
            counts.records += topic.records.len() as u64;
        }
        counts.topics = listed.len() as u64;
        Ok(())
    }
}

/// Reads topic `name` whole and checks it against `topic` (see [`StoreModel::check`]);
/// returns how many records past the last check were not acknowledged.
fn check_topic(
    name: &str,
    log: &Log,
    topic: &mut TopicModel,
    generation: u32,
) -> Result<u64, String> {
    let before = topic.records.len();
    let next = log.next_offset();
    if log.first_offset() != 0 {
        return Err(format!(
            "topic {name}: first offset is {}",
            log.first_offset()
        ));
    }
    let mut found = Vec::with_capacity(next as usize);
    let mut checksums = Vec::with_capacity(next as usize);
    for (i, record) in log.iter(0).enumerate() {
        let i = i as u64;
        let record = record.map_err(|e| format!("topic {name}: reading offset {i}: {e}"))?;
        if record.offset() != i {
            return Err(format!(
                "topic {name}: record {i} has offset {}",
                record.offset()
            ));
        }
        found.push(parse_store_payload(name, i, record.payload())?);
        checksums.push(crc32c::crc32c(record.payload()));
    }
    if found.len() as u64 != next {
        return Err(format!(
            "topic {name}: iteration gave {} records, next_offset is {next}",
            found.len()
        ));
    }
    // Every acknowledged batch, at its offsets, with its bytes.
    let mut acked = BTreeSet::new();
    for batch in &topic.unchecked {
        if batch.end > next {
            let lost: u64 = topic
                .unchecked
                .iter()
                .map(|b| b.end.saturating_sub(b.start.max(next)))
                .sum();
            return Err(format!(
                "topic {name}: acknowledged batch {}..{} (generation {}) is lost: the topic ends at {next}; {lost} acknowledged records lost; the last check saw {before} records",
                batch.start, batch.end, batch.generation
            ));
        }
        let range = batch.start as usize..batch.end as usize;
        if batch_checksum(checksums[range.clone()].iter().copied()) != batch.checksum {
            return Err(format!(
                "topic {name}: acknowledged batch {}..{} (generation {}) holds other bytes: {:?}",
                batch.start, batch.end, batch.generation, &found[range]
            ));
        }
        for meta in &found[range] {
            if meta.generation != batch.generation
                || meta.batch_start != batch.start
                || meta.batch_start + meta.batch_len as u64 != batch.end
            {
                return Err(format!(
                    "topic {name}: acknowledged batch {}..{} (generation {}) now holds {meta:?}",
                    batch.start, batch.end, batch.generation
                ));
            }
        }
        acked.extend(batch.start..batch.end);
    }
    // What the last check saw never changes.
    if found.len() < before {
        return Err(format!(
            "topic {name}: shrank from {before} to {} records",
            found.len()
        ));
    }
    for (i, (old, new)) in topic.records.iter().zip(&found).enumerate() {
        if old != new {
            return Err(format!(
                "topic {name}: offset {i} changed from {old:?} to {new:?}"
            ));
        }
    }
    // New records come from this generation, in whole batches.
    let mut survivors = 0;
    for meta in &found[before..] {
        if meta.generation != generation {
            return Err(format!(
                "topic {name}: offset {} holds a record of generation {} past the previous end {before} (generation {generation} wrote there): resurrected or phantom",
                meta.offset, meta.generation
            ));
        }
        if !acked.contains(&meta.offset) {
            survivors += 1;
        }
    }
    let mut i = 0usize;
    while i < found.len() {
        let first = found[i];
        if first.batch_start != first.offset {
            return Err(format!(
                "topic {name}: offset {} starts a run but belongs to the batch starting at {}",
                first.offset, first.batch_start
            ));
        }
        for k in 0..first.batch_len as usize {
            let Some(r) = found.get(i + k) else {
                return Err(format!(
                    "topic {name}: batch {}..+{} is torn: the topic ends at {}",
                    first.batch_start,
                    first.batch_len,
                    found.len()
                ));
            };
            if r.batch_start != first.batch_start
                || r.batch_len != first.batch_len
                || r.generation != first.generation
            {
                return Err(format!("topic {name}: batch {first:?} is mixed with {r:?}"));
            }
        }
        i += first.batch_len as usize;
    }
    topic.records = found;
    topic.unchecked.clear();
    Ok(survivors)
}

/// After the last cycle: the writer's own open (in this process) removes every leftover,
/// lists exactly the live topics, and recovers each to what the last check saw; after a
/// clean close, a read-only open agrees.
pub fn final_check(dir: &Path, model: &StoreModel) -> Result<(), String> {
    let live = model.live_topics();
    {
        let store = Store::open(dir, child_options(IoBackend::Auto))
            .map_err(|e| format!("final Store::open: {e}"))?;
        let entries: Vec<String> = std::fs::read_dir(dir.join("topics"))
            .map_err(|e| format!("read topics/: {e}"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('+'))
            .collect();
        if !entries.is_empty() {
            return Err(format!(
                "after Store::open, topics/ still holds {entries:?}"
            ));
        }
        let listed = store.topics().map_err(|e| format!("topics(): {e}"))?;
        if listed != live {
            return Err(format!(
                "the final open lists {listed:?}, the checker expects {live:?}"
            ));
        }
        for name in &listed {
            let log = store
                .topic(name)
                .map_err(|e| format!("final open of topic {name}: {e}"))?;
            if log.next_offset() != model.records_count(name) {
                return Err(format!(
                    "the final open of topic {name} recovered {} records, the last check saw {}",
                    log.next_offset(),
                    model.records_count(name)
                ));
            }
        }
        store.close().map_err(|e| format!("final close: {e}"))?;
    }
    let store = Store::open_read_only(dir).map_err(|e| format!("read-only reopen: {e}"))?;
    for name in &live {
        let log = store
            .topic(name)
            .map_err(|e| format!("read-only reopen of topic {name}: {e}"))?;
        if !log.recovery_report().clean_shutdown {
            return Err(format!("topic {name} was not closed cleanly"));
        }
        if log.next_offset() != model.records_count(name) {
            return Err(format!("topic {name} changed across a clean close"));
        }
    }
    Ok(())
}
