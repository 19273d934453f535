//! Per-operation statistics: count, errors, latency histogram, last error.
//!
//! Every Redis and embedded operation is timed into an [`OpStats`] registry. Recording is
//! a few relaxed atomic adds (no lock on the hot path once an operation's slot exists);
//! [`OpStats::snapshot`] produces the serde view used by `health()` and the server. The
//! same figures are also emitted through the `metrics` facade as
//! `redkit_op_total`, `redkit_op_errors_total` and `redkit_op_seconds`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Upper bounds (microseconds) of the latency buckets; the last bucket is open-ended.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
    10_000_000,
];

struct OpSlot {
    count: AtomicU64,
    errors: AtomicU64,
    total_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    last_error: Mutex<Option<LastError>>,
    /// The exported series, registered once per operation: a call records into them
    /// without a registry lookup by labels.
    exported: Exported,
}

struct Exported {
    total: metrics::Counter,
    errors: metrics::Counter,
    seconds: metrics::Histogram,
}

impl OpSlot {
    fn new(store: &'static str, op: &'static str) -> Self {
        OpSlot {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
            buckets: Default::default(),
            last_error: Mutex::new(None),
            exported: Exported {
                total: metrics::counter!("redkit_op_total", "store" => store, "op" => op),
                errors: metrics::counter!("redkit_op_errors_total", "store" => store, "op" => op),
                seconds: metrics::histogram!("redkit_op_seconds", "store" => store, "op" => op),
            },
        }
    }
}

/// The most recent error of an operation.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// Its message.
    pub message: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A registry of operation statistics for one store (`redis` or `embedded`).
#[derive(Clone)]
pub struct OpStats {
    store: &'static str,
    slots: Arc<RwLock<BTreeMap<&'static str, Arc<OpSlot>>>>,
}

/// Serializable view of one operation's statistics.
#[derive(Debug, Clone, Serialize)]
pub struct OpSnapshot {
    /// Calls made.
    pub count: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Mean latency in microseconds.
    pub mean_us: u64,
    /// Approximate median latency (bucket upper bound) in microseconds.
    pub p50_us: u64,
    /// Approximate 99th percentile latency (bucket upper bound) in microseconds.
    pub p99_us: u64,
    /// Counts per latency bucket, keyed by the bucket's upper bound in microseconds
    /// (`"inf"` for the last).
    pub histogram_us: BTreeMap<String, u64>,
    /// The last error, if any.
    pub last_error: Option<LastError>,
}

impl OpStats {
    /// An empty registry for the store named `store` (used as a metrics label).
    pub fn new(store: &'static str) -> Self {
        OpStats {
            store,
            slots: Arc::default(),
        }
    }

    /// Records one call of `op` that took `elapsed`; `error` is its failure, if it failed.
    pub fn record(&self, op: &'static str, elapsed: Duration, error: Option<&dyn std::fmt::Display>) {
        if let Some(slot) = self.slots.read().expect("stats lock").get(op) {
            return Self::record_in(slot, elapsed, error);
        }
        let slot = self
            .slots
            .write()
            .expect("stats lock")
            .entry(op)
            .or_insert_with(|| Arc::new(OpSlot::new(self.store, op)))
            .clone();
        Self::record_in(&slot, elapsed, error);
    }

    fn record_in(slot: &OpSlot, elapsed: Duration, error: Option<&dyn std::fmt::Display>) {
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        slot.count.fetch_add(1, Ordering::Relaxed);
        slot.total_us.fetch_add(us, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        slot.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        slot.exported.total.increment(1);
        slot.exported.seconds.record(elapsed.as_secs_f64());
        if let Some(e) = error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
            slot.exported.errors.increment(1);
            *slot.last_error.lock().expect("stats lock") = Some(LastError {
                message: e.to_string(),
                at_ms: now_ms(),
            });
        }
    }

    /// A serializable copy of every operation's statistics.
    pub fn snapshot(&self) -> BTreeMap<String, OpSnapshot> {
        let slots = self.slots.read().expect("stats lock");
        slots
            .iter()
            .map(|(op, s)| {
                let buckets: Vec<u64> = s.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
                let count = s.count.load(Ordering::Relaxed);
                let histogram_us = buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| (bucket_label(i), *n))
                    .collect();
                let snap = OpSnapshot {
                    count,
                    errors: s.errors.load(Ordering::Relaxed),
                    mean_us: s.total_us.load(Ordering::Relaxed).checked_div(count).unwrap_or(0),
                    p50_us: quantile(&buckets, count, 0.50),
                    p99_us: quantile(&buckets, count, 0.99),
                    histogram_us,
                    last_error: s.last_error.lock().expect("stats lock").clone(),
                };
                (op.to_string(), snap)
            })
            .collect()
    }
}

fn bucket_label(i: usize) -> String {
    LATENCY_BUCKETS_US
        .get(i)
        .map_or_else(|| "inf".to_string(), |b| b.to_string())
}

fn quantile(buckets: &[u64], count: u64, q: f64) -> u64 {
    if count == 0 {
        return 0;
    }
    let target = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= target {
            return LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX);
        }
    }
    u64::MAX
}

/// Milliseconds since the Unix epoch by this host's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_counts_errors_and_quantiles() {
        let s = OpStats::new("test");
        for _ in 0..98 {
            s.record("get", Duration::from_micros(80), None);
        }
        s.record("get", Duration::from_millis(3), None);
        s.record("get", Duration::from_millis(3), Some(&"boom"));
        let snap = &s.snapshot()["get"];
        assert_eq!(snap.count, 100);
        assert_eq!(snap.errors, 1);
        assert_eq!(snap.p50_us, 100);
        assert_eq!(snap.p99_us, 5_000);
        assert_eq!(snap.histogram_us["100"], 98);
        assert_eq!(snap.last_error.as_ref().unwrap().message, "boom");
    }
}

/// Counters of a capability's operations for `health()` (the dashboard computes rates
/// from successive snapshots): each a relaxed atomic add per call.
#[derive(Debug)]
pub struct Activity<const N: usize> {
    names: [&'static str; N],
    counts: [std::sync::atomic::AtomicU64; N],
}

impl<const N: usize> Activity<N> {
    /// Counters named `names`.
    pub fn new(names: [&'static str; N]) -> Self {
        Activity {
            names,
            counts: std::array::from_fn(|_| std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Adds one to counter `i`.
    pub fn add(&self, i: usize) {
        self.counts_add(i, 1);
    }

    /// Adds `n` to counter `i`.
    pub fn counts_add(&self, i: usize, n: u64) {
        self.counts[i].fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// `{name: count}`.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.names
                .iter()
                .zip(&self.counts)
                .map(|(n, c)| (n.to_string(), c.load(std::sync::atomic::Ordering::Relaxed).into()))
                .collect(),
        )
    }
}
