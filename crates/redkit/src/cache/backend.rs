//! The narrow set of L2 operations the cache needs, implemented on Redis and on the
//! embedded store. Records are opaque bytes (see `entry`); the front owns their meaning.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One record read from L2 with the time it has left in L2 (TTL + stale window).
#[derive(Debug, Clone)]
pub struct L2Record {
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// Remaining physical lifetime; never zero: a record with no time left is not
    /// returned (a cache without a stale window would otherwise be handed it as stale).
    pub remaining: Duration,
}

/// One record to write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetItem {
    /// Cache key (without namespace).
    pub key: String,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// Physical lifetime (TTL + stale window).
    pub ttl_ms: u64,
    /// Tags the key is filed under.
    pub tags: Vec<String>,
}

/// A page of keys.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct KeysPage {
    /// Keys of this page (without namespace).
    pub keys: Vec<String>,
    /// Pass back to get the next page; `None` when the listing is complete.
    pub next_cursor: Option<String>,
}

/// L2 operations. Every method is atomic where the cache relies on it (a set with its
/// tags; a tag invalidation). The Redis implementation also tells other instances (the
/// backplane) about every change; the embedded one has no one to tell.
#[async_trait::async_trait]
pub trait CacheBackend: Send + Sync {
    /// Reads the records of `keys`, `None` where absent.
    async fn get_many(&self, ns: &str, keys: &[&str]) -> Result<Vec<Option<L2Record>>>;
    /// Writes records (overwriting) and files them under their tags.
    async fn set_many(&self, ns: &str, items: &[SetItem]) -> Result<()>;
    /// Removes keys; returns how many existed.
    async fn delete(&self, ns: &str, keys: &[String]) -> Result<u64>;
    /// Removes every key filed under `tag`; returns how many.
    async fn invalidate_tag(&self, ns: &str, tag: &str) -> Result<u64>;
    /// Removes every key matching the glob `pattern`; returns how many.
    async fn invalidate_pattern(&self, ns: &str, pattern: &str) -> Result<u64>;
    /// Lists keys matching `pattern`, a page at a time.
    async fn keys(&self, ns: &str, pattern: &str, cursor: Option<&str>, limit: usize) -> Result<KeysPage>;
    /// Takes the short stampede lock of `key` for `ttl` if free.
    async fn try_lock(&self, ns: &str, key: &str, token: &str, ttl: Duration) -> Result<bool>;
    /// Releases the stampede lock if `token` still holds it.
    async fn unlock(&self, ns: &str, key: &str, token: &str) -> Result<()>;
}
