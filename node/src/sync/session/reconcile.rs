//! Reconciling a document both sides hold: Automerge's sync protocol, one
//! `DocSync` conversation per document.
//!
//! Every message from the peer is checked before anything is merged: its
//! bytes against the intake limits (`checks`), then its changes on a
//! trial copy of the document: still a work order, not grown past
//! `peer_doc_ops_max`, and, from a technician, the field rules (an office
//! compensates what breaks them; a laptop refuses the changes for the rest
//! of the session). Only then are they merged.
//!
//! Changes that arrive before their dependencies wait in Automerge's queue,
//! which the store never sees; the session keeps them ([`Orphans`],
//! bounded) and loads them into the next trial, or the conversation would
//! ask and answer for ever (simulator, seeds 3102, 1756).

use std::collections::{HashMap, HashSet};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_schemas::sync_frame::{bounded_reason, Frame};

use super::checks::check_is_work_order;
use super::{protocol, store_error, Event, Session, SessionError};
use crate::access::{self, PeerAccess};
use crate::sync::store::SyncStore;

/// Bytes of not-yet-applicable changes a session keeps, at most. Past it
/// they are dropped: the peer sends them again once we name them in `need`.
const ORPHAN_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The documents being reconciled with the peer.
#[derive(Default)]
pub(super) struct Reconcile {
    /// Automerge's sync state, by document in conversation; at most
    /// `syncing_docs_max`.
    syncing: HashMap<String, sync::State>,
    orphans: Orphans,
    /// Documents whose changes from this peer we refused (technician to
    /// technician): settled for the rest of the session.
    refused: HashSet<String>,
}

/// Change bytes from the peer that could not apply yet (dependencies
/// missing), by document; at most `ORPHAN_BYTES_MAX` in all.
#[derive(Default)]
struct Orphans {
    by_doc: HashMap<String, Vec<u8>>,
    bytes: usize,
}

impl Orphans {
    fn get(&self, id: &str) -> Option<&Vec<u8>> {
        self.by_doc.get(id)
    }

    /// Keep the message's changes while `doc` still has changes waiting for
    /// dependencies; forget them once everything applied.
    fn keep(&mut self, id: &str, doc: &Automerge, incoming: &[u8]) {
        if doc.get_missing_deps(&[]).is_empty() {
            self.drop(id);
            return;
        }
        if self.bytes + incoming.len() > ORPHAN_BYTES_MAX {
            self.drop(id);
            return;
        }
        self.bytes += incoming.len();
        self.by_doc
            .entry(id.to_string())
            .or_default()
            .extend_from_slice(incoming);
    }

    fn drop(&mut self, id: &str) {
        if let Some(bytes) = self.by_doc.remove(id) {
            self.bytes -= bytes.len();
        }
    }
}

impl Reconcile {
    pub(super) fn is_refused(&self, id: &str) -> bool {
        self.refused.contains(id)
    }

    /// End the conversation about `id` (settled: refused or purged).
    pub(super) fn forget(&mut self, id: &str) {
        self.syncing.remove(id);
        self.orphans.drop(id);
    }

    /// Our next message about `id`, whose copy is now `doc`; `None` when we
    /// have nothing to say, and then the conversation ends if the peer
    /// holds our heads.
    fn reply(&mut self, id: &str, doc: &Automerge) -> Option<sync::Message> {
        let state = self.syncing.get_mut(id).expect("in conversation");
        let reply = generate_changes_only(doc, state);
        if reply.is_none() && state.their_heads.as_deref() == Some(doc.get_heads().as_slice()) {
            self.syncing.remove(id);
        }
        reply
    }
}

impl Session {
    /// Start the sync protocol for documents of an announce page that
    /// differ from ours.
    pub(super) fn start_reconciling<S: SyncStore>(
        &mut self,
        ids: &[String],
        store: &S,
    ) -> Result<(), SessionError> {
        if self.reconcile.syncing.len() + ids.len() > self.config.syncing_docs_max {
            return Err(protocol("too many documents being reconciled"));
        }
        for id in ids {
            let mut state = sync::State::new();
            let doc = store
                .doc(id)
                .map_err(store_error)?
                .ok_or_else(|| SessionError::Store(format!("`{id}` vanished")))?;
            if let Some(message) = generate_changes_only(&doc, &mut state) {
                if !message.changes.is_empty() {
                    self.vouch_before_doc_sync(id, &doc, store)?;
                }
                self.outbox.push_back(Frame::DocSync {
                    id: id.clone(),
                    message: message.encode(),
                });
            }
            self.reconcile.syncing.insert(id.clone(), state);
        }
        Ok(())
    }

    /// A sync message from the peer, in steps: admit it (we hold the
    /// document, the peer may see it, a conversation slot is free), decode
    /// it, check its bytes, receive it on a trial copy, check and merge
    /// what it brought, answer, and settle the pages waiting for it.
    pub(super) fn on_doc_sync<S: SyncStore>(
        &mut self,
        now_ms: u64,
        id: String,
        message: &[u8],
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !self.admit_doc_sync(now_ms, &id, store)? {
            return Ok(());
        }
        let message = decode_sync_message(&id, message)?;
        let doc = store
            .doc(&id)
            .map_err(store_error)?
            .ok_or_else(|| SessionError::Store(format!("`{id}` vanished")))?;
        let before = doc.get_heads();
        let (message, incoming) = self.checked_changes(&id, message)?;
        let (mut trial, trial_state) = self.receive_on_trial(&id, &doc, message, &incoming)?;
        // From an office, changes wait until everything they depend on is
        // here, then merge at once: a forbidden change a technician made
        // and the compensation an office wrote on top of it must not be
        // merged apart (simulator, `--centrals 2` seed 117). They wait as
        // orphans (`receive_on_trial` keeps them); the conversation goes on.
        // From a device, so do changes under a vouched head that has not
        // arrived (simulator, default world seed 697): judged without it,
        // an office's change would be the device's, and refusing ended the
        // conversation with both sides apart. The answer comes from the
        // trial, so its `need` names what is missing (a bloom filter's
        // false positive can keep a change back for good otherwise).
        let partial = trial.get_heads() != before && !trial.get_missing_deps(&[]).is_empty();
        let from_device = !self.peer.is_office() && self.vouched_head_missing(&id, &trial);
        if partial && (self.peer.is_office() || from_device) {
            self.reconcile.syncing.insert(id.clone(), trial_state);
            let answer_from = if from_device { &trial } else { &doc };
            return self.answer(&id, answer_from, store);
        }
        let accept = trial.get_heads() == before
            || self.merge_trial(now_ms, &id, &mut trial, &before, store)?;
        let doc = if accept {
            self.reconcile.syncing.insert(id.clone(), trial_state);
            trial
        } else {
            doc
        };
        self.answer(&id, &doc, store)?;
        // A refused document counts as settled: its page must not stall.
        let settled = !accept || self.reconcile.is_refused(&id);
        self.inbound.settle_synced(&id, &doc, settled);
        self.complete_pages(store)
    }

    /// Our next sync message about `id`, whose copy is now `doc`, if we
    /// have one: changes go after the vouchers covering them, on every
    /// path (a device's answer while it waited for an office's missing
    /// changes went without them, and the other office judged the office
    /// changes in it as the device's: simulator, default world seed 1772).
    fn answer<S: SyncStore>(
        &mut self,
        id: &str,
        doc: &Automerge,
        store: &S,
    ) -> Result<(), SessionError> {
        let Some(reply) = self.reconcile.reply(id, doc) else {
            return Ok(());
        };
        if !reply.changes.is_empty() {
            self.vouch_before_doc_sync(id, doc, store)?;
        }
        self.outbox.push_back(Frame::DocSync {
            id: id.to_string(),
            message: reply.encode(),
        });
        Ok(())
    }

    /// Whether a sync message about `id` is taken in at all. A document we
    /// do not have, or the peer may not see, is refused (`false`); too many
    /// conversations is a protocol error.
    fn admit_doc_sync<S: SyncStore>(
        &mut self,
        now_ms: u64,
        id: &str,
        store: &mut S,
    ) -> Result<bool, SessionError> {
        let Some(meta) = store.doc_meta(id).map_err(store_error)? else {
            // We purged it while reconciling it with an office (another
            // central's revoke): what the page waits for can now come only
            // whole. Asking settles it either way: the office sends it, or
            // rejects it if it agrees (simulator, `--centrals 2` seed 44).
            if self.peer.is_office() {
                if let Some(page) = self.inbound.ask_whole(id) {
                    self.reconcile.forget(id);
                    self.outbox.push_back(Frame::Want {
                        page,
                        full: vec![id.to_string()],
                        sync: Vec::new(),
                    });
                    return Ok(false);
                }
            }
            // From an office, not settled: we may be waiting for this very
            // document whole (we purged it, and it was assigned back), and
            // a purge settled everything else already (simulator, seed
            // 252). Another device never sends a document whole: what its
            // pages wait for cannot come (`--centrals 0 --shared-laptops`
            // seed 25).
            self.reject_hidden(id, "unknown document");
            if !self.peer.is_office() {
                self.settle(id);
                self.complete_pages(store)?;
            }
            return Ok(false);
        };
        // A document the peer may not see is settled in our pages too:
        // nothing more about it will be merged in this session (simulator,
        // seed 15).
        if !self.visible(id, &meta, now_ms, store)? {
            let revoke = !self.visible_durably(id, now_ms, store)?;
            self.reject_invisible(id, revoke);
            self.settle(id);
            self.complete_pages(store)?;
            return Ok(false);
        }
        if !self.reconcile.syncing.contains_key(id)
            && self.reconcile.syncing.len() >= self.config.syncing_docs_max
        {
            return Err(protocol("too many documents being reconciled"));
        }
        Ok(true)
    }

    /// The message's changes, checked against the intake limits (the
    /// orphans kept for `id` share the budget) and cut to the prefix that
    /// passed; returns the message with those changes, and their bytes.
    fn checked_changes(
        &self,
        id: &str,
        mut message: sync::Message,
    ) -> Result<(sync::Message, Vec<u8>), SessionError> {
        let mut incoming: Vec<u8> = message.changes.iter().flatten().copied().collect();
        // Orphans were checked when they came; they inflate again with
        // these changes, so they share the budget.
        let orphans_inflated = match self.reconcile.orphans.get(id) {
            Some(orphans) => self.check_intake(id, orphans, 0)?.inflated_bytes,
            None => 0,
        };
        let checked = self.check_intake(id, &incoming, orphans_inflated)?;
        if !checked.is_whole(&incoming) {
            incoming.truncate(checked.prefix_bytes);
            message.changes = incoming.clone().into();
        }
        Ok((message, incoming))
    }

    /// Receive the message on a copy of `doc` (with the orphans kept for
    /// it) and a copy of its sync state: the store and the kept state
    /// change only once the changes pass (`merge_trial`). The orphans still
    /// waiting are kept here, whatever the verdict.
    fn receive_on_trial(
        &mut self,
        id: &str,
        doc: &Automerge,
        message: sync::Message,
        incoming: &[u8],
    ) -> Result<(Automerge, sync::State), SessionError> {
        let document_error = |e: automerge::AutomergeError| SessionError::Document {
            id: id.to_string(),
            reason: e.to_string(),
        };
        let mut trial = doc.clone();
        // Changes that arrived before their dependencies wait in Automerge's
        // queue, which the store never sees: without this the next message
        // starts from the stored document, the queue is gone, and the peer
        // (which never resends a hash) and we ask and answer for ever
        // (simulator, seeds 3102, 1756).
        if let Some(orphans) = self.reconcile.orphans.get(id) {
            trial.load_incremental(orphans).map_err(document_error)?;
        }
        let mut trial_state = self
            .reconcile
            .syncing
            .entry(id.to_string())
            .or_default()
            .clone();
        trial
            .receive_sync_message(&mut trial_state, message)
            .map_err(document_error)?;
        self.reconcile.orphans.keep(id, &trial, incoming);
        // What the peer says it needs, it does not have, though we may have
        // sent it: a message can be lost to the conversation (its changes
        // were queued for missing dependencies and never stored, or it
        // crossed a refusal). Automerge never resends a hash it sent once,
        // so both sides would repeat need and have for ever (simulator,
        // seed 1756): forget having sent what was lost.
        // Forget all of them, not only the needed hash: the peer names
        // only what it can see is missing, and the ancestors it lacks are
        // behind it (the bloom filter in its `have` decides what goes).
        let resend = trial_state
            .their_need
            .as_ref()
            .is_some_and(|need| need.iter().any(|h| trial_state.sent_hashes.contains(h)));
        if resend {
            trial_state.sent_hashes.clear();
        }
        Ok((trial, trial_state))
    }

    /// The trial gained changes from the peer: check them and merge them
    /// into the store. Returns whether they were accepted (an office's
    /// compensation counts as accepted); refused changes are refused for
    /// the rest of the session.
    fn merge_trial<S: SyncStore>(
        &mut self,
        now_ms: u64,
        id: &str,
        trial: &mut Automerge,
        before: &[ChangeHash],
        store: &mut S,
    ) -> Result<bool, SessionError> {
        check_is_work_order(id, trial)?;
        let mut accept = true;
        if let Some(reason) = self.too_large_from_peer(trial) {
            tracing::warn!(peer = %self.peer_node_id, %id, %reason, "refusing a document grown too large");
            accept = false;
            self.refuse_changes(id, reason);
        }
        if accept {
            accept = self.check_field_rules(now_ms, id, trial, before)?;
        }
        if accept {
            let bytes = trial.save_after(before);
            store.merge(id, &bytes, now_ms).map_err(store_error)?;
        }
        Ok(accept)
    }

    /// A technician's changes against the field rules (`access`): an
    /// office compensates what breaks them (and accepts), a laptop refuses
    /// the changes. Returns whether they are accepted.
    fn check_field_rules(
        &mut self,
        now_ms: u64,
        id: &str,
        trial: &mut Automerge,
        before: &[ChangeHash],
    ) -> Result<bool, SessionError> {
        let PeerAccess::User { role, user_id } = &self.peer else {
            return Ok(true);
        };
        if self.peer.is_office() {
            return Ok(true);
        }
        // What an office vouched for is the office's: judged is what is
        // left, as the peer's own.
        let base = self.vouched_base(id, trial, before);
        let before = base.as_slice();
        let violations = access::check_changes(*role, trial, before);
        let bad_items = crate::doc::items::check_appended(user_id, *role, trial, before, now_ms);
        if violations.is_empty() && bad_items.is_empty() {
            return Ok(true);
        }
        let reason = violations
            .iter()
            .map(|v| v.reason.as_str())
            .chain(bad_items.iter().map(|bad| bad.reason.as_str()))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(peer = %self.peer_node_id, %id, %reason, "forbidden change from peer");
        // A device refuses; so does an office when an office it has not
        // met vouched for some of it (simulator, default world seed 3976),
        // or when a vouched head has not arrived yet. The office's changes
        // then come from that office, or with the rest of the message.
        let compensate = self.config.office
            && !self.vouched_by_unknown_office(id)
            && !self.vouched_head_missing(id, trial);
        self.events.push_back(Event::Violation {
            id: id.to_string(),
            reason: reason.clone(),
            judged: trial
                .get_changes_meta(before)
                .into_iter()
                .map(|change| change.hash)
                .collect(),
            compensated: compensate,
        });
        if !compensate {
            self.refuse_changes(id, reason);
            return Ok(false);
        }
        access::compensate(
            trial,
            before,
            &violations,
            &bad_items,
            (now_ms / 1000) as i64,
        )
        .map_err(|e| SessionError::Document {
            id: id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(true)
    }

    /// Why `doc`, grown by a technician's changes, is refused: `None` when
    /// it is within `peer_doc_ops_max` or the peer is an office.
    fn too_large_from_peer(&self, doc: &Automerge) -> Option<String> {
        let ops = doc.stats().num_ops;
        (!self.peer.is_office() && ops > self.config.peer_doc_ops_max).then(|| {
            format!(
                "the document would hold {ops} operations, over the limit of {}",
                self.config.peer_doc_ops_max
            )
        })
    }

    /// Refuse the peer's changes to `id` for the rest of the session (not
    /// merged; the page counts the document as settled).
    fn refuse_changes(&mut self, id: &str, reason: String) {
        self.reconcile.refused.insert(id.to_string());
        self.outbox.push_back(Frame::Rejected {
            id: id.to_string(),
            reason: bounded_reason(reason),
        });
    }
}

/// A sync message from the peer, decoded and checked for what Automerge
/// would choke on (`doc::intake`).
fn decode_sync_message(id: &str, message: &[u8]) -> Result<sync::Message, SessionError> {
    let message = sync::Message::decode(message)
        .map_err(|e| protocol(format!("bad sync message for `{id}`: {e}")))?;
    if let Some(problem) = crate::doc::intake::sync_message_problem(&message) {
        return Err(protocol(format!("bad sync message for `{id}`: {problem}")));
    }
    Ok(message)
}

/// Automerge's next sync message, never the whole document: Automerge
/// sends `save()` instead of changes when the peer lacks a third of the
/// document's changes (a v2 message). Our documents have few changes, so
/// one small edit was a third, and every edited document travelled whole:
/// 1.2 KB instead of ~250 B per edited work order in W2. A peer that lacks
/// a document gets it whole in a `DocBatch` anyway. Worse, `save()` appends
/// changes queued for missing dependencies, and the peer's
/// `load_incremental` then refuses the whole message (simulator, seed
/// 1756). Hiding the peer's v2 capability makes Automerge send changes.
fn generate_changes_only(doc: &Automerge, state: &mut sync::State) -> Option<sync::Message> {
    let capabilities = state.their_capabilities.take();
    let message = doc.generate_sync_message(state);
    state.their_capabilities = capabilities;
    message
}
