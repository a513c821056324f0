//! The running node: its config, identity and store, and the tasks that
//! serve them.
//!
//! Why one struct that owns everything and one function that starts it:
//! `fieldsync run` is the composition root, and `fieldsync demo` runs
//! three nodes in one process. Both start a node through [`start_node`]
//! (the sync driver with its status file, the store activity log, the
//! gateway when enabled, the field app on an enrolled field node) and stop it through [`RunningNode::stop`], which
//! closes the store last so every acknowledged write is on disk when the
//! process exits. A task a node gains later is added there once, and both
//! get it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldsync_node::config::NodeConfig;
use fieldsync_node::identity::Identity;
use fieldsync_node::quic::PeerMap;
use fieldsync_node::store::{OpenError, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::CliError;
use crate::sync_driver::SyncHandle;

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
        let config = NodeConfig::load_with_env(dir)?;
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

    /// Create a node in `dir` the way `fieldsync init` lays it out: the
    /// commented config, the key pair and certificate, and the store in
    /// `dir` itself, so `fieldsync run --dir` can open it later.
    pub(crate) fn create(dir: &Path, config: NodeConfig) -> anyhow::Result<Node> {
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::failed(format!("cannot create {}: {e}", dir.display()))
                .hint("check the parent directory's permissions")
        })?;
        let identity = Identity::generate(&config.name)?;
        config.write_new(dir)?;
        identity.save(dir)?;
        let store = Store::init(dir, config.store_config())?;
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
        let options = StartOptions {
            show_priming: true,
            ..StartOptions::default()
        };
        let mut running = start_node(&self, options).await?;
        if let Some(url) = running.field_app_url() {
            // On the terminal only: logs may be kept where others read them.
            println!("Field app: open {url}");
        }
        tracing::info!(
            node_id = self.identity.node_id(),
            role = %self.config.role,
            name = %self.config.name,
            dir = %self.dir.display(),
            last_seq = self.store.last_seq(),
            "node running; stop it with Ctrl-C or SIGTERM"
        );
        let failure = tokio::select! {
            () = shutdown => {
                tracing::info!("shutting down");
                None
            }
            ended = running.task_ended() => Some(ended),
        };
        running.stop().await?;
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

/// What [`start_node`] starts besides the sync driver and the store
/// activity log. The gateway runs when `[gateway] enabled` says so.
#[derive(Default)]
pub(crate) struct StartOptions {
    /// Serve the gateway on this listener instead of binding
    /// `[gateway] listen` (the demo binds its own port first, so that a
    /// busy port is reported before any node is created).
    pub(crate) gateway_listener: Option<TcpListener>,
    /// Serve the field app on this listener instead of binding
    /// `[field_app] listen` (tests bind port 0).
    pub(crate) field_app_listener: Option<TcpListener>,
    /// Run sync on this UDP socket instead of binding `[sync] listen`
    /// (the demo's office pair binds both centrals' sockets first, so
    /// each is told the other's address before either starts).
    pub(crate) sync_socket: Option<std::net::UdpSocket>,
    /// Draw the priming progress bars on the terminal (`fieldsync run`).
    pub(crate) show_priming: bool,
}

/// A node's running tasks, and the switches that stop them.
pub(crate) struct RunningNode {
    store: Store,
    sync_address: SocketAddr,
    gateway_url: Option<String>,
    /// The field app's open URL (with its key), when it runs.
    field_app_url: Option<String>,
    /// Turned true to stop every task.
    stop: watch::Sender<bool>,
    /// The sync driver, while it runs.
    sync: Option<SyncHandle>,
    /// Per-peer state, kept across a sync restart (the gateway and the
    /// field app read this map).
    peers: PeerMap,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// Start a node's tasks: the sync driver (writing its status file into the
/// data directory), the store activity log, the gateway when it is enabled
/// and, if asked, the priming progress. Both `fieldsync run` and
/// `fieldsync demo` start nodes here; background tasks join here too. Must
/// be called inside the runtime.
pub(crate) async fn start_node(node: &Node, options: StartOptions) -> anyhow::Result<RunningNode> {
    // A bad limit stops the node before anything binds.
    let gateway_config = if node.config.gateway.enabled {
        Some(crate::gateway_task::checked_gateway_config(node)?)
    } else {
        None
    };
    // A field app listen address it may not use stops the node too.
    let field_app = crate::field_app_task::prepare(node, options.field_app_listener).await?;
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    tasks.spawn(log_store_activity(node.store.clone(), stop_rx.clone()));
    let (sync, sync_task) = crate::sync_driver::start(
        node,
        options.sync_socket,
        stop_rx.clone(),
        PeerMap::default(),
    )?;
    tasks.spawn(sync_task);
    let peers = sync.peers.clone();
    if options.show_priming {
        tasks.spawn(crate::priming::show(peers.clone(), stop_rx.clone()));
    }
    let field_app_url = match field_app {
        Some((url, prepared)) => {
            tasks.spawn(prepared.start(peers.clone(), stop_rx.clone()));
            Some(url)
        }
        None => None,
    };
    let mut gateway_url = None;
    if let Some(config) = gateway_config {
        let listener = match options.gateway_listener {
            Some(listener) => listener,
            None => crate::gateway_task::bind(node).await?,
        };
        let (url, task) = crate::gateway_task::start(node, config, listener, peers, stop_rx)?;
        tasks.spawn(task);
        gateway_url = Some(url);
    }
    Ok(RunningNode {
        store: node.store.clone(),
        sync_address: sync.address,
        gateway_url,
        field_app_url,
        stop,
        peers: sync.peers.clone(),
        sync: Some(sync),
        tasks,
    })
}

impl RunningNode {
    /// The UDP address sync listens on.
    pub(crate) fn sync_address(&self) -> SocketAddr {
        self.sync_address
    }

    /// `http://host:port` of the gateway, when it runs.
    pub(crate) fn gateway_url(&self) -> Option<&str> {
        self.gateway_url.as_deref()
    }

    /// The field app's open URL, `http://127.0.0.1:PORT/open?key=...`,
    /// when it runs (an enrolled field node).
    pub(crate) fn field_app_url(&self) -> Option<&str> {
        self.field_app_url.as_deref()
    }

    /// Take the node offline: stop its sync driver only, and wait until
    /// its connections are closed. The store and other tasks keep running.
    pub(crate) async fn stop_sync(&mut self) {
        if let Some(sync) = self.sync.take() {
            sync.stop().await;
        }
    }

    /// Bring the node back online after [`RunningNode::stop_sync`]: a new
    /// driver on `[sync] listen`, with the same peer map (the gateway and
    /// the field app see it come back).
    pub(crate) fn start_sync(&mut self, node: &Node) -> anyhow::Result<()> {
        if self.sync.is_some() {
            return Ok(());
        }
        let (sync, task) =
            crate::sync_driver::start(node, None, self.stop.subscribe(), self.peers.clone())?;
        self.sync_address = sync.address;
        self.sync = Some(sync);
        self.tasks.spawn(task);
        Ok(())
    }

    /// Resolves when a task ends by itself, which a task of a running node
    /// must not do: its error, or "stopped unexpectedly".
    pub(crate) async fn task_ended(&mut self) -> anyhow::Result<()> {
        match self.tasks.join_next().await {
            Some(ended) => task_failure(ended),
            None => std::future::pending().await,
        }
    }

    /// Stop every task (aborting those still running after
    /// `SHUTDOWN_GRACE_MS`), then close the store, so every acknowledged
    /// write is on disk when this returns.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
        let tasks = &mut self.tasks;
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
            self.tasks.abort_all();
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .context("closing the store")
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
