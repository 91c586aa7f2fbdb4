//! I/O backends: how the writer's bytes reach a segment file.
//!
//! The writer (and nothing else) calls a [`Backend`] to write a batch at a position and
//! to flush a file. Two real backends implement it: io_uring and `pwritev`. The interface
//! is kept small and file-handle based so a simulated backend can record every write and
//! flush, drop or tear the unflushed ones, and fail chosen operations.

mod checked;
mod pwrite;
mod uring;

use std::fs::File;
use std::io;

pub(crate) use checked::CheckedBackend;
pub use checked::PoisonCause;
pub use pwrite::PwriteBackend;
pub(crate) use uring::UringBackend;

use crate::options::IoBackend;

/// Which backend is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// io_uring submissions.
    Uring,
    /// `pwritev` system calls.
    Pwrite,
    /// A test backend ([`Log::open_with_backend`](crate::Log::open_with_backend)).
    Simulated,
}

/// The writer's view of the disk. Public only so tests can plug in a simulated disk
/// ([`Log::open_with_backend`](crate::Log::open_with_backend)); not a stable API.
#[doc(hidden)]
pub trait Backend: Send {
    /// Writes all of `bytes` at `position` of `file`, now. Short writes are continued;
    /// an error, or a write that makes no progress, is returned.
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written to `file` durable (`fdatasync`).
    fn sync_data(&mut self, file: &File) -> io::Result<()>;
    /// Starts writing `bytes` at `position` and then flushing `file`, ordered; the caller
    /// may work while they run and collects the outcome (and the buffer) with
    /// [`Backend::finish_write_sync`]. At most one is in flight. A backend without
    /// asynchronous I/O does all of it here.
    fn start_write_sync(&mut self, file: &File, position: u64, bytes: Vec<u8>);
    /// Waits for the started write and flush; returns the buffer and the first error.
    fn finish_write_sync(&mut self) -> (io::Result<()>, Vec<u8>);
    /// Makes everything written to each of `files` durable, one result per file. The
    /// flushes may run concurrently (io_uring submits them together); by default they
    /// run one after the other.
    fn sync_many(&mut self, files: &[&File]) -> Vec<io::Result<()>> {
        files.iter().map(|file| self.sync_data(file)).collect()
    }
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// A backend for another thread to flush the same files with (the housekeeper's
    /// background flushes of unsynced logs), on the same disk.
    fn companion(&self) -> Box<dyn Backend>;
    /// Who must hear of the bytes producers copy into a segment's writable mapping
    /// (`Options::mapped_writes`), which reach the page cache without a backend call.
    /// Real disks need not (`None`, the default); the simulated one keeps them as
    /// unflushed writes, so a crash can drop or tear them.
    fn mapped_writes(&self) -> Option<std::sync::Arc<dyn MappedWrites>> {
        None
    }
}

/// Told of each copy into a segment's shared writable mapping; see
/// [`Backend::mapped_writes`]. Not a stable API.
#[doc(hidden)]
pub trait MappedWrites: Send + Sync {
    /// `new` was copied over `old` at `position` of `file` (through a mapping: in the
    /// page cache at once, durable only after the next flush of `file`).
    fn copied(&self, file: &File, position: u64, old: &[u8], new: &[u8]);
}

/// The outcome of a write-and-flush that a synchronous backend completed in
/// `start_write_sync`, kept for `finish_write_sync`.
#[derive(Default)]
pub struct Completed(Option<(io::Result<()>, Vec<u8>)>);

impl Completed {
    /// Keeps the outcome and the buffer.
    pub fn store(&mut self, result: io::Result<()>, bytes: Vec<u8>) {
        self.0 = Some((result, bytes));
    }

    /// Hands them back (an error if nothing was started).
    pub fn take(&mut self) -> (io::Result<()>, Vec<u8>) {
        self.0
            .take()
            .unwrap_or_else(|| (Err(io::Error::other("no write in flight")), Vec::new()))
    }
}

/// Completes a write and flush synchronously (for backends without asynchronous I/O).
pub fn write_sync_now(
    backend: &mut dyn Backend,
    file: &File,
    position: u64,
    bytes: &[u8],
) -> io::Result<()> {
    backend.write_all_at(file, position, bytes)?;
    backend.sync_data(file)
}

/// Chooses and builds the backend for `requested`. Returns the backend and, when Auto
/// fell back to `pwritev`, why.
pub(crate) fn select(requested: IoBackend) -> io::Result<(Box<dyn Backend>, Option<String>)> {
    match requested {
        IoBackend::Pwrite => Ok((Box::new(PwriteBackend::default()), None)),
        IoBackend::Uring => Ok((Box::new(UringBackend::new()?), None)),
        IoBackend::Auto => match UringBackend::new() {
            Ok(backend) => Ok((Box::new(backend), None)),
            Err(e) => Ok((
                Box::new(PwriteBackend::default()),
                Some(format!("io_uring unavailable: {e}")),
            )),
        },
    }
}

/// Planned failures, for tests of the poisoning rules. Counts are 1-based: `Some(3)`
/// fails the third call of that kind.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail this write with EIO.
    pub fail_write: Option<u64>,
    /// Fail this flush with EIO.
    pub fail_sync: Option<u64>,
    /// Make this write short (half its bytes, then no progress).
    pub short_write: Option<u64>,
}

impl FaultPlan {
    /// `backend` with this plan's failures injected (itself when the plan is empty): for
    /// tests that combine planned failures with a simulated disk. Not a stable API.
    #[doc(hidden)]
    pub fn wrap(self, backend: Box<dyn Backend>) -> Box<dyn Backend> {
        if self == FaultPlan::default() {
            backend
        } else {
            Box::new(Faulty::new(backend, self))
        }
    }
}

/// Wraps a backend and injects the failures of a [`FaultPlan`]. After a failed flush it
/// reports later flushes as successful, as Linux does once it has dropped the dirty
/// pages: the writer must not believe them.
pub(crate) struct Faulty {
    pub(crate) inner: Box<dyn Backend>,
    pub(crate) plan: FaultPlan,
    writes_count: u64,
    syncs_count: u64,
    started: Completed,
}

impl Faulty {
    pub(crate) fn new(inner: Box<dyn Backend>, plan: FaultPlan) -> Faulty {
        Faulty {
            inner,
            plan,
            writes_count: 0,
            syncs_count: 0,
            started: Completed::default(),
        }
    }
}

impl Backend for Faulty {
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
        self.writes_count += 1;
        if self.plan.fail_write == Some(self.writes_count) {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::IO.raw_os_error(),
            ));
        }
        if self.plan.short_write == Some(self.writes_count) {
            let half = bytes.len() / 2;
            self.inner.write_all_at(file, position, &bytes[..half])?;
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write: no progress",
            ));
        }
        self.inner.write_all_at(file, position, bytes)
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        self.syncs_count += 1;
        if self.plan.fail_sync == Some(self.syncs_count) {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::IO.raw_os_error(),
            ));
        }
        self.inner.sync_data(file)
    }

    fn start_write_sync(&mut self, file: &File, position: u64, bytes: Vec<u8>) {
        let result = write_sync_now(self, file, position, &bytes);
        self.started.store(result, bytes);
    }

    fn finish_write_sync(&mut self) -> (io::Result<()>, Vec<u8>) {
        self.started.take()
    }

    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn companion(&self) -> Box<dyn Backend> {
        // Planned failures target the writer's own operations.
        self.inner.companion()
    }

    fn mapped_writes(&self) -> Option<std::sync::Arc<dyn MappedWrites>> {
        self.inner.mapped_writes()
    }
}
