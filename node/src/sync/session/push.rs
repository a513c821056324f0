//! Pushing changes with an announce (protocol version 3), both sides: an
//! office sends with each page the changes it expects the peer to lack
//! (`AnnouncePush`); the peer merges what applies and reconciles only what
//! the guess missed. A reconnect after small edits is then one frame of
//! changes instead of three sync messages per document.
//!
//! Pushed changes skip the field rules, so only an office may push; and
//! they are checked like any bytes from a peer (`checks`) before Automerge
//! parses them. A wrong guess costs bytes, never correctness: changes that
//! do not apply leave the document to the sync protocol as before.

use std::collections::HashMap;

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_schemas::sync_frame::{DocHeads, PROTOCOL_VERSION_PUSH};

use super::checks::check_is_work_order;
use super::wire::decode_pushes;
use super::{protocol, store_error, Session, SessionError};
use crate::access::DocMeta;
use crate::sync::store::{LogEntry, SyncStore};

impl Session {
    /// An `AnnouncePush`: the announce, with the changes to merge first.
    pub(super) fn on_announce_push<S: SyncStore>(
        &mut self,
        now_ms: u64,
        page: u64,
        upto_seq: u64,
        docs: Vec<DocHeads>,
        compressed: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        // Pushed changes skip the field rules (see `on_announce`):
        // only an office may push, and only in version 3.
        if self.version < PROTOCOL_VERSION_PUSH || !self.peer.is_office() {
            return Err(protocol("only an office may push changes (version 3)"));
        }
        let pushed = decode_pushes(self.decode_batch(compressed)?);
        if pushed.len() != docs.len() {
            return Err(protocol(
                "pushed changes do not match the announced documents",
            ));
        }
        self.on_announce(now_ms, page, upto_seq, docs, pushed, store)
    }

    /// The changes an office pushes with a page (`AnnouncePush`), one entry
    /// per announced document, or `None` when it pushes nothing.
    ///
    /// What the peer lacks is guessed without asking: the peer holds each
    /// document as of our changelog before this page (its checkpoint, or
    /// the pages before this one, which it processes first), which is the
    /// document before its first write in this page: the dependencies of
    /// that write's heads. Exact for a local edit (one change); after a
    /// merge of several changes the guess is too new, the peer cannot apply
    /// them, and reconciles as without a push. Sending changes the peer
    /// has already costs only bytes.
    pub(super) fn push_changes<S: SyncStore>(
        &mut self,
        docs: &[DocHeads],
        entries: &[LogEntry],
        store: &S,
    ) -> Result<Option<Vec<Vec<u8>>>, SessionError> {
        if !self.config.office || self.version < PROTOCOL_VERSION_PUSH || docs.is_empty() {
            return Ok(None);
        }
        // Each document's first write in this page.
        let mut first: HashMap<&str, &[ChangeHash]> = HashMap::new();
        for entry in entries.iter().filter(|entry| entry.is_work_order()) {
            first.entry(entry.id.as_str()).or_insert(&entry.heads);
        }
        let mut pushed = Vec::with_capacity(docs.len());
        let mut page_bytes = 0usize;
        for announced in docs {
            let (changes, whole) = match (
                first.get(announced.id.as_str()),
                page_bytes < self.config.push_page_bytes_max,
            ) {
                (Some(heads), true) => match store.doc(&announced.id).map_err(store_error)? {
                    Some(doc) => changes_since_write(&doc, heads),
                    None => (Vec::new(), false),
                },
                _ => (Vec::new(), false),
            };
            let fits = changes.len() <= self.config.push_doc_bytes_max
                && page_bytes + changes.len() <= self.config.push_page_bytes_max;
            if fits {
                if whole {
                    // A whole history makes a new copy, as in `on_want`.
                    self.revocation.whole_copy_sent(&announced.id);
                }
                page_bytes += changes.len();
                pushed.push(changes);
            } else {
                pushed.push(Vec::new());
            }
        }
        Ok((page_bytes > 0).then_some(pushed))
    }

    /// Merge changes an office pushed for document `id` (`creating`: we do
    /// not hold it). Returns the document's metadata after, or `None` when
    /// nothing applied (their dependencies are missing: the push guessed
    /// wrong, and the document is reconciled or asked for whole instead).
    pub(super) fn apply_push<S: SyncStore>(
        &mut self,
        now_ms: u64,
        id: &str,
        changes: &[u8],
        creating: bool,
        store: &mut S,
    ) -> Result<Option<DocMeta>, SessionError> {
        let document_error = |e: automerge::AutomergeError| SessionError::Document {
            id: id.to_string(),
            reason: e.to_string(),
        };
        let mut doc = match store.doc(id).map_err(store_error)? {
            Some(doc) => doc,
            None if creating => Automerge::new(),
            None => return Err(SessionError::Store(format!("`{id}` vanished"))),
        };
        let before = doc.get_heads();
        let checked = self.check_intake(id, changes, 0)?;
        doc.load_incremental(&changes[..checked.prefix_bytes])
            .map_err(document_error)?;
        // All or nothing: a push that guessed wrong applies only in part,
        // and the part may be a forbidden change without the office's
        // compensation that depends on what is missing (simulator,
        // `--centrals 0 --shared-laptops` seed 788). Reconciling brings
        // both at once.
        if doc.get_heads() == before || !doc.get_missing_deps(&[]).is_empty() {
            return Ok(None);
        }
        // A new document whose first changes did not all arrive is asked
        // for whole; a document we hold must stay a work order.
        if creating && check_is_work_order(id, &doc).is_err() {
            return Ok(None);
        }
        check_is_work_order(id, &doc)?;
        let bytes = doc.save_after(&before);
        if creating {
            store.merge_loaded(id, doc, &bytes, now_ms)
        } else {
            store.merge(id, &bytes, now_ms)
        }
        .map_err(store_error)?;
        store.doc_meta(id).map_err(store_error)
    }
}

/// The changes of `doc` from the write that left it at `heads` on:
/// everything not behind those heads' dependencies, and whether that is
/// the whole history (the write created the document). Empty when a head
/// is unknown (the document was purged and came back since).
fn changes_since_write(doc: &Automerge, heads: &[ChangeHash]) -> (Vec<u8>, bool) {
    let mut base = Vec::new();
    for head in heads {
        let Some(change) = doc.get_change_by_hash(head) else {
            return (Vec::new(), false);
        };
        base.extend_from_slice(change.deps());
    }
    (doc.save_after(&base), base.is_empty())
}
