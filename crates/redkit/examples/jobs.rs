//! Jobs: enqueue (one flaky), run them with a worker, look at the queue, shut down cleanly.
//!
//! `cargo run -p redkit --example jobs` (embedded store), or with `REDIS_URL=redis://…`.

use std::time::Duration;

use redkit::jobs::{Backoff, EnqueueOptions, QueueOptions, Worker};
use redkit::{Config, Redkit};
use serde_json::json;

#[tokio::main]
async fn main() -> redkit::Result<()> {
    let redkit = Redkit::open(Config::from_env()?).await?;
    let queue = redkit.queue(
        "example-emails",
        QueueOptions {
            backoff: Backoff::Fixed { delay_ms: 200 },
            ..QueueOptions::default()
        },
    )?;
    let before = queue.stats().await?.completed_total;
    for to in ["ada@example.com", "flaky@example.com", "grace@example.com"] {
        let job = queue.enqueue(&json!({"to": to}), EnqueueOptions::new()).await?;
        println!("enqueued {} for {to}", job.id);
    }
    let worker = Worker::new(queue.clone(), |job| async move {
        let to = job.payload()["to"].as_str().unwrap_or_default().to_string();
        let (attempt, _) = job.attempt();
        if to.starts_with("flaky") && attempt == 1 {
            return Err(format!("smtp timeout for {to}").into());
        }
        println!("sent to {to} (attempt {attempt})");
        Ok(())
    })
    .concurrency(4)
    .start();
    while queue.stats().await?.completed_total < before + 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    let stats = queue.stats().await?;
    println!("stats: {}", serde_json::to_string(&stats).unwrap_or_default());
    Ok(())
}
