//! Checks on what the peer sends, before Automerge parses it or the store
//! takes it: the intake limits (`doc::intake`: every compressed part
//! inflates within a byte budget, and the operations stay within a count;
//! Automerge would inflate them with no cap), and that a document is the
//! work order its id names.
//!
//! An `Err` from these ends the session: the peer sent something no
//! honest node sends.

use automerge::{Automerge, ReadDoc};

use super::{Session, SessionError};
use crate::doc::intake;
use crate::sync::store::SyncStore;

impl Session {
    /// Check Automerge bytes from the peer before Automerge parses them
    /// (`doc::intake`): compressed parts may inflate to the session's
    /// budget less `already_inflated_bytes`, or the session ends.
    pub(super) fn check_intake(
        &self,
        id: &str,
        bytes: &[u8],
        already_inflated_bytes: u64,
    ) -> Result<intake::Checked, SessionError> {
        let mut limits = self.intake_limits();
        limits.inflated_bytes_max = limits
            .inflated_bytes_max
            .saturating_sub(already_inflated_bytes);
        check_intake(id, bytes, limits)
    }

    /// The intake limits of one whole document.
    pub(super) fn intake_limits(&self) -> intake::Limits {
        intake::Limits {
            inflated_bytes_max: self.config.inflated_bytes_max,
            ops_max: self.config.intake_ops_max,
        }
    }
}

/// [`intake::check`], its refusal a document error that ends the session.
fn check_intake(
    id: &str,
    bytes: &[u8],
    limits: intake::Limits,
) -> Result<intake::Checked, SessionError> {
    intake::check(bytes, limits).map_err(|e| SessionError::Document {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// Whole documents a peer sent, parsed (by the store, perhaps on several
/// threads) and each checked to be the work order its id names.
pub(super) fn load_work_orders<S: SyncStore>(
    batch: &[(String, Vec<u8>)],
    limits: intake::Limits,
    store: &S,
) -> Result<Vec<Automerge>, SessionError> {
    for (id, bytes) in batch {
        let checked = check_intake(id, bytes, limits)?;
        if !checked.is_whole(bytes) {
            return Err(SessionError::Document {
                id: id.clone(),
                reason: format!(
                    "unreadable Automerge chunk at byte {}",
                    checked.prefix_bytes
                ),
            });
        }
    }
    let loaded = store.load_docs(batch);
    assert_eq!(loaded.len(), batch.len());
    batch
        .iter()
        .zip(loaded)
        .map(|((id, _), doc)| {
            let doc = doc.map_err(|e| SessionError::Document {
                id: id.clone(),
                reason: e.to_string(),
            })?;
            check_is_work_order(id, &doc)?;
            Ok(doc)
        })
        .collect()
}

pub(super) fn check_is_work_order(id: &str, doc: &Automerge) -> Result<(), SessionError> {
    let field = |key: &str| {
        doc.get(automerge::ROOT, key)
            .ok()
            .flatten()
            .and_then(|(v, _)| v.as_str().map(str::to_string))
    };
    if field("kind").as_deref() != Some("work_order") || field("id").as_deref() != Some(id) {
        return Err(SessionError::Document {
            id: id.to_string(),
            reason: "not a work order with this id".into(),
        });
    }
    Ok(())
}
