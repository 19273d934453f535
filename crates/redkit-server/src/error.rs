//! HTTP errors: every failure is `{"error":{"code","message"}}` with the status of its kind,
//! and request bodies, queries and paths that cannot be read say which field and why.
//!
//! Whoever answers an error — a handler, the router (404, 405), a layer — the body is the
//! envelope: [`envelope`] rewrites any error response that is not JSON yet (hyper's own
//! rejections are rewritten in [`crate::conn`]). A 5xx body never carries internals (script
//! SHAs, file paths, Redis's words): those are logged with the request id, and the body
//! gives the request id to quote.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use redkit::ErrorKind;

use crate::conn::Every;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: invalid_input, too_large, not_found, method_not_allowed,
    /// conflict, limit_exceeded, unavailable, unauthorized, forbidden,
    /// unsupported_media_type, internal.
    pub code: &'static str,
    /// For humans; names the field, limit or resource involved.
    pub message: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (boxed: most errors have none, and results stay small).
    pub headers: Option<Box<HeaderMap>>,
    /// Whether its cause is logged already (a library error answered 500).
    logged: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: None,
            logged: false,
        }
    }

    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("invalid {field}: {reason}"),
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        let headers = self.headers.get_or_insert_with(Default::default);
        headers.insert(name, axum::http::HeaderValue::from_static(value));
        self
    }

    fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body is larger than the limit of {limit} bytes (setting server.max_body_bytes)"),
        )
    }
}

tokio::task_local! {
    /// The request id of the request being served (set by [`with_request_id`]).
    static REQUEST_ID: HeaderValue;
}

/// The id of the request being served, as logged and echoed in `x-request-id`.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

impl From<redkit::Error> for ApiError {
    fn from(e: redkit::Error) -> Self {
        let (status, code) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::LimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "limit_exceeded"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if !status.is_server_error() {
            return ApiError::new(status, code, e.to_string());
        }
        // The library's words may name scripts, files and Redis's replies: they go to the
        // log, and the client gets the request id to quote.
        let id = request_id();
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            // Expected during an outage and answered by the hundred: not an error line
            // each (see `log_failure` for the warning they get).
            tracing::debug!(request_id = %id, error = %e, "answered 503 unavailable");
            if e.is_indeterminate() {
                format!(
                    "unavailable: Redis did not answer a write it may have run, so it may or may not have taken \
                     effect; retry it (redkit's writes are safe to retry) (request id {id})"
                )
            } else {
                format!(
                    "unavailable: the store this call needs cannot serve it now (Redis is away and this capability \
                     fails closed, or a call to Redis failed); retry later (request id {id})"
                )
            }
        } else {
            tracing::error!(request_id = %id, error = %e, "request failed");
            format!("internal error (request id {id}); the details are in the server's log")
        };
        ApiError {
            logged: true,
            ..ApiError::new(status, code, message)
        }
    }
}

/// On a response whose failure is logged already (with its cause).
#[derive(Clone, Copy)]
struct Logged;

/// 503s answered since the last warning about them.
static UNAVAILABLE: AtomicU64 = AtomicU64::new(0);
static UNAVAILABLE_WARNING: Every = Every::new(Duration::from_secs(60));

/// Logs a 5xx as it leaves: a 500 not logged with its cause yet at error with its request
/// id; 503s (by the hundred while Redis is away and a capability fails closed) at most one
/// warning a minute, with how many there were (each is in the access log at info).
fn log_failure(status: StatusCode, logged: bool, request_id: &HeaderValue) {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        UNAVAILABLE.fetch_add(1, Ordering::Relaxed);
        if UNAVAILABLE_WARNING.due() {
            let answered = UNAVAILABLE.swap(0, Ordering::Relaxed);
            tracing::warn!(
                answered,
                "answered 503 unavailable to {answered} request(s) since the last such warning (Redis away and a \
                 capability that fails closed, or shutting down); at most one such line a minute"
            );
        }
    } else if status.is_server_error() && !logged {
        let id = String::from_utf8_lossy(request_id.as_bytes());
        tracing::error!(request_id = %id, status = status.as_u16(), "response failed");
    }
}

/// Runs `served` (the rest of the application) with `id` known to [`request_id`].
pub async fn with_request_id<F: std::future::Future<Output = Response>>(id: HeaderValue, served: F) -> Response {
    REQUEST_ID.scope(id, served).await
}

/// A response as it leaves (called by [`crate::front`]): a 5xx is logged as
/// `log_failure` says, and an error response that is not JSON yet (the router's 404 and
/// 405, a layer's refusal) gets the envelope, keeping its status and headers (`Allow` on
/// a 405). `head`: the request was a HEAD, whose answer has no body.
pub fn envelope(response: Response, head: bool, id: &HeaderValue) -> Response {
    let status = response.status();
    log_failure(status, response.extensions().get::<Logged>().is_some(), id);
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // HEAD answers have no body by definition (HEAD /v1/cache/… is "200 or 404, no body").
    if head || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            "no such route (the routes are listed at GET /openapi.json)".to_string(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            (
                "method_not_allowed",
                format!("method not allowed on this route; allowed: {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "request body over its limit".to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json".to_string(),
        ),
        s if s.is_server_error() => (
            "internal",
            format!("internal error (request id {})", String::from_utf8_lossy(id.as_bytes())),
        ),
        s => (
            "invalid_input",
            format!("request refused: {}", s.canonical_reason().unwrap_or("bad request")),
        ),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut rewritten = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE {
            rewritten.headers_mut().append(name, value.clone());
        }
    }
    rewritten
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, self.headers.map(|h| *h).unwrap_or_default(), Json(body)).into_response();
        if self.logged {
            response.extensions_mut().insert(Logged);
        }
        response
    }
}

/// The largest request body, read from the state by the extractors below so that the
/// 413 message can name it.
pub trait BodyLimit {
    fn max_body_bytes(&self) -> usize;
}

fn bytes_rejection(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::body_too_large(limit)
    } else {
        ApiError::new(r.status(), "invalid_input", r.body_text())
    }
}

/// A JSON request body whose rejections are JSON errors naming the field.
pub struct Body<T>(pub T);

impl<S: BodyLimit + Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                // axum's text names the field path ("ttl_ms: invalid type: …").
                e.body_text()
                    .replace("Failed to deserialize the JSON body into the target type: ", ""),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!("malformed JSON body: {}", e.body_text()),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(r)) => Err(bytes_rejection(r, state.max_body_bytes())),
            Err(other) => Err(ApiError::new(other.status(), "invalid_input", other.body_text())),
        }
    }
}

/// A raw body (a cache value), with the same 413.
pub struct RawBody(pub axum::body::Bytes);

impl<S: BodyLimit + Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| bytes_rejection(r, state.max_body_bytes()))
    }
}

/// Query parameters whose rejections name the parameter.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    e.body_text().replace("Failed to deserialize query string: ", "query: "),
                )
            })
    }
}

/// Path segments whose rejections name the segment.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Segments(p.0))
            .map_err(|e: PathRejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text()))
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
