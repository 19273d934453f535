//! Host-local locks: an in-process table of leases, plus — for single-permit locks — an
//! OS file lock (`flock`) in a host-wide directory, so other processes on this host are
//! excluded too (and a crashed holder's lock is freed by the OS). Fences come from one
//! durable SQLite counter shared by every name (so it keeps increasing across restarts,
//! per name too, and holds one row however many names are locked).
//!
//! Bounded: a sweeper ends expired leases every second, closing their lock files and
//! deleting them; a lock file is deleted only by the process holding its `flock`, and
//! whoever locks a file checks afterwards that it is still the one at its path, so a
//! deletion never lets two processes hold one lock.
//!
//! Used when no Redis is configured, and — only for locks that opt in — while Redis is
//! away. A host-local lock does not exclude other hosts.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::params;

use super::backend::{Grant, LocalFence, LockBackend};
use crate::core::embedded::EmbeddedStore;
use crate::core::journal::{Pending, pending};
use crate::error::{Error, Result};

struct Lease {
    token: String,
    until: Instant,
    /// Held while the lease lives (single-permit locks only).
    file: Option<HeldFile>,
}

/// A lock file this process holds the `flock` of.
struct HeldFile {
    file: File,
    path: PathBuf,
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        // Deleted while still locked, so nobody can lock this inode and believe it is the
        // lock (see `lock_file`); the lock goes when the descriptor closes, right after.
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

/// Host-local locks.
pub struct LocalLocks {
    store: Arc<EmbeddedStore>,
    dir: PathBuf,
    leases: Mutex<HashMap<String, Vec<Lease>>>,
}

impl LocalLocks {
    pub(crate) fn new(store: Arc<EmbeddedStore>, dir: PathBuf) -> Self {
        LocalLocks {
            store,
            dir,
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the host-wide file lock of `name` if free, on a blocking thread (file I/O
    /// stays off the async runtime).
    async fn lock_file(&self, name: &str) -> Result<Option<HeldFile>> {
        let dir = self.dir.clone();
        // Names are hashed: any lock name becomes a safe file name.
        let path = dir.join(format!("{:016x}.lock", fnv1a(name.as_bytes())));
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Storage(format!("cannot create the lock dir {}: {e}", dir.display())))?;
            loop {
                let file = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::Storage(format!("cannot open lock file {}: {e}", path.display())))?;
                match file.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(Error::Storage(format!("flock {}: {e}", path.display())));
                    }
                }
                // The holder before us may have deleted the file between our open and our
                // lock: then we hold a lock nobody else will look at. Try the new file.
                if same_file(&file, &path) {
                    return Ok(Some(HeldFile { file, path }));
                }
            }
        })
        .await
        .map_err(|e| Error::Storage(format!("lock file task failed: {e}")))?
    }

    /// Ends every expired lease (closing and deleting its lock file); returns how many.
    pub(crate) async fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut ended = Vec::new();
        self.leases.lock().expect("locks lock").retain(|_, held| {
            let (gone, kept) = std::mem::take(held).into_iter().partition(|l| l.until <= now);
            *held = kept;
            ended.extend(gone);
            !held.is_empty()
        });
        let n = ended.len();
        close(ended).await;
        n
    }

    /// Soonest lease end of `name` if all `permits` are held now.
    fn busy(&self, name: &str, permits: u32, lease: Duration) -> Option<Duration> {
        let now = Instant::now();
        let mut all = self.leases.lock().expect("locks lock");
        let held = all.entry(name.to_string()).or_default();
        held.retain(|l| l.until > now);
        (held.len() >= permits as usize).then(|| {
            let soonest = held.iter().map(|l| l.until - now).min().unwrap_or(lease);
            soonest.max(Duration::from_millis(1))
        })
    }

    /// The next fence of `name` (above `min_fence`); in an outage, recorded in the
    /// journal in the same transaction, so recovery raises Redis's fence past it.
    async fn next_fence(&self, name: &str, min_fence: u64, op: Option<Pending>) -> Result<u64> {
        let name = name.to_string();
        self.store
            .sql("lock_fence", move |c| {
                let tx = c.transaction()?;
                // One counter ('' row) for every name: strictly increasing per name too,
                // and one row however many names are locked.
                let fence: i64 = tx.query_row(
                    "INSERT INTO lock_fences (name, fence) VALUES ('', ?1 + 1)
                     ON CONFLICT (name) DO UPDATE SET fence = MAX(fence, ?1) + 1
                     RETURNING fence",
                    params![min_fence as i64],
                    |r| r.get(0),
                )?;
                if let Some(op) = op {
                    let granted = LocalFence {
                        name,
                        fence: fence as u64,
                    };
                    op.record_as(&tx, &serde_json::to_vec(&granted)?)?;
                }
                tx.commit()?;
                Ok(fence as u64)
            })
            .await
    }
}

/// Drops leases off the async runtime: their lock files are deleted and closed.
async fn close(leases: Vec<Lease>) {
    if leases.iter().any(|l| l.file.is_some()) {
        let _ = tokio::task::spawn_blocking(move || drop(leases)).await;
    }
}

/// Whether `file` is the file at `path` now (same device and inode).
fn same_file(file: &File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[async_trait::async_trait]
impl LockBackend for LocalLocks {
    async fn acquire(&self, name: &str, token: &str, permits: u32, lease: Duration, min_fence: u64) -> Result<Grant> {
        let op = pending();
        if let Some(wait) = self.busy(name, permits, lease) {
            return Ok(Grant::Busy(wait));
        }
        let file = if permits == 1 {
            match self.lock_file(name).await? {
                Some(f) => Some(f),
                // Another process on this host holds it.
                None => return Ok(Grant::Busy(Duration::from_millis(10))),
            }
        } else {
            None
        };
        {
            // Re-check: another task may have taken the last permit meanwhile (the file
            // lock, if any, is dropped with `file` then).
            if let Some(wait) = self.busy(name, permits, lease) {
                return Ok(Grant::Busy(wait));
            }
            let mut all = self.leases.lock().expect("locks lock");
            all.entry(name.to_string()).or_default().push(Lease {
                token: token.to_string(),
                until: Instant::now() + lease,
                file,
            });
        }
        let fence = self.next_fence(name, min_fence, op).await?;
        Ok(Grant::Acquired { fence, lease })
    }

    async fn extend(&self, name: &str, token: &str, lease: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut all = self.leases.lock().expect("locks lock");
        let Some(held) = all.get_mut(name) else {
            return Ok(false);
        };
        held.retain(|l| l.until > now);
        Ok(match held.iter_mut().find(|l| l.token == token) {
            Some(l) => {
                l.until = now + lease;
                true
            }
            None => false,
        })
    }

    async fn release(&self, name: &str, token: &str) -> Result<bool> {
        let now = Instant::now();
        let (released, ended) = {
            let mut all = self.leases.lock().expect("locks lock");
            let Some(held) = all.get_mut(name) else {
                return Ok(false);
            };
            let (gone, kept): (Vec<Lease>, Vec<Lease>) = std::mem::take(held)
                .into_iter()
                .partition(|l| l.until <= now || l.token == token);
            let released = gone.iter().any(|l| l.token == token && l.until > now);
            *held = kept;
            if held.is_empty() {
                // Apps lock many unique names; keep only names that are held.
                all.remove(name);
            }
            (released, gone)
        };
        close(ended).await;
        Ok(released)
    }

    async fn raise_fence(&self, name: &str, fence: u64) -> Result<()> {
        self.next_fence(name, fence.saturating_sub(1), None).await.map(drop)
    }
}
