//! # ringlog-raft
//!
//! [ringlog](ringlog) as [openraft](openraft)'s log storage (openraft 0.9, `storage-v2`):
//! [`LogStore`] implements [`RaftLogStorage`](openraft::storage::RaftLogStorage) and
//! [`RaftLogReader`](openraft::RaftLogReader) on a ringlog [`Log`](ringlog::Log).
//!
//! - **Raft index = ringlog offset**, no gaps: an append whose first index is not the log's
//!   `next_offset()` is an error, except into an empty (or fully purged) log, which moves
//!   its start there with `trim_before`.
//! - **Record layout**: each record's payload starts with a 32-byte header (the entry's log
//!   id and payload kind, [`header`]), then the body: the application data as raw bytes
//!   ([`RecordData`]) or the membership as JSON.
//! - **`append`** stages the entries (`Log::submit`) and returns; one flusher task per store
//!   awaits ringlog's durable watermark (`Log::wait_durable_async`) and fires each flush
//!   callback once the `fdatasync` covering its last entry returned. Consecutive appends
//!   share flushes (ringlog's group commit).
//! - **`truncate`** is `Log::truncate_from` (durable on return); **`purge`** persists the
//!   purged log id first ([`meta`]), then `Log::trim_before`.
//! - **Vote** (and the purged log id) live in `raft.meta`, two checksummed slots written in
//!   place and `fdatasync`ed; the vote is written only after every log entry appended
//!   before it is durable (openraft's io-ordering rule). **Committed** lives in
//!   `raft.committed`, written without a flush and only once the log is durable through it
//!   (losing it only makes it older, which openraft allows).
//!
//! The in-memory [`mem::MemLogStore`] and [`mem::MemStateMachine`] are for tests and for
//! the benchmark's comparison; [`cluster`] is an in-process router for tests and examples.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod cluster;
pub mod header;
pub mod mem;
pub mod meta;
mod store;

pub use header::RecordData;
pub use store::{LogReader, LogStore, OpenError, StoreCounters};
