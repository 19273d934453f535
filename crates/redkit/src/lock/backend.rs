//! The atomic operations locks and semaphores need.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The journal operation of a fence granted host-locally while Redis was away: on
/// recovery Redis's fence of `name` is raised past it, so fences keep increasing.
#[derive(Serialize, Deserialize)]
pub(crate) struct LocalFence {
    pub name: String,
    pub fence: u64,
}

/// The answer to an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Taken: the fencing token and the lease.
    Acquired {
        /// Strictly increasing per lock name.
        fence: u64,
        /// The lease granted.
        lease: Duration,
    },
    /// All permits are held; the soonest lease ends in this long.
    Busy(Duration),
}

/// Lock operations; each is atomic per lock name.
#[async_trait::async_trait]
pub trait LockBackend: Send + Sync {
    /// Takes one of `permits` for `token`, leased for `lease`, with a fence above `min_fence`.
    async fn acquire(&self, name: &str, token: &str, permits: u32, lease: Duration, min_fence: u64) -> Result<Grant>;
    /// Renews `token`'s lease; false if it no longer holds one.
    async fn extend(&self, name: &str, token: &str, lease: Duration) -> Result<bool>;
    /// Releases `token`'s permit; false if it held none.
    async fn release(&self, name: &str, token: &str) -> Result<bool>;
    /// Raises the fence counter of `name` to at least `fence`.
    async fn raise_fence(&self, name: &str, fence: u64) -> Result<()>;
}
