//! HTTP routes, one file per capability. Each handler checks the caller's scope, calls
//! one library method, and answers JSON.

pub mod cache;
mod health;
mod jobs;
mod locks;
pub mod ratelimit;
mod sessions;

use axum::Json;
use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "redkit",
        description = "Cache, rate limits, locks, sessions and jobs on Redis, with an embedded fallback that loses nothing."
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "cache", description = "Two-level JSON cache, by namespace"),
        (name = "ratelimit", description = "Named rate-limit policies"),
        (name = "locks", description = "Distributed locks with fencing tokens"),
        (name = "sessions", description = "Server-side sessions"),
        (name = "jobs", description = "Durable job queues with leases")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of every route (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .merge(cache::routes())
        .merge(ratelimit::routes())
        .merge(locks::routes())
        .merge(sessions::routes())
        .merge(jobs::routes())
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = Json(doc);
    api.route("/openapi.json", get(move || async move { doc }))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(),
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
