//! `/api/v1/users`: operators manage users and integration clients over
//! the API (the CLI's `fieldsync user add|list|revoke` does the same on
//! the node). A new client's secret is shown once, in the creation
//! response; the store keeps only its Argon2id hash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fieldsync_node::secret;
use fieldsync_node::store::{User, WriteError};
use fieldsync_schemas::{Role, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::clock::now_rfc3339;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorKind, Problem};
use crate::state::AppState;

/// A user as the API shows it: never the secret or its hash.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserInfo {
    pub id: String,
    /// `operator`, `technician` or `integration`.
    pub role: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
    pub created_at: String,
    /// Sync nodes enrolled for this user.
    pub node_count: usize,
}

impl From<&User> for UserInfo {
    fn from(user: &User) -> Self {
        UserInfo {
            id: user.id.clone(),
            role: user.role.as_str().to_string(),
            scopes: user
                .scopes
                .iter()
                .map(|scope| scope.as_str().to_string())
                .collect(),
            revoked: user.revoked,
            created_at: user.created_at.clone(),
            node_count: user.node_ids.len(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Letters, digits, `-`, `_`, `.`, `@`; 1 to 64 bytes.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    pub id: String,
    /// `operator`, `technician` or `integration`.
    pub role: String,
    /// Integration scopes (integration clients only).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The created user and its client secret, shown this once.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserInfo,
    pub client_secret: String,
}

/// List users and clients (operators).
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    responses(
        (status = 200, description = "Every user", body = Vec<UserInfo>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<UserInfo>>, ApiError> {
    caller.operator_only()?;
    let users = state
        .blocking(|store| store.users().map_err(ApiError::internal))
        .await?;
    Ok(axum::Json(users.iter().map(UserInfo::from).collect()))
}

/// Add a user or integration client (operators).
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created; the secret is shown only here", body = CreatedUser),
        (status = 400, description = "Malformed body or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Id taken", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid role or scopes", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<NewUser>, ApiError>,
) -> Result<Response, ApiError> {
    caller.operator_only()?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let added = add_user(&state, body, Credentials::SECRET).await?;
    let created = CreatedUser {
        user: UserInfo::from(&added.user),
        client_secret: added.client_secret.unwrap_or_default(),
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// Which credentials [`add_user`] makes for a new user.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Credentials {
    /// A client secret (for `/oauth/token` and the web UI's sign-in).
    pub(crate) secret: bool,
    /// A one-time enrollment code valid this long, in ms (for
    /// `fieldsync enroll` on a technician's laptop).
    pub(crate) enroll_code_ttl_ms: Option<u64>,
}

impl Credentials {
    /// What `POST /api/v1/users` makes: a client secret only.
    pub(crate) const SECRET: Credentials = Credentials {
        secret: true,
        enroll_code_ttl_ms: None,
    };
}

/// A user just added, with the credentials made for it, in the clear this
/// once (the store keeps only their hashes).
pub(crate) struct AddedUser {
    pub(crate) user: User,
    pub(crate) client_secret: Option<String>,
    pub(crate) enroll_code: Option<String>,
}

/// Add a user (the caller's right to is checked by each caller): role and
/// scopes checked, the credentials `credentials` asks for made and
/// hashed, the id refused if taken. The one path of `POST /api/v1/users`
/// and the office console's users page.
pub(crate) async fn add_user(
    state: &AppState,
    body: NewUser,
    credentials: Credentials,
) -> Result<AddedUser, ApiError> {
    let invalid = |detail: String| ApiError::new(ErrorKind::InvalidValue, detail);
    let role: Role = body
        .role
        .parse()
        .map_err(|e: fieldsync_schemas::role::ParseNameError| invalid(e.to_string()))?;
    let mut scopes = Vec::new();
    for name in &body.scopes {
        let scope: Scope = name
            .parse()
            .map_err(|e: fieldsync_schemas::role::ParseNameError| invalid(e.to_string()))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if role != Role::Integration && !scopes.is_empty() {
        return Err(invalid("only integration clients hold scopes".into()));
    }
    let client_secret = credentials.secret.then(secret::generate_client_secret);
    let enroll_code = credentials
        .enroll_code_ttl_ms
        .map(|_| secret::generate_one_time_code());
    let user = User {
        id: body.id,
        role,
        scopes,
        secret_hash: hash_secret(state, client_secret.as_deref()).await?,
        enroll_code_hash: hash_secret(state, enroll_code.as_deref()).await?,
        enroll_code_expires_at_ms: credentials
            .enroll_code_ttl_ms
            .map(|ttl_ms| fieldsync_node::clock::now_ms() + ttl_ms),
        node_ids: Vec::new(),
        revoked: false,
        created_at: now_rfc3339(),
    };
    let _admin = state.user_admin().lock().await;
    let stored = user.clone();
    state
        .blocking(move |store| {
            if store
                .user(&stored.id)
                .map_err(ApiError::internal)?
                .is_some()
            {
                return Err(ApiError::new(
                    ErrorKind::AlreadyExists,
                    format!("user `{}` already exists", stored.id),
                ));
            }
            store.put_user(&stored).map_err(user_write_error)
        })
        .await?;
    Ok(AddedUser {
        user,
        client_secret,
        enroll_code,
    })
}

/// The Argon2id hash of `plain`, if any, off the async workers and within
/// the concurrent secret-check budget.
async fn hash_secret(state: &AppState, plain: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(plain) = plain else {
        return Ok(None);
    };
    let _permit = state
        .secret_checks()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let plain = plain.to_string();
    tokio::task::spawn_blocking(move || secret::hash(&plain))
        .await
        .map_err(ApiError::internal)?
        .map(Some)
        .map_err(ApiError::internal)
}

fn user_write_error(error: WriteError) -> ApiError {
    match error {
        WriteError::InvalidId(reason) => ApiError::new(ErrorKind::InvalidId, reason),
        other => ApiError::internal(other),
    }
}

/// Revoke a user: its tokens stop working at the next request (operators).
#[utoipa::path(
    post, path = "/api/v1/users/{id}/revoke", tag = "users",
    params(("id" = String, Path, description = "User id", pattern = "^[A-Za-z0-9_.@-]{1,64}$")),
    responses(
        (status = 200, description = "Revoked", body = UserInfo),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An operator may not revoke themselves", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<UserInfo>, ApiError> {
    caller.operator_only()?;
    let user = revoke(&state, &caller, id).await?;
    Ok(axum::Json(UserInfo::from(&user)))
}

/// Revoke user `id` as `caller` (whose right to is checked by each
/// caller; an operator may not revoke themselves): the one path of
/// `POST /api/v1/users/{id}/revoke` and the office console.
pub(crate) async fn revoke(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<User, ApiError> {
    if id == caller.user_id {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            "an operator may not revoke their own account",
        ));
    }
    let _admin = state.user_admin().lock().await;
    state
        .blocking(move |store| {
            let mut user = store
                .user(&id)
                .ok()
                .flatten()
                .ok_or_else(|| ApiError::not_found(format!("no user `{id}`")))?;
            user.revoked = true;
            store.put_user(&user).map_err(user_write_error)?;
            Ok(user)
        })
        .await
}
