//! The disk itself, as references: what any log on this file system can at best reach.
//! Not peers: they keep no log format, no index and no recovery.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::payload::{Payloads, XorShift};

/// A file of `bytes` zeros, written and synced, so later writes only overwrite blocks.
pub fn preallocated(path: &Path, bytes: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("disk: create {}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < bytes {
        let len = zeros.len().min((bytes - at) as usize);
        file.write_all_at(&zeros[..len], at)
            .with_context(|| format!("disk: zero-fill {}", path.display()))?;
        at += len as u64;
    }
    file.sync_all()
        .with_context(|| format!("disk: fsync {}", path.display()))?;
    Ok(file)
}

/// W1 reference: one `pwrite` + `fdatasync` per record into a preallocated file (wrapping
/// around when it is full). Latencies in nanoseconds.
pub fn pwrite_fdatasync_each(
    dir: &Path,
    payloads: &Payloads,
    count: u64,
    budget: Duration,
) -> Result<(Histogram<u64>, u64, Duration)> {
    let size = payloads.size() as u64;
    let file_bytes = (64 << 20) / size * size;
    let file = preallocated(&dir.join("disk-w1.dat"), file_bytes)?;
    let mut latencies = crate::workloads::latency_histogram();
    let start = Instant::now();
    let mut done = 0;
    while done < count && start.elapsed() < budget {
        let t = Instant::now();
        file.write_all_at(payloads.get(done), done * size % file_bytes)
            .context("disk: pwrite")?;
        file.sync_data().context("disk: fdatasync")?;
        latencies.record(t.elapsed().as_nanos() as u64)?;
        done += 1;
    }
    Ok((latencies, done, start.elapsed()))
}

/// W2 ceiling: one thread writes `group` records with one `pwrite` and one `fdatasync`,
/// over and over, into a preallocated file. No design can batch more appends than it has
/// outstanding, so this bounds `group` producers. Returns records written, time taken and
/// the latency of each batch (its `pwrite` + `fdatasync`), in nanoseconds.
pub fn group_commit_ceiling(
    dir: &Path,
    payloads: &Payloads,
    group: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<(u64, Duration, Histogram<u64>)> {
    let batch: Vec<u8> = payloads.iter(0..group as u64).flatten().copied().collect();
    let file_bytes = ((256 << 20) / batch.len() * batch.len()) as u64;
    let file = preallocated(&dir.join("disk-ceiling.dat"), file_bytes)?;
    let mut at = 0;
    let mut write_batch = || -> Result<()> {
        file.write_all_at(&batch, at).context("disk: pwrite")?;
        file.sync_data().context("disk: fdatasync")?;
        at = (at + batch.len() as u64) % file_bytes;
        Ok(())
    };
    let warm = Instant::now();
    while warm.elapsed() < warmup {
        write_batch()?;
    }
    let start = Instant::now();
    let mut records = 0;
    let mut latencies = crate::workloads::latency_histogram();
    while start.elapsed() < duration {
        let t = Instant::now();
        write_batch()?;
        latencies.record(t.elapsed().as_nanos() as u64)?;
        records += group as u64;
    }
    Ok((records, start.elapsed(), latencies))
}

/// W3 ceiling: the records' payload bytes, back to back, in 1 MiB writes to a new file,
/// then one `fdatasync`. The file stays for [`sequential_read`] and [`random_reads`].
pub fn sequential_write(path: &Path, payloads: &Payloads, records: u64) -> Result<Duration> {
    let mut file =
        File::create(path).with_context(|| format!("disk: create {}", path.display()))?;
    let per_chunk = ((1 << 20) / payloads.size()) as u64;
    let mut chunk = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let mut next = 0;
    while next < records {
        let end = (next + per_chunk).min(records);
        chunk.clear();
        for payload in payloads.iter(next..end) {
            chunk.extend_from_slice(payload);
        }
        file.write_all(&chunk).context("disk: write")?;
        next = end;
    }
    file.sync_data().context("disk: fdatasync")?;
    Ok(start.elapsed())
}

/// W4 reference: the file in 1 MiB reads. Returns bytes read and time taken.
pub fn sequential_read(path: &Path) -> Result<(u64, Duration)> {
    let mut file = File::open(path).with_context(|| format!("disk: open {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).context("disk: read")?;
        if n == 0 {
            return Ok((total, start.elapsed()));
        }
        total += n as u64;
    }
}

/// W5 reference: `pread` of one record at a random record boundary, `reads` times (or
/// until `budget`). Returns reads done and time taken.
pub fn random_reads(
    path: &Path,
    record_bytes: usize,
    records: u64,
    reads: u64,
    budget: Duration,
) -> Result<(u64, Duration)> {
    let file = File::open(path).with_context(|| format!("disk: open {}", path.display()))?;
    let mut rng = XorShift::new(5);
    let mut buf = vec![0u8; record_bytes];
    let start = Instant::now();
    let mut done = 0;
    while done < reads {
        if done % 1024 == 0 && start.elapsed() > budget {
            break;
        }
        let index = rng.below(records);
        file.read_exact_at(&mut buf, index * record_bytes as u64)
            .context("disk: pread")?;
        done += 1;
    }
    Ok((done, start.elapsed()))
}
