//! # Cache: two levels, fail-safe, stampede-proof, coherent across instances
//!
//! A [`Cache<T>`] holds typed values of one namespace in two levels:
//! - **L1**, in this process (moka), bounded by bytes, holding decoded values — a hit costs
//!   a hash lookup and a clone;
//! - **L2**, shared: Redis, or the embedded store (SQLite) when Redis is not configured or
//!   while it is away.
//!
//! What it promises:
//! - **Coherence.** A set or delete on one instance drops the key from every other
//!   instance's L1 (pub/sub backplane; see `backplane`). After a lost subscription or an
//!   outage, L1 entries that may have missed an invalidation are dropped.
//! - **Stampede protection.** Concurrent [`Cache::get_or_set_with`] calls for one missing
//!   key run the factory once per process; [`CacheOptions::distributed_lock`] extends that
//!   across instances. Callers that load in their own process (over HTTP) use
//!   [`Cache::lookup_or_claim`] and [`Cache::fill`]: one loader per key across callers and
//!   instances, the others served stale or waiting for its value.
//! - **Fail-safe.** With [`CacheOptions::fail_safe`], entries outlive their TTL by a stale
//!   window; when the factory fails or times out, or L2 cannot be reached, the stale value
//!   is served and the factory is not retried for the throttle period. A soft timeout
//!   serves stale while the factory finishes in the background; a hard timeout bounds the
//!   wait when there is nothing stale. Eager refresh reloads hot entries before they expire.
//! - **No lost invalidations.** In fallback mode, sets, deletes and invalidations go to L1
//!   and the embedded store and are journaled as invalidations; on recovery they are
//!   replayed to Redis (and announced to other instances) before Redis serves again: a key
//!   set or deleted during the outage is removed from Redis, so no instance serves what
//!   Redis held before, and the values the outage wrote are dropped.
//!
//! ```no_run
//! # async fn demo(redkit: redkit::Redkit) -> redkit::Result<()> {
//! use std::time::Duration;
//! use redkit::cache::{CacheOptions, EntryOptions};
//!
//! let users = redkit.cache::<Vec<String>>(
//!     "users",
//!     CacheOptions::default()
//!         .ttl(Duration::from_secs(60))
//!         .fail_safe(Duration::from_secs(3600), Duration::from_secs(10)),
//! )?;
//! users.set("team:1", &vec!["ada".to_string()]).await?;
//! let team = users
//!     .get_or_set_with("team:2", &EntryOptions::new().tags(["teams"]), || async {
//!         Ok::<_, std::io::Error>(vec!["grace".to_string()]) // e.g. a database query
//!     })
//!     .await?;
//! users.invalidate_tag("teams").await?;
//! # Ok(()) }
//! ```

mod backend;
mod backplane;
mod claim;
mod clock;
mod crypto;
mod embedded;
mod entry;
mod flight;
mod glob;
mod l1;
mod load;
mod options;
mod redis;
mod stats;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use backend::{CacheBackend, KeysPage, L2Record, SetItem};
pub use backplane::{CHANNEL, Invalidation};
pub use claim::Claim;
pub use crypto::Keyring;
pub use l1::L1_TOTAL_BYTES;
pub use options::{CacheOptions, Codec, EntryOptions, MAX_TAGS};
pub use stats::CacheStatsSnapshot;

pub(crate) use backplane::CacheHub;

use crate::core::route::{FallbackPolicy, Routed};
use crate::error::{Error, Result};
use backplane::{JournalOp, Member};
use entry::Packer;
use flight::Flights;
use l1::{L1, L1Entry, L1Sink};
use options::Resolved;
use stats::CacheStats;

/// What a cache can hold.
pub trait CacheValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> CacheValue for T {}

/// A cache of one namespace. Cheap to clone; clones share everything.
pub struct Cache<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    ns: String,
    opts: CacheOptions,
    packer: Packer,
    routed: Routed<dyn CacheBackend>,
    l1: L1<T>,
    flights: Flights<T>,
    stats: CacheStats,
    hub: Arc<CacheHub>,
}

impl<T: CacheValue> Member for Inner<T> {
    fn namespace(&self) -> &str {
        &self.ns
    }
    fn l1(&self) -> &dyn L1Sink {
        &self.l1
    }
    fn stats(&self) -> CacheStatsSnapshot {
        self.stats
            .snapshot(&self.ns, self.l1.entry_count(), self.l1.weighted_size())
    }
}

/// Largest page [`Cache::keys`] returns.
pub const MAX_KEYS_PAGE: usize = 10_000;

fn check_namespace(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "namespace",
            "1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'",
        ))
    }
}

fn check_pattern(pattern: &str) -> Result<()> {
    if pattern.is_empty() || pattern.len() > 1024 {
        return Err(Error::invalid("pattern", "a glob of 1 to 1024 bytes"));
    }
    Ok(())
}

/// A decoded L2 lookup.
enum L2Lookup<T> {
    Fresh(Arc<L1Entry<T>>),
    Stale(Arc<L1Entry<T>>),
    Missing,
}

impl<T: CacheValue> Cache<T> {
    pub(crate) fn open(hub: Arc<CacheHub>, namespace: &str, opts: CacheOptions) -> Result<Self> {
        check_namespace(namespace)?;
        Resolved::new(&opts.entry, &EntryOptions::default())?;
        if opts.l1_max_bytes == 0 {
            return Err(Error::invalid(
                "l1_max_bytes",
                "must be > 0 (turn L1 off with .l1(false))",
            ));
        }
        if !(1..=65_536).contains(&opts.max_key_bytes) {
            return Err(Error::invalid("max_key_bytes", "must be 1 to 65536"));
        }
        if !(1..=512 << 20).contains(&opts.max_value_bytes) {
            return Err(Error::invalid("max_value_bytes", "must be 1 byte to 512 MiB"));
        }
        if let Some(r) = &opts.redaction {
            r.validate()?;
        }
        if let Some(t) = opts.distributed_lock
            && (t.is_zero() || t > Duration::from_secs(60))
        {
            return Err(Error::invalid("distributed_lock", "lock TTL must be > 0 and <= 60 s"));
        }
        let redis = hub.redis.clone().map(|r| r as Arc<dyn CacheBackend>);
        let embedded = hub.embedded.clone() as Arc<dyn CacheBackend>;
        let inner = Arc::new(Inner {
            ns: namespace.to_string(),
            packer: Packer {
                codec: opts.codec,
                keyring: opts.encryption.clone(),
                max_value_bytes: opts.max_value_bytes,
            },
            routed: hub.route.routed("cache", FallbackPolicy::Serve, redis, embedded),
            l1: L1::new(opts.l1_max_bytes, opts.l1, false, hub.l1_budget.clone()),
            flights: Flights::new(),
            stats: CacheStats::new(namespace),
            hub: hub.clone(),
            opts,
        });
        let member: Weak<dyn Member> = Arc::downgrade(&inner) as _;
        hub.join(member);
        Ok(Cache { inner })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.ns
    }

    /// Hit, miss, factory and fail-safe counters, and L1 size.
    pub fn stats(&self) -> CacheStatsSnapshot {
        self.inner.stats()
    }

    /// Whether this instance currently receives other instances' invalidations.
    pub fn backplane_connected(&self) -> bool {
        self.inner.hub.is_subscribed()
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("key", "must not be empty"));
        }
        if key.len() > self.inner.opts.max_key_bytes {
            return Err(Error::TooLarge {
                field: "key".into(),
                size: key.len(),
                limit: self.inner.opts.max_key_bytes,
            });
        }
        Ok(())
    }

    fn aad(&self, key: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.inner.ns.len() + 1 + key.len());
        aad.extend_from_slice(self.inner.ns.as_bytes());
        aad.push(0);
        aad.extend_from_slice(key.as_bytes());
        aad
    }

    fn resolve(&self, call: &EntryOptions) -> Result<Resolved> {
        Resolved::new(&self.inner.opts.entry, call)
    }

    /// Encodes `value` into an L2 item and the matching L1 entry.
    fn prepare(&self, key: &str, value: &T, r: &Resolved) -> Result<(SetItem, L1Entry<T>)> {
        self.check_key(key)?;
        let redacted;
        let value = match &self.inner.opts.redaction {
            Some(r) => {
                redacted = r.apply_typed(value)?;
                &redacted
            }
            None => value,
        };
        let encoded = self.inner.packer.encode(value)?;
        let ttl = r.jittered_ttl();
        let bytes = self
            .inner
            .packer
            .pack(&self.aad(key), &encoded, ttl, r.stale_for, &r.tags)?;
        let now = Instant::now();
        let item = SetItem {
            key: key.to_string(),
            bytes,
            ttl_ms: (ttl + r.stale_for).as_millis() as u64,
            tags: r.tags.clone(),
        };
        let mut entry = L1Entry::new(value.clone(), now, now + ttl, now + ttl + r.stale_for, ttl);
        entry.tags = r.tags.clone().into();
        entry.weight = encoded.len().min(u32::MAX as usize) as u32;
        Ok((item, entry))
    }

    /// Writes items to L2 (journaled in fallback), then to L1.
    async fn write(&self, prepared: Vec<(SetItem, L1Entry<T>)>) -> Result<()> {
        let (items, entries): (Vec<SetItem>, Vec<L1Entry<T>>) = prepared.into_iter().unzip();
        let ns = &self.inner.ns;
        let journal = || {
            JournalOp::Keys {
                ns: ns.clone(),
                keys: items.iter().map(|i| i.key.clone()).collect(),
            }
            .encode()
        };
        let epoch = self.inner.l1.epoch();
        let result = self.inner.routed.write(journal, |b| b.set_many(ns, &items)).await;
        if let Err(e) = result {
            self.inner.stats.errors.add(1);
            return Err(e);
        }
        self.inner.stats.sets.add(items.len() as u64);
        for (item, entry) in items.iter().zip(entries) {
            self.inner.l1.insert(&item.key, entry, epoch);
        }
        Ok(())
    }

    /// Decodes an L2 record into an L1 entry and whether it is fresh, judged by the
    /// store's remaining time against the entry's stale window. A record that does not
    /// decode (changed type, other key, corruption) counts as missing.
    fn decode(&self, key: &str, record: L2Record) -> Option<(L1Entry<T>, bool)> {
        match self.inner.packer.unpack::<T>(&self.aad(key), &record.bytes) {
            Ok(u) => {
                let now = Instant::now();
                let far = now + Duration::from_secs(10 * 365 * 24 * 3600);
                let stale_until = now.checked_add(record.remaining).unwrap_or(far).min(far);
                let fresh_left = record.remaining.saturating_sub(u.stale_window);
                let fresh = !fresh_left.is_zero();
                // A record without expiry (written by hand) reports Duration::MAX: clamp.
                let fresh_until = if fresh {
                    now.checked_add(fresh_left).unwrap_or(far).min(far)
                } else {
                    now
                };
                let mut entry = L1Entry::new(u.value, now, fresh_until, stale_until, u.ttl);
                entry.tags = u.tags.into();
                entry.weight = u.encoded_len.min(u32::MAX as usize) as u32;
                Some((entry, fresh))
            }
            Err(e) => {
                tracing::warn!(ns = %self.inner.ns, key, error = %e, "unreadable cache record treated as missing");
                self.inner.stats.errors.add(1);
                None
            }
        }
    }

    async fn l2_lookup_many(&self, keys: &[&str]) -> Result<Vec<L2Lookup<T>>> {
        let ns = &self.inner.ns;
        let epoch = self.inner.l1.epoch();
        let records = self.inner.routed.read(|b| b.get_many(ns, keys)).await?;
        Ok(keys
            .iter()
            .zip(records)
            .map(|(key, record)| match record.and_then(|r| self.decode(key, r)) {
                Some((e, true)) => {
                    let e = Arc::new(e);
                    // L1 keeps what L2 said, so the next read is local.
                    self.inner.l1.insert(key, L1Entry::clone(&e), epoch);
                    L2Lookup::Fresh(e)
                }
                Some((e, false)) => L2Lookup::Stale(Arc::new(e)),
                None => L2Lookup::Missing,
            })
            .collect())
    }

    async fn l2_lookup(&self, key: &str) -> Result<L2Lookup<T>> {
        Ok(self.l2_lookup_many(&[key]).await?.pop().expect("one key, one answer"))
    }

    /// The fresh value at `key`, if any. When L2 cannot be reached and the fail-safe keeps
    /// a stale value in L1, that value is returned instead of the error.
    pub async fn get(&self, key: &str) -> Result<Option<T>> {
        self.check_key(key)?;
        let l1 = self.inner.l1.get(key);
        if let Some(e) = &l1
            && e.is_fresh_now()
        {
            self.inner.stats.count_l1_hit(e);
            return Ok(Some(e.value.clone()));
        }
        match self.l2_lookup(key).await {
            Ok(L2Lookup::Fresh(e)) => {
                self.inner.stats.l2_hits.add(1);
                Ok(Some(e.value.clone()))
            }
            Ok(_) => {
                self.inner.stats.misses.add(1);
                Ok(None)
            }
            Err(err) => match l1.filter(|e| e.is_usable_stale(Instant::now())) {
                Some(stale) => {
                    self.inner.stats.stale_served.add(1);
                    Ok(Some(stale.value.clone()))
                }
                None => {
                    self.inner.stats.errors.add(1);
                    Err(err)
                }
            },
        }
    }

    /// Fresh values of `keys`, in order; one L2 round trip for all L1 misses.
    pub async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            self.check_key(key)?;
            match self.inner.l1.get(key).filter(|e| e.is_fresh_now()) {
                Some(e) => {
                    self.inner.stats.count_l1_hit(&e);
                    out.push(Some(e.value.clone()));
                }
                None => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let lookup: Vec<&str> = missing.iter().map(|i| keys[*i]).collect();
        let found = self.l2_lookup_many(&lookup).await?;
        for (i, f) in missing.into_iter().zip(found) {
            if let L2Lookup::Fresh(e) = f {
                self.inner.stats.l2_hits.add(1);
                out[i] = Some(e.value.clone());
            } else {
                self.inner.stats.misses.add(1);
            }
        }
        Ok(out)
    }

    /// Stores `value` with the cache's default options.
    pub async fn set(&self, key: &str, value: &T) -> Result<()> {
        self.set_with(key, value, &EntryOptions::default()).await
    }

    /// Stores `value` with per-entry options (TTL, tags, …).
    pub async fn set_with(&self, key: &str, value: &T, options: &EntryOptions) -> Result<()> {
        let r = self.resolve(options)?;
        let prepared = self.prepare(key, value, &r)?;
        self.write(vec![prepared]).await
    }

    /// Stores several values in one L2 round trip.
    pub async fn set_many(&self, items: &[(&str, T)], options: &EntryOptions) -> Result<()> {
        let r = self.resolve(options)?;
        let prepared = items
            .iter()
            .map(|(k, v)| self.prepare(k, v, &r))
            .collect::<Result<Vec<_>>>()?;
        self.write(prepared).await
    }

    /// Removes `key` everywhere; returns whether L2 held it.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let ns = &self.inner.ns;
        let keys = vec![key.to_string()];
        let journal = || {
            JournalOp::Keys {
                ns: ns.clone(),
                keys: keys.clone(),
            }
            .encode()
        };
        let removed = self.inner.routed.write(journal, |b| b.delete(ns, &keys)).await;
        self.inner.l1.remove(key);
        self.inner.stats.invalidations.add(1);
        Ok(removed? > 0)
    }

    /// Whether a fresh value is at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.ttl(key).await?.is_some())
    }

    /// Time left before the value at `key` goes stale; `None` if there is none.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.check_key(key)?;
        let now = Instant::now();
        if let Some(e) = self.inner.l1.get(key).filter(|e| e.is_fresh_now() && !e.throttled) {
            return Ok(Some(e.fresh_until().saturating_duration_since(now)));
        }
        Ok(match self.l2_lookup(key).await? {
            L2Lookup::Fresh(e) => Some(e.fresh_until().saturating_duration_since(Instant::now())),
            _ => None,
        })
    }

    /// Removes every key filed under `tag`; returns how many L2 held.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        if tag.is_empty() || tag.len() > 256 {
            return Err(Error::invalid("tag", "1 to 256 bytes"));
        }
        let ns = &self.inner.ns;
        let journal = || {
            JournalOp::Tag {
                ns: ns.clone(),
                tag: tag.to_string(),
            }
            .encode()
        };
        let removed = self.inner.routed.write(journal, |b| b.invalidate_tag(ns, tag)).await;
        self.inner.l1.apply(&Invalidation::Tag(tag.to_string()));
        self.inner.stats.invalidations.add(1);
        removed
    }

    /// Removes every key matching the glob `pattern` (`*`, `?`, `[…]`), with SCAN and
    /// batched UNLINK on Redis (never KEYS); returns how many.
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<u64> {
        check_pattern(pattern)?;
        let ns = &self.inner.ns;
        let journal = || {
            JournalOp::Pattern {
                ns: ns.clone(),
                pattern: pattern.to_string(),
            }
            .encode()
        };
        let removed = self
            .inner
            .routed
            .write(journal, |b| b.invalidate_pattern(ns, pattern))
            .await;
        self.inner.l1.apply(&Invalidation::Pattern(pattern.to_string()));
        self.inner.stats.invalidations.add(1);
        removed
    }

    /// Removes every key of the namespace; returns how many.
    pub async fn clear(&self) -> Result<u64> {
        self.invalidate_pattern("*").await
    }

    /// Lists keys matching `pattern` (`*` for all), about `limit` per page (1 to
    /// [`MAX_KEYS_PAGE`]); pass the returned cursor back for the next page.
    pub async fn keys(&self, pattern: &str, cursor: Option<&str>, limit: usize) -> Result<KeysPage> {
        check_pattern(pattern)?;
        if !(1..=MAX_KEYS_PAGE).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be 1 to {MAX_KEYS_PAGE}")));
        }
        let ns = &self.inner.ns;
        self.inner.routed.read(|b| b.keys(ns, pattern, cursor, limit)).await
    }
}
