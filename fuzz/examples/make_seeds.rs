//! Writes the seed corpora (`corpus/<target>/seed-*`) from real data: the
//! frames of a real session between an office and a technician's laptop
//! (prime, the laptop's note, the office's pushed edit), record copies,
//! a saved work order and its changes. Run from `fuzz/`:
//! `cargo run --release --example make_seeds`.

use std::fs;
use std::path::Path;

use automerge::ActorId;
use fieldsync_fuzz::{sample_work_order, work_order_bytes};
use fieldsync_node::access::PeerAccess;
use fieldsync_node::doc::{Operation, WorkOrderDoc};
use fieldsync_node::sync::{MemStore, Session, SessionConfig};
use fieldsync_schemas::sync_frame::{Frame, RecordCopy};
use fieldsync_schemas::{Actor, OperatorPatch, Role};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn main() {
    let op = Actor::new("op", Role::Operator);
    let tech = Actor::new("tech-1", Role::Technician);
    let mut office = MemStore::new([1; 16], ActorId::from(vec![1; 16]));
    let mut laptop = MemStore::new([2; 16], ActorId::from(vec![2; 16]));
    office
        .create(&op, "wo-1", &sample_work_order("wo-1"), 1_000_000)
        .unwrap();
    office.flush();
    let mut so = Session::new(
        SessionConfig::new("office-node", true),
        "laptop-node",
        PeerAccess::User {
            user_id: "tech-1".into(),
            role: Role::Technician,
        },
    );
    let mut sl = Session::new(
        SessionConfig::new("laptop-node", false),
        "office-node",
        PeerAccess::Office,
    );
    so.start(&office).unwrap();
    sl.start(&laptop).unwrap();
    let mut to_laptop: Vec<Vec<u8>> = Vec::new();
    let mut to_office: Vec<Vec<u8>> = Vec::new();
    let mut drive = |so: &mut Session,
                     sl: &mut Session,
                     office: &mut MemStore,
                     laptop: &mut MemStore,
                     now: u64| {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(f) = so.poll_frame() {
                let b = f.encode();
                sl.handle_bytes(now, &b, laptop).unwrap();
                to_laptop.push(b);
                moved = true;
            }
            while let Some(f) = sl.poll_frame() {
                let b = f.encode();
                so.handle_bytes(now, &b, office).unwrap();
                to_office.push(b);
                moved = true;
            }
            if let Some(w) = office.flush() {
                so.handle_write_done(now, w, office).unwrap();
                so.handle_local_change(now, office).unwrap();
                moved = true;
            }
            if let Some(w) = laptop.flush() {
                sl.handle_write_done(now, w, laptop).unwrap();
                sl.handle_local_change(now, laptop).unwrap();
                moved = true;
            }
            if !moved {
                return;
            }
        }
    };
    drive(&mut so, &mut sl, &mut office, &mut laptop, 2_000_000);
    let note = Operation::AddNote {
        id: "n-1".into(),
        at: "2026-01-01T10:00:00Z".into(),
        text: "replaced the valve".into(),
    };
    laptop.apply("wo-1", &tech, &note, 3_000_000).unwrap();
    drive(&mut so, &mut sl, &mut office, &mut laptop, 3_000_000);
    let patch = Operation::EditOperatorFields(OperatorPatch {
        title: Some("Boiler, urgent".into()),
        ..OperatorPatch::default()
    });
    office.apply("wo-1", &op, &patch, 4_000_000).unwrap();
    drive(&mut so, &mut sl, &mut office, &mut laptop, 4_000_000);
    // Record copies as an office sends them.
    let copies = vec![RecordCopy {
        collection: "customers".into(),
        key: "c-1".into(),
        version: 1,
        deleted: false,
        value: br#"{"name":"Ana"}"#.to_vec(),
    }];
    let plain = postcard::to_allocvec(&copies).unwrap();
    let records = Frame::Records {
        compressed: zstd::bulk::compress(&plain, 3).unwrap(),
    }
    .encode();
    to_laptop.insert(1, records);

    // Setting byte (see `fieldsync_fuzz::sync_frame`): 0 laptop, hello made
    // here; 1 office, hello made here; 2 and 3: hello from the input.
    for (i, f) in to_laptop.iter().enumerate() {
        let kind = Frame::decode(f).unwrap().kind();
        write(
            "sync_frame",
            &format!("to-laptop-{i:02}-{kind}"),
            &[f.as_slice(), &[0]].concat(),
        );
    }
    for (i, f) in to_office.iter().enumerate() {
        let kind = Frame::decode(f).unwrap().kind();
        write(
            "sync_frame",
            &format!("to-office-{i:02}-{kind}"),
            &[f.as_slice(), &[1]].concat(),
        );
    }
    write(
        "sync_frame",
        "to-laptop-session",
        &[to_laptop.concat(), vec![2]].concat(),
    );
    write(
        "sync_frame",
        "to-office-session",
        &[to_office.concat(), vec![3]].concat(),
    );

    // Intake: a saved work order (compressed and not), its changes.
    let whole = work_order_bytes();
    write("intake", "saved", whole);
    let mut doc = WorkOrderDoc::load(whole, &ActorId::from(vec![5; 16])).unwrap();
    write(
        "intake",
        "saved-nocompress",
        &doc.automerge().save_nocompress(),
    );
    let edit = doc.apply(&op, &patch, 5_000).unwrap();
    write("intake", "change", &edit.change_bytes);
    let edit = doc.apply(&op, &note, 5_001).unwrap();
    write("intake", "change-note", &edit.change_bytes);
    write(
        "intake",
        "saved-then-change",
        &[whole, edit.change_bytes.as_slice()].concat(),
    );
    if let Some(d) = office.work_order("wo-1") {
        write("intake", "office-doc", &d.save());
    }

    // Read model: small edit programs (see `read_model_doc`).
    write("read_model", "empty", b"");
    write("read_model", "put-title", &[1, 0, 3, 0, 0]);
    write(
        "read_model",
        "conflict",
        &[1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 3, 0, 0, 5],
    );
    write(
        "read_model",
        "status-item",
        &[6, 10, 0, 0, 1, 12, 0, 22, 0, 0, 2, 0, 0, 0, 7],
    );
    write(
        "read_model",
        "materials",
        &[4, 12, 0, 3, 1, 1, 14, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5],
    );
    let _ = WorkOrderDoc::load;
}
