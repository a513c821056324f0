//! The web UI: server-rendered HTML (maud) for sign-in, the work-order
//! list and detail, peers, the changes feed and the record collections,
//! and the **office console** where operators create, edit, assign and
//! cancel work orders, approve materials, resolve conflicts and manage
//! users (`console.rs`, `people.rs`; a work order's page follows changes
//! live, `live.rs`).
//!
//! Why server-rendered: nothing to build or bundle, and maud escapes every
//! interpolated value at compile time, so data typed by a customer or a
//! technician cannot become markup. The session is the same JWT the API
//! issues, kept in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` when
//! clients come over HTTPS, `edge.rs`); the API itself never accepts the
//! cookie (bearer tokens only), so cross-site requests cannot ride it.
//! Every form that changes state (sign-in, sign-out, the console's)
//! carries a token another site cannot forge (`csrf.rs`), and the
//! console's forms call the same functions as the REST API
//! (`api::work_orders::create_order`, `apply_operation`,
//! `api::users::add_user`, `revoke`), so the field rules, checks and
//! durability are the API's. The only script is `static/live.js`, served
//! from here (`script-src 'self'`, no inline script).
//!
//! Stable element ids and names (for browser tests):
//!
//! - every page: `flash` (the message box after a post: "Done: ..." or
//!   "Not saved: ..."), the nav links `nav-work-orders`, `nav-users`, the
//!   form `sign-out`;
//! - `/ui/work-orders`: the filter form `filters` (fields `status`,
//!   `priority`, `assignee`, `deleted`), the table `work-orders` (one row
//!   `wo-{id}` per work order), the link `new-work-order`, `next-page`;
//! - `/ui/work-orders/new`: form `create-work-order` with fields
//!   `customer_name`, `customer_address`, `customer_phone`, `title`,
//!   `description`, `priority`, `scheduled_for` (local date-time, read as
//!   UTC), `assignee`;
//! - `/ui/work-orders/{id}`: `wo-number`, `wo-status`, the forms
//!   `edit-work-order` (the fields above but `assignee`, and the hidden
//!   `etag`), `assign` (`assignee`), `cancel` (`note`),
//!   `approve-material-{n}` and `reject-material-{n}` (`n` the material's
//!   row, from 1, in the `materials` table), `resolve-conflict-{field}`
//!   (`field` with `.` as `-`, e.g. `resolve-conflict-customer-phone`;
//!   radio `value`), the tables `materials`, `conflicts`, and `live` (the
//!   live-update notice);
//! - `/ui/users`: the table `users` (rows `user-{id}`), the forms
//!   `add-technician` (`id`), `add-client` (`id`, checkboxes `scopes`),
//!   `revoke-{id}`; after adding, the outputs `enroll-code`, `central-id`,
//!   `sync-address`, `enroll-command` (technician) or `client-id`,
//!   `client-secret` (client), shown once.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use crate::api::model::{Status, WorkOrder, WorkOrderQuery};
use crate::api::work_orders::list;
use crate::auth::{authenticate_token, peer_key, Caller};
use crate::edge::Client;
use crate::error::ApiError;
use crate::feed::read_page;
use crate::state::AppState;

mod console;
mod csrf;
mod delivery;
mod forms;
mod live;
mod people;

use forms::Flash;

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "fieldsync_session";
/// Work orders per UI page.
const UI_PAGE_SIZE: usize = 50;
/// Changes shown on the UI's feed page.
const UI_FEED_ENTRIES: usize = 100;

pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/work-orders") }))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/ui/work-orders", get(work_orders).post(console::create))
        .route("/ui/work-orders/new", get(console::new_page))
        .route("/ui/work-orders/{id}", get(work_order))
        .route("/ui/work-orders/{id}/edit", post(console::edit))
        .route("/ui/work-orders/{id}/assign", post(console::assign))
        .route("/ui/work-orders/{id}/cancel", post(console::cancel))
        .route(
            "/ui/work-orders/{id}/materials/{material}",
            post(console::material),
        )
        .route("/ui/work-orders/{id}/resolve", post(console::resolve))
        .route("/ui/work-orders/{id}/version", get(live::version))
        .route("/ui/static/live.js", get(live::script))
        .route("/ui/users", get(people::users))
        .route("/ui/users/technicians", post(people::add_technician))
        .route("/ui/users/clients", post(people::add_client))
        .route("/ui/users/{id}/revoke", post(people::revoke))
        .route("/ui/peers", get(peers))
        .route("/ui/changes", get(changes))
        .route("/ui/collections", get(collections))
        .route("/ui/webhooks", get(delivery::webhooks))
        .route("/ui/commands", get(delivery::commands_page))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The UI's own policy (its inline style, its one script file from this
/// origin, which fetches only from it) and no caching of its pages;
/// the headers every response carries (`nosniff`, `DENY`, no referrer,
/// HSTS) are `edge.rs`'s.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of cookie `name` in `headers`, if sent (the console's and
/// the field app's cookies alike).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value)
}

/// Whether the UI's cookies are `Secure` for this client: when it came
/// over HTTPS (TLS here, an https public URL, a trusted proxy's word), or
/// always with `cookie_secure`.
fn secure_cookies(state: &AppState, client: Client) -> bool {
    client.https || state.config().cookie_secure
}

/// A `Set-Cookie` value for one of the UI's cookies (an empty `value`
/// with `max_age_s` 0 removes it).
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age_s: u64,
    secure: bool,
) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
    ))
    .ok()
}

/// The signed-in user of a UI request, and the token the sign-out form of
/// its pages carries (bound to its session cookie); otherwise a redirect
/// to sign-in.
struct UiCaller {
    caller: Caller,
    sign_out_token: String,
    /// The token every console form carries (bound to the session too).
    console_token: String,
    /// What the flash cookie asks the next page to say.
    flash: Option<Flash>,
}

impl UiCaller {
    /// The signed-in user of a request with these headers, if any.
    fn from_headers(headers: &HeaderMap, state: &AppState) -> Option<UiCaller> {
        let session = cookie(headers, SESSION_COOKIE)?;
        let caller = authenticate_token(state, session).ok()?;
        let key = state.tokens().form_key();
        Some(UiCaller {
            caller,
            sign_out_token: csrf::token(key, csrf::Form::SignOut, session),
            console_token: csrf::token(key, csrf::Form::Console, session),
            flash: Flash::from_headers(headers),
        })
    }
}

impl FromRequestParts<AppState> for UiCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        UiCaller::from_headers(&parts.headers, state)
            .ok_or_else(|| Redirect::to("/sign-in").into_response())
    }
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfe0ff;text-decoration:none} header form{margin-left:auto}
main{padding:1rem 1.2rem;max-width:72rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #dde1e7;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5} .badge{padding:.1rem .4rem;border-radius:.3rem;background:#e3e8f0}
.conflict{background:#ffe1e1;color:#8a1010} .error{color:#8a1010}
form.filters{display:flex;gap:.6rem;margin:.6rem 0;flex-wrap:wrap;align-items:end}
label{display:flex;flex-direction:column;font-size:.85rem}
section{margin:1rem 0} pre{white-space:pre-wrap;background:#fff;padding:.6rem}
header{flex-wrap:wrap} a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #2b6cd4;outline-offset:1px}
.flash{padding:.6rem .8rem;margin:.6rem 0;border:2px solid;border-radius:.3rem;background:#fff}
.flash.done{border-color:#1d7a3a} .flash.problem{border-color:#8a1010}
form.console{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.6rem;background:#fff;padding:.8rem;margin:.6rem 0}
form.console .wide{grid-column:1/-1} form.inline{display:inline-flex;gap:.4rem;align-items:end;margin:0}
input,select,textarea,button{font:inherit;padding:.45rem;min-height:2.6rem;box-sizing:border-box}
textarea{min-height:6rem} button{cursor:pointer} .secret{font-size:1.3rem;background:#fff;padding:.3rem .5rem;border:1px dashed #1d2330}
.notice{padding:.6rem;background:#fff7d6;border:2px solid #8a6d00} .table-wrap{overflow-x:auto}
svg.signature{width:100%;max-width:30rem;background:#fff;border:1px solid #dde1e7}
@media (max-width:900px){main{padding:.6rem} th,td{padding:.5rem .4rem} form.console{grid-template-columns:1fr}}
";

fn page(title: &str, session: Option<&UiCaller>, body: Markup) -> Markup {
    page_with(title, session, None, body)
}

/// [`page`] with `flash` in a box above the body.
fn page_with(
    title: &str,
    session: Option<&UiCaller>,
    flash: Option<&Flash>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fieldsync" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "fieldsync" }
                    @if let Some(UiCaller { caller, sign_out_token, .. }) = session {
                        a #nav-work-orders href="/ui/work-orders" { "Work orders" }
                        a href="/ui/changes" { "Changes" }
                        a href="/ui/collections" { "Collections" }
                        a href="/ui/webhooks" { "Webhooks" }
                        @if caller.role != fieldsync_schemas::Role::Technician {
                            a href="/ui/commands" { "Commands" }
                        }
                        @if caller.role == fieldsync_schemas::Role::Operator {
                            a #nav-users href="/ui/users" { "Users" }
                            a href="/ui/peers" { "Peers" }
                        }
                        form #sign-out method="post" action="/sign-out" {
                            input type="hidden" name=(csrf::FIELD) value=(sign_out_token);
                            span { (caller.user_id) " (" (caller.role.as_str()) ") " }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(flash) = flash { (flash.render()) }
                    (body)
                }
            }
        }
    }
}

fn error_page(status: StatusCode, session: Option<&UiCaller>, error: &ApiError) -> Response {
    let body = html! { p.error { (error.detail) } };
    (status, page(error.kind.title(), session, body)).into_response()
}

async fn sign_in_page(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    sign_in_form(&state, client, &headers, StatusCode::OK, None)
}

/// The sign-in page with `status` and `message`: its token is bound to the
/// browser's sign-in nonce (the one it holds, else a new one, set in the
/// response).
fn sign_in_form(
    state: &AppState,
    client: Client,
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<&str>,
) -> Response {
    let secure = secure_cookies(state, client);
    let name = csrf::nonce_cookie(secure);
    let nonce = cookie(headers, name)
        .filter(|nonce| csrf::is_nonce(nonce))
        .map_or_else(csrf::new_nonce, str::to_string);
    let token = csrf::token(state.tokens().form_key(), csrf::Form::SignIn, &nonce);
    let body = page(
        "Sign in",
        None,
        html! {
            @if let Some(message) = message { p.error { (message) } }
            form method="post" action="/sign-in" {
                input type="hidden" name=(csrf::FIELD) value=(token);
                label { "User or client id" input name="client_id" autocomplete="username" required; }
                label { "Secret" input name="client_secret" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    );
    let mut response = (status, body).into_response();
    if let Some(value) = set_cookie(name, &nonce, csrf::NONCE_MAX_AGE_S, secure) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// What the sign-in form posts. Every field may be missing, so a post
/// without a token is told so (403), not that a field is missing.
#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
}

/// What the sign-out form posts.
#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf_token: String,
}

/// The form of `request`, or `None` when its body is not one.
async fn form_of<T: serde::de::DeserializeOwned>(request: Request, state: &AppState) -> Option<T> {
    axum::Form::<T>::from_request(request, state)
        .await
        .ok()
        .map(|axum::Form(form)| form)
}

const FORGED_SIGN_IN: &str =
    "This sign-in form has expired or did not come from this site. Sign in again.";

async fn sign_in(State(state): State<AppState>, client: Client, request: Request) -> Response {
    let peer = peer_key(&request);
    let headers = request.headers().clone();
    let form: Option<SignInForm> = form_of(request, &state).await;
    // The token first: a forged or stale post is refused before any
    // credential is looked at (or any failure budget charged).
    let secure = secure_cookies(&state, client);
    let genuine = csrf::same_origin(&headers)
        && match (cookie(&headers, csrf::nonce_cookie(secure)), &form) {
            (Some(nonce), Some(form)) => csrf::check(
                state.tokens().form_key(),
                csrf::Form::SignIn,
                nonce,
                &form.csrf_token,
            ),
            _ => false,
        };
    let form = match form {
        Some(form) if genuine => form,
        _ => {
            tracing::warn!(%peer, "sign-in refused: no valid form token");
            return sign_in_form(
                &state,
                client,
                &headers,
                StatusCode::FORBIDDEN,
                Some(FORGED_SIGN_IN),
            );
        }
    };
    if form.client_id.is_empty() || form.client_secret.is_empty() {
        return sign_in_form(
            &state,
            client,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("Fill in both fields."),
        );
    }
    match crate::oauth::issue(&state, &peer, &form.client_id, &form.client_secret, None).await {
        Ok(issued) => {
            let mut response = Redirect::to("/ui/work-orders").into_response();
            let cookies = [
                set_cookie(
                    SESSION_COOKIE,
                    &issued.response.access_token,
                    issued.response.expires_in,
                    secure,
                ),
                // The nonce did its work; the next sign-in gets a new one.
                set_cookie(csrf::nonce_cookie(secure), "", 0, secure),
            ];
            for value in cookies.into_iter().flatten() {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => {
            let status = error.kind.status();
            let message = if status == StatusCode::TOO_MANY_REQUESTS {
                "Too many attempts; wait a minute."
            } else {
                "Unknown user or wrong secret."
            };
            sign_in_form(&state, client, &headers, status, Some(message))
        }
    }
}

async fn sign_out(State(state): State<AppState>, client: Client, request: Request) -> Response {
    let headers = request.headers().clone();
    let secure = secure_cookies(&state, client);
    let signed_out = || {
        let mut response = Redirect::to("/sign-in").into_response();
        if let Some(value) = set_cookie(SESSION_COOKIE, "", 0, secure) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        response
    };
    // No session: nothing to sign out of.
    let Some(session) = cookie(&headers, SESSION_COOKIE).map(str::to_string) else {
        return signed_out();
    };
    let form: Option<SignOutForm> = form_of(request, &state).await;
    let genuine = csrf::same_origin(&headers)
        && form.is_some_and(|form| {
            csrf::check(
                state.tokens().form_key(),
                csrf::Form::SignOut,
                &session,
                &form.csrf_token,
            )
        });
    if !genuine {
        tracing::warn!(peer = ?client.ip, "sign-out refused: no valid form token");
        let error = ApiError::forbidden(
            "This sign-out form has expired or did not come from this site; \
             use the Sign out button above.",
        );
        let session = UiCaller::from_headers(&headers, &state);
        return error_page(StatusCode::FORBIDDEN, session.as_ref(), &error);
    }
    signed_out()
}

/// The list's filter form: empty fields mean "any" (the REST list's
/// filters: `GET /api/v1/work-orders`).
#[derive(Deserialize, Default)]
struct ListForm {
    status: Option<String>,
    assignee: Option<String>,
    priority: Option<String>,
    /// `on`: list deleted (tombstoned) work orders instead.
    deleted: Option<String>,
    cursor: Option<String>,
}

impl ListForm {
    /// The REST query these filters stand for.
    fn query(&self) -> WorkOrderQuery {
        WorkOrderQuery {
            status: enum_from(non_empty(&self.status)),
            assignee: non_empty(&self.assignee).map(str::to_string),
            priority: enum_from(non_empty(&self.priority)),
            deleted: Some(self.wants_deleted()),
            cursor: None,
            page_size: Some(UI_PAGE_SIZE),
        }
    }

    fn wants_deleted(&self) -> bool {
        non_empty(&self.deleted).is_some()
    }

    /// The query string of these filters (for the next page's link).
    fn filters_query(&self) -> String {
        format!(
            "status={}&priority={}&assignee={}{}",
            url_part(non_empty(&self.status).unwrap_or("")),
            url_part(non_empty(&self.priority).unwrap_or("")),
            url_part(non_empty(&self.assignee).unwrap_or("")),
            if self.wants_deleted() {
                "&deleted=on"
            } else {
                ""
            }
        )
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

fn enum_from<T: serde::de::DeserializeOwned>(value: Option<&str>) -> Option<T> {
    value.and_then(|text| serde_json::from_value(serde_json::Value::String(text.into())).ok())
}

const STATUSES: [&str; 7] = [
    "open",
    "assigned",
    "en_route",
    "in_progress",
    "on_hold",
    "completed",
    "cancelled",
];
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

fn status_text(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A serialized enum's word (`high`, `approved`...).
fn word(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn work_orders(
    State(state): State<AppState>,
    client: Client,
    session: UiCaller,
    axum::extract::Query(form): axum::extract::Query<ListForm>,
) -> Response {
    let caller = &session.caller;
    let query = form.query();
    // A cursor that does not open (or names no document id) starts the
    // list again, as a missing one does.
    let after = non_empty(&form.cursor)
        .and_then(|cursor| state.cursors().open(cursor).ok())
        .filter(|position| fieldsync_node::store::validate_doc_id(position).is_ok());
    let scan_max = state.config().scan_entries_max;
    let reader = caller.clone();
    let listed = match caller.field_or_scope(fieldsync_schemas::Scope::WorkOrdersRead) {
        Err(error) => Err(error),
        Ok(()) => {
            state
                .blocking(move |store| list(store, &reader, &query, after, UI_PAGE_SIZE, scan_max))
                .await
        }
    };
    let page_data = match listed {
        Ok(page) => page.sealed(state.cursors()),
        Err(error) => return error_page(error.kind.status(), Some(&session), &error),
    };
    let operator = caller.role == fieldsync_schemas::Role::Operator;
    let technicians = if operator {
        console::technicians(&state).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let body = html! {
        @if operator { p { a #new-work-order href="/ui/work-orders/new" { "New work order" } } }
        (list_filters(&form, operator, &technicians))
        (list_table(&page_data.items))
        @if page_data.items.is_empty() { p { "No work orders match." } }
        @if let Some(cursor) = &page_data.next_cursor {
            p { a #next-page href={ "/ui/work-orders?cursor=" (url_part(cursor)) "&" (form.filters_query()) } { "Next page →" } }
        }
        @if non_empty(&form.cursor).is_some() {
            p { a #first-page href={ "/ui/work-orders?" (form.filters_query()) } { "← First page" } }
        }
    };
    let secure = secure_cookies(&state, client);
    let response = page_with("Work orders", Some(&session), session.flash.as_ref(), body);
    forms::flash_shown(response.into_response(), &session, secure)
}

/// The list's filter form; operators pick the assignee from the
/// technicians, others type it.
fn list_filters(form: &ListForm, operator: bool, technicians: &[String]) -> Markup {
    let status = non_empty(&form.status).unwrap_or("");
    let priority = non_empty(&form.priority).unwrap_or("");
    let assignee = non_empty(&form.assignee).unwrap_or("");
    html! {
        form.filters #filters method="get" action="/ui/work-orders" {
            label { "Status" select name="status" {
                option value="" { "any" }
                @for each in STATUSES { option value=(each) selected[each == status] { (each) } }
            } }
            label { "Priority" select name="priority" {
                option value="" { "any" }
                @for each in PRIORITIES { option value=(each) selected[each == priority] { (each) } }
            } }
            @if operator {
                label { "Assignee" select name="assignee" {
                    option value="" { "any" }
                    @for each in technicians { option value=(each) selected[each == assignee] { (each) } }
                } }
            } @else {
                label { "Assignee" input name="assignee" value=(assignee); }
            }
            label { "Deleted only" input type="checkbox" name="deleted" checked[form.wants_deleted()]; }
            button type="submit" { "Filter" }
        }
    }
}

fn list_table(items: &[crate::api::model::WorkOrderSummary]) -> Markup {
    html! {
        div.table-wrap { table #work-orders {
            caption { "Work orders (status in words; " em { "conflict" } " marks conflicting terminal statuses)" }
            thead { tr { th scope="col" { "Number" } th scope="col" { "Title" } th scope="col" { "Customer" } th scope="col" { "Priority" } th scope="col" { "Status" } th scope="col" { "Assignee" } th scope="col" { "Scheduled" } } }
            tbody {
                @for item in items {
                    tr #{ "wo-" (item.id) } {
                        td { a href={ "/ui/work-orders/" (item.id) } { (item.number) } }
                        td { (item.title) }
                        td { (item.customer_name) }
                        td { (word(item.priority)) }
                        td {
                            span.badge { (status_text(item.status)) }
                            @if item.conflict { " " span.badge.conflict { "conflict" } }
                        }
                        td { (item.assignee.as_deref().unwrap_or("—")) }
                        td { (item.scheduled_for.as_deref().unwrap_or("")) }
                    }
                }
            }
        } }
    }
}

/// Percent-encode a query value (the HTML escaping maud adds on top is
/// for the attribute; this is for the URL).
fn url_part(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn work_order(
    State(state): State<AppState>,
    client: Client,
    session: UiCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let flash = session.flash.clone();
    let response = detail_page(&state, &session, id, flash.as_ref(), StatusCode::OK).await;
    forms::flash_shown(response, &session, secure_cookies(&state, client))
}

/// The work order the caller may see, if any (404 otherwise: a bad id,
/// another's work order and a missing one look alike).
async fn visible_order(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<WorkOrder, ApiError> {
    caller.field_or_scope(fieldsync_schemas::Scope::WorkOrdersRead)?;
    if fieldsync_node::store::validate_doc_id(&id).is_err() {
        return Err(ApiError::not_found("no such work order"));
    }
    let reader = caller.clone();
    state
        .blocking(move |store| crate::api::work_orders::read_visible(store, &reader, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("no such work order"))
}

/// A work order's page at `status` with `flash`: its details, for
/// operators the console's forms, and the live-update hook.
async fn detail_page(
    state: &AppState,
    session: &UiCaller,
    id: String,
    flash: Option<&Flash>,
    status: StatusCode,
) -> Response {
    let order = match visible_order(state, &session.caller, id).await {
        Ok(order) => order,
        Err(error) => return error_page(error.kind.status(), Some(session), &error),
    };
    let console = if session.caller.role == fieldsync_schemas::Role::Operator {
        let technicians = console::technicians(state).await.unwrap_or_default();
        Some(console::order_forms(
            &order,
            &technicians,
            &session.console_token,
        ))
    } else {
        None
    };
    let signature = order
        .closure
        .as_ref()
        .map(|closure| closure.signature.clone())
        .unwrap_or_default();
    let title = format!("{} — {}", order.number, order.title);
    let body = html! {
        (live::hook(&order))
        (detail(&order))
        @if !signature.is_empty() { section { h2 { "Customer's signature" } (crate::field::signature::show(&signature)) } }
        @if let Some(console) = console { (console) }
    };
    (status, page_with(&title, Some(session), flash, body)).into_response()
}

fn detail(order: &WorkOrder) -> Markup {
    html! {
        p {
            span #wo-number { (order.number) } " · "
            span.badge #wo-status { (status_text(order.status)) }
            @if order.conflict { " " span.badge.conflict { "conflicting terminal status" } }
            @if order.deleted { " " span.badge.conflict { "deleted" } }
        }
        table {
            tr { th { "Customer" } td { (order.customer.name) br; (order.customer.address) br; (order.customer.phone) } }
            tr { th { "Priority" } td { (serde_json::to_value(order.priority).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) } }
            tr { th { "Assignee" } td { (order.assignee.as_deref().unwrap_or("—")) } }
            tr { th { "Scheduled" } td { (order.scheduled_for.as_deref().unwrap_or("")) } }
            tr { th { "Description" } td { (order.description) } }
            tr { th { "Created" } td { (order.created_at) " by " (order.created_by) } }
        }
        @if !order.conflicts.is_empty() {
            section {
                h2 { "Conflicting edits" }
                table #conflicts {
                    tr { th { "Field" } th { "Losing values" } }
                    @for (field, values) in &order.conflicts {
                        tr.conflict { td { (field) } td {
                            @for value in values { code { (value.to_string()) } " " }
                        } }
                    }
                }
            }
        }
        section {
            h2 { "Status log" }
            table {
                tr { th { "At" } th { "By" } th { "To" } th { "Note" } }
                @for entry in &order.status_log {
                    tr { td { (entry.at) } td { (entry.by) " (" (entry.role) ")" } td { (status_text(entry.to)) } td { (entry.note) } }
                }
            }
        }
        section {
            h2 { "Notes" }
            @if order.notes.is_empty() { p { "No notes." } }
            @for note in &order.notes {
                div.note { p { strong { (note.by) } " · " (note.at) } p { (note.text) } }
            }
        }
        section {
            h2 { "Materials" }
            table #materials {
                tr { th { "#" } th { "SKU" } th { "Qty" } th { "Description" } th { "By" } th { "State" } }
                @for (row, material) in order.materials.iter().enumerate() {
                    tr {
                        td { (row + 1) }
                        td { (material.sku) } td { (material.qty) " " (material.unit) }
                        td { (material.description) } td { (material.by) }
                        td { (serde_json::to_value(material.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                    }
                }
            }
        }
        @if !order.time_log.is_empty() {
            section {
                h2 { "Time" }
                table {
                    tr { th { "By" } th { "Start" } th { "End" } }
                    @for entry in &order.time_log { tr { td { (entry.by) } td { (entry.start) } td { (entry.end) } } }
                }
            }
        }
        section { h2 { "Report" } pre { (order.report) } }
        @if let Some(closure) = &order.closure {
            section {
                h2 { "Closure" }
                p { (closure.resolution) } p { "Closed " (closure.at) " by " (closure.by) ", signed by " (closure.signed_by) }
            }
        }
    }
}

async fn peers(State(state): State<AppState>, session: UiCaller) -> Response {
    let caller = &session.caller;
    if let Err(error) = caller.operator_only() {
        return error_page(StatusCode::FORBIDDEN, Some(&session), &error);
    }
    let peers = state.peers().peers();
    let body = html! {
        @if peers.is_empty() { p { "No peers known yet." } }
        @else {
            table {
                tr { th { "Node" } th { "User" } th { "Address" } th { "Connected" } th { "Last seen" } th { "Last sync" } th { "Docs pending" } }
                @for peer in &peers {
                    tr {
                        td { code { (peer.node_id) } }
                        td { (peer.user.as_deref().unwrap_or("—")) }
                        td { (peer.address.as_deref().unwrap_or("")) }
                        td { @if peer.connected { "yes" } @else { "no" } }
                        td { (peer.last_seen.as_deref().unwrap_or("never")) }
                        td { (peer.last_sync.as_deref().unwrap_or("never")) }
                        td { (peer.docs_pending.map(|n| n.to_string()).unwrap_or_default()) }
                    }
                }
            }
        }
    };
    page("Peers", Some(&session), body).into_response()
}

#[derive(Deserialize, Default)]
struct FeedForm {
    since: Option<String>,
}

async fn changes(
    State(state): State<AppState>,
    session: UiCaller,
    axum::extract::Query(form): axum::extract::Query<FeedForm>,
) -> Response {
    let caller = &session.caller;
    if let Err(error) = caller.field_or_scope(fieldsync_schemas::Scope::ChangesRead) {
        return error_page(StatusCode::FORBIDDEN, Some(&session), &error);
    }
    // The office sees the store's last seq and starts at the newest
    // changes. A technician sees neither the last seq nor anything derived
    // from it (hardening finding 7): their page starts at the beginning
    // (or where they were) and moves by their own cursor.
    let technician = caller.role == fieldsync_schemas::Role::Technician;
    let last = state.store().last_seq();
    let asked = non_empty(&form.since).and_then(|text| text.parse::<u64>().ok());
    let since = match asked {
        Some(since) if technician => since,
        Some(since) => since.min(last),
        None if technician => 0,
        None => last.saturating_sub(UI_FEED_ENTRIES as u64),
    };
    let scan_max = state.config().scan_entries_max;
    let reader = caller.clone();
    let read = state
        .blocking(move |store| read_page(store, &reader, since, UI_FEED_ENTRIES, None, scan_max))
        .await;
    let feed = match read {
        Ok(feed) => feed,
        Err(error) => return error_page(error.kind.status(), Some(&session), &error),
    };
    let body = html! {
        @if technician {
            p { "Your changes after seq " (since) "." }
        } @else {
            p { "Changes after seq " (since) ", up to " (feed.last_seq) " (store at " (last) ")." }
        }
        table {
            tr { th { "Seq" } th { "Collection" } th { "Document" } th { "Op" } }
            @for entry in feed.entries.iter().rev() {
                tr {
                    td { (entry.seq) }
                    td { (entry.collection.name()) }
                    td {
                        @if entry.collection == fieldsync_schemas::Collection::WorkOrders {
                            a href={ "/ui/work-orders/" (entry.id) } { (entry.number.as_deref().unwrap_or(&entry.id)) }
                        } @else {
                            (entry.id) @if let Some(version) = entry.version { " (version " (version) ")" }
                        }
                    }
                    td { (format!("{:?}", entry.op).to_lowercase()) }
                }
            }
        }
        @if feed.more { p { a href={ "/ui/changes?since=" (feed.last_seq) } { "Newer →" } } }
        @if since > 0 {
            p { a href={ "/ui/changes?since=" (since.saturating_sub(UI_FEED_ENTRIES as u64)) } { "← Older" } }
        }
    };
    page("Changes", Some(&session), body).into_response()
}

/// The data collections the caller may read (the same list as
/// `GET /api/v1/collections`).
async fn collections(State(state): State<AppState>, session: UiCaller) -> Response {
    let caller = &session.caller;
    if let Err(error) = caller.field_or_scope(fieldsync_schemas::Scope::RecordsRead) {
        return error_page(StatusCode::FORBIDDEN, Some(&session), &error);
    }
    let reader = caller.clone();
    let listed = state
        .blocking(move |store| crate::api::records::visible_collections(store, &reader))
        .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(error) => return error_page(error.kind.status(), Some(&session), &error),
    };
    let role_names = |readers: &[crate::api::model::Reader]| {
        readers
            .iter()
            .map(|reader| fieldsync_schemas::Role::from(*reader).as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = html! {
        @if listed.is_empty() { p { "No collections you may read." } }
        @else {
            table {
                tr { th { "Collection" } th { "Records" } th { "Readers" } }
                @for collection in &listed {
                    tr {
                        td { code { (collection.name) } }
                        td { (collection.count) }
                        td { (role_names(&collection.readers)) }
                    }
                }
            }
        }
    };
    page("Collections", Some(&session), body).into_response()
}
