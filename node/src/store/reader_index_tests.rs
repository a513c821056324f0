//! The reader index against a full scan of the changelog, on sled on disk:
//! after creations, edits, reassignments, records and purges, across a
//! reopen, after the migration from format 3, and after `verify`'s repair.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_schemas::collection::CollectionKind;
use fieldsync_schemas::{Actor, OperatorPatch, Role};

use super::*;
use crate::doc::Operation;

const USERS: [&str; 4] = ["tech-0", "tech-1", "tech-2", "nobody"];

fn operator() -> Actor {
    Actor::new("op", Role::Operator)
}

fn order(index: usize) -> NewWorkOrder {
    let mut new = crate::doc::tests::sample(&format!("tech-{}", index % 3));
    new.id = Some(format!("wo-{index:03}"));
    new.number = format!("WO-2026-{index:06}");
    new
}

fn reassign(store: &Store, id: &str, to: &str) {
    let op = Operation::EditOperatorFields(OperatorPatch {
        assignee: Some(Some(to.into())),
        ..Default::default()
    });
    store.update_work_order(id, &operator(), &op, 5).unwrap();
}

fn note(store: &Store, id: &str, text: &str) {
    let op = Operation::AddNote {
        id: text.into(),
        at: "2026-01-02T00:00:00Z".into(),
        text: text.into(),
    };
    store.update_work_order(id, &operator(), &op, 6).unwrap();
}

fn record(store: &Store, collection: &str, key: &str) {
    let value = serde_json::to_vec(&serde_json::json!({"k": key})).unwrap();
    store
        .write_record(collection, key, Some(value), Expect::Any)
        .unwrap();
}

/// A store with every kind of entry: 12 orders over three technicians,
/// notes, reassignments (wo-000 twice: tech-0 keeps only its revocation
/// record), a purge, data records and a user.
fn busy_store(dir: &std::path::Path) -> Store {
    let store = Store::init(dir, StoreConfig::default()).unwrap();
    for index in 0..12 {
        store
            .create_work_order(&operator(), &order(index), 1)
            .unwrap();
    }
    record(&store, "materials", "M-1");
    note(&store, "wo-001", "a");
    reassign(&store, "wo-000", "tech-1");
    reassign(&store, "wo-000", "tech-2");
    note(&store, "wo-000", "b");
    reassign(&store, "wo-004", "tech-0");
    record(&store, "materials", "M-2");
    record(&store, "users", "carol");
    store.submit_purge("wo-007").unwrap().wait().unwrap();
    note(&store, "wo-002", "c");
    store
}

/// What a full scan says `user`'s share must hold: the latest entry of
/// each document whose assignee or previous assignee is `user` or that is
/// in `user`'s revocation records, and every data record's entry.
fn expected_by_scan(store: &Store, user: &str) -> BTreeSet<u64> {
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    let mut wanted = BTreeSet::new();
    for entry in store.changes_since(0, usize::MAX).unwrap() {
        if entry.collection == fieldsync_schemas::Collection::WorkOrders {
            latest.insert(entry.id, entry.seq);
        } else if CollectionKind::of(entry.collection.name()) == CollectionKind::Data {
            wanted.insert(entry.seq);
        }
    }
    let revoked: Vec<String> = store
        .revocations(user, 64)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for (id, seq) in latest {
        let Some(index) = store.doc_index(&id).unwrap() else {
            continue;
        };
        let theirs = index.assignee.as_deref() == Some(user)
            || index.previous_assignee.as_deref() == Some(user)
            || revoked.contains(&id);
        if theirs {
            wanted.insert(seq);
        }
    }
    wanted
}

/// `user`'s share read in pages of `limit`: every seq once, in order, each
/// naming the changelog's own entry; the pages cover the whole changelog.
fn read_share(store: &Store, user: &str, limit: usize) -> BTreeSet<u64> {
    let changelog = store.changes_since(0, usize::MAX).unwrap();
    let mut seqs = BTreeSet::new();
    let mut after = 0;
    for _ in 0..=changelog.len() {
        let (entries, covered) = store.changes_for(user, after, limit).unwrap();
        assert!(entries.len() <= limit);
        if covered == after {
            break;
        }
        assert!(covered > after, "{user}: pages move forward");
        for (seq, record) in entries {
            assert!(seq > after && seq <= covered);
            assert_eq!(changelog[seq as usize - 1].id, record.id);
            assert!(seqs.insert(seq), "{user}: seq {seq} twice");
        }
        after = covered;
    }
    assert_eq!(after, store.last_seq(), "{user}: the pages cover it all");
    seqs
}

fn assert_agrees(store: &Store) {
    for user in USERS {
        let wanted = expected_by_scan(store, user);
        for limit in [1, 3, 1000] {
            let got = read_share(store, user, limit);
            let missing: Vec<&u64> = wanted.difference(&got).collect();
            assert!(
                missing.is_empty(),
                "{user} (pages of {limit}) lacks {missing:?}"
            );
        }
    }
}

#[test]
fn the_reader_index_agrees_with_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = busy_store(dir.path());
    assert_agrees(&store);
    // tech-0 lost wo-000 to tech-1 then tech-2: its revocation record
    // still finds the document's latest entry.
    let tech0 = read_share(&store, "tech-0", 1000);
    let latest = store.doc_index("wo-000").unwrap().unwrap().last_seq;
    assert!(tech0.contains(&latest));
    // Other users' entries stay out: tech-1 reads its own orders, wo-000's
    // and wo-004's entries while it was (previous) assignee, and the two
    // data records; not the user record, not tech-2's orders.
    let tech1 = read_share(&store, "tech-1", 1000);
    let changelog = store.changes_since(0, usize::MAX).unwrap();
    for seq in &tech1 {
        let entry = &changelog[*seq as usize - 1];
        assert_ne!(entry.id, "carol");
        assert!(!["wo-002", "wo-005", "wo-008", "wo-011"].contains(&entry.id.as_str()));
    }
    assert!(
        read_share(&store, "nobody", 1000).len() == 2,
        "the two records"
    );
    assert!(store.verify(|_| {}).unwrap().is_empty());
}

#[test]
fn the_reader_index_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = busy_store(dir.path());
    let before: Vec<BTreeSet<u64>> = USERS.iter().map(|u| read_share(&store, u, 5)).collect();
    store.close();
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let after: Vec<BTreeSet<u64>> = USERS.iter().map(|u| read_share(&store, u, 5)).collect();
    assert_eq!(before, after);
    note(&store, "wo-003", "after reopen");
    assert_agrees(&store);
}

/// Drop every reader-index key, as a store of format 3 has none.
fn drop_reader_index(dir: &std::path::Path) {
    let db = super::open_sled(dir, &StoreConfig::default()).unwrap();
    let data = db.open_tree("data").unwrap();
    for prefix in [keys::USER_CHANGE, keys::RECORD_CHANGE] {
        let stale: Vec<_> = data
            .scan_prefix([prefix])
            .keys()
            .map(Result::unwrap)
            .collect();
        for key in stale {
            data.remove(key).unwrap();
        }
    }
    db.flush().unwrap();
}

#[test]
fn a_format_3_store_gets_its_reader_index_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = busy_store(dir.path());
    store.close();
    drop(store);
    drop_reader_index(dir.path());
    format::write(dir.path(), 3).unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(format::read(dir.path()).unwrap(), format::FORMAT_VERSION);
    assert_agrees(&store);
    assert!(store.verify(|_| {}).unwrap().is_empty());
    // Running it again (a crash before FORMAT was written) changes nothing.
    store.close();
    drop(store);
    format::write(dir.path(), 3).unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_agrees(&store);
}

#[test]
fn verify_reports_a_damaged_reader_index_and_repair_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = busy_store(dir.path());
    store.close();
    drop(store);
    drop_reader_index(dir.path());
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let problems = store.verify(|_| {}).unwrap();
    assert!(
        problems.iter().any(|p| p.what.starts_with("reader index")),
        "{problems:#?}"
    );
    assert!(store.rebuild_reader_index().unwrap() > 0);
    assert!(store.verify(|_| {}).unwrap().is_empty());
    assert_agrees(&store);
}

/// Past the seq the store opened at, a reader whose set got nothing new
/// reads no range at all (the committer's marks), and one whose set did
/// finds it; records move every reader's mark.
#[test]
fn the_marks_skip_only_readers_with_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = busy_store(dir.path());
    store.close();
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let opened = store.last_seq();
    note(&store, "wo-001", "after open");
    let (tech1, covered) = store.changes_for("tech-1", opened, 100).unwrap();
    assert_eq!(
        tech1.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [opened + 1]
    );
    assert_eq!(covered, opened + 1);
    let (tech2, covered) = store.changes_for("tech-2", opened, 100).unwrap();
    assert!(tech2.is_empty());
    assert_eq!(covered, opened + 1);
    // tech-0 still reads wo-000's latest entry through its revocation.
    let (tech0, _) = store.changes_for("tech-0", 0, 100).unwrap();
    let latest = store.doc_index("wo-000").unwrap().unwrap().last_seq;
    assert!(tech0.iter().any(|(seq, _)| *seq == latest));
    record(&store, "materials", "M-3");
    let (nobody, _) = store.changes_for("nobody", opened + 1, 100).unwrap();
    assert_eq!(nobody.len(), 1, "the record");
    assert_agrees(&store);
}
