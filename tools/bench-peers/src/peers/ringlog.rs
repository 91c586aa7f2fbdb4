//! ringlog itself, through its public API only.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hdrhistogram::Histogram;
use ringlog::{AppendTicket, Durability, Log, Options, Preallocate};

use crate::peer::{Mode, Peer};

pub struct Ringlog {
    log: Log,
}

fn options(mode: Mode) -> Options {
    let durability = match mode {
        Mode::Durable => Durability::Sync,
        Mode::Bulk => Durability::None,
    };
    Options::default().durability(durability)
}

/// A durable log with `segment_bytes` segments (the stall workload's small segments).
pub fn open_log_with_segments(dir: &Path, segment_bytes: u64) -> Result<Log> {
    Log::open(dir, options(Mode::Durable).segment_bytes(segment_bytes))
        .with_context(|| format!("ringlog: open {}", dir.display()))
}

pub fn open_log(dir: &Path, mode: Mode) -> Result<Log> {
    Log::open(dir, options(mode)).with_context(|| format!("ringlog: open {}", dir.display()))
}

impl Ringlog {
    pub fn new(log: Log) -> Ringlog {
        Ringlog { log }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }
}

/// Bulk appends through the segment mapping (`Options::mapped_writes`), on segments
/// that are never zero-filled; durable appends as [`open`].
pub fn open_mapped(dir: &Path, mode: Mode) -> Result<Box<dyn Peer>> {
    let opts = options(mode)
        .mapped_writes(mode == Mode::Bulk)
        .preallocate(Preallocate::Fallocate);
    let log = Log::open(dir, opts).with_context(|| format!("ringlog: open {}", dir.display()))?;
    Ok(Box::new(Ringlog { log }))
}

pub fn open(dir: &Path, mode: Mode) -> Result<Box<dyn Peer>> {
    Ok(Box::new(Ringlog {
        log: open_log(dir, mode)?,
    }))
}

impl Peer for Ringlog {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        self.log.append(payload).context("ringlog: append")?;
        Ok(())
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        for payload in records {
            self.log.append(payload).context("ringlog: append")?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.log.sync().context("ringlog: sync")
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        for record in self.log.iter(self.log.first_offset()) {
            if !visit(record.context("ringlog: iter")?.payload()) {
                break;
            }
        }
        Ok(())
    }

    fn other_scan(&self) -> Option<&'static str> {
        Some("ringlog scan (callback)")
    }

    fn read_sequential_other(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        self.log
            .scan(self.log.first_offset(), |record| visit(record.payload()))
            .context("ringlog: scan")?;
        Ok(())
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        let offset = self.log.first_offset() + index;
        let record = self
            .log
            .read(offset)
            .with_context(|| format!("ringlog: read offset {offset}"))?;
        visit(record.payload());
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.log.close().context("ringlog: close")
    }
}

/// W2's extra row: one thread keeps `in_flight` appends outstanding with `submit` and waits
/// on the oldest ticket. Returns the appends completed, the time taken and their latencies
/// (from `submit` to the end of `wait`), in nanoseconds.
pub fn submit_pipelined(
    log: &Log,
    payload: &[u8],
    in_flight: usize,
    duration: Duration,
) -> Result<(u64, Duration, Histogram<u64>)> {
    let start = Instant::now();
    let mut tickets: VecDeque<(Instant, AppendTicket)> = VecDeque::with_capacity(in_flight);
    let mut latencies = crate::workloads::latency_histogram();
    let mut last = None;
    let mut wait_oldest = |tickets: &mut VecDeque<(Instant, AppendTicket)>| -> Result<()> {
        let (submitted, ticket) = tickets.pop_front().expect("a ticket is in flight");
        let offset = ticket.wait().context("ringlog: ticket wait")?;
        latencies.record(submitted.elapsed().as_nanos() as u64)?;
        check_order(&mut last, offset)
    };
    while start.elapsed() < duration {
        if tickets.len() == in_flight {
            wait_oldest(&mut tickets)?;
        }
        let submitted = Instant::now();
        let ticket = log.submit(payload).context("ringlog: submit")?;
        tickets.push_back((submitted, ticket));
    }
    while !tickets.is_empty() {
        wait_oldest(&mut tickets)?;
    }
    let elapsed = start.elapsed();
    Ok((latencies.len(), elapsed, latencies))
}

fn check_order(last: &mut Option<u64>, offset: u64) -> Result<()> {
    if let Some(prev) = *last {
        ensure!(
            offset == prev + 1,
            "ringlog: tickets from one thread resolved to offsets {prev} then {offset}"
        );
    }
    *last = Some(offset);
    Ok(())
}
