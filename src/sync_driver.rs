//! Starting the QUIC sync driver inside `fieldsync run`.
//!
//! Why a separate file: `node.rs` composes the node's tasks; this is the
//! one place that turns the `[sync]` config and the node identity into a
//! running driver, and it keeps the driver's status file in the data
//! directory so `fieldsync status` can show per-peer progress while the
//! node holds the store.

use std::future::Future;

use fieldsync_node::quic::{Driver, DriverConfig, PeerMap};
use tokio::sync::watch;

use crate::error::CliError;
use crate::node::Node;

/// Bind the driver and return its peer map and the task that runs it until
/// `stop` turns true. Must be called inside the runtime.
pub(crate) fn start(
    node: &Node,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(
    PeerMap,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
)> {
    let mut config = DriverConfig::new(&node.config, &node.identity)?;
    config.status_dir = Some(node.dir.clone());
    let listen = config.listen;
    let driver = Driver::bind(config, node.store.clone()).map_err(|e| {
        CliError::failed(format!("cannot start sync: {e}")).hint(format!(
            "another process may hold UDP {listen}; change `[sync] listen` in {}",
            fieldsync_node::config::NodeConfig::path_in(&node.dir).display()
        ))
    })?;
    let peers = driver.peers();
    let task = async move {
        let mut stop = stop;
        driver
            .run(async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .await?;
        Ok(())
    };
    Ok((peers, task))
}
