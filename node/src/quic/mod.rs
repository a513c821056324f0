//! The QUIC driver: the sans-IO sync engine given a network.
//!
//! Why a thin driver: every sync decision lives in `crate::sync`, which the
//! simulator drives too. This module only does what a socket needs: TLS
//! with pinned node ids (`tls.rs`), length-prefixed frames on one
//! bidirectional stream per session (`framing.rs`), one task per connection
//! pumping a `Session` against the sled store (`conn.rs`), redialling
//! configured peers with jittered backoff (`backoff.rs`), enrollment of new
//! laptops (`enroll.rs`), and per-peer progress (`peers.rs`).
//!
//! Who connects to whom: a node listens on `[sync] listen` and dials every
//! `[sync] peers` entry (a laptop dials its central; centrals dial each
//! other). A dialled peer is pinned by the node id in the config; an
//! incoming certificate must belong to a configured peer or to a node
//! enrolled for a non-revoked user, or the handshake fails. A node keeps
//! one session per peer: if both sides dial at once, the connection dialled
//! by the smaller node id wins; a reconnect from the same side replaces a
//! stale connection (a laptop that roamed to a new address).
//!
//! Field links: QUIC keep-alives hold NAT bindings open and detect a dead
//! link within the idle timeout; the session then ends, its queued writes
//! still land (the committer owns them), and the dialler tries again after
//! a jittered, growing delay. Nothing is acknowledged before it is on disk,
//! so a link or a process dying mid-sync loses nothing: the next session
//! resumes from the durable checkpoints.
//!
//! Usage: `Driver::bind(config, store)` (bind to port 0 in tests, read
//! `local_addr`), then `driver.run(shutdown).await`.

mod backoff;
mod conn;
mod directory;
pub mod enroll;
pub mod framing;
pub mod peers;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::{mpsc, watch, Semaphore};

pub use backoff::Backoff;
pub use directory::{Directory, PeerIdentity};
pub use enroll::{enroll, EnrollError, Enrolled};
pub use peers::{read_status_file, PeerMap, PeerState, StatusFile, STATUS_FILE};
pub use tls::{Credentials, LinkTiming, ALPN_ENROLL, ALPN_SYNC};

use crate::access::ReadGrants;
use crate::config::{NodeConfig, NodeRole, PeerConfig};
use crate::identity::Identity;
use crate::store::sync_adapter::SyncShared;
use crate::store::{now_ms, Store};
use crate::sync::SessionConfig;
use crate::vouch::Signer;
use conn::{close, CLOSE_DUPLICATE, CLOSE_NOT_ALLOWED};

/// How long stopping waits for sessions to say goodbye.
const STOP_GRACE_MS: u64 = 3_000;
/// The status file is rewritten at most this often.
const STATUS_WRITE_INTERVAL_MS: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {address}: {reason}")]
    Bind { address: String, reason: String },
    #[error("the node identity is unusable: {0}")]
    Identity(String),
}

/// Everything the driver needs, usually made by [`DriverConfig::new`].
pub struct DriverConfig {
    pub node_id: String,
    pub credentials: Credentials,
    /// Is this an office (central) node?
    pub office: bool,
    pub listen: SocketAddr,
    pub peers: Vec<PeerConfig>,
    pub timing: LinkTiming,
    pub reconnect_delay_ms_min: u64,
    pub reconnect_delay_ms_max: u64,
    /// The engine's tunables; `node_id` and `office` are set from above.
    pub session: SessionConfig,
    pub connections_max: usize,
    /// Where to keep `sync-status.json` (the data directory), if anywhere.
    pub status_dir: Option<PathBuf>,
    /// Read grants from `[records.read]`, by collection: what data
    /// collections without grants set over the API are served by.
    pub read_grants: BTreeMap<String, ReadGrants>,
}

impl DriverConfig {
    /// The driver configuration of a node: its `[sync]` section and identity.
    pub fn new(config: &NodeConfig, identity: &Identity) -> Result<DriverConfig, DriverError> {
        let key = identity
            .key_der()
            .map_err(|e| DriverError::Identity(e.to_string()))?;
        let office = config.role == NodeRole::Central;
        let signer = office.then(|| office_signer(&key));
        Ok(DriverConfig {
            node_id: identity.node_id().to_string(),
            credentials: Credentials {
                cert: identity.cert_der().clone(),
                key,
            },
            office,
            listen: config.sync.listen,
            peers: config.sync.peers.clone(),
            timing: LinkTiming {
                keep_alive_ms: config.sync.keep_alive_ms,
                idle_timeout_ms: config.sync.idle_timeout_ms,
            },
            reconnect_delay_ms_min: config.sync.reconnect_delay_ms_min,
            reconnect_delay_ms_max: config.sync.reconnect_delay_ms_max,
            session: SessionConfig {
                grace_ms: config.sync.grace_ms,
                signer,
                // No office peer configured: nothing but this office can
                // have created a work order.
                sole_office: office && config.sync.peers.iter().all(|peer| peer.user.is_some()),
                ..session_config(identity.node_id(), office)
            },
            connections_max: config.sync.connections_max,
            status_dir: None,
            read_grants: config.read_grants(),
        })
    }
}

/// Pages in flight per session. Deeper than the engine's default: on a
/// disk whose flush takes milliseconds, four 512-document pages leave the
/// link idle while the receiver waits for its flushes (W1 at N = 10,000
/// went from ~3 s to ~1.5 s). Every node runs this driver, so sender and
/// receiver agree on the window.
pub const PAGES_IN_FLIGHT_MAX: usize = 8;

/// An office's signing key (`crate::vouch`): it follows from the node key,
/// so it is the same on every start and its vouchers stay valid.
pub fn office_signer(key: &rustls::pki_types::PrivateKeyDer<'_>) -> Arc<Signer> {
    Arc::new(Signer::derive(key.secret_der()))
}

/// The engine's tunables as the driver runs them.
pub fn session_config(node_id: &str, office: bool) -> SessionConfig {
    let mut session = SessionConfig::new(node_id, office);
    session.pages_in_flight_max = PAGES_IN_FLIGHT_MAX;
    session
}

/// One open session, for the one-session-per-peer rule.
struct Active {
    generation: u64,
    connection: quinn::Connection,
    dialed_by_us: bool,
    /// Who the peer was when the session started: a session whose peer
    /// is no longer this (revoked, another role) is closed.
    identity: PeerIdentity,
}

/// What every connection task shares.
pub(crate) struct Context {
    node_id: String,
    office: bool,
    store: Store,
    pub(crate) shared: Arc<SyncShared>,
    directory: Arc<Directory>,
    pub(crate) peers: PeerMap,
    pub(crate) session: SessionConfig,
    pub(crate) stop: watch::Receiver<bool>,
    active: Mutex<HashMap<String, Active>>,
    generation: AtomicU64,
    enroll_guard: Arc<enroll::EnrollGuard>,
    /// Held by every connection task; `run` waits for all to drop.
    alive: mpsc::Sender<()>,
}

impl Context {
    /// Admit a session with `peer`, or say why not (see the module docs).
    fn register(
        &self,
        peer: &str,
        connection: &quinn::Connection,
        dialed_by_us: bool,
        identity: &PeerIdentity,
    ) -> Result<u64, &'static str> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = active.get(peer) {
            let same_direction = existing.dialed_by_us == dialed_by_us;
            let ours_wins = self.node_id.as_str() < peer;
            // Between simultaneous connections, the one dialled by the
            // smaller node id stays.
            let new_wins = same_direction || dialed_by_us == ours_wins;
            if !new_wins {
                return Err("already connected");
            }
            close(
                &existing.connection,
                CLOSE_DUPLICATE,
                "replaced by a newer connection",
            );
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        active.insert(
            peer.to_string(),
            Active {
                generation,
                connection: connection.clone(),
                dialed_by_us,
                identity: identity.clone(),
            },
        );
        Ok(generation)
    }

    fn unregister(&self, peer: &str, generation: u64) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.get(peer).is_some_and(|a| a.generation == generation) {
            active.remove(peer);
        }
    }

    fn is_connected(&self, peer: &str) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(peer)
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// A bound, not yet running, sync driver.
pub struct Driver {
    endpoint: quinn::Endpoint,
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    alive: mpsc::Receiver<()>,
    config: DriverConfig,
}

impl Driver {
    /// Bind the UDP socket and prepare; must be called inside a tokio
    /// runtime. Binding port 0 picks a free port (see [`Driver::local_addr`]).
    pub fn bind(config: DriverConfig, store: Store) -> Result<Driver, DriverError> {
        Driver::bind_with_peers(config, store, PeerMap::default())
    }

    /// [`Driver::bind`], keeping per-peer state in `peers`: a node whose
    /// sync stops and starts again (the demo's offline laptop) keeps one
    /// map, which its gateway and field app read.
    pub fn bind_with_peers(
        config: DriverConfig,
        store: Store,
        peers: PeerMap,
    ) -> Result<Driver, DriverError> {
        let socket = std::net::UdpSocket::bind(config.listen).map_err(|e| DriverError::Bind {
            address: config.listen.to_string(),
            reason: e.to_string(),
        })?;
        Driver::with_socket(config, socket, store, peers)
    }

    /// [`Driver::bind_with_peers`] on a socket bound beforehand (its
    /// address, not `config.listen`, is where the driver listens): two
    /// nodes started together can each be told the other's address
    /// before either runs (the demo's office pair).
    pub fn with_socket(
        config: DriverConfig,
        socket: std::net::UdpSocket,
        store: Store,
        peers: PeerMap,
    ) -> Result<Driver, DriverError> {
        let mut session = config.session.clone();
        session.node_id = config.node_id.clone();
        session.office = config.office;
        let directory = Arc::new(Directory::new(
            store.clone(),
            config
                .peers
                .iter()
                .map(|peer| (peer.node_id.clone(), peer.user.clone())),
        ));
        let server = tls::server_config(&config.credentials, directory.clone(), config.timing)?;
        let bind_error = |reason: String| DriverError::Bind {
            address: config.listen.to_string(),
            reason,
        };
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_error("not inside a tokio runtime".into()))?;
        let endpoint = quinn::Endpoint::new(
            tls::endpoint_config(&config.credentials),
            Some(server),
            socket,
            runtime,
        )
        .map_err(|e| bind_error(e.to_string()))?;
        let (stop, stop_rx) = watch::channel(false);
        let (alive_tx, alive) = mpsc::channel(1);
        let ctx = Arc::new(Context {
            node_id: config.node_id.clone(),
            office: config.office,
            shared: SyncShared::with_read_grants(store.clone(), config.read_grants.clone()),
            store,
            directory,
            peers,
            session,
            stop: stop_rx,
            active: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            enroll_guard: Arc::new(enroll::EnrollGuard::default()),
            alive: alive_tx,
        });
        Ok(Driver {
            endpoint,
            ctx,
            stop,
            alive,
            config,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap_or(self.config.listen)
    }

    /// The live per-peer progress (for the gateway and tests).
    pub fn peers(&self) -> PeerMap {
        self.ctx.peers.clone()
    }

    /// Serve and dial until `shutdown` resolves, then close every session
    /// politely and stop.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DriverError> {
        let Driver {
            endpoint,
            ctx,
            stop,
            mut alive,
            config,
        } = self;
        let local = endpoint.local_addr().unwrap_or(config.listen);
        tracing::info!(listen = %local, node_id = %ctx.node_id, peers = config.peers.len(), "sync listening");
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(accept_loop(
            endpoint.clone(),
            ctx.clone(),
            config.connections_max,
        ));
        for peer in &config.peers {
            let client = tls::client_config(&config.credentials, &peer.node_id, config.timing)?;
            tasks.spawn(dial_loop(
                endpoint.clone(),
                ctx.clone(),
                peer.clone(),
                client,
                (config.reconnect_delay_ms_min, config.reconnect_delay_ms_max),
            ));
        }
        if let Some(dir) = config.status_dir.clone() {
            tasks.spawn(status_loop(dir, ctx.clone(), local));
        }
        tasks.spawn(revoke_loop(ctx.clone()));
        shutdown.await;
        tracing::info!("sync stopping");
        let _ = stop.send(true);
        let (peers, node_id) = (ctx.peers.clone(), ctx.node_id.clone());
        drop(ctx);
        let grace = Duration::from_millis(STOP_GRACE_MS);
        let _ = tokio::time::timeout(grace, async {
            while tasks.join_next().await.is_some() {}
            // Every connection task holds a sender; `None` once all ended.
            let _ = alive.recv().await;
        })
        .await;
        tasks.abort_all();
        endpoint.close(0u32.into(), b"node stopping");
        let _ = tokio::time::timeout(grace, endpoint.wait_idle()).await;
        if let Some(dir) = &config.status_dir {
            write_status(dir, &node_id, local, &peers);
        }
        Ok(())
    }
}

/// Enrollment connections served at once, at most. They have their own
/// budget so that anonymous enrollment attempts never take the slots of
/// enrolled nodes' sync sessions.
pub const ENROLL_CONNECTIONS_MAX: usize = 4;

/// The connection budgets of an accepting node.
struct Slots {
    /// Handshakes in progress (their protocol is not known yet).
    handshakes: Arc<Semaphore>,
    sync: Arc<Semaphore>,
    enroll: Arc<Semaphore>,
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<Context>, connections_max: usize) {
    let slots = Arc::new(Slots {
        handshakes: Arc::new(Semaphore::new(connections_max + ENROLL_CONNECTIONS_MAX)),
        sync: Arc::new(Semaphore::new(connections_max)),
        enroll: Arc::new(Semaphore::new(ENROLL_CONNECTIONS_MAX)),
    });
    let mut stop = ctx.stop.clone();
    loop {
        let incoming = tokio::select! {
            _ = stop.changed() => return,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { return };
        let Ok(handshake) = slots.handshakes.clone().try_acquire_owned() else {
            tracing::warn!(remote = %incoming.remote_address(), connections_max, "too many handshakes; refusing");
            incoming.refuse();
            continue;
        };
        let (ctx, slots) = (ctx.clone(), slots.clone());
        tokio::spawn(async move {
            let _alive = ctx.alive.clone();
            serve_incoming(ctx, incoming, handshake, &slots).await;
        });
    }
}

/// Close every open session whose peer the directory no longer knows as
/// it did when the session started (a user revoked over the API, a role
/// changed), as soon as the user record is durable: the peer is otherwise
/// looked up only at connect.
async fn revoke_loop(ctx: Arc<Context>) {
    let mut users = ctx.store.watch_users();
    let mut stop = ctx.stop.clone();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            changed = users.changed() => if changed.is_err() { return },
        }
        let open: Vec<(String, PeerIdentity, quinn::Connection)> = ctx
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(peer, active)| {
                (
                    peer.clone(),
                    active.identity.clone(),
                    active.connection.clone(),
                )
            })
            .collect();
        let ids: Vec<String> = open.iter().map(|(peer, ..)| peer.clone()).collect();
        let directory = ctx.directory.clone();
        let Ok(Some(now)) = tokio::task::spawn_blocking(move || directory.lookup_many(&ids)).await
        else {
            continue;
        };
        for ((peer, was, connection), now) in open.iter().zip(now) {
            if now.as_ref() != Some(was) {
                tracing::info!(peer = %peer, user = ?was.user, "closing the session: the peer's user was revoked or changed");
                close(connection, CLOSE_NOT_ALLOWED, "access revoked");
            }
        }
    }
}

async fn serve_incoming(
    ctx: Arc<Context>,
    incoming: quinn::Incoming,
    handshake: tokio::sync::OwnedSemaphorePermit,
    slots: &Slots,
) {
    let address = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::info!(remote = %address, %error, "handshake refused or failed");
            return;
        }
    };
    drop(handshake);
    let alpn = tls::negotiated_alpn(&connection);
    let budget = match alpn.as_deref() {
        Some(ALPN_ENROLL) => &slots.enroll,
        _ => &slots.sync,
    };
    let Ok(_slot) = budget.clone().try_acquire_owned() else {
        tracing::warn!(remote = %address, alpn = ?alpn, "too many connections of this kind; closing");
        close(
            &connection,
            CLOSE_NOT_ALLOWED,
            "too many connections; try again later",
        );
        return;
    };
    match alpn.as_deref() {
        Some(ALPN_ENROLL) if ctx.office => {
            let store = ctx.store.clone();
            let serial = ctx.enroll_guard.clone();
            if let Err(error) = enroll::serve(connection, store, ctx.node_id.clone(), serial).await
            {
                tracing::warn!(remote = %address, %error, "enrollment failed");
            }
        }
        Some(ALPN_ENROLL) => close(
            &connection,
            CLOSE_NOT_ALLOWED,
            "only a central enrolls nodes",
        ),
        Some(ALPN_SYNC) => {
            let Some(peer_id) = tls::peer_node_id(&connection) else {
                tracing::warn!(remote = %address, "a sync connection without a certificate; closing");
                close(
                    &connection,
                    CLOSE_NOT_ALLOWED,
                    "a sync session needs an enrolled certificate",
                );
                return;
            };
            // Checked again: the user may have been revoked since the handshake.
            let Some(identity) = ctx.directory.lookup(&peer_id) else {
                close(
                    &connection,
                    CLOSE_NOT_ALLOWED,
                    "this node is not enrolled here",
                );
                return;
            };
            serve_sync(&ctx, connection, peer_id, identity, false, address).await;
        }
        _ => close(
            &connection,
            CLOSE_NOT_ALLOWED,
            "unknown application protocol",
        ),
    }
}

/// Register, run and unregister one session. Returns whether it reached
/// `Ready` (the link and the peer worked).
async fn serve_sync(
    ctx: &Arc<Context>,
    connection: quinn::Connection,
    peer_id: String,
    identity: PeerIdentity,
    dialed: bool,
    address: SocketAddr,
) -> bool {
    let generation = match ctx.register(&peer_id, &connection, dialed, &identity) {
        Ok(generation) => generation,
        Err(reason) => {
            tracing::debug!(peer = %peer_id, reason, "dropping a duplicate connection");
            close(&connection, CLOSE_DUPLICATE, reason);
            return false;
        }
    };
    let reached_ready = conn::run(
        ctx.clone(),
        connection,
        peer_id.clone(),
        identity,
        dialed,
        address,
    )
    .await;
    ctx.unregister(&peer_id, generation);
    reached_ready
}

async fn dial_loop(
    endpoint: quinn::Endpoint,
    ctx: Arc<Context>,
    peer: PeerConfig,
    client: quinn::ClientConfig,
    (delay_ms_min, delay_ms_max): (u64, u64),
) {
    let _alive = ctx.alive.clone();
    let mut backoff = Backoff::new(delay_ms_min, delay_ms_max);
    let mut stop = ctx.stop.clone();
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    while !ctx.stopping() {
        let worked = if ctx.is_connected(&peer.node_id) {
            // The peer dialled us; nothing to do while that session lives.
            backoff.reset();
            false
        } else {
            dial_once(&endpoint, &ctx, &peer, &client).await
        };
        if worked {
            backoff.reset();
        }
        let delay_ms = backoff.next_delay_ms(&mut rng);
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
    }
}

/// Dial `peer` once and run the session to its end.
async fn dial_once(
    endpoint: &quinn::Endpoint,
    ctx: &Arc<Context>,
    peer: &PeerConfig,
    client: &quinn::ClientConfig,
) -> bool {
    let failed = |reason: String| {
        tracing::info!(peer = %peer.node_id, address = %peer.address, %reason, "cannot reach peer");
        ctx.peers.update(&peer.node_id, |state| {
            state.address = Some(peer.address.clone());
            state.last_error = Some(reason);
        });
        false
    };
    let address = match tokio::net::lookup_host(peer.address.as_str()).await {
        Ok(mut addresses) => match addresses.next() {
            Some(address) => address,
            None => return failed(format!("`{}` resolves to no address", peer.address)),
        },
        Err(error) => return failed(format!("cannot resolve `{}`: {error}", peer.address)),
    };
    let connecting = match endpoint.connect_with(client.clone(), address, tls::SERVER_NAME) {
        Ok(connecting) => connecting,
        Err(error) => return failed(error.to_string()),
    };
    let mut stop = ctx.stop.clone();
    let connection = tokio::select! {
        _ = stop.changed() => return false,
        connection = connecting => match connection {
            Ok(connection) => connection,
            Err(error) => return failed(error.to_string()),
        },
    };
    let Some(identity) = ctx.directory.lookup(&peer.node_id) else {
        close(&connection, CLOSE_NOT_ALLOWED, "not configured");
        return false;
    };
    serve_sync(
        ctx,
        connection,
        peer.node_id.clone(),
        identity,
        true,
        address,
    )
    .await
}

/// Keep `sync-status.json` current while the driver runs.
async fn status_loop(dir: PathBuf, ctx: Arc<Context>, listen: SocketAddr) {
    let mut changes = ctx.peers.subscribe();
    let mut stop = ctx.stop.clone();
    write_status(&dir, &ctx.node_id, listen, &ctx.peers);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_millis(STATUS_WRITE_INTERVAL_MS)) => {}
        }
        write_status(&dir, &ctx.node_id, listen, &ctx.peers);
    }
}

fn write_status(dir: &std::path::Path, node_id: &str, listen: SocketAddr, peers: &PeerMap) {
    let status = StatusFile {
        node_id: node_id.to_string(),
        pid: std::process::id(),
        listen: listen.to_string(),
        updated_at_ms: now_ms(),
        peers: peers.snapshot(),
    };
    if let Err(error) = peers::write_status_file(dir, &status) {
        tracing::warn!(%error, "cannot write the sync status file");
    }
}

#[cfg(test)]
mod tests;
