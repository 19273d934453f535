//! HTTP routes, one file per capability.

mod health;

use axum::Router;
use redkit::Redkit;

/// Every route of the server.
pub fn router(redkit: Redkit) -> Router {
    Router::new().merge(health::routes()).with_state(redkit)
}
