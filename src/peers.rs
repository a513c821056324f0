//! The sync driver's per-peer state, as the gateway shows it.
//!
//! Why here: the gateway must not depend on the QUIC driver's types (it
//! takes any `PeerDirectory`), and the driver must not know about HTTP; the
//! binary, which wires both, translates.

use fieldsync_gateway::{PeerDirectory, PeerInfo};
use fieldsync_node::clock::rfc3339_ms;
use fieldsync_node::quic::{PeerMap, PeerState};

/// The driver's peer map behind the gateway's `PeerDirectory` seam.
pub(crate) struct DriverPeers(pub(crate) PeerMap);

impl PeerDirectory for DriverPeers {
    fn peers(&self) -> Vec<PeerInfo> {
        self.0.snapshot().into_iter().map(peer_info).collect()
    }
}

pub(crate) fn peer_info(peer: PeerState) -> PeerInfo {
    PeerInfo {
        node_id: peer.node_id,
        user: peer.user,
        address: peer.address,
        connected: peer.connected,
        last_seen: peer.last_seen_ms.map(rfc3339_ms),
        last_sync: peer.last_sync_ms.map(rfc3339_ms),
        docs_pending: Some(peer.docs_pending_out + peer.docs_pending_in),
    }
}
