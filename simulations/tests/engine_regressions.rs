//! Regression tests for engine bugs the simulator found, one scenario per
//! bug, each naming the seed that found it.
//!
//! Why scenarios and not only seeds: a seed replays exactly only on the
//! harness revision that ran it; as the workload changes the same seed
//! explores something else. Each test here drives the real engine
//! (`Session` over `MemStore`, frames encoded across the "wire") through the
//! exact ordering the trace showed, and fails on the engine as it was before
//! the fix. `tests/harness.rs` replays the seeds themselves.

use std::collections::VecDeque;

use automerge::ActorId;
use fieldsync_node::access::{self, PeerAccess};
use fieldsync_node::doc::Operation;
use fieldsync_node::sync::{MemStore, Session, SessionConfig, SessionError, SyncStore};
use fieldsync_schemas::sync_frame::Frame;
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, OperatorPatch, Priority, Role, Status};

const GRACE_MS: u64 = 5_000;

struct Node {
    name: &'static str,
    store: MemStore,
    /// How the other side sees this node.
    access: PeerAccess,
}

fn central() -> Node {
    Node {
        name: "c0",
        store: MemStore::new([1; 16], ActorId::from(vec![1; 16])),
        access: PeerAccess::Office,
    }
}

fn laptop(name: &'static str, user: &str, seed: u8) -> Node {
    Node {
        name,
        store: MemStore::new([seed; 16], ActorId::from(vec![seed; 16])),
        access: PeerAccess::User {
            user_id: user.into(),
            role: Role::Technician,
        },
    }
}

fn operator() -> Actor {
    Actor::new("op", Role::Operator)
}

fn new_order(id: &str, assignee: Option<&str>) -> NewWorkOrder {
    NewWorkOrder {
        id: Some(id.into()),
        number: format!("WO-{id}"),
        title: "Boiler".into(),
        description: "No hot water".into(),
        customer: Customer {
            name: "Ana".into(),
            address: "Rua A".into(),
            phone: "1".into(),
            document: String::new(),
        },
        priority: Priority::Normal,
        assignee: assignee.map(str::to_string),
        scheduled_for: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        initial_status: Status::Assigned,
        notes: vec![],
        materials: vec![],
    }
}

fn assign(to: Option<&str>) -> Operation {
    Operation::EditOperatorFields(OperatorPatch {
        assignee: Some(to.map(str::to_string)),
        ..Default::default()
    })
}

/// A note as a technician writes it. Its time is near the epoch: these
/// tests drive the engine with small clocks (`now_ms` of a few seconds),
/// and an item dated later than the receiver's clock is refused.
fn note(id: &str) -> Operation {
    Operation::AddNote {
        id: id.into(),
        at: "1970-01-01T00:00:01Z".into(),
        text: id.into(),
    }
}

/// One connection: side 0 is `a`, side 1 is `b`; `queues[i]` travels to i.
struct Conn {
    sessions: [Session; 2],
    queues: [VecDeque<Vec<u8>>; 2],
}

fn config(node: &Node) -> SessionConfig {
    let mut config = SessionConfig::new(node.name, node.access == PeerAccess::Office);
    config.grace_ms = GRACE_MS;
    config
}

fn connect(a: &Node, b: &Node) -> Conn {
    connect_with(a, b, |_| {})
}

/// [`connect`], with both sides' configuration changed by `tweak`.
fn connect_with(a: &Node, b: &Node, tweak: impl Fn(&mut SessionConfig)) -> Conn {
    let (mut config_a, mut config_b) = (config(a), config(b));
    tweak(&mut config_a);
    tweak(&mut config_b);
    let mut sa = Session::new(config_a, b.name, b.access.clone());
    let mut sb = Session::new(config_b, a.name, a.access.clone());
    sa.start(&a.store).unwrap();
    sb.start(&b.store).unwrap();
    let mut conn = Conn {
        sessions: [sa, sb],
        queues: [VecDeque::new(), VecDeque::new()],
    };
    collect(&mut conn);
    conn
}

/// Move every session's output frames onto the wire, encoded.
fn collect(conn: &mut Conn) {
    for side in 0..2 {
        while let Some(frame) = conn.sessions[side].poll_frame() {
            conn.queues[1 - side].push_back(frame.encode());
        }
    }
}

fn side_mut<'a>(a: &'a mut Node, b: &'a mut Node, side: usize) -> &'a mut Node {
    if side == 0 {
        a
    } else {
        b
    }
}

/// Deliver the next frame travelling to `side`.
fn deliver_one(
    conn: &mut Conn,
    a: &mut Node,
    b: &mut Node,
    side: usize,
    now_ms: u64,
) -> Result<bool, SessionError> {
    let Some(bytes) = conn.queues[side].pop_front() else {
        return Ok(false);
    };
    let node = side_mut(a, b, side);
    conn.sessions[side].handle_bytes(now_ms, &bytes, &mut node.store)?;
    collect(conn);
    Ok(true)
}

/// Flush `side`'s store and tell its session, as the real driver does.
fn flush(
    conn: &mut Conn,
    a: &mut Node,
    b: &mut Node,
    side: usize,
    now_ms: u64,
) -> Result<(), SessionError> {
    let node = side_mut(a, b, side);
    if let Some(write) = node.store.flush() {
        conn.sessions[side].handle_write_done(now_ms, write, &mut node.store)?;
        conn.sessions[side].handle_local_change(now_ms, &mut node.store)?;
    }
    collect(conn);
    Ok(())
}

fn fire_timers(
    conn: &mut Conn,
    a: &mut Node,
    b: &mut Node,
    now_ms: u64,
) -> Result<(), SessionError> {
    for side in 0..2 {
        if conn.sessions[side]
            .poll_timeout()
            .is_some_and(|t| t <= now_ms)
        {
            let node = side_mut(a, b, side);
            conn.sessions[side].handle_timeout(now_ms, &mut node.store)?;
        }
    }
    collect(conn);
    Ok(())
}

/// Deliver, flush and fire timers until nothing moves; both sides idle.
fn drive(conn: &mut Conn, a: &mut Node, b: &mut Node, now_ms: u64) -> Result<(), SessionError> {
    for _ in 0..10_000 {
        let mut moved = false;
        for side in 0..2 {
            while deliver_one(conn, a, b, side, now_ms)? {
                moved = true;
            }
        }
        for side in 0..2 {
            if side_mut(a, b, side).store.queued_writes() > 0 {
                flush(conn, a, b, side, now_ms)?;
                moved = true;
            }
        }
        fire_timers(conn, a, b, now_ms)?;
        moved |= !conn.queues[0].is_empty() || !conn.queues[1].is_empty();
        if !moved {
            assert!(conn.sessions[0].is_idle(&a.store), "{} is not idle", a.name);
            assert!(conn.sessions[1].is_idle(&b.store), "{} is not idle", b.name);
            return Ok(());
        }
    }
    panic!("did not settle");
}

/// u1, on laptop `l`, adds a note to document `id` (not flushed).
fn technician_note(l: &mut Node, id: &str, note_id: &str, now_ms: u64) {
    l.store
        .apply(
            id,
            &Actor::new("u1", Role::Technician),
            &note(note_id),
            now_ms,
        )
        .unwrap();
}

fn create(node: &mut Node, id: &str, assignee: Option<&str>, now_ms: u64) {
    node.store
        .create(&operator(), id, &new_order(id, assignee), now_ms)
        .unwrap();
    node.store.flush();
}

fn prime(c: &mut Node, l: &mut Node, now_ms: u64) {
    let mut conn = connect(c, l);
    drive(&mut conn, c, l, now_ms).unwrap();
}

/// Seed 1 (first sweep): a flush before the peer's hello made the session
/// announce from seq 0, then again from the checkpoint; the peer called
/// the second announce a protocol violation.
#[test]
fn write_done_before_hello_does_not_announce_twice() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    let mut conn = connect(&c, &l);
    // The laptop's hello is still on the wire when the central flushes.
    c.store
        .create(&operator(), "wo-2", &new_order("wo-2", Some("u1")), 2_000)
        .unwrap();
    flush(&mut conn, &mut c, &mut l, 0, 2_000).unwrap();
    drive(&mut conn, &mut c, &mut l, 2_000).expect("no protocol violation");
    assert_eq!(l.store.doc_ids(), ["wo-1", "wo-2"]);
}

/// Seed 0 (first sweep): reassigned twice within the grace period, the
/// first technician was never revoked (the rule keyed on the document's
/// latest previous assignee).
#[test]
fn second_reassignment_within_grace_still_revokes_the_first_technician() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 10_000)
        .unwrap();
    c.store
        .apply("wo-1", &operator(), &assign(Some("u3")), 11_000)
        .unwrap();
    c.store.flush();
    let later = 10_000 + GRACE_MS + 1;
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, later).unwrap();
    assert!(
        l.store.doc_ids().is_empty(),
        "u1's laptop still holds {:?}",
        l.store.doc_ids()
    );
}

/// Seed 2 (second sweep): the revocation timer was armed only at hello, so
/// a laptop connected through its reassignment kept the document.
#[test]
fn reassignment_during_a_session_arms_the_revocation_timer() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, 1_000).unwrap();
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 10_000)
        .unwrap();
    drive(&mut conn, &mut c, &mut l, 10_000).unwrap();
    assert_eq!(
        conn.sessions[0].poll_timeout(),
        Some(10_000 + GRACE_MS),
        "timer armed at the deadline"
    );
    drive(&mut conn, &mut c, &mut l, 10_000 + GRACE_MS).unwrap();
    assert!(l.store.doc_ids().is_empty(), "revoked at the deadline");
}

/// Seed 0 (second sweep): a laptop sent a change before it was durable,
/// crashed, and wrote again as the same actor: Automerge refused the
/// reused sequence number on every later sync ("duplicate seq").
#[test]
fn a_restarted_node_writes_as_a_new_actor() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    let tech = Actor::new("u1", Role::Technician);
    l.store
        .apply("wo-1", &tech, &note("unflushed"), 2_000)
        .unwrap();
    // The office changes the document; reconciling it carries the laptop's
    // live (unflushed) note to the central, which makes it durable.
    c.store
        .apply("wo-1", &operator(), &note("office"), 2_000)
        .unwrap();
    c.store.flush();
    let mut conn = connect(&c, &l);
    for _ in 0..50 {
        for side in [0, 1] {
            while deliver_one(&mut conn, &mut c, &mut l, side, 2_000).unwrap() {}
        }
        flush(&mut conn, &mut c, &mut l, 0, 2_000).unwrap();
    }
    assert!(c
        .store
        .work_order("wo-1")
        .unwrap()
        .view()
        .unwrap()
        .notes
        .iter()
        .any(|n| n.id == "unflushed"));
    let before = l.store.actor();
    l.store.crash();
    assert_ne!(l.store.actor(), before, "a new life, a new actor");
    l.store
        .apply("wo-1", &tech, &note("after restart"), 3_000)
        .unwrap();
    l.store.flush();
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, 3_000).expect("no duplicate sequence number");
    let notes = c
        .store
        .work_order("wo-1")
        .unwrap()
        .view()
        .unwrap()
        .notes
        .len();
    assert_eq!(notes, 3);
    assert_eq!(
        c.store.live_meta("wo-1").unwrap().heads,
        l.store.live_meta("wo-1").unwrap().heads
    );
}

/// Seed 18 (second sweep): a document purged and later received again
/// without the node's own changes; writing as the same actor reused their
/// sequence numbers. A purge must move the store to a new actor.
#[test]
fn a_purge_moves_the_store_to_a_new_actor() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    let before = l.store.actor();
    l.store.purge("wo-1").unwrap();
    assert_ne!(l.store.actor(), before);
}

/// Seed 1 (second sweep): the grace period ended between the central's
/// announce and the laptop's want; the central called the want a protocol
/// violation. It now answers `Rejected`, and the laptop's page settles.
#[test]
fn a_want_after_the_grace_period_is_answered_with_rejected() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    // Primed once: later documents are announced (a fresh laptop is primed
    // with whole documents, unannounced).
    create(&mut c, "wo-0", Some("u1"), 500);
    prime(&mut c, &mut l, 500);
    create(&mut c, "wo-1", Some("u1"), 1_000);
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 10_000)
        .unwrap();
    c.store.flush();
    // The document is too large to push with the announce (no push at
    // all here), so the laptop asks for it whole.
    let mut conn = connect_with(&c, &l, |config| config.push_doc_bytes_max = 0);
    // Hellos and the announce travel within the grace period...
    let within = 11_000;
    assert!(deliver_one(&mut conn, &mut c, &mut l, 1, within).unwrap()); // hello to the laptop
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, within).unwrap()); // hello to the central
    assert!(deliver_one(&mut conn, &mut c, &mut l, 1, within).unwrap()); // announce
    assert!(conn.queues[0]
        .iter()
        .any(|b| matches!(Frame::decode(b), Ok(Frame::Want { .. }))));
    // ...the want arrives after it.
    let after = 10_000 + GRACE_MS + 1;
    drive(&mut conn, &mut c, &mut l, after).expect("no protocol violation");
    assert_eq!(l.store.doc_ids(), ["wo-0"]);
}

/// Seed 14 (third sweep): reassigned away and again within the grace
/// period, the first technician's pending changes were refused ("not
/// assigned to you") before its own grace period had ended.
#[test]
fn pending_changes_are_accepted_within_the_users_own_grace_period() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    technician_note(&mut l, "wo-1", "late", 9_000);
    l.store.flush();
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 10_000)
        .unwrap();
    c.store
        .apply("wo-1", &operator(), &assign(Some("u3")), 10_500)
        .unwrap();
    c.store.flush();
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, 12_000).unwrap();
    let notes = c.store.work_order("wo-1").unwrap().view().unwrap().notes;
    assert!(
        notes.iter().any(|n| n.id == "late"),
        "the late note was accepted"
    );
}

/// Seed 103 (third sweep): a central served an unflushed assignment and
/// lost it in a crash; the laptop held a document the central never
/// durably gave it, with no revocation record to remove it.
#[test]
fn the_office_revokes_a_document_a_technician_offers_but_may_not_see() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", None, 1_000);
    // The laptop got the document with an assignment the central lost.
    let mut scratch = MemStore::new([9; 16], ActorId::from(vec![9; 16]));
    scratch
        .merge("wo-1", &c.store.doc_bytes("wo-1").unwrap().unwrap(), 1_000)
        .unwrap();
    scratch
        .apply("wo-1", &operator(), &assign(Some("u1")), 2_000)
        .unwrap();
    l.store
        .merge("wo-1", &scratch.doc_bytes("wo-1").unwrap().unwrap(), 2_000)
        .unwrap();
    l.store.flush();
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, 3_000).unwrap();
    assert!(l.store.doc_ids().is_empty(), "revoked");
}

/// Seed 262 (third sweep): a `Revoked` that arrived after the document was
/// assigned back and away again cleared the *new* revocation record; the
/// document was then re-sent within the new grace period and never
/// revoked.
#[test]
fn a_late_revoked_keeps_a_refreshed_revocation_record() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 2_000)
        .unwrap();
    c.store.flush();
    let at = 2_000 + GRACE_MS + 1;
    let mut conn = connect(&c, &l);
    // The central gets the laptop's hello and revokes; the laptop purges
    // and answers `Revoked`, which stays on the wire for now.
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, at).unwrap());
    for _ in 0..20 {
        deliver_one(&mut conn, &mut c, &mut l, 1, at).unwrap();
        flush(&mut conn, &mut c, &mut l, 1, at).unwrap();
        if conn.queues[0]
            .iter()
            .any(|b| matches!(Frame::decode(b), Ok(Frame::Revoked { .. })))
        {
            break;
        }
    }
    assert!(conn.queues[0]
        .iter()
        .any(|b| matches!(Frame::decode(b), Ok(Frame::Revoked { .. }))));
    // Meanwhile: assigned back, and away again.
    c.store
        .apply("wo-1", &operator(), &assign(Some("u1")), at)
        .unwrap();
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), at)
        .unwrap();
    c.store.flush();
    drive(&mut conn, &mut c, &mut l, at).unwrap();
    let records = c.store.revocations("u1", 10).unwrap();
    // The record holds the reassignment's instant as the document carries
    // it: the operation's time, in whole seconds.
    assert_eq!(
        records,
        vec![("wo-1".to_string(), at / 1000 * 1000)],
        "the refreshed record survives the late Revoked"
    );
}

/// Seed 11 (second sweep): a forged office-only value arriving while the
/// key was already in conflict (two centrals' operators wrote it
/// concurrently), and losing, leaves no diff patch; the field-rule check
/// missed it and it stayed in the central's conflicts.
#[test]
fn a_forged_value_that_loses_a_conflict_is_still_a_violation() {
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ReadDoc, Value, ROOT};
    let mut c = central();
    create(&mut c, "wo-1", Some("u1"), 1_000);
    let base = c.store.doc("wo-1").unwrap().unwrap();
    let write = |doc: &mut Automerge, name: &str| {
        let customer = match doc.get(ROOT, "customer").unwrap() {
            Some((Value::Object(_), id)) => id,
            _ => panic!("customer map"),
        };
        let mut tx = doc.transaction();
        tx.put(&customer, "name", name).unwrap();
        tx.commit();
    };
    // Try every actor order: in some of them the forged value loses.
    let mut missed = Vec::new();
    for (a, b, t) in [(100u8, 200u8, 3u8), (3, 200, 100), (3, 100, 200)] {
        let mut office_a = base.fork().with_actor(ActorId::from(vec![a; 16]));
        let mut office_b = base.fork().with_actor(ActorId::from(vec![b; 16]));
        let mut tech = base.fork().with_actor(ActorId::from(vec![t; 16]));
        write(&mut office_a, "Office A");
        write(&mut office_b, "Office B");
        write(&mut tech, "forged");
        office_a.merge(&mut office_b).unwrap();
        let before = office_a.get_heads();
        let mut after = office_a.clone();
        after.merge(&mut tech).unwrap();
        let violations = access::check_changes(Role::Technician, &after, &before);
        if !violations.iter().any(|v| v.key == "customer") {
            missed.push((a, b, t));
        }
    }
    assert!(
        missed.is_empty(),
        "forged customer.name not flagged for actors {missed:?}"
    );
}

/// Seed 4528 (10,000-seed sweep): the office refused and revoked a
/// document a laptop offered but may not see; the connection died before
/// the `Revoke` arrived, while the office's checkpoint for the laptop had
/// already moved past the document, so the laptop never offered it again
/// and kept it. The office's page now waits for the laptop's `Revoked`.
#[test]
fn a_revoke_lost_with_the_connection_is_sent_again() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", None, 1_000);
    let mut scratch = MemStore::new([9; 16], ActorId::from(vec![9; 16]));
    scratch
        .merge("wo-1", &c.store.doc_bytes("wo-1").unwrap().unwrap(), 1_000)
        .unwrap();
    scratch
        .apply("wo-1", &operator(), &assign(Some("u1")), 2_000)
        .unwrap();
    l.store
        .merge("wo-1", &scratch.doc_bytes("wo-1").unwrap().unwrap(), 2_000)
        .unwrap();
    l.store.flush();
    let mut conn = connect(&c, &l);
    assert!(deliver_one(&mut conn, &mut c, &mut l, 1, 3_000).unwrap()); // hello to the laptop
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, 3_000).unwrap()); // hello to the central
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, 3_000).unwrap()); // the laptop's holding digest
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, 3_000).unwrap()); // the laptop's announce
    assert!(conn.queues[1]
        .iter()
        .any(|b| matches!(Frame::decode(b), Ok(Frame::Revoke { .. }))));
    flush(&mut conn, &mut c, &mut l, 0, 3_000).unwrap();
    // The connection dies with the `Revoke` on the wire.
    drop(conn);
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, 4_000).unwrap();
    assert!(
        l.store.doc_ids().is_empty(),
        "revoked on the next connection"
    );
}

/// Seeds 1786 and 7249 (10,000-seed sweep): the office revoked a document
/// on a reassignment that was not durable yet, then crashed and lost it;
/// the document was the laptop's user's again, but the laptop had purged
/// it and its checkpoint was past it. Revokes now rest on durable state.
#[test]
fn no_revoke_rests_on_a_reassignment_a_crash_can_undo() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 10_000)
        .unwrap();
    // Past the grace period, connected, the central's reassignment still
    // unflushed: the laptop flushes, the central does not.
    let at = 10_000 + GRACE_MS + 1;
    let mut conn = connect(&c, &l);
    for _ in 0..20 {
        for side in [0, 1] {
            while deliver_one(&mut conn, &mut c, &mut l, side, at).unwrap() {}
        }
        flush(&mut conn, &mut c, &mut l, 1, at).unwrap();
        fire_timers(&mut conn, &mut c, &mut l, at).unwrap();
    }
    c.store.crash();
    drop(conn);
    assert_eq!(
        c.store.work_order("wo-1").unwrap().assignee().as_deref(),
        Some("u1")
    );
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, at).unwrap();
    assert_eq!(
        l.store.doc_ids(),
        ["wo-1"],
        "u1's document is still on u1's laptop"
    );
}

/// Seeds 3101, 3102 (10,000-seed sweep) and 1756: a sync message can
/// carry a change whose dependency comes only in a later message (a bloom
/// filter false positive, or two conversations for one document crossing).
/// Automerge queues such a change, but the engine started every message
/// from the stored document, so the queue was lost; the sender never sends
/// a hash twice, and the two sides asked and answered for ever.
#[test]
fn a_change_that_arrives_before_its_dependency_is_kept_until_it_comes() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    let base = c.store.doc("wo-1").unwrap().unwrap().get_heads();
    c.store
        .apply("wo-1", &operator(), &note("first"), 2_000)
        .unwrap();
    c.store.flush();
    let middle = c.store.doc("wo-1").unwrap().unwrap().get_heads();
    c.store
        .apply("wo-1", &operator(), &note("second"), 2_000)
        .unwrap();
    c.store.flush();
    let doc = c.store.doc("wo-1").unwrap().unwrap();
    let first = doc.save_after(&base);
    let first = &first[..first.len() - doc.save_after(&middle).len()];
    let second = doc.save_after(&middle);

    let mut conn = connect(&c, &l);
    // Hellos only; the central's announce stays on the wire.
    deliver_one(&mut conn, &mut c, &mut l, 1, 3_000).unwrap();
    let message = |changes: &[u8]| {
        let message = automerge::sync::Message {
            heads: doc.get_heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: changes.to_vec().into(),
            version: automerge::sync::MessageVersion::V1,
            flags: None,
        };
        Frame::DocSync {
            id: "wo-1".into(),
            message: message.encode(),
        }
    };
    // The later change first, then its dependency.
    for changes in [&second[..], first] {
        conn.sessions[1]
            .handle_frame(3_000, message(changes), &mut l.store)
            .unwrap();
    }
    l.store.flush();
    assert_eq!(
        l.store.doc("wo-1").unwrap().unwrap().get_heads(),
        doc.get_heads(),
        "both changes applied once the dependency arrived"
    );
}

/// Seeds 3894 and 8109 (10,000-seed sweep): a laptop purged a revoked
/// document, and before that purge was durable it asked for the document
/// whole again (assigned back, then away within moments). The office sent
/// it, as the previous assignee's grace period allowed; the laptop's
/// `Revoked` for the earlier purge then cleared the revocation record of
/// the new copy, which the laptop kept for good. Sending a whole document
/// now forgets the earlier revoke, so the grace timer revokes the new copy.
#[test]
fn a_late_revoked_does_not_clear_the_revocation_of_a_copy_sent_since() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 2_000)
        .unwrap();
    c.store.flush();
    let at = 2_000 + GRACE_MS + 1;
    let mut conn = connect(&c, &l);
    // The laptop takes the central's revoke; its purge stays unflushed.
    for _ in 0..5 {
        for side in [0, 1] {
            while deliver_one(&mut conn, &mut c, &mut l, side, at).unwrap() {}
        }
        flush(&mut conn, &mut c, &mut l, 0, at).unwrap();
    }
    assert!(l.store.doc_ids().is_empty(), "purged (not yet durably)");
    assert!(l.store.queued_writes() > 0, "the purge is not flushed");
    // Assigned back: the central announces it, the laptop wants it whole.
    c.store
        .apply("wo-1", &operator(), &assign(Some("u1")), at)
        .unwrap();
    flush(&mut conn, &mut c, &mut l, 0, at).unwrap();
    while deliver_one(&mut conn, &mut c, &mut l, 1, at).unwrap() {}
    assert!(conn.queues[0]
        .iter()
        .any(|b| matches!(Frame::decode(b), Ok(Frame::Want { .. }))));
    // And away again before the want arrives.
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), at)
        .unwrap();
    flush(&mut conn, &mut c, &mut l, 0, at).unwrap();
    while deliver_one(&mut conn, &mut c, &mut l, 0, at).unwrap() {}
    // Everything else happens after the new grace period.
    drive(&mut conn, &mut c, &mut l, at + GRACE_MS + 1).unwrap();
    drive(&mut conn, &mut c, &mut l, at + 2 * GRACE_MS).unwrap();
    assert!(
        l.store.doc_ids().is_empty(),
        "u2's document left u1's laptop"
    );
}

/// Seeds 3563 and 6364 (10,000-seed sweep, protocol 2): the office left a
/// document out of a laptop's page (and refused it in a want) because it
/// was reassigned away past the grace period, but that reassignment was
/// not durable; a crash undid it, the document was the laptop's user's
/// again, and the laptop's checkpoint was already past it. Withholding now
/// also asks the durable state.
#[test]
fn nothing_is_withheld_on_a_reassignment_a_crash_can_undo() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-0", Some("u1"), 500);
    prime(&mut c, &mut l, 500);
    create(&mut c, "wo-1", Some("u1"), 1_000);
    // Reassigned away, not flushed; the session runs after the grace period.
    c.store
        .apply("wo-1", &operator(), &assign(Some("u2")), 2_000)
        .unwrap();
    let at = 2_000 + GRACE_MS + 1;
    let mut conn = connect(&c, &l);
    for _ in 0..20 {
        for side in [0, 1] {
            while deliver_one(&mut conn, &mut c, &mut l, side, at).unwrap() {}
        }
        flush(&mut conn, &mut c, &mut l, 1, at).unwrap();
    }
    c.store.crash();
    drop(conn);
    assert_eq!(
        c.store.work_order("wo-1").unwrap().assignee().as_deref(),
        Some("u1"),
        "the crash undid the reassignment"
    );
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, at).unwrap();
    assert_eq!(
        l.store.doc_ids(),
        ["wo-0", "wo-1"],
        "u1's document reached u1's laptop"
    );
}

/// Seed 4726 (10,000-seed sweep, protocol 3): the central revoked a
/// document (its reassignment away durable and past the grace period),
/// assigned it back, and only then took in the laptop's announce of it,
/// made before the laptop purged it. Visible again, so the page waited for
/// the laptop's changes; the purge destroyed them, the laptop (holding a
/// new copy by then) answered the central's sync messages without them,
/// and the session never went idle. The laptop's `Revoked` now settles
/// every page waiting on the document. (Reaching that order of frames
/// takes a fresh laptop primed over several pages; here the `Revoked` is
/// handed to the central directly.)
#[test]
fn a_revoked_settles_the_pages_waiting_for_the_destroyed_copy() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    technician_note(&mut l, "wo-1", "destroyed", 1_500);
    l.store.flush();
    let mut conn = connect(&c, &l);
    assert!(deliver_one(&mut conn, &mut c, &mut l, 1, 2_000).unwrap()); // hello to the laptop
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, 2_000).unwrap()); // hello to the central
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, 2_000).unwrap()); // the laptop's holding digest
    assert!(deliver_one(&mut conn, &mut c, &mut l, 0, 2_000).unwrap()); // the laptop's announce
    assert_eq!(conn.sessions[0].progress().pending_in, 1);
    // The laptop purged its copy, note and all.
    let revoked = Frame::Revoked {
        ids: vec!["wo-1".into()],
    };
    conn.sessions[0]
        .handle_bytes(2_000, &revoked.encode(), &mut c.store)
        .expect("a purge confirmation");
    flush(&mut conn, &mut c, &mut l, 0, 2_000).unwrap();
    assert_eq!(
        conn.sessions[0].progress().pending_in,
        0,
        "the page no longer waits for the destroyed note"
    );
    assert_eq!(
        conn.sessions[0].progress().our_checkpoint_seq,
        l.store.log_len() as u64
    );
}

/// What lets the central settle on `Revoked` (above): a laptop announces
/// nothing written after a purge before the purge's `Revoked`, even when
/// its driver hears of the new seqs before it hears the purge is durable
/// (the QUIC driver waits on both at once).
#[test]
fn a_laptop_announces_nothing_newer_than_a_purge_before_its_revoked() {
    let (mut c, mut l) = (central(), laptop("t1", "u1", 2));
    create(&mut c, "wo-1", Some("u1"), 1_000);
    create(&mut c, "wo-2", Some("u1"), 1_000);
    prime(&mut c, &mut l, 1_000);
    let mut conn = connect(&c, &l);
    drive(&mut conn, &mut c, &mut l, 2_000).unwrap();
    let revoke = Frame::Revoke {
        ids: vec!["wo-1".into()],
    };
    conn.sessions[1]
        .handle_bytes(2_000, &revoke.encode(), &mut l.store)
        .unwrap();
    technician_note(&mut l, "wo-2", "after", 2_000);
    let write = l.store.flush().expect("the purge and the note");
    conn.sessions[1]
        .handle_local_change(2_000, &mut l.store)
        .unwrap();
    conn.sessions[1]
        .handle_write_done(2_000, write, &mut l.store)
        .unwrap();
    let mut kinds = Vec::new();
    while let Some(frame) = conn.sessions[1].poll_frame() {
        kinds.push(frame.kind());
    }
    let revoked = kinds.iter().position(|k| *k == "revoked");
    let announce = kinds.iter().position(|k| *k == "announce");
    assert!(
        revoked.is_some() && announce.is_some() && revoked < announce,
        "{kinds:?}"
    );
}

/// Seed 1974 (and 2337, 2779, 3676, 4162): a record's newer version was
/// queued but not flushed when the office paged past the older version's
/// entry. Skipping the older copy let the laptop's checkpoint pass it; the
/// office then crashed, the newer version was lost, and the laptop never
/// got the record. Sending the live copy instead would hand the laptop a
/// version the crash takes back. The page must end before such an entry
/// until the newer version is durable or lost.
#[test]
fn a_record_page_never_passes_a_version_a_crash_can_take_back() {
    let mut c0 = central();
    let mut t1 = laptop("t1", "u1", 2);
    c0.store.set_read_grants(
        "materials",
        access::ReadGrants {
            readers: vec![Role::Technician],
        },
    );
    c0.store
        .write_record("materials", "k7", Some(b"{\"n\":1}".to_vec()))
        .unwrap();
    c0.store.flush();
    // The delete (version 2) is queued, not flushed.
    c0.store.write_record("materials", "k7", None).unwrap();
    let mut conn = connect(&c0, &t1);
    // Everything travels and the laptop flushes; the office does not.
    for _ in 0..100 {
        let mut moved = false;
        for side in 0..2 {
            while deliver_one(&mut conn, &mut c0, &mut t1, side, 1_000).unwrap() {
                moved = true;
            }
        }
        flush(&mut conn, &mut c0, &mut t1, 1, 1_000).unwrap();
        if !moved {
            break;
        }
    }
    let sent: Vec<u64> = t1.store.records().map(|r| r.version).collect();
    assert!(
        sent.is_empty(),
        "nothing of k7 went before it was settled: {sent:?}"
    );
    // The office crashes: the delete is lost, version 1 stands.
    c0.store.crash();
    let mut conn = connect(&c0, &t1);
    drive(&mut conn, &mut c0, &mut t1, 2_000).unwrap();
    let held: Vec<(u64, bool)> = t1.store.records().map(|r| (r.version, r.deleted)).collect();
    assert_eq!(
        held,
        [(1, false)],
        "the laptop holds the version the office kept"
    );
}
