//! What every handler shares: the node's store, the token key, limits, the
//! peer directory and the metrics handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fieldsync_node::store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::auth::TokenKey;
use crate::config::{ConfigError, GatewayConfig};
use crate::cursor::Cursors;
use crate::delivery::Delivery;
use crate::error::{ApiError, ErrorKind};
use crate::limit::RateLimits;
use crate::peers::{NoPeers, PeerDirectory};

/// The gateway's shared state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    peers: Arc<dyn PeerDirectory>,
    delivery: Arc<Delivery>,
    clock: Clock,
    central: Option<Arc<CentralInfo>>,
}

/// What a technician's laptop needs to enroll with this node, shown by the
/// office console when it issues an enrollment code (as
/// `fieldsync user add` prints it). The binary fills it
/// (`AppState::with_central`); without it the console says it is unknown.
#[derive(Clone, Debug)]
pub struct CentralInfo {
    /// The node's id (its certificate's SHA-256 fingerprint, hex).
    pub node_id: String,
    /// The sync listener (`[sync] listen`).
    pub sync_listen: std::net::SocketAddr,
    /// How long an enrollment code works (`[sync] enroll_code_ttl_ms`).
    pub enroll_code_ttl_ms: u64,
}

/// Where delivery and commands read the time: the node's wall clock, or a
/// test's own (`AppState::with_clock`), so retry times can be checked
/// without sleeping.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

struct Inner {
    store: Store,
    tokens: TokenKey,
    config: GatewayConfig,
    limits: RateLimits,
    /// Bounds concurrent Argon2 checks: each takes ~19 MiB and a core.
    secret_checks: Semaphore,
    metrics: PrometheusHandle,
    /// Flips to true when `run` is told to shut down, so longpolls answer
    /// at once instead of holding the graceful shutdown for their timeout.
    closing: tokio::sync::watch::Sender<bool>,
    /// Serializes user administration (check-then-write of user records).
    user_admin: tokio::sync::Mutex<()>,
    /// (when counted, how many): the document count for `/metrics`.
    doc_count: Mutex<Option<(Instant, u64)>>,
    /// Seals and opens the work-order list's cursors.
    cursors: Cursors,
    /// `metrics_networks`, parsed.
    metrics_networks: Vec<ipnet::IpNet>,
    /// Longpolls on the changes feed held open now, by user.
    longpolls: Arc<Mutex<HashMap<String, usize>>>,
    /// `trusted_proxies`, parsed (`edge.rs`).
    proxies: crate::edge::Proxies,
    /// The TLS configuration `run` serves with, read from `config.tls`.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// One of a user's longpolls on the changes feed: its slot is free again
/// when this is dropped (the answer is sent, or the request dropped).
pub(crate) struct LongpollSlot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for LongpollSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

impl AppState {
    /// Check `config` (and read its TLS certificate and key, if any) and
    /// build the state.
    pub fn new(
        store: Store,
        tokens: TokenKey,
        config: GatewayConfig,
    ) -> Result<AppState, ConfigError> {
        config.validate()?;
        let metrics_networks = config.metrics_nets()?;
        let proxies = crate::edge::Proxies::new(config.trusted_proxy_nets()?);
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::load(files).map_err(|e| ConfigError(e.to_string()))?),
            None => None,
        };
        let settings = crate::delivery::Settings::from_config(&config.delivery)?;
        let delivery = Delivery::new(settings, Arc::new(crate::delivery::SystemLookup))?;
        Ok(AppState {
            delivery: Arc::new(delivery),
            clock: Arc::new(fieldsync_node::clock::now_ms),
            inner: Arc::new(Inner {
                limits: RateLimits::new(&config),
                secret_checks: Semaphore::new(config.secret_checks_concurrent_max),
                metrics: crate::telemetry::install(),
                doc_count: Mutex::new(None),
                cursors: Cursors::new(tokens.cursor_secret()),
                metrics_networks,
                proxies,
                tls,
                longpolls: Arc::new(Mutex::new(HashMap::new())),
                user_admin: tokio::sync::Mutex::new(()),
                closing: tokio::sync::watch::Sender::new(false),
                store,
                tokens,
                config,
            }),
            peers: Arc::new(NoPeers),
            central: None,
        })
    }

    /// Tell the office console this node's sync identity and enrollment
    /// settings (see [`CentralInfo`]).
    pub fn with_central(mut self, central: CentralInfo) -> AppState {
        self.central = Some(Arc::new(central));
        self
    }

    /// This node's sync identity, when the binary told it.
    pub(crate) fn central(&self) -> Option<&CentralInfo> {
        self.central.as_deref()
    }

    /// Show these peers on `/api/v1/peers` and in the UI (the sync driver's
    /// seam; see `peers.rs`).
    pub fn with_peers(mut self, peers: Arc<dyn PeerDirectory>) -> AppState {
        self.peers = peers;
        self
    }

    /// Resolve webhook hosts through `lookup` instead of the system's DNS
    /// (tests: a name that later resolves to a private address). The
    /// SSRF rules apply to whatever it answers.
    pub fn with_lookup(
        mut self,
        lookup: crate::delivery::StaticLookup,
    ) -> Result<AppState, ConfigError> {
        let settings = self.delivery.settings.clone();
        self.delivery = Arc::new(Delivery::new(settings, Arc::new(lookup))?);
        Ok(self)
    }

    /// Read delivery's and commands' time from `clock` (ms since the epoch).
    pub fn with_clock(mut self, clock: Clock) -> AppState {
        self.clock = clock;
        self
    }

    pub(crate) fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Now, in ms since the Unix epoch, by this state's clock.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn tokens(&self) -> &TokenKey {
        &self.inner.tokens
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    pub fn peers(&self) -> &dyn PeerDirectory {
        self.peers.as_ref()
    }

    pub(crate) fn limits(&self) -> &RateLimits {
        &self.inner.limits
    }

    pub(crate) fn secret_checks(&self) -> &Semaphore {
        &self.inner.secret_checks
    }

    pub(crate) fn cursors(&self) -> &Cursors {
        &self.inner.cursors
    }

    pub(crate) fn proxies(&self) -> &crate::edge::Proxies {
        &self.inner.proxies
    }

    /// The TLS configuration to serve with, when `[gateway] tls_cert` and
    /// `tls_key` are set.
    pub(crate) fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.inner.tls.clone()
    }

    /// Whether `address` is in `metrics_networks`.
    pub(crate) fn metrics_network_has(&self, address: std::net::IpAddr) -> bool {
        let address = address.to_canonical();
        self.inner
            .metrics_networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// Take one of `user`'s `longpolls_per_user_max` longpoll slots, or
    /// answer 429: by then at least one of the user's longpolls has ended,
    /// so `Retry-After` is the longest a longpoll waits.
    pub(crate) fn longpoll_slot(&self, user: &str) -> Result<LongpollSlot, ApiError> {
        let max = self.inner.config.longpolls_per_user_max;
        let mut held = self
            .inner
            .longpolls
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = held.entry(user.to_string()).or_insert(0);
        if *count >= max {
            metrics::counter!("fieldsync_http_rate_limited_total").increment(1);
            let wait_s = self.inner.config.longpoll_timeout_ms_max.div_ceil(1000);
            return Err(ApiError {
                retry_after_s: Some(wait_s.max(1)),
                ..ApiError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "this user already holds {max} longpolls on the changes feed, \
                         the most it may; retry when one has answered"
                    ),
                )
            });
        }
        *count += 1;
        Ok(LongpollSlot {
            held: self.inner.longpolls.clone(),
            user: user.to_string(),
        })
    }

    /// Tell waiting longpolls to answer now (called by `run` at shutdown).
    pub fn begin_shutdown(&self) {
        self.inner.closing.send_replace(true);
    }

    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    pub(crate) fn user_admin(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.user_admin
    }

    pub(crate) fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }

    /// Run blocking store work (reads that may load documents, writes that
    /// wait for the durable flush) off the async workers.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(ApiError::internal)?
    }

    /// Documents in the store, recounted at most every `doc_count_cache_ms`.
    pub(crate) async fn doc_count(&self) -> Result<u64, ApiError> {
        let ttl = Duration::from_millis(self.inner.config.doc_count_cache_ms);
        if let Some((at, count)) = *self
            .inner
            .doc_count
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            if at.elapsed() < ttl {
                return Ok(count);
            }
        }
        let count = self
            .blocking(|store| {
                const PAGE_IDS: usize = 4096;
                let mut count = 0u64;
                let mut after: Option<String> = None;
                loop {
                    let ids = store
                        .doc_ids(after.as_deref(), PAGE_IDS)
                        .map_err(ApiError::internal)?;
                    count += ids.len() as u64;
                    match ids.into_iter().next_back() {
                        Some(last) => after = Some(last),
                        None => return Ok(count),
                    }
                }
            })
            .await?;
        *self
            .inner
            .doc_count
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), count));
        Ok(count)
    }
}
