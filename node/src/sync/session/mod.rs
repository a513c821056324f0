//! One sync session with one peer: the state machine (call order in the
//! parent module's docs).
//!
//! [`Session`] owns the connection-wide facts (configuration, who the peer
//! is, the phase, the negotiated version, the output queues, the progress
//! counters) and one small state per concern; each concern lives in its own
//! file with the frames it handles:
//!
//! - `hello`: the handshake. Settles the version and where each direction
//!   resumes (a checkpoint counts only for the store life it was made in).
//! - `outbound` ([`outbound::Outbound`]): our changelog to the peer, a
//!   window of announced pages (`Announce`, `Want`, `DocBatch` out,
//!   `PageDone` in). `prime` and `push` are its two shortcuts for an
//!   office (`Prime`, version 2; `AnnouncePush`, version 3), each with its
//!   receiving side.
//! - `inbound` ([`inbound::Inbound`]): the peer's pages to us. Keeps *a
//!   checkpoint is never ahead of the documents it covers*: a page's
//!   checkpoint is queued only after every document of it is merged or
//!   settled, and `PageDone` goes out only once that write is durable.
//! - `reconcile` ([`reconcile::Reconcile`]): Automerge's sync protocol per
//!   document (`DocSync`), with the changes that wait for their
//!   dependencies (orphans) and the documents refused from this peer.
//!   Every change is checked (intake limits, field rules) on a trial copy
//!   before anything is merged.
//! - `revocation` ([`revocation::Revocation`]): an office taking documents
//!   back from a technician (`Revoke`, `Revoked`, the grace timer), and a
//!   laptop confirming its purges once durable. Revokes rest on durable
//!   state only.
//! - `holding` ([`holding::Holding`]): a technician's device telling an
//!   office what it holds (protocol 5: `Holding`, `HoldingWanted`,
//!   `HoldingList`), so each device is revoked on its own, by any central.
//! - `echo` ([`echo::Echo`]): the heads the peer announced, so we do not
//!   announce its own changes back to it.
//! - `vouching` ([`vouching::Vouching`]): office keys and an office's
//!   signed word on the heads it sends (protocol 6: `OfficeKeys`,
//!   `Vouch`), so a change a device relays is judged by who accepted it.
//! - `visibility`: what the peer may see (the access policy's rule, judged
//!   on live or durable state), and what it hears when it may not.
//! - `checks`, `wire`, `config`: checks on bytes from the peer before
//!   Automerge parses them; batch encoding; [`SessionConfig`].
//!
//! Nothing here does IO or reads a clock: time comes in as `now_ms`, and
//! every output goes through `outbox`, `events` or the store's queued
//! writes. Frames and events come out in an order that depends only on the
//! inputs (never on hash-map order): the simulator replays seeds by it.

mod checks;
mod config;
mod echo;
mod hello;
mod holding;
mod inbound;
mod outbound;
mod prime;
mod push;
mod reconcile;
mod revocation;
mod visibility;
mod vouching;
mod wire;

use std::collections::VecDeque;

use fieldsync_schemas::sync_frame::{Frame, FrameError, FRAME_BYTES_MAX, PROTOCOL_VERSION_MIN};

use super::store::{SyncStore, WriteId};
use crate::access::PeerAccess;

pub use config::SessionConfig;
#[cfg(test)]
pub(super) use visibility::HIDDEN_REASON;
#[cfg(test)]
pub(super) use wire::compress_batch;

use echo::Echo;
use holding::Holding;
use inbound::Inbound;
use outbound::Outbound;
use reconcile::Reconcile;
use revocation::Revocation;
use vouching::Vouching;

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
    #[error("this office works beside another office, so a device must speak protocol {needed} to relay vouchers; it speaks {theirs_max}: upgrade it")]
    NeedsVouchers { theirs_max: u16, needed: u16 },
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

fn store_error(error: impl std::error::Error) -> SessionError {
    SessionError::Store(error.to_string())
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
    /// A change from the peer broke the field rules (or named a document
    /// the peer may not have).
    Violation {
        id: String,
        reason: String,
        /// The changes judged as the peer's own (no voucher covered them):
        /// an office compensated what broke the rules among them, a device
        /// refused them all. Empty when no change was judged (a hidden
        /// document).
        judged: Vec<automerge::ChangeHash>,
        /// An office compensated (rather than refused) what broke the rules.
        compensated: bool,
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

/// A sync session with one peer. See the module docs for the call order.
pub struct Session {
    config: SessionConfig,
    peer_node_id: String,
    peer: PeerAccess,
    phase: Phase,
    /// The protocol version both sides speak (set by the peer's hello).
    version: u16,
    outbox: VecDeque<Frame>,
    events: VecDeque<Event>,
    progress: Progress,
    /// Our changes to the peer.
    outbound: Outbound,
    /// The peer's changes to us.
    inbound: Inbound,
    /// Documents being reconciled with Automerge's sync protocol.
    reconcile: Reconcile,
    /// Documents taken back from the peer, or purged on its `Revoke`.
    revocation: Revocation,
    /// What a technician's device holds, as it told us (protocol 5).
    holding: Holding,
    /// What the peer announced, not to be announced back.
    echo: Echo,
    /// Office keys and vouchers (protocol 6).
    vouching: Vouching,
}

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
            version: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            progress: Progress::default(),
            outbound: Outbound::default(),
            inbound: Inbound::default(),
            reconcile: Reconcile::default(),
            revocation: Revocation::default(),
            holding: Holding::default(),
            echo: Echo::default(),
            vouching: Vouching::default(),
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
        progress.pending_out = self.outbound.pending_docs();
        progress.pending_in = self.inbound.pending_docs();
        progress.our_checkpoint_seq = self.inbound.checkpoint_seq();
        progress
    }

    /// Is there nothing in flight in either direction?
    pub fn is_idle<S: SyncStore>(&self, store: &S) -> bool {
        self.phase == Phase::Ready
            && self.outbound.is_settled()
            && self.inbound.is_settled()
            && !self.revocation.purges_pending()
            && !self.holding.receiving()
            && self.outbound.cursor() >= store.last_seq()
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
        self.revocation.next_timeout_ms()
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

    /// Each frame to the concern that handles it; the phase decides which
    /// frames are allowed at all.
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
            ) => self.on_announce_push(now_ms, page, upto_seq, docs, &compressed, store),
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
            (Phase::Ready, Frame::Rejected { id, reason }) => self.on_rejected(id, reason, store),
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
            (Phase::Ready, Frame::Holding { digest }) => self.on_holding(digest, store),
            (Phase::Ready, Frame::HoldingWanted) => self.on_holding_wanted(store),
            (Phase::Ready, Frame::HoldingList { ids, last }) => {
                self.on_holding_list(now_ms, ids, last, store)
            }
            (Phase::Ready, Frame::OfficeKeys { keys }) => self.on_office_keys(keys, store),
            (Phase::Ready, Frame::Vouch { vouchers }) => self.on_vouch(vouchers, store),
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
        for ids in self.revocation.durable_purges(write) {
            self.outbound.forget_announced(&ids);
            self.events.push_back(Event::Purged { ids: ids.clone() });
            self.outbox.push_back(Frame::Revoked { ids });
        }
        for (page, upto_seq) in self.inbound.durable_pages(write) {
            self.events.push_back(Event::CaughtUp { seq: upto_seq });
            self.outbox.push_back(Frame::PageDone { page, upto_seq });
        }
        self.tell_lost_copies(store)?;
        self.pump(now_ms, store)?;
        self.resend_holding(store)
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
        self.tell_lost_copies(store)?;
        self.pump(now_ms, store)?;
        self.resend_holding(store)
    }

    pub fn handle_timeout<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if self.phase != Phase::Ready {
            return Ok(());
        }
        self.revocation.disarm();
        self.send_revocations(now_ms, store)
    }

    fn count_received(&mut self, count: u64) {
        self.progress.docs_received += count;
        self.events.push_back(Event::DocsReceived { count });
    }
}
