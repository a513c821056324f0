use fieldsync_schemas::{Actor, Role};

use super::*;
use crate::doc::Operation;

#[test]
fn write_reopen_read() {
    let dir = tempfile::tempdir().unwrap();
    let operator = Actor::new("op", Role::Operator);
    let new = crate::doc::tests::sample("tech-1");
    let committed = {
        let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
        let created = store.create_work_order(&operator, &new, 1).unwrap();
        assert_eq!(created.seq, 1);
        let note = Operation::AddNote {
            id: "n1".into(),
            at: "t".into(),
            text: "hello".into(),
        };
        let edited = store
            .update_work_order("wo-1", &operator, &note, 2)
            .unwrap();
        assert_eq!(edited.seq, 2);
        assert!(matches!(
            store.create_work_order(&operator, &new, 1),
            Err(WriteError::AlreadyExists(_))
        ));
        store.close();
        edited
    };
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.last_seq(), 2);
    let view = store.work_order("wo-1").unwrap().unwrap();
    assert_eq!(view.notes[0].text, "hello");
    assert_eq!(view.heads, committed.heads);
    let changes = store.changes_since(0, 10).unwrap();
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(store.verify(|_| ()).unwrap().is_empty());
}
