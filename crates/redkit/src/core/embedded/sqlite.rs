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
}

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
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::apply(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("redkit-sqlite".into())
            .spawn(move || {
                while let Some(job) = next_job(&rx) {
                    job(&mut conn);
                }
            })
            .map_err(|e| Error::Storage(format!("cannot start the SQLite thread: {e}")))?;
        Ok(Sqlite {
            tx,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
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
