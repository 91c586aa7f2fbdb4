//! The hand-written binary log: one file of frames `[length u32][crc32c u32][payload]`.
//! Durable appends `write` + `fsync` each frame; bulk appends gather frames in a buffer,
//! `write` it when full and `fsync` once per batch. The index of frame starts lives in
//! memory and is rebuilt at open by scanning (and checking) every frame.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::{anyhow, ensure, Context, Result};

use crate::peer::{Mode, Peer};

pub(crate) const HEADER_BYTES: usize = 8;
/// Largest frame the scan accepts: a larger length is garbage from a torn write.
const MAX_PAYLOAD_BYTES: usize = 64 << 20;
/// Bulk appends write whenever this much is buffered.
const BUFFER_BYTES: usize = 1 << 20;

pub struct Framed {
    path: PathBuf,
    state: Mutex<State>,
    reader: File,
}

struct State {
    file: File,
    /// Byte position of every frame, written or buffered.
    starts: Vec<u64>,
    /// End of the frames written to the file.
    written: u64,
    /// Frames appended but not yet written.
    buffer: Vec<u8>,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    std::fs::create_dir_all(dir).with_context(|| format!("framed: create {}", dir.display()))?;
    let path = dir.join("log.frames");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .with_context(|| format!("framed: open {}", path.display()))?;
    let (starts, end) = scan(&path)?;
    // Whatever follows the last valid frame is a torn write: cut it.
    file.set_len(end)
        .with_context(|| format!("framed: truncate {}", path.display()))?;
    let reader = File::open(&path).with_context(|| format!("framed: open {}", path.display()))?;
    Ok(Box::new(Framed {
        path,
        state: Mutex::new(State {
            file,
            starts,
            written: end,
            buffer: Vec::with_capacity(BUFFER_BYTES),
        }),
        reader,
    }))
}

fn frame_into(buffer: &mut Vec<u8>, payload: &[u8]) {
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buffer.extend_from_slice(payload);
}

/// Reads the next frame into `payload`. `Ok(false)` at the end of valid data.
pub(crate) fn read_frame(input: &mut impl Read, payload: &mut Vec<u8>) -> Result<bool> {
    let mut header = [0u8; HEADER_BYTES];
    match input.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e).context("framed: read header"),
    }
    let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if length > MAX_PAYLOAD_BYTES {
        return Ok(false);
    }
    payload.resize(length, 0);
    match input.read_exact(payload) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e).context("framed: read payload"),
    }
    Ok(crc32c::crc32c(payload) == crc)
}

/// Finds the start of every valid frame, and the end of the last one.
pub(crate) fn scan(path: &Path) -> Result<(Vec<u64>, u64)> {
    let file = File::open(path).with_context(|| format!("framed: open {}", path.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut starts = Vec::new();
    let mut at = 0u64;
    let mut payload = Vec::new();
    while read_frame(&mut input, &mut payload)? {
        starts.push(at);
        at += (HEADER_BYTES + payload.len()) as u64;
    }
    Ok((starts, at))
}

impl Framed {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn end(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    fn flush(&mut self) -> Result<()> {
        self.file.write_all(&self.buffer).context("framed: write")?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}

impl Peer for Framed {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        let mut state = self.state();
        let start = state.end();
        frame_into(&mut state.buffer, payload);
        state.flush()?;
        state.file.sync_all().context("framed: fsync")?;
        state.starts.push(start);
        Ok(())
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        let mut state = self.state();
        for payload in records {
            let start = state.end();
            frame_into(&mut state.buffer, payload);
            state.starts.push(start);
            if state.buffer.len() >= BUFFER_BYTES {
                state.flush()?;
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut state = self.state();
        state.flush()?;
        state.file.sync_all().context("framed: fsync")
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        let frames = self.state().starts.len();
        let file = File::open(&self.path)
            .with_context(|| format!("framed: open {}", self.path.display()))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut payload = Vec::new();
        for index in 0..frames {
            ensure!(
                read_frame(&mut input, &mut payload)?,
                "framed: frame {index} is missing or fails its CRC"
            );
            if !visit(&payload) {
                break;
            }
        }
        Ok(())
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        let (start, end) = {
            let state = self.state();
            let i = index as usize;
            let start = *state
                .starts
                .get(i)
                .ok_or_else(|| anyhow!("framed: no frame {index}"))?;
            let end = state.starts.get(i + 1).copied().unwrap_or(state.end());
            ensure!(
                end <= state.written,
                "framed: frame {index} is not written yet"
            );
            (start, end)
        };
        let mut frame = vec![0; (end - start) as usize];
        self.reader
            .read_exact_at(&mut frame, start)
            .with_context(|| format!("framed: read frame {index} at byte {start}"))?;
        let (header, payload) = frame.split_at(HEADER_BYTES);
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        ensure!(
            crc32c::crc32c(payload) == crc,
            "framed: frame {index} at byte {start} fails its CRC"
        );
        visit(payload);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()
    }
}
