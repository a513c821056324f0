//! Criterion micro-benchmarks of the hot paths: a typed operation applied to
//! a loaded work order, sync frames encoded and decoded, a small write set
//! appended to the changelog and flushed, and one page of the changes feed.
//!
//! `cargo bench -p fieldsync-bench --bench micro` (add a name to run one,
//! e.g. `-- feed_page`).
//!
//! Why these four: every sync session and every API write goes through
//! them, so a regression in any shows up in W1/W2/W3 and in the
//! many-technicians figures; here it shows up alone, in microseconds, with
//! nothing else moving. Each bench is short (a few seconds) and uses real
//! parts: Automerge documents, postcard frames, sled on disk in a temporary
//! directory with real fsyncs.

use std::time::{Duration, Instant};

use automerge::ActorId;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fieldsync_node::doc::{Operation, WorkOrderDoc};
use fieldsync_node::store::{doc_write, Store, StoreConfig, WriteSet};
use fieldsync_schemas::sync_frame::{DocHeads, Frame, PAGE_DOCS_MAX};
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, Priority, Role, Status};

/// Documents in the store the feed page is read from.
const FEED_STORE_DOCS: usize = 10_000;
/// Entries per feed page.
const FEED_PAGE_ENTRIES: usize = 100;
/// Creates kept in flight while filling the feed store.
const FILL_IN_FLIGHT_MAX: usize = 256;
const TIME_S: i64 = 1_780_300_800;

fn actor() -> ActorId {
    ActorId::from(vec![7u8; 16])
}

/// A work order shaped like the benchmark fixture's (about 1.2 kB of JSON):
/// customer, description, three notes, two materials.
fn sample(index: usize) -> NewWorkOrder {
    NewWorkOrder {
        id: Some(format!("00000000-0000-4000-8000-{index:012}")),
        number: format!("WO-2026-{index:06}"),
        title: "Boiler makes no hot water".into(),
        description: "Customer reports the boiler stopped producing hot water after a \
                      power cut; pilot light is out and the pressure gauge reads low."
            .into(),
        customer: Customer {
            name: "Hugo Costa".into(),
            address: "Rua Augusta 1109, Sao Paulo".into(),
            phone: "+55 11 95897-5662".into(),
            document: String::new(),
        },
        priority: Priority::Normal,
        assignee: Some("alice".into()),
        scheduled_for: Some("2026-12-01T09:00:00Z".into()),
        created_at: "2026-06-01T08:00:00Z".into(),
        initial_status: Status::Assigned,
        notes: (0..3)
            .map(|n| {
                (
                    "operator".to_string(),
                    format!("Called the customer to confirm the visit window ({n})."),
                    "2026-06-01T08:00:00Z".to_string(),
                )
            })
            .collect(),
        materials: vec![
            ("VALVE-22".into(), 1.0, "Pressure relief valve 22 mm".into()),
            ("SEAL-KIT".into(), 2.0, "Gasket and seal kit".into()),
        ],
    }
}

fn note(n: u64) -> Operation {
    Operation::AddNote {
        id: format!("bench-note-{n}"),
        at: "2026-06-01T09:00:00Z".into(),
        text: "Replaced the pressure relief valve; boiler tested for 20 minutes.".into(),
    }
}

/// A typed operation (a technician's note) on a loaded work order: the
/// field-rules check, the Automerge transaction and `save_after`.
fn document_apply(c: &mut Criterion) {
    let who = Actor::new("alice", Role::Technician);
    let (created, edit) = WorkOrderDoc::create(&actor(), &Actor::system(), "wo-1", &sample(1), 1)
        .expect("a sample work order builds");
    let loaded = WorkOrderDoc::load(&edit.change_bytes, &actor()).expect("and loads back");
    drop(created);
    c.bench_function("document_apply/add_note", |b| {
        b.iter_batched_ref(
            || loaded.clone(),
            |doc| {
                doc.apply(&who, &note(1), TIME_S)
                    .expect("the note is allowed")
            },
            BatchSize::SmallInput,
        )
    });
    let operator = Actor::new("operator", Role::Operator);
    let status = Operation::AppendStatus {
        at: "2026-06-01T09:00:00Z".into(),
        to: Status::InProgress,
        note: "on site".into(),
    };
    c.bench_function("document_apply/append_status", |b| {
        b.iter_batched_ref(
            || loaded.clone(),
            |doc| doc.apply(&operator, &status, TIME_S).expect("allowed"),
            BatchSize::SmallInput,
        )
    });
}

/// Encoding and decoding the frames a session sends most: a full page of
/// announced heads, and one document's Automerge sync message.
fn frame_codec(c: &mut Criterion) {
    let announce = Frame::Announce {
        page: 7,
        upto_seq: 123_456,
        docs: (0..PAGE_DOCS_MAX)
            .map(|index| DocHeads {
                id: format!("00000000-0000-4000-8000-{index:012}"),
                heads: vec![[index as u8; 32]],
            })
            .collect(),
    };
    let (_, edit) = WorkOrderDoc::create(&actor(), &Actor::system(), "wo-1", &sample(1), 1)
        .expect("a sample work order builds");
    let doc_sync = Frame::DocSync {
        id: "00000000-0000-4000-8000-000000000001".into(),
        message: edit.change_bytes,
    };
    let mut group = c.benchmark_group("frame");
    for (name, frame) in [("announce_512", &announce), ("doc_sync", &doc_sync)] {
        let bytes = frame.encode();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("encode/{name}"), |b| b.iter(|| frame.encode()));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| Frame::decode(&bytes).expect("a frame we encoded decodes"))
        });
    }
    group.finish();
}

/// One small write set (one document's new change) submitted to the group
/// committer and waited for: the changelog entry, the index update, the
/// chunk, and the fsync. One writer at a time, so each write pays a flush.
fn changelog_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::init(&dir.path().join("store"), StoreConfig::default()).expect("a store");
    let operator = Actor::new("operator", Role::Operator);
    let committed = store
        .create_work_order(&operator, &sample(1), TIME_S)
        .expect("the document is stored");
    let bytes = store
        .doc_bytes(&committed.id)
        .expect("readable")
        .expect("present");
    let mut doc = WorkOrderDoc::load(&bytes, &store.actor()).expect("loads");
    let mut n = 0u64;
    c.bench_function("changelog_append/submit_and_flush", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let edit = doc.apply(&operator, &note(n), TIME_S).expect("allowed");
                let write = doc_write(&doc, edit, false, false);
                let started = Instant::now();
                store
                    .submit(WriteSet {
                        docs: vec![write],
                        records: Vec::new(),
                        checkpoint: None,
                    })
                    .expect("queued")
                    .wait()
                    .expect("durable");
                spent += started.elapsed();
            }
            spent
        })
    });
    store.close();
}

/// One page of the changes feed (100 entries from the middle of a
/// 10,000-entry changelog), as the gateway's `/api/v1/changes` reads it.
fn feed_page(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::init(&dir.path().join("store"), StoreConfig::default()).expect("a store");
    let operator = Actor::new("operator", Role::Operator);
    let mut in_flight = std::collections::VecDeque::new();
    for index in 0..FEED_STORE_DOCS {
        let (_, pending) = store
            .submit_create(&operator, &sample(index), TIME_S)
            .expect("queued");
        in_flight.push_back(pending);
        if in_flight.len() >= FILL_IN_FLIGHT_MAX {
            in_flight
                .pop_front()
                .expect("not empty")
                .wait()
                .expect("durable");
        }
    }
    for pending in in_flight {
        pending.wait().expect("durable");
    }
    assert_eq!(store.last_seq(), FEED_STORE_DOCS as u64);
    let after = (FEED_STORE_DOCS / 2) as u64;
    let mut group = c.benchmark_group("feed_page");
    group.throughput(Throughput::Elements(FEED_PAGE_ENTRIES as u64));
    group.bench_function("changes_since_100_of_10000", |b| {
        b.iter(|| {
            let page = store
                .changes_since(after, FEED_PAGE_ENTRIES)
                .expect("readable");
            assert_eq!(page.len(), FEED_PAGE_ENTRIES);
            page
        })
    });
    group.finish();
    store.close();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = micro;
    config = config();
    targets = document_apply, frame_codec, changelog_append, feed_page
}
criterion_main!(micro);
