//! # redkit
//!
//! Application infrastructure that web services keep hand-building around Redis — cache,
//! sessions, rate limits, distributed locks, background jobs, pub/sub, records — done once.
//! **Redis is the primary store**; a built-in **embedded store** (moka in memory, SQLite on
//! disk) is the default when no Redis is configured and the **fallback** when Redis fails:
//! a circuit breaker routes around a dead Redis without every call paying a timeout, and
//! what was written during the outage is replayed when Redis returns.
//!
//! Build one [`Redkit`] per process and share it:
//!
//! ```no_run
//! # async fn demo() -> redkit::Result<()> {
//! let redkit = redkit::Redkit::open(redkit::Config::from_env()?).await?;
//! println!("serving from {:?}", redkit.mode());
//! let health = redkit.health().await;
//! println!("{}", serde_json::to_string_pretty(&health).unwrap());
//! # Ok(()) }
//! ```
//!
//! The layers, bottom up: [`core::redis`] (connections, timeouts, scripts, stats),
//! [`core::embedded`] (moka + SQLite), [`core::breaker`] and [`core::route`] (the one
//! failover mechanism every capability goes through).

#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod core;
pub mod error;
pub mod health;
pub mod jobs;
pub mod lock;
pub mod pubsub;
pub mod ratelimit;
pub mod records;
pub mod session;
pub mod stats;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::task::JoinHandle;

pub use config::Config;
pub use core::route::{Closed, FallbackPolicy, Mode, Recovery, Route, Routed};
pub use error::{Error, ErrorKind, Result};
pub use health::Health;

use core::breaker::Breaker;
use core::embedded::EmbeddedStore;
use core::redis::RedisCore;

/// The handle an application builds once and clones freely.
#[derive(Clone)]
pub struct Redkit {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    route: Arc<Route>,
    cache_hub: OnceLock<Arc<cache::CacheHub>>,
    rate_limiter: OnceLock<ratelimit::RateLimiter>,
    locks: OnceLock<lock::Locks>,
    jobs: OnceLock<Arc<jobs::JobsHub>>,
    sessions: OnceLock<Arc<session::SessionsHub>>,
    channels: OnceLock<Arc<pubsub::ChannelsHub>>,
    records: OnceLock<Arc<records::RecordsHub>>,
    prober: Option<JoinHandle<()>>,
    maintenance: JoinHandle<()>,
    started: Instant,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(p) = &self.prober {
            p.abort();
        }
        self.maintenance.abort();
    }
}

/// How often the embedded store's WAL is checkpointed and truncated.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

async fn maintain(embedded: Arc<EmbeddedStore>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if let Err(e) = embedded.checkpoint().await {
            tracing::warn!(error = %e, "checkpointing the embedded store failed");
        }
    }
}

impl Redkit {
    /// Opens the embedded store and, when configured, connects to Redis (waiting out
    /// `LOADING` up to `redis.loading_wait`). A Redis that cannot be reached does not fail
    /// start-up: redkit starts in `fallback` mode and recovers in the background.
    pub async fn open(config: Config) -> Result<Self> {
        let embedded = Arc::new(EmbeddedStore::open(&config.data_dir)?);
        let breaker = Arc::new(Breaker::new(config.breaker));
        let redis = match &config.redis {
            Some(rc) => Some(RedisCore::connect(rc.clone(), breaker.clone()).await?),
            None => None,
        };
        let maintenance = tokio::spawn(maintain(embedded.clone()));
        let route = Route::new(redis, embedded, breaker);
        let prober = route.spawn_prober();
        Ok(Redkit {
            inner: Arc::new(Inner {
                config,
                route,
                cache_hub: OnceLock::new(),
                rate_limiter: OnceLock::new(),
                locks: OnceLock::new(),
                jobs: OnceLock::new(),
                sessions: OnceLock::new(),
                channels: OnceLock::new(),
                records: OnceLock::new(),
                prober,
                maintenance,
                started: Instant::now(),
            }),
        })
    }

    /// The configuration this instance runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The failover route; capabilities are built on it.
    pub fn route(&self) -> &Arc<Route> {
        &self.inner.route
    }

    /// Who is serving now.
    pub fn mode(&self) -> Mode {
        self.inner.route.mode()
    }

    /// A cache of values of type `T` in `namespace` (1–64 of `A-Za-z0-9_.-`). Caches of
    /// one `Redkit` share the backplane subscription and the recovery journal.
    pub fn cache<T: cache::CacheValue>(
        &self,
        namespace: &str,
        options: cache::CacheOptions,
    ) -> Result<cache::Cache<T>> {
        let hub = self
            .inner
            .cache_hub
            .get_or_init(|| cache::CacheHub::new(&self.inner.route))
            .clone();
        cache::Cache::open(hub, namespace, options)
    }

    /// The rate limiter (one per `Redkit`; define policies on it).
    pub fn rate_limiter(&self) -> ratelimit::RateLimiter {
        self.inner
            .rate_limiter
            .get_or_init(|| ratelimit::RateLimiter::new(&self.inner.route))
            .clone()
    }

    /// Distributed locks and semaphores.
    pub fn locks(&self) -> lock::Locks {
        self.inner
            .locks
            .get_or_init(|| lock::Locks::new(&self.inner.route))
            .clone()
    }

    /// A session store with these defaults and limits.
    pub fn sessions(&self, options: session::SessionOptions) -> Result<session::Sessions> {
        let hub = self
            .inner
            .sessions
            .get_or_init(|| session::SessionsHub::new(&self.inner.route))
            .clone();
        session::Sessions::new(hub, options)
    }

    /// Pub/sub channels with these history settings and limits. Channels of one `Redkit`
    /// share the backplane subscription and the fan-out to subscribers.
    pub fn channels(&self, options: pubsub::ChannelOptions) -> Result<pubsub::Channels> {
        let hub = self
            .inner
            .channels
            .get_or_init(|| pubsub::ChannelsHub::new(&self.inner.route))
            .clone();
        pubsub::Channels::new(&hub, options)
    }

    /// Records: collections of documents with declared indexes, plus capped lists and
    /// time-bucketed counters ([`records::Records::lists`], [`records::Records::counters`]).
    pub fn records(&self, options: records::RecordsOptions) -> Result<records::Records> {
        let hub = self
            .inner
            .records
            .get_or_init(|| records::RecordsHub::new(&self.inner.route))
            .clone();
        records::Records::new(hub, self.inner.route.clone(), options)
    }

    fn jobs_hub(&self) -> Arc<jobs::JobsHub> {
        self.inner
            .jobs
            .get_or_init(|| jobs::JobsHub::new(&self.inner.route))
            .clone()
    }

    /// The job queue `name` (1–64 of `A-Za-z0-9_.-`) with these options. Queues of one
    /// `Redkit` share the spool, the journal and the event listeners.
    pub fn queue(&self, name: &str, options: jobs::QueueOptions) -> Result<jobs::Queue> {
        jobs::Queue::open(self.jobs_hub(), name, options)
    }

    /// The names of the job queues known to the stores in use.
    pub async fn queues(&self) -> Result<Vec<String>> {
        self.jobs_hub().queue_names().await
    }

    /// Mode, breaker, Redis, embedded store, journal, capabilities and statistics.
    pub async fn health(&self) -> Health {
        health::collect(&self.inner.route, self.inner.started).await
    }
}

/// The README's Rust examples, compiled as doc tests so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// For unit tests: a redkit on a fresh real `redis-server` with its data dir (keep all
/// three alive for the test).
#[cfg(test)]
pub(crate) async fn on_fresh_redis() -> (Redkit, redkit_testkit::RedisServer, tempfile::TempDir) {
    let redis = redkit_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        redis: Some(config::RedisConfig::new(redis.url())),
        ..Config::default()
    };
    (Redkit::open(config).await.unwrap(), redis, dir)
}
