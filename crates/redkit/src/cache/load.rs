//! `get_or_set_with` and `warm`: loading through a factory, with single flight,
//! fail-safe, soft/hard timeouts, eager refresh and the optional distributed lock.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::l1::L1Entry;
use super::options::{EntryOptions, Resolved};
use super::{Cache, CacheValue, L2Lookup};
use crate::error::{Error, Result};

/// How often an instance waiting on another's stampede lock looks for the value.
pub(super) const LOCK_POLL: Duration = Duration::from_millis(20);

/// Keys warmed at once by [`Cache::warm`].
const WARM_CONCURRENCY: usize = 8;

enum Peer<T> {
    /// This instance holds the lock (token), or no lock is configured / reachable.
    Go(Option<String>),
    /// Another instance produced the value while we waited.
    Produced(T),
}

impl<T: CacheValue> Cache<T> {
    /// Returns the fresh value at `key`, or runs `factory` to produce, store and return it.
    ///
    /// Concurrent calls for one key in this process share one factory run. With the
    /// fail-safe on, a stale value is returned when the factory fails or exceeds the soft
    /// timeout (it then finishes in the background and updates the cache), or when L2 is
    /// unreachable. Without a stale value the hard timeout, if set, bounds the wait.
    pub async fn get_or_set_with<F, Fut, E>(&self, key: &str, options: &EntryOptions, factory: F) -> Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.check_key(key)?;
        let r = self.resolve(options)?;
        let now = Instant::now();
        let l1 = self.inner.l1.get(key);
        if let Some(e) = &l1
            && e.is_fresh_now()
        {
            self.inner.stats.count_l1_hit(e);
            let value = e.value.clone();
            self.maybe_refresh_early(key, e, &r, factory);
            return Ok(value);
        }
        let mut stale = l1.filter(|e| e.is_usable_stale(now));
        match self.l2_lookup(key).await {
            Ok(L2Lookup::Fresh(e)) => {
                self.inner.stats.l2_hits.add(1);
                let value = e.value.clone();
                self.maybe_refresh_early(key, &e, &r, factory);
                return Ok(value);
            }
            Ok(L2Lookup::Stale(e)) => stale = Some(e),
            Ok(L2Lookup::Missing) => {}
            Err(e) => {
                if let Some(s) = stale {
                    // L2 is unreachable: serve stale now rather than stampede the source.
                    tracing::debug!(key, error = %e, "L2 unreachable; serving stale");
                    return Ok(self.serve_stale(key, &r, &s));
                }
            }
        }
        self.inner.stats.misses.add(1);
        self.inner.flights.run(key, self.load(key, r, stale, factory)).await
    }

    /// Runs the factory (the caller leads the single flight).
    async fn load<F, Fut, E>(&self, key: &str, r: Resolved, stale: Option<Arc<L1Entry<T>>>, factory: F) -> Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        // Another flight may have stored the value between our lookup and our lead.
        if let Some(e) = self.inner.l1.get(key)
            && e.is_fresh_now()
            && !e.throttled
        {
            return Ok(e.value.clone());
        }
        let token = match self.wait_for_peer(key).await {
            Peer::Produced(v) => return Ok(v),
            Peer::Go(token) => token,
        };
        self.inner.stats.factory_calls.add(1);
        let this = self.clone();
        let (owned_key, owned_r) = (key.to_string(), r.clone());
        let task = self.inner.hub.route.spawn(async move {
            let value = factory().await.map_err(|e| Error::Factory {
                key: owned_key.clone(),
                reason: e.to_string(),
            })?;
            if let Err(e) = this.set_with_resolved(&owned_key, &value, &owned_r).await {
                tracing::warn!(key = %owned_key, error = %e, "factory value could not be stored");
            }
            Ok(value)
        });
        let limit = if stale.is_some() {
            r.soft_timeout
        } else {
            r.hard_timeout
        };
        let outcome = match limit {
            Some(t) => tokio::time::timeout(t, task).await.map_err(|_| t),
            None => Ok(task.await),
        };
        if let Some(token) = token {
            let ns = &self.inner.ns;
            let _ = self.inner.routed.call(|b| b.unlock(ns, key, &token)).await;
        }
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => self.fail_safe(key, &r, stale, e),
            Ok(Err(join)) => {
                let e = Error::Factory {
                    key: key.to_string(),
                    reason: format!("the factory panicked: {join}"),
                };
                self.fail_safe(key, &r, stale, e)
            }
            Err(after) => match stale {
                // Soft timeout: the factory keeps running and will update the cache.
                Some(s) => {
                    self.inner.stats.stale_served.add(1);
                    Ok(s.value.clone())
                }
                None => {
                    self.inner.stats.factory_errors.add(1);
                    Err(Error::Factory {
                        key: key.to_string(),
                        reason: format!(
                            "no value within the hard timeout of {after:?}; it continues in the background"
                        ),
                    })
                }
            },
        }
    }

    async fn set_with_resolved(&self, key: &str, value: &T, r: &Resolved) -> Result<()> {
        let prepared = self.prepare(key, value, r)?;
        self.write(vec![prepared]).await
    }

    /// The factory failed: serve stale under the throttle, or return the error.
    fn fail_safe(&self, key: &str, r: &Resolved, stale: Option<Arc<L1Entry<T>>>, error: Error) -> Result<T> {
        self.inner.stats.factory_errors.add(1);
        match stale {
            Some(s) => {
                tracing::debug!(key, %error, "factory failed; serving stale under the fail-safe throttle");
                Ok(self.serve_stale(key, r, &s))
            }
            None => {
                self.inner.stats.errors.add(1);
                Err(error)
            }
        }
    }

    /// Serves a stale value and keeps it answering as fresh for the throttle period, so
    /// the factory (or an unreachable L2) is not hammered.
    fn serve_stale(&self, key: &str, r: &Resolved, stale: &L1Entry<T>) -> T {
        self.inner.stats.stale_served.add(1);
        let now = Instant::now();
        let mut throttled = stale.clone();
        throttled.set_fresh_until(now, now + r.throttle);
        throttled.stale_until = stale.stale_until.max(throttled.fresh_until());
        throttled.throttled = true;
        self.inner.l1.insert(key, throttled, self.inner.l1.epoch());
        stale.value.clone()
    }

    /// A hit past the eager-refresh fraction reloads in the background.
    fn maybe_refresh_early<F, Fut, E>(&self, key: &str, entry: &L1Entry<T>, r: &Resolved, factory: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let Some(fraction) = r.eager_refresh else { return };
        if entry.throttled || entry.age_fraction(Instant::now()) < fraction || self.inner.flights.is_running(key) {
            return;
        }
        let this = self.clone();
        let (key, r) = (key.to_string(), r.clone());
        self.inner.hub.route.spawn(async move {
            let mut refresh = r.clone();
            // A background refresh is not waited on: no timeouts apply to it.
            refresh.soft_timeout = None;
            refresh.hard_timeout = None;
            let load = this.refresh(&key, refresh, factory);
            if let Err(e) = this.inner.flights.run(&key, load).await {
                tracing::debug!(key, error = %e, "eager refresh failed; the current value stays");
            }
        });
    }

    /// Runs the factory for a key that is still fresh and stores the result; on failure the
    /// current value simply stays.
    async fn refresh<F, Fut, E>(&self, key: &str, r: Resolved, factory: F) -> Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.inner.stats.factory_calls.add(1);
        match factory().await {
            Ok(value) => {
                self.set_with_resolved(key, &value, &r).await?;
                Ok(value)
            }
            Err(e) => {
                self.inner.stats.factory_errors.add(1);
                Err(Error::Factory {
                    key: key.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// With a distributed lock configured, takes it, or waits for the instance holding it
    /// to produce the value (up to the lock's TTL).
    async fn wait_for_peer(&self, key: &str) -> Peer<T> {
        let Some(ttl) = self.inner.opts.distributed_lock else {
            return Peer::Go(None);
        };
        let ns = &self.inner.ns;
        let token = crate::core::random::token();
        match self.inner.routed.call(|b| b.try_lock(ns, key, &token, ttl)).await {
            Ok(true) => return Peer::Go(Some(token)),
            Ok(false) => {}
            Err(_) => return Peer::Go(None),
        }
        let deadline = Instant::now() + ttl;
        while Instant::now() < deadline {
            tokio::time::sleep(LOCK_POLL).await;
            if let Ok(L2Lookup::Fresh(e)) = self.l2_lookup(key).await {
                return Peer::Produced(e.value.clone());
            }
        }
        Peer::Go(None)
    }

    /// Fills the cache for `keys` ahead of traffic, `factory(key)` producing each value;
    /// keys already fresh are skipped. Returns how many were loaded.
    pub async fn warm<I, F, Fut, E>(&self, keys: I, options: &EntryOptions, factory: F) -> Result<u64>
    where
        I: IntoIterator<Item = String>,
        F: Fn(String) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let r = self.resolve(options)?;
        let keys: Vec<String> = keys.into_iter().collect();
        for k in &keys {
            self.check_key(k)?;
        }
        let results: Vec<Result<bool>> = futures_util::stream::iter(keys)
            .map(|key| {
                let (factory, r) = (factory.clone(), r.clone());
                async move {
                    if self.exists(&key).await.unwrap_or(false) {
                        return Ok(false);
                    }
                    let value = factory(key.clone()).await.map_err(|e| Error::Factory {
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                    self.set_with_resolved(&key, &value, &r).await?;
                    Ok(true)
                }
            })
            .buffer_unordered(WARM_CONCURRENCY)
            .collect()
            .await;
        let mut loaded = 0;
        for r in results {
            loaded += u64::from(r?);
        }
        Ok(loaded)
    }
}
