//! Disk use against payload (issue 14's space target): 1 KiB records appended with
//! default options until 16 MiB and 1 GiB of payload went in, then closed. Prints the
//! blocks the log's files take (`st_blocks`, what `du` counts) and their lengths, each
//! as a multiple of the payload.
//!
//! ```text
//! cargo run --release --example space_use -- [sync|none] [fixed]
//! ```
//!
//! `fixed` turns segment growth off (every segment 64 MiB, as `Log::open` did before
//! growth became its default).
//!
//! ```text
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ringlog::{Durability, Log, Options};

fn disk_use(dir: &Path) -> (u64, u64) {
    let mut blocks = 0;
    let mut len = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        if meta.is_file() {
            blocks += meta.blocks() * 512;
            len += meta.len();
        }
    }
    (blocks, len)
}

fn main() {
    let sync = std::env::args().nth(1).is_some_and(|a| a == "sync");
    let durability = if sync {
        Durability::Sync
    } else {
        Durability::None
    };
    let fixed = std::env::args().any(|a| a == "fixed");
    let record = vec![0x42u8; 1024];
    for payload_bytes in [16u64 << 20, 1 << 30] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = Options::default().durability(durability);
        if fixed {
            opts = opts.segment_growth(false);
        }
        let log = Log::open(dir.path(), opts).expect("open");
        for _ in 0..payload_bytes / 1024 {
            log.append(&record).expect("append");
        }
        let segments = log.segments().expect("segments").len();
        log.close().expect("close");
        let (blocks, len) = disk_use(dir.path());
        if std::env::var_os("SPACE_LIST").is_some() {
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .expect("read_dir")
                .flatten()
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect();
            names.sort();
            for (name, len) in names {
                println!("  {} {len}", name.to_string_lossy());
            }
        }
        println!(
            "{} MiB of 1 KiB records ({durability:?}): {segments} segments; on disk {:.1} MiB = {:.3}x the payload (file lengths {:.1} MiB = {:.3}x)",
            payload_bytes >> 20,
            blocks as f64 / (1 << 20) as f64,
            blocks as f64 / payload_bytes as f64,
            len as f64 / (1 << 20) as f64,
            len as f64 / payload_bytes as f64,
        );
    }
}
