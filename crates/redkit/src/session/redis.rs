//! Sessions on Redis: one hash per session, `rk:s:{ID}` (meta fields `_u _c _l _i _a`,
//! data fields `d:NAME` = JSON), expiring at min(idle, absolute) — both enforced by the
//! scripts on Redis's clock — and a per-user index `rk:s:u:{USER}` (sorted set of ids by
//! absolute deadline). Every script touches one key, so this runs on Redis Cluster.

use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::{Map, Value};

use super::backend::{Patch, Session, SessionBackend, Updated};
use crate::core::redis::{LuaScript, RedisCore, ToRedisArgsDyn};
use crate::error::{Error, Result};
use crate::stats::now_ms;

static GET: LuaScript = LuaScript::new(
    "session_get",
    concat!(include_str!("prelude.lua"), include_str!("session_get.lua")),
);
static UPDATE: LuaScript = LuaScript::new(
    "session_update",
    concat!(include_str!("prelude.lua"), include_str!("session_update.lua")),
);
static CREATE: LuaScript = LuaScript::new(
    "session_create",
    concat!(include_str!("prelude.lua"), include_str!("session_create.lua")),
);
static TAKE: LuaScript = LuaScript::new(
    "session_take",
    concat!(include_str!("prelude.lua"), include_str!("session_take.lua")),
);

/// Sessions on Redis.
pub struct RedisSessions {
    core: Arc<RedisCore>,
}

fn key(id: &str) -> String {
    format!("rk:s:{{{id}}}")
}

fn index(user: &str) -> String {
    format!("rk:s:u:{{{user}}}")
}

/// Parses HGETALL's flat list.
fn parse(id: &str, fields: &[String]) -> Result<Session> {
    let bad = || Error::Codec(format!("session {id} is malformed in redis"));
    let mut s = Session {
        id: id.to_string(),
        user: None,
        data: Map::new(),
        created_ms: 0,
        last_seen_ms: 0,
        idle_ms: 0,
        absolute_deadline_ms: 0,
    };
    for pair in fields.chunks(2) {
        let [name, value] = pair else { return Err(bad()) };
        let num = || value.parse::<u64>().map_err(|_| bad());
        match name.as_str() {
            "_u" => s.user = (!value.is_empty()).then(|| value.clone()),
            "_c" => s.created_ms = num()?,
            "_l" => s.last_seen_ms = num()?,
            "_i" => s.idle_ms = num()?,
            "_a" => s.absolute_deadline_ms = num()?,
            d => {
                if let Some(field) = d.strip_prefix("d:") {
                    s.data.insert(field.to_string(), serde_json::from_str(value)?);
                }
            }
        }
    }
    Ok(s)
}

fn data_args(data: &Map<String, Value>) -> Vec<String> {
    data.iter()
        .flat_map(|(k, v)| [format!("d:{k}"), v.to_string()])
        .collect()
}

impl RedisSessions {
    pub(crate) fn new(core: Arc<RedisCore>) -> Self {
        RedisSessions { core }
    }

    async fn index_add(&self, s: &Session) -> Result<()> {
        if let Some(user) = &s.user {
            let mut add = redis::cmd("ZADD");
            add.arg(index(user)).arg(s.absolute_deadline_ms).arg(&s.id);
            let _: i64 = self.core.query("session_index", &add).await?;
            let mut exp = redis::cmd("PEXPIREAT");
            exp.arg(index(user)).arg(s.absolute_deadline_ms).arg("GT");
            let _: i64 = self.core.query("session_index", &exp).await?;
            let mut nx = redis::cmd("PEXPIREAT");
            nx.arg(index(user)).arg(s.absolute_deadline_ms).arg("NX");
            let _: i64 = self.core.query("session_index", &nx).await?;
        }
        Ok(())
    }

    /// Deletes a session and its index entry (recovery replays, `revoke_all`).
    pub(crate) async fn delete(&self, id: &str, user: Option<&str>) -> Result<bool> {
        let n: i64 = self
            .core
            .query("session_delete", redis::cmd("DEL").arg(key(id)))
            .await?;
        if let Some(user) = user {
            let _: i64 = self
                .core
                .query("session_index", redis::cmd("ZREM").arg(index(user)).arg(id))
                .await?;
        }
        Ok(n == 1)
    }
}

#[async_trait::async_trait]
impl SessionBackend for RedisSessions {
    async fn create(&self, s: &Session) -> Result<Option<Session>> {
        let mut args: Vec<String> = vec![
            s.idle_ms.to_string(),
            (s.absolute_deadline_ms - s.created_ms).to_string(),
            s.user.clone().unwrap_or_default(),
        ];
        args.extend(data_args(&s.data));
        let refs: Vec<&dyn ToRedisArgsDyn> = args.iter().map(|a| a as _).collect();
        let created: Option<Vec<u64>> = self.core.script(&CREATE, &[&key(&s.id)], &refs).await?;
        let Some(&[now]) = created.as_deref() else {
            return Ok(None);
        };
        let stored = Session {
            created_ms: now,
            last_seen_ms: now,
            absolute_deadline_ms: now + (s.absolute_deadline_ms - s.created_ms),
            ..s.clone()
        };
        self.index_add(&stored).await?;
        Ok(Some(stored))
    }

    async fn put(&self, s: &Session) -> Result<()> {
        let k = key(&s.id);
        let mut pipe = redis::pipe();
        pipe.del(&k).ignore();
        let mut hset = redis::cmd("HSET");
        hset.arg(&k)
            .arg("_u")
            .arg(s.user.clone().unwrap_or_default())
            .arg("_c")
            .arg(s.created_ms)
            .arg("_l")
            .arg(s.last_seen_ms)
            .arg("_i")
            .arg(s.idle_ms)
            .arg("_a")
            .arg(s.absolute_deadline_ms);
        for a in data_args(&s.data) {
            hset.arg(a);
        }
        pipe.add_command(hset).ignore();
        pipe.cmd("PEXPIREAT")
            .arg(&k)
            .arg(s.expires_ms().max(now_ms() + 1))
            .ignore();
        let () = self.core.pipeline("session_put", &pipe).await?;
        self.index_add(s).await
    }

    async fn get(&self, id: &str, touch: bool) -> Result<Option<Session>> {
        let fields: Option<Vec<String>> = self
            .core
            .script(&GET, &[&key(id)], &[&if touch { "1" } else { "0" }])
            .await?;
        fields.map(|f| parse(id, &f)).transpose()
    }

    async fn update(&self, id: &str, patch: &Patch, max_bytes: usize) -> Result<Updated> {
        let mut args: Vec<String> = vec![max_bytes.to_string(), patch.set.len().to_string()];
        for (name, value) in &patch.set {
            args.push(format!("d:{name}"));
            args.push(value.clone());
        }
        args.extend(patch.remove.iter().map(|n| format!("d:{n}")));
        let refs: Vec<&dyn ToRedisArgsDyn> = args.iter().map(|a| a as _).collect();
        let reply: Vec<String> = self.core.script(&UPDATE, &[&key(id)], &refs).await?;
        match reply.first().map(String::as_str) {
            Some("1") => Ok(Updated::Done(parse(id, &reply[1..])?)),
            Some("2") => Ok(Updated::TooLarge(
                reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
            )),
            _ => Ok(Updated::Missing),
        }
    }

    async fn take(&self, id: &str) -> Result<Option<Session>> {
        let fields: Option<Vec<String>> = self.core.script(&TAKE, &[&key(id)], &[]).await?;
        let session = fields.map(|f| parse(id, &f)).transpose()?;
        if let Some(user) = session.as_ref().and_then(|s| s.user.as_ref()) {
            let _: i64 = self
                .core
                .query("session_index", redis::cmd("ZREM").arg(index(user)).arg(id))
                .await?;
        }
        Ok(session)
    }

    async fn list(&self, user: &str) -> Result<Vec<Session>> {
        let mut range = redis::cmd("ZRANGE");
        range.arg(index(user)).arg(now_ms()).arg("+inf").arg("BYSCORE");
        let ids: Vec<String> = self.core.query("session_index", &range).await?;
        let found = join_all(ids.iter().map(|id| self.get(id, false))).await;
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, s) in ids.iter().zip(found) {
            match s? {
                Some(s) => live.push(s),
                None => dead.push(id.clone()),
            }
        }
        if !dead.is_empty() {
            let mut zrem = redis::cmd("ZREM");
            zrem.arg(index(user)).arg(&dead);
            let _: i64 = self.core.query("session_index", &zrem).await?;
        }
        Ok(live)
    }

    async fn revoke_all(&self, user: &str) -> Result<u64> {
        let ids: Vec<String> = self
            .core
            .query("session_index", redis::cmd("ZRANGE").arg(index(user)).arg(0).arg(-1))
            .await?;
        let deleted = join_all(ids.iter().map(|id| self.delete(id, None))).await;
        let mut n = 0;
        for d in deleted {
            n += u64::from(d?);
        }
        let _: i64 = self
            .core
            .query("session_index", redis::cmd("DEL").arg(index(user)))
            .await?;
        Ok(n)
    }
}
