//! Shared pieces of redkit's benchmarks: the small key-value capability the library's own
//! tests use (one source, included here rather than copied).

#[path = "../../crates/redkit/tests/common/mod.rs"]
pub mod common;

use redkit::Redkit;
use redkit_testkit::RedisServer;

/// One `Redkit` on `redis` and one on the embedded store, named `"redis"` and
/// `"embedded"`, for benchmarks that compare the two in the same run.
pub struct Stores {
    /// The pair, Redis first.
    pub list: [(&'static str, Redkit); 2],
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Stores {
    /// Opens both on `rt`.
    pub fn open(rt: &tokio::runtime::Runtime, redis: &RedisServer) -> Self {
        let (dr, de) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let list = rt.block_on(async {
            [
                (
                    "redis",
                    Redkit::open(common::config(Some(redis.url()), dr.path()))
                        .await
                        .unwrap(),
                ),
                ("embedded", Redkit::open(common::config(None, de.path())).await.unwrap()),
            ]
        });
        Stores { list, _dirs: (dr, de) }
    }
}

/// Runs `task(0..tasks)` as that many tokio tasks at once; returns the wall time from the
/// first start to the last finish.
pub async fn concurrently<F, Fut>(tasks: u64, task: F) -> std::time::Duration
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        set.spawn(task(t));
    }
    set.join_all().await;
    started.elapsed()
}

/// Time for `iters` calls spread over `tasks` concurrent tasks (criterion's `iter_custom`):
/// `task(t, n)` makes `n = iters / tasks` calls, rounded up, and the time is scaled back to
/// exactly `iters`.
pub async fn time_for<F, Fut>(iters: u64, tasks: u64, task: F) -> std::time::Duration
where
    F: Fn(u64, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let per_task = iters.div_ceil(tasks);
    concurrently(tasks, |t| task(t, per_task))
        .await
        .mul_f64(iters as f64 / (per_task * tasks) as f64)
}
