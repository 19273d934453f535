//! The operation journal of an outage: what Redis must be told when it returns.
//!
//! While the breaker is open, every write a capability makes through
//! [`Routed::write`](super::route::Routed::write) is described as an **operation** — a
//! field patch with the fields it set, a delete, a revoke, a cache invalidation — never as
//! the state it left behind. The route stamps it with the [hybrid-logical
//! clock](super::hlc) and hands it to the embedded backend serving the write as a
//! [`Pending`]; the backend records it **in the same SQLite transaction** as the write
//! ([`Pending::record`]), or drops it when the write did not take effect. So a crash can
//! lose neither half alone.
//!
//! On recovery the route hands each capability its operations in order
//! ([`Recovery::replay`](super::route::Recovery::replay)); an entry is deleted only after
//! its replay succeeded (at-least-once: replays must be idempotent). An entry that Redis
//! refuses for good (`NOPERM`, `OOM`, `WRONGTYPE`, …) is moved to the **dead-letter**
//! table, shown in `health()` and counted in `redkit_journal_dead_lettered_total`, and
//! recovery goes on without it. The journal survives a restart of the process: entries
//! left by a previous run are replayed when their capability registers again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde::Serialize;

use super::embedded::EmbeddedStore;
use crate::error::Result;
use crate::stats::now_ms;

/// One journaled operation.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its place in the journal.
    pub seq: i64,
    /// When it was made (hybrid-logical clock, µs since the Unix epoch).
    pub ts: u64,
    /// The capability's encoding of the operation.
    pub op: Vec<u8>,
}

tokio::task_local! {
    static PENDING: Arc<Mutex<Option<Pending>>>;
}

/// An operation waiting to be recorded by the embedded backend that serves a fallback
/// write. Get it with [`pending`] before sending the write to the SQLite thread.
#[derive(Debug)]
pub struct Pending {
    capability: &'static str,
    ts: u64,
    op: Vec<u8>,
}

impl Pending {
    pub(crate) fn new(capability: &'static str, ts: u64, op: Vec<u8>) -> Self {
        Pending { capability, ts, op }
    }

    /// The operation's timestamp (hybrid-logical clock, µs).
    pub fn ts(&self) -> u64 {
        self.ts
    }

    pub(crate) fn into_op(self) -> Vec<u8> {
        self.op
    }

    /// Appends the operation inside the caller's transaction.
    pub fn record(self, c: &Connection) -> Result<()> {
        let Pending { capability, ts, op } = self;
        append_in(c, capability, ts, &op)
    }

    /// Appends `op` instead of the operation the front described (for a backend whose
    /// operation depends on what it decided, such as the fence a lock was granted).
    pub fn record_as(self, c: &Connection, op: &[u8]) -> Result<()> {
        append_in(c, self.capability, self.ts, op)
    }
}

/// The operation the current fallback write must record, if this call is one. Takes it:
/// a second call returns `None`.
pub fn pending() -> Option<Pending> {
    PENDING
        .try_with(|slot| slot.lock().expect("journal slot").take())
        .ok()
        .flatten()
}

/// Runs `write` with `op` available to [`pending`]; returns the write's result and the
/// operation again if the backend never took it.
pub(crate) async fn with_pending<T>(op: Pending, write: impl std::future::Future<Output = T>) -> (T, Option<Pending>) {
    let slot = Arc::new(Mutex::new(Some(op)));
    let out = PENDING.scope(slot.clone(), write).await;
    let left = slot.lock().expect("journal slot").take();
    (out, left)
}

fn append_in(c: &Connection, capability: &str, ts: u64, op: &[u8]) -> Result<()> {
    c.prepare_cached("INSERT INTO journal (capability, entry, at_ms, ts) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![capability, op, now_ms() as i64, ts as i64])?;
    Ok(())
}

/// Dead-lettered operations of one capability, for `health()`.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    /// How many are kept.
    pub count: u64,
    /// The latest one's error.
    pub last_error: String,
    /// When the latest one was dead-lettered (ms since the Unix epoch).
    pub last_at_ms: u64,
}

/// Most dead-lettered operations kept; older ones are dropped first.
const MAX_DEAD: i64 = 10_000;

/// Handle to the journal tables.
#[derive(Clone)]
pub struct Journal {
    store: Arc<EmbeddedStore>,
}

impl Journal {
    pub(crate) fn new(store: Arc<EmbeddedStore>) -> Self {
        Journal { store }
    }

    /// Appends one operation in a transaction of its own (for operations decided after
    /// the write, such as a job settle the embedded store deferred).
    pub async fn append(&self, capability: &'static str, ts: u64, op: Vec<u8>) -> Result<()> {
        self.store
            .sql("journal_append", move |c| append_in(c, capability, ts, &op))
            .await
    }

    /// The oldest `limit` operations of `capability`.
    pub async fn oldest(&self, capability: &'static str, limit: usize) -> Result<Vec<Entry>> {
        self.store
            .sql("journal_read", move |c| {
                let mut stmt =
                    c.prepare_cached("SELECT seq, ts, entry FROM journal WHERE capability = ?1 ORDER BY seq LIMIT ?2")?;
                let rows = stmt.query_map(params![capability, limit as i64], |r| {
                    Ok(Entry {
                        seq: r.get(0)?,
                        ts: r.get::<_, i64>(1)? as u64,
                        op: r.get(2)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// Deletes the operations of `capability` up to and including `seq`.
    pub async fn remove_through(&self, capability: &'static str, seq: i64) -> Result<()> {
        self.store
            .sql("journal_remove", move |c| {
                c.execute(
                    "DELETE FROM journal WHERE capability = ?1 AND seq <= ?2",
                    params![capability, seq],
                )?;
                Ok(())
            })
            .await
    }

    /// Moves one operation Redis refused for good to the dead-letter table.
    pub async fn dead_letter(&self, capability: &'static str, entry: &Entry, error: String) -> Result<()> {
        let entry = entry.clone();
        tracing::error!(capability, seq = entry.seq, %error, "a journaled operation was refused by redis for good; dead-lettered");
        metrics::counter!("redkit_journal_dead_lettered_total", "capability" => capability).increment(1);
        self.store
            .sql("journal_dead_letter", move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "INSERT INTO journal_dead (capability, entry, ts, at_ms, error) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![capability, entry.op, entry.ts as i64, now_ms() as i64, error],
                )?;
                tx.execute("DELETE FROM journal WHERE seq = ?1", [entry.seq])?;
                tx.execute(
                    "DELETE FROM journal_dead WHERE seq <= (SELECT MAX(seq) FROM journal_dead) - ?1",
                    [MAX_DEAD],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Operations waiting, per capability.
    pub async fn pending(&self) -> Result<BTreeMap<String, u64>> {
        self.store
            .sql("journal_pending", |c| {
                let mut stmt = c.prepare_cached("SELECT capability, COUNT(*) FROM journal GROUP BY capability")?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
                Ok(rows.collect::<rusqlite::Result<BTreeMap<_, _>>>()?)
            })
            .await
    }

    /// Dead-lettered operations, per capability.
    pub async fn dead_letters(&self) -> Result<BTreeMap<String, DeadLetters>> {
        self.store
            .sql("journal_dead_letters", |c| {
                let mut stmt =
                    c.prepare_cached("SELECT capability, COUNT(*), MAX(seq) FROM journal_dead GROUP BY capability")?;
                let groups: Vec<(String, i64, i64)> = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut last = c.prepare_cached("SELECT error, at_ms FROM journal_dead WHERE seq = ?1")?;
                let mut out = BTreeMap::new();
                for (capability, count, seq) in groups {
                    let (last_error, at): (String, i64) = last.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    out.insert(
                        capability,
                        DeadLetters {
                            count: count as u64,
                            last_error,
                            last_at_ms: at as u64,
                        },
                    );
                }
                Ok(out)
            })
            .await
    }
}
