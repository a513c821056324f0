//! `/api/v1/work-orders`: list, create, read, edit, tombstone, and the
//! field actions. Every write is a typed `Operation` applied by the node,
//! so REST obeys exactly the field rules sync obeys, and is acknowledged
//! only after the store's durable flush.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fieldsync_node::doc::{heads_hex, OpError, Operation, FIELD_TEXT_BYTES_MAX};
use fieldsync_node::store::{validate_doc_id, Store, WriteError};
use fieldsync_schemas::{Collection, NewWorkOrder, OperatorPatch, Role, Scope};

use super::model::{
    CreateWorkOrder, NewClosure, NewMaterial, NewNote, NewStatus, NewTimeEntry, PatchWorkOrder,
    Report, SetMaterialState, WorkOrder, WorkOrderPage, WorkOrderQuery, WorkOrderSummary,
};
use crate::auth::Caller;
use crate::clock::{now_rfc3339, now_s};
use crate::cursor::Cursors;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorKind, Problem};
use crate::state::AppState;

/// Documents looked at per `doc_ids` call while listing.
const LIST_CHUNK_IDS: usize = 256;

/// The ETag of a version: its heads, quoted, joined by `.`.
pub(crate) fn etag(heads: &[String]) -> String {
    format!("\"{}\"", heads.join("."))
}

/// `If-Match` / `If-None-Match` entity tags; `None` when the header is
/// absent. The header must be `*` or a list of (possibly weak) entity tags
/// as RFC 9110 §8.8.3 spells them, else 400: the grammar is the pattern the
/// OpenAPI document gives these headers, `^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$`.
/// `*` is kept as the one tag.
pub(crate) fn entity_tags(
    headers: &HeaderMap,
    name: header::HeaderName,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(value) = headers.get(&name) else {
        return Ok(None);
    };
    let tags = value.to_str().ok().and_then(parse_entity_tags);
    match tags {
        Some(tags) => Ok(Some(tags)),
        None => Err(ApiError::new(
            ErrorKind::InvalidHeader,
            format!("`{name}` must be `*` or entity tags like \"...\" or W/\"...\", separated by commas"),
        )),
    }
}

/// `*`, or entity tags (`"x"`, `W/"x"`; inside the quotes `!` and `#` to
/// `~`, which may include commas) separated by commas and optional spaces
/// or tabs; `None` when the text is neither.
fn parse_entity_tags(text: &str) -> Option<Vec<String>> {
    let ows = [' ', '\t'];
    let text = text.trim_matches(ows);
    if text == "*" {
        return Some(vec!["*".into()]);
    }
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        let prefix = if rest.starts_with("W/") { 2 } else { 0 };
        let opaque = rest[prefix..].strip_prefix('"')?;
        let end = opaque.find('"')?;
        if !opaque[..end]
            .bytes()
            .all(|b| b == b'!' || (b'#'..=b'~').contains(&b))
        {
            return None;
        }
        let length = prefix + end + 2;
        tags.push(rest[..length].to_string());
        rest = rest[length..].trim_start_matches(ows);
        if rest.is_empty() {
            return Some(tags);
        }
        rest = rest.strip_prefix(',')?.trim_start_matches(ows);
    }
}

pub(crate) fn tags_match(tags: &[String], current: &str) -> bool {
    // Strong comparison: weak tags (`W/"..."`) never match.
    tags.iter().any(|tag| tag == "*" || tag == current)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    validate_doc_id(id).map_err(|error| ApiError::new(ErrorKind::InvalidId, error.to_string()))
}

/// A work order as JSON with its ETag.
fn with_etag(status: StatusCode, order: WorkOrder) -> Response {
    let tag = etag(&order.heads);
    json_with_etag(status, order, &tag)
}

/// `body` as JSON with `tag` as its ETag (work orders, records).
pub(crate) fn json_with_etag(
    status: StatusCode,
    body: impl serde::Serialize,
    tag: &str,
) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Map a store write failure to what the caller may learn.
pub(crate) fn write_error(caller: &Caller, id: &str, error: WriteError) -> ApiError {
    let hidden = || ApiError::not_found(format!("no work order `{id}`"));
    match error {
        WriteError::NotFound(_) => hidden(),
        WriteError::AlreadyExists(id) => ApiError::new(
            ErrorKind::AlreadyExists,
            format!("work order `{id}` already exists"),
        ),
        WriteError::InvalidId(reason) => ApiError::new(ErrorKind::InvalidId, reason),
        WriteError::Op(op) => match op {
            OpError::NotAssignee => hidden(),
            OpError::Deleted if caller.role == Role::Technician => hidden(),
            OpError::Deleted => ApiError::new(ErrorKind::Deleted, "the work order is deleted"),
            OpError::Forbidden { .. } | OpError::StatusNotAllowed(_) => {
                ApiError::forbidden(op.to_string())
            }
            OpError::NoSuchMaterial(material) => {
                ApiError::not_found(format!("no material `{material}` on this work order"))
            }
            OpError::Invalid { .. } => ApiError::new(ErrorKind::InvalidValue, op.to_string()),
            OpError::Automerge(error) => ApiError::internal(error),
        },
        WriteError::Closed | WriteError::StoreFailed => crate::error::store_unavailable(&error),
        other => ApiError::internal(other),
    }
}

/// An assignee must be a known, active technician.
pub(crate) fn check_assignee(store: &Store, assignee: Option<&str>) -> Result<(), ApiError> {
    let Some(assignee) = assignee else {
        return Ok(());
    };
    let user = store.user(assignee).map_err(ApiError::internal)?;
    match user {
        Some(user) if user.role == Role::Technician && !user.revoked => Ok(()),
        _ => Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("`assignee` `{assignee}` is not an active technician"),
        )),
    }
}

/// Read a work order the caller may see; `None` hides it (404).
pub(crate) fn read_visible(
    store: &Store,
    caller: &Caller,
    id: &str,
) -> Result<Option<WorkOrder>, ApiError> {
    let Some(index) = store.doc_index(id).map_err(ApiError::internal)? else {
        return Ok(None);
    };
    if index.collection != Collection::WorkOrders || !caller.sees(&index) {
        return Ok(None);
    }
    let view = store.work_order(id).map_err(ApiError::internal)?;
    Ok(view
        .filter(|view| caller.sees_document(&index, view.assignee.as_deref(), view.deleted))
        .map(WorkOrder::from))
}

/// A page of the list and the scan position to go on from, in the clear:
/// [`ListPage::sealed`] turns the position into the opaque cursor clients
/// see, since it may be a work order the caller may not see.
pub(crate) struct ListPage {
    pub(crate) items: Vec<WorkOrderSummary>,
    /// The last document id scanned, when the list goes on.
    pub(crate) resume_after: Option<String>,
}

impl ListPage {
    /// The page as clients see it: the position sealed into `next_cursor`.
    pub(crate) fn sealed(self, cursors: &Cursors) -> WorkOrderPage {
        WorkOrderPage {
            items: self.items,
            next_cursor: self.resume_after.map(|position| cursors.seal(&position)),
        }
    }
}

/// The list: scan ids in key order after `after` (an opened cursor), keep
/// what the caller may see and the filters accept, stop at a full page or
/// after `scan_entries_max` documents (then the position says where to go
/// on; it may name a work order the caller may not see, so it leaves the
/// gateway only sealed).
pub(crate) fn list(
    store: &Store,
    caller: &Caller,
    query: &WorkOrderQuery,
    after: Option<String>,
    page_size: usize,
    scan_max: usize,
) -> Result<ListPage, ApiError> {
    assert!(page_size > 0 && scan_max >= page_size);
    let want_deleted = query.deleted.unwrap_or(false);
    let mut items = Vec::with_capacity(page_size);
    let mut after = after;
    let mut scanned = 0usize;
    loop {
        let chunk = LIST_CHUNK_IDS.min(scan_max - scanned);
        let ids = store
            .doc_ids(after.as_deref(), chunk)
            .map_err(ApiError::internal)?;
        let exhausted = ids.len() < chunk;
        for id in ids {
            scanned += 1;
            after = Some(id.clone());
            let Some(index) = store.doc_index(&id).map_err(ApiError::internal)? else {
                continue;
            };
            if index.collection != Collection::WorkOrders
                || index.deleted != want_deleted
                || !caller.sees(&index)
                || query
                    .assignee
                    .as_deref()
                    .is_some_and(|wanted| index.assignee.as_deref() != Some(wanted))
            {
                continue;
            }
            let Some(view) = store.work_order(&id).map_err(ApiError::internal)? else {
                continue;
            };
            let order = WorkOrder::from(view);
            if query.status.is_some_and(|status| status != order.status)
                || query
                    .priority
                    .is_some_and(|priority| priority != order.priority)
            {
                continue;
            }
            items.push(WorkOrderSummary::from(&order));
            if items.len() == page_size {
                return Ok(ListPage {
                    items,
                    resume_after: after,
                });
            }
        }
        if exhausted {
            return Ok(ListPage {
                items,
                resume_after: None,
            });
        }
        if scanned >= scan_max {
            return Ok(ListPage {
                items,
                resume_after: after,
            });
        }
    }
}

/// Validate list parameters: the position the cursor names (opened and
/// checked), and the page size, clamped.
pub(crate) fn list_params(
    state: &AppState,
    query: &WorkOrderQuery,
) -> Result<(Option<String>, usize), ApiError> {
    let after = match &query.cursor {
        None => None,
        Some(cursor) => {
            let position = state.cursors().open(cursor)?;
            validate_doc_id(&position)
                .map_err(|_| ApiError::new(ErrorKind::InvalidQuery, "`cursor` is not a cursor"))?;
            Some(position)
        }
    };
    let page_size = super::page_size(state.config(), query.page_size, "page_size")?;
    Ok((after, page_size))
}

/// List work orders the caller may see.
#[utoipa::path(
    get, path = "/api/v1/work-orders", tag = "work-orders",
    params(WorkOrderQuery),
    responses(
        (status = 200, description = "A page of work orders", body = WorkOrderPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope missing", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_work_orders(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<WorkOrderQuery>,
) -> Result<axum::Json<WorkOrderPage>, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersRead)?;
    let (after, page_size) = list_params(&state, &query)?;
    let scan_max = state.config().scan_entries_max;
    let page = state
        .blocking(move |store| list(store, &caller, &query, after, page_size, scan_max))
        .await?;
    Ok(axum::Json(page.sealed(state.cursors())))
}

/// Create a work order (operators, `work-orders:write`).
#[utoipa::path(
    post, path = "/api/v1/work-orders", tag = "work-orders",
    request_body = CreateWorkOrder,
    responses(
        (status = 201, description = "Created and durable", body = WorkOrder,
         headers(("ETag" = String, description = "Document heads"), ("Location" = String))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed to create", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Id taken", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_work_order(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<CreateWorkOrder>, ApiError>,
) -> Result<Response, ApiError> {
    caller.office_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let order = create_order(&state, &caller, body).await?;
    let location = format!("/api/v1/work-orders/{}", order.id);
    let mut response = with_etag(StatusCode::CREATED, order);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Create a work order as `caller` from a create body: the one path of
/// REST and the office console (the caller's right to create is checked
/// by each). The id is the body's or a new UUID; the number the body's or
/// the central's next one ([`numbered`]). Answers the work order as the
/// caller reads it, once durable.
pub(crate) async fn create_order(
    state: &AppState,
    caller: &Caller,
    body: CreateWorkOrder,
) -> Result<WorkOrder, ApiError> {
    let id = match &body.id {
        Some(id) => {
            check_id(id)?;
            id.clone()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let mut new = new_work_order(body, id.clone())?;
    let who = caller.actor();
    let caller = caller.clone();
    let prefix = state.config().work_order_prefix.clone();
    state
        .blocking(move |store| {
            check_assignee(store, new.assignee.as_deref())?;
            numbered(store, &prefix, &mut new).map_err(crate::error::store_write_error)?;
            store
                .create_work_order(&who, &new, now_s() as i64)
                .map_err(|error| write_error(&caller, &id, error))?;
            read_visible(store, &caller, &id)?
                .ok_or_else(|| ApiError::internal("created work order is not readable"))
        })
        .await
}

/// Give `new` the central's next work-order number (`WO-2026-000123`,
/// [`fieldsync_node::numbering`]) unless its creator named one.
pub(crate) fn numbered(
    store: &Store,
    prefix: &str,
    new: &mut NewWorkOrder,
) -> Result<(), fieldsync_node::store::WriteError> {
    if new.number.is_empty() {
        new.number = fieldsync_node::numbering::next_work_order_number(
            store,
            prefix,
            fieldsync_node::clock::now_ms(),
        )?;
    }
    Ok(())
}

/// Characters of a work order's `number`, at most.
const NUMBER_CHARS_MAX: usize = 64;

/// A customer must be named (a name of only white space is none), and
/// each field is work-order text (at most `FIELD_TEXT_BYTES_MAX`): create
/// and patch alike, as the document's `Customer` schema says.
fn check_customer(customer: &super::model::Customer) -> Result<(), ApiError> {
    if customer.name.trim().is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "`customer.name` must not be empty",
        ));
    }
    for (field, value) in [
        ("name", &customer.name),
        ("address", &customer.address),
        ("phone", &customer.phone),
        ("document", &customer.document),
    ] {
        if value.len() > FIELD_TEXT_BYTES_MAX {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                format!("`customer.{field}` is over {FIELD_TEXT_BYTES_MAX} bytes"),
            ));
        }
    }
    Ok(())
}

/// The work order a create body asks for, under `id` (the body's own id
/// is the caller's to check): the body's number (empty when absent: the
/// store closure gives the central's next one, [`numbered`]), a customer
/// name, the initial status from the assignee. Shared by REST, the console
/// and `POST /api/v1/events`.
pub(crate) fn new_work_order(body: CreateWorkOrder, id: String) -> Result<NewWorkOrder, ApiError> {
    let given = body.number.is_some();
    let number = body.number.unwrap_or_default();
    // Characters, as the OpenAPI document's `maxLength` counts them.
    if given && (number.is_empty() || number.chars().count() > NUMBER_CHARS_MAX) {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("`number` must be 1 to {NUMBER_CHARS_MAX} characters"),
        ));
    }
    check_customer(&body.customer)?;
    let assignee = body.assignee.filter(|assignee| !assignee.is_empty());
    Ok(NewWorkOrder {
        id: Some(id),
        number,
        title: body.title,
        description: body.description,
        customer: body.customer.into(),
        priority: body
            .priority
            .map_or(fieldsync_schemas::Priority::Normal, Into::into),
        initial_status: if assignee.is_some() {
            fieldsync_schemas::Status::Assigned
        } else {
            fieldsync_schemas::Status::Open
        },
        assignee,
        scheduled_for: body.scheduled_for,
        created_at: now_rfc3339(),
        notes: Vec::new(),
        materials: Vec::new(),
    })
}

/// Read one live work order.
///
/// A deleted (tombstoned) work order answers 404, as one that never
/// existed: after `DELETE` the resource is gone for readers, whoever asks.
/// Its tombstone stays visible where deletions are listed: the changes
/// feed (`op: delete`) and `GET /api/v1/work-orders?deleted=true`.
/// Writes to it answer 409 (`deleted`) for the office, so a client that
/// edits a work order deleted meanwhile learns why.
#[utoipa::path(
    get, path = "/api/v1/work-orders/{id}", tag = "work-orders",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-None-Match" = Option<String>, Header, description = "Answer 304 if the work order is at one of these versions (its ETag), or `*`", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    responses(
        (status = 200, description = "The work order", body = WorkOrder,
         headers(("ETag" = String, description = "Document heads"))),
        (status = 304, description = "Unchanged since the `If-None-Match` version"),
        (status = 400, description = "Invalid id or `If-None-Match`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, deleted, or not visible", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_work_order(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersRead)?;
    check_id(&id)?;
    let if_none_match = entity_tags(&headers, header::IF_NONE_MATCH)?;
    let order = state
        .blocking(move |store| {
            read_visible(store, &caller, &id)?
                .filter(|order| !order.deleted)
                .ok_or_else(|| ApiError::not_found(format!("no work order `{id}`")))
        })
        .await?;
    if if_none_match.is_some_and(|tags| tags_match(&tags, &etag(&order.heads))) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(with_etag(StatusCode::OK, order))
}

/// Apply one typed operation as the caller, honouring `If-Match`, and
/// answer with the new version.
async fn apply(
    state: AppState,
    caller: Caller,
    id: String,
    headers: &HeaderMap,
    operation: Operation,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let if_match = entity_tags(headers, header::IF_MATCH)?;
    let order = apply_operation(&state, caller, id, if_match, operation).await?;
    Ok(with_etag(StatusCode::OK, order))
}

/// Apply one typed operation to work order `id` (already checked) as the
/// caller, only if the document is at one of `if_match`'s entity tags when
/// given (else 412, `precondition-failed`); answers the new version once
/// durable. The one write path of REST and the office console.
pub(crate) async fn apply_operation(
    state: &AppState,
    caller: Caller,
    id: String,
    if_match: Option<Vec<String>>,
    operation: Operation,
) -> Result<WorkOrder, ApiError> {
    state
        .blocking(move |store| {
            let who = caller.actor();
            let mut stale = false;
            let result = store.edit_work_order(&id, |document| {
                // Visibility first, so a precondition answer cannot reveal
                // a work order the caller may not see.
                let index = store
                    .doc_index(&id)?
                    .ok_or_else(|| WriteError::NotFound(id.clone()))?;
                let assignee = document.assignee();
                if !caller.sees_document(&index, assignee.as_deref(), document.is_deleted()) {
                    return Err(WriteError::Op(OpError::NotAssignee));
                }
                if let Some(tags) = &if_match {
                    if !tags_match(tags, &etag(&heads_hex(&document.heads()))) {
                        stale = true;
                        return Err(WriteError::Op(OpError::Invalid {
                            field: "If-Match",
                            reason: "stale".into(),
                        }));
                    }
                }
                Ok(document.apply(&who, &operation, now_s() as i64)?)
            });
            if stale {
                return Err(ApiError::new(
                    ErrorKind::PreconditionFailed,
                    "the work order changed since the version in `If-Match`",
                ));
            }
            result.map_err(|error| write_error(&caller, &id, error))?;
            read_visible(store, &caller, &id)?
                .ok_or_else(|| ApiError::not_found(format!("no work order `{id}`")))
        })
        .await
}

/// The edit a patch body asks for; it must name a field (the document
/// says `minProperties: 1`, and no member but `assignee` may be `null`,
/// so a body that passes the schema always names one). Shared by REST and
/// `POST /api/v1/events`.
pub(crate) fn operator_patch(body: PatchWorkOrder) -> Result<OperatorPatch, ApiError> {
    if body.title.is_none()
        && body.description.is_none()
        && body.priority.is_none()
        && body.assignee.is_none()
        && body.scheduled_for.is_none()
        && body.customer.is_none()
    {
        return Err(ApiError::new(
            ErrorKind::InvalidBody,
            "the patch names no field to change",
        ));
    }
    if let Some(customer) = &body.customer {
        check_customer(customer)?;
    }
    Ok(OperatorPatch {
        title: body.title,
        description: body.description,
        priority: body.priority.map(Into::into),
        assignee: body
            .assignee
            .map(|assignee| assignee.filter(|name| !name.is_empty())),
        scheduled_for: body.scheduled_for,
        customer: body.customer.map(Into::into),
    })
}

/// Edit office-owned fields (operators, `work-orders:write`).
#[utoipa::path(
    patch, path = "/api/v1/work-orders/{id}", tag = "work-orders",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = PatchWorkOrder,
    responses(
        (status = 200, description = "Edited and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn patch_work_order(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<PatchWorkOrder>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let patch = operator_patch(body)?;
    apply(
        state,
        caller,
        id,
        &headers,
        Operation::EditOperatorFields(patch),
    )
    .await
}

/// Tombstone a work order (operators, `work-orders:write`).
#[utoipa::path(
    delete, path = "/api/v1/work-orders/{id}", tag = "work-orders",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    responses(
        (status = 200, description = "Deleted (tombstoned) and durable", body = WorkOrder),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_work_order(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // A deleted document is hidden from technicians but not from the
    // office; apply() refuses a second tombstone with 409.
    apply(state, caller, id, &headers, Operation::Tombstone).await
}

/// Add a note (operators, the assigned technician, `work-orders:write`).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/notes", tag = "field-actions",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = NewNote,
    responses(
        (status = 200, description = "Added and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn add_note(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<NewNote>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let operation = Operation::AddNote {
        id: uuid::Uuid::new_v4().to_string(),
        at: now_rfc3339(),
        text: body.text,
    };
    apply(state, caller, id, &headers, operation).await
}

/// Request a material (the assigned technician; the office may too).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/materials", tag = "field-actions",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = NewMaterial,
    responses(
        (status = 200, description = "Requested and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn request_material(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<NewMaterial>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let operation = Operation::RequestMaterial {
        id: uuid::Uuid::new_v4().to_string(),
        at: now_rfc3339(),
        sku: body.sku,
        qty: body.qty,
        unit: body.unit,
        description: body.description,
    };
    apply(state, caller, id, &headers, operation).await
}

/// Approve or reject a requested material (operators, `work-orders:write`).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/materials/{material_id}/state", tag = "field-actions",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("material_id" = String, Path, description = "Material id", min_length = 1, max_length = 128),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = SetMaterialState,
    responses(
        (status = 200, description = "Changed and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order or material", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_material_state(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, material_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<ApiJson<SetMaterialState>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    if material_id.is_empty() || material_id.chars().count() > 128 {
        return Err(ApiError::new(ErrorKind::InvalidId, "invalid material id"));
    }
    let operation = Operation::SetMaterialState {
        id: material_id,
        state: body.state.into(),
    };
    apply(state, caller, id, &headers, operation).await
}

/// Append a status transition.
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/status", tag = "field-actions",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = NewStatus,
    responses(
        (status = 200, description = "Appended and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Transition not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn append_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<NewStatus>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let operation = Operation::AppendStatus {
        at: now_rfc3339(),
        to: body.to.into(),
        note: body.note,
    };
    apply(state, caller, id, &headers, operation).await
}

/// Close the work order (records the closure and a `completed` transition).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/closure", tag = "field-actions",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = NewClosure,
    responses(
        (status = 200, description = "Closed and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn close(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<NewClosure>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let operation = Operation::Close {
        at: now_rfc3339(),
        resolution: body.resolution,
        signed_by: body.signed_by,
        signature: body.signature,
    };
    apply(state, caller, id, &headers, operation).await
}

/// Replace the technical report's text.
#[utoipa::path(
    put, path = "/api/v1/work-orders/{id}/report", tag = "field-actions",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = Report,
    responses(
        (status = 200, description = "Edited and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn edit_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<Report>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    apply(
        state,
        caller,
        id,
        &headers,
        Operation::EditReport { text: body.text },
    )
    .await
}

/// Log working time (the assigned technician only).
#[utoipa::path(
    post, path = "/api/v1/work-orders/{id}/time", tag = "field-actions",
    params(("id" = String, Path, description = "Work order id", pattern = "^[A-Za-z0-9_-]{1,128}$"),
           ("If-Match" = Option<String>, Header, description = "Apply only to this version (ETag)", pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)),
    request_body = NewTimeEntry,
    responses(
        (status = 200, description = "Logged and durable", body = WorkOrder),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work order, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn log_time(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<ApiJson<NewTimeEntry>, ApiError>,
) -> Result<Response, ApiError> {
    caller.field_or_scope(Scope::WorkOrdersWrite)?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    // The times are judged by the operation itself, after the field rules
    // (authorization before validation: the office gets 403 whatever the
    // body).
    let operation = Operation::AppendTime {
        start: body.start,
        end: body.end,
    };
    apply(state, caller, id, &headers, operation).await
}

#[cfg(test)]
mod tests {
    use super::parse_entity_tags;

    #[test]
    fn entity_tags_as_rfc_9110_spells_them() {
        let tags = |text: &str| parse_entity_tags(text);
        assert_eq!(tags("*"), Some(vec!["*".to_string()]));
        assert_eq!(tags(" \"a\" "), Some(vec!["\"a\"".to_string()]));
        assert_eq!(
            tags("\"a,b\",\tW/\"\" , \"c\""),
            Some(vec!["\"a,b\"".into(), "W/\"\"".into(), "\"c\"".into()])
        );
        for bad in [
            "",
            "0",
            "null",
            "a",
            "\"a",
            "\"a b\"",
            "\"a\" \"b\"",
            "\"a\",",
            "*, \"a\"",
            "w/\"a\"",
            "\"\u{e9}\"",
        ] {
            assert_eq!(tags(bad), None, "{bad:?}");
        }
    }
}
