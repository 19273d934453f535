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
        policies: vec![Policy::new("api", Algorithm::Gcra, 3, Duration::from_secs(3600))],
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

    // One rate limit across both: 3 per hour in all (an hour, so that no refill comes between
    // the checks however slow the host).
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

const WORKERS: usize = 4;

/// Requests that keep running while Redis dies: (successes, failures other than the
/// fail-closed lock's 503).
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    failing_now: AtomicBool,
    /// Per worker: rounds begun, and rounds counted in `ok` or `failed`.
    begun: [AtomicU64; WORKERS],
    counted: [AtomicU64; WORKERS],
}

impl Tally {
    /// Waits until every worker has counted a round it began after this call. Each runs one
    /// round at a time, so then no round begun before the call is still to be counted.
    async fn every_worker_ran_a_round_from_now(&self, what: &str) {
        let begun: Vec<u64> = self.begun.iter().map(|b| b.load(Ordering::SeqCst)).collect();
        eventually(Duration::from_secs(30), what, async || {
            let counted = self.counted.iter().map(|c| c.load(Ordering::SeqCst));
            counted.zip(&begun).all(|(c, b)| c > *b)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_falls_back_and_recovers() {
    let mut redis = RedisServer::options().durable().start();
    let s = Arc::new(Server::start(Some(redis.url()), with_policy()).await);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..WORKERS {
        let (s, tally, stop) = (s.clone(), tally.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                tally.begun[worker].fetch_add(1, Ordering::SeqCst);
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
                    tally.failed.fetch_add(1, Ordering::SeqCst);
                } else {
                    tally.ok.fetch_add(1, Ordering::SeqCst);
                }
                tally.counted[worker].fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.get("/health").await.body["mode"], "redis");

    redis.kill();
    eventually(Duration::from_secs(10), "/health shows fallback", async || {
        s.get("/health").await.body["mode"] == "fallback"
    })
    .await;
    // Rounds that began before the breaker opened may still be finishing, however long that
    // takes on a slow host; once each worker has run a round begun after this point, they are
    // all counted, and every round after them runs entirely in fallback.
    tally
        .every_worker_ran_a_round_from_now("every worker ran a round begun in fallback")
        .await;
    let (ok_before, failed_before) = (tally.ok.load(Ordering::SeqCst), tally.failed.load(Ordering::SeqCst));
    eventually(
        Duration::from_secs(30),
        "10 more rounds succeed in fallback",
        async || tally.ok.load(Ordering::SeqCst) > ok_before + 10,
    )
    .await;
    assert_eq!(
        tally.failed.load(Ordering::SeqCst),
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
    let ok_after = tally.ok.load(Ordering::SeqCst);
    // Not a fixed sleep: each worker runs a round begun after recovery, however slow the host.
    tally
        .every_worker_ran_a_round_from_now("every worker ran a round begun after recovery")
        .await;
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
