//! Logs and stores for tests and small tools: the same API, nothing on disk. Their files
//! live in a private directory on a memory filesystem (`/dev/shm`, else the temporary
//! directory), removed when the last handle drops. `fdatasync` on tmpfs returns at once,
//! so every durability mode costs what `Durability::None` costs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::log::Log;
use crate::options::Options;
use crate::store::Store;

/// A directory removed (with everything in it) when dropped.
#[derive(Debug)]
pub(crate) struct EphemeralDir(PathBuf);

static EPHEMERAL_COUNTER: AtomicU64 = AtomicU64::new(0);

impl EphemeralDir {
    /// A new, empty directory for a `kind` ("log", "store") kept in memory.
    pub(crate) fn create(kind: &str) -> Result<EphemeralDir> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "ringlog-{kind}-{}-{}-{:x}",
            std::process::id(),
            EPHEMERAL_COUNTER.fetch_add(1, Ordering::Relaxed),
            crate::segment::random_nonce() & 0xffff_ffff
        ));
        std::fs::create_dir(&path).map_err(|e| Error::io("create directory", &path, e))?;
        Ok(EphemeralDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for EphemeralDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Log {
    /// A log kept in memory, for tests and small tools: the same API as [`Log::open`]
    /// with `opts`, nothing on disk (its files live in a private directory on `/dev/shm`,
    /// removed when the last handle drops; [`Log::dir`] names it).
    ///
    /// ```
    /// use ringlog::{Log, Options};
    ///
    /// # fn main() -> ringlog::Result<()> {
    /// let log = Log::in_memory(Options::default().segment_bytes(1 << 20))?;
    /// log.append(b"hello")?;
    /// assert_eq!(log.read(0)?.payload(), b"hello");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`], [`Error::Io`] (the memory filesystem is full).
    pub fn in_memory(opts: Options) -> Result<Log> {
        let dir = EphemeralDir::create("log")?;
        let log = Log::open(dir.path(), opts)?;
        log.keep_until_dropped(dir);
        Ok(log)
    }
}

impl Store {
    /// A store kept in memory, for tests and small tools: the same API as
    /// [`Store::open`] with default options, nothing on disk (see [`Log::in_memory`]).
    ///
    /// ```
    /// # fn main() -> ringlog::Result<()> {
    /// let store = ringlog::Store::in_memory()?;
    /// let orders = store.topic("orders")?;
    /// orders.append(b"order 1")?;
    /// assert_eq!(store.topics()?, ["orders"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (the memory filesystem is full).
    pub fn in_memory() -> Result<Store> {
        Store::in_memory_with(Options::default())
    }

    /// [`Store::in_memory`] with every topic's default options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`], [`Error::Io`].
    pub fn in_memory_with(opts: Options) -> Result<Store> {
        let dir = EphemeralDir::create("store")?;
        let store = Store::open(dir.path(), opts)?;
        store.keep_until_dropped(dir);
        Ok(store)
    }
}
