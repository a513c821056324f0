//! Work orders as Automerge documents: typed operations in, read model out.
//!
//! Why typed operations: every write a user can make (over REST, from the
//! CLI, in the simulator) goes through [`WorkOrderDoc::apply`], which checks
//! the field rules of `fieldsync_schemas::field_rules` before touching the
//! document. Nothing outside this module calls Automerge's mutation API on a
//! work order, so the rules have exactly one place to hold.
//!
//! Bytes in, bytes out: a document is loaded from the concatenation of its
//! stored chunks and each edit yields the bytes of its new change(s), which
//! the store appends as a chunk.

pub mod intake;
pub mod items;
mod ops;
mod read;
mod status;
#[cfg(test)]
pub(crate) mod tests;

pub use ops::{
    signature_problem, OpError, Operation, SignatureProblem, FIELD_TEXT_BYTES_MAX,
    SIGNATURE_BYTES_MAX,
};
pub use read::{assignee, unassigned, ReadError, UNASSIGNED_ENTRIES_MAX, UNASSIGNED_KEY};
pub use status::derive_status;

use automerge::{ActorId, Automerge, ChangeHash};
use fieldsync_schemas::ChangeOp;

/// Size of one document's stored bytes we are willing to load. A work order
/// is ~1 KB; 64 MiB leaves room for years of notes while refusing garbage.
pub const DOC_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Loading a document from stored or received bytes failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("document is {size_bytes} bytes, over the limit of {limit_bytes}")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("document bytes are not a valid Automerge document: {0}")]
    Corrupt(#[from] automerge::AutomergeError),
    #[error("document is not a work order (kind `{0}`)")]
    NotAWorkOrder(String),
}

/// Longest document id accepted (UUIDs are 36 bytes).
pub const DOC_ID_BYTES_MAX: usize = 128;

/// Document ids are short and plain, so they are safe in keys, paths and
/// logs: 1 to 128 ASCII letters, digits, `-` or `_`.
pub fn validate_doc_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > DOC_ID_BYTES_MAX {
        return Err(format!("must be 1 to {DOC_ID_BYTES_MAX} bytes"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("`{id}` may hold only letters, digits, `-` and `_`"));
    }
    Ok(())
}

/// One work order. Cheap to move; owns its Automerge document.
#[derive(Debug, Clone)]
pub struct WorkOrderDoc {
    doc: Automerge,
}

/// What one operation produced: the bytes to append to storage, and the
/// document's heads afterwards.
#[derive(Debug, Clone)]
pub struct Edit {
    /// The new change(s) in Automerge's storage format (`save_after`).
    pub change_bytes: Vec<u8>,
    pub heads: Vec<ChangeHash>,
    pub op: ChangeOp,
}

impl WorkOrderDoc {
    /// Load from stored bytes (a snapshot followed by incremental chunks).
    pub fn load(bytes: &[u8], actor: &ActorId) -> Result<WorkOrderDoc, LoadError> {
        if bytes.len() > DOC_BYTES_MAX {
            return Err(LoadError::TooLarge {
                size_bytes: bytes.len(),
                limit_bytes: DOC_BYTES_MAX,
            });
        }
        let mut doc = Automerge::load(bytes)?;
        doc.set_actor(actor.clone());
        let kind = read::root_str(&doc, "kind").unwrap_or_default();
        if kind != "work_order" {
            return Err(LoadError::NotAWorkOrder(kind));
        }
        Ok(WorkOrderDoc { doc })
    }

    /// Wrap an Automerge document (received whole from a peer). The caller
    /// has validated it.
    pub fn from_automerge(mut doc: Automerge, actor: &ActorId) -> Result<WorkOrderDoc, LoadError> {
        doc.set_actor(actor.clone());
        let kind = read::root_str(&doc, "kind").unwrap_or_default();
        if kind != "work_order" {
            return Err(LoadError::NotAWorkOrder(kind));
        }
        Ok(WorkOrderDoc { doc })
    }

    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// Mutable access for the sync engine, which applies validated remote
    /// changes. Typed operations go through [`WorkOrderDoc::apply`].
    pub fn automerge_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The whole document, compacted: a snapshot for storage.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn id(&self) -> String {
        read::root_str(&self.doc, "id").unwrap_or_default()
    }

    /// The assignee, read without building the whole view: the access
    /// policy calls this on every visibility decision.
    pub fn assignee(&self) -> Option<String> {
        read::assignee(&self.doc)
    }

    /// When each former assignee stopped being one ([`read::unassigned`]).
    pub fn unassigned(&self) -> Vec<(String, u64)> {
        read::unassigned(&self.doc)
    }

    pub fn number(&self) -> String {
        read::root_str(&self.doc, "number").unwrap_or_default()
    }

    pub fn is_deleted(&self) -> bool {
        read::root_bool(&self.doc, "deleted")
    }
}

/// Hex form of heads, as stored in the changelog and shown in the API.
pub fn heads_hex(heads: &[ChangeHash]) -> Vec<String> {
    heads.iter().map(|head| head.to_string()).collect()
}
