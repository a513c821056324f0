//! The detail page's forms and what their posts do. Every post is checked
//! (session by `guard.rs`, then its form token here), turned into one of
//! the node's typed operations and applied as the technician through
//! `Store::edit_work_order`, which checks visibility and the field rules
//! and returns after the durable flush; then 303 to the detail page with
//! "Saved". A refusal re-renders the page with a sentence a person
//! understands and the matching status (403, 409, 422), never a 500.

use axum::extract::{rejection::FormRejection, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use fieldsync_node::doc::{OpError, Operation};
use fieldsync_node::store::WriteError;
use fieldsync_schemas::{Status, WorkOrderView};
use maud::{html, Markup};
use serde::Deserialize;

use super::local_state;
use super::pages::{self, closure, render_detail, status_word, token_field};
use super::session::Session;
use super::signature;
use super::state::{BlockingError, FieldState};
use crate::clock::{now_rfc3339, now_s};

/// The transitions the field offers (completion goes through closure).
const FIELD_STATUSES: [Status; 3] = [Status::EnRoute, Status::InProgress, Status::OnHold];

/// Why an action was not saved.
enum Refusal {
    /// The work order is not (or no longer) the technician's.
    Gone,
    /// Say `message` with `status`.
    Said(StatusCode, String),
}

fn said(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal::Said(status, message.into())
}

/// A refused typed operation, in words.
fn op_refusal(error: OpError) -> Refusal {
    match error {
        OpError::NotAssignee | OpError::Deleted => Refusal::Gone,
        OpError::Forbidden { field, .. } => said(
            StatusCode::FORBIDDEN,
            format!(
                "You can't change the {} from the field; ask the office.",
                field.replace('_', " ")
            ),
        ),
        OpError::StatusNotAllowed(status) => said(
            StatusCode::FORBIDDEN,
            format!(
                "You can't set a work order to “{}” from the field; the office does that.",
                status_word(status)
            ),
        ),
        OpError::NoSuchMaterial(_) => said(
            StatusCode::CONFLICT,
            "That material is not on this work order.",
        ),
        OpError::Invalid { field, reason } => said(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The {} was not saved: {reason}.", field.replace('_', " ")),
        ),
        OpError::Automerge(error) => {
            tracing::error!(%error, "field app: document error");
            said(
                StatusCode::SERVICE_UNAVAILABLE,
                "The work order could not be changed; try again.",
            )
        }
    }
}

fn write_refusal(error: WriteError) -> Refusal {
    match error {
        WriteError::NotFound(_) | WriteError::InvalidId(_) => Refusal::Gone,
        WriteError::Op(error) => op_refusal(error),
        other => {
            tracing::error!(error = %other, "field app: store write failed");
            said(
                StatusCode::SERVICE_UNAVAILABLE,
                "The laptop's store could not save this; nothing was saved. Try again.",
            )
        }
    }
}

/// Apply `operation` to `id` as the technician, durably.
async fn apply(state: &FieldState, id: &str, operation: Operation) -> Result<(), Refusal> {
    let caller = state.caller();
    let id = id.to_string();
    let done = state
        .blocking(move |store| {
            if fieldsync_node::store::validate_doc_id(&id).is_err() {
                return Err(WriteError::NotFound(id));
            }
            store.edit_work_order(&id, |document| {
                // Visibility first: a work order the technician may not
                // see is "not on this laptop", whatever the action.
                let index = store
                    .doc_index(&id)?
                    .ok_or_else(|| WriteError::NotFound(id.clone()))?;
                if !caller.sees_document(
                    &index,
                    document.assignee().as_deref(),
                    document.is_deleted(),
                ) {
                    return Err(WriteError::Op(OpError::NotAssignee));
                }
                Ok(document.apply(&caller.actor(), &operation, now_s() as i64)?)
            })
        })
        .await;
    match done {
        Ok(_) => Ok(()),
        Err(BlockingError::Failed(error)) => Err(write_refusal(error)),
        Err(BlockingError::Panicked) => Err(said(
            StatusCode::SERVICE_UNAVAILABLE,
            "The laptop's store could not save this; try again.",
        )),
    }
}

/// The answer to a post: 303 to the detail page with "Saved", or the page
/// again with the refusal.
async fn answer(
    state: &FieldState,
    session: &Session,
    id: &str,
    result: Result<(), Refusal>,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&format!("/wo/{}?saved=1", urlencode(id))).into_response(),
        Err(Refusal::Gone) => render_detail(state, session, id, None, None, StatusCode::OK).await,
        Err(Refusal::Said(status, message)) => {
            render_detail(state, session, id, None, Some(&message), status).await
        }
    }
}

/// Ids are `[A-Za-z0-9_-]` (`validate_doc_id`); anything else is dropped.
fn urlencode(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Every form's token, checked against the session.
trait Tokened {
    fn token(&self) -> &str;
}

/// The form of a post whose token matches the session, or the refusal.
fn checked<F: Tokened>(
    state: &FieldState,
    session: &Session,
    form: Result<Form<F>, FormRejection>,
) -> Result<F, Refusal> {
    let Form(form) = form.map_err(|rejection| {
        said(
            rejection.status(),
            "The form could not be read (too large, or not a form); nothing was saved.",
        )
    })?;
    if !state.key().form_token_matches(session, form.token()) {
        tracing::warn!("field app: post without a valid form token refused");
        return Err(said(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from the field app; nothing was saved. Try again.",
        ));
    }
    Ok(form)
}

macro_rules! tokened {
    ($($name:ident),*) => { $(impl Tokened for $name { fn token(&self) -> &str { &self.csrf_token } })* };
}

#[derive(Deserialize)]
pub(super) struct TextForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
pub(super) struct MaterialForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    qty: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    csrf_token: String,
}

#[derive(Deserialize)]
pub(super) struct StatusForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
pub(super) struct CloseForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    resolution: String,
    #[serde(default)]
    signed_by: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    no_signature: Option<String>,
}

/// The office's fields, as a crafted post (or a future form) would send
/// them: the app shows no such form, yet answers one in words.
#[derive(Deserialize)]
pub(super) struct EditForm {
    #[serde(default)]
    csrf_token: String,
    title: Option<String>,
    description: Option<String>,
    customer_name: Option<String>,
    customer_address: Option<String>,
    customer_phone: Option<String>,
}

tokened!(
    TextForm,
    MaterialForm,
    TokenForm,
    StatusForm,
    CloseForm,
    EditForm
);

/// The path of every action that is one typed operation: the form's token
/// checked, the form turned into the operation (or refused in words), the
/// operation applied durably, the page answered.
async fn act<F: Tokened>(
    state: FieldState,
    session: Session,
    id: String,
    form: Result<Form<F>, FormRejection>,
    operation: impl FnOnce(F) -> Result<Operation, Refusal>,
) -> Response {
    let result = match checked(&state, &session, form).and_then(operation) {
        Ok(operation) => apply(&state, &id, operation).await,
        Err(refusal) => Err(refusal),
    };
    answer(&state, &session, &id, result).await
}

/// An edit of the office's fields. The app offers no form for it; a post
/// that asks anyway goes through the same typed operation as the office's
/// edit, as this technician, and the field rules refuse it in words ("You
/// can't change the customer from the field"): the rules, not the screen,
/// decide what the field may write.
pub(super) async fn edit_fields(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<EditForm>, FormRejection>,
) -> Response {
    act(state, session, id, form, |form| {
        let customer = (form.customer_name.is_some()
            || form.customer_address.is_some()
            || form.customer_phone.is_some())
        .then(|| fieldsync_schemas::Customer {
            name: form.customer_name.unwrap_or_default(),
            address: form.customer_address.unwrap_or_default(),
            phone: form.customer_phone.unwrap_or_default(),
            document: String::new(),
        });
        Ok(Operation::EditOperatorFields(
            fieldsync_schemas::OperatorPatch {
                title: form.title,
                description: form.description,
                customer,
                ..fieldsync_schemas::OperatorPatch::default()
            },
        ))
    })
    .await
}

pub(super) async fn add_note(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<TextForm>, FormRejection>,
) -> Response {
    act(state, session, id, form, |form| {
        if form.text.trim().is_empty() {
            return Err(said(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Write the note first.",
            ));
        }
        Ok(Operation::AddNote {
            id: uuid::Uuid::new_v4().to_string(),
            at: now_rfc3339(),
            text: form.text,
        })
    })
    .await
}

pub(super) async fn request_material(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<MaterialForm>, FormRejection>,
) -> Response {
    act(state, session, id, form, |form| {
        match form.qty.trim().parse::<f64>() {
            Ok(qty) if qty.is_finite() && qty > 0.0 && !form.sku.trim().is_empty() => {
                let unit = if form.unit.trim().is_empty() {
                    "pc".to_string()
                } else {
                    form.unit
                };
                Ok(Operation::RequestMaterial {
                    id: uuid::Uuid::new_v4().to_string(),
                    at: now_rfc3339(),
                    sku: form.sku.trim().to_string(),
                    qty,
                    unit,
                    description: form.description,
                })
            }
            _ => Err(said(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Give the material's code and a quantity above 0 (e.g. 2 or 1.5).",
            )),
        }
    })
    .await
}

pub(super) async fn edit_report(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<TextForm>, FormRejection>,
) -> Response {
    // EditReport stores a minimal splice: the office's concurrent edits to
    // other parts of the report survive the merge.
    act(state, session, id, form, |form| {
        Ok(Operation::EditReport {
            text: form.text.replace("\r\n", "\n"),
        })
    })
    .await
}

pub(super) async fn set_status(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<StatusForm>, FormRejection>,
) -> Response {
    // Any status parses; the typed operation decides which the field may
    // set (a forged `cancelled` is refused there, in words).
    act(state, session, id, form, |form| {
        match form.to.parse::<Status>() {
            Ok(to) => Ok(Operation::AppendStatus {
                at: now_rfc3339(),
                to,
                note: form.note,
            }),
            Err(_) => Err(said(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose a status from the list.",
            )),
        }
    })
    .await
}

pub(super) async fn close(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<CloseForm>, FormRejection>,
) -> Response {
    act(state, session, id, form, close_operation).await
}

fn close_operation(form: CloseForm) -> Result<Operation, Refusal> {
    let unprocessable = |message: String| said(StatusCode::UNPROCESSABLE_ENTITY, message);
    if form.resolution.trim().is_empty() || form.signed_by.trim().is_empty() {
        return Err(unprocessable(
            "Write the resolution and the name of the person signing.".into(),
        ));
    }
    let (at, resolution, signed_by) = (now_rfc3339(), form.resolution, form.signed_by);
    if form.signature.is_empty() {
        if form.no_signature.is_none() {
            return Err(unprocessable(
                "Ask the customer to sign in the box, or tick “The customer could not sign”."
                    .into(),
            ));
        }
        return Ok(Operation::Close {
            at,
            resolution,
            signed_by,
            signature: String::new(),
        });
    }
    if let Some(problem) = signature::problem(&form.signature) {
        return Err(unprocessable(problem));
    }
    Ok(Operation::Close {
        at,
        resolution,
        signed_by,
        signature: form.signature,
    })
}

pub(super) async fn start_time(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    timer_action(state, session, id, form, true).await
}

pub(super) async fn stop_time(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    timer_action(state, session, id, form, false).await
}

async fn timer_action(
    state: FieldState,
    session: Session,
    id: String,
    form: Result<Form<TokenForm>, FormRejection>,
    start: bool,
) -> Response {
    let result = match checked(&state, &session, form) {
        Ok(_) => timer(&state, &id, start).await,
        Err(refusal) => Err(refusal),
    };
    answer(&state, &session, &id, result).await
}

/// Start a timer (kept in the local state until stopped), or stop it: the
/// time entry `start`–now goes into the work order, then the timer is
/// dropped (a crash in between leaves it running, never loses the entry).
async fn timer(state: &FieldState, id: &str, start: bool) -> Result<(), Refusal> {
    let caller = state.caller();
    let (user, lock, wanted) = (state.user().to_string(), state.local_lock(), id.to_string());
    let started = state
        .blocking(move |store| {
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            let store_failed = |e: String| said(StatusCode::SERVICE_UNAVAILABLE, e);
            if pages::read_visible(store, &caller, &wanted)
                .map_err(store_failed)?
                .is_none()
            {
                return Err(Refusal::Gone);
            }
            let mut local =
                local_state::load(store, &user).map_err(|e| store_failed(e.to_string()))?;
            let running = local.timers.get(&wanted).cloned();
            match (start, running) {
                (true, Some(_)) => Err(said(StatusCode::CONFLICT, "The timer is already running.")),
                (false, None) => Err(said(
                    StatusCode::CONFLICT,
                    "No timer is running for this work order.",
                )),
                (true, None) => {
                    local.timers.insert(wanted, now_rfc3339());
                    local_state::save(store, &user, &mut local)
                        .map_err(|e| store_failed(e.to_string()))?;
                    Ok(None)
                }
                (false, Some(started)) => Ok(Some(started)),
            }
        })
        .await
        .map_err(|error| match error {
            BlockingError::Failed(refusal) => refusal,
            BlockingError::Panicked => said(StatusCode::SERVICE_UNAVAILABLE, "Try again."),
        })?;
    let Some(started) = started else {
        return Ok(());
    };
    apply(
        state,
        id,
        Operation::AppendTime {
            start: started,
            end: now_rfc3339(),
        },
    )
    .await?;
    let (user, lock, wanted) = (state.user().to_string(), state.local_lock(), id.to_string());
    state
        .blocking(move |store| {
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut local = local_state::load(store, &user)?;
            local.timers.remove(&wanted);
            local_state::save(store, &user, &mut local)
        })
        .await
        .map_err(|_| {
            said(
                StatusCode::SERVICE_UNAVAILABLE,
                "The time was saved, but the timer could not be reset; stop it again later.",
            )
        })
}

/// The detail page's content: the work order, its history and the forms.
pub(super) fn detail_body(order: &WorkOrderView, session: &Session, timer: Option<&str>) -> Markup {
    let base = format!("/wo/{}", urlencode(&order.id));
    let open = !order.status.is_terminal();
    html! {
        p { "Status: " strong id="wo-status" class="badge" { (status_word(order.status)) } }
        table {
            tr { th scope="row" { "Customer" } td { (order.customer.name) br; (order.customer.address) br; (order.customer.phone) } }
            tr { th scope="row" { "Scheduled" } td { (order.scheduled_for.as_deref().unwrap_or("Not scheduled")) } }
            tr { th scope="row" { "Priority" } td { (order.priority.as_str()) } }
            tr { th scope="row" { "Description" } td { (order.description) } }
        }
        div class="columns" {
            div {
                (history(order))
            }
            div {
                @if open { (forms(order, session, timer, &base)) }
                (closure(order))
            }
        }
    }
}

fn history(order: &WorkOrderView) -> Markup {
    html! {
        section id="notes" {
            h2 { "Notes" }
            @if order.notes.is_empty() { p { "No notes yet." } }
            @for note in &order.notes { p { strong { (note.by) } " · " (note.at) br; (note.text) } }
        }
        section id="materials" {
            h2 { "Materials" }
            @if order.materials.is_empty() { p { "No materials requested." } }
            @for material in &order.materials {
                p { (material.qty) " " (material.unit) " × " (material.sku) " " (material.description) " — " (material.state.as_str()) }
            }
        }
        section id="time" {
            h2 { "Time" }
            @if order.time_log.is_empty() { p { "No time logged." } }
            @for entry in &order.time_log { p { (entry.by) ": " (entry.start) " to " (entry.end) } }
        }
        section id="status-log" {
            h2 { "Status history" }
            @for entry in &order.status_log { p { (entry.at) " · " (status_word(entry.to)) " by " (entry.by) @if !entry.note.is_empty() { " — " (entry.note) } } }
        }
    }
}

fn forms(order: &WorkOrderView, session: &Session, timer: Option<&str>, base: &str) -> Markup {
    html! {
        form id="note-form" name="note" method="post" action={ (base) "/note" } {
            (token_field(session))
            label for="note-text" { "Add a note" }
            textarea id="note-text" name="text" rows="3" required {}
            button type="submit" { "Add note" }
        }
        form id="material-form" name="material" method="post" action={ (base) "/material" } {
            (token_field(session))
            h2 { "Request material" }
            label for="material-sku" { "Material code (SKU)" } input type="text" id="material-sku" name="sku" required;
            label for="material-qty" { "Quantity" } input type="number" id="material-qty" name="qty" min="0" step="any" required;
            label for="material-unit" { "Unit" } input type="text" id="material-unit" name="unit" value="pc";
            label for="material-description" { "Description" } input type="text" id="material-description" name="description";
            button type="submit" { "Request material" }
        }
        form id="report-form" name="report" method="post" action={ (base) "/report" } {
            (token_field(session))
            label for="report-text" { "Technical report" }
            textarea id="report-text" name="text" rows="8" { (order.report) }
            button type="submit" { "Save report" }
        }
        @if let Some(started) = timer {
            form id="time-stop-form" name="time-stop" method="post" action={ (base) "/time/stop" } {
                (token_field(session))
                p id="timer" { "Timer running since " (started) "." }
                button type="submit" { "Stop timer" }
            }
        } @else {
            form id="time-start-form" name="time-start" method="post" action={ (base) "/time/start" } {
                (token_field(session))
                p id="timer" { "No timer running." }
                button type="submit" { "Start timer" }
            }
        }
        form id="status-form" name="status" method="post" action={ (base) "/status" } {
            (token_field(session))
            label for="status-to" { "Change status to" }
            select id="status-to" name="to" {
                @for status in FIELD_STATUSES { option value=(status.as_str()) selected[status == order.status] { (status_word(status)) } }
            }
            label for="status-note" { "Note (optional)" } input type="text" id="status-note" name="note";
            button type="submit" { "Change status" }
        }
        form id="close-form" name="close" method="post" action={ (base) "/close" } {
            (token_field(session))
            h2 { "Close the work order" }
            label for="close-resolution" { "Resolution" } textarea id="close-resolution" name="resolution" rows="3" required {}
            label for="close-signed-by" { "Name of the person signing" } input type="text" id="close-signed-by" name="signed_by" required;
            (signature::pad())
            button type="submit" { "Close work order" }
        }
    }
}
