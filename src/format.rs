//! The on-disk format: segment headers, record frames, commit markers and index files.
//!
//! Pure code: no I/O, no clocks, no allocation sized by anything read from disk. Every
//! decoder takes untrusted bytes and returns a value or a [`FormatError`] that says what
//! was wrong; callers attach the file and position. The byte layouts are drawn in
//! `docs/design.md`.

pub(crate) mod extension;
pub(crate) mod summary;

pub use extension::Extension;

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RINGLOG\x01";
/// Magic at the start of every persisted index file.
pub const INDEX_MAGIC: [u8; 8] = *b"RLINDEX\x01";
/// The segment format version this build writes. Version 2 added extended record
/// frames (key, headers, idempotency id, caller sequence: `docs/design.md` 2.2.1);
/// version 3 the header flag of a recycled segment (whose bytes past the end of its
/// data are an earlier life's, not zeros: 2.1, 4.2); versions 1 and 2 are still read.
pub const FORMAT_VERSION: u32 = 3;
/// The first version whose segments may hold extended record frames.
pub const EXTENDED_FRAMES_VERSION: u32 = 2;
/// The first version whose header word at byte 56 carries flags above
/// `dropped_before` (see [`SegmentHeader::recycled`], [`SegmentHeader::grows`]).
pub const RECYCLED_FLAG_VERSION: u32 = 3;
/// Most segments one header can name as dropped (`dropped_before` is 30 bits from
/// version 3 on; the top two bits are flags).
pub const MAX_DROPPED_BEFORE: u32 = (1 << 30) - 1;
/// The recycled flag in the header word at byte 56 (version 3 on).
const RECYCLED_FLAG: u32 = 1 << 31;
/// The growing-log flag in the header word at byte 56 (version 3 on).
const GROWS_FLAG: u32 = 1 << 30;
/// The oldest segment format version this build reads (version 1 segments hold only
/// plain frames).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// The only index file version this build reads and writes (index files are derived
/// data: one of another version is ignored and rebuilt).
pub const INDEX_VERSION: u32 = 2;
/// `write_bound` of an index file that promises nothing.
pub const NO_WRITE_BOUND: u64 = u64::MAX;

/// Bytes of the segment header; record data starts right after it.
pub const SEGMENT_HEADER_BYTES: u64 = 64;
/// Bytes of the fixed part of every frame (records and commit markers).
pub const FRAME_HEADER_BYTES: u64 = 24;
/// Frames start and end on this alignment; padding bytes are zero and covered by the CRC.
/// A frame starts with its CRC word, then its length word; a zero 8-byte word (both
/// zero) is the end of data.
pub const FRAME_ALIGN_BYTES: u64 = 8;
/// Bytes of a commit marker's body.
pub const MARKER_BODY_BYTES: u64 = 8;
/// Bytes a commit marker occupies in a segment (header, body, padding).
pub const MARKER_BYTES: u64 = padded_frame_bytes(FRAME_HEADER_BYTES + MARKER_BODY_BYTES);
/// The `offset` field value that marks a commit marker rather than a record.
pub const MARKER_OFFSET: u64 = u64::MAX;
/// Set in a record's length word when the next record belongs to the same atomic batch.
/// Frame lengths never reach it (segments are at most 1 GiB).
pub const FRAME_CONTINUES: u32 = 1 << 31;
/// Set in a record's length word (format version 2) when an extension block (key,
/// headers, id, sequence: [`extension`]) sits between the frame header and the payload.
/// Frame lengths never reach it (segments are at most 1 GiB), so a version 1 writer
/// never set it.
pub const FRAME_EXTENDED: u32 = 1 << 30;
/// The bits of a length word that hold the frame's length.
pub const FRAME_LENGTH_MASK: u32 = FRAME_EXTENDED - 1;
/// `base_offset` of a segment that is prepared but not yet activated.
pub const UNASSIGNED_BASE: u64 = u64::MAX;
/// Bytes of the fixed part of an index file.
pub const INDEX_HEADER_BYTES: u64 = 72;
/// Bytes of one index entry.
pub const INDEX_ENTRY_BYTES: u64 = 8;

/// Smallest accepted segment size.
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;
/// Largest accepted segment size (positions inside a segment fit in a `u32`).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// Segment sizes are multiples of this.
pub const SEGMENT_ALIGN_BYTES: u64 = 4 << 10;

const _: () = assert!(SEGMENT_HEADER_BYTES % FRAME_ALIGN_BYTES == 0);
const _: () = assert!(FRAME_HEADER_BYTES % FRAME_ALIGN_BYTES == 0);
// A frame's padding lies in its last 8-byte word (`decode_frame_with` tests it there).
const _: () = assert!(FRAME_ALIGN_BYTES == 8);
const _: () = assert!(MARKER_BYTES % FRAME_ALIGN_BYTES == 0);
const _: () = assert!(INDEX_HEADER_BYTES % INDEX_ENTRY_BYTES == 0);
const _: () = assert!(MAX_SEGMENT_BYTES <= u32::MAX as u64);
const _: () = assert!(MAX_SEGMENT_BYTES < FRAME_CONTINUES as u64);
const _: () = assert!(MAX_SEGMENT_BYTES <= FRAME_EXTENDED as u64);
const _: () = assert!(FRAME_EXTENDED & FRAME_CONTINUES == 0);
const _: () = assert!(MIN_SEGMENT_BYTES % SEGMENT_ALIGN_BYTES == 0);
const _: () = assert!(MAX_SEGMENT_BYTES % SEGMENT_ALIGN_BYTES == 0);

/// What was wrong with some bytes; the caller adds where they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the structure needs.
    Short {
        needed_bytes: u64,
        available_bytes: u64,
    },
    /// The magic number is not ours.
    BadMagic,
    /// A format version this build does not know.
    UnknownVersion(u32),
    /// The stored checksum does not match the bytes.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// A field holds a value that cannot be right.
    BadField { field: &'static str, value: u64 },
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Short {
                needed_bytes,
                available_bytes,
            } => write!(
                f,
                "truncated: needs {needed_bytes} bytes, only {available_bytes} present"
            ),
            FormatError::BadMagic => write!(f, "bad magic number"),
            FormatError::UnknownVersion(v) => write!(
                f,
                "unknown format version {v} (this build reads segments of versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION} and index files of version {INDEX_VERSION})"
            ),
            FormatError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FormatError::BadField { field, value } => write!(f, "invalid {field} {value}"),
        }
    }
}

/// Rounds a frame's length up to the frame alignment.
pub const fn padded_frame_bytes(frame_len: u64) -> u64 {
    (frame_len + FRAME_ALIGN_BYTES - 1) & !(FRAME_ALIGN_BYTES - 1)
}

/// Bytes a record with `payload_bytes` of payload occupies in a segment.
pub const fn record_bytes(payload_bytes: u64) -> u64 {
    padded_frame_bytes(FRAME_HEADER_BYTES + payload_bytes)
}

/// Bytes an extended record occupies in a segment: `extension_bytes` of extension block
/// ([`Extension::encoded_bytes`]) and `payload_bytes` of payload.
pub const fn entry_record_bytes(extension_bytes: u64, payload_bytes: u64) -> u64 {
    padded_frame_bytes(FRAME_HEADER_BYTES + extension_bytes + payload_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn need(bytes: &[u8], needed_bytes: u64) -> Result<(), FormatError> {
    if (bytes.len() as u64) < needed_bytes {
        return Err(FormatError::Short {
            needed_bytes,
            available_bytes: bytes.len() as u64,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Segment header
// ---------------------------------------------------------------------------------------

/// The 64-byte header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The format version the segment was written in: which frames it may hold.
    pub format_version: u32,
    /// Dense, increasing id; also the file name.
    pub segment_id: u64,
    /// Offset of the first record, or [`UNASSIGNED_BASE`] while the segment is a spare.
    pub base_offset: u64,
    /// Random per-segment value mixed into every frame checksum.
    pub nonce: u64,
    /// Milliseconds since the Unix epoch when the file was prepared.
    pub created_ms: u64,
    /// Size of the file, header included.
    pub segment_bytes: u64,
    /// Segments right before this one (ids `segment_id - dropped_before .. segment_id`)
    /// that a truncation cut away: their records are gone, and this segment continues
    /// the log where they began (docs/design.md 4.9). Zero for every other segment.
    pub dropped_before: u32,
    /// The file was an earlier segment of the log, recycled instead of deleted
    /// (`Options::recycle_segments`, version 3 on): past the end of this segment's data
    /// lie that earlier life's bytes, not zeros. They never validate under this
    /// segment's nonce, so recovery does not take them for a torn tail (docs/design.md
    /// 4.2).
    pub recycled: bool,
    /// Set when the segment was activated by a log whose segments grow
    /// (`Options::segment_growth`, version 3 on): a later open with default options
    /// keeps growing them, where a log without it keeps its segment size.
    pub grows: bool,
}

impl SegmentHeader {
    /// Whether the segment has been activated (holds, or may hold, records).
    pub fn is_activated(&self) -> bool {
        self.base_offset != UNASSIGNED_BASE
    }

    /// Encodes the header, checksum included.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES as usize];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        out[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.base_offset.to_le_bytes());
        out[32..40].copy_from_slice(&self.nonce.to_le_bytes());
        out[40..48].copy_from_slice(&self.created_ms.to_le_bytes());
        out[48..56].copy_from_slice(&self.segment_bytes.to_le_bytes());
        debug_assert!(self.dropped_before <= MAX_DROPPED_BEFORE);
        debug_assert!(!self.recycled || self.format_version >= RECYCLED_FLAG_VERSION);
        let word = if self.format_version >= RECYCLED_FLAG_VERSION {
            let flag = |set: bool, bit: u32| if set { bit } else { 0 };
            (self.dropped_before & MAX_DROPPED_BEFORE)
                | flag(self.recycled, RECYCLED_FLAG)
                | flag(self.grows, GROWS_FLAG)
        } else {
            self.dropped_before
        };
        out[56..60].copy_from_slice(&word.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header from the first bytes of a segment file.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, FormatError> {
        need(bytes, SEGMENT_HEADER_BYTES)?;
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let stored = u32_at(bytes, 60);
        let computed = crc32c::crc32c(&bytes[0..60]);
        if stored != computed {
            return Err(FormatError::ChecksumMismatch { stored, computed });
        }
        let version = u32_at(bytes, 8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnknownVersion(version));
        }
        let header_bytes = u32_at(bytes, 12) as u64;
        if header_bytes != SEGMENT_HEADER_BYTES {
            return Err(FormatError::BadField {
                field: "header length",
                value: header_bytes,
            });
        }
        let word = u32_at(bytes, 56);
        let (dropped_before, recycled, grows) = if version >= RECYCLED_FLAG_VERSION {
            (
                word & MAX_DROPPED_BEFORE,
                word & RECYCLED_FLAG != 0,
                word & GROWS_FLAG != 0,
            )
        } else {
            (word, false, false)
        };
        let header = SegmentHeader {
            format_version: version,
            segment_id: u64_at(bytes, 16),
            base_offset: u64_at(bytes, 24),
            nonce: u64_at(bytes, 32),
            created_ms: u64_at(bytes, 40),
            segment_bytes: u64_at(bytes, 48),
            dropped_before,
            recycled,
            grows,
        };
        if !valid_segment_bytes(header.segment_bytes) {
            return Err(FormatError::BadField {
                field: "segment size",
                value: header.segment_bytes,
            });
        }
        Ok(header)
    }
}

/// Whether `segment_bytes` is an accepted segment size.
pub fn valid_segment_bytes(segment_bytes: u64) -> bool {
    (MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes)
        && segment_bytes % SEGMENT_ALIGN_BYTES == 0
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// The checksum seed of a segment: every frame CRC starts from it, so bytes written
/// under another nonce (an older file, another segment) never validate.
pub fn frame_seed(nonce: u64) -> u32 {
    crc32c::crc32c(&nonce.to_le_bytes())
}

/// Writes a complete record frame (header, payload, zero padding) into `out`, which must
/// be exactly [`record_bytes`]`(payload.len())` long. `continues` marks every record of
/// an atomic batch but the last.
pub fn encode_record(
    out: &mut [u8],
    seed: u32,
    offset: u64,
    timestamp_ms: u64,
    payload: &[u8],
    continues: bool,
) {
    let frame_len = FRAME_HEADER_BYTES + payload.len() as u64;
    debug_assert_eq!(out.len() as u64, padded_frame_bytes(frame_len));
    debug_assert!(frame_len <= u32::MAX as u64);
    debug_assert_ne!(offset, MARKER_OFFSET);
    let header_end = FRAME_HEADER_BYTES as usize;
    let flags = if continues { FRAME_CONTINUES } else { 0 };
    // The padding (under 8 bytes) lies in the last word: zero that word first, with one
    // store, and let the header and payload overwrite what is theirs (a `fill` of the
    // padding was a `memset` call per record, ~33 instructions in callgrind).
    let last_word = out.len() - 8;
    out[last_word..].copy_from_slice(&[0u8; 8]);
    out[4..8].copy_from_slice(&(frame_len as u32 | flags).to_le_bytes());
    out[8..16].copy_from_slice(&offset.to_le_bytes());
    out[16..24].copy_from_slice(&timestamp_ms.to_le_bytes());
    out[header_end..header_end + payload.len()].copy_from_slice(payload);
    debug_assert!(out[header_end + payload.len()..].iter().all(|&b| b == 0));
    seal_frame(out, seed);
}

/// Writes a complete extended record frame (format version 2) into `out`, which must be
/// exactly [`entry_record_bytes`]`(extension.encoded_bytes(), payload.len())` long: the
/// frame header with [`FRAME_EXTENDED`] set, the extension block, the payload, zero
/// padding. `extension` must have passed [`Extension::validate`] and not be empty.
pub fn encode_entry_record(
    out: &mut [u8],
    seed: u32,
    (offset, timestamp_ms): (u64, u64),
    extension: &Extension<'_>,
    payload: &[u8],
    continues: bool,
) {
    let extension_bytes = extension.encoded_bytes() as usize;
    let frame_len = FRAME_HEADER_BYTES as usize + extension_bytes + payload.len();
    debug_assert_eq!(out.len() as u64, padded_frame_bytes(frame_len as u64));
    debug_assert!((frame_len as u64) < FRAME_EXTENDED as u64);
    debug_assert_ne!(offset, MARKER_OFFSET);
    let header_end = FRAME_HEADER_BYTES as usize;
    let payload_start = header_end + extension_bytes;
    let flags = FRAME_EXTENDED | if continues { FRAME_CONTINUES } else { 0 };
    out[4..8].copy_from_slice(&(frame_len as u32 | flags).to_le_bytes());
    out[8..16].copy_from_slice(&offset.to_le_bytes());
    out[16..24].copy_from_slice(&timestamp_ms.to_le_bytes());
    extension.encode(&mut out[header_end..payload_start]);
    out[payload_start..frame_len].copy_from_slice(payload);
    out[frame_len..].fill(0);
    seal_frame(out, seed);
}

/// Writes a commit marker into `out` ([`MARKER_BYTES`] long). `durable_position` is a
/// segment position below which every byte was durable when the marker was written.
pub fn encode_marker(out: &mut [u8], seed: u32, timestamp_ms: u64, durable_position: u64) {
    debug_assert_eq!(out.len() as u64, MARKER_BYTES);
    out[4..8].copy_from_slice(&((FRAME_HEADER_BYTES + MARKER_BODY_BYTES) as u32).to_le_bytes());
    out[8..16].copy_from_slice(&MARKER_OFFSET.to_le_bytes());
    out[16..24].copy_from_slice(&timestamp_ms.to_le_bytes());
    out[24..32].copy_from_slice(&durable_position.to_le_bytes());
    out[32..].fill(0);
    seal_frame(out, seed);
}

/// Computes and stores the CRC of an encoded, padded frame.
pub(crate) fn seal_frame(frame: &mut [u8], seed: u32) {
    let crc = crate::crc::frame_crc(frame, seed);
    frame[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// CRC of a padded frame: everything after the CRC word, padding included.
fn frame_crc(frame: &[u8], seed: u32) -> u32 {
    crc32c::crc32c_append(seed, &frame[4..])
}

/// What kind of frame a decoded frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A user record with this offset; `continues` when the next record belongs to the
    /// same atomic batch.
    Record { offset: u64, continues: bool },
    /// A commit marker: every byte of the segment below `durable_position` was durable
    /// when it was written.
    Marker { durable_position: u64 },
}

/// A validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Record or marker.
    pub kind: FrameKind,
    /// Milliseconds since the Unix epoch when the frame was appended.
    pub timestamp_ms: u64,
    /// Payload bytes (records) or body bytes (markers).
    pub payload_bytes: u64,
    /// Bytes of the record's extension block, between the frame header and the payload
    /// (0 for a plain frame).
    pub extension_bytes: u64,
    /// Bytes the whole frame occupies, padding included.
    pub padded_bytes: u64,
}

/// Why there is no frame at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length word is zero: the clean end of data.
    End,
    /// The bytes are not a valid frame.
    Invalid(&'static str),
}

/// Decodes and fully checks the frame at the start of `bytes` (which runs to the end of
/// the segment). Checks the length against the bytes available, the checksum against
/// `seed`, that a marker's body is well formed, and that an extended record's
/// extension block is ([`extension::decode`]).
///
/// The length word's [`FRAME_EXTENDED`] bit is honoured in segments of either version:
/// a version 1 writer never set it (lengths stay below it), so only forged bytes could
/// carry it there, and those are checked like any other extended frame.
pub fn decode_frame(bytes: &[u8], seed: u32) -> Result<Frame, FrameError> {
    decode_frame_with(bytes, |frame| frame_crc(frame, seed))
}

/// As [`decode_frame`], with the frame's checksum computed by `crc` (given the padded
/// frame): a scan computes those of several frames at once (`crate::crc`).
#[inline]
pub fn decode_frame_with(
    bytes: &[u8],
    crc: impl FnOnce(&[u8]) -> u32,
) -> Result<Frame, FrameError> {
    if (bytes.len() as u64) < FRAME_HEADER_BYTES {
        if bytes.iter().all(|b| *b == 0) {
            return Err(FrameError::End);
        }
        return Err(FrameError::Invalid(
            "frame header runs past the segment end",
        ));
    }
    let length_word = u32_at(bytes, 4);
    if length_word == 0 {
        // A real frame's length is at least a header: a zero length is the end of data
        // (a non-zero CRC word beside it is a torn write, judged by recovery).
        if u32_at(bytes, 0) == 0 {
            return Err(FrameError::End);
        }
        return Err(FrameError::Invalid("zero length with a non-zero checksum"));
    }
    let continues = length_word & FRAME_CONTINUES != 0;
    let extended = length_word & FRAME_EXTENDED != 0;
    let frame_len = (length_word & FRAME_LENGTH_MASK) as u64;
    if frame_len < FRAME_HEADER_BYTES {
        return Err(FrameError::Invalid(
            "length field smaller than a frame header",
        ));
    }
    let padded_bytes = padded_frame_bytes(frame_len);
    if padded_bytes > bytes.len() as u64 {
        return Err(FrameError::Invalid(
            "length field runs past the segment end",
        ));
    }
    let frame = &bytes[..padded_bytes as usize];
    if u32_at(frame, 0) != crc(frame) {
        return Err(FrameError::Invalid("checksum mismatch"));
    }
    // The padding, fewer than 8 bytes, is the top bytes of the frame's last word (one
    // test, where a loop over the bytes cost a scan a tenth of its instructions).
    let padding_bits = (padded_bytes - frame_len) * 8;
    if padding_bits > 0 && u64_at(frame, padded_bytes as usize - 8) >> (64 - padding_bits) != 0 {
        return Err(FrameError::Invalid("non-zero padding"));
    }
    let offset = u64_at(frame, 8);
    let timestamp_ms = u64_at(frame, 16);
    let body_bytes = frame_len - FRAME_HEADER_BYTES;
    let kind = if offset == MARKER_OFFSET {
        if body_bytes != MARKER_BODY_BYTES || continues {
            return Err(FrameError::Invalid("commit marker with a bad body length"));
        }
        if extended {
            return Err(FrameError::Invalid("commit marker with an extension block"));
        }
        FrameKind::Marker {
            durable_position: u64_at(frame, FRAME_HEADER_BYTES as usize),
        }
    } else {
        FrameKind::Record { offset, continues }
    };
    let extension_bytes = if extended {
        let body = &frame[FRAME_HEADER_BYTES as usize..frame_len as usize];
        extension::decode(body)
            .map_err(FrameError::Invalid)?
            .block_bytes
    } else {
        0
    };
    Ok(Frame {
        kind,
        timestamp_ms,
        payload_bytes: body_bytes - extension_bytes,
        extension_bytes,
        padded_bytes,
    })
}

/// Reads a frame's offset field and padded length without checking its checksum (for
/// walking past frames to one that will be checked in full). `None` when the length is
/// not plausible.
pub fn peek_frame(bytes: &[u8]) -> Option<(u64, u64)> {
    if (bytes.len() as u64) < FRAME_HEADER_BYTES {
        return None;
    }
    let frame_len = (u32_at(bytes, 4) & FRAME_LENGTH_MASK) as u64;
    let padded_bytes = padded_frame_bytes(frame_len);
    if frame_len < FRAME_HEADER_BYTES || padded_bytes > bytes.len() as u64 {
        return None;
    }
    Some((u64_at(bytes, 8), padded_bytes))
}

/// The offset and timestamp in the header of the frame at the start of `bytes`, and its
/// padded length, without checking its checksum (for searches whose answer is then read
/// in full: `seek_time`). `None` if the bytes cannot start a frame.
pub fn peek_header(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let (offset, padded_bytes) = peek_frame(bytes)?;
    Some((offset, u64_at(bytes, 16), padded_bytes))
}

/// Whether the frame at the start of `bytes` says the next record belongs to the same
/// batch (its length word's top bit), without checking it.
pub fn peek_continues(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && u32_at(bytes, 4) & FRAME_CONTINUES != 0
}

/// Whether the frame at the start of `bytes` says it carries an extension block (its
/// length word's [`FRAME_EXTENDED`] bit), without checking it.
pub fn peek_extended(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && u32_at(bytes, 4) & FRAME_EXTENDED != 0
}

// ---------------------------------------------------------------------------------------
// Index files
// ---------------------------------------------------------------------------------------

/// One sparse index entry: the record with `offset` starts at `position` in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexEntry {
    /// Record offset.
    pub offset: u64,
    /// Byte position of its frame in the segment file.
    pub position: u64,
}

/// The persisted form of a segment's sparse index plus a durable checkpoint of the
/// segment's end. Written beside the segment as `<id>.idx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Segment this index belongs to.
    pub segment_id: u64,
    /// That segment's nonce (a stale index for a re-prepared segment never matches).
    pub nonce: u64,
    /// That segment's base offset.
    pub base_offset: u64,
    /// Every byte below this position was durable when the index was written.
    pub data_end: u64,
    /// The offset of the first record at or after `data_end`.
    pub next_offset: u64,
    /// No byte of the segment at or past this position was written while this file was
    /// its newest index (the writer extends it before writing further): how far recovery
    /// must search past the end of data for torn or stray bytes. At least `data_end`;
    /// [`NO_WRITE_BOUND`] promises nothing.
    pub write_bound: u64,
    /// Written at a clean close: nothing at all was written past `data_end`.
    pub clean: bool,
    /// Written once the segment was sealed: its successor was activated (so a log whose
    /// last segment has such a file lost the segments after it).
    pub sealed: bool,
    /// Sparse entries, strictly increasing in offset and position.
    pub entries: Vec<IndexEntry>,
}

const INDEX_FLAG_CLEAN: u32 = 1;
const INDEX_FLAG_SEALED: u32 = 2;

impl IndexFile {
    /// Encodes the index file, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let entries_bytes = self.entries.len() * INDEX_ENTRY_BYTES as usize;
        let mut out = vec![0u8; INDEX_HEADER_BYTES as usize + entries_bytes];
        out[0..8].copy_from_slice(&INDEX_MAGIC);
        out[8..12].copy_from_slice(&INDEX_VERSION.to_le_bytes());
        let flags = if self.clean { INDEX_FLAG_CLEAN } else { 0 }
            | if self.sealed { INDEX_FLAG_SEALED } else { 0 };
        out[12..16].copy_from_slice(&flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        out[32..40].copy_from_slice(&self.base_offset.to_le_bytes());
        out[40..48].copy_from_slice(&self.data_end.to_le_bytes());
        out[48..56].copy_from_slice(&self.next_offset.to_le_bytes());
        out[56..64].copy_from_slice(&self.write_bound.to_le_bytes());
        out[64..68].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let mut at = INDEX_HEADER_BYTES as usize;
        for entry in &self.entries {
            let delta = entry.offset - self.base_offset;
            debug_assert!(delta <= u32::MAX as u64);
            debug_assert!(entry.position <= u32::MAX as u64);
            out[at..at + 4].copy_from_slice(&(delta as u32).to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&(entry.position as u32).to_le_bytes());
            at += INDEX_ENTRY_BYTES as usize;
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[0..68]), &out[72..]);
        out[68..72].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks an index file for a segment of `segment_bytes`. Every entry is
    /// checked to be in range and strictly increasing; the entry count is bounded by the
    /// bytes present, never trusted alone.
    pub fn decode(bytes: &[u8], segment_bytes: u64) -> Result<IndexFile, FormatError> {
        need(bytes, INDEX_HEADER_BYTES)?;
        if bytes[0..8] != INDEX_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let entries_count = u32_at(bytes, 64) as u64;
        let expected_bytes = INDEX_HEADER_BYTES + entries_count * INDEX_ENTRY_BYTES;
        if expected_bytes != bytes.len() as u64 {
            return Err(FormatError::BadField {
                field: "index entry count",
                value: entries_count,
            });
        }
        let stored = u32_at(bytes, 68);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..68]), &bytes[72..]);
        if stored != computed {
            return Err(FormatError::ChecksumMismatch { stored, computed });
        }
        let version = u32_at(bytes, 8);
        if version != INDEX_VERSION {
            return Err(FormatError::UnknownVersion(version));
        }
        let flags = u32_at(bytes, 12);
        if flags & !(INDEX_FLAG_CLEAN | INDEX_FLAG_SEALED) != 0 {
            return Err(FormatError::BadField {
                field: "index flags",
                value: flags as u64,
            });
        }
        let mut index = IndexFile {
            segment_id: u64_at(bytes, 16),
            nonce: u64_at(bytes, 24),
            base_offset: u64_at(bytes, 32),
            data_end: u64_at(bytes, 40),
            next_offset: u64_at(bytes, 48),
            write_bound: u64_at(bytes, 56),
            clean: flags & INDEX_FLAG_CLEAN != 0,
            sealed: flags & INDEX_FLAG_SEALED != 0,
            entries: Vec::with_capacity(entries_count as usize),
        };
        if index.data_end < SEGMENT_HEADER_BYTES || index.data_end > segment_bytes {
            return Err(FormatError::BadField {
                field: "index data end",
                value: index.data_end,
            });
        }
        if index.next_offset < index.base_offset {
            return Err(FormatError::BadField {
                field: "index next offset",
                value: index.next_offset,
            });
        }
        if index.write_bound < index.data_end {
            return Err(FormatError::BadField {
                field: "index write bound",
                value: index.write_bound,
            });
        }
        let mut previous: Option<IndexEntry> = None;
        for chunk in bytes[INDEX_HEADER_BYTES as usize..].chunks_exact(8) {
            let delta = u32_at(chunk, 0) as u64;
            let Some(offset) = index.base_offset.checked_add(delta) else {
                return Err(FormatError::BadField {
                    field: "index entry offset",
                    value: delta,
                });
            };
            let entry = IndexEntry {
                offset,
                position: u32_at(chunk, 4) as u64,
            };
            let in_range = entry.position >= SEGMENT_HEADER_BYTES
                && entry.position < index.data_end
                && entry.offset < index.next_offset;
            let increasing =
                previous.is_none_or(|p| entry.offset > p.offset && entry.position > p.position);
            if !in_range || !increasing {
                return Err(FormatError::BadField {
                    field: "index entry position",
                    value: entry.position,
                });
            }
            previous = Some(entry);
            index.entries.push(entry);
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            format_version: FORMAT_VERSION,
            segment_id: 7,
            base_offset: 1000,
            nonce: 0xdead_beef_1234_5678,
            created_ms: 1_700_000_000_000,
            segment_bytes: 1 << 20,
            dropped_before: 0,
            recycled: false,
            grows: false,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let recycled = SegmentHeader {
            recycled: true,
            grows: true,
            dropped_before: 3,
            ..header()
        };
        assert_eq!(SegmentHeader::decode(&recycled.encode()), Ok(recycled));
    }

    #[test]
    fn the_flag_bits_are_flags_from_version_3_and_part_of_dropped_before_before() {
        let mut bytes = header().encode();
        let word = (1u32 << 31) | (1 << 30) | 5;
        bytes[56..60].copy_from_slice(&word.to_le_bytes());
        let reseal = |bytes: &mut [u8; 64], version: u32| {
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
            let crc = crc32c::crc32c(&bytes[0..60]);
            bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        };
        reseal(&mut bytes, 3);
        let v3 = SegmentHeader::decode(&bytes).expect("version 3 reads");
        assert!(v3.recycled);
        assert!(v3.grows);
        assert_eq!(v3.dropped_before, 5);
        reseal(&mut bytes, 2);
        let v2 = SegmentHeader::decode(&bytes).expect("version 2 reads");
        assert!(!v2.recycled);
        assert!(!v2.grows);
        assert_eq!(v2.dropped_before, word);
    }

    #[test]
    fn header_detects_every_bit_flip() {
        let bytes = header().encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&damaged).is_err(),
                "bit {bit} undetected"
            );
        }
    }

    #[test]
    fn header_rejects_short_input_and_unknown_version() {
        let bytes = header().encode();
        assert!(matches!(
            SegmentHeader::decode(&bytes[..63]),
            Err(FormatError::Short { .. })
        ));
        let with_version = |version: u32| {
            let mut out = bytes;
            out[8..12].copy_from_slice(&version.to_le_bytes());
            let crc = crc32c::crc32c(&out[0..60]);
            out[60..64].copy_from_slice(&crc.to_le_bytes());
            out
        };
        for unknown in [0, FORMAT_VERSION + 1, u32::MAX] {
            assert_eq!(
                SegmentHeader::decode(&with_version(unknown)),
                Err(FormatError::UnknownVersion(unknown))
            );
        }
        let v1 = SegmentHeader::decode(&with_version(1)).expect("version 1 reads");
        assert_eq!(v1.format_version, 1);
    }

    fn record(payload: &[u8], offset: u64, seed: u32) -> Vec<u8> {
        let mut out = vec![0xAA; record_bytes(payload.len() as u64) as usize];
        encode_record(&mut out, seed, offset, 42, payload, false);
        out
    }

    #[test]
    fn record_round_trips_and_pads_with_zeros() {
        let seed = frame_seed(9);
        for len in 0..40usize {
            let payload: Vec<u8> = (0..len as u8).collect();
            let bytes = record(&payload, 5, seed);
            assert_eq!(bytes.len() % 8, 0);
            let frame = decode_frame(&bytes, seed).expect("valid frame");
            assert_eq!(
                frame.kind,
                FrameKind::Record {
                    offset: 5,
                    continues: false
                }
            );
            assert_eq!(frame.payload_bytes, len as u64);
            assert_eq!(frame.timestamp_ms, 42);
            assert_eq!(frame.padded_bytes, bytes.len() as u64);
            assert_eq!(&bytes[24..24 + len], &payload[..]);
            assert!(bytes[24 + len..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn record_detects_every_bit_flip_including_padding() {
        let seed = frame_seed(9);
        let bytes = record(b"hello, ringlog", 3, seed);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            match decode_frame(&damaged, seed) {
                Ok(frame) => panic!("bit {bit} undetected: {frame:?}"),
                Err(FrameError::End) => panic!("bit {bit}: a flip never reads as the end"),
                Err(FrameError::Invalid(_)) => {}
            }
        }
    }

    #[test]
    fn continues_flag_round_trips() {
        let seed = frame_seed(4);
        let mut out = vec![0u8; record_bytes(3) as usize];
        encode_record(&mut out, seed, 8, 1, b"abc", true);
        let frame = decode_frame(&out, seed).expect("valid frame");
        assert_eq!(
            frame.kind,
            FrameKind::Record {
                offset: 8,
                continues: true
            }
        );
        assert_eq!(frame.payload_bytes, 3);
    }

    #[test]
    fn frame_from_another_segment_never_validates() {
        let bytes = record(b"payload", 3, frame_seed(1));
        assert_eq!(
            decode_frame(&bytes, frame_seed(2)),
            Err(FrameError::Invalid("checksum mismatch"))
        );
    }

    #[test]
    fn marker_round_trips() {
        let seed = frame_seed(3);
        let mut bytes = vec![0u8; MARKER_BYTES as usize];
        encode_marker(&mut bytes, seed, 11, 4096);
        let frame = decode_frame(&bytes, seed).expect("valid marker");
        assert_eq!(
            frame.kind,
            FrameKind::Marker {
                durable_position: 4096
            }
        );
        assert_eq!(frame.padded_bytes, MARKER_BYTES);
    }

    #[test]
    fn hostile_lengths_are_rejected_without_panicking() {
        let seed = frame_seed(0);
        for len in [1u32, 23, u32::MAX, 1 << 30] {
            let mut bytes = vec![0u8; 64];
            bytes[4..8].copy_from_slice(&len.to_le_bytes());
            assert!(matches!(
                decode_frame(&bytes, seed),
                Err(FrameError::Invalid(_))
            ));
        }
        assert_eq!(decode_frame(&[0u8; 64], seed), Err(FrameError::End));
        assert_eq!(decode_frame(&[0u8; 5], seed), Err(FrameError::End));
        assert!(matches!(
            decode_frame(&[1u8; 5], seed),
            Err(FrameError::Invalid(_))
        ));
    }

    fn entry_record(ext: &Extension<'_>, payload: &[u8], seed: u32) -> Vec<u8> {
        let len = entry_record_bytes(ext.encoded_bytes(), payload.len() as u64);
        let mut out = vec![0xAA; len as usize];
        encode_entry_record(&mut out, seed, (5, 42), ext, payload, false);
        out
    }

    fn sample_extension() -> Extension<'static> {
        const HEADERS: &[(&str, &[u8])] = &[("kind", b"job.started")];
        Extension {
            seq: Some(9),
            key: Some(b"job-42"),
            id: None,
            headers: HEADERS,
        }
    }

    #[test]
    fn extended_record_round_trips() {
        let seed = frame_seed(9);
        let ext = sample_extension();
        for len in 0..20usize {
            let payload: Vec<u8> = (0..len as u8).collect();
            let bytes = entry_record(&ext, &payload, seed);
            assert_eq!(bytes.len() % 8, 0);
            assert_ne!(u32_at(&bytes, 4) & FRAME_EXTENDED, 0);
            assert!(peek_extended(&bytes));
            let frame = decode_frame(&bytes, seed).expect("valid frame");
            assert_eq!(frame.extension_bytes, ext.encoded_bytes());
            assert_eq!(frame.payload_bytes, len as u64);
            assert_eq!(frame.padded_bytes, bytes.len() as u64);
            assert_eq!(peek_frame(&bytes), Some((5, bytes.len() as u64)));
            let payload_at = 24 + frame.extension_bytes as usize;
            assert_eq!(&bytes[payload_at..payload_at + len], &payload[..]);
            let view = extension::decode(&bytes[24..payload_at]).expect("extension");
            assert_eq!(view.seq, Some(9));
            assert_eq!(view.key, Some(&b"job-42"[..]));
        }
        // A plain frame is exactly what it was: no extension bit, same length.
        let plain = record(b"abc", 5, seed);
        assert!(!peek_extended(&plain));
        assert_eq!(plain.len() as u64, record_bytes(3));
        assert_eq!(
            decode_frame(&plain, seed).expect("plain").extension_bytes,
            0
        );
    }

    #[test]
    fn extended_record_detects_every_bit_flip() {
        let seed = frame_seed(9);
        let bytes = entry_record(&sample_extension(), b"payload", seed);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode_frame(&damaged, seed), Err(FrameError::Invalid(_))),
                "bit {bit} undetected"
            );
        }
    }

    /// Re-seals a frame after its bytes were changed, as a buggy or hostile writer would.
    fn reseal(mut frame: Vec<u8>, seed: u32) -> Vec<u8> {
        seal_frame(&mut frame, seed);
        frame
    }

    #[test]
    fn malformed_extensions_with_valid_checksums_are_invalid_frames() {
        let seed = frame_seed(9);
        let good = entry_record(&sample_extension(), b"payload", seed);
        let frame_len = (u32_at(&good, 4) & FRAME_LENGTH_MASK) as usize;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("block longer than the frame", {
                let mut b = good.clone();
                b[24..28].copy_from_slice(&(frame_len as u32).to_le_bytes());
                b
            }),
            ("block shorter than its fixed part", {
                let mut b = good.clone();
                b[24..28].copy_from_slice(&4u32.to_le_bytes());
                b
            }),
            ("unknown field bit", {
                let mut b = good.clone();
                b[28] |= 0x80;
                b
            }),
            ("header count past the block", {
                let mut b = good.clone();
                b[29] = 2;
                b
            }),
            ("extended bit on a frame too short for a block", {
                let mut b = vec![0u8; 32];
                b[4..8].copy_from_slice(&(28u32 | FRAME_EXTENDED).to_le_bytes());
                b[8..16].copy_from_slice(&3u64.to_le_bytes());
                b
            }),
            ("extended bit on a plain frame", {
                let mut b = record(b"plain payload!", 5, seed);
                b[7] |= (FRAME_EXTENDED >> 24) as u8;
                b
            }),
            ("extended commit marker", {
                let mut b = vec![0u8; MARKER_BYTES as usize];
                encode_marker(&mut b, seed, 1, 64);
                b[7] |= (FRAME_EXTENDED >> 24) as u8;
                b
            }),
        ];
        for (what, bytes) in cases {
            let bytes = reseal(bytes, seed);
            assert!(
                matches!(decode_frame(&bytes, seed), Err(FrameError::Invalid(_))),
                "{what}: {:?}",
                decode_frame(&bytes, seed)
            );
        }
    }

    fn index() -> IndexFile {
        IndexFile {
            segment_id: 7,
            nonce: 99,
            base_offset: 1000,
            data_end: 9000,
            next_offset: 1100,
            write_bound: 1 << 20,
            clean: true,
            sealed: false,
            entries: vec![
                IndexEntry {
                    offset: 1000,
                    position: 64,
                },
                IndexEntry {
                    offset: 1050,
                    position: 4200,
                },
            ],
        }
    }

    #[test]
    fn index_round_trips_and_detects_damage() {
        let idx = index();
        let bytes = idx.encode();
        assert_eq!(IndexFile::decode(&bytes, 1 << 20), Ok(idx));
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(IndexFile::decode(&damaged, 1 << 20).is_err(), "bit {bit}");
        }
        for len in 0..bytes.len() {
            assert!(IndexFile::decode(&bytes[..len], 1 << 20).is_err());
        }
    }

    #[test]
    fn index_rejects_an_entry_offset_past_u64_max() {
        let mut idx = index();
        idx.base_offset = u64::MAX - 10;
        idx.next_offset = u64::MAX;
        idx.entries = vec![IndexEntry {
            offset: u64::MAX - 1,
            position: 64,
        }];
        let mut bytes = idx.encode();
        // An offset delta that overflows, checksum recomputed.
        let first_entry = INDEX_HEADER_BYTES as usize;
        bytes[first_entry..first_entry + 4].copy_from_slice(&20u32.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..68]), &bytes[72..]);
        bytes[68..72].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            IndexFile::decode(&bytes, 1 << 20),
            Err(FormatError::BadField {
                field: "index entry offset",
                ..
            })
        ));
    }

    #[test]
    fn index_rejects_out_of_order_entries() {
        let mut idx = index();
        idx.entries.swap(0, 1);
        assert!(IndexFile::decode(&idx.encode(), 1 << 20).is_err());
    }
}
