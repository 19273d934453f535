//! Policies every instance shares: [`RateLimiter::publish`](super::RateLimiter::publish)
//! stores a policy where all instances see it — Redis, or the embedded store without Redis
//! (kept across restarts) — and each instance reloads the shared set when it changes: at
//! once when another instance announces it on the backplane, and every second in any case.
//!
//! Each stored definition carries the hybrid-logical stamp of its change; a removal leaves
//! a tombstone, so an older change never wins over a newer one. While Redis is away a
//! publish is served by the embedded store and journaled; on recovery it is written to
//! Redis unless a newer change is there already.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::policy::Policy;
use crate::core::embedded::EmbeddedStore;
use crate::core::journal::{Entry, pending};
use crate::core::redis::{LuaScript, RedisCore, ToRedisArgsDyn};
use crate::core::route::Recovery;
use crate::error::Result;

/// The backplane channel announcing shared-policy changes.
pub const CHANNEL: &str = "rk:rl:bp";

/// One stored definition: a policy, or the tombstone of a removed one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// Hybrid-logical stamp of the change.
    pub stamp: u64,
    /// `None`: removed.
    pub policy: Option<Policy>,
}

/// The shared definitions and a version that changes with any of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shared {
    pub version: String,
    pub defs: BTreeMap<String, Stored>,
}

/// Where shared policies live.
#[async_trait::async_trait]
pub(crate) trait PolicyStore: Send + Sync {
    /// Stores a change of `name` unless a newer one is there; returns whether it won.
    async fn put(&self, name: &str, stored: &Stored) -> Result<bool>;
    /// The version of the set (cheap: polled every second).
    async fn version(&self) -> Result<String>;
    /// Every definition, with the version.
    async fn all(&self) -> Result<Shared>;
}

static PUT: LuaScript = LuaScript::new("ratelimit_policy_put", include_str!("policy_put.lua"));

fn defs_key() -> &'static str {
    "rk:{rlp}:defs"
}

fn version_key() -> &'static str {
    "rk:{rlp}:ver"
}

/// Shared policies in Redis: one hash of JSON definitions and a version counter.
pub(crate) struct RedisPolicies {
    core: Arc<RedisCore>,
}

impl RedisPolicies {
    pub(crate) fn new(core: Arc<RedisCore>) -> Self {
        RedisPolicies { core }
    }
}

#[async_trait::async_trait]
impl PolicyStore for RedisPolicies {
    async fn put(&self, name: &str, stored: &Stored) -> Result<bool> {
        let json = serde_json::to_string(stored)?;
        let args: [&dyn ToRedisArgsDyn; 5] = [&name, &json, &stored.stamp, &CHANNEL, &name];
        let won: i64 = self.core.script(&PUT, &[&defs_key(), &version_key()], &args).await?;
        Ok(won == 1)
    }

    async fn version(&self) -> Result<String> {
        let v: Option<String> = self
            .core
            .query("ratelimit_policy_version", redis::cmd("GET").arg(version_key()))
            .await?;
        Ok(v.unwrap_or_default())
    }

    async fn all(&self) -> Result<Shared> {
        let mut pipe = redis::pipe();
        pipe.get(version_key()).hgetall(defs_key());
        let (version, raw): (Option<String>, BTreeMap<String, String>) =
            self.core.pipeline("ratelimit_policies", &pipe).await?;
        let mut defs = BTreeMap::new();
        for (name, json) in raw {
            match serde_json::from_str(&json) {
                Ok(stored) => {
                    defs.insert(name, stored);
                }
                Err(e) => tracing::warn!(policy = %name, error = %e, "ignoring an unreadable shared rate-limit policy"),
            }
        }
        Ok(Shared {
            version: version.unwrap_or_default(),
            defs,
        })
    }
}

/// Shared policies in SQLite: the whole set without Redis (one instance; kept across
/// restarts), and what an outage published.
pub(crate) struct EmbeddedPolicies {
    store: Arc<EmbeddedStore>,
}

impl EmbeddedPolicies {
    pub(crate) fn new(store: Arc<EmbeddedStore>) -> Self {
        EmbeddedPolicies { store }
    }
}

const SPACE: &str = "rl_policy";

#[async_trait::async_trait]
impl PolicyStore for EmbeddedPolicies {
    async fn put(&self, name: &str, stored: &Stored) -> Result<bool> {
        let (name, json, stamp, op) = (name.to_string(), serde_json::to_vec(stored)?, stored.stamp, pending());
        self.store
            .sql("ratelimit_policy_put", move |c| {
                let tx = c.transaction()?;
                let held: Option<Vec<u8>> = tx
                    .query_row(
                        "SELECT value FROM kv WHERE space = ?1 AND key = ?2",
                        params![SPACE, name],
                        |r| r.get(0),
                    )
                    .ok();
                let newer = held
                    .and_then(|v| serde_json::from_slice::<Stored>(&v).ok())
                    .is_some_and(|h| h.stamp >= stamp);
                if newer {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT OR REPLACE INTO kv (space, key, value) VALUES (?1, ?2, ?3)",
                    params![SPACE, name, json],
                )?;
                if let Some(op) = op {
                    op.record(&tx)?;
                }
                tx.commit()?;
                Ok(true)
            })
            .await
    }

    async fn version(&self) -> Result<String> {
        // A digest of the whole set: without Redis only this instance changes it.
        self.store
            .sql("ratelimit_policy_version", |c| {
                let mut stmt = c.prepare_cached("SELECT key, value FROM kv WHERE space = ?1 ORDER BY key")?;
                let rows = stmt.query_map([SPACE], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
                let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
                for row in rows {
                    let (name, value) = row?;
                    for b in name.bytes().chain([0]).chain(value) {
                        digest = (digest ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                    }
                }
                Ok(format!("{digest:016x}"))
            })
            .await
    }

    async fn all(&self) -> Result<Shared> {
        let version = self.version().await?;
        let defs = self
            .store
            .sql("ratelimit_policies", |c| {
                let mut stmt = c.prepare_cached("SELECT key, value FROM kv WHERE space = ?1")?;
                let rows = stmt.query_map([SPACE], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
                let mut defs = BTreeMap::new();
                for row in rows {
                    let (name, json) = row?;
                    if let Ok(stored) = serde_json::from_slice(&json) {
                        defs.insert(name, stored);
                    }
                }
                Ok(defs)
            })
            .await?;
        Ok(Shared { version, defs })
    }
}

/// A publish made while Redis was away.
#[derive(Serialize, Deserialize)]
pub(crate) struct Published {
    pub name: String,
    pub stored: Stored,
}

/// Writes an outage's publishes to Redis (unless newer ones are there).
pub(crate) struct PolicyRecovery {
    pub redis: Arc<RedisPolicies>,
}

#[async_trait::async_trait]
impl Recovery for PolicyRecovery {
    fn capability(&self) -> &'static str {
        "ratelimit_policy"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            let p: Published = serde_json::from_slice(&e.op)?;
            self.redis.put(&p.name, &p.stored).await?;
        }
        Ok(())
    }
}
