//! The hand-written event log: one JSON object per line, appended with `write` (and
//! `fsync` when durable). No checksum; the index of line starts lives in memory and is
//! rebuilt by scanning the file at open.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::peer::{Mode, Peer};

#[derive(Serialize, Deserialize)]
struct Event<'a> {
    seq: u64,
    #[serde(borrow)]
    data: Cow<'a, str>,
}

pub struct JsonLines {
    path: PathBuf,
    state: Mutex<State>,
    /// For positioned reads, independent of the appending handle.
    reader: File,
}

struct State {
    file: File,
    /// Byte position where each line starts.
    starts: Vec<u64>,
    /// End of the last complete line.
    end: u64,
    line: Vec<u8>,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("json-lines: create {}", dir.display()))?;
    let path = dir.join("events.jsonl");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .with_context(|| format!("json-lines: open {}", path.display()))?;
    let (starts, end) = scan(&path)?;
    // A line without its newline is a torn write: cut it.
    file.set_len(end)
        .with_context(|| format!("json-lines: truncate {}", path.display()))?;
    let reader =
        File::open(&path).with_context(|| format!("json-lines: open {}", path.display()))?;
    Ok(Box::new(JsonLines {
        path,
        state: Mutex::new(State {
            file,
            starts,
            end,
            line: Vec::new(),
        }),
        reader,
    }))
}

/// Finds the start of every complete line, and the end of the last one.
fn scan(path: &Path) -> Result<(Vec<u64>, u64)> {
    let file = File::open(path).with_context(|| format!("json-lines: open {}", path.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut starts = Vec::new();
    let mut at = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .with_context(|| format!("json-lines: read {}", path.display()))?;
        if read == 0 || line.last() != Some(&b'\n') {
            return Ok((starts, at));
        }
        starts.push(at);
        at += read as u64;
    }
}

fn parse(line: &[u8]) -> Result<Event<'_>> {
    serde_json::from_slice(line).context("json-lines: parse")
}

impl JsonLines {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn write(&mut self, payload: &[u8]) -> Result<()> {
        let data = std::str::from_utf8(payload).context("json-lines: payload is not UTF-8")?;
        self.line.clear();
        let event = Event {
            seq: self.starts.len() as u64,
            data: Cow::Borrowed(data),
        };
        serde_json::to_writer(&mut self.line, &event).context("json-lines: serialize")?;
        self.line.push(b'\n');
        self.file
            .write_all(&self.line)
            .context("json-lines: write")?;
        self.starts.push(self.end);
        self.end += self.line.len() as u64;
        Ok(())
    }
}

impl Peer for JsonLines {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        let mut state = self.state();
        state.write(payload)?;
        state.file.sync_all().context("json-lines: fsync")
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        let mut state = self.state();
        for payload in records {
            state.write(payload)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.state().file.sync_all().context("json-lines: fsync")
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        let lines = self.state().starts.len();
        let file = File::open(&self.path)
            .with_context(|| format!("json-lines: open {}", self.path.display()))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        for _ in 0..lines {
            line.clear();
            input
                .read_until(b'\n', &mut line)
                .context("json-lines: read")?;
            if !visit(parse(&line)?.data.as_bytes()) {
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
                .ok_or_else(|| anyhow!("json-lines: no line {index}"))?;
            (start, state.starts.get(i + 1).copied().unwrap_or(state.end))
        };
        let mut line = vec![0; (end - start) as usize];
        self.reader
            .read_exact_at(&mut line, start)
            .with_context(|| format!("json-lines: read line {index} at byte {start}"))?;
        visit(parse(&line)?.data.as_bytes());
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()
    }
}
