//! Key layout of the `data` tree.
//!
//! Why one tree for documents, index, changelog and checkpoints: sled makes a
//! batch atomic only within one tree (`Tree::apply_batch`). A document's new
//! chunk, its index entry, its changelog entry and a checkpoint that depends
//! on it must land together or not at all, so they share a tree and are told
//! apart by a one-byte prefix. Big-endian integers keep range scans ordered.
//! Records (`r`) and their per-collection figures (`k`) live here too, so
//! a write set may hold documents and records and still land atomically.

pub(crate) const CHANGELOG: u8 = b'c';
pub(crate) const CHUNK: u8 = b'd';
pub(crate) const INDEX: u8 = b'i';
pub(crate) const CHECKPOINT: u8 = b'p';
pub(crate) const REVOCATION: u8 = b'v';
pub(crate) const RECORD: u8 = b'r';
pub(crate) const COLLECTION: u8 = b'k';
/// The reader index (`reader_index.rs`): a user's work-order entries.
pub(crate) const USER_CHANGE: u8 = b'u';
/// The reader index: the changelog entries of data records.
pub(crate) const RECORD_CHANGE: u8 = b'l';

pub use crate::doc::DOC_ID_BYTES_MAX;

pub(crate) fn changelog(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = CHANGELOG;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn changelog_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    (key.len() == 9 && key[0] == CHANGELOG).then(|| u64::from_be_bytes(bytes))
}

pub(crate) fn index(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(INDEX);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Chunks of one document: prefix, id, a zero byte, then the chunk number.
/// The zero byte keeps one id's chunks from mixing with a longer id's.
pub(crate) fn chunk_prefix(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + id.len() + 4);
    key.push(CHUNK);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key
}

pub(crate) fn chunk(id: &str, number: u32) -> Vec<u8> {
    let mut key = chunk_prefix(id);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

pub(crate) fn checkpoint(peer: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + peer.len());
    key.push(CHECKPOINT);
    key.extend_from_slice(peer.as_bytes());
    key
}

/// Revocations of one user: prefix, user id, a zero byte. User ids never
/// hold a zero byte (`users::validate_id`).
pub(crate) fn revocation_prefix(user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + user.len());
    key.push(REVOCATION);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key
}

/// A document reassigned away from `user`; the value is when (ms, BE u64).
pub(crate) fn revocation(user: &str, id: &str) -> Vec<u8> {
    let mut key = revocation_prefix(user);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Records of one collection: prefix, name, a zero byte. Collection names
/// never hold a zero byte (`validate_collection_name`).
pub(crate) fn record_prefix(collection: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + collection.len());
    key.push(RECORD);
    key.extend_from_slice(collection.as_bytes());
    key.push(0);
    key
}

pub(crate) fn record(collection: &str, record_key: &str) -> Vec<u8> {
    let mut key = record_prefix(collection);
    key.extend_from_slice(record_key.as_bytes());
    key
}

pub(crate) fn collection(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(COLLECTION);
    key.extend_from_slice(name.as_bytes());
    key
}

/// A user's entries in the reader index: prefix, user id, a zero byte.
/// User ids never hold a zero byte (`users::validate_id`).
pub(crate) fn user_change_prefix(user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + user.len() + 8);
    key.push(USER_CHANGE);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key
}

/// Changelog entry `seq` names a work order `user` may see (value empty:
/// the entry itself is read from the changelog).
pub(crate) fn user_change(user: &str, seq: u64) -> Vec<u8> {
    let mut key = user_change_prefix(user);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Changelog entry `seq` wrote a data record (value empty).
pub(crate) fn record_change(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = RECORD_CHANGE;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The seq at the end of a reader-index key (`user_change`, `record_change`).
pub(crate) fn trailing_seq(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    let bytes: [u8; 8] = key.get(start..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
