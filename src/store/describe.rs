//! `Store::describe`: what a store holds, for people and tools.

use std::path::PathBuf;

use super::Store;
use crate::error::Result;
use crate::io::BackendKind;

/// What [`Store::describe`] returns: where the store is, how it writes, and every topic
/// with its offsets, records and bytes. `Display` prints it as a table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Description {
    /// The store's directory.
    pub location: PathBuf,
    /// The I/O backend its topics write through (`None` when read-only).
    pub backend: Option<BackendKind>,
    /// The segment format version this build writes ([`crate::FORMAT_VERSION`]).
    pub format_version: u32,
    /// Opened read-only.
    pub read_only: bool,
    /// Every topic, by name.
    pub topics: Vec<TopicDescription>,
}

/// One topic in a [`Description`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TopicDescription {
    /// Its name.
    pub name: String,
    /// Its first offset (after trims and retention).
    pub first_offset: u64,
    /// The offset its next record gets.
    pub next_offset: u64,
    /// Records in it: `next_offset - first_offset`.
    pub records_count: u64,
    /// Segments.
    pub segments_count: u64,
    /// Bytes its files take (segments, indexes, the spare, consumer positions).
    pub bytes: u64,
    /// Its named consumers and their committed positions.
    pub consumers: Vec<(String, Option<u64>)>,
}

impl Store {
    /// Describes the store: location, backend, format version, and each topic's offsets,
    /// records, segments, bytes and consumers. Opens every topic to look (recovering
    /// those not open yet; the store closes idle ones again later).
    ///
    /// ```
    /// # fn main() -> ringlog::Result<()> {
    /// let store = ringlog::Store::in_memory()?;
    /// store.topic("orders")?.append(b"order 1")?;
    /// let description = store.describe()?;
    /// assert_eq!(description.topics[0].name, "orders");
    /// assert_eq!(description.topics[0].records_count, 1);
    /// println!("{description}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// What opening a topic can return ([`crate::Error::Corruption`], [`crate::Error::Io`]).
    pub fn describe(&self) -> Result<Description> {
        let mut topics = Vec::new();
        for name in self.topics()? {
            let log = self.topic(&name)?;
            let stats = log.stats();
            let bytes = dir_bytes(log.dir());
            topics.push(TopicDescription {
                first_offset: stats.first_offset,
                next_offset: stats.next_offset,
                records_count: stats.records_count,
                segments_count: stats.segments_count,
                bytes,
                consumers: log.consumers()?,
                name,
            });
        }
        Ok(Description {
            location: self.inner.dir.clone(),
            backend: self.stats().backend,
            format_version: crate::FORMAT_VERSION,
            read_only: self.inner.read_only,
            topics,
        })
    }
}

/// Bytes of the files in `dir` and its subdirectories (one level: `consumers/`,
/// `snapshots/`).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
        .map(|(path, meta)| {
            if meta.is_dir() {
                std::fs::read_dir(path)
                    .map(|inner| {
                        inner
                            .flatten()
                            .filter_map(|e| e.metadata().ok())
                            .filter(|m| m.is_file())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0)
            } else {
                meta.len()
            }
        })
        .sum()
}

impl std::fmt::Display for Description {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "store {} (format {}, backend {}{})",
            self.location.display(),
            self.format_version,
            self.backend
                .map_or_else(|| "none".to_string(), |b| format!("{b:?}")),
            if self.read_only { ", read-only" } else { "" }
        )?;
        writeln!(
            f,
            "{:<24} {:>12} {:>12} {:>12} {:>8} {:>14}  consumers",
            "topic", "first", "next", "records", "segments", "bytes"
        )?;
        for t in &self.topics {
            let consumers: Vec<String> = t
                .consumers
                .iter()
                .map(|(name, position)| match position {
                    Some(p) => format!("{name}@{p}"),
                    None => format!("{name}@-"),
                })
                .collect();
            writeln!(
                f,
                "{:<24} {:>12} {:>12} {:>12} {:>8} {:>14}  {}",
                t.name,
                t.first_offset,
                t.next_offset,
                t.records_count,
                t.segments_count,
                t.bytes,
                consumers.join(" ")
            )?;
        }
        Ok(())
    }
}
