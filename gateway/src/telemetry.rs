//! Prometheus metrics: request counts and latencies per route, documents,
//! store seq and feed lag.
//!
//! Why a process-wide recorder: the `metrics` facade is global, so the sync
//! driver and the store can count with the same macros and show up on the
//! same `/metrics` page. [`install`] installs it once per process and every
//! gateway in the process (tests start many) renders from the same handle.
//! Labels are bounded: the route is axum's matched pattern, never the raw
//! path, and no label holds a user or document id.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for request latencies, in seconds.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
/// If another recorder is already installed (the binary chose its own),
/// the gateway renders a private, empty registry rather than failing.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets(LATENCY_BUCKETS_S)
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            builder().install_recorder().unwrap_or_else(|error| {
                tracing::warn!(%error, "a metrics recorder is already installed");
                builder().build_recorder().handle()
            })
        })
        .clone()
}

/// Middleware: count each request and time it, by method, matched route
/// and status.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let elapsed_s = started.elapsed().as_secs_f64();
    metrics::counter!(
        "fieldsync_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "fieldsync_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(elapsed_s);
    response
}
