//! Snapshots: application state tied to an offset, kept beside the log
//! (`snapshots/<offset>.snap`, docs/design.md 2.6). Written whole to a temporary file,
//! synced, renamed into place and the directory synced: a crash leaves the new snapshot
//! or none of it, never a torn one; a damaged file is skipped for the one before it.
//!
//! ```text
//! file:  0..8    magic "RLSNAP\x01\0"
//!        8..12   version u32 = 1
//!        12..16  reserved, zero
//!        16..24  offset u64: the state covers every record below it
//!        24..32  bytes_len u64
//!        32..36  CRC32C of the state bytes
//!        36..40  CRC32C of bytes 0..36
//!        40..    the state bytes
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::log::Log;
use crate::segment;

/// The directory of a log's snapshots.
pub(crate) const SNAPSHOTS_DIR: &str = "snapshots";
const MAGIC: [u8; 8] = *b"RLSNAP\x01\0";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 40;
/// Snapshots kept: the newest and the one before it (a fallback if the newest is
/// damaged later).
const KEPT: usize = 2;
/// Largest snapshot accepted (bytes of state).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// A snapshot read back by [`Log::latest_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    offset: u64,
    bytes: Vec<u8>,
}

impl Snapshot {
    /// The offset the state covers: every record below it is reflected in it; replay
    /// from here.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The state, as saved.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The state, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn encode_header(offset: u64, bytes: &[u8]) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&offset.to_le_bytes());
    out[24..32].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    out[32..36].copy_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    let crc = crc32c::crc32c(&out[0..36]);
    out[36..40].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a snapshot file; the reason when it is not a valid one.
fn decode(file: &[u8]) -> std::result::Result<Snapshot, String> {
    let header = file
        .get(..HEADER_BYTES)
        .ok_or_else(|| format!("{} bytes, shorter than a header", file.len()))?;
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(word)
    };
    if header[0..8] != MAGIC {
        return Err("bad magic".into());
    }
    if u32_at(36) != crc32c::crc32c(&header[0..36]) {
        return Err("header checksum mismatch".into());
    }
    if u32_at(8) != VERSION {
        return Err(format!("unknown version {}", u32_at(8)));
    }
    let len = u64_at(24);
    let body = file
        .get(HEADER_BYTES..)
        .filter(|body| body.len() as u64 == len)
        .ok_or_else(|| {
            format!(
                "holds {} bytes of state, its header says {len}",
                file.len() - HEADER_BYTES
            )
        })?;
    if u32_at(32) != crc32c::crc32c(body) {
        return Err("state checksum mismatch".into());
    }
    Ok(Snapshot {
        offset: u64_at(16),
        bytes: body.to_vec(),
    })
}

fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{offset:020}.snap"))
}

/// The snapshot files of `dir`, newest (highest offset) first.
fn listed(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".snap")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(offset) = stem.parse::<u64>() {
                found.push((offset, entry.path()));
            }
        }
    }
    found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(found)
}

/// Removes temporary files that saves of other processes (crashed: one writer holds the
/// log) left behind.
fn remove_stale_temporaries(dir: &Path) {
    let ours = format!("+{}.", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('+') && name.ends_with(".snap.tmp") && !name.starts_with(&ours) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `verify`'s look at the snapshots of the log in `log_dir` whose records end at
/// `next_offset`: every snapshot file must be intact, and none may cover records the log
/// does not hold. Returns (file, what is wrong) for each that fails.
pub(crate) fn check_snapshots(log_dir: &Path, next_offset: u64) -> Vec<(PathBuf, String)> {
    let dir = log_dir.join(SNAPSHOTS_DIR);
    let Ok(files) = listed(&dir) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (offset, path) in files {
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // removed by a save meanwhile
        };
        match decode(&bytes) {
            Err(why) => problems.push((
                path,
                format!("damaged snapshot ({why}); latest_snapshot falls back to an older one"),
            )),
            Ok(s) if s.offset != offset => problems.push((
                path,
                format!("the file is named for offset {offset} but holds offset {}", s.offset),
            )),
            Ok(_) if offset > next_offset => problems.push((
                path,
                format!(
                    "snapshot of the state after offset {offset}, but the log ends at {next_offset}: \
                     records it covers are missing"
                ),
            )),
            Ok(_) => {}
        }
    }
    problems
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Log {
    /// Saves `bytes` as the application's state after every record below `offset`
    /// (`offset <= next_offset()`), crash-safely: when it returns, the snapshot is durable
    /// and [`Log::latest_snapshot`] returns it (or a later one); a crash before that
    /// leaves the previous snapshot. The newest two are kept. With
    /// [`Log::trim_before`]`(offset)` afterwards, this is compaction without a rewrite:
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), Options::default().segment_bytes(1 << 20))?;
    /// let mut total = 0u64;
    /// for amount in [5u64, 7, 30] {
    ///     log.append(&amount.to_le_bytes())?;
    ///     total += amount;
    /// }
    /// log.save_snapshot(log.next_offset(), &total.to_le_bytes())?;
    /// log.trim_before(log.next_offset())?;
    /// // After a restart: the state, then the records after it.
    /// let snapshot = log.latest_snapshot()?.expect("saved");
    /// assert_eq!(snapshot.bytes(), 42u64.to_le_bytes());
    /// assert_eq!(log.iter(snapshot.offset()).count(), 0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if `offset > next_offset()`; [`Error::RecordTooLarge`]
    /// past [`MAX_SNAPSHOT_BYTES`]; [`Error::ReadOnly`]; [`Error::Closed`]; [`Error::Io`].
    pub fn save_snapshot(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        self.check_open()?;
        let next = self.next_offset();
        if offset > next {
            return Err(Error::OffsetOutOfRange {
                offset,
                first: self.first_offset(),
                next,
            });
        }
        if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(Error::RecordTooLarge {
                record_bytes: bytes.len() as u64,
                max_record_bytes: MAX_SNAPSHOT_BYTES,
            });
        }
        let dir = self.dir().join(SNAPSHOTS_DIR);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
            segment::sync_dir(self.dir())?;
        }
        let tmp = dir.join(format!(
            "+{}.{}.snap.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&encode_header(offset, bytes))?;
            file.write_all(bytes)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("write snapshot", &tmp, e));
        }
        let path = snapshot_path(&dir, offset);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename snapshot", &path, e))?;
        segment::sync_dir(&dir)?;
        // Older ones beyond the newest two go (best effort), and temporaries a crash left.
        for (_, old) in listed(&dir)?.into_iter().skip(KEPT) {
            let _ = std::fs::remove_file(old);
        }
        remove_stale_temporaries(&dir);
        Ok(())
    }

    /// The newest intact snapshot, or `None` if there is none. A damaged newest file
    /// (its checksums fail) is skipped for the one before it.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] if snapshots exist and none is intact (naming the newest);
    /// [`Error::Io`].
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>> {
        let dir = self.dir().join(SNAPSHOTS_DIR);
        let mut first_damage = None;
        for (offset, path) in listed(&dir)? {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read snapshot", &path, e)),
            };
            match decode(&bytes) {
                Ok(snapshot) if snapshot.offset == offset => return Ok(Some(snapshot)),
                Ok(snapshot) => {
                    first_damage.get_or_insert((path, format!("holds offset {}", snapshot.offset)))
                }
                Err(why) => first_damage.get_or_insert((path, why)),
            };
        }
        match first_damage {
            None => Ok(None),
            Some((path, why)) => Err(Error::corruption(
                &path,
                0,
                format!("no intact snapshot: this one is damaged ({why})"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_every_flip_is_caught() {
        let state = b"state of the world".to_vec();
        let mut file = encode_header(77, &state).to_vec();
        file.extend_from_slice(&state);
        let back = decode(&file).unwrap();
        assert_eq!((back.offset(), back.bytes()), (77, state.as_slice()));
        for byte in 0..file.len() {
            let mut flipped = file.clone();
            flipped[byte] ^= 0x10;
            assert!(decode(&flipped).is_err(), "flip at {byte}");
        }
        assert!(decode(&file[..file.len() - 1]).is_err());
    }
}
