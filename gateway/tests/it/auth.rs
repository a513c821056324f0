//! Tokens: both credential styles, OAuth error codes, expiry, revocation,
//! role and scope changes taking effect at once, and the rate limits.

use std::time::Duration;

use fieldsync_gateway::GatewayConfig;
use fieldsync_schemas::{Role, Scope};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{client_from, problem, user, Server};

async fn token_request(
    server: &Server,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> reqwest::Response {
    token_request_with(&server.client, server, form, basic).await
}

async fn token_request_with(
    client: &reqwest::Client,
    server: &Server,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = client
        .post(format!("{}/oauth/token", server.url))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    request.send().await.expect("token request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_in_basic_or_form_and_oauth_errors() {
    let server = Server::start().await;
    let secret = server.secret("erp-all");
    // Form credentials, a subset of the held scopes.
    let response = token_request(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "erp-all"),
            ("client_secret", &secret),
            ("scope", "changes:read work-orders:read"),
        ],
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "changes:read work-orders:read");
    let narrow = body["access_token"].as_str().unwrap().to_string();
    // The narrowed token cannot write even though the client could.
    let create = serde_json::json!({"title": "T", "customer": {"name": "C"}});
    let refused = server
        .call(
            Method::POST,
            "/api/v1/work-orders",
            Some(&narrow),
            Some(&create),
        )
        .await;
    problem(refused, StatusCode::FORBIDDEN).await;
    let (status, _) = server.get_json("/api/v1/changes", &narrow).await;
    assert_eq!(status, StatusCode::OK);

    // HTTP Basic.
    let response = token_request(
        &server,
        &[("grant_type", "client_credentials")],
        Some(("erp-all", &secret)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Wrong secret, unknown client: the same answer.
    for (id, secret) in [("erp-all", "wrong"), ("nobody", "wrong")] {
        let response = token_request(
            &server,
            &[("grant_type", "client_credentials")],
            Some((id, secret)),
        )
        .await;
        assert!(response.headers().contains_key("www-authenticate"));
        let body = problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body["error"], "invalid_client");
    }
    // Grant type missing or unsupported; scope not held; unknown scope.
    let body = problem(
        token_request(&server, &[], Some(("erp-all", &secret))).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["error"], "invalid_request");
    let body = problem(
        token_request(
            &server,
            &[("grant_type", "password")],
            Some(("erp-all", &secret)),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["error"], "unsupported_grant_type");
    let read_secret = server.secret("erp-read");
    for scope in ["work-orders:write", "root"] {
        let body = problem(
            token_request(
                &server,
                &[("grant_type", "client_credentials"), ("scope", scope)],
                Some(("erp-read", &read_secret)),
            )
            .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(body["error"], "invalid_scope", "{scope}");
    }
    // Both credential styles at once.
    let body = problem(
        token_request(
            &server,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "erp-all"),
            ],
            Some(("erp-all", &secret)),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["error"], "invalid_request");
    // JSON instead of a form.
    let response = server
        .client
        .post(format!("{}/oauth/token", server.url))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // A tampered token is refused.
    let mut tampered = narrow.clone();
    tampered.pop();
    tampered.push(if narrow.ends_with('A') { 'B' } else { 'A' });
    let response = server
        .call(Method::GET, "/api/v1/changes", Some(&tampered), None)
        .await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused() {
    let config = GatewayConfig {
        token_ttl_s: 1,
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    let token = server.token("op").await;
    let (status, _) = server.get_json("/api/v1/work-orders", &token).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = server
        .call(Method::GET, "/api/v1/work-orders", Some(&token), None)
        .await;
    let body = problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["detail"], "token expired");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_role_and_scope_changes_apply_to_live_tokens() {
    let server = Server::start().await;
    let tech = server.token("tech-1").await;
    let erp = server.token("erp-read").await;
    let op = server.token("op").await;
    for token in [&tech, &erp, &op] {
        let (status, _) = server.get_json("/api/v1/changes", token).await;
        assert_eq!(status, StatusCode::OK);
    }
    let store = server.store.clone();
    let secret_tech = server.secret("tech-1");
    let secret_op = server.secret("op");
    tokio::task::spawn_blocking(move || {
        let mut revoked = user("tech-1", Role::Technician, vec![], &secret_tech);
        revoked.revoked = true;
        store.put_user(&revoked).unwrap();
        // erp-read loses changes:read but keeps work-orders:read.
        store
            .put_user(&user(
                "erp-read",
                Role::Integration,
                vec![Scope::WorkOrdersRead],
                "x",
            ))
            .unwrap();
        // op is demoted to technician.
        store
            .put_user(&user("op", Role::Technician, vec![], &secret_op))
            .unwrap();
    })
    .await
    .unwrap();
    let response = server
        .call(Method::GET, "/api/v1/changes", Some(&tech), None)
        .await;
    let body = problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["detail"], "user revoked");
    let response = server
        .call(Method::GET, "/api/v1/changes", Some(&erp), None)
        .await;
    problem(response, StatusCode::FORBIDDEN).await;
    let (status, _) = server.get_json("/api/v1/work-orders", &erp).await;
    assert_eq!(status, StatusCode::OK);
    let response = server
        .call(Method::GET, "/api/v1/peers", Some(&op), None)
        .await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    // A revoked user gets no new token either.
    let response = token_request(
        &server,
        &[("grant_type", "client_credentials")],
        Some(("tech-1", &server.secret("tech-1"))),
    )
    .await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_attempts_and_requests_are_rate_limited() {
    let config = GatewayConfig {
        token_attempts_per_minute: 4,
        requests_per_s: 1,
        request_burst: 5,
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    // One good attempt (a right secret costs no budget), then wrong
    // secrets until this address's budget of four failures a minute is
    // spent.
    let op = server.token("op").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = token_request(
            &server,
            &[("grant_type", "client_credentials")],
            Some(("erp-all", "wrong")),
        )
        .await;
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            problem(response, StatusCode::TOO_MANY_REQUESTS).await;
        }
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 429]);
    // Per-client request limit, keyed by the token's user: a burst of 5,
    // then 429 with Retry-After.
    let mut limited = None;
    for i in 0..8 {
        let response = server.call(Method::GET, "/healthz", Some(&op), None).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            problem(response, StatusCode::TOO_MANY_REQUESTS).await;
            limited = Some(i);
            break;
        }
    }
    assert_eq!(limited, Some(5), "the sixth quick request is refused");
    server.stop().await;
}

/// Hardening finding 6: guessing a client's secret must not lock the client
/// out. Fails on the code before the fix, where every attempt was charged
/// to the claimed client id before the secret was checked: once the
/// guesser had spent `erp-all`'s budget, `erp-all`'s own request with the
/// right secret, from another address, was answered 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_secret_locks_out_the_guesser_not_the_client() {
    let config = GatewayConfig {
        token_attempts_per_minute: 3,
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    let secret = server.secret("erp-all");
    let grant = [("grant_type", "client_credentials")];
    // The guesser, from 127.0.0.2, spends its failure budget and
    // `erp-all`'s: three wrong secrets, then 429 with Retry-After.
    let guesser = client_from([127, 0, 0, 2]);
    for _ in 0..3 {
        let response =
            token_request_with(&guesser, &server, &grant, Some(("erp-all", "guess"))).await;
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    for basic in [("erp-all", "guess"), ("erp-read", "guess")] {
        let response = token_request_with(&guesser, &server, &grant, Some(basic)).await;
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(body["type"], "urn:fieldsync:problem:rate-limited");
    }
    // The limit is the source's: `erp-all` itself, from 127.0.0.1 with
    // the right secret, gets its token, as often as it asks.
    for _ in 0..5 {
        let response = token_request(&server, &grant, Some(("erp-all", &secret))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Another source guessing the spent client: its first wrong secret is
    // checked (401), and locks that source at once.
    let second = client_from([127, 0, 0, 3]);
    let response = token_request_with(&second, &server, &grant, Some(("erp-all", "guess"))).await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    let response = token_request_with(&second, &server, &grant, Some(("erp-all", "guess"))).await;
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((30..=60).contains(&retry), "locked for the window: {retry}");
    problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // A third source with the right secret still gets in, and so does
    // the first source's client again.
    let third = client_from([127, 0, 0, 4]);
    let response = token_request_with(&third, &server, &grant, Some(("erp-all", &secret))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = token_request(&server, &grant, Some(("erp-all", &secret))).await;
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}
