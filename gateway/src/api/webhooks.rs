//! `/api/v1/webhooks`: register a URL to be told what changed, read its
//! state and attempts, retry, rotate its secret, redeliver, delete.
//!
//! Why a thin layer: a hook is a record of the internal `webhooks`
//! collection (`delivery/hook.rs`), delivery is the dispatcher's
//! (`delivery/dispatcher.rs`), and what a hook sees is what its owner may
//! see, read through the one feed reader. This file adds HTTP, the
//! registration checks (SSRF rules, the signed URL test) and ownership:
//! operators see and manage every hook, others only their own, and a hook
//! that is not yours is answered as absent.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fieldsync_node::store::{Expect, RecordWrite, WriteSet};
use fieldsync_schemas::{Role, Scope};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::model::whole;
use crate::auth::Caller;
use crate::delivery::attempts::{self, AttemptKind, AttemptRow};
use crate::delivery::dispatcher::{self, StoredNotification};
use crate::delivery::hook::{self, DataFilter, Filter, Format, Hook, Secret};
use crate::delivery::{penalty, signing, ssrf};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorKind, Problem};
use crate::state::AppState;

/// Attempts listed per page, at most.
const ATTEMPTS_PAGE_MAX: usize = 200;
/// Characters of a hook URL, at most.
const URL_CHARS_MAX: usize = 2048;
/// Bytes of a `secKey`, at most.
const SEC_KEY_BYTES_MAX: usize = 256;
/// Collections one hook may name, at most.
const FILTER_COLLECTIONS_MAX: usize = 64;
/// Hooks one owner may have, at most.
const HOOKS_PER_OWNER_MAX: usize = 20;
/// Hooks on this node, at most (the dispatcher looks at all of them).
const HOOKS_MAX: usize = 1000;

/// A hook to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWebhook {
    /// Where notifications are POSTed (http or https, at most 2048
    /// characters; public addresses only, unless `[delivery]
    /// allow_networks` admits the network). Unless `skip_url_test`, the URL
    /// must answer a signed test call with 2xx.
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub url: String,
    /// `json` (default, also for `null`) or `xml`.
    #[serde(default)]
    #[schema(value_type = Option<WebhookFormat>)]
    pub format: Option<String>,
    /// Start after this seq, at most the feed's last seq; default: now
    /// (only changes from here on).
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 0, maximum = 9007199254740991_u64)]
    pub last_seq: Option<u64>,
    /// `whsec_` + base64 (padded) of 24 to 64 bytes; generated when absent
    /// (and then shown once, in the answer).
    #[serde(default)]
    #[schema(
        pattern = "^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?|(?:[A-Za-z0-9+/]{4}){21}(?:[A-Za-z0-9+/][AQgw]==)?)$"
    )]
    pub secret: Option<String>,
    /// Sent back as the `secKey` header with every delivery: 1 to 256
    /// printable ASCII characters.
    #[serde(default)]
    #[schema(pattern = "^[ -~]{1,256}$")]
    pub sec_key: Option<String>,
    /// Skip the signed test call to the URL (which must answer 2xx).
    #[serde(default)]
    pub skip_url_test: bool,
    /// Only these entity kinds (`work_orders`, data collection names), at
    /// most 64.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub collections: Vec<String>,
    /// Only changes whose document or record has this field (a dotted
    /// path) equal to this value.
    #[serde(default)]
    pub data_filter: Option<WebhookDataFilter>,
    /// Only work orders whose status changed.
    #[serde(default)]
    pub state_changes_only: bool,
    /// Carry each document or record, not only ids.
    #[serde(default)]
    pub include_data: bool,
}

/// How notifications are encoded.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // States `NewWebhook.format`'s values; read as text.
pub(crate) enum WebhookFormat {
    Json,
    Xml,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookDataFilter {
    /// A dotted path into the document or record, 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    pub field: String,
    /// At most 1024 characters.
    #[schema(max_length = 1024)]
    pub value: String,
}

/// A hook as its owner and operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Webhook {
    pub id: String,
    pub owner: String,
    pub url: String,
    pub format: String,
    pub collections: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_filter: Option<WebhookDataFilter>,
    pub state_changes_only: bool,
    pub include_data: bool,
    /// Changes up to this seq are delivered (or skipped by the filters).
    /// Not shown to technicians: it is the store's global seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// The notification being delivered, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_notification: Option<String>,
    pub pending_changes: u32,
    pub consecutive_failures: u32,
    pub penalty_ms: u64,
    /// When the next attempt may be made (RFC 3339).
    pub next_attempt_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Why deliveries stopped: `gone` (the receiver answered 410) or
    /// `failing_too_long`; `POST .../retry` enables the hook again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    pub attempts: u64,
    pub changes_delivered: u64,
    /// Secrets signing now (2 during a rotation).
    pub signing_secrets: usize,
    pub created_at: String,
}

/// A registered hook, with its secret (shown only here and on rotation).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    pub secret: String,
}

/// A new secret; the old one signs too until `previous_expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    pub secret: String,
    pub previous_expires_at: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttemptQuery {
    /// Attempts after this number (paging); default 0.
    #[param(minimum = 0, maximum = 9007199254740991_u64)]
    pub after: Option<u64>,
    /// At most this many: 0 and 1 mean 1, values over 200 mean 200
    /// (the default).
    #[param(minimum = 0, maximum = 9007199254740991_u64)]
    pub limit: Option<u64>,
}

fn view(hook: &Hook, now_ms: u64) -> Webhook {
    let at = fieldsync_node::clock::rfc3339_ms;
    let health = &hook.health;
    Webhook {
        id: hook.id.clone(),
        owner: hook.owner.clone(),
        url: hook.url.clone(),
        format: match hook.format {
            Format::Json => "json".into(),
            Format::Xml => "xml".into(),
        },
        collections: hook.filter.collections.clone(),
        data_filter: hook.filter.data.as_ref().map(|d| WebhookDataFilter {
            field: d.field.clone(),
            value: d.value.clone(),
        }),
        state_changes_only: hook.filter.state_changes_only,
        include_data: hook.filter.include_data,
        cursor: (hook.owner_role != Role::Technician).then_some(hook.cursor),
        pending_notification: hook.pending.as_ref().map(|p| p.id.clone()),
        pending_changes: hook.pending.as_ref().map_or(0, |p| p.changes),
        consecutive_failures: health.failures,
        penalty_ms: health.penalty_ms,
        next_attempt_at: at(health.next_attempt_at_ms),
        last_error: hook.last_error.clone(),
        failing_since: health.failing_since_ms.map(at),
        last_success_at: health.last_success_at_ms.map(at),
        disabled: health.disabled.as_ref().map(|d| match d {
            penalty::Disabled::Gone { .. } => "gone".into(),
            penalty::Disabled::FailingTooLong { .. } => "failing_too_long".into(),
        }),
        attempts: hook.attempts,
        changes_delivered: hook.changes_delivered,
        signing_secrets: hook.signing_secrets(now_ms).count(),
        created_at: hook.created_at.clone(),
    }
}

/// Operators, integrations with `webhooks:manage`, and technicians (for
/// their own work orders) may register hooks.
pub(crate) fn may_manage(caller: &Caller) -> Result<(), ApiError> {
    match caller.role {
        Role::Technician => Ok(()),
        _ => caller.office_or_scope(Scope::WebhooksManage),
    }
}

/// Whether the caller manages this hook: operators all, others their own.
pub(crate) fn manages(caller: &Caller, hook: &Hook) -> bool {
    caller.role == Role::Operator || hook.owner == caller.user_id
}

fn no_hook(id: &str) -> ApiError {
    ApiError::not_found(format!("no webhook `{id}`"))
}

/// The hook `id` if the caller may manage it (else 404: no oracle).
async fn owned(state: &AppState, caller: &Caller, id: &str) -> Result<Hook, ApiError> {
    may_manage(caller)?;
    let key = id.to_string();
    let found = state.blocking(move |store| hook::load(store, &key)).await?;
    match found {
        Some((hook, _)) if manages(caller, &hook) => Ok(hook),
        _ => Err(no_hook(id)),
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidValue, detail)
}

fn filter_of(body: &NewWebhook) -> Result<Filter, ApiError> {
    if body.collections.len() > FILTER_COLLECTIONS_MAX {
        return Err(invalid(format!(
            "at most {FILTER_COLLECTIONS_MAX} collections"
        )));
    }
    for name in &body.collections {
        if name != "work_orders" {
            fieldsync_schemas::collection::validate_collection_name(name)
                .map_err(|e| invalid(e.to_string()))?;
        }
    }
    let data = match &body.data_filter {
        Some(f)
            if f.field.is_empty()
                || f.field.chars().count() > 128
                || f.value.chars().count() > 1024 =>
        {
            return Err(invalid(
                "data_filter: field 1 to 128 characters, value at most 1024",
            ));
        }
        Some(f) => Some(DataFilter {
            field: f.field.clone(),
            value: f.value.clone(),
        }),
        None => None,
    };
    Ok(Filter {
        collections: body.collections.clone(),
        data,
        state_changes_only: body.state_changes_only,
        include_data: body.include_data,
    })
}

/// The hook a valid body describes (not stored yet).
fn hook_of(state: &AppState, caller: &Caller, body: &NewWebhook) -> Result<Hook, ApiError> {
    if body.url.chars().count() > URL_CHARS_MAX {
        return Err(invalid(format!("url: at most {URL_CHARS_MAX} characters")));
    }
    let allow = &state.delivery().settings.client.allow_networks;
    ssrf::check_url(&body.url, allow).map_err(|e| invalid(e.to_string()))?;
    let format = match body.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("xml") => Format::Xml,
        Some(other) => return Err(invalid(format!("format `{other}`: json or xml"))),
    };
    let secret = match &body.secret {
        Some(secret) => {
            signing::check_secret(secret).map_err(|e| invalid(e.to_string()))?;
            secret.clone()
        }
        None => hook::new_secret(),
    };
    if body.sec_key.as_ref().is_some_and(|key| {
        key.is_empty()
            || key.len() > SEC_KEY_BYTES_MAX
            || !key.is_ascii()
            || key.chars().any(|c| c.is_ascii_control())
    }) {
        return Err(invalid(format!(
            "sec_key: 1 to {SEC_KEY_BYTES_MAX} printable ASCII characters"
        )));
    }
    let last_seq = state.store().last_seq();
    let cursor = match body.last_seq {
        Some(seq) if seq > last_seq && caller.role == Role::Technician => {
            return Err(invalid("last_seq: past the end of the feed"));
        }
        Some(seq) if seq > last_seq => {
            return Err(invalid(format!("last_seq: the feed is at {last_seq}")));
        }
        Some(seq) => seq,
        None => last_seq,
    };
    let now_ms = state.now_ms();
    Ok(Hook {
        id: hook::new_id(),
        owner: caller.user_id.clone(),
        owner_role: caller.role,
        owner_scopes: caller.scopes.clone(),
        url: body.url.clone(),
        format,
        secrets: vec![Secret {
            secret,
            expires_at_ms: None,
        }],
        sec_key: body.sec_key.clone(),
        filter: filter_of(body)?,
        created_at: fieldsync_node::clock::rfc3339_ms(now_ms),
        cursor,
        health: penalty::Health {
            next_attempt_at_ms: now_ms,
            ..penalty::Health::default()
        },
        pending: None,
        last_error: None,
        attempts: 0,
        notifications: 0,
        changes_delivered: 0,
        alerts: Vec::new(),
    })
}

/// The signed test call: the URL must answer 2xx. Returns the attempt.
async fn url_test(state: &AppState, hook: &Hook) -> Result<AttemptRow, ApiError> {
    let id = format!("msg_test_{}", hook.id.trim_start_matches("wh_"));
    let body = serde_json::json!({ "type": "test", "hook_id": hook.id }).to_string();
    let body = match hook.format {
        Format::Json => body,
        Format::Xml => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><test hook_id=\"{}\"/>",
            crate::delivery::notification::escape_xml(&hook.id)
        ),
    };
    let attempt = dispatcher::send(state, hook, &id, &body).await;
    let now_ms = state.now_ms();
    let tested = Hook {
        attempts: 1,
        ..hook.clone()
    };
    let row = dispatcher::attempt_row(&tested, AttemptKind::Test, (&id, 0), &attempt, now_ms);
    match &row.error {
        None => Ok(row),
        Some(error) => Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("the URL test failed: {error} (answer 2xx to a signed POST, or register with skip_url_test)"),
        )),
    }
}

/// Register a webhook.
#[utoipa::path(
    post, path = "/api/v1/webhooks", tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Registered and durable; the secret is shown only here", body = CreatedWebhook),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused URL (private, loopback, metadata...), a bad filter or secret, or a failed URL test", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<NewWebhook>, ApiError>,
) -> Result<Response, ApiError> {
    may_manage(&caller)?;
    let ApiJson(body) = body?;
    if !state.config().delivery_runs {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "this node does not dispatch webhooks ([delivery] enabled = false): \
             register hooks on the central that does",
        ));
    }
    let mut hook = hook_of(&state, &caller, &body)?;
    hook::permitted(caller.role, &caller.scopes, &hook.filter).map_err(ApiError::forbidden)?;
    let owner = caller.user_id.clone();
    let (mine, all) = state
        .blocking(move |store| {
            let hooks = hook::list(store)?;
            Ok((
                hooks.iter().filter(|h| h.owner == owner).count(),
                hooks.len(),
            ))
        })
        .await?;
    if mine >= HOOKS_PER_OWNER_MAX || all >= HOOKS_MAX {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "too many webhooks: at most {HOOKS_PER_OWNER_MAX} per owner and {HOOKS_MAX} in all; \
                 delete one first"
            ),
        ));
    }
    state
        .delivery()
        .check_destination(&hook.url)
        .await
        .map_err(invalid)?;
    let mut records = Vec::new();
    if !body.skip_url_test {
        let row = url_test(&state, &hook).await?;
        hook.attempts = 1;
        records.push(attempts::write(&row));
    }
    records.insert(
        0,
        RecordWrite {
            collection: hook::HOOKS.into(),
            key: hook.id.clone(),
            value: Some(hook.encode()),
            expect: Expect::Absent,
            replicated_version: None,
        },
    );
    state
        .blocking(move |store| {
            store
                .submit(WriteSet {
                    records,
                    ..WriteSet::default()
                })
                .and_then(|pending| pending.wait())
                .map_err(crate::error::store_write_error)
        })
        .await?;
    state.delivery().wake.notify_one();
    let secret = hook.secrets[0].secret.clone();
    let created = CreatedWebhook {
        webhook: view(&hook, state.now_ms()),
        secret,
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// Hooks the caller may manage (operators: all).
#[utoipa::path(
    get, path = "/api/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "Hooks, in id order", body = [Webhook]),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<Webhook>>, ApiError> {
    may_manage(&caller)?;
    let hooks = state.blocking(hook::list).await?;
    let now_ms = state.now_ms();
    Ok(axum::Json(
        hooks
            .iter()
            .filter(|hook| manages(&caller, hook))
            .map(|hook| view(hook, now_ms))
            .collect(),
    ))
}

/// One hook: cursor, penalty, last error, next attempt.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Hook id")),
    responses(
        (status = 200, description = "The hook", body = Webhook),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such hook, or not yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Webhook>, ApiError> {
    let hook = owned(&state, &caller, &id).await?;
    Ok(axum::Json(view(&hook, state.now_ms())))
}

/// Delete a hook (its attempts age out through retention).
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Hook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such hook, or not yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, &id).await?;
    let deleted = state
        .blocking(move |store| hook::delete(store, &id))
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such webhook"))
    }
}

/// Reset the penalty (and enable a disabled hook) and deliver now.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "Hook id")),
    responses(
        (status = 202, description = "Penalty reset; delivery scheduled now", body = Webhook),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such hook, or not yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    owned(&state, &caller, &id).await?;
    let now_ms = state.now_ms();
    let updated = state
        .blocking(move |store| {
            hook::update(store, &id, |mut hook| {
                // A disabled hook starts afresh; a failing one keeps the
                // start of its failure, so retrying now and then cannot keep
                // a broken hook from being disabled after N days.
                hook.health = if hook.health.disabled.is_some() {
                    penalty::enable(&hook.health, now_ms)
                } else {
                    penalty::reset(&hook.health, now_ms)
                };
                Some(hook::Change {
                    hook,
                    also: Vec::new(),
                })
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such webhook"))?;
    state.delivery().wake.notify_one();
    Ok((StatusCode::ACCEPTED, axum::Json(view(&updated, now_ms))).into_response())
}

/// A new signing secret; the old one keeps signing for the overlap
/// (`[delivery] rotation_overlap_ms`, 24 h by default).
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Hook id")),
    responses(
        (status = 200, description = "Rotated; the new secret is shown only here", body = RotatedSecret),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such hook, or not yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<RotatedSecret>, ApiError> {
    owned(&state, &caller, &id).await?;
    let now_ms = state.now_ms();
    let expires_at_ms = now_ms + state.delivery().settings.rotation_overlap_ms;
    let secret = hook::new_secret();
    let new = secret.clone();
    state
        .blocking(move |store| {
            hook::update(store, &id, |mut hook| {
                // Two secrets sign at most: the new one, and the one it
                // replaces until the overlap ends (a rotation during an
                // overlap ends the older one's at once).
                let previous = hook.secrets.first().cloned().map(|mut old| {
                    old.expires_at_ms = Some(expires_at_ms);
                    old
                });
                let newest = Secret {
                    secret: new.clone(),
                    expires_at_ms: None,
                };
                hook.secrets = std::iter::once(newest).chain(previous).collect();
                Some(hook::Change {
                    hook,
                    also: Vec::new(),
                })
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such webhook"))?;
    Ok(axum::Json(RotatedSecret {
        secret,
        previous_expires_at: fieldsync_node::clock::rfc3339_ms(expires_at_ms),
    }))
}

/// Attempts to deliver this hook's notifications, oldest first.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Hook id"), AttemptQuery),
    responses(
        (status = 200, description = "Attempts", body = [AttemptRow]),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such hook, or not yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AttemptQuery>,
) -> Result<axum::Json<Vec<AttemptRow>>, ApiError> {
    owned(&state, &caller, &id).await?;
    let limit = super::query_integer(query.limit, "limit")?
        .map_or(ATTEMPTS_PAGE_MAX, |limit| {
            usize::try_from(limit).unwrap_or(ATTEMPTS_PAGE_MAX)
        })
        .clamp(1, ATTEMPTS_PAGE_MAX);
    let after = super::query_integer(query.after, "after")?.unwrap_or(0);
    let subject = attempts::hook_subject(&id);
    let rows = state
        .blocking(move |store| attempts::list(store, &subject, after, limit))
        .await?;
    Ok(axum::Json(rows))
}

/// Send an attempt's notification again (same id and body, new
/// timestamp and signature); the cursor does not move.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/deliveries/{attempt}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "Hook id"), ("attempt" = u64, Path, description = "Attempt number")),
    responses(
        (status = 200, description = "Sent; the new attempt", body = AttemptRow),
        (status = 403, description = "Scope `webhooks:manage` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such hook, attempt or notification (pruned)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(String, u64)>,
) -> Result<axum::Json<AttemptRow>, ApiError> {
    let hook = owned(&state, &caller, &id).await?;
    let subject = attempts::hook_subject(&id);
    let hook_id = hook.id.clone();
    let stored = state
        .blocking(move |store| {
            let Some(row) = attempts::get(store, &subject, number)? else {
                return Ok(None);
            };
            let Some(notification) = row.notification_id else {
                return Ok(None);
            };
            find_notification(store, &hook_id, &notification)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no notification for attempt {number}")))?;
    let attempt = dispatcher::send(&state, &hook, &stored.id, &stored.body).await;
    let now_ms = state.now_ms();
    let hook_key = id.clone();
    let row = state
        .blocking(move |store| {
            let mut written = None;
            hook::update(store, &hook_key, |mut hook| {
                hook.attempts += 1;
                let row = dispatcher::attempt_row(
                    &hook,
                    AttemptKind::Redelivery,
                    (&stored.id, stored.changes),
                    &attempt,
                    now_ms,
                );
                written = Some(row.clone());
                Some(hook::Change {
                    hook,
                    also: vec![attempts::write(&row)],
                })
            })?;
            written.ok_or_else(|| ApiError::not_found("no such webhook"))
        })
        .await?;
    Ok(axum::Json(row))
}

/// The stored notification with this id (test calls are not stored).
fn find_notification(
    store: &fieldsync_node::store::Store,
    hook_id: &str,
    notification_id: &str,
) -> Result<Option<StoredNotification>, ApiError> {
    let number = notification_id
        .rsplit('_')
        .next()
        .and_then(|n| n.parse::<u64>().ok());
    let Some(number) = number else {
        return Ok(None);
    };
    let key = hook::notification_key(hook_id, number);
    let Some(record) = store
        .record(hook::NOTIFICATIONS, &key)
        .map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    let stored: StoredNotification =
        serde_json::from_slice(&record.value).map_err(ApiError::internal)?;
    Ok((stored.id == notification_id).then_some(stored))
}
