//! Inbound: the peer's pages to us (`Announce`, `AnnouncePush`, `Prime`),
//! the whole documents we ask for (`Want`, answered by `DocBatch`), the
//! records an office sends with them (`Records`), and our `PageDone`.
//!
//! A page is pending until every document it announced is merged, or
//! settled: refused, revoked, purged, rejected by the peer. Settling is for
//! the session: nothing more about the document will be merged in it, so
//! waiting for it would stall the page (and every later one) for good.
//!
//! Invariant kept here: *a checkpoint is never ahead of the documents it
//! covers*. A page's checkpoint write is queued only once its documents
//! are merged (their writes queued before it; the store is FIFO), and
//! `PageDone` goes out only when that write is durable. Pages complete in
//! order.

use std::collections::{HashMap, HashSet, VecDeque};

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_schemas::sync_frame::{
    DocHeads, Frame, RecordCopy, WireCheckpoint, PROTOCOL_VERSION_RECORDS, PROTOCOL_VERSION_REOFFER,
};

use super::checks::load_work_orders;
use super::wire::decode_docs;
use super::{protocol, store_error, Event, Session, SessionError};
use crate::doc::validate_doc_id;
use crate::sync::records;
use crate::sync::store::{SyncStore, WriteId};

/// The peer's pages in flight, and where its changelog stands for us.
#[derive(Default)]
pub(super) struct Inbound {
    /// The page number the peer must send next.
    next_page: u64,
    /// Pages received and not yet acknowledged, oldest first.
    pages: VecDeque<InPage>,
    /// The peer's seq up to which we durably hold its changes.
    checkpoint_seq: u64,
    /// The peer's store life, recorded with our checkpoints for it.
    peer_epoch: [u8; 16],
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

impl Inbound {
    /// The peer's hello: its store life, and our durable checkpoint for it.
    pub(super) fn start(&mut self, peer_epoch: [u8; 16], checkpoint_seq: u64) {
        self.peer_epoch = peer_epoch;
        self.checkpoint_seq = checkpoint_seq;
    }

    pub(super) fn checkpoint_seq(&self) -> u64 {
        self.checkpoint_seq
    }

    /// No page of the peer's awaits merging or its checkpoint.
    pub(super) fn is_settled(&self) -> bool {
        self.pages.is_empty()
    }

    /// Ask for `id` whole in the oldest page waiting for it that has not
    /// asked already: returns that page.
    pub(super) fn ask_whole(&mut self, id: &str) -> Option<u64> {
        let page = self
            .pages
            .iter_mut()
            .find(|page| page.waiting.contains_key(id) && !page.full.contains(id))?;
        page.full.insert(id.to_string());
        Some(page.page)
    }

    /// Documents the peer announced that we have not finished merging.
    pub(super) fn pending_docs(&self) -> u64 {
        self.pages
            .iter()
            .map(|page| page.waiting.len() as u64)
            .sum()
    }

    /// Check that an incoming page comes in order, advances the peer's
    /// changelog (an empty page may repeat the last seq), and fits the
    /// window; then count it.
    /// `reoffer`: an office may announce again at the last page's seq
    /// (protocol 6, `holding.rs`).
    fn open_page(
        &mut self,
        kind: &str,
        page: u64,
        upto_seq: u64,
        (empty, reoffer): (bool, bool),
        pages_in_flight_max: usize,
    ) -> Result<(), SessionError> {
        if page != self.next_page {
            return Err(protocol(format!(
                "{kind} page {page}, expected {}",
                self.next_page
            )));
        }
        let last_upto = self
            .pages
            .back()
            .map_or(self.checkpoint_seq, |p| p.upto_seq);
        if upto_seq <= last_upto && !(upto_seq == last_upto && (empty || reoffer)) {
            return Err(protocol(format!(
                "{kind} up to seq {upto_seq} does not advance past {last_upto}"
            )));
        }
        if self.pages.len() >= pages_in_flight_max * 2 {
            return Err(protocol("too many pages in flight"));
        }
        self.next_page += 1;
        Ok(())
    }

    /// A page with nothing to wait for (a primed page, merged on receipt).
    pub(super) fn push_settled_page(&mut self, page: u64, upto_seq: u64) {
        self.pages.push_back(InPage {
            page,
            upto_seq,
            waiting: HashMap::new(),
            full: HashSet::new(),
            checkpoint_write: None,
        });
    }

    /// `write` and every write queued before it are durable (FIFO): take
    /// the leading pages whose checkpoint that covers, as `(page,
    /// upto_seq)`, and advance our checkpoint past them.
    pub(super) fn durable_pages(&mut self, write: WriteId) -> Vec<(u64, u64)> {
        let mut done = Vec::new();
        while let Some(page) = self.pages.front() {
            match page.checkpoint_write {
                Some(checkpoint) if checkpoint <= write => {}
                _ => break,
            }
            let Some(page) = self.pages.pop_front() else {
                break;
            };
            self.checkpoint_seq = page.upto_seq;
            done.push((page.page, page.upto_seq));
        }
        done
    }

    /// Stop waiting for `id` in every pending page.
    fn settle(&mut self, id: &str) {
        for page in self.pages.iter_mut() {
            page.waiting.remove(id);
            page.full.remove(id);
        }
    }

    /// A `DocSync` exchange left our copy of `id` as `doc`: every page
    /// waiting for announced heads that `doc` now holds has them. With
    /// `settled` (the changes were refused), the pages stop waiting anyway.
    pub(super) fn settle_synced(&mut self, id: &str, doc: &Automerge, settled: bool) {
        let heads = doc.get_heads();
        for page in self.pages.iter_mut() {
            if let Some(wanted) = page.waiting.get(id) {
                if settled
                    || wanted
                        .iter()
                        .all(|h| heads.contains(h) || doc.get_change_by_hash(h).is_some())
                {
                    page.waiting.remove(id);
                }
            }
        }
    }

    /// Queue the checkpoint of every leading page whose documents are all
    /// merged.
    fn queue_checkpoints<S: SyncStore>(
        &mut self,
        peer_node_id: &str,
        store: &mut S,
    ) -> Result<(), SessionError> {
        for page in self.pages.iter_mut() {
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
                        .save_checkpoint(peer_node_id, checkpoint)
                        .map_err(store_error)?,
                );
            }
        }
        Ok(())
    }
}

/// What an announce page asks of us, built document by document.
#[derive(Default)]
struct Triage {
    /// Documents the page waits for, with the heads announced.
    waiting: HashMap<String, Vec<ChangeHash>>,
    /// Documents to ask for whole.
    full: Vec<String>,
    /// Documents to reconcile (we start the sync protocol).
    to_sync: Vec<String>,
    /// Documents merged from pushed changes.
    received: u64,
}

impl Session {
    /// Check an incoming page (`Announce` or `Prime`); see
    /// [`Inbound::open_page`].
    pub(super) fn open_in_page(
        &mut self,
        kind: &str,
        page: u64,
        upto_seq: u64,
        empty: bool,
    ) -> Result<(), SessionError> {
        let pages_in_flight_max = self.config.pages_in_flight_max;
        let reoffer =
            kind == "announce" && self.peer.is_office() && self.version >= PROTOCOL_VERSION_REOFFER;
        self.inbound
            .open_page(kind, page, upto_seq, (empty, reoffer), pages_in_flight_max)
    }

    pub(super) fn on_announce<S: SyncStore>(
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
        let mut triage = Triage::default();
        for DocHeads { id, heads } in docs {
            let push = pushed.next().unwrap_or_default();
            if validate_doc_id(&id).is_err() || triage.waiting.contains_key(&id) {
                return Err(protocol(format!(
                    "bad or repeated document id in announce: {id:?}"
                )));
            }
            let heads: Vec<ChangeHash> = heads.into_iter().map(ChangeHash).collect();
            self.echo.remember(&id, &heads, store.actor());
            self.triage_announced(now_ms, id, heads, &push, &mut triage, store)?;
        }
        let Triage {
            waiting,
            full,
            to_sync,
            received,
        } = triage;
        self.start_reconciling(&to_sync, store)?;
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
        self.inbound.pages.push_back(InPage {
            page,
            upto_seq,
            waiting,
            full: full.into_iter().collect(),
            checkpoint_write: None,
        });
        self.complete_pages(store)
    }

    /// Decide what one announced document needs: nothing (we hold its
    /// heads), the whole document, reconciling, or a refusal; merging the
    /// changes pushed with it first.
    fn triage_announced<S: SyncStore>(
        &mut self,
        now_ms: u64,
        id: String,
        heads: Vec<ChangeHash>,
        push: &[u8],
        triage: &mut Triage,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let mut meta = store.doc_meta(&id).map_err(store_error)?;
        // Pushed changes come from an office only (checked on receipt),
        // whose changes pass without field rules, as in `on_doc_sync`.
        let settled_before = meta.as_ref().is_some_and(|m| same_heads(&m.heads, &heads));
        if !push.is_empty() && !settled_before {
            if let Some(after) = self.apply_push(now_ms, &id, push, meta.is_none(), store)? {
                triage.received += 1;
                meta = Some(after);
            }
        }
        match meta {
            None if self.peer.is_office() => {
                triage.full.push(id.clone());
                triage.waiting.insert(id, heads);
            }
            // One office alone lost it: the device drops it too (the same
            // answer as a document it may not see: a guessed id learns
            // nothing). With another office it may not have come yet.
            None if self.config.sole_office => {
                if self.reject_invisible(&id, true) {
                    triage.waiting.insert(id, heads);
                }
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
                    triage.waiting.insert(id, heads);
                }
            }
            Some(meta) => {
                if same_heads(&meta.heads, &heads) {
                    return Ok(());
                }
                let refused = self.reconcile.is_refused(&id);
                if !has_all(&meta.heads, &heads, || store.doc(&id))? {
                    triage.to_sync.push(id.clone());
                    // A document we refused from this peer counts as
                    // settled: waiting for it would stall the page.
                    if !refused {
                        triage.waiting.insert(id, heads);
                    }
                } else if !refused {
                    // We are ahead: the peer may never announce our
                    // extra changes to us again (its checkpoint may be
                    // past them, e.g. after it refused the document
                    // before it had it), so reconcile now (simulator,
                    // seed 25). Nothing to wait for.
                    self.ahead_of_peer(&id, now_ms, store)?;
                    triage.to_sync.push(id);
                }
            }
        }
        Ok(())
    }

    /// We hold every change the peer sent or announced for `id`, and more.
    /// A device names the document again in its changelog: the peer's
    /// checkpoint may have passed our changes (an office refuses them while
    /// it lacks the document), and reconciling them may be cut with the
    /// connection after our checkpoint passed the peer's page too (default
    /// world seed 153). Durable before that checkpoint (the store is FIFO),
    /// the entry is announced again in this session or the next. An office's
    /// extra changes are its own entries, which a device never refuses for
    /// lack of the document.
    pub(super) fn ahead_of_peer<S: SyncStore>(
        &mut self,
        id: &str,
        now_ms: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.config.office {
            store.touch(id, now_ms).map_err(store_error)?;
        }
        Ok(())
    }

    pub(super) fn on_batch<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        compressed: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        let batch = decode_docs(self.decode_batch(compressed)?);
        let limits = self.intake_limits();
        let Some(in_page) = self.inbound.pages.iter_mut().find(|p| p.page == page) else {
            if page < self.inbound.next_page {
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

    /// Record copies from an office: checked, then queued for the store
    /// before the page they precede can complete.
    pub(super) fn on_records<S: SyncStore>(
        &mut self,
        compressed: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.peer.is_office() || self.version < PROTOCOL_VERSION_RECORDS {
            return Err(protocol("only an office sends records (version 4)"));
        }
        let copies: Vec<RecordCopy> = self.decode_batch(compressed)?;
        records::check_received(&copies, &self.peer, self.version).map_err(protocol)?;
        store.apply_records(copies).map_err(store_error)
    }

    /// The peer would not take one of our documents.
    pub(super) fn on_rejected<S: SyncStore>(
        &mut self,
        id: String,
        reason: String,
        store: &mut S,
    ) -> Result<(), SessionError> {
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

    /// Stop waiting for a document in every pending page: it was refused
    /// or purged, so nothing more about it will arrive.
    pub(super) fn settle(&mut self, id: &str) {
        self.reconcile.forget(id);
        self.inbound.settle(id);
    }

    /// Queue the checkpoint of every leading page whose documents are all
    /// merged. The store is FIFO, so the checkpoint is durable only after
    /// those documents.
    pub(super) fn complete_pages<S: SyncStore>(
        &mut self,
        store: &mut S,
    ) -> Result<(), SessionError> {
        self.inbound.queue_checkpoints(&self.peer_node_id, store)
    }
}

pub(super) fn same_heads(ours: &[ChangeHash], theirs: &[ChangeHash]) -> bool {
    ours.len() == theirs.len() && theirs.iter().all(|h| ours.contains(h))
}

/// Does our copy hold every announced head? Compares heads first, loads the
/// document only when they differ.
pub(super) fn has_all<E: std::error::Error>(
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
