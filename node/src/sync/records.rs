//! Records over sync: an office sends the data records a peer's role may
//! read, with the changelog page that covers them (protocol version 4).
//!
//! Why with the page and not on their own: the receiver's checkpoint for
//! the office advances when a page completes, and its store is FIFO, so a
//! `Records` frame sent just before the page's frame is stored before the
//! checkpoint that covers it. No per-record acknowledgement, no new state:
//! a session that breaks in between sends the same copies again, and a copy
//! that is not newer than the receiver's changes nothing.
//!
//! Why only an office sends: records have one writer, the office (DESIGN.md,
//! "Documents"); a field node holds read-only copies and never sends a
//! record write, and a node refuses `Records` from anyone but an office.
//!
//! Office-only records (users, version 7) ride the same pages between two
//! offices: `access::visible` lets only an office peer see them, a peer of
//! an older version never gets them (it would refuse them as internal),
//! and the receiver checks each copy (`users::check_copy`) and its store
//! merges it with its own instead of newest-wins (`users::merge`).

use std::collections::HashSet;

use fieldsync_schemas::collection::office_only;
use fieldsync_schemas::collection::{
    validate_collection_name, validate_record_key, CollectionKind, RECORD_VALUE_BYTES_MAX,
};
use fieldsync_schemas::sync_frame::{RecordCopy, PAGE_DOCS_MAX, PROTOCOL_VERSION_USERS};
use fieldsync_schemas::Collection;

use super::store::{LogEntry, SyncStore};
use crate::access::{self, PeerAccess, Purpose, Subject, Viewer};

/// The records of one page.
#[derive(Debug, Default)]
pub(super) struct RecordsPage {
    /// Each copy with the seq of the entry it was read for.
    pub(super) copies: Vec<(u64, RecordCopy)>,
    /// The first entry the byte budget left out: the page must end before
    /// it (the next page starts there).
    pub(super) end_before_seq: Option<u64>,
}

impl RecordsPage {
    /// The copies of entries up to `upto_seq`, the page's last.
    pub(super) fn upto(self, upto_seq: u64) -> Vec<RecordCopy> {
        self.copies
            .into_iter()
            .filter(|(seq, _)| *seq <= upto_seq)
            .map(|(_, copy)| copy)
            .collect()
    }
}

/// Who asks and when, for the visibility rule.
pub(super) struct Audience<'a> {
    pub(super) peer: &'a PeerAccess,
    pub(super) now_ms: u64,
    pub(super) grace_ms: u64,
    /// The session's protocol version.
    pub(super) version: u16,
}

/// The copy of every record in `entries` the peer may read, each once, at
/// the version its entry wrote, within `bytes_max` (at least one copy when
/// any is due).
pub(super) fn for_page<S: SyncStore>(
    entries: &[LogEntry],
    audience: &Audience<'_>,
    bytes_max: usize,
    store: &S,
) -> Result<RecordsPage, S::Error> {
    let mut page = RecordsPage::default();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut readable: Vec<(&str, bool)> = Vec::new();
    let mut bytes = 0usize;
    for entry in entries {
        let Collection::Reference(collection) = &entry.collection else {
            continue;
        };
        if seen.contains(&(collection.as_str(), entry.id.as_str()))
            || !may_read(collection, audience, &mut readable, store)?
        {
            continue;
        }
        let Some(held) = store.record(collection, &entry.id)? else {
            continue;
        };
        // The record moved on since this entry. If the newer version is
        // durable, its own entry (later in the log) sends it. If not, the
        // page must end here: sending it could hand the peer a version a
        // crash takes back (and a later write reuses), and skipping it
        // could let the checkpoint pass the last version the peer gets if
        // the newer one is lost (simulator, seed 1974).
        if held.copy.version != entry.version {
            if !held.durable {
                page.end_before_seq = Some(entry.seq);
                break;
            }
            continue;
        }
        let copy = held.copy;
        seen.insert((collection.as_str(), entry.id.as_str()));
        let size = copy.value.len() + copy.key.len() + copy.collection.len();
        if bytes + size > bytes_max && !page.copies.is_empty() {
            page.end_before_seq = Some(entry.seq);
            break;
        }
        bytes += size;
        page.copies.push((entry.seq, copy));
    }
    Ok(page)
}

/// May the peer read `collection`? Asked once per collection and page.
fn may_read<'a, S: SyncStore>(
    collection: &'a str,
    audience: &Audience<'_>,
    readable: &mut Vec<(&'a str, bool)>,
    store: &S,
) -> Result<bool, S::Error> {
    if let Some((_, answer)) = readable.iter().find(|(name, _)| *name == collection) {
        return Ok(*answer);
    }
    if office_only(collection) && audience.version < PROTOCOL_VERSION_USERS {
        readable.push((collection, false));
        return Ok(false);
    }
    let grants = store.read_grants(collection)?;
    let answer = access::visible(
        &Viewer::of_peer(audience.peer),
        &Subject::Record {
            collection,
            grants: &grants,
        },
        Purpose::Sync,
        audience.now_ms,
        audience.grace_ms,
    );
    readable.push((collection, answer));
    Ok(answer)
}

/// Check copies an office sent before they reach the store. `version` is
/// the session's; `peer` who sent them.
pub(super) fn check_received(
    copies: &[RecordCopy],
    peer: &PeerAccess,
    version: u16,
) -> Result<(), String> {
    if copies.len() > PAGE_DOCS_MAX {
        return Err(format!("{} records in one frame", copies.len()));
    }
    for copy in copies {
        let name = format!("record `{}/{}`", copy.collection, copy.key);
        validate_collection_name(&copy.collection)
            .and_then(|()| validate_record_key(&copy.key))
            .map_err(|e| format!("{name}: {e}"))?;
        let office_only = office_only(&copy.collection);
        if office_only {
            check_office_only(copy, peer, version).map_err(|e| format!("{name}: {e}"))?;
        } else if CollectionKind::of(&copy.collection) != CollectionKind::Data {
            return Err(format!("{name} is internal and never leaves the central"));
        }
        if copy.version == 0 || copy.value.len() > RECORD_VALUE_BYTES_MAX {
            return Err(format!("{name}: bad version or oversized value"));
        }
        let json = serde_json::from_slice::<serde::de::IgnoredAny>(&copy.value);
        if copy.deleted != copy.value.is_empty() || (!copy.deleted && json.is_err()) {
            return Err(format!("{name}: the value is not JSON"));
        }
        if office_only {
            crate::users::check_copy(&copy.key, &copy.value).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// An office-only copy (a user): from a peer that may send one, in a
/// session that has them, never a delete. (Its shape is checked after the
/// size and JSON checks every copy passes.)
fn check_office_only(copy: &RecordCopy, peer: &PeerAccess, version: u16) -> Result<(), String> {
    if version < PROTOCOL_VERSION_USERS || !access::may_send_records(peer, &copy.collection) {
        return Err("travels only between offices (version 7)".into());
    }
    if copy.deleted {
        return Err(crate::users::UserCopyError::Deleted(copy.key.clone()).to_string());
    }
    Ok(())
}
