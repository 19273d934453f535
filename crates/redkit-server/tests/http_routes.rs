//! Every route over real HTTP, one test body run against a server on the embedded store
//! and against a server on a real redis-server.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use redkit_testkit::RedisServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_embedded() {
    let s = Server::embedded().await;
    every_route(&s).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_redis() {
    let redis = RedisServer::start();
    let s = Server::on_redis(&redis.url()).await;
    every_route(&s).await;
    assert_eq!(s.get("/health").await.body["mode"], "redis");
    s.shutdown().await;
}

async fn every_route(s: &Server) {
    operations(s).await;
    cache(s).await;
    cache_management(s).await;
    rate_limits(s).await;
    locks(s).await;
    sessions(s).await;
    jobs(s).await;
    dead_jobs(s).await;
    channels(s).await;
    records(s).await;
    dashboard(s).await;
    // Every route the OpenAPI document lists was called (metrics count by route template).
    let metrics = s.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap();
    let open: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("redkit_http_connections "))
        .expect("redkit_http_connections in /metrics")
        .parse()
        .unwrap();
    assert!(open >= 1.0, "at least this request's connection is open: {open}");
    let doc = s.get("/openapi.json").await.body;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            assert!(
                metrics.contains(&format!("method=\"{m}\",route=\"{path}\"")),
                "{m} {path} was not exercised"
            );
        }
    }
}

async fn operations(s: &Server) {
    let h = s.get("/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert!(h.body["mode"] == "redis" || h.body["mode"] == "embedded");
    assert_eq!(s.get("/ready").await.status, StatusCode::OK);
    let page = s.get("/").await;
    assert!(
        page.body.as_str().unwrap().contains("<title>redkit"),
        "the dashboard page"
    );
    let doc = s.get("/openapi.json").await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/queues/{q}/fetch"]["post"].is_object());
    // Request ids: made when absent, echoed when given.
    let (a, b) = (s.get("/ready").await, s.get("/ready").await);
    let (a, b) = (a.header("x-request-id"), b.header("x-request-id"));
    assert!(!a.is_empty() && a != b, "fresh ids {a} and {b}");
    let given = s
        .http
        .get(format!("{}/ready", s.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
}

async fn cache(s: &Server) {
    let put = s
        .put(
            "/v1/cache/users/u%2F1?ttl_s=60&tags=team,admins",
            json!({"name": "ada"}),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.body);
    let got = s.get("/v1/cache/users/u%2F1").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, json!({"name": "ada"}));
    assert_eq!(
        s.call(Method::HEAD, "/v1/cache/users/u%2F1", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.call(Method::HEAD, "/v1/cache/users/nobody", None).await.status,
        StatusCode::NOT_FOUND
    );
    let ttl = s.get("/v1/cache/users/u%2F1/ttl").await;
    let ms = ttl.body["ttl_ms"].as_u64().unwrap();
    assert!(ms > 50_000 && ms <= 60_000, "{ms}");
    assert_eq!(s.get("/v1/cache/users/nobody/ttl").await.status, StatusCode::NOT_FOUND);
    let missing = s.get("/v1/cache/users/nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"]["code"], "not_found");
    // Any JSON value, including a plain string.
    s.put("/v1/cache/users/greeting", json!("hello")).await;
    assert_eq!(s.get("/v1/cache/users/greeting").await.body, json!("hello"));
    let del = s.delete("/v1/cache/users/greeting").await;
    assert_eq!(del.body, json!({"deleted": true}));
    assert_eq!(
        s.delete("/v1/cache/users/greeting").await.body,
        json!({"deleted": false})
    );
    assert_eq!(s.get("/v1/cache/users/greeting").await.status, StatusCode::NOT_FOUND);
    // A short TTL expires.
    s.put("/v1/cache/users/brief?ttl_s=0.2", json!(1)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.get("/v1/cache/users/brief").await.status, StatusCode::NOT_FOUND);

    // Get-or-set: one caller loads and fills; the next finds the value.
    let claim = s.post("/v1/cache/users/loaded/claim", json!({})).await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.body);
    assert_eq!(claim.body["state"], "load");
    let token = claim.body["fill_token"].as_str().unwrap().to_string();
    let busy = s.post("/v1/cache/users/loaded/claim", json!({"wait_ms": 0})).await;
    assert_eq!(busy.body["state"], "busy", "another caller holds the claim");
    let filled = s
        .put(
            &format!("/v1/cache/users/loaded?ttl_s=60&stale_ttl_s=600&fill_token={token}"),
            json!({"v": 1}),
        )
        .await;
    assert_eq!(filled.status, StatusCode::NO_CONTENT);
    let fresh = s.post("/v1/cache/users/loaded/claim", json!({})).await;
    assert_eq!(
        (fresh.body["state"].clone(), fresh.body["value"].clone()),
        (json!("fresh"), json!({"v": 1}))
    );
    // A loader that gives up lets the next caller load at once.
    let claim = s.post("/v1/cache/users/failing/claim", json!({})).await;
    let token = claim.body["fill_token"].as_str().unwrap().to_string();
    let released = s
        .delete(&format!("/v1/cache/users/failing/claim?fill_token={token}"))
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.post("/v1/cache/users/failing/claim", json!({"wait_ms": 0}))
            .await
            .body["state"],
        "load"
    );
}

async fn cache_management(s: &Server) {
    let entries: Vec<Value> = (0..25)
        .map(|i| json!({"key": format!("item:{i}"), "value": {"n": i}, "tags": if i % 2 == 0 { vec!["even"] } else { vec![] }}))
        .collect();
    let warm = s
        .post("/v1/cache/warm", json!({"ns": "catalog", "entries": entries}))
        .await;
    assert_eq!(warm.body, json!({"stored": 25}));
    assert_eq!(s.get("/v1/cache/catalog/item:7").await.body, json!({"n": 7}));

    // Paged listing returns every key once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = "/v1/cache/keys?ns=catalog&pattern=item:*&limit=10".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = s.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(
            page.body["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);

    let status = s.get("/v1/cache/status").await.body;
    assert!(status["namespaces"].as_array().unwrap().contains(&json!("catalog")));
    let stats = s.get("/v1/cache/stats").await.body;
    let catalog = stats["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "catalog")
        .unwrap();
    assert_eq!(catalog["sets"], 25);

    let by_tag = s.post("/v1/cache/clear", json!({"ns": "catalog", "tag": "even"})).await;
    assert_eq!(by_tag.body, json!({"removed": 13}));
    assert_eq!(s.get("/v1/cache/catalog/item:4").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/v1/cache/catalog/item:5").await.status, StatusCode::OK);
    let by_pattern = s
        .post("/v1/cache/clear", json!({"ns": "catalog", "pattern": "item:1*"}))
        .await;
    assert_eq!(
        by_pattern.body,
        json!({"removed": 6}),
        "item:1, 11, 13, 15, 17, 19 (the even ones are gone)"
    );
    let all = s.post("/v1/cache/clear", json!({"ns": "catalog"})).await;
    assert_eq!(all.body, json!({"removed": 6}));
    assert_eq!(s.get("/v1/cache/catalog/item:5").await.status, StatusCode::NOT_FOUND);
    let both = s
        .post("/v1/cache/clear", json!({"ns": "catalog", "tag": "a", "pattern": "*"}))
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
}

async fn rate_limits(s: &Server) {
    let defined = s
        .put(
            "/v1/ratelimit/policies/login",
            json!({"algorithm": "gcra", "limit": 3, "period_ms": 60000}),
        )
        .await;
    assert_eq!(defined.status, StatusCode::OK, "{}", defined.body);
    assert_eq!(defined.body["policy"]["limit"], 3);
    assert_eq!(
        s.get("/v1/ratelimit/policies/login").await.body["policy"]["algorithm"],
        "gcra"
    );
    let list = s.get("/v1/ratelimit/policies").await.body;
    assert!(list.as_array().unwrap().iter().any(|p| p["name"] == "login"));
    assert_eq!(s.get("/v1/ratelimit/policies/nope").await.status, StatusCode::NOT_FOUND);

    for remaining in [2, 1, 0] {
        let r = s.post("/v1/ratelimit/login/check", json!({"key": "ip:1"})).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["remaining"], remaining);
        assert_eq!(r.header("ratelimit-policy"), "\"login\";q=3;w=60");
        assert!(
            r.header("ratelimit")
                .starts_with(&format!("\"login\";r={remaining};t="))
        );
    }
    let refused = s.post("/v1/ratelimit/login/check", json!({"key": "ip:1"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["allowed"], false);
    let retry: u64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Another key has its own budget; a cost counts several units.
    let costly = s
        .post("/v1/ratelimit/login/check", json!({"key": "ip:2", "cost": 3}))
        .await;
    assert_eq!(costly.body["remaining"], 0);
    assert_eq!(
        s.post("/v1/ratelimit/nope/check", json!({"key": "k"})).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = s
        .put("/v1/ratelimit/policies/bad", json!({"limit": 0, "period_ms": 1000}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.message().contains("limit"), "{}", bad.message());
    assert_eq!(refused.body["retry_after_ms"].as_u64().map(|ms| ms > 0), Some(true));
    s.put(
        "/v1/ratelimit/policies/gone",
        json!({"algorithm": "fixed_window", "limit": 1, "period_ms": 1000}),
    )
    .await;
    assert_eq!(
        s.delete("/v1/ratelimit/policies/gone").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get("/v1/ratelimit/policies/gone").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.delete("/v1/ratelimit/policies/gone").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn locks(s: &Server) {
    let a = s.post("/v1/locks/invoice:1/acquire", json!({"ttl_ms": 5000})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let token = a.body["token"].as_str().unwrap().to_string();
    let fence = a.body["fence"].as_u64().unwrap();
    assert!(a.body["expires_at_ms"].as_u64().unwrap() > 0);
    let busy = s.post("/v1/locks/invoice:1/acquire", json!({"ttl_ms": 5000})).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    // Waiting: the holder releases while the second caller waits.
    let waiter = {
        let (http, url) = (s.http.clone(), format!("{}/v1/locks/invoice:1/acquire", s.base));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"ttl_ms": 5000, "wait_ms": 5000}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    let ext = s
        .post("/v1/locks/invoice:1/extend", json!({"token": token, "ttl_ms": 10000}))
        .await;
    assert_eq!(ext.status, StatusCode::OK);
    let wrong = s
        .post("/v1/locks/invoice:1/extend", json!({"token": "not-the-holder"}))
        .await;
    assert_eq!(wrong.status, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rel = s.post("/v1/locks/invoice:1/release", json!({"token": token})).await;
    assert_eq!(rel.body, json!({"released": true}));
    let (status, second) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(second["fence"].as_u64().unwrap() > fence, "fences increase");
    let again = s.post("/v1/locks/invoice:1/release", json!({"token": token})).await;
    assert_eq!(again.body, json!({"released": false}));
    // A lease that is not renewed ends by itself.
    let short = s.post("/v1/locks/brief/acquire", json!({"ttl_ms": 100})).await;
    assert_eq!(short.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        s.post("/v1/locks/brief/acquire", json!({})).await.status,
        StatusCode::OK
    );
    // Semaphores.
    for _ in 0..2 {
        assert_eq!(
            s.post("/v1/locks/pool/acquire", json!({"permits": 2})).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        s.post("/v1/locks/pool/acquire", json!({"permits": 2})).await.status,
        StatusCode::CONFLICT
    );
}

async fn sessions(s: &Server) {
    let created = s
        .post(
            "/v1/sessions",
            json!({"user": "ada", "data": {"cart": [1, 2]}, "idle_ttl_s": 600}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["idle_ms"], 600_000);
    let got = s.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(got.body["data"], json!({"cart": [1, 2]}));
    let patched = s
        .patch(
            &format!("/v1/sessions/{id}"),
            json!({"data": {"theme": "dark", "cart": null}}),
        )
        .await;
    assert_eq!(patched.body["data"], json!({"theme": "dark"}));
    let rotated = s.post(&format!("/v1/sessions/{id}/rotate"), json!({})).await;
    let new_id = rotated.body["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(s.get(&format!("/v1/sessions/{id}")).await.status, StatusCode::NOT_FOUND);
    // A malformed id names no session either.
    assert_eq!(s.get("/v1/sessions/not%20an%20id").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get(&format!("/v1/sessions/{new_id}")).await.body["data"],
        json!({"theme": "dark"})
    );
    let second = s.post("/v1/sessions", json!({"user": "ada"})).await.body["id"].clone();
    let listed = s.get("/v1/users/ada/sessions").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let deleted = s.delete(&format!("/v1/sessions/{}", second.as_str().unwrap())).await;
    assert_eq!(deleted.body, json!({"deleted": true}));
    s.post("/v1/sessions", json!({"user": "ada"})).await;
    let revoked = s.delete("/v1/users/ada/sessions").await;
    assert_eq!(revoked.body, json!({"revoked": 2}));
    assert_eq!(
        s.get(&format!("/v1/sessions/{new_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = s.post("/v1/sessions", json!({"idle_ttl_s": 0})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.message().contains("idle_ttl"), "{}", bad.message());
}

async fn jobs(s: &Server) {
    let q = "/v1/queues/mail";
    let first = s
        .post(
            &format!("{q}/jobs"),
            json!({"payload": {"to": "ada"}, "id": "welcome-ada", "priority": 5}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body, json!({"id": "welcome-ada", "created": true}));
    let dup = s
        .post(
            &format!("{q}/jobs"),
            json!({"payload": {"to": "ada"}, "id": "welcome-ada"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::OK);
    assert_eq!(dup.body["created"], false);
    let batch = s
        .post(
            &format!("{q}/batch"),
            json!({"jobs": [{"payload": 1}, {"payload": 2}, {"payload": 3, "delay_ms": 60000}]}),
        )
        .await;
    assert_eq!(batch.body.as_array().unwrap().len(), 3);
    let waiting = s.get(&format!("{q}/jobs?state=waiting")).await.body;
    assert_eq!(waiting[0]["id"], "welcome-ada", "highest priority first");
    assert_eq!(waiting.as_array().unwrap().len(), 3);
    assert_eq!(
        s.get(&format!("{q}/jobs?state=delayed"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let fetched = s
        .post(
            &format!("{q}/fetch"),
            json!({"worker": "w1", "max": 2, "lease_ms": 5000}),
        )
        .await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.body);
    let jobs = fetched.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["payload"], json!({"to": "ada"}));
    let (id, token) = (jobs[0]["id"].as_str().unwrap(), jobs[0]["token"].as_str().unwrap());
    let hb = s
        .post(
            &format!("{q}/jobs/{id}/heartbeat"),
            json!({"token": token, "lease_ms": 5000}),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    let pr = s
        .post(
            &format!("{q}/jobs/{id}/progress"),
            json!({"token": token, "progress": {"pct": 50}}),
        )
        .await;
    assert_eq!(pr.status, StatusCode::OK);
    let info = s.get(&format!("{q}/jobs/{id}")).await.body;
    assert_eq!(info["state"], "active");
    assert_eq!(info["worker"], "w1");
    assert_eq!(info["progress"], json!({"pct": 50}));
    let acked = s.post(&format!("{q}/jobs/{id}/ack"), json!({"token": token})).await;
    assert_eq!(acked.body, json!({"outcome": "completed"}));
    let twice = s.post(&format!("{q}/jobs/{id}/ack"), json!({"token": token})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "a settled lease is gone");
    assert_eq!(
        s.post(&format!("{q}/jobs/{id}/heartbeat"), json!({"token": token}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(s.get(&format!("{q}/jobs/{id}")).await.body["state"], "completed");
    assert_eq!(s.get(&format!("{q}/jobs/nope")).await.status, StatusCode::NOT_FOUND);

    let (id2, token2) = (jobs[1]["id"].as_str().unwrap(), jobs[1]["token"].as_str().unwrap());
    let released = s
        .post(&format!("{q}/jobs/{id2}/release"), json!({"token": token2}))
        .await;
    assert_eq!(released.body, json!({"outcome": "released"}));

    // Pause: nothing is handed out; resume: it is.
    let paused = s.post(&format!("{q}/pause"), json!({})).await;
    assert_eq!(paused.body["paused"], true);
    assert_eq!(
        s.post(&format!("{q}/fetch"), json!({"worker": "w1"})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.post(&format!("{q}/resume"), json!({})).await.body["paused"], false);
    let next = s.post(&format!("{q}/fetch"), json!({"worker": "w1", "max": 10})).await;
    assert_eq!(next.body["jobs"].as_array().unwrap().len(), 2);

    // A long poll returns as soon as a job arrives.
    let poll = {
        let (http, url) = (s.http.clone(), format!("{}/v1/queues/late/fetch", s.base));
        tokio::spawn(async move {
            let started = Instant::now();
            let r = http
                .post(url)
                .json(&json!({"worker": "w2", "wait_ms": 10000}))
                .send()
                .await
                .unwrap();
            (r.status(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.post("/v1/queues/late/jobs", json!({"payload": "now"})).await;
    let (status, took) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let empty = s
        .post("/v1/queues/late/fetch", json!({"worker": "w2", "wait_ms": 100}))
        .await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT);

    let stats = s.get(q).await.body;
    assert_eq!(stats["name"], "mail");
    assert_eq!(stats["completed_total"], 1);
    assert_eq!(stats["active"], 2);
    let queues = s.get("/v1/queues").await.body;
    let names: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"mail") && names.contains(&"late"), "{names:?}");
}

async fn dead_jobs(s: &Server) {
    let q = "/v1/queues/risky";
    for i in 0..3 {
        s.post(
            &format!("{q}/jobs"),
            json!({"payload": i, "id": format!("r{i}"), "max_attempts": 1}),
        )
        .await;
    }
    for _ in 0..3 {
        let job = s.post(&format!("{q}/fetch"), json!({"worker": "w"})).await.body["jobs"][0].clone();
        let (id, token) = (job["id"].as_str().unwrap(), job["token"].as_str().unwrap());
        let failed = s
            .post(
                &format!("{q}/jobs/{id}/fail"),
                json!({"token": token, "error": "smtp down"}),
            )
            .await;
        assert_eq!(failed.body, json!({"outcome": "dead"}));
    }
    let dead = s.get(&format!("{q}/dead?limit=10")).await.body;
    assert_eq!(dead.as_array().unwrap().len(), 3);
    assert_eq!(dead[0]["last_error"], "smtp down");
    assert_eq!(
        s.post(&format!("{q}/dead/r0/retry"), json!({})).await.body,
        json!({"count": 1})
    );
    assert_eq!(
        s.post(&format!("{q}/dead/r0/retry"), json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get(&format!("{q}/jobs/r0")).await.body["state"], "waiting");
    assert_eq!(s.delete(&format!("{q}/dead/r1")).await.body, json!({"count": 1}));
    assert_eq!(s.delete(&format!("{q}/dead/r1")).await.status, StatusCode::NOT_FOUND);
    s.post(
        &format!("{q}/jobs"),
        json!({"payload": 9, "id": "r9", "max_attempts": 1}),
    )
    .await;
    assert_eq!(
        s.post(&format!("{q}/dead/retry"), json!({})).await.body,
        json!({"count": 1})
    );
    // r0, r2 and r9 wait; make two of them dead again and purge all.
    for _ in 0..2 {
        let job = s.post(&format!("{q}/fetch"), json!({"worker": "w"})).await.body["jobs"][0].clone();
        let (id, token) = (job["id"].as_str().unwrap(), job["token"].as_str().unwrap());
        s.post(
            &format!("{q}/jobs/{id}/fail"),
            json!({"token": token, "error": "again"}),
        )
        .await;
    }
    assert_eq!(s.delete(&format!("{q}/dead")).await.body, json!({"count": 2}));
}

async fn channels(s: &Server) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // An event stream: its first event says where the channel stands.
    let mut events = s
        .http
        .get(format!("{}/v1/channels/news/events", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let first = events.chunk().await.unwrap().unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("event: subscribed"));
    // A WebSocket subscription.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", s.addr()))
        .await
        .unwrap();
    ws.send(Message::text(r#"{"op": "subscribe", "channel": "news"}"#))
        .await
        .unwrap();
    let subscribed: Value = serde_json::from_str(&ws.next().await.unwrap().unwrap().into_text().unwrap()).unwrap();
    assert_eq!(subscribed["type"], "subscribed");

    let p = s
        .post("/v1/channels/news/publish", json!({"data": {"title": "hi"}}))
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body["offset"], 1);
    let got: Value = serde_json::from_str(&ws.next().await.unwrap().unwrap().into_text().unwrap()).unwrap();
    assert_eq!(got["data"], json!({"title": "hi"}));
    let mut text = String::new();
    while !text.contains("hi") {
        text.push_str(std::str::from_utf8(&events.chunk().await.unwrap().unwrap()).unwrap());
    }
    assert!(
        text.contains(&format!("id: {}:1", p.body["epoch"].as_str().unwrap())),
        "{text}"
    );

    let h = s.get("/v1/channels/news/history?limit=10").await;
    assert_eq!(h.body["publications"][0]["data"], json!({"title": "hi"}));
    let issued = s
        .post("/v1/channels/tokens", json!({"channels": ["news"], "ttl_s": 60}))
        .await;
    let token = issued.body["token"].as_str().unwrap();
    let read = s.get(&format!("/v1/channels/news/history?token={token}")).await;
    assert_eq!(read.body["offset"], 1);
    let listed = s.get("/v1/channels").await;
    assert_eq!(listed.body["channels"][0]["channel"], "news");
    assert_eq!(listed.body["channels"][0]["subscribers"], 2);
}

async fn records(s: &Server) {
    let spec = json!({"indexes": [{"field": "kind", "kind": "equal"}, {"field": "seen", "kind": "range"}],
        "ttl_s": 3600, "redact": [{"field": "*", "action": "scrub"}]});
    let c = s.put("/v1/collections/patterns", spec).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.body["indexes"][0]["state"], "ready");
    for i in 0..5 {
        let w = s
            .put(
                &format!("/v1/records/patterns/p{i}"),
                json!({"data": {"kind": if i < 3 { "a" } else { "b" }, "seen": i, "note": "from a@b.io"}}),
            )
            .await;
        assert_eq!(w.status, StatusCode::OK, "{}", w.body);
        assert_eq!(w.body, json!({"id": format!("p{i}"), "version": 1}));
    }
    let r = s.get("/v1/records/patterns/p1").await;
    assert_eq!(r.body["data"], json!({"kind": "a", "seen": 1, "note": "from [email]"}));
    assert!(r.body["expires_at_ms"].as_u64().unwrap() > redkit::stats::now_ms());
    let conflict = s
        .put(
            "/v1/records/patterns/p1",
            json!({"data": {"kind": "a"}, "if_version": 0}),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    let p = s
        .patch(
            "/v1/records/patterns/p1",
            json!({"data": {"kind": "b"}, "if_version": 1}),
        )
        .await;
    assert_eq!(p.body["version"], 2);
    let inc = s
        .post("/v1/records/patterns/p1/incr", json!({"field": "seen", "by": 10}))
        .await;
    assert_eq!(inc.body, json!({"value": 11, "version": 3}));
    let q = s
        .post(
            "/v1/records/patterns/query",
            json!({"where": {"kind": "b"}, "limit": 2}),
        )
        .await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    let ids: Vec<&str> = q.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p1", "p3"]);
    let next = s
        .post(
            "/v1/records/patterns/query",
            json!({"where": {"kind": "b"}, "limit": 2, "cursor": q.body["cursor"]}),
        )
        .await;
    assert_eq!(next.body["records"][0]["id"], "p4");
    assert_eq!(next.body["cursor"], Value::Null);
    let top = s
        .post(
            "/v1/records/patterns/query",
            json!({"range": {"field": "seen", "min": 2}, "order": "desc", "limit": 1}),
        )
        .await;
    assert_eq!(top.body["records"][0]["id"], "p1");
    let off = s
        .post("/v1/records/patterns/query", json!({"where": {"note": "x"}}))
        .await;
    assert_eq!(off.status, StatusCode::BAD_REQUEST);
    assert!(off.message().contains("where.note"), "{}", off.message());
    let many = s.post("/v1/records/patterns/get", json!({"ids": ["p0", "nope"]})).await;
    assert_eq!(many.body["records"][1], Value::Null);
    assert_eq!(s.delete("/v1/records/patterns/p0").await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/v1/records/patterns/p0").await.status, StatusCode::NOT_FOUND);
    let info = s.get("/v1/collections/patterns").await;
    assert_eq!(info.body["count"], 4);
    let all = s.get("/v1/collections").await;
    assert_eq!(all.body["collections"][0]["name"], "patterns");
    assert_eq!(s.get("/v1/collections/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/v1/records/nope/x").await.status, StatusCode::NOT_FOUND);

    let push = s
        .post(
            "/v1/lists/outcomes/push",
            json!({"items": [1, 2, 3], "cap": 2, "ttl_s": 60}),
        )
        .await;
    assert_eq!(push.body, json!({"length": 2}));
    let list = s.get("/v1/lists/outcomes?limit=10").await;
    assert_eq!(list.body, json!({"items": [3, 2], "length": 2}));
    assert_eq!(s.delete("/v1/lists/outcomes").await.status, StatusCode::NO_CONTENT);

    let inc = s
        .post("/v1/counters/hits/incr", json!({"by": 2, "labels": {"route": "/x"}}))
        .await;
    assert_eq!(inc.body, json!({"minute": 2, "hour": 2, "day": 2}));
    let range = s.get("/v1/counters/hits?granularity=minute").await;
    let buckets = range.body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    assert_eq!(buckets.last().unwrap()["value"], 2);
    let labelled = s
        .get("/v1/counters/hits?granularity=day&labels=%7B%22route%22%3A%22%2Fx%22%7D")
        .await;
    assert_eq!(labelled.body["buckets"].as_array().unwrap().last().unwrap()["value"], 2);
    assert_eq!(
        s.get("/v1/counters/hits/labels").await.body,
        json!({"labels": [{"route": "/x"}]})
    );
    let bad = s.get("/v1/counters/hits?granularity=week").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        s.delete("/v1/collections/patterns").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get("/v1/collections/patterns").await.status, StatusCode::NOT_FOUND);
}

async fn dashboard(s: &Server) {
    let page = s.http.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    for file in ["app.js", "style.css"] {
        let r = s.http.get(format!("{}/dashboard/{file}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{file}");
    }
    assert_eq!(
        s.http
            .get(format!("{}/dashboard/secret.txt", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let me = s.get("/v1/dashboard/me").await;
    assert_eq!(
        me.body["scopes"],
        Value::Null,
        "a server without keys allows everything"
    );
    let mut events = s
        .http
        .get(format!("{}/v1/dashboard/events", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(std::str::from_utf8(&events.chunk().await.unwrap().unwrap()).unwrap());
    }
    assert!(text.starts_with("event: snapshot\ndata: {"), "{text}");
    let snapshot: Value = serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    assert!(
        snapshot["health"]["mode"].is_string() && snapshot["traffic"].as_array().unwrap().len() == 120,
        "{snapshot}"
    );
}
