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

/// How `redkit import` reads a file.
pub struct ImportArgs {
    /// The collection (defined beforehand).
    pub collection: String,
    /// JSON Lines: one object per line.
    pub file: std::path::PathBuf,
    /// The field holding each record's id (when a line is not `{"id", "data"}`).
    pub id_field: String,
    /// Requests in flight.
    pub concurrency: usize,
}

/// A line of an import: `{"id": …, "data": {…}}`, or any object whose `id_field` holds
/// the id (a string or an integer; the whole object is the record).
fn import_line(line: &str, id_field: &str) -> Result<(String, Value), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("not a JSON object".into());
    };
    let id_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    };
    if obj.len() == 2
        && let (Some(id), Some(Value::Object(data))) = (obj.get("id"), obj.get("data"))
    {
        let id = id_text(id).ok_or("\"id\" must be a string or an integer")?;
        return Ok((id, Value::Object(data.clone())));
    }
    let id = obj
        .get(id_field)
        .and_then(id_text)
        .ok_or_else(|| format!("no {id_field:?} field holding a string or an integer (use --id-field)"))?;
    Ok((id, Value::Object(obj)))
}

/// `redkit import COLLECTION FILE.jsonl`: puts every line's record through a running
/// server, `concurrency` at a time, streaming the file. Stops at the first line that is
/// refused (naming it); what came before stays imported, and a rerun overwrites the same
/// ids, so fixing the line and running again is safe.
pub async fn import(target: &Target, args: ImportArgs) -> Result<String, String> {
    use tokio::io::AsyncBufReadExt;
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("{}/v1/records/{}", target.url.trim_end_matches('/'), args.collection);
    let mut in_flight = tokio::task::JoinSet::new();
    let (mut imported, started) = (0u64, std::time::Instant::now());
    let wait_one = async |set: &mut tokio::task::JoinSet<Result<(), String>>| -> Result<(), String> {
        match set.join_next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => Err(e.to_string()),
            None => Ok(()),
        }
    };
    let (mut lines, mut n) = (tokio::io::BufReader::new(file).lines(), 0);
    while let Some(line) = lines.next_line().await.map_err(|e| format!("line {}: {e}", n + 1))? {
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let (id, data) =
            import_line(&line, &args.id_field).map_err(|e| format!("line {n}: {e} ({imported} imported before it)"))?;
        let mut req = client
            .put(format!("{base}/{}", urlencoding_segment(&id)))
            .json(&serde_json::json!({ "data": data }));
        if let Some(k) = &target.api_key {
            req = req.bearer_auth(k);
        }
        in_flight.spawn(async move {
            let resp = req.send().await.map_err(|e| format!("line {n}: {e}"))?;
            if resp.status().is_success() {
                return Ok(());
            }
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            Err(format!(
                "line {n} (id {id:?}): {status}: {}",
                body["error"]["message"].as_str().unwrap_or("no message")
            ))
        });
        while in_flight.len() >= args.concurrency.max(1) {
            wait_one(&mut in_flight)
                .await
                .map_err(|e| format!("{e} ({imported} imported)"))?;
            imported += 1;
        }
    }
    while !in_flight.is_empty() {
        wait_one(&mut in_flight)
            .await
            .map_err(|e| format!("{e} ({imported} imported)"))?;
        imported += 1;
    }
    Ok(format!(
        "imported {imported} records into {} in {:.1} s\n",
        args.collection,
        started.elapsed().as_secs_f64()
    ))
}

/// Percent-encodes a path segment (ids may hold `/`, spaces, anything but control
/// characters).
fn urlencoding_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod import_tests {
    use super::*;

    #[test]
    fn lines_take_either_form_and_bad_ones_say_why() {
        assert_eq!(
            import_line(r#"{"id": "a", "data": {"x": 1}}"#, "id").unwrap(),
            ("a".to_string(), serde_json::json!({"x": 1}))
        );
        assert_eq!(
            import_line(r#"{"pk": 7, "x": 1}"#, "pk").unwrap(),
            ("7".to_string(), serde_json::json!({"pk": 7, "x": 1}))
        );
        assert!(import_line("[1]", "id").unwrap_err().contains("object"));
        assert!(import_line(r#"{"x": 1}"#, "id").unwrap_err().contains("--id-field"));
        assert!(import_line("{", "id").unwrap_err().contains("not JSON"));
        assert_eq!(urlencoding_segment("a b/c"), "a%20b%2Fc");
    }
}
