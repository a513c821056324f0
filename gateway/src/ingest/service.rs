//! The one code path of a batch, whichever transport brought it: gRPC
//! (`grpc.rs`) and HTTP (`api/batches.rs`) both hand a protobuf `Table`
//! to [`write`] and a claim to [`summary`], so the size limit, the rules,
//! the lease, staging and the commit are the same for both.
//!
//! A message is staged durably before it is acknowledged; a summary that
//! matches commits the whole batch as one write set (every row a record
//! in its table's collection, on the changes feed and webhooks like any
//! record write, plus the batch's new state and the deletion of its staged
//! chunks), so a crash leaves the batch either open with every
//! acknowledged message or committed. An answer given from what is
//! already stored (an identical resend) waits for the store's durable
//! point first: a reader can see a write whose flush is still running.
//!
//! Why a lock per client as well as compare-and-set: a client's batches
//! share its bookkeeping record (leases, open batches), so concurrent
//! writes from one client would race on it; the lock serializes them in
//! this process and the compare-and-set guards against everything else
//! (the expiry task, another process).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use fieldsync_node::config::IngestConfig;
use fieldsync_node::store::{Expect, ReadError, RecordWrite, Store, WriteError, WriteSet};
use fieldsync_schemas::collection::{RECORD_VALUE_BYTES_MAX, WRITE_SET_RECORDS_MAX};
use fieldsync_schemas::Scope;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::entities;
use super::lease::{self, LeaseDecision, DEFAULT_INSTANCE};
use super::proto::Table;
use super::rows::{self, Message, Schema};
use super::rules::{self, Arriving, Batch, Claim, Limits, State, SummaryDecision, WriteDecision};
use super::staging::{self, ClientState, Versioned, BATCHES, CLIENTS};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Bytes of one batch message (its protobuf encoding), at most
/// (reference §3: 5 MB).
pub(crate) const MESSAGE_BYTES_MAX: usize = 5 * 1024 * 1024;
/// Compare-and-set retries of one write or summary before giving up.
const TRIES_MAX: usize = 16;
/// Locks clients hash onto.
const CLIENT_LOCKS: usize = 64;

static CLIENT_LOCK: [Mutex<()>; CLIENT_LOCKS] = [const { Mutex::new(()) }; CLIENT_LOCKS];

/// Why a message or summary was not accepted.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not allowed (no scope, a technician): 403 / `PERMISSION_DENIED`.
    Denied(ApiError),
    /// The batch rules refuse it; these are the errors for the sender.
    Rejected(Vec<String>),
    /// Another sender instance holds the ERP's upload lease.
    Leased(String),
    /// The batch kept changing under this request; retry: 409 / `ABORTED`.
    Contended(String),
    /// The store failed (logged); 500/503 / `INTERNAL`/`UNAVAILABLE`.
    Store(WriteError),
}

impl From<ReadError> for Refusal {
    fn from(error: ReadError) -> Refusal {
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
/// clients with `batches:write`. `instance` is the raw
/// `x-sender-instance` header or metadata (absent: `default`).
pub(crate) fn sender(caller: &Caller, instance: Option<&[u8]>) -> Result<Sender, Refusal> {
    caller
        .office_or_scope(Scope::BatchesWrite)
        .map_err(Refusal::Denied)?;
    let instance = match instance {
        None => DEFAULT_INSTANCE,
        Some(bytes) => std::str::from_utf8(bytes).unwrap_or("\u{fffd}"),
    };
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

async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(Refusal::Store(WriteError::Io(format!(
            "ingest task failed: {e}"
        ))))
    })
}

/// Stage one message (off the async runtime).
pub(crate) async fn write(state: &AppState, sender: Sender, table: Table) -> Result<(), Refusal> {
    let (store, config, now_ms) = (state.store().clone(), state.config().ingest, state.now_ms());
    off_runtime(move || write_blocking(&store, &config, &sender, &table, now_ms)).await
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
    off_runtime(move || summary_blocking(&store, &config, &sender, &erp, batch_id, &claim, now_ms))
        .await
}

/// A `Table` as the rules see it.
pub(crate) fn message_of(table: &Table) -> Message {
    let schema = table.schema.clone().unwrap_or_default();
    Message {
        table: table.table_name.clone(),
        erp: table.erp.clone(),
        batch_id: table.batch_id,
        number: i64::from(table.message_number),
        record_count: i64::from(table.record_count),
        base_load: table.is_base_load,
        schema: Schema {
            flexible: schema.flexible,
            export_data: schema.export_data,
            columns: schema
                .columns
                .into_iter()
                .map(|c| (c.name, c.r#type))
                .collect(),
            primary_key: schema.primary_key.map(|pk| pk.columns).unwrap_or_default(),
        },
        rows: table
            .rows
            .iter()
            .map(|row| {
                row.columns
                    .iter()
                    .map(|c| (c.name.clone(), c.value.clone()))
                    .collect()
            })
            .collect(),
    }
}

/// The client's lock: held across read, decide, write and flush.
fn client_lock(client: &str) -> std::sync::MutexGuard<'static, ()> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    client.hash(&mut hasher);
    CLIENT_LOCK[(hasher.finish() % CLIENT_LOCKS as u64) as usize]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
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

/// Stage one message: refuse it, accept a resend, or write its chunks,
/// the batch and the client's state in one write set.
pub(crate) fn write_blocking(
    store: &Store,
    config: &IngestConfig,
    sender: &Sender,
    table: &Table,
    now_ms: u64,
) -> Result<(), Refusal> {
    let bytes = prost::Message::encode_to_vec(table);
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(Refusal::Rejected(vec![format!(
            "message {} is {} bytes, over the limit of {MESSAGE_BYTES_MAX} (5 MiB); split its rows",
            table.message_number,
            bytes.len()
        )]));
    }
    let message = message_of(table);
    let prepared = rows::prepare(&message).map_err(Refusal::Rejected)?;
    let key = staging::batch_key(&sender.client, &message.erp, message.batch_id);
    let number = u32::try_from(message.number).map_err(|_| {
        Refusal::Rejected(vec![format!(
            "messageNumber {} is out of range",
            message.number
        )])
    })?;
    staging::check_new_collection(store, &prepared.collection)?
        .map_err(|e| Refusal::Rejected(vec![e]))?;
    let (chunks, chunk_count) = staging::chunk_writes(&key, number, &prepared.rows);
    let arriving = Arriving {
        digest: hex::encode(&Sha256::digest(&bytes)[..16]),
        rows: prepared.rows.len() as u32,
        collection: prepared.collection,
        base_load: message.base_load,
        chunks: chunk_count,
    };
    let _client = client_lock(&sender.client);
    for _ in 0..TRIES_MAX {
        let client = staging::load_client(store, &sender.client)?;
        let stored = staging::load_batch(store, &key)?;
        lease_check(&client.value, sender, &message.erp, config, now_ms)?;
        let at = (
            message.erp.as_str(),
            message.batch_id,
            sender.client.as_str(),
        );
        let decision = rules::on_write(
            stored.value.as_ref(),
            at,
            message.number,
            arriving.clone(),
            limits(config),
            now_ms,
        );
        let batch = match decision {
            WriteDecision::AlreadyHave => return store.durable_barrier().map_err(Refusal::Store),
            WriteDecision::Refuse(error) => return Err(Refusal::Rejected(vec![error])),
            WriteDecision::Stage { batch } => batch,
        };
        let mut writes = staged(config, &message, sender, client, &stored, &batch, now_ms)?;
        writes.extend(chunks.iter().cloned());
        match submit(store, writes) {
            Err(WriteError::VersionMismatch { .. }) => continue,
            other => return other.map_err(Refusal::Store),
        }
    }
    Err(contended())
}

/// The batch's and the client state's writes for a staged message, after
/// the per-client bound and the one-record size of each.
fn staged(
    config: &IngestConfig,
    message: &Message,
    sender: &Sender,
    mut client: Versioned<ClientState>,
    stored: &Versioned<Option<Batch>>,
    batch: &Batch,
    now_ms: u64,
) -> Result<Vec<RecordWrite>, Refusal> {
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
    let writes = vec![
        staging::put(BATCHES, &batch_key_of(batch), batch, stored.expect()),
        staging::put(CLIENTS, &sender.client, &client.value, client.expect()),
    ];
    for write in &writes {
        let bytes = write.value.as_ref().map_or(0, Vec::len);
        if bytes > RECORD_VALUE_BYTES_MAX {
            return Err(Refusal::Rejected(vec![format!(
                "the bookkeeping of this batch would be {bytes} bytes, over one record's \
                 {RECORD_VALUE_BYTES_MAX}; send fewer, larger messages per batch"
            )]));
        }
    }
    Ok(writes)
}

fn batch_key_of(batch: &Batch) -> String {
    staging::batch_key(&batch.client, &batch.erp, batch.batch_id)
}

fn contended() -> Refusal {
    Refusal::Contended("the batch kept changing under this request; send it again".into())
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
    let _client = client_lock(&sender.client);
    for _ in 0..TRIES_MAX {
        let mut client = staging::load_client(store, &sender.client)?;
        let stored = staging::load_batch(store, &key)?;
        lease_check(&client.value, sender, erp, config, now_ms)?;
        client.value.renew(erp, &sender.instance, now_ms);
        let decision = rules::on_summary(stored.value.as_ref(), batch_id, claim, limits(config));
        let result = match decision {
            SummaryDecision::AlreadyCommitted => {
                store.durable_barrier().map_err(Refusal::Store)?;
                return Ok(stored.value.map_or(0, |b| b.records_committed));
            }
            SummaryDecision::Refuse(errors) => Err(Refusal::Rejected(errors)),
            SummaryDecision::Commit => commit(store, &key, &stored, &mut client, now_ms),
        };
        match result {
            Err(Refusal::Store(WriteError::VersionMismatch { .. })) => continue,
            Err(Refusal::Rejected(errors)) => {
                return refuse_summary(store, &key, &stored, &client, errors, now_ms)
            }
            other => return other,
        }
    }
    Err(contended())
}

/// Keep a refused summary's errors on the batch, raise the alert, and
/// answer them. The batch stays open; a later summary may commit it.
fn refuse_summary(
    store: &Store,
    key: &str,
    stored: &Versioned<Option<Batch>>,
    client: &Versioned<ClientState>,
    errors: Vec<String>,
    now_ms: u64,
) -> Result<u64, Refusal> {
    tracing::warn!(batch = key, errors = ?errors, "batch summary refused; the batch stays open");
    metrics::counter!("fieldsync_batch_summaries_refused_total").increment(1);
    if let Some(batch) = stored.value.as_ref().filter(|b| b.state == State::Open) {
        let mut batch = batch.clone();
        batch.errors = errors
            .iter()
            .take(rules::BATCH_ERRORS_MAX)
            .cloned()
            .collect();
        batch.summaries_refused += 1;
        batch.updated_at_ms = now_ms;
        let writes = vec![
            staging::put(BATCHES, key, &batch, stored.expect()),
            staging::put(CLIENTS, &batch.client, &client.value, client.expect()),
        ];
        match submit(store, writes) {
            // Someone wrote meanwhile; the errors still stand for this answer.
            Ok(()) | Err(WriteError::VersionMismatch { .. }) => {}
            Err(error) => return Err(Refusal::Store(error)),
        }
    }
    Err(Refusal::Rejected(errors))
}

/// Commit a complete batch: one write set.
fn commit(
    store: &Store,
    key: &str,
    stored: &Versioned<Option<Batch>>,
    client: &mut Versioned<ClientState>,
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
        &batch.client,
        &client.value,
        client.expect(),
    ));
    if let Some(clear) = entities::clear_force_reload(store, &batch.erp, &reloaded)? {
        writes.push(clear);
    }
    if writes.len() > WRITE_SET_RECORDS_MAX {
        return Err(Refusal::Rejected(vec![format!(
            "committing this batch would write {} records at once, over the limit of \
             {WRITE_SET_RECORDS_MAX}; send it as smaller batches",
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
        let Some(collection) = batch.tables.get(info.table()) else {
            return Err(Refusal::Store(WriteError::Corrupt(format!(
                "batch {key}: message {number} names table {} of {}",
                info.table(),
                batch.tables.len()
            ))));
        };
        for row in staging::staged_rows(store, key, *number, info.chunks())? {
            rows.insert((collection.clone(), row.key), row.value);
        }
        if info.base_load() {
            reloaded.insert(collection.clone());
        }
    }
    for collection in &reloaded {
        staging::for_each_record(store, collection, None, |record| {
            rows.entry((collection.clone(), record.key)).or_insert(None);
            if rows.len() > WRITE_SET_RECORDS_MAX {
                return Err(Refusal::Rejected(vec![format!(
                    "the base load of `{collection}` would touch over {WRITE_SET_RECORDS_MAX} records"
                )]));
            }
            Ok(true)
        })?;
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
