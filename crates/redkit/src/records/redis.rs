//! Records on Redis without modules: a string per record (its fields' JSON texts, length-
//! prefixed, after a header with its version, stamp and expiry), sorted sets for the indexes, all
//! under one hash tag per collection (`rk:{rec:NAME}:…`), so every script runs on one
//! Cluster slot; each write changes the record and its index entries in one script.
//! Definitions live in the collection's `…:def` hash (spec and stamp) and the set
//! [`NAMES`] lists the collections.

use std::sync::Arc;
use std::time::Duration;

use redis::Value as RedisValue;
use serde_json::{Map, Value};

use super::backend::{Applied, Cursor, Query, Record, RecordBackend, Stamp};
use super::collection::{IndexKind, IndexSpec, Schema};
use crate::core::redis::{LuaScript, RedisCore};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// The set of defined collections' names.
pub const NAMES: &str = "rk:rec:names";

macro_rules! script {
    ($name:literal, $file:literal) => {
        LuaScript::new($name, concat!(include_str!("prelude.lua"), include_str!($file)))
    };
}
static WRITE: LuaScript = script!("record_write", "write.lua");
static QUERY: LuaScript = script!("record_query", "query.lua");
static MAINTAIN: LuaScript = script!("record_maintain", "maintain.lua");
static DEFINE: LuaScript = LuaScript::new(
    "record_define",
    "-- ARGV[1]: the def key, ARGV[2]: expected stamp ('' none), ARGV[3]: new stamp ('' to undefine),
-- ARGV[4]: spec JSON, ARGV[5..]: index keys to drop. Returns 1, or 0 if the stamp moved.
if (redis.call('HGET', ARGV[1], 'stamp') or '') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('DEL', ARGV[1])
else
  redis.call('HSET', ARGV[1], 'spec', ARGV[4], 'stamp', ARGV[3])
end
for i = 5, #ARGV do redis.call('DEL', ARGV[i]) end
return 1",
);

/// How long a delete's tombstone keeps an older outage write from bringing the record back.
pub const TOMBSTONE_KEEP: Duration = Duration::from_secs(7 * 86_400);

pub(super) fn base(collection: &str) -> String {
    format!("rk:{{rec:{collection}}}")
}

/// Records on Redis.
pub struct RedisRecords {
    core: Arc<RedisCore>,
}

impl RedisRecords {
    pub(crate) fn new(core: Arc<RedisCore>) -> Self {
        RedisRecords { core }
    }
}

/// The arguments every record script starts with (see prelude.lua).
fn prelude(schema: &Schema) -> Vec<Vec<u8>> {
    let join = |kind| schema.fields(kind).collect::<Vec<_>>().join("\n").into_bytes();
    vec![
        base(&schema.name).into_bytes(),
        schema.stamp.clone().into_bytes(),
        now_ms().to_string().into_bytes(),
        join(IndexKind::Equal),
        join(IndexKind::Range),
    ]
}

fn text(v: &RedisValue) -> Result<String> {
    match v {
        RedisValue::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        RedisValue::SimpleString(s) => Ok(s.clone()),
        RedisValue::Int(n) => Ok(n.to_string()),
        other => Err(Error::Codec(format!(
            "unexpected reply from a record script: {other:?}"
        ))),
    }
}

fn int(v: Option<&RedisValue>) -> Result<i64> {
    let v = v.ok_or_else(|| Error::Codec("short reply from a record script".into()))?;
    text(v)?
        .parse()
        .map_err(|_| Error::Codec(format!("expected an integer from a record script, got {v:?}")))
}

/// Splits a script's `{status, …}` reply.
fn status(reply: Vec<RedisValue>) -> Result<(String, Vec<RedisValue>)> {
    let mut it = reply.into_iter();
    let head = it
        .next()
        .ok_or_else(|| Error::Codec("empty reply from a record script".into()))?;
    Ok((text(&head)?, it.collect()))
}

fn applied<T>(status: &str, rest: &[RedisValue], ok: impl FnOnce(&[RedisValue]) -> Result<T>) -> Result<Applied<T>> {
    Ok(match status {
        "ok" => Applied::Done(ok(rest)?),
        "conflict" => Applied::VersionConflict(int(rest.first())? as u64),
        "missing" => Applied::Missing,
        "notint" => Applied::NotInteger,
        "stale" => Applied::StaleSchema,
        "superseded" => Applied::Superseded,
        "toolarge" => Applied::TooLarge(int(rest.first())? as usize),
        other => return Err(Error::Codec(format!("unknown status {other:?} from a record script"))),
    })
}

/// A record from its stored form (see prelude.lua): `VERSION STAMP EXPIRY\n` then each
/// field as `LEN:NAME` `LEN:JSONTEXT`; `None` when it has expired.
pub(super) fn record_from_stored(id: String, stored: &[u8]) -> Result<Option<Record>> {
    let bad = || Error::Codec(format!("record {id} is stored malformed"));
    let nl = stored.iter().position(|b| *b == b'\n').ok_or_else(bad)?;
    let header = std::str::from_utf8(&stored[..nl]).map_err(|_| bad())?;
    let mut parts = header.split(' ');
    let version: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let expires: u64 = parts.nth(1).and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if expires != 0 && expires <= now_ms() {
        return Ok(None);
    }
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>> {
        let colon = rest.iter().position(|b| *b == b':').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..colon])
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(bad)?;
        let value = rest.get(colon + 1..colon + 1 + len).ok_or_else(bad)?.to_vec();
        *rest = &rest[colon + 1 + len..];
        Ok(value)
    };
    let mut rest = &stored[nl + 1..];
    let mut data = Map::new();
    while !rest.is_empty() {
        let name = String::from_utf8(take(&mut rest)?).map_err(|_| bad())?;
        let value = take(&mut rest)?;
        data.insert(name, serde_json::from_slice(&value)?);
    }
    Ok(Some(Record {
        id,
        data,
        version,
        expires_at_ms: (expires != 0).then_some(expires),
    }))
}

fn bytes(v: &RedisValue) -> Result<&[u8]> {
    match v {
        RedisValue::BulkString(b) => Ok(b),
        other => Err(Error::Codec(format!(
            "unexpected reply from a record script: {other:?}"
        ))),
    }
}

impl RedisRecords {
    async fn write(
        &self,
        schema: &Schema,
        mode: &str,
        id: &str,
        if_version: Option<u64>,
        stamp: Stamp,
        tail: Vec<Vec<u8>>,
    ) -> Result<(String, Vec<RedisValue>)> {
        let mut args = prelude(schema);
        args.extend([
            mode.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
            if_version.map_or(-1, |v| v as i64).to_string().into_bytes(),
            stamp.ts.to_string().into_bytes(),
            stamp.replay.map(|u| u.to_string()).unwrap_or_default().into_bytes(),
            stamp.expires_at_ms.to_string().into_bytes(),
            (TOMBSTONE_KEEP.as_micros() as u64).to_string().into_bytes(),
            schema.spec.max_bytes.to_string().into_bytes(),
        ]);
        args.extend(tail);
        let reply: Vec<RedisValue> = self.core.script(&WRITE, &[&base(&schema.name)], &[&args]).await?;
        status(reply)
    }

    async fn maintain<T: redis::FromRedisValue>(&self, schema: &Schema, tail: Vec<Vec<u8>>) -> Result<T> {
        let mut args = prelude(schema);
        args.extend(tail);
        self.core.script(&MAINTAIN, &[&base(&schema.name)], &[&args]).await
    }
}

fn field_args(fields: &Map<String, Value>) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(fields.len() * 2);
    for (k, v) in fields {
        out.push(k.as_bytes().to_vec());
        out.push(if v.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(v)?
        });
    }
    Ok(out)
}

fn index_key(schema_name: &str, ix: &IndexSpec) -> String {
    let kind = match ix.kind {
        IndexKind::Equal => "q",
        IndexKind::Range => "r",
    };
    format!("{}:{kind}:{}", base(schema_name), ix.field)
}

#[async_trait::async_trait]
impl RecordBackend for RedisRecords {
    async fn schema(&self, name: &str) -> Result<Option<Schema>> {
        let (spec, stamp): (Option<String>, Option<String>) = self
            .core
            .query(
                "record_schema",
                redis::cmd("HMGET")
                    .arg(format!("{}:def", base(name)))
                    .arg("spec")
                    .arg("stamp"),
            )
            .await?;
        match (spec, stamp) {
            (Some(spec), Some(stamp)) => Ok(Some(Schema {
                name: name.to_string(),
                spec: serde_json::from_str(&spec)?,
                stamp,
            })),
            _ => Ok(None),
        }
    }

    async fn schemas(&self) -> Result<Vec<Schema>> {
        let mut names: Vec<String> = self
            .core
            .query("record_names", redis::cmd("SMEMBERS").arg(NAMES))
            .await?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(s) = self.schema(&n).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    async fn define(&self, schema: &Schema, expected: Option<&str>, dropped: &[IndexSpec]) -> Result<bool> {
        let mut args = vec![
            format!("{}:def", base(&schema.name)),
            expected.unwrap_or_default().to_string(),
            schema.stamp.clone(),
            serde_json::to_string(&schema.spec)?,
        ];
        args.extend(dropped.iter().map(|ix| index_key(&schema.name, ix)));
        let done: i64 = self.core.script(&DEFINE, &[&base(&schema.name)], &[&args]).await?;
        if done == 1 {
            let _: i64 = self
                .core
                .query("record_names", redis::cmd("SADD").arg(NAMES).arg(&schema.name))
                .await?;
        }
        Ok(done == 1)
    }

    async fn undefine(&self, schema: &Schema) -> Result<bool> {
        let args = vec![
            format!("{}:def", base(&schema.name)),
            schema.stamp.clone(),
            String::new(),
            String::new(),
        ];
        let done: i64 = self.core.script(&DEFINE, &[&base(&schema.name)], &[&args]).await?;
        if done != 1 {
            return Ok(false);
        }
        let _: i64 = self
            .core
            .query("record_names", redis::cmd("SREM").arg(NAMES).arg(&schema.name))
            .await?;
        // Emptied in batches, so no single script holds Redis for long.
        loop {
            let left: i64 = self.maintain(schema, vec![b"clear".to_vec(), b"500".to_vec()]).await?;
            if left == 0 {
                return Ok(true);
            }
        }
    }

    async fn put(
        &self,
        schema: &Schema,
        id: &str,
        fields: &Map<String, Value>,
        if_version: Option<u64>,
        stamp: Stamp,
    ) -> Result<Applied<u64>> {
        let (s, rest) = self
            .write(schema, "put", id, if_version, stamp, field_args(fields)?)
            .await?;
        applied(&s, &rest, |r| Ok(int(r.first())? as u64))
    }

    async fn patch(
        &self,
        schema: &Schema,
        id: &str,
        changes: &Map<String, Value>,
        if_version: Option<u64>,
        stamp: Stamp,
    ) -> Result<Applied<u64>> {
        let (s, rest) = self
            .write(schema, "patch", id, if_version, stamp, field_args(changes)?)
            .await?;
        applied(&s, &rest, |r| Ok(int(r.first())? as u64))
    }

    async fn delete(&self, schema: &Schema, id: &str, stamp: Stamp) -> Result<Applied<bool>> {
        let (s, rest) = self.write(schema, "delete", id, None, stamp, Vec::new()).await?;
        applied(&s, &rest, |r| Ok(int(r.first())? == 1))
    }

    async fn incr(&self, schema: &Schema, id: &str, field: &str, by: i64, stamp: Stamp) -> Result<Applied<(i64, u64)>> {
        let tail = vec![field.as_bytes().to_vec(), by.to_string().into_bytes()];
        let (s, rest) = self.write(schema, "incr", id, None, stamp, tail).await?;
        applied(&s, &rest, |r| Ok((int(r.get(1))?, int(r.first())? as u64)))
    }

    async fn get_many(&self, schema: &Schema, ids: &[String]) -> Result<Vec<Option<Record>>> {
        let base = base(&schema.name);
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("GET").arg(format!("{base}:d:{id}"));
        }
        let stored: Vec<Option<Vec<u8>>> = self.core.pipeline("record_get", &pipe).await?;
        ids.iter()
            .zip(stored)
            .map(|(id, s)| match s {
                Some(s) => record_from_stored(id.clone(), &s),
                None => Ok(None),
            })
            .collect()
    }

    async fn query(&self, schema: &Schema, q: &Query) -> Result<Applied<(Vec<Record>, Option<Cursor>)>> {
        let mut args = prelude(schema);
        let eqs: Vec<String> = q.equal.iter().flat_map(|(f, v)| [f.clone(), v.clone()]).collect();
        let (rf, lo, hi) = match &q.range {
            Some((f, lo, hi)) => (f.clone(), *lo, *hi),
            None => (String::new(), f64::NEG_INFINITY, f64::INFINITY),
        };
        let score = |f: f64| {
            if f == f64::INFINITY {
                "+inf".to_string()
            } else if f == f64::NEG_INFINITY {
                "-inf".to_string()
            } else {
                f.to_string()
            }
        };
        let (cs, ci) = match &q.after {
            Some(c) => (c.score.map(score).unwrap_or_default(), c.id.clone()),
            None => (String::new(), String::new()),
        };
        args.extend(
            [
                eqs.join("\n"),
                rf,
                score(lo),
                score(hi),
                if q.descending { "1".into() } else { "0".into() },
                q.limit.to_string(),
                cs,
                ci,
                (q.limit * 4).clamp(256, 5_000).to_string(),
            ]
            .map(String::into_bytes),
        );
        let reply: Vec<RedisValue> = self.core.script(&QUERY, &[&base(&schema.name)], &[&args]).await?;
        let (s, rest) = status(reply)?;
        applied(&s, &rest, |rest| {
            let (cs, ci) = (text(&rest[0])?, text(&rest[1])?);
            let cursor = (!ci.is_empty()).then(|| Cursor {
                score: cs.parse().ok(),
                id: ci,
            });
            let mut records = Vec::new();
            for item in &rest[2..] {
                let RedisValue::Array(pair) = item else {
                    return Err(Error::Codec("unexpected query reply".into()));
                };
                let id = text(&pair[0])?;
                if let Some(r) = record_from_stored(id, bytes(&pair[1])?)? {
                    records.push(r);
                }
            }
            Ok((records, cursor))
        })
    }

    async fn count(&self, schema: &Schema) -> Result<u64> {
        let (all, expired): (u64, u64) = self
            .core
            .pipeline(
                "record_count",
                redis::pipe()
                    .cmd("ZCARD")
                    .arg(format!("{}:all", base(&schema.name)))
                    .cmd("ZCOUNT")
                    .arg(format!("{}:exp", base(&schema.name)))
                    .arg("-inf")
                    .arg(now_ms()),
            )
            .await?;
        Ok(all.saturating_sub(expired))
    }

    async fn reindex(
        &self,
        schema: &Schema,
        field: &str,
        kind: IndexKind,
        after: &str,
        batch: usize,
    ) -> Result<Option<String>> {
        let kind = match kind {
            IndexKind::Equal => "equal",
            IndexKind::Range => "range",
        };
        let tail = [
            b"reindex".as_slice(),
            field.as_bytes(),
            kind.as_bytes(),
            after.as_bytes(),
            batch.to_string().as_bytes(),
        ]
        .map(<[u8]>::to_vec)
        .to_vec();
        let last: String = self.maintain(schema, tail).await?;
        Ok((!last.is_empty()).then_some(last))
    }

    async fn purge(&self, schema: &Schema, limit: usize) -> Result<usize> {
        self.maintain(schema, vec![b"purge".to_vec(), limit.to_string().into_bytes()])
            .await
    }
}
