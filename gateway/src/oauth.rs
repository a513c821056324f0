//! `POST /oauth/token`: OAuth2 client credentials (RFC 6749 §4.4).
//!
//! The client authenticates with HTTP Basic or with `client_id` and
//! `client_secret` in the form body (§2.3.1), never both. The secret is
//! checked against the user's Argon2id hash (`fieldsync_node::secret`) on
//! the blocking pool, at most `secret_checks_concurrent_max` at a time,
//! and only when the source address has not spent its failure budget.
//! Only failures are limited (`limit.rs`): a client presenting the right
//! secret gets its token whatever others guessed for its id elsewhere.
//! Unknown and revoked clients cost the same Argon2 work as known ones, so
//! timing does not tell which ids exist. No refresh token is issued (§4.4.3).

use std::sync::OnceLock;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use fieldsync_node::secret;
use fieldsync_schemas::Scope;

use crate::api::model::{TokenRequest, TokenResponse};
use crate::auth::peer_key;
use crate::clock::now_s;
use crate::error::{ApiError, ApiForm, ErrorKind, Problem};
use crate::state::AppState;

/// Longest client id or secret looked at.
const CREDENTIAL_BYTES_MAX: usize = 256;

fn oauth(kind: ErrorKind, detail: &str) -> ApiError {
    ApiError::new(kind, detail)
}

/// A hash to check against when the client does not exist, so unknown ids
/// take as long as wrong secrets.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| secret::hash("fieldsync-no-such-client").unwrap_or_default())
}

/// Percent-decode a Basic credential part (RFC 6749 §2.3.1 form-encodes
/// them); `None` when the escapes are broken.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || oauth(ErrorKind::OAuthInvalidClient, "malformed Basic credentials");
    let encoded = value
        .to_str()
        .ok()
        .and_then(|text| text.strip_prefix("Basic "))
        .ok_or_else(bad)?;
    if encoded.len() > 4 * CREDENTIAL_BYTES_MAX {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    )))
}

/// A token issued to an authenticated client.
pub(crate) struct Issued {
    pub(crate) response: TokenResponse,
}

/// Check a client's credentials and issue a token: shared by the token
/// endpoint and the web UI's sign-in.
pub(crate) async fn issue(
    state: &AppState,
    peer: &str,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
) -> Result<Issued, ApiError> {
    if client_id.is_empty()
        || client_id.len() > CREDENTIAL_BYTES_MAX
        || client_secret.len() > CREDENTIAL_BYTES_MAX
    {
        return Err(oauth(
            ErrorKind::OAuthInvalidClient,
            "invalid client credentials",
        ));
    }
    let attempt = state.limits().begin_token_attempt(peer)?;
    let user = state.store().user(client_id).map_err(ApiError::internal)?;
    let stored = user
        .as_ref()
        .filter(|user| !user.revoked)
        .and_then(|user| user.secret_hash.clone());
    let known = stored.is_some();
    let hash = stored.unwrap_or_else(|| dummy_hash().to_string());
    let presented = client_secret.to_string();
    let permit = state
        .secret_checks()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let matched = tokio::task::spawn_blocking(move || secret::verify(&presented, &hash))
        .await
        .map_err(ApiError::internal)?;
    drop(permit);
    let matched = match matched {
        Ok(matched) => matched,
        Err(error) => {
            // A damaged record: log it, answer as for a wrong secret.
            tracing::error!(client_id, %error, "stored secret hash unusable");
            false
        }
    };
    let user = match user {
        Some(user) if known && matched => {
            state.limits().token_succeeded(attempt);
            user
        }
        _ => {
            state.limits().token_failed(attempt, client_id);
            metrics::counter!("fieldsync_token_failures_total").increment(1);
            return Err(oauth(
                ErrorKind::OAuthInvalidClient,
                "invalid client credentials",
            ));
        }
    };
    let granted = match scope.map(str::trim).filter(|scope| !scope.is_empty()) {
        None => user.scopes.clone(),
        Some(requested) => {
            let mut granted = Vec::new();
            for name in requested.split_whitespace() {
                let scope: Scope = name.parse().map_err(|_| {
                    oauth(
                        ErrorKind::OAuthInvalidScope,
                        &format!("unknown scope `{name}`"),
                    )
                })?;
                if !user.scopes.contains(&scope) {
                    return Err(oauth(
                        ErrorKind::OAuthInvalidScope,
                        &format!("this client does not hold `{name}`"),
                    ));
                }
                if !granted.contains(&scope) {
                    granted.push(scope);
                }
            }
            granted
        }
    };
    let ttl_s = state.config().token_ttl_s;
    let access_token = state.tokens().issue(&user, &granted, now_s(), ttl_s);
    metrics::counter!("fieldsync_tokens_issued_total").increment(1);
    Ok(Issued {
        response: TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl_s,
            scope: granted
                .iter()
                .map(|scope| scope.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        },
    })
}

/// Issue an access token for client credentials.
#[utoipa::path(
    post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A bearer token", body = TokenResponse),
        (status = 400, description = "Bad request, grant type or scope", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Client authentication failed", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not form-encoded", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let peer = peer_key(&request);
    let basic = basic_credentials(request.headers())?;
    let ApiForm(form): ApiForm<TokenRequest> =
        <ApiForm<TokenRequest> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await?;
    match form.grant_type.as_deref() {
        None => {
            return Err(oauth(
                ErrorKind::OAuthInvalidRequest,
                "`grant_type` is required",
            ));
        }
        Some("client_credentials") => {}
        Some(_) => {
            return Err(oauth(
                ErrorKind::OAuthUnsupportedGrantType,
                "only `client_credentials` is supported",
            ));
        }
    }
    let (client_id, client_secret) = match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(oauth(
                ErrorKind::OAuthInvalidRequest,
                "use either HTTP Basic or form credentials, not both",
            ));
        }
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            return Err(oauth(
                ErrorKind::OAuthInvalidClient,
                "client credentials are required",
            ));
        }
    };
    let issued = issue(
        &state,
        &peer,
        &client_id,
        &client_secret,
        form.scope.as_deref(),
    )
    .await?;
    let mut response = axum::Json(issued.response).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
