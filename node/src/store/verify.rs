//! `fieldsync verify`: read everything and report every inconsistency.

use std::collections::HashMap;

use fieldsync_schemas::collection::{
    office_only, validate_collection_name, validate_record_key, CollectionKind,
};

use super::keys;
use super::records::{decode, ChangeRecord, CollectionStats, DocIndex, StoredRecord};
use super::{ReadError, Store};
use crate::doc::WorkOrderDoc;

/// One inconsistency found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub detail: String,
}

fn problem(what: impl Into<String>, detail: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        detail: detail.into(),
    }
}

pub(crate) fn run(store: &Store, mut progress: impl FnMut(u64)) -> Result<Vec<Problem>, ReadError> {
    let mut problems = Vec::new();
    let data = store.data();
    // Pass 1: the changelog is gap-free from 1, each entry decodes, and we
    // remember each document's latest entry. Memory: one seq per document.
    let mut latest: HashMap<String, (u64, Vec<[u8; 32]>)> = HashMap::new();
    // Each data record's latest entry: (seq, version).
    let mut record_latest: HashMap<(String, String), (u64, u64)> = HashMap::new();
    let mut expected = 1u64;
    for item in data.scan_prefix([keys::CHANGELOG]) {
        let (key, value) = item.map_err(|e| ReadError::Io(e.to_string()))?;
        let Some(seq) = keys::changelog_seq(&key) else {
            problems.push(problem("changelog", format!("malformed key {key:?}")));
            continue;
        };
        if seq != expected {
            problems.push(problem(
                "changelog",
                format!("gap: expected seq {expected}, found {seq}"),
            ));
        }
        expected = seq + 1;
        match ChangeRecord::decode(&value) {
            Ok(record) if record.is_work_order() => {
                latest.insert(record.id, (seq, record.heads));
            }
            Ok(record) => {
                let collection = record.collection.name().to_string();
                record_latest.insert((collection, record.id), (seq, record.version));
            }
            Err(e) => problems.push(problem(
                format!("changelog {seq}"),
                format!("undecodable: {e}"),
            )),
        }
    }
    // Pass 2: every indexed document loads from its chunks, its heads match
    // the index, and the index agrees with the changelog.
    let mut checked = 0u64;
    let mut after: Option<String> = None;
    loop {
        let ids = store.doc_ids(after.as_deref(), 512)?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        for id in ids {
            checked += 1;
            progress(checked);
            check_document(store, &id, latest.remove(&id), &mut problems)?;
        }
        after = Some(last);
    }
    for (id, (seq, heads)) in latest {
        if heads.is_empty() {
            // The latest entry is a purge (`revocation.rs`): no document
            // is expected.
            continue;
        }
        problems.push(problem(
            format!("document {id}"),
            format!("changelog entry {seq} but no document"),
        ));
    }
    check_records(store, record_latest, &mut problems)?;
    for (what, detail) in store.check_reader_index()? {
        problems.push(problem(what, detail));
    }
    Ok(problems)
}

/// Every record decodes, has a valid name and (live) JSON value; a data
/// record's version and seq match its latest changelog entry, an internal
/// one has none; each collection's live count matches its records.
fn check_records(
    store: &Store,
    mut latest: HashMap<(String, String), (u64, u64)>,
    problems: &mut Vec<Problem>,
) -> Result<(), ReadError> {
    let mut live: HashMap<String, u64> = HashMap::new();
    for item in store.data().scan_prefix([keys::RECORD]) {
        let (key, value) = item.map_err(|e| ReadError::Io(e.to_string()))?;
        let Some((collection, record_key)) = split_record_key(&key) else {
            problems.push(problem("records", format!("malformed key {key:?}")));
            continue;
        };
        let what = format!("record {collection}/{record_key}");
        if validate_collection_name(&collection).is_err()
            || validate_record_key(&record_key).is_err()
        {
            problems.push(problem(&what, "invalid collection name or key"));
        }
        let record: StoredRecord = match decode(&value) {
            Ok(record) => record,
            Err(e) => {
                problems.push(problem(&what, format!("undecodable: {e}")));
                continue;
            }
        };
        if !record.deleted {
            *live.entry(collection.clone()).or_default() += 1;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&record.value).is_err() {
                problems.push(problem(&what, "value is not JSON"));
            }
        }
        let logged = latest.remove(&(collection.clone(), record_key));
        let expected = match CollectionKind::of(&collection) {
            CollectionKind::Data => logged,
            CollectionKind::Internal if office_only(&collection) => logged,
            CollectionKind::Internal => None,
        };
        let found = (record.last_seq != 0).then_some((record.last_seq, record.version));
        if found != expected {
            problems.push(problem(
                &what,
                format!("stored (seq, version) {found:?}, changelog {expected:?}"),
            ));
        }
    }
    for ((collection, key), (seq, _)) in latest {
        problems.push(problem(
            format!("record {collection}/{key}"),
            format!("changelog entry {seq} but no record"),
        ));
    }
    for item in store.data().scan_prefix([keys::COLLECTION]) {
        let (key, value) = item.map_err(|e| ReadError::Io(e.to_string()))?;
        let name = String::from_utf8_lossy(&key[1..]).into_owned();
        let counted = live.remove(&name).unwrap_or(0);
        match decode::<CollectionStats>(&value) {
            Ok(stats) if stats.live == counted => {}
            Ok(stats) => problems.push(problem(
                format!("collection {name}"),
                format!("counts {} live records, found {counted}", stats.live),
            )),
            Err(e) => problems.push(problem(
                format!("collection {name}"),
                format!("undecodable: {e}"),
            )),
        }
    }
    for (name, counted) in live {
        problems.push(problem(
            format!("collection {name}"),
            format!("{counted} live records but no collection entry"),
        ));
    }
    Ok(())
}

/// `r`, collection, a zero byte, key.
fn split_record_key(key: &[u8]) -> Option<(String, String)> {
    let rest = key.strip_prefix(&[keys::RECORD])?;
    let zero = rest.iter().position(|b| *b == 0)?;
    let collection = std::str::from_utf8(&rest[..zero]).ok()?;
    let record_key = std::str::from_utf8(&rest[zero + 1..]).ok()?;
    Some((collection.to_string(), record_key.to_string()))
}

fn check_document(
    store: &Store,
    id: &str,
    latest: Option<(u64, Vec<[u8; 32]>)>,
    problems: &mut Vec<Problem>,
) -> Result<(), ReadError> {
    let what = format!("document {id}");
    let index: DocIndex = match store.doc_index(id) {
        Ok(Some(index)) => index,
        Ok(None) => return Ok(()),
        Err(e) => {
            problems.push(problem(&what, e.to_string()));
            return Ok(());
        }
    };
    match latest {
        None => problems.push(problem(&what, "no changelog entry")),
        Some((seq, heads)) => {
            if seq != index.last_seq {
                problems.push(problem(
                    &what,
                    format!("index says last seq {}, changelog {seq}", index.last_seq),
                ));
            }
            if heads != index.heads {
                problems.push(problem(&what, "changelog heads differ from the index"));
            }
        }
    }
    let bytes = match store.doc_bytes(id) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(()),
        Err(e) => {
            problems.push(problem(&what, e.to_string()));
            return Ok(());
        }
    };
    match WorkOrderDoc::load(&bytes, &store.actor()) {
        Err(e) => problems.push(problem(&what, format!("cannot load: {e}"))),
        Ok(document) => {
            let heads: Vec<[u8; 32]> = document.heads().iter().map(|h| h.0).collect();
            if heads != index.heads {
                problems.push(problem(&what, "stored bytes' heads differ from the index"));
            }
            if let Err(e) = document.view() {
                problems.push(problem(&what, format!("not a valid work order: {e}")));
            }
        }
    }
    Ok(())
}
