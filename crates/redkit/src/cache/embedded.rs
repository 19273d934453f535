//! The cache's L2 on the embedded store (SQLite): used when no Redis is configured, and
//! as the fallback while Redis is away. Expired rows are skipped on read and purged in
//! the background of writes. With Redis configured the rows are what an outage wrote:
//! they belong to a generation that recovery bumps, so they are never served again, and
//! every write records its invalidation in the journal in its own transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::backend::{CacheBackend, KeysPage, L2Record, SetItem};
use super::glob;
use crate::core::embedded::{EmbeddedStore, Generation};
use crate::core::journal::{Pending, pending};
use crate::error::Result;
use crate::stats::now_ms;

/// Writes between two purges of expired rows.
const PURGE_EVERY: u64 = 1024;

/// L2 on SQLite.
pub struct EmbeddedCache {
    store: Arc<EmbeddedStore>,
    writes: AtomicU64,
    generation: Arc<Generation>,
    /// Loads claimed in this process: (namespace, key) → (token, until).
    claims: std::sync::Mutex<std::collections::HashMap<(String, String), (String, std::time::Instant)>>,
}

/// Most claims held at once (expired ones are dropped first; past it, a claim is refused).
const MAX_CLAIMS: usize = 100_000;

impl EmbeddedCache {
    pub(crate) fn new(store: Arc<EmbeddedStore>) -> Self {
        EmbeddedCache {
            generation: store.generation("cache"),
            store,
            writes: AtomicU64::new(0),
            claims: Default::default(),
        }
    }

    /// Makes every value written so far invisible at once (see `Recovery::seal`).
    pub(crate) fn seal(&self) -> crate::core::route::BoxFuture<'static, Result<()>> {
        self.generation.seal()
    }

    /// Deletes the values [`EmbeddedCache::seal`] made invisible (after an outage, once
    /// Redis serves again); values of the current generation stay.
    pub(crate) fn forget_outage(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (generation, store) = (self.generation.clone(), self.store.clone());
        async move {
            let generation = generation.current() as i64;
            loop {
                let removed = store
                    .sql("cache_forget_outage", move |c| {
                        Ok(c.execute(
                            "DELETE FROM cache_entries WHERE (ns, key) IN
                               (SELECT ns, key FROM cache_entries WHERE gen < ?1 LIMIT 1000)",
                            [generation],
                        )?)
                    })
                    .await?;
                if removed == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// How long one step of a listing or pattern invalidation may hold the store's thread.
const STEP_BUDGET: Duration = Duration::from_millis(10);

/// What one step of a scan found: keys with whether each is live, and the key to continue
/// after if it stopped early.
type Found = (Vec<(String, bool)>, Option<String>);

/// Keys of `ns` after `after` (in key order) matching the glob, with whether each is live;
/// up to `limit` of them, `live_only` or all, within [`STEP_BUDGET`]. Like Redis `SCAN`, a
/// step may find fewer than `limit`, or none, and still have more.
fn scan(
    c: &rusqlite::Connection,
    ns: &str,
    pattern: &str,
    after: &str,
    limit: usize,
    generation: i64,
    live_only: bool,
) -> Result<Found> {
    const BATCH: i64 = 500;
    let started = std::time::Instant::now();
    let now = now_ms() as i64;
    let mut stmt = c.prepare_cached(
        "SELECT key, expires_ms > ?3 AND gen = ?4 FROM cache_entries WHERE ns = ?1 AND key > ?2
         ORDER BY key LIMIT ?5",
    )?;
    let mut found = Vec::new();
    let mut last = after.to_string();
    loop {
        let batch: Vec<(String, bool)> = stmt
            .query_map(params![ns, last, now, generation, BATCH], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let exhausted = (batch.len() as i64) < BATCH;
        for (key, live) in batch {
            last.clone_from(&key);
            if (live || !live_only) && glob::matches(pattern, &key) {
                found.push((key, live));
                if found.len() == limit {
                    return Ok((found, Some(last)));
                }
            }
            if started.elapsed() >= STEP_BUDGET {
                return Ok((found, Some(last)));
            }
        }
        if exhausted {
            return Ok((found, None));
        }
    }
}

fn record(op: Option<Pending>, c: &rusqlite::Connection) -> Result<()> {
    op.map_or(Ok(()), |p| p.record(c))
}

fn purge_expired(c: &rusqlite::Connection, now: i64, generation: i64) -> rusqlite::Result<()> {
    c.execute(
        "DELETE FROM cache_entries WHERE expires_ms <= ?1 OR gen < ?2",
        params![now, generation],
    )?;
    c.execute(
        "DELETE FROM cache_tags WHERE NOT EXISTS
           (SELECT 1 FROM cache_entries e WHERE e.ns = cache_tags.ns AND e.key = cache_tags.key)",
        [],
    )?;
    Ok(())
}

#[async_trait::async_trait]
impl CacheBackend for EmbeddedCache {
    async fn get_many(&self, ns: &str, keys: &[&str]) -> Result<Vec<Option<L2Record>>> {
        let ns = ns.to_string();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let generation = self.generation.current() as i64;
        self.store
            .sql("cache_get", move |c| {
                let now = now_ms() as i64;
                let mut stmt = c.prepare_cached(
                    "SELECT bytes, expires_ms FROM cache_entries WHERE ns = ?1 AND key = ?2 AND gen = ?3",
                )?;
                let mut out = Vec::with_capacity(keys.len());
                for key in &keys {
                    let row: Option<(Vec<u8>, i64)> = stmt
                        .query_row(params![ns, key, generation], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    out.push(row.filter(|(_, exp)| *exp > now).map(|(bytes, exp)| L2Record {
                        bytes,
                        remaining: Duration::from_millis((exp - now) as u64),
                    }));
                }
                Ok(out)
            })
            .await
    }

    async fn set_many(&self, ns: &str, items: &[SetItem]) -> Result<()> {
        let ns = ns.to_string();
        let items = items.to_vec();
        let purge = self.writes.fetch_add(items.len() as u64, Ordering::Relaxed) % PURGE_EVERY < items.len() as u64;
        let (generation, op) = (self.generation.current() as i64, pending());
        self.store
            .sql("cache_set", move |c| {
                let now = now_ms() as i64;
                let tx = c.transaction()?;
                {
                    let mut set = tx.prepare_cached(
                        "INSERT OR REPLACE INTO cache_entries (ns, key, bytes, expires_ms, gen) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    let mut tag =
                        tx.prepare_cached("INSERT OR IGNORE INTO cache_tags (ns, tag, key) VALUES (?1, ?2, ?3)")?;
                    // A value set again keeps only its new tags.
                    let mut untag = tx.prepare_cached("DELETE FROM cache_tags WHERE ns = ?1 AND key = ?2")?;
                    for item in &items {
                        set.execute(params![ns, item.key, item.bytes, now + item.ttl_ms as i64, generation])?;
                        untag.execute(params![ns, item.key])?;
                        for t in &item.tags {
                            tag.execute(params![ns, t, item.key])?;
                        }
                    }
                }
                if purge {
                    purge_expired(&tx, now, generation)?;
                }
                record(op, &tx)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn delete(&self, ns: &str, keys: &[String]) -> Result<u64> {
        let ns = ns.to_string();
        let keys = keys.to_vec();
        let (generation, op) = (self.generation.current() as i64, pending());
        self.store
            .sql("cache_delete", move |c| {
                let now = now_ms() as i64;
                let tx = c.transaction()?;
                let mut removed = 0;
                {
                    let mut del = tx.prepare_cached(
                        "DELETE FROM cache_entries WHERE ns = ?1 AND key = ?2 AND expires_ms > ?3 AND gen = ?4",
                    )?;
                    let mut del_expired = tx.prepare_cached("DELETE FROM cache_entries WHERE ns = ?1 AND key = ?2")?;
                    let mut untag = tx.prepare_cached("DELETE FROM cache_tags WHERE ns = ?1 AND key = ?2")?;
                    for key in &keys {
                        let n = del.execute(params![ns, key, now, generation])?;
                        if n == 0 {
                            del_expired.execute(params![ns, key])?;
                        }
                        untag.execute(params![ns, key])?;
                        removed += n as u64;
                    }
                }
                record(op, &tx)?;
                tx.commit()?;
                Ok(removed)
            })
            .await
    }

    async fn invalidate_tag(&self, ns: &str, tag: &str) -> Result<u64> {
        let (ns, tag) = (ns.to_string(), tag.to_string());
        let (generation, op) = (self.generation.current() as i64, pending());
        self.store
            .sql("cache_invalidate_tag", move |c| {
                let now = now_ms() as i64;
                let tx = c.transaction()?;
                let live: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM cache_entries WHERE ns = ?1 AND expires_ms > ?3 AND gen = ?4 AND key IN
                       (SELECT key FROM cache_tags WHERE ns = ?1 AND tag = ?2)",
                    params![ns, tag, now, generation],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "DELETE FROM cache_entries WHERE ns = ?1 AND key IN
                       (SELECT key FROM cache_tags WHERE ns = ?1 AND tag = ?2)",
                    params![ns, tag],
                )?;
                tx.execute("DELETE FROM cache_tags WHERE ns = ?1 AND tag = ?2", params![ns, tag])?;
                record(op, &tx)?;
                tx.commit()?;
                Ok(live as u64)
            })
            .await
    }

    async fn invalidate_pattern(&self, ns: &str, pattern: &str) -> Result<u64> {
        let generation = self.generation.current() as i64;
        let mut op = pending();
        let mut after = String::new();
        let mut removed = 0;
        // A step at a time, each its own transaction within a time budget, so other work
        // on the store's thread runs in between however costly the pattern is.
        loop {
            let (ns, pattern, op) = (ns.to_string(), pattern.to_string(), op.take());
            let from = std::mem::take(&mut after);
            let (live, next) = self
                .store
                .sql("cache_invalidate_pattern", move |c| {
                    let tx = c.transaction()?;
                    let (matching, next) = scan(&tx, &ns, &pattern, &from, usize::MAX, generation, false)?;
                    let mut live = 0;
                    {
                        let mut del = tx.prepare_cached("DELETE FROM cache_entries WHERE ns = ?1 AND key = ?2")?;
                        for (key, is_live) in &matching {
                            del.execute(params![ns, key])?;
                            live += u64::from(*is_live);
                        }
                    }
                    // The invalidation is journaled with the first step (replay covers all).
                    record(op, &tx)?;
                    tx.commit()?;
                    Ok((live, next))
                })
                .await?;
            removed += live;
            match next {
                Some(n) => after = n,
                None => return Ok(removed),
            }
        }
    }

    async fn keys(&self, ns: &str, pattern: &str, cursor: Option<&str>, limit: usize) -> Result<KeysPage> {
        let (ns, pattern) = (ns.to_string(), pattern.to_string());
        let after = cursor.unwrap_or("").to_string();
        let generation = self.generation.current() as i64;
        self.store
            .sql("cache_keys", move |c| {
                let (keys, next_cursor) = scan(c, &ns, &pattern, &after, limit, generation, true)?;
                Ok(KeysPage {
                    keys: keys.into_iter().map(|(k, _)| k).collect(),
                    next_cursor,
                })
            })
            .await
    }

    async fn try_lock(&self, ns: &str, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        // This store belongs to this process: an in-process claim excludes every caller of
        // it (HTTP clients of one server included).
        let now = std::time::Instant::now();
        let mut claims = self.claims.lock().expect("claims lock");
        if claims.len() >= MAX_CLAIMS {
            claims.retain(|_, (_, until)| *until > now);
            if claims.len() >= MAX_CLAIMS {
                return Ok(false);
            }
        }
        let slot = claims.entry((ns.to_string(), key.to_string()));
        match slot {
            std::collections::hash_map::Entry::Occupied(mut held) if held.get().1 <= now => {
                held.insert((token.to_string(), now + ttl));
                Ok(true)
            }
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(free) => {
                free.insert((token.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, ns: &str, key: &str, token: &str) -> Result<()> {
        let mut claims = self.claims.lock().expect("claims lock");
        let k = (ns.to_string(), key.to_string());
        if claims.get(&k).is_some_and(|(t, _)| t == token) {
            claims.remove(&k);
        }
        Ok(())
    }
}
