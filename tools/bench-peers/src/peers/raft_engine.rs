//! raft-engine (TiKV's raft log store): many raft groups share one log stream; entries
//! are protobuf messages with consecutive indexes per group.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, ensure, Result};
use protobuf::{CachedSize, CodedInputStream, CodedOutputStream, ProtobufResult, UnknownFields};
use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize};

use crate::peer::{Mode, Peer};

/// Entries fetched per call when scanning.
const SCAN_ENTRIES: u64 = 4096;

pub struct RaftEngine {
    engine: Engine,
    /// Next raft index of each group (one group per producer thread).
    next_index: Mutex<HashMap<u64, u64>>,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    let config = Config {
        dir: dir
            .to_str()
            .ok_or_else(|| anyhow!("raft-engine: directory {} is not UTF-8", dir.display()))?
            .to_owned(),
        // The payloads are random letters: compressing them costs time and saves little.
        batch_compression_threshold: ReadableSize(0),
        ..Config::default()
    };
    let engine =
        Engine::open(config).map_err(|e| anyhow!("raft-engine: open {}: {e}", dir.display()))?;
    Ok(Box::new(RaftEngine {
        engine,
        next_index: Mutex::new(HashMap::new()),
    }))
}

/// Record `n` of producer `p` is entry `n + 1` of raft group `p + 1`.
fn group(producer: usize) -> u64 {
    producer as u64 + 1
}

impl RaftEngine {
    /// Takes the next index of `group`. Each group has one writer thread, so indexes reach
    /// the engine in order.
    fn take_index(&self, group: u64) -> u64 {
        let mut next = self
            .next_index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = next
            .entry(group)
            .or_insert_with(|| self.engine.last_index(group).map_or(1, |last| last + 1));
        let index = *slot;
        *slot += 1;
        index
    }

    fn write(&self, producer: usize, payload: &[u8], sync: bool) -> Result<()> {
        let group = group(producer);
        let entry = Entry {
            index: self.take_index(group),
            data: payload.to_vec(),
            ..Entry::default()
        };
        let mut batch = LogBatch::with_capacity(1);
        batch
            .add_entries::<Entry>(group, std::slice::from_ref(&entry))
            .map_err(|e| anyhow!("raft-engine: add_entries: {e}"))?;
        self.engine
            .write(&mut batch, sync)
            .map_err(|e| anyhow!("raft-engine: write: {e}"))?;
        Ok(())
    }
}

impl Peer for RaftEngine {
    fn append_durable(&self, producer: usize, payload: &[u8]) -> Result<()> {
        self.write(producer, payload, true)
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        for payload in records {
            self.write(0, payload, false)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.engine
            .sync()
            .map_err(|e| anyhow!("raft-engine: sync: {e}"))
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        let group = group(0);
        let (Some(first), Some(last)) = (
            self.engine.first_index(group),
            self.engine.last_index(group),
        ) else {
            return Ok(());
        };
        let mut entries = Vec::with_capacity(SCAN_ENTRIES as usize);
        let mut begin = first;
        while begin <= last {
            let end = (begin + SCAN_ENTRIES).min(last + 1);
            entries.clear();
            // Reading a block verifies the checksum of the batch it belongs to.
            self.engine
                .fetch_entries_to::<Entry>(group, begin, end, None, &mut entries)
                .map_err(|e| anyhow!("raft-engine: fetch {begin}..{end}: {e}"))?;
            ensure!(
                entries.len() as u64 == end - begin,
                "raft-engine: fetched {} entries for {begin}..{end}",
                entries.len()
            );
            for entry in &entries {
                if !visit(&entry.data) {
                    return Ok(());
                }
            }
            begin = end;
        }
        Ok(())
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        let entry = self
            .engine
            .get_entry::<Entry>(group(0), index + 1)
            .map_err(|e| anyhow!("raft-engine: get_entry {}: {e}", index + 1))?
            .ok_or_else(|| anyhow!("raft-engine: no entry {}", index + 1))?;
        visit(&entry.data);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()?;
        drop(self.engine);
        Ok(())
    }
}

/// A raft log entry: the two fields of `eraftpb.Entry` a log needs (`index = 1`,
/// `data = 2`), written out by hand to keep the `raft` crate and a protobuf code
/// generator out of the build. Lite runtime: no reflection descriptor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub index: u64,
    pub data: Vec<u8>,
    cached_size: CachedSize,
    unknown_fields: UnknownFields,
}

impl MessageExt for Entry {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

impl protobuf::Clear for Entry {
    fn clear(&mut self) {
        self.index = 0;
        self.data.clear();
        self.unknown_fields.clear();
    }
}

impl protobuf::Message for Entry {
    fn descriptor(&self) -> &'static protobuf::reflect::MessageDescriptor {
        Self::descriptor_static()
    }

    fn is_initialized(&self) -> bool {
        true
    }

    fn merge_from(&mut self, input: &mut CodedInputStream<'_>) -> ProtobufResult<()> {
        use protobuf::wire_format::WireType;
        while !input.eof()? {
            let (field, wire_type) = input.read_tag_unpack()?;
            match (field, wire_type) {
                (1, WireType::WireTypeVarint) => self.index = input.read_uint64()?,
                (2, WireType::WireTypeLengthDelimited) => input.read_bytes_into(&mut self.data)?,
                (1 | 2, _) => return Err(protobuf::rt::unexpected_wire_type(wire_type)),
                _ => protobuf::rt::read_unknown_or_skip_group(
                    field,
                    wire_type,
                    input,
                    &mut self.unknown_fields,
                )?,
            }
        }
        Ok(())
    }

    fn compute_size(&self) -> u32 {
        use protobuf::wire_format::WireType;
        let mut size = 0;
        if self.index != 0 {
            size += protobuf::rt::value_size(1, self.index, WireType::WireTypeVarint);
        }
        if !self.data.is_empty() {
            size += protobuf::rt::bytes_size(2, &self.data);
        }
        size += protobuf::rt::unknown_fields_size(&self.unknown_fields);
        self.cached_size.set(size);
        size
    }

    fn write_to_with_cached_sizes(&self, output: &mut CodedOutputStream<'_>) -> ProtobufResult<()> {
        if self.index != 0 {
            output.write_uint64(1, self.index)?;
        }
        if !self.data.is_empty() {
            output.write_bytes(2, &self.data)?;
        }
        output.write_unknown_fields(&self.unknown_fields)
    }

    fn get_cached_size(&self) -> u32 {
        self.cached_size.get()
    }

    fn get_unknown_fields(&self) -> &UnknownFields {
        &self.unknown_fields
    }

    fn mut_unknown_fields(&mut self) -> &mut UnknownFields {
        &mut self.unknown_fields
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }

    fn new() -> Self {
        Entry::default()
    }

    fn default_instance() -> &'static Self {
        static INSTANCE: OnceLock<Entry> = OnceLock::new();
        INSTANCE.get_or_init(Entry::default)
    }
}
