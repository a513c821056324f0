//! Holdings (protocol 5): a technician's device tells an office what it
//! holds, so each device is revoked on its own, by any central.
//!
//! Why: revocation records are per user and cleared by a `Revoked`, so the
//! first of a user's two devices to confirm a purge cleared the record the
//! second still needed; and a central that never sent a document to a
//! device had no record at all. What must go is a fact about the device,
//! so the device states it: after the hellos it sends the digest of the
//! work orders it holds (`Holding`); an office whose expectation differs
//! (the digest of the work orders assigned to the device's user here)
//! asks for the list (`HoldingWanted`, `HoldingList`), and every listed
//! document the user may not see joins this session's candidates, revoked
//! as its grace period ends (`Session::send_revocations`). An unchanged
//! reconnect costs the one `Holding` frame.
//!
//! Candidates are per session, so another device's `Revoked` clearing the
//! user's record does not let this device keep its copy: a record seen in
//! this session (protocol 5) makes its document a candidate too.

use std::collections::BTreeSet;

use fieldsync_schemas::sync_frame::{
    Frame, Hash, PAGE_DOCS_MAX, PROTOCOL_VERSION_HOLDINGS, PROTOCOL_VERSION_REOFFER,
};
use fieldsync_schemas::Role;

use super::{protocol, store_error, Session, SessionError};
use crate::access::PeerAccess;
use crate::doc::validate_doc_id;
use crate::sync::store::SyncStore;

/// Ids a device may list in one list, at most.
pub(super) const HOLDING_LIST_IDS_MAX: usize = 1 << 20;
/// Candidates an office keeps per session, at most; the rest wait for the
/// next session (the device's digest still differs then).
pub(super) const HOLDING_CANDIDATES_MAX: usize = 4 * PAGE_DOCS_MAX;
/// Work orders assigned to the device's user an office compares with a
/// list, at most: a user with more is not re-offered what they miss past
/// these (they get it with the document's next change).
pub(super) const REOFFER_SCAN_MAX: usize = 1 << 16;

#[derive(Default)]
pub(super) struct Holding {
    /// Office: we asked for the device's list and its last page has not come.
    receiving: bool,
    /// Office: ids the device listed so far in the list being received.
    listed: usize,
    /// Device: the digest we last sent.
    sent: Option<Hash>,
    /// Office: documents the device may hold that its user may not see, or
    /// sees only within a grace period (in id order: the frames go out in
    /// the same order on every run).
    candidates: BTreeSet<String>,
    /// Office: listed documents assigned to the device's user here, in the
    /// list being received (at most `REOFFER_SCAN_MAX`).
    listed_assigned: BTreeSet<String>,
    /// Office: documents assigned to the device's user here that its list
    /// lacks, to be offered again (protocol 6; at most
    /// `HOLDING_CANDIDATES_MAX`).
    reoffer: BTreeSet<String>,
}

impl Holding {
    pub(super) fn receiving(&self) -> bool {
        self.receiving
    }

    pub(super) fn candidates(&self) -> Vec<String> {
        self.candidates.iter().cloned().collect()
    }

    /// This session will revoke `id` when the user may no longer see it.
    pub(super) fn add(&mut self, id: &str) {
        if self.candidates.len() < HOLDING_CANDIDATES_MAX {
            self.candidates.insert(id.to_string());
        }
    }

    /// Revoked, or the user's again: nothing more to do about `id`.
    pub(super) fn settle(&mut self, id: &str) {
        self.candidates.remove(id);
    }

    /// Up to `limit` documents to offer the device again, taken from the
    /// queue.
    pub(super) fn take_reoffers(&mut self, limit: usize) -> Vec<String> {
        let taken: Vec<String> = self.reoffer.iter().take(limit).cloned().collect();
        for id in &taken {
            self.reoffer.remove(id);
        }
        taken
    }
}

impl Session {
    /// Does this session speak holdings, and which side is ours?
    fn holdings_side(&self) -> Option<Side> {
        if self.version < PROTOCOL_VERSION_HOLDINGS {
            return None;
        }
        match (&self.peer, self.config.office) {
            (PeerAccess::Office, false) => Some(Side::Device),
            (
                PeerAccess::User {
                    role: Role::Technician,
                    ..
                },
                true,
            ) => Some(Side::Office),
            _ => None,
        }
    }

    /// Is this an office's session with a technician's device that speaks
    /// holdings?
    pub(super) fn speaks_holdings(&self) -> bool {
        self.holdings_side() == Some(Side::Office)
    }

    /// After the hellos, a device states what it holds.
    pub(super) fn send_holding<S: SyncStore>(&mut self, store: &S) -> Result<(), SessionError> {
        if self.holdings_side() == Some(Side::Device) {
            let digest = store.held_digest().map_err(store_error)?;
            self.holding.sent = Some(digest);
            self.outbox.push_back(Frame::Holding { digest });
        }
        Ok(())
    }

    /// A device whose holdings changed since it last said (another
    /// session brought or took a document) says so again once nothing is
    /// coming in from this office: two centrals may disagree for a while,
    /// and a copy one of them sends after the other revoked it must not
    /// stay out of the other's sight until the next hello (simulator,
    /// `--centrals 0` seed 292). Waiting for the inbound side to settle
    /// keeps priming from sending one digest per page.
    pub(super) fn resend_holding<S: SyncStore>(&mut self, store: &S) -> Result<(), SessionError> {
        if self.holdings_side() != Some(Side::Device)
            || !self.inbound.is_settled()
            || self.revocation.purges_pending()
        {
            return Ok(());
        }
        let digest = store.held_digest().map_err(store_error)?;
        if self.holding.sent != Some(digest) {
            self.holding.sent = Some(digest);
            self.outbox.push_back(Frame::Holding { digest });
        }
        Ok(())
    }

    /// An office hears the device's digest; a surprise asks for the list.
    pub(super) fn on_holding<S: SyncStore>(
        &mut self,
        digest: Hash,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if self.version < PROTOCOL_VERSION_HOLDINGS {
            return Err(protocol("holding before protocol 5"));
        }
        if self.holdings_side() != Some(Side::Office) {
            // Only an office judges a technician's holdings. A node that is
            // no office may still be one to its peer (an office pair, or a
            // node listed without `user`, as the benchmark's are): the
            // digest is then no one's business here, not an error.
            return Ok(());
        }
        let PeerAccess::User { user_id, .. } = &self.peer else {
            unreachable!("the office side has a technician peer");
        };
        let expected = store.assigned_digest(user_id).map_err(store_error)?;
        if digest != expected && !self.holding.receiving {
            self.holding.receiving = true;
            self.holding.listed = 0;
            self.outbox.push_back(Frame::HoldingWanted);
        }
        Ok(())
    }

    /// A device lists what it holds, in pages.
    pub(super) fn on_holding_wanted<S: SyncStore>(
        &mut self,
        store: &S,
    ) -> Result<(), SessionError> {
        if self.holdings_side() != Some(Side::Device) {
            return Err(protocol("holding wanted by a peer that is not an office"));
        }
        let mut after: Option<String> = None;
        for _ in 0..HOLDING_LIST_IDS_MAX.div_ceil(PAGE_DOCS_MAX) {
            let ids = store
                .held_ids(after.as_deref(), PAGE_DOCS_MAX)
                .map_err(store_error)?;
            let last = ids.len() < PAGE_DOCS_MAX;
            after = ids.last().cloned();
            self.outbox.push_back(Frame::HoldingList { ids, last });
            if last {
                return Ok(());
            }
        }
        // Past the bound: say so, and the office stops listening.
        self.outbox.push_back(Frame::HoldingList {
            ids: Vec::new(),
            last: true,
        });
        Ok(())
    }

    /// An office takes in a page of the device's list: each document its
    /// user may not see is a candidate for revocation.
    pub(super) fn on_holding_list<S: SyncStore>(
        &mut self,
        now_ms: u64,
        ids: Vec<String>,
        last: bool,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if self.holdings_side() != Some(Side::Office) || !self.holding.receiving {
            return Err(protocol("holding list nobody asked for"));
        }
        self.holding.listed += ids.len();
        if self.holding.listed > HOLDING_LIST_IDS_MAX {
            return Err(protocol("holding list too long"));
        }
        let PeerAccess::User { user_id, .. } = &self.peer else {
            unreachable!("the office side has a technician peer");
        };
        let user_id = user_id.clone();
        for id in ids {
            validate_doc_id(&id)
                .map_err(|_| protocol(format!("bad document id in holding list: {id:?}")))?;
            // A document not here: lost here, if this is the only office
            // (`judge_candidate` revokes it); with another office, it may
            // not have come yet, and cannot be judged here.
            let Some(meta) = store.doc_meta(&id).map_err(store_error)? else {
                if self.config.sole_office {
                    self.holding.add(&id);
                }
                continue;
            };
            if meta.assignee.as_deref() != Some(user_id.as_str()) {
                self.holding.add(&id);
            } else if self.holding.listed_assigned.len() < REOFFER_SCAN_MAX {
                self.holding.listed_assigned.insert(id);
            }
        }
        if last {
            self.holding.receiving = false;
            self.queue_reoffers(&user_id, store)?;
            self.send_revocations(now_ms, store)?;
            self.pump(now_ms, store)?;
        }
        Ok(())
    }

    /// What is assigned to the user here and missing from the device's
    /// list is offered again (protocol 6): the device may have purged it
    /// on the word of another central that did not know of the assignment
    /// yet, and our checkpoint for it is past the document, so nothing else
    /// would send it again (simulator, `--centrals 2` seed 182).
    fn queue_reoffers<S: SyncStore>(&mut self, user: &str, store: &S) -> Result<(), SessionError> {
        let listed = std::mem::take(&mut self.holding.listed_assigned);
        if self.version < PROTOCOL_VERSION_REOFFER {
            return Ok(());
        }
        let assigned = store
            .assigned_ids(user, REOFFER_SCAN_MAX)
            .map_err(store_error)?;
        for id in assigned {
            if self.holding.reoffer.len() >= HOLDING_CANDIDATES_MAX {
                break;
            }
            if listed.contains(&id) {
                continue;
            }
            // Only what a crash cannot take back: a creation or assignment
            // still queued here would reach the device and then exist
            // nowhere else, and with another office no one could revoke
            // it (simulator, default world seeds 2587, 3056, 4251, 9551).
            // Once durable, its changelog entry offers it anyway.
            let durable = store.durable_doc_meta(&id).map_err(store_error)?;
            if durable.is_some_and(|meta| meta.assignee.as_deref() == Some(user)) {
                self.holding.reoffer.insert(id);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Device,
    Office,
}
