//! Entry points into the pure decoders, for fuzz targets and property tests. Not part of
//! the stable API.

use crate::format::extension;
use crate::format::{self, Extension, FrameKind, IndexFile, SegmentHeader};
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

/// What a valid record frame holds, extension fields included (copied out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// The record's offset.
    pub offset: u64,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// Whether the next record belongs to the same batch.
    pub continues: bool,
    /// Caller sequence.
    pub seq: Option<u64>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Idempotency id.
    pub id: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// Bytes of the extension block (0: a plain frame).
    pub extension_bytes: u64,
    /// Bytes the frame occupies.
    pub padded_bytes: u64,
}

/// Decodes a record frame (plain or extended) from `bytes` under a segment with `nonce`;
/// `None` when it is not a valid record frame (a commit marker included).
pub fn decode_record(bytes: &[u8], nonce: u64) -> Option<DecodedRecord> {
    let frame = format::decode_frame(bytes, format::frame_seed(nonce)).ok()?;
    let FrameKind::Record { offset, continues } = frame.kind else {
        return None;
    };
    let header = format::FRAME_HEADER_BYTES as usize;
    let payload_start = header + frame.extension_bytes as usize;
    let payload = bytes
        .get(payload_start..payload_start + frame.payload_bytes as usize)?
        .to_vec();
    let mut out = DecodedRecord {
        offset,
        timestamp_ms: frame.timestamp_ms,
        continues,
        seq: None,
        key: None,
        id: None,
        headers: Vec::new(),
        payload,
        extension_bytes: frame.extension_bytes,
        padded_bytes: frame.padded_bytes,
    };
    if frame.extension_bytes > 0 {
        let view = extension::decode(bytes.get(header..payload_start)?).ok()?;
        out.seq = view.seq;
        out.key = view.key.map(<[u8]>::to_vec);
        out.id = view.id.map(<[u8]>::to_vec);
        out.headers = view
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect();
    }
    Some(out)
}

/// The fields of an extended record to encode.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryFields<'a> {
    /// Caller sequence.
    pub seq: Option<u64>,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Idempotency id.
    pub id: Option<&'a [u8]>,
    /// Headers.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Encodes a record frame with these fields (an extended frame unless they are all
/// empty, then a plain one); `Err` says which limit they break.
pub fn encode_entry_record(
    nonce: u64,
    offset: u64,
    timestamp_ms: u64,
    fields: EntryFields<'_>,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let ext = Extension {
        seq: fields.seq,
        key: fields.key,
        id: fields.id,
        headers: fields.headers,
    };
    ext.validate()
        .map_err(|invalid| format!("{}: {}", invalid.field, invalid.reason))?;
    if ext.is_empty() {
        return Ok(encode_record(nonce, offset, timestamp_ms, payload));
    }
    let len = format::entry_record_bytes(ext.encoded_bytes(), payload.len() as u64);
    let mut out = vec![0u8; len as usize];
    format::encode_entry_record(
        &mut out,
        format::frame_seed(nonce),
        (offset, timestamp_ms),
        &ext,
        payload,
        false,
    );
    Ok(out)
}

/// Decodes an extension block alone (untrusted bytes): (block bytes, seq, key, id,
/// headers) when valid.
pub type ExtensionSummary = (u64, Option<u64>, Option<Vec<u8>>, Option<Vec<u8>>, usize);

/// See [`ExtensionSummary`].
pub fn decode_extension(bytes: &[u8]) -> Option<ExtensionSummary> {
    let view = extension::decode(bytes).ok()?;
    Some((
        view.block_bytes,
        view.seq,
        view.key.map(<[u8]>::to_vec),
        view.id.map(<[u8]>::to_vec),
        view.headers().count(),
    ))
}

/// Recomputes the checksum of a padded frame (first 4 bytes) under a segment with
/// `nonce`: for building frames whose other bytes were changed on purpose.
pub fn seal_frame(nonce: u64, frame: &mut [u8]) {
    if frame.len() >= 8 {
        format::seal_frame(frame, format::frame_seed(nonce));
    }
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
        ScanStart::from_data_start(header.base_offset, None).in_recycled(header.recycled),
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
/// commit marker per record batch of one (as a writer appending durably would). Every
/// third record (`i % 3 == 1`) is an entry (an extended frame with a caller sequence `i`,
/// a key and a header), the others plain records.
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
        dropped_before: 0,
        recycled: false,
        grows: false,
    };
    out[..format::SEGMENT_HEADER_BYTES as usize].copy_from_slice(&header.encode());
    let seed = format::frame_seed(nonce);
    let mut position = format::SEGMENT_HEADER_BYTES as usize;
    for (i, payload) in payloads.iter().enumerate() {
        const HEADERS: &[(&str, &[u8])] = &[("kind", b"fuzz")];
        let entry = Extension {
            seq: Some(i as u64),
            key: Some(b"key"),
            id: None,
            headers: HEADERS,
        };
        let extended = i % 3 == 1;
        let marker = format::MARKER_BYTES as usize;
        let record = if extended {
            format::entry_record_bytes(entry.encoded_bytes(), payload.len() as u64)
        } else {
            format::record_bytes(payload.len() as u64)
        } as usize;
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
        let frame = &mut out[position..position + record];
        if extended {
            format::encode_entry_record(
                frame,
                seed,
                (base_offset + i as u64, 0),
                &entry,
                payload,
                false,
            );
        } else {
            format::encode_record(frame, seed, base_offset + i as u64, 0, payload, false);
        }
        position += record;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_segment_with_entries_scans_clean() {
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; i as usize * 13]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let image = build_segment(64 << 10, 100, 7, &refs);
        let summary = scan_segment(&image, 4096).expect("scans");
        assert_eq!(summary.tail, "clean", "{summary:?}");
        assert_eq!(summary.records_count, 40);
        let mut at = format::SEGMENT_HEADER_BYTES as usize + format::MARKER_BYTES as usize;
        let first = decode_record(&image[at..], 7).expect("record 0");
        assert_eq!((first.offset, first.seq), (100, None));
        at += first.padded_bytes as usize + format::MARKER_BYTES as usize;
        let second = decode_record(&image[at..], 7).expect("record 1");
        assert_eq!((second.offset, second.seq), (101, Some(1)));
        assert_eq!(second.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(second.payload, payloads[1]);
    }
}
