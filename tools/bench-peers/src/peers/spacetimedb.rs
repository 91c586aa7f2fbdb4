//! spacetimedb-commitlog 1.3 (the newest release that builds with Rust 1.95; 2.x needs
//! 1.97): SpacetimeDB's commit log. Records are gathered into commits (up to 65535 records,
//! the default), each commit checksummed (CRC32C) when written and checked when read;
//! 1 GiB segments with a sparse offset index. A record here is one transaction whose body
//! is `[length u32][payload]`.
//!
//! Durable appends: `append_maybe_flush` then `flush_and_sync` (one commit of one record,
//! fsynced). Bulk: `append_maybe_flush` per record, `flush_and_sync` at the end. A read by
//! number seeks with the offset index and decodes forward inside the commit that holds it.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use spacetimedb_commitlog::payload::{Decoder, Encode};
use spacetimedb_commitlog::{Commitlog, Options};
use spacetimedb_paths::server::CommitLogDir;
use spacetimedb_paths::FromPathUnchecked;
use spacetimedb_sats::buffer::{BufReader, BufWriter, DecodeError};

use crate::peer::{Mode, Peer};

/// One record: a length-prefixed byte string.
pub struct Payload(Vec<u8>);

impl Encode for Payload {
    fn encode_record<W: BufWriter>(&self, writer: &mut W) {
        writer.put_u32(self.0.len() as u32);
        writer.put_slice(&self.0);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Traversal(#[from] spacetimedb_commitlog::error::Traversal),
}

struct PayloadDecoder;

impl Decoder for PayloadDecoder {
    type Record = Payload;
    type Error = PayloadError;

    fn decode_record<'a, R: BufReader<'a>>(
        &self,
        _version: u8,
        _tx_offset: u64,
        reader: &mut R,
    ) -> Result<Payload, PayloadError> {
        let length = reader.get_u32()? as usize;
        Ok(Payload(reader.get_slice(length)?.to_vec()))
    }

    fn skip_record<'a, R: BufReader<'a>>(
        &self,
        _version: u8,
        _tx_offset: u64,
        reader: &mut R,
    ) -> Result<(), PayloadError> {
        let length = reader.get_u32()? as usize;
        reader.get_slice(length)?;
        Ok(())
    }
}

pub struct SpacetimeCommitlog {
    log: Commitlog<Payload>,
}

pub fn open(dir: &Path, _mode: Mode) -> Result<Box<dyn Peer>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("spacetimedb-commitlog: create {}", dir.display()))?;
    let log = Commitlog::open(CommitLogDir::from_path_unchecked(dir), Options::default())
        .with_context(|| format!("spacetimedb-commitlog: open {}", dir.display()))?;
    Ok(Box::new(SpacetimeCommitlog { log }))
}

impl SpacetimeCommitlog {
    fn append_one(&self, payload: &[u8]) -> Result<()> {
        self.log
            .append_maybe_flush(Payload(payload.to_vec()))
            .map_err(|e| anyhow!("spacetimedb-commitlog: append: {}", e.source))
    }
}

impl Peer for SpacetimeCommitlog {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        self.append_one(payload)?;
        self.log
            .flush_and_sync()
            .context("spacetimedb-commitlog: flush_and_sync")?;
        Ok(())
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        for payload in records {
            self.append_one(payload)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.log
            .flush_and_sync()
            .context("spacetimedb-commitlog: flush_and_sync")?;
        Ok(())
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        for transaction in self.log.transactions(&PayloadDecoder) {
            let transaction = transaction.context("spacetimedb-commitlog: transactions")?;
            if !visit(&transaction.txdata.0) {
                break;
            }
        }
        Ok(())
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        let transaction = self
            .log
            .transactions_from(index, &PayloadDecoder)
            .next()
            .ok_or_else(|| anyhow!("spacetimedb-commitlog: no transaction {index}"))?
            .with_context(|| format!("spacetimedb-commitlog: read transaction {index}"))?;
        anyhow::ensure!(
            transaction.offset == index,
            "spacetimedb-commitlog: asked for transaction {index}, got {}",
            transaction.offset
        );
        visit(&transaction.txdata.0);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()
    }
}
