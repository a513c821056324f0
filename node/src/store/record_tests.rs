//! Record tests on sled on disk: versions and compare-and-set, records and
//! documents in one write set, the changelog and collection figures,
//! limits, users through the committer, and the format 1 → 2 migration.

use fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX;
use fieldsync_schemas::{Actor, ChangeOp, Collection, CollectionKind, Role};

use super::*;

fn json(value: serde_json::Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&value).unwrap())
}

fn put(collection: &str, key: &str, value: serde_json::Value, expect: Expect) -> RecordWrite {
    RecordWrite {
        collection: collection.into(),
        key: key.into(),
        value: json(value),
        expect,
        replicated_version: None,
    }
}

fn clean(store: &Store) {
    let problems = store.verify(|_| {}).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn versions_compare_and_set_and_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let value = json(serde_json::json!({"sku": "M-1", "price": 3}));
    let created = store
        .write_record("materials", "M-1", value.clone(), Expect::Absent)
        .unwrap();
    assert_eq!(
        (created.version, created.op, created.seq),
        (1, Some(ChangeOp::Create), Some(1))
    );
    // A create of what exists, a stale version, a present-check of nothing:
    // each refused, and nothing written.
    for (key, expect) in [
        ("M-1", Expect::Absent),
        ("M-1", Expect::Version(7)),
        ("M-2", Expect::Present),
    ] {
        let error = store
            .write_record("materials", key, value.clone(), expect)
            .unwrap_err();
        assert!(
            matches!(error, WriteError::VersionMismatch { .. }),
            "{error}"
        );
    }
    assert_eq!(store.last_seq(), 1);
    let updated = store
        .write_record(
            "materials",
            "M-1",
            json(serde_json::json!({"price": 4})),
            Expect::Version(1),
        )
        .unwrap();
    assert_eq!((updated.version, updated.op), (2, Some(ChangeOp::Update)));
    let deleted = store
        .write_record("materials", "M-1", None, Expect::Present)
        .unwrap();
    assert_eq!((deleted.version, deleted.op), (3, Some(ChangeOp::Delete)));
    // Deleting what is not there changes nothing and takes no seq.
    let nothing = store
        .write_record("materials", "M-1", None, Expect::Any)
        .unwrap();
    assert_eq!((nothing.version, nothing.op, nothing.seq), (3, None, None));
    // Written again after a delete, the version goes on counting.
    let again = store
        .write_record("materials", "M-1", value, Expect::Absent)
        .unwrap();
    assert_eq!((again.version, again.op), (4, Some(ChangeOp::Create)));
    let entries = store.changes_since(0, 100).unwrap();
    let seen: Vec<(u64, ChangeOp, Option<u64>)> =
        entries.iter().map(|e| (e.seq, e.op, e.version)).collect();
    assert_eq!(
        seen,
        [
            (1, ChangeOp::Create, Some(1)),
            (2, ChangeOp::Update, Some(2)),
            (3, ChangeOp::Delete, Some(3)),
            (4, ChangeOp::Create, Some(4)),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e.collection == Collection::Reference("materials".into()) && e.id == "M-1"));
    let record = store.record("materials", "M-1").unwrap().unwrap();
    assert_eq!((record.version, record.deleted), (4, false));
    assert_eq!(store.collection("materials").unwrap().unwrap().live, 1);
    clean(&store);
}

#[test]
fn internal_records_are_durable_but_never_on_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let receipt = store
        .write_record(
            "webhooks",
            "h1",
            json(serde_json::json!({"url": "x"})),
            Expect::Absent,
        )
        .unwrap();
    assert_eq!((receipt.version, receipt.seq), (1, None));
    assert_eq!(store.last_seq(), 0);
    let info = store.collection("webhooks").unwrap().unwrap();
    assert_eq!((info.kind, info.live), (CollectionKind::Internal, 1));
    clean(&store);
    store.close();
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.record("webhooks", "h1").unwrap().unwrap().version, 1);
}

#[test]
fn records_and_a_work_order_in_one_write_set_land_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let operator = Actor::new("op", Role::Operator);
    let new = crate::doc::tests::sample("tech-1");
    let (_, edit) = WorkOrderDoc::create(&store.actor(), &operator, "wo-1", &new, 1).unwrap();
    let doc = DocWrite {
        id: "wo-1".into(),
        collection: Collection::WorkOrders,
        number: Some(new.number.clone()),
        assignee: new.assignee.clone(),
        unassigned_changed: Vec::new(),
        deleted: false,
        op: edit.op,
        heads: edit.heads.iter().map(|h| h.0).collect(),
        bytes: edit.change_bytes,
        replace: true,
        must_be_new: true,
    };
    store
        .write_record(
            "customers",
            "C-1",
            json(serde_json::json!({"n": 1})),
            Expect::Absent,
        )
        .unwrap();
    // The record's expectation fails: the document is not stored either.
    let refused = store
        .submit(WriteSet {
            docs: vec![doc.clone()],
            records: vec![put(
                "customers",
                "C-1",
                serde_json::json!({"n": 2}),
                Expect::Absent,
            )],
            checkpoint: None,
        })
        .unwrap()
        .wait();
    assert!(matches!(refused, Err(WriteError::VersionMismatch { .. })));
    assert!(store.doc_index("wo-1").unwrap().is_none());
    assert_eq!(store.last_seq(), 1);
    let receipt = store
        .submit(WriteSet {
            docs: vec![doc],
            records: vec![
                put(
                    "customers",
                    "C-1",
                    serde_json::json!({"n": 2}),
                    Expect::Version(1),
                ),
                put("users_log", "x", serde_json::json!(null), Expect::Any),
            ],
            checkpoint: None,
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(receipt.seqs, [2]);
    assert_eq!(receipt.records[0].seq, Some(3));
    assert_eq!(receipt.records[1].seq, Some(4));
    assert!(store.doc_index("wo-1").unwrap().is_some());
    clean(&store);
}

#[test]
fn bad_records_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let big = format!("\"{}\"", "x".repeat(RECORD_VALUE_BYTES_MAX));
    let cases: Vec<(&str, &str, Option<Vec<u8>>, &str)> = vec![
        ("Materials", "k", json(serde_json::json!(1)), "must match"),
        ("work_orders", "k", json(serde_json::json!(1)), "reserved"),
        ("materials", "", json(serde_json::json!(1)), "record key"),
        (
            "materials",
            "a\u{7}b",
            json(serde_json::json!(1)),
            "record key",
        ),
        ("materials", "k", Some(big.into_bytes()), "over the limit"),
        ("materials", "k", Some(b"{not json".to_vec()), "not JSON"),
    ];
    for (collection, key, value, expected) in cases {
        let error = store
            .write_record(collection, key, value, Expect::Any)
            .unwrap_err();
        assert!(matches!(error, WriteError::InvalidRecord(_)), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
    let twice = store.submit(WriteSet {
        records: vec![
            put("materials", "k", serde_json::json!(1), Expect::Any),
            put("materials", "k", serde_json::json!(2), Expect::Any),
        ],
        ..WriteSet::default()
    });
    assert!(matches!(twice, Err(WriteError::InvalidRecord(_))));
    assert_eq!(store.last_seq(), 0);
    assert!(store.collections().unwrap().is_empty());
}

#[test]
fn users_go_through_the_committer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let flushes = store.flush_count();
    let user = User {
        id: "alice@example.com".into(),
        role: Role::Technician,
        scopes: Vec::new(),
        secret_hash: None,
        enroll_code_hash: None,
        enroll_code_expires_at_ms: None,
        node_ids: Vec::new(),
        revoked: false,
        created_at: "2026-12-02T00:00:00Z".into(),
    };
    store.put_user(&user).unwrap();
    assert_eq!(store.flush_count(), flushes + 1, "one committer flush");
    assert_eq!(store.user("alice@example.com").unwrap(), Some(user.clone()));
    assert_eq!(store.users().unwrap(), [user]);
    let entries = store.changes_since(0, 10).unwrap();
    assert_eq!(
        entries.len(),
        1,
        "users travel between offices: on the changelog"
    );
    assert_eq!(
        (entries[0].collection.name(), entries[0].id.as_str()),
        ("users", "alice@example.com")
    );
    clean(&store);
}

#[test]
fn a_format_1_store_migrates_its_users_into_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    store
        .create_work_order(
            &Actor::new("op", Role::Operator),
            &crate::doc::tests::sample("bob"),
            1,
        )
        .unwrap();
    store.close();
    drop(store);
    // What format 1 looked like: users as JSON in their own tree. (Opened
    // as the store opens sled: waiting for the closed store's lock, which
    // its background threads may still hold for a moment under load.)
    {
        let db = super::open_sled(dir.path(), &StoreConfig::default()).unwrap();
        let users = db.open_tree("users").unwrap();
        let bob = serde_json::json!({"id": "bob", "role": "technician", "created_at": "2026-01-01T00:00:00Z"});
        users
            .insert("bob", serde_json::to_vec(&bob).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    format::write(dir.path(), 1).unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(format::read(dir.path()).unwrap(), format::FORMAT_VERSION);
    assert_eq!(store.user("bob").unwrap().unwrap().role, Role::Technician);
    let entries = store.changes_since(0, 10).unwrap();
    let ids: Vec<&str> = entries.iter().map(|entry| entry.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "the work order's entry, then bob's (3)");
    assert_eq!(ids[1], "bob");
    clean(&store);
}

/// Format 2 → 3: users written before their writes took a seq get one, so
/// an office sends them too; running it again changes nothing.
#[test]
fn a_format_2_store_gives_its_users_a_changelog_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    store
        .write_record("materials", "M-1", json(serde_json::json!({})), Expect::Any)
        .unwrap();
    store.close();
    drop(store);
    // What format 2 looked like: a user record without a seq.
    {
        let db = super::open_sled(dir.path(), &StoreConfig::default()).unwrap();
        let data = db.open_tree("data").unwrap();
        let bob = serde_json::json!({"id": "bob", "role": "technician", "created_at": "2026-01-01T00:00:00Z"});
        let record = records::StoredRecord {
            version: 4,
            deleted: false,
            last_seq: 0,
            value: serde_json::to_vec(&bob).unwrap(),
        };
        data.insert(keys::record("users", "bob"), records::encode(&record))
            .unwrap();
        data.insert(
            keys::collection("users"),
            records::encode(&records::CollectionStats { live: 1 }),
        )
        .unwrap();
        db.flush().unwrap();
    }
    format::write(dir.path(), 2).unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(format::read(dir.path()).unwrap(), format::FORMAT_VERSION);
    let entries = store.changes_since(0, 10).unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!((entries[1].seq, entries[1].id.as_str()), (2, "bob"));
    assert_eq!(entries[1].version, Some(4));
    assert_eq!(store.record("users", "bob").unwrap().unwrap().last_seq, 2);
    clean(&store);
    store.close();
    drop(store);
    format::write(dir.path(), 2).unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.changes_since(0, 10).unwrap().len(), 2, "idempotent");
    clean(&store);
}
