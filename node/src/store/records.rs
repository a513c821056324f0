//! The values stored under the `data` tree's keys.
//!
//! postcard: compact and fast for records written on every commit. Each type
//! here is part of the on-disk format: changing one means a new store format
//! version and a migration (see `format.rs`).

use fieldsync_schemas::{ChangeEntry, ChangeOp, Collection};
use serde::{Deserialize, Serialize};

/// Per-document metadata, enough to decide visibility and to find the
/// document's chunks without loading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocIndex {
    pub collection: Collection,
    pub number: Option<String>,
    pub assignee: Option<String>,
    pub deleted: bool,
    /// Seq of the latest changelog entry for this document.
    pub last_seq: u64,
    pub heads: Vec<[u8; 32]>,
    /// Chunk numbers in use are `chunk_first..chunk_next`.
    pub chunk_first: u32,
    pub chunk_next: u32,
    pub bytes_stored: u64,
    /// The assignee before the latest reassignment: it keeps seeing the
    /// document for the sync grace period (set by the committer).
    pub previous_assignee: Option<String>,
    /// When the latest reassignment was stored, in ms since the Unix epoch
    /// (0: never reassigned).
    pub reassigned_at_ms: u64,
}

impl DocIndex {
    pub fn chunk_count(&self) -> u32 {
        self.chunk_next - self.chunk_first
    }
}

/// One changelog entry as stored (format 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub collection: Collection,
    /// The document id, or the record key.
    pub id: String,
    pub number: Option<String>,
    pub op: ChangeOp,
    pub heads: Vec<[u8; 32]>,
    /// A record's version after the change; 0 for work orders.
    pub version: u64,
}

/// A changelog entry as format 1 stored it: no version. postcard is not
/// self-describing, so an old entry fails to decode as the new one (it
/// ends before `version`) and is read as this instead: format 2 needs no
/// rewrite of the changelog.
#[derive(Deserialize)]
struct ChangeRecordV1 {
    collection: Collection,
    id: String,
    number: Option<String>,
    op: ChangeOp,
    heads: Vec<[u8; 32]>,
}

impl ChangeRecord {
    pub fn decode(bytes: &[u8]) -> Result<ChangeRecord, postcard::Error> {
        decode::<ChangeRecord>(bytes).or_else(|_| {
            let old: ChangeRecordV1 = decode(bytes)?;
            Ok(ChangeRecord {
                collection: old.collection,
                id: old.id,
                number: old.number,
                op: old.op,
                heads: old.heads,
                version: 0,
            })
        })
    }

    pub fn is_work_order(&self) -> bool {
        self.collection == Collection::WorkOrders
    }

    pub fn into_entry(self, seq: u64) -> ChangeEntry {
        let version = (!self.is_work_order()).then_some(self.version);
        ChangeEntry {
            seq,
            collection: self.collection,
            id: self.id,
            number: self.number,
            op: self.op,
            heads: self.heads.iter().map(hex::encode).collect(),
            version,
        }
    }
}

/// One record as stored under `keys::record`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// 1 for the first write; every write (a delete too) adds one, and a
    /// record written again after a delete goes on counting.
    pub version: u64,
    pub deleted: bool,
    /// Seq of the latest changelog entry (0: internal, never on the log).
    pub last_seq: u64,
    /// The JSON value (empty for a deleted record).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Per-collection figures under `keys::collection`, kept by the committer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionStats {
    /// Records not deleted.
    pub live: u64,
}

/// What this node has durably received from a peer: the peer's store epoch
/// and the last of the peer's seqs applied here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub epoch: [u8; 16],
    pub seq: u64,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    postcard::to_allocvec(value).expect("postcard encoding of a plain record")
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
