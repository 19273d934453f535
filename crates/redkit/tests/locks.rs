//! Locks and semaphores on Redis and host-local: mutual exclusion, fencing, expiry,
//! stale tokens, the watchdog, and the outage policy.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{PATIENT, config, eventually, patient_config, redis_calls};
use redkit::lock::LockOptions;
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::RedisServer;

fn unique(name: &str) -> String {
    // Host-local locks share a host-wide directory; keep test runs apart.
    format!("{name}-{:x}", rand_id())
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id()) << 32
}

async fn suite(redkit: &Redkit) {
    let locks = redkit.locks();
    let name = unique("suite");
    // `short` only for the locks whose expiry is tested (c, d); the others must stay held
    // through several calls, so they get `held`, seconds of slack on a loaded CI host.
    let short = LockOptions::new().ttl(Duration::from_millis(300)).watchdog(false);
    let held = LockOptions::new().ttl(Duration::from_secs(5)).watchdog(false);

    let a = locks.try_acquire(&name, &held).await.unwrap().expect("free lock");
    assert!(locks.try_acquire(&name, &short).await.unwrap().is_none(), "held");
    let err = locks
        .acquire(&name, &short.clone().wait(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let f1 = a.fence();
    assert!(a.release().await.unwrap());

    // Waiting: released by another task in the meantime.
    let b = locks.acquire(&name, &held).await.unwrap();
    let f2 = b.fence();
    assert!(f2 > f1, "fences strictly increase");
    let (l2, n2) = (locks.clone(), name.clone());
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.release().await.unwrap()
    });
    let started = Instant::now();
    let c = l2
        .acquire(&n2, &short.clone().wait(Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(releaser.await.unwrap());
    assert!(c.fence() > f2);

    // Expiry frees a lock whose holder vanished; its stale token can neither extend nor release.
    std::mem::forget(c);
    let d = locks
        .acquire(&name, &short.clone().wait(Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(d.fence() > f2);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let e = locks
        .acquire(&name, &held.clone().wait(Duration::from_secs(2)))
        .await
        .unwrap();
    let err = d.extend(Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(d.is_lost(), "a failed extend marks the guard lost");
    assert!(!d.release().await.unwrap(), "a stale token cannot release");
    assert!(
        locks.try_acquire(&name, &short).await.unwrap().is_none(),
        "the new holder still holds it"
    );
    e.extend(Duration::from_secs(1)).await.unwrap();
    assert!(e.release().await.unwrap());

    // Dropping a guard releases it (a `held` guard: a short lease would end within the
    // wait below and free it even if the drop did not).
    let g = locks.acquire(&name, &held).await.unwrap();
    drop(g);
    eventually(Duration::from_secs(2), "drop releases", async || {
        locks.try_acquire(&name, &short).await.unwrap().is_some()
    })
    .await;

    // Semaphore: N permits on the same machinery.
    let sem = unique("sem");
    let opts = LockOptions::new().ttl(Duration::from_secs(5)).watchdog(false);
    let permits: Vec<_> = futures_permits(&locks, &sem, &opts, 3).await;
    assert!(
        locks.acquire_permit(&sem, 3, &opts).await.is_err(),
        "a fourth permit waits"
    );
    let fences: Vec<u64> = permits.iter().map(|p| p.fence()).collect();
    assert!(fences.windows(2).all(|w| w[0] < w[1]));
    drop(permits);

    // Bad input.
    assert_eq!(
        locks.try_acquire("", &short).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let err = locks
        .try_acquire(&name, &LockOptions::new().ttl(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ttl"), "{err}");
    assert!(
        locks
            .acquire_permit(&name, 0, &short)
            .await
            .unwrap_err()
            .to_string()
            .contains("permits")
    );
}

async fn futures_permits(
    locks: &redkit::lock::Locks,
    name: &str,
    opts: &LockOptions,
    n: usize,
) -> Vec<redkit::lock::LockGuard> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(locks.acquire_permit(name, n as u32, opts).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    suite(&common::on_redis().await.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded() {
    suite(&common::on_embedded().await.redkit).await;
}

/// N tasks × M increments of a read-modify-write that is not atomic on its own.
async fn exclusive_counter(instances: &[Redkit], name: &str) -> u64 {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 25;
    let counter = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let locks = instances[i % instances.len()].locks();
        let (counter, name) = (counter.clone(), name.to_string());
        handles.push(tokio::spawn(async move {
            let opts = LockOptions::new()
                .ttl(Duration::from_secs(5))
                .wait(Duration::from_secs(30));
            let mut last_fence = 0;
            for _ in 0..INCREMENTS {
                let guard = locks.acquire(&name, &opts).await.unwrap();
                assert!(guard.fence() > last_fence);
                last_fence = guard.fence();
                let read = counter.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_micros(200)).await;
                counter.store(read + 1, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), (TASKS * INCREMENTS) as u64);
    counter.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_across_two_instances_on_redis() {
    let redis = RedisServer::start();
    let (a, b) = common::two_instances(&redis).await;
    exclusive_counter(&[a.redkit, b.redkit], "counter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_host_local_across_two_instances() {
    let (a, b) = (common::on_embedded().await, common::on_embedded().await);
    let (a, b) = (a.redkit, b.redkit);
    // Two instances with separate data dirs exclude each other through the file lock.
    exclusive_counter(&[a, b], &unique("local-counter")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_keeps_the_lock_and_signals_when_redis_dies() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let locks = redkit.locks();
    // Renewals every TTL/3 leave two renewals of slack on a loaded machine.
    let ttl = Duration::from_millis(900);
    let guard = locks.acquire("watched", &LockOptions::new().ttl(ttl)).await.unwrap();
    tokio::time::sleep(ttl * 3).await;
    assert!(!guard.is_lost());
    assert!(
        locks
            .try_acquire("watched", &LockOptions::new())
            .await
            .unwrap()
            .is_none(),
        "still held past its TTL"
    );

    redis.kill();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), guard.lost())
        .await
        .expect("the guard signals the loss");
    assert!(guard.is_lost());
    println!("loss signalled {:?} after SIGKILL", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_closed_by_default_and_local_locks_opt_in() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A patient timeout: a call made while open that paid it would stand out.
    let response_timeout = PATIENT;
    let redkit = Redkit::open(patient_config(redis.url(), dir.path())).await.unwrap();
    let redis_acquires = || redis_calls(&redkit, &["lock_acquire"]);
    let locks = redkit.locks();
    let local = LockOptions::new()
        .local_fallback(true)
        .ttl(Duration::from_secs(5))
        .watchdog(false);
    let before = locks.acquire("orders", &local).await.unwrap();
    let redis_fence = before.fence();
    before.release().await.unwrap();
    assert!(redis_acquires() >= 1, "an acquisition on Redis is counted");

    redis.kill();
    eventually(Duration::from_secs(15), "fallback", async || {
        let _ = locks.try_acquire("probe", &LockOptions::new()).await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    let acquires_when_open = redis_acquires();
    let started = Instant::now();
    let err = locks.try_acquire("orders", &LockOptions::new()).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "fail closed by default");
    assert_eq!(
        redis_acquires(),
        acquires_when_open,
        "refused without asking Redis while the breaker is open"
    );
    assert!(
        took < response_timeout / 2,
        "refused after {took:?} (paying the timeout would take {response_timeout:?})"
    );
    let health = redkit.health().await;
    assert_eq!(health.status, redkit::health::Status::Unavailable);
    assert!(
        health
            .capabilities
            .iter()
            .any(|c| c.name == "lock_local" && c.available)
    );

    let name = unique("orders");
    let held = locks.acquire(&name, &local).await.unwrap();
    assert!(
        locks.try_acquire(&name, &local).await.unwrap().is_none(),
        "the host-local lock excludes"
    );
    let local_fence = held.fence();
    held.release().await.unwrap();
    let g = locks.acquire("orders", &local).await.unwrap();
    assert!(g.fence() > redis_fence, "local fences start above the last Redis fence");
    let high = g.fence();
    g.release().await.unwrap();

    redis.restart();
    eventually(Duration::from_secs(10), "back on redis", async || {
        redkit.mode() == Mode::Redis
    })
    .await;
    let after = locks
        .acquire("orders", &LockOptions::new().watchdog(false))
        .await
        .unwrap();
    assert!(
        after.fence() > high && after.fence() > local_fence,
        "fences keep increasing after recovery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_name_cannot_move_its_hash_tag() {
    let h = common::on_redis().await;
    let redis = h.redis.as_ref().unwrap();
    let guard = h.redkit.locks().acquire("l}:f", &LockOptions::new()).await.unwrap();
    assert_eq!(redis.command(&["EXISTS", "rk:{lk:l%7D%3Af}:h"]).unwrap(), "1");
    assert_eq!(redis.command(&["EXISTS", "rk:{lk:l}:f}:h"]).unwrap(), "0");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_counts_lock_and_session_activity() {
    let h = common::on_embedded().await;
    let locks = h.redkit.locks();
    let opts = redkit::lock::LockOptions::new().watchdog(false);
    let held = locks.acquire("counted", &opts).await.unwrap();
    assert!(locks.try_acquire("counted", &opts).await.unwrap().is_none());
    held.release().await.unwrap();
    let sessions = h.redkit.sessions(redkit::session::SessionOptions::default()).unwrap();
    let s = sessions.create(serde_json::Map::new(), None).await.unwrap();
    sessions.get(&s.id).await.unwrap().unwrap();
    sessions.delete(&s.id).await.unwrap();
    assert!(sessions.get(&s.id).await.unwrap().is_none());
    let health = serde_json::to_value(h.redkit.health().await).unwrap();
    let stats = &health["stats"];
    assert_eq!(
        stats["lock"],
        serde_json::json!({"acquired": 1, "busy": 1, "released": 1}),
        "{health}"
    );
    assert_eq!(stats["session"]["created"], 1);
    assert_eq!(stats["session"]["read"], 1);
    assert_eq!(stats["session"]["missed"], 1);
    assert_eq!(stats["session"]["deleted"], 1);
}
