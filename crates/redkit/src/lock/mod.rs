//! # Locks and semaphores with fencing, watchdog, and an explicit outage policy
//!
//! [`Locks::acquire`] returns a [`LockGuard`] holding an owner token and a **fencing
//! token** that strictly increases per lock name across all holders and instances: pass it
//! to the resource you protect and have it refuse writes carrying an older fence. Waiting
//! is bounded by [`LockOptions::wait`] and retries with jittered backoff (never sooner than
//! the current lease allows), without busy-spinning.
//!
//! Release is compare-and-delete (only the holder's token releases); [`LockGuard::extend`]
//! renews. A **watchdog** renews the lease at a third of its TTL while the guard lives; if
//! a renewal fails or the lease was lost, [`LockGuard::lost`] resolves and
//! [`LockGuard::is_lost`] turns true — never silently. Semaphores ([`Locks::acquire_permit`])
//! are the same machinery with N permits.
//!
//! **Outages.** By default a lock **fails closed**: while Redis is away, acquiring returns
//! [`Error::Unavailable`] — a lock that silently became local
//! would not exclude other hosts. [`LockOptions::local_fallback`] opts a lock into a
//! host-local lock instead (in-process table + an OS file lock, as the original services
//! did); health lists it as `lock_local`. Fences granted locally are replayed to Redis's
//! counter on recovery, so fences keep increasing afterwards.
//!
//! ```no_run
//! # async fn demo(redkit: redkit::Redkit) -> redkit::Result<()> {
//! use std::time::Duration;
//! use redkit::lock::LockOptions;
//! let guard = redkit
//!     .locks()
//!     .acquire("invoice:42", &LockOptions::new().ttl(Duration::from_secs(10)).wait(Duration::from_secs(2)))
//!     .await?;
//! let fence = guard.fence(); // send along with writes to the protected store
//! tokio::select! {
//!     _ = guard.lost() => { /* stop: someone else may hold the lock now */ }
//!     _ = async { /* the work */ } => {}
//! }
//! guard.release().await?;
//! # let _ = fence; Ok(()) }
//! ```

mod backend;
mod embedded;
mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use backend::{Grant, LockBackend};

use crate::core::journal::Entry;
use crate::core::route::{FallbackPolicy, Recovery, Route, Routed};
use crate::error::{Error, Result};
use crate::stats::now_ms;
use backend::LocalFence;

/// How a lock is taken.
#[derive(Debug, Clone)]
pub struct LockOptions {
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
    local_fallback: bool,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(30),
            wait: Duration::ZERO,
            watchdog: true,
            local_fallback: false,
        }
    }
}

impl LockOptions {
    /// Defaults: TTL 30 s, no waiting, watchdog on, fail closed in outages.
    pub fn new() -> Self {
        LockOptions::default()
    }

    /// The lease (10 ms to 1 day).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to wait for the lock (up to 1 hour; zero = try once).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Renew the lease while the guard lives (on by default).
    pub fn watchdog(mut self, on: bool) -> Self {
        self.watchdog = on;
        self
    }

    /// While Redis is away, take a host-local lock instead of failing closed.
    pub fn local_fallback(mut self, on: bool) -> Self {
        self.local_fallback = on;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.ttl < Duration::from_millis(10) || self.ttl > Duration::from_secs(86_400) {
            return Err(Error::invalid("ttl", "must be 10 ms to 1 day"));
        }
        if self.wait > Duration::from_secs(3600) {
            return Err(Error::invalid("wait", "must be at most 1 hour"));
        }
        Ok(())
    }
}

/// Locks and semaphores of one `Redkit`. Cheap to clone.
#[derive(Clone)]
pub struct Locks {
    inner: Arc<Inner>,
}

struct Inner {
    closed: Routed<dyn LockBackend>,
    local: Routed<dyn LockBackend>,
    /// Highest fence seen per recently used name, so host-local fences start above it
    /// (bounded: apps may lock many unique names).
    fences: moka::sync::Cache<String, u64>,
    activity: crate::stats::Activity<3>,
}

/// What `health()` counts for locks, in this order.
const LOCK_ACTIVITY: [&str; 3] = ["acquired", "busy", "released"];

impl crate::core::route::StatsProvider for Inner {
    fn capability(&self) -> &'static str {
        "lock"
    }

    fn snapshot(&self) -> serde_json::Value {
        self.activity.snapshot()
    }
}

struct FenceRecovery {
    redis: Arc<redis::RedisLocks>,
}

#[async_trait::async_trait]
impl Recovery for FenceRecovery {
    fn capability(&self) -> &'static str {
        "lock_local"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        let mut highest: HashMap<String, u64> = HashMap::new();
        for e in entries {
            let f: LocalFence = serde_json::from_slice(&e.op)?;
            let h = highest.entry(f.name).or_default();
            *h = (*h).max(f.fence);
        }
        for (name, fence) in highest {
            self.redis.raise_fence(&name, fence).await?;
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 256 {
        return Err(Error::invalid("name", "1 to 256 bytes"));
    }
    Ok(())
}

fn check_token(token: &str) -> Result<()> {
    if token.is_empty() || token.len() > 128 {
        return Err(Error::invalid("token", "1 to 128 bytes"));
    }
    Ok(())
}

/// Lock names whose highest fence is remembered.
const FENCE_MEMORY: u64 = 100_000;

/// Directory of host-wide lock files.
fn lock_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("redkit-locks")
}

/// Ends expired host-local leases every second (closing and deleting their lock files),
/// so names locked once and never released cost nothing for long.
async fn end_expired_leases(host: std::sync::Weak<embedded::LocalLocks>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(host) = host.upgrade() else { return };
        host.sweep().await;
    }
}

impl Locks {
    pub(crate) fn new(route: &Arc<Route>) -> Self {
        let redis = route.redis().map(|core| Arc::new(redis::RedisLocks::new(core.clone())));
        let host = Arc::new(embedded::LocalLocks::new(route.embedded().clone(), lock_dir()));
        route.spawn(end_expired_leases(Arc::downgrade(&host)));
        let local = host as Arc<dyn LockBackend>;
        if let Some(r) = &redis {
            route.register_recovery(Arc::new(FenceRecovery { redis: r.clone() }));
        }
        let as_dyn = || redis.clone().map(|r| r as Arc<dyn LockBackend>);
        let inner = Arc::new(Inner {
            closed: route.routed("lock", FallbackPolicy::FailClosed, as_dyn(), local.clone()),
            local: route.routed("lock_local", FallbackPolicy::Serve, as_dyn(), local),
            fences: moka::sync::Cache::new(FENCE_MEMORY),
            activity: crate::stats::Activity::new(LOCK_ACTIVITY),
        });
        let provider: std::sync::Weak<dyn crate::core::route::StatsProvider> = Arc::downgrade(&inner) as _;
        route.register_stats(provider);
        Locks { inner }
    }

    /// Takes lock `name`, waiting up to `opts.wait`; [`Error::Conflict`] if it stays held.
    pub async fn acquire(&self, name: &str, opts: &LockOptions) -> Result<LockGuard> {
        self.acquire_permit(name, 1, opts).await
    }

    /// Takes lock `name` if it is free now.
    pub async fn try_acquire(&self, name: &str, opts: &LockOptions) -> Result<Option<LockGuard>> {
        self.take(name, 1, &opts.clone().wait(Duration::ZERO)).await
    }

    /// Takes one of `permits` permits of semaphore `name`, waiting up to `opts.wait`.
    /// Every holder of one name must use the same `permits`.
    pub async fn acquire_permit(&self, name: &str, permits: u32, opts: &LockOptions) -> Result<LockGuard> {
        self.take(name, permits, opts)
            .await?
            .ok_or_else(|| Error::Conflict(format!("lock {name:?} is held (waited {:?})", opts.wait)))
    }

    /// Renews the lease of the holder of `token` to `opts`' TTL from now, without a guard
    /// (for callers that keep only the token, such as HTTP clients); `opts` must say the
    /// same about `local_fallback` as when the lock was taken. Returns the new expiry (ms
    /// since the Unix epoch); [`Error::Conflict`] if `token` no longer holds the lock.
    pub async fn extend(&self, name: &str, token: &str, opts: &LockOptions) -> Result<u64> {
        opts.validate()?;
        check_name(name)?;
        check_token(token)?;
        let held = self.routed(opts).call(|b| b.extend(name, token, opts.ttl)).await?;
        if held {
            Ok(now_ms() + opts.ttl.as_millis() as u64)
        } else {
            Err(Error::Conflict(format!("lock {name:?} is not held by this token")))
        }
    }

    /// Releases the lock if `token` holds it; returns whether it did. Like
    /// [`Locks::extend`], for callers that keep only the token.
    pub async fn release(&self, name: &str, token: &str, opts: &LockOptions) -> Result<bool> {
        check_name(name)?;
        check_token(token)?;
        let released = self.routed(opts).call(|b| b.release(name, token)).await?;
        if released {
            self.inner.activity.add(2);
        }
        Ok(released)
    }

    fn routed(&self, opts: &LockOptions) -> &Routed<dyn LockBackend> {
        if opts.local_fallback {
            &self.inner.local
        } else {
            &self.inner.closed
        }
    }

    async fn take(&self, name: &str, permits: u32, opts: &LockOptions) -> Result<Option<LockGuard>> {
        let taken = self.take_once(name, permits, opts).await?;
        self.inner.activity.add(if taken.is_some() { 0 } else { 1 });
        Ok(taken)
    }

    async fn take_once(&self, name: &str, permits: u32, opts: &LockOptions) -> Result<Option<LockGuard>> {
        opts.validate()?;
        check_name(name)?;
        if !(1..=10_000).contains(&permits) {
            return Err(Error::invalid("permits", "must be 1 to 10000"));
        }
        let token = crate::core::random::token();
        let deadline = Instant::now() + opts.wait;
        let mut backoff = Duration::from_millis(10);
        let routed = self.routed(opts);
        loop {
            let min_fence = self.inner.fences.get(name).unwrap_or(0);
            // The host-local backend records the fence it grants (see `LocalFence`).
            let grant = routed
                .write(Vec::new, |b| b.acquire(name, &token, permits, opts.ttl, min_fence))
                .await?;
            match grant {
                Grant::Acquired { fence, lease } => {
                    self.inner
                        .fences
                        .entry(name.to_string())
                        .and_upsert_with(|seen| seen.map_or(fence, |s| s.into_value().max(fence)));
                    let expires_ms = now_ms() + lease.as_millis() as u64;
                    return Ok(Some(LockGuard::new(
                        self.clone(),
                        name,
                        token,
                        fence,
                        lease,
                        expires_ms,
                        opts,
                    )));
                }
                Grant::Busy(lease_left) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    let pause = crate::core::random::jittered(backoff)
                        .min(lease_left)
                        .min(deadline - now);
                    tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
            }
        }
    }
}

/// A lock held without a guard (see [`LockGuard::detach`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedLock {
    /// The lock's name.
    pub name: String,
    /// The owner token: pass it to extend or release.
    pub token: String,
    /// The fencing token.
    pub fence: u64,
    /// When the lease ends unless extended (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

/// A held lock or semaphore permit. Released when dropped (or by [`LockGuard::release`]).
pub struct LockGuard {
    locks: Locks,
    name: String,
    token: String,
    fence: u64,
    expires_ms: u64,
    local_fallback: bool,
    lost: watch::Receiver<bool>,
    lost_tx: Arc<watch::Sender<bool>>,
    watchdog: Option<JoinHandle<()>>,
    released: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("fence", &self.fence)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl LockGuard {
    fn new(
        locks: Locks,
        name: &str,
        token: String,
        fence: u64,
        lease: Duration,
        expires_ms: u64,
        opts: &LockOptions,
    ) -> Self {
        let (tx, rx) = watch::channel(false);
        let tx = Arc::new(tx);
        let mut guard = LockGuard {
            locks,
            name: name.to_string(),
            token,
            fence,
            expires_ms,
            local_fallback: opts.local_fallback,
            lost: rx,
            lost_tx: tx,
            watchdog: None,
            released: false,
        };
        if opts.watchdog {
            guard.watchdog = Some(guard.spawn_watchdog(lease));
        }
        guard
    }

    fn spawn_watchdog(&self, lease: Duration) -> JoinHandle<()> {
        let (locks, name, token, local, lost) = (
            self.locks.clone(),
            self.name.clone(),
            self.token.clone(),
            self.local_fallback,
            self.lost_tx.clone(),
        );
        let route = self.locks.inner.closed.route().clone();
        route.spawn(async move {
            let opts = LockOptions::new().local_fallback(local);
            loop {
                tokio::time::sleep(lease / 3).await;
                match locks.routed(&opts).call(|b| b.extend(&name, &token, lease)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lock = %name, "lock lease lost (expired or taken over)");
                        let _ = lost.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lock = %name, error = %e, "lock renewal failed; treating the lease as lost");
                        let _ = lost.send(true);
                        return;
                    }
                }
            }
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owner token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The fencing token: strictly increasing per lock name across holders and instances.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// When the lease granted at acquisition ends (ms since the Unix epoch); the watchdog
    /// and [`LockGuard::extend`] push it further.
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms
    }

    /// Gives up the guard but not the lock: no watchdog, no release on drop. The lock stays
    /// held until its lease ends or the token is passed to [`Locks::extend`] /
    /// [`Locks::release`] — how a caller that outlives this process (an HTTP client)
    /// holds a lock.
    pub fn detach(mut self) -> DetachedLock {
        self.released = true;
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        DetachedLock {
            name: std::mem::take(&mut self.name),
            token: std::mem::take(&mut self.token),
            fence: self.fence,
            expires_at_ms: self.expires_ms,
        }
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is lost (a renewal failed, or it expired or was taken over).
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Renews the lease to `ttl` from now; [`Error::Conflict`] if it is no longer held.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let opts = LockOptions::new().ttl(ttl).local_fallback(self.local_fallback);
        match self.locks.extend(&self.name, &self.token, &opts).await {
            Err(Error::Conflict(_)) => {
                let _ = self.lost_tx.send(true);
                Err(Error::Conflict(format!(
                    "lock {:?} is no longer held by this guard",
                    self.name
                )))
            }
            other => other.map(|_| ()),
        }
    }

    /// Releases now; returns whether this guard still held the lock.
    pub async fn release(mut self) -> Result<bool> {
        self.released = true;
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        let opts = LockOptions::new().local_fallback(self.local_fallback);
        self.locks.release(&self.name, &self.token, &opts).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        if self.released {
            return;
        }
        let (locks, name, token, local) = (
            self.locks.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.token),
            self.local_fallback,
        );
        let route = locks.inner.closed.route().clone();
        route.spawn(async move {
            let opts = LockOptions::new().local_fallback(local);
            if let Err(e) = locks.routed(&opts).call(|b| b.release(&name, &token)).await {
                tracing::warn!(lock = %name, error = %e, "releasing a dropped lock failed; its lease will expire");
            }
        });
    }
}
