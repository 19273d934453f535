//! What this instance's queues did, shown in `health()` under `jobs`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Settled;

/// Counters of one `Redkit`'s job calls (all queues).
#[derive(Debug, Default, Serialize)]
pub(crate) struct JobCounters {
    enqueued: AtomicU64,
    duplicates: AtomicU64,
    fetched: AtomicU64,
    completed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    released: AtomicU64,
    lease_lost: AtomicU64,
    deferred: AtomicU64,
    pub(crate) spool_moved: AtomicU64,
    /// When spooled jobs last moved into Redis (ms since the Unix epoch).
    pub(crate) spool_moved_at_ms: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl JobCounters {
    pub(crate) fn enqueued(&self, created: u64, duplicates: u64) {
        add(&self.enqueued, created);
        add(&self.duplicates, duplicates);
    }

    pub(crate) fn fetched(&self, n: u64) {
        add(&self.fetched, n);
    }

    pub(crate) fn settled(&self, s: Settled) {
        let counter = match s {
            Settled::Completed => &self.completed,
            Settled::Retrying => &self.retried,
            Settled::Dead => &self.dead,
            Settled::Released => &self.released,
            Settled::LeaseLost => &self.lease_lost,
            Settled::Deferred => &self.deferred,
        };
        add(counter, 1);
    }
}
