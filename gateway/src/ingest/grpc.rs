//! The gRPC `com.totvs.ingestion.grpc.TableStream` service: `Write` and
//! `Summary`, wire-compatible with the original (reference §3), over the
//! gateway's own port (HTTP/2; `lib.rs` routes `application/grpc` here).
//!
//! Auth: the gateway's bearer token in the `authorization` metadata,
//! read by the same middleware as REST (so the per-client rate limit
//! applies), and judged by an interceptor before the message is decoded:
//! a caller without `batches:write` costs no decoding. The sender's
//! instance comes in `x-sender-instance`.
//!
//! Why rule failures are answers, not gRPC errors: the contract's
//! responses carry `success` and `errors`, and an ERP's sender reads them
//! to resend; only transport and auth failures are gRPC statuses. A
//! message over 5 MiB is decoded (the decode limit is set above it,
//! [`DECODE_BYTES_MAX`]) so that it gets a clear `errors` entry, and the
//! connection stays usable.

use tonic::{Request, Response, Status};

use super::proto::table_stream_server::{TableStream, TableStreamServer};
use super::proto::{BatchSummary, BatchSummaryResponse, Table, TableInputResponse};
use super::rules::Claim;
use super::service::{self, Refusal};
use crate::auth::{Authentication, Caller};
use crate::state::AppState;

/// tonic's decode limit: above `service::MESSAGE_BYTES_MAX`, so an
/// oversized message is refused with an `errors` entry rather than a
/// transport error. Past this, tonic answers `OUT_OF_RANGE`.
pub(crate) const DECODE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The header (metadata) naming the sender's instance.
pub(crate) const SENDER_INSTANCE: &str = "x-sender-instance";

struct Service {
    state: AppState,
}

/// The service, ready to merge into the gateway's router.
pub(crate) fn router(state: AppState) -> axum::Router {
    let server = TableStreamServer::new(Service { state })
        .max_decoding_message_size(DECODE_BYTES_MAX)
        .max_encoding_message_size(1024 * 1024);
    let server = tonic::service::interceptor::InterceptedService::new(server, authorize);
    tonic::service::Routes::new(server)
        .prepare()
        .into_axum_router()
}

/// The caller the authentication middleware found, or the status that
/// ends the call.
fn caller<T>(request: &Request<T>) -> Result<&Caller, Status> {
    match request.extensions().get::<Authentication>() {
        Some(Authentication::Caller(caller)) => Ok(caller),
        Some(Authentication::Failed(error)) => Err(Status::unauthenticated(error.detail.clone())),
        _ => Err(Status::unauthenticated(
            "send `authorization: Bearer <token>` from /oauth/token",
        )),
    }
}

/// The interceptor: runs before the message is decoded.
fn authorize(request: Request<()>) -> Result<Request<()>, Status> {
    let caller = caller(&request)?;
    caller
        .office_or_scope(fieldsync_schemas::Scope::BatchesWrite)
        .map_err(|error| Status::permission_denied(error.detail))?;
    Ok(request)
}

fn sender<T>(request: &Request<T>) -> Result<service::Sender, Status> {
    let instance = request
        .metadata()
        .get(SENDER_INSTANCE)
        .map(|v| v.as_bytes());
    service::sender(caller(request)?, instance).map_err(status_of)
}

/// The answer's `(success, errors)`, or the status of a failure that is
/// not the sender's.
fn answer(result: Result<(), Refusal>) -> Result<(bool, Vec<String>), Status> {
    match result {
        Ok(()) => Ok((true, Vec::new())),
        Err(Refusal::Rejected(errors)) => Ok((false, errors)),
        Err(Refusal::Leased(error)) => Ok((false, vec![error])),
        Err(other) => Err(status_of(other)),
    }
}

fn status_of(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Denied(error) => Status::permission_denied(error.detail),
        Refusal::Rejected(errors) => Status::invalid_argument(errors.join("; ")),
        Refusal::Leased(error) => Status::failed_precondition(error),
        Refusal::Contended(error) => Status::aborted(error),
        Refusal::Store(error) => {
            tracing::error!(%error, "batch store failure");
            match error {
                fieldsync_node::store::WriteError::Closed
                | fieldsync_node::store::WriteError::StoreFailed => {
                    Status::unavailable("the store cannot take writes now")
                }
                _ => Status::internal("internal error"),
            }
        }
    }
}

#[tonic::async_trait]
impl TableStream for Service {
    async fn write(&self, request: Request<Table>) -> Result<Response<TableInputResponse>, Status> {
        let sender = sender(&request)?;
        let result = service::write(&self.state, sender, request.into_inner()).await;
        let (success, errors) = answer(result)?;
        Ok(Response::new(TableInputResponse { success, errors }))
    }

    async fn summary(
        &self,
        request: Request<BatchSummary>,
    ) -> Result<Response<BatchSummaryResponse>, Status> {
        let sender = sender(&request)?;
        let summary = request.into_inner();
        let claim = Claim {
            message_count: i64::from(summary.message_count),
            record_count: summary.record_count,
        };
        let result = service::summary(&self.state, sender, summary.erp, summary.batch_id, claim)
            .await
            .map(|_| ());
        let (success, errors) = answer(result)?;
        Ok(Response::new(BatchSummaryResponse { success, errors }))
    }
}
