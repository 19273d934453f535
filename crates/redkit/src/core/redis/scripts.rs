//! Lua script registry.
//!
//! Each capability keeps its scripts as `.lua` files beside its `redis.rs` and declares
//! them as [`LuaScript`] statics with `include_str!`. Scripts are sent by `EVALSHA`; when
//! Redis answers `NOSCRIPT` (first use, a `SCRIPT FLUSH`, or a Redis restart) the script is
//! loaded and the call retried once, transparently. Because every key a script touches is
//! passed in `KEYS`, scripts route correctly on Redis Cluster (keys share a hash tag).

use std::sync::OnceLock;

use redis::{FromRedisValue, ToRedisArgs};

/// A named Lua script, run through [`RedisCore::script`](super::RedisCore::script).
pub struct LuaScript {
    name: &'static str,
    source: &'static str,
    script: OnceLock<redis::Script>,
}

impl LuaScript {
    /// Declares a script; `source` is usually `include_str!("name.lua")`.
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        LuaScript {
            name,
            source,
            script: OnceLock::new(),
        }
    }

    fn script(&self) -> &redis::Script {
        self.script.get_or_init(|| redis::Script::new(self.source))
    }

    /// The script's name (used in stats and errors).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The SHA1 Redis knows the script by.
    pub fn sha(&self) -> &str {
        self.script().get_hash()
    }

    /// Runs the script with `keys` and `args` on `conn`: EVALSHA, loading on NOSCRIPT.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        conn: &mut super::Conn,
        keys: &[&dyn ToRedisArgsDyn],
        args: &[&dyn ToRedisArgsDyn],
    ) -> redis::RedisResult<T> {
        let mut invocation = self.script().prepare_invoke();
        for k in keys {
            invocation.key(KeyArg(*k));
        }
        for a in args {
            invocation.arg(KeyArg(*a));
        }
        invocation.invoke_async(conn).await
    }
}

/// Object-safe view of [`ToRedisArgs`], so scripts can take mixed argument types.
pub trait ToRedisArgsDyn: Sync {
    /// Appends this value's arguments to `out`.
    fn write_args(&self, out: &mut Vec<Vec<u8>>);
}

impl<T: ToRedisArgs + Sync> ToRedisArgsDyn for T {
    fn write_args(&self, out: &mut Vec<Vec<u8>>) {
        out.extend(self.to_redis_args());
    }
}

struct KeyArg<'a>(&'a dyn ToRedisArgsDyn);

impl ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let mut args = Vec::new();
        self.0.write_args(&mut args);
        for a in args {
            out.write_arg(&a);
        }
    }
}
