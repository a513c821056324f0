//! The simulated world: nodes with in-memory stores, links between them,
//! a virtual clock and one seeded RNG; and the faults.
//!
//! Why this shape: the engine is sans-IO, so the world only has to do what
//! the QUIC driver does — open connections, carry encoded frames in order,
//! tell sessions when writes are durable, fire timers — while choosing,
//! from the seed, *when* each of those happens. QUIC delivers one
//! connection's stream reliably and in order, so within a connection the
//! only faults are the ones QUIC surfaces: the connection dies (frames in
//! flight are lost, both sessions dropped) and a new one starts from
//! scratch. Reordering happens *across* connections, duplication happens
//! as resends after a reconnect, and the rest is node-level: crashes that
//! lose unflushed writes, wiped laptops, revoked users, partitions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use automerge::ActorId;
use automerge::ReadDoc;
use fieldsync_node::access::{PeerAccess, ReadGrants};
use fieldsync_node::sync::{Event, MemStore, Session, SessionConfig, SyncStore, WriteId};
use fieldsync_node::vouch::Signer;
use fieldsync_schemas::sync_frame::{
    Frame, PROTOCOL_VERSION, PROTOCOL_VERSION_HOLDINGS, PROTOCOL_VERSION_RECORDS,
    PROTOCOL_VERSION_REOFFER, PROTOCOL_VERSION_VOUCH,
};
use fieldsync_schemas::Role;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Broken, SimConfig};
use crate::model::{AckedWrite, Model, PendingWrite, Stats};
use crate::trace::Trace;
use crate::{Failure, Invariant};

/// Frames delivered while healing, at most, before the run is declared
/// stuck (a livelock is a failure, not a hang).
const HEAL_ROUNDS_MAX: u64 = 400_000;
/// Frame bytes the heal may send, at most, before the run is declared
/// stuck: a livelock whose messages grow makes each round dearer, so a
/// bound on rounds alone would let one seed run for hours.
const HEAL_FRAME_BYTES_MAX: u64 = 256 << 20;
/// Largest one-way latency of a link, in ms.
const LATENCY_MS_MAX: u64 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Central,
    Tech { user: usize },
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) store: MemStore,
    pub(crate) up: bool,
    pub(crate) incarnation: u32,
    pub(crate) pending: Vec<PendingWrite>,
    /// Changelog entries already checked gap-free: (live, durable).
    pub(crate) log_checked: (usize, usize),
}

impl Node {
    pub(crate) fn is_central(&self) -> bool {
        self.kind == Kind::Central
    }

    pub(crate) fn user(&self) -> Option<usize> {
        match self.kind {
            Kind::Tech { user } => Some(user),
            Kind::Central => None,
        }
    }
}

pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) revoked: bool,
}

/// A frame on the wire, with what the trace shows of it.
pub(crate) struct InFlight {
    pub(crate) at_ms: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) summary: String,
    pub(crate) revoke: Vec<String>,
}

/// One live connection. Index 0 is the link's lower node, 1 the other.
pub(crate) struct Conn {
    pub(crate) id: u64,
    /// `sessions[i]` runs on side `i`.
    pub(crate) sessions: [Session; 2],
    /// `queues[i]` holds frames travelling *to* side `i`, in order.
    pub(crate) queues: [VecDeque<InFlight>; 2],
    pub(crate) latency_ms: u64,
}

pub(crate) struct Link {
    pub(crate) conn: Option<Conn>,
}

/// An input for one session.
enum Input<'a> {
    Start,
    Bytes(&'a [u8]),
    WriteDone(WriteId),
    LocalChange,
    Timeout,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Deliver,
    Tick,
    CentralOp,
    TechOp,
    Forbidden,
    Flush,
    Connect,
    Cut,
    Partition,
    Heal,
    Crash,
    Restart,
    Wipe,
    Jump,
    Revoke,
}

/// Relative weights of the random actions. Delivery and flushes dominate so
/// that syncs make progress between faults; faults are rare but a run of
/// 1,500 steps still sees dozens of them.
const ACTIONS: [(Action, u32); 15] = [
    (Action::Deliver, 380),
    (Action::Tick, 50),
    (Action::CentralOp, 90),
    (Action::TechOp, 150),
    (Action::Forbidden, 8),
    (Action::Flush, 150),
    (Action::Connect, 80),
    (Action::Cut, 12),
    (Action::Partition, 4),
    (Action::Heal, 8),
    (Action::Crash, 8),
    (Action::Restart, 30),
    (Action::Wipe, 2),
    (Action::Jump, 4),
    (Action::Revoke, 1),
];

pub struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now_ms: u64,
    pub(crate) step: u64,
    pub(crate) nodes: Vec<Node>,
    pub(crate) users: Vec<User>,
    pub(crate) links: BTreeMap<(usize, usize), Link>,
    /// Partition group of each node, when partitioned.
    pub(crate) groups: Option<Vec<u8>>,
    pub(crate) session_template: SessionConfig,
    pub(crate) model: Model,
    pub(crate) trace: Trace,
    pub(crate) stats: Stats,
    pub(crate) next_conn: u64,
    pub(crate) next_doc: u64,
    pub(crate) next_item: u64,
    pub(crate) docs_max: u64,
    /// A rollout in progress: every other node still speaks the previous
    /// protocol version (chosen from the seed, not drawn, so the worlds
    /// of other seeds stay as they were).
    pub(crate) rollout: bool,
}

fn new_store(rng: &mut ChaCha8Rng, broken: Broken) -> MemStore {
    let epoch: [u8; 16] = rng.random();
    let actor: [u8; 16] = rng.random();
    let mut store = MemStore::new(epoch, ActorId::from(actor.to_vec()));
    store.checkpoint_before_flush = broken == Broken::CheckpointBeforeFlush;
    store.set_read_grants(
        FIELD_COLLECTION,
        ReadGrants {
            readers: vec![Role::Technician],
        },
    );
    store
}

/// The data collection technicians may read; `OFFICE_COLLECTION` they may
/// not. The workload writes records of both at the first central.
pub(crate) const FIELD_COLLECTION: &str = "materials";
pub(crate) const OFFICE_COLLECTION: &str = "customers";

fn choose<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

fn summarize(frame: &Frame) -> String {
    let ids = |docs: &[fieldsync_schemas::sync_frame::DocHeads]| {
        docs.iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let checkpoint = |c: &Option<fieldsync_schemas::sync_frame::WireCheckpoint>| {
        c.as_ref().map_or("none".to_string(), |c| c.seq.to_string())
    };
    match frame {
        Frame::Hello {
            your_checkpoint, ..
        } => format!("hello your_checkpoint={}", checkpoint(your_checkpoint)),
        Frame::Refuse { reason } => format!("refuse ({reason})"),
        Frame::Announce {
            page,
            upto_seq,
            docs,
        } => format!("announce page={page} upto={upto_seq} docs=[{}]", ids(docs)),
        Frame::Want { page, full, sync } => format!(
            "want page={page} full=[{}] sync=[{}]",
            full.join(","),
            sync.join(",")
        ),
        Frame::DocBatch { page, compressed } => {
            format!("doc_batch page={page} {}B", compressed.len())
        }
        Frame::DocSync { id, message } => {
            // What the message says, not only its size: livelocks between
            // two sync states show up as the same summary over and over.
            let summary = match automerge::sync::Message::decode(message) {
                Ok(m) => format!(
                    " heads={} need={} have={} changes={}",
                    short_hashes(&m.heads),
                    short_hashes(&m.need),
                    m.have.len(),
                    {
                        let parts: Vec<String> = m
                            .changes
                            .iter()
                            .map(|c| match automerge::Change::from_bytes(c.to_vec()) {
                                Ok(change) => change.hash().to_string()[..6].to_string(),
                                Err(e) => format!("chunk{}B({e})", c.len()),
                            })
                            .collect();
                        format!("[{}]", parts.join(","))
                    }
                ),
                Err(_) => " (undecodable)".to_string(),
            };
            format!("doc_sync {id} {}B{summary}", message.len())
        }
        Frame::PageDone { page, upto_seq } => format!("page_done page={page} upto={upto_seq}"),
        Frame::Rejected { id, reason } => format!("rejected {id} ({reason})"),
        Frame::Revoke { ids } => format!("revoke [{}]", ids.join(",")),
        Frame::Revoked { ids } => format!("revoked [{}]", ids.join(",")),
        Frame::Prime {
            page,
            upto_seq,
            compressed,
        } => format!("prime page={page} upto={upto_seq} {}B", compressed.len()),
        Frame::Records { compressed } => format!("records {}B", compressed.len()),
        Frame::Holding { digest } => format!(
            "holding {}",
            short_hashes(&[automerge::ChangeHash(*digest)])
        ),
        Frame::HoldingWanted => "holding_wanted".to_string(),
        Frame::OfficeKeys { keys } => format!(
            "office_keys [{}]",
            keys.iter()
                .map(|k| hex::encode(&k[..3]))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Frame::Vouch { vouchers } => format!(
            "vouch [{}]",
            vouchers
                .iter()
                .map(|v| format!("{}@{}", v.id, hex::encode(&v.head[..3])))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Frame::HoldingList { ids, last } => {
            format!("holding_list [{}] last={last}", ids.join(","))
        }
        Frame::AnnouncePush {
            page,
            upto_seq,
            docs,
            compressed,
        } => format!(
            "announce_push page={page} upto={upto_seq} docs=[{}] {}B",
            ids(docs),
            compressed.len()
        ),
    }
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let centrals = cfg
            .centrals
            .unwrap_or_else(|| if rng.random_bool(0.5) { 2 } else { 1 });
        // Optionally some users carry two laptops, which then sync with
        // each other.
        let user_count = if cfg.shared_laptops {
            (cfg.techs - cfg.techs / 4).max(1)
        } else {
            cfg.techs
        };
        let users: Vec<User> = (0..user_count)
            .map(|u| User {
                id: format!("u{u}"),
                revoked: false,
            })
            .collect();
        let mut nodes = Vec::new();
        for c in 0..centrals {
            nodes.push(Node {
                name: format!("c{c}"),
                kind: Kind::Central,
                store: new_store(&mut rng, cfg.broken),
                up: true,
                incarnation: 0,
                pending: Vec::new(),
                log_checked: (0, 0),
            });
        }
        for t in 0..cfg.techs {
            nodes.push(Node {
                name: format!("t{t}"),
                kind: Kind::Tech {
                    user: t % user_count,
                },
                store: new_store(&mut rng, cfg.broken),
                up: true,
                incarnation: 0,
                pending: Vec::new(),
                log_checked: (0, 0),
            });
        }
        let mut links = BTreeMap::new();
        for a in 0..nodes.len() {
            for b in a + 1..nodes.len() {
                let linked = match (nodes[a].kind, nodes[b].kind) {
                    (Kind::Central, _) | (_, Kind::Central) => true,
                    (Kind::Tech { user: x }, Kind::Tech { user: y }) => x == y,
                };
                if linked {
                    links.insert((a, b), Link { conn: None });
                }
            }
        }
        let mut session_template = SessionConfig::new("", false);
        session_template.grace_ms = cfg.grace_ms;
        // Small pages and windows make paging, windowing and partial pages
        // happen with a handful of documents.
        session_template.pages_in_flight_max = [1, 2, 4][rng.random_range(0..3)];
        session_template.page_scan_entries_max = [1, 2, 3, 8, 512][rng.random_range(0..5)];
        let docs_max = rng.random_range(3..=10);
        // A rollout with two centrals is not a state the product allows: an
        // office beside another office refuses devices older than protocol
        // 6 (`SessionError::NeedsVouchers`; README: upgrade the devices
        // before adding a second central).
        let rollout = cfg.seed % 3 == 2 && centrals == 1;
        let mut trace = Trace::new(cfg.tail_lines, cfg.keep_trace);
        let text = format!(
            "world seed={} centrals={} techs={} users={} shared_laptops={} pages_in_flight_max={} page_scan_entries_max={} grace_ms={} docs_max={} rollout={} broken={}",
            cfg.seed,
            centrals,
            cfg.techs,
            user_count,
            cfg.shared_laptops,
            session_template.pages_in_flight_max,
            session_template.page_scan_entries_max,
            cfg.grace_ms,
            docs_max,
            rollout,
            cfg.broken
        );
        trace.push(0, 0, &text);
        for node in &nodes {
            trace.push(
                0,
                0,
                &format!("node {} actor {}", node.name, node.store.actor()),
            );
        }
        Sim {
            cfg,
            rng,
            now_ms: crate::workload::CLOCK_ZERO_MS + 1_000,
            step: 0,
            nodes,
            users,
            links,
            groups: None,
            session_template,
            model: Model::default(),
            trace,
            stats: Stats::default(),
            next_conn: 1,
            next_doc: 1,
            next_item: 1,
            docs_max,
            rollout,
        }
    }

    pub(crate) fn log(&mut self, text: &str) {
        self.trace.push(
            self.step,
            self.now_ms - crate::workload::CLOCK_ZERO_MS,
            text,
        );
    }

    /// Technician nodes whose user was revoked are out of the system: they
    /// never connect again and no invariant is owed to them.
    /// The protocol version this node speaks best: during a rollout the
    /// centrals are upgraded first (the order README.md prescribes) and
    /// every other technician's device still speaks the previous one.
    /// The previous version is the one before vouchers (5): version 7
    /// changed only what offices send each other (users), which no
    /// simulated world holds, so the rollout stays the one measured.
    pub(crate) fn protocol_version(&self, node: usize) -> u16 {
        if self.rollout && !self.nodes[node].is_central() && node % 2 == 1 {
            PROTOCOL_VERSION_VOUCH - 1
        } else {
            PROTOCOL_VERSION
        }
    }

    /// An office's signing key: from its name and the seed, the same for
    /// every session and after a wipe (the key is the node's identity, not
    /// its store's).
    pub(crate) fn signer(&self, node: usize) -> Arc<Signer> {
        let secret = format!("{} {}", self.cfg.seed, self.nodes[node].name);
        Arc::new(Signer::derive(secret.as_bytes()))
    }

    /// Does this node speak protocol version 4 (records)?
    pub(crate) fn speaks_records(&self, node: usize) -> bool {
        self.protocol_version(node) >= PROTOCOL_VERSION_RECORDS
    }

    /// Is a revocation owed to this technician's device on its own? Per
    /// device, revocation needs protocol 5 (holdings); on protocol 4 the
    /// first of a user's devices to confirm a purge clears the user's
    /// record, so another device of that user may keep the document: a
    /// known limitation of protocol 4 (simulations/README.md), owed only
    /// to a user's sole device.
    pub(crate) fn revocation_owed(&self, node: usize) -> bool {
        let Some(user) = self.nodes[node].user() else {
            return true;
        };
        let devices = self.nodes.iter().filter(|n| n.user() == Some(user)).count();
        self.protocol_version(node) >= PROTOCOL_VERSION_HOLDINGS || devices == 1
    }

    /// Is a document purged on one central's word owed back from another
    /// central that still assigns it to the device's user? Only a device of
    /// protocol 6 lists what it holds for an office to offer again; with
    /// one central nothing else can purge it.
    pub(crate) fn reoffer_owed(&self, node: usize) -> bool {
        let centrals = self.nodes.iter().filter(|n| n.is_central()).count();
        self.nodes[node].user().is_none()
            || centrals == 1
            || self.protocol_version(node) >= PROTOCOL_VERSION_REOFFER
    }

    pub(crate) fn out_of_system(&self, node: usize) -> bool {
        self.nodes[node]
            .user()
            .is_some_and(|u| self.users[u].revoked)
    }

    pub(crate) fn tech_access(&self, user: usize) -> PeerAccess {
        PeerAccess::User {
            user_id: self.users[user].id.clone(),
            role: Role::Technician,
        }
    }

    /// How `viewer` sees `node` as a peer, as the real driver would from the
    /// pinned certificate (unless the egress filter is deliberately off).
    fn access(&self, viewer: usize, node: usize) -> PeerAccess {
        match self.nodes[node].kind {
            Kind::Central => PeerAccess::Office,
            Kind::Tech { .. }
                if self.cfg.broken == Broken::EgressFilterOff
                    && self.nodes[viewer].is_central() =>
            {
                PeerAccess::Office
            }
            Kind::Tech { user } => self.tech_access(user),
        }
    }

    /// The whole run: random steps, then the final heal and its checks.
    pub fn run(&mut self) -> Result<(), Failure> {
        for _ in 0..self.cfg.steps {
            self.step += 1;
            self.random_step()?;
            self.run_timers()?;
            self.check_step()?;
        }
        self.final_heal()?;
        self.check_final()
    }

    fn random_step(&mut self) -> Result<(), Failure> {
        let total: u32 = ACTIONS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        let mut action = Action::Tick;
        for (candidate, weight) in ACTIONS {
            if roll < weight {
                action = candidate;
                break;
            }
            roll -= weight;
        }
        match action {
            Action::Deliver => self.deliver_random(),
            Action::Tick => {
                self.now_ms += self.rng.random_range(1..=500);
                Ok(())
            }
            Action::CentralOp => self.central_op(),
            Action::TechOp => self.tech_op(),
            Action::Forbidden => self.forbidden_edit(),
            Action::Flush => self.flush_random(),
            Action::Connect => self.connect_random(),
            Action::Cut => {
                let live: Vec<(usize, usize)> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.conn.is_some())
                    .map(|(k, _)| *k)
                    .collect();
                if let Some(key) = choose(&mut self.rng, &live) {
                    self.cut(key, "link cut");
                }
                Ok(())
            }
            Action::Partition => {
                self.partition();
                Ok(())
            }
            Action::Heal => {
                if self.groups.take().is_some() {
                    self.log("heal partition");
                }
                Ok(())
            }
            Action::Crash => {
                let up: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].up && !self.out_of_system(i))
                    .collect();
                if let Some(node) = choose(&mut self.rng, &up) {
                    self.crash(node);
                }
                Ok(())
            }
            Action::Restart => {
                let down: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| !self.nodes[i].up && !self.out_of_system(i))
                    .collect();
                if let Some(node) = choose(&mut self.rng, &down) {
                    self.nodes[node].up = true;
                    let text = format!("restart {}", self.nodes[node].name);
                    self.log(&text);
                }
                Ok(())
            }
            Action::Wipe => {
                let techs: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| !self.nodes[i].is_central() && !self.out_of_system(i))
                    .collect();
                if let Some(node) = choose(&mut self.rng, &techs) {
                    self.wipe(node);
                }
                Ok(())
            }
            Action::Jump => {
                let jump = self.cfg.grace_ms + self.rng.random_range(0..self.cfg.grace_ms);
                self.now_ms += jump;
                let text = format!("clock jumps {jump}ms (past the grace period)");
                self.log(&text);
                Ok(())
            }
            Action::Revoke => {
                self.revoke_random();
                Ok(())
            }
        }
    }

    // ----- the network -------------------------------------------------

    fn sides(key: (usize, usize), side: usize) -> (usize, usize) {
        if side == 0 {
            (key.0, key.1)
        } else {
            (key.1, key.0)
        }
    }

    fn may_connect(&self, key: (usize, usize)) -> bool {
        let (a, b) = key;
        let grouped = self.groups.as_ref().is_none_or(|g| g[a] == g[b]);
        self.nodes[a].up
            && self.nodes[b].up
            && grouped
            && !self.out_of_system(a)
            && !self.out_of_system(b)
    }

    fn connect_random(&mut self) -> Result<(), Failure> {
        let candidates: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(k, l)| l.conn.is_none() && self.may_connect(**k))
            .map(|(k, _)| *k)
            .collect();
        match choose(&mut self.rng, &candidates) {
            Some(key) => self.connect(key),
            None => Ok(()),
        }
    }

    pub(crate) fn connect(&mut self, key: (usize, usize)) -> Result<(), Failure> {
        let (a, b) = key;
        let session = |sim: &Sim, me: usize, peer: usize| {
            let mut config = sim.session_template.clone();
            config.node_id = sim.nodes[me].name.clone();
            config.office = sim.nodes[me].is_central();
            if sim.protocol_version(me) < PROTOCOL_VERSION {
                config.protocol_version_max = sim.protocol_version(me);
            }
            if config.office {
                config.signer = (sim.cfg.broken != Broken::VouchersOff).then(|| sim.signer(me));
                config.sole_office = sim.nodes.iter().filter(|n| n.is_central()).count() == 1;
            }
            config.peer_relays = sim.nodes[peer].user().is_some_and(|user| {
                sim.nodes.iter().filter(|n| n.user() == Some(user)).count() > 1
            });
            // From the seed, not drawn, so the world's draws stay as they
            // were: none, one grace period, or longer than any run.
            config.revocation_keep_ms =
                [0, sim.cfg.grace_ms, 1_000 * sim.cfg.grace_ms][(sim.cfg.seed / 3 % 3) as usize];
            Session::new(config, sim.nodes[peer].name.clone(), sim.access(me, peer))
        };
        let sessions = [session(self, a, b), session(self, b, a)];
        let id = self.next_conn;
        self.next_conn += 1;
        self.stats.connections += 1;
        let latency_ms = self.rng.random_range(1..=LATENCY_MS_MAX);
        let link = self.links.get_mut(&key).expect("connecting a known link");
        link.conn = Some(Conn {
            id,
            sessions,
            queues: [VecDeque::new(), VecDeque::new()],
            latency_ms,
        });
        let text = format!(
            "connect {}-{} #{id} latency={latency_ms}ms",
            self.nodes[a].name, self.nodes[b].name
        );
        self.log(&text);
        self.feed(key, 0, Input::Start)?;
        self.feed(key, 1, Input::Start)
    }

    pub(crate) fn cut(&mut self, key: (usize, usize), why: &str) {
        let Some(conn) = self.links.get_mut(&key).and_then(|l| l.conn.take()) else {
            return;
        };
        let lost = conn.queues[0].len() + conn.queues[1].len();
        let text = format!(
            "cut {}-{} #{} ({why}): {lost} frames lost",
            self.nodes[key.0].name, self.nodes[key.1].name, conn.id
        );
        self.log(&text);
    }

    fn cut_node(&mut self, node: usize, why: &str) {
        let keys: Vec<(usize, usize)> = self
            .links
            .keys()
            .filter(|(a, b)| *a == node || *b == node)
            .copied()
            .collect();
        for key in keys {
            self.cut(key, why);
        }
    }

    fn partition(&mut self) {
        let groups: Vec<u8> = (0..self.nodes.len())
            .map(|_| self.rng.random_range(0..2))
            .collect();
        let side = |g: u8| -> Vec<&str> {
            (0..self.nodes.len())
                .filter(|&i| groups[i] == g)
                .map(|i| self.nodes[i].name.as_str())
                .collect()
        };
        let text = format!(
            "partition [{}] | [{}]",
            side(0).join(","),
            side(1).join(",")
        );
        self.log(&text);
        let crossing: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|((a, b), l)| l.conn.is_some() && groups[*a] != groups[*b])
            .map(|(k, _)| *k)
            .collect();
        self.groups = Some(groups);
        for key in crossing {
            self.cut(key, "partition");
        }
    }

    /// Feed one input to one session, then move its output frames onto the
    /// wire and record its events. A session error closes the connection;
    /// between honest nodes it is a failure.
    fn feed(&mut self, key: (usize, usize), side: usize, input: Input<'_>) -> Result<(), Failure> {
        let (me, peer) = Sim::sides(key, side);
        let now_ms = self.now_ms;
        // Only an office compensates; a device refuses, and the change then
        // comes through an office (a device that has not durably learned
        // the office's key cannot verify a sibling's vouchers: seed 397).
        // A device before protocol 6 forwards no vouchers: what it relays
        // is judged as its own, by design (README: rollout order).
        let vouching = self.nodes[me].is_central()
            && self.protocol_version(me).min(self.protocol_version(peer)) >= PROTOCOL_VERSION_VOUCH;
        let Sim {
            links,
            nodes,
            rng,
            model,
            stats,
            ..
        } = self;
        let Some(conn) = links.get_mut(&key).and_then(|l| l.conn.as_mut()) else {
            return Ok(());
        };
        let store = &mut nodes[me].store;
        let session = &mut conn.sessions[side];
        let result = match input {
            Input::Start => session.start(store),
            Input::Bytes(bytes) => session.handle_bytes(now_ms, bytes, store),
            Input::WriteDone(write) => session.handle_write_done(now_ms, write, store),
            Input::LocalChange => session.handle_local_change(now_ms, store),
            Input::Timeout => session.handle_timeout(now_ms, store),
        };
        let mut lines = Vec::new();
        let mut purged_now: Vec<String> = Vec::new();
        while let Some(frame) = session.poll_frame() {
            let bytes = frame.encode();
            stats.frames += 1;
            stats.frame_bytes += bytes.len() as u64;
            let revoke = match &frame {
                Frame::Revoke { ids } => ids.clone(),
                _ => Vec::new(),
            };
            let queue = &mut conn.queues[1 - side];
            let jitter = rng.random_range(0..=conn.latency_ms / 2);
            let at_ms =
                (now_ms + conn.latency_ms + jitter).max(queue.back().map_or(0, |f| f.at_ms));
            queue.push_back(InFlight {
                at_ms,
                bytes,
                summary: summarize(&frame),
                revoke,
            });
        }
        let (me_name, peer_name) = (nodes[me].name.clone(), nodes[peer].name.clone());
        let mut office_judged = None;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Violation {
                    id,
                    reason,
                    judged,
                    compensated,
                } => {
                    stats.violations += 1;
                    let office_write = model.acked.iter().find_map(|write| {
                        let head = write.office_change.filter(|head| judged.contains(head))?;
                        Some((write, head))
                    });
                    if let Some((write, head)) = office_write.filter(|_| vouching && compensated) {
                        office_judged.get_or_insert(format!(
                            "{me_name} judged {}'s acknowledged write `{}` ({}) to {id}, relayed by {peer_name}, as the relay's own ({reason})",
                            write.origin_name,
                            write.what,
                            short_hashes(&[head])
                        ));
                    }
                    lines.push(format!(
                        "{me_name}: refuses {id} from {peer_name} ({reason})"
                    ));
                    model
                        .refused
                        .insert((me_name.clone(), peer_name.clone(), id));
                }
                Event::Rejected { id, reason } => {
                    lines.push(format!("{me_name}: {peer_name} rejected {id} ({reason})"))
                }
                Event::Purged { ids } => {
                    stats.purges += ids.len() as u64;
                    lines.push(format!("{me_name}: purged [{}] durably", ids.join(",")));
                    purged_now.extend(ids);
                }
                Event::CaughtUp { seq } => lines.push(format!(
                    "{me_name}: durably caught up with {peer_name} to seq {seq}"
                )),
                Event::PeerCaughtUp { seq } => lines.push(format!(
                    "{me_name}: {peer_name} acknowledged up to seq {seq}"
                )),
                Event::Ready { .. } => {
                    lines.push(format!("{me_name}: session with {peer_name} ready"))
                }
                Event::DocsReceived { count } => lines.push(format!(
                    "{me_name}: received {count} whole docs from {peer_name}"
                )),
            }
        }
        for line in lines {
            self.log(&line);
        }
        if let Some(detail) = office_judged {
            return Err(Failure::new(Invariant::OfficeChangeJudged, detail));
        }
        if !purged_now.is_empty() {
            // Another of the user's devices may have held these writes when
            // its own revocation came; now neither does (shared laptops,
            // seed 118).
            let name = self.nodes[me].name.clone();
            self.excuse_lost(
                &|_, _| false,
                Some(&purged_now),
                &format!("purged from {name} durably"),
            );
        }
        if let Err(error) = result {
            let (me_name, peer_name) = (&self.nodes[me].name, &self.nodes[peer].name);
            let text = format!("{me_name}: session with {peer_name} failed: {error}");
            self.log(&text);
            self.cut(key, "session error");
            if self.cfg.broken == Broken::Nothing {
                return Err(Failure::new(Invariant::Protocol, text));
            }
        }
        Ok(())
    }

    /// Directions with a frame whose delivery time has come.
    fn ready(&self) -> Vec<((usize, usize), usize)> {
        let mut ready = Vec::new();
        for (key, link) in &self.links {
            let Some(conn) = &link.conn else { continue };
            for side in 0..2 {
                if conn.queues[side]
                    .front()
                    .is_some_and(|f| f.at_ms <= self.now_ms)
                {
                    ready.push((*key, side));
                }
            }
        }
        ready
    }

    fn next_arrival(&self) -> Option<u64> {
        self.links
            .values()
            .filter_map(|l| l.conn.as_ref())
            .flat_map(|c| c.queues.iter().filter_map(|q| q.front().map(|f| f.at_ms)))
            .min()
    }

    pub(crate) fn in_flight(&self) -> bool {
        self.links
            .values()
            .filter_map(|l| l.conn.as_ref())
            .any(|c| !c.queues[0].is_empty() || !c.queues[1].is_empty())
    }

    /// Deliver one frame whose time has come, chosen at random across
    /// links; if none has, advance the clock to the next arrival.
    pub(crate) fn deliver_random(&mut self) -> Result<(), Failure> {
        let mut ready = self.ready();
        if ready.is_empty() {
            let Some(next) = self.next_arrival() else {
                return Ok(());
            };
            self.now_ms = self.now_ms.max(next);
            ready = self.ready();
        }
        let Some((key, side)) = choose(&mut self.rng, &ready) else {
            return Ok(());
        };
        let (me, peer) = Sim::sides(key, side);
        let conn = self
            .links
            .get_mut(&key)
            .and_then(|l| l.conn.as_mut())
            .expect("ready frames are on live links");
        let frame = conn.queues[side]
            .pop_front()
            .expect("ready queue has a front");
        let text = format!(
            "{}>{} #{} {}",
            self.nodes[peer].name, self.nodes[me].name, conn.id, frame.summary
        );
        self.log(&text);
        self.feed(key, side, Input::Bytes(&frame.bytes))?;
        if !frame.revoke.is_empty() {
            let name = self.nodes[me].name.clone();
            for id in &frame.revoke {
                self.model.purged.insert((name.clone(), id.clone()));
            }
            for pending in &mut self.nodes[me].pending {
                pending.doomed |= frame.revoke.contains(&pending.doc);
            }
            let ids = frame.revoke;
            self.excuse_lost(
                &|node, doc| node == me && ids.iter().any(|id| id == doc),
                Some(&ids),
                &format!("purged from {name} by revocation"),
            );
        }
        Ok(())
    }

    pub(crate) fn run_timers(&mut self) -> Result<(), Failure> {
        let keys: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(_, l)| l.conn.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            for side in 0..2 {
                let due = self.links[&key]
                    .conn
                    .as_ref()
                    .and_then(|c| c.sessions[side].poll_timeout())
                    .is_some_and(|t| t <= self.now_ms);
                if due {
                    let (me, _) = Sim::sides(key, side);
                    let text = format!(
                        "{}: timer fires on #{}",
                        self.nodes[me].name,
                        self.links[&key].conn.as_ref().map_or(0, |c| c.id)
                    );
                    self.log(&text);
                    self.feed(key, side, Input::Timeout)?;
                }
            }
        }
        Ok(())
    }

    // ----- storage -----------------------------------------------------

    fn flush_random(&mut self) -> Result<(), Failure> {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].store.queued_writes() > 0)
            .collect();
        let Some(node) = choose(&mut self.rng, &candidates) else {
            return Ok(());
        };
        let queued = self.nodes[node].store.queued_writes();
        let count = self.rng.random_range(1..=queued);
        self.flush(node, count)
    }

    /// Make `count` queued writes of `node` durable, acknowledge the typed
    /// operations among them, and tell the node's sessions.
    pub(crate) fn flush(&mut self, node: usize, count: usize) -> Result<(), Failure> {
        let queued = self.nodes[node].store.queued_writes();
        let Some(last) = self.nodes[node].store.flush_some(count) else {
            return Ok(());
        };
        let text = format!(
            "flush {}: {} of {queued} queued writes durable (up to write {last})",
            self.nodes[node].name,
            count.min(queued)
        );
        self.log(&text);
        let pending = std::mem::take(&mut self.nodes[node].pending);
        let (done, rest): (Vec<PendingWrite>, Vec<PendingWrite>) =
            pending.into_iter().partition(|p| p.write <= last);
        self.nodes[node].pending = rest;
        let doomed: Vec<String> = done
            .iter()
            .filter(|w| w.doomed)
            .map(|w| w.doc.clone())
            .collect();
        for write in done {
            self.stats.acked_writes += 1;
            let office_change = self.office_change(node, &write);
            self.model.acked.push(AckedWrite {
                origin: node,
                origin_name: self.nodes[node].name.clone(),
                doc: write.doc,
                heads: write.heads,
                acked_at_ms: self.now_ms,
                what: write.what,
                excused: None,
                office_change,
            });
        }
        if !doomed.is_empty() {
            let name = self.nodes[node].name.clone();
            self.excuse_lost(
                &|n, doc| n == node && doomed.iter().any(|d| d == doc),
                Some(&doomed),
                &format!("queued on {name} ahead of a revocation's purge"),
            );
        }
        let keys: Vec<(usize, usize)> = self
            .links
            .keys()
            .filter(|(a, b)| *a == node || *b == node)
            .copied()
            .collect();
        for key in keys {
            if self.links[&key].conn.is_some() {
                let side = usize::from(key.1 == node);
                self.feed(key, side, Input::WriteDone(last))?;
                self.feed(key, side, Input::LocalChange)?;
            }
        }
        Ok(())
    }

    /// The change a central's durable write authored: its head, when the
    /// central's current actor wrote it (a write that changed nothing
    /// leaves another's head there).
    fn office_change(&self, node: usize, write: &PendingWrite) -> Option<automerge::ChangeHash> {
        let store = &self.nodes[node].store;
        let [head] = write.heads.as_slice() else {
            return None;
        };
        let change = store.durable_doc(&write.doc)?.get_change_by_hash(head)?;
        (self.nodes[node].is_central() && *change.actor_id() == store.actor()).then_some(*head)
    }

    // ----- node faults -------------------------------------------------

    fn crash(&mut self, node: usize) {
        let lost = self.nodes[node].store.queued_writes();
        self.nodes[node].store.crash();
        self.nodes[node].pending.clear();
        self.nodes[node].up = false;
        self.stats.crashes += 1;
        let text = format!(
            "crash {}: {lost} unflushed writes lost",
            self.nodes[node].name
        );
        self.log(&text);
        self.cut_node(node, "node crashed");
        let n = &mut self.nodes[node];
        n.log_checked.0 = n.log_checked.0.min(n.store.log().len());
    }

    /// The laptop is wiped and re-enrolled: a new store (new epoch, new
    /// actor) and a new node id, for the same user.
    fn wipe(&mut self, node: usize) {
        self.cut_node(node, "laptop wiped");
        let old = self.nodes[node].name.clone();
        self.excuse_lost(
            &|n, _| n == node,
            None,
            &format!("lost with wiped laptop {old}"),
        );
        let store = new_store(&mut self.rng, self.cfg.broken);
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        n.name = format!(
            "{}w{}",
            old.split('w').next().unwrap_or(&old),
            n.incarnation
        );
        n.store = store;
        n.pending.clear();
        n.up = true;
        n.log_checked = (0, 0);
        self.stats.wipes += 1;
        let text = format!(
            "wipe {old}: re-enrolled as {} (actor {})",
            self.nodes[node].name,
            self.nodes[node].store.actor()
        );
        self.log(&text);
    }

    fn revoke_random(&mut self) {
        let active: Vec<usize> = (0..self.users.len())
            .filter(|&u| !self.users[u].revoked)
            .collect();
        let revoked = self.users.len() - active.len();
        if active.len() < 2 || revoked + 1 > self.users.len() / 2 {
            return;
        }
        let Some(user) = choose(&mut self.rng, &active) else {
            return;
        };
        self.users[user].revoked = true;
        self.stats.revoked_users += 1;
        let text = format!(
            "revoke user {}: the centrals refuse their laptops from now on",
            self.users[user].id
        );
        self.log(&text);
        let laptops: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].user() == Some(user))
            .collect();
        for node in laptops {
            self.cut_node(node, "user revoked");
            self.nodes[node].up = false;
        }
        let id = self.users[user].id.clone();
        self.excuse_lost(&|_, _| false, None, &format!("lost with revoked user {id}"));
    }

    /// After a legitimate loss (a wipe, a revocation, a purge), excuse every
    /// acknowledged write that no node still in the system holds durably,
    /// leaving out what `lost` says is going away.
    pub(crate) fn excuse_lost(
        &mut self,
        lost: &dyn Fn(usize, &str) -> bool,
        docs: Option<&[String]>,
        why: &str,
    ) {
        let mut excused = 0;
        for index in 0..self.model.acked.len() {
            let write = &self.model.acked[index];
            if write.excused.is_some() || docs.is_some_and(|docs| !docs.contains(&write.doc)) {
                continue;
            }
            let kept = (0..self.nodes.len()).any(|node| {
                !self.out_of_system(node)
                    && !lost(node, &write.doc)
                    && self.nodes[node]
                        .store
                        .durable_doc(&write.doc)
                        .is_some_and(|d| {
                            write
                                .heads
                                .iter()
                                .all(|h| d.get_change_by_hash(h).is_some())
                        })
            });
            if !kept {
                self.model.acked[index].excused = Some(why.to_string());
                excused += 1;
            }
        }
        if excused > 0 {
            self.stats.excused_writes += excused;
            let text = format!("{excused} acknowledged writes excused: {why}");
            self.log(&text);
        }
    }

    // ----- the final heal ----------------------------------------------

    /// Connect everything that may connect, flush everything, and drive to
    /// quiescence; then let the grace period pass and drive again, so every
    /// revocation is due.
    fn final_heal(&mut self) -> Result<(), Failure> {
        self.log("final heal: restart all, heal partitions, connect all");
        self.groups = None;
        for node in 0..self.nodes.len() {
            if !self.nodes[node].up && !self.out_of_system(node) {
                self.nodes[node].up = true;
            }
        }
        let keys: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for key in keys {
            if self.links[&key].conn.is_none() && self.may_connect(key) {
                self.connect(key)?;
            }
        }
        self.drive_to_quiet()?;
        let jump = self.cfg.grace_ms + 1;
        self.now_ms += jump;
        let text = format!("final heal: clock jumps {jump}ms, every grace period is over");
        self.log(&text);
        self.run_timers()?;
        self.drive_to_quiet()
    }

    pub(crate) fn quiescent(&self, key: (usize, usize)) -> bool {
        let Some(conn) = self.links.get(&key).and_then(|l| l.conn.as_ref()) else {
            return false;
        };
        (0..2).all(|side| {
            let (me, _) = Sim::sides(key, side);
            let store = &self.nodes[me].store;
            conn.queues[side].is_empty()
                && store.queued_writes() == 0
                && conn.sessions[side].is_idle(store)
                && conn.sessions[side]
                    .poll_timeout()
                    .is_none_or(|t| t > self.now_ms)
        })
    }

    fn drive_to_quiet(&mut self) -> Result<(), Failure> {
        let frame_bytes_start = self.stats.frame_bytes;
        for _ in 0..HEAL_ROUNDS_MAX {
            let heal_bytes = self.stats.frame_bytes - frame_bytes_start;
            if heal_bytes > HEAL_FRAME_BYTES_MAX {
                return Err(Failure::new(
                    Invariant::Liveness,
                    format!("no quiescence: the heal sent {heal_bytes} frame bytes"),
                ));
            }
            let mut moved = false;
            for node in 0..self.nodes.len() {
                if self.nodes[node].up && self.nodes[node].store.queued_writes() > 0 {
                    self.flush(node, usize::MAX)?;
                    moved = true;
                }
            }
            if self.in_flight() {
                self.deliver_random()?;
                moved = true;
            }
            self.run_timers()?;
            self.check_step()?;
            if !moved {
                let stuck: Vec<String> = self
                    .links
                    .iter()
                    .filter(|(k, l)| l.conn.is_some() && !self.quiescent(**k))
                    .map(|((a, b), l)| {
                        let conn = l.conn.as_ref().expect("filtered on a live connection");
                        format!(
                            "{}-{} #{} ({:?} / {:?})",
                            self.nodes[*a].name,
                            self.nodes[*b].name,
                            conn.id,
                            conn.sessions[0].progress(),
                            conn.sessions[1].progress()
                        )
                    })
                    .collect();
                if stuck.is_empty() {
                    return Ok(());
                }
                return Err(Failure::new(
                    Invariant::Liveness,
                    format!(
                        "nothing in flight, nothing to flush, yet not idle: {}",
                        stuck.join("; ")
                    ),
                ));
            }
        }
        Err(Failure::new(
            Invariant::Liveness,
            format!("no quiescence after {HEAL_ROUNDS_MAX} heal rounds"),
        ))
    }
}

fn short_hashes(hashes: &[automerge::ChangeHash]) -> String {
    let short: Vec<String> = hashes
        .iter()
        .map(|h| h.to_string()[..6].to_string())
        .collect();
    format!("[{}]", short.join(","))
}
