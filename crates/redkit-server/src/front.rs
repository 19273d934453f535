//! What every request gets around the routes: request id, the keyless guard, the JSON error
//! envelope, request metrics and the access log, in one function the connection calls.
//!
//! They were five layers (tower-http's request-id pair and trace span, two `from_fn`
//! middlewares) and a route layer; each cloned and boxed the service below it per request,
//! and together they cost as much CPU as the handler (`bench/PROFILES.md`). Then one
//! `from_fn` middleware on a router of its own, which still boxed its future, cloned a
//! boxed service for `Next` and routed every request twice. Now [`App::serve`] is a plain
//! async function the connection calls with each request, around the routes. Each concern
//! keeps its logic in its own module ([`crate::auth::keyless_refusal`],
//! [`crate::error::envelope`], [`crate::metrics::record`]); this module only orders them.
//!
//! Every request gets an id: the caller's `x-request-id` when it sends a usable one
//! (printable, at most 128 bytes), otherwise `<process prefix>-<counter>` — a random
//! prefix drawn once per process and a counter, unique across a deployment's servers in
//! practice and free to make (a UUID per request cost a random draw each). The id is
//! echoed on the response, quoted in 5xx bodies and logged with every failure.
//!
//! The access log (`[server] access_log`, `REDKIT_SERVER_ACCESS_LOG`) is a line per
//! request at info with method, path (session ids redacted), status, latency and id:
//!
//! - `errors` (the default): requests answered 5xx or 4xx, except 404 and 429 — a cache
//!   miss or an absent key, and a rate-limit refusal, are answers that come by the
//!   thousand, not failures. Formatting and writing a line for every success was the
//!   largest per-request cost the server added (bench/PROFILES.md), and what a success
//!   would say is already counted per route and status in `/metrics` and the dashboard.
//! - `all`: every request, as a reverse proxy's access log.
//! - `off`: none (failures are still logged by [`crate::error`]).

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tower::{Layer, Service};

/// What the front needs to know of the server's settings.
#[derive(Debug, Clone, Copy)]
pub struct Front {
    pub access_log: AccessLog,
    /// No API keys configured: the keyless guard applies ([`crate::auth`]).
    pub keyless: bool,
}

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a caller; a longer one is replaced.
const MAX_GIVEN_ID: usize = 128;

/// Which requests get an access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// Failures: 5xx, and 4xx other than 404 and 429.
    #[default]
    Errors,
    /// Every request.
    All,
    /// None.
    Off,
}

impl AccessLog {
    fn wants(self, status: StatusCode) -> bool {
        match self {
            AccessLog::All => true,
            AccessLog::Off => false,
            AccessLog::Errors => {
                status.is_server_error()
                    || (status.is_client_error()
                        && status != StatusCode::NOT_FOUND
                        && status != StatusCode::TOO_MANY_REQUESTS)
            }
        }
    }
}

impl FromStr for AccessLog {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "errors" => Ok(AccessLog::Errors),
            "all" => Ok(AccessLog::All),
            "off" => Ok(AccessLog::Off),
            _ => Err("one of errors, all, off"),
        }
    }
}

impl fmt::Display for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessLog::Errors => "errors",
            AccessLog::All => "all",
            AccessLog::Off => "off",
        })
    }
}

/// A fresh request id: this process's prefix and the next number, in hex
/// (`3f09a1c2-1b`). Written by hand into a buffer on the stack: through `format!` it was 2%
/// of a cache GET's CPU (bench/PROFILES.md), for a header on every answer.
pub fn new_request_id() -> HeaderValue {
    const PREFIX_LEN: usize = 9;
    static PREFIX: LazyLock<[u8; PREFIX_LEN]> = LazyLock::new(|| {
        let mut prefix = [b'-'; PREFIX_LEN];
        write_hex(rand::random::<u32>().into(), &mut prefix[..8]);
        prefix
    });
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let digits = (16 - n.leading_zeros() as usize / 4).max(1);
    let mut id = [0u8; PREFIX_LEN + 16];
    id[..PREFIX_LEN].copy_from_slice(&*PREFIX);
    write_hex(n, &mut id[PREFIX_LEN..PREFIX_LEN + digits]);
    HeaderValue::from_bytes(&id[..PREFIX_LEN + digits]).expect("hex digits are a valid header value")
}

/// Writes the low `out.len()` hex digits of `n` into `out`, most significant first.
fn write_hex(mut n: u64, out: &mut [u8]) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

fn usable(given: &HeaderValue) -> bool {
    !given.is_empty() && given.len() <= MAX_GIVEN_ID && given.to_str().is_ok()
}

/// The routes with the body limit: around the router as a whole, not a layer on it (which
/// would wrap, and box, each route).
type Routes = <DefaultBodyLimit as Layer<Router>>::Service;

/// The whole HTTP application: the routes, and what every request gets around them.
#[derive(Clone)]
pub struct App {
    front: Front,
    routes: Routes,
}

impl App {
    /// `routes` with bodies limited to `max_body_bytes`, behind `front`.
    pub fn new(front: Front, routes: Router, max_body_bytes: usize) -> Self {
        App {
            front,
            routes: DefaultBodyLimit::max(max_body_bytes).layer(routes),
        }
    }

    /// Serves one request: gives it its id (echoed on the response), refuses what the
    /// keyless guard refuses, routes the rest with the id known to
    /// [`crate::error::request_id`], gives error responses the JSON envelope, counts the
    /// request in `/metrics` and the dashboard, and writes the access-log line the setting
    /// asks for.
    pub async fn serve(&self, mut req: Request) -> Response {
        let front = self.front;
        let started = Instant::now();
        let id = match req.headers().get(&REQUEST_ID) {
            Some(given) if usable(given) => given.clone(),
            _ => {
                let id = new_request_id();
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let method = req.method().clone();
        // Kept only when a line may be written (a `Uri` clones cheaply).
        let uri = (front.access_log != AccessLog::Off).then(|| req.uri().clone());
        let refusal = if front.keyless {
            crate::auth::keyless_refusal(&req)
        } else {
            None
        };
        let response = match refusal {
            Some(refused) => refused,
            None => {
                let routed = self.routes.clone().call(req);
                crate::error::with_request_id(id.clone(), async { routed.await.unwrap_or_else(|e| match e {}) }).await
            }
        };
        let mut response = crate::error::envelope(response, method == Method::HEAD, &id);
        let status = response.status();
        let elapsed = started.elapsed();
        crate::metrics::record(&method, response.extensions().get::<MatchedPath>(), status, elapsed);
        if let Some(uri) = uri
            && front.access_log.wants(status)
        {
            let path = crate::loggable_path(uri.path());
            let id = String::from_utf8_lossy(id.as_bytes());
            tracing::info!(
                target: "redkit_server::access",
                %method,
                %path,
                status = status.as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1e3,
                request_id = %id,
                "request"
            );
        }
        response.headers_mut().insert(REQUEST_ID, id);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_mode_logs_failures_not_routine_answers() {
        let log = AccessLog::Errors;
        for logged in [400, 401, 403, 409, 413, 500, 503] {
            assert!(log.wants(StatusCode::from_u16(logged).unwrap()), "{logged}");
        }
        for quiet in [200, 201, 204, 304, 404, 429] {
            assert!(!log.wants(StatusCode::from_u16(quiet).unwrap()), "{quiet}");
        }
        assert!(AccessLog::All.wants(StatusCode::OK));
        assert!(!AccessLog::Off.wants(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn request_ids_are_unique_and_given_ones_are_checked() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[..9], b.as_bytes()[..9], "one prefix per process");
        let (prefix, counter) = a.to_str().unwrap().split_once('-').unwrap();
        assert_eq!(prefix.len(), 8);
        assert!(
            prefix
                .bytes()
                .chain(counter.bytes())
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let next = u64::from_str_radix(b.to_str().unwrap().split_once('-').unwrap().1, 16).unwrap();
        assert!(next > u64::from_str_radix(counter, 16).unwrap(), "{a:?} then {b:?}");
        let mut digits = [0u8; 16];
        for (n, hex) in [
            (0, "0000"),
            (0xbeef, "beef"),
            (0x1_0000, "0000"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            write_hex(n, &mut digits[..hex.len()]);
            assert_eq!(&digits[..hex.len()], hex.as_bytes());
        }
        assert!(usable(&HeaderValue::from_static("trace-me-42")));
        assert!(!usable(&HeaderValue::from_static("")));
        assert!(!usable(&HeaderValue::from_str(&"x".repeat(MAX_GIVEN_ID + 1)).unwrap()));
        assert_eq!("off".parse::<AccessLog>(), Ok(AccessLog::Off));
        assert!("verbose".parse::<AccessLog>().is_err());
    }
}
