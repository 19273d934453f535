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
//! **Outages.** Sessions stay readable and writable while Redis is away, for every
//! session this instance has served: each answer from Redis is mirrored into SQLite (with
//! the version Redis gave it), and other instances' changes, deletions and revocations
//! reach the mirror through the backplane. In fallback, creates, updates, deletes,
//! rotations and revocations are served from SQLite and journaled as *operations* in the
//! same transaction; when Redis returns they are applied to what Redis holds then — a
//! field changes only if the outage wrote it later than anyone else, a deletion or
//! revocation always holds (also for sessions the instance never saw), and sessions used
//! during the outage keep their idle timers. Then the outage's copies are dropped. A
//! session this instance had not served before the outage reads as not found until Redis
//! is back.
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
mod mirror;
mod ops;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};
use tokio::task::JoinHandle;

pub use backend::{Patch, Revoked, Session, SessionBackend, Updated};
pub use redis::CHANNEL;

use crate::core::route::{FallbackPolicy, Route, Routed};
use crate::error::{Error, Result};
use crate::stats::now_ms;
use embedded::EmbeddedSessions;
use ops::Op;

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

/// How often expired sessions and dropped copies are swept from SQLite.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What every session store of one `Redkit` shares: the two backends, the mirror's
/// listener and the sweeper.
pub(crate) struct SessionsHub {
    routed: Routed<dyn SessionBackend>,
    activity: crate::stats::Activity<7>,
    listener: Option<Arc<mirror::MirrorListener>>,
    sweeper: JoinHandle<()>,
}

impl Drop for SessionsHub {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

impl SessionsHub {
    pub(crate) fn new(route: &Arc<Route>) -> Arc<Self> {
        let local = Arc::new(EmbeddedSessions::new(route.embedded().clone(), route.redis().is_some()));
        let mut listener = None;
        let mut mirrored = None;
        if let (Some(core), Some(backplane)) = (route.redis(), route.backplane()) {
            // A mirror from before this process started may have missed messages.
            let dropped = local.drop_mirror();
            route.spawn(async move {
                if let Err(e) = dropped.await {
                    tracing::warn!(error = %e, "remembering that the session mirror was dropped failed");
                }
            });
            let redis = Arc::new(redis::RedisSessions::new(core.clone(), backplane.instance().clone()));
            route.register_recovery(Arc::new(ops::SessionRecovery {
                redis: redis.clone(),
                local: local.clone(),
                journal: route.journal().clone(),
            }));
            let live = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let l = Arc::new(mirror::MirrorListener {
                instance: backplane.instance().clone(),
                local: local.clone(),
                breaker: route.breaker().clone(),
                route: Arc::downgrade(route),
                live: live.clone(),
            });
            let (backplane, weak) = (backplane.clone(), Arc::downgrade(&l) as _);
            route.spawn(async move { backplane.join(weak).await });
            listener = Some(l);
            mirrored = Some(Arc::new(mirror::Mirrored {
                redis,
                local: local.clone(),
                route: Arc::downgrade(route),
                live,
            }) as Arc<dyn SessionBackend>);
        }
        let sweeper = route.spawn(sweep(Arc::downgrade(&local)));
        let hub = Arc::new(SessionsHub {
            routed: route.routed("session", FallbackPolicy::Serve, mirrored, local),
            activity: crate::stats::Activity::new(SESSION_ACTIVITY),
            listener,
            sweeper,
        });
        let provider: std::sync::Weak<dyn crate::core::route::StatsProvider> = Arc::downgrade(&hub) as _;
        route.register_stats(provider);
        hub
    }
}

/// What `health()` counts for sessions, in this order.
const SESSION_ACTIVITY: [&str; 7] = ["created", "read", "missed", "updated", "deleted", "rotated", "revoked"];
const CREATED: usize = 0;
const READ: usize = 1;
const MISSED: usize = 2;
const UPDATED: usize = 3;
const DELETED: usize = 4;
const ROTATED: usize = 5;
const REVOKED: usize = 6;

impl crate::core::route::StatsProvider for SessionsHub {
    fn capability(&self) -> &'static str {
        "session"
    }

    fn snapshot(&self) -> serde_json::Value {
        self.activity.snapshot()
    }
}

async fn sweep(local: std::sync::Weak<EmbeddedSessions>) {
    // Soon after start (what an earlier run left), then every SWEEP_EVERY.
    let mut wait = Duration::from_secs(2);
    loop {
        tokio::time::sleep(wait).await;
        wait = crate::core::random::jittered(SWEEP_EVERY);
        let Some(local) = local.upgrade() else { return };
        match local.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "swept expired and dropped sessions"),
            Err(e) => tracing::warn!(error = %e, "sweeping sessions failed"),
        }
    }
}

/// The session store of one `Redkit`. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Arc<SessionsHub>,
    opts: SessionOptions,
}

fn new_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `id` could be a session id (16 to 128 of A-Z a-z 0-9 - _). Anything else names
/// no session (the HTTP server answers it as not found).
pub fn is_session_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_id(id: &str) -> Result<()> {
    if is_session_id(id) {
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
    pub(crate) fn new(hub: Arc<SessionsHub>, opts: SessionOptions) -> Result<Self> {
        check_ttls(opts.idle_ttl, opts.absolute_ttl)?;
        if !(1..=16 << 20).contains(&opts.max_bytes) {
            return Err(Error::invalid("max_bytes", "must be 1 byte to 16 MiB"));
        }
        Ok(Sessions {
            inner: Arc::new(Inner { hub, opts }),
        })
    }

    fn routed(&self) -> &Routed<dyn SessionBackend> {
        &self.inner.hub.routed
    }

    /// Whether this instance's session mirror hears other instances' changes now (it is
    /// filled only then; sessions it served since stay readable through an outage).
    /// Always false without Redis.
    pub fn mirror_live(&self) -> bool {
        self.inner
            .hub
            .listener
            .as_ref()
            .is_some_and(|l| l.live.load(std::sync::atomic::Ordering::Acquire))
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
            version: 0,
            stamps: Default::default(),
        };
        // Written as a fallback write (held back at recovery's tail like any), but with
        // nothing to journal: a new session reaches Redis through recovery's catch-up.
        let created = self
            .routed()
            .write(Vec::new, |b| b.create(&session))
            .await?
            .ok_or_else(|| Error::Conflict("session id collision; retry".into()))?;
        self.count(CREATED);
        Ok(created)
    }

    fn count(&self, what: usize) {
        self.inner.hub.activity.add(what);
    }

    /// The live session `id` (touching its idle timer unless `touch_on_get` is off).
    pub async fn get(&self, id: &str) -> Result<Option<Session>> {
        check_id(id)?;
        let touch = self.inner.opts.touch_on_get;
        let found = self.routed().read(|b| b.get(id, touch)).await?;
        self.count(if found.is_some() { READ } else { MISSED });
        Ok(found)
    }

    /// Resets the idle timer; [`Error::NotFound`] if the session is gone.
    pub async fn extend(&self, id: &str) -> Result<Session> {
        check_id(id)?;
        self.routed()
            .read(|b| b.get(id, true))
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
        let op = || {
            Op::Patch {
                id: id.to_string(),
                patch: patch.clone(),
            }
            .encode()
        };
        match self.routed().write(op, |b| b.update(id, &patch, max)).await? {
            Updated::Done(s) => {
                self.count(UPDATED);
                Ok(s)
            }
            Updated::Missing => Err(Error::NotFound(format!("session {id}"))),
            Updated::TooLarge(size) => Err(Error::TooLarge {
                field: "session".into(),
                size,
                limit: max,
            }),
        }
    }

    /// Deletes the session (logout); returns whether it was live. In an outage the
    /// logout is recorded even for a session this instance does not know, and holds once
    /// Redis is back.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        check_id(id)?;
        let op = || delete_op(id);
        // A session absent from Redis may be in another instance's outage store: its
        // tombstone must outlive it, and sessions made here live at most this long.
        let absent_keep = self.inner.opts.absolute_ttl;
        let live = self.routed().write(op, |b| b.delete(id, absent_keep)).await?.is_some();
        if live {
            self.count(DELETED);
        }
        Ok(live)
    }

    /// Moves the session to a new id (same data, user and deadlines); the old id is dead.
    /// Writes made to the old id elsewhere during an outage follow it to the new one.
    pub async fn rotate(&self, id: &str) -> Result<Session> {
        check_id(id)?;
        let fresh_id = new_id();
        let op = || {
            Op::Delete {
                id: id.to_string(),
                user: None,
                deadline_ms: 0,
                moved_to: Some(fresh_id.clone()),
            }
            .encode()
        };
        let moved = self
            .routed()
            .write(op, |b| b.rotate(id, &fresh_id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("session {id}")))?;
        self.count(ROTATED);
        Ok(moved)
    }

    /// The live sessions of `user`.
    pub async fn list(&self, user: &str) -> Result<Vec<Session>> {
        check_user(user)?;
        self.routed().read(|b| b.list(user)).await
    }

    /// Revokes every session of `user` ("log out everywhere"), including sessions created
    /// concurrently with it; returns how many live sessions it deleted.
    pub async fn revoke_all(&self, user: &str) -> Result<u64> {
        check_user(user)?;
        let op = || Op::RevokeAll { user: user.to_string() }.encode();
        let revoked = self.routed().write(op, |b| b.revoke_all(user)).await?.count;
        self.inner.hub.activity.counts_add(REVOKED, revoked);
        Ok(revoked)
    }
}

fn delete_op(id: &str) -> Vec<u8> {
    Op::Delete {
        id: id.to_string(),
        user: None,
        deadline_ms: 0,
        moved_to: None,
    }
    .encode()
}
