//! # Jobs: durable queues, leased delivery, retries, schedules — nothing lost in an outage
//!
//! [`Queue::enqueue`] stores a job (JSON payload) with a delay or run-at time, a priority
//! (higher first, then enqueue order), attempts and backoff, a per-attempt timeout, an
//! optional caller-chosen id and an optional unique key (no second job with that key while
//! one is pending). [`Queue::enqueue_batch`] stores many atomically.
//!
//! **Delivery is at least once.** [`Queue::fetch`] hands a job out under a **lease**; the
//! holder renews it ([`Queue::heartbeat`], also carrying progress) and ends the attempt
//! with [`Queue::ack`], [`Queue::fail`] or [`Queue::release`]. A worker that dies (even
//! SIGKILLed) stops renewing; when its lease ends the job is delivered again, the attempt
//! counted: the next [`Queue::fetch`] finds it (on Redis, a busy worker's ack-and-fetch
//! looks for ended leases at most every 250 ms rather than once per job). Failed attempts
//! are retried after their backoff; after the last one the job is **dead**, listed by
//! [`Queue::dead`] until it is retried or purged. Delayed jobs become ready atomically, in
//! the same step that hands jobs out. [`Worker`] runs a handler over a queue with a
//! concurrency limit, heartbeats, timeouts and graceful shutdown; the plain calls above are
//! what other languages use over HTTP.
//!
//! **Control and observation.** [`Queue::pause`]/[`Queue::resume`], [`Queue::stats`],
//! [`Queue::job`] (state, attempts, last error, progress), [`Queue::list`],
//! [`Queue::events`] (completed, failed and dead jobs, from every instance on Redis), and
//! bounded retention of finished jobs (count and age, [`QueueOptions`]).
//! [`Queue::schedule`] repeats a job on an interval or a cron expression, once per tick
//! across all instances.
//!
//! **Outages.** While Redis is away, enqueues go to the durable SQLite queue (the
//! *spool*) and local workers keep processing it. Acks and failures of jobs leased from
//! Redis before the outage are journaled and applied when Redis returns. On recovery the
//! spool's waiting and delayed jobs move into Redis in enqueue order (ids kept, so a job
//! that reached Redis before the breaker opened is not added twice); jobs leased from the
//! spool stay there until their workers settle them, or move to Redis if their lease ends.
//! Delayed jobs keep their run-at through the move, and a worker idle in the outage turns
//! to Redis as soon as the breaker closes. Redis must keep what it is given: `health()`
//! warns when `maxmemory-policy` is not `noeviction` or persistence is off.
//!
//! ```no_run
//! # async fn demo(redkit: redkit::Redkit) -> redkit::Result<()> {
//! use std::time::Duration;
//! use redkit::jobs::{EnqueueOptions, QueueOptions, Worker};
//! let emails = redkit.queue("emails", QueueOptions::default())?;
//! emails.enqueue(&serde_json::json!({"to": "a@example.com"}), EnqueueOptions::new().unique_key("welcome:7")).await?;
//! let worker = Worker::new(emails.clone(), |job| async move {
//!     let to = job.payload()["to"].as_str().unwrap_or_default().to_string();
//!     job.progress(serde_json::json!({"sending_to": to})).await?;
//!     Ok(())
//! })
//! .concurrency(16)
//! .start();
//! // … on shutdown: stop fetching, let in-flight jobs finish for up to 10 s, release the rest.
//! worker.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

mod backend;
mod embedded;
mod options;
mod recovery;
mod redis;
mod schedule;
mod stats;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use backend::{
    Backoff, Enqueued, JobBackend, JobInfo, JobState, LeasedJob, NewJob, Outcome, QueueCounts, Retention, Settled,
};
pub use options::{EnqueueOptions, QueueOptions};
pub use schedule::Schedule;
pub use worker::{Job, Worker, WorkerHandle, WorkerStats};

use crate::core::route::{FallbackPolicy, Origin, Route, Routed, StatsProvider};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// Most jobs per [`Queue::enqueue_batch`] or [`Queue::fetch`].
pub const MAX_BATCH: usize = 1000;

/// What observers of a queue hear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The queue.
    pub queue: String,
    /// The job.
    pub id: String,
    /// What happened.
    pub kind: JobEventKind,
}

/// The kinds of [`JobEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// The job completed.
    Completed,
    /// An attempt failed; the job will be retried.
    Failed,
    /// The last attempt failed; the job is dead.
    Dead,
}

/// The jobs capability of one `Redkit`: the routed backends and what queues share.
pub(crate) struct JobsHub {
    routed: Routed<dyn JobBackend>,
    redis: Option<Arc<redis::RedisJobs>>,
    embedded: Arc<embedded::EmbeddedJobs>,
    instance: String,
    events: Mutex<HashMap<String, broadcast::Sender<JobEvent>>>,
    subscriptions: Mutex<HashMap<String, JoinHandle<()>>>,
    spool: recovery::Spool,
    counters: Arc<stats::JobCounters>,
}

impl Drop for JobsHub {
    fn drop(&mut self) {
        for (_, task) in self.subscriptions.lock().expect("jobs lock").drain() {
            task.abort();
        }
    }
}

impl JobsHub {
    pub(crate) fn new(route: &Arc<Route>) -> Arc<Self> {
        let instance = crate::core::random::token();
        let redis = route
            .redis()
            .map(|core| Arc::new(redis::RedisJobs::new(core.clone(), instance.clone())));
        let embedded = Arc::new(embedded::EmbeddedJobs::new(route.embedded().clone()));
        let counters = Arc::new(stats::JobCounters::default());
        let spool = recovery::Spool::new(redis.clone(), embedded.clone(), counters.clone());
        if redis.is_some() {
            route.register_recovery(Arc::new(spool.clone()));
        }
        let hub = Arc::new(JobsHub {
            routed: route.routed(
                "jobs",
                FallbackPolicy::Serve,
                redis.clone().map(|r| r as Arc<dyn JobBackend>),
                embedded.clone() as Arc<dyn JobBackend>,
            ),
            redis,
            embedded,
            instance,
            events: Mutex::default(),
            subscriptions: Mutex::default(),
            spool,
            counters,
        });
        let provider: std::sync::Weak<dyn StatsProvider> = Arc::downgrade(&hub) as _;
        route.register_stats(provider);
        hub
    }

    fn sender(&self, queue: &str) -> broadcast::Sender<JobEvent> {
        self.events
            .lock()
            .expect("jobs lock")
            .entry(queue.to_string())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    fn emit(&self, queue: &str, id: &str, settled: Settled) {
        let kind = match settled {
            Settled::Completed => JobEventKind::Completed,
            Settled::Retrying => JobEventKind::Failed,
            Settled::Dead => JobEventKind::Dead,
            _ => return,
        };
        let _ = self.sender(queue).send(JobEvent {
            queue: queue.to_string(),
            id: id.to_string(),
            kind,
        });
    }

    /// Every queue name known to this instance's stores.
    pub(crate) async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names = self.embedded.queue_names().await?;
        if let Some(r) = &self.redis
            && self.routed.route().mode() == crate::core::route::Mode::Redis
        {
            names.extend(r.queue_names().await?);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

impl StatsProvider for JobsHub {
    fn capability(&self) -> &'static str {
        "jobs"
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&*self.counters).unwrap_or_default()
    }
}

/// A named job queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    hub: Arc<JobsHub>,
    name: String,
    opts: QueueOptions,
    /// Whether this handle has listed the queue in Redis (done on its first enqueue: a
    /// queue only read or fetched from creates nothing).
    listed: std::sync::atomic::AtomicBool,
}

impl Queue {
    /// Where a lease token says the job was leased; `None` when that store is not part of
    /// this deployment (a Redis token where no Redis is configured), so no such lease
    /// exists: settling it or renewing it finds the lease lost, and nothing is journaled
    /// for a Redis that will never replay it.
    fn lease_origin(&self, token: &str) -> Result<Option<Origin>> {
        let origin = Origin::of(token).ok_or_else(|| Error::invalid("token", "not a lease token"))?;
        Ok((origin == Origin::Embedded || self.routed().route().redis().is_some()).then_some(origin))
    }

    pub(crate) fn open(hub: Arc<JobsHub>, name: &str, opts: QueueOptions) -> Result<Self> {
        options::check_queue(name)?;
        opts.check()?;
        Ok(Queue {
            inner: Arc::new(QueueInner {
                hub,
                name: name.to_string(),
                opts,
                listed: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The options in force.
    pub fn options(&self) -> &QueueOptions {
        &self.inner.opts
    }

    fn routed(&self) -> &Routed<dyn JobBackend> {
        &self.inner.hub.routed
    }

    fn prepare(&self, payload: &Value, opts: &EnqueueOptions) -> Result<NewJob> {
        let mut job = opts.resolve(&self.inner.opts)?;
        job.payload = serde_json::to_string(payload)?;
        if job.payload.len() > self.inner.opts.max_payload_bytes {
            return Err(Error::TooLarge {
                field: "payload".into(),
                size: job.payload.len(),
                limit: self.inner.opts.max_payload_bytes,
            });
        }
        Ok(job)
    }

    /// Stores one job; see [`EnqueueOptions`].
    pub async fn enqueue(&self, payload: &Value, opts: EnqueueOptions) -> Result<Enqueued> {
        let job = self.prepare(payload, &opts)?;
        let mut out = self.store(vec![job], None).await?;
        out.pop().ok_or_else(|| Error::Codec("enqueue answered nothing".into()))
    }

    /// Stores up to [`MAX_BATCH`] jobs atomically, in order; the answers are in the same order.
    pub async fn enqueue_batch(&self, jobs: &[(Value, EnqueueOptions)]) -> Result<Vec<Enqueued>> {
        if jobs.len() > MAX_BATCH {
            return Err(Error::invalid("jobs", format!("at most {MAX_BATCH} per batch")));
        }
        let prepared = jobs
            .iter()
            .map(|(p, o)| self.prepare(p, o))
            .collect::<Result<Vec<_>>>()?;
        self.store(prepared, None).await
    }

    async fn store(&self, jobs: Vec<NewJob>, tick: Option<(&str, u64)>) -> Result<Vec<Enqueued>> {
        let q = &self.inner.name;
        let out = self.routed().call(|b| b.enqueue(q, &jobs, tick)).await?;
        self.list_in_redis().await;
        let created = out.iter().filter(|e| e.created).count() as u64;
        self.inner.hub.counters.enqueued(created, out.len() as u64 - created);
        Ok(out)
    }

    /// Lists the queue among Redis's queues once per handle (best effort: the spool's
    /// drain lists it too).
    async fn list_in_redis(&self) {
        use std::sync::atomic::Ordering;
        let hub = &self.inner.hub;
        if let Some(r) = &hub.redis
            && hub.routed.route().mode() == crate::core::route::Mode::Redis
            && !self.inner.listed.load(Ordering::Relaxed)
        {
            match r.register(&self.inner.name).await {
                Ok(()) => self.inner.listed.store(true, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!(queue = %self.inner.name, error = %e, "could not list the queue in redis yet")
                }
            }
        }
    }

    /// Leases up to `max` ready jobs to `worker` for the queue's lease time; empty when
    /// none is ready or the queue is paused.
    pub async fn fetch(&self, worker: &str, max: usize) -> Result<Vec<LeasedJob>> {
        Ok(self.fetch_with(worker, max, self.inner.opts.lease).await?.jobs)
    }

    /// Like [`Queue::fetch`], but waits up to `wait` for a job to become ready.
    pub async fn fetch_wait(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<LeasedJob>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let fetched = self.fetch_with(worker, max, lease).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !fetched.jobs.is_empty() || left.is_zero() {
                return Ok(fetched.jobs);
            }
            self.wait_for_work(left, fetched.next_due_ms).await;
        }
    }

    pub(crate) async fn fetch_with(&self, worker: &str, max: usize, lease: Duration) -> Result<backend::Fetched> {
        if !(1..=MAX_BATCH).contains(&max) {
            return Err(Error::invalid("max", format!("must be 1 to {MAX_BATCH}")));
        }
        if worker.is_empty() || worker.len() > 128 {
            return Err(Error::invalid("worker", "must be 1 to 128 bytes"));
        }
        options::check_lease(lease)?;
        let (q, keep, lease_ms) = (&self.inner.name, self.inner.opts.retention(), lease.as_millis() as u64);
        let fetched = self.routed().call(|b| b.fetch(q, worker, lease_ms, max, keep)).await?;
        self.inner.hub.counters.fetched(fetched.jobs.len() as u64);
        Ok(fetched)
    }

    /// Sleeps until work may be ready: a signal from an enqueue, the next delayed job's
    /// time, or `max`, whichever comes first.
    pub(crate) async fn wait_for_work(&self, max: Duration, next_due_ms: Option<u64>) {
        let mut wait = max.as_millis() as u64;
        if let Some(due) = next_due_ms {
            wait = wait.min(due.saturating_sub(now_ms()).max(1));
        }
        let q = &self.inner.name;
        // A wait that fails over to the embedded store waits only what is left of it.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        let left = || {
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_millis() as u64
        };
        let route = self.routed().route();
        if route.breaker().is_closed() {
            if let Err(e) = self.routed().call(|b| b.wait_for_work(q, left())).await {
                tracing::debug!(queue = %q, error = %e, "waiting for work failed");
                tokio::time::sleep(Duration::from_millis(wait.min(100))).await;
            }
        } else {
            // In an outage the wait is the spool's; it ends when Redis serves again, so
            // an idle worker turns to Redis's jobs at once instead of after `max`.
            tokio::select! {
                _ = self.routed().call(|b| b.wait_for_work(q, left())) => {}
                _ = route.breaker().wait_closed() => {}
            }
        }
    }

    /// Ends attempt `token` of job `id` successfully.
    pub async fn ack(&self, id: &str, token: &str) -> Result<Settled> {
        self.settle(id, token, Outcome::Ack).await
    }

    /// Ends attempt `token` of job `id` as failed with `error` (at most 4 KiB kept): retried
    /// after its backoff, or dead after its last attempt.
    pub async fn fail(&self, id: &str, token: &str, error: &str) -> Result<Settled> {
        let mut error = error.to_string();
        if error.len() > 4096 {
            let mut end = 4096;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        self.settle(id, token, Outcome::Fail(error)).await
    }

    /// Hands job `id` back unfinished (shutdown): ready again at once, the attempt not counted.
    pub async fn release(&self, id: &str, token: &str) -> Result<Settled> {
        self.settle(id, token, Outcome::Release).await
    }

    async fn settle(&self, id: &str, token: &str, outcome: Outcome) -> Result<Settled> {
        options::check_id(id)?;
        let (q, keep) = (&self.inner.name, self.inner.opts.retention());
        let op = || {
            recovery::Change::Settle {
                queue: q.clone(),
                id: id.to_string(),
                token: token.to_string(),
                outcome: outcome.clone(),
                keep,
            }
            .encode()
        };
        let Some(origin) = self.lease_origin(token)? else {
            return Ok(Settled::LeaseLost);
        };
        // A job leased from the spool is settled there, whatever the mode; one leased from
        // Redis follows the route (journaled while Redis is away).
        let settled = self
            .routed()
            .write_at(origin, op, |b| b.settle(q, id, token, &outcome, keep))
            .await?;
        // Redis also announces it to other instances; their listeners skip this instance's id.
        self.inner.hub.emit(q, id, settled);
        self.inner.hub.counters.settled(settled);
        Ok(settled)
    }

    /// A worker's ack of job `id` and its next lease of up to `max` jobs, in one round
    /// trip on Redis. A job leased from the spool (or a queue in fallback) is acked and
    /// fetched in two calls, as [`Queue::ack`] and a fetch would be.
    pub(crate) async fn ack_and_fetch(
        &self,
        id: &str,
        token: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<(Settled, backend::Fetched)> {
        options::check_id(id)?;
        let Some(origin @ Origin::Redis) = self.lease_origin(token)? else {
            let settled = self.ack(id, token).await?;
            return Ok((settled, self.fetch_with(worker, max, lease).await?));
        };
        let (q, keep, lease_ms) = (&self.inner.name, self.inner.opts.retention(), lease.as_millis() as u64);
        let outcome = Outcome::Ack;
        let op = || {
            recovery::Change::Settle {
                queue: q.clone(),
                id: id.to_string(),
                token: token.to_string(),
                outcome: Outcome::Ack,
                keep,
            }
            .encode()
        };
        let settle = backend::SettleCall {
            queue: q,
            id,
            token,
            outcome: &outcome,
            keep,
        };
        let next = backend::FetchCall { worker, lease_ms, max };
        let (settled, fetched) = self
            .routed()
            .write_at(origin, op, |b| b.settle_and_fetch(settle, next))
            .await?;
        self.inner.hub.emit(q, id, settled);
        self.inner.hub.counters.settled(settled);
        self.inner.hub.counters.fetched(fetched.jobs.len() as u64);
        Ok((settled, fetched))
    }

    /// Renews the lease of attempt `token` for another `lease`; false when it is lost (the
    /// job then belongs to someone else: stop working on it).
    pub async fn heartbeat(&self, id: &str, token: &str, lease: Duration) -> Result<bool> {
        self.beat(id, token, lease, None).await
    }

    /// Records progress (any JSON, at most 64 KiB) and renews the lease like a heartbeat.
    pub async fn progress(&self, id: &str, token: &str, progress: &Value, lease: Duration) -> Result<bool> {
        let text = serde_json::to_string(progress)?;
        if text.len() > 64 * 1024 {
            return Err(Error::TooLarge {
                field: "progress".into(),
                size: text.len(),
                limit: 64 * 1024,
            });
        }
        self.beat(id, token, lease, Some(&text)).await
    }

    async fn beat(&self, id: &str, token: &str, lease: Duration, progress: Option<&str>) -> Result<bool> {
        options::check_id(id)?;
        options::check_lease(lease)?;
        let Some(origin) = self.lease_origin(token)? else {
            return Ok(false);
        };
        let (q, lease_ms) = (&self.inner.name, lease.as_millis() as u64);
        self.routed()
            .call_at(origin, |b| b.heartbeat(q, id, token, lease_ms, progress))
            .await
    }

    /// Everything stored about job `id` (also jobs still in the local spool).
    pub async fn job(&self, id: &str) -> Result<Option<JobInfo>> {
        options::check_id(id)?;
        let q = &self.inner.name;
        match self.routed().read(|b| b.job(q, id)).await? {
            Some(info) => Ok(Some(info)),
            None if self.inner.hub.redis.is_some() => self.inner.hub.embedded.job(q, id).await,
            None => Ok(None),
        }
    }

    /// Counts by state, lifetime totals, and whether the queue is paused.
    pub async fn stats(&self) -> Result<QueueCounts> {
        let q = &self.inner.name;
        self.routed().read(|b| b.counts(q)).await
    }

    /// Stops handing jobs out (enqueueing continues).
    pub async fn pause(&self) -> Result<()> {
        self.set_paused(true).await
    }

    /// Hands jobs out again.
    pub async fn resume(&self) -> Result<()> {
        self.set_paused(false).await
    }

    async fn set_paused(&self, paused: bool) -> Result<()> {
        let q = &self.inner.name;
        let entry = || {
            recovery::Change::Paused {
                queue: q.clone(),
                paused,
            }
            .encode()
        };
        self.routed().write(entry, |b| b.set_paused(q, paused)).await
    }

    /// Jobs in `state`, paged (`limit` at most 1000): run order for waiting, delayed and
    /// active, newest first for completed and dead.
    pub async fn list(&self, state: JobState, offset: u64, limit: u64) -> Result<Vec<JobInfo>> {
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "must be 1 to 1000"));
        }
        let q = &self.inner.name;
        self.routed().read(|b| b.list(q, state, offset, limit)).await
    }

    /// Dead jobs, newest first.
    pub async fn dead(&self, offset: u64, limit: u64) -> Result<Vec<JobInfo>> {
        self.list(JobState::Dead, offset, limit).await
    }

    /// Moves dead job `id` (or, with `None`, every dead job) back to waiting with its
    /// attempts reset; returns how many moved.
    pub async fn retry_dead(&self, id: Option<&str>) -> Result<u64> {
        if let Some(id) = id {
            options::check_id(id)?;
        }
        let q = &self.inner.name;
        self.routed().call(|b| b.retry_dead(q, id)).await
    }

    /// Deletes dead job `id` (or every dead job); returns how many.
    pub async fn purge_dead(&self, id: Option<&str>) -> Result<u64> {
        if let Some(id) = id {
            options::check_id(id)?;
        }
        let q = &self.inner.name;
        self.routed().call(|b| b.purge_dead(q, id)).await
    }

    /// Completed, failed and dead jobs of this queue. On Redis, settled by any instance;
    /// otherwise, by this one. Slow receivers miss events (see `broadcast` lagging).
    pub fn events(&self) -> broadcast::Receiver<JobEvent> {
        let hub = &self.inner.hub;
        let rx = hub.sender(&self.inner.name).subscribe();
        if let Some(r) = &hub.redis {
            let mut subs = hub.subscriptions.lock().expect("jobs lock");
            subs.entry(self.inner.name.clone()).or_insert_with(|| {
                let task = recovery::listen(
                    r.core().clone(),
                    self.inner.name.clone(),
                    hub.instance.clone(),
                    hub.sender(&self.inner.name),
                );
                hub.routed.route().spawn(task)
            });
        }
        rx
    }

    /// Enqueues `payload` at every tick of `schedule` under `name` (1–64 of
    /// `A-Za-z0-9_.-`), once per tick across all instances running the same schedule,
    /// until the handle is dropped. The job ids are `NAME@TICK_MS`.
    pub fn schedule(
        &self,
        name: &str,
        schedule: Schedule,
        payload: Value,
        opts: EnqueueOptions,
    ) -> Result<ScheduleHandle> {
        options::check_queue(name).map_err(|_| Error::invalid("name", "must be 1 to 64 of A-Za-z0-9_.-"))?;
        self.prepare(&payload, &opts)?;
        let (queue, name) = (self.clone(), name.to_string());
        let task = self.inner.hub.routed.route().spawn(async move {
            let mut after = now_ms();
            while let Some(tick) = schedule.next_after(after) {
                tokio::time::sleep(Duration::from_millis(tick.saturating_sub(now_ms()))).await;
                let fired = match queue.prepare(&payload, &opts.clone().id(format!("{name}@{tick}"))) {
                    Ok(job) => queue.store(vec![job], Some((&name, tick))).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = fired {
                    tracing::warn!(queue = queue.name(), schedule = %name, tick, error = %e, "a scheduled job could not be enqueued");
                }
                after = tick.max(now_ms());
            }
        });
        Ok(ScheduleHandle { task })
    }
}

/// A running schedule; dropping it stops this instance's part in it.
pub struct ScheduleHandle {
    task: JoinHandle<()>,
}

impl Drop for ScheduleHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Queue {
    /// Moves spooled jobs whose place is Redis now (used by workers between fetches).
    pub(crate) async fn drain_spool(&self) -> Result<()> {
        let hub = &self.inner.hub;
        // Mode::Redis means Redis is configured and the breaker is closed.
        if hub.routed.route().mode() == crate::core::route::Mode::Redis {
            hub.spool.drain().await?;
        }
        Ok(())
    }
}
