//! # Capped lists: newest first, trimmed to a cap in the same step as the push
//!
//! [`Lists::push`] puts items on top of list `name` and trims it to `cap` atomically (a
//! Redis list under the list's own hash tag, or SQLite rows in one transaction), and
//! refreshes its time to live; [`Lists::range`] reads from the newest. A list never holds
//! more than its cap, whatever the interleaving of pushes.
//!
//! **Outages**: pushes go to the embedded store and are journaled; when Redis returns they
//! are pushed onto Redis's list (on top, trimmed to their cap). A delete removes the items
//! pushed before it, and a push made before a delete does not come back. Reads during the
//! outage see this instance's outage pushes only.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::collection::check_name;
use crate::core::embedded::{EmbeddedStore, Generation};
use crate::core::journal::{Entry, pending};
use crate::core::redis::{LuaScript, RedisCore};
use crate::core::route::{BoxFuture, Closed, FallbackPolicy, Recovery, Route, Routed};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// Largest cap.
pub const MAX_CAP: u64 = 100_000;
/// Most items per push.
pub const MAX_PUSH: usize = 1000;
/// Largest item, bytes of JSON.
pub const MAX_ITEM_BYTES: usize = 64 * 1024;
/// Largest page.
pub const MAX_RANGE: usize = 1000;
/// How long a delete keeps older outage pushes from coming back.
const DELETE_KEEP: Duration = Duration::from_secs(7 * 86_400);

/// A page of a list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListPage {
    /// Items, newest first.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<serde_json::Value>))]
    pub items: Vec<Value>,
    /// The list's length.
    pub length: u64,
}

/// Capped-list operations; items travel as `STAMP:JSON` texts (the push's stamp, µs).
#[async_trait::async_trait]
pub trait ListBackend: Send + Sync {
    /// Pushes `items` (in order, so the last is the newest), trims to `cap`, sets the TTL
    /// (zero: none); the new length. `replay` (the journaled push's unique id): the push
    /// is dropped if the list was deleted after `ts`, or if it was replayed before.
    async fn push(
        &self,
        name: &str,
        items: &[String],
        cap: u64,
        ttl: Duration,
        ts: u64,
        replay: Option<u64>,
    ) -> Result<u64>;
    /// Up to `limit` items from `offset` (0: the newest), and the length.
    async fn range(&self, name: &str, offset: usize, limit: usize) -> Result<(Vec<String>, u64)>;
    /// Deletes the items pushed before `ts`; whether the list existed.
    async fn delete(&self, name: &str, ts: u64) -> Result<bool>;
}

static PUSH: LuaScript = LuaScript::new(
    "list_push",
    "-- KEYS[1]: the list, KEYS[2]: stamp of its last delete, KEYS[3]: replayed pushes (id -> ms).
-- ARGV[1]: cap, ARGV[2]: ttl ms (0: none), ARGV[3]: the push's stamp, ARGV[4]: when
-- replaying, the push's unique id ('' otherwise), ARGV[5..]: items. Returns the length.
if ARGV[4] ~= '' then
  local d = redis.call('GET', KEYS[2])
  if d and tonumber(d) >= tonumber(ARGV[3]) then return redis.call('LLEN', KEYS[1]) end
  -- Replays are at least once: a push replayed before is not pushed twice.
  if redis.call('ZSCORE', KEYS[3], ARGV[4]) then return redis.call('LLEN', KEYS[1]) end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000
  redis.call('ZADD', KEYS[3], now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 7 * 86400000)
  redis.call('PEXPIRE', KEYS[3], 7 * 86400000)
end
for i = 5, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('PERSIST', KEYS[1]) end
return redis.call('LLEN', KEYS[1])",
);

static DELETE: LuaScript = LuaScript::new(
    "list_delete",
    "-- KEYS[1]: the list, KEYS[2]: stamp of its last delete. ARGV[1]: the delete's stamp,
-- ARGV[2]: how long the stamp is kept (ms). Removes items pushed before the stamp.
-- Returns 1 if the list existed.
local existed = redis.call('EXISTS', KEYS[1])
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local keep = {}
for _, it in ipairs(items) do
  local ts = tonumber(string.match(it, '^(%d+):'))
  if ts and ts > tonumber(ARGV[1]) then keep[#keep + 1] = it end
end
if #keep < #items then
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  for i = #keep, 1, -1 do redis.call('LPUSH', KEYS[1], keep[i]) end
  -- PTTL 0: the list was in its last millisecond; PEXPIRE 0 lets it go as it would have.
  if #keep > 0 and ttl >= 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > prev then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
return existed",
);

fn keys(name: &str) -> (String, String) {
    (format!("rk:{{ls:{name}}}"), format!("rk:{{ls:{name}}}:d"))
}

fn replayed_key(name: &str) -> String {
    format!("rk:{{ls:{name}}}:applied")
}

/// Lists on Redis.
pub struct RedisLists {
    core: Arc<RedisCore>,
}

impl RedisLists {
    pub(crate) fn new(core: Arc<RedisCore>) -> Self {
        RedisLists { core }
    }
}

#[async_trait::async_trait]
impl ListBackend for RedisLists {
    async fn push(
        &self,
        name: &str,
        items: &[String],
        cap: u64,
        ttl: Duration,
        ts: u64,
        replay: Option<u64>,
    ) -> Result<u64> {
        let (list, deleted) = keys(name);
        let mut args = vec![
            cap.to_string(),
            (ttl.as_millis() as u64).to_string(),
            ts.to_string(),
            replay.map(|u| u.to_string()).unwrap_or_default(),
        ];
        args.extend(items.iter().cloned());
        self.core
            .script(&PUSH, &[&list, &deleted, &replayed_key(name)], &[&args])
            .await
    }

    async fn range(&self, name: &str, offset: usize, limit: usize) -> Result<(Vec<String>, u64)> {
        let (list, _) = keys(name);
        let mut pipe = redis::pipe();
        pipe.cmd("LRANGE")
            .arg(&list)
            .arg(offset)
            .arg((offset + limit) as i64 - 1)
            .cmd("LLEN")
            .arg(&list);
        self.core.pipeline("list_range", &pipe).await
    }

    async fn delete(&self, name: &str, ts: u64) -> Result<bool> {
        let (list, deleted) = keys(name);
        let args = [ts.to_string(), (DELETE_KEEP.as_millis() as u64).to_string()];
        let existed: i64 = self
            .core
            .script(&DELETE, &[&list, &deleted], &[&args[0], &args[1]])
            .await?;
        Ok(existed == 1)
    }
}

/// Lists in SQLite (in a deployment with Redis: the outage's copies, by generation).
pub struct EmbeddedLists {
    store: Arc<EmbeddedStore>,
    generation: Arc<Generation>,
}

#[async_trait::async_trait]
impl ListBackend for EmbeddedLists {
    async fn push(
        &self,
        name: &str,
        items: &[String],
        cap: u64,
        ttl: Duration,
        _ts: u64,
        _replay: Option<u64>,
    ) -> Result<u64> {
        let (name, items, journal, generation) = (
            name.to_string(),
            items.to_vec(),
            pending(),
            self.generation.current() as i64,
        );
        self.store
            .sql("list_push", move |c| {
                let now = now_ms() as i64;
                let tx = c.transaction()?;
                let meta: Option<i64> = tx
                    .prepare_cached("SELECT expires_at_ms FROM record_list_meta WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))
                    .optional()?;
                if meta.is_some_and(|e| e != 0 && e <= now) {
                    tx.execute("DELETE FROM record_lists WHERE name = ?1", [&name])?;
                }
                let top: i64 = tx
                    .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM record_lists WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))?;
                for (i, item) in items.iter().enumerate() {
                    tx.prepare_cached("INSERT INTO record_lists (name, seq, item) VALUES (?1, ?2, ?3)")?
                        .execute(params![name, top + 1 + i as i64, item])?;
                }
                let top = top + items.len() as i64;
                tx.prepare_cached("DELETE FROM record_lists WHERE name = ?1 AND seq <= ?2")?
                    .execute(params![name, top - cap as i64])?;
                let expires = if ttl.is_zero() { 0 } else { now + ttl.as_millis() as i64 };
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO record_list_meta (name, expires_at_ms, gen) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![name, expires, generation])?;
                let length: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM record_lists WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))?;
                if let Some(p) = journal {
                    p.record(&tx)?;
                }
                tx.commit()?;
                Ok(length as u64)
            })
            .await
    }

    async fn range(&self, name: &str, offset: usize, limit: usize) -> Result<(Vec<String>, u64)> {
        let name = name.to_string();
        self.store
            .sql("list_range", move |c| {
                let expires: Option<i64> = c
                    .prepare_cached("SELECT expires_at_ms FROM record_list_meta WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))
                    .optional()?;
                if expires.is_none_or(|e| e != 0 && e <= now_ms() as i64) {
                    return Ok((Vec::new(), 0));
                }
                let items = c
                    .prepare_cached(
                        "SELECT item FROM record_lists WHERE name = ?1 ORDER BY seq DESC LIMIT ?2 OFFSET ?3",
                    )?
                    .query_map(params![name, limit as i64, offset as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                let length: i64 = c
                    .prepare_cached("SELECT COUNT(*) FROM record_lists WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))?;
                Ok((items, length as u64))
            })
            .await
    }

    async fn delete(&self, name: &str, _ts: u64) -> Result<bool> {
        let (name, journal) = (name.to_string(), pending());
        self.store
            .sql("list_delete", move |c| {
                let tx = c.transaction()?;
                let n = tx.execute("DELETE FROM record_lists WHERE name = ?1", [&name])?;
                tx.execute("DELETE FROM record_list_meta WHERE name = ?1", [&name])?;
                if let Some(p) = journal {
                    p.record(&tx)?;
                }
                tx.commit()?;
                Ok(n > 0)
            })
            .await
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ListOp {
    Push {
        name: String,
        items: Vec<String>,
        cap: u64,
        ttl_ms: u64,
        /// Unique, so that a push replayed twice is pushed once.
        #[serde(default)]
        u: u64,
    },
    Delete {
        name: String,
    },
}

struct ListRecovery {
    redis: Arc<RedisLists>,
    store: Arc<EmbeddedStore>,
    generation: Arc<Generation>,
}

#[async_trait::async_trait]
impl Recovery for ListRecovery {
    fn capability(&self) -> &'static str {
        "list"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            match serde_json::from_slice(&e.op)? {
                ListOp::Push {
                    name,
                    items,
                    cap,
                    ttl_ms,
                    u,
                } => {
                    self.redis
                        .push(&name, &items, cap, Duration::from_millis(ttl_ms), e.ts, Some(u))
                        .await?;
                }
                ListOp::Delete { name } => {
                    self.redis.delete(&name, e.ts).await?;
                }
            }
        }
        Ok(())
    }

    fn seal(&self) -> BoxFuture<'static, Result<()>> {
        self.generation.seal()
    }

    /// Deletes what [`Recovery::seal`] made invisible; rows of the current generation stay.
    async fn after_close(&self, _after: Closed) -> Result<()> {
        let generation = self.generation.current() as i64;
        self.store
            .sql("list_forget_outage", move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "DELETE FROM record_lists WHERE name IN (SELECT name FROM record_list_meta WHERE gen < ?1)",
                    [generation],
                )?;
                tx.execute("DELETE FROM record_list_meta WHERE gen < ?1", [generation])?;
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

/// Capped lists (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct Lists {
    routed: Arc<Routed<dyn ListBackend>>,
    route: Arc<Route>,
}

impl Lists {
    pub(crate) fn new(route: &Arc<Route>) -> Self {
        let generation = route.embedded().generation("list");
        let embedded = Arc::new(EmbeddedLists {
            store: route.embedded().clone(),
            generation: generation.clone(),
        });
        let redis = route.redis().map(|core| {
            let r = Arc::new(RedisLists::new(core.clone()));
            route.register_recovery(Arc::new(ListRecovery {
                redis: r.clone(),
                store: route.embedded().clone(),
                generation,
            }));
            r as Arc<dyn ListBackend>
        });
        Lists {
            routed: Arc::new(route.routed("list", FallbackPolicy::Serve, redis, embedded as Arc<dyn ListBackend>)),
            route: route.clone(),
        }
    }

    /// Puts `items` on top of list `name` (the last one newest), keeps the newest `cap`,
    /// and sets its time to live (zero: none); the new length.
    pub async fn push(&self, name: &str, items: &[Value], cap: u64, ttl: Duration) -> Result<u64> {
        check_name("name", name)?;
        if items.is_empty() || items.len() > MAX_PUSH {
            return Err(Error::invalid("items", format!("1 to {MAX_PUSH} items")));
        }
        if !(1..=MAX_CAP).contains(&cap) {
            return Err(Error::invalid("cap", format!("1 to {MAX_CAP}")));
        }
        if ttl > Duration::from_secs(10 * 366 * 86_400) {
            return Err(Error::invalid("ttl_s", "at most 10 years (0: none)"));
        }
        let ts = self.route.clock().now();
        let mut texts = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let json = serde_json::to_string(item)?;
            if json.len() > MAX_ITEM_BYTES {
                return Err(Error::TooLarge {
                    field: format!("items[{i}]"),
                    size: json.len(),
                    limit: MAX_ITEM_BYTES,
                });
            }
            texts.push(format!("{ts}:{json}"));
        }
        let op = || {
            serde_json::to_vec(&ListOp::Push {
                name: name.into(),
                items: texts.clone(),
                cap,
                ttl_ms: ttl.as_millis() as u64,
                u: rand::random(),
            })
            .expect("a list operation is JSON")
        };
        self.routed
            .write(op, |b| b.push(name, &texts, cap, ttl, ts, None))
            .await
    }

    /// Up to `limit` (1–1000) items from `offset` (0: the newest), and the length.
    pub async fn range(&self, name: &str, offset: usize, limit: usize) -> Result<super::lists::ListPage> {
        check_name("name", name)?;
        if !(1..=MAX_RANGE).contains(&limit) {
            return Err(Error::invalid("limit", format!("1 to {MAX_RANGE}")));
        }
        if offset > MAX_CAP as usize {
            return Err(Error::invalid("offset", format!("at most {MAX_CAP}")));
        }
        let (texts, length) = self.routed.read(|b| b.range(name, offset, limit)).await?;
        let items = texts
            .iter()
            .map(|t| {
                let json = t.split_once(':').map_or(t.as_str(), |(_, j)| j);
                Ok(serde_json::from_str(json)?)
            })
            .collect::<Result<_>>()?;
        Ok(ListPage { items, length })
    }

    /// Deletes list `name`; whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        check_name("name", name)?;
        let ts = self.route.clock().now();
        let op = || serde_json::to_vec(&ListOp::Delete { name: name.into() }).expect("a list operation is JSON");
        self.routed.write(op, |b| b.delete(name, ts)).await
    }
}
