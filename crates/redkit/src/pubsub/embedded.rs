//! Channels in SQLite: the store without Redis, and the stand-in while Redis is away (with
//! an epoch of its own, so no position of Redis's stream is ever taken for one of these).
//! A publish is one transaction: offset, history entry, trimming, idempotency record, and
//! in an outage its journal operation.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::backend::{ChannelBackend, History, Page, Position, Publication, Published};
use super::fanout::{Fanout, Live};
use crate::core::embedded::{EmbeddedStore, Generation};
use crate::core::journal::pending;
use crate::error::Result;
use crate::stats::now_ms;

/// Channels in SQLite.
pub struct EmbeddedChannels {
    store: Arc<EmbeddedStore>,
    generation: Arc<Generation>,
    fanout: Arc<Fanout>,
}

impl EmbeddedChannels {
    pub(crate) fn new(store: Arc<EmbeddedStore>, fanout: Arc<Fanout>) -> Self {
        EmbeddedChannels {
            generation: store.generation("channel"),
            store,
            fanout,
        }
    }

    /// After an outage: its streams become invisible at once (the next publish starts a
    /// new epoch; see `Recovery::seal`).
    pub(crate) fn seal(&self) -> crate::core::route::BoxFuture<'static, Result<()>> {
        self.generation.seal()
    }

    /// Deletes the streams [`EmbeddedChannels::seal`] made invisible; those of the current
    /// generation stay.
    pub(crate) fn forget_outage(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (generation, store) = (self.generation.clone(), self.store.clone());
        async move {
            let generation = generation.current() as i64;
            store
                .sql("channel_forget_outage", move |c| {
                    let tx = c.transaction()?;
                    tx.execute(
                        "DELETE FROM channel_history WHERE channel IN
                           (SELECT channel FROM channel_meta WHERE gen < ?1)",
                        [generation],
                    )?;
                    tx.execute("DELETE FROM channel_meta WHERE gen < ?1", [generation])?;
                    tx.execute("DELETE FROM channel_dedupe", [])?;
                    tx.commit()?;
                    Ok(())
                })
                .await
        }
    }
}

/// The channel's epoch and offset in generation `generation`, if it has a stream there.
fn meta(c: &Connection, channel: &str, generation: i64) -> Result<Option<Position>> {
    Ok(
        c.prepare_cached("SELECT epoch, offset FROM channel_meta WHERE channel = ?1 AND gen = ?2")?
            .query_row(params![channel, generation], |r| {
                Ok(Position {
                    epoch: r.get(0)?,
                    offset: r.get::<_, i64>(1)? as u64,
                })
            })
            .optional()?,
    )
}

#[async_trait::async_trait]
impl ChannelBackend for EmbeddedChannels {
    async fn publish(
        &self,
        channel: &str,
        data: &str,
        idempotency_key: Option<&str>,
        history: History,
        dedupe: Duration,
    ) -> Result<Published> {
        let generation = self.generation.current() as i64;
        let value: serde_json::Value = serde_json::from_str(data)?;
        let (channel, data, key, op, fanout) = (
            channel.to_string(),
            data.to_string(),
            idempotency_key.map(str::to_string),
            pending(),
            self.fanout.clone(),
        );
        self.store
            .sql("channel_publish", move |c| {
                let now = now_ms() as i64;
                let tx = c.transaction()?;
                if let Some(k) = &key {
                    let prev: Option<(String, i64)> = tx
                        .prepare_cached(
                            "SELECT epoch, offset FROM channel_dedupe WHERE channel = ?1 AND key = ?2 AND until_ms > ?3",
                        )?
                        .query_row(params![channel, k, now], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    if let Some((epoch, offset)) = prev {
                        return Ok(Published {
                            position: Position {
                                epoch,
                                offset: offset as u64,
                            },
                            duplicate: true,
                        });
                    }
                }
                let current = meta(&tx, &channel, generation)?;
                let epoch = current
                    .as_ref()
                    .map_or_else(|| format!("l-{}", crate::core::random::token()), |p| p.epoch.clone());
                let offset = current.map_or(0, |p| p.offset) + 1;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO channel_meta (channel, epoch, offset, gen) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![channel, epoch, offset as i64, generation])?;
                if offset == 1 {
                    tx.execute("DELETE FROM channel_history WHERE channel = ?1", [&channel])?;
                }
                if history.size > 0 {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO channel_history (channel, offset, data, at_ms) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![channel, offset as i64, data, now])?;
                    let oldest_kept = offset as i64 - history.size as i64;
                    let too_old = if history.ttl.is_zero() { 0 } else { now - history.ttl.as_millis() as i64 };
                    tx.prepare_cached(
                        "DELETE FROM channel_history WHERE channel = ?1 AND (offset <= ?2 OR at_ms < ?3)",
                    )?
                    .execute(params![channel, oldest_kept, too_old])?;
                }
                if let Some(k) = &key {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO channel_dedupe (channel, key, epoch, offset, until_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![channel, k, epoch, offset as i64, now + dedupe.as_millis() as i64])?;
                    tx.prepare_cached("DELETE FROM channel_dedupe WHERE channel = ?1 AND until_ms <= ?2")?
                        .execute(params![channel, now])?;
                }
                if let Some(op) = op {
                    op.record(&tx)?;
                }
                tx.commit()?;
                // Delivered here, on the store's one thread, so subscribers get
                // publications in offset order.
                fanout.deliver(
                    &channel,
                    Live {
                        epoch: epoch.clone(),
                        publication: Publication { offset, data: value },
                    },
                );
                Ok(Published {
                    position: Position { epoch, offset },
                    duplicate: false,
                })
            })
            .await
    }

    async fn history(&self, channel: &str, after: u64, limit: usize, reverse: bool) -> Result<Page> {
        let generation = self.generation.current() as i64;
        let channel = channel.to_string();
        self.store
            .sql("channel_history", move |c| {
                let position = meta(c, &channel, generation)?.unwrap_or(Position {
                    epoch: String::new(),
                    offset: 0,
                });
                let in_gen = position.offset > 0;
                let oldest: Option<i64> = if in_gen {
                    c.prepare_cached("SELECT MIN(offset) FROM channel_history WHERE channel = ?1")?
                        .query_row([&channel], |r| r.get(0))?
                } else {
                    None
                };
                let mut publications = Vec::new();
                if in_gen && limit > 0 {
                    let sql = if reverse {
                        "SELECT offset, data FROM channel_history WHERE channel = ?1 AND offset > ?2
                         ORDER BY offset DESC LIMIT ?3"
                    } else {
                        "SELECT offset, data FROM channel_history WHERE channel = ?1 AND offset > ?2
                         ORDER BY offset LIMIT ?3"
                    };
                    let after = if reverse { 0 } else { after as i64 };
                    let mut stmt = c.prepare_cached(sql)?;
                    let rows = stmt.query_map(params![channel, after, limit as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })?;
                    for row in rows {
                        let (offset, data) = row?;
                        publications.push(Publication {
                            offset: offset as u64,
                            data: serde_json::from_str(&data)?,
                        });
                    }
                }
                Ok(Page {
                    publications,
                    oldest: oldest.map_or(position.offset + 1, |o| o as u64),
                    position,
                })
            })
            .await
    }
}
