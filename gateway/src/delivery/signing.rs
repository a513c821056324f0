//! The headers that let a receiver trust a delivery: Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) and the simple
//! shared key of reference §5 (`secKey`).
//!
//! Why the `standardwebhooks` crate signs: it is the reference
//! implementation of the format (HMAC-SHA256 over `id.timestamp.body`,
//! `v1,<base64>`), so our signatures are what receivers' libraries verify.
//! During a secret rotation every secret still valid signs, and the
//! signatures are space-separated, as the standard allows.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use standardwebhooks::Webhook;

/// `secKey`, as the original interface names it.
pub(crate) const SEC_KEY: HeaderName = HeaderName::from_static("seckey");
const USER_AGENT_VALUE: &str = concat!("fieldsync-webhooks/", env!("CARGO_PKG_VERSION"));

/// A secret that cannot sign (not base64 after `whsec_`).
#[derive(Debug, thiserror::Error)]
#[error("webhook secret is not usable: {0}")]
pub(crate) struct SigningError(String);

/// Check a secret a client supplied: `whsec_` + base64 of 24 to 64 bytes.
pub(crate) fn check_secret(secret: &str) -> Result<(), SigningError> {
    use base64::Engine as _;
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return Err(SigningError("it must start with `whsec_`".into()));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| SigningError("the part after `whsec_` must be base64".into()))?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(SigningError("it must encode 24 to 64 bytes".into()));
    }
    Ok(())
}

/// Every header of one delivery attempt.
pub(crate) fn headers<'a>(
    id: &str,
    timestamp_s: i64,
    body: &str,
    content_type: &str,
    secrets: impl Iterator<Item = &'a str>,
    sec_key: Option<&str>,
) -> Result<HeaderMap, SigningError> {
    let mut signatures = Vec::new();
    for secret in secrets {
        let signer = Webhook::new(secret).map_err(|e| SigningError(e.to_string()))?;
        let signature = signer
            .sign(id, timestamp_s, body.as_bytes())
            .map_err(|e| SigningError(e.to_string()))?;
        signatures.push(signature);
    }
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|_| SigningError("not a header value".into()))
    };
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("webhook-id"), value(id)?);
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        value(&timestamp_s.to_string())?,
    );
    headers.insert(
        HeaderName::from_static("webhook-signature"),
        value(&signatures.join(" "))?,
    );
    if let Some(key) = sec_key {
        headers.insert(SEC_KEY, value(key)?);
    }
    headers.insert(CONTENT_TYPE, value(content_type)?);
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// The Standard Webhooks specification's own example: this secret,
    /// id, timestamp and body sign to this value.
    #[test]
    fn the_specifications_example_signs_to_its_published_signature() {
        let headers = headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
            "application/json",
            [SECRET].into_iter(),
            None,
        )
        .unwrap();
        assert_eq!(
            headers["webhook-signature"],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_signs_with_every_secret_and_the_key_header_is_sent() {
        let other = "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQ==";
        let headers = headers(
            "msg_1",
            1,
            "{}",
            "application/json",
            [SECRET, other].into_iter(),
            Some("shared"),
        )
        .unwrap();
        let signatures = headers["webhook-signature"].to_str().unwrap();
        assert_eq!(signatures.split(' ').count(), 2);
        assert!(signatures.split(' ').all(|s| s.starts_with("v1,")));
        assert_eq!(headers[SEC_KEY], "shared");
    }

    #[test]
    fn secrets_are_checked() {
        assert!(check_secret(SECRET).is_ok());
        assert!(check_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(check_secret("whsec_!!!").is_err());
        assert!(check_secret("whsec_QUJD").is_err(), "3 bytes is too short");
    }
}
