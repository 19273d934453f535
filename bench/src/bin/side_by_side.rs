//! redkit's side of `bench/run`: runs one scenario against a given Redis and prints one
//! line, `<ops per second>`, the same line every peer program under `bench/peers/` prints.
//!
//! `side_by_side SCENARIO REDIS_URL OPS CONCURRENCY`, SCENARIO one of
//! `cache_get`, `cache_set` (L1 off: every call reaches Redis), `ratelimit` (GCRA, never
//! refusing), `lock` (acquire + release of one of 1000 names).

use std::time::{Duration, Instant};

use redkit::Redkit;
use redkit::cache::{Cache, CacheOptions};
use redkit::lock::LockOptions;
use redkit::ratelimit::{Algorithm, Policy};
use redkit_bench::common::config;

/// The 100-byte value the cache scenarios store (same on every side).
fn value() -> String {
    "x".repeat(100)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: side_by_side cache_get|cache_set|ratelimit|lock REDIS_URL OPS CONCURRENCY");
        std::process::exit(2);
    }
    let (scenario, url) = (args[1].clone(), args[2].clone());
    let ops: u64 = args[3].parse().expect("OPS");
    let tasks: u64 = args[4].parse().expect("CONCURRENCY");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let elapsed = rt.block_on(async {
        let redkit = Redkit::open(config(Some(url), dir.path())).await.unwrap();
        run(&redkit, &scenario, ops, tasks).await
    });
    println!("{:.0}", ops as f64 / elapsed.as_secs_f64());
}

async fn run(redkit: &Redkit, scenario: &str, ops: u64, tasks: u64) -> Duration {
    let per_task = ops.div_ceil(tasks);
    let cache: Cache<String> = redkit.cache("bench", CacheOptions::default().l1(false)).unwrap();
    if scenario == "cache_get" {
        for k in 0..1000 {
            cache.set(&format!("k{k}"), &value()).await.unwrap();
        }
    }
    let limiter = redkit.rate_limiter();
    limiter
        .define(Policy::new(
            "bench",
            Algorithm::Gcra,
            1_000_000_000,
            Duration::from_secs(3600),
        ))
        .unwrap();
    let locks = redkit.locks();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (cache, limiter, locks, scenario) = (cache.clone(), limiter.clone(), locks.clone(), scenario.to_string());
        set.spawn(async move {
            let v = value();
            let opts = LockOptions::new().ttl(Duration::from_secs(10)).watchdog(false);
            for i in 0..per_task {
                let key = format!("k{}", (t * per_task + i) % 1000);
                match scenario.as_str() {
                    "cache_get" => assert!(cache.get(&key).await.unwrap().is_some()),
                    "cache_set" => cache.set(&key, &v).await.unwrap(),
                    "ratelimit" => assert!(limiter.check("bench", &format!("client:{t}"), 1).await.unwrap().allowed),
                    "lock" => {
                        let guard = locks.acquire(&format!("lock:{t}:{}", i % 1000), &opts).await.unwrap();
                        guard.release().await.unwrap();
                    }
                    other => panic!("unknown scenario {other}"),
                }
            }
        });
    }
    set.join_all().await;
    started.elapsed().mul_f64(ops as f64 / (per_task * tasks) as f64)
}
