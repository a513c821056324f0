//! Enrollment: how a new laptop becomes a node the central knows.
//!
//! The exchange (ALPN `fieldsync-enroll/1`, one bidirectional stream, the
//! sync framing with a 16 KiB limit, postcard messages):
//!
//! 1. The laptop connects *without* a client certificate (it has none the
//!    central knows) and checks that the certificate the central shows is
//!    the central's: its node id must start with the id the operator read
//!    out with the code (`fieldsync user add` prints it as `central id:`;
//!    at least 16 hex digits). Otherwise it stops before sending the code,
//!    so whoever intercepts the first connection cannot relay the code.
//! 2. It sends one [`EnrollRequest`]: the user id (optional), the one-time
//!    code an operator read out from `fieldsync user add`, its own
//!    certificate (DER) and a name for humans.
//! 3. The central takes enrollments one at a time. It finds the user (the
//!    named one, or else the one whose pending code matches), checks the
//!    code against the stored Argon2id hash, and in one durable write
//!    clears the hash (the code is spent) and adds SHA-256 of the presented
//!    certificate to the user's `node_ids`. From then on that certificate
//!    passes the handshake and syncs as that user.
//! 4. The central answers [`EnrollReply`] and closes. Nothing else is
//!    possible on an enrollment connection, and an anonymous client can
//!    never open a sync session.
//! 5. The laptop checks that the central's reply names the certificate it
//!    saw, and pins that node id as its central peer.
//!
//! Why this is enough: the code authenticates the request; it is one-time,
//! random (about 59 bits), travels only inside TLS, and each guess costs an
//! Argon2id check, serialised. Enrolling a certificate whose key you do not
//! hold gains nothing, since every sync connection proves the key in its
//! handshake. The central's certificate is checked against the id the
//! operator gave with the code before the code leaves the laptop, checked
//! again against what the central itself reports, and pinned thereafter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_schemas::Role;
use serde::{Deserialize, Serialize};

use super::framing::{read_frame, write_frame};
use super::tls::{self, LinkTiming, TlsError};
use crate::identity::node_id_of;
use crate::secret;
use crate::store::{Store, User};

/// Largest enrollment message, either way.
pub const ENROLL_FRAME_BYTES_MAX: usize = 16 * 1024;
/// The enrollment exchange's own version.
pub const ENROLL_VERSION: u16 = 1;
/// The whole exchange must finish within this.
pub const ENROLL_TIMEOUT_MS: u64 = 20_000;
/// Users with a pending code tried at most, when the request names none.
pub const ENROLL_CANDIDATES_MAX: usize = 64;
/// Longest node name kept in logs.
const NODE_NAME_CHARS_MAX: usize = 64;
/// Hex digits of the central's node id the laptop must be given, at least
/// (64 bits: no one makes a key pair whose fingerprint matches them).
pub const CENTRAL_ID_HEX_MIN: usize = 16;

/// What the laptop sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub version: u16,
    pub user: Option<String>,
    pub code: String,
    pub cert_der: Vec<u8>,
    pub node_name: String,
}

/// What the central answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollReply {
    Enrolled {
        central_node_id: String,
        user: String,
        role: Role,
    },
    Refused {
        reason: String,
    },
}

/// A successful enrollment, as the laptop sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolled {
    pub central_node_id: String,
    pub user: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot reach the central at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("the central refused the enrollment: {0}")]
    Refused(String),
    #[error("enrollment protocol error: {0}")]
    Protocol(String),
    #[error("the central answered as node {claimed}, but its certificate is node {seen}")]
    Mismatch { claimed: String, seen: String },
    #[error("enrollment took longer than {ENROLL_TIMEOUT_MS} ms")]
    Timeout,
    #[error("the central id must be at least {CENTRAL_ID_HEX_MIN} hex digits of the central's node id, got `{0}`")]
    CentralId(String),
    #[error(
        "the node at this address is {seen}, not the central {expected}…: the code was not sent"
    )]
    WrongCentral { expected: String, seen: String },
    #[error("store error during enrollment: {0}")]
    Store(String),
}

/// The central's node id (or a prefix of it) as given to `enroll`,
/// checked: hex, lowercase, `CENTRAL_ID_HEX_MIN` to 64 digits.
pub fn central_id_prefix(text: &str) -> Result<String, EnrollError> {
    let prefix = text.trim().to_ascii_lowercase();
    let valid = (CENTRAL_ID_HEX_MIN..=64).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(prefix)
    } else {
        Err(EnrollError::CentralId(text.chars().take(80).collect()))
    }
}

/// Enroll this node (its certificate `cert_der`) with the central at
/// `central`, whose node id starts with `central_id`, using a one-time
/// code.
pub async fn enroll(
    central: SocketAddr,
    central_id: &str,
    cert_der: &[u8],
    user: Option<&str>,
    code: &str,
    node_name: &str,
    timing: LinkTiming,
) -> Result<Enrolled, EnrollError> {
    let central_id = central_id_prefix(central_id)?;
    let exchange = enroll_inner(
        central,
        &central_id,
        cert_der,
        user,
        code,
        node_name,
        timing,
    );
    tokio::time::timeout(Duration::from_millis(ENROLL_TIMEOUT_MS), exchange)
        .await
        .map_err(|_| EnrollError::Timeout)?
}

async fn enroll_inner(
    central: SocketAddr,
    central_id: &str,
    cert_der: &[u8],
    user: Option<&str>,
    code: &str,
    node_name: &str,
    timing: LinkTiming,
) -> Result<Enrolled, EnrollError> {
    let connect_error = |reason: String| EnrollError::Connect {
        address: central.to_string(),
        reason,
    };
    let bind: SocketAddr = if central.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_error(e.to_string()))?;
    endpoint.set_default_client_config(tls::enroll_client_config(timing)?);
    let connection = endpoint
        .connect(central, tls::SERVER_NAME)
        .map_err(|e| connect_error(e.to_string()))?
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let seen = tls::peer_node_id(&connection)
        .ok_or_else(|| EnrollError::Protocol("the central showed no certificate".into()))?;
    if !seen.starts_with(central_id) {
        connection.close(0u32.into(), b"not the central");
        return Err(EnrollError::WrongCentral {
            expected: central_id.to_string(),
            seen,
        });
    }
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let request = EnrollRequest {
        version: ENROLL_VERSION,
        user: user.map(str::to_string),
        code: code.to_string(),
        cert_der: cert_der.to_vec(),
        node_name: node_name.chars().take(NODE_NAME_CHARS_MAX).collect(),
    };
    let bytes = postcard::to_allocvec(&request)
        .map_err(|e| EnrollError::Protocol(format!("cannot encode the request: {e}")))?;
    write_frame(&mut send, &bytes)
        .await
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    let _ = send.finish();
    let reply = read_frame(&mut recv, ENROLL_FRAME_BYTES_MAX)
        .await
        .map_err(|e| EnrollError::Protocol(e.to_string()))?
        .ok_or_else(|| EnrollError::Protocol("the central closed without answering".into()))?;
    let reply: EnrollReply = postcard::from_bytes(&reply)
        .map_err(|e| EnrollError::Protocol(format!("undecodable reply: {e}")))?;
    connection.close(0u32.into(), b"enrollment done");
    endpoint.wait_idle().await;
    match reply {
        EnrollReply::Refused { reason } => Err(EnrollError::Refused(reason)),
        EnrollReply::Enrolled {
            central_node_id,
            user,
            role,
        } => {
            if central_node_id != seen {
                return Err(EnrollError::Mismatch {
                    claimed: central_node_id,
                    seen,
                });
            }
            Ok(Enrolled {
                central_node_id,
                user,
                role,
            })
        }
    }
}

/// Serve one enrollment connection on the central: read one request,
/// answer, close. `serial` makes enrollments run one at a time.
pub(crate) async fn serve(
    connection: quinn::Connection,
    store: Store,
    central_node_id: String,
    serial: Arc<tokio::sync::Mutex<()>>,
) -> Result<Option<String>, EnrollError> {
    let exchange = serve_inner(&connection, store, central_node_id, serial);
    let result = tokio::time::timeout(Duration::from_millis(ENROLL_TIMEOUT_MS), exchange)
        .await
        .map_err(|_| EnrollError::Timeout)
        .and_then(|result| result);
    // Give the reply a moment to reach the laptop, which closes first.
    let _ = tokio::time::timeout(Duration::from_millis(2_000), connection.closed()).await;
    connection.close(0u32.into(), b"enrollment done");
    result
}

async fn serve_inner(
    connection: &quinn::Connection,
    store: Store,
    central_node_id: String,
    serial: Arc<tokio::sync::Mutex<()>>,
) -> Result<Option<String>, EnrollError> {
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    let bytes = read_frame(&mut recv, ENROLL_FRAME_BYTES_MAX)
        .await
        .map_err(|e| EnrollError::Protocol(e.to_string()))?
        .ok_or_else(|| EnrollError::Protocol("no request".into()))?;
    let request: Result<EnrollRequest, _> = postcard::from_bytes(&bytes);
    let outcome = match request {
        Err(e) => Err(format!("undecodable request: {e}")),
        Ok(request) if request.version != ENROLL_VERSION => Err(format!(
            "enrollment version {} is not spoken here (this central speaks {ENROLL_VERSION})",
            request.version
        )),
        Ok(request) => {
            let _one_at_a_time = serial.lock().await;
            let node_id = node_id_of(&request.cert_der);
            let name: String = request
                .node_name
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            let redeemed = tokio::task::spawn_blocking(move || redeem(&store, &request, &node_id))
                .await
                .map_err(|e| EnrollError::Store(e.to_string()))??;
            match redeemed {
                Some(user) => {
                    tracing::info!(user = %user.id, node = %name, "enrolled a node");
                    Ok(user)
                }
                None => Err("unknown user or wrong code".to_string()),
            }
        }
    };
    let (reply, enrolled) = match outcome {
        Ok(user) => (
            EnrollReply::Enrolled {
                central_node_id,
                user: user.id.clone(),
                role: user.role,
            },
            Some(user.id),
        ),
        Err(reason) => {
            tracing::warn!(remote = %connection.remote_address(), %reason, "enrollment refused");
            (EnrollReply::Refused { reason }, None)
        }
    };
    let bytes = postcard::to_allocvec(&reply)
        .map_err(|e| EnrollError::Protocol(format!("cannot encode the reply: {e}")))?;
    write_frame(&mut send, &bytes)
        .await
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    let _ = send.finish();
    Ok(enrolled)
}

/// Check the code and, if it matches, spend it and record the node. Runs
/// on a blocking thread: Argon2id takes tens of milliseconds.
fn redeem(
    store: &Store,
    request: &EnrollRequest,
    node_id: &str,
) -> Result<Option<User>, EnrollError> {
    let store_error = |e: &dyn std::fmt::Display| EnrollError::Store(e.to_string());
    let code = secret::normalize_one_time_code(&request.code);
    let candidates: Vec<User> = match &request.user {
        Some(id) => store
            .user(id)
            .map_err(|e| store_error(&e))?
            .into_iter()
            .collect(),
        None => store
            .users()
            .map_err(|e| store_error(&e))?
            .into_iter()
            .filter(|user| user.enroll_code_hash.is_some() && !user.revoked)
            .take(ENROLL_CANDIDATES_MAX)
            .collect(),
    };
    for mut user in candidates {
        if user.revoked || user.role == Role::Integration {
            continue;
        }
        let Some(hash) = user.enroll_code_hash.as_deref() else {
            continue;
        };
        match secret::verify(&code, hash) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(user = %user.id, %error, "damaged enrollment code hash");
                continue;
            }
        }
        user.enroll_code_hash = None;
        if !user.node_ids.iter().any(|id| id == node_id) {
            user.node_ids.push(node_id.to_string());
        }
        store.put_user(&user).map_err(|e| store_error(&e))?;
        return Ok(Some(user));
    }
    Ok(None)
}
