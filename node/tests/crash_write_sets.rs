//! A write set holding a work order and records lands whole or not at all,
//! across `kill -9` of a real process in the middle of writing.
//!
//! How: this test binary runs itself again as the writer (the `writer`
//! test, which does nothing unless `FIELDSYNC_CRASH_DIR` is set), reads its
//! acknowledgements, and kills it with SIGKILL at a different point each
//! round. Then the store must verify clean, every write set must be all
//! there or all absent, and every acknowledged one must be there.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use fieldsync_node::doc::WorkOrderDoc;
use fieldsync_node::store::{doc_write, Expect, RecordWrite, Store, StoreConfig, WriteSet};
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, Priority, Role, Status};

const DIR_ENV: &str = "FIELDSYNC_CRASH_DIR";
/// Records in each write set, beside its one work order.
const RECORDS_PER_SET: usize = 20;

fn order(index: u64) -> NewWorkOrder {
    NewWorkOrder {
        id: Some(format!("wo-{index}")),
        number: format!("WO-{index}"),
        title: "Boiler".into(),
        description: "No hot water".into(),
        customer: Customer {
            name: "Ana".into(),
            address: "Rua A".into(),
            phone: "1".into(),
            document: String::new(),
        },
        priority: Priority::Normal,
        assignee: Some("tech-1".into()),
        scheduled_for: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        initial_status: Status::Assigned,
        notes: vec![],
        materials: vec![],
    }
}

fn write_set(store: &Store, index: u64) -> WriteSet {
    let operator = Actor::new("op", Role::Operator);
    let id = format!("wo-{index}");
    let (document, edit) =
        WorkOrderDoc::create(&store.actor(), &operator, &id, &order(index), 1).unwrap();
    let records = (0..RECORDS_PER_SET)
        .map(|r| RecordWrite {
            collection: "materials".into(),
            key: format!("set-{index}-{r}"),
            value: Some(
                format!(
                    "{{\"set\":{index},\"n\":{r},\"pad\":\"{}\"}}",
                    "x".repeat(200)
                )
                .into_bytes(),
            ),
            expect: Expect::Absent,
            replicated_version: None,
        })
        .collect();
    WriteSet {
        docs: vec![doc_write(&document, edit, true, true)],
        records,
        checkpoint: None,
    }
}

/// The child: write sets one after the other, several in flight, printing
/// each index once it is acknowledged (durable).
#[test]
fn writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let store = Store::open(std::path::Path::new(&dir), StoreConfig::default()).unwrap();
    let mut pending = std::collections::VecDeque::new();
    for index in 0..100_000u64 {
        pending.push_back((index, store.submit(write_set(&store, index)).unwrap()));
        if pending.len() >= 4 {
            let (done, write) = pending.pop_front().unwrap();
            write.wait().unwrap();
            println!("ack {done}");
        }
    }
}

#[test]
fn write_sets_survive_kill_9_whole_or_not_at_all() {
    for round in 0..4u64 {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        Store::init(&dir, StoreConfig::default()).unwrap().close();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "writer", "--nocapture", "--test-threads", "1"])
            .env(DIR_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 5 + round * 17;
        let mut acked = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(index) = line.strip_prefix("ack ") {
                acked.push(index.parse::<u64>().unwrap());
                if acked.len() as u64 >= kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let store = Store::open(&dir, StoreConfig::default()).unwrap();
        let problems = store.verify(|_| {}).unwrap();
        assert!(problems.is_empty(), "round {round}: {problems:#?}");
        let mut whole = 0;
        for index in 0..(kill_after + 64) {
            let doc = store.doc_index(&format!("wo-{index}")).unwrap().is_some();
            let records = (0..RECORDS_PER_SET)
                .filter(|r| {
                    store
                        .record("materials", &format!("set-{index}-{r}"))
                        .unwrap()
                        .is_some()
                })
                .count();
            assert!(
                (doc && records == RECORDS_PER_SET) || (!doc && records == 0),
                "round {round}: write set {index} is torn: document {doc}, {records} records"
            );
            whole += usize::from(doc);
        }
        for index in &acked {
            assert!(
                store.doc_index(&format!("wo-{index}")).unwrap().is_some(),
                "round {round}: acknowledged write set {index} is missing"
            );
        }
        assert!(whole >= acked.len(), "round {round}");
        eprintln!(
            "round {round}: {} acknowledged, {whole} stored whole",
            acked.len()
        );
        store.close();
    }
}
