//! Entry points into the pure decoders, for fuzz targets and property tests. Not part of
//! the stable API.

use crate::format::{self, FrameKind, IndexFile, SegmentHeader};
use crate::recovery::{self, ScanStart, Tail};

/// Decodes a frame from `bytes` under a segment with `nonce`; returns (offset or None
/// for a commit marker, payload length, padded length) when valid.
pub fn decode_frame(bytes: &[u8], nonce: u64) -> Option<(Option<u64>, u64, u64)> {
    let frame = format::decode_frame(bytes, format::frame_seed(nonce)).ok()?;
    let offset = match frame.kind {
        FrameKind::Record { offset, .. } => Some(offset),
        FrameKind::Marker { .. } => None,
    };
    Some((offset, frame.payload_bytes, frame.padded_bytes))
}

/// Encodes a record frame (for building inputs).
pub fn encode_record(nonce: u64, offset: u64, timestamp_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; format::record_bytes(payload.len() as u64) as usize];
    format::encode_record(
        &mut out,
        format::frame_seed(nonce),
        offset,
        timestamp_ms,
        payload,
        false,
    );
    out
}

/// Encodes a commit marker frame claiming `durable_position` (for building inputs).
pub fn encode_marker(nonce: u64, timestamp_ms: u64, durable_position: u64) -> Vec<u8> {
    let mut out = vec![0u8; format::MARKER_BYTES as usize];
    format::encode_marker(
        &mut out,
        format::frame_seed(nonce),
        timestamp_ms,
        durable_position,
    );
    out
}

/// Decodes a segment header: (segment id, base offset, nonce, segment bytes).
pub fn decode_segment_header(bytes: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let h = SegmentHeader::decode(bytes).ok()?;
    Some((h.segment_id, h.base_offset, h.nonce, h.segment_bytes))
}

/// A decoded index file: (data end, next offset, entries as (offset, position)).
pub type IndexSummary = (u64, u64, Vec<(u64, u64)>);

/// Decodes an index file for a segment of `segment_bytes`.
pub fn decode_index(bytes: &[u8], segment_bytes: u64) -> Option<IndexSummary> {
    let idx = IndexFile::decode(bytes, segment_bytes).ok()?;
    let entries = idx.entries.iter().map(|e| (e.offset, e.position)).collect();
    Some((idx.data_end, idx.next_offset, entries))
}

/// Checks an index file (`index`, raw bytes) against a segment image (`image`, header
/// included, possibly cut short after its data) the way open checks the active
/// segment's checkpoint. `None` when either does not decode or they belong to different
/// segments; else `Ok` when the checkpoint agrees with the data, or why not.
pub fn check_checkpoint(image: &[u8], index: &[u8]) -> Option<Result<(), String>> {
    let header = SegmentHeader::decode(image).ok()?;
    if !header.is_activated() {
        return None;
    }
    let file = IndexFile::decode(index, header.segment_bytes).ok()?;
    if file.base_offset != header.base_offset {
        return None;
    }
    Some(recovery::check_checkpoint(image, header.base_offset, &file))
}

/// What scanning a whole segment image (`bytes`, header included) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSummary {
    /// End of the valid data.
    pub end_position: u64,
    /// Offset after the last valid record.
    pub next_offset: u64,
    /// Valid records.
    pub records_count: u64,
    /// Index entries built, as (offset, position).
    pub entries: Vec<(u64, u64)>,
    /// "clean", "full", "torn" or "corrupt".
    pub tail: &'static str,
    /// Where a torn tail or corruption starts.
    pub problem_position: Option<u64>,
}

/// Scans a segment image the way recovery does (header checked first).
pub fn scan_segment(bytes: &[u8], index_interval_bytes: u64) -> Option<ScanSummary> {
    let header = SegmentHeader::decode(bytes).ok()?;
    if !header.is_activated() {
        return None;
    }
    let outcome = recovery::scan(
        bytes,
        format::frame_seed(header.nonce),
        ScanStart::from_data_start(header.base_offset, None),
        index_interval_bytes.max(8),
    );
    let (tail, problem_position) = match outcome.tail {
        Tail::Clean => ("clean", None),
        Tail::Full => ("full", None),
        Tail::Torn { position, .. } => ("torn", Some(position)),
        Tail::Corrupt { position, .. } => ("corrupt", Some(position)),
    };
    Some(ScanSummary {
        end_position: outcome.end_position,
        next_offset: outcome.next_offset,
        records_count: outcome.records_count,
        entries: outcome
            .entries
            .iter()
            .map(|e| (e.offset, e.position))
            .collect(),
        tail,
        problem_position,
    })
}

/// Builds a segment image of `segment_bytes` holding `payloads` from `base_offset`, one
/// commit marker per record batch of one (as a writer appending durably would).
pub fn build_segment(
    segment_bytes: u64,
    base_offset: u64,
    nonce: u64,
    payloads: &[&[u8]],
) -> Vec<u8> {
    let mut out = vec![0u8; segment_bytes as usize];
    let header = SegmentHeader {
        format_version: format::FORMAT_VERSION,
        segment_id: 0,
        base_offset,
        nonce,
        created_ms: 0,
        segment_bytes,
    };
    out[..format::SEGMENT_HEADER_BYTES as usize].copy_from_slice(&header.encode());
    let seed = format::frame_seed(nonce);
    let mut position = format::SEGMENT_HEADER_BYTES as usize;
    for (i, payload) in payloads.iter().enumerate() {
        let marker = format::MARKER_BYTES as usize;
        let record = format::record_bytes(payload.len() as u64) as usize;
        if position + marker + record > out.len() {
            break;
        }
        format::encode_marker(
            &mut out[position..position + marker],
            seed,
            0,
            position as u64,
        );
        position += marker;
        format::encode_record(
            &mut out[position..position + record],
            seed,
            base_offset + i as u64,
            0,
            payload,
            false,
        );
        position += record;
    }
    out
}
