//! What the gateway shows about sync peers: a seam the sync driver fills.
//!
//! Why a trait: the gateway must not know how sync works, only what to show
//! (`GET /api/v1/peers`, the UI's peers page). The QUIC driver implements
//! [`PeerDirectory`] (or updates a shared [`PeerTable`]) and hands it to
//! `AppState::with_peers`. Until it does, the list is empty.

use std::sync::RwLock;

use serde::Serialize;

/// One peer as the gateway shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PeerInfo {
    /// Certificate fingerprint (SHA-256, hex).
    pub node_id: String,
    /// The user the node is enrolled for, when known.
    pub user: Option<String>,
    /// Last address the peer was reached at or connected from.
    pub address: Option<String>,
    /// Whether a sync session is open now.
    pub connected: bool,
    /// RFC 3339 time of the last packet from the peer.
    pub last_seen: Option<String>,
    /// RFC 3339 time of the last completed sync round.
    pub last_sync: Option<String>,
    /// Documents changed here and not yet acknowledged by the peer.
    pub docs_pending: Option<u64>,
}

/// Anything that can list the node's peers.
pub trait PeerDirectory: Send + Sync + 'static {
    /// The peers, in a stable order (by node id).
    fn peers(&self) -> Vec<PeerInfo>;
}

/// No sync running: no peers.
#[derive(Debug, Default)]
pub struct NoPeers;

impl PeerDirectory for NoPeers {
    fn peers(&self) -> Vec<PeerInfo> {
        Vec::new()
    }
}

/// A ready-made directory a driver can update as sessions come and go.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: RwLock<Vec<PeerInfo>>,
}

impl PeerTable {
    /// Insert or replace the entry with this node id.
    pub fn upsert(&self, peer: PeerInfo) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        match peers.binary_search_by(|held| held.node_id.cmp(&peer.node_id)) {
            Ok(at) => peers[at] = peer,
            Err(at) => peers.insert(at, peer),
        }
    }

    pub fn remove(&self, node_id: &str) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        peers.retain(|held| held.node_id != node_id);
    }
}

impl PeerDirectory for PeerTable {
    fn peers(&self) -> Vec<PeerInfo> {
        self.peers.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
