//! `redkit serve`: every redkit capability over HTTP/JSON.
//!
//! The server is a thin translation of the library: each route calls one library method
//! and maps its [`redkit::Error`] kind to a status (400, 404, 409, 413, 429, 503). What it
//! adds is HTTP's own business: API keys and scopes ([`auth`]), body limits and JSON
//! errors ([`error`]), Prometheus metrics ([`metrics`]), request ids and access logs
//! ([`front`]), the OpenAPI document, and a graceful shutdown. The routes are listed in the README and in
//! `GET /openapi.json`.

pub mod auth;
pub mod cli;
pub mod conn;
pub mod error;
pub mod front;
pub mod metrics;
pub mod routes;
pub mod settings;
mod state;
pub mod tokens;
pub mod traffic;

use std::borrow::Cow;
use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use settings::ServerSettings;
pub use state::AppState;

/// The whole HTTP application: routes, body limit, metrics, request ids and access logs.
pub fn app(state: AppState) -> front::App {
    let limit = state.settings().max_body_bytes;
    let front = front::Front {
        access_log: state.settings().access_log,
        keyless: auth::HasKeys::keys(&state).is_empty(),
    };
    // The front is not a layer of the router: a layer on the router wraps each route, and
    // would see a 405 before the router adds its `Allow` header; a router of its own
    // around this one (as it was) routed every request twice and boxed it twice more.
    // No tracing span per request: it cost more than the lines it would decorate, and
    // every line logged within a request names its request id instead.
    front::App::new(front, routes::router(state), limit)
}

/// A request path as logged: secrets in it are replaced — the session id of
/// `/v1/sessions/{id}…` (a bearer secret) becomes `{id}`, wherever the path goes on
/// (a mistyped route carries it as well).
pub fn loggable_path(path: &str) -> Cow<'_, str> {
    let segments: Vec<&str> = path.split('/').collect();
    let secret = segments
        .windows(3)
        .position(|w| w[0].eq_ignore_ascii_case("v1") && w[1].eq_ignore_ascii_case("sessions") && !w[2].is_empty());
    match secret {
        None => Cow::Borrowed(path),
        Some(i) => {
            let mut redacted = segments;
            redacted[i + 2] = "{id}";
            Cow::Owned(redacted.join("/"))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn session_ids_are_redacted_from_logged_paths() {
        let id = "MqrTcQ65ySSCfhk1-lSh0CTDuaUBkxN6glEfHeKFEZo";
        for (path, logged) in [
            (format!("/v1/sessions/{id}"), "/v1/sessions/{id}"),
            (format!("/v1/sessions/{id}/rotate"), "/v1/sessions/{id}/rotate"),
            (format!("/v1/sessions/{id}/"), "/v1/sessions/{id}/"),
            (format!("//V1/Sessions/{id}/x"), "//V1/Sessions/{id}/x"),
            ("/v1/sessions".to_string(), "/v1/sessions"),
            ("/v1/sessions/".to_string(), "/v1/sessions/"),
            ("/v1/users/ada/sessions".to_string(), "/v1/users/ada/sessions"),
            ("/v1/cache/sessions/k".to_string(), "/v1/cache/sessions/k"),
        ] {
            assert_eq!(loggable_path(&path), logged, "{path}");
        }
    }
}
