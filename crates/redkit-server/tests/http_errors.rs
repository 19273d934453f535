//! Error responses (issue 15 item 12): every error is the JSON envelope, whoever answers it
//! (the router, hyper, a handler); 5xx bodies carry no internals, only the request id (the
//! internals go to the log); a bad cursor is a 400; too many tags are refused.

mod common;

use common::{Server, raw_request, read_response};
use redkit_server::ServerSettings;
use redkit_testkit::RedisServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

fn assert_envelope(what: &str, status: u16, reply: &common::RawReply, code: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}: {reply:?}"
    );
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_the_json_envelope() {
    let s = Server::start(
        None,
        ServerSettings {
            max_body_bytes: 4096,
            ..ServerSettings::default()
        },
    )
    .await;
    let addr = s.addr();

    let r = raw_request(addr, b"GET /v1/nothing HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_envelope("unknown route", 404, &r, "not_found");
    let r = raw_request(addr, b"GET /nothing/at/all HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_envelope("unknown route outside /v1", 404, &r, "not_found");

    let r = raw_request(
        addr,
        b"DELETE /v1/queues/mail/fetch HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_envelope("wrong method", 405, &r, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"), "405 keeps its Allow header");
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("allowed: POST"), "the message names the methods: {body}");
    let r = raw_request(
        addr,
        b"POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_envelope("wrong method on an operations route", 405, &r, "method_not_allowed");

    let big = format!(
        "PUT /v1/cache/docs/big HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n\"{}\"",
        "x".repeat(4998)
    );
    let r = raw_request(addr, big.as_bytes()).await;
    assert_envelope("body over the limit", 413, &r, "too_large");

    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nCookie: {}\r\n\r\n",
        "c".repeat(70 * 1024)
    );
    let r = raw_request(addr, huge_header.as_bytes()).await;
    assert_envelope("a 70 KiB header", 431, &r, "too_large");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw_request(
        addr,
        format!("GET /health HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_envelope("150 headers", 431, &r, "too_large");
    let r = raw_request(addr, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert_envelope("not HTTP at all", 400, &r, "invalid_input");
    // The same on a keep-alive connection that has served a request before.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut c).await.unwrap().status, 200);
    c.write_all(huge_header.as_bytes()).await.unwrap();
    let r = read_response(&mut c).await.expect("answered");
    assert_envelope("a 70 KiB header on a used connection", 431, &r, "too_large");

    // And the server is none the worse.
    assert_eq!(s.get("/health").await.status, StatusCode::OK);
}

/// The message of a 5xx body must say nothing of how redkit works inside.
fn assert_no_internals(body: &Value, request_id: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{body}"));
    for leak in [
        "WRONGTYPE",
        "script",
        "@user_script",
        "session_get",
        "cache_set",
        "within",
        "os error",
        "rk:",
    ] {
        assert!(!message.contains(leak), "{leak:?} leaked into {message:?}");
    }
    assert!(
        message.contains(&format!("request id {request_id}")),
        "{message:?} should give the request id {request_id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_carry_the_request_id_not_internals() {
    let mut redis = RedisServer::start();
    let s = Server::on_redis(&redis.url()).await;
    let id = s.post("/v1/sessions", json!({"user": "ada"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Damage the session where it lives, so that Redis refuses redkit's script (WRONGTYPE):
    // a genuine 500, whose text names the script's SHA.
    let keys = redis.command(&["KEYS", &format!("*{id}*")]).unwrap();
    let key = keys
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no key holds session {id}"));
    redis.command(&["DEL", key]).unwrap();
    redis.command(&["SET", key, "not a hash"]).unwrap();
    let r = s
        .http
        .get(format!("{}/v1/sessions/{id}", s.base))
        .header("x-request-id", "req-500-check")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal");
    assert_no_internals(&body, "req-500-check");

    // A write Redis may have run (it stopped answering): 503, saying it may or may not
    // have taken effect, without Redis's or redkit's words for it.
    redis.freeze();
    let r = s
        .http
        .put(format!("{}/v1/cache/docs/d1", s.base))
        .header("x-request-id", "req-503-check")
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    redis.thaw();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert_no_internals(&body, "req-503-check");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may or may not have taken effect"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_is_not_one_is_a_400_naming_it() {
    let redis = RedisServer::start();
    let s = Server::on_redis(&redis.url()).await;
    s.put("/v1/cache/docs/a", json!(1)).await;
    let r = s.get("/v1/cache/keys?ns=docs&cursor=notanumber").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("cursor"), "{}", r.message());
    // A cursor the listing returned still works.
    let page = s.get("/v1/cache/keys?ns=docs&limit=1").await;
    assert_eq!(page.status, StatusCode::OK);
    if let Some(next) = page.body["next_cursor"].as_str() {
        let r = s.get(&format!("/v1/cache/keys?ns=docs&cursor={next}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_tags_are_refused_naming_the_limit() {
    let s = Server::embedded().await;
    let tags = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    let r = s
        .post(
            "/v1/cache/warm",
            json!({"ns": "docs", "entries": [{"key": "k", "value": 1, "tags": tags(65_537)}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.message().contains("tags") && r.message().contains("64"),
        "{}",
        r.message()
    );
    let r = s
        .put(&format!("/v1/cache/docs/k?tags={}", tags(65).join(",")), json!(1))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.message().contains("tags") && r.message().contains("64"),
        "{}",
        r.message()
    );
    let r = s
        .put(&format!("/v1/cache/docs/k?tags={}", tags(64).join(",")), json!(1))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(s.get("/v1/cache/docs/k").await.body, json!(1));
    // A warm with one entry over the limit stores none of them, and names the entry.
    let r = s
        .post(
            "/v1/cache/warm",
            json!({"ns": "docs", "entries": [
                {"key": "w0", "value": 0},
                {"key": "w1", "value": 1, "tags": tags(65)},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.message().contains("entries[1]") && r.message().contains("64"),
        "{}",
        r.message()
    );
    assert_eq!(s.get("/v1/cache/docs/w0").await.status, StatusCode::NOT_FOUND);
}
