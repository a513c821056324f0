//! Revocation: an office taking documents back from a technician's laptop,
//! and the laptop's side of it.
//!
//! Office side: when a document is reassigned away from the peer's user,
//! the grace period runs from that user's own revocation record; when it
//! ends, the office sends `Revoke` (the only timer of a session). It also
//! revokes a document the laptop offers but may not see (it may hold a
//! copy it was never durably given). The laptop's `Revoked` settles the
//! document in our pages and clears the revocation record, unless the
//! record was refreshed meanwhile.
//!
//! Laptop side: `Revoke` purges the documents; once the purge is durable
//! the laptop confirms with `Revoked`, and announces nothing newer before
//! that (`pump`): the office takes `Revoked` to mean that every page it has
//! from us holds the destroyed copy.
//!
//! Invariant kept here: a revoke destroys data at the peer, so it rests on
//! durable state only (`durable_revocations`, `visible_durably`): a crash
//! could still undo a reassignment that is not on disk.

use std::collections::{HashMap, HashSet};

use automerge::ChangeHash;
use fieldsync_schemas::sync_frame::{Frame, PAGE_DOCS_MAX};
use fieldsync_schemas::Role;

use super::visibility::REVOCATIONS_SCAN_MAX;
use super::{protocol, store_error, Session, SessionError};
use crate::access::PeerAccess;
use crate::doc::validate_doc_id;
use crate::sync::store::{SyncStore, WriteId};

/// Revokes in flight in both directions, and the grace timer.
#[derive(Default)]
pub(super) struct Revocation {
    /// Our purges on the peer's `Revoke`, by the write that makes them
    /// durable; confirmed with `Revoked` once it is.
    purges: HashMap<WriteId, Vec<String>>,
    /// Documents we sent `Revoke` for and whose `Revoked` has not come:
    /// only their `Revoked` may clear a revocation record.
    sent: HashSet<String>,
    /// When the next grace period ends (the session's timer).
    next_timeout_ms: Option<u64>,
}

impl Revocation {
    /// Is a purge of ours not yet confirmed to the peer?
    pub(super) fn purges_pending(&self) -> bool {
        !self.purges.is_empty()
    }

    /// `write` and every write before it are durable: take the purges that
    /// covers, in write order (the frames go out in the same order on every
    /// run: the simulator replays seeds).
    pub(super) fn durable_purges(&mut self, write: WriteId) -> Vec<Vec<String>> {
        let mut purged: Vec<WriteId> = self
            .purges
            .keys()
            .copied()
            .filter(|w| *w <= write)
            .collect();
        // Hash-map order differs between processes: sort.
        purged.sort_unstable();
        purged
            .into_iter()
            .filter_map(|purge| self.purges.remove(&purge))
            .collect()
    }

    /// A whole copy of `id` went to the peer: a `Revoked` for an earlier
    /// copy, still in flight, no longer proves it purged the document, and
    /// must not clear the revocation of this one.
    pub(super) fn whole_copy_sent(&mut self, id: &str) {
        self.sent.remove(id);
    }

    pub(super) fn next_timeout_ms(&self) -> Option<u64> {
        self.next_timeout_ms
    }

    /// The timer fired.
    pub(super) fn disarm(&mut self) {
        self.next_timeout_ms = None;
    }
}

impl Session {
    /// Revoke every document whose grace period for the peer's user has
    /// ended, and arm the timer for the next one (an office, a technician
    /// peer): from the user's revocation records, and (protocol 5) from
    /// what the device told us it holds (`holding`).
    pub(super) fn send_revocations<S: SyncStore>(
        &mut self,
        now_ms: u64,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let PeerAccess::User {
            user_id,
            role: Role::Technician,
        } = &self.peer
        else {
            return Ok(());
        };
        if !self.config.office {
            return Ok(());
        }
        let user_id = user_id.clone();
        let holdings = self.speaks_holdings();
        let mut ids = Vec::new();
        let mut next: Option<u64> = None;
        let mut arm = |deadline: u64| next = Some(next.map_or(deadline, |n: u64| n.min(deadline)));
        // Only durable reassignments: a revoke destroys data at the peer,
        // and a crash here could still undo a reassignment that is not on
        // disk, leaving the laptop without a document that is its user's
        // again, past its checkpoint for good (simulator, seed 1786).
        let records = store
            .durable_revocations(&user_id, REVOCATIONS_SCAN_MAX)
            .map_err(store_error)?;
        for (id, reassigned_at_ms) in &records {
            let Some(meta) = store.doc_meta(id).map_err(store_error)? else {
                continue;
            };
            if meta.assignee.as_deref() == Some(user_id.as_str()) {
                continue; // Assigned back to this user.
            }
            // The grace period runs from this user's own reassignment (the
            // revocation's time), not from the document's latest one: a
            // second reassignment within the grace period moves
            // `previous_assignee` on, and keying on it left the first
            // technician holding the document for ever (simulator, seed 0).
            let deadline = reassigned_at_ms.saturating_add(self.config.grace_ms);
            if now_ms >= deadline {
                if self.revocation.sent.insert(id.clone()) {
                    ids.push(id.clone());
                }
            } else {
                arm(deadline);
                // Remembered here: another device of the user may clear
                // the record before this one's grace period ends.
                if holdings {
                    self.holding.add(id);
                }
            }
        }
        if holdings {
            // The user's live records, read once for every candidate.
            let mut live_records = None;
            for id in self.holding.candidates() {
                if self.revocation.sent.contains(&id) {
                    continue;
                }
                match self.judge_candidate(&id, &user_id, now_ms, store, &mut live_records)? {
                    Candidate::Settled => self.holding.settle(&id),
                    Candidate::Wait(None) => {}
                    Candidate::Wait(Some(deadline)) => arm(deadline),
                    Candidate::Revoke => {
                        self.revocation.sent.insert(id.clone());
                        ids.push(id);
                    }
                }
            }
        }
        self.revocation.next_timeout_ms = next;
        if !ids.is_empty() {
            self.outbox.push_back(Frame::Revoke { ids });
        }
        Ok(())
    }

    /// What to do now about a document the device may hold.
    /// `live_records`: the user's revocation records, read on first need.
    fn judge_candidate<S: SyncStore>(
        &self,
        id: &str,
        user_id: &str,
        now_ms: u64,
        store: &S,
        live_records: &mut Option<Vec<(String, u64)>>,
    ) -> Result<Candidate, SessionError> {
        let Some(meta) = store.doc_meta(id).map_err(store_error)? else {
            // Lost here, and this office is the only one: the device's copy
            // goes too (`SessionConfig::sole_office`).
            let lost = self.config.sole_office
                && store.durable_doc_meta(id).map_err(store_error)?.is_none();
            return Ok(if lost {
                Candidate::Revoke
            } else {
                Candidate::Settled
            });
        };
        if meta.assignee.as_deref() == Some(user_id) {
            return Ok(Candidate::Settled); // The user's (again).
        }
        if self.visible_cached(id, &meta, now_ms, store, live_records)? {
            // Within a grace period: until its end, from the user's own
            // record or the document's latest reassignment.
            if live_records.is_none() {
                *live_records = Some(
                    store
                        .revocations(user_id, REVOCATIONS_SCAN_MAX)
                        .map_err(store_error)?,
                );
            }
            let records = live_records.as_deref().unwrap_or_default();
            let own = records.iter().filter(|(revoked, _)| revoked == id);
            let latest = (meta.previous_assignee.as_deref() == Some(user_id))
                .then_some(meta.reassigned_at_ms);
            let start = own.map(|(_, at_ms)| *at_ms).chain(latest).max();
            let deadline = start.map(|at_ms| at_ms.saturating_add(self.config.grace_ms));
            return Ok(Candidate::Wait(deadline.filter(|d| *d > now_ms)));
        }
        // A revoke rests on durable state only (see the module docs).
        if self.visible_durably(id, now_ms, store)? {
            return Ok(Candidate::Wait(None));
        }
        Ok(Candidate::Revoke)
    }

    /// The peer offered a document it may not see. The office also revokes
    /// it: a technician can hold a document it was never durably given (a
    /// central served an unflushed assignment, then crashed and lost it),
    /// for which no revocation record exists, so no timer would ever remove
    /// it (simulator, seed 103).
    ///
    /// Returns whether a purge confirmation (`Revoked`) is now awaited.
    /// `revoke`: whether the office's durable state agrees (a revoke
    /// decided on a reassignment a crash may still undo loses the laptop's
    /// copy for good, simulator seed 1786).
    pub(super) fn reject_invisible(&mut self, id: &str, revoke: bool) -> bool {
        self.reject_hidden(id, "not visible to this peer");
        let technician = matches!(
            self.peer,
            PeerAccess::User {
                role: Role::Technician,
                ..
            }
        );
        if !(self.config.office && technician && revoke) {
            return false;
        }
        if self.revocation.sent.insert(id.to_string()) {
            self.outbox.push_back(Frame::Revoke {
                ids: vec![id.to_string()],
            });
        }
        true
    }

    /// An office takes documents back: purge them, settle them in our
    /// pages, and confirm once the purge is durable (`handle_write_done`).
    pub(super) fn on_revoke<S: SyncStore>(
        &mut self,
        ids: Vec<String>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        if !matches!(self.peer, PeerAccess::Office) {
            return Err(protocol("only an office node may revoke documents"));
        }
        let mut last = None;
        for id in &ids {
            validate_doc_id(id)
                .map_err(|_| protocol(format!("bad document id in revoke: {id:?}")))?;
            self.settle(id);
            last = Some(store.purge(id).map_err(store_error)?);
        }
        if let Some(write) = last {
            self.revocation.purges.insert(write, ids);
        }
        self.complete_pages(store)
    }

    /// The technician's laptop durably purged documents.
    pub(super) fn on_revoked<S: SyncStore>(
        &mut self,
        now_ms: u64,
        ids: Vec<String>,
        store: &mut S,
    ) -> Result<(), SessionError> {
        let PeerAccess::User { user_id, .. } = &self.peer else {
            return Err(protocol("revoked from an office node"));
        };
        let user_id = user_id.clone();
        let records = store
            .revocations(&user_id, REVOCATIONS_SCAN_MAX)
            .map_err(store_error)?;
        for id in ids {
            // The peer destroyed its copy, and with it the changes our
            // pending pages from it still wait for (it announced them
            // before the purge; it announces nothing newer before this
            // `Revoked`, see `pump`): they will never come. Settling only
            // the documents we had refused left a page stalled that took
            // the document in while it was assigned back (simulator, seed
            // 4726).
            self.settle(&id);
            self.holding.settle(&id);
            // Its copy is gone: the heads it announced no longer say what
            // it holds. A merge here of those same heads (another central's
            // change, which that copy already had) must be offered again
            // (simulator, `--centrals 2` seed 18).
            self.echo.forget(&id);
            if self.revocation.sent.remove(&id) {
                // The document may have been assigned back and away again
                // while our `Revoke` travelled: that refreshed the record,
                // and the user is owed a new grace period and a new revoke.
                // Clear only a record that has expired (simulator, seed 262),
                // and with other devices of the user, one kept a while
                // longer (`revocation_keep_ms`).
                let keep_ms = if self.config.peer_relays {
                    self.config.revocation_keep_ms
                } else {
                    0
                };
                let ends_ms = self.config.grace_ms.saturating_add(keep_ms);
                let refreshed = records
                    .iter()
                    .any(|(revoked, at)| *revoked == id && now_ms < at.saturating_add(ends_ms));
                if !refreshed {
                    store.clear_revocation(&user_id, &id).map_err(store_error)?;
                }
            }
        }
        self.complete_pages(store)
    }
}

impl Session {
    /// A device that purged, on another central's word, a document it
    /// announced to this peer tells this peer too (an unasked `Revoked`):
    /// the peer waits for the heads announced, which went with the copy,
    /// and nothing else would ever settle them (simulator, `--centrals 2`
    /// seed 156; between two devices of a user, `--centrals 0
    /// --shared-laptops` seed 209). Told once the purge is durable, as
    /// every `Revoked`.
    ///
    /// A copy taken in again since (from another central) counts as lost
    /// when it lacks the heads announced (default world seed 2423). Only a
    /// page sent before a purge (another actor) is looked at, so this costs
    /// nothing while no purge happens.
    pub(super) fn tell_lost_copies<S: SyncStore>(&mut self, store: &S) -> Result<(), SessionError> {
        if self.config.office {
            return Ok(());
        }
        let actor = store.actor();
        let mut lost: Vec<String> = Vec::new();
        for announced in self.outbound.announced() {
            if lost.len() >= PAGE_DOCS_MAX {
                break;
            }
            if *announced.actor != actor && !lost.iter().any(|id| id == announced.id) {
                let heads: Vec<ChangeHash> =
                    announced.heads.iter().copied().map(ChangeHash).collect();
                if copy_lost(announced.id, &heads, store)? {
                    lost.push(announced.id.to_string());
                }
            }
        }
        if !lost.is_empty() {
            self.outbound.forget_announced(&lost);
            self.outbox.push_back(Frame::Revoked { ids: lost });
        }
        Ok(())
    }
}

/// Is the copy of `id` that held `heads` gone for good: purged and the
/// purge durable (absent now and after a crash), or replaced by a durable
/// copy taken in again without those heads (durable only after the purge
/// before it: the store is FIFO)?
fn copy_lost<S: SyncStore>(
    id: &str,
    heads: &[ChangeHash],
    store: &S,
) -> Result<bool, SessionError> {
    match store.doc_meta(id).map_err(store_error)? {
        None => Ok(store.durable_doc_meta(id).map_err(store_error)?.is_none()),
        Some(meta) if meta.durable => Ok(!super::inbound::has_all(&meta.heads, heads, || {
            store.doc(id)
        })?),
        Some(_) => Ok(false),
    }
}

/// A candidate's fate in `send_revocations`.
enum Candidate {
    /// Nothing more to do in this session.
    Settled,
    /// Not yet: until the deadline, if one is known.
    Wait(Option<u64>),
    Revoke,
}
