//! The one failover mechanism.
//!
//! Every capability has a narrow backend trait, implemented once on Redis and once on the
//! embedded store. It wraps the pair in a [`Routed`] and calls through it; the route
//! decides who serves:
//!
//! | mode | when | who serves |
//! |---|---|---|
//! | [`Mode::Redis`] | Redis configured, breaker closed | the Redis backend |
//! | [`Mode::Fallback`] | Redis configured, breaker open or recovering | the embedded backend; [`Routed::write`]s are journaled |
//! | [`Mode::Embedded`] | no Redis configured | the embedded backend |
//!
//! A capability that must not silently become host-local declares
//! [`FallbackPolicy::FailClosed`] and gets [`Error::Unavailable`] in fallback instead.
//!
//! A call that reaches Redis and fails in a way that opens the breaker is run again on
//! the embedded backend (or fails closed), so the call that trips the breaker is served
//! too; calls that fail before the threshold is reached return
//! [`Error::Unavailable`]. Because a timed-out write may still have reached Redis,
//! journaled writes must be idempotent.
//!
//! **Recovery.** While the breaker is open a prober PINGs Redis with exponential backoff
//! and jitter (a Redis that answers `LOADING` is waited for at the shortest interval). When
//! Redis answers, the breaker moves to *recovering*: each registered [`Recovery`] replays
//! its journal in order; then, with new fallback calls held back for a moment, the rest of
//! the journal is replayed, each capability's `after_replay` runs, and the breaker closes.
//! If Redis fails during recovery the breaker opens again and nothing is lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use tokio::task::JoinHandle;

use super::breaker::Breaker;
use super::embedded::EmbeddedStore;
use super::journal::Journal;
use super::random::jittered;
use super::redis::{Probe, RedisCore};
use crate::error::{Error, ErrorKind, Result};

/// A boxed, `Send` future: what backend trait methods (`#[async_trait]`) return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Redis is configured and healthy.
    Redis,
    /// Redis is configured but unavailable; the embedded store serves.
    Fallback,
    /// No Redis is configured.
    Embedded,
}

/// What a capability does in `fallback` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackPolicy {
    /// Serve from the embedded backend.
    Serve,
    /// Refuse with [`Error::Unavailable`].
    FailClosed,
}

/// A capability's way back to Redis after an outage.
#[async_trait::async_trait]
pub trait Recovery: Send + Sync {
    /// The capability whose journal entries this replays.
    fn capability(&self) -> &'static str;

    /// Re-applies journaled writes to Redis, in order. Must be idempotent: after a
    /// failure the whole batch is offered again. Implementations should pipeline (one
    /// round trip per batch), since recovery must outpace writes still arriving in fallback.
    async fn replay(&self, entries: &[Vec<u8>]) -> Result<()>;

    /// Runs once the journal is drained, just before the breaker closes (e.g. to drop
    /// in-process copies that may have missed invalidations).
    async fn after_replay(&self) -> Result<()> {
        Ok(())
    }
}

/// A capability's statistics, shown in `health()` under its name.
pub trait StatsProvider: Send + Sync {
    /// The capability's name.
    fn capability(&self) -> &'static str;
    /// Its statistics as JSON.
    fn snapshot(&self) -> serde_json::Value;
}

/// The failover router shared by every capability of one [`Redkit`](crate::Redkit).
pub struct Route {
    redis: Option<Arc<RedisCore>>,
    embedded: Arc<EmbeddedStore>,
    breaker: Arc<Breaker>,
    journal: Journal,
    recoveries: Mutex<Vec<Arc<dyn Recovery>>>,
    stats: Mutex<Vec<Weak<dyn StatsProvider>>>,
    capabilities: Mutex<BTreeMap<&'static str, FallbackPolicy>>,
    /// Held for reading by fallback calls; held for writing while the last of the journal
    /// is replayed and the breaker closes, so no fallback write slips in after the replay.
    gate: tokio::sync::RwLock<()>,
    /// Serializes journal drains (recovery vs. late registration).
    draining: tokio::sync::Mutex<()>,
    recoveries_completed: AtomicU64,
    /// The runtime redkit was opened on; background work goes there even when a method is
    /// called from outside it.
    runtime: tokio::runtime::Handle,
}

const REPLAY_BATCH: usize = 512;
/// Batches replayed while fallback writes still flow, before they are held back for the
/// final drain; bounds recovery even if fallback writes arrive faster than replay.
const UNGATED_BATCHES: usize = 16;

impl Route {
    /// Must be called within a tokio runtime (it is, from `Redkit::open`).
    pub(crate) fn new(redis: Option<Arc<RedisCore>>, embedded: Arc<EmbeddedStore>, breaker: Arc<Breaker>) -> Arc<Self> {
        Arc::new(Route {
            journal: Journal::new(embedded.clone()),
            redis,
            embedded,
            breaker,
            recoveries: Mutex::default(),
            stats: Mutex::default(),
            capabilities: Mutex::default(),
            gate: tokio::sync::RwLock::new(()),
            draining: tokio::sync::Mutex::new(()),
            recoveries_completed: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Who is serving now.
    pub fn mode(&self) -> Mode {
        match &self.redis {
            None => Mode::Embedded,
            Some(_) if self.breaker.is_closed() => Mode::Redis,
            Some(_) => Mode::Fallback,
        }
    }

    /// The Redis core, when Redis is configured.
    pub fn redis(&self) -> Option<&Arc<RedisCore>> {
        self.redis.as_ref()
    }

    /// The embedded store.
    pub fn embedded(&self) -> &Arc<EmbeddedStore> {
        &self.embedded
    }

    /// The circuit breaker.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// The failover journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// How many recoveries have completed (journal replayed, breaker closed).
    pub fn recoveries_completed(&self) -> u64 {
        self.recoveries_completed.load(Ordering::Relaxed)
    }

    /// The registered capabilities and their fallback policies.
    pub fn capabilities(&self) -> BTreeMap<&'static str, FallbackPolicy> {
        self.capabilities.lock().expect("route lock").clone()
    }

    /// Wraps a capability's two backends. `redis` must be `Some` exactly when Redis is
    /// configured (build it from [`Route::redis`]).
    pub fn routed<B: ?Sized>(
        self: &Arc<Self>,
        capability: &'static str,
        policy: FallbackPolicy,
        redis: Option<Arc<B>>,
        embedded: Arc<B>,
    ) -> Routed<B> {
        self.capabilities.lock().expect("route lock").insert(capability, policy);
        Routed {
            route: self.clone(),
            capability,
            policy,
            redis,
            embedded,
        }
    }

    /// Registers how `recovery.capability()` replays its journal. If Redis is serving and
    /// entries are left from an earlier run, they are replayed now, in the background.
    /// One recovery per capability: later registrations of the same capability only
    /// trigger the replay of leftovers.
    pub fn register_recovery(self: &Arc<Self>, recovery: Arc<dyn Recovery>) {
        {
            let mut recoveries = self.recoveries.lock().expect("route lock");
            if !recoveries.iter().any(|r| r.capability() == recovery.capability()) {
                recoveries.push(recovery.clone());
            }
        }
        if self.mode() == Mode::Redis {
            let route = self.clone();
            self.runtime.spawn(async move {
                if let Err(e) = route.drain(&recovery, None).await {
                    tracing::warn!(capability = recovery.capability(), error = %e, "replaying an earlier run's journal failed; will retry on the next recovery");
                }
            });
        }
    }

    /// Adds a capability's statistics to `health()`; dropped providers disappear.
    pub fn register_stats(&self, provider: Weak<dyn StatsProvider>) {
        self.stats.lock().expect("route lock").push(provider);
    }

    /// Every live capability's statistics, by capability name.
    pub fn capability_stats(&self) -> BTreeMap<&'static str, serde_json::Value> {
        let mut providers = self.stats.lock().expect("route lock");
        providers.retain(|p| p.strong_count() > 0);
        providers
            .iter()
            .filter_map(Weak::upgrade)
            .map(|p| (p.capability(), p.snapshot()))
            .collect()
    }

    /// Spawns background work of a capability on redkit's runtime.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }

    /// Starts the recovery prober (only when Redis is configured).
    pub(crate) fn spawn_prober(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let redis = self.redis.clone()?;
        let route = self.clone();
        Some(self.runtime.spawn(async move {
            loop {
                route.breaker.wait_open().await;
                route.probe_until_recovered(&redis).await;
            }
        }))
    }

    async fn probe_until_recovered(&self, redis: &RedisCore) {
        let cfg = *self.breaker.config();
        let mut delay = cfg.probe_min;
        loop {
            tokio::time::sleep(jittered(delay)).await;
            match redis.probe().await {
                Probe::Ready(conn) => {
                    if !self.breaker.begin_recovery() {
                        return;
                    }
                    redis.install(conn);
                    match self.recover().await {
                        Ok(()) => return,
                        Err(e) => {
                            self.breaker.reopen(&format!("recovery failed: {e}"));
                            delay = cfg.probe_min;
                        }
                    }
                }
                Probe::Loading => {
                    tracing::info!("redis is loading its dataset; waiting before recovery");
                    delay = cfg.probe_min;
                }
                Probe::Down(reason) => {
                    tracing::debug!(%reason, "recovery probe failed");
                    delay = (delay * 2).min(cfg.probe_max);
                }
            }
        }
    }

    async fn recover(&self) -> Result<()> {
        let recoveries = self.recoveries.lock().expect("route lock").clone();
        for r in &recoveries {
            self.drain(r, Some(UNGATED_BATCHES)).await?;
        }
        let _hold_fallback = self.gate.write().await;
        for r in &recoveries {
            self.drain(r, None).await?;
            r.after_replay().await?;
        }
        self.breaker.close();
        self.recoveries_completed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replays `recovery`'s journal in batches until it is empty, or `max_batches` ran.
    async fn drain(&self, recovery: &Arc<dyn Recovery>, max_batches: Option<usize>) -> Result<()> {
        let _one_at_a_time = self.draining.lock().await;
        let capability = recovery.capability();
        let mut batches = 0;
        while max_batches.is_none_or(|max| batches < max) {
            let batch = self.journal.oldest(capability, REPLAY_BATCH).await?;
            let Some(&(last, _)) = batch.last() else {
                return Ok(());
            };
            let entries: Vec<Vec<u8>> = batch.into_iter().map(|(_, e)| e).collect();
            recovery.replay(&entries).await?;
            self.journal.remove_through(capability, last).await?;
            metrics::counter!("redkit_journal_replayed_total", "capability" => capability)
                .increment(entries.len() as u64);
            batches += 1;
        }
        Ok(())
    }
}

/// A capability's pair of backends behind the route. See the [module docs](self).
pub struct Routed<B: ?Sized> {
    route: Arc<Route>,
    capability: &'static str,
    policy: FallbackPolicy,
    redis: Option<Arc<B>>,
    embedded: Arc<B>,
}

impl<B: ?Sized> Clone for Routed<B> {
    fn clone(&self) -> Self {
        Routed {
            route: self.route.clone(),
            capability: self.capability,
            policy: self.policy,
            redis: self.redis.clone(),
            embedded: self.embedded.clone(),
        }
    }
}

impl<B: ?Sized + Send + Sync> Routed<B> {
    /// The route behind this capability.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// Runs an operation that needs no replay (a read, or state that is rebuilt anyway).
    ///
    /// `f` calls one backend method: `routed.call(|b| b.get(key))`.
    pub async fn call<'a, T>(&'a self, f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>) -> Result<T> {
        self.run(None::<fn(&T) -> Option<Vec<u8>>>, f).await
    }

    /// Runs a write that Redis must see after an outage. In fallback, `entry` (built only
    /// then) is journaled once the embedded backend has applied the write, and handed to
    /// this capability's [`Recovery::replay`] when Redis is back.
    pub async fn write<'a, T>(
        &'a self,
        entry: impl FnOnce() -> Vec<u8>,
        f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        self.run(Some(|_: &T| Some(entry())), f).await
    }

    /// Like [`Routed::write`], but the journal entry is built from the write's result (and
    /// may be `None`: nothing to replay).
    pub async fn write_with<'a, T>(
        &'a self,
        entry: impl FnOnce(&T) -> Option<Vec<u8>>,
        f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        self.run(Some(entry), f).await
    }

    async fn run<'a, T>(
        &'a self,
        entry: Option<impl FnOnce(&T) -> Option<Vec<u8>>>,
        f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let Some(redis) = &self.redis else {
            return f(&self.embedded).await;
        };
        if self.route.breaker.is_closed() {
            match f(redis).await {
                Err(e) if e.kind() == ErrorKind::Unavailable && !self.route.breaker.is_closed() => {
                    tracing::debug!(capability = self.capability, error = %e, "redis failed and the breaker is open; serving from the fallback");
                }
                other => return other,
            }
        }
        if self.policy == FallbackPolicy::FailClosed {
            return Err(Error::Unavailable(format!(
                "redis is unavailable and {} fails closed",
                self.capability
            )));
        }
        let _fallback = self.route.gate.read().await;
        if self.route.breaker.is_closed() {
            // Recovery finished while this call waited at the gate.
            return f(redis).await;
        }
        metrics::counter!("redkit_fallback_calls_total", "capability" => self.capability).increment(1);
        let value = f(&self.embedded).await?;
        if let Some(entry) = entry.and_then(|build| build(&value)) {
            self.route.journal.append(self.capability, entry).await?;
        }
        Ok(value)
    }
}
