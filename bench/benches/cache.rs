//! Cache speed, side by side with the obvious alternative in the same run:
//! - `l1_hit`: `Cache::get` answered by L1 vs a raw `moka::sync::Cache::get` of the same
//!   value (the floor: redkit's L1 *is* moka plus freshness checks and stats);
//! - `redis_get_l1_off`: `Cache::get` through Redis with L1 off, 1 and 64 concurrent tasks
//!   (time per get; 64 tasks share the one multiplexed connection);
//! - `get_or_set_with_hot`: the factory path when the key is fresh in L1.
//!
//! Run: `cargo bench -p redkit-bench --bench cache`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use redkit::Redkit;
use redkit::cache::{CacheOptions, EntryOptions};
use redkit_bench::common::config;
use redkit_testkit::RedisServer;

fn value() -> String {
    "x".repeat(100)
}

fn cache_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = rt
        .block_on(Redkit::open(config(Some(redis.url()), dir.path())))
        .unwrap();
    let with_l1 = redkit.cache::<String>("bench_l1", CacheOptions::default()).unwrap();
    let without_l1 = redkit
        .cache::<String>("bench_l2", CacheOptions::default().l1(false))
        .unwrap();
    rt.block_on(async {
        with_l1.set("k", &value()).await.unwrap();
        without_l1.set("k", &value()).await.unwrap();
        assert!(with_l1.get("k").await.unwrap().is_some());
    });
    let moka: moka::sync::Cache<String, String> = moka::sync::Cache::builder().max_capacity(10_000).build();
    moka.insert("k".to_string(), value());

    let mut group = c.benchmark_group("l1_hit");
    group.bench_function("redkit", |b| b.to_async(&rt).iter(|| with_l1.get("k")));
    // Same async harness on both sides, so the executor's cost cancels out.
    group.bench_function("moka_raw", |b| b.to_async(&rt).iter(|| async { moka.get("k") }));
    group.finish();

    let mut group = c.benchmark_group("redis_get_l1_off");
    for tasks in [1usize, 64] {
        group.bench_with_input(BenchmarkId::from_parameter(tasks), &tasks, |b, &tasks| {
            b.to_async(&rt).iter_custom(|iters| {
                let cache = without_l1.clone();
                // Time per get, across all tasks.
                redkit_bench::time_for(iters, tasks as u64, move |_, calls| {
                    let cache = cache.clone();
                    async move {
                        for _ in 0..calls {
                            cache.get("k").await.unwrap();
                        }
                    }
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("get_or_set_with_hot");
    let opts = EntryOptions::new();
    group.bench_function("redkit", |b| {
        b.to_async(&rt)
            .iter(|| with_l1.get_or_set_with("k", &opts, || async { Ok::<_, String>(value()) }))
    });
    group.finish();
}

criterion_group!(benches, cache_benches);
criterion_main!(benches);
