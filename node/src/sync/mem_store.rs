//! An in-memory [`SyncStore`] that models durability, for engine tests and
//! the simulator.
//!
//! Every write is applied at once to the *live* state (what reads see) and
//! queued; [`MemStore::flush`] makes queued writes durable in order, and
//! [`MemStore::crash`] throws away everything not yet flushed, exactly as a
//! process killed before its fsync would. Maps are ordered (`BTreeMap`) so
//! that a simulation replays identically from a seed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use automerge::{ActorId, Automerge, ChangeHash};
use fieldsync_schemas::sync_frame::{
    holdings_digest, Hash, OfficeKey, RecordCopy, Voucher, WireCheckpoint, OFFICE_KEYS_MAX,
};
use fieldsync_schemas::{Actor, Collection, CollectionKind, NewWorkOrder, Role};
use sha2::{Digest, Sha256};

use super::store::{HeldRecord, LogEntry, ReaderPage, SyncStore, WriteId, REVOKED_DOCS_READ_MAX};
use crate::access::{self, DocMeta, PeerAccess, ReadGrants};
use crate::doc::{OpError, Operation, WorkOrderDoc};
use crate::reassignment::{self, reassignment, Before};

#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("bad document bytes for `{id}`: {reason}")]
    Document { id: String, reason: String },
    #[error("no document `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Op(#[from] OpError),
}

/// A queued write.
#[derive(Clone, Debug)]
pub enum MemOp {
    Merge {
        id: String,
        bytes: Vec<u8>,
        now_ms: u64,
    },
    Checkpoint {
        peer: String,
        checkpoint: WireCheckpoint,
    },
    Purge {
        id: String,
    },
    /// A changelog entry for the document at its heads (`SyncStore::touch`).
    Touch {
        id: String,
    },
    ClearRevocation {
        user: String,
        id: String,
    },
    /// Record copies, each stored if newer than the one here (a local
    /// write is a copy at the next version).
    Records {
        copies: Vec<RecordCopy>,
    },
    /// Office keys heard from an office.
    OfficeKeys {
        keys: Vec<OfficeKey>,
    },
    /// Vouchers for one document, merged with those held.
    Vouchers {
        id: String,
        vouchers: Vec<Voucher>,
    },
}

#[derive(Clone, Debug)]
struct MemDoc {
    doc: Automerge,
    meta: DocMeta,
    /// The seq of the document's latest changelog entry.
    last_seq: u64,
}

#[derive(Clone, Debug, Default)]
struct MemState {
    docs: BTreeMap<String, MemDoc>,
    /// Entry `i` has seq `i + 1`: gap-free by construction.
    log: Vec<LogEntry>,
    checkpoints: BTreeMap<String, WireCheckpoint>,
    revocations: BTreeMap<(String, String), u64>,
    /// The reader index, as the sled store keeps it
    /// (`store/reader_index.rs`): (user, seq) of each work-order entry
    /// written while the user was its assignee or previous assignee.
    user_log: BTreeSet<(String, u64)>,
    /// The seqs of data records' entries.
    record_log: BTreeSet<u64>,
    records: BTreeMap<(String, String), RecordCopy>,
    office_keys: Vec<OfficeKey>,
    vouchers: BTreeMap<String, Vec<Voucher>>,
}

impl MemState {
    /// [`SyncStore::changes_for`] on this state: the reader index's seqs
    /// for `user`, the data records', and the latest entry of each
    /// document in `user`'s revocation records.
    fn changes_for(&self, user: &str, after: u64, limit: usize) -> ReaderPage {
        let last = self.log.len() as u64;
        if after >= last || limit == 0 {
            return ReaderPage {
                entries: Vec::new(),
                covered_upto_seq: after,
            };
        }
        let range = (user.to_string(), after + 1)..=(user.to_string(), last);
        let work_orders: Vec<u64> = self
            .user_log
            .range(range)
            .take(limit)
            .map(|k| k.1)
            .collect();
        let mut covered = match work_orders.last() {
            Some(seq) if work_orders.len() >= limit => *seq,
            _ => last,
        };
        let records: Vec<u64> = self
            .record_log
            .range(after + 1..=covered)
            .take(limit)
            .copied()
            .collect();
        if records.len() >= limit {
            covered = covered.min(records.last().copied().unwrap_or(covered));
        }
        let revoked = self.revocations_of(user, REVOKED_DOCS_READ_MAX).into_iter();
        let revoked = revoked.filter_map(|(id, _)| self.docs.get(&id).map(|d| d.last_seq));
        let seqs: BTreeSet<u64> = work_orders
            .into_iter()
            .chain(records)
            .chain(revoked)
            .collect();
        let (seqs, covered) = crate::sync::cut_reader_page(seqs, after, covered, limit);
        ReaderPage {
            entries: seqs
                .iter()
                .map(|seq| self.log[*seq as usize - 1].clone())
                .collect(),
            covered_upto_seq: covered,
        }
    }

    fn revocations_of(&self, user: &str, limit: usize) -> Vec<(String, u64)> {
        self.revocations
            .range((user.to_string(), String::new())..)
            .take_while(|((u, _), _)| u == user)
            .take(limit)
            .map(|((_, id), at)| (id.clone(), *at))
            .collect()
    }

    /// Append a changelog entry for work order `id` at `heads`.
    /// Append a changelog entry for work order `id` at its heads, and
    /// index it for its assignee and previous assignee (the reader index).
    fn log_work_order(&mut self, id: &str) {
        let Some(entry) = self.docs.get_mut(id) else {
            return;
        };
        let seq = self.log.len() as u64 + 1;
        entry.last_seq = seq;
        let previous = entry.meta.previous_assignee.as_ref();
        let previous = previous.filter(|p| Some(*p) != entry.meta.assignee.as_ref());
        for user in [entry.meta.assignee.as_ref(), previous]
            .into_iter()
            .flatten()
        {
            self.user_log.insert((user.clone(), seq));
        }
        self.log.push(LogEntry {
            seq,
            collection: Collection::WorkOrders,
            version: 0,
            id: id.to_string(),
            heads: entry.meta.heads.clone(),
        });
    }

    fn apply(&mut self, op: &MemOp, actor: &ActorId) -> Result<Vec<ChangeHash>, MemError> {
        match op {
            MemOp::Merge { id, bytes, now_ms } => {
                let error = |e: automerge::AutomergeError| MemError::Document {
                    id: id.clone(),
                    reason: e.to_string(),
                };
                let (entry, unassigned_before) = match self.docs.get_mut(id) {
                    Some(entry) => {
                        let before = crate::doc::unassigned(&entry.doc);
                        entry.doc.load_incremental(bytes).map_err(error)?;
                        (entry, Some(before))
                    }
                    None => {
                        let mut doc = Automerge::load(bytes).map_err(error)?;
                        doc.set_actor(actor.clone());
                        let entry = self.docs.entry(id.clone()).or_insert(MemDoc {
                            doc,
                            meta: DocMeta::default(),
                            last_seq: 0,
                        });
                        (entry, None)
                    }
                };
                let heads = entry.doc.get_heads();
                if heads == entry.meta.heads {
                    return Ok(heads);
                }
                let assignee = crate::doc::assignee(&entry.doc);
                // The reassignment rule, as the sled store applies it.
                let changed = reassignment::changed_entries(
                    unassigned_before.as_deref().unwrap_or_default(),
                    &crate::doc::unassigned(&entry.doc),
                );
                let before = unassigned_before
                    .is_some()
                    .then_some(Before::of(&entry.meta));
                let rule = reassignment(before, assignee.as_deref(), &changed, *now_ms);
                if let Some(assignee) = &rule.unrevoke {
                    self.revocations.remove(&(assignee.clone(), id.clone()));
                }
                for (user, at_ms) in rule.revoke {
                    self.revocations.insert((user, id.clone()), at_ms);
                }
                entry.meta.previous_assignee = rule.previous_assignee;
                entry.meta.reassigned_at_ms = rule.reassigned_at_ms;
                entry.meta.assignee = assignee;
                entry.meta.heads = heads.clone();
                self.log_work_order(id);
                Ok(heads)
            }
            MemOp::Checkpoint { peer, checkpoint } => {
                self.checkpoints.insert(peer.clone(), checkpoint.clone());
                Ok(Vec::new())
            }
            MemOp::Touch { id } => {
                let Some(entry) = self.docs.get(id) else {
                    return Ok(Vec::new());
                };
                let heads = entry.meta.heads.clone();
                self.log_work_order(id);
                Ok(heads)
            }
            MemOp::Purge { id } => {
                self.docs.remove(id);
                Ok(Vec::new())
            }
            MemOp::ClearRevocation { user, id } => {
                self.revocations.remove(&(user.clone(), id.clone()));
                Ok(Vec::new())
            }
            MemOp::OfficeKeys { keys } => {
                for key in keys {
                    if !self.office_keys.contains(key) && self.office_keys.len() < OFFICE_KEYS_MAX {
                        self.office_keys.push(*key);
                    }
                }
                Ok(Vec::new())
            }
            MemOp::Vouchers { id, vouchers } => {
                let held = self.vouchers.remove(id).unwrap_or_default();
                self.vouchers
                    .insert(id.clone(), crate::vouch::merged(held, vouchers));
                Ok(Vec::new())
            }
            MemOp::Records { copies } => {
                for copy in copies {
                    let slot = (copy.collection.clone(), copy.key.clone());
                    if self
                        .records
                        .get(&slot)
                        .is_some_and(|held| held.version >= copy.version)
                    {
                        continue;
                    }
                    self.records.insert(slot, copy.clone());
                    let seq = self.log.len() as u64 + 1;
                    if CollectionKind::of(&copy.collection) == CollectionKind::Data {
                        self.record_log.insert(seq);
                    }
                    self.log.push(LogEntry {
                        seq,
                        collection: Collection::Reference(copy.collection.clone()),
                        id: copy.key.clone(),
                        version: copy.version,
                        heads: Vec::new(),
                    });
                }
                Ok(Vec::new())
            }
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct MemStore {
    epoch: [u8; 16],
    actor: ActorId,
    live: MemState,
    durable: MemState,
    queued: VecDeque<(WriteId, MemOp)>,
    next_write: WriteId,
    /// Test hook: a broken variant that pretends checkpoints are durable
    /// before the documents they cover (the simulator must catch it).
    pub checkpoint_before_flush: bool,
    /// Read grants by collection, as configuration sets them.
    grants: BTreeMap<String, ReadGrants>,
    /// Changelog entries handed to readers so far (tests: what a session
    /// costs the store).
    entries_read: ReadCount,
}

/// A count a `&self` read may bump. Atomic, not a `Cell`, so a `MemStore`
/// stays `Sync` (the fuzz targets keep stores in a static); a clone starts
/// from the same count.
#[derive(Debug, Default)]
struct ReadCount(AtomicU64);

impl Clone for ReadCount {
    fn clone(&self) -> ReadCount {
        ReadCount(AtomicU64::new(self.get()))
    }
}

impl ReadCount {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }
}

impl MemStore {
    pub fn new(epoch: [u8; 16], actor: ActorId) -> MemStore {
        MemStore {
            epoch,
            actor,
            live: MemState::default(),
            durable: MemState::default(),
            queued: VecDeque::new(),
            next_write: 1,
            checkpoint_before_flush: false,
            grants: BTreeMap::new(),
            entries_read: ReadCount::default(),
        }
    }

    /// Changelog entries `changes_after` and `changes_for` returned so far.
    pub fn entries_read(&self) -> u64 {
        self.entries_read.get()
    }

    fn count_read(&self, entries: usize) {
        self.entries_read.add(entries as u64);
    }

    /// Who may read `collection` (the default otherwise).
    pub fn set_read_grants(&mut self, collection: &str, grants: ReadGrants) {
        self.grants.insert(collection.to_string(), grants);
    }

    /// Write a record here (an office's own write): the next version, or a
    /// tombstone when `value` is `None`.
    pub fn write_record(
        &mut self,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<WriteId, MemError> {
        let slot = (collection.to_string(), key.to_string());
        let version = self.live.records.get(&slot).map_or(0, |held| held.version) + 1;
        let copy = RecordCopy {
            collection: collection.to_string(),
            key: key.to_string(),
            version,
            deleted: value.is_none(),
            value: value.unwrap_or_default(),
        };
        Ok(self.queue(MemOp::Records { copies: vec![copy] })?.0)
    }

    /// Forget every kept voucher, as a store of protocol 5 never had any
    /// (tests).
    pub fn forget_vouchers(&mut self) {
        self.live.vouchers.clear();
        self.durable.vouchers.clear();
    }

    /// Every record held (live state), deleted ones included.
    pub fn records(&self) -> impl Iterator<Item = &RecordCopy> {
        self.live.records.values()
    }

    fn queue(&mut self, op: MemOp) -> Result<(WriteId, Vec<ChangeHash>), MemError> {
        let heads = self.live.apply(&op, &self.actor)?;
        let write = self.next_write;
        self.next_write += 1;
        if self.checkpoint_before_flush && matches!(op, MemOp::Checkpoint { .. }) {
            self.durable.apply(&op, &self.actor)?;
        }
        self.queued.push_back((write, op));
        Ok((write, heads))
    }

    /// Make every queued write durable. Returns the last write made durable.
    pub fn flush(&mut self) -> Option<WriteId> {
        self.flush_some(usize::MAX)
    }

    /// Make at most `count` queued writes durable, oldest first.
    pub fn flush_some(&mut self, count: usize) -> Option<WriteId> {
        let mut last = None;
        for _ in 0..count {
            let Some((write, op)) = self.queued.pop_front() else {
                break;
            };
            // The op applied to the live state already; it cannot fail now.
            self.durable
                .apply(&op, &self.actor)
                .expect("replaying a write that already applied");
            last = Some(write);
        }
        last
    }

    pub fn queued_writes(&self) -> usize {
        self.queued.len()
    }

    /// Lose everything not flushed, as a killed process would, and come
    /// back as a new actor, as a restarted process must: changes made
    /// before the crash may have reached peers before they were durable,
    /// and writing again as the old actor would reuse their sequence
    /// numbers for different changes, which Automerge refuses ("duplicate
    /// seq") on every later sync (found by the simulator, seed 0).
    pub fn crash(&mut self) {
        self.live = self.durable.clone();
        self.queued.clear();
        self.next_actor();
    }

    /// Write as a new actor from now on (see [`SyncStore::actor`]).
    fn next_actor(&mut self) {
        let next = Sha256::digest(self.actor.to_bytes());
        self.actor = ActorId::from(next[..16].to_vec());
        for state in [&mut self.live, &mut self.durable] {
            for entry in state.docs.values_mut() {
                entry.doc.set_actor(self.actor.clone());
            }
        }
    }

    /// Create a work order through the typed operation. Returns its write.
    pub fn create(
        &mut self,
        who: &Actor,
        id: &str,
        new: &NewWorkOrder,
        now_ms: u64,
    ) -> Result<WriteId, MemError> {
        let (_, edit) = WorkOrderDoc::create(&self.actor, who, id, new, (now_ms / 1000) as i64)?;
        Ok(self
            .queue(MemOp::Merge {
                id: id.to_string(),
                bytes: edit.change_bytes,
                now_ms,
            })?
            .0)
    }

    /// Apply a typed operation as `who`.
    pub fn apply(
        &mut self,
        id: &str,
        who: &Actor,
        op: &Operation,
        now_ms: u64,
    ) -> Result<WriteId, MemError> {
        let doc = self
            .live
            .docs
            .get(id)
            .ok_or_else(|| MemError::NotFound(id.to_string()))?
            .doc
            .clone();
        let mut doc =
            WorkOrderDoc::from_automerge(doc, &self.actor).map_err(|e| MemError::Document {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        let edit = doc.apply(who, op, (now_ms / 1000) as i64)?;
        Ok(self
            .queue(MemOp::Merge {
                id: id.to_string(),
                bytes: edit.change_bytes,
                now_ms,
            })?
            .0)
    }

    pub fn work_order(&self, id: &str) -> Option<WorkOrderDoc> {
        let doc = self.live.docs.get(id)?.doc.clone();
        WorkOrderDoc::from_automerge(doc, &self.actor).ok()
    }

    /// Ids of every document held (live state), in order.
    pub fn doc_ids(&self) -> Vec<String> {
        self.live.docs.keys().cloned().collect()
    }

    /// Heads of a document in the durable state (what survives a crash).
    pub fn durable_heads(&self, id: &str) -> Option<Vec<ChangeHash>> {
        self.durable.docs.get(id).map(|d| d.doc.get_heads())
    }

    pub fn durable_checkpoint(&self, peer: &str) -> Option<WireCheckpoint> {
        self.durable.checkpoints.get(peer).cloned()
    }

    /// Seqs of the live changelog (for gap-freeness checks).
    pub fn log_len(&self) -> usize {
        self.live.log.len()
    }

    pub fn log(&self) -> &[LogEntry] {
        &self.live.log
    }

    /// The reader index's invariant (simulator, `--slow-checks`), on the
    /// durable state: reading `user`'s share of the changelog from seq 0
    /// covers all of it and yields every data record's entry and the
    /// latest entry of every document a full scan finds the user's device
    /// may see (`access::may_see`, with its own revocation record). Returns
    /// what it lacks, in words.
    pub fn reader_index_misses(&self, user: &str, now_ms: u64, grace_ms: u64) -> Vec<String> {
        let state = &self.durable;
        let page = state.changes_for(user, 0, usize::MAX);
        let got: BTreeSet<u64> = page.entries.iter().map(|entry| entry.seq).collect();
        let mut misses = Vec::new();
        if page.covered_upto_seq != state.log.len() as u64 {
            misses.push(format!("covers up to {}", page.covered_upto_seq));
        }
        let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
        for entry in &state.log {
            if entry.is_work_order() {
                latest.insert(&entry.id, entry.seq);
            } else if CollectionKind::of(entry.collection.name()) == CollectionKind::Data
                && !got.contains(&entry.seq)
            {
                misses.push(format!("record {} at seq {}", entry.id, entry.seq));
            }
        }
        let peer = PeerAccess::User {
            user_id: user.to_string(),
            role: Role::Technician,
        };
        let revocations = state.revocations_of(user, REVOKED_DOCS_READ_MAX);
        for (id, seq) in latest {
            let Some(doc) = state.docs.get(id) else {
                continue;
            };
            let own = revocations.iter().find(|(r, _)| r == id).map(|(_, at)| *at);
            if access::may_see(&peer, &doc.meta, own, now_ms, grace_ms) && !got.contains(&seq) {
                misses.push(format!("work order {id} at seq {seq}"));
            }
        }
        misses
    }

    /// The durable changelog (what survives a crash).
    pub fn durable_log(&self) -> &[LogEntry] {
        &self.durable.log
    }

    /// The live document, borrowed: the simulator checks invariants after
    /// every step, and `doc` clones.
    pub fn live_doc(&self, id: &str) -> Option<&Automerge> {
        self.live.docs.get(id).map(|d| &d.doc)
    }

    /// The live access metadata of a document, borrowed.
    pub fn live_meta(&self, id: &str) -> Option<&DocMeta> {
        self.live.docs.get(id).map(|d| &d.meta)
    }

    /// The document as it would be after a crash.
    pub fn durable_doc(&self, id: &str) -> Option<&Automerge> {
        self.durable.docs.get(id).map(|d| &d.doc)
    }

    /// Every durable checkpoint, by peer, in order.
    pub fn durable_checkpoints(&self) -> impl Iterator<Item = (&str, &WireCheckpoint)> {
        self.durable
            .checkpoints
            .iter()
            .map(|(peer, checkpoint)| (peer.as_str(), checkpoint))
    }
}

impl SyncStore for MemStore {
    type Error = MemError;

    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    fn actor(&self) -> ActorId {
        self.actor.clone()
    }

    fn last_seq(&self) -> u64 {
        // Like the sled store, the changelog is visible only once durable.
        self.durable.log.len() as u64
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, MemError> {
        let start = (after as usize).min(self.durable.log.len());
        let entries: Vec<LogEntry> = self.durable.log[start..]
            .iter()
            .take(limit)
            .cloned()
            .collect();
        self.count_read(entries.len());
        Ok(entries)
    }

    fn changes_for(&self, user: &str, after: u64, limit: usize) -> Result<ReaderPage, MemError> {
        let page = self.durable.changes_for(user, after, limit);
        self.count_read(page.entries.len());
        Ok(page)
    }

    fn doc_meta(&self, id: &str) -> Result<Option<DocMeta>, MemError> {
        let durable = self.durable.docs.get(id).map(|d| &d.meta);
        Ok(self.live.docs.get(id).map(|d| DocMeta {
            durable: durable == Some(&d.meta),
            ..d.meta.clone()
        }))
    }

    fn doc(&self, id: &str) -> Result<Option<Automerge>, MemError> {
        Ok(self.live.docs.get(id).map(|d| d.doc.clone()))
    }

    fn doc_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, MemError> {
        Ok(self.live.docs.get(id).map(|d| d.doc.save_nocompress()))
    }

    fn checkpoint(&self, peer: &str) -> Result<Option<WireCheckpoint>, MemError> {
        Ok(self.live.checkpoints.get(peer).cloned())
    }

    fn held_digest(&self) -> Result<Hash, MemError> {
        Ok(holdings_digest(self.live.docs.keys().map(String::as_str)))
    }

    fn assigned_ids(&self, user: &str, limit: usize) -> Result<Vec<String>, MemError> {
        Ok(self
            .live
            .docs
            .iter()
            .filter(|(_, doc)| doc.meta.assignee.as_deref() == Some(user))
            .take(limit)
            .map(|(id, _)| id.clone())
            .collect())
    }

    fn assigned_digest(&self, user: &str) -> Result<Hash, MemError> {
        let assigned = self
            .live
            .docs
            .iter()
            .filter(|(_, doc)| doc.meta.assignee.as_deref() == Some(user));
        Ok(holdings_digest(assigned.map(|(id, _)| id.as_str())))
    }

    fn held_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, MemError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        let ids = self.live.docs.range::<str, _>((from, Unbounded));
        Ok(ids.take(limit).map(|(id, _)| id.clone()).collect())
    }

    fn revocations(&self, user: &str, limit: usize) -> Result<Vec<(String, u64)>, MemError> {
        Ok(self.live.revocations_of(user, limit))
    }

    fn durable_doc_meta(&self, id: &str) -> Result<Option<DocMeta>, MemError> {
        Ok(self.durable.docs.get(id).map(|d| DocMeta {
            durable: true,
            ..d.meta.clone()
        }))
    }

    fn durable_revocations(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, MemError> {
        Ok(self.durable.revocations_of(user, limit))
    }

    fn merge(&mut self, id: &str, bytes: &[u8], now_ms: u64) -> Result<Vec<ChangeHash>, MemError> {
        Ok(self
            .queue(MemOp::Merge {
                id: id.to_string(),
                bytes: bytes.to_vec(),
                now_ms,
            })?
            .1)
    }

    fn save_checkpoint(
        &mut self,
        peer: &str,
        checkpoint: WireCheckpoint,
    ) -> Result<WriteId, MemError> {
        Ok(self
            .queue(MemOp::Checkpoint {
                peer: peer.to_string(),
                checkpoint,
            })?
            .0)
    }

    fn purge(&mut self, id: &str) -> Result<WriteId, MemError> {
        let write = self.queue(MemOp::Purge { id: id.to_string() })?.0;
        // Our own changes to this document may now exist only elsewhere; if
        // it comes back without them, writing as the same actor would reuse
        // their sequence numbers (simulator, seed 18).
        self.next_actor();
        Ok(write)
    }

    fn touch(&mut self, id: &str, _now_ms: u64) -> Result<Option<WriteId>, MemError> {
        if !self.live.docs.contains_key(id) {
            return Ok(None);
        }
        Ok(Some(self.queue(MemOp::Touch { id: id.to_string() })?.0))
    }

    fn clear_revocation(&mut self, user: &str, id: &str) -> Result<(), MemError> {
        self.queue(MemOp::ClearRevocation {
            user: user.to_string(),
            id: id.to_string(),
        })?;
        Ok(())
    }

    fn record(&self, collection: &str, key: &str) -> Result<Option<HeldRecord>, MemError> {
        let slot = (collection.to_string(), key.to_string());
        let durable = self.durable.records.get(&slot).map(|held| held.version);
        Ok(self.live.records.get(&slot).map(|copy| HeldRecord {
            durable: durable == Some(copy.version),
            copy: copy.clone(),
        }))
    }

    fn read_grants(&self, collection: &str) -> Result<ReadGrants, MemError> {
        Ok(self.grants.get(collection).cloned().unwrap_or_default())
    }

    fn apply_records(&mut self, copies: Vec<RecordCopy>) -> Result<(), MemError> {
        self.queue(MemOp::Records { copies })?;
        Ok(())
    }

    fn office_keys(&self) -> Result<Vec<OfficeKey>, MemError> {
        Ok(self.live.office_keys.clone())
    }

    fn add_office_keys(&mut self, keys: &[OfficeKey]) -> Result<(), MemError> {
        self.queue(MemOp::OfficeKeys {
            keys: keys.to_vec(),
        })?;
        Ok(())
    }

    fn vouchers(&self, id: &str) -> Result<Vec<Voucher>, MemError> {
        Ok(self.live.vouchers.get(id).cloned().unwrap_or_default())
    }

    fn put_vouchers(&mut self, id: &str, vouchers: &[Voucher]) -> Result<(), MemError> {
        self.queue(MemOp::Vouchers {
            id: id.to_string(),
            vouchers: vouchers.to_vec(),
        })?;
        Ok(())
    }
}
