//! # Counters for analytics: minute, hour and day buckets, with optional labels
//!
//! [`Counters::incr`] adds to the bucket of each granularity that holds `at` (now by
//! default) — for the counter's total and, with labels (`{"route": "/x"}`), for that
//! label set — in one atomic step. [`Counters::range`] returns every bucket between two
//! times, missing ones as zero. Buckets are kept for [`retention`]: minutes 2 days, hours
//! 90 days, days 3 years. A counter has at most [`MAX_LABEL_SETS`] label sets, so what a
//! client sends cannot grow the store without bound.
//!
//! **Outages**: increments go to the embedded store and are journaled with their time;
//! when Redis returns they are added to Redis's buckets (increments add up, so nothing is
//! counted twice or lost). Reads during the outage see this instance's outage increments
//! only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::collection::check_name;
use crate::core::embedded::{EmbeddedStore, Generation};
use crate::core::journal::{Entry, pending};
use crate::core::redis::{LuaScript, RedisCore};
use crate::core::route::{BoxFuture, Closed, FallbackPolicy, Recovery, Route, Routed};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// Most label sets per counter.
pub const MAX_LABEL_SETS: usize = 100;
/// Most labels in a set.
pub const MAX_LABELS: usize = 8;
/// Most buckets per range.
pub const MAX_BUCKETS: u64 = 1500;

/// A bucket size.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One-minute buckets.
    Minute,
    /// One-hour buckets.
    Hour,
    /// One-day buckets (UTC).
    Day,
}

impl Granularity {
    const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];

    /// The bucket length in ms.
    pub fn ms(self) -> u64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Granularity::Minute => "m",
            Granularity::Hour => "h",
            Granularity::Day => "d",
        }
    }
}

/// How long buckets of `g` are kept.
pub fn retention(g: Granularity) -> Duration {
    Duration::from_secs(match g {
        Granularity::Minute => 2 * 86_400,
        Granularity::Hour => 90 * 86_400,
        Granularity::Day => 3 * 366 * 86_400,
    })
}

/// One bucket.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Its start (ms since the Unix epoch).
    pub start_ms: u64,
    /// The sum of increments in it.
    pub value: i64,
}

/// The label set's bucket values after an increment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counted {
    /// This minute's value (`None`: `at` is older than minutes are kept).
    pub minute: Option<i64>,
    /// This hour's value.
    pub hour: Option<i64>,
    /// This day's value.
    pub day: Option<i64>,
}

/// Labels, canonical (sorted by key).
pub type Labels = BTreeMap<String, String>;

/// Counter operations. `labels` is the label set's canonical JSON (`""`: the total only).
#[async_trait::async_trait]
pub trait CounterBackend: Send + Sync {
    /// Adds `by` to the total's and the label set's bucket of each granularity that holds
    /// `at`; the label set's values (the total's without labels). `None` in the outer
    /// option: the counter has [`MAX_LABEL_SETS`] other label sets already (a replay then
    /// counts the total only). `replay`: the journaled increment's unique id (one replayed
    /// before is not counted again).
    async fn incr(
        &self,
        name: &str,
        labels: &str,
        by: i64,
        at: u64,
        replay: Option<u64>,
    ) -> Result<Option<[Option<i64>; 3]>>;
    /// The values of buckets `starts` (one granularity).
    async fn range(&self, name: &str, labels: &str, g: Granularity, starts: &[u64]) -> Result<Vec<i64>>;
    /// The label sets seen (canonical JSON).
    async fn label_sets(&self, name: &str) -> Result<Vec<String>>;
}

fn label_id(labels: &str) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let d = Sha256::digest(labels.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

static INCR: LuaScript = LuaScript::new(
    "counter_incr",
    "-- KEYS[1]: the counter's label sets (hash id -> JSON), KEYS[2]: replayed increments (id -> ms).
-- ARGV[1]: key prefix, ARGV[2]: label set id ('' none), ARGV[3]: its JSON, ARGV[4]: by,
-- ARGV[5]: most label sets, ARGV[6]: when replaying, the increment's unique id ('' otherwise),
-- ARGV[7]: label sets' TTL ms, then per granularity: tag, bucket start, expiry
-- (ms; '0': older than kept). Returns {'full'}, {'dup'}, {'overflow'} (a bucket would pass
-- Redis's 64-bit range: every increment this call made is undone) or {'ok', minute, hour,
-- day} ('' skipped).
if ARGV[6] ~= '' then
  -- Replays are at least once: an increment replayed before is not counted twice.
  if redis.call('ZSCORE', KEYS[2], ARGV[6]) then return {'dup'} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000
  redis.call('ZADD', KEYS[2], now, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 7 * 86400000)
  redis.call('PEXPIRE', KEYS[2], 7 * 86400000)
end
local id = ARGV[2]
if id ~= '' and redis.call('HEXISTS', KEYS[1], id) == 0 then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
    if ARGV[6] == '' then return {'full'} end
    id = ''
  else
    redis.call('HSET', KEYS[1], id, ARGV[3])
  end
end
if id ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
local out, done = {'ok'}, {}
-- Adds `by` to bucket `k`; false (after undoing this call's other increments) on overflow.
local function add(k, expires)
  local v = redis.pcall('INCRBY', k, ARGV[4])
  if type(v) == 'table' and v.err then
    for _, d in ipairs(done) do redis.call('DECRBY', d, ARGV[4]) end
    return false
  end
  done[#done + 1] = k
  redis.call('PEXPIREAT', k, expires)
  return v
end
for i = 8, #ARGV, 3 do
  local tag, start, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if expires == '0' then
    out[#out + 1] = ''
  else
    local v = add(ARGV[1] .. ':' .. tag .. '::' .. start, expires)
    if v and id ~= '' then
      v = add(ARGV[1] .. ':' .. tag .. ':' .. id .. ':' .. start, expires)
    end
    if not v then return {'overflow'} end
    out[#out + 1] = v
  end
end
return out",
);

fn prefix(name: &str) -> String {
    format!("rk:{{ct:{name}}}")
}

/// Largest increment in absolute value: the largest integer every JSON client reads exactly.
pub const MAX_BY: i64 = (1 << 53) - 1;

/// A bucket would pass the 64-bit range.
fn overflow() -> Error {
    Error::invalid(
        "by",
        "the counter would pass the 64-bit range (±9223372036854775807); nothing was counted",
    )
}

/// Counters on Redis: a string per bucket (expiring with its retention), under one hash
/// tag per counter.
pub struct RedisCounters {
    core: Arc<RedisCore>,
}

impl RedisCounters {
    pub(crate) fn new(core: Arc<RedisCore>) -> Self {
        RedisCounters { core }
    }
}

/// When the bucket of `g` holding `at` stops being kept (0: already).
fn bucket(g: Granularity, at: u64, now: u64) -> (u64, u64) {
    let start = at - at % g.ms();
    let until = start + g.ms() + retention(g).as_millis() as u64;
    (start, if until <= now { 0 } else { until })
}

#[async_trait::async_trait]
impl CounterBackend for RedisCounters {
    async fn incr(
        &self,
        name: &str,
        labels: &str,
        by: i64,
        at: u64,
        replay: Option<u64>,
    ) -> Result<Option<[Option<i64>; 3]>> {
        let now = now_ms();
        let mut args = vec![
            prefix(name),
            label_id(labels),
            labels.to_string(),
            by.to_string(),
            MAX_LABEL_SETS.to_string(),
            replay.map(|u| u.to_string()).unwrap_or_default(),
            (retention(Granularity::Day).as_millis() as u64).to_string(),
        ];
        for g in Granularity::ALL {
            let (start, until) = bucket(g, at, now);
            args.extend([g.tag().to_string(), start.to_string(), until.to_string()]);
        }
        let (labels_key, replayed_key) = (format!("{}:labels", prefix(name)), format!("{}:applied", prefix(name)));
        let reply: Vec<redis::Value> = self.core.script(&INCR, &[&labels_key, &replayed_key], &[&args]).await?;
        let value = |v: &redis::Value| match v {
            redis::Value::Int(n) => Some(*n),
            _ => None,
        };
        match reply.first() {
            Some(redis::Value::BulkString(s)) if s == b"full" => Ok(None),
            Some(redis::Value::BulkString(s)) if s == b"dup" => Ok(Some([None; 3])),
            Some(redis::Value::BulkString(s)) if s == b"overflow" => Err(overflow()),
            _ if reply.len() == 4 => Ok(Some([value(&reply[1]), value(&reply[2]), value(&reply[3])])),
            _ => Err(Error::Codec(format!("unexpected reply from counter_incr: {reply:?}"))),
        }
    }

    async fn range(&self, name: &str, labels: &str, g: Granularity, starts: &[u64]) -> Result<Vec<i64>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let (p, id) = (prefix(name), label_id(labels));
        let mut cmd = redis::cmd("MGET");
        for s in starts {
            cmd.arg(format!("{p}:{}:{id}:{s}", g.tag()));
        }
        let values: Vec<Option<i64>> = self.core.query("counter_range", &cmd).await?;
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn label_sets(&self, name: &str) -> Result<Vec<String>> {
        let mut sets: Vec<String> = self
            .core
            .query(
                "counter_labels",
                redis::cmd("HVALS").arg(format!("{}:labels", prefix(name))),
            )
            .await?;
        sets.sort();
        Ok(sets)
    }
}

/// Counters in SQLite (in a deployment with Redis: the outage's copies, by generation).
pub struct EmbeddedCounters {
    store: Arc<EmbeddedStore>,
    generation: Arc<Generation>,
}

#[async_trait::async_trait]
impl CounterBackend for EmbeddedCounters {
    async fn incr(
        &self,
        name: &str,
        labels: &str,
        by: i64,
        at: u64,
        _replay: Option<u64>,
    ) -> Result<Option<[Option<i64>; 3]>> {
        let (name, labels, journal, generation) = (
            name.to_string(),
            labels.to_string(),
            pending(),
            self.generation.current() as i64,
        );
        self.store
            .sql("counter_incr", move |c| {
                let now = now_ms();
                let tx = c.transaction()?;
                if !labels.is_empty() {
                    let known: Option<i64> = tx
                        .prepare_cached("SELECT 1 FROM record_counter_labels WHERE name = ?1 AND labels = ?2")?
                        .query_row(params![name, labels], |r| r.get(0))
                        .optional()?;
                    if known.is_none() {
                        let n: i64 = tx
                            .prepare_cached("SELECT COUNT(*) FROM record_counter_labels WHERE name = ?1")?
                            .query_row([&name], |r| r.get(0))?;
                        if n as usize >= MAX_LABEL_SETS {
                            return Ok(None);
                        }
                        tx.prepare_cached("INSERT INTO record_counter_labels (name, labels, gen) VALUES (?1, ?2, ?3)")?
                            .execute(params![name, labels, generation])?;
                    }
                }
                let mut out = [None; 3];
                for (i, g) in Granularity::ALL.into_iter().enumerate() {
                    let (start, until) = bucket(g, at, now);
                    if until == 0 {
                        continue;
                    }
                    let oldest = now.saturating_sub(retention(g).as_millis() as u64 + g.ms()) as i64;
                    let series: &[&str] = if labels.is_empty() { &[""] } else { &["", &labels] };
                    for l in series {
                        let v: i64 = tx
                            .prepare_cached(
                                "INSERT INTO record_counters (name, labels, gran, start, value, gen) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                                 ON CONFLICT (name, labels, gran, start) DO UPDATE SET value = value + excluded.value
                                 RETURNING value",
                            )?
                            .query_row(params![name, l, g.tag(), start as i64, by, generation], |r| {
                                // SQLite turns an integer sum past 64 bits into a real: refused,
                                // and the transaction (every bucket of this call) rolls back.
                                Ok(match r.get::<_, rusqlite::types::Value>(0)? {
                                    rusqlite::types::Value::Integer(v) => Some(v),
                                    _ => None,
                                })
                            })?
                            .ok_or_else(overflow)?;
                        out[i] = Some(v);
                        tx.prepare_cached("DELETE FROM record_counters WHERE name = ?1 AND labels = ?2 AND gran = ?3 AND start < ?4")?
                            .execute(params![name, l, g.tag(), oldest])?;
                    }
                }
                if let Some(p) = journal {
                    p.record(&tx)?;
                }
                tx.commit()?;
                Ok(Some(out))
            })
            .await
    }

    async fn range(&self, name: &str, labels: &str, g: Granularity, starts: &[u64]) -> Result<Vec<i64>> {
        let (name, labels, starts) = (name.to_string(), labels.to_string(), starts.to_vec());
        self.store
            .sql("counter_range", move |c| {
                let (Some(first), Some(last)) = (starts.first(), starts.last()) else { return Ok(Vec::new()) };
                let found: BTreeMap<i64, i64> = c
                    .prepare_cached(
                        "SELECT start, value FROM record_counters WHERE name = ?1 AND labels = ?2 AND gran = ?3 AND start BETWEEN ?4 AND ?5",
                    )?
                    .query_map(params![name, labels, g.tag(), *first as i64, *last as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(starts.iter().map(|s| found.get(&(*s as i64)).copied().unwrap_or(0)).collect())
            })
            .await
    }

    async fn label_sets(&self, name: &str) -> Result<Vec<String>> {
        let name = name.to_string();
        self.store
            .sql("counter_labels", move |c| {
                Ok(
                    c.prepare_cached("SELECT labels FROM record_counter_labels WHERE name = ?1 ORDER BY labels")?
                        .query_map([&name], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()?,
                )
            })
            .await
    }
}

#[derive(Serialize, Deserialize)]
struct CounterOp {
    name: String,
    labels: String,
    by: i64,
    at: u64,
    /// Unique, so that an increment replayed twice is counted once.
    #[serde(default)]
    u: u64,
}

struct CounterRecovery {
    redis: Arc<RedisCounters>,
    store: Arc<EmbeddedStore>,
    generation: Arc<Generation>,
}

#[async_trait::async_trait]
impl Recovery for CounterRecovery {
    fn capability(&self) -> &'static str {
        "counter"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            let op: CounterOp = serde_json::from_slice(&e.op)?;
            self.redis.incr(&op.name, &op.labels, op.by, op.at, Some(op.u)).await?;
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
            .sql("counter_forget_outage", move |c| {
                let tx = c.transaction()?;
                tx.execute("DELETE FROM record_counters WHERE gen < ?1", [generation])?;
                tx.execute("DELETE FROM record_counter_labels WHERE gen < ?1", [generation])?;
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

/// Time-bucketed counters (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct Counters {
    routed: Arc<Routed<dyn CounterBackend>>,
}

fn canonical(labels: &Labels) -> Result<String> {
    if labels.is_empty() {
        return Ok(String::new());
    }
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid("labels", format!("at most {MAX_LABELS} labels")));
    }
    for (k, v) in labels {
        if k.is_empty()
            || k.len() > 64
            || v.is_empty()
            || v.len() > 64
            || k.chars().chain(v.chars()).any(char::is_control)
        {
            return Err(Error::invalid(
                "labels",
                format!("{k:?}: keys and values are 1 to 64 bytes without control characters"),
            ));
        }
    }
    Ok(serde_json::to_string(labels)?)
}

impl Counters {
    pub(crate) fn new(route: &Arc<Route>) -> Self {
        let generation = route.embedded().generation("counter");
        let embedded = Arc::new(EmbeddedCounters {
            store: route.embedded().clone(),
            generation: generation.clone(),
        });
        let redis = route.redis().map(|core| {
            let r = Arc::new(RedisCounters::new(core.clone()));
            route.register_recovery(Arc::new(CounterRecovery {
                redis: r.clone(),
                store: route.embedded().clone(),
                generation,
            }));
            r as Arc<dyn CounterBackend>
        });
        Counters {
            routed: Arc::new(route.routed(
                "counter",
                FallbackPolicy::Serve,
                redis,
                embedded as Arc<dyn CounterBackend>,
            )),
        }
    }

    /// Adds `by` to counter `name` at `at` (ms since the Unix epoch; `None`: now), for the
    /// total and for `labels` when given.
    pub async fn incr(&self, name: &str, by: i64, labels: &Labels, at: Option<u64>) -> Result<Counted> {
        check_name("name", name)?;
        if by.unsigned_abs() > MAX_BY as u64 {
            return Err(Error::invalid(
                "by",
                format!("at most {MAX_BY} (2^53 - 1) in absolute value, the largest integer JSON clients read exactly"),
            ));
        }
        let labels = canonical(labels)?;
        let now = now_ms();
        let at = at.unwrap_or(now);
        if at > now + 60_000 {
            return Err(Error::invalid("at_ms", "at most a minute ahead of now"));
        }
        if bucket(Granularity::Day, at, now).1 == 0 {
            return Err(Error::invalid("at_ms", "older than any bucket is kept"));
        }
        let op = || {
            serde_json::to_vec(&CounterOp {
                name: name.into(),
                labels: labels.clone(),
                by,
                at,
                u: rand::random(),
            })
            .expect("a counter operation is JSON")
        };
        match self.routed.write(op, |b| b.incr(name, &labels, by, at, None)).await? {
            Some([minute, hour, day]) => Ok(Counted { minute, hour, day }),
            None => Err(Error::invalid(
                "labels",
                format!("counter {name} has {MAX_LABEL_SETS} label sets already; no more may be added"),
            )),
        }
    }

    /// Every bucket of `g` from the one holding `from` to the one holding `to` (ms),
    /// oldest first, missing ones as zero; at most [`MAX_BUCKETS`].
    pub async fn range(&self, name: &str, labels: &Labels, g: Granularity, from: u64, to: u64) -> Result<Vec<Bucket>> {
        check_name("name", name)?;
        let labels = canonical(labels)?;
        if from > to {
            return Err(Error::invalid("from_ms", "must not be after to_ms"));
        }
        let first = from - from % g.ms();
        let count = (to - first) / g.ms() + 1;
        if count > MAX_BUCKETS {
            return Err(Error::invalid(
                "to_ms",
                format!("at most {MAX_BUCKETS} buckets per range ({count} asked)"),
            ));
        }
        let starts: Vec<u64> = (0..count).map(|i| first + i * g.ms()).collect();
        let values = self.routed.read(|b| b.range(name, &labels, g, &starts)).await?;
        Ok(starts
            .into_iter()
            .zip(values)
            .map(|(start_ms, value)| Bucket { start_ms, value })
            .collect())
    }

    /// The label sets counter `name` has seen.
    pub async fn label_sets(&self, name: &str) -> Result<Vec<Labels>> {
        check_name("name", name)?;
        self.routed
            .read(|b| b.label_sets(name))
            .await?
            .iter()
            .map(|s| Ok(serde_json::from_str(s)?))
            .collect()
    }
}
