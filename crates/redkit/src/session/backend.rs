//! The atomic session operations, on Redis and on SQLite.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;

/// A session as stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Its id (≥ 256 random bits, URL-safe base64).
    pub id: String,
    /// The user it belongs to, if any.
    pub user: Option<String>,
    /// Its data.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, serde_json::Value>))]
    pub data: Map<String, Value>,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last touched, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// Idle timeout in ms: the session dies this long after `last_seen_ms`.
    pub idle_ms: u64,
    /// Absolute deadline, ms since the Unix epoch, whatever the activity.
    pub absolute_deadline_ms: u64,
    /// The stamp of its last change (hybrid-logical clock, µs since the Unix epoch);
    /// grows with every change of its data.
    #[serde(default)]
    pub version: u64,
    /// When each data field was last set or removed (a removed field keeps its stamp), so
    /// that an older write replayed after an outage cannot overwrite a newer one.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub(crate) stamps: BTreeMap<String, u64>,
}

impl Session {
    /// When it expires if left idle (ms since the Unix epoch).
    pub fn expires_ms(&self) -> u64 {
        (self.last_seen_ms + self.idle_ms).min(self.absolute_deadline_ms)
    }

    /// Whether it is past a deadline at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_ms()
    }
}

/// What `update` does to fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Patch {
    /// Fields to set (serialized JSON values).
    pub set: Vec<(String, String)>,
    /// Fields to remove.
    pub remove: Vec<String>,
}

/// The result of an update.
#[derive(Debug, Clone)]
pub enum Updated {
    /// Applied; the session after it.
    Done(Session),
    /// No such (live) session.
    Missing,
    /// The session would grow to this many bytes, over the limit; nothing changed.
    TooLarge(usize),
}

/// What "log out everywhere" did.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    /// Live sessions deleted.
    pub count: u64,
    /// The revoke stamp: sessions of the user created before it are dead.
    pub stamp: u64,
    /// The ids it found for the user.
    pub ids: Vec<String>,
}

/// Session operations; each is atomic per session.
#[async_trait::async_trait]
pub trait SessionBackend: Send + Sync {
    /// Stores a new session and returns it as stored (the store's clock stamps its
    /// times); `None` if the id is taken.
    async fn create(&self, session: &Session) -> Result<Option<Session>>;
    /// Moves live session `id` to `fresh_id` (same user, data, field stamps and deadlines;
    /// touched now); the old id is dead, and operations on it replayed later follow it to
    /// the new one. `None` if `id` is not live.
    async fn rotate(&self, id: &str, fresh_id: &str) -> Result<Option<Session>>;
    /// Reads a live session, optionally touching its idle timer.
    async fn get(&self, id: &str, touch: bool) -> Result<Option<Session>>;
    /// Merges fields into a live session (touching it), refusing growth past `max_bytes`.
    async fn update(&self, id: &str, patch: &Patch, max_bytes: usize) -> Result<Updated>;
    /// Deletes a session (logout) and returns it as it was, its `version` being the stamp
    /// of the deletion; in an outage the deletion is recorded even for a session this
    /// instance does not know, so it holds once Redis is back. On Redis a session not
    /// there (it may be in another instance's outage store, to be written back when that
    /// instance recovers) gets a tombstone all the same, kept `absent_keep`.
    async fn delete(&self, id: &str, absent_keep: Duration) -> Result<Option<Session>>;
    /// The live sessions of `user`.
    async fn list(&self, user: &str) -> Result<Vec<Session>>;
    /// Revokes every session of `user` created before now.
    async fn revoke_all(&self, user: &str) -> Result<Revoked>;
}
