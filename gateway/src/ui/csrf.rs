//! Form tokens for the web UI's state-changing forms (sign-in, sign-out
//! and every form of the office console), so another site cannot post
//! them in a user's browser (signing the victim into the attacker's
//! account or out of theirs, or creating, editing, cancelling work orders
//! and adding or revoking users in their name).
//!
//! Each form carries a hidden token: an HMAC (keyed by a key derived from
//! the token key, so it needs no storage) over the form's name and a value
//! bound to the browser by a cookie the other site can neither read nor
//! set for us:
//!
//! - sign-in: a random nonce in its own `HttpOnly`, `SameSite=Strict`
//!   cookie, set when the sign-in page is served (`__Host-` prefixed and
//!   `Secure` over HTTPS, so a sibling subdomain cannot plant one);
//! - sign-out and the console's forms: the session cookie itself, so the
//!   token works only for that session (and a console token never signs
//!   out, nor the reverse).
//!
//! A POST whose token does not match its cookie is refused (403) before
//! any credential is looked at. Browsers that send `Sec-Fetch-Site` must
//! also not say another site sent it, which stops a cross-site post even
//! where a cookie could be planted.

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// The name of the hidden field that carries the token.
pub(super) const FIELD: &str = "csrf_token";

/// Random bytes in a sign-in nonce.
const NONCE_BYTES: usize = 16;

/// The nonce cookie lives this long: a sign-in page left open longer
/// answers its post with a fresh form (403).
pub(super) const NONCE_MAX_AGE_S: u64 = 12 * 3600;

/// Which form a token is for: a token for one never passes for the other.
#[derive(Clone, Copy)]
pub(super) enum Form {
    SignIn,
    SignOut,
    /// Every form of the office console (`console.rs`, `people.rs`).
    Console,
}

impl Form {
    fn label(self) -> &'static [u8] {
        match self {
            Form::SignIn => b"fieldsync ui form sign-in v1",
            Form::SignOut => b"fieldsync ui form sign-out v1",
            Form::Console => b"fieldsync ui form console v1",
        }
    }
}

fn message(form: Form, binding: &str) -> Vec<u8> {
    let mut message = form.label().to_vec();
    message.push(0);
    message.extend_from_slice(binding.as_bytes());
    message
}

/// The token `form` carries for the cookie value `binding`.
pub(super) fn token(key: &hmac::Key, form: Form, binding: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac::sign(key, &message(form, binding)))
}

/// Whether `presented` is the token of `form` for `binding` (compared in
/// constant time).
pub(super) fn check(key: &hmac::Key, form: Form, binding: &str, presented: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
        return false;
    };
    hmac::verify(key, &message(form, binding), &tag).is_ok()
}

/// A fresh sign-in nonce.
pub(super) fn new_nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; NONCE_BYTES]>())
}

/// Whether `text` has a nonce's shape (what `new_nonce` makes).
pub(super) fn is_nonce(text: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(text)
        .is_ok_and(|bytes| bytes.len() == NONCE_BYTES)
}

/// The nonce cookie's name: over HTTPS with the `__Host-` prefix, which
/// browsers accept only `Secure`, for `Path=/` and from this very host.
pub(super) fn nonce_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-fieldsync_form"
    } else {
        "fieldsync_form"
    }
}

/// False when the browser says another site made the request
/// (`Sec-Fetch-Site` other than `same-origin`, or `none` for the user's
/// own action, which no page can cause); true when it says nothing (older
/// browsers, scripts), which the token alone then guards.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_none_or(|value| matches!(value.as_bytes(), b"same-origin" | b"none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_for_one_form_one_binding_and_one_key() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        let other_key = hmac::Key::new(hmac::HMAC_SHA256, &[8; 32]);
        let nonce = new_nonce();
        assert!(is_nonce(&nonce));
        let token = token(&key, Form::SignIn, &nonce);
        assert!(check(&key, Form::SignIn, &nonce, &token));
        assert!(!check(&key, Form::SignOut, &nonce, &token));
        assert!(!check(&key, Form::Console, &nonce, &token));
        let console = super::token(&key, Form::Console, "session");
        assert!(check(&key, Form::Console, "session", &console));
        assert!(!check(&key, Form::SignOut, "session", &console));
        assert!(!check(&key, Form::Console, "other session", &console));
        assert!(!check(&key, Form::SignIn, &new_nonce(), &token));
        assert!(!check(&other_key, Form::SignIn, &nonce, &token));
        for bad in ["", "x", "!!!!", &token[1..]] {
            assert!(!check(&key, Form::SignIn, &nonce, bad), "{bad}");
        }
        for bad in ["", "short", &"a".repeat(40), "not base64 at all!!!!!"] {
            assert!(!is_nonce(bad), "{bad}");
        }
    }

    #[test]
    fn only_a_same_origin_fetch_or_none_said_passes() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers));
        for (value, passes) in [
            ("same-origin", true),
            ("same-site", false),
            ("cross-site", false),
            ("none", true),
        ] {
            headers.insert("sec-fetch-site", value.parse().unwrap());
            assert_eq!(same_origin(&headers), passes, "{value}");
        }
    }
}
