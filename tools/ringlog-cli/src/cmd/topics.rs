//! `ringlog topics DIR [--json]`: the topics of a store, each with its records, offsets
//! and the disk its files take. Read-only: works beside the store's writer.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use ringlog::{Error, Store};
use serde::Serialize;

use crate::cli::TopicsArgs;
use crate::failure::{CliResult, Failure, EXIT_DAMAGED};
use crate::units::format_bytes;

use super::target::{classify, topic_dir, DirKind, Target};

/// Everything `topics` prints.
#[derive(Debug, Serialize)]
struct StoreTopics {
    dir: String,
    lock_holder_pid: Option<u32>,
    topics_count: u64,
    /// Records in all the topics listed.
    records_count: u64,
    /// Sum of the topics' `allocated_bytes`.
    allocated_bytes: u64,
    topics: Vec<TopicRow>,
}

/// One topic.
#[derive(Debug, Serialize)]
struct TopicRow {
    name: String,
    dir: String,
    records_count: Option<u64>,
    first_offset: Option<u64>,
    next_offset: Option<u64>,
    /// Sum of the lengths of the topic's files.
    length_bytes: u64,
    /// Sum of the blocks its files take on disk (`st_blocks` * 512, what `du` counts).
    allocated_bytes: u64,
    /// Why the topic could not be read (damage: `ringlog verify DIR --topic NAME`).
    error: Option<String>,
}

/// Runs `topics`; exit 1 if a topic is damaged (it is listed with the reason).
pub fn run(args: &TopicsArgs) -> CliResult<ExitCode> {
    let dir = args.dir.as_path();
    match classify(dir) {
        DirKind::Store | DirKind::Neither => {}
        DirKind::SingleLog => {
            return Err(Failure::usage(format!(
                "{} is a single log, not a store of topics; `ringlog info {}` describes it",
                dir.display(),
                dir.display()
            )))
        }
        DirKind::Topic { store, name } => {
            return Err(Failure::usage(format!(
                "{} is the directory of topic {name} of the store {}; pass the store's directory",
                dir.display(),
                store.display()
            )))
        }
        DirKind::Missing | DirKind::NotADirectory => return Err(super::not_a_directory(dir)),
    }
    let store_target = Target::new(dir, None);
    let store = Store::open_read_only(dir).map_err(|e| {
        if matches!(e, Error::WrongKind { .. }) {
            Failure::usage(format!(
                "{} holds no ringlog store (no ringlog.store in it); check the path (`ringlog append {} --topic NAME` creates one)",
                dir.display(),
                dir.display()
            ))
        } else {
            store_target.fail(e)
        }
    })?;
    let names = store.topics().map_err(|e| store_target.fail(e))?;
    let mut rows = Vec::with_capacity(names.len());
    let mut damaged = false;
    for name in names {
        let target = Target::new(dir, Some(&name));
        let topic_dir = topic_dir(dir, &name);
        let (length_bytes, allocated_bytes) = disk_used(&topic_dir);
        let mut row = TopicRow {
            dir: topic_dir.display().to_string(),
            name: name.clone(),
            records_count: None,
            first_offset: None,
            next_offset: None,
            length_bytes,
            allocated_bytes,
            error: None,
        };
        match store.topic(&name) {
            Ok(log) => {
                let stats = log.stats();
                row.records_count = Some(stats.records_count);
                row.first_offset = Some(stats.first_offset);
                row.next_offset = Some(stats.next_offset);
                // Its files and mappings go now, not with the store: a store may hold
                // thousands of topics.
                let _ = log.close();
            }
            // Removed since the listing.
            Err(Error::UnknownTopic { .. }) => continue,
            Err(e @ Error::Corruption { .. }) => {
                damaged = true;
                row.error = Some(
                    Failure::from_target(e, &target)
                        .message()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            Err(e) => return Err(target.fail(e)),
        }
        rows.push(row);
    }
    let listing = StoreTopics {
        dir: dir.display().to_string(),
        lock_holder_pid: ringlog::lock_holder(dir).map_err(|e| store_target.fail(e))?,
        topics_count: rows.len() as u64,
        records_count: rows.iter().filter_map(|r| r.records_count).sum(),
        allocated_bytes: rows.iter().map(|r| r.allocated_bytes).sum(),
        topics: rows,
    };
    let text = if args.json {
        serde_json::to_string(&listing)
            .map_err(|e| Failure::usage(format!("cannot encode the topics as JSON: {e}")))?
    } else {
        render_text(&listing)
    };
    writeln!(std::io::stdout().lock(), "{text}").map_err(Failure::from_stdout)?;
    Ok(if damaged {
        ExitCode::from(EXIT_DAMAGED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The sum of the lengths and of the allocated blocks of the files in `dir` (a topic's
/// directory holds files only). A file removed meanwhile counts nothing.
fn disk_used(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::symlink_metadata(entry.path()).ok())
        .fold((0, 0), |(length, allocated), meta| {
            (length + meta.len(), allocated + meta.blocks() * 512)
        })
}

/// A table, one topic a line, then the totals.
fn render_text(listing: &StoreTopics) -> String {
    let mut lines = vec![
        format!("store        {}", listing.dir),
        format!(
            "lock holder  {}",
            listing.lock_holder_pid.map_or(
                "none (no writer has the store open)".to_string(),
                |pid| format!("pid {pid} (a writer has the store open)")
            )
        ),
        String::new(),
    ];
    let width = listing
        .topics
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max("topic".len());
    lines.push(format!(
        "{:<width$}  {:>10}  {:>12}  {:>12}  {:>10}",
        "topic", "records", "first_offset", "next_offset", "disk"
    ));
    let or_dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for t in &listing.topics {
        let mut line = format!(
            "{:<width$}  {:>10}  {:>12}  {:>12}  {:>10}",
            t.name,
            or_dash(t.records_count),
            or_dash(t.first_offset),
            or_dash(t.next_offset),
            format_bytes(t.allocated_bytes)
        );
        if let Some(error) = &t.error {
            line.push_str(&format!("  damaged: {error}"));
        }
        lines.push(line);
    }
    lines.push(String::new());
    lines.push(format!(
        "{} topic(s), {} records, {} allocated on disk",
        listing.topics_count,
        listing.records_count,
        format_bytes(listing.allocated_bytes)
    ));
    lines.join("\n")
}
