//! Operations endpoints: health, metrics, registry, peers.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;

use super::model::{Health, RegistryEndpoint, RegistryService};
use crate::auth::{Asker, Caller};
use crate::error::{ApiError, Problem};
use crate::peers::PeerInfo;
use crate::state::AppState;

/// Liveness; with an operator's or integration client's token, also the
/// store's last durable seq. Technicians and anonymous callers learn only
/// that the gateway serves: the global seq tells how busy the whole
/// office is (hardening finding 7).
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Serving", body = Health)),
    security((), ("bearer" = []))
)]
pub(crate) async fn healthz(State(state): State<AppState>, asker: Asker) -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        last_seq: asker.is_office().then(|| state.store().last_seq()),
    })
}

/// Prometheus metrics (text exposition format), for scrapers on
/// `[gateway] metrics_networks` (loopback by default) and for operators'
/// tokens from anywhere.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "Not from a metrics network, and no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not from a metrics network, and not an operator", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    asker: Asker,
) -> Result<impl IntoResponse, ApiError> {
    let from_network = asker
        .peer
        .is_some_and(|address| state.metrics_network_has(address));
    if !from_network {
        match &asker.caller {
            Some(caller) if caller.role == fieldsync_schemas::Role::Operator => {}
            Some(_) => {
                return Err(ApiError::forbidden(
                    "metrics are for operators and the networks in `[gateway] metrics_networks`",
                ))
            }
            None => {
                return Err(ApiError::unauthorized(
                    "metrics need an operator's bearer token from outside \
                     `[gateway] metrics_networks`",
                ))
            }
        }
    }
    let documents = state.doc_count().await?;
    let handle = state.metrics();
    handle.run_upkeep();
    let mut text = handle.render();
    let peers = state.peers().peers();
    let sessions = peers.iter().filter(|peer| peer.connected).count() as u64;
    let pending: u64 = peers.iter().filter_map(|peer| peer.docs_pending).sum();
    // This node's own figures are written here rather than into the
    // process-wide registry, which several gateways (tests) may share.
    let own = [
        ("fieldsync_documents", "Documents in the store.", documents),
        (
            "fieldsync_store_last_seq",
            "Highest durable changelog seq.",
            state.store().last_seq(),
        ),
        (
            "fieldsync_peers",
            "Sync peers known to this node.",
            peers.len() as u64,
        ),
        (
            "fieldsync_sync_sessions",
            "Sync sessions open now.",
            sessions,
        ),
        (
            "fieldsync_sync_docs_pending",
            "Documents changed here and not yet acknowledged, summed over peers.",
            pending,
        ),
    ];
    for (name, help, value) in own {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// The base URL for registry addresses: the configured public URL; else
/// the request's `Host` (HTTP/2's `:authority`), with `https` when TLS is
/// served here or a trusted proxy forwarded https (`edge.rs`), `http`
/// otherwise.
fn base_url(state: &AppState, headers: &HeaderMap, authority: Option<&str>, https: bool) -> String {
    if let Some(base) = &state.config().public_base_url {
        return base.trim().trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or(authority)
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 255
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// The services this gateway offers (no authentication), at the
/// configured `public_base_url` (else this request's host and scheme).
#[utoipa::path(
    get, path = "/api/v1/registry", tag = "operations",
    responses((status = 200, description = "Service list", body = Vec<RegistryService>))
)]
pub(crate) async fn registry(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> axum::Json<Vec<RegistryService>> {
    let https = crate::edge::client(request.extensions()).scheme_https;
    let authority = request
        .uri()
        .authority()
        .map(|authority| authority.as_str());
    let base = base_url(&state, request.headers(), authority, https);
    let service = |name: &str, path: &str| RegistryService {
        service: name.to_string(),
        endpoints: vec![RegistryEndpoint {
            version: "1".into(),
            address: format!("{base}{path}"),
        }],
    };
    axum::Json(vec![
        service("token", "/oauth/token"),
        // gRPC `com.totvs.ingestion.grpc.TableStream`, on this same port.
        service("tablestream", ""),
        service("entities", "/api/v1/entities"),
        service("batches", "/api/v1/batches"),
        service("events", "/api/v1/events"),
        service("work-orders", "/api/v1/work-orders"),
        service("changes", "/api/v1/changes"),
        service("peers", "/api/v1/peers"),
        service("openapi", "/openapi.json"),
    ])
}

/// Sync peers of this node (operators).
#[utoipa::path(
    get, path = "/api/v1/peers", tag = "operations",
    responses(
        (status = 200, description = "Peers and their sync state", body = Vec<PeerInfo>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn peers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<PeerInfo>>, ApiError> {
    caller.operator_only()?;
    Ok(axum::Json(state.peers().peers()))
}
