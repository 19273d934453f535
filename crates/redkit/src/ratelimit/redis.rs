//! Rate limits on Redis: one Lua script per algorithm, clocked by Redis `TIME`, one key
//! per limited key (`rk:{rl:POLICY:KEY}`, its own hash tag, so keys spread over a cluster).

use std::sync::Arc;

use super::algorithms::Verdict;
use super::backend::{Outcome, RateLimitBackend, Step};
use super::policy::Algorithm;
use crate::core::keys::encode;
use crate::core::redis::{LuaScript, RedisCore};
use crate::error::Result;

static GCRA: LuaScript = LuaScript::new("ratelimit_gcra", include_str!("gcra.lua"));
static TOKEN_BUCKET: LuaScript = LuaScript::new("ratelimit_token_bucket", include_str!("token_bucket.lua"));
static SLIDING_WINDOW: LuaScript = LuaScript::new("ratelimit_sliding_window", include_str!("sliding_window.lua"));
static SLIDING_LOG: LuaScript = LuaScript::new("ratelimit_sliding_log", include_str!("sliding_log.lua"));
static FIXED_WINDOW: LuaScript = LuaScript::new("ratelimit_fixed_window", include_str!("fixed_window.lua"));
static ACQUIRE: LuaScript = LuaScript::new("ratelimit_acquire", include_str!("acquire.lua"));
static RELEASE: LuaScript = LuaScript::new("ratelimit_release", include_str!("release.lua"));

/// Rate limits on Redis.
pub struct RedisRateLimits {
    core: Arc<RedisCore>,
}

impl RedisRateLimits {
    pub(crate) fn new(core: Arc<RedisCore>) -> Self {
        RedisRateLimits { core }
    }
}

/// `rk:{rl:POLICY:KEY}` with both names encoded, so `login` + `user:42` and `login:user` +
/// `42` are different counters and no name can move the hash tag.
fn key_of(policy: &str, key: &str) -> String {
    format!("rk:{{rl:{}:{}}}", encode(policy), encode(key))
}

fn verdict(reply: (i64, i64, i64, i64)) -> Outcome {
    let (allowed, remaining, reset, retry) = reply;
    Outcome {
        verdict: Verdict {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            reset_after_us: reset.max(0) as u64,
            retry_after_us: retry.max(0) as u64,
        },
        local_fallback: false,
    }
}

#[async_trait::async_trait]
impl RateLimitBackend for RedisRateLimits {
    async fn check(&self, step: &Step<'_>, key: &str, cost: u64) -> Result<Outcome> {
        let script = match step.algorithm {
            Algorithm::Gcra => &GCRA,
            Algorithm::TokenBucket => &TOKEN_BUCKET,
            Algorithm::SlidingWindow => &SLIDING_WINDOW,
            Algorithm::SlidingLog => &SLIDING_LOG,
            Algorithm::FixedWindow => &FIXED_WINDOW,
            Algorithm::Concurrency => unreachable!("concurrency policies use acquire"),
        };
        let s = step.spec;
        // Only the sliding log stores per-call members; the others need no id.
        let call_id = match step.algorithm {
            Algorithm::SlidingLog => crate::core::random::token(),
            _ => String::new(),
        };
        let reply = self
            .core
            .script(
                script,
                &[&key_of(step.policy, key)],
                &[&s.limit, &s.period_us, &s.burst, &cost, &call_id],
            )
            .await?;
        Ok(verdict(reply))
    }

    async fn acquire(&self, step: &Step<'_>, key: &str, id: &str) -> Result<Outcome> {
        let s = step.spec;
        let reply = self
            .core
            .script(
                &ACQUIRE,
                &[&key_of(step.policy, key)],
                &[&s.limit, &s.period_us, &s.burst, &1u64, &id],
            )
            .await?;
        Ok(verdict(reply))
    }

    async fn release(&self, step: &Step<'_>, key: &str, id: &str) -> Result<bool> {
        let n: i64 = self.core.script(&RELEASE, &[&key_of(step.policy, key)], &[&id]).await?;
        Ok(n == 1)
    }
}
