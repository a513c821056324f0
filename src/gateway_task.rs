//! Starting the HTTP gateway of a running node (`fieldsync run`, and the
//! demo's central).
//!
//! The gateway's limits come from the node's `[gateway]` section (with its
//! `FIELDSYNC_GATEWAY_*` overrides) through `GatewayConfig::from_node`.
//! With `tls_cert` and `tls_key` it serves HTTPS: relative paths are from
//! the data directory, and both files are read before anything starts, so
//! a missing or broken one stops the node with a message naming it.
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
use fieldsync_node::config::NodeConfig;
use fieldsync_node::quic::PeerMap;
use tokio::net::TcpListener;
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

/// The gateway's configuration from the node's (`GatewayConfig::from_node`),
/// with the TLS files' relative paths taken from the data directory `dir`.
pub(crate) fn gateway_config(config: &NodeConfig, dir: &Path) -> GatewayConfig {
    let mut gateway = GatewayConfig::from_node(config);
    if let Some(files) = &mut gateway.tls {
        files.cert = dir.join(&files.cert);
        files.key = dir.join(&files.key);
    }
    gateway
}

/// [`gateway_config`], checked the way the gateway will check it (its TLS
/// certificate and key read too), so a bad combination or file stops the
/// node before anything starts and names where the values come from.
pub(crate) fn checked_gateway_config(node: &Node) -> anyhow::Result<GatewayConfig> {
    let config = gateway_config(&node.config, &node.dir);
    let fix_hint = || {
        format!(
            "fix `[gateway]` in {} (or the FIELDSYNC_GATEWAY_* variable that sets it)",
            NodeConfig::path_in(&node.dir).display()
        )
    };
    config
        .validate()
        .map_err(|e| CliError::usage(e.to_string()).hint(fix_hint()))?;
    if let Some(files) = &config.tls {
        fieldsync_gateway::tls::load(files).map_err(|e| {
            CliError::usage(format!("cannot serve HTTPS: {e}")).hint(format!(
                "`tls_cert` and `tls_key` must name readable PEM files (a certificate chain \
                 and its private key; relative paths are from {}); {}",
                node.dir.display(),
                fix_hint()
            ))
        })?;
    }
    Ok(config)
}

/// Bind `[gateway] listen` for [`start`].
pub(crate) async fn bind(node: &Node) -> anyhow::Result<TcpListener> {
    let listen = node.config.gateway.listen;
    TcpListener::bind(listen).await.map_err(|e| {
        CliError::failed(format!("cannot start the gateway on {listen}: {e}"))
            .hint(format!(
                "another process may hold TCP {listen}; change `[gateway] listen` in {}",
                fieldsync_node::config::NodeConfig::path_in(&node.dir).display()
            ))
            .into()
    })
}

/// Serve the gateway on `listener` with `config`'s limits (HTTPS when it
/// names a certificate and key), and delivery (webhooks, commands,
/// retention) beside it when `[delivery]` says this node dispatches;
/// returns its URL (`https://` with TLS) and the task that serves both
/// until `stop` turns true. Must be called inside the runtime.
pub(crate) fn start(
    node: &Node,
    config: GatewayConfig,
    listener: TcpListener,
    peers: PeerMap,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(
    String,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
)> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let state = AppState::new(node.store.clone(), token_key(&node.dir)?, config)?
        .with_peers(Arc::new(DriverPeers(peers)))
        .with_central(fieldsync_gateway::state::CentralInfo {
            node_id: node.identity.node_id().to_string(),
            sync_listen: node.config.sync.listen,
            enroll_code_ttl_ms: node.config.sync.enroll_code_ttl_ms,
        });
    let url = format!("{scheme}://{}", listener.local_addr()?);
    tracing::info!(%url, "gateway listening");
    // The same answer the gateway uses to accept hook registrations.
    let delivery = state.config().delivery_runs.then(|| {
        tracing::info!("delivery (webhooks, commands, retention) runs on this node");
        fieldsync_gateway::run_delivery(state.clone(), stop.clone())
    });
    let task = async move {
        let mut stop = stop;
        let serve = fieldsync_gateway::run(listener, state, async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        });
        match delivery {
            Some(delivery) => tokio::join!(serve, delivery).0,
            None => serve.await,
        }
        .context("gateway")
    };
    Ok((url, task))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fieldsync_node::config::NodeRole;
    use fieldsync_schemas::Role;

    use super::*;

    #[test]
    fn the_node_defaults_are_the_gateway_defaults() {
        let config = NodeConfig::new(NodeRole::Central, "c");
        assert_eq!(
            format!("{:?}", gateway_config(&config, Path::new("/data"))),
            format!("{:?}", GatewayConfig::default())
        );
    }

    #[test]
    fn a_limit_from_the_file_and_one_from_the_environment_reach_the_gateway() {
        let path = Path::new("/data/fieldsync.toml");
        let text = "role = \"central\"\nname = \"c\"\n\
                    [gateway]\npage_size_max = 500\ntoken_ttl_s = 60\n\
                    public_base_url = \"https://central.example:8443\"\n";
        let config = NodeConfig::parse(text, path)
            .unwrap()
            .with_env_overrides(path, |var| {
                (var == "FIELDSYNC_GATEWAY_PAGE_SIZE_DEFAULT").then(|| "50".to_string())
            })
            .unwrap();
        let gateway = gateway_config(&config, Path::new("/data"));
        gateway.validate().unwrap();
        assert_eq!(gateway.page_size_max, 500);
        assert_eq!(gateway.page_size_default, 50);
        assert_eq!(gateway.token_ttl_s, 60);
        assert_eq!(
            gateway.public_base_url.as_deref(),
            Some("https://central.example:8443")
        );
        assert_eq!(
            gateway.requests_per_s,
            GatewayConfig::default().requests_per_s
        );
    }

    #[test]
    fn the_grace_period_and_read_grants_reach_the_gateway() {
        let path = Path::new("/data/fieldsync.toml");
        let text = "role = \"central\"\nname = \"c\"\n[sync]\ngrace_ms = 60000\n\
                    [records.read]\nmaterials = [\"technician\"]\n";
        let gateway = gateway_config(&NodeConfig::parse(text, path).unwrap(), Path::new("/data"));
        assert_eq!(gateway.grace_ms, 60_000);
        assert_eq!(
            gateway.read_grants["materials"].readers,
            vec![Role::Operator, Role::Technician]
        );
        assert_eq!(gateway.read_grants.len(), 1);
    }

    #[test]
    fn relative_tls_paths_are_from_the_data_directory() {
        let path = Path::new("/data/fieldsync.toml");
        let text = "role = \"central\"\nname = \"c\"\n[gateway]\n\
                    tls_cert = \"tls/cert.pem\"\ntls_key = \"/etc/fieldsync/key.pem\"\n";
        let gateway = gateway_config(&NodeConfig::parse(text, path).unwrap(), Path::new("/data"));
        let files = gateway.tls.expect("tls");
        assert_eq!(files.cert, Path::new("/data/tls/cert.pem"));
        assert_eq!(files.key, Path::new("/etc/fieldsync/key.pem"));
    }
}
