//! The running node: its config, identity and store, and the tasks that
//! serve them.
//!
//! Why a struct that owns everything: `fieldsync run` is the composition
//! root. Today it opens the store and waits for a signal; the sync driver
//! (QUIC, pinned by node id) and the gateway (HTTP) each become one more
//! task spawned in [`Node::run`], sharing the `Store` handle and stopped by
//! the same shutdown signal, after which the store is closed last so every
//! acknowledged write is on disk when the process exits.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldsync_node::config::NodeConfig;
use fieldsync_node::identity::Identity;
use fieldsync_node::store::{OpenError, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::CliError;

/// How long tasks get to finish after the shutdown signal.
const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// The store-activity log line is written at most this often.
const ACTIVITY_LOG_INTERVAL_MS: u64 = 10_000;
/// Document ids read per page when counting.
const COUNT_PAGE_DOCS: usize = 4096;
/// Directory levels walked when measuring the store's size on disk.
const SIZE_WALK_DEPTH_MAX: usize = 8;

pub(crate) struct Node {
    pub(crate) dir: PathBuf,
    pub(crate) config: NodeConfig,
    pub(crate) identity: Identity,
    pub(crate) store: Store,
}

/// Fails unless `dir` holds a node: a clear "run init" error rather than
/// three different "file not found" ones.
pub(crate) fn require_node_dir(dir: &Path) -> anyhow::Result<()> {
    let hint = format!(
        "create one with `fieldsync init --dir {}`, or point --dir (or FIELDSYNC_DIR) \
         at an existing node",
        dir.display()
    );
    if !dir.exists() {
        return Err(CliError::usage(format!(
            "no fieldsync node at {}: the directory does not exist",
            dir.display()
        ))
        .hint(hint)
        .into());
    }
    if !dir.is_dir() {
        return Err(
            CliError::usage(format!("{} is not a directory", dir.display()))
                .hint(hint)
                .into(),
        );
    }
    let has_any = [
        fieldsync_node::config::CONFIG_FILE,
        "FORMAT",
        fieldsync_node::identity::KEY_FILE,
    ]
    .iter()
    .any(|name| dir.join(name).exists());
    if !has_any {
        return Err(CliError::usage(format!(
            "no fieldsync node at {}: the directory holds no fieldsync.toml, FORMAT or node.key",
            dir.display()
        ))
        .hint(hint)
        .into());
    }
    Ok(())
}

impl Node {
    /// Open the node in `dir`: config, identity, then the store (which
    /// refuses a newer format before touching anything).
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Node> {
        require_node_dir(dir)?;
        let config = NodeConfig::load(dir)?;
        let identity = Identity::load(dir)?;
        let store = Store::open(dir, config.store_config()).map_err(|e| match &e {
            // sled holds an exclusive file lock while a store is open.
            OpenError::Io { reason, .. } if reason.contains("lock") => anyhow::Error::new(
                CliError::failed(format!(
                    "the store at {} is in use by another fieldsync process",
                    dir.display()
                ))
                .hint(
                    "stop the other process (e.g. `fieldsync run`) first, or run this \
                         command on another --dir",
                ),
            ),
            _ => anyhow::Error::new(e),
        })?;
        Ok(Node {
            dir: dir.to_path_buf(),
            config,
            identity,
            store,
        })
    }

    /// Serve until `shutdown` resolves (or a task fails), then stop every
    /// task and close the store.
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
        tasks.spawn(log_store_activity(self.store.clone(), stop_rx.clone()));
        // Sync over QUIC; its peer map is what the gateway's `/api/v1/peers`
        // shows (`crate::peers::DriverPeers`).
        let (sync_peers, sync_task) = crate::sync_driver::start(&self, stop_rx.clone())?;
        tasks.spawn(sync_task);
        tasks.spawn(crate::priming::show(sync_peers.clone(), stop_rx.clone()));
        if self.config.gateway.enabled {
            tasks.spawn(crate::gateway_task::start(&self, sync_peers, stop_rx.clone()).await?);
        }
        tracing::info!(
            node_id = self.identity.node_id(),
            role = %self.config.role,
            name = %self.config.name,
            dir = %self.dir.display(),
            last_seq = self.store.last_seq(),
            "node running; stop it with Ctrl-C or SIGTERM"
        );
        let mut failure = None;
        tokio::select! {
            () = shutdown => tracing::info!("shutting down"),
            Some(ended) = tasks.join_next() => {
                failure = Some(task_failure(ended));
            }
        }
        let _ = stop_tx.send(true);
        let grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
        let drained = tokio::time::timeout(grace, async {
            while let Some(ended) = tasks.join_next().await {
                // Ending with Ok is what a task should do once told to stop.
                if !matches!(ended, Ok(Ok(()))) {
                    if let Err(e) = task_failure(ended) {
                        tracing::error!("task failed while stopping: {e:#}");
                    }
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = SHUTDOWN_GRACE_MS,
                "tasks still running; aborting them"
            );
            tasks.abort_all();
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .context("closing the store")?;
        tracing::info!(
            last_seq = self.store.last_seq(),
            "store closed cleanly; node stopped"
        );
        failure.unwrap_or(Ok(()))
    }

    /// Documents in the store (a key scan; nothing is loaded).
    pub(crate) fn document_count(&self) -> anyhow::Result<u64> {
        count_documents(&self.store)
    }

    /// Bytes the data directory's store takes on disk.
    pub(crate) fn store_bytes_on_disk(&self) -> u64 {
        bytes_on_disk(&self.dir, 0)
    }
}

fn task_failure(ended: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match ended {
        Ok(Ok(())) => Err(anyhow::anyhow!("a node task stopped unexpectedly")),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::anyhow!("a node task failed: {e}")),
    }
}

/// Count documents by paging through the index keys.
pub(crate) fn count_documents(store: &Store) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let mut after: Option<String> = None;
    loop {
        let ids = store
            .doc_ids(after.as_deref(), COUNT_PAGE_DOCS)
            .context("listing documents")?;
        count += ids.len() as u64;
        match ids.into_iter().last() {
            Some(last) => after = Some(last),
            None => return Ok(count),
        }
    }
}

fn bytes_on_disk(path: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() && depth < SIZE_WALK_DEPTH_MAX {
            total += bytes_on_disk(&entry.path(), depth + 1);
        } else if metadata.is_file() {
            total += metadata.len();
        }
    }
    total
}

/// Log how far the store has come, at most every 10 s while it changes, so
/// an operator watching `fieldsync run` sees writes (imports, and later
/// sync and gateway traffic) arrive.
async fn log_store_activity(store: Store, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut seq = store.watch_seq();
    let mut logged_seq = *seq.borrow();
    let mut logged_at = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            changed = seq.changed() => {
                if changed.is_err() {
                    // The store is closing.
                    return Ok(());
                }
            }
        }
        let interval = Duration::from_millis(ACTIVITY_LOG_INTERVAL_MS);
        let elapsed = logged_at.elapsed();
        if elapsed < interval {
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                () = tokio::time::sleep(interval - elapsed) => {}
            }
        }
        let now_seq = *seq.borrow_and_update();
        tracing::info!(
            last_seq = now_seq,
            changes = now_seq.saturating_sub(logged_seq),
            seconds = logged_at.elapsed().as_secs(),
            "store activity"
        );
        logged_seq = now_seq;
        logged_at = Instant::now();
    }
}
