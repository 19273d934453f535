//! Cache-wide options and per-entry overrides, builder style.

use std::time::Duration;

/// Most tags one value may be filed under.
pub const MAX_TAGS: usize = 64;

use super::crypto::Keyring;

/// How values are turned into bytes for L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// JSON (serde_json): readable in `redis-cli`, the default.
    #[default]
    Json,
    /// MessagePack (rmp-serde): smaller and faster.
    MessagePack,
}

/// Options of one [`Cache`](super::Cache); per-call [`EntryOptions`] override the entry
/// defaults.
///
/// ```
/// use std::time::Duration;
/// use redkit::cache::CacheOptions;
/// let opts = CacheOptions::default()
///     .ttl(Duration::from_secs(60))
///     .fail_safe(Duration::from_secs(3600), Duration::from_secs(5))
///     .soft_timeout(Duration::from_millis(100))
///     .eager_refresh(0.8)
///     .l1_max_bytes(64 << 20);
/// ```
#[derive(Clone, Debug)]
pub struct CacheOptions {
    pub(crate) l1: bool,
    pub(crate) l1_max_bytes: u64,
    pub(crate) codec: Codec,
    pub(crate) encryption: Option<Keyring>,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_value_bytes: usize,
    pub(crate) distributed_lock: Option<Duration>,
    pub(crate) redaction: Option<std::sync::Arc<crate::records::redact::Redaction>>,
    pub(crate) entry: EntryOptions,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            l1: true,
            l1_max_bytes: 32 << 20,
            codec: Codec::Json,
            encryption: None,
            max_key_bytes: 1024,
            max_value_bytes: 8 << 20,
            distributed_lock: None,
            redaction: None,
            entry: EntryOptions {
                ttl: Some(Duration::from_secs(300)),
                ..EntryOptions::default()
            },
        }
    }
}

impl CacheOptions {
    /// Default time to live of entries (5 minutes unless set).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.entry.ttl = Some(ttl);
        self
    }

    /// Turns the in-process L1 on or off (on by default).
    pub fn l1(mut self, on: bool) -> Self {
        self.l1 = on;
        self
    }

    /// Byte budget of L1 (32 MiB by default); entries are weighed by their encoded size.
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.l1_max_bytes = bytes;
        self
    }

    /// Spreads each entry's TTL by up to ±`fraction` (0.0–0.5) so entries written together
    /// do not expire together.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.entry.jitter = Some(fraction);
        self
    }

    /// Fail-safe: keep every entry `max_stale` beyond its TTL and serve it when the factory
    /// fails or times out, or L2 cannot be reached; after serving stale, wait `throttle`
    /// before calling the factory again.
    pub fn fail_safe(mut self, max_stale: Duration, throttle: Duration) -> Self {
        self.entry.stale_for = Some(max_stale);
        self.entry.throttle = Some(throttle);
        self
    }

    /// With a stale value at hand, wait at most this long for the factory; the factory
    /// finishes in the background and updates the cache.
    pub fn soft_timeout(mut self, t: Duration) -> Self {
        self.entry.soft_timeout = Some(t);
        self
    }

    /// Without a stale value, wait at most this long for the factory (it still finishes in
    /// the background and updates the cache).
    pub fn hard_timeout(mut self, t: Duration) -> Self {
        self.entry.hard_timeout = Some(t);
        self
    }

    /// A hit past this fraction of its TTL (0.0–1.0 exclusive) refreshes the entry in the
    /// background while the current value is returned.
    pub fn eager_refresh(mut self, fraction: f64) -> Self {
        self.entry.eager_refresh = Some(fraction);
        self
    }

    /// Extends stampede protection across instances: before running the factory for a
    /// missing key, take a short Redis lock; other instances wait (up to `lock_ttl`) for
    /// the value instead of running their own factory.
    pub fn distributed_lock(mut self, lock_ttl: Duration) -> Self {
        self.distributed_lock = Some(lock_ttl);
        self
    }

    /// How values become bytes (JSON by default).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Encrypts values before they leave the process (XChaCha20-Poly1305).
    pub fn encryption(mut self, keyring: Keyring) -> Self {
        self.encryption = Some(keyring);
        self
    }

    /// Redacts values before they are stored (see [`redact`](crate::records::redact)):
    /// the value is turned into JSON, the rules applied, and the result read back as `T`
    /// (a rule that leaves something `T` cannot hold is refused on write). `key` is needed
    /// by `hash` rules. What is kept in L1 is the redacted value too.
    pub fn redact(mut self, rules: Vec<crate::records::RedactRule>, key: Option<&[u8]>) -> Self {
        self.redaction = Some(std::sync::Arc::new(crate::records::redact::Redaction::new(rules, key)));
        self
    }

    /// Largest key, in bytes (1024 by default).
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.max_key_bytes = n;
        self
    }

    /// Largest encoded value, in bytes (8 MiB by default).
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }
}

/// Per-entry options; anything left unset falls back to the cache's [`CacheOptions`].
#[derive(Clone, Debug, Default)]
pub struct EntryOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) jitter: Option<f64>,
    pub(crate) stale_for: Option<Duration>,
    pub(crate) throttle: Option<Duration>,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    pub(crate) eager_refresh: Option<f64>,
}

impl EntryOptions {
    /// Options that override nothing.
    pub fn new() -> Self {
        EntryOptions::default()
    }

    /// Time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags, for [`Cache::invalidate_tag`](super::Cache::invalidate_tag).
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// See [`CacheOptions::fail_safe`].
    pub fn fail_safe(mut self, max_stale: Duration, throttle: Duration) -> Self {
        self.stale_for = Some(max_stale);
        self.throttle = Some(throttle);
        self
    }

    /// See [`CacheOptions::soft_timeout`].
    pub fn soft_timeout(mut self, t: Duration) -> Self {
        self.soft_timeout = Some(t);
        self
    }

    /// See [`CacheOptions::hard_timeout`].
    pub fn hard_timeout(mut self, t: Duration) -> Self {
        self.hard_timeout = Some(t);
        self
    }

    /// See [`CacheOptions::eager_refresh`].
    pub fn eager_refresh(mut self, fraction: f64) -> Self {
        self.eager_refresh = Some(fraction);
        self
    }
}

/// Options after defaults are applied and checked.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub ttl: Duration,
    pub tags: Vec<String>,
    pub jitter: f64,
    pub stale_for: Duration,
    pub throttle: Duration,
    pub soft_timeout: Option<Duration>,
    pub hard_timeout: Option<Duration>,
    pub eager_refresh: Option<f64>,
}

/// The longest TTL accepted (10 years), to refuse absurd values clearly.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Resolved {
    pub(crate) fn new(defaults: &EntryOptions, call: &EntryOptions) -> crate::Result<Self> {
        use crate::Error;
        let ttl = call.ttl.or(defaults.ttl).unwrap_or(Duration::from_secs(300));
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(Error::invalid(
                "ttl",
                format!("must be > 0 and <= {} s", MAX_TTL.as_secs()),
            ));
        }
        let jitter = call.jitter.or(defaults.jitter).unwrap_or(0.0);
        if !(0.0..=0.5).contains(&jitter) {
            return Err(Error::invalid("jitter", "must be between 0.0 and 0.5"));
        }
        let eager_refresh = call.eager_refresh.or(defaults.eager_refresh);
        if let Some(f) = eager_refresh
            && !(f > 0.0 && f < 1.0)
        {
            return Err(Error::invalid(
                "eager_refresh",
                "must be between 0.0 and 1.0 (exclusive)",
            ));
        }
        let stale_for = call.stale_for.or(defaults.stale_for).unwrap_or(Duration::ZERO);
        if stale_for > MAX_TTL {
            return Err(Error::invalid(
                "fail_safe max_stale",
                format!("must be <= {} s", MAX_TTL.as_secs()),
            ));
        }
        let mut tags = defaults.tags.clone();
        tags.extend(call.tags.iter().cloned());
        tags.sort_unstable();
        tags.dedup();
        if tags.len() > MAX_TAGS {
            return Err(Error::invalid(
                "tags",
                format!("at most {MAX_TAGS} per value ({} given)", tags.len()),
            ));
        }
        for t in &tags {
            if t.is_empty() || t.len() > 256 {
                return Err(Error::invalid("tags", "each tag must be 1 to 256 bytes"));
            }
        }
        Ok(Resolved {
            ttl,
            tags,
            jitter,
            stale_for,
            throttle: call.throttle.or(defaults.throttle).unwrap_or(Duration::from_secs(5)),
            soft_timeout: call.soft_timeout.or(defaults.soft_timeout),
            hard_timeout: call.hard_timeout.or(defaults.hard_timeout),
            eager_refresh,
        })
    }

    /// The TTL with jitter applied.
    pub(crate) fn jittered_ttl(&self) -> Duration {
        if self.jitter == 0.0 {
            return self.ttl;
        }
        let spread = rand::Rng::random_range(&mut rand::rng(), -self.jitter..=self.jitter);
        self.ttl.mul_f64(1.0 + spread).max(Duration::from_millis(1))
    }
}
