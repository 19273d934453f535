//! `/v1/ratelimit/…`: define named policies and check keys against them.
//!
//! A check answers 200 when allowed and 429 when refused, both with the IETF `RateLimit`
//! and `RateLimit-Policy` fields (and `Retry-After` on 429) and the decision as JSON.
//! Policies live in each server's memory: define them in the config file (`[server.policies.NAME]`)
//! so that every instance enforces the same ones; `PUT` changes only the server it reaches.
//! Counters are shared through Redis, so instances that define a policy alike share its limit.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use redkit::ratelimit::{Algorithm, Decision, Policy, PolicyStats};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller};
use crate::error::{ApiError, ApiResult, Body, ErrorBody, Segments};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_policy, get_policy, delete_policy))
        .routes(routes!(list_policies))
        .routes(routes!(check))
}

/// A policy as sent over HTTP or written in `[server.policies.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// gcra (default), token_bucket, sliding_window, sliding_log, fixed_window, concurrency.
    #[serde(default = "gcra")]
    #[schema(example = "gcra")]
    pub algorithm: Algorithm,
    /// Requests per period (1 to 10^9).
    #[schema(minimum = 1, maximum = 1000000000)]
    pub limit: u64,
    /// The period in milliseconds (1 ms to 366 days).
    #[schema(minimum = 1, maximum = 31622400000_u64)]
    pub period_ms: u64,
    /// Largest burst (gcra, token_bucket; 1 to 10^9); default `limit`.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub burst: Option<u64>,
    /// Decide and count, but never refuse.
    #[serde(default)]
    pub shadow: bool,
    /// Keys never limited.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Keys always refused.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Share of the limit each instance enforces locally while Redis is away (above 0, at
    /// most 1; default 1).
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub fallback_share: Option<f64>,
}

fn gcra() -> Algorithm {
    Algorithm::Gcra
}

impl PolicyBody {
    /// The library policy named `name` (unchecked: [`Policy::validate`] and
    /// `RateLimiter::define` check the numbers).
    pub fn into_policy(self, name: &str) -> Policy {
        let mut p = Policy::new(name, self.algorithm, self.limit, Duration::from_millis(self.period_ms))
            .shadow(self.shadow)
            .allow(self.allow)
            .deny(self.deny);
        if let Some(b) = self.burst {
            p = p.burst(b);
        }
        if let Some(s) = self.fallback_share {
            p = p.fallback_share(s);
        }
        p
    }

    fn from_policy(p: &Policy) -> Self {
        let sorted = |set: &HashSet<String>| {
            let mut v: Vec<String> = set.iter().cloned().collect();
            v.sort();
            v
        };
        PolicyBody {
            algorithm: p.algorithm,
            limit: p.limit,
            period_ms: p.period.as_millis() as u64,
            burst: p.burst,
            shadow: p.shadow,
            allow: sorted(&p.allow),
            deny: sorted(&p.deny),
            fallback_share: Some(p.fallback_share),
        }
    }
}

/// A defined policy, with this server's counters.
#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    pub name: String,
    pub policy: PolicyBody,
    pub stats: Option<PolicyStats>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct PolicyName {
    /// Policy name: 1–64 of A-Z a-z 0-9 _ - . :
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,64}$", min_length = 1, max_length = 64)]
    name: String,
}

/// Defines (or replaces) policy `name` for every server sharing the store (needs `admin`):
/// here at once, on the others within a second.
#[utoipa::path(put, path = "/v1/ratelimit/policies/{name}", tag = "ratelimit", params(PolicyName),
    request_body = PolicyBody,
    responses(
        (status = 200, description = "Defined", body = PolicyView),
        (status = 400, description = "Bad limit, period, burst or share", body = ErrorBody)
    ))]
async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    Segments(PolicyName { name }): Segments<PolicyName>,
    Body(body): Body<PolicyBody>,
) -> ApiResult<Json<PolicyView>> {
    caller.require(Area::Ratelimit, &name, Access::Admin)?;
    state.limiter().publish(body.into_policy(&name)).await?;
    view(&state, &name).map(Json)
}

/// Removes policy `name` from every server sharing the store (needs `admin`).
#[utoipa::path(delete, path = "/v1/ratelimit/policies/{name}", tag = "ratelimit", params(PolicyName),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not defined", body = ErrorBody)
    ))]
async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    Segments(PolicyName { name }): Segments<PolicyName>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Ratelimit, &name, Access::Admin)?;
    state.limiter().unpublish(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn view(state: &AppState, name: &str) -> ApiResult<PolicyView> {
    let policy = state
        .limiter()
        .policy(name)
        .ok_or_else(|| ApiError::not_found(format!("no rate-limit policy {name:?}")))?;
    Ok(PolicyView {
        name: name.to_string(),
        policy: PolicyBody::from_policy(&policy),
        stats: state.limiter().stats().remove(name),
    })
}

/// Policy `name` and this server's counters for it.
#[utoipa::path(get, path = "/v1/ratelimit/policies/{name}", tag = "ratelimit", params(PolicyName),
    responses(
        (status = 200, description = "The policy", body = PolicyView),
        (status = 404, description = "Not defined", body = ErrorBody)
    ))]
async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Segments(PolicyName { name }): Segments<PolicyName>,
) -> ApiResult<Json<PolicyView>> {
    caller.require(Area::Ratelimit, &name, Access::Read)?;
    view(&state, &name).map(Json)
}

/// The policies defined on this server (that the caller may read).
#[utoipa::path(get, path = "/v1/ratelimit/policies", tag = "ratelimit",
    responses((status = 200, description = "Policies", body = Vec<PolicyView>)))]
async fn list_policies(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<PolicyView>>> {
    let names: Vec<String> = state
        .limiter()
        .policies()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| caller.may(Area::Ratelimit, n, Access::Read))
        .collect();
    names
        .iter()
        .map(|n| view(&state, n))
        .collect::<ApiResult<_>>()
        .map(Json)
}

/// A check.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Who is limited (user id, IP, API key …), 1–512 bytes.
    #[schema(min_length = 1, max_length = 512)]
    pub key: String,
    /// Units this request costs (default 1; at most the policy's burst).
    #[schema(minimum = 1)]
    #[serde(default = "one")]
    pub cost: u64,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct PolicyPath {
    /// Policy name: 1–64 of A-Z a-z 0-9 _ - . :
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,64}$", min_length = 1, max_length = 64)]
    policy: String,
}

/// Counts `cost` against `key` under `policy`: 200 allowed, 429 refused.
#[utoipa::path(post, path = "/v1/ratelimit/{policy}/check", tag = "ratelimit", params(PolicyPath),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "Allowed (RateLimit, RateLimit-Policy headers)", body = Decision),
        (status = 429, description = "Refused (also Retry-After)", body = Decision),
        (status = 404, description = "No such policy", body = ErrorBody)
    ))]
async fn check(
    State(state): State<AppState>,
    caller: Caller,
    Segments(PolicyPath { policy }): Segments<PolicyPath>,
    Body(req): Body<CheckRequest>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Decision>)> {
    caller.require(Area::Ratelimit, &policy, Access::Write)?;
    // An unknown policy is the library's NotFound → 404.
    let decision = state.limiter().check(&policy, &req.key, req.cost).await?;
    let mut headers = HeaderMap::new();
    redkit::ratelimit::layer::set_headers(&mut headers, &decision, false);
    let status = if decision.allowed {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    Ok((status, headers, Json(decision)))
}
