//! The external event envelope (reference §2) as a pure core: a JSON value
//! in, a checked [`Event`] or an error naming the field out; where the
//! event lands ([`target`], [`record_key`], [`work_order_id`]); and the
//! idempotency key, fingerprint and replay rule of `POST /api/v1/events`.
//!
//! Why by hand and not `#[derive(Deserialize)]`: serde names a missing or
//! mistyped member but not where it sits (`missing field `action``, not
//! `content.action`), and RFC 3339 needs its own check anyway. A sender
//! must learn which member of which part is wrong, so every rule here
//! answers with the member's full path. Members we do not read are
//! ignored: on-premise products add members over their versions, and an
//! event that carries more than we read is still the same event.
//!
//! Why the idempotency rules live here: a resend must answer as the first
//! send did, and a different event under a reused key must be refused;
//! both are decisions over values (a key, a fingerprint, a stored answer)
//! with no IO, so they are pinned by the table tests below. `api/events.rs`
//! does the reading and writing.

use fieldsync_schemas::collection::{data_collection_for, validate_record_key, RecordNameError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The `schemaName` whose events are work orders (any letter case).
pub(crate) const WORK_ORDER_SCHEMA: &str = "WORK_ORDER";
/// Bytes of an `Idempotency-Key`, at most.
pub(crate) const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;
/// Bytes of a name-like member (`header.type`, `originApp`, `schemaName`).
const NAME_BYTES_MAX: usize = 128;
/// Bytes of a version member (`appVersion`, `schemaVersion`).
const VERSION_BYTES_MAX: usize = 64;
/// Bytes of `content.token`.
const TOKEN_BYTES_MAX: usize = 1024;
/// Bytes of `header.locale` (BCP 47 tags stay well under it).
const LOCALE_BYTES_MAX: usize = 35;

/// What the event did at its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Insert,
    Update,
    Delete,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "INSERT",
            Action::Update => "UPDATE",
            Action::Delete => "DELETE",
        }
    }
}

/// The envelope's header: how the event travelled.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Header {
    /// `header.type`: the target entity or staging table.
    pub(crate) kind: String,
    pub(crate) generated_on: String,
    pub(crate) locale: String,
}

/// One checked event: the envelope's header and its `content`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    pub(crate) header: Header,
    pub(crate) origin_app: String,
    pub(crate) app_version: String,
    pub(crate) schema_name: String,
    pub(crate) schema_version: String,
    pub(crate) action: Action,
    pub(crate) data: Map<String, Value>,
    pub(crate) created_at: String,
    pub(crate) token: String,
}

/// An envelope member is missing, mistyped or out of range. Every variant
/// names the member by its path (`content.createdAt`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("the body must be a JSON object with `header` and `content`, not {0}")]
    NotAnObject(&'static str),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("`{field}` must be {expected}, not {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl EnvelopeError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> EnvelopeError {
        EnvelopeError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// `a string`, `an object`...: what a sender sent, for error messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn member<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    path: &'static str,
) -> Result<&'a Value, EnvelopeError> {
    match object.get(name) {
        None | Some(Value::Null) => Err(EnvelopeError::Missing(path)),
        Some(value) => Ok(value),
    }
}

fn object<'a>(
    parent: &'a Map<String, Value>,
    name: &str,
    path: &'static str,
) -> Result<&'a Map<String, Value>, EnvelopeError> {
    match member(parent, name, path)? {
        Value::Object(map) => Ok(map),
        other => Err(EnvelopeError::WrongType {
            field: path,
            expected: "an object",
            found: type_name(other),
        }),
    }
}

/// A string member of 1 to `max` bytes.
fn text(
    parent: &Map<String, Value>,
    name: &str,
    path: &'static str,
    max: usize,
) -> Result<String, EnvelopeError> {
    match member(parent, name, path)? {
        Value::String(text) if text.is_empty() || text.len() > max => Err(EnvelopeError::invalid(
            path,
            format!("must be 1 to {max} bytes"),
        )),
        Value::String(text) => Ok(text.clone()),
        other => Err(EnvelopeError::WrongType {
            field: path,
            expected: "a string",
            found: type_name(other),
        }),
    }
}

/// A version: a string, or a number (`1`, `2.3`) taken as its JSON text.
fn version(
    parent: &Map<String, Value>,
    name: &str,
    path: &'static str,
) -> Result<String, EnvelopeError> {
    match member(parent, name, path)? {
        Value::Number(number) => Ok(number.to_string()),
        Value::String(_) => text(parent, name, path, VERSION_BYTES_MAX),
        other => Err(EnvelopeError::WrongType {
            field: path,
            expected: "a string or a number",
            found: type_name(other),
        }),
    }
}

fn time(
    parent: &Map<String, Value>,
    name: &str,
    path: &'static str,
) -> Result<String, EnvelopeError> {
    let value = text(parent, name, path, NAME_BYTES_MAX)?;
    if !is_rfc3339(&value) {
        return Err(EnvelopeError::invalid(
            path,
            "must be an RFC 3339 time, e.g. `2026-05-01T12:00:00.123Z`",
        ));
    }
    Ok(value)
}

fn locale(header: &Map<String, Value>) -> Result<String, EnvelopeError> {
    let path = "header.locale";
    let value = text(header, "locale", path, LOCALE_BYTES_MAX)?;
    let well_formed = value
        .split(['_', '-'])
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !well_formed {
        return Err(EnvelopeError::invalid(
            path,
            "must be a locale such as `pt_BR` or `en-US`",
        ));
    }
    Ok(value)
}

fn action(content: &Map<String, Value>) -> Result<Action, EnvelopeError> {
    let path = "content.action";
    match text(content, "action", path, NAME_BYTES_MAX)?.as_str() {
        "INSERT" => Ok(Action::Insert),
        "UPDATE" => Ok(Action::Update),
        "DELETE" => Ok(Action::Delete),
        other => Err(EnvelopeError::invalid(
            path,
            format!(
                "must be INSERT, UPDATE or DELETE, not `{}`",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// Check an envelope `{header {type, generatedOn, locale}, content
/// {originApp, appVersion, schemaName, schemaVersion, action, data,
/// createdAt, token}}`, member by member, in that order: the first fault
/// found is the one reported.
pub(crate) fn parse(body: &Value) -> Result<Event, EnvelopeError> {
    let Value::Object(root) = body else {
        return Err(EnvelopeError::NotAnObject(type_name(body)));
    };
    let header = object(root, "header", "header")?;
    let header = Header {
        kind: text(header, "type", "header.type", NAME_BYTES_MAX)?,
        generated_on: time(header, "generatedOn", "header.generatedOn")?,
        locale: locale(header)?,
    };
    let content = object(root, "content", "content")?;
    Ok(Event {
        header,
        origin_app: text(content, "originApp", "content.originApp", NAME_BYTES_MAX)?,
        app_version: version(content, "appVersion", "content.appVersion")?,
        schema_name: text(content, "schemaName", "content.schemaName", NAME_BYTES_MAX)?,
        schema_version: version(content, "schemaVersion", "content.schemaVersion")?,
        action: action(content)?,
        data: object(content, "data", "content.data")?.clone(),
        created_at: time(content, "createdAt", "content.createdAt")?,
        token: text(content, "token", "content.token", TOKEN_BYTES_MAX)?,
    })
}

/// Whether `text` is an RFC 3339 date-time: the node's one timestamp
/// parser (`clock::parse_rfc3339_ms`) decides.
pub(crate) fn is_rfc3339(text: &str) -> bool {
    fieldsync_node::clock::parse_rfc3339_ms(text).is_some()
}

/// Where an event lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `WORK_ORDER`: a work order, through the operator's typed operations.
    WorkOrder,
    /// Anything else: a record in this data collection (`schemaName`
    /// lower-cased).
    Records(String),
}

/// The target `schemaName` names: `WORK_ORDER` (any case), else the data
/// collection of that name in lower case; internal collections are refused.
pub(crate) fn target(schema_name: &str) -> Result<Target, EnvelopeError> {
    if schema_name.eq_ignore_ascii_case(WORK_ORDER_SCHEMA) {
        return Ok(Target::WorkOrder);
    }
    let path = "content.schemaName";
    match data_collection_for(schema_name) {
        Ok(collection) => Ok(Target::Records(collection)),
        Err(RecordNameError::Internal(collection)) => Err(EnvelopeError::invalid(
            path,
            format!("names `{collection}`, which events may not write"),
        )),
        Err(error) => Err(EnvelopeError::invalid(
            path,
            format!("does not name a collection: {error}"),
        )),
    }
}

/// A record event's key: `data.id`, else `data.key`; a string, or an
/// integer taken as its decimal text (ERP ids are often numbers).
pub(crate) fn record_key(data: &Map<String, Value>) -> Result<String, EnvelopeError> {
    let (path, value) = match (data.get("id"), data.get("key")) {
        (Some(value), _) if !value.is_null() => ("content.data.id", value),
        (_, Some(value)) if !value.is_null() => ("content.data.key", value),
        _ => {
            return Err(EnvelopeError::invalid(
                "content.data.id",
                "is missing: a record event names its record by `data.id` (or `data.key`)",
            ))
        }
    };
    let key = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
        // JSON Schema's `integer` (the OpenAPI document's) includes `42.0`.
        Value::Number(number) if whole_number(number).is_some() => {
            whole_number(number).unwrap_or_default().to_string()
        }
        other => {
            return Err(EnvelopeError::WrongType {
                field: path,
                expected: "a string or an integer",
                found: type_name(other),
            })
        }
    };
    validate_record_key(&key)
        .map_err(|error| EnvelopeError::invalid(path, format!("is not a record key: {error}")))?;
    Ok(key)
}

/// The largest whole float taken as an integer: beyond 2^53 a float no
/// longer holds every integer, so its text would not be the sender's id.
const WHOLE_FLOAT_MAX: f64 = 9_007_199_254_740_992.0;

/// A float with no fraction, within [`WHOLE_FLOAT_MAX`], as an integer.
fn whole_number(number: &serde_json::Number) -> Option<i64> {
    let value = number.as_f64()?;
    let whole = value.is_finite() && value.fract() == 0.0 && value.abs() <= WHOLE_FLOAT_MAX;
    // In range by the check above, so the cast is exact.
    whole.then_some(value as i64)
}

/// The work order an UPDATE or DELETE names: `data.id`, a work-order id.
pub(crate) fn work_order_id(data: &Map<String, Value>) -> Result<String, EnvelopeError> {
    let path = "content.data.id";
    let id = match data.get("id") {
        None | Some(Value::Null) => {
            return Err(EnvelopeError::invalid(
                path,
                "is missing: an UPDATE or DELETE of a WORK_ORDER names it by `data.id`",
            ))
        }
        Some(Value::String(id)) => id.clone(),
        Some(other) => {
            return Err(EnvelopeError::WrongType {
                field: path,
                expected: "a string",
                found: type_name(other),
            })
        }
    };
    fieldsync_node::doc::validate_doc_id(&id).map_err(|reason| {
        EnvelopeError::invalid(path, format!("is not a work-order id: {reason}"))
    })?;
    Ok(id)
}

/// Check an `Idempotency-Key` header value: 1 to 200 visible ASCII
/// characters (no spaces, no controls).
pub(crate) fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(format!(
            "`Idempotency-Key` must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} characters"
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("`Idempotency-Key` may hold only visible ASCII characters".into());
    }
    Ok(())
}

/// The key of the `event_keys` record: keys are the caller's own, so two
/// clients sending the same key never meet.
pub(crate) fn scoped_key(user_id: &str, key: &str) -> String {
    format!("{user_id}/{key}")
}

/// The key of an event sent without `Idempotency-Key`: SHA-256 (hex) over
/// what makes it the same event at its source: origin, schema, the
/// source's token, creation time, action and data. `appVersion`,
/// `schemaVersion` and the header describe the sending, not the event.
pub(crate) fn derived_key(event: &Event) -> String {
    sha256_hex(&canonical(&json!([
        event.origin_app,
        event.schema_name,
        event.token,
        event.created_at,
        event.action.as_str(),
        Value::Object(event.data.clone()),
    ])))
}

/// A digest of the event itself, to tell a resend under the same
/// `Idempotency-Key` from a different event reusing it. `generatedOn` and
/// `locale` are left out: they say when and how this copy was sent, and a
/// resend may be stamped anew.
pub(crate) fn fingerprint(event: &Event) -> String {
    sha256_hex(&canonical(&json!({
        "type": event.header.kind,
        "originApp": event.origin_app,
        "appVersion": event.app_version,
        "schemaName": event.schema_name,
        "schemaVersion": event.schema_version,
        "action": event.action.as_str(),
        "data": Value::Object(event.data.clone()),
        "createdAt": event.created_at,
        "token": event.token,
    })))
}

/// The id of a work order an INSERT creates without `data.id`: from the
/// scoped idempotency key, so a resend can never create a second one, even
/// if its `event_keys` record were gone.
pub(crate) fn derived_work_order_id(scoped_key: &str) -> String {
    format!("ev-{}", &sha256_hex(scoped_key)[..32])
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// JSON with object members sorted by key and no whitespace, so equal
/// values hash equally whatever order the sender wrote them in.
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, member)) in members.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What `event_keys` holds per accepted event: enough to answer a resend
/// as the first send was answered, and to recognise a different event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    /// [`fingerprint`] of the accepted event.
    pub(crate) fingerprint: String,
    /// The key was derived ([`derived_key`]), not sent.
    pub(crate) derived: bool,
    /// The first answer's status and JSON body.
    pub(crate) status: u16,
    pub(crate) answer: Value,
    pub(crate) at: String,
}

/// What to do with an event whose key may have been seen.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seen {
    /// A new key: apply the event.
    New,
    /// A resend: answer as the first time, change nothing.
    Replay { status: u16, answer: Value },
    /// A sent key reused for a different event (or a sent key equal to a
    /// derived one): refuse.
    Conflict,
}

/// Judge an event by the record stored under its key. A derived key is
/// itself a digest of the event, so a match is a resend even if the
/// versions or header changed; a sent key is a resend only if the event
/// is the same ([`fingerprint`]).
pub(crate) fn judge(stored: Option<&KeyRecord>, fingerprint: &str, derived: bool) -> Seen {
    match stored {
        None => Seen::New,
        Some(stored) if stored.derived != derived => Seen::Conflict,
        Some(stored) if !derived && stored.fingerprint != fingerprint => Seen::Conflict,
        Some(stored) => Seen::Replay {
            status: stored.status,
            answer: stored.answer.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Value {
        json!({
            "header": {"type": "PESSOA", "generatedOn": "2026-05-01T12:00:01.5Z", "locale": "pt_BR"},
            "content": {
                "originApp": "erp-a", "appVersion": "12.1.2310", "schemaName": "PESSOA",
                "schemaVersion": 3, "action": "INSERT", "data": {"id": 7, "nome": "Ana"},
                "createdAt": "2026-05-01T12:00:00.123Z", "token": "tenant-1",
                "extra": "ignored"
            },
            "unknown": true
        })
    }

    /// `envelope()` with the member at `path` (dot-separated) replaced by
    /// `value`, or removed when `value` is `None`.
    fn with(path: &str, value: Option<Value>) -> Value {
        let mut body = envelope();
        let (parent, last) = match path.rsplit_once('.') {
            Some((parent, last)) => (
                body.pointer_mut(&format!("/{}", parent.replace('.', "/"))),
                last,
            ),
            None => (Some(&mut body), path),
        };
        let map = parent
            .and_then(Value::as_object_mut)
            .expect("parent object");
        match value {
            Some(value) => map.insert(last.to_string(), value),
            None => map.remove(last),
        };
        body
    }

    #[test]
    fn a_valid_envelope_parses_and_ignores_unknown_members() {
        let event = parse(&envelope()).expect("valid");
        assert_eq!(event.header.kind, "PESSOA");
        assert_eq!(event.header.locale, "pt_BR");
        assert_eq!(event.schema_version, "3", "a number is taken as its text");
        assert_eq!(event.action, Action::Insert);
        assert_eq!(event.data["nome"], "Ana");
    }

    #[test]
    fn each_fault_names_its_member() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "missing header",
                with("header", None),
                "`header` is missing",
            ),
            (
                "header null",
                with("header", Some(Value::Null)),
                "`header` is missing",
            ),
            (
                "header a string",
                with("header", Some(json!("x"))),
                "`header` must be an object, not a string",
            ),
            (
                "missing type",
                with("header.type", None),
                "`header.type` is missing",
            ),
            (
                "empty type",
                with("header.type", Some(json!(""))),
                "`header.type` must be 1 to 128 bytes",
            ),
            (
                "bad generatedOn",
                with("header.generatedOn", Some(json!("yesterday"))),
                "`header.generatedOn` must be an RFC 3339 time",
            ),
            (
                "generatedOn a number",
                with("header.generatedOn", Some(json!(1714564800))),
                "`header.generatedOn` must be a string, not a number",
            ),
            (
                "bad locale",
                with("header.locale", Some(json!("pt BR"))),
                "`header.locale` must be a locale",
            ),
            (
                "missing content",
                with("content", None),
                "`content` is missing",
            ),
            (
                "content an array",
                with("content", Some(json!([]))),
                "`content` must be an object, not an array",
            ),
            (
                "missing originApp",
                with("content.originApp", None),
                "`content.originApp` is missing",
            ),
            (
                "appVersion a boolean",
                with("content.appVersion", Some(json!(true))),
                "`content.appVersion` must be a string or a number, not a boolean",
            ),
            (
                "missing schemaName",
                with("content.schemaName", None),
                "`content.schemaName` is missing",
            ),
            (
                "schemaVersion an object",
                with("content.schemaVersion", Some(json!({"v": 1}))),
                "`content.schemaVersion` must be a string or a number, not an object",
            ),
            (
                "missing action",
                with("content.action", None),
                "`content.action` is missing",
            ),
            (
                "unknown action",
                with("content.action", Some(json!("UPSERT"))),
                "`content.action` must be INSERT, UPDATE or DELETE, not `UPSERT`",
            ),
            (
                "lower-case action",
                with("content.action", Some(json!("insert"))),
                "`content.action` must be INSERT, UPDATE or DELETE",
            ),
            (
                "missing data",
                with("content.data", None),
                "`content.data` is missing",
            ),
            (
                "data an array",
                with("content.data", Some(json!([1]))),
                "`content.data` must be an object, not an array",
            ),
            (
                "data a string",
                with("content.data", Some(json!("{}"))),
                "`content.data` must be an object, not a string",
            ),
            (
                "bad createdAt",
                with("content.createdAt", Some(json!("2026-02-30T00:00:00Z"))),
                "`content.createdAt` must be an RFC 3339 time",
            ),
            (
                "createdAt without zone",
                with("content.createdAt", Some(json!("2026-05-01T12:00:00"))),
                "`content.createdAt` must be an RFC 3339 time",
            ),
            (
                "missing token",
                with("content.token", None),
                "`content.token` is missing",
            ),
            (
                "long token",
                with("content.token", Some(json!("t".repeat(1025)))),
                "`content.token` must be 1 to 1024 bytes",
            ),
        ];
        for (case, body, expected) in cases {
            let error = parse(&body).expect_err(case).to_string();
            assert!(
                error.starts_with(expected),
                "{case}: `{error}` should start with `{expected}`"
            );
        }
        assert_eq!(
            parse(&json!([1])).expect_err("array").to_string(),
            "the body must be a JSON object with `header` and `content`, not an array"
        );
    }

    #[test]
    fn rfc3339_times() {
        for good in [
            "2026-05-01T12:00:00Z",
            "2026-05-01T12:00:00.123Z",
            "2026-05-01t12:00:00.123456789z",
            "2026-05-01T12:00:00-03:00",
            "2016-12-31T23:59:60Z",
            "2024-02-29T23:59:59+14:00",
            "2000-02-29T00:00:00Z",
            // RFC 3339 §5.6 lets a space stand for `T`.
            "2026-05-01 12:00:00Z",
        ] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "",
            "2026-05-01",
            "2026-05-01T12:00:00",
            "2026-05-01T12:00:00.Z",
            "2026-13-01T12:00:00Z",
            "2026-04-31T12:00:00Z",
            "2025-02-29T12:00:00Z",
            "1900-02-29T12:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T12:60:00Z",
            "2026-05-01T12:00:61Z",
            "2026-05-01T12:00:00+3:00",
            "2026-05-01T12:00:00+24:00",
            "2026-05-01T12:00:00Z ",
            "+2026-05-01T12:00:00Z",
            "２026-05-01T12:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn targets_and_keys() {
        assert_eq!(target("WORK_ORDER"), Ok(Target::WorkOrder));
        assert_eq!(target("work_order"), Ok(Target::WorkOrder));
        assert_eq!(target("PESSOA"), Ok(Target::Records("pessoa".into())));
        for (name, expected) in [
            (
                "USERS",
                "`content.schemaName` names `users`, which events may not write",
            ),
            ("EVENT_KEYS", "`content.schemaName` names `event_keys`"),
            (
                "WORK_ORDERS",
                "`content.schemaName` does not name a collection",
            ),
            ("A B", "`content.schemaName` does not name a collection"),
        ] {
            let error = target(name).expect_err(name).to_string();
            assert!(error.starts_with(expected), "{name}: {error}");
        }
        let data = |value: Value| value.as_object().cloned().expect("object");
        assert_eq!(
            record_key(&data(json!({"id": "P-1", "key": "x"}))),
            Ok("P-1".into())
        );
        assert_eq!(record_key(&data(json!({"id": 42}))), Ok("42".into()));
        // A whole float is the integer JSON Schema says it is.
        assert_eq!(record_key(&data(json!({"id": 42.0}))), Ok("42".into()));
        assert_eq!(record_key(&data(json!({"id": -0.0}))), Ok("0".into()));
        assert_eq!(record_key(&data(json!({"id": -7.0}))), Ok("-7".into()));
        assert_eq!(
            record_key(&data(json!({"id": null, "key": "k"}))),
            Ok("k".into())
        );
        for (value, expected) in [
            (json!({}), "`content.data.id` is missing"),
            (
                json!({"id": 1.5}),
                "`content.data.id` must be a string or an integer, not a number",
            ),
            (
                json!({"id": 1e300}),
                "`content.data.id` must be a string or an integer, not a number",
            ),
            (
                json!({"key": {"a": 1}}),
                "`content.data.key` must be a string or an integer, not an object",
            ),
            (json!({"id": ""}), "`content.data.id` is not a record key"),
        ] {
            let error = record_key(&data(value.clone()))
                .expect_err("bad key")
                .to_string();
            assert!(error.starts_with(expected), "{value}: {error}");
        }
        assert_eq!(
            work_order_id(&data(json!({"id": "wo-1"}))),
            Ok("wo-1".into())
        );
        for (value, expected) in [
            (json!({"number": "WO-1"}), "`content.data.id` is missing"),
            (
                json!({"id": 7}),
                "`content.data.id` must be a string, not a number",
            ),
            (
                json!({"id": "a/b"}),
                "`content.data.id` is not a work-order id",
            ),
        ] {
            let error = work_order_id(&data(value.clone()))
                .expect_err("bad id")
                .to_string();
            assert!(error.starts_with(expected), "{value}: {error}");
        }
    }

    #[test]
    fn idempotency_keys() {
        assert!(check_idempotency_key("order-42/attempt:1").is_ok());
        assert!(check_idempotency_key(&"k".repeat(200)).is_ok());
        for bad in ["", "a b", "tab\t", "ключ", &"k".repeat(201)] {
            assert!(check_idempotency_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(scoped_key("erp-a", "k1"), "erp-a/k1");
        let id = derived_work_order_id("erp-a/k1");
        assert_eq!(id, derived_work_order_id("erp-a/k1"));
        assert_ne!(id, derived_work_order_id("erp-b/k1"));
        assert!(fieldsync_node::doc::validate_doc_id(&id).is_ok(), "{id}");
    }

    #[test]
    fn the_derived_key_is_the_event_at_its_source() {
        let base = parse(&envelope()).expect("valid");
        let key = derived_key(&base);
        assert_eq!(key.len(), 64);
        // The same event sent again, re-stamped, reordered, from a newer app.
        let mut resend = with("header.generatedOn", Some(json!("2026-05-02T00:00:00Z")));
        resend["content"]["appVersion"] = json!("12.1.2410");
        resend["content"]["data"] = json!({"nome": "Ana", "id": 7});
        assert_eq!(derived_key(&parse(&resend).expect("valid")), key);
        // A different event: any of origin, schema, token, time, action, data.
        for (path, value) in [
            ("content.originApp", json!("erp-b")),
            ("content.schemaName", json!("CLIENTE")),
            ("content.token", json!("tenant-2")),
            ("content.createdAt", json!("2026-05-01T12:00:00.124Z")),
            ("content.action", json!("UPDATE")),
            ("content.data", json!({"id": 7, "nome": "Bia"})),
        ] {
            let other = parse(&with(path, Some(value))).expect("valid");
            assert_ne!(derived_key(&other), key, "{path}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_only_how_the_copy_was_sent() {
        let base = fingerprint(&parse(&envelope()).expect("valid"));
        for (path, value) in [
            ("header.generatedOn", json!("2026-06-01T00:00:00Z")),
            ("header.locale", json!("en_US")),
            ("content.extra", json!("anything")),
        ] {
            let same = parse(&with(path, Some(value))).expect("valid");
            assert_eq!(fingerprint(&same), base, "{path}");
        }
        for (path, value) in [
            ("header.type", json!("CLIENTE")),
            ("content.appVersion", json!("13")),
            ("content.schemaVersion", json!("4")),
            ("content.data", json!({"id": 7})),
        ] {
            let other = parse(&with(path, Some(value))).expect("valid");
            assert_ne!(fingerprint(&other), base, "{path}");
        }
    }

    #[test]
    fn canonical_json_sorts_members_at_every_depth() {
        let a = json!({"b": [{"y": 1, "x": "é\""}], "a": null});
        assert_eq!(canonical(&a), r#"{"a":null,"b":[{"x":"é\"","y":1}]}"#);
    }

    #[test]
    fn judging_a_key() {
        let stored = |derived: bool| KeyRecord {
            fingerprint: "f1".into(),
            derived,
            status: 201,
            answer: json!({"id": "wo-1"}),
            at: "2026-05-01T12:00:00.000Z".into(),
        };
        let replay = Seen::Replay {
            status: 201,
            answer: json!({"id": "wo-1"}),
        };
        let cases = [
            (None, "f1", false, Seen::New),
            (None, "f1", true, Seen::New),
            (Some(stored(false)), "f1", false, replay.clone()),
            (Some(stored(false)), "f2", false, Seen::Conflict),
            (Some(stored(true)), "f1", true, replay.clone()),
            (Some(stored(true)), "f2", true, replay),
            (Some(stored(true)), "f1", false, Seen::Conflict),
            (Some(stored(false)), "f1", true, Seen::Conflict),
        ];
        for (index, (record, fingerprint, derived, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                judge(record.as_ref(), fingerprint, derived),
                expected,
                "case {index}"
            );
        }
    }
}
