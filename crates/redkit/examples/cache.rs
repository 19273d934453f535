//! The cache: `get_or_set_with` as a memoizing loader, tags, and what a failing source does
//! under the fail-safe.
//!
//! `cargo run -p redkit --example cache` (embedded store), or with `REDIS_URL=redis://…`.

use std::time::Duration;

use redkit::cache::{CacheOptions, EntryOptions};
use redkit::{Config, Redkit};

#[tokio::main]
async fn main() -> redkit::Result<()> {
    let redkit = Redkit::open(Config::from_env()?).await?;
    let users = redkit.cache::<String>(
        "example_users",
        CacheOptions::default()
            .ttl(Duration::from_millis(300))
            .fail_safe(Duration::from_secs(60), Duration::from_secs(1)),
    )?;
    let tagged = EntryOptions::new().tags(["team:7"]);
    for round in 1..=2 {
        let name = users
            .get_or_set_with("42", &tagged, move || async move {
                println!("  (loading user 42 from the database, round {round})");
                Ok::<_, std::io::Error>("Ada Lovelace".to_string())
            })
            .await?;
        println!("round {round}: {name}");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let name = users
        .get_or_set_with("42", &tagged, || async { Err::<String, _>("database is down") })
        .await?;
    println!("after expiry, with the database down, the fail-safe serves: {name}");
    println!("invalidated by tag: {}", users.invalidate_tag("team:7").await?);
    println!("stats: {:?}", users.stats());
    Ok(())
}
