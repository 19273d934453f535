//! The cache's L2 on Redis.
//!
//! Layout (one hash tag per namespace, so every script and pipeline of a namespace stays
//! in one slot on Redis Cluster):
//! - `rk:{c:NS}:k:KEY` — the record (string), `PX` = TTL + stale window;
//! - `rk:{c:NS}:tz:TAG` — the keys filed under a tag, a sorted set by when each expires
//!   (pruned as it is written, so it holds only keys still alive), expiring with its
//!   longest-lived member;
//! - `rk:{c:NS}:l:KEY` — the short stampede lock.
//!
//! Every change is announced on the backplane channel in the same round trip.

use std::sync::Arc;
use std::time::Duration;

use super::backend::{CacheBackend, KeysPage, L2Record, SetItem};
use super::backplane::{CHANNEL, Invalidation, Message};
use crate::core::redis::{LuaScript, RedisCore, ToRedisArgsDyn};
use crate::error::Result;

static INVALIDATE_TAG: LuaScript = LuaScript::new("cache_invalidate_tag", include_str!("invalidate_tag.lua"));
static SET_MANY: LuaScript = LuaScript::new("cache_set", include_str!("set_many.lua"));
static UNLOCK: LuaScript = LuaScript::new("cache_unlock", include_str!("unlock.lua"));

/// How many keys one UNLINK or SCAN step handles.
const BATCH: usize = 500;

/// Most SCAN steps behind one page of [`CacheBackend::keys`].
const MAX_SCANS_PER_PAGE: usize = 16;

/// L2 on Redis.
pub struct RedisCache {
    core: Arc<RedisCore>,
    instance: Arc<str>,
}

fn key_prefix(ns: &str) -> String {
    format!("rk:{{c:{ns}}}:k:")
}

fn tag_key(ns: &str, tag: &str) -> String {
    format!("rk:{{c:{ns}}}:tz:{tag}")
}

fn lock_key(ns: &str, key: &str) -> String {
    format!("rk:{{c:{ns}}}:l:{key}")
}

impl RedisCache {
    pub(crate) fn new(core: Arc<RedisCore>, instance: Arc<str>) -> Self {
        RedisCache { core, instance }
    }

    fn announce(&self, ns: &str, what: Invalidation) -> Vec<u8> {
        Message::new(&self.instance, ns, what).encode()
    }

    async fn scan_page(&self, ns: &str, pattern: &str, cursor: &str, count: usize) -> Result<(String, Vec<String>)> {
        let prefix = key_prefix(ns);
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}{pattern}"))
            .arg("COUNT")
            .arg(count);
        let (next, keys): (String, Vec<String>) = self.core.query_on_node_of("cache_scan", &prefix, &scan).await?;
        let keys = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        Ok((next, keys))
    }
}

#[async_trait::async_trait]
impl CacheBackend for RedisCache {
    async fn get_many(&self, ns: &str, keys: &[&str]) -> Result<Vec<Option<L2Record>>> {
        // GET + PTTL per key, pipelined: one round trip, and about a seventh of the Redis CPU
        // of the same two calls wrapped in a Lua script (`bench/run` profile: 0.9 µs against
        // 6.4 µs per read, INFO commandstats). Not atomic, so a record can expire between
        // its GET and its PTTL (-2); and Redis answers PTTL 0 in a key's last millisecond.
        // Either is gone, as the backend contract says ([`L2Record::remaining`]).
        let prefix = key_prefix(ns);
        let mut pipe = redis::pipe();
        for key in keys {
            let full = format!("{prefix}{key}");
            pipe.get(&full).pttl(&full);
        }
        // The flat reply (value, pttl, value, pttl, …) decodes pairwise.
        let replies: Vec<(Option<Vec<u8>>, i64)> = self.core.pipeline("cache_get", &pipe).await?;
        let rows = replies
            .into_iter()
            .map(|(bytes, pttl)| {
                let remaining = match pttl {
                    -2 | 0 => return None,
                    // No expiry cannot happen for cache records; treat it as long-lived.
                    ..0 => Duration::MAX,
                    ms => Duration::from_millis(ms as u64),
                };
                bytes.map(|bytes| L2Record { bytes, remaining })
            })
            .collect();
        Ok(rows)
    }

    async fn set_many(&self, ns: &str, items: &[SetItem]) -> Result<()> {
        let prefix = key_prefix(ns);
        let message = self.announce(ns, Invalidation::Keys(items.iter().map(|i| i.key.clone()).collect()));
        if items.iter().all(|i| i.tags.is_empty()) {
            // Without tags no Redis clock is needed, and MULTI/EXEC keeps the writes and
            // their announcement just as atomic as the script, at a fraction of Redis's
            // CPU: every command a script calls costs Redis about 3 µs beyond the command
            // itself (bench/PROFILES.md), and this is the hot write.
            let mut pipe = redis::pipe();
            pipe.atomic();
            for item in items {
                pipe.cmd("SET")
                    .arg(format!("{prefix}{}", item.key))
                    .arg(&item.bytes)
                    .arg("PX")
                    .arg(item.ttl_ms.max(1));
            }
            pipe.publish(CHANNEL, message);
            self.core.transaction_on_node_of("cache_set", &prefix, &pipe).await?;
            return Ok(());
        }
        let mut keys: Vec<String> = items.iter().map(|i| format!("{prefix}{}", i.key)).collect();
        keys.extend(items.iter().flat_map(|i| i.tags.iter().map(|t| tag_key(ns, t))));
        let mut args: Vec<Vec<u8>> = vec![CHANNEL.into(), message, items.len().to_string().into()];
        for item in items {
            args.push(item.bytes.clone());
            args.push(item.ttl_ms.max(1).to_string().into());
            args.push(item.key.clone().into());
            args.push(item.tags.len().to_string().into());
        }
        let key_refs: Vec<&dyn ToRedisArgsDyn> = keys.iter().map(|k| k as _).collect();
        let arg_refs: Vec<&dyn ToRedisArgsDyn> = args.iter().map(|a| a as _).collect();
        let _: u64 = self.core.script(&SET_MANY, &key_refs, &arg_refs).await?;
        Ok(())
    }

    async fn delete(&self, ns: &str, keys: &[String]) -> Result<u64> {
        // UNLINKs of BATCH keys and the announcement, in one MULTI/EXEC (as set_many).
        let prefix = key_prefix(ns);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in keys.chunks(BATCH) {
            let unlink = pipe.cmd("UNLINK");
            for k in chunk {
                unlink.arg(format!("{prefix}{k}"));
            }
        }
        pipe.publish(CHANNEL, self.announce(ns, Invalidation::Keys(keys.to_vec())));
        let replies = self.core.transaction_on_node_of("cache_delete", &prefix, &pipe).await?;
        // UNLINK answers with how many of its keys existed; the last reply is PUBLISH's.
        let unlinked = &replies[..replies.len().saturating_sub(1)];
        Ok(unlinked
            .iter()
            .map(|reply| match reply {
                redis::Value::Int(n) => *n as u64,
                _ => 0,
            })
            .sum())
    }

    async fn invalidate_tag(&self, ns: &str, tag: &str) -> Result<u64> {
        let (tag_key, prefix) = (tag_key(ns, tag), key_prefix(ns));
        let mut removed = 0;
        // Steps of BATCH keys until the tag is empty; keys filed under it meanwhile go too,
        // but a tag that keeps filling cannot hold the call for ever.
        let steps = 1 + self
            .core
            .query::<u64>("cache_tag_size", redis::cmd("ZCARD").arg(&tag_key))
            .await? as usize
            / BATCH;
        for _ in 0..=steps {
            let (gone, left): (u64, u64) = self
                .core
                .script(&INVALIDATE_TAG, &[&tag_key], &[&prefix, &BATCH])
                .await?;
            removed += gone;
            if left == 0 {
                break;
            }
        }
        let announce = self.announce(ns, Invalidation::Tag(tag.to_string()));
        self.core
            .query::<()>("cache_publish", redis::cmd("PUBLISH").arg(CHANNEL).arg(announce))
            .await?;
        Ok(removed)
    }

    async fn invalidate_pattern(&self, ns: &str, pattern: &str) -> Result<u64> {
        let prefix = key_prefix(ns);
        let mut cursor = "0".to_string();
        let mut removed = 0;
        loop {
            let (next, keys) = self.scan_page(ns, pattern, &cursor, BATCH * 2).await?;
            for chunk in keys.chunks(BATCH) {
                let mut unlink = redis::cmd("UNLINK");
                for k in chunk {
                    unlink.arg(format!("{prefix}{k}"));
                }
                removed += self.core.query::<u64>("cache_unlink", &unlink).await?;
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        let announce = self.announce(ns, Invalidation::Pattern(pattern.to_string()));
        self.core
            .query::<()>("cache_publish", redis::cmd("PUBLISH").arg(CHANNEL).arg(announce))
            .await?;
        Ok(removed)
    }

    async fn keys(&self, ns: &str, pattern: &str, cursor: Option<&str>, limit: usize) -> Result<KeysPage> {
        if let Some(c) = cursor
            && (c.is_empty() || c.len() > 20 || !c.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(crate::error::Error::invalid(
                "cursor",
                "not a cursor this listing returned",
            ));
        }
        let mut cursor = cursor.unwrap_or("0").to_string();
        let mut keys = Vec::new();
        // A bounded number of SCAN steps per page: a sparse pattern answers fewer keys (or
        // none) with a cursor to go on, as SCAN itself does.
        for _ in 0..MAX_SCANS_PER_PAGE {
            let (next, mut page) = self.scan_page(ns, pattern, &cursor, limit.max(100)).await?;
            keys.append(&mut page);
            cursor = next;
            if cursor == "0" || keys.len() >= limit {
                break;
            }
        }
        Ok(KeysPage {
            keys,
            next_cursor: (cursor != "0").then_some(cursor),
        })
    }

    async fn try_lock(&self, ns: &str, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut set = redis::cmd("SET");
        set.arg(lock_key(ns, key))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let reply: Option<String> = self.core.query("cache_lock", &set).await?;
        Ok(reply.is_some())
    }

    async fn unlock(&self, ns: &str, key: &str, token: &str) -> Result<()> {
        let _: i64 = self.core.script(&UNLOCK, &[&lock_key(ns, key)], &[&token]).await?;
        Ok(())
    }
}
