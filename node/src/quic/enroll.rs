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
/// The whole exchange must finish within this (the laptop's side).
pub const ENROLL_TIMEOUT_MS: u64 = 20_000;
/// A central gives an enrollment connection this long to send its request
/// and be answered: an idle one does not hold its slot for long.
pub const ENROLL_SERVE_TIMEOUT_MS: u64 = 10_000;
/// Users with a pending code tried at most, when the request names none.
pub const ENROLL_CANDIDATES_MAX: usize = 64;
/// Longest node name kept in logs.
const NODE_NAME_CHARS_MAX: usize = 64;
/// Enrollment code checks (Argon2id, ~19 MiB and a core each) running at
/// once, at most. Correctness does not need them serialised: spending a
/// code is a compare-and-set on the user record.
pub const ENROLL_CHECKS_CONCURRENT_MAX: usize = 2;
/// Wrong codes one source address may try per window, at most.
pub const ENROLL_FAILURES_PER_SOURCE_MAX: u32 = 5;
/// Wrong codes tried for one named user per window, at most.
pub const ENROLL_FAILURES_PER_USER_MAX: u32 = 10;
/// The window those counts are kept for.
pub const ENROLL_FAILURE_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Sources and users counted, at most (the oldest windows are dropped).
const ENROLL_LIMIT_KEYS_MAX: usize = 10_000;

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

/// What bounds enrollment attempts on a central: concurrent code checks,
/// and wrong codes per source address and per named user.
pub(crate) struct EnrollGuard {
    checks: tokio::sync::Semaphore,
    failures: std::sync::Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    by_source: std::collections::HashMap<std::net::IpAddr, Window>,
    by_user: std::collections::HashMap<String, Window>,
}

/// Failures counted since `start_ms`.
#[derive(Clone, Copy)]
struct Window {
    start_ms: u64,
    count: u32,
}

fn count_in<K: std::hash::Hash + Eq + Clone>(
    map: &std::collections::HashMap<K, Window>,
    key: &K,
    now_ms: u64,
) -> u32 {
    map.get(key)
        .filter(|w| now_ms.saturating_sub(w.start_ms) < ENROLL_FAILURE_WINDOW_MS)
        .map_or(0, |w| w.count)
}

fn add_failure<K: std::hash::Hash + Eq + Clone>(
    map: &mut std::collections::HashMap<K, Window>,
    key: K,
    now_ms: u64,
) {
    if map.len() >= ENROLL_LIMIT_KEYS_MAX {
        map.retain(|_, w| now_ms.saturating_sub(w.start_ms) < ENROLL_FAILURE_WINDOW_MS);
        if map.len() >= ENROLL_LIMIT_KEYS_MAX {
            map.clear();
        }
    }
    let window = map.entry(key).or_insert(Window {
        start_ms: now_ms,
        count: 0,
    });
    if now_ms.saturating_sub(window.start_ms) >= ENROLL_FAILURE_WINDOW_MS {
        *window = Window {
            start_ms: now_ms,
            count: 0,
        };
    }
    window.count = window.count.saturating_add(1);
}

impl Default for EnrollGuard {
    fn default() -> Self {
        EnrollGuard {
            checks: tokio::sync::Semaphore::new(ENROLL_CHECKS_CONCURRENT_MAX),
            failures: std::sync::Mutex::new(Failures::default()),
        }
    }
}

impl EnrollGuard {
    /// Why an attempt from `source` for `user` is refused before any code
    /// is checked, if it is.
    fn refusal(&self, source: std::net::IpAddr, user: Option<&str>, now_ms: u64) -> Option<String> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if count_in(&failures.by_source, &source, now_ms) >= ENROLL_FAILURES_PER_SOURCE_MAX {
            return Some("too many wrong codes from this address; try again later".into());
        }
        let user = user?.to_string();
        (count_in(&failures.by_user, &user, now_ms) >= ENROLL_FAILURES_PER_USER_MAX)
            .then(|| "too many wrong codes for this user; ask an operator for a new code".into())
    }

    fn failed(&self, source: std::net::IpAddr, user: Option<&str>, now_ms: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        add_failure(&mut failures.by_source, source, now_ms);
        if let Some(user) = user {
            add_failure(&mut failures.by_user, user.to_string(), now_ms);
        }
    }
}

/// Serve one enrollment connection on the central: read one request,
/// answer, close.
pub(crate) async fn serve(
    connection: quinn::Connection,
    store: Store,
    central_node_id: String,
    guard: Arc<EnrollGuard>,
) -> Result<Option<String>, EnrollError> {
    let exchange = serve_inner(&connection, store, central_node_id, guard);
    let result = tokio::time::timeout(Duration::from_millis(ENROLL_SERVE_TIMEOUT_MS), exchange)
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
    guard: Arc<EnrollGuard>,
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
            let source = connection.remote_address().ip();
            let named = request.user.clone();
            let now_ms = crate::clock::now_ms();
            match guard.refusal(source, named.as_deref(), now_ms) {
                Some(reason) => Err(reason),
                None => {
                    let redeemed = check(&guard, store, request).await?;
                    if redeemed.is_err() {
                        guard.failed(source, named.as_deref(), crate::clock::now_ms());
                    }
                    redeemed
                }
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

/// Check the request's code (at most `ENROLL_CHECKS_CONCURRENT_MAX` at
/// once, on a blocking thread: Argon2id takes tens of milliseconds).
async fn check(
    guard: &EnrollGuard,
    store: Store,
    request: EnrollRequest,
) -> Result<Result<User, String>, EnrollError> {
    let _check = guard
        .checks
        .acquire()
        .await
        .map_err(|e| EnrollError::Store(e.to_string()))?;
    let node_id = node_id_of(&request.cert_der);
    let name: String = request
        .node_name
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let redeemed = tokio::task::spawn_blocking(move || redeem(&store, &request, &node_id))
        .await
        .map_err(|e| EnrollError::Store(e.to_string()))??;
    Ok(match redeemed {
        Some(user) => {
            tracing::info!(user = %user.id, node = %name, "enrolled a node");
            Ok(user)
        }
        None => Err("unknown user, or a wrong or expired code".to_string()),
    })
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
    let now_ms = crate::clock::now_ms();
    for user in candidates {
        // An expired code costs no Argon2 check.
        let expired = user
            .enroll_code_expires_at_ms
            .is_some_and(|at| at <= now_ms);
        if user.revoked || user.role == Role::Integration || expired {
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
        if let Some(user) = spend(store, &user.id, hash, node_id)? {
            return Ok(Some(user));
        }
    }
    Ok(None)
}

/// Spend the code whose hash `checked` matched and record the node, as a
/// compare-and-set on the user as it is now: a user revoked (or whose code
/// was replaced or spent) while the code was being checked stays so.
pub(super) fn spend(
    store: &Store,
    id: &str,
    checked: &str,
    node_id: &str,
) -> Result<Option<User>, EnrollError> {
    let store_error = |e: &dyn std::fmt::Display| EnrollError::Store(e.to_string());
    let Some((mut user, version)) = store.user_versioned(id).map_err(|e| store_error(&e))? else {
        return Ok(None);
    };
    if user.revoked || user.enroll_code_hash.as_deref() != Some(checked) {
        return Ok(None);
    }
    if user
        .enroll_code_expires_at_ms
        .is_some_and(|at| at <= crate::clock::now_ms())
    {
        tracing::warn!(user = %user.id, "an expired enrollment code was used");
        return Ok(None);
    }
    user.enroll_code_hash = None;
    if !user.node_ids.iter().any(|known| known == node_id) {
        user.node_ids.push(node_id.to_string());
    }
    match store.put_user_if(&user, version) {
        Ok(()) => Ok(Some(user)),
        Err(crate::store::WriteError::VersionMismatch { .. }) => Ok(None),
        Err(error) => Err(store_error(&error)),
    }
}
