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

/// One changelog entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub collection: Collection,
    pub id: String,
    pub number: Option<String>,
    pub op: ChangeOp,
    pub heads: Vec<[u8; 32]>,
}

impl ChangeRecord {
    pub fn into_entry(self, seq: u64) -> ChangeEntry {
        ChangeEntry {
            seq,
            collection: self.collection,
            id: self.id,
            number: self.number,
            op: self.op,
            heads: self.heads.iter().map(hex::encode).collect(),
        }
    }
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
