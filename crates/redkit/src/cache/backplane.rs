//! Coherence across instances, and the cache's way back after an outage.
//!
//! **Backplane.** Every change an instance makes in Redis is announced on the pub/sub
//! channel [`CHANNEL`] in the same round trip, tagged with the instance's random id. Every
//! instance subscribes; a message from another instance drops the named keys (or every key
//! of a tag or pattern) from its L1. When the subscription breaks, or is (re)established,
//! every L1 is cleared: invalidations may have been missed in between.
//!
//! Pub/sub was chosen over RESP3 client-side tracking: it works the same on standalone,
//! Sentinel and Cluster (a cluster PUBLISH reaches every node), needs no RESP3, and an
//! instance's own messages are filtered by id rather than by tracking-redirect plumbing
//! that has to be re-established on every reconnect of the multiplexed connection.
//!
//! **Recovery.** In fallback mode every write (set, delete, tag or pattern invalidation) is
//! journaled; on recovery the journal is replayed to Redis (which also announces it on the
//! backplane, so other instances drop what they held), and then every L1 of this instance
//! is cleared, since other instances may have changed Redis while this one was cut off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::backend::{CacheBackend, SetItem};
use super::embedded::EmbeddedCache;
use super::l1::L1Sink;
use super::redis::RedisCache;
use super::stats::CacheStatsSnapshot;
use crate::core::redis::RedisCore;
use crate::core::route::{Recovery, Route, StatsProvider};
use crate::error::Result;
use crate::stats::now_ms;

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

/// A write made in fallback mode, to be replayed to Redis.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JournalOp {
    Set {
        ns: String,
        items: Vec<SetItem>,
        at_ms: u64,
    },
    Delete {
        ns: String,
        keys: Vec<String>,
    },
    Tag {
        ns: String,
        tag: String,
    },
    Pattern {
        ns: String,
        pattern: String,
    },
}

impl JournalOp {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("journal ops serialize")
    }
}

/// Shared by every cache of one `Redkit`: backends, backplane subscription, recovery.
pub(crate) struct CacheHub {
    pub instance: Arc<str>,
    pub route: Arc<Route>,
    pub redis: Option<Arc<RedisCache>>,
    pub embedded: Arc<EmbeddedCache>,
    members: Mutex<Vec<Weak<dyn Member>>>,
    subscribed: AtomicBool,
    subscriber: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for CacheHub {
    fn drop(&mut self) {
        if let Some(task) = self.subscriber.lock().expect("hub lock").take() {
            task.abort();
        }
    }
}

impl CacheHub {
    pub fn new(route: &Arc<Route>) -> Arc<Self> {
        let instance: Arc<str> = Arc::from(crate::core::random::token());
        let redis = route
            .redis()
            .map(|core| Arc::new(RedisCache::new(core.clone(), instance.clone())));
        let hub = Arc::new(CacheHub {
            instance,
            route: route.clone(),
            redis: redis.clone(),
            embedded: Arc::new(EmbeddedCache::new(route.embedded().clone())),
            members: Mutex::new(Vec::new()),
            subscribed: AtomicBool::new(false),
            subscriber: Mutex::new(None),
        });
        let provider: Weak<dyn StatsProvider> = Arc::downgrade(&hub) as _;
        route.register_stats(provider);
        if let (Some(redis), Some(core)) = (redis, route.redis()) {
            route.register_recovery(Arc::new(CacheRecovery {
                redis,
                hub: Arc::downgrade(&hub),
            }));
            let task = route.spawn(subscribe(Arc::downgrade(&hub), core.clone()));
            *hub.subscriber.lock().expect("hub lock") = Some(task);
        }
        hub
    }

    pub fn join(&self, member: Weak<dyn Member>) {
        let mut members = self.members.lock().expect("hub lock");
        members.retain(|m| m.strong_count() > 0);
        members.push(member);
    }

    fn members(&self) -> Vec<Arc<dyn Member>> {
        self.members
            .lock()
            .expect("hub lock")
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Whether the backplane subscription is live (always false without Redis).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn deliver(&self, message: Message) {
        if message.i == *self.instance {
            return;
        }
        for m in self.members() {
            if m.namespace() == message.ns {
                m.l1().apply(&message.op);
            }
        }
    }

    fn clear_all(&self) {
        for m in self.members() {
            m.l1().clear();
        }
    }
}

impl StatsProvider for CacheHub {
    fn capability(&self) -> &'static str {
        "cache"
    }

    fn snapshot(&self) -> serde_json::Value {
        let caches: Vec<CacheStatsSnapshot> = self.members().iter().map(|m| m.stats()).collect();
        serde_json::json!({ "backplane_subscribed": self.is_subscribed(), "caches": caches })
    }
}

async fn subscribe(hub: Weak<CacheHub>, core: Arc<RedisCore>) {
    const MIN: Duration = Duration::from_millis(50);
    let mut delay = MIN;
    loop {
        if let Ok(mut pubsub) = core.pubsub().await
            && pubsub.subscribe(CHANNEL).await.is_ok()
        {
            let Some(h) = hub.upgrade() else { return };
            // Whatever happened before this point may have been missed.
            h.clear_all();
            h.subscribed.store(true, Ordering::Release);
            drop(h);
            delay = MIN;
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Some(h) = hub.upgrade() else { return };
                match serde_json::from_slice::<Message>(msg.get_payload_bytes()) {
                    Ok(m) => h.deliver(m),
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed cache backplane message"),
                }
            }
            let Some(h) = hub.upgrade() else { return };
            h.subscribed.store(false, Ordering::Release);
            h.clear_all();
            tracing::info!("cache backplane subscription lost; L1 cleared, resubscribing");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

struct CacheRecovery {
    redis: Arc<RedisCache>,
    hub: Weak<CacheHub>,
}

/// Records per replayed set script call.
const REPLAY_SET_BATCH: usize = 256;

impl CacheRecovery {
    async fn flush(&self, sets: &mut Option<(String, Vec<SetItem>)>) -> Result<()> {
        match sets.take() {
            Some((ns, items)) => self.redis.set_many(&ns, &items).await,
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Recovery for CacheRecovery {
    fn capability(&self) -> &'static str {
        "cache"
    }

    async fn replay(&self, entries: &[Vec<u8>]) -> Result<()> {
        // Consecutive sets of one namespace go to Redis in one script call; anything else
        // flushes them first, so the order of writes is kept.
        let mut sets: Option<(String, Vec<SetItem>)> = None;
        for entry in entries {
            let op: JournalOp = match rmp_serde::from_slice(entry) {
                Ok(op) => op,
                Err(e) => {
                    // Never let one unreadable entry keep Redis out of service forever.
                    tracing::error!(error = %e, "skipping an unreadable cache journal entry");
                    continue;
                }
            };
            match op {
                JournalOp::Set { ns, items, at_ms } => {
                    let elapsed = now_ms().saturating_sub(at_ms);
                    for item in items {
                        if item.ttl_ms <= elapsed {
                            // Written and expired during the outage: what Redis holds is older.
                            self.flush(&mut sets).await?;
                            self.redis.delete(&ns, &[item.key]).await?;
                            continue;
                        }
                        if sets
                            .as_ref()
                            .is_some_and(|(n, batch)| *n != ns || batch.len() >= REPLAY_SET_BATCH)
                        {
                            self.flush(&mut sets).await?;
                        }
                        let item = SetItem {
                            ttl_ms: item.ttl_ms - elapsed,
                            ..item
                        };
                        sets.get_or_insert_with(|| (ns.clone(), Vec::new())).1.push(item);
                    }
                }
                JournalOp::Delete { ns, keys } => {
                    self.flush(&mut sets).await?;
                    self.redis.delete(&ns, &keys).await?;
                }
                JournalOp::Tag { ns, tag } => {
                    self.flush(&mut sets).await?;
                    self.redis.invalidate_tag(&ns, &tag).await?;
                }
                JournalOp::Pattern { ns, pattern } => {
                    self.flush(&mut sets).await?;
                    self.redis.invalidate_pattern(&ns, &pattern).await?;
                }
            }
        }
        self.flush(&mut sets).await
    }

    async fn after_replay(&self) -> Result<()> {
        if let Some(hub) = self.hub.upgrade() {
            hub.clear_all();
        }
        Ok(())
    }
}
