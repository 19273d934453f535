//! Job queues on Redis. Each queue lives under one hash tag, `rk:{q:NAME}:`, so every
//! script touches one Cluster slot: sorted sets for waiting (priority band + sequence),
//! delayed (run-at), active (lease end), completed and dead (finish time), a hash per job
//! (`…:j:ID`), a unique-key hash, a meta hash (paused flag, sequence, counters, schedule
//! ticks) and a signal list that idle workers block on. See `prelude.lua` for the layout.

use std::sync::Arc;

use redis::Value;

use super::backend::{
    Enqueued, FetchCall, Fetched, JobBackend, JobInfo, JobState, LeasedJob, NewJob, Outcome, QueueCounts, Retention,
    SettleCall, Settled,
};
use crate::core::random::token;
use crate::core::redis::{LuaScript, RedisCore, ToRedisArgsDyn};
use crate::error::{Error, Result};

macro_rules! job_script {
    ($name:literal, $($file:literal),+) => {
        LuaScript::new($name, concat!(include_str!("prelude.lua"), $(include_str!($file)),+))
    };
}

static ENQUEUE: LuaScript = job_script!("job_enqueue", "enqueue.lua");
static FETCH: LuaScript = job_script!("job_fetch", "lease.lua", "fetch.lua");
static SETTLE: LuaScript = job_script!("job_settle", "settle_job.lua", "settle.lua");
static SETTLE_FETCH: LuaScript = job_script!("job_settle_fetch", "settle_job.lua", "lease.lua", "settle_fetch.lua");
static HEARTBEAT: LuaScript = job_script!("job_heartbeat", "heartbeat.lua");
static DEAD: LuaScript = job_script!("job_dead", "dead.lua");

/// The set of queue names known to Redis (for listings).
pub(crate) const QUEUES_KEY: &str = "rk:queues";

/// Job queues on Redis.
pub struct RedisJobs {
    core: Arc<RedisCore>,
    /// Tags this instance's event announcements.
    instance: String,
}

/// The keys of one queue, in the order the scripts expect them.
struct Keys {
    all: [String; 8],
    prefix: String,
    events: String,
}

impl Keys {
    fn of(queue: &str) -> Self {
        // Built on every call, two per job: concatenated, not through `format!`.
        let base = ["rk:{q:", queue, "}:"].concat();
        let key = |suffix: &str| [base.as_str(), suffix].concat();
        Keys {
            all: ["w", "d", "a", "c", "x", "u", "m", "s"].map(key),
            prefix: key("j:"),
            events: key("events"),
        }
    }

    fn refs(&self) -> Vec<&dyn ToRedisArgsDyn> {
        self.all.iter().map(|k| k as &dyn ToRedisArgsDyn).collect()
    }
}

/// The pub/sub channel on which a queue's scripts announce completed, failed and dead jobs.
pub(crate) fn events_channel(queue: &str) -> String {
    Keys::of(queue).events
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        _ => String::new(),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => text(other).parse().unwrap_or(0),
    }
}

fn unexpected(op: &str) -> Error {
    Error::Codec(format!("unexpected redis reply to {op}"))
}

fn info_from(id: &str, fields: &std::collections::HashMap<String, String>) -> Option<JobInfo> {
    let state = JobState::parse(fields.get("s")?)?;
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
    let opt = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
    Some(JobInfo {
        id: id.to_string(),
        state,
        payload: fields.get("p").cloned().unwrap_or_default(),
        priority: fields.get("pr").and_then(|v| v.parse().ok()).unwrap_or(0),
        attempts: num("a").unwrap_or(0) as u32,
        max_attempts: num("ma").unwrap_or(1) as u32,
        last_error: opt("e"),
        progress: opt("pg"),
        created_ms: num("c").unwrap_or(0),
        run_at_ms: num("r").unwrap_or(0),
        finished_ms: num("f"),
        worker: opt("w"),
        lease_until_ms: if state == JobState::Active { num("l") } else { None },
        unique_key: opt("u"),
    })
}

/// A lease script's reply (`lease_jobs` in lease.lua).
fn fetched(reply: &[Value]) -> Result<Fetched> {
    let [status, next_due, rest @ ..] = reply else {
        return Err(unexpected("fetch"));
    };
    let next_due = Some(int(next_due)).filter(|&d| d >= 0).map(|d| d as u64);
    if int(status) < 0 {
        return Ok(Fetched {
            paused: true,
            next_due_ms: next_due,
            jobs: Vec::new(),
        });
    }
    let jobs = rest
        .chunks_exact(9)
        .map(|f| LeasedJob {
            id: text(&f[0]),
            token: text(&f[1]),
            payload: text(&f[2]),
            attempt: int(&f[3]) as u32,
            max_attempts: int(&f[4]) as u32,
            priority: int(&f[5]) as i32,
            timeout_ms: int(&f[6]) as u64,
            created_ms: int(&f[7]) as u64,
            progress: Some(text(&f[8])).filter(|p| !p.is_empty()),
        })
        .collect();
    Ok(Fetched {
        jobs,
        paused: false,
        next_due_ms: next_due,
    })
}

fn settle_args(outcome: &Outcome, forced_ack: bool) -> (&'static str, &str) {
    match outcome {
        Outcome::Ack if forced_ack => ("ack!", ""),
        Outcome::Ack => ("ack", ""),
        Outcome::Fail(e) => ("fail", e.as_str()),
        Outcome::Release => ("release", ""),
    }
}

impl RedisJobs {
    pub(crate) fn new(core: Arc<RedisCore>, instance: String) -> Self {
        RedisJobs { core, instance }
    }

    pub(crate) fn core(&self) -> &Arc<RedisCore> {
        &self.core
    }

    /// Records the queue name in the listing set.
    pub(crate) async fn register(&self, queue: &str) -> Result<()> {
        self.core
            .query("job_register", redis::cmd("SADD").arg(QUEUES_KEY).arg(queue))
            .await
    }

    /// Every queue name registered in Redis.
    pub(crate) async fn queue_names(&self) -> Result<Vec<String>> {
        self.core
            .query("job_queues", redis::cmd("SMEMBERS").arg(QUEUES_KEY))
            .await
    }

    async fn infos(&self, queue: &str, ids: Vec<String>) -> Result<Vec<JobInfo>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::of(queue);
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(format!("{}{id}", keys.prefix));
        }
        let all: Vec<std::collections::HashMap<String, String>> = self.core.pipeline("job_list", &pipe).await?;
        Ok(ids
            .iter()
            .zip(all.iter())
            .filter_map(|(id, f)| info_from(id, f))
            .collect())
    }

    /// [`JobBackend::settle`], and (with `forced_ack`) the replay of an ack journaled
    /// while Redis was away, which completes the job whatever its lease.
    pub(crate) async fn settle_inner(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        outcome: &Outcome,
        keep: Retention,
        forced_ack: bool,
    ) -> Result<Settled> {
        let keys = Keys::of(queue);
        let argv = self.settle_argv(&keys, id, token, outcome, keep, forced_ack);
        let reply: String = self.core.script(&SETTLE, &keys.refs(), &argv.refs()).await?;
        Ok(settled(&reply))
    }

    /// ARGV of `settle_job` (settle_job.lua), as settle.lua and settle_fetch.lua take it.
    fn settle_argv<'a>(
        &'a self,
        keys: &'a Keys,
        id: &'a str,
        token: &'a str,
        outcome: &'a Outcome,
        keep: Retention,
        forced_ack: bool,
    ) -> SettleArgv<'a> {
        let (verb, error) = settle_args(outcome, forced_ack);
        SettleArgv {
            keys,
            id,
            token,
            verb,
            error,
            jitter: rand::random(),
            keep,
            instance: &self.instance,
        }
    }
}

/// The arguments of `settle_job`, numbers kept as numbers (written into the command as
/// they are sent, not formatted into strings first).
struct SettleArgv<'a> {
    keys: &'a Keys,
    id: &'a str,
    token: &'a str,
    verb: &'static str,
    error: &'a str,
    jitter: f64,
    keep: Retention,
    instance: &'a str,
}

impl SettleArgv<'_> {
    fn refs(&self) -> [&dyn ToRedisArgsDyn; 12] {
        [
            &self.keys.prefix,
            &self.id,
            &self.token,
            &self.verb,
            &self.error,
            &self.jitter,
            &self.keep.completed_count,
            &self.keep.completed_age_ms,
            &self.keep.dead_count,
            &self.keep.dead_age_ms,
            &self.keys.events,
            &self.instance,
        ]
    }
}

/// A settle script's outcome (`settle_job` in settle_job.lua).
fn settled(reply: &str) -> Settled {
    match reply {
        "completed" => Settled::Completed,
        "retrying" => Settled::Retrying,
        "dead" => Settled::Dead,
        "released" => Settled::Released,
        _ => Settled::LeaseLost,
    }
}

#[async_trait::async_trait]
impl JobBackend for RedisJobs {
    async fn enqueue(&self, queue: &str, jobs: &[NewJob], tick: Option<(&str, u64)>) -> Result<Vec<Enqueued>> {
        let keys = Keys::of(queue);
        let (name, at) = tick.unwrap_or(("", 0));
        // Numbers go into the command as numbers: formatting each into a String first
        // cost an allocation apiece.
        let encoded: Vec<(u64, u64, u64, &str)> = jobs
            .iter()
            .map(|j| {
                let (kind, base, max) = j.backoff.encode();
                (u64::from(kind), base, max, j.unique_key.as_deref().unwrap_or(""))
            })
            .collect();
        let mut argv: Vec<&dyn ToRedisArgsDyn> = Vec::with_capacity(3 + jobs.len() * 13);
        argv.extend([&keys.prefix as &dyn ToRedisArgsDyn, &name, &at]);
        for (j, (kind, base, max, unique)) in jobs.iter().zip(&encoded) {
            argv.extend([
                &j.id as &dyn ToRedisArgsDyn,
                &j.payload,
                &j.priority,
                &j.max_attempts,
                kind,
                base,
                max,
                &j.timeout_ms,
                unique,
                &j.delay_ms,
                &j.run_at_ms,
                &j.attempts,
                &j.created_ms,
            ]);
        }
        let reply: Vec<Value> = self.core.script(&ENQUEUE, &keys.refs(), &argv).await?;
        Ok(reply
            .chunks(2)
            .map(|c| Enqueued {
                id: text(&c[0]),
                created: c.get(1).map(int) == Some(1),
            })
            .collect())
    }

    async fn fetch(&self, queue: &str, worker: &str, lease_ms: u64, max: usize, keep: Retention) -> Result<Fetched> {
        let keys = Keys::of(queue);
        let token_prefix = format!("r-{}.", token());
        let reply: Vec<Value> = self
            .core
            .script(
                &FETCH,
                &keys.refs(),
                &[
                    &keys.prefix,
                    &worker,
                    &lease_ms,
                    &max,
                    &token_prefix,
                    &keep.dead_count,
                    &keep.dead_age_ms,
                ],
            )
            .await?;
        fetched(&reply)
    }

    async fn settle(&self, queue: &str, id: &str, token: &str, outcome: &Outcome, keep: Retention) -> Result<Settled> {
        self.settle_inner(queue, id, token, outcome, keep, false).await
    }

    async fn settle_and_fetch(&self, settle: SettleCall<'_>, next: FetchCall<'_>) -> Result<(Settled, Fetched)> {
        let keys = Keys::of(settle.queue);
        let settling = self.settle_argv(&keys, settle.id, settle.token, settle.outcome, settle.keep, false);
        let token_prefix = format!("r-{}.", token());
        let mut argv: Vec<&dyn ToRedisArgsDyn> = Vec::with_capacity(16);
        argv.extend(settling.refs());
        argv.extend([
            &next.worker as &dyn ToRedisArgsDyn,
            &next.lease_ms,
            &next.max,
            &token_prefix,
        ]);
        let reply: Vec<Value> = self.core.script(&SETTLE_FETCH, &keys.refs(), &argv).await?;
        let [outcome, lease @ ..] = reply.as_slice() else {
            return Err(unexpected("settle_and_fetch"));
        };
        Ok((settled(&text(outcome)), fetched(lease)?))
    }

    async fn heartbeat(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        lease_ms: u64,
        progress: Option<&str>,
    ) -> Result<bool> {
        let keys = Keys::of(queue);
        let has = if progress.is_some() { "1" } else { "0" };
        let progress = progress.unwrap_or("");
        let n: i64 = self
            .core
            .script(
                &HEARTBEAT,
                &keys.refs(),
                &[&keys.prefix, &id, &token, &lease_ms, &has, &progress],
            )
            .await?;
        Ok(n == 1)
    }

    async fn job(&self, queue: &str, id: &str) -> Result<Option<JobInfo>> {
        Ok(self.infos(queue, vec![id.to_string()]).await?.pop())
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        let k = Keys::of(queue);
        let mut pipe = redis::pipe();
        for key in &k.all[..5] {
            pipe.cmd("ZCARD").arg(key);
        }
        pipe.cmd("HMGET")
            .arg(&k.all[6])
            .arg(&["failed", "done", "expired", "paused"]);
        let (w, d, a, c, x, meta): (u64, u64, u64, u64, u64, Vec<Option<u64>>) =
            self.core.pipeline("job_counts", &pipe).await?;
        let m = |i: usize| meta.get(i).copied().flatten().unwrap_or(0);
        Ok(QueueCounts {
            waiting: w,
            delayed: d,
            active: a,
            completed: c,
            dead: x,
            failed_total: m(0),
            completed_total: m(1),
            lease_expired_total: m(2),
            paused: m(3) == 1,
        })
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        let k = Keys::of(queue);
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&k.all[6]).arg("paused").arg(u8::from(paused));
        let _: i64 = self.core.query("job_pause", &cmd).await?;
        if !paused {
            let _: i64 = self
                .core
                .query("job_pause", redis::cmd("LPUSH").arg(&k.all[7]).arg(1))
                .await?;
        }
        Ok(())
    }

    async fn list(&self, queue: &str, state: JobState, offset: u64, limit: u64) -> Result<Vec<JobInfo>> {
        let k = Keys::of(queue);
        let (key, newest_first) = match state {
            JobState::Waiting => (&k.all[0], false),
            JobState::Delayed => (&k.all[1], false),
            JobState::Active => (&k.all[2], false),
            JobState::Completed => (&k.all[3], true),
            JobState::Dead => (&k.all[4], true),
        };
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(key).arg(offset).arg(offset + limit.max(1) - 1);
        if newest_first {
            cmd.arg("REV");
        }
        let ids: Vec<String> = self.core.query("job_list", &cmd).await?;
        self.infos(queue, ids).await
    }

    async fn retry_dead(&self, queue: &str, id: Option<&str>) -> Result<u64> {
        let k = Keys::of(queue);
        let id = id.unwrap_or("");
        self.core.script(&DEAD, &k.refs(), &[&k.prefix, &"retry", &id]).await
    }

    async fn purge_dead(&self, queue: &str, id: Option<&str>) -> Result<u64> {
        let k = Keys::of(queue);
        let id = id.unwrap_or("");
        self.core.script(&DEAD, &k.refs(), &[&k.prefix, &"purge", &id]).await
    }

    async fn wait_for_work(&self, queue: &str, max_ms: u64) -> Result<()> {
        let signal = Keys::of(queue).all[7].clone();
        let block = std::time::Duration::from_millis(max_ms.max(10));
        let secs = block.as_secs_f64();
        let _: Option<(String, String)> = self
            .core
            .blocking("job_wait", block, |mut c| async move {
                redis::cmd("BLPOP").arg(&signal).arg(secs).query_async(&mut c).await
            })
            .await?;
        Ok(())
    }
}
