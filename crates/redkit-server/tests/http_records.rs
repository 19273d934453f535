//! Records over HTTP: scopes per collection, list and counter; bad input named; and
//! `redkit import` loading a JSON Lines file into a running server.

mod common;

use std::process::Command;

use common::Server;
use redkit_server::ServerSettings;
use redkit_server::auth::ApiKey;
use reqwest::StatusCode;
use serde_json::json;

fn key(name: &str, key: &str, scopes: &[&str]) -> ApiKey {
    ApiKey::new(name, key, &scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_cover_each_collection_list_and_counter() {
    let settings = ServerSettings {
        keys: vec![
            key("admin", "admin-key-0123456789", &["*"]),
            key(
                "reader",
                "reader-key-0123456789",
                &["records:patterns:read", "lists:feed:read", "counters:hits:read"],
            ),
            key(
                "writer",
                "writer-key-0123456789",
                &["records:patterns:write", "lists:feed:write", "counters:hits:write"],
            ),
        ],
        ..ServerSettings::default()
    };
    let s = Server::start(None, settings).await;
    let (admin, reader, writer) = (
        s.with_key("admin-key-0123456789"),
        s.with_key("reader-key-0123456789"),
        s.with_key("writer-key-0123456789"),
    );
    for c in ["patterns", "secret"] {
        assert_eq!(
            admin.put(&format!("/v1/collections/{c}"), json!({})).await.status,
            StatusCode::OK
        );
    }
    let denied = writer.put("/v1/collections/patterns", json!({})).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "defining needs admin");
    assert_eq!(
        writer
            .put("/v1/records/patterns/a", json!({"data": {"x": 1}}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        reader
            .put("/v1/records/patterns/a", json!({"data": {"x": 2}}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(reader.get("/v1/records/patterns/a").await.body["data"], json!({"x": 1}));
    assert_eq!(reader.get("/v1/records/secret/a").await.status, StatusCode::FORBIDDEN);
    let listed = reader.get("/v1/collections").await;
    let names: Vec<&str> = listed.body["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["patterns"], "a key lists only what it may read");
    assert_eq!(
        writer
            .post("/v1/lists/feed/push", json!({"items": [1], "cap": 5}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        writer
            .post("/v1/lists/other/push", json!({"items": [1], "cap": 5}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        reader
            .post("/v1/lists/feed/push", json!({"items": [1], "cap": 5}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(reader.get("/v1/lists/feed").await.body["length"], 1);
    assert_eq!(
        writer.post("/v1/counters/hits/incr", json!({})).await.status,
        StatusCode::OK
    );
    assert_eq!(
        reader.post("/v1/counters/hits/incr", json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(reader.get("/v1/counters/other").await.status, StatusCode::FORBIDDEN);
    // The dashboard learns what a key may do; without a key it is asked for one.
    let me = reader.get("/v1/dashboard/me").await;
    assert_eq!(me.body["label"], "reader");
    assert_eq!(
        me.body["scopes"][0],
        json!({"area": "records", "name": "patterns", "prefix": false, "access": "read"})
    );
    let anonymous = s.get("/v1/dashboard/me").await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(
        anonymous.body,
        json!({"keys_required": true, "label": null, "scopes": []})
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_changes_nothing() {
    let s = Server::embedded().await;
    let bad_specs = [
        (
            json!({"indexes": [{"field": "$x", "kind": "equal"}]}),
            "indexes[0].field",
        ),
        (json!({"indexes": [{"field": "a", "kind": "fuzzy"}]}), "kind"),
        (json!({"ttl_s": 999_999_999_999u64}), "ttl_s"),
        (json!({"max_bytes": 1}), "max_bytes"),
        (json!({"redact": [{"field": "*", "action": "drop"}]}), "redact[0].field"),
        (json!({"redact": [{"field": "e", "action": "hash"}]}), "redaction key"),
        (json!({"nope": 1}), "nope"),
    ];
    for (spec, named) in bad_specs {
        let r = s.put("/v1/collections/c", spec.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{spec}");
        assert!(r.message().contains(named), "{spec}: {}", r.message());
    }
    assert_eq!(
        s.put("/v1/collections/bad name", json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
    s.put(
        "/v1/collections/c",
        json!({"indexes": [{"field": "n", "kind": "range"}], "max_bytes": 100}),
    )
    .await;
    s.put("/v1/records/c/a", json!({"data": {"n": 1}})).await;
    let bad_writes = [
        (json!({"data": {"n": "one"}}), "data.n", StatusCode::BAD_REQUEST),
        (json!({"data": {"$v": 1}}), "data.$v", StatusCode::BAD_REQUEST),
        (json!({"data": {"x": null}}), "data.x", StatusCode::BAD_REQUEST),
        (
            json!({"data": {"x": "y".repeat(200)}}),
            "data",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (json!({"data": [1]}), "data", StatusCode::BAD_REQUEST),
        (
            json!({"data": {}, "if_version": -1}),
            "if_version",
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, named, status) in bad_writes {
        let r = s.put("/v1/records/c/a", body.clone()).await;
        assert_eq!(r.status, status, "{body}");
        assert!(r.message().contains(named), "{body}: {}", r.message());
    }
    assert_eq!(
        s.get("/v1/records/c/a").await.body["data"],
        json!({"n": 1}),
        "nothing stored was damaged"
    );
    assert_eq!(s.get("/v1/records/c/a").await.body["version"], 1);
    let q = s
        .post(
            "/v1/records/c/query",
            json!({"range": {"field": "n", "min": 2, "max": 1}}),
        )
        .await;
    assert!(q.message().contains("range"), "{}", q.message());
    let q = s.post("/v1/records/c/query", json!({"cursor": "garbage"})).await;
    assert!(q.message().contains("cursor"), "{}", q.message());
    let q = s.post("/v1/records/c/query", json!({"limit": 5000})).await;
    assert!(q.message().contains("limit"), "{}", q.message());
    let l = s.post("/v1/lists/l/push", json!({"items": [], "cap": 1})).await;
    assert!(l.message().contains("items"), "{}", l.message());
    let l = s
        .post("/v1/lists/l/push", json!({"items": [1], "cap": 1_000_000}))
        .await;
    assert!(l.message().contains("cap"), "{}", l.message());
    let c = s.post("/v1/counters/h/incr", json!({"labels": {"k": ""}})).await;
    assert!(c.message().contains("labels"), "{}", c.message());
    let c = s.get("/v1/counters/h?labels=notjson").await;
    assert!(c.message().contains("labels"), "{}", c.message());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redkit_import_loads_a_json_lines_file_and_names_a_bad_line() {
    let s = Server::embedded().await;
    s.put(
        "/v1/collections/patterns",
        json!({"indexes": [{"field": "kind", "kind": "equal"}]}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("patterns.jsonl");
    let mut lines: Vec<String> = (0..500)
        .map(|i| json!({"pk": i, "kind": if i % 2 == 0 { "even" } else { "odd" }}).to_string())
        .collect();
    lines.insert(10, String::new());
    std::fs::write(&file, lines.join("\n")).unwrap();
    let run = |file: &std::path::Path| {
        let base = s.base.clone();
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_redkit"))
                .args(["import", "--url", &base, "--id-field", "pk", "patterns"])
                .arg(file)
                .output()
                .unwrap()
        })
    };
    let out = run(&file).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 500 records"));
    assert_eq!(s.get("/v1/collections/patterns").await.body["count"], 500);
    assert_eq!(
        s.get("/v1/records/patterns/7").await.body["data"],
        json!({"pk": 7, "kind": "odd"})
    );
    let odd = s
        .post(
            "/v1/records/patterns/query",
            json!({"where": {"kind": "odd"}, "limit": 1000}),
        )
        .await;
    assert_eq!(odd.body["records"].as_array().unwrap().len(), 250);

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"pk\": \"x1\", \"kind\": \"a\"}\n{\"kind\": \"no id\"}\n").unwrap();
    let out = run(&bad).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("--id-field"), "{err}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_named_get_and_query_are_reachable_and_patches_keep_the_size_limit() {
    let redis = redkit_testkit::RedisServer::start();
    for s in [Server::embedded().await, Server::on_redis(&redis.url()).await] {
        s.put("/v1/collections/c", json!({"max_bytes": 200})).await;
        for id in ["get", "query"] {
            let path = format!("/v1/records/c/{id}");
            assert_eq!(
                s.put(&path, json!({"data": {"x": 1}})).await.status,
                StatusCode::OK,
                "{id}"
            );
            assert_eq!(s.get(&path).await.body["data"], json!({"x": 1}), "{id}");
            assert_eq!(
                s.patch(&path, json!({"data": {"y": 2}})).await.body["version"],
                2,
                "{id}"
            );
            assert_eq!(s.delete(&path).await.status, StatusCode::NO_CONTENT, "{id}");
            assert_eq!(s.get(&path).await.status, StatusCode::NOT_FOUND, "{id}");
        }
        s.put("/v1/records/c/a", json!({"data": {"x": "y".repeat(100)}})).await;
        let r = s
            .patch("/v1/records/c/a", json!({"data": {"more": "z".repeat(150)}}))
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
        assert!(r.message().contains("200"), "{}", r.message());
        let kept = s.get("/v1/records/c/a").await;
        assert_eq!(
            (kept.body["version"].as_u64(), kept.body["data"].get("more")),
            (Some(1), None)
        );
        let r = s
            .patch("/v1/records/c/a", json!({"data": {"x": null, "more": "z".repeat(150)}}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "a patch that also removes stays within the limit: {}",
            r.body
        );
        s.shutdown().await;
    }
}
