//! Lock acquire+release and session get (touching the idle timer), through Redis and on
//! the embedded store, in the same run.
//!
//! Run: `cargo bench -p redkit-bench --bench locks_sessions`

use criterion::{Criterion, criterion_group, criterion_main};
use redkit::lock::LockOptions;
use redkit::session::SessionOptions;
use redkit_bench::Stores;
use redkit_testkit::RedisServer;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = RedisServer::start();
    let stores = Stores::open(&rt, &redis);
    let opts = LockOptions::new().watchdog(false);
    let mut group = c.benchmark_group("lock_acquire_release");
    for (store, redkit) in &stores.list {
        let locks = redkit.locks();
        group.bench_function(*store, |b| {
            b.to_async(&rt).iter(|| async {
                let g = locks.acquire("bench", &opts).await.unwrap();
                g.release().await.unwrap();
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("session_get");
    for (store, redkit) in &stores.list {
        let sessions = redkit.sessions(SessionOptions::default()).unwrap();
        let data = serde_json::json!({"user": "ada", "cart": [1, 2, 3]})
            .as_object()
            .unwrap()
            .clone();
        let id = rt.block_on(sessions.create(data, Some("ada"))).unwrap().id;
        group.bench_function(*store, |b| b.to_async(&rt).iter(|| sessions.get(&id)));
    }
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
