//! `GET /health` and `GET /ready`: the library's health snapshot as JSON.
//!
//! Both answer 200 while every registered capability can serve (also in `fallback` mode,
//! where the embedded store serves), and 503 when Redis is away and a fail-closed
//! capability (locks, by default) cannot.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use redkit::health::Status;
use redkit::{Health, Redkit};

pub fn routes() -> Router<Redkit> {
    Router::new().route("/health", get(health)).route("/ready", get(health))
}

async fn health(State(redkit): State<Redkit>) -> (StatusCode, Json<Health>) {
    let health = redkit.health().await;
    let status = match health.status {
        Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Status::Ok | Status::Degraded => StatusCode::OK,
    };
    (status, Json(health))
}
