//! Per-queue and per-job options, with the limits they are checked against.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backend::{Backoff, Retention};
use crate::error::{Error, Result};

/// Limits of a queue, and its defaults for jobs.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How long a fetched job is leased before another worker may take it (100 ms to 24 h);
    /// workers renew it every third of this (default 30 s).
    pub lease: Duration,
    /// Attempts per job unless the job says otherwise (default 3).
    pub max_attempts: u32,
    /// Backoff unless the job says otherwise (default exponential from 1 s, capped at 1 h).
    pub backoff: Backoff,
    /// Largest payload, in bytes of JSON (default 1 MiB).
    pub max_payload_bytes: usize,
    /// Completed jobs kept for lookup (default 1000, newest). They are trimmed every 64
    /// completions, so up to 64 more may be kept in between.
    pub keep_completed: u64,
    /// Completed jobs older than this are deleted (default 24 h).
    pub keep_completed_for: Duration,
    /// Dead jobs kept (default 10000, newest).
    pub keep_dead: u64,
    /// Dead jobs older than this are deleted (default 7 days).
    pub keep_dead_for: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease: Duration::from_secs(30),
            max_attempts: 3,
            backoff: Backoff::default(),
            max_payload_bytes: 1 << 20,
            keep_completed: 1000,
            keep_completed_for: Duration::from_secs(86_400),
            keep_dead: 10_000,
            keep_dead_for: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Longest lease, delay or timeout accepted.
const MAX_SPAN: Duration = Duration::from_secs(366 * 86_400);

fn check_span(field: &str, d: Duration, min: Duration) -> Result<()> {
    if d < min || d > MAX_SPAN {
        return Err(Error::invalid(field, format!("must be {min:?} to 366 days")));
    }
    Ok(())
}

/// Leases: 100 ms to 24 h (a queue's default, and any given per fetch or heartbeat).
pub(crate) fn check_lease(lease: Duration) -> Result<()> {
    if lease < Duration::from_millis(100) || lease > Duration::from_secs(86_400) {
        return Err(Error::invalid("lease", "must be 100 ms to 24 h"));
    }
    Ok(())
}

fn check_backoff(b: Backoff) -> Result<()> {
    let max = MAX_SPAN.as_millis() as u64;
    let ok = match b {
        Backoff::Fixed { delay_ms } => delay_ms <= max,
        Backoff::Exponential { base_ms, max_ms } => base_ms >= 1 && base_ms <= max_ms && max_ms <= max,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "backoff",
            "delays must be at most 366 days, exponential base 1 ms or more and at most max_ms",
        ))
    }
}

fn check_attempts(n: u32) -> Result<()> {
    if !(1..=1000).contains(&n) {
        return Err(Error::invalid("max_attempts", "must be 1 to 1000"));
    }
    Ok(())
}

impl QueueOptions {
    pub(crate) fn check(&self) -> Result<()> {
        check_lease(self.lease)?;
        check_attempts(self.max_attempts)?;
        check_backoff(self.backoff)?;
        if !(2..=64 << 20).contains(&self.max_payload_bytes) {
            return Err(Error::invalid("max_payload_bytes", "must be 2 bytes to 64 MiB"));
        }
        check_span("keep_completed_for", self.keep_completed_for, Duration::ZERO)?;
        check_span("keep_dead_for", self.keep_dead_for, Duration::ZERO)?;
        Ok(())
    }

    pub(crate) fn retention(&self) -> Retention {
        Retention {
            completed_count: self.keep_completed,
            completed_age_ms: self.keep_completed_for.as_millis() as u64,
            dead_count: self.keep_dead,
            dead_age_ms: self.keep_dead_for.as_millis() as u64,
        }
    }
}

/// How one job is enqueued; unset fields take the queue's defaults.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    pub(crate) id: Option<String>,
    pub(crate) delay: Option<Duration>,
    pub(crate) run_at: Option<SystemTime>,
    pub(crate) priority: i32,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) unique_key: Option<String>,
}

impl EnqueueOptions {
    /// Defaults: now, priority 0, the queue's attempts and backoff, no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The job id (1–128 of `A-Za-z0-9_.:@-`); enqueueing an id that is stored already
    /// adds nothing and answers with that job. Default: random.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Runs no sooner than this long from now (measured on the store's clock).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Runs no sooner than this time.
    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Higher runs first (-1000 to 1000; default 0); equal priorities run in enqueue order.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Attempts before the job is dead (1 to 1000).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Delay between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// The handler's time limit per attempt (workers fail the attempt when it passes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// While a job with this key is waiting, delayed or active, enqueueing another adds
    /// nothing and answers with that job's id (1–256 bytes).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
}

/// Job ids: 1–128 of `A-Za-z0-9_.:@-`.
pub(crate) fn check_id(id: &str) -> Result<()> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("id", "must be 1 to 128 of A-Za-z0-9_.:@-"))
    }
}

/// Queue names: 1–64 of `A-Za-z0-9_.-`.
pub(crate) fn check_queue(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("queue", "must be 1 to 64 of A-Za-z0-9_.-"))
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl EnqueueOptions {
    /// Validates and fills in the queue's defaults.
    pub(crate) fn resolve(&self, q: &QueueOptions) -> Result<super::backend::NewJob> {
        let id = match &self.id {
            Some(id) => {
                check_id(id)?;
                id.clone()
            }
            None => crate::core::random::token(),
        };
        if !(-1000..=1000).contains(&self.priority) {
            return Err(Error::invalid("priority", "must be -1000 to 1000"));
        }
        let max_attempts = self.max_attempts.unwrap_or(q.max_attempts);
        check_attempts(max_attempts)?;
        let backoff = self.backoff.unwrap_or(q.backoff);
        check_backoff(backoff)?;
        if let Some(d) = self.delay {
            check_span("delay", d, Duration::ZERO)?;
        }
        if let Some(t) = self.timeout {
            check_span("timeout", t, Duration::from_millis(1))?;
        }
        if let Some(at) = self.run_at {
            // At most as far ahead as the longest delay: a time that no store can order
            // (past i64 ms, past 2^53 in Redis's doubles) would run at once or never.
            let latest = SystemTime::now() + MAX_SPAN;
            if at > latest {
                return Err(Error::invalid("run_at", "must be at most 366 days ahead"));
            }
        }
        if let Some(k) = &self.unique_key
            && (k.is_empty() || k.len() > 256)
        {
            return Err(Error::invalid("unique_key", "must be 1 to 256 bytes"));
        }
        Ok(super::backend::NewJob {
            id,
            payload: String::new(),
            priority: self.priority,
            max_attempts,
            backoff,
            timeout_ms: self.timeout.map_or(0, |t| t.as_millis() as u64),
            unique_key: self.unique_key.clone(),
            delay_ms: self.delay.map_or(0, |d| d.as_millis() as u64),
            run_at_ms: self.run_at.map_or(0, unix_ms),
            attempts: 0,
            created_ms: 0,
        })
    }
}
