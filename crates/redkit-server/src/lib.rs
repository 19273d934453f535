//! `redkit serve`: every redkit capability over HTTP/JSON.
//!
//! The server is a thin translation of the library: each route calls one library method
//! and maps its [`redkit::Error`] kind to a status (400, 404, 409, 413, 429, 503). What it
//! adds is HTTP's own business: API keys and scopes ([`auth`]), body limits and JSON
//! errors ([`error`]), Prometheus metrics ([`metrics`]), request ids and access logs, the
//! OpenAPI document, and a graceful shutdown. The routes are listed in the README and in
//! `GET /openapi.json`.

pub mod auth;
pub mod cli;
pub mod conn;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod settings;
mod state;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use settings::ServerSettings;
pub use state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application: routes, body limit, metrics, request ids and access logs.
pub fn app(state: AppState) -> Router {
    let limit = state.settings().max_body_bytes;
    routes::router(state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(error::finish))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        // Outermost: an incoming x-request-id is kept, otherwise one is made; either way it
        // is echoed on the response.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Serves `state` on `listener` until `signal` resolves, then stops accepting, lets
/// in-flight requests (and long polls, which return early) finish for up to the shutdown
/// grace, and returns. Heads are timed, idle keep-alives closed and connections capped
/// as the settings say ([`conn`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: watch::Sender<bool>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = state.settings();
    let limits = conn::Limits {
        header_read_timeout: settings.header_read_timeout,
        idle_timeout: settings.idle_timeout,
    };
    let (max_connections, grace) = (settings.max_connections, settings.shutdown_grace);
    conn::run(listener, app(state), limits, max_connections, grace, stop, signal).await
}
