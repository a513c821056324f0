//! The office console's users page: list users, add a technician (an
//! enrollment code for their laptop), add an integration client (a client
//! secret), revoke either.
//!
//! Why the same functions as `POST /api/v1/users` and its revoke
//! (`api::users::add_user`, `revoke`): one check of ids, roles and
//! scopes, one hashing budget, one lock over user administration. A
//! technician gets what `fieldsync user add --role technician` gives: a
//! one-time enrollment code (no secret), with the central's node id and
//! sync address to type on the laptop. Codes and secrets are shown once,
//! in the answer to the post that made them, never in a cookie, a URL or
//! a later page: the store keeps only their hashes.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fieldsync_node::clock::rfc3339_ms;
use fieldsync_node::store::User;
use fieldsync_schemas::{Role, Scope};
use maud::{html, Markup};

use super::forms::{self, posted, sentence, Flash, Posted};
use super::{csrf, page_with, secure_cookies, UiCaller};
use crate::api::users::{add_user, AddedUser, Credentials, NewUser};
use crate::edge::Client;
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

fn token_field(token: &str) -> Markup {
    html! { input type="hidden" name=(csrf::FIELD) value=(token); }
}

/// The users page with `flash` (and `shown`, the credentials just made)
/// at `status`.
async fn users_page(
    state: &AppState,
    session: &UiCaller,
    flash: Option<&Flash>,
    shown: Option<Markup>,
    status: StatusCode,
) -> Response {
    let listed = state
        .blocking(|store| store.users().map_err(ApiError::internal))
        .await;
    let users = match listed {
        Ok(users) => users,
        Err(error) => return super::error_page(error.kind.status(), Some(session), &error),
    };
    let token = &session.console_token;
    let body = html! {
        @if let Some(shown) = shown { (shown) }
        (users_table(&users, &session.caller.user_id, token))
        section {
            h2 { "Add a technician" }
            form.console #add-technician method="post" action="/ui/users/technicians" {
                (token_field(token))
                label { "Technician id (letters, digits, - _ . @)" input name="id" required pattern="[A-Za-z0-9_.@-]{1,64}" autocomplete="off"; }
                div { button type="submit" { "Add technician" } }
            }
        }
        section {
            h2 { "Add an integration client" }
            form.console #add-client method="post" action="/ui/users/clients" {
                (token_field(token))
                label { "Client id (letters, digits, - _ . @)" input name="id" required pattern="[A-Za-z0-9_.@-]{1,64}" autocomplete="off"; }
                fieldset.wide {
                    legend { "Scopes (at least one)" }
                    @for scope in Scope::ALL {
                        label { span { input type="checkbox" name="scopes" value=(scope.as_str()); " " (scope.as_str()) } }
                    }
                }
                div { button type="submit" { "Add client" } }
            }
        }
    };
    (status, page_with("Users", Some(session), flash, body)).into_response()
}

fn users_table(users: &[User], me: &str, token: &str) -> Markup {
    html! {
        div.table-wrap { table #users {
            caption { "Users and integration clients" }
            thead { tr { th scope="col" { "Id" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Credentials" } th scope="col" { "Created" } th scope="col" { "Action" } } }
            tbody {
                @for user in users {
                    tr #{ "user-" (user.id) } {
                        td { (user.id) }
                        td { (user.role.as_str()) }
                        td { @if user.revoked { "revoked" } @else { "active" } }
                        td { (credentials(user)) }
                        td { (user.created_at) }
                        td {
                            @if !user.revoked && user.id != me {
                                form.inline #{ "revoke-" (user.id) } method="post" action={ "/ui/users/" (super::url_part(&user.id)) "/revoke" } {
                                    (token_field(token))
                                    button type="submit" { "Revoke " (user.id) }
                                }
                            }
                        }
                    }
                }
            }
        } }
    }
}

/// What a user holds, in words (never the secrets).
fn credentials(user: &User) -> String {
    let mut held = Vec::new();
    if user.secret_hash.is_some() {
        held.push("secret".to_string());
    }
    if user.enroll_code_hash.is_some() {
        held.push("enrollment code pending".to_string());
    }
    if !user.node_ids.is_empty() {
        held.push(format!("{} laptop(s)", user.node_ids.len()));
    }
    if user.role == Role::Integration {
        let scopes: Vec<&str> = user.scopes.iter().map(|scope| scope.as_str()).collect();
        held.push(format!("scopes: {}", scopes.join(" ")));
    }
    if held.is_empty() {
        "—".into()
    } else {
        held.join(", ")
    }
}

/// `GET /ui/users` (operators).
pub(super) async fn users(
    State(state): State<AppState>,
    client: Client,
    session: UiCaller,
) -> Response {
    if session.caller.operator_only().is_err() {
        return forms::operators_only(&session);
    }
    let flash = session.flash.clone();
    let response = users_page(&state, &session, flash.as_ref(), None, StatusCode::OK).await;
    forms::flash_shown(response, &session, secure_cookies(&state, client))
}

/// The add and revoke forms' fields (repeated `scopes`, hence pairs).
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(found, _)| found == name)
        .map_or("", |(_, value)| value.trim())
}

/// `POST /ui/users/technicians`: a technician with an enrollment code,
/// shown once on the answer.
pub(super) async fn add_technician(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let Posted { session, form } = match posted::<Fields>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let ttl_ms = state.central().map_or(
        fieldsync_node::config::ENROLL_CODE_TTL_MS_DEFAULT,
        |central| central.enroll_code_ttl_ms,
    );
    let credentials = Credentials {
        secret: false,
        enroll_code_ttl_ms: Some(ttl_ms),
    };
    let body = NewUser {
        id: field(&form, "id").to_string(),
        role: Role::Technician.as_str().into(),
        scopes: Vec::new(),
    };
    match add_user(&state, body, credentials).await {
        Ok(added) => {
            let shown = enrollment(&state, &headers, &added);
            let flash = Flash::Done("Saved.");
            users_page(&state, &session, Some(&flash), Some(shown), StatusCode::OK).await
        }
        Err(error) => refused(&state, &session, &error).await,
    }
}

async fn refused(state: &AppState, session: &UiCaller, error: &ApiError) -> Response {
    let flash = Flash::Problem(sentence(error));
    users_page(state, session, Some(&flash), None, error.kind.status()).await
}

/// The central's sync address as the laptop should dial it: `[sync]
/// listen`, with the host the operator reached this page by when it
/// listens on every address.
fn sync_address(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let listen = state.central()?.sync_listen;
    if !listen.ip().is_unspecified() {
        return Some(listen.to_string());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = match host.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => host.split(':').next()?.to_string(),
    };
    Some(format!("{name}:{}", listen.port()))
}

/// What the operator reads to the technician: the code (once), the
/// central's id and sync address, and the command for the laptop.
fn enrollment(state: &AppState, headers: &HeaderMap, added: &AddedUser) -> Markup {
    let code = added.enroll_code.as_deref().unwrap_or_default();
    let central_id = state.central().map(|central| central.node_id.clone());
    let address = sync_address(state, headers);
    let expires = added.user.enroll_code_expires_at_ms.map(rfc3339_ms);
    let command = format!(
        "fieldsync enroll --central {} --central-id {} --code {code}",
        address
            .as_deref()
            .unwrap_or("<this central's host>:<sync port>"),
        central_id
            .as_deref()
            .map_or("<this central's node id>", |id| &id[..id.len().min(16)]),
    );
    html! {
        section.notice {
            h2 { "Technician " (added.user.id) " added" }
            p { strong { "Shown once:" } " only a hash is stored. Give these to the technician now." }
            dl {
                dt { "Enrollment code" } dd { code.secret #enroll-code { (code) } }
                dt { "Code expires" } dd { (expires.unwrap_or_default()) " (UTC)" }
                dt { "Central id (certificate fingerprint)" }
                dd { code #central-id { (central_id.as_deref().unwrap_or("not known to this gateway: see `fieldsync status` on the central")) } }
                dt { "Central sync address" }
                dd { code #sync-address { (address.as_deref().unwrap_or("not known to this gateway: the central's [sync] listen")) } }
                dt { "On the laptop" } dd { code #enroll-command { (command) } }
            }
        }
    }
}

/// `POST /ui/users/clients`: an integration client with the chosen
/// scopes; its secret shown once on the answer.
pub(super) async fn add_client(State(state): State<AppState>, request: Request) -> Response {
    let Posted { session, form } = match posted::<Fields>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let scopes: Vec<String> = form
        .iter()
        .filter(|(name, _)| name == "scopes")
        .map(|(_, value)| value.clone())
        .collect();
    if scopes.is_empty() {
        let error = ApiError::new(ErrorKind::InvalidValue, "choose at least one scope");
        return refused(&state, &session, &error).await;
    }
    let body = NewUser {
        id: field(&form, "id").to_string(),
        role: Role::Integration.as_str().into(),
        scopes,
    };
    match add_user(&state, body, Credentials::SECRET).await {
        Ok(added) => {
            let secret = added.client_secret.unwrap_or_default();
            let shown = html! {
                section.notice {
                    h2 { "Client " (added.user.id) " added" }
                    p { strong { "Shown once:" } " only a hash is stored. Put the secret in the client's configuration now." }
                    dl {
                        dt { "Client id" } dd { code #client-id { (added.user.id) } }
                        dt { "Client secret" } dd { code.secret #client-secret { (secret) } }
                    }
                }
            };
            let flash = Flash::Done("Saved.");
            users_page(&state, &session, Some(&flash), Some(shown), StatusCode::OK).await
        }
        Err(error) => refused(&state, &session, &error).await,
    }
}

/// `POST /ui/users/{id}/revoke`.
pub(super) async fn revoke(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Posted { session, .. } = match posted::<Fields>(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    match crate::api::users::revoke(&state, &session.caller, id).await {
        Ok(_) => forms::done("/ui/users", "revoked", secure_cookies(&state, client)),
        Err(error) => refused(&state, &session, &error).await,
    }
}
