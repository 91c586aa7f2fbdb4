//! commitlog: Kafka-style segments plus memory-mapped offset indexes. `&mut` to append, so
//! the log sits behind a mutex.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use anyhow::{anyhow, ensure, Context, Result};
use commitlog::message::MessageSet;
use commitlog::{CommitLog, LogOptions, ReadError, ReadLimit};

use crate::peer::{Mode, Peer};

/// Bytes asked for per sequential read.
const SCAN_BYTES: usize = 1 << 20;
/// commitlog's default largest message.
const MESSAGE_MAX_BYTES: usize = 1_000_000;

pub struct Commitlog {
    log: Mutex<CommitLog>,
    /// Read limit for one record: `read` needs a byte budget that covers at least one whole
    /// message; it grows on demand, as a user not knowing record sizes would do.
    record_limit: AtomicUsize,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    let log = CommitLog::new(LogOptions::new(dir))
        .with_context(|| format!("commitlog: open {}", dir.display()))?;
    Ok(Box::new(Commitlog {
        log: Mutex::new(log),
        record_limit: AtomicUsize::new(256),
    }))
}

impl Commitlog {
    fn log(&self) -> MutexGuard<'_, CommitLog> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Peer for Commitlog {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        let mut log = self.log();
        log.append_msg(payload)
            .map_err(|e| anyhow!("commitlog: append: {e}"))?;
        // As durable as commitlog gets: see `PeerId::durability`.
        log.flush().context("commitlog: flush")
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        let mut log = self.log();
        for payload in records {
            log.append_msg(payload)
                .map_err(|e| anyhow!("commitlog: append: {e}"))?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.log().flush().context("commitlog: flush")
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        let mut next = 0;
        loop {
            // `read` checks every message's CRC32C while parsing the buffer.
            let messages = self
                .log()
                .read(next, ReadLimit::max_bytes(SCAN_BYTES))
                .map_err(|e| anyhow!("commitlog: read from offset {next}: {e:?}"))?;
            if messages.len() == 0 {
                return Ok(());
            }
            for message in messages.iter() {
                ensure!(
                    message.offset() == next,
                    "commitlog: expected offset {next}, read {}",
                    message.offset()
                );
                next += 1;
                if !visit(message.payload()) {
                    return Ok(());
                }
            }
        }
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        loop {
            let limit = self.record_limit.load(Relaxed);
            match self.log().read(index, ReadLimit::max_bytes(limit)) {
                Ok(messages) => {
                    let message = messages
                        .iter()
                        .next()
                        .ok_or_else(|| anyhow!("commitlog: no record at offset {index}"))?;
                    ensure!(
                        message.offset() == index,
                        "commitlog: asked for offset {index}, read {}",
                        message.offset()
                    );
                    visit(message.payload());
                    return Ok(());
                }
                Err(ReadError::Io(e))
                    if e.kind() == std::io::ErrorKind::InvalidInput
                        && limit < MESSAGE_MAX_BYTES =>
                {
                    self.record_limit.store(limit * 2, Relaxed);
                }
                Err(e) => return Err(anyhow!("commitlog: read offset {index}: {e:?}")),
            }
        }
    }

    fn close(self: Box<Self>) -> Result<()> {
        let mut log = self.log();
        log.flush().context("commitlog: flush")
    }
}
