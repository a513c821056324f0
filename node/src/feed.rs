//! The changes feed's page reader: pages of the store's changelog, filtered
//! to what a viewer may see, each document or record at most once a page.
//!
//! Why here and not in the gateway: the gateway's `/api/v1/changes`, its
//! web UI and background tasks (webhook dispatch) all read the feed, and a
//! task must not need an HTTP caller to do it. Visibility is the one rule,
//! `access::visible`.
//!
//! Why scan with a budget: a technician may see one change in ten thousand.
//! A page scans at most `scan_max` changelog entries and returns what it
//! found with `last_seq` at the last entry it looked at, so the cursor
//! always moves forward and no request is unbounded.
//!
//! No change is skipped under concurrent writers because the store's
//! committer publishes a seq only after the flush that covers it and every
//! seq below it (`Store::changes_since` never reads past `last_seq`), so a
//! reader's cursor can never pass a seq that is not yet visible.

use std::collections::{BTreeMap, HashMap};

use fieldsync_schemas::{ChangeEntry, Collection};

use crate::access::{self, Purpose, ReadGrants, Subject, Viewer, WorkOrderFacts};
use crate::store::{ReadError, Store};

/// Changelog entries read per `changes_since` call.
const SCAN_CHUNK_ENTRIES: usize = 512;

/// What to read.
#[derive(Clone, Copy, Debug)]
pub struct FeedQuery<'a> {
    /// Entries after this seq.
    pub since: u64,
    /// Documents and records in the page, at most (at least 1).
    pub limit: usize,
    /// Only this collection (`work_orders` or a data collection's name).
    pub collection: Option<&'a str>,
    /// Changelog entries scanned, at most (at least `limit`).
    pub scan_max: usize,
}

/// The rule's inputs that do not change within a page.
#[derive(Clone, Copy, Debug)]
pub struct FeedAccess<'a> {
    pub viewer: Viewer<'a>,
    /// Read grants from `fieldsync.toml`, by collection.
    pub configured: &'a BTreeMap<String, ReadGrants>,
    pub now_ms: u64,
    pub grace_ms: u64,
}

/// One page of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub entries: Vec<ChangeEntry>,
    /// The highest seq looked at (or `since` when nothing was).
    pub last_seq: u64,
    /// More entries are already visible past `last_seq`.
    pub more: bool,
}

/// Read the page after `query.since`.
pub fn read_page(
    store: &Store,
    access: &FeedAccess<'_>,
    query: &FeedQuery<'_>,
) -> Result<FeedPage, ReadError> {
    let limit = query.limit.max(1);
    let scan_max = query.scan_max.max(limit);
    let mut slots: Vec<Option<ChangeEntry>> = Vec::with_capacity(limit);
    let mut slot_of: HashMap<(Collection, String), usize> = HashMap::new();
    let mut judge = Judge::new(store, access);
    let mut cursor = query.since;
    let mut scanned = 0usize;
    let mut full = false;
    'scan: while scanned < scan_max {
        let chunk = SCAN_CHUNK_ENTRIES.min(scan_max - scanned);
        let entries = store.changes_since(cursor, chunk)?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            assert!(entry.seq > cursor, "changelog out of order");
            scanned += 1;
            cursor = entry.seq;
            if query
                .collection
                .is_some_and(|name| entry.collection.name() != name)
                || !judge.sees(&entry)?
            {
                continue;
            }
            let slot = (entry.collection.clone(), entry.id.clone());
            if let Some(old) = slot_of.insert(slot, slots.len()) {
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

/// Visibility answers within one page, remembered per document and per
/// collection (a page reads each index and each collection's grants once).
struct Judge<'a> {
    store: &'a Store,
    access: &'a FeedAccess<'a>,
    /// By (collection, document id); records are judged per collection,
    /// so their id is empty.
    known: HashMap<(Collection, String), bool>,
}

impl<'a> Judge<'a> {
    fn new(store: &'a Store, access: &'a FeedAccess<'a>) -> Self {
        Judge {
            store,
            access,
            known: HashMap::new(),
        }
    }

    fn sees(&mut self, entry: &ChangeEntry) -> Result<bool, ReadError> {
        let id = match entry.collection {
            Collection::WorkOrders => entry.id.clone(),
            Collection::Reference(_) => String::new(),
        };
        let key = (entry.collection.clone(), id);
        if let Some(sees) = self.known.get(&key) {
            return Ok(*sees);
        }
        let sees = match &entry.collection {
            Collection::WorkOrders => self.sees_work_order(&entry.id)?,
            Collection::Reference(name) => self.reads_collection(name)?,
        };
        self.known.insert(key, sees);
        Ok(sees)
    }

    /// As the work order is now; a purged one (no index) counts as deleted.
    fn sees_work_order(&self, id: &str) -> Result<bool, ReadError> {
        let index = self.store.doc_index(id)?;
        let facts = match &index {
            Some(index) => WorkOrderFacts {
                assignee: index.assignee.as_deref(),
                previous_assignee: index.previous_assignee.as_deref(),
                reassigned_at_ms: index.reassigned_at_ms,
                deleted: index.deleted,
                own_revocation_at_ms: None,
            },
            None => WorkOrderFacts {
                deleted: true,
                ..WorkOrderFacts::default()
            },
        };
        Ok(self.visible(&Subject::WorkOrder(facts)))
    }

    fn reads_collection(&self, name: &str) -> Result<bool, ReadError> {
        let grants = self
            .store
            .read_grants(name, self.access.configured.get(name))?;
        Ok(self.visible(&Subject::Record {
            collection: name,
            grants: &grants,
        }))
    }

    fn visible(&self, subject: &Subject<'_>) -> bool {
        access::visible(
            &self.access.viewer,
            subject,
            Purpose::Read,
            self.access.now_ms,
            self.access.grace_ms,
        )
    }
}
