//! Sessions on Redis, in SQLite, and in SQLite as the fallback with one suite; concurrent field updates; timeouts;
//! an outage with write-back; the signed-cookie layer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{config, eventually};
use redkit::session::SessionOptions;
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::RedisServer;
use serde_json::{Map, Value, json};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn suite(redkit: &Redkit) {
    let sessions = redkit.sessions(SessionOptions::default()).unwrap();
    let s = sessions
        .create(obj(json!({"cart": [1, 2], "theme": "light"})), Some("alice"))
        .await
        .unwrap();
    assert!(
        s.id.len() >= 43
            && s.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let got = sessions.get(&s.id).await.unwrap().unwrap();
    assert_eq!(got.data, s.data);
    assert_eq!(got.user.as_deref(), Some("alice"));

    let updated = sessions
        .update(&s.id, obj(json!({"theme": "dark", "cart": null, "lang": "fi"})))
        .await
        .unwrap();
    assert_eq!(Value::Object(updated.data), json!({"theme": "dark", "lang": "fi"}));
    let extended = sessions.extend(&s.id).await.unwrap();
    assert!(extended.last_seen_ms >= s.last_seen_ms);

    let rotated = sessions.rotate(&s.id).await.unwrap();
    assert_ne!(rotated.id, s.id);
    assert!(sessions.get(&s.id).await.unwrap().is_none(), "the old id is dead");
    assert_eq!(sessions.get(&rotated.id).await.unwrap().unwrap().data["lang"], "fi");
    assert_eq!(
        rotated.absolute_deadline_ms, s.absolute_deadline_ms,
        "rotation keeps the deadline"
    );

    let other = sessions.create(Map::new(), Some("alice")).await.unwrap();
    let anon = sessions.create(Map::new(), None).await.unwrap();
    let mut listed: Vec<String> = sessions
        .list("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    listed.sort();
    let mut expect = vec![rotated.id.clone(), other.id.clone()];
    expect.sort();
    assert_eq!(listed, expect);
    assert_eq!(sessions.revoke_all("alice").await.unwrap(), 2);
    assert!(sessions.get(&rotated.id).await.unwrap().is_none());
    assert!(sessions.list("alice").await.unwrap().is_empty());
    assert!(sessions.get(&anon.id).await.unwrap().is_some());
    assert!(sessions.delete(&anon.id).await.unwrap());
    assert!(!sessions.delete(&anon.id).await.unwrap());

    // Size limit: refused clearly, nothing changed.
    let small = redkit
        .sessions(SessionOptions {
            max_bytes: 100,
            ..SessionOptions::default()
        })
        .unwrap();
    let s = small.create(obj(json!({"a": 1})), None).await.unwrap();
    let err = small
        .update(&s.id, obj(json!({"blob": "x".repeat(200)})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.to_string().contains("100"), "{err}");
    assert_eq!(
        Value::Object(small.get(&s.id).await.unwrap().unwrap().data),
        json!({"a": 1})
    );
    let err = small
        .create(obj(json!({"blob": "x".repeat(200)})), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);

    // Bad input.
    assert_eq!(
        sessions.get("not a session id!").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        sessions.update(&"x".repeat(43), Map::new()).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let err = redkit
        .sessions(SessionOptions {
            idle_ttl: Duration::from_secs(10),
            absolute_ttl: Duration::from_secs(5),
            ..SessionOptions::default()
        })
        .err()
        .unwrap();
    assert!(err.to_string().contains("absolute_ttl"), "{err}");

    // Idle versus absolute timeouts, enforced by the store. Reads 700 ms apart keep a 2 s
    // idle timeout alive with 1.3 s of slack each; the last comes at 2.8 s, past the idle
    // timeout (sleeps only ever run long) and 2.2 s before the 5 s absolute deadline.
    let (idle_ttl, absolute_ttl) = (Duration::from_secs(2), Duration::from_secs(5));
    let s = sessions
        .create_with(Map::new(), None, idle_ttl, absolute_ttl)
        .await
        .unwrap();
    let idle = sessions
        .create_with(Map::new(), None, idle_ttl, Duration::from_secs(60))
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(sessions.get(&s.id).await.unwrap().is_some(), "activity keeps it alive");
    }
    assert!(
        sessions.get(&idle.id).await.unwrap().is_none(),
        "idle for 2.8 s with a 2 s idle timeout"
    );
    eventually(Duration::from_secs(10), "absolute timeout", async || {
        sessions.get(&s.id).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    suite(&common::on_redis().await.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded() {
    suite(&common::on_embedded().await.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fallback() {
    let h = common::on_fallback().await;
    suite(&h.redkit).await;
    assert_eq!(h.redkit.mode(), Mode::Fallback, "the suite ran on the fallback");
}

async fn fifty_concurrent_field_updates(redkit: &Redkit) {
    let sessions = redkit.sessions(SessionOptions::default()).unwrap();
    let s = sessions.create(Map::new(), Some("bob")).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (sessions, id) = (sessions.clone(), s.id.clone());
            tokio::spawn(async move { sessions.update(&id, obj(json!({ format!("f{i}"): i }))).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let data = sessions.get(&s.id).await.unwrap().unwrap().data;
    assert_eq!(data.len(), 50, "no update lost another's field");
    assert!((0..50).all(|i| data[&format!("f{i}")] == i));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_different_fields_all_survive() {
    let redis = RedisServer::start();
    let (dr, de) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fifty_concurrent_field_updates(&Redkit::open(config(Some(redis.url()), dr.path())).await.unwrap()).await;
    fifty_concurrent_field_updates(&Redkit::open(config(None, de.path())).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_changes_are_written_back_and_revocations_stick() {
    let mut redis = RedisServer::options().arg("--appendonly").arg("yes").start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Redkit::open(config(Some(redis.url()), da.path())).await.unwrap();
    let b = Redkit::open(config(Some(redis.url()), db.path())).await.unwrap();
    let sa = a.sessions(SessionOptions::default()).unwrap();
    let sb = b.sessions(SessionOptions::default()).unwrap();
    eventually(Duration::from_secs(5), "mirrors live", async || {
        sa.mirror_live() && sb.mirror_live()
    })
    .await;
    let before = sa.create(obj(json!({"n": 1})), Some("carol")).await.unwrap();
    assert!(sb.get(&before.id).await.unwrap().is_some(), "B sees A's session");

    redis.kill();
    eventually(Duration::from_secs(5), "A in fallback", async || {
        let _ = sa.get(&before.id).await;
        a.mode() == Mode::Fallback
    })
    .await;
    // Sessions keep working in SQLite.
    let during = sa.create(obj(json!({"cart": ["x"]})), Some("dave")).await.unwrap();
    sa.update(&during.id, obj(json!({"step": 2}))).await.unwrap();
    let rotated = sa.rotate(&during.id).await.unwrap();
    assert_eq!(sa.get(&rotated.id).await.unwrap().unwrap().data["step"], 2);
    sa.revoke_all("carol").await.unwrap();

    redis.restart();
    eventually(Duration::from_secs(10), "A back on redis", async || {
        a.mode() == Mode::Redis
    })
    .await;
    eventually(Duration::from_secs(10), "B back on redis", async || {
        let _ = sb.get(&rotated.id).await;
        b.mode() == Mode::Redis
    })
    .await;
    let seen = sb
        .get(&rotated.id)
        .await
        .unwrap()
        .expect("B sees the session made during the outage");
    assert_eq!(Value::Object(seen.data), json!({"cart": ["x"], "step": 2}));
    assert!(
        sb.get(&during.id).await.unwrap().is_none(),
        "the rotated-away id stays dead"
    );
    assert!(
        sb.get(&before.id).await.unwrap().is_none(),
        "the revocation made during the outage sticks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_layer_signs_rotates_and_clears() {
    use axum::routing::{get, post};
    use axum::{Extension, Router};
    use redkit::session::layer::{SessionHandle, SessionLayer};
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    let sessions = redkit.sessions(SessionOptions::default()).unwrap();
    let app = Router::new()
        .route(
            "/login",
            post(|Extension(s): Extension<SessionHandle>| async move {
                s.create(obj(json!({"role": "user"})), Some("erin")).await.unwrap();
                let rotated = s.rotate().await.unwrap();
                rotated.id
            }),
        )
        .route(
            "/me",
            get(|Extension(s): Extension<SessionHandle>| async move {
                match s.get().await.unwrap() {
                    Some(session) => session.user.unwrap_or_default(),
                    None => "anonymous".into(),
                }
            }),
        )
        .route(
            "/logout",
            post(|Extension(s): Extension<SessionHandle>| async move {
                s.destroy().await.unwrap();
                "bye"
            }),
        )
        .layer(SessionLayer::new(sessions.clone(), vec![7; 32]).unwrap());

    let call = |method: &str, path: &str, cookie: Option<&str>| {
        let mut r = http::Request::builder().method(method).uri(path);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.body(axum::body::Body::empty()).unwrap()
    };
    let body = |r: http::Response<axum::body::Body>| async move {
        String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap()
    };

    let login = app.clone().oneshot(call("POST", "/login", None)).await.unwrap();
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in [
        "rk_session=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set_cookie.contains(attr), "{attr} missing in {set_cookie}");
    }
    let id = body(login).await;
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("rk_session={id}.")),
        "the cookie carries the rotated id, signed"
    );

    let me = app.clone().oneshot(call("GET", "/me", Some(&cookie))).await.unwrap();
    assert!(!me.headers().contains_key("set-cookie"));
    assert_eq!(body(me).await, "erin");

    // A forged signature, or a bare id, is ignored.
    let forged = format!("rk_session={id}.AAAA");
    assert_eq!(
        body(app.clone().oneshot(call("GET", "/me", Some(&forged))).await.unwrap()).await,
        "anonymous"
    );
    let bare = format!("rk_session={id}");
    assert_eq!(
        body(app.clone().oneshot(call("GET", "/me", Some(&bare))).await.unwrap()).await,
        "anonymous"
    );

    let logout = app
        .clone()
        .oneshot(call("POST", "/logout", Some(&cookie)))
        .await
        .unwrap();
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert!(sessions.get(&id).await.unwrap().is_none());
    assert_eq!(
        body(app.oneshot(call("GET", "/me", Some(&cookie))).await.unwrap()).await,
        "anonymous"
    );
    assert!(
        SessionLayer::new(sessions, vec![1; 8]).is_err(),
        "short keys are refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_racing_creates_leaves_no_earlier_session_and_every_live_one_listed() {
    let h = common::on_redis().await;
    let sessions = h.redkit.sessions(SessionOptions::default()).unwrap();
    // Event-based, not timed: the revoke starts once sessions exist, and the creator stops only after
    // more were made once the revoke returned, so there are sessions from before and after it however
    // slow the host is.
    let made_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let creator = {
        let (sessions, made_count, stop) = (sessions.clone(), made_count.clone(), stop.clone());
        tokio::spawn(async move {
            let mut made = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let s = sessions.create(Map::new(), Some("ray")).await.unwrap();
                made.push((s.id, std::time::Instant::now()));
                made_count.fetch_add(1, Ordering::SeqCst);
            }
            made
        })
    };
    // A creator that died (its panic is reported by the `await` below) ends the waits early.
    eventually(
        Duration::from_secs(30),
        "20 sessions made before the revoke",
        async || creator.is_finished() || made_count.load(Ordering::SeqCst) >= 20,
    )
    .await;
    let revoke_started = std::time::Instant::now();
    sessions.revoke_all("ray").await.unwrap();
    let after_revoke = made_count.load(Ordering::SeqCst);
    eventually(
        Duration::from_secs(30),
        "20 sessions made after the revoke",
        async || creator.is_finished() || made_count.load(Ordering::SeqCst) >= after_revoke + 20,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let made = creator.await.unwrap();
    let listed: std::collections::HashSet<String> =
        sessions.list("ray").await.unwrap().into_iter().map(|s| s.id).collect();
    let mut survivors = 0;
    for (id, returned) in &made {
        let live = sessions.get(id).await.unwrap().is_some();
        if *returned < revoke_started {
            assert!(!live, "a session created before the revoke survived it");
        }
        if live {
            survivors += 1;
            assert!(listed.contains(id), "a live session missing from its user's index");
        }
    }
    assert!(
        survivors > 0 && survivors < made.len(),
        "{survivors} of {} survived",
        made.len()
    );
}
