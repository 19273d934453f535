//! The session mirror: what this instance read or wrote through Redis, kept in SQLite so
//! that its users stay signed in through an outage.
//!
//! [`Mirrored`] wraps the Redis backend in the same trait and copies every answer into the
//! embedded store (without waiting), each with the version Redis gave it; the route
//! serves the copies only while the breaker is open. Other instances' changes reach the
//! mirror through the backplane ([`MirrorListener`]): a change drops the copy, a delete or
//! revoke drops it and remembers the deletion. Nothing is mirrored while the subscription
//! is down, and a mirror that may have missed messages — the subscription was
//! (re)established while Redis serves — is dropped whole, as L1 is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::backend::{Patch, Revoked, Session, SessionBackend, Updated};
use super::embedded::EmbeddedSessions;
use super::redis::{CHANNEL, RedisSessions};
use crate::core::backplane::Listener;
use crate::core::breaker::Breaker;
use crate::core::route::Route;
use crate::error::Result;

/// The Redis backend, mirrored into the embedded store.
pub(crate) struct Mirrored {
    pub redis: Arc<RedisSessions>,
    pub local: Arc<EmbeddedSessions>,
    pub route: Weak<Route>,
    /// Set by the listener: whether other instances' changes reach the mirror now.
    pub live: Arc<AtomicBool>,
}

impl Mirrored {
    /// Mirrors `s` — only while the backplane is live: a copy made while other instances'
    /// changes cannot reach it could be stale without anyone knowing.
    fn keep(&self, s: &Session) {
        if let Some(route) = self.route.upgrade() {
            route.clock().observe(s.version);
        }
        if self.live.load(Ordering::Acquire) {
            self.local.mirror(s.clone());
        }
    }
}

#[async_trait::async_trait]
impl SessionBackend for Mirrored {
    async fn create(&self, session: &Session) -> Result<Option<Session>> {
        let created = self.redis.create(session).await?;
        if let Some(s) = &created {
            self.keep(s);
        }
        Ok(created)
    }

    async fn rotate(&self, id: &str, fresh_id: &str) -> Result<Option<Session>> {
        let fresh = self.redis.rotate(id, fresh_id).await?;
        if let Some(s) = &fresh {
            self.local.forget(id, s.version);
            self.keep(s);
        }
        Ok(fresh)
    }

    async fn get(&self, id: &str, touch: bool) -> Result<Option<Session>> {
        let found = self.redis.get(id, touch).await?;
        match &found {
            Some(s) => self.keep(s),
            None => self.local.forget_older(id, u64::MAX),
        }
        Ok(found)
    }

    async fn update(&self, id: &str, patch: &Patch, max_bytes: usize) -> Result<Updated> {
        let updated = self.redis.update(id, patch, max_bytes).await?;
        match &updated {
            Updated::Done(s) => self.keep(s),
            Updated::Missing => self.local.forget_older(id, u64::MAX),
            Updated::TooLarge(_) => {}
        }
        Ok(updated)
    }

    async fn delete(&self, id: &str, absent_keep: Duration) -> Result<Option<Session>> {
        let deleted = self.redis.delete(id, absent_keep).await?;
        self.local.forget(id, deleted.as_ref().map_or(0, |s| s.version));
        Ok(deleted)
    }

    async fn list(&self, user: &str) -> Result<Vec<Session>> {
        let live = self.redis.list(user).await?;
        for s in &live {
            self.keep(s);
        }
        Ok(live)
    }

    async fn revoke_all(&self, user: &str) -> Result<Revoked> {
        let revoked = self.redis.revoke_all(user).await?;
        self.local.forget_user(user, revoked.stamp);
        for id in &revoked.ids {
            self.local.forget(id, revoked.stamp);
        }
        Ok(revoked)
    }
}

/// Other instances' session changes, applied to this instance's mirror.
pub(crate) struct MirrorListener {
    pub instance: Arc<str>,
    pub local: Arc<EmbeddedSessions>,
    pub breaker: Arc<Breaker>,
    pub route: Weak<Route>,
    pub live: Arc<AtomicBool>,
}

impl Listener for MirrorListener {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn deliver(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else { return };
        let mut parts = text.splitn(4, ' ');
        let (Some(from), Some(kind), Some(stamp), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Ok(stamp) = stamp.parse::<u64>() else { return };
        if let Some(route) = self.route.upgrade() {
            route.clock().observe(stamp);
        }
        if from == &*self.instance {
            return;
        }
        match kind {
            "c" => self.local.forget_older(name, stamp),
            "d" => self.local.forget(name, stamp),
            "r" => self.local.forget_user(name, stamp),
            _ => {}
        }
    }

    fn lost(&self) {
        self.live.store(false, Ordering::Release);
    }

    fn resync(&self) {
        self.live.store(true, Ordering::Release);
        // While Redis serves, a mirror that may have missed messages is dropped now; in an
        // outage it keeps serving, and recovery drops it once Redis is back.
        if self.breaker.is_closed() {
            let dropped = self.local.drop_mirror();
            if let Some(route) = self.route.upgrade() {
                route.spawn(async move {
                    if let Err(e) = dropped.await {
                        tracing::warn!(error = %e, "remembering that the session mirror was dropped failed");
                    }
                });
            }
        }
    }
}
