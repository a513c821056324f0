//! The sync engine's view of the sled store: [`SyncStore`] over [`Store`].
//!
//! Why an adapter with its own bookkeeping: the engine wants reads that see
//! its own writes at once and writes that are merely *queued* (it learns of
//! durability later, through `handle_write_done`), while the sled store
//! makes a write visible to readers only once it is flushed. The adapter
//! bridges the two:
//!
//! - A merge into an existing document goes through the store's document
//!   cache under that document's lock, like a local edit: load the cached
//!   document, `load_incremental` the bytes, queue the new changes as one
//!   chunk, release the lock. The write is queued *under* the lock, so the
//!   committer (FIFO) stores the changes of one document in the order they
//!   were made, whoever made them. The document stays pinned in this
//!   session until its write is durable, so the session never reads an
//!   older copy from disk.
//! - A document received whole is queued as a new document and kept, with
//!   its metadata and bytes, in a map shared by every session of this store
//!   until it is durable: a second session that receives the same new
//!   document meanwhile merges into it instead of creating it twice. New
//!   documents do not enter the cache, so priming a laptop with thousands
//!   of work orders never holds them all in memory.
//! - Write ids are allocated under the same lock that queues the write, so
//!   they follow the committer's queue order across all sessions: when one
//!   is durable, every smaller one is too.
//!
//! The driver awaits the session's writes in order ([`SyncAdapter::next_durable`])
//! and reports each with `Session::handle_write_done` after calling
//! [`SyncAdapter::durable`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use automerge::{ActorId, Automerge, AutomergeError, ChangeHash};
use fieldsync_schemas::sync_frame::{
    Hash, OfficeKey, RecordCopy, Voucher, WireCheckpoint, OFFICE_KEYS_MAX,
};
use fieldsync_schemas::{collection, ChangeOp, Collection};

use super::commit::{DocWrite, Receipt, WriteSet};
use super::record_writes::{Expect, RecordWrite};
use super::records::{ChangeRecord, Checkpoint, DocIndex};
use super::{keys, CachedDoc, Pending, ReadError, Store, WriteError};
use crate::access::{DocMeta, ReadGrants};
use crate::doc::WorkOrderDoc;
use crate::reassignment::{self, reassignment, Before};
use crate::sync::{HeldRecord, LogEntry, ReaderPage, SyncStore, WriteId};

/// Why a sync read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncStoreError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("document `{id}` cannot be stored: {reason}")]
    Document { id: String, reason: String },
}

fn document_error(id: &str, error: impl std::fmt::Display) -> SyncStoreError {
    SyncStoreError::Document {
        id: id.to_string(),
        reason: error.to_string(),
    }
}

/// A document received whole whose write is not durable yet.
struct Creating {
    write: WriteId,
    meta: DocMeta,
    bytes: Arc<Vec<u8>>,
}

#[derive(Default)]
struct Queue {
    next_write: WriteId,
    creating: HashMap<String, Creating>,
}

/// State shared by every session's adapter over one store.
pub struct SyncShared {
    store: Store,
    /// Read grants from `[records.read]`, by collection: what
    /// `read_grants` falls back on when no operator set grants over the API.
    configured_grants: BTreeMap<String, ReadGrants>,
    /// Write-id allocation, queueing and the registry of documents being
    /// created happen under this one lock (see the module docs).
    queue: Mutex<Queue>,
}

impl SyncShared {
    /// Shared state with no configured read grants (the default applies to
    /// collections without API grants).
    pub fn new(store: Store) -> Arc<SyncShared> {
        SyncShared::with_read_grants(store, BTreeMap::new())
    }

    /// Shared state with the node's configured read grants
    /// (`NodeConfig::read_grants`).
    pub fn with_read_grants(
        store: Store,
        configured_grants: BTreeMap<String, ReadGrants>,
    ) -> Arc<SyncShared> {
        Arc::new(SyncShared {
            store,
            configured_grants,
            queue: Mutex::new(Queue {
                next_write: 1,
                creating: HashMap::new(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An existing document this session wrote to, pinned until durable.
struct Pinned {
    write: WriteId,
    handle: Arc<Mutex<CachedDoc>>,
    meta: DocMeta,
}

/// One session's [`SyncStore`]. See the module docs.
pub struct SyncAdapter {
    shared: Arc<SyncShared>,
    pending: VecDeque<(WriteId, Pending)>,
    pinned: HashMap<String, Pinned>,
    /// Documents this session created, to unregister once durable.
    created: VecDeque<(WriteId, String)>,
}

impl SyncAdapter {
    pub fn new(shared: Arc<SyncShared>) -> SyncAdapter {
        SyncAdapter {
            shared,
            pending: VecDeque::new(),
            pinned: HashMap::new(),
            created: VecDeque::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Are writes of this session still waiting for their flush?
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Wait for the oldest queued write to be flushed. Cancel-safe: if the
    /// future is dropped, the write stays queued here. `None` when nothing
    /// is queued.
    pub async fn next_durable(&mut self) -> Option<(WriteId, Result<Receipt, WriteError>)> {
        let (_, pending) = self.pending.front_mut()?;
        let outcome = (&mut pending.reply)
            .await
            .unwrap_or(Err(WriteError::Closed));
        let (write, _) = self.pending.pop_front()?;
        Some((write, outcome))
    }

    /// The oldest queued write, if it is already durable, without waiting.
    /// The driver calls it in a loop after `next_durable` to report a run
    /// of flushed writes to the session once.
    pub fn durable_ready(&mut self) -> Result<Option<WriteId>, WriteError> {
        let Some((_, pending)) = self.pending.front_mut() else {
            return Ok(None);
        };
        match pending.reply.try_recv() {
            Ok(Ok(_)) => Ok(self.pending.pop_front().map(|(write, _)| write)),
            Ok(Err(error)) => Err(error),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => Ok(None),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => Err(WriteError::Closed),
        }
    }

    /// `write` (and so every earlier write) is durable: stop pinning what
    /// it covered.
    pub fn durable(&mut self, write: WriteId) {
        self.pinned.retain(|_, pinned| pinned.write > write);
        let mut done = Vec::new();
        while self.created.front().is_some_and(|(w, _)| *w <= write) {
            if let Some((w, id)) = self.created.pop_front() {
                done.push((w, id));
            }
        }
        if !done.is_empty() {
            let mut queue = self.shared.lock();
            for (w, id) in done {
                if queue.creating.get(&id).is_some_and(|c| c.write == w) {
                    queue.creating.remove(&id);
                }
            }
        }
    }

    /// Queue one write under the queue lock and remember its `Pending`.
    fn queue_write(
        &mut self,
        submit: impl FnOnce(&Store) -> Result<Pending, WriteError>,
    ) -> Result<WriteId, SyncStoreError> {
        let mut queue = self.shared.lock();
        let pending = submit(&self.shared.store)?;
        let write = queue.next_write;
        queue.next_write += 1;
        drop(queue);
        self.pending.push_back((write, pending));
        Ok(write)
    }

    /// The document's handle in the cache, loading it from the creating
    /// registry or from disk. `None` if it does not exist here at all.
    fn handle(&self, id: &str) -> Result<Option<Arc<Mutex<CachedDoc>>>, SyncStoreError> {
        if let Some(pinned) = self.pinned.get(id) {
            return Ok(Some(pinned.handle.clone()));
        }
        let creating = self.shared.lock().creating.get(id).map(|c| c.bytes.clone());
        if let Some(bytes) = creating {
            let store = &self.shared.store;
            if let Some(handle) = store.inner.cache.get(id) {
                return Ok(Some(handle));
            }
            let doc =
                WorkOrderDoc::load(&bytes, &store.actor()).map_err(|e| document_error(id, e))?;
            let cached = CachedDoc { doc, chunks: 1 };
            return Ok(Some(store.inner.cache.insert(id, cached)));
        }
        Ok(self.shared.store.load(id)?)
    }

    fn merge_into(
        &mut self,
        id: &str,
        handle: Arc<Mutex<CachedDoc>>,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ChangeHash>, SyncStoreError> {
        self.write_doc(id, handle, bytes, now_ms, false)
            .map(|(heads, _)| heads)
    }

    /// Merge `bytes` into the cached document and queue the write, if the
    /// heads moved or `touch` (then the whole document is written again,
    /// for its changelog entry). Returns the heads, and the write queued.
    fn write_doc(
        &mut self,
        id: &str,
        handle: Arc<Mutex<CachedDoc>>,
        bytes: &[u8],
        now_ms: u64,
        touch: bool,
    ) -> Result<(Vec<ChangeHash>, Option<WriteId>), SyncStoreError> {
        let old_meta = self.doc_meta(id)?.unwrap_or_default();
        let mut cached = handle.lock().unwrap_or_else(|p| p.into_inner());
        let before = cached.doc.heads();
        let unassigned_before = cached.doc.unassigned();
        if let Err(error) = cached.doc.automerge_mut().load_incremental(bytes) {
            // The loaded copy may hold part of the bytes: reload it later.
            drop(cached);
            self.shared.store.inner.cache.evict(id);
            self.pinned.remove(id);
            return Err(document_error(id, error));
        }
        let heads = cached.doc.heads();
        if heads == before && !touch {
            return Ok((heads, None));
        }
        let compact_chunks_max = self.shared.store.config().compact_chunks_max;
        let replace = touch || cached.chunks + 1 >= compact_chunks_max;
        let document = &cached.doc;
        let write = DocWrite {
            id: id.to_string(),
            collection: Collection::WorkOrders,
            number: Some(document.number()),
            assignee: document.assignee(),
            unassigned_changed: reassignment::changed_entries(
                &unassigned_before,
                &document.unassigned(),
            ),
            deleted: document.is_deleted(),
            op: if document.is_deleted() {
                ChangeOp::Delete
            } else {
                ChangeOp::Update
            },
            heads: heads.iter().map(|head| head.0).collect(),
            bytes: if replace {
                document.save()
            } else {
                document.automerge().save_after(&before)
            },
            replace,
            must_be_new: false,
        };
        let assignee = write.assignee.clone();
        let unassigned_changed = write.unassigned_changed.clone();
        let queued = self.queue_write(|store| {
            store.submit_request(
                WriteSet {
                    docs: vec![write],
                    records: Vec::new(),
                    checkpoint: None,
                },
                Vec::new(),
            )
        });
        let write = match queued {
            Ok(write) => write,
            Err(error) => {
                drop(cached);
                self.shared.store.inner.cache.evict(id);
                self.pinned.remove(id);
                return Err(error);
            }
        };
        cached.chunks = if replace { 1 } else { cached.chunks + 1 };
        drop(cached);
        let meta = next_meta(
            &old_meta,
            assignee,
            &unassigned_changed,
            heads.clone(),
            now_ms,
        );
        self.pinned.insert(
            id.to_string(),
            Pinned {
                write,
                handle,
                meta,
            },
        );
        Ok((heads, Some(write)))
    }

    /// Store a document received whole. Falls back to a merge if another
    /// session (or a committed write) got there first.
    fn create(
        &mut self,
        id: &str,
        document: WorkOrderDoc,
        bytes: &[u8],
    ) -> Result<Option<Vec<ChangeHash>>, SyncStoreError> {
        let store = &self.shared.store;
        if document.id() != id {
            return Err(document_error(id, "the document names another id"));
        }
        let heads = document.heads();
        let meta = DocMeta {
            assignee: document.assignee(),
            previous_assignee: None,
            reassigned_at_ms: 0,
            heads: heads.clone(),
            durable: false,
        };
        let write = DocWrite {
            id: id.to_string(),
            collection: Collection::WorkOrders,
            number: Some(document.number()),
            assignee: document.assignee(),
            unassigned_changed: document.unassigned(),
            deleted: document.is_deleted(),
            op: ChangeOp::Create,
            heads: heads.iter().map(|head| head.0).collect(),
            bytes: bytes.to_vec(),
            replace: true,
            must_be_new: true,
        };
        drop(document);
        let mut queue = self.shared.lock();
        if queue.creating.contains_key(id) || store.doc_index(id)?.is_some() {
            return Ok(None);
        }
        let pending = store.submit_request(
            WriteSet {
                docs: vec![write],
                records: Vec::new(),
                checkpoint: None,
            },
            Vec::new(),
        )?;
        let write = queue.next_write;
        queue.next_write += 1;
        queue.creating.insert(
            id.to_string(),
            Creating {
                write,
                meta,
                bytes: Arc::new(bytes.to_vec()),
            },
        );
        drop(queue);
        self.pending.push_back((write, pending));
        self.created.push_back((write, id.to_string()));
        Ok(Some(heads))
    }
}

impl Drop for SyncAdapter {
    fn drop(&mut self) {
        // Unregister what this session was creating; once durable the
        // index answers for it.
        if self.created.is_empty() {
            return;
        }
        let mut queue = self.shared.lock();
        for (write, id) in self.created.drain(..) {
            if queue.creating.get(&id).is_some_and(|c| c.write == write) {
                queue.creating.remove(&id);
            }
        }
    }
}

/// The metadata after a merge, with the committer's reassignment rule
/// (`crate::reassignment`) applied, so reads agree before the flush.
fn next_meta(
    old: &DocMeta,
    assignee: Option<String>,
    unassigned_changed: &[(String, u64)],
    heads: Vec<ChangeHash>,
    now_ms: u64,
) -> DocMeta {
    let rule = reassignment(
        Some(Before::of(old)),
        assignee.as_deref(),
        unassigned_changed,
        now_ms,
    );
    DocMeta {
        assignee,
        previous_assignee: rule.previous_assignee,
        reassigned_at_ms: rule.reassigned_at_ms,
        heads,
        durable: false,
    }
}

/// The meta of an index entry; `durable_upto_seq`: the store's last
/// durable seq.
fn meta_of(index: DocIndex, durable_upto_seq: u64) -> DocMeta {
    DocMeta {
        durable: index.last_seq <= durable_upto_seq,
        assignee: index.assignee,
        previous_assignee: index.previous_assignee,
        reassigned_at_ms: index.reassigned_at_ms,
        heads: index.heads.into_iter().map(ChangeHash).collect(),
    }
}

/// Threads that parse one batch of received documents, at most.
const LOAD_THREADS_MAX: usize = 4;
/// Fewer documents than this per thread are parsed on the caller's thread:
/// starting a thread costs about as much as parsing a few documents.
const LOAD_DOCS_PER_THREAD_MIN: usize = 16;

/// `Automerge::load` of each document, in order, spread over up to
/// `LOAD_THREADS_MAX` scoped threads: priming a laptop is bound by this
/// parse (75-125 µs per work order on the 2-core bench machine), and the
/// engine's thread would otherwise do it alone while the other cores wait.
fn load_in_parallel(docs: &[(String, Vec<u8>)]) -> Vec<Result<Automerge, AutomergeError>> {
    use crate::sync::load_each as load;
    // Asked once: on Linux it reads the cgroup files on every call.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores
        .min(LOAD_THREADS_MAX)
        .min(docs.len() / LOAD_DOCS_PER_THREAD_MIN)
        .max(1);
    if threads == 1 {
        return load(docs);
    }
    let chunk_len = docs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = docs.chunks(chunk_len);
        // This thread parses the first chunk itself.
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|chunk| scope.spawn(move || load(chunk)))
            .collect();
        let mut loaded = load(first);
        for handle in others {
            match handle.join() {
                Ok(part) => loaded.extend(part),
                // As without threads: a panic while parsing is a panic here.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        loaded
    })
}

impl SyncStore for SyncAdapter {
    type Error = SyncStoreError;

    fn epoch(&self) -> [u8; 16] {
        self.shared.store.epoch()
    }

    fn actor(&self) -> ActorId {
        self.shared.store.actor()
    }

    fn last_seq(&self) -> u64 {
        self.shared.store.last_seq()
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, SyncStoreError> {
        let visible = self.shared.store.last_seq();
        let mut entries = Vec::with_capacity(limit.min(1024));
        if after >= visible || limit == 0 {
            return Ok(entries);
        }
        let range = keys::changelog(after + 1)..=keys::changelog(visible);
        for item in self.shared.store.data().range(range).take(limit) {
            let (key, value) = item.map_err(|e| ReadError::Io(e.to_string()))?;
            let corrupt = |reason: String| ReadError::Corrupt {
                id: "changelog".into(),
                reason,
            };
            let seq = keys::changelog_seq(&key).ok_or_else(|| corrupt("bad key".into()))?;
            let record =
                ChangeRecord::decode(&value).map_err(|e| corrupt(format!("seq {seq}: {e}")))?;
            entries.push(log_entry(seq, record));
        }
        Ok(entries)
    }

    fn changes_for(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<ReaderPage, SyncStoreError> {
        let (entries, covered_upto_seq) = self.shared.store.changes_for(user, after, limit)?;
        Ok(ReaderPage {
            entries: entries
                .into_iter()
                .map(|(seq, record)| log_entry(seq, record))
                .collect(),
            covered_upto_seq,
        })
    }

    fn doc_meta(&self, id: &str) -> Result<Option<DocMeta>, SyncStoreError> {
        if let Some(pinned) = self.pinned.get(id) {
            return Ok(Some(pinned.meta.clone()));
        }
        if let Some(creating) = self.shared.lock().creating.get(id) {
            return Ok(Some(creating.meta.clone()));
        }
        let store = &self.shared.store;
        let durable_upto_seq = store.last_seq();
        Ok(store
            .doc_index(id)?
            .map(|index| meta_of(index, durable_upto_seq)))
    }

    /// The index on disk, ignoring this session's queued writes; `None`
    /// (cannot be judged) while the index names a write that is not yet
    /// flushed: sled shows a batch to readers just before the committer's
    /// flush returns.
    fn durable_doc_meta(&self, id: &str) -> Result<Option<DocMeta>, SyncStoreError> {
        let store = &self.shared.store;
        let durable_upto_seq = store.last_seq();
        Ok(store
            .doc_index(id)?
            .filter(|index| index.last_seq <= durable_upto_seq)
            .map(|index| meta_of(index, durable_upto_seq)))
    }

    fn durable_revocations(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, SyncStoreError> {
        Ok(self.shared.store.revocations(user, limit)?)
    }

    fn doc(&self, id: &str) -> Result<Option<Automerge>, SyncStoreError> {
        let Some(handle) = self.handle(id)? else {
            return Ok(None);
        };
        let cached = handle.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(cached.doc.automerge().clone()))
    }

    fn load_docs(&self, docs: &[(String, Vec<u8>)]) -> Vec<Result<Automerge, AutomergeError>> {
        load_in_parallel(docs)
    }

    fn doc_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, SyncStoreError> {
        if let Some(pinned) = self.pinned.get(id) {
            let cached = pinned.handle.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(Some(cached.doc.automerge().save_nocompress()));
        }
        if let Some(creating) = self.shared.lock().creating.get(id) {
            return Ok(Some(creating.bytes.as_ref().clone()));
        }
        Ok(self.shared.store.doc_bytes(id)?)
    }

    fn checkpoint(&self, peer: &str) -> Result<Option<WireCheckpoint>, SyncStoreError> {
        Ok(self
            .shared
            .store
            .checkpoint(peer)?
            .map(|checkpoint| WireCheckpoint {
                epoch: checkpoint.epoch,
                seq: checkpoint.seq,
            }))
    }

    fn held_digest(&self) -> Result<Hash, SyncStoreError> {
        Ok(self.shared.store.held_digest())
    }

    fn assigned_digest(&self, user: &str) -> Result<Hash, SyncStoreError> {
        Ok(self.shared.store.assigned_digest(user))
    }

    fn assigned_ids(&self, user: &str, limit: usize) -> Result<Vec<String>, SyncStoreError> {
        Ok(self.shared.store.assigned_ids(user, limit))
    }

    fn held_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, SyncStoreError> {
        Ok(self.shared.store.doc_ids(after, limit)?)
    }

    fn revocations(&self, user: &str, limit: usize) -> Result<Vec<(String, u64)>, SyncStoreError> {
        Ok(self.shared.store.revocations(user, limit)?)
    }

    fn merge(
        &mut self,
        id: &str,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ChangeHash>, SyncStoreError> {
        crate::doc::validate_doc_id(id).map_err(|e| document_error(id, e))?;
        if let Some(handle) = self.handle(id)? {
            return self.merge_into(id, handle, bytes, now_ms);
        }
        let actor = &self.shared.store.actor();
        let document = WorkOrderDoc::load(bytes, actor).map_err(|e| document_error(id, e))?;
        if let Some(heads) = self.create(id, document, bytes)? {
            return Ok(heads);
        }
        // Someone created it meanwhile: merge into theirs.
        let handle = self
            .handle(id)?
            .ok_or_else(|| document_error(id, "vanished while being created"))?;
        self.merge_into(id, handle, bytes, now_ms)
    }

    fn merge_loaded(
        &mut self,
        id: &str,
        doc: Automerge,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ChangeHash>, SyncStoreError> {
        crate::doc::validate_doc_id(id).map_err(|e| document_error(id, e))?;
        if let Some(pinned) = self.pinned.get(id) {
            let handle = pinned.handle.clone();
            return self.merge_into(id, handle, bytes, now_ms);
        }
        // Most likely new here (priming): `create` checks under its lock
        // whether it exists after all, without a read from disk first. It
        // keeps the engine's copy instead of loading the bytes again.
        let actor = &self.shared.store.actor();
        let document =
            WorkOrderDoc::from_automerge(doc, actor).map_err(|e| document_error(id, e))?;
        if let Some(heads) = self.create(id, document, bytes)? {
            return Ok(heads);
        }
        let handle = self
            .handle(id)?
            .ok_or_else(|| document_error(id, "vanished while being created"))?;
        self.merge_into(id, handle, bytes, now_ms)
    }

    fn save_checkpoint(
        &mut self,
        peer: &str,
        checkpoint: WireCheckpoint,
    ) -> Result<WriteId, SyncStoreError> {
        let checkpoint = Checkpoint {
            epoch: checkpoint.epoch,
            seq: checkpoint.seq,
        };
        self.queue_write(|store| {
            store.submit_request(
                WriteSet {
                    docs: Vec::new(),
                    records: Vec::new(),
                    checkpoint: Some((peer.to_string(), checkpoint)),
                },
                Vec::new(),
            )
        })
    }

    fn purge(&mut self, id: &str) -> Result<WriteId, SyncStoreError> {
        self.pinned.remove(id);
        self.queue_write(|store| store.submit_purge(id))
    }

    fn touch(&mut self, id: &str, now_ms: u64) -> Result<Option<WriteId>, SyncStoreError> {
        let Some(handle) = self.handle(id)? else {
            return Ok(None);
        };
        let (_, write) = self.write_doc(id, handle, &[], now_ms, true)?;
        Ok(write)
    }

    fn clear_revocation(&mut self, user: &str, id: &str) -> Result<(), SyncStoreError> {
        self.queue_write(|store| store.submit_clear_revocation(user, id))?;
        Ok(())
    }

    fn record(&self, collection: &str, key: &str) -> Result<Option<HeldRecord>, SyncStoreError> {
        // Read before the published seq: a record whose entry is at or
        // below it was flushed with that entry.
        let durable_seq = self.shared.store.last_seq();
        let record = self.shared.store.record(collection, key)?;
        Ok(record.map(|record| HeldRecord {
            durable: record.last_seq <= durable_seq,
            copy: RecordCopy {
                collection: record.collection,
                key: record.key,
                version: record.version,
                deleted: record.deleted,
                value: record.value,
            },
        }))
    }

    fn read_grants(&self, collection: &str) -> Result<ReadGrants, SyncStoreError> {
        let configured = self.shared.configured_grants.get(collection);
        Ok(self.shared.store.read_grants(collection, configured)?)
    }

    fn apply_records(&mut self, copies: Vec<RecordCopy>) -> Result<(), SyncStoreError> {
        let records = copies
            .into_iter()
            .map(|copy| RecordWrite {
                collection: copy.collection,
                key: copy.key,
                value: (!copy.deleted).then_some(copy.value),
                expect: Expect::Any,
                replicated_version: Some(copy.version),
            })
            .collect();
        self.queue_records(records)
    }

    fn office_keys(&self) -> Result<Vec<OfficeKey>, SyncStoreError> {
        let records = self
            .shared
            .store
            .records(collection::OFFICE_KEYS, None, OFFICE_KEYS_MAX)?;
        Ok(records
            .iter()
            .filter_map(|record| {
                let mut key = [0u8; 32];
                hex::decode_to_slice(&record.key, &mut key).ok()?;
                Some(key)
            })
            .collect())
    }

    fn add_office_keys(&mut self, keys: &[OfficeKey]) -> Result<(), SyncStoreError> {
        let records = keys
            .iter()
            .map(|key| internal_write(collection::OFFICE_KEYS, hex::encode(key), b"{}".to_vec()))
            .collect();
        self.queue_records(records)
    }

    fn vouchers(&self, id: &str) -> Result<Vec<Voucher>, SyncStoreError> {
        let Some(record) = self.shared.store.record(collection::VOUCHERS, id)? else {
            return Ok(Vec::new());
        };
        if record.deleted {
            return Ok(Vec::new());
        }
        // Vouchers are hints for relays: unreadable ones are none.
        Ok(serde_json::from_slice(&record.value).unwrap_or_default())
    }

    /// The committer joins them to those held (`record_writes`), so two
    /// sessions writing one document's vouchers lose none.
    fn put_vouchers(&mut self, id: &str, vouchers: &[Voucher]) -> Result<(), SyncStoreError> {
        let value = serde_json::to_vec(vouchers).expect("vouchers encode as JSON");
        let record = internal_write(collection::VOUCHERS, id.to_string(), value);
        self.queue_records(vec![record])
    }
}

impl SyncAdapter {
    /// Queue record writes as one write set.
    fn queue_records(&mut self, records: Vec<RecordWrite>) -> Result<(), SyncStoreError> {
        self.queue_write(|store| {
            store.submit(WriteSet {
                records,
                ..WriteSet::default()
            })
        })?;
        Ok(())
    }
}

fn log_entry(seq: u64, record: ChangeRecord) -> LogEntry {
    LogEntry {
        seq,
        collection: record.collection,
        version: record.version,
        id: record.id,
        heads: record.heads.into_iter().map(ChangeHash).collect(),
    }
}

/// A write of an internal record made here.
fn internal_write(collection: &str, key: String, value: Vec<u8>) -> RecordWrite {
    RecordWrite {
        collection: collection.to_string(),
        key,
        value: Some(value),
        expect: Expect::Any,
        replicated_version: None,
    }
}

#[cfg(test)]
#[path = "sync_adapter_tests.rs"]
mod tests;
