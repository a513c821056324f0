//! Changelog entries: what the changes feed and the sync engine read.

use serde::{Deserialize, Serialize};

/// A named collection of documents in a store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collection {
    /// Work orders: one Automerge document each.
    WorkOrders,
    /// Reference data (customers, catalogue, uploaded tables): plain
    /// versioned records with a single writer. The name is the table.
    Reference(String),
}

impl Collection {
    /// The name as used in the feed's `collection` parameter.
    pub fn name(&self) -> &str {
        match self {
            Collection::WorkOrders => "work_orders",
            Collection::Reference(name) => name,
        }
    }
}

/// What a change did to its document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

impl ChangeOp {
    /// The name the feed and webhooks use (`create`, `update`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }
}

/// One entry of a store's changelog: a local, gap-free sequence number and
/// the document it touched, with the document's heads after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub seq: u64,
    pub collection: Collection,
    pub id: String,
    /// External id (the work order number), when the document has one.
    pub number: Option<String>,
    pub op: ChangeOp,
    /// Heads of the document after this change, hex-encoded change hashes
    /// (empty for records).
    pub heads: Vec<String>,
    /// A record's version after this change (`None` for work orders).
    pub version: Option<u64>,
}
