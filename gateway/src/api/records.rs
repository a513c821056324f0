//! `/api/v1/collections`: the office's reference tables (customers,
//! materials, price lists, whatever an ERP uploads) as plain versioned
//! records, and who may read each collection.
//!
//! Why a thin layer: a record write is one `Store::write_record` through
//! the node's committer (acknowledged when durable, compare-and-set on the
//! version), and who may read is the one rule, `access::visible`, asked
//! through [`Caller::reads`]. This file adds only HTTP: entity tags for
//! versions, status codes, and the shapes in `model.rs`.
//!
//! Why one 404 for "absent", "deleted", "internal" and "not yours": a
//! caller must not learn that a collection or key exists by the answer it
//! gets (no oracle). Internal collections (users, webhooks, ...) are never
//! served here, whoever asks. Authorization is checked before the body is
//! read, so a caller who may not write learns nothing from validation.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fieldsync_node::access::ReadGrants;
use fieldsync_node::store::{Expect, Record, Store, WriteError};
use fieldsync_schemas::collection::{
    validate_collection_name, validate_record_key, CollectionKind, RecordNameError,
    RECORD_VALUE_BYTES_MAX,
};
use fieldsync_schemas::{ChangeOp, Role, Scope};

use super::model::{
    CollectionGrants, CollectionSummary, Reader, RecordBody, RecordPage, RecordQuery,
};
use super::work_orders::{entity_tags, json_with_etag, tags_match};
use crate::auth::Caller;
use crate::error::store_unavailable;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorKind, Problem};
use crate::state::AppState;

/// A collection name must be syntactically valid (else 400); a reserved or
/// internal one is answered as absent (404).
fn check_collection(name: &str) -> Result<(), ApiError> {
    match validate_collection_name(name) {
        Err(RecordNameError::Reserved(_)) => Err(no_collection(name)),
        Err(error) => Err(ApiError::new(ErrorKind::InvalidId, error.to_string())),
        Ok(()) if CollectionKind::of(name) == CollectionKind::Internal => Err(no_collection(name)),
        Ok(()) => Ok(()),
    }
}

fn check_key(key: &str) -> Result<(), ApiError> {
    validate_record_key(key).map_err(|error| ApiError::new(ErrorKind::InvalidId, error.to_string()))
}

fn no_collection(name: &str) -> ApiError {
    ApiError::not_found(format!("no collection `{name}`"))
}

fn no_record(collection: &str, key: &str) -> ApiError {
    ApiError::not_found(format!("no record `{key}` in `{collection}`"))
}

/// The grants in force for `name`: set over the API, else configured in
/// `[records.read]`, else the default.
fn grants(store: &Store, caller: &Caller, name: &str) -> Result<ReadGrants, ApiError> {
    store
        .read_grants(name, caller.configured_grants(name))
        .map_err(ApiError::internal)
}

/// Operators first, then the granted roles, each once, in a fixed order
/// (stored grants may lack the implicit operator).
fn readers(grants: &ReadGrants) -> Vec<Reader> {
    ReadGrants::of(grants.readers.iter().copied())
        .readers
        .into_iter()
        .map(Reader::from)
        .collect()
}

/// May the caller read collection `name` (existing or not)?
fn may_read(store: &Store, caller: &Caller, name: &str) -> Result<bool, ApiError> {
    Ok(caller.reads(name, &grants(store, caller, name)?))
}

/// Every data collection the caller may read, in name order (the web UI
/// shows the same list).
pub(crate) fn visible_collections(
    store: &Store,
    caller: &Caller,
) -> Result<Vec<CollectionSummary>, ApiError> {
    let mut visible = Vec::new();
    for info in store.collections().map_err(ApiError::internal)? {
        if info.kind != CollectionKind::Data {
            continue;
        }
        let grants = grants(store, caller, &info.name)?;
        if caller.reads(&info.name, &grants) {
            visible.push(CollectionSummary {
                kind: info.kind.into(),
                count: info.live,
                readers: readers(&grants),
                name: info.name,
            });
        }
    }
    Ok(visible)
}

fn body_of(record: Record) -> Result<RecordBody, ApiError> {
    let value = serde_json::from_slice(&record.value).map_err(ApiError::internal)?;
    Ok(RecordBody {
        collection: record.collection,
        key: record.key,
        version: record.version,
        value,
        deleted: record.deleted,
    })
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Percent-encode a path segment (keys may hold `/`, spaces, anything).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A record as JSON with its version as the ETag.
fn with_etag(status: StatusCode, record: RecordBody) -> Response {
    let tag = etag(record.version);
    json_with_etag(status, record, &tag)
}

/// What a write's conditional headers ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Precondition {
    /// No condition.
    None,
    /// `If-Match: *`: a live record.
    Exists,
    /// `If-None-Match: *`: no live record.
    Absent,
    /// `If-Match` with entity tags: the record at one of these versions
    /// (weak or non-numeric tags never match, so this may be empty).
    Versions(Vec<u64>),
}

fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let if_match = entity_tags(headers, header::IF_MATCH)?;
    let if_none_match = entity_tags(headers, header::IF_NONE_MATCH)?;
    let invalid = |detail: &str| ApiError::new(ErrorKind::InvalidHeader, detail);
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (_, Some(tags)) if tags != ["*"] => {
            Err(invalid("`If-None-Match` on a record write must be `*`"))
        }
        // RFC 9110 §13.2.2: `If-Match` holds only for a live record and
        // `If-None-Match: *` only for none, so together they never hold.
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorKind::PreconditionFailed,
            "`If-Match` and `If-None-Match: *` cannot both hold",
        )),
        (None, Some(_)) => Ok(Precondition::Absent),
        (Some(tags), None) if tags.iter().any(|tag| tag == "*") => Ok(Precondition::Exists),
        (Some(tags), None) => Ok(Precondition::Versions(
            tags.iter()
                .filter_map(|tag| tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
                .collect(),
        )),
    }
}

/// The store's compare-and-set for a precondition. Several versions are
/// matched against the current one here; the store then checks again.
fn expect(
    store: &Store,
    collection: &str,
    key: &str,
    precondition: &Precondition,
    default: Expect,
) -> Result<Expect, WriteError> {
    match precondition {
        Precondition::None => Ok(default),
        Precondition::Exists => Ok(Expect::Present),
        Precondition::Absent => Ok(Expect::Absent),
        Precondition::Versions(versions) if versions.len() == 1 => Ok(Expect::Version(versions[0])),
        Precondition::Versions(versions) => {
            let current = store
                .record(collection, key)?
                .filter(|record| !record.deleted)
                .map(|record| record.version);
            match current {
                Some(version) if versions.contains(&version) => Ok(Expect::Version(version)),
                _ => Err(WriteError::VersionMismatch {
                    collection: collection.to_string(),
                    key: key.to_string(),
                    current,
                }),
            }
        }
    }
}

/// Map a record write failure to what the caller may learn. `absent_404`:
/// a missing record is a 404 (DELETE), not a failed precondition (PUT).
fn write_error(error: WriteError, absent_404: bool) -> ApiError {
    match error {
        WriteError::VersionMismatch {
            collection,
            key,
            current: None,
        } if absent_404 => no_record(&collection, &key),
        WriteError::VersionMismatch {
            current: Some(version),
            ..
        } => ApiError::new(
            ErrorKind::PreconditionFailed,
            format!("the record is at version {version}, not the one the request names"),
        ),
        WriteError::VersionMismatch { current: None, .. } => ApiError::new(
            ErrorKind::PreconditionFailed,
            "the record does not exist, and `If-Match` names a version",
        ),
        WriteError::InvalidRecord(reason) => ApiError::new(ErrorKind::InvalidValue, reason),
        WriteError::Closed | WriteError::StoreFailed => store_unavailable(&error),
        other => ApiError::internal(other),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.len() > "application/+json".len()
            && essence.starts_with("application/")
            && essence.ends_with("+json"))
}

/// Read a PUT body as a record value: JSON, at most
/// `RECORD_VALUE_BYTES_MAX` bytes once compacted (what is stored).
async fn read_value(
    headers: &HeaderMap,
    body: Body,
    body_bytes_max: usize,
) -> Result<(Vec<u8>, serde_json::Value), ApiError> {
    if !is_json(headers) {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "expected `Content-Type: application/json`: the body is the record's JSON value",
        ));
    }
    let bytes = axum::body::to_bytes(body, body_bytes_max)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::BodyTooLarge,
                format!("the request body is over the limit of {body_bytes_max} bytes"),
            )
        })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            ErrorKind::MalformedBody,
            format!("the body is not JSON: {error}"),
        )
    })?;
    let compact = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    if compact.len() > RECORD_VALUE_BYTES_MAX {
        return Err(ApiError::new(
            ErrorKind::BodyTooLarge,
            format!(
                "the record value is {} bytes as compact JSON, over the limit of \
                 {RECORD_VALUE_BYTES_MAX} bytes",
                compact.len()
            ),
        ));
    }
    Ok((compact, value))
}

/// List the data collections the caller may read.
#[utoipa::path(
    get, path = "/api/v1/collections", tag = "records",
    responses(
        (status = 200, description = "Readable data collections, in name order (internal ones are never listed)", body = Vec<CollectionSummary>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope `records:read` missing", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_collections(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<CollectionSummary>>, ApiError> {
    caller.field_or_scope(Scope::RecordsRead)?;
    let collections = state
        .blocking(move |store| visible_collections(store, &caller))
        .await?;
    Ok(axum::Json(collections))
}

fn page_limit(state: &AppState, query: &RecordQuery) -> Result<usize, ApiError> {
    if let Some(cursor) = &query.cursor {
        validate_record_key(cursor)
            .map_err(|_| ApiError::new(ErrorKind::InvalidQuery, "`cursor` is not a cursor"))?;
    }
    super::page_size(state.config(), query.limit, "limit")
}

/// List a collection's live records in key order.
#[utoipa::path(
    get, path = "/api/v1/collections/{collection}/records", tag = "records",
    params(("collection" = String, Path, description = "Collection name", pattern = "^[a-z0-9_-]{1,64}$"),
           RecordQuery),
    responses(
        (status = 200, description = "A page of records", body = RecordPage),
        (status = 400, description = "Bad collection name or parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope `records:read` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection, internal, or not readable by the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_records(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<RecordQuery>,
) -> Result<axum::Json<RecordPage>, ApiError> {
    caller.field_or_scope(Scope::RecordsRead)?;
    check_collection(&collection)?;
    let limit = page_limit(&state, &query)?;
    let page = state
        .blocking(move |store| {
            let exists = store
                .collection(&collection)
                .map_err(ApiError::internal)?
                .is_some();
            if !exists || !may_read(store, &caller, &collection)? {
                return Err(no_collection(&collection));
            }
            let mut records = store
                .records(&collection, query.cursor.as_deref(), limit + 1)
                .map_err(ApiError::internal)?;
            let more = records.len() > limit;
            records.truncate(limit);
            let next_cursor = more
                .then(|| records.last().map(|record| record.key.clone()))
                .flatten();
            let items = records.into_iter().map(body_of).collect::<Result<_, _>>()?;
            Ok(RecordPage { items, next_cursor })
        })
        .await?;
    Ok(axum::Json(page))
}

/// Read one record.
#[utoipa::path(
    get, path = "/api/v1/collections/{collection}/records/{key}", tag = "records",
    params(("collection" = String, Path, description = "Collection name", pattern = "^[a-z0-9_-]{1,64}$"),
           ("key" = String, Path, description = "Record key (percent-encoded): 1 to 512 bytes of UTF-8, no control characters", min_length = 1, max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"),
           ("If-None-Match" = Option<String>, Header, description = "Answer 304 if the record is at one of these versions (entity tags such as `\"3\"`, or `*`)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    responses(
        (status = 200, description = "The record", body = RecordBody,
         headers(("ETag" = String, description = "The record's version, quoted: `\"3\"`"))),
        (status = 304, description = "Unchanged since the `If-None-Match` version"),
        (status = 400, description = "Bad collection name, key or header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope `records:read` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record, deleted, internal, or not readable by the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_record(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((collection, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::RecordsRead)?;
    check_collection(&collection)?;
    check_key(&key)?;
    let if_none_match = entity_tags(&headers, header::IF_NONE_MATCH)?;
    let record = state
        .blocking(move |store| {
            let hidden = || no_record(&collection, &key);
            // No collection holds no record: the same 404, one read fewer.
            if !may_read(store, &caller, &collection)? {
                return Err(hidden());
            }
            let record = store
                .record(&collection, &key)
                .map_err(ApiError::internal)?
                .filter(|record| !record.deleted)
                .ok_or_else(hidden)?;
            body_of(record)
        })
        .await?;
    if if_none_match.is_some_and(|tags| tags_match(&tags, &etag(record.version))) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(with_etag(StatusCode::OK, record))
}

/// Create or replace a record (operators, `records:write`).
#[utoipa::path(
    put, path = "/api/v1/collections/{collection}/records/{key}", tag = "records",
    params(("collection" = String, Path, description = "Collection name; a new data collection is created by an operator's first write", pattern = "^[a-z0-9_-]{1,64}$"),
           ("key" = String, Path, description = "Record key (percent-encoded): 1 to 512 bytes of UTF-8, no control characters", min_length = 1, max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"),
           ("If-Match" = Option<String>, Header, description = "Write only if the record is at this version: its ETag (`\"3\"`), or `*` for any live record", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#),
           ("If-None-Match" = Option<String>, Header, description = "`*`: write only if there is no live record (create only)", pattern = r"^\*$")),
    request_body(content = serde_json::Value, content_type = "application/json",
                 description = "The record's value: any JSON, at most 65536 bytes as compact JSON"),
    responses(
        (status = 200, description = "Replaced and durable", body = RecordBody,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 201, description = "Created and durable", body = RecordBody,
         headers(("ETag" = String, description = "The new version, quoted"), ("Location" = String))),
        (status = 400, description = "Bad collection name, key, header, or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, and scope `records:write` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Internal collection, or (integrations) no such collection", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The record is not at the `If-Match` version, or exists despite `If-None-Match: *` (both headers together never hold)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The value is over 65536 bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not `application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_record(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((collection, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.office_or_scope(Scope::RecordsWrite)?;
    check_collection(&collection)?;
    check_key(&key)?;
    let precondition = precondition(&headers)?;
    let (bytes, value) = read_value(&headers, body, state.config().body_bytes_max).await?;
    let may_create = caller.role == Role::Operator;
    let (name, id) = (collection.clone(), key.clone());
    let receipt = state
        .blocking(move |store| {
            if !may_create
                && store
                    .collection(&name)
                    .map_err(ApiError::internal)?
                    .is_none()
            {
                return Err(no_collection(&name));
            }
            let write = |store: &Store| {
                let expect = expect(store, &name, &id, &precondition, Expect::Any)?;
                store.write_record(&name, &id, Some(bytes), expect)
            };
            write(store).map_err(|error| write_error(error, false))
        })
        .await?;
    let created = receipt.op == Some(ChangeOp::Create);
    let location = format!(
        "/api/v1/collections/{collection}/records/{}",
        path_segment(&key)
    );
    let record = RecordBody {
        collection,
        key,
        version: receipt.version,
        value,
        deleted: false,
    };
    if !created {
        return Ok(with_etag(StatusCode::OK, record));
    }
    let mut response = with_etag(StatusCode::CREATED, record);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Delete a record (operators, `records:write`).
#[utoipa::path(
    delete, path = "/api/v1/collections/{collection}/records/{key}", tag = "records",
    params(("collection" = String, Path, description = "Collection name", pattern = "^[a-z0-9_-]{1,64}$"),
           ("key" = String, Path, description = "Record key (percent-encoded): 1 to 512 bytes of UTF-8, no control characters", min_length = 1, max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"),
           ("If-Match" = Option<String>, Header, description = "Delete only if the record is at this version: its ETag (`\"3\"`), or `*`", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    responses(
        (status = 204, description = "Deleted and durable"),
        (status = 400, description = "Bad collection name, key or header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, and scope `records:write` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record (or already deleted), or an internal collection", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The record is not at the `If-Match` version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_record(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((collection, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    caller.office_or_scope(Scope::RecordsWrite)?;
    check_collection(&collection)?;
    check_key(&key)?;
    let precondition = precondition(&headers)?;
    if precondition == Precondition::Absent {
        return Err(ApiError::new(
            ErrorKind::InvalidHeader,
            "`If-None-Match` does not apply to DELETE",
        ));
    }
    state
        .blocking(move |store| {
            let write = |store: &Store| {
                let expect = expect(store, &collection, &key, &precondition, Expect::Present)?;
                store.write_record(&collection, &key, None, expect)
            };
            let receipt = write(store).map_err(|error| write_error(error, true))?;
            // `If-Match` of a version the record was deleted at: nothing to do.
            match receipt.op {
                Some(ChangeOp::Delete) => Ok(()),
                _ => Err(no_record(&collection, &key)),
            }
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who may read a data collection (operators).
#[utoipa::path(
    get, path = "/api/v1/collections/{collection}/grants", tag = "records",
    params(("collection" = String, Path, description = "Collection name (it need not hold records yet)", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The grants in force", body = CollectionGrants),
        (status = 400, description = "Bad collection name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An internal collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_grants(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(collection): ApiPath<String>,
) -> Result<axum::Json<CollectionGrants>, ApiError> {
    caller.operator_only()?;
    check_collection(&collection)?;
    let grants = state
        .blocking(move |store| grants(store, &caller, &collection))
        .await?;
    Ok(axum::Json(CollectionGrants {
        readers: readers(&grants),
    }))
}

/// Set who may read a data collection (operators). Takes effect at the
/// next request, feed page and sync session.
#[utoipa::path(
    put, path = "/api/v1/collections/{collection}/grants", tag = "records",
    params(("collection" = String, Path, description = "Collection name (it need not hold records yet)", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = CollectionGrants,
    responses(
        (status = 200, description = "Set and durable; the grants now in force", body = CollectionGrants),
        (status = 400, description = "Bad collection name or malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An internal collection", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_grants(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(collection): ApiPath<String>,
    body: Result<ApiJson<CollectionGrants>, ApiError>,
) -> Result<axum::Json<CollectionGrants>, ApiError> {
    caller.operator_only()?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    check_collection(&collection)?;
    let grants = ReadGrants::of(body.readers.into_iter().map(Role::from));
    let answer = CollectionGrants {
        readers: readers(&grants),
    };
    state
        .blocking(move |store| {
            store
                .set_read_grants(&collection, &grants)
                .map_err(|error| write_error(error, false))
        })
        .await?;
    Ok(axum::Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn preconditions_from_headers() {
        let cases = [
            (vec![], Precondition::None),
            (
                vec![(header::IF_MATCH, "\"3\"")],
                Precondition::Versions(vec![3]),
            ),
            (
                vec![(header::IF_MATCH, "\"3\", W/\"4\", \"x\", \"5\"")],
                Precondition::Versions(vec![3, 5]),
            ),
            (vec![(header::IF_MATCH, "*")], Precondition::Exists),
            (vec![(header::IF_NONE_MATCH, "*")], Precondition::Absent),
        ];
        for (pairs, want) in cases {
            assert_eq!(precondition(&headers(&pairs)).expect("valid"), want);
        }
        for bad in [
            vec![(header::IF_MATCH, "3")],
            vec![(header::IF_NONE_MATCH, "\"3\"")],
        ] {
            let error = precondition(&headers(&bad)).expect_err("malformed");
            assert_eq!(error.kind, ErrorKind::InvalidHeader, "{bad:?}");
        }
        let both = [(header::IF_MATCH, "\"3\""), (header::IF_NONE_MATCH, "*")];
        let error = precondition(&headers(&both)).expect_err("never holds");
        assert_eq!(error.kind, ErrorKind::PreconditionFailed);
    }

    #[test]
    fn collection_names_and_json_media_types() {
        let status = |name: &str| check_collection(name).err().map(|e| e.kind);
        assert_eq!(status("materials"), None);
        assert_eq!(status("Materials"), Some(ErrorKind::InvalidId));
        assert_eq!(status("users"), Some(ErrorKind::NotFound));
        assert_eq!(status("webhooks"), Some(ErrorKind::NotFound));
        assert_eq!(status("work_orders"), Some(ErrorKind::NotFound));
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            let map = headers(&[(header::CONTENT_TYPE, value)]);
            assert_eq!(is_json(&map), json, "{value}");
        }
        assert_eq!(path_segment("SKU 12/4"), "SKU%2012%2F4");
    }
}
