//! The ingest upkeep task: abandoned batches expire here, and each pass
//! also prunes old history (`history.rs`).
//!
//! Abandoned batches: an open batch untouched for `[ingest] batch_ttl_ms`
//! loses its staged rows and becomes `expired` (its id may start again).
//!
//! The decision is the pure `rules::expired`; this task only walks the
//! clients' open batches every `expiry_interval_ms` and writes each
//! expiry as one compare-and-set write set (the batch's new state, its
//! chunks' deletes, the client's open list), so a message arriving at the
//! same moment either lands before (and the batch is no longer idle) or
//! after (and starts the batch again).

use fieldsync_node::store::{Store, WriteError, WriteSet};

use super::history;
use super::rules::{self, State};
use super::staging::{self, ClientState, BATCHES, CLIENTS};
use crate::delivery::retention::RetentionPolicy;
use crate::state::AppState;

const DAY_MS: u64 = 24 * 3_600 * 1_000;
/// Batches expired per pass, at most (the rest wait for the next pass).
const EXPIRED_PER_PASS_MAX: usize = 1000;

/// Run until `stop` turns true.
pub(crate) async fn run(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = std::time::Duration::from_millis(state.config().ingest.expiry_interval_ms);
    let mut resume = history::Resume::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let store = state.store().clone();
        let config = state.config().ingest;
        let now_ms = state.now_ms();
        let taken = std::mem::take(&mut resume);
        let pass = tokio::task::spawn_blocking(move || {
            let mut resume = taken;
            let expired = expire_pass(&store, now_ms, config.batch_ttl_ms);
            let policy = RetentionPolicy {
                keep_ms: config.history_days.saturating_mul(DAY_MS),
                rows_per_run_max: config.history_rows_per_run_max,
            };
            let pruned = history::prune(&store, &mut resume, &policy, now_ms);
            (resume, expired, pruned)
        })
        .await;
        match pass {
            Ok((next, expired, pruned)) => {
                resume = next;
                match expired {
                    Ok(0) => {}
                    Ok(expired) => tracing::info!(expired, "abandoned batches expired"),
                    Err(error) => tracing::warn!(%error, "batch expiry pass failed"),
                }
                match pruned {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "old batches and event keys pruned"),
                    Err(error) => tracing::warn!(%error, "ingest history pass failed"),
                }
            }
            Err(error) => tracing::warn!(%error, "batch expiry task failed"),
        }
    }
}

/// One pass: expire what is due; the number expired.
pub(crate) fn expire_pass(store: &Store, now_ms: u64, ttl_ms: u64) -> Result<usize, WriteError> {
    let mut expired = 0;
    staging::for_each_record(store, CLIENTS, None, |record| {
        let state: ClientState = staging::decode(&record)?;
        for entry in &state.open {
            if expired >= EXPIRED_PER_PASS_MAX {
                return Ok(false);
            }
            if expire_one(store, &record.key, entry, now_ms, ttl_ms)? {
                expired += 1;
            }
        }
        Ok::<_, WriteError>(true)
    })?;
    Ok(expired)
}

/// Expire one open batch (`{erp}/{batch_id}` of `client`) if due.
fn expire_one(
    store: &Store,
    client: &str,
    entry: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<bool, WriteError> {
    let Some((erp, id)) = entry.rsplit_once('/') else {
        return Ok(false);
    };
    let Ok(batch_id) = id.parse::<i64>() else {
        return Ok(false);
    };
    let key = staging::batch_key(client, erp, batch_id);
    let stored = staging::load_batch(store, &key)?;
    let mut state = staging::load_client(store, client)?;
    let due = stored
        .value
        .as_ref()
        .is_none_or(|batch| batch.state != State::Open || rules::expired(batch, now_ms, ttl_ms));
    if !due {
        return Ok(false);
    }
    state.value.open.remove(entry);
    let mut records = vec![staging::put(CLIENTS, client, &state.value, state.expect())];
    if let Some(batch) = stored.value.as_ref().filter(|b| b.state == State::Open) {
        records.extend(staging::chunk_deletes(&key, batch));
        let mut gone = batch.clone();
        gone.state = State::Expired;
        gone.updated_at_ms = now_ms;
        records.push(staging::put(BATCHES, &key, &gone, stored.expect()));
        tracing::warn!(
            batch = key,
            "batch abandoned: no message or summary for batch_ttl_ms"
        );
        metrics::counter!("fieldsync_batches_expired_total").increment(1);
    }
    match store
        .submit(WriteSet {
            records,
            ..WriteSet::default()
        })?
        .wait()
    {
        // Something wrote meanwhile: the next pass judges it again.
        Err(WriteError::VersionMismatch { .. }) => Ok(false),
        Err(error) => Err(error),
        Ok(_) => Ok(true),
    }
}
