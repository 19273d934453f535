//! The server's own settings: the `[server]` table of the config file, and
//! `REDKIT_API_KEYS`.
//!
//! ```toml
//! [server]
//! max_body_bytes = 1048576      # largest request body (413 above it)
//! shutdown_grace_s = 10         # in-flight requests get this long after SIGTERM/SIGINT
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
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use redkit::Config;
use redkit::config::SERVER_TABLE;
use redkit::ratelimit::Policy;
use serde::Deserialize;

use crate::auth::ApiKey;
use crate::routes::ratelimit::PolicyBody;

/// What `redkit serve` needs beyond the library's [`Config`].
#[derive(Debug)]
pub struct ServerSettings {
    /// Largest request body in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// How long in-flight requests get after a shutdown signal (default 10 s).
    pub shutdown_grace: Duration,
    /// API keys; none means no authentication and loopback only.
    pub keys: Vec<ApiKey>,
    /// Rate-limit policies defined at start.
    pub policies: Vec<Policy>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_body_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
            keys: Vec::new(),
            policies: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerTable {
    max_body_bytes: Option<u64>,
    shutdown_grace_s: Option<f64>,
    #[serde(default)]
    api_keys: Vec<KeyEntry>,
    #[serde(default)]
    policies: BTreeMap<String, PolicyBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    key: Option<String>,
    key_env: Option<String>,
    scopes: Vec<String>,
}

impl ServerSettings {
    /// Reads the `[server]` table of the file `config` was loaded from, and the
    /// environment `env`. Errors name the setting and where it came from.
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
        let Some(path) = &config.file else {
            return Ok(settings);
        };
        let refuse = |setting: &str, e: &dyn std::fmt::Display| {
            format!("invalid setting {setting} (from config file {}): {e}", path.display())
        };
        let text = std::fs::read_to_string(path).map_err(|e| refuse("config", &e))?;
        let mut file: toml::Table = text.parse().map_err(|e| refuse("config", &e))?;
        let Some(table) = file.remove(SERVER_TABLE) else {
            return Ok(settings);
        };
        let table: ServerTable = table.try_into().map_err(|e| refuse(SERVER_TABLE, &e))?;
        if let Some(n) = table.max_body_bytes {
            if !(1024..=512 << 20).contains(&n) {
                return Err(refuse("server.max_body_bytes", &"must be 1024 bytes to 512 MiB"));
            }
            settings.max_body_bytes = n as usize;
        }
        if let Some(s) = table.shutdown_grace_s {
            if !(0.0..=3600.0).contains(&s) {
                return Err(refuse("server.shutdown_grace_s", &"seconds, 0 to 3600"));
            }
            settings.shutdown_grace = Duration::from_secs_f64(s);
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
            settings.keys.push(key);
        }
        for (name, body) in table.policies {
            let setting = format!("server.policies.{name}");
            let policy = body.into_policy(&name);
            policy.validate().map_err(|e| refuse(&setting, &e))?;
            settings.policies.push(policy);
        }
        Ok(settings)
    }
}
