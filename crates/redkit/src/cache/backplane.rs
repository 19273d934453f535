//! Coherence across instances, and the cache's way back after an outage.
//!
//! **Backplane.** Every change an instance makes in Redis is announced on the channel
//! [`CHANNEL`] of the instance's [backplane](crate::core::backplane) in the same round
//! trip, tagged with the instance's id. A message from another instance drops the named
//! keys (or every key of a tag or pattern) from this instance's L1. When the subscription
//! breaks, or is (re)established, every L1 is cleared: invalidations may have been missed.
//!
//! **Recovery.** In fallback mode every write (set, delete, tag or pattern invalidation) is
//! journaled as an *invalidation*: a value set during the outage is not written back (it
//! may be older than what another instance wrote meanwhile), its key is removed from
//! Redis instead, so the next read loads it afresh; deletes and tag and pattern
//! invalidations are replayed as they were. Invalidations commute, so the order in which
//! instances recover does not matter. Replays are announced on the backplane like any
//! change; then every L1 of this instance is cleared and the values the outage wrote to
//! the embedded store are dropped (a generation bump), never served again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use super::backend::CacheBackend;
use super::embedded::EmbeddedCache;
use super::l1::L1Sink;
use super::redis::RedisCache;
use super::stats::CacheStatsSnapshot;
use crate::core::backplane::Listener;
use crate::core::journal::Entry;
use crate::core::route::{BoxFuture, Closed, Recovery, Route, StatsProvider};
use crate::error::Result;

/// The pub/sub channel of the cache backplane.
pub const CHANNEL: &str = "rk:cache:backplane";

/// What changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Invalidation {
    /// These keys were set or deleted.
    Keys(Vec<String>),
    /// Every key under this tag was removed.
    Tag(String),
    /// Every key matching this glob was removed.
    Pattern(String),
}

/// One backplane message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    /// Sending instance.
    i: String,
    ns: String,
    op: Invalidation,
}

impl Message {
    pub fn new(instance: &str, ns: &str, op: Invalidation) -> Self {
        Message {
            i: instance.to_string(),
            ns: ns.to_string(),
            op,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("messages serialize")
    }
}

/// A cache of this instance, as the hub sees it.
pub(crate) trait Member: Send + Sync {
    fn namespace(&self) -> &str;
    fn l1(&self) -> &dyn L1Sink;
    fn stats(&self) -> CacheStatsSnapshot;
}

/// A write made in fallback mode, replayed to Redis as an invalidation.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JournalOp {
    /// Keys set or deleted: removed from Redis.
    Keys { ns: String, keys: Vec<String> },
    /// Every key under a tag removed.
    Tag { ns: String, tag: String },
    /// Every key matching a glob removed.
    Pattern { ns: String, pattern: String },
}

impl JournalOp {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("journal ops serialize")
    }
}

/// Shared by every cache of one `Redkit`: backends, backplane listener, recovery.
pub(crate) struct CacheHub {
    pub instance: Arc<str>,
    pub route: Arc<Route>,
    pub redis: Option<Arc<RedisCache>>,
    pub embedded: Arc<EmbeddedCache>,
    /// The memory every L1 of this `Redkit` shares.
    pub l1_budget: Arc<super::l1::Budget>,
    members: Mutex<Vec<Weak<dyn Member>>>,
    /// Set once the hub's listener has heard the subscription come up (false without Redis).
    subscribed: AtomicBool,
}

impl CacheHub {
    pub fn new(route: &Arc<Route>) -> Arc<Self> {
        let backplane = route.backplane().cloned();
        let instance: Arc<str> = backplane
            .as_ref()
            .map_or_else(|| Arc::from(crate::core::random::token()), |b| b.instance().clone());
        let redis = route
            .redis()
            .map(|core| Arc::new(RedisCache::new(core.clone(), instance.clone())));
        let embedded = Arc::new(EmbeddedCache::new(route.embedded().clone()));
        if redis.is_some() {
            // Values an earlier run wrote in an outage are not served again; the journal
            // still carries their invalidations.
            let sealed = embedded.seal();
            let dropped = embedded.forget_outage();
            route.spawn(async move {
                if let Err(e) = async {
                    sealed.await?;
                    dropped.await
                }
                .await
                {
                    tracing::warn!(error = %e, "dropping the cache's outage copies failed");
                }
            });
        }
        let hub = Arc::new(CacheHub {
            instance,
            route: route.clone(),
            redis: redis.clone(),
            embedded: embedded.clone(),
            l1_budget: Arc::new(super::l1::Budget::new(super::l1::L1_TOTAL_BYTES)),
            members: Mutex::new(Vec::new()),
            subscribed: AtomicBool::new(false),
        });
        let provider: Weak<dyn StatsProvider> = Arc::downgrade(&hub) as _;
        route.register_stats(provider);
        if let (Some(redis), Some(backplane)) = (redis, backplane) {
            route.register_recovery(Arc::new(CacheRecovery {
                redis,
                embedded,
                hub: Arc::downgrade(&hub),
                replayed: AtomicBool::new(false),
            }));
            let listener: Weak<dyn Listener> = Arc::downgrade(&hub) as _;
            route.spawn(async move { backplane.join(listener).await });
        }
        hub
    }

    /// Adds a cache; its L1 serves only while invalidations reach it.
    pub fn join(&self, member: Weak<dyn Member>) {
        let mut members = self.members.lock().expect("hub lock");
        if let Some(m) = member.upgrade() {
            m.l1().set_live(self.redis.is_none() || self.is_subscribed());
        }
        members.retain(|m| m.strong_count() > 0);
        members.push(member);
    }

    /// Whether L1s may serve: flips every member under the members lock, so a cache
    /// joining meanwhile gets the same answer.
    fn set_live(&self, live: bool) {
        let members = self.members.lock().expect("hub lock");
        self.subscribed.store(live, Ordering::Release);
        for m in members.iter().filter_map(Weak::upgrade) {
            m.l1().set_live(live);
        }
    }

    fn members(&self) -> Vec<Arc<dyn Member>> {
        self.members
            .lock()
            .expect("hub lock")
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Whether this instance receives other instances' invalidations (false without Redis).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn clear_all(&self) {
        for m in self.members() {
            m.l1().clear();
        }
    }
}

impl Listener for CacheHub {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn deliver(&self, payload: &[u8]) {
        let message = match serde_json::from_slice::<Message>(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed cache backplane message");
                return;
            }
        };
        if message.i == *self.instance {
            return;
        }
        for m in self.members() {
            if m.namespace() == message.ns {
                m.l1().apply(&message.op);
            }
        }
    }

    fn resync(&self) {
        // Whatever happened before this point may have been missed: start empty.
        self.set_live(true);
    }

    fn lost(&self) {
        self.set_live(false);
        tracing::info!("cache backplane subscription lost; L1 cleared and off until it is back");
    }
}

impl StatsProvider for CacheHub {
    fn capability(&self) -> &'static str {
        "cache"
    }

    fn snapshot(&self) -> serde_json::Value {
        let caches: Vec<CacheStatsSnapshot> = self.members().iter().map(|m| m.stats()).collect();
        serde_json::json!({
            "backplane_subscribed": self.is_subscribed(),
            "l1_bytes": self.l1_budget.used(),
            "l1_budget_bytes": super::l1::L1_TOTAL_BYTES,
            "caches": caches,
        })
    }
}

struct CacheRecovery {
    redis: Arc<RedisCache>,
    embedded: Arc<EmbeddedCache>,
    hub: Weak<CacheHub>,
    /// Whether invalidations were replayed since L1s were last cleared: this instance
    /// does not hear its own announcements, so its L1s must drop what was replayed.
    replayed: AtomicBool,
}

/// Keys per replayed delete.
const REPLAY_KEYS_BATCH: usize = 500;

#[async_trait::async_trait]
impl Recovery for CacheRecovery {
    fn capability(&self) -> &'static str {
        "cache"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        if !entries.is_empty() {
            self.replayed.store(true, Ordering::Release);
        }
        // Consecutive key invalidations of one namespace go to Redis in one call; tag and
        // pattern invalidations flush them first (they commute anyway).
        let mut keys: Option<(String, Vec<String>)> = None;
        for entry in entries {
            let op: JournalOp = rmp_serde::from_slice(&entry.op)
                .map_err(|e| crate::error::Error::Codec(format!("cache journal entry: {e}")))?;
            match op {
                JournalOp::Keys { ns, keys: more } => {
                    if keys
                        .as_ref()
                        .is_some_and(|(n, batch)| *n != ns || batch.len() >= REPLAY_KEYS_BATCH)
                    {
                        self.flush(&mut keys).await?;
                    }
                    keys.get_or_insert_with(|| (ns, Vec::new())).1.extend(more);
                }
                JournalOp::Tag { ns, tag } => {
                    self.flush(&mut keys).await?;
                    self.redis.invalidate_tag(&ns, &tag).await?;
                }
                JournalOp::Pattern { ns, pattern } => {
                    self.flush(&mut keys).await?;
                    self.redis.invalidate_pattern(&ns, &pattern).await?;
                }
            }
        }
        self.flush(&mut keys).await
    }

    fn seal(&self) -> BoxFuture<'static, Result<()>> {
        self.embedded.seal()
    }

    async fn after_close(&self, after: Closed) -> Result<()> {
        if let Some(hub) = self.hub.upgrade() {
            // L1s hold outage copies only after an outage, or replayed keys' old values
            // after a replay. The pass at startup (an earlier run's leftovers) usually
            // has neither, and clearing then would throw away the stale copies fail-safe
            // serves from.
            let replayed = self.replayed.swap(false, Ordering::AcqRel);
            if replayed || after == Closed::OutageEnded {
                hub.clear_all();
            }
        }
        self.embedded.forget_outage().await
    }
}

impl CacheRecovery {
    async fn flush(&self, keys: &mut Option<(String, Vec<String>)>) -> Result<()> {
        match keys.take() {
            Some((ns, keys)) => self.redis.delete(&ns, &keys).await.map(drop),
            None => Ok(()),
        }
    }
}
