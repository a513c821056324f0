//! Store tests, on sled on disk in temporary directories: durability across
//! reopen, compaction, group commit, the changelog's visibility rule, and
//! damaged or invalid input.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use fieldsync_schemas::{Actor, ChangeOp, Role};

use super::*;
use crate::doc::Operation;

fn operator() -> Actor {
    Actor::new("op", Role::Operator)
}

fn order(index: usize) -> NewWorkOrder {
    let mut new = crate::doc::tests::sample(&format!("tech-{}", index % 3));
    new.id = Some(format!("wo-{index:05}"));
    new.number = format!("WO-2026-{index:06}");
    new.title = format!("Order {index}");
    new
}

fn note(index: usize) -> Operation {
    Operation::AddNote {
        id: format!("n{index}"),
        at: "2026-01-02T00:00:00Z".into(),
        text: format!("note {index}"),
    }
}

fn small_cache() -> StoreConfig {
    StoreConfig {
        cache_docs_max: 4,
        ..StoreConfig::default()
    }
}

#[test]
fn write_reopen_read() {
    let dir = tempfile::tempdir().unwrap();
    let new = crate::doc::tests::sample("tech-1");
    let committed = {
        let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
        let created = store.create_work_order(&operator(), &new, 1).unwrap();
        assert_eq!(created.seq, 1);
        assert_eq!(
            store.doc_index("wo-1").unwrap().unwrap().heads.len(),
            created.heads.len()
        );
        let edited = store
            .update_work_order("wo-1", &operator(), &note(1), 2)
            .unwrap();
        assert_eq!(edited.seq, 2);
        assert!(matches!(
            store.create_work_order(&operator(), &new, 1),
            Err(WriteError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.update_work_order("wo-404", &operator(), &note(2), 2),
            Err(WriteError::NotFound(_))
        ));
        store.close();
        edited
    };
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.last_seq(), 2);
    let view = store.work_order("wo-1").unwrap().unwrap();
    assert_eq!(view.notes[0].text, "note 1");
    assert_eq!(view.heads, committed.heads);
    let changes = store.changes_since(0, 10).unwrap();
    assert_eq!(
        changes.iter().map(|c| (c.seq, c.op)).collect::<Vec<_>>(),
        vec![(1, ChangeOp::Create), (2, ChangeOp::Update)]
    );
    assert_eq!(changes[1].heads, committed.heads);
    assert!(store.verify(|_| ()).unwrap().is_empty());
}

#[test]
fn reopen_returns_the_same_documents_beyond_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let count = 40;
    let views = {
        let store = Store::init(dir.path(), small_cache()).unwrap();
        for index in 0..count {
            store
                .create_work_order(&operator(), &order(index), 1)
                .unwrap();
        }
        // Edit every other one, so some documents have two chunks.
        for index in (0..count).step_by(2) {
            let id = format!("wo-{index:05}");
            store
                .update_work_order(&id, &operator(), &note(index), 2)
                .unwrap();
        }
        let views: Vec<_> = (0..count)
            .map(|index| {
                store
                    .work_order(&format!("wo-{index:05}"))
                    .unwrap()
                    .unwrap()
            })
            .collect();
        store.close();
        views
    };
    let store = Store::open(dir.path(), small_cache()).unwrap();
    assert_eq!(store.last_seq(), (count + count / 2) as u64);
    let ids = store.doc_ids(None, 1000).unwrap();
    assert_eq!(ids.len(), count);
    // Twice round: the second pass reloads what the tiny cache evicted.
    for _ in 0..2 {
        for (index, before) in views.iter().enumerate() {
            let id = format!("wo-{index:05}");
            let after = store.work_order(&id).unwrap().unwrap();
            assert_eq!(&after, before, "{id}");
            let index_entry = store.doc_index(&id).unwrap().unwrap();
            assert_eq!(
                index_entry.chunk_count(),
                if index % 2 == 0 { 2 } else { 1 }
            );
            assert_eq!(index_entry.number.as_deref(), Some(before.number.as_str()));
            assert_eq!(index_entry.assignee, before.assignee);
        }
    }
    // Paging over ids returns each once, in order.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.doc_ids(after.as_deref(), 7).unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, ids);
    assert!(store.verify(|_| ()).unwrap().is_empty());
}

#[test]
fn many_edits_compact_into_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        compact_chunks_max: 4,
        ..StoreConfig::default()
    };
    let edits = 11;
    let before = {
        let store = Store::init(dir.path(), config.clone()).unwrap();
        store.create_work_order(&operator(), &order(1), 1).unwrap();
        let id = "wo-00001";
        let mut max_chunks = 0;
        for index in 0..edits {
            store
                .update_work_order(id, &operator(), &note(index), 2)
                .unwrap();
            let chunks = store.doc_index(id).unwrap().unwrap().chunk_count();
            max_chunks = max_chunks.max(chunks);
            // Chunk keys on disk match the index: old chunks are removed.
            let on_disk = store.data().scan_prefix(keys::chunk_prefix(id)).count() as u32;
            assert_eq!(on_disk, chunks);
        }
        assert!(
            max_chunks <= config.compact_chunks_max,
            "{max_chunks} chunks"
        );
        // 12 writes with a limit of 4 chunks: at least two compactions.
        assert!(store.doc_index(id).unwrap().unwrap().chunk_first > 0);
        let view = store.work_order(id).unwrap().unwrap();
        assert_eq!(view.notes.len(), edits);
        store.close();
        view
    };
    let store = Store::open(dir.path(), config).unwrap();
    let after = store.work_order("wo-00001").unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(store.last_seq(), edits as u64 + 1);
    assert!(store.verify(|_| ()).unwrap().is_empty());
}

#[test]
fn group_commit_shares_flushes_and_keeps_seqs_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let (threads, per_thread) = (8, 40);
    let flushes_before = store.flush_count();
    let seqs: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let store = store.clone();
                scope.spawn(move || {
                    // Many creates in flight per thread, then the acks.
                    let pending: Vec<_> = (0..per_thread)
                        .map(|index| {
                            let new = order(thread * per_thread + index);
                            store.submit_create(&operator(), &new, 1).unwrap()
                        })
                        .collect();
                    pending
                        .into_iter()
                        .map(|(_, pending)| pending.wait().unwrap().seqs[0])
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    let writes = (threads * per_thread) as u64;
    let flushes = store.flush_count() - flushes_before;
    assert!(
        flushes * 4 <= writes,
        "{flushes} flushes for {writes} writes: writes should share flushes"
    );
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "a seq was given twice");
    assert_eq!(unique, (1..=writes).collect::<BTreeSet<u64>>());
    assert_eq!(store.last_seq(), writes);
    let changes = store.changes_since(0, usize::MAX).unwrap();
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (1..=writes).collect::<Vec<_>>()
    );
    assert_eq!(
        store.doc_ids(None, usize::MAX).unwrap().len() as u64,
        writes
    );
}

#[test]
fn changes_since_never_passes_last_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let done = AtomicBool::new(false);
    let writes = 200;
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let pending: Vec<_> = (0..writes)
                .map(|index| store.submit_create(&operator(), &order(index), 1).unwrap())
                .collect();
            for (_, pending) in pending {
                pending.wait().unwrap();
            }
            done.store(true, Ordering::Release);
        });
        let mut reads = 0;
        while !done.load(Ordering::Acquire) || reads == 0 {
            let changes = store.changes_since(0, usize::MAX).unwrap();
            let visible = store.last_seq();
            let highest = changes.last().map_or(0, |c| c.seq);
            assert!(highest <= visible, "saw seq {highest} past {visible}");
            // Whatever is visible is gap-free from 1.
            assert!(changes
                .iter()
                .enumerate()
                .all(|(i, c)| c.seq == i as u64 + 1));
            reads += 1;
        }
        writer.join().unwrap();
    });
    let last = store.last_seq();
    assert_eq!(last, writes as u64);
    assert!(store.changes_since(last, 10).unwrap().is_empty());
    assert!(store.changes_since(last + 5, 10).unwrap().is_empty());
    let page = store.changes_since(10, 5).unwrap();
    assert_eq!(
        page.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
}

#[test]
fn submit_drops_stale_cached_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    store.create_work_order(&operator(), &order(1), 1).unwrap();
    let id = "wo-00001";
    // Another writer (as the sync engine would) stores a new snapshot.
    let handle = store.load(id).unwrap().unwrap();
    let mut copy = handle.lock().unwrap().doc.clone();
    let edit = copy.apply(&operator(), &note(7), 2).unwrap();
    let write = doc_write(&copy, edit, true, false);
    store
        .submit(WriteSet {
            docs: vec![write],
            records: Vec::new(),
            checkpoint: Some((
                "peer-a".into(),
                Checkpoint {
                    epoch: [3; 16],
                    seq: 9,
                },
            )),
        })
        .unwrap()
        .wait()
        .unwrap();
    let view = store.work_order(id).unwrap().unwrap();
    assert_eq!(view.notes.len(), 1, "the cached copy was stale");
    assert_eq!(store.checkpoint("peer-a").unwrap().unwrap().seq, 9);
    assert!(store.checkpoint("peer-b").unwrap().is_none());
    assert!(store.verify(|_| ()).unwrap().is_empty());
}

#[test]
fn corrupt_chunk_bytes_are_a_load_error_and_verify_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), small_cache()).unwrap();
    for index in 0..3 {
        store
            .create_work_order(&operator(), &order(index), 1)
            .unwrap();
    }
    // Dropping the last handle releases sled's lock on the directory.
    drop(store);
    let store = Store::open(dir.path(), small_cache()).unwrap();
    let id = "wo-00001";
    let key = keys::chunk(id, 0);
    let mut bytes = store.data().get(&key).unwrap().unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    store.data().insert(&key, bytes).unwrap();
    assert!(matches!(
        store.work_order(id),
        Err(ReadError::Load { id: bad, .. }) if bad == id
    ));
    assert!(matches!(
        store.update_work_order(id, &operator(), &note(1), 2),
        Err(WriteError::Read(ReadError::Load { .. }))
    ));
    // The others still read.
    assert!(store.work_order("wo-00002").unwrap().is_some());
    // A missing chunk is damage too, reported by name.
    store.data().remove(keys::chunk("wo-00002", 0)).unwrap();
    assert!(matches!(
        store.doc_bytes("wo-00002"),
        Err(ReadError::Corrupt { .. })
    ));
    let problems = store.verify(|_| ()).unwrap();
    let named: BTreeSet<_> = problems.iter().map(|p| p.what.as_str()).collect();
    assert_eq!(
        named,
        BTreeSet::from(["document wo-00001", "document wo-00002"]),
        "{problems:?}"
    );
}

#[test]
fn undecodable_index_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    store.create_work_order(&operator(), &order(1), 1).unwrap();
    store
        .data()
        .insert(keys::index("wo-00001"), &[0xff, 0xff, 0xff][..])
        .unwrap();
    assert!(matches!(
        store.doc_index("wo-00001"),
        Err(ReadError::Corrupt { .. })
    ));
    assert!(matches!(
        store.work_order("wo-00001"),
        Err(ReadError::Corrupt { .. })
    ));
    // The committer refuses a write against a damaged index, and keeps going.
    assert!(matches!(
        store.create_work_order(&operator(), &order(1), 1),
        Err(WriteError::Corrupt(_))
    ));
    store.create_work_order(&operator(), &order(2), 1).unwrap();
}

#[test]
fn invalid_document_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let too_long = "a".repeat(DOC_ID_BYTES_MAX + 1);
    for id in [
        too_long.as_str(),
        "",
        "has space",
        "../etc",
        "wo\u{0}1",
        "é",
    ] {
        let mut new = order(1);
        new.id = Some(id.to_string());
        assert!(
            matches!(
                store.create_work_order(&operator(), &new, 1),
                Err(WriteError::InvalidId(_))
            ),
            "accepted {id:?}"
        );
    }
    let mut longest = order(1);
    longest.id = Some("a".repeat(DOC_ID_BYTES_MAX));
    store.create_work_order(&operator(), &longest, 1).unwrap();
    // Without an id, the store makes one.
    let mut unnamed = order(2);
    unnamed.id = None;
    let created = store.create_work_order(&operator(), &unnamed, 1).unwrap();
    assert!(store.work_order(&created.id).unwrap().is_some());
    assert_eq!(store.last_seq(), 2);
}

#[test]
fn a_closed_store_refuses_writes_and_reopening_keeps_epoch_not_actor() {
    let dir = tempfile::tempdir().unwrap();
    let (epoch, actor) = {
        let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
        store.close();
        assert!(matches!(
            store.create_work_order(&operator(), &order(1), 1),
            Err(WriteError::Closed)
        ));
        (store.epoch(), store.actor())
    };
    assert!(matches!(
        Store::init(dir.path(), StoreConfig::default()),
        Err(OpenError::AlreadyExists(_))
    ));
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.epoch(), epoch);
    // A new life writes as a new actor: a crash may have taken changes of
    // the old one that a peer holds.
    assert_ne!(store.actor(), actor);
    let other = tempfile::tempdir().unwrap();
    let fresh = Store::init(other.path(), StoreConfig::default()).unwrap();
    assert_ne!(fresh.epoch(), epoch);
}

#[test]
fn the_durable_barrier_answers_after_a_flush_and_refuses_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    let before = store.flush_count();
    store.durable_barrier().unwrap();
    assert!(
        store.flush_count() > before,
        "the barrier went through the committer and its flush"
    );
    assert_eq!(store.last_seq(), 0, "an empty write set takes no seq");
    store.close();
    assert!(matches!(store.durable_barrier(), Err(WriteError::Closed)));
}

/// The holdings digests (protocol 5) follow every create, reassignment and
/// purge the committer flushes, and a reopen computes the same ones from
/// the index.
#[test]
fn holdings_digests_follow_the_index_and_survive_a_reopen() {
    use fieldsync_schemas::sync_frame::holdings_digest;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.held_digest(), [0; 32]);
    for index in 0..6 {
        store
            .create_work_order(&operator(), &order(index), 1)
            .unwrap();
    }
    // `order` assigns index % 3: tech-0 has 0 and 3, tech-1 has 1 and 4.
    let reassign = Operation::EditOperatorFields(fieldsync_schemas::OperatorPatch {
        assignee: Some(Some("tech-1".into())),
        ..Default::default()
    });
    store
        .update_work_order("wo-00000", &operator(), &reassign, 2)
        .unwrap();
    store.submit_purge("wo-00004").unwrap().wait().unwrap();
    let expect = |store: &Store| {
        assert_eq!(
            store.held_digest(),
            holdings_digest(["wo-00000", "wo-00001", "wo-00002", "wo-00003", "wo-00005"])
        );
        assert_eq!(
            store.assigned_digest("tech-0"),
            holdings_digest(["wo-00003"])
        );
        assert_eq!(
            store.assigned_digest("tech-1"),
            holdings_digest(["wo-00000", "wo-00001"])
        );
        assert_eq!(store.assigned_digest("nobody"), [0; 32]);
    };
    expect(&store);
    store.close();
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    expect(&store);
}
