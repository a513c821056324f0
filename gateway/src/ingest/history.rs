//! What ingest leaves behind, pruned: finished batches (committed or
//! expired) and event idempotency keys are kept `[ingest] history_days`,
//! then removed by the delivery retention planner (`delivery/retention.rs`:
//! oldest first, at most `history_rows_per_run_max` per pass, and the
//! newest successful row of each client always kept, so "when did this
//! client last deliver?" stays answerable).
//!
//! Why here and bounded: one batch record per batch and one key per event
//! would otherwise grow forever. Each pass reads at most
//! [`SCAN_ROWS_MAX`] rows of each collection from where the last pass
//! stopped (wrapping at the end), so a pass costs a bounded amount
//! whatever the history's size. Open batches are never touched here
//! (`expiry.rs` owns them).

use std::collections::BTreeMap;

use fieldsync_node::store::{RecordWrite, Store, WriteError, WriteSet};

use super::rules::{Batch, State};
use super::staging::{self, BATCHES};
use crate::delivery::retention::{self, RetentionPolicy, Row};

/// The internal collection of event idempotency keys (`api/events.rs`).
pub(crate) const EVENT_KEYS: &str = "event_keys";
/// Rows of one collection read per pass, at most.
const SCAN_ROWS_MAX: usize = 20_000;
/// Record deletes per write set.
const DELETES_PER_WRITE_SET: usize = 1_000;

/// Where each collection's scan resumes.
#[derive(Default)]
pub(crate) struct Resume {
    after: BTreeMap<&'static str, String>,
}

/// One history row: key, subject (the client), when, success.
type HistoryRow = (String, String, u64, bool);

/// A batch as a history row; `None` while open.
fn batch_row(key: String, batch: &Batch) -> Option<HistoryRow> {
    (batch.state != State::Open).then(|| {
        let committed = batch.state == State::Committed;
        (key, batch.client.clone(), batch.updated_at_ms, committed)
    })
}

/// An event key as a history row (`{user}/{key}`, stamped `at`).
fn event_row(key: String, value: &serde_json::Value) -> Option<HistoryRow> {
    let at_ms = fieldsync_node::clock::parse_rfc3339_ms(value.get("at")?.as_str()?)?;
    let client = key.split_once('/')?.0.to_string();
    Some((key, client, at_ms, true))
}

/// One pass over both collections; the rows removed.
pub(crate) fn prune(
    store: &Store,
    resume: &mut Resume,
    policy: &RetentionPolicy,
    now_ms: u64,
) -> Result<usize, WriteError> {
    let share = policy.rows_per_run_max.div_ceil(2).max(1);
    let mut removed = 0;
    for collection in [BATCHES, EVENT_KEYS] {
        let rows = scan(store, resume, collection)?;
        let view: Vec<Row<'_>> = rows
            .iter()
            .map(|(key, subject, at_ms, success)| Row {
                key,
                subject,
                at_ms: *at_ms,
                success: *success,
            })
            .collect();
        let limited = RetentionPolicy {
            rows_per_run_max: share,
            ..policy.clone()
        };
        let doomed = retention::plan(&view, now_ms, &limited);
        removed += doomed.len();
        for keys in doomed.chunks(DELETES_PER_WRITE_SET) {
            let records: Vec<RecordWrite> = keys
                .iter()
                .map(|key| staging::delete(collection, key.clone()))
                .collect();
            store
                .submit(WriteSet {
                    records,
                    ..WriteSet::default()
                })?
                .wait()?;
        }
    }
    Ok(removed)
}

/// Up to [`SCAN_ROWS_MAX`] rows of `collection` from where the last pass
/// stopped; the resume point moves on (or back to the start at the end).
fn scan(
    store: &Store,
    resume: &mut Resume,
    collection: &'static str,
) -> Result<Vec<HistoryRow>, WriteError> {
    let mut rows = Vec::new();
    let mut read = 0usize;
    let mut last = None;
    let after = resume.after.get(collection).cloned();
    staging::for_each_record(store, collection, after.as_deref(), |record| {
        read += 1;
        last = Some(record.key.clone());
        let row = if collection == BATCHES {
            batch_row(record.key.clone(), &staging::decode::<Batch>(&record)?)
        } else {
            event_row(
                record.key.clone(),
                &staging::decode::<serde_json::Value>(&record)?,
            )
        };
        rows.extend(row);
        Ok::<_, WriteError>(read < SCAN_ROWS_MAX)
    })?;
    match last.filter(|_| read >= SCAN_ROWS_MAX) {
        Some(key) => resume.after.insert(collection, key),
        None => resume.after.remove(collection),
    };
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_batches_and_event_keys() {
        let mut batch = Batch::new("erp", 7, "client-a", 10);
        assert_eq!(
            batch_row("k".into(), &batch),
            None,
            "open batches are not history"
        );
        batch.state = State::Expired;
        batch.updated_at_ms = 99;
        assert_eq!(
            batch_row("k".into(), &batch),
            Some(("k".into(), "client-a".into(), 99, false))
        );
        batch.state = State::Committed;
        assert!(batch_row("k".into(), &batch).unwrap().3);
        let value = serde_json::json!({"at": "1970-01-01T00:00:01.000Z"});
        assert_eq!(
            event_row("erp-1/abc".into(), &value),
            Some(("erp-1/abc".into(), "erp-1".into(), 1000, true))
        );
        assert_eq!(
            event_row("erp-1/abc".into(), &serde_json::json!({"at": "then"})),
            None
        );
        assert_eq!(event_row("nokey".into(), &value), None);
    }
}
