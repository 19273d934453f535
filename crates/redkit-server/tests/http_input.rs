//! API keys and scopes; bad input of every kind gets a 4xx naming the field or limit, and
//! nothing already stored is damaged.

mod common;

use common::Server;
use redkit_server::ServerSettings;
use redkit_server::auth::ApiKey;
use reqwest::{Method, StatusCode};
use serde_json::json;

const ADMIN: &str = "admin-key-0123456789";
const READER: &str = "reader-key-0123456789";
const MAILER: &str = "mailer-key-0123456789";

fn keyed() -> ServerSettings {
    let key = |label: &str, key: &str, scopes: &[&str]| {
        ApiKey::new(label, key, &scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    };
    ServerSettings {
        keys: vec![
            key("admin", ADMIN, &["*"]),
            key("reader", READER, &["cache:users:read", "queues:*:read"]),
            key("mailer", MAILER, &["queues:mail-*:write", "ratelimit:api:write"]),
        ],
        ..ServerSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_scopes() {
    let s = Server::start(None, keyed()).await;
    // Probes carry no key: /health and /ready stay open (/health without its details);
    // metrics need the ops scope (tests/http_security.rs).
    assert_eq!(s.get("/health").await.status, StatusCode::OK);
    assert_eq!(s.get("/ready").await.status, StatusCode::OK);
    assert_eq!(s.get("/metrics").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.with_key(ADMIN).get("/metrics").await.status, StatusCode::OK);

    let missing = s.get("/v1/cache/users/u1").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body["error"]["code"], "unauthorized");
    assert!(missing.header("www-authenticate").starts_with("Bearer"));
    let unknown = s.with_key("not-a-key-at-all-000").get("/v1/cache/users/u1").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.message().contains("unknown API key"));
    let basic = s
        .http
        .get(format!("{}/v1/cache/users/u1", s.base))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let admin = s.with_key(ADMIN);
    let reader = s.with_key(READER);
    let mailer = s.with_key(MAILER);
    assert_eq!(
        admin.put("/v1/cache/users/u1", json!(1)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(reader.get("/v1/cache/users/u1").await.status, StatusCode::OK);
    let write = reader.put("/v1/cache/users/u1", json!(2)).await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert_eq!(write.body["error"]["code"], "forbidden");
    assert!(write.message().contains("cache:users:write"), "{}", write.message());
    assert_eq!(reader.get("/v1/cache/orders/o1").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        admin.get("/v1/cache/users/u1").await.body,
        json!(1),
        "the refused write changed nothing"
    );

    // Prefix scopes, and write that includes read but not admin.
    assert_eq!(
        mailer
            .post("/v1/queues/mail-eu/jobs", json!({"payload": 1}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        mailer.post("/v1/queues/sms/jobs", json!({"payload": 1})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(mailer.get("/v1/queues/mail-eu").await.status, StatusCode::OK);
    assert_eq!(
        mailer.post("/v1/queues/mail-eu/pause", json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin.post("/v1/queues/sms/jobs", json!({"payload": 1})).await.status,
        StatusCode::CREATED
    );
    // Listings show only what the key may read.
    let seen: Vec<String> = mailer
        .get("/v1/queues")
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ["mail-eu"]);
    assert_eq!(reader.get("/v1/queues").await.body.as_array().unwrap().len(), 2);
    // Defining a policy needs admin; checking needs write.
    let define = json!({"limit": 10, "period_ms": 1000});
    assert_eq!(
        mailer.put("/v1/ratelimit/policies/api", define.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin.put("/v1/ratelimit/policies/api", define).await.status,
        StatusCode::OK
    );
    assert_eq!(
        mailer.post("/v1/ratelimit/api/check", json!({"key": "k"})).await.status,
        StatusCode::OK
    );
    assert_eq!(
        reader.post("/v1/ratelimit/api/check", json!({"key": "k"})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        mailer.post("/v1/locks/x/acquire", json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        mailer.post("/v1/sessions", json!({})).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_naming_the_field_or_limit() {
    let s = Server::start(
        None,
        ServerSettings {
            max_body_bytes: 128 * 1024,
            ..ServerSettings::default()
        },
    )
    .await;
    s.put("/v1/cache/users/keep", json!({"v": 1})).await;
    s.post("/v1/queues/mail/jobs", json!({"payload": "keep", "id": "keep"}))
        .await;

    let raw = |method: Method, path: &str, ctype: Option<&str>, body: Vec<u8>| {
        let mut req = s.http.request(method, format!("{}{path}", s.base)).body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
            (status, body)
        }
    };
    let json_ct = Some("application/json");
    // (method, path, content type, body, expected status, what the message must name)
    type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/locks/a/acquire",
            json_ct,
            b"{\"ttl_ms\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            Method::POST,
            "/v1/locks/a/acquire",
            json_ct,
            br#"{"ttl_ms":"soon"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "ttl_ms",
        ),
        (
            Method::POST,
            "/v1/locks/a/acquire",
            json_ct,
            br#"{"ttl_ms":-5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "ttl_ms",
        ),
        (
            Method::POST,
            "/v1/locks/a/acquire",
            json_ct,
            br#"{"ttl_ms":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            Method::POST,
            "/v1/locks/a/acquire",
            json_ct,
            br#"{"tll_ms":100}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "tll_ms",
        ),
        (
            Method::POST,
            "/v1/locks/a/acquire",
            json_ct,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "expected struct",
        ),
        (
            Method::POST,
            "/v1/locks/a/acquire",
            None,
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            Method::POST,
            "/v1/queues/mail/jobs",
            json_ct,
            br#"{"payload":1,"priority":5000}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "priority",
        ),
        (
            Method::POST,
            "/v1/queues/mail/jobs",
            json_ct,
            br#"{"payload":1,"max_attempts":0}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "max_attempts",
        ),
        (
            Method::POST,
            "/v1/queues/mail/jobs",
            json_ct,
            br#"{"priority":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "payload",
        ),
        (
            Method::POST,
            "/v1/queues/bad%20name/jobs",
            json_ct,
            br#"{"payload":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "queue",
        ),
        (
            Method::POST,
            "/v1/queues/mail/fetch",
            json_ct,
            br#"{"worker":"w","wait_ms":600000}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "wait_ms",
        ),
        (
            Method::POST,
            "/v1/queues/mail/fetch",
            json_ct,
            br#"{"worker":"w","lease_ms":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "lease",
        ),
        (
            Method::POST,
            "/v1/queues/mail/fetch",
            json_ct,
            br#"{"worker":""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "worker",
        ),
        (
            Method::POST,
            "/v1/queues/mail/jobs/keep/ack",
            json_ct,
            br#"{"token":"forged"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "token",
        ),
        (
            Method::PUT,
            "/v1/cache/users/k?ttl_s=-1",
            json_ct,
            b"1".to_vec(),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            Method::PUT,
            "/v1/cache/users/k?ttl_s=soon",
            json_ct,
            b"1".to_vec(),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            Method::PUT,
            "/v1/cache/users/k?colour=red",
            json_ct,
            b"1".to_vec(),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            Method::PUT,
            "/v1/cache/users/k",
            json_ct,
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            Method::PUT,
            "/v1/cache/bad%20ns/k",
            json_ct,
            b"1".to_vec(),
            StatusCode::BAD_REQUEST,
            "namespace",
        ),
        (
            Method::GET,
            "/v1/cache/keys?ns=users&limit=0",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Method::GET,
            "/v1/cache/keys?ns=users&limit=many",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Method::GET,
            "/v1/cache/keys",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "ns",
        ),
        (
            Method::GET,
            "/v1/queues/mail/jobs?state=lost",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "state",
        ),
        (
            Method::POST,
            "/v1/sessions",
            json_ct,
            br#"{"data":[1]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "data",
        ),
        (
            Method::POST,
            "/v1/sessions",
            json_ct,
            br#"{"idle_ttl_s":60,"absolute_ttl_s":30}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "absolute_ttl",
        ),
        (
            Method::PUT,
            "/v1/ratelimit/policies/p",
            json_ct,
            br#"{"limit":1,"period_ms":1000,"algorithm":"magic"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "algorithm",
        ),
        (
            Method::POST,
            "/v1/cache/warm",
            json_ct,
            br#"{"ns":"users","entries":[{"key":"a","value":1},{"key":"b","value":2,"ttl_s":0}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "entries[1]",
        ),
    ];
    for (method, path, ctype, body, status, names) in cases {
        let (got, reply) = raw(method.clone(), path, ctype, body).await;
        let message = reply["error"]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(got, status, "{method} {path}: {reply}");
        assert!(
            message.contains(names),
            "{method} {path}: {message:?} should name {names:?}"
        );
    }

    // Oversized: the body limit (413 naming it), a key over the key limit, a session over its size.
    let big = vec![b'1'; 140 * 1024];
    let (status, reply) = raw(Method::PUT, "/v1/cache/users/big", json_ct, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("131072 bytes"),
        "{reply}"
    );
    let long_key = "k".repeat(2000);
    let r = s.put(&format!("/v1/cache/users/{long_key}"), json!(1)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.message().contains("key"));
    let fat = json!({"data": {"blob": "x".repeat(70_000)}});
    let r = s.post("/v1/sessions", fat).await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "a session over its 64 KiB limit"
    );
    assert!(
        r.message().contains("session") && r.message().contains("65536"),
        "{}",
        r.message()
    );
    // Unknown routes and methods.
    assert_eq!(s.get("/v1/nothing").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.delete("/v1/queues/mail/fetch").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // Nothing stored was damaged.
    assert_eq!(s.get("/v1/cache/users/keep").await.body, json!({"v": 1}));
    assert_eq!(s.get("/v1/cache/users/k").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/v1/queues/mail/jobs/keep").await.body["payload"], "keep");
    assert_eq!(s.get("/v1/queues/mail").await.body["waiting"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_unknown_names_creates_nothing_and_locks_no_one_out() {
    let s = Server::embedded().await;
    // One tenant reads more namespaces than the old cap (10,000) and queues that do not exist.
    for i in 0..10_050 {
        assert_eq!(
            s.get(&format!("/v1/cache/junk{i}/k")).await.status,
            StatusCode::NOT_FOUND
        );
    }
    for i in 0..200 {
        assert_eq!(s.get(&format!("/v1/queues/ghost{i}")).await.status, StatusCode::OK);
    }
    let stats = s.get("/v1/cache/stats").await.body;
    assert!(
        stats["namespaces"].as_array().unwrap().is_empty(),
        "reads of unknown namespaces keep nothing: {stats}"
    );
    let queues = s.get("/v1/queues").await.body.to_string();
    assert!(
        !queues.contains("ghost"),
        "reads of unknown queues create nothing: {queues}"
    );
    // Every other tenant can still write a new namespace.
    assert_eq!(
        s.put("/v1/cache/fresh/k", json!(1)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get("/v1/cache/fresh/k").await.body, json!(1));
}
