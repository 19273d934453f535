//! `GET /health` and `GET /ready`.
//!
//! `/health` answers 200 while every registered capability can serve (also in `fallback`
//! mode, where the embedded store serves), and 503 when Redis is away and a fail-closed
//! capability (locks, by default) cannot — worth an alert. Its body is the library's whole
//! health snapshot (namespaces, policies, the data dir, Redis's replies, the journal) for a
//! caller with the operations scope (`ops`), or when no keys are configured; anyone else
//! gets only `{status, mode}`, answered without asking any store.
//!
//! `/ready` is for load balancers and readiness probes: 200 whenever this server can take
//! requests, fallback included (taking every instance out of rotation during a Redis
//! outage would turn a degraded service into none), and 503 once it is shutting down. It
//! answers from the mode and the shutdown flag alone — no Redis command (probes come every
//! few seconds, and a Redis timeout would count against the breaker). Neither needs a key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redkit::health::Status;
use redkit::{FallbackPolicy, Mode, Redkit};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, OptionalCaller};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

fn status_code(status: Status) -> StatusCode {
    match status {
        Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Status::Ok | Status::Degraded => StatusCode::OK,
    }
}

/// The verdict of `/health` without its details.
#[derive(Serialize, ToSchema)]
pub struct HealthSummary {
    /// ok, degraded (fallback: the embedded store serves everything) or unavailable
    /// (fallback, and a capability that fails closed cannot serve).
    #[schema(value_type = String)]
    pub status: Status,
    /// redis, fallback or embedded.
    #[schema(value_type = String)]
    pub mode: Mode,
}

/// The verdict from the mode and the registered capabilities alone (what the library's
/// health snapshot computes it from), asking no store.
pub(super) fn summary_of(redkit: &Redkit) -> HealthSummary {
    let mode = redkit.mode();
    let fails_closed = redkit
        .route()
        .capabilities()
        .values()
        .any(|p| *p == FallbackPolicy::FailClosed);
    let status = match mode {
        Mode::Fallback if fails_closed => Status::Unavailable,
        Mode::Fallback => Status::Degraded,
        Mode::Redis | Mode::Embedded => Status::Ok,
    };
    HealthSummary { status, mode }
}

/// Status and mode; with the operations scope (`ops`) or without keys configured, also
/// the breaker, Redis and embedded-store details, journal backlog, capabilities and
/// statistics.
#[utoipa::path(get, path = "/health", tag = "operations", security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Serving (mode redis, fallback or embedded): `{status, mode}`, \
            and the details for the ops scope", body = serde_json::Value),
        (status = 401, description = "An API key was sent but is unknown", body = crate::error::ErrorBody),
        (status = 503, description = "A fail-closed capability cannot serve", body = serde_json::Value)
    ))]
async fn health(State(state): State<AppState>, OptionalCaller(caller): OptionalCaller) -> Response {
    if caller.is_some_and(|c| c.may(Area::Ops, "*", Access::Read)) {
        let health = state.redkit().health().await;
        (status_code(health.status), Json(health)).into_response()
    } else {
        let summary = summary_of(state.redkit());
        (status_code(summary.status), Json(summary)).into_response()
    }
}

/// Whether this server takes requests.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// ready, or shutting_down.
    pub status: &'static str,
    /// redis, fallback or embedded.
    #[schema(value_type = String)]
    pub mode: Mode,
}

/// Readiness for load balancers: 200 while serving (also in fallback mode), 503 while
/// shutting down. Asks no store.
#[utoipa::path(get, path = "/ready", tag = "operations", security(()),
    responses(
        (status = 200, description = "Taking requests", body = Readiness),
        (status = 503, description = "Shutting down", body = Readiness)
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let mode = state.redkit().mode();
    if state.is_shutting_down() {
        let body = Readiness {
            status: "shutting_down",
            mode,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    } else {
        (StatusCode::OK, Json(Readiness { status: "ready", mode }))
    }
}
