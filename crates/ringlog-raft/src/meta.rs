//! Sidecar files beside the log: two checksummed slots written in place.
//!
//! A slot (72 bytes; slot 0 at byte 0, slot 1 at byte 512, so a torn sector write can
//! damage only one):
//!
//! ```text
//!  0  magic b"RLRAFT\x01\0"
//!  8  kind u32      1 = raft.meta (vote, purged), 2 = raft.committed
//! 12  flags u32     which of the values below are present (per kind)
//! 16  seq u64       the slot with the higher seq and a valid checksum wins
//! 24  values [u64; 5]
//! 64  crc u32       CRC32C of bytes 0..64
//! 68  reserved u32  = 0
//! ```
//!
//! Each write goes to the slot not holding the current state, with seq + 1. A crash during
//! the write leaves the other slot (the previous state) valid. `raft.meta` is flushed
//! (`fdatasync`) on every write, so the slot it overwrites next time is always the older,
//! superseded one. The file is created whole (temporary name, fsync, rename, directory
//! fsync), so it never exists without a valid slot.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"RLRAFT\x01\0";
const SLOT_BYTES: usize = 72;
const SLOT_STRIDE_BYTES: u64 = 512;
const FILE_BYTES: u64 = 2 * SLOT_STRIDE_BYTES;
const CRC_AT: usize = 64;

const _: () = assert!(SLOT_BYTES as u64 <= SLOT_STRIDE_BYTES);
const _: () = assert!(CRC_AT + 8 == SLOT_BYTES);

/// What a slot file holds: flags and five values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotState {
    /// Bit flags, meaning per file kind.
    pub flags: u32,
    /// The values, meaning per file kind.
    pub values: [u64; 5],
}

/// A two-slot file.
#[derive(Debug)]
pub struct SlotFile {
    file: File,
    path: PathBuf,
    kind: u32,
    seq: u64,
    /// The slot holding the current state.
    current_slot: u64,
}

fn corrupt(path: &Path, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: {reason}; neither slot holds a valid state (the file is damaged: restore the node from a peer)",
            path.display()
        ),
    )
}

fn encode_slot(kind: u32, seq: u64, state: &SlotState) -> [u8; SLOT_BYTES] {
    let mut out = [0u8; SLOT_BYTES];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&kind.to_le_bytes());
    out[12..16].copy_from_slice(&state.flags.to_le_bytes());
    out[16..24].copy_from_slice(&seq.to_le_bytes());
    for (i, value) in state.values.iter().enumerate() {
        out[24 + 8 * i..32 + 8 * i].copy_from_slice(&value.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[..CRC_AT]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_slot(kind: u32, bytes: &[u8; SLOT_BYTES]) -> Option<(u64, SlotState)> {
    let word4 =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let word8 = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if bytes[0..8] != MAGIC || word4(8) != kind {
        return None;
    }
    if crc32c::crc32c(&bytes[..CRC_AT]) != word4(CRC_AT) {
        return None;
    }
    let mut values = [0u64; 5];
    for (i, value) in values.iter_mut().enumerate() {
        *value = word8(24 + 8 * i);
    }
    Some((
        word8(16),
        SlotState {
            flags: word4(12),
            values,
        },
    ))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SlotFile {
    /// Opens (or creates, empty) the slot file at `path` and returns it with its state.
    ///
    /// # Errors
    ///
    /// I/O errors; `InvalidData` if neither slot is valid.
    pub fn open(path: &Path, kind: u32) -> io::Result<(SlotFile, SlotState)> {
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)?;
            file.write_all_at(&encode_slot(kind, 1, &SlotState::default()), 0)?;
            file.set_len(FILE_BYTES)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        }
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut best: Option<(u64, u64, SlotState)> = None;
        for slot in 0..2u64 {
            let mut bytes = [0u8; SLOT_BYTES];
            match file.read_exact_at(&mut bytes, slot * SLOT_STRIDE_BYTES) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
                Err(e) => return Err(e),
            }
            if let Some((seq, state)) = decode_slot(kind, &bytes) {
                if best.is_none_or(|(best_seq, _, _)| seq > best_seq) {
                    best = Some((seq, slot, state));
                }
            }
        }
        let Some((seq, current_slot, state)) = best else {
            return Err(corrupt(path, "no valid slot"));
        };
        Ok((
            SlotFile {
                file,
                path: path.to_path_buf(),
                kind,
                seq,
                current_slot,
            },
            state,
        ))
    }

    /// Writes `state` to the other slot; with `sync`, flushes it before returning.
    ///
    /// # Errors
    ///
    /// I/O errors. After one, the file's state on disk is the old or the new one.
    pub fn write(&mut self, state: &SlotState, sync: bool) -> io::Result<()> {
        let slot = 1 - self.current_slot;
        let seq = self.seq + 1;
        self.file.write_all_at(
            &encode_slot(self.kind, seq, state),
            slot * SLOT_STRIDE_BYTES,
        )?;
        if sync {
            self.file.sync_data()?;
        }
        self.seq = seq;
        self.current_slot = slot;
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_a_torn_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let (mut f, s) = SlotFile::open(&path, 1).unwrap();
        assert_eq!(s, SlotState::default());
        let a = SlotState {
            flags: 1,
            values: [1, 2, 3, 4, 5],
        };
        let b = SlotState {
            flags: 3,
            values: [6, 7, 8, 9, 10],
        };
        f.write(&a, true).unwrap();
        f.write(&b, true).unwrap();
        drop(f);
        let (f, s) = SlotFile::open(&path, 1).unwrap();
        assert_eq!(s, b);
        // Tear the newest slot: the previous state comes back.
        let raw = OpenOptions::new().write(true).open(&path).unwrap();
        raw.write_all_at(&[0xff; 4], f.current_slot * SLOT_STRIDE_BYTES + 30)
            .unwrap();
        let (_, s) = SlotFile::open(&path, 1).unwrap();
        assert_eq!(s, a);
        // The wrong kind is refused.
        assert!(SlotFile::open(&path, 2).is_err());
    }
}
