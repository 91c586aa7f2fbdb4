//! What a producer stages: plain payloads (`append`, `append_batch`: plain frames,
//! unchanged since format version 1) or one entry whose key, headers, id or sequence go
//! into an extension block (format version 2).

use crate::format::{self, Extension};

/// Records to stage as one atomic batch.
#[derive(Clone, Copy)]
pub(crate) enum Records<'a> {
    /// Plain records, one per payload.
    Plain(&'a [&'a [u8]]),
    /// One extended record; `extension` is validated and not empty. With `once`, not
    /// staged if the log holds a record with its id (`append_entry_once`).
    Entry {
        payload: &'a [u8],
        extension: &'a Extension<'a>,
        once: bool,
    },
}

impl Records<'_> {
    /// How many records.
    pub(crate) fn count(&self) -> usize {
        match self {
            Records::Plain(payloads) => payloads.len(),
            Records::Entry { .. } => 1,
        }
    }

    /// Bytes of record `i` after its frame header (extension block and payload): what
    /// `Options::max_record_bytes` limits.
    pub(crate) fn body_bytes(&self, i: usize) -> u64 {
        match self {
            Records::Plain(payloads) => payloads[i].len() as u64,
            Records::Entry {
                payload, extension, ..
            } => extension.encoded_bytes() + payload.len() as u64,
        }
    }

    /// Bytes record `i` occupies in a segment.
    pub(crate) fn frame_bytes(&self, i: usize) -> u64 {
        match self {
            Records::Plain(payloads) => format::record_bytes(payloads[i].len() as u64),
            Records::Entry {
                payload, extension, ..
            } => format::entry_record_bytes(extension.encoded_bytes(), payload.len() as u64),
        }
    }

    /// Encodes record `i` into `out` ([`Records::frame_bytes`] long).
    pub(crate) fn encode(
        &self,
        i: usize,
        out: &mut [u8],
        seed: u32,
        (offset, timestamp_ms): (u64, u64),
        continues: bool,
    ) {
        match self {
            Records::Plain(payloads) => {
                format::encode_record(out, seed, offset, timestamp_ms, payloads[i], continues)
            }
            Records::Entry {
                payload, extension, ..
            } => format::encode_entry_record(
                out,
                seed,
                (offset, timestamp_ms),
                extension,
                payload,
                continues,
            ),
        }
    }

    /// The caller sequence the batch carries, checked against the log's last one under
    /// the staging lock.
    pub(crate) fn seq(&self) -> Option<u64> {
        match self {
            Records::Plain(_) => None,
            Records::Entry { extension, .. } => extension.seq,
        }
    }

    /// The idempotency id the batch carries.
    pub(crate) fn id(&self) -> Option<&[u8]> {
        match self {
            Records::Plain(_) => None,
            Records::Entry { extension, .. } => extension.id,
        }
    }

    /// Whether the batch is to be staged only if the log holds no record with its id.
    pub(crate) fn once(&self) -> bool {
        matches!(self, Records::Entry { once: true, .. })
    }

    /// Whether any record needs format version 2 (an extended frame).
    pub(crate) fn extended(&self) -> bool {
        matches!(self, Records::Entry { .. })
    }
}
