//! Cache statistics: counted with atomics on the hot path, exported as a serde snapshot
//! and as `metrics` counters labelled by namespace.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::Counter;
use serde::Serialize;

/// One counter, kept locally for snapshots and forwarded to the metrics recorder.
pub(crate) struct Tally {
    local: AtomicU64,
    exported: Counter,
}

impl Tally {
    fn new(ns: &str, event: &'static str) -> Self {
        Tally {
            local: AtomicU64::new(0),
            exported: metrics::counter!("redkit_cache_events_total", "ns" => ns.to_string(), "event" => event),
        }
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.local.fetch_add(n, Ordering::Relaxed);
        self.exported.increment(n);
    }

    fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

pub(crate) struct CacheStats {
    pub l1_hits: Tally,
    pub l2_hits: Tally,
    pub misses: Tally,
    pub factory_calls: Tally,
    pub factory_errors: Tally,
    pub stale_served: Tally,
    pub errors: Tally,
    pub sets: Tally,
    pub invalidations: Tally,
}

impl CacheStats {
    pub fn new(ns: &str) -> Self {
        CacheStats {
            l1_hits: Tally::new(ns, "l1_hit"),
            l2_hits: Tally::new(ns, "l2_hit"),
            misses: Tally::new(ns, "miss"),
            factory_calls: Tally::new(ns, "factory_call"),
            factory_errors: Tally::new(ns, "factory_error"),
            stale_served: Tally::new(ns, "stale_served"),
            errors: Tally::new(ns, "error"),
            sets: Tally::new(ns, "set"),
            invalidations: Tally::new(ns, "invalidation"),
        }
    }

    /// A hit on a throttled fail-safe entry is a stale value served, not a fresh hit.
    pub fn count_l1_hit<T>(&self, entry: &super::l1::L1Entry<T>) {
        if entry.throttled {
            self.stale_served.add(1);
        } else {
            self.l1_hits.add(1);
        }
    }

    pub fn snapshot(&self, namespace: &str, l1_entries: u64, l1_bytes: u64) -> CacheStatsSnapshot {
        let (l1, l2, miss) = (self.l1_hits.get(), self.l2_hits.get(), self.misses.get());
        let lookups = l1 + l2 + miss;
        CacheStatsSnapshot {
            namespace: namespace.to_string(),
            l1_hits: l1,
            l2_hits: l2,
            misses: miss,
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                (l1 + l2) as f64 / lookups as f64
            },
            factory_calls: self.factory_calls.get(),
            factory_errors: self.factory_errors.get(),
            stale_served: self.stale_served.get(),
            errors: self.errors.get(),
            sets: self.sets.get(),
            invalidations: self.invalidations.get(),
            l1_entries,
            l1_bytes,
        }
    }
}

/// A cache's statistics.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct CacheStatsSnapshot {
    /// The cache's namespace.
    pub namespace: String,
    /// Lookups answered by L1.
    pub l1_hits: u64,
    /// Lookups answered by L2.
    pub l2_hits: u64,
    /// Lookups that found nothing fresh.
    pub misses: u64,
    /// (L1 + L2 hits) / lookups.
    pub hit_ratio: f64,
    /// Factory runs.
    pub factory_calls: u64,
    /// Factory runs that failed or timed out.
    pub factory_errors: u64,
    /// Stale values served by the fail-safe.
    pub stale_served: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Entries written.
    pub sets: u64,
    /// Deletes and tag/pattern invalidations.
    pub invalidations: u64,
    /// Entries in L1.
    pub l1_entries: u64,
    /// Approximate bytes in L1.
    pub l1_bytes: u64,
}
