//! The store's on-disk format version, checked before sled opens anything.
//!
//! Why a plain file beside the sled directory: an older binary must refuse a
//! newer store *without touching it*, and opening sled may write. The version
//! is read from `FORMAT` first; sled is opened only when we know the format.

use std::path::Path;

/// The format this binary writes.
pub const FORMAT_VERSION: u32 = 1;
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

/// Migrations from older formats, applied in order by `Store::open`. Format 1
/// is the first; when format 2 comes, its step goes here and `open` reports
/// "migrated store from format 1 to 2".
pub(crate) const MIGRATIONS: &[Migration] = &[];

/// A migration step: the format it starts from, and what it does.
pub(crate) type Migration = (u32, fn(&sled::Db) -> sled::Result<()>);
