//! Access tokens and the caller they stand for.
//!
//! Tokens are JWTs signed with HMAC-SHA256 (`jsonwebtoken`). Why a JWT and
//! not an opaque random token: the gateway that signs is the one that checks,
//! so no token table is needed, and integrators can read `exp` and `scope`
//! with any JWT library. Why HS256: one key held by the central node signs
//! and verifies; several centrals behind a load balancer share it through
//! their config. Tokens are short-lived (`token_ttl_s`), and every request
//! also reloads the user from the store, so a revoked user, a changed role
//! or a removed scope takes effect at the next request, not at expiry.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fieldsync_node::access::{self, Purpose, ReadGrants, Subject, Viewer, WorkOrderFacts};
use fieldsync_node::clock;
use fieldsync_node::store::{DocIndex, User};
use fieldsync_schemas::{Actor, Role, Scope};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// Issuer and audience written into and required of every token.
const TOKEN_ISSUER: &str = "fieldsync";
const TOKEN_AUDIENCE: &str = "fieldsync-gateway";

/// Shortest signing key accepted: HS256 wants at least the hash size.
pub const TOKEN_KEY_BYTES_MIN: usize = 32;

/// Longest bearer token looked at; ours are ~400 bytes.
const TOKEN_BYTES_MAX: usize = 4096;

/// The key that signs and verifies access tokens (and, derived from it,
/// the key that seals the work-order list's cursors and the one that signs
/// the web UI's form tokens).
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    cursor_secret: [u8; 32],
    form_key: ring::hmac::Key,
}

/// The cursor key for token key `bytes`.
fn cursor_secret(bytes: &[u8]) -> [u8; 32] {
    fieldsync_node::secret::derived_key(b"fieldsync list cursor key v1\0", bytes)
}

/// The UI form-token key for token key `bytes` (`ui/csrf.rs`).
fn form_key(bytes: &[u8]) -> ring::hmac::Key {
    ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &fieldsync_node::secret::derived_key(b"fieldsync ui form key v1\0", bytes),
    )
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a token signing key must be at least {TOKEN_KEY_BYTES_MIN} bytes, got {0}")]
pub struct TokenKeyError(pub usize);

impl TokenKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<TokenKey, TokenKeyError> {
        if bytes.len() < TOKEN_KEY_BYTES_MIN {
            return Err(TokenKeyError(bytes.len()));
        }
        Ok(TokenKey {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            cursor_secret: cursor_secret(bytes),
            form_key: form_key(bytes),
        })
    }

    /// A fresh random key: tokens die with the process. The binary should
    /// keep a key in the node's data directory so restarts keep sessions.
    pub fn generate() -> TokenKey {
        let bytes: [u8; TOKEN_KEY_BYTES_MIN] = rand::random();
        // Unwrap-free: the array has exactly the minimum length.
        TokenKey {
            encoding: EncodingKey::from_secret(&bytes),
            decoding: DecodingKey::from_secret(&bytes),
            cursor_secret: cursor_secret(&bytes),
            form_key: form_key(&bytes),
        }
    }

    /// The secret list cursors are sealed with (`cursor.rs`).
    pub(crate) fn cursor_secret(&self) -> &[u8; 32] {
        &self.cursor_secret
    }

    /// The key the web UI's form tokens are signed with (`ui/csrf.rs`).
    pub(crate) fn form_key(&self) -> &ring::hmac::Key {
        &self.form_key
    }

    /// Sign a token for `user` with `scopes`, valid `ttl_s` from `now_s`.
    pub fn issue(&self, user: &User, scopes: &[Scope], now_s: u64, ttl_s: u64) -> String {
        let claims = Claims {
            iss: TOKEN_ISSUER.into(),
            aud: TOKEN_AUDIENCE.into(),
            sub: user.id.clone(),
            role: user.role,
            scope: scopes
                .iter()
                .map(|scope| scope.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            iat: now_s,
            exp: now_s + ttl_s,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        // HS256 over serializable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Check signature, issuer, audience and expiry (no leeway).
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(ApiError::unauthorized("token too long"));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("token expired")
                }
                _ => ApiError::unauthorized("invalid token"),
            })
    }
}

/// What a token says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub role: Role,
    /// Space-separated scopes, as in OAuth2.
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

/// The authenticated user behind a request, with the node's access
/// settings (grace period, configured read grants) the visibility rule
/// judges it by, copied from the gateway's state when the caller is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
    /// Scopes granted in the token and still held by the user.
    pub scopes: Vec<Scope>,
    /// The node's reassignment grace period (`GatewayConfig::grace_ms`).
    pub(crate) grace_ms: u64,
    /// The node's configured read grants (`GatewayConfig::read_grants`).
    pub(crate) read_grants: Arc<BTreeMap<String, ReadGrants>>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::new(self.user_id.clone(), self.role)
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Operators may do everything; integrations need `scope`; technicians
    /// reach only what their own endpoints allow (checked per document).
    pub fn office_or_scope(&self, scope: Scope) -> Result<(), ApiError> {
        match self.role {
            Role::Operator => Ok(()),
            Role::Integration if self.has_scope(scope) => Ok(()),
            Role::Integration => Err(ApiError::forbidden(format!(
                "this client lacks the `{}` scope",
                scope.as_str()
            ))),
            Role::Technician => Err(ApiError::forbidden("technicians may not use this endpoint")),
        }
    }

    /// Like [`Caller::office_or_scope`], but technicians pass: they are
    /// limited per document (only their assigned work orders).
    pub fn field_or_scope(&self, scope: Scope) -> Result<(), ApiError> {
        match self.role {
            Role::Technician => Ok(()),
            _ => self.office_or_scope(scope),
        }
    }

    pub fn operator_only(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Operator => Ok(()),
            _ => Err(ApiError::forbidden("only operators may use this endpoint")),
        }
    }

    /// The caller as the visibility rule knows it.
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer::User {
            id: &self.user_id,
            role: self.role,
            scopes: &self.scopes,
        }
    }

    /// Whether the caller may read this work order now
    /// (`access::visible`, the one rule).
    pub fn sees(&self, index: &DocIndex) -> bool {
        self.sees_facts(WorkOrderFacts {
            assignee: index.assignee.as_deref(),
            previous_assignee: index.previous_assignee.as_deref(),
            reassigned_at_ms: index.reassigned_at_ms,
            deleted: index.deleted,
            own_revocation_at_ms: None,
        })
    }

    /// [`Caller::sees`] for a loaded document: its own assignee and
    /// tombstone, the reassignment facts from its index.
    pub fn sees_document(&self, index: &DocIndex, assignee: Option<&str>, deleted: bool) -> bool {
        self.sees_facts(WorkOrderFacts {
            assignee,
            previous_assignee: index.previous_assignee.as_deref(),
            reassigned_at_ms: index.reassigned_at_ms,
            deleted,
            own_revocation_at_ms: None,
        })
    }

    fn sees_facts(&self, facts: WorkOrderFacts<'_>) -> bool {
        access::visible(
            &self.viewer(),
            &Subject::WorkOrder(facts),
            Purpose::Read,
            clock::now_ms(),
            self.grace_ms,
        )
    }

    /// The read grants `[records.read]` configures for `collection`, if
    /// any (`Store::read_grants` prefers grants set over the API).
    pub fn configured_grants(&self, collection: &str) -> Option<&ReadGrants> {
        self.read_grants.get(collection)
    }

    /// Whether the caller may read data collection `collection` with these
    /// grants (`access::visible`).
    pub fn reads(&self, collection: &str, grants: &ReadGrants) -> bool {
        access::visible(
            &self.viewer(),
            &Subject::Record { collection, grants },
            Purpose::Read,
            clock::now_ms(),
            self.grace_ms,
        )
    }
}

/// Turn verified claims into a caller, checking the user as stored now.
pub fn caller_from_claims(state: &AppState, claims: Claims) -> Result<Caller, ApiError> {
    let user = state
        .store()
        .user(&claims.sub)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::unauthorized("unknown user"))?;
    if user.revoked {
        return Err(ApiError::unauthorized("user revoked"));
    }
    if user.role != claims.role {
        return Err(ApiError::unauthorized("role changed; request a new token"));
    }
    let scopes = claims
        .scope
        .split_whitespace()
        .filter_map(|name| name.parse::<Scope>().ok())
        .filter(|scope| user.scopes.contains(scope))
        .collect();
    Ok(Caller {
        user_id: user.id,
        role: user.role,
        scopes,
        grace_ms: state.config().grace_ms,
        read_grants: state.config().read_grants.clone(),
    })
}

/// Verify a token string and load its caller.
pub fn authenticate_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let claims = state.tokens().verify(token)?;
    caller_from_claims(state, claims)
}

/// The outcome of looking at a request's credentials, left in its
/// extensions for the [`Caller`] extractor. Public routes ignore it.
#[derive(Clone)]
pub(crate) enum Authentication {
    Anonymous,
    Caller(Caller),
    Failed(ApiError),
}

/// The client's address (the TCP peer's, or the one a trusted proxy
/// forwarded: `edge.rs`), or `unknown` when served without connect info
/// (`oneshot` tests). Rate limits and failed-token budgets key on it.
pub(crate) fn peer_key(request: &Request) -> String {
    peer_ip(request.extensions())
        .map(|address| address.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The client's address (IPv4-mapped IPv6 addresses as IPv4), when served
/// with connect info: the TCP peer, or behind a trusted proxy the address
/// it forwarded (`edge::Client`).
pub(crate) fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    crate::edge::client(extensions).ip
}

/// Who asks, on a route anyone may call that answers some callers more
/// (`/healthz`, `/metrics`): the caller when a valid token came, and the
/// peer address. Never refuses; a bad token counts as none.
pub(crate) struct Asker {
    pub(crate) caller: Option<Caller>,
    pub(crate) peer: Option<IpAddr>,
}

impl Asker {
    /// Operators and integration clients: the office, who may see the
    /// store's global figures (last seq, counts). Technicians and
    /// anonymous callers may not.
    pub(crate) fn is_office(&self) -> bool {
        self.caller
            .as_ref()
            .is_some_and(|caller| matches!(caller.role, Role::Operator | Role::Integration))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Asker {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let caller = match parts.extensions.get::<Authentication>() {
            Some(Authentication::Caller(caller)) => Some(caller.clone()),
            _ => None,
        };
        Ok(Asker {
            caller,
            peer: peer_ip(&parts.extensions),
        })
    }
}

/// Middleware: read the bearer token (if any), then apply the per-client
/// rate limit keyed by the token's user, else by the peer address.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let outcome = match request.headers().get(header::AUTHORIZATION) {
        None => Authentication::Anonymous,
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|text| text.strip_prefix("Bearer "))
        {
            None => Authentication::Failed(ApiError::unauthorized(
                "expected `Authorization: Bearer <token>`",
            )),
            Some(token) => match authenticate_token(&state, token.trim()) {
                Ok(caller) => Authentication::Caller(caller),
                Err(error) => Authentication::Failed(error),
            },
        },
    };
    let key = match &outcome {
        Authentication::Caller(caller) => format!("user:{}", caller.user_id),
        _ => format!("addr:{}", peer_key(&request)),
    };
    if let Err(error) = state.limits().check_request(&key) {
        return error.into_response();
    }
    request.extensions_mut().insert(outcome);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::Caller(caller)) => Ok(caller.clone()),
            Some(Authentication::Failed(error)) => Err(error.clone()),
            Some(Authentication::Anonymous) | None => Err(ApiError::new(
                ErrorKind::Unauthorized,
                "this endpoint needs a bearer token from /oauth/token",
            )),
        }
    }
}
