//! Mutual TLS by pinned node ids: the rustls verifiers and the quinn
//! configurations built from them.
//!
//! Why custom verifiers: node certificates are self-signed, so there is no
//! chain to check. Trust is the certificate's fingerprint (the node id):
//! a client pins the one node id it dials; a server accepts a client
//! certificate only if its node id is enrolled or configured, and refuses
//! any other *during the handshake*. Signatures (the proof that the peer
//! holds the certificate's key) are still checked, by rustls' own provider
//! functions.
//!
//! A client may also connect without a certificate: TLS allows it, and the
//! connection handler confines such a connection to the enrollment protocol
//! (`ALPN_ENROLL`), where a new laptop has no enrolled certificate yet.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};

use crate::identity::{node_id_of, CERT_SERVER_NAME};

/// ALPN of a sync session.
pub const ALPN_SYNC: &[u8] = b"fieldsync-sync/1";
/// ALPN of the one-shot enrollment exchange.
pub const ALPN_ENROLL: &[u8] = b"fieldsync-enroll/1";

/// Who may connect to this node with a certificate.
pub trait NodeAllowList: Send + Sync + fmt::Debug {
    fn allows(&self, node_id: &str) -> bool;
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

fn refuse(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(
        message,
    )))))
}

/// The client's view of the server: exactly one node id, or (enrollment
/// only) any certificate, whose id the caller reads after the handshake.
#[derive(Debug)]
struct PinnedServer {
    expected: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let node_id = node_id_of(end_entity);
        match &self.expected {
            Some(expected) if *expected != node_id => Err(refuse(format!(
                "the server is node {node_id}, not the pinned {expected}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server's view of clients: certificates of allowed node ids, or none.
#[derive(Debug)]
struct PinnedClients {
    allow: Arc<dyn NodeAllowList>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Enrollment connects without a certificate; see the module docs.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let node_id = node_id_of(end_entity);
        if self.allow.allows(&node_id) {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!(%node_id, "refused a certificate that is neither enrolled nor configured");
            Err(refuse(format!("node {node_id} is not enrolled here")))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Keep-alive and idle timeout, for field links.
#[derive(Clone, Copy, Debug)]
pub struct LinkTiming {
    pub keep_alive_ms: u64,
    pub idle_timeout_ms: u64,
}

fn transport(timing: LinkTiming) -> Result<Arc<quinn::TransportConfig>, TlsError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(Duration::from_millis(timing.idle_timeout_ms))
        .map_err(|e| TlsError::Config(format!("idle timeout: {e}")))?;
    transport
        .keep_alive_interval(Some(Duration::from_millis(timing.keep_alive_ms)))
        .max_idle_timeout(Some(idle))
        // One stream per connection: the sync session (or an enrollment).
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        // No path-MTU probing: each probe is a full-size padded packet
        // (about 6 KB per side per connection here), more than a typical
        // reconnect's payload on a metered field link, while bigger packets
        // save only ~2% on bulk transfers. QUIC's 1200-byte minimum works
        // on every path.
        .mtu_discovery_config(None);
    Ok(Arc::new(transport))
}

/// The endpoint's settings: connection ids and stateless resets that
/// survive a restart.
///
/// Why: after a node restarts, its peers' packets on the old connection
/// reach a process that does not know it. With quinn's defaults (random
/// keys per process) the new process neither recognises the connection id
/// as one of its own nor can prove the connection is gone, so it drops the
/// packets and each peer waits out its idle timeout before redialling (the
/// chaos test's laptops sat 3 s after a central restart). With both keys
/// derived from the node's private key, the new process answers with a
/// valid stateless reset and the peer redials after one round trip. The
/// keys stay secret with the private key (a forged reset could cut
/// connections), and each is domain-separated from every other use of it.
pub fn endpoint_config(credentials: &Credentials) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key(credentials)));
    let cid_key = cid_key(credentials);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// See [`endpoint_config`].
pub(crate) fn cid_key(credentials: &Credentials) -> u64 {
    let secret = derived_secret(credentials, b"fieldsync connection id key v1");
    u64::from_le_bytes(secret[..8].try_into().expect("8 of 32 bytes"))
}

/// See [`endpoint_config`].
pub(crate) fn reset_key(credentials: &Credentials) -> ring::hmac::Key {
    let secret = derived_secret(credentials, b"fieldsync stateless reset key v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret)
}

fn derived_secret(credentials: &Credentials, label: &[u8]) -> [u8; 32] {
    crate::secret::derived_key(label, credentials.key.secret_der())
}

/// This node's certificate and key, for both directions.
pub struct Credentials {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

/// The listening side: accepts allowed certificates (and anonymous
/// clients, for enrollment) on both ALPNs.
pub fn server_config(
    credentials: &Credentials,
    allow: Arc<dyn NodeAllowList>,
    timing: LinkTiming,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClients {
        allow,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![credentials.cert.clone()], credentials.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    crypto.alpn_protocols = vec![ALPN_SYNC.to_vec(), ALPN_ENROLL.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(timing)?);
    Ok(config)
}

/// The dialling side of a sync session: pins `peer_node_id`, presents our
/// certificate.
pub fn client_config(
    credentials: &Credentials,
    peer_node_id: &str,
    timing: LinkTiming,
) -> Result<quinn::ClientConfig, TlsError> {
    build_client(
        Some(credentials),
        Some(peer_node_id.to_string()),
        ALPN_SYNC,
        timing,
    )
}

/// The enrolling side: no client certificate yet, any server certificate
/// (its node id is what enrollment returns and pins).
pub fn enroll_client_config(timing: LinkTiming) -> Result<quinn::ClientConfig, TlsError> {
    build_client(None, None, ALPN_ENROLL, timing)
}

fn build_client(
    credentials: Option<&Credentials>,
    expected: Option<String>,
    alpn: &[u8],
    timing: LinkTiming,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer {
        expected,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut crypto = match credentials {
        Some(credentials) => builder
            .with_client_auth_cert(vec![credentials.cert.clone()], credentials.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(timing)?);
    Ok(config)
}

/// The server name every node certificate carries (trust is the node id).
pub const SERVER_NAME: &str = CERT_SERVER_NAME;

/// The peer's node id, from its certificate, once the handshake is done.
pub fn peer_node_id(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().map(|cert| node_id_of(cert))
}

/// The ALPN both sides agreed on.
pub fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    data.protocol
}
