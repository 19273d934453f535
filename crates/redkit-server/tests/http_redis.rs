//! Servers sharing one Redis, and a Redis that dies under load.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Server, eventually};
use redkit::ratelimit::{Algorithm, Policy};
use redkit_server::ServerSettings;
use redkit_testkit::RedisServer;
use reqwest::StatusCode;
use serde_json::json;

fn with_policy() -> ServerSettings {
    ServerSettings {
        policies: vec![Policy::new("api", Algorithm::Gcra, 3, Duration::from_secs(60))],
        ..ServerSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_redis_share_locks_limits_caches_and_queues() {
    let redis = RedisServer::start();
    let a = Server::start(Some(redis.url()), with_policy()).await;
    let b = Server::start(Some(redis.url()), with_policy()).await;

    // A lock held via A is refused via B until A releases it.
    let held = a.post("/v1/locks/report/acquire", json!({"ttl_ms": 10000})).await;
    assert_eq!(held.status, StatusCode::OK);
    assert_eq!(
        b.post("/v1/locks/report/acquire", json!({})).await.status,
        StatusCode::CONFLICT
    );
    a.post("/v1/locks/report/release", json!({"token": held.body["token"]}))
        .await;
    let taken = b.post("/v1/locks/report/acquire", json!({})).await;
    assert_eq!(taken.status, StatusCode::OK);
    assert!(taken.body["fence"].as_u64() > held.body["fence"].as_u64());

    // One rate limit across both: 3 per minute in all.
    async fn check(s: &Server) -> StatusCode {
        s.post("/v1/ratelimit/api/check", json!({"key": "tenant:7"}))
            .await
            .status
    }
    assert_eq!(check(&a).await, StatusCode::OK);
    assert_eq!(check(&b).await, StatusCode::OK);
    assert_eq!(check(&a).await, StatusCode::OK);
    assert_eq!(check(&b).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(check(&a).await, StatusCode::TOO_MANY_REQUESTS);

    // Cache: B reads (and holds the value in its L1); a delete via A is seen via B.
    a.put("/v1/cache/profiles/ada", json!({"v": 1})).await;
    assert_eq!(b.get("/v1/cache/profiles/ada").await.body, json!({"v": 1}));
    assert_eq!(a.delete("/v1/cache/profiles/ada").await.body["deleted"], true);
    eventually(Duration::from_secs(5), "B sees A's delete", async || {
        b.get("/v1/cache/profiles/ada").await.status == StatusCode::NOT_FOUND
    })
    .await;
    a.put("/v1/cache/profiles/ada", json!({"v": 2})).await;
    eventually(Duration::from_secs(5), "B sees A's overwrite", async || {
        b.get("/v1/cache/profiles/ada").await.body == json!({"v": 2})
    })
    .await;

    // Sessions and jobs: made via one, used via the other.
    let session = a.post("/v1/sessions", json!({"user": "ada"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(b.get(&format!("/v1/sessions/{session}")).await.body["user"], "ada");
    a.post("/v1/queues/shared/jobs", json!({"payload": "x", "id": "j1"}))
        .await;
    let job = b.post("/v1/queues/shared/fetch", json!({"worker": "b"})).await.body["jobs"][0].clone();
    assert_eq!(job["id"], "j1");
    let acked = a
        .post("/v1/queues/shared/jobs/j1/ack", json!({"token": job["token"]}))
        .await;
    assert_eq!(acked.body["outcome"], "completed");
}

/// Requests that keep running while Redis dies: (successes, failures other than the
/// fail-closed lock's 503).
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    failing_now: AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_falls_back_and_recovers() {
    let mut redis = RedisServer::options().durable().start();
    let s = Arc::new(Server::start(Some(redis.url()), with_policy()).await);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (s, tally, stop) = (s.clone(), tally.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("w{worker}-{i}");
                let steps = [
                    s.put(&format!("/v1/cache/load/{key}"), json!(i)).await.status,
                    s.get(&format!("/v1/cache/load/{key}")).await.status,
                    s.post("/v1/ratelimit/api/check", json!({"key": key})).await.status,
                    s.post("/v1/sessions", json!({"data": {"i": i}})).await.status,
                    s.post("/v1/queues/load/jobs", json!({"payload": i})).await.status,
                ];
                let bad = steps.iter().any(|st| !st.is_success());
                tally.failing_now.store(bad, Ordering::Relaxed);
                if bad {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.get("/health").await.body["mode"], "redis");

    redis.kill();
    eventually(Duration::from_secs(5), "/health shows fallback", async || {
        s.get("/health").await.body["mode"] == "fallback"
    })
    .await;
    // Rounds that began before the breaker opened may still be finishing (at most one
    // response timeout, 250 ms); after them every request succeeds on the embedded store.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (ok_before, failed_before) = (tally.ok.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        tally.ok.load(Ordering::Relaxed) > ok_before + 10,
        "requests keep succeeding in fallback"
    );
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        failed_before,
        "no request fails in fallback"
    );
    let health = s.get("/health").await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "locks fail closed: health says so"
    );
    assert_eq!(s.get("/ready").await.status, StatusCode::OK, "still taking requests");
    let lock = s.post("/v1/locks/critical/acquire", json!({})).await;
    assert_eq!(lock.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(lock.body["error"]["code"], "unavailable");
    let local = s
        .post("/v1/locks/critical/acquire", json!({"local_fallback": true}))
        .await;
    assert_eq!(local.status, StatusCode::OK, "a host-local lock when asked for");

    redis.restart();
    eventually(Duration::from_secs(10), "/health back to redis", async || {
        s.get("/health").await.body["mode"] == "redis"
    })
    .await;
    let ok_after = tally.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(
        tally.ok.load(Ordering::Relaxed) > ok_after,
        "requests succeed after recovery"
    );
    assert!(!tally.failing_now.load(Ordering::Relaxed));
    assert_eq!(
        s.post("/v1/locks/critical2/acquire", json!({})).await.status,
        StatusCode::OK
    );
    // Requests in flight at the moment of the kill may have failed (within one response
    // timeout); say how many, so a regression is visible.
    eprintln!(
        "load: {} rounds ok, {} rounds with a failure (all before the breaker opened)",
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed)
    );
    // Every job enqueued during the run is in Redis now (the spool drained).
    let q = s.get("/v1/queues/load").await.body;
    let stored = q["waiting"].as_u64().unwrap();
    assert!(stored > 0);
    eventually(Duration::from_secs(10), "spool drained into Redis", async || {
        s.redkit.health().await.journal_pending.values().all(|n| *n == 0)
    })
    .await;
}
