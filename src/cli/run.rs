//! `fieldsync run`: open the node and serve until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::Context as _;

use crate::node::Node;

pub(crate) fn run(dir: &Path) -> anyhow::Result<()> {
    let node = Node::open(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fieldsync-node")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        node.run(shutdown).await
    })
}

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    Ok(async move {
        let ctrl_c = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        tokio::select! {
            () = ctrl_c => tracing::info!("received Ctrl-C"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
        #[cfg(not(unix))]
        {
            ctrl_c.await;
            tracing::info!("received Ctrl-C");
        }
    })
}
