//! The health snapshot: who is serving, why, and how each store is doing.
//!
//! [`Redkit::health`](crate::Redkit::health) builds a [`Health`]; the server returns it as
//! JSON from `GET /health` and `GET /ready`. It never waits on a Redis that the breaker has
//! given up on: Redis details are only asked for while the breaker is closed.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::config::RedisTarget;
use crate::core::breaker::BreakerSnapshot;
use crate::core::embedded::EmbeddedSnapshot;
use crate::core::journal::DeadLetters;
use crate::core::redis::RedisInfo;
use crate::core::route::{FallbackPolicy, Mode, Route};
use crate::stats::{LastError, OpSnapshot};

/// Overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything configured is serving.
    Ok,
    /// Redis is away; the embedded store serves every capability.
    Degraded,
    /// Redis is away and at least one capability fails closed.
    Unavailable,
}

/// Everything `health()` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Overall verdict.
    pub status: Status,
    /// Who is serving.
    pub mode: Mode,
    /// Seconds since this instance started.
    pub uptime_s: u64,
    /// Circuit breaker (absent in `embedded` mode).
    pub breaker: Option<BreakerSnapshot>,
    /// Redis (absent when not configured).
    pub redis: Option<RedisHealth>,
    /// The embedded store.
    pub embedded: EmbeddedHealth,
    /// Journaled operations waiting for Redis, per capability.
    pub journal_pending: BTreeMap<String, u64>,
    /// Journaled operations Redis refused for good (kept for an operator), per capability.
    pub journal_dead_letters: BTreeMap<String, DeadLetters>,
    /// Registered capabilities and whether they serve now.
    pub capabilities: Vec<CapabilityHealth>,
    /// Each capability's own statistics (cache hit ratios, …), by capability.
    pub stats: BTreeMap<&'static str, serde_json::Value>,
    /// Things an operator should look at.
    pub warnings: Vec<String>,
}

/// Redis's part of [`Health`].
#[derive(Debug, Clone, Serialize)]
pub struct RedisHealth {
    /// `standalone`, `sentinel` or `cluster`.
    pub deployment: &'static str,
    /// Whether Redis answered just now.
    pub connected: bool,
    /// What Redis said about itself (only asked while the breaker is closed).
    pub info: Option<RedisInfo>,
    /// Why `info` is missing, if it is.
    pub error: Option<String>,
    /// The latest failure to connect.
    pub last_connect_error: Option<LastError>,
    /// Per-operation statistics.
    pub ops: BTreeMap<String, OpSnapshot>,
}

/// The embedded store's part of [`Health`].
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddedHealth {
    /// Path, size and volatile usage.
    #[serde(flatten)]
    pub store: EmbeddedSnapshot,
    /// Per-operation statistics.
    pub ops: BTreeMap<String, OpSnapshot>,
}

/// One capability's part of [`Health`].
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityHealth {
    /// Its name.
    pub name: &'static str,
    /// What it does in fallback.
    pub fallback: FallbackPolicy,
    /// Whether it serves now.
    pub available: bool,
}

pub(crate) async fn collect(route: &Route, started: Instant) -> Health {
    let mode = route.mode();
    let capabilities: Vec<CapabilityHealth> = route
        .capabilities()
        .into_iter()
        .map(|(name, fallback)| CapabilityHealth {
            name,
            fallback,
            available: mode != Mode::Fallback || fallback == FallbackPolicy::Serve,
        })
        .collect();
    let mut warnings = Vec::new();
    let redis = match route.redis() {
        None => None,
        Some(core) => {
            let (info, error) = if mode == Mode::Redis {
                match core.info().await {
                    Ok(i) => (Some(i), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            } else {
                (
                    None,
                    Some("the circuit breaker is open; redis is not asked".to_string()),
                )
            };
            if let Some(info) = &info {
                warnings.extend(redis_warnings(info));
            }
            Some(RedisHealth {
                deployment: match &core.config().target {
                    RedisTarget::Standalone(_) => "standalone",
                    RedisTarget::Sentinel { .. } => "sentinel",
                    RedisTarget::Cluster(_) => "cluster",
                },
                connected: info.is_some(),
                info,
                error,
                last_connect_error: core.last_connect_error(),
                ops: core.stats().snapshot(),
            })
        }
    };
    let journal_pending = route.journal().pending().await.unwrap_or_else(|e| {
        warnings.push(format!("cannot read the journal: {e}"));
        BTreeMap::new()
    });
    let journal_dead_letters = route.journal().dead_letters().await.unwrap_or_else(|e| {
        warnings.push(format!("cannot read the dead-lettered journal operations: {e}"));
        BTreeMap::new()
    });
    for (capability, dead) in &journal_dead_letters {
        warnings.push(format!(
            "{} {capability} operation(s) made during an outage were refused by redis and dead-lettered; last error: {}",
            dead.count, dead.last_error
        ));
    }
    let status = match mode {
        Mode::Fallback if capabilities.iter().any(|c| !c.available) => Status::Unavailable,
        Mode::Fallback => Status::Degraded,
        Mode::Redis | Mode::Embedded => Status::Ok,
    };
    Health {
        status,
        mode,
        uptime_s: started.elapsed().as_secs(),
        breaker: route.redis().map(|_| route.breaker().snapshot()),
        redis,
        embedded: EmbeddedHealth {
            store: route.embedded().snapshot(),
            ops: route.embedded().stats().snapshot(),
        },
        journal_pending,
        journal_dead_letters,
        capabilities,
        stats: route.capability_stats(),
        warnings,
    }
}

fn redis_warnings(info: &RedisInfo) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(policy) = info.maxmemory_policy.as_deref()
        && policy != "noeviction"
    {
        warnings.push(format!(
            "redis maxmemory-policy is {policy}: under memory pressure Redis may evict redkit's durable data \
             (jobs, sessions); use noeviction"
        ));
    }
    if info.aof == Some(false) {
        let snapshots = if info.snapshots == Some(true) {
            "only snapshots: a Redis crash loses every write since the last one"
        } else {
            "no persistence: a Redis restart loses everything"
        };
        warnings.push(format!(
            "redis append-only file is off ({snapshots} — sessions, queued jobs, logouts); set appendonly yes"
        ));
    }
    warnings
}
