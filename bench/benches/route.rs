//! Per-call latency of one capability read through the route, in each mode:
//! `redis` (breaker closed), `fallback` (breaker open: Redis is not touched) and
//! `embedded` (no Redis configured). The difference between `fallback` and `embedded` is
//! what an open breaker adds to a call.
//!
//! Run: `cargo bench -p redkit-bench --bench route`

use criterion::{Criterion, criterion_group, criterion_main};
use redkit::{FallbackPolicy, Mode, Redkit};
use redkit_bench::common::{Kv, config};
use redkit_testkit::RedisServer;

fn route_modes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut redis = RedisServer::start();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (with_redis, embedded) = rt.block_on(async {
        let with_redis = Redkit::open(config(Some(redis.url()), dirs[0].path())).await.unwrap();
        let embedded = Redkit::open(config(None, dirs[1].path())).await.unwrap();
        (with_redis, embedded)
    });
    let kv_redis = Kv::new(&with_redis, "bench_kv", FallbackPolicy::Serve);
    let kv_embedded = Kv::new(&embedded, "bench_kv", FallbackPolicy::Serve);
    rt.block_on(async {
        kv_redis.set("k", "value").await.unwrap();
        kv_embedded.set("k", "value").await.unwrap();
    });

    let mut group = c.benchmark_group("route_get");
    group.bench_function("redis", |b| b.to_async(&rt).iter(|| kv_redis.get("k")));
    group.bench_function("embedded", |b| b.to_async(&rt).iter(|| kv_embedded.get("k")));

    redis.freeze();
    rt.block_on(async {
        while with_redis.mode() != Mode::Fallback {
            let _ = kv_redis.get("k").await;
        }
        kv_redis.set("k", "value").await.unwrap();
    });
    group.bench_function("fallback_open", |b| b.to_async(&rt).iter(|| kv_redis.get("k")));
    group.finish();
    redis.thaw();
}

criterion_group!(benches, route_modes);
criterion_main!(benches);
