//! Record writes: checked on the writer's thread, staged by the committer.
//!
//! Why records share the committer with documents: a write set may hold
//! work orders and records together (an ERP batch that also touches work
//! orders, a webhook's cursor with what it delivered), and "acknowledged
//! means durable" must hold for both. So records go into the same sled
//! batch and the same flush, and a record in a data collection gets a
//! changelog seq like a document.
//!
//! Why internal records get no seq: they never go on the feed or to a
//! peer, and a busy internal collection (delivery logs) would otherwise
//! fill every feed page and sync scan with entries nobody may see: a
//! session must cost O(changes the peer may see). The exception is the
//! office-only collections (users): they travel between offices, so
//! their writes take a seq (few, and `access::visible` hides them from
//! everyone but an office peer).
//!
//! Why a replicated user is merged here, in the committer: the merge
//! (`users::merge`) must see the current user, staged writes included, and
//! land in the same step, or an enrollment or revocation written between a
//! read and the write would be lost. A merge that changes nothing writes
//! nothing.
//!
//! What is checked where: names, sizes and JSON validity on the writer's
//! thread (`validate`), a few µs per record off the committer; the
//! compare-and-set in the committer, against what is stored and staged,
//! because only there is "current" well defined.

use std::collections::HashMap;

use fieldsync_schemas::collection::{
    office_only, validate_collection_name, validate_record_key, CollectionKind,
    RECORD_VALUE_BYTES_MAX, WRITE_SET_RECORDS_MAX,
};
use fieldsync_schemas::{ChangeOp, Collection};

use super::keys;
use super::records::{decode, encode, ChangeRecord, CollectionStats, StoredRecord};
use super::WriteError;
use crate::users::{self, Versioned};
use fieldsync_schemas::sync_frame::Voucher;

/// The internal collection of vouchers (`crate::vouch`): new ones join.
const VOUCHERS: &str = fieldsync_schemas::collection::VOUCHERS;
/// The internal collection of users (`users.rs`): replicated copies merge.
const USERS: &str = fieldsync_schemas::collection::USERS;

/// What a record write expects to find (compare-and-set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there.
    Any,
    /// No live record (never written, or deleted).
    Absent,
    /// A live record.
    Present,
    /// A record (live or deleted) at exactly this version.
    Version(u64),
}

/// A new value (or a delete) for one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordWrite {
    pub collection: String,
    pub key: String,
    /// The JSON value; `None` deletes the record.
    pub value: Option<Vec<u8>>,
    pub expect: Expect,
    /// `Some(v)`: a copy replicated from an office at version `v`, stored
    /// only if newer than what is here (newer wins), at that version.
    /// `None`: a write made here, at the next version.
    pub replicated_version: Option<u64>,
}

/// What one record write did, once durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordReceipt {
    /// The record's version after the write.
    pub version: u64,
    /// `None` when nothing changed (deleting what is not there).
    pub op: Option<ChangeOp>,
    /// The changelog seq (data collections only).
    pub seq: Option<u64>,
}

/// Check every record write of a set: names, sizes, JSON, each record at
/// most once. Runs on the writer's thread.
pub(crate) fn validate(writes: &[RecordWrite]) -> Result<(), WriteError> {
    let invalid = |reason: String| Err(WriteError::InvalidRecord(reason));
    if writes.len() > WRITE_SET_RECORDS_MAX {
        return invalid(format!(
            "{} record writes in one write set, over the limit of {WRITE_SET_RECORDS_MAX}",
            writes.len()
        ));
    }
    for write in writes {
        validate_collection_name(&write.collection)
            .and_then(|()| validate_record_key(&write.key))
            .map_err(|e| WriteError::InvalidRecord(e.to_string()))?;
        let Some(value) = &write.value else { continue };
        if value.len() > RECORD_VALUE_BYTES_MAX {
            return invalid(format!(
                "record value is {} bytes, over the limit of {RECORD_VALUE_BYTES_MAX}",
                value.len()
            ));
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(value) {
            return invalid(format!("record value is not JSON: {e}"));
        }
    }
    if writes.len() > 1 {
        let mut seen = std::collections::HashSet::with_capacity(writes.len());
        for write in writes {
            if !seen.insert((write.collection.as_str(), write.key.as_str())) {
                return invalid(format!(
                    "record `{}/{}` is written twice in one write set",
                    write.collection, write.key
                ));
            }
        }
    }
    Ok(())
}

/// What the committer has staged in the current group but not yet applied.
#[derive(Default)]
pub(crate) struct StagedRecords {
    records: HashMap<(String, String), Option<StoredRecord>>,
    stats: HashMap<String, CollectionStats>,
}

impl StagedRecords {
    fn current(
        &self,
        data: &sled::Tree,
        collection: &str,
        key: &str,
    ) -> Result<Option<StoredRecord>, WriteError> {
        if let Some(record) = self.records.get(&(collection.to_string(), key.to_string())) {
            return Ok(record.clone());
        }
        let stored = data
            .get(keys::record(collection, key))
            .map_err(|e| WriteError::Io(e.to_string()))?;
        stored
            .map(|bytes| decode::<StoredRecord>(&bytes))
            .transpose()
            .map_err(|e| WriteError::Corrupt(format!("record `{collection}/{key}`: {e}")))
    }

    fn stats(
        &mut self,
        data: &sled::Tree,
        collection: &str,
    ) -> Result<&mut CollectionStats, WriteError> {
        if !self.stats.contains_key(collection) {
            let stored = data
                .get(keys::collection(collection))
                .map_err(|e| WriteError::Io(e.to_string()))?;
            let stats = match stored {
                None => CollectionStats::default(),
                Some(bytes) => decode(&bytes)
                    .map_err(|e| WriteError::Corrupt(format!("collection `{collection}`: {e}")))?,
            };
            self.stats.insert(collection.to_string(), stats);
        }
        Ok(self.stats.get_mut(collection).expect("inserted above"))
    }
}

/// One write, checked: the record it finds, and for a replicated user the
/// write that stores the merge instead (`None`: the write as given).
pub(crate) struct Checked {
    current: Option<StoredRecord>,
    merged: Option<RecordWrite>,
}

/// The current record of each write, checked against its expectation,
/// with every read `stage` needs done here: a refused set returns before
/// anything is staged, and staging cannot fail half-way.
pub(crate) fn check(
    writes: &[RecordWrite],
    data: &sled::Tree,
    staged: &mut StagedRecords,
) -> Result<Vec<Checked>, WriteError> {
    let mut checked = Vec::with_capacity(writes.len());
    for write in writes {
        staged.stats(data, &write.collection)?;
        let current = staged.current(data, &write.collection, &write.key)?;
        let live = current.as_ref().is_some_and(|r| !r.deleted);
        let holds = match write.expect {
            Expect::Any => true,
            Expect::Absent => !live,
            Expect::Present => live,
            Expect::Version(version) => current.as_ref().map(|r| r.version) == Some(version),
        };
        if !holds {
            return Err(WriteError::VersionMismatch {
                collection: write.collection.clone(),
                key: write.key.clone(),
                current: current.filter(|r| !r.deleted).map(|r| r.version),
            });
        }
        let merged = match write.replicated_version {
            Some(version) if write.collection == USERS => {
                Some(merged_user(write, version, current.as_ref())?)
            }
            None if write.collection == VOUCHERS => Some(merged_vouchers(write, current.as_ref())),
            _ => None,
        };
        checked.push(Checked { current, merged });
    }
    Ok(checked)
}

/// The write that stores a document's new vouchers joined to those held
/// (`vouch::merged`), here for the reason users merge here: two sessions
/// (two offices) writing one document's vouchers in one group would
/// otherwise each read the same old list, and the second would drop the
/// first's. Vouchers are hints for relays: unreadable ones count as none.
fn merged_vouchers(write: &RecordWrite, current: Option<&StoredRecord>) -> RecordWrite {
    let decode =
        |bytes: &[u8]| -> Vec<Voucher> { serde_json::from_slice(bytes).unwrap_or_default() };
    let held = current
        .filter(|record| !record.deleted)
        .map(|record| decode(&record.value))
        .unwrap_or_default();
    let new = write.value.as_deref().map(decode).unwrap_or_default();
    let kept = crate::vouch::merged(held, &new);
    RecordWrite {
        value: Some(serde_json::to_vec(&kept).expect("vouchers encode as JSON")),
        ..write.clone()
    }
}

/// The write that stores a replicated user copy merged with the user here
/// (`users::merge`); at the version here when the merge changes nothing,
/// so `stage` skips it as stale.
fn merged_user(
    write: &RecordWrite,
    version: u64,
    current: Option<&StoredRecord>,
) -> Result<RecordWrite, WriteError> {
    let Some(value) = &write.value else {
        return Err(WriteError::InvalidRecord(
            crate::users::UserCopyError::Deleted(write.key.clone()).to_string(),
        ));
    };
    let incoming = Versioned {
        user: users::check_copy(&write.key, value)
            .map_err(|e| WriteError::InvalidRecord(e.to_string()))?,
        version,
    };
    let Some(local) = current.filter(|record| !record.deleted) else {
        return Ok(write.clone());
    };
    let local = Versioned {
        user: serde_json::from_slice(&local.value)
            .map_err(|e| WriteError::Corrupt(format!("user `{}`: {e}", write.key)))?,
        version: local.version,
    };
    let merged = users::merge(&local, &incoming);
    let unchanged = merged == local || merged.version <= local.version;
    let value = serde_json::to_vec(&merged.user).map_err(|e| WriteError::Io(e.to_string()))?;
    Ok(RecordWrite {
        value: Some(value),
        replicated_version: Some(if unchanged {
            local.version
        } else {
            merged.version
        }),
        ..write.clone()
    })
}

/// Stage checked writes: the record, its changelog entry (data and
/// office-only collections) and
/// its collection's figures. Returns one receipt per write.
pub(crate) fn stage(
    writes: &[RecordWrite],
    checked: Vec<Checked>,
    staged: &mut StagedRecords,
    batch: &mut sled::Batch,
    seq: &mut u64,
) -> Vec<RecordReceipt> {
    assert_eq!(writes.len(), checked.len());
    let mut receipts = Vec::with_capacity(writes.len());
    // Each touched collection's figures are written once, after the loop.
    let mut touched: Vec<&str> = Vec::new();
    for (given, Checked { current, merged }) in writes.iter().zip(checked) {
        let write = merged.as_ref().unwrap_or(given);
        let live = current.as_ref().is_some_and(|r| !r.deleted);
        let version = current.as_ref().map_or(0, |r| r.version);
        let stale = write
            .replicated_version
            .is_some_and(|replicated| replicated <= version);
        let op = match (&write.value, live) {
            _ if stale => {
                receipts.push(RecordReceipt {
                    version,
                    op: None,
                    seq: None,
                });
                continue;
            }
            (None, false) if write.replicated_version.is_none() => {
                receipts.push(RecordReceipt {
                    version,
                    op: None,
                    seq: None,
                });
                continue;
            }
            // A replicated delete of what is not here still stores the
            // tombstone: an older copy arriving later must not revive it.
            (None, _) => ChangeOp::Delete,
            (Some(_), false) => ChangeOp::Create,
            (Some(_), true) => ChangeOp::Update,
        };
        let data_kind = CollectionKind::of(&write.collection) == CollectionKind::Data;
        let logged = data_kind || office_only(&write.collection);
        let this_seq = logged.then(|| {
            *seq += 1;
            *seq - 1
        });
        let record = StoredRecord {
            version: write.replicated_version.unwrap_or(version + 1),
            deleted: write.value.is_none(),
            last_seq: this_seq.unwrap_or(0),
            value: write.value.clone().unwrap_or_default(),
        };
        if let Some(this_seq) = this_seq {
            let entry = ChangeRecord {
                collection: Collection::Reference(write.collection.clone()),
                id: write.key.clone(),
                number: None,
                op,
                heads: Vec::new(),
                version: record.version,
            };
            batch.insert(&keys::changelog(this_seq), encode(&entry));
            super::reader_index::stage_record(&write.collection, this_seq, batch);
        }
        if !touched.contains(&given.collection.as_str()) {
            touched.push(&given.collection);
        }
        let stats = staged
            .stats
            .get_mut(&write.collection)
            .expect("loaded by check");
        match (live, record.deleted) {
            (false, false) => stats.live += 1,
            (true, true) => stats.live = stats.live.saturating_sub(1),
            _ => {}
        }
        receipts.push(RecordReceipt {
            version: record.version,
            op: Some(op),
            seq: this_seq,
        });
        // An internal record never replicates, so no older copy can come
        // back to be refused: its delete frees the key instead of keeping
        // a tombstone (retention deletes must free space).
        let forget = !data_kind && record.deleted;
        let key = (write.collection.clone(), write.key.clone());
        if forget {
            batch.remove(keys::record(&write.collection, &write.key));
            staged.records.insert(key, None);
        } else {
            batch.insert(keys::record(&write.collection, &write.key), encode(&record));
            staged.records.insert(key, Some(record));
        }
    }
    for collection in touched {
        let stats = &staged.stats[collection];
        batch.insert(keys::collection(collection), encode(stats));
    }
    receipts
}
