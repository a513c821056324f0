//! Echo suppression: the heads the peer announced (or primed), by
//! document. Announcing a document back to the peer at exactly those heads
//! would tell it nothing: it is what it just sent us. The outbound side
//! asks [`Echo::peer_has`] before offering a changelog entry.
//!
//! Only an optimisation: forgetting (the map is bounded) costs announcing
//! some documents back, never correctness, since the peer answers an
//! announce of what it holds with nothing.

use std::collections::HashMap;

use automerge::ChangeHash;

use super::inbound::same_heads;

/// Documents whose announced heads a session remembers, at most.
const PEER_HEADS_REMEMBERED_MAX: usize = 65_536;

/// Heads the peer announced, by document. Bounded by
/// `PEER_HEADS_REMEMBERED_MAX`.
#[derive(Default)]
pub(super) struct Echo {
    peer_heads: HashMap<String, Vec<ChangeHash>>,
}

impl Echo {
    pub(super) fn remember(&mut self, id: &str, heads: &[ChangeHash]) {
        if self.peer_heads.len() >= PEER_HEADS_REMEMBERED_MAX && !self.peer_heads.contains_key(id) {
            // Forgetting only costs announcing some documents back.
            self.peer_heads.clear();
        }
        self.peer_heads.insert(id.to_string(), heads.to_vec());
    }

    /// The peer no longer holds `id` (it purged it).
    pub(super) fn forget(&mut self, id: &str) {
        self.peer_heads.remove(id);
    }

    /// Did the peer announce exactly these heads for `id`?
    pub(super) fn peer_has(&self, id: &str, heads: &[ChangeHash]) -> bool {
        self.peer_heads
            .get(id)
            .is_some_and(|theirs| same_heads(theirs, heads))
    }
}
