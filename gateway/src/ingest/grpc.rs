//! The gRPC `com.totvs.ingestion.grpc.TableStream` service: `Write` and
//! `Summary`, wire-compatible with the original (reference §3), over the
//! gateway's own port (HTTP/2; `lib.rs` routes `application/grpc` here).
//!
//! Auth: the gateway's bearer token in the `authorization` metadata,
//! checked by the same middleware as REST (so rate limits and the
//! failed-token budget apply), scope `batches:write`. The sender's
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
use super::rows::{Message, Schema};
use super::rules::Claim;
use super::service::{self, Refusal};
use crate::auth::Authentication;
use crate::state::AppState;

/// Bytes of one batch message, at most (reference §3: 5 MB).
pub(crate) const MESSAGE_BYTES_MAX: usize = 5 * 1024 * 1024;
/// tonic's decode limit: above [`MESSAGE_BYTES_MAX`], so an oversized
/// message is refused with an `errors` entry rather than a transport
/// error. Past this, tonic answers `OUT_OF_RANGE`.
pub(crate) const DECODE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The metadata naming the sender's instance.
pub(crate) const SENDER_INSTANCE: &str = "x-sender-instance";

struct Service {
    state: AppState,
}

/// The service, ready to merge into the gateway's router.
pub(crate) fn router(state: AppState) -> axum::Router {
    let server = TableStreamServer::new(Service { state })
        .max_decoding_message_size(DECODE_BYTES_MAX)
        .max_encoding_message_size(1024 * 1024);
    tonic::service::Routes::new(server)
        .prepare()
        .into_axum_router()
}

fn sender<T>(request: &Request<T>) -> Result<service::Sender, Status> {
    let caller = match request.extensions().get::<Authentication>() {
        Some(Authentication::Caller(caller)) => caller,
        Some(Authentication::Failed(error)) => {
            return Err(Status::unauthenticated(error.detail.clone()))
        }
        _ => {
            return Err(Status::unauthenticated(
                "send `authorization: Bearer <token>` from /oauth/token",
            ))
        }
    };
    let instance = match request.metadata().get(SENDER_INSTANCE) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Status::invalid_argument("x-sender-instance must be ASCII"))?,
        ),
        None => None,
    };
    match service::sender(caller, instance) {
        Ok(sender) => Ok(sender),
        Err(Refusal::Denied(error)) => Err(Status::permission_denied(error.detail)),
        Err(Refusal::Rejected(errors)) => Err(Status::invalid_argument(errors.join("; "))),
        Err(other) => Err(status_of(other)),
    }
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

/// A `Table` as the transport-independent message.
pub(crate) fn message_of(table: Table) -> Message {
    let schema = table.schema.unwrap_or_default();
    Message {
        table: table.table_name,
        erp: table.erp,
        batch_id: table.batch_id,
        number: i64::from(table.message_number),
        record_count: i64::from(table.record_count),
        base_load: table.is_base_load,
        schema: Schema {
            flexible: schema.flexible,
            export_data: schema.export_data,
            columns: schema
                .columns
                .into_iter()
                .map(|c| (c.name, c.r#type))
                .collect(),
            primary_key: schema.primary_key.map(|pk| pk.columns).unwrap_or_default(),
        },
        rows: table
            .rows
            .into_iter()
            .map(|row| row.columns.into_iter().map(|c| (c.name, c.value)).collect())
            .collect(),
    }
}

#[tonic::async_trait]
impl TableStream for Service {
    async fn write(&self, request: Request<Table>) -> Result<Response<TableInputResponse>, Status> {
        let sender = sender(&request)?;
        let table = request.into_inner();
        let bytes = prost::Message::encoded_len(&table);
        let result = if bytes > MESSAGE_BYTES_MAX {
            Err(Refusal::Rejected(vec![format!(
                "message {} is {bytes} bytes, over the limit of {MESSAGE_BYTES_MAX} (5 MiB); split its rows",
                table.message_number
            )]))
        } else {
            service::write(&self.state, sender, message_of(table)).await
        };
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
