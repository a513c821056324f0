//! What the peer may see, and what it hears when it may not.
//!
//! The rule is the access policy's (`access::may_see`, the one visibility
//! rule); sync adds only which state to judge it on: live, or durable
//! (what survives a crash), and a technician's own revocation records
//! (their grace period). Withholding something from the peer and revoking
//! it both act for good, so both ask the durable state; sending is safe on
//! live state, since a revocation removes what should not have gone.
//!
//! A refused document is refused in the same words whether it exists here
//! or not ([`HIDDEN_REASON`]): no existence oracle over sync.

use fieldsync_schemas::sync_frame::{Frame, PAGE_DOCS_MAX};
use fieldsync_schemas::Role;

use super::{store_error, Event, Session, SessionError};
use crate::access::{self, DocMeta, PeerAccess};
use crate::sync::store::SyncStore;

/// What a peer hears about a document it may not have, whether it exists
/// here or not (hardening finding 7: no existence oracle over sync).
pub(crate) const HIDDEN_REASON: &str = "not a work order you may have";

/// A technician's revocation records read at once, at most.
pub(super) const REVOCATIONS_SCAN_MAX: usize = PAGE_DOCS_MAX;

impl Session {
    /// May the peer see (receive, and send changes to) document `id`? The
    /// policy's `may_see`, plus a technician's own grace period: a second
    /// reassignment within it moves `previous_assignee` on, but this user's
    /// pending changes are still owed acceptance until their own
    /// revocation record expires (simulator, seed 14).
    pub(super) fn visible<S: SyncStore>(
        &self,
        id: &str,
        meta: &DocMeta,
        now_ms: u64,
        store: &S,
    ) -> Result<bool, SessionError> {
        self.visible_cached(id, meta, now_ms, store, &mut None)
    }

    /// [`Session::visible`], reading the user's revocation records at most
    /// once per `revocations` cache: a page of a central's changelog is
    /// mostly documents a technician may not see, and scanning the records
    /// for each of them was a fifth of a central's CPU with 1,000 laptops
    /// reconnecting (profile in the many-technicians bench).
    pub(super) fn visible_cached<S: SyncStore>(
        &self,
        id: &str,
        meta: &DocMeta,
        now_ms: u64,
        store: &S,
        revocations: &mut Option<Vec<(String, u64)>>,
    ) -> Result<bool, SessionError> {
        // The revocation records are read only when the rule needs them.
        if access::may_see(&self.peer, meta, None, now_ms, self.config.grace_ms) {
            return Ok(true);
        }
        let PeerAccess::User {
            user_id,
            role: Role::Technician,
        } = &self.peer
        else {
            return Ok(false);
        };
        if revocations.is_none() {
            *revocations = Some(
                store
                    .revocations(user_id, REVOCATIONS_SCAN_MAX)
                    .map_err(store_error)?,
            );
        }
        let own = revoked_at(revocations.as_deref().unwrap_or_default(), id);
        Ok(access::may_see(
            &self.peer,
            meta,
            own,
            now_ms,
            self.config.grace_ms,
        ))
    }

    /// Visible now, or in what survives a crash. What we withhold from the
    /// peer (leave out of a page, refuse in a want) moves its checkpoint
    /// past the document for good, so that must not rest on a reassignment
    /// that is not durable yet: the crash that undoes it would leave the
    /// peer without a document it may see (simulator, seeds 3563, 6364).
    /// Sending it instead is safe: if the reassignment lands, the
    /// revocation removes the copy.
    pub(super) fn visible_or_durably<S: SyncStore>(
        &self,
        id: &str,
        meta: &DocMeta,
        now_ms: u64,
        store: &S,
        revocations: &mut Option<Vec<(String, u64)>>,
    ) -> Result<bool, SessionError> {
        let visible = self.visible_cached(id, meta, now_ms, store, revocations)?;
        if visible || meta.durable {
            return Ok(visible);
        }
        // Never durably here (created, not flushed): nothing to judge.
        if store.durable_doc_meta(id).map_err(store_error)?.is_none() {
            return Ok(false);
        }
        self.visible_durably(id, now_ms, store)
    }

    /// [`Session::visible`], judged on what survives a crash. A document we
    /// do not durably hold cannot be judged: it counts as visible.
    pub(super) fn visible_durably<S: SyncStore>(
        &self,
        id: &str,
        now_ms: u64,
        store: &S,
    ) -> Result<bool, SessionError> {
        let Some(meta) = store.durable_doc_meta(id).map_err(store_error)? else {
            return Ok(true);
        };
        if access::may_see(&self.peer, &meta, None, now_ms, self.config.grace_ms) {
            return Ok(true);
        }
        let PeerAccess::User { user_id, .. } = &self.peer else {
            return Ok(false);
        };
        let revocations = store
            .durable_revocations(user_id, REVOCATIONS_SCAN_MAX)
            .map_err(store_error)?;
        let own = revoked_at(&revocations, id);
        Ok(access::may_see(
            &self.peer,
            &meta,
            own,
            now_ms,
            self.config.grace_ms,
        ))
    }

    /// Refuse a document the peer may not have, whether it exists here or
    /// not: the peer hears [`HIDDEN_REASON`] either way (no oracle for
    /// which work orders exist, hardening finding 7); `why` goes to the
    /// log and the events.
    pub(super) fn reject_hidden(&mut self, id: &str, why: &str) {
        tracing::warn!(peer = %self.peer_node_id, %id, reason = why, "refusing a document from peer");
        self.events.push_back(Event::Violation {
            id: id.to_string(),
            reason: why.to_string(),
            judged: Vec::new(),
            compensated: false,
        });
        self.outbox.push_back(Frame::Rejected {
            id: id.to_string(),
            reason: HIDDEN_REASON.to_string(),
        });
    }
}

/// When `id` was reassigned away, from the user's revocation records.
fn revoked_at(revocations: &[(String, u64)], id: &str) -> Option<u64> {
    revocations
        .iter()
        .find(|(revoked, _)| revoked == id)
        .map(|(_, at_ms)| *at_ms)
}
