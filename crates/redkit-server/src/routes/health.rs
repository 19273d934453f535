//! `GET /health` and `GET /ready`: the library's health snapshot as JSON.
//!
//! `/health` answers 200 while every registered capability can serve (also in `fallback`
//! mode, where the embedded store serves), and 503 when Redis is away and a fail-closed
//! capability (locks, by default) cannot — worth an alert. `/ready` is for load balancers
//! and readiness probes: 200 whenever this server can take requests, fallback included
//! (taking every instance out of rotation during a Redis outage would turn a degraded
//! service into none), and 503 once it is shutting down. Neither needs an API key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redkit::health::Status;
use redkit::{Health, Redkit};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

async fn snapshot(redkit: &Redkit) -> (StatusCode, Json<Health>) {
    let health = redkit.health().await;
    let status = match health.status {
        Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Status::Ok | Status::Degraded => StatusCode::OK,
    };
    (status, Json(health))
}

/// Mode (redis, fallback, embedded), breaker, Redis and embedded-store details,
/// journal backlog, capabilities and statistics.
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses(
        (status = 200, description = "Serving (mode redis, fallback or embedded)", body = Object),
        (status = 503, description = "A fail-closed capability cannot serve", body = Object)
    ))]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    snapshot(state.redkit()).await
}

/// Readiness for load balancers: 200 while serving (also in fallback mode), 503 while
/// shutting down; the body is the health snapshot.
#[utoipa::path(get, path = "/ready", tag = "operations", security(()),
    responses(
        (status = 200, description = "Taking requests", body = Object),
        (status = 503, description = "Shutting down", body = Object)
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (_, health) = snapshot(state.redkit()).await;
    let status = if state.is_shutting_down() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, health)
}
