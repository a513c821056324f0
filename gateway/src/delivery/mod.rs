//! Delivery: webhooks that push what changed to external systems, and
//! asynchronous commands between apps and sites, with one attempt log and
//! one retention job.
//!
//! Why it lives in the gateway and stores in the node: hooks, their
//! cursors, frozen notifications, attempts, commands and logs are records
//! of internal collections, written through the node's one committer
//! (acknowledged when durable), and what a hook may see is the feed's one
//! visibility rule, read through the node's feed reader as the hook's
//! owner. No second store, no second visibility check.
//!
//! Files, one concept each:
//! - `penalty.rs`: the webhook retry scheduler, a pure function of
//!   (health, outcome, now);
//! - `command_schedule.rs`: a command's lifecycle and retry formula, pure;
//! - `retention.rs`: which log rows to prune, pure;
//! - `notification.rs`: which changes a hook's filters keep, and the body;
//! - `signing.rs`: Standard Webhooks headers;
//! - `ssrf.rs`, `client.rs`: where a delivery may go, and the HTTP client
//!   that goes only there;
//! - `hook.rs`, `attempts.rs`, `commands.rs`: what is stored;
//! - `alerts.rs`: telling operators' hooks that a hook was disabled;
//! - `dispatcher.rs`, `retention_task.rs`: the thin tasks around the pure
//!   cores.

pub(crate) mod alerts;
pub mod attempts;
pub mod client;
pub(crate) mod command_schedule;
pub(crate) mod commands;
pub(crate) mod dispatcher;
pub(crate) mod hook;
pub(crate) mod notification;
pub(crate) mod penalty;
pub(crate) mod retention;
pub(crate) mod retention_task;
pub(crate) mod signing;
pub(crate) mod ssrf;

use std::sync::Arc;

use fieldsync_node::config::DeliveryConfig;

pub use attempts::{AttemptKind, AttemptRow};
pub use client::StaticLookup;
pub(crate) use client::{ClientConfig, DeliveryClient, Lookup, SystemLookup};
use command_schedule::RetryRule;
use penalty::PenaltyPolicy;
use retention::RetentionPolicy;

use crate::config::ConfigError;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// Delivery's settings, checked, from `[delivery]`.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) client: ClientConfig,
    pub(crate) policy: PenaltyPolicy,
    pub(crate) notification_changes_max: usize,
    pub(crate) notification_bytes_max: usize,
    pub(crate) hooks_concurrent_max: usize,
    pub(crate) rotation_overlap_ms: u64,
    pub(crate) retention: RetentionPolicy,
    pub(crate) retention_interval_ms: u64,
    pub(crate) command_rule: RetryRule,
    pub(crate) command_rules: std::collections::BTreeMap<String, RetryRule>,
}

fn rule(config: &fieldsync_node::config::RetryRuleConfig) -> RetryRule {
    RetryRule {
        interval_ms: config.interval_ms,
        factor: config.factor,
        attempts_max: config.attempts_max,
    }
}

impl Settings {
    pub(crate) fn from_config(config: &DeliveryConfig) -> Result<Settings, ConfigError> {
        if let Some((key, reason)) = config.problem() {
            return Err(ConfigError(format!("{key} {reason}")));
        }
        let allow_networks =
            crate::config::parse_networks("delivery.allow_networks", &config.allow_networks)?;
        Ok(Settings {
            client: ClientConfig {
                connect_timeout_ms: config.connect_timeout_ms,
                timeout_ms: config.timeout_ms,
                response_bytes_max: config.response_bytes_max,
                allow_networks,
            },
            policy: PenaltyPolicy {
                disable_after_ms: config.disable_after_days.saturating_mul(DAY_MS),
                ..PenaltyPolicy::default()
            },
            notification_changes_max: config.notification_changes_max,
            notification_bytes_max: config.notification_bytes_max,
            hooks_concurrent_max: config.hooks_concurrent_max,
            rotation_overlap_ms: config.rotation_overlap_ms,
            retention: RetentionPolicy {
                keep_ms: config.retention_days.saturating_mul(DAY_MS),
                rows_per_run_max: config.retention_rows_per_run_max,
            },
            retention_interval_ms: config.retention_interval_ms,
            command_rule: rule(&config.commands),
            command_rules: config
                .command_rules
                .iter()
                .map(|(name, config)| (name.clone(), rule(config)))
                .collect(),
        })
    }

    /// The retry rule of commands named `name`.
    pub(crate) fn command_rule(&self, name: &str) -> RetryRule {
        self.command_rules
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.command_rule.clone())
    }
}

/// Delivery's shared parts: settings, the one outbound client, and the
/// dispatcher's wake-up (a hook registered, retried or rotated).
pub(crate) struct Delivery {
    pub(crate) settings: Settings,
    /// The client, or why it could not be built (no CA certificates on
    /// the machine, say): every delivery then fails with that reason, and
    /// the rest of the gateway serves on.
    client: Result<DeliveryClient, String>,
    lookup: Arc<dyn Lookup>,
    pub(crate) wake: tokio::sync::Notify,
}

impl Delivery {
    pub(crate) fn new(
        settings: Settings,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Delivery, ConfigError> {
        let client = DeliveryClient::new(settings.client.clone(), lookup.clone()).map_err(|e| {
            tracing::error!(error = %e, "webhook client unusable: deliveries will fail");
            format!("the webhook client could not be built: {e}")
        });
        Ok(Delivery {
            settings,
            client,
            lookup,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// POST through the SSRF-safe client.
    pub(crate) async fn post(
        &self,
        url: &str,
        headers: reqwest::header::HeaderMap,
        body: bytes::Bytes,
    ) -> client::Attempt {
        match &self.client {
            Ok(client) => client.post(url, headers, body).await,
            Err(reason) => client::Attempt {
                outcome: client::AttemptOutcome::Failed {
                    reason: reason.clone(),
                },
                duration_ms: 0,
            },
        }
    }

    /// Whether `url` may be a hook's destination now: the URL's own
    /// checks, and a name must resolve to at least one address the SSRF
    /// rules admit (every delivery checks again, in the resolver).
    pub(crate) async fn check_destination(&self, url: &str) -> Result<(), String> {
        let allow = &self.settings.client.allow_networks;
        let parsed = ssrf::check_url(url, allow).map_err(|e| e.to_string())?;
        let Some(name) = parsed.domain() else {
            return Ok(());
        };
        let port = parsed.port_or_known_default().unwrap_or(443);
        client::resolve_checked(self.lookup.as_ref(), name, port, allow)
            .await
            .map(|_| ())
    }
}
