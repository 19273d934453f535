//! L1: decoded values in process memory (moka), bounded by their encoded size.
//!
//! An entry is *fresh* until its TTL, then *stale* until its stale window ends, when moka
//! evicts it. With L1 turned off, only fail-safe throttle entries are kept here, so the
//! throttle is honoured either way.
//!
//! L1 is coherent only while it hears every invalidation, so with Redis configured it
//! serves and fills only while the backplane subscription is live ([`L1Sink::set_live`]).
//! And a value read from (or written to) L2 goes into L1 only if no invalidation reached
//! this L1 between the L2 call and the insert ([`L1::epoch`]): otherwise a newer write
//! announced meanwhile would be shadowed by the older value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache as Moka;

use super::backplane::Invalidation;
use super::glob;

/// One cached value.
#[derive(Clone)]
pub(crate) struct L1Entry<T> {
    pub value: T,
    pub fresh_until: Instant,
    pub stale_until: Instant,
    pub ttl: Duration,
    pub tags: Arc<[String]>,
    pub weight: u32,
    /// A stale value re-served under the fail-safe throttle.
    pub throttled: bool,
}

impl<T> L1Entry<T> {
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until
    }

    pub fn is_usable_stale(&self, now: Instant) -> bool {
        now < self.stale_until
    }

    /// Fraction of the TTL already used.
    pub fn age_fraction(&self, now: Instant) -> f64 {
        let left = self.fresh_until.saturating_duration_since(now);
        1.0 - left.as_secs_f64() / self.ttl.as_secs_f64().max(f64::EPSILON)
    }
}

struct UntilStaleEnds;

impl<T> Expiry<Arc<str>, Arc<L1Entry<T>>> for UntilStaleEnds {
    fn expire_after_create(&self, _: &Arc<str>, e: &Arc<L1Entry<T>>, now: Instant) -> Option<Duration> {
        Some(e.stale_until.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        e: &Arc<L1Entry<T>>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.stale_until.saturating_duration_since(now))
    }
}

/// Per-entry bookkeeping moka does not see, added to the weight.
const ENTRY_OVERHEAD: u32 = 96;

/// The in-process level of one cache.
pub(crate) struct L1<T> {
    cache: Moka<Arc<str>, Arc<L1Entry<T>>>,
    enabled: bool,
    /// Whether invalidations reach this L1 (the backplane is live, or there is no Redis).
    live: AtomicBool,
    /// Bumped by every invalidation (and clear).
    epoch: AtomicU64,
}

impl<T: Clone + Send + Sync + 'static> L1<T> {
    pub fn new(max_bytes: u64, enabled: bool, live: bool) -> Self {
        let budget = if enabled { max_bytes } else { 1 << 20 };
        let cache = Moka::builder()
            .max_capacity(budget)
            .weigher(|k: &Arc<str>, e: &Arc<L1Entry<T>>| {
                (k.len() as u32).saturating_add(e.weight).saturating_add(ENTRY_OVERHEAD)
            })
            .expire_after(UntilStaleEnds)
            .build();
        L1 {
            cache,
            enabled,
            live: AtomicBool::new(live),
            epoch: AtomicU64::new(0),
        }
    }

    fn serves(&self) -> bool {
        self.enabled && self.live.load(Ordering::Acquire)
    }

    /// The entry at `key` (fresh or stale), if L1 may serve it.
    pub fn get(&self, key: &str) -> Option<Arc<L1Entry<T>>> {
        let e = self.cache.get(key)?;
        (self.serves() || e.throttled).then_some(e)
    }

    /// Take before an L2 call whose result may go into L1 ([`L1::insert`]).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores an entry read or written at `epoch`, unless an invalidation came since
    /// (only throttle entries when L1 is off or not live).
    pub fn insert(&self, key: &str, entry: L1Entry<T>, epoch: u64) {
        if entry.throttled || (self.serves() && self.epoch() == epoch) {
            self.cache.insert(Arc::from(key), Arc::new(entry));
            // An invalidation that raced the insert wins: drop what was just put.
            if self.epoch() != epoch {
                self.cache.invalidate(key);
            }
        }
    }

    fn invalidated(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub fn remove(&self, key: &str) {
        self.invalidated();
        self.cache.invalidate(key);
    }

    /// Entries held; settles moka's pending bookkeeping first (not for hot paths).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

/// What the backplane and recovery need from any L1, whatever its value type.
pub(crate) trait L1Sink: Send + Sync {
    fn apply(&self, what: &Invalidation);
    fn clear(&self);
    /// Whether invalidations reach this L1 from now on (cleared either way).
    fn set_live(&self, live: bool);
}

impl<T: Clone + Send + Sync + 'static> L1Sink for L1<T> {
    fn apply(&self, what: &Invalidation) {
        self.invalidated();
        match what {
            Invalidation::Keys(keys) => keys.iter().for_each(|k| self.cache.invalidate(k.as_str())),
            Invalidation::Tag(tag) => {
                for (k, e) in self.cache.iter() {
                    if e.tags.iter().any(|t| t == tag) {
                        self.cache.invalidate(&**k);
                    }
                }
            }
            Invalidation::Pattern(p) => {
                for (k, _) in self.cache.iter() {
                    if glob::matches(p, &k) {
                        self.cache.invalidate(&**k);
                    }
                }
            }
        }
    }

    fn clear(&self) {
        self.invalidated();
        self.cache.invalidate_all();
    }

    fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        self.clear();
    }
}
