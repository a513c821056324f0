//! Batches and entities as people and senders see them: the HTTP API
//! (`api/batches.rs`, `api/entities.rs`) and the CLI (`fieldsync batches`,
//! `fieldsync entities`) read through these, so both show the same thing.

use fieldsync_node::store::{ReadError, Store, WriteError};
use serde::Serialize;
use utoipa::ToSchema;

use super::entities::{self, Entities};
use super::rules::{Batch, State as BatchState};
use super::staging;

/// A batch as its sender and operators see it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    pub erp: String,
    pub batch_id: i64,
    pub client: String,
    /// `open`, `committed` or `expired`.
    pub state: String,
    pub messages_received: Vec<u32>,
    /// Numbers below the highest received that have not arrived.
    pub missing: Vec<u32>,
    /// Rows staged (open) or records written (committed).
    pub records: u64,
    /// The latest refused summary's errors.
    pub errors: Vec<String>,
    pub summaries_refused: u32,
    pub created_at: String,
    pub updated_at: String,
    pub committed_at: Option<String>,
}

pub(crate) fn view(batch: &Batch) -> BatchView {
    let staged = batch.rows_staged();
    BatchView {
        erp: batch.erp.clone(),
        batch_id: batch.batch_id,
        client: batch.client.clone(),
        state: batch.state.as_str().to_string(),
        messages_received: batch.messages.keys().copied().collect(),
        missing: batch.missing(),
        records: match batch.state {
            BatchState::Committed => batch.records_committed,
            _ => staged,
        },
        errors: batch.errors.clone(),
        summaries_refused: batch.summaries_refused,
        created_at: fieldsync_node::clock::rfc3339_ms(batch.created_at_ms),
        updated_at: fieldsync_node::clock::rfc3339_ms(batch.updated_at_ms),
        committed_at: batch.committed_at_ms.map(fieldsync_node::clock::rfc3339_ms),
    }
}

/// Batches whose key starts with `prefix` (`{client}/`, or empty for
/// all), after `after`, scanning at most `scan_max`: `(key, view)`.
pub(crate) fn scan(
    store: &Store,
    prefix: &str,
    after: Option<&str>,
    scan_max: usize,
) -> Result<Vec<(String, BatchView)>, ReadError> {
    Ok(staging::list_batches(store, prefix, after, scan_max)?
        .into_iter()
        .map(|(key, batch)| (key, view(&batch)))
        .collect())
}

/// Batches of every client (or of `client`) that `wanted` keeps, at most
/// `limit` (CLI). Reads every batch record if need be: the CLI runs on a
/// stopped node, and history is pruned (`history.rs`).
pub fn list(
    store: &Store,
    client: Option<&str>,
    wanted: impl Fn(&BatchView) -> bool,
    limit: usize,
) -> Result<Vec<BatchView>, ReadError> {
    let prefix = client.map(|c| format!("{c}/")).unwrap_or_default();
    let start = (!prefix.is_empty()).then_some(prefix.as_str());
    let mut found = Vec::new();
    staging::for_each_record(store, staging::BATCHES, start, |record| {
        if !record.key.starts_with(&prefix) {
            return Ok(false);
        }
        let batch = view(&staging::decode::<Batch>(&record)?);
        if wanted(&batch) {
            found.push(batch);
        }
        Ok::<_, ReadError>(found.len() < limit)
    })?;
    Ok(found)
}

/// One batch of `client` (CLI).
pub fn get(
    store: &Store,
    client: &str,
    erp: &str,
    batch_id: i64,
) -> Result<Option<BatchView>, ReadError> {
    let key = staging::batch_key(client, erp, batch_id);
    Ok(staging::load_batch(store, &key)?.value.as_ref().map(view))
}

/// Every ERP with a configuration, and it (CLI).
pub fn all_entities(store: &Store) -> Result<Vec<(String, Entities)>, ReadError> {
    let mut found = Vec::new();
    staging::for_each_record(store, entities::ENTITIES, None, |record| {
        let value: Entities = staging::decode(&record)?;
        found.push((record.key, value));
        Ok::<_, ReadError>(true)
    })?;
    Ok(found)
}

/// Set an ERP's configuration after checking it (CLI and API).
pub fn set_entities(store: &Store, erp: &str, config: &Entities) -> Result<(), SetError> {
    super::rows::check_erp(erp).map_err(SetError::Invalid)?;
    let mut config = config.clone();
    for query in &mut config.queries {
        if query.metadata.is_null() {
            query.metadata = serde_json::Value::Object(serde_json::Map::new());
        }
    }
    entities::check(&config).map_err(SetError::Invalid)?;
    let write = entities::write(erp, &config, fieldsync_node::store::Expect::Any);
    store.write_record(&write.collection, &write.key, write.value, write.expect)?;
    Ok(())
}

/// Setting an ERP's configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}
