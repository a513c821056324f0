//! Hardening finding 5, the gateway's transport: HTTPS with the configured
//! certificate, `X-Forwarded-For` and `-Proto` believed from trusted
//! proxies only, the security headers on every response, and `Secure`
//! cookies and HSTS whenever clients come over HTTPS.
//!
//! Each test fails on the code before the fix (checked by running these
//! tests against it with the new config fields stubbed in and ignored):
//! it served plain HTTP only, keyed every limit by the TCP peer, sent the
//! security headers on UI pages only, and marked the session cookie
//! `Secure` only with `cookie_secure`.

use std::path::Path;

use fieldsync_gateway::{AppState, GatewayConfig, TlsFiles, TokenKey};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{client_from, cookie_named, init_store, set_cookies, ui_sign_in, Server};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM
/// files into `dir`.
fn certificate(dir: &Path) -> TlsFiles {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
    files
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The headers every response carries, HSTS when `https`.
fn assert_security_headers(response: &reqwest::Response, https: bool) {
    let what = format!("{} {}", response.status(), response.url());
    assert_headers(response.headers(), &what, https);
}

fn assert_headers(headers: &reqwest::header::HeaderMap, what: &str, https: bool) {
    let get = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    assert_eq!(get("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(get("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(get("referrer-policy"), Some("no-referrer"), "{what}");
    let csp = get("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(
        get("strict-transport-security").is_some(),
        https,
        "{what}: HSTS"
    );
}

async fn registry_changes_address(response: reqwest::Response) -> String {
    let services: Value = response.json().await.unwrap();
    services
        .as_array()
        .unwrap()
        .iter()
        .find(|service| service["service"] == "changes")
        .unwrap()["endpoints"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = GatewayConfig {
        tls: Some(certificate(dir.path())),
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // A TLS client trusting only the test's certificate: served, with HSTS
    // and the other security headers.
    let response = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(&response, true);
    assert_eq!(
        header(&response, "strict-transport-security"),
        Some("max-age=31536000")
    );
    // The API works over it, and the registry says https (no public URL
    // configured: this request's host and scheme).
    let op = server.token("op").await;
    let (status, _) = server.get_json("/api/v1/work-orders", &op).await;
    assert_eq!(status, StatusCode::OK);
    let response = server
        .call(Method::GET, "/api/v1/registry", None, None)
        .await;
    assert_eq!(
        registry_changes_address(response).await,
        format!("{}/api/v1/changes", server.url)
    );
    // The UI's cookies are Secure; the form's nonce is `__Host-` bound.
    let response = ui_sign_in(&server.client, &server.url, "op", &server.secret("op")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let session = set_cookies(&response)
        .into_iter()
        .find(|line| line.starts_with("fieldsync_session="))
        .expect("a session cookie");
    assert!(session.contains("; Secure"), "{session}");
    let page = server
        .client
        .get(format!("{}/sign-in", server.url))
        .send()
        .await
        .unwrap();
    let nonce = set_cookies(&page)
        .into_iter()
        .find(|line| line.starts_with("__Host-fieldsync_form="))
        .expect("a __Host- nonce cookie");
    assert!(
        nonce.contains("; Secure") && nonce.contains("Path=/"),
        "{nonce}"
    );

    // A client that does not trust the certificate refuses it, and plain
    // HTTP on the port gets no answer.
    let other = tempfile::tempdir().unwrap();
    let stranger = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(certificate(other.path()).cert).unwrap(),
        )
        .unwrap()])
        .build()
        .unwrap();
    assert!(stranger
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .is_err());
    let plain = server.url.replacen("https://", "http://", 1);
    let answered = server
        .client
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success());
    assert!(!answered, "plain HTTP is not served");
    server.stop().await;
}

/// A missing or broken certificate or key stops the gateway before it
/// serves, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let good = certificate(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all").unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let path = store_dir.path().join("store");
    let store = tokio::task::spawn_blocking(move || init_store(&path))
        .await
        .unwrap();
    let cases = [
        (
            TlsFiles {
                cert: dir.path().join("missing.pem"),
                key: good.key.clone(),
            },
            "cannot read `tls_cert`",
        ),
        (
            TlsFiles {
                cert: good.cert.clone(),
                key: dir.path().join("missing-key.pem"),
            },
            "cannot read `tls_key`",
        ),
        (
            TlsFiles {
                cert: garbage.clone(),
                key: good.key.clone(),
            },
            "holds no certificate",
        ),
        (
            TlsFiles {
                cert: good.cert.clone(),
                key: garbage.clone(),
            },
            "holds no private key",
        ),
    ];
    for (files, expected) in cases {
        let config = GatewayConfig {
            tls: Some(files),
            ..GatewayConfig::default()
        };
        let Err(error) = AppState::new(store.clone(), TokenKey::generate(), config) else {
            panic!("{expected}: started");
        };
        let message = error.to_string();
        assert!(message.contains(expected), "{expected}: {message}");
        assert!(message.contains(dir.path().to_str().unwrap()), "{message}");
    }
    tokio::task::spawn_blocking(move || store.close())
        .await
        .unwrap();
}

async fn healthz_from(
    client: &reqwest::Client,
    server: &Server,
    forwarded_for: &str,
) -> StatusCode {
    client
        .get(format!("{}/healthz", server.url))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

async fn wrong_secret_from(
    client: &reqwest::Client,
    server: &Server,
    forwarded_for: &str,
) -> StatusCode {
    client
        .post(format!("{}/oauth/token", server.url))
        .header("x-forwarded-for", forwarded_for)
        .basic_auth("erp-all", Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
}

/// Behind a trusted proxy, limits are per real client (the rightmost
/// forwarded address that is not a trusted proxy); from anyone else
/// `X-Forwarded-For` is ignored. Fails on the code before the fix, which
/// keyed every limit by the TCP peer: all clients behind the proxy shared
/// one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let config = GatewayConfig {
        requests_per_s: 1,
        request_burst: 3,
        token_attempts_per_minute: 2,
        trusted_proxies: vec!["127.0.0.2/32".into(), "10.0.0.0/8".into()],
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    use StatusCode as S;

    // Requests: the proxy's client 203.0.113.7 spends its burst...
    let proxy = client_from([127, 0, 0, 2]);
    for _ in 0..3 {
        assert_eq!(healthz_from(&proxy, &server, "203.0.113.7").await, S::OK);
    }
    assert_eq!(
        healthz_from(&proxy, &server, "203.0.113.7").await,
        S::TOO_MANY_REQUESTS
    );
    // ...which a spoofed address left of it, or a trusted hop right of it,
    // does not change: it is still 203.0.113.7.
    for chain in ["198.51.100.1, 203.0.113.7", "203.0.113.7, 10.1.2.3"] {
        assert_eq!(
            healthz_from(&proxy, &server, chain).await,
            S::TOO_MANY_REQUESTS,
            "{chain}"
        );
    }
    // Another client behind the same proxy has its own.
    assert_eq!(healthz_from(&proxy, &server, "203.0.113.8").await, S::OK);
    assert_eq!(
        healthz_from(&proxy, &server, "203.0.113.7, 10.1.2.3, 203.0.113.9").await,
        S::OK
    );

    // An untrusted peer's header is ignored: one budget, whatever it says.
    let direct = client_from([127, 0, 0, 3]);
    for forwarded in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(healthz_from(&direct, &server, forwarded).await, S::OK);
    }
    assert_eq!(
        healthz_from(&direct, &server, "192.0.2.4").await,
        S::TOO_MANY_REQUESTS
    );

    // Failed token attempts: per real client too. The proxy's client
    // 203.0.113.20 spends its failure budget of two (within its request
    // burst of three); 203.0.113.21 is still heard.
    for _ in 0..2 {
        assert_eq!(
            wrong_secret_from(&proxy, &server, "203.0.113.20").await,
            S::UNAUTHORIZED
        );
    }
    assert_eq!(
        wrong_secret_from(&proxy, &server, "203.0.113.20").await,
        S::TOO_MANY_REQUESTS
    );
    assert_eq!(
        wrong_secret_from(&proxy, &server, "203.0.113.21").await,
        S::UNAUTHORIZED
    );
    server.stop().await;
}

/// A trusted proxy on a metrics network does not make everyone behind it
/// one: the forwarded client is judged. Fails on the code before the fix,
/// which served `/metrics` to anyone through a proxy on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_a_trusted_proxy_is_judged_for_metrics() {
    let config = GatewayConfig {
        metrics_networks: vec!["127.0.0.0/8".into()],
        trusted_proxies: vec!["127.0.0.2/32".into()],
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    let proxy = client_from([127, 0, 0, 2]);
    let metrics = |forwarded_for: &'static str| {
        proxy
            .get(format!("{}/metrics", server.url))
            .header("x-forwarded-for", forwarded_for)
            .send()
    };
    let response = metrics("203.0.113.7").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = metrics("127.0.0.9").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // An untrusted peer on the network: its own address counts.
    let direct = client_from([127, 0, 0, 3]);
    let response = direct
        .get(format!("{}/metrics", server.url))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

/// `X-Forwarded-Proto: https` from a trusted proxy means the client came
/// over HTTPS: the registry says https, cookies are Secure, HSTS is sent.
/// From anyone else it is ignored. Fails on the code before the fix,
/// which ignored the header (registry `http://`, no Secure, no HSTS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_proto_from_a_trusted_proxy_means_https() {
    let config = GatewayConfig {
        trusted_proxies: vec!["127.0.0.2/32".into()],
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    let host = server.url.trim_start_matches("http://").to_string();
    let proxy = client_from([127, 0, 0, 2]);
    let direct = client_from([127, 0, 0, 3]);
    for (client, https) in [(&proxy, true), (&direct, false)] {
        let response = client
            .get(format!("{}/api/v1/registry", server.url))
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        let headers = response.headers().clone();
        let scheme = if https { "https" } else { "http" };
        assert_eq!(
            registry_changes_address(response).await,
            format!("{scheme}://{host}/api/v1/changes")
        );
        assert_headers(&headers, "the registry", https);
    }
    // Signing in through the proxy: the session cookie is Secure.
    let forwarding = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::HeaderName::from_static("x-forwarded-proto"),
                reqwest::header::HeaderValue::from_static("https"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let response = ui_sign_in(&forwarding, &server.url, "op", &server.secret("op")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let session = set_cookies(&response)
        .into_iter()
        .find(|line| line.starts_with("fieldsync_session="))
        .expect("a session cookie");
    assert!(session.contains("; Secure"), "{session}");
    server.stop().await;
}

/// Every response carries `nosniff`, `X-Frame-Options: DENY`, a CSP with
/// `frame-ancestors 'none'` and `Referrer-Policy: no-referrer`: API
/// answers, problems, unknown routes, the OpenAPI document and UI pages
/// alike; no HSTS over plain HTTP. Fails on the code before the fix,
/// which set them on UI pages only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let cases = [
        ("/healthz", None, StatusCode::OK),
        ("/api/v1/work-orders", Some(op.as_str()), StatusCode::OK),
        ("/api/v1/work-orders", None, StatusCode::UNAUTHORIZED),
        ("/api/v1/no-such-thing", None, StatusCode::NOT_FOUND),
        ("/openapi.json", None, StatusCode::OK),
        ("/sign-in", None, StatusCode::OK),
        ("/ui/work-orders", None, StatusCode::SEE_OTHER),
    ];
    for (path, token, status) in cases {
        let response = server.call(Method::GET, path, token, None).await;
        assert_eq!(response.status(), status, "{path}");
        assert_security_headers(&response, false);
    }
    // The API's own policy forbids everything; the UI's allows its style.
    let response = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        header(&response, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    let response = server.call(Method::GET, "/sign-in", None, None).await;
    assert!(header(&response, "content-security-policy")
        .unwrap()
        .contains("style-src 'unsafe-inline'"));
    server.stop().await;
}

/// An https public URL (a TLS proxy in front) makes the UI's cookies
/// Secure and responses carry HSTS, and the registry advertises it, with
/// `cookie_secure` left off. Fails on the code before the fix, whose
/// cookie was Secure only with `cookie_secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_public_url_makes_cookies_secure() {
    let config = GatewayConfig {
        public_base_url: Some("https://central.example:8443/".into()),
        ..GatewayConfig::default()
    };
    assert!(!config.cookie_secure);
    let server = Server::start_with(config, None).await;
    let response = ui_sign_in(&server.client, &server.url, "op", &server.secret("op")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = set_cookies(&response);
    let session = set
        .iter()
        .find(|line| line.starts_with("fieldsync_session="))
        .expect("a session cookie");
    assert!(session.contains("; Secure"), "{session}");
    assert!(cookie_named(&set, "fieldsync_session").is_some());
    assert_security_headers(&response, true);
    let response = server
        .call(Method::GET, "/api/v1/registry", None, None)
        .await;
    assert_eq!(
        registry_changes_address(response).await,
        "https://central.example:8443/api/v1/changes"
    );
    server.stop().await;

    // Plain HTTP without a public URL: not Secure (a browser would drop a
    // Secure cookie sent over http), unless `cookie_secure` says so.
    for (cookie_secure, secure) in [(false, false), (true, true)] {
        let config = GatewayConfig {
            cookie_secure,
            ..GatewayConfig::default()
        };
        let server = Server::start_with(config, None).await;
        let response = ui_sign_in(&server.client, &server.url, "op", &server.secret("op")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let session = set_cookies(&response)
            .into_iter()
            .find(|line| line.starts_with("fieldsync_session="))
            .expect("a session cookie");
        assert_eq!(session.contains("; Secure"), secure, "{session}");
        server.stop().await;
    }
}
