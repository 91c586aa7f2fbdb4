//! Space: the disk a peer's files take for a given payload of 1 KiB records, appended
//! not durable and synced once at the end, then closed (issue 14: ringlog at most 1.15x
//! the payload for 1 GiB, 2x for 16 MiB). Counted in allocated blocks (`st_blocks`, what
//! `du` says), so sparse files count what they hold.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Result;

use crate::peer::Mode;
use crate::report::{Better, Column, Table, Unit};
use crate::workloads::{guarded, row_kind, Bench};

/// Bytes of every file under `dir`, by allocated blocks.
fn allocated_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += allocated_bytes(&entry.path())?;
        } else {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// One space table: `payload_bytes` of 1 KiB records per peer.
pub fn space(bench: &Bench, payload_bytes: u64) -> Table {
    let label = crate::report::format_bytes(payload_bytes as f64);
    let mut table = Table::new(
        format!("Space {label}"),
        format!("disk taken (allocated blocks) by {label} of 1 KiB records appended not durable, synced once, closed, as a multiple of the payload"),
        vec![Column {
            name: "disk / payload",
            unit: Unit::Ratio,
        }],
        0,
        Better::Lower,
    );
    let record = vec![0x5au8; 1024];
    for &peer in &bench.plan.peers {
        eprintln!("[Space {label}] {}", peer.name());
        let dir = bench.fresh_dir(&format!("space-{}-{}", payload_bytes, peer.name()));
        let outcome = guarded(|| {
            let log = peer.open(&dir, Mode::Bulk)?;
            let count = payload_bytes / record.len() as u64;
            let mut remaining = count;
            while remaining > 0 {
                let batch = remaining.min(1024);
                let mut records = (0..batch).map(|_| record.as_slice());
                log.append(&mut records)?;
                remaining -= batch;
            }
            log.sync()?;
            log.close()?;
            let ratio = allocated_bytes(&dir)? as f64 / payload_bytes as f64;
            Ok(vec![ratio])
        });
        let _ = std::fs::remove_dir_all(&dir);
        table.push(peer.name(), row_kind(peer, false), outcome, String::new());
    }
    table
}
