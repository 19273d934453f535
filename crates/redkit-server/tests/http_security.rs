//! Who may see and change what (issue 15): without keys, only loopback Host names and no
//! cross-origin state changes (item 7); with keys, health details and metrics need the
//! operations scope and `/ready` asks the stores nothing (item 8); session listings give
//! ids only to sessions admins (item 9).

mod common;

use common::{Server, raw_request};
use redkit_server::ServerSettings;
use redkit_server::auth::ApiKey;
use redkit_testkit::RedisServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0123456789";
const OPS: &str = "ops-key-0123456789ab";
const CACHE: &str = "cache-key-0123456789";
const SESSIONS_ADMIN: &str = "sessions-admin-0123456789";
const SESSIONS_READ: &str = "sessions-read-0123456789";
const SESSIONS_WRITE: &str = "sessions-write-0123456789";

fn keyed() -> ServerSettings {
    let key = |label: &str, key: &str, scopes: &[&str]| {
        ApiKey::new(label, key, &scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    };
    ServerSettings {
        keys: vec![
            key("admin", ADMIN, &["*"]),
            key("ops", OPS, &["ops:*:read"]),
            key("cache", CACHE, &["cache:*:admin"]),
            key("sessions-admin", SESSIONS_ADMIN, &["sessions:*:admin"]),
            key("sessions-read", SESSIONS_READ, &["sessions:*:read"]),
            key("sessions-write", SESSIONS_WRITE, &["sessions:*:write"]),
        ],
        ..ServerSettings::default()
    }
}

/// A request with these extra header lines (each ending in CRLF), its `Host` included.
async fn with_headers(s: &Server, method: &str, path: &str, headers: &str) -> common::RawReply {
    let body = if method == "GET" { "" } else { "{}" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_request(s.addr(), request.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_answers_only_loopback_host_names() {
    let s = Server::embedded().await;
    let port = s.addr().port();
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        "[::1]".to_string(),
        format!("[::1]:{port}"),
    ] {
        let r = with_headers(&s, "GET", "/v1/queues", &format!("Host: {host}\r\n")).await;
        assert_eq!(r.status, 200, "Host: {host}: {r:?}");
    }
    for host in [
        "attacker.example".to_string(),
        format!("attacker.example:{port}"),
        "localhost.attacker.example".to_string(),
        "127.0.0.1.nip.io".to_string(),
        format!("10.0.0.7:{port}"),
        format!("[::2]:{port}"),
        "localhost:".to_string() + "x",
    ] {
        let r = with_headers(&s, "GET", "/v1/queues", &format!("Host: {host}\r\n")).await;
        assert_eq!(r.status, 421, "Host: {host}: {r:?}");
        assert_eq!(r.json()["error"]["code"], "misdirected_request", "{r:?}");
        assert!(
            r.json()["error"]["message"].as_str().unwrap().contains("loopback"),
            "{r:?}"
        );
    }
    // A rebound name cannot change anything either.
    let r = with_headers(&s, "POST", "/v1/queues/mail/pause", "Host: attacker.example\r\n").await;
    assert_eq!(r.status, 421);
    assert_eq!(s.get("/v1/queues/mail").await.body["paused"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_refuses_state_changes_from_other_origins() {
    let s = Server::embedded().await;
    let port = s.addr().port();
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    for origin in [
        "http://attacker.example",
        "null",
        &format!("http://localhost:{port}"),
        &format!("http://127.0.0.1:{}", port + 1),
    ] {
        for (method, path) in [
            ("POST", "/v1/queues/mail/pause"),
            ("PUT", "/v1/cache/docs/k"),
            ("PATCH", "/v1/sessions/x"),
            ("DELETE", "/v1/cache/docs/k"),
        ] {
            let r = with_headers(&s, method, path, &format!("{host}Origin: {origin}\r\n")).await;
            assert_eq!(r.status, 403, "{method} {path} from {origin}: {r:?}");
            assert_eq!(r.json()["error"]["code"], "forbidden", "{r:?}");
        }
    }
    assert_eq!(
        s.get("/v1/queues/mail").await.body["paused"],
        false,
        "the pause was refused"
    );
    // Reads from anywhere (the browser does not let the page read the answer), and state
    // changes from the server's own origin (the dashboard) or with no Origin (not a browser).
    let r = with_headers(
        &s,
        "GET",
        "/v1/queues",
        &format!("{host}Origin: http://attacker.example\r\n"),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = with_headers(
        &s,
        "POST",
        "/v1/queues/mail/pause",
        &format!("{host}Origin: http://127.0.0.1:{port}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = with_headers(&s, "POST", "/v1/queues/mail/resume", &host).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_any_host_and_origin_is_served() {
    let s = Server::start(None, keyed()).await;
    let auth = format!("Authorization: Bearer {ADMIN}\r\n");
    let r = with_headers(
        &s,
        "GET",
        "/v1/queues",
        &format!("Host: redkit.internal.example\r\n{auth}"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = with_headers(
        &s,
        "POST",
        "/v1/queues/mail/pause",
        &format!("Host: redkit.internal.example\r\nOrigin: https://app.example\r\n{auth}"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // Without the key, the same requests are refused as ever.
    let r = with_headers(
        &s,
        "POST",
        "/v1/queues/mail/resume",
        "Host: redkit.internal.example\r\n",
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
}

fn fields(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_details_and_metrics_need_the_operations_scope() {
    let s = Server::start(None, keyed()).await;
    s.with_key(CACHE).put("/v1/cache/tenant-a-secrets/k", json!(1)).await;

    let anonymous = s.get("/health").await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(fields(&anonymous.body), ["mode", "status"], "{}", anonymous.body);
    assert_eq!(anonymous.body["mode"], "embedded");
    assert_eq!(anonymous.body["status"], "ok");
    let tenant = s.with_key(CACHE).get("/health").await;
    assert_eq!(
        fields(&tenant.body),
        ["mode", "status"],
        "a key without ops: {}",
        tenant.body
    );
    for key in [OPS, ADMIN] {
        let full = s.with_key(key).get("/health").await;
        assert_eq!(full.status, StatusCode::OK);
        assert!(full.body["embedded"]["path"].is_string(), "{}", full.body);
        assert!(full.body["capabilities"].is_array(), "{}", full.body);
    }
    assert!(!anonymous.body.to_string().contains("tenant-a-secrets"));
    assert_eq!(
        s.with_key("not-a-key-at-all-000").get("/health").await.status,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(s.get("/metrics").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.with_key(CACHE).get("/metrics").await.status, StatusCode::FORBIDDEN);
    let metrics = s.with_key(OPS).get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.body.as_str().unwrap().contains("redkit_http_requests_total"));

    let ready = s.get("/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body, json!({"status": "ready", "mode": "embedded"}));
}

/// Calls of a command in Redis's `INFO commandstats` (`info`, `config|get`, …).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.command(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_asks_redis_nothing() {
    let redis = RedisServer::start();
    let s = Server::on_redis(&redis.url()).await;
    let (info, config) = (calls(&redis, "info"), calls(&redis, "config|get"));
    for _ in 0..20 {
        let r = s.get("/ready").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, json!({"status": "ready", "mode": "redis"}));
    }
    // (The first INFO above counts itself in the second.)
    let info_calls = calls(&redis, "info") - info;
    let config_calls = calls(&redis, "config|get") - config;
    assert!(
        info_calls <= 2 && config_calls == 0,
        "20 /ready sent {info_calls} INFO and {config_calls} CONFIG GET to Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_listings_give_ids_only_to_sessions_admins() {
    let s = Server::start(None, keyed()).await;
    let admin = s.with_key(SESSIONS_ADMIN);
    let mut ids = Vec::new();
    for i in 0..2 {
        let r = admin
            .post(
                "/v1/sessions",
                json!({"user": "ada", "data": {"csrf": format!("secret-{i}")}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    for key in [SESSIONS_READ, SESSIONS_WRITE] {
        let listed = s.with_key(key).get("/v1/users/ada/sessions").await;
        assert_eq!(listed.status, StatusCode::OK);
        let sessions = listed.body.as_array().unwrap();
        assert_eq!(sessions.len(), 2);
        for session in sessions {
            assert!(session.get("id").is_none(), "{key} sees an id: {session}");
            assert!(session.get("data").is_none(), "{key} sees the data: {session}");
            assert_eq!(session["user"], "ada");
            assert!(session["created_ms"].as_u64().is_some() && session["expires_ms"].as_u64().is_some());
        }
        for id in &ids {
            assert!(!listed.body.to_string().contains(id.as_str()));
        }
    }
    let listed = admin.get("/v1/users/ada/sessions").await.body;
    let mut seen: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    assert!(listed[0]["data"]["csrf"].is_string());
}
