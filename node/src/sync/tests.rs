//! Two engines wired back to back in memory, time simulated.

use automerge::ActorId;
use fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX;
use fieldsync_schemas::sync_frame::{Frame, RecordCopy, PROTOCOL_VERSION};
use fieldsync_schemas::{Actor, OperatorPatch, Role, Status};

use super::session::{compress_batch, HIDDEN_REASON};
use super::*;
use crate::access::{PeerAccess, ReadGrants};
use crate::doc::tests::sample;
use crate::doc::Operation;

struct Node {
    id: String,
    store: MemStore,
    office: bool,
}

impl Node {
    fn new(id: &str, seed: u8, office: bool) -> Node {
        Node {
            id: id.into(),
            store: MemStore::new([seed; 16], ActorId::from(vec![seed; 16])),
            office,
        }
    }
}

fn operator() -> Actor {
    Actor::new("op", Role::Operator)
}

fn tech(id: &str) -> Actor {
    Actor::new(id, Role::Technician)
}

/// A connected pair: `a` sees `b` as `b_access` and vice versa.
struct Link {
    a: Session,
    b: Session,
    frames: u64,
    bytes: u64,
    /// Bytes of Automerge sync messages `a` sent.
    a_sync_bytes: u64,
}

fn connect(a: &Node, b: &Node, b_access: PeerAccess, a_access: PeerAccess) -> Link {
    connect_with(
        SessionConfig::new(&a.id, a.office),
        a,
        b,
        b_access,
        a_access,
    )
}

/// As [`connect`], with `a`'s session configured by the caller.
fn connect_with(
    a_config: SessionConfig,
    a: &Node,
    b: &Node,
    b_access: PeerAccess,
    a_access: PeerAccess,
) -> Link {
    let mut sa = Session::new(a_config, &b.id, b_access);
    let mut sb = Session::new(SessionConfig::new(&b.id, b.office), &a.id, a_access);
    sa.start(&a.store).unwrap();
    sb.start(&b.store).unwrap();
    Link {
        a: sa,
        b: sb,
        frames: 0,
        bytes: 0,
        a_sync_bytes: 0,
    }
}

/// Move frames both ways and flush both stores until nothing moves.
fn drive(link: &mut Link, a: &mut Node, b: &mut Node, now_ms: u64) {
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(frame) = link.a.poll_frame() {
            if let Frame::DocSync { message, .. } = &frame {
                link.a_sync_bytes += message.len() as u64;
            }
            let bytes = frame.encode();
            link.frames += 1;
            link.bytes += bytes.len() as u64;
            link.b.handle_bytes(now_ms, &bytes, &mut b.store).unwrap();
            moved = true;
        }
        while let Some(frame) = link.b.poll_frame() {
            let bytes = frame.encode();
            link.frames += 1;
            link.bytes += bytes.len() as u64;
            link.a.handle_bytes(now_ms, &bytes, &mut a.store).unwrap();
            moved = true;
        }
        if let Some(write) = a.store.flush() {
            link.a
                .handle_write_done(now_ms, write, &mut a.store)
                .unwrap();
            link.a.handle_local_change(now_ms, &mut a.store).unwrap();
            moved = true;
        }
        if let Some(write) = b.store.flush() {
            link.b
                .handle_write_done(now_ms, write, &mut b.store)
                .unwrap();
            link.b.handle_local_change(now_ms, &mut b.store).unwrap();
            moved = true;
        }
        if !moved {
            assert!(
                link.a.is_idle(&a.store) && link.b.is_idle(&b.store),
                "stalled with work in flight"
            );
            return;
        }
    }
    panic!("did not settle");
}

fn create(node: &mut Node, id: &str, assignee: &str) {
    let mut new = sample(assignee);
    new.id = Some(id.into());
    node.store.create(&operator(), id, &new, 1_000).unwrap();
    node.store.flush();
}

/// The office reassigns `id` to `to` at `now_ms`, durably.
fn reassign(node: &mut Node, id: &str, to: &str, now_ms: u64) {
    let op = Operation::EditOperatorFields(OperatorPatch {
        assignee: Some(Some(to.into())),
        ..Default::default()
    });
    node.store.apply(id, &operator(), &op, now_ms).unwrap();
    node.store.flush();
}

/// How many notes `node`'s copy of `id` holds.
fn notes(node: &Node, id: &str) -> usize {
    node.store
        .work_order(id)
        .unwrap()
        .view()
        .unwrap()
        .notes
        .len()
}

fn tech_access(user: &str) -> PeerAccess {
    PeerAccess::User {
        user_id: user.into(),
        role: Role::Technician,
    }
}

fn note(text: &str) -> Operation {
    Operation::AddNote {
        id: text.into(),
        at: "1970-01-01T00:00:01Z".into(),
        text: text.into(),
    }
}

#[test]
fn prime_sends_only_assigned_documents() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..50 {
        create(
            &mut central,
            &format!("wo-{i}"),
            if i % 2 == 0 { "tech-1" } else { "tech-2" },
        );
    }
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    assert_eq!(laptop.store.doc_ids().len(), 25);
    assert!(laptop.store.doc_ids().iter().all(|id| id
        .trim_start_matches("wo-")
        .parse::<u32>()
        .unwrap()
        % 2
        == 0));
    for id in laptop.store.doc_ids() {
        assert_eq!(
            laptop.store.durable_heads(&id),
            central.store.durable_heads(&id)
        );
    }
    assert_eq!(laptop.store.durable_checkpoint("central").unwrap().seq, 50);
}

/// Frame kinds one side sends, in order, for a connection driven to idle.
fn kinds_sent_by_central(
    central: &mut Node,
    laptop: &mut Node,
    central_version_max: u16,
) -> Vec<&'static str> {
    kinds_sent(central, laptop, central_version_max).0
}

/// Frame kinds each side sends (central's, laptop's), in order, for a
/// connection driven to idle.
fn kinds_sent(
    central: &mut Node,
    laptop: &mut Node,
    central_version_max: u16,
) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut config = SessionConfig::new(&central.id, true);
    config.protocol_version_max = central_version_max;
    // The only office: one beside another refuses devices before 6.
    config.sole_office = true;
    let mut c = Session::new(config, &laptop.id, tech_access("tech-1"));
    let mut l = Session::new(
        SessionConfig::new(&laptop.id, false),
        &central.id,
        PeerAccess::Office,
    );
    c.start(&central.store).unwrap();
    l.start(&laptop.store).unwrap();
    let (mut kinds, mut laptop_kinds) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(frame) = c.poll_frame() {
            kinds.push(frame.kind());
            l.handle_bytes(2_000, &frame.encode(), &mut laptop.store)
                .unwrap();
            moved = true;
        }
        while let Some(frame) = l.poll_frame() {
            laptop_kinds.push(frame.kind());
            c.handle_bytes(2_000, &frame.encode(), &mut central.store)
                .unwrap();
            moved = true;
        }
        for (session, store) in [(&mut c, &mut central.store), (&mut l, &mut laptop.store)] {
            if let Some(write) = store.flush() {
                session.handle_write_done(2_000, write, store).unwrap();
                session.handle_local_change(2_000, store).unwrap();
                moved = true;
            }
        }
        if !moved {
            assert!(c.is_idle(&central.store) && l.is_idle(&laptop.store));
            return (kinds, laptop_kinds);
        }
    }
    panic!("did not settle");
}

#[test]
fn an_office_primes_a_fresh_peer_with_whole_documents_unannounced() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..30 {
        create(&mut central, &format!("wo-{i}"), "tech-1");
    }
    let kinds = kinds_sent_by_central(&mut central, &mut laptop, PROTOCOL_VERSION);
    assert!(kinds.contains(&"prime"), "{kinds:?}");
    assert!(
        !kinds.contains(&"announce") && !kinds.contains(&"doc_batch"),
        "{kinds:?}"
    );
    assert_eq!(laptop.store.doc_ids().len(), 30);
    assert_eq!(laptop.store.durable_checkpoint("central").unwrap().seq, 30);
    // Later changes are announced, not primed: the laptop has the rest.
    central
        .store
        .apply("wo-3", &operator(), &note("office"), 3_000)
        .unwrap();
    central.store.flush();
    let kinds = kinds_sent_by_central(&mut central, &mut laptop, PROTOCOL_VERSION);
    assert!(!kinds.contains(&"prime"), "{kinds:?}");
    assert_eq!(
        laptop.store.durable_heads("wo-3"),
        central.store.durable_heads("wo-3")
    );
}

#[test]
fn a_version_1_peer_is_primed_with_announce_and_want() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..5 {
        create(&mut central, &format!("wo-{i}"), "tech-1");
    }
    let kinds = kinds_sent_by_central(&mut central, &mut laptop, 1);
    assert!(!kinds.contains(&"prime"), "{kinds:?}");
    assert!(kinds.contains(&"announce") && kinds.contains(&"doc_batch"));
    assert_eq!(laptop.store.doc_ids().len(), 5);
}

/// A central holding `count` work orders of tech-1 (`wo-0`...), and
/// tech-1's laptop primed with them.
fn primed_pair(count: usize, central_version_max: u16) -> (Node, Node) {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..count {
        create(&mut central, &format!("wo-{i}"), "tech-1");
    }
    kinds_sent_by_central(&mut central, &mut laptop, central_version_max);
    (central, laptop)
}

fn hello_from(node: &Node, version_max: u16) -> Frame {
    Frame::Hello {
        version_min: 1,
        version_max,
        node_id: node.id.clone(),
        epoch: node.store.epoch(),
        your_checkpoint: None,
    }
}

/// `me`'s session with `peer` (seen as `access`), past the hellos, its own
/// frames drained.
fn session_past_hello(me: &mut Node, peer: &Node, access: PeerAccess, version: u16) -> Session {
    let mut config = SessionConfig::new(&me.id, me.office);
    // An office beside another refuses devices before protocol 6.
    config.sole_office = version < fieldsync_schemas::sync_frame::PROTOCOL_VERSION_VOUCH;
    let mut session = Session::new(config, &peer.id, access);
    session.start(&me.store).unwrap();
    session
        .handle_frame(0, hello_from(peer, version), &mut me.store)
        .unwrap();
    while session.poll_frame().is_some() {}
    session
}

fn assert_same_durable_docs(central: &Node, laptop: &Node) {
    for id in laptop.store.doc_ids() {
        assert_eq!(
            laptop.store.durable_heads(&id),
            central.store.durable_heads(&id),
            "{id}"
        );
    }
}

#[test]
fn an_office_pushes_its_edits_with_the_announce() {
    let (mut central, mut laptop) = primed_pair(20, PROTOCOL_VERSION);
    // Two writes on each of three documents, and a new document.
    for i in [2, 9, 17] {
        let id = format!("wo-{i}");
        central
            .store
            .apply(&id, &operator(), &note("office"), 3_000)
            .unwrap();
        central
            .store
            .apply(&id, &operator(), &note("again"), 3_000)
            .unwrap();
    }
    create(&mut central, "wo-new", "tech-1");
    central.store.flush();
    let (central_kinds, laptop_kinds) = kinds_sent(&mut central, &mut laptop, PROTOCOL_VERSION);
    // One frame carries it all: no want, no whole document, no sync
    // messages either way.
    assert!(
        central_kinds.contains(&"announce_push"),
        "{central_kinds:?}"
    );
    for kind in ["doc_sync", "want", "doc_batch"] {
        assert!(
            !central_kinds.contains(&kind) && !laptop_kinds.contains(&kind),
            "{central_kinds:?} {laptop_kinds:?}"
        );
    }
    assert_eq!(laptop.store.doc_ids().len(), 21);
    assert_same_durable_docs(&central, &laptop);
    assert_eq!(
        laptop.store.durable_checkpoint("central").unwrap().seq,
        central.store.log_len() as u64
    );
}

#[test]
fn a_version_2_peer_gets_edits_through_the_sync_protocol() {
    let (mut central, mut laptop) = primed_pair(5, 2);
    central
        .store
        .apply("wo-3", &operator(), &note("office"), 3_000)
        .unwrap();
    central.store.flush();
    let (central_kinds, laptop_kinds) = kinds_sent(&mut central, &mut laptop, 2);
    assert!(
        !central_kinds.contains(&"announce_push"),
        "{central_kinds:?}"
    );
    assert!(central_kinds.contains(&"doc_sync") && laptop_kinds.contains(&"doc_sync"));
    assert_same_durable_docs(&central, &laptop);
}

#[test]
fn a_push_that_guessed_wrong_falls_back_to_the_sync_protocol() {
    let (mut central, mut laptop) = primed_pair(2, PROTOCOL_VERSION);
    // One write that merges two chained changes from elsewhere: the push
    // guesses the laptop holds the first of them, which it does not.
    let mut other = central.store.live_doc("wo-1").unwrap().clone();
    other.set_actor(ActorId::from(vec![9; 16]));
    let before = other.get_heads();
    for text in ["first", "second"] {
        let mut tx = other.transaction();
        automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "description", text)
            .unwrap();
        tx.commit();
    }
    central
        .store
        .merge("wo-1", &other.save_after(&before), 3_000)
        .unwrap();
    central.store.flush();
    let (central_kinds, laptop_kinds) = kinds_sent(&mut central, &mut laptop, PROTOCOL_VERSION);
    assert!(
        central_kinds.contains(&"announce_push"),
        "{central_kinds:?}"
    );
    assert!(laptop_kinds.contains(&"doc_sync"), "{laptop_kinds:?}");
    assert_same_durable_docs(&central, &laptop);
}

#[test]
fn a_push_from_a_technician_or_a_bad_push_closes_the_session() {
    let (mut central, mut laptop) = primed_pair(2, PROTOCOL_VERSION);
    // Heads the laptop lacks, past its checkpoint: the push is applied.
    let push = |compressed: Vec<u8>| Frame::AnnouncePush {
        page: 0,
        upto_seq: 3,
        docs: vec![fieldsync_schemas::sync_frame::DocHeads {
            id: "wo-1".into(),
            heads: vec![[7; 32]],
        }],
        compressed,
    };
    let pushed = |chunks: Vec<Vec<u8>>| compress_batch(&chunks, 3);
    // A technician's laptop may not push changes: they skip the field rules.
    let mut session = session_past_hello(
        &mut central,
        &laptop,
        tech_access("tech-1"),
        PROTOCOL_VERSION,
    );
    let error = session
        .handle_frame(0, push(pushed(vec![Vec::new()])), &mut central.store)
        .unwrap_err();
    assert!(error.to_string().contains("only an office"), "{error}");
    // From an office: garbage, a count that does not match, changes that
    // are not Automerge, a push in version 2.
    let before = laptop.store.durable_heads("wo-1");
    for (version, compressed, why) in [
        (PROTOCOL_VERSION, vec![1, 2, 3], "undecodable"),
        (
            PROTOCOL_VERSION,
            pushed(vec![Vec::new(), Vec::new()]),
            "do not match",
        ),
        (2, pushed(vec![Vec::new()]), "only an office"),
    ] {
        let mut session = session_past_hello(&mut laptop, &central, PeerAccess::Office, version);
        let error = session
            .handle_frame(0, push(compressed), &mut laptop.store)
            .unwrap_err();
        assert!(error.to_string().contains(why), "{why}: {error}");
        laptop.store.flush();
        assert_eq!(laptop.store.durable_heads("wo-1"), before);
    }
    // Changes that are not Automerge are skipped (Automerge ignores an
    // unparsable tail): nothing merged, and the laptop reconciles instead.
    let mut session =
        session_past_hello(&mut laptop, &central, PeerAccess::Office, PROTOCOL_VERSION);
    session
        .handle_frame(
            0,
            push(pushed(vec![vec![0x85, 0x6f, 0x4a, 0x83, 1, 2]])),
            &mut laptop.store,
        )
        .unwrap();
    assert!(matches!(session.poll_frame(), Some(Frame::DocSync { id, .. }) if id == "wo-1"));
    laptop.store.flush();
    assert_eq!(laptop.store.durable_heads("wo-1"), before);
}

#[test]
fn a_prime_from_a_technician_or_with_garbage_closes_the_session() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    let prime = |compressed: Vec<u8>| Frame::Prime {
        page: 0,
        upto_seq: 1,
        compressed,
    };
    let batch = |docs: &[(String, Vec<u8>)]| compress_batch(docs, 3);
    // A technician's laptop may not push documents unannounced.
    let mut session = session_past_hello(
        &mut central,
        &laptop,
        tech_access("tech-1"),
        PROTOCOL_VERSION,
    );
    assert!(session
        .handle_frame(0, prime(batch(&[])), &mut central.store)
        .is_err());
    // From an office: garbage, a bad id, a document that is not one.
    for compressed in [
        vec![1, 2, 3],
        batch(&[("bad id!".to_string(), Vec::new())]),
        batch(&[("wo-1".to_string(), vec![0x85, 0x6f, 0x4a, 0x83])]),
    ] {
        let mut session =
            session_past_hello(&mut laptop, &central, PeerAccess::Office, PROTOCOL_VERSION);
        assert!(session
            .handle_frame(0, prime(compressed), &mut laptop.store)
            .is_err());
        assert!(laptop.store.doc_ids().is_empty());
    }
}

#[test]
fn reconnect_costs_follow_changes_and_unchanged_costs_one_round_trip() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..200 {
        create(&mut central, &format!("wo-{i}"), "tech-1");
    }
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    // Nothing changed: hello each way, one empty-free exchange.
    let mut idle = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut idle, &mut central, &mut laptop, 3_000);
    assert_eq!(
        idle.frames, 3,
        "an unchanged peer costs the two hellos and the device's holding digest"
    );
    // Edit 3 documents at the central.
    for i in [5, 50, 150] {
        central
            .store
            .apply(&format!("wo-{i}"), &operator(), &note("office"), 4_000)
            .unwrap();
    }
    central.store.flush();
    let mut again = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut again, &mut central, &mut laptop, 5_000);
    assert!(
        again.frames < 20,
        "{} frames for 3 changed documents",
        again.frames
    );
    for i in [5, 50, 150] {
        let id = format!("wo-{i}");
        assert_eq!(notes(&laptop, &id), 1);
    }
}

#[test]
fn concurrent_offline_edits_on_both_sides_merge() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-1", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    // Offline: both edit.
    central
        .store
        .apply("wo-1", &operator(), &note("from office"), 3_000)
        .unwrap();
    central
        .store
        .apply(
            "wo-1",
            &operator(),
            &Operation::EditOperatorFields(OperatorPatch {
                title: Some("New title".into()),
                ..Default::default()
            }),
            3_000,
        )
        .unwrap();
    laptop
        .store
        .apply("wo-1", &tech("tech-1"), &note("from field"), 3_000)
        .unwrap();
    laptop
        .store
        .apply(
            "wo-1",
            &tech("tech-1"),
            &Operation::EditReport {
                text: "Replaced valve".into(),
            },
            3_000,
        )
        .unwrap();
    laptop
        .store
        .apply(
            "wo-1",
            &tech("tech-1"),
            &Operation::Close {
                at: "1970-01-01T00:00:02Z".into(),
                resolution: "fixed".into(),
                signed_by: "Ana".into(),
                signature: String::new(),
            },
            3_000,
        )
        .unwrap();
    central.store.flush();
    laptop.store.flush();
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 4_000);
    let a = central.store.work_order("wo-1").unwrap().view().unwrap();
    let b = laptop.store.work_order("wo-1").unwrap().view().unwrap();
    assert_eq!(a.heads, b.heads);
    assert_eq!(a.notes.len(), 2);
    assert_eq!(a.title, "New title");
    assert_eq!(a.report, "Replaced valve");
    assert_eq!(a.status, Status::Completed);
    assert_eq!(a.closure.unwrap().resolution, "fixed");
}

#[test]
fn wiped_peer_is_fully_reprimed() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..20 {
        create(&mut central, &format!("wo-{i}"), "tech-1");
    }
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    // The laptop is wiped and comes back with a new store (new epoch).
    let mut laptop = Node::new("laptop", 3, false);
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 3_000);
    assert_eq!(laptop.store.doc_ids().len(), 20);
    // And the central was wiped: the laptop's old checkpoint is ignored,
    // and the laptop's documents flow back.
    let mut fresh_central = Node::new("central", 4, true);
    let mut link = connect(
        &fresh_central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
    );
    drive(&mut link, &mut fresh_central, &mut laptop, 4_000);
    // A technician may not create documents: the fresh central refuses them.
    assert!(fresh_central.store.doc_ids().is_empty());
}

#[test]
fn forbidden_field_change_is_compensated_and_converges() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-1", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    // A tampered laptop writes the priority and customer directly, bypassing
    // the typed operations, plus a legitimate note.
    laptop
        .store
        .apply("wo-1", &tech("tech-1"), &note("legit"), 3_000)
        .unwrap();
    let mut doc = laptop.store.doc("wo-1").unwrap().unwrap();
    let before = doc.get_heads();
    {
        use automerge::transaction::Transactable;
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "priority", "urgent").unwrap();
        tx.put(automerge::ROOT, "assignee", "tech-9").unwrap();
        tx.commit();
    }
    let bytes = doc.save_after(&before);
    laptop.store.merge("wo-1", &bytes, 3_000).unwrap();
    laptop.store.flush();
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 4_000);
    let a = central.store.work_order("wo-1").unwrap().view().unwrap();
    let b = laptop.store.work_order("wo-1").unwrap().view().unwrap();
    assert_eq!(a.priority, fieldsync_schemas::Priority::Normal);
    assert_eq!(a.assignee.as_deref(), Some("tech-1"));
    assert_eq!(a.notes.len(), 1, "the legitimate note is kept");
    assert_eq!(
        a.heads, b.heads,
        "both replicas converge on the restored values"
    );
    assert_eq!(b.priority, fieldsync_schemas::Priority::Normal);
}

#[test]
fn a_document_a_technician_grows_past_the_ops_limit_is_refused() {
    let (mut central, mut laptop) = primed_pair(1, PROTOCOL_VERSION);
    let ops_before =
        automerge::ReadDoc::stats(&central.store.doc("wo-0").unwrap().unwrap()).num_ops;
    for index in 0..5 {
        laptop
            .store
            .apply("wo-0", &tech("tech-1"), &note(&format!("n{index}")), 3_000)
            .unwrap();
    }
    laptop.store.flush();
    let mut config = SessionConfig::new("central", true);
    config.peer_doc_ops_max = ops_before + 10;
    let mut link = connect_with(
        config,
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
    );
    drive(&mut link, &mut central, &mut laptop, 4_000);
    let view = central.store.work_order("wo-0").unwrap().view().unwrap();
    assert!(
        view.notes.is_empty(),
        "nothing of the refused changes merged"
    );
    let rejected: Vec<Event> = std::iter::from_fn(|| link.b.poll_event())
        .filter(|e| matches!(e, Event::Rejected { .. }))
        .collect();
    assert!(
        matches!(&rejected[..], [Event::Rejected { id, reason }]
            if id == "wo-0" && reason.contains("over the limit")),
        "{rejected:?}"
    );
}

#[test]
fn reassignment_grace_then_purge() {
    let grace_ms = SessionConfig::new("x", true).grace_ms;
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-1", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    // The office reassigns while the technician, offline, adds a note.
    reassign(&mut central, "wo-1", "tech-2", 10_000);
    laptop
        .store
        .apply("wo-1", &tech("tech-1"), &note("late"), 11_000)
        .unwrap();
    laptop.store.flush();
    // Within the grace period the note is accepted and the doc is kept.
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 20_000);
    assert_eq!(notes(&central, "wo-1"), 1);
    assert!(laptop.store.work_order("wo-1").is_some());
    // After it, the central revokes and the laptop purges.
    let later = 10_000 + grace_ms + 1;
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, later);
    assert!(laptop.store.work_order("wo-1").is_none());
    assert!(central.store.revocations("tech-1", 10).unwrap().is_empty());
}

#[test]
fn bad_frames_close_the_session() {
    let central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    let mut session = Session::new(
        SessionConfig::new("laptop", false),
        "central",
        PeerAccess::Office,
    );
    session.start(&laptop.store).unwrap();
    assert!(session
        .handle_bytes(0, &[0xde, 0xad], &mut laptop.store)
        .is_err());
    assert!(session.is_closed());
    let mut session = Session::new(
        SessionConfig::new("laptop", false),
        "central",
        PeerAccess::Office,
    );
    let early = fieldsync_schemas::sync_frame::Frame::PageDone {
        page: 0,
        upto_seq: 1,
    };
    assert!(session.handle_frame(0, early, &mut laptop.store).is_err());
    let mut session = Session::new(
        SessionConfig::new("laptop", false),
        "central",
        PeerAccess::Office,
    );
    let impostor = fieldsync_schemas::sync_frame::Frame::Hello {
        version_min: 1,
        version_max: 1,
        node_id: "someone-else".into(),
        epoch: central.store.epoch(),
        your_checkpoint: None,
    };
    assert!(session
        .handle_frame(0, impostor, &mut laptop.store)
        .is_err());
}

#[test]
fn version_mismatch_is_refused_on_both_sides() {
    let central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    let mut session = Session::new(
        SessionConfig::new("laptop", false),
        "central",
        PeerAccess::Office,
    );
    session.start(&laptop.store).unwrap();
    let _ = session.poll_frame();
    let future = fieldsync_schemas::sync_frame::Frame::Hello {
        version_min: PROTOCOL_VERSION + 1,
        version_max: PROTOCOL_VERSION + 3,
        node_id: "central".into(),
        epoch: central.store.epoch(),
        your_checkpoint: None,
    };
    assert!(matches!(
        session.handle_frame(0, future, &mut laptop.store),
        Err(SessionError::Version { .. })
    ));
    assert!(matches!(
        session.poll_frame(),
        Some(fieldsync_schemas::sync_frame::Frame::Refuse { .. })
    ));
    assert!(laptop.store.doc_ids().is_empty());
}

/// An office beside another office refuses a device that cannot forward
/// vouchers (protocol 5): what it relayed between the two would be
/// compensated by each in turn, for ever (simulator, rollout worlds with
/// two centrals, seeds 791 and 50441 of `--centrals 0 --shared-laptops`).
/// A sole office serves it; an operator's node is an office and is served.
#[test]
fn an_office_beside_another_refuses_a_device_without_vouchers() {
    use fieldsync_schemas::sync_frame::{Frame, PROTOCOL_VERSION_VOUCH};
    let laptop = Node::new("laptop", 2, false);
    let old_hello = Frame::Hello {
        version_min: 1,
        version_max: PROTOCOL_VERSION_VOUCH - 1,
        node_id: "laptop".into(),
        epoch: laptop.store.epoch(),
        your_checkpoint: None,
    };
    for (sole_office, peer, refused) in [
        (false, tech_access("tech-1"), true),
        (true, tech_access("tech-1"), false),
        (false, PeerAccess::Office, false),
    ] {
        let mut central = Node::new("central", 1, true);
        let mut config = SessionConfig::new(&central.id, true);
        config.sole_office = sole_office;
        let mut session = Session::new(config, "laptop", peer.clone());
        session.start(&central.store).unwrap();
        let _ = session.poll_frame();
        let answer = session.handle_frame(0, old_hello.clone(), &mut central.store);
        assert_eq!(
            matches!(
                answer,
                Err(SessionError::NeedsVouchers {
                    theirs_max: 5,
                    needed: 6
                })
            ),
            refused,
            "sole_office={sole_office} peer={peer:?}: {answer:?}"
        );
        let refuse_sent = std::iter::from_fn(|| session.poll_frame())
            .any(|frame| matches!(frame, Frame::Refuse { .. }));
        assert_eq!(refuse_sent, refused);
    }
}

#[test]
fn documents_received_are_not_announced_back() {
    use fieldsync_schemas::sync_frame::Frame;
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..30 {
        create(&mut central, &format!("wo-{i}"), "tech-1");
    }
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    // Drive by hand to see what the laptop says.
    let mut echoed = Vec::new();
    for _ in 0..1_000 {
        let mut moved = false;
        while let Some(frame) = link.a.poll_frame() {
            link.b
                .handle_frame(2_000, frame, &mut laptop.store)
                .unwrap();
            moved = true;
        }
        while let Some(frame) = link.b.poll_frame() {
            if let Frame::Announce { docs, .. } = &frame {
                echoed.extend(docs.iter().map(|d| d.id.clone()));
            }
            link.a
                .handle_frame(2_000, frame, &mut central.store)
                .unwrap();
            moved = true;
        }
        for (session, store) in [
            (&mut link.a, &mut central.store),
            (&mut link.b, &mut laptop.store),
        ] {
            if let Some(write) = store.flush() {
                session.handle_write_done(2_000, write, store).unwrap();
                session.handle_local_change(2_000, store).unwrap();
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    assert_eq!(laptop.store.doc_ids().len(), 30);
    assert!(
        echoed.is_empty(),
        "the laptop announced back what it received: {echoed:?}"
    );
    assert_eq!(
        central.store.durable_checkpoint("laptop").map(|c| c.seq),
        Some(30),
        "the laptop's changelog is still acknowledged"
    );
    // A change of the laptop's own is announced as usual.
    laptop
        .store
        .apply("wo-7", &tech("tech-1"), &note("field"), 3_000)
        .unwrap();
    laptop.store.flush();
    let mut again = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut again, &mut central, &mut laptop, 3_000);
    assert_eq!(notes(&central, "wo-7"), 1);
}

#[test]
fn an_edit_travels_as_its_change_not_as_the_whole_document() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-1", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    let whole = central.store.doc_bytes("wo-1").unwrap().unwrap().len() as u64;
    // One small edit: a third of the document's changes, which made
    // Automerge send the whole document (a v2 sync message).
    central
        .store
        .apply("wo-1", &operator(), &note("x"), 3_000)
        .unwrap();
    central.store.flush();
    let mut again = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut again, &mut central, &mut laptop, 4_000);
    let sync_bytes = again.a_sync_bytes;
    let notes = laptop
        .store
        .work_order("wo-1")
        .unwrap()
        .view()
        .unwrap()
        .notes;
    assert_eq!(notes.len(), 1, "the edit arrived");
    assert!(
        sync_bytes < whole,
        "the central sent {sync_bytes} B of sync messages for one note; the whole document is {whole} B"
    );
}

fn record_json(value: serde_json::Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&value).unwrap())
}

/// What `node` holds of `collection`, live records only: key → version.
fn held(node: &Node, collection: &str) -> Vec<(String, u64)> {
    node.store
        .records()
        .filter(|r| r.collection == collection && !r.deleted)
        .map(|r| (r.key.clone(), r.version))
        .collect()
}

/// A central whose `materials` technicians may read, holding tech-1's
/// `wo-1` and the record `materials/M-1`, all flushed.
fn central_with_materials(name: &str, seed: u8) -> Node {
    let mut central = Node::new(name, seed, true);
    central.store.set_read_grants(
        "materials",
        ReadGrants {
            readers: vec![Role::Technician],
        },
    );
    create(&mut central, "wo-1", "tech-1");
    central
        .store
        .write_record(
            "materials",
            "M-1",
            record_json(serde_json::json!({"sku": "M-1"})),
        )
        .unwrap();
    central.store.flush();
    central
}

#[test]
fn a_laptop_gets_the_records_its_role_may_read_and_their_updates_and_deletes() {
    let mut central = central_with_materials("central", 1);
    let mut laptop = Node::new("laptop", 2, false);
    let key = "M-2";
    central
        .store
        .write_record(
            "materials",
            key,
            record_json(serde_json::json!({"sku": key})),
        )
        .unwrap();
    central
        .store
        .write_record(
            "customers",
            "C-1",
            record_json(serde_json::json!({"name": "x"})),
        )
        .unwrap();
    central.store.flush();
    // Primed (version 2+ path): the granted collection only.
    let kinds = kinds_sent_by_central(&mut central, &mut laptop, PROTOCOL_VERSION);
    assert!(
        kinds.contains(&"records") && kinds.contains(&"prime"),
        "{kinds:?}"
    );
    assert_eq!(
        held(&laptop, "materials"),
        [("M-1".into(), 1), ("M-2".into(), 1)]
    );
    assert!(held(&laptop, "customers").is_empty());
    // An update and a delete follow on the next session (announce path).
    central
        .store
        .write_record(
            "materials",
            "M-1",
            record_json(serde_json::json!({"sku": "M-1b"})),
        )
        .unwrap();
    central
        .store
        .write_record("materials", "M-2", None)
        .unwrap();
    central.store.flush();
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 5_000);
    assert_eq!(held(&laptop, "materials"), [("M-1".into(), 2)]);
    let m1 = laptop.store.record("materials", "M-1").unwrap().unwrap();
    assert_eq!(m1.copy.value, b"{\"sku\":\"M-1b\"}");
    // The laptop announces none of them back, and a reconnect moves nothing.
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 6_000);
    assert_eq!(held(&central, "materials"), [("M-1".into(), 2)]);
}

#[test]
fn records_go_only_from_an_office_and_only_in_version_4() {
    let (mut central, mut laptop) = primed_pair(1, PROTOCOL_VERSION);
    let copy = RecordCopy {
        collection: "materials".into(),
        key: "M-9".into(),
        version: 9,
        deleted: false,
        value: b"{}".to_vec(),
    };
    let records = |copies: &[RecordCopy]| Frame::Records {
        compressed: compress_batch(copies, 3),
    };
    // A technician's laptop never sends record writes.
    let mut session = session_past_hello(
        &mut central,
        &laptop,
        tech_access("tech-1"),
        PROTOCOL_VERSION,
    );
    let error = session
        .handle_frame(0, records(std::slice::from_ref(&copy)), &mut central.store)
        .unwrap_err();
    assert!(error.to_string().contains("only an office"), "{error}");
    assert!(central.store.records().next().is_none());
    // From an office: an internal collection, a bad name, a value that is
    // not JSON, garbage, version 3.
    let internal = RecordCopy {
        collection: "webhooks".into(),
        ..copy.clone()
    };
    let bad_name = RecordCopy {
        collection: "Bad Name".into(),
        ..copy.clone()
    };
    let not_json = RecordCopy {
        value: b"{x".to_vec(),
        ..copy.clone()
    };
    for (version, frame, why) in [
        (PROTOCOL_VERSION, records(&[internal]), "internal"),
        (PROTOCOL_VERSION, records(&[bad_name]), "must match"),
        (PROTOCOL_VERSION, records(&[not_json]), "not JSON"),
        (
            PROTOCOL_VERSION,
            Frame::Records {
                compressed: vec![1, 2, 3],
            },
            "undecodable",
        ),
        (3, records(std::slice::from_ref(&copy)), "version 4"),
    ] {
        let mut session = session_past_hello(&mut laptop, &central, PeerAccess::Office, version);
        let error = session
            .handle_frame(0, frame, &mut laptop.store)
            .unwrap_err();
        assert!(error.to_string().contains(why), "{why}: {error}");
    }
    assert!(laptop.store.records().next().is_none());
    // A version 3 central sends no records; work orders still sync.
    let mut central3 = central_with_materials("central3", 7);
    let mut laptop3 = Node::new("laptop3", 8, false);
    let kinds = kinds_sent_by_central(&mut central3, &mut laptop3, 3);
    assert!(!kinds.contains(&"records"), "{kinds:?}");
    assert_eq!(laptop3.store.doc_ids().len(), 1);
    assert!(laptop3.store.records().next().is_none());
}

/// Users copies (version 7) come only from an office node, never from an
/// operator's device, never in an older session, and a malformed one
/// closes the session before anything reaches the store.
#[test]
fn users_copies_go_only_between_offices_and_are_checked() {
    let (central, mut other) = primed_pair(1, PROTOCOL_VERSION);
    let user = serde_json::json!({"id": "tech-1", "role": "technician", "node_ids": ["ab12"], "created_at": "2026-01-01T00:00:00Z"});
    let copy = RecordCopy {
        collection: "users".into(),
        key: "tech-1".into(),
        version: 2,
        deleted: false,
        value: serde_json::to_vec(&user).unwrap(),
    };
    let records = |copy: RecordCopy| Frame::Records {
        compressed: compress_batch(&[copy][..], 3),
    };
    let operator = PeerAccess::User {
        user_id: "op".into(),
        role: fieldsync_schemas::Role::Operator,
    };
    let office = PeerAccess::Office;
    let wrong_id = RecordCopy {
        key: "tech-2".into(),
        ..copy.clone()
    };
    let not_a_user = RecordCopy {
        value: b"{\"id\": 3}".to_vec(),
        ..copy.clone()
    };
    let deleted = RecordCopy {
        deleted: true,
        value: Vec::new(),
        ..copy.clone()
    };
    let bad_node = RecordCopy {
        value: serde_json::to_vec(&serde_json::json!({"id": "tech-1", "role": "technician", "node_ids": ["a b"], "created_at": "x"})).unwrap(),
        ..copy.clone()
    };
    let oversized = RecordCopy {
        value: format!("\"{}\"", "x".repeat(RECORD_VALUE_BYTES_MAX)).into_bytes(),
        ..copy.clone()
    };
    for (access, version, copy, why) in [
        (office.clone(), PROTOCOL_VERSION, oversized, "oversized"),
        (
            operator,
            PROTOCOL_VERSION,
            copy.clone(),
            "only between offices",
        ),
        (office.clone(), 6, copy.clone(), "only between offices"),
        (office.clone(), PROTOCOL_VERSION, wrong_id, "names user"),
        (
            office.clone(),
            PROTOCOL_VERSION,
            not_a_user,
            "is not a user",
        ),
        (office.clone(), PROTOCOL_VERSION, deleted, "never deleted"),
        (
            office.clone(),
            PROTOCOL_VERSION,
            bad_node,
            "not a fingerprint",
        ),
    ] {
        let mut session = session_past_hello(&mut other, &central, access, version);
        let error = session
            .handle_frame(0, records(copy), &mut other.store)
            .unwrap_err();
        assert!(error.to_string().contains(why), "{why}: {error}");
    }
    assert!(other.store.records().next().is_none());
    let mut session = session_past_hello(&mut other, &central, office, PROTOCOL_VERSION);
    session
        .handle_frame(0, records(copy), &mut other.store)
        .unwrap();
    assert_eq!(
        other.store.records().count(),
        1,
        "a good copy from an office"
    );
}

/// A user goes with the page to an office of protocol 7 only: never to an
/// office of 6 (it would refuse it as internal and close the session),
/// never to a technician's or an operator's device. Work orders sync with
/// every one of them.
#[test]
fn users_go_to_an_office_of_version_7_only() {
    let operator = PeerAccess::User {
        user_id: "op".into(),
        role: Role::Operator,
    };
    let user = serde_json::json!({"id": "tech-1", "role": "technician", "created_at": "x"});
    for (version, access, gets_user) in [
        (PROTOCOL_VERSION, PeerAccess::Office, true),
        (6, PeerAccess::Office, false),
        (PROTOCOL_VERSION, tech_access("tech-1"), false),
        (PROTOCOL_VERSION, operator, false),
    ] {
        let mut central = Node::new("central", 1, true);
        create(&mut central, "wo-1", "tech-1");
        let value = serde_json::to_vec(&user).unwrap();
        central
            .store
            .write_record("users", "tech-1", Some(value))
            .unwrap();
        central.store.flush();
        let office = access == PeerAccess::Office;
        let mut other = Node::new("other", 2, office);
        let mut config = SessionConfig::new(&central.id, true);
        config.protocol_version_max = version;
        let why = format!("{access:?} at version {version}");
        let mut link = connect_with(config, &central, &other, access, PeerAccess::Office);
        drive(&mut link, &mut central, &mut other, 0);
        assert_eq!(other.store.doc_ids(), ["wo-1"], "{why}");
        let users = other
            .store
            .records()
            .filter(|copy| copy.collection == "users");
        assert_eq!(users.count() == 1, gets_user, "{why}");
    }
}

/// A laptop that bypasses the typed operations appends a status entry
/// claiming the operator's role (which would win the derived status) and
/// a material already approved: the office judges each appended item and
/// deletes the bad ones in its compensation, so both replicas converge
/// without them (hardening finding 2). Fails before `doc::items`: both
/// were merged as they came.
#[test]
fn forged_list_items_from_a_technician_are_compensated() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-1", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    let now_ms = 1_767_268_800_000; // 2026-01-01T12:00:00Z
    drive(&mut link, &mut central, &mut laptop, now_ms);
    let mut doc = laptop.store.doc("wo-1").unwrap().unwrap();
    let before = doc.get_heads();
    {
        use automerge::transaction::Transactable;
        use automerge::{ObjType, ReadDoc, ROOT};
        let mut tx = doc.transaction();
        let log = tx.get(ROOT, "status_log").unwrap().unwrap().1;
        let at = tx.length(&log);
        let entry = tx.insert_object(&log, at, ObjType::Map).unwrap();
        for (key, value) in [
            ("at", "2026-01-01T11:00:00Z"),
            ("by", "tech-1"),
            ("role", "operator"),
            ("to", "in_progress"),
            ("note", ""),
        ] {
            tx.put(&entry, key, value).unwrap();
        }
        let materials = tx.get(ROOT, "materials").unwrap().unwrap().1;
        let at = tx.length(&materials);
        let material = tx.insert_object(&materials, at, ObjType::Map).unwrap();
        for (key, value) in [
            ("id", "m1"),
            ("sku", "PUMP"),
            ("unit", "pcs"),
            ("description", ""),
            ("by", "tech-1"),
            ("at", "2026-01-01T11:00:00Z"),
            ("state", "approved"),
        ] {
            tx.put(&material, key, value).unwrap();
        }
        tx.put(&material, "qty", 1.0).unwrap();
        tx.commit();
    }
    let bytes = doc.save_after(&before);
    laptop.store.merge("wo-1", &bytes, now_ms).unwrap();
    laptop.store.flush();
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, now_ms + 1_000);
    let violations = std::iter::from_fn(|| link.a.poll_event())
        .filter(|e| {
            matches!(e, Event::Violation { reason, .. }
                if reason.contains("`role` is `operator`") && reason.contains("not `approved`"))
        })
        .count();
    assert_eq!(violations, 1, "the office reports both forged items");
    let a = central.store.work_order("wo-1").unwrap().view().unwrap();
    let b = laptop.store.work_order("wo-1").unwrap().view().unwrap();
    assert_eq!(
        a.status,
        Status::Assigned,
        "the forged entry does not count"
    );
    assert_eq!(a.status_log.len(), 1, "{:?}", a.status_log);
    assert!(a.materials.is_empty(), "{:?}", a.materials);
    assert_eq!(a.heads, b.heads, "both replicas converge");
}

/// A laptop that offers a document it may not have hears the same answer
/// whether the office holds a work order of that id (another's) or none:
/// no existence oracle over sync (hardening finding 7). Fails before
/// `HIDDEN_REASON`: "not assigned to you" against "you may not create
/// work orders".
#[test]
fn unknown_and_hidden_documents_get_the_same_answer() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-theirs", "tech-2");
    // A tampered laptop made documents of its own under both ids.
    create(&mut laptop, "wo-theirs", "tech-1");
    create(&mut laptop, "wo-ghost", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    let mut heard: Vec<(String, String)> = std::iter::from_fn(|| link.b.poll_event())
        .filter_map(|event| match event {
            Event::Rejected { id, reason } => Some((id, reason)),
            _ => None,
        })
        .collect();
    heard.sort();
    heard.dedup();
    let ids: Vec<&str> = heard.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["wo-ghost", "wo-theirs"], "{heard:?}");
    assert!(
        heard.iter().all(|(_, reason)| reason == HIDDEN_REASON),
        "{heard:?}"
    );
    let theirs = central
        .store
        .work_order("wo-theirs")
        .unwrap()
        .view()
        .unwrap();
    assert_eq!(theirs.assignee.as_deref(), Some("tech-2"), "nothing merged");
}

/// Issue 16: a user's two devices are each revoked. The first device's
/// `Revoked` clears the user's revocation record; the second, reconnecting
/// later, still loses the document, because it says what it holds
/// (protocol 5) and the office judges that, not its record.
#[test]
fn two_devices_of_one_user_are_each_revoked() {
    let grace_ms = SessionConfig::new("x", true).grace_ms;
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    let mut tablet = Node::new("tablet", 3, false);
    create(&mut central, "wo-1", "tech-1");
    create(&mut central, "wo-2", "tech-1");
    for device in [&mut laptop, &mut tablet] {
        let mut link = connect(&central, device, tech_access("tech-1"), PeerAccess::Office);
        drive(&mut link, &mut central, device, 2_000);
        assert!(device.store.work_order("wo-1").is_some());
    }
    reassign(&mut central, "wo-1", "tech-2", 10_000);
    let later = 10_000 + grace_ms + 1;
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, later);
    assert!(laptop.store.work_order("wo-1").is_none());
    assert!(
        central.store.revocations("tech-1", 10).unwrap().is_empty(),
        "the first device's Revoked cleared the user's record"
    );
    let mut link = connect(&central, &tablet, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut tablet, later);
    assert!(
        tablet.store.work_order("wo-1").is_none(),
        "the second device is revoked on its own"
    );
    assert!(tablet.store.work_order("wo-2").is_some());
    // Both now hold what is assigned: a reconnect is back to three frames.
    let mut idle = connect(&central, &tablet, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut idle, &mut central, &mut tablet, later + 1);
    assert_eq!(idle.frames, 3);
}

/// Both devices of a user connected when a reassignment lands: one
/// device's session acts first, its `Revoked` comes back before the other
/// session reads the user's records. The record outlives the grace period
/// (`revocation_keep_ms`) when the user has other devices, so the second
/// session still revokes (found by the black-box test `office_pair`: the
/// tablet kept the document while connected, until it reconnected).
#[test]
fn a_record_one_device_confirmed_still_revokes_the_other_connected_one() {
    let grace_ms = SessionConfig::new("x", true).grace_ms;
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    let mut tablet = Node::new("tablet", 3, false);
    create(&mut central, "wo-1", "tech-1");
    let mut links = Vec::new();
    for device in [&mut laptop, &mut tablet] {
        let mut config = SessionConfig::new(&central.id, true);
        config.peer_relays = true;
        let mut link = connect_with(
            config,
            &central,
            device,
            tech_access("tech-1"),
            PeerAccess::Office,
        );
        drive(&mut link, &mut central, device, 2_000);
        assert!(device.store.work_order("wo-1").is_some());
        links.push(link);
    }
    reassign(&mut central, "wo-1", "tech-2", 10_000);
    let later = 10_000 + grace_ms + 1;
    for (link, device) in links.iter_mut().zip([&mut laptop, &mut tablet]) {
        link.a
            .handle_local_change(later, &mut central.store)
            .unwrap();
        drive(link, &mut central, device, later);
        assert!(device.store.work_order("wo-1").is_none(), "{}", device.id);
    }
    assert_eq!(
        central.store.revocations("tech-1", 10).unwrap().len(),
        1,
        "kept for the user's other devices"
    );
}

/// The holdings frames are judged like every other frame from a peer: in
/// the wrong direction, unasked for, in protocol 4, or with a bad id, they
/// close the session.
#[test]
fn holdings_frames_out_of_place_close_the_session() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-1", "tech-1");
    let list = |ids: &[&str]| Frame::HoldingList {
        ids: ids.iter().map(|id| id.to_string()).collect(),
        last: true,
    };
    let digest = Frame::Holding { digest: [9; 32] };
    let cases: Vec<(&str, bool, Frame, u16)> = vec![
        (
            "a list nobody asked for",
            true,
            list(&["wo-1"]),
            PROTOCOL_VERSION,
        ),
        (
            "a list wanted by a device",
            true,
            Frame::HoldingWanted,
            PROTOCOL_VERSION,
        ),
        ("a digest in protocol 4", true, digest.clone(), 4),
    ];
    for (why, at_office, frame, version) in cases {
        let result = if at_office {
            let mut session =
                session_past_hello(&mut central, &laptop, tech_access("tech-1"), version);
            session.handle_frame(0, frame, &mut central.store)
        } else {
            let mut session =
                session_past_hello(&mut laptop, &central, PeerAccess::Office, version);
            session.handle_frame(0, frame, &mut laptop.store)
        };
        assert!(result.is_err(), "{why}");
    }
    // A digest to a node that does not judge holdings (here a device; an
    // office that sees its peer as an office likewise) is ignored.
    let mut session =
        session_past_hello(&mut laptop, &central, PeerAccess::Office, PROTOCOL_VERSION);
    session
        .handle_frame(0, digest.clone(), &mut laptop.store)
        .unwrap();
    assert_eq!(session.poll_frame(), None);
    // Asked for, a list with a bad id is refused too.
    let mut session = session_past_hello(
        &mut central,
        &laptop,
        tech_access("tech-1"),
        PROTOCOL_VERSION,
    );
    session.handle_frame(0, digest, &mut central.store).unwrap();
    assert_eq!(session.poll_frame(), Some(Frame::HoldingWanted));
    let error = session
        .handle_frame(0, list(&["../etc"]), &mut central.store)
        .unwrap_err();
    assert!(error.to_string().contains("bad document id"), "{error}");
}

/// Simulator, `--shared-laptops` seed 55: one of a user's devices refused
/// the other's changes with a list of violations longer than a frame's
/// reason may be, and the receiver closed the session on the oversized
/// field. A refusal's reason is cut to fit (`bounded_reason`).
#[test]
fn a_refusal_with_many_violations_still_fits_its_frame() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    let mut tablet = Node::new("tablet", 3, false);
    create(&mut central, "wo-1", "tech-1");
    let now_ms = 1_767_268_800_000; // 2026-01-01T12:00:00Z
    for device in [&mut laptop, &mut tablet] {
        let mut link = connect(&central, device, tech_access("tech-1"), PeerAccess::Office);
        drive(&mut link, &mut central, device, now_ms);
    }
    let mut doc = tablet.store.doc("wo-1").unwrap().unwrap();
    let before = doc.get_heads();
    {
        use automerge::transaction::Transactable;
        use automerge::{ObjType, ReadDoc, ROOT};
        let mut tx = doc.transaction();
        let notes = tx.get(ROOT, "notes").unwrap().unwrap().1;
        for i in 0..60 {
            let at = tx.length(&notes);
            let note = tx.insert_object(&notes, at, ObjType::Map).unwrap();
            for (key, value) in [
                ("id", format!("forged-{i}")),
                ("at", "2026-01-01T11:00:00Z".to_string()),
                ("by", "someone-else".to_string()),
                ("text", "x".to_string()),
            ] {
                tx.put(&note, key, value).unwrap();
            }
        }
        tx.commit();
    }
    let bytes = doc.save_after(&before);
    tablet.store.merge("wo-1", &bytes, now_ms).unwrap();
    tablet.store.flush();
    // Device to device: each sees the other as its user's.
    let mut link = connect(
        &laptop,
        &tablet,
        tech_access("tech-1"),
        tech_access("tech-1"),
    );
    drive(&mut link, &mut laptop, &mut tablet, now_ms + 1_000);
    let refusals: Vec<String> = std::iter::from_fn(|| link.b.poll_event())
        .filter_map(|e| match e {
            Event::Rejected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(!refusals.is_empty(), "the laptop refused the forged notes");
    assert!(refusals
        .iter()
        .all(|r| r.len() <= fieldsync_schemas::sync_frame::REASON_BYTES_MAX));
    assert_eq!(notes(&laptop, "wo-1"), 0);
}

/// An office's session configuration with its signing key
/// (`crate::vouch`), vouching to a peer that relays.
fn signing(node: &Node) -> SessionConfig {
    let mut config = SessionConfig::new(&node.id, node.office);
    config.signer = Some(std::sync::Arc::new(crate::vouch::Signer::derive(
        node.id.as_bytes(),
    )));
    config.peer_relays = true;
    config
}

/// As [`connect`], with both sessions configured by the caller.
fn connect_configured(
    (a, a_config): (&Node, SessionConfig),
    (b, b_config): (&Node, SessionConfig),
    b_access: PeerAccess,
    a_access: PeerAccess,
) -> Link {
    let mut sa = Session::new(a_config, &b.id, b_access);
    let mut sb = Session::new(b_config, &a.id, a_access);
    sa.start(&a.store).unwrap();
    sb.start(&b.store).unwrap();
    Link {
        a: sa,
        b: sb,
        frames: 0,
        bytes: 0,
        a_sync_bytes: 0,
    }
}

fn priority(node: &Node, id: &str) -> fieldsync_schemas::Priority {
    node.store.work_order(id).unwrap().view().unwrap().priority
}

fn violations(session: &mut Session) -> Vec<String> {
    std::iter::from_fn(|| session.poll_event())
        .filter_map(|event| match event {
            Event::Violation { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// Two centrals that know each other's keys and hold `wo-1` (assigned to
/// tech-1); a laptop primed by the first; then the first central raises
/// the priority and the laptop syncs with it, so the laptop holds an
/// office change the second central lacks.
fn two_centrals_and_a_relay() -> (Node, Node, Node) {
    let mut c1 = Node::new("c1", 1, true);
    let mut c2 = Node::new("c2", 2, true);
    let mut laptop = Node::new("laptop", 3, false);
    create(&mut c1, "wo-1", "tech-1");
    let mut offices = connect_configured(
        (&c1, signing(&c1)),
        (&c2, signing(&c2)),
        PeerAccess::Office,
        PeerAccess::Office,
    );
    drive(&mut offices, &mut c1, &mut c2, 2_000);
    assert!(c2.store.work_order("wo-1").is_some());
    let mut link = connect_with(
        signing(&c1),
        &c1,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
    );
    drive(&mut link, &mut c1, &mut laptop, 3_000);
    let urgent = Operation::EditOperatorFields(OperatorPatch {
        priority: Some(fieldsync_schemas::Priority::Urgent),
        ..Default::default()
    });
    c1.store.apply("wo-1", &operator(), &urgent, 4_000).unwrap();
    c1.store.flush();
    let mut link = connect_with(
        signing(&c1),
        &c1,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
    );
    drive(&mut link, &mut c1, &mut laptop, 5_000);
    assert_eq!(
        priority(&laptop, "wo-1"),
        fieldsync_schemas::Priority::Urgent
    );
    assert!(
        !laptop.store.vouchers("wo-1").unwrap().is_empty(),
        "the laptop keeps the first central's vouchers"
    );
    (c1, c2, laptop)
}

/// The laptop relays the first central's change to the second, which
/// judges it and returns what it merged; the second central's violations.
fn relay_to_second(c2: &mut Node, laptop: &mut Node) -> Vec<String> {
    let mut link = connect_with(
        signing(c2),
        c2,
        laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
    );
    drive(&mut link, c2, laptop, 6_000);
    violations(&mut link.a)
}

#[test]
fn a_relayed_office_change_is_accepted_with_its_voucher() {
    let (_c1, mut c2, mut laptop) = two_centrals_and_a_relay();
    let violations = relay_to_second(&mut c2, &mut laptop);
    assert_eq!(violations, Vec::<String>::new());
    assert_eq!(
        priority(&c2, "wo-1"),
        fieldsync_schemas::Priority::Urgent,
        "the office's change stands at the other central"
    );
    assert_eq!(
        c2.store.doc_meta("wo-1").unwrap().unwrap().heads,
        laptop.store.doc_meta("wo-1").unwrap().unwrap().heads
    );
}

#[test]
fn a_relayed_office_change_without_a_voucher_is_the_relays_own() {
    // The laptop lost its vouchers (a version-5 laptop never had any).
    let (_c1, mut c2, mut laptop) = two_centrals_and_a_relay();
    laptop.store = without_vouchers(&laptop.store);
    let violations = relay_to_second(&mut c2, &mut laptop);
    assert!(
        violations.iter().any(|v| v.contains("priority")),
        "judged as the technician's: {violations:?}"
    );
    assert_eq!(priority(&c2, "wo-1"), fieldsync_schemas::Priority::Normal);
}

#[test]
fn a_voucher_from_a_key_no_office_named_counts_for_nothing() {
    let (_c1, mut c2, mut laptop) = two_centrals_and_a_relay();
    // The laptop signs the head itself, with a key of its own.
    let heads = laptop.store.doc_meta("wo-1").unwrap().unwrap().heads;
    laptop.store = without_vouchers(&laptop.store);
    let forged = crate::vouch::Signer::derive(b"laptop").vouch("wo-1", &heads[0]);
    laptop.store.put_vouchers("wo-1", &[forged]).unwrap();
    laptop.store.flush();
    let violations = relay_to_second(&mut c2, &mut laptop);
    assert!(violations.iter().any(|v| v.contains("priority")));
    assert_eq!(priority(&c2, "wo-1"), fieldsync_schemas::Priority::Normal);
    // A well-signed voucher by a key no office named may be an office's
    // this one has not met yet: the changes are refused, not compensated
    // (nothing of the laptop's is merged; simulator seed 3976).
    let laptop_heads = laptop.store.doc_meta("wo-1").unwrap().unwrap().heads;
    let c2_doc = c2.store.doc("wo-1").unwrap().unwrap();
    assert!(laptop_heads
        .iter()
        .all(|head| automerge::ReadDoc::get_change_by_hash(&c2_doc, head).is_none()));
}

#[test]
fn a_change_forged_under_an_offices_actor_is_the_relays_own() {
    let (c1, mut c2, mut laptop) = two_centrals_and_a_relay();
    // The laptop writes the title as the first central's actor, on top of
    // the vouched heads: the voucher covers what the office held, not this.
    let mut doc = laptop.store.doc("wo-1").unwrap().unwrap();
    let before = doc.get_heads();
    doc.set_actor(c1.store.actor());
    {
        use automerge::transaction::Transactable;
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "title", "forged").unwrap();
        tx.commit();
    }
    laptop
        .store
        .merge("wo-1", &doc.save_after(&before), 5_500)
        .unwrap();
    laptop.store.flush();
    let violations = relay_to_second(&mut c2, &mut laptop);
    assert!(
        violations.iter().any(|v| v.contains("title")),
        "{violations:?}"
    );
    let at_c2 = c2.store.work_order("wo-1").unwrap().view().unwrap();
    assert_ne!(at_c2.title, "forged");
    assert_eq!(
        at_c2.priority,
        fieldsync_schemas::Priority::Urgent,
        "the vouched office change below it stands"
    );
}

/// An office with another office configured vouches to every device,
/// even one whose user has no other device and before it has learned the
/// other office's key (learned at hello, lost with a crash before its
/// flush): the device may carry its edits to the other office (simulator,
/// default world, 32 of 10,000 seeds, e.g. 416). A sole office vouches
/// only to a device that may relay to a sibling.
#[test]
fn an_office_beside_another_vouches_to_every_device() {
    for (sole_office, vouched) in [(false, true), (true, false)] {
        let mut central = Node::new("central", 1, true);
        let mut laptop = Node::new("laptop", 2, false);
        create(&mut central, "wo-1", "tech-1");
        let mut config = signing(&central);
        config.peer_relays = false;
        config.sole_office = sole_office;
        let mut link = connect_configured(
            (&central, config),
            (&laptop, SessionConfig::new(&laptop.id, false)),
            tech_access("tech-1"),
            PeerAccess::Office,
        );
        drive(&mut link, &mut central, &mut laptop, 2_000);
        assert!(laptop.store.work_order("wo-1").is_some());
        assert_eq!(
            !laptop.store.vouchers("wo-1").unwrap().is_empty(),
            vouched,
            "sole_office={sole_office}"
        );
    }
}

/// A copy of `store` whose kept vouchers are gone.
fn without_vouchers(store: &MemStore) -> MemStore {
    let mut copy = store.clone();
    copy.forget_vouchers();
    copy
}

#[test]
fn a_central_offers_again_what_a_device_purged_on_another_centrals_word() {
    let grace_ms = SessionConfig::new("x", true).grace_ms;
    let mut c1 = Node::new("c1", 1, true);
    let mut c2 = Node::new("c2", 2, true);
    let mut laptop = Node::new("laptop", 3, false);
    create(&mut c1, "wo-1", "tech-1");
    let mut offices = connect(&c1, &c2, PeerAccess::Office, PeerAccess::Office);
    drive(&mut offices, &mut c1, &mut c2, 2_000);
    let mut link = connect(&c2, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut c2, &mut laptop, 3_000);
    assert!(laptop.store.work_order("wo-1").is_some());
    // The first central reassigns it; the second has not heard yet. After
    // the grace period the first revokes the laptop's copy (which it never
    // sent: the laptop's holdings tell it).
    reassign(&mut c1, "wo-1", "tech-2", 10_000);
    let later = 10_000 + grace_ms + 1;
    let mut link = connect(&c1, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut c1, &mut laptop, later);
    assert!(laptop.store.work_order("wo-1").is_none());
    // The second central still has it assigned to tech-1, and its
    // checkpoint for the laptop is past the document: the laptop's list
    // shows it missing, and the central offers it again.
    let mut link = connect(&c2, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut c2, &mut laptop, later + 1);
    assert!(
        laptop.store.work_order("wo-1").is_some(),
        "offered again by the central that still assigns it to the laptop's user"
    );
    // Once the centrals agree, the laptop loses it for good.
    let mut offices = connect(&c1, &c2, PeerAccess::Office, PeerAccess::Office);
    drive(&mut offices, &mut c1, &mut c2, later + 2);
    let mut link = connect(&c2, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut c2, &mut laptop, later + grace_ms + 3);
    assert!(laptop.store.work_order("wo-1").is_none());
}

/// As [`drive`], but `a`'s store is flushed only with `flush_a`, and `b`'s
/// frames reach `a` only where `deliver_b` says (the rest is lost, as with
/// a cut); `b`'s store is always flushed.
fn drive_partly(
    link: &mut Link,
    a: &mut Node,
    b: &mut Node,
    now_ms: u64,
    flush_a: bool,
    deliver_b: impl Fn(&Frame) -> bool,
) {
    for _ in 0..1_000 {
        let mut moved = false;
        while let Some(frame) = link.a.poll_frame() {
            link.b
                .handle_bytes(now_ms, &frame.encode(), &mut b.store)
                .unwrap();
            moved = true;
        }
        while let Some(frame) = link.b.poll_frame() {
            if deliver_b(&frame) {
                link.a
                    .handle_bytes(now_ms, &frame.encode(), &mut a.store)
                    .unwrap();
                moved = true;
            }
        }
        if let Some(write) = flush_a.then(|| a.store.flush()).flatten() {
            link.a
                .handle_write_done(now_ms, write, &mut a.store)
                .unwrap();
            moved = true;
        }
        if let Some(write) = b.store.flush() {
            link.b
                .handle_write_done(now_ms, write, &mut b.store)
                .unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("did not settle");
}

/// A central offers again only what a crash cannot take back: a creation
/// still queued there is not re-offered after the device's holdings list
/// (before, it was, the central crashed, and with another office no one
/// could revoke the copy: simulator, default world seeds 2587, 3056, 4251,
/// 9551). Once durable, the changelog offers it.
#[test]
fn a_central_offers_again_only_what_is_durable() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-0", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 2_000);
    let mut new = sample("tech-1");
    new.id = Some("wo-1".into());
    central
        .store
        .create(&operator(), "wo-1", &new, 3_000)
        .unwrap();
    // A new session: holdings, the list, re-offers; the central's queue is
    // never flushed, the laptop's always is.
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive_partly(&mut link, &mut central, &mut laptop, 3_000, false, |_| true);
    assert_eq!(laptop.store.doc_ids(), ["wo-0"], "nothing not durable");
    // The central crashes: the creation is gone, and the laptop never had it.
    central.store.crash();
    assert!(central.store.work_order("wo-1").is_none());
    // Durable, it reaches the laptop.
    create(&mut central, "wo-2", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 4_000);
    assert_eq!(laptop.store.doc_ids(), ["wo-0", "wo-2"]);
}

/// Office keys and vouchers are judged like every other frame from a peer:
/// keys from anyone but an office, a device's vouchers for more than one
/// document, or either in protocol 5, close the session; a voucher with a
/// signature of the wrong length does not even decode.
#[test]
fn vouching_frames_out_of_place_close_the_session() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-1", "tech-1");
    let signer = crate::vouch::Signer::derive(b"office");
    let head = central.store.doc_meta("wo-1").unwrap().unwrap().heads[0];
    let keys = Frame::OfficeKeys {
        keys: vec![signer.key()],
    };
    let vouch = |count: usize| Frame::Vouch {
        vouchers: vec![signer.vouch("wo-1", &head); count],
    };
    let operator_node = PeerAccess::User {
        user_id: "op".into(),
        role: Role::Operator,
    };
    let cases: Vec<(&str, PeerAccess, Frame, u16)> = vec![
        (
            "keys from a device",
            tech_access("tech-1"),
            keys.clone(),
            PROTOCOL_VERSION,
        ),
        (
            "keys from an operator's node",
            operator_node,
            keys.clone(),
            PROTOCOL_VERSION,
        ),
        ("keys in protocol 5", PeerAccess::Office, keys.clone(), 5),
        (
            "a device's vouchers past one document's",
            tech_access("tech-1"),
            vouch(9),
            PROTOCOL_VERSION,
        ),
        ("vouchers in protocol 5", tech_access("tech-1"), vouch(1), 5),
    ];
    for (why, access, frame, version) in cases {
        let mut session = session_past_hello(&mut central, &laptop, access, version);
        assert!(
            session.handle_frame(0, frame, &mut central.store).is_err(),
            "{why}"
        );
    }
    // From an office, keys are kept (not our own, not twice).
    let mut session =
        session_past_hello(&mut laptop, &central, PeerAccess::Office, PROTOCOL_VERSION);
    session
        .handle_frame(0, keys.clone(), &mut laptop.store)
        .unwrap();
    session.handle_frame(0, keys, &mut laptop.store).unwrap();
    laptop.store.flush();
    assert_eq!(laptop.store.office_keys().unwrap(), vec![signer.key()]);
    let mut short = signer.vouch("wo-1", &head);
    short.signature.truncate(63);
    let bytes = Frame::Vouch {
        vouchers: vec![short],
    }
    .encode();
    assert!(session.handle_bytes(0, &bytes, &mut laptop.store).is_err());
}

/// A central that is the only office: a work order a device holds and the
/// central does not was lost there (a creation served before its flush,
/// then a crash; simulator, `--centrals 0 --shared-laptops` seed 563), so
/// the device drops it, as it drops one it may not see. A guessed id and
/// another's work order get the same answers: `Rejected` with the same
/// reason, then `Revoke` (hardening finding 7, for a sole central).
#[test]
fn a_sole_office_revokes_what_it_lost_as_it_revokes_what_is_hidden() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    create(&mut central, "wo-theirs", "tech-2");
    create(&mut laptop, "wo-theirs", "tech-1");
    create(&mut laptop, "wo-lost", "tech-1");
    let mut config = SessionConfig::new(&central.id, true);
    config.sole_office = true;
    let mut link = connect_with(
        config,
        &central,
        &laptop,
        tech_access("tech-1"),
        PeerAccess::Office,
    );
    drive(&mut link, &mut central, &mut laptop, 2_000);
    let mut purged: Vec<String> = std::iter::from_fn(|| link.b.poll_event())
        .filter_map(|event| match event {
            Event::Purged { ids } => Some(ids),
            _ => None,
        })
        .flatten()
        .collect();
    purged.sort();
    assert_eq!(purged, ["wo-lost", "wo-theirs"]);
    assert!(laptop.store.doc_ids().is_empty());
    assert!(
        central.store.work_order("wo-lost").is_none(),
        "nothing created"
    );
    // With another office (not sole), a document this one lacks may simply
    // not have come yet: the device keeps it.
    let mut laptop = Node::new("tablet", 3, false);
    create(&mut laptop, "wo-elsewhere", "tech-1");
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 3_000);
    assert_eq!(laptop.store.doc_ids(), ["wo-elsewhere"]);
}

/// A device ahead of what an office announces names the document again in
/// its changelog. The office had refused the device's change while it
/// lacked the document (its checkpoint passed it); the reconciling that
/// would bring the change is cut with the connection, after both
/// checkpoints passed the document. Next session the device offers it
/// again (simulator, default world seed 153).
#[test]
fn a_device_ahead_of_an_office_offers_its_change_again_after_a_cut() {
    let mut c1 = Node::new("c1", 1, true);
    let mut c0 = Node::new("c0", 2, true);
    let mut laptop = Node::new("laptop", 3, false);
    create(&mut c1, "wo-1", "tech-1");
    let mut link = connect(&c1, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut c1, &mut laptop, 2_000);
    laptop
        .store
        .apply("wo-1", &tech("tech-1"), &note("field"), 3_000)
        .unwrap();
    laptop.store.flush();
    // c0 lacks the document: it refuses the change, and its checkpoint
    // for the laptop passes it.
    let mut link = connect(&c0, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut c0, &mut laptop, 4_000);
    assert!(c0.store.work_order("wo-1").is_none());
    // c0 gets the document from c1, without the laptop's note.
    let mut offices = connect(&c0, &c1, PeerAccess::Office, PeerAccess::Office);
    drive(&mut offices, &mut c0, &mut c1, 5_000);
    assert_eq!(notes(&c0, "wo-1") + 1, notes(&laptop, "wo-1"));
    // c0 announces it; the laptop, ahead, answers, but nothing it sends
    // after its hello arrives: the connection is cut. Its writes (the
    // page's checkpoint among them) are durable.
    let mut link = connect(&c0, &laptop, tech_access("tech-1"), PeerAccess::Office);
    let hello_only = |frame: &Frame| matches!(frame, Frame::Hello { .. });
    drive_partly(&mut link, &mut c0, &mut laptop, 6_000, true, hello_only);
    assert_eq!(
        laptop.store.durable_checkpoint("c0").map(|c| c.seq),
        Some(c0.store.last_seq()),
        "the laptop's checkpoint passed the document"
    );
    let mut link = connect(&c0, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut c0, &mut laptop, 7_000);
    assert_eq!(
        notes(&c0, "wo-1"),
        notes(&laptop, "wo-1"),
        "the note reached c0"
    );
}

/// A technician's device costs the central what that device may see: its
/// session reads the reader index (`SyncStore::changes_for`), never other
/// users' changelog entries, when priming and after later edits (issue 18).
#[test]
fn a_device_session_reads_only_its_users_entries() {
    let mut central = Node::new("central", 1, true);
    let mut laptop = Node::new("laptop", 2, false);
    for i in 0..200 {
        create(&mut central, &format!("other-{i:03}"), "tech-2");
    }
    for i in 0..5 {
        create(&mut central, &format!("mine-{i}"), "tech-1");
    }
    reassign(&mut central, "other-000", "tech-1", 2_000);
    let read_before = central.store.entries_read();
    let mut link = connect(&central, &laptop, tech_access("tech-1"), PeerAccess::Office);
    drive(&mut link, &mut central, &mut laptop, 3_000);
    assert_eq!(laptop.store.doc_ids().len(), 6);
    assert_eq!(
        central.store.entries_read() - read_before,
        6,
        "five creations and one reassignment"
    );
    assert_eq!(laptop.store.durable_checkpoint("central").unwrap().seq, 206);
    // Edits to other users' orders cost this session nothing to read.
    let read_before = central.store.entries_read();
    for i in 1..100 {
        let id = format!("other-{i:03}");
        central
            .store
            .apply(&id, &operator(), &note("x"), 4_000)
            .unwrap();
    }
    central
        .store
        .apply("mine-3", &operator(), &note("y"), 4_000)
        .unwrap();
    drive(&mut link, &mut central, &mut laptop, 5_000);
    assert_eq!(notes(&laptop, "mine-3"), 1);
    assert_eq!(central.store.entries_read() - read_before, 1);
    assert_eq!(laptop.store.durable_checkpoint("central").unwrap().seq, 306);
}
