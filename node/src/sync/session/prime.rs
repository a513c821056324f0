//! Priming (protocol version 2), both sides: an office sends a peer that
//! holds nothing of its changelog each page as whole documents at once
//! (`Prime`), skipping announce and want: they cost ~110 bytes per
//! document when the answer is always "send it whole".
//!
//! Only an office primes, and a receiver takes unannounced documents from
//! no one else: a technician's changes must pass the field rules change by
//! change. A primed page counts like an announced one (same numbering,
//! same window, same checkpoint after its documents).

use std::collections::HashSet;

use automerge::ChangeHash;
use fieldsync_schemas::sync_frame::{Frame, PAGE_DOCS_MAX};

use super::checks::load_work_orders;
use super::inbound::{has_all, same_heads};
use super::wire::{compress_batch, decode_docs, docs_as_bytes};
use super::{protocol, store_error, Session, SessionError};
use crate::doc::validate_doc_id;
use crate::sync::store::SyncStore;

impl Session {
    /// Send the next page of the changelog as `Prime`: the whole documents
    /// visible to the peer, until the batch is full (the page then ends
    /// early, at the last entry it covers). Returns whether a page went
    /// out (not when the changelog has nothing after our cursor).
    pub(super) fn prime_page<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<bool, SessionError> {
        let (entries, records, covered_upto_seq) = self.page_entries(now_ms, store)?;
        if covered_upto_seq <= self.outbound.cursor() {
            return Ok(false);
        }
        let mut upto_seq = self.outbound.cursor();
        let mut seen = HashSet::new();
        let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
        let mut heads: Vec<Vec<ChangeHash>> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut revocations = None;
        // The page covers what the read covered, unless the batch fills.
        let mut cut = false;
        for entry in &entries {
            assert!(entry.seq > upto_seq, "changelog moves forward");
            // A document is marked seen only once it goes: an earlier entry
            // of it the peer itself sent us (an echo) must not hide a later
            // one with our own change (simulator, `--centrals 0` seed 227).
            let offered = if entry.is_work_order() && !seen.contains(entry.id.as_str()) {
                self.to_offer(entry, now_ms, store, &mut revocations)?
            } else {
                None
            };
            if offered.is_some() {
                seen.insert(entry.id.as_str());
            }
            let bytes = match &offered {
                Some(_) => store.doc_bytes(&entry.id).map_err(store_error)?,
                None => None,
            };
            let Some(bytes) = bytes else {
                upto_seq = entry.seq;
                continue;
            };
            if batch_bytes + bytes.len() > self.config.batch_bytes_max && !batch.is_empty() {
                cut = true;
                break; // The next page starts with this entry.
            }
            batch_bytes += bytes.len();
            // As in `on_want`: a `Revoked` still in flight must not clear
            // the revocation of this copy.
            self.revocation.whole_copy_sent(&entry.id);
            batch.push((entry.id.clone(), bytes));
            heads.push(offered.map(|meta| meta.heads).unwrap_or_default());
            upto_seq = entry.seq;
        }
        if !cut {
            upto_seq = covered_upto_seq;
        }
        assert!(
            upto_seq > self.outbound.cursor(),
            "a page covers at least one entry"
        );
        self.send_records(records.upto(upto_seq));
        let ids = batch.iter().map(|(id, _)| id.as_str());
        self.vouch_before_sending(ids.zip(heads.iter().map(Vec::as_slice)), store)?;
        let docs = batch.len() as u64;
        let page = self
            .outbound
            .open_page(upto_seq, docs, Vec::new(), store.actor());
        self.progress.docs_sent += docs;
        let compressed = compress_batch(&docs_as_bytes(&batch), self.config.batch_zstd_level);
        self.outbox.push_back(Frame::Prime {
            page,
            upto_seq,
            compressed,
        });
        Ok(true)
    }

    /// A page of an office's changelog, whole documents (see `Frame::Prime`).
    pub(super) fn on_prime<S: SyncStore>(
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
                Some(meta) if has_all(&meta.heads, &heads, || store.doc(&id))? => {
                    if !same_heads(&meta.heads, &heads) {
                        self.ahead_of_peer(&id, now_ms, store)?;
                    }
                }
                Some(_) => {
                    store.merge(&id, &bytes, now_ms).map_err(store_error)?;
                }
            }
            self.echo.remember(&id, &heads, store.actor());
            received += 1;
        }
        self.count_received(received);
        self.inbound.push_settled_page(page, upto_seq);
        self.complete_pages(store)
    }
}
