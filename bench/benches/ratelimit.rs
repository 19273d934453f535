//! GCRA decisions through Redis (one Lua script per decision) at 1 and 64 concurrent
//! tasks, and on the embedded limiter, in the same run. Reported as time per decision;
//! decisions/s = 1 / time.
//!
//! Run: `cargo bench -p redkit-bench --bench ratelimit`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use redkit::Redkit;
use redkit::ratelimit::{Algorithm, Policy, RateLimiter};
use redkit_bench::common::config;
use redkit_testkit::RedisServer;

fn per_decision(rt: &tokio::runtime::Runtime, limits: &RateLimiter, tasks: usize, iters: u64) -> Duration {
    rt.block_on(redkit_bench::time_for(iters, tasks as u64, |t, calls| {
        let limits = limits.clone();
        async move {
            let key = format!("client:{t}");
            for _ in 0..calls {
                assert!(limits.check("bench", &key, 1).await.unwrap().allowed);
            }
        }
    }))
}

fn ratelimit_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = RedisServer::start();
    let (dr, de) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (on_redis, embedded) = rt.block_on(async {
        (
            Redkit::open(config(Some(redis.url()), dr.path())).await.unwrap(),
            Redkit::open(config(None, de.path())).await.unwrap(),
        )
    });
    // Never refuses, so every decision runs the full algorithm.
    let policy = Policy::new("bench", Algorithm::Gcra, 1_000_000_000, Duration::from_secs(3600));
    let mut group = c.benchmark_group("gcra_check");
    for (store, redkit) in [("redis", &on_redis), ("embedded", &embedded)] {
        let limits = redkit.rate_limiter();
        limits.define(policy.clone()).unwrap();
        for tasks in [1usize, 64] {
            group.bench_with_input(BenchmarkId::new(store, tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| per_decision(&rt, &limits, tasks, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ratelimit_benches);
criterion_main!(benches);
