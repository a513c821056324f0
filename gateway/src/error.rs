//! Errors as RFC 9457 problem documents, and extractors whose rejections
//! are problems too.
//!
//! Why one error type for the whole gateway: every failure a client can see
//! goes through [`ApiError`], whose [`ErrorKind`] fixes the HTTP status and a
//! stable `type` URI. Clients branch on `type`, never on the wording of
//! `detail`. Internal failures are logged with their cause and shown to the
//! client only as "internal error": no paths, no store messages.
//!
//! Axum's own rejections (bad JSON, bad query strings, bad path segments)
//! and the responses of tower layers (timeouts, body limits, unknown
//! routes) are turned into problems as well, by the extractors below and by
//! [`problemize`], so nothing leaves as `text/plain`.

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of every problem `type`; the kind's slug follows.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:fieldsync:problem:";

/// What went wrong, as far as a client needs to know. Each kind has a fixed
/// status and `type`; adding a kind is additive, renaming one breaks clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request body is not valid JSON (or not the expected form).
    MalformedBody,
    /// The body is JSON but does not fit the schema: wrong types, missing
    /// or unknown fields.
    InvalidBody,
    /// The body is not JSON (or form data, on `/oauth/token`).
    UnsupportedMediaType,
    /// The body is over `body_bytes_max`, or a record value over
    /// `RECORD_VALUE_BYTES_MAX`.
    BodyTooLarge,
    /// A query parameter is malformed or out of range.
    InvalidQuery,
    /// A path segment (an id) is malformed.
    InvalidId,
    /// A request header (`If-Match`...) is malformed.
    InvalidHeader,
    /// A value was rejected by the work-order rules (too long, negative...).
    InvalidValue,
    /// No token, or a bad, expired or revoked one.
    Unauthorized,
    /// The caller is known but may not do this.
    Forbidden,
    /// No such resource, or one the caller may not see.
    NotFound,
    MethodNotAllowed,
    /// A work order with this id already exists.
    AlreadyExists,
    /// The work order is deleted (tombstoned); it takes no more edits.
    Deleted,
    /// The resource is not in a state that takes this request (a finished
    /// command, a retry not due yet).
    Conflict,
    /// A batch message or summary broke the batch rules; the problem's
    /// `errors` lists each rule broken (as gRPC's `errors` would).
    BatchRejected,
    /// `If-Match` names another version than the document or record has
    /// (or `If-None-Match: *` finds a record).
    PreconditionFailed,
    /// Too many requests; `Retry-After` says when to come back.
    RateLimited,
    /// The request took longer than `request_timeout_ms`.
    Timeout,
    /// The store cannot take writes now (closed or failed).
    Unavailable,
    Internal,
    /// OAuth2 token endpoint errors (RFC 6749 §5.2), carried in the problem
    /// as the `error` member as well.
    OAuthInvalidRequest,
    OAuthInvalidClient,
    OAuthUnsupportedGrantType,
    OAuthInvalidScope,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        use ErrorKind::*;
        match self {
            MalformedBody | InvalidQuery | InvalidId | InvalidHeader => StatusCode::BAD_REQUEST,
            InvalidBody | InvalidValue | BatchRejected => StatusCode::UNPROCESSABLE_ENTITY,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized | OAuthInvalidClient => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AlreadyExists | Deleted | Conflict => StatusCode::CONFLICT,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Timeout => StatusCode::GATEWAY_TIMEOUT,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthInvalidRequest | OAuthUnsupportedGrantType | OAuthInvalidScope => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// The stable last part of the `type` URI.
    pub fn slug(self) -> &'static str {
        use ErrorKind::*;
        match self {
            MalformedBody => "malformed-body",
            InvalidBody => "invalid-body",
            UnsupportedMediaType => "unsupported-media-type",
            BodyTooLarge => "body-too-large",
            InvalidQuery => "invalid-query",
            InvalidId => "invalid-id",
            InvalidHeader => "invalid-header",
            InvalidValue => "invalid-value",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotFound => "not-found",
            MethodNotAllowed => "method-not-allowed",
            AlreadyExists => "already-exists",
            Deleted => "deleted",
            Conflict => "conflict",
            BatchRejected => "batch-rejected",
            PreconditionFailed => "precondition-failed",
            RateLimited => "rate-limited",
            Timeout => "timeout",
            Unavailable => "unavailable",
            Internal => "internal",
            OAuthInvalidRequest => "oauth-invalid-request",
            OAuthInvalidClient => "oauth-invalid-client",
            OAuthUnsupportedGrantType => "oauth-unsupported-grant-type",
            OAuthInvalidScope => "oauth-invalid-scope",
        }
    }

    pub fn title(self) -> &'static str {
        use ErrorKind::*;
        match self {
            MalformedBody => "Malformed request body",
            InvalidBody => "Request body does not match the schema",
            UnsupportedMediaType => "Unsupported media type",
            BodyTooLarge => "Request body too large",
            InvalidQuery => "Invalid query parameter",
            InvalidId => "Invalid id",
            InvalidHeader => "Invalid header",
            InvalidValue => "Invalid value",
            Unauthorized => "Authentication required",
            Forbidden => "Forbidden",
            NotFound => "Not found",
            MethodNotAllowed => "Method not allowed",
            AlreadyExists => "Already exists",
            Deleted => "Work order is deleted",
            Conflict => "Conflict",
            BatchRejected => "Batch message or summary refused",
            PreconditionFailed => "Precondition failed",
            RateLimited => "Too many requests",
            Timeout => "Request timed out",
            Unavailable => "Service unavailable",
            Internal => "Internal error",
            OAuthInvalidRequest => "Invalid token request",
            OAuthInvalidClient => "Client authentication failed",
            OAuthUnsupportedGrantType => "Unsupported grant type",
            OAuthInvalidScope => "Invalid scope",
        }
    }

    /// The RFC 6749 `error` code, for token endpoint errors.
    fn oauth_code(self) -> Option<&'static str> {
        match self {
            ErrorKind::OAuthInvalidRequest => Some("invalid_request"),
            ErrorKind::OAuthInvalidClient => Some("invalid_client"),
            ErrorKind::OAuthUnsupportedGrantType => Some("unsupported_grant_type"),
            ErrorKind::OAuthInvalidScope => Some("invalid_scope"),
            _ => None,
        }
    }

    /// The kind a bare error status stands for (for responses made by
    /// layers that know only a status).
    pub fn from_status(status: StatusCode) -> ErrorKind {
        match status {
            StatusCode::BAD_REQUEST => ErrorKind::MalformedBody,
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::BodyTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorKind::InvalidBody,
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
            s if s.is_client_error() => ErrorKind::MalformedBody,
            _ => ErrorKind::Internal,
        }
    }
}

/// An error on its way to the client as a problem document.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {detail}", kind.slug())]
pub struct ApiError {
    pub kind: ErrorKind,
    /// Shown to the client: must never hold internals.
    pub detail: String,
    /// Seconds, for `RateLimited`.
    pub retry_after_s: Option<u64>,
    /// Each rule broken, for `BatchRejected` (the problem's `errors`).
    pub errors: Vec<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            detail: detail.into(),
            retry_after_s: None,
            errors: Vec::new(),
        }
    }

    /// An internal failure: `cause` goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "internal error");
        ApiError::new(ErrorKind::Internal, "internal error")
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, what)
    }

    pub fn forbidden(why: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Forbidden, why)
    }

    pub fn unauthorized(why: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unauthorized, why)
    }

    pub fn rate_limited(retry_after_s: u64) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s.max(1)),
            ..ApiError::new(
                ErrorKind::RateLimited,
                "request rate over the limit; retry after the given delay",
            )
        }
    }
}

/// The JSON body of a problem response (RFC 9457 §3), plus the OAuth2
/// `error` members on token endpoint errors.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the error kind (`urn:fieldsync:problem:...`).
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// Each rule a batch message or summary broke (`batch-rejected`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Problem {
    pub fn of(kind: ErrorKind, detail: &str) -> Problem {
        let oauth = kind.oauth_code();
        Problem {
            type_uri: format!("{PROBLEM_TYPE_PREFIX}{}", kind.slug()),
            title: kind.title().to_string(),
            status: kind.status().as_u16(),
            detail: detail.to_string(),
            error: oauth.map(str::to_string),
            error_description: oauth.map(|_| detail.to_string()),
            errors: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            errors: self.errors,
            ..Problem::of(self.kind, &self.detail)
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.kind.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        match self.kind {
            ErrorKind::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"fieldsync\""),
                );
            }
            ErrorKind::OAuthInvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"fieldsync\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// Turn any bare error response (tower layers' timeouts and limits, axum's
/// 404 and 405: no content type, or plain text) into a problem, keeping
/// its status and headers such as `Allow`.
pub async fn problemize(response: Response) -> Response {
    let status = response.status();
    // Leave problems and deliberate bodies (the UI's HTML error pages)
    // alone; rewrite what layers and axum made: no body type, or text.
    let bare = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|value| value.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return response;
    }
    let kind = ErrorKind::from_status(status);
    let detail = match kind {
        ErrorKind::NotFound => "no such resource",
        ErrorKind::MethodNotAllowed => "the resource does not support this method",
        ErrorKind::Timeout => "the request took too long",
        ErrorKind::BodyTooLarge => "the request body is over the size limit",
        _ => kind.title(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let problem = Problem {
        status: status.as_u16(),
        ..Problem::of(kind, detail)
    };
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    Response::from_parts(parts, body.into())
}

/// `axum::Json` whose rejections are problems (a body over the limit is
/// told the limit, `[gateway] body_bytes_max`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<crate::state::AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(body_too_large(state.config().body_bytes_max))
            }
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// What a caller hears when the store stops taking writes (its cause is
/// logged, not told).
pub(crate) fn store_unavailable(error: &fieldsync_node::store::WriteError) -> ApiError {
    tracing::error!(%error, "store refuses writes");
    ApiError::new(ErrorKind::Unavailable, "the store is not accepting writes")
}

/// A store write failure with nothing more specific to say: 503 when the
/// store is not taking writes, else an internal error (cause logged).
pub(crate) fn store_write_error(error: fieldsync_node::store::WriteError) -> ApiError {
    use fieldsync_node::store::WriteError;
    match error {
        WriteError::Closed | WriteError::StoreFailed | WriteError::Io(_) => {
            store_unavailable(&error)
        }
        other => ApiError::internal(other),
    }
}

/// A body over `bytes_max`, said so.
pub(crate) fn body_too_large(bytes_max: usize) -> ApiError {
    ApiError::new(
        ErrorKind::BodyTooLarge,
        format!("the request body is over the limit of {bytes_max} bytes"),
    )
}

/// JSON already read into `bytes`, decoded as `T`: a problem naming the
/// member at fault when it does not fit (as [`ApiJson`] would say).
pub(crate) fn json_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(value)| value)
        .map_err(json_rejection)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let kind = match &rejection {
        JsonRejection::JsonDataError(_) => ErrorKind::InvalidBody,
        JsonRejection::JsonSyntaxError(_) => ErrorKind::MalformedBody,
        JsonRejection::MissingJsonContentType(_) => ErrorKind::UnsupportedMediaType,
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::BodyTooLarge,
        _ => ErrorKind::MalformedBody,
    };
    // serde's messages name fields and types, never server internals.
    ApiError::new(kind, rejection.body_text())
}

/// `axum::Form` whose rejections are problems (the token endpoint).
pub struct ApiForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(ApiForm(value)),
            Err(rejection) => {
                let kind = match &rejection {
                    FormRejection::InvalidFormContentType(_) => ErrorKind::UnsupportedMediaType,
                    _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        ErrorKind::BodyTooLarge
                    }
                    _ => ErrorKind::MalformedBody,
                };
                Err(ApiError::new(kind, rejection.body_text()))
            }
        }
    }
}

/// `axum::extract::Query` whose rejections are problems.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::new(ErrorKind::InvalidQuery, rejection.body_text())
            })
    }
}

/// `axum::extract::Path` whose rejections are problems.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                ApiError::new(ErrorKind::InvalidId, rejection.body_text())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn problem_of(response: Response) -> (StatusCode, serde_json::Value) {
        let response = problemize(response).await;
        let status = response.status();
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("a small body");
        (
            status,
            serde_json::from_slice(&body).expect("a JSON problem"),
        )
    }

    #[tokio::test]
    async fn bare_layer_responses_become_problems_with_their_own_type() {
        let bare = |status: StatusCode| {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = status;
            response
        };
        let cases = [
            (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"),
            (StatusCode::NOT_FOUND, "not-found"),
        ];
        for (status, slug) in cases {
            let (got, problem) = problem_of(bare(status)).await;
            assert_eq!(got, status);
            assert_eq!(problem["status"], status.as_u16());
            let type_uri = problem["type"].as_str().expect("a type");
            assert_eq!(type_uri, format!("{PROBLEM_TYPE_PREFIX}{slug}"), "{status}");
        }
    }
}
