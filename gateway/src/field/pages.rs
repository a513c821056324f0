//! The app's pages, server-rendered with maud (which escapes every value
//! a customer or the office typed): the technician's list, a work
//! order's detail with its forms, and the plain pages (401, gone, 404).
//!
//! Why status words everywhere: the pages must read without colour, so a
//! status or a "changed" mark is always a word; colour only repeats it.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use fieldsync_node::store::{validate_doc_id, Store};
use fieldsync_schemas::{Collection, Status, WorkOrderView};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::local_state::{self, version_of, LocalState, Seen};
use super::session::{Session, FORM_FIELD};
use super::signature;
use super::state::FieldState;
use super::sync_bar;
use crate::auth::Caller;

/// Work orders on the list, at most.
const LIST_ENTRIES_MAX: usize = 200;
/// Documents looked at to build the list, at most.
const LIST_SCAN_DOCS_MAX: usize = 20_000;
/// Documents read per `doc_ids` call.
const LIST_CHUNK_IDS: usize = 256;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;font-size:1.05rem}
header{background:#1d2330;color:#fff;padding:.6rem 1rem}
header a{color:#cfe0ff} .sync{display:block;margin-top:.3rem;font-size:.95rem}
.sync[data-online=no] #sync-online{background:#8a1010;padding:0 .3rem}
main{padding:1rem;max-width:60rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #dde1e7;padding:.4rem;text-align:left;vertical-align:top}
.badge{padding:.1rem .4rem;border:1px solid #1d2330;border-radius:.3rem}
.changed,.new{font-weight:bold} #flash{background:#e2f5e2;padding:.5rem;border:1px solid #1f6b1f}
#error,.notice{background:#ffe9e0;padding:.5rem;border:1px solid #8a1010}
form{background:#fff;padding:.6rem;margin:.6rem 0;border:1px solid #dde1e7}
label{display:block;margin:.3rem 0} label.inline{display:inline-block}
input,select,textarea,button{font-size:1rem;padding:.4rem;max-width:100%;box-sizing:border-box}
input[type=text],input[type=number],textarea,select{width:100%}
button{min-height:2.5rem;padding:.4rem 1rem} :focus{outline:3px solid #2a62c9}
.pad{border:1px solid #1d2330;width:100%;max-width:600px;touch-action:none;background:#fff}
.signature{width:100%;max-width:600px;border:1px solid #dde1e7;background:#fff}
.columns{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
@media (max-width:900px){.columns{grid-template-columns:1fr}}
";

/// `/app.css`.
pub(super) async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// Every page's head: its title, the app's stylesheet, and (signed-in
/// pages only) the app's script.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · fieldsync" }
            link rel="stylesheet" href="/app.css";
            @if script { script src="/app.js" defer {} }
        }
    }
}

/// A page with no session details (401, wrong host, refused posts).
pub(super) fn plain_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body { main { h1 { (title) } (body) } }
        }
    }
}

/// A page for the signed-in technician: the sync bar, a flash or an
/// error, and `body`.
pub(super) fn page(
    state: &FieldState,
    title: &str,
    flash: Option<&str>,
    error: Option<&str>,
    body: Markup,
) -> Markup {
    let peers = state.sync().peers();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                header {
                    a href="/" { "My work orders" } " · " span id="user" { (state.user()) }
                    (sync_bar::bar(&peers, fieldsync_node::clock::now_ms()))
                }
                main {
                    @if let Some(flash) = flash { p id="flash" role="status" { (flash) } }
                    @if let Some(error) = error { p id="error" role="alert" { (error) } }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden token field every form carries.
pub(super) fn token_field(session: &Session) -> Markup {
    html! { input type="hidden" name=(FORM_FIELD) value=(session.form_token); }
}

/// A work order the technician may see now (`access::visible`), live.
pub(super) fn read_visible(
    store: &Store,
    caller: &Caller,
    id: &str,
) -> Result<Option<WorkOrderView>, String> {
    if validate_doc_id(id).is_err() {
        return Ok(None);
    }
    let Some(index) = store.doc_index(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if index.collection != Collection::WorkOrders || !caller.sees(&index) {
        return Ok(None);
    }
    let view = store.work_order(id).map_err(|e| e.to_string())?;
    Ok(view.filter(|view| {
        !view.deleted && caller.sees_document(&index, view.assignee.as_deref(), view.deleted)
    }))
}

/// The technician's open work orders (not completed or cancelled), by
/// schedule, unscheduled last; bounded by `LIST_ENTRIES_MAX`.
fn my_work_orders(store: &Store, caller: &Caller) -> Result<Vec<WorkOrderView>, String> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    let mut scanned = 0;
    while scanned < LIST_SCAN_DOCS_MAX && found.len() < LIST_ENTRIES_MAX {
        let ids = store
            .doc_ids(after.as_deref(), LIST_CHUNK_IDS)
            .map_err(|e| e.to_string())?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        scanned += ids.len();
        for id in ids {
            if let Some(view) = read_visible(store, caller, &id)? {
                if !view.status.is_terminal() && found.len() < LIST_ENTRIES_MAX {
                    found.push(view);
                }
            }
        }
        after = Some(last);
    }
    found.sort_by(|a, b| match (&a.scheduled_for, &b.scheduled_for) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.number.cmp(&b.number),
    });
    Ok(found)
}

/// "Today", "Upcoming", "Overdue" or "Not scheduled", for `today`
/// (`YYYY-MM-DD`, UTC).
fn when(scheduled_for: Option<&str>, today: &str) -> &'static str {
    match scheduled_for.map(|at| at.get(..10).unwrap_or(at)) {
        None => "Not scheduled",
        Some(day) if day == today => "Today",
        Some(day) if day > today => "Upcoming",
        Some(_) => "Overdue",
    }
}

pub(super) fn status_word(status: Status) -> &'static str {
    match status {
        Status::Open => "Open",
        Status::Assigned => "Assigned",
        Status::EnRoute => "En route",
        Status::InProgress => "In progress",
        Status::OnHold => "On hold",
        Status::Completed => "Completed",
        Status::Cancelled => "Cancelled",
    }
}

/// The message for a work order that left the laptop.
pub(super) fn gone_message(number: &str) -> String {
    format!("{number} was reassigned or withdrawn by the office; it is no longer on this laptop.")
}

/// A problem reading the store, as a page (503: the store is the node's).
pub(super) fn unavailable(state: &FieldState, reason: &str) -> Response {
    tracing::error!(reason, "field app: store read failed");
    let body = html! { p { "Try again in a moment; if it keeps happening, restart fieldsync." } };
    let error = "The laptop's store could not be read.";
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(state, "Not available", None, Some(error), body),
    )
        .into_response()
}

/// `/`: the list, with what changed since last looked and what left.
pub(super) async fn list(State(state): State<FieldState>) -> Response {
    let caller = state.caller();
    let user = state.user().to_string();
    let lock = state.local_lock();
    let read = state
        .blocking(move |store| {
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            let orders = my_work_orders(store, &caller)?;
            let mut local = local_state::load(store, &user).map_err(|e| e.to_string())?;
            let listed: BTreeSet<&str> = orders.iter().map(|order| order.id.as_str()).collect();
            let gone = forget_gone(store, &caller, &user, &mut local, &listed)?;
            Ok::<_, String>((orders, local, gone))
        })
        .await;
    let (orders, local, gone) = match read {
        Ok(read) => read,
        Err(super::state::BlockingError::Failed(reason)) => return unavailable(&state, &reason),
        Err(_) => return unavailable(&state, "store task failed"),
    };
    let today = fieldsync_node::clock::now_rfc3339();
    let today = today.get(..10).unwrap_or_default();
    let body = html! {
        @if !gone.is_empty() {
            div id="gone-notices" {
                @for number in &gone { p class="notice" role="status" { (gone_message(number)) } }
            }
        }
        @if orders.is_empty() { p id="no-work-orders" { "No open work orders for you." } }
        @else {
            table id="work-orders" {
                caption { "Open work orders assigned to you, by schedule" }
                tr { th scope="col" { "Work order" } th scope="col" { "When" } th scope="col" { "Status" } th scope="col" { "Customer" } th scope="col" { "Since you last looked" } }
                @for order in &orders {
                    tr id={ "wo-" (order.id) } {
                        td { a class="wo-link" href={ "/wo/" (order.id) } { (order.number) " — " (order.title) } }
                        td { (when(order.scheduled_for.as_deref(), today)) br; (order.scheduled_for.as_deref().unwrap_or("")) }
                        td { span class="badge" { (status_word(order.status)) } }
                        td { (order.customer.name) br; (order.customer.address) }
                        td { (changed_mark(&local, order)) }
                    }
                }
            }
        }
    };
    page(&state, "My work orders", None, None, body).into_response()
}

fn changed_mark(local: &LocalState, order: &WorkOrderView) -> Markup {
    match local.seen.get(&order.id) {
        None => html! { span class="new" { "New" } },
        Some(seen) if seen.version != version_of(&order.heads) => {
            html! { span class="changed" { "Changed since you last looked" } }
        }
        Some(_) => html! { "No change" },
    }
}

/// Drop from the state the work orders the technician last looked at that
/// are no longer visible (`listed`: ids just read as visible), and return their numbers (shown once, on the
/// list).
fn forget_gone(
    store: &Store,
    caller: &Caller,
    user: &str,
    local: &mut LocalState,
    listed: &BTreeSet<&str>,
) -> Result<Vec<String>, String> {
    let mut gone = BTreeSet::new();
    // A listed work order was just read as visible: only the others are
    // read again.
    for (id, seen) in local
        .seen
        .iter()
        .filter(|(id, _)| !listed.contains(id.as_str()))
    {
        if read_visible(store, caller, id)?.is_none() {
            gone.insert((id.clone(), seen.number.clone()));
        }
    }
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    for (id, _) in &gone {
        local.seen.remove(id);
        local.timers.remove(id);
    }
    local_state::save(store, user, local).map_err(|e| e.to_string())?;
    Ok(gone.into_iter().map(|(_, number)| number).collect())
}

/// What the detail page's address may carry: a flash after a save.
#[derive(Deserialize, Default)]
pub(super) struct DetailQuery {
    saved: Option<String>,
}

/// `/wo/{id}`: one work order, recorded as looked at.
pub(super) async fn detail(
    State(state): State<FieldState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    query: Result<Query<DetailQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let flash = query.ok().and_then(|Query(q)| q.saved).map(|_| "Saved");
    render_detail(&state, &session, &id, flash, None, StatusCode::OK).await
}

/// The detail page of `id` with `flash` or `error`, answered with
/// `status`; the plain "no longer on this laptop" page if it is not
/// visible.
pub(super) async fn render_detail(
    state: &FieldState,
    session: &Session,
    id: &str,
    flash: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let caller = state.caller();
    let user = state.user().to_string();
    let lock = state.local_lock();
    let wanted = id.to_string();
    let read = state
        .blocking(move |store| {
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut local = local_state::load(store, &user).map_err(|e| e.to_string())?;
            let Some(order) = read_visible(store, &caller, &wanted)? else {
                return Ok((None, local));
            };
            let seen = Seen {
                number: order.number.clone(),
                version: version_of(&order.heads),
                at_ms: fieldsync_node::clock::now_ms(),
            };
            if local.seen.get(&wanted).map(|s| (&s.number, &s.version))
                != Some((&seen.number, &seen.version))
            {
                local.seen.insert(wanted.clone(), seen);
                local_state::save(store, &user, &mut local).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>((Some(order), local))
        })
        .await;
    let (order, local) = match read {
        Ok(read) => read,
        Err(super::state::BlockingError::Failed(reason)) => return unavailable(state, &reason),
        Err(_) => return unavailable(state, "store task failed"),
    };
    let Some(order) = order else {
        return gone(state, id, &local);
    };
    let timer = local.timers.get(id).map(String::as_str);
    let title = format!("{} — {}", order.number, order.title);
    let body = super::actions::detail_body(&order, session, timer);
    (status, page(state, &title, flash, error, body)).into_response()
}

/// The plain page for a work order that is not (or no longer) visible:
/// named by the number last seen, else by its id.
fn gone(state: &FieldState, id: &str, local: &LocalState) -> Response {
    let number = local.seen.get(id).map_or_else(
        || id.chars().take(128).collect(),
        |seen| seen.number.clone(),
    );
    let body = html! {
        p id="gone" role="status" { (gone_message(&number)) }
        p { a href="/" { "Back to my work orders" } }
    };
    (
        StatusCode::NOT_FOUND,
        page(state, "Not on this laptop", None, None, body),
    )
        .into_response()
}

/// Any other address.
pub(super) async fn not_found(State(state): State<FieldState>) -> Response {
    let body = html! { p id="not-found" { "There is no such page. " a href="/" { "Back to my work orders" } } };
    (
        StatusCode::NOT_FOUND,
        page(&state, "No such page", None, None, body),
    )
        .into_response()
}

/// The closure, with its signature, for the detail page.
pub(super) fn closure(order: &WorkOrderView) -> Markup {
    html! {
        @if let Some(closure) = &order.closure {
            section id="closure" {
                h2 { "Closure" }
                p { (closure.resolution) }
                p { "Closed " (closure.at) " by " (closure.by) ", signed by " (closure.signed_by) }
                @if !closure.signature.is_empty() { (signature::show(&closure.signature)) }
                @else { p { "No drawn signature." } }
            }
        }
    }
}
