//! A webhook as stored: its registration, its cursor over the changes
//! feed, its health, and the notification it is delivering.
//!
//! Why one record per hook holds all of that: the cursor, the frozen
//! notification and the health change together after every attempt, and a
//! record write is atomic and durable when acknowledged. Every change to a
//! hook is a compare-and-set on its version ([`update`]), so the
//! dispatcher and the API (retry, rotate, delete) never overwrite each
//! other. The notification body itself is a record of its own
//! (`webhook_notifications`), written in the same write set as the hook
//! that points at it, and kept for redelivery until retention removes it.

use fieldsync_node::store::{Expect, Record, RecordWrite, Store, WriteError, WriteSet};
use fieldsync_schemas::{Role, Scope};
use serde::{Deserialize, Serialize};

use super::penalty::Health;
use crate::error::ApiError;

/// Internal collections (declared in `schemas/src/collection.rs`).
pub(crate) const HOOKS: &str = "webhooks";
pub(crate) const NOTIFICATIONS: &str = "webhook_notifications";
/// Per (hook, work order): the status last notified (`state_changes_only`).
pub(crate) const STATES: &str = "webhook_states";

/// Compare-and-set retries of one [`update`] before giving up.
const UPDATE_TRIES_MAX: usize = 16;
/// Hooks listed per store read.
const LIST_PAGE_HOOKS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    Json,
    Xml,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml",
        }
    }
}

/// A signing secret (`whsec_` + base64); during a rotation the old one
/// signs too until `expires_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Secret {
    pub(crate) secret: String,
    #[serde(default)]
    pub(crate) expires_at_ms: Option<u64>,
}

/// Which changes a hook is told about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Filter {
    /// Entity kinds: `work_orders` and data collection names; empty: all.
    #[serde(default)]
    pub(crate) collections: Vec<String>,
    /// Only changes whose document has `field` equal to `value`.
    #[serde(default)]
    pub(crate) data: Option<DataFilter>,
    /// Only work orders whose status changed since last notified.
    #[serde(default)]
    pub(crate) state_changes_only: bool,
    /// Carry each document or record, not just ids.
    #[serde(default)]
    pub(crate) include_data: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DataFilter {
    pub(crate) field: String,
    pub(crate) value: String,
}

/// The notification being delivered: frozen once built, so every retry
/// sends the same id and body, and the cursor moves to `to_seq` only
/// after a 2xx.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) id: String,
    /// Key of its body in `webhook_notifications`.
    pub(crate) key: String,
    pub(crate) to_seq: u64,
    pub(crate) changes: u32,
}

/// Why a hook stopped delivering (besides its health's own reasons).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hook {
    pub(crate) id: String,
    /// The user who registered it: it sees what this user may see.
    pub(crate) owner: String,
    pub(crate) owner_role: Role,
    /// The scopes the owner's token held at registration (checked again
    /// against the user's scopes at every notification).
    pub(crate) owner_scopes: Vec<Scope>,
    pub(crate) url: String,
    pub(crate) format: Format,
    /// Newest first.
    pub(crate) secrets: Vec<Secret>,
    /// Sent back as the `secKey` header, for receivers that only compare a
    /// shared key (reference §5).
    #[serde(default)]
    pub(crate) sec_key: Option<String>,
    pub(crate) filter: Filter,
    pub(crate) created_at: String,
    /// The last seq this hook was told about (or skipped by its filters).
    pub(crate) cursor: u64,
    pub(crate) health: Health,
    #[serde(default)]
    pub(crate) pending: Option<Pending>,
    #[serde(default)]
    pub(crate) last_error: Option<String>,
    /// Attempts made so far (the next attempt's number is this + 1).
    #[serde(default)]
    pub(crate) attempts: u64,
    /// Notifications built so far (numbers their bodies' keys).
    #[serde(default)]
    pub(crate) notifications: u64,
    #[serde(default)]
    pub(crate) changes_delivered: u64,
    /// Alerts for operators waiting to be sent (`alerts.rs`).
    #[serde(default)]
    pub(crate) alerts: Vec<super::alerts::Alert>,
}

impl Hook {
    /// Secrets that still sign at `now_ms`.
    pub(crate) fn signing_secrets(&self, now_ms: u64) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at_ms.is_none_or(|at| at > now_ms))
            .map(|s| s.secret.as_str())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a hook serializes")
    }
}

/// Whether a hook with this owner and filter may deliver at all: an
/// integration client needs `webhooks:manage` and `changes:read` (what
/// `GET /api/v1/changes` needs), and `work-orders:read` for the filters
/// and data that read work orders; operators and technicians (their own
/// work orders only) need nothing more. Checked at registration and
/// before every notification, with the owner's scopes of now.
pub(crate) fn permitted(role: Role, scopes: &[Scope], filter: &Filter) -> Result<(), String> {
    if role != Role::Integration {
        return Ok(());
    }
    for needed in [Scope::WebhooksManage, Scope::ChangesRead] {
        if !scopes.contains(&needed) {
            return Err(format!("the owner lacks the `{}` scope", needed.as_str()));
        }
    }
    let reads_documents = filter.include_data || filter.data.is_some() || filter.state_changes_only;
    let work_orders =
        filter.collections.is_empty() || filter.collections.iter().any(|c| c == "work_orders");
    if reads_documents && work_orders && !scopes.contains(&Scope::WorkOrdersRead) {
        return Err(
            "the owner lacks the `work-orders:read` scope that data, data filters and \
             state changes of work orders need"
                .into(),
        );
    }
    Ok(())
}

/// The key of a notification body: per hook, in build order.
pub(crate) fn notification_key(hook_id: &str, number: u64) -> String {
    format!("{hook_id}/{number:012}")
}

/// A new hook's id.
pub(crate) fn new_id() -> String {
    format!("wh_{}", uuid::Uuid::new_v4().simple())
}

/// A new `whsec_` secret: 32 random bytes.
pub(crate) fn new_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn decode(record: &Record) -> Result<Hook, ApiError> {
    serde_json::from_slice(&record.value).map_err(ApiError::internal)
}

/// One hook and its record version.
pub(crate) fn load(store: &Store, id: &str) -> Result<Option<(Hook, u64)>, ApiError> {
    match store.record(HOOKS, id).map_err(ApiError::internal)? {
        Some(record) if !record.deleted => Ok(Some((decode(&record)?, record.version))),
        _ => Ok(None),
    }
}

/// Every hook, in id order (bounded pages).
pub(crate) fn list(store: &Store) -> Result<Vec<Hook>, ApiError> {
    let mut hooks = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .records(HOOKS, after.as_deref(), LIST_PAGE_HOOKS)
            .map_err(ApiError::internal)?;
        let full = page.len() == LIST_PAGE_HOOKS;
        for record in &page {
            hooks.push(decode(record)?);
        }
        if !full {
            return Ok(hooks);
        }
        after = page.last().map(|record| record.key.clone());
    }
}

/// What [`update`]'s change asks for besides the new hook.
pub(crate) struct Change {
    pub(crate) hook: Hook,
    /// Written in the same write set (a notification body, an attempt).
    pub(crate) also: Vec<RecordWrite>,
}

/// Change hook `id` with `change` (given the hook as stored now) and
/// store it, compare-and-set on its version, retrying when someone else
/// wrote it first. `change` returning `None` leaves the hook as it is.
/// Returns the stored hook, or `None` when the hook is gone.
pub(crate) fn update(
    store: &Store,
    id: &str,
    mut change: impl FnMut(Hook) -> Option<Change>,
) -> Result<Option<Hook>, ApiError> {
    for _ in 0..UPDATE_TRIES_MAX {
        let Some((hook, version)) = load(store, id)? else {
            return Ok(None);
        };
        let Some(Change { hook, also }) = change(hook.clone()) else {
            return Ok(Some(hook));
        };
        let mut records = vec![RecordWrite {
            collection: HOOKS.into(),
            key: id.into(),
            value: Some(hook.encode()),
            expect: Expect::Version(version),
            replicated_version: None,
        }];
        records.extend(also);
        let written = store.submit(WriteSet {
            records,
            ..WriteSet::default()
        });
        match written.and_then(|pending| pending.wait()) {
            Ok(_) => return Ok(Some(hook)),
            Err(WriteError::VersionMismatch { .. }) => continue,
            Err(error) => return Err(crate::error::store_write_error(error)),
        }
    }
    Err(ApiError::internal(format!(
        "hook {id}: {UPDATE_TRIES_MAX} concurrent updates in a row"
    )))
}

/// Remove a hook and its per-document states' anchor; its notifications
/// and attempts age out through retention.
pub(crate) fn delete(store: &Store, id: &str) -> Result<bool, ApiError> {
    match store.write_record(HOOKS, id, None, Expect::Present) {
        Ok(_) => Ok(true),
        Err(WriteError::VersionMismatch { .. }) => Ok(false),
        Err(error) => Err(crate::error::store_write_error(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_have_a_hook_deliver() {
        let ids = Filter::default();
        let data = Filter {
            include_data: true,
            ..Filter::default()
        };
        let records_data = Filter {
            include_data: true,
            collections: vec!["parts".into()],
            ..Filter::default()
        };
        use Scope::*;
        let cases: Vec<(Role, Vec<Scope>, &Filter, bool)> = vec![
            (Role::Operator, vec![], &data, true),
            (Role::Technician, vec![], &data, true),
            (
                Role::Integration,
                vec![WebhooksManage, ChangesRead],
                &ids,
                true,
            ),
            (Role::Integration, vec![WebhooksManage], &ids, false),
            (Role::Integration, vec![ChangesRead], &ids, false),
            (
                Role::Integration,
                vec![WebhooksManage, ChangesRead],
                &data,
                false,
            ),
            (
                Role::Integration,
                vec![WebhooksManage, ChangesRead, WorkOrdersRead],
                &data,
                true,
            ),
            // Records' data is judged by the records' read grants.
            (
                Role::Integration,
                vec![WebhooksManage, ChangesRead],
                &records_data,
                true,
            ),
        ];
        for (role, scopes, filter, allowed) in cases {
            assert_eq!(
                permitted(role, &scopes, filter).is_ok(),
                allowed,
                "{role:?} {scopes:?} {filter:?}"
            );
        }
    }
}
