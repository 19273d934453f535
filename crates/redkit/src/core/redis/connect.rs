//! Building connections for each kind of Redis deployment.
//!
//! A [`Connector`] knows how to open the main multiplexed connection (a
//! `ConnectionManager`, or a cluster connection) and dedicated connections for blocking
//! commands, with the configured timeouts, TCP keepalive and TCP_NODELAY. For Sentinel it
//! asks the sentinels for the current master on every connect, so a reconnect after a
//! failover lands on the new master.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{TcpSettings, socket2};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

use crate::config::{RedisConfig, RedisTarget};
use crate::error::{Error, Result};

/// A connection to Redis of whichever kind the deployment needs; commands are sent
/// through it with the ordinary redis-rs API (it implements `ConnectionLike`).
#[derive(Clone)]
pub enum Conn {
    /// Standalone or Sentinel-resolved master: self-reconnecting multiplexed connection.
    Managed(ConnectionManager),
    /// A dedicated single connection (blocking commands).
    Dedicated(MultiplexedConnection),
    /// Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Dedicated(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Dedicated(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Dedicated(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Opens connections to the configured deployment.
pub(crate) struct Connector {
    cfg: RedisConfig,
    kind: Kind,
}

enum Kind {
    Standalone(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster {
        main: Box<ClusterClient>,
        dedicated: Box<ClusterClient>,
        /// Plain clients to the listed nodes, for pub/sub (a cluster PUBLISH reaches every
        /// node, so any reachable one will do).
        nodes: Vec<Client>,
    },
}

/// Cluster connections time out each command themselves; dedicated ones get a generous
/// bound because redkit wraps blocking calls in their own block-time-aware timeout.
const DEDICATED_CLUSTER_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Connector {
    pub(crate) fn new(cfg: &RedisConfig) -> Result<Self> {
        let tcp = tcp_settings(cfg);
        let bad_url = |e: redis::RedisError| Error::invalid("redis.url", e.to_string());
        let certs = match &cfg.tls_ca {
            None => None,
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(
                    std::fs::read(path)
                        .map_err(|e| Error::invalid("redis.tls_ca", format!("cannot read {}: {e}", path.display())))?,
                ),
            }),
        };
        let open = |info: redis::ConnectionInfo| match &certs {
            Some(c) => Client::build_with_tls(info, c.clone()),
            None => Client::open(info),
        };
        let info = |url: &str| -> Result<redis::ConnectionInfo> {
            let info = url
                .into_connection_info()
                .map_err(bad_url)?
                .set_tcp_settings(tcp.clone());
            Ok(match &cfg.password {
                Some(pw) => {
                    let redis = info.redis_settings().clone().set_password(pw);
                    info.set_redis_settings(redis)
                }
                None => info,
            })
        };
        let kind = match &cfg.target {
            RedisTarget::Standalone(url) => Kind::Standalone(open(info(url)?).map_err(bad_url)?),
            RedisTarget::Sentinel {
                sentinels,
                master,
                db,
                tls,
            } => {
                if certs.is_some() {
                    return Err(Error::invalid(
                        "redis.tls_ca",
                        "a private CA is not supported with Sentinel yet; use public roots or a standalone URL",
                    ));
                }
                let mut redis_info = redis::RedisConnectionInfo::default().set_db(*db);
                if let Some(pw) = &cfg.password {
                    redis_info = redis_info.set_password(pw);
                }
                let mut node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(redis_info)
                    .set_tcp_settings(tcp.clone());
                if *tls {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let infos = sentinels.iter().map(|s| info(s)).collect::<Result<Vec<_>>>()?;
                let client = SentinelClient::build(infos, master.clone(), Some(node), SentinelServerType::Master)
                    .map_err(bad_url)?;
                Kind::Sentinel(tokio::sync::Mutex::new(client))
            }
            RedisTarget::Cluster(nodes) => {
                let infos = nodes.iter().map(|n| info(n)).collect::<Result<Vec<_>>>()?;
                let builder = |response: Duration| {
                    let mut b = ClusterClient::builder(infos.clone())
                        .connection_timeout(cfg.connect_timeout)
                        .response_timeout(response)
                        .retries(cfg.reconnect.attempts)
                        .tcp_settings(tcp.clone());
                    if let Some(pw) = &cfg.password {
                        b = b.password(pw.clone());
                    }
                    if let Some(c) = &certs {
                        b = b.certs(c.clone());
                    }
                    b.build().map_err(bad_url)
                };
                Kind::Cluster {
                    main: Box::new(builder(cfg.response_timeout)?),
                    dedicated: Box::new(builder(DEDICATED_CLUSTER_RESPONSE_TIMEOUT)?),
                    nodes: infos
                        .iter()
                        .map(|i| open(i.clone()).map_err(bad_url))
                        .collect::<Result<Vec<_>>>()?,
                }
            }
        };
        Ok(Connector { cfg: cfg.clone(), kind })
    }

    /// A short description of the deployment, without credentials.
    pub(crate) fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Standalone(_) => "standalone",
            Kind::Sentinel(_) => "sentinel",
            Kind::Cluster { .. } => "cluster",
        }
    }

    async fn client(&self) -> RedisResult<Client> {
        match &self.kind {
            Kind::Standalone(c) => Ok(c.clone()),
            Kind::Sentinel(s) => s.lock().await.async_get_client().await,
            Kind::Cluster { nodes, .. } => Ok(nodes[0].clone()),
        }
    }

    /// Opens a pub/sub connection (to the master, or to one cluster node).
    pub(crate) async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        if let Kind::Cluster { nodes, .. } = &self.kind {
            let mut last = None;
            for node in nodes {
                match node.get_async_pubsub().await {
                    Ok(p) => return Ok(p),
                    Err(e) => last = Some(e),
                }
            }
            return Err(last.expect("a cluster lists at least two nodes"));
        }
        self.client().await?.get_async_pubsub().await
    }

    /// Opens the main multiplexed connection. Fails if Redis cannot be reached now.
    pub(crate) async fn connect_main(&self) -> RedisResult<Conn> {
        if let Kind::Cluster { main, .. } = &self.kind {
            return main.get_async_connection().await.map(Conn::Cluster);
        }
        let client = self.client().await?;
        let r = &self.cfg.reconnect;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.cfg.connect_timeout))
            // Response timeouts are applied per call by RedisCore, where they are counted.
            .set_response_timeout(None)
            .set_min_delay(r.min)
            .set_max_delay(r.max)
            .set_number_of_retries(r.attempts as usize);
        ConnectionManager::new_with_config(client, config)
            .await
            .map(Conn::Managed)
    }

    /// Opens a dedicated connection for blocking commands.
    pub(crate) async fn connect_dedicated(&self) -> RedisResult<Conn> {
        if let Kind::Cluster { dedicated, .. } = &self.kind {
            return dedicated.get_async_connection().await.map(Conn::Cluster);
        }
        let client = self.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.cfg.connect_timeout))
            .set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map(Conn::Dedicated)
    }
}

fn tcp_settings(cfg: &RedisConfig) -> TcpSettings {
    let ka = socket2::TcpKeepalive::new()
        .with_time(cfg.keepalive.idle)
        .with_interval(cfg.keepalive.interval)
        .with_retries(cfg.keepalive.count);
    TcpSettings::default().set_nodelay(true).set_keepalive(ka)
}
