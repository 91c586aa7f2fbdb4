//! `ringlog info DIR [--topic NAME] [--json]`: segments, offsets, sizes, format version,
//! lock holder. Read-only.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::InfoArgs;
use crate::failure::{CliResult, Failure};
use crate::render::format_time_ms;
use crate::units::format_bytes;

/// The file where a trim records the log's first offset.
const START_FILE: &str = "log.start";
/// Why `info` shows no retention settings.
const RETENTION_NOTE: &str = "not persisted: retention is an option of the writer's \
    process (Options::retention), applied there; info opens the log read-only and cannot \
    see it";

/// Everything `info` prints.
#[derive(Debug, Serialize)]
struct LogInfo {
    /// The log's directory (for a topic, its directory inside the store).
    dir: String,
    /// The store's directory, for a topic; `null` for a single log.
    store: Option<String>,
    /// The topic's name; `null` for a single log.
    topic: Option<String>,
    format_version: Option<u32>,
    lock_holder_pid: Option<u32>,
    first_offset: u64,
    next_offset: u64,
    durable_offset: u64,
    /// The first offset was recorded by a trim (`log.start`), not taken from the first
    /// segment.
    start_recorded: bool,
    /// Retention settings: always `null`, since they are not persisted (they are
    /// `Options` of the writer's process, which `info` cannot see).
    retention: Option<String>,
    /// Why `retention` is `null`.
    retention_note: &'static str,
    /// Deleted segments still mapped by a reader, and their bytes: known only inside the
    /// process holding the log (`Stats::pending_release_*`); from `info`'s own read-only
    /// handle, which maps none, always 0.
    pending_release_segments: u64,
    pending_release_bytes: u64,
    records_count: u64,
    segments_count: u64,
    total_bytes: u64,
    used_bytes: u64,
    segments: Vec<SegmentRow>,
    /// Segment files prepared ahead of need, not yet holding records.
    spare_segments: Vec<SpareRow>,
    /// Every file in the directory.
    files: Vec<FileRow>,
    /// Sum of the files' lengths.
    disk_length_bytes: u64,
    /// Sum of the blocks the files take on disk (`st_blocks` * 512).
    disk_allocated_bytes: u64,
}

/// A spare segment.
#[derive(Debug, Serialize)]
struct SpareRow {
    segment_id: u64,
    path: String,
    segment_bytes: u64,
    allocated_bytes: u64,
    state: &'static str,
}

/// One file of the log's directory.
#[derive(Debug, Serialize)]
struct FileRow {
    path: String,
    /// `segment`, `spare`, `index`, `lock`, `start`, `control`, `consumers` (the
    /// directory), `options`, `temporary` or `other`.
    kind: &'static str,
    length_bytes: u64,
    allocated_bytes: u64,
}

/// One segment.
#[derive(Debug, Serialize)]
struct SegmentRow {
    segment_id: u64,
    path: String,
    base_offset: u64,
    end_offset: u64,
    records_count: u64,
    used_bytes: u64,
    segment_bytes: u64,
    state: &'static str,
    index_entries: u64,
    created_ms: u64,
    /// Blocks its file takes on disk (`st_blocks` * 512).
    allocated_bytes: u64,
}

/// Runs `info`.
pub fn run(args: &InfoArgs) -> CliResult<()> {
    let target = super::Target::new(&args.dir, args.topic.as_deref());
    let opened = target.open_read_only()?;
    let log = &opened.log;
    let fail = |e| target.fail(e);
    let segments = log.segments().map_err(fail)?;
    // A topic's writer holds its store's lock.
    let lock_holder_pid = ringlog::lock_holder(&opened.lock_dir).map_err(fail)?;
    let stats = log.stats();
    let files = list_files(&opened.log_dir, segments.last().map(|s| s.segment_id))?;
    let allocated = |path: &Path| {
        files
            .iter()
            .find(|f| Path::new(&f.path) == path)
            .map_or(0, |f| f.allocated_bytes)
    };
    let spare_segments: Vec<SpareRow> = files
        .iter()
        .filter(|f| f.kind == "spare")
        .filter_map(|f| {
            Some(SpareRow {
                segment_id: segment_id(Path::new(&f.path))?,
                path: f.path.clone(),
                segment_bytes: f.length_bytes,
                allocated_bytes: f.allocated_bytes,
                state: "spare",
            })
        })
        .collect();
    let rows: Vec<SegmentRow> = segments
        .iter()
        .map(|s| SegmentRow {
            segment_id: s.segment_id,
            path: s.path.display().to_string(),
            base_offset: s.base_offset,
            end_offset: s.end_offset,
            records_count: s.records_count,
            used_bytes: s.used_bytes,
            segment_bytes: s.segment_bytes,
            state: if s.sealed { "sealed" } else { "active" },
            index_entries: s.index_entries,
            created_ms: s.created_ms,
            allocated_bytes: allocated(&s.path),
        })
        .collect();
    let info = LogInfo {
        dir: opened.log_dir.display().to_string(),
        store: opened
            .store
            .as_ref()
            .map(|store| store.dir().display().to_string()),
        topic: args.topic.clone(),
        // The newest segment's: what new records are written in (a log written by an
        // older build keeps its older segments' version).
        format_version: segments.last().and_then(|s| read_format_version(&s.path)),
        lock_holder_pid,
        first_offset: stats.first_offset,
        next_offset: stats.next_offset,
        durable_offset: stats.durable_offset,
        start_recorded: opened.log_dir.join(START_FILE).exists(),
        retention: None,
        retention_note: RETENTION_NOTE,
        pending_release_segments: stats.pending_release_segments,
        pending_release_bytes: stats.pending_release_bytes,
        records_count: stats.records_count,
        segments_count: rows.len() as u64,
        total_bytes: rows.iter().map(|s| s.segment_bytes).sum(),
        used_bytes: rows.iter().map(|s| s.used_bytes).sum(),
        segments: rows,
        spare_segments,
        disk_length_bytes: files.iter().map(|f| f.length_bytes).sum(),
        disk_allocated_bytes: files.iter().map(|f| f.allocated_bytes).sum(),
        files,
    };
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        serde_json::to_string(&info)
            .map_err(|e| Failure::usage(format!("cannot encode the info as JSON: {e}")))?
    } else {
        render_text(&info)
    };
    writeln!(out, "{text}").map_err(Failure::from_stdout)
}

/// The human-readable form.
fn render_text(info: &LogInfo) -> String {
    let mut lines = Vec::new();
    if let (Some(store), Some(topic)) = (&info.store, &info.topic) {
        lines.push(format!("topic           {topic} of the store {store}"));
    }
    let holder = if info.store.is_some() { "store" } else { "log" };
    lines.extend([
        format!("log             {}", info.dir),
        format!(
            "format version  {}",
            info.format_version
                .map_or("unknown".to_string(), |v| v.to_string())
        ),
        format!(
            "lock holder     {}",
            info.lock_holder_pid.map_or(
                format!("none (no writer has the {holder} open)"),
                |pid| format!("pid {pid} (a writer has the {holder} open)")
            )
        ),
        format!(
            "offsets         first {}, next {}, durable {}",
            info.first_offset, info.next_offset, info.durable_offset
        ),
        format!(
            "first offset    {}{}",
            info.first_offset,
            if info.start_recorded {
                " (recorded by a trim, log.start)"
            } else {
                ""
            }
        ),
        format!("records         {}", info.records_count),
        format!("retention       {RETENTION_NOTE}"),
        format!(
            "pending release {} segment(s), {} (deleted segments a reader still maps: known only in the process holding the log; info's own read-only handle maps none)",
            info.pending_release_segments,
            format_bytes(info.pending_release_bytes)
        ),
        format!(
            "size            {} used of {} in {} segment file(s){}",
            format_bytes(info.used_bytes),
            format_bytes(info.total_bytes),
            info.segments_count,
            match info.spare_segments.len() {
                0 => String::new(),
                spares => format!(
                    ", and {spares} spare segment file(s) of {} prepared ahead",
                    format_bytes(info.spare_segments.iter().map(|s| s.segment_bytes).sum())
                ),
            }
        ),
        format!(
            "disk            {} files: {} long, {} allocated",
            info.files.len(),
            format_bytes(info.disk_length_bytes),
            format_bytes(info.disk_allocated_bytes)
        ),
        String::new(),
        format!(
            "{:>7}  {:>12}  {:>10}  {:>23}  {:<6}  {:>7}  {:<24}",
            "segment", "base_offset", "records", "used / size", "state", "index", "created"
        ),
    ]);
    for s in &info.segments {
        lines.push(format!(
            "{:>7}  {:>12}  {:>10}  {:>23}  {:<6}  {:>7}  {:<24}",
            s.segment_id,
            s.base_offset,
            s.records_count,
            format!(
                "{} / {}",
                format_bytes(s.used_bytes),
                format_bytes(s.segment_bytes)
            ),
            s.state,
            s.index_entries,
            format_time_ms(s.created_ms)
        ));
    }
    for s in &info.spare_segments {
        lines.push(format!(
            "{:>7}  {:>12}  {:>10}  {:>23}  {:<6}  {:>7}  {:<24}",
            s.segment_id,
            "-",
            "-",
            format!("- / {}", format_bytes(s.segment_bytes)),
            s.state,
            "-",
            "-"
        ));
    }
    let lines: Vec<&str> = lines.iter().map(|line| line.trim_end()).collect();
    lines.join("\n")
}

/// The format version in a segment file's header (bytes 8..12, little-endian, after the
/// 8-byte magic `RINGLOG\x01`). The library does not export it, so it is read here; `None`
/// if the header cannot be read or has another magic.
fn read_format_version(segment: &Path) -> Option<u32> {
    let mut header = [0u8; 12];
    File::open(segment).ok()?.read_exact(&mut header).ok()?;
    if &header[..8] != b"RINGLOG\x01" {
        return None;
    }
    Some(u32::from_le_bytes([
        header[8], header[9], header[10], header[11],
    ]))
}

/// Every file in `dir` with its length and the disk it takes. Segment files past the
/// last activated segment (`last_segment_id`) are spares.
fn list_files(dir: &Path, last_segment_id: Option<u64>) -> CliResult<Vec<FileRow>> {
    let cannot_read = |e: std::io::Error| {
        Failure::usage(format!(
            "cannot read the directory {}: {e}; check its permissions",
            dir.display()
        ))
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(cannot_read)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(cannot_read)?;
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        // A file removed meanwhile (a writer's temporary file) is simply not listed.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let kind = if name.ends_with(".tmp") {
            "temporary"
        } else if name.ends_with(".seg") {
            match (segment_id(&path), last_segment_id) {
                (Some(id), Some(last)) if id > last => "spare",
                (Some(_), _) => "segment",
                (None, _) => "other",
            }
        } else if name.ends_with(".idx") {
            "index"
        } else if name.ends_with(".entries") {
            // Ids and caller sequences of a sealed segment (docs/design.md 2.2.3).
            "entry summary"
        } else if name == "ringlog.lock" {
            "lock"
        } else if name == START_FILE {
            "start"
        } else if name == "ringlog.control" {
            "control"
        } else if name == "consumers" && meta.is_dir() {
            "consumers"
        } else if super::target::is_topic_options_file(&path) {
            "options"
        } else {
            "other"
        };
        files.push(FileRow {
            path: path.display().to_string(),
            kind,
            length_bytes: meta.len(),
            allocated_bytes: meta.blocks() * 512,
        });
    }
    Ok(files)
}

/// The id in a segment file's name (`00000000000000000042.seg`).
fn segment_id(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}
