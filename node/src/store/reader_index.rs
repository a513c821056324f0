//! The reader index: beside the changelog, which of its entries each
//! technician's device may see, so that a device's session reads
//! O(entries that device may see) instead of every change of the central
//! (issue 18; Couchbase's channels and PowerSync's buckets do the same).
//!
//! Layout (`keys.rs`, values empty, the entry itself stays in the
//! changelog): `u ‖ user ‖ 0 ‖ seq` for each work-order entry written while
//! `user` was the document's assignee or previous assignee (as the
//! committer's reassignment rule left them), and `l ‖ seq` for each data
//! record's entry. The committer stages both in the same atomic batch as
//! the changelog entry, so the index is never behind the changelog.
//!
//! A reassignment moves the document: the new assignee's set gets the
//! entry at the new seq, the previous assignee's too (its grace period);
//! a user further back, whose grace runs from its own revocation record,
//! is served by reading the latest entry of each document in its
//! revocation records ([`Store::changes_for`]), so the grace period's
//! semantics do not change.
//!
//! Rebuilt (format 4's migration, `verify --repair`) from the documents'
//! index alone: each document's latest entry under its current assignee
//! and previous assignee, each data record's latest entry. That is all a
//! session needs: it announces a document once, with its current heads,
//! for any of its entries past the peer's checkpoint. The changelog is
//! never pruned, so neither is this index.

use std::collections::{BTreeSet, HashMap};

use fieldsync_schemas::collection::CollectionKind;
use fieldsync_schemas::Collection;

use super::keys;
use super::records::{decode, ChangeRecord, DocIndex, StoredRecord};
use super::{ReadError, Store};
use crate::sync::REVOKED_DOCS_READ_MAX;

/// Keys staged or deleted per sled batch while rebuilding.
const REBUILD_BATCH_KEYS_MAX: usize = 10_000;

/// The users whose index gets a work order's entry: its assignee and
/// previous assignee after the write, each once. An id with a zero byte
/// is no user's (`users::validate_id`) and would blur key prefixes.
pub(crate) fn readers(index: &DocIndex) -> impl Iterator<Item = &str> {
    let assignee = index.assignee.as_deref();
    let previous = index
        .previous_assignee
        .as_deref()
        .filter(|p| Some(*p) != assignee);
    [assignee, previous]
        .into_iter()
        .flatten()
        .filter(|user| !user.is_empty() && !user.as_bytes().contains(&0))
}

/// The highest seq each reader's set got, as flushed. Every commit wakes
/// every session; with 1,000 laptops, reading 1,000 index ranges that hold
/// nothing new was a fifth of the central's CPU converging (issue 18), so a
/// session reads its user's range only past this mark. Memory: one entry
/// per user assigned a work order since the store opened.
#[derive(Debug, Default)]
pub(crate) struct ReaderMarks {
    /// Entries up to this seq were written before the store opened: not
    /// tracked, always read.
    floor_seq: u64,
    users: HashMap<String, u64>,
    records_seq: u64,
}

impl ReaderMarks {
    pub(crate) fn opened_at(last_seq: u64) -> ReaderMarks {
        ReaderMarks {
            floor_seq: last_seq,
            ..ReaderMarks::default()
        }
    }

    /// Fold in the marks of a flushed group (before its seqs are visible).
    pub(crate) fn merge(&mut self, group: ReaderMarks) {
        for (user, seq) in group.users {
            let mark = self.users.entry(user).or_default();
            *mark = (*mark).max(seq);
        }
        self.records_seq = self.records_seq.max(group.records_seq);
    }

    /// May `user`'s set or the records' hold an entry past `after_seq`?
    pub(crate) fn has_after(&self, user: &str, after_seq: u64) -> bool {
        after_seq < self.floor_seq
            || self.records_seq > after_seq
            || self.users.get(user).is_some_and(|seq| *seq > after_seq)
    }
}

/// Stage a work order's entry `seq` for its readers.
pub(crate) fn stage_doc(
    index: &DocIndex,
    seq: u64,
    batch: &mut sled::Batch,
    marks: &mut ReaderMarks,
) {
    if index.collection != Collection::WorkOrders {
        return;
    }
    for user in readers(index) {
        batch.insert(keys::user_change(user, seq), &[]);
        let mark = marks.users.entry(user.to_string()).or_default();
        *mark = (*mark).max(seq);
    }
}

/// Stage a record's entry `seq`, if its collection is a data collection
/// (office-only records go to offices, which read the whole changelog).
pub(crate) fn stage_record(collection: &str, seq: u64, batch: &mut sled::Batch) {
    if CollectionKind::of(collection) == CollectionKind::Data {
        batch.insert(&keys::record_change(seq), &[]);
    }
}

/// Note the data records' entries of a staged write set.
pub(crate) fn mark_records(
    writes: &[super::record_writes::RecordWrite],
    receipts: &[super::record_writes::RecordReceipt],
    marks: &mut ReaderMarks,
) {
    for (write, receipt) in writes.iter().zip(receipts) {
        if let Some(seq) = receipt.seq {
            if CollectionKind::of(&write.collection) == CollectionKind::Data {
                marks.records_seq = marks.records_seq.max(seq);
            }
        }
    }
}

/// Up to `limit` seqs in `(after, upto]` under `prefix` (whose keys end
/// in the seq), and whether the limit cut them short.
fn seqs_under(
    store: &Store,
    prefix: &[u8],
    (after, upto): (u64, u64),
    limit: usize,
) -> Result<(Vec<u64>, bool), ReadError> {
    let key = |seq: u64| {
        let mut key = prefix.to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        key
    };
    let mut seqs = Vec::with_capacity(limit.min(1024));
    for item in store.data().range(key(after + 1)..=key(upto)).take(limit) {
        let (key, _) = item.map_err(|e| ReadError::Io(e.to_string()))?;
        // A longer id with a zero byte shares the prefix: not this reader's.
        if key.len() != prefix.len() + 8 {
            continue;
        }
        seqs.extend(keys::trailing_seq(&key));
    }
    let cut = seqs.len() >= limit;
    Ok((seqs, cut))
}

impl Store {
    /// Up to `limit` changelog entries with seq > `after` that `user`'s
    /// device may see (see the module docs and
    /// `SyncStore::changes_for`), never past the durable `last_seq`; and
    /// the seq up to which they are all there.
    pub fn changes_for(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, ChangeRecord)>, u64), ReadError> {
        let visible = self.last_seq();
        if after >= visible || limit == 0 {
            return Ok((Vec::new(), after));
        }
        let mut seqs = BTreeSet::new();
        let mut covered = visible;
        // Read after `visible`: the committer moves the marks first.
        if self.reader_marks().has_after(user, after) {
            let prefix = keys::user_change_prefix(user);
            let (work_orders, cut) = seqs_under(self, &prefix, (after, visible), limit)?;
            if let Some(last) = work_orders.last().filter(|_| cut) {
                covered = *last;
            }
            let range = (after, covered);
            let (records, cut) = seqs_under(self, &[keys::RECORD_CHANGE], range, limit)?;
            if let Some(last) = records.last().filter(|_| cut) {
                covered = covered.min(*last);
            }
            seqs.extend(work_orders.into_iter().chain(records));
        }
        for (id, _) in self.revocations(user, REVOKED_DOCS_READ_MAX)? {
            if let Some(index) = self.doc_index(&id)? {
                seqs.insert(index.last_seq);
            }
        }
        let (seqs, covered) = crate::sync::cut_reader_page(seqs, after, covered, limit);
        let mut entries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            entries.push((seq, self.change_record(seq)?));
        }
        Ok((entries, covered))
    }

    /// Changelog entry `seq`.
    fn change_record(&self, seq: u64) -> Result<ChangeRecord, ReadError> {
        let corrupt = |reason: String| ReadError::Corrupt {
            id: format!("changelog {seq}"),
            reason,
        };
        let value = self
            .data()
            .get(keys::changelog(seq))
            .map_err(|e| ReadError::Io(e.to_string()))?
            .ok_or_else(|| corrupt("named by the reader index, missing".into()))?;
        ChangeRecord::decode(&value).map_err(|e| corrupt(e.to_string()))
    }

    /// Drop the reader index and build it again from the documents' index
    /// and the records (`verify --repair`). Run with no writer busy: the
    /// CLI's store has none.
    pub fn rebuild_reader_index(&self) -> Result<u64, ReadError> {
        rebuild(self.data()).map_err(|e| ReadError::Io(e.to_string()))
    }

    /// Reader-index problems: each document's latest entry missing from
    /// its assignee's or previous assignee's set, each data record's
    /// latest entry missing, an index key naming a seq past the changelog.
    pub(crate) fn check_reader_index(&self) -> Result<Vec<(String, String)>, ReadError> {
        let io = |e: sled::Error| ReadError::Io(e.to_string());
        let data = self.data();
        let mut problems = Vec::new();
        for (user, seq) in expected(data).map_err(io)? {
            let key = match &user {
                Some(user) => keys::user_change(user, seq),
                None => keys::record_change(seq).to_vec(),
            };
            if !data.contains_key(key).map_err(io)? {
                let set = user.map_or("data records".to_string(), |u| format!("user {u}"));
                problems.push((format!("reader index of {set}"), format!("lacks seq {seq}")));
            }
        }
        let last = self.last_seq();
        for prefix in [keys::USER_CHANGE, keys::RECORD_CHANGE] {
            for item in data.scan_prefix([prefix]) {
                let (key, _) = item.map_err(io)?;
                if keys::trailing_seq(&key).is_none_or(|seq| seq == 0 || seq > last) {
                    problems.push(("reader index".into(), format!("stray key {key:?}")));
                }
            }
        }
        Ok(problems)
    }
}

/// What a rebuilt index holds: (user, seq) for work orders, (None, seq)
/// for data records.
fn expected(data: &sled::Tree) -> sled::Result<Vec<(Option<String>, u64)>> {
    let mut wanted = Vec::new();
    for item in data.scan_prefix([keys::INDEX]) {
        let (_, value) = item?;
        // An undecodable index is `verify`'s to report.
        let Ok(index) = decode::<DocIndex>(&value) else {
            continue;
        };
        if index.collection == Collection::WorkOrders {
            for user in readers(&index) {
                wanted.push((Some(user.to_string()), index.last_seq));
            }
        }
    }
    for item in data.scan_prefix([keys::RECORD]) {
        let (key, value) = item?;
        let Some(collection) = key[1..].split(|b| *b == 0).next() else {
            continue;
        };
        let collection = String::from_utf8_lossy(collection);
        let Ok(record) = decode::<StoredRecord>(&value) else {
            continue;
        };
        if record.last_seq != 0 && CollectionKind::of(&collection) == CollectionKind::Data {
            wanted.push((None, record.last_seq));
        }
    }
    Ok(wanted)
}

/// Delete every reader-index key, then stage what [`expected`] says, in
/// batches of at most [`REBUILD_BATCH_KEYS_MAX`] keys; flush once at the
/// end. Idempotent: a crash midway is repaired by running it again (the
/// migration runs until `FORMAT` says 4). Returns the keys written.
pub(crate) fn rebuild(data: &sled::Tree) -> sled::Result<u64> {
    for prefix in [keys::USER_CHANGE, keys::RECORD_CHANGE] {
        loop {
            let mut batch = sled::Batch::default();
            let mut staged = 0usize;
            for item in data.scan_prefix([prefix]).take(REBUILD_BATCH_KEYS_MAX) {
                batch.remove(item?.0);
                staged += 1;
            }
            if staged == 0 {
                break;
            }
            data.apply_batch(batch)?;
        }
    }
    let wanted = expected(data)?;
    let written = wanted.len() as u64;
    for chunk in wanted.chunks(REBUILD_BATCH_KEYS_MAX) {
        let mut batch = sled::Batch::default();
        for (user, seq) in chunk {
            match user {
                Some(user) => batch.insert(keys::user_change(user, *seq), &[]),
                None => batch.insert(&keys::record_change(*seq), &[]),
            }
        }
        data.apply_batch(batch)?;
    }
    data.flush()?;
    Ok(written)
}
