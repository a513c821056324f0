//! Node identity: an ECDSA P-256 key pair and a self-signed certificate,
//! kept as PEM files in the data directory. The node id is the lowercase hex
//! SHA-256 of the certificate's DER bytes.
//!
//! Why self-signed and pinned: nodes authenticate each other by mutual TLS
//! over QUIC, and each side pins the other's node id (certificate
//! fingerprint). There is no certificate authority to run, renew or lose;
//! a new laptop is trusted because the central maps its node id to a user
//! at enrollment.
//!
//! Why the key file is written with mode 0600 and never overwritten: the
//! private key is the node's identity. Replacing it silently would make the
//! node a stranger to every peer that pinned it.

use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The private key file in the data directory.
pub const KEY_FILE: &str = "node.key";
/// The certificate file in the data directory.
pub const CERT_FILE: &str = "node.crt";
/// Largest identity file read: a P-256 key or certificate PEM is well under
/// 2 KiB; anything much bigger is not ours.
pub const IDENTITY_FILE_BYTES_MAX: u64 = 64 * 1024;
/// The DNS name in every node certificate. Peers are told apart by the
/// pinned node id, not by name, but TLS needs a name to present.
pub const CERT_SERVER_NAME: &str = "fieldsync-node";
/// Length of a node id: hex of a SHA-256 digest.
pub const NODE_ID_CHARS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot generate a node key pair and certificate: {0}")]
    Generate(String),
    #[error("{path} already exists; refusing to replace a node's identity")]
    AlreadyExists { path: PathBuf },
    #[error("no node identity at {path} (run `fieldsync init` first)")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(
        "{path} is larger than {IDENTITY_FILE_BYTES_MAX} bytes; not a fieldsync identity file"
    )]
    TooLarge { path: PathBuf },
    #[error("{path} is not a valid PEM {what}: {reason}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{key} does not belong to {cert}: the certificate holds another public key")]
    Mismatch { key: PathBuf, cert: PathBuf },
}

/// A node's key pair and certificate.
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    node_id: String,
}

impl std::fmt::Debug for Identity {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The node id of a certificate: lowercase hex SHA-256 of its DER bytes.
pub fn node_id_of(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// Whether `text` has the shape of a node id (64 lowercase hex digits).
pub fn is_node_id(text: &str) -> bool {
    text.len() == NODE_ID_CHARS && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Identity {
    /// A fresh P-256 key pair and a self-signed certificate whose subject
    /// common name is `node_name` (shown to humans; not used for trust).
    pub fn generate(node_name: &str) -> Result<Identity, IdentityError> {
        let generate_error = |e: rcgen::Error| IdentityError::Generate(e.to_string());
        let key_pair = rcgen::KeyPair::generate().map_err(generate_error)?;
        let mut params = rcgen::CertificateParams::new(vec![CERT_SERVER_NAME.to_string()])
            .map_err(generate_error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node_name);
        let cert = params.self_signed(&key_pair).map_err(generate_error)?;
        let cert_der = cert.der().clone();
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
            node_id: node_id_of(&cert_der),
            cert_der,
        })
    }

    /// Write `node.key` (mode 0600) and `node.crt` into `dir`. Refuses if
    /// either exists: an identity is never replaced by accident.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        for path in [&key_path, &cert_path] {
            if path.exists() {
                return Err(IdentityError::AlreadyExists { path: path.clone() });
            }
        }
        write_new(&key_path, self.key_pem.as_bytes(), 0o600)?;
        write_new(&cert_path, self.cert_pem.as_bytes(), 0o644)?;
        Ok(())
    }

    /// Read the identity back from `dir` and check that key and certificate
    /// belong together.
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let key_pem = read_limited(&key_path)?;
        let cert_pem = read_limited(&cert_path)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            IdentityError::Invalid {
                path: cert_path.clone(),
                what: "certificate",
                reason: e.to_string(),
            }
        })?;
        let key_pair = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| IdentityError::Invalid {
            path: key_path.clone(),
            what: "private key",
            reason: e.to_string(),
        })?;
        // The certificate's SubjectPublicKeyInfo holds the raw public key
        // bytes (65 for uncompressed P-256); a key from another node does
        // not appear in it. This catches a mixed-up pair without parsing X.509.
        let public = key_pair.public_key_raw();
        if public.is_empty() || !cert_der.windows(public.len()).any(|w| w == public) {
            return Err(IdentityError::Mismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        Ok(Identity {
            node_id: node_id_of(&cert_der),
            cert_pem,
            key_pem,
            cert_der,
        })
    }

    /// This node's id: hex SHA-256 of the certificate.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The certificate, DER-encoded (for the TLS configuration).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The private key, DER-encoded (for the TLS configuration).
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, IdentityError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| IdentityError::Invalid {
            path: PathBuf::from(KEY_FILE),
            what: "private key",
            reason: e.to_string(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}

fn read_limited(path: &Path) -> Result<String, IdentityError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(IdentityError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    if metadata.len() > IDENTITY_FILE_BYTES_MAX {
        return Err(IdentityError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| IdentityError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Create `path` (failing if it exists), write `bytes`, fsync.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let write_error = |e: std::io::Error| IdentityError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            IdentityError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            write_error(e)
        }
    })?;
    file.write_all(bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_identity_loads_back_with_the_same_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let made = Identity::generate("central-1").unwrap();
        assert!(is_node_id(made.node_id()), "{}", made.node_id());
        assert_eq!(made.node_id(), node_id_of(made.cert_der()));
        made.save(dir.path()).unwrap();
        let loaded = Identity::load(dir.path()).unwrap();
        assert_eq!(loaded.node_id(), made.node_id());
        assert_eq!(loaded.cert_der(), made.cert_der());
        assert!(matches!(loaded.key_der().unwrap(), PrivateKeyDer::Pkcs8(_)));
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Identity::generate("n").unwrap().save(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn two_identities_differ_and_neither_overwrites_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::generate("a").unwrap();
        let second = Identity::generate("a").unwrap();
        assert_ne!(first.node_id(), second.node_id());
        first.save(dir.path()).unwrap();
        assert!(matches!(
            second.save(dir.path()),
            Err(IdentityError::AlreadyExists { .. })
        ));
        assert_eq!(
            Identity::load(dir.path()).unwrap().node_id(),
            first.node_id()
        );
    }

    #[test]
    fn a_key_from_another_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        Identity::generate("a").unwrap().save(dir.path()).unwrap();
        Identity::generate("b").unwrap().save(other.path()).unwrap();
        std::fs::copy(other.path().join(KEY_FILE), dir.path().join(KEY_FILE)).unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Mismatch { .. })
        ));
    }

    #[test]
    fn missing_damaged_and_oversized_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Missing { .. })
        ));
        Identity::generate("a").unwrap().save(dir.path()).unwrap();
        std::fs::write(dir.path().join(CERT_FILE), "not pem").unwrap();
        let error = Identity::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                error,
                IdentityError::Invalid {
                    what: "certificate",
                    ..
                }
            ),
            "{error}"
        );
        let big = vec![b'A'; IDENTITY_FILE_BYTES_MAX as usize + 1];
        std::fs::write(dir.path().join(KEY_FILE), big).unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::TooLarge { .. })
        ));
    }
}
