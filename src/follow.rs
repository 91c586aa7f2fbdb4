//! Following a log that another process writes: a read-only handle finds new records by
//! scanning past the end it knows, and picks up segments the writer activates.

use std::fs::File;

use crate::error::{Error, Result};
use crate::format::SEGMENT_HEADER_BYTES;
use crate::recovery::{self, ScanStart};
use crate::segment::{self, Segment};
use crate::writer::Shared;

impl Shared {
    /// Scans for records appended since the last look; returns the new read watermark.
    /// Only whole, checksummed records (and whole batches) are taken; a batch the writer
    /// is still writing is picked up by a later call.
    pub(crate) fn refresh(&self) -> Result<u64> {
        debug_assert!(self.read_only, "the writer knows its own end");
        let mut st = self.staging.lock();
        loop {
            let (active, position, next_offset) = st.cursor();
            let last_entry = active.index.read().entries.last().copied();
            let outcome = recovery::scan(
                active.bytes()?,
                active.seed,
                ScanStart {
                    position,
                    offset: next_offset,
                    proven_durable: position,
                    stop_offset: None,
                    entries: last_entry.into_iter().collect(),
                    search_end: u64::MAX,
                },
                self.opts.index_interval_bytes,
            );
            if outcome.next_offset > next_offset {
                let fresh = outcome
                    .entries
                    .into_iter()
                    .skip(last_entry.is_some() as usize);
                active.index.write().entries.extend(fresh);
                st.advance_to(active.clone(), outcome.end_position, outcome.next_offset);
                self.marks.publish_written(outcome.next_offset, false);
                // A read-only handle is never poisoned.
                let _ = self.marks.publish_durable(outcome.next_offset, true);
            }
            let Some(next) = self.open_next_segment(&active, outcome.next_offset)? else {
                return Ok(outcome.next_offset);
            };
            *active.end_offset.write() = Some(next.base_offset());
            self.segments.write().push(next.clone());
            st.advance_to(next, SEGMENT_HEADER_BYTES, outcome.next_offset);
        }
    }

    /// The segment after `active`, if the writer has activated it and it starts where
    /// `active`'s data ends.
    fn open_next_segment(
        &self,
        active: &Segment,
        end_offset: u64,
    ) -> Result<Option<std::sync::Arc<Segment>>> {
        let path = segment::segment_path(&self.dir, active.id() + 1);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open segment", &path, e)),
        };
        let (header, len) =
            segment::read_header(&file).map_err(|e| Error::io("read segment", &path, e))?;
        match header {
            Ok(h) if h.is_activated() && h.base_offset == end_offset && len >= h.segment_bytes => {
                let segment = Segment::new(path, file, h, len)?;
                segment.index.write().loaded = true;
                Ok(Some(segment))
            }
            // Still a spare, mid-activation, or the old segment is not fully visible yet.
            _ => Ok(None),
        }
    }
}
