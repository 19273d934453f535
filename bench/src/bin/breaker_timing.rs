//! How long the circuit breaker takes to open after Redis is SIGKILLed and after it is
//! SIGSTOPped, under steady traffic, with the default settings (response timeout 2 s,
//! threshold 3) and with a 250 ms timeout. Prints the median of several runs.
//!
//! Run: `cargo run --release -p redkit-bench --bin breaker_timing [RUNS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redkit::config::RedisConfig;
use redkit::{Config, FallbackPolicy, Mode, Redkit};
use redkit_bench::common::Kv;
use redkit_testkit::RedisServer;

#[derive(Clone, Copy)]
enum Fault {
    Kill,
    Stop,
}

async fn once(fault: Fault, timeout: Duration) -> Duration {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rc = RedisConfig::new(redis.url());
    rc.response_timeout = timeout;
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        redis: Some(rc),
        ..Config::default()
    };
    let redkit = Redkit::open(cfg).await.unwrap();
    let kv = Kv::new(&redkit, "timing_kv", FallbackPolicy::Serve);
    let stop = Arc::new(AtomicBool::new(false));
    // Steady traffic: 8 callers, each one call per millisecond.
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let (kv, stop) = (kv.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = kv.get(&format!("k{i}")).await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    match fault {
        Fault::Kill => redis.kill(),
        Fault::Stop => redis.freeze(),
    }
    while redkit.mode() != Mode::Fallback {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    if matches!(fault, Fault::Stop) {
        redis.thaw();
    }
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(7);
    for timeout in [Duration::from_secs(2), Duration::from_millis(250)] {
        for (name, fault) in [("SIGKILL", Fault::Kill), ("SIGSTOP", Fault::Stop)] {
            let mut samples = Vec::new();
            for _ in 0..runs {
                samples.push(once(fault, timeout).await);
            }
            let (min, max) = (*samples.iter().min().unwrap(), *samples.iter().max().unwrap());
            println!(
                "response timeout {timeout:?}: breaker open after {name}: median {:?} (min {min:?}, max {max:?}, {runs} runs)",
                median(samples)
            );
        }
    }
}
