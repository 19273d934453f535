//! # Rate limits: exact decisions, shared across instances, kept during outages
//!
//! A [`RateLimiter`] holds named [`Policy`]s and answers [`RateLimiter::check`] with a
//! [`Decision`]: allowed, limit, remaining, reset after, retry after — computed by the
//! algorithm, not estimated. On Redis each algorithm is one atomic Lua script clocked by
//! Redis `TIME`, so every instance shares one count per key exactly. Algorithms: GCRA (the
//! default), token bucket, sliding-window counter, sliding log, fixed window, and a
//! concurrency limiter ([`RateLimiter::acquire`], permits released on drop and reclaimed
//! when their lease runs out).
//!
//! Per policy: allow-list (never limited), deny-list (always refused), shadow mode (decide
//! and count, never refuse), and a per-call cost. Keys known to be blocked are remembered
//! in process until their retry time, so a client hammering a refused key costs no Redis
//! round trip.
//!
//! **Fallback.** While Redis is away an in-process limiter decides, enforcing each policy's
//! `fallback_share` of its limits (e.g. `1 / instances`); decisions say so, and
//! `health()` shows it. Nothing is replayed: counts simply restart on Redis.
//!
//! [`layer::RateLimitLayer`] puts a policy in front of any tower/axum service with the IETF
//! `RateLimit-Policy` / `RateLimit` fields and `Retry-After`.
//!
//! ```no_run
//! # async fn demo(redkit: redkit::Redkit) -> redkit::Result<()> {
//! use std::time::Duration;
//! use redkit::ratelimit::{Algorithm, Policy};
//! let limits = redkit.rate_limiter();
//! limits.define(Policy::new("login", Algorithm::Gcra, 5, Duration::from_secs(60)))?;
//! let d = limits.check("login", "user:42", 1).await?;
//! if !d.allowed {
//!     println!("retry in {:?}", d.retry_after);
//! }
//! # Ok(()) }
//! ```

pub mod algorithms;
mod backend;
pub mod embedded;
pub mod layer;
mod policy;
mod redis;
mod shared;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use backend::{Outcome, RateLimitBackend, Step};
pub use embedded::{Clock, EmbeddedRateLimits, MAX_KEYS as MAX_IN_PROCESS_KEYS, ManualClock, SystemClock};
pub use policy::{Algorithm, MAX_LIMIT, MAX_LOG_LIMIT, MAX_PERIOD, Policy};

use crate::core::route::{FallbackPolicy, Mode, Route, Routed, StatsProvider};
use crate::error::{Error, Result};
use algorithms::Verdict;

/// Why a decision came out as it did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The shared limiter (Redis, or the embedded store when no Redis is configured).
    Limiter,
    /// The in-process fallback limiter, while Redis is away.
    Fallback,
    /// Remembered refusal: the key is blocked until its retry time.
    Blocked,
    /// The key is on the allow list.
    AllowList,
    /// The key is on the deny list.
    DenyList,
}

/// The answer to one check.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Whether to let the request through.
    pub allowed: bool,
    /// The policy.
    pub policy: String,
    /// The policy's limit (per period; permits for concurrency).
    pub limit: u64,
    /// The policy's period in seconds (for the `RateLimit-Policy` field).
    pub window_s: u64,
    /// Units still allowed now.
    pub remaining: u64,
    /// Time until the limiter is back to full capacity (milliseconds in JSON:
    /// `reset_after_ms`).
    #[serde(serialize_with = "as_ms", rename = "reset_after_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub reset_after: Duration,
    /// When refused: time until a request of the same cost will be allowed
    /// (milliseconds in JSON: `retry_after_ms`).
    #[serde(serialize_with = "opt_as_ms", rename = "retry_after_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub retry_after: Option<Duration>,
    /// Shadow mode: the limiter would have refused, but the request was allowed.
    pub shadow_denied: bool,
    /// What decided.
    pub basis: Basis,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn opt_as_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

/// Counters of one policy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Default, Serialize)]
pub struct PolicyStats {
    /// Requests allowed.
    pub allowed: u64,
    /// Requests refused.
    pub denied: u64,
    /// Refusals not enforced (shadow mode).
    pub shadow_denied: u64,
    /// Decisions made by the in-process fallback limiter.
    pub fallback_decisions: u64,
    /// Refusals answered from the blocked-key cache (no round trip).
    pub blocked_cache_hits: u64,
}

struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    shadow_denied: AtomicU64,
    fallback: AtomicU64,
    blocked: AtomicU64,
    /// Registered once per policy, so a decision costs no label allocation.
    exported: [metrics::Counter; 3],
}

impl Counters {
    fn new(policy: &str) -> Self {
        let counter = |outcome: &'static str| metrics::counter!("redkit_ratelimit_decisions_total", "policy" => policy.to_string(), "outcome" => outcome);
        Counters {
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            shadow_denied: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            exported: [counter("allowed"), counter("denied"), counter("shadow_denied")],
        }
    }
}

struct Defined {
    policy: Policy,
    counters: Counters,
    /// Stamp of the shared change it came from; `None`: defined in this process only.
    shared: Option<u64>,
}

/// Rate limiting of one `Redkit`. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    routed: Routed<dyn RateLimitBackend>,
    in_process: Arc<EmbeddedRateLimits>,
    /// Where published policies live (Redis, or the embedded store).
    shared: Routed<dyn shared::PolicyStore>,
    /// The version of the shared set last loaded.
    shared_version: std::sync::Mutex<Option<String>>,
    /// Rings when another instance announces a change.
    shared_changed: tokio::sync::Notify,
    policies: RwLock<BTreeMap<String, Arc<Defined>>>,
    /// Stamps of policies unpublished here that a load of the shared set has not shown
    /// removed yet: a load that read the set before the removal must not bring them back.
    unpublished: std::sync::Mutex<BTreeMap<String, u64>>,
    /// (policy, key) → the refusal, until its retry time.
    blocked: moka::sync::Cache<(String, String), (Decision, Instant)>,
}

impl Inner {
    fn install(&self, policy: Policy, shared: Option<u64>) {
        let name = policy.name.clone();
        let defined = Arc::new(Defined {
            counters: Counters::new(&name),
            policy,
            shared,
        });
        self.policies
            .write()
            .expect("policies lock")
            .insert(name.clone(), defined);
        self.forget_refusals(name);
    }

    fn uninstall(&self, name: &str) {
        self.policies.write().expect("policies lock").remove(name);
        self.forget_refusals(name.to_string());
    }

    /// Refusals remembered under an old definition no longer hold.
    fn forget_refusals(&self, name: String) {
        self.blocked
            .invalidate_entries_if(move |(p, _), _| *p == name)
            .expect("the blocked-key cache supports invalidation closures");
    }

    /// Loads the shared policies if they changed since the last load.
    async fn reload_shared(&self) -> Result<()> {
        let version = self.shared.read(|b| b.version()).await?;
        if self.shared_version.lock().expect("version lock").as_deref() == Some(version.as_str()) {
            return Ok(());
        }
        let all = self.shared.read(|b| b.all()).await?;
        for (name, stored) in all.defs {
            {
                let mut unpublished = self.unpublished.lock().expect("unpublished lock");
                match unpublished.get(&name) {
                    Some(&removed) if stored.stamp < removed => continue, // read before the removal
                    Some(_) => {
                        unpublished.remove(&name);
                    }
                    None => {}
                }
            }
            let held = self
                .policies
                .read()
                .expect("policies lock")
                .get(&name)
                .and_then(|d| d.shared);
            if held.is_some_and(|stamp| stamp >= stored.stamp) {
                continue;
            }
            match stored.policy {
                Some(policy) if policy.validate().is_ok() => self.install(policy, Some(stored.stamp)),
                Some(_) => tracing::warn!(policy = %name, "ignoring a shared rate-limit policy this version refuses"),
                None if held.is_some() => self.uninstall(&name),
                None => {}
            }
        }
        *self.shared_version.lock().expect("version lock") = Some(all.version);
        Ok(())
    }
}

impl crate::core::backplane::Listener for Inner {
    fn channel(&self) -> &'static str {
        shared::CHANNEL
    }

    fn deliver(&self, _payload: &[u8]) {
        self.shared_changed.notify_one();
    }

    fn resync(&self) {
        self.shared_changed.notify_one();
    }
}

/// How often the shared policies are checked for changes.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Keeps this instance's policies in step with the shared ones: at start, when another
/// instance announces a change, and every second.
async fn follow_shared(inner: Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        if let Err(e) = i.reload_shared().await {
            tracing::debug!(error = %e, "loading the shared rate-limit policies failed; retrying");
        }
        let changed = async { i.shared_changed.notified().await };
        let _ = tokio::time::timeout(crate::core::random::jittered(FOLLOW_EVERY), changed).await;
    }
}

/// Keys remembered as blocked, at most.
const BLOCKED_CAPACITY: u64 = 100_000;

impl RateLimiter {
    pub(crate) fn new(route: &Arc<Route>) -> Self {
        Self::with_clock(route, Arc::new(SystemClock))
    }

    /// A limiter whose embedded backend runs on `clock` (tests).
    pub(crate) fn with_clock(route: &Arc<Route>, clock: Arc<dyn Clock>) -> Self {
        let redis = route
            .redis()
            .map(|core| Arc::new(redis::RedisRateLimits::new(core.clone())) as Arc<dyn RateLimitBackend>);
        let in_process = Arc::new(EmbeddedRateLimits::new(clock, redis.is_some()));
        let embedded = in_process.clone() as Arc<dyn RateLimitBackend>;
        let redis_policies = route
            .redis()
            .map(|core| Arc::new(shared::RedisPolicies::new(core.clone())));
        if let Some(r) = &redis_policies {
            route.register_recovery(Arc::new(shared::PolicyRecovery { redis: r.clone() }));
        }
        let shared_store = route.routed(
            "ratelimit_policy",
            FallbackPolicy::Serve,
            redis_policies.map(|r| r as Arc<dyn shared::PolicyStore>),
            Arc::new(shared::EmbeddedPolicies::new(route.embedded().clone())) as Arc<dyn shared::PolicyStore>,
        );
        let inner = Arc::new(Inner {
            routed: route.routed("ratelimit", FallbackPolicy::Serve, redis, embedded),
            in_process,
            shared: shared_store,
            shared_version: std::sync::Mutex::new(None),
            shared_changed: tokio::sync::Notify::new(),
            policies: RwLock::new(BTreeMap::new()),
            unpublished: std::sync::Mutex::new(BTreeMap::new()),
            blocked: moka::sync::Cache::builder()
                .max_capacity(BLOCKED_CAPACITY)
                .expire_after(UntilRetry)
                .support_invalidation_closures()
                .build(),
        });
        let provider: Weak<dyn StatsProvider> = Arc::downgrade(&inner) as _;
        route.register_stats(provider);
        if let Some(backplane) = route.backplane() {
            let listener: Weak<dyn crate::core::backplane::Listener> = Arc::downgrade(&inner) as _;
            let backplane = backplane.clone();
            route.spawn(async move { backplane.join(listener).await });
        }
        route.spawn(follow_shared(Arc::downgrade(&inner)));
        RateLimiter { inner }
    }

    /// Keys the in-process limiter (embedded store, or fallback) holds state for; at most
    /// [`MAX_IN_PROCESS_KEYS`].
    pub fn in_process_keys(&self) -> usize {
        self.inner.in_process.keys()
    }

    /// Adds or replaces a policy in this process only (every instance that should
    /// enforce it defines it too, e.g. from its configuration). To define it for every
    /// instance at once, [`RateLimiter::publish`] it.
    pub fn define(&self, policy: Policy) -> Result<()> {
        policy.validate()?;
        self.inner.install(policy, None);
        Ok(())
    }

    /// Defines (or replaces) a policy for every instance: stored with the shared policies
    /// (in Redis, or the embedded store without Redis, kept across restarts) and applied
    /// here at once; the other instances apply it within a second. A published policy
    /// overrides one [`define`](RateLimiter::define)d under the same name.
    pub async fn publish(&self, policy: Policy) -> Result<()> {
        policy.validate()?;
        let name = policy.name.clone();
        let stored = shared::Stored {
            stamp: self.inner.shared.route().clock().now(),
            policy: Some(policy.clone()),
        };
        self.store_shared(&name, stored.clone()).await?;
        self.inner.install(policy, Some(stored.stamp));
        Ok(())
    }

    /// Removes a published policy from every instance (here at once, elsewhere within a
    /// second); [`Error::NotFound`] if it is not defined here.
    pub async fn unpublish(&self, name: &str) -> Result<()> {
        self.defined(name)?;
        let stored = shared::Stored {
            stamp: self.inner.shared.route().clock().now(),
            policy: None,
        };
        self.store_shared(name, stored.clone()).await?;
        self.inner
            .unpublished
            .lock()
            .expect("unpublished lock")
            .insert(name.to_string(), stored.stamp);
        self.inner.uninstall(name);
        Ok(())
    }

    async fn store_shared(&self, name: &str, stored: shared::Stored) -> Result<()> {
        let op = || {
            serde_json::to_vec(&shared::Published {
                name: name.to_string(),
                stored: stored.clone(),
            })
            .expect("policies serialize")
        };
        self.inner.shared.write(op, |b| b.put(name, &stored)).await?;
        Ok(())
    }

    /// The policy called `name`.
    pub fn policy(&self, name: &str) -> Option<Policy> {
        self.defined(name).ok().map(|d| d.policy.clone())
    }

    /// Every policy.
    pub fn policies(&self) -> Vec<Policy> {
        self.inner
            .policies
            .read()
            .expect("policies lock")
            .values()
            .map(|d| d.policy.clone())
            .collect()
    }

    /// Counters per policy.
    pub fn stats(&self) -> BTreeMap<String, PolicyStats> {
        self.inner.stats()
    }

    fn defined(&self, name: &str) -> Result<Arc<Defined>> {
        self.inner
            .policies
            .read()
            .expect("policies lock")
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("rate-limit policy {name:?}")))
    }

    fn step<'a>(policy: &'a Policy) -> Step<'a> {
        Step {
            policy: &policy.name,
            algorithm: policy.algorithm,
            spec: policy.spec(1.0),
            fallback_spec: policy.spec(policy.fallback_share),
        }
    }

    /// Counts `cost` units against `key` under `policy` and decides.
    pub async fn check(&self, policy: &str, key: &str, cost: u64) -> Result<Decision> {
        let defined = self.defined(policy)?;
        let p = &defined.policy;
        check_key(key)?;
        if p.algorithm == Algorithm::Concurrency {
            return Err(Error::invalid(
                "policy",
                format!("{policy} is a concurrency policy: use acquire"),
            ));
        }
        p.check_cost(cost)?;
        if let Some(d) = self.listed(p, key) {
            return Ok(self.count(&defined, d));
        }
        let cache_key = (p.name.clone(), key.to_string());
        if !p.shadow
            && let Some((decision, until)) = self.inner.blocked.get(&cache_key)
        {
            let now = Instant::now();
            if now < until {
                defined.counters.blocked.fetch_add(1, Ordering::Relaxed);
                let left = until - now;
                let d = Decision {
                    retry_after: Some(left),
                    reset_after: decision
                        .reset_after
                        .saturating_sub(decision.retry_after.unwrap_or_default().saturating_sub(left)),
                    basis: Basis::Blocked,
                    ..decision
                };
                return Ok(self.count(&defined, d));
            }
        }
        let step = Self::step(p);
        let outcome = self.inner.routed.call(|b| b.check(&step, key, cost)).await?;
        let d = self.decide(p, outcome);
        if !d.allowed && cost == 1 && !p.shadow {
            let retry = d.retry_after.unwrap_or_default();
            self.inner
                .blocked
                .insert(cache_key, (d.clone(), Instant::now() + retry));
        }
        Ok(self.count(&defined, d))
    }

    /// Takes a permit of a concurrency policy. The permit is released when dropped (or by
    /// [`Permit::release`]), and reclaimed by the limiter when its lease (the policy's
    /// period) runs out — e.g. because its holder died.
    pub async fn acquire(&self, policy: &str, key: &str) -> Result<Acquired> {
        let defined = self.defined(policy)?;
        let p = &defined.policy;
        check_key(key)?;
        if p.algorithm != Algorithm::Concurrency {
            return Err(Error::invalid(
                "policy",
                format!("{policy} is not a concurrency policy: use check"),
            ));
        }
        if let Some(d) = self.listed(p, key) {
            let d = self.count(&defined, d);
            return Ok(if d.allowed {
                Acquired::Unlimited(d)
            } else {
                Acquired::Denied(d)
            });
        }
        let id = crate::core::random::token();
        let step = Self::step(p);
        let outcome = self.inner.routed.call(|b| b.acquire(&step, key, &id)).await?;
        let d = self.count(&defined, self.decide(p, outcome));
        Ok(if outcome.verdict.allowed {
            Acquired::Granted(Permit {
                limiter: self.clone(),
                policy: defined.clone(),
                key: key.to_string(),
                id: Some(id),
                decision: d,
            })
        } else if d.allowed {
            // Shadow mode: let it through without holding a permit.
            Acquired::Unlimited(d)
        } else {
            Acquired::Denied(d)
        })
    }

    fn listed(&self, p: &Policy, key: &str) -> Option<Decision> {
        let basis = if p.allow.contains(key) {
            Basis::AllowList
        } else if p.deny.contains(key) {
            Basis::DenyList
        } else {
            return None;
        };
        let allowed = basis == Basis::AllowList;
        Some(Decision {
            allowed,
            policy: p.name.clone(),
            limit: p.limit,
            window_s: p.period.as_secs().max(1),
            remaining: if allowed { p.limit } else { 0 },
            reset_after: Duration::ZERO,
            retry_after: (!allowed).then_some(p.period),
            shadow_denied: false,
            basis,
        })
    }

    fn decide(&self, p: &Policy, outcome: Outcome) -> Decision {
        let Verdict {
            allowed,
            remaining,
            reset_after_us,
            retry_after_us,
        } = outcome.verdict;
        let shadow_denied = !allowed && p.shadow;
        let limit = if outcome.local_fallback {
            p.spec(p.fallback_share).limit
        } else {
            p.limit
        };
        Decision {
            allowed: allowed || p.shadow,
            policy: p.name.clone(),
            limit,
            window_s: p.period.as_secs().max(1),
            remaining,
            reset_after: Duration::from_micros(reset_after_us),
            retry_after: (!allowed).then(|| Duration::from_micros(retry_after_us)),
            shadow_denied,
            basis: if outcome.local_fallback {
                Basis::Fallback
            } else {
                Basis::Limiter
            },
        }
    }

    fn count(&self, defined: &Defined, d: Decision) -> Decision {
        let c = &defined.counters;
        let (local, exported) = if d.shadow_denied {
            (&c.shadow_denied, &c.exported[2])
        } else if d.allowed {
            (&c.allowed, &c.exported[0])
        } else {
            (&c.denied, &c.exported[1])
        };
        local.fetch_add(1, Ordering::Relaxed);
        exported.increment(1);
        if d.basis == Basis::Fallback {
            c.fallback.fetch_add(1, Ordering::Relaxed);
        }
        d
    }

    async fn release(&self, policy: &Policy, key: &str, id: &str) -> Result<bool> {
        let step = Self::step(policy);
        self.inner.routed.call(|b| b.release(&step, key, id)).await
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 512 {
        return Err(Error::invalid("key", "1 to 512 bytes"));
    }
    Ok(())
}

struct UntilRetry;

impl moka::Expiry<(String, String), (Decision, Instant)> for UntilRetry {
    fn expire_after_create(&self, _: &(String, String), v: &(Decision, Instant), now: Instant) -> Option<Duration> {
        Some(v.1.saturating_duration_since(now))
    }
}

impl Inner {
    fn stats(&self) -> BTreeMap<String, PolicyStats> {
        self.policies
            .read()
            .expect("policies lock")
            .iter()
            .map(|(name, d)| {
                let c = &d.counters;
                (
                    name.clone(),
                    PolicyStats {
                        allowed: c.allowed.load(Ordering::Relaxed),
                        denied: c.denied.load(Ordering::Relaxed),
                        shadow_denied: c.shadow_denied.load(Ordering::Relaxed),
                        fallback_decisions: c.fallback.load(Ordering::Relaxed),
                        blocked_cache_hits: c.blocked.load(Ordering::Relaxed),
                    },
                )
            })
            .collect()
    }
}

impl StatsProvider for Inner {
    fn capability(&self) -> &'static str {
        "ratelimit"
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "fallback_limiter_active": self.routed.route().mode() == Mode::Fallback,
            "policies": self.stats(),
        })
    }
}

/// The answer to [`RateLimiter::acquire`].
#[derive(Debug)]
pub enum Acquired {
    /// A permit is held until dropped or released.
    Granted(Permit),
    /// Allowed without a permit (allow list, or shadow mode).
    Unlimited(Decision),
    /// Refused.
    Denied(Decision),
}

/// A held permit of a concurrency policy.
pub struct Permit {
    limiter: RateLimiter,
    policy: Arc<Defined>,
    key: String,
    id: Option<String>,
    decision: Decision,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("policy", &self.policy.policy.name)
            .field("key", &self.key)
            .finish()
    }
}

impl Permit {
    /// The decision that granted it.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Gives the permit back now; returns whether it was still held.
    pub async fn release(mut self) -> Result<bool> {
        let id = self.id.take().expect("released once");
        self.limiter.release(&self.policy.policy, &self.key, &id).await
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let (limiter, policy, key) = (self.limiter.clone(), self.policy.clone(), std::mem::take(&mut self.key));
            let route = limiter.inner.routed.route().clone();
            route.spawn(async move {
                if let Err(e) = limiter.release(&policy.policy, &key, &id).await {
                    tracing::warn!(policy = %policy.policy.name, error = %e, "permit release failed; its lease will reclaim it");
                }
            });
        }
    }
}
