//! The hand-written baseline of issue 14: one writer thread fed by a bounded channel,
//! `[length u32][crc32c u32][payload]` frames appended to one growing file, and a dense
//! in-memory index (the byte position of every record). The writer takes whatever the
//! channel holds (up to 1 MiB of frames), writes it with one `write`, and, if any of it
//! asked for durability, calls `fdatasync` once for all of it (group commit). Reads use
//! the index and `pread`; a scan reads the file in 1 MiB pieces. At open, every frame is
//! checked and the index rebuilt; a torn tail is cut.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::peer::{Mode, Peer};
use crate::peers::framed::{read_frame, scan, HEADER_BYTES};

/// Messages the channel holds at most: producers wait beyond it.
const CHANNEL_MESSAGES: usize = 64 << 10;
/// The writer writes once it has gathered this much.
const BATCH_BYTES: usize = 1 << 20;

enum Message {
    /// A whole frame; `ack` (durable appends) hears back once it is durable.
    Append {
        frame: Vec<u8>,
        ack: Option<SyncSender<Result<(), String>>>,
    },
    /// Everything sent before is written and durable when `ack` hears back.
    Sync(SyncSender<Result<(), String>>),
}

pub struct ChannelLog {
    path: PathBuf,
    sender: Mutex<Option<SyncSender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Byte position of every record written to the file.
    index: Arc<RwLock<Vec<u64>>>,
    reader: File,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    std::fs::create_dir_all(dir).with_context(|| format!("channel: create {}", dir.display()))?;
    let path = dir.join("log.frames");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .with_context(|| format!("channel: open {}", path.display()))?;
    let (starts, end) = scan(&path)?;
    file.set_len(end)
        .with_context(|| format!("channel: truncate {}", path.display()))?;
    let reader = File::open(&path).with_context(|| format!("channel: open {}", path.display()))?;
    let index = Arc::new(RwLock::new(starts));
    let (sender, receiver) = mpsc::sync_channel(CHANNEL_MESSAGES);
    let writer_index = index.clone();
    let writer = std::thread::Builder::new()
        .name("channel-log writer".into())
        .spawn(move || write_loop(file, end, receiver, &writer_index))
        .context("channel: start the writer thread")?;
    Ok(Box::new(ChannelLog {
        path,
        sender: Mutex::new(Some(sender)),
        writer: Mutex::new(Some(writer)),
        index,
        reader,
    }))
}

/// The writer thread: gather, write, sync if asked, acknowledge; until every sender is gone.
fn write_loop(mut file: File, mut end: u64, receiver: Receiver<Message>, index: &RwLock<Vec<u64>>) {
    let mut batch = Vec::with_capacity(2 * BATCH_BYTES);
    let mut starts = Vec::new();
    let mut acks = Vec::new();
    let mut failed: Option<String> = None;
    while let Ok(first) = receiver.recv() {
        let mut sync = false;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Append { frame, ack } => {
                    starts.push(end + batch.len() as u64);
                    batch.extend_from_slice(&frame);
                    if let Some(ack) = ack {
                        sync = true;
                        acks.push(ack);
                    }
                }
                Message::Sync(ack) => {
                    sync = true;
                    acks.push(ack);
                }
            }
            if batch.len() < BATCH_BYTES {
                next = receiver.try_recv().ok();
            }
        }
        if failed.is_none() {
            let written = file.write_all(&batch).map_err(|e| format!("write: {e}"));
            let synced = written.and_then(|()| {
                if sync {
                    file.sync_data().map_err(|e| format!("fdatasync: {e}"))
                } else {
                    Ok(())
                }
            });
            match synced {
                Ok(()) => {
                    end += batch.len() as u64;
                    index
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .append(&mut starts);
                }
                // Nothing after a failed write is acknowledged.
                Err(e) => failed = Some(e),
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(failed.clone().map_or(Ok(()), Err));
        }
        batch.clear();
        starts.clear();
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

impl ChannelLog {
    fn send(&self, message: Message) -> Result<()> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| anyhow!("channel: closed"))?;
        sender
            .send(message)
            .map_err(|_| anyhow!("channel: the writer thread is gone"))
    }

    fn send_and_wait(
        &self,
        message: impl FnOnce(SyncSender<Result<(), String>>) -> Message,
    ) -> Result<()> {
        let (ack, done) = mpsc::sync_channel(1);
        self.send(message(ack))?;
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!("channel: {e}"),
            Err(_) => bail!("channel: the writer thread is gone"),
        }
    }
}

impl Peer for ChannelLog {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        let frame = frame(payload);
        self.send_and_wait(|ack| Message::Append {
            frame,
            ack: Some(ack),
        })
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| anyhow!("channel: closed"))?;
        for payload in records {
            sender
                .send(Message::Append {
                    frame: frame(payload),
                    ack: None,
                })
                .map_err(|_| anyhow!("channel: the writer thread is gone"))?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.send_and_wait(Message::Sync)
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        let records = self.index.read().unwrap_or_else(|p| p.into_inner()).len();
        let file = File::open(&self.path)
            .with_context(|| format!("channel: open {}", self.path.display()))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut payload = Vec::new();
        for index in 0..records {
            ensure!(
                read_frame(&mut input, &mut payload)?,
                "channel: frame {index} is missing or fails its CRC"
            );
            if !visit(&payload) {
                break;
            }
        }
        Ok(())
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        let (start, next) = {
            let starts = self.index.read().unwrap_or_else(|p| p.into_inner());
            let i = index as usize;
            let start = *starts
                .get(i)
                .ok_or_else(|| anyhow!("channel: no record {index} written"))?;
            (start, starts.get(i + 1).copied())
        };
        let frame_bytes = match next {
            Some(next) => (next - start) as usize,
            // The last record: its length is in its header.
            None => {
                let mut header = [0u8; HEADER_BYTES];
                self.reader
                    .read_exact_at(&mut header, start)
                    .with_context(|| format!("channel: read record {index} at byte {start}"))?;
                HEADER_BYTES
                    + u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize
            }
        };
        let mut frame = vec![0; frame_bytes];
        self.reader
            .read_exact_at(&mut frame, start)
            .with_context(|| format!("channel: read record {index} at byte {start}"))?;
        let (header, payload) = frame.split_at(HEADER_BYTES);
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        ensure!(
            length == payload.len() && crc32c::crc32c(payload) == crc,
            "channel: record {index} at byte {start} fails its checks"
        );
        visit(payload);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        let synced = self.sync();
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            writer
                .join()
                .map_err(|_| anyhow!("channel: the writer thread panicked"))?;
        }
        synced
    }
}
