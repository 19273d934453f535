//! Rate limits: a GCRA policy with a small burst, and the exact decisions it gives.
//!
//! `cargo run -p redkit --example ratelimit` (embedded store), or with `REDIS_URL=redis://…`.

use std::time::Duration;

use redkit::ratelimit::{Algorithm, Policy};
use redkit::{Config, Redkit};

#[tokio::main]
async fn main() -> redkit::Result<()> {
    let redkit = Redkit::open(Config::from_env()?).await?;
    let limits = redkit.rate_limiter();
    limits.define(Policy::new("login", Algorithm::Gcra, 5, Duration::from_secs(60)).burst(3))?;
    for attempt in 1..=5 {
        let d = limits.check("login", "user:42", 1).await?;
        println!(
            "attempt {attempt}: allowed={} remaining={} retry_after={:?}",
            d.allowed, d.remaining, d.retry_after
        );
    }
    Ok(())
}
