//! What a command works on: the single log in `DIR`, or topic `NAME` of the store in
//! `DIR` (`--topic NAME`). Checks that `DIR` holds the kind the flags say, before
//! anything is opened or created, so that a mix-up is one clear line, not a library
//! error about marker files.

use std::fmt;
use std::path::{Path, PathBuf};

use ringlog::{Log, Options, Store};

use crate::failure::{CliResult, Failure};

/// The file that marks a directory as a store. The library keeps the name private
/// (`ringlog::store::STORE_MARKER_FILE`); the layout is documented in `src/store/mod.rs`.
const STORE_MARKER_FILE: &str = "ringlog.store";
/// A topic's options file, inside its directory: marks a directory as a topic.
const TOPIC_OPTIONS_FILE: &str = "topic.options";
/// The store's subdirectory of topics.
const TOPICS_DIR: &str = "topics";

/// What a directory holds, judged by its marker files.
#[derive(Debug, PartialEq, Eq)]
pub enum DirKind {
    /// Nothing at that path.
    Missing,
    /// A file, not a directory.
    NotADirectory,
    /// A directory with neither a log nor a store in it (empty, or foreign files).
    Neither,
    /// A single log: segment files, no store marker, no topic options.
    SingleLog,
    /// A store of topics (`ringlog.store`).
    Store,
    /// One topic's directory inside a store (`STORE/topics/NAME`).
    Topic {
        /// The store's directory.
        store: PathBuf,
        /// The topic's name.
        name: String,
    },
}

/// What `dir` holds.
pub fn classify(dir: &Path) -> DirKind {
    if !dir.exists() {
        return DirKind::Missing;
    }
    if !dir.is_dir() {
        return DirKind::NotADirectory;
    }
    if dir.join(STORE_MARKER_FILE).exists() {
        return DirKind::Store;
    }
    if dir.join(TOPIC_OPTIONS_FILE).exists() {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let store = dir.parent().and_then(Path::parent);
        if let (Some(name), Some(store)) = (name, store) {
            return DirKind::Topic {
                store: store.to_path_buf(),
                name,
            };
        }
    }
    let has_segments = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| entry.path().extension().is_some_and(|ext| ext == "seg"))
    });
    if has_segments {
        DirKind::SingleLog
    } else {
        DirKind::Neither
    }
}

/// The log a command works on: `DIR`, or topic `NAME` of the store `DIR`.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The command's `DIR`.
    pub dir: &'a Path,
    /// `--topic NAME`.
    pub topic: Option<&'a str>,
}

/// `DIR` or `DIR --topic NAME`: how the user names the target in a command line.
impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.topic {
            None => write!(f, "{}", self.dir.display()),
            Some(name) => write!(f, "{} --topic {name}", self.dir.display()),
        }
    }
}

/// A log opened read-only, with the store it came from (kept open while the log is
/// read).
pub struct ReadOnly {
    /// The log, or the topic.
    pub log: Log,
    /// The store, for a topic.
    pub store: Option<Store>,
    /// The log's own directory (the topic's directory for a topic).
    pub log_dir: PathBuf,
    /// The directory whose lock a writer of this log holds (the store's for a topic).
    pub lock_dir: PathBuf,
}

/// A log opened for writing, with the store that holds its lock.
pub struct Writable {
    /// The log, or the topic.
    pub log: Log,
    /// The store, for a topic: closing it releases the lock.
    pub store: Option<Store>,
}

impl Writable {
    /// Closes the log, and the store if there is one.
    pub fn close(&self) -> ringlog::Result<()> {
        let closed = self.log.close();
        match &self.store {
            Some(store) => closed.and(store.close()),
            None => closed,
        }
    }
}

impl<'a> Target<'a> {
    /// `DIR` (and `--topic`) of a command.
    pub fn new(dir: &'a Path, topic: Option<&'a str>) -> Target<'a> {
        Target { dir, topic }
    }

    /// The failure for a library error on this target.
    pub fn fail(&self, error: ringlog::Error) -> Failure {
        Failure::from_target(error, self)
    }

    /// Checks that `DIR` holds what a read-only command expects: a log (or one topic's
    /// directory) without `--topic`, a store with it.
    pub fn check_existing(&self) -> CliResult<()> {
        let kind = classify(self.dir);
        match (self.topic, kind) {
            (_, DirKind::Missing) => Err(Failure::usage(format!(
                "{} does not exist; pass the directory of an existing {}",
                self.dir.display(),
                if self.topic.is_some() { "store" } else { "log" }
            ))),
            (_, DirKind::NotADirectory) => Err(super::not_a_directory(self.dir)),
            (None, DirKind::Store) => Err(self.store_without_topic()),
            (Some(_), DirKind::SingleLog) => Err(self.log_with_topic()),
            (Some(_), DirKind::Topic { store, name }) => {
                Err(self.topic_dir_as_store(&store, &name))
            }
            _ => Ok(()),
        }
    }

    /// Checks that `DIR` suits a writing command, which creates what is missing: a log
    /// or nothing without `--topic`, a store or nothing with it. One topic's directory is
    /// refused either way: its writer is the store's.
    pub fn check_writable(&self) -> CliResult<()> {
        let kind = classify(self.dir);
        match (self.topic, kind) {
            (_, DirKind::NotADirectory) => Err(super::not_a_directory(self.dir)),
            (None, DirKind::Store) => Err(self.store_without_topic()),
            (Some(_), DirKind::SingleLog) => Err(self.log_with_topic()),
            (_, DirKind::Topic { store, name }) => Err(self.topic_dir_as_store(&store, &name)),
            _ => Ok(()),
        }
    }

    fn store_without_topic(&self) -> Failure {
        let dir = self.dir.display();
        Failure::usage(format!(
            "{dir} is a store of topics; pass --topic NAME (ringlog topics {dir} lists them)"
        ))
    }

    fn log_with_topic(&self) -> Failure {
        let dir = self.dir.display();
        Failure::usage(format!(
            "{dir} is a single log, not a store of topics; drop --topic to use it (`ringlog info {dir}` describes it)"
        ))
    }

    fn topic_dir_as_store(&self, store: &Path, name: &str) -> Failure {
        Failure::usage(format!(
            "{} is the directory of topic {name} of the store {}; pass the store: {} --topic {name}",
            self.dir.display(),
            store.display(),
            store.display()
        ))
    }

    /// Opens the log, or the topic of the store, read-only: no lock, nothing on disk
    /// changes, works beside a writer in another process.
    pub fn open_read_only(&self) -> CliResult<ReadOnly> {
        self.check_existing()?;
        let Some(name) = self.topic else {
            let log =
                Log::open_read_only(self.dir, Options::default()).map_err(|e| self.fail(e))?;
            let lock_dir = match classify(self.dir) {
                DirKind::Topic { store, .. } => store,
                _ => self.dir.to_path_buf(),
            };
            return Ok(ReadOnly {
                log,
                store: None,
                log_dir: self.dir.to_path_buf(),
                lock_dir,
            });
        };
        let store = Store::open_read_only(self.dir).map_err(|e| self.fail(e))?;
        let log = store.topic(name).map_err(|e| self.fail(e))?;
        Ok(ReadOnly {
            log,
            store: Some(store),
            log_dir: self.dir.join(TOPICS_DIR).join(name),
            lock_dir: self.dir.to_path_buf(),
        })
    }

    /// The directory of the log to verify or repair: `DIR`, or the directory of an
    /// existing topic `NAME` of the store `DIR` (the library's `verify` and `repair`
    /// work on it, and `repair` takes the store's lock). Opens nothing.
    pub fn existing_log_dir(&self) -> CliResult<PathBuf> {
        self.check_existing()?;
        let Some(name) = self.topic else {
            super::require_log_dir(self.dir)?;
            return Ok(self.dir.to_path_buf());
        };
        let store = Store::open_read_only(self.dir).map_err(|e| self.fail(e))?;
        // `topics()` lists only valid names of complete topics, so joining one to the
        // path is safe. Any other name: the library says why (an invalid name, or no
        // such topic) without opening anything.
        if !store
            .topics()
            .map_err(|e| self.fail(e))?
            .iter()
            .any(|t| t == name)
        {
            return Err(match store.topic(name) {
                Err(e) => self.fail(e),
                Ok(_) => Failure::usage(format!(
                    "the store {} has no complete topic {name}; `ringlog topics {}` lists them",
                    self.dir.display(),
                    self.dir.display()
                )),
            });
        }
        Ok(self.dir.join(TOPICS_DIR).join(name))
    }

    /// Opens the log for writing, creating it (or the store and the topic) if needed.
    /// For a topic, `own_options` creates it with its own options, persisted (an
    /// existing topic must have the same ones); `None` gives it the store's, `options`.
    pub fn open_writable(
        &self,
        options: Options,
        own_options: Option<Options>,
    ) -> CliResult<Writable> {
        self.check_writable()?;
        let created = classify(self.dir) == DirKind::Missing;
        let Some(name) = self.topic else {
            let log = Log::open(self.dir, options).map_err(|e| self.fail(e))?;
            return Ok(Writable { log, store: None });
        };
        let store = Store::open(self.dir, options).map_err(|e| self.fail(e))?;
        let topic = match own_options {
            Some(own) => store.topic_with(name, own),
            None => store.topic(name),
        };
        match topic {
            Ok(log) => Ok(Writable {
                log,
                store: Some(store),
            }),
            Err(e) => {
                let _ = store.close();
                if created {
                    remove_empty_store(self.dir);
                }
                Err(self.fail(e))
            }
        }
    }
}

/// Removes the empty store that a failed first `append` created (an invalid topic name
/// is known only once the store is open): its marker, lock and empty topics directory,
/// one by one, so that nothing else that appeared meanwhile is touched.
fn remove_empty_store(dir: &Path) {
    let _ = std::fs::remove_dir(dir.join(TOPICS_DIR));
    let _ = std::fs::remove_file(dir.join(STORE_MARKER_FILE));
    let _ = std::fs::remove_file(dir.join("ringlog.lock"));
    let _ = std::fs::remove_dir(dir);
}

/// The directory of topic `name` of the store in `store_dir`.
pub fn topic_dir(store_dir: &Path, name: &str) -> PathBuf {
    store_dir.join(TOPICS_DIR).join(name)
}

/// Whether `path` is a topic's options file (listed by `info` as such).
pub fn is_topic_options_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == TOPIC_OPTIONS_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_target_as_a_command_line_names_it() {
        let dir = Path::new("/data/s");
        assert_eq!(Target::new(dir, None).to_string(), "/data/s");
        assert_eq!(
            Target::new(dir, Some("orders")).to_string(),
            "/data/s --topic orders"
        );
    }

    #[test]
    fn classifies_by_marker_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(classify(&root.join("missing")), DirKind::Missing);
        std::fs::write(root.join("file"), b"x").unwrap();
        assert_eq!(classify(&root.join("file")), DirKind::NotADirectory);
        assert_eq!(classify(root), DirKind::Neither);
        let store = root.join("store");
        let topic = store.join(TOPICS_DIR).join("orders");
        std::fs::create_dir_all(&topic).unwrap();
        std::fs::write(store.join(STORE_MARKER_FILE), b"").unwrap();
        std::fs::write(topic.join(TOPIC_OPTIONS_FILE), b"").unwrap();
        std::fs::write(topic.join("00000000000000000000.seg"), b"").unwrap();
        assert_eq!(classify(&store), DirKind::Store);
        assert_eq!(
            classify(&topic),
            DirKind::Topic {
                store: store.clone(),
                name: "orders".into()
            }
        );
        let log = root.join("log");
        std::fs::create_dir(&log).unwrap();
        std::fs::write(log.join("00000000000000000000.seg"), b"").unwrap();
        assert_eq!(classify(&log), DirKind::SingleLog);
    }
}
