//! Latency bookkeeping for `bench`: an HdrHistogram per producer (merged at the end) and
//! shared counters for the periodic progress line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histograms track exactly; slower appends are clamped to it.
const LATENCY_NS_MAX_TRACKED: u64 = 60_000_000_000;

/// A new histogram of append latencies in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant arguments, not input: this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_NS_MAX_TRACKED, 3)
        .expect("1 ns..60 s at 3 significant figures is a valid histogram configuration")
}

/// Counters the producers bump and the progress line reads.
#[derive(Debug, Default)]
pub struct LiveCounters {
    records_count: AtomicU64,
    latency_ns_sum: AtomicU64,
    /// Highest latency since the last [`LiveCounters::window`].
    latency_ns_max_window: AtomicU64,
}

/// What happened between two progress lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Records completed in the window.
    pub records_count: u64,
    /// Sum of their latencies.
    pub latency_ns_sum: u64,
    /// Highest of their latencies.
    pub latency_ns_max: u64,
}

/// Running totals the next window is measured from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    records_count: u64,
    latency_ns_sum: u64,
}

impl LiveCounters {
    /// Counts one completed append.
    pub fn record(&self, latency_ns: u64) {
        self.records_count.fetch_add(1, Relaxed);
        self.latency_ns_sum.fetch_add(latency_ns, Relaxed);
        self.latency_ns_max_window.fetch_max(latency_ns, Relaxed);
    }

    /// The window since `since`, and the totals to measure the next one from.
    pub fn window(&self, since: Totals) -> (Window, Totals) {
        let now = Totals {
            records_count: self.records_count.load(Relaxed),
            latency_ns_sum: self.latency_ns_sum.load(Relaxed),
        };
        let window = Window {
            records_count: now.records_count - since.records_count,
            latency_ns_sum: now.latency_ns_sum - since.latency_ns_sum,
            latency_ns_max: self.latency_ns_max_window.swap(0, Relaxed),
        };
        (window, now)
    }
}

impl Window {
    /// Mean latency in the window (0 when empty).
    pub fn latency_ns_avg(&self) -> f64 {
        if self.records_count == 0 {
            0.0
        } else {
            self.latency_ns_sum as f64 / self.records_count as f64
        }
    }

    /// `12345 records sent, 6172.5 records/s (6.32 MB/s), 2.580 ms avg latency, 9.100 ms max
    /// latency`.
    pub fn describe(&self, elapsed: Duration, record_bytes: u64) -> String {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let records_per_sec = self.records_count as f64 / seconds;
        format!(
            "{} records sent, {:.1} records/s ({:.2} MB/s), {} avg latency, {} max latency",
            self.records_count,
            records_per_sec,
            records_per_sec * record_bytes as f64 / 1e6,
            format_latency(self.latency_ns_avg()),
            format_latency(self.latency_ns_max as f64)
        )
    }
}

/// A latency in the unit that keeps it readable: `12.345 ms`, `412.3 us`, `850 ns`.
pub fn format_latency(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Clamps a measured latency to what the histogram tracks.
pub fn latency_ns(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_NS_MAX_TRACKED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_histograms() {
        let live = LiveCounters::default();
        live.record(1_000);
        live.record(3_000);
        let (window, totals) = live.window(Totals::default());
        assert_eq!(window.records_count, 2);
        assert_eq!(window.latency_ns_avg(), 2_000.0);
        assert_eq!(window.latency_ns_max, 3_000);
        live.record(5_000);
        let (window, _) = live.window(totals);
        assert_eq!((window.records_count, window.latency_ns_max), (1, 5_000));
        let mut histogram = new_histogram();
        histogram.saturating_record(latency_ns(Duration::from_micros(10)));
        assert_eq!(histogram.len(), 1);
        assert_eq!(
            latency_ns(Duration::from_secs(3600)),
            LATENCY_NS_MAX_TRACKED
        );
    }
}
