//! What the harness remembers about the run so the invariants have
//! something to compare against: every acknowledged write, who ever held
//! each work order, which documents were refused or purged where.
//!
//! All maps are ordered (`BTreeMap`/`BTreeSet`): iteration order is part of
//! the trace, and the trace must replay byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;
use fieldsync_node::sync::WriteId;

/// A typed operation queued on a node's store, not yet durable.
#[derive(Clone, Debug)]
pub(crate) struct PendingWrite {
    pub(crate) write: WriteId,
    pub(crate) doc: String,
    pub(crate) heads: Vec<ChangeHash>,
    pub(crate) what: String,
    /// A `Revoke` for this document reached the node while this write was
    /// queued: the purge that follows it in the queue will remove it.
    pub(crate) doomed: bool,
}

/// A typed operation that became durable: the user was told it is saved.
#[derive(Clone, Debug)]
pub(crate) struct AckedWrite {
    pub(crate) origin: usize,
    pub(crate) origin_name: String,
    pub(crate) doc: String,
    pub(crate) heads: Vec<ChangeHash>,
    pub(crate) acked_at_ms: u64,
    pub(crate) what: String,
    /// Why losing it is allowed (a wiped laptop, a revoked user, a purge
    /// after the grace period), if it became so.
    pub(crate) excused: Option<String>,
    /// A central's write: the change it authored (`None` when the write
    /// changed nothing, or the node is a technician's).
    pub(crate) office_change: Option<ChangeHash>,
}

#[derive(Default)]
pub(crate) struct Model {
    pub(crate) acked: Vec<AckedWrite>,
    /// Every assignee a work order ever had anywhere ("" = unassigned),
    /// including forged ones: a technician is owed only documents that were
    /// never anyone else's.
    pub(crate) assignees_ever: BTreeMap<String, BTreeSet<String>>,
    /// (judging node, peer node, doc): the judge refused the peer's
    /// changes to the doc (a `Violation` event).
    pub(crate) refused: BTreeSet<(String, String, String)>,
    /// (node, doc): the node was told to purge the doc.
    pub(crate) purged: BTreeSet<(String, String)>,
    /// (node, peer, peer epoch) -> peer changelog seq already verified
    /// against the node's durable state.
    pub(crate) checkpoint_verified: BTreeMap<(String, String, [u8; 16]), u64>,
    /// (central, durable?, doc) -> heads already found free of forged
    /// values: a document is read again only when it changed.
    pub(crate) forbidden_checked: BTreeMap<(String, bool, String), Vec<ChangeHash>>,
    /// (node, node, doc) -> heads at which the pair's derived statuses were
    /// compared (slow checks).
    pub(crate) status_checked: BTreeMap<(String, String, String), Vec<ChangeHash>>,
    /// Acknowledged writes already found in their author's durable state
    /// (slow checks).
    pub(crate) own_writes_checked: usize,
    /// Slow-check rounds run (steps and heal rounds alike).
    pub(crate) slow_rounds: u64,
}

/// Counters shown in a run's summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub frames: u64,
    pub frame_bytes: u64,
    pub connections: u64,
    pub ops_ok: u64,
    pub ops_refused: u64,
    pub forbidden_edits: u64,
    pub violations: u64,
    pub crashes: u64,
    pub wipes: u64,
    pub revoked_users: u64,
    pub purges: u64,
    pub acked_writes: u64,
    pub excused_writes: u64,
    pub docs: u64,
}
