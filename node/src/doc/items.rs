//! Items a peer appends to a work order's lists (notes, materials, status
//! log, time log), judged one by one: their shape, their values and who
//! they say wrote them (hardening finding 2).
//!
//! Why beside the field rules: `access::check_changes` decides which root
//! keys a role may touch and how (append, write), but an append is opaque
//! to it. A technician's laptop that bypasses the typed operations could
//! append a material with `qty: "x"` or an unknown `state`, a status entry
//! with no `to`, one claiming `role: "operator"` (which wins the derived
//! status) or dated next year, or notes signed by someone else. The typed
//! operations never write such items, so whatever a real node appends
//! passes here unchanged.
//!
//! The rules, for items appended by a technician peer:
//! - every item has the fields the typed operation writes, each of the
//!   right type (text within `FIELD_TEXT_BYTES_MAX`);
//! - `by` is the peer's user; a status entry's `role` is the peer's role;
//! - times are RFC 3339, and none is later than the receiver's clock plus
//!   [`CLOCK_SKEW_MS_MAX`] (a time entry's `end` may be planned ahead);
//! - a material is appended `requested` (a technician never approves), with
//!   a positive finite `qty`; a status entry moves only where the field
//!   may (`Status::is_field_transition`).
//!
//! The office deletes each bad item in its compensating change (the rest
//! of the append stays); a technician node refuses the document's changes
//! from that peer, as for any forbidden change.
//!
//! Pure: the engine calls it with its `now_ms` (time never comes from a
//! clock here).

use automerge::{Automerge, ChangeHash, ObjId, ReadDoc, ScalarValue, Value, ROOT};
use fieldsync_schemas::{MaterialState, Role, Status};

use super::FIELD_TEXT_BYTES_MAX;
use crate::clock::parse_rfc3339_ms;

/// How far ahead of the receiver's clock an appended item's time may be.
pub const CLOCK_SKEW_MS_MAX: u64 = 10 * 60 * 1000;

/// The lists whose appended items are judged here.
const ITEM_LISTS: [&str; 4] = ["notes", "materials", "status_log", "time_log"];

/// One appended item that breaks the rules.
#[derive(Clone, Debug, PartialEq)]
pub struct BadItem {
    /// The list (`status_log`).
    pub key: String,
    /// The item, which the office's compensation deletes.
    pub item: ObjId,
    /// `status_log[3]: ...`.
    pub reason: String,
}

/// Every appended item that breaks the rules.
pub fn check_appended(
    user_id: &str,
    role: Role,
    after: &Automerge,
    before_heads: &[ChangeHash],
    now_ms: u64,
) -> Vec<BadItem> {
    let judge = Judge {
        doc: after,
        user_id,
        role,
        latest_ms: now_ms.saturating_add(CLOCK_SKEW_MS_MAX),
    };
    let mut bad = Vec::new();
    for key in ITEM_LISTS {
        for (index, item) in appended(after, before_heads, key) {
            if let Err(why) = judge.item(key, &item) {
                bad.push(BadItem {
                    key: key.to_string(),
                    item,
                    reason: format!("{key}[{index}]: {why}"),
                });
            }
        }
    }
    bad
}

/// The items of list `key` in `after` that were not there at
/// `before_heads`, with their index now.
fn appended(after: &Automerge, before_heads: &[ChangeHash], key: &str) -> Vec<(usize, ObjId)> {
    let Ok(Some((Value::Object(_), list))) = after.get(ROOT, key) else {
        return Vec::new();
    };
    let before: std::collections::HashSet<ObjId> = (0..after.length_at(&list, before_heads))
        .filter_map(|index| match after.get_at(&list, index, before_heads) {
            Ok(Some((_, id))) => Some(id),
            _ => None,
        })
        .collect();
    (0..after.length(&list))
        .filter_map(|index| match after.get(&list, index) {
            Ok(Some((_, id))) if !before.contains(&id) => Some((index, id)),
            _ => None,
        })
        .collect()
}

struct Judge<'a> {
    doc: &'a Automerge,
    user_id: &'a str,
    role: Role,
    latest_ms: u64,
}

impl Judge<'_> {
    fn item(&self, key: &str, item: &ObjId) -> Result<(), String> {
        if !matches!(self.doc.object_type(item), Ok(automerge::ObjType::Map)) {
            return Err("not an object".into());
        }
        self.author(item)?;
        match key {
            "notes" => {
                self.text(item, "id", true)?;
                self.text(item, "text", false)?;
                self.time(item, "at", true)
            }
            "materials" => self.material(item),
            "status_log" => self.status(item),
            _ => {
                let start = self.time(item, "start", true);
                let end = self.time(item, "end", false);
                start.and(end)?;
                let (start, end) = (
                    self.text(item, "start", true)?,
                    self.text(item, "end", true)?,
                );
                if parse_rfc3339_ms(&end) < parse_rfc3339_ms(&start) {
                    return Err("`end` is before `start`".into());
                }
                Ok(())
            }
        }
    }

    /// `by` is the peer's user.
    fn author(&self, item: &ObjId) -> Result<(), String> {
        let by = self.text(item, "by", true)?;
        if by != self.user_id {
            return Err(format!(
                "`by` is `{by}`, but the peer is `{}`",
                self.user_id
            ));
        }
        Ok(())
    }

    fn material(&self, item: &ObjId) -> Result<(), String> {
        for field in ["id", "sku"] {
            self.text(item, field, true)?;
        }
        for field in ["unit", "description"] {
            self.text(item, field, false)?;
        }
        self.time(item, "at", true)?;
        let qty = match self.doc.get(item, "qty") {
            Ok(Some((Value::Scalar(scalar), _))) => match scalar.as_ref() {
                ScalarValue::F64(n) => Some(*n),
                ScalarValue::Int(n) => Some(*n as f64),
                ScalarValue::Uint(n) => Some(*n as f64),
                _ => None,
            },
            _ => None,
        };
        if !qty.is_some_and(|qty| qty.is_finite() && qty > 0.0) {
            return Err("`qty` must be a positive number".into());
        }
        let state = self.text(item, "state", true)?;
        if state.parse::<MaterialState>() != Ok(MaterialState::Requested) {
            return Err(format!("a material is appended `requested`, not `{state}`"));
        }
        Ok(())
    }

    fn status(&self, item: &ObjId) -> Result<(), String> {
        self.time(item, "at", true)?;
        self.text(item, "note", false)?;
        let to = self.text(item, "to", true)?;
        let Ok(status) = to.parse::<Status>() else {
            return Err(format!("`to` is `{to}`, not a status"));
        };
        if self.role == Role::Technician && !status.is_field_transition() {
            return Err(format!("a technician may not move a work order to `{to}`"));
        }
        let role = self.text(item, "role", true)?;
        if role != self.role.as_str() {
            return Err(format!(
                "`role` is `{role}`, but the peer is a {}",
                self.role
            ));
        }
        Ok(())
    }

    /// A text field: a string within the limit, non-empty if `required`.
    fn text(&self, item: &ObjId, field: &str, required: bool) -> Result<String, String> {
        let value = match self.doc.get(item, field) {
            Ok(Some((Value::Scalar(scalar), _))) => match scalar.as_ref() {
                ScalarValue::Str(text) => Some(text.to_string()),
                _ => None,
            },
            _ => None,
        };
        let value = value.ok_or_else(|| format!("`{field}` is missing or not text"))?;
        if required && value.is_empty() {
            return Err(format!("`{field}` is empty"));
        }
        if value.len() > FIELD_TEXT_BYTES_MAX {
            return Err(format!("`{field}` is over {FIELD_TEXT_BYTES_MAX} bytes"));
        }
        Ok(value)
    }

    /// A time field: RFC 3339, and not after the receiver's clock plus the
    /// skew when `bounded`.
    fn time(&self, item: &ObjId, field: &str, bounded: bool) -> Result<(), String> {
        let text = self.text(item, field, true)?;
        let Some(ms) = parse_rfc3339_ms(&text) else {
            return Err(format!("`{field}` is `{text}`, not an RFC 3339 time"));
        };
        if bounded && ms > self.latest_ms {
            return Err(format!("`{field}` is `{text}`, in the future"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ObjType};
    use fieldsync_schemas::Actor;

    use super::*;
    use crate::doc::{Operation, WorkOrderDoc};

    /// 2026-01-01T12:00:00Z, the receiver's clock.
    const NOW_MS: u64 = 1_767_268_800_000;

    fn work_order() -> WorkOrderDoc {
        let office = Actor::new("op", Role::Operator);
        let (doc, _) = WorkOrderDoc::create(
            &ActorId::from(&[1u8; 16][..]),
            &office,
            "wo-1",
            &crate::doc::tests::sample("tech-1"),
            1,
        )
        .unwrap();
        doc
    }

    /// Violations after `append` adds one item (its fields as given) to
    /// list `key`, judged as tech-1's laptop's.
    fn judged(key: &str, fields: &[(&str, ScalarValue)]) -> Vec<String> {
        let mut doc = work_order();
        let before = doc.doc.get_heads();
        let mut tx = doc.doc.transaction();
        let Some((_, list)) = tx.get(ROOT, key).unwrap() else {
            panic!("no {key}");
        };
        let at = tx.length(&list);
        let item = tx.insert_object(&list, at, ObjType::Map).unwrap();
        for (field, value) in fields {
            tx.put(&item, *field, value.clone()).unwrap();
        }
        tx.commit();
        check_appended("tech-1", Role::Technician, &doc.doc, &before, NOW_MS)
            .into_iter()
            .map(|bad| bad.reason)
            .collect()
    }

    /// An item's fields, as appended.
    type Fields = Vec<(&'static str, ScalarValue)>;

    fn s(text: &str) -> ScalarValue {
        ScalarValue::Str(text.into())
    }

    fn note(by: &str, at: &str) -> Vec<(&'static str, ScalarValue)> {
        vec![
            ("id", s("n1")),
            ("text", s("hi")),
            ("by", s(by)),
            ("at", s(at)),
        ]
    }

    fn material(qty: ScalarValue, state: &str) -> Vec<(&'static str, ScalarValue)> {
        vec![
            ("id", s("m1")),
            ("sku", s("PIPE")),
            ("unit", s("m")),
            ("description", s("")),
            ("by", s("tech-1")),
            ("at", s("2026-01-01T11:00:00Z")),
            ("qty", qty),
            ("state", s(state)),
        ]
    }

    fn status(to: &str, role: &str, at: &str) -> Vec<(&'static str, ScalarValue)> {
        vec![
            ("at", s(at)),
            ("by", s("tech-1")),
            ("role", s(role)),
            ("to", s(to)),
            ("note", s("")),
        ]
    }

    #[test]
    fn appended_items_table() {
        let ok = "2026-01-01T11:59:00Z";
        let soon = "2026-01-01T12:09:00Z";
        let later = "2026-01-01T12:11:00Z";
        let cases: Vec<(&str, Fields, Option<&str>)> = vec![
            ("notes", note("tech-1", ok), None),
            ("notes", note("tech-1", soon), None),
            (
                "notes",
                note("tech-1", later),
                Some("notes[0]: `at` is `2026-01-01T12:11:00Z`, in the future"),
            ),
            (
                "notes",
                note("op", ok),
                Some("`by` is `op`, but the peer is `tech-1`"),
            ),
            (
                "notes",
                note("tech-1", "today"),
                Some("`at` is `today`, not an RFC 3339 time"),
            ),
            (
                "notes",
                vec![("by", s("tech-1"))],
                Some("`id` is missing or not text"),
            ),
            (
                "materials",
                material(ScalarValue::F64(2.5), "requested"),
                None,
            ),
            (
                "materials",
                material(ScalarValue::Int(3), "requested"),
                None,
            ),
            (
                "materials",
                material(s("x"), "requested"),
                Some("`qty` must be a positive number"),
            ),
            (
                "materials",
                material(ScalarValue::F64(f64::NAN), "requested"),
                Some("`qty` must be"),
            ),
            (
                "materials",
                material(ScalarValue::F64(-1.0), "requested"),
                Some("`qty` must be"),
            ),
            (
                "materials",
                material(ScalarValue::F64(1.0), "approved"),
                Some("appended `requested`, not `approved`"),
            ),
            (
                "materials",
                material(ScalarValue::F64(1.0), "lost"),
                Some("not `lost`"),
            ),
            ("status_log", status("in_progress", "technician", ok), None),
            (
                "status_log",
                status("in_progress", "operator", ok),
                Some("`role` is `operator`, but the peer is a technician"),
            ),
            (
                "status_log",
                status("sideways", "technician", ok),
                Some("`to` is `sideways`, not a status"),
            ),
            (
                "status_log",
                status("cancelled", "technician", ok),
                Some("may not move a work order to `cancelled`"),
            ),
            (
                "status_log",
                status("in_progress", "technician", "2027-01-01T00:00:00Z"),
                Some("in the future"),
            ),
            (
                "status_log",
                vec![("by", s("tech-1")), ("at", s(ok))],
                Some("`note` is missing"),
            ),
            (
                "time_log",
                vec![
                    ("by", s("tech-1")),
                    ("start", s(ok)),
                    ("end", s("2026-01-01T14:00:00Z")),
                ],
                None,
            ),
            (
                "time_log",
                vec![
                    ("by", s("tech-1")),
                    ("start", s(ok)),
                    ("end", s("2026-01-01T10:00:00Z")),
                ],
                Some("`end` is before `start`"),
            ),
            (
                "time_log",
                vec![("by", s("tech-2")), ("start", s(ok)), ("end", s(ok))],
                Some("`by` is `tech-2`"),
            ),
        ];
        for (key, fields, expected) in cases {
            let got = judged(key, &fields);
            match expected {
                None => assert!(got.is_empty(), "{key} {fields:?}: {got:?}"),
                Some(expected) => assert!(
                    got.len() == 1 && got[0].contains(expected),
                    "{key} {fields:?}: wanted {expected:?}, got {got:?}"
                ),
            }
        }
    }

    #[test]
    fn typed_operations_always_pass() {
        let mut doc = work_order();
        let before = doc.doc.get_heads();
        let tech = Actor::new("tech-1", Role::Technician);
        let at = "2026-01-01T11:30:00.000Z".to_string();
        let ops = [
            Operation::AddNote {
                id: "n1".into(),
                at: at.clone(),
                text: "on site".into(),
            },
            Operation::RequestMaterial {
                id: "m1".into(),
                at: at.clone(),
                sku: "PIPE".into(),
                qty: 2.0,
                unit: "m".into(),
                description: "copper".into(),
            },
            Operation::AppendStatus {
                at: at.clone(),
                to: Status::InProgress,
                note: String::new(),
            },
            Operation::AppendTime {
                start: at.clone(),
                end: "2026-01-01T12:30:00.000Z".into(),
            },
        ];
        for op in &ops {
            doc.apply(&tech, op, 1).unwrap();
        }
        assert_eq!(
            check_appended("tech-1", Role::Technician, &doc.doc, &before, NOW_MS),
            Vec::new()
        );
        // Nothing appended: nothing to judge.
        let heads = doc.doc.get_heads();
        assert!(check_appended("tech-1", Role::Technician, &doc.doc, &heads, NOW_MS).is_empty());
    }
}
