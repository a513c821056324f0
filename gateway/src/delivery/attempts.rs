//! The delivery log: one row per attempt to deliver a webhook notification
//! or to execute a command, in the internal collection `delivery_attempts`.
//!
//! Why one log for both: DESIGN.md ("Delivery, retries and retention")
//! wants every attempt as a row with the same fields, and one retention
//! job for all of them. Keys are `<subject>/<attempt number>`, with the
//! subject `hook:<id>` or `command:<id>`, so one subject's attempts are a
//! key range, in order.

use fieldsync_node::store::{Expect, RecordWrite, Store};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub(crate) const ATTEMPTS: &str = "delivery_attempts";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// A notification from the hook's cursor.
    Delivery,
    /// The signed test call made when a hook is registered.
    Test,
    /// A notification sent again on request.
    Redelivery,
    /// A command's execution, as its subscriber reported it.
    Command,
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRow {
    /// `hook:<id>` or `command:<id>`.
    pub subject: String,
    /// 1, 2, ... per subject.
    pub attempt: u64,
    pub kind: AttemptKind,
    pub success: bool,
    /// When the attempt ended (RFC 3339).
    pub at: String,
    #[serde(skip)]
    #[schema(ignore)]
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
    /// Changes the notification carried.
    #[serde(default)]
    pub changes: u32,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the receiver's answer (capped at `response_bytes_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// The stored form: `at_ms` is kept (retention needs it) but not shown.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    row: AttemptRow,
    at_ms: u64,
}

pub(crate) fn hook_subject(hook_id: &str) -> String {
    format!("hook:{hook_id}")
}

pub(crate) fn command_subject(command_id: &str) -> String {
    format!("command:{command_id}")
}

pub(crate) fn key(subject: &str, attempt: u64) -> String {
    format!("{subject}/{attempt:012}")
}

/// The write that stores `row` (in the caller's write set).
pub(crate) fn write(row: &AttemptRow) -> RecordWrite {
    let stored = Stored {
        row: row.clone(),
        at_ms: row.at_ms,
    };
    RecordWrite {
        collection: ATTEMPTS.into(),
        key: key(&row.subject, row.attempt),
        value: Some(serde_json::to_vec(&stored).expect("an attempt serializes")),
        expect: Expect::Any,
        replicated_version: None,
    }
}

/// One attempt of `subject`.
pub(crate) fn get(
    store: &Store,
    subject: &str,
    attempt: u64,
) -> Result<Option<AttemptRow>, ApiError> {
    let Some(record) = store
        .record(ATTEMPTS, &key(subject, attempt))
        .map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    if record.deleted {
        return Ok(None);
    }
    decode(&record.value).map(Some)
}

fn decode(bytes: &[u8]) -> Result<AttemptRow, ApiError> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(ApiError::internal)?;
    Ok(AttemptRow {
        at_ms: stored.at_ms,
        ..stored.row
    })
}

/// Attempts of `subject` after attempt number `after`, at most `limit`,
/// oldest first.
pub(crate) fn list(
    store: &Store,
    subject: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<AttemptRow>, ApiError> {
    let start = key(subject, after);
    let prefix = format!("{subject}/");
    let records = store
        .records(ATTEMPTS, Some(&start), limit)
        .map_err(ApiError::internal)?;
    records
        .iter()
        .take_while(|record| record.key.starts_with(&prefix))
        .map(|record| decode(&record.value))
        .collect()
}

/// Retention's view of a page of the log, from key `after` on: (key,
/// subject, when, success) per row.
pub(crate) fn page_for_retention(
    store: &Store,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, String, u64, bool)>, ApiError> {
    let records = store
        .records(ATTEMPTS, after, limit)
        .map_err(ApiError::internal)?;
    records
        .iter()
        .map(|record| {
            let row = decode(&record.value)?;
            Ok((record.key.clone(), row.subject, row.at_ms, row.success))
        })
        .collect()
}
