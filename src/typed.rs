//! Typed events (cargo feature `serde`): a [`TypedLog<T>`] appends and reads values of
//! `T` through serde, as JSON (the default: readable with `ringlog dump`) or with
//! postcard's compact binary codec ([`Codec::Binary`]). The log itself stays bytes: a
//! typed view can be taken of any log or topic at any time.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::follow::Follower;
use crate::log::Log;
use crate::reader::{Iter, Record};

/// How a [`TypedLog`] turns values into record payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// `serde_json`: self-describing text, readable by any tool. The default.
    #[default]
    Json,
    /// `postcard`: compact binary (varint integers, no field names); the reader must use
    /// the same type definition as the writer.
    Binary,
}

impl Codec {
    fn encode<T: Serialize>(self, value: &T) -> Result<Vec<u8>> {
        let encoded = match self {
            Codec::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Codec::Binary => postcard::to_allocvec(value).map_err(|e| e.to_string()),
        };
        encoded.map_err(|reason| Error::Encode { reason })
    }

    fn decode<T: DeserializeOwned>(self, record: &Record) -> Result<T> {
        let decoded = match self {
            Codec::Json => serde_json::from_slice(record.payload()).map_err(|e| e.to_string()),
            Codec::Binary => postcard::from_bytes(record.payload()).map_err(|e| e.to_string()),
        };
        decoded.map_err(|reason| Error::Decode {
            offset: record.offset(),
            reason,
        })
    }
}

/// A typed view of a log: values of `T` in, values of `T` out.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use ringlog::{Store, TypedLog};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// enum JobEvent {
///     Started { job: u64 },
///     Finished { job: u64, ok: bool },
/// }
///
/// # fn main() -> ringlog::Result<()> {
/// let store = Store::in_memory()?;
/// let events: TypedLog<JobEvent> = TypedLog::new(store.topic("events")?);
/// events.append(&JobEvent::Started { job: 42 })?;
/// let at = events.append(&JobEvent::Finished { job: 42, ok: true })?;
/// assert_eq!(events.read(at)?, JobEvent::Finished { job: 42, ok: true });
/// let all: Vec<JobEvent> = events.iter(0).collect::<ringlog::Result<_>>()?;
/// assert_eq!(all.len(), 2);
/// # Ok(())
/// # }
/// ```
pub struct TypedLog<T> {
    log: Log,
    codec: Codec,
    _values: PhantomData<fn(T) -> T>,
}

impl<T> Clone for TypedLog<T> {
    fn clone(&self) -> Self {
        TypedLog {
            log: self.log.clone(),
            codec: self.codec,
            _values: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TypedLog<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedLog")
            .field("log", &self.log)
            .field("codec", &self.codec)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> TypedLog<T> {
    /// A JSON view of `log`.
    pub fn new(log: Log) -> Self {
        Self::with_codec(log, Codec::Json)
    }

    /// A view of `log` with `codec`.
    pub fn with_codec(log: Log, codec: Codec) -> Self {
        TypedLog {
            log,
            codec,
            _values: PhantomData,
        }
    }

    /// The log underneath.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Appends `value`; returns its offset (durable as the log's durability says).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if serde cannot encode it (nothing is appended), and what
    /// [`Log::append`] returns.
    pub fn append(&self, value: &T) -> Result<u64> {
        let payload = self.codec.encode(value)?;
        self.log.append(&payload)
    }

    /// Appends `values` atomically (all or none survive a crash); returns the offset of
    /// the first.
    ///
    /// # Errors
    ///
    /// As [`TypedLog::append`]; nothing is appended if any value fails to encode.
    pub fn append_batch(&self, values: &[T]) -> Result<u64> {
        let payloads = values
            .iter()
            .map(|v| self.codec.encode(v))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.log.append_batch(&refs).map(|range| range.start)
    }

    /// The value at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming the offset if its payload is not a `T`, and what
    /// [`Log::read`] returns.
    pub fn read(&self, offset: u64) -> Result<T> {
        self.codec.decode(&self.log.read(offset)?)
    }

    /// The values from `from` up to the read watermark, in offset order (see
    /// [`Log::iter`]); a payload that does not decode is an [`Error::Decode`] item.
    pub fn iter(&self, from: u64) -> TypedIter<T> {
        TypedIter {
            inner: self.log.iter(from),
            codec: self.codec,
            _values: PhantomData,
        }
    }

    /// Follows the log from `from`: the history, then each new value as it becomes
    /// readable, blocking in between (see [`Log::follow`]).
    ///
    /// # Errors
    ///
    /// As [`Log::follow`].
    pub fn follow(&self, from: u64) -> Result<TypedFollower<T>> {
        Ok(TypedFollower {
            inner: self.log.follow(from)?,
            codec: self.codec,
            _values: PhantomData,
        })
    }
}

/// Values of a [`TypedLog`] in offset order: [`TypedLog::iter`].
pub struct TypedIter<T> {
    inner: Iter,
    codec: Codec,
    _values: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Iterator for TypedIter<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let record = self.inner.next()?;
        Some(record.and_then(|r| self.codec.decode(&r)))
    }
}

impl<T> TypedIter<T> {
    /// The offset of the value `next` returns.
    pub fn next_offset(&self) -> u64 {
        self.inner.next_offset()
    }
}

/// A follower of a [`TypedLog`]: [`TypedLog::follow`].
pub struct TypedFollower<T> {
    inner: Follower,
    codec: Codec,
    _values: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TypedFollower<T> {
    /// The offset of the next value it yields.
    pub fn position(&self) -> u64 {
        self.inner.position()
    }

    /// Like `next()`, waiting at most `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<T>> {
        let record = self.inner.next_timeout(timeout)?;
        Some(record.and_then(|r| self.codec.decode(&r)))
    }
}

impl<T: DeserializeOwned> Iterator for TypedFollower<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let record = self.inner.next()?;
        Some(record.and_then(|r| self.codec.decode(&r)))
    }
}
