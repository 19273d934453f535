//! The failover journal: writes made in `fallback` mode that Redis must see on recovery.
//!
//! Entries are opaque bytes, owned by the capability that wrote them, kept durably in the
//! embedded SQLite database in the order they were made. On recovery the route hands each
//! capability its entries in order; an entry is deleted only after its replay succeeded,
//! so replay is at-least-once and every journaled write must be idempotent. The journal
//! survives a restart of the process: entries left by a previous run are replayed when
//! their capability registers again.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::params;

use super::embedded::EmbeddedStore;
use crate::error::Result;
use crate::stats::now_ms;

/// Handle to the journal table.
#[derive(Clone)]
pub struct Journal {
    store: Arc<EmbeddedStore>,
}

impl Journal {
    pub(crate) fn new(store: Arc<EmbeddedStore>) -> Self {
        Journal { store }
    }

    /// Appends one entry for `capability`, durably.
    pub async fn append(&self, capability: &'static str, entry: Vec<u8>) -> Result<()> {
        self.store
            .sql("journal_append", move |c| {
                c.execute(
                    "INSERT INTO journal (capability, entry, at_ms) VALUES (?1, ?2, ?3)",
                    params![capability, entry, now_ms() as i64],
                )?;
                Ok(())
            })
            .await
    }

    /// The oldest `limit` entries of `capability`, as `(seq, entry)`.
    pub async fn oldest(&self, capability: &'static str, limit: usize) -> Result<Vec<(i64, Vec<u8>)>> {
        self.store
            .sql("journal_read", move |c| {
                let mut stmt =
                    c.prepare_cached("SELECT seq, entry FROM journal WHERE capability = ?1 ORDER BY seq LIMIT ?2")?;
                let rows = stmt.query_map(params![capability, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// Deletes the entries of `capability` up to and including `seq`.
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

    /// Entries waiting, per capability.
    pub async fn pending(&self) -> Result<BTreeMap<String, u64>> {
        self.store
            .sql("journal_pending", |c| {
                let mut stmt = c.prepare_cached("SELECT capability, COUNT(*) FROM journal GROUP BY capability")?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
                Ok(rows.collect::<rusqlite::Result<BTreeMap<_, _>>>()?)
            })
            .await
    }
}
