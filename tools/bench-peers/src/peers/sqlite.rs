//! SQLite in WAL mode (bundled library): a table of (id INTEGER PRIMARY KEY, payload BLOB).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::{ensure, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::peer::{Mode, Peer};

const INSERT: &str = "INSERT INTO log (payload) VALUES (?1)";

pub struct Sqlite {
    state: Mutex<State>,
}

struct State {
    conn: Connection,
    /// Bulk mode: a transaction is open since the first `append` after the last `sync`.
    in_transaction: bool,
}

pub fn open(dir: &Path, mode: Mode) -> Result<Box<dyn Peer>> {
    std::fs::create_dir_all(dir).with_context(|| format!("sqlite: create {}", dir.display()))?;
    let path = dir.join("log.sqlite");
    let conn =
        Connection::open(&path).with_context(|| format!("sqlite: open {}", path.display()))?;
    let synchronous = match mode {
        Mode::Durable => "FULL",
        Mode::Bulk => "NORMAL",
    };
    let journal: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .context("sqlite: journal_mode")?;
    ensure!(
        journal.eq_ignore_ascii_case("wal"),
        "sqlite: journal_mode is {journal}, not wal"
    );
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous};
         CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
    ))
    .context("sqlite: set up")?;
    // Touch the table so that opening includes reading the schema and, after a crash,
    // recovering the WAL.
    let _: Option<i64> = conn
        .query_row("SELECT max(id) FROM log", [], |row| row.get(0))
        .context("sqlite: max(id)")?;
    Ok(Box::new(Sqlite {
        state: Mutex::new(State {
            conn,
            in_transaction: false,
        }),
    }))
}

impl Sqlite {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Peer for Sqlite {
    fn append_durable(&self, _producer: usize, payload: &[u8]) -> Result<()> {
        let state = self.state();
        let mut insert = state
            .conn
            .prepare_cached(INSERT)
            .context("sqlite: prepare")?;
        insert.execute(params![payload]).context("sqlite: insert")?;
        Ok(())
    }

    fn append(&self, records: &mut dyn Iterator<Item = &[u8]>) -> Result<()> {
        let mut state = self.state();
        if !state.in_transaction {
            state.conn.execute_batch("BEGIN").context("sqlite: begin")?;
            state.in_transaction = true;
        }
        let mut insert = state
            .conn
            .prepare_cached(INSERT)
            .context("sqlite: prepare")?;
        for payload in records {
            insert.execute(params![payload]).context("sqlite: insert")?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut state = self.state();
        if state.in_transaction {
            state
                .conn
                .execute_batch("COMMIT")
                .context("sqlite: commit")?;
            state.in_transaction = false;
        }
        Ok(())
    }

    fn read_sequential(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        let state = self.state();
        let mut select = state
            .conn
            .prepare("SELECT payload FROM log ORDER BY id")
            .context("sqlite: prepare scan")?;
        let mut rows = select.query([]).context("sqlite: scan")?;
        while let Some(row) = rows.next().context("sqlite: scan row")? {
            let payload = row.get_ref(0).context("sqlite: column")?.as_blob()?;
            if !visit(payload) {
                break;
            }
        }
        Ok(())
    }

    fn read_at(&self, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        let state = self.state();
        let mut select = state
            .conn
            .prepare_cached("SELECT payload FROM log WHERE id = ?1")
            .context("sqlite: prepare read")?;
        let id = index as i64 + 1;
        let found = select
            .query_row(params![id], |row| {
                visit(row.get_ref(0)?.as_blob()?);
                Ok(())
            })
            .optional()
            .with_context(|| format!("sqlite: read id {id}"))?;
        ensure!(found.is_some(), "sqlite: no row with id {id}");
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()?;
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .conn
            .close()
            .map_err(|(_, e)| e)
            .context("sqlite: close")
    }
}
