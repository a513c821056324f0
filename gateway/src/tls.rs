//! HTTPS: the gateway's certificate and key, read from PEM files into a
//! rustls server configuration.
//!
//! Why the `ring` provider is passed explicitly: the process default is
//! whatever some crate installed first (or nothing, and rustls would
//! panic); the gateway's TLS must not depend on that. The node's QUIC
//! endpoint does the same.
//!
//! Why files are read here, once, when the state is built: a missing,
//! unreadable or non-PEM file must stop the start with a message naming
//! the file and the key, not fail the first handshake. A renewed
//! certificate takes a restart.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsFiles;

/// Largest certificate or key file read. A chain of a few certificates is
/// a few KiB.
const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("cannot read `{key}` {path}: {reason}")]
    Read {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("`{key}` {path} is not PEM: {reason}")]
    NotPem {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "`tls_cert` {path} holds no certificate (expected PEM blocks \
         `-----BEGIN CERTIFICATE-----`)"
    )]
    NoCertificate { path: String },
    #[error(
        "`tls_key` {path} holds no private key (expected a PEM block \
         `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
    )]
    NoKey { path: String },
    #[error("the certificate {cert} and key {key} cannot serve TLS: {reason}")]
    Unusable {
        cert: String,
        key: String,
        reason: String,
    },
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let error = |reason: String| TlsError::Read {
        key,
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(e.to_string()))?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(error(format!(
            "larger than {PEM_FILE_BYTES_MAX} bytes; not a PEM certificate or key"
        )));
    }
    Ok(bytes)
}

fn pem_error(key: &'static str, path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::NotPem {
        key,
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// The rustls server configuration for `files`, with the `ring` provider,
/// TLS 1.2 and 1.3, and ALPN for HTTP/2 and HTTP/1.1.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read("tls_cert", &files.cert)?;
    let key_pem = read("tls_key", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("tls_cert", &files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.display().to_string(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: files.key.display().to_string(),
            })
        }
        Err(e) => return Err(pem_error("tls_key", &files.key, e)),
    };
    let unusable = |reason: String| TlsError::Unusable {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| unusable(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &[u8], key: &[u8]) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn a_pair_loads_and_broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = made.cert.pem();
        let key = made.signing_key.serialize_pem();
        let good = files(dir.path(), cert.as_bytes(), key.as_bytes());
        let config = load(&good).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");

        let missing = TlsFiles {
            cert: dir.path().join("nowhere.pem"),
            key: good.key.clone(),
        };
        let error = load(&missing).unwrap_err();
        assert!(
            matches!(&error, TlsError::Read { key: "tls_cert", path, .. } if path.ends_with("nowhere.pem")),
            "{error}"
        );

        let other_key = other.signing_key.serialize_pem();
        let cases: [(&[u8], &[u8], &str); 5] = [
            (b"not a certificate", key.as_bytes(), "holds no certificate"),
            (cert.as_bytes(), b"", "holds no private key"),
            // The key file holds only the certificate.
            (cert.as_bytes(), cert.as_bytes(), "holds no private key"),
            (
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                key.as_bytes(),
                "is not PEM",
            ),
            // A key that is not the certificate's.
            (cert.as_bytes(), other_key.as_bytes(), "cannot serve TLS"),
        ];
        for (cert, key, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let error = load(&files(dir.path(), cert, key)).unwrap_err();
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
    }
}
