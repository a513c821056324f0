//! The changes feed: pages of the store's changelog, filtered to what the
//! caller may see, each document at most once per page.
//!
//! Why scan with a budget: a technician may see one change in ten thousand.
//! A page scans at most `scan_entries_max` changelog entries and returns
//! what it found with `last_seq` at the last entry it looked at, so the
//! cursor always moves forward and no request is unbounded.
//!
//! No change is skipped under concurrent writers because the store's
//! committer publishes a seq only after the flush that covers it and every
//! seq below it (`Store::changes_since` never reads past `last_seq`), so a
//! reader's cursor can never pass a seq that is not yet visible.

use std::collections::HashMap;

use fieldsync_node::store::Store;
use fieldsync_schemas::{ChangeEntry, Collection, Role};

use crate::auth::Caller;
use crate::error::ApiError;

/// Changelog entries read per `changes_since` call.
const SCAN_CHUNK_ENTRIES: usize = 512;

/// One page of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub entries: Vec<ChangeEntry>,
    /// The highest seq looked at (or `since` when nothing was).
    pub last_seq: u64,
    /// More entries are already visible past `last_seq`.
    pub more: bool,
}

/// Read the page after `since`: at most `limit` documents, scanning at
/// most `scan_max` entries.
pub fn read_page(
    store: &Store,
    caller: &Caller,
    since: u64,
    limit: usize,
    collection: Option<&str>,
    scan_max: usize,
) -> Result<FeedPage, ApiError> {
    assert!(limit > 0 && scan_max >= limit);
    let mut slots: Vec<Option<ChangeEntry>> = Vec::with_capacity(limit);
    let mut slot_of: HashMap<String, usize> = HashMap::new();
    let mut visible: HashMap<String, bool> = HashMap::new();
    let mut cursor = since;
    let mut scanned = 0usize;
    let mut full = false;
    'scan: while scanned < scan_max {
        let chunk = SCAN_CHUNK_ENTRIES.min(scan_max - scanned);
        let entries = store
            .changes_since(cursor, chunk)
            .map_err(ApiError::internal)?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            assert!(entry.seq > cursor, "changelog out of order");
            scanned += 1;
            cursor = entry.seq;
            if collection.is_some_and(|name| entry.collection.name() != name) {
                continue;
            }
            let sees = match visible.get(&entry.id) {
                Some(sees) => *sees,
                None => {
                    let sees = may_see(store, caller, &entry)?;
                    visible.insert(entry.id.clone(), sees);
                    sees
                }
            };
            if !sees {
                continue;
            }
            if let Some(old) = slot_of.insert(entry.id.clone(), slots.len()) {
                slots[old] = None;
            }
            slots.push(Some(entry));
            if slot_of.len() == limit {
                full = true;
                break 'scan;
            }
        }
    }
    let more = (full || scanned >= scan_max) && cursor < store.last_seq();
    let entries: Vec<ChangeEntry> = slots.into_iter().flatten().collect();
    debug_assert!(entries.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    Ok(FeedPage {
        entries,
        last_seq: cursor,
        more,
    })
}

/// Operators and `changes:read` integrations see every change; a
/// technician sees changes of work orders assigned to them now.
fn may_see(store: &Store, caller: &Caller, entry: &ChangeEntry) -> Result<bool, ApiError> {
    match caller.role {
        Role::Operator | Role::Integration => Ok(true),
        Role::Technician => {
            if entry.collection != Collection::WorkOrders {
                return Ok(false);
            }
            let index = store.doc_index(&entry.id).map_err(ApiError::internal)?;
            Ok(index
                .is_some_and(|index| index.assignee.as_deref() == Some(caller.user_id.as_str())))
        }
    }
}
