//! The atomic operations a job queue needs, and the records they exchange.
//!
//! Both backends implement [`JobBackend`]; every method is atomic per queue (a Lua script
//! on Redis, one transaction on SQLite).

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Where a job is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Ready to run, ordered by priority, then enqueue order.
    Waiting,
    /// Runs at `run_at_ms` (a delayed job, or a failed one waiting for its retry).
    Delayed,
    /// Leased to a worker.
    Active,
    /// Finished successfully (kept within the queue's retention).
    Completed,
    /// Failed its last attempt; can be retried or purged.
    Dead,
}

impl JobState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => JobState::Waiting,
            "delayed" => JobState::Delayed,
            "active" => JobState::Active,
            "completed" => JobState::Completed,
            "dead" => JobState::Dead,
            _ => return None,
        })
    }
}

/// How long to wait before a failed job runs again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Backoff {
    /// The same delay every time.
    Fixed {
        /// Milliseconds.
        delay_ms: u64,
    },
    /// `base_ms · 2^(attempt-1)`, at most `max_ms`, spread over its upper half (jitter).
    Exponential {
        /// The first retry's delay, in milliseconds.
        base_ms: u64,
        /// The cap, in milliseconds.
        max_ms: u64,
    },
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            base_ms: 1_000,
            max_ms: 3_600_000,
        }
    }
}

impl Backoff {
    /// (kind, base, max) as both backends store it: kind 0 fixed, 1 exponential.
    pub(crate) fn encode(self) -> (u8, u64, u64) {
        match self {
            Backoff::Fixed { delay_ms } => (0, delay_ms, delay_ms),
            Backoff::Exponential { base_ms, max_ms } => (1, base_ms, max_ms),
        }
    }

    pub(crate) fn decode(kind: u8, base: u64, max: u64) -> Self {
        match kind {
            0 => Backoff::Fixed { delay_ms: base },
            _ => Backoff::Exponential {
                base_ms: base,
                max_ms: max,
            },
        }
    }

    /// The delay before the retry that follows failed attempt `attempt` (1-based);
    /// `jitter` in [0, 1). The Redis script `fail.lua` computes the same.
    pub fn delay_ms(self, attempt: u32, jitter: f64) -> u64 {
        match self {
            Backoff::Fixed { delay_ms } => delay_ms,
            Backoff::Exponential { base_ms, max_ms } => {
                let exp = attempt.saturating_sub(1).min(40);
                let full = base_ms.saturating_mul(1u64 << exp).min(max_ms);
                full / 2 + ((full / 2) as f64 * jitter) as u64
            }
        }
    }
}

/// A job as the caller described it, ready to store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewJob {
    /// Caller-chosen or generated id.
    pub id: String,
    /// JSON text.
    pub payload: String,
    /// Higher runs first; -1000 to 1000.
    pub priority: i32,
    /// Attempts before the job goes dead (at least 1).
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// The handler's time limit, in ms (0: none).
    pub timeout_ms: u64,
    /// Dedupe key while a job with it is pending.
    pub unique_key: Option<String>,
    /// Delay from enqueue (ms), measured on the store's clock; used when `run_at_ms` is 0.
    pub delay_ms: u64,
    /// Absolute run time (Unix ms); 0 for "now + delay_ms".
    pub run_at_ms: u64,
    /// Attempts already made (non-zero only when a spooled job moves to Redis).
    pub attempts: u32,
    /// Enqueue time (Unix ms); 0 for "now".
    pub created_ms: u64,
}

/// The answer to one enqueued job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The id of the job that is now pending: the new one, or the one that made this a
    /// duplicate.
    pub id: String,
    /// False when nothing was added (same id already stored, or same unique key pending).
    pub created: bool,
}

/// A job handed to a worker under a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeasedJob {
    /// The job id.
    pub id: String,
    /// Proves the lease; needed to ack, fail, heartbeat, report progress or release.
    pub token: String,
    /// JSON text.
    pub payload: String,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The job's priority.
    pub priority: i32,
    /// The handler's time limit in ms (0: none).
    pub timeout_ms: u64,
    /// Enqueue time (Unix ms).
    pub created_ms: u64,
    /// Progress reported by an earlier attempt, if any (JSON text).
    pub progress: Option<String>,
}

/// The answer to a fetch.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Up to the number asked for.
    pub jobs: Vec<LeasedJob>,
    /// The queue is paused (nothing was handed out).
    pub paused: bool,
    /// When the next delayed job is due (Unix ms on the store's clock), if any.
    pub next_due_ms: Option<u64>,
}

/// What happened to an ack, fail or release.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// Completed (ack).
    Completed,
    /// Scheduled for another attempt (fail).
    Retrying,
    /// Out of attempts: moved to the dead set (fail).
    Dead,
    /// Back in the waiting set without counting the attempt (release).
    Released,
    /// The lease is no longer this token's (it expired and the job went to another
    /// worker, or the job was finished already); nothing changed.
    LeaseLost,
    /// Journaled while Redis is away; applied when it returns.
    Deferred,
}

/// How a leased job ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    /// Success.
    Ack,
    /// Failure with this error; retried or dead.
    Fail(String),
    /// Handed back unfinished (shutdown); the attempt does not count.
    Release,
}

/// Everything stored about a job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobInfo {
    /// The job id.
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// JSON text.
    pub payload: String,
    /// Priority.
    pub priority: i32,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// The last progress reported (JSON text).
    pub progress: Option<String>,
    /// Enqueue time (Unix ms).
    pub created_ms: u64,
    /// When it runs (delayed) or ran last (Unix ms).
    pub run_at_ms: u64,
    /// When it completed or died (Unix ms).
    pub finished_ms: Option<u64>,
    /// The worker holding or last holding it.
    pub worker: Option<String>,
    /// The end of the current lease (Unix ms), while active.
    pub lease_until_ms: Option<u64>,
    /// The dedupe key.
    pub unique_key: Option<String>,
}

/// Counts of one queue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready to run.
    pub waiting: u64,
    /// Leased to workers.
    pub active: u64,
    /// Waiting for their time (delay or retry backoff).
    pub delayed: u64,
    /// Completed jobs still retained.
    pub completed: u64,
    /// Dead jobs still retained.
    pub dead: u64,
    /// Attempts that failed, ever (including those retried).
    pub failed_total: u64,
    /// Jobs completed, ever.
    pub completed_total: u64,
    /// Leases that expired (a worker died or stalled), ever.
    pub lease_expired_total: u64,
    /// Whether fetching is paused.
    pub paused: bool,
}

/// How many finished jobs a queue keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Completed jobs kept (newest first); 0 deletes them on completion.
    pub completed_count: u64,
    /// Completed jobs older than this (ms) are deleted.
    pub completed_age_ms: u64,
    /// Dead jobs kept.
    pub dead_count: u64,
    /// Dead jobs older than this (ms) are deleted.
    pub dead_age_ms: u64,
}

/// The settling half of [`JobBackend::settle_and_fetch`].
#[derive(Debug, Clone, Copy)]
pub struct SettleCall<'a> {
    pub queue: &'a str,
    pub id: &'a str,
    pub token: &'a str,
    pub outcome: &'a Outcome,
    pub keep: Retention,
}

/// The fetching half of [`JobBackend::settle_and_fetch`] (same queue).
#[derive(Debug, Clone, Copy)]
pub struct FetchCall<'a> {
    pub worker: &'a str,
    pub lease_ms: u64,
    pub max: usize,
}

/// Job queue operations. `queue` names are validated by the caller.
#[async_trait::async_trait]
pub trait JobBackend: Send + Sync {
    /// Stores jobs atomically, in order; duplicates (id or pending unique key) are skipped.
    /// With `tick`, the batch is added only if schedule `tick.0` has not fired for a tick
    /// at or after `tick.1` (then nothing is added and the answer is empty).
    async fn enqueue(&self, queue: &str, jobs: &[NewJob], tick: Option<(&str, u64)>) -> Result<Vec<Enqueued>>;
    /// Promotes due delayed jobs, returns expired leases to waiting (or dead, when out of
    /// attempts, kept per `keep`) and leases up to `max` jobs to `worker` for `lease_ms`.
    async fn fetch(&self, queue: &str, worker: &str, lease_ms: u64, max: usize, keep: Retention) -> Result<Fetched>;
    /// Ends the attempt holding `token`.
    async fn settle(&self, queue: &str, id: &str, token: &str, outcome: &Outcome, keep: Retention) -> Result<Settled>;
    /// [`JobBackend::settle`], then [`JobBackend::fetch`] from the same queue: one round
    /// trip on Redis (a worker's ack and its next job), two calls elsewhere.
    async fn settle_and_fetch(&self, settle: SettleCall<'_>, next: FetchCall<'_>) -> Result<(Settled, Fetched)> {
        let s = settle;
        let settled = self.settle(s.queue, s.id, s.token, s.outcome, s.keep).await?;
        let fetched = self
            .fetch(s.queue, next.worker, next.lease_ms, next.max, s.keep)
            .await?;
        Ok((settled, fetched))
    }
    /// Extends the lease (and records `progress` if given); false if the lease is lost.
    async fn heartbeat(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        lease_ms: u64,
        progress: Option<&str>,
    ) -> Result<bool>;
    /// Everything about one job.
    async fn job(&self, queue: &str, id: &str) -> Result<Option<JobInfo>>;
    /// Counts.
    async fn counts(&self, queue: &str) -> Result<QueueCounts>;
    /// Pauses or resumes fetching.
    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()>;
    /// Jobs in `state` (dead, completed, waiting, delayed or active), `offset`/`limit` paged,
    /// newest finished first for dead and completed, run order otherwise.
    async fn list(&self, queue: &str, state: JobState, offset: u64, limit: u64) -> Result<Vec<JobInfo>>;
    /// Moves dead jobs (one, or all with `None`) back to waiting with their attempts reset.
    async fn retry_dead(&self, queue: &str, id: Option<&str>) -> Result<u64>;
    /// Deletes dead jobs (one, or all with `None`).
    async fn purge_dead(&self, queue: &str, id: Option<&str>) -> Result<u64>;
    /// Waits up to `max_ms` for a signal that work was enqueued (may return early).
    async fn wait_for_work(&self, queue: &str, max_ms: u64) -> Result<()>;
}
