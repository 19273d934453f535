//! The session operations an outage journals, and how they are replayed.
//!
//! Operations, not states: a patch carries only the fields it set or removed, so replaying
//! it never overwrites a field it did not touch, and each field it touches changes only if
//! Redis's stamp for that field is older than the patch's. A delete or revoke always wins
//! (ids are never reused; a tombstone or the user's revoke marker keeps the session from
//! coming back, whoever replays later). Sessions the outage created, and the idle timers
//! of sessions it used, reach Redis through [`Recovery::catch_up`]: each such session is
//! written as the outage left it unless it was deleted or revoked meanwhile, or its idle
//! timer moves forward. (A new session needs no journaled operation: its id is new, so
//! nothing can conflict with it.)
//!
//! Operations on different sessions commute (a revoke and a later-replayed create meet at
//! the user's revoke marker), so replay runs them concurrently, each session's in order.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use super::backend::Patch;
use super::embedded::EmbeddedSessions;
use super::redis::RedisSessions;
use crate::core::journal::{Entry, Journal};
use crate::core::route::{BoxFuture, Closed, Recovery};
use crate::error::{ErrorKind, Result};

/// One journaled session operation.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Fields set or removed.
    Patch { id: String, patch: Patch },
    /// A logout, or a rotation's deletion (`moved_to`: the new id, which operations on
    /// the old one follow); `user` and `deadline_ms` when this instance knew them.
    Delete {
        id: String,
        user: Option<String>,
        deadline_ms: u64,
        #[serde(default)]
        moved_to: Option<String>,
    },
    /// "Log out everywhere".
    RevokeAll { user: String },
}

impl Op {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("session operations serialize")
    }

    /// What it applies to: operations on different subjects commute.
    fn subject(&self) -> String {
        match self {
            Op::Patch { id, .. } | Op::Delete { id, .. } => format!("s:{id}"),
            Op::RevokeAll { user } => format!("u:{user}"),
        }
    }
}

/// Sessions replayed at once (catch-up batches run whole).
const CONCURRENCY: usize = 64;

/// Sessions touched by the outage, per catch-up step.
const CATCH_UP_BATCH: usize = 256;

/// The sessions' way back to Redis.
pub(crate) struct SessionRecovery {
    pub redis: Arc<RedisSessions>,
    pub local: Arc<EmbeddedSessions>,
    pub journal: Journal,
}

impl SessionRecovery {
    /// One session's (or user's) operations, in order.
    async fn replay_chain(&self, chain: Vec<(u64, Op)>) -> Result<()> {
        for (ts, op) in chain {
            match op {
                Op::Patch { id, patch } => self.redis.replay_patch(&id, &patch, ts).await?,
                Op::Delete {
                    id,
                    user,
                    deadline_ms,
                    moved_to,
                } => {
                    self.redis
                        .replay_delete(&id, user.as_deref(), ts, deadline_ms, moved_to.as_deref(), None)
                        .await?;
                }
                Op::RevokeAll { user } => {
                    self.redis.revoke(&user, Some(ts)).await?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Recovery for SessionRecovery {
    fn capability(&self) -> &'static str {
        "session"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        let mut chains: Vec<Vec<(u64, Op)>> = Vec::new();
        let mut by_subject: HashMap<String, usize> = HashMap::new();
        for entry in entries {
            let op: Op = serde_json::from_slice(&entry.op)?;
            let chain = *by_subject.entry(op.subject()).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            // A rotation ties the new id to the old one's chain: what happens to the new id
            // later must not be replayed before the rotation that made it.
            if let Op::Delete {
                moved_to: Some(new), ..
            } = &op
            {
                by_subject.insert(format!("s:{new}"), chain);
            }
            chains[chain].push((entry.ts, op));
        }
        stream::iter(chains)
            .map(|chain| self.replay_chain(chain))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn catch_up(&self) -> Result<bool> {
        let touched = self.local.dirty(CATCH_UP_BATCH).await?;
        let full = touched.len() == CATCH_UP_BATCH;
        let outcomes = join_all(touched.iter().map(|s| self.redis.ensure(s, s.version.max(1)))).await;
        for (s, outcome) in touched.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
                // Refused for good (the key holds something else): kept for an operator
                // rather than keeping Redis out of service.
                Err(e) => {
                    let entry = Entry {
                        seq: -1,
                        ts: s.version,
                        op: serde_json::to_vec(&serde_json::json!({ "ensure": s }))?,
                    };
                    self.journal.dead_letter("session", &entry, e.to_string()).await?;
                }
            }
        }
        self.local.synced(touched).await?;
        Ok(full)
    }

    fn seal(&self) -> BoxFuture<'static, Result<()>> {
        self.local.seal()
    }

    async fn after_close(&self, _after: Closed) -> Result<()> {
        self.local.forget_outage().await?;
        self.local.sweep().await.map(drop)
    }
}
