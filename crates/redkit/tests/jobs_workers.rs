//! Workers, schedules and faults: handlers that fail, panic or hang; graceful shutdown; a
//! schedule on two instances; a worker process SIGKILLed mid-job; 10,000 jobs through a
//! Redis SIGKILL and restart; acks made during an outage; delayed jobs on two instances
//! through two outages in a row.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{config, eventually};
use redkit::jobs::{Backoff, EnqueueOptions, JobState, QueueOptions, Schedule, Settled, Worker};
use redkit::{Mode, Redkit};
use redkit_testkit::RedisServer;
use serde_json::json;

fn fast(lease_ms: u64) -> QueueOptions {
    QueueOptions {
        lease: Duration::from_millis(lease_ms),
        backoff: Backoff::Fixed { delay_ms: 10 },
        ..QueueOptions::default()
    }
}

type Runs = Arc<Mutex<HashMap<String, u32>>>;

async fn handlers_fail_panic_and_time_out(redkit: &Redkit) {
    let q = redkit.queue("handlers", fast(2_000)).unwrap();
    let runs: Runs = Arc::default();
    for i in 0..50 {
        q.enqueue(&json!({"kind": "ok"}), EnqueueOptions::new().id(format!("ok-{i}")))
            .await
            .unwrap();
    }
    q.enqueue(&json!({"kind": "flaky"}), EnqueueOptions::new().id("flaky"))
        .await
        .unwrap();
    q.enqueue(
        &json!({"kind": "panic"}),
        EnqueueOptions::new().id("panic").max_attempts(1),
    )
    .await
    .unwrap();
    q.enqueue(
        &json!({"kind": "hang"}),
        EnqueueOptions::new()
            .id("hang")
            .max_attempts(1)
            .timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let seen = runs.clone();
    let worker = Worker::new(q.clone(), move |job| {
        let seen = seen.clone();
        async move {
            let n = {
                let mut m = seen.lock().unwrap();
                let n = m.entry(job.id().to_string()).or_default();
                *n += 1;
                *n
            };
            match job.payload()["kind"].as_str() {
                Some("flaky") if n == 1 => Err("first attempt fails".into()),
                Some("panic") => panic!("handler bug"),
                Some("hang") => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(())
                }
                _ => {
                    job.progress(json!({"step": 1})).await?;
                    Ok(())
                }
            }
        }
    })
    .concurrency(8)
    .start();
    eventually(Duration::from_secs(10), "every job settled", async || {
        let s = q.stats().await.unwrap();
        s.completed_total == 51 && s.dead == 2
    })
    .await;
    assert_eq!(runs.lock().unwrap()["flaky"], 2);
    let panic = q.job("panic").await.unwrap().unwrap();
    assert!(panic.last_error.unwrap().contains("handler bug"));
    let hang = q.job("hang").await.unwrap().unwrap();
    assert!(hang.last_error.unwrap().contains("timed out after 200 ms"));
    assert_eq!(
        q.job("ok-3").await.unwrap().unwrap().progress.as_deref(),
        Some(r#"{"step":1}"#)
    );
    assert_eq!(worker.stats().completed.load(std::sync::atomic::Ordering::Relaxed), 51);
    worker.shutdown(Duration::from_secs(1)).await;
}

async fn shutdown_releases_unfinished(redkit: &Redkit) {
    let q = redkit.queue("shutdown", fast(2_000)).unwrap();
    q.enqueue(&json!("quick"), EnqueueOptions::new().id("quick"))
        .await
        .unwrap();
    q.enqueue(&json!("slow"), EnqueueOptions::new().id("slow"))
        .await
        .unwrap();
    let worker = Worker::new(q.clone(), |job| async move {
        if job.id() == "slow" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok(())
    })
    .concurrency(2)
    .start();
    eventually(Duration::from_secs(5), "both running or done", async || {
        q.job("slow").await.unwrap().unwrap().state == JobState::Active
            && q.job("quick").await.unwrap().unwrap().state == JobState::Completed
    })
    .await;
    let started = std::time::Instant::now();
    let released = worker.shutdown(Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(released, 1);
    let slow = q.job("slow").await.unwrap().unwrap();
    assert_eq!(
        (slow.state, slow.attempts),
        (JobState::Waiting, 0),
        "released, attempt not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_redis() {
    let h = common::on_redis().await;
    handlers_fail_panic_and_time_out(&h.redkit).await;
    shutdown_releases_unfinished(&h.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_embedded() {
    let h = common::on_embedded().await;
    handlers_fail_panic_and_time_out(&h.redkit).await;
    shutdown_releases_unfinished(&h.redkit).await;
}

/// Calls of `cmd` Redis has served since its statistics were reset.
fn calls(redis: &RedisServer, cmd: &str) -> u64 {
    let info = redis.command(&["INFO", "commandstats"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A busy worker leases each next job with the ack of the one before: one script call
/// per job at concurrency 1, where a fetch and an ack would be two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_acks_and_fetches_in_one_call_per_job() {
    let h = common::on_redis().await;
    let redis = h.redis.as_ref().unwrap();
    let q = h.redkit.queue("busy", QueueOptions::default()).unwrap();
    let jobs = 200u64;
    let batch: Vec<_> = (0..jobs).map(|i| (json!(i), EnqueueOptions::new())).collect();
    q.enqueue_batch(&batch).await.unwrap();
    redis.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let worker = Worker::new(q.clone(), |_job| async { Ok(()) }).start();
    eventually(Duration::from_secs(10), "every job completed", async || {
        q.stats().await.unwrap().completed_total == jobs
    })
    .await;
    let stats = worker.stats();
    assert_eq!(stats.completed.load(std::sync::atomic::Ordering::Relaxed), jobs);
    worker.shutdown(Duration::from_secs(1)).await;
    // The first fetch, an ack-and-fetch per job, a few idle fetches after the last, and
    // the stats polls above (pipelines, not scripts).
    let scripts = calls(redis, "evalsha") + calls(redis, "eval");
    assert!(
        (jobs..jobs + 10).contains(&scripts),
        "{scripts} script calls for {jobs} jobs"
    );
}

/// A worker that never goes idle still returns other workers' expired leases to the
/// queue: its ack-and-fetch looks for them every 250 ms at most, not once per job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_recovers_an_expired_lease_without_looking_once_per_job() {
    let h = common::on_redis().await;
    let redis = h.redis.as_ref().unwrap();
    let q = h.redkit.queue("reap", fast(300)).unwrap();
    q.enqueue(&json!("orphan"), EnqueueOptions::new().id("orphan"))
        .await
        .unwrap();
    let orphaned = q.fetch("a worker that died", 1).await.unwrap();
    assert_eq!(orphaned.len(), 1);
    let jobs = 1000u64;
    let batch: Vec<_> = (0..jobs).map(|i| (json!(i), EnqueueOptions::new())).collect();
    q.enqueue_batch(&batch).await.unwrap();
    redis.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let order: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let seen = order.clone();
    let worker = Worker::new(q.clone(), move |job| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push((job.id().to_string(), job.attempt().0));
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(())
        }
    })
    .start();
    eventually(Duration::from_secs(60), "every job completed", async || {
        q.stats().await.unwrap().completed_total == jobs + 1
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let order = order.lock().unwrap();
    let at = order.iter().position(|(id, _)| id == "orphan").expect("the orphan ran");
    assert_eq!(order[at].1, 2, "its second attempt");
    assert!(
        at + 100 < order.len(),
        "recovered while the worker was busy, not after: run {at} of {}",
        order.len()
    );
    // Each lease looks for due delayed jobs (one ZRANGEBYSCORE); expired leases were
    // looked for a few times a second, where they used to be once per job too.
    let scans = calls(redis, "zrangebyscore");
    assert!(scans < jobs + jobs / 4, "{scans} ZRANGEBYSCORE for {jobs} jobs");
}

/// Completed jobs are not kept, so only the tick guard (not id dedupe) can stop a second
/// instance from enqueueing the same tick again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_on_two_instances_fires_once_per_tick() {
    let redis = RedisServer::start();
    let (a, b) = common::two_instances(&redis).await;
    let opts = QueueOptions {
        keep_completed: 0,
        ..fast(5_000)
    };
    let qa = a.redkit.queue("cron", opts.clone()).unwrap();
    let qb = b.redkit.queue("cron", opts).unwrap();
    let runs: Runs = Arc::default();
    let mut workers = Vec::new();
    for q in [&qa, &qb] {
        let runs = runs.clone();
        workers.push(
            Worker::new(q.clone(), move |job| {
                let runs = runs.clone();
                async move {
                    *runs.lock().unwrap().entry(job.id().to_string()).or_default() += 1;
                    Ok(())
                }
            })
            .concurrency(4)
            .start(),
        );
    }
    let every = Schedule::every(Duration::from_secs(1)).unwrap();
    let cron = Schedule::cron("* * * * * *").unwrap(); // every second, six fields
    let _s1 = qa
        .schedule("tick", every.clone(), json!("t"), EnqueueOptions::new())
        .unwrap();
    let _s2 = qb.schedule("tick", every, json!("t"), EnqueueOptions::new()).unwrap();
    let _s3 = qa
        .schedule("cron", cron.clone(), json!("c"), EnqueueOptions::new())
        .unwrap();
    let _s4 = qb.schedule("cron", cron, json!("c"), EnqueueOptions::new()).unwrap();
    let started = std::time::Instant::now();
    let fired = |name: &str| {
        let runs = runs.lock().unwrap();
        runs.iter()
            .filter(|(id, _)| id.starts_with(&format!("{name}@")))
            .count()
    };
    eventually(
        Duration::from_secs(20),
        "three ticks of each schedule ran",
        async || fired("tick") >= 3 && fired("cron") >= 3,
    )
    .await;
    // Stopped before counting, so no tick is run but not yet acknowledged when counted.
    drop((_s1, _s2, _s3, _s4));
    for w in workers {
        w.shutdown(Duration::from_secs(1)).await;
    }
    let ticks = started.elapsed().as_secs() + 2;
    let runs = runs.lock().unwrap().clone();
    for name in ["tick", "cron"] {
        let fired: Vec<_> = runs
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{name}@")))
            .collect();
        assert!(fired.len() as u64 <= ticks, "{name}: more than one a second: {fired:?}");
        assert!(
            fired.iter().all(|(_, n)| **n == 1),
            "{name} ran twice for a tick: {fired:?}"
        );
    }
    assert_eq!(qa.stats().await.unwrap().completed_total, runs.len() as u64);
}

/// Jobs leased from Redis and acked while Redis is down are completed on recovery, not
/// run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_during_an_outage_are_applied_on_recovery() {
    let mut redis = RedisServer::options().durable().start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let q = redkit.queue("outage-acks", fast(60_000)).unwrap();
    for i in 0..3 {
        q.enqueue(&json!(i), EnqueueOptions::new().id(format!("j{i}")))
            .await
            .unwrap();
    }
    let leased = q.fetch("w", 3).await.unwrap();
    redis.kill();
    // The first calls fail until the breaker opens; a worker retries its settle.
    let mut settled = Vec::new();
    for j in &leased[..2] {
        let mut answer = None;
        for _ in 0..20 {
            match q.ack(&j.id, &j.token).await {
                Ok(s) => {
                    answer = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        settled.push(answer.expect("acked during the outage"));
    }
    assert_eq!(settled, [Settled::Deferred, Settled::Deferred]);
    let beat = q
        .heartbeat(&leased[2].id, &leased[2].token, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(
        beat.kind(),
        redkit::ErrorKind::Unavailable,
        "a Redis lease cannot be renewed in an outage: {beat}"
    );
    assert!(q.fail(&leased[2].id, &leased[2].token, "no").await.unwrap() == Settled::Deferred);
    assert_eq!(redkit.mode(), Mode::Fallback);
    redis.restart();
    eventually(Duration::from_secs(10), "recovered", async || {
        redkit.mode() == Mode::Redis
    })
    .await;
    assert_eq!(q.job("j0").await.unwrap().unwrap().state, JobState::Completed);
    assert_eq!(q.job("j1").await.unwrap().unwrap().state, JobState::Completed);
    let j2 = q.job("j2").await.unwrap().unwrap();
    assert_eq!(j2.last_error.as_deref(), Some("no"));
    assert_ne!(j2.state, JobState::Active);
}

/// 10,000 jobs enqueued one by one while Redis is SIGKILLed (at 3,000) and restarted (at
/// 6,000), with a worker running throughout: every acknowledged job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_through_a_redis_kill_and_restart() {
    const JOBS: usize = 10_000;
    let mut redis = RedisServer::options().durable().start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let q = redkit
        .queue(
            "bulk",
            QueueOptions {
                keep_completed: 0,
                ..fast(5_000)
            },
        )
        .unwrap();
    let runs: Runs = Arc::default();
    let seen = runs.clone();
    let worker = Worker::new(q.clone(), move |job| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap().entry(job.id().to_string()).or_default() += 1;
            Ok(())
        }
    })
    .concurrency(16)
    .start();
    let mut refused = 0u32;
    for i in 0..JOBS {
        if i == 3_000 {
            redis.kill();
        }
        if i == 6_000 {
            assert_eq!(redkit.mode(), Mode::Fallback);
            eventually(Duration::from_secs(30), "local workers process the spool", async || {
                runs.lock().unwrap().contains_key("bulk-5999")
            })
            .await;
            redis.restart();
        }
        // Not acknowledged until Ok: an error (before the breaker opens) is retried with
        // the same id, which cannot add the job twice.
        while q
            .enqueue(&json!(i), EnqueueOptions::new().id(format!("bulk-{i}")))
            .await
            .is_err()
        {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eventually(Duration::from_secs(120), "all 10,000 jobs ran", async || {
        runs.lock().unwrap().len() == JOBS
    })
    .await;
    eventually(Duration::from_secs(10), "back on redis", async || {
        redkit.mode() == Mode::Redis
    })
    .await;
    let runs = runs.lock().unwrap().clone();
    let duplicates: u32 = runs.values().map(|n| n - 1).sum();
    eprintln!(
        "10,000 jobs through a Redis kill and restart: {duplicates} ran twice; {refused} enqueue calls refused before the breaker opened"
    );
    assert!((0..JOBS).all(|i| runs.contains_key(&format!("bulk-{i}"))));
    let s = q.stats().await.unwrap();
    assert_eq!((s.waiting, s.delayed, s.active), (0, 0, 0), "{s:?}");
    worker.shutdown(Duration::from_secs(2)).await;
}

/// A job's run: its id, when, and on which instance.
type Run = (String, SystemTime, &'static str);

/// Delayed jobs on two instances through two Redis SIGKILLs in a row: some enqueued to
/// Redis before the first, some spooled by each instance in the first (drained into
/// Redis on recovery, due after it), one spooled in the second. Every one runs, none
/// before its run-at, and none Redis holds runs while Redis is away (the spool's workers
/// see only the spool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_on_two_instances_run_on_time_through_two_outages() {
    let mut redis = RedisServer::options().durable().start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Redkit::open(config(Some(redis.url()), dir_a.path())).await.unwrap();
    let b = Redkit::open(config(Some(redis.url()), dir_b.path())).await.unwrap();
    let qa = a.queue("delayed-outages", fast(5_000)).unwrap();
    let qb = b.queue("delayed-outages", fast(5_000)).unwrap();
    // Job id -> when it may run at the earliest; and each run: (id, when, instance).
    let due: Arc<Mutex<HashMap<String, SystemTime>>> = Arc::default();
    let runs: Arc<Mutex<Vec<Run>>> = Arc::default();
    let worker = |q: &redkit::jobs::Queue, name: &'static str| {
        let runs = runs.clone();
        Worker::new(q.clone(), move |job| {
            let runs = runs.clone();
            async move {
                runs.lock()
                    .unwrap()
                    .push((job.id().to_string(), SystemTime::now(), name));
                Ok(())
            }
        })
        .concurrency(2)
        .start()
    };
    let (worker_a, worker_b) = (worker(&qa, "a"), worker(&qb, "b"));
    // Retried until acknowledged (a call can fail before the breaker opens); a retry
    // carries the same id, so it cannot add the job twice.
    let enqueue = async |q: &redkit::jobs::Queue, id: &str, delay_ms: u64| {
        let not_before = SystemTime::now() + Duration::from_millis(delay_ms);
        let opts = EnqueueOptions::new().id(id).delay(Duration::from_millis(delay_ms));
        while q.enqueue(&json!(id), opts.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        due.lock().unwrap().insert(id.to_string(), not_before);
    };
    let ran = |id: &str| runs.lock().unwrap().iter().any(|(r, _, _)| r == id);
    let mode_is = async |mode: Mode| {
        eventually(
            Duration::from_secs(15),
            &format!("both instances in {mode:?}"),
            async || a.mode() == mode && b.mode() == mode,
        )
        .await
    };

    // Due in the first outage, with room for the kill to come first on a slow host.
    enqueue(&qa, "before-a", 2_500).await;
    enqueue(&qb, "before-b", 14_000).await;
    redis.kill();
    enqueue(&qa, "first-outage-a", 300).await;
    // Due well after the second kill even on a slow host (CI once reached that kill
    // 5 s in, and a 5 s delay let this job run on Redis just before it).
    enqueue(&qb, "first-outage-b", 12_000).await;
    mode_is(Mode::Fallback).await;
    eventually(
        Duration::from_secs(10),
        "a's spooled job ran in the outage",
        async || ran("first-outage-a"),
    )
    .await;
    let before_a_due = due.lock().unwrap()["before-a"];
    let wait = before_a_due.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(300)).await;
    assert!(!ran("before-a"), "a job Redis holds ran while Redis was away");
    redis.restart();
    mode_is(Mode::Redis).await;
    eventually(
        Duration::from_secs(10),
        "the job due in the outage ran after it",
        async || ran("before-a"),
    )
    .await;
    let drained_due = due.lock().unwrap()["first-outage-b"];
    let margin = drained_due.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        margin > Duration::from_secs(1),
        "this host reached the second outage {margin:?} before the drained job's run-at: \
         too late for the outage to span it"
    );
    assert!(!ran("first-outage-b") && !ran("before-b"), "not due yet");
    let drained = qa.job("first-outage-b").await.unwrap().map(|j| j.state);
    assert_eq!(
        drained,
        Some(JobState::Delayed),
        "b's spool drained into Redis, still delayed"
    );

    // The second outage spans the drained job's run-at: it waits for Redis.
    redis.kill();
    enqueue(&qa, "second-outage-a", 200).await;
    mode_is(Mode::Fallback).await;
    let wait = drained_due.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(300)).await;
    assert!(!ran("first-outage-b"), "a job Redis holds ran in the second outage");
    redis.restart();
    mode_is(Mode::Redis).await;
    eventually(Duration::from_secs(20), "every delayed job ran", async || {
        due.lock().unwrap().keys().all(|id| ran(id))
    })
    .await;

    let runs = runs.lock().unwrap().clone();
    let due = due.lock().unwrap().clone();
    for (id, at, instance) in &runs {
        let late = at.duration_since(due[id]).unwrap_or_default();
        eprintln!("{id}: ran on {instance}, {} ms after its run-at", late.as_millis());
    }
    for (id, at, instance) in &runs {
        // Redis's clock and this process's are the same host's; a run-at is kept to the ms.
        let early = due[id].duration_since(*at).unwrap_or_default();
        assert!(
            early <= Duration::from_millis(5),
            "{id} ran on {instance} {early:?} before its run-at"
        );
    }
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for (id, _, _) in &runs {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), due.len(), "every job ran: {runs:?}");
    assert!(counts.values().all(|&n| n == 1), "a job ran twice: {runs:?}");
    let s = qa.stats().await.unwrap();
    assert_eq!((s.waiting, s.delayed, s.active), (0, 0, 0), "{s:?}");
    worker_a.shutdown(Duration::from_secs(1)).await;
    worker_b.shutdown(Duration::from_secs(1)).await;
}

const CHILD_REDIS: &str = "REDKIT_TEST_CHILD_REDIS";
const CHILD_LOG: &str = "REDKIT_TEST_CHILD_LOG";

/// The worker process of `a_worker_process_killed_mid_job_loses_nothing`: this test
/// binary started again with that test selected and the child variables set.
async fn run_as_child_worker(url: String, log: String) {
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(url), dir.path())).await.unwrap();
    let q = redkit.queue("crash", fast(1_000)).unwrap();
    let _worker = Worker::new(q, move |job| {
        let log = log.clone();
        async move {
            append_line(&log, job.id());
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
    })
    .concurrency(8)
    .start();
    // Killed by the parent long before this; the bound keeps an orphan from living on.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

fn append_line(path: &str, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_mid_job_loses_nothing() {
    if let (Ok(url), Ok(log)) = (std::env::var(CHILD_REDIS), std::env::var(CHILD_LOG)) {
        return run_as_child_worker(url, log).await;
    }
    // Enough that the child (8 at a time, 100 ms each) is still busy for seconds after
    // its 30th start, however slowly the parent notices it.
    const JOBS: usize = 400;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log").to_string_lossy().into_owned();
    let redkit = Redkit::open(config(Some(redis.url()), &dir.path().join("parent")))
        .await
        .unwrap();
    let q = redkit.queue("crash", fast(1_000)).unwrap();
    for i in 0..JOBS {
        q.enqueue(&json!(i), EnqueueOptions::new().id(format!("c-{i}")))
            .await
            .unwrap();
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_worker_process_killed_mid_job_loses_nothing",
            "--nocapture",
        ])
        .env(CHILD_REDIS, redis.url())
        .env(CHILD_LOG, &log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = |log: &str| std::fs::read_to_string(log).map(|s| s.lines().count()).unwrap_or(0);
    eventually(Duration::from_secs(30), "the child ran some jobs", async || {
        started(&log) >= 30
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let in_flight = q.stats().await.unwrap().active;
    assert!(in_flight >= 1, "the child was killed with jobs in flight");

    let log2 = log.clone();
    let worker = Worker::new(q.clone(), move |job| {
        let log = log2.clone();
        async move {
            append_line(&log, job.id());
            Ok(())
        }
    })
    .concurrency(8)
    .start();
    eventually(Duration::from_secs(30), "every job completed", async || {
        q.stats().await.unwrap().completed_total == JOBS as u64
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for line in text.lines() {
        *counts.entry(line).or_default() += 1;
    }
    assert_eq!(counts.len(), JOBS, "every job ran");
    let duplicates: u32 = counts.values().map(|n| n - 1).sum();
    eprintln!("worker SIGKILLed with {in_flight} jobs in flight: {duplicates} ran twice");
    assert!(
        duplicates as u64 <= in_flight,
        "{duplicates} duplicates > {in_flight} in flight"
    );
    assert_eq!(q.stats().await.unwrap().lease_expired_total, in_flight);
    worker.shutdown(Duration::from_secs(1)).await;
}
