//! The embedded store: the default when no Redis is configured, the fallback when it fails.
//!
//! Two parts, each for what it is good at:
//! - [`Volatile`] (moka) for data that may be lost on restart, bounded by bytes;
//! - [`Sqlite`] for durable data (WAL, `synchronous=NORMAL`), on its own thread, with
//!   versioned [`migrations`].
//!
//! The data dir is created if missing; one that cannot be created or opened is a start-up
//! error naming the directory.

mod generation;
pub mod migrations;
mod sqlite;
mod volatile;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::Connection;
use serde::Serialize;

pub use generation::Generation;
pub use sqlite::Sqlite;
pub use volatile::Volatile;

use crate::error::{Error, Result};
use crate::stats::OpStats;

/// Default byte budget of the volatile part.
pub const DEFAULT_VOLATILE_BYTES: u64 = 64 * 1024 * 1024;

/// The embedded store of one redkit instance.
pub struct EmbeddedStore {
    dir: PathBuf,
    sqlite: Sqlite,
    volatile: Volatile,
    stats: OpStats,
    generations: Mutex<HashMap<&'static str, Arc<Generation>>>,
    stored_generations: HashMap<String, u64>,
}

/// Serializable view for `health()`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddedSnapshot {
    /// The data dir.
    pub path: String,
    /// Bytes on disk (database, WAL and shared-memory files).
    pub size_bytes: u64,
    /// Entries in the volatile part.
    pub volatile_entries: u64,
    /// Approximate bytes in the volatile part.
    pub volatile_bytes: u64,
}

const DB_FILE: &str = "redkit.sqlite3";

impl EmbeddedStore {
    /// Opens the store in `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Storage(format!(
                "cannot create the data dir {} (setting data_dir / REDKIT_DATA_DIR): {e}",
                data_dir.display()
            ))
        })?;
        let sqlite = Sqlite::open(&data_dir.join(DB_FILE)).map_err(|e| {
            Error::Storage(format!(
                "cannot use the data dir {} (setting data_dir / REDKIT_DATA_DIR): {e}",
                data_dir.display()
            ))
        })?;
        let stored_generations = sqlite.call_blocking(|c| {
            let mut stmt = c.prepare("SELECT name, gen FROM generations")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
        })?;
        Ok(EmbeddedStore {
            dir: data_dir.to_path_buf(),
            generations: Mutex::default(),
            stored_generations,
            sqlite,
            volatile: Volatile::new(DEFAULT_VOLATILE_BYTES),
            stats: OpStats::new("embedded"),
        })
    }

    /// The volatile (in-memory) part.
    pub fn volatile(&self) -> &Volatile {
        &self.volatile
    }

    /// The generation counter `name` (see [`Generation`]); one per name and store.
    pub fn generation(&self, name: &'static str) -> Arc<Generation> {
        self.generations
            .lock()
            .expect("generations lock")
            .entry(name)
            .or_insert_with(|| {
                let stored = self.stored_generations.get(name).copied().unwrap_or(0);
                Arc::new(Generation::new(name, stored, self.sqlite.clone()))
            })
            .clone()
    }

    /// The durable (SQLite) part, without statistics; prefer [`EmbeddedStore::sql`].
    pub fn sqlite(&self) -> &Sqlite {
        &self.sqlite
    }

    /// Runs `f` on the SQLite thread, recording it as operation `op`.
    pub async fn sql<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let started = Instant::now();
        let r = self.sqlite.call(f).await;
        self.stats
            .record(op, started.elapsed(), r.as_ref().err().map(|e| e as _));
        r
    }

    /// Writes the WAL back into the database and truncates it (run now and then, so the
    /// WAL never keeps a burst's size).
    pub async fn checkpoint(&self) -> Result<()> {
        self.sql("checkpoint", |c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Statistics of every embedded operation.
    pub fn stats(&self) -> &OpStats {
        &self.stats
    }

    /// Path, size on disk and volatile usage.
    pub fn snapshot(&self) -> EmbeddedSnapshot {
        let size_bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(self.dir.join(format!("{DB_FILE}{suffix}"))).ok())
            .map(|m| m.len())
            .sum();
        EmbeddedSnapshot {
            path: self.dir.display().to_string(),
            size_bytes,
            volatile_entries: self.volatile.entry_count(),
            volatile_bytes: self.volatile.weighted_size(),
        }
    }
}
