//! Generations: how the embedded store drops, at once, copies it kept for an outage.
//!
//! A table that holds copies of Redis's data (a mirror, or what an outage wrote) stamps
//! each row with the current generation of its kind and serves only rows of the current
//! one. Bumping the generation makes every older row invisible in one step — when the
//! outage is over and replayed ([`Generation::seal`], as the breaker closes), or when the
//! backplane may have missed a message — and a background sweep deletes them later: rows
//! older than the current generation, without bumping it again, so that rows an outage
//! beginning meanwhile writes are kept. The counter is kept in SQLite, so a restart does not
//! bring old rows back.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::params;

use super::Sqlite;
use crate::error::Result;

/// One named generation counter.
pub struct Generation {
    name: &'static str,
    current: AtomicU64,
    sqlite: Sqlite,
}

impl Generation {
    pub(crate) fn new(name: &'static str, current: u64, sqlite: Sqlite) -> Self {
        Generation {
            name,
            current: AtomicU64::new(current),
            sqlite,
        }
    }

    /// The generation rows must carry to be served.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// [`Generation::bump`] as a [`Recovery::seal`](crate::core::route::Recovery::seal).
    pub fn seal(&self) -> crate::core::route::BoxFuture<'static, Result<()>> {
        let bumped = self.bump();
        Box::pin(async move { bumped.await.map(drop) })
    }

    /// Makes every row of an older generation invisible at once (before the returned
    /// future is polled), and remembers it durably when the future runs.
    pub fn bump(&self) -> impl std::future::Future<Output = Result<u64>> + Send + 'static {
        let next = self.current.fetch_add(1, Ordering::AcqRel) + 1;
        let (name, sqlite) = (self.name, self.sqlite.clone());
        async move {
            sqlite
                .call(move |c| {
                    c.execute(
                        "INSERT INTO generations (name, gen) VALUES (?1, ?2)
                         ON CONFLICT (name) DO UPDATE SET gen = max(gen, excluded.gen)",
                        params![name, next as i64],
                    )?;
                    Ok(())
                })
                .await?;
            Ok(next)
        }
    }
}
