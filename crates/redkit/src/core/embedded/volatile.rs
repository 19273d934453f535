//! Volatile in-memory data (moka), bounded by bytes, with a TTL per entry.
//!
//! For embedded-store data that may be lost on restart: rate-limit counters, cache
//! entries, in-process state. Durable data goes to [`Sqlite`](super::Sqlite).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    expires_at: Option<Instant>,
}

struct PerEntryTtl;

impl Expiry<Arc<str>, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &Arc<str>, v: &Entry, now: Instant) -> Option<Duration> {
        v.expires_at.map(|at| at.saturating_duration_since(now))
    }

    fn expire_after_update(&self, _: &Arc<str>, v: &Entry, now: Instant, _: Option<Duration>) -> Option<Duration> {
        v.expires_at.map(|at| at.saturating_duration_since(now))
    }
}

/// A byte-bounded in-memory key-value map with per-entry TTL.
#[derive(Clone)]
pub struct Volatile {
    cache: Cache<Arc<str>, Entry>,
}

impl Volatile {
    /// A map holding at most about `max_bytes` of keys and values.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<str>, v: &Entry| (k.len() + v.value.len() + 64).try_into().unwrap_or(u32::MAX))
            .expire_after(PerEntryTtl)
            .build();
        Volatile { cache }
    }

    /// The value at `key`, if present and not expired.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let e = self.cache.get(key)?;
        match e.expires_at {
            Some(at) if at <= Instant::now() => None,
            _ => Some(e.value),
        }
    }

    /// Stores `value` at `key`, expiring after `ttl` (never when `None`).
    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let entry = Entry {
            value: Arc::from(value),
            expires_at: ttl.map(|t| Instant::now() + t),
        };
        self.cache.insert(Arc::from(key), entry);
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&self, key: &str) -> bool {
        self.cache.remove(key).is_some()
    }

    /// Time left before `key` expires: `None` if absent, `Some(None)` if it never expires.
    pub fn ttl(&self, key: &str) -> Option<Option<Duration>> {
        let e = self.cache.get(key)?;
        let now = Instant::now();
        match e.expires_at {
            Some(at) if at <= now => None,
            Some(at) => Some(Some(at - now)),
            None => Some(None),
        }
    }

    /// Approximate number of entries.
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Approximate weighted size in bytes.
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_expire_delete() {
        let v = Volatile::new(1 << 20);
        v.set("a", b"1", None);
        v.set("b", b"2", Some(Duration::from_millis(30)));
        assert_eq!(&*v.get("a").unwrap(), b"1");
        assert!(v.ttl("b").unwrap().unwrap() <= Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(60));
        assert!(v.get("b").is_none());
        assert!(v.delete("a"));
        assert!(v.get("a").is_none());
    }
}
