//! # Sessions: server-side, concurrency-safe, revocable, and kept through outages
//!
//! [`Sessions::create`] makes a session with an id of 256 bits from the OS-seeded CSPRNG
//! (URL-safe base64), bound to a user or anonymous, with an **idle** and an **absolute**
//! timeout, both enforced by the store (on Redis, by the scripts on Redis's clock).
//! [`Sessions::update`] is a **field-level merge**: concurrent updates of different fields
//! never lose each other (`null` removes a field). [`Sessions::rotate`] gives the session a
//! new id and kills the old one (for privilege changes); [`Sessions::list`] and
//! [`Sessions::revoke_all`] cover "log out everywhere". Oversized sessions are refused
//! with the size and the limit, and nothing stored changes.
//!
//! **Outages.** While Redis is away sessions live in SQLite: creates, updates, deletes,
//! rotations and revocations work there and are journaled, then written back to Redis on
//! recovery — a revocation made during the outage stays revoked, also for sessions created
//! before it. Sessions created *before* the outage are not readable during it (those users
//! sign in again); redkit does not mirror them locally, because a per-instance mirror
//! could replay stale data over newer writes made through other instances.
//!
//! [`layer::SessionLayer`] carries the id in a signed cookie (HttpOnly, Secure, SameSite).
//!
//! ```no_run
//! # async fn demo(redkit: redkit::Redkit) -> redkit::Result<()> {
//! use redkit::session::SessionOptions;
//! let sessions = redkit.sessions(SessionOptions::default())?;
//! let s = sessions.create(serde_json::json!({"cart": []}).as_object().unwrap().clone(), Some("user:7")).await?;
//! sessions.update(&s.id, serde_json::json!({"theme": "dark"}).as_object().unwrap().clone()).await?;
//! let s = sessions.rotate(&s.id).await?; // after login / privilege change
//! sessions.revoke_all("user:7").await?;   // log out everywhere
//! # Ok(()) }
//! ```

mod backend;
mod embedded;
pub mod layer;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use backend::{Patch, Session, SessionBackend, Updated};

use crate::core::route::{FallbackPolicy, Recovery, Route, Routed};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// Session defaults and limits.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Idle timeout (default 30 minutes).
    pub idle_ttl: Duration,
    /// Absolute timeout (default 12 hours).
    pub absolute_ttl: Duration,
    /// Largest session, in bytes of field names and JSON values (default 64 KiB).
    pub max_bytes: usize,
    /// Whether `get` resets the idle timer (default true).
    pub touch_on_get: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_ttl: Duration::from_secs(30 * 60),
            absolute_ttl: Duration::from_secs(12 * 3600),
            max_bytes: 64 * 1024,
            touch_on_get: true,
        }
    }
}

fn check_ttls(idle: Duration, absolute: Duration) -> Result<()> {
    if idle < Duration::from_secs(1) || idle > Duration::from_secs(366 * 86_400) {
        return Err(Error::invalid("idle_ttl", "must be 1 s to 366 days"));
    }
    if absolute < idle || absolute > Duration::from_secs(366 * 86_400) {
        return Err(Error::invalid(
            "absolute_ttl",
            "must be at least idle_ttl and at most 366 days",
        ));
    }
    Ok(())
}

/// Journaled in fallback, written back on recovery.
#[derive(Serialize, Deserialize)]
enum Change {
    Put(Session),
    Delete { id: String, user: Option<String> },
    RevokeAll { user: String },
}

impl Change {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("changes serialize")
    }
}

struct WriteBack {
    redis: Arc<redis::RedisSessions>,
}

#[async_trait::async_trait]
impl Recovery for WriteBack {
    fn capability(&self) -> &'static str {
        "session"
    }

    async fn replay(&self, entries: &[Vec<u8>]) -> Result<()> {
        for e in entries {
            let Ok(change) = serde_json::from_slice::<Change>(e) else {
                // Never let one unreadable entry keep Redis out of service forever.
                tracing::error!("skipping an unreadable session journal entry");
                continue;
            };
            match change {
                Change::Put(s) if s.expires_ms() > now_ms() => self.redis.put(&s).await?,
                Change::Put(s) => {
                    self.redis.delete(&s.id, s.user.as_deref()).await?;
                }
                Change::Delete { id, user } => {
                    self.redis.delete(&id, user.as_deref()).await?;
                }
                Change::RevokeAll { user } => {
                    self.redis.revoke_all(&user).await?;
                }
            }
        }
        Ok(())
    }
}

/// The session store of one `Redkit`. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    routed: Routed<dyn SessionBackend>,
    opts: SessionOptions,
}

fn new_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn check_id(id: &str) -> Result<()> {
    let ok = (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("id", "not a session id"))
    }
}

fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > 256 {
        return Err(Error::invalid("user", "1 to 256 bytes"));
    }
    Ok(())
}

impl Sessions {
    pub(crate) fn new(route: &Arc<Route>, opts: SessionOptions) -> Result<Self> {
        check_ttls(opts.idle_ttl, opts.absolute_ttl)?;
        if !(1..=16 << 20).contains(&opts.max_bytes) {
            return Err(Error::invalid("max_bytes", "must be 1 byte to 16 MiB"));
        }
        let redis = route
            .redis()
            .map(|core| Arc::new(redis::RedisSessions::new(core.clone())));
        if let Some(r) = &redis {
            route.register_recovery(Arc::new(WriteBack { redis: r.clone() }));
        }
        let embedded = Arc::new(embedded::EmbeddedSessions::new(route.embedded().clone())) as Arc<dyn SessionBackend>;
        Ok(Sessions {
            inner: Arc::new(Inner {
                routed: route.routed(
                    "session",
                    FallbackPolicy::Serve,
                    redis.map(|r| r as Arc<dyn SessionBackend>),
                    embedded,
                ),
                opts,
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &SessionOptions {
        &self.inner.opts
    }

    fn check_size(&self, data: &Map<String, Value>) -> Result<()> {
        for k in data.keys() {
            if k.is_empty() || k.len() > 256 {
                return Err(Error::invalid(
                    "data",
                    format!("field names must be 1 to 256 bytes ({k:?})"),
                ));
            }
        }
        let size = embedded::size_of(data);
        if size > self.inner.opts.max_bytes {
            return Err(Error::TooLarge {
                field: "session".into(),
                size,
                limit: self.inner.opts.max_bytes,
            });
        }
        Ok(())
    }

    /// Creates a session with the default timeouts.
    pub async fn create(&self, data: Map<String, Value>, user: Option<&str>) -> Result<Session> {
        self.create_with(data, user, self.inner.opts.idle_ttl, self.inner.opts.absolute_ttl)
            .await
    }

    /// Creates a session with its own idle and absolute timeouts.
    pub async fn create_with(
        &self,
        data: Map<String, Value>,
        user: Option<&str>,
        idle_ttl: Duration,
        absolute_ttl: Duration,
    ) -> Result<Session> {
        check_ttls(idle_ttl, absolute_ttl)?;
        if let Some(u) = user {
            check_user(u)?;
        }
        self.check_size(&data)?;
        let now = now_ms();
        let session = Session {
            id: new_id(),
            user: user.map(str::to_string),
            data,
            created_ms: now,
            last_seen_ms: now,
            idle_ms: idle_ttl.as_millis() as u64,
            absolute_deadline_ms: now + absolute_ttl.as_millis() as u64,
        };
        let entry = |stored: &Option<Session>| stored.clone().map(|s| Change::Put(s).encode());
        self.inner
            .routed
            .write_with(entry, |b| b.create(&session))
            .await?
            .ok_or_else(|| Error::Conflict("session id collision; retry".into()))
    }

    /// The live session `id` (touching its idle timer unless `touch_on_get` is off).
    pub async fn get(&self, id: &str) -> Result<Option<Session>> {
        check_id(id)?;
        let touch = self.inner.opts.touch_on_get;
        self.inner.routed.call(|b| b.get(id, touch)).await
    }

    /// Resets the idle timer; [`Error::NotFound`] if the session is gone.
    pub async fn extend(&self, id: &str) -> Result<Session> {
        check_id(id)?;
        let entry = |s: &Option<Session>| s.clone().map(|s| Change::Put(s).encode());
        self.inner
            .routed
            .write_with(entry, |b| b.get(id, true))
            .await?
            .ok_or_else(|| Error::NotFound(format!("session {id}")))
    }

    /// Merges `fields` into the session (a `null` value removes the field) and touches it.
    pub async fn update(&self, id: &str, fields: Map<String, Value>) -> Result<Session> {
        check_id(id)?;
        let mut patch = Patch::default();
        for (name, value) in fields {
            if name.is_empty() || name.len() > 256 {
                return Err(Error::invalid(
                    "data",
                    format!("field names must be 1 to 256 bytes ({name:?})"),
                ));
            }
            match value {
                Value::Null => patch.remove.push(name),
                v => patch.set.push((name, v.to_string())),
            }
        }
        let max = self.inner.opts.max_bytes;
        let entry = |u: &Updated| match u {
            Updated::Done(s) => Some(Change::Put(s.clone()).encode()),
            _ => None,
        };
        match self
            .inner
            .routed
            .write_with(entry, |b| b.update(id, &patch, max))
            .await?
        {
            Updated::Done(s) => Ok(s),
            Updated::Missing => Err(Error::NotFound(format!("session {id}"))),
            Updated::TooLarge(size) => Err(Error::TooLarge {
                field: "session".into(),
                size,
                limit: max,
            }),
        }
    }

    /// Deletes the session; returns whether it was live.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        check_id(id)?;
        Ok(self.take(id).await?.is_some())
    }

    /// Reads and deletes a live session in one atomic step (delete, and rotation's first
    /// half); in fallback the deletion is journaled.
    async fn take(&self, id: &str) -> Result<Option<Session>> {
        let entry = |s: &Option<Session>| {
            s.as_ref().map(|s| {
                Change::Delete {
                    id: s.id.clone(),
                    user: s.user.clone(),
                }
                .encode()
            })
        };
        self.inner.routed.write_with(entry, |b| b.take(id)).await
    }

    /// Moves the session to a new id (same data, user and deadlines); the old id is dead.
    pub async fn rotate(&self, id: &str) -> Result<Session> {
        check_id(id)?;
        let old = self
            .take(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("session {id}")))?;
        let fresh = Session {
            id: new_id(),
            last_seen_ms: now_ms(),
            ..old
        };
        let entry = || Change::Put(fresh.clone()).encode();
        self.inner.routed.write(entry, |b| b.put(&fresh)).await?;
        Ok(fresh)
    }

    /// The live sessions of `user`.
    pub async fn list(&self, user: &str) -> Result<Vec<Session>> {
        check_user(user)?;
        self.inner.routed.call(|b| b.list(user)).await
    }

    /// Deletes every session of `user` ("log out everywhere"); returns how many.
    pub async fn revoke_all(&self, user: &str) -> Result<u64> {
        check_user(user)?;
        let entry = || Change::RevokeAll { user: user.to_string() }.encode();
        self.inner.routed.write(entry, |b| b.revoke_all(user)).await
    }
}
