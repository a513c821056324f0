//! The node's configuration file, `<data dir>/fieldsync.toml`.
//!
//! Why TOML with `deny_unknown_fields` everywhere: the file is edited by
//! hand, and a misspelt key that is silently ignored leaves the node running
//! on a default nobody chose. Every section refuses keys it does not know,
//! and the error names the key, the line and the file.
//!
//! Why `fieldsync init` writes every key with a comment: the file is the
//! documentation an operator sees first; it must say what each knob does
//! and in which unit, without a trip to the README.
//!
//! Sections: top-level `role` and `name`; `[store]` (the store's tunables);
//! `[sync]` (QUIC listener, peers, keep-alive and reconnect timing, the
//! reassignment grace period) and `[gateway]` (HTTP listener and every
//! limit the gateway enforces), which the sync and gateway work read;
//! `[records]` (who may read each data collection, besides operators),
//! which both the sync driver and the gateway read; `[log]`.
//!
//! Why environment overrides for `[gateway]` (`FIELDSYNC_GATEWAY_<KEY>`,
//! e.g. `FIELDSYNC_GATEWAY_PAGE_SIZE_MAX=500`): a central runs in a
//! container or under systemd, where changing a limit for one deployment
//! is an environment variable, not an edit of the data directory. They
//! apply only when a node starts ([`NodeConfig::load_with_env`]); commands
//! that rewrite the file (`enroll`) read it without them, so a variable is
//! never written into the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fieldsync_schemas::collection::{validate_collection_name, CollectionKind};
use fieldsync_schemas::Role;
use serde::{Deserialize, Serialize};

use crate::access::ReadGrants;
pub use crate::delivery_config::{DeliveryConfig, RetryRuleConfig};
pub use crate::ingest_config::IngestConfig;

/// How long a one-time enrollment code works by default: 72 hours.
pub const ENROLL_CODE_TTL_MS_DEFAULT: u64 = 72 * 3600 * 1000;
use crate::identity;
use crate::store::StoreConfig;

/// The config file's name inside the data directory.
pub const CONFIG_FILE: &str = "fieldsync.toml";
/// Largest config file read. A real one is a few KiB even with many peers.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Longest node name accepted.
pub const NODE_NAME_CHARS_MAX: usize = 64;
/// Most peers one node may list.
pub const PEERS_MAX: usize = 1024;
/// Highest `sync.connections_max` accepted: each connection holds a task,
/// a session and QUIC buffers (~100 KiB idle, more while priming).
pub const SYNC_CONNECTIONS_MAX: usize = 65_536;
/// Most collections `[records.read]` may list.
pub const RECORDS_READ_COLLECTIONS_MAX: usize = 1024;

/// What this node is in the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A central office node: creates work orders, runs the gateway,
    /// accepts technicians' laptops.
    Central,
    /// A technician's laptop: holds only the work orders its user may see.
    Field,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Central => "central",
            NodeRole::Field => "field",
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

/// The whole `fieldsync.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub role: NodeRole,
    /// A name for humans (logs, the peers list); peers trust node ids.
    pub name: String,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub records: RecordsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub field_app: FieldAppConfig,
}

/// `[store]`: see [`StoreConfig`] for what each knob does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub cache_docs_max: usize,
    pub sled_cache_bytes: u64,
    pub queue_write_sets_max: usize,
    pub compact_chunks_max: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        let defaults = StoreConfig::default();
        StoreSection {
            cache_docs_max: defaults.cache_docs_max,
            sled_cache_bytes: defaults.sled_cache_bytes,
            queue_write_sets_max: defaults.queue_write_sets_max,
            compact_chunks_max: defaults.compact_chunks_max,
        }
    }
}

/// `[sync]`: node-to-node sync over QUIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// UDP address the QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// Peers this node dials. Each is pinned by its node id.
    pub peers: Vec<PeerConfig>,
    /// QUIC keep-alive interval: keeps NAT bindings open on field links.
    pub keep_alive_ms: u64,
    /// A connection silent this long is dropped (then redialled).
    pub idle_timeout_ms: u64,
    /// First delay before redialling a peer after a failure.
    pub reconnect_delay_ms_min: u64,
    /// The backoff (with jitter) never waits longer than this.
    pub reconnect_delay_ms_max: u64,
    /// Peer connections served at once, at most; more are refused at the
    /// handshake (and redial later). A central needs one per laptop online
    /// at the same time, plus other centrals.
    pub connections_max: usize,
    /// After a work order is reassigned, its previous assignee keeps seeing
    /// it (and its pending changes are accepted) this long; then the office
    /// revokes it from that laptop.
    pub grace_ms: u64,
    /// A one-time enrollment code stops working this long after `user
    /// add` issued it.
    pub enroll_code_ttl_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7400)),
            peers: Vec::new(),
            keep_alive_ms: 5_000,
            idle_timeout_ms: 30_000,
            reconnect_delay_ms_min: 500,
            reconnect_delay_ms_max: 60_000,
            connections_max: 1_024,
            grace_ms: crate::access::GRACE_MS_DEFAULT,
            enroll_code_ttl_ms: ENROLL_CODE_TTL_MS_DEFAULT,
        }
    }
}

/// One `[[sync.peers]]` entry (or an inline `{ address, node_id }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// `host:port` to dial, e.g. `central.example.com:7400`.
    pub address: String,
    /// The peer's certificate fingerprint (its `fieldsync status` shows it).
    pub node_id: String,
    /// Another technician's laptop (same LAN), for this user: it gets only
    /// what that user may see, and its changes pass the field rules. Absent:
    /// an office node (a laptop's central, or another central), trusted
    /// with everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `[gateway]`: the HTTP front door (central nodes) and its limits.
///
/// The limits and their defaults live here, the one place: the gateway
/// depends on this crate and builds its `GatewayConfig` from this section
/// (`GatewayConfig::from_node`, and its `Default` from this `Default`). The
/// gateway checks the limits against each other when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub enabled: bool,
    /// TCP address the HTTP gateway listens on.
    pub listen: SocketAddr,
    pub body_bytes_max: usize,
    pub request_timeout_ms: u64,
    pub longpoll_timeout_ms_max: u64,
    pub longpoll_timeout_ms_default: u64,
    pub page_size_max: usize,
    pub page_size_default: usize,
    pub scan_entries_max: usize,
    pub token_ttl_s: u64,
    pub requests_per_s: u32,
    pub request_burst: u32,
    pub token_attempts_per_minute: u32,
    pub secret_checks_concurrent_max: usize,
    pub rate_limit_keys_max: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<String>,
    pub cookie_secure: bool,
    pub doc_count_cache_ms: u64,
    /// Networks (CIDR) that may read `/metrics` without an operator's
    /// token; the gateway parses them when it starts.
    pub metrics_networks: Vec<String>,
    pub longpolls_per_user_max: usize,
    /// HTTPS: the PEM certificate chain and its private key (both or
    /// neither; a relative path is from the data directory). The gateway
    /// reads them when it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Proxies (CIDR) whose `X-Forwarded-For` and `X-Forwarded-Proto` the
    /// gateway believes; the gateway parses them when it starts.
    pub trusted_proxies: Vec<String>,
    /// Work-order numbers made here read `{prefix}-{year}-{sequence}`
    /// (`numbering.rs`); two centrals need two prefixes.
    pub work_order_prefix: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_bytes_max: 256 * 1024,
            request_timeout_ms: 30_000,
            longpoll_timeout_ms_max: 25_000,
            longpoll_timeout_ms_default: 20_000,
            page_size_max: 1000,
            page_size_default: 100,
            scan_entries_max: 10_000,
            token_ttl_s: 900,
            requests_per_s: 200,
            request_burst: 400,
            token_attempts_per_minute: 30,
            secret_checks_concurrent_max: 2,
            rate_limit_keys_max: 10_000,
            public_base_url: None,
            cookie_secure: false,
            doc_count_cache_ms: 10_000,
            metrics_networks: vec!["127.0.0.1/32".into(), "::1/128".into()],
            longpolls_per_user_max: 4,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            work_order_prefix: "WO".into(),
        }
    }
}

/// Every key of `[gateway]`, each overridable by `FIELDSYNC_GATEWAY_<KEY>`.
pub const GATEWAY_KEYS: [&str; 24] = [
    "enabled",
    "listen",
    "body_bytes_max",
    "request_timeout_ms",
    "longpoll_timeout_ms_max",
    "longpoll_timeout_ms_default",
    "page_size_max",
    "page_size_default",
    "scan_entries_max",
    "token_ttl_s",
    "requests_per_s",
    "request_burst",
    "token_attempts_per_minute",
    "secret_checks_concurrent_max",
    "rate_limit_keys_max",
    "public_base_url",
    "cookie_secure",
    "doc_count_cache_ms",
    "metrics_networks",
    "longpolls_per_user_max",
    "tls_cert",
    "tls_key",
    "trusted_proxies",
    "work_order_prefix",
];

/// `[gateway]` keys that may be absent (no value); an empty
/// `FIELDSYNC_GATEWAY_<KEY>` removes them.
const GATEWAY_OPTIONAL_KEYS: [&str; 3] = ["public_base_url", "tls_cert", "tls_key"];

/// The environment variable that overrides `[gateway] key`.
pub fn gateway_env_var(key: &str) -> String {
    format!("FIELDSYNC_GATEWAY_{}", key.to_ascii_uppercase())
}

/// `[field_app]`: the technician's local web app, which `fieldsync run`
/// serves on a field node (`fieldsync_gateway::field`).
///
/// Why loopback only unless `allow_remote`: the app's one credential is a
/// key the node hands the laptop's own browser; on another interface
/// anyone on the network could try it, so that takes an explicit choice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldAppConfig {
    /// Serve the app; absent: on field nodes yes, on centrals no
    /// ([`FieldAppConfig::runs_on`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// TCP address the app listens on (a loopback address).
    pub listen: SocketAddr,
    /// Let `listen` be an address other machines can reach.
    pub allow_remote: bool,
}

impl Default for FieldAppConfig {
    fn default() -> Self {
        FieldAppConfig {
            enabled: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            allow_remote: false,
        }
    }
}

impl FieldAppConfig {
    /// Whether a node of `role` serves the app: as `enabled` says, else
    /// on field nodes only.
    pub fn runs_on(&self, role: NodeRole) -> bool {
        self.enabled.unwrap_or(role == NodeRole::Field)
    }
}

/// `[records]`: plain versioned records (reference tables).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConfig {
    /// `[records.read]`: per data collection, the roles that may read it
    /// besides operators (who always may): `"technician"`, `"integration"`
    /// (which also needs the `records:read` scope). A listed collection
    /// reads exactly what is listed (`[]`: operators only); one not listed
    /// takes the default, operators and integrations. Grants an operator
    /// sets over the API win over these. Use [`NodeConfig::read_grants`].
    pub read: BTreeMap<String, Vec<String>>,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,fieldsync_node=debug`;
    /// the `RUST_LOG` environment variable overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no config file at {path} (run `fieldsync init` to create a node)")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is larger than {CONFIG_FILE_BYTES_MAX} bytes; not a fieldsync config")]
    TooLarge { path: PathBuf },
    /// Syntax errors, unknown keys and wrong types: `message` is the TOML
    /// parser's, which names the key and shows the line.
    #[error("{path} is not a valid fieldsync config:\n{message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{key}` {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{path} already exists; refusing to overwrite a node's config")]
    AlreadyExists { path: PathBuf },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    /// A `FIELDSYNC_GATEWAY_*` variable whose value does not fit its key.
    #[error("environment variable {var}={value:?} is not a valid `{key}`: {reason}")]
    Env {
        var: String,
        value: String,
        key: String,
        reason: String,
    },
}

impl NodeConfig {
    /// The defaults for a new node: central nodes run the gateway.
    pub fn new(role: NodeRole, name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            role,
            name: name.into(),
            store: StoreSection::default(),
            sync: SyncConfig::default(),
            gateway: GatewayConfig {
                enabled: role == NodeRole::Central,
                ..GatewayConfig::default()
            },
            delivery: DeliveryConfig::default(),
            ingest: IngestConfig::default(),
            records: RecordsConfig::default(),
            log: LogConfig::default(),
            field_app: FieldAppConfig::default(),
        }
    }

    /// The config file path inside a data directory.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(CONFIG_FILE)
    }

    /// Read, parse and check `<dir>/fieldsync.toml`.
    pub fn load(dir: &Path) -> Result<NodeConfig, ConfigError> {
        let path = NodeConfig::path_in(dir);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing { path })
            }
            Err(e) => {
                return Err(ConfigError::Read {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        if metadata.len() > CONFIG_FILE_BYTES_MAX {
            return Err(ConfigError::TooLarge { path });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        NodeConfig::parse(&text, &path)
    }

    /// [`NodeConfig::load`], then the `FIELDSYNC_GATEWAY_*` overrides from
    /// the process environment: what a starting node runs on.
    pub fn load_with_env(dir: &Path) -> Result<NodeConfig, ConfigError> {
        NodeConfig::load(dir)?
            .with_env_overrides(&NodeConfig::path_in(dir), |var| std::env::var(var).ok())
    }

    /// Apply `FIELDSYNC_GATEWAY_<KEY>` overrides found by `lookup`, then
    /// check the result again. Values are read as the key's TOML type
    /// (`FIELDSYNC_GATEWAY_COOKIE_SECURE=true`, `..._LISTEN=0.0.0.0:8443`).
    pub fn with_env_overrides(
        mut self,
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<NodeConfig, ConfigError> {
        let mut changed = false;
        for key in GATEWAY_KEYS {
            let var = gateway_env_var(key);
            let Some(value) = lookup(&var) else { continue };
            self.gateway = override_gateway_key(&self.gateway, key, &var, &value)?;
            changed = true;
        }
        if changed {
            self.validate(path)?;
        }
        Ok(self)
    }

    /// Parse and check config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Values that parse but make no sense.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let name_chars = self.name.chars().count();
        if name_chars == 0 || name_chars > NODE_NAME_CHARS_MAX {
            return Err(invalid(
                "name",
                format!("must be 1 to {NODE_NAME_CHARS_MAX} characters"),
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Err(invalid("name", "must not hold control characters".into()));
        }
        if let Some((key, reason)) = self.delivery.problem() {
            return Err(invalid(key, reason));
        }
        if let Some((key, reason)) = self.ingest.problem() {
            return Err(invalid(key, reason));
        }
        let store = &self.store;
        if store.cache_docs_max == 0 {
            return Err(invalid("store.cache_docs_max", "must be at least 1".into()));
        }
        if store.queue_write_sets_max == 0 {
            return Err(invalid(
                "store.queue_write_sets_max",
                "must be at least 1".into(),
            ));
        }
        if store.compact_chunks_max < 2 {
            return Err(invalid(
                "store.compact_chunks_max",
                "must be at least 2".into(),
            ));
        }
        let sync = &self.sync;
        if sync.enroll_code_ttl_ms < 60_000 {
            return Err(invalid(
                "sync.enroll_code_ttl_ms",
                "must be at least 60000 (a minute)".into(),
            ));
        }
        if sync.reconnect_delay_ms_min == 0 {
            return Err(invalid(
                "sync.reconnect_delay_ms_min",
                "must be at least 1".into(),
            ));
        }
        if sync.reconnect_delay_ms_min > sync.reconnect_delay_ms_max {
            return Err(invalid(
                "sync.reconnect_delay_ms_max",
                format!(
                    "({}) must not be below sync.reconnect_delay_ms_min ({})",
                    sync.reconnect_delay_ms_max, sync.reconnect_delay_ms_min
                ),
            ));
        }
        if sync.keep_alive_ms == 0 || sync.keep_alive_ms >= sync.idle_timeout_ms {
            return Err(invalid(
                "sync.keep_alive_ms",
                format!(
                    "({}) must be above 0 and below sync.idle_timeout_ms ({}), \
                     or idle connections are dropped between keep-alives",
                    sync.keep_alive_ms, sync.idle_timeout_ms
                ),
            ));
        }
        if sync.connections_max == 0 || sync.connections_max > SYNC_CONNECTIONS_MAX {
            return Err(invalid(
                "sync.connections_max",
                format!(
                    "({}) must be between 1 and {SYNC_CONNECTIONS_MAX}",
                    sync.connections_max
                ),
            ));
        }
        if sync.peers.len() > PEERS_MAX {
            return Err(invalid(
                "sync.peers",
                format!("lists {} peers; at most {PEERS_MAX}", sync.peers.len()),
            ));
        }
        for (i, peer) in sync.peers.iter().enumerate() {
            let key = format!("sync.peers[{i}]");
            if !valid_host_port(&peer.address) {
                return Err(invalid(
                    &format!("{key}.address"),
                    format!("`{}` is not `host:port`", peer.address),
                ));
            }
            if !identity::is_node_id(&peer.node_id) {
                return Err(invalid(
                    &format!("{key}.node_id"),
                    format!(
                        "must be {} lowercase hex digits (the peer's `fieldsync status` shows it)",
                        identity::NODE_ID_CHARS
                    ),
                ));
            }
            if let Some(user) = &peer.user {
                crate::store::users::validate_id(user)
                    .map_err(|reason| invalid(&format!("{key}.user"), reason))?;
            }
        }
        let gateway = &self.gateway;
        match (&gateway.tls_cert, &gateway.tls_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "gateway.tls_key",
                    "is missing: `gateway.tls_cert` is set, and HTTPS needs both \
                     the certificate and its private key (or neither, for plain HTTP)"
                        .into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "gateway.tls_cert",
                    "is missing: `gateway.tls_key` is set, and HTTPS needs both \
                     the certificate and its private key (or neither, for plain HTTP)"
                        .into(),
                ))
            }
            _ => {}
        }
        for (key, path) in [
            ("gateway.tls_cert", &gateway.tls_cert),
            ("gateway.tls_key", &gateway.tls_key),
        ] {
            if path
                .as_ref()
                .is_some_and(|path| path.as_os_str().is_empty())
            {
                return Err(invalid(key, "must be a file path, not empty".into()));
            }
        }
        self.validate_records(&invalid)?;
        if let Err(e) = self.log.filter.parse::<FilterCheck>() {
            return Err(invalid("log.filter", e));
        }
        Ok(())
    }

    /// `[records.read]`: data collections only, known roles only.
    fn validate_records(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let read = &self.records.read;
        if read.len() > RECORDS_READ_COLLECTIONS_MAX {
            return Err(invalid(
                "records.read",
                format!(
                    "lists {} collections; at most {RECORDS_READ_COLLECTIONS_MAX}",
                    read.len()
                ),
            ));
        }
        for (name, roles) in read {
            let key = format!("records.read.{name}");
            validate_collection_name(name).map_err(|e| invalid(&key, e.to_string()))?;
            if CollectionKind::of(name) == CollectionKind::Internal {
                return Err(invalid(
                    &key,
                    format!(
                        "`{name}` is an internal collection: it never leaves the node \
                         and only the node reads it"
                    ),
                ));
            }
            for role in roles {
                if role.parse::<Role>().is_err() {
                    return Err(invalid(
                        &key,
                        format!(
                            "unknown role `{role}`; expected \"technician\" or \"integration\" \
                             (operators always read)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Who may read each data collection listed in `[records.read]`:
    /// operators and the listed roles. Collections not listed are absent
    /// (the default applies). Call on a validated config.
    pub fn read_grants(&self) -> BTreeMap<String, ReadGrants> {
        self.records
            .read
            .iter()
            .map(|(name, roles)| {
                let listed = roles.iter().filter_map(|role| role.parse::<Role>().ok());
                (name.clone(), ReadGrants::of(listed))
            })
            .collect()
    }

    /// The store tunables.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            cache_docs_max: self.store.cache_docs_max,
            sled_cache_bytes: self.store.sled_cache_bytes,
            queue_write_sets_max: self.store.queue_write_sets_max,
            compact_chunks_max: self.store.compact_chunks_max,
        }
    }

    /// The config as a TOML file with a comment on every key.
    pub fn to_commented_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let peers = if self.sync.peers.is_empty() {
            "peers = []\n# peers = [\n#   { address = \"central.example.com:7400\", node_id = \"<64 hex digits>\" },\n#   { address = \"10.0.0.7:7400\", node_id = \"<64 hex digits>\", user = \"bob\" },  # bob's laptop\n# ]\n"
                .to_string()
        } else {
            let mut text = String::from("peers = [\n");
            for peer in &self.sync.peers {
                let user = peer
                    .user
                    .as_ref()
                    .map(|user| format!(", user = {}", quote(user)))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "  {{ address = {}, node_id = {}{user} }},\n",
                    quote(&peer.address),
                    quote(&peer.node_id)
                ));
            }
            text.push_str("]\n");
            text
        };
        format!(
            r#"# fieldsync node configuration. Unknown keys are refused, so a typo is
# reported rather than ignored. Sizes are in bytes, durations in milliseconds.

# What this node is: "central" (office: creates work orders, runs the
# gateway, accepts laptops) or "field" (a technician's laptop).
role = {role}
# A name for humans: shown in logs and in peers' lists. Peers trust the
# node id (the certificate fingerprint in `fieldsync status`), not this.
name = {name}

[store]
# Loaded work-order documents kept in memory at most (the rest stay on disk).
cache_docs_max = {cache_docs_max}
# sled's page cache, in bytes.
sled_cache_bytes = {sled_cache_bytes}
# Write sets waiting for the group committer at most; writers wait beyond it.
queue_write_sets_max = {queue_write_sets_max}
# A document stored in this many incremental chunks is rewritten as one snapshot.
compact_chunks_max = {compact_chunks_max}

[sync]
# UDP address the QUIC endpoint listens on for other nodes.
listen = {listen}
# Nodes to dial, each pinned by its node id. Without `user`, an office node
# (trusted with everything); with `user = "bob"`, bob's laptop on the same
# LAN: it gets only what bob may see, and its changes pass the field rules.
{peers}# Keep-alive interval on idle connections (keeps NAT bindings open).
keep_alive_ms = {keep_alive_ms}
# A connection silent for this long is closed, then redialled.
idle_timeout_ms = {idle_timeout_ms}
# Redial backoff after a failure: starts at min, doubles with jitter up to max.
reconnect_delay_ms_min = {reconnect_delay_ms_min}
reconnect_delay_ms_max = {reconnect_delay_ms_max}
# Peer connections served at once, at most (a central: one per laptop online).
connections_max = {connections_max}
# After a work order is reassigned, its previous assignee's laptop keeps it
# (and its pending changes are accepted) this long, then it is revoked.
grace_ms = {grace_ms}
# A one-time enrollment code (`user add`) stops working after this long.
enroll_code_ttl_ms = {enroll_code_ttl_ms}

{gateway}
{records}
{delivery}
{ingest}
[log]
# "human" (readable lines) or "json" (one object per line); `--log-format`
# on the command line overrides it. Logs go to stderr.
format = {log_format}
# Which events to log, e.g. "info" or "info,fieldsync_node=debug";
# the RUST_LOG environment variable overrides it.
filter = {log_filter}

[field_app]
# The technician's local web app, which `fieldsync run` serves on an
# enrolled field node; it prints the URL to open (also in field-app.url).
# Absent `enabled`: on field nodes yes, on centrals no.
{field_app_enabled}# TCP address the app listens on: a loopback address.
listen = {field_app_listen}
# Listening on an address other machines can reach needs this set to true.
allow_remote = {field_app_allow_remote}
"#,
            role = quote(self.role.as_str()),
            name = quote(&self.name),
            cache_docs_max = self.store.cache_docs_max,
            sled_cache_bytes = self.store.sled_cache_bytes,
            queue_write_sets_max = self.store.queue_write_sets_max,
            compact_chunks_max = self.store.compact_chunks_max,
            listen = quote(&self.sync.listen.to_string()),
            peers = peers,
            keep_alive_ms = self.sync.keep_alive_ms,
            idle_timeout_ms = self.sync.idle_timeout_ms,
            reconnect_delay_ms_min = self.sync.reconnect_delay_ms_min,
            reconnect_delay_ms_max = self.sync.reconnect_delay_ms_max,
            connections_max = self.sync.connections_max,
            grace_ms = self.sync.grace_ms,
            enroll_code_ttl_ms = self.sync.enroll_code_ttl_ms,
            gateway = gateway_toml(&self.gateway),
            records = records_toml(&self.records),
            delivery = self.delivery.to_commented_toml(),
            ingest = self.ingest.to_commented_toml(),
            log_format = quote(self.log.format.as_str()),
            log_filter = quote(&self.log.filter),
            field_app_enabled = match self.field_app.enabled {
                Some(enabled) => format!("enabled = {enabled}\n"),
                None => "# enabled = true\n".to_string(),
            },
            field_app_listen = quote(&self.field_app.listen.to_string()),
            field_app_allow_remote = self.field_app.allow_remote,
        )
    }

    /// Write the commented config into `dir`; refuses to replace one.
    pub fn write_new(&self, dir: &Path) -> Result<(), ConfigError> {
        use std::io::Write;
        let path = NodeConfig::path_in(dir);
        let write_error = |e: std::io::Error| ConfigError::Write {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    ConfigError::AlreadyExists { path: path.clone() }
                } else {
                    write_error(e)
                }
            })?;
        file.write_all(self.to_commented_toml().as_bytes())
            .map_err(write_error)?;
        file.sync_all().map_err(write_error)
    }
}

/// `section` with `key` set from the environment variable `var`. The text
/// is read as the TOML type the key already has (a whole number, `true` /
/// `false`, or a string), then the section is decoded again, so a value out
/// of range fails here, naming the variable.
fn override_gateway_key(
    section: &GatewayConfig,
    key: &str,
    var: &str,
    value: &str,
) -> Result<GatewayConfig, ConfigError> {
    let env_error = |reason: String| ConfigError::Env {
        var: var.to_string(),
        value: value.to_string(),
        key: format!("gateway.{key}"),
        reason,
    };
    let toml::Value::Table(mut table) =
        toml::Value::try_from(section).map_err(|e| env_error(e.to_string()))?
    else {
        return Err(env_error("the section is not a table".into()));
    };
    let text = value.trim();
    if GATEWAY_OPTIONAL_KEYS.contains(&key) && text.is_empty() {
        table.remove(key);
        return toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| env_error(e.message().trim_end().to_string()));
    }
    let parsed = match table.get(key) {
        Some(toml::Value::Integer(_)) => text
            .replace('_', "")
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| env_error("expected a whole number".into()))?,
        Some(toml::Value::Boolean(_)) => text
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .map_err(|_| env_error("expected `true` or `false`".into()))?,
        // Lists: comma-separated (`127.0.0.1/32,10.0.0.0/8`); empty is `[]`.
        Some(toml::Value::Array(_)) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(text.to_string()),
    };
    table.insert(key.to_string(), parsed);
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| env_error(e.message().trim_end().to_string()))
}

/// The commented `[gateway]` section. Every key can also be set by the
/// environment variable `FIELDSYNC_GATEWAY_<KEY>` when the node starts.
fn gateway_toml(gateway: &GatewayConfig) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let public_base_url = match &gateway.public_base_url {
        Some(url) => format!("public_base_url = {}", quote(url)),
        None => "# public_base_url = \"https://central.example.com:8443\"".into(),
    };
    let path_key = |key: &str, path: &Option<PathBuf>, example: &str| match path {
        Some(path) => format!("{key} = {}", quote(&path.to_string_lossy())),
        None => format!("# {key} = {}", quote(example)),
    };
    let tls_cert = path_key("tls_cert", &gateway.tls_cert, "tls/cert.pem");
    let tls_key = path_key("tls_key", &gateway.tls_key, "tls/key.pem");
    format!(
        r#"[gateway]
# Every key below can be overridden when the node starts by an environment
# variable FIELDSYNC_GATEWAY_<KEY>, e.g. FIELDSYNC_GATEWAY_PAGE_SIZE_MAX=500.
# Serve the HTTP API, changes feed and web UI (usually on central nodes only).
enabled = {enabled}
# TCP address of the HTTP gateway.
listen = {listen}
# Largest request body accepted, in bytes.
body_bytes_max = {body_bytes_max}
# A request taking longer is answered 504 and dropped.
request_timeout_ms = {request_timeout_ms}
# Longest wait of a longpoll on the changes feed (below request_timeout_ms).
longpoll_timeout_ms_max = {longpoll_timeout_ms_max}
# Longpoll wait when the client names none.
longpoll_timeout_ms_default = {longpoll_timeout_ms_default}
# Largest page of the work-order list and of the changes feed.
page_size_max = {page_size_max}
# Page size when the client names none.
page_size_default = {page_size_default}
# Entries one list or feed request scans for visible ones before it returns
# what it has with a cursor (at least page_size_max).
scan_entries_max = {scan_entries_max}
# Lifetime of an access token, in seconds.
token_ttl_s = {token_ttl_s}
# Requests per second each client may make on average.
requests_per_s = {requests_per_s}
# Requests a client may make in a burst above its average rate.
request_burst = {request_burst}
# Failed token requests per minute per source address (each costs an
# Argon2 check; a source over it is answered 429 before any check), and per
# client id (once spent, a failure locks its source for a minute). A right
# secret never counts, so guessing a client's secret cannot lock it out.
token_attempts_per_minute = {token_attempts_per_minute}
# Argon2 secret checks run at once, at most; more wait their turn.
secret_checks_concurrent_max = {secret_checks_concurrent_max}
# Rate-limiter keys kept before idle ones are dropped.
rate_limit_keys_max = {rate_limit_keys_max}
# The URL clients reach this gateway at (the registry advertises it; an
# https URL also makes the web UI's cookies Secure and sends HSTS). Without
# it the request's Host header is used, with https when TLS is on here or a
# trusted proxy says the client used it.
{public_base_url}
# Serve HTTPS: the certificate chain, PEM (both tls_cert and tls_key, or
# neither for plain HTTP; a relative path is from the data directory).
{tls_cert}
# The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1); keep it
# readable by the node's user only.
{tls_key}
# Always mark the web UI's cookies Secure. They are Secure anyway when TLS
# is on, public_base_url is https, or a trusted proxy forwards https.
cookie_secure = {cookie_secure}
# How long the document count in /metrics is reused (counting walks the index).
doc_count_cache_ms = {doc_count_cache_ms}
# Networks (CIDR) that may read /metrics without a token; from elsewhere it
# takes an operator's bearer token. Empty: operators' tokens only. The
# environment variable takes a comma-separated list.
metrics_networks = [{metrics_networks}]
# Longpolls on the changes feed one user may hold open at once; the next is
# answered 429.
longpolls_per_user_max = {longpolls_per_user_max}
# Reverse proxies (CIDR, e.g. "10.0.0.5/32") whose X-Forwarded-For and
# X-Forwarded-Proto are believed: a request from one is rate-limited and
# judged (metrics_networks) by the rightmost X-Forwarded-For address that is
# not a trusted proxy. From anyone else those headers are ignored. Empty:
# the TCP peer is the client. The environment variable takes a
# comma-separated list.
trusted_proxies = [{trusted_proxies}]
# Work-order numbers made on this central read PREFIX-YEAR-SEQUENCE, e.g.
# WO-2026-000123, counted per year. With two centrals give each its own
# prefix (e.g. "WO-N" and "WO-S"): A-Z, 0-9 and inner dashes, 1 to 16.
work_order_prefix = {work_order_prefix}
"#,
        enabled = gateway.enabled,
        listen = quote(&gateway.listen.to_string()),
        body_bytes_max = gateway.body_bytes_max,
        request_timeout_ms = gateway.request_timeout_ms,
        longpoll_timeout_ms_max = gateway.longpoll_timeout_ms_max,
        longpoll_timeout_ms_default = gateway.longpoll_timeout_ms_default,
        page_size_max = gateway.page_size_max,
        page_size_default = gateway.page_size_default,
        scan_entries_max = gateway.scan_entries_max,
        token_ttl_s = gateway.token_ttl_s,
        requests_per_s = gateway.requests_per_s,
        request_burst = gateway.request_burst,
        token_attempts_per_minute = gateway.token_attempts_per_minute,
        secret_checks_concurrent_max = gateway.secret_checks_concurrent_max,
        rate_limit_keys_max = gateway.rate_limit_keys_max,
        cookie_secure = gateway.cookie_secure,
        doc_count_cache_ms = gateway.doc_count_cache_ms,
        metrics_networks = gateway
            .metrics_networks
            .iter()
            .map(|network| quote(network))
            .collect::<Vec<_>>()
            .join(", "),
        longpolls_per_user_max = gateway.longpolls_per_user_max,
        work_order_prefix = quote(&gateway.work_order_prefix),
        trusted_proxies = gateway
            .trusted_proxies
            .iter()
            .map(|network| quote(network))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The commented `[records]` section: the example stays a comment until
/// the operator lists a collection.
fn records_toml(records: &RecordsConfig) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = String::from(
        r#"# Who may read each data collection (reference tables such as customers or
# materials, anything an ERP uploads), besides operators, who read them all:
# "technician" (technicians' laptops receive the collection) and
# "integration" (clients with the records:read scope). A collection not
# listed here is read by operators and integrations only; a listed one by
# operators and exactly the roles listed. Grants an operator sets over the
# API (PUT /api/v1/collections/<name>/grants) win over these.
"#,
    );
    if records.read.is_empty() {
        text.push_str("# [records.read]\n# materials = [\"technician\", \"integration\"]\n");
        return text;
    }
    text.push_str("[records.read]\n");
    for (name, roles) in &records.read {
        let roles: Vec<String> = roles.iter().map(|role| quote(role)).collect();
        text.push_str(&format!("{} = [{}]\n", quote(name), roles.join(", ")));
    }
    text
}

fn valid_host_port(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    !host.is_empty()
        && !host.chars().any(|c| c.is_whitespace() || c.is_control())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// A light syntax check of a tracing filter, so a bad `[log] filter` is a
/// config error naming the key rather than a surprise at startup. It accepts
/// what `tracing_subscriber::EnvFilter` accepts for plain directives:
/// `level`, `target`, `target=level`, comma-separated.
struct FilterCheck;

impl std::str::FromStr for FilterCheck {
    type Err = String;
    fn from_str(filter: &str) -> Result<Self, String> {
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
        for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            if directive.contains('[') {
                // Span filters are EnvFilter's business; let it judge them.
                continue;
            }
            let level = match directive.rsplit_once('=') {
                Some((target, level)) if !target.is_empty() => level,
                Some(_) => return Err(format!("directive `{directive}` has no target")),
                None => continue,
            };
            if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "directive `{directive}`: unknown level `{level}` (expected one of {})",
                    LEVELS.join(", ")
                ));
            }
        }
        Ok(FilterCheck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("/data/fieldsync.toml"))
    }

    /// Every `[gateway]` key has an environment override: the list is kept
    /// by hand, so a new field must fail here until it is added.
    #[test]
    fn every_gateway_key_is_overridable() {
        let section = GatewayConfig {
            public_base_url: Some("https://central.example".into()),
            tls_cert: Some("tls/cert.pem".into()),
            tls_key: Some("tls/key.pem".into()),
            ..GatewayConfig::default()
        };
        let table = toml::Value::try_from(&section).unwrap();
        let mut keys: Vec<&str> = table
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut listed = GATEWAY_KEYS.to_vec();
        keys.sort_unstable();
        listed.sort_unstable();
        assert_eq!(keys, listed);
    }

    #[test]
    fn the_commented_file_parses_back_to_the_same_config() {
        for role in [NodeRole::Central, NodeRole::Field] {
            let mut config = NodeConfig::new(role, "node \"one\"");
            let text = config.to_commented_toml();
            assert_eq!(parse(&text).unwrap(), config, "{text}");
            config.sync.peers.push(PeerConfig {
                address: "central.example.com:7400".into(),
                node_id: "ab".repeat(32),
                user: None,
            });
            config.sync.peers.push(PeerConfig {
                address: "10.0.0.7:7400".into(),
                node_id: "cd".repeat(32),
                user: Some("bob".into()),
            });
            config.log.format = LogFormat::Json;
            let text = config.to_commented_toml();
            assert_eq!(parse(&text).unwrap(), config, "{text}");
        }
        let central = NodeConfig::new(NodeRole::Central, "c");
        assert!(central.gateway.enabled);
        assert!(!NodeConfig::new(NodeRole::Field, "f").gateway.enabled);
    }

    #[test]
    fn every_key_in_the_written_file_has_a_comment_above_it() {
        let mut https = NodeConfig::new(NodeRole::Central, "c");
        https.gateway.public_base_url = Some("https://central.example".into());
        https.gateway.tls_cert = Some("tls/cert.pem".into());
        https.gateway.tls_key = Some("tls/key.pem".into());
        https.gateway.trusted_proxies = vec!["10.0.0.5/32".into()];
        for config in [NodeConfig::new(NodeRole::Central, "c"), https] {
            let text = config.to_commented_toml();
            assert_eq!(parse(&text).unwrap(), config, "{text}");
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let is_key =
                    line.contains(" = ") && !line.starts_with('#') && !line.starts_with(' ');
                if is_key && !line.starts_with("reconnect_delay_ms_max") {
                    assert!(
                        lines[..i]
                            .last()
                            .is_some_and(|above| above.starts_with('#')),
                        "no comment above `{line}`"
                    );
                }
            }
        }
    }

    #[test]
    fn the_field_app_runs_on_field_nodes_on_loopback_unless_told_otherwise() {
        let field = parse("role = \"field\"\nname = \"f\"\n").unwrap();
        assert!(field.field_app.runs_on(field.role));
        assert_eq!(field.field_app.listen, "127.0.0.1:7480".parse().unwrap());
        assert!(!field.field_app.allow_remote);
        let central = NodeConfig::new(NodeRole::Central, "c");
        assert!(!central.field_app.runs_on(central.role));
        let text = "role = \"field\"\nname = \"f\"\n[field_app]\nenabled = false\n\
                    listen = \"0.0.0.0:7481\"\nallow_remote = true\n";
        let config = parse(text).unwrap();
        assert!(!config.field_app.runs_on(NodeRole::Field));
        assert!(config.field_app.allow_remote);
        assert_eq!(parse(&config.to_commented_toml()).unwrap(), config);
        assert!(parse("role = \"field\"\nname = \"f\"\n[field_app]\nport = 1\n").is_err());
    }

    #[test]
    fn a_minimal_file_takes_the_defaults() {
        let config = parse("role = \"field\"\nname = \"laptop-7\"\n").unwrap();
        assert_eq!(config.role, NodeRole::Field);
        assert_eq!(config.store, StoreSection::default());
        assert_eq!(config.sync, SyncConfig::default());
        assert_eq!(config.store_config().cache_docs_max, 4096);
    }

    #[test]
    fn a_typo_names_the_key_and_its_line() {
        let text = "role = \"central\"\nname = \"c\"\n\n[store]\ncache_doc_max = 10\n";
        let error = parse(text).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ConfigError::Parse { .. }));
        assert!(message.contains("cache_doc_max"), "{message}");
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("/data/fieldsync.toml"), "{message}");

        let error = parse("role = \"central\"\nname = \"c\"\nlisten = \"x\"\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `listen`"),
            "{error}"
        );
    }

    #[test]
    fn wrong_values_name_the_key() {
        let cases = [
            ("role = \"boss\"\nname = \"c\"\n", "boss"),
            ("role = \"field\"\nname = \"\"\n", "`name`"),
            (
                "role = \"field\"\nname = \"c\"\n[sync]\nlisten = \"nowhere\"\n",
                "listen",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[sync]\nreconnect_delay_ms_min = 9\nreconnect_delay_ms_max = 1\n",
                "sync.reconnect_delay_ms_max",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[sync]\nkeep_alive_ms = 40000\n",
                "sync.keep_alive_ms",
            ),
            (
                "role = \"central\"\nname = \"c\"\n[sync]\nconnections_max = 0\n",
                "sync.connections_max",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[sync]\npeers = [{ address = \"h:1\", node_id = \"XY\" }]\n",
                "sync.peers[0].node_id",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[sync]\npeers = [{ address = \"nohost\", node_id = \"XY\" }]\n",
                "sync.peers[0].address",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[sync]\npeers = [{ address = \"h:1\", node_id = \"abababababababababababababababababababababababababababababababab\", user = \"bob smith\" }]\n",
                "sync.peers[0].user",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[store]\ncompact_chunks_max = 1\n",
                "store.compact_chunks_max",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[log]\nfilter = \"fieldsync=loud\"\n",
                "log.filter",
            ),
            (
                "role = \"field\"\nname = \"c\"\n[log]\nformat = \"xml\"\n",
                "xml",
            ),
            (
                "role = \"central\"\nname = \"c\"\n[gateway]\ntls_cert = \"c.pem\"\n",
                "`gateway.tls_key` is missing",
            ),
            (
                "role = \"central\"\nname = \"c\"\n[gateway]\ntls_key = \"k.pem\"\n",
                "`gateway.tls_cert` is missing",
            ),
            (
                "role = \"central\"\nname = \"c\"\n[gateway]\ntls_cert = \"\"\ntls_key = \"k.pem\"\n",
                "`gateway.tls_cert` must be a file path",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn load_reports_a_missing_file_and_write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            NodeConfig::load(dir.path()),
            Err(ConfigError::Missing { .. })
        ));
        let config = NodeConfig::new(NodeRole::Central, "c");
        config.write_new(dir.path()).unwrap();
        assert_eq!(NodeConfig::load(dir.path()).unwrap(), config);
        assert!(matches!(
            NodeConfig::new(NodeRole::Field, "f").write_new(dir.path()),
            Err(ConfigError::AlreadyExists { .. })
        ));
        assert_eq!(NodeConfig::load(dir.path()).unwrap(), config);
    }

    #[test]
    fn gateway_limits_and_grace_come_from_the_file_then_the_environment() {
        let text = "role = \"central\"\nname = \"c\"\n[sync]\ngrace_ms = 60000\n\
                    [gateway]\npage_size_max = 500\nrequests_per_s = 50\n";
        let config = parse(text).unwrap();
        assert_eq!(config.sync.grace_ms, 60_000);
        assert_eq!(config.gateway.page_size_max, 500);
        assert_eq!(config.gateway.requests_per_s, 50);
        assert_eq!(
            config.gateway.token_ttl_s,
            GatewayConfig::default().token_ttl_s
        );

        let env = |var: &str| match var {
            "FIELDSYNC_GATEWAY_PAGE_SIZE_MAX" => Some("2_000".to_string()),
            "FIELDSYNC_GATEWAY_COOKIE_SECURE" => Some("true".to_string()),
            "FIELDSYNC_GATEWAY_LISTEN" => Some("0.0.0.0:8443".to_string()),
            "FIELDSYNC_GATEWAY_PUBLIC_BASE_URL" => Some("https://c.example:8443".to_string()),
            "FIELDSYNC_GATEWAY_METRICS_NETWORKS" => Some(" 10.0.0.0/8, ::1/128 ".to_string()),
            "FIELDSYNC_GATEWAY_TLS_CERT" => Some("/etc/fieldsync/cert.pem".to_string()),
            "FIELDSYNC_GATEWAY_TLS_KEY" => Some("tls/key.pem".to_string()),
            "FIELDSYNC_GATEWAY_TRUSTED_PROXIES" => Some("10.0.0.5/32,::1/128".to_string()),
            _ => None,
        };
        let path = Path::new("/data/fieldsync.toml");
        let overridden = config.clone().with_env_overrides(path, env).unwrap();
        assert_eq!(overridden.gateway.page_size_max, 2_000);
        assert!(overridden.gateway.cookie_secure);
        assert_eq!(overridden.gateway.listen.port(), 8443);
        assert_eq!(
            overridden.gateway.public_base_url.as_deref(),
            Some("https://c.example:8443")
        );
        assert_eq!(
            overridden.gateway.metrics_networks,
            vec!["10.0.0.0/8".to_string(), "::1/128".to_string()]
        );
        assert_eq!(
            overridden.gateway.tls_cert.as_deref(),
            Some(Path::new("/etc/fieldsync/cert.pem"))
        );
        assert_eq!(
            overridden.gateway.tls_key.as_deref(),
            Some(Path::new("tls/key.pem"))
        );
        assert_eq!(
            overridden.gateway.trusted_proxies,
            vec!["10.0.0.5/32".to_string(), "::1/128".to_string()]
        );
        assert_eq!(overridden.gateway.requests_per_s, 50, "untouched keys stay");
        // Only one of the pair from the environment: refused, naming it.
        let half = config
            .clone()
            .with_env_overrides(path, |var| {
                (var == "FIELDSYNC_GATEWAY_TLS_CERT").then(|| "cert.pem".to_string())
            })
            .unwrap_err();
        assert!(half.to_string().contains("gateway.tls_key"), "{half}");
        // An empty variable removes a path the file set.
        let plain = overridden
            .clone()
            .with_env_overrides(path, |var| {
                var.starts_with("FIELDSYNC_GATEWAY_TLS_").then(String::new)
            })
            .unwrap();
        assert_eq!(
            (plain.gateway.tls_cert, plain.gateway.tls_key),
            (None, None)
        );
        let none = config
            .clone()
            .with_env_overrides(path, |var| {
                (var == "FIELDSYNC_GATEWAY_METRICS_NETWORKS").then(String::new)
            })
            .unwrap();
        assert!(none.gateway.metrics_networks.is_empty());
        // The file with every key written back parses to the same config.
        let text = overridden.to_commented_toml();
        assert_eq!(parse(&text).unwrap(), overridden, "{text}");
        assert_eq!(
            config.clone().with_env_overrides(path, |_| None).unwrap(),
            config
        );
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let config = NodeConfig::new(NodeRole::Central, "c");
        let path = Path::new("/data/fieldsync.toml");
        for (var, value) in [
            ("FIELDSYNC_GATEWAY_PAGE_SIZE_MAX", "lots"),
            ("FIELDSYNC_GATEWAY_PAGE_SIZE_MAX", "-1"),
            ("FIELDSYNC_GATEWAY_REQUESTS_PER_S", "99999999999"),
            ("FIELDSYNC_GATEWAY_COOKIE_SECURE", "yes"),
            ("FIELDSYNC_GATEWAY_LISTEN", "nowhere"),
        ] {
            let error = config
                .clone()
                .with_env_overrides(path, |v| (v == var).then(|| value.to_string()))
                .unwrap_err();
            assert!(matches!(error, ConfigError::Env { .. }), "{error}");
            let message = error.to_string();
            assert!(
                message.contains(var) && message.contains(value),
                "{message}"
            );
        }
        for key in GATEWAY_KEYS {
            assert!(
                config.to_commented_toml().contains(&format!("{key} = ")),
                "{key}"
            );
        }
    }

    #[test]
    fn records_read_grants_come_from_the_file() {
        let text = "role = \"central\"\nname = \"c\"\n\
                    [records.read]\nmaterials = [\"technician\", \"integration\"]\n\
                    price-lists = [\"technician\"]\ncustomers = []\n";
        let config = parse(text).unwrap();
        let grants = config.read_grants();
        let readers = |name: &str| grants.get(name).map(|grants| grants.readers.clone());
        assert_eq!(
            readers("materials"),
            Some(vec![Role::Operator, Role::Technician, Role::Integration])
        );
        assert_eq!(
            readers("price-lists"),
            Some(vec![Role::Operator, Role::Technician])
        );
        assert_eq!(readers("customers"), Some(vec![Role::Operator]));
        assert_eq!(readers("other"), None, "unlisted: the default applies");
        // Written back, the section parses to the same config.
        let text = config.to_commented_toml();
        assert_eq!(parse(&text).unwrap(), config, "{text}");
        // A new node's file shows the section as a commented example.
        let fresh = NodeConfig::new(NodeRole::Central, "c");
        let text = fresh.to_commented_toml();
        assert!(text.contains("# [records.read]\n# materials = "), "{text}");
        assert!(parse(&text).unwrap().read_grants().is_empty());
        let uncommented =
            text.replace("# [records.read]\n# materials", "[records.read]\nmaterials");
        assert_eq!(
            parse(&uncommented).unwrap().read_grants()["materials"].readers,
            vec![Role::Operator, Role::Technician, Role::Integration]
        );
    }

    #[test]
    fn records_read_refuses_unknown_roles_internal_and_bad_names() {
        let cases = [
            (
                "[records.read]\nmaterials = [\"technician\", \"boss\"]\n",
                "`records.read.materials` unknown role `boss`",
            ),
            (
                "[records.read]\nusers = [\"technician\"]\n",
                "`records.read.users` `users` is an internal collection",
            ),
            (
                "[records.read]\ncollection_grants = []\n",
                "`records.read.collection_grants` `collection_grants` is an internal",
            ),
            (
                "[records.read]\nwork_orders = [\"technician\"]\n",
                "`records.read.work_orders` `work_orders` is reserved",
            ),
            (
                "[records.read]\nMaterials = [\"technician\"]\n",
                "`records.read.Materials` collection name `Materials` must match",
            ),
            ("[records]\nwrite = {}\n", "unknown field `write`"),
            (
                "[records.read]\nmaterials = \"technician\"\n",
                "expected a sequence",
            ),
        ];
        for (section, expected) in cases {
            let text = format!("role = \"central\"\nname = \"c\"\n{section}");
            let message = parse(&text).unwrap_err().to_string();
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn an_oversized_file_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "role = \"field\"\nname = \"c\"\n# {}\n",
            "x".repeat(CONFIG_FILE_BYTES_MAX as usize)
        );
        std::fs::write(NodeConfig::path_in(dir.path()), text).unwrap();
        assert!(matches!(
            NodeConfig::load(dir.path()),
            Err(ConfigError::TooLarge { .. })
        ));
    }
}
