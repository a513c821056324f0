//! The engine over real sled stores in temporary directories: two sessions
//! wired back to back, every queued write awaited as the QUIC driver does.

use std::sync::Arc;

use automerge::transaction::Transactable;
use fieldsync_schemas::{Actor, OperatorPatch, Priority, Role, Status};

use super::*;
use crate::access::PeerAccess;
use crate::doc::Operation;
use crate::store::{now_ms, StoreConfig};
use crate::sync::{Session, SessionConfig};

struct Side {
    _dir: tempfile::TempDir,
    store: Store,
    shared: Arc<SyncShared>,
    id: &'static str,
    office: bool,
}

impl Side {
    fn new(id: &'static str, office: bool) -> Side {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(&dir.path().join("store"), StoreConfig::default()).unwrap();
        Side {
            _dir: dir,
            shared: SyncShared::new(store.clone()),
            store,
            id,
            office,
        }
    }

    fn session(&self, peer: &Side, access: PeerAccess) -> (Session, SyncAdapter) {
        let adapter = SyncAdapter::new(self.shared.clone());
        let mut session = Session::new(SessionConfig::new(self.id, self.office), peer.id, access);
        session.start(&adapter).unwrap();
        (session, adapter)
    }
}

fn operator() -> Actor {
    Actor::new("op", Role::Operator)
}

fn tech(user: &str) -> Actor {
    Actor::new(user, Role::Technician)
}

fn tech_access(user: &str) -> PeerAccess {
    PeerAccess::User {
        user_id: user.into(),
        role: Role::Technician,
    }
}

fn create(side: &Side, id: &str, assignee: &str) {
    let mut new = crate::doc::tests::sample(assignee);
    new.id = Some(id.into());
    side.store.create_work_order(&operator(), &new, 1).unwrap();
}

fn note(text: &str) -> Operation {
    Operation::AddNote {
        id: text.into(),
        at: "2026-01-01T10:00:00Z".into(),
        text: text.into(),
    }
}

/// Wait for every queued write of `adapter`, in order, and report each.
fn settle(session: &mut Session, adapter: &mut SyncAdapter, now_ms: u64) -> bool {
    let mut moved = false;
    while let Some((write, pending)) = adapter.pending.pop_front() {
        pending.wait().unwrap();
        adapter.durable(write);
        session.handle_write_done(now_ms, write, adapter).unwrap();
        moved = true;
    }
    moved
}

type End<'a> = (&'a mut Session, &'a mut SyncAdapter);

/// Move frames both ways and settle both stores until nothing moves.
fn drive(a: End<'_>, b: End<'_>, now_ms: u64) -> u64 {
    let (sa, aa) = a;
    let (sb, ab) = b;
    let mut frames = 0;
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(frame) = sa.poll_frame() {
            sb.handle_bytes(now_ms, &frame.encode(), ab).unwrap();
            frames += 1;
            moved = true;
        }
        while let Some(frame) = sb.poll_frame() {
            sa.handle_bytes(now_ms, &frame.encode(), aa).unwrap();
            frames += 1;
            moved = true;
        }
        moved |= settle(sa, aa, now_ms);
        moved |= settle(sb, ab, now_ms);
        sa.handle_local_change(now_ms, aa).unwrap();
        sb.handle_local_change(now_ms, ab).unwrap();
        if !moved && sa.poll_frame().is_none() && sb.poll_frame().is_none() {
            assert!(
                sa.is_idle(aa) && sb.is_idle(ab),
                "stalled with work in flight"
            );
            return frames;
        }
    }
    panic!("did not settle");
}

fn sync(a: &Side, b: &Side, b_access: PeerAccess, a_access: PeerAccess, now_ms: u64) -> u64 {
    let (mut sa, mut aa) = a.session(b, b_access);
    let (mut sb, mut ab) = b.session(a, a_access);
    drive((&mut sa, &mut aa), (&mut sb, &mut ab), now_ms)
}

fn assert_verifies(side: &Side) {
    let problems = side.store.verify(|_| ()).unwrap();
    assert!(problems.is_empty(), "{}: {problems:?}", side.id);
}

#[test]
fn prime_over_sled_stores_only_the_assigned_documents_durably() {
    let central = Side::new("central", true);
    let laptop = Side::new("laptop", false);
    for i in 0..40 {
        create(
            &central,
            &format!("wo-{i}"),
            if i % 2 == 0 { "tech-1" } else { "tech-2" },
        );
    }
    let now = now_ms();
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        now,
    );
    let ids = laptop.store.doc_ids(None, 100).unwrap();
    assert_eq!(ids.len(), 20);
    for id in &ids {
        let n: u32 = id.trim_start_matches("wo-").parse().unwrap();
        assert_eq!(n % 2, 0, "{id} is not assigned to tech-1");
        assert_eq!(
            laptop.store.doc_index(id).unwrap().unwrap().heads,
            central.store.doc_index(id).unwrap().unwrap().heads
        );
    }
    assert_eq!(laptop.store.checkpoint("central").unwrap().unwrap().seq, 40);
    // The laptop's own changelog now names the 20 documents; the central
    // already has them, so it acknowledges without receiving any.
    assert_eq!(central.store.checkpoint("laptop").unwrap().unwrap().seq, 20);
    assert_verifies(&central);
    assert_verifies(&laptop);
    // Unchanged on both sides: the hellos and the laptop's holding digest
    // (which matches the central's, computed by the committer) are all it
    // costs.
    assert_eq!(
        sync(
            &central,
            &laptop,
            tech_access("tech-1"),
            PeerAccess::Office,
            now
        ),
        3
    );
}

#[test]
fn offline_edits_on_both_sides_merge_and_survive_a_reopen() {
    let central = Side::new("central", true);
    let laptop = Side::new("laptop", false);
    create(&central, "wo-1", "tech-1");
    let now = now_ms();
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        now,
    );
    central
        .store
        .update_work_order("wo-1", &operator(), &note("office"), 2)
        .unwrap();
    let title = Operation::EditOperatorFields(OperatorPatch {
        title: Some("New title".into()),
        ..Default::default()
    });
    central
        .store
        .update_work_order("wo-1", &operator(), &title, 2)
        .unwrap();
    let who = tech("tech-1");
    laptop
        .store
        .update_work_order("wo-1", &who, &note("field"), 3)
        .unwrap();
    let report = Operation::EditReport {
        text: "Replaced valve".into(),
    };
    laptop
        .store
        .update_work_order("wo-1", &who, &report, 3)
        .unwrap();
    let close = Operation::Close {
        at: "2026-01-01T12:00:00Z".into(),
        resolution: "fixed".into(),
        signed_by: "Ana".into(),
        signature: String::new(),
    };
    laptop
        .store
        .update_work_order("wo-1", &who, &close, 3)
        .unwrap();
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        now,
    );
    let a = central.store.work_order("wo-1").unwrap().unwrap();
    let b = laptop.store.work_order("wo-1").unwrap().unwrap();
    assert_eq!(a.heads, b.heads);
    assert_eq!(a.notes.len(), 2);
    assert_eq!(a.title, "New title");
    assert_eq!(a.report, "Replaced valve");
    assert_eq!(a.status, Status::Completed);
    assert_verifies(&central);
    assert_verifies(&laptop);
    // What the central acknowledged is on its disk.
    let path = central.store.path().to_path_buf();
    let heads = a.heads.clone();
    drop(central.shared);
    central.store.close();
    drop(central.store);
    let reopened = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(reopened.work_order("wo-1").unwrap().unwrap().heads, heads);
}

#[test]
fn reassignment_is_recorded_then_revoked_and_purged_after_the_grace() {
    let grace_ms = SessionConfig::new("x", true).grace_ms;
    let central = Side::new("central", true);
    let laptop = Side::new("laptop", false);
    create(&central, "wo-1", "tech-1");
    create(&central, "wo-2", "tech-1");
    let before = now_ms();
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        before,
    );
    let reassign = Operation::EditOperatorFields(OperatorPatch {
        assignee: Some(Some("tech-2".into())),
        ..Default::default()
    });
    // The reassignment's instant is the operation's, carried in the
    // document (`unassigned`), not the committer's clock.
    let at_s = (before / 1000) as i64;
    central
        .store
        .update_work_order("wo-1", &operator(), &reassign, at_s)
        .unwrap();
    let index = central.store.doc_index("wo-1").unwrap().unwrap();
    assert_eq!(index.previous_assignee.as_deref(), Some("tech-1"));
    assert_eq!(index.reassigned_at_ms, at_s as u64 * 1000);
    let revocations = central.store.revocations("tech-1", 10).unwrap();
    assert_eq!(
        revocations,
        vec![("wo-1".to_string(), index.reassigned_at_ms)]
    );
    // Offline, the technician adds a note: accepted within the grace.
    laptop
        .store
        .update_work_order("wo-1", &tech("tech-1"), &note("late"), 6)
        .unwrap();
    let within = index.reassigned_at_ms + 1_000;
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        within,
    );
    assert_eq!(
        central
            .store
            .work_order("wo-1")
            .unwrap()
            .unwrap()
            .notes
            .len(),
        1
    );
    assert!(laptop.store.doc_index("wo-1").unwrap().is_some());
    // After it, the laptop purges and the central forgets the revocation.
    let after = index.reassigned_at_ms + grace_ms + 1;
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        after,
    );
    assert!(laptop.store.doc_index("wo-1").unwrap().is_none());
    assert!(laptop.store.doc_bytes("wo-1").unwrap().is_none());
    assert!(
        laptop.store.doc_index("wo-2").unwrap().is_some(),
        "only wo-1 was revoked"
    );
    assert!(central.store.revocations("tech-1", 10).unwrap().is_empty());
    let last = laptop.store.changes_since(0, 100).unwrap().pop().unwrap();
    assert_eq!(
        (last.id.as_str(), last.op, last.heads.len()),
        ("wo-1", ChangeOp::Delete, 0)
    );
    assert_verifies(&laptop);
    assert_verifies(&central);
    // Assigned back: the document comes back to the laptop.
    let back = Operation::EditOperatorFields(OperatorPatch {
        assignee: Some(Some("tech-1".into())),
        ..Default::default()
    });
    central
        .store
        .update_work_order("wo-1", &operator(), &back, 7)
        .unwrap();
    assert!(central.store.revocations("tech-1", 10).unwrap().is_empty());
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        after + 1,
    );
    assert_eq!(
        laptop.store.work_order("wo-1").unwrap().unwrap().heads,
        central.store.work_order("wo-1").unwrap().unwrap().heads
    );
    assert_verifies(&laptop);
}

#[test]
fn a_forbidden_change_from_a_laptop_is_compensated_on_disk() {
    let central = Side::new("central", true);
    let laptop = Side::new("laptop", false);
    create(&central, "wo-1", "tech-1");
    let now = now_ms();
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        now,
    );
    // A tampered laptop writes the priority directly, bypassing the rules.
    let (mut session, mut adapter) = laptop.session(&central, PeerAccess::Office);
    let mut doc = adapter.doc("wo-1").unwrap().unwrap();
    let before = doc.get_heads();
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "priority", "urgent").unwrap();
    tx.commit();
    adapter
        .merge("wo-1", &doc.save_after(&before), now)
        .unwrap();
    settle(&mut session, &mut adapter, now);
    drop((session, adapter));
    assert_eq!(
        laptop.store.work_order("wo-1").unwrap().unwrap().priority,
        Priority::Urgent
    );
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        now,
    );
    let a = central.store.work_order("wo-1").unwrap().unwrap();
    let b = laptop.store.work_order("wo-1").unwrap().unwrap();
    assert_eq!(a.priority, Priority::Normal);
    assert_eq!(b.priority, Priority::Normal);
    assert_eq!(a.heads, b.heads);
    assert_verifies(&central);
    assert_verifies(&laptop);
}

#[test]
fn two_sessions_receiving_the_same_new_document_store_it_once() {
    let central = Side::new("central", true);
    let other = Side::new("other", true);
    let laptop = Side::new("laptop", false);
    create(&central, "wo-1", "tech-1");
    sync(
        &central,
        &other,
        PeerAccess::Office,
        PeerAccess::Office,
        now_ms(),
    );
    // The other central adds a note the first one does not have yet.
    other
        .store
        .update_work_order("wo-1", &operator(), &note("other"), 2)
        .unwrap();
    let now = now_ms();
    let (mut s1, mut a1) = central.session(&laptop, tech_access("tech-1"));
    let (mut l1, mut la1) = laptop.session(&central, PeerAccess::Office);
    let (mut s2, mut a2) = other.session(&laptop, tech_access("tech-1"));
    let (mut l2, mut la2) = laptop.session(&other, PeerAccess::Office);
    // Interleave both sessions frame by frame without settling the
    // laptop's writes, so both creates race.
    for _ in 0..20 {
        for (s, a, l, la) in [
            (&mut s1, &mut a1, &mut l1, &mut la1),
            (&mut s2, &mut a2, &mut l2, &mut la2),
        ] {
            if let Some(frame) = s.poll_frame() {
                l.handle_bytes(now, &frame.encode(), la).unwrap();
            }
            if let Some(frame) = l.poll_frame() {
                s.handle_bytes(now, &frame.encode(), a).unwrap();
            }
        }
    }
    drive((&mut s1, &mut a1), (&mut l1, &mut la1), now);
    drive((&mut s2, &mut a2), (&mut l2, &mut la2), now);
    let view = laptop.store.work_order("wo-1").unwrap().unwrap();
    assert_eq!(view.notes.len(), 1, "both versions merged");
    assert_eq!(
        view.heads,
        other.store.work_order("wo-1").unwrap().unwrap().heads
    );
    assert_eq!(
        laptop.store.changes_since(0, 10).unwrap()[0].op,
        ChangeOp::Create
    );
    assert_verifies(&laptop);
}

#[test]
fn parallel_loading_keeps_the_order_and_reports_each_bad_document() {
    let docs: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            let id = format!("wo-{i}");
            if i % 37 == 5 {
                return (id, vec![0x85, 0x6f, 0x4a, 0x83, 9, 9, 9]);
            }
            let mut doc = automerge::Automerge::new();
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, "id", id.as_str()).unwrap();
            tx.commit();
            (id, doc.save_nocompress())
        })
        .collect();
    let loaded = load_in_parallel(&docs);
    assert_eq!(loaded.len(), docs.len());
    for (i, ((id, _), doc)) in docs.iter().zip(&loaded).enumerate() {
        match doc {
            Ok(doc) => {
                let value = automerge::ReadDoc::get(doc, automerge::ROOT, "id").unwrap();
                assert_eq!(value.unwrap().0.as_str(), Some(id.as_str()));
            }
            Err(_) => assert_eq!(i % 37, 5, "{id} should have loaded"),
        }
    }
    assert_eq!(loaded.iter().filter(|d| d.is_err()).count(), 6);
}

/// What the engine asks the adapter about a collection: grants set over
/// the API, else the node's configured ones, else the default.
#[test]
fn read_grants_fall_back_on_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(&dir.path().join("store"), StoreConfig::default()).unwrap();
    let field = ReadGrants {
        readers: vec![Role::Operator, Role::Technician],
    };
    let configured = std::collections::BTreeMap::from([("materials".to_string(), field.clone())]);
    let adapter = SyncAdapter::new(SyncShared::with_read_grants(store.clone(), configured));
    assert_eq!(adapter.read_grants("materials").unwrap(), field);
    assert_eq!(
        adapter.read_grants("customers").unwrap(),
        ReadGrants::default()
    );
    let unconfigured = SyncAdapter::new(SyncShared::new(store.clone()));
    assert_eq!(
        unconfigured.read_grants("materials").unwrap(),
        ReadGrants::default()
    );
    let office_only = ReadGrants {
        readers: vec![Role::Operator],
    };
    store.set_read_grants("materials", &office_only).unwrap();
    assert_eq!(adapter.read_grants("materials").unwrap(), office_only);
    store.close();
}

/// A central that never saw a reassignment itself (the document reached it
/// whole, already reassigned) still revokes the former assignee's copy,
/// from the document's own record of when that user stopped being the
/// assignee (issue 16: the `--centrals 2` gap).
#[test]
fn a_central_that_never_saw_the_reassignment_revokes_from_the_document() {
    let grace_ms = SessionConfig::new("x", true).grace_ms;
    let central_1 = Side::new("central-1", true);
    let central_2 = Side::new("central-2", true);
    let laptop = Side::new("laptop", false);
    create(&central_1, "wo-1", "tech-1");
    let t0 = now_ms();
    sync(
        &central_1,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        t0,
    );
    assert!(laptop.store.doc_index("wo-1").unwrap().is_some());
    let reassign = Operation::EditOperatorFields(OperatorPatch {
        assignee: Some(Some("tech-2".into())),
        ..Default::default()
    });
    let at_s = (t0 / 1000) as i64;
    let at_ms = at_s as u64 * 1000;
    central_1
        .store
        .update_work_order("wo-1", &operator(), &reassign, at_s)
        .unwrap();
    sync(
        &central_1,
        &central_2,
        PeerAccess::Office,
        PeerAccess::Office,
        t0,
    );
    let index = central_2.store.doc_index("wo-1").unwrap().unwrap();
    assert_eq!(index.assignee.as_deref(), Some("tech-2"));
    assert_eq!(
        central_2.store.revocations("tech-1", 10).unwrap(),
        vec![("wo-1".to_string(), at_ms)],
        "the record comes from the document, at its instant"
    );
    // Within the grace period central 2 lets the laptop keep it...
    sync(
        &central_2,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        at_ms + 1_000,
    );
    assert!(laptop.store.doc_index("wo-1").unwrap().is_some());
    // ...and after it revokes it, though it never sent it.
    sync(
        &central_2,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        at_ms + grace_ms + 1,
    );
    assert!(laptop.store.doc_index("wo-1").unwrap().is_none());
    assert_verifies(&laptop);
    assert_verifies(&central_2);
}

fn user(id: &str) -> crate::store::User {
    crate::store::User {
        id: id.into(),
        role: Role::Technician,
        scopes: Vec::new(),
        secret_hash: None,
        enroll_code_hash: Some("code".into()),
        enroll_code_expires_at_ms: None,
        node_ids: Vec::new(),
        revoked: false,
        created_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

fn enroll(side: &Side, id: &str, node: &str) {
    let (mut user, version) = side.store.user_versioned(id).unwrap().unwrap();
    user.enroll_code_hash = None;
    user.node_ids.push(node.into());
    side.store.put_user_if(&user, version).unwrap();
}

/// Two centrals write one user concurrently (an enrollment at one, a
/// revocation and another enrollment at the other): over sled stores and
/// the committer they merge to the same user at the same version, devices
/// united and the revocation kept, and a further sync moves nothing.
#[test]
fn two_centrals_merge_their_users() {
    let (c1, c2) = (Side::new("central-1", true), Side::new("central-2", true));
    c1.store.put_user(&user("tech-1")).unwrap();
    sync(&c1, &c2, PeerAccess::Office, PeerAccess::Office, now_ms());
    assert_eq!(c2.store.user("tech-1").unwrap(), Some(user("tech-1")));
    enroll(&c1, "tech-1", "aa11");
    enroll(&c2, "tech-1", "bb22");
    let (mut revoked, version) = c2.store.user_versioned("tech-1").unwrap().unwrap();
    revoked.revoked = true;
    c2.store.put_user_if(&revoked, version).unwrap();
    sync(&c1, &c2, PeerAccess::Office, PeerAccess::Office, now_ms());
    let one = c1.store.user_versioned("tech-1").unwrap().unwrap();
    let two = c2.store.user_versioned("tech-1").unwrap().unwrap();
    assert_eq!(one, two, "converged");
    assert!(one.0.revoked, "the revocation stays");
    let mut nodes = one.0.node_ids.clone();
    nodes.sort();
    assert_eq!(nodes, ["aa11", "bb22"]);
    let seqs = (c1.store.last_seq(), c2.store.last_seq());
    sync(&c1, &c2, PeerAccess::Office, PeerAccess::Office, now_ms());
    assert_eq!((c1.store.last_seq(), c2.store.last_seq()), seqs, "at rest");
    assert_verifies(&c1);
    assert_verifies(&c2);
}

/// Users never go to a technician's device, whatever it is granted, and
/// an office's user copy goes through the committer only as a merge: a
/// local revocation written meanwhile is not lost.
#[test]
fn users_never_reach_a_technician_and_a_copy_never_undoes_a_revocation() {
    let central = Side::new("central", true);
    let laptop = Side::new("laptop", false);
    central.store.put_user(&user("tech-1")).unwrap();
    create(&central, "wo-1", "tech-1");
    sync(
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
        now_ms(),
    );
    assert_eq!(
        laptop.store.doc_ids(None, 10).unwrap().len(),
        1,
        "work orders still sync"
    );
    assert_eq!(laptop.store.user("tech-1").unwrap(), None);
    assert!(laptop.store.collection("users").unwrap().is_none());
    // An older copy (version 1, not revoked) arriving after a revocation
    // here (version 2) leaves the revocation.
    let (mut revoked, version) = central.store.user_versioned("tech-1").unwrap().unwrap();
    revoked.revoked = true;
    central.store.put_user_if(&revoked, version).unwrap();
    let shared = SyncShared::new(central.store.clone());
    let mut adapter = SyncAdapter::new(shared);
    let copy = fieldsync_schemas::sync_frame::RecordCopy {
        collection: "users".into(),
        key: "tech-1".into(),
        version: 5,
        deleted: false,
        value: serde_json::to_vec(&user("tech-1")).unwrap(),
    };
    crate::sync::SyncStore::apply_records(&mut adapter, vec![copy]).unwrap();
    while let Some((_, pending)) = adapter.pending.pop_front() {
        pending.wait().unwrap();
    }
    let (now, version) = central.store.user_versioned("tech-1").unwrap().unwrap();
    assert!(now.revoked, "revoked wins");
    assert_eq!(version, 6, "newer than both, so it travels back");
    assert_verifies(&central);
}

/// Two sessions (two offices) store vouchers for one document at once:
/// the committer joins each to what is held, so neither office's are lost
/// (before, each session read the same old list and wrote its own join).
#[test]
fn vouchers_written_by_two_sessions_at_once_are_all_kept() {
    use crate::vouch::Signer;
    let laptop = Side::new("laptop", false);
    let one = Signer::derive(b"office one");
    let two = Signer::derive(b"office two");
    let head = |n: u8| automerge::ChangeHash([n; 32]);
    let mut a1 = SyncAdapter::new(laptop.shared.clone());
    let mut a2 = SyncAdapter::new(laptop.shared.clone());
    a1.put_vouchers("wo-1", &[one.vouch("wo-1", &head(1))])
        .unwrap();
    a2.put_vouchers("wo-1", &[two.vouch("wo-1", &head(2))])
        .unwrap();
    for adapter in [&mut a1, &mut a2] {
        while let Some((write, pending)) = adapter.pending.pop_front() {
            pending.wait().unwrap();
            adapter.durable(write);
        }
    }
    let held = a1.vouchers("wo-1").unwrap();
    assert_eq!(
        held,
        vec![one.vouch("wo-1", &head(1)), two.vouch("wo-1", &head(2))]
    );
    // Again: nothing doubles.
    a2.put_vouchers("wo-1", &[two.vouch("wo-1", &head(2))])
        .unwrap();
    while let Some((write, pending)) = a2.pending.pop_front() {
        pending.wait().unwrap();
        a2.durable(write);
    }
    assert_eq!(a1.vouchers("wo-1").unwrap(), held);
}

/// A laptop purges a work order (another central's word), takes it in again
/// without its own note, which only the central holds, and writes again:
/// as a new actor, or the new change would reuse the lost one's sequence
/// number and the central would refuse it on every later sync.
#[test]
fn a_document_taken_in_again_after_a_purge_is_written_as_a_new_actor() {
    let central = Side::new("central", true);
    let laptop = Side::new("laptop", false);
    create(&central, "wo-1", "tech-1");
    let now = now_ms();
    let (tech_1, office) = (tech_access("tech-1"), PeerAccess::Office);
    sync(&central, &laptop, tech_1.clone(), office.clone(), now);
    let before_note = central.store.doc_bytes("wo-1").unwrap().unwrap();
    let who = tech("tech-1");
    let actor_before = laptop.store.actor();
    laptop
        .store
        .update_work_order("wo-1", &who, &note("lost"), 3)
        .unwrap();
    sync(&central, &laptop, tech_1.clone(), office.clone(), now);
    laptop.store.submit_purge("wo-1").unwrap().wait().unwrap();
    assert_ne!(laptop.store.actor(), actor_before, "a purge, a new actor");
    let mut adapter = SyncAdapter::new(laptop.shared.clone());
    adapter.merge("wo-1", &before_note, now).unwrap();
    while let Some((write, pending)) = adapter.pending.pop_front() {
        pending.wait().unwrap();
        adapter.durable(write);
    }
    assert_eq!(
        laptop
            .store
            .work_order("wo-1")
            .unwrap()
            .unwrap()
            .notes
            .len(),
        0
    );
    laptop
        .store
        .update_work_order("wo-1", &who, &note("again"), 4)
        .unwrap();
    sync(&central, &laptop, tech_1, office, now);
    let a = central.store.work_order("wo-1").unwrap().unwrap();
    let b = laptop.store.work_order("wo-1").unwrap().unwrap();
    assert_eq!(a.heads, b.heads);
    assert_eq!(a.notes.len(), 2, "both notes, at both ends");
    assert_verifies(&central);
    assert_verifies(&laptop);
}

/// `touch` names a document again in the changelog at the same heads: a
/// device that finds itself ahead of an office's announce relies on it to
/// offer the document again after a cut (simulator, seed 153).
#[test]
fn a_touch_adds_a_durable_changelog_entry_and_changes_nothing_else() {
    let laptop = Side::new("laptop", false);
    create(&laptop, "wo-1", "tech-1");
    let before = laptop.store.work_order("wo-1").unwrap().unwrap();
    let last_seq = laptop.store.last_seq();
    let mut adapter = SyncAdapter::new(laptop.shared.clone());
    assert_eq!(adapter.touch("wo-404", now_ms()).unwrap(), None);
    adapter.touch("wo-1", now_ms()).unwrap().expect("queued");
    while let Some((queued, pending)) = adapter.pending.pop_front() {
        pending.wait().unwrap();
        adapter.durable(queued);
    }
    assert_eq!(laptop.store.last_seq(), last_seq + 1);
    let entries = adapter.changes_after(last_seq, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, "wo-1");
    let after = laptop.store.work_order("wo-1").unwrap().unwrap();
    assert_eq!(
        after.heads, before.heads,
        "the document itself is unchanged"
    );
    assert_eq!(
        entries[0]
            .heads
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>(),
        before.heads
    );
    assert_verifies(&laptop);
}
