//! Every cache API call behaves the same on Redis, on the embedded store, and on the
//! embedded store serving as fallback while Redis is down: one test body, three backends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{config, eventually};
use redkit::cache::{CacheOptions, Codec, EntryOptions, Keyring};
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::RedisServer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    roles: Vec<String>,
}

fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        roles: vec!["reader".into()],
    }
}

async fn suite(redkit: &Redkit) {
    for (ns, opts) in [
        ("plain", CacheOptions::default()),
        ("nol1", CacheOptions::default().l1(false)),
        ("msgpack", CacheOptions::default().codec(Codec::MessagePack)),
        ("sealed", CacheOptions::default().encryption(Keyring::new(1, [42; 32]))),
    ] {
        basic_calls(redkit, ns, opts).await;
    }
    expiry_and_fail_safe(redkit).await;
    tags_patterns_and_listing(redkit).await;
    bad_input(redkit).await;
}

async fn basic_calls(redkit: &Redkit, ns: &str, opts: CacheOptions) {
    let cache = redkit.cache::<User>(ns, opts).unwrap();
    assert_eq!(cache.get("u1").await.unwrap(), None, "{ns}");
    cache.set("u1", &user(1)).await.unwrap();
    assert_eq!(cache.get("u1").await.unwrap(), Some(user(1)), "{ns}");
    assert!(cache.exists("u1").await.unwrap());
    let ttl = cache.ttl("u1").await.unwrap().unwrap();
    assert!(
        ttl > Duration::from_secs(290) && ttl <= Duration::from_secs(300),
        "{ns}: {ttl:?}"
    );
    cache.set("u1", &user(11)).await.unwrap();
    assert_eq!(cache.get("u1").await.unwrap(), Some(user(11)), "{ns}: overwrite");
    assert!(cache.delete("u1").await.unwrap());
    assert!(!cache.delete("u1").await.unwrap());
    assert_eq!(cache.get("u1").await.unwrap(), None);
    assert!(!cache.exists("u1").await.unwrap());
    assert_eq!(cache.ttl("u1").await.unwrap(), None);

    cache
        .set_many(
            &[("a", user(1)), ("b", user(2))],
            &EntryOptions::new().ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get_many(&["a", "missing", "b"]).await.unwrap(),
        vec![Some(user(1)), None, Some(user(2))]
    );

    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let v = cache
        .get_or_set_with("lazy", &EntryOptions::new(), move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(user(7))
        })
        .await
        .unwrap();
    assert_eq!(v, user(7));
    let again = cache
        .get_or_set_with("lazy", &EntryOptions::new(), || async {
            Err::<User, _>("must not run")
        })
        .await
        .unwrap();
    assert_eq!(again, user(7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let err = cache
        .get_or_set_with("broken", &EntryOptions::new(), || async { Err::<User, _>("db down") })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("db down") && err.to_string().contains("broken"),
        "{err}"
    );

    assert_eq!(
        cache
            .warm(
                ["w1".to_string(), "w2".to_string(), "a".to_string()],
                &EntryOptions::new(),
                |k: String| async move {
                    Ok::<_, String>(User {
                        id: 0,
                        name: k,
                        roles: vec![],
                    })
                }
            )
            .await
            .unwrap(),
        2,
        "already-fresh keys are not reloaded"
    );
    assert_eq!(cache.get("w2").await.unwrap().unwrap().name, "w2");

    let stats = cache.stats();
    assert!(
        stats.sets >= 5 && stats.factory_calls == 2 && stats.factory_errors == 1,
        "{stats:?}"
    );
    assert!(stats.hit_ratio > 0.0);
}

async fn expiry_and_fail_safe(redkit: &Redkit) {
    // A 1 s TTL and a 2 s throttle: the read right after the write, and the calls that
    // must come within the throttle, keep seconds of slack on a loaded CI host.
    let throttle = Duration::from_secs(2);
    let cache = redkit
        .cache::<String>(
            "expiry",
            CacheOptions::default().fail_safe(Duration::from_secs(30), throttle),
        )
        .unwrap();
    let short = EntryOptions::new().ttl(Duration::from_secs(1));
    let written = Instant::now();
    cache.set_with("k", &"v1".to_string(), &short).await.unwrap();
    let read = cache.get("k").await.unwrap();
    assert!(
        written.elapsed() < Duration::from_secs(1),
        "host too slow for this test's premise: the entry expired before the read"
    );
    assert_eq!(read.as_deref(), Some("v1"));
    eventually(Duration::from_secs(5), "entry goes stale", async || {
        cache.get("k").await.unwrap().is_none()
    })
    .await;

    // The factory fails: the stale value is served, and the factory is throttled.
    let calls = Arc::new(AtomicU32::new(0));
    let failing = |calls: Arc<AtomicU32>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<String, _>("source down")
        }
    };
    // Taken before each failure: the throttle it starts ends no sooner than `throttle` later.
    let failed_at = Instant::now();
    let v = cache
        .get_or_set_with("k", &short, failing(calls.clone()))
        .await
        .unwrap();
    assert_eq!(v, "v1");
    let v = cache
        .get_or_set_with("k", &short, failing(calls.clone()))
        .await
        .unwrap();
    assert!(
        failed_at.elapsed() < throttle,
        "host too slow for this test's premise: the throttle ended before the second call"
    );
    assert_eq!(v, "v1");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "throttled: the factory is not retried at once"
    );
    // Past the throttle (sleeps only ever run long).
    tokio::time::sleep(throttle + Duration::from_millis(200)).await;
    let failed_at = Instant::now();
    let v = cache
        .get_or_set_with("k", &short, failing(calls.clone()))
        .await
        .unwrap();
    assert_eq!(v, "v1");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "after the throttle the factory is tried again"
    );
    let ok = cache
        .get_or_set_with("k", &EntryOptions::new(), || async {
            Ok::<_, String>("v2".to_string())
        })
        .await;
    assert!(
        failed_at.elapsed() < throttle,
        "host too slow for this test's premise: the throttle ended before the last call"
    );
    // Still throttled right after the second failure: the stale value answers.
    assert_eq!(ok.unwrap(), "v1");
    assert!(cache.stats().stale_served >= 3);

    // Without fail-safe, an expired entry is simply gone.
    let plain = redkit.cache::<String>("expiry_plain", CacheOptions::default()).unwrap();
    plain.set_with("k", &"x".to_string(), &short).await.unwrap();
    eventually(Duration::from_secs(5), "expires", async || {
        plain.get("k").await.unwrap().is_none()
    })
    .await;
    let err = plain
        .get_or_set_with("k", &short, || async { Err::<String, _>("down") })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

async fn tags_patterns_and_listing(redkit: &Redkit) {
    let cache = redkit.cache::<u32>("lists", CacheOptions::default()).unwrap();
    let red = EntryOptions::new().tags(["red"]);
    let blue = EntryOptions::new().tags(["blue", "sky"]);
    let reds: Vec<(String, u32)> = (0..30).map(|i| (format!("users:{i:02}"), i)).collect();
    let refs: Vec<(&str, u32)> = reds.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    cache.set_many(&refs, &red).await.unwrap();
    cache.set_with("orders:1", &1, &blue).await.unwrap();
    cache.set_with("orders:2", &2, &blue).await.unwrap();
    cache.set("misc", &9).await.unwrap();

    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = cache.keys("*", cursor.as_deref(), 10).await.unwrap();
        all.extend(page.keys);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 33, "{all:?}");
    let orders = cache.keys("orders:*", None, 100).await.unwrap();
    assert_eq!(orders.keys.len(), 2);

    assert_eq!(cache.invalidate_tag("sky").await.unwrap(), 2);
    assert_eq!(cache.get("orders:1").await.unwrap(), None);
    assert_eq!(cache.invalidate_tag("sky").await.unwrap(), 0);
    assert_eq!(cache.invalidate_pattern("users:1?").await.unwrap(), 10);
    assert_eq!(cache.get("users:15").await.unwrap(), None);
    assert_eq!(cache.get("users:05").await.unwrap(), Some(5));
    assert_eq!(cache.invalidate_tag("red").await.unwrap(), 20);
    assert_eq!(cache.get("users:05").await.unwrap(), None);
    assert_eq!(cache.clear().await.unwrap(), 1);
    assert_eq!(cache.get("misc").await.unwrap(), None);
    assert!(cache.keys("*", None, 10).await.unwrap().keys.is_empty());
}

async fn bad_input(redkit: &Redkit) {
    let err = redkit.cache::<u32>("bad ns!", CacheOptions::default()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("namespace"));
    let cache = redkit
        .cache::<String>("limits", CacheOptions::default().max_key_bytes(8).max_value_bytes(16))
        .unwrap();
    cache.set("ok", &"kept".to_string()).await.unwrap();
    let err = cache.set("way-too-long-key", &"v".into()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(
        err.to_string().contains("key") && err.to_string().contains('8'),
        "{err}"
    );
    let err = cache.set("ok", &"x".repeat(100)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.to_string().contains("value"), "{err}");
    assert_eq!(
        cache.get("ok").await.unwrap().as_deref(),
        Some("kept"),
        "a refused write damages nothing"
    );
    assert_eq!(cache.get("").await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let err = cache
        .set_with("ok", &"v".into(), &EntryOptions::new().ttl(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ttl"), "{err}");
    let err = cache.keys("*", None, 0).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let err = redkit
        .cache::<u32>("jit", CacheOptions::default().jitter(0.9))
        .err()
        .unwrap();
    assert!(err.to_string().contains("jitter"), "{err}");
}

/// Get-or-set for callers that load themselves: one loader per key, the others waiting for
/// its value or served stale; a claim whose holder vanished is taken over.
async fn claims(redkit: &Redkit) {
    use redkit::cache::Claim;
    let cache = redkit
        .cache::<String>("claims", CacheOptions::default().l1(false))
        .unwrap();
    let (ttl, wait) = (Duration::from_secs(5), Duration::from_secs(3));
    let Claim::Load { token, stale: None } = cache.lookup_or_claim("k", ttl, wait).await.unwrap() else {
        panic!("the first caller loads");
    };
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.lookup_or_claim("k", ttl, wait).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "the second caller waits for the loader");
    cache
        .fill("k", &"loaded".into(), &EntryOptions::new(), &token)
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap(), Claim::Fresh("loaded".into()));
    assert_eq!(
        cache.lookup_or_claim("k", ttl, wait).await.unwrap(),
        Claim::Fresh("loaded".into())
    );

    // Past its TTL inside the fail-safe window: one caller reloads, the others get stale.
    let short = EntryOptions::new()
        .ttl(Duration::from_millis(200))
        .fail_safe(Duration::from_secs(60), Duration::from_secs(1));
    cache.set_with("s", &"old".into(), &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Claim::Load { token, stale } = cache.lookup_or_claim("s", ttl, wait).await.unwrap() else {
        panic!("a stale key is reloaded by one caller");
    };
    assert_eq!(stale.as_deref(), Some("old"));
    assert_eq!(
        cache.lookup_or_claim("s", ttl, wait).await.unwrap(),
        Claim::Busy {
            stale: Some("old".into())
        },
        "the others are served stale at once"
    );
    cache.release_claim("s", &token).await.unwrap();
    assert!(
        matches!(cache.lookup_or_claim("s", ttl, wait).await.unwrap(), Claim::Load { .. }),
        "a released claim is taken at once"
    );

    // A loader that vanished: its claim ends with its TTL and a waiter takes it over.
    let Claim::Load { .. } = cache
        .lookup_or_claim("gone", Duration::from_millis(300), wait)
        .await
        .unwrap()
    else {
        panic!("claimed");
    };
    assert!(matches!(
        cache.lookup_or_claim("gone", ttl, wait).await.unwrap(),
        Claim::Load { stale: None, .. }
    ));
    let err = cache
        .lookup_or_claim("k", Duration::from_secs(301), wait)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("claim_ttl"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let h = common::on_redis().await;
    let (redkit, redis) = (&h.redkit, h.redis.as_ref().unwrap());
    suite(redkit).await;
    claims(redkit).await;
    assert_eq!(redkit.mode(), Mode::Redis);
    // The records really are in Redis, under one hash tag per namespace.
    let cache = redkit.cache::<u32>("probe", CacheOptions::default().l1(false)).unwrap();
    cache.set("k", &1).await.unwrap();
    assert!(redis.command(&["EXISTS", "rk:{c:probe}:k:k"]).unwrap() == "1");
    // Records tampered with in Redis never panic: no expiry, or bytes that are not a record.
    redis.command(&["PERSIST", "rk:{c:probe}:k:k"]).unwrap();
    assert_eq!(cache.get("k").await.unwrap(), Some(1));
    redis.command(&["SET", "rk:{c:probe}:k:k", "garbage"]).unwrap();
    assert_eq!(
        cache.get("k").await.unwrap(),
        None,
        "an unreadable record counts as missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded() {
    let h = common::on_embedded().await;
    suite(&h.redkit).await;
    claims(&h.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fallback() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let probe = redkit.cache::<u32>("probe", CacheOptions::default().l1(false)).unwrap();
    redis.kill();
    eventually(Duration::from_secs(5), "fallback", async || {
        let _ = probe.get("x").await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    suite(&redkit).await;
    claims(&redkit).await;
    assert_eq!(redkit.mode(), Mode::Fallback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_loader_per_key_across_instances() {
    use redkit::cache::Claim;
    let redis = RedisServer::start();
    let (a, b) = common::two_instances(&redis).await;
    let ca = a.redkit.cache::<u32>("shared", CacheOptions::default()).unwrap();
    let cb = b.redkit.cache::<u32>("shared", CacheOptions::default()).unwrap();
    let (ttl, wait) = (Duration::from_secs(5), Duration::from_secs(3));
    let Claim::Load { token, .. } = ca.lookup_or_claim("k", ttl, wait).await.unwrap() else {
        panic!("A loads");
    };
    let on_b = tokio::spawn(async move { cb.lookup_or_claim("k", ttl, wait).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    ca.fill("k", &7, &EntryOptions::new(), &token).await.unwrap();
    assert_eq!(on_b.await.unwrap(), Claim::Fresh(7), "B waited for A's value");
}
