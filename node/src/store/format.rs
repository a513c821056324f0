//! The store's on-disk format version, checked before sled opens anything.
//!
//! Why a plain file beside the sled directory: an older binary must refuse a
//! newer store *without touching it*, and opening sled may write. The version
//! is read from `FORMAT` first; sled is opened only when we know the format.

use std::path::Path;

/// The format this binary writes.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format this binary can migrate from.
pub const FORMAT_VERSION_MIN: u32 = 1;

const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "fieldsync-store ";

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("no fieldsync store at {0} (run `fieldsync init` first)")]
    Missing(String),
    #[error(
        "the store at {path} has format {found}, newer than this binary supports ({supported}); \
         install a newer fieldsync. Nothing was changed."
    )]
    Newer {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "the store at {path} has format {found}, too old to migrate (oldest supported: {oldest})"
    )]
    TooOld {
        path: String,
        found: u32,
        oldest: u32,
    },
    #[error("the store's FORMAT file at {path} is unreadable: {reason}")]
    Unreadable { path: String, reason: String },
}

pub(crate) fn read(dir: &Path) -> Result<u32, FormatError> {
    let path = dir.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FormatError::Missing(dir.display().to_string()))
        }
        Err(e) => {
            return Err(FormatError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    text.trim()
        .strip_prefix(FORMAT_PREFIX)
        .and_then(|version| version.parse().ok())
        .ok_or_else(|| FormatError::Unreadable {
            path: path.display().to_string(),
            reason: format!("expected `{FORMAT_PREFIX}<number>`"),
        })
}

/// Refuse what we cannot open; say what must be migrated.
pub(crate) fn check(dir: &Path, found: u32) -> Result<(), FormatError> {
    let path = dir.display().to_string();
    if found > FORMAT_VERSION {
        return Err(FormatError::Newer {
            path,
            found,
            supported: FORMAT_VERSION,
        });
    }
    if found < FORMAT_VERSION_MIN {
        return Err(FormatError::TooOld {
            path,
            found,
            oldest: FORMAT_VERSION_MIN,
        });
    }
    Ok(())
}

pub(crate) fn write(dir: &Path, version: u32) -> std::io::Result<()> {
    let path = dir.join(FORMAT_FILE);
    let temporary = dir.join("FORMAT.tmp");
    std::fs::write(&temporary, format!("{FORMAT_PREFIX}{version}\n"))?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(temporary, path)?;
    // The rename is durable only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// Migrations from older formats, applied in order by `Store::open`.
///
/// 1 → 2: records. Changelog entries gained a version; old entries still
/// decode (`ChangeRecord::decode`), so the log is not rewritten. Users move
/// from their own tree into the internal `users` collection of the `data`
/// tree, so that their writes go through the committer.
///
/// 2 → 3: users travel between offices. A user's write takes a changelog
/// seq since then; users written before get one now, so an office sends
/// every user it has, not only those written after the upgrade.
///
/// 3 → 4: the reader index (`reader_index.rs`): a technician's device
/// reads only the changelog entries it may see. Built from the documents'
/// index and the records: each document's latest entry under its assignee
/// and previous assignee, each data record's latest entry.
pub(crate) const MIGRATIONS: &[Migration] = &[
    (1, users_into_records),
    (2, users_into_changelog),
    (3, reader_index_built),
];

/// Build the reader index (idempotent: it starts by dropping what a
/// crashed run left).
fn reader_index_built(db: &sled::Db) -> sled::Result<()> {
    let data = db.open_tree("data")?;
    let written = super::reader_index::rebuild(&data)?;
    tracing::info!(keys = written, "built the reader index");
    Ok(())
}

/// Copy every user into `users` records (version 1), count them, then
/// empty the old tree. Re-running it after a crash copies the same users
/// again and counts what is there: it is idempotent.
fn users_into_records(db: &sled::Db) -> sled::Result<()> {
    use super::keys;
    use super::record_store::USERS;
    use super::records::{encode, CollectionStats, StoredRecord};
    let users = db.open_tree("users")?;
    let data = db.open_tree("data")?;
    let mut batch = sled::Batch::default();
    for item in users.iter() {
        let (id, value) = item?;
        let record = StoredRecord {
            version: 1,
            deleted: false,
            last_seq: 0,
            value: value.to_vec(),
        };
        let id = String::from_utf8_lossy(&id);
        batch.insert(keys::record(USERS, &id), encode(&record));
    }
    data.apply_batch(batch)?;
    let live = data.scan_prefix(keys::record_prefix(USERS)).count() as u64;
    if live > 0 {
        data.insert(keys::collection(USERS), encode(&CollectionStats { live }))?;
    }
    db.flush()?;
    users.clear()?;
    db.flush()?;
    Ok(())
}

/// Give every user without a changelog entry one (after the last seq),
/// in one atomic batch. Re-running it after a crash finds either none
/// done or all done: idempotent.
fn users_into_changelog(db: &sled::Db) -> sled::Result<()> {
    use fieldsync_schemas::{ChangeOp, Collection};

    use super::keys;
    use super::record_store::USERS;
    use super::records::{decode, encode, ChangeRecord, StoredRecord};
    let data = db.open_tree("data")?;
    let mut next_seq = match data
        .scan_prefix([keys::CHANGELOG])
        .next_back()
        .transpose()?
    {
        Some((key, _)) => match keys::changelog_seq(&key) {
            Some(seq) => seq + 1,
            None => return Err(sled::Error::Unsupported("a bad changelog key".into())),
        },
        None => 1,
    };
    let prefix = keys::record_prefix(USERS);
    let mut batch = sled::Batch::default();
    for item in data.scan_prefix(&prefix) {
        let (key, value) = item?;
        // An undecodable record is left for `verify` to report.
        let Ok(mut record) = decode::<StoredRecord>(&value) else {
            continue;
        };
        if record.last_seq != 0 || record.deleted {
            continue;
        }
        let entry = ChangeRecord {
            collection: Collection::Reference(USERS.into()),
            id: String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
            number: None,
            op: ChangeOp::Create,
            heads: Vec::new(),
            version: record.version,
        };
        record.last_seq = next_seq;
        batch.insert(&keys::changelog(next_seq), encode(&entry));
        batch.insert(key, encode(&record));
        next_seq += 1;
    }
    data.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// A migration step: the format it starts from, and what it does.
pub(crate) type Migration = (u32, fn(&sled::Db) -> sled::Result<()>);
