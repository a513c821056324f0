//! Who a connecting node is: an office peer from the config, or a node
//! enrolled for a user, or nobody (refused at the handshake).
//!
//! Why read the users each time: enrollment and `fieldsync user revoke`
//! change them while the node runs, and a handshake is rare enough that a
//! scan of a few hundred user records costs nothing.

use std::collections::HashSet;
use std::fmt;

use fieldsync_schemas::Role;

use super::tls::NodeAllowList;
use crate::access::PeerAccess;
use crate::store::Store;

/// What a node id maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub access: PeerAccess,
    /// The user its node is enrolled for; `None` for configured office peers.
    pub user: Option<String>,
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
    /// its central).
    configured: HashSet<String>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("configured", &self.configured.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(store: Store, configured: impl IntoIterator<Item = String>) -> Directory {
        Directory {
            store,
            configured: configured.into_iter().collect(),
        }
    }

    /// The identity of `node_id`, or `None` if it may not connect.
    pub fn lookup(&self, node_id: &str) -> Option<PeerIdentity> {
        if self.configured.contains(node_id) {
            return Some(PeerIdentity {
                access: PeerAccess::Office,
                user: None,
            });
        }
        let users = match self.store.users() {
            Ok(users) => users,
            Err(error) => {
                tracing::error!(%error, "cannot read users; refusing the node");
                return None;
            }
        };
        let user = users
            .into_iter()
            .find(|user| !user.revoked && user.node_ids.iter().any(|id| id == node_id))?;
        if user.role == Role::Integration {
            // Machine clients use the gateway, never a sync session.
            return None;
        }
        Some(PeerIdentity {
            access: PeerAccess::User {
                user_id: user.id.clone(),
                role: user.role,
            },
            user: Some(user.id),
        })
    }
}

impl NodeAllowList for Directory {
    fn allows(&self, node_id: &str) -> bool {
        self.lookup(node_id).is_some()
    }
}
