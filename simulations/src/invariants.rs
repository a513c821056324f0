//! The invariants: checked after every step (the cheap ones), after every
//! step with `--slow-checks` (the expensive ones), and all of them after the
//! final heal.
//!
//! Each check says what must hold in words a reader can verify against the
//! design (DESIGN.md, "Sync between nodes"); the failure text names the
//! nodes and documents involved so the trace tail can be read against it.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ChangeHash, ReadDoc, Value, ROOT};
use fieldsync_node::access;
use fieldsync_node::sync::SyncStore;

use crate::workload::{FORGED_ASSIGNEE_PREFIX, FORGED_CUSTOMER_PREFIX, FORGED_PRIORITY};
use crate::world::{Sim, FIELD_COLLECTION};
use crate::{Failure, Invariant};

/// Checks between full re-verifications of every checkpoint and every
/// acknowledged write (slow checks).
const SLOW_RECHECK_STEPS: u64 = 100;

fn contains_all(doc: Option<&Automerge>, heads: &[ChangeHash]) -> bool {
    doc.is_some_and(|d| heads.iter().all(|h| d.get_change_by_hash(h).is_some()))
}

fn short(heads: &[ChangeHash]) -> String {
    let hex: Vec<String> = heads
        .iter()
        .map(|h| h.to_string()[..8].to_string())
        .collect();
    format!("[{}]", hex.join(","))
}

/// The changes `a` holds and `b` lacks: hash, actor, seq and deps, for
/// reading a convergence failure.
fn only_in(a: Option<&Automerge>, b: Option<&Automerge>) -> String {
    let (Some(a), Some(b)) = (a, b) else {
        return "?".to_string();
    };
    let lacking: Vec<String> = a
        .get_changes(&[])
        .into_iter()
        .filter(|change| b.get_change_by_hash(&change.hash()).is_none())
        .map(|change| {
            format!(
                "{} by {}:{} after {}",
                &change.hash().to_string()[..8],
                &change.actor_id().to_hex_string()[..6],
                change.seq(),
                short(change.deps())
            )
        })
        .collect();
    lacking.join(", ")
}

/// Every string value a key holds, winners and conflict losers alike.
fn all_strings(doc: &Automerge, obj: &automerge::ObjId, key: &str) -> Vec<String> {
    doc.get_all(obj, key)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(value, _)| match value {
            Value::Scalar(s) => s.as_str().map(str::to_string),
            Value::Object(_) => None,
        })
        .collect()
}

/// A forged value visible in a document, if any.
fn forged_value(doc: &Automerge) -> Option<String> {
    if let Some(p) = all_strings(doc, &ROOT, "priority")
        .into_iter()
        .find(|p| p == FORGED_PRIORITY)
    {
        return Some(format!("priority={p}"));
    }
    if let Some(a) = all_strings(doc, &ROOT, "assignee")
        .into_iter()
        .find(|a| a.starts_with(FORGED_ASSIGNEE_PREFIX))
    {
        return Some(format!("assignee={a}"));
    }
    if let Ok(Some((Value::Object(_), customer))) = doc.get(ROOT, "customer") {
        if let Some(n) = all_strings(doc, &customer, "name")
            .into_iter()
            .find(|n| n.starts_with(FORGED_CUSTOMER_PREFIX))
        {
            return Some(format!("customer.name={n}"));
        }
    }
    None
}

impl Sim {
    /// The cheap checks, after every step.
    pub(crate) fn check_step(&mut self) -> Result<(), Failure> {
        self.check_changelogs()?;
        self.check_checkpoints()?;
        self.check_forbidden()?;
        self.check_quiescent_links()?;
        if self.cfg.slow_checks {
            self.model.slow_rounds += 1;
            self.check_own_writes()?;
            self.check_converged_status()?;
            self.check_reader_index()?;
            if self.model.slow_rounds.is_multiple_of(SLOW_RECHECK_STEPS) {
                // Re-verify every checkpoint from seq 0, not only what
                // moved: catches a durable state that lost something.
                self.model.checkpoint_verified.clear();
                self.check_checkpoints()?;
            }
        }
        Ok(())
    }

    /// Every store's reader index (what a technician's session reads
    /// instead of the changelog) yields what a full scan of the changelog,
    /// judged by the visibility rule, finds each user's device may see.
    fn check_reader_index(&self) -> Result<(), Failure> {
        for node in &self.nodes {
            for user in &self.users {
                let misses =
                    node.store
                        .reader_index_misses(&user.id, self.now_ms, self.cfg.grace_ms);
                if let Some(miss) = misses.first() {
                    return Err(Failure::new(
                        Invariant::ReaderIndex,
                        format!(
                            "{}: the reader index of {} lacks {miss} ({} misses)",
                            node.name,
                            user.id,
                            misses.len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Changelogs are gap-free (entry `i` has seq `i + 1`) and the durable
    /// log is a prefix of the live one.
    fn check_changelogs(&mut self) -> Result<(), Failure> {
        for node in &mut self.nodes {
            let live = node.store.log();
            let durable = node.store.durable_log();
            let (live_from, durable_from) = node.log_checked;
            for (index, entry) in live.iter().enumerate().skip(live_from.min(live.len())) {
                if entry.seq != index as u64 + 1 {
                    return Err(Failure::new(
                        Invariant::Changelog,
                        format!(
                            "{}: live changelog entry {index} has seq {}",
                            node.name, entry.seq
                        ),
                    ));
                }
            }
            for (index, entry) in durable
                .iter()
                .enumerate()
                .skip(durable_from.min(durable.len()))
            {
                if entry.seq != index as u64 + 1 || live.get(index) != Some(entry) {
                    return Err(Failure::new(
                        Invariant::Changelog,
                        format!(
                            "{}: durable changelog entry {index} (seq {}) is not the live entry",
                            node.name, entry.seq
                        ),
                    ));
                }
            }
            node.log_checked = (live.len(), durable.len());
        }
        Ok(())
    }

    /// A node's durable checkpoint for a peer at seq S means every document
    /// the peer's changelog lists up to S is in the node's durable state —
    /// unless the node refused it, may not see it, or it was purged.
    pub(crate) fn check_checkpoints(&mut self) -> Result<(), Failure> {
        for n in 0..self.nodes.len() {
            if self.out_of_system(n) {
                continue;
            }
            let node = &self.nodes[n];
            let checkpoints: Vec<(String, fieldsync_schemas::sync_frame::WireCheckpoint)> = node
                .store
                .durable_checkpoints()
                .map(|(p, c)| (p.to_string(), c.clone()))
                .collect();
            for (peer_name, checkpoint) in checkpoints {
                let Some(p) = self.nodes.iter().position(|x| x.name == peer_name) else {
                    continue;
                };
                let peer = &self.nodes[p];
                if peer.store.epoch() != checkpoint.epoch {
                    continue;
                }
                let log = peer.store.durable_log();
                if checkpoint.seq > log.len() as u64 {
                    return Err(Failure::new(
                        Invariant::Checkpoint,
                        format!("{} holds checkpoint seq {} for {peer_name}, whose durable changelog ends at {}", node.name, checkpoint.seq, log.len()),
                    ));
                }
                let key = (node.name.clone(), peer_name.clone(), checkpoint.epoch);
                let from = self
                    .model
                    .checkpoint_verified
                    .get(&key)
                    .copied()
                    .unwrap_or(0);
                if checkpoint.seq <= from {
                    continue;
                }
                for entry in &log[from as usize..checkpoint.seq as usize] {
                    if contains_all(node.store.durable_doc(&entry.id), &entry.heads) {
                        continue;
                    }
                    let refused = self.model.refused.contains(&(
                        node.name.clone(),
                        peer_name.clone(),
                        entry.id.clone(),
                    ));
                    // The peer refused this device's changes to the document
                    // (a tampered sibling, or a protocol-5 relay of an
                    // office change): the engine ends that conversation both
                    // ways for the session (`on_rejected`), and the peer's
                    // changes reach the device through an office instead.
                    let rejected_by_peer = node.user().is_some()
                        && self.model.refused.contains(&(
                            peer_name.clone(),
                            node.name.clone(),
                            entry.id.clone(),
                        ));
                    let purged = self
                        .model
                        .purged
                        .contains(&(node.name.clone(), entry.id.clone()));
                    let gone_at_peer = peer.store.live_meta(&entry.id).is_none()
                        || self
                            .model
                            .purged
                            .contains(&(peer_name.clone(), entry.id.clone()));
                    let not_only_theirs = node.user().is_some_and(|u| {
                        let ever = self.model.assignees_ever.get(&entry.id);
                        ever.is_none_or(|set| set.len() != 1 || !set.contains(&self.users[u].id))
                    });
                    if refused || rejected_by_peer || purged || gone_at_peer || not_only_theirs {
                        continue;
                    }
                    return Err(Failure::new(
                        Invariant::Checkpoint,
                        format!(
                            "{} durably checkpointed {peer_name} at seq {}, but its durable state lacks {} at seq {} (heads {})",
                            node.name,
                            checkpoint.seq,
                            entry.id,
                            entry.seq,
                            short(&entry.heads)
                        ),
                    ));
                }
                self.model.checkpoint_verified.insert(key, checkpoint.seq);
            }
        }
        Ok(())
    }

    /// No central ever shows a value only a tampered laptop wrote, live or
    /// durable, as the winner or as a conflict.
    fn check_forbidden(&mut self) -> Result<(), Failure> {
        for node in self.nodes.iter().filter(|n| n.is_central()) {
            for id in node.store.doc_ids() {
                for (durable, doc) in [
                    (false, node.store.live_doc(&id)),
                    (true, node.store.durable_doc(&id)),
                ] {
                    let Some(doc) = doc else { continue };
                    let heads = doc.get_heads();
                    let key = (node.name.clone(), durable, id.clone());
                    if self.model.forbidden_checked.get(&key) == Some(&heads) {
                        continue;
                    }
                    if let Some(value) = forged_value(doc) {
                        let state = if durable { "durable" } else { "live" };
                        return Err(Failure::new(
                            Invariant::Forbidden,
                            format!("{}'s {state} {id} shows forbidden {value}", node.name),
                        ));
                    }
                    self.model.forbidden_checked.insert(key, heads);
                }
            }
        }
        Ok(())
    }

    /// Links with nothing in flight and nothing left to do: an office side
    /// and its peer agree on every document the peer may see, and a
    /// technician holds nothing its user may no longer see.
    fn check_quiescent_links(&self) -> Result<(), Failure> {
        for &(a, b) in self.links.keys() {
            let (na, nb) = (&self.nodes[a], &self.nodes[b]);
            if !(na.is_central() || nb.is_central()) || !self.quiescent((a, b)) {
                continue;
            }
            let (central, other) = if na.is_central() { (na, nb) } else { (nb, na) };
            let other_index = if na.is_central() { b } else { a };
            let tech_access = other.user().map(|u| self.tech_access(u));
            for id in other.store.doc_ids() {
                let ours = other.store.live_meta(&id).expect("listed doc has meta");
                let Some(meta) = central.store.live_meta(&id) else {
                    continue;
                };
                if let Some(access) = &tech_access {
                    if !self.may_see(central, access, &id, meta) {
                        if !self.revocation_owed(other_index) {
                            continue; // A protocol-4 device's known limitation.
                        }
                        return Err(Failure::new(
                            Invariant::Visibility,
                            format!(
                                "{} (user {}) is idle with {} yet still holds {id}, which {} assigns to {:?} (previous {:?}, reassigned at {}ms, grace {}ms; revocations held for the user: {:?})",
                                other.name,
                                self.users[other.user().unwrap_or(0)].id,
                                central.name,
                                central.name,
                                meta.assignee,
                                meta.previous_assignee,
                                meta.reassigned_at_ms,
                                self.cfg.grace_ms,
                                central.store.revocations(&self.users[other.user().unwrap_or(0)].id, usize::MAX).unwrap_or_default()
                            ),
                        ));
                    }
                }
                if ours.heads != meta.heads {
                    return Err(Failure::new(
                        Invariant::Convergence,
                        format!(
                            "{} and {} are connected and idle but disagree on {id}: {} vs {} (only at {}: {}; only at {}: {})",
                            central.name,
                            other.name,
                            short(&meta.heads),
                            short(&ours.heads),
                            central.name,
                            only_in(central.store.live_doc(&id), other.store.live_doc(&id)),
                            other.name,
                            only_in(other.store.live_doc(&id), central.store.live_doc(&id)),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The engine's visibility rule, with the user's own revocation record
    /// at this central.
    fn may_see(
        &self,
        central: &crate::world::Node,
        peer: &access::PeerAccess,
        id: &str,
        meta: &access::DocMeta,
    ) -> bool {
        let own = match peer {
            access::PeerAccess::User { user_id, .. } => central
                .store
                .revocations(user_id, usize::MAX)
                .unwrap_or_default()
                .into_iter()
                .find(|(revoked, _)| revoked == id)
                .map(|(_, at_ms)| at_ms),
            access::PeerAccess::Office => None,
        };
        access::may_see(peer, meta, own, self.now_ms, self.cfg.grace_ms)
    }

    /// Slow: every node still in the system keeps its own acknowledged
    /// writes durably (unless the document was purged there).
    fn check_own_writes(&mut self) -> Result<(), Failure> {
        // A durable document only grows (or is purged, which is excused):
        // each write is checked once, and all again every so often.
        let from = if self.model.slow_rounds.is_multiple_of(SLOW_RECHECK_STEPS) {
            0
        } else {
            self.model.own_writes_checked
        };
        self.model.own_writes_checked = self.model.acked.len();
        for write in self.model.acked[from.min(self.model.acked.len())..]
            .iter()
            .filter(|w| w.excused.is_none())
        {
            let node = &self.nodes[write.origin];
            if node.name != write.origin_name || self.out_of_system(write.origin) {
                continue;
            }
            if self
                .model
                .purged
                .contains(&(node.name.clone(), write.doc.clone()))
            {
                continue;
            }
            if let Some(doc) = node.store.durable_doc(&write.doc) {
                if !contains_all(Some(doc), &write.heads) {
                    return Err(Failure::new(
                        Invariant::NoLostWrite,
                        format!(
                            "{} lost its own acknowledged write `{}` ({} acked at {}ms)",
                            node.name,
                            write.what,
                            short(&write.heads),
                            write.acked_at_ms
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Slow: replicas with the same heads derive the same status.
    fn check_converged_status(&mut self) -> Result<(), Failure> {
        let keys: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for (a, b) in keys {
            for id in self.nodes[a].store.doc_ids() {
                let (Some(x), Some(y)) = (
                    self.nodes[a].store.live_meta(&id),
                    self.nodes[b].store.live_meta(&id),
                ) else {
                    continue;
                };
                if x.heads != y.heads {
                    continue;
                }
                // Each pair once per heads it reaches: a view costs a clone.
                let key = (
                    self.nodes[a].name.clone(),
                    self.nodes[b].name.clone(),
                    id.clone(),
                );
                if self.model.status_checked.get(&key) == Some(&x.heads) {
                    continue;
                }
                let heads = x.heads.clone();
                self.same_status(&id, &[a, b])?;
                self.model.status_checked.insert(key, heads);
            }
        }
        Ok(())
    }

    fn same_status(&self, id: &str, nodes: &[usize]) -> Result<(), Failure> {
        let mut first: Option<(String, fieldsync_schemas::Status, bool)> = None;
        for &n in nodes {
            let node = &self.nodes[n];
            let Some(doc) = node.store.work_order(id) else {
                continue;
            };
            let view = doc.view().map_err(|e| {
                Failure::new(
                    Invariant::DerivedStatus,
                    format!("{}'s {id} does not read as a work order: {e}", node.name),
                )
            })?;
            match &first {
                None => first = Some((node.name.clone(), view.status, view.conflict)),
                Some((name, status, conflict))
                    if (*status, *conflict) != (view.status, view.conflict) =>
                {
                    return Err(Failure::new(
                        Invariant::DerivedStatus,
                        format!("{id}: {name} derives {status} (conflict {conflict}), {} derives {} (conflict {})", node.name, view.status, view.conflict),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// After the heal: every node holds exactly the live records of the
    /// first central (their one writer) that its role may read, at the same
    /// versions; a node that cannot receive records (an older protocol in
    /// a rollout) holds none it may not read and none newer than the origin.
    fn check_records(&self, system: &[usize]) -> Result<(), Failure> {
        let Some(origin) = self.first_central() else {
            return Ok(());
        };
        let live = |n: usize| -> BTreeMap<(String, String), u64> {
            self.nodes[n]
                .store
                .records()
                .filter(|r| !r.deleted)
                .map(|r| ((r.collection.clone(), r.key.clone()), r.version))
                .collect()
        };
        let reference = live(origin);
        let versions: BTreeMap<(String, String), u64> = self.nodes[origin]
            .store
            .records()
            .map(|r| ((r.collection.clone(), r.key.clone()), r.version))
            .collect();
        for &n in system.iter().filter(|&&n| n != origin) {
            let node = &self.nodes[n];
            let readable =
                |collection: &str| node.user().is_none() || collection == FIELD_COLLECTION;
            let held = live(n);
            if let Some((collection, key)) = held.keys().find(|(c, _)| !readable(c)) {
                return Err(Failure::new(
                    Invariant::Visibility,
                    format!(
                        "{} holds record {collection}/{key}, which its role may not read",
                        node.name
                    ),
                ));
            }
            let expected: BTreeMap<(String, String), u64> = reference
                .iter()
                .filter(|((c, _), _)| readable(c))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let newer = held
                .iter()
                .find(|(k, v)| versions.get(*k).is_none_or(|r| **v > *r));
            if let Some(((collection, key), version)) = newer {
                return Err(Failure::new(
                    Invariant::Convergence,
                    format!("{} holds {collection}/{key} at version {version}, which its origin does not", node.name),
                ));
            }
            if self.speaks_records(n) && self.speaks_records(origin) && held != expected {
                return Err(Failure::new(
                    Invariant::Convergence,
                    format!(
                        "after the heal, {} holds records {held:?}, expected {expected:?}",
                        node.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Everything, after the final heal.
    pub(crate) fn check_final(&mut self) -> Result<(), Failure> {
        self.log("final checks");
        let system: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| !self.out_of_system(n))
            .collect();
        for &n in &system {
            let node = &self.nodes[n];
            if node.store.queued_writes() > 0 || !node.up {
                return Err(Failure::new(
                    Invariant::Liveness,
                    format!("{} is not settled after the heal", node.name),
                ));
            }
        }
        let centrals: Vec<usize> = system
            .iter()
            .copied()
            .filter(|&n| self.nodes[n].is_central())
            .collect();
        let reference = &self.nodes[centrals[0]];
        // Centrals hold the same documents with the same heads.
        for &c in &centrals[1..] {
            let other = &self.nodes[c];
            if reference.store.doc_ids() != other.store.doc_ids() {
                return Err(Failure::new(
                    Invariant::Convergence,
                    format!(
                        "{} holds {:?}, {} holds {:?}",
                        reference.name,
                        reference.store.doc_ids(),
                        other.name,
                        other.store.doc_ids()
                    ),
                ));
            }
        }
        for &n in &system {
            let node = &self.nodes[n];
            let expected: Vec<String> = match node.user() {
                None => reference.store.doc_ids(),
                Some(u) => reference
                    .store
                    .doc_ids()
                    .into_iter()
                    .filter(|id| {
                        reference.store.live_meta(id).is_some_and(|m| {
                            m.assignee.as_deref() == Some(self.users[u].id.as_str())
                        })
                    })
                    .collect(),
            };
            let held = node.store.doc_ids();
            let extra = held.iter().find(|id| !expected.contains(id));
            if let Some(extra) = extra.filter(|_| self.revocation_owed(n)) {
                return Err(Failure::new(
                    Invariant::Visibility,
                    format!("after the heal and the grace period, {} still holds {extra}, assigned to {:?}", node.name, reference.store.live_meta(extra).and_then(|m| m.assignee.clone())),
                ));
            }
            if let Some(missing) = expected
                .iter()
                .find(|id| !held.contains(id))
                .filter(|_| self.reoffer_owed(n))
            {
                return Err(Failure::new(
                    Invariant::Convergence,
                    format!(
                        "after the heal, {} lacks {missing}, which it may see",
                        node.name
                    ),
                ));
            }
            // A document kept past its revocation (a protocol-4 device's
            // known limitation) is owed nothing more.
            for id in held.iter().filter(|id| expected.contains(id)) {
                let (ours, theirs) = (
                    node.store.durable_heads(id),
                    reference.store.durable_heads(id),
                );
                if ours != theirs {
                    return Err(Failure::new(
                        Invariant::Convergence,
                        format!(
                            "after the heal, {} and {} disagree on {id}: {} vs {}",
                            node.name,
                            reference.name,
                            short(&ours.unwrap_or_default()),
                            short(&theirs.unwrap_or_default())
                        ),
                    ));
                }
            }
        }
        // No acknowledged write is lost.
        for write in self.model.acked.iter().filter(|w| w.excused.is_none()) {
            let origin = &self.nodes[write.origin];
            let origin_alive =
                origin.name == write.origin_name && !self.out_of_system(write.origin);
            if origin_alive
                && !self
                    .model
                    .purged
                    .contains(&(origin.name.clone(), write.doc.clone()))
            {
                if let Some(doc) = origin.store.durable_doc(&write.doc) {
                    if !contains_all(Some(doc), &write.heads) {
                        return Err(Failure::new(
                            Invariant::NoLostWrite,
                            format!(
                                "{} lost its own acknowledged write `{}` (acked at {}ms)",
                                origin.name, write.what, write.acked_at_ms
                            ),
                        ));
                    }
                }
            }
            for &c in &centrals {
                if !contains_all(self.nodes[c].store.durable_doc(&write.doc), &write.heads) {
                    return Err(Failure::new(
                        Invariant::NoLostWrite,
                        format!(
                            "acknowledged write `{}` by {} (acked at {}ms, {}) is not on {}",
                            write.what,
                            write.origin_name,
                            write.acked_at_ms,
                            short(&write.heads),
                            self.nodes[c].name
                        ),
                    ));
                }
            }
        }
        self.check_records(&system)?;
        self.check_forbidden()?;
        self.check_changelogs()?;
        self.model.checkpoint_verified.clear();
        self.check_checkpoints()?;
        // Derived status is the same on every replica.
        let ids: BTreeSet<String> = system
            .iter()
            .flat_map(|&n| self.nodes[n].store.doc_ids())
            .collect();
        for id in ids {
            // Not a copy kept past its revocation (a protocol-4 device's
            // known limitation): that one stopped syncing on purpose.
            let assignee = self
                .first_central()
                .and_then(|c| self.nodes[c].store.live_meta(&id))
                .and_then(|meta| meta.assignee.clone());
            let replicas: Vec<usize> = system
                .iter()
                .copied()
                .filter(|&n| {
                    self.revocation_owed(n)
                        || self.nodes[n].user().map(|u| self.users[u].id.as_str())
                            == assignee.as_deref()
                })
                .collect();
            self.same_status(&id, &replicas)?;
        }
        let text = format!(
            "final checks passed: {} acknowledged writes ({} excused), {} documents",
            self.model.acked.len(),
            self.model
                .acked
                .iter()
                .filter(|w| w.excused.is_some())
                .count(),
            self.nodes[centrals[0]].store.doc_ids().len()
        );
        self.log(&text);
        Ok(())
    }
}
