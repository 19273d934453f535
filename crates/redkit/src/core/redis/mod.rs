//! The Redis connection core: every byte redkit sends to Redis goes through here.
//!
//! [`RedisCore`] owns
//! - one multiplexed connection (`ConnectionManager`, or a cluster connection) for ordinary
//!   commands, which reconnects by itself with exponential backoff and jitter;
//! - a small bounded pool of dedicated connections for blocking commands, whose timeout is
//!   the block time plus the response timeout;
//! - the per-call response timeout, so no call waits longer than configured;
//! - the classification of failures: a timeout or an I/O error counts against the circuit
//!   breaker; `LOADING` (Redis still reading its dataset) hands traffic to the fallback
//!   without counting as a failure and is waited out by the recovery prober; an error
//!   *answer* (a script error, `WRONGTYPE`) proves Redis is alive and goes to the caller;
//! - per-operation statistics.
//!
//! Capabilities call [`RedisCore::query`], [`RedisCore::pipeline`], [`RedisCore::script`],
//! [`RedisCore::blocking`] or the general [`RedisCore::call`].

mod connect;
mod info;
mod scripts;

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult};
use tokio::sync::Semaphore;

pub use connect::Conn;
pub use info::RedisInfo;
pub use scripts::{LuaScript, ToRedisArgsDyn};

use crate::config::RedisConfig;
use crate::core::breaker::Breaker;
use crate::error::{Error, Result};
use crate::stats::{LastError, OpStats, now_ms};
use connect::Connector;

/// The result of one recovery probe.
pub(crate) enum Probe {
    /// Redis answered PING on this fresh connection.
    Ready(Conn),
    /// Redis is up but still loading its dataset.
    Loading,
    /// Redis could not be reached.
    Down(String),
}

/// How a Redis error bears on Redis's health.
enum Health {
    /// Redis answered; the error (if any) is about the command.
    Alive,
    /// Redis is loading its dataset: not a failure, but not usable either.
    Loading,
    /// Redis did not answer or the connection broke (the command may have run).
    Failed,
    /// Nothing listens at Redis's address: certainly down, and the command never ran.
    Refused,
}

fn classify(e: &RedisError) -> Health {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    if e.is_connection_refusal() {
        return Health::Refused;
    }
    match e.kind() {
        K::Server(S::BusyLoading) => Health::Loading,
        K::Server(S::ClusterDown | S::MasterDown | S::TryAgain | S::ReadOnly) => Health::Failed,
        K::Io | K::AuthenticationFailed | K::ClusterConnectionNotFound => Health::Failed,
        K::MasterNameNotFoundBySentinel | K::NoValidReplicasFoundBySentinel | K::EmptySentinelList => Health::Failed,
        _ if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() => {
            Health::Failed
        }
        _ => Health::Alive,
    }
}

/// On Redis Cluster: the primary that owns `key`'s slot.
fn slot_owner_of(key: &str) -> redis::cluster_routing::Route {
    use redis::cluster_routing::{Route, SlotAddr};
    Route::with_key(key, SlotAddr::Master)
}

/// The connection core for one Redis deployment. Cheap to share (`Arc`).
pub struct RedisCore {
    cfg: RedisConfig,
    connector: Connector,
    main: RwLock<Option<Conn>>,
    idle_dedicated: Mutex<Vec<Conn>>,
    dedicated_permits: Semaphore,
    breaker: Arc<Breaker>,
    stats: OpStats,
    last_connect_error: Mutex<Option<LastError>>,
}

impl RedisCore {
    /// Connects to Redis and waits out `LOADING` up to `loading_wait`.
    ///
    /// A Redis that cannot be reached does not fail start-up: the breaker is opened and
    /// redkit starts in `fallback` mode, probing in the background. Credentials that Redis
    /// refuses do fail start-up, since waiting will not fix them.
    pub(crate) async fn connect(cfg: RedisConfig, breaker: Arc<Breaker>) -> Result<Arc<Self>> {
        let connector = Connector::new(&cfg)?;
        let core = Arc::new(RedisCore {
            dedicated_permits: Semaphore::new(cfg.max_connections),
            connector,
            main: RwLock::new(None),
            idle_dedicated: Mutex::new(Vec::new()),
            breaker,
            stats: OpStats::new("redis"),
            last_connect_error: Mutex::new(None),
            cfg,
        });
        let deadline = Instant::now() + core.cfg.loading_wait;
        loop {
            match core.probe().await {
                Probe::Ready(conn) => {
                    core.install(conn);
                    tracing::info!(deployment = core.connector.describe(), "connected to redis");
                    return Ok(core);
                }
                Probe::Loading if Instant::now() < deadline => {
                    tracing::info!("redis is loading its dataset; waiting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Probe::Loading => {
                    core.breaker.open(&format!(
                        "redis was still loading its dataset after {:?}",
                        core.cfg.loading_wait
                    ));
                    return Ok(core);
                }
                Probe::Down(reason) => {
                    if reason.contains("AuthenticationFailed") || reason.contains("WRONGPASS") {
                        return Err(Error::Unavailable(format!(
                            "redis refused redkit's credentials: {reason}"
                        )));
                    }
                    tracing::warn!(%reason, "redis unreachable at start; starting in fallback mode");
                    core.breaker.open(&format!("redis unreachable at start: {reason}"));
                    return Ok(core);
                }
            }
        }
    }

    /// The settings this core was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// Statistics of every Redis operation.
    pub fn stats(&self) -> &OpStats {
        &self.stats
    }

    /// Whether a main connection is established (it may still be failing).
    pub fn has_connection(&self) -> bool {
        self.main.read().expect("conn lock").is_some()
    }

    /// The most recent failure to connect, if any.
    pub fn last_connect_error(&self) -> Option<LastError> {
        self.last_connect_error.lock().expect("lock").clone()
    }

    /// Runs `f` on the main connection with the response timeout, records stats and
    /// reports the outcome to the circuit breaker.
    ///
    /// `f` gets its own handle to the connection (a cheap clone of a multiplexed one).
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.main.read().expect("conn lock").clone();
        let Some(conn) = conn else {
            self.breaker.failure("no redis connection");
            return Err(Error::Unavailable(format!("redis is not connected ({op})")));
        };
        self.timed(op, self.cfg.response_timeout, f(conn)).await
    }

    /// Sends one command.
    pub async fn query<T: FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> Result<T> {
        self.call(op, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Sends a pipeline (use `.atomic()` on it for MULTI/EXEC).
    pub async fn pipeline<T: FromRedisValue>(&self, op: &'static str, pipe: &Pipeline) -> Result<T> {
        self.call(op, |mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    /// Sends a keyless command (`SCAN`) to the node that owns `key`'s slot on Redis
    /// Cluster; elsewhere it is an ordinary [`RedisCore::query`]. Keys that share a hash
    /// tag live on one node, so scanning that node finds all of them.
    pub async fn query_on_node_of<T: FromRedisValue>(&self, op: &'static str, key: &str, cmd: &Cmd) -> Result<T> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        self.call(op, |c| async move {
            match c {
                Conn::Cluster(mut cluster) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(slot_owner_of(key)));
                    let value = cluster.route_command(cmd.clone(), routing).await?;
                    Ok(redis::from_redis_value(value)?)
                }
                mut other => cmd.query_async(&mut other).await,
            }
        })
        .await
    }

    /// Runs a transaction (a pipeline made `.atomic()`, no command `.ignore()`d) on the
    /// node that owns `key`'s slot on Redis Cluster, where a keyless command in it
    /// (PUBLISH, which redis-rs routes by its channel) would otherwise make it cross
    /// slots; elsewhere it is an ordinary [`RedisCore::pipeline`]. Returns every
    /// command's reply, in order; any error reply fails the call.
    pub async fn transaction_on_node_of(
        &self,
        op: &'static str,
        key: &str,
        transaction: &Pipeline,
    ) -> Result<Vec<redis::Value>> {
        use redis::cluster_routing::SingleNodeRoutingInfo;
        debug_assert!(transaction.is_transaction(), "{op}: a pipeline that is not .atomic()");
        self.call(op, |c| async move {
            match c {
                Conn::Cluster(mut cluster) => {
                    let node = SingleNodeRoutingInfo::SpecificNode(slot_owner_of(key));
                    // MULTI, the commands, EXEC: only EXEC's reply (what
                    // `Pipeline::query_async` asks for) carries the commands' replies.
                    let exec = cluster
                        .route_pipeline(transaction.clone(), transaction.len() + 1, 1, node)
                        .await?
                        .pop();
                    match exec {
                        Some(redis::Value::Array(replies)) => {
                            replies.into_iter().map(redis::Value::extract_error).collect()
                        }
                        _ => Err(RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "the transaction was aborted",
                        ))),
                    }
                }
                mut other => transaction.query_async(&mut other).await,
            }
        })
        .await
    }

    /// Opens a pub/sub connection within the connect timeout. Not counted against the
    /// breaker: subscribers reconnect on their own schedule.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        match tokio::time::timeout(self.cfg.connect_timeout, self.connector.pubsub()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(Error::Unavailable(format!("redis pub/sub connection failed: {e}"))),
            Err(_) => Err(Error::Unavailable(format!(
                "could not open a pub/sub connection within {:?}",
                self.cfg.connect_timeout
            ))),
        }
    }

    /// Runs a Lua script by EVALSHA, loading it on NOSCRIPT.
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[&dyn ToRedisArgsDyn],
        args: &[&dyn ToRedisArgsDyn],
    ) -> Result<T> {
        self.call(
            script.name(),
            |mut c| async move { script.run(&mut c, keys, args).await },
        )
        .await
    }

    /// Runs a blocking command (BLMOVE, BZPOPMIN, XREAD BLOCK) on a dedicated connection,
    /// allowing `block` plus the response timeout for the answer.
    ///
    /// At most `max_connections` blocking calls run at once; a caller that cannot get a
    /// connection within the response timeout gets [`Error::Unavailable`] (not counted as
    /// a Redis failure: Redis is not at fault).
    pub async fn blocking<T, F, Fut>(&self, op: &'static str, block: Duration, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let permit = tokio::time::timeout(self.cfg.response_timeout, self.dedicated_permits.acquire())
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "all {} dedicated redis connections are busy ({op})",
                    self.cfg.max_connections
                ))
            })?
            .expect("semaphore is never closed");
        let idle = self.idle_dedicated.lock().expect("lock").pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let started = Instant::now();
                match tokio::time::timeout(self.cfg.connect_timeout, self.connector.connect_dedicated()).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Err(self.failed(op, started.elapsed(), e)),
                    Err(_) => {
                        self.breaker.failure("connect timeout");
                        return Err(Error::Unavailable(format!(
                            "could not connect to redis within {:?} ({op})",
                            self.cfg.connect_timeout
                        )));
                    }
                }
            }
        };
        let result = self.timed(op, block + self.cfg.response_timeout, f(conn.clone())).await;
        // A connection whose call failed may hold a half-read reply; never reuse it.
        if result.is_ok() {
            self.idle_dedicated.lock().expect("lock").push(conn);
        }
        drop(permit);
        result
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        limit: Duration,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => {
                self.stats.record(op, started.elapsed(), None);
                self.breaker.success();
                Ok(v)
            }
            Ok(Err(e)) => Err(self.failed(op, started.elapsed(), e)),
            Err(_) => {
                let err = Error::timeout(op, limit);
                self.stats.record(op, started.elapsed(), Some(&err));
                self.breaker.failure(&err.to_string());
                Err(err)
            }
        }
    }

    fn failed(&self, op: &'static str, elapsed: Duration, e: RedisError) -> Error {
        self.stats.record(op, elapsed, Some(&e));
        match classify(&e) {
            Health::Alive => {
                self.breaker.success();
                Error::Redis {
                    op: op.to_string(),
                    source: e,
                }
            }
            Health::Loading => {
                self.breaker.loading();
                Error::Unavailable(format!("redis is loading its dataset ({op})"))
            }
            Health::Failed => {
                self.breaker.failure(&e.to_string());
                // An error reply (MASTERDOWN, READONLY, …) means the command did not run;
                // a broken connection or a timeout leaves it unknown.
                if e.kind() == redis::ErrorKind::Io || e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    Error::Indeterminate(format!("redis failed {op}: {e}"))
                } else {
                    Error::Unavailable(format!("redis failed {op}: {e}"))
                }
            }
            Health::Refused => {
                // No need to count to the threshold: nobody is listening.
                self.breaker.open(&format!("connection refused: {e}"));
                Error::Unavailable(format!("redis refused the connection ({op}): {e}"))
            }
        }
    }

    /// Opens a fresh main connection and PINGs it, within the configured timeouts.
    /// Used at start and by the recovery prober; reports nothing to the breaker.
    pub(crate) async fn probe(&self) -> Probe {
        let down = |reason: String| {
            *self.last_connect_error.lock().expect("lock") = Some(LastError {
                message: reason.clone(),
                at_ms: now_ms(),
            });
            Probe::Down(reason)
        };
        let mut conn = match tokio::time::timeout(self.cfg.connect_timeout, self.connector.connect_main()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) if matches!(classify(&e), Health::Loading) => return Probe::Loading,
            Ok(Err(e)) => return down(format!("{:?}: {e}", e.kind())),
            Err(_) => {
                return down(format!("connect timed out after {:?}", self.cfg.connect_timeout));
            }
        };
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.cfg.response_timeout, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => Probe::Ready(conn),
            Ok(Err(e)) if matches!(classify(&e), Health::Loading) => Probe::Loading,
            Ok(Err(e)) => down(format!("{:?}: {e}", e.kind())),
            Err(_) => down(format!("PING timed out after {:?}", self.cfg.response_timeout)),
        }
    }

    /// Makes `conn` the main connection and drops dedicated connections made before it.
    pub(crate) fn install(&self, conn: Conn) {
        *self.main.write().expect("conn lock") = Some(conn);
        self.idle_dedicated.lock().expect("lock").clear();
    }
}
