//! The webhook dispatcher: for every hook, read the changes feed from its
//! cursor as its owner sees it, freeze a notification, deliver it, and
//! move the cursor only after a 2xx.
//!
//! Why this order makes delivery at-least-once and ordered per hook: a
//! notification is stored (body and the hook's pointer to it, one write
//! set) before its first attempt, so a crash mid-delivery resends the same
//! id and body after the restart; the cursor moves past a notification's
//! changes in the same write as the attempt that got its 2xx, so nothing
//! is skipped; and a hook has at most one notification in flight, so
//! receivers see them in cursor order. Retries are the pure scheduler's
//! decision (`penalty.rs`); this task only waits for what it says.
//!
//! Bounded: at most `hooks_concurrent_max` hooks deliver at once, each
//! delivers at most `NOTIFICATIONS_PER_TURN` notifications before another
//! hook gets its turn, and a feed read scans at most `scan_entries_max`.

use std::collections::HashMap;

use std::time::Duration;

use fieldsync_node::access::Viewer;
use fieldsync_node::feed::{self, FeedAccess, FeedQuery};
use fieldsync_node::store::{Expect, RecordWrite, Store};
use fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX;
use fieldsync_schemas::{Role, Scope};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::attempts::{self, AttemptKind, AttemptRow};
use super::client::AttemptOutcome;
use super::hook::{self, Change, Hook, Pending, NOTIFICATIONS, STATES};
use super::notification::{self, Documents, Envelope};
use super::penalty::{self, Outcome};
use super::signing;
use crate::error::ApiError;
use crate::state::AppState;

/// The smallest body budget `fit` tries: one change without its data
/// always fits in it.
const NOTIFICATION_BYTES_MIN: usize = 2048;
/// Notifications one hook delivers in a row before others get a turn.
const NOTIFICATIONS_PER_TURN: usize = 16;
/// With nothing due, look at the hooks again after this long anyway.
const IDLE_RESCAN_MS: u64 = 30_000;
/// Sleep at most this long between looks at the hooks, so a clock that
/// jumps (or a test's manual clock) is noticed within a second.
const SLEEP_MS_MAX: u64 = 1_000;

/// After a turn that made no progress (an owner revoked, an error), the
/// hook is left alone this long: nothing spins.
const NO_PROGRESS_BACKOFF_MS: u64 = 10_000;

/// The task's own state: turns running, and hooks resting after a turn
/// without progress.
#[derive(Default)]
struct Turns {
    running: JoinSet<bool>,
    hook_of: HashMap<tokio::task::Id, String>,
    resting_until_ms: HashMap<String, u64>,
    /// Where the next look at the hooks starts (round robin, so a few slow
    /// hooks cannot keep the others waiting for a slot).
    start: usize,
}

/// Run until `stop` turns true.
pub(crate) async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut seq = state.store().watch_seq();
    let mut turns = Turns::default();
    tracing::info!("webhook dispatcher running");
    loop {
        let wake_at_ms = match schedule(&state, &mut turns).await {
            Ok(at) => at,
            Err(error) => {
                tracing::error!(?error, "webhook dispatcher: listing hooks failed");
                state.now_ms() + IDLE_RESCAN_MS
            }
        };
        let sleep_ms = wake_at_ms
            .saturating_sub(state.now_ms())
            .clamp(1, SLEEP_MS_MAX);
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => break,
            changed = seq.changed() => {
                if changed.is_err() { break; }
            }
            () = state.delivery().wake.notified() => turns.resting_until_ms.clear(),
            Some(done) = turns.running.join_next_with_id() => {
                let (task, progressed) = match done {
                    Ok((task, progressed)) => (task, progressed),
                    Err(error) => {
                        tracing::error!(%error, "webhook turn panicked");
                        (error.id(), false)
                    }
                };
                if let Some(hook) = turns.hook_of.remove(&task) {
                    if !progressed {
                        let until = state.now_ms() + NO_PROGRESS_BACKOFF_MS;
                        turns.resting_until_ms.insert(hook, until);
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
        }
    }
    turns.running.shutdown().await;
    tracing::info!("webhook dispatcher stopped");
}

/// Start a turn for every hook with work that is due; returns when to
/// look again.
async fn schedule(state: &AppState, turns: &mut Turns) -> Result<u64, ApiError> {
    let mut hooks = state.blocking(hook::list).await?;
    let now_ms = state.now_ms();
    let last_seq = state.store().last_seq();
    let concurrent_max = state.delivery().settings.hooks_concurrent_max;
    let mut wake_at_ms = now_ms + IDLE_RESCAN_MS;
    turns.resting_until_ms.retain(|_, until| *until > now_ms);
    if !hooks.is_empty() {
        let start = turns.start % hooks.len();
        hooks.rotate_left(start);
        turns.start = start + 1;
    }
    for hook in hooks {
        let busy = turns.hook_of.values().any(|id| *id == hook.id);
        let has_work = hook.pending.is_some() || !hook.alerts.is_empty() || hook.cursor < last_seq;
        if busy || hook.health.disabled.is_some() || !has_work {
            continue;
        }
        if let Some(until) = turns.resting_until_ms.get(&hook.id) {
            wake_at_ms = wake_at_ms.min(*until);
            continue;
        }
        if !penalty::due(&hook.health, now_ms) {
            wake_at_ms = wake_at_ms.min(hook.health.next_attempt_at_ms);
            continue;
        }
        if turns.hook_of.len() >= concurrent_max {
            break;
        }
        let state = state.clone();
        let id = hook.id.clone();
        let task = turns.running.spawn(async move {
            match turn(&state, &id).await {
                Ok(progressed) => progressed,
                Err(error) => {
                    tracing::warn!(hook = %id, ?error, "webhook turn failed");
                    false
                }
            }
        });
        turns.hook_of.insert(task.id(), hook.id);
    }
    Ok(wake_at_ms)
}

/// What `prepare` found to do.
enum Next {
    /// Send this (the hook's pending notification) now.
    Send(Box<Hook>, String),
    /// Nothing to send now; `progressed` when the cursor moved past pages
    /// none of whose changes the hook wants.
    Idle { progressed: bool },
}

/// Deliver up to `NOTIFICATIONS_PER_TURN` notifications of one hook;
/// returns whether anything moved (an attempt made, the cursor advanced).
async fn turn(state: &AppState, id: &str) -> Result<bool, ApiError> {
    let mut progressed = false;
    for _ in 0..NOTIFICATIONS_PER_TURN {
        let id_owned = id.to_string();
        let now_ms = state.now_ms();
        let settings = state.delivery().settings.clone();
        let config = state.config().clone();
        let next = state
            .blocking(move |store| prepare(store, &id_owned, now_ms, &settings, &config))
            .await?;
        let (hook, body) = match next {
            Next::Send(hook, body) => (hook, body),
            Next::Idle { progressed: moved } => return Ok(progressed || moved),
        };
        progressed = true;
        let delivered = deliver(state, &hook, &body, AttemptKind::Delivery).await?;
        if !delivered {
            return Ok(true);
        }
    }
    Ok(progressed)
}

/// The hook's frozen notification and its body, building and freezing one
/// when none is pending.
fn prepare(
    store: &Store,
    id: &str,
    now_ms: u64,
    settings: &super::Settings,
    config: &crate::GatewayConfig,
) -> Result<Next, ApiError> {
    let mut progressed = false;
    for _ in 0..NOTIFICATIONS_PER_TURN {
        let Some((hook, _)) = hook::load(store, id)? else {
            return Ok(Next::Idle { progressed });
        };
        if hook.health.disabled.is_some() || !penalty::due(&hook.health, now_ms) {
            return Ok(Next::Idle { progressed });
        }
        // Nothing leaves for an owner who may no longer have it, frozen
        // notifications and alerts included.
        let scopes = match owner_access(store, &hook)? {
            Ok(scopes) => scopes,
            Err(reason) => {
                note_blocked(store, &hook, &reason)?;
                return Ok(Next::Idle { progressed });
            }
        };
        if let Some(pending) = &hook.pending {
            let body = notification_body(store, &pending.key)?;
            return Ok(Next::Send(Box::new(hook), body));
        }
        if !hook.alerts.is_empty() {
            match super::alerts::freeze(store, &hook, now_ms)? {
                Some((hook, body)) => return Ok(Next::Send(Box::new(hook), body)),
                None => continue,
            }
        }
        if hook.cursor >= store.last_seq() {
            return Ok(Next::Idle { progressed });
        }
        match build(store, &hook, &scopes, now_ms, settings, config)? {
            Built::Nothing => return Ok(Next::Idle { progressed }),
            Built::Skipped => progressed = true,
            Built::Frozen(hook, body) => return Ok(Next::Send(hook, body)),
        }
    }
    Ok(Next::Idle { progressed })
}

/// Record why a hook delivers nothing (once per reason).
fn note_blocked(store: &Store, hook: &Hook, reason: &str) -> Result<(), ApiError> {
    if hook.last_error.as_deref() == Some(reason) {
        return Ok(());
    }
    tracing::warn!(hook = %hook.id, owner = %hook.owner, %reason, "webhook paused");
    hook::update(store, &hook.id, |mut now| {
        now.last_error = Some(reason.to_string());
        Some(Change {
            hook: now,
            also: Vec::new(),
        })
    })?;
    Ok(())
}

fn notification_body(store: &Store, key: &str) -> Result<String, ApiError> {
    let record = store
        .record(NOTIFICATIONS, key)
        .map_err(ApiError::internal)?
        .filter(|record| !record.deleted)
        .ok_or_else(|| ApiError::internal(format!("notification {key} is missing")))?;
    let stored: StoredNotification =
        serde_json::from_slice(&record.value).map_err(ApiError::internal)?;
    Ok(stored.body)
}

/// A frozen notification as stored in `webhook_notifications`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredNotification {
    pub(crate) id: String,
    pub(crate) hook_id: String,
    pub(crate) to_seq: u64,
    pub(crate) changes: u32,
    pub(crate) body: String,
    pub(crate) content_type: String,
    pub(crate) at_ms: u64,
}

enum Built {
    /// The feed has nothing after the cursor.
    Nothing,
    /// A page was read and nothing in it passed the filters: the cursor
    /// moved past it.
    Skipped,
    Frozen(Box<Hook>, String),
}

/// The owner's scopes of now (those it registered with and still holds),
/// or why the hook may deliver nothing: the owner is gone, revoked, has
/// another role, or lacks a scope the hook needs (`hook::permitted`).
fn owner_access(store: &Store, hook: &Hook) -> Result<Result<Vec<Scope>, String>, ApiError> {
    let Some(user) = store.user(&hook.owner).map_err(ApiError::internal)? else {
        return Ok(Err(format!("the owner `{}` no longer exists", hook.owner)));
    };
    if user.revoked {
        return Ok(Err(format!("the owner `{}` is revoked", hook.owner)));
    }
    if user.role != hook.owner_role {
        return Ok(Err(format!("the owner `{}` changed role", hook.owner)));
    }
    let scopes: Vec<Scope> = hook
        .owner_scopes
        .iter()
        .copied()
        .filter(|scope| user.scopes.contains(scope))
        .collect();
    Ok(hook::permitted(user.role, &scopes, &hook.filter).map(|()| scopes))
}

fn build(
    store: &Store,
    hook: &Hook,
    scopes: &[Scope],
    now_ms: u64,
    settings: &super::Settings,
    config: &crate::GatewayConfig,
) -> Result<Built, ApiError> {
    let viewer = match hook.owner_role {
        Role::Operator => Viewer::Office,
        role => Viewer::User {
            id: &hook.owner,
            role,
            scopes,
        },
    };
    let access = FeedAccess {
        viewer,
        configured: &config.read_grants,
        now_ms,
        grace_ms: config.grace_ms,
    };
    let only = (hook.filter.collections.len() == 1).then(|| hook.filter.collections[0].as_str());
    let query = FeedQuery {
        since: hook.cursor,
        limit: settings.notification_changes_max,
        collection: only,
        scan_max: config.scan_entries_max,
    };
    let page = feed::read_page(store, &access, &query).map_err(ApiError::internal)?;
    let mut documents = StoreDocuments { store, hook };
    let kept = notification::select(&page.entries, &hook.filter, &mut documents)?;
    if kept.is_empty() {
        if page.last_seq <= hook.cursor {
            return Ok(Built::Nothing);
        }
        advance_cursor(store, hook, page.last_seq)?;
        return Ok(Built::Skipped);
    }
    freeze(store, hook, &kept, page.last_seq, now_ms, settings)
}

/// Move a hook's cursor past a page none of whose changes it wants.
fn advance_cursor(store: &Store, hook: &Hook, to_seq: u64) -> Result<(), ApiError> {
    let from = hook.cursor;
    hook::update(store, &hook.id, |mut now| {
        if now.cursor != from || now.pending.is_some() {
            return None;
        }
        now.cursor = to_seq;
        Some(Change {
            hook: now,
            also: Vec::new(),
        })
    })?;
    Ok(())
}

fn freeze(
    store: &Store,
    hook: &Hook,
    kept: &[notification::Kept],
    page_last_seq: u64,
    now_ms: u64,
    settings: &super::Settings,
) -> Result<Built, ApiError> {
    let number = hook.notifications + 1;
    let notification_id = format!("msg_{}_{number}", hook.id.trim_start_matches("wh_"));
    let (body, to_seq, value) = fit(
        hook,
        kept,
        page_last_seq,
        &notification_id,
        now_ms,
        settings,
    )?;
    let carried = &kept[..body.changes];
    let key = hook::notification_key(&hook.id, number);
    let mut also = vec![RecordWrite {
        collection: NOTIFICATIONS.into(),
        key: key.clone(),
        value: Some(value),
        expect: Expect::Any,
        replicated_version: None,
    }];
    for change in carried {
        if let Some(status) = &change.status {
            also.push(RecordWrite {
                collection: STATES.into(),
                key: format!("{}/{}", hook.id, change.entry.id),
                value: Some(
                    serde_json::to_vec(&serde_json::json!({ "status": status })).expect("json"),
                ),
                expect: Expect::Any,
                replicated_version: None,
            });
        }
    }
    let from = hook.cursor;
    let frozen = hook::update(store, &hook.id, |mut now| {
        if now.cursor != from || now.pending.is_some() {
            return None;
        }
        now.notifications = number;
        now.pending = Some(Pending {
            id: notification_id.clone(),
            key: key.clone(),
            to_seq,
            changes: body.changes as u32,
        });
        Some(Change {
            hook: now,
            also: also.clone(),
        })
    })?;
    match frozen {
        Some(hook) if hook.pending.as_ref().is_some_and(|p| p.key == key) => {
            Ok(Built::Frozen(Box::new(hook), body.text))
        }
        _ => Ok(Built::Nothing),
    }
}

/// Render the notification so that its stored form (the body inside a
/// JSON record, where escaping can grow it) fits one record: the body
/// budget halves until it does; a lone change past it goes without data.
fn fit(
    hook: &Hook,
    kept: &[notification::Kept],
    page_last_seq: u64,
    notification_id: &str,
    now_ms: u64,
    settings: &super::Settings,
) -> Result<(notification::Body, u64, Vec<u8>), ApiError> {
    let envelope = Envelope {
        hook_id: &hook.id,
        notification_id,
    };
    let mut budget = settings.notification_bytes_max;
    loop {
        let body = notification::render(&envelope, kept, hook.format, budget);
        // All kept changes fit: the cursor may pass the whole page scanned.
        let to_seq = if body.changes == kept.len() {
            page_last_seq
        } else {
            kept[body.changes - 1].entry.seq
        };
        let stored = StoredNotification {
            id: notification_id.to_string(),
            hook_id: hook.id.clone(),
            to_seq,
            changes: body.changes as u32,
            body: body.text.clone(),
            content_type: hook.format.content_type().into(),
            at_ms: now_ms,
        };
        let value = serde_json::to_vec(&stored).map_err(ApiError::internal)?;
        if value.len() <= RECORD_VALUE_BYTES_MAX || budget <= NOTIFICATION_BYTES_MIN {
            return Ok((body, to_seq, value));
        }
        budget = (budget / 2).max(NOTIFICATION_BYTES_MIN);
    }
}

/// What the filters read, from the store.
struct StoreDocuments<'a> {
    store: &'a Store,
    hook: &'a Hook,
}

impl Documents for StoreDocuments<'_> {
    fn work_order(&mut self, id: &str) -> Result<Option<Value>, ApiError> {
        let view = self.store.work_order(id).map_err(ApiError::internal)?;
        Ok(view
            .map(crate::api::model::WorkOrder::from)
            .map(|wo| serde_json::to_value(wo).expect("a work order serializes")))
    }

    fn record(&mut self, collection: &str, key: &str) -> Result<Option<Value>, ApiError> {
        let record = self
            .store
            .record(collection, key)
            .map_err(ApiError::internal)?;
        Ok(record
            .filter(|record| !record.deleted)
            .and_then(|record| serde_json::from_slice(&record.value).ok()))
    }

    fn last_status(&mut self, id: &str) -> Result<Option<String>, ApiError> {
        let key = format!("{}/{id}", self.hook.id);
        let record = self
            .store
            .record(STATES, &key)
            .map_err(ApiError::internal)?;
        Ok(record
            .filter(|record| !record.deleted)
            .and_then(|record| serde_json::from_slice::<Value>(&record.value).ok())
            .and_then(|value| {
                value
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }))
    }
}

/// Send `body` (the hook's pending notification) once and record the
/// attempt; a `Delivery` moves the cursor on success. Returns whether it
/// was delivered.
pub(crate) async fn deliver(
    state: &AppState,
    hook: &Hook,
    body: &str,
    kind: AttemptKind,
) -> Result<bool, ApiError> {
    let pending = hook
        .pending
        .clone()
        .ok_or_else(|| ApiError::internal("deliver without a pending notification"))?;
    let attempt = send(state, hook, &pending.id, body).await;
    let now_ms = state.now_ms();
    let success = error_of(&attempt.outcome).is_none();
    let policy = state.delivery().settings.policy.clone();
    let outcome = outcome_of(&attempt.outcome);
    let row_of = move |hook: &Hook| {
        attempt_row(hook, kind, (&pending.id, pending.changes), &attempt, now_ms)
    };
    let hook_id = hook.id.clone();
    let key = pending.key.clone();
    let stored = state
        .blocking(move |store| {
            let mut became_disabled = false;
            let stored = hook::update(store, &hook_id, |mut now| {
                now.attempts += 1;
                let row = row_of(&now);
                let before = now.health.disabled.clone();
                now.health = penalty::after_attempt(&now.health, &outcome, now_ms, &policy);
                now.last_error = row
                    .error
                    .clone()
                    .or(now.last_error.take().filter(|_| !success));
                if success && now.pending.as_ref().is_some_and(|p| p.key == key) {
                    let done = now.pending.take().expect("checked");
                    now.cursor = now.cursor.max(done.to_seq);
                    now.changes_delivered += u64::from(done.changes);
                }
                became_disabled = before.is_none() && now.health.disabled.is_some();
                Some(Change {
                    also: vec![attempts::write(&row)],
                    hook: now,
                })
            })?;
            if let Some(hook) = stored.as_ref().filter(|_| became_disabled) {
                report_disabled(hook);
                super::alerts::queue_disabled(store, hook, now_ms)?;
            }
            Ok(stored)
        })
        .await?;
    if stored.is_some() {
        metrics::counter!("fieldsync_webhook_attempts_total", "success" => success.to_string())
            .increment(1);
    }
    Ok(success)
}

/// The attempt-log row of `attempt`, the hook's attempt number
/// `hook.attempts`, sending `notification` (id, changes).
pub(crate) fn attempt_row(
    hook: &Hook,
    kind: AttemptKind,
    notification: (&str, u32),
    attempt: &super::client::Attempt,
    now_ms: u64,
) -> AttemptRow {
    let error = error_of(&attempt.outcome);
    AttemptRow {
        subject: attempts::hook_subject(&hook.id),
        attempt: hook.attempts,
        kind,
        success: error.is_none(),
        at: fieldsync_node::clock::rfc3339_ms(now_ms),
        at_ms: now_ms,
        notification_id: Some(notification.0.to_string()),
        changes: notification.1,
        status: status_of(&attempt.outcome),
        duration_ms: attempt.duration_ms,
        error,
        response: response_of(&attempt.outcome, hook.owner_role),
    }
}

/// Sign and send one notification body to the hook's URL.
pub(crate) async fn send(
    state: &AppState,
    hook: &Hook,
    notification_id: &str,
    body: &str,
) -> super::client::Attempt {
    let now_ms = state.now_ms();
    let headers = signing::headers(
        notification_id,
        (now_ms / 1000) as i64,
        body,
        hook.format.content_type(),
        hook.signing_secrets(now_ms),
        hook.sec_key.as_deref(),
    );
    match headers {
        Ok(headers) => {
            state
                .delivery()
                .post(&hook.url, headers, bytes::Bytes::from(body.to_string()))
                .await
        }
        Err(error) => super::client::Attempt {
            outcome: AttemptOutcome::Failed {
                reason: error.to_string(),
            },
            duration_ms: 0,
        },
    }
}

fn report_disabled(hook: &Hook) {
    tracing::error!(
        hook = %hook.id,
        owner = %hook.owner,
        url = %hook.url,
        reason = ?hook.health.disabled,
        "webhook disabled"
    );
    metrics::counter!("fieldsync_webhooks_disabled_total").increment(1);
}

pub(crate) fn outcome_of(outcome: &AttemptOutcome) -> Outcome {
    match outcome {
        AttemptOutcome::Answered { status, .. } if (200..300).contains(status) => {
            Outcome::Delivered
        }
        AttemptOutcome::Answered {
            status,
            retry_after_ms,
            ..
        } => Outcome::Status {
            status: *status,
            retry_after_ms: *retry_after_ms,
        },
        AttemptOutcome::Timeout => Outcome::Timeout,
        AttemptOutcome::ConnectFailed { .. } => Outcome::ConnectFailed,
        AttemptOutcome::Refused { .. } => Outcome::Refused,
        AttemptOutcome::Failed { .. } => Outcome::Failed,
    }
}

pub(crate) fn status_of(outcome: &AttemptOutcome) -> Option<u16> {
    match outcome {
        AttemptOutcome::Answered { status, .. } => Some(*status),
        _ => None,
    }
}

pub(crate) fn error_of(outcome: &AttemptOutcome) -> Option<String> {
    match outcome {
        AttemptOutcome::Answered { status, .. } if (200..300).contains(status) => None,
        AttemptOutcome::Answered { status, .. } => Some(format!("the receiver answered {status}")),
        AttemptOutcome::Timeout => Some("no answer within the delivery timeout".into()),
        AttemptOutcome::ConnectFailed { reason }
        | AttemptOutcome::Refused { reason }
        | AttemptOutcome::Failed { reason } => Some(reason.clone()),
    }
}

/// The start of the receiver's answer, kept in the attempt log for
/// operators' hooks only: for anyone else it would make a hook a way to
/// read what an allowed internal address answers.
pub(crate) fn response_of(outcome: &AttemptOutcome, owner_role: Role) -> Option<String> {
    if owner_role != Role::Operator {
        return None;
    }
    match outcome {
        AttemptOutcome::Answered { body_prefix, .. } if !body_prefix.is_empty() => {
            Some(String::from_utf8_lossy(body_prefix).into_owned())
        }
        _ => None,
    }
}
