//! Who a connecting node is: an office peer from the config, or a node
//! enrolled for a user, or nobody (refused at the handshake).
//!
//! Why a map from node id to user, rebuilt only when a user record was
//! written (the committer's users version): enrollment and `fieldsync user
//! revoke` change the users while the node runs, but reading every user
//! at each handshake made a reconnect storm of N laptops cost N² user
//! decodes (a fifth of the central's CPU priming 200 laptops, issue 18).
//! The committer bumps the version after the flush and before it answers
//! the writer, so a lookup after a revocation returned never uses the map
//! from before it; the driver's `revoke_loop` re-judges open sessions on
//! the same version.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use fieldsync_schemas::Role;

use super::tls::NodeAllowList;
use crate::access::PeerAccess;
use crate::store::{Store, User};

/// Node id → the (unrevoked) user it is enrolled for, as of a users
/// version.
type ByNode = Arc<HashMap<String, User>>;

/// What a node id maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub access: PeerAccess,
    /// The user its node is enrolled for; `None` for configured office peers.
    pub user: Option<String>,
    /// May it pass our changes on to a node we do not reach through it
    /// (its user has another device)? Then an office vouches for what it
    /// sends it (`crate::vouch`). Part of who the peer is: a user's second
    /// enrollment re-opens the sessions of the first device, which then
    /// get vouchers.
    pub relays: bool,
}

impl PeerIdentity {
    /// `office`, or the enrolled user's role.
    pub fn role_name(&self) -> String {
        match &self.access {
            PeerAccess::Office => "office".to_string(),
            PeerAccess::User { role, .. } => role.as_str().to_string(),
        }
    }
}

pub struct Directory {
    store: Store,
    /// Node ids from `[sync] peers`: other office nodes (or, on a laptop,
    /// its central), and other technicians' laptops with their user.
    configured: HashMap<String, Option<String>>,
    /// The committer's users version.
    users_version: watch::Receiver<u64>,
    /// The map and the version it was built at.
    by_node: Mutex<Option<(u64, ByNode)>>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("configured", &self.configured.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// `configured`: node ids from `[sync] peers`, each with the user whose
    /// laptop it is, or `None` for an office node.
    pub fn new(
        store: Store,
        configured: impl IntoIterator<Item = (String, Option<String>)>,
    ) -> Directory {
        Directory {
            users_version: store.watch_users(),
            store,
            configured: configured.into_iter().collect(),
            by_node: Mutex::new(None),
        }
    }

    /// The node-id map, rebuilt from the users when a user was written
    /// since it was built (one read of the users per version).
    fn by_node(&self) -> Result<ByNode, crate::store::ReadError> {
        let version = *self.users_version.borrow();
        let mut cached = self.by_node.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built, map)) = cached.as_ref() {
            if *built == version {
                return Ok(map.clone());
            }
        }
        let mut map = HashMap::new();
        for user in self.store.users()? {
            if user.revoked {
                continue;
            }
            for node_id in &user.node_ids {
                // The first user in id order wins, as the scan did.
                map.entry(node_id.clone()).or_insert_with(|| user.clone());
            }
        }
        let map = Arc::new(map);
        *cached = Some((version, map.clone()));
        Ok(map)
    }

    /// The identity of each of `node_ids` (in order), reading the users
    /// once: re-judging every open session after a revocation costs one
    /// scan of the users, not one per session.
    /// `None` when the users cannot be read: nothing can be judged then,
    /// and no session is closed for it.
    pub fn lookup_many(&self, node_ids: &[String]) -> Option<Vec<Option<PeerIdentity>>> {
        let users = match self.by_node() {
            Ok(users) => users,
            Err(error) => {
                tracing::error!(%error, "cannot read users; open sessions are not re-judged");
                return None;
            }
        };
        Some(
            node_ids
                .iter()
                .map(|node_id| self.identify(node_id, &users))
                .collect(),
        )
    }

    /// The identity of `node_id`, or `None` if it may not connect.
    pub fn lookup(&self, node_id: &str) -> Option<PeerIdentity> {
        if self.configured.contains_key(node_id) {
            return self.identify(node_id, &HashMap::new());
        }
        let users = match self.by_node() {
            Ok(users) => users,
            Err(error) => {
                tracing::error!(%error, "cannot read users; refusing the node");
                return None;
            }
        };
        self.identify(node_id, &users)
    }

    fn identify(&self, node_id: &str, users: &HashMap<String, User>) -> Option<PeerIdentity> {
        // A laptop on the same LAN is a technician, never the office: it
        // gets what its user may see and its changes pass the field rules
        // (a configured peer used to count as office whatever it was,
        // trusted with every document and every change).
        if let Some(user) = self.configured.get(node_id) {
            let access = match user {
                Some(user) => PeerAccess::User {
                    user_id: user.clone(),
                    role: Role::Technician,
                },
                None => PeerAccess::Office,
            };
            return Some(PeerIdentity {
                access,
                relays: user.is_some(),
                user: user.clone(),
            });
        }
        let user = users.get(node_id)?;
        if user.role == Role::Integration {
            // Machine clients use the gateway, never a sync session.
            return None;
        }
        Some(PeerIdentity {
            access: PeerAccess::User {
                user_id: user.id.clone(),
                role: user.role,
            },
            user: Some(user.id.clone()),
            relays: user.node_ids.len() > 1,
        })
    }
}

impl NodeAllowList for Directory {
    fn allows(&self, node_id: &str) -> bool {
        self.lookup(node_id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreConfig, User};

    #[test]
    fn configured_laptops_are_their_users_technicians_never_the_office() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(&dir.path().join("store"), StoreConfig::default()).unwrap();
        store
            .put_user(&User {
                id: "carol".into(),
                role: Role::Technician,
                scopes: vec![],
                secret_hash: None,
                enroll_code_hash: None,
                enroll_code_expires_at_ms: None,
                node_ids: vec!["c".repeat(64)],
                revoked: false,
                created_at: "2026-01-01T00:00:00Z".into(),
            })
            .unwrap();
        let directory = Directory::new(
            store,
            [
                ("a".repeat(64), None),
                ("b".repeat(64), Some("bob".to_string())),
            ],
        );
        let office = directory.lookup(&"a".repeat(64)).unwrap();
        assert_eq!(office.access, PeerAccess::Office);
        assert_eq!(office.user, None);
        let bob = directory.lookup(&"b".repeat(64)).unwrap();
        assert_eq!(
            bob.access,
            PeerAccess::User {
                user_id: "bob".into(),
                role: Role::Technician
            }
        );
        assert!(!bob.access.is_office());
        assert_eq!(bob.role_name(), "technician");
        let carol = directory.lookup(&"c".repeat(64)).unwrap();
        assert_eq!(carol.user.as_deref(), Some("carol"));
        assert!(directory.lookup(&"d".repeat(64)).is_none());
        assert!(!directory.allows(&"d".repeat(64)));
    }

    /// The node-id map is rebuilt after a user write: an enrollment is
    /// seen at the next handshake, a revocation refuses the next one.
    #[test]
    fn a_user_write_is_seen_by_the_next_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(&dir.path().join("store"), StoreConfig::default()).unwrap();
        let directory = Directory::new(store.clone(), []);
        let node = "e".repeat(64);
        assert!(directory.lookup(&node).is_none());
        let mut erin = User {
            id: "erin".into(),
            role: Role::Technician,
            scopes: vec![],
            secret_hash: None,
            enroll_code_hash: None,
            enroll_code_expires_at_ms: None,
            node_ids: vec![node.clone()],
            revoked: false,
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        store.put_user(&erin).unwrap();
        assert_eq!(
            directory.lookup(&node).unwrap().user.as_deref(),
            Some("erin")
        );
        erin.revoked = true;
        store.put_user(&erin).unwrap();
        assert!(directory.lookup(&node).is_none());
        assert_eq!(directory.lookup_many(&[node]).unwrap(), vec![None]);
    }
}
