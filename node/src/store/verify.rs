//! `fieldsync verify`: read everything and report every inconsistency.

use std::collections::HashMap;

use super::keys;
use super::records::{decode, ChangeRecord, DocIndex};
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
        match decode::<ChangeRecord>(&value) {
            Ok(record) => {
                latest.insert(record.id, (seq, record.heads));
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
    Ok(problems)
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
    match WorkOrderDoc::load(&bytes, store.actor()) {
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
