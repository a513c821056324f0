//! Every request passes here first: the `Host` must be this app's (DNS
//! rebinding), the session cookie valid (except on `/open`, which makes
//! one), and a POST's `Origin` this app's (cross-site forms). Every answer
//! gets the app's security headers: scripts and styles only from the app
//! itself (`/app.js`, `/app.css`), no framing, no referrer (the open URL
//! carries the key), no caching.

use crate::ui::cookie;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::pages::plain_page;
use super::session::{Session, COOKIE, SESSION_MAX_AGE_S};
use super::state::FieldState;
use crate::clock::now_s;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The `Host` values this app answers to: the listener's address, and on
/// loopback `localhost` with its port.
fn host_allowed(state: &FieldState, host: &str) -> bool {
    let address = state.address();
    if host == address.to_string() {
        return true;
    }
    address.ip().is_loopback() && host == format!("localhost:{}", address.port())
}

fn refused(status: StatusCode, id: &str, title: &str, message: &str) -> Response {
    let body = html! { p id=(id) role="alert" { (message) } };
    (status, plain_page(title, body)).into_response()
}

/// 401: how to open the app.
pub(super) fn unauthorized() -> Response {
    refused(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Open the field app from its link",
        "This page needs the field app's link. Open the address that `fieldsync run` \
         printed (it is also in the file field-app.url in the node's data directory); \
         the link signs this browser in.",
    )
}

pub(super) async fn guard(
    State(state): State<FieldState>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !host_allowed(&state, host) {
        tracing::warn!(host, "field app: request for another host refused");
        let response = refused(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong-host",
            "Wrong address",
            "This is the field app of this laptop; open it at the address fieldsync printed.",
        );
        return with_headers(response);
    }
    let path = request.uri().path();
    if path != "/open" {
        let session = cookie(headers, COOKIE).and_then(|value| state.key().session(value, now_s()));
        let Some(session) = session else {
            return with_headers(unauthorized());
        };
        if request.method() == Method::POST {
            let expected = format!("http://{host}");
            let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
            if origin != Some(expected.as_str()) {
                tracing::warn!(?origin, "field app: post from another origin refused");
                return with_headers(refused(
                    StatusCode::FORBIDDEN,
                    "error",
                    "Not sent from the field app",
                    "This form did not come from the field app's own page; nothing was saved. \
                     Go back to the work order and try again.",
                ));
            }
        }
        request.extensions_mut().insert::<Session>(session);
    }
    with_headers(next.run(request).await)
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // `same-origin`, not `no-referrer`: under `no-referrer` Chromium
        // sends `Origin: null` with the app's own form posts, which the
        // Origin check must then refuse (the browser test found it).
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[derive(Deserialize)]
pub(super) struct OpenQuery {
    #[serde(default)]
    key: String,
}

/// `/open?key=`: the right key gets a session cookie and a redirect to the
/// list (so the key leaves the address bar); anything else a 401.
pub(super) async fn open(
    State(state): State<FieldState>,
    query: Result<Query<OpenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let presented = query.map(|Query(query)| query.key).unwrap_or_default();
    if !state.key().matches(&presented) {
        tracing::warn!("field app: open with a wrong key refused");
        return unauthorized();
    }
    // Loopback HTTP: never `Secure` (the browser would not send it back).
    let value = crate::ui::set_cookie(
        COOKIE,
        &state.key().new_session(now_s()),
        SESSION_MAX_AGE_S,
        false,
    );
    let mut response = Redirect::to("/").into_response();
    if let Some(value) = value {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
