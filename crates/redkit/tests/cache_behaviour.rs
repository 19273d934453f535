//! The cache across instances and through faults: backplane coherence, stampede
//! protection, timeouts, eager refresh, outages, and scale.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{config, eventually};
use redkit::cache::{Cache, CacheOptions, EntryOptions};
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::RedisServer;

const LIMIT: Duration = Duration::from_secs(10);

async fn two_instances(redis: &RedisServer) -> (Redkit, Redkit, common::Harness, common::Harness) {
    let (a, b) = common::two_instances(redis).await;
    (a.redkit.clone(), b.redkit.clone(), a, b)
}

async fn subscribed<T: redkit::cache::CacheValue>(cache: &Cache<T>) {
    eventually(LIMIT, "backplane subscribed", async || cache.backplane_connected()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_keeps_l1_coherent_across_instances() {
    let redis = RedisServer::start();
    let (a, b, _da, _db) = two_instances(&redis).await;
    let ca = a.cache::<String>("coherent", CacheOptions::default()).unwrap();
    let cb = b.cache::<String>("coherent", CacheOptions::default()).unwrap();
    subscribed(&ca).await;
    subscribed(&cb).await;

    ca.set("k", &"v1".into()).await.unwrap();
    assert_eq!(
        cb.get("k").await.unwrap().as_deref(),
        Some("v1"),
        "set on A is read on B"
    );
    // B keeps what it read in L1 — unless A's announcement of that very write reached B
    // between its L2 read and the insert (then the next read fills it).
    eventually(LIMIT, "B holds it in L1", async || {
        cb.get("k").await.unwrap();
        cb.stats().l1_entries == 1
    })
    .await;
    let health = serde_json::to_value(b.health().await).unwrap();
    let caches = &health["stats"]["cache"];
    assert_eq!(caches["backplane_subscribed"], true);
    assert_eq!(caches["caches"][0]["namespace"], "coherent");
    assert!(caches["caches"][0]["l2_hits"].as_u64().unwrap() >= 1);

    ca.set("k", &"v2".into()).await.unwrap();
    eventually(LIMIT, "B sees the overwrite", async || {
        cb.get("k").await.unwrap().as_deref() == Some("v2")
    })
    .await;
    ca.delete("k").await.unwrap();
    eventually(LIMIT, "B's L1 drops the deleted key", async || {
        cb.get("k").await.unwrap().is_none()
    })
    .await;

    cb.set_with("t1", &"x".into(), &EntryOptions::new().tags(["grp"]))
        .await
        .unwrap();
    cb.set("p:1", &"y".into()).await.unwrap();
    assert!(ca.get("t1").await.unwrap().is_some() && ca.get("p:1").await.unwrap().is_some());
    cb.invalidate_tag("grp").await.unwrap();
    cb.invalidate_pattern("p:*").await.unwrap();
    eventually(LIMIT, "A drops tag and pattern invalidations", async || {
        ca.get("t1").await.unwrap().is_none() && ca.get("p:1").await.unwrap().is_none()
    })
    .await;

    // A lost subscription clears L1: invalidations may have been missed meanwhile.
    ca.set("kept", &"v".into()).await.unwrap();
    assert!(ca.stats().l1_entries >= 1);
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    eventually(LIMIT, "L1 cleared after the subscription broke", async || {
        ca.stats().l1_entries == 0
    })
    .await;
    subscribed(&ca).await;
    assert_eq!(ca.get("kept").await.unwrap().as_deref(), Some("v"), "L2 still has it");
}

async fn one_factory_run_for_a_cold_key(redkit: &Redkit) {
    let cache = redkit.cache::<u64>("stampede", CacheOptions::default()).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set_with("cold", &EntryOptions::new(), move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>(42)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 42);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "1,000 concurrent loads, one factory run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_runs_the_factory_once_on_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    one_factory_run_for_a_cold_key(&redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_runs_the_factory_once_on_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    one_factory_run_for_a_cold_key(&redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_lock_runs_the_factory_once_across_instances() {
    let redis = RedisServer::start();
    let (a, b, _da, _db) = two_instances(&redis).await;
    let opts = CacheOptions::default().distributed_lock(Duration::from_secs(5));
    let calls = Arc::new(AtomicU32::new(0));
    let load = |redkit: &Redkit| {
        let cache = redkit.cache::<u64>("dlock", opts.clone()).unwrap();
        let calls = calls.clone();
        tokio::spawn(async move {
            cache
                .get_or_set_with("cold", &EntryOptions::new(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(7)
                })
                .await
                .unwrap()
        })
    };
    let (x, y) = (load(&a), load(&b));
    assert_eq!((x.await.unwrap(), y.await.unwrap()), (7, 7));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second instance waited for the first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_and_hard_timeouts_and_eager_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    let cache = redkit
        .cache::<String>(
            "timeouts",
            CacheOptions::default()
                .fail_safe(Duration::from_secs(60), Duration::from_millis(100))
                .soft_timeout(Duration::from_millis(50))
                .hard_timeout(Duration::from_millis(200)),
        )
        .unwrap();
    let slow = |value: &'static str, ms: u64| {
        move || async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(value.to_string())
        }
    };
    // Factories far slower than the bounds below, and the bounds far above the timeouts: a
    // call that returns within a bound was cut short by its timeout, with seconds of slack
    // for a loaded CI host.
    let (factory_ms, bound) = (3_000, Duration::from_secs(2));
    let short = EntryOptions::new().ttl(Duration::from_millis(100));

    // Hard timeout: nothing stale, the caller gets an error after ~200 ms; the factory
    // finishes in the background and fills the cache (with the default 5 min TTL, so the
    // check below cannot miss a short-lived value).
    let started = Instant::now();
    let err = cache
        .get_or_set_with("h", &EntryOptions::new(), slow("late", factory_ms))
        .await
        .unwrap_err();
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
    assert!(err.to_string().contains("hard timeout"), "{err}");

    // Soft timeout: a stale value answers after ~50 ms; the slow factory updates later.
    // Run while the hard-timeout factory is still going, so the test waits for both at once.
    cache.set_with("s", &"old".into(), &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let v = cache
        .get_or_set_with("s", &EntryOptions::new(), slow("new", factory_ms))
        .await
        .unwrap();
    assert_eq!(v, "old");
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
    eventually(LIMIT, "background completion stored the value", async || {
        cache.get("h").await.unwrap().as_deref() == Some("late")
    })
    .await;
    eventually(LIMIT, "background completion replaced the stale value", async || {
        cache.get("s").await.unwrap().as_deref() == Some("new")
    })
    .await;

    // Eager refresh: a hit past 50 % of the TTL reloads in the background. A 4 s TTL: the
    // young hits come well before 2 s, the late hit well between 2 s and 4 s.
    let ttl = Duration::from_secs(4);
    let eager = EntryOptions::new().ttl(ttl).eager_refresh(0.5);
    let calls = Arc::new(AtomicU32::new(0));
    let counting = |calls: Arc<AtomicU32>| {
        move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, String>(format!("gen{n}"))
        }
    };
    // Taken before the entry is stored: the entry is at most this old.
    let created = Instant::now();
    assert_eq!(
        cache
            .get_or_set_with("e", &eager, counting(calls.clone()))
            .await
            .unwrap(),
        "gen1"
    );
    assert_eq!(
        cache
            .get_or_set_with("e", &eager, counting(calls.clone()))
            .await
            .unwrap(),
        "gen1"
    );
    assert!(
        created.elapsed() < ttl / 2,
        "host too slow for this test's premise: the entry was past 50 % before the check"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "young entries are not refreshed");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let v = cache
        .get_or_set_with("e", &eager, counting(calls.clone()))
        .await
        .unwrap();
    assert!(
        created.elapsed() < ttl,
        "host too slow for this test's premise: the entry expired before the late hit"
    );
    assert_eq!(v, "gen1", "the current value answers at once");
    eventually(LIMIT, "refreshed in the background", async || {
        cache.get("e").await.unwrap().as_deref() == Some("gen2")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_l2_serves_stale_from_l1() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(redis.url()), dir.path());
    cfg.breaker.failure_threshold = 1000; // keep the breaker closed: L2 stays "Redis"
    let redkit = Redkit::open(cfg).await.unwrap();
    let cache = redkit
        .cache::<String>(
            "unreach",
            CacheOptions::default().fail_safe(Duration::from_secs(60), Duration::from_secs(1)),
        )
        .unwrap();
    // The first subscription clears L1 (by design), so let it happen before filling L1.
    subscribed(&cache).await;
    cache
        .set_with(
            "k",
            &"stale".into(),
            &EntryOptions::new().ttl(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.freeze();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let v = cache
        .get_or_set_with("k", &EntryOptions::new(), move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>("fresh".into())
        })
        .await
        .unwrap();
    assert_eq!(v, "stale");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "L2 unreachable: stale served, source spared"
    );
    assert_eq!(
        cache.get("k").await.unwrap().as_deref(),
        Some("stale"),
        "throttled copy answers"
    );
    redis.thaw();
    assert_eq!(redkit.mode(), Mode::Redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_invalidations_are_replayed_and_other_instances_do_not_read_old_values() {
    let mut redis = RedisServer::options().durable().start();
    let (a, b, _da, _db) = two_instances(&redis).await;
    let ca = a.cache::<String>("outage", CacheOptions::default()).unwrap();
    let cb = b.cache::<String>("outage", CacheOptions::default()).unwrap();
    subscribed(&ca).await;
    subscribed(&cb).await;
    ca.set("doomed", &"old".into()).await.unwrap();
    ca.set("changed", &"old".into()).await.unwrap();
    ca.set_with("tagged", &"old".into(), &EntryOptions::new().tags(["t"]))
        .await
        .unwrap();
    for k in ["doomed", "changed", "tagged"] {
        assert_eq!(cb.get(k).await.unwrap().as_deref(), Some("old"), "B holds {k} in L1");
    }

    // Traffic on both instances while Redis is killed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic: Vec<_> = [ca.clone(), cb.clone()]
        .into_iter()
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                let mut failures = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("busy{}", n % 20);
                    if c.set(&key, &n.to_string()).await.is_err() || c.get(&key).await.is_err() {
                        failures += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (n, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.kill();
    eventually(LIMIT, "A in fallback", async || {
        let _ = ca.get("probe").await;
        a.mode() == Mode::Fallback
    })
    .await;
    eventually(LIMIT, "B in fallback", async || {
        let _ = cb.get("probe").await;
        b.mode() == Mode::Fallback
    })
    .await;

    // Reads and writes keep working from L1 / the embedded store.
    ca.set("during", &"x".into()).await.unwrap();
    assert_eq!(ca.get("during").await.unwrap().as_deref(), Some("x"));
    assert!(ca.delete("doomed").await.is_ok());
    ca.set("changed", &"new".into()).await.unwrap();
    ca.invalidate_tag("t").await.unwrap();

    redis.restart();
    eventually(LIMIT, "both back on redis", async || {
        a.mode() == Mode::Redis && b.mode() == Mode::Redis
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in traffic {
        let (calls, failures) = t.await.unwrap();
        assert!(calls > 10, "traffic ran");
        assert!(
            failures <= 6,
            "only calls before the breaker opened may fail: {failures} of {calls}"
        );
    }
    assert!(a.health().await.journal_pending.is_empty());
    assert_eq!(
        cb.get("doomed").await.unwrap(),
        None,
        "the delete made during the outage reached B"
    );
    assert_eq!(
        cb.get("changed").await.unwrap(),
        None,
        "the overwrite replayed as an invalidation: B does not read the value from before the outage"
    );
    assert_eq!(cb.get("tagged").await.unwrap(), None, "and the tag invalidation");
    assert_eq!(redis.command(&["EXISTS", "rk:{c:outage}:k:doomed"]).unwrap(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_by_tag_pattern_clear_and_pages() {
    let redis = RedisServer::start();
    let (a, b, _da, _db) = two_instances(&redis).await;
    let dir = tempfile::tempdir().unwrap();
    let embedded = Redkit::open(config(None, dir.path())).await.unwrap();
    for redkit in [&a, &embedded] {
        let cache = redkit
            .cache::<u32>("big", CacheOptions::default().l1_max_bytes(1 << 20))
            .unwrap();
        for chunk in (0..10_000u32).collect::<Vec<_>>().chunks(1000) {
            let keys: Vec<(String, u32)> = chunk.iter().map(|i| (format!("item:{}:{i}", i % 2), *i)).collect();
            let refs: Vec<(&str, u32)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let tag = if chunk[0] < 5000 { "low" } else { "high" };
            cache.set_many(&refs, &EntryOptions::new().tags([tag])).await.unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = cache.keys("*", cursor.as_deref(), 1000).await.unwrap();
            pages += 1;
            seen.extend(page.keys);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 10_000);
        assert!(pages >= 5, "paged: {pages}");
        assert_eq!(cache.invalidate_tag("low").await.unwrap(), 5000);
        assert_eq!(cache.invalidate_pattern("item:1:*").await.unwrap(), 2500);
        assert_eq!(cache.get("item:0:9998").await.unwrap(), Some(9998));
        assert_eq!(cache.get("item:1:9999").await.unwrap(), None);
        assert_eq!(cache.clear().await.unwrap(), 2500);
        assert!(cache.keys("*", None, 100).await.unwrap().keys.is_empty());
    }
    // B never saw the keys, but had it read any, the backplane would have dropped them.
    let cb = b.cache::<u32>("big", CacheOptions::default()).unwrap();
    assert_eq!(cb.get("item:0:9998").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_journal_entry_is_dead_lettered_and_does_not_keep_redis_out() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let cache = redkit.cache::<String>("poison", CacheOptions::default()).unwrap();
    cache.set("after", &"before the outage".into()).await.unwrap();
    redis.kill();
    eventually(LIMIT, "fallback", async || {
        let _ = cache.get("probe").await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    redkit
        .route()
        .journal()
        .append("cache", 1, b"not a journal entry".to_vec())
        .await
        .unwrap();
    cache.set("after", &"kept".into()).await.unwrap();
    redis.restart();
    eventually(LIMIT, "recovered despite the bad entry", async || {
        redkit.mode() == Mode::Redis
    })
    .await;
    let health = redkit.health().await;
    assert!(health.journal_pending.is_empty());
    assert_eq!(health.journal_dead_letters["cache"].count, 1, "{health:?}");
    assert!(health.warnings.iter().any(|w| w.contains("dead-lettered")));
    assert_eq!(
        redis.command(&["EXISTS", "rk:{c:poison}:k:after"]).unwrap(),
        "0",
        "the good entry after it replayed: the outage's write invalidated the older value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_hold_only_live_keys_and_values_have_a_bounded_number_of_them() {
    let h = common::on_redis().await;
    let redis = h.redis.as_ref().unwrap();
    let cache = h
        .redkit
        .cache::<u32>("tagged", CacheOptions::default().l1(false))
        .unwrap();
    // Long enough that a busy machine writes all 200 before the first expires (each write
    // prunes the tag's expired members).
    let ttl = Duration::from_secs(3);
    let short = EntryOptions::new().ttl(ttl).tags(["t"]);
    for i in 0..200 {
        cache.set_with(&format!("k{i}"), &i, &short).await.unwrap();
    }
    let last_written = Instant::now();
    assert_eq!(redis.command(&["ZCARD", "rk:{c:tagged}:tz:t"]).unwrap(), "200");
    tokio::time::sleep_until((last_written + ttl + Duration::from_millis(100)).into()).await;
    cache
        .set_with("fresh", &1, &EntryOptions::new().tags(["t"]))
        .await
        .unwrap();
    assert_eq!(
        redis.command(&["ZCARD", "rk:{c:tagged}:tz:t"]).unwrap(),
        "1",
        "expired members pruned as the tag is written"
    );

    // Invalidation works in bounded steps, however many keys a tag holds.
    let long = EntryOptions::new().tags(["big"]);
    let items: Vec<(String, u32)> = (0..1200).map(|i| (format!("b{i}"), i)).collect();
    let refs: Vec<(&str, u32)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    cache.set_many(&refs, &long).await.unwrap();
    assert_eq!(cache.invalidate_tag("big").await.unwrap(), 1200);
    assert_eq!(
        redis
            .command(&["EXISTS", "rk:{c:tagged}:tz:big", "rk:{c:tagged}:k:b7"])
            .unwrap(),
        "0"
    );

    let tags: Vec<String> = (0..=redkit::cache::MAX_TAGS).map(|i| format!("t{i}")).collect();
    let err = cache
        .set_with("many", &1, &EntryOptions::new().tags(tags.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("at most 64"), "{err}");
    cache
        .set_with("many", &1, &EntryOptions::new().tags(tags[..64].to_vec()))
        .await
        .unwrap();
}

/// Redis answers `PTTL 0` for a key in its last millisecond. Such a record is gone for
/// every purpose: it was once handed to the reader as "stale", and a cache without
/// fail-safe served it when its loader failed (the cause of a rare `cache_conformance`
/// failure). Hundreds of keys are read through their last millisecond here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_its_last_millisecond_is_never_served_stale_without_fail_safe() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let plain = redkit.cache::<String>("last_ms", CacheOptions::default()).unwrap();
    let short = EntryOptions::new().ttl(Duration::from_millis(2));
    let mut reads = 0u64;
    for i in 0..300 {
        let key = format!("k{i}");
        plain.set_with(&key, &"x".to_string(), &short).await.unwrap();
        // Read until the key is gone, as fast as possible: the last reads fall in its
        // last millisecond. (A stale value served is re-served for the fail-safe
        // throttle: stop at the first.)
        let started = Instant::now();
        while plain
            .get_or_set_with(&key, &short, || async { Err::<String, _>("down") })
            .await
            .is_ok()
            && plain.stats().stale_served == 0
            && started.elapsed() < LIMIT
        {
            reads += 1;
        }
        if plain.stats().stale_served > 0 {
            break;
        }
    }
    assert_eq!(
        plain.stats().stale_served,
        0,
        "a cache without fail-safe served a stale value"
    );
    assert!(reads > 300, "the loop read each key while it lived ({reads} reads)");
}
