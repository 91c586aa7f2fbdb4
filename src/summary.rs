//! Entry summaries of sealed segments (`<id>.entries`, laid out in `format::summary`):
//! the ids and the highest caller sequence of a sealed segment's records, so that the
//! first `append_once` or sequence check after an open reads one small file per sealed
//! segment instead of walking its records (`docs/design.md` 2.2.3).
//!
//! A summary is derived data, like a sealed segment's index file: built by walking the
//! segment the first time it is needed, written beside it without a sync (a torn or lost
//! file fails its checks and is built again), and used only when its checksum, segment
//! id, nonce, base offset and end offset all match the segment.

use std::path::{Path, PathBuf};

use crate::entry::walk_extensions;
use crate::error::{Error, Result};
use crate::format::summary::EntrySummary;
use crate::segment::Segment;

/// File name of the entry summary of segment `id`.
pub(crate) fn summary_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.entries"))
}

/// The entry summary of the sealed `segment`, whose records end at `end_offset`: from
/// its file when that matches the segment, else built by walking the segment and, unless
/// `read_only`, written beside it (best effort).
///
/// # Errors
///
/// [`Error::Corruption`] when damage keeps the walk from reaching `end_offset`;
/// [`Error::Io`] when the segment cannot be mapped.
pub(crate) fn sealed_summary(
    dir: &Path,
    segment: &Segment,
    end_offset: u64,
    read_only: bool,
) -> Result<EntrySummary> {
    let path = summary_path(dir, segment.id());
    let stored = std::fs::read(&path)
        .ok()
        .and_then(|bytes| EntrySummary::decode(&bytes).ok())
        .filter(|s| {
            s.segment_id == segment.id()
                && s.nonce == segment.header.nonce
                && s.base_offset == segment.base_offset()
                && s.end_offset == end_offset
        });
    if let Some(summary) = stored {
        return Ok(summary);
    }
    let summary = build(segment, end_offset)?;
    if !read_only {
        // Derived data: a failed or torn write only costs a walk next time.
        let _ = std::fs::write(&path, summary.encode());
    }
    Ok(summary)
}

/// Walks the records of `segment` below `end_offset` for their ids and sequences.
fn build(segment: &Segment, end_offset: u64) -> Result<EntrySummary> {
    let mut ids = Vec::new();
    let mut last_seq = None;
    let stop = walk_extensions(segment, end_offset, |offset, _, view| {
        if let Some(id) = view.id {
            ids.push((offset, id.to_vec()));
        }
        last_seq = last_seq.max(view.seq);
    })?;
    if stop.offset < end_offset {
        return Err(Error::corruption(
            &segment.path,
            stop.position,
            format!(
                "record {} cannot be read while reading the segment's ids and caller \
                 sequences",
                stop.offset
            ),
        ));
    }
    Ok(EntrySummary {
        segment_id: segment.id(),
        nonce: segment.header.nonce,
        base_offset: segment.base_offset(),
        end_offset,
        last_seq,
        ids,
    })
}
