//! Sessions on Redis.
//!
//! Layout (every script touches keys of one hash tag, so this runs on Redis Cluster):
//! - `rk:s:{ID}` — one hash per session: meta fields `_u _c _l _i _a` (user, created, last
//!   seen, idle ms, absolute deadline), `_t` (the stamp of its last change, µs), `_cu` (the
//!   stamp of its creation, µs: what a revoke-all compares; sessions written back from an
//!   outage have only `_c`, so one made within the revoke's millisecond is revoked), data
//!   fields `d:NAME` = JSON and their stamps `t:NAME` (a removed field keeps its stamp);
//!   it expires at min(idle, absolute), both enforced by the scripts on Redis's clock;
//! - `rk:s:{ID}:x` — the tombstone of a deleted session, until its absolute deadline: the
//!   deletion's stamp, and for a rotation the id it moved to (`STAMP>NEWID`), which
//!   operations on the old id replayed after an outage follow;
//! - `rk:s:u:{USER}` — the user's index (sorted set of ids by absolute deadline) and
//!   `rk:s:u:{USER}:r` — the user's revoke marker: sessions created before this stamp
//!   are revoked ("log out everywhere", also for sessions created concurrently or
//!   replayed after an outage).
//!
//! Changes made here are announced on the backplane channel [`CHANNEL`] so that other
//! instances' mirrors drop what they hold.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Map, Value};

use super::backend::{Patch, Revoked, Session, SessionBackend, Updated};
use crate::core::keys::encode;
use crate::core::redis::{LuaScript, RedisCore, ToRedisArgsDyn};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// The backplane channel of session changes.
pub const CHANNEL: &str = "rk:s:bp";

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LuaScript = LuaScript::new(
            concat!("session_", $file),
            concat!(
                include_str!("prelude.lua"),
                include_str!(concat!("session_", $file, ".lua"))
            ),
        );
    };
}
script!(GET, "get");
script!(UPDATE, "update");
script!(CREATE, "create");
script!(TAKE, "take");
script!(REPLAY_PATCH, "replay_patch");
script!(REPLAY_DELETE, "replay_delete");
script!(ENSURE, "ensure");
script!(REVOKE, "revoke");

/// Most rotations an operation replayed after an outage follows.
const MAX_HOPS: usize = 8;

/// How long a user's revoke marker is kept: the longest absolute timeout a session can
/// have, so every session created before it has died by the time it goes.
const REVOKE_MARKER_MS: u64 = 366 * 86_400_000;

/// Sessions on Redis.
pub struct RedisSessions {
    core: Arc<RedisCore>,
    instance: Arc<str>,
}

fn key(id: &str) -> String {
    format!("rk:s:{{{id}}}")
}

fn tombstone(id: &str) -> String {
    format!("rk:s:{{{id}}}:x")
}

fn index(user: &str) -> String {
    format!("rk:s:u:{{{}}}", encode(user))
}

fn marker(user: &str) -> String {
    format!("rk:s:u:{{{}}}:r", encode(user))
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
        version: 0,
        stamps: Default::default(),
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
            "_t" => s.version = num()?,
            d => {
                if let Some(field) = d.strip_prefix("d:") {
                    s.data.insert(field.to_string(), serde_json::from_str(value)?);
                } else if let Some(field) = d.strip_prefix("t:") {
                    s.stamps.insert(field.to_string(), num()?);
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

/// Data fields as name, value, stamp triples (`default` where no stamp is known), then
/// removed fields as name, stamp pairs; with the number of triples.
fn stamped_args(s: &Session, default: u64) -> (usize, Vec<String>) {
    let mut args = Vec::with_capacity(s.data.len() * 3 + s.stamps.len() * 2);
    for (k, v) in &s.data {
        let stamp = s.stamps.get(k).copied().unwrap_or(default);
        args.extend([format!("d:{k}"), v.to_string(), stamp.to_string()]);
    }
    for (k, stamp) in &s.stamps {
        if !s.data.contains_key(k) {
            args.extend([format!("d:{k}"), stamp.to_string()]);
        }
    }
    (s.data.len(), args)
}

/// A replay script's answer: done, the id a rotation moved the session to, or the fields
/// of the live session it deleted.
#[derive(Debug)]
enum Followed {
    Done(i64),
    MovedTo(String),
    Deleted(Vec<String>),
}

impl redis::FromRedisValue for Followed {
    fn from_redis_value(v: redis::Value) -> std::result::Result<Self, redis::ParsingError> {
        match v {
            redis::Value::Array(items) => {
                let mut items: Vec<String> = redis::from_redis_value(redis::Value::Array(items))?;
                match items.first().map(String::as_str) {
                    Some("2") if items.len() == 2 => Ok(Followed::MovedTo(items.pop().expect("two items"))),
                    Some("1") => Ok(Followed::Deleted(items.split_off(1))),
                    _ => Err("unexpected session replay answer".into()),
                }
            }
            other => Ok(Followed::Done(redis::from_redis_value(other)?)),
        }
    }
}

fn patch_args(patch: &Patch) -> Vec<String> {
    let mut args = vec![patch.set.len().to_string()];
    for (name, value) in &patch.set {
        args.push(format!("d:{name}"));
        args.push(value.clone());
    }
    args.extend(patch.remove.iter().map(|n| format!("d:{n}")));
    args
}

fn refs(args: &[String]) -> Vec<&dyn ToRedisArgsDyn> {
    args.iter().map(|a| a as _).collect()
}

impl RedisSessions {
    pub(crate) fn new(core: Arc<RedisCore>, instance: Arc<str>) -> Self {
        RedisSessions { core, instance }
    }

    fn announce_args(&self, id: &str) -> [String; 3] {
        [CHANNEL.to_string(), self.instance.to_string(), id.to_string()]
    }

    /// Files a new session under its user, then checks the user's revoke marker: a
    /// session created before a concurrent "log out everywhere" is deleted at once.
    /// `created_us`: the creation's stamp. Returns whether the session survived.
    async fn index_and_check(&self, s: &Session, created_us: u64) -> Result<bool> {
        let Some(user) = &s.user else { return Ok(true) };
        let idx = index(user);
        let mut pipe = redis::pipe();
        pipe.zadd(&idx, &s.id, s.absolute_deadline_ms).ignore();
        pipe.cmd("PEXPIREAT")
            .arg(&idx)
            .arg(s.absolute_deadline_ms)
            .arg("GT")
            .ignore();
        pipe.cmd("PEXPIREAT")
            .arg(&idx)
            .arg(s.absolute_deadline_ms)
            .arg("NX")
            .ignore();
        pipe.get(marker(user));
        let (revoked_before,): (Option<u64>,) = self.core.pipeline("session_index", &pipe).await?;
        match revoked_before {
            Some(stamp) if created_us < stamp => {
                self.replay_delete(&s.id, Some(user), stamp, s.absolute_deadline_ms, None, Some(stamp))
                    .await?;
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    async fn unindex(&self, user: &str, ids: &[&str]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .core
            .query("session_index", redis::cmd("ZREM").arg(index(user)).arg(ids))
            .await?;
        Ok(())
    }

    /// Replays a patch made at `ts` during an outage (newer field stamps in Redis win),
    /// following the session through rotations made meanwhile.
    pub(crate) async fn replay_patch(&self, id: &str, patch: &Patch, ts: u64) -> Result<()> {
        let mut id = id.to_string();
        for _ in 0..MAX_HOPS {
            let mut args = vec![ts.to_string()];
            args.extend(patch_args(patch));
            args.extend(self.announce_args(&id));
            match self
                .core
                .script(&REPLAY_PATCH, &[&key(&id), &tombstone(&id)], &refs(&args))
                .await?
            {
                Followed::MovedTo(next) => id = next,
                Followed::Done(_) | Followed::Deleted(_) => return Ok(()),
            }
        }
        tracing::warn!("a replayed session patch followed too many rotations; dropped");
        Ok(())
    }

    /// Deletes session `id` for good (tombstone until `deadline_ms`, or the session's own
    /// deadline). `moved_to` makes it a rotation's deletion; a logout follows rotations
    /// made meanwhile. With `created_before`, only a session created before that stamp.
    /// Returns whether a live session was deleted.
    pub(crate) async fn replay_delete(
        &self,
        id: &str,
        user: Option<&str>,
        ts: u64,
        deadline_ms: u64,
        moved_to: Option<&str>,
        created_before: Option<u64>,
    ) -> Result<bool> {
        if let Some(fresh) = moved_to {
            // A rotation: the new id exists before the old one points at it, so nothing
            // that follows the pointer finds nothing there.
            self.copy_to(id, fresh, ts).await?;
        }
        // A logout of a session this instance did not know: its tombstone must outlive
        // any copy another instance may still write back (a session it made in the same
        // outage), so it is kept as long as a session can live.
        let deadline_ms = if deadline_ms == 0 && moved_to.is_none() && created_before.is_none() {
            now_ms() + REVOKE_MARKER_MS
        } else {
            deadline_ms
        };
        let mut id = id.to_string();
        for _ in 0..MAX_HOPS {
            let mut args = vec![ts.to_string(), deadline_ms.to_string()];
            args.extend(self.announce_args(&id));
            args.push(moved_to.unwrap_or_default().to_string());
            if let Some(before) = created_before {
                args.push(before.to_string());
            }
            let outcome: Followed = self
                .core
                .script(&REPLAY_DELETE, &[&key(&id), &tombstone(&id)], &refs(&args))
                .await?;
            if let Some(user) = user {
                self.unindex(user, &[&id]).await?;
            }
            match outcome {
                Followed::MovedTo(next) => id = next,
                Followed::Done(_) => return Ok(false),
                Followed::Deleted(fields) => {
                    if let Some(fresh) = moved_to {
                        // What the old id gathered until it went moves to the new one
                        // (each field by its stamp).
                        self.merge_into(fresh, &fields, ts).await?;
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Writes `fields` (an HGETALL of another id) into session `fresh`, field by field by
    /// stamp, creating it if missing (unless deleted).
    async fn merge_into(&self, fresh: &str, fields: &[String], ts: u64) -> Result<()> {
        let mut gathered = parse(fresh, fields)?;
        gathered.id = fresh.to_string();
        // Boxed: ensuring may revoke, which deletes, which may merge.
        Box::pin(self.ensure(&gathered, ts)).await
    }

    /// Copies live session `id` to `fresh` (touched now); false if `id` is not live.
    async fn copy_to(&self, id: &str, fresh: &str, ts: u64) -> Result<bool> {
        let fields: Option<Vec<String>> = self.core.script(&GET, &[&key(id)], &[&"0"]).await?;
        let Some(mut fields) = fields else { return Ok(false) };
        for pair in fields.chunks_mut(2) {
            if let [name, value] = pair
                && name == "_l"
            {
                *value = now_ms().to_string();
            }
        }
        self.merge_into(fresh, &fields, ts).await?;
        Ok(true)
    }

    /// Writes session `s` as the outage left it unless it was deleted or revoked since
    /// (see `session_ensure.lua`); fields without a known stamp get `ts`.
    pub(crate) async fn ensure(&self, s: &Session, ts: u64) -> Result<()> {
        let (n, stamped) = stamped_args(s, ts);
        let mut args = vec![
            s.user.clone().unwrap_or_default(),
            s.created_ms.to_string(),
            s.last_seen_ms.to_string(),
            s.idle_ms.to_string(),
            s.absolute_deadline_ms.to_string(),
            s.version.max(ts).to_string(),
            n.to_string(),
        ];
        args.extend(stamped);
        let mut id = s.id.clone();
        for _ in 0..MAX_HOPS {
            match self
                .core
                .script(&ENSURE, &[&key(&id), &tombstone(&id)], &refs(&args))
                .await?
            {
                // Rotated meanwhile: what this copy holds belongs to the new id.
                Followed::MovedTo(next) => id = next,
                Followed::Done(0) | Followed::Deleted(_) => return Ok(()),
                Followed::Done(_) => {
                    // Also when it existed: an earlier attempt may have created it and been
                    // cut off before filing it and checking the user's revoke marker.
                    let filed = Session { id, ..s.clone() };
                    // Only the millisecond is known of a creation in the outage.
                    return self.index_and_check(&filed, s.created_ms * 1000).await.map(drop);
                }
            }
        }
        Ok(())
    }

    /// Deletes live session `id` (a rotation to `moved_to` when given); returns it as it
    /// was, with the deletion's stamp as its version, and its raw fields.
    /// A logout of a session absent (or expired) here leaves a tombstone kept `absent_keep`.
    async fn take(
        &self,
        id: &str,
        moved_to: Option<&str>,
        absent_keep: Duration,
    ) -> Result<Option<(Session, Vec<String>)>> {
        let args = [
            CHANNEL.to_string(),
            self.instance.to_string(),
            id.to_string(),
            moved_to.unwrap_or_default().to_string(),
            absent_keep.as_millis().to_string(),
        ];
        let reply: Option<Vec<String>> = self
            .core
            .script(&TAKE, &[&key(id), &tombstone(id)], &refs(&args))
            .await?;
        let Some((stamp, fields)) = reply.as_deref().and_then(<[String]>::split_first) else {
            return Ok(None);
        };
        let mut session = parse(id, fields)?;
        session.version = stamp
            .parse()
            .map_err(|_| Error::Codec("delete answered a bad stamp".into()))?;
        if let Some(user) = &session.user {
            self.unindex(user, &[id]).await?;
        }
        Ok(Some((session, fields.to_vec())))
    }

    /// Revokes every session of `user` created before `ts` (`None`: Redis's clock now).
    pub(crate) async fn revoke(&self, user: &str, ts: Option<u64>) -> Result<Revoked> {
        let args = [
            ts.unwrap_or(0).to_string(),
            REVOKE_MARKER_MS.to_string(),
            CHANNEL.to_string(),
            self.instance.to_string(),
            user.to_string(),
        ];
        let reply: Vec<String> = self
            .core
            .script(&REVOKE, &[&index(user), &marker(user)], &refs(&args))
            .await?;
        let (stamp, ids) = reply
            .split_first()
            .ok_or_else(|| Error::Codec("revoke answered nothing".into()))?;
        let stamp: u64 = stamp
            .parse()
            .map_err(|_| Error::Codec("revoke answered a bad stamp".into()))?;
        let deleted = join_all(
            ids.iter()
                .map(|id| self.replay_delete(id, None, stamp, 0, None, Some(stamp))),
        )
        .await;
        let mut count = 0;
        let mut gone: Vec<&str> = Vec::new();
        for (id, d) in ids.iter().zip(deleted) {
            if d? {
                count += 1;
                gone.push(id);
            }
        }
        self.unindex(user, &gone).await?;
        Ok(Revoked {
            count,
            stamp,
            ids: ids.to_vec(),
        })
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
        let created: Option<(u64, u64)> = self
            .core
            .script(&CREATE, &[&key(&s.id), &tombstone(&s.id)], &refs(&args))
            .await?;
        let Some((now, stamp)) = created else {
            return Ok(None);
        };
        let stored = Session {
            created_ms: now,
            last_seen_ms: now,
            absolute_deadline_ms: now + (s.absolute_deadline_ms - s.created_ms),
            version: stamp,
            stamps: s.data.keys().map(|k| (k.clone(), stamp)).collect(),
            ..s.clone()
        };
        self.index_and_check(&stored, stamp).await?;
        Ok(Some(stored))
    }

    async fn rotate(&self, id: &str, fresh_id: &str) -> Result<Option<Session>> {
        // New id first, then the old one's tombstone pointing at it, then what the old one
        // gathered meanwhile: an operation replayed on the old id at any point lands.
        let stamp = crate::core::hlc::wall_us();
        if !self.copy_to(id, fresh_id, stamp).await? {
            return Ok(None);
        }
        let Some((old, fields)) = self.take(id, Some(fresh_id), Duration::ZERO).await? else {
            // Logged out meanwhile: the logout holds for the new id too.
            self.replay_delete(fresh_id, None, stamp, 0, None, None).await?;
            return Ok(None);
        };
        self.merge_into(fresh_id, &fields, stamp).await?;
        Ok(Some(Session {
            id: fresh_id.to_string(),
            last_seen_ms: now_ms(),
            ..old
        }))
    }

    async fn get(&self, id: &str, touch: bool) -> Result<Option<Session>> {
        let fields: Option<Vec<String>> = self
            .core
            .script(&GET, &[&key(id)], &[&if touch { "1" } else { "0" }])
            .await?;
        fields.map(|f| parse(id, &f)).transpose()
    }

    async fn update(&self, id: &str, patch: &Patch, max_bytes: usize) -> Result<Updated> {
        let mut args: Vec<String> = vec![max_bytes.to_string()];
        args.extend(patch_args(patch));
        args.extend(self.announce_args(id));
        let reply: Vec<String> = self.core.script(&UPDATE, &[&key(id)], &refs(&args)).await?;
        match reply.first().map(String::as_str) {
            Some("1") => Ok(Updated::Done(parse(id, &reply[1..])?)),
            Some("2") => Ok(Updated::TooLarge(
                reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
            )),
            _ => Ok(Updated::Missing),
        }
    }

    async fn delete(&self, id: &str, absent_keep: Duration) -> Result<Option<Session>> {
        Ok(self.take(id, None, absent_keep).await?.map(|(s, _)| s))
    }

    async fn list(&self, user: &str) -> Result<Vec<Session>> {
        let mut range = redis::cmd("ZRANGE");
        range.arg(index(user)).arg(now_ms()).arg("+inf").arg("BYSCORE");
        let ids: Vec<String> = self.core.query("session_index", &range).await?;
        let found = join_all(ids.iter().map(|id| self.get(id, false))).await;
        let mut live = Vec::new();
        for s in found {
            live.extend(s?);
        }
        Ok(live)
    }

    async fn revoke_all(&self, user: &str) -> Result<Revoked> {
        self.revoke(user, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_spares_a_session_created_after_it_within_the_same_millisecond() {
        let (redkit, _redis, _dir) = crate::on_fresh_redis().await;
        let sessions = RedisSessions::new(redkit.route().redis().unwrap().clone(), Arc::from("test"));
        let now = now_ms();
        let made = |id: &str| Session {
            id: id.to_string(),
            user: Some("u".into()),
            data: Map::new(),
            created_ms: now,
            last_seen_ms: now,
            idle_ms: 60_000,
            absolute_deadline_ms: now + 60_000,
            version: 0,
            stamps: Default::default(),
        };
        let before = sessions.create(&made("before")).await.unwrap().unwrap();
        let after = sessions.create(&made("after")).await.unwrap().unwrap();
        // A revoke stamped between the two creations (µs, usually inside one millisecond).
        let revoked = sessions.revoke("u", Some(after.version)).await.unwrap();
        assert!(before.version < after.version);
        assert_eq!(revoked.count, 1);
        assert!(sessions.get("before", false).await.unwrap().is_none(), "created before");
        assert!(
            sessions.get("after", false).await.unwrap().is_some(),
            "created at the stamp"
        );
    }
}
