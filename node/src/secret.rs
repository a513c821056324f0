//! Client secrets and one-time enrollment codes: generation, Argon2id
//! hashing, and verification.
//!
//! Why hashes only: the store holds a PHC-format Argon2id hash, never the
//! secret itself, so a copied data directory does not hand out credentials.
//! The secret is shown once, when `fieldsync user add` makes it. The gateway
//! checks a presented client secret with [`verify`]; the central checks an
//! enrollment code the same way, then clears its hash (one-time).
//!
//! Why Argon2id with the crate defaults (19 MiB, 2 passes, 1 lane): it is
//! the OWASP-recommended floor, and a check costs tens of milliseconds,
//! which is fine for token issuance (tokens, not secrets, ride on requests).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;

/// A key for one purpose derived from a secret: SHA-256 over a label
/// naming the purpose, then the secret, so knowing one derived key tells
/// nothing of the secret or of the keys derived for other purposes. The
/// one derivation the product uses: the node key's QUIC connection-id and
/// stateless-reset keys (`quic::tls`), the gateway token key's list-cursor
/// and form keys (`fieldsync_gateway::auth`). A label never changes once
/// shipped (keys derived from it would change with it); a new purpose
/// gets a new label.
pub fn derived_key(label: &[u8], secret: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(label)
        .chain_update(secret)
        .finalize()
        .into()
}

/// Random bytes in a client secret (shown as hex, so twice as many chars).
pub const CLIENT_SECRET_BYTES: usize = 32;
/// Characters in a one-time code, before grouping.
pub const ONE_TIME_CODE_CHARS: usize = 12;
/// One-time code characters per dash-separated group.
const ONE_TIME_CODE_GROUP_CHARS: usize = 4;
/// No I, L, O, U, 0 or 1: a code read over the phone must not be misread.
const ONE_TIME_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
/// Longest secret or code accepted by [`hash`] and [`verify`]: anything
/// longer is not one of ours, and Argon2 should not be fed megabytes.
pub const SECRET_BYTES_MAX: usize = 256;
/// Longest stored hash accepted by [`verify`].
pub const HASH_BYTES_MAX: usize = 512;
/// Random bytes in each hash's salt.
const SALT_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a secret must be 1 to {SECRET_BYTES_MAX} bytes, got {0}")]
    BadLength(usize),
    #[error("the stored secret hash is not a valid Argon2id PHC string: {0}")]
    BadHash(String),
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// A new client secret for an operator or integration client: 32 random
/// bytes from the thread CSPRNG (ChaCha, seeded by the OS), as hex.
pub fn generate_client_secret() -> String {
    let bytes: [u8; CLIENT_SECRET_BYTES] = rand::rng().random();
    hex::encode(bytes)
}

/// A new one-time code, e.g. `K7QX-M2PA-9TRD`: 12 characters from a
/// 30-letter alphabet (about 59 bits), easy to read aloud and type.
pub fn generate_one_time_code() -> String {
    let mut rng = rand::rng();
    let mut code = String::with_capacity(ONE_TIME_CODE_CHARS + 2);
    for i in 0..ONE_TIME_CODE_CHARS {
        if i > 0 && i % ONE_TIME_CODE_GROUP_CHARS == 0 {
            code.push('-');
        }
        let pick = rng.random_range(0..ONE_TIME_CODE_ALPHABET.len());
        code.push(char::from(ONE_TIME_CODE_ALPHABET[pick]));
    }
    code
}

/// Bring a typed one-time code to its canonical form: upper case, no
/// spaces, dashes between groups. `k7qx m2pa 9trd` → `K7QX-M2PA-9TRD`.
pub fn normalize_one_time_code(typed: &str) -> String {
    let letters: Vec<char> = typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    letters
        .chunks(ONE_TIME_CODE_GROUP_CHARS)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

fn check_length(secret: &str) -> Result<(), SecretError> {
    if secret.is_empty() || secret.len() > SECRET_BYTES_MAX {
        return Err(SecretError::BadLength(secret.len()));
    }
    Ok(())
}

/// Hash a secret or code with Argon2id and a fresh random salt; the result
/// is a self-describing PHC string (`$argon2id$v=19$m=...`).
pub fn hash(secret: &str) -> Result<String, SecretError> {
    check_length(secret)?;
    let salt_bytes: [u8; SALT_BYTES] = rand::rng().random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| SecretError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| SecretError::Hashing(e.to_string()))
}

/// Whether `secret` matches `stored`, a hash made by [`hash`]. A wrong
/// secret is `Ok(false)`; a damaged or foreign hash is an error, so the
/// caller can tell "wrong password" from "broken record".
pub fn verify(secret: &str, stored: &str) -> Result<bool, SecretError> {
    if stored.len() > HASH_BYTES_MAX {
        return Err(SecretError::BadHash(format!(
            "{} bytes, more than {HASH_BYTES_MAX}",
            stored.len()
        )));
    }
    let parsed = PasswordHash::new(stored).map_err(|e| SecretError::BadHash(e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(SecretError::BadHash(format!(
            "algorithm `{}`, expected `argon2id`",
            parsed.algorithm
        )));
    }
    if secret.is_empty() || secret.len() > SECRET_BYTES_MAX {
        // Not one of ours; a wrong secret, not a broken record.
        return Ok(false);
    }
    match Argon2::default().verify_password(secret.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(SecretError::BadHash(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation is SHA-256(label ‖ secret), byte for byte: keys made
    /// by earlier releases (cursors, QUIC resets) stay the same.
    #[test]
    fn a_derived_key_is_the_hash_of_label_then_secret() {
        assert_eq!(
            hex::encode(derived_key(b"a", b"b")),
            "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"
        );
        assert_ne!(derived_key(b"x", b"k"), derived_key(b"y", b"k"));
    }

    #[test]
    fn a_hashed_secret_verifies_and_a_different_one_does_not() {
        let secret = generate_client_secret();
        assert_eq!(secret.len(), CLIENT_SECRET_BYTES * 2);
        let stored = hash(&secret).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        assert!(!stored.contains(&secret));
        assert_eq!(verify(&secret, &stored), Ok(true));
        let other = generate_client_secret();
        assert_ne!(other, secret);
        assert_eq!(verify(&other, &stored), Ok(false));
        assert_eq!(verify("", &stored), Ok(false));
        assert_eq!(
            verify(&"x".repeat(SECRET_BYTES_MAX + 1), &stored),
            Ok(false)
        );
    }

    #[test]
    fn the_same_secret_hashes_differently_each_time() {
        let first = hash("same secret").unwrap();
        let second = hash("same secret").unwrap();
        assert_ne!(first, second, "salts must differ");
        assert_eq!(verify("same secret", &first), Ok(true));
        assert_eq!(verify("same secret", &second), Ok(true));
    }

    #[test]
    fn one_time_codes_are_grouped_from_the_unambiguous_alphabet() {
        let code = generate_one_time_code();
        assert_eq!(code.len(), ONE_TIME_CODE_CHARS + 2, "{code}");
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 3);
        for group in groups {
            assert_eq!(group.len(), ONE_TIME_CODE_GROUP_CHARS);
            assert!(group.bytes().all(|b| ONE_TIME_CODE_ALPHABET.contains(&b)));
        }
        assert_eq!(normalize_one_time_code(&code.to_lowercase()), code);
        assert_eq!(
            normalize_one_time_code(&code.replace('-', " ")),
            code,
            "spaces instead of dashes"
        );
        let stored = hash(&code).unwrap();
        assert_eq!(verify(&normalize_one_time_code(&code), &stored), Ok(true));
    }

    #[test]
    fn damaged_or_foreign_hashes_are_errors_not_mismatches() {
        assert!(matches!(
            verify("secret", "not a hash"),
            Err(SecretError::BadHash(_))
        ));
        assert!(matches!(
            verify("secret", &"$".repeat(HASH_BYTES_MAX + 1)),
            Err(SecretError::BadHash(_))
        ));
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo";
        assert!(matches!(
            verify("secret", argon2i),
            Err(SecretError::BadHash(_))
        ));
        assert_eq!(hash(""), Err(SecretError::BadLength(0)));
    }
}
