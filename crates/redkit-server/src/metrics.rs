//! Prometheus: request counts and latency by route and status, beside the library's own
//! metrics (`redkit_op_*`, breaker transitions, cache, rate-limit and job counters).

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder (once; later calls return the same handle). Call it
/// before opening `Redkit`, so the library's metrics are recorded from the start.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("buckets are not empty")
                .install_recorder();
            match installed {
                Ok(handle) => {
                    // Histogram samples wait in the recorder until upkeep folds them into
                    // their buckets: without a scrape they would pile up for as long as the
                    // process lives (8 bytes and a timestamp per request), so upkeep runs
                    // on its own, as the exporter's own `install` would do on a runtime.
                    let upkept = handle.clone();
                    std::thread::Builder::new()
                        .name("redkit-metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_EVERY);
                                upkept.run_upkeep();
                            }
                        })
                        .expect("spawn the metrics upkeep thread");
                    handle
                }
                Err(e) => {
                    // Another recorder owns the process (an embedding app): render nothing of ours.
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// The Prometheus text exposition.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

/// The series of one method, route and status: registered on first use, then reused, so
/// that a request records into two handles without building labels or looking them up.
struct Series {
    requests: Counter,
    seconds: Histogram,
}

/// Every series seen, by route, then method and status (a route has a handful: looked up
/// by a short scan, with no key built per request). Bounded: routes are the router's
/// templates (or `unmatched`), methods the standard ones (or `other`), statuses at most
/// 500 values.
#[allow(clippy::type_complexity)]
static SERIES: LazyLock<RwLock<HashMap<Box<str>, Vec<(&'static str, u16, Series)>>>> = LazyLock::new(Default::default);

/// A method as labelled: the standard ones by name, any other `other`, so that a client
/// inventing methods cannot create series.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD.iter().find(|m| *m == method).map_or("other", |m| match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        _ => "TRACE",
    })
}

fn observe(method: &'static str, route: &str, status: u16, elapsed: f64) {
    let record = |series: &Series| {
        series.requests.increment(1);
        series.seconds.record(elapsed);
    };
    let find = |list: &[(&'static str, u16, Series)]| list.iter().position(|(m, s, _)| *m == method && *s == status);
    if let Some(list) = SERIES.read().expect("series lock").get(route)
        && let Some(i) = find(list)
    {
        return record(&list[i].2);
    }
    let mut all = SERIES.write().expect("series lock");
    let list = all.entry(route.into()).or_default();
    let i = find(list).unwrap_or_else(|| {
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_string()),
            ("status", status.to_string()),
        ];
        list.push((
            method,
            status,
            Series {
                requests: metrics::counter!("redkit_http_requests_total", &labels),
                seconds: metrics::histogram!("redkit_http_request_seconds", &labels),
            },
        ));
        list.len() - 1
    });
    record(&list[i].2);
}

/// Counts and times one request by method, route template (`unmatched` when no route
/// took it: a 404, a refusal before routing) and status, in `/metrics` and the dashboard's
/// traffic.
pub fn record(method: &Method, route: Option<&MatchedPath>, status: StatusCode, elapsed: Duration) {
    let route = route.map_or("unmatched", MatchedPath::as_str);
    observe(method_label(method), route, status.as_u16(), elapsed.as_secs_f64());
    crate::traffic::global().record(elapsed, status.is_server_error());
}

/// A route layer that copies the route's template onto its response, where
/// [`crate::front`] (outside the router, which sees no [`MatchedPath`] on the request)
/// reads it for [`record`]. A plain tower layer: no clone or box per request.
#[derive(Clone, Copy)]
pub struct RouteOnResponse;

impl<S> tower::Layer<S> for RouteOnResponse {
    type Service = WithRoute<S>;

    fn layer(&self, inner: S) -> WithRoute<S> {
        WithRoute(inner)
    }
}

/// The service of [`RouteOnResponse`].
#[derive(Clone)]
pub struct WithRoute<S>(S);

impl<S: tower::Service<Request, Response = Response>> tower::Service<Request> for WithRoute<S> {
    type Response = Response;
    type Error = S::Error;
    type Future = RouteFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        RouteFuture {
            inner: self.0.call(req),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`WithRoute`].
    pub struct RouteFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F: std::future::Future<Output = Result<Response, E>>, E> std::future::Future for RouteFuture<F> {
    type Output = Result<Response, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(route) = this.route.take() {
            response.extensions_mut().insert(route);
        }
        std::task::Poll::Ready(Ok(response))
    }
}
