//! `/v1/sessions` and `/v1/users/{user}/sessions`: server-side sessions over HTTP.
//!
//! A session id is a bearer secret (≥ 256 random bits): give it to the browser in a
//! cookie, keep the data here. Reading a session touches its idle timer; a session dies
//! `idle_ttl_s` after its last use or at its absolute deadline, whichever is first.
//! Rotate the id on login and privilege changes (fixation defence).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redkit::session::Session;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller};
use crate::error::{ApiError, ApiResult, Body, ErrorBody, Segments};
use crate::routes::cache::Deleted;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(get_session, patch_session, delete_session))
        .routes(routes!(rotate))
        .routes(routes!(list_user, revoke_user))
}

fn require(caller: &Caller, access: Access) -> ApiResult<()> {
    caller.require(Area::Sessions, "*", access)
}

/// A new session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The user it belongs to (lets you list and revoke a user's sessions).
    pub user: Option<String>,
    /// Its data (a JSON object).
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub data: Map<String, Value>,
    /// Idle timeout in seconds (default 1800).
    pub idle_ttl_s: Option<u64>,
    /// Absolute timeout in seconds (default 43200; at least the idle timeout).
    pub absolute_ttl_s: Option<u64>,
}

/// Creates a session.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateRequest,
    responses(
        (status = 201, description = "Created", body = Session),
        (status = 400, description = "Bad user or timeouts", body = ErrorBody),
        (status = 413, description = "Data over the session size limit", body = ErrorBody)
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateRequest>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    require(&caller, Access::Write)?;
    let defaults = state.sessions().options();
    // The library checks the ranges (and names idle_ttl / absolute_ttl).
    let idle = req.idle_ttl_s.map_or(defaults.idle_ttl, Duration::from_secs);
    let absolute = req
        .absolute_ttl_s
        .map_or(defaults.absolute_ttl.max(idle), Duration::from_secs);
    let session = state
        .sessions()
        .create_with(req.data, req.user.as_deref(), idle, absolute)
        .await?;
    Ok((StatusCode::CREATED, Json(session)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SessionId {
    /// Session id: 16–128 of A-Z a-z 0-9 _ - (any other answers 404, as an unknown one).
    #[param(pattern = "^[A-Za-z0-9_-]{16,128}$", min_length = 16, max_length = 128)]
    id: String,
}

/// A malformed id names no session: not found, like an unknown one.
fn known(id: &str) -> ApiResult<()> {
    if redkit::session::is_session_id(id) {
        Ok(())
    } else {
        Err(ApiError::not_found("no such session (unknown, expired or revoked)"))
    }
}

/// The live session `id` (touches its idle timer).
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", params(SessionId),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "Unknown, expired or revoked", body = ErrorBody)
    ))]
async fn get_session(
    State(state): State<AppState>,
    caller: Caller,
    Segments(SessionId { id }): Segments<SessionId>,
) -> ApiResult<Json<Session>> {
    require(&caller, Access::Read)?;
    known(&id)?;
    state
        .sessions()
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such session (unknown, expired or revoked)"))
}

/// Fields to merge into the data; a `null` removes the field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub data: Map<String, Value>,
}

/// Merges fields into the session's data and touches it.
#[utoipa::path(patch, path = "/v1/sessions/{id}", tag = "sessions", params(SessionId),
    request_body = PatchRequest,
    responses(
        (status = 200, description = "Updated", body = Session),
        (status = 404, description = "Unknown, expired or revoked", body = ErrorBody),
        (status = 413, description = "Over the session size limit", body = ErrorBody)
    ))]
async fn patch_session(
    State(state): State<AppState>,
    caller: Caller,
    Segments(SessionId { id }): Segments<SessionId>,
    Body(req): Body<PatchRequest>,
) -> ApiResult<Json<Session>> {
    require(&caller, Access::Write)?;
    known(&id)?;
    Ok(Json(state.sessions().update(&id, req.data).await?))
}

/// Ends the session.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", params(SessionId),
    responses((status = 200, description = "Deleted (false: it was not live)", body = Deleted)))]
async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
    Segments(SessionId { id }): Segments<SessionId>,
) -> ApiResult<Json<Deleted>> {
    require(&caller, Access::Write)?;
    if !redkit::session::is_session_id(&id) {
        return Ok(Json(Deleted { deleted: false }));
    }
    let deleted = state.sessions().delete(&id).await?;
    Ok(Json(Deleted { deleted }))
}

/// Moves the session to a new id; the old id stops working.
#[utoipa::path(post, path = "/v1/sessions/{id}/rotate", tag = "sessions", params(SessionId),
    responses(
        (status = 200, description = "The session under its new id", body = Session),
        (status = 404, description = "Unknown, expired or revoked", body = ErrorBody)
    ))]
async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Segments(SessionId { id }): Segments<SessionId>,
) -> ApiResult<Json<Session>> {
    require(&caller, Access::Write)?;
    known(&id)?;
    Ok(Json(state.sessions().rotate(&id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct UserPath {
    /// User id, 1–256 bytes.
    #[param(min_length = 1, max_length = 256)]
    user: String,
}

/// One of a user's sessions, as listed. Its id (a bearer secret: whoever holds it is
/// signed in) and its data are given only to callers with admin access to sessions (or
/// when no keys are configured); others see when it was made, used and ends.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ListedSession {
    /// Its id; only for admin access to sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The user it belongs to.
    pub user: Option<String>,
    /// Its data; only for admin access to sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last used, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// Idle timeout in ms.
    pub idle_ms: u64,
    /// Absolute deadline, ms since the Unix epoch.
    pub absolute_deadline_ms: u64,
    /// When it ends if left idle, ms since the Unix epoch.
    pub expires_ms: u64,
    /// The stamp of its last change.
    pub version: u64,
}

impl ListedSession {
    fn new(s: Session, secrets: bool) -> Self {
        ListedSession {
            expires_ms: s.expires_ms(),
            id: secrets.then_some(s.id),
            user: s.user,
            data: secrets.then_some(s.data),
            created_ms: s.created_ms,
            last_seen_ms: s.last_seen_ms,
            idle_ms: s.idle_ms,
            absolute_deadline_ms: s.absolute_deadline_ms,
            version: s.version,
        }
    }
}

/// The live sessions of `user`: ids and data for admin access to sessions, metadata for
/// read access.
#[utoipa::path(get, path = "/v1/users/{user}/sessions", tag = "sessions", params(UserPath),
    responses((status = 200, description = "Sessions", body = Vec<ListedSession>)))]
async fn list_user(
    State(state): State<AppState>,
    caller: Caller,
    Segments(UserPath { user }): Segments<UserPath>,
) -> ApiResult<Json<Vec<ListedSession>>> {
    require(&caller, Access::Read)?;
    let secrets = caller.may(Area::Sessions, "*", Access::Admin);
    let sessions = state.sessions().list(&user).await?;
    Ok(Json(
        sessions.into_iter().map(|s| ListedSession::new(s, secrets)).collect(),
    ))
}

/// How many sessions were ended.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

/// Ends every session of `user` ("log out everywhere").
#[utoipa::path(delete, path = "/v1/users/{user}/sessions", tag = "sessions", params(UserPath),
    responses((status = 200, description = "Revoked", body = Revoked)))]
async fn revoke_user(
    State(state): State<AppState>,
    caller: Caller,
    Segments(UserPath { user }): Segments<UserPath>,
) -> ApiResult<Json<Revoked>> {
    require(&caller, Access::Write)?;
    let revoked = state.sessions().revoke_all(&user).await?;
    Ok(Json(Revoked { revoked }))
}
