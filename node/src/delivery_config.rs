//! `[delivery]`: webhooks, asynchronous commands and the retention of their
//! logs, as the node's config file sets them.
//!
//! Why in the node: the config file is the node's, and the binary builds
//! every task's settings from one parsed file. The gateway, which runs
//! delivery, turns this section into its own typed settings (networks
//! parsed, durations checked) when it starts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[delivery]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Run the webhook dispatcher, the command scheduler and retention on
    /// this node. `None` (not set): on for a central, off for a field
    /// node. Only one central of a cluster may dispatch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Networks webhooks may reach although the SSRF rules refuse them
    /// (loopback, private ranges), e.g. `["127.0.0.0/8"]`. Empty by default.
    pub allow_networks: Vec<String>,
    /// Time allowed for one delivery, connection included.
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Bytes of a receiver's answer kept in the attempt log.
    pub response_bytes_max: usize,
    /// Changes merged into one notification, at most.
    pub notification_changes_max: usize,
    /// Bytes of one notification's body, at most (a change whose data
    /// alone passes it is sent without its data).
    pub notification_bytes_max: usize,
    /// Hooks delivering at the same time, at most.
    pub hooks_concurrent_max: usize,
    /// A hook failing for this many days is disabled.
    pub disable_after_days: u64,
    /// After a secret rotation the old secret still signs for this long.
    pub rotation_overlap_ms: u64,
    /// Attempts, notifications, command history and logs are kept this
    /// many days (the last success of each subject always).
    pub retention_days: u64,
    /// Rows retention removes per run, at most.
    pub retention_rows_per_run_max: usize,
    pub retention_interval_ms: u64,
    /// The retry rule of commands without one of their own.
    pub commands: RetryRuleConfig,
    /// Retry rules per command name (`[delivery.command_rules.anonymise]`).
    pub command_rules: BTreeMap<String, RetryRuleConfig>,
}

/// A failed command's next attempt comes
/// `interval_ms × factor × attempts_max × current_attempt` after the
/// failure; after `attempts_max` failures it is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryRuleConfig {
    pub interval_ms: u64,
    pub factor: u32,
    pub attempts_max: u32,
}

impl Default for RetryRuleConfig {
    fn default() -> Self {
        RetryRuleConfig {
            interval_ms: 60_000,
            factor: 1,
            attempts_max: 3,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            enabled: None,
            allow_networks: Vec::new(),
            timeout_ms: 15_000,
            connect_timeout_ms: 5_000,
            response_bytes_max: 4096,
            notification_changes_max: 200,
            notification_bytes_max: 48 * 1024,
            hooks_concurrent_max: 16,
            disable_after_days: 5,
            rotation_overlap_ms: 24 * 3600 * 1000,
            retention_days: 30,
            retention_rows_per_run_max: 10_000,
            retention_interval_ms: 3600 * 1000,
            commands: RetryRuleConfig::default(),
            command_rules: BTreeMap::new(),
        }
    }
}

impl DeliveryConfig {
    /// The commented TOML `init` writes.
    pub fn to_commented_toml(&self) -> String {
        let networks = self
            .allow_networks
            .iter()
            .map(|network| toml::Value::String(network.clone()).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let enabled = match self.enabled {
            Some(on) => format!("enabled = {on}\n"),
            None => "# enabled = true   # default: on for a central, off for a field node\n".into(),
        };
        format!(
            r#"[delivery]
# Webhooks and asynchronous commands. Only one central of a cluster may
# dispatch: set `enabled = false` on the others.
{enabled}# Networks webhooks may reach although they are loopback or private,
# e.g. ["127.0.0.0/8"] for a receiver on this machine. Empty: public only.
allow_networks = [{networks}]
# Time one delivery may take, connection included (the receiver must
# answer 2xx within it).
timeout_ms = {timeout_ms}
# Time to connect to a receiver.
connect_timeout_ms = {connect_timeout_ms}
# Bytes of a receiver's answer kept in the attempt log.
response_bytes_max = {response_bytes_max}
# Changes merged into one notification, at most.
notification_changes_max = {changes}
# Bytes of one notification's body, at most.
notification_bytes_max = {notification_bytes_max}
# Hooks delivering at the same time, at most.
hooks_concurrent_max = {hooks_concurrent_max}
# A hook failing for this many days is disabled.
disable_after_days = {disable}
# After a secret rotation the old secret still signs this long.
rotation_overlap_ms = {rotation_overlap_ms}
# Attempts, command history and logs are kept this many days.
retention_days = {retention}
# Rows retention removes per run, at most, and how often it runs.
retention_rows_per_run_max = {retention_rows_per_run_max}
# How often retention runs.
retention_interval_ms = {retention_interval_ms}
[delivery.commands]
# A failed command waits interval_ms × factor × attempts_max × attempt
# (reference §4); per command name in [delivery.command_rules.<name>].
interval_ms = {interval}
# The formula's factor.
factor = {factor}
# Failed executions after which a command is dead.
attempts_max = {attempts}
{rules}"#,
            timeout_ms = self.timeout_ms,
            response_bytes_max = self.response_bytes_max,
            notification_bytes_max = self.notification_bytes_max,
            hooks_concurrent_max = self.hooks_concurrent_max,
            rotation_overlap_ms = self.rotation_overlap_ms,
            retention_rows_per_run_max = self.retention_rows_per_run_max,
            retention_interval_ms = self.retention_interval_ms,
            rules = self.command_rules_toml(),
            connect_timeout_ms = self.connect_timeout_ms,
            changes = self.notification_changes_max,
            disable = self.disable_after_days,
            retention = self.retention_days,
            interval = self.commands.interval_ms,
            factor = self.commands.factor,
            attempts = self.commands.attempts_max,
        )
    }

    /// `[delivery.command_rules.<name>]` tables, one per rule.
    fn command_rules_toml(&self) -> String {
        self.command_rules
            .iter()
            .map(|(name, rule)| {
                format!(
                    "# The retry rule of commands named {name:?}.\n[delivery.command_rules.{}]\n\
                     # One interval of the formula.\ninterval_ms = {}\n\
                     # The formula's factor.\nfactor = {}\n\
                     # Failed executions after which it is dead.\nattempts_max = {}\n",
                    toml::Value::String(name.clone()),
                    rule.interval_ms,
                    rule.factor,
                    rule.attempts_max
                )
            })
            .collect()
    }

    /// Values that parse but make no sense, as (key, reason).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let at_least_one = [
            ("delivery.timeout_ms", self.timeout_ms),
            ("delivery.connect_timeout_ms", self.connect_timeout_ms),
            (
                "delivery.notification_changes_max",
                self.notification_changes_max as u64,
            ),
            (
                "delivery.notification_bytes_max",
                self.notification_bytes_max as u64,
            ),
            (
                "delivery.hooks_concurrent_max",
                self.hooks_concurrent_max as u64,
            ),
            ("delivery.disable_after_days", self.disable_after_days),
            ("delivery.retention_days", self.retention_days),
            (
                "delivery.retention_rows_per_run_max",
                self.retention_rows_per_run_max as u64,
            ),
            ("delivery.retention_interval_ms", self.retention_interval_ms),
            (
                "delivery.commands.attempts_max",
                u64::from(self.commands.attempts_max),
            ),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Some((key, "must be at least 1".into()));
        }
        if self
            .command_rules
            .values()
            .any(|rule| rule.attempts_max == 0)
        {
            return Some((
                "delivery.command_rules.<name>.attempts_max",
                "must be at least 1".into(),
            ));
        }
        if self.notification_changes_max > 1000 {
            return Some((
                "delivery.notification_changes_max",
                "must be at most 1000".into(),
            ));
        }
        if self.notification_bytes_max > 48 * 1024 {
            return Some((
                "delivery.notification_bytes_max",
                "must be at most 49152 (a notification is kept as one record)".into(),
            ));
        }
        None
    }

    /// Whether this node runs delivery (`enabled`, else on for a central).
    pub fn runs_on(&self, central: bool) -> bool {
        self.enabled.unwrap_or(central)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fieldsync enroll` rewrites the config from `to_commented_toml`:
    /// every setting must survive it.
    #[test]
    fn the_written_section_reads_back_the_same() {
        let mut config = DeliveryConfig {
            enabled: Some(false),
            allow_networks: vec!["127.0.0.0/8".into()],
            response_bytes_max: 1000,
            notification_bytes_max: 2000,
            hooks_concurrent_max: 3,
            rotation_overlap_ms: 4000,
            retention_rows_per_run_max: 5,
            retention_interval_ms: 6000,
            ..DeliveryConfig::default()
        };
        config.command_rules.insert(
            "anonymise person".into(),
            RetryRuleConfig {
                interval_ms: 7,
                factor: 8,
                attempts_max: 9,
            },
        );
        #[derive(Deserialize)]
        struct File {
            delivery: DeliveryConfig,
        }
        let text = config.to_commented_toml();
        let read: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(read.delivery, config);
    }
}
