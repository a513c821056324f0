//! Reassignment bookkeeping and purges: what the sync engine's
//! reassignment rule needs from the store.
//!
//! Why in the committer: "who was the assignee before, and since when" must
//! change exactly when the assignee changes, in the same atomic batch as the
//! document write that changed it, whoever made that write (a local edit, a
//! merge from a peer, an import). The committer is the one place that sees
//! every write with the stored index beside it.
//!
//! Revocations (`keys::revocation`): the office keeps one record per
//! (previous assignee, document) until that user's laptop confirms it purged
//! the document (`Revoked`), so a laptop offline for a month still gets its
//! `Revoke` when it comes back. A purge removes a document's chunks and
//! index and appends a changelog entry with no heads, so the changelog stays
//! gap-free and `verify` can tell a purged document from a lost one.

use fieldsync_schemas::ChangeOp;

use super::commit::{current_index, DocWrite, Receipt, Request};
use super::records::{encode, ChangeRecord, DocIndex};
use super::{keys, Pending, ReadError, Store, WriteError, WriteSet};
use crate::reassignment::{reassignment, Before};

/// Bookkeeping queued through the committer, so it is ordered with the
/// document writes around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upkeep {
    /// Remove the document from this node.
    Purge { id: String },
    /// Forget that `id` was revoked from `user`.
    ClearRevocation { user: String, id: String },
}

/// Milliseconds since the Unix epoch: the clock reassignments are stamped
/// with, and the one the QUIC driver gives the sync engine.
pub fn now_ms() -> u64 {
    crate::clock::now_ms()
}

/// The index's reassignment fields after `write`, staging the revocation
/// records that go with them (the rule: `crate::reassignment`).
pub(crate) fn reassign(
    current: Option<&DocIndex>,
    write: &DocWrite,
    batch: &mut sled::Batch,
    now_ms: u64,
) -> (Option<String>, u64) {
    let before = current.map(|index| Before {
        assignee: index.assignee.as_deref(),
        previous_assignee: index.previous_assignee.as_deref(),
        reassigned_at_ms: index.reassigned_at_ms,
    });
    let rule = reassignment(
        before,
        write.assignee.as_deref(),
        &write.unassigned_changed,
        now_ms,
    );
    if let Some(assignee) = &rule.unrevoke {
        batch.remove(keys::revocation(assignee, &write.id));
    }
    for (user, at_ms) in &rule.revoke {
        batch.insert(keys::revocation(user, &write.id), &at_ms.to_be_bytes());
    }
    (rule.previous_assignee, rule.reassigned_at_ms)
}

/// Stage a request's upkeep after its writes. Reads every index first, so a
/// read error stages nothing.
pub(crate) fn stage_upkeep(
    upkeep: &[Upkeep],
    data: &sled::Tree,
    (staged, batch, seq): (
        &mut std::collections::HashMap<String, Option<DocIndex>>,
        &mut sled::Batch,
        &mut u64,
    ),
    receipt: &mut Receipt,
) -> Result<(), WriteError> {
    let mut indexes = Vec::with_capacity(upkeep.len());
    for item in upkeep {
        indexes.push(match item {
            Upkeep::Purge { id } => current_index(data, staged, id)?,
            Upkeep::ClearRevocation { .. } => None,
        });
    }
    for (item, index) in upkeep.iter().zip(indexes) {
        match item {
            Upkeep::ClearRevocation { user, id } => batch.remove(keys::revocation(user, id)),
            Upkeep::Purge { id } => {
                // Purging what is not here is done already.
                let Some(index) = index else { continue };
                for number in index.chunk_first..index.chunk_next {
                    batch.remove(keys::chunk(id, number));
                }
                batch.remove(keys::index(id));
                if let Some(previous) = &index.previous_assignee {
                    batch.remove(keys::revocation(previous, id));
                }
                let record = ChangeRecord {
                    collection: index.collection.clone(),
                    id: id.clone(),
                    number: index.number.clone(),
                    op: ChangeOp::Delete,
                    heads: Vec::new(),
                    version: 0,
                };
                batch.insert(&keys::changelog(*seq), encode(&record));
                receipt.seqs.push(*seq);
                receipt.chunk_counts.push(0);
                *seq += 1;
                staged.insert(id.clone(), None);
            }
        }
    }
    Ok(())
}

/// A revocation's value: when it was made, ms as a big-endian u64.
const REVOCATION_VALUE_BYTES: usize = 8;

impl Store {
    /// Documents reassigned away from `user` whose revocation the user's
    /// laptop has not confirmed yet: (id, reassigned_at_ms), at most `limit`.
    pub fn revocations(&self, user: &str, limit: usize) -> Result<Vec<(String, u64)>, ReadError> {
        let prefix = keys::revocation_prefix(user);
        let mut found = Vec::new();
        for item in self.data().scan_prefix(&prefix).take(limit) {
            let (key, value) = item.map_err(|e| ReadError::Io(e.to_string()))?;
            let corrupt = |reason: &str| ReadError::Corrupt {
                id: format!("revocation of {user}"),
                reason: reason.into(),
            };
            let at: [u8; REVOCATION_VALUE_BYTES] = value
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("bad value"))?;
            let id = std::str::from_utf8(&key[prefix.len()..]).map_err(|_| corrupt("bad key"))?;
            found.push((id.to_string(), u64::from_be_bytes(at)));
        }
        Ok(found)
    }

    /// Queue the removal of a document from this node (it was revoked).
    /// Durable, like every write, when the `Pending` resolves.
    pub fn submit_purge(&self, id: &str) -> Result<Pending, WriteError> {
        self.inner.cache.evict(id);
        // Our changes to the document may now live only at a peer: if it
        // comes back without them, writing as the same actor would reuse
        // their sequence numbers (see `Store::actor`).
        self.new_actor();
        self.submit_upkeep(vec![Upkeep::Purge { id: id.to_string() }])
    }

    /// Queue forgetting a revocation the user's laptop has confirmed.
    pub fn submit_clear_revocation(&self, user: &str, id: &str) -> Result<Pending, WriteError> {
        self.submit_upkeep(vec![Upkeep::ClearRevocation {
            user: user.to_string(),
            id: id.to_string(),
        }])
    }

    fn submit_upkeep(&self, upkeep: Vec<Upkeep>) -> Result<Pending, WriteError> {
        self.submit_request(WriteSet::default(), upkeep)
    }

    /// Queue writes and upkeep as one request, leaving the document cache
    /// alone: for the sync adapter, which holds the cached document's lock
    /// and keeps it current itself.
    pub(crate) fn submit_request(
        &self,
        writes: WriteSet,
        upkeep: Vec<Upkeep>,
    ) -> Result<Pending, WriteError> {
        super::record_writes::validate(&writes.records)?;
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let sender = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(WriteError::Closed)?;
        let request = Request {
            writes,
            upkeep,
            reply,
        };
        sender.send(request).map_err(|_| WriteError::Closed)?;
        Ok(Pending { reply: receiver })
    }
}
