//! Starting the HTTP gateway inside `fieldsync run`.
//!
//! Why the token key lives in the data directory: tokens are signed by the
//! gateway; a key made fresh at every start would sign everyone out on each
//! restart. It is 32 random bytes in `gateway.key`, readable only by the
//! node's user, made on first start.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use fieldsync_gateway::{AppState, GatewayConfig, TokenKey};
use fieldsync_node::quic::PeerMap;
use tokio::sync::watch;

use crate::error::CliError;
use crate::node::Node;
use crate::peers::DriverPeers;

const TOKEN_KEY_FILE: &str = "gateway.key";
const TOKEN_KEY_BYTES: usize = 32;

fn token_key(dir: &Path) -> anyhow::Result<TokenKey> {
    let path = dir.join(TOKEN_KEY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; TOKEN_KEY_BYTES] = rand::random();
            write_private(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            bytes.to_vec()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    TokenKey::from_bytes(&bytes).map_err(|e| {
        CliError::failed(format!("{} is not a usable token key: {e}", path.display()))
            .hint("delete it to make a new one (everyone signs in again)")
            .into()
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Bind the gateway's listener and return the task that serves it until
/// `stop` turns true. Must be called inside the runtime.
pub(crate) async fn start(
    node: &Node,
    peers: PeerMap,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let listen = node.config.gateway.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        CliError::failed(format!("cannot start the gateway on {listen}: {e}")).hint(format!(
            "another process may hold TCP {listen}; change `[gateway] listen` in {}",
            fieldsync_node::config::NodeConfig::path_in(&node.dir).display()
        ))
    })?;
    let state = AppState::new(
        node.store.clone(),
        token_key(&node.dir)?,
        GatewayConfig::default(),
    )?
    .with_peers(Arc::new(DriverPeers(peers)));
    tracing::info!(url = %format!("http://{}", listener.local_addr()?), "gateway listening");
    Ok(async move {
        let mut stop = stop;
        fieldsync_gateway::run(listener, state, async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        })
        .await
        .context("gateway")
    })
}
