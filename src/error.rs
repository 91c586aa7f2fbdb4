//! The one error type of the library.

use std::path::PathBuf;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong. Messages name the file, the byte position and, where
/// there is one, the remedy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error, with the file and the operation it happened in.
    #[error("I/O error during {operation} on {}: {source}", path.display())]
    Io {
        /// What was being done (e.g. "write", "fdatasync", "open").
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk that fail validation where valid data must be. A torn tail refused
    /// under `RecoveryPolicy::Strict` is reported this way too, with a reason starting
    /// "torn tail" (see [`Error::is_torn_tail`]).
    #[error(
        "corruption in {} at byte {position}: {reason}; {}",
        segment.display(),
        if reason.starts_with(TORN_TAIL) {
            "reopen with RecoveryPolicy::TruncateTorn (or run `ringlog repair`) to cut it"
        } else {
            "run `ringlog verify` on the directory to list the damage"
        }
    )]
    Corruption {
        /// The segment (or index) file.
        segment: PathBuf,
        /// Byte position in that file.
        position: u64,
        /// What was wrong.
        reason: String,
    },

    /// Records an iterator or follower was positioned past (or had yielded) were removed
    /// by [`Log::truncate_from`](crate::Log::truncate_from): it continues from `at`, the
    /// first offset the truncation removed (new records get offsets from there).
    #[error(
        "the log was truncated at offset {at}: records from it on were removed; \
         reading continues from offset {at} with the records appended since"
    )]
    Truncated {
        /// Where the truncation cut: the first offset removed.
        at: u64,
    },

    /// A typed record's payload is not a value of the type asked for
    /// ([`TypedLog`](crate::TypedLog), feature `serde`).
    #[error("record {offset} does not decode: {reason}")]
    Decode {
        /// The record's offset.
        offset: u64,
        /// What the codec said.
        reason: String,
    },

    /// A value could not be encoded for a typed log (nothing was appended).
    #[error("value does not encode: {reason}")]
    Encode {
        /// What the codec said.
        reason: String,
    },

    /// An offset outside the readable range `first..next`.
    #[error("offset {offset} is out of range: the log holds offsets {first}..{next}")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The first offset still in the log.
        first: u64,
        /// The first offset not yet readable.
        next: u64,
    },

    /// A write or flush failed earlier; no append is accepted or acknowledged after it.
    #[error("the log is poisoned by an earlier I/O failure ({cause}); close it and reopen to recover from disk")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: String,
    },

    /// Another process or handle holds the directory's writer lock.
    #[error("{} is locked by another writer; close it first, or open read-only", path.display())]
    Locked {
        /// The log directory.
        path: PathBuf,
    },

    /// A record larger than the log accepts.
    #[error("record of {record_bytes} bytes exceeds the limit of {max_record_bytes} bytes (Options::max_record_bytes)")]
    RecordTooLarge {
        /// Size of the rejected record's payload.
        record_bytes: u64,
        /// The configured limit.
        max_record_bytes: u64,
    },

    /// The log was closed.
    #[error("the log is closed")]
    Closed,

    /// A write through a log opened with [`Log::open_read_only`](crate::Log::open_read_only).
    #[error("the log was opened read-only; open it with Log::open to append")]
    ReadOnly,

    /// The directory holds no ringlog segments (reading, verifying or repairing needs a
    /// log; `Log::open` creates one).
    #[error("{} holds no ringlog log (no segment files); check the path, or create a log with Log::open", path.display())]
    NotALog {
        /// The directory.
        path: PathBuf,
    },

    /// An option value that cannot work.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A record timestamp given to [`Log::append_at`](crate::Log::append_at) that the log
    /// refuses: more than a day ahead of the wall clock (one bad value would otherwise
    /// pin every later record's timestamp, which never decreases).
    #[error("invalid timestamp {ts_ms} ms: {reason}")]
    InvalidTimestamp {
        /// The timestamp given, in milliseconds since the Unix epoch.
        ts_ms: u64,
        /// Why it is refused.
        reason: String,
    },

    /// A topic name a store does not accept (1 to 200 bytes of ASCII letters, digits,
    /// `.`, `_` and `-`, not `.` or `..`), or a name whose place in the store holds
    /// something that is not a topic.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A topic that the store does not hold (reading, or removing).
    #[error("the store at {} has no topic {name:?}; `ringlog topics {}` lists them", store.display(), store.display())]
    UnknownTopic {
        /// The topic asked for.
        name: String,
        /// The store's directory.
        store: PathBuf,
    },

    /// A consumer the log does not have (removing it, or committing through a handle
    /// of a removed consumer).
    #[error("the log at {} has no consumer {name:?}; Log::consumers lists them", log.display())]
    UnknownConsumer {
        /// The consumer asked for.
        name: String,
        /// The log's directory.
        log: PathBuf,
    },

    /// A caller sequence ([`Log::append_seq`](crate::Log::append_seq),
    /// [`Entry::seq`](crate::Entry::seq)) not above the log's last one: nothing was
    /// appended.
    #[error("sequence {provided} refused: the log's last sequence is {last}, and caller sequences must strictly increase (nothing was appended)")]
    SequenceViolation {
        /// The log's last sequence ([`Log::last_seq`](crate::Log::last_seq)).
        last: u64,
        /// The sequence given.
        provided: u64,
    },

    /// An [`Entry`](crate::Entry) the log cannot store: a key or id over its limit, a
    /// header name that is not 1 to 64 bytes of visible ASCII or appears twice, too many
    /// headers, or more extension bytes than a record holds (limits: `docs/design.md`
    /// 2.2.1). Nothing was appended.
    #[error("invalid entry: {field}: {reason} (nothing was appended)")]
    InvalidEntry {
        /// The field at fault: `key`, `id`, `headers`, or `header "name"`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A backup's destination that cannot take it: it exists and is not an empty
    /// directory.
    #[error("backup destination {}: {reason}", path.display())]
    BackupDestination {
        /// The destination given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A directory of the other kind: a store where a single log was expected (or one
    /// of its topics), or a single log where a store was expected.
    #[error("{}: {reason}", path.display())]
    WrongKind {
        /// The directory.
        path: PathBuf,
        /// What it holds, and how to open it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        segment: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corruption {
            segment: segment.into(),
            position,
            reason: reason.into(),
        }
    }

    /// Whether this is a torn tail refused under `RecoveryPolicy::Strict`: data at the
    /// end of the log that could have been in flight at a crash (never acknowledged),
    /// which `RecoveryPolicy::TruncateTorn` cuts. Damage to durable data is not.
    pub fn is_torn_tail(&self) -> bool {
        matches!(self, Error::Corruption { reason, .. } if reason.starts_with(TORN_TAIL))
    }
}

/// How the reason of a torn-tail `Corruption` starts.
pub(crate) const TORN_TAIL: &str = "torn tail";
