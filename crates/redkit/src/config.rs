//! Configuration: defaults < `redkit.toml` < environment < command-line flags.
//!
//! Every setting has one dotted name (its key in `redkit.toml`), the environment variables
//! that set it, and a parser that knows what is allowed. A refused value produces a
//! [`ConfigError`] that names the setting, the value, where it came from and what is
//! allowed — the server prints it and exits with status 2.
//!
//! The environment names are the ones the original Python services already used
//! (`REDIS_URL`, `REDIS_PASSWORD`, `REDIS_SOCKET_TIMEOUT`, …); redkit's own are `REDKIT_*`.
//!
//! ```
//! use redkit::config::{Config, Sources};
//! let config = Config::load(Sources {
//!     env: vec![("REDIS_URL".into(), "redis://127.0.0.1:6379/0".into())],
//!     ..Sources::default()
//! })
//! .unwrap();
//! assert!(config.redis.is_some());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a setting's value came from; named in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A key in the config file at this path.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "the default"),
            Origin::File(p) => write!(f, "config file {}", p.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(name) => write!(f, "command-line flag {name}"),
        }
    }
}

/// A setting that was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid setting {setting} = {value:?} (from {origin}): {allowed}")]
pub struct ConfigError {
    /// The setting's dotted name, as in `redkit.toml`.
    pub setting: String,
    /// The refused value, as given (passwords are masked).
    pub value: String,
    /// Where the value came from.
    pub origin: Origin,
    /// What is allowed instead.
    pub allowed: String,
}

/// The raw inputs to [`Config::load`]; each later source overrides the earlier.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Explicit config file (`--config PATH`); must exist. When `None`, `REDKIT_CONFIG`
    /// from `env` is used, then `./redkit.toml` if present.
    pub file: Option<PathBuf>,
    /// Environment variables (pass `std::env::vars().collect()`).
    pub env: Vec<(String, String)>,
    /// Command-line flags as `(setting, value, flag name)`.
    pub flags: Vec<(String, String, String)>,
}

/// Where Redis lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: a `redis://`, `rediss://` or `unix://` URL.
    Standalone(String),
    /// Sentinels that name the master.
    Sentinel {
        /// `redis://host:port` (or `rediss://`) of each sentinel.
        sentinels: Vec<String>,
        /// The monitored master's name.
        master: String,
        /// Database number on the master.
        db: i64,
        /// Whether the master is reached over TLS.
        tls: bool,
    },
    /// A Redis Cluster given by some of its nodes.
    Cluster(Vec<String>),
}

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Cap on any delay.
    pub max: Duration,
    /// How many times one reconnect retries after its first attempt fails.
    pub attempts: u32,
}

/// TCP keepalive probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

/// How redkit talks to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Where Redis is.
    pub target: RedisTarget,
    /// Password (overrides one in the URL).
    pub password: Option<String>,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a command's reply (blocking commands add their block time).
    pub response_timeout: Duration,
    /// Dedicated connections for blocking commands (BLMOVE, BZPOPMIN, XREAD BLOCK).
    pub max_connections: usize,
    /// Reconnect backoff.
    pub reconnect: Backoff,
    /// How long a Redis that is LOADING its dataset is waited for at start.
    pub loading_wait: Duration,
    /// TCP keepalive.
    pub keepalive: Keepalive,
    /// PEM file of the CA that signed Redis's certificate (`rediss://` with a private CA);
    /// `None` trusts the public web roots.
    pub tls_ca: Option<PathBuf>,
}

impl RedisConfig {
    /// Settings for the Redis at `url` (any `REDIS_URL` form: standalone, sentinel or a
    /// comma-separated cluster list), everything else default. A URL that does not parse
    /// is refused when connecting.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        RedisConfig {
            target: parse_target(&url).unwrap_or(RedisTarget::Standalone(url)),
            password: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            max_connections: 16,
            // Calls made while the connection is being re-established wait for these
            // attempts. By default there are none: a reconnect that is refused opens the
            // breaker at once, and the breaker's prober retries with its own backoff
            // without holding up any call.
            reconnect: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(2),
                attempts: 0,
            },
            loading_wait: Duration::from_secs(60),
            keepalive: Keepalive {
                idle: Duration::from_secs(600),
                interval: Duration::from_secs(60),
                count: 5,
            },
            tls_ca: None,
        }
    }
}

/// Circuit breaker tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures or timeouts that open the breaker.
    pub failure_threshold: u32,
    /// Percentage of failed calls over [`BreakerConfig::rate_window`] that opens the
    /// breaker too (a Redis failing every other call never fails three times in a row).
    pub failure_rate_percent: u32,
    /// The window the failure rate is measured over.
    pub rate_window: Duration,
    /// Fewest calls in the window for the failure rate to count.
    pub rate_min_calls: u32,
    /// First delay between recovery probes.
    pub probe_min: Duration,
    /// Cap on the delay between recovery probes.
    pub probe_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            failure_rate_percent: 50,
            rate_window: Duration::from_secs(10),
            rate_min_calls: 20,
            probe_min: Duration::from_millis(100),
            probe_max: Duration::from_secs(5),
        }
    }
}

/// Log output format of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything redkit needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server listen address.
    pub listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    pub data_dir: PathBuf,
    /// Redis settings; `None` runs on the embedded store only.
    pub redis: Option<RedisConfig>,
    /// Circuit breaker tuning.
    pub breaker: BreakerConfig,
    /// Server log format.
    pub log_format: LogFormat,
    /// The config file that was read, if any. Its `[server]` table belongs to the server
    /// binary (API keys, rate-limit policies, body limits), which reads it from here.
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: PathBuf::from("./redkit-data"),
            redis: None,
            breaker: BreakerConfig::default(),
            log_format: LogFormat::Text,
            file: None,
        }
    }
}

/// One setting: its name, the environment variables that set it, and what it allows.
struct Setting {
    key: &'static str,
    env: &'static [&'static str],
    allowed: &'static str,
    secret: bool,
}

const fn setting(key: &'static str, env: &'static [&'static str], allowed: &'static str) -> Setting {
    Setting {
        key,
        env,
        allowed,
        secret: false,
    }
}

const SETTINGS: &[Setting] = &[
    setting("listen", &["REDKIT_LISTEN"], "a socket address such as 127.0.0.1:7070"),
    setting("data_dir", &["REDKIT_DATA_DIR"], "a directory path"),
    setting("log_format", &["REDKIT_LOG_FORMAT"], "text or json"),
    setting(
        "redis.url",
        &["REDIS_URL", "REDKIT_REDIS_URL"],
        "redis://, rediss:// or unix:// URL; redis+sentinel://[:password@]host:port[,host:port]/master[/db]; \
         or a comma-separated list of redis:// node URLs for a cluster",
    ),
    setting(
        "redis.enabled",
        &["REDIS_ENABLED", "REDKIT_REDIS_ENABLED"],
        "true or false (1/0, yes/no, on/off)",
    ),
    // The settings Python services keep in their .env files, used when redis.url is not set.
    setting("redis.host", &["REDIS_HOST"], "a host name or address"),
    setting("redis.port", &["REDIS_PORT"], "a port number, 1 to 65535"),
    setting(
        "redis.database",
        &["REDIS_DATABASE", "REDIS_DB"],
        "a database number, 0 to 15",
    ),
    setting("redis.ssl", &["REDIS_SSL"], "true or false (1/0, yes/no, on/off)"),
    setting(
        "redis.cluster_nodes",
        &["REDIS_CLUSTER_NODES"],
        "comma-separated host:port of some cluster nodes",
    ),
    Setting {
        key: "redis.password",
        env: &["REDIS_PASSWORD", "REDKIT_REDIS_PASSWORD"],
        allowed: "any non-empty string",
        secret: true,
    },
    setting(
        "redis.socket_timeout",
        &["REDIS_SOCKET_TIMEOUT"],
        "seconds, a number > 0 and <= 3600",
    ),
    setting(
        "redis.connect_timeout",
        &["REDIS_SOCKET_CONNECT_TIMEOUT"],
        "seconds, a number > 0 and <= 3600",
    ),
    setting(
        "redis.max_connections",
        &["REDIS_MAX_CONNECTIONS"],
        "a whole number from 1 to 10000",
    ),
    setting(
        "redis.reconnect_min_ms",
        &["REDKIT_REDIS_RECONNECT_MIN_MS"],
        "milliseconds, 1 to 600000",
    ),
    setting(
        "redis.reconnect_max_ms",
        &["REDKIT_REDIS_RECONNECT_MAX_MS"],
        "milliseconds, 1 to 600000, >= reconnect_min_ms",
    ),
    setting(
        "redis.reconnect_attempts",
        &["REDKIT_REDIS_RECONNECT_ATTEMPTS"],
        "a whole number from 0 to 1000",
    ),
    setting(
        "redis.loading_wait",
        &["REDKIT_REDIS_LOADING_WAIT"],
        "seconds, a number >= 0 and <= 86400",
    ),
    setting(
        "redis.keepalive_idle",
        &["REDKIT_REDIS_KEEPALIVE_IDLE"],
        "seconds, a whole number from 1 to 86400",
    ),
    setting(
        "redis.keepalive_interval",
        &["REDKIT_REDIS_KEEPALIVE_INTERVAL"],
        "seconds, a whole number from 1 to 86400",
    ),
    setting(
        "redis.keepalive_count",
        &["REDKIT_REDIS_KEEPALIVE_COUNT"],
        "a whole number from 1 to 100",
    ),
    setting(
        "redis.tls_ca",
        &["REDKIT_REDIS_TLS_CA", "REDIS_SSL_CA_CERTS"],
        "a readable PEM file of CA certificates (for rediss:// with a private CA)",
    ),
    setting(
        "breaker.failure_threshold",
        &["REDKIT_BREAKER_FAILURES"],
        "a whole number from 1 to 1000",
    ),
    setting(
        "breaker.failure_rate_percent",
        &["REDKIT_BREAKER_FAILURE_RATE_PERCENT"],
        "a whole number from 1 to 100",
    ),
    setting(
        "breaker.rate_window_ms",
        &["REDKIT_BREAKER_RATE_WINDOW_MS"],
        "milliseconds, 1000 to 600000",
    ),
    setting(
        "breaker.rate_min_calls",
        &["REDKIT_BREAKER_RATE_MIN_CALLS"],
        "a whole number from 1 to 100000",
    ),
    setting(
        "breaker.probe_min_ms",
        &["REDKIT_BREAKER_PROBE_MIN_MS"],
        "milliseconds, 1 to 600000",
    ),
    setting(
        "breaker.probe_max_ms",
        &["REDKIT_BREAKER_PROBE_MAX_MS"],
        "milliseconds, 1 to 600000, >= probe_min_ms",
    ),
];

/// The value a setting ended up with, and where it came from.
#[derive(Debug, Clone)]
struct Given {
    value: String,
    origin: Origin,
}

impl Config {
    /// Reads the environment of this process and `./redkit.toml` (if present).
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::load(Sources {
            env: std::env::vars().collect(),
            ..Sources::default()
        })
    }

    /// Merges defaults, the config file, environment and flags, and checks every value.
    pub fn load(sources: Sources) -> Result<Self, ConfigError> {
        let mut given: BTreeMap<&'static str, Given> = BTreeMap::new();

        let file = match sources.file {
            Some(path) => Some((path, true)),
            None => match sources.env.iter().find(|(k, _)| k == "REDKIT_CONFIG") {
                Some((_, v)) => Some((PathBuf::from(v), true)),
                None => Some((PathBuf::from("redkit.toml"), false)),
            },
        };
        let mut read = None;
        if let Some((path, required)) = file
            && read_file(&path, required, &mut given)?
        {
            read = Some(path);
        }
        for s in SETTINGS {
            // The first name listed wins when several are set: it is the one users know.
            if let Some((name, value)) = s
                .env
                .iter()
                .find_map(|name| sources.env.iter().find(|(k, _)| k == name))
            {
                given.insert(
                    s.key,
                    Given {
                        value: value.clone(),
                        origin: Origin::Env(name.clone()),
                    },
                );
            }
        }
        for (key, value, flag) in sources.flags {
            let s = find_setting(&key).ok_or_else(|| ConfigError {
                setting: key.clone(),
                value: value.clone(),
                origin: Origin::Flag(flag.clone()),
                allowed: format!("one of the known settings: {}", known_keys()),
            })?;
            given.insert(
                s.key,
                Given {
                    value,
                    origin: Origin::Flag(flag),
                },
            );
        }
        let mut config = Config::from_given(&given)?;
        config.file = read;
        Ok(config)
    }

    fn from_given(given: &BTreeMap<&'static str, Given>) -> Result<Self, ConfigError> {
        let p = Parser { given };
        let mut config = Config::default();
        if let Some(v) = p.get("listen", |s| s.parse::<SocketAddr>().ok())? {
            config.listen = v;
        }
        if let Some(v) = p.get("data_dir", |s| (!s.trim().is_empty()).then(|| PathBuf::from(s)))? {
            config.data_dir = v;
        }
        if let Some(v) = p.get("log_format", |s| match s.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        })? {
            config.log_format = v;
        }

        let url = match p.get("redis.url", |s| (!s.trim().is_empty()).then(|| s.trim().to_string()))? {
            Some(url) => Some(url),
            None => p.url_from_parts()?,
        };
        let enabled = p.get("redis.enabled", parse_bool)?.unwrap_or(url.is_some());
        if enabled {
            let Some(url) = url else {
                let g = &given["redis.enabled"];
                return Err(ConfigError {
                    setting: "redis.enabled".into(),
                    value: g.value.clone(),
                    origin: g.origin.clone(),
                    allowed: "false unless redis.url (REDIS_URL), redis.host (REDIS_HOST) or \
                              redis.cluster_nodes (REDIS_CLUSTER_NODES) is also set"
                        .into(),
                });
            };
            let target = match p.get("redis.url", |_| parse_target(&url))? {
                Some(t) => t,
                // Made from REDIS_HOST & co.: those were checked one by one.
                None => parse_target(&url).expect("a URL made from checked parts parses"),
            };
            let mut redis = RedisConfig::new("");
            redis.target = target;
            redis.password = p.get("redis.password", |s| (!s.is_empty()).then(|| s.to_string()))?;
            if let Some(v) = p.get("redis.socket_timeout", |s| secs(s, 3600.0, false))? {
                redis.response_timeout = v;
            }
            if let Some(v) = p.get("redis.connect_timeout", |s| secs(s, 3600.0, false))? {
                redis.connect_timeout = v;
            }
            if let Some(v) = p.get("redis.max_connections", |s| int(s, 1, 10_000))? {
                redis.max_connections = v as usize;
            }
            if let Some(v) = p.get("redis.reconnect_min_ms", |s| int(s, 1, 600_000))? {
                redis.reconnect.min = Duration::from_millis(v);
            }
            let min = redis.reconnect.min;
            if let Some(v) = p.get("redis.reconnect_max_ms", |s| {
                int(s, 1, 600_000).map(Duration::from_millis).filter(|d| *d >= min)
            })? {
                redis.reconnect.max = v;
            }
            if let Some(v) = p.get("redis.reconnect_attempts", |s| int(s, 0, 1000))? {
                redis.reconnect.attempts = v as u32;
            }
            if let Some(v) = p.get("redis.loading_wait", |s| secs(s, 86_400.0, true))? {
                redis.loading_wait = v;
            }
            if let Some(v) = p.get("redis.keepalive_idle", |s| int(s, 1, 86_400))? {
                redis.keepalive.idle = Duration::from_secs(v);
            }
            if let Some(v) = p.get("redis.keepalive_interval", |s| int(s, 1, 86_400))? {
                redis.keepalive.interval = Duration::from_secs(v);
            }
            if let Some(v) = p.get("redis.keepalive_count", |s| int(s, 1, 100))? {
                redis.keepalive.count = v as u32;
            }
            redis.tls_ca = p.get("redis.tls_ca", |s| {
                let text = std::fs::read_to_string(s).ok()?;
                text.contains("BEGIN CERTIFICATE").then(|| PathBuf::from(s))
            })?;
            config.redis = Some(redis);
        }

        if let Some(v) = p.get("breaker.failure_threshold", |s| int(s, 1, 1000))? {
            config.breaker.failure_threshold = v as u32;
        }
        if let Some(v) = p.get("breaker.failure_rate_percent", |s| int(s, 1, 100))? {
            config.breaker.failure_rate_percent = v as u32;
        }
        if let Some(v) = p.get("breaker.rate_window_ms", |s| int(s, 1000, 600_000))? {
            config.breaker.rate_window = Duration::from_millis(v);
        }
        if let Some(v) = p.get("breaker.rate_min_calls", |s| int(s, 1, 100_000))? {
            config.breaker.rate_min_calls = v as u32;
        }
        if let Some(v) = p.get("breaker.probe_min_ms", |s| int(s, 1, 600_000))? {
            config.breaker.probe_min = Duration::from_millis(v);
        }
        let min = config.breaker.probe_min;
        if let Some(v) = p.get("breaker.probe_max_ms", |s| {
            int(s, 1, 600_000).map(Duration::from_millis).filter(|d| *d >= min)
        })? {
            config.breaker.probe_max = v;
        }
        Ok(config)
    }
}

impl Parser<'_> {
    /// A Redis URL made from `redis.host` / `port` / `database` / `ssl`, or from
    /// `redis.cluster_nodes` (the settings Python services use); `None` if neither is set.
    fn url_from_parts(&self) -> Result<Option<String>, ConfigError> {
        let tls = self.get("redis.ssl", parse_bool)?.unwrap_or(false);
        let scheme = if tls { "rediss" } else { "redis" };
        let node = |s: &str| {
            let (host, port) = s.trim().rsplit_once(':')?;
            let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
            valid_host(host).then(|| format!("{scheme}://{host}:{port}"))
        };
        if let Some(nodes) = self.get("redis.cluster_nodes", |s| {
            let nodes: Option<Vec<String>> = s.split(',').map(node).collect();
            nodes.filter(|n| !n.is_empty()).map(|n| n.join(","))
        })? {
            return Ok(Some(nodes));
        }
        let Some(host) = self.get("redis.host", |s| valid_host(s.trim()).then(|| s.trim().to_string()))? else {
            return Ok(None);
        };
        let port = self
            .get("redis.port", |s| s.trim().parse::<u16>().ok().filter(|p| *p > 0))?
            .unwrap_or(6379);
        let db = self
            .get("redis.database", |s| s.trim().parse::<u8>().ok().filter(|d| *d <= 15))?
            .unwrap_or(0);
        Ok(Some(format!("{scheme}://{host}:{port}/{db}")))
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
}

struct Parser<'a> {
    given: &'a BTreeMap<&'static str, Given>,
}

impl Parser<'_> {
    /// Parses the setting if it was given; a value the parser refuses becomes a ConfigError.
    fn get<T>(&self, key: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, ConfigError> {
        let Some(g) = self.given.get(key) else {
            return Ok(None);
        };
        let setting = find_setting(key).expect("every parsed key is in SETTINGS");
        match parse(&g.value) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfigError {
                setting: key.to_string(),
                value: if setting.secret { "***".into() } else { g.value.clone() },
                origin: g.origin.clone(),
                allowed: setting.allowed.to_string(),
            }),
        }
    }
}

fn find_setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

fn known_keys() -> String {
    SETTINGS.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
}

/// The config file's table read by the server binary, not by the library.
pub const SERVER_TABLE: &str = "server";

/// Reads the settings of the file into `given`; false when an optional file is absent.
fn read_file(path: &Path, required: bool, given: &mut BTreeMap<&'static str, Given>) -> Result<bool, ConfigError> {
    let origin = Origin::File(path.to_path_buf());
    let refuse = |setting: &str, value: String, allowed: String| ConfigError {
        setting: setting.to_string(),
        value,
        origin: origin.clone(),
        allowed,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(refuse(
                "config",
                path.display().to_string(),
                format!("a readable TOML file ({e})"),
            ));
        }
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| refuse("config", path.display().to_string(), format!("valid TOML: {e}")))?;
    let mut flat = Vec::new();
    let library_settings: toml::Table = table.into_iter().filter(|(k, _)| k != SERVER_TABLE).collect();
    flatten("", &library_settings, &mut flat);
    for (key, value) in flat {
        let Some(s) = find_setting(&key) else {
            return Err(refuse(
                &key,
                value,
                format!("one of the known settings: {}", known_keys()),
            ));
        };
        given.insert(
            s.key,
            Given {
                value,
                origin: origin.clone(),
            },
        );
    }
    Ok(true)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Array(items) => out.push((
                key,
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            other => out.push((key, other.to_string())),
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn int(s: &str, min: u64, max: u64) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|v| (min..=max).contains(v))
}

fn secs(s: &str, max: f64, zero_ok: bool) -> Option<Duration> {
    let v = s.trim().parse::<f64>().ok()?;
    (v.is_finite() && v <= max && (v > 0.0 || (zero_ok && v == 0.0))).then(|| Duration::from_secs_f64(v))
}

/// Parses `REDIS_URL` into a target: one URL, a sentinel URL, or a comma-separated cluster.
fn parse_target(url: &str) -> Option<RedisTarget> {
    let scheme_ok = |u: &str| {
        ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| u.starts_with(s))
            && u.len() > u.find("://").unwrap_or(0) + 3
    };
    if let Some(rest) = url
        .strip_prefix("redis+sentinel://")
        .map(|r| (r, false))
        .or_else(|| url.strip_prefix("rediss+sentinel://").map(|r| (r, true)))
    {
        let (rest, tls) = rest;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/')?;
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let master = parts.next()?.to_string();
        let db = match parts.next() {
            Some(d) => d.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        let scheme = if tls { "rediss" } else { "redis" };
        let sentinels: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| match auth {
                Some(a) => format!("{scheme}://{a}@{h}"),
                None => format!("{scheme}://{h}"),
            })
            .collect();
        if sentinels.is_empty() || sentinels.iter().any(|s| redis::parse_redis_url(s).is_none()) {
            return None;
        }
        return Some(RedisTarget::Sentinel {
            sentinels,
            master,
            db,
            tls,
        });
    }
    if url.contains(',') {
        let nodes: Vec<String> = url
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if nodes.len() < 2
            || !nodes
                .iter()
                .all(|n| scheme_ok(n) && redis::parse_redis_url(n).is_some())
        {
            return None;
        }
        return Some(RedisTarget::Cluster(nodes));
    }
    if !scheme_ok(url) {
        return None;
    }
    if !url.starts_with("unix") && redis::parse_redis_url(url).is_none() {
        return None;
    }
    Some(RedisTarget::Standalone(url.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            flags: vec![],
        }
    }

    #[test]
    fn defaults_run_embedded_on_loopback() {
        let c = Config::load(env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.data_dir, PathBuf::from("./redkit-data"));
        assert!(c.redis.is_none());
    }

    #[test]
    fn redis_url_enables_redis_and_python_names_apply() {
        let c = Config::load(env(&[
            ("REDIS_URL", "redis://localhost:6380/2"),
            ("REDIS_SOCKET_TIMEOUT", "0.5"),
            ("REDIS_SOCKET_CONNECT_TIMEOUT", "3"),
            ("REDIS_MAX_CONNECTIONS", "7"),
            ("REDIS_PASSWORD", "pw"),
        ]))
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(r.target, RedisTarget::Standalone("redis://localhost:6380/2".into()));
        assert_eq!(r.response_timeout, Duration::from_millis(500));
        assert_eq!(r.connect_timeout, Duration::from_secs(3));
        assert_eq!(r.max_connections, 7);
        assert_eq!(r.password.as_deref(), Some("pw"));
    }

    #[test]
    fn the_python_services_redis_settings_make_a_url_and_redis_url_wins() {
        let c = Config::load(env(&[
            ("REDIS_ENABLED", "true"),
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DATABASE", "2"),
            ("REDIS_PASSWORD", "pw"),
            ("REDIS_SSL", "true"),
        ]))
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!(
            r.target,
            RedisTarget::Standalone("rediss://cache.internal:6380/2".into())
        );
        assert_eq!(r.password.as_deref(), Some("pw"));
        let c = Config::load(env(&[("REDIS_CLUSTER_NODES", "a:7000, b:7001")])).unwrap();
        assert_eq!(
            c.redis.unwrap().target,
            RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        let c = Config::load(env(&[("REDIS_URL", "redis://winner:1"), ("REDIS_HOST", "loser")])).unwrap();
        assert_eq!(
            c.redis.unwrap().target,
            RedisTarget::Standalone("redis://winner:1".into())
        );
        let e = Config::load(env(&[("REDIS_HOST", "h"), ("REDIS_PORT", "99999")])).unwrap_err();
        assert_eq!(e.setting, "redis.port");
        let c = Config::load(env(&[("REDIS_ENABLED", "false"), ("REDIS_HOST", "h")])).unwrap();
        assert!(c.redis.is_none());
    }

    #[test]
    fn redis_enabled_false_wins_over_url() {
        let c = Config::load(env(&[("REDIS_URL", "redis://x:1"), ("REDIS_ENABLED", "false")])).unwrap();
        assert!(c.redis.is_none());
    }

    #[test]
    fn sentinel_and_cluster_urls_parse() {
        let c = Config::load(env(&[(
            "REDIS_URL",
            "redis+sentinel://:pw@h1:26379,h2:26380/mymaster/3",
        )]))
        .unwrap();
        assert_eq!(
            c.redis.unwrap().target,
            RedisTarget::Sentinel {
                sentinels: vec!["redis://:pw@h1:26379".into(), "redis://:pw@h2:26380".into()],
                master: "mymaster".into(),
                db: 3,
                tls: false
            }
        );
        let c = Config::load(env(&[("REDIS_URL", "redis://a:7000, redis://b:7001")])).unwrap();
        assert_eq!(
            c.redis.unwrap().target,
            RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
    }

    #[test]
    fn bad_values_name_setting_value_origin_and_rule() {
        let e = Config::load(env(&[("REDIS_URL", "redis://x:1"), ("REDIS_SOCKET_TIMEOUT", "-1")])).unwrap_err();
        assert_eq!(e.setting, "redis.socket_timeout");
        assert_eq!(e.value, "-1");
        assert_eq!(e.origin, Origin::Env("REDIS_SOCKET_TIMEOUT".into()));
        assert!(e.to_string().contains("seconds"), "{e}");

        let e = Config::load(env(&[("REDIS_URL", "http://nope")])).unwrap_err();
        assert_eq!(e.setting, "redis.url");
        let e = Config::load(env(&[("REDIS_ENABLED", "true")])).unwrap_err();
        assert_eq!(e.setting, "redis.enabled");
        let e = Config::load(env(&[("REDKIT_LISTEN", "localhost")])).unwrap_err();
        assert_eq!(e.setting, "listen");
        let e = Config::load(env(&[("REDIS_URL", "redis://x"), ("REDIS_PASSWORD", "")])).unwrap_err();
        assert_eq!(e.value, "***", "secrets are masked");
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redkit.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/d\"\n[redis]\nurl = \"redis://f:1\"\nmax_connections = 3\n[breaker]\nfailure_threshold = 9\n",
        )
        .unwrap();
        let c = Config::load(Sources {
            file: Some(path.clone()),
            env: vec![("REDKIT_LISTEN".into(), "127.0.0.1:2".into())],
            flags: vec![("data_dir".into(), "/flag".into(), "--data-dir".into())],
        })
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/flag"));
        assert_eq!(c.redis.as_ref().unwrap().max_connections, 3);
        assert_eq!(c.breaker.failure_threshold, 9);

        std::fs::write(&path, "[redis]\nurll = \"x\"\n").unwrap();
        let e = Config::load(Sources {
            file: Some(path.clone()),
            ..Sources::default()
        })
        .unwrap_err();
        assert_eq!(e.setting, "redis.urll");
        assert_eq!(e.origin, Origin::File(path));

        let e = Config::load(Sources {
            file: Some(dir.path().join("missing.toml")),
            ..Sources::default()
        })
        .unwrap_err();
        assert_eq!(e.setting, "config");
    }
}
