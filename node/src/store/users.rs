//! Users and integration clients, stored as JSON records.
//!
//! JSON (not postcard) because these records grow fields over time (secret
//! hashes, enrolled nodes) and `#[serde(default)]` lets old records load.

use fieldsync_schemas::{Role, Scope};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub role: Role,
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Argon2id hash of the client secret (the gateway issue fills it).
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// Hash of a pending one-time enrollment code (the sync issue).
    #[serde(default)]
    pub enroll_code_hash: Option<String>,
    /// When that code stops working, in ms since the Unix epoch (`None`:
    /// never; codes issued before expiry existed).
    #[serde(default)]
    pub enroll_code_expires_at_ms: Option<u64>,
    /// Node ids (certificate fingerprints) enrolled for this user.
    #[serde(default)]
    pub node_ids: Vec<String>,
    #[serde(default)]
    pub revoked: bool,
    pub created_at: String,
}

/// Longest user id accepted.
pub const USER_ID_BYTES_MAX: usize = 64;

pub(crate) fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > USER_ID_BYTES_MAX {
        return Err(format!("user id must be 1 to {USER_ID_BYTES_MAX} bytes"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err("user id may hold only letters, digits, `-`, `_`, `.` and `@`".into());
    }
    Ok(())
}
