//! The typed operations: everything a user can do to a work order.

use std::collections::HashMap;

use automerge::hydrate::{Map, Value};
use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, ObjId, ObjType, ReadDoc, TextEncoding, ROOT};
use fieldsync_schemas::field_rules::{self, Permission};
use fieldsync_schemas::work_order::WORK_ORDER_SCHEMA;
use fieldsync_schemas::{
    Actor, ChangeOp, MaterialState, NewWorkOrder, OperatorPatch, Role, Status,
};

use super::{read, Edit, WorkOrderDoc};

/// Longest text a single field accepts (a note, a report, a title...).
pub const FIELD_TEXT_BYTES_MAX: usize = 64 * 1024;
/// Longest customer signature a closure holds: an SVG path of absolute
/// moves and lines with integer coordinates (`M12 40L13 41...`).
pub const SIGNATURE_BYTES_MAX: usize = 16 * 1024;

/// One user action on an existing work order. Ids and times come from the
/// caller so that the same operation replays identically (the simulator
/// depends on it).
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    EditOperatorFields(OperatorPatch),
    AddNote {
        id: String,
        at: String,
        text: String,
    },
    RequestMaterial {
        id: String,
        at: String,
        sku: String,
        qty: f64,
        unit: String,
        description: String,
    },
    SetMaterialState {
        id: String,
        state: MaterialState,
    },
    AppendStatus {
        at: String,
        to: Status,
        note: String,
    },
    AppendTime {
        start: String,
        end: String,
    },
    /// Replace the report's text; Automerge records it as a minimal splice,
    /// so concurrent edits to different parts of the report both survive.
    EditReport {
        text: String,
    },
    /// Close with a resolution, who signed, and the customer's signature
    /// drawn on screen (`closure.signature`, an SVG path of at most
    /// [`SIGNATURE_BYTES_MAX`]; empty when the customer could not sign).
    Close {
        at: String,
        resolution: String,
        signed_by: String,
        signature: String,
    },
    Tombstone,
}

impl Operation {
    /// The root keys this operation writes, for the field-rules check.
    fn touches(&self) -> &'static [&'static str] {
        match self {
            Operation::EditOperatorFields(_) => &[],
            Operation::AddNote { .. } => &["notes"],
            Operation::RequestMaterial { .. } => &["materials"],
            Operation::SetMaterialState { .. } => &["materials"],
            Operation::AppendStatus { .. } => &["status_log"],
            Operation::AppendTime { .. } => &["time_log"],
            Operation::EditReport { .. } => &["report"],
            Operation::Close { .. } => &["closure", "status_log"],
            Operation::Tombstone => &["deleted"],
        }
    }
}

/// A typed operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{role} may not change `{field}`")]
    Forbidden { role: Role, field: String },
    #[error("only the assigned technician may change this work order")]
    NotAssignee,
    #[error("a technician may not move a work order to `{0}`")]
    StatusNotAllowed(Status),
    #[error("work order is deleted")]
    Deleted,
    #[error("no material with id `{0}`")]
    NoSuchMaterial(String),
    #[error("invalid value for `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("document error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

fn check_text(field: &'static str, value: &str) -> Result<(), OpError> {
    if value.len() > FIELD_TEXT_BYTES_MAX {
        return Err(OpError::Invalid {
            field,
            reason: format!(
                "{} bytes, over the limit of {FIELD_TEXT_BYTES_MAX}",
                value.len()
            ),
        });
    }
    Ok(())
}

fn require(who: &Actor, key: &str, needed: Permission) -> Result<(), OpError> {
    let granted = field_rules::rule(key).map_or(Permission::None, |rule| rule.permission(who.role));
    if granted < needed {
        return Err(OpError::Forbidden {
            role: who.role,
            field: key.to_string(),
        });
    }
    Ok(())
}

/// Why a signature cannot be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureProblem {
    /// Over [`SIGNATURE_BYTES_MAX`].
    TooLong,
    /// Not a path of `M` and `L` commands with integer coordinates.
    Unreadable,
}

impl std::fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureProblem::TooLong => write!(f, "over the limit of {SIGNATURE_BYTES_MAX} bytes"),
            SignatureProblem::Unreadable => {
                f.write_str("must be a path of `M` and `L` commands with integer coordinates")
            }
        }
    }
}

/// The one rule for a customer's signature (the typed operation and the
/// field app's form both ask it): at most [`SIGNATURE_BYTES_MAX`] bytes of
/// an SVG path made of `M` and `L` commands, integers and spaces, nothing a
/// reader could take for markup or script.
pub fn signature_problem(signature: &str) -> Option<SignatureProblem> {
    if signature.len() > SIGNATURE_BYTES_MAX {
        return Some(SignatureProblem::TooLong);
    }
    let shaped = signature.starts_with('M')
        && signature
            .bytes()
            .all(|b| b"ML -".contains(&b) || b.is_ascii_digit());
    (!shaped).then_some(SignatureProblem::Unreadable)
}

fn check_signature(signature: &str) -> Result<(), OpError> {
    match signature_problem(signature) {
        None => Ok(()),
        Some(problem) => Err(OpError::Invalid {
            field: "signature",
            reason: problem.to_string(),
        }),
    }
}

/// Write the closure (and its signature, if any) and the `completed`
/// transition it implies.
fn close(
    tx: &mut Transaction<'_>,
    who: &Actor,
    at: &str,
    resolution: &str,
    signed_by: &str,
    signature: &str,
) -> Result<(), OpError> {
    check_text("resolution", resolution)?;
    check_text("signed_by", signed_by)?;
    let signature = (!signature.is_empty()).then_some(signature);
    if let Some(signature) = signature {
        check_signature(signature)?;
    }
    let closure = list(tx, "closure")?;
    for (key, field) in [
        ("at", at),
        ("by", who.user_id.as_str()),
        ("resolution", resolution),
        ("signed_by", signed_by),
    ]
    .into_iter()
    .chain(signature.map(|signature| ("signature", signature)))
    {
        tx.put(&closure, key, field)?;
    }
    let log = list(tx, "status_log")?;
    put_map_item(
        tx,
        &log,
        &status_fields(at, who, Status::Completed, "closed"),
    )?;
    Ok(())
}

/// An assignment to `next` (none: unassigned) records when the current
/// assignee stopped being one, under `unassigned` (user id → ms since the
/// Unix epoch), and forgets that entry of `next`. It travels with the
/// document, so every central judges a former assignee's grace period from
/// the same instant, whichever one made the change (issue 16).
fn note_unassigned(
    tx: &mut Transaction<'_>,
    next: Option<&str>,
    time_s: i64,
) -> Result<(), OpError> {
    let next = next.filter(|next| !next.is_empty());
    let current = read::root_str(tx, "assignee").filter(|current| !current.is_empty());
    if current.as_deref() == next {
        return Ok(());
    }
    let map = match tx.get(ROOT, read::UNASSIGNED_KEY)? {
        Some((automerge::Value::Object(ObjType::Map), id)) => id,
        _ => tx.put_object(ROOT, read::UNASSIGNED_KEY, ObjType::Map)?,
    };
    if let Some(current) = current {
        let at_ms = time_s.max(0).saturating_mul(1000);
        tx.put(&map, current.as_str(), at_ms)?;
    }
    if let Some(next) = next {
        if tx.get(&map, next)?.is_some() {
            tx.delete(&map, next)?;
        }
    }
    Ok(())
}

/// Commit the transaction at the given time, or roll it back on error.
fn finish<T>(tx: Transaction<'_>, time_s: i64, result: Result<T, OpError>) -> Result<T, OpError> {
    match result {
        Ok(value) => {
            tx.commit_with(CommitOptions::default().with_time(time_s));
            Ok(value)
        }
        Err(error) => {
            tx.rollback();
            Err(error)
        }
    }
}

fn put_map_item(
    tx: &mut Transaction<'_>,
    list: &ObjId,
    fields: &[(&str, &str)],
) -> Result<(), OpError> {
    let index = tx.length(list);
    let item = tx.insert_object(list, index, ObjType::Map)?;
    for (key, value) in fields {
        tx.put(&item, *key, *value)?;
    }
    Ok(())
}

fn list(tx: &Transaction<'_>, key: &str) -> Result<ObjId, OpError> {
    match tx.get(ROOT, key)? {
        Some((automerge::Value::Object(_), id)) => Ok(id),
        _ => Err(OpError::Invalid {
            field: "document",
            reason: format!("`{key}` is missing"),
        }),
    }
}

fn status_fields<'a>(
    at: &'a str,
    who: &'a Actor,
    to: Status,
    note: &'a str,
) -> [(&'a str, &'a str); 5] {
    [
        ("at", at),
        ("by", &who.user_id),
        ("role", who.role.as_str()),
        ("to", to.as_str()),
        ("note", note),
    ]
}

impl WorkOrderDoc {
    /// Create a work order. Only the office (operators, integrations with
    /// write scope, the import) creates; technicians never do.
    pub fn create(
        actor: &ActorId,
        who: &Actor,
        id: &str,
        new: &NewWorkOrder,
        time_s: i64,
    ) -> Result<(WorkOrderDoc, Edit), OpError> {
        if who.role == Role::Technician {
            return Err(OpError::Forbidden {
                role: who.role,
                field: "work order".into(),
            });
        }
        for (field, value) in [
            ("title", &new.title),
            ("description", &new.description),
            ("customer", &new.customer.name),
            ("customer", &new.customer.address),
            ("customer", &new.customer.phone),
            ("customer", &new.customer.document),
        ] {
            check_text(field, value)?;
        }
        let mut doc = Automerge::new().with_actor(actor.clone());
        let mut tx = doc.transaction();
        let result = build(&mut tx, who, id, new);
        finish(tx, time_s, result)?;
        let change_bytes = doc.save_nocompress();
        let heads = doc.get_heads();
        Ok((
            WorkOrderDoc { doc },
            Edit {
                change_bytes,
                heads,
                op: ChangeOp::Create,
            },
        ))
    }

    /// Apply one typed operation as `who`, checking the field rules first.
    pub fn apply(&mut self, who: &Actor, op: &Operation, time_s: i64) -> Result<Edit, OpError> {
        if who.role == Role::Technician && self.assignee().as_deref() != Some(who.user_id.as_str())
        {
            return Err(OpError::NotAssignee);
        }
        if self.is_deleted() {
            return Err(OpError::Deleted);
        }
        self.authorize(who, op)?;
        let before = self.doc.get_heads();
        let mut tx = self.doc.transaction();
        let result = mutate(&mut tx, who, op, time_s);
        finish(tx, time_s, result)?;
        let heads = self.doc.get_heads();
        let change_bytes = self.doc.save_after(&before);
        let op = if matches!(op, Operation::Tombstone) {
            ChangeOp::Delete
        } else {
            ChangeOp::Update
        };
        Ok(Edit {
            change_bytes,
            heads,
            op,
        })
    }

    fn authorize(&self, who: &Actor, op: &Operation) -> Result<(), OpError> {
        match op {
            Operation::EditOperatorFields(patch) => {
                let keys = [
                    ("title", patch.title.is_some()),
                    ("description", patch.description.is_some()),
                    ("priority", patch.priority.is_some()),
                    ("assignee", patch.assignee.is_some()),
                    ("scheduled_for", patch.scheduled_for.is_some()),
                    ("customer", patch.customer.is_some()),
                ];
                for (key, _) in keys.iter().filter(|(_, present)| *present) {
                    require(who, key, Permission::Write)?;
                }
                Ok(())
            }
            Operation::SetMaterialState { .. } => require(who, "materials", Permission::Write),
            Operation::AppendStatus { to, .. } => {
                require(who, "status_log", Permission::Append)?;
                if who.role == Role::Technician && !to.is_field_transition() {
                    return Err(OpError::StatusNotAllowed(*to));
                }
                Ok(())
            }
            Operation::Tombstone => require(who, "deleted", Permission::Write),
            Operation::EditReport { .. } | Operation::Close { .. } => {
                op.touches()
                    .iter()
                    .try_for_each(|key| require(who, key, Permission::Append))?;
                require(who, op.touches()[0], Permission::Write)
            }
            _ => op
                .touches()
                .iter()
                .try_for_each(|key| require(who, key, Permission::Append)),
        }
    }
}

/// The new document's whole tree, written with Automerge's batch API: one
/// OpSet splice per object instead of one per field. Per-field `put`s cost
/// ~660 µs for an imported work order, the batch ~90 µs (W3 in
/// `benches/`); the document holds the same keys, values and list orders.
fn build(
    tx: &mut Transaction<'_>,
    who: &Actor,
    id: &str,
    new: &NewWorkOrder,
) -> Result<(), OpError> {
    let status_log = vec![string_map(&status_fields(
        &new.created_at,
        who,
        new.initial_status,
        "",
    ))];
    let notes: Vec<Value> = new
        .notes
        .iter()
        .enumerate()
        .map(|(index, (author, text, at))| {
            let note_id = format!("{id}-n{index}");
            string_map(&[("id", &note_id), ("at", at), ("by", author), ("text", text)])
        })
        .collect();
    let materials: Vec<Value> = new
        .materials
        .iter()
        .enumerate()
        .map(|(index, (sku, qty, description))| {
            let material_id = format!("{id}-m{index}");
            let mut item = string_fields(&[
                ("id", &material_id),
                ("sku", sku),
                ("unit", ""),
                ("description", description),
                ("by", &who.user_id),
                ("at", &new.created_at),
                ("state", MaterialState::Requested.as_str()),
            ]);
            item.insert("qty", Value::from(*qty));
            Value::Map(Map::from(item))
        })
        .collect();
    let mut root = string_fields(&[
        ("kind", "work_order"),
        ("id", id),
        ("number", &new.number),
        ("created_at", &new.created_at),
        ("created_by", &who.user_id),
        ("title", &new.title),
        ("description", &new.description),
        ("priority", new.priority.as_str()),
        ("assignee", new.assignee.as_deref().unwrap_or("")),
        ("scheduled_for", new.scheduled_for.as_deref().unwrap_or("")),
    ]);
    root.insert("schema", Value::from(WORK_ORDER_SCHEMA));
    // Made with the document, so two centrals' first reassignments write
    // into one map instead of racing to create it (one would win whole).
    root.insert(
        read::UNASSIGNED_KEY,
        Value::Map(Map::from(HashMap::<&str, Value>::new())),
    );
    root.insert(
        "customer",
        string_map(&[
            ("name", &new.customer.name),
            ("address", &new.customer.address),
            ("phone", &new.customer.phone),
            ("document", &new.customer.document),
        ]),
    );
    root.insert("status_log", Value::from(status_log));
    root.insert("notes", Value::from(notes));
    root.insert("materials", Value::from(materials));
    root.insert("report", Value::text(TextEncoding::platform_default(), ""));
    root.insert("time_log", Value::list());
    // The closure map exists from the start so that concurrent closes merge
    // field by field instead of one whole map replacing the other.
    root.insert("closure", Value::map());
    root.insert("deleted", Value::scalar(false));
    tx.init_root_from_hydrate(&Map::from(root))?;
    Ok(())
}

/// Scalar string fields of a new map, for [`build`].
fn string_fields<'a>(fields: &[(&'a str, &str)]) -> HashMap<&'a str, Value> {
    fields
        .iter()
        .map(|(key, value)| (*key, Value::from(*value)))
        .collect()
}

fn string_map(fields: &[(&str, &str)]) -> Value {
    Value::Map(Map::from(string_fields(fields)))
}

fn mutate(
    tx: &mut Transaction<'_>,
    who: &Actor,
    op: &Operation,
    time_s: i64,
) -> Result<(), OpError> {
    match op {
        Operation::EditOperatorFields(patch) => {
            for (key, value) in [
                ("title", &patch.title),
                ("description", &patch.description),
                ("scheduled_for", &patch.scheduled_for),
            ] {
                if let Some(value) = value {
                    check_text(key, value)?;
                    tx.put(ROOT, key, value.as_str())?;
                }
            }
            if let Some(priority) = patch.priority {
                tx.put(ROOT, "priority", priority.as_str())?;
            }
            if let Some(assignee) = &patch.assignee {
                note_unassigned(tx, assignee.as_deref(), time_s)?;
                tx.put(ROOT, "assignee", assignee.as_deref().unwrap_or(""))?;
            }
            if let Some(customer) = &patch.customer {
                let map = list(tx, "customer")?;
                for (key, value) in [
                    ("name", &customer.name),
                    ("address", &customer.address),
                    ("phone", &customer.phone),
                    ("document", &customer.document),
                ] {
                    check_text("customer", value)?;
                    // Only changed fields are written, so an edit of the phone
                    // does not conflict with a concurrent edit of the address;
                    // and conflicting ones, so that stating the value shown
                    // settles the conflict (the console's "keep this one").
                    let changed = read::map_str(tx, &map, key).as_deref() != Some(value.as_str());
                    let conflicting = tx.get_all(&map, key)?.len() > 1;
                    if changed || conflicting {
                        tx.put(&map, key, value.as_str())?;
                    }
                }
            }
        }
        Operation::AddNote { id, at, text } => {
            check_text("text", text)?;
            let notes = list(tx, "notes")?;
            put_map_item(
                tx,
                &notes,
                &[("id", id), ("at", at), ("by", &who.user_id), ("text", text)],
            )?;
        }
        Operation::RequestMaterial {
            id,
            at,
            sku,
            qty,
            unit,
            description,
        } => {
            if !qty.is_finite() || *qty <= 0.0 {
                return Err(OpError::Invalid {
                    field: "qty",
                    reason: "must be a positive number".into(),
                });
            }
            check_text("description", description)?;
            let materials = list(tx, "materials")?;
            let index = tx.length(&materials);
            let item = tx.insert_object(&materials, index, ObjType::Map)?;
            for (key, value) in [
                ("id", id),
                ("sku", sku),
                ("unit", unit),
                ("description", description),
                ("by", &who.user_id),
                ("at", at),
            ] {
                tx.put(&item, key, value.as_str())?;
            }
            tx.put(&item, "qty", *qty)?;
            tx.put(&item, "state", MaterialState::Requested.as_str())?;
        }
        Operation::SetMaterialState { id, state } => {
            let materials = list(tx, "materials")?;
            let item = (0..tx.length(&materials))
                .filter_map(|index| match tx.get(&materials, index) {
                    Ok(Some((automerge::Value::Object(_), item))) => Some(item),
                    _ => None,
                })
                .find(|item| read::map_str(tx, item, "id").as_deref() == Some(id.as_str()))
                .ok_or_else(|| OpError::NoSuchMaterial(id.clone()))?;
            tx.put(&item, "state", state.as_str())?;
        }
        Operation::AppendStatus { at, to, note } => {
            check_text("note", note)?;
            let log = list(tx, "status_log")?;
            put_map_item(tx, &log, &status_fields(at, who, *to, note))?;
        }
        Operation::AppendTime { start, end } => {
            // Every path that logs time comes here (REST, the field app),
            // so the times are judged here, once, as instants: strings
            // compare wrongly across offsets.
            let [start_ms, end_ms] = [("start", start), ("end", end)].map(|(field, value)| {
                crate::clock::parse_rfc3339_ms(value).ok_or_else(|| OpError::Invalid {
                    field,
                    reason: "must be an RFC 3339 time from 1970 on, e.g. `2026-05-01T12:00:00Z`"
                        .into(),
                })
            });
            let (start_ms, end_ms) = (start_ms?, end_ms?);
            if end_ms < start_ms {
                return Err(OpError::Invalid {
                    field: "end",
                    reason: "ends before it starts".into(),
                });
            }
            let log = list(tx, "time_log")?;
            put_map_item(
                tx,
                &log,
                &[("by", &who.user_id), ("start", start), ("end", end)],
            )?;
        }
        Operation::EditReport { text } => {
            check_text("report", text)?;
            let report = list(tx, "report")?;
            tx.update_text(&report, text)?;
        }
        Operation::Close {
            at,
            resolution,
            signed_by,
            signature,
        } => close(tx, who, at, resolution, signed_by, signature)?,
        Operation::Tombstone => tx.put(ROOT, "deleted", true)?,
    }
    Ok(())
}
