//! Shared test support: a tiny key-value capability built the way every redkit capability
//! is (a backend trait, a Redis and an embedded implementation, a `Routed` front, a
//! `Recovery`), plus configs with short timeouts and a polling helper.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redkit::config::{BreakerConfig, RedisConfig};
use redkit::core::embedded::EmbeddedStore;
use redkit::core::journal::{Entry, pending};
use redkit::core::redis::{LuaScript, RedisCore};
use redkit::{Config, FallbackPolicy, Recovery, Redkit, Result, Routed};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);

/// A response timeout for tests that tell a call that paid one from a call that did not by how
/// long it took: well above what a call served without Redis may take on a slow host. A killed
/// Redis refuses at once, so an outage is noticed as fast with it.
pub const PATIENT: Duration = Duration::from_secs(2);

/// [`config`] with Redis at `redis_url` and the [`PATIENT`] response timeout.
pub fn patient_config(redis_url: String, data_dir: &Path) -> Config {
    let mut c = config(Some(redis_url), data_dir);
    c.redis.as_mut().expect("redis is configured").response_timeout = PATIENT;
    c
}

/// Calls of `ops` that reached Redis: each is recorded when it ends, whether Redis answered,
/// failed or timed out (recovery probes are not).
pub fn redis_calls(redkit: &Redkit, ops: &[&str]) -> u64 {
    let counted = redkit.route().redis().expect("redis is configured").stats().snapshot();
    ops.iter().filter_map(|op| counted.get(*op)).map(|op| op.count).sum()
}

/// A config with short timeouts so faults are noticed quickly in tests.
pub fn config(redis_url: Option<String>, data_dir: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        breaker: BreakerConfig {
            failure_threshold: 3,
            probe_min: Duration::from_millis(20),
            probe_max: Duration::from_millis(200),
            ..BreakerConfig::default()
        },
        ..Config::default()
    };
    c.redis = redis_url.map(|url| {
        let mut r = RedisConfig::new(url);
        r.response_timeout = RESPONSE_TIMEOUT;
        r.connect_timeout = Duration::from_millis(250);
        r.reconnect.min = Duration::from_millis(10);
        r.reconnect.max = Duration::from_millis(100);
        r.reconnect.attempts = 2;
        r.loading_wait = Duration::from_secs(30);
        r
    });
    c
}

/// Polls `check` until it returns true or `limit` passes; panics with `what` on timeout.
pub async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[async_trait::async_trait]
pub trait KvBackend: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<String>>;
    async fn set(&self, key: &str, value: &str) -> Result<()>;
    async fn del(&self, key: &str) -> Result<bool>;
    async fn incr(&self, key: &str, by: i64) -> Result<i64>;
}

pub const KEY_PREFIX: &str = "rk:test:";
static INCR: LuaScript = LuaScript::new("test_incr", include_str!("incr.lua"));

pub struct RedisKv {
    core: Arc<RedisCore>,
}

#[async_trait::async_trait]
impl KvBackend for RedisKv {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        self.core
            .query("test_get", redis::cmd("GET").arg(format!("{KEY_PREFIX}{key}")))
            .await
    }
    async fn set(&self, key: &str, value: &str) -> Result<()> {
        self.core
            .query(
                "test_set",
                redis::cmd("SET").arg(format!("{KEY_PREFIX}{key}")).arg(value),
            )
            .await
    }
    async fn del(&self, key: &str) -> Result<bool> {
        let n: i64 = self
            .core
            .query("test_del", redis::cmd("DEL").arg(format!("{KEY_PREFIX}{key}")))
            .await?;
        Ok(n > 0)
    }
    async fn incr(&self, key: &str, by: i64) -> Result<i64> {
        self.core.script(&INCR, &[&format!("{KEY_PREFIX}{key}")], &[&by]).await
    }
}

pub struct EmbeddedKv {
    store: Arc<EmbeddedStore>,
}

#[async_trait::async_trait]
impl KvBackend for EmbeddedKv {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.store
            .sql("test_get", move |c| {
                Ok(
                    c.query_row("SELECT value FROM kv WHERE space = 'test' AND key = ?1", [key], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })
                    .optional()?
                    .map(|v| String::from_utf8_lossy(&v).into_owned()),
                )
            })
            .await
    }
    async fn set(&self, key: &str, value: &str) -> Result<()> {
        let (key, value, op) = (key.to_string(), value.as_bytes().to_vec(), pending());
        self.store
            .sql("test_set", move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "INSERT OR REPLACE INTO kv (space, key, value) VALUES ('test', ?1, ?2)",
                    params![key, value],
                )?;
                // In an outage, the journal entry goes in with the write, or not at all.
                if let Some(op) = op {
                    op.record(&tx)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }
    async fn del(&self, key: &str) -> Result<bool> {
        let (key, op) = (key.to_string(), pending());
        self.store
            .sql("test_del", move |c| {
                let tx = c.transaction()?;
                let deleted = tx.execute("DELETE FROM kv WHERE space = 'test' AND key = ?1", [key])? > 0;
                if let Some(op) = op {
                    op.record(&tx)?;
                }
                tx.commit()?;
                Ok(deleted)
            })
            .await
    }
    async fn incr(&self, key: &str, by: i64) -> Result<i64> {
        let key = key.to_string();
        self.store
            .sql("test_incr", move |c| {
                let tx = c.transaction()?;
                let old: i64 = tx
                    .query_row("SELECT value FROM kv WHERE space = 'test' AND key = ?1", [&key], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })
                    .optional()?
                    .map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
                let new = old + by;
                tx.execute(
                    "INSERT OR REPLACE INTO kv (space, key, value) VALUES ('test', ?1, ?2)",
                    params![key, new.to_string().into_bytes()],
                )?;
                tx.commit()?;
                Ok(new)
            })
            .await
    }
}

#[derive(Serialize, Deserialize)]
enum Op {
    Set(String, String),
    Del(String),
}

struct KvRecovery {
    capability: &'static str,
    redis: RedisKv,
}

#[async_trait::async_trait]
impl Recovery for KvRecovery {
    fn capability(&self) -> &'static str {
        self.capability
    }
    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        let mut pipe = redis::pipe();
        for entry in entries {
            match serde_json::from_slice(&entry.op)? {
                Op::Set(k, v) => pipe.set(format!("{KEY_PREFIX}{k}"), v).ignore(),
                Op::Del(k) => pipe.del(format!("{KEY_PREFIX}{k}")).ignore(),
            };
        }
        self.redis.core.pipeline("test_replay", &pipe).await
    }
}

/// The test capability's front: never asks which store serves.
#[derive(Clone)]
pub struct Kv {
    routed: Routed<dyn KvBackend>,
}

impl Kv {
    pub fn new(redkit: &Redkit, capability: &'static str, policy: FallbackPolicy) -> Self {
        let route = redkit.route();
        let redis = route
            .redis()
            .map(|core| Arc::new(RedisKv { core: core.clone() }) as Arc<dyn KvBackend>);
        if let Some(core) = route.redis() {
            route.register_recovery(Arc::new(KvRecovery {
                capability,
                redis: RedisKv { core: core.clone() },
            }));
        }
        let embedded = Arc::new(EmbeddedKv {
            store: route.embedded().clone(),
        });
        Kv {
            routed: route.routed(capability, policy, redis, embedded),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        self.routed.read(|b| b.get(key)).await
    }
    pub async fn set(&self, key: &str, value: &str) -> Result<()> {
        let entry = || serde_json::to_vec(&Op::Set(key.into(), value.into())).unwrap();
        self.routed.write(entry, |b| b.set(key, value)).await
    }
    pub async fn del(&self, key: &str) -> Result<bool> {
        let entry = || serde_json::to_vec(&Op::Del(key.into())).unwrap();
        self.routed.write(entry, |b| b.del(key)).await
    }
    pub async fn incr(&self, key: &str, by: i64) -> Result<i64> {
        self.routed.call(|b| b.incr(key, by)).await
    }
}

/// A `Redkit` and what keeps it alive (its data dir, and the Redis it talks to).
pub struct Harness {
    pub redkit: Redkit,
    pub redis: Option<redkit_testkit::RedisServer>,
    pub dir: tempfile::TempDir,
}

/// A `Redkit` on a fresh `redis-server`.
pub async fn on_redis() -> Harness {
    let redis = redkit_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    Harness {
        redkit,
        redis: Some(redis),
        dir,
    }
}

/// A `Redkit` on the embedded store only.
pub async fn on_embedded() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    Harness {
        redkit,
        redis: None,
        dir,
    }
}

/// A `Redkit` whose Redis was killed: the embedded store serves as the fallback.
pub async fn on_fallback() -> Harness {
    let mut h = on_redis().await;
    h.redis.as_mut().expect("started with redis").kill();
    let kv = Kv::new(&h.redkit, "trip", FallbackPolicy::Serve);
    eventually(Duration::from_secs(5), "fallback", async || {
        let _ = kv.get("trip").await;
        h.redkit.mode() == redkit::Mode::Fallback
    })
    .await;
    h
}

/// Two instances (separate data dirs) on one Redis.
pub async fn two_instances(redis: &redkit_testkit::RedisServer) -> (Harness, Harness) {
    let mut pair = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
        pair.push(Harness {
            redkit,
            redis: None,
            dir,
        });
    }
    let b = pair.pop().unwrap();
    (pair.pop().unwrap(), b)
}
