//! [`Worker`]: runs a handler over a queue with a concurrency limit.
//!
//! One fetch loop per worker leases as many jobs as there are free slots (one round trip
//! for the batch), and waits for work when there is none. A slot whose job succeeded
//! leases its next job with the ack, in the same round trip (BullMQ's way), so a busy
//! worker makes one call per job; the fetch loop takes over when that finds nothing (blocked on the queue's signal on
//! Redis, so a new job is picked up at once, or until the next delayed job is due). Each
//! job runs in its own task beside a heartbeat that renews the lease every third of it;
//! a handler that returns an error, panics or outlives the job's timeout fails the attempt.
//! [`WorkerHandle::shutdown`] stops fetching, lets in-flight jobs finish until a deadline
//! and releases the rest (back to waiting, the attempt not counted).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::{LeasedJob, Outcome, Queue, Settled};
use crate::error::Result;

/// The error a handler returns to fail an attempt.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Longest idle wait between fetches (also bounds how late a resumed queue is noticed).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How often a worker on Redis moves spooled jobs with ended leases into Redis.
const SPOOL_CHECK: Duration = Duration::from_secs(5);

/// A job handed to a handler.
pub struct Job {
    leased: LeasedJob,
    payload: Value,
    queue: Queue,
    lease: Duration,
}

impl Job {
    /// The job id.
    pub fn id(&self) -> &str {
        &self.leased.id
    }

    /// The payload.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The payload as `T`.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(self.payload.clone())?)
    }

    /// This attempt's number (1-based) and the attempts allowed.
    pub fn attempt(&self) -> (u32, u32) {
        (self.leased.attempt, self.leased.max_attempts)
    }

    /// What the lease looks like to the store (id, token, …).
    pub fn leased(&self) -> &LeasedJob {
        &self.leased
    }

    /// Records progress (renewing the lease); false if the lease was lost.
    pub async fn progress(&self, progress: Value) -> Result<bool> {
        self.queue
            .progress(&self.leased.id, &self.leased.token, &progress, self.lease)
            .await
    }
}

/// Counters of one worker.
#[derive(Debug, Default, Serialize)]
pub struct WorkerStats {
    /// Attempts that succeeded.
    pub completed: AtomicU64,
    /// Attempts that failed (error, panic or timeout).
    pub failed: AtomicU64,
    /// Jobs handed back at shutdown.
    pub released: AtomicU64,
    /// Attempts whose lease was lost before they were settled.
    pub lease_lost: AtomicU64,
}

type Handler =
    dyn Fn(Job) -> futures_util::future::BoxFuture<'static, std::result::Result<(), HandlerError>> + Send + Sync;

/// Runs a handler over a queue. Build with [`Worker::new`], start with [`Worker::start`].
pub struct Worker {
    queue: Queue,
    handler: Arc<Handler>,
    concurrency: usize,
    lease: Duration,
    name: String,
}

/// A running worker.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    fetcher: JoinHandle<()>,
    stats: Arc<WorkerStats>,
    name: String,
}

impl Worker {
    /// A worker running `handler` for every job of `queue`; concurrency 1 until set.
    pub fn new<F, Fut>(queue: Queue, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        let lease = queue.options().lease;
        Worker {
            queue,
            handler: Arc::new(move |job| Box::pin(handler(job))),
            concurrency: 1,
            lease,
            name: format!("{}-{}", hostname(), &crate::core::random::token()[..8]),
        }
    }

    /// Jobs run at once (1 to 1000).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.clamp(1, super::MAX_BATCH);
        self
    }

    /// This worker's name in job records (default host name and a random suffix).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts fetching and running jobs on the current tokio runtime.
    pub fn start(self) -> WorkerHandle {
        let (stop, stop_rx) = watch::channel(false);
        let (abandon, abandon_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let stats = Arc::new(WorkerStats::default());
        let name = self.name.clone();
        let concurrency = self.concurrency;
        let fetcher = tokio::spawn(fetch_loop(self, slots.clone(), stop_rx, abandon_rx, stats.clone()));
        WorkerHandle {
            stop,
            abandon,
            slots,
            concurrency,
            fetcher,
            stats,
            name,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

async fn fetch_loop(
    w: Worker,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    abandon: watch::Receiver<bool>,
    stats: Arc<WorkerStats>,
) {
    let w = Arc::new(w);
    let mut errors = 0u32;
    let mut last_spool_check = tokio::time::Instant::now();
    loop {
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            _ = raised(&mut stop) => return,
        };
        if *stop.borrow() {
            return;
        }
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        if last_spool_check.elapsed() >= SPOOL_CHECK {
            last_spool_check = tokio::time::Instant::now();
            if let Err(e) = w.queue.drain_spool().await {
                tracing::debug!(error = %e, "moving spooled jobs into redis failed; will retry");
            }
        }
        match w.queue.fetch_with(&w.name, permits.len(), w.lease).await {
            Ok(fetched) if !fetched.jobs.is_empty() => {
                errors = 0;
                for (leased, permit) in fetched.jobs.into_iter().zip(permits) {
                    let (w, stats, abandon, stop) = (w.clone(), stats.clone(), abandon.clone(), stop.clone());
                    tokio::spawn(async move {
                        // A slot keeps going while each ack brings back the next job.
                        let mut next = Some(leased);
                        while let Some(leased) = next.take() {
                            next = run_one(&w, leased, abandon.clone(), &stop, &stats).await;
                        }
                        drop(permit);
                    });
                }
            }
            Ok(fetched) => {
                errors = 0;
                drop(permits);
                tokio::select! {
                    _ = w.queue.wait_for_work(IDLE_WAIT, fetched.next_due_ms) => {}
                    _ = raised(&mut stop) => return,
                }
            }
            Err(e) => {
                drop(permits);
                errors = errors.saturating_add(1);
                let pause = crate::core::random::jittered(Duration::from_millis(50 << errors.min(5)));
                tracing::warn!(queue = w.queue.name(), error = %e, "fetching jobs failed; retrying in {pause:?}");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = raised(&mut stop) => return,
                }
            }
        }
    }
}

/// Runs one job and settles it; after a success (and while the worker is not stopping),
/// the ack also leases the slot's next job, which is returned.
async fn run_one(
    w: &Worker,
    leased: LeasedJob,
    mut abandon: watch::Receiver<bool>,
    stop: &watch::Receiver<bool>,
    stats: &WorkerStats,
) -> Option<LeasedJob> {
    let payload = match serde_json::from_str(&leased.payload) {
        Ok(p) => p,
        Err(e) => {
            settle(w, &leased, Outcome::Fail(format!("payload is not JSON: {e}")), stats).await;
            return None;
        }
    };
    let job = Job {
        leased: leased.clone(),
        payload,
        queue: w.queue.clone(),
        lease: w.lease,
    };
    let mut task = tokio::spawn((w.handler)(job));
    let timeout = (leased.timeout_ms > 0).then(|| Duration::from_millis(leased.timeout_ms));
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(366 * 86_400)));
    tokio::pin!(deadline);
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + w.lease / 3, w.lease / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            done = &mut task => break match done {
                Ok(Ok(())) => Outcome::Ack,
                Ok(Err(e)) => Outcome::Fail(e.to_string()),
                Err(e) if e.is_panic() => Outcome::Fail(format!("handler panicked: {}", panic_text(e))),
                Err(e) => Outcome::Fail(format!("handler task failed: {e}")),
            },
            _ = &mut deadline, if timeout.is_some() => {
                task.abort();
                break Outcome::Fail(format!("timed out after {} ms", leased.timeout_ms));
            }
            _ = raised(&mut abandon) => {
                task.abort();
                break Outcome::Release;
            }
            _ = beat.tick() => {
                match w.queue.heartbeat(&leased.id, &leased.token, w.lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = %leased.id, "lease lost while the job runs; another worker may run it too"),
                    Err(e) => tracing::debug!(job = %leased.id, error = %e, "heartbeat failed"),
                }
            }
        }
    };
    if matches!(outcome, Outcome::Ack) && !*stop.borrow() {
        match w
            .queue
            .ack_and_fetch(&leased.id, &leased.token, &w.name, 1, w.lease)
            .await
        {
            Ok((settled, fetched)) => {
                count(settled, &outcome, stats);
                return fetched.jobs.into_iter().next();
            }
            // Settled below with retries (a lost ack is a duplicate run, worth trying hard).
            Err(e) => tracing::debug!(job = %leased.id, error = %e, "ack and fetch failed; acking alone"),
        }
    }
    settle(w, &leased, outcome, stats).await;
    None
}

/// Counts a settled attempt in the worker's counters.
fn count(settled: Settled, outcome: &Outcome, stats: &WorkerStats) {
    let counter = match (settled, outcome) {
        (Settled::LeaseLost, _) => &stats.lease_lost,
        (_, Outcome::Ack) => &stats.completed,
        (_, Outcome::Fail(_)) => &stats.failed,
        (_, Outcome::Release) => &stats.released,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Resolves once the flag is (or was already) raised.
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic".into())
}

/// Settles with a few retries: a lost settle is not a lost job (its lease ends and it runs
/// again) but it is a duplicate run, so it is worth trying hard.
async fn settle(w: &Worker, leased: &LeasedJob, outcome: Outcome, stats: &WorkerStats) {
    for attempt in 0..5u32 {
        let r = match &outcome {
            Outcome::Ack => w.queue.ack(&leased.id, &leased.token).await,
            Outcome::Fail(e) => w.queue.fail(&leased.id, &leased.token, e).await,
            Outcome::Release => w.queue.release(&leased.id, &leased.token).await,
        };
        match r {
            Ok(settled) => {
                count(settled, &outcome, stats);
                return;
            }
            Err(e) => {
                tracing::warn!(job = %leased.id, error = %e, "settling a job failed; retrying");
                tokio::time::sleep(crate::core::random::jittered(Duration::from_millis(100 << attempt))).await;
            }
        }
    }
    tracing::error!(job = %leased.id, "could not settle the job; it runs again when its lease ends");
}

impl WorkerHandle {
    /// This worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Jobs running now.
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.slots.available_permits()
    }

    /// Stops fetching, waits up to `deadline` for in-flight jobs, then releases the rest
    /// and waits for their release to be recorded. Returns the jobs released.
    pub async fn shutdown(self, deadline: Duration) -> u64 {
        let _ = self.stop.send(true);
        let _ = self.fetcher.await;
        let all = self.concurrency as u32;
        if tokio::time::timeout(deadline, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            let _ = self.abandon.send(true);
            let _ = self.slots.acquire_many(all).await;
        }
        self.stats.released.load(Ordering::Relaxed)
    }
}
