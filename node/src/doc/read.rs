//! The read model: a work order document as a [`WorkOrderView`].

use std::collections::BTreeMap;

use automerge::{ObjId, ReadDoc, ScalarValue, Value, ROOT};
use fieldsync_schemas::{
    Closure, Customer, Material, MaterialState, Note, Priority, Status, StatusEntry, TimeEntry,
    WorkOrderView,
};

use super::{derive_status, heads_hex, WorkOrderDoc};

/// A stored document does not have the shape of a work order.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("work order field `{0}` is missing or has the wrong type")]
    Malformed(String),
    #[error("document error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

pub(crate) fn scalar_str(value: &Value<'_>) -> Option<String> {
    match value {
        Value::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Str(text) => Some(text.to_string()),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn map_str<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<String> {
    doc.get(obj, key)
        .ok()
        .flatten()
        .and_then(|(value, _)| scalar_str(&value))
}

pub(crate) fn root_str<R: ReadDoc>(doc: &R, key: &str) -> Option<String> {
    map_str(doc, &ROOT, key)
}

/// A document's assignee (none when empty), read without the whole view.
pub fn assignee<R: ReadDoc>(doc: &R) -> Option<String> {
    root_str(doc, "assignee").filter(|assignee| !assignee.is_empty())
}

/// The root key under which a work order records when each former
/// assignee stopped being one (user id → ms since the Unix epoch).
pub const UNASSIGNED_KEY: &str = "unassigned";
/// Entries of `unassigned` read at most: one per former assignee.
pub const UNASSIGNED_ENTRIES_MAX: usize = 1024;

/// When each former assignee stopped being one, by user id (sorted): the
/// replicated start of their grace period. Empty for a document written
/// before the key existed; an entry that is not a non-negative integer is
/// skipped (only offices may write the key: a field rule).
pub fn unassigned<R: ReadDoc>(doc: &R) -> Vec<(String, u64)> {
    let Ok(Some((Value::Object(automerge::ObjType::Map), map))) = doc.get(ROOT, UNASSIGNED_KEY)
    else {
        return Vec::new();
    };
    doc.keys(&map)
        .take(UNASSIGNED_ENTRIES_MAX)
        .filter_map(|user| {
            let (value, _) = doc.get(&map, user.as_str()).ok().flatten()?;
            let at_ms = match value {
                Value::Scalar(scalar) => match scalar.as_ref() {
                    ScalarValue::Int(at) => u64::try_from(*at).ok(),
                    ScalarValue::Uint(at) => Some(*at),
                    _ => None,
                },
                Value::Object(_) => None,
            }?;
            Some((user, at_ms))
        })
        .collect()
}

pub(crate) fn root_bool<R: ReadDoc>(doc: &R, key: &str) -> bool {
    matches!(
        doc.get(ROOT, key).ok().flatten(),
        Some((Value::Scalar(scalar), _)) if matches!(scalar.as_ref(), ScalarValue::Boolean(true))
    )
}

fn object<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Result<ObjId, ReadError> {
    match doc.get(parent, key)? {
        Some((Value::Object(_), id)) => Ok(id),
        _ => Err(ReadError::Malformed(key.to_string())),
    }
}

fn scalar_json(value: &Value<'_>) -> serde_json::Value {
    match value {
        Value::Object(kind) => serde_json::Value::String(format!("<{kind}>")),
        Value::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Str(text) => serde_json::Value::String(text.to_string()),
            ScalarValue::Int(n) => (*n).into(),
            ScalarValue::Uint(n) => (*n).into(),
            ScalarValue::F64(n) => {
                serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into)
            }
            ScalarValue::Boolean(b) => (*b).into(),
            ScalarValue::Null => serde_json::Value::Null,
            other => serde_json::Value::String(other.to_string()),
        },
    }
}

/// Record the losing values of a concurrently written key under `path`.
fn collect_conflicts<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: String,
    out: &mut BTreeMap<String, Vec<serde_json::Value>>,
) -> Result<(), ReadError> {
    let all = doc.get_all(obj, key)?;
    if all.len() < 2 {
        return Ok(());
    }
    let winner = doc.get(obj, key)?.map(|(_, id)| id);
    let losers: Vec<serde_json::Value> = all
        .iter()
        .filter(|(_, id)| Some(id) != winner.as_ref())
        .map(|(value, _)| scalar_json(value))
        .collect();
    out.insert(path, losers);
    Ok(())
}

fn list_items<R: ReadDoc>(doc: &R, list: &ObjId) -> Vec<ObjId> {
    (0..doc.length(list))
        .filter_map(|index| match doc.get(list, index) {
            Ok(Some((Value::Object(_), id))) => Some(id),
            _ => None,
        })
        .collect()
}

/// The items of list `key` that `read` accepts; each one it refuses is
/// named in `invalid` (`materials[2]: qty`) instead of failing the read.
fn valid_items<R: ReadDoc, T>(
    doc: &R,
    key: &str,
    invalid: &mut Vec<String>,
    read: impl Fn(&ObjId) -> Result<T, ReadError>,
) -> Result<Vec<T>, ReadError> {
    let list = object(doc, &ROOT, key)?;
    let mut items = Vec::new();
    for index in 0..doc.length(&list) {
        let item = match doc.get(&list, index)? {
            Some((Value::Object(_), id)) => read(&id),
            _ => Err(ReadError::Malformed("not an object".into())),
        };
        match item {
            Ok(item) => items.push(item),
            Err(ReadError::Malformed(what)) => {
                invalid.push(format!("{key}[{index}]: {what} is missing or invalid"))
            }
            Err(other) => return Err(other),
        }
    }
    Ok(items)
}

fn field(doc: &impl ReadDoc, obj: &ObjId, key: &str) -> String {
    map_str(doc, obj, key).unwrap_or_default()
}

fn parse<T: std::str::FromStr>(text: &str, key: &str) -> Result<T, ReadError> {
    text.parse()
        .map_err(|_| ReadError::Malformed(key.to_string()))
}

impl WorkOrderDoc {
    /// Read the whole document: derived status, conflicts and all.
    pub fn view(&self) -> Result<WorkOrderView, ReadError> {
        let doc = &self.doc;
        let mut conflicts = BTreeMap::new();
        for key in [
            "title",
            "description",
            "priority",
            "assignee",
            "scheduled_for",
            "deleted",
        ] {
            collect_conflicts(doc, &ROOT, key, key.to_string(), &mut conflicts)?;
        }
        let customer_id = object(doc, &ROOT, "customer")?;
        for key in ["name", "address", "phone", "document"] {
            collect_conflicts(
                doc,
                &customer_id,
                key,
                format!("customer.{key}"),
                &mut conflicts,
            )?;
        }
        let closure_id = object(doc, &ROOT, "closure")?;
        for key in ["at", "by", "resolution", "signed_by", "signature"] {
            collect_conflicts(
                doc,
                &closure_id,
                key,
                format!("closure.{key}"),
                &mut conflicts,
            )?;
        }
        // A malformed item (from a peer that bypassed the typed operations)
        // is left out and named in `invalid_items`; it never makes the whole
        // work order unreadable.
        let mut invalid_items = Vec::new();
        let status_log = valid_items(doc, "status_log", &mut invalid_items, |item| {
            Ok(StatusEntry {
                at: field(doc, item, "at"),
                by: field(doc, item, "by"),
                role: field(doc, item, "role"),
                to: parse::<Status>(&field(doc, item, "to"), "to")?,
                note: field(doc, item, "note"),
            })
        })?;
        let notes = list_items(doc, &object(doc, &ROOT, "notes")?)
            .iter()
            .map(|item| Note {
                id: field(doc, item, "id"),
                at: field(doc, item, "at"),
                by: field(doc, item, "by"),
                text: field(doc, item, "text"),
            })
            .collect();
        let materials = valid_items(doc, "materials", &mut invalid_items, |item| {
            let qty = match doc.get(item, "qty")? {
                Some((Value::Scalar(scalar), _)) => match scalar.as_ref() {
                    ScalarValue::F64(n) if n.is_finite() => *n,
                    ScalarValue::Int(n) => *n as f64,
                    ScalarValue::Uint(n) => *n as f64,
                    _ => return Err(ReadError::Malformed("qty".into())),
                },
                _ => return Err(ReadError::Malformed("qty".into())),
            };
            Ok(Material {
                id: field(doc, item, "id"),
                sku: field(doc, item, "sku"),
                qty,
                unit: field(doc, item, "unit"),
                description: field(doc, item, "description"),
                by: field(doc, item, "by"),
                at: field(doc, item, "at"),
                state: parse::<MaterialState>(&field(doc, item, "state"), "state")?,
            })
        })?;
        let time_log = list_items(doc, &object(doc, &ROOT, "time_log")?)
            .iter()
            .map(|item| TimeEntry {
                by: field(doc, item, "by"),
                start: field(doc, item, "start"),
                end: field(doc, item, "end"),
            })
            .collect();
        let closure = map_str(doc, &closure_id, "at").map(|at| Closure {
            at,
            by: field(doc, &closure_id, "by"),
            resolution: field(doc, &closure_id, "resolution"),
            signed_by: field(doc, &closure_id, "signed_by"),
            signature: field(doc, &closure_id, "signature"),
        });
        let (status, conflict) = derive_status(&status_log);
        let schema = match doc.get(ROOT, "schema")? {
            Some((Value::Scalar(scalar), _)) => match scalar.as_ref() {
                ScalarValue::Int(n) => *n,
                ScalarValue::Uint(n) => *n as i64,
                _ => return Err(ReadError::Malformed("schema".into())),
            },
            _ => return Err(ReadError::Malformed("schema".into())),
        };
        let root = |key: &str| field(doc, &ROOT, key);
        let optional = |key: &str| Some(root(key)).filter(|value| !value.is_empty());
        Ok(WorkOrderView {
            id: root("id"),
            number: root("number"),
            schema,
            created_at: root("created_at"),
            created_by: root("created_by"),
            title: root("title"),
            description: root("description"),
            customer: Customer {
                name: field(doc, &customer_id, "name"),
                address: field(doc, &customer_id, "address"),
                phone: field(doc, &customer_id, "phone"),
                document: field(doc, &customer_id, "document"),
            },
            priority: parse::<Priority>(&root("priority"), "priority")?,
            assignee: optional("assignee"),
            scheduled_for: optional("scheduled_for"),
            status,
            conflict,
            status_log,
            notes,
            materials,
            report: doc.text(object(doc, &ROOT, "report")?)?,
            time_log,
            closure,
            deleted: root_bool(doc, "deleted"),
            conflicts,
            heads: heads_hex(&doc.get_heads()),
            invalid_items,
        })
    }
}
