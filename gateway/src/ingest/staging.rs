//! Batches and their staged rows, as internal records written through the
//! node's committer.
//!
//! Why records: staging must survive a crash between messages (a kill -9
//! before the summary loses nothing acknowledged), and a record write is
//! durable when acknowledged. Three collections:
//!
//! - `batches`, key `{client}/{erp}/{batch_id}`: the batch ([`Batch`]):
//!   which messages arrived, their digests and row counts, its state;
//! - `batch_rows`, key `{batch key}/{number}/{chunk}`: a message's rows,
//!   ready to become records, cut into chunks that fit one record;
//! - `batch_leases`, key `{client}`: the client's sender leases per ERP
//!   and its open batches ([`ClientState`]), which bounds how many a
//!   client may have open.
//!
//! Every write of a message stages its chunks, the batch and the client
//! state in one write set, compare-and-set on the batch's and the client
//! state's versions: two senders racing on one batch cannot both win.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_node::store::{Expect, ReadError, Record, RecordWrite, Store};
use serde::{Deserialize, Serialize};

use fieldsync_schemas::collection::DATA_COLLECTIONS_MAX;

use super::lease::Lease;
use super::rows::StagedRow;
use super::rules::Batch;

pub(crate) const BATCHES: &str = "batches";
pub(crate) const BATCH_ROWS: &str = "batch_rows";
pub(crate) const CLIENTS: &str = "batch_leases";

/// Bytes of one chunk record's JSON, at most: one record. A staged row
/// alone always fits (`rows::prepare` checks its bound).
const CHUNK_BYTES_MAX: usize = fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX;
/// ERPs whose leases one client state keeps (quiet ones are dropped
/// first).
const LEASES_PER_CLIENT_MAX: usize = 64;
/// Batch records read per store call while listing.
const PAGE_RECORDS: usize = 256;

/// An integration client's batch bookkeeping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClientState {
    /// Sender lease per ERP.
    pub(crate) leases: BTreeMap<String, Lease>,
    /// Open batches, as `{erp}/{batch_id}`.
    pub(crate) open: BTreeSet<String>,
}

impl ClientState {
    /// Renew `erp`'s lease for `instance` at `now_ms`, dropping the
    /// quietest leases past the bound.
    pub(crate) fn renew(&mut self, erp: &str, instance: &str, now_ms: u64) {
        self.leases.insert(
            erp.to_string(),
            Lease {
                holder: instance.to_string(),
                renewed_at_ms: now_ms,
            },
        );
        while self.leases.len() > LEASES_PER_CLIENT_MAX {
            let quietest = self
                .leases
                .iter()
                .min_by_key(|(_, lease)| lease.renewed_at_ms)
                .map(|(erp, _)| erp.clone());
            match quietest {
                Some(erp) => self.leases.remove(&erp),
                None => break,
            };
        }
    }
}

/// Refuse a collection that does not exist yet when there are already
/// `DATA_COLLECTIONS_MAX`: batches and events create collections from
/// names an outside system chose, so their number needs a bound.
pub(crate) fn check_new_collection(
    store: &Store,
    name: &str,
) -> Result<Result<(), String>, ReadError> {
    if store.collection(name)?.is_some() {
        return Ok(Ok(()));
    }
    let count = store.collections()?.len();
    if count >= DATA_COLLECTIONS_MAX {
        return Ok(Err(format!(
            "`{name}` would be a new collection, and there are already {count}, the most \
             batches and events may create; an operator can create it over the records API"
        )));
    }
    Ok(Ok(()))
}

/// The `batches` key of a batch.
pub(crate) fn batch_key(client: &str, erp: &str, batch_id: i64) -> String {
    format!("{client}/{erp}/{batch_id}")
}

/// The client state's entry for a batch.
pub(crate) fn open_entry(erp: &str, batch_id: i64) -> String {
    format!("{erp}/{batch_id}")
}

fn chunk_key(batch_key: &str, number: u32, chunk: u32) -> String {
    format!("{batch_key}/{number:010}/{chunk:05}")
}

/// A record as read, with the version a compare-and-set expects.
pub(crate) struct Versioned<T> {
    pub(crate) value: T,
    /// `None`: never written.
    pub(crate) version: Option<u64>,
}

impl<T> Versioned<T> {
    pub(crate) fn expect(&self) -> Expect {
        match self.version {
            Some(version) => Expect::Version(version),
            None => Expect::Absent,
        }
    }
}

/// A record's JSON value, decoded; a value that does not decode is
/// damage, reported as such.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(record: &Record) -> Result<T, ReadError> {
    serde_json::from_slice(&record.value).map_err(|e| ReadError::Corrupt {
        id: format!("record {}/{}", record.collection, record.key),
        reason: e.to_string(),
    })
}

/// A record as stored with its version, `None` when never written; its
/// value `None` when deleted.
pub(crate) fn read<T: for<'de> Deserialize<'de>>(
    store: &Store,
    collection: &str,
    key: &str,
) -> Result<Option<Versioned<Option<T>>>, ReadError> {
    let Some(record) = store.record(collection, key)? else {
        return Ok(None);
    };
    let value = if record.deleted {
        None
    } else {
        Some(decode(&record)?)
    };
    Ok(Some(Versioned {
        value,
        version: Some(record.version),
    }))
}

/// Call `each` on the live records of `collection` after `after`, in key
/// order, page by page, until it returns `false` or none are left.
pub(crate) fn for_each_record<E: From<ReadError>>(
    store: &Store,
    collection: &str,
    after: Option<&str>,
    mut each: impl FnMut(Record) -> Result<bool, E>,
) -> Result<(), E> {
    let mut cursor = after.map(str::to_string);
    loop {
        let page = store.records(collection, cursor.as_deref(), PAGE_RECORDS)?;
        let full = page.len() == PAGE_RECORDS;
        let Some(last) = page.last() else { break };
        cursor = Some(last.key.clone());
        for record in page {
            if !each(record)? {
                return Ok(());
            }
        }
        if !full {
            break;
        }
    }
    Ok(())
}

/// A batch as stored (`value: None` when never written or deleted).
pub(crate) fn load_batch(store: &Store, key: &str) -> Result<Versioned<Option<Batch>>, ReadError> {
    Ok(read(store, BATCHES, key)?.unwrap_or(Versioned {
        value: None,
        version: None,
    }))
}

/// A client's state (empty when never written).
pub(crate) fn load_client(
    store: &Store,
    client: &str,
) -> Result<Versioned<ClientState>, ReadError> {
    Ok(match read::<ClientState>(store, CLIENTS, client)? {
        Some(found) => Versioned {
            value: found.value.unwrap_or_default(),
            version: found.version,
        },
        None => Versioned {
            value: ClientState::default(),
            version: None,
        },
    })
}

/// Write a serializable value.
pub(crate) fn put<T: Serialize>(
    collection: &str,
    key: &str,
    value: &T,
    expect: Expect,
) -> RecordWrite {
    RecordWrite {
        collection: collection.to_string(),
        key: key.to_string(),
        value: Some(serde_json::to_vec(value).expect("plain structs serialize")),
        expect,
        replicated_version: None,
    }
}

/// Delete a record, whatever is there.
pub(crate) fn delete(collection: &str, key: String) -> RecordWrite {
    RecordWrite {
        collection: collection.to_string(),
        key,
        value: None,
        expect: Expect::Any,
        replicated_version: None,
    }
}

/// A message's rows cut into chunk records: `(writes, chunk count)`.
/// Each chunk is a JSON array of rows of at most [`CHUNK_BYTES_MAX`]
/// bytes, measured exactly (each row is serialized once, here).
pub(crate) fn chunk_writes(
    batch_key: &str,
    number: u32,
    rows: &[StagedRow],
) -> (Vec<RecordWrite>, u32) {
    let mut writes = Vec::new();
    let mut chunk = String::from("[");
    let flush = |chunk: &mut String, writes: &mut Vec<RecordWrite>| {
        chunk.push(']');
        writes.push(RecordWrite {
            collection: BATCH_ROWS.to_string(),
            key: chunk_key(batch_key, number, writes.len() as u32),
            value: Some(std::mem::replace(chunk, String::from("[")).into_bytes()),
            expect: Expect::Any,
            replicated_version: None,
        });
    };
    for row in rows {
        let text = serde_json::to_string(row).expect("plain structs serialize");
        // `,` before it and the closing `]`.
        if chunk.len() > 1 && chunk.len() + text.len() + 2 > CHUNK_BYTES_MAX {
            flush(&mut chunk, &mut writes);
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&text);
    }
    if chunk.len() > 1 || writes.is_empty() {
        flush(&mut chunk, &mut writes);
    }
    let count = writes.len() as u32;
    (writes, count)
}

/// The staged rows of message `number` (in `chunks` chunks).
pub(crate) fn staged_rows(
    store: &Store,
    batch_key: &str,
    number: u32,
    chunks: u32,
) -> Result<Vec<StagedRow>, ReadError> {
    let mut rows = Vec::new();
    for chunk in 0..chunks {
        let key = chunk_key(batch_key, number, chunk);
        match read::<Vec<StagedRow>>(store, BATCH_ROWS, &key)? {
            Some(Versioned {
                value: Some(part), ..
            }) => rows.extend(part),
            _ => {
                return Err(ReadError::Corrupt {
                    id: format!("record {BATCH_ROWS}/{key}"),
                    reason: "a staged chunk of an open batch is missing".into(),
                })
            }
        }
    }
    Ok(rows)
}

/// Deletes of every chunk a batch staged.
pub(crate) fn chunk_deletes(batch_key: &str, batch: &Batch) -> Vec<RecordWrite> {
    batch
        .messages
        .iter()
        .flat_map(|(number, info)| {
            (0..info.chunks())
                .map(move |chunk| delete(BATCH_ROWS, chunk_key(batch_key, *number, chunk)))
        })
        .collect()
}

/// Batches in key order after `after`, at most `limit`, whose key starts
/// with `prefix` (`{client}/` for one client, empty for all).
pub(crate) fn list_batches(
    store: &Store,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Batch)>, ReadError> {
    let mut found = Vec::new();
    // Every key with the prefix sorts after the prefix itself.
    let start = after.or((!prefix.is_empty()).then_some(prefix));
    for_each_record(store, BATCHES, start, |record| {
        if !record.key.starts_with(prefix) {
            return Ok::<_, ReadError>(false);
        }
        let batch: Batch = decode(&record)?;
        found.push((record.key, batch));
        Ok(found.len() < limit)
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn chunks_fit_records() {
        let row = |i: usize| StagedRow {
            key: format!("k{i}"),
            value: Some(
                RawValue::from_string(format!("{{\"v\":\"{}\"}}", "\\\"".repeat(450))).unwrap(),
            ),
        };
        let rows: Vec<StagedRow> = (0..200).map(row).collect();
        let (writes, count) = chunk_writes("c/erp/1", 3, &rows);
        assert_eq!(writes.len() as u32, count);
        assert!(count >= 3, "{count}");
        let mut back = Vec::new();
        for write in &writes {
            let value = write.value.as_ref().unwrap();
            assert!(value.len() <= fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX);
            back.extend(serde_json::from_slice::<Vec<StagedRow>>(value).unwrap());
        }
        assert_eq!(back, rows);
        assert_eq!(writes[0].key, "c/erp/1/0000000003/00000");
        // Thousands of tiny rows: the envelope dominates, still one record
        // per chunk.
        let tiny: Vec<StagedRow> = (0..5000)
            .map(|i| StagedRow {
                key: i.to_string(),
                value: (i % 3 != 0).then(|| RawValue::from_string("{\"N\":\"x\"}".into()).unwrap()),
            })
            .collect();
        let (writes, _) = chunk_writes("c/erp/1", 1, &tiny);
        let mut back = Vec::new();
        for write in &writes {
            let value = write.value.as_ref().unwrap();
            assert!(value.len() <= fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX);
            back.extend(serde_json::from_slice::<Vec<StagedRow>>(value).unwrap());
        }
        assert_eq!(back, tiny);
        assert!(writes.len() >= 2);
        let (empty, one) = chunk_writes("c/erp/1", 1, &[]);
        assert_eq!(
            (empty.len(), one),
            (1, 1),
            "an empty message still has its chunk"
        );
    }

    #[test]
    fn quiet_leases_go_first() {
        let mut state = ClientState::default();
        for i in 0..(LEASES_PER_CLIENT_MAX as u64 + 3) {
            state.renew(&format!("erp{i}"), "a", 100 + i);
        }
        assert_eq!(state.leases.len(), LEASES_PER_CLIENT_MAX);
        assert!(!state.leases.contains_key("erp0"));
        assert!(state.leases.contains_key("erp66"));
    }
}
