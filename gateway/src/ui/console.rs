//! The office console's work-order forms: create, edit the operator's
//! fields, assign, cancel, approve or reject materials, resolve a
//! conflicting edit.
//!
//! Why every form calls the REST API's functions
//! (`api::work_orders::create_order`, `operator_patch`,
//! `apply_operation`, `check_assignee`): the field rules, the value checks,
//! the numbering and the durable flush are then the API's, with nothing
//! here to drift. An edit or a conflict's resolution carries the entity
//! tag of the version the form showed and is applied only to that version
//! (as `If-Match` on REST): a technician's change that arrived meanwhile
//! refuses it with a plain sentence instead of being overwritten unseen.
//! Assigning, cancelling and material decisions do not: they state the
//! operator's decision whatever else changed.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fieldsync_node::clock::{now_rfc3339, parse_rfc3339_ms, rfc3339_ms};
use fieldsync_node::doc::Operation;
use fieldsync_schemas::Role;
use maud::{html, Markup};
use serde::Deserialize;

use super::forms::{self, posted, sentence, Flash, Posted};
use super::{csrf, detail_page, page_with, secure_cookies, url_part, word, UiCaller, PRIORITIES};
use crate::api::model::{CreateWorkOrder, Customer, PatchWorkOrder, Priority, WorkOrder};
use crate::api::work_orders::{
    apply_operation, check_assignee, create_order, etag, operator_patch,
};
use crate::edge::Client;
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// The fields an operator may settle a conflict of here: the ones an
/// operator edit writes.
const RESOLVABLE: [&str; 9] = [
    "title",
    "description",
    "priority",
    "assignee",
    "scheduled_for",
    "customer.name",
    "customer.address",
    "customer.phone",
    "customer.document",
];

/// The active technicians' ids, for the assignee choices.
pub(super) async fn technicians(state: &AppState) -> Result<Vec<String>, ApiError> {
    let users = state
        .blocking(|store| store.users().map_err(ApiError::internal))
        .await?;
    Ok(users
        .into_iter()
        .filter(|user| user.role == Role::Technician && !user.revoked)
        .map(|user| user.id)
        .collect())
}

/// A work order's fields as the create and edit forms post them (every
/// field may be missing: an empty value is then judged, not the post).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct OrderForm {
    title: String,
    description: String,
    customer_name: String,
    customer_address: String,
    customer_phone: String,
    priority: String,
    /// A local date-time input's value (`2026-05-01T09:30`), read as UTC.
    scheduled_for: String,
    assignee: String,
    /// The version the edit form was rendered from (its ETag).
    etag: String,
}

impl OrderForm {
    /// The form's values for an existing work order.
    fn of(order: &WorkOrder) -> OrderForm {
        OrderForm {
            title: order.title.clone(),
            description: order.description.clone(),
            customer_name: order.customer.name.clone(),
            customer_address: order.customer.address.clone(),
            customer_phone: order.customer.phone.clone(),
            priority: word(order.priority),
            scheduled_for: scheduled_to_form(order.scheduled_for.as_deref()),
            assignee: order.assignee.clone().unwrap_or_default(),
            etag: etag(&order.heads),
        }
    }

    fn priority(&self) -> Result<Priority, ApiError> {
        super::enum_from(Some(self.priority.trim())).ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidValue,
                "choose a priority: low, normal, high or urgent",
            )
        })
    }
}

/// A local date-time (`2026-05-01T09:30`, seconds optional), read as UTC,
/// as the RFC 3339 time the product writes; empty is none.
fn scheduled_from_form(text: &str) -> Result<Option<String>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let full = match text.len() {
        16 => format!("{text}:00Z"),
        19 => format!("{text}Z"),
        _ => text.to_string(),
    };
    parse_rfc3339_ms(&full)
        .map(|ms| Some(rfc3339_ms(ms)))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidValue,
                "the scheduled time must be a date and a time, such as 2026-05-01 09:30",
            )
        })
}

/// A stored schedule as a local date-time input shows it (UTC); empty
/// when there is none or it is not a time.
fn scheduled_to_form(value: Option<&str>) -> String {
    value
        .and_then(parse_rfc3339_ms)
        .map(|ms| rfc3339_ms(ms).chars().take(16).collect())
        .unwrap_or_default()
}

/// A text area's value with the line breaks the product stores: browsers
/// submit every line break as CR LF (HTML's form encoding), which would
/// make an untouched description look edited.
fn lines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// The hidden field every console form carries.
fn token_field(token: &str) -> Markup {
    html! { input type="hidden" name=(csrf::FIELD) value=(token); }
}

/// The assignee choices: unassigned, then the active technicians (and the
/// current assignee even if no longer one, so the form shows the truth).
fn assignee_select(technicians: &[String], current: &str) -> Markup {
    let listed = current.is_empty() || technicians.iter().any(|each| each == current);
    html! {
        label { "Assignee (technician)" select name="assignee" {
            option value="" selected[current.is_empty()] { "— unassigned —" }
            @if !listed { option value=(current) selected { (current) " (not an active technician)" } }
            @for each in technicians { option value=(each) selected[each == current] { (each) } }
        } }
    }
}

/// The fields the create and edit forms share.
fn order_fields(values: &OrderForm) -> Markup {
    html! {
        label { "Customer name" input name="customer_name" value=(values.customer_name) required autocomplete="off"; }
        label { "Customer address" input name="customer_address" value=(values.customer_address) autocomplete="off"; }
        label { "Customer phone" input name="customer_phone" type="tel" value=(values.customer_phone) autocomplete="off"; }
        label { "Title" input name="title" value=(values.title) required; }
        label { "Priority" select name="priority" {
            @for each in PRIORITIES { option value=(each) selected[each == values.priority] { (each) } }
        } }
        label { "Scheduled (date and time, UTC)" input name="scheduled_for" type="datetime-local" value=(values.scheduled_for); }
        label.wide { "Description" textarea name="description" rows="4" { (values.description) } }
    }
}

/// The create page with `values`, `flash` and `status`.
async fn create_page(
    state: &AppState,
    session: &UiCaller,
    values: &OrderForm,
    flash: Option<&Flash>,
    status: StatusCode,
) -> Response {
    let technicians = technicians(state).await.unwrap_or_default();
    let body = html! {
        form.console #create-work-order method="post" action="/ui/work-orders" {
            (token_field(&session.console_token))
            (order_fields(values))
            (assignee_select(&technicians, &values.assignee))
            div.wide { button type="submit" { "Create work order" } }
        }
    };
    (
        status,
        page_with("New work order", Some(session), flash, body),
    )
        .into_response()
}

/// `GET /ui/work-orders/new`: the create form (operators).
pub(super) async fn new_page(State(state): State<AppState>, session: UiCaller) -> Response {
    if session.caller.operator_only().is_err() {
        return forms::operators_only(&session);
    }
    let values = OrderForm {
        priority: "normal".into(),
        ..OrderForm::default()
    };
    create_page(&state, &session, &values, None, StatusCode::OK).await
}

/// `POST /ui/work-orders`: create through `create_order` (REST's path),
/// then to the new work order's page.
pub(super) async fn create(
    State(state): State<AppState>,
    client: Client,
    request: Request,
) -> Response {
    let Posted { session, form } = match posted::<OrderForm>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    match create_from(&state, &session, &form).await {
        Ok(order) => {
            let to = format!("/ui/work-orders/{}", url_part(&order.id));
            forms::done(&to, "created", secure_cookies(&state, client))
        }
        Err(error) => {
            let flash = Flash::Problem(sentence(&error));
            create_page(&state, &session, &form, Some(&flash), error.kind.status()).await
        }
    }
}

async fn create_from(
    state: &AppState,
    session: &UiCaller,
    form: &OrderForm,
) -> Result<WorkOrder, ApiError> {
    if form.title.trim().is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "give the work order a title",
        ));
    }
    let body = CreateWorkOrder {
        id: None,
        number: None,
        title: form.title.trim().to_string(),
        description: lines(&form.description),
        customer: Customer {
            name: form.customer_name.trim().to_string(),
            address: form.customer_address.clone(),
            phone: form.customer_phone.clone(),
            document: String::new(),
        },
        priority: Some(form.priority()?),
        assignee: Some(form.assignee.trim().to_string()).filter(|name| !name.is_empty()),
        scheduled_for: scheduled_from_form(&form.scheduled_for)?,
    };
    create_order(state, &session.caller, body).await
}

/// The console's forms on a work order's page (operators).
pub(super) fn order_forms(order: &WorkOrder, technicians: &[String], token: &str) -> Markup {
    if order.deleted {
        return html! { p { "This work order is deleted; it takes no more changes." } };
    }
    let base = format!("/ui/work-orders/{}", url_part(&order.id));
    let values = OrderForm::of(order);
    html! {
        section {
            h2 { "Edit" }
            form.console #edit-work-order method="post" action={ (base) "/edit" } {
                (token_field(token))
                input type="hidden" name="etag" value=(values.etag);
                (order_fields(&values))
                div.wide { button type="submit" { "Save changes" } }
            }
        }
        section {
            h2 { "Assign" }
            form.console #assign method="post" action={ (base) "/assign" } {
                (token_field(token))
                (assignee_select(technicians, &values.assignee))
                div { button type="submit" { "Assign" } }
            }
        }
        (material_forms(order, &base, token))
        (conflict_forms(order, &base, token, &values.etag))
        @if order.status != crate::api::model::Status::Cancelled {
            section {
                h2 { "Cancel" }
                form.console #cancel method="post" action={ (base) "/cancel" } {
                    (token_field(token))
                    label.wide { "Reason (optional)" textarea name="note" rows="2" {} }
                    div { button type="submit" { "Cancel work order" } }
                }
            }
        }
    }
}

fn material_forms(order: &WorkOrder, base: &str, token: &str) -> Markup {
    let requested = crate::api::model::MaterialState::Requested;
    html! {
        @if order.materials.iter().any(|material| material.state == requested) {
            section {
                h2 { "Requested materials" }
                @for (row, material) in order.materials.iter().enumerate() {
                    @if material.state == requested {
                        @let n = row + 1;
                        @let action = format!("{base}/materials/{}", url_part(&material.id));
                        div.material {
                            "#" (n) " " (material.sku) " × " (material.qty) " " (material.unit) ": "
                            form.inline #{ "approve-material-" (n) } method="post" action=(action) {
                                (token_field(token))
                                input type="hidden" name="state" value="approved";
                                button type="submit" { "Approve #" (n) }
                            }
                            " "
                            form.inline #{ "reject-material-" (n) } method="post" action=(action) {
                                (token_field(token))
                                input type="hidden" name="state" value="rejected";
                                button type="submit" { "Reject #" (n) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A conflicting value as the form offers it (strings as they are).
fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The value a field shows now (the merge's winner).
fn current_value(order: &WorkOrder, field: &str) -> String {
    let customer = &order.customer;
    match field {
        "title" => order.title.clone(),
        "description" => order.description.clone(),
        "priority" => word(order.priority),
        "assignee" => order.assignee.clone().unwrap_or_default(),
        "scheduled_for" => order.scheduled_for.clone().unwrap_or_default(),
        "customer.name" => customer.name.clone(),
        "customer.address" => customer.address.clone(),
        "customer.phone" => customer.phone.clone(),
        "customer.document" => customer.document.clone(),
        _ => String::new(),
    }
}

fn conflict_forms(order: &WorkOrder, base: &str, token: &str, version: &str) -> Markup {
    let resolvable: Vec<_> = order
        .conflicts
        .iter()
        .filter(|(field, _)| RESOLVABLE.contains(&field.as_str()))
        .collect();
    html! {
        @if !resolvable.is_empty() {
            section {
                h2 { "Resolve conflicting edits" }
                @for (field, losers) in resolvable {
                    @let current = current_value(order, field);
                    form.console #{ "resolve-conflict-" (field.replace('.', "-")) } method="post" action={ (base) "/resolve" } {
                        (token_field(token))
                        input type="hidden" name="field" value=(field);
                        input type="hidden" name="etag" value=(version);
                        fieldset.wide {
                            legend { "Which value of " code { (field) } " is right?" }
                            label { span { input type="radio" name="value" value=(current) checked; " shown now: " (current) } }
                            @for loser in losers {
                                @let text = value_text(loser);
                                label { span { input type="radio" name="value" value=(text); " also written: " (text) } }
                            }
                        }
                        div { button type="submit" { "Keep the chosen value" } }
                    }
                }
            }
        }
    }
}

/// After a console action on work order `id`: to its page saying
/// "Saved", or its page again with the problem (nothing saved).
async fn answer(
    state: &AppState,
    client: Client,
    session: &UiCaller,
    id: String,
    result: Result<&'static str, ApiError>,
) -> Response {
    match result {
        Ok(code) => {
            let to = format!("/ui/work-orders/{}", url_part(&id));
            forms::done(&to, code, secure_cookies(state, client))
        }
        Err(error) => {
            let flash = Flash::Problem(sentence(&error));
            detail_page(state, session, id, Some(&flash), error.kind.status()).await
        }
    }
}

/// `POST /ui/work-orders/{id}/edit`: the fields that differ from the
/// version the form showed, as one operator edit of that version.
pub(super) async fn edit(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Posted { session, form } = match posted::<OrderForm>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let result = edit_order(&state, &session, &id, form).await;
    answer(&state, client, &session, id, result).await
}

async fn edit_order(
    state: &AppState,
    session: &UiCaller,
    id: &str,
    form: OrderForm,
) -> Result<&'static str, ApiError> {
    let order = super::visible_order(state, &session.caller, id.to_string()).await?;
    if form.etag != etag(&order.heads) {
        return Err(ApiError::new(ErrorKind::PreconditionFailed, "stale form"));
    }
    let was = OrderForm::of(&order);
    let changed = |new: &str, old: &str| (new != old).then(|| new.to_string());
    let customer_changed = form.customer_name.trim() != was.customer_name
        || form.customer_address != was.customer_address
        || form.customer_phone != was.customer_phone;
    let patch = PatchWorkOrder {
        title: changed(form.title.trim(), &was.title),
        description: changed(&lines(&form.description), &was.description),
        priority: (form.priority.trim() != was.priority)
            .then(|| form.priority())
            .transpose()?,
        assignee: None,
        scheduled_for: match form.scheduled_for.trim() != was.scheduled_for {
            true => Some(scheduled_from_form(&form.scheduled_for)?.unwrap_or_default()),
            false => None,
        },
        customer: customer_changed.then(|| Customer {
            name: form.customer_name.trim().to_string(),
            address: form.customer_address.clone(),
            phone: form.customer_phone.clone(),
            document: order.customer.document.clone(),
        }),
    };
    if patch.title.is_some() && form.title.trim().is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "a work order needs a title",
        ));
    }
    let patch = match operator_patch(patch) {
        Ok(patch) => patch,
        // Nothing differs: nothing to write.
        Err(error) if error.kind == ErrorKind::InvalidBody => return Ok("unchanged"),
        Err(error) => return Err(error),
    };
    let operation = Operation::EditOperatorFields(patch);
    let if_match = Some(vec![form.etag]);
    apply_operation(
        state,
        session.caller.clone(),
        id.to_string(),
        if_match,
        operation,
    )
    .await?;
    Ok("saved")
}

#[derive(Deserialize)]
pub(super) struct AssignForm {
    #[serde(default)]
    assignee: String,
}

/// `POST /ui/work-orders/{id}/assign`: assign, reassign or unassign (an
/// operator edit of `assignee`, to an active technician).
pub(super) async fn assign(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Posted { session, form } = match posted::<AssignForm>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let assignee = Some(form.assignee.trim().to_string()).filter(|name| !name.is_empty());
    let result = set_field(&state, &session, &id, None, |patch| {
        patch.assignee = Some(assignee)
    })
    .await;
    answer(&state, client, &session, id, result).await
}

/// Write one operator edit (`fill` says of what) to work order `id`, at
/// version `if_match` when given; an assignee must be an active
/// technician.
async fn set_field(
    state: &AppState,
    session: &UiCaller,
    id: &str,
    if_match: Option<String>,
    fill: impl FnOnce(&mut PatchWorkOrder),
) -> Result<&'static str, ApiError> {
    let mut patch = PatchWorkOrder::default();
    fill(&mut patch);
    let assignee = patch.assignee.clone().flatten();
    state
        .blocking(move |store| check_assignee(store, assignee.as_deref()))
        .await?;
    check_id(id)?;
    let operation = Operation::EditOperatorFields(operator_patch(patch)?);
    let if_match = if_match.map(|tag| vec![tag]);
    apply_operation(
        state,
        session.caller.clone(),
        id.to_string(),
        if_match,
        operation,
    )
    .await?;
    Ok("saved")
}

/// A work-order id from a console URL; a malformed one is "not found".
fn check_id(id: &str) -> Result<(), ApiError> {
    fieldsync_node::store::validate_doc_id(id)
        .map_err(|_| ApiError::not_found("no such work order"))
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    #[serde(default)]
    note: String,
}

/// `POST /ui/work-orders/{id}/cancel`: the office's status transition
/// (REST's `POST .../status` with `cancelled`).
pub(super) async fn cancel(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Posted { session, form } = match posted::<CancelForm>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let operation = Operation::AppendStatus {
        at: now_rfc3339(),
        to: fieldsync_schemas::Status::Cancelled,
        note: lines(form.note.trim()),
    };
    let result = match check_id(&id) {
        Ok(()) => apply_operation(&state, session.caller.clone(), id.clone(), None, operation)
            .await
            .map(|_| "saved"),
        Err(error) => Err(error),
    };
    answer(&state, client, &session, id, result).await
}

#[derive(Deserialize)]
pub(super) struct MaterialForm {
    #[serde(default)]
    state: String,
}

/// `POST /ui/work-orders/{id}/materials/{material}`: approve or reject a
/// requested material (REST's `.../materials/{material_id}/state`).
pub(super) async fn material(
    State(state): State<AppState>,
    client: Client,
    Path((id, material)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Posted { session, form } = match posted::<MaterialForm>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let decided = match form.state.as_str() {
        "approved" => Ok(fieldsync_schemas::MaterialState::Approved),
        "rejected" => Ok(fieldsync_schemas::MaterialState::Rejected),
        _ => Err(ApiError::new(
            ErrorKind::InvalidValue,
            "approve or reject the material",
        )),
    };
    let result = match decided.and_then(|decided| check_id(&id).map(|()| decided)) {
        Ok(decided) => {
            let operation = Operation::SetMaterialState {
                id: material,
                state: decided,
            };
            apply_operation(&state, session.caller.clone(), id.clone(), None, operation)
                .await
                .map(|_| "saved")
        }
        Err(error) => Err(error),
    };
    answer(&state, client, &session, id, result).await
}

#[derive(Deserialize)]
pub(super) struct ResolveForm {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    etag: String,
}

/// `POST /ui/work-orders/{id}/resolve`: settle a conflicting field by
/// writing the chosen value as an operator edit of that field (of the
/// version the form showed).
pub(super) async fn resolve(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Posted { session, form } = match posted::<ResolveForm>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let result = resolve_field(&state, &session, &id, form).await;
    answer(&state, client, &session, id, result).await
}

async fn resolve_field(
    state: &AppState,
    session: &UiCaller,
    id: &str,
    form: ResolveForm,
) -> Result<&'static str, ApiError> {
    let order = super::visible_order(state, &session.caller, id.to_string()).await?;
    if !RESOLVABLE.contains(&form.field.as_str()) {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "this field cannot be settled here",
        ));
    }
    let value = form.value;
    let mut customer = Customer {
        name: order.customer.name.clone(),
        address: order.customer.address.clone(),
        phone: order.customer.phone.clone(),
        document: order.customer.document.clone(),
    };
    let priority = match form.field.as_str() {
        "priority" => Some(
            super::enum_from::<Priority>(Some(&value))
                .ok_or_else(|| ApiError::new(ErrorKind::InvalidValue, "not a priority"))?,
        ),
        _ => None,
    };
    let field = form.field.clone();
    set_field(
        state,
        session,
        id,
        Some(form.etag),
        move |patch| match field.as_str() {
            "title" => patch.title = Some(value),
            "description" => patch.description = Some(value),
            "priority" => patch.priority = priority,
            "assignee" => patch.assignee = Some(Some(value).filter(|name| !name.is_empty())),
            "scheduled_for" => patch.scheduled_for = Some(value),
            customer_field => {
                match customer_field {
                    "customer.name" => customer.name = value,
                    "customer.address" => customer.address = value,
                    "customer.phone" => customer.phone = value,
                    _ => customer.document = value,
                }
                patch.customer = Some(customer);
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_date_time_is_read_as_utc_and_shown_back() {
        assert_eq!(
            scheduled_from_form("2026-05-01T09:30").unwrap().as_deref(),
            Some("2026-05-01T09:30:00.000Z")
        );
        assert_eq!(scheduled_from_form(" ").unwrap(), None);
        assert!(scheduled_from_form("tomorrow").is_err());
        assert_eq!(
            scheduled_to_form(Some("2026-05-01T09:30:00.000Z")),
            "2026-05-01T09:30"
        );
        assert_eq!(scheduled_to_form(Some("soon")), "");
        assert_eq!(lines("a\r\nb\nc"), "a\nb\nc");
    }
}
