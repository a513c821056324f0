//! The field app's one credential and what is derived from it.
//!
//! Why a key in a file rather than a password: the technician is already
//! signed in to the laptop; the only question is whether a request comes
//! from this laptop's user. The node makes 32 random bytes on first start
//! (`field-app.key`, mode 0600) and hands them to the browser once, in the
//! URL it prints and writes to `field-app.url` (mode 0600). `/open`
//! compares them in constant time and answers with a session cookie:
//! `v1.<issued_s>.<nonce>.<tag>`, the tag an HMAC under the key over the
//! issue time and a random nonce, so it needs no storage and survives a
//! restart, and expires after [`SESSION_MAX_AGE_S`]. Forms carry a token,
//! an HMAC over the cookie's nonce, that another site can neither read nor
//! compute.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

use super::FieldAppError;

/// The key's file in the data directory.
pub const KEY_FILE: &str = "field-app.key";
/// The open URL's file in the data directory, for a launcher.
pub const URL_FILE: &str = "field-app.url";
/// Bytes of the key.
const KEY_BYTES: usize = 32;
/// Bytes of a session's nonce.
const NONCE_BYTES: usize = 16;
/// A session lasts this long; then the technician opens the URL again.
pub(super) const SESSION_MAX_AGE_S: u64 = 7 * 24 * 3600;
/// The session cookie's name.
pub(super) const COOKIE: &str = "fieldsync_field";
/// The hidden field that carries a form's token.
pub(super) const FORM_FIELD: &str = "csrf_token";

/// The app's key.
#[derive(Clone)]
pub struct FieldKey {
    bytes: [u8; KEY_BYTES],
    mac: hmac::Key,
}

impl std::fmt::Debug for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldKey(..)")
    }
}

impl FieldKey {
    fn from_array(bytes: [u8; KEY_BYTES]) -> FieldKey {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        FieldKey { bytes, mac }
    }

    /// A fresh random key (tests; the node keeps its key in a file).
    pub fn generate() -> FieldKey {
        FieldKey::from_array(rand::random())
    }

    /// The key in `dir` (`field-app.key`), made on first call (mode 0600).
    pub fn load_or_create(dir: &Path) -> Result<FieldKey, FieldAppError> {
        let path = dir.join(KEY_FILE);
        let io = |what: &str, source| FieldAppError::Io {
            what: format!("{what} {}", path.display()),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let array: [u8; KEY_BYTES] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| FieldAppError::BadKey {
                            path: path.display().to_string(),
                            bytes: bytes.len(),
                            expected: KEY_BYTES,
                        })?;
                Ok(FieldKey::from_array(array))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = FieldKey::generate();
                write_private(&path, &key.bytes, false).map_err(|e| io("writing", e))?;
                Ok(key)
            }
            Err(error) => Err(io("reading", error)),
        }
    }

    /// The key as it appears in the open URL.
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }

    /// Whether `presented` (from the URL) is the key, compared in constant
    /// time: both sides are MACed and the tags compared by `ring`.
    pub(super) fn matches(&self, presented: &str) -> bool {
        let tag = hmac::sign(&self.mac, b"field-app open v1\0");
        let Ok(presented) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
            return false;
        };
        let Ok(presented) = <[u8; KEY_BYTES]>::try_from(presented.as_slice()) else {
            return false;
        };
        let presented = hmac::Key::new(hmac::HMAC_SHA256, &presented);
        hmac::verify(&presented, b"field-app open v1\0", tag.as_ref()).is_ok()
    }

    fn tag(&self, label: &str, value: &str) -> String {
        let message = format!("{label}\0{value}");
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.mac, message.as_bytes()))
    }

    fn verify(&self, label: &str, value: &str, presented: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(presented) else {
            return false;
        };
        let message = format!("{label}\0{value}");
        hmac::verify(&self.mac, message.as_bytes(), &tag).is_ok()
    }

    /// A new session cookie value, issued at `now_s`.
    pub(super) fn new_session(&self, now_s: u64) -> String {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; NONCE_BYTES]>());
        let body = format!("v1.{now_s}.{nonce}");
        let tag = self.tag("field-app session", &body);
        format!("{body}.{tag}")
    }

    /// The session's nonce, if `cookie` is a session this key issued and
    /// it has not expired at `now_s`.
    pub(super) fn session(&self, cookie: &str, now_s: u64) -> Option<Session> {
        let (body, tag) = cookie.rsplit_once('.')?;
        if !self.verify("field-app session", body, tag) {
            return None;
        }
        let mut parts = body.splitn(3, '.');
        let (Some("v1"), Some(issued), Some(nonce)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let issued: u64 = issued.parse().ok()?;
        (now_s < issued.saturating_add(SESSION_MAX_AGE_S)).then(|| Session {
            form_token: self.tag("field-app form", nonce),
        })
    }

    /// Whether `presented` is the form token of `session`.
    pub(super) fn form_token_matches(&self, session: &Session, presented: &str) -> bool {
        // The expected token is a MAC; compare MACs of both in constant time.
        self.verify(
            "field-app form check",
            &session.form_token,
            &self.tag("field-app form check", presented),
        )
    }
}

/// A request's valid session: what its forms must carry.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) form_token: String,
}

/// Write `field-app.url` in `dir` (mode 0600), replacing an older one, so
/// a launcher can open the app.
pub fn write_url_file(dir: &Path, url: &str) -> Result<(), FieldAppError> {
    let path = dir.join(URL_FILE);
    write_private(&path, format!("{url}\n").as_bytes(), true).map_err(|source| FieldAppError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// Write `bytes` to `path`, readable only by this user. With `replace`,
/// through a temporary file renamed over the old one; otherwise only if
/// `path` does not exist.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let target = if replace {
        path.with_extension("tmp")
    } else {
        path.to_path_buf()
    };
    if replace {
        match std::fs::remove_file(&target) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&target)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if replace {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_opens_and_only_its_sessions_and_tokens_pass() {
        let key = FieldKey::generate();
        let other = FieldKey::generate();
        assert!(key.matches(&key.encoded()));
        for bad in ["", "x", &other.encoded(), &key.encoded()[1..]] {
            assert!(!key.matches(bad), "{bad}");
        }
        let cookie = key.new_session(1_000);
        let session = key.session(&cookie, 1_001).expect("valid session");
        assert!(key.form_token_matches(&session, &session.form_token));
        assert!(!key.form_token_matches(&session, ""));
        assert!(other.session(&cookie, 1_001).is_none());
        assert!(key.session(&cookie, 1_000 + SESSION_MAX_AGE_S).is_none());
        assert!(key
            .session(&cookie.replace("v1.1000", "v1.9000"), 1_001)
            .is_none());
        let again = key.session(&key.new_session(1_000), 1_001).expect("valid");
        assert!(!key.form_token_matches(&again, &session.form_token));
    }

    #[test]
    fn the_key_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = FieldKey::load_or_create(dir.path()).expect("made");
        let second = FieldKey::load_or_create(dir.path()).expect("read");
        assert_eq!(first.encoded(), second.encoded());
        write_url_file(dir.path(), "http://127.0.0.1:1/open?key=a").expect("url");
        write_url_file(dir.path(), "http://127.0.0.1:2/open?key=a").expect("url again");
        #[cfg(unix)]
        for name in [KEY_FILE, URL_FILE] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(name))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let url = std::fs::read_to_string(dir.path().join(URL_FILE)).expect("url file");
        assert_eq!(url.trim(), "http://127.0.0.1:2/open?key=a");
    }
}
