//! Rate limits in process: the same algorithms as the Lua scripts, on a [`Clock`] that
//! tests can drive. Used when no Redis is configured (full limits) and as the fallback
//! limiter while Redis is away (each policy's `fallback_share` of its limits). State is
//! in memory: a restart forgets counts, which errs on the side of allowing. At most
//! [`MAX_KEYS`] keys have state at once; past that the keys whose state ends soonest are
//! forgotten (also erring on the side of allowing), so no client can grow it without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::algorithms::{self, Spec, State, Verdict};
use super::backend::{Outcome, RateLimitBackend, Step};
use super::policy::Algorithm;
use crate::core::keys::encode;
use crate::error::Result;

/// Time source in microseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Now.
    fn now_us(&self) -> u64;
}

/// The host's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }
}

/// A clock that moves only when told to (tests).
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `start_us`.
    pub fn new(start_us: u64) -> Self {
        ManualClock(AtomicU64::new(start_us))
    }

    /// Moves it forward.
    pub fn advance_us(&self, us: u64) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const STRIPES: usize = 64;
/// Operations between sweeps of forgotten keys.
const SWEEP_EVERY: u64 = 8192;
/// Most keys with state at once (about 100 bytes each, more for sliding logs); beyond it
/// the keys whose state ends soonest are forgotten first (which can only allow more).
pub const MAX_KEYS: usize = 100_000;
const MAX_KEYS_PER_STRIPE: usize = MAX_KEYS / STRIPES;

/// In-process rate limits.
pub struct EmbeddedRateLimits {
    clock: Arc<dyn Clock>,
    /// Standing in for Redis: enforce the fallback share.
    fallback: bool,
    stripes: Vec<Mutex<HashMap<String, (State, u64)>>>,
    ops: AtomicU64,
}

impl EmbeddedRateLimits {
    /// A limiter on `clock`; `fallback` selects the policies' fallback shares.
    pub fn new(clock: Arc<dyn Clock>, fallback: bool) -> Self {
        EmbeddedRateLimits {
            clock,
            fallback,
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            ops: AtomicU64::new(0),
        }
    }

    /// Keys with state now (expired ones included until swept).
    pub fn keys(&self) -> usize {
        self.stripes.iter().map(|s| s.lock().expect("limiter lock").len()).sum()
    }

    fn spec(&self, step: &Step<'_>) -> Spec {
        if self.fallback { step.fallback_spec } else { step.spec }
    }

    /// Runs `f` on the state of `key` under its stripe's lock.
    fn with_state<R>(&self, key: String, spec: &Spec, f: impl FnOnce(Option<&State>, u64) -> (Option<State>, R)) -> R {
        let now = self.clock.now_us();
        let stripe = &self.stripes[stripe_of(&key)];
        let mut map = stripe.lock().expect("limiter lock");
        if self.ops.fetch_add(1, Ordering::Relaxed).is_multiple_of(SWEEP_EVERY) {
            map.retain(|_, (_, until)| *until > now);
        }
        let current = map.get(&key).filter(|(_, until)| *until > now).map(|(s, _)| s.clone());
        let (next, result) = f(current.as_ref(), now);
        match next {
            Some(state) => {
                let until = algorithms::expires_at(&state, spec).max(now + 1);
                if map.len() >= MAX_KEYS_PER_STRIPE && !map.contains_key(&key) {
                    make_room(&mut map, now);
                }
                map.insert(key, (state, until));
            }
            None => {
                map.remove(&key);
            }
        }
        result
    }

    fn outcome(&self, verdict: Verdict) -> Outcome {
        Outcome {
            verdict,
            local_fallback: self.fallback,
        }
    }
}

/// Frees an eighth of a full stripe: expired keys first, then those ending soonest.
fn make_room(map: &mut HashMap<String, (State, u64)>, now: u64) {
    map.retain(|_, (_, until)| *until > now);
    let excess = (map.len() + MAX_KEYS_PER_STRIPE / 8).saturating_sub(MAX_KEYS_PER_STRIPE);
    if excess == 0 {
        return;
    }
    let mut ends: Vec<u64> = map.values().map(|(_, until)| *until).collect();
    let (_, cutoff, _) = ends.select_nth_unstable(excess - 1);
    let cutoff = *cutoff;
    let mut left = excess;
    map.retain(|_, (_, until)| {
        if left > 0 && *until <= cutoff {
            left -= 1;
            false
        } else {
            true
        }
    });
    metrics::counter!("redkit_ratelimit_keys_forgotten_total").increment((excess - left) as u64);
}

fn stripe_of(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish() as usize % STRIPES
}

/// The same unambiguous encoding as on Redis.
fn full_key(policy: &str, key: &str) -> String {
    format!("{}:{}", encode(policy), encode(key))
}

#[async_trait::async_trait]
impl RateLimitBackend for EmbeddedRateLimits {
    async fn check(&self, step: &Step<'_>, key: &str, cost: u64) -> Result<Outcome> {
        let spec = self.spec(step);
        let algorithm = match step.algorithm {
            Algorithm::Gcra => algorithms::gcra,
            Algorithm::TokenBucket => algorithms::token_bucket,
            Algorithm::SlidingWindow => algorithms::sliding_window,
            Algorithm::SlidingLog => algorithms::sliding_log,
            Algorithm::FixedWindow => algorithms::fixed_window,
            Algorithm::Concurrency => unreachable!("concurrency policies use acquire"),
        };
        let verdict = self.with_state(full_key(step.policy, key), &spec, |state, now| {
            algorithm(state, now, &spec, cost)
        });
        Ok(self.outcome(verdict))
    }

    async fn acquire(&self, step: &Step<'_>, key: &str, id: &str) -> Result<Outcome> {
        let spec = self.spec(step);
        let verdict = self.with_state(full_key(step.policy, key), &spec, |state, now| {
            algorithms::acquire(state, now, &spec, id)
        });
        Ok(self.outcome(verdict))
    }

    async fn release(&self, step: &Step<'_>, key: &str, id: &str) -> Result<bool> {
        let spec = self.spec(step);
        Ok(self.with_state(full_key(step.policy, key), &spec, |state, _| {
            algorithms::release(state, id)
        }))
    }
}
