//! The way back after an outage, and the cross-instance event listener.
//!
//! **Journal.** Settles of jobs leased from Redis before the outage, and pause/resume,
//! are journaled while Redis is away and replayed in order. A replayed ack completes the
//! job whatever its lease (the work was done), unless it is finished already; a replayed
//! fail or release applies only if the lease is still the one it names.
//!
//! **Spool.** Once Redis serves again, waiting and delayed jobs of the SQLite queue move
//! into Redis in enqueue order, in batches (read, enqueue with ids kept, delete what did
//! not change meanwhile), in the background: no request waits for it, and jobs enqueued
//! after the breaker closed go straight to Redis. Jobs leased from the spool stay until
//! their workers settle them; if a lease ends first, workers move the job to Redis too.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::backend::{JobBackend, Outcome, Retention};
use super::embedded::EmbeddedJobs;
use super::redis::{RedisJobs, events_channel};
use super::stats::JobCounters;
use super::{JobEvent, JobEventKind};
use crate::core::journal::Entry;
use crate::core::redis::RedisCore;
use crate::core::route::{Closed, Recovery};
use crate::error::Result;

/// Journaled in fallback, applied to Redis on recovery.
#[derive(Serialize, Deserialize)]
pub(crate) enum Change {
    Settle {
        queue: String,
        id: String,
        token: String,
        outcome: Outcome,
        keep: Retention,
    },
    Paused {
        queue: String,
        paused: bool,
    },
}

impl Change {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("changes serialize")
    }
}

/// Jobs per spool batch.
const SPOOL_BATCH: usize = 500;

/// Moves the spool into Redis and replays the journal.
#[derive(Clone)]
pub(crate) struct Spool {
    redis: Option<Arc<RedisJobs>>,
    embedded: Arc<EmbeddedJobs>,
    /// One drain at a time (recovery and workers' periodic drains).
    draining: Arc<tokio::sync::Mutex<()>>,
    counters: Arc<JobCounters>,
}

impl Spool {
    pub(crate) fn new(redis: Option<Arc<RedisJobs>>, embedded: Arc<EmbeddedJobs>, counters: Arc<JobCounters>) -> Self {
        Spool {
            redis,
            embedded,
            draining: Arc::default(),
            counters,
        }
    }

    /// Moves every movable spooled job into Redis, oldest first.
    pub(crate) async fn drain(&self) -> Result<u64> {
        let Some(redis) = &self.redis else { return Ok(0) };
        let _one = self.draining.lock().await;
        let mut moved_total = 0;
        loop {
            let batch = self.embedded.movable(SPOOL_BATCH).await?;
            if batch.is_empty() {
                return Ok(moved_total);
            }
            let mut start = 0;
            while start < batch.len() {
                let queue = &batch[start].queue;
                let end = batch[start..]
                    .iter()
                    .position(|s| &s.queue != queue)
                    .map_or(batch.len(), |n| start + n);
                let jobs: Vec<_> = batch[start..end].iter().map(|s| s.job.clone()).collect();
                redis.enqueue(queue, &jobs, None).await?;
                redis.register(queue).await?;
                start = end;
            }
            let n = batch.len();
            let moved = batch.into_iter().map(|s| (s.queue, s.job.id, s.token)).collect();
            self.embedded.remove_moved(moved).await?;
            moved_total += n as u64;
            metrics::counter!("redkit_jobs_spool_moved_total").increment(n as u64);
            self.counters
                .spool_moved
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            self.counters
                .spool_moved_at_ms
                .store(crate::stats::now_ms(), std::sync::atomic::Ordering::Relaxed);
            if n < SPOOL_BATCH {
                return Ok(moved_total);
            }
        }
    }
}

#[async_trait::async_trait]
impl Recovery for Spool {
    fn capability(&self) -> &'static str {
        "jobs"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        let Some(redis) = &self.redis else { return Ok(()) };
        for e in entries {
            let change: Change = serde_json::from_slice(&e.op)?;
            match change {
                Change::Settle {
                    queue,
                    id,
                    token,
                    outcome,
                    keep,
                } => {
                    redis.settle_inner(&queue, &id, &token, &outcome, keep, true).await?;
                }
                Change::Paused { queue, paused } => redis.set_paused(&queue, paused).await?,
            }
        }
        Ok(())
    }

    async fn after_close(&self, _after: Closed) -> Result<()> {
        let moved = self.drain().await?;
        if moved > 0 {
            tracing::info!(moved, "moved spooled jobs into redis");
        }
        Ok(())
    }
}

/// Forwards other instances' announcements of `queue` to `events`, resubscribing after
/// a broken connection.
pub(crate) async fn listen(core: Arc<RedisCore>, queue: String, instance: String, events: broadcast::Sender<JobEvent>) {
    let channel = events_channel(&queue);
    loop {
        if let Ok(mut pubsub) = core.pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Ok(text) = msg.get_payload::<String>() else {
                    continue;
                };
                let mut parts = text.splitn(4, ' ');
                let (Some(kind), Some(_attempt), Some(from), Some(id)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if from == instance {
                    continue;
                }
                let kind = match kind {
                    "completed" => JobEventKind::Completed,
                    "failed" => JobEventKind::Failed,
                    "dead" => JobEventKind::Dead,
                    _ => continue,
                };
                let _ = events.send(JobEvent {
                    queue: queue.clone(),
                    id: id.to_string(),
                    kind,
                });
            }
        }
        tokio::time::sleep(crate::core::random::jittered(std::time::Duration::from_secs(1))).await;
    }
}
