//! Entry points of the fuzz targets in `fuzz/` (issue 17, finding 8):
//! thin wrappers over the gateway's pure cores, which are `pub(crate)`, so
//! that the fuzz crate reaches them without making them public.
//!
//! Each function takes arbitrary bytes and panics only when an invariant
//! breaks, never because the bytes are bad. Nothing in the product calls
//! them; they touch no store, no clock that matters and no network.
//!
//! - [`tablestream`]: the bytes as a protobuf `Table` and `BatchSummary`,
//!   and as a short sequence of them, through the batch path's pure parts
//!   (`service::message_of`, `rows::prepare`, `staging::chunk_writes`,
//!   `rules::on_write`, `rules::on_summary`, `rules::expired`) over an
//!   in-memory model of what the store would hold.
//! - [`event_envelope`]: the bytes as the JSON body of `POST
//!   /api/v1/events`: `event::parse`, `target`, `derived_key`,
//!   `fingerprint`, and what the event would do, checked as `api/events.rs`
//!   checks it before the store.
//! - [`json_bodies`]: the bytes as every REST request body the gateway
//!   decodes, each through its pure checks, and the work-order bodies as
//!   the typed operations the handlers build, applied to a real work order
//!   in memory; and as an `If-Match` header.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use fieldsync_node::config::IngestConfig;
use fieldsync_node::doc::{validate_doc_id, Operation, WorkOrderDoc};
use fieldsync_schemas::collection::{
    data_collection_for, validate_record_key, RECORD_VALUE_BYTES_MAX,
};
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, Priority, Role, Status};
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::batches::{table_of, BatchMessage, BatchSummaryBody};
use crate::api::commands::{CommandResult, NewCommand};
use crate::api::model::{
    CollectionGrants, CreateWorkOrder, NewClosure, NewMaterial, NewNote, NewStatus, NewTimeEntry,
    PatchWorkOrder, Report, SetMaterialState, TokenRequest,
};
use crate::api::users::NewUser;
use crate::api::webhooks::NewWebhook;
use crate::api::work_orders::{entity_tags, new_work_order, operator_patch, tags_match};
use crate::error::{json_from_bytes, ApiError, ApiForm};
use crate::ingest::entities::{self, Entities};
use crate::ingest::event::{self, Action, Event, KeyRecord, Seen, Target};
use crate::ingest::proto::{BatchSummary, Table};
use crate::ingest::rows::{self, Prepared, StagedRow};
use crate::ingest::rules::{self, Arriving, Batch, Claim, Limits, State, SummaryDecision};
use crate::ingest::rules::{WriteDecision, TABLES_PER_BATCH_MAX};
use crate::ingest::service::{message_of, MESSAGE_BYTES_MAX};
use crate::ingest::staging;

/// The integration client every modelled batch belongs to.
const CLIENT: &str = "erp-client";
/// Steps of a [`tablestream`] sequence, at most.
const STEPS_MAX: usize = 32;
/// The batch TTL of the model.
const TTL_MS: u64 = 3_600_000;
/// The time stamped on typed operations (the handlers stamp the clock's).
const AT: &str = "2026-01-01T00:00:00Z";
/// The fixture work order's id, assignee and material.
const WO_ID: &str = "wo-fuzz";
const TECH: &str = "tech-1";
const MATERIAL_ID: &str = "wo-fuzz-m0";

// ---------------------------------------------------------------------------
// `tablestream`

/// Arbitrary bytes as `TableStream` traffic.
///
/// 1. The whole input as one protobuf `Table` (which must re-encode to
///    itself), written to an empty store; and as one `BatchSummary`.
/// 2. The input as a sequence: a setting byte (bit 0: tight limits, 4
///    messages and 40 rows per batch, else the defaults), then steps of a
///    kind byte (`% 4`: 0 a length-delimited `Table`, 1 the last `Table`
///    again, 2 a length-delimited `BatchSummary`, 3 the TTL passes and
///    abandoned batches expire), at most [`STEPS_MAX`].
///
/// Invariants: a prepared message keeps every row under a valid, unique
/// record key; its chunks are each at most one record (64 KiB) and parse
/// back to the same rows; the rules' decisions agree with the batch they
/// judged (a staged message is in the batch, an identical resend is
/// answered as such, a commit has exactly messages 1..=n and the claimed
/// rows, a committed batch answers its summary again); a batch survives
/// its JSON record.
pub fn tablestream(data: &[u8]) {
    if let Ok(table) = Table::decode(data) {
        let again = Table::decode(table.encode_to_vec().as_slice()).expect("a Table re-encodes");
        assert_eq!(again, table, "Table round trip");
        Model::new(false).write(&table);
    }
    if let Ok(summary) = BatchSummary::decode(data) {
        let again = BatchSummary::decode(summary.encode_to_vec().as_slice())
            .expect("a BatchSummary re-encodes");
        assert_eq!(again, summary, "BatchSummary round trip");
        Model::new(false).summary(&summary);
    }
    let Some((&setting, mut rest)) = data.split_first() else {
        return;
    };
    let mut model = Model::new(setting & 1 == 1);
    let mut last: Option<Table> = None;
    for _ in 0..STEPS_MAX {
        let Some((&kind, tail)) = rest.split_first() else {
            break;
        };
        rest = tail;
        model.now_ms += 1_000;
        match kind % 4 {
            0 => {
                let Ok(table) = Table::decode_length_delimited(&mut rest) else {
                    break;
                };
                model.write(&table);
                last = Some(table);
            }
            1 => {
                if let Some(table) = &last {
                    model.write(table);
                }
            }
            2 => {
                let Ok(summary) = BatchSummary::decode_length_delimited(&mut rest) else {
                    break;
                };
                model.summary(&summary);
            }
            _ => model.expire(),
        }
    }
}

/// What the store would hold of one client's batches: the batch records
/// and each staged message's chunk records.
struct Model {
    limits: Limits,
    now_ms: u64,
    batches: BTreeMap<String, Batch>,
    /// `(batch key, message number)` → its chunks' JSON.
    chunks: BTreeMap<(String, u32), Vec<Vec<u8>>>,
}

impl Model {
    fn new(tight: bool) -> Model {
        let config = IngestConfig::default();
        let limits = if tight {
            Limits {
                messages_per_batch_max: 4,
                rows_per_batch_max: 40,
            }
        } else {
            Limits {
                messages_per_batch_max: config.messages_per_batch_max,
                rows_per_batch_max: config.rows_per_batch_max,
            }
        };
        Model {
            limits,
            now_ms: 1_800_000_000_000,
            batches: BTreeMap::new(),
            chunks: BTreeMap::new(),
        }
    }

    /// `service::write_blocking` without the store, the lease and the
    /// per-client bounds.
    fn write(&mut self, table: &Table) {
        let bytes = table.encode_to_vec();
        if bytes.len() > MESSAGE_BYTES_MAX {
            return;
        }
        let message = message_of(table);
        let prepared = match rows::prepare(&message) {
            Ok(prepared) => prepared,
            Err(errors) => {
                assert!(
                    !errors.is_empty() && errors.len() <= rows::ERRORS_PER_MESSAGE_MAX + 1,
                    "a refused message names 1 to {} errors: {errors:?}",
                    rows::ERRORS_PER_MESSAGE_MAX + 1
                );
                return;
            }
        };
        check_prepared(&message, &prepared);
        let number = u32::try_from(message.number).expect("prepare refuses numbers below 1");
        let key = staging::batch_key(CLIENT, &message.erp, message.batch_id);
        let (writes, count) = staging::chunk_writes(&key, number, &prepared.rows);
        let chunks = check_chunks(&writes, count, &prepared.rows);
        let arriving = Arriving {
            digest: hex::encode(&Sha256::digest(&bytes)[..16]),
            rows: u32::try_from(prepared.rows.len()).expect("rows are bounded"),
            collection: prepared.collection,
            base_load: message.base_load,
            chunks: count,
        };
        let at = (message.erp.as_str(), message.batch_id, CLIENT);
        let stored = self.batches.get(&key);
        let decision = rules::on_write(
            stored,
            at,
            message.number,
            arriving.clone(),
            self.limits,
            self.now_ms,
        );
        let batch = match decision {
            WriteDecision::AlreadyHave => {
                let stored = stored.expect("a resend is answered from a stored batch");
                assert_ne!(
                    stored.state,
                    State::Expired,
                    "an expired batch is forgotten"
                );
                assert_eq!(
                    stored.messages.get(&number).map(|info| info.digest()),
                    Some(arriving.digest.as_str()),
                    "a resend is the same message"
                );
                return;
            }
            WriteDecision::Refuse(error) => {
                assert!(!error.is_empty(), "a refusal says why");
                return;
            }
            WriteDecision::Stage { batch } => *batch,
        };
        let open = stored.filter(|b| b.state == State::Open);
        assert_eq!(batch.state, State::Open, "a staging batch is open");
        assert_eq!(
            (batch.erp.as_str(), batch.batch_id, batch.client.as_str()),
            at
        );
        let info = batch.messages.get(&number).expect("the staged message");
        assert_eq!(info.digest(), arriving.digest);
        assert_eq!(
            (info.rows(), info.base_load(), info.chunks()),
            (arriving.rows, arriving.base_load, arriving.chunks)
        );
        assert_eq!(
            batch.tables.get(info.table()),
            Some(&arriving.collection),
            "the message names its collection"
        );
        assert!(batch.tables.len() <= TABLES_PER_BATCH_MAX);
        assert!(batch.rows_staged() <= self.limits.rows_per_batch_max);
        assert!(batch
            .messages
            .keys()
            .all(|n| (1..=self.limits.messages_per_batch_max).contains(n)));
        let before = open.map_or((0, 0), |b| (b.messages.len(), b.rows_staged()));
        assert_eq!(
            (batch.messages.len(), batch.rows_staged()),
            (before.0 + 1, before.1 + u64::from(arriving.rows)),
            "staging adds one message and its rows"
        );
        assert_eq!(
            rules::on_write(
                Some(&batch),
                at,
                message.number,
                arriving,
                self.limits,
                self.now_ms
            ),
            WriteDecision::AlreadyHave,
            "an identical resend after staging changes nothing"
        );
        let record = serde_json::to_vec(&batch).expect("a batch serializes");
        let back: Batch = serde_json::from_slice(&record).expect("a batch record decodes");
        assert_eq!(back, batch, "a batch survives its record");
        if record.len() > RECORD_VALUE_BYTES_MAX {
            // `service::staged` refuses a batch record over one record.
            return;
        }
        if open.is_none() {
            // A new batch (or one whose id starts again): nothing of an
            // earlier one is staged (expiry deleted it).
            self.chunks.retain(|(batch, _), _| *batch != key);
        }
        self.chunks.insert((key.clone(), number), chunks);
        self.batches.insert(key, batch);
    }

    /// `service::summary_blocking` without the store: a commit reads the
    /// staged chunks back as `service::row_writes` does.
    fn summary(&mut self, summary: &BatchSummary) {
        if rows::check_erp(&summary.erp).is_err() {
            return;
        }
        let key = staging::batch_key(CLIENT, &summary.erp, summary.batch_id);
        let claim = Claim {
            message_count: i64::from(summary.message_count),
            record_count: summary.record_count,
        };
        let stored = self.batches.get(&key);
        match rules::on_summary(stored, summary.batch_id, &claim, self.limits) {
            SummaryDecision::Refuse(errors) => {
                assert!(!errors.is_empty(), "a refused summary says why");
            }
            SummaryDecision::AlreadyCommitted => {
                let batch = stored.expect("a committed batch");
                assert_eq!(batch.state, State::Committed);
                assert_eq!(batch.messages.len() as i64, claim.message_count);
                assert_eq!(batch.rows_staged() as i64, claim.record_count);
            }
            SummaryDecision::Commit => {
                let batch = stored.expect("a commit has a batch");
                assert_eq!(batch.state, State::Open, "only an open batch commits");
                let count = u32::try_from(claim.message_count).expect("a commit's count");
                assert!(
                    batch.messages.keys().copied().eq(1..=count),
                    "a commit has exactly messages 1..={count}"
                );
                assert_eq!(batch.rows_staged() as i64, claim.record_count);
                let mut records: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
                for (number, info) in &batch.messages {
                    let collection = batch
                        .tables
                        .get(info.table())
                        .expect("a message names one of its batch's tables");
                    let chunks = self
                        .chunks
                        .get(&(key.clone(), *number))
                        .expect("a staged message's chunks");
                    assert_eq!(chunks.len(), info.chunks() as usize);
                    let mut rows = 0;
                    for chunk in chunks {
                        let part: Vec<StagedRow> =
                            serde_json::from_slice(chunk).expect("a staged chunk decodes");
                        rows += part.len();
                        for row in part {
                            let value = row.value.map(|raw| raw.get().to_string());
                            records.insert((collection.clone(), row.key), value);
                        }
                    }
                    assert_eq!(rows, info.rows() as usize, "a message's staged rows");
                }
                assert!(records.len() as u64 <= batch.rows_staged());
                let mut done = batch.clone();
                done.state = State::Committed;
                done.errors.clear();
                done.records_committed = records.len() as u64;
                done.updated_at_ms = self.now_ms;
                done.committed_at_ms = Some(self.now_ms);
                assert_eq!(
                    rules::on_summary(Some(&done), summary.batch_id, &claim, self.limits),
                    SummaryDecision::AlreadyCommitted,
                    "a committed batch answers its summary again"
                );
                self.chunks.retain(|(batch, _), _| *batch != key);
                self.batches.insert(key, done);
            }
        }
    }

    /// The TTL passes: `expiry` expires every abandoned open batch and
    /// deletes its chunks.
    fn expire(&mut self) {
        self.now_ms += TTL_MS;
        let now_ms = self.now_ms;
        let mut gone = Vec::new();
        for (key, batch) in &mut self.batches {
            let due = rules::expired(batch, now_ms, TTL_MS);
            assert_eq!(
                due,
                batch.state == State::Open,
                "open batches expire, only they"
            );
            if due {
                batch.state = State::Expired;
                gone.push(key.clone());
            }
        }
        self.chunks.retain(|(batch, _), _| !gone.contains(batch));
    }
}

/// A prepared message: every row kept, under a valid record key; distinct
/// primary-key values never share a key; values are JSON objects of the
/// row's columns as strings, the delete column left out.
fn check_prepared(message: &rows::Message, prepared: &Prepared) {
    assert_eq!(
        Ok(prepared.collection.clone()),
        rows::collection_of(&message.table)
    );
    assert_eq!(prepared.rows.len(), message.rows.len(), "every row is kept");
    let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (row, staged) in message.rows.iter().zip(&prepared.rows) {
        assert!(
            validate_record_key(&staged.key).is_ok(),
            "a staged key is a record key: {:?}",
            staged.key
        );
        let parts: Vec<&str> = message
            .schema
            .primary_key
            .iter()
            .map(|column| {
                row.iter()
                    .find(|(name, _)| name == column)
                    .map(|(_, value)| value.as_str())
                    .expect("a kept row has its primary key")
            })
            .collect();
        if let Some(earlier) = keys.insert(&staged.key, parts.clone()) {
            assert_eq!(
                earlier, parts,
                "two primary keys share the record key {:?}",
                staged.key
            );
        }
        if let Some(value) = &staged.value {
            let object: Map<String, Value> =
                serde_json::from_str(value.get()).expect("a staged value is a JSON object");
            assert!(!object.contains_key(rows::DELETED_COLUMN));
            for (name, text) in row.iter().filter(|(name, _)| name != rows::DELETED_COLUMN) {
                assert_eq!(object.get(name), Some(&Value::String(text.clone())));
            }
        }
    }
}

/// A message's chunk records: as many as counted, at least one, each at
/// most one record, keys in order, and together the rows themselves.
fn check_chunks(
    writes: &[fieldsync_node::store::RecordWrite],
    count: u32,
    rows: &[StagedRow],
) -> Vec<Vec<u8>> {
    assert_eq!(writes.len(), count as usize, "the chunk count");
    assert!(count >= 1, "a message has at least one chunk");
    let mut back = Vec::with_capacity(rows.len());
    let mut chunks = Vec::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        assert_eq!(write.collection, staging::BATCH_ROWS);
        if index > 0 {
            assert!(writes[index - 1].key < write.key, "chunk keys in order");
        }
        let value = write.value.as_ref().expect("a chunk has a value");
        assert!(
            value.len() <= RECORD_VALUE_BYTES_MAX,
            "chunk {index} is {} bytes, over one record",
            value.len()
        );
        let part: Vec<StagedRow> = serde_json::from_slice(value).expect("a chunk decodes");
        assert!(
            !part.is_empty() || rows.is_empty(),
            "no empty chunk among rows"
        );
        back.extend(part);
        chunks.push(value.clone());
    }
    assert!(back == rows, "the chunks hold the rows");
    chunks
}

// ---------------------------------------------------------------------------
// `event_envelope`

/// Arbitrary bytes as the body of `POST /api/v1/events`.
///
/// Invariants: decoding and checking are deterministic (the same bytes
/// give the same event, derived key and fingerprint); the derived key and
/// the fingerprint ignore how the copy was sent (`generatedOn`, `locale`;
/// the versions too for the derived key); the canonical form is JSON; a
/// target collection is a valid data collection; a derived work-order id
/// is a valid id; a record key is a valid key; a work-order event's body
/// passes or fails the REST checks as a client error, and a work order it
/// creates or edits still reads.
pub fn event_envelope(data: &[u8]) {
    let Some(body) = decoded::<Value>(data) else {
        return;
    };
    let parsed = event::parse(&body);
    assert_eq!(parsed, event::parse(&body), "parse is a function");
    let Ok(event) = parsed else {
        return;
    };
    for at in [&event.header.generated_on, &event.created_at] {
        assert!(time(at).is_some(), "a parsed event's times read");
    }
    let key = event::derived_key(&event);
    let fingerprint = event::fingerprint(&event);
    assert_eq!(key.len(), 64);
    assert_eq!(fingerprint.len(), 64);
    let again: Value = serde_json::from_slice(data).expect("it decoded once");
    let again = event::parse(&again).expect("it parsed once");
    assert_eq!(again, event);
    assert_eq!(
        event::derived_key(&again),
        key,
        "the derived key is a function"
    );
    assert_eq!(
        event::fingerprint(&again),
        fingerprint,
        "the fingerprint is a function"
    );
    assert!(
        serde_json::from_str::<Value>(&event::canonical(&body)).is_ok(),
        "the canonical form is JSON"
    );
    // The same event sent again, stamped anew and by a newer sender.
    let mut resent = body.clone();
    resent["header"]["generatedOn"] = json!("2031-02-03T04:05:06.789+01:00");
    resent["header"]["locale"] = json!("en-US");
    let resent = event::parse(&resent).expect("the same event, stamped anew");
    assert_eq!(
        event::fingerprint(&resent),
        fingerprint,
        "a resend's fingerprint"
    );
    assert_eq!(event::derived_key(&resent), key, "a resend's derived key");
    let mut upgraded = body.clone();
    upgraded["content"]["appVersion"] = json!("99.0.1");
    upgraded["content"]["schemaVersion"] = json!("7");
    let upgraded = event::parse(&upgraded).expect("the same event from a newer sender");
    assert_eq!(
        event::derived_key(&upgraded),
        key,
        "versions are not the event"
    );
    let stored = KeyRecord {
        fingerprint: fingerprint.clone(),
        derived: false,
        status: 201,
        answer: Value::Null,
        at: AT.into(),
    };
    assert!(matches!(
        event::judge(Some(&stored), &fingerprint, false),
        Seen::Replay { .. }
    ));
    assert_eq!(
        event::judge(Some(&stored), &fingerprint, true),
        Seen::Conflict
    );
    let Ok(target) = event::target(&event.schema_name) else {
        return;
    };
    match target {
        Target::WorkOrder => {
            assert!(event
                .schema_name
                .eq_ignore_ascii_case(event::WORK_ORDER_SCHEMA));
            work_order_event(&event, &key);
        }
        Target::Records(collection) => {
            assert_eq!(
                data_collection_for(&collection),
                Ok(collection.clone()),
                "a target collection names itself"
            );
            if let Ok(record_key) = event::record_key(&event.data) {
                assert!(validate_record_key(&record_key).is_ok());
            }
        }
    }
}

/// `api/events.rs`'s `work_order_plan`, and then what `create` and `edit`
/// would do to a work order, in memory.
fn work_order_event(event: &Event, key: &str) {
    let integration = Actor::new(CLIENT, Role::Integration);
    match event.action {
        Action::Insert => {
            let Some(body) = from_data::<CreateWorkOrder>(&event.data) else {
                return;
            };
            let id = match body.id {
                Some(_) => match event::work_order_id(&event.data) {
                    Ok(id) => id,
                    Err(_) => return,
                },
                None => {
                    let id = event::derived_work_order_id(&event::scoped_key(CLIENT, key));
                    assert!(validate_doc_id(&id).is_ok(), "a derived id is valid: {id}");
                    id
                }
            };
            create_work_order(body, id, &integration);
        }
        Action::Update => {
            let Ok(id) = event::work_order_id(&event.data) else {
                return;
            };
            assert!(validate_doc_id(&id).is_ok());
            let mut fields = event.data.clone();
            fields.remove("id");
            if let Some(body) = from_data::<PatchWorkOrder>(&fields) {
                patch_work_order(body, &integration);
            }
        }
        Action::Delete => {
            if let Ok(id) = event::work_order_id(&event.data) {
                assert!(validate_doc_id(&id).is_ok());
            }
        }
    }
}

/// `data` as a REST body type, as `api/events.rs`'s `from_data` decodes it.
fn from_data<T: DeserializeOwned>(data: &Map<String, Value>) -> Option<T> {
    decoded(&serde_json::to_vec(data).expect("a map serializes"))
}

// ---------------------------------------------------------------------------
// `json_bodies`

/// Arbitrary bytes as every REST request body the gateway decodes:
/// `json_from_bytes` (what `ApiJson` and the batch endpoints use) of each
/// body type, the token form through `ApiForm`, and a record's JSON value.
/// What decodes goes through the handler's pure checks: work-order bodies
/// become the typed operations the handlers build and are applied, as an
/// operator, an integration client or the assigned technician, to a real
/// work order in memory (which must still read afterwards); batch bodies
/// become the protobuf `Table` and summary and go through the batch path of
/// [`tablestream`]; entities, webhooks' URL and secret through their
/// checks; times through the node's RFC 3339 parser (what it reads formats
/// back to the same instant). The input is also tried as an `If-Match`
/// header's value (`entity_tags`).
///
/// Invariant besides: a body that does not decode is a client error (4xx),
/// never a server error.
pub fn json_bodies(data: &[u8]) {
    let operator = Actor::new("op", Role::Operator);
    let tech = Actor::new(TECH, Role::Technician);
    if let Some(body) = decoded::<CreateWorkOrder>(data) {
        let id = body.id.clone().unwrap_or_else(|| "wo-new".into());
        if validate_doc_id(&id).is_ok() {
            create_work_order(body, id, &operator);
        }
    }
    if let Some(body) = decoded::<PatchWorkOrder>(data) {
        patch_work_order(body, &operator);
    }
    if let Some(body) = decoded::<NewNote>(data) {
        let op = Operation::AddNote {
            id: "n-fuzz".into(),
            at: AT.into(),
            text: body.text,
        };
        apply(&op, &[&operator, &tech]);
    }
    if let Some(body) = decoded::<NewMaterial>(data) {
        let op = Operation::RequestMaterial {
            id: "m-fuzz".into(),
            at: AT.into(),
            sku: body.sku,
            qty: body.qty,
            unit: body.unit,
            description: body.description,
        };
        apply(&op, &[&operator, &tech]);
    }
    if let Some(body) = decoded::<SetMaterialState>(data) {
        let op = Operation::SetMaterialState {
            id: MATERIAL_ID.into(),
            state: body.state.into(),
        };
        apply(&op, &[&operator, &tech]);
    }
    if let Some(body) = decoded::<NewStatus>(data) {
        let op = Operation::AppendStatus {
            at: AT.into(),
            to: body.to.into(),
            note: body.note,
        };
        apply(&op, &[&operator, &tech]);
    }
    if let Some(body) = decoded::<NewClosure>(data) {
        let op = Operation::Close {
            at: AT.into(),
            resolution: body.resolution,
            signed_by: body.signed_by,
            signature: body.signature,
        };
        apply(&op, &[&tech]);
    }
    if let Some(body) = decoded::<Report>(data) {
        apply(&Operation::EditReport { text: body.text }, &[&tech]);
    }
    if let Some(body) = decoded::<NewTimeEntry>(data) {
        // `log_time` judges a technician's times before applying them.
        if time(&body.start).is_some() && time(&body.end).is_some() {
            let op = Operation::AppendTime {
                start: body.start,
                end: body.end,
            };
            apply(&op, &[&tech]);
        }
    }
    if let Some(body) = decoded::<BatchMessage>(data) {
        let batch_id = body.batch_id.unwrap_or(1_700_000_000);
        Model::new(false).write(&table_of(batch_id, body));
    }
    if let Some(body) = decoded::<BatchSummaryBody>(data) {
        for text in [&body.timestamp_start, &body.timestamp_end]
            .into_iter()
            .flatten()
        {
            let _ = time(text);
        }
        Model::new(false).summary(&BatchSummary {
            erp: body.erp,
            batch_id: body.batch_id.unwrap_or(1_700_000_000),
            message_count: body.message_count,
            record_count: body.record_count,
            timestamp_start: None,
            timestamp_end: None,
        });
    }
    if let Some(body) = decoded::<Entities>(data) {
        if entities::check(&body).is_ok() {
            for asked in [None, Some(1), Some(2), Some(u32::MAX)] {
                let answer = entities::answer(&body, asked);
                let version = answer["uploadVersion"].as_u64().expect("a version");
                assert!((1..=u64::from(body.upload_version.max(1))).contains(&version));
                assert_eq!(
                    answer["queries"].as_array().map(Vec::len),
                    Some(body.queries.len())
                );
            }
        }
    }
    if let Some(body) = decoded::<NewWebhook>(data) {
        let loopback: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().expect("a network")];
        let _ = crate::delivery::ssrf::check_url(&body.url, &[]);
        let _ = crate::delivery::ssrf::check_url(&body.url, &loopback);
        if let Some(secret) = &body.secret {
            let _ = crate::delivery::signing::check_secret(secret);
        }
    }
    let _ = decoded::<NewCommand>(data);
    let _ = decoded::<CommandResult>(data);
    let _ = decoded::<NewUser>(data);
    let _ = decoded::<CollectionGrants>(data);
    token_form(data);
    entity_tag_header(data);
    // `PUT /api/v1/records/...`: any JSON value, stored compact.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let compact = serde_json::to_vec(&value).expect("a value serializes");
        assert!(serde_json::from_slice::<Value>(&compact).is_ok());
    }
}

/// The input as an `If-Match` header's value (`If-None-Match` alike):
/// `entity_tags` takes `*` or well-formed tags, or refuses with a 4xx; the
/// tags it takes, joined again, read the same, and a strong tag matches
/// itself.
fn entity_tag_header(data: &[u8]) {
    use axum::http::{header::IF_MATCH, HeaderMap, HeaderValue};
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(IF_MATCH, value);
    let tags = match entity_tags(&headers, IF_MATCH) {
        Ok(Some(tags)) => tags,
        Ok(None) => panic!("a present header has tags or is refused"),
        Err(error) => return client_error(&error),
    };
    assert!(!tags.is_empty());
    for tag in &tags {
        let quoted = tag.strip_prefix("W/").unwrap_or(tag);
        assert!(
            tag == "*" || (quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"')),
            "a taken tag is `*` or quoted: {tag:?}"
        );
        if !tag.starts_with("W/") {
            assert!(tags_match(&tags, tag), "a strong tag matches itself");
        }
    }
    let mut again = HeaderMap::new();
    let joined = HeaderValue::from_str(&tags.join(", ")).expect("tags are visible ASCII");
    again.insert(IF_MATCH, joined);
    let reread = entity_tags(&again, IF_MATCH).map_err(|error| error.detail);
    assert_eq!(reread, Ok(Some(tags)), "tags joined again read the same");
}

/// An RFC 3339 time as the node's one parser reads it; what it reads
/// formats back (`rfc3339_ms`, up to year 9999, the parser's four digits)
/// to text it reads as the same instant.
fn time(text: &str) -> Option<u64> {
    use fieldsync_node::clock::{parse_rfc3339_ms, rfc3339_ms};
    /// 10000-01-01T00:00:00Z: `rfc3339_ms` writes five-digit years past it.
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    let ms = parse_rfc3339_ms(text)?;
    if ms < YEAR_10000_MS {
        let formatted = rfc3339_ms(ms);
        assert_eq!(
            parse_rfc3339_ms(&formatted),
            Some(ms),
            "{text:?} read as {ms} ms, written {formatted:?}"
        );
    }
    Some(ms)
}

/// The token endpoint's form, through the gateway's own `ApiForm`.
fn token_form(data: &[u8]) {
    use axum::extract::FromRequest;
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/oauth/token")
        .header(
            axum::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(axum::body::Body::from(data.to_vec()))
        .expect("a request");
    if let Some(Err(error)) = ready(ApiForm::<TokenRequest>::from_request(request, &())) {
        client_error(&error);
    }
}

/// Poll a future that needs no waking (a request over an in-memory
/// body) to its end; `None` if it would wait.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
    }
    None
}

/// `T` decoded as the handlers decode JSON bodies; a refusal must be a
/// client error.
fn decoded<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    match json_from_bytes::<T>(data) {
        Ok(value) => Some(value),
        Err(error) => {
            client_error(&error);
            None
        }
    }
}

fn client_error(error: &ApiError) {
    assert!(
        error.kind.status().is_client_error(),
        "a bad body is a client error, not {:?}: {}",
        error.kind,
        error.detail
    );
}

// ---------------------------------------------------------------------------
// Work orders in memory.

/// The fixture: a work order assigned to [`TECH`] with one material.
fn fixture() -> &'static WorkOrderDoc {
    static DOC: OnceLock<WorkOrderDoc> = OnceLock::new();
    DOC.get_or_init(|| {
        let new = NewWorkOrder {
            id: Some(WO_ID.into()),
            number: "WO-2026-FUZZ".into(),
            title: "Boiler".into(),
            description: "No hot water".into(),
            customer: Customer {
                name: "Ana".into(),
                address: "Rua A".into(),
                phone: "1".into(),
                document: String::new(),
            },
            priority: Priority::Normal,
            assignee: Some(TECH.into()),
            scheduled_for: Some(AT.into()),
            created_at: AT.into(),
            initial_status: Status::Assigned,
            notes: vec![("op".into(), "call first".into(), AT.into())],
            materials: vec![("PIPE-15".into(), 2.0, "copper pipe".into())],
        };
        let operator = Actor::new("op", Role::Operator);
        let (doc, _) = WorkOrderDoc::create(&actor_id(), &operator, WO_ID, &new, 1_000)
            .expect("the fixture work order");
        doc
    })
}

/// The actor of the in-memory work orders, an `automerge::ActorId`
/// (inferred: the gateway does not name automerge itself).
fn actor_id<A: From<Vec<u8>>>() -> A {
    A::from(vec![7; 16])
}

/// `create_work_order` / the event's create, without the store: the
/// conversion must refuse as a client error or give a work order that
/// reads.
fn create_work_order(body: CreateWorkOrder, id: String, who: &Actor) {
    let mut new = match new_work_order(body, id.clone()) {
        Ok(new) => new,
        Err(error) => return client_error(&error),
    };
    if new.number.is_empty() {
        // What `numbered` gives in the store closure.
        new.number = fieldsync_node::numbering::format_number("WO", 2026, 1);
    }
    assert_eq!(new.id.as_deref(), Some(id.as_str()));
    if let Ok((doc, _)) = WorkOrderDoc::create(&actor_id(), who, &id, &new, 1_000) {
        assert_reads(&doc, "a created work order");
        assert_eq!(doc.id(), id);
    }
}

/// `patch_work_order` / the event's update, without the store.
fn patch_work_order(body: PatchWorkOrder, who: &Actor) {
    match operator_patch(body) {
        Ok(patch) => apply(&Operation::EditOperatorFields(patch), &[who]),
        Err(error) => client_error(&error),
    }
}

/// Apply `op` as each of `who` to a copy of the fixture; what applies must
/// leave a work order that reads.
fn apply(op: &Operation, who: &[&Actor]) {
    for who in who {
        let mut doc = fixture().clone();
        if doc.apply(who, op, 2_000).is_ok() {
            assert_reads(&doc, "a work order after a typed operation");
        }
    }
}

fn assert_reads(doc: &WorkOrderDoc, what: &str) {
    if let Err(error) = doc.view() {
        panic!("{what} does not read: {error}");
    }
}
