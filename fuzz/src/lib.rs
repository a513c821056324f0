//! What each fuzz target does, as plain functions: `fuzz_targets/*.rs` call
//! them under libFuzzer, and `tests/replay.rs` runs every corpus and
//! artifact file through them on the stable toolchain (CI).
//!
//! Each function must never panic, whatever the bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use fieldsync_node::access::PeerAccess;
use fieldsync_node::doc::{derive_status, intake, WorkOrderDoc};
use fieldsync_node::sync::{MemStore, Session, SessionConfig};
use fieldsync_schemas::sync_frame::{Frame, PROTOCOL_VERSION};
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, Priority, Role, Status};

// ---------------------------------------------------------------------------
// Allocation accounting: the intake target asserts that loading what the
// intake check let through stays within a bound derived from its limits.

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated (above what was live at the start) while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

// ---------------------------------------------------------------------------
// Shared fixtures.

const OFFICE: &str = "office-node";
const LAPTOP: &str = "laptop-node";
const TECH: &str = "tech-1";
const DOC_ID: &str = "wo-1";

fn operator() -> Actor {
    Actor::new("op", Role::Operator)
}

/// A real work order, as the office's typed operation creates it.
pub fn sample_work_order(id: &str) -> NewWorkOrder {
    NewWorkOrder {
        id: Some(id.into()),
        number: "WO-2026-000001".into(),
        title: "Boiler".into(),
        description: "No hot water".into(),
        customer: Customer {
            name: "Ana".into(),
            address: "Rua A".into(),
            phone: "1".into(),
            document: String::new(),
        },
        priority: Priority::Normal,
        assignee: Some(TECH.into()),
        scheduled_for: Some("2026-01-02T09:00:00Z".into()),
        created_at: "2026-01-01T00:00:00Z".into(),
        initial_status: Status::Assigned,
        notes: vec![(
            "op".into(),
            "call first".into(),
            "2026-01-01T00:00:00Z".into(),
        )],
        materials: vec![("PIPE-15".into(), 2.0, "copper pipe".into())],
    }
}

/// A store holding one flushed work order assigned to `TECH`.
fn template_store(seed: u8) -> MemStore {
    let mut store = MemStore::new([seed; 16], ActorId::from(vec![seed; 16]));
    store
        .create(&operator(), DOC_ID, &sample_work_order(DOC_ID), 1_000_000)
        .expect("create the fixture work order");
    while store.flush().is_some() {}
    store
}

fn stores() -> &'static (MemStore, MemStore) {
    static STORES: OnceLock<(MemStore, MemStore)> = OnceLock::new();
    STORES.get_or_init(|| (template_store(1), template_store(2)))
}

/// The saved bytes of a real work order.
pub fn work_order_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let (doc, _) = WorkOrderDoc::create(
            &ActorId::from(vec![7; 16]),
            &operator(),
            DOC_ID,
            &sample_work_order(DOC_ID),
            1_000,
        )
        .expect("create a work order");
        doc.save()
    })
}

// ---------------------------------------------------------------------------
// Target `sync_frame`.

/// Arbitrary bytes as frames from a peer.
///
/// 1. `Frame::decode` of the whole input (a peer's frame; trailing bytes
///    are ignored by postcard); a decoded frame must re-encode and decode to
///    itself.
/// 2. The input minus its last byte as a stream of concatenated frames, fed
///    through `Session::handle_bytes` of a real session (the node's own
///    decoding: zstd batches of `Prime`, `DocBatch`, `AnnouncePush` and
///    `Records` through `decode_batch`, the Automerge intake and merges)
///    over an in-memory store that holds one work order. The last byte
///    picks the setting: bit 0, a laptop talking to an office or an office
///    talking to a technician's laptop; bit 1, the peer's `Hello` comes from
///    the input, or is made here (so the other frames reach the ready
///    state); bits 2-3, the peer's protocol version (the newest, 6, and the three
///    before it).
pub fn sync_frame(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let again = Frame::decode(&frame.encode()).expect("a decoded frame re-encodes");
        assert_eq!(again, frame, "frame round trip");
        let _ = frame.kind();
    }
    let Some((&setting, stream)) = data.split_last() else {
        return;
    };
    let laptop = setting & 1 == 0;
    let (self_id, peer_id, office, peer) = if laptop {
        (LAPTOP, OFFICE, false, PeerAccess::Office)
    } else {
        (
            OFFICE,
            LAPTOP,
            true,
            PeerAccess::User {
                user_id: TECH.into(),
                role: Role::Technician,
            },
        )
    };
    let mut store = if laptop {
        stores().0.clone()
    } else {
        stores().1.clone()
    };
    let mut config = SessionConfig::new(self_id, office);
    // The central is the only office: one beside another refuses devices
    // before protocol 6, and the hellos below go back to version 4.
    config.sole_office = office;
    let mut session = Session::new(config, peer_id, peer);
    session.start(&store).expect("start");
    let mut now_ms = 2_000_000;
    if setting & 2 == 0 {
        let version = PROTOCOL_VERSION.saturating_sub(u16::from((setting >> 2) & 3));
        let hello = Frame::Hello {
            version_min: 1,
            version_max: version,
            node_id: peer_id.into(),
            epoch: [9; 16],
            your_checkpoint: None,
        };
        session
            .handle_bytes(now_ms, &hello.encode(), &mut store)
            .expect("a valid hello");
    }
    let mut rest = stream;
    while !rest.is_empty() && !session.is_closed() {
        // One frame's worth of bytes, as the QUIC framing would deliver it.
        let len = match postcard::take_from_bytes::<Frame>(rest) {
            Ok((_, tail)) => rest.len() - tail.len(),
            Err(_) => rest.len(),
        };
        let (piece, tail) = rest.split_at(len);
        rest = tail;
        now_ms += 1_000;
        if session.handle_bytes(now_ms, piece, &mut store).is_err() {
            break;
        }
        pump(&mut session, &mut store, now_ms);
    }
    let _ = session.progress();
    let _ = session.is_idle(&store);
}

/// What a driver does between frames: send what is queued (dropped here),
/// complete flushed writes, report local changes, fire timeouts.
fn pump(session: &mut Session, store: &mut MemStore, now_ms: u64) {
    for _ in 0..64 {
        while session.poll_frame().is_some() {}
        while session.poll_event().is_some() {}
        let Some(write) = store.flush() else {
            break;
        };
        if session.handle_write_done(now_ms, write, store).is_err()
            || session.handle_local_change(now_ms, store).is_err()
        {
            return;
        }
    }
    if let Some(at) = session.poll_timeout() {
        let _ = session.handle_timeout(at.max(now_ms), store);
    }
    while session.poll_frame().is_some() {}
}

// ---------------------------------------------------------------------------
// Target `intake`.

/// Limits for the fuzzer: smaller than production's so that one execution
/// stays fast; the code under test is the same.
pub const FUZZ_LIMITS: intake::Limits = intake::Limits {
    inflated_bytes_max: 1024 * 1024,
    ops_max: 50_000,
};

/// Arbitrary bytes as Automerge data from a peer: `intake::check`, then,
/// as the session does with what passed, `Automerge::load` (whole
/// documents) and `load_incremental` of the checked prefix (changes), into
/// an empty document and into a real work order. The check's figures stay
/// within its limits, and loading allocates at most a bound derived from
/// the input size and the limits (a decompression bomb would blow it).
pub fn intake(data: &[u8]) {
    intake_with(data, FUZZ_LIMITS);
    // Production limits, check only (no load: a few bytes may claim up to
    // a million operations, which Automerge would then build).
    if let Ok(checked) = intake::check(data, intake::Limits::default()) {
        assert!(checked.prefix_bytes <= data.len());
        assert!(checked.inflated_bytes <= intake::INFLATED_BYTES_MAX);
        assert!(checked.ops <= intake::OPS_MAX);
    }
}

fn intake_with(data: &[u8], limits: intake::Limits) {
    let Ok(checked) = intake::check(data, limits) else {
        return;
    };
    assert!(
        checked.prefix_bytes <= data.len(),
        "prefix within the input"
    );
    assert!(checked.inflated_bytes <= limits.inflated_bytes_max);
    assert!(checked.ops <= limits.ops_max);
    let prefix = &data[..checked.prefix_bytes];
    // Generous: Automerge's in-memory form is tens of bytes per op and per
    // inflated byte; a bomb is orders of magnitude past this.
    let bound = 64 * 1024 * 1024
        + 256 * checked.inflated_bytes as usize
        + 512 * limits.ops_max as usize
        + 256 * data.len();
    let (_, peak) = peak_during(|| {
        if checked.is_whole(data) {
            if let Ok(doc) = Automerge::load(data) {
                read_all(doc);
            }
        }
        let mut empty = Automerge::new();
        if empty.load_incremental(prefix).is_ok() {
            read_all(empty);
        }
        if let Ok(mut base) = Automerge::load(work_order_bytes()) {
            if base.load_incremental(prefix).is_ok() {
                read_all(base);
            }
        }
    });
    assert!(
        peak <= bound,
        "loading {} checked bytes (inflating to {}, {} ops) allocated {peak} bytes, bound {bound}",
        prefix.len(),
        checked.inflated_bytes,
        checked.ops
    );
}

/// Everything a node reads of a document it received.
fn read_all(doc: Automerge) {
    let _ = doc.get_heads();
    if let Ok(wo) = WorkOrderDoc::from_automerge(doc, &ActorId::from(vec![3; 16])) {
        let _ = (wo.id(), wo.assignee(), wo.number(), wo.is_deleted());
        if let Ok(view) = wo.view() {
            let _ = derive_status(&view.status_log);
        }
        let _ = wo.save();
    }
}

// ---------------------------------------------------------------------------
// Target `read_model`.

/// Field names and values the read model knows, so mutations hit them.
const KEYS: &[&str] = &[
    "kind",
    "id",
    "number",
    "title",
    "description",
    "priority",
    "assignee",
    "scheduled_for",
    "deleted",
    "customer",
    "closure",
    "status_log",
    "notes",
    "materials",
    "time_log",
    "report",
    "name",
    "address",
    "phone",
    "document",
    "at",
    "by",
    "role",
    "to",
    "note",
    "text",
    "qty",
    "sku",
    "unit",
    "state",
    "start",
    "end",
    "resolution",
    "signed_by",
    "created_at",
    "created_by",
    "schema",
    "closed",
    "",
];
const STRINGS: &[&str] = &[
    "work_order",
    "wo-1",
    "tech-1",
    "op",
    "operator",
    "technician",
    "office",
    "assigned",
    "in_progress",
    "on_hold",
    "done",
    "closed",
    "cancelled",
    "new",
    "pending",
    "approved",
    "rejected",
    "low",
    "normal",
    "high",
    "urgent",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59Z",
    "",
    "x",
    "1",
    "-1",
    "1e309",
    "NaN",
    "\u{0}",
    "é",
];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u64(&mut self) -> u64 {
        let mut n = 0u64;
        for _ in 0..8 {
            n = (n << 8) | u64::from(self.byte().unwrap_or(0));
        }
        n
    }
    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[usize::from(self.byte().unwrap_or(0)) % from.len()]
    }
    fn string(&mut self) -> String {
        match self.byte().unwrap_or(0) {
            n if n < 200 => self.pick(STRINGS).to_string(),
            n => {
                let len = usize::from(n - 200).min(self.0.len());
                let (s, rest) = self.0.split_at(len);
                self.0 = rest;
                String::from_utf8_lossy(s).into_owned()
            }
        }
    }
    fn key(&mut self) -> String {
        match self.byte().unwrap_or(0) {
            n if n < 240 => KEYS[usize::from(n) % KEYS.len()].to_string(),
            _ => self.string(),
        }
    }
    fn scalar(&mut self) -> ScalarValue {
        match self.byte().unwrap_or(0) % 10 {
            0 => ScalarValue::Str(self.string().into()),
            1 => ScalarValue::Int(self.u64() as i64),
            2 => ScalarValue::Uint(self.u64()),
            3 => ScalarValue::F64(f64::from_bits(self.u64())),
            4 => ScalarValue::F64(f64::from(self.byte().unwrap_or(0))),
            5 => ScalarValue::Boolean(self.byte().unwrap_or(0) & 1 == 1),
            6 => ScalarValue::Null,
            7 => ScalarValue::Counter((self.u64() as i64).into()),
            8 => ScalarValue::Timestamp(self.u64() as i64),
            _ => ScalarValue::Bytes(vec![self.byte().unwrap_or(0); 3]),
        }
    }
    fn obj_type(&mut self) -> ObjType {
        match self.byte().unwrap_or(0) % 3 {
            0 => ObjType::Map,
            1 => ObjType::List,
            _ => ObjType::Text,
        }
    }
}

/// Arbitrary bytes as a small program of edits, made by two actors on
/// copies of a real work order and merged (so conflicts arise), then the
/// read model over the result. The read model may refuse a document
/// (`Err`), never panic; a saved and reloaded document reads the same.
pub fn read_model(data: &[u8]) {
    let Some(doc) = read_model_doc(data) else {
        return;
    };
    let bytes = doc.save();
    let first = view_of(doc);
    let reloaded = Automerge::load(&bytes).expect("a saved document loads");
    let second = view_of(reloaded);
    assert_eq!(
        first, second,
        "the read model is a function of the document"
    );
}

fn view_of(doc: Automerge) -> Option<String> {
    let wo = WorkOrderDoc::from_automerge(doc, &ActorId::from(vec![3; 16])).ok()?;
    let _ = (wo.id(), wo.assignee(), wo.number(), wo.is_deleted());
    let view = wo.view();
    if let Ok(view) = &view {
        let _ = derive_status(&view.status_log);
    }
    // Debug text: NaN compares unequal to itself, its text does not.
    Some(format!("{view:?}"))
}

/// The document [`read_model`] reads: `None` when the program is too long.
pub fn read_model_doc(data: &[u8]) -> Option<Automerge> {
    if data.len() > 4096 {
        return None;
    }
    let mut input = Bytes(data);
    let base = AutoCommit::load(work_order_bytes()).expect("the fixture loads");
    let mut docs = [
        base.clone().with_actor(ActorId::from(vec![1; 16])),
        base.with_actor(ActorId::from(vec![2; 16])),
    ];
    let mut current = 0;
    // Objects the program may edit: the root and every object in it.
    let mut objects: Vec<ObjId> = vec![ROOT];
    for key in docs[0].keys(ROOT).collect::<Vec<_>>() {
        if let Ok(Some((automerge::Value::Object(_), id))) = docs[0].get(ROOT, key.as_str()) {
            objects.push(id);
        }
    }
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 256 {
            break;
        }
        let doc = &mut docs[current];
        let obj = objects[usize::from(input.byte().unwrap_or(0)) % objects.len()].clone();
        let index = usize::from(input.byte().unwrap_or(0));
        let len = doc.length(&obj);
        match op % 12 {
            0 => current = 1 - current,
            1 | 2 => {
                let key = input.key();
                let value = input.scalar();
                let _ = doc.put(&obj, key, value);
            }
            3 => {
                let key = input.key();
                let kind = input.obj_type();
                if let Ok(id) = doc.put_object(&obj, key, kind) {
                    objects.push(id);
                }
            }
            4 | 5 => {
                let value = input.scalar();
                let _ = doc.insert(&obj, index.min(len), value);
            }
            6 => {
                let kind = input.obj_type();
                if let Ok(id) = doc.insert_object(&obj, index.min(len), kind) {
                    objects.push(id);
                }
            }
            7 => {
                let key = input.key();
                let _ = doc.delete(&obj, key.as_str());
            }
            8 => {
                if len > 0 {
                    let _ = doc.delete(&obj, index % len);
                }
            }
            9 => {
                // No increments: a peer's are refused at intake (finding
                // F3: Automerge sums them unchecked), so no document the
                // read model meets holds one. A counter value may.
                let key = input.key();
                let value = ScalarValue::counter(input.u64() as i64);
                let _ = doc.put(&obj, key.as_str(), value);
            }
            10 => {
                let text = input.string();
                let del = isize::from(input.byte().unwrap_or(0) % 4);
                let _ = doc.splice_text(&obj, index.min(len), del, &text);
            }
            _ => {
                // Sync the two copies midway (merges are part of the model).
                let (a, b) = docs.split_at_mut(1);
                let _ = a[0].merge(&mut b[0]);
            }
        }
    }
    let (a, b) = docs.split_at_mut(1);
    a[0].merge(&mut b[0]).ok()?;
    Some(a[0].document().clone())
}

// ---------------------------------------------------------------------------
// Targets `tablestream`, `event_envelope`, `gateway_json`: the gateway's
// pure cores are `pub(crate)`, so the work is in its `fuzzing` module
// (`gateway/src/fuzzing.rs`), which says what each checks.

/// Arbitrary bytes as `TableStream` traffic: the whole input as one
/// protobuf `Table` and one `BatchSummary`, then as a setting byte and a
/// sequence of steps (a length-delimited `Table`, the last one again, a
/// length-delimited `BatchSummary`, the TTL passing), through
/// `rows::prepare`, `staging::chunk_writes` and the batch rules.
pub fn tablestream(data: &[u8]) {
    fieldsync_gateway::fuzzing::tablestream(data);
}

/// Arbitrary bytes as the JSON body of `POST /api/v1/events`:
/// `event::parse`, `target`, `derived_key`, `fingerprint`, the record key
/// or the work-order plan, and the work order it would create or edit.
pub fn event_envelope(data: &[u8]) {
    fieldsync_gateway::fuzzing::event_envelope(data);
}

/// Arbitrary bytes as every REST request body the gateway decodes, each
/// through its pure checks; work-order bodies as typed operations applied
/// to a real work order in memory.
pub fn gateway_json(data: &[u8]) {
    fieldsync_gateway::fuzzing::json_bodies(data);
}
