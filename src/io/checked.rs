//! Poisoning at the I/O boundary: a backend that records its first failure as a typed
//! cause, tells the log at once, and refuses every later operation.
//!
//! Every backend a log writes or flushes through (its committer's and its housekeeper's
//! background flusher) is wrapped in a [`CheckedBackend`] sharing one [`Failure`]: after
//! the first failed or short write or flush through any of them, nothing more reaches the
//! disk through any of them, whatever the caller does next. (redb's `CheckedBackend` is
//! the model.) The log's own checks (nothing acknowledged after a failure) stay; this
//! makes a forgotten check unable to write after a failure.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Backend, BackendKind};
use crate::sync::{AtomicBool, Mutex};

/// Why a log was poisoned: the first operation that failed, on which file, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoisonCause {
    /// What was being done: "write", "fdatasync", "write and fdatasync",
    /// "fdatasync (background)", "write segment header", "write index file", ... or
    /// what stopped the log when no I/O failed ("closed", "writer thread panicked").
    pub operation: &'static str,
    /// The file, when an I/O operation failed.
    pub path: Option<PathBuf>,
    /// The kind of the I/O error, when an I/O operation failed.
    pub kind: Option<io::ErrorKind>,
    /// The error's own words.
    pub message: String,
}

impl fmt::Display for PoisonCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(
                f,
                "I/O error during {} on {}: {}",
                self.operation,
                path.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.operation, self.message),
        }
    }
}

/// What a log's checked backends share: whether one failed, and what it was.
pub(crate) struct Failure {
    failed: AtomicBool,
    first: Mutex<Option<PoisonCause>>,
}

impl Failure {
    fn new() -> Failure {
        Failure {
            failed: AtomicBool::new(false),
            first: Mutex::new(None),
        }
    }

    /// Records `cause` unless a failure was recorded before; returns the first one.
    fn record(&self, cause: PoisonCause) -> PoisonCause {
        let mut first = self.first.lock();
        let first = first.get_or_insert(cause).clone();
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        first
    }

    /// The first failure, once there was one.
    fn first(&self) -> Option<PoisonCause> {
        if !self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        self.first.lock().clone()
    }
}

/// Told of the first failure (the log poisons itself), once per failing operation.
type OnFailure = Arc<dyn Fn(PoisonCause) + Send + Sync>;

/// A backend that stops at its (or a sibling's) first failure; see the module docs.
pub(crate) struct CheckedBackend {
    inner: Box<dyn Backend>,
    failure: Arc<Failure>,
    on_failure: OnFailure,
    /// `start_write_sync` refused: what `finish_write_sync` hands back.
    refused: Option<(io::Error, Vec<u8>)>,
    /// The descriptor of the chain in flight, to name its file if it fails.
    in_flight_fd: i32,
    /// How a failed flush is named in the cause.
    sync_operation: &'static str,
}

impl CheckedBackend {
    pub(crate) fn new(inner: Box<dyn Backend>, on_failure: OnFailure) -> CheckedBackend {
        CheckedBackend {
            inner,
            failure: Arc::new(Failure::new()),
            on_failure,
            refused: None,
            in_flight_fd: -1,
            sync_operation: "fdatasync",
        }
    }

    /// A checked backend over `inner` that shares this one's failure.
    pub(crate) fn sibling(&self, inner: Box<dyn Backend>) -> CheckedBackend {
        CheckedBackend {
            inner,
            failure: self.failure.clone(),
            on_failure: self.on_failure.clone(),
            refused: None,
            in_flight_fd: -1,
            sync_operation: "fdatasync",
        }
    }

    /// A sibling for the housekeeper's background flushes (named so in a cause).
    pub(crate) fn background_flusher(&self) -> CheckedBackend {
        CheckedBackend {
            sync_operation: "fdatasync (background)",
            ..self.sibling(self.inner.companion())
        }
    }

    /// Refuses once any of the log's backends failed. The log is poisoned before the
    /// refusal returns (again: the failing thread may not have got to it yet), so a
    /// caller that sees the refusal never sees an unpoisoned log after it.
    fn check(&self) -> io::Result<()> {
        let Some(first) = self.failure.first() else {
            return Ok(());
        };
        let refusal = io::Error::other(format!("refused: an earlier operation failed ({first})"));
        (self.on_failure)(first);
        Err(refusal)
    }

    fn failed(&self, operation: &'static str, file: &File, error: io::Error) -> io::Error {
        self.failed_at(operation, path_of(file.as_raw_fd()), error)
    }

    fn failed_at(&self, operation: &'static str, path: PathBuf, error: io::Error) -> io::Error {
        let first = self.failure.record(PoisonCause {
            operation,
            path: Some(path),
            kind: Some(error.kind()),
            message: error.to_string(),
        });
        (self.on_failure)(first);
        error
    }
}

impl Backend for CheckedBackend {
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner
            .write_all_at(file, position, bytes)
            .map_err(|e| self.failed("write", file, e))
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        self.check()?;
        self.inner
            .sync_data(file)
            .map_err(|e| self.failed(self.sync_operation, file, e))
    }

    fn sync_many(&mut self, files: &[&File]) -> Vec<io::Result<()>> {
        if let Err(e) = self.check() {
            return files
                .iter()
                .map(|_| Err(io::Error::new(e.kind(), e.to_string())))
                .collect();
        }
        let results = self.inner.sync_many(files);
        results
            .into_iter()
            .zip(files)
            .map(|(result, file)| result.map_err(|e| self.failed(self.sync_operation, file, e)))
            .collect()
    }

    fn start_write_sync(&mut self, file: &File, position: u64, bytes: Vec<u8>) {
        match self.check() {
            Ok(()) => {
                self.in_flight_fd = file.as_raw_fd();
                self.inner.start_write_sync(file, position, bytes);
            }
            Err(e) => self.refused = Some((e, bytes)),
        }
    }

    fn finish_write_sync(&mut self) -> (io::Result<()>, Vec<u8>) {
        if let Some((error, bytes)) = self.refused.take() {
            return (Err(error), bytes);
        }
        let (result, bytes) = self.inner.finish_write_sync();
        let result = result
            .map_err(|e| self.failed_at("write and fdatasync", path_of(self.in_flight_fd), e));
        (result, bytes)
    }

    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn companion(&self) -> Box<dyn Backend> {
        Box::new(self.sibling(self.inner.companion()))
    }

    fn mapped_writes(&self) -> Option<Arc<dyn super::MappedWrites>> {
        self.inner.mapped_writes()
    }
}

/// The path of an open file descriptor, for an error message (empty if it cannot be
/// told).
fn path_of(fd: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}
