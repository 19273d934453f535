//! Faults, injected into real redis-server processes in the middle of work, and what the
//! design promises about each: the breaker opens, calls are served by the embedded store
//! without paying a timeout, nothing acknowledged is lost, and redkit returns to Redis.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Kv, PATIENT, config, eventually, patient_config, redis_calls};
use redkit::core::breaker::BreakerState;
use redkit::health::Status;
use redkit::{ErrorKind, FallbackPolicy, Mode, Redkit};
use redkit_testkit::RedisServer;

const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

async fn open(redis: &RedisServer, dir: &tempfile::TempDir) -> Redkit {
    Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap()
}

async fn open_patient(redis: &RedisServer, dir: &tempfile::TempDir) -> Redkit {
    Redkit::open(patient_config(redis.url(), dir.path())).await.unwrap()
}

/// Calls of the test capability that reached Redis.
fn redis_kv_calls(redkit: &Redkit) -> u64 {
    redis_calls(redkit, &["test_get", "test_set", "test_del", "test_incr"])
}

async fn wait_mode(redkit: &Redkit, kv: &Kv, mode: Mode) {
    eventually(RECOVERY_LIMIT, &format!("mode {mode:?}"), async || {
        // Traffic is what notices a failure; recovery needs none.
        let _ = kv.get("poke").await;
        redkit.mode() == mode
    })
    .await;
}

struct Call {
    writer: usize,
    started: Instant,
    took: Duration,
    ok: bool,
}

/// Writers that record every call and every acknowledged write.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(kv: &Kv, writers: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = (0..writers)
            .map(|w| {
                let (kv, stop, calls, acked) = (kv.clone(), stop.clone(), calls.clone(), acked.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (key, value) = (format!("w{w}:{}", n % 50), format!("{n}"));
                        let started = Instant::now();
                        let r = kv.set(&key, &value).await;
                        calls.lock().unwrap().push(Call {
                            writer: w,
                            started,
                            took: started.elapsed(),
                            ok: r.is_ok(),
                        });
                        if r.is_ok() {
                            acked.lock().unwrap().insert(key.clone(), value);
                        }
                        let started = Instant::now();
                        let r = kv.get(&key).await;
                        calls.lock().unwrap().push(Call {
                            writer: w,
                            started,
                            took: started.elapsed(),
                            ok: r.is_ok(),
                        });
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            calls,
            acked,
            tasks,
        }
    }

    /// Waits until every writer has finished a call it began after `since`; each makes one call at
    /// a time, so none has a call in flight that began before `since` any more.
    async fn every_writer_called_since(&self, since: Instant) {
        eventually(RECOVERY_LIMIT, "every writer finished a call begun since", async || {
            let calls = self.calls.lock().unwrap();
            let since_then = calls.iter().filter(|c| c.started > since);
            since_then.map(|c| c.writer).collect::<HashSet<_>>().len() == self.tasks.len()
        })
        .await;
    }

    async fn stop(self) -> (Vec<Call>, BTreeMap<String, String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let calls = std::mem::take(&mut *self.calls.lock().unwrap());
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        (calls, acked)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_opens_breaker_serves_fallback_and_loses_no_acknowledged_write() {
    // AOF with fsync on every write: whatever Redis acknowledged survives its SIGKILL.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut redis = RedisServer::options().durable().start();
    let dir = tempfile::tempdir().unwrap();
    // A SIGKILLed Redis refuses at once, so the outage is noticed as fast with the long timeout,
    // and a call made while open that paid it would stand out.
    let redkit = open_patient(&redis, &dir).await;
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    let load = Load::start(&kv, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill();
    let killed = Instant::now();
    eventually(RECOVERY_LIMIT, "breaker opens", async || {
        redkit.mode() == Mode::Fallback
    })
    .await;
    let opened = Instant::now();
    println!("breaker opened {:?} after SIGKILL", opened - killed);
    // Event-based, not timed: once every writer has finished a call begun after the breaker
    // opened, no call made before is still to be recorded; then, while every writer makes another
    // call, Redis must see none of them.
    load.every_writer_called_since(opened).await;
    let redis_calls_when_open = redis_kv_calls(&redkit);
    assert!(redis_calls_when_open > 0, "the load's calls on Redis are counted");
    load.every_writer_called_since(Instant::now()).await;
    assert_eq!(
        redis_kv_calls(&redkit),
        redis_calls_when_open,
        "a call made while the breaker was open went to Redis"
    );
    let restarting = Instant::now();

    redis.restart();
    eventually(RECOVERY_LIMIT, "back on redis", async || redkit.mode() == Mode::Redis).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (calls, acked) = load.stop().await;

    // Calls made start to end while the breaker was open (the waits above saw each writer make
    // some).
    let while_open: Vec<&Call> = calls
        .iter()
        .filter(|c| c.started > opened && c.started + c.took < restarting)
        .collect();
    assert!(!while_open.is_empty(), "load kept running while the breaker was open");
    for c in &while_open {
        assert!(c.ok, "a call made while the breaker was open failed");
        assert!(
            c.took < PATIENT / 2,
            "a call made while open waited {:?} (paying the timeout would take {PATIENT:?})",
            c.took
        );
    }
    let slowest = calls.iter().map(|c| c.took).max().unwrap();
    assert!(slowest < PATIENT * 3, "a call hung for {slowest:?}");
    let failed = calls.iter().filter(|c| !c.ok).count();
    println!(
        "{} calls, {failed} refused during the transition, slowest {slowest:?}",
        calls.len()
    );

    // Every acknowledged write is in Redis, whether Redis or the fallback acknowledged it.
    assert!(redkit.route().recoveries_completed() >= 1);
    for (key, value) in &acked {
        let stored = redis.command(&["GET", &format!("rk:test:{key}")]).unwrap();
        assert_eq!(&stored, value, "acknowledged write of {key} lost");
    }
    let health = redkit.health().await;
    assert!(health.journal_pending.is_empty(), "{:?}", health.journal_pending);
    assert_eq!(health.breaker.unwrap().state, BreakerState::Closed);
}

#[tokio::test]
async fn writes_and_deletes_made_in_fallback_are_replayed_in_order() {
    let mut redis = RedisServer::options().arg("--appendonly").arg("yes").start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = open(&redis, &dir).await;
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    kv.set("doomed", "old").await.unwrap();
    kv.set("changed", "old").await.unwrap();
    redis.command(&["BGREWRITEAOF"]).unwrap();

    redis.kill();
    wait_mode(&redkit, &kv, Mode::Fallback).await;
    kv.del("doomed").await.unwrap();
    kv.set("changed", "v1").await.unwrap();
    kv.set("changed", "v2").await.unwrap();
    kv.set("new", "fresh").await.unwrap();
    let pending = redkit.health().await.journal_pending;
    assert_eq!(pending.get("test_kv"), Some(&4));
    assert_eq!(redkit.health().await.status, Status::Degraded);

    redis.restart();
    wait_mode(&redkit, &kv, Mode::Redis).await;
    assert_eq!(redis.command(&["EXISTS", "rk:test:doomed"]).unwrap(), "0");
    assert_eq!(redis.command(&["GET", "rk:test:changed"]).unwrap(), "v2");
    assert_eq!(redis.command(&["GET", "rk:test:new"]).unwrap(), "fresh");
    assert_eq!(kv.get("changed").await.unwrap().as_deref(), Some("v2"));
    let health = redkit.health().await;
    assert!(health.journal_pending.is_empty());
    let breaker = health.breaker.unwrap();
    assert_eq!((breaker.opened_total, breaker.closed_total), (1, 1));
    assert_eq!(breaker.last_transition.unwrap().to, BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_times_out_opens_breaker_and_sigcont_recovers() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The timeout is what a frozen Redis costs; a long one leaves a slow host room between paying
    // it once and paying it twice, and between paying it and not paying it.
    let redkit = open_patient(&redis, &dir).await;
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    kv.set("k", "before").await.unwrap();

    redis.freeze();
    let frozen = Instant::now();
    // Concurrent callers each wait at most the response timeout.
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let kv = kv.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let r = kv.set(&format!("during{i}"), "x").await;
                (started.elapsed(), r.map_err(|e| e.kind()))
            })
        })
        .collect();
    for c in calls {
        let (took, result) = c.await.unwrap();
        assert!(
            took < PATIENT * 2,
            "a call waited {took:?}, more than one response timeout ({PATIENT:?})"
        );
        assert!(matches!(result, Ok(()) | Err(ErrorKind::Unavailable)), "{result:?}");
    }
    wait_mode(&redkit, &kv, Mode::Fallback).await;
    println!("breaker opened {:?} after SIGSTOP", frozen.elapsed());

    // The callers above and the pokes of `wait_mode` are done: no call of ours is in flight.
    let redis_calls_when_open = redis_kv_calls(&redkit);
    assert!(redis_calls_when_open > 0, "calls on Redis are counted");
    let started = Instant::now();
    kv.set("while_frozen", "y").await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        redis_kv_calls(&redkit),
        redis_calls_when_open,
        "a call made while open went to Redis"
    );
    assert!(
        took < PATIENT / 2,
        "no timeout is paid once open, yet a call took {took:?} (the timeout is {PATIENT:?})"
    );

    redis.thaw();
    wait_mode(&redkit, &kv, Mode::Redis).await;
    assert_eq!(redis.command(&["GET", "rk:test:while_frozen"]).unwrap(), "y");
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("before"));
}

#[tokio::test]
async fn loading_at_start_is_waited_out_without_counting_failures() {
    let redis = RedisServer::start_loading(30_000, 50);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let redkit = open(&redis, &dir).await;
    assert_eq!(redkit.mode(), Mode::Redis, "open returns once loading is over");
    println!("waited {:?} for LOADING", started.elapsed());
    let health = redkit.health().await;
    assert_eq!(health.redis.unwrap().info.unwrap().keys, Some(30_000));
    assert_eq!(health.breaker.unwrap().opened_total, 0);
}

#[tokio::test]
async fn loading_wait_bound_starts_in_fallback_then_recovers() {
    let redis = RedisServer::start_loading(40_000, 50);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(redis.url()), dir.path());
    cfg.redis.as_mut().unwrap().loading_wait = Duration::from_millis(100);
    let redkit = Redkit::open(cfg).await.unwrap();
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    assert_eq!(redkit.mode(), Mode::Fallback);
    kv.set("early", "1").await.unwrap();
    wait_mode(&redkit, &kv, Mode::Redis).await;
    assert_eq!(redis.command(&["GET", "rk:test:early"]).unwrap(), "1");
    assert_eq!(redis.command(&["DBSIZE"]).unwrap(), "40001");
}

#[tokio::test]
async fn loading_after_restart_goes_to_fallback_and_back() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = open(&redis, &dir).await;
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    kv.set("k", "v").await.unwrap();
    redis.restart_loading(40_000, 50);
    wait_mode(&redkit, &kv, Mode::Fallback).await;
    kv.set("during_loading", "x").await.unwrap();
    wait_mode(&redkit, &kv, Mode::Redis).await;
    assert_eq!(redis.command(&["GET", "rk:test:during_loading"]).unwrap(), "x");
    assert_eq!(
        kv.get("k").await.unwrap().as_deref(),
        Some("v"),
        "the saved RDB was loaded"
    );
}

#[tokio::test]
async fn noscript_after_flush_and_restart_is_reloaded() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = open(&redis, &dir).await;
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    assert_eq!(kv.incr("n", 1).await.unwrap(), 1);
    redis.command(&["SCRIPT", "FLUSH"]).unwrap();
    assert_eq!(kv.incr("n", 1).await.unwrap(), 2);

    redis.restart();
    // The old connection is gone; traffic notices, the breaker opens and recovers.
    eventually(RECOVERY_LIMIT, "script runs on the restarted redis", async || {
        kv.incr("m", 1).await.is_ok() && redkit.mode() == Mode::Redis
    })
    .await;
    redis.command(&["DEL", "rk:test:m"]).unwrap();
    assert_eq!(kv.incr("m", 7).await.unwrap(), 7);
    assert_eq!(redis.command(&["GET", "rk:test:m"]).unwrap(), "7");
}

#[tokio::test]
async fn redis_down_at_start_runs_fallback_until_it_appears() {
    let mut redis = RedisServer::start();
    redis.kill();
    let dir = tempfile::tempdir().unwrap();
    let redkit = open(&redis, &dir).await;
    assert_eq!(redkit.mode(), Mode::Fallback);
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    kv.set("k", "from fallback").await.unwrap();
    let health = redkit.health().await;
    assert!(health.redis.unwrap().last_connect_error.is_some());
    redis.restart();
    wait_mode(&redkit, &kv, Mode::Redis).await;
    assert_eq!(redis.command(&["GET", "rk:test:k"]).unwrap(), "from fallback");
}

#[tokio::test]
async fn fail_closed_capability_is_refused_and_health_is_unavailable() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A SIGKILLed Redis refuses at once, so the outage is noticed as fast with the long timeout,
    // and a refusal that paid it would stand out.
    let redkit = open_patient(&redis, &dir).await;
    let serving = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    let closed = Kv::new(&redkit, "test_kv_closed", FallbackPolicy::FailClosed);
    closed.set("k", "v").await.unwrap();
    redis.kill();
    wait_mode(&redkit, &serving, Mode::Fallback).await;
    let redis_calls_when_open = redis_kv_calls(&redkit);
    assert!(redis_calls_when_open > 0, "calls on Redis are counted");
    let started = Instant::now();
    let err = closed.get("k").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("test_kv_closed"), "{err}");
    assert_eq!(
        redis_kv_calls(&redkit),
        redis_calls_when_open,
        "refused without asking Redis"
    );
    assert!(
        took < PATIENT / 2,
        "refused after {took:?} (paying the timeout would take {PATIENT:?})"
    );
    serving.set("k", "v").await.unwrap();
    let health = redkit.health().await;
    assert_eq!(health.status, Status::Unavailable);
    let closed_health = health.capabilities.iter().find(|c| c.name == "test_kv_closed").unwrap();
    assert!(!closed_health.available);
    redis.restart();
    wait_mode(&redkit, &serving, Mode::Redis).await;
    closed.set("k", "again").await.unwrap();
}

#[tokio::test]
async fn journal_left_by_a_previous_process_is_replayed_on_registration() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    {
        let redkit = open(&redis, &dir).await;
        let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
        redis.kill();
        wait_mode(&redkit, &kv, Mode::Fallback).await;
        kv.set("orphan", "kept").await.unwrap();
        // The process "crashes" here, before Redis returns.
    }
    redis.restart();
    let redkit = open(&redis, &dir).await;
    assert_eq!(redkit.mode(), Mode::Redis);
    assert_eq!(redkit.health().await.journal_pending.get("test_kv"), Some(&1));
    let _kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    eventually(RECOVERY_LIMIT, "journal replayed", async || {
        redis.command(&["GET", "rk:test:orphan"]).unwrap() == "kept"
    })
    .await;
}

/// Records when the route seals and cleans up after it, and what mode it was in then.
struct Sealing {
    route: std::sync::Weak<redkit::core::route::Route>,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl redkit::core::route::Recovery for Sealing {
    fn capability(&self) -> &'static str {
        "test_sealing"
    }
    async fn replay(&self, _entries: &[redkit::core::journal::Entry]) -> redkit::Result<()> {
        Ok(())
    }
    fn seal(&self) -> redkit::core::route::BoxFuture<'static, redkit::Result<()>> {
        let mode = self.route.upgrade().map(|r| r.mode());
        self.log.lock().unwrap().push(format!("seal in {mode:?}"));
        Box::pin(async { Ok(()) })
    }
    async fn after_close(&self, after: redkit::core::route::Closed) -> redkit::Result<()> {
        self.log.lock().unwrap().push(format!("after_close {after:?}"));
        Ok(())
    }
}

/// The line between what an outage wrote and what the next one writes is drawn as the
/// breaker closes (with fallback writes held back), not when the clean-up gets to run: a
/// clean-up that drew it later hid the writes of an outage that began before it ran
/// (`outages::what_an_outage_writes_at_once_is_served_in_it`). At start-up it is drawn as
/// the capability registers, before it can have written anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_seals_the_outage_before_the_breaker_closes_and_cleans_up_after() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = open(&redis, &dir).await;
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    let log = Arc::new(Mutex::new(Vec::new()));
    redkit.route().register_recovery(Arc::new(Sealing {
        route: Arc::downgrade(redkit.route()),
        log: log.clone(),
    }));
    assert_eq!(
        *log.lock().unwrap(),
        ["seal in Some(Redis)"],
        "sealed as it registered, not later in the background"
    );
    eventually(RECOVERY_LIMIT, "the pass at start-up cleaned up", async || {
        log.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(log.lock().unwrap()[1], "after_close AtStartup");

    for outage in 0..2 {
        log.lock().unwrap().clear();
        redis.kill();
        wait_mode(&redkit, &kv, Mode::Fallback).await;
        redis.restart();
        wait_mode(&redkit, &kv, Mode::Redis).await;
        eventually(RECOVERY_LIMIT, "cleaned up after the outage", async || {
            log.lock().unwrap().len() == 2
        })
        .await;
        let log = log.lock().unwrap();
        assert!(
            log[0] == "seal in Some(Fallback)",
            "outage {outage}: sealed before the breaker closed: {log:?}"
        );
        assert_eq!(log[1], "after_close OutageEnded", "outage {outage}");
    }
}
