//! Alerts to operators' hooks: when a hook is disabled (its receiver
//! answered 410, or it failed for `disable_after_days`), every enabled
//! hook an operator registered is told so, as a notification of its own.
//!
//! Why queued in the hook and frozen like any notification: an alert must
//! survive a restart and be retried like a change notification, and must
//! not take the receiver's changes out of order. Each operator hook keeps
//! a bounded queue (`ALERTS_QUEUED_MAX`, oldest dropped first); the
//! dispatcher freezes the first queued alert before reading the feed, and
//! its delivery does not move the hook's cursor.

use fieldsync_node::store::{Expect, RecordWrite, Store};
use fieldsync_schemas::Role;
use serde::{Deserialize, Serialize};

use super::hook::{self, Change, Format, Hook, Pending, NOTIFICATIONS};
use super::notification::escape_xml;
use crate::error::ApiError;

/// Alerts waiting in one hook, at most.
pub(crate) const ALERTS_QUEUED_MAX: usize = 16;

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Alert {
    /// `webhook_disabled`.
    pub(crate) kind: String,
    pub(crate) hook_id: String,
    pub(crate) url: String,
    /// `gone` or `failing_too_long`.
    pub(crate) reason: String,
    pub(crate) at_ms: u64,
}

/// Queue an alert that `disabled` was disabled on every other enabled
/// hook an operator owns.
pub(crate) fn queue_disabled(store: &Store, disabled: &Hook, now_ms: u64) -> Result<(), ApiError> {
    let reason = match &disabled.health.disabled {
        Some(super::penalty::Disabled::Gone { .. }) => "gone",
        Some(super::penalty::Disabled::FailingTooLong { .. }) => "failing_too_long",
        None => return Ok(()),
    };
    let alert = Alert {
        kind: "webhook_disabled".into(),
        hook_id: disabled.id.clone(),
        url: shown_url(&disabled.url),
        reason: reason.into(),
        at_ms: now_ms,
    };
    for target in hook::list(store)? {
        let operator_now = store
            .user(&target.owner)
            .map_err(ApiError::internal)?
            .is_some_and(|user| !user.revoked && user.role == Role::Operator);
        let wanted = target.id != disabled.id
            && target.owner_role == Role::Operator
            && operator_now
            && target.health.disabled.is_none();
        if !wanted {
            continue;
        }
        hook::update(store, &target.id, |mut now| {
            if now.alerts.len() >= ALERTS_QUEUED_MAX {
                now.alerts.remove(0);
            }
            now.alerts.push(alert.clone());
            Some(Change {
                hook: now,
                also: Vec::new(),
            })
        })?;
    }
    Ok(())
}

/// A hook's URL as an alert shows it to others: scheme, host, port and
/// path; never a query or credentials, which often carry tokens.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            format!(
                "{}://{}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or("?"),
                parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + parsed.path()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// The body of an alert notification in the target hook's format.
fn body(hook: &Hook, notification_id: &str, alert: &Alert) -> String {
    let at = fieldsync_node::clock::rfc3339_ms(alert.at_ms);
    match hook.format {
        Format::Json => serde_json::json!({
            "type": "alert",
            "hook_id": hook.id,
            "notification_id": notification_id,
            "alert": {
                "kind": alert.kind,
                "hook_id": alert.hook_id,
                "url": alert.url,
                "reason": alert.reason,
                "at": at,
            },
        })
        .to_string(),
        Format::Xml => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><alert hook_id=\"{}\" notification_id=\"{}\" kind=\"{}\" disabled_hook_id=\"{}\" url=\"{}\" reason=\"{}\" at=\"{at}\"/>",
            escape_xml(&hook.id),
            escape_xml(notification_id),
            escape_xml(&alert.kind),
            escape_xml(&alert.hook_id),
            escape_xml(&alert.url),
            escape_xml(&alert.reason),
        ),
    }
}

/// Freeze the hook's first queued alert as its pending notification;
/// the stored hook and the body, or `None` when it has none (or someone
/// else changed it first).
pub(crate) fn freeze(
    store: &Store,
    hook: &Hook,
    now_ms: u64,
) -> Result<Option<(Hook, String)>, ApiError> {
    let Some(alert) = hook.alerts.first() else {
        return Ok(None);
    };
    let number = hook.notifications + 1;
    let id = format!("msg_{}_{number}", hook.id.trim_start_matches("wh_"));
    let key = hook::notification_key(&hook.id, number);
    let text = body(hook, &id, alert);
    let stored = super::dispatcher::StoredNotification {
        id: id.clone(),
        hook_id: hook.id.clone(),
        to_seq: hook.cursor,
        changes: 0,
        body: text.clone(),
        content_type: hook.format.content_type().into(),
        at_ms: now_ms,
    };
    let value = serde_json::to_vec(&stored).map_err(ApiError::internal)?;
    let first = alert.clone();
    let frozen = hook::update(store, &hook.id, |mut now| {
        if now.pending.is_some() || now.alerts.first() != Some(&first) {
            return None;
        }
        now.alerts.remove(0);
        now.notifications = number;
        now.pending = Some(Pending {
            id: id.clone(),
            key: key.clone(),
            to_seq: now.cursor,
            changes: 0,
        });
        Some(Change {
            hook: now,
            also: vec![RecordWrite {
                collection: NOTIFICATIONS.into(),
                key: key.clone(),
                value: Some(value.clone()),
                expect: Expect::Any,
                replicated_version: None,
            }],
        })
    })?;
    Ok(frozen
        .filter(|hook| hook.pending.as_ref().is_some_and(|p| p.key == key))
        .map(|hook| (hook, text)))
}
