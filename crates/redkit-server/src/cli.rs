//! The small client commands beside `serve`: `status`, `keys`, `queues`. They talk to a
//! running server over HTTP (or, for `status --redis-url`, straight to Redis) and print
//! for humans.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

/// Where a client command finds the server.
pub struct Target {
    /// Base URL, e.g. `http://127.0.0.1:7070`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
}

impl Target {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client.get(&url).query(query);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("{url} answered {status} without JSON: {e}"))?;
        if status.is_success() || path == "/health" {
            Ok(body)
        } else {
            let msg = body["error"]["message"].as_str().unwrap_or("no message");
            Err(format!("{url} answered {status}: {msg}"))
        }
    }
}

/// `redkit status`: the health of a running server.
pub async fn status(target: &Target) -> Result<String, String> {
    let health = target.get("/health", &[]).await?;
    Ok(render_health(&format!("redkit at {}", target.url), &health))
}

/// `redkit status --redis-url`: the health redkit sees on a Redis, without a server.
pub async fn status_of_redis(redis_url: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("redkit-status-{}", std::process::id()));
    let mut config = redkit::Config::default();
    config.data_dir = dir.clone();
    config.redis = Some(redkit::config::RedisConfig::new(redis_url));
    let redkit = redkit::Redkit::open(config).await.map_err(|e| e.to_string())?;
    let health = serde_json::to_value(redkit.health().await).map_err(|e| e.to_string())?;
    drop(redkit);
    let _ = std::fs::remove_dir_all(dir);
    Ok(render_health(&format!("redis at {redis_url}"), &health))
}

fn ms(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |f| format!("{f:.2} ms"))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A health snapshot (the JSON of `/health`) for humans.
pub fn render_health(title: &str, h: &Value) -> String {
    let mut out = String::new();
    let up = h["uptime_s"]
        .as_u64()
        .map(|s| format!(", up {s} s"))
        .unwrap_or_default();
    let _ = writeln!(out, "{title}: {}, mode {}{up}", text(&h["status"]), text(&h["mode"]));
    if let Some(b) = h["breaker"].as_object() {
        let _ = writeln!(
            out,
            "breaker:   {} ({} consecutive failures, opened {} times)",
            text(&b["state"]),
            text(&b["consecutive_failures"]),
            text(&b["opened_total"])
        );
    }
    if let Some(r) = h["redis"].as_object() {
        let info = &r["info"];
        let _ = writeln!(
            out,
            "redis:     {} {}, {}, version {}, role {}, {} keys, {} used, ping {}",
            text(&r["deployment"]),
            if r["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "NOT connected"
            },
            text(&info["maxmemory_policy"]),
            text(&info["version"]),
            text(&info["role"]),
            text(&info["keys"]),
            text(&info["used_memory_human"]),
            ms(&info["ping_ms"]),
        );
        if let Some(e) = r["error"].as_str() {
            let _ = writeln!(out, "           {e}");
        }
    }
    let e = &h["embedded"];
    if e.is_object() {
        let _ = writeln!(
            out,
            "embedded:  {} ({} bytes on disk)",
            text(&e["path"]),
            text(&e["size_bytes"])
        );
    } else {
        let _ = writeln!(out, "(the details need an API key with the ops scope: --api-key)");
    }
    if let Some(j) = h["journal_pending"].as_object().filter(|j| !j.is_empty()) {
        let parts: Vec<String> = j.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "journal:   {} waiting for Redis", parts.join(", "));
    }
    if let Some(caps) = h["capabilities"].as_array() {
        let parts: Vec<String> = caps
            .iter()
            .map(|c| {
                let off = if c["available"].as_bool() == Some(false) {
                    " UNAVAILABLE"
                } else {
                    ""
                };
                format!("{}{off}", text(&c["name"]))
            })
            .collect();
        let _ = writeln!(out, "serving:   {}", parts.join(", "));
    }
    for w in h["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning:   {}", text(w));
    }
    out
}

/// `redkit keys NS [PATTERN]`: every key of a namespace matching the pattern.
pub async fn keys(target: &Target, ns: &str, pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("ns", ns), ("pattern", pattern), ("limit", "1000")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let page = target.get("/v1/cache/keys", &query).await?;
        for k in page["keys"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{}", text(k));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

/// `redkit queues`: every queue with its counts.
pub async fn queues(target: &Target) -> Result<String, String> {
    let queues = target.get("/v1/queues", &[]).await?;
    let mut out = format!(
        "{:<24} {:>9} {:>9} {:>9} {:>10} {:>9}  paused\n",
        "queue", "waiting", "active", "delayed", "completed", "dead"
    );
    for q in queues.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>9} {:>9} {:>10} {:>9}  {}",
            text(&q["name"]),
            text(&q["waiting"]),
            text(&q["active"]),
            text(&q["delayed"]),
            text(&q["completed"]),
            text(&q["dead"]),
            if q["paused"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
        );
    }
    Ok(out)
}
