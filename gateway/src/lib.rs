//! The central office's front door: an axum service over a node's store.
//!
//! People and machines reach work orders here: OAuth2 client-credential
//! tokens (`oauth.rs`), REST work orders whose every write is one of the
//! node's typed operations (`api/work_orders.rs`), reference records and
//! who may read them (`api/records.rs`), the ordered changes feed
//! with longpoll (`feed.rs`, `api/changes.rs`), operations endpoints
//! (`api/ops.rs`), and a server-rendered web UI (`ui/`).
//!
//! Why the gateway holds only a `Store` (plus a peer seam): everything it
//! writes goes through the same typed operations and durable group commit
//! as the CLI and sync, so the gateway adds access control and HTTP, never
//! its own write path. Sync state reaches it through [`PeerDirectory`].
//!
//! Start it with [`run`] on a bound listener (tests bind port 0): HTTPS
//! when the config names a certificate and key (`tls.rs`), plain HTTP
//! otherwise. Or get the bare [`Router`] from [`app`] and drive it with
//! `oneshot`. Every response carries the security headers, and every
//! request is judged by its client's address, which behind a trusted proxy
//! is the forwarded one (`edge.rs`).

pub mod api;
pub mod auth;
mod clock;
pub mod config;
mod cursor;
pub mod delivery;
mod edge;
pub mod error;
pub mod feed;
pub mod field;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
mod limit;
pub mod oauth;
pub mod peers;
pub mod state;
pub mod telemetry;
pub mod tls;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::{Caller, TokenKey};
pub use config::{GatewayConfig, TlsFiles};
pub use error::{ApiError, ErrorKind};
pub use peers::{NoPeers, PeerDirectory, PeerInfo, PeerTable};
pub use state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OpenAPI document of every REST route, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| api::router().split_for_parts().1)
        .clone()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(ErrorKind::Internal, "internal error").into_response()
}

/// The whole gateway as a router: REST, OpenAPI, UI, and the layers that
/// bound and observe every request. Outermost, `edge` decides the
/// request's client (address, HTTPS) before anything reads it and puts
/// the security headers on every response, errors and panics included.
pub fn app(state: AppState) -> Router {
    let (api, spec) = api::router().split_for_parts();
    let spec_json = spec.to_json().unwrap_or_else(|_| "{}".into());
    let config = state.config().clone();
    // gRPC gets authentication, the request timeout, metrics and panic
    // catching; not REST's body limits or problem documents, which would
    // break its framing (it has its own decode limit).
    let grpc = ingest::grpc::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout(),
        ))
        .layer(axum::middleware::from_fn(telemetry::record))
        .layer(CatchPanicLayer::custom(panic_response));
    let routes = api
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    spec_json,
                )
            }),
        )
        .merge(ui::router(state.clone()))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(config.body_bytes_max))
        // 504 so `problemize` names it `timeout`, not `unavailable`: the
        // client learns its request was too slow, not that we are down.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout(),
        ))
        .layer(axum::middleware::from_fn(telemetry::record))
        .with_state(state.clone());
    routes
        // Handlers and extractors cap each body at `body_bytes_max`; batch
        // messages (`api/batches.rs`) read theirs up to their own limit.
        .layer(RequestBodyLimitLayer::new(
            config.body_bytes_max.max(api::batches::BODY_BYTES_MAX),
        ))
        .layer(axum::middleware::map_response(error::problemize))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "request",
                    request_id = %id,
                    method = %request.method(),
                    path = %request.uri().path(),
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn_with_state(grpc, grpc_or_rest))
        .layer(axum::middleware::from_fn_with_state(state, edge::edge))
}

/// gRPC (`content-type: application/grpc...`) goes to the `TableStream`
/// service, past REST's body limits, timeouts and problem documents,
/// which would break gRPC framing; everything else to REST. Both share
/// the port, `edge` (client address, security headers) and
/// authentication.
async fn grpc_or_rest(
    axum::extract::State(grpc): axum::extract::State<Router>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if !is_grpc {
        return next.run(request).await;
    }
    match tower::ServiceExt::oneshot(grpc, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Make rustls's `ring` provider the process default (once; later calls
/// do nothing). Webhook delivery passes its provider explicitly, but any
/// other `reqwest` client in a process that links the gateway (tests, the
/// benchmark runner) builds its TLS from the default and panics without
/// one: Cargo unifies reqwest's `rustls-no-provider` feature for all.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Run delivery's background work (the webhook dispatcher and the
/// retention job) over `state` until `stop` turns true. The binary starts
/// it beside [`run`] with the same state on the one central that
/// dispatches (`[delivery] enabled`).
pub async fn run_delivery(state: AppState, stop: tokio::sync::watch::Receiver<bool>) {
    tokio::join!(
        delivery::dispatcher::run(state.clone(), stop.clone()),
        delivery::retention_task::run(state, stop),
    );
}

/// Serve the gateway on `listener` until `shutdown` resolves, then finish
/// the requests in flight: HTTPS (rustls, with the `ring` provider) when
/// the state was built with `[gateway] tls_cert` and `tls_key`, plain HTTP
/// otherwise. The binary calls this on the central node:
/// `fieldsync_gateway::run(listener, state, shutdown).await`.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let router = app(state.clone());
    // Abandoned batches expire wherever batches are received.
    let (stop_expiry, expiry_stop) = tokio::sync::watch::channel(false);
    let expiry = tokio::spawn(ingest::expiry::run(state.clone(), expiry_stop));
    let shutdown = async move {
        shutdown.await;
        let _ = stop_expiry.send(true);
        let _ = expiry.await;
    };
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let Some(tls) = state.tls() else {
        tracing::info!(%address, "gateway listening (HTTP)");
        // TCP_NODELAY: a response written in parts (headers, body, gRPC's
        // trailers) must not wait for the client's delayed ACK (~40 ms
        // per gRPC call under Nagle's algorithm).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set");
            }
        });
        return axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                state.begin_shutdown();
            })
            .await;
    };
    tracing::info!(%address, "gateway listening (HTTPS)");
    // axum-server: rustls on hyper, with a TLS handshake timeout (10 s) and
    // a graceful shutdown that, like `axum::serve`'s, stops accepting and
    // waits for the requests in flight.
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::from_tcp(listener.into_std()?)?
        .acceptor(acceptor)
        .handle(handle.clone());
    let serve = server.serve(service);
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => return result,
        () = shutdown => {}
    }
    state.begin_shutdown();
    handle.graceful_shutdown(None);
    serve.await
}
