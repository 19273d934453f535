//! The apalis peer for bench/run's no-op jobs scenario; prints jobs per second.
//!
//! `apalis-peer jobs REDIS_URL JOBS CONCURRENCY`: one process, as apalis' README sets it up
//! (`RedisStorage` on a connection manager, a `WorkerBuilder` worker), with the worker's
//! `concurrency(C)` limit and `parallelize(tokio::spawn)` so C jobs run at once, and a fetch
//! batch of max(C, 10). C producer tasks push the jobs one call each while the worker runs;
//! the clock stops when the handler has run for the last job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use tokio::sync::Notify;

struct Done {
    count: AtomicU64,
    target: u64,
    all: Notify,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 5 && args[1] == "jobs",
        "usage: apalis-peer jobs REDIS_URL JOBS CONCURRENCY"
    );
    let url = args[2].clone();
    let jobs: u64 = args[3].parse().expect("JOBS");
    let conc: u64 = args[4].parse().expect("CONCURRENCY");
    let per_task = jobs.div_ceil(conc);
    let total = per_task * conc;

    let conn = apalis_redis::connect(url).await.expect("connect");
    let queue = format!("apalis-bench-{}", std::process::id());
    let config = Config::default().queue(queue).batch_size((conc as usize).max(10));
    let storage: RedisStorage<u64, _> = RedisStorage::new(conn).with_config(config);
    let done = Arc::new(Done {
        count: AtomicU64::new(0),
        target: total,
        all: Notify::new(),
    });

    let started = Instant::now();
    let worker_done = done.clone();
    let worker = WorkerBuilder::new("bench")
        .backend(storage.clone())
        .concurrency(conc as usize)
        .parallelize(tokio::spawn)
        .data(worker_done)
        .build(noop);
    for _ in 0..conc {
        let mut storage = storage.clone();
        tokio::spawn(async move {
            for i in 0..per_task {
                storage.push(i).await.expect("push");
            }
        });
    }
    // The worker runs on this task (its future is not 'static-general enough for spawn).
    tokio::select! {
        result = worker.run() => panic!("worker stopped: {result:?}"),
        _ = done.all.notified() => {}
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{:.0}", total as f64 / secs);
    std::process::exit(0);
}

async fn noop(_job: u64, done: Data<Arc<Done>>) -> Result<(), BoxDynError> {
    if done.count.fetch_add(1, Ordering::SeqCst) + 1 == done.target {
        done.all.notify_one();
    }
    Ok(())
}
