//! The gateway's limits and knobs, in one plain struct.
//!
//! Why one struct with units in every name: every limit the gateway enforces
//! (body size, page size, request time, rate) lives here, so the binary can
//! fill it from the node's config file and tests can shrink it to make a
//! limit trip in milliseconds.
//!
//! Besides limits it carries the two access settings the node configures
//! for everyone who reads (`[sync] grace_ms` and `[records.read]`), so the
//! gateway answers the visibility rule with the same inputs as sync.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_node::access::{ReadGrants, GRACE_MS_DEFAULT};
use fieldsync_node::config::{DeliveryConfig, IngestConfig, NodeConfig};

/// Limits and settings of one gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Largest request body accepted, in bytes. A work order edit is ~1 KB;
    /// a report may hold 64 KiB (the node's `FIELD_TEXT_BYTES_MAX`).
    pub body_bytes_max: usize,
    /// A request that takes longer is answered 504 (`timeout`) and dropped.
    pub request_timeout_ms: u64,
    /// Longest a longpoll on the changes feed may wait. Kept below
    /// `request_timeout_ms` so a longpoll ends before the timeout kills it.
    pub longpoll_timeout_ms_max: u64,
    /// Longpoll wait when the client names none.
    pub longpoll_timeout_ms_default: u64,
    /// Largest page of the work-order list and of the changes feed.
    pub page_size_max: usize,
    /// Page size when the client names none.
    pub page_size_default: usize,
    /// Documents (or changelog entries) one list or feed request may scan
    /// looking for visible ones before it returns what it has with a cursor.
    pub scan_entries_max: usize,
    /// Lifetime of an access token, in seconds.
    pub token_ttl_s: u64,
    /// Requests per second each client (token subject, else peer address)
    /// may make on average.
    pub requests_per_s: u32,
    /// Requests a client may make in a burst above its average rate.
    pub request_burst: u32,
    /// Failed token requests per minute allowed per source address (each
    /// costs an Argon2 check, tens of milliseconds of CPU) and per claimed
    /// client id; a right secret never counts (`limit.rs`).
    pub token_attempts_per_minute: u32,
    /// Argon2 checks run at once at most; more wait their turn.
    pub secret_checks_concurrent_max: usize,
    /// Rate-limiter keys kept before idle ones are dropped.
    pub rate_limit_keys_max: usize,
    /// The base URL clients reach this gateway at (`https://central:8443`),
    /// for the registry. Without it the request's `Host` header is used
    /// (with `https` when TLS is on or a trusted proxy forwarded https). An
    /// `https` URL also makes the UI's cookies `Secure` and responses carry
    /// `Strict-Transport-Security`.
    pub public_base_url: Option<String>,
    /// Mark the web UI's cookies `Secure` always. They are `Secure` anyway
    /// when TLS is on, `public_base_url` is https, or a trusted proxy says
    /// the client came over https: this only adds, never removes.
    pub cookie_secure: bool,
    /// Prefix of the work-order numbers this central makes
    /// (`fieldsync_node::numbering`).
    pub work_order_prefix: String,
    /// Serve HTTPS with this certificate and key (`[gateway] tls_cert`,
    /// `tls_key`); plain HTTP without. Read when the state is built
    /// (`tls::load`), so a missing or broken file stops the start.
    pub tls: Option<TlsFiles>,
    /// Networks (CIDR) of reverse proxies whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed (`edge.rs`). Empty by default: the
    /// TCP peer is the client and those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// How long the document count shown in `/metrics` is reused, in ms:
    /// counting walks the whole index.
    pub doc_count_cache_ms: u64,
    /// Networks (CIDR, e.g. `10.0.0.0/8`) whose addresses may read
    /// `/metrics` without a token; from anywhere else it takes an
    /// operator's bearer token. Loopback by default: the metrics show the
    /// store's size and activity, which not everyone on the network should
    /// read. Empty: operators' tokens only.
    pub metrics_networks: Vec<String>,
    /// Longpolls on the changes feed one user may hold open at once; the
    /// next is answered 429 (each holds a connection and wakes on every
    /// write).
    pub longpolls_per_user_max: usize,
    /// How long a technician still reads a work order reassigned away from
    /// it, in ms: the node's `[sync] grace_ms`, so REST, the feed and the
    /// web UI agree with sync.
    pub grace_ms: u64,
    /// Who may read each data collection, from the node's `[records.read]`
    /// (by collection name). Grants an operator sets over the API win; a
    /// collection in neither takes the default (operators, integrations).
    pub read_grants: Arc<BTreeMap<String, ReadGrants>>,
    /// `[delivery]`: webhooks, commands, retention (checked into
    /// `delivery::Settings` when the state is built).
    pub delivery: DeliveryConfig,
    /// This node runs the webhook dispatcher (`[delivery] enabled`, on by
    /// default on a central); hooks are registered only where it runs.
    pub delivery_runs: bool,
    /// `[ingest]`: ERP batch limits, the sender lease, expiry.
    pub ingest: IngestConfig,
}

/// Where the gateway's TLS certificate chain and private key are, both
/// PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for GatewayConfig {
    /// The node's defaults: they live in the node's `[gateway]` section,
    /// which `fieldsync init` writes out, and nowhere else.
    fn default() -> Self {
        let section = fieldsync_node::config::GatewayConfig::default();
        GatewayConfig::from_section(
            &section,
            GRACE_MS_DEFAULT,
            BTreeMap::new(),
            DeliveryConfig::default(),
            true,
        )
    }
}

impl GatewayConfig {
    /// A node's gateway: its `[gateway]` limits, and the access settings
    /// it shares with sync (`[sync] grace_ms`, `[records.read]`).
    pub fn from_node(config: &NodeConfig) -> GatewayConfig {
        let gateway = GatewayConfig::from_section(
            &config.gateway,
            config.sync.grace_ms,
            config.read_grants(),
            config.delivery.clone(),
            config
                .delivery
                .runs_on(config.role == fieldsync_node::config::NodeRole::Central),
        );
        GatewayConfig {
            ingest: config.ingest,
            ..gateway
        }
    }

    fn from_section(
        section: &fieldsync_node::config::GatewayConfig,
        grace_ms: u64,
        read_grants: BTreeMap<String, ReadGrants>,
        delivery: DeliveryConfig,
        delivery_runs: bool,
    ) -> GatewayConfig {
        GatewayConfig {
            body_bytes_max: section.body_bytes_max,
            request_timeout_ms: section.request_timeout_ms,
            longpoll_timeout_ms_max: section.longpoll_timeout_ms_max,
            longpoll_timeout_ms_default: section.longpoll_timeout_ms_default,
            page_size_max: section.page_size_max,
            page_size_default: section.page_size_default,
            scan_entries_max: section.scan_entries_max,
            token_ttl_s: section.token_ttl_s,
            requests_per_s: section.requests_per_s,
            request_burst: section.request_burst,
            token_attempts_per_minute: section.token_attempts_per_minute,
            secret_checks_concurrent_max: section.secret_checks_concurrent_max,
            rate_limit_keys_max: section.rate_limit_keys_max,
            public_base_url: section.public_base_url.clone(),
            cookie_secure: section.cookie_secure,
            doc_count_cache_ms: section.doc_count_cache_ms,
            metrics_networks: section.metrics_networks.clone(),
            longpolls_per_user_max: section.longpolls_per_user_max,
            work_order_prefix: section.work_order_prefix.clone(),
            // The node's config refuses one without the other.
            tls: match (&section.tls_cert, &section.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            trusted_proxies: section.trusted_proxies.clone(),
            grace_ms,
            read_grants: Arc::new(read_grants),
            delivery,
            delivery_runs,
            ingest: IngestConfig::default(),
        }
    }
}

/// Most networks one network list (`metrics_networks`, `trusted_proxies`,
/// `delivery.allow_networks`) may hold.
const NETWORKS_MAX: usize = 64;

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid gateway config: {0}")]
pub struct ConfigError(pub String);

impl GatewayConfig {
    /// Check the limits against each other; `AppState::new` calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("body_bytes_max", self.body_bytes_max as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("page_size_max", self.page_size_max as u64),
            ("page_size_default", self.page_size_default as u64),
            ("scan_entries_max", self.scan_entries_max as u64),
            ("token_ttl_s", self.token_ttl_s),
            ("requests_per_s", u64::from(self.requests_per_s)),
            ("request_burst", u64::from(self.request_burst)),
            (
                "token_attempts_per_minute",
                u64::from(self.token_attempts_per_minute),
            ),
            (
                "secret_checks_concurrent_max",
                self.secret_checks_concurrent_max as u64,
            ),
            ("rate_limit_keys_max", self.rate_limit_keys_max as u64),
            ("longpolls_per_user_max", self.longpolls_per_user_max as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError(format!("{name} must be above 0")));
        }
        if self.longpoll_timeout_ms_max >= self.request_timeout_ms {
            return Err(ConfigError(
                "longpoll_timeout_ms_max must be below request_timeout_ms".into(),
            ));
        }
        if self.longpoll_timeout_ms_default > self.longpoll_timeout_ms_max {
            return Err(ConfigError(
                "longpoll_timeout_ms_default must not exceed longpoll_timeout_ms_max".into(),
            ));
        }
        if self.page_size_default > self.page_size_max {
            return Err(ConfigError(
                "page_size_default must not exceed page_size_max".into(),
            ));
        }
        if self.scan_entries_max < self.page_size_max {
            return Err(ConfigError(
                "scan_entries_max must be at least page_size_max".into(),
            ));
        }
        self.metrics_nets()?;
        self.trusted_proxy_nets()?;
        self.check_public_base_url()?;
        if let Some(why) = fieldsync_node::numbering::prefix_problem(&self.work_order_prefix) {
            return Err(ConfigError(format!(
                "work_order_prefix `{}` {why}",
                self.work_order_prefix
            )));
        }
        Ok(())
    }

    /// `metrics_networks`, parsed.
    pub(crate) fn metrics_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_networks("metrics_networks", &self.metrics_networks)
    }

    /// `trusted_proxies`, parsed.
    pub(crate) fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_networks("trusted_proxies", &self.trusted_proxies)
    }

    /// `public_base_url`, checked: an absolute `http` or `https` URL with a
    /// host and nothing after the path.
    fn check_public_base_url(&self) -> Result<(), ConfigError> {
        let Some(text) = &self.public_base_url else {
            return Ok(());
        };
        let bad = |why: &str| {
            ConfigError(format!(
                "public_base_url `{text}` {why}; expected a URL such as \"https://central.example.com:8443\""
            ))
        };
        let url = reqwest::Url::parse(text.trim()).map_err(|_| bad("is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("is not http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(bad("must not hold credentials, a query or a fragment"));
        }
        Ok(())
    }

    /// Whether clients reach this gateway over HTTPS by configuration: TLS
    /// is served here, or the public URL is https (a TLS proxy in front).
    pub fn serves_https(&self) -> bool {
        self.tls.is_some()
            || self.public_base_url.as_deref().is_some_and(|url| {
                url.trim()
                    .get(..8)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
            })
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// A list of networks (CIDR) named `name` in messages: the one parser of
/// every network list in the config (`metrics_networks`,
/// `trusted_proxies`, `delivery.allow_networks`), at most
/// [`NETWORKS_MAX`] entries.
pub(crate) fn parse_networks(
    name: &str,
    list: &[String],
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    if list.len() > NETWORKS_MAX {
        return Err(ConfigError(format!(
            "{name} lists {} networks; at most {NETWORKS_MAX}",
            list.len()
        )));
    }
    list.iter()
        .map(|text| {
            text.trim().parse::<ipnet::IpNet>().map_err(|_| {
                ConfigError(format!(
                    "{name}: `{text}` is not a network such as \"10.0.0.0/8\" or \"::1/128\""
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one network-list parser: every list is bounded and names
    /// itself in its refusal, delivery's too.
    #[test]
    fn every_network_list_is_parsed_and_bounded_by_one_rule() {
        let settings = |allow_networks: Vec<String>| {
            crate::delivery::Settings::from_config(
                &fieldsync_node::delivery_config::DeliveryConfig {
                    allow_networks,
                    ..Default::default()
                },
            )
        };
        let Err(refused) = settings(vec!["10.0.0.0/8".into(), "not-a-network".into()]) else {
            panic!("a bad network is refused");
        };
        assert!(
            refused
                .0
                .starts_with("delivery.allow_networks: `not-a-network`"),
            "{refused}"
        );
        let Err(refused) = settings(vec!["10.0.0.0/8".into(); NETWORKS_MAX + 1]) else {
            panic!("too many networks are refused");
        };
        assert!(
            refused.0.contains(&format!("at most {NETWORKS_MAX}")),
            "{refused}"
        );
        assert!(settings(vec![" 127.0.0.0/8 ".into()]).is_ok());
    }

    #[test]
    fn metrics_networks_must_be_networks() {
        let config = GatewayConfig::default();
        let defaults: Vec<String> = config
            .metrics_nets()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(defaults, vec!["127.0.0.1/32", "::1/128"]);
        for bad in ["10.0.0.1", "10.0.0.0/33", "anywhere", ""] {
            let config = GatewayConfig {
                metrics_networks: vec![bad.to_string()],
                ..GatewayConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert!(error.0.contains("metrics_networks"), "{bad}: {error}");
        }
        let none = GatewayConfig {
            longpolls_per_user_max: 0,
            ..GatewayConfig::default()
        };
        assert!(none.validate().is_err());
    }

    #[test]
    fn trusted_proxies_and_the_public_url_must_be_what_they_say() {
        let config = GatewayConfig {
            trusted_proxies: vec!["10.0.0.5/32".into(), " ::1/128 ".into()],
            public_base_url: Some("https://central.example:8443/fieldsync/".into()),
            ..GatewayConfig::default()
        };
        config.validate().unwrap();
        assert_eq!(config.trusted_proxy_nets().unwrap().len(), 2);
        assert!(config.serves_https());
        for bad in ["10.0.0.5", "proxy.example", ""] {
            let config = GatewayConfig {
                trusted_proxies: vec![bad.to_string()],
                ..GatewayConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert!(error.0.contains("trusted_proxies"), "{bad}: {error}");
        }
        for bad in [
            "central.example",
            "ftp://central.example",
            "https://",
            "https://central.example/?x=1",
            "https://user:pw@central.example",
        ] {
            let config = GatewayConfig {
                public_base_url: Some(bad.to_string()),
                ..GatewayConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert!(error.0.contains("public_base_url"), "{bad}: {error}");
        }
        let plain = GatewayConfig {
            public_base_url: Some("http://central.example".into()),
            ..GatewayConfig::default()
        };
        assert!(!plain.serves_https() && !GatewayConfig::default().serves_https());
        let tls = GatewayConfig {
            tls: Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
            }),
            ..GatewayConfig::default()
        };
        assert!(tls.serves_https());
    }

    /// The node's `[gateway] tls_cert`, `tls_key` and `trusted_proxies`
    /// (file, then environment) reach the gateway; one of the pair alone
    /// is a config error naming the other.
    #[test]
    fn the_nodes_tls_and_proxy_keys_reach_the_gateway() {
        let path = std::path::Path::new("/data/fieldsync.toml");
        let text = "role = \"central\"\nname = \"c\"\n[gateway]\n\
                    tls_cert = \"/etc/fs/cert.pem\"\ntls_key = \"/etc/fs/key.pem\"\n\
                    trusted_proxies = [\"10.0.0.5/32\"]\n";
        let node = NodeConfig::parse(text, path).unwrap();
        let gateway = GatewayConfig::from_node(&node);
        assert_eq!(
            gateway.tls,
            Some(TlsFiles {
                cert: "/etc/fs/cert.pem".into(),
                key: "/etc/fs/key.pem".into(),
            })
        );
        assert_eq!(gateway.trusted_proxies, vec!["10.0.0.5/32".to_string()]);
        gateway.validate().unwrap();
        // Written back with comments, the file parses to the same config.
        let written = node.to_commented_toml();
        assert_eq!(
            NodeConfig::parse(&written, path).unwrap(),
            node,
            "{written}"
        );
        // The environment empties the pair and the list.
        let plain = node
            .with_env_overrides(path, |var| match var {
                "FIELDSYNC_GATEWAY_TLS_CERT"
                | "FIELDSYNC_GATEWAY_TLS_KEY"
                | "FIELDSYNC_GATEWAY_TRUSTED_PROXIES" => Some(String::new()),
                _ => None,
            })
            .unwrap();
        let gateway = GatewayConfig::from_node(&plain);
        assert_eq!(gateway.tls, None);
        assert!(gateway.trusted_proxies.is_empty());
        // A new node writes both as commented examples.
        let fresh = NodeConfig::new(fieldsync_node::config::NodeRole::Central, "c");
        let written = fresh.to_commented_toml();
        assert!(
            written.contains("\n# tls_cert = \"tls/cert.pem\"\n"),
            "{written}"
        );
        assert!(written.contains("\ntrusted_proxies = []\n"), "{written}");
        for (text, missing) in [
            ("tls_cert = \"c.pem\"", "tls_key"),
            ("tls_key = \"k.pem\"", "tls_cert"),
        ] {
            let text = format!("role = \"central\"\nname = \"c\"\n[gateway]\n{text}\n");
            let error = NodeConfig::parse(&text, path).unwrap_err().to_string();
            assert!(
                error.contains(&format!("`gateway.{missing}` is missing")),
                "{error}"
            );
        }
    }
}
