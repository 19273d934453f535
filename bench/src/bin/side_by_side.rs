//! redkit's side of `bench/run`: runs one scenario and prints one line, `<ops per second>`,
//! the same line every peer program under `bench/peers/` prints.
//!
//! `side_by_side SCENARIO REDIS_URL OPS CONCURRENCY`, SCENARIO one of
//! - `cache_get`, `cache_set`: through Redis with L1 off (every call reaches Redis);
//! - `l1_get`: a key fresh in L1 (never reaches Redis), and `moka_get`, the same read from a
//!   raw `moka::sync::Cache<String, String>` — the floor, as redkit's L1 is moka;
//!   `moka_expiry_get`, the same with a per-entry expiry policy, as an L1 whose entries
//!   have their own TTLs needs (not a peer: it shows what that policy alone costs);
//! - `ratelimit`: a GCRA decision that never refuses;
//! - `lock`: acquire + release of one of 1000 names;
//! - `jobs`: no-op jobs end to end — a `Worker` with concurrency CONCURRENCY and CONCURRENCY
//!   producers enqueueing one job per call; the clock stops when the queue counts every job
//!   completed (acknowledged), not when the last handler returns;
//! - `outage_get`, `outage_set`: cache reads / writes (L1 off) while the circuit breaker is
//!   open — a redis-server of its own is SIGKILLed and the call waits for fallback mode
//!   first (REDIS_URL is not used); `embedded_get`, `embedded_set`, `embedded_jobs`: the
//!   same calls, and `jobs`, on a redkit with no Redis configured.

use std::time::{Duration, Instant};

use redkit::cache::{Cache, CacheOptions};
use redkit::config::RedisConfig;
use redkit::jobs::{EnqueueOptions, QueueOptions, Worker};
use redkit::lock::LockOptions;
use redkit::ratelimit::{Algorithm, Policy};
use redkit::{Config, Mode, Redkit};
use redkit_bench::concurrently;
use redkit_testkit::RedisServer;

/// The 100-byte value the cache scenarios store (same on every side).
fn value() -> String {
    "x".repeat(100)
}

/// Keys the cache scenarios spread over.
const KEYS: u64 = 1000;

fn key(task: u64, i: u64, per_task: u64) -> String {
    format!("k{}", (task * per_task + i) % KEYS)
}

/// redkit as shipped: default timeouts and breaker settings (the tests' short timeouts are
/// for making faults quick, not for measuring).
fn config(redis_url: Option<String>, data_dir: &std::path::Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        redis: redis_url.map(RedisConfig::new),
        ..Config::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: side_by_side SCENARIO REDIS_URL OPS CONCURRENCY (scenarios: see the module doc)");
        std::process::exit(2);
    }
    let (scenario, url) = (args[1].as_str(), args[2].clone());
    let ops: u64 = args[3].parse().expect("OPS");
    let tasks: u64 = args[4].parse().expect("CONCURRENCY");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let per_task = ops.div_ceil(tasks);
    let rate = rt.block_on(async {
        let elapsed = match scenario {
            "moka_get" => {
                moka_get(
                    moka::sync::Cache::builder().max_capacity(10_000).build(),
                    per_task,
                    tasks,
                )
                .await
            }
            "moka_expiry_get" => {
                let moka = moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .expire_after(AnHourEach)
                    .build();
                moka_get(moka, per_task, tasks).await
            }
            "outage_get" | "outage_set" => {
                let mut redis = RedisServer::start();
                let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
                let cache: Cache<String> = redkit.cache("bench", CacheOptions::default().l1(false)).unwrap();
                redis.kill();
                while redkit.mode() != Mode::Fallback {
                    let _ = cache.get("k0").await; // failing calls are what open the breaker
                }
                let cache = filled_cache(&redkit, false).await;
                cache_calls(&cache, scenario.ends_with("get"), per_task, tasks).await
            }
            "embedded_get" | "embedded_set" | "embedded_jobs" => {
                let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
                if scenario == "embedded_jobs" {
                    jobs(&redkit, per_task, tasks).await
                } else {
                    let cache = filled_cache(&redkit, false).await;
                    cache_calls(&cache, scenario.ends_with("get"), per_task, tasks).await
                }
            }
            _ => {
                let redkit = Redkit::open(config(Some(url), dir.path())).await.unwrap();
                through_redis(&redkit, scenario, per_task, tasks).await
            }
        };
        (per_task * tasks) as f64 / elapsed.as_secs_f64()
    });
    println!("{rate:.0}");
}

async fn through_redis(redkit: &Redkit, scenario: &str, per_task: u64, tasks: u64) -> Duration {
    match scenario {
        "cache_get" | "cache_set" => {
            let cache = filled_cache(redkit, false).await;
            cache_calls(&cache, scenario == "cache_get", per_task, tasks).await
        }
        "l1_get" => {
            let cache = filled_cache(redkit, true).await;
            cache_calls(&cache, true, per_task, tasks).await
        }
        "ratelimit" => {
            let limiter = redkit.rate_limiter();
            let hour = Duration::from_secs(3600);
            limiter
                .define(Policy::new("bench", Algorithm::Gcra, 1_000_000_000, hour))
                .unwrap();
            concurrently(tasks, |t| {
                let limiter = limiter.clone();
                async move {
                    let client = format!("client:{t}");
                    for _ in 0..per_task {
                        assert!(limiter.check("bench", &client, 1).await.unwrap().allowed);
                    }
                }
            })
            .await
        }
        "lock" => {
            let (locks, opts) = (
                redkit.locks(),
                LockOptions::new().ttl(Duration::from_secs(10)).watchdog(false),
            );
            concurrently(tasks, |t| {
                let (locks, opts) = (locks.clone(), opts.clone());
                async move {
                    for i in 0..per_task {
                        let guard = locks.acquire(&format!("lock:{t}:{}", i % 1000), &opts).await.unwrap();
                        guard.release().await.unwrap();
                    }
                }
            })
            .await
        }
        "jobs" => jobs(redkit, per_task, tasks).await,
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2);
        }
    }
}

/// A cache with every key the scenarios use already stored.
async fn filled_cache(redkit: &Redkit, l1: bool) -> Cache<String> {
    let cache: Cache<String> = redkit.cache("bench", CacheOptions::default().l1(l1)).unwrap();
    for k in 0..KEYS {
        cache.set(&format!("k{k}"), &value()).await.unwrap();
    }
    cache
}

async fn cache_calls(cache: &Cache<String>, read: bool, per_task: u64, tasks: u64) -> Duration {
    concurrently(tasks, |t| {
        let (cache, v) = (cache.clone(), value());
        async move {
            for i in 0..per_task {
                let key = key(t, i, per_task);
                if read {
                    assert!(cache.get(&key).await.unwrap().is_some(), "{key} missing");
                } else {
                    cache.set(&key, &v).await.unwrap();
                }
            }
        }
    })
    .await
}

/// A per-entry expiry policy (every entry lives an hour), as redkit's L1 has one.
struct AnHourEach;

impl moka::Expiry<String, String> for AnHourEach {
    fn expire_after_create(&self, _: &String, _: &String, _: std::time::Instant) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}

async fn moka_get(moka: moka::sync::Cache<String, String>, per_task: u64, tasks: u64) -> Duration {
    for k in 0..KEYS {
        moka.insert(format!("k{k}"), value());
    }
    concurrently(tasks, |t| {
        let moka = moka.clone();
        async move {
            for i in 0..per_task {
                assert!(moka.get(&key(t, i, per_task)).is_some());
            }
        }
    })
    .await
}

/// No-op jobs: the worker is started first, then `tasks` producers enqueue; done when the
/// queue's completed total has grown by every job.
async fn jobs(redkit: &Redkit, per_task: u64, tasks: u64) -> Duration {
    let queue = redkit
        .queue(&format!("bench-{}", std::process::id()), QueueOptions::default())
        .unwrap();
    let worker = Worker::new(queue.clone(), |_job| async { Ok(()) })
        .concurrency(tasks as usize)
        .start();
    let total = per_task * tasks;
    let started = Instant::now();
    concurrently(tasks, |_| {
        let queue = queue.clone();
        async move {
            for i in 0..per_task {
                queue
                    .enqueue(&serde_json::json!(i), EnqueueOptions::new())
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    while queue.stats().await.unwrap().completed_total < total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    worker.shutdown(Duration::from_secs(5)).await;
    elapsed
}
