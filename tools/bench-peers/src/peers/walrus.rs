//! walrus (crate `walrus-rust` 0.2): topic-based WAL, 10 MiB blocks in 1 GiB files, an
//! FNV-1a 64 checksum per entry, io_uring writes. One topic holds every record.
//!
//! What its API does not offer, and what the tool does about it:
//! - no per-call sync: durability is an `FsyncSchedule`, and that is process-wide (a
//!   `OnceLock` the first instance sets), so one schedule serves both modes: the default
//!   fsync every 200 ms. Durable appends are therefore NOT durable when they return (shown,
//!   never counted as the best peer of W1-W3), and `sync` can only wait for the schedule
//!   to come round (it sleeps 250 ms, which W3 counts, as a user would have to wait);
//! - reads go through a consuming cursor per topic; there is no read by position, so W5
//!   and W6's check of the first and last records fail with that reason. The scan takes
//!   batches of up to 1 MiB (`batch_read_for_topic`), the cursor persisted every 4096
//!   reads (`ReadConsistency::AtLeastOnce`);
//! - the storage root comes from the `WALRUS_DATA_DIR` environment variable (set at each
//!   open: the tool opens one log at a time).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use walrus_rust::{FsyncSchedule, ReadConsistency, Walrus};

use crate::peer::{Mode, Peer};

const TOPIC: &str = "log";

pub struct WalrusPeer {
    wal: Walrus,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    std::fs::create_dir_all(dir).with_context(|| format!("walrus: create {}", dir.display()))?;
    // walrus reads its root from the environment; the tool opens one log at a time.
    std::env::set_var("WALRUS_DATA_DIR", dir);
    std::env::set_var("WALRUS_QUIET", "1");
    let wal = Walrus::with_consistency_and_schedule_for_key(
        "log",
        ReadConsistency::AtLeastOnce {
            persist_every: 4096,
        },
        FsyncSchedule::Milliseconds(200),
    )
    .with_context(|| format!("walrus: open {}", dir.display()))?;
    Ok(Box::new(WalrusPeer { wal }))
}

impl Peer for WalrusPeer {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        self.wal
            .append_for_topic(TOPIC, payload)
            .context("walrus: append")
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        for payload in records {
            self.wal
                .append_for_topic(TOPIC, payload)
                .context("walrus: append")?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        // No sync call: wait for the 200 ms schedule to come round.
        std::thread::sleep(Duration::from_millis(250));
        Ok(())
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        loop {
            let batch = self
                .wal
                .batch_read_for_topic(TOPIC, 1 << 20, true)
                .context("walrus: batch_read_for_topic")?;
            if batch.is_empty() {
                return Ok(());
            }
            for entry in &batch {
                if !visit(&entry.data) {
                    return Ok(());
                }
            }
        }
    }

    fn read_at(&self, _index: u64, _visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        bail!("walrus has no read by position (only a consuming cursor per topic)")
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()
    }
}
