//! The `tracing` and `metrics` features (the tests build the library with both): what a
//! log emits to a subscriber and a recorder the application installed. This test binary
//! installs both globally, once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use ringlog::{Durability, FaultPlan, Log, Options, Retention};

#[derive(Default)]
struct Seen {
    spans: Mutex<Vec<String>>,
    events: Mutex<Vec<String>>,
    /// Metric name -> (updates, last value or running sum).
    metrics: Mutex<HashMap<String, (u64, f64)>>,
}

fn seen() -> &'static Seen {
    static SEEN: OnceLock<Seen> = OnceLock::new();
    SEEN.get_or_init(Seen::default)
}

struct Subscriber {
    next_id: AtomicU64,
}

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Subscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        seen()
            .spans
            .lock()
            .unwrap()
            .push(attrs.metadata().name().to_string());
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut visitor = MessageVisitor(String::new());
        event.record(&mut visitor);
        seen().events.lock().unwrap().push(visitor.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct Handle(String);

impl Handle {
    fn update(&self, value: f64, add: bool) {
        let mut metrics = seen().metrics.lock().unwrap();
        let entry = metrics.entry(self.0.clone()).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 = if add { entry.1 + value } else { value };
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.update(value as f64, true);
    }
    fn absolute(&self, value: u64) {
        self.update(value as f64, false);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.update(value, true);
    }
    fn decrement(&self, value: f64) {
        self.update(-value, true);
    }
    fn set(&self, value: f64) {
        self.update(value, false);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.update(value, true);
    }
}

struct Collector;

impl Recorder for Collector {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Handle(key.name().to_string())))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Handle(key.name().to_string())))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Handle(key.name().to_string())))
    }
}

#[test]
fn a_log_reports_its_spans_events_and_metrics() {
    tracing::subscriber::set_global_default(Subscriber {
        next_id: AtomicU64::new(0),
    })
    .unwrap();
    metrics::set_global_recorder(Collector).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_bytes(64 << 10)
        .durability(Durability::Sync)
        .retention(Retention::default().max_segments(2));
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    for i in 0..2_100u32 {
        log.append(&[i as u8; 100]).unwrap();
    }
    // Retention runs in the background meanwhile: a trim may move the follower on.
    let mut follower = log.follow(log.first_offset()).unwrap();
    let mut yielded = 0;
    while yielded < 1_024 {
        if follower.next().unwrap().is_ok() {
            yielded += 1;
        }
        if follower.lag() == 0 {
            log.append(&[7u8; 100]).unwrap();
        }
    }
    log.apply_retention().unwrap();
    log.truncate_from(log.next_offset() - 3).unwrap();
    log.trim_before(log.first_offset() + 1).unwrap();
    drop(follower);
    log.close().unwrap();
    // A failed flush poisons: a warning.
    let log = Log::open_with_faults(
        dir.path(),
        opts,
        FaultPlan {
            fail_sync: Some(2),
            ..FaultPlan::default()
        },
    )
    .unwrap();
    while log.append(b"until the flush fails").is_ok() {}
    drop(log);

    let spans = seen().spans.lock().unwrap().clone();
    for name in [
        "ringlog.open",
        "ringlog.recovery",
        "ringlog.rollover",
        "ringlog.flush",
    ] {
        assert!(spans.iter().any(|s| s == name), "no {name} span: {spans:?}");
    }
    let events = seen().events.lock().unwrap().clone();
    for message in [
        "ringlog: truncated",
        "ringlog: trimmed",
        "ringlog: retention removed segments",
        "ringlog: log poisoned",
    ] {
        assert!(
            events.iter().any(|e| e == message),
            "no {message:?} event: {events:?}"
        );
    }
    // Nothing per record: far fewer events and spans than records.
    assert!(events.len() < 100, "{} events", events.len());
    let metrics = seen().metrics.lock().unwrap().clone();
    let sum = |name: &str| metrics.get(name).map_or(0.0, |m| m.1);
    assert!(
        sum("ringlog_records_written_total") >= 2_100.0,
        "{metrics:?}"
    );
    assert!(
        sum("ringlog_bytes_written_total") >= 2_100.0 * 100.0,
        "{metrics:?}"
    );
    assert!(sum("ringlog_fsyncs_total") >= 1.0, "{metrics:?}");
    for name in [
        "ringlog_flush_seconds",
        "ringlog_records_per_flush",
        "ringlog_recovery_seconds",
        "ringlog_follower_lag",
    ] {
        assert!(metrics.contains_key(name), "no {name}: {metrics:?}");
    }
}
