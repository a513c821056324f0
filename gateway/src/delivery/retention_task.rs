//! The retention job: every `retention_interval_ms`, prune delivery
//! attempts, frozen notifications, command history and command logs with
//! the pure planner (`retention.rs`), deleting through the committer.
//!
//! Why it scans in pages and remembers where it stopped: rows are keyed by
//! subject, not by age, so old rows can be anywhere; a run reads at most
//! `SCAN_ROWS_MAX` rows of each collection from where the last run
//! stopped (wrapping at the end), so one run costs a bounded amount
//! whatever the log's size, and every row is looked at within a few runs.
//! A notification a hook is still delivering is never pruned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use fieldsync_node::store::{Expect, RecordWrite, Store, WriteSet};
use tokio::sync::watch;

use super::retention::{self, RetentionPolicy, Row};
use super::{attempts, commands, hook};
use crate::error::ApiError;
use crate::state::AppState;

/// Rows of one collection read per run, at most.
const SCAN_ROWS_MAX: usize = 20_000;

/// Where each collection's scan resumes.
#[derive(Default)]
pub(crate) struct Resume {
    after: BTreeMap<&'static str, String>,
}

/// What one run removed, per collection.
pub(crate) type Removed = BTreeMap<&'static str, usize>;

/// Run until `stop` turns true.
pub(crate) async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let interval_ms = state.delivery().settings.retention_interval_ms;
    let mut resume = Resume::default();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => return,
            () = tokio::time::sleep(Duration::from_millis(interval_ms)) => {}
        }
        let policy = state.delivery().settings.retention.clone();
        let now_ms = state.now_ms();
        let taken = std::mem::take(&mut resume);
        let outcome = state
            .blocking(move |store| {
                let mut resume = taken;
                let removed = run_once(store, &mut resume, &policy, now_ms)?;
                Ok((resume, removed))
            })
            .await;
        match outcome {
            Ok((next, removed)) => {
                resume = next;
                report(&removed);
            }
            Err(error) => tracing::error!(?error, "retention run failed"),
        }
    }
}

fn report(removed: &Removed) {
    for (collection, count) in removed {
        metrics::counter!("fieldsync_retention_removed_total", "collection" => *collection)
            .increment(*count as u64);
    }
    let total: usize = removed.values().sum();
    if total > 0 {
        tracing::info!(?removed, "retention removed old delivery rows");
    }
}

/// The collections retention prunes, each with an equal share of a run's
/// budget (so a busy attempt log cannot starve the others).
const PRUNED: [&str; 5] = [
    attempts::ATTEMPTS,
    hook::NOTIFICATIONS,
    hook::STATES,
    commands::HISTORY,
    commands::LOGS,
];

/// One run: at most `rows_per_run_max` rows removed in all. Rows whose
/// subject is gone (a deleted hook, a command pruned from the history)
/// go first, whatever their age; then the planner's choice among the rest.
pub(crate) fn run_once(
    store: &Store,
    resume: &mut Resume,
    policy: &RetentionPolicy,
    now_ms: u64,
) -> Result<Removed, ApiError> {
    let share = policy.rows_per_run_max.div_ceil(PRUNED.len()).max(1);
    let mut budget = policy.rows_per_run_max;
    let mut removed = Removed::new();
    let in_flight: HashSet<String> = hook::list(store)?
        .into_iter()
        .filter_map(|hook| hook.pending.map(|pending| pending.key))
        .collect();
    let mut subjects = Subjects::default();
    for collection in PRUNED {
        if budget == 0 {
            break;
        }
        let after = resume.after.get(collection).cloned();
        let (rows, scanned_last) = rows_of(store, collection, after.as_deref(), &in_flight)?;
        match scanned_last {
            Some(key) => resume.after.insert(collection, key),
            None => resume.after.remove(collection),
        };
        let allowed = share.min(budget);
        let doomed = choose(
            store,
            &mut subjects,
            collection,
            &rows,
            now_ms,
            policy,
            allowed,
        )?;
        budget -= doomed.len();
        if !doomed.is_empty() {
            delete(store, collection, &doomed)?;
            removed.insert(collection, doomed.len());
        }
    }
    Ok(removed)
}

/// Which of `rows` to delete: orphans first, then (but for the states,
/// which only go with their hook) the planner's oldest, `allowed` in all.
fn choose(
    store: &Store,
    subjects: &mut Subjects,
    collection: &str,
    rows: &[RowOf],
    now_ms: u64,
    policy: &RetentionPolicy,
    allowed: usize,
) -> Result<Vec<String>, ApiError> {
    let mut doomed = Vec::new();
    let mut living = Vec::new();
    for row in rows {
        if subjects.exists(store, &row.1)? {
            living.push(row);
        } else if doomed.len() < allowed {
            doomed.push(row.0.clone());
        }
    }
    if collection == hook::STATES || doomed.len() >= allowed {
        return Ok(doomed);
    }
    let view: Vec<Row<'_>> = living
        .iter()
        .map(|(key, subject, at_ms, success)| Row {
            key,
            subject,
            at_ms: *at_ms,
            success: *success,
        })
        .collect();
    let limited = RetentionPolicy {
        rows_per_run_max: allowed - doomed.len(),
        ..policy.clone()
    };
    doomed.extend(retention::plan(&view, now_ms, &limited));
    Ok(doomed)
}

/// Whether a row's subject (`hook:<id>`, `command:<id>`) still exists,
/// remembered for one run.
#[derive(Default)]
struct Subjects {
    known: HashMap<String, bool>,
}

impl Subjects {
    fn exists(&mut self, store: &Store, subject: &str) -> Result<bool, ApiError> {
        if let Some(known) = self.known.get(subject) {
            return Ok(*known);
        }
        let exists = if let Some(id) = subject.strip_prefix("hook:") {
            hook::load(store, id)?.is_some()
        } else if let Some(id) = subject.strip_prefix("command:") {
            commands::load(store, id)?.is_some()
        } else {
            true
        };
        self.known.insert(subject.to_string(), exists);
        Ok(exists)
    }
}

type RowOf = (String, String, u64, bool);

/// A page of `collection` as retention rows, and the last key read when
/// the page was full (where the next run resumes).
fn rows_of(
    store: &Store,
    collection: &'static str,
    after: Option<&str>,
    in_flight: &HashSet<String>,
) -> Result<(Vec<RowOf>, Option<String>), ApiError> {
    let rows: Vec<RowOf> = match collection {
        attempts::ATTEMPTS => attempts::page_for_retention(store, after, SCAN_ROWS_MAX)?,
        commands::HISTORY => commands::history_page_for_retention(store, after, SCAN_ROWS_MAX)?,
        commands::LOGS => commands::log_page_for_retention(store, after, SCAN_ROWS_MAX)?
            .into_iter()
            .map(|(key, command, at_ms)| (key, format!("command:{command}"), at_ms, false))
            .collect(),
        hook::STATES => store
            .records(hook::STATES, after, SCAN_ROWS_MAX)
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|record| {
                let hook_id = record.key.split('/').next().unwrap_or_default().to_string();
                (record.key, format!("hook:{hook_id}"), u64::MAX, true)
            })
            .collect(),
        _ => notification_rows(store, after)?,
    };
    let last = (rows.len() == SCAN_ROWS_MAX)
        .then(|| rows.last().map(|row| row.0.clone()))
        .flatten();
    // The notification a hook is delivering is neither old nor done.
    let rows = rows
        .into_iter()
        .filter(|row| collection != hook::NOTIFICATIONS || !in_flight.contains(&row.0))
        .collect();
    Ok((rows, last))
}

fn notification_rows(store: &Store, after: Option<&str>) -> Result<Vec<RowOf>, ApiError> {
    let records = store
        .records(hook::NOTIFICATIONS, after, SCAN_ROWS_MAX)
        .map_err(ApiError::internal)?;
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        let stored: super::dispatcher::StoredNotification =
            serde_json::from_slice(&record.value).map_err(ApiError::internal)?;
        rows.push((
            record.key,
            format!("hook:{}", stored.hook_id),
            stored.at_ms,
            true,
        ));
    }
    Ok(rows)
}

fn delete(store: &Store, collection: &str, keys: &[String]) -> Result<(), ApiError> {
    let records = keys
        .iter()
        .map(|key| RecordWrite {
            collection: collection.into(),
            key: key.clone(),
            value: None,
            expect: Expect::Any,
            replicated_version: None,
        })
        .collect();
    store
        .submit(WriteSet {
            records,
            ..WriteSet::default()
        })
        .and_then(|pending| pending.wait())
        .map_err(crate::error::store_write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::attempts::{AttemptKind, AttemptRow};
    use fieldsync_node::store::StoreConfig;

    const DAY_MS: u64 = 24 * 3600 * 1000;

    fn row(subject: &str, attempt: u64, at_ms: u64, success: bool) -> RecordWrite {
        attempts::write(&AttemptRow {
            subject: subject.into(),
            attempt,
            kind: AttemptKind::Delivery,
            success,
            at: String::new(),
            at_ms,
            notification_id: None,
            changes: 0,
            status: None,
            duration_ms: 0,
            error: None,
            response: None,
        })
    }

    /// A hook record, so its attempts are not orphans.
    fn live_hook(id: &str) -> RecordWrite {
        let hook = hook::Hook {
            id: id.into(),
            owner: "op".into(),
            owner_role: fieldsync_schemas::Role::Operator,
            owner_scopes: Vec::new(),
            url: "https://example.com/".into(),
            format: hook::Format::Json,
            secrets: Vec::new(),
            sec_key: None,
            filter: hook::Filter::default(),
            created_at: String::new(),
            cursor: 0,
            health: Default::default(),
            pending: None,
            last_error: None,
            attempts: 0,
            notifications: 0,
            changes_delivered: 0,
            alerts: Vec::new(),
        };
        RecordWrite {
            collection: hook::HOOKS.into(),
            key: id.into(),
            value: Some(hook.encode()),
            expect: Expect::Any,
            replicated_version: None,
        }
    }

    fn keys(store: &Store) -> Vec<String> {
        store
            .records(attempts::ATTEMPTS, None, 1000)
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect()
    }

    #[test]
    fn old_rows_go_oldest_first_at_most_m_per_run_and_the_last_success_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
        let now_ms = 100 * DAY_MS;
        let old = now_ms - 40 * DAY_MS;
        let mut records: Vec<RecordWrite> = ["a", "b"].iter().map(|id| live_hook(id)).collect();
        records.extend(vec![
            // A deleted hook's young success: it goes first, whatever its age.
            row("hook:gone", 1, now_ms, true),
            // hook:a: an old success, an older failure, a young failure.
            row("hook:a", 1, old - 2, false),
            row("hook:a", 2, old, true),
            row("hook:a", 3, now_ms - DAY_MS, false),
            // hook:b: two old successes and an old failure.
            row("hook:b", 1, old - 5, true),
            row("hook:b", 2, old - 4, true),
            row("hook:b", 3, old - 3, false),
        ]);
        store
            .submit(WriteSet {
                records,
                ..WriteSet::default()
            })
            .unwrap()
            .wait()
            .unwrap();
        // Five collections share 10 rows a run: 2 each.
        let policy = RetentionPolicy {
            keep_ms: 30 * DAY_MS,
            rows_per_run_max: 10,
        };
        let mut resume = Resume::default();
        let removed = run_once(&store, &mut resume, &policy, now_ms).unwrap();
        assert_eq!(
            removed[attempts::ATTEMPTS],
            2,
            "a collection's share per run"
        );
        // The orphan, then the oldest deletable: hook:b's first success
        // (a newer one exists).
        assert_eq!(
            keys(&store),
            vec![
                attempts::key("hook:a", 1),
                attempts::key("hook:a", 2),
                attempts::key("hook:a", 3),
                attempts::key("hook:b", 2),
                attempts::key("hook:b", 3),
            ]
        );
        // Then the next oldest: hook:b's failure, hook:a's failure.
        let removed = run_once(&store, &mut resume, &policy, now_ms).unwrap();
        assert_eq!(removed[attempts::ATTEMPTS], 2);
        let kept = keys(&store);
        assert_eq!(
            kept,
            vec![
                attempts::key("hook:a", 2),
                attempts::key("hook:a", 3),
                attempts::key("hook:b", 2),
            ],
            "each subject keeps its last success; young rows stay"
        );
        let removed = run_once(&store, &mut resume, &policy, now_ms).unwrap();
        assert!(removed.is_empty());
        // Deleting an internal record frees its key: no tombstone is left.
        assert!(store
            .record(attempts::ATTEMPTS, &attempts::key("hook:a", 1))
            .unwrap()
            .is_none());
        store.close();
    }
}
