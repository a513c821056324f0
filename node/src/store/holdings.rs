//! The holdings digests a sync session compares after the hellos
//! (protocol 5, `Frame::Holding`): the digest of every work order held
//! here, and per user the digest of the work orders assigned to them.
//!
//! Why in memory, moved by the committer: a device's hello must cost O(1),
//! not O(documents), and an office's expectation for a user must not be a
//! scan of every work order. So both are computed once when the store
//! opens (one pass over the index) and then moved by the committer for
//! each document a flushed group created, purged or reassigned: the same
//! place that writes the index, so they never disagree with it for long.
//! They are hints: a mismatch only costs the device's list.
//!
//! Beside each user's digest the ids themselves are kept: after a device's
//! list, an office re-offers what is assigned to the user here and missing
//! there (a device that purged a document on another central's word, which
//! this central's checkpoint is past). Memory: one id per assigned work
//! order.

use std::collections::{BTreeSet, HashMap};

use fieldsync_schemas::sync_frame::{holdings_toggle, Hash};
use fieldsync_schemas::Collection;

use super::keys;
use super::records::{decode, DocIndex};

#[derive(Debug, Default)]
pub(crate) struct Holdings {
    held: Hash,
    assigned: HashMap<String, Hash>,
    assigned_ids: HashMap<String, BTreeSet<String>>,
}

impl Holdings {
    /// One pass over the index.
    pub(crate) fn scan(data: &sled::Tree) -> Result<Holdings, String> {
        let mut holdings = Holdings::default();
        for item in data.scan_prefix([keys::INDEX]) {
            let (key, value) = item.map_err(|e| e.to_string())?;
            let id = std::str::from_utf8(&key[1..]).map_err(|_| "bad index key".to_string())?;
            let index: DocIndex = decode(&value).map_err(|e| format!("index of `{id}`: {e}"))?;
            holdings.moved(id, None, Some(&index));
        }
        Ok(holdings)
    }

    /// Document `id` went from `before` to `after` (`None`: not held).
    pub(crate) fn moved(&mut self, id: &str, before: Option<&DocIndex>, after: Option<&DocIndex>) {
        let (before, after) = (work_order(before), work_order(after));
        if before.is_some() != after.is_some() {
            holdings_toggle(&mut self.held, id);
        }
        let assignee = |index: Option<&DocIndex>| index.and_then(|index| index.assignee.clone());
        let (from, to) = (assignee(before), assignee(after));
        if from == to {
            return;
        }
        for user in [from, to].into_iter().flatten() {
            let digest = self.assigned.entry(user.clone()).or_default();
            holdings_toggle(digest, id);
            if *digest == [0; 32] {
                self.assigned.remove(&user);
            }
            let ids = self.assigned_ids.entry(user.clone()).or_default();
            if !ids.remove(id) {
                ids.insert(id.to_string());
            }
            if ids.is_empty() {
                self.assigned_ids.remove(&user);
            }
        }
    }

    /// Up to `limit` ids of the work orders assigned to `user`, in id order.
    pub(crate) fn assigned_ids(&self, user: &str, limit: usize) -> Vec<String> {
        self.assigned_ids
            .get(user)
            .into_iter()
            .flatten()
            .take(limit)
            .cloned()
            .collect()
    }

    pub(crate) fn held(&self) -> Hash {
        self.held
    }

    pub(crate) fn assigned(&self, user: &str) -> Hash {
        self.assigned.get(user).copied().unwrap_or_default()
    }
}

fn work_order(index: Option<&DocIndex>) -> Option<&DocIndex> {
    index.filter(|index| index.collection == Collection::WorkOrders)
}
