//! The one code path of a batch, whichever transport brought it: gRPC
//! (`grpc.rs`) and HTTP (`api/batches.rs`) both call [`write`] and
//! [`summary`], so the rules, the lease, staging and the commit are the
//! same for both.
//!
//! A message is staged durably before it is acknowledged; a summary that
//! matches commits the whole batch as one write set (every row a record
//! in its table's collection, on the changes feed and webhooks like any
//! record write, plus the batch's new state and the deletion of its staged
//! chunks), so a crash leaves the batch either open with every
//! acknowledged message or committed, never half-applied.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_node::config::IngestConfig;
use fieldsync_node::store::{Expect, RecordWrite, Store, WriteError, WriteSet};
use fieldsync_schemas::collection::WRITE_SET_RECORDS_MAX;
use fieldsync_schemas::Scope;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::entities;
use super::lease::{self, LeaseDecision, DEFAULT_INSTANCE};
use super::rows::{self, Message};
use super::rules::{
    self, Batch, Claim, Limits, MessageInfo, State, SummaryDecision, WriteDecision,
};
use super::staging::{self, ClientState, Versioned, BATCHES, CLIENTS};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Compare-and-set retries of one write or summary before giving up.
const TRIES_MAX: usize = 16;
/// Errors kept on a refused summary.
const SUMMARY_ERRORS_MAX: usize = rules::BATCH_ERRORS_MAX;
/// Live records read per store call while a base load looks for the rows
/// it no longer holds.
const BASE_LOAD_PAGE_RECORDS: usize = 1024;

/// Why a message or summary was not accepted.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not allowed (no scope, a technician): 403 / `PERMISSION_DENIED`.
    Denied(ApiError),
    /// The batch rules refuse it; these are the errors for the sender.
    Rejected(Vec<String>),
    /// Another sender instance holds the ERP's upload lease.
    Leased(String),
    /// The store failed (logged); 500/503 / `INTERNAL`/`UNAVAILABLE`.
    Store(WriteError),
}

impl From<fieldsync_node::store::ReadError> for Refusal {
    fn from(error: fieldsync_node::store::ReadError) -> Refusal {
        Refusal::Store(WriteError::Read(error))
    }
}

/// A sender: the integration client (its user id) and its instance.
#[derive(Clone, Debug)]
pub(crate) struct Sender {
    pub(crate) client: String,
    pub(crate) instance: String,
}

/// The sender a caller is, if it may upload: operators and integration
/// clients with `batches:write`. `instance` is `x-sender-instance`.
pub(crate) fn sender(caller: &Caller, instance: Option<&str>) -> Result<Sender, Refusal> {
    caller
        .office_or_scope(Scope::BatchesWrite)
        .map_err(Refusal::Denied)?;
    let instance = instance.unwrap_or(DEFAULT_INSTANCE);
    lease::check_instance(instance).map_err(|e| Refusal::Rejected(vec![e]))?;
    Ok(Sender {
        client: caller.user_id.clone(),
        instance: instance.to_string(),
    })
}

fn limits(config: &IngestConfig) -> Limits {
    Limits {
        messages_per_batch_max: config.messages_per_batch_max,
        rows_per_batch_max: config.rows_per_batch_max,
    }
}

/// Stage one message (off the async runtime).
pub(crate) async fn write(
    state: &AppState,
    sender: Sender,
    message: Message,
) -> Result<(), Refusal> {
    let (store, config, now_ms) = (state.store().clone(), state.config().ingest, state.now_ms());
    tokio::task::spawn_blocking(move || write_blocking(&store, &config, &sender, &message, now_ms))
        .await
        .unwrap_or_else(|e| {
            Err(Refusal::Store(WriteError::Io(format!(
                "staging task failed: {e}"
            ))))
        })
}

/// Check a summary and commit the batch when it matches (off the async
/// runtime). `Ok(records)`: the records the batch wrote.
pub(crate) async fn summary(
    state: &AppState,
    sender: Sender,
    erp: String,
    batch_id: i64,
    claim: Claim,
) -> Result<u64, Refusal> {
    let (store, config, now_ms) = (state.store().clone(), state.config().ingest, state.now_ms());
    tokio::task::spawn_blocking(move || {
        summary_blocking(&store, &config, &sender, &erp, batch_id, &claim, now_ms)
    })
    .await
    .unwrap_or_else(|e| {
        Err(Refusal::Store(WriteError::Io(format!(
            "commit task failed: {e}"
        ))))
    })
}

/// The digest of a message's canonical form: an identical resend has the
/// same one whichever transport carried it.
fn digest(message: &Message) -> String {
    let bytes = serde_json::to_vec(message).expect("plain structs serialize");
    hex::encode(&Sha256::digest(&bytes)[..16])
}

fn lease_check(
    client: &ClientState,
    sender: &Sender,
    erp: &str,
    config: &IngestConfig,
    now_ms: u64,
) -> Result<(), Refusal> {
    let decision = lease::decide(
        client.leases.get(erp),
        &sender.instance,
        now_ms,
        config.sender_lease_ms,
    );
    if let LeaseDecision::TakeOver { from } = &decision {
        tracing::warn!(erp, client = %sender.client, from = %from, to = %sender.instance, "batch sender lease taken over");
    }
    match decision.refusal(erp, now_ms) {
        Some(error) => Err(Refusal::Leased(error)),
        None => Ok(()),
    }
}

pub(crate) fn write_blocking(
    store: &Store,
    config: &IngestConfig,
    sender: &Sender,
    message: &Message,
    now_ms: u64,
) -> Result<(), Refusal> {
    let prepared = rows::prepare(message).map_err(Refusal::Rejected)?;
    let key = staging::batch_key(&sender.client, &message.erp, message.batch_id);
    let number = u32::try_from(message.number).unwrap_or(0);
    let (chunks, chunk_count) = staging::chunk_writes(&key, number, &prepared.rows);
    let info = MessageInfo {
        digest: digest(message),
        rows: prepared.rows.len() as u32,
        collection: prepared.collection,
        base_load: message.base_load,
        chunks: chunk_count,
    };
    for _ in 0..TRIES_MAX {
        let mut client = staging::load_client(store, &sender.client)?;
        let stored = staging::load_batch(store, &key)?;
        lease_check(&client.value, sender, &message.erp, config, now_ms)?;
        let batch_key = (
            message.erp.as_str(),
            message.batch_id,
            sender.client.as_str(),
        );
        let batch = match rules::on_write(
            stored.value.as_ref(),
            batch_key,
            message.number,
            info.clone(),
            limits(config),
            now_ms,
        ) {
            WriteDecision::AlreadyHave => return Ok(()),
            WriteDecision::Refuse(error) => return Err(Refusal::Rejected(vec![error])),
            WriteDecision::Stage { batch } => batch,
        };
        let entry = staging::open_entry(&message.erp, message.batch_id);
        let open = &mut client.value.open;
        if !open.contains(&entry) && open.len() >= config.open_batches_per_client_max {
            return Err(Refusal::Rejected(vec![format!(
                "{} batches of this client are open, the most allowed; \
                 finish one with its summary or let it expire",
                open.len()
            )]));
        }
        open.insert(entry);
        client.value.renew(&message.erp, &sender.instance, now_ms);
        let mut writes = chunks.clone();
        writes.push(staging::put(BATCHES, &key, &batch, stored.expect()));
        writes.push(staging::put(
            CLIENTS,
            &sender.client,
            &client.value,
            client.expect(),
        ));
        match submit(store, writes) {
            Err(WriteError::VersionMismatch { .. }) => continue,
            other => return other.map(|_| ()).map_err(Refusal::Store),
        }
    }
    Err(Refusal::Store(WriteError::Io(
        "a batch kept changing under this write; retry".into(),
    )))
}

fn submit(store: &Store, records: Vec<RecordWrite>) -> Result<(), WriteError> {
    store
        .submit(WriteSet {
            records,
            ..WriteSet::default()
        })?
        .wait()
        .map(|_| ())
}

pub(crate) fn summary_blocking(
    store: &Store,
    config: &IngestConfig,
    sender: &Sender,
    erp: &str,
    batch_id: i64,
    claim: &Claim,
    now_ms: u64,
) -> Result<u64, Refusal> {
    rows::check_erp(erp).map_err(|e| Refusal::Rejected(vec![e]))?;
    let key = staging::batch_key(&sender.client, erp, batch_id);
    for _ in 0..TRIES_MAX {
        let mut client = staging::load_client(store, &sender.client)?;
        let stored = staging::load_batch(store, &key)?;
        lease_check(&client.value, sender, erp, config, now_ms)?;
        client.value.renew(erp, &sender.instance, now_ms);
        let result = match rules::on_summary(stored.value.as_ref(), batch_id, claim) {
            SummaryDecision::AlreadyCommitted => {
                return Ok(stored.value.map_or(0, |b| b.records_committed))
            }
            SummaryDecision::Refuse(errors) => {
                refuse_summary(store, &key, &stored, &client, errors, now_ms)
            }
            SummaryDecision::Commit => commit(store, &key, &stored, &mut client, sender, now_ms),
        };
        match result {
            Err(Refusal::Store(WriteError::VersionMismatch { .. })) => continue,
            other => return other,
        }
    }
    Err(Refusal::Store(WriteError::Io(
        "a batch kept changing under this summary; retry".into(),
    )))
}

/// Keep a refused summary's errors on the batch, raise the alert, and
/// answer them.
fn refuse_summary(
    store: &Store,
    key: &str,
    stored: &Versioned<Option<Batch>>,
    client: &Versioned<ClientState>,
    errors: Vec<String>,
    now_ms: u64,
) -> Result<u64, Refusal> {
    tracing::warn!(batch = key, errors = ?errors, "batch summary does not match what arrived; the batch stays open");
    metrics::counter!("fieldsync_batch_summaries_refused_total").increment(1);
    if let Some(batch) = stored.value.as_ref().filter(|b| b.state == State::Open) {
        let mut batch = batch.clone();
        batch.errors = errors.iter().take(SUMMARY_ERRORS_MAX).cloned().collect();
        batch.summaries_refused += 1;
        batch.updated_at_ms = now_ms;
        let writes = vec![
            staging::put(BATCHES, key, &batch, stored.expect()),
            staging::put(CLIENTS, &batch.client, &client.value, client.expect()),
        ];
        submit(store, writes).map_err(Refusal::Store)?;
    }
    Err(Refusal::Rejected(errors))
}

/// Commit a complete batch: one write set.
fn commit(
    store: &Store,
    key: &str,
    stored: &Versioned<Option<Batch>>,
    client: &mut Versioned<ClientState>,
    sender: &Sender,
    now_ms: u64,
) -> Result<u64, Refusal> {
    let Some(batch) = stored.value.as_ref() else {
        return Err(Refusal::Rejected(vec!["the batch has no messages".into()]));
    };
    let (mut writes, reloaded) = row_writes(store, key, batch)?;
    let records = writes.len() as u64;
    writes.extend(staging::chunk_deletes(key, batch));
    let mut done = batch.clone();
    done.state = State::Committed;
    done.errors.clear();
    done.records_committed = records;
    done.updated_at_ms = now_ms;
    done.committed_at_ms = Some(now_ms);
    writes.push(staging::put(BATCHES, key, &done, stored.expect()));
    client
        .value
        .open
        .remove(&staging::open_entry(&batch.erp, batch.batch_id));
    writes.push(staging::put(
        CLIENTS,
        &sender.client,
        &client.value,
        client.expect(),
    ));
    if let Some(clear) = entities::clear_force_reload(store, &batch.erp, &reloaded)? {
        writes.push(clear);
    }
    if writes.len() > WRITE_SET_RECORDS_MAX {
        return Err(Refusal::Rejected(vec![format!(
            "committing this batch would write {} records at once, over the limit of {WRITE_SET_RECORDS_MAX}; \
             send it as smaller batches",
            writes.len()
        )]));
    }
    submit(store, writes).map_err(Refusal::Store)?;
    metrics::counter!("fieldsync_batches_committed_total").increment(1);
    metrics::counter!("fieldsync_batch_records_committed_total").increment(records);
    tracing::info!(batch = key, records, "batch committed");
    Ok(records)
}

/// The record writes of a batch's rows (a later message's row wins over
/// an earlier one's), plus, for each base-loaded collection, the deletes
/// of what the load does not hold; and the collections base-loaded.
fn row_writes(
    store: &Store,
    key: &str,
    batch: &Batch,
) -> Result<(Vec<RecordWrite>, BTreeSet<String>), Refusal> {
    let mut rows: BTreeMap<(String, String), Option<Box<RawValue>>> = BTreeMap::new();
    let mut reloaded = BTreeSet::new();
    for (number, info) in &batch.messages {
        for row in staging::staged_rows(store, key, *number, info.chunks)? {
            rows.insert((info.collection.clone(), row.key), row.value);
        }
        if info.base_load {
            reloaded.insert(info.collection.clone());
        }
    }
    for collection in &reloaded {
        let mut after: Option<String> = None;
        loop {
            let page = store.records(collection, after.as_deref(), BASE_LOAD_PAGE_RECORDS)?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for record in page {
                rows.entry((collection.clone(), record.key)).or_insert(None);
            }
            if rows.len() > WRITE_SET_RECORDS_MAX {
                return Err(Refusal::Rejected(vec![format!(
                    "the base load of `{collection}` would touch over {WRITE_SET_RECORDS_MAX} records"
                )]));
            }
        }
    }
    let writes = rows
        .into_iter()
        .map(|((collection, key), value)| RecordWrite {
            collection,
            key,
            value: value.map(|raw| raw.get().as_bytes().to_vec()),
            expect: Expect::Any,
            replicated_version: None,
        })
        .collect();
    Ok((writes, reloaded))
}
