//! Job queues in SQLite: the store when no Redis is configured, and the durable spool
//! while Redis is away. Every operation is one transaction on the store's thread; a lease
//! is the `token` and `lease_until_ms` columns of the job's row. Tokens start with `e-`
//! (Redis's start with `r-`), so a settle always reaches the store that leased the job.
//! The jobs of each queue and state are counted by triggers (table `job_counts`), so
//! [`JobBackend::counts`] reads five rows however long the queue is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::Notify;

use super::backend::{
    Backoff, Enqueued, Fetched, JobBackend, JobInfo, JobState, LeasedJob, NewJob, Outcome, QueueCounts, Retention,
    Settled,
};
use crate::core::embedded::EmbeddedStore;
use crate::core::random::token;
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// How often (in completions) finished jobs beyond the retention count are trimmed.
const TRIM_EVERY: i64 = 64;

/// Job queues in SQLite.
pub struct EmbeddedJobs {
    store: Arc<EmbeddedStore>,
    signals: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A spooled job on its way to Redis.
pub(crate) struct Spooled {
    pub queue: String,
    pub job: NewJob,
    /// The lease token if it was leased (its lease has expired).
    pub token: Option<String>,
}

const INFO_COLUMNS: &str = "id, state, payload, priority, attempts, max_attempts, last_error, progress, created_ms, \
                            run_at_ms, finished_ms, worker, lease_until_ms, unique_key";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobInfo> {
    let state: String = r.get(1)?;
    let state = JobState::parse(&state).unwrap_or(JobState::Dead);
    Ok(JobInfo {
        id: r.get(0)?,
        state,
        payload: r.get(2)?,
        priority: r.get(3)?,
        attempts: r.get(4)?,
        max_attempts: r.get(5)?,
        last_error: r.get(6)?,
        progress: r.get(7)?,
        created_ms: r.get::<_, i64>(8)? as u64,
        run_at_ms: r.get::<_, i64>(9)? as u64,
        finished_ms: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        worker: r.get(11)?,
        lease_until_ms: r
            .get::<_, Option<i64>>(12)?
            .filter(|_| state == JobState::Active)
            .map(|v| v as u64),
        unique_key: r.get(13)?,
    })
}

fn ensure_queue(tx: &Transaction<'_>, queue: &str) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO job_queues (queue) VALUES (?1)")?
        .execute([queue])?;
    Ok(())
}

fn bump(tx: &Transaction<'_>, queue: &str, counter: &str) -> Result<i64> {
    let sql = format!("UPDATE job_queues SET {counter} = {counter} + 1 WHERE queue = ?1 RETURNING {counter}");
    Ok(tx.prepare_cached(&sql)?.query_row([queue], |r| r.get(0))?)
}

/// Deletes `state` jobs beyond `count` (newest kept) or finished more than `age_ms` ago.
fn trim(tx: &Transaction<'_>, queue: &str, state: &str, count: u64, age_ms: u64, now: u64) -> Result<()> {
    tx.prepare_cached("DELETE FROM jobs WHERE queue = ?1 AND state = ?2 AND finished_ms < ?3")?
        .execute(params![queue, state, now as i64 - age_ms as i64])?;
    tx.prepare_cached(
        "DELETE FROM jobs WHERE queue = ?1 AND state = ?2 AND id NOT IN
           (SELECT id FROM jobs WHERE queue = ?1 AND state = ?2 ORDER BY finished_ms DESC LIMIT ?3)",
    )?
    .execute(params![queue, state, count as i64])?;
    Ok(())
}

fn kill(tx: &Transaction<'_>, queue: &str, id: &str, keep: Retention, now: u64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE jobs SET state = 'dead', finished_ms = ?3, token = NULL, lease_until_ms = NULL
         WHERE queue = ?1 AND id = ?2",
    )?
    .execute(params![queue, id, now as i64])?;
    trim(tx, queue, "dead", keep.dead_count, keep.dead_age_ms, now)
}

fn enqueue_tx(c: &mut Connection, queue: &str, jobs: &[NewJob], tick: Option<(&str, u64)>) -> Result<Vec<Enqueued>> {
    let now = now_ms();
    let tx = c.transaction()?;
    ensure_queue(&tx, queue)?;
    if let Some((name, at)) = tick {
        let last: Option<i64> = tx
            .prepare_cached("SELECT tick FROM job_schedule_ticks WHERE queue = ?1 AND name = ?2")?
            .query_row([queue, name], |r| r.get(0))
            .optional()?;
        if last.is_some_and(|l| l >= at as i64) {
            return Ok(Vec::new());
        }
        tx.prepare_cached("INSERT OR REPLACE INTO job_schedule_ticks (queue, name, tick) VALUES (?1, ?2, ?3)")?
            .execute(params![queue, name, at as i64])?;
    }
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let mut existing: Option<String> = tx
            .prepare_cached("SELECT id FROM jobs WHERE queue = ?1 AND id = ?2")?
            .query_row([queue, &j.id], |r| r.get(0))
            .optional()?;
        if existing.is_none()
            && let Some(uk) = &j.unique_key
        {
            existing = tx
                .prepare_cached(
                    "SELECT id FROM jobs WHERE queue = ?1 AND unique_key = ?2
                     AND state IN ('waiting', 'delayed', 'active')",
                )?
                .query_row([queue, uk], |r| r.get(0))
                .optional()?;
        }
        if let Some(id) = existing {
            out.push(Enqueued { id, created: false });
            continue;
        }
        let seq = bump(&tx, queue, "seq")?;
        let run_at = if j.run_at_ms > 0 { j.run_at_ms } else { now + j.delay_ms };
        let state = if run_at > now { "delayed" } else { "waiting" };
        let created = if j.created_ms > 0 { j.created_ms } else { now };
        let (kind, base, max) = j.backoff.encode();
        tx.prepare_cached(
            "INSERT INTO jobs (queue, id, seq, state, payload, priority, attempts, max_attempts, backoff_kind,
               backoff_ms, backoff_max_ms, timeout_ms, unique_key, created_ms, run_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            queue,
            j.id,
            seq,
            state,
            j.payload,
            j.priority,
            j.attempts,
            j.max_attempts,
            kind,
            base as i64,
            max as i64,
            j.timeout_ms as i64,
            j.unique_key,
            created as i64,
            run_at as i64
        ])?;
        out.push(Enqueued {
            id: j.id.clone(),
            created: true,
        });
    }
    tx.commit()?;
    Ok(out)
}

fn fetch_tx(
    c: &mut Connection,
    queue: &str,
    worker: &str,
    lease_ms: u64,
    max: usize,
    keep: Retention,
) -> Result<Fetched> {
    let now = now_ms();
    let tx = c.transaction()?;
    // A fetch from a queue nobody enqueued to creates nothing.
    let paused: bool = tx
        .prepare_cached("SELECT paused FROM job_queues WHERE queue = ?1")?
        .query_row([queue], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    if paused {
        return Ok(Fetched {
            paused: true,
            ..Fetched::default()
        });
    }
    tx.prepare_cached("UPDATE jobs SET state = 'waiting' WHERE queue = ?1 AND state = 'delayed' AND run_at_ms <= ?2")?
        .execute(params![queue, now as i64])?;
    let expired: Vec<(String, u32, u32)> = tx
        .prepare_cached(
            "SELECT id, attempts, max_attempts FROM jobs
             WHERE queue = ?1 AND state = 'active' AND lease_until_ms <= ?2 LIMIT 100",
        )?
        .query_map(params![queue, now as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, attempts, max_attempts) in expired {
        bump(&tx, queue, "expired_total")?;
        bump(&tx, queue, "failed_total")?;
        tx.prepare_cached(
            "UPDATE jobs SET state = 'waiting', token = NULL, lease_until_ms = NULL,
               last_error = 'lease expired (worker died or stalled)' WHERE queue = ?1 AND id = ?2",
        )?
        .execute([queue, &id])?;
        if attempts >= max_attempts {
            kill(&tx, queue, &id, keep, now)?;
        }
    }
    let picked: Vec<LeasedJob> = tx
        .prepare_cached(
            "SELECT id, payload, attempts, max_attempts, priority, timeout_ms, created_ms, progress FROM jobs
             WHERE queue = ?1 AND state = 'waiting' ORDER BY priority DESC, seq LIMIT ?2",
        )?
        .query_map(params![queue, max as i64], |r| {
            Ok(LeasedJob {
                id: r.get(0)?,
                token: String::new(),
                payload: r.get(1)?,
                attempt: r.get::<_, u32>(2)? + 1,
                max_attempts: r.get(3)?,
                priority: r.get(4)?,
                timeout_ms: r.get::<_, i64>(5)? as u64,
                created_ms: r.get::<_, i64>(6)? as u64,
                progress: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let base = format!("e-{}.", token());
    let mut jobs = Vec::with_capacity(picked.len());
    for (i, mut job) in picked.into_iter().enumerate() {
        job.token = format!("{base}{}", i + 1);
        tx.prepare_cached(
            "UPDATE jobs SET state = 'active', attempts = attempts + 1, token = ?3, worker = ?4,
               lease_until_ms = ?5, run_at_ms = ?6 WHERE queue = ?1 AND id = ?2",
        )?
        .execute(params![
            queue,
            job.id,
            job.token,
            worker,
            (now + lease_ms) as i64,
            now as i64
        ])?;
        jobs.push(job);
    }
    let next_due_ms = if jobs.is_empty() {
        tx.prepare_cached("SELECT min(run_at_ms) FROM jobs WHERE queue = ?1 AND state = 'delayed'")?
            .query_row([queue], |r| r.get::<_, Option<i64>>(0))?
            .map(|v| v as u64)
    } else {
        None
    };
    tx.commit()?;
    Ok(Fetched {
        jobs,
        paused: false,
        next_due_ms,
    })
}

fn settle_tx(
    c: &mut Connection,
    queue: &str,
    id: &str,
    token: &str,
    outcome: &Outcome,
    keep: Retention,
) -> Result<Settled> {
    let now = now_ms();
    let tx = c.transaction()?;
    let row: Option<(u32, u32, u8, i64, i64)> = tx
        .prepare_cached(
            "SELECT attempts, max_attempts, backoff_kind, backoff_ms, backoff_max_ms FROM jobs
             WHERE queue = ?1 AND id = ?2 AND state = 'active' AND token = ?3",
        )?
        .query_row([queue, id, token], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((attempts, max_attempts, kind, base, max)) = row else {
        return Ok(Settled::LeaseLost);
    };
    let settled = match outcome {
        Outcome::Ack => {
            let total = bump(&tx, queue, "completed_total")?;
            if keep.completed_count == 0 {
                tx.prepare_cached("DELETE FROM jobs WHERE queue = ?1 AND id = ?2")?
                    .execute([queue, id])?;
            } else {
                tx.prepare_cached(
                    "UPDATE jobs SET state = 'completed', finished_ms = ?3, token = NULL, lease_until_ms = NULL
                     WHERE queue = ?1 AND id = ?2",
                )?
                .execute(params![queue, id, now as i64])?;
                if total % TRIM_EVERY == 0 {
                    trim(
                        &tx,
                        queue,
                        "completed",
                        keep.completed_count,
                        keep.completed_age_ms,
                        now,
                    )?;
                }
            }
            Settled::Completed
        }
        Outcome::Release => {
            tx.prepare_cached(
                "UPDATE jobs SET state = 'waiting', attempts = attempts - 1, token = NULL, lease_until_ms = NULL
                 WHERE queue = ?1 AND id = ?2",
            )?
            .execute([queue, id])?;
            Settled::Released
        }
        Outcome::Fail(error) => {
            bump(&tx, queue, "failed_total")?;
            tx.prepare_cached("UPDATE jobs SET last_error = ?3 WHERE queue = ?1 AND id = ?2")?
                .execute([queue, id, error])?;
            if attempts >= max_attempts {
                kill(&tx, queue, id, keep, now)?;
                Settled::Dead
            } else {
                let backoff = Backoff::decode(kind, base as u64, max as u64);
                let run_at = now + backoff.delay_ms(attempts, rand::random());
                tx.prepare_cached(
                    "UPDATE jobs SET state = 'delayed', run_at_ms = ?3, token = NULL, lease_until_ms = NULL
                     WHERE queue = ?1 AND id = ?2",
                )?
                .execute(params![queue, id, run_at as i64])?;
                Settled::Retrying
            }
        }
    };
    tx.commit()?;
    Ok(settled)
}

fn counts_tx(c: &mut Connection, queue: &str) -> Result<QueueCounts> {
    let mut counts = QueueCounts::default();
    let by_state: Vec<(String, u64)> = c
        .prepare_cached("SELECT state, n FROM job_counts WHERE queue = ?1")?
        .query_map([queue], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (state, n) in by_state {
        match JobState::parse(&state) {
            Some(JobState::Waiting) => counts.waiting = n,
            Some(JobState::Delayed) => counts.delayed = n,
            Some(JobState::Active) => counts.active = n,
            Some(JobState::Completed) => counts.completed = n,
            Some(JobState::Dead) => counts.dead = n,
            None => {}
        }
    }
    let meta: Option<(bool, u64, u64, u64)> = c
        .prepare_cached("SELECT paused, failed_total, completed_total, expired_total FROM job_queues WHERE queue = ?1")?
        .query_row([queue], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    if let Some((paused, failed, completed, expired)) = meta {
        counts.paused = paused;
        counts.failed_total = failed;
        counts.completed_total = completed;
        counts.lease_expired_total = expired;
    }
    Ok(counts)
}

fn dead_tx(c: &mut Connection, queue: &str, id: Option<&str>, retry: bool) -> Result<u64> {
    let tx = c.transaction()?;
    let ids: Vec<(String, Option<String>)> = tx
        .prepare_cached(
            "SELECT id, unique_key FROM jobs WHERE queue = ?1 AND state = 'dead' AND (?2 IS NULL OR id = ?2)
             LIMIT 10000",
        )?
        .query_map(params![queue, id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, unique_key) in &ids {
        if !retry {
            tx.prepare_cached("DELETE FROM jobs WHERE queue = ?1 AND id = ?2")?
                .execute([queue, id])?;
            continue;
        }
        // A job with the same unique key may be pending by now; the retried one gives its key up.
        let taken = match unique_key {
            Some(uk) => tx
                .prepare_cached(
                    "SELECT 1 FROM jobs WHERE queue = ?1 AND unique_key = ?2 AND state IN ('waiting', 'delayed', 'active')",
                )?
                .exists([queue, uk])?,
            None => false,
        };
        tx.prepare_cached(
            "UPDATE jobs SET state = 'waiting', attempts = 0, finished_ms = NULL, worker = NULL,
               unique_key = CASE WHEN ?3 THEN NULL ELSE unique_key END WHERE queue = ?1 AND id = ?2",
        )?
        .execute(params![queue, id, taken])?;
    }
    tx.commit()?;
    Ok(ids.len() as u64)
}

impl EmbeddedJobs {
    pub(crate) fn new(store: Arc<EmbeddedStore>) -> Self {
        EmbeddedJobs {
            store,
            signals: Mutex::default(),
        }
    }

    fn signal_of(&self, queue: &str) -> Arc<Notify> {
        self.signals
            .lock()
            .expect("signals lock")
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    fn signal(&self, queue: &str) {
        let s = self.signal_of(queue);
        s.notify_waiters();
        s.notify_one();
    }

    /// Every queue with a row in this store.
    pub(crate) async fn queue_names(&self) -> Result<Vec<String>> {
        self.store
            .sql("job_queues", |c| {
                Ok(c.prepare_cached("SELECT queue FROM job_queues ORDER BY queue")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Up to `limit` jobs of the spool that belong in Redis now that it is back: waiting
    /// and delayed ones, and leased ones whose lease expired; oldest first.
    pub(crate) async fn movable(&self, limit: usize) -> Result<Vec<Spooled>> {
        self.store
            .sql("job_spool_read", move |c| {
                let now = now_ms() as i64;
                let rows = c
                    .prepare_cached(
                        "SELECT queue, id, state, payload, priority, attempts, max_attempts, backoff_kind, backoff_ms,
                           backoff_max_ms, timeout_ms, unique_key, created_ms, run_at_ms, token FROM jobs
                         WHERE state IN ('waiting', 'delayed') OR (state = 'active' AND lease_until_ms <= ?1)
                         ORDER BY queue, seq LIMIT ?2",
                    )?
                    .query_map(params![now, limit as i64], |r| {
                        let state: String = r.get(2)?;
                        let run_at: i64 = r.get(13)?;
                        Ok(Spooled {
                            queue: r.get(0)?,
                            job: NewJob {
                                id: r.get(1)?,
                                payload: r.get(3)?,
                                priority: r.get(4)?,
                                attempts: r.get(5)?,
                                max_attempts: r.get(6)?,
                                backoff: Backoff::decode(
                                    r.get(7)?,
                                    r.get::<_, i64>(8)? as u64,
                                    r.get::<_, i64>(9)? as u64,
                                ),
                                timeout_ms: r.get::<_, i64>(10)? as u64,
                                unique_key: r.get(11)?,
                                created_ms: r.get::<_, i64>(12)? as u64,
                                run_at_ms: if state == "delayed" { run_at as u64 } else { 0 },
                                delay_ms: 0,
                            },
                            token: r.get(14)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(rows)
            })
            .await
    }

    /// Deletes spooled jobs that were moved to Redis, unless they changed since they were
    /// read (then they stay, and may run twice: delivery is at least once).
    pub(crate) async fn remove_moved(&self, moved: Vec<(String, String, Option<String>)>) -> Result<()> {
        self.store
            .sql("job_spool_remove", move |c| {
                let tx = c.transaction()?;
                for (queue, id, token) in &moved {
                    tx.prepare_cached(
                        "DELETE FROM jobs WHERE queue = ?1 AND id = ?2 AND (state IN ('waiting', 'delayed')
                           OR (state = 'active' AND token = ?3))",
                    )?
                    .execute(params![queue, id, token])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

#[async_trait::async_trait]
impl JobBackend for EmbeddedJobs {
    async fn enqueue(&self, queue: &str, jobs: &[NewJob], tick: Option<(&str, u64)>) -> Result<Vec<Enqueued>> {
        let (q, jobs_owned) = (queue.to_string(), jobs.to_vec());
        let tick = tick.map(|(n, t)| (n.to_string(), t));
        let out = self
            .store
            .sql("job_enqueue", move |c| {
                enqueue_tx(c, &q, &jobs_owned, tick.as_ref().map(|(n, t)| (n.as_str(), *t)))
            })
            .await?;
        if out.iter().any(|e| e.created) {
            self.signal(queue);
        }
        Ok(out)
    }

    async fn fetch(&self, queue: &str, worker: &str, lease_ms: u64, max: usize, keep: Retention) -> Result<Fetched> {
        let (q, w) = (queue.to_string(), worker.to_string());
        self.store
            .sql("job_fetch", move |c| fetch_tx(c, &q, &w, lease_ms, max, keep))
            .await
    }

    async fn settle(&self, queue: &str, id: &str, token: &str, outcome: &Outcome, keep: Retention) -> Result<Settled> {
        let op = crate::core::journal::pending();
        if token.starts_with("r-") {
            // Leased from Redis, which is away: recorded for the way back.
            if let Some(op) = op {
                self.store.sql("job_settle_deferred", move |c| op.record(c)).await?;
            }
            return Ok(Settled::Deferred);
        }
        let (q, i, t, o) = (queue.to_string(), id.to_string(), token.to_string(), outcome.clone());
        let settled = self
            .store
            .sql("job_settle", move |c| settle_tx(c, &q, &i, &t, &o, keep))
            .await?;
        if settled == Settled::Released {
            self.signal(queue);
        }
        Ok(settled)
    }

    async fn heartbeat(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        lease_ms: u64,
        progress: Option<&str>,
    ) -> Result<bool> {
        if token.starts_with("r-") {
            // Leased from Redis, which is away: its lease cannot be renewed there now (and
            // an instance that still reaches Redis may hand the job out when it ends).
            // Saying so, rather than pretending: finishing and acking it is recorded.
            return Err(Error::Unavailable(format!(
                "job {id} is leased from redis, which is away: its lease cannot be renewed until redis \
                 is back (an ack or fail now is recorded and applied then)"
            )));
        }
        let (q, i, t, p) = (
            queue.to_string(),
            id.to_string(),
            token.to_string(),
            progress.map(str::to_string),
        );
        self.store
            .sql("job_heartbeat", move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE jobs SET lease_until_ms = ?4, progress = COALESCE(?5, progress)
                         WHERE queue = ?1 AND id = ?2 AND state = 'active' AND token = ?3",
                    )?
                    .execute(params![q, i, t, (now_ms() + lease_ms) as i64, p])?;
                Ok(n == 1)
            })
            .await
    }

    async fn job(&self, queue: &str, id: &str) -> Result<Option<JobInfo>> {
        let (q, i) = (queue.to_string(), id.to_string());
        self.store
            .sql("job_get", move |c| {
                Ok(
                    c.prepare_cached(&format!("SELECT {INFO_COLUMNS} FROM jobs WHERE queue = ?1 AND id = ?2"))?
                        .query_row([q, i], info_row)
                        .optional()?,
                )
            })
            .await
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        let q = queue.to_string();
        self.store.sql("job_counts", move |c| counts_tx(c, &q)).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        let (q, op) = (queue.to_string(), crate::core::journal::pending());
        self.store
            .sql("job_pause", move |c| {
                let tx = c.transaction()?;
                ensure_queue(&tx, &q)?;
                tx.execute("UPDATE job_queues SET paused = ?2 WHERE queue = ?1", params![q, paused])?;
                if let Some(op) = op {
                    op.record(&tx)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        if !paused {
            self.signal(queue);
        }
        Ok(())
    }

    async fn list(&self, queue: &str, state: JobState, offset: u64, limit: u64) -> Result<Vec<JobInfo>> {
        let order = match state {
            JobState::Waiting => "priority DESC, seq",
            JobState::Delayed => "run_at_ms, seq",
            JobState::Active => "lease_until_ms, seq",
            JobState::Completed | JobState::Dead => "finished_ms DESC, seq DESC",
        };
        let sql = format!(
            "SELECT {INFO_COLUMNS} FROM jobs WHERE queue = ?1 AND state = ?2 ORDER BY {order} LIMIT ?3 OFFSET ?4"
        );
        let q = queue.to_string();
        self.store
            .sql("job_list", move |c| {
                Ok(c.prepare_cached(&sql)?
                    .query_map(params![q, state.as_str(), limit as i64, offset as i64], info_row)?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn retry_dead(&self, queue: &str, id: Option<&str>) -> Result<u64> {
        let (q, i) = (queue.to_string(), id.map(str::to_string));
        let n = self
            .store
            .sql("job_retry_dead", move |c| dead_tx(c, &q, i.as_deref(), true))
            .await?;
        if n > 0 {
            self.signal(queue);
        }
        Ok(n)
    }

    async fn purge_dead(&self, queue: &str, id: Option<&str>) -> Result<u64> {
        let (q, i) = (queue.to_string(), id.map(str::to_string));
        self.store
            .sql("job_purge_dead", move |c| dead_tx(c, &q, i.as_deref(), false))
            .await
    }

    async fn wait_for_work(&self, queue: &str, max_ms: u64) -> Result<()> {
        let signal = self.signal_of(queue);
        let _ = tokio::time::timeout(Duration::from_millis(max_ms), signal.notified()).await;
        Ok(())
    }
}
