//! The store's record API: read, list and write plain versioned records,
//! list collections. Users are records of the internal `users` collection.
//!
//! Writes are write sets like any other (`Store::submit`): one committer,
//! one flush, acknowledged when durable. Reads go straight to sled: a
//! record is written whole, so there is no cache to keep coherent.

use fieldsync_schemas::collection::{validate_collection_name, CollectionKind};

use super::keys;
use super::record_writes::{Expect, RecordReceipt, RecordWrite};
use super::records::{decode, CollectionStats, StoredRecord};
use super::users::{self, User};
use super::{io, ReadError, Store, WriteError, WriteSet};
use crate::access::ReadGrants;

/// The internal collection users and integration clients live in.
pub(crate) const USERS: &str = fieldsync_schemas::collection::USERS;
/// The internal collection of read grants set over the API, by collection.
pub(crate) const COLLECTION_GRANTS: &str = "collection_grants";

/// One record, as readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub collection: String,
    pub key: String,
    pub version: u64,
    pub deleted: bool,
    /// The JSON value (empty when deleted).
    pub value: Vec<u8>,
    /// Seq of the record's latest changelog entry (0: internal).
    pub last_seq: u64,
}

/// One collection and its figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionInfo {
    pub name: String,
    pub kind: CollectionKind,
    /// Records not deleted.
    pub live: u64,
}

impl Store {
    /// Write one record (a value, or `None` to delete) and wait until it
    /// is durable.
    pub fn write_record(
        &self,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
        expect: Expect,
    ) -> Result<RecordReceipt, WriteError> {
        let write = RecordWrite {
            collection: collection.to_string(),
            key: key.to_string(),
            value,
            expect,
            replicated_version: None,
        };
        let receipt = self
            .submit(WriteSet {
                records: vec![write],
                ..WriteSet::default()
            })?
            .wait()?;
        Ok(receipt
            .records
            .into_iter()
            .next()
            .expect("one receipt per record write"))
    }

    /// One record, deleted ones included (their version still counts).
    pub fn record(&self, collection: &str, key: &str) -> Result<Option<Record>, ReadError> {
        let Some(bytes) = self.data().get(keys::record(collection, key)).map_err(io)? else {
            return Ok(None);
        };
        let stored: StoredRecord = decode(&bytes).map_err(|e| ReadError::Corrupt {
            id: format!("record {collection}/{key}"),
            reason: e.to_string(),
        })?;
        Ok(Some(record_of(collection, key.to_string(), stored)))
    }

    /// Live records of `collection` in key order, after `after` (paging),
    /// at most `limit`.
    pub fn records(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, ReadError> {
        let prefix = keys::record_prefix(collection);
        let start = match after {
            Some(key) => {
                let mut start = keys::record(collection, key);
                start.push(0);
                start
            }
            None => prefix.clone(),
        };
        let mut records = Vec::with_capacity(limit.min(1024));
        for item in self.data().range(start..) {
            if records.len() >= limit {
                break;
            }
            let (key, bytes) = item.map_err(io)?;
            let Some(record_key) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let record_key = String::from_utf8_lossy(record_key).into_owned();
            let stored: StoredRecord = decode(&bytes).map_err(|e| ReadError::Corrupt {
                id: format!("record {collection}/{record_key}"),
                reason: e.to_string(),
            })?;
            if !stored.deleted {
                records.push(record_of(collection, record_key, stored));
            }
        }
        Ok(records)
    }

    /// A collection that has ever held a record, with its figures.
    pub fn collection(&self, name: &str) -> Result<Option<CollectionInfo>, ReadError> {
        if validate_collection_name(name).is_err() {
            return Ok(None);
        }
        let Some(bytes) = self.data().get(keys::collection(name)).map_err(io)? else {
            return Ok(None);
        };
        Ok(Some(collection_info(name.to_string(), &bytes)?))
    }

    /// Every collection that has ever held a record, in name order.
    pub fn collections(&self) -> Result<Vec<CollectionInfo>, ReadError> {
        let mut collections = Vec::new();
        for item in self.data().scan_prefix([keys::COLLECTION]) {
            let (key, bytes) = item.map_err(io)?;
            let name = String::from_utf8_lossy(&key[1..]).into_owned();
            collections.push(collection_info(name, &bytes)?);
        }
        Ok(collections)
    }

    /// Who may read data collection `name`: the grants an operator set
    /// over the API, else `configured` (from `fieldsync.toml`), else the
    /// default (operators and integrations with `records:read`).
    pub fn read_grants(
        &self,
        name: &str,
        configured: Option<&ReadGrants>,
    ) -> Result<ReadGrants, ReadError> {
        match self.record(COLLECTION_GRANTS, name)? {
            Some(record) if !record.deleted => {
                serde_json::from_slice(&record.value).map_err(|e| ReadError::Corrupt {
                    id: format!("read grants of {name}"),
                    reason: e.to_string(),
                })
            }
            _ => Ok(configured.cloned().unwrap_or_default()),
        }
    }

    /// Set who may read data collection `name`, durably.
    pub fn set_read_grants(&self, name: &str, grants: &ReadGrants) -> Result<(), WriteError> {
        validate_collection_name(name).map_err(|e| WriteError::InvalidRecord(e.to_string()))?;
        let bytes = serde_json::to_vec(grants).map_err(|e| WriteError::Io(e.to_string()))?;
        self.write_record(COLLECTION_GRANTS, name, Some(bytes), Expect::Any)?;
        Ok(())
    }

    pub fn user(&self, id: &str) -> Result<Option<User>, ReadError> {
        match self.record(USERS, id)? {
            Some(record) if !record.deleted => user_of(id, &record.value).map(Some),
            _ => Ok(None),
        }
    }

    /// A user and its record version, for a compare-and-set with
    /// [`Store::put_user_if`].
    pub fn user_versioned(&self, id: &str) -> Result<Option<(User, u64)>, ReadError> {
        match self.record(USERS, id)? {
            Some(record) if !record.deleted => {
                Ok(Some((user_of(id, &record.value)?, record.version)))
            }
            _ => Ok(None),
        }
    }

    /// Replace a user only if its record is still at `version` (else
    /// `WriteError::VersionMismatch`): a change made meanwhile, such as a
    /// revocation, is never overwritten.
    pub fn put_user_if(&self, user: &User, version: u64) -> Result<(), WriteError> {
        users::validate_id(&user.id).map_err(WriteError::InvalidId)?;
        let bytes = serde_json::to_vec(user).map_err(|e| WriteError::Io(e.to_string()))?;
        self.write_record(USERS, &user.id, Some(bytes), Expect::Version(version))?;
        Ok(())
    }

    /// Every user; bounded by the number of users the office created.
    pub fn users(&self) -> Result<Vec<User>, ReadError> {
        let mut users = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.records(USERS, after.as_deref(), 512)?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for record in &page {
                users.push(user_of(&record.key, &record.value)?);
            }
        }
        Ok(users)
    }

    /// Insert or replace a user, durably, through the committer.
    pub fn put_user(&self, user: &User) -> Result<(), WriteError> {
        users::validate_id(&user.id).map_err(WriteError::InvalidId)?;
        let bytes = serde_json::to_vec(user).map_err(|e| WriteError::Io(e.to_string()))?;
        self.write_record(USERS, &user.id, Some(bytes), Expect::Any)?;
        Ok(())
    }
}

fn record_of(collection: &str, key: String, stored: StoredRecord) -> Record {
    Record {
        collection: collection.to_string(),
        key,
        version: stored.version,
        deleted: stored.deleted,
        value: stored.value,
        last_seq: stored.last_seq,
    }
}

fn collection_info(name: String, bytes: &[u8]) -> Result<CollectionInfo, ReadError> {
    let stats: CollectionStats = decode(bytes).map_err(|e| ReadError::Corrupt {
        id: format!("collection {name}"),
        reason: e.to_string(),
    })?;
    Ok(CollectionInfo {
        kind: CollectionKind::of(&name),
        name,
        live: stats.live,
    })
}

fn user_of(id: &str, value: &[u8]) -> Result<User, ReadError> {
    serde_json::from_slice(value).map_err(|e| ReadError::Corrupt {
        id: format!("user {id}"),
        reason: e.to_string(),
    })
}
