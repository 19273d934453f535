//! The server's own settings: the `[server]` table of the config file, and the
//! environment (`REDKIT_API_KEYS`, and `REDKIT_SERVER_<KEY>` for each number below and the access log, which
//! overrides the file).
//!
//! ```toml
//! [server]
//! max_body_bytes = 1048576      # largest request body (413 above it)
//! shutdown_grace_s = 10         # in-flight requests get this long after SIGTERM/SIGINT
//! header_read_timeout_s = 10    # a request's head must arrive within this, from its first byte
//! idle_timeout_s = 60           # keep-alive connections with no request are closed after this
//! max_connections = 10000       # beyond it new connections wait in the listen backlog
//! access_log = "errors"         # errors (5xx, 4xx but 404/429), all, or off (crate::front)
//!
//! [[server.api_keys]]
//! name = "billing"              # shown in logs and 403 messages, never the key
//! key_env = "BILLING_API_KEY"   # or key = "…" (at least 16 characters)
//! scopes = ["cache:invoices:write", "queues:billing-*:write", "ratelimit:api:write"]
//!
//! [server.policies.api]         # rate-limit policies defined at start
//! algorithm = "gcra"
//! limit = 100
//! period_ms = 60000
//!
//! [server.channels."*"]          # pub/sub history of every channel (default 100 for 600 s)
//! history_size = 100
//! history_ttl_s = 600
//!
//! [server.channels."ticks."]     # channels whose name starts with "ticks." (longest wins)
//! history_size = 0               # no history: pure fan-out
//! ```
//!
//! `channel_token_secret` (or `channel_token_secret_env`, the name of an environment
//! variable holding it; `REDKIT_CHANNEL_TOKEN_SECRET` wins over both) signs the channel
//! tokens browsers use (`crate::tokens`): give every server of a deployment the same one, at
//! least 32 characters. Without it each server signs with a random secret of its own.
//!
//! `redact_key` (or `redact_key_env`; `REDKIT_REDACT_KEY` wins over both) is the key of
//! the records' `hash` redaction: the same on every server, at least 16 characters.
//! Collections may be defined at start, as over the API (`PUT /v1/collections/{c}`):
//!
//! ```toml
//! [server.collections.patterns]
//! indexes = [{ field = "kind", kind = "equal" }, { field = "seen", kind = "range" }]
//! ttl_s = 7776000
//! redact = [{ field = "email", action = "hash" }]
//!
//! [server.cache_redact]          # redaction of the JSON values of cache namespaces
//! profiles = [{ field = "*", action = "scrub" }]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use redkit::Config;
use redkit::config::SERVER_TABLE;
use redkit::pubsub::ChannelOptions;
use redkit::ratelimit::Policy;
use redkit::records::{CollectionSpec, RedactRule};
use serde::Deserialize;

use crate::auth::ApiKey;
use crate::front::AccessLog;
use crate::routes::ratelimit::PolicyBody;

/// What `redkit serve` needs beyond the library's [`Config`].
#[derive(Debug)]
pub struct ServerSettings {
    /// Largest request body in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// How long in-flight requests get after a shutdown signal (default 10 s).
    pub shutdown_grace: Duration,
    /// How long a client has to send a request's whole head (request line and headers),
    /// from its first byte, or from the connection's opening for its first request
    /// (default 10 s).
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit with no request before it is closed
    /// (default 60 s).
    pub idle_timeout: Duration,
    /// Most connections open at once; beyond it new ones wait in the listen backlog
    /// (default 10,000, lowered to what the open-files limit allows).
    pub max_connections: usize,
    /// Which requests get an access-log line (default: failures only; [`AccessLog`]).
    pub access_log: AccessLog,
    /// API keys; none means no authentication and loopback only.
    pub keys: Vec<ApiKey>,
    /// Rate-limit policies defined at start.
    pub policies: Vec<Policy>,
    /// Pub/sub history by channel prefix, and limits.
    pub channels: ChannelOptions,
    /// The secret channel tokens are signed with (random per process when `None`).
    pub channel_token_secret: Option<String>,
    /// The key of the records' `hash` redaction.
    pub redact_key: Option<String>,
    /// Collections defined at start.
    pub collections: Vec<(String, CollectionSpec)>,
    /// Redaction of the values of cache namespaces.
    pub cache_redact: BTreeMap<String, Vec<RedactRule>>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_body_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            access_log: AccessLog::default(),
            keys: Vec::new(),
            policies: Vec::new(),
            channels: ChannelOptions::default(),
            channel_token_secret: None,
            redact_key: None,
            collections: Vec::new(),
            cache_redact: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerTable {
    max_body_bytes: Option<u64>,
    shutdown_grace_s: Option<f64>,
    header_read_timeout_s: Option<f64>,
    idle_timeout_s: Option<f64>,
    max_connections: Option<u64>,
    access_log: Option<AccessLog>,
    #[serde(default)]
    api_keys: Vec<KeyEntry>,
    #[serde(default)]
    policies: BTreeMap<String, PolicyBody>,
    #[serde(default)]
    channels: BTreeMap<String, ChannelEntry>,
    channel_token_secret: Option<String>,
    channel_token_secret_env: Option<String>,
    redact_key: Option<String>,
    redact_key_env: Option<String>,
    #[serde(default)]
    collections: BTreeMap<String, CollectionSpec>,
    #[serde(default)]
    cache_redact: BTreeMap<String, Vec<RedactRule>>,
}

/// History of the channels under one prefix (`"*"`: every channel).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelEntry {
    history_size: Option<u64>,
    history_ttl_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    key: Option<String>,
    key_env: Option<String>,
    scopes: Vec<String>,
}

/// A number in the `[server]` table, also settable from the environment.
struct Number {
    /// Its key in the `[server]` table.
    key: &'static str,
    /// Its environment variable: `REDKIT_SERVER_` and the key in capitals.
    env: &'static str,
    min: f64,
    max: f64,
    /// Whether it must be a whole number.
    whole: bool,
    /// What is allowed, for the refusal.
    rule: &'static str,
}

const NUMBERS: [Number; 5] = [
    Number {
        key: "max_body_bytes",
        env: "REDKIT_SERVER_MAX_BODY_BYTES",
        min: 1024.0,
        max: (512 << 20) as f64,
        whole: true,
        rule: "must be 1024 bytes to 512 MiB",
    },
    Number {
        key: "shutdown_grace_s",
        env: "REDKIT_SERVER_SHUTDOWN_GRACE_S",
        min: 0.0,
        max: 3600.0,
        whole: false,
        rule: "seconds, 0 to 3600",
    },
    Number {
        key: "header_read_timeout_s",
        env: "REDKIT_SERVER_HEADER_READ_TIMEOUT_S",
        min: 0.1,
        max: 300.0,
        whole: false,
        rule: "seconds, 0.1 to 300 (always on)",
    },
    Number {
        key: "idle_timeout_s",
        env: "REDKIT_SERVER_IDLE_TIMEOUT_S",
        min: 0.1,
        max: 3600.0,
        whole: false,
        rule: "seconds, 0.1 to 3600 (always on)",
    },
    Number {
        key: "max_connections",
        env: "REDKIT_SERVER_MAX_CONNECTIONS",
        min: 1.0,
        max: 1_000_000.0,
        whole: true,
        rule: "a whole number, 1 to 1000000",
    },
];

impl ServerSettings {
    /// Sets the number `key` (of [`NUMBERS`]) after checking it; `Err` is the rule it broke.
    fn set_number(&mut self, key: &str, value: f64) -> Result<(), &'static str> {
        let n = NUMBERS.iter().find(|n| n.key == key).expect("a known number");
        if !(n.min..=n.max).contains(&value) || (n.whole && value.fract() != 0.0) {
            return Err(n.rule);
        }
        match key {
            "max_body_bytes" => self.max_body_bytes = value as usize,
            "shutdown_grace_s" => self.shutdown_grace = Duration::from_secs_f64(value),
            "header_read_timeout_s" => self.header_read_timeout = Duration::from_secs_f64(value),
            "idle_timeout_s" => self.idle_timeout = Duration::from_secs_f64(value),
            "max_connections" => self.max_connections = value as usize,
            _ => unreachable!("every number is set"),
        }
        Ok(())
    }

    /// Reads the `[server]` table of the file `config` was loaded from, then the
    /// environment `env` (which wins). Errors name the setting and where it came from.
    pub fn load(config: &Config, env: &[(String, String)]) -> Result<Self, String> {
        let mut settings = ServerSettings::default();
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if let Some(keys) = var("REDKIT_API_KEYS") {
            for (i, key) in keys.split(',').map(str::trim).filter(|k| !k.is_empty()).enumerate() {
                let label = format!("REDKIT_API_KEYS#{}", i + 1);
                let key = ApiKey::new(&label, key, &["*".to_string()])
                    .map_err(|e| format!("invalid setting REDKIT_API_KEYS (environment variable): {e}"))?;
                settings.keys.push(key);
            }
        }
        if let Some(path) = &config.file {
            settings.load_file(path, &var)?;
        }
        if let Some(secret) = var("REDKIT_CHANNEL_TOKEN_SECRET") {
            settings.channel_token_secret = Some(checked_secret(secret).map_err(|rule| {
                format!("invalid setting {SERVER_TABLE}.channel_token_secret (from environment variable REDKIT_CHANNEL_TOKEN_SECRET): {rule}")
            })?);
        }
        if let Some(key) = var("REDKIT_REDACT_KEY") {
            settings.redact_key = Some(key);
        }
        if settings.redact_key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err(format!(
                "invalid setting {SERVER_TABLE}.redact_key: at least 16 characters"
            ));
        }
        for (name, spec) in &settings.collections {
            redkit::records::check_name("collection", name)
                .and_then(|()| spec.validate(settings.redact_key.is_some()))
                .map_err(|e| format!("invalid setting {SERVER_TABLE}.collections.{name}: {e}"))?;
        }
        for (ns, rules) in &settings.cache_redact {
            redkit::records::redact::validate(rules, settings.redact_key.is_some())
                .map_err(|e| format!("invalid setting {SERVER_TABLE}.cache_redact.{ns}: {e}"))?;
        }
        if let Some(text) = var("REDKIT_SERVER_ACCESS_LOG") {
            settings.access_log = text.parse().map_err(|rule| {
                format!(
                    "invalid setting {SERVER_TABLE}.access_log = {text:?} (from environment variable REDKIT_SERVER_ACCESS_LOG): {rule}"
                )
            })?;
        }
        for n in &NUMBERS {
            let Some(text) = var(n.env) else { continue };
            let refuse = |rule: &str| {
                format!(
                    "invalid setting {SERVER_TABLE}.{} = {text:?} (from environment variable {}): {rule}",
                    n.key, n.env
                )
            };
            let value: f64 = text.trim().parse().map_err(|_| refuse(n.rule))?;
            settings.set_number(n.key, value).map_err(refuse)?;
        }
        Ok(settings)
    }

    fn load_file(&mut self, path: &std::path::Path, var: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        let refuse = |setting: &str, e: &dyn std::fmt::Display| {
            format!("invalid setting {setting} (from config file {}): {e}", path.display())
        };
        let text = std::fs::read_to_string(path).map_err(|e| refuse("config", &e))?;
        let mut file: toml::Table = text.parse().map_err(|e| refuse("config", &e))?;
        let Some(table) = file.remove(SERVER_TABLE) else {
            return Ok(());
        };
        let table: ServerTable = table.try_into().map_err(|e| refuse(SERVER_TABLE, &e))?;
        let numbers = [
            ("max_body_bytes", table.max_body_bytes.map(|n| n as f64)),
            ("shutdown_grace_s", table.shutdown_grace_s),
            ("header_read_timeout_s", table.header_read_timeout_s),
            ("idle_timeout_s", table.idle_timeout_s),
            ("max_connections", table.max_connections.map(|n| n as f64)),
        ];
        for (key, value) in numbers {
            if let Some(v) = value {
                self.set_number(key, v)
                    .map_err(|rule| refuse(&format!("{SERVER_TABLE}.{key}"), &rule))?;
            }
        }
        if let Some(log) = table.access_log {
            self.access_log = log;
        }
        for (i, entry) in table.api_keys.into_iter().enumerate() {
            let setting = format!("server.api_keys[{i}]");
            let key = match (entry.key, entry.key_env) {
                (Some(k), None) => k,
                (None, Some(name)) => var(&name).ok_or_else(|| {
                    refuse(
                        &format!("{setting}.key_env"),
                        &format!("environment variable {name} is not set"),
                    )
                })?,
                _ => return Err(refuse(&setting, &"give exactly one of key and key_env")),
            };
            let key = ApiKey::new(&entry.name, &key, &entry.scopes).map_err(|e| refuse(&setting, &e))?;
            self.keys.push(key);
        }
        const DEFAULT: (u64, u64) = (100, 600);
        let default = table.channels.get("*").map_or(DEFAULT, |e| {
            (
                e.history_size.unwrap_or(DEFAULT.0),
                e.history_ttl_s.unwrap_or(DEFAULT.1),
            )
        });
        let mut channels = ChannelOptions::default().history(default.0, Duration::from_secs(default.1));
        for (prefix, e) in &table.channels {
            if prefix != "*" {
                let (size, ttl) = (
                    e.history_size.unwrap_or(default.0),
                    e.history_ttl_s.unwrap_or(default.1),
                );
                channels = channels.prefix(prefix, size, Duration::from_secs(ttl));
            }
        }
        channels
            .validate()
            .map_err(|e| refuse(&format!("{SERVER_TABLE}.channels"), &e))?;
        self.channels = channels;
        let secret = match (table.channel_token_secret, table.channel_token_secret_env) {
            (Some(s), None) => Some(s),
            (None, Some(name)) => Some(var(&name).ok_or_else(|| {
                refuse(
                    &format!("{SERVER_TABLE}.channel_token_secret_env"),
                    &format!("environment variable {name} is not set"),
                )
            })?),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(refuse(
                    &format!("{SERVER_TABLE}.channel_token_secret"),
                    &"give at most one of channel_token_secret and channel_token_secret_env",
                ));
            }
        };
        if let Some(secret) = secret {
            self.channel_token_secret = Some(
                checked_secret(secret)
                    .map_err(|rule| refuse(&format!("{SERVER_TABLE}.channel_token_secret"), &rule))?,
            );
        }
        self.redact_key = match (table.redact_key, table.redact_key_env) {
            (Some(k), None) => Some(k),
            (None, Some(name)) => Some(var(&name).ok_or_else(|| {
                refuse(
                    &format!("{SERVER_TABLE}.redact_key_env"),
                    &format!("environment variable {name} is not set"),
                )
            })?),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(refuse(
                    &format!("{SERVER_TABLE}.redact_key"),
                    &"give at most one of redact_key and redact_key_env",
                ));
            }
        };
        self.collections = table.collections.into_iter().collect();
        self.cache_redact = table.cache_redact;
        for (name, body) in table.policies {
            let setting = format!("server.policies.{name}");
            let policy = body.into_policy(&name);
            policy.validate().map_err(|e| refuse(&setting, &e))?;
            self.policies.push(policy);
        }
        Ok(())
    }
}

/// A channel token secret, if long enough.
fn checked_secret(secret: String) -> Result<String, String> {
    if secret.len() < crate::tokens::MIN_SECRET_BYTES {
        return Err(format!(
            "at least {} characters (got {})",
            crate::tokens::MIN_SECRET_BYTES,
            secret.len()
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<ServerSettings, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redkit.toml");
        std::fs::write(&path, file).unwrap();
        let config = Config {
            file: Some(path),
            ..Config::default()
        };
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ServerSettings::load(&config, &env)
    }

    #[test]
    fn connection_bounds_come_from_the_file_and_the_environment_wins() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.max_connections, 10_000);
        let file = "[server]\nheader_read_timeout_s = 2.5\nidle_timeout_s = 30\nmax_connections = 500\n";
        let s = load(file, &[]).unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_millis(2500));
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.max_connections, 500);
        let s = load(
            file,
            &[
                ("REDKIT_SERVER_MAX_CONNECTIONS", "20"),
                ("REDKIT_SERVER_IDLE_TIMEOUT_S", "5"),
                ("REDKIT_SERVER_MAX_BODY_BYTES", "4096"),
            ],
        )
        .unwrap();
        assert_eq!(s.max_connections, 20);
        assert_eq!(s.idle_timeout, Duration::from_secs(5));
        assert_eq!(s.max_body_bytes, 4096);
        assert_eq!(s.header_read_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn the_access_log_is_failures_by_default_and_set_by_file_or_environment() {
        assert_eq!(load("", &[]).unwrap().access_log, AccessLog::Errors);
        let file = "[server]\naccess_log = \"all\"\n";
        assert_eq!(load(file, &[]).unwrap().access_log, AccessLog::All);
        let s = load(file, &[("REDKIT_SERVER_ACCESS_LOG", "off")]).unwrap();
        assert_eq!(s.access_log, AccessLog::Off);
        let e = load("", &[("REDKIT_SERVER_ACCESS_LOG", "loud")]).unwrap_err();
        assert!(e.contains("server.access_log") && e.contains("errors, all, off"), "{e}");
        let e = load("[server]\naccess_log = \"loud\"\n", &[]).unwrap_err();
        assert!(e.contains("server") && e.contains("loud"), "{e}");
    }

    #[test]
    fn connection_bounds_cannot_be_turned_off_or_be_nonsense() {
        let e = load("[server]\nheader_read_timeout_s = 0\n", &[]).unwrap_err();
        assert!(
            e.contains("server.header_read_timeout_s") && e.contains("redkit.toml") && e.contains("0.1 to 300"),
            "{e}"
        );
        let e = load("[server]\nmax_connections = 0\n", &[]).unwrap_err();
        assert!(e.contains("server.max_connections"), "{e}");
        let e = load("", &[("REDKIT_SERVER_IDLE_TIMEOUT_S", "forever")]).unwrap_err();
        assert!(
            e.contains("server.idle_timeout_s = \"forever\"")
                && e.contains("environment variable REDKIT_SERVER_IDLE_TIMEOUT_S")
                && e.contains("seconds"),
            "{e}"
        );
        let e = load("", &[("REDKIT_SERVER_MAX_CONNECTIONS", "2.5")]).unwrap_err();
        assert!(e.contains("whole number"), "{e}");
    }

    #[test]
    fn channel_history_is_set_by_prefix_and_checked() {
        let s = load(
            "[server.channels.\"*\"]\nhistory_size = 10\n[server.channels.\"ticks.\"]\nhistory_size = 0\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            format!("{:?}", s.channels).matches("size: 10").count(),
            1,
            "{:?}",
            s.channels
        );
        assert!(format!("{:?}", s.channels).contains("\"ticks.\""));
        let e = load("[server.channels.\"*\"]\nhistory_size = 1000000\n", &[]).unwrap_err();
        assert!(e.contains("server.channels") && e.contains("history_size"), "{e}");
        let e = load("[server.channels.x]\nhistory = 3\n", &[]).unwrap_err();
        assert!(e.contains("history"), "{e}");
    }

    #[test]
    fn a_channel_token_secret_comes_from_the_file_or_the_environment_and_is_long_enough() {
        let secret = "0123456789abcdef0123456789abcdef";
        let s = load(&format!("[server]\nchannel_token_secret = \"{secret}\"\n"), &[]).unwrap();
        assert_eq!(s.channel_token_secret.as_deref(), Some(secret));
        let e = load("[server]\nchannel_token_secret = \"short\"\n", &[]).unwrap_err();
        assert!(e.contains("channel_token_secret") && e.contains("32"), "{e}");
        let e = load("", &[("REDKIT_CHANNEL_TOKEN_SECRET", "short")]).unwrap_err();
        assert!(e.contains("REDKIT_CHANNEL_TOKEN_SECRET"), "{e}");
        let s = load(
            "[server]\nchannel_token_secret_env = \"MY_SECRET\"\n",
            &[("MY_SECRET", secret)],
        )
        .unwrap();
        assert_eq!(s.channel_token_secret.as_deref(), Some(secret));
    }
}
