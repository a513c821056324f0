//! Echo suppression: the heads the peer announced (or primed), by
//! document. Announcing a document back to the peer at exactly those heads
//! would tell it nothing: it is what it just sent us. The outbound side
//! asks [`Echo::peer_has`] before offering a changelog entry.
//!
//! Only an optimisation: forgetting (the map is bounded) costs announcing
//! some documents back, never correctness, since the peer answers an
//! announce of what it holds with nothing.
//!
//! It stops being true once we purge a document: a copy we take in again
//! (from another central) may lack changes the peer holds, and only our
//! announce makes the peer send them (simulator, default world seeds 2327
//! and 9929). The store's actor changes at every purge
//! ([`crate::sync::SyncStore::actor`]), so what was remembered under another
//! actor is forgotten: a purge by any session of this node counts.

use std::collections::HashMap;

use automerge::{ActorId, ChangeHash};

use super::inbound::same_heads;

/// Documents whose announced heads a session remembers, at most.
const PEER_HEADS_REMEMBERED_MAX: usize = 65_536;

/// Heads the peer announced, by document. Bounded by
/// `PEER_HEADS_REMEMBERED_MAX`.
#[derive(Default)]
pub(super) struct Echo {
    peer_heads: HashMap<String, Vec<ChangeHash>>,
    /// The store's actor when `peer_heads` was filled: a purge since (a
    /// new actor) voids all of it.
    actor: Option<ActorId>,
}

impl Echo {
    /// The peer announced `heads` for `id`; `actor` is the store's now.
    pub(super) fn remember(&mut self, id: &str, heads: &[ChangeHash], actor: ActorId) {
        if self.actor.as_ref() != Some(&actor) {
            self.peer_heads.clear();
            self.actor = Some(actor);
        }
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

    /// Did the peer announce exactly these heads for `id`, with no purge
    /// here since (`actor` is the store's now)?
    pub(super) fn peer_has(&self, id: &str, heads: &[ChangeHash], actor: &ActorId) -> bool {
        self.actor.as_ref() == Some(actor)
            && self
                .peer_heads
                .get(id)
                .is_some_and(|theirs| same_heads(theirs, heads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_since_voids_what_the_peer_announced() {
        let (before, after) = (ActorId::random(), ActorId::random());
        let heads = [ChangeHash([7; 32])];
        let mut echo = Echo::default();
        echo.remember("wo-1", &heads, before.clone());
        assert!(echo.peer_has("wo-1", &heads, &before));
        assert!(!echo.peer_has("wo-1", &[ChangeHash([8; 32])], &before));
        // A purge here (a new actor): our copy may have come back without
        // changes the peer holds, so announcing is no longer an echo.
        assert!(!echo.peer_has("wo-1", &heads, &after));
        echo.remember("wo-2", &heads, after.clone());
        assert!(
            !echo.peer_has("wo-1", &heads, &after),
            "forgotten, not revived"
        );
        assert!(echo.peer_has("wo-2", &heads, &after));
    }
}
