//! `/api/v1/batches`: ERP batch upload over HTTP, the same rules and the
//! same code path as gRPC `TableStream` (`ingest/service.rs`); and the
//! batches' state for senders and operators.
//!
//! A message's JSON is the `Table` message's fields in camelCase; it is
//! turned into the protobuf `Table` and then handled exactly as a gRPC
//! `Write` is, so an identical message is identical whichever transport
//! carried it (a resend over the other one is accepted idempotently).
//! Rule failures are `422 batch-rejected` problems whose `errors` list
//! what gRPC would put in its `errors`; a sender refused by another's
//! lease gets `409` naming the holder.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::model::whole;
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorKind, Problem};
use crate::ingest::grpc::SENDER_INSTANCE;
use crate::ingest::proto;
use crate::ingest::rows::check_erp;
use crate::ingest::rules::{Claim, State as BatchState};
use crate::ingest::service::{self, Refusal};
use crate::ingest::staging;
use crate::ingest::views::{self, view, BatchView};
use crate::state::AppState;

/// Bytes of a message's JSON body, at most: JSON is larger than the
/// protobuf it becomes, whose 5 MiB limit is checked after.
pub(crate) const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes of a summary's JSON body, at most.
const SUMMARY_BYTES_MAX: usize = 4096;

/// One batch message (the `Table` protobuf message, in JSON).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BatchMessage {
    /// The ERP's table (`SA1010`); rows land in its lower-case data
    /// collection (not reserved or internal).
    pub(crate) table_name: String,
    /// The ERP's name: 1 to 64 visible ASCII characters without `/` or `%`.
    #[schema(pattern = "^[!-$&-.0-~]{1,64}$")]
    pub(crate) erp: String,
    /// At most 10000 rows; as many as `recordCount` says.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub(crate) rows: Vec<BatchRow>,
    #[serde(default)]
    pub(crate) schema: BatchSchema,
    /// The `Table` message's own copy of the batch id. The path names the
    /// batch, so do not send it; a copy that differs from the path's is
    /// refused (422).
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(read_only)]
    pub(crate) batch_id: Option<i64>,
    /// 1, 2, ... within the batch.
    #[serde(deserialize_with = "whole::i32")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub(crate) message_number: i32,
    /// The number of `rows`.
    #[serde(deserialize_with = "whole::i32")]
    #[schema(minimum = 0, maximum = 10000)]
    pub(crate) record_count: i32,
    #[serde(default)]
    pub(crate) is_base_load: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRow {
    pub(crate) columns: Vec<BatchColumn>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchColumn {
    pub(crate) name: String,
    pub(crate) value: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BatchSchema {
    #[serde(default)]
    pub(crate) flexible: bool,
    #[serde(default)]
    pub(crate) export_data: bool,
    #[serde(default)]
    pub(crate) columns: Vec<SchemaColumn>,
    #[serde(default)]
    pub(crate) primary_key: Option<PrimaryKey>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SchemaColumn {
    pub(crate) name: String,
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PrimaryKey {
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) columns: Vec<String>,
}

/// The summary after a batch's last message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BatchSummaryBody {
    /// The ERP's name: 1 to 64 visible ASCII characters without `/` or `%`.
    #[schema(pattern = "^[!-$&-.0-~]{1,64}$")]
    pub(crate) erp: String,
    /// The summary's own copy of the batch id. The path names the batch,
    /// so do not send it; a copy that differs from the path's is refused
    /// (422).
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(read_only)]
    pub(crate) batch_id: Option<i64>,
    /// Messages in the batch (1 to `[ingest] messages_per_batch_max`).
    #[serde(deserialize_with = "whole::i32")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub(crate) message_count: i32,
    /// Rows in all its messages.
    #[serde(deserialize_with = "whole::i64")]
    #[schema(minimum = 0, maximum = 9007199254740991_u64)]
    pub(crate) record_count: i64,
    /// RFC 3339 (1970 on); the delta's date range (informative).
    #[serde(default)]
    #[schema(format = DateTime, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub(crate) timestamp_start: Option<String>,
    /// RFC 3339 (1970 on).
    #[serde(default)]
    #[schema(format = DateTime, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub(crate) timestamp_end: Option<String>,
}

/// Accepted (`success` is always true here: refusals are problems).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    pub(crate) success: bool,
    pub(crate) errors: Vec<String>,
    /// Records the batch wrote (summaries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) records: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchPage {
    pub(crate) items: Vec<BatchView>,
    /// Pass as `after` for the next page; absent on the last.
    pub(crate) next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BatchQuery {
    /// The ERP the batch belongs to: a batch id is unique per ERP.
    #[param(required = true, nullable = false, pattern = "^[!-$&-.0-~]{1,64}$")]
    pub(crate) erp: Option<String>,
    /// Operators: the integration client (user id) that sent it; default:
    /// the caller.
    pub(crate) client: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BatchListQuery {
    /// Only this ERP's batches.
    pub(crate) erp: Option<String>,
    /// `open`, `committed` or `expired`.
    #[param(inline)]
    pub(crate) state: Option<BatchStateFilter>,
    /// Operators: one client's batches; default: every client's.
    /// Integration clients see their own only.
    pub(crate) client: Option<String>,
    /// `next` of the previous page.
    pub(crate) after: Option<String>,
    /// Batches per page, 1 to 2^53 - 1; values above `page_size_max` are
    /// capped.
    #[param(minimum = 1, maximum = 9007199254740991_u64)]
    pub(crate) limit: Option<usize>,
}

/// A batch's state, as a list filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BatchStateFilter {
    Open,
    Committed,
    Expired,
}

impl BatchStateFilter {
    fn as_str(self) -> &'static str {
        match self {
            BatchStateFilter::Open => "open",
            BatchStateFilter::Committed => "committed",
            BatchStateFilter::Expired => "expired",
        }
    }
}

/// A refusal as a problem document.
pub(crate) fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Denied(error) => error,
        Refusal::Rejected(errors) => ApiError {
            errors: errors.clone(),
            ..ApiError::new(ErrorKind::BatchRejected, errors.join("; "))
        },
        Refusal::Leased(error) => ApiError {
            errors: vec![error.clone()],
            ..ApiError::new(ErrorKind::Conflict, error)
        },
        Refusal::Contended(error) => ApiError::new(ErrorKind::Conflict, error),
        Refusal::Store(error) => crate::error::store_write_error(error),
    }
}

fn instance(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(SENDER_INSTANCE).map(|value| value.as_bytes())
}

async fn read_json<T: serde::de::DeserializeOwned>(
    body: Body,
    bytes_max: usize,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, bytes_max)
        .await
        .map_err(|_| crate::error::body_too_large(bytes_max))?;
    crate::error::json_from_bytes(&bytes)
}

fn same_batch(path: i64, body: Option<i64>) -> Result<(), ApiError> {
    match body {
        Some(id) if id != path => Err(ApiError::new(
            ErrorKind::InvalidBody,
            format!("batchId {id} in the body differs from {path} in the path"),
        )),
        _ => Ok(()),
    }
}

/// The protobuf `Table` of a JSON message.
pub(crate) fn table_of(batch_id: i64, message: BatchMessage) -> proto::Table {
    proto::Table {
        table_name: message.table_name,
        erp: message.erp,
        rows: message
            .rows
            .into_iter()
            .map(|row| proto::TableRow {
                columns: row
                    .columns
                    .into_iter()
                    .map(|c| proto::RowColumn {
                        name: c.name,
                        value: c.value,
                    })
                    .collect(),
            })
            .collect(),
        schema: Some(proto::Schema {
            flexible: message.schema.flexible,
            export_data: message.schema.export_data,
            columns: message
                .schema
                .columns
                .into_iter()
                .map(|c| proto::SchemaColumn {
                    name: c.name,
                    r#type: c.kind,
                })
                .collect(),
            primary_key: message
                .schema
                .primary_key
                .map(|pk| proto::SchemaPrimaryKey {
                    name: pk.name,
                    columns: pk.columns,
                }),
        }),
        batch_id,
        message_number: message.message_number,
        record_count: message.record_count,
        is_base_load: message.is_base_load,
    }
}

/// Stage one message of a batch (like gRPC `TableStream.Write`).
#[utoipa::path(
    post, path = "/api/v1/batches/{batch_id}/messages", tag = "ingest",
    params(
        ("batch_id" = i64, Path, description = "The batch id (Unix seconds of the delta's start)"),
        ("x-sender-instance" = Option<String>, Header, pattern = "^[!-~]{1,128}$",
         description = "This sender's instance (1 to 128 visible ASCII characters; absent: `default`); one holds the ERP's upload lease at a time"),
    ),
    request_body = BatchMessage,
    responses(
        (status = 200, description = "Staged durably (or an identical resend)", body = Accepted),
        (status = 400, description = "A body that is not JSON, or a bad batch id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, and scope `batches:write` missing", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another sender instance holds the lease, or the batch is busy", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is over 8 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A body that does not fit, or refused by the batch rules (which depend on the batch so far: numbering, counts, columns, a message over 5 MiB as protobuf); `errors` lists why", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(batch_id): ApiPath<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<Accepted>, ApiError> {
    let sender = service::sender(&caller, instance(&headers)).map_err(refusal_error)?;
    let message: BatchMessage = read_json(body, BODY_BYTES_MAX).await?;
    same_batch(batch_id, message.batch_id)?;
    service::write(&state, sender, table_of(batch_id, message))
        .await
        .map_err(refusal_error)?;
    Ok(axum::Json(Accepted {
        success: true,
        errors: Vec::new(),
        records: None,
    }))
}

/// Check a batch against its summary and commit it when complete (like
/// gRPC `TableStream.Summary`).
#[utoipa::path(
    post, path = "/api/v1/batches/{batch_id}/summary", tag = "ingest",
    params(
        ("batch_id" = i64, Path, description = "The batch id"),
        ("x-sender-instance" = Option<String>, Header, pattern = "^[!-~]{1,128}$",
         description = "This sender's instance (1 to 128 visible ASCII characters; absent: `default`)"),
    ),
    request_body = BatchSummaryBody,
    responses(
        (status = 200, description = "Committed (or committed before)", body = Accepted),
        (status = 400, description = "A body that is not JSON, or a bad batch id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, and scope `batches:write` missing", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another sender instance holds the lease, or the batch is busy", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is over 4096 bytes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Does not fit, or does not match the batch; the batch stays open; `errors` names missing and extra messages", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(batch_id): ApiPath<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<Accepted>, ApiError> {
    let sender = service::sender(&caller, instance(&headers)).map_err(refusal_error)?;
    let summary: BatchSummaryBody = read_json(body, SUMMARY_BYTES_MAX).await?;
    same_batch(batch_id, summary.batch_id)?;
    for (field, value) in [
        ("timestampStart", &summary.timestamp_start),
        ("timestampEnd", &summary.timestamp_end),
    ] {
        if let Some(text) = value {
            if fieldsync_node::clock::parse_rfc3339_ms(text).is_none() {
                return Err(ApiError::new(
                    ErrorKind::InvalidBody,
                    format!("{field} must be an RFC 3339 time"),
                ));
            }
        }
    }
    let claim = Claim {
        message_count: i64::from(summary.message_count),
        record_count: summary.record_count,
    };
    let records = service::summary(&state, sender, summary.erp, batch_id, claim)
        .await
        .map_err(refusal_error)?;
    Ok(axum::Json(Accepted {
        success: true,
        errors: Vec::new(),
        records: Some(records),
    }))
}

/// Whose batches a caller may read: its own (integration clients), any
/// (operators).
fn client_for(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    caller.office_or_scope(fieldsync_schemas::Scope::BatchesWrite)?;
    match caller.role {
        fieldsync_schemas::Role::Operator => Ok(asked),
        _ => match asked {
            Some(client) if client != caller.user_id => Err(ApiError::forbidden(
                "integration clients see their own batches only",
            )),
            _ => Ok(Some(caller.user_id.clone())),
        },
    }
}

/// One batch: state, messages received, missing numbers, records, errors.
#[utoipa::path(
    get, path = "/api/v1/batches/{batch_id}", tag = "ingest",
    params(("batch_id" = i64, Path, description = "The batch id"), BatchQuery),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 400, description = "`erp` missing or malformed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, scope `batches:write` missing, or another client's batches", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_batch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(batch_id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<BatchQuery>,
) -> Result<axum::Json<BatchView>, ApiError> {
    let client = client_for(&caller, query.client)?.unwrap_or_else(|| caller.user_id.clone());
    let Some(erp) = query.erp else {
        return Err(ApiError::new(
            ErrorKind::InvalidQuery,
            "`erp` is required: a batch id is unique per ERP",
        ));
    };
    check_erp(&erp).map_err(|e| ApiError::new(ErrorKind::InvalidQuery, e))?;
    let key = staging::batch_key(&client, &erp, batch_id);
    let stored = staging::load_batch(state.store(), &key).map_err(ApiError::internal)?;
    match stored.value {
        Some(batch) => Ok(axum::Json(view(&batch))),
        None => Err(ApiError::not_found(format!(
            "no batch {batch_id} of ERP `{erp}` from this client"
        ))),
    }
}

/// Batches, in key order (client, ERP, id), filtered by ERP and state.
#[utoipa::path(
    get, path = "/api/v1/batches", tag = "ingest",
    params(BatchListQuery),
    responses(
        (status = 200, description = "A page of batches", body = BatchPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, scope `batches:write` missing, or another client's batches", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_batches(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<BatchListQuery>,
) -> Result<axum::Json<BatchPage>, ApiError> {
    let prefix = client_for(&caller, query.client)?
        .map(|client| format!("{client}/"))
        .unwrap_or_default();
    let wanted_state = match query.state {
        None => None,
        Some(filter) => Some(BatchState::parse(filter.as_str()).ok_or_else(|| {
            ApiError::internal(format!(
                "batch state `{}` unknown to the rules",
                filter.as_str()
            ))
        })?),
    };
    let limit = super::page_size(state.config(), query.limit, "limit")?;
    let scan_max = state.config().scan_entries_max;
    let after = query.after.filter(|after| after.starts_with(&prefix));
    let scanned = views::scan(state.store(), &prefix, after.as_deref(), scan_max)
        .map_err(ApiError::internal)?;
    let full_scan = scanned.len() >= scan_max;
    let mut items = Vec::new();
    let mut next = None;
    for (key, batch) in scanned.iter() {
        let keep = query.erp.as_ref().is_none_or(|erp| *erp == batch.erp)
            && wanted_state.is_none_or(|s| s.as_str() == batch.state);
        if keep {
            items.push(batch.clone());
        }
        if items.len() >= limit {
            next = Some(key.clone());
            break;
        }
    }
    if next.is_none() && full_scan {
        next = scanned.last().map(|(key, _)| key.clone());
    }
    Ok(axum::Json(BatchPage { items, next }))
}
