//! No-op jobs end to end: 1,000 jobs enqueued one by one (16 concurrent producers) and
//! processed by 1 or 4 workers × concurrency 16, through Redis and on the embedded store,
//! in the same run. Throughput is jobs per second from enqueue of the first to ack of the
//! last.
//!
//! Run: `cargo bench -p redkit-bench --bench jobs`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redkit::jobs::{EnqueueOptions, QueueOptions, Worker};
use redkit_bench::Stores;
use redkit_testkit::RedisServer;
use tokio::sync::Notify;

const JOBS: u64 = 1_000;
const PRODUCERS: u64 = 16;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = RedisServer::start();
    let stores = Stores::open(&rt, &redis);
    let mut group = c.benchmark_group("jobs_end_to_end");
    group.throughput(Throughput::Elements(JOBS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (store, redkit) in &stores.list {
        for workers in [1usize, 4] {
            let name = format!("{store}/{workers}x16");
            let queue = redkit
                .queue(
                    &format!("bench-{workers}"),
                    QueueOptions {
                        keep_completed: 0,
                        ..QueueOptions::default()
                    },
                )
                .unwrap();
            let done = Arc::new(AtomicU64::new(0));
            let all_done = Arc::new(Notify::new());
            let handles: Vec<_> = rt.block_on(async {
                (0..workers)
                    .map(|_| {
                        let (done, all_done) = (done.clone(), all_done.clone());
                        Worker::new(queue.clone(), move |_job| {
                            let (done, all_done) = (done.clone(), all_done.clone());
                            async move {
                                if done.fetch_add(1, Ordering::Relaxed) + 1 == JOBS {
                                    all_done.notify_one();
                                }
                                Ok(())
                            }
                        })
                        .concurrency(16)
                        .start()
                    })
                    .collect()
            });
            group.bench_function(&name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (queue, done, all_done) = (queue.clone(), done.clone(), all_done.clone());
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            done.store(0, Ordering::Relaxed);
                            let started = Instant::now();
                            let producers: Vec<_> = (0..PRODUCERS)
                                .map(|p| {
                                    let queue = queue.clone();
                                    tokio::spawn(async move {
                                        for _ in 0..JOBS / PRODUCERS + u64::from(p < JOBS % PRODUCERS) {
                                            queue
                                                .enqueue(&serde_json::Value::Null, EnqueueOptions::new())
                                                .await
                                                .unwrap();
                                        }
                                    })
                                })
                                .collect();
                            for p in producers {
                                p.await.unwrap();
                            }
                            all_done.notified().await;
                            total += started.elapsed();
                        }
                        total
                    }
                })
            });
            rt.block_on(async {
                for h in handles {
                    h.shutdown(Duration::from_secs(5)).await;
                }
            });
        }
    }
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
