//! What every handler shares: the library handle, the capabilities built on it, the
//! keys, and the shutdown signal long polls listen to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redkit::cache::{Cache, CacheOptions};
use redkit::jobs::{Queue, QueueOptions};
use redkit::lock::Locks;
use redkit::ratelimit::RateLimiter;
use redkit::session::{SessionOptions, Sessions};
use redkit::{Redkit, Result};
use serde_json::Value;
use tokio::sync::watch;

use crate::auth::{HasKeys, Keys};
use crate::error::BodyLimit;
use crate::settings::ServerSettings;

/// Most cache namespaces or queues one server opens (each costs a little memory).
pub const MAX_NAMES: usize = 10_000;

/// Handles opened on first use and kept by name.
struct Named<T> {
    what: &'static str,
    open: Mutex<HashMap<String, T>>,
}

impl<T: Clone> Named<T> {
    fn new(what: &'static str) -> Self {
        Named {
            what,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn get_or_open(&self, name: &str, open: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut map = self.open.lock().expect("not poisoned");
        if let Some(h) = map.get(name) {
            return Ok(h.clone());
        }
        if map.len() >= MAX_NAMES {
            return Err(redkit::Error::invalid(
                self.what,
                format!("this server already serves {MAX_NAMES} of them"),
            ));
        }
        let h = open()?;
        map.insert(name.to_string(), h.clone());
        Ok(h)
    }

    fn snapshot(&self) -> Vec<T> {
        self.open.lock().expect("not poisoned").values().cloned().collect()
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
        Ok(AppState {
            inner: Arc::new(Inner {
                sessions: redkit.sessions(SessionOptions::default())?,
                locks: redkit.locks(),
                limiter,
                redkit,
                settings,
                keys,
                caches: Named::new("namespace"),
                queues: Named::new("queue"),
                shutdown,
            }),
        })
    }

    pub fn redkit(&self) -> &Redkit {
        &self.inner.redkit
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.inner.settings
    }

    /// The JSON cache of namespace `ns`.
    pub fn cache(&self, ns: &str) -> Result<Cache<Value>> {
        let max_value = self.inner.settings.max_body_bytes;
        self.inner.caches.get_or_open(ns, || {
            self.inner
                .redkit
                .cache(ns, CacheOptions::default().max_value_bytes(max_value))
        })
    }

    /// The caches opened so far.
    pub fn caches(&self) -> Vec<Cache<Value>> {
        self.inner.caches.snapshot()
    }

    /// Job queue `name`.
    pub fn queue(&self, name: &str) -> Result<Queue> {
        self.inner
            .queues
            .get_or_open(name, || self.inner.redkit.queue(name, QueueOptions::default()))
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
