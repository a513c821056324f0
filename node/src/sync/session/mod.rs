//! One sync session with one peer: the state machine.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_schemas::sync_frame::{
    DocHeads, Frame, FrameError, RecordCopy, WireCheckpoint, BATCH_BYTES_MAX, FRAME_BYTES_MAX,
    PAGE_DOCS_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_PRIME,
    PROTOCOL_VERSION_PUSH, PROTOCOL_VERSION_RECORDS,
};
use fieldsync_schemas::Role;

use super::records;
use super::store::{LogEntry, SyncStore, WriteId};
use crate::access::{self, DocMeta, PeerAccess};
use crate::doc::{intake, validate_doc_id};

/// Tunables of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This node's id (certificate fingerprint).
    pub node_id: String,
    /// Is this node an office node (may author compensating changes)?
    pub office: bool,
    /// How long a reassigned technician may still send changes.
    pub grace_ms: u64,
    /// Pages announced but not yet acknowledged, at most.
    pub pages_in_flight_max: usize,
    /// Changelog entries scanned per page, at most.
    pub page_scan_entries_max: usize,
    /// Uncompressed bytes per `DocBatch`, at most.
    pub batch_bytes_max: usize,
    /// Documents being reconciled with the sync protocol at once, at most.
    pub syncing_docs_max: usize,
    pub protocol_version_max: u16,
    /// zstd level of `DocBatch` frames: higher saves bytes on the wire for
    /// CPU at the sender (the receiver's cost barely changes).
    pub batch_zstd_level: i32,
    /// Uncompressed change bytes an office pushes with one announce page
    /// (`AnnouncePush`), at most; documents past it are reconciled with
    /// the sync protocol as before.
    pub push_page_bytes_max: usize,
    /// Change bytes pushed for one document, at most: a document that
    /// changed more is reconciled instead (its changes may be more than
    /// the peer lacks, and the sync protocol sends only what it lacks).
    pub push_doc_bytes_max: usize,
    /// Bytes the compressed parts of one intake from the peer (a sync
    /// message's changes, a push, a whole document) may inflate to, in all
    /// (`doc::intake`): Automerge would inflate them with no cap.
    pub inflated_bytes_max: u64,
    /// Operations one intake from the peer may hold, at most: run-length
    /// encoding lets a few bytes claim millions (`doc::intake`).
    pub intake_ops_max: u64,
    /// Operations a document may hold after a technician's changes, at
    /// most: a larger document is refused from that peer, not merged.
    pub peer_doc_ops_max: u64,
    /// Bytes of record copies an office sends with one page, at most (at
    /// least one record goes; the page ends early past it).
    pub records_page_bytes_max: usize,
}

impl SessionConfig {
    pub fn new(node_id: impl Into<String>, office: bool) -> SessionConfig {
        SessionConfig {
            node_id: node_id.into(),
            office,
            grace_ms: access::GRACE_MS_DEFAULT,
            pages_in_flight_max: 4,
            page_scan_entries_max: PAGE_DOCS_MAX,
            batch_bytes_max: BATCH_BYTES_MAX,
            syncing_docs_max: 4 * PAGE_DOCS_MAX,
            protocol_version_max: PROTOCOL_VERSION,
            batch_zstd_level: 3,
            push_page_bytes_max: 256 * 1024,
            push_doc_bytes_max: 16 * 1024,
            inflated_bytes_max: intake::INFLATED_BYTES_MAX,
            intake_ops_max: intake::OPS_MAX,
            peer_doc_ops_max: PEER_DOC_OPS_MAX,
            records_page_bytes_max: 256 * 1024,
        }
    }
}

/// Why a session ended. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("bad frame from peer: {0}")]
    Frame(#[from] FrameError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("no common protocol version (ours {ours_min}..={ours_max}, theirs {theirs_min}..={theirs_max})")]
    Version {
        ours_min: u16,
        ours_max: u16,
        theirs_min: u16,
        theirs_max: u16,
    },
    #[error("peer refused the session: {0}")]
    Refused(String),
    #[error("store error: {0}")]
    Store(String),
    #[error("bad document `{id}` from peer: {reason}")]
    Document { id: String, reason: String },
}

fn protocol(message: impl Into<String>) -> SessionError {
    SessionError::Protocol(message.into())
}

/// Things the driver may want to show or log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Both hellos exchanged.
    Ready {
        peer_epoch: [u8; 16],
    },
    /// The peer finished a page: everything we announced up to `seq` is
    /// durable there.
    PeerCaughtUp {
        seq: u64,
    },
    /// We durably have everything the peer announced up to `seq`.
    CaughtUp {
        seq: u64,
    },
    DocsReceived {
        count: u64,
    },
    /// A change from the peer broke the field rules.
    Violation {
        id: String,
        reason: String,
    },
    /// The peer would not take one of our documents.
    Rejected {
        id: String,
        reason: String,
    },
    Purged {
        ids: Vec<String>,
    },
}

/// Counters for status displays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub docs_sent: u64,
    pub docs_received: u64,
    /// Documents announced to the peer and not yet acknowledged.
    pub pending_out: u64,
    /// Documents the peer announced that we have not finished merging.
    pub pending_in: u64,
    pub peer_acked_seq: u64,
    pub our_checkpoint_seq: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    Ready,
    Closed,
}

struct OutPage {
    upto_seq: u64,
    docs: u64,
}

struct InPage {
    page: u64,
    upto_seq: u64,
    /// Announced documents not yet merged, with the heads announced.
    waiting: HashMap<String, Vec<ChangeHash>>,
    /// Documents we asked for whole.
    full: HashSet<String>,
    checkpoint_write: Option<WriteId>,
}

/// A sync session with one peer. See the module docs for the call order.
pub struct Session {
    config: SessionConfig,
    peer_node_id: String,
    peer: PeerAccess,
    phase: Phase,
    outbox: VecDeque<Frame>,
    events: VecDeque<Event>,
    peer_epoch: [u8; 16],
    /// The protocol version both sides speak (set by the peer's hello).
    version: u16,
    // Outbound: our changes to the peer.
    out_cursor: u64,
    /// While `out_cursor` is below this, pages go out as `Prime` (whole
    /// documents, unannounced): the peer holds nothing of our changelog.
    prime_until_seq: u64,
    out_next_page: u64,
    out_pages: BTreeMap<u64, OutPage>,
    // Inbound: the peer's changes to us.
    in_next_page: u64,
    in_pages: VecDeque<InPage>,
    in_checkpoint_seq: u64,
    syncing: HashMap<String, sync::State>,
    /// Change bytes from the peer that could not apply yet (dependencies
    /// missing), by document; at most `ORPHAN_BYTES_MAX` in all.
    orphans: HashMap<String, Vec<u8>>,
    orphan_bytes: usize,
    purges: HashMap<WriteId, Vec<String>>,
    revoked_sent: HashSet<String>,
    /// Heads the peer announced, by document: announcing a document back
    /// to the peer at exactly those heads would tell it nothing (it is what
    /// it just sent us). Bounded by `PEER_HEADS_REMEMBERED_MAX`.
    peer_heads: HashMap<String, Vec<ChangeHash>>,
    /// Documents whose changes from this peer we refused (technician to
    /// technician): settled for the rest of the session.
    refused: HashSet<String>,
    /// Documents revoked because the peer offered them though it may not
    /// see them: pages wait for the peer's `Revoked`.
    revoking: HashSet<String>,
    progress: Progress,
    next_timeout_ms: Option<u64>,
}

/// What a peer hears about a document it may not have, whether it exists
/// here or not (hardening finding 7: no existence oracle over sync).
pub(crate) const HIDDEN_REASON: &str = "not a work order you may have";

const REVOCATIONS_SCAN_MAX: usize = PAGE_DOCS_MAX;
/// Bytes of not-yet-applicable changes a session keeps, at most. Past it
/// they are dropped: the peer sends them again once we name them in `need`.
const ORPHAN_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Default of `SessionConfig::peer_doc_ops_max`. A work order holds a few
/// hundred operations; a 64 KiB report typed in full is ~64k.
const PEER_DOC_OPS_MAX: u64 = 1_000_000;
/// Documents whose announced heads a session remembers, at most.
const PEER_HEADS_REMEMBERED_MAX: usize = 65_536;

impl Session {
    pub fn new(
        config: SessionConfig,
        peer_node_id: impl Into<String>,
        peer: PeerAccess,
    ) -> Session {
        assert!(config.pages_in_flight_max > 0 && config.page_scan_entries_max > 0);
        assert!(config.batch_bytes_max <= FRAME_BYTES_MAX / 2);
        // Pushed changes share the batch decoder's limit at the receiver.
        assert!(config.push_page_bytes_max <= config.batch_bytes_max);
        assert!(config.push_doc_bytes_max <= config.push_page_bytes_max);
        assert!(config.records_page_bytes_max <= config.batch_bytes_max);
        Session {
            config,
            peer_node_id: peer_node_id.into(),
            peer,
            phase: Phase::AwaitHello,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            peer_epoch: [0; 16],
            version: 0,
            out_cursor: 0,
            prime_until_seq: 0,
            out_next_page: 0,
            out_pages: BTreeMap::new(),
            in_next_page: 0,
            in_pages: VecDeque::new(),
            in_checkpoint_seq: 0,
            syncing: HashMap::new(),
            orphans: HashMap::new(),
            orphan_bytes: 0,
            purges: HashMap::new(),
            revoked_sent: HashSet::new(),
            peer_heads: HashMap::new(),
            refused: HashSet::new(),
            revoking: HashSet::new(),
            progress: Progress::default(),
            next_timeout_ms: None,
        }
    }

    pub fn peer_node_id(&self) -> &str {
        &self.peer_node_id
    }

    pub fn peer_access(&self) -> &PeerAccess {
        &self.peer
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    pub fn progress(&self) -> Progress {
        let mut progress = self.progress.clone();
        progress.pending_out = self.out_pages.values().map(|page| page.docs).sum();
        progress.pending_in = self
            .in_pages
            .iter()
            .map(|page| page.waiting.len() as u64)
            .sum();
        progress.our_checkpoint_seq = self.in_checkpoint_seq;
        progress
    }

    /// Is there nothing in flight in either direction?
    pub fn is_idle<S: SyncStore>(&self, store: &S) -> bool {
        self.phase == Phase::Ready
            && self.out_pages.is_empty()
            && self.in_pages.is_empty()
            && self.purges.is_empty()
            && self.out_cursor >= store.last_seq()
            && self.outbox.is_empty()
    }

    /// Queue our `Hello`.
    pub fn start<S: SyncStore>(&mut self, store: &S) -> Result<(), SessionError> {
        assert_eq!(self.phase, Phase::AwaitHello, "start is called once");
        let checkpoint = store.checkpoint(&self.peer_node_id).map_err(store_error)?;
        self.outbox.push_back(Frame::Hello {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: self.config.protocol_version_max,
            node_id: self.config.node_id.clone(),
            epoch: store.epoch(),
            your_checkpoint: checkpoint,
        });
        Ok(())
    }

    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should next be called (same clock as `now_ms`).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_timeout_ms
    }

    pub fn handle_bytes<S: SyncStore>(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        match Frame::decode(bytes) {
            Ok(frame) => self.handle_frame(now_ms, frame, store),
            Err(error) => {
                self.phase = Phase::Closed;
                Err(error.into())
            }
        }
    }

    pub fn handle_frame<S: SyncStore>(
        &mut self,
        now_ms: u64,
        frame: Frame,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let result = self.dispatch(now_ms, frame, store);
        if result.is_err() {
            self.phase = Phase::Closed;
        }
        result
    }

    fn dispatch<S: SyncStore>(
        &mut self,
        now_ms: u64,
        frame: Frame,
        store: &mut S,
    ) -> Result<(), SessionError> {
        match (&self.phase, frame) {
            (Phase::Closed, frame) => Err(protocol(format!("{} after close", frame.kind()))),
            (_, Frame::Refuse { reason }) => Err(SessionError::Refused(reason)),
            (
                Phase::AwaitHello,
                Frame::Hello {
                    version_min,
                    version_max,
                    node_id,
                    epoch,
                    your_checkpoint,
                },
            ) => self.on_hello(
                now_ms,
                (version_min, version_max),
                node_id,
                epoch,
                your_checkpoint,
                store,
            ),
            (Phase::AwaitHello, frame) => Err(protocol(format!("{} before hello", frame.kind()))),
            (Phase::Ready, Frame::Hello { .. }) => Err(protocol("second hello")),
            (
                Phase::Ready,
                Frame::Announce {
                    page,
                    upto_seq,
                    docs,
                },
            ) => self.on_announce(now_ms, page, upto_seq, docs, Vec::new(), store),
            (
                Phase::Ready,
                Frame::AnnouncePush {
                    page,
                    upto_seq,
                    docs,
                    compressed,
                },
            ) => {
                // Pushed changes skip the field rules (see `on_announce`):
                // only an office may push, and only in version 3.
                if self.version < PROTOCOL_VERSION_PUSH || !self.peer.is_office() {
                    return Err(protocol("only an office may push changes (version 3)"));
                }
                let pushed = decode_pushes(self.decode_batch(&compressed)?);
                if pushed.len() != docs.len() {
                    return Err(protocol(
                        "pushed changes do not match the announced documents",
                    ));
                }
                self.on_announce(now_ms, page, upto_seq, docs, pushed, store)
            }
            (Phase::Ready, Frame::Want { page, full, sync }) => {
                self.on_want(now_ms, page, full, sync, store)
            }
            (Phase::Ready, Frame::DocBatch { page, compressed }) => {
                self.on_batch(now_ms, page, &compressed, store)
            }
            (Phase::Ready, Frame::DocSync { id, message }) => {
                self.on_doc_sync(now_ms, id, &message, store)
            }
            (Phase::Ready, Frame::PageDone { page, upto_seq }) => {
                self.on_page_done(now_ms, page, upto_seq, store)
            }
            (Phase::Ready, Frame::Rejected { id, reason }) => {
                tracing::warn!(peer = %self.peer_node_id, %id, %reason, "peer rejected a document");
                self.events.push_back(Event::Rejected {
                    id: id.clone(),
                    reason,
                });
                // Whatever we were waiting for on this document will not
                // come: settle it, or its page stalls for the whole session.
                self.settle(&id);
                self.complete_pages(store)
            }
            (Phase::Ready, Frame::Revoke { ids }) => self.on_revoke(ids, store),
            (Phase::Ready, Frame::Revoked { ids }) => self.on_revoked(now_ms, ids, store),
            (
                Phase::Ready,
                Frame::Prime {
                    page,
                    upto_seq,
                    compressed,
                },
            ) => self.on_prime(now_ms, page, upto_seq, &compressed, store),
            (Phase::Ready, Frame::Records { compressed }) => self.on_records(&compressed, store),
        }
    }

    /// A write this session queued is durable.
    pub fn handle_write_done<S: SyncStore>(
        &mut self,
        now_ms: u64,
        write: WriteId,
        store: &mut S,
    ) -> Result<(), SessionError> {
        // Before the peer's hello nothing of ours is pending, and our cursor
        // is not yet the peer's checkpoint: pumping now would announce from
        // seq 0 and then again from the checkpoint, which the peer rightly
        // calls a protocol violation (found by the simulator, seed 1).
        if self.phase != Phase::Ready {
            return Ok(());
        }
        let mut purged: Vec<WriteId> = self
            .purges
            .keys()
            .copied()
            .filter(|w| *w <= write)
            .collect();
        // Hash-map order differs between processes: sort, so the frames go
        // out in the same order on every run (the simulator replays seeds).
        purged.sort_unstable();
        for purge in purged {
            if let Some(ids) = self.purges.remove(&purge) {
                self.events.push_back(Event::Purged { ids: ids.clone() });
                self.outbox.push_back(Frame::Revoked { ids });
            }
        }
        // FIFO durability: `write` and every write queued before it are
        // durable, so every page whose checkpoint write is not later is done.
        while let Some(page) = self.in_pages.front() {
            match page.checkpoint_write {
                Some(checkpoint) if checkpoint <= write => {}
                _ => break,
            }
            let Some(page) = self.in_pages.pop_front() else {
                break;
            };
            self.in_checkpoint_seq = page.upto_seq;
            self.events
                .push_back(Event::CaughtUp { seq: page.upto_seq });
            self.outbox.push_back(Frame::PageDone {
                page: page.page,
                upto_seq: page.upto_seq,
            });
        }
        self.pump(now_ms, store)
    }

    /// The local store has new changes: announce them.
    pub fn handle_local_change<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if self.phase != Phase::Ready {
            return Ok(());
        }
        // A change may be a reassignment away from this peer's user: arm
        // (or fire) its revocation now. Checking only at hello left a
        // technician connected through a reassignment holding the document
        // for ever (found by the simulator, seed 2).
        self.send_revocations(now_ms, store)?;
        self.pump(now_ms, store)
    }

    pub fn handle_timeout<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if self.phase != Phase::Ready {
            return Ok(());
        }
        self.next_timeout_ms = None;
        self.send_revocations(now_ms, store)
    }

    fn on_hello<S: SyncStore>(
        &mut self,
        now_ms: u64,
        (theirs_min, theirs_max): (u16, u16),
        node_id: String,
        epoch: [u8; 16],
        your_checkpoint: Option<WireCheckpoint>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let ours_max = self.config.protocol_version_max;
        let common = ours_max.min(theirs_max);
        if common < PROTOCOL_VERSION_MIN.max(theirs_min) {
            let error = SessionError::Version {
                ours_min: PROTOCOL_VERSION_MIN,
                ours_max,
                theirs_min,
                theirs_max,
            };
            self.outbox.push_back(Frame::Refuse {
                reason: error.to_string(),
            });
            return Err(error);
        }
        if node_id != self.peer_node_id {
            return Err(protocol(
                "hello names a node id other than the peer's certificate",
            ));
        }
        self.peer_epoch = epoch;
        self.version = common;
        // Their checkpoint for us counts only if it is for this store's
        // life: a wiped-and-recreated store restarts its seqs.
        self.out_cursor = match your_checkpoint {
            Some(checkpoint)
                if checkpoint.epoch == store.epoch() && checkpoint.seq <= store.last_seq() =>
            {
                checkpoint.seq
            }
            _ => 0,
        };
        self.progress.peer_acked_seq = self.out_cursor;
        // A peer with nothing of ours is primed with whole documents, by
        // an office only: a receiver takes unannounced documents from no
        // one else (a technician's must pass the field rules, change by
        // change). A peer that holds some documents anyway (a wiped
        // office's laptops) merges them whole: more bytes, same result.
        if self.config.office && common >= PROTOCOL_VERSION_PRIME && self.out_cursor == 0 {
            self.prime_until_seq = store.last_seq();
        }
        // Ours for them likewise: if they were wiped, start from zero.
        self.in_checkpoint_seq = match store.checkpoint(&self.peer_node_id).map_err(store_error)? {
            Some(checkpoint) if checkpoint.epoch == epoch => checkpoint.seq,
            _ => 0,
        };
        self.phase = Phase::Ready;
        self.events.push_back(Event::Ready { peer_epoch: epoch });
        self.send_revocations(now_ms, store)?;
        self.pump(now_ms, store)
    }

    /// Announce pages while the window has room and the changelog has more.
    fn pump<S: SyncStore>(&mut self, now_ms: u64, store: &mut S) -> Result<(), SessionError> {
        // Nothing newer than a purge goes out before the purge's `Revoked`:
        // the peer takes `Revoked` to mean that every page it has from us
        // so far holds the destroyed copy, and stops waiting for it.
        if !self.purges.is_empty() {
            return Ok(());
        }
        let mut pages_sent = 0;
        while self.out_pages.len() < self.config.pages_in_flight_max
            && self.out_cursor < store.last_seq()
        {
            if self.out_cursor < self.prime_until_seq {
                if !self.prime_page(now_ms, store)? {
                    break;
                }
                pages_sent += 1;
                assert!(pages_sent <= self.config.pages_in_flight_max);
                continue;
            }
            let (entries, records) = self.page_entries(now_ms, store)?;
            let Some(last) = entries.last() else { break };
            let upto_seq = last.seq;
            assert!(upto_seq > self.out_cursor, "changelog moves forward");
            self.send_records(records.upto(upto_seq));
            let mut seen = HashSet::new();
            let mut docs = Vec::new();
            let mut revocations = None;
            for entry in entries.iter().rev() {
                if !entry.is_work_order() || !seen.insert(entry.id.as_str()) {
                    continue;
                }
                if let Some(meta) = self.to_offer(entry, now_ms, store, &mut revocations)? {
                    docs.push(DocHeads {
                        id: entry.id.clone(),
                        heads: meta.heads.iter().map(|h| h.0).collect(),
                    });
                }
            }
            docs.reverse();
            let pushed = self.push_changes(&docs, &entries, store)?;
            let page = self.out_next_page;
            self.out_next_page += 1;
            self.out_cursor = upto_seq;
            self.out_pages.insert(
                page,
                OutPage {
                    upto_seq,
                    docs: docs.len() as u64,
                },
            );
            self.outbox.push_back(match pushed {
                Some(pushed) => Frame::AnnouncePush {
                    page,
                    upto_seq,
                    docs,
                    compressed: compress_batch(
                        &pushes_as_bytes(&pushed),
                        self.config.batch_zstd_level,
                    ),
                },
                None => Frame::Announce {
                    page,
                    upto_seq,
                    docs,
                },
            });
            pages_sent += 1;
            assert!(pages_sent <= self.config.pages_in_flight_max);
        }
        Ok(())
    }

    /// The changes an office pushes with a page (`AnnouncePush`), one entry
    /// per announced document, or `None` when it pushes nothing.
    ///
    /// What the peer lacks is guessed without asking: the peer holds each
    /// document as of our changelog before this page (its checkpoint, or
    /// the pages before this one, which it processes first), which is the
    /// document before its first write in this page: the dependencies of
    /// that write's heads. Exact for a local edit (one change); after a
    /// merge of several changes the guess is too new, the peer cannot apply
    /// them, and reconciles as without a push. Sending changes the peer
    /// has already costs only bytes.
    fn push_changes<S: SyncStore>(
        &mut self,
        docs: &[DocHeads],
        entries: &[LogEntry],
        store: &S,
    ) -> Result<Option<Vec<Vec<u8>>>, SessionError> {
        if !self.config.office || self.version < PROTOCOL_VERSION_PUSH || docs.is_empty() {
            return Ok(None);
        }
        // Each document's first write in this page.
        let mut first: HashMap<&str, &[ChangeHash]> = HashMap::new();
        for entry in entries.iter().filter(|entry| entry.is_work_order()) {
            first.entry(entry.id.as_str()).or_insert(&entry.heads);
        }
        let mut pushed = Vec::with_capacity(docs.len());
        let mut page_bytes = 0usize;
        for announced in docs {
            let (changes, whole) = match (
                first.get(announced.id.as_str()),
                page_bytes < self.config.push_page_bytes_max,
            ) {
                (Some(heads), true) => match store.doc(&announced.id).map_err(store_error)? {
                    Some(doc) => changes_since_write(&doc, heads),
                    None => (Vec::new(), false),
                },
                _ => (Vec::new(), false),
            };
            let fits = changes.len() <= self.config.push_doc_bytes_max
                && page_bytes + changes.len() <= self.config.push_page_bytes_max;
            if fits {
                if whole {
                    // A whole history makes a new copy, as in `on_want`.
                    self.revoked_sent.remove(&announced.id);
                }
                page_bytes += changes.len();
                pushed.push(changes);
            } else {
                pushed.push(Vec::new());
            }
        }
        Ok((page_bytes > 0).then_some(pushed))
    }

    /// The next page's changelog entries, and the records among them to
    /// send (an office, version 4); the page ends early where the records'
    /// byte budget ran out.
    fn page_entries<S: SyncStore>(
        &self,
        now_ms: u64,
        store: &S,
    ) -> Result<(Vec<LogEntry>, records::RecordsPage), SessionError> {
        let mut entries = store
            .changes_after(self.out_cursor, self.config.page_scan_entries_max)
            .map_err(store_error)?;
        if !self.config.office || self.version < PROTOCOL_VERSION_RECORDS {
            return Ok((entries, records::RecordsPage::default()));
        }
        let audience = records::Audience {
            peer: &self.peer,
            now_ms,
            grace_ms: self.config.grace_ms,
        };
        let page = records::for_page(
            &entries,
            &audience,
            self.config.records_page_bytes_max,
            store,
        )
        .map_err(store_error)?;
        if let Some(end) = page.end_before_seq {
            entries.retain(|entry| entry.seq < end);
        }
        Ok((entries, page))
    }

    /// Queue record copies just before the page frame that covers them.
    fn send_records(&mut self, copies: Vec<RecordCopy>) {
        if copies.is_empty() {
            return;
        }
        let compressed = compress_batch(&copies, self.config.batch_zstd_level);
        self.outbox.push_back(Frame::Records { compressed });
    }

    /// Record copies from an office: checked, then queued for the store
    /// before the page they precede can complete.
    fn on_records<S: SyncStore>(
        &mut self,
        compressed: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.peer.is_office() || self.version < PROTOCOL_VERSION_RECORDS {
            return Err(protocol("only an office sends records (version 4)"));
        }
        let copies: Vec<RecordCopy> = self.decode_batch(compressed)?;
        records::check_received(&copies).map_err(protocol)?;
        store.apply_records(copies).map_err(store_error)
    }

    /// The document of a changelog entry, if it goes to the peer: it exists,
    /// the peer may see it, and the peer did not just send us these heads
    /// (no echo; if the document moved on since this entry, a later entry
    /// names it).
    fn to_offer<S: SyncStore>(
        &self,
        entry: &LogEntry,
        now_ms: u64,
        store: &S,
        revocations: &mut Option<Vec<(String, u64)>>,
    ) -> Result<Option<DocMeta>, SessionError> {
        if self.peer_has(&entry.id, &entry.heads) {
            return Ok(None);
        }
        let Some(meta) = store.doc_meta(&entry.id).map_err(store_error)? else {
            return Ok(None);
        };
        if self.peer_has(&entry.id, &meta.heads)
            || !self.visible_or_durably(&entry.id, &meta, now_ms, store, revocations)?
        {
            return Ok(None);
        }
        Ok(Some(meta))
    }

    /// Send the next page of the changelog as `Prime`: the whole documents
    /// visible to the peer, until the batch is full (the page then ends
    /// early, at the last entry it covers). Returns whether a page went
    /// out (not when the changelog has nothing after our cursor).
    fn prime_page<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<bool, SessionError> {
        let (entries, records) = self.page_entries(now_ms, store)?;
        if entries.is_empty() {
            return Ok(false);
        }
        let mut upto_seq = self.out_cursor;
        let mut seen = HashSet::new();
        let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut revocations = None;
        for entry in &entries {
            assert!(entry.seq > upto_seq, "changelog moves forward");
            let visible = entry.is_work_order()
                && seen.insert(entry.id.as_str())
                && self
                    .to_offer(entry, now_ms, store, &mut revocations)?
                    .is_some();
            let bytes = if visible {
                store.doc_bytes(&entry.id).map_err(store_error)?
            } else {
                None
            };
            let Some(bytes) = bytes else {
                upto_seq = entry.seq;
                continue;
            };
            if batch_bytes + bytes.len() > self.config.batch_bytes_max && !batch.is_empty() {
                break; // The next page starts with this entry.
            }
            batch_bytes += bytes.len();
            // As in `on_want`: a `Revoked` still in flight must not clear
            // the revocation of this copy.
            self.revoked_sent.remove(&entry.id);
            batch.push((entry.id.clone(), bytes));
            upto_seq = entry.seq;
        }
        assert!(
            upto_seq > self.out_cursor,
            "a page covers at least one entry"
        );
        self.send_records(records.upto(upto_seq));
        let page = self.out_next_page;
        self.out_next_page += 1;
        self.out_cursor = upto_seq;
        let docs = batch.len() as u64;
        self.progress.docs_sent += docs;
        self.out_pages.insert(page, OutPage { upto_seq, docs });
        let compressed = compress_batch(&docs_as_bytes(&batch), self.config.batch_zstd_level);
        self.outbox.push_back(Frame::Prime {
            page,
            upto_seq,
            compressed,
        });
        Ok(true)
    }

    /// A page of an office's changelog, whole documents (see `Frame::Prime`).
    fn on_prime<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        upto_seq: u64,
        compressed: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.peer.is_office() {
            return Err(protocol("only an office node may prime"));
        }
        self.open_in_page("prime", page, upto_seq, false)?;
        let batch = decode_docs(self.decode_batch(compressed)?);
        if batch.len() > PAGE_DOCS_MAX {
            return Err(protocol("too many documents in a prime page"));
        }
        if let Some((id, _)) = batch.iter().find(|(id, _)| validate_doc_id(id).is_err()) {
            return Err(protocol(format!("bad document id in prime: {id:?}")));
        }
        let loaded = load_work_orders(&batch, self.intake_limits(), store)?;
        let mut received = 0;
        for ((id, bytes), doc) in batch.into_iter().zip(loaded) {
            let heads = doc.get_heads();
            match store.doc_meta(&id).map_err(store_error)? {
                None => {
                    store
                        .merge_loaded(&id, doc, &bytes, now_ms)
                        .map_err(store_error)?;
                }
                Some(meta) if has_all(&meta.heads, &heads, || store.doc(&id))? => {}
                Some(_) => {
                    store.merge(&id, &bytes, now_ms).map_err(store_error)?;
                }
            }
            self.remember_peer_heads(&id, &heads);
            received += 1;
        }
        self.count_received(received);
        self.in_pages.push_back(InPage {
            page,
            upto_seq,
            waiting: HashMap::new(),
            full: HashSet::new(),
            checkpoint_write: None,
        });
        self.complete_pages(store)
    }

    fn count_received(&mut self, count: u64) {
        self.progress.docs_received += count;
        self.events.push_back(Event::DocsReceived { count });
    }

    /// Check that an incoming page (`Announce` or `Prime`) comes in order,
    /// advances the peer's changelog (an empty page may repeat the last
    /// seq), and fits the window; then count it.
    fn open_in_page(
        &mut self,
        kind: &str,
        page: u64,
        upto_seq: u64,
        empty: bool,
    ) -> Result<(), SessionError> {
        if page != self.in_next_page {
            return Err(protocol(format!(
                "{kind} page {page}, expected {}",
                self.in_next_page
            )));
        }
        let last_upto = self
            .in_pages
            .back()
            .map_or(self.in_checkpoint_seq, |p| p.upto_seq);
        if upto_seq <= last_upto && !(upto_seq == last_upto && empty) {
            return Err(protocol(format!(
                "{kind} up to seq {upto_seq} does not advance past {last_upto}"
            )));
        }
        if self.in_pages.len() >= self.config.pages_in_flight_max * 2 {
            return Err(protocol("too many pages in flight"));
        }
        self.in_next_page += 1;
        Ok(())
    }

    fn on_announce<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        upto_seq: u64,
        docs: Vec<DocHeads>,
        pushed: Vec<Vec<u8>>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        self.open_in_page("announce", page, upto_seq, docs.is_empty())?;
        assert!(pushed.is_empty() || pushed.len() == docs.len());
        let mut pushed = pushed.into_iter();
        let mut waiting = HashMap::new();
        let (mut full, mut to_sync) = (Vec::new(), Vec::new());
        let mut received = 0;
        for DocHeads { id, heads } in docs {
            let push = pushed.next().unwrap_or_default();
            if validate_doc_id(&id).is_err() || waiting.contains_key(&id) {
                return Err(protocol(format!(
                    "bad or repeated document id in announce: {id:?}"
                )));
            }
            let heads: Vec<ChangeHash> = heads.into_iter().map(ChangeHash).collect();
            self.remember_peer_heads(&id, &heads);
            let mut meta = store.doc_meta(&id).map_err(store_error)?;
            // Pushed changes come from an office only (checked on receipt),
            // whose changes pass without field rules, as in `on_doc_sync`.
            let settled_before = meta.as_ref().is_some_and(|m| same_heads(&m.heads, &heads));
            if !push.is_empty() && !settled_before {
                if let Some(after) = self.apply_push(now_ms, &id, &push, meta.is_none(), store)? {
                    received += 1;
                    meta = Some(after);
                }
            }
            match meta {
                None if self.peer.is_office() => {
                    full.push(id.clone());
                    waiting.insert(id, heads);
                }
                None => self.reject_hidden(&id, "a technician may not create work orders"),
                Some(meta) if !self.visible(&id, &meta, now_ms, store)? => {
                    // The office keeps the page open until the laptop
                    // confirms the purge: if the `Revoke` is lost with the
                    // connection, the laptop announces the document again
                    // next time, instead of our checkpoint moving past it
                    // for good (simulator, seed 4528).
                    let revoke = !self.visible_durably(&id, now_ms, store)?;
                    if self.reject_invisible(&id, revoke) {
                        waiting.insert(id, heads);
                    }
                }
                Some(meta) => {
                    if same_heads(&meta.heads, &heads) {
                        continue;
                    }
                    if !has_all(&meta.heads, &heads, || store.doc(&id))? {
                        to_sync.push(id.clone());
                        // A document we refused from this peer counts as
                        // settled: waiting for it would stall the page.
                        if !self.refused.contains(&id) {
                            waiting.insert(id, heads);
                        }
                    } else if !self.refused.contains(&id) {
                        // We are ahead: the peer may never announce our
                        // extra changes to us again (its checkpoint may be
                        // past them, e.g. after it refused the document
                        // before it had it), so reconcile now (simulator,
                        // seed 25). Nothing to wait for.
                        to_sync.push(id);
                    }
                }
            }
        }
        if self.syncing.len() + to_sync.len() > self.config.syncing_docs_max {
            return Err(protocol("too many documents being reconciled"));
        }
        for id in &to_sync {
            let mut state = sync::State::new();
            let doc = store
                .doc(id)
                .map_err(store_error)?
                .ok_or_else(|| SessionError::Store(format!("`{id}` vanished")))?;
            if let Some(message) = generate_changes_only(&doc, &mut state) {
                self.outbox.push_back(Frame::DocSync {
                    id: id.clone(),
                    message: message.encode(),
                });
            }
            self.syncing.insert(id.clone(), state);
        }
        // Only whole documents need asking for: reconciling starts with our
        // `DocSync` above, and the announcer ignores `sync` (naming those
        // documents again cost ~37 bytes each on every reconnect).
        if received > 0 {
            self.count_received(received);
        }
        if !full.is_empty() {
            self.outbox.push_back(Frame::Want {
                page,
                full: full.clone(),
                sync: Vec::new(),
            });
        }
        self.in_pages.push_back(InPage {
            page,
            upto_seq,
            waiting,
            full: full.into_iter().collect(),
            checkpoint_write: None,
        });
        self.complete_pages(store)
    }

    /// Merge changes an office pushed for document `id` (`creating`: we do
    /// not hold it). Returns the document's metadata after, or `None` when
    /// nothing applied (their dependencies are missing: the push guessed
    /// wrong, and the document is reconciled or asked for whole instead).
    fn apply_push<S: SyncStore>(
        &mut self,
        now_ms: u64,
        id: &str,
        changes: &[u8],
        creating: bool,
        store: &mut S,
    ) -> Result<Option<DocMeta>, SessionError> {
        let document_error = |e: automerge::AutomergeError| SessionError::Document {
            id: id.to_string(),
            reason: e.to_string(),
        };
        let mut doc = match store.doc(id).map_err(store_error)? {
            Some(doc) => doc,
            None if creating => Automerge::new(),
            None => return Err(SessionError::Store(format!("`{id}` vanished"))),
        };
        let before = doc.get_heads();
        let checked = self.check_intake(id, changes, 0)?;
        doc.load_incremental(&changes[..checked.prefix_bytes])
            .map_err(document_error)?;
        if doc.get_heads() == before {
            return Ok(None);
        }
        // A new document whose first changes did not all arrive is asked
        // for whole; a document we hold must stay a work order.
        if creating && check_is_work_order(id, &doc).is_err() {
            return Ok(None);
        }
        check_is_work_order(id, &doc)?;
        let bytes = doc.save_after(&before);
        if creating {
            store.merge_loaded(id, doc, &bytes, now_ms)
        } else {
            store.merge(id, &bytes, now_ms)
        }
        .map_err(store_error)?;
        store.doc_meta(id).map_err(store_error)
    }

    /// Refuse a document the peer may not have, whether it exists here or
    /// not: the peer hears [`HIDDEN_REASON`] either way (no oracle for
    /// which work orders exist, hardening finding 7); `why` goes to the
    /// log and the events.
    fn reject_hidden(&mut self, id: &str, why: &str) {
        tracing::warn!(peer = %self.peer_node_id, %id, reason = why, "refusing a document from peer");
        self.events.push_back(Event::Violation {
            id: id.to_string(),
            reason: why.to_string(),
        });
        self.outbox.push_back(Frame::Rejected {
            id: id.to_string(),
            reason: HIDDEN_REASON.to_string(),
        });
    }

    /// Refuse the peer's changes to `id` for the rest of the session (not
    /// merged; the page counts the document as settled).
    fn refuse_changes(&mut self, id: &str, reason: String) {
        self.refused.insert(id.to_string());
        self.outbox.push_back(Frame::Rejected {
            id: id.to_string(),
            reason,
        });
    }

    /// The peer offered a document it may not see. The office also revokes
    /// it: a technician can hold a document it was never durably given (a
    /// central served an unflushed assignment, then crashed and lost it),
    /// for which no revocation record exists, so no timer would ever remove
    /// it (simulator, seed 103).
    ///
    /// Returns whether a purge confirmation (`Revoked`) is now awaited.
    /// `revoke`: whether the office's durable state agrees (a revoke
    /// decided on a reassignment a crash may still undo loses the laptop's
    /// copy for good, simulator seed 1786).
    fn reject_invisible(&mut self, id: &str, revoke: bool) -> bool {
        self.reject_hidden(id, "not visible to this peer");
        let technician = matches!(
            self.peer,
            PeerAccess::User {
                role: Role::Technician,
                ..
            }
        );
        if !(self.config.office && technician && revoke) {
            return false;
        }
        if self.revoked_sent.insert(id.to_string()) {
            self.outbox.push_back(Frame::Revoke {
                ids: vec![id.to_string()],
            });
        }
        self.revoking.insert(id.to_string());
        true
    }

    fn on_want<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        full: Vec<String>,
        sync: Vec<String>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.out_pages.contains_key(&page) {
            return Err(protocol(format!(
                "want for page {page}, which is not in flight"
            )));
        }
        drop(sync); // The peer starts those with DocSync.
        let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        for id in full {
            let visible = match store.doc_meta(&id).map_err(store_error)? {
                Some(meta) => self.visible_or_durably(&id, &meta, now_ms, store, &mut None)?,
                None => false,
            };
            if !visible {
                // Visibility can end between our announce and their want
                // (the grace period ran out): not a protocol error, but the
                // document is not theirs to have any more (simulator, seed 1).
                self.outbox.push_back(Frame::Rejected {
                    id,
                    reason: HIDDEN_REASON.into(),
                });
                continue;
            }
            let Some(bytes) = store.doc_bytes(&id).map_err(store_error)? else {
                continue;
            };
            if batch_bytes + bytes.len() > self.config.batch_bytes_max && !batch.is_empty() {
                self.send_batch(page, std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            batch_bytes += bytes.len();
            // The peer holds this copy from now on (perhaps only for a grace
            // period): a `Revoked` for an earlier copy, still in flight, no
            // longer proves it purged the document, and must not clear the
            // revocation of this one (simulator, seeds 3894 and 8109).
            // Refusing the copy instead would rest on a reassignment that
            // may not be durable yet (seed 153).
            self.revoked_sent.remove(&id);
            self.progress.docs_sent += 1;
            batch.push((id, bytes));
        }
        if !batch.is_empty() {
            self.send_batch(page, batch);
        }
        Ok(())
    }

    fn send_batch(&mut self, page: u64, batch: Vec<(String, Vec<u8>)>) {
        let compressed = compress_batch(&docs_as_bytes(&batch), self.config.batch_zstd_level);
        self.outbox.push_back(Frame::DocBatch { page, compressed });
    }

    /// The documents of a `DocBatch` or `Prime` (or the changes of an
    /// `AnnouncePush`), at most twice `batch_bytes_max` uncompressed.
    fn decode_batch<T: serde::de::DeserializeOwned>(
        &self,
        compressed: &[u8],
    ) -> Result<T, SessionError> {
        let plain = zstd::bulk::decompress(compressed, self.config.batch_bytes_max * 2)
            .map_err(|e| protocol(format!("undecodable document batch: {e}")))?;
        postcard::from_bytes(&plain).map_err(|e| protocol(format!("malformed document batch: {e}")))
    }

    fn on_batch<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        compressed: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        let batch = decode_docs(self.decode_batch(compressed)?);
        let limits = self.intake_limits();
        let Some(in_page) = self.in_pages.iter_mut().find(|p| p.page == page) else {
            if page < self.in_next_page {
                // The page completed meanwhile: every document it asked for
                // whole was settled by a `Revoke` that crossed our `Want`
                // (simulator, seed 6).
                return Ok(());
            }
            return Err(protocol(format!(
                "document batch for page {page}, which is not pending"
            )));
        };
        let mut received = 0;
        let mut wanted = Vec::with_capacity(batch.len());
        for (id, bytes) in batch {
            if !in_page.full.remove(&id) {
                // Settled meanwhile (we purged it on a `Revoke` that crossed
                // our `Want`; the office may have assigned it back since):
                // the office announces it again if it is ours (simulator,
                // seed 8). A document we never asked for is ignored alike.
                tracing::debug!(peer = %self.peer_node_id, %id, "ignoring a document no longer asked for");
                continue;
            }
            wanted.push((id, bytes));
        }
        let loaded = load_work_orders(&wanted, limits, store)?;
        for ((id, bytes), doc) in wanted.into_iter().zip(loaded) {
            store
                .merge_loaded(&id, doc, &bytes, now_ms)
                .map_err(store_error)?;
            in_page.waiting.remove(&id);
            received += 1;
        }
        self.count_received(received);
        self.complete_pages(store)
    }

    fn on_doc_sync<S: SyncStore>(
        &mut self,
        now_ms: u64,
        id: String,
        message: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        let Some(meta) = store.doc_meta(&id).map_err(store_error)? else {
            // Not settled: we may be waiting for this very document whole
            // (we purged it, and it was assigned back), and a purge settled
            // everything else already (simulator, seed 252).
            self.reject_hidden(&id, "unknown document");
            return Ok(());
        };
        // A document the peer may not see is settled in our pages too:
        // nothing more about it will be merged in this session (simulator,
        // seed 15).
        if !self.visible(&id, &meta, now_ms, store)? {
            let revoke = !self.visible_durably(&id, now_ms, store)?;
            self.reject_invisible(&id, revoke);
            self.settle(&id);
            return self.complete_pages(store);
        }
        if !self.syncing.contains_key(&id) && self.syncing.len() >= self.config.syncing_docs_max {
            return Err(protocol("too many documents being reconciled"));
        }
        let mut message = sync::Message::decode(message)
            .map_err(|e| protocol(format!("bad sync message for `{id}`: {e}")))?;
        if let Some(problem) = crate::doc::intake::sync_message_problem(&message) {
            return Err(protocol(format!("bad sync message for `{id}`: {problem}")));
        }
        let mut doc = store
            .doc(&id)
            .map_err(store_error)?
            .ok_or_else(|| SessionError::Store(format!("`{id}` vanished")))?;
        let before = doc.get_heads();
        let mut incoming: Vec<u8> = message.changes.iter().flatten().copied().collect();
        // Orphans were checked when they came; they inflate again with
        // these changes, so they share the budget.
        let orphans_inflated = match self.orphans.get(&id) {
            Some(orphans) => self.check_intake(&id, orphans, 0)?.inflated_bytes,
            None => 0,
        };
        let checked = self.check_intake(&id, &incoming, orphans_inflated)?;
        if !checked.is_whole(&incoming) {
            incoming.truncate(checked.prefix_bytes);
            message.changes = incoming.clone().into();
        }
        let mut trial = doc.clone();
        // Changes that arrived before their dependencies wait in Automerge's
        // queue, which the store never sees: without this the next message
        // starts from the stored document, the queue is gone, and the peer
        // (which never resends a hash) and we ask and answer for ever
        // (simulator, seeds 3102, 1756).
        if let Some(orphans) = self.orphans.get(&id) {
            trial
                .load_incremental(orphans)
                .map_err(|e| SessionError::Document {
                    id: id.clone(),
                    reason: e.to_string(),
                })?;
        }
        let mut trial_state = self.syncing.entry(id.clone()).or_default().clone();
        trial
            .receive_sync_message(&mut trial_state, message)
            .map_err(|e| SessionError::Document {
                id: id.clone(),
                reason: e.to_string(),
            })?;
        self.keep_orphans(&id, &trial, &incoming);
        // What the peer says it needs, it does not have, though we may have
        // sent it: a message can be lost to the conversation (its changes
        // were queued for missing dependencies and never stored, or it
        // crossed a refusal). Automerge never resends a hash it sent once,
        // so both sides would repeat need and have for ever (simulator,
        // seed 1756): forget having sent what was lost.
        // Forget all of them, not only the needed hash: the peer names
        // only what it can see is missing, and the ancestors it lacks are
        // behind it (the bloom filter in its `have` decides what goes).
        let resend = trial_state
            .their_need
            .as_ref()
            .is_some_and(|need| need.iter().any(|h| trial_state.sent_hashes.contains(h)));
        if resend {
            trial_state.sent_hashes.clear();
        }
        let mut accept = true;
        if trial.get_heads() != before {
            check_is_work_order(&id, &trial)?;
            if let Some(reason) = self.too_large_from_peer(&trial) {
                tracing::warn!(peer = %self.peer_node_id, %id, %reason, "refusing a document grown too large");
                accept = false;
                self.refuse_changes(&id, reason);
            }
            if let (true, PeerAccess::User { role, user_id }) = (accept, &self.peer) {
                if !self.peer.is_office() {
                    let violations = access::check_changes(*role, &trial, &before);
                    let bad_items =
                        crate::doc::items::check_appended(user_id, *role, &trial, &before, now_ms);
                    if !violations.is_empty() || !bad_items.is_empty() {
                        let reason = violations
                            .iter()
                            .map(|v| v.reason.as_str())
                            .chain(bad_items.iter().map(|bad| bad.reason.as_str()))
                            .collect::<Vec<_>>()
                            .join("; ");
                        tracing::warn!(peer = %self.peer_node_id, %id, %reason, "forbidden change from peer");
                        self.events.push_back(Event::Violation {
                            id: id.clone(),
                            reason: reason.clone(),
                        });
                        if self.config.office {
                            access::compensate(
                                &mut trial,
                                &before,
                                &violations,
                                &bad_items,
                                (now_ms / 1000) as i64,
                            )
                            .map_err(|e| SessionError::Document {
                                id: id.clone(),
                                reason: e.to_string(),
                            })?;
                        } else {
                            accept = false;
                            self.refuse_changes(&id, reason);
                        }
                    }
                }
            }
            if accept {
                let bytes = trial.save_after(&before);
                store.merge(&id, &bytes, now_ms).map_err(store_error)?;
            }
        }
        if accept {
            doc = trial;
            self.syncing.insert(id.clone(), trial_state);
        }
        let state = self.syncing.get_mut(&id).expect("inserted above");
        let reply = generate_changes_only(&doc, state);
        match reply {
            Some(reply) => self.outbox.push_back(Frame::DocSync {
                id: id.clone(),
                message: reply.encode(),
            }),
            None => {
                if state.their_heads.as_deref() == Some(doc.get_heads().as_slice()) {
                    self.syncing.remove(&id);
                }
            }
        }
        // A refused document counts as settled: its page must not stall.
        let heads = doc.get_heads();
        for page in self.in_pages.iter_mut() {
            if let Some(wanted) = page.waiting.get(&id) {
                if !accept
                    || self.refused.contains(&id)
                    || wanted
                        .iter()
                        .all(|h| heads.contains(h) || doc.get_change_by_hash(h).is_some())
                {
                    page.waiting.remove(&id);
                }
            }
        }
        self.complete_pages(store)
    }

    /// May the peer see (receive, and send changes to) document `id`? The
    /// policy's `may_see`, plus a technician's own grace period: a second
    /// reassignment within it moves `previous_assignee` on, but this user's
    /// pending changes are still owed acceptance until their own
    /// revocation record expires (simulator, seed 14).
    fn visible<S: SyncStore>(
        &self,
        id: &str,
        meta: &DocMeta,
        now_ms: u64,
        store: &S,
    ) -> Result<bool, SessionError> {
        self.visible_cached(id, meta, now_ms, store, &mut None)
    }

    /// [`Session::visible`], reading the user's revocation records at most
    /// once per `revocations` cache: a page of a central's changelog is
    /// mostly documents a technician may not see, and scanning the records
    /// for each of them was a fifth of a central's CPU with 1,000 laptops
    /// reconnecting (profile in the many-technicians bench).
    fn visible_cached<S: SyncStore>(
        &self,
        id: &str,
        meta: &DocMeta,
        now_ms: u64,
        store: &S,
        revocations: &mut Option<Vec<(String, u64)>>,
    ) -> Result<bool, SessionError> {
        // The revocation records are read only when the rule needs them.
        if access::may_see(&self.peer, meta, None, now_ms, self.config.grace_ms) {
            return Ok(true);
        }
        let PeerAccess::User {
            user_id,
            role: Role::Technician,
        } = &self.peer
        else {
            return Ok(false);
        };
        if revocations.is_none() {
            *revocations = Some(
                store
                    .revocations(user_id, REVOCATIONS_SCAN_MAX)
                    .map_err(store_error)?,
            );
        }
        let own = revoked_at(revocations.as_deref().unwrap_or_default(), id);
        Ok(access::may_see(
            &self.peer,
            meta,
            own,
            now_ms,
            self.config.grace_ms,
        ))
    }

    /// Visible now, or in what survives a crash. What we withhold from the
    /// peer (leave out of a page, refuse in a want) moves its checkpoint
    /// past the document for good, so that must not rest on a reassignment
    /// that is not durable yet: the crash that undoes it would leave the
    /// peer without a document it may see (simulator, seeds 3563, 6364).
    /// Sending it instead is safe: if the reassignment lands, the
    /// revocation removes the copy.
    fn visible_or_durably<S: SyncStore>(
        &self,
        id: &str,
        meta: &DocMeta,
        now_ms: u64,
        store: &S,
        revocations: &mut Option<Vec<(String, u64)>>,
    ) -> Result<bool, SessionError> {
        let visible = self.visible_cached(id, meta, now_ms, store, revocations)?;
        if visible || meta.durable {
            return Ok(visible);
        }
        // Never durably here (created, not flushed): nothing to judge.
        if store.durable_doc_meta(id).map_err(store_error)?.is_none() {
            return Ok(false);
        }
        self.visible_durably(id, now_ms, store)
    }

    /// [`Session::visible`], judged on what survives a crash. A document we
    /// do not durably hold cannot be judged: it counts as visible.
    fn visible_durably<S: SyncStore>(
        &self,
        id: &str,
        now_ms: u64,
        store: &S,
    ) -> Result<bool, SessionError> {
        let Some(meta) = store.durable_doc_meta(id).map_err(store_error)? else {
            return Ok(true);
        };
        if access::may_see(&self.peer, &meta, None, now_ms, self.config.grace_ms) {
            return Ok(true);
        }
        let PeerAccess::User { user_id, .. } = &self.peer else {
            return Ok(false);
        };
        let revocations = store
            .durable_revocations(user_id, REVOCATIONS_SCAN_MAX)
            .map_err(store_error)?;
        let own = revoked_at(&revocations, id);
        Ok(access::may_see(
            &self.peer,
            &meta,
            own,
            now_ms,
            self.config.grace_ms,
        ))
    }

    /// Stop waiting for a document in every pending page: it was refused
    /// or purged, so nothing more about it will arrive.
    fn settle(&mut self, id: &str) {
        self.syncing.remove(id);
        self.drop_orphans(id);
        for page in self.in_pages.iter_mut() {
            page.waiting.remove(id);
            page.full.remove(id);
        }
    }

    /// Queue the checkpoint of every leading page whose documents are all
    /// merged. The store is FIFO, so the checkpoint is durable only after
    /// those documents.
    fn complete_pages<S: SyncStore>(&mut self, store: &mut S) -> Result<(), SessionError> {
        for page in self.in_pages.iter_mut() {
            if !page.waiting.is_empty() {
                break;
            }
            if page.checkpoint_write.is_none() {
                let checkpoint = WireCheckpoint {
                    epoch: self.peer_epoch,
                    seq: page.upto_seq,
                };
                page.checkpoint_write = Some(
                    store
                        .save_checkpoint(&self.peer_node_id, checkpoint)
                        .map_err(store_error)?,
                );
            }
        }
        Ok(())
    }

    fn on_page_done<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        upto_seq: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let Some(first) = self.out_pages.keys().next().copied() else {
            return Err(protocol(format!("page {page} done, but none in flight")));
        };
        if page != first || self.out_pages[&page].upto_seq != upto_seq {
            return Err(protocol(format!("page {page} done out of order")));
        }
        self.out_pages.remove(&page);
        self.progress.peer_acked_seq = upto_seq;
        self.events.push_back(Event::PeerCaughtUp { seq: upto_seq });
        self.pump(now_ms, store)
    }

    fn send_revocations<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let PeerAccess::User {
            user_id,
            role: Role::Technician,
        } = &self.peer
        else {
            return Ok(());
        };
        if !self.config.office {
            return Ok(());
        }
        let mut ids = Vec::new();
        let mut next: Option<u64> = None;
        // Only durable reassignments: a revoke destroys data at the peer,
        // and a crash here could still undo a reassignment that is not on
        // disk, leaving the laptop without a document that is its user's
        // again, past its checkpoint for good (simulator, seed 1786).
        for (id, reassigned_at_ms) in store
            .durable_revocations(user_id, REVOCATIONS_SCAN_MAX)
            .map_err(store_error)?
        {
            let Some(meta) = store.doc_meta(&id).map_err(store_error)? else {
                continue;
            };
            if meta.assignee.as_deref() == Some(user_id.as_str()) {
                continue; // Assigned back to this user.
            }
            // The grace period runs from this user's own reassignment (the
            // revocation's time), not from the document's latest one: a
            // second reassignment within the grace period moves
            // `previous_assignee` on, and keying on it left the first
            // technician holding the document for ever (simulator, seed 0).
            let deadline = reassigned_at_ms.saturating_add(self.config.grace_ms);
            if now_ms >= deadline {
                if self.revoked_sent.insert(id.clone()) {
                    ids.push(id);
                }
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.next_timeout_ms = next;
        if !ids.is_empty() {
            self.outbox.push_back(Frame::Revoke { ids });
        }
        Ok(())
    }

    fn on_revoke<S: SyncStore>(
        &mut self,
        ids: Vec<String>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !matches!(self.peer, PeerAccess::Office) {
            return Err(protocol("only an office node may revoke documents"));
        }
        let mut last = None;
        for id in &ids {
            validate_doc_id(id)
                .map_err(|_| protocol(format!("bad document id in revoke: {id:?}")))?;
            self.syncing.remove(id);
            self.settle(id);
            last = Some(store.purge(id).map_err(store_error)?);
        }
        if let Some(write) = last {
            self.purges.insert(write, ids);
        }
        self.complete_pages(store)
    }

    fn on_revoked<S: SyncStore>(
        &mut self,
        now_ms: u64,
        ids: Vec<String>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let PeerAccess::User { user_id, .. } = &self.peer else {
            return Err(protocol("revoked from an office node"));
        };
        let user_id = user_id.clone();
        let records = store
            .revocations(&user_id, REVOCATIONS_SCAN_MAX)
            .map_err(store_error)?;
        for id in ids {
            // The peer destroyed its copy, and with it the changes our
            // pending pages from it still wait for (it announced them
            // before the purge; it announces nothing newer before this
            // `Revoked`, see `pump`): they will never come. Settling only
            // the documents we had refused left a page stalled that took
            // the document in while it was assigned back (simulator, seed
            // 4726).
            self.revoking.remove(&id);
            self.settle(&id);
            if self.revoked_sent.remove(&id) {
                // The document may have been assigned back and away again
                // while our `Revoke` travelled: that refreshed the record,
                // and the user is owed a new grace period and a new revoke.
                // Clear only a record that has expired (simulator, seed 262).
                let refreshed = records.iter().any(|(revoked, at)| {
                    *revoked == id && now_ms < at.saturating_add(self.config.grace_ms)
                });
                if !refreshed {
                    store.clear_revocation(&user_id, &id).map_err(store_error)?;
                }
            }
        }
        self.complete_pages(store)
    }
}

impl Session {
    /// Check Automerge bytes from the peer before Automerge parses them
    /// (`doc::intake`): compressed parts may inflate to the session's
    /// budget less `already_inflated_bytes`, or the session ends.
    fn check_intake(
        &self,
        id: &str,
        bytes: &[u8],
        already_inflated_bytes: u64,
    ) -> Result<intake::Checked, SessionError> {
        let mut limits = self.intake_limits();
        limits.inflated_bytes_max = limits
            .inflated_bytes_max
            .saturating_sub(already_inflated_bytes);
        check_intake(id, bytes, limits)
    }

    /// The intake limits of one whole document.
    fn intake_limits(&self) -> intake::Limits {
        intake::Limits {
            inflated_bytes_max: self.config.inflated_bytes_max,
            ops_max: self.config.intake_ops_max,
        }
    }

    /// Why `doc`, grown by a technician's changes, is refused: `None` when
    /// it is within `peer_doc_ops_max` or the peer is an office.
    fn too_large_from_peer(&self, doc: &Automerge) -> Option<String> {
        let ops = doc.stats().num_ops;
        (!self.peer.is_office() && ops > self.config.peer_doc_ops_max).then(|| {
            format!(
                "the document would hold {ops} operations, over the limit of {}",
                self.config.peer_doc_ops_max
            )
        })
    }

    /// Keep the message's changes while `doc` still has changes waiting for
    /// dependencies; forget them once everything applied.
    fn keep_orphans(&mut self, id: &str, doc: &Automerge, incoming: &[u8]) {
        if doc.get_missing_deps(&[]).is_empty() {
            self.drop_orphans(id);
            return;
        }
        if self.orphan_bytes + incoming.len() > ORPHAN_BYTES_MAX {
            self.drop_orphans(id);
            return;
        }
        self.orphan_bytes += incoming.len();
        self.orphans
            .entry(id.to_string())
            .or_default()
            .extend_from_slice(incoming);
    }

    fn drop_orphans(&mut self, id: &str) {
        if let Some(bytes) = self.orphans.remove(id) {
            self.orphan_bytes -= bytes.len();
        }
    }

    fn remember_peer_heads(&mut self, id: &str, heads: &[ChangeHash]) {
        if self.peer_heads.len() >= PEER_HEADS_REMEMBERED_MAX && !self.peer_heads.contains_key(id) {
            // Forgetting only costs announcing some documents back.
            self.peer_heads.clear();
        }
        self.peer_heads.insert(id.to_string(), heads.to_vec());
    }

    /// Did the peer announce exactly these heads for `id`?
    fn peer_has(&self, id: &str, heads: &[ChangeHash]) -> bool {
        self.peer_heads
            .get(id)
            .is_some_and(|theirs| same_heads(theirs, heads))
    }
}

/// Automerge's next sync message, never the whole document: Automerge
/// sends `save()` instead of changes when the peer lacks a third of the
/// document's changes (a v2 message). Our documents have few changes, so
/// one small edit was a third, and every edited document travelled whole:
/// 1.2 KB instead of ~250 B per edited work order in W2. A peer that lacks
/// a document gets it whole in a `DocBatch` anyway. Worse, `save()` appends
/// changes queued for missing dependencies, and the peer's
/// `load_incremental` then refuses the whole message (simulator, seed
/// 1756). Hiding the peer's v2 capability makes Automerge send changes.
fn generate_changes_only(doc: &Automerge, state: &mut sync::State) -> Option<sync::Message> {
    let capabilities = state.their_capabilities.take();
    let message = doc.generate_sync_message(state);
    state.their_capabilities = capabilities;
    message
}

/// The changes of `doc` from the write that left it at `heads` on:
/// everything not behind those heads' dependencies, and whether that is
/// the whole history (the write created the document). Empty when a head
/// is unknown (the document was purged and came back since).
fn changes_since_write(doc: &Automerge, heads: &[ChangeHash]) -> (Vec<u8>, bool) {
    let mut base = Vec::new();
    for head in heads {
        let Some(change) = doc.get_change_by_hash(head) else {
            return (Vec::new(), false);
        };
        base.extend_from_slice(change.deps());
    }
    (doc.save_after(&base), base.is_empty())
}

/// [`intake::check`], its refusal a document error that ends the session.
fn check_intake(
    id: &str,
    bytes: &[u8],
    limits: intake::Limits,
) -> Result<intake::Checked, SessionError> {
    intake::check(bytes, limits).map_err(|e| SessionError::Document {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// When `id` was reassigned away, from the user's revocation records.
fn revoked_at(revocations: &[(String, u64)], id: &str) -> Option<u64> {
    revocations
        .iter()
        .find(|(revoked, _)| revoked == id)
        .map(|(_, at_ms)| *at_ms)
}

fn same_heads(ours: &[ChangeHash], theirs: &[ChangeHash]) -> bool {
    ours.len() == theirs.len() && theirs.iter().all(|h| ours.contains(h))
}

fn store_error(error: impl std::error::Error) -> SessionError {
    SessionError::Store(error.to_string())
}

/// Does our copy hold every announced head? Compares heads first, loads the
/// document only when they differ.
fn has_all<E: std::error::Error>(
    ours: &[ChangeHash],
    announced: &[ChangeHash],
    load: impl FnOnce() -> Result<Option<Automerge>, E>,
) -> Result<bool, SessionError> {
    if announced.iter().all(|head| ours.contains(head)) {
        return Ok(true);
    }
    let Some(doc) = load().map_err(store_error)? else {
        return Ok(false);
    };
    Ok(announced
        .iter()
        .all(|head| doc.get_change_by_hash(head).is_some()))
}

/// Whole documents, `postcard`-encoded and zstd-compressed together: zstd
/// over many saved documents shares their dictionary of field names, ~290
/// B per work order instead of ~930 B (bench notes).
pub(super) fn compress_batch<T: serde::Serialize + ?Sized>(batch: &T, level: i32) -> Vec<u8> {
    let plain = postcard::to_allocvec(batch).expect("postcard encoding of a batch");
    zstd::bulk::compress(&plain, level).expect("zstd compression into memory")
}

/// A batch of whole documents as postcard writes it: `serde_bytes`, the
/// same encoding as `Vec<u8>` in one go instead of a serde call per byte.
fn docs_as_bytes(batch: &[(String, Vec<u8>)]) -> Vec<(&str, &serde_bytes::Bytes)> {
    batch
        .iter()
        .map(|(id, bytes)| (id.as_str(), serde_bytes::Bytes::new(bytes)))
        .collect()
}

/// The reading side of [`docs_as_bytes`].
fn decode_docs(batch: Vec<(String, serde_bytes::ByteBuf)>) -> Vec<(String, Vec<u8>)> {
    batch
        .into_iter()
        .map(|(id, bytes)| (id, bytes.into_vec()))
        .collect()
}

/// The changes of an `AnnouncePush` as postcard writes them (see
/// [`docs_as_bytes`]).
fn pushes_as_bytes(pushed: &[Vec<u8>]) -> Vec<&serde_bytes::Bytes> {
    pushed.iter().map(|c| serde_bytes::Bytes::new(c)).collect()
}

/// The reading side of [`pushes_as_bytes`].
fn decode_pushes(pushed: Vec<serde_bytes::ByteBuf>) -> Vec<Vec<u8>> {
    pushed.into_iter().map(|c| c.into_vec()).collect()
}

/// Whole documents a peer sent, parsed (by the store, perhaps on several
/// threads) and each checked to be the work order its id names.
fn load_work_orders<S: SyncStore>(
    batch: &[(String, Vec<u8>)],
    limits: intake::Limits,
    store: &S,
) -> Result<Vec<Automerge>, SessionError> {
    for (id, bytes) in batch {
        let checked = check_intake(id, bytes, limits)?;
        if !checked.is_whole(bytes) {
            return Err(SessionError::Document {
                id: id.clone(),
                reason: format!(
                    "unreadable Automerge chunk at byte {}",
                    checked.prefix_bytes
                ),
            });
        }
    }
    let loaded = store.load_docs(batch);
    assert_eq!(loaded.len(), batch.len());
    batch
        .iter()
        .zip(loaded)
        .map(|((id, _), doc)| {
            let doc = doc.map_err(|e| SessionError::Document {
                id: id.clone(),
                reason: e.to_string(),
            })?;
            check_is_work_order(id, &doc)?;
            Ok(doc)
        })
        .collect()
}

fn check_is_work_order(id: &str, doc: &Automerge) -> Result<(), SessionError> {
    let field = |key: &str| {
        doc.get(automerge::ROOT, key)
            .ok()
            .flatten()
            .and_then(|(v, _)| v.as_str().map(str::to_string))
    };
    if field("kind").as_deref() != Some("work_order") || field("id").as_deref() != Some(id) {
        return Err(SessionError::Document {
            id: id.to_string(),
            reason: "not a work order with this id".into(),
        });
    }
    Ok(())
}
