//! Optional tracing and metrics (cargo features `tracing` and `metrics`). Without them
//! every hook here is an empty inline function. The library never installs a subscriber
//! or a recorder, and never emits anything per record: spans and events mark open,
//! recovery, rollovers, flushes, poisoning and cuts; metrics are counted per write call
//! and per flush.
//!
//! Metrics (through the `metrics` facade, each labelled `log` = the log's directory):
//! counters `ringlog_records_written_total`, `ringlog_bytes_written_total`,
//! `ringlog_fsyncs_total`; histograms `ringlog_flush_seconds`,
//! `ringlog_records_per_flush`, `ringlog_recovery_seconds`; gauge `ringlog_follower_lag`.
//!
//! Tracing: spans `ringlog.open` (with `recovery` inside), `ringlog.rollover`,
//! `ringlog.flush` (debug level); events at warn for poisoning, at info for
//! truncations, trims and retention passes that removed something.

#![cfg_attr(
    not(any(feature = "tracing", feature = "metrics")),
    allow(unused_variables)
)]

use std::path::Path;
use std::time::Duration;

/// A span entered until dropped (nothing without the `tracing` feature).
pub(crate) struct Entered {
    #[cfg(feature = "tracing")]
    _span: tracing::span::EnteredSpan,
}

#[cfg(feature = "tracing")]
fn entered(span: tracing::Span) -> Entered {
    Entered {
        _span: span.entered(),
    }
}

/// Opening a log (recovery included).
pub(crate) fn open_span(dir: &Path) -> Entered {
    #[cfg(feature = "tracing")]
    return entered(tracing::info_span!("ringlog.open", log = %dir.display()));
    #[cfg(not(feature = "tracing"))]
    Entered {}
}

/// Recovering a log's files.
pub(crate) fn recovery_span(dir: &Path) -> Entered {
    #[cfg(feature = "tracing")]
    return entered(tracing::info_span!("ringlog.recovery", log = %dir.display()));
    #[cfg(not(feature = "tracing"))]
    Entered {}
}

/// Recovery took `elapsed`.
pub(crate) fn recovered(dir: &Path, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("ringlog_recovery_seconds", "log" => dir.display().to_string())
        .record(elapsed.as_secs_f64());
}

/// A rollover to segment `segment_id`.
pub(crate) fn rollover_span(dir: &Path, segment_id: u64) -> Entered {
    #[cfg(feature = "tracing")]
    return entered(tracing::info_span!("ringlog.rollover", log = %dir.display(), segment_id));
    #[cfg(not(feature = "tracing"))]
    Entered {}
}

/// A flush of the log in `dir`.
pub(crate) fn flush_span(dir: &Path) -> Entered {
    #[cfg(feature = "tracing")]
    return entered(tracing::debug_span!("ringlog.flush", log = %dir.display()));
    #[cfg(not(feature = "tracing"))]
    Entered {}
}

/// A flush that made `records` records durable took `elapsed`.
pub(crate) fn flushed(dir: &Path, records: u64, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    {
        let log = dir.display().to_string();
        metrics::counter!("ringlog_fsyncs_total", "log" => log.clone()).increment(1);
        metrics::histogram!("ringlog_flush_seconds", "log" => log.clone())
            .record(elapsed.as_secs_f64());
        metrics::histogram!("ringlog_records_per_flush", "log" => log).record(records as f64);
    }
}

/// One write call put `records` records (`bytes` bytes, markers included) in the file.
pub(crate) fn written(dir: &Path, records: u64, bytes: u64) {
    #[cfg(feature = "metrics")]
    {
        let log = dir.display().to_string();
        metrics::counter!("ringlog_records_written_total", "log" => log.clone()).increment(records);
        metrics::counter!("ringlog_bytes_written_total", "log" => log).increment(bytes);
    }
}

/// The log was poisoned.
pub(crate) fn poisoned(dir: &Path, cause: &dyn std::fmt::Display) {
    #[cfg(feature = "tracing")]
    tracing::warn!(log = %dir.display(), cause = %cause, "ringlog: log poisoned");
}

/// `truncate_from(at)` removed records.
pub(crate) fn truncated(dir: &Path, at: u64) {
    #[cfg(feature = "tracing")]
    tracing::info!(log = %dir.display(), at, "ringlog: truncated");
}

/// A trim moved the first offset to `first`.
pub(crate) fn trimmed(dir: &Path, first: u64) {
    #[cfg(feature = "tracing")]
    tracing::info!(log = %dir.display(), first, "ringlog: trimmed");
}

/// A retention pass removed `segments` segments (`bytes` bytes).
pub(crate) fn retention_removed(dir: &Path, segments: u64, bytes: u64, first: u64) {
    #[cfg(feature = "tracing")]
    tracing::info!(log = %dir.display(), segments, bytes, first, "ringlog: retention removed segments");
}

/// A follower has `lag` records readable that it has not yielded.
pub(crate) fn follower_lag(dir: &Path, lag: u64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("ringlog_follower_lag", "log" => dir.display().to_string()).set(lag as f64);
}
