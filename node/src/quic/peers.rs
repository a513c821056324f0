//! Per-peer sync progress: last seen, last sync, documents pending each way.
//!
//! Why a shared map and a file: the connection tasks update the map as they
//! go; the gateway (`/api/v1/peers`) reads it in the same process; and
//! `fieldsync status`, a separate process that cannot open the store while
//! the node runs (sled locks it), reads the copy the driver writes to
//! `sync-status.json` in the data directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The file the running driver keeps current in the data directory.
pub const STATUS_FILE: &str = "sync-status.json";
/// Largest status file read back (a few hundred bytes per peer).
pub const STATUS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// What this node knows about one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// The peer's certificate fingerprint.
    pub node_id: String,
    /// The user the peer's node is enrolled for (`None`: an office peer).
    pub user: Option<String>,
    /// `office` or the user's role.
    pub role: String,
    /// The address last dialled or connected from.
    pub address: Option<String>,
    /// A sync session is open now.
    pub connected: bool,
    /// Nothing is in flight either way (as of the last update).
    pub in_sync: bool,
    /// Last frame received, ms since the Unix epoch.
    pub last_seen_ms: Option<u64>,
    /// Last time both directions were caught up, ms since the Unix epoch.
    pub last_sync_ms: Option<u64>,
    /// Documents announced to the peer and not yet acknowledged.
    pub docs_pending_out: u64,
    /// Documents the peer announced that are not merged here yet.
    pub docs_pending_in: u64,
    /// Entries of our changelog the peer has not acknowledged.
    pub changes_unacked: u64,
    pub docs_sent: u64,
    pub docs_received: u64,
    /// Our seq the peer has durably acknowledged.
    pub peer_acked_seq: u64,
    /// The peer's seq we hold durably (our checkpoint for it).
    pub checkpoint_seq: u64,
    /// UDP payload bytes sent in the current (or last) session, everything
    /// QUIC put on the wire included (quinn's connection stats).
    pub udp_bytes_sent: u64,
    /// UDP payload bytes received in the current (or last) session.
    pub udp_bytes_received: u64,
    /// Sessions opened with this peer since the node started.
    pub sessions: u64,
    /// Why the last session or dial ended badly, if it did.
    pub last_error: Option<String>,
}

/// The shared map. Clones share it.
#[derive(Clone, Debug)]
pub struct PeerMap {
    peers: Arc<RwLock<BTreeMap<String, PeerState>>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for PeerMap {
    fn default() -> Self {
        PeerMap {
            peers: Arc::default(),
            version: Arc::new(watch::channel(0).0),
        }
    }
}

impl PeerMap {
    /// Every known peer, by node id.
    pub fn snapshot(&self) -> Vec<PeerState> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, node_id: &str) -> Option<PeerState> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node_id)
            .cloned()
    }

    /// Change one peer's entry (made if missing) and tell subscribers.
    pub fn update(&self, node_id: &str, change: impl FnOnce(&mut PeerState)) {
        {
            let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
            let state = peers
                .entry(node_id.to_string())
                .or_insert_with(|| PeerState {
                    node_id: node_id.to_string(),
                    ..PeerState::default()
                });
            change(state);
        }
        self.version.send_modify(|version| *version += 1);
    }

    /// Changes whenever an entry changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// The content of `sync-status.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFile {
    pub node_id: String,
    /// The process that wrote it (the running node).
    pub pid: u32,
    /// UDP address the node listens on.
    pub listen: String,
    pub updated_at_ms: u64,
    pub peers: Vec<PeerState>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is larger than {STATUS_FILE_BYTES_MAX} bytes")]
    TooLarge { path: String },
    #[error("{path} is not a sync status file: {reason}")]
    Parse { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Write the file atomically (temporary file, then rename).
pub fn write_status_file(dir: &Path, status: &StatusFile) -> Result<(), StatusFileError> {
    let path = dir.join(STATUS_FILE);
    let temporary = dir.join(format!("{STATUS_FILE}.tmp"));
    let error = |e: std::io::Error| StatusFileError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let bytes = serde_json::to_vec_pretty(status).map_err(|e| StatusFileError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(&temporary, bytes).map_err(error)?;
    std::fs::rename(&temporary, &path).map_err(error)
}

/// Read the file the running driver wrote, if there is one.
pub fn read_status_file(dir: &Path) -> Result<Option<StatusFile>, StatusFileError> {
    let path = dir.join(STATUS_FILE);
    let shown = path.display().to_string();
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StatusFileError::Read {
                path: shown,
                reason: e.to_string(),
            })
        }
    };
    if metadata.len() > STATUS_FILE_BYTES_MAX {
        return Err(StatusFileError::TooLarge { path: shown });
    }
    let bytes = std::fs::read(&path).map_err(|e| StatusFileError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StatusFileError::Parse {
            path: shown,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_seen_and_the_file_round_trips() {
        let map = PeerMap::default();
        let changes = map.subscribe();
        map.update("b", |peer| peer.docs_received = 3);
        map.update("a", |peer| peer.connected = true);
        assert!(changes.has_changed().unwrap());
        let ids: Vec<String> = map.snapshot().into_iter().map(|p| p.node_id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(map.get("b").unwrap().docs_received, 3);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_status_file(dir.path()).unwrap(), None);
        let status = StatusFile {
            node_id: "n".into(),
            pid: 1,
            listen: "127.0.0.1:1".into(),
            updated_at_ms: 5,
            peers: map.snapshot(),
        };
        write_status_file(dir.path(), &status).unwrap();
        assert_eq!(read_status_file(dir.path()).unwrap(), Some(status));
        std::fs::write(dir.path().join(STATUS_FILE), "{").unwrap();
        assert!(matches!(
            read_status_file(dir.path()),
            Err(StatusFileError::Parse { .. })
        ));
    }
}
