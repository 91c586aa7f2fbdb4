//! okaywal: a write-ahead log with multi-threaded fsync batching. Its unit of atomicity is
//! an entry made of chunks; each chunk is addressable by its `LogPosition`.

use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, ensure, Context, Result};
use okaywal::{
    Configuration, Entry, EntryId, LogManager, LogPosition, ReadChunkResult, SegmentReader,
    WriteAheadLog,
};

use crate::peer::{Mode, Peer};

pub struct OkayWal {
    wal: WriteAheadLog,
    /// Record number -> chunk position: okaywal hands positions out but keeps no index.
    positions: Arc<Mutex<Vec<LogPosition>>>,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    let positions = Arc::new(Mutex::new(Vec::new()));
    let wal = Configuration::default_for(dir)
        // Never checkpoint: a checkpoint hands entries to the LogManager and recycles the
        // file, and the benchmark needs the log to keep its records.
        .checkpoint_after_bytes(u64::MAX)
        .preallocate_bytes(64 << 20)
        .open(Recoverer {
            positions: positions.clone(),
        })
        .with_context(|| format!("okaywal: open {}", dir.display()))?;
    Ok(Box::new(OkayWal { wal, positions }))
}

fn positions(positions: &Mutex<Vec<LogPosition>>) -> std::sync::MutexGuard<'_, Vec<LogPosition>> {
    positions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Peer for OkayWal {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        let mut entry = self.wal.begin_entry().context("okaywal: begin_entry")?;
        let chunk = entry.write_chunk(payload).context("okaywal: write_chunk")?;
        entry.commit().context("okaywal: commit")?;
        positions(&self.positions).push(chunk.position);
        Ok(())
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        // One entry for the whole call: nothing is fsynced until the commit.
        let mut entry = self.wal.begin_entry().context("okaywal: begin_entry")?;
        let mut written = Vec::new();
        for payload in records {
            written.push(
                entry
                    .write_chunk(payload)
                    .context("okaywal: write_chunk")?
                    .position,
            );
        }
        entry.commit().context("okaywal: commit")?;
        positions(&self.positions).extend(written);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        // Every `append` call ends with a commit.
        Ok(())
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        // okaywal has no iterator over an open log (its only scan is recovery), so read
        // each chunk by position, checking its CRC.
        let count = positions(&self.positions).len();
        let mut buf = Vec::new();
        for index in 0..count {
            self.read_chunk(index as u64, &mut buf)?;
            if !visit(&buf) {
                break;
            }
        }
        Ok(())
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        let mut buf = Vec::new();
        self.read_chunk(index, &mut buf)?;
        visit(&buf);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.wal.shutdown().context("okaywal: shutdown")
    }
}

impl OkayWal {
    fn read_chunk(&self, index: u64, buf: &mut Vec<u8>) -> Result<()> {
        let position = *positions(&self.positions)
            .get(index as usize)
            .ok_or_else(|| anyhow!("okaywal: no record {index}"))?;
        let mut reader = self
            .wal
            .read_at(position)
            .with_context(|| format!("okaywal: read_at {position:?}"))?;
        buf.clear();
        reader
            .read_to_end(buf)
            .with_context(|| format!("okaywal: read chunk {position:?}"))?;
        ensure!(
            reader.crc_is_valid().context("okaywal: crc")?,
            "okaywal: CRC mismatch at {position:?}"
        );
        Ok(())
    }
}

/// Recovery: reads every chunk of every complete entry, checking its CRC, and records its
/// position, which is what a user must do to read records by number later.
///
/// The data is read rather than skipped: `EntryChunk::skip_remaining_bytes` skips the
/// chunk's CRC a second time when the chunk is dropped (okaywal 0.3.1, `log_file.rs`), so
/// a recovery that skips chunks misreads every entry of more than one chunk as aborted.
#[derive(Debug)]
struct Recoverer {
    positions: Arc<Mutex<Vec<LogPosition>>>,
}

impl LogManager for Recoverer {
    fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
        let mut found = Vec::new();
        let mut data = Vec::new();
        // The position of a chunk whose CRC does not match: torn by a crash if the entry
        // turns out unfinished, damage to committed data if it is complete.
        let mut bad_chunk = None;
        loop {
            match entry.read_chunk()? {
                ReadChunkResult::Chunk(mut chunk) => {
                    let position = chunk.log_position();
                    found.push(position);
                    data.clear();
                    match chunk.read_to_end(&mut data) {
                        Ok(_) => {}
                        // okaywal's docs: a chunk cut short means the entry was being
                        // written at the crash; ignore the whole entry.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e),
                    }
                    match chunk.check_crc() {
                        Ok(true) => {}
                        Ok(false) => bad_chunk = bad_chunk.or(Some(position)),
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                ReadChunkResult::EndOfEntry => {
                    if let Some(position) = bad_chunk {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("okaywal: CRC mismatch in a committed entry at {position:?}"),
                        ));
                    }
                    positions(&self.positions).extend(found);
                    return Ok(());
                }
                // Torn by a crash: okaywal drops the entry, and so do we.
                ReadChunkResult::AbortedEntry => return Ok(()),
            }
        }
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        // Checkpointing is disabled (see `open`); nothing to persist elsewhere.
        Ok(())
    }
}
