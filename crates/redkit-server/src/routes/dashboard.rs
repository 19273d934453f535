//! The operations dashboard: the page (`GET /`, its script and style under `/dashboard/`),
//! what the caller's key may do (`GET /v1/dashboard/me`), and a live stream of snapshots
//! (`GET /v1/dashboard/events`, Server-Sent Events read with `fetch`, so the key travels
//! in the `Authorization` header rather than a URL).
//!
//! The page is served by the binary itself (no CDN, works offline) with a strict
//! Content-Security-Policy (scripts and styles from this server only, no inline code, no
//! framing). `REDKIT_DASHBOARD_DIR` makes the server read the page's files from a folder
//! instead, for working on the page without rebuilding.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller, OptionalCaller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The page's files: name, content type, embedded text.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../dashboard/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/style.css"),
    ),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often the event stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(2);
/// Seconds of traffic in a snapshot.
const TRAFFIC_SECONDS: usize = 120;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard_me))
        .routes(routes!(dashboard_events))
}

/// `GET /` and `GET /dashboard/{file}`, outside the API document.
pub fn pages() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", axum::routing::get(|| async { asset("index.html") }))
        .route(
            "/dashboard/{file}",
            axum::routing::get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, embedded)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file of the dashboard").into_response();
    };
    let body = match std::env::var_os("REDKIT_DASHBOARD_DIR") {
        Some(dir) => std::fs::read_to_string(std::path::Path::new(&dir).join(name))
            .unwrap_or_else(|e| format!("/* REDKIT_DASHBOARD_DIR: cannot read {name}: {e} */")),
        None => embedded.to_string(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One scope of the caller's key.
#[derive(Serialize, ToSchema)]
pub struct ScopeView {
    /// The area (`cache`, `queues`, …); `null`: every area.
    pub area: Option<&'static str>,
    /// The name, or the prefix when `prefix`.
    pub name: String,
    /// `name` is a prefix.
    pub prefix: bool,
    /// `read`, `write` or `admin` (each includes the ones before).
    pub access: &'static str,
}

/// What the caller may do.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The server requires keys.
    pub keys_required: bool,
    /// The key's label (`null` without keys).
    pub label: Option<String>,
    /// The key's scopes; `null`: everything is allowed (a server without keys).
    pub scopes: Option<Vec<ScopeView>>,
}

/// The caller's scopes, so a page offers only what the key may do. Without a key, on a
/// server that requires one: `scopes` is empty (a page asks for a key).
#[utoipa::path(get, path = "/v1/dashboard/me", tag = "operations", security((), ("api_key" = [])),
    responses((status = 200, description = "The key's scopes", body = Me)))]
async fn dashboard_me(State(state): State<AppState>, OptionalCaller(caller): OptionalCaller) -> ApiResult<Json<Me>> {
    use crate::auth::HasKeys;
    let Some(caller) = caller else {
        return Ok(Json(Me {
            keys_required: true,
            label: None,
            scopes: Some(Vec::new()),
        }));
    };
    Ok(Json(Me {
        keys_required: !state.keys().is_empty(),
        label: caller.label().map(str::to_string),
        scopes: caller.scopes().map(|scopes| {
            scopes
                .into_iter()
                .map(|(area, name, prefix, access)| ScopeView {
                    area,
                    name,
                    prefix,
                    access,
                })
                .collect()
        }),
    }))
}

/// A queue in a snapshot.
#[derive(Serialize)]
struct QueueSnapshot {
    name: String,
    counts: serde_json::Value,
}

/// What the event stream sends every 2 s.
#[derive(Serialize)]
struct Snapshot {
    t_ms: u64,
    status: serde_json::Value,
    mode: redkit::Mode,
    /// The whole health document, for the operations scope.
    health: Option<serde_json::Value>,
    /// Requests per second, errors and latency over the last two minutes (operations scope).
    traffic: Option<Vec<crate::traffic::Second>>,
    /// The queues the key may read, with their counts.
    queues: Vec<QueueSnapshot>,
}

async fn snapshot(state: &AppState, caller: &Caller) -> Snapshot {
    let ops = caller.may(Area::Ops, "*", Access::Read);
    let health = if ops {
        serde_json::to_value(state.redkit().health().await).ok()
    } else {
        None
    };
    let mut queues = Vec::new();
    if let Ok(names) = state.redkit().queues().await {
        for name in names.into_iter().filter(|n| caller.may(Area::Queues, n, Access::Read)) {
            let Ok(queue) = state.queue_to_use(&name) else { continue };
            if let Ok(counts) = queue.stats().await {
                queues.push(QueueSnapshot {
                    name,
                    counts: serde_json::to_value(counts).unwrap_or_default(),
                });
            }
        }
    }
    let status = health
        .as_ref()
        .map(|h| h["status"].clone())
        .unwrap_or_else(|| serde_json::to_value(super::health::summary_of(state.redkit()).status).unwrap_or_default());
    Snapshot {
        t_ms: redkit::stats::now_ms(),
        status,
        mode: state.redkit().mode(),
        health,
        traffic: ops.then(|| crate::traffic::global().last(TRAFFIC_SECONDS)),
        queues,
    }
}

/// A `snapshot` event now and every 2 s: mode and status; with the operations scope the
/// health document and the last two minutes of traffic (requests, 5xx, p50/p99 latency per
/// second); the queues the key may read with their counts. Ends when the server shuts down.
#[utoipa::path(get, path = "/v1/dashboard/events", tag = "operations",
    responses((status = 200, description = "An endless event stream", content_type = "text/event-stream", body = String)))]
async fn dashboard_events(
    State(state): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = futures_util::stream::unfold((state, caller, true), |(state, caller, first)| async move {
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = state.shutting_down() => return None,
            }
        }
        let snap = snapshot(&state, &caller).await;
        let event = SseEvent::default()
            .event("snapshot")
            .data(serde_json::to_string(&snap).unwrap_or_default());
        Some((Ok(event), (state, caller, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
