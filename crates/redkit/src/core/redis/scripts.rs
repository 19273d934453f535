//! Lua script registry.
//!
//! Each capability keeps its scripts as `.lua` files beside its `redis.rs` and declares
//! them as [`LuaScript`] statics with `include_str!`. Scripts are sent by `EVALSHA`; when
//! Redis answers `NOSCRIPT` (first use, a `SCRIPT FLUSH`, or a Redis restart) the script is
//! loaded and the call retried once, transparently. Because every key a script touches is
//! passed in `KEYS`, scripts route correctly on Redis Cluster (keys share a hash tag).

use std::sync::OnceLock;

use redis::{Cmd, ErrorKind, FromRedisValue, ServerErrorKind, ToRedisArgs};

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
        let evalsha = self.evalsha(keys, args);
        match evalsha.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script().load_async(conn).await?;
                evalsha.query_async(conn).await
            }
            done => done,
        }
    }

    /// `EVALSHA sha numkeys keys… args…`, each argument written once into the command's
    /// buffer (redis-rs's `ScriptInvocation` copies each through two vectors of its own
    /// first: a tenth of a job worker's CPU went to that).
    fn evalsha(&self, keys: &[&dyn ToRedisArgsDyn], args: &[&dyn ToRedisArgsDyn]) -> Cmd {
        let sha = self.sha();
        let numkeys: usize = keys.iter().map(|k| k.arg_count()).sum();
        let mut cmd = Cmd::with_capacity(3 + numkeys + args.len(), 64 + sha.len());
        cmd.arg("EVALSHA").arg(sha).arg(numkeys);
        for a in keys.iter().chain(args) {
            a.write_to(&mut cmd);
        }
        cmd
    }
}

/// Object-safe view of [`ToRedisArgs`], so scripts can take mixed argument types.
pub trait ToRedisArgsDyn: Sync {
    /// Appends this value's arguments to `cmd`.
    fn write_to(&self, cmd: &mut Cmd);
    /// How many arguments [`write_to`](Self::write_to) appends.
    fn arg_count(&self) -> usize;
}

impl<T: ToRedisArgs + Sync> ToRedisArgsDyn for T {
    fn write_to(&self, cmd: &mut Cmd) {
        self.write_redis_args(cmd);
    }

    fn arg_count(&self) -> usize {
        self.num_of_args()
    }
}
