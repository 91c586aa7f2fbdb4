//! The fixed header at the start of every record's payload, and the entry codec.
//!
//! ```text
//!  0  magic  [u8; 2] = b"rr"
//!  2  version u8     = 1
//!  3  kind   u8      0 blank, 1 normal (application data), 2 membership (JSON)
//!  4  reserved u32   = 0
//!  8  term    u64    the log id's leader term
//! 16  node_id u64    the log id's leader node
//! 24  index   u64    the log id's index (= the record's ringlog offset, checked on read)
//! 32  body           raw bytes (RecordData) or JSON (membership); empty for blank
//! ```
//!
//! Every integer is little-endian. ringlog checksums the whole record, so the header has no
//! checksum of its own; a reader still checks magic, version, kind and index.

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftTypeConfig};

/// Bytes of the header before the body.
pub const HEADER_BYTES: usize = 32;
/// The header's magic bytes.
pub const MAGIC: [u8; 2] = *b"rr";
/// The header's format version.
pub const VERSION: u8 = 1;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

const _: () = assert!(HEADER_BYTES % 8 == 0);

/// Application data stored as the record's raw body bytes.
pub trait RecordData: Sized {
    /// Appends the encoded form to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);
    /// Decodes what [`RecordData::encode_into`] wrote.
    ///
    /// # Errors
    ///
    /// A message saying why the bytes are not a valid value.
    fn decode_from(bytes: &[u8]) -> Result<Self, String>;
}

impl RecordData for Vec<u8> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode_from(bytes: &[u8]) -> Result<Self, String> {
        Ok(bytes.to_vec())
    }
}

impl RecordData for String {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode_from(bytes: &[u8]) -> Result<Self, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }
}

/// Encodes `entry` (header and body) into `out`, which is cleared first.
///
/// # Errors
///
/// Serializing a membership failed.
pub fn encode<C>(entry: &Entry<C>, out: &mut Vec<u8>) -> Result<(), String>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: RecordData,
{
    out.clear();
    let kind = match &entry.payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(_) => KIND_NORMAL,
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    };
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_BYTES);
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(data) => data.encode_into(out),
        EntryPayload::Membership(m) => {
            serde_json::to_writer(&mut *out, m).map_err(|e| format!("membership: {e}"))?
        }
    }
    Ok(())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The log id in a record's header, checked against the record's `offset`.
///
/// # Errors
///
/// A message naming what is wrong with the header.
pub fn decode_log_id(bytes: &[u8], offset: u64) -> Result<LogId<u64>, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!(
            "record at offset {offset}: {} bytes, shorter than the {HEADER_BYTES}-byte entry header",
            bytes.len()
        ));
    }
    if bytes[0..2] != MAGIC {
        return Err(format!(
            "record at offset {offset}: not an entry (bad magic)"
        ));
    }
    if bytes[2] != VERSION {
        return Err(format!(
            "record at offset {offset}: entry header version {} (this build reads {VERSION})",
            bytes[2]
        ));
    }
    let index = u64_at(bytes, 24);
    if index != offset {
        return Err(format!(
            "record at offset {offset} holds the entry of index {index}"
        ));
    }
    Ok(LogId::new(
        CommittedLeaderId::new(u64_at(bytes, 8), u64_at(bytes, 16)),
        index,
    ))
}

/// Decodes the entry in a record read at `offset`.
///
/// # Errors
///
/// A message naming what is wrong with the record.
pub fn decode<C>(bytes: &[u8], offset: u64) -> Result<Entry<C>, String>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: RecordData,
{
    let log_id = decode_log_id(bytes, offset)?;
    let body = &bytes[HEADER_BYTES..];
    let payload = match bytes[3] {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(
            C::D::decode_from(body).map_err(|e| format!("record at offset {offset}: {e}"))?,
        ),
        KIND_MEMBERSHIP => {
            let m: Membership<u64, C::Node> = serde_json::from_slice(body)
                .map_err(|e| format!("record at offset {offset}: membership: {e}"))?;
            EntryPayload::Membership(m)
        }
        kind => {
            return Err(format!(
                "record at offset {offset}: unknown entry kind {kind}"
            ))
        }
    };
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    openraft::declare_raft_types!(
        Tc: D = Vec<u8>, R = (), SnapshotData = std::io::Cursor<Vec<u8>>
    );

    fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    #[test]
    fn entries_round_trip_and_the_header_is_checked() {
        let entries: Vec<Entry<Tc>> = vec![
            Entry {
                log_id: log_id(1, 2, 3),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(4, 5, 6),
                payload: EntryPayload::Normal(b"data".to_vec()),
            },
            Entry {
                log_id: log_id(7, 8, 9),
                payload: EntryPayload::Membership(Membership::new(
                    vec![[1u64, 2, 3].into_iter().collect()],
                    None,
                )),
            },
        ];
        let mut buf = Vec::new();
        for e in &entries {
            encode(e, &mut buf).unwrap();
            assert_eq!(&buf[0..2], b"rr");
            assert_eq!(
                u64::from_le_bytes(buf[8..16].try_into().unwrap()),
                e.log_id.leader_id.term
            );
            let back: Entry<Tc> = decode(&buf, e.log_id.index).unwrap();
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
            // Read at another offset: refused.
            assert!(decode_log_id(&buf, e.log_id.index + 1).is_err());
        }
        encode(&entries[1], &mut buf).unwrap();
        assert_eq!(&buf[HEADER_BYTES..], b"data");
        let mut bad = buf.clone();
        bad[0] = b'x';
        assert!(decode_log_id(&bad, 6).is_err());
        let mut bad = buf.clone();
        bad[2] = VERSION + 1;
        assert!(decode_log_id(&bad, 6).unwrap_err().contains("version"));
        let mut bad = buf.clone();
        bad[3] = 9;
        assert!(decode::<Tc>(&bad, 6).is_err());
        assert!(decode_log_id(&buf[..HEADER_BYTES - 1], 6).is_err());
    }
}
