//! Outbound: our changelog to the peer, in pages.
//!
//! From the peer's checkpoint on, each page names the documents of a run
//! of changelog entries that the peer may see (`Announce`, with their
//! heads); the peer asks for the ones it has never seen (`Want`, answered
//! with `DocBatch`) and reconciles the rest itself (`DocSync`, see
//! `reconcile`). It acknowledges a page with `PageDone` once its checkpoint
//! is durable. At most `pages_in_flight_max` pages are unacknowledged.
//!
//! Invariants kept here:
//! - Pages go out in changelog order and each advances the cursor; the
//!   peer's `PageDone`s come back in the same order.
//! - Nothing newer than a purge goes out before that purge's `Revoked`
//!   (see [`Session::pump`]).
//! - What we leave out of a page is gone from the peer's view for good (its
//!   checkpoint passes it), so withholding asks the durable state too
//!   (`visible_or_durably`); so does a page's end before a record version
//!   a crash can take back (`records::for_page`).

use std::collections::{BTreeMap, HashSet};

use automerge::{ActorId, ChangeHash};
use fieldsync_schemas::sync_frame::{
    DocHeads, Frame, RecordCopy, PAGE_DOCS_MAX, PROTOCOL_VERSION_RECORDS,
};

use super::visibility::HIDDEN_REASON;
use super::wire::{compress_batch, docs_as_bytes, pushes_as_bytes};
use super::{protocol, store_error, Event, Session, SessionError};
use crate::access::{DocMeta, PeerAccess};
use crate::sync::records;
use crate::sync::store::{LogEntry, ReaderPage, SyncStore};

/// The window of pages we announced to the peer.
#[derive(Default)]
pub(super) struct Outbound {
    /// The last changelog seq a page of ours covers (at first the peer's
    /// checkpoint for us).
    cursor: u64,
    /// While `cursor` is below this, pages go out as `Prime` (whole
    /// documents, unannounced): the peer holds nothing of our changelog.
    prime_until_seq: u64,
    next_page: u64,
    /// Pages sent and not yet acknowledged, by page number.
    pages: BTreeMap<u64, OutPage>,
}

struct OutPage {
    upto_seq: u64,
    docs: u64,
    /// Device: the documents this page announced, with their heads, while
    /// the peer may still wait for them (`Session::tell_lost_copies`).
    announced: Vec<DocHeads>,
    /// The store's actor when the page went out: it changes at every purge,
    /// so while it is the same, every copy announced is still here.
    actor: ActorId,
}

/// A document a page announced, and the store's actor then.
pub(super) struct Announced<'a> {
    pub(super) id: &'a str,
    pub(super) heads: &'a [[u8; 32]],
    pub(super) actor: &'a ActorId,
}

impl Outbound {
    /// Resume after the peer's checkpoint for us (`cursor`), priming the
    /// peer up to `prime_until_seq`.
    pub(super) fn start(&mut self, cursor: u64, prime_until_seq: u64) {
        self.cursor = cursor;
        self.prime_until_seq = prime_until_seq;
    }

    pub(super) fn cursor(&self) -> u64 {
        self.cursor
    }

    pub(super) fn priming(&self) -> bool {
        self.cursor < self.prime_until_seq
    }

    /// No page awaits the peer's `PageDone`.
    pub(super) fn is_settled(&self) -> bool {
        self.pages.is_empty()
    }

    /// Documents announced and not yet acknowledged.
    pub(super) fn pending_docs(&self) -> u64 {
        self.pages.values().map(|page| page.docs).sum()
    }

    /// Number the next page, covering the changelog up to `upto_seq`;
    /// `actor` is the store's now.
    pub(super) fn open_page(
        &mut self,
        upto_seq: u64,
        docs: u64,
        announced: Vec<DocHeads>,
        actor: ActorId,
    ) -> u64 {
        let page = self.next_page;
        self.next_page += 1;
        self.cursor = upto_seq;
        self.pages.insert(
            page,
            OutPage {
                upto_seq,
                docs,
                announced,
                actor,
            },
        );
        page
    }

    /// The documents announced in pages the peer has not acknowledged.
    pub(super) fn announced(&self) -> impl Iterator<Item = Announced<'_>> {
        self.pages.values().flat_map(|page| {
            page.announced.iter().map(|doc| Announced {
                id: &doc.id,
                heads: &doc.heads,
                actor: &page.actor,
            })
        })
    }

    /// The peer was told these copies are gone: nothing more to tell.
    pub(super) fn forget_announced(&mut self, ids: &[String]) {
        for page in self.pages.values_mut() {
            page.announced.retain(|doc| !ids.contains(&doc.id));
        }
    }

    fn has_room(&self, pages_in_flight_max: usize) -> bool {
        self.pages.len() < pages_in_flight_max
    }

    /// The peer's `PageDone`: only for the oldest page in flight, with its
    /// seq.
    fn acknowledge(&mut self, page: u64, upto_seq: u64) -> Result<(), SessionError> {
        let Some(first) = self.pages.keys().next().copied() else {
            return Err(protocol(format!("page {page} done, but none in flight")));
        };
        if page != first || self.pages[&page].upto_seq != upto_seq {
            return Err(protocol(format!("page {page} done out of order")));
        }
        self.pages.remove(&page);
        Ok(())
    }
}

impl Session {
    /// Announce pages while the window has room and the changelog has more.
    pub(super) fn pump<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        // Nothing newer than a purge goes out before the purge's `Revoked`:
        // the peer takes `Revoked` to mean that every page it has from us
        // so far holds the destroyed copy, and stops waiting for it.
        if self.revocation.purges_pending() {
            return Ok(());
        }
        let mut pages_sent = 0;
        if self.outbound.has_room(self.config.pages_in_flight_max)
            && !self.outbound.priming()
            && self.reoffer_page(now_ms, store)?
        {
            pages_sent += 1;
        }
        while self.outbound.has_room(self.config.pages_in_flight_max)
            && self.outbound.cursor < store.last_seq()
        {
            let sent = if self.outbound.priming() {
                self.prime_page(now_ms, store)?
            } else {
                self.announce_page(now_ms, store)?
            };
            if !sent {
                break;
            }
            pages_sent += 1;
            assert!(pages_sent <= self.config.pages_in_flight_max);
        }
        Ok(())
    }

    /// Offer again what the device's holdings list lacks (`holding.rs`):
    /// an `Announce` of those documents the peer may see, at our cursor (a
    /// page that does not advance the changelog, protocol 6). Returns
    /// whether a page went out.
    fn reoffer_page<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<bool, SessionError> {
        let mut docs = Vec::new();
        for id in self.holding.take_reoffers(PAGE_DOCS_MAX) {
            let Some(meta) = store.doc_meta(&id).map_err(store_error)? else {
                continue;
            };
            if self.visible_or_durably(&id, &meta, now_ms, store, &mut None)? {
                docs.push(DocHeads {
                    id,
                    heads: meta.heads.iter().map(|h| h.0).collect(),
                });
            }
        }
        if docs.is_empty() {
            return Ok(false);
        }
        let upto_seq = self.outbound.cursor;
        let page = self
            .outbound
            .open_page(upto_seq, docs.len() as u64, Vec::new(), store.actor());
        self.outbox.push_back(Frame::Announce {
            page,
            upto_seq,
            docs,
        });
        Ok(true)
    }

    /// Send the next page of the changelog as `Announce` (or, from an
    /// office, `AnnouncePush`). Returns whether a page went out.
    fn announce_page<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<bool, SessionError> {
        let (entries, records, upto_seq) = self.page_entries(now_ms, store)?;
        if upto_seq <= self.outbound.cursor {
            return Ok(false);
        }
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
        if pushed.is_some() {
            let heads: Vec<Vec<ChangeHash>> = docs
                .iter()
                .map(|d| d.heads.iter().copied().map(ChangeHash).collect())
                .collect();
            let ids = docs.iter().map(|d| d.id.as_str());
            self.vouch_before_sending(ids.zip(heads.iter().map(Vec::as_slice)), store)?;
        }
        let announced = if self.config.office {
            Vec::new()
        } else {
            docs.clone()
        };
        let page = self
            .outbound
            .open_page(upto_seq, docs.len() as u64, announced, store.actor());
        self.outbox.push_back(match pushed {
            Some(pushed) => Frame::AnnouncePush {
                page,
                upto_seq,
                docs,
                compressed: compress_batch(&pushes_as_bytes(&pushed), self.config.batch_zstd_level),
            },
            None => Frame::Announce {
                page,
                upto_seq,
                docs,
            },
        });
        Ok(true)
    }

    /// The next page's changelog entries, the records among them to send
    /// (an office, version 4), and the seq the page covers up to; the page
    /// ends early where the records' byte budget ran out. A technician's
    /// device reads only its share of the changelog
    /// (`SyncStore::changes_for`): its session costs what it may see, not
    /// every change of the central.
    pub(super) fn page_entries<S: SyncStore>(
        &self,
        now_ms: u64,
        store: &S,
    ) -> Result<(Vec<LogEntry>, records::RecordsPage, u64), SessionError> {
        let (after, limit) = (self.outbound.cursor, self.config.page_scan_entries_max);
        let ReaderPage {
            mut entries,
            covered_upto_seq,
        } = match self.index_reader() {
            Some(user) => store.changes_for(user, after, limit),
            None => store.changes_after(after, limit).map(|entries| ReaderPage {
                covered_upto_seq: entries.last().map_or(after, |entry| entry.seq),
                entries,
            }),
        }
        .map_err(store_error)?;
        assert!(covered_upto_seq >= after, "changelog moves forward");
        if !self.config.office || self.version < PROTOCOL_VERSION_RECORDS {
            return Ok((entries, records::RecordsPage::default(), covered_upto_seq));
        }
        let audience = records::Audience {
            peer: &self.peer,
            now_ms,
            grace_ms: self.config.grace_ms,
            version: self.version,
        };
        let page = records::for_page(
            &entries,
            &audience,
            self.config.records_page_bytes_max,
            store,
        )
        .map_err(store_error)?;
        let mut covered_upto_seq = covered_upto_seq;
        if let Some(end) = page.end_before_seq {
            entries.retain(|entry| entry.seq < end);
            covered_upto_seq = end.saturating_sub(1).max(after);
        }
        Ok((entries, page, covered_upto_seq))
    }

    /// Whose share of the changelog this session reads: a device's user,
    /// unless it sees everything (an office, an operator's device), which
    /// reads the changelog itself.
    fn index_reader(&self) -> Option<&str> {
        match &self.peer {
            PeerAccess::User { user_id, .. } if !self.peer.is_office() => Some(user_id),
            _ => None,
        }
    }

    /// Queue record copies just before the page frame that covers them.
    pub(super) fn send_records(&mut self, copies: Vec<RecordCopy>) {
        if copies.is_empty() {
            return;
        }
        let compressed = compress_batch(&copies, self.config.batch_zstd_level);
        self.outbox.push_back(Frame::Records { compressed });
    }

    /// The document of a changelog entry, if it goes to the peer: it exists,
    /// the peer may see it, and the peer did not just send us these heads
    /// (no echo; if the document moved on since this entry, a later entry
    /// names it).
    pub(super) fn to_offer<S: SyncStore>(
        &self,
        entry: &LogEntry,
        now_ms: u64,
        store: &S,
        revocations: &mut Option<Vec<(String, u64)>>,
    ) -> Result<Option<DocMeta>, SessionError> {
        let actor = store.actor();
        if self.echo.peer_has(&entry.id, &entry.heads, &actor) {
            return Ok(None);
        }
        let Some(meta) = store.doc_meta(&entry.id).map_err(store_error)? else {
            return Ok(None);
        };
        if self.echo.peer_has(&entry.id, &meta.heads, &actor)
            || !self.visible_or_durably(&entry.id, &meta, now_ms, store, revocations)?
        {
            return Ok(None);
        }
        Ok(Some(meta))
    }

    /// The peer asks for whole documents of one of our pages in flight.
    pub(super) fn on_want<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        full: Vec<String>,
        sync: Vec<String>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.outbound.pages.contains_key(&page) {
            return Err(protocol(format!(
                "want for page {page}, which is not in flight"
            )));
        }
        drop(sync); // The peer starts those with DocSync.
        let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
        let mut heads: Vec<Vec<ChangeHash>> = Vec::new();
        let mut batch_bytes = 0usize;
        for id in full {
            let meta = store.doc_meta(&id).map_err(store_error)?;
            let visible = match &meta {
                Some(meta) => self.visible_or_durably(&id, meta, now_ms, store, &mut None)?,
                None => false,
            };
            let Some(meta) = meta.filter(|_| visible) else {
                // Visibility can end between our announce and their want
                // (the grace period ran out): not a protocol error, but the
                // document is not theirs to have any more (simulator, seed 1).
                self.outbox.push_back(Frame::Rejected {
                    id,
                    reason: HIDDEN_REASON.into(),
                });
                continue;
            };
            let Some(bytes) = store.doc_bytes(&id).map_err(store_error)? else {
                continue;
            };
            if batch_bytes + bytes.len() > self.config.batch_bytes_max && !batch.is_empty() {
                self.send_batch(page, std::mem::take(&mut batch), &heads, store)?;
                heads.clear();
                batch_bytes = 0;
            }
            batch_bytes += bytes.len();
            // The peer holds this copy from now on (perhaps only for a grace
            // period): a `Revoked` for an earlier copy, still in flight, no
            // longer proves it purged the document, and must not clear the
            // revocation of this one (simulator, seeds 3894 and 8109).
            // Refusing the copy instead would rest on a reassignment that
            // may not be durable yet (seed 153).
            self.revocation.whole_copy_sent(&id);
            self.progress.docs_sent += 1;
            batch.push((id, bytes));
            heads.push(meta.heads);
        }
        if !batch.is_empty() {
            self.send_batch(page, batch, &heads, store)?;
        }
        Ok(())
    }

    /// A `DocBatch`, after the vouchers for it (`heads`: each document's).
    fn send_batch<S: SyncStore>(
        &mut self,
        page: u64,
        batch: Vec<(String, Vec<u8>)>,
        heads: &[Vec<ChangeHash>],
        store: &S,
    ) -> Result<(), SessionError> {
        let ids = batch.iter().map(|(id, _)| id.as_str());
        self.vouch_before_sending(ids.zip(heads.iter().map(Vec::as_slice)), store)?;
        let compressed = compress_batch(&docs_as_bytes(&batch), self.config.batch_zstd_level);
        self.outbox.push_back(Frame::DocBatch { page, compressed });
        Ok(())
    }

    pub(super) fn on_page_done<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        upto_seq: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        self.outbound.acknowledge(page, upto_seq)?;
        self.progress.peer_acked_seq = upto_seq;
        self.events.push_back(Event::PeerCaughtUp { seq: upto_seq });
        self.pump(now_ms, store)
    }
}
