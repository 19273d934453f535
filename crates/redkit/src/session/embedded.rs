//! Sessions in SQLite.
//!
//! Without Redis this table is the session store. With Redis it holds only copies: the
//! **mirror** of what this instance read or wrote through Redis (each row with the version
//! Redis gave it), served only while the breaker is open, and the sessions an outage
//! created or changed (`dirty`), until recovery has told Redis. Rows belong to a
//! generation (see [`Generation`]); bumping it drops the mirror at once. Every operation
//! is one SQLite transaction on the store's thread, so a field-level merge is atomic here
//! too, and a fallback write records its journal operation in that same transaction.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::backend::{Patch, Revoked, Session, SessionBackend, Updated};
use super::ops::Op;
use crate::core::embedded::{EmbeddedStore, Generation};
use crate::core::journal::{Pending, pending};
use crate::error::Result;
use crate::stats::now_ms;

/// Sessions in SQLite.
pub struct EmbeddedSessions {
    store: Arc<EmbeddedStore>,
    generation: Arc<Generation>,
    /// Redis is configured: rows are copies, and writes here are outage writes.
    copies: bool,
}

const COLUMNS: &str = "id, user, data, created_ms, last_ms, idle_ms, abs_ms, ver, stamps";

/// How long the mirror remembers a deletion, so that a read answered before it cannot
/// put the session back when the two race to the SQLite thread.
const TOMBSTONE_MS: u64 = 60_000;

/// Most mirrored sessions kept; the least recently seen go first.
pub(crate) const MAX_MIRRORED: i64 = 100_000;

/// Rows deleted per step of the sweep.
const SWEEP_BATCH: i64 = 1000;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Session, String)> {
    let stamps: Option<String> = r.get(8)?;
    Ok((
        Session {
            stamps: stamps.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
            id: r.get(0)?,
            user: r.get(1)?,
            data: Map::new(),
            created_ms: r.get::<_, i64>(3)? as u64,
            last_seen_ms: r.get::<_, i64>(4)? as u64,
            idle_ms: r.get::<_, i64>(5)? as u64,
            absolute_deadline_ms: r.get::<_, i64>(6)? as u64,
            version: r.get::<_, i64>(7)? as u64,
        },
        r.get(2)?,
    ))
}

fn store(c: &Connection, s: &Session, generation: u64, dirty: bool) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO sessions ({COLUMNS}, gen, dirty) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        s.id,
        s.user,
        Value::Object(s.data.clone()).to_string(),
        s.created_ms as i64,
        s.last_seen_ms as i64,
        s.idle_ms as i64,
        s.absolute_deadline_ms as i64,
        s.version as i64,
        (!s.stamps.is_empty()).then(|| serde_json::to_string(&s.stamps).expect("stamps serialize")),
        generation as i64,
        dirty
    ])?;
    Ok(())
}

/// Bytes a session counts as, the same way the Redis script counts: names plus values.
pub(crate) fn size_of(data: &Map<String, Value>) -> usize {
    data.iter().map(|(k, v)| 2 + k.len() + v.to_string().len()).sum()
}

impl EmbeddedSessions {
    pub(crate) fn new(store: Arc<EmbeddedStore>, copies: bool) -> Self {
        EmbeddedSessions {
            generation: store.generation("session"),
            store,
            copies,
        }
    }

    /// The generation rows must carry, and whether rows are copies (Redis configured).
    fn state(&self) -> (u64, bool) {
        (self.generation.current(), self.copies)
    }
}

/// The live session `id` visible in generation `generation`, deleting it if a deadline passed.
fn load(c: &Connection, id: &str, now: u64, generation: u64) -> Result<Option<Session>> {
    let found = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE id = ?1 AND (dirty = 1 OR gen = ?2)"
        ))?
        .query_row(params![id, generation as i64], row)
        .optional()?;
    let Some((mut s, data)) = found else { return Ok(None) };
    if s.is_expired(now) {
        c.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        return Ok(None);
    }
    s.data = serde_json::from_str(&data)?;
    Ok(Some(s))
}

fn visible_of_user(c: &Connection, user: &str, generation: u64) -> Result<Vec<String>> {
    let ids = c
        .prepare_cached("SELECT id FROM sessions WHERE user = ?1 AND (dirty = 1 OR gen = ?2) ORDER BY created_ms")?
        .query_map(params![user, generation as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

impl EmbeddedSessions {
    /// Mirrors a session Redis returned (best effort, without waiting): kept unless a
    /// newer version or a deletion is already here.
    pub(crate) fn mirror(&self, s: Session) {
        let generation = self.generation.clone();
        self.store.sqlite().submit(move |c| {
            let mirrored = (|| -> Result<()> {
                let deleted: Option<i64> = c
                    .prepare_cached("SELECT ver FROM session_tombstones WHERE id = ?1")?
                    .query_row([&s.id], |r| r.get(0))
                    .optional()?;
                if deleted.is_some_and(|v| v as u64 >= s.version) {
                    return Ok(());
                }
                let gen_now = generation.current() as i64;
                let held: Option<(i64, i64)> = c
                    .prepare_cached("SELECT ver, gen FROM sessions WHERE id = ?1")?
                    .query_row([&s.id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match held {
                    Some((ver, row_gen)) if ver as u64 >= s.version && row_gen == gen_now => {
                        c.prepare_cached("UPDATE sessions SET last_ms = max(last_ms, ?2) WHERE id = ?1")?
                            .execute(params![s.id, s.last_seen_ms as i64])?;
                    }
                    _ => store(c, &s, gen_now as u64, false)?,
                }
                Ok(())
            })();
            if let Err(e) = mirrored {
                tracing::debug!(error = %e, "mirroring a session failed");
            }
        });
    }

    /// Drops a session from the mirror and remembers the deletion for a while.
    pub(crate) fn forget(&self, id: &str, version: u64) {
        let id = id.to_string();
        self.store.sqlite().enqueue(move |c| {
            let forgot = (|| -> Result<()> {
                c.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([&id])?;
                c.prepare_cached(
                    "INSERT INTO session_tombstones (id, ver, until_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET ver = max(ver, excluded.ver), until_ms = excluded.until_ms",
                )?
                .execute(params![id, version as i64, (now_ms() + TOMBSTONE_MS) as i64])?;
                Ok(())
            })();
            if let Err(e) = forgot {
                tracing::debug!(error = %e, "forgetting a mirrored session failed");
            }
        });
    }

    /// Drops a mirrored session another instance changed (unless this copy is as new).
    pub(crate) fn forget_older(&self, id: &str, version: u64) {
        let id = id.to_string();
        self.store.sqlite().enqueue(move |c| {
            if let Err(e) = c.execute(
                "DELETE FROM sessions WHERE id = ?1 AND ver < ?2",
                params![id, version as i64],
            ) {
                tracing::debug!(error = %e, "dropping a changed mirrored session failed");
            }
        });
    }

    /// Drops the mirrored sessions of `user` created before `stamp` (µs).
    pub(crate) fn forget_user(&self, user: &str, stamp: u64) {
        let user = user.to_string();
        self.store.sqlite().enqueue(move |c| {
            if let Err(e) = c.execute(
                "DELETE FROM sessions WHERE user = ?1 AND created_ms * 1000 < ?2",
                params![user, stamp as i64],
            ) {
                tracing::debug!(error = %e, "dropping a revoked user's mirrored sessions failed");
            }
        });
    }

    /// Makes the whole mirror invisible at once (sessions an outage changed stay until
    /// recovery has told Redis).
    pub(crate) fn drop_mirror(&self) -> impl std::future::Future<Output = Result<u64>> + Send + 'static {
        self.generation.bump()
    }

    /// As recovery closes the breaker: nothing the outage left is served again (see
    /// `Recovery::seal`).
    pub(crate) fn seal(&self) -> crate::core::route::BoxFuture<'static, Result<()>> {
        self.generation.seal()
    }

    /// After recovery: what [`EmbeddedSessions::seal`] made invisible is no longer waiting
    /// to be told to Redis (recovery told it); sessions of the current generation are left
    /// alone.
    pub(crate) async fn forget_outage(&self) -> Result<()> {
        let generation = self.generation.current();
        self.store
            .sql("session_forget_outage", move |c| {
                c.execute(
                    "UPDATE sessions SET dirty = 0 WHERE dirty = 1 AND gen < ?1",
                    [generation as i64],
                )?;
                Ok(())
            })
            .await
    }

    /// Up to `limit` sessions the outage created, changed or used, with their data.
    pub(crate) async fn dirty(&self, limit: usize) -> Result<Vec<Session>> {
        self.store
            .sql("session_dirty", move |c| {
                let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM sessions WHERE dirty = 1 LIMIT ?1"))?;
                let rows = stmt.query_map([limit as i64], row)?;
                let mut out = Vec::new();
                for r in rows {
                    let (mut s, data) = r?;
                    s.data = serde_json::from_str(&data)?;
                    out.push(s);
                }
                Ok(out)
            })
            .await
    }

    /// Marks sessions as told to Redis, unless they changed again since they were read.
    pub(crate) async fn synced(&self, sessions: Vec<Session>) -> Result<()> {
        self.store
            .sql("session_synced", move |c| {
                let tx = c.transaction()?;
                {
                    let mut stmt =
                        tx.prepare_cached("UPDATE sessions SET dirty = 0 WHERE id = ?1 AND ver = ?2 AND last_ms = ?3")?;
                    for s in &sessions {
                        stmt.execute(params![s.id, s.version as i64, s.last_seen_ms as i64])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Deletes expired sessions, dropped generations, old tombstones, and the least
    /// recently seen mirrored sessions beyond [`MAX_MIRRORED`]; a batch at a time, so the
    /// store's thread is never held for long. Returns how many rows went.
    pub(crate) async fn sweep(&self) -> Result<u64> {
        let (generation, copies) = (self.generation.current() as i64, self.copies);
        let mut total = 0;
        loop {
            let removed = self
                .store
                .sql("session_sweep", move |c| {
                    let now = now_ms() as i64;
                    let mut n = c.execute(
                        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions
                           WHERE abs_ms <= ?1 OR last_ms + idle_ms <= ?1 OR (gen < ?2 AND dirty = 0) LIMIT ?3)",
                        params![now, generation, SWEEP_BATCH],
                    )?;
                    n += c.execute(
                        "DELETE FROM session_tombstones WHERE id IN
                           (SELECT id FROM session_tombstones WHERE until_ms <= ?1 LIMIT ?2)",
                        params![now, SWEEP_BATCH],
                    )?;
                    if copies {
                        let over: i64 =
                            c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get::<_, i64>(0))? - MAX_MIRRORED;
                        if over > 0 {
                            n += c.execute(
                                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE dirty = 0
                                   ORDER BY last_ms LIMIT ?1)",
                                [over.min(SWEEP_BATCH)],
                            )?;
                        }
                    }
                    Ok(n as u64)
                })
                .await?;
            total += removed;
            if removed == 0 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

fn record(p: Option<Pending>, c: &Connection) -> Result<()> {
    match p {
        Some(p) => p.record(c),
        None => Ok(()),
    }
}

#[async_trait::async_trait]
impl SessionBackend for EmbeddedSessions {
    async fn create(&self, s: &Session) -> Result<Option<Session>> {
        // A new session is marked dirty instead of journaled (see `ops`).
        let ((generation, copies), s, op) = (self.state(), s.clone(), pending());
        self.store
            .sql("session_create", move |c| {
                let tx = c.transaction()?;
                if load(&tx, &s.id, now_ms(), generation)?.is_some() {
                    return Ok(None);
                }
                let s = Session {
                    version: op.as_ref().map_or(s.version, Pending::ts),
                    ..s
                };
                store(&tx, &s, generation, copies)?;
                tx.commit()?;
                Ok(Some(s))
            })
            .await
    }

    async fn rotate(&self, id: &str, fresh_id: &str) -> Result<Option<Session>> {
        let ((generation, copies), id, fresh_id, op) = (self.state(), id.to_string(), fresh_id.to_string(), pending());
        self.store
            .sql("session_rotate", move |c| {
                let tx = c.transaction()?;
                let Some(old) = load(&tx, &id, now_ms(), generation)? else {
                    return Ok(None);
                };
                tx.execute("DELETE FROM sessions WHERE id = ?1", [&id])?;
                let fresh = Session {
                    id: fresh_id.clone(),
                    last_seen_ms: now_ms(),
                    version: op.as_ref().map_or(old.version, Pending::ts),
                    ..old.clone()
                };
                store(&tx, &fresh, generation, copies)?;
                if let Some(p) = op {
                    // The new session reaches Redis through catch-up; the old one's
                    // deletion names it, so operations on the old id follow.
                    let moved = Op::Delete {
                        id: id.clone(),
                        user: old.user.clone(),
                        deadline_ms: old.absolute_deadline_ms,
                        moved_to: Some(fresh_id),
                    };
                    p.record_as(&tx, &moved.encode())?;
                }
                tx.commit()?;
                Ok(Some(fresh))
            })
            .await
    }

    async fn get(&self, id: &str, touch: bool) -> Result<Option<Session>> {
        let ((generation, copies), id) = (self.state(), id.to_string());
        self.store
            .sql("session_get", move |c| {
                let tx = c.transaction()?;
                let now = now_ms();
                let mut s = load(&tx, &id, now, generation)?;
                if touch && let Some(s) = &mut s {
                    s.last_seen_ms = now;
                    // With Redis configured this is an outage touch: recovery moves it on.
                    tx.execute(
                        "UPDATE sessions SET last_ms = ?2, dirty = max(dirty, ?3) WHERE id = ?1",
                        params![id, now as i64, copies],
                    )?;
                }
                tx.commit()?;
                Ok(s)
            })
            .await
    }

    async fn update(&self, id: &str, patch: &Patch, max_bytes: usize) -> Result<Updated> {
        let ((generation, copies), id, patch, op) = (self.state(), id.to_string(), patch.clone(), pending());
        self.store
            .sql("session_update", move |c| {
                let tx = c.transaction()?;
                let now = now_ms();
                let Some(mut s) = load(&tx, &id, now, generation)? else {
                    return Ok(Updated::Missing);
                };
                let stamp = op.as_ref().map(Pending::ts);
                for (name, value) in &patch.set {
                    s.data.insert(name.clone(), serde_json::from_str(value)?);
                }
                for name in &patch.remove {
                    s.data.remove(name);
                }
                let size = size_of(&s.data);
                if size > max_bytes {
                    return Ok(Updated::TooLarge(size));
                }
                s.last_seen_ms = now;
                if let Some(stamp) = stamp {
                    // An outage write: its fields carry its stamp to Redis.
                    s.version = stamp;
                    for name in patch.set.iter().map(|(n, _)| n).chain(&patch.remove) {
                        s.stamps.insert(name.clone(), stamp);
                    }
                }
                store(&tx, &s, generation, copies)?;
                record(op, &tx)?;
                tx.commit()?;
                Ok(Updated::Done(s))
            })
            .await
    }

    async fn delete(&self, id: &str, _absent_keep: Duration) -> Result<Option<Session>> {
        let ((generation, _), id, op) = (self.state(), id.to_string(), pending());
        self.store
            .sql("session_delete", move |c| {
                let tx = c.transaction()?;
                let found = load(&tx, &id, now_ms(), generation)?;
                tx.execute("DELETE FROM sessions WHERE id = ?1", [&id])?;
                // In an outage the logout is recorded with what this instance knows of the
                // session (user, deadline) — and even if it knows nothing, so it holds.
                match (op, &found) {
                    (Some(p), Some(s)) => {
                        let known = Op::Delete {
                            id: id.clone(),
                            user: s.user.clone(),
                            deadline_ms: s.absolute_deadline_ms,
                            moved_to: None,
                        };
                        p.record_as(&tx, &known.encode())?;
                    }
                    (Some(p), None) => p.record(&tx)?,
                    (None, _) => {}
                }
                tx.commit()?;
                Ok(found)
            })
            .await
    }

    async fn list(&self, user: &str) -> Result<Vec<Session>> {
        let ((generation, _), user) = (self.state(), user.to_string());
        self.store
            .sql("session_list", move |c| {
                let now = now_ms();
                let mut out = Vec::new();
                for id in visible_of_user(c, &user, generation)? {
                    out.extend(load(c, &id, now, generation)?);
                }
                Ok(out)
            })
            .await
    }

    async fn revoke_all(&self, user: &str) -> Result<Revoked> {
        let ((generation, _), user, op) = (self.state(), user.to_string(), pending());
        self.store
            .sql("session_revoke_all", move |c| {
                let tx = c.transaction()?;
                let now = now_ms();
                let mut revoked = Revoked {
                    stamp: op.as_ref().map_or(0, Pending::ts),
                    ..Revoked::default()
                };
                for id in visible_of_user(&tx, &user, generation)? {
                    if load(&tx, &id, now, generation)?.is_some() {
                        revoked.count += 1;
                    }
                    revoked.ids.push(id);
                }
                tx.execute("DELETE FROM sessions WHERE user = ?1", [&user])?;
                record(op, &tx)?;
                tx.commit()?;
                Ok(revoked)
            })
            .await
    }
}
