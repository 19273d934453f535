//! `/v1/cache/…`: JSON values by namespace and key, with TTLs and tags, plus the
//! management endpoints (status, stats, paged keys, clear by pattern or tag, warm).
//!
//! Values are JSON documents (send text or bytes as a JSON string). Each namespace is a
//! library [`Cache`](redkit::cache::Cache) with L1 on: a set or delete through any server
//! is seen by every server sharing the Redis (the backplane drops stale L1 copies).
//!
//! **Get-or-set** for clients that load values themselves: `POST …/{key}/claim` answers
//! the fresh value, or tells exactly one caller per key — across callers and servers — to
//! load it (`"state": "load"` with a `fill_token`), who stores it with `PUT …?fill_token=`
//! (or gives up with `DELETE …/claim?fill_token=`); the others are answered the stale value
//! at once when the fail-safe window (`stale_ttl_s`) keeps one, or wait up to `wait_ms` for
//! the loader's value. See [`Cache::lookup_or_claim`](redkit::cache::Cache::lookup_or_claim).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redkit::cache::{Claim, EntryOptions, KeysPage, MAX_TAGS};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller};
use crate::error::{ApiError, ApiResult, Body, ErrorBody, Params, RawBody, Segments};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_value, head_value, put_value, delete_value))
        .routes(routes!(claim, release_claim))
        .routes(routes!(get_ttl))
        .routes(routes!(status))
        .routes(routes!(stats))
        .routes(routes!(keys))
        .routes(routes!(clear))
        .routes(routes!(warm))
}

/// Most entries in one warm request.
const MAX_WARM: usize = 1000;

#[derive(Deserialize)]
struct Entry {
    ns: String,
    key: String,
}

/// Where a cache entry lives.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; `Entry` reads it
struct EntryPath {
    /// Namespace: 1–64 of A-Z a-z 0-9 _ - .
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    ns: String,
    /// Key (percent-encode `/`).
    #[param(min_length = 1)]
    key: String,
}

/// Options of a PUT.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PutParams {
    /// Seconds until the value goes stale (default 300; above 0, at most 366 days).
    #[param(exclusive_minimum = 0, maximum = 31622400)]
    ttl_s: Option<f64>,
    /// Fail-safe window: seconds past `ttl_s` during which the stale value may still be
    /// served when loading a new one fails or is under way (default 0: none; at most 366
    /// days).
    #[param(minimum = 0, maximum = 31622400)]
    stale_ttl_s: Option<f64>,
    /// Comma-separated tags to invalidate it by (at most 64, each 1–256 bytes).
    tags: Option<String>,
    /// The token of a `claim` answered `"state": "load"`: stores the value and ends the claim.
    #[param(min_length = 1, max_length = 128)]
    fill_token: Option<String>,
}

fn ttl_from_secs(field: &str, secs: f64) -> ApiResult<Duration> {
    if !(secs > 0.0 && secs <= 366.0 * 86_400.0) {
        return Err(ApiError::invalid(field, "seconds, > 0 and at most 366 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How long a stale value stays servable, and how long one failed load keeps it answering.
fn entry_options(ttl: Option<f64>, stale: Option<f64>, mut tags: Vec<String>) -> ApiResult<EntryOptions> {
    let mut opts = EntryOptions::new();
    if let Some(t) = ttl {
        opts = opts.ttl(ttl_from_secs("ttl_s", t)?);
    }
    if let Some(s) = stale.filter(|s| *s != 0.0) {
        opts = opts.fail_safe(ttl_from_secs("stale_ttl_s", s)?, Duration::from_secs(5));
    }
    // The library refuses them too, but only when storing: warm checks every entry first.
    tags.sort_unstable();
    tags.dedup();
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(
            "tags",
            format!("at most {MAX_TAGS} per value ({} given)", tags.len()),
        ));
    }
    if !tags.is_empty() {
        opts = opts.tags(tags);
    }
    Ok(opts)
}

/// The value at `key`.
#[utoipa::path(get, path = "/v1/cache/{ns}/{key}", tag = "cache", params(EntryPath),
    responses(
        (status = 200, description = "The value", body = serde_json::Value),
        (status = 404, description = "No fresh value", body = ErrorBody)
    ))]
async fn get_value(
    State(state): State<AppState>,
    caller: Caller,
    Segments(e): Segments<Entry>,
) -> ApiResult<Json<Value>> {
    caller.require(Area::Cache, &e.ns, Access::Read)?;
    let (cache, kept) = state.cache_to_read(&e.ns)?;
    match cache.get(&e.key).await? {
        Some(v) => {
            if !kept {
                state.keep_cache(&e.ns, &cache);
            }
            Ok(Json(v))
        }
        None => Err(ApiError::not_found(format!("no value at {}/{}", e.ns, e.key))),
    }
}

/// Whether a fresh value is at `key` (200 or 404, no body).
#[utoipa::path(head, path = "/v1/cache/{ns}/{key}", tag = "cache", params(EntryPath),
    responses((status = 200, description = "Present"), (status = 404, description = "Absent")))]
async fn head_value(
    State(state): State<AppState>,
    caller: Caller,
    Segments(e): Segments<Entry>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Cache, &e.ns, Access::Read)?;
    Ok(if state.cache_to_read(&e.ns)?.0.exists(&e.key).await? {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

/// Stores the JSON body at `key`.
#[utoipa::path(put, path = "/v1/cache/{ns}/{key}", tag = "cache", params(EntryPath, PutParams),
    request_body(content = serde_json::Value, description = "Any JSON value", content_type = "application/json"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Bad key, TTL, tags or JSON", body = ErrorBody),
        (status = 413, description = "Value over the limit", body = ErrorBody)
    ))]
async fn put_value(
    State(state): State<AppState>,
    caller: Caller,
    Segments(e): Segments<Entry>,
    Params(p): Params<PutParams>,
    RawBody(body): RawBody,
) -> ApiResult<StatusCode> {
    caller.require(Area::Cache, &e.ns, Access::Write)?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|err| ApiError::invalid("body", format!("not JSON: {err}")))?;
    let tags = p
        .tags
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let opts = entry_options(p.ttl_s, p.stale_ttl_s, tags)?;
    let cache = state.cache(&e.ns)?;
    match p.fill_token {
        Some(token) => cache.fill(&e.key, &value, &opts, &token).await?,
        None => cache.set_with(&e.key, &value, &opts).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Whether something was removed.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub deleted: bool,
}

/// Removes `key`.
#[utoipa::path(delete, path = "/v1/cache/{ns}/{key}", tag = "cache", params(EntryPath),
    responses((status = 200, description = "Removed, or was absent", body = Deleted)))]
async fn delete_value(
    State(state): State<AppState>,
    caller: Caller,
    Segments(e): Segments<Entry>,
) -> ApiResult<Json<Deleted>> {
    caller.require(Area::Cache, &e.ns, Access::Write)?;
    let deleted = state.cache(&e.ns)?.delete(&e.key).await?;
    Ok(Json(Deleted { deleted }))
}

/// Time left before a value goes stale.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Ttl {
    pub ttl_ms: u64,
}

/// Time left before the value at `key` goes stale.
#[utoipa::path(get, path = "/v1/cache/{ns}/{key}/ttl", tag = "cache", params(EntryPath),
    responses(
        (status = 200, description = "Time left", body = Ttl),
        (status = 404, description = "No fresh value", body = ErrorBody)
    ))]
async fn get_ttl(State(state): State<AppState>, caller: Caller, Segments(e): Segments<Entry>) -> ApiResult<Json<Ttl>> {
    caller.require(Area::Cache, &e.ns, Access::Read)?;
    match state.cache_to_read(&e.ns)?.0.ttl(&e.key).await? {
        Some(left) => Ok(Json(Ttl {
            ttl_ms: left.as_millis() as u64,
        })),
        None => Err(ApiError::not_found(format!("no value at {}/{}", e.ns, e.key))),
    }
}

/// The cache layer of this server.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CacheStatus {
    /// redis, fallback or embedded.
    pub mode: String,
    /// Whether this server hears other instances' invalidations (always false without Redis).
    pub backplane_connected: bool,
    /// Namespaces this server has served since it started (that the caller may read).
    pub namespaces: Vec<String>,
}

/// Mode, backplane, and the namespaces in use.
#[utoipa::path(get, path = "/v1/cache/status", tag = "cache",
    responses((status = 200, description = "Status", body = CacheStatus)))]
async fn status(State(state): State<AppState>, caller: Caller) -> Json<CacheStatus> {
    let caches = state.caches();
    let mut namespaces: Vec<String> = caches
        .iter()
        .map(|c| c.namespace().to_string())
        .filter(|ns| caller.may(Area::Cache, ns, Access::Read))
        .collect();
    namespaces.sort();
    Json(CacheStatus {
        mode: format!("{:?}", state.redkit().mode()).to_lowercase(),
        backplane_connected: caches.first().is_some_and(|c| c.backplane_connected()),
        namespaces,
    })
}

/// Per-namespace statistics of this server.
#[derive(Serialize, ToSchema)]
pub struct CacheStats {
    pub namespaces: Vec<redkit::cache::CacheStatsSnapshot>,
}

/// Hits, misses, sets, invalidations and L1 size per namespace (this server's).
#[utoipa::path(get, path = "/v1/cache/stats", tag = "cache",
    responses((status = 200, description = "Statistics", body = CacheStats)))]
async fn stats(State(state): State<AppState>, caller: Caller) -> Json<CacheStats> {
    let mut namespaces: Vec<_> = state
        .caches()
        .iter()
        .filter(|c| caller.may(Area::Cache, c.namespace(), Access::Read))
        .map(|c| c.stats())
        .collect();
    namespaces.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    Json(CacheStats { namespaces })
}

/// A page of a key listing.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct KeysParams {
    /// Namespace: 1–64 of A-Z a-z 0-9 _ - .
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    ns: String,
    /// Glob (`*`, `?`, `[…]`) of 1–1024 bytes; default `*`.
    #[param(min_length = 1, max_length = 1024)]
    pattern: Option<String>,
    /// `next_cursor` of the previous page, as given.
    cursor: Option<String>,
    /// About this many keys (1–10000, default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// Lists keys of a namespace, a page at a time (SCAN on Redis, never KEYS).
#[utoipa::path(get, path = "/v1/cache/keys", tag = "cache", params(KeysParams),
    responses(
        (status = 200, description = "A page", body = KeysPage),
        (status = 400, description = "Bad namespace, pattern or limit", body = ErrorBody)
    ))]
async fn keys(
    State(state): State<AppState>,
    caller: Caller,
    Params(p): Params<KeysParams>,
) -> ApiResult<Json<KeysPage>> {
    caller.require(Area::Cache, &p.ns, Access::Read)?;
    let page = state
        .cache(&p.ns)?
        .keys(
            p.pattern.as_deref().unwrap_or("*"),
            p.cursor.as_deref(),
            p.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(page))
}

/// What to remove.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearRequest {
    /// Namespace: 1–64 of A-Z a-z 0-9 _ - .
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    pub ns: String,
    /// Remove keys matching this glob (1–1024 bytes).
    #[schema(min_length = 1, max_length = 1024)]
    pub pattern: Option<String>,
    /// Remove keys filed under this tag (1–256 bytes).
    #[schema(min_length = 1, max_length = 256)]
    pub tag: Option<String>,
}

/// How many entries were removed.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Removed {
    pub removed: u64,
}

/// Removes keys by pattern or tag, or the whole namespace when neither is given
/// (needs `admin`).
#[utoipa::path(post, path = "/v1/cache/clear", tag = "cache", request_body = ClearRequest,
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 400, description = "Both pattern and tag, or bad input", body = ErrorBody)
    ))]
async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ClearRequest>,
) -> ApiResult<Json<Removed>> {
    caller.require(Area::Cache, &req.ns, Access::Admin)?;
    let cache = state.cache(&req.ns)?;
    let removed = match (req.pattern, req.tag) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("tag", "give pattern or tag, not both")),
        (Some(p), None) => cache.invalidate_pattern(&p).await?,
        (None, Some(t)) => cache.invalidate_tag(&t).await?,
        (None, None) => cache.clear().await?,
    };
    Ok(Json(Removed { removed }))
}

/// One entry to warm.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmEntry {
    #[schema(min_length = 1)]
    pub key: String,
    #[schema(value_type = serde_json::Value)]
    pub value: Value,
    /// Seconds until stale (default 300; above 0, at most 366 days).
    #[schema(exclusive_minimum = 0, maximum = 31622400)]
    pub ttl_s: Option<f64>,
    /// Fail-safe window past `ttl_s`, in seconds (default 0; at most 366 days).
    #[schema(minimum = 0, maximum = 31622400)]
    pub stale_ttl_s: Option<f64>,
    /// Tags to invalidate it by (at most 64, each 1–256 bytes).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub tags: Vec<String>,
}

/// Entries to store in one namespace.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmRequest {
    /// Namespace: 1–64 of A-Z a-z 0-9 _ - .
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    pub ns: String,
    /// Up to 1000.
    #[schema(max_items = 1000)]
    pub entries: Vec<WarmEntry>,
}

/// How many entries were stored.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Stored {
    pub stored: usize,
}

/// Stores many entries at once (pre-loading a namespace).
#[utoipa::path(post, path = "/v1/cache/warm", tag = "cache", request_body = WarmRequest,
    responses(
        (status = 200, description = "Stored", body = Stored),
        (status = 400, description = "Bad entry (named by index)", body = ErrorBody)
    ))]
async fn warm(State(state): State<AppState>, caller: Caller, Body(req): Body<WarmRequest>) -> ApiResult<Json<Stored>> {
    caller.require(Area::Cache, &req.ns, Access::Write)?;
    if req.entries.len() > MAX_WARM {
        return Err(ApiError::invalid("entries", format!("at most {MAX_WARM} per request")));
    }
    let cache = state.cache(&req.ns)?;
    // Check every entry before storing any, so a bad one leaves the namespace untouched.
    let mut checked = Vec::with_capacity(req.entries.len());
    for (i, e) in req.entries.into_iter().enumerate() {
        let opts = entry_options(e.ttl_s, e.stale_ttl_s, e.tags)
            .map_err(|err| ApiError::invalid(&format!("entries[{i}]"), err.message))?;
        checked.push((e.key, e.value, opts));
    }
    for (key, value, opts) in &checked {
        cache.set_with(key, value, opts).await?;
    }
    Ok(Json(Stored { stored: checked.len() }))
}

/// A get-or-set: how long the claim to load is held, and how long to wait for another
/// caller's load.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// How long the claim to load is held if the loader neither fills nor releases it
    /// (default 10000, 1 to 300000).
    #[schema(minimum = 1, maximum = 300000)]
    pub claim_ttl_ms: Option<u64>,
    /// How long to wait for another caller's load when no stale value can be served
    /// (default 5000, at most 300000; 0 answers `busy` at once).
    #[schema(maximum = 300000)]
    pub wait_ms: Option<u64>,
}

/// What a get-or-set found.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClaimState {
    /// A fresh value: `value`.
    Fresh,
    /// Load it, then `PUT` it with `fill_token` (or `DELETE …/claim`); `stale` if any.
    Load,
    /// Another caller is loading it: `stale` if the fail-safe window keeps one, else its
    /// value did not come within `wait_ms`.
    Busy,
}

/// The answer to a get-or-set.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClaimAnswer {
    pub state: ClaimState,
    /// The fresh value (`fresh`).
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Value>,
    /// The stale value still inside the fail-safe window (`load`, `busy`), if any.
    #[schema(value_type = Option<serde_json::Value>)]
    pub stale: Option<Value>,
    /// Proves the claim to `PUT …?fill_token=` and `DELETE …/claim` (`load`).
    pub fill_token: Option<String>,
}

/// Get-or-set: the fresh value, or a claim to load it (one loader per key across callers
/// and servers), or the stale value while another caller loads it.
#[utoipa::path(post, path = "/v1/cache/{ns}/{key}/claim", tag = "cache", params(EntryPath),
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "Fresh, load or busy", body = ClaimAnswer),
        (status = 400, description = "Bad key, claim_ttl_ms or wait_ms", body = ErrorBody)
    ))]
async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    Segments(e): Segments<Entry>,
    Body(req): Body<ClaimRequest>,
) -> ApiResult<Json<ClaimAnswer>> {
    caller.require(Area::Cache, &e.ns, Access::Write)?;
    let ttl = Duration::from_millis(req.claim_ttl_ms.unwrap_or(10_000));
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(5_000));
    let cache = state.cache(&e.ns)?;
    let found = tokio::select! {
        found = cache.lookup_or_claim(&e.key, ttl, wait) => found?,
        _ = state.shutting_down() => Claim::Busy { stale: None },
    };
    Ok(Json(match found {
        Claim::Fresh(value) => ClaimAnswer {
            state: ClaimState::Fresh,
            value: Some(value),
            stale: None,
            fill_token: None,
        },
        Claim::Load { token, stale } => ClaimAnswer {
            state: ClaimState::Load,
            value: None,
            stale,
            fill_token: Some(token),
        },
        Claim::Busy { stale } => ClaimAnswer {
            state: ClaimState::Busy,
            value: None,
            stale,
            fill_token: None,
        },
    }))
}

/// The claim to give up.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReleaseParams {
    /// The token a `claim` answered (1–128 bytes).
    #[param(min_length = 1, max_length = 128)]
    fill_token: String,
}

/// Gives a claim up (the load failed), so the next caller may load at once.
#[utoipa::path(delete, path = "/v1/cache/{ns}/{key}/claim", tag = "cache", params(EntryPath, ReleaseParams),
    responses(
        (status = 204, description = "Released (or already ended)"),
        (status = 400, description = "Bad key or token", body = ErrorBody)
    ))]
async fn release_claim(
    State(state): State<AppState>,
    caller: Caller,
    Segments(e): Segments<Entry>,
    Params(p): Params<ReleaseParams>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Cache, &e.ns, Access::Write)?;
    state.cache(&e.ns)?.release_claim(&e.key, &p.fill_token).await?;
    Ok(StatusCode::NO_CONTENT)
}
