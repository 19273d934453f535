//! `/v1/locks/{name}/…`: distributed locks over HTTP.
//!
//! `acquire` answers the owner token, the fencing token (strictly increasing per name:
//! send it with writes to the resource you protect) and when the lease ends. The lock
//! stays held until that time unless `extend`ed or `release`d with the token; there is no
//! watchdog on the server's side — renew before `expires_at_ms`. Held elsewhere → 409.
//! While Redis is away locks fail closed (503) unless `local_fallback` is asked for
//! (a host-local lock; pass the same flag to extend and release).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use redkit::lock::{DetachedLock, LockOptions};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller};
use crate::error::{ApiResult, Body, ErrorBody, Segments};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(acquire))
        .routes(routes!(extend))
        .routes(routes!(release))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct LockName {
    /// Lock name, 1–256 bytes.
    #[param(min_length = 1, max_length = 256)]
    name: String,
}

/// How to take a lock.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    /// Lease in ms (10 ms to 1 day; default 30000).
    #[schema(minimum = 10, maximum = 86400000)]
    pub ttl_ms: Option<u64>,
    /// How long to wait for it in ms (up to 1 hour; default 0 = try once).
    #[schema(maximum = 3600000)]
    pub wait_ms: Option<u64>,
    /// Semaphore: one of this many permits (1–10000; default 1 = a lock).
    #[schema(minimum = 1, maximum = 10000)]
    pub permits: Option<u32>,
    /// While Redis is away, take a host-local lock instead of failing (default false).
    #[serde(default)]
    pub local_fallback: bool,
}

fn options(ttl_ms: Option<u64>, wait_ms: Option<u64>, local_fallback: bool) -> LockOptions {
    LockOptions::new()
        .ttl(Duration::from_millis(ttl_ms.unwrap_or(30_000)))
        .wait(Duration::from_millis(wait_ms.unwrap_or(0)))
        .watchdog(false)
        .local_fallback(local_fallback)
}

/// Takes lock `name` (or a permit of semaphore `name`).
#[utoipa::path(post, path = "/v1/locks/{name}/acquire", tag = "locks", params(LockName),
    request_body = AcquireRequest,
    responses(
        (status = 200, description = "Held", body = DetachedLock),
        (status = 409, description = "Held by someone else (after waiting)", body = ErrorBody),
        (status = 503, description = "Redis away and the lock fails closed", body = ErrorBody)
    ))]
async fn acquire(
    State(state): State<AppState>,
    caller: Caller,
    Segments(LockName { name }): Segments<LockName>,
    Body(req): Body<AcquireRequest>,
) -> ApiResult<Json<DetachedLock>> {
    caller.require(Area::Locks, &name, Access::Write)?;
    let opts = options(req.ttl_ms, req.wait_ms, req.local_fallback);
    let wait = async {
        state
            .locks()
            .acquire_permit(&name, req.permits.unwrap_or(1), &opts)
            .await
    };
    let guard = tokio::select! {
        g = wait => g?,
        _ = state.shutting_down() => return Err(redkit::Error::Unavailable("the server is shutting down".into()).into()),
    };
    Ok(Json(guard.detach()))
}

/// Renews a lease.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// The owner token from acquire (1–128 bytes).
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
    /// New lease from now, in ms (10 ms to 1 day; default 30000).
    #[schema(minimum = 10, maximum = 86400000)]
    pub ttl_ms: Option<u64>,
    /// As given to acquire.
    #[serde(default)]
    pub local_fallback: bool,
}

/// The lease's new end.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Extended {
    pub expires_at_ms: u64,
}

/// Renews the lease of the holder of `token`.
#[utoipa::path(post, path = "/v1/locks/{name}/extend", tag = "locks", params(LockName),
    request_body = ExtendRequest,
    responses(
        (status = 200, description = "Renewed", body = Extended),
        (status = 409, description = "The token no longer holds the lock", body = ErrorBody)
    ))]
async fn extend(
    State(state): State<AppState>,
    caller: Caller,
    Segments(LockName { name }): Segments<LockName>,
    Body(req): Body<ExtendRequest>,
) -> ApiResult<Json<Extended>> {
    caller.require(Area::Locks, &name, Access::Write)?;
    let opts = options(req.ttl_ms, None, req.local_fallback);
    let expires_at_ms = state.locks().extend(&name, &req.token, &opts).await?;
    Ok(Json(Extended { expires_at_ms }))
}

/// Gives a lock back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The owner token from acquire.
    pub token: String,
    /// As given to acquire.
    #[serde(default)]
    pub local_fallback: bool,
}

/// Whether the token still held the lock.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Released {
    pub released: bool,
}

/// Releases the lock if `token` holds it.
#[utoipa::path(post, path = "/v1/locks/{name}/release", tag = "locks", operation_id = "release_lock", params(LockName),
    request_body = ReleaseRequest,
    responses((status = 200, description = "Released (false: it had expired or was taken over)", body = Released)))]
async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Segments(LockName { name }): Segments<LockName>,
    Body(req): Body<ReleaseRequest>,
) -> ApiResult<Json<Released>> {
    caller.require(Area::Locks, &name, Access::Write)?;
    let opts = options(None, None, req.local_fallback);
    let released = state.locks().release(&name, &req.token, &opts).await?;
    Ok(Json(Released { released }))
}
