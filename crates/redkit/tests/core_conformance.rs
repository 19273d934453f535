//! The same test body against every way a capability can be served: Redis, the embedded
//! store (no Redis configured), and the embedded store as fallback (Redis configured but
//! down). Commands must round-trip identically.

mod common;

use common::{Kv, config, eventually};
use redkit::{FallbackPolicy, Mode, Redkit};
use redkit_testkit::RedisServer;
use std::time::Duration;

async fn suite(kv: &Kv) {
    assert_eq!(kv.get("missing").await.unwrap(), None);
    kv.set("a", "1").await.unwrap();
    assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("1"));
    kv.set("a", "2").await.unwrap();
    assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("2"));
    assert!(kv.del("a").await.unwrap());
    assert!(!kv.del("a").await.unwrap());
    assert_eq!(kv.get("a").await.unwrap(), None);
    assert_eq!(kv.incr("n", 5).await.unwrap(), 5);
    assert_eq!(kv.incr("n", -2).await.unwrap(), 3);
    let long = "x".repeat(100_000);
    kv.set("big", &long).await.unwrap();
    assert_eq!(kv.get("big").await.unwrap().unwrap().len(), 100_000);
    kv.set("unicode ключ", "värde ✓").await.unwrap();
    assert_eq!(kv.get("unicode ключ").await.unwrap().as_deref(), Some("värde ✓"));
}

#[tokio::test]
async fn on_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    assert_eq!(redkit.mode(), Mode::Redis);
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    suite(&kv).await;
    // It really went to Redis.
    assert_eq!(redis.command(&["GET", "rk:test:n"]).unwrap(), "3");
    let ops = redkit.health().await.redis.unwrap().ops;
    assert!(ops["test_set"].count >= 3 && ops["test_incr"].count == 2, "{ops:?}");
}

#[tokio::test]
async fn on_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    assert_eq!(redkit.mode(), Mode::Embedded);
    suite(&Kv::new(&redkit, "test_kv", FallbackPolicy::Serve)).await;
    assert!(dir.path().join("redkit.sqlite3").exists());
}

#[tokio::test]
async fn on_fallback() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    redis.kill();
    eventually(Duration::from_secs(5), "breaker opens", async || {
        let _ = kv.get("probe").await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    suite(&kv).await;
}

#[tokio::test]
async fn embedded_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
        Kv::new(&redkit, "test_kv", FallbackPolicy::Serve)
            .set("k", "durable")
            .await
            .unwrap();
    }
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("durable"));
}

#[tokio::test]
async fn unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Redkit::open(config(None, &file)).await.err().expect("must fail");
    let msg = err.to_string();
    assert!(msg.contains("not-a-dir") && msg.contains("data_dir"), "{msg}");
}
