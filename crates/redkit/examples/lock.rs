//! Locks: two workers contend for one lock; fencing tokens increase; the watchdog keeps
//! the lease alive past its TTL.
//!
//! `cargo run -p redkit --example lock` (embedded store: host-local), or with `REDIS_URL`.

use std::time::Duration;

use redkit::lock::LockOptions;
use redkit::{Config, Redkit};

#[tokio::main]
async fn main() -> redkit::Result<()> {
    let redkit = Redkit::open(Config::from_env()?).await?;
    let locks = redkit.locks();
    let opts = LockOptions::new()
        .ttl(Duration::from_millis(200))
        .wait(Duration::from_secs(5));
    let mut workers = Vec::new();
    for worker in 1..=2 {
        let (locks, opts) = (locks.clone(), opts.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..2 {
                let guard = locks.acquire("example:invoice", &opts).await?;
                println!("worker {worker} holds the lock with fence {}", guard.fence());
                // Longer than the TTL: the watchdog renews the lease meanwhile.
                tokio::time::sleep(Duration::from_millis(300)).await;
                println!("worker {worker} releases (lease lost: {})", guard.is_lost());
                guard.release().await?;
            }
            Ok::<_, redkit::Error>(())
        }));
    }
    for w in workers {
        w.await.expect("worker panicked")?;
    }
    Ok(())
}
