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

use super::rules::{self, State};
use super::staging::{self, BATCHES, CLIENTS};
use crate::state::AppState;

/// Client states read per store call.
const CLIENTS_PAGE: usize = 256;
/// Batches expired per pass, at most (the rest wait for the next pass).
const EXPIRED_PER_PASS_MAX: usize = 1000;

/// Run until `stop` turns true.
pub(crate) async fn run(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = std::time::Duration::from_millis(state.config().ingest.expiry_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let store = state.store().clone();
        let (now_ms, ttl_ms) = (state.now_ms(), state.config().ingest.batch_ttl_ms);
        match tokio::task::spawn_blocking(move || expire_pass(&store, now_ms, ttl_ms)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(expired)) => tracing::info!(expired, "abandoned batches expired"),
            Ok(Err(error)) => tracing::warn!(%error, "batch expiry pass failed"),
            Err(error) => tracing::warn!(%error, "batch expiry task failed"),
        }
    }
}

/// One pass: expire what is due; the number expired.
pub(crate) fn expire_pass(store: &Store, now_ms: u64, ttl_ms: u64) -> Result<usize, WriteError> {
    let mut expired = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store.records(CLIENTS, after.as_deref(), CLIENTS_PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for record in page {
            let client = record.key;
            let state = staging::load_client(store, &client)?;
            for entry in &state.value.open {
                if expired >= EXPIRED_PER_PASS_MAX {
                    return Ok(expired);
                }
                if expire_one(store, &client, entry, now_ms, ttl_ms)? {
                    expired += 1;
                }
            }
        }
    }
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
