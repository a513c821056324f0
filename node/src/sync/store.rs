//! What the engine needs from a store. The sled store implements it for
//! production (`crate::store::sync_adapter`), [`super::MemStore`] for tests
//! and the simulator.

use automerge::{ActorId, Automerge, AutomergeError, ChangeHash};
use fieldsync_schemas::sync_frame::{Hash, OfficeKey, RecordCopy, Voucher, WireCheckpoint};
use fieldsync_schemas::Collection;

use crate::access::{DocMeta, ReadGrants};

/// Identifies a queued write whose durability the driver reports back.
pub type WriteId = u64;

/// One changelog entry, as the engine needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    /// Work orders, or the data collection of a record's entry (records
    /// share the changelog; only an office sends them, as `Records`).
    pub collection: Collection,
    /// The document id, or the record key.
    pub id: String,
    /// The record's version this entry wrote (0 for work orders). A copy
    /// is sent only at the version of a durable entry: a newer version may
    /// not be durable yet, and a crash would let a later write reuse it.
    pub version: u64,
    pub heads: Vec<ChangeHash>,
}

/// A record as the store holds it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldRecord {
    pub copy: RecordCopy,
    /// Does this version survive a crash? `false` while its write is
    /// queued or not yet flushed.
    pub durable: bool,
}

/// A run of the changelog as one technician's device sees it
/// ([`SyncStore::changes_for`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderPage {
    /// In seq order, each seq once.
    pub entries: Vec<LogEntry>,
    /// The page covers the changelog up to this seq: past the last entry
    /// when the entries the reader may see end before it. Equal to `after`
    /// when there is nothing to cover.
    pub covered_upto_seq: u64,
}

/// A user's revocation records [`SyncStore::changes_for`] reads at most:
/// as many as the session judges visibility by (`REVOCATIONS_SCAN_MAX`).
pub const REVOKED_DOCS_READ_MAX: usize = fieldsync_schemas::sync_frame::PAGE_DOCS_MAX;

/// The cut of a reader page ([`SyncStore::changes_for`]), one rule for
/// every store: of `seqs` (ascending), those in `(after, covered_upto_seq]`,
/// at most `limit`; when the limit cuts them short, the page covers only up
/// to the last one taken. Returns the seqs taken and the seq covered.
pub fn cut_reader_page(
    seqs: impl IntoIterator<Item = u64>,
    after: u64,
    covered_upto_seq: u64,
    limit: usize,
) -> (Vec<u64>, u64) {
    let taken: Vec<u64> = seqs
        .into_iter()
        .filter(|seq| *seq > after && *seq <= covered_upto_seq)
        .take(limit)
        .collect();
    let covered = match taken.last() {
        Some(last) if taken.len() >= limit => *last,
        _ => covered_upto_seq,
    };
    (taken, covered)
}

impl LogEntry {
    pub fn is_work_order(&self) -> bool {
        self.collection == Collection::WorkOrders
    }
}

/// Reads are synchronous and see the store's current state; writes are
/// queued in order (FIFO) and become durable in that order.
pub trait SyncStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The random id of this store's life.
    fn epoch(&self) -> [u8; 16];
    /// The actor this node writes Automerge changes as. It must change
    /// whenever this node may have lost changes of its own that a peer
    /// still holds: at every open of the store (the engine sends changes
    /// from the live state, which may not be durable yet, so after a crash
    /// a peer may hold changes this node lost) and after every purge (the
    /// document may come back without them). Writing again as the same
    /// actor would reuse their sequence numbers for different changes,
    /// which Automerge refuses on every later sync.
    fn actor(&self) -> ActorId;
    /// Highest durable changelog seq.
    fn last_seq(&self) -> u64;
    /// Up to `limit` changelog entries with seq > `after`, never past
    /// `last_seq`.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, Self::Error>;
    /// What a technician's device (`user`) reads instead of the whole
    /// changelog: up to `limit` entries with seq > `after`, never past
    /// `last_seq`, among them every entry the device may see. That is, for
    /// a store with a reader index: each entry of a work order written
    /// while `user` was its assignee or previous assignee, the latest entry
    /// of each work order in `user`'s first [`REVOKED_DOCS_READ_MAX`]
    /// revocation records, and every data record's entry. The session
    /// judges each entry as before; a store may return more (the default
    /// returns the changelog itself, for a store without an index).
    fn changes_for(&self, user: &str, after: u64, limit: usize) -> Result<ReaderPage, Self::Error> {
        let _ = user;
        let entries = self.changes_after(after, limit)?;
        let covered_upto_seq = entries.last().map_or(after, |entry| entry.seq);
        Ok(ReaderPage {
            entries,
            covered_upto_seq,
        })
    }
    fn doc_meta(&self, id: &str) -> Result<Option<DocMeta>, Self::Error>;
    /// A copy of the current document.
    fn doc(&self, id: &str) -> Result<Option<Automerge>, Self::Error>;
    /// The document's stored bytes, ready for `Automerge::load`.
    fn doc_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Parse whole documents a peer sent (`Automerge::load` of each, in
    /// order). Parsing is most of what receiving a whole document costs,
    /// so a store may spread it over threads; the engine itself never
    /// starts one. The default parses one after the other.
    fn load_docs(&self, docs: &[(String, Vec<u8>)]) -> Vec<Result<Automerge, AutomergeError>> {
        load_each(docs)
    }
    /// The holdings digest (`sync_frame::holdings_digest`) of every work
    /// order held here. A hint: it may lag the live state a little.
    fn held_digest(&self) -> Result<Hash, Self::Error>;
    /// The holdings digest of the work orders assigned to `user` here (a
    /// hint, like [`SyncStore::held_digest`]).
    fn assigned_digest(&self, user: &str) -> Result<Hash, Self::Error>;
    /// Up to `limit` ids of the work orders assigned to `user` here, in id
    /// order (a hint, like [`SyncStore::held_digest`]).
    fn assigned_ids(&self, user: &str, limit: usize) -> Result<Vec<String>, Self::Error>;
    /// Up to `limit` ids of the work orders held here, in id order, after
    /// `after`.
    fn held_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, Self::Error>;
    /// The checkpoint held for `peer` (its epoch and seq).
    fn checkpoint(&self, peer: &str) -> Result<Option<WireCheckpoint>, Self::Error>;
    /// Documents reassigned away from `user`: (id, reassigned_at_ms).
    fn revocations(&self, user: &str, limit: usize) -> Result<Vec<(String, u64)>, Self::Error>;
    /// [`SyncStore::doc_meta`] as it would be after a crash. The engine
    /// decides revokes on it: a revoke destroys the peer's copy, so it must
    /// not rest on a write a crash can undo. The default suits a store
    /// whose reads see only durable writes.
    fn durable_doc_meta(&self, id: &str) -> Result<Option<DocMeta>, Self::Error> {
        self.doc_meta(id)
    }
    /// [`SyncStore::revocations`] as they would be after a crash (see
    /// [`SyncStore::durable_doc_meta`]).
    fn durable_revocations(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, Self::Error> {
        self.revocations(user, limit)
    }

    /// Merge Automerge bytes (changes or a whole saved document) into
    /// document `id`, creating it if absent, and queue the write. Returns
    /// the document's heads after the merge.
    fn merge(
        &mut self,
        id: &str,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ChangeHash>, Self::Error>;

    /// [`SyncStore::merge`] for a whole document the engine has already
    /// loaded from `bytes` and checked (`doc` is `Automerge::load(bytes)`):
    /// a store may keep it instead of loading the bytes a second time
    /// (loading costs as much as everything else priming does per
    /// document). The default merges the bytes.
    fn merge_loaded(
        &mut self,
        id: &str,
        doc: Automerge,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ChangeHash>, Self::Error> {
        drop(doc);
        self.merge(id, bytes, now_ms)
    }
    /// Queue a checkpoint write; it becomes durable after every write
    /// queued before it.
    fn save_checkpoint(
        &mut self,
        peer: &str,
        checkpoint: WireCheckpoint,
    ) -> Result<WriteId, Self::Error>;
    /// Queue the removal of a document this node may no longer hold.
    fn purge(&mut self, id: &str) -> Result<WriteId, Self::Error>;
    /// Queue a changelog entry naming document `id` at its heads, changing
    /// nothing in it: every peer is offered the document again from its
    /// checkpoint, even one whose checkpoint passed our earlier entries.
    /// Nothing is queued (`None`) when the document is not here.
    fn touch(&mut self, id: &str, now_ms: u64) -> Result<Option<WriteId>, Self::Error>;
    /// Forget a revocation once the peer has purged the document.
    fn clear_revocation(&mut self, user: &str, id: &str) -> Result<(), Self::Error>;

    /// A data or office-only record as it is now (deleted ones too: the
    /// tombstone travels).
    fn record(&self, collection: &str, key: &str) -> Result<Option<HeldRecord>, Self::Error>;
    /// Who may read data collection `collection`.
    fn read_grants(&self, collection: &str) -> Result<ReadGrants, Self::Error>;
    /// Queue storing copies an office sent: each is stored only if newer
    /// than the copy here; a user (office-only, from another office) is
    /// merged with the one here instead (`crate::users::merge`; the sled
    /// store does, `MemStore` keeps newer-wins: no simulated world holds
    /// users). Durable before any write queued after it.
    fn apply_records(&mut self, records: Vec<RecordCopy>) -> Result<(), Self::Error>;

    /// The signing keys of the other offices this node heard of from an
    /// office (`crate::vouch`), at most `OFFICE_KEYS_MAX`.
    fn office_keys(&self) -> Result<Vec<OfficeKey>, Self::Error>;
    /// Queue remembering more office keys (new ones only; the store keeps
    /// at most `OFFICE_KEYS_MAX`).
    fn add_office_keys(&mut self, keys: &[OfficeKey]) -> Result<(), Self::Error>;
    /// The vouchers kept for document `id`, to forward with its changes.
    fn vouchers(&self, id: &str) -> Result<Vec<Voucher>, Self::Error>;
    /// Queue keeping `vouchers` for document `id`, merged with those held
    /// (`vouch::merged`).
    fn put_vouchers(&mut self, id: &str, vouchers: &[Voucher]) -> Result<(), Self::Error>;
}

/// `Automerge::load` of each document, in order, on this thread.
pub fn load_each(docs: &[(String, Vec<u8>)]) -> Vec<Result<Automerge, AutomergeError>> {
    docs.iter()
        .map(|(_, bytes)| Automerge::load(bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::cut_reader_page;

    #[test]
    fn a_reader_page_covers_past_its_entries_unless_the_limit_cut_it() {
        let seqs = [2, 4, 6, 8];
        type Row = ((u64, u64, usize), (&'static [u64], u64));
        // (after, covered_upto_seq, limit) -> (taken, covered)
        let table: [Row; 5] = [
            ((0, 10, 10), (&[2, 4, 6, 8], 10)),
            ((0, 10, 2), (&[2, 4], 4)),
            ((4, 10, 10), (&[6, 8], 10)),
            ((0, 5, 10), (&[2, 4], 5)),
            ((8, 10, 1), (&[], 10)),
        ];
        for ((after, covered, limit), (taken, covered_after)) in table {
            assert_eq!(
                cut_reader_page(seqs, after, covered, limit),
                (taken.to_vec(), covered_after),
                "after {after}, covered {covered}, limit {limit}"
            );
        }
    }
}
