//! What every office-console form shares: reading a post (size-capped,
//! its token checked against the session, operators only), the flash box
//! that tells the person what happened, and the sentences `ApiError`s
//! become on a page.
//!
//! Why a flash cookie after a success: the post answers 303 to the page
//! the form was on (so a reload does not post again), and that page must
//! still say "Saved". The cookie carries only a code from [`DONE`], never
//! text, lives a minute and is cleared by the page that shows it. A
//! failure is not redirected: the page is rendered again at once with the
//! problem in the flash box and the error's status (nothing was saved).
//! Secrets (enrollment codes, client secrets) are never put in a cookie
//! or a URL: the post's own answer shows them (`people.rs`).

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::de::DeserializeOwned;

use super::{cookie, csrf, page_with, set_cookie, UiCaller, SESSION_COOKIE};
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// Largest console form body read, in bytes: a work order's longest text
/// (64 KiB) percent-encoded (up to 3 bytes a byte) and the other fields.
pub(super) const FORM_BYTES_MAX: usize = 256 * 1024;

/// The flash cookie: a code from [`DONE`].
pub(super) const FLASH_COOKIE: &str = "fieldsync_flash";
/// A flash not shown within this long is dropped.
const FLASH_MAX_AGE_S: u64 = 60;

/// What a successful post says on the page it returns to, by code.
const DONE: [(&str, &str); 4] = [
    ("saved", "Saved."),
    ("created", "Saved: the work order is created."),
    (
        "revoked",
        "Saved: the user is revoked; their sign-in and laptops stop working.",
    ),
    ("unchanged", "Nothing to save: no field was changed."),
];

/// The message of the page's flash box (`id="flash"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Flash {
    /// The change was saved (or there was nothing to save).
    Done(&'static str),
    /// Nothing was saved, and why.
    Problem(String),
}

impl Flash {
    /// The flash a request's cookie asks for, if any known one.
    pub(super) fn from_headers(headers: &HeaderMap) -> Option<Flash> {
        let code = cookie(headers, FLASH_COOKIE)?;
        DONE.iter()
            .find(|(known, _)| *known == code)
            .map(|(_, text)| Flash::Done(text))
    }

    /// The flash box: a word says what kind it is (not only its colour),
    /// and a problem is announced to screen readers at once.
    pub(super) fn render(&self) -> Markup {
        match self {
            Flash::Done(text) => html! {
                div #flash .flash.done role="status" { strong { "Done: " } (text) }
            },
            Flash::Problem(text) => html! {
                div #flash .flash.problem role="alert" { strong { "Not saved: " } (text) }
            },
        }
    }
}

/// 303 to `to` with the flash `code` (one of [`DONE`]).
pub(super) fn done(to: &str, code: &'static str, secure: bool) -> Response {
    debug_assert!(DONE.iter().any(|(known, _)| *known == code));
    let mut response = Redirect::to(to).into_response();
    if let Some(value) = set_cookie(FLASH_COOKIE, code, FLASH_MAX_AGE_S, secure) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `response` to a page that showed `session`'s flash, with the flash
/// cookie cleared so a reload does not show it again.
pub(super) fn flash_shown(mut response: Response, session: &UiCaller, secure: bool) -> Response {
    if session.flash.is_some() {
        if let Some(value) = set_cookie(FLASH_COOKIE, "", 0, secure) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A page that says only `message` (in the flash box), at `status`.
pub(super) fn problem_page(
    status: StatusCode,
    session: Option<&UiCaller>,
    title: &str,
    message: String,
) -> Response {
    let flash = Flash::Problem(message);
    let body = html! { p { a href="/ui/work-orders" { "Back to the work orders" } } };
    (status, page_with(title, session, Some(&flash), body)).into_response()
}

/// The sentence a person reads when a console action failed with `error`
/// (the REST API's problem `detail` is for programs).
pub(super) fn sentence(error: &ApiError) -> String {
    let detail = error.detail.replace('`', "");
    match error.kind {
        ErrorKind::PreconditionFailed => STALE.into(),
        ErrorKind::InvalidValue
        | ErrorKind::InvalidBody
        | ErrorKind::MalformedBody
        | ErrorKind::InvalidId
        | ErrorKind::InvalidQuery => format!("Check the form: {detail}."),
        ErrorKind::NotFound => {
            format!("Not found ({detail}): it may have been deleted, or you may no longer see it.")
        }
        ErrorKind::Deleted => "This work order is deleted; it takes no more changes.".into(),
        ErrorKind::AlreadyExists => format!("{detail}; choose another id."),
        ErrorKind::Forbidden => format!("You are not allowed to do this: {detail}."),
        ErrorKind::Conflict => format!("This cannot be done now: {detail}."),
        ErrorKind::BodyTooLarge => format!(
            "The form is too large (over {} KiB); shorten the text.",
            FORM_BYTES_MAX / 1024
        ),
        ErrorKind::RateLimited => "Too many requests; wait a moment and try again.".into(),
        ErrorKind::Timeout => "The central took too long to answer. Reload the page to see \
                               whether the change was saved before trying again."
            .into(),
        ErrorKind::Unavailable => "The central's store is not taking changes right now. \
                                   Try again in a minute."
            .into(),
        _ => "Something went wrong on the central. Try again; if it happens again, \
              tell your administrator."
            .into(),
    }
}

/// What a stale edit is told (the form's version is not the document's).
pub(super) const STALE: &str = "This work order changed since you opened it; your edit was \
                                not saved. Reload to see the changes.";

/// A form that did not come from this site's page for this session.
const FORGED_FORM: &str = "This form has expired or did not come from this site, so \
                           nothing was saved. Reload the page and try again.";

/// A signed-in operator's post and its form.
pub(super) struct Posted<T> {
    pub(super) session: UiCaller,
    pub(super) form: T,
}

/// Read a console post: signed in (else to sign-in), at most
/// [`FORM_BYTES_MAX`], its token the session's console token (403 before
/// anything else is looked at), an operator's (403), a form `T` (400).
/// Every refusal is a page a person can read; nothing is written.
pub(super) async fn posted<T: DeserializeOwned>(
    state: &AppState,
    request: Request,
) -> Result<Posted<T>, Response> {
    let (parts, body) = request.into_parts();
    let Some(session) = UiCaller::from_headers(&parts.headers, state) else {
        return Err(Redirect::to("/sign-in").into_response());
    };
    let Ok(bytes) = axum::body::to_bytes(body, FORM_BYTES_MAX).await else {
        let error = ApiError::new(ErrorKind::BodyTooLarge, "");
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        return Err(problem_page(
            status,
            Some(&session),
            "Not saved",
            sentence(&error),
        ));
    };
    // The role first: it tells a technician nothing the console's pages
    // do not, and a test can reach it without a form token.
    if session.caller.operator_only().is_err() {
        return Err(operators_only(&session));
    }
    let fields: Vec<(String, String)> = parse_form(&parts.headers, bytes.clone())
        .await
        .unwrap_or_default();
    let presented = fields
        .iter()
        .find(|(name, _)| name == csrf::FIELD)
        .map_or("", |(_, value)| value.as_str());
    let genuine = csrf::same_origin(&parts.headers)
        && cookie(&parts.headers, SESSION_COOKIE).is_some_and(|binding| {
            csrf::check(
                state.tokens().form_key(),
                csrf::Form::Console,
                binding,
                presented,
            )
        });
    if !genuine {
        tracing::warn!(user = %session.caller.user_id, "console post refused: no valid form token");
        let status = StatusCode::FORBIDDEN;
        return Err(problem_page(
            status,
            Some(&session),
            "Not saved",
            FORGED_FORM.into(),
        ));
    }
    match parse_form::<T>(&parts.headers, bytes).await {
        Ok(form) => Ok(Posted { session, form }),
        Err(detail) => {
            let error = ApiError::new(ErrorKind::MalformedBody, detail);
            let status = StatusCode::BAD_REQUEST;
            Err(problem_page(
                status,
                Some(&session),
                "Not saved",
                sentence(&error),
            ))
        }
    }
}

/// The 403 page of a console page or form for someone who is not an
/// operator.
pub(super) fn operators_only(session: &UiCaller) -> Response {
    let message = format!(
        "Only operators may use the office console; you are signed in as {} ({}).",
        session.caller.user_id,
        session.caller.role.as_str()
    );
    problem_page(StatusCode::FORBIDDEN, Some(session), "Forbidden", message)
}

/// `bytes` as a form `T`, if the request said it is one.
async fn parse_form<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: bytes::Bytes,
) -> Result<T, String> {
    let mut request = Request::new(Body::from(bytes));
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    *request.method_mut() = axum::http::Method::POST;
    axum::Form::<T>::from_request(request, &())
        .await
        .map(|axum::Form(form)| form)
        .map_err(|rejection| rejection.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_becomes_a_sentence_without_markup_of_its_own() {
        let stale = ApiError::new(ErrorKind::PreconditionFailed, "the work order changed");
        assert_eq!(sentence(&stale), STALE);
        let invalid = ApiError::new(ErrorKind::InvalidValue, "`customer.name` must not be empty");
        assert_eq!(
            sentence(&invalid),
            "Check the form: customer.name must not be empty."
        );
        let internal = ApiError::new(ErrorKind::Internal, "internal error");
        assert!(!sentence(&internal).contains("internal error"));
    }

    #[test]
    fn only_known_flash_codes_are_shown() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "fieldsync_flash=saved".parse().unwrap());
        assert_eq!(Flash::from_headers(&headers), Some(Flash::Done("Saved.")));
        headers.insert(header::COOKIE, "fieldsync_flash=<b>hi</b>".parse().unwrap());
        assert_eq!(Flash::from_headers(&headers), None);
    }
}
