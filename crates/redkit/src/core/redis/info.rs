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
    /// Whether RDB or AOF persistence is on (from `INFO persistence`).
    pub persistence: Option<bool>,
    /// Round trip of one PING, in microseconds.
    pub latency_us: u64,
}

impl RedisCore {
    /// Asks Redis for its version, role, memory, key count, eviction policy and latency.
    pub async fn info(&self) -> Result<RedisInfo> {
        let started = Instant::now();
        let _: String = self.query("ping", &redis::cmd("PING")).await?;
        let latency_us = started.elapsed().as_micros() as u64;
        let text: String = self.query("info", redis::cmd("INFO").arg("everything")).await?;
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
        let aof_on = field("aof_enabled").map(|v| v == "1");
        // `CONFIG GET save` is refused to ACL users without CONFIG; then persistence is unknown.
        let save: Option<Vec<String>> = self
            .query("config_get", redis::cmd("CONFIG").arg("GET").arg("save"))
            .await
            .ok();
        let rdb_on = save.and_then(|v| v.get(1).map(|s| !s.trim().is_empty()));
        Ok(RedisInfo {
            version: field("redis_version"),
            role: field("role"),
            used_memory: field("used_memory").and_then(|v| v.parse().ok()),
            keys,
            maxmemory_policy: policy.and_then(|v| v.get(1).cloned()),
            persistence: match (rdb_on, aof_on) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            latency_us,
        })
    }
}
