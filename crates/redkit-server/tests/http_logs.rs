//! What the server writes to its log: no session ids (issue 15 item 9), no error line
//! per request answered 503 during an outage while genuine 500s stay errors with their
//! request id (item 21), and access-log lines as `server.access_log` asks (issue 20). The log of this process is captured whole; each test looks only
//! at lines of its own requests (by request id) or for its own secrets.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Server, eventually};
use redkit_server::ServerSettings;
use redkit_server::front::AccessLog;
use redkit_testkit::RedisServer;
use reqwest::StatusCode;
use serde_json::json;

#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing this process's log (at the server's default level, info) and
/// returns what was captured so far each time.
fn logs() -> String {
    static BUF: OnceLock<Captured> = OnceLock::new();
    let buf = BUF.get_or_init(|| {
        let buf = Captured(Arc::new(Mutex::new(Vec::new())));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    });
    String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_never_reach_the_log() {
    logs();
    let settings = ServerSettings {
        access_log: AccessLog::All,
        ..ServerSettings::default()
    };
    let s = Server::start(None, settings).await;
    let created = s.post("/v1/sessions", json!({"user": "ada", "data": {"a": 1}})).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.get(&format!("/v1/sessions/{id}")).await.status, StatusCode::OK);
    s.patch(&format!("/v1/sessions/{id}"), json!({"data": {"b": 2}})).await;
    let rotated = s.post(&format!("/v1/sessions/{id}/rotate"), json!({})).await;
    let new_id = rotated.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.get(&format!("/v1/sessions/{id}")).await.status, StatusCode::NOT_FOUND);
    // A mistyped route still carries the id in its path.
    assert_eq!(
        s.get(&format!("/v1/sessions/{new_id}/nothing")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get("/v1/users/ada/sessions").await.status, StatusCode::OK);
    assert_eq!(s.delete(&format!("/v1/sessions/{new_id}")).await.status, StatusCode::OK);

    let log = logs();
    assert!(
        log.lines().filter(|l| l.contains("/v1/sessions/")).count() >= 6,
        "session requests are logged (with their ids redacted):\n{log}"
    );
    for secret in [&id, &new_id] {
        assert!(!log.contains(secret.as_str()), "session id {secret} in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_not_an_error_line_per_request_but_a_500_is() {
    logs();
    let mut redis = RedisServer::start();
    let s = Server::on_redis(&redis.url()).await;
    redis.kill();
    eventually(Duration::from_secs(5), "fallback", async || {
        s.get("/health").await.body["mode"] == "fallback"
    })
    .await;
    for i in 0..50 {
        let r = s
            .http
            .post(format!("{}/v1/locks/critical/acquire", s.base))
            .header("x-request-id", format!("outage-{i}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "locks fail closed");
    }
    let log = logs();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("outage-"))
        .collect();
    assert!(
        errors.is_empty(),
        "{} error lines for 503s, e.g. {:?}",
        errors.len(),
        errors.first()
    );
    // The warning's own words: a bare "503" also matches timestamps (`…09.575031Z`).
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("answered 503"))
        .count();
    assert!(warnings <= 1, "{warnings} warnings about 503s in one burst:\n{log}");

    // A genuine 500 (Redis refuses redkit's script): an error line with its request id and
    // what Redis said.
    redis.restart();
    eventually(Duration::from_secs(10), "back to redis", async || {
        s.get("/health").await.body["mode"] == "redis"
    })
    .await;
    let session = s.post("/v1/sessions", json!({"user": "bo"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let keys = redis.command(&["KEYS", &format!("*{session}*")]).unwrap();
    let key = keys
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no key holds session {session}"));
    redis.command(&["DEL", key]).unwrap();
    redis.command(&["SET", key, "not a hash"]).unwrap();
    let r = s
        .http
        .get(format!("{}/v1/sessions/{session}", s.base))
        .header("x-request-id", "genuine-500")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let log = logs();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("genuine-500") && l.contains("WRONGTYPE")),
        "no error line with the request id and Redis's reply:\n{log}"
    );
}

/// The access-log lines of the requests whose ids start with `prefix`.
fn access_lines(prefix: &str) -> Vec<String> {
    logs()
        .lines()
        .filter(|l| l.contains("redkit_server::access") && l.contains(prefix))
        .map(str::to_string)
        .collect()
}

async fn send(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    id: &str,
) -> StatusCode {
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.base))
        .header("x-request-id", id);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_access_log_has_failures_not_routine_answers() {
    logs();
    assert_eq!(ServerSettings::default().access_log, AccessLog::Errors);
    let s = Server::embedded().await;
    s.put(
        "/v1/ratelimit/policies/one",
        json!({"algorithm": "fixed_window", "limit": 1, "period_ms": 60000}),
    )
    .await;
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    let check = "/v1/ratelimit/one/check";
    let key = || Some(json!({"key": "k"}));
    for (method, path, body, id, status) in [
        (get.clone(), "/ready", None, "quiet-ok", StatusCode::OK),
        (
            get.clone(),
            "/v1/cache/ns/absent",
            None,
            "quiet-miss",
            StatusCode::NOT_FOUND,
        ),
        (post.clone(), check, key(), "quiet-allowed", StatusCode::OK),
        (
            post.clone(),
            check,
            key(),
            "quiet-refused",
            StatusCode::TOO_MANY_REQUESTS,
        ),
        (
            post.clone(),
            check,
            Some(json!({"key": "k", "cost": "many"})),
            "loud-invalid",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::DELETE,
            "/ready",
            None,
            "loud-method",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        assert_eq!(send(&s, method, path, body, id).await, status, "{id}");
    }
    eventually(Duration::from_secs(5), "the failures' access lines", async || {
        access_lines("loud-").len() == 2
    })
    .await;
    let quiet = access_lines("quiet-");
    assert!(quiet.is_empty(), "routine answers logged: {quiet:?}");
    let line = &access_lines("loud-invalid")[0];
    assert!(
        line.contains("status=400") && line.contains("POST") && line.contains("latency_ms"),
        "{line}"
    );
}
