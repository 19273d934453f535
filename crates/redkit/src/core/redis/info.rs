//! What Redis says about itself, for `health()`.

use std::time::Instant;

use serde::Serialize;

use super::RedisCore;
use crate::error::Result;

/// A summary of `INFO` and `CONFIG GET maxmemory-policy`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedisInfo {
    /// `redis_version`.
    pub version: Option<String>,
    /// `role` (master / slave).
    pub role: Option<String>,
    /// `used_memory` in bytes.
    pub used_memory: Option<u64>,
    /// Keys in the selected database.
    pub keys: Option<u64>,
    /// `maxmemory-policy`; `None` when the ACL user may not run CONFIG GET.
    pub maxmemory_policy: Option<String>,
    /// Whether the append-only file is on (`INFO persistence`: `aof_enabled`). Without it
    /// a Redis crash loses every write since the last snapshot.
    pub aof: Option<bool>,
    /// `appendfsync` (`always`, `everysec`, `no`) when the ACL user may run CONFIG GET.
    pub appendfsync: Option<String>,
    /// Whether RDB snapshots are configured (`CONFIG GET save`), when the user may ask.
    pub snapshots: Option<bool>,
    /// Round trip of one PING, in microseconds.
    pub latency_us: u64,
}

impl RedisCore {
    /// Asks Redis for its version, role, memory, key count, eviction policy and latency.
    pub async fn info(&self) -> Result<RedisInfo> {
        let started = Instant::now();
        let _: String = self.query("ping", &redis::cmd("PING")).await?;
        let latency_us = started.elapsed().as_micros() as u64;
        // The default sections (server, memory, persistence, replication, keyspace…); not
        // `everything`, whose command statistics cost Redis more than this needs.
        let text: String = self.query("info", &redis::cmd("INFO")).await?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_string())
        };
        let db = self
            .main
            .read()
            .expect("conn lock")
            .as_ref()
            .map_or(0, redis::aio::ConnectionLike::get_db);
        let keys = field(&format!("db{db}"))
            .and_then(|v| {
                v.split(',')
                    .find_map(|p| p.strip_prefix("keys=").and_then(|n| n.parse().ok()))
            })
            .or(Some(0));
        let policy: Option<Vec<String>> = self
            .query("config_get", redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"))
            .await
            .ok();
        // CONFIG GET is refused to ACL users without CONFIG; then these stay unknown.
        let config = |name: &'static str| async move {
            let reply: Option<Vec<String>> = self
                .query("config_get", redis::cmd("CONFIG").arg("GET").arg(name))
                .await
                .ok();
            reply.and_then(|v| v.get(1).cloned())
        };
        let snapshots = config("save").await.map(|s| !s.trim().is_empty());
        let appendfsync = config("appendfsync").await;
        Ok(RedisInfo {
            version: field("redis_version"),
            role: field("role"),
            used_memory: field("used_memory").and_then(|v| v.parse().ok()),
            keys,
            maxmemory_policy: policy.and_then(|v| v.get(1).cloned()),
            aof: field("aof_enabled").map(|v| v == "1"),
            appendfsync,
            snapshots,
            latency_us,
        })
    }
}
