//! The small interface every peer implements, and the list of peers.

use std::path::Path;

use anyhow::Result;

use crate::peers;

/// How a log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// For W1/W2: every `append_durable` returns only once the record is durable.
    Durable,
    /// For W3-W6: `append` does not wait for the disk; `sync` makes everything durable.
    Bulk,
}

/// One log under test, open on one directory.
///
/// Records are addressed by their number in append order (`0..`), whatever the peer's own
/// addressing is (offsets, raft indexes, row ids, byte positions, chunk positions): the
/// peer maps one to the other, keeping an in-memory index where its format has none.
/// Peers that are not thread-safe wrap their state in a mutex, as a user would.
pub trait Peer: Send + Sync {
    /// Appends one record and returns once it is durable (or as durable as the peer can
    /// make it: see [`PeerId::durability`]). `producer` is the calling thread's number, for
    /// peers whose model gives each writer its own stream (raft-engine's raft groups).
    fn append_durable(&self, producer: usize, payload: &[u8]) -> Result<()>;

    /// Appends records without waiting for the disk: one API call per record, in order.
    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()>;

    /// Makes everything appended so far durable.
    fn sync(&self) -> Result<()>;

    /// Visits every record from the first, in order, verifying checksums where the format
    /// has them. Stops early when `visit` returns `false`.
    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()>;

    /// The name of a second way to visit every record, where the peer has one worth its
    /// own W4 row (ringlog's `Log::scan`, beside `iter`).
    fn other_scan(&self) -> Option<&'static str> {
        None
    }

    /// Visits every record the second way (see [`Peer::other_scan`]).
    fn read_sequential_other(&self, _visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        anyhow::bail!("no second way to scan")
    }

    /// Reads record number `index` (from 0, in append order).
    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()>;

    /// Closes the log cleanly (flushes, releases files and threads).
    fn close(self: Box<Self>) -> Result<()>;
}

/// The logs compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerId {
    Ringlog,
    RinglogMapped,
    Okaywal,
    Commitlog,
    RaftEngine,
    Sqlite,
    JsonLines,
    Framed,
    Channel,
    Walrus,
    Spacetime,
}

impl PeerId {
    pub const ALL: [PeerId; 11] = [
        PeerId::Ringlog,
        PeerId::RinglogMapped,
        PeerId::Okaywal,
        PeerId::Commitlog,
        PeerId::RaftEngine,
        PeerId::Sqlite,
        PeerId::JsonLines,
        PeerId::Framed,
        PeerId::Channel,
        PeerId::Walrus,
        PeerId::Spacetime,
    ];

    /// Short name, used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            PeerId::Ringlog => "ringlog",
            PeerId::RinglogMapped => "ringlog-mapped",
            PeerId::Okaywal => "okaywal",
            PeerId::Commitlog => "commitlog",
            PeerId::RaftEngine => "raft-engine",
            PeerId::Sqlite => "sqlite-wal",
            PeerId::JsonLines => "json-lines",
            PeerId::Framed => "framed-file",
            PeerId::Channel => "channel-log",
            PeerId::Walrus => "walrus",
            PeerId::Spacetime => "spacetimedb-commitlog",
        }
    }

    pub fn from_name(name: &str) -> Option<PeerId> {
        PeerId::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What `append_durable`, `append` and `sync` do on disk, for the report.
    pub fn durability(self) -> &'static str {
        match self {
            PeerId::Ringlog => {
                "durable: `Durability::Sync` (group commit, fdatasync); bulk: `Durability::None`, \
                 `Log::sync()` at the end. Default options (segments grow from 64 KiB to 64 MiB, `fallocate`d)."
            }
            PeerId::RinglogMapped => {
                "durable: as ringlog; bulk: `Durability::None` with `Options::mapped_writes(true)` \
                 (producers copy frames into a shared mapping of the segment) and \
                 `Preallocate::Fallocate` (segments never zero-filled), `Log::sync()` at the end."
            }
            PeerId::Okaywal => {
                "durable: one entry per record, `EntryWriter::commit` (fsync, batched across \
                 threads); bulk: all records as chunks of one entry, committed at the end. \
                 Checkpointing disabled so that the log keeps its data."
            }
            PeerId::Commitlog => {
                "NOT DURABLE: `CommitLog::flush()` after each record, but it only msyncs the \
                 index: the segment is flushed with `File::flush`, a no-op, and never fsynced. \
                 Mutex around the log. Shown, but never counted as the best peer of a durable \
                 workload."
            }
            PeerId::RaftEngine => {
                "durable: `Engine::write(batch, sync = true)` (leader-follower group commit, \
                 fdatasync), one raft group per producer thread; bulk: `write(.., false)` per \
                 record, `Engine::sync()` at the end. Compression off (payloads are random)."
            }
            PeerId::Sqlite => {
                "WAL mode; durable: `synchronous=FULL`, one autocommit INSERT per record; bulk: \
                 `synchronous=NORMAL`, one transaction around the INSERTs, COMMIT at the end. \
                 Mutex around one connection."
            }
            PeerId::JsonLines => {
                "one JSON object per line, `write` per record; durable: `fsync` after each \
                 write; bulk: no fsync until the end. No checksum. Mutex around the file."
            }
            PeerId::Framed => {
                "length + CRC32C frames in one file; durable: `write` + `fsync` per record; \
                 bulk: frames gathered in a 1 MiB buffer, one `write` per buffer, one `fsync` \
                 per batch (at the end). Mutex around the file."
            }
            PeerId::Channel => {
                "hand-written baseline (issue 14): one writer thread fed by a bounded channel, \
                 length + CRC32C frames appended to one growing file, a dense in-memory index \
                 of record positions; the writer writes what the channel holds (up to 1 MiB) \
                 with one `write` and, if any of it asked, one `fdatasync` for all of it \
                 (group commit); bulk: no fdatasync until `sync`. Reads: `pread` at the \
                 indexed position; scan: 1 MiB reads."
            }
            PeerId::Walrus => {
                "NOT DURABLE: walrus-rust 0.2, one topic; its fsync schedule is process-wide \
                 (the first instance's), so both modes use the default fsync every 200 ms and \
                 an append returns before it is durable; there is no sync call, so `sync` \
                 waits 250 ms (counted in W3). Reads: a consuming cursor (scan: \
                 `batch_read_for_topic`, 1 MiB at a time); no read by position (W5 and W6 \
                 fail with that reason). Storage root from `WALRUS_DATA_DIR`."
            }
            PeerId::Spacetime => {
                "spacetimedb-commitlog 1.3 (2.x needs Rust 1.97), default options (commits of up \
                 to 65535 records, CRC32C per commit, 1 GiB segments, sparse offset index); \
                 durable: `append_maybe_flush` + `flush_and_sync` per record (fsync); bulk: \
                 `append_maybe_flush` per record, `flush_and_sync` at the end. Records are \
                 length-prefixed transactions; reads decode them (one allocation each)."
            }
        }
    }

    /// Whether `append_durable` really waits for the disk.
    pub fn is_durable(self) -> bool {
        !matches!(self, PeerId::Commitlog | PeerId::Walrus)
    }

    /// Opens (creating or recovering) the log in `dir`.
    pub fn open(self, dir: &Path, mode: Mode) -> Result<Box<dyn Peer>> {
        match self {
            PeerId::Ringlog => peers::ringlog::open(dir, mode),
            PeerId::RinglogMapped => peers::ringlog::open_mapped(dir, mode),
            PeerId::Okaywal => peers::okaywal::open(dir, mode),
            PeerId::Commitlog => peers::commitlog::open(dir, mode),
            PeerId::RaftEngine => peers::raft_engine::open(dir, mode),
            PeerId::Sqlite => peers::sqlite::open(dir, mode),
            PeerId::JsonLines => peers::json_lines::open(dir, mode),
            PeerId::Framed => peers::framed::open(dir, mode),
            PeerId::Channel => peers::channel::open(dir, mode),
            PeerId::Walrus => peers::walrus::open(dir, mode),
            PeerId::Spacetime => peers::spacetimedb::open(dir, mode),
        }
    }
}
