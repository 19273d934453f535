//! Scale-out deployments redkit must run on: Redis Sentinel (including a real failover)
//! and Redis Cluster.

mod common;

use std::time::Duration;

use common::{Kv, config, eventually};
use redkit::{FallbackPolicy, Mode, Redkit};
use redkit_testkit::{RedisCluster, SentinelSetup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_resolves_the_master_and_follows_a_failover() {
    let mut setup = SentinelSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(setup.url()), dir.path())).await.unwrap();
    assert_eq!(redkit.mode(), Mode::Redis);
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    kv.set("before", "1").await.unwrap();
    assert_eq!(setup.master.command(&["GET", "rk:test:before"]).unwrap(), "1");
    let health = redkit.health().await;
    assert_eq!(health.redis.unwrap().deployment, "sentinel");

    let replica_port = setup.replica.port();
    setup.master.kill();
    // Writes keep being acknowledged throughout: by the fallback while Sentinel promotes.
    let mut n = 0;
    eventually(Duration::from_secs(30), "redkit on the promoted replica", async || {
        n += 1;
        kv.set(&format!("during{n}"), "x").await.is_ok()
            && redkit.mode() == Mode::Redis
            && setup.master_port() == Some(replica_port)
    })
    .await;
    kv.set("after", "2").await.unwrap();
    assert_eq!(setup.replica.command(&["GET", "rk:test:after"]).unwrap(), "2");
    assert_eq!(setup.replica.command(&["ROLE"]).unwrap().lines().next(), Some("master"));
}

#[tokio::test]
async fn cluster_routes_commands_and_scripts_by_slot() {
    let cluster = RedisCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(cluster.url()), dir.path())).await.unwrap();
    assert_eq!(redkit.mode(), Mode::Redis);
    let kv = Kv::new(&redkit, "test_kv", FallbackPolicy::Serve);
    for i in 0..50 {
        kv.set(&format!("k{i}"), &i.to_string()).await.unwrap();
        assert_eq!(kv.incr(&format!("n{i}"), i).await.unwrap(), i);
    }
    for i in 0..50 {
        assert_eq!(kv.get(&format!("k{i}")).await.unwrap(), Some(i.to_string()));
    }
    let per_node: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.command(&["DBSIZE"]).unwrap().parse().unwrap())
        .collect();
    assert_eq!(per_node.iter().sum::<u64>(), 100);
    assert!(
        per_node.iter().all(|n| *n > 0),
        "keys spread over every node: {per_node:?}"
    );
    assert_eq!(redkit.health().await.redis.unwrap().deployment, "cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_runs_on_cluster_with_tags_patterns_and_backplane() {
    use redkit::cache::{CacheOptions, EntryOptions};
    let cluster = RedisCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Redkit::open(config(Some(cluster.url()), da.path())).await.unwrap();
    let b = Redkit::open(config(Some(cluster.url()), db.path())).await.unwrap();
    for ns in ["alpha", "beta", "gamma", "delta"] {
        let ca = a.cache::<u32>(ns, CacheOptions::default()).unwrap();
        let cb = b.cache::<u32>(ns, CacheOptions::default()).unwrap();
        eventually(Duration::from_secs(10), "subscribed", async || {
            ca.backplane_connected() && cb.backplane_connected()
        })
        .await;
        let items: Vec<(String, u32)> = (0..200).map(|i| (format!("k{i}"), i)).collect();
        let refs: Vec<(&str, u32)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        ca.set_many(&refs[..100], &EntryOptions::new().tags(["first"]))
            .await
            .unwrap();
        ca.set_many(&refs[100..], &EntryOptions::new()).await.unwrap();
        assert_eq!(cb.get("k5").await.unwrap(), Some(5));
        // B's L1 now holds k150; an untagged write (MULTI/EXEC, not a script) announces it.
        assert_eq!(cb.get("k150").await.unwrap(), Some(150));
        ca.set("k150", &1150).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "B hears an untagged write on the cluster",
            async || cb.get("k150").await.unwrap() == Some(1150),
        )
        .await;
        let mut listed = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = ca.keys("*", cursor.as_deref(), 50).await.unwrap();
            listed += page.keys.len();
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(listed, 200, "{ns}: SCAN runs on the namespace's node");
        assert_eq!(ca.invalidate_tag("first").await.unwrap(), 100);
        assert_eq!(ca.invalidate_pattern("k1??").await.unwrap(), 100);
        eventually(Duration::from_secs(10), "B's L1 follows on the cluster", async || {
            cb.get("k5").await.unwrap().is_none()
        })
        .await;
        assert_eq!(ca.clear().await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_rate_limits_and_sessions_run_on_cluster() {
    use redkit::lock::LockOptions;
    use redkit::ratelimit::{Algorithm, Policy};
    use redkit::session::SessionOptions;
    let cluster = RedisCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(cluster.url()), dir.path())).await.unwrap();

    let locks = redkit.locks();
    for i in 0..20 {
        let g = locks
            .acquire(&format!("lock{i}"), &LockOptions::new().watchdog(false))
            .await
            .unwrap();
        assert!(
            locks
                .try_acquire(&format!("lock{i}"), &LockOptions::new())
                .await
                .unwrap()
                .is_none()
        );
        assert!(g.release().await.unwrap());
    }
    let limits = redkit.rate_limiter();
    for a in [
        Algorithm::Gcra,
        Algorithm::TokenBucket,
        Algorithm::SlidingWindow,
        Algorithm::SlidingLog,
        Algorithm::FixedWindow,
    ] {
        let name = format!("c-{a:?}");
        limits
            .define(Policy::new(&name, a, 3, Duration::from_secs(60)))
            .unwrap();
        for key in 0..10 {
            let allowed = futures_allowed(&limits, &name, &format!("k{key}")).await;
            assert_eq!(allowed, 3, "{a:?}");
        }
    }
    let sessions = redkit.sessions(SessionOptions::default()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let s = sessions.create(serde_json::Map::new(), Some("u")).await.unwrap();
        sessions
            .update(&s.id, serde_json::json!({"k": 1}).as_object().unwrap().clone())
            .await
            .unwrap();
        ids.push(sessions.rotate(&s.id).await.unwrap().id);
    }
    assert_eq!(sessions.list("u").await.unwrap().len(), 10);
    assert_eq!(sessions.revoke_all("u").await.unwrap(), 10);
    for id in ids {
        assert!(sessions.get(&id).await.unwrap().is_none());
    }
}

async fn futures_allowed(limits: &redkit::ratelimit::RateLimiter, policy: &str, key: &str) -> u32 {
    let mut n = 0;
    for _ in 0..5 {
        n += u32::from(limits.check(policy, key, 1).await.unwrap().allowed);
    }
    n
}

/// Job queues on Cluster: each queue's keys share a hash tag, so its scripts run on one
/// node (four queues, on whichever nodes own their slots); blocking waits and listings work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queues_run_on_cluster() {
    use redkit::jobs::{EnqueueOptions, QueueOptions, Worker};
    let cluster = RedisCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(cluster.url()), dir.path())).await.unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for name in ["q-alpha", "q-beta", "q-gamma", "q-delta"] {
        let q = redkit.queue(name, QueueOptions::default()).unwrap();
        let done = done.clone();
        workers.push(
            Worker::new(q.clone(), move |_job| {
                let done = done.clone();
                async move {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                }
            })
            .concurrency(4)
            .start(),
        );
        for i in 0..25 {
            q.enqueue(
                &serde_json::json!(i),
                EnqueueOptions::new().delay(Duration::from_millis(i * 10)),
            )
            .await
            .unwrap();
        }
    }
    eventually(Duration::from_secs(20), "100 jobs ran", async || {
        done.load(std::sync::atomic::Ordering::Relaxed) == 100
    })
    .await;
    assert_eq!(redkit.mode(), Mode::Redis, "no script touched keys of two slots");
    assert_eq!(redkit.queues().await.unwrap().len(), 4);
    for w in workers {
        w.shutdown(Duration::from_secs(1)).await;
    }
}
