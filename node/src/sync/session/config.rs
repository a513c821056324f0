//! The tunables of a session ([`SessionConfig`]): window sizes, batch and
//! push budgets, and the limits on what a peer may make us parse or hold.
//! Every one has a default here; the drivers (QUIC, simulator, benches)
//! override a few.

use std::sync::Arc;

use fieldsync_schemas::sync_frame::{BATCH_BYTES_MAX, PAGE_DOCS_MAX, PROTOCOL_VERSION};

use crate::access;
use crate::doc::intake;
use crate::vouch::Signer;

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
    /// An office's signing key: it vouches with it for the documents it
    /// sends to a device that may relay them (`crate::vouch`). `None`: no
    /// vouchers (a technician's device, or an office before version 6).
    pub signer: Option<Arc<Signer>>,
    /// May the peer pass our changes on to a node we do not reach through
    /// this session? The driver knows: the peer's user has another device.
    /// (An office also vouches when it knows another office.)
    pub peer_relays: bool,
    /// Is this office the only one (no other office configured)? Then a
    /// work order a technician's device holds and this office does not was
    /// lost here (a creation served before its flush, then a crash), and
    /// the device drops it too; with another office it may simply not have
    /// arrived yet, and only the holder's user's rules apply.
    pub sole_office: bool,
    /// How long past its grace period an office keeps a user's revocation
    /// record once one of the user's devices confirmed the purge, when the
    /// user has other devices (`peer_relays`). Each session reads the
    /// records when a change lands, and another device's session may read
    /// them a moment after this one cleared it: the other device, still
    /// connected, then kept the document (black-box test `office_pair`).
    /// An offline device learns from its holdings list on return.
    pub revocation_keep_ms: u64,
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
            signer: None,
            peer_relays: false,
            sole_office: false,
            revocation_keep_ms: REVOCATION_KEEP_MS_DEFAULT,
        }
    }
}

/// Default of `SessionConfig::revocation_keep_ms`: a day, for the other
/// devices' sessions to read the record; meanwhile each hello of the
/// user's devices costs a `Revoke` and a `Revoked` per such record.
pub(super) const REVOCATION_KEEP_MS_DEFAULT: u64 = 24 * 3600 * 1000;

/// Default of `SessionConfig::peer_doc_ops_max`. A work order holds a few
/// hundred operations; a 64 KiB report typed in full is ~64k.
const PEER_DOC_OPS_MAX: u64 = 1_000_000;
