//! `POST /api/v1/events`: the external event envelope (reference §2).
//!
//! An on-premise product posts each row change as an event; the gateway
//! checks the envelope member by member (`ingest/event.rs`), applies it,
//! and answers once it is durable. `WORK_ORDER` events create, edit
//! (operator fields, assignment) and tombstone work orders through the
//! operator's typed operations and the same checks as REST (the body
//! shapes and conversions of `work_orders.rs`); any other `schemaName`
//! becomes a record of the data collection of that name, lower-cased.
//! Both land on the changes feed and webhooks like every other change,
//! which is what lets two on-premise products exchange events through one
//! node with no cloud (standalone mode, README).
//!
//! Why one write set per event: the effect and its `event_keys` record
//! (the idempotency key with the first answer) commit together or not at
//! all, so "accepted" means durable, a resend is never applied twice, and
//! a refused event leaves nothing behind. Two sends of one event racing
//! each other are settled by the key record's compare-and-set
//! (`Expect::Absent`): the loser's write set is refused whole, and it
//! finds and replays the winner's answer.
//!
//! Why the answer holds no seq or version: it is stored in the same write
//! set as the effect, before the committer assigns them, and a resend must
//! get the very same answer. The changes feed has both.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fieldsync_node::doc::{Operation, WorkOrderDoc};
use fieldsync_node::store::{doc_write, Expect, RecordWrite, Store, WriteError, WriteSet};
use fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX;
use fieldsync_schemas::{Actor, Collection, NewWorkOrder, Scope};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::model::{ChangeOp, CreateWorkOrder, PatchWorkOrder};
use super::work_orders;
use crate::auth::Caller;
use crate::clock::{now_rfc3339, now_s};
use crate::error::{ApiError, ApiJson, ErrorKind, Problem};
use crate::ingest::event::{self, Action, EnvelopeError, Event, KeyRecord, Seen, Target};
use crate::state::AppState;

/// The internal collection of idempotency records, keyed `{user}/{key}`.
use crate::ingest::history::EVENT_KEYS;
use crate::ingest::staging;
/// Tries at applying one event when a concurrent write moved what it
/// checked (the record it writes, or its key, taken by a racing resend).
const ATTEMPTS: usize = 3;
/// The header a replayed answer carries.
const REPLAYED: &str = "idempotent-replayed";

/// What an accepted event did. A resend gets the same status and body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EventAnswer {
    /// The key the event is recorded under: the `Idempotency-Key` sent, or
    /// the one derived from the event (SHA-256, hex).
    pub(crate) idempotency_key: String,
    /// `work_orders`, or the record collection `schemaName` names.
    pub(crate) collection: String,
    /// The work order's id, or the record's key.
    pub(crate) id: String,
    /// What the event changed; `null` when it changed nothing (a DELETE of
    /// a record that is not there).
    pub(crate) op: Option<ChangeOp>,
    /// The work order's heads after the event (work orders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) heads: Option<Vec<String>>,
}

/// An event's effect, fully checked, before any write.
#[derive(Debug)]
enum Plan {
    CreateWorkOrder(Box<NewWorkOrder>),
    EditWorkOrder {
        id: String,
        operation: Operation,
    },
    /// `value: None` deletes.
    Record {
        collection: String,
        key: String,
        value: Option<Vec<u8>>,
    },
}

impl Plan {
    /// The assignee the plan gives a work order, if any.
    fn assignee(&self) -> Option<&str> {
        match self {
            Plan::CreateWorkOrder(new) => new.assignee.as_deref(),
            Plan::EditWorkOrder {
                operation: Operation::EditOperatorFields(patch),
                ..
            } => patch.assignee.as_ref().and_then(Option::as_deref),
            _ => None,
        }
    }

    fn id(&self) -> &str {
        match self {
            Plan::CreateWorkOrder(new) => new.id.as_deref().unwrap_or_default(),
            Plan::EditWorkOrder { id, .. } => id,
            Plan::Record { key, .. } => key,
        }
    }
}

/// The event's idempotency key and what tells a resend from another event.
#[derive(Clone, Debug)]
struct Keyed {
    key: String,
    /// `{user}/{key}`: the `event_keys` record's key.
    scoped: String,
    fingerprint: String,
    derived: bool,
}

impl Keyed {
    fn new(caller: &Caller, event: &Event, sent: Option<String>) -> Keyed {
        let derived = sent.is_none();
        let key = sent.unwrap_or_else(|| event::derived_key(event));
        Keyed {
            scoped: event::scoped_key(&caller.user_id, &key),
            key,
            fingerprint: event::fingerprint(event),
            derived,
        }
    }

    fn answer(
        &self,
        collection: &str,
        id: &str,
        op: Option<ChangeOp>,
        heads: Option<Vec<String>>,
    ) -> EventAnswer {
        EventAnswer {
            idempotency_key: self.key.clone(),
            collection: collection.to_string(),
            id: id.to_string(),
            op,
            heads,
        }
    }

    /// The `event_keys` record of the accepted event: written only if no
    /// record holds the key yet.
    fn write(&self, status: StatusCode, answer: &EventAnswer) -> Result<RecordWrite, WriteError> {
        let unencodable = |error: serde_json::Error| WriteError::InvalidRecord(error.to_string());
        let record = KeyRecord {
            fingerprint: self.fingerprint.clone(),
            derived: self.derived,
            status: status.as_u16(),
            answer: serde_json::to_value(answer).map_err(unencodable)?,
            at: now_rfc3339(),
        };
        Ok(RecordWrite {
            collection: EVENT_KEYS.into(),
            key: self.scoped.clone(),
            value: Some(serde_json::to_vec(&record).map_err(unencodable)?),
            expect: Expect::Absent,
            replicated_version: None,
        })
    }
}

/// The answer to send, and whether it is a replay.
struct Settled {
    status: u16,
    answer: Value,
    replayed: bool,
}

impl Settled {
    fn applied(status: StatusCode, answer: &EventAnswer) -> Result<Settled, WriteError> {
        Ok(Settled {
            status: status.as_u16(),
            answer: serde_json::to_value(answer)
                .map_err(|error| WriteError::InvalidRecord(error.to_string()))?,
            replayed: false,
        })
    }
}

fn invalid(error: EnvelopeError) -> ApiError {
    ApiError::new(ErrorKind::InvalidBody, error.to_string())
}

/// Name `content.data` in a client error that speaks of its members
/// (the REST checks name `customer.name`, not where it sits here).
fn in_data(error: ApiError) -> ApiError {
    if !error.kind.status().is_client_error() {
        return error;
    }
    ApiError {
        detail: format!("`content.data`: {}", error.detail),
        ..error
    }
}

/// `data` as a REST body type, with REST's own messages (which name the
/// member's path, e.g. `customer.name: invalid type`).
fn from_data<T: DeserializeOwned>(data: &Map<String, Value>) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(data).map_err(ApiError::internal)?;
    axum::Json::<T>::from_bytes(&bytes)
        .map(|axum::Json(value)| value)
        .map_err(|rejection| {
            ApiError::new(
                ErrorKind::InvalidBody,
                format!("`content.data`: {}", rejection.body_text()),
            )
        })
}

/// The sent `Idempotency-Key`, checked; `None` when absent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = |reason: String| ApiError::new(ErrorKind::InvalidHeader, reason);
    let text = value
        .to_str()
        .map_err(|_| bad("`Idempotency-Key` may hold only visible ASCII characters".into()))?;
    event::check_idempotency_key(text).map_err(bad)?;
    Ok(Some(text.to_string()))
}

/// What a `WORK_ORDER` event asks: INSERT is a REST create body (`data.id`
/// optional: else derived from the idempotency key), UPDATE `data.id` and
/// a REST patch body, DELETE `data.id` (other members ignored: a deleted
/// row's last values).
fn work_order_plan(event: &Event, keyed: &Keyed) -> Result<Plan, ApiError> {
    match event.action {
        Action::Insert => {
            let body: CreateWorkOrder = from_data(&event.data)?;
            let id = match body.id {
                Some(_) => event::work_order_id(&event.data).map_err(invalid)?,
                None => event::derived_work_order_id(&keyed.scoped),
            };
            let new = work_orders::new_work_order(body, id).map_err(in_data)?;
            Ok(Plan::CreateWorkOrder(Box::new(new)))
        }
        Action::Update => {
            let id = event::work_order_id(&event.data).map_err(invalid)?;
            let mut fields = event.data.clone();
            fields.remove("id");
            let body: PatchWorkOrder = from_data(&fields)?;
            let patch = work_orders::operator_patch(body).map_err(in_data)?;
            Ok(Plan::EditWorkOrder {
                id,
                operation: Operation::EditOperatorFields(patch),
            })
        }
        Action::Delete => Ok(Plan::EditWorkOrder {
            id: event::work_order_id(&event.data).map_err(invalid)?,
            operation: Operation::Tombstone,
        }),
    }
}

/// What an event asks, checked as far as it can be without the store.
fn plan(event: &Event, target: &Target, keyed: &Keyed) -> Result<Plan, ApiError> {
    let Target::Records(collection) = target else {
        return work_order_plan(event, keyed);
    };
    let key = event::record_key(&event.data).map_err(invalid)?;
    let value = match event.action {
        Action::Delete => None,
        Action::Insert | Action::Update => {
            let bytes = serde_json::to_vec(&event.data).map_err(ApiError::internal)?;
            if bytes.len() > RECORD_VALUE_BYTES_MAX {
                return Err(ApiError::new(
                    ErrorKind::BodyTooLarge,
                    format!(
                        "`content.data` is {} bytes as compact JSON, over the record limit of \
                         {RECORD_VALUE_BYTES_MAX} bytes",
                        bytes.len()
                    ),
                ));
            }
            Some(bytes)
        }
    };
    Ok(Plan::Record {
        collection: collection.clone(),
        key,
        value,
    })
}

/// Create the work order and its key record in one write set.
fn create(
    store: &Store,
    who: &Actor,
    new: &NewWorkOrder,
    keyed: &Keyed,
) -> Result<Settled, WriteError> {
    let id = new.id.clone().unwrap_or_default();
    let (document, edit) = WorkOrderDoc::create(&store.actor(), who, &id, new, now_s() as i64)?;
    let write = doc_write(&document, edit, true, true);
    let heads = write.heads.iter().map(hex::encode).collect();
    let answer = keyed.answer(
        Collection::WorkOrders.name(),
        &id,
        Some(ChangeOp::Create),
        Some(heads),
    );
    let key_write = keyed.write(StatusCode::CREATED, &answer)?;
    store
        .submit(WriteSet {
            docs: vec![write],
            records: vec![key_write],
            checkpoint: None,
        })?
        .wait()?;
    Settled::applied(StatusCode::CREATED, &answer)
}

/// Apply the typed operation and write the key record with it.
fn edit(
    store: &Store,
    who: &Actor,
    id: &str,
    operation: &Operation,
    keyed: &Keyed,
) -> Result<Settled, WriteError> {
    let mut answer = None;
    store.edit_work_order_with_records(id, |document| {
        let edit = document.apply(who, operation, now_s() as i64)?;
        let heads = edit.heads.iter().map(|head| hex::encode(head.0)).collect();
        let made = keyed.answer(
            Collection::WorkOrders.name(),
            id,
            Some(edit.op.into()),
            Some(heads),
        );
        let key_write = keyed.write(StatusCode::OK, &made)?;
        answer = Some(made);
        Ok((edit, vec![key_write]))
    })?;
    let answer = answer.ok_or_else(|| WriteError::InvalidRecord("no answer".into()))?;
    Settled::applied(StatusCode::OK, &answer)
}

/// Put or delete the record, and write the key record with it. Whether
/// the record is there is read first and pinned (`Expect`), so the answer
/// says truly what the write did; a concurrent write refuses it instead.
fn record(
    store: &Store,
    collection: &str,
    key: &str,
    value: Option<&Vec<u8>>,
    keyed: &Keyed,
) -> Result<Settled, WriteError> {
    let live = store
        .record(collection, key)?
        .is_some_and(|record| !record.deleted);
    let (op, expect) = match (value.is_some(), live) {
        (true, false) => (Some(ChangeOp::Create), Expect::Absent),
        (true, true) => (Some(ChangeOp::Update), Expect::Present),
        (false, true) => (Some(ChangeOp::Delete), Expect::Present),
        (false, false) => (None, Expect::Absent),
    };
    let status = if op == Some(ChangeOp::Create) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = keyed.answer(collection, key, op, None);
    let mut records = Vec::with_capacity(2);
    if op.is_some() {
        records.push(RecordWrite {
            collection: collection.to_string(),
            key: key.to_string(),
            value: value.cloned(),
            expect,
            replicated_version: None,
        });
    }
    records.push(keyed.write(status, &answer)?);
    store
        .submit(WriteSet {
            records,
            ..WriteSet::default()
        })?
        .wait()?;
    Settled::applied(status, &answer)
}

fn apply(store: &Store, who: &Actor, plan: &Plan, keyed: &Keyed) -> Result<Settled, WriteError> {
    match plan {
        Plan::CreateWorkOrder(new) => create(store, who, new, keyed),
        Plan::EditWorkOrder { id, operation } => edit(store, who, id, operation, keyed),
        Plan::Record {
            collection,
            key,
            value,
        } => record(store, collection, key, value.as_ref(), keyed),
    }
}

/// The answer stored under the event's key, if it was seen before.
fn seen(store: &Store, keyed: &Keyed) -> Result<Option<Settled>, ApiError> {
    let stored = store
        .record(EVENT_KEYS, &keyed.scoped)
        .map_err(ApiError::internal)?
        .filter(|record| !record.deleted)
        .map(|record| serde_json::from_slice::<KeyRecord>(&record.value))
        .transpose()
        .map_err(ApiError::internal)?;
    match event::judge(stored.as_ref(), &keyed.fingerprint, keyed.derived) {
        Seen::New => Ok(None),
        // The key's record may still be in a flush: answer once durable.
        Seen::Replay { status, answer } => store
            .durable_barrier()
            .map_err(crate::error::store_write_error)
            .map(|()| {
                Some(Settled {
                    status,
                    answer,
                    replayed: true,
                })
            }),
        Seen::Conflict => Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "the `Idempotency-Key` `{}` was already used for a different event",
                keyed.key
            ),
        )),
    }
}

/// What the caller may learn of a failed write.
fn failure(caller: &Caller, plan: &Plan, error: WriteError) -> ApiError {
    match error {
        WriteError::NotFound(id) => ApiError::new(
            ErrorKind::InvalidValue,
            format!("`content.data.id`: no work order `{id}`"),
        ),
        WriteError::VersionMismatch { .. } => ApiError::new(
            ErrorKind::Conflict,
            "the record changed while the event was applied; send the event again",
        ),
        WriteError::InvalidRecord(reason) => {
            ApiError::new(ErrorKind::InvalidValue, format!("`content.data`: {reason}"))
        }
        other => in_data(work_orders::write_error(caller, plan.id(), other)),
    }
}

/// Replay a seen event, or apply a new one with its key record. A refused
/// compare-and-set means a racing write: look again (a resend that won
/// is replayed), then retry.
fn settle(
    store: &Store,
    caller: &Caller,
    plan: &mut Plan,
    keyed: &Keyed,
    prefix: &str,
) -> Result<Settled, ApiError> {
    let who = caller.actor();
    let mut previous = None;
    for _ in 0..ATTEMPTS {
        if let Some(settled) = seen(store, keyed)? {
            return Ok(settled);
        }
        if let Some(error @ WriteError::AlreadyExists(_)) = previous {
            return Err(failure(caller, plan, error));
        }
        work_orders::check_assignee(store, plan.assignee()).map_err(in_data)?;
        if let Plan::CreateWorkOrder(new) = plan {
            // A new event only (a resend was answered above); once.
            work_orders::numbered(store, prefix, new).map_err(crate::error::store_write_error)?;
        }
        let plan = &*plan;
        if let Plan::Record { collection, .. } = plan {
            staging::check_new_collection(store, collection)
                .map_err(ApiError::internal)?
                .map_err(|why| {
                    ApiError::new(
                        ErrorKind::InvalidBody,
                        format!("`content.schemaName`: {why}"),
                    )
                })?;
        }
        match apply(store, &who, plan, keyed) {
            Ok(settled) => return Ok(settled),
            Err(error @ (WriteError::VersionMismatch { .. } | WriteError::AlreadyExists(_))) => {
                previous = Some(error);
            }
            Err(error) => return Err(failure(caller, plan, error)),
        }
    }
    Err(previous.map_or_else(
        || ApiError::internal("no attempt"),
        |error| failure(caller, plan, error),
    ))
}

/// Everything checked that can be without the store.
fn check(
    caller: &Caller,
    headers: &HeaderMap,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<(Plan, Keyed, Target), ApiError> {
    let sent = idempotency_key(headers)?;
    let ApiJson(body) = body?;
    let event = event::parse(&body).map_err(invalid)?;
    let target = event::target(&event.schema_name).map_err(invalid)?;
    let keyed = Keyed::new(caller, &event, sent);
    Ok((plan(&event, &target, &keyed)?, keyed, target))
}

/// Check the envelope and settle the event: the `target` label for the
/// metric (`work_orders` or `records`: a bounded set, never a name the
/// client chose), and the outcome.
async fn accept(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    body: Result<ApiJson<Value>, ApiError>,
) -> (&'static str, Result<Settled, ApiError>) {
    let (plan, keyed, target) = match check(&caller, headers, body) {
        Ok(checked) => checked,
        Err(error) => return ("-", Err(error)),
    };
    let schema = match target {
        Target::WorkOrder => "work_orders",
        Target::Records(_) => "records",
    };
    let prefix = state.config().work_order_prefix.clone();
    let mut plan = plan;
    let settled = state
        .blocking(move |store| settle(store, &caller, &mut plan, &keyed, &prefix))
        .await;
    (schema, settled)
}

/// The JSON Schema of the envelope (`EventEnvelope` in the document),
/// member by member as `ingest/event.rs` checks it: strings of 1 to N
/// characters (N bytes there), RFC 3339 times from 1970 on, a locale, an
/// action, and `content` in one of four shapes by `schemaName` and
/// `action`: a work-order create body, a work-order patch with its `id`, a
/// work order's `id` to delete, or a record of a data collection named by
/// `schemaName` (keyed by `data.id`, else `data.key`). Unknown members of
/// the envelope are ignored, so its objects admit more members. Built from
/// the other schemas of the document (`schemas`), which it refers to.
pub(super) fn envelope_schema(schemas: &mut serde_json::Map<String, Value>) -> Value {
    use serde_json::json;
    let text = |max: usize| json!({"type": "string", "minLength": 1, "maxLength": max});
    let version = json!({"oneOf": [
        {"type": "string", "minLength": 1, "maxLength": 64},
        {"type": "number"},
    ]});
    // RFC 3339 from 1970 on (what `clock::parse_rfc3339_ms` takes).
    let time = json!({
        "type": "string",
        "format": "date-time",
        "maxLength": 128,
        "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-",
    });
    let work_order_id = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"});
    let work_order_schema =
        json!({"type": "string", "pattern": "^[Ww][Oo][Rr][Kk]_[Oo][Rr][Dd][Ee][Rr]$"});
    // UPDATE: `id` and a patch body (at least one member besides `id`).
    if let Some(patch) = schemas.get("PatchWorkOrder").cloned() {
        let mut update = patch;
        update["properties"]["id"] = work_order_id.clone();
        let mut required = vec![json!("id")];
        if let Some(more) = update.get("required").and_then(Value::as_array) {
            required.extend(more.iter().cloned());
        }
        update["required"] = Value::Array(required);
        update["minProperties"] = json!(2);
        update["description"] = json!(
            "A work order's `id` and a patch body (`PatchWorkOrder`): the members to change."
        );
        schemas.insert("WorkOrderEventUpdate".into(), update);
    }
    let key = super::contract::record_key_schema();
    let record_key = json!({"oneOf": [key, {"type": "integer"}]});
    let content = |schema_name: Value, action: Value, data: Value| {
        json!({
            "type": "object",
            "required": ["originApp", "appVersion", "schemaName", "schemaVersion",
                         "action", "data", "createdAt", "token"],
            "properties": {
                "originApp": text(128),
                "appVersion": version,
                "schemaName": schema_name,
                "schemaVersion": version,
                "action": action,
                "data": data,
                "createdAt": time,
                "token": text(1024),
            },
        })
    };
    let records = json!({
        "type": "object",
        "description": "The record's value (at most 65536 bytes as compact JSON), keyed by `id`, else `key`: a record key or an integer.",
        "properties": {"id": {"oneOf": [record_key, {"type": "null"}]}},
        // `key` counts only without an `id`.
        "anyOf": [
            {"required": ["id"], "properties": {"id": record_key}},
            {"required": ["key"], "properties": {"id": {"type": "null"}, "key": record_key}},
        ],
    });
    json!({
        "type": "object",
        "description": "An on-premise change event (reference §2); unknown members are ignored.",
        "required": ["header", "content"],
        "properties": {
            "header": {
                "type": "object",
                "required": ["type", "generatedOn", "locale"],
                "properties": {
                    "type": text(128),
                    "generatedOn": time,
                    "locale": {"type": "string", "maxLength": 35,
                               "pattern": "^[A-Za-z0-9]+([_-][A-Za-z0-9]+)*$"},
                },
            },
            "content": {"oneOf": [
                content(work_order_schema.clone(), json!({"const": "INSERT"}),
                        json!({"$ref": "#/components/schemas/CreateWorkOrder"})),
                content(work_order_schema.clone(), json!({"const": "UPDATE"}),
                        json!({"$ref": "#/components/schemas/WorkOrderEventUpdate"})),
                content(work_order_schema, json!({"const": "DELETE"}),
                        json!({"type": "object", "required": ["id"], "properties": {"id": work_order_id}})),
                content(json!({"type": "string", "pattern": super::contract::outside_collection_pattern(&["work_order"])}),
                        json!({"enum": ["INSERT", "UPDATE", "DELETE"]}),
                        records),
            ]},
        },
    })
}

/// Accept one event envelope and apply it (operators, `events:write`).
#[utoipa::path(
    post, path = "/api/v1/events", tag = "ingest",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,200}$",
            description = "1 to 200 visible ASCII characters. Sending the same event again with the same key \
                           changes nothing and gets the first answer; a different event with a used key is a 409. \
                           Without it the key is derived from originApp, schemaName, token, createdAt, action and data.")),
    request_body(content = Object, content_type = "application/json",
                 description = "`{\"header\": {\"type\", \"generatedOn\", \"locale\"}, \"content\": {\"originApp\", \"appVersion\", \
                                \"schemaName\", \"schemaVersion\", \"action\": \"INSERT\"|\"UPDATE\"|\"DELETE\", \"data\": {...}, \
                                \"createdAt\", \"token\"}}`; times in RFC 3339; unknown members are ignored. \
                                `schemaName` `WORK_ORDER`: INSERT `data` is a work-order create body (`id` optional), \
                                UPDATE `data` is `id` plus a work-order patch body, DELETE `data` names `id`. \
                                Any other `schemaName` is a record in the collection of that name in lower case, \
                                keyed by `data.id` (else `data.key`), whose value is `data`."),
    responses(
        (status = 201, description = "Created (a work order, or a record that was not there) and durable", body = EventAnswer),
        (status = 200, description = "Applied and durable; or a resend, answered as the first time with `Idempotent-Replayed: true`", body = EventAnswer),
        (status = 400, description = "Not JSON, or a bad `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Technicians; clients without `events:write`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The `Idempotency-Key` was used for another event; the work order exists or is deleted", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit, or `data` over a record's 65536 bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A member missing, mistyped or invalid; `detail` names it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_event(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Response, ApiError> {
    // Authorization before the body: a caller who may not send learns
    // nothing from validation.
    caller.office_or_scope(Scope::EventsWrite)?;
    let (schema, settled) = accept(&state, caller, &headers, body).await;
    let outcome = match &settled {
        Ok(settled) if settled.replayed => "replayed",
        Ok(_) => "applied",
        Err(error) if error.kind.status().is_client_error() => "refused",
        Err(_) => "failed",
    };
    metrics::counter!("fieldsync_events_total", "target" => schema, "outcome" => outcome)
        .increment(1);
    let settled = settled?;
    let status = StatusCode::from_u16(settled.status).map_err(ApiError::internal)?;
    let mut response = (status, axum::Json(settled.answer)).into_response();
    if settled.replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}
