//! Opaque cursors for the work-order list.
//!
//! Why sealed and not just encoded: when the list's scan budget runs out,
//! the place to go on from is the last document scanned, which may be a
//! work order the caller may not see. Handing that id back, even base64
//! encoded, tells a technician the ids of other technicians' work orders
//! (hardening finding 7). So a cursor is the scan position sealed with
//! ChaCha20-Poly1305 under a key derived from the token signing key: the
//! caller can neither read it nor forge one, and cursors keep working
//! across restarts and across centrals that share the signing key. A
//! cursor that does not open is a 400 (`invalid-query`).

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use crate::error::{ApiError, ErrorKind};

/// Bound into every sealed cursor: a cursor of some other kind (or a
/// later format) does not open as this one.
const PURPOSE: &[u8] = b"fieldsync work-order list cursor v1";

/// Longest cursor opened (a document id is at most 128 bytes, which seals
/// to 208 characters).
const CURSOR_CHARS_MAX: usize = 256;

/// Seals and opens list cursors.
pub(crate) struct Cursors {
    key: LessSafeKey,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors(..)")
    }
}

fn invalid() -> ApiError {
    ApiError::new(
        ErrorKind::InvalidQuery,
        "`cursor` is not a cursor this gateway gave out; start the list again without one",
    )
}

impl Cursors {
    /// Cursors sealed with `secret` (32 bytes derived from the token key).
    pub(crate) fn new(secret: &[u8; 32]) -> Cursors {
        let key = UnboundKey::new(&CHACHA20_POLY1305, secret)
            .expect("ChaCha20-Poly1305 takes 32-byte keys");
        Cursors {
            key: LessSafeKey::new(key),
        }
    }

    /// The opaque cursor for scan position `position`.
    pub(crate) fn seal(&self, position: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = position.as_bytes().to_vec();
        // Sealing fails only past ChaCha20's 256 GiB per message.
        let _ = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(PURPOSE),
            &mut sealed,
        );
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The scan position inside `cursor`, or a 400.
    pub(crate) fn open(&self, cursor: &str) -> Result<String, ApiError> {
        if cursor.len() > CURSOR_CHARS_MAX {
            return Err(invalid());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| invalid())?;
        if bytes.len() <= NONCE_LEN {
            return Err(invalid());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| invalid())?;
        let mut sealed = sealed.to_vec();
        let position = self
            .key
            .open_in_place(nonce, Aad::from(PURPOSE), &mut sealed)
            .map_err(|_| invalid())?;
        String::from_utf8(position.to_vec()).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_to_its_position_and_shows_nothing_of_it() {
        let cursors = Cursors::new(&[7; 32]);
        let cursor = cursors.seal("theirs-0001");
        assert!(!cursor.contains("theirs"), "{cursor}");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&cursor)
            .unwrap();
        assert!(!bytes.windows(6).any(|window| window == b"theirs"));
        assert_eq!(cursors.open(&cursor).unwrap(), "theirs-0001");
        // Two cursors for one position differ (a fresh nonce each).
        assert_ne!(cursors.seal("theirs-0001"), cursor);
    }

    #[test]
    fn forged_tampered_and_foreign_cursors_are_refused() {
        let cursors = Cursors::new(&[7; 32]);
        let cursor = cursors.seal("a");
        // One bit of the sealed bytes flipped (not of the base64 text, whose
        // last character may carry only padding bits): the tag must fail.
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut bytes = engine.decode(&cursor).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        let tampered = engine.encode(&bytes);
        let foreign = Cursors::new(&[8; 32]).seal("a");
        let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("theirs-0001");
        for bad in ["", "theirs-0001", "%00", &plain, &tampered, &foreign] {
            let error = cursors.open(bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::InvalidQuery, "{bad}");
        }
        assert!(cursors.open(&"A".repeat(10_000)).is_err());
    }
}
