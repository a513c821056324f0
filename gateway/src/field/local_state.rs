//! What the app remembers for the technician on this laptop: which
//! version of each work order they last looked at (for "changed since you
//! last looked", and to name a work order that has since left the laptop)
//! and the timers they started and have not stopped.
//!
//! Why durable: a laptop restarts, and a timer started before lunch must
//! still be running after it. The state is one small JSON value per user,
//! bounded by [`SEEN_ENTRIES_MAX`] work orders, so it fits one record.
//!
//! Where it lives: a record of the internal collection [`COLLECTION`]
//! (`Store::write_record`, durable before it returns, through the one
//! committer), keyed by user; internal records never leave the node.

use std::collections::BTreeMap;

use fieldsync_node::store::{Expect, Store};
use fieldsync_schemas::collection::{CollectionKind, RECORD_VALUE_BYTES_MAX};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The internal record collection the state belongs in, keyed by user.
pub(super) const COLLECTION: &str = "field_app";
/// Work orders remembered at most; the oldest looked-at go first.
pub(super) const SEEN_ENTRIES_MAX: usize = 300;
/// Running timers at most.
const TIMERS_MAX: usize = 50;

/// A work order as last looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Seen {
    /// Its number (`WO-...`), to name it once it is gone.
    pub(super) number: String,
    /// A short digest of its heads then.
    pub(super) version: String,
    /// When, ms since the Unix epoch (which to forget first).
    pub(super) at_ms: u64,
}

/// The technician's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LocalState {
    #[serde(default)]
    pub(super) seen: BTreeMap<String, Seen>,
    /// Running timers: work-order id → start (RFC 3339).
    #[serde(default)]
    pub(super) timers: BTreeMap<String, String>,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(super) enum StateError {
    #[error("the field app's state is unreadable: {0}")]
    Read(String),
    #[error("the field app's state could not be saved: {0}")]
    Write(String),
    #[error("too many timers are running ({TIMERS_MAX}); stop one first")]
    TooManyTimers,
}

/// A short digest of a version's heads.
pub(super) fn version_of(heads: &[String]) -> String {
    let digest = sha2::Sha256::digest(heads.join(".").as_bytes());
    hex::encode(&digest[..8])
}

/// The user's state (empty if none was saved).
pub(super) fn load(store: &Store, user: &str) -> Result<LocalState, StateError> {
    debug_assert_eq!(CollectionKind::of(COLLECTION), CollectionKind::Internal);
    let bytes = match store.record(COLLECTION, user) {
        Ok(Some(record)) if !record.deleted => record.value,
        Ok(_) => return Ok(LocalState::default()),
        Err(error) => return Err(StateError::Read(error.to_string())),
    };
    serde_json::from_slice(&bytes).map_err(|error| StateError::Read(error.to_string()))
}

/// Save the user's state, bounded; durable when this returns.
pub(super) fn save(store: &Store, user: &str, state: &mut LocalState) -> Result<(), StateError> {
    if state.timers.len() > TIMERS_MAX {
        return Err(StateError::TooManyTimers);
    }
    while state.seen.len() > SEEN_ENTRIES_MAX {
        let oldest = state
            .seen
            .iter()
            .min_by_key(|(_, seen)| seen.at_ms)
            .map(|(id, _)| id.clone());
        if let Some(oldest) = oldest {
            state.seen.remove(&oldest);
        }
    }
    let bytes = serde_json::to_vec(state).map_err(|error| StateError::Write(error.to_string()))?;
    if bytes.len() > RECORD_VALUE_BYTES_MAX {
        return Err(StateError::Write(format!(
            "{} bytes, over {RECORD_VALUE_BYTES_MAX}",
            bytes.len()
        )));
    }
    store
        .write_record(COLLECTION, user, Some(bytes), Expect::Any)
        .map(|_| ())
        .map_err(|error| StateError::Write(error.to_string()))
}
