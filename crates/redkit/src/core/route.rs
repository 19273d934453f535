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
//! **Who owns the data.** Redis is the truth whenever it is reachable. In a deployment
//! with Redis, the embedded store holds only a *mirror* of what this instance read or
//! wrote through Redis (served only while the breaker is open) and the *journal* of the
//! outage: operations, not states, each recorded in the same SQLite transaction as the
//! fallback write it describes ([`journal`](super::journal)). On recovery the operations
//! are applied to Redis's current state, where a newer write or a tombstone wins, so the
//! order in which instances recover does not matter; then the outage's own copies are
//! dropped, never served as truth again.
//!
//! A call that reaches Redis and fails in a way that opens the breaker is run again on
//! the embedded backend (or fails closed), so the call that trips the breaker is served
//! too — except a journaled write that Redis may have run (it timed out, or the
//! connection broke after it was sent: [`Error::Indeterminate`]), which is answered as
//! unavailable rather than answered again, perhaps differently, by the fallback. Calls
//! that fail before the threshold is reached return [`Error::Unavailable`]. Journaled
//! operations are idempotent, so a caller retries either.
//!
//! **Recovery.** While the breaker is open a prober PINGs Redis with exponential backoff
//! and jitter (a Redis that answers `LOADING` is waited for at the shortest interval). When
//! Redis answers, the breaker moves to *recovering*: each registered [`Recovery`] replays
//! its journal and catches up in batches while fallback calls still flow; then, with new
//! fallback *writes* held back for a short tail (reads never are), the rest is replayed,
//! each capability's [`Recovery::seal`] makes its outage copies invisible, the breaker
//! closes, and [`Recovery::after_close`] deletes those copies (and moves the job spool to
//! Redis) in the background — only those: an outage that begins before it runs keeps what
//! it writes. A read that was served by
//! the embedded store while recovery completed is asked again of Redis. If Redis fails
//! during recovery the breaker opens again and nothing is lost; an operation Redis refuses
//! for good is dead-lettered and recovery goes on.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::Serialize;
use tokio::task::JoinHandle;

use super::backplane::Backplane;
use super::breaker::Breaker;
use super::embedded::EmbeddedStore;
use super::hlc::Hlc;
use super::journal::{Entry, Journal, Pending, with_pending};
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

/// Which store made a handle that names state living in one store only (a job lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Redis made it: follow the route (journaled in fallback).
    Redis,
    /// The embedded store made it: it stays there, whatever the mode.
    Embedded,
}

impl Origin {
    /// The prefix a handle made by this store starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            Origin::Redis => "r-",
            Origin::Embedded => "e-",
        }
    }

    /// Where `handle` (made by [`Origin::prefix`] + anything, at most 128 bytes) came from.
    pub fn of(handle: &str) -> Option<Origin> {
        if handle.len() > 128 {
            None
        } else if handle.starts_with("r-") {
            Some(Origin::Redis)
        } else if handle.starts_with("e-") {
            Some(Origin::Embedded)
        } else {
            None
        }
    }
}

/// Why [`Recovery::after_close`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// An outage of this run ended: the breaker just closed.
    OutageEnded,
    /// Redis was serving when the capability registered, and an earlier run's leftovers
    /// (if any) were just replayed.
    AtStartup,
}

/// A capability's way back to Redis after an outage.
#[async_trait::async_trait]
pub trait Recovery: Send + Sync {
    /// The capability whose journal entries this replays.
    fn capability(&self) -> &'static str;

    /// Applies journaled operations to Redis's current state, in order. Must be
    /// idempotent: after a failure the whole batch is offered again. A newer write or a
    /// tombstone already in Redis must win over an older operation (compare
    /// [`Entry::ts`]). Implementations should pipeline, since recovery must outpace
    /// writes still arriving in fallback. An error that is not
    /// [`ErrorKind::Unavailable`] dead-letters the entry that caused it.
    async fn replay(&self, entries: &[Entry]) -> Result<()>;

    /// Moves outage state that is kept as state rather than operations (the idle timers of
    /// sessions used during the outage) to Redis, one batch per call; returns whether
    /// anything is left. Called while fallback calls still flow, then with fallback writes
    /// held back until it returns false.
    async fn catch_up(&self) -> Result<bool> {
        Ok(false)
    }

    /// Runs with fallback writes held back, right before the breaker closes (and, for the
    /// pass at start-up, when the capability registers while Redis serves): makes what the
    /// outages so far left in the embedded store invisible at once — a generation step,
    /// not a deletion. It must be this step, and not [`Recovery::after_close`] running
    /// later in the background, that draws the line: a write of an outage that begins
    /// before the clean-up runs is on the near side of it and stays served. The returned
    /// future records the step durably; it runs in the background before `after_close`.
    fn seal(&self) -> BoxFuture<'static, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Runs right after the breaker closed (in the background, never holding calls back):
    /// delete what [`Recovery::seal`] made invisible — never more, since another outage may
    /// have begun meanwhile — and move what must move (the job spool). `after` says whether
    /// an outage of this run just ended or the pass at start-up cleaned up an earlier run's
    /// leftovers.
    async fn after_close(&self, _after: Closed) -> Result<()> {
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
    clock: Hlc,
    backplane: OnceLock<Arc<Backplane>>,
    recoveries: Mutex<Vec<Arc<dyn Recovery>>>,
    stats: Mutex<Vec<Weak<dyn StatsProvider>>>,
    capabilities: Mutex<BTreeMap<&'static str, FallbackPolicy>>,
    /// Held for reading by fallback writes; held for writing while the last of the journal
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
/// Rounds of replay and catch-up while fallback writes still flow, before they are held
/// back for the final tail; bounds recovery even if fallback writes outpace replay.
const UNGATED_ROUNDS: usize = 64;

impl Route {
    /// Must be called within a tokio runtime (it is, from `Redkit::open`).
    pub(crate) fn new(redis: Option<Arc<RedisCore>>, embedded: Arc<EmbeddedStore>, breaker: Arc<Breaker>) -> Arc<Self> {
        Arc::new(Route {
            journal: Journal::new(embedded.clone()),
            redis,
            embedded,
            breaker,
            clock: Hlc::new(),
            backplane: OnceLock::new(),
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

    /// This instance's hybrid-logical clock (see [`hlc`](super::hlc)).
    pub fn clock(&self) -> &Hlc {
        &self.clock
    }

    /// The pub/sub backplane shared by every capability of this instance (started on
    /// first use); `None` without Redis.
    pub fn backplane(&self) -> Option<&Arc<Backplane>> {
        let core = self.redis.as_ref()?;
        Some(
            self.backplane
                .get_or_init(|| Backplane::start(core.clone(), &self.runtime)),
        )
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

    /// Registers how `recovery.capability()` returns to Redis. If Redis is serving and an
    /// earlier run left operations or copies behind, they are replayed and dropped now, in
    /// the background. One recovery per capability: later registrations of the same
    /// capability only trigger that.
    pub fn register_recovery(self: &Arc<Self>, recovery: Arc<dyn Recovery>) {
        {
            let mut recoveries = self.recoveries.lock().expect("route lock");
            if !recoveries.iter().any(|r| r.capability() == recovery.capability()) {
                recoveries.push(recovery.clone());
            }
        }
        if self.mode() == Mode::Redis {
            // Now, not when the pass below gets to it: this capability has written nothing
            // in this run yet, so only earlier runs' copies are sealed.
            let sealed = recovery.seal();
            let route = self.clone();
            self.runtime.spawn(async move {
                let leftovers = async {
                    route.drain(&recovery, None).await?;
                    while recovery.catch_up().await? {}
                    sealed.await?;
                    recovery.after_close(Closed::AtStartup).await
                };
                if let Err(e) = leftovers.await {
                    tracing::warn!(capability = recovery.capability(), error = %e, "replaying an earlier run's outage failed; will retry on the next recovery");
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
        // While fallback writes still flow: replay and catch up until what is left is
        // small, so the tail that holds writes back is short.
        for _ in 0..UNGATED_ROUNDS {
            let mut more = false;
            for r in &recoveries {
                more |= self.drain(r, Some(1)).await? >= REPLAY_BATCH;
                more |= r.catch_up().await?;
            }
            if !more {
                break;
            }
        }
        let sealed: Vec<_> = {
            let _hold_fallback_writes = self.gate.write().await;
            for r in &recoveries {
                self.drain(r, None).await?;
                while r.catch_up().await? {}
            }
            // Every journaled fallback write so far is behind the line, and none can cross
            // it: they wait at the gate and then find the breaker closed.
            let sealed = recoveries.iter().map(|r| r.seal()).collect();
            self.breaker.close();
            sealed
        };
        self.recoveries_completed.fetch_add(1, Ordering::Relaxed);
        for (r, sealed) in recoveries.into_iter().zip(sealed) {
            self.runtime.spawn(async move {
                if let Err(e) = async { sealed.await?; r.after_close(Closed::OutageEnded).await }.await {
                    tracing::warn!(capability = r.capability(), error = %e, "cleaning up after an outage failed; retried after the next one");
                }
            });
        }
        Ok(())
    }

    /// Replays `recovery`'s journal in batches until it is empty, or `max_batches` ran;
    /// returns the size of the last batch. Entries Redis refuses for good are
    /// dead-lettered; an unavailable Redis stops the drain with an error.
    async fn drain(&self, recovery: &Arc<dyn Recovery>, max_batches: Option<usize>) -> Result<usize> {
        let _one_at_a_time = self.draining.lock().await;
        let capability = recovery.capability();
        let mut batches = 0;
        let mut last = 0;
        while max_batches.is_none_or(|max| batches < max) {
            let batch = self.journal.oldest(capability, REPLAY_BATCH).await?;
            let Some(through) = batch.last().map(|e| e.seq) else {
                return Ok(0);
            };
            last = batch.len();
            match recovery.replay(&batch).await {
                Ok(()) => self.journal.remove_through(capability, through).await?,
                Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
                Err(_) => self.replay_one_by_one(recovery, &batch).await?,
            }
            metrics::counter!("redkit_journal_replayed_total", "capability" => capability).increment(last as u64);
            batches += 1;
        }
        Ok(last)
    }

    /// Replays a batch that Redis refused entry by entry, dead-lettering what it refuses.
    async fn replay_one_by_one(&self, recovery: &Arc<dyn Recovery>, batch: &[Entry]) -> Result<()> {
        let capability = recovery.capability();
        for entry in batch {
            match recovery.replay(std::slice::from_ref(entry)).await {
                Ok(()) => self.journal.remove_through(capability, entry.seq).await?,
                Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
                Err(e) => self.journal.dead_letter(capability, entry, e.to_string()).await?,
            }
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

/// What the route does around an embedded call in fallback.
enum Kind<'o> {
    /// A read: asked again of Redis if recovery completed meanwhile.
    Read,
    /// A write Redis need not hear about (it is rebuilt, or moved by other means).
    Unjournaled,
    /// A write whose operation the embedded backend records in its transaction.
    Journaled(Box<dyn FnOnce() -> Vec<u8> + Send + 'o>),
}

impl<B: ?Sized + Send + Sync> Routed<B> {
    /// The route behind this capability.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// Runs a read. A read served by the embedded store while recovery completed is run
    /// again on Redis, so it never sees outage copies being dropped.
    ///
    /// `f` calls one backend method: `routed.read(|b| b.get(key))`.
    pub async fn read<'a, T>(&'a self, f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>) -> Result<T> {
        self.run(Kind::Read, f).await
    }

    /// Runs a write that Redis need not hear about after an outage (state that is
    /// rebuilt, like rate-limit counters, or moved by other means, like the job spool).
    pub async fn call<'a, T>(&'a self, f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>) -> Result<T> {
        self.run(Kind::Unjournaled, f).await
    }

    /// Runs a write that Redis must hear about after an outage. In fallback, `op` (built
    /// only then) describes the write as an *operation*; the embedded backend records it
    /// in the same transaction as the write (see [`journal::pending`](super::journal::pending)),
    /// or drops it if the write did not take effect, and it is handed to this capability's
    /// [`Recovery::replay`] when Redis is back.
    pub async fn write<'a, T>(
        &'a self,
        op: impl FnOnce() -> Vec<u8> + Send + 'a,
        f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        self.run(Kind::Journaled(Box::new(op)), f).await
    }

    /// Runs `f` on the store that made `handle`'s state (see [`Origin`]): state the
    /// embedded store made stays there whatever the mode; Redis's follows the route like
    /// [`Routed::write`] (`op` journaled in fallback).
    pub async fn write_at<'a, T>(
        &'a self,
        origin: Origin,
        op: impl FnOnce() -> Vec<u8> + Send + 'a,
        f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        match origin {
            Origin::Embedded => f(&self.embedded).await,
            Origin::Redis => self.write(op, f).await,
        }
    }

    /// Like [`Routed::write_at`] for calls Redis need not hear about after an outage.
    pub async fn call_at<'a, T>(&'a self, origin: Origin, f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>) -> Result<T> {
        match origin {
            Origin::Embedded => f(&self.embedded).await,
            Origin::Redis => self.call(f).await,
        }
    }

    async fn run<'a, T>(&'a self, kind: Kind<'a>, f: impl Fn(&'a B) -> BoxFuture<'a, Result<T>>) -> Result<T> {
        let Some(redis) = &self.redis else {
            return f(&self.embedded).await;
        };
        let breaker = &self.route.breaker;
        if breaker.is_closed() {
            match f(redis).await {
                // A journaled write that Redis may have applied is not applied a second
                // time, differently, by the fallback: its caller hears that the outcome is
                // unknown and retries (the operations are idempotent).
                Err(e) if e.is_indeterminate() && matches!(kind, Kind::Journaled(_)) => return Err(e),
                Err(e) if e.kind() == ErrorKind::Unavailable && !breaker.is_closed() => {
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
        metrics::counter!("redkit_fallback_calls_total", "capability" => self.capability).increment(1);
        match kind {
            Kind::Read => {
                let value = f(&self.embedded).await;
                if breaker.is_closed() {
                    // Recovery completed during the call: the outage copies it read may
                    // already be gone, and Redis is the truth again.
                    return f(redis).await;
                }
                value
            }
            Kind::Unjournaled => f(&self.embedded).await,
            Kind::Journaled(op) => {
                let _fallback = self.route.gate.read().await;
                if breaker.is_closed() {
                    // Recovery finished while this call waited at the gate.
                    return f(redis).await;
                }
                let pending = Pending::new(self.capability, self.route.clock.now(), op());
                let (value, unrecorded) = with_pending(pending, f(&self.embedded)).await;
                if let (Ok(_), Some(p)) = (&value, unrecorded) {
                    // A backend that never asked for its operation: record it on its own
                    // rather than lose it (not atomic with the write; a bug to fix).
                    debug_assert!(
                        false,
                        "{}: the embedded backend did not record its operation",
                        self.capability
                    );
                    self.route.journal.append(self.capability, p.ts(), p.into_op()).await?;
                }
                value
            }
        }
    }
}
