//! Circuit breaker for Redis.
//!
//! Closed: calls go to Redis and every outcome is reported here. After
//! `failure_threshold` consecutive failures or timeouts — or at once when a connection is
//! refused (nobody listens) or Redis says it is `LOADING` (not counted as a failure) — the
//! breaker **opens**: from then on the
//! route sends calls straight to the embedded store, so no call pays a timeout. The
//! recovery prober (see [`route`](super::route)) PINGs with backoff; when Redis answers it
//! moves the breaker to **recovering**, replays the journal, and **closes** it.
//!
//! The hot-path check ([`Breaker::is_closed`]) is one atomic load. Every transition is
//! logged, counted in `redkit_breaker_transitions_total` and kept for `health()`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::Notify;

use crate::config::BreakerConfig;
use crate::stats::now_ms;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Redis is serving.
    Closed,
    /// Redis is considered down; the embedded store serves.
    Open,
    /// Redis answered a probe; the journal is being replayed. The embedded store still serves.
    Recovering,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::Recovering,
        }
    }
}

/// One state change.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// Why.
    pub reason: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Serializable view of the breaker.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// Consecutive failures counted towards opening.
    pub consecutive_failures: u32,
    /// The threshold that opens it.
    pub failure_threshold: u32,
    /// How many times it has opened.
    pub opened_total: u64,
    /// How many times it has closed after opening.
    pub closed_total: u64,
    /// The latest transition, if any.
    pub last_transition: Option<Transition>,
}

/// The circuit breaker. Shared by the Redis core (which reports outcomes) and the route
/// (which reads the state and runs recovery).
pub struct Breaker {
    cfg: BreakerConfig,
    state: AtomicU8,
    consecutive: AtomicU32,
    opened_total: AtomicU64,
    closed_total: AtomicU64,
    last: Mutex<Option<Transition>>,
    opened: Notify,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            state: AtomicU8::new(BreakerState::Closed as u8),
            consecutive: AtomicU32::new(0),
            opened_total: AtomicU64::new(0),
            closed_total: AtomicU64::new(0),
            last: Mutex::new(None),
            opened: Notify::new(),
        }
    }

    /// The breaker's tuning.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether calls should go to Redis.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == BreakerState::Closed as u8
    }

    /// Redis answered.
    pub fn success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Redis failed or timed out; opens the breaker at the threshold.
    pub fn failure(&self, reason: &str) {
        if !self.is_closed() {
            return;
        }
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.cfg.failure_threshold {
            self.open(&format!("{n} consecutive failures; last: {reason}"));
        }
    }

    /// Redis is loading its dataset: open without counting a failure.
    pub fn loading(&self) {
        self.open("redis is loading its dataset");
    }

    /// Opens the breaker (no-op unless closed).
    pub fn open(&self, reason: &str) {
        if self.transition(BreakerState::Closed, BreakerState::Open, reason) {
            self.opened_total.fetch_add(1, Ordering::Relaxed);
            self.opened.notify_one();
        }
    }

    pub(crate) fn begin_recovery(&self) -> bool {
        self.transition(BreakerState::Open, BreakerState::Recovering, "redis answered a probe")
    }

    pub(crate) fn reopen(&self, reason: &str) {
        self.transition(BreakerState::Recovering, BreakerState::Open, reason);
    }

    pub(crate) fn close(&self) {
        if self.transition(BreakerState::Recovering, BreakerState::Closed, "recovery complete") {
            self.consecutive.store(0, Ordering::Relaxed);
            self.closed_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Resolves once the breaker is open (immediately if it already is).
    pub(crate) async fn wait_open(&self) {
        loop {
            let notified = self.opened.notified();
            if self.state() == BreakerState::Open {
                return;
            }
            notified.await;
        }
    }

    fn transition(&self, from: BreakerState, to: BreakerState, reason: &str) -> bool {
        if self
            .state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        match to {
            BreakerState::Open => tracing::warn!(
                ?from,
                ?to,
                reason,
                "circuit breaker opened: serving from the embedded store"
            ),
            _ => tracing::info!(?from, ?to, reason, "circuit breaker transition"),
        }
        let to_label = match to {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::Recovering => "recovering",
        };
        metrics::counter!("redkit_breaker_transitions_total", "to" => to_label).increment(1);
        metrics::gauge!("redkit_breaker_open").set(if to == BreakerState::Closed { 0.0 } else { 1.0 });
        *self.last.lock().expect("breaker lock") = Some(Transition {
            from,
            to,
            reason: reason.to_string(),
            at_ms: now_ms(),
        });
        true
    }

    /// Serializable view.
    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.state(),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            failure_threshold: self.cfg.failure_threshold,
            opened_total: self.opened_total.load(Ordering::Relaxed),
            closed_total: self.closed_total.load(Ordering::Relaxed),
            last_transition: self.last.lock().expect("breaker lock").clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_threshold_and_success_resets() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            ..BreakerConfig::default()
        });
        b.failure("x");
        b.failure("x");
        b.success();
        b.failure("x");
        b.failure("x");
        assert!(b.is_closed());
        b.failure("x");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.begin_recovery());
        b.reopen("again");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.begin_recovery());
        b.close();
        assert!(b.is_closed());
        let s = b.snapshot();
        assert_eq!((s.opened_total, s.closed_total), (1, 1));
        assert_eq!(s.last_transition.unwrap().to, BreakerState::Closed);
    }

    #[test]
    fn loading_opens_without_counting_a_failure() {
        let b = Breaker::new(BreakerConfig::default());
        b.loading();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot().consecutive_failures, 0);
    }
}
