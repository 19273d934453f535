//! What every handler shares: the library handle, the capabilities built on it, the
//! keys, and the shutdown signal long polls listen to.

use std::sync::Arc;

use redkit::cache::{Cache, CacheOptions};
use redkit::jobs::{Queue, QueueOptions};
use redkit::lock::Locks;
use redkit::pubsub::Channels;
use redkit::ratelimit::RateLimiter;
use redkit::records::counters::Counters;
use redkit::records::lists::Lists;
use redkit::records::{Records, RecordsOptions};
use redkit::session::{SessionOptions, Sessions};
use redkit::{Redkit, Result};
use serde_json::Value;
use tokio::sync::watch;

use crate::auth::{HasKeys, Keys};
use crate::error::BodyLimit;
use crate::settings::ServerSettings;

/// Most cache namespaces or queues whose handles one server keeps (each costs a little
/// memory; past it the least recently used handle goes, its L1 with it). Nothing is ever
/// refused for it.
pub const MAX_NAMES: u64 = 10_000;

/// Handles kept by name, at most [`MAX_NAMES`]. A handle is kept when a write uses it, or a
/// read finds something through it; a read of a name nobody wrote keeps nothing.
struct Named<T> {
    kept: moka::sync::Cache<String, T>,
}

impl<T: Clone + Send + Sync + 'static> Named<T> {
    fn new() -> Self {
        Named {
            kept: moka::sync::Cache::new(MAX_NAMES),
        }
    }

    /// The kept handle of `name`, or a fresh one (kept only if `keep`), and whether it is
    /// kept now.
    fn handle(&self, name: &str, keep: bool, open: impl FnOnce() -> Result<T>) -> Result<(T, bool)> {
        if let Some(h) = self.kept.get(name) {
            return Ok((h, true));
        }
        let h = open()?;
        if keep {
            self.kept.insert(name.to_string(), h.clone());
        }
        Ok((h, keep))
    }

    fn keep(&self, name: &str, h: &T) {
        if !self.kept.contains_key(name) {
            self.kept.insert(name.to_string(), h.clone());
        }
    }

    fn snapshot(&self) -> Vec<T> {
        self.kept.iter().map(|(_, h)| h).collect()
    }
}

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    redkit: Redkit,
    settings: ServerSettings,
    keys: Keys,
    caches: Named<Cache<Value>>,
    queues: Named<Queue>,
    sessions: Sessions,
    limiter: RateLimiter,
    locks: Locks,
    channels: Channels,
    records: Records,
    tokens: crate::tokens::TokenSigner,
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Builds the capabilities and defines the configured rate-limit policies.
    /// `shutdown` turns true when the server stops (long polls return early).
    pub fn new(redkit: Redkit, mut settings: ServerSettings, shutdown: watch::Receiver<bool>) -> Result<Self> {
        let limiter = redkit.rate_limiter();
        for p in &settings.policies {
            limiter.define(p.clone())?;
        }
        let keys = Keys::new(std::mem::take(&mut settings.keys));
        let collections = std::mem::take(&mut settings.collections);
        let state = AppState {
            inner: Arc::new(Inner {
                sessions: redkit.sessions(SessionOptions::default())?,
                locks: redkit.locks(),
                channels: redkit.channels(settings.channels.clone())?,
                records: {
                    let mut options = RecordsOptions::default();
                    if let Some(key) = &settings.redact_key {
                        options = options.redact_key(key.as_bytes());
                    }
                    redkit.records(options)?
                },
                tokens: crate::tokens::TokenSigner::new(settings.channel_token_secret.as_deref()),
                limiter,
                redkit,
                settings,
                keys,
                caches: Named::new(),
                queues: Named::new(),
                shutdown,
            }),
        };
        if !collections.is_empty() {
            tokio::spawn(define_collections(state.records().clone(), collections));
        }
        Ok(state)
    }

    pub fn redkit(&self) -> &Redkit {
        &self.inner.redkit
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.inner.settings
    }

    /// The JSON cache of namespace `ns`, for a write: its handle is kept.
    pub fn cache(&self, ns: &str) -> Result<Cache<Value>> {
        Ok(self.cache_handle(ns, true)?.0)
    }

    /// The JSON cache of namespace `ns`, for a read, and whether its handle is kept: a
    /// handle is kept only once a read finds something ([`AppState::keep_cache`]), so
    /// reading unknown names creates nothing.
    pub fn cache_to_read(&self, ns: &str) -> Result<(Cache<Value>, bool)> {
        self.cache_handle(ns, false)
    }

    /// Keeps the handle a read found something through.
    pub fn keep_cache(&self, ns: &str, cache: &Cache<Value>) {
        self.inner.caches.keep(ns, cache);
    }

    fn cache_handle(&self, ns: &str, keep: bool) -> Result<(Cache<Value>, bool)> {
        let settings = &self.inner.settings;
        self.inner.caches.handle(ns, keep, || {
            let mut options = CacheOptions::default().max_value_bytes(settings.max_body_bytes);
            if let Some(rules) = settings.cache_redact.get(ns) {
                options = options.redact(rules.clone(), settings.redact_key.as_deref().map(str::as_bytes));
            }
            self.inner.redkit.cache(ns, options)
        })
    }

    /// The caches whose handles are kept.
    pub fn caches(&self) -> Vec<Cache<Value>> {
        self.inner.caches.snapshot()
    }

    /// Job queue `name`, for an enqueue: its handle is kept.
    pub fn queue(&self, name: &str) -> Result<Queue> {
        self.queue_handle(name, true)
    }

    /// Job queue `name`, for anything but an enqueue: nothing is kept for a name nobody
    /// enqueued to (and the library creates nothing in the stores for it either).
    pub fn queue_to_use(&self, name: &str) -> Result<Queue> {
        self.queue_handle(name, false)
    }

    fn queue_handle(&self, name: &str, keep: bool) -> Result<Queue> {
        self.inner
            .queues
            .handle(name, keep, || self.inner.redkit.queue(name, QueueOptions::default()))
            .map(|(queue, _)| queue)
    }

    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    pub fn locks(&self) -> &Locks {
        &self.inner.locks
    }

    pub fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    pub fn records(&self) -> &Records {
        &self.inner.records
    }

    pub fn lists(&self) -> Lists {
        self.inner.records.lists()
    }

    pub fn counters(&self) -> Counters {
        self.inner.records.counters()
    }

    /// Issues and checks channel tokens.
    pub fn tokens(&self) -> &crate::tokens::TokenSigner {
        &self.inner.tokens
    }

    /// Whether the server has begun to shut down.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Resolves when the server begins to shut down.
    pub async fn shutting_down(&self) {
        let mut rx = self.inner.shutdown.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Defines the collections of the config file, waiting for Redis if it is away.
async fn define_collections(records: Records, collections: Vec<(String, redkit::records::CollectionSpec)>) {
    for (name, spec) in collections {
        loop {
            match records.define(&name, spec.clone()).await {
                Ok(_) => break,
                Err(e) if e.kind() == redkit::ErrorKind::Unavailable => {
                    tracing::warn!(collection = %name, error = %e, "defining a configured collection must wait for Redis");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                Err(e) => {
                    tracing::error!(collection = %name, error = %e, "a configured collection could not be defined");
                    break;
                }
            }
        }
    }
}

impl HasKeys for AppState {
    fn keys(&self) -> &Keys {
        &self.inner.keys
    }
}

impl BodyLimit for AppState {
    fn max_body_bytes(&self) -> usize {
        self.inner.settings.max_body_bytes
    }
}
