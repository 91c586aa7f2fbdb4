//! Idempotent appends (`Log::append_once`, `Log::append_entry_once`): which ids the log
//! holds, and at what offset each first appeared.
//!
//! What this version keeps, and where (docs/design.md 2.2.2):
//!
//! - In memory only: a 128-bit hash of each id (two SipHash-1-3 keyed at random per open,
//!   so nobody can choose ids that collide) and the offset of its first record: 24 bytes
//!   per id in a hash table, about 28 to 56 bytes with the table's slack (a million ids:
//!   at most 50 MiB, the table then having 2^21 slots).
//! - Ids staged since open are recorded as they are staged, under the staging lock, by
//!   every append that carries one (`append_entry` with an id included), so two
//!   concurrent `append_once` calls with one id append once.
//! - Ids on disk at open are read lazily, by the first `append_once` of the handle: from
//!   each sealed segment's entry summary (`summary.rs`: one small file, built by a walk
//!   of the segment the first time), and by walking the active segment's records (frame
//!   headers; extended frames checked in full). Open itself reads nothing for ids.
//! - Ids of records that are no longer in the log are forgotten: trimmed (below the first
//!   offset, at once), truncated (at the truncation), or cut as a torn tail after a crash
//!   (never acknowledged; not on disk at the next open). Appending one again appends it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

/// A 128-bit digest of an id.
pub(crate) type IdHash = u128;

/// Hashes ids to 128 bits under keys chosen at random for one open log.
#[derive(Clone)]
pub(crate) struct IdHasher {
    keys: (RandomState, RandomState),
}

impl IdHasher {
    /// The digest of `id`.
    pub(crate) fn hash(&self, id: &[u8]) -> IdHash {
        let half = |state: &RandomState| {
            let mut hasher = state.build_hasher();
            hasher.write(id);
            hasher.finish() as u128
        };
        (half(&self.keys.0) << 64) | half(&self.keys.1)
    }
}

/// The ids a log holds, and the offset of the first record with each.
pub(crate) struct IdIndex {
    hasher: IdHasher,
    /// Ids staged since open (first offset of each).
    staged: HashMap<IdHash, u64>,
    /// Ids of the records found at open, once read (`None` until the first
    /// `append_once`).
    on_disk: Option<HashMap<IdHash, u64>>,
    /// The end of the records that loading reads from disk: those found at open, or all
    /// below a truncation (a cut commits what is staged first). `on_disk` covers the
    /// offsets below it, `staged` the ones staged since.
    open_end_offset: u64,
}

impl IdIndex {
    /// An index for a log whose records found at open end at `open_end_offset`.
    pub(crate) fn new(open_end_offset: u64) -> IdIndex {
        IdIndex {
            hasher: IdHasher {
                keys: (RandomState::new(), RandomState::new()),
            },
            staged: HashMap::new(),
            on_disk: None,
            open_end_offset,
        }
    }

    /// The digest of `id` under this index's keys.
    pub(crate) fn hash(&self, id: &[u8]) -> IdHash {
        self.hasher.hash(id)
    }

    /// This index's hasher, for reading the ids on disk outside the staging lock.
    pub(crate) fn hasher(&self) -> IdHasher {
        self.hasher.clone()
    }

    /// Whether the ids on disk at open have been read.
    pub(crate) fn is_loaded(&self) -> bool {
        self.on_disk.is_some()
    }

    /// The end of the records found at open: the ids on disk are those of the records
    /// below it.
    pub(crate) fn open_end_offset(&self) -> u64 {
        self.open_end_offset
    }

    /// Installs the ids read from disk (the first load wins; a concurrent second one
    /// read the same records).
    pub(crate) fn install(&mut self, on_disk: HashMap<IdHash, u64>) {
        if self.on_disk.is_none() {
            self.on_disk = Some(on_disk);
        }
    }

    /// The offset of the first record with `hash` at or past `first_offset` (the log's
    /// first: an id whose record was trimmed is forgotten), if the log holds one.
    pub(crate) fn find(&self, hash: IdHash, first_offset: u64) -> Option<u64> {
        let live = |offset: &u64| *offset >= first_offset;
        self.on_disk
            .as_ref()
            .and_then(|ids| ids.get(&hash))
            .filter(|o| live(o))
            .or_else(|| self.staged.get(&hash).filter(|o| live(o)))
            .copied()
    }

    /// Records that the record at `offset` carries the id with `hash` (kept only if the
    /// log holds no other record with it at or past `first_offset`).
    pub(crate) fn staged(&mut self, hash: IdHash, offset: u64, first_offset: u64) {
        if self.find(hash, first_offset).is_none() {
            self.staged.insert(hash, offset);
        }
    }

    /// After a truncation at `offset`: forgets the ids of the records cut away. Every
    /// record below `offset` is written by then, so a load still to come reads them all.
    pub(crate) fn forget_from(&mut self, offset: u64) {
        self.staged.retain(|_, first| *first < offset);
        if let Some(ids) = &mut self.on_disk {
            ids.retain(|_, first| *first < offset);
        }
        self.open_end_offset = offset;
    }

    /// Ids known, for tests and stats.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.staged.len() + self.on_disk.as_ref().map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offset_of_an_id_wins() {
        let mut index = IdIndex::new(10);
        let a = index.hash(b"evt-a");
        let b = index.hash(b"evt-b");
        assert_ne!(a, b);
        assert_eq!(index.hash(b"evt-a"), a, "stable within an index");
        index.staged(a, 12, 0);
        index.staged(a, 15, 0);
        assert_eq!(index.find(a, 0), Some(12));
        assert_eq!(index.find(b, 0), None);
        // Trimmed below 13: forgotten, and staged again at 15.
        assert_eq!(index.find(a, 13), None);
        index.staged(a, 15, 13);
        assert_eq!(index.find(a, 13), Some(15));
        index.staged(a, 12, 0);
        assert!(!index.is_loaded());
        let mut on_disk = HashMap::new();
        on_disk.insert(b, 3);
        index.install(on_disk);
        index.install(HashMap::new());
        assert!(index.is_loaded());
        assert_eq!(index.find(b, 0), Some(3), "the first install is kept");
        assert_eq!(index.len(), 2);
        assert_eq!(index.open_end_offset(), 10);
        index.staged(index.hash(b"evt-c"), 14, 0);
        index.forget_from(12);
        assert_eq!(index.find(a, 0), None, "staged at 15: cut");
        assert_eq!(index.find(b, 0), Some(3));
        assert_eq!(index.find(index.hash(b"evt-c"), 0), None);
        assert_eq!(index.open_end_offset(), 12);
    }

    #[test]
    fn keys_differ_between_indexes() {
        let one = IdIndex::new(0);
        let two = IdIndex::new(0);
        assert_ne!(one.hash(b"same id"), two.hash(b"same id"));
    }
}
