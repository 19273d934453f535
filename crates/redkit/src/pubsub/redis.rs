//! Channels on Redis: one stream per channel (entry ids `0-OFFSET`, so history is read by
//! offset), trimmed by size and age, and a meta hash with the epoch and the last offset,
//! all under one hash tag per channel (`rk:{ch:NAME}:…`), so the script runs on Cluster.
//! Each publication is announced on the backplane channel [`CHANNEL`] in the same script:
//! every instance fans it out to its own subscribers over its one subscription.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::backend::{ChannelBackend, History, Page, Position, Publication, Published};
use crate::core::keys::encode;
use crate::core::redis::{LuaScript, RedisCore, ToRedisArgsDyn};
use crate::error::{Error, Result};

/// The backplane channel publications are announced on.
pub const CHANNEL: &str = "rk:ch:bp";

static PUBLISH: LuaScript = LuaScript::new("channel_publish", include_str!("publish.lua"));

/// How long a channel's epoch and offset outlive its last publication.
const META_TTL: Duration = Duration::from_secs(7 * 86_400);

fn base(channel: &str) -> String {
    format!("rk:{{ch:{}}}", encode(channel))
}

/// Channels on Redis.
pub struct RedisChannels {
    core: Arc<RedisCore>,
    instance: Arc<str>,
}

impl RedisChannels {
    pub(crate) fn new(core: Arc<RedisCore>, instance: Arc<str>) -> Self {
        RedisChannels { core, instance }
    }
}

type Entry = (String, HashMap<String, String>);

fn offset_of(id: &str) -> Result<u64> {
    id.strip_prefix("0-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Codec(format!("stream entry {id} is not an offset")))
}

fn publication(e: Entry) -> Result<Publication> {
    let (id, fields) = e;
    let data = fields
        .get("d")
        .ok_or_else(|| Error::Codec(format!("stream entry {id} has no data")))?;
    Ok(Publication {
        offset: offset_of(&id)?,
        data: serde_json::from_str(data)?,
    })
}

#[async_trait::async_trait]
impl ChannelBackend for RedisChannels {
    async fn publish(
        &self,
        channel: &str,
        data: &str,
        idempotency_key: Option<&str>,
        history: History,
        dedupe: Duration,
    ) -> Result<Published> {
        let base = base(channel);
        let (stream, meta) = (format!("{base}:s"), format!("{base}:m"));
        let dedupe_key = format!("{base}:i:{}", encode(idempotency_key.unwrap_or_default()));
        let header = serde_json::json!({ "c": channel, "i": &*self.instance }).to_string();
        let args: [&dyn ToRedisArgsDyn; 9] = [
            &data,
            &if idempotency_key.is_some() { "1" } else { "0" },
            &history.size,
            &(history.ttl.as_millis() as u64),
            &(dedupe.as_millis().max(1) as u64),
            &crate::core::random::token(),
            &(META_TTL.max(history.ttl).as_millis() as u64),
            &CHANNEL,
            &header,
        ];
        let (epoch, offset, duplicate): (String, u64, i64) = self
            .core
            .script(&PUBLISH, &[&stream, &meta, &dedupe_key], &args)
            .await?;
        Ok(Published {
            position: Position { epoch, offset },
            duplicate: duplicate == 1,
        })
    }

    async fn history(&self, channel: &str, after: u64, limit: usize, reverse: bool) -> Result<Page> {
        let base = base(channel);
        let (stream, meta) = (format!("{base}:s"), format!("{base}:m"));
        let mut pipe = redis::pipe();
        pipe.hget(&meta, "epoch").hget(&meta, "offset");
        pipe.cmd("XRANGE").arg(&stream).arg("-").arg("+").arg("COUNT").arg(1);
        if limit == 0 {
            pipe.cmd("XRANGE").arg(&stream).arg("+").arg("+");
        } else if reverse {
            pipe.cmd("XREVRANGE")
                .arg(&stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(limit);
        } else {
            pipe.cmd("XRANGE")
                .arg(&stream)
                .arg(format!("(0-{after}"))
                .arg("+")
                .arg("COUNT")
                .arg(limit);
        }
        let (epoch, offset, first, entries): (Option<String>, Option<u64>, Vec<Entry>, Vec<Entry>) =
            self.core.pipeline("channel_history", &pipe).await?;
        let offset = offset.unwrap_or(0);
        let oldest = match first.into_iter().next() {
            Some((id, _)) => offset_of(&id)?,
            None => offset + 1,
        };
        let publications = if limit == 0 {
            Vec::new()
        } else {
            entries.into_iter().map(publication).collect::<Result<_>>()?
        };
        Ok(Page {
            publications,
            position: Position {
                epoch: epoch.unwrap_or_default(),
                offset,
            },
            oldest,
        })
    }
}
