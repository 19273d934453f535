//! The operations a channel needs, on Redis and on SQLite, and the records they exchange.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Where a channel's stream stands: an offset inside an epoch. Offsets increase by one per
/// publication; the epoch changes whenever the stream's continuity is lost (a new stream,
/// Redis restarted without its data, the embedded store standing in during an outage), so a
/// position is only comparable with positions of the same epoch.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The stream's epoch.
    pub epoch: String,
    /// The last publication's offset (0: none yet).
    pub offset: u64,
}

/// One publication.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    /// Its offset in the channel's epoch.
    pub offset: u64,
    /// Any JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub data: serde_json::Value,
}

/// How much history a channel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// Most publications kept (0: none, pure fan-out).
    pub size: u64,
    /// Publications older than this go (zero: kept until pushed out by size).
    pub ttl: Duration,
}

/// A publish's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Where the publication landed.
    pub position: Position,
    /// An earlier publish with the same idempotency key answered this already.
    pub duplicate: bool,
}

/// A page of history.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Publications in the order asked for.
    pub publications: Vec<Publication>,
    /// The stream's position now.
    pub position: Position,
    /// The oldest offset the history still holds (`position.offset + 1` when it is empty).
    pub oldest: u64,
}

/// Channel operations; each publish is atomic (its offset, its history entry, its
/// idempotency record, and on Redis its announcement).
#[async_trait::async_trait]
pub trait ChannelBackend: Send + Sync {
    /// Appends `data` (JSON text) to `channel`, keeping `history`; with an idempotency key,
    /// a second publish within `dedupe` answers the first one's position.
    async fn publish(
        &self,
        channel: &str,
        data: &str,
        idempotency_key: Option<&str>,
        history: History,
        dedupe: Duration,
    ) -> Result<Published>;
    /// Up to `limit` publications after offset `after` (oldest first), or, `reverse`, the
    /// newest ones down from the end.
    async fn history(&self, channel: &str, after: u64, limit: usize, reverse: bool) -> Result<Page>;
}
