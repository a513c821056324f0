//! Starting the field app (`fieldsync_gateway::field`) of a running field
//! node: the technician's local web app.
//!
//! It runs when `[field_app]` says so (by default on field nodes) and the
//! laptop is enrolled (`enrollment.json` names the technician it acts
//! as); an unenrolled laptop has nobody to act for, so it is skipped with
//! a log line, not an error. The listen address is checked (loopback
//! unless `allow_remote`) and bound before anything else starts, so a bad
//! one stops the node with a message naming the key. The key lives in
//! `field-app.key` and the open URL is written to `field-app.url` (both
//! 0600) in the data directory.

use std::sync::Arc;

use anyhow::Context as _;
use fieldsync_gateway::field::{self, FieldKey, FieldOptions, FieldState, SyncPeer, SyncSource};
use fieldsync_node::config::NodeConfig;
use fieldsync_node::quic::PeerMap;
use fieldsync_schemas::Role;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::CliError;
use crate::node::Node;

/// The driver's peer map as the field app's sync bar reads it, with the
/// store's last seq: changes made offline wait against what each peer
/// acknowledged last (the driver counts only while a session is open).
struct DriverSync(PeerMap, fieldsync_node::store::Store);

impl SyncSource for DriverSync {
    fn peers(&self) -> Vec<SyncPeer> {
        let last_seq = self.1.last_seq();
        self.0
            .snapshot()
            .into_iter()
            .map(|peer| SyncPeer {
                name: peer.address.clone().unwrap_or_else(|| {
                    format!(
                        "central {}",
                        peer.node_id.chars().take(12).collect::<String>()
                    )
                }),
                office: peer.user.is_none(),
                connected: peer.connected,
                last_sync_ms: peer.last_sync_ms,
                changes_unacked: (peer.sessions > 0)
                    .then(|| last_seq.saturating_sub(peer.peer_acked_seq)),
                docs_pending_out: peer.docs_pending_out,
            })
            .collect()
    }
}

/// A field app ready to serve: bound, with its key and technician.
pub(crate) struct Prepared {
    listener: TcpListener,
    state: (fieldsync_node::store::Store, FieldKey, FieldOptions),
}

impl Prepared {
    /// The task serving the app until `stop` turns true.
    pub(crate) async fn start(
        self,
        peers: PeerMap,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let address = self.listener.local_addr()?;
        let (store, key, options) = self.state;
        let sync = Arc::new(DriverSync(peers, store.clone()));
        let state = FieldState::new(store, key, options, address, sync);
        field::run(self.listener, state, async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        })
        .await
        .context("field app")
    }
}

/// Bind and prepare the field app if this node serves it: its open URL
/// (written to `field-app.url` too) and what starts it; `None` when it
/// does not run here. `listener`, if given, replaces `[field_app] listen`.
pub(crate) async fn prepare(
    node: &Node,
    listener: Option<TcpListener>,
) -> anyhow::Result<Option<(String, Prepared)>> {
    let config = &node.config.field_app;
    if !config.runs_on(node.config.role) {
        return Ok(None);
    }
    let Some(enrolled) = crate::cli::enroll::enrollment(&node.dir)? else {
        tracing::info!("field app not started: this laptop is not enrolled (`fieldsync enroll`)");
        return Ok(None);
    };
    if enrolled.role != Role::Technician {
        tracing::warn!(role = %enrolled.role.as_str(), "field app not started: enrolled user is not a technician");
        return Ok(None);
    }
    let fix_hint = || {
        format!(
            "fix `[field_app] listen` in {}",
            NodeConfig::path_in(&node.dir).display()
        )
    };
    let listener = match listener {
        Some(listener) => {
            field::check_listen(listener.local_addr()?, config.allow_remote)
                .map_err(|e| CliError::usage(e.to_string()).hint(fix_hint()))?;
            listener
        }
        None => field::bind(config.listen, config.allow_remote)
            .await
            .map_err(|e| CliError::usage(e.to_string()).hint(fix_hint()))?,
    };
    let key = FieldKey::load_or_create(&node.dir)?;
    let url = field::open_url(listener.local_addr()?, &key);
    field::write_url_file(&node.dir, &url)?;
    tracing::info!(
        address = %listener.local_addr()?,
        user = %enrolled.user,
        url_file = %node.dir.join(field::URL_FILE).display(),
        "field app listening; its open URL is in the url file"
    );
    let options = FieldOptions {
        user: enrolled.user,
        grace_ms: node.config.sync.grace_ms,
        allow_remote: config.allow_remote,
    };
    let state = (node.store.clone(), key, options);
    Ok(Some((url, Prepared { listener, state })))
}
