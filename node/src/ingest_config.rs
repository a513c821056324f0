//! `[ingest]`: ERP batch uploads (gRPC `TableStream` and HTTP), as the
//! node's config file sets them.
//!
//! Why in the node: the config file is the node's; the gateway, which
//! receives batches, reads its limits from here.

use serde::{Deserialize, Serialize};

/// `[ingest]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// An open batch untouched this long is abandoned: its staged rows are
    /// dropped and its id may start again.
    pub batch_ttl_ms: u64,
    /// How often abandoned batches are looked for.
    pub expiry_interval_ms: u64,
    /// A sender that holds the upload lease of an ERP and goes quiet this
    /// long loses it to the next sender instance that writes.
    pub sender_lease_ms: u64,
    /// Messages of one batch, at most (numbered 1..this).
    pub messages_per_batch_max: u32,
    /// Rows staged in one batch, at most (a batch commits as one write
    /// set, so this stays under the store's limit with room for deletes).
    pub rows_per_batch_max: u64,
    /// Batches one integration client may have open at once.
    pub open_batches_per_client_max: usize,
    /// Finished batches (committed, expired) and event idempotency keys
    /// are kept this many days (the newest of each client always).
    pub history_days: u64,
    /// History records one cleanup pass removes, at most (oldest first).
    pub history_rows_per_run_max: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_ttl_ms: 24 * 3600 * 1000,
            expiry_interval_ms: 60_000,
            sender_lease_ms: 60_000,
            messages_per_batch_max: MESSAGES_PER_BATCH_LIMIT,
            rows_per_batch_max: 50_000,
            open_batches_per_client_max: 16,
            history_days: 30,
            history_rows_per_run_max: 10_000,
        }
    }
}

/// Rows a batch may stage, at most, whatever the config says: the commit
/// is one write set, which also deletes the staged chunks and, for a base
/// load, the rows the load no longer holds.
pub const ROWS_PER_BATCH_LIMIT: u64 = 60_000;
/// Messages a batch may hold, at most, whatever the config says: a batch
/// keeps one entry per message in a single record.
pub const MESSAGES_PER_BATCH_LIMIT: u32 = 500;

impl IngestConfig {
    /// The commented TOML `init` writes.
    pub fn to_commented_toml(&self) -> String {
        format!(
            r#"[ingest]
# ERP batches (gRPC TableStream, POST /api/v1/batches/...).
# An open batch untouched this long is dropped (its id may start again).
batch_ttl_ms = {batch_ttl_ms}
# How often abandoned batches are looked for.
expiry_interval_ms = {expiry_interval_ms}
# A sender instance quiet this long loses the ERP's upload lease.
sender_lease_ms = {sender_lease_ms}
# Messages of one batch, at most (at most {MESSAGES_PER_BATCH_LIMIT}).
messages_per_batch_max = {messages_per_batch_max}
# Rows staged in one batch, at most (at most {ROWS_PER_BATCH_LIMIT}).
rows_per_batch_max = {rows_per_batch_max}
# Batches one integration client may have open at once.
open_batches_per_client_max = {open_batches_per_client_max}
# Finished batches and event idempotency keys are kept this many days.
history_days = {history_days}
# History records one cleanup pass removes, at most.
history_rows_per_run_max = {history_rows_per_run_max}
"#,
            batch_ttl_ms = self.batch_ttl_ms,
            expiry_interval_ms = self.expiry_interval_ms,
            sender_lease_ms = self.sender_lease_ms,
            messages_per_batch_max = self.messages_per_batch_max,
            rows_per_batch_max = self.rows_per_batch_max,
            open_batches_per_client_max = self.open_batches_per_client_max,
            history_days = self.history_days,
            history_rows_per_run_max = self.history_rows_per_run_max,
        )
    }

    /// Values that parse but make no sense, as (key, reason).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let at_least_one = [
            ("ingest.batch_ttl_ms", self.batch_ttl_ms),
            ("ingest.expiry_interval_ms", self.expiry_interval_ms),
            ("ingest.sender_lease_ms", self.sender_lease_ms),
            (
                "ingest.messages_per_batch_max",
                u64::from(self.messages_per_batch_max),
            ),
            ("ingest.rows_per_batch_max", self.rows_per_batch_max),
            (
                "ingest.open_batches_per_client_max",
                self.open_batches_per_client_max as u64,
            ),
            ("ingest.history_days", self.history_days),
            (
                "ingest.history_rows_per_run_max",
                self.history_rows_per_run_max as u64,
            ),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Some((key, "must be at least 1".into()));
        }
        if self.messages_per_batch_max > MESSAGES_PER_BATCH_LIMIT {
            return Some((
                "ingest.messages_per_batch_max",
                format!("must be at most {MESSAGES_PER_BATCH_LIMIT}"),
            ));
        }
        if self.rows_per_batch_max > ROWS_PER_BATCH_LIMIT {
            return Some((
                "ingest.rows_per_batch_max",
                format!("must be at most {ROWS_PER_BATCH_LIMIT}"),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_form_round_trips() {
        let config = IngestConfig {
            batch_ttl_ms: 5,
            rows_per_batch_max: 7,
            ..IngestConfig::default()
        };
        #[derive(Deserialize)]
        struct File {
            ingest: IngestConfig,
        }
        let parsed: File = toml::from_str(&config.to_commented_toml()).unwrap();
        assert_eq!(parsed.ingest, config);
        assert_eq!(config.problem(), None);
        let zero = IngestConfig {
            sender_lease_ms: 0,
            ..config
        };
        assert_eq!(zero.problem().unwrap().0, "ingest.sender_lease_ms");
        let big = IngestConfig {
            rows_per_batch_max: ROWS_PER_BATCH_LIMIT + 1,
            ..config
        };
        assert_eq!(big.problem().unwrap().0, "ingest.rows_per_batch_max");
    }
}
