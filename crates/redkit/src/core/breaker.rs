//! Circuit breaker for Redis.
//!
//! Closed: calls go to Redis and every outcome is reported here. After
//! `failure_threshold` consecutive failures or timeouts, or when at least
//! `failure_rate_percent` of the calls in the last `rate_window` failed (with at least
//! `rate_min_calls` of them: a Redis timing out every other call never fails three times in
//! a row) — or at once when a connection is refused (nobody listens) or Redis says it is
//! `LOADING` (not counted as a failure) — the breaker **opens**: from then on the
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
    /// The latest transitions, oldest first (at most [`RECENT_TRANSITIONS`]).
    pub recent_transitions: Vec<Transition>,
}

/// How many transitions [`BreakerSnapshot::recent_transitions`] keeps.
pub const RECENT_TRANSITIONS: usize = 20;

/// Calls and failures of one slice of the rate window.
#[derive(Default)]
struct Slice {
    /// Which slice of time (since the breaker was made) it counts.
    index: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
}

/// Slices the rate window is cut into.
const SLICES: usize = 10;

/// Outcomes over the last `rate_window`, in [`SLICES`] slices, without locks.
struct Window {
    started: std::time::Instant,
    slice: std::time::Duration,
    slices: [Slice; SLICES],
}

impl Window {
    fn new(window: std::time::Duration) -> Self {
        Window {
            started: std::time::Instant::now(),
            slice: (window / SLICES as u32).max(std::time::Duration::from_millis(1)),
            slices: Default::default(),
        }
    }

    fn now(&self) -> u64 {
        (self.started.elapsed().as_nanos() / self.slice.as_nanos()) as u64 + 1
    }

    fn record(&self, failed: bool) {
        let now = self.now();
        let s = &self.slices[now as usize % SLICES];
        if s.index.load(Ordering::Acquire) != now && s.index.swap(now, Ordering::AcqRel) != now {
            s.calls.store(0, Ordering::Relaxed);
            s.failures.store(0, Ordering::Relaxed);
        }
        s.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            s.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (calls, failures) over the window.
    fn totals(&self) -> (u32, u32) {
        let now = self.now();
        self.slices
            .iter()
            .filter(|s| now - s.index.load(Ordering::Acquire).min(now) < SLICES as u64)
            .fold((0, 0), |(c, f), s| {
                (
                    c + s.calls.load(Ordering::Relaxed),
                    f + s.failures.load(Ordering::Relaxed),
                )
            })
    }

    fn reset(&self) {
        for s in &self.slices {
            s.index.store(0, Ordering::Release);
        }
    }
}

/// The circuit breaker. Shared by the Redis core (which reports outcomes) and the route
/// (which reads the state and runs recovery).
pub struct Breaker {
    cfg: BreakerConfig,
    window: Window,
    state: AtomicU8,
    consecutive: AtomicU32,
    opened_total: AtomicU64,
    closed_total: AtomicU64,
    recent: Mutex<std::collections::VecDeque<Transition>>,
    opened: Notify,
    closed: Notify,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            window: Window::new(cfg.rate_window),
            cfg,
            state: AtomicU8::new(BreakerState::Closed as u8),
            consecutive: AtomicU32::new(0),
            opened_total: AtomicU64::new(0),
            closed_total: AtomicU64::new(0),
            recent: Mutex::default(),
            opened: Notify::new(),
            closed: Notify::new(),
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
        self.window.record(false);
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Redis failed or timed out; opens the breaker at the consecutive threshold or the
    /// failure rate.
    pub fn failure(&self, reason: &str) {
        if !self.is_closed() {
            return;
        }
        self.window.record(true);
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.cfg.failure_threshold {
            self.open(&format!("{n} consecutive failures; last: {reason}"));
            return;
        }
        let (calls, failures) = self.window.totals();
        if calls >= self.cfg.rate_min_calls
            && u64::from(failures) * 100 >= u64::from(calls) * u64::from(self.cfg.failure_rate_percent)
        {
            self.open(&format!(
                "{failures} of the last {calls} calls failed (within {:?}); last: {reason}",
                self.cfg.rate_window
            ));
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
            self.window.reset();
            self.closed_total.fetch_add(1, Ordering::Relaxed);
            self.closed.notify_waiters();
        }
    }

    /// Resolves once the breaker closes (immediately if it is closed): a wait served by
    /// the embedded store can end as soon as Redis serves again.
    pub(crate) async fn wait_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
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
        // Every transition at warn, so an operator at RUST_LOG=warn sees the outage end
        // as well as begin.
        match to {
            BreakerState::Open => tracing::warn!(
                ?from,
                ?to,
                reason,
                "circuit breaker opened: serving from the embedded store"
            ),
            BreakerState::Closed => tracing::warn!(?from, ?to, reason, "circuit breaker closed: redis serves again"),
            BreakerState::Recovering => {
                tracing::warn!(?from, ?to, reason, "circuit breaker recovering: replaying the outage")
            }
        }
        let to_label = match to {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::Recovering => "recovering",
        };
        metrics::counter!("redkit_breaker_transitions_total", "to" => to_label).increment(1);
        metrics::gauge!("redkit_breaker_open").set(if to == BreakerState::Closed { 0.0 } else { 1.0 });
        let mut recent = self.recent.lock().expect("breaker lock");
        if recent.len() == RECENT_TRANSITIONS {
            recent.pop_front();
        }
        recent.push_back(Transition {
            from,
            to,
            reason: reason.to_string(),
            at_ms: now_ms(),
        });
        true
    }

    /// Serializable view.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let recent: Vec<Transition> = self.recent.lock().expect("breaker lock").iter().cloned().collect();
        BreakerSnapshot {
            state: self.state(),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            failure_threshold: self.cfg.failure_threshold,
            opened_total: self.opened_total.load(Ordering::Relaxed),
            closed_total: self.closed_total.load(Ordering::Relaxed),
            last_transition: recent.last().cloned(),
            recent_transitions: recent,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

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
        let path: Vec<BreakerState> = s.recent_transitions.iter().map(|t| t.to).collect();
        use BreakerState::*;
        assert_eq!(
            path,
            [Open, Recovering, Open, Recovering, Closed],
            "the recent transitions, oldest first"
        );
        for _ in 0..30 {
            b.failure("x");
            b.failure("x");
            b.failure("x");
            b.begin_recovery();
            b.close();
        }
        assert_eq!(b.snapshot().recent_transitions.len(), RECENT_TRANSITIONS, "bounded");
        assert_eq!(s.last_transition.unwrap().to, BreakerState::Closed);
    }

    #[test]
    fn a_redis_failing_every_other_call_opens_it() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            rate_min_calls: 20,
            failure_rate_percent: 50,
            ..BreakerConfig::default()
        });
        for _ in 0..9 {
            b.success();
            b.failure("timeout");
        }
        assert!(b.is_closed(), "18 calls: under the minimum");
        b.success();
        b.failure("timeout");
        assert_eq!(b.state(), BreakerState::Open, "10 of 20 failed");
        assert!(
            b.snapshot()
                .last_transition
                .unwrap()
                .reason
                .contains("10 of the last 20")
        );
    }

    #[test]
    fn a_few_failures_among_many_calls_do_not() {
        let b = Breaker::new(BreakerConfig::default());
        for i in 0..1000 {
            if i % 10 == 0 {
                b.failure("timeout");
            } else {
                b.success();
            }
        }
        assert!(b.is_closed());
    }

    #[test]
    fn loading_opens_without_counting_a_failure() {
        let b = Breaker::new(BreakerConfig::default());
        b.loading();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot().consecutive_failures, 0);
    }

    /// What an idle worker in an outage waits on (`Queue::wait_for_work`): it must end when
    /// recovery closes the breaker, not when a failed recovery reopens it.
    #[tokio::test]
    async fn wait_closed_ends_when_recovery_closes_the_breaker() {
        let b = Arc::new(Breaker::new(BreakerConfig::default()));
        tokio::time::timeout(Duration::from_secs(1), b.wait_closed())
            .await
            .expect("a closed breaker is waited out at once");
        b.open("test");
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait_closed().await }
        });
        assert!(b.begin_recovery());
        b.reopen("the probe's replay failed");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a reopened breaker is not closed");
        assert!(b.begin_recovery());
        b.close();
        // The bound only keeps a broken notification from hanging the suite.
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the wait ends when the breaker closes")
            .unwrap();
    }
}
