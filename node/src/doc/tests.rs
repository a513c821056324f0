//! Tests of the document model: every typed operation, the field rules, the
//! derived status and conflicts, and bad bytes. All in memory: documents are
//! bytes in, bytes out.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ReadDoc, ROOT};
use fieldsync_schemas::field_rules::FIELD_RULES;
use fieldsync_schemas::work_order::WORK_ORDER_SCHEMA;
use fieldsync_schemas::{
    Actor, Customer, MaterialState, NewWorkOrder, OperatorPatch, Priority, Role, Status,
    StatusEntry,
};

use super::*;

pub(crate) fn sample(assignee: &str) -> NewWorkOrder {
    NewWorkOrder {
        id: Some("wo-1".into()),
        number: "WO-2026-000001".into(),
        title: "Boiler".into(),
        description: "No hot water".into(),
        customer: Customer {
            name: "Ana".into(),
            address: "Rua A".into(),
            phone: "1".into(),
            document: String::new(),
        },
        priority: Priority::Normal,
        assignee: Some(assignee.into()),
        scheduled_for: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        initial_status: Status::Assigned,
        notes: vec![],
        materials: vec![],
    }
}

/// A work order shaped like a fixture line: notes, materials, schedule.
fn imported(id: &str) -> NewWorkOrder {
    NewWorkOrder {
        id: Some(id.into()),
        number: "WO-2026-000042".into(),
        title: String::new(),
        description: "firmware airflow reset panel".into(),
        customer: Customer {
            name: "Hugo Costa".into(),
            address: "Rua Augusta, 1109 - Sao Paulo".into(),
            phone: "+55 11 95897-5662".into(),
            document: String::new(),
        },
        priority: Priority::High,
        assignee: Some("tech-0133".into()),
        scheduled_for: Some("2026-05-03T07:35:00Z".into()),
        created_at: "2026-04-30T00:00:00Z".into(),
        initial_status: Status::OnHold,
        notes: vec![
            (
                "operator-0001".into(),
                "fitting".into(),
                "2026-04-30T12:27:00Z".into(),
            ),
            (
                "tech-0160".into(),
                "bearing".into(),
                "2026-05-01T16:58:00Z".into(),
            ),
        ],
        materials: vec![
            ("SKU-00966".into(), 18.0, "vibration".into()),
            ("SKU-88633".into(), 3.5, "belt".into()),
        ],
    }
}

fn actor(byte: u8) -> ActorId {
    ActorId::from(vec![byte; 16])
}

fn operator() -> Actor {
    Actor::new("op", Role::Operator)
}

fn tech() -> Actor {
    Actor::new("tech-1", Role::Technician)
}

fn created(new: &NewWorkOrder) -> WorkOrderDoc {
    WorkOrderDoc::create(&actor(1), &operator(), "wo-1", new, 1)
        .unwrap()
        .0
}

/// A second replica of `doc`, as another node would hold it.
fn replica(doc: &WorkOrderDoc, byte: u8) -> WorkOrderDoc {
    WorkOrderDoc::from_automerge(doc.automerge().fork(), &actor(byte)).unwrap()
}

fn merge(a: &mut WorkOrderDoc, b: &mut WorkOrderDoc) {
    a.automerge_mut().merge(b.automerge_mut()).unwrap();
    b.automerge_mut().merge(a.automerge_mut()).unwrap();
}

fn status(to: Status, at: &str) -> Operation {
    Operation::AppendStatus {
        at: at.into(),
        to,
        note: String::new(),
    }
}

/// Bytes out, bytes in: what an edit stored loads back to the same state.
fn reloaded(stored: &[u8]) -> WorkOrderDoc {
    WorkOrderDoc::load(stored, &actor(9)).unwrap()
}

/// The document `create` made before it used Automerge's batch API: one
/// `put` per field. Kept as the reference the batch build must match.
fn build_field_by_field(who: &Actor, id: &str, new: &NewWorkOrder) -> Automerge {
    let mut doc = Automerge::new().with_actor(actor(1));
    let mut tx = doc.transaction();
    let put_item = |tx: &mut automerge::transaction::Transaction<'_>,
                    list: &automerge::ObjId,
                    fields: &[(&str, &str)]| {
        let index = tx.length(list);
        let item = tx.insert_object(list, index, ObjType::Map).unwrap();
        for (key, value) in fields {
            tx.put(&item, *key, *value).unwrap();
        }
        item
    };
    tx.put(ROOT, "kind", "work_order").unwrap();
    tx.put(ROOT, "schema", WORK_ORDER_SCHEMA).unwrap();
    tx.put(ROOT, "id", id).unwrap();
    tx.put(ROOT, "number", new.number.as_str()).unwrap();
    tx.put(ROOT, "created_at", new.created_at.as_str()).unwrap();
    tx.put(ROOT, "created_by", who.user_id.as_str()).unwrap();
    let customer = tx.put_object(ROOT, "customer", ObjType::Map).unwrap();
    tx.put(&customer, "name", new.customer.name.as_str())
        .unwrap();
    tx.put(&customer, "address", new.customer.address.as_str())
        .unwrap();
    tx.put(&customer, "phone", new.customer.phone.as_str())
        .unwrap();
    tx.put(&customer, "document", new.customer.document.as_str())
        .unwrap();
    tx.put(ROOT, "title", new.title.as_str()).unwrap();
    tx.put(ROOT, "description", new.description.as_str())
        .unwrap();
    tx.put(ROOT, "priority", new.priority.as_str()).unwrap();
    tx.put(ROOT, "assignee", new.assignee.as_deref().unwrap_or(""))
        .unwrap();
    tx.put_object(ROOT, "unassigned", ObjType::Map).unwrap();
    tx.put(
        ROOT,
        "scheduled_for",
        new.scheduled_for.as_deref().unwrap_or(""),
    )
    .unwrap();
    let log = tx.put_object(ROOT, "status_log", ObjType::List).unwrap();
    put_item(
        &mut tx,
        &log,
        &[
            ("at", &new.created_at),
            ("by", &who.user_id),
            ("role", who.role.as_str()),
            ("to", new.initial_status.as_str()),
            ("note", ""),
        ],
    );
    let notes = tx.put_object(ROOT, "notes", ObjType::List).unwrap();
    for (index, (author, text, at)) in new.notes.iter().enumerate() {
        let note_id = format!("{id}-n{index}");
        put_item(
            &mut tx,
            &notes,
            &[("id", &note_id), ("at", at), ("by", author), ("text", text)],
        );
    }
    let materials = tx.put_object(ROOT, "materials", ObjType::List).unwrap();
    for (index, (sku, qty, description)) in new.materials.iter().enumerate() {
        let item = tx.insert_object(&materials, index, ObjType::Map).unwrap();
        tx.put(&item, "id", format!("{id}-m{index}")).unwrap();
        tx.put(&item, "sku", sku.as_str()).unwrap();
        tx.put(&item, "qty", *qty).unwrap();
        tx.put(&item, "unit", "").unwrap();
        tx.put(&item, "description", description.as_str()).unwrap();
        tx.put(&item, "by", who.user_id.as_str()).unwrap();
        tx.put(&item, "at", new.created_at.as_str()).unwrap();
        tx.put(&item, "state", "requested").unwrap();
    }
    tx.put_object(ROOT, "report", ObjType::Text).unwrap();
    tx.put_object(ROOT, "time_log", ObjType::List).unwrap();
    tx.put_object(ROOT, "closure", ObjType::Map).unwrap();
    tx.put(ROOT, "deleted", false).unwrap();
    tx.commit();
    doc
}

#[test]
fn batch_create_holds_what_field_by_field_puts_held() {
    let who = operator();
    for new in [sample("tech-1"), imported("wo-1")] {
        let (doc, edit) = WorkOrderDoc::create(&actor(1), &who, "wo-1", &new, 1).unwrap();
        let reference = build_field_by_field(&who, "wo-1", &new);
        assert_eq!(doc.automerge().hydrate(None), reference.hydrate(None));
        let reference = WorkOrderDoc::from_automerge(reference, &actor(1)).unwrap();
        let mut expected = reference.view().unwrap();
        let view = reloaded(&edit.change_bytes).view().unwrap();
        expected.heads = view.heads.clone();
        assert_eq!(view, expected);
    }
}

#[test]
fn create_writes_every_field() {
    let new = imported("wo-7");
    let (doc, edit) = WorkOrderDoc::create(&actor(1), &operator(), "wo-7", &new, 5).unwrap();
    assert_eq!(edit.op, ChangeOp::Create);
    assert_eq!(edit.heads, doc.heads());
    let view = reloaded(&edit.change_bytes).view().unwrap();
    assert_eq!(view.id, "wo-7");
    assert_eq!(view.number, new.number);
    assert_eq!(view.schema, WORK_ORDER_SCHEMA);
    assert_eq!(view.created_by, "op");
    assert_eq!(view.created_at, new.created_at);
    assert_eq!(view.customer, new.customer);
    assert_eq!(view.priority, Priority::High);
    assert_eq!(view.assignee.as_deref(), Some("tech-0133"));
    assert_eq!(view.scheduled_for, new.scheduled_for);
    assert_eq!(view.status, Status::OnHold);
    assert_eq!(view.status_log.len(), 1);
    assert_eq!(view.status_log[0].role, "operator");
    let notes: Vec<_> = view.notes.iter().map(|n| (&n.id, &n.by, &n.text)).collect();
    assert_eq!(
        notes,
        [
            (
                &"wo-7-n0".to_string(),
                &"operator-0001".to_string(),
                &"fitting".to_string()
            ),
            (
                &"wo-7-n1".to_string(),
                &"tech-0160".to_string(),
                &"bearing".to_string()
            ),
        ]
    );
    assert_eq!(view.materials.len(), 2);
    assert_eq!(view.materials[1].qty, 3.5);
    assert_eq!(view.materials[1].state, MaterialState::Requested);
    assert_eq!(view.report, "");
    assert!(view.time_log.is_empty() && view.closure.is_none() && !view.deleted);
    assert!(view.conflicts.is_empty() && !view.conflict);
    assert_eq!(doc.assignee().as_deref(), Some("tech-0133"));
    assert_eq!(doc.number(), new.number);
    assert_eq!(doc.id(), "wo-7");
}

#[test]
fn create_refuses_technicians_and_oversize_text() {
    let new = sample("tech-1");
    assert!(matches!(
        WorkOrderDoc::create(&actor(1), &tech(), "wo-1", &new, 1),
        Err(OpError::Forbidden { .. })
    ));
    let mut long = sample("tech-1");
    long.description = "x".repeat(FIELD_TEXT_BYTES_MAX + 1);
    assert!(matches!(
        WorkOrderDoc::create(&actor(1), &operator(), "wo-1", &long, 1),
        Err(OpError::Invalid {
            field: "description",
            ..
        })
    ));
}

#[test]
fn edit_operator_fields() {
    let mut doc = created(&sample("tech-1"));
    let patch = OperatorPatch {
        title: Some("Boiler, urgent".into()),
        description: Some("Leaking".into()),
        priority: Some(Priority::Urgent),
        assignee: Some(Some("tech-2".into())),
        scheduled_for: Some("2026-02-01T09:00:00Z".into()),
        customer: Some(Customer {
            phone: "2".into(),
            ..sample("tech-1").customer
        }),
    };
    let edit = doc
        .apply(&operator(), &Operation::EditOperatorFields(patch), 2)
        .unwrap();
    assert_eq!(edit.op, ChangeOp::Update);
    let view = doc.view().unwrap();
    assert_eq!(view.title, "Boiler, urgent");
    assert_eq!(view.description, "Leaking");
    assert_eq!(view.priority, Priority::Urgent);
    assert_eq!(view.assignee.as_deref(), Some("tech-2"));
    assert_eq!(view.scheduled_for.as_deref(), Some("2026-02-01T09:00:00Z"));
    assert_eq!(view.customer.phone, "2");
    assert_eq!(view.customer.name, "Ana");
    let unassign = OperatorPatch {
        assignee: Some(None),
        ..Default::default()
    };
    doc.apply(&operator(), &Operation::EditOperatorFields(unassign), 3)
        .unwrap();
    assert_eq!(doc.view().unwrap().assignee, None);
    assert_eq!(doc.assignee(), None);
}

/// Every assignment records when the former assignee stopped being one,
/// in the document (`unassigned`), and an assignment back forgets it: the
/// grace period's start travels to every central (issue 16).
#[test]
fn assignments_record_when_each_former_assignee_stopped() {
    let mut doc = created(&sample("tech-1"));
    assert!(doc.unassigned().is_empty());
    let assign = |doc: &mut WorkOrderDoc, to: Option<&str>, at_s: i64| {
        let patch = OperatorPatch {
            assignee: Some(to.map(str::to_string)),
            ..Default::default()
        };
        doc.apply(&operator(), &Operation::EditOperatorFields(patch), at_s)
            .unwrap();
    };
    assign(&mut doc, Some("tech-2"), 100);
    assert_eq!(doc.unassigned(), vec![("tech-1".to_string(), 100_000)]);
    assign(&mut doc, None, 200);
    assert_eq!(
        doc.unassigned(),
        vec![
            ("tech-1".to_string(), 100_000),
            ("tech-2".to_string(), 200_000)
        ]
    );
    assign(&mut doc, Some("tech-1"), 300);
    assert_eq!(doc.unassigned(), vec![("tech-2".to_string(), 200_000)]);
    // The same assignee again changes nothing.
    assign(&mut doc, Some("tech-1"), 400);
    assert_eq!(doc.unassigned(), vec![("tech-2".to_string(), 200_000)]);
}

/// A technician's peer may not write `unassigned` (it would move its own
/// grace period): the field rules refuse it like any office field.
#[test]
fn a_technician_may_not_write_when_it_was_unassigned() {
    use automerge::transaction::Transactable as _;
    let mut doc = created(&sample("tech-1"));
    let before = doc.automerge().get_heads();
    let map = match doc.automerge().get(ROOT, "unassigned").unwrap() {
        Some((_, map)) => map,
        None => panic!("a new work order has the map"),
    };
    let mut tx = doc.automerge_mut().transaction();
    tx.put(&map, "tech-1", 9_999_999_999_i64).unwrap();
    tx.commit();
    let violations = crate::access::check_changes(Role::Technician, doc.automerge(), &before);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].key, "unassigned");
    assert!(crate::access::check_changes(Role::Operator, doc.automerge(), &before).is_empty());
}

#[test]
fn edits_store_as_appendable_chunks() {
    let (mut doc, created) =
        WorkOrderDoc::create(&actor(1), &operator(), "wo-1", &sample("tech-1"), 1).unwrap();
    let mut stored = created.change_bytes;
    for index in 0..3 {
        let note = Operation::AddNote {
            id: format!("n{index}"),
            at: "2026-01-02T00:00:00Z".into(),
            text: format!("note {index}"),
        };
        let edit = doc.apply(&tech(), &note, 2).unwrap();
        assert_eq!(edit.heads, doc.heads());
        stored.extend_from_slice(&edit.change_bytes);
    }
    assert_eq!(reloaded(&stored).view().unwrap(), doc.view().unwrap());
}

#[test]
fn add_note_by_assignee_and_operator() {
    let mut doc = created(&sample("tech-1"));
    for (who, id) in [(tech(), "n1"), (operator(), "n2")] {
        let note = Operation::AddNote {
            id: id.into(),
            at: "2026-01-02T00:00:00Z".into(),
            text: format!("from {}", who.user_id),
        };
        doc.apply(&who, &note, 2).unwrap();
    }
    let notes = doc.view().unwrap().notes;
    assert_eq!(notes.len(), 2);
    assert_eq!(
        (notes[0].by.as_str(), notes[0].text.as_str()),
        ("tech-1", "from tech-1")
    );
    assert_eq!((notes[1].id.as_str(), notes[1].by.as_str()), ("n2", "op"));
}

#[test]
fn request_and_approve_material() {
    let mut doc = created(&sample("tech-1"));
    let request = Operation::RequestMaterial {
        id: "m1".into(),
        at: "2026-01-02T00:00:00Z".into(),
        sku: "SKU-1".into(),
        qty: 2.0,
        unit: "pc".into(),
        description: "valve".into(),
    };
    doc.apply(&tech(), &request, 2).unwrap();
    let approve = Operation::SetMaterialState {
        id: "m1".into(),
        state: MaterialState::Approved,
    };
    // The technician requests; only the office approves.
    assert!(matches!(
        doc.apply(&tech(), &approve, 3),
        Err(OpError::Forbidden { .. })
    ));
    doc.apply(&operator(), &approve, 3).unwrap();
    let material = &doc.view().unwrap().materials[0];
    assert_eq!(
        (material.sku.as_str(), material.qty, material.unit.as_str()),
        ("SKU-1", 2.0, "pc")
    );
    assert_eq!(
        (material.by.as_str(), material.state),
        ("tech-1", MaterialState::Approved)
    );
    let missing = Operation::SetMaterialState {
        id: "nope".into(),
        state: MaterialState::Rejected,
    };
    assert!(matches!(
        doc.apply(&operator(), &missing, 4),
        Err(OpError::NoSuchMaterial(_))
    ));
    let zero = Operation::RequestMaterial {
        id: "m2".into(),
        at: "2026-01-02T00:00:00Z".into(),
        sku: "SKU-1".into(),
        qty: 0.0,
        unit: "pc".into(),
        description: "valve".into(),
    };
    assert!(matches!(
        doc.apply(&tech(), &zero, 4),
        Err(OpError::Invalid { field: "qty", .. })
    ));
    // A refused operation leaves nothing behind.
    assert_eq!(doc.view().unwrap().materials.len(), 1);
}

#[test]
fn append_status_checks_field_transitions() {
    let mut doc = created(&sample("tech-1"));
    doc.apply(&tech(), &status(Status::EnRoute, "2026-01-02T08:00:00Z"), 2)
        .unwrap();
    doc.apply(
        &tech(),
        &status(Status::InProgress, "2026-01-02T09:00:00Z"),
        3,
    )
    .unwrap();
    assert_eq!(doc.view().unwrap().status, Status::InProgress);
    assert!(matches!(
        doc.apply(
            &tech(),
            &status(Status::Cancelled, "2026-01-02T10:00:00Z"),
            4
        ),
        Err(OpError::StatusNotAllowed(Status::Cancelled))
    ));
    doc.apply(
        &operator(),
        &status(Status::OnHold, "2026-01-02T10:00:00Z"),
        4,
    )
    .unwrap();
    let view = doc.view().unwrap();
    assert_eq!(view.status, Status::OnHold);
    assert_eq!(view.status_log.len(), 4);
    assert_eq!(view.status_log[3].role, "operator");
}

#[test]
fn append_time_by_assignee_only() {
    let mut doc = created(&sample("tech-1"));
    let entry = Operation::AppendTime {
        start: "2026-01-02T08:00:00Z".into(),
        end: "2026-01-02T09:30:00Z".into(),
    };
    doc.apply(&tech(), &entry, 2).unwrap();
    assert!(matches!(
        doc.apply(&operator(), &entry, 3),
        Err(OpError::Forbidden { .. })
    ));
    let backwards = Operation::AppendTime {
        start: "2026-01-02T10:00:00Z".into(),
        end: "2026-01-02T09:00:00Z".into(),
    };
    assert!(matches!(
        doc.apply(&tech(), &backwards, 3),
        Err(OpError::Invalid { field: "end", .. })
    ));
    // Not a time at all, on every path (REST and the field app alike).
    let vague = Operation::AppendTime {
        start: "yesterday".into(),
        end: "2026-01-02T09:00:00Z".into(),
    };
    assert!(matches!(
        doc.apply(&tech(), &vague, 3),
        Err(OpError::Invalid { field: "start", .. })
    ));
    // Compared as instants: 10:00+02:00 is 08:00Z, before 09:00Z, though
    // its text sorts after.
    let offset = Operation::AppendTime {
        start: "2026-01-02T09:00:00Z".into(),
        end: "2026-01-02T10:00:00+02:00".into(),
    };
    assert!(matches!(
        doc.apply(&tech(), &offset, 3),
        Err(OpError::Invalid { field: "end", .. })
    ));
    let log = doc.view().unwrap().time_log;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].by.as_str(), log[0].end.as_str()),
        ("tech-1", "2026-01-02T09:30:00Z")
    );
}

#[test]
fn edit_report_and_concurrent_report_edits_merge() {
    let mut office = created(&sample("tech-1"));
    let report = |text: &str| Operation::EditReport { text: text.into() };
    office
        .apply(&tech(), &report("Valve replaced.\nPressure fine."), 2)
        .unwrap();
    assert_eq!(
        office.view().unwrap().report,
        "Valve replaced.\nPressure fine."
    );
    let mut field = replica(&office, 2);
    field
        .apply(
            &tech(),
            &report("Valve replaced at 9am.\nPressure fine."),
            3,
        )
        .unwrap();
    office
        .apply(
            &operator(),
            &report("Valve replaced.\nPressure fine. Invoice sent."),
            3,
        )
        .unwrap();
    merge(&mut office, &mut field);
    let merged = "Valve replaced at 9am.\nPressure fine. Invoice sent.";
    assert_eq!(office.view().unwrap().report, merged);
    assert_eq!(field.view().unwrap().report, merged);
}

#[test]
fn close_records_closure_and_completes() {
    let mut doc = created(&sample("tech-1"));
    let close = Operation::Close {
        at: "2026-01-03T17:00:00Z".into(),
        resolution: "fixed".into(),
        signed_by: "Ana".into(),
        signature: String::new(),
    };
    doc.apply(&tech(), &close, 2).unwrap();
    let view = doc.view().unwrap();
    let closure = view.closure.unwrap();
    assert_eq!(
        (
            closure.by.as_str(),
            closure.resolution.as_str(),
            closure.signed_by.as_str()
        ),
        ("tech-1", "fixed", "Ana")
    );
    assert_eq!(view.status, Status::Completed);
    assert_eq!(view.status_log.last().unwrap().note, "closed");
}

#[test]
fn close_with_signature_stores_the_path_and_refuses_anything_else() {
    let mut doc = created(&sample("tech-1"));
    let close = |signature: &str| Operation::Close {
        at: "2026-01-03T17:00:00Z".into(),
        resolution: "fixed".into(),
        signed_by: "Ana".into(),
        signature: signature.into(),
    };
    let too_long = format!("M0 0{}", " L1 1".repeat(super::SIGNATURE_BYTES_MAX / 5 + 1));
    for bad in ["L1 1", "M1 1 <svg>", too_long.as_str()] {
        let refused = doc.apply(&tech(), &close(bad), 2);
        assert!(
            matches!(
                refused,
                Err(OpError::Invalid {
                    field: "signature",
                    ..
                })
            ),
            "{bad:.20}: {:?}",
            refused.map(|_| ())
        );
    }
    assert!(doc.view().unwrap().closure.is_none(), "nothing written");
    doc.apply(&tech(), &close("M1 2 L3 4 L-1 0"), 2).unwrap();
    let view = doc.view().unwrap();
    let closure = view.closure.unwrap();
    assert_eq!(closure.signature, "M1 2 L3 4 L-1 0");
    assert_eq!(closure.signed_by, "Ana");
    assert_eq!(view.status, Status::Completed);
}

/// A laptop that bypasses the typed operations cannot store markup or a
/// non-path as the customer's signature: the field rules' check refuses it
/// like a forbidden write (hardening; issue 15).
#[test]
fn a_peer_written_signature_is_judged_like_the_typed_operations() {
    use automerge::transaction::Transactable as _;
    let signed = |signature: &str| {
        let mut doc = created(&sample("tech-1"));
        let before = doc.automerge().get_heads();
        let am = doc.automerge_mut();
        let mut tx = am.transaction();
        let closure = tx.put_object(ROOT, "closure", ObjType::Map).unwrap();
        tx.put(&closure, "resolution", "fixed").unwrap();
        tx.put(&closure, "signature", signature).unwrap();
        tx.commit();
        crate::access::check_changes(Role::Technician, doc.automerge(), &before)
    };
    assert!(signed("M1 2 L3 4").is_empty());
    assert!(signed("").is_empty(), "no signature is allowed");
    for bad in ["<svg onload=x>", "M1 2 Z", &"M1 1 ".repeat(5000)] {
        let violations = signed(bad);
        assert_eq!(violations.len(), 1, "{bad:.20}");
        assert_eq!(violations[0].key, "closure");
    }
}

#[test]
fn tombstone_hides_and_freezes() {
    let mut doc = created(&sample("tech-1"));
    let edit = doc.apply(&operator(), &Operation::Tombstone, 2).unwrap();
    assert_eq!(edit.op, ChangeOp::Delete);
    assert!(doc.is_deleted());
    assert!(doc.view().unwrap().deleted);
    let note = Operation::AddNote {
        id: "n".into(),
        at: "t".into(),
        text: "too late".into(),
    };
    assert!(matches!(
        doc.apply(&operator(), &note, 3),
        Err(OpError::Deleted)
    ));
}

#[test]
fn concurrent_terminal_transitions_conflict_and_operator_wins() {
    let mut office = created(&sample("tech-1"));
    let mut field = replica(&office, 2);
    // The technician's completion is later, but the office's cancel wins.
    field
        .apply(
            &tech(),
            &status(Status::Completed, "2026-01-02T00:00:00Z"),
            2,
        )
        .unwrap();
    office
        .apply(
            &operator(),
            &status(Status::Cancelled, "2026-01-01T12:00:00Z"),
            2,
        )
        .unwrap();
    merge(&mut office, &mut field);
    let (a, b) = (office.view().unwrap(), field.view().unwrap());
    assert_eq!(a.status, Status::Cancelled);
    assert!(a.conflict);
    assert_eq!(a.status, b.status);
    assert_eq!(a.heads, b.heads);
}

#[test]
fn concurrent_equal_terminal_transitions_do_not_conflict() {
    let mut office = created(&sample("tech-1"));
    let mut field = replica(&office, 2);
    field
        .apply(
            &tech(),
            &status(Status::Completed, "2026-01-02T00:00:00Z"),
            2,
        )
        .unwrap();
    office
        .apply(
            &operator(),
            &status(Status::Completed, "2026-01-02T01:00:00Z"),
            2,
        )
        .unwrap();
    merge(&mut office, &mut field);
    let view = office.view().unwrap();
    assert_eq!(view.status, Status::Completed);
    assert!(!view.conflict);
}

fn entry(to: Status, at: &str, role: Role) -> StatusEntry {
    StatusEntry {
        at: at.into(),
        by: "someone".into(),
        role: role.as_str().into(),
        to,
        note: String::new(),
    }
}

#[test]
fn derived_status_rules() {
    use Role::{Operator, Technician};
    assert_eq!(derive_status(&[]), (Status::Open, false));
    // No terminal state: the latest transition, whoever made it.
    let open = [
        entry(Status::Assigned, "2026-01-01", Operator),
        entry(Status::InProgress, "2026-01-03", Technician),
        entry(Status::OnHold, "2026-01-02", Operator),
    ];
    assert_eq!(derive_status(&open), (Status::InProgress, false));
    // A terminal state wins over a later open one.
    let done = [
        entry(Status::Completed, "2026-01-02", Technician),
        entry(Status::InProgress, "2026-01-05", Technician),
    ];
    assert_eq!(derive_status(&done), (Status::Completed, false));
    // Operator versus technician: the office's terminal state wins even
    // when the technician's is later, and the disagreement is flagged.
    let disputed = [
        entry(Status::Cancelled, "2026-01-02", Operator),
        entry(Status::Completed, "2026-01-04", Technician),
    ];
    assert_eq!(derive_status(&disputed), (Status::Cancelled, true));
    // Between two office terminal states, the later one wins.
    let office = [
        entry(Status::Completed, "2026-01-04", Operator),
        entry(Status::Cancelled, "2026-01-02", Operator),
    ];
    assert_eq!(derive_status(&office), (Status::Completed, true));
    // The order of the log does not change the answer.
    let mut reversed = disputed.clone();
    reversed.reverse();
    assert_eq!(derive_status(&reversed), derive_status(&disputed));
}

#[test]
fn concurrent_scalar_edits_surface_losers() {
    let op1 = operator();
    let mut a = created(&sample("t"));
    let mut b = replica(&a, 2);
    let patch = |title: &str| {
        Operation::EditOperatorFields(OperatorPatch {
            title: Some(title.into()),
            ..Default::default()
        })
    };
    a.apply(&op1, &patch("A"), 2).unwrap();
    b.apply(&op1, &patch("B"), 2).unwrap();
    merge(&mut a, &mut b);
    let view = a.view().unwrap();
    let loser = if view.title == "A" { "B" } else { "A" };
    assert_eq!(view.conflicts["title"], vec![serde_json::json!(loser)]);
    assert_eq!(b.view().unwrap().title, view.title);
}

#[test]
fn concurrent_customer_edits_merge_by_field_and_surface_conflicts() {
    let mut a = created(&sample("t"));
    let mut b = replica(&a, 2);
    let customer = |name: &str, phone: &str, address: &str| {
        Operation::EditOperatorFields(OperatorPatch {
            customer: Some(Customer {
                name: name.into(),
                address: address.into(),
                phone: phone.into(),
                document: String::new(),
            }),
            ..Default::default()
        })
    };
    // Both change the phone (a conflict); only `b` changes the address.
    a.apply(&operator(), &customer("Ana", "111", "Rua A"), 2)
        .unwrap();
    b.apply(&operator(), &customer("Ana", "222", "Rua B"), 2)
        .unwrap();
    merge(&mut a, &mut b);
    let view = a.view().unwrap();
    assert_eq!(view.customer.address, "Rua B");
    let loser = if view.customer.phone == "111" {
        "222"
    } else {
        "111"
    };
    assert_eq!(
        view.conflicts["customer.phone"],
        vec![serde_json::json!(loser)]
    );
    assert!(!view.conflicts.contains_key("customer.address"));
    assert!(!view.conflicts.contains_key("customer.name"));
    // Stating the customer as shown settles the phone's conflict (the
    // console's "keep this value"), and changes nothing else.
    let shown = view.customer.clone();
    a.apply(
        &operator(),
        &customer(&shown.name, &shown.phone, &shown.address),
        3,
    )
    .unwrap();
    let settled = a.view().unwrap();
    assert!(settled.conflicts.is_empty(), "{:?}", settled.conflicts);
    assert_eq!(settled.customer, shown);
}

#[test]
fn field_rules_cover_every_root_key() {
    let (doc, _) =
        WorkOrderDoc::create(&actor(1), &operator(), "wo-1", &imported("wo-1"), 1).unwrap();
    let keys: Vec<String> = doc.automerge().keys(ROOT).collect();
    for key in &keys {
        assert!(
            FIELD_RULES.iter().any(|rule| rule.key == key.as_str()),
            "root key `{key}` has no field rule"
        );
    }
    for rule in FIELD_RULES {
        assert!(
            keys.iter().any(|key| key == rule.key),
            "field rule `{}` names no root key of a new work order",
            rule.key
        );
    }
    assert_eq!(keys.len(), FIELD_RULES.len());
}

#[test]
fn technician_cannot_change_office_fields_or_others_orders() {
    let mut doc = created(&sample("tech-1"));
    let patch = Operation::EditOperatorFields(OperatorPatch {
        priority: Some(Priority::Urgent),
        ..Default::default()
    });
    assert!(matches!(
        doc.apply(&tech(), &patch, 2),
        Err(OpError::Forbidden { .. })
    ));
    assert!(matches!(
        doc.apply(&tech(), &Operation::Tombstone, 2),
        Err(OpError::Forbidden { .. })
    ));
    let other = Actor::new("tech-2", Role::Technician);
    let note = Operation::AddNote {
        id: "n".into(),
        at: "t".into(),
        text: "hi".into(),
    };
    assert!(matches!(
        doc.apply(&other, &note, 2),
        Err(OpError::NotAssignee)
    ));
    doc.apply(&tech(), &note, 2).unwrap();
    assert_eq!(doc.view().unwrap().notes.len(), 1);
}

#[test]
fn bad_bytes_are_load_errors() {
    let (_, edit) = WorkOrderDoc::create(&actor(1), &operator(), "wo-1", &sample("t"), 1).unwrap();
    let mut flipped = edit.change_bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let truncated = &edit.change_bytes[..edit.change_bytes.len() - 7];
    for bytes in [&flipped[..], truncated, b"not automerge at all"] {
        assert!(matches!(
            WorkOrderDoc::load(bytes, &actor(2)),
            Err(LoadError::Corrupt(_))
        ));
    }
    let mut other = Automerge::new();
    let mut tx = other.transaction();
    tx.put(ROOT, "kind", "invoice").unwrap();
    tx.commit();
    assert!(matches!(
        WorkOrderDoc::load(&other.save(), &actor(2)),
        Err(LoadError::NotAWorkOrder(kind)) if kind == "invoice"
    ));
    let huge = vec![0u8; DOC_BYTES_MAX + 1];
    assert!(matches!(
        WorkOrderDoc::load(&huge, &actor(2)),
        Err(LoadError::TooLarge { .. })
    ));
}

/// Hardening finding 2, the read side: items a peer appended around the
/// typed operations (a material with `qty: "x"` or an unknown state, a
/// status entry with no `to`, a scalar where an item belongs) are left out
/// and named; the work order stays readable.
#[test]
fn malformed_list_items_are_named_and_the_rest_stays_readable() {
    let mut doc = created(&sample("tech-1"));
    let heads_before = doc.view().unwrap().materials.len();
    {
        let automerge = doc.automerge_mut();
        let mut tx = automerge.transaction();
        let list = |tx: &automerge::transaction::Transaction<'_>, key: &str| {
            tx.get(ROOT, key).unwrap().unwrap().1
        };
        let materials = list(&tx, "materials");
        let end = tx.length(&materials);
        let bad_qty = tx.insert_object(&materials, end, ObjType::Map).unwrap();
        tx.put(&bad_qty, "qty", "x").unwrap();
        tx.put(&bad_qty, "state", "requested").unwrap();
        let bad_state = tx.insert_object(&materials, end + 1, ObjType::Map).unwrap();
        tx.put(&bad_state, "qty", 2).unwrap();
        tx.put(&bad_state, "state", "stolen").unwrap();
        let status_log = list(&tx, "status_log");
        let end = tx.length(&status_log);
        let no_to = tx.insert_object(&status_log, end, ObjType::Map).unwrap();
        tx.put(&no_to, "by", "tech-1").unwrap();
        tx.insert(&status_log, end + 1, "not an item").unwrap();
        tx.commit();
    }
    let view = doc.view().expect("still readable");
    assert_eq!(view.materials.len(), heads_before);
    assert_eq!(view.invalid_items.len(), 4, "{:?}", view.invalid_items);
    assert!(
        view.invalid_items[0].starts_with("status_log["),
        "{:?}",
        view.invalid_items
    );
    assert!(view.invalid_items.iter().any(|i| i.contains("qty")));
    assert!(view.invalid_items.iter().any(|i| i.contains("state")));
    assert_eq!(view.title, sample("tech-1").title);
}
