//! Asynchronous commands as stored: pending ones apart from the execution
//! history, and typed log rows per execution (reference §4).
//!
//! Why three collections: subscribers poll `commands` (pending only), so
//! their scan never grows with history; a finished command moves to
//! `command_history` in the same write set as its last attempt and logs;
//! `command_logs` rows are keyed `<command>/<attempt>/<n>`, so one
//! command's logs are a key range, and retention prunes them by age. The
//! lifecycle itself (retry formula, dead after `attempts_max`) is the pure
//! `command_schedule.rs`.

use fieldsync_node::store::{Expect, Record, RecordWrite, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command_schedule::{CommandState, Progress, RetryRule};
use crate::error::ApiError;

pub(crate) const PENDING: &str = "commands";
pub(crate) const HISTORY: &str = "command_history";
pub(crate) const LOGS: &str = "command_logs";

/// Pending commands read per store call.
const SCAN_PAGE_COMMANDS: usize = 512;

/// One command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Command {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) payload: Value,
    /// Who executes it: an integration client's or a site's id.
    pub(crate) subscriber: String,
    pub(crate) publisher: String,
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
    pub(crate) created_at: String,
    /// The retry rule in force when it was published.
    pub(crate) rule: RetryRule,
    pub(crate) progress: Progress,
}

impl Command {
    pub(crate) fn finished(&self) -> bool {
        !matches!(self.progress.state, CommandState::Pending { .. })
    }
}

/// One log row of an execution (type 0 info, 1 warning, 2 error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct LogRow {
    pub id: String,
    pub command_id: String,
    /// The execution (attempt) it belongs to.
    pub attempt: u32,
    /// 0 info, 1 warning, 2 error.
    #[serde(rename = "type")]
    pub kind: u8,
    pub text: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub at_ms: u64,
}

/// Stored form of a log row (keeps `at_ms`, which retention reads).
#[derive(Serialize, Deserialize)]
struct StoredLog {
    #[serde(flatten)]
    row: LogRow,
    at_ms: u64,
}

pub(crate) fn log_key(command_id: &str, attempt: u32, n: usize) -> String {
    format!("{command_id}/{attempt:06}/{n:04}")
}

pub(crate) fn log_write(row: &LogRow) -> RecordWrite {
    let stored = StoredLog {
        row: row.clone(),
        at_ms: row.at_ms,
    };
    RecordWrite {
        collection: LOGS.into(),
        key: row.id.clone(),
        value: Some(serde_json::to_vec(&stored).expect("a log row serializes")),
        expect: Expect::Any,
        replicated_version: None,
    }
}

/// A command's id: from the publisher's idempotency key when given (so a
/// repeated publish finds the first), else random.
pub(crate) fn command_id(publisher: &str, idempotency_key: Option<&str>) -> String {
    use sha2::Digest as _;
    match idempotency_key {
        Some(key) => {
            let digest = sha2::Sha256::digest(format!("{publisher}\n{key}").as_bytes());
            format!("cmd_{}", hex::encode(&digest[..16]))
        }
        None => format!("cmd_{}", uuid::Uuid::new_v4().simple()),
    }
}

fn decode(record: &Record) -> Result<Command, ApiError> {
    serde_json::from_slice(&record.value).map_err(ApiError::internal)
}

pub(crate) fn encode(command: &Command) -> Vec<u8> {
    serde_json::to_vec(command).expect("a command serializes")
}

/// A command, pending or finished, with its record version and collection.
pub(crate) fn load(
    store: &Store,
    id: &str,
) -> Result<Option<(Command, u64, &'static str)>, ApiError> {
    for collection in [PENDING, HISTORY] {
        if let Some(record) = store.record(collection, id).map_err(ApiError::internal)? {
            if !record.deleted {
                return Ok(Some((decode(&record)?, record.version, collection)));
            }
        }
    }
    Ok(None)
}

/// Visit the commands of `collection` in id order, a page at a time (so
/// at most a page of values is in memory), at most `scan_max` of them,
/// until `visit` returns false.
pub(crate) fn scan(
    store: &Store,
    collection: &str,
    scan_max: usize,
    mut visit: impl FnMut(Command) -> bool,
) -> Result<(), ApiError> {
    let mut after: Option<String> = None;
    let mut scanned = 0usize;
    while scanned < scan_max {
        let page_max = SCAN_PAGE_COMMANDS.min(scan_max - scanned);
        let page = store
            .records(collection, after.as_deref(), page_max)
            .map_err(ApiError::internal)?;
        scanned += page.len();
        for record in &page {
            if !visit(decode(record)?) {
                return Ok(());
            }
        }
        if page.len() < page_max {
            return Ok(());
        }
        after = page.last().map(|record| record.key.clone());
    }
    Ok(())
}

/// Commands of `collection` passing `keep`, in id order, at most
/// `limit`, scanning at most `scan_max`.
fn find(
    store: &Store,
    collection: &str,
    keep: impl Fn(&Command) -> bool,
    limit: usize,
    scan_max: usize,
) -> Result<Vec<Command>, ApiError> {
    let mut found = Vec::new();
    scan(store, collection, scan_max, |command| {
        if keep(&command) {
            found.push(command);
        }
        found.len() < limit
    })?;
    Ok(found)
}

/// Pending commands passing `keep` (see [`find`]).
pub(crate) fn pending(
    store: &Store,
    keep: impl Fn(&Command) -> bool,
    limit: usize,
    scan_max: usize,
) -> Result<Vec<Command>, ApiError> {
    find(store, PENDING, keep, limit, scan_max)
}

/// Finished commands passing `keep` (see [`find`]).
pub(crate) fn history(
    store: &Store,
    keep: impl Fn(&Command) -> bool,
    limit: usize,
    scan_max: usize,
) -> Result<Vec<Command>, ApiError> {
    find(store, HISTORY, keep, limit, scan_max)
}

/// A command's log rows, oldest first, at most `limit`.
pub(crate) fn logs(store: &Store, command_id: &str, limit: usize) -> Result<Vec<LogRow>, ApiError> {
    let prefix = format!("{command_id}/");
    let records = store
        .records(LOGS, Some(command_id), limit)
        .map_err(ApiError::internal)?;
    records
        .iter()
        .take_while(|record| record.key.starts_with(&prefix))
        .map(|record| {
            let stored: StoredLog =
                serde_json::from_slice(&record.value).map_err(ApiError::internal)?;
            Ok(LogRow {
                at_ms: stored.at_ms,
                ..stored.row
            })
        })
        .collect()
}

/// Retention's view of a log page: (key, command id, when).
pub(crate) fn log_page_for_retention(
    store: &Store,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, String, u64)>, ApiError> {
    let records = store
        .records(LOGS, after, limit)
        .map_err(ApiError::internal)?;
    records
        .iter()
        .map(|record| {
            let stored: StoredLog =
                serde_json::from_slice(&record.value).map_err(ApiError::internal)?;
            Ok((record.key.clone(), stored.row.command_id, stored.at_ms))
        })
        .collect()
}

/// Retention's view of a history page: (key, command id, finished at,
/// done).
pub(crate) fn history_page_for_retention(
    store: &Store,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, String, u64, bool)>, ApiError> {
    let records = store
        .records(HISTORY, after, limit)
        .map_err(ApiError::internal)?;
    records
        .iter()
        .map(|record| {
            let command = decode(record)?;
            let (at_ms, done) = match command.progress.state {
                CommandState::Done { at_ms } => (at_ms, true),
                CommandState::Dead { at_ms } => (at_ms, false),
                CommandState::Pending { available_at_ms } => (available_at_ms, false),
            };
            let subject = format!("{}/{}", command.subscriber, command.name);
            Ok((record.key.clone(), subject, at_ms, done))
        })
        .collect()
}
