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
    /// Set with [`L1Entry::fresh_until`] (it keeps the coarse deadline in step).
    fresh_until: Instant,
    /// `fresh_until` on the coarse clock ([`super::clock`]), for the hit path.
    fresh_until_coarse: u64,
    pub stale_until: Instant,
    pub ttl: Duration,
    pub tags: Arc<[String]>,
    pub weight: u32,
    /// A stale value re-served under the fail-safe throttle.
    pub throttled: bool,
}

impl<T> L1Entry<T> {
    /// An entry fresh until `fresh_until` (`now`: the precise time of the same moment).
    pub fn new(value: T, now: Instant, fresh_until: Instant, stale_until: Instant, ttl: Duration) -> Self {
        L1Entry {
            value,
            fresh_until,
            fresh_until_coarse: super::clock::deadline(now, fresh_until),
            stale_until,
            ttl,
            tags: Arc::from(Vec::<String>::new()),
            weight: 0,
            throttled: false,
        }
    }

    pub fn fresh_until(&self) -> Instant {
        self.fresh_until
    }

    pub fn set_fresh_until(&mut self, now: Instant, until: Instant) {
        self.fresh_until = until;
        self.fresh_until_coarse = super::clock::deadline(now, until);
    }

    /// Whether it is fresh now, on the coarse clock: never past its precise deadline, and
    /// every read (`get`, `get_or_set_with`, `get_many`, claims) asks this same question, so
    /// what one calls stale another does not serve as fresh.
    pub fn is_fresh_now(&self) -> bool {
        super::clock::now_ns() < self.fresh_until_coarse
    }

    /// Whether it may be served stale at `now`: only an entry with a stale window (the
    /// fail-safe's) — one without is done when it stops being fresh on the coarse clock,
    /// not a tick later on the precise one.
    pub fn is_usable_stale(&self, now: Instant) -> bool {
        now < self.stale_until && self.stale_until > self.fresh_until
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

/// Bytes all the L1s of one `Redkit` may hold together, whatever the number of caches.
pub const L1_TOTAL_BYTES: u64 = 256 << 20;

/// The memory budget shared by every L1 of one `Redkit`: an entry that would take the
/// total past it is not kept (the value is still served, from L2).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    max: u64,
}

impl Budget {
    pub fn new(max: u64) -> Self {
        Budget {
            used: AtomicU64::new(0),
            max,
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, weight: u64) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + weight > self.max {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, used + weight, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn give_back(&self, weight: u64) {
        self.used.fetch_sub(weight, Ordering::AcqRel);
    }
}

fn weight_of<T>(key: &str, e: &L1Entry<T>) -> u32 {
    (key.len() as u32)
        .saturating_add(e.weight)
        .saturating_add(ENTRY_OVERHEAD)
}

/// The in-process level of one cache.
pub(crate) struct L1<T> {
    cache: Moka<Arc<str>, Arc<L1Entry<T>>>,
    budget: Arc<Budget>,
    enabled: bool,
    /// Whether invalidations reach this L1 (the backplane is live, or there is no Redis).
    live: AtomicBool,
    /// Bumped by every invalidation (and clear).
    epoch: AtomicU64,
}

impl<T: Clone + Send + Sync + 'static> L1<T> {
    pub fn new(max_bytes: u64, enabled: bool, live: bool, budget: Arc<Budget>) -> Self {
        let own = if enabled { max_bytes } else { 1 << 20 };
        let shared = budget.clone();
        let cache = Moka::builder()
            .max_capacity(own)
            .weigher(|k: &Arc<str>, e: &Arc<L1Entry<T>>| weight_of(k, e))
            .expire_after(UntilStaleEnds)
            .eviction_listener(move |k, e, _| shared.give_back(u64::from(weight_of(&k, &e))))
            .build();
        L1 {
            cache,
            budget,
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
        if !entry.throttled && self.epoch() != epoch {
            // Not kept — and whatever L1 held for the key is older than this write or
            // read, so it must not be served either.
            self.cache.invalidate(key);
            return;
        }
        if entry.throttled || self.serves() {
            if !self.budget.take(u64::from(weight_of(key, &entry))) {
                metrics::counter!("redkit_cache_l1_over_budget_total").increment(1);
                return;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: u32, weight: u32) -> L1Entry<u32> {
        let now = Instant::now();
        let until = now + Duration::from_secs(60);
        let mut e = L1Entry::new(v, now, until, until, Duration::from_secs(60));
        e.weight = weight;
        e
    }

    #[test]
    fn an_invalidation_between_the_l2_read_and_the_insert_wins() {
        let l1 = L1::<u32>::new(1 << 20, true, true, Arc::new(Budget::new(1 << 20)));
        let read_at = l1.epoch();
        // Another instance's write is announced while this one's L2 read was in flight.
        l1.apply(&Invalidation::Keys(vec!["k".into()]));
        l1.insert("k", entry(1, 10), read_at);
        assert!(l1.get("k").is_none(), "the older value must not shadow the newer one");
        let read_at = l1.epoch();
        l1.insert("k", entry(2, 10), read_at);
        assert_eq!(l1.get("k").unwrap().value, 2);
    }

    #[test]
    fn a_write_not_kept_in_l1_does_not_leave_the_older_value_there() {
        let l1 = L1::<u32>::new(1 << 20, true, true, Arc::new(Budget::new(1 << 20)));
        l1.insert("mine", entry(27, 10), l1.epoch());
        let writing_at = l1.epoch();
        // Another key's invalidation arrives while this instance writes "mine" = 28.
        l1.apply(&Invalidation::Keys(vec!["other".into()]));
        l1.insert("mine", entry(28, 10), writing_at);
        assert!(l1.get("mine").is_none(), "27 must not be read back after writing 28");
    }

    #[test]
    fn nothing_is_served_or_kept_while_invalidations_cannot_arrive() {
        let l1 = L1::<u32>::new(1 << 20, true, false, Arc::new(Budget::new(1 << 20)));
        l1.insert("k", entry(1, 10), l1.epoch());
        assert!(l1.get("k").is_none());
        l1.set_live(true);
        l1.insert("k", entry(1, 10), l1.epoch());
        assert!(l1.get("k").is_some());
        l1.set_live(false);
        assert!(l1.get("k").is_none(), "cleared when the backplane is lost");
    }

    #[test]
    fn only_an_entry_with_a_stale_window_is_served_stale() {
        let now = Instant::now();
        let until = now + Duration::from_secs(60);
        let plain = L1Entry::new(1u32, now, until, until, Duration::from_secs(60));
        assert!(
            !plain.is_usable_stale(now),
            "no window: never stale-served, even a tick early"
        );
        let windowed = L1Entry::new(1u32, now, now, until, Duration::from_secs(60));
        assert!(windowed.is_usable_stale(now));
        assert!(!windowed.is_usable_stale(until));
    }

    #[test]
    fn all_caches_share_one_memory_budget() {
        let budget = Arc::new(Budget::new(10_000));
        let caches: Vec<L1<u32>> = (0..10).map(|_| L1::new(1 << 20, true, true, budget.clone())).collect();
        for (i, l1) in caches.iter().enumerate() {
            for k in 0..100 {
                l1.insert(&format!("{i}:{k}"), entry(k, 100), l1.epoch());
            }
        }
        assert!(budget.used() <= 10_000, "{} bytes held", budget.used());
        caches[0].clear();
        caches[0].cache.run_pending_tasks();
        let freed = budget.used();
        caches[1].insert("again", entry(1, 100), caches[1].epoch());
        assert!(
            budget.used() <= freed + 300,
            "{} after freeing to {freed}",
            budget.used()
        );
    }
}
