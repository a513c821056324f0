//! The durable store: work orders in sled, a gap-free changelog, per-peer
//! checkpoints, users, and a bounded cache of loaded documents.
//!
//! Layout (see `keys.rs`): tree `data` holds document chunks, the document
//! index, the changelog, checkpoints and records (users among them, in the
//! internal `users` collection), so one batch can cover them all; tree
//! `meta` holds the epoch and actor. The format version lives in a plain
//! `FORMAT` file (see `format.rs`).
//!
//! Writes go through the group committer (`commit.rs`); a write is
//! acknowledged only after the flush that covers it returns. Reads of the
//! changelog never look past the highest durable seq.

mod cache;
mod commit;
pub mod format;
mod holdings;
mod keys;
mod reader_index;
#[cfg(test)]
mod reader_index_tests;
mod record_store;
#[cfg(test)]
mod record_tests;
mod record_writes;
pub mod records;
mod revocation;
pub mod sync_adapter;
#[cfg(test)]
mod tests;
/// Users moved to `crate::users` (the sync engine checks and merges them
/// too); this path stays for callers.
pub use crate::users;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use automerge::ActorId;
use fieldsync_schemas::sync_frame::Hash;
use fieldsync_schemas::{Actor, ChangeEntry, Collection, NewWorkOrder, WorkOrderView};
use tokio::sync::{oneshot, watch};

pub use cache::CachedDoc;
pub use commit::{DocWrite, Receipt, WriteSet};
pub use keys::DOC_ID_BYTES_MAX;
pub use record_store::{CollectionInfo, Record};
pub use record_writes::{Expect, RecordReceipt, RecordWrite};
pub use records::{ChangeRecord, Checkpoint, DocIndex};
pub use revocation::now_ms;
pub use users::User;
pub use verify::Problem;

use crate::doc::{self, Edit, LoadError, OpError, Operation, WorkOrderDoc};
use crate::reassignment;
use commit::{Published, Request};
use records::decode;

/// Tunables, from the node's config file.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Loaded documents kept in memory at most.
    pub cache_docs_max: usize,
    /// sled's page cache, in bytes (sled's own default is 1 GiB).
    pub sled_cache_bytes: u64,
    /// Write sets waiting for the committer at most; writers block beyond.
    pub queue_write_sets_max: usize,
    /// A document with this many chunks is rewritten as one snapshot.
    pub compact_chunks_max: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_docs_max: 4096,
            sled_cache_bytes: 64 * 1024 * 1024,
            queue_write_sets_max: 4096,
            compact_chunks_max: 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error("a fieldsync store already exists at {0}")]
    AlreadyExists(String),
    #[error("cannot open the store at {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the store at {path} is damaged: {reason} (run `fieldsync verify`)")]
    Corrupt { path: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("work order `{0}` already exists")]
    AlreadyExists(String),
    #[error("no work order `{0}`")]
    NotFound(String),
    #[error("invalid document id: {0}")]
    InvalidId(String),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("storage error: {0}")]
    Io(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("record `{collection}/{key}` is at version {}, not the one expected", current.map_or("none (absent)".to_string(), |v| v.to_string()))]
    VersionMismatch {
        collection: String,
        key: String,
        /// The live record's version, `None` when absent or deleted.
        current: Option<u64>,
    },
    #[error("an earlier flush failed; reopen the store")]
    StoreFailed,
    #[error("the store is closed")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("storage error: {0}")]
    Io(String),
    #[error("stored data for `{id}` is damaged: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("document `{id}` cannot be loaded: {source}")]
    Load { id: String, source: Box<LoadError> },
    #[error("document `{id}` is not a valid work order: {source}")]
    Shape {
        id: String,
        source: Box<doc::ReadError>,
    },
}

fn io(error: sled::Error) -> ReadError {
    ReadError::Io(error.to_string())
}

/// An acknowledgement still in flight: wait for it to learn the outcome.
#[must_use = "a write is not durable until its Pending resolves"]
pub struct Pending {
    reply: oneshot::Receiver<Result<Receipt, WriteError>>,
}

impl Pending {
    /// Block until the write is flushed. Not for async contexts.
    pub fn wait(self) -> Result<Receipt, WriteError> {
        self.reply
            .blocking_recv()
            .unwrap_or(Err(WriteError::Closed))
    }

    pub async fn wait_async(self) -> Result<Receipt, WriteError> {
        self.reply.await.unwrap_or(Err(WriteError::Closed))
    }
}

/// An acknowledged (durable) change to a work order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub id: String,
    pub seq: u64,
    pub heads: Vec<String>,
}

struct Inner {
    path: PathBuf,
    data: sled::Tree,
    epoch: [u8; 16],
    /// The actor this node writes as: new at every open and after every
    /// purge (see `SyncStore::actor`).
    actor: Mutex<ActorId>,
    config: StoreConfig,
    sender: Mutex<Option<SyncSender<Request>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    published: Arc<Published>,
    visible: watch::Receiver<u64>,
    cache: cache::DocCache,
}

/// A handle to one node's store. Clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

const META_EPOCH: &str = "epoch";
const META_ACTOR: &str = "actor";

fn sled_config(dir: &Path, config: &StoreConfig) -> sled::Config {
    sled::Config::new()
        .path(dir.join("sled"))
        .cache_capacity(config.sled_cache_bytes)
        // Durability comes from our own flush in the committer; sled's
        // background flusher only adds unrequested fsyncs.
        .flush_every_ms(None)
}

/// How long `open` waits for sled's directory lock, at most.
const SLED_LOCK_WAIT_MS: u64 = 2_000;
/// Pause between two tries for the lock.
const SLED_LOCK_RETRY_MS: u64 = 20;

/// Open sled at `dir`, waiting up to [`SLED_LOCK_WAIT_MS`] for its
/// directory lock. Why wait: a store closed a moment ago in this process
/// may still have sled's background threads holding the lock (seen as
/// "could not acquire lock", `WouldBlock`, when a node or a test reopens at
/// once); another process holding it still fails, after the wait.
fn open_sled(dir: &Path, config: &StoreConfig) -> Result<sled::Db, OpenError> {
    let tries = SLED_LOCK_WAIT_MS / SLED_LOCK_RETRY_MS;
    for _ in 0..tries {
        match sled_config(dir, config).open() {
            // sled reports the lock as `Other` with this text (config.rs).
            Err(sled::Error::Io(error)) if error.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(SLED_LOCK_RETRY_MS));
            }
            other => return other.map_err(|e| sled_open_error(dir, e)),
        }
    }
    sled_config(dir, config)
        .open()
        .map_err(|e| sled_open_error(dir, e))
}

impl Store {
    /// Create a new, empty store at `dir` with a fresh random epoch.
    pub fn init(dir: &Path, config: StoreConfig) -> Result<Store, OpenError> {
        let io_error = |e: std::io::Error| OpenError::Io {
            path: dir.display().to_string(),
            reason: e.to_string(),
        };
        if dir.join("FORMAT").exists() {
            return Err(OpenError::AlreadyExists(dir.display().to_string()));
        }
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let db = open_sled(dir, &config)?;
        let meta = db.open_tree("meta").map_err(|e| sled_open_error(dir, e))?;
        let epoch: [u8; 16] = rand::random();
        // A new store is a new actor: reusing an actor after a wipe would
        // reuse its change sequence numbers and break Automerge.
        let actor: [u8; 16] = rand::random();
        meta.insert(META_EPOCH, &epoch)
            .map_err(|e| sled_open_error(dir, e))?;
        meta.insert(META_ACTOR, &actor)
            .map_err(|e| sled_open_error(dir, e))?;
        db.flush().map_err(|e| sled_open_error(dir, e))?;
        drop(meta);
        format::write(dir, format::FORMAT_VERSION).map_err(io_error)?;
        // The same handle goes on: closing and reopening would race sled's
        // background threads for the directory's lock (seen under load as
        // "could not acquire lock", WouldBlock).
        Store::open_db(dir, config, db, format::FORMAT_VERSION)
    }

    /// Open an existing store, migrating an older format (and saying so).
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, OpenError> {
        let found = format::read(dir)?;
        format::check(dir, found)?;
        let db = open_sled(dir, &config)?;
        Store::open_db(dir, config, db, found)
    }

    /// The rest of `open`, on an open sled database of format `found`.
    fn open_db(
        dir: &Path,
        config: StoreConfig,
        db: sled::Db,
        found: u32,
    ) -> Result<Store, OpenError> {
        if found < format::FORMAT_VERSION {
            for (from, step) in format::MIGRATIONS.iter().filter(|(from, _)| *from >= found) {
                tracing::info!(from, to = from + 1, "migrating store format");
                step(&db).map_err(|e| sled_open_error(dir, e))?;
            }
            db.flush().map_err(|e| sled_open_error(dir, e))?;
            format::write(dir, format::FORMAT_VERSION).map_err(|e| OpenError::Io {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            tracing::info!(from = found, to = format::FORMAT_VERSION, "migrated store");
        }
        let corrupt = |reason: &str| OpenError::Corrupt {
            path: dir.display().to_string(),
            reason: reason.into(),
        };
        let meta = db.open_tree("meta").map_err(|e| sled_open_error(dir, e))?;
        let data = db.open_tree("data").map_err(|e| sled_open_error(dir, e))?;
        let read16 = |key: &str| -> Result<[u8; 16], OpenError> {
            let value = meta.get(key).map_err(|e| sled_open_error(dir, e))?;
            value
                .as_deref()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| corrupt(&format!("missing {key}")))
        };
        let epoch = read16(META_EPOCH)?;
        // The stored actor only says the store is whole; this life writes
        // as a new one: changes a crash took from us may live on at a
        // peer, and writing again as the same actor would reuse their
        // sequence numbers, which Automerge refuses on every later sync.
        read16(META_ACTOR)?;
        let actor = ActorId::random();
        let last_seq = match data
            .scan_prefix([keys::CHANGELOG])
            .next_back()
            .transpose()
            .map_err(|e| sled_open_error(dir, e))?
        {
            None => 0,
            Some((key, _)) => {
                keys::changelog_seq(&key).ok_or_else(|| corrupt("bad changelog key"))?
            }
        };
        let holdings = holdings::Holdings::scan(&data).map_err(|e| corrupt(&e))?;
        let (visible_seq, visible) = watch::channel(last_seq);
        let (users_version, _) = watch::channel(0);
        let published = Arc::new(Published {
            visible_seq,
            users_version,
            failed: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            holdings: Mutex::new(holdings),
            reader_marks: Mutex::new(reader_index::ReaderMarks::opened_at(last_seq)),
        });
        let (sender, receiver) = sync_channel(config.queue_write_sets_max);
        let committer = {
            let (db, data, published) = (db.clone(), data.clone(), published.clone());
            std::thread::Builder::new()
                .name("fieldsync-commit".into())
                .spawn(move || commit::run(receiver, db, data, last_seq + 1, published))
                .map_err(|e| OpenError::Io {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?
        };
        Ok(Store {
            inner: Arc::new(Inner {
                path: dir.to_path_buf(),
                cache: cache::DocCache::new(config.cache_docs_max),
                data,
                epoch,
                actor: Mutex::new(actor),
                config,
                sender: Mutex::new(Some(sender)),
                committer: Mutex::new(Some(committer)),
                published,
                visible,
            }),
        })
    }

    /// Stop accepting writes, let the committer finish what it has, and wait.
    pub fn close(&self) {
        drop(
            self.inner
                .sender
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if let Some(handle) = self
            .inner
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The random id of this store's life; a wiped node gets a new one.
    pub fn epoch(&self) -> [u8; 16] {
        self.inner.epoch
    }

    /// Write as a new actor from now on.
    pub(crate) fn new_actor(&self) {
        *self.inner.actor.lock().unwrap_or_else(|p| p.into_inner()) = ActorId::random();
    }

    /// The actor this node writes as now.
    pub fn actor(&self) -> ActorId {
        self.inner
            .actor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Flushes performed so far (group-commit effectiveness).
    pub fn flush_count(&self) -> u64 {
        self.inner.published.flushes.load(Ordering::Relaxed)
    }

    /// Highest durable seq. Nothing above it is visible to readers.
    pub fn last_seq(&self) -> u64 {
        *self.inner.visible.borrow()
    }

    /// A receiver that changes whenever `last_seq` advances (longpoll).
    pub fn watch_seq(&self) -> watch::Receiver<u64> {
        self.inner.visible.clone()
    }

    /// A receiver that changes after every durable write of a user record
    /// (a revocation, a role change, an enrollment).
    pub fn watch_users(&self) -> watch::Receiver<u64> {
        self.inner.published.users_version.subscribe()
    }

    /// Queue a write set for the committer; resolve the `Pending` to learn
    /// when it is durable. Blocks while the queue is full (backpressure).
    ///
    /// Loaded copies of the written documents are dropped from the cache,
    /// so the next `load` reads what this write set stored. A document has
    /// one writer at a time: code that edits an existing document goes
    /// through [`Store::edit_work_order`], which holds the document's lock
    /// until its write is durable.
    pub fn submit(&self, writes: WriteSet) -> Result<Pending, WriteError> {
        for write in &writes.docs {
            self.inner.cache.evict(&write.id);
        }
        self.submit_unchecked(writes)
    }

    /// `submit` without touching the cache: for writers that hold the
    /// cached document's lock and keep it current themselves.
    fn submit_unchecked(&self, writes: WriteSet) -> Result<Pending, WriteError> {
        debug_assert!(
            writes
                .docs
                .iter()
                .enumerate()
                .all(|(i, a)| writes.docs[i + 1..].iter().all(|b| a.id != b.id)),
            "a write set names each document once"
        );
        self.submit_request(writes, Vec::new())
    }

    /// Wait until everything a reader may have seen is durable. The
    /// committer applies a group before it flushes it, so a reader can see
    /// a write whose flush is still running; whoever answers "already
    /// done" from such a read (an idempotent resend) calls this first. It
    /// is an empty write set: the one committer answers it only after
    /// every earlier group's flush.
    pub fn durable_barrier(&self) -> Result<(), WriteError> {
        self.submit_request(WriteSet::default(), Vec::new())?
            .wait()
            .map(|_| ())
    }

    /// Build a new work order and queue it; the caller resolves the ack.
    /// Used directly by bulk import to keep many creates in flight.
    pub fn submit_create(
        &self,
        who: &Actor,
        new: &NewWorkOrder,
        time_s: i64,
    ) -> Result<(String, Pending), WriteError> {
        let (id, _, pending) = self.queue_create(who, new, time_s)?;
        Ok((id, pending))
    }

    /// Build, queue, and return the new document's id and heads.
    fn queue_create(
        &self,
        who: &Actor,
        new: &NewWorkOrder,
        time_s: i64,
    ) -> Result<(String, Vec<[u8; 32]>, Pending), WriteError> {
        let id = match &new.id {
            Some(id) => {
                validate_doc_id(id)?;
                id.clone()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let (_, edit) = WorkOrderDoc::create(&self.actor(), who, &id, new, time_s)?;
        // The index fields come from the request, not from reading the new
        // document back: the same values, without four Automerge lookups.
        let heads: Vec<[u8; 32]> = edit.heads.iter().map(|head| head.0).collect();
        let write = DocWrite {
            id: id.clone(),
            collection: Collection::WorkOrders,
            number: Some(new.number.clone()),
            assignee: new.assignee.clone().filter(|assignee| !assignee.is_empty()),
            unassigned_changed: Vec::new(),
            deleted: false,
            op: edit.op,
            heads: heads.clone(),
            bytes: edit.change_bytes,
            replace: true,
            must_be_new: true,
        };
        let pending = self.submit_unchecked(WriteSet {
            docs: vec![write],
            records: Vec::new(),
            checkpoint: None,
        })?;
        Ok((id, heads, pending))
    }

    /// Create a work order and wait until it is durable.
    pub fn create_work_order(
        &self,
        who: &Actor,
        new: &NewWorkOrder,
        time_s: i64,
    ) -> Result<Committed, WriteError> {
        let (id, heads, pending) = self.queue_create(who, new, time_s)?;
        let receipt = pending.wait()?;
        Ok(Committed {
            id,
            seq: receipt.seqs[0],
            heads: heads.iter().map(hex::encode).collect(),
        })
    }

    /// Apply a typed operation as `who` and wait until it is durable.
    pub fn update_work_order(
        &self,
        id: &str,
        who: &Actor,
        op: &Operation,
        time_s: i64,
    ) -> Result<Committed, WriteError> {
        self.edit_work_order(id, |document| Ok(document.apply(who, op, time_s)?))
    }

    /// Run `edit` on the loaded document and store what it produced. The
    /// document stays locked until the write is durable, so edits of one
    /// document are stored in the order they were made.
    pub fn edit_work_order(
        &self,
        id: &str,
        edit: impl FnOnce(&mut WorkOrderDoc) -> Result<Edit, WriteError>,
    ) -> Result<Committed, WriteError> {
        self.edit_work_order_with_records(id, |doc| edit(doc).map(|made| (made, Vec::new())))
    }

    /// [`Store::edit_work_order`] whose `edit` also returns record writes
    /// that must land in the same write set as the change: both durable
    /// together, or neither (the gateway's external events store their
    /// idempotency record so). A refused record write (a failed
    /// [`Expect`]) refuses the edit too. The records are made after the
    /// edit, so they may hold what it produced (its heads).
    pub fn edit_work_order_with_records(
        &self,
        id: &str,
        edit: impl FnOnce(&mut WorkOrderDoc) -> Result<(Edit, Vec<RecordWrite>), WriteError>,
    ) -> Result<Committed, WriteError> {
        let handle = self
            .load(id)?
            .ok_or_else(|| WriteError::NotFound(id.to_string()))?;
        let mut cached = handle.lock().unwrap_or_else(|p| p.into_inner());
        let unassigned_before = cached.doc.unassigned();
        let result = edit(&mut cached.doc).and_then(|(made, records)| {
            let replace = cached.chunks + 1 >= self.inner.config.compact_chunks_max;
            let mut write = doc_write(&cached.doc, made, replace, false);
            write.unassigned_changed =
                reassignment::changed_entries(&unassigned_before, &write.unassigned_changed);
            let heads = write.heads.iter().map(hex::encode).collect();
            let receipt = self
                .submit_unchecked(WriteSet {
                    docs: vec![write],
                    records,
                    checkpoint: None,
                })?
                .wait()?;
            cached.chunks = receipt.chunk_counts[0];
            Ok(Committed {
                id: id.to_string(),
                seq: receipt.seqs[0],
                heads,
            })
        });
        if result.is_err() {
            // The in-memory document may hold a change that is not stored.
            drop(cached);
            self.inner.cache.evict(id);
        }
        result
    }

    /// The document's index entry, if it exists.
    pub fn doc_index(&self, id: &str) -> Result<Option<DocIndex>, ReadError> {
        let Some(bytes) = self.inner.data.get(keys::index(id)).map_err(io)? else {
            return Ok(None);
        };
        decode(&bytes).map(Some).map_err(|e| ReadError::Corrupt {
            id: id.into(),
            reason: e.to_string(),
        })
    }

    /// The stored bytes of a document: its chunks, concatenated.
    pub fn doc_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(index) = self.doc_index(id)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(index.bytes_stored as usize);
        let mut chunks = 0u32;
        for item in self.inner.data.scan_prefix(keys::chunk_prefix(id)) {
            let (_, value) = item.map_err(io)?;
            bytes.extend_from_slice(&value);
            chunks += 1;
        }
        if chunks != index.chunk_count() {
            return Err(ReadError::Corrupt {
                id: id.into(),
                reason: format!("index names {} chunks, found {chunks}", index.chunk_count()),
            });
        }
        Ok(Some(bytes))
    }

    /// The loaded document, from the cache or from disk.
    pub fn load(&self, id: &str) -> Result<Option<Arc<Mutex<CachedDoc>>>, ReadError> {
        if let Some(handle) = self.inner.cache.get(id) {
            return Ok(Some(handle));
        }
        let Some(index) = self.doc_index(id)? else {
            return Ok(None);
        };
        let Some(bytes) = self.doc_bytes(id)? else {
            return Ok(None);
        };
        let document =
            WorkOrderDoc::load(&bytes, &self.actor()).map_err(|source| ReadError::Load {
                id: id.into(),
                source: Box::new(source),
            })?;
        Ok(Some(self.inner.cache.insert(
            id,
            CachedDoc {
                doc: document,
                chunks: index.chunk_count(),
            },
        )))
    }

    /// The read model of a work order.
    pub fn work_order(&self, id: &str) -> Result<Option<WorkOrderView>, ReadError> {
        let Some(handle) = self.load(id)? else {
            return Ok(None);
        };
        let cached = handle.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .doc
            .view()
            .map(Some)
            .map_err(|source| ReadError::Shape {
                id: id.into(),
                source: Box::new(source),
            })
    }

    /// Changelog entries with `seq > after`, oldest first, at most `limit`,
    /// never past the last durable seq.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<ChangeEntry>, ReadError> {
        let visible = self.last_seq();
        let mut entries = Vec::with_capacity(limit.min(1024));
        if after >= visible {
            return Ok(entries);
        }
        for item in self
            .inner
            .data
            .range(keys::changelog(after + 1)..=keys::changelog(visible))
            .take(limit)
        {
            let (key, value) = item.map_err(io)?;
            let seq = keys::changelog_seq(&key).ok_or_else(|| ReadError::Corrupt {
                id: "changelog".into(),
                reason: "bad key".into(),
            })?;
            let record = ChangeRecord::decode(&value).map_err(|e| ReadError::Corrupt {
                id: format!("changelog {seq}"),
                reason: e.to_string(),
            })?;
            entries.push(record.into_entry(seq));
        }
        Ok(entries)
    }

    /// Ids of every document, in key order, after `after` (paging).
    pub fn doc_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, ReadError> {
        let start = match after {
            Some(id) => {
                let mut key = keys::index(id);
                key.push(0);
                key
            }
            None => vec![keys::INDEX],
        };
        let mut ids = Vec::new();
        for item in self.inner.data.range(start..).take(limit) {
            let (key, _) = item.map_err(io)?;
            if key.first() != Some(&keys::INDEX) {
                break;
            }
            ids.push(String::from_utf8_lossy(&key[1..]).into_owned());
        }
        Ok(ids)
    }

    /// The checkpoint this node holds for `peer`.
    pub fn checkpoint(&self, peer: &str) -> Result<Option<Checkpoint>, ReadError> {
        let Some(bytes) = self.inner.data.get(keys::checkpoint(peer)).map_err(io)? else {
            return Ok(None);
        };
        decode(&bytes).map(Some).map_err(|e| ReadError::Corrupt {
            id: format!("checkpoint {peer}"),
            reason: e.to_string(),
        })
    }

    /// Check every document against the index and the changelog.
    pub fn verify(&self, progress: impl FnMut(u64)) -> Result<Vec<Problem>, ReadError> {
        verify::run(self, progress)
    }

    /// The holdings digest of every work order held here (as flushed).
    pub fn held_digest(&self) -> Hash {
        self.holdings().held()
    }

    /// The holdings digest of the work orders assigned to `user` here.
    pub fn assigned_digest(&self, user: &str) -> Hash {
        self.holdings().assigned(user)
    }

    /// Up to `limit` ids of the work orders assigned to `user` here (as
    /// flushed), in id order.
    pub fn assigned_ids(&self, user: &str, limit: usize) -> Vec<String> {
        self.holdings().assigned_ids(user, limit)
    }

    fn reader_marks(&self) -> std::sync::MutexGuard<'_, reader_index::ReaderMarks> {
        self.inner
            .published
            .reader_marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn holdings(&self) -> std::sync::MutexGuard<'_, holdings::Holdings> {
        self.inner
            .published
            .holdings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn data(&self) -> &sled::Tree {
        &self.inner.data
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(
            self.sender
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if let Some(handle) = self
            .committer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
    }
}

fn sled_open_error(dir: &Path, error: sled::Error) -> OpenError {
    match error {
        sled::Error::Corruption { .. } => OpenError::Corrupt {
            path: dir.display().to_string(),
            reason: error.to_string(),
        },
        other => OpenError::Io {
            path: dir.display().to_string(),
            reason: other.to_string(),
        },
    }
}

pub fn validate_doc_id(id: &str) -> Result<(), WriteError> {
    doc::validate_doc_id(id).map_err(WriteError::InvalidId)
}

/// The write that stores `edit` of `document`: its change bytes as a new
/// chunk, or, when `replace`, the whole document as a snapshot.
pub fn doc_write(
    document: &WorkOrderDoc,
    edit: Edit,
    replace: bool,
    must_be_new: bool,
) -> DocWrite {
    let bytes = if replace && !must_be_new {
        document.save()
    } else {
        edit.change_bytes
    };
    DocWrite {
        id: document.id(),
        collection: Collection::WorkOrders,
        number: Some(document.number()),
        assignee: document.assignee(),
        // Every entry the document carries: right for a new document; a
        // caller that edited a stored one narrows it to what changed.
        unassigned_changed: document.unassigned(),
        deleted: document.is_deleted(),
        op: edit.op,
        heads: edit.heads.iter().map(|head| head.0).collect(),
        bytes,
        replace,
        must_be_new,
    }
}
