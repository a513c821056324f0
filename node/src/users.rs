//! Users and integration clients, stored as JSON records, and how two
//! offices' copies of one user merge.
//!
//! JSON (not postcard) because these records grow fields over time (secret
//! hashes, enrolled nodes) and `#[serde(default)]` lets old records load.
//!
//! Why a merge and not newest-wins, as for data records: data records have
//! one writer (the ERP, through one central), users have two (an operator
//! at either central adds, enrolls, revokes). Newest-wins would let an
//! enrollment at one central erase a revocation made at the other in the
//! same version. So the receiver merges (`merge`): enrolled devices are a
//! union, a revocation is final, and the rest comes from the copy with the
//! greater version (then the greater bytes, so both sides pick the same).
//! The merge is commutative and idempotent, so two centrals that exchange
//! their copies in any order end with the same user at the same version.
//!
//! Here and not in `store/` because the sync engine, which builds without
//! sled, checks a peer's copy (`check_copy`) before it reaches the store.

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

/// Bytes of one enrolled node id, at most (a certificate fingerprint is 64
/// hex digits).
const NODE_ID_BYTES_MAX: usize = 128;

/// A peer's copy of a user was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserCopyError {
    #[error("user copy `{key}` is not a user: {reason}")]
    Shape { key: String, reason: String },
    #[error("user copy `{key}` names user `{id}`")]
    WrongId { key: String, id: String },
    #[error("user copy `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("user copy `{0}` deletes the user: users are revoked, never deleted")]
    Deleted(String),
}

/// Check a user copy a peer sent under record key `key`: a user of that
/// id, with a valid id and plausible node ids. Runs before the store.
pub fn check_copy(key: &str, value: &[u8]) -> Result<User, UserCopyError> {
    let user: User = serde_json::from_slice(value).map_err(|e| UserCopyError::Shape {
        key: key.chars().take(80).collect(),
        reason: e.to_string(),
    })?;
    if user.id != key {
        return Err(UserCopyError::WrongId {
            key: key.chars().take(80).collect(),
            id: user.id.chars().take(80).collect(),
        });
    }
    let invalid = |reason: String| UserCopyError::Invalid {
        key: key.to_string(),
        reason,
    };
    validate_id(&user.id).map_err(invalid)?;
    let bad_node = user.node_ids.iter().any(|node| {
        node.is_empty()
            || node.len() > NODE_ID_BYTES_MAX
            || !node.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if bad_node {
        return Err(invalid("a node id is not a fingerprint".into()));
    }
    Ok(user)
}

/// One copy of a user and its record version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub user: User,
    pub version: u64,
}

/// Merge two copies of one user (the module docs say why): node ids are
/// the union (the winner's order, then the other's new ones), `revoked`
/// is true if either is, every other field comes from the winner, the copy
/// with the greater (version, JSON bytes). The version is the winner's
/// when the result is the winner and the winner is strictly newer (or
/// both are the same); otherwise one more than either, so the result
/// travels back to whoever sent a copy that lacks part of it.
///
/// Commutative (`merge(a, b) == merge(b, a)`) and idempotent
/// (`merge(a, a) == a`, `merge(merge(a, b), b) == merge(a, b)`).
pub fn merge(a: &Versioned, b: &Versioned) -> Versioned {
    let order = |copy: &Versioned| {
        (
            copy.version,
            serde_json::to_vec(&copy.user).unwrap_or_default(),
        )
    };
    let (winner, loser) = if order(a) >= order(b) { (a, b) } else { (b, a) };
    let mut user = winner.user.clone();
    for node in &loser.user.node_ids {
        if !user.node_ids.contains(node) {
            user.node_ids.push(node.clone());
        }
    }
    user.revoked = a.user.revoked || b.user.revoked;
    let keeps_winner =
        user == winner.user && (winner.version > loser.version || user == loser.user);
    let version = if keeps_winner {
        winner.version
    } else {
        winner.version.max(loser.version).saturating_add(1)
    };
    Versioned { user, version }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_schemas::Role;

    fn user(version: u64, nodes: &[&str], revoked: bool, secret: &str) -> Versioned {
        Versioned {
            user: User {
                id: "tech-1".into(),
                role: Role::Technician,
                scopes: Vec::new(),
                secret_hash: Some(secret.into()),
                enroll_code_hash: None,
                enroll_code_expires_at_ms: None,
                node_ids: nodes.iter().map(|n| n.to_string()).collect(),
                revoked,
                created_at: "2026-01-01T00:00:00.000Z".into(),
            },
            version,
        }
    }

    /// (name, a, b, expected merge): each row is also checked swapped
    /// (commutative), merged with itself and with either input again
    /// (idempotent).
    #[test]
    fn merge_table() {
        let rows = [
            (
                "same copy",
                user(3, &["a"], false, "s"),
                user(3, &["a"], false, "s"),
                user(3, &["a"], false, "s"),
            ),
            (
                "newer is a superset",
                user(2, &["a"], false, "s"),
                user(3, &["a", "b"], false, "s"),
                user(3, &["a", "b"], false, "s"),
            ),
            (
                "union of devices",
                user(3, &["a"], false, "s"),
                user(3, &["b"], false, "s"),
                user(4, &["b", "a"], false, "s"),
            ),
            (
                "union travels back",
                user(5, &["a"], false, "s"),
                user(2, &["b"], false, "s"),
                user(6, &["a", "b"], false, "s"),
            ),
            (
                "revoked wins over newer",
                user(2, &["a"], true, "s"),
                user(7, &["a"], false, "t"),
                user(8, &["a"], true, "t"),
            ),
            (
                "revoked newer wins",
                user(2, &["a"], false, "s"),
                user(3, &["a"], true, "s"),
                user(3, &["a"], true, "s"),
            ),
            (
                "newer fields win",
                user(2, &["a"], false, "old"),
                user(4, &["a"], false, "new"),
                user(4, &["a"], false, "new"),
            ),
            (
                "same version, bytes decide",
                user(4, &["a"], false, "x"),
                user(4, &["a"], false, "y"),
                user(5, &["a"], false, "y"),
            ),
        ];
        for (name, a, b, expected) in rows {
            let merged = merge(&a, &b);
            assert_eq!(merged, expected, "{name}");
            assert_eq!(merge(&b, &a), merged, "{name}: commutative");
            assert_eq!(merge(&merged, &merged), merged, "{name}: idempotent");
            assert_eq!(merge(&merged, &a), merged, "{name}: again with a");
            assert_eq!(merge(&b, &merged), merged, "{name}: again with b");
            assert!(merged.version >= a.version.max(b.version), "{name}");
            if merged.user != a.user && merged.user != b.user {
                assert!(
                    merged.version > a.version.max(b.version),
                    "{name}: travels back"
                );
            }
        }
    }

    #[test]
    fn a_malformed_copy_is_refused() {
        let good = serde_json::to_vec(&user(1, &["ab12"], false, "s").user).unwrap();
        assert!(check_copy("tech-1", &good).is_ok());
        let refused = |key: &str, value: &[u8]| check_copy(key, value).unwrap_err();
        assert!(matches!(
            refused("tech-2", &good),
            UserCopyError::WrongId { .. }
        ));
        assert!(matches!(
            refused("tech-1", b"{}"),
            UserCopyError::Shape { .. }
        ));
        assert!(matches!(
            refused("tech-1", b"[1]"),
            UserCopyError::Shape { .. }
        ));
        let mut bad = user(1, &["not a fingerprint"], false, "s").user;
        assert!(matches!(
            refused("tech-1", &serde_json::to_vec(&bad).unwrap()),
            UserCopyError::Invalid { .. }
        ));
        bad.id = "bad id".into();
        bad.node_ids.clear();
        assert!(matches!(
            refused("bad id", &serde_json::to_vec(&bad).unwrap()),
            UserCopyError::Invalid { .. }
        ));
    }
}
