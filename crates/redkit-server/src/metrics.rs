//! Prometheus: request counts and latency by route and status, beside the library's own
//! metrics (`redkit_op_*`, breaker transitions, cache, rate-limit and job counters).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle). Call it
/// before opening `Redkit`, so the library's metrics are recorded from the start.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("buckets are not empty")
                .install_recorder()
                .unwrap_or_else(|e| {
                    // Another recorder owns the process (an embedding app): render nothing of ours.
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                })
        })
        .clone()
}

/// The Prometheus text exposition.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

/// Middleware: counts and times every routed request by method, route template and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("redkit_http_requests_total", &labels).increment(1);
    let elapsed = started.elapsed();
    metrics::histogram!("redkit_http_request_seconds", &labels).record(elapsed.as_secs_f64());
    crate::traffic::global().record(elapsed, response.status().is_server_error());
    response
}
