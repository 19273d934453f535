//! The atomic operations rate limiting needs, on Redis (Lua, Redis's clock) and embedded.

use super::algorithms::{Spec, Verdict};
use super::policy::Algorithm;
use crate::error::Result;

/// One limiter step, as the backends see it.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    /// The policy's name.
    pub policy: &'a str,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Its numbers at full share.
    pub spec: Spec,
    /// Its numbers at the fallback share (used by the embedded backend when it stands in
    /// for Redis).
    pub fallback_spec: Spec,
}

/// A backend's decision, and whether it was made locally in fallback.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The algorithm's verdict.
    pub verdict: Verdict,
    /// Made by the in-process limiter standing in for Redis.
    pub local_fallback: bool,
}

/// Rate-limit operations; each is atomic per key.
#[async_trait::async_trait]
pub trait RateLimitBackend: Send + Sync {
    /// Counts `cost` against `key` and decides.
    async fn check(&self, step: &Step<'_>, key: &str, cost: u64) -> Result<Outcome>;
    /// Takes permit `id` of a concurrency policy.
    async fn acquire(&self, step: &Step<'_>, key: &str, id: &str) -> Result<Outcome>;
    /// Gives permit `id` back.
    async fn release(&self, step: &Step<'_>, key: &str, id: &str) -> Result<bool>;
}
