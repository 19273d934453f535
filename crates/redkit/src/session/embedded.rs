//! Sessions in SQLite: the store when no Redis is configured, and where sessions live
//! while Redis is away. Every operation is one SQLite transaction on the store's thread,
//! so a field-level merge is atomic here too.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::backend::{Patch, Session, SessionBackend, Updated};
use crate::core::embedded::EmbeddedStore;
use crate::error::Result;
use crate::stats::now_ms;

/// Sessions in SQLite.
pub struct EmbeddedSessions {
    store: Arc<EmbeddedStore>,
}

impl EmbeddedSessions {
    pub(crate) fn new(store: Arc<EmbeddedStore>) -> Self {
        EmbeddedSessions { store }
    }
}

const COLUMNS: &str = "id, user, data, created_ms, last_ms, idle_ms, abs_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Session, String)> {
    Ok((
        Session {
            id: r.get(0)?,
            user: r.get(1)?,
            data: Map::new(),
            created_ms: r.get::<_, i64>(3)? as u64,
            last_seen_ms: r.get::<_, i64>(4)? as u64,
            idle_ms: r.get::<_, i64>(5)? as u64,
            absolute_deadline_ms: r.get::<_, i64>(6)? as u64,
        },
        r.get(2)?,
    ))
}

/// The live session `id`, deleting it if a deadline passed.
fn load(c: &Connection, id: &str, now: u64) -> Result<Option<Session>> {
    let found = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"))?
        .query_row([id], row)
        .optional()?;
    let Some((mut s, data)) = found else { return Ok(None) };
    if now >= s.absolute_deadline_ms || now >= s.last_seen_ms + s.idle_ms {
        c.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        return Ok(None);
    }
    s.data = serde_json::from_str(&data)?;
    Ok(Some(s))
}

fn store(c: &Connection, s: &Session) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?
    .execute(params![
        s.id,
        s.user,
        Value::Object(s.data.clone()).to_string(),
        s.created_ms as i64,
        s.last_seen_ms as i64,
        s.idle_ms as i64,
        s.absolute_deadline_ms as i64
    ])?;
    Ok(())
}

/// Bytes a session counts as, the same way the Redis script counts: names plus values.
pub(crate) fn size_of(data: &Map<String, Value>) -> usize {
    data.iter().map(|(k, v)| 2 + k.len() + v.to_string().len()).sum()
}

#[async_trait::async_trait]
impl SessionBackend for EmbeddedSessions {
    async fn create(&self, s: &Session) -> Result<Option<Session>> {
        let s = s.clone();
        self.store
            .sql("session_create", move |c| {
                let tx = c.transaction()?;
                if load(&tx, &s.id, now_ms())?.is_some() {
                    return Ok(None);
                }
                store(&tx, &s)?;
                tx.commit()?;
                Ok(Some(s))
            })
            .await
    }

    async fn put(&self, s: &Session) -> Result<()> {
        let s = s.clone();
        self.store.sql("session_put", move |c| store(c, &s)).await
    }

    async fn get(&self, id: &str, touch: bool) -> Result<Option<Session>> {
        let id = id.to_string();
        self.store
            .sql("session_get", move |c| {
                let tx = c.transaction()?;
                let now = now_ms();
                let mut s = load(&tx, &id, now)?;
                if touch && let Some(s) = &mut s {
                    s.last_seen_ms = now;
                    tx.execute(
                        "UPDATE sessions SET last_ms = ?2 WHERE id = ?1",
                        params![id, now as i64],
                    )?;
                }
                tx.commit()?;
                Ok(s)
            })
            .await
    }

    async fn update(&self, id: &str, patch: &Patch, max_bytes: usize) -> Result<Updated> {
        let (id, patch) = (id.to_string(), patch.clone());
        self.store
            .sql("session_update", move |c| {
                let tx = c.transaction()?;
                let now = now_ms();
                let Some(mut s) = load(&tx, &id, now)? else {
                    return Ok(Updated::Missing);
                };
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
                store(&tx, &s)?;
                tx.commit()?;
                Ok(Updated::Done(s))
            })
            .await
    }

    async fn take(&self, id: &str) -> Result<Option<Session>> {
        let id = id.to_string();
        self.store
            .sql("session_take", move |c| {
                let tx = c.transaction()?;
                let s = load(&tx, &id, now_ms())?;
                tx.execute("DELETE FROM sessions WHERE id = ?1", [&id])?;
                tx.commit()?;
                Ok(s)
            })
            .await
    }

    async fn list(&self, user: &str) -> Result<Vec<Session>> {
        let user = user.to_string();
        self.store
            .sql("session_list", move |c| {
                let ids: Vec<String> = c
                    .prepare_cached("SELECT id FROM sessions WHERE user = ?1 ORDER BY created_ms")?
                    .query_map([&user], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let now = now_ms();
                let mut out = Vec::new();
                for id in ids {
                    if let Some(s) = load(c, &id, now)? {
                        out.push(s);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn revoke_all(&self, user: &str) -> Result<u64> {
        let user = user.to_string();
        self.store
            .sql("session_revoke_all", move |c| {
                let now = now_ms() as i64;
                let live: i64 = c.query_row(
                    "SELECT COUNT(*) FROM sessions WHERE user = ?1 AND abs_ms > ?2 AND last_ms + idle_ms > ?2",
                    params![user, now],
                    |r| r.get(0),
                )?;
                c.execute("DELETE FROM sessions WHERE user = ?1", [&user])?;
                Ok(live as u64)
            })
            .await
    }
}
