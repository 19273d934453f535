//! Locks on Redis: a sorted set of holders per name (token → lease expiry, Redis clock)
//! and a fence counter beside it under one hash tag: `rk:{lk:NAME}:h`, `rk:{lk:NAME}:f`.

use std::sync::Arc;
use std::time::Duration;

use super::backend::{Grant, LockBackend};
use crate::core::keys::encode;
use crate::core::redis::{LuaScript, RedisCore};
use crate::error::Result;

static ACQUIRE: LuaScript = LuaScript::new("lock_acquire", include_str!("acquire.lua"));
static EXTEND: LuaScript = LuaScript::new("lock_extend", include_str!("extend.lua"));
static RELEASE: LuaScript = LuaScript::new("lock_release", include_str!("release.lua"));
static RAISE_FENCE: LuaScript = LuaScript::new("lock_raise_fence", include_str!("raise_fence.lua"));

/// Locks on Redis.
pub struct RedisLocks {
    core: Arc<RedisCore>,
}

impl RedisLocks {
    pub(crate) fn new(core: Arc<RedisCore>) -> Self {
        RedisLocks { core }
    }
}

/// Names are encoded, so none can move the hash tag (`l}:f` is not `rk:{lk:l}:f}:h`).
fn holders(name: &str) -> String {
    format!("rk:{{lk:{}}}:h", encode(name))
}

fn fence(name: &str) -> String {
    format!("rk:{{lk:{}}}:f", encode(name))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

#[async_trait::async_trait]
impl LockBackend for RedisLocks {
    async fn acquire(&self, name: &str, token: &str, permits: u32, lease: Duration, min_fence: u64) -> Result<Grant> {
        let reply: Vec<i64> = self
            .core
            .script(
                &ACQUIRE,
                &[&holders(name), &fence(name)],
                &[&token, &permits, &ms(lease), &min_fence],
            )
            .await?;
        Ok(match reply.as_slice() {
            [1, fence, lease] => Grant::Acquired {
                fence: *fence as u64,
                lease: Duration::from_millis(*lease as u64),
            },
            [_, wait, ..] => Grant::Busy(Duration::from_millis((*wait).max(1) as u64)),
            _ => Grant::Busy(Duration::from_millis(1)),
        })
    }

    async fn extend(&self, name: &str, token: &str, lease: Duration) -> Result<bool> {
        let n: i64 = self
            .core
            .script(&EXTEND, &[&holders(name)], &[&token, &ms(lease)])
            .await?;
        Ok(n == 1)
    }

    async fn release(&self, name: &str, token: &str) -> Result<bool> {
        let n: i64 = self.core.script(&RELEASE, &[&holders(name)], &[&token]).await?;
        Ok(n == 1)
    }

    async fn raise_fence(&self, name: &str, at_least: u64) -> Result<()> {
        let _: i64 = self.core.script(&RAISE_FENCE, &[&fence(name)], &[&at_least]).await?;
        Ok(())
    }
}
