//! Record collections: which exist, which kind each is, and their limits.
//!
//! Everything an office keeps that is not a work order is a plain versioned
//! record `(collection, key, version, value, deleted)` (DESIGN.md,
//! "Documents"). There are two kinds, and this file is the one place that
//! says which is which:
//!
//! - **Data** collections (reference tables, anything an ERP uploads): on
//!   the changes feed, readable per role, replicated to field nodes whose
//!   role may read them. Any valid name not declared internal is data.
//! - **Internal** collections (the state of features: users, webhooks,
//!   batches, commands): the same write path and durability, but never on
//!   the feed, never over REST's records API, never leaving the central,
//!   except the **office-only** ones (`OFFICE_ONLY_COLLECTIONS`: users and
//!   their enrollments), which travel between offices and nowhere else, so
//!   that two centrals know the same people and devices.

use serde::{Deserialize, Serialize};

/// Bytes of one record's JSON value, at most.
pub const RECORD_VALUE_BYTES_MAX: usize = 64 * 1024;
/// Bytes of one record key, at most.
pub const RECORD_KEY_BYTES_MAX: usize = 512;
/// Bytes of a collection name, at most (`[a-z0-9_-]{1,64}`).
pub const COLLECTION_NAME_BYTES_MAX: usize = 64;
/// Collections that ERP batches and events may create, at most: past
/// this, a table or schema naming a new collection is refused (operators
/// may still create one over the records API).
pub const DATA_COLLECTIONS_MAX: usize = 1024;
/// Record writes in one write set, at most (a whole ERP batch commits as
/// one write set).
pub const WRITE_SET_RECORDS_MAX: usize = 100_000;

/// The collections whose records never leave the central. Declared here
/// and nowhere else.
pub const INTERNAL_COLLECTIONS: &[&str] = &[
    USERS,
    "collection_grants",
    "webhooks",
    "webhook_notifications",
    "webhook_states",
    "delivery_attempts",
    "batches",
    "batch_rows",
    "batch_leases",
    "erp_entities",
    "event_keys",
    "commands",
    "command_history",
    "command_logs",
    COUNTERS,
    "field_app",
    OFFICE_KEYS,
    VOUCHERS,
];

/// The internal collection users and integration clients live in.
pub const USERS: &str = "users";

/// Internal collections whose records still travel between offices (and
/// only there: `node::access::visible` says who sees them), with a
/// changelog entry each. Declared here and nowhere else.
pub const OFFICE_ONLY_COLLECTIONS: &[&str] = &[USERS];

/// Is `name` an internal collection that travels between offices?
pub fn office_only(name: &str) -> bool {
    OFFICE_ONLY_COLLECTIONS.contains(&name)
}

/// Offices' signing keys this node heard of from an office (`node::vouch`),
/// by hex key.
pub const OFFICE_KEYS: &str = "office_keys";
/// Offices' vouchers a technician's device keeps to forward, by document.
pub const VOUCHERS: &str = "vouchers";

/// Per-central counters (`node::numbering`: work-order numbers).
pub const COUNTERS: &str = "counters";

/// Names no record collection may take.
const RESERVED_NAMES: &[&str] = &["work_orders"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionKind {
    Data,
    Internal,
}

impl CollectionKind {
    /// The kind of the collection named `name` (assumed valid).
    pub fn of(name: &str) -> CollectionKind {
        if INTERNAL_COLLECTIONS.contains(&name) {
            CollectionKind::Internal
        } else {
            CollectionKind::Data
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CollectionKind::Data => "data",
            CollectionKind::Internal => "internal",
        }
    }
}

/// A record collection name or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordNameError {
    #[error("collection name `{0}` must match [a-z0-9_-]{{1,64}}")]
    Collection(String),
    #[error("`{0}` is reserved and cannot name a record collection")]
    Reserved(String),
    #[error("record key must be 1 to {RECORD_KEY_BYTES_MAX} bytes without control characters")]
    Key,
    #[error("`{0}` is an internal collection, which only the node itself writes")]
    Internal(String),
}

pub fn validate_collection_name(name: &str) -> Result<(), RecordNameError> {
    let valid = !name.is_empty()
        && name.len() <= COLLECTION_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(RecordNameError::Collection(name.chars().take(80).collect()));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(RecordNameError::Reserved(name.to_string()));
    }
    Ok(())
}

/// The data collection an outside name writes to: an ERP's table
/// (`SA1010`) or an event's schema (`PESSOA`), lowercased, a valid name,
/// never an internal collection. Batches and events both ask this.
pub fn data_collection_for(name: &str) -> Result<String, RecordNameError> {
    let collection = name.to_ascii_lowercase();
    validate_collection_name(&collection)?;
    if CollectionKind::of(&collection) == CollectionKind::Internal {
        return Err(RecordNameError::Internal(collection));
    }
    Ok(collection)
}

/// A key is any text of 1 to `RECORD_KEY_BYTES_MAX` bytes with no control
/// characters (the store separates collection and key with a zero byte).
pub fn validate_record_key(key: &str) -> Result<(), RecordNameError> {
    if key.is_empty() || key.len() > RECORD_KEY_BYTES_MAX || key.chars().any(char::is_control) {
        return Err(RecordNameError::Key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        for good in ["materials", "price-lists", "a", "t_01", &"x".repeat(64)] {
            assert_eq!(validate_collection_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Materials", "a b", "ä", "x/y", &"x".repeat(65)] {
            assert!(validate_collection_name(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            validate_collection_name("work_orders"),
            Err(RecordNameError::Reserved(_))
        ));
        assert_eq!(CollectionKind::of("materials"), CollectionKind::Data);
        assert_eq!(CollectionKind::of("webhooks"), CollectionKind::Internal);
        assert_eq!(CollectionKind::of("users"), CollectionKind::Internal);
        assert!(office_only("users"));
        assert!(!office_only("webhooks") && !office_only("materials"));
        for name in OFFICE_ONLY_COLLECTIONS {
            assert_eq!(CollectionKind::of(name), CollectionKind::Internal, "{name}");
        }
        assert!(validate_record_key("SKU 12/4").is_ok());
        assert!(validate_record_key("").is_err());
        assert!(validate_record_key("a\0b").is_err());
        assert!(validate_record_key(&"k".repeat(513)).is_err());
    }
}
