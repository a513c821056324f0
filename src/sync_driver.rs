//! Starting the QUIC sync driver of a running node.
//!
//! Why a separate file: `node.rs` composes the node's tasks; this is the
//! one place that turns the `[sync]` config and the node identity into a
//! running driver, and it keeps the driver's status file in the data
//! directory so `fieldsync status` can show per-peer progress while the
//! node holds the store.
//!
//! Why the driver has a stop switch of its own besides the node's: the
//! demo takes a laptop offline by stopping its sync alone, while its store
//! and the rest of the node keep running (`RunningNode::stop_sync`).

use std::future::Future;
use std::net::SocketAddr;

use fieldsync_node::quic::{Driver, DriverConfig, PeerMap};
use tokio::sync::{oneshot, watch};

use crate::error::CliError;
use crate::node::Node;

/// A started driver: what others need from it, and its own stop switch.
pub(crate) struct SyncHandle {
    /// Per-peer state, which the gateway's `/api/v1/peers` shows.
    pub(crate) peers: PeerMap,
    /// The UDP address the driver listens on (the real port when
    /// `[sync] listen` asks for port 0).
    pub(crate) address: SocketAddr,
    stop: watch::Sender<bool>,
    /// Resolves (with an error: its sender is dropped) when the task ends.
    ended: oneshot::Receiver<()>,
}

impl SyncHandle {
    /// Stop this driver only, and wait until it has closed its connections.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.ended.await;
    }
}

/// Bind the driver (on `socket` if given, else on `[sync] listen`) and
/// return its handle and the task that runs it until `node_stop` or the
/// handle's own stop turns true. Must be called inside the runtime.
pub(crate) fn start(
    node: &Node,
    socket: Option<std::net::UdpSocket>,
    node_stop: watch::Receiver<bool>,
    peers: PeerMap,
) -> anyhow::Result<(
    SyncHandle,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
)> {
    let mut config = DriverConfig::new(&node.config, &node.identity)?;
    config.status_dir = Some(node.dir.clone());
    let listen = config.listen;
    let bound = match socket {
        Some(socket) => Driver::with_socket(config, socket, node.store.clone(), peers),
        None => Driver::bind_with_peers(config, node.store.clone(), peers),
    };
    let driver = bound.map_err(|e| {
        CliError::failed(format!("cannot start sync: {e}")).hint(format!(
            "another process may hold UDP {listen}; change `[sync] listen` in {}",
            fieldsync_node::config::NodeConfig::path_in(&node.dir).display()
        ))
    })?;
    let (stop, own_stop) = watch::channel(false);
    let (ended_tx, ended) = oneshot::channel();
    let handle = SyncHandle {
        peers: driver.peers(),
        address: driver.local_addr(),
        stop,
        ended,
    };
    let task = async move {
        // Dropped when the task ends, however it ends.
        let _ended = ended_tx;
        let (mut node_stop, mut own_stop) = (node_stop, own_stop);
        let stopped = async move {
            tokio::select! {
                _ = node_stop.wait_for(|stopping| *stopping) => {}
                _ = own_stop.wait_for(|stopping| *stopping) => {}
            }
        };
        driver.run(stopped).await?;
        Ok(())
    };
    Ok((handle, task))
}
