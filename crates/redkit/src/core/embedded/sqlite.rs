//! SQLite on its own thread.
//!
//! All durable embedded data lives in one SQLite database in the data dir (WAL journal,
//! `synchronous=NORMAL`, a busy timeout). The connection is owned by a dedicated OS
//! thread; async callers send it closures and await the answer, so SQLite's blocking I/O
//! never runs on the async runtime.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::migrations;
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the SQLite thread. Dropping every handle stops the thread.
#[derive(Clone)]
pub struct Sqlite {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
    /// Jobs queued by [`Sqlite::submit`] and not run yet.
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Most fire-and-forget jobs waiting at once.
const MAX_SUBMITTED: usize = 10_000;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the SQLite thread keeps looking for the next job before it sleeps. A caller
/// usually sends its next job within microseconds of the last answer; sleeping at once
/// would make it pay a thread wake-up each time.
const SPIN: Duration = Duration::from_micros(50);

fn next_job(rx: &mpsc::Receiver<Job>) -> Option<Job> {
    let until = std::time::Instant::now() + SPIN;
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < until => std::hint::spin_loop(),
            Err(mpsc::TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and
    /// starts its thread.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)
            .map_err(|e| Error::Storage(format!("cannot open SQLite database {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Storage(format!(
                "SQLite refused WAL mode for {} (got {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // After a checkpoint the WAL is cut back to this size rather than kept at its
        // high-water mark (SQLite checkpoints every 1000 pages by itself).
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::apply(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("redkit-sqlite".into())
            .spawn(move || {
                while let Some(job) = next_job(&rx) {
                    // A job that panics (a bug) must not take the store down with it: its
                    // transaction rolls back as it unwinds, and its caller sees the reply
                    // channel dropped.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn))).is_err() {
                        tracing::error!("a job on the SQLite thread panicked; its transaction was rolled back");
                        if !conn.is_autocommit() {
                            let _ = conn.execute_batch("ROLLBACK");
                        }
                    }
                }
            })
            .map_err(|e| Error::Storage(format!("cannot start the SQLite thread: {e}")))?;
        Ok(Sqlite {
            tx,
            path: path.to_path_buf(),
            queued: Default::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the SQLite thread, blocking the calling thread until it answers (for
    /// start-up only: never from a hot path on the async runtime).
    pub(crate) fn call_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| Error::Storage("the SQLite thread has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| Error::Storage("the SQLite thread dropped a request".into()))?
    }

    /// Queues `f` on the SQLite thread without waiting for it; it runs after every job
    /// queued before it. For work that must not be skipped but need not be waited for
    /// (forgetting a deleted session's copy).
    pub fn enqueue<F>(&self, f: F)
    where
        F: FnOnce(&mut Connection) + Send + 'static,
    {
        let _ = self.tx.send(Box::new(f));
    }

    /// Like [`Sqlite::enqueue`] for best-effort work (refreshing a mirror): skipped when
    /// the thread is far behind, so it never queues without bound.
    pub fn submit<F>(&self, f: F)
    where
        F: FnOnce(&mut Connection) + Send + 'static,
    {
        if self.queued.load(std::sync::atomic::Ordering::Relaxed) >= MAX_SUBMITTED {
            metrics::counter!("redkit_embedded_submits_skipped_total").increment(1);
            return;
        }
        let queued = self.queued.clone();
        queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = self.tx.send(Box::new(move |conn| {
            queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            f(conn);
        }));
        if sent.is_err() {
            self.queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Runs `f` on the SQLite thread and returns its result.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| Error::Storage("the SQLite thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Storage("the SQLite thread dropped a request".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_that_panics_rolls_back_and_leaves_the_store_working() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("t.sqlite3")).unwrap();
        let failed = db
            .call(|c| -> Result<()> {
                let tx = c.transaction()?;
                tx.execute("INSERT INTO kv (space, key, value) VALUES ('t', 'a', x'00')", [])?;
                panic!("a bug in a job");
            })
            .await;
        assert!(failed.is_err(), "the caller hears of it");
        let rows: i64 = db
            .call(|c| Ok(c.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))?))
            .await
            .expect("the thread still serves");
        assert_eq!(rows, 0, "the panicking job's transaction rolled back");
    }
}
