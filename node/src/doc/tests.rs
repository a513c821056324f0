use automerge::ActorId;
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, Priority, Role, Status};

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

fn actor(byte: u8) -> ActorId {
    ActorId::from(vec![byte; 16])
}

#[test]
fn concurrent_terminal_transitions_conflict_and_operator_wins() {
    let operator = Actor::new("op", Role::Operator);
    let tech = Actor::new("tech-1", Role::Technician);
    let (mut office, _) =
        WorkOrderDoc::create(&actor(1), &operator, "wo-1", &sample("tech-1"), 1).unwrap();
    let mut field = WorkOrderDoc::from_automerge(office.automerge().fork(), &actor(2)).unwrap();
    field
        .apply(
            &tech,
            &Operation::AppendStatus {
                at: "2026-01-02T00:00:00Z".into(),
                to: Status::Completed,
                note: String::new(),
            },
            2,
        )
        .unwrap();
    office
        .apply(
            &operator,
            &Operation::AppendStatus {
                at: "2026-01-01T12:00:00Z".into(),
                to: Status::Cancelled,
                note: String::new(),
            },
            2,
        )
        .unwrap();
    office.automerge_mut().merge(field.automerge_mut()).unwrap();
    field.automerge_mut().merge(office.automerge_mut()).unwrap();
    let (a, b) = (office.view().unwrap(), field.view().unwrap());
    assert_eq!(a.status, Status::Cancelled);
    assert!(a.conflict);
    assert_eq!(a.status, b.status);
    assert_eq!(a.heads, b.heads);
}

#[test]
fn concurrent_scalar_edits_surface_losers() {
    let op1 = Actor::new("op1", Role::Operator);
    let (mut a, _) = WorkOrderDoc::create(&actor(1), &op1, "wo-1", &sample("t"), 1).unwrap();
    let mut b = WorkOrderDoc::from_automerge(a.automerge().fork(), &actor(2)).unwrap();
    let patch = |title: &str| {
        Operation::EditOperatorFields(fieldsync_schemas::OperatorPatch {
            title: Some(title.into()),
            ..Default::default()
        })
    };
    a.apply(&op1, &patch("A"), 2).unwrap();
    b.apply(&op1, &patch("B"), 2).unwrap();
    a.automerge_mut().merge(b.automerge_mut()).unwrap();
    let view = a.view().unwrap();
    let loser = if view.title == "A" { "B" } else { "A" };
    assert_eq!(view.conflicts["title"], vec![serde_json::json!(loser)]);
}

#[test]
fn technician_cannot_change_office_fields_or_others_orders() {
    let operator = Actor::new("op", Role::Operator);
    let (mut doc, _) =
        WorkOrderDoc::create(&actor(1), &operator, "wo-1", &sample("tech-1"), 1).unwrap();
    let tech = Actor::new("tech-1", Role::Technician);
    let patch = Operation::EditOperatorFields(fieldsync_schemas::OperatorPatch {
        priority: Some(Priority::Urgent),
        ..Default::default()
    });
    assert!(matches!(
        doc.apply(&tech, &patch, 2),
        Err(OpError::Forbidden { .. })
    ));
    assert!(matches!(
        doc.apply(&tech, &Operation::Tombstone, 2),
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
    doc.apply(&tech, &note, 2).unwrap();
    assert_eq!(doc.view().unwrap().notes.len(), 1);
}
