//! HTTP routes, one file per capability. Each handler checks the caller's scope, calls
//! one library method, and answers JSON.

pub mod cache;
mod channels;
mod dashboard;
mod health;
mod jobs;
mod locks;
pub mod ratelimit;
mod records;
mod sessions;
mod ws;

use axum::Json;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{Access, Area, Caller};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "redkit",
        description = "Cache, rate limits, locks, sessions, jobs, channels and records on Redis, with an embedded fallback that loses nothing."
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "cache", description = "Two-level JSON cache, by namespace"),
        (name = "ratelimit", description = "Named rate-limit policies"),
        (name = "locks", description = "Distributed locks with fencing tokens"),
        (name = "sessions", description = "Server-side sessions"),
        (name = "jobs", description = "Durable job queues with leases"),
        (name = "channels", description = "Pub/sub with history and recovery: HTTP, Server-Sent Events, WebSocket"),
        (name = "records", description = "Documents with declared indexes, capped lists, time-bucketed counters")
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

/// Declares the errors every `/v1` operation can answer, so that the document lists every
/// status a client may see: 400 (bad input), 401/403 (keys), 503 (Redis away and the
/// capability fails closed, or shutting down); with a body also 413 and 415; with path
/// parameters also 404.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let has_params = path.contains('{');
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
            ]
            .into_iter()
            .flatten()
            {
                let mut codes = vec![
                    ("400", "Bad input: the message names the field and the rule"),
                    ("401", "No API key, or an unknown one"),
                    ("403", "The API key lacks the scope"),
                    ("503", "The store is unavailable, or the server is shutting down"),
                ];
                if op.request_body.is_some() {
                    codes.push(("413", "Body (or a value in it) over its limit"));
                    codes.push(("415", "The body is not sent as application/json"));
                }
                if has_params {
                    codes.push(("404", "Not found"));
                }
                for (code, description) in codes {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description));
                }
            }
        }
    }
}

/// The routes and their document, with the common errors added once every path is in.
fn split() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::Modify;
    let (router, mut doc) = api_router().split_for_parts();
    CommonErrors.modify(&mut doc);
    (router, doc)
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .merge(cache::routes())
        .merge(ratelimit::routes())
        .merge(locks::routes())
        .merge(sessions::routes())
        .merge(jobs::routes())
        .merge(channels::routes())
        .merge(records::routes())
        .merge(dashboard::routes())
        .routes(utoipa_axum::routes!(ws::ws))
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let (api, doc) = split();
    let doc = Json(doc);
    api.route("/openapi.json", get(move || async move { doc }))
        .route("/metrics", get(metrics))
        .merge(dashboard::pages())
        .route_layer(crate::metrics::RouteOnResponse)
        .with_state(state)
}

/// Prometheus text; with keys configured, for the operations scope (`ops`) only: the
/// labels name every tenant's routes and the library's per-namespace counters.
async fn metrics(caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.require(Area::Ops, "*", Access::Read)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(),
    ))
}
