//! # ringlog
//!
//! A durable, append-only, segmented log for Linux. Records go into preallocated
//! fixed-size segment files through io_uring (or `pwritev`), many producers share each
//! `fdatasync` (group commit), and readers get slices of memory-mapped segments (a
//! [`Record`] copies a payload of up to 100 bytes, cheaper than a reference count), found
//! through a sparse offset index. Segments roll over without renaming anything, and
//! opening a log after a crash cuts a torn tail but refuses to skip damage to durable
//! data.
//!
//! ```
//! use ringlog::{Durability, Log, Options};
//!
//! # fn main() -> ringlog::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
//! let first = log.append(b"hello")?;                 // durable when it returns
//! let batch = log.append_batch(&[b"a".as_slice(), b"b"])?;
//! assert_eq!(batch, first + 1..first + 3);
//! assert_eq!(log.read(first)?.payload(), b"hello");
//! let all: Vec<_> = log.iter(first).collect::<ringlog::Result<_>>()?;
//! assert_eq!(all.len(), 3);
//! log.close()?;
//!
//! // Reopening continues where the log left off.
//! let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
//! assert_eq!(log.next_offset(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/design.md` for the on-disk format, the durability protocol and the
//! recovery rules.
//!
//! # Cargo features (all off by default)
//!
//! - `serde`: `TypedLog`, typed events through serde (JSON, or postcard's compact
//!   binary codec).
//! - `tracing`: spans `ringlog.open` (with `ringlog.recovery`), `ringlog.rollover` and
//!   `ringlog.flush` (debug), and events for poisoning (warn), truncations, trims and
//!   retention passes (info). Never per record; no subscriber is installed.
//! - `metrics`: through the `metrics` facade, labelled `log` = the directory: counters
//!   `ringlog_records_written_total`, `ringlog_bytes_written_total`,
//!   `ringlog_fsyncs_total`; histograms `ringlog_flush_seconds`,
//!   `ringlog_records_per_flush`, `ringlog_recovery_seconds`; gauge
//!   `ringlog_follower_lag` (every 1,024 records a follower yields). Counted per write
//!   call and per flush, never per record; no recorder is installed.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!("ringlog supports Linux only: it relies on io_uring, fdatasync and flock semantics");

mod backup;
mod consumer;
mod control;
mod crc;
mod durable;
mod engine;
mod entry;
mod error;
mod follow;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod housekeeping;
mod idempotency;
mod io;
mod log;
mod memory;
mod open;
mod options;
mod reader;
mod recovery;
mod recycle;
mod report;
mod retention;
mod seek;
mod segment;
#[doc(hidden)]
pub mod sim;
mod snapshot;
mod store;
mod summary;
mod sync;
mod telemetry;
mod trim;
#[cfg(feature = "serde")]
mod typed;
mod verify;
mod watermark;
mod writer;

pub use backup::{BackupReport, LogBackup};
pub use consumer::Consumer;
pub use durable::WaitDurable;
pub use entry::{Entry, Headers};
pub use error::{Error, Result};
pub use follow::Follower;
/// The on-disk format version this build reads and writes.
pub use format::FORMAT_VERSION;
#[doc(hidden)]
pub use io::{write_sync_now, Backend, FaultPlan, MappedWrites, PwriteBackend};
pub use io::{BackendKind, PoisonCause};
pub use log::{lock_holder, AppendTicket, Log};
pub use options::{Durability, IoBackend, Options, Preallocate, RecoveryPolicy};
pub use reader::{Iter, Record, RecordRef};
pub use report::{RecoveryReport, SegmentInfo, SegmentScan, Stats, Truncation};
pub use retention::{RemovedSegment, Retention, RetentionReason, RetentionReport};
pub use snapshot::{Snapshot, MAX_SNAPSHOT_BYTES};
pub use store::{Description, Store, StoreStats, TopicDescription};
#[cfg(feature = "serde")]
pub use typed::{Codec, TypedFollower, TypedIter, TypedLog};
pub use verify::{repair, verify, Problem, ProblemKind, RepairReport, VerifyReport};
