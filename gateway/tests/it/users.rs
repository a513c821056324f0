//! Operators manage users and clients over the API; `app()` serves
//! without a socket too (`oneshot`).

use axum::body::Body;
use fieldsync_gateway::{AppState, GatewayConfig, TokenKey};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::{problem, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_add_list_and_revoke_clients() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let body = json!({"id": "crm", "role": "integration", "scopes": ["changes:read"]});
    let response = server
        .call(Method::POST, "/api/v1/users", Some(&op), Some(&body))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["user"]["scopes"], json!(["changes:read"]));
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    // The secret works, once and for all, and is never listed.
    let response = server
        .client
        .post(format!("{}/oauth/token", server.url))
        .basic_auth("crm", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    let crm = token["access_token"].as_str().unwrap().to_string();
    let (status, _) = server.get_json("/api/v1/changes", &crm).await;
    assert_eq!(status, StatusCode::OK);
    let (_, users) = server.get_json("/api/v1/users", &op).await;
    let listed = users.to_string();
    assert!(listed.contains("\"crm\"") && !listed.contains(&secret) && !listed.contains("argon2"));

    // Duplicates, bad roles, scopes on a technician, bad ids.
    let response = server
        .call(Method::POST, "/api/v1/users", Some(&op), Some(&body))
        .await;
    problem(response, StatusCode::CONFLICT).await;
    for (bad, status) in [
        (
            json!({"id": "x", "role": "admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"id": "x", "role": "technician", "scopes": ["changes:read"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"id": "x", "role": "integration", "scopes": ["root"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"id": "no spaces", "role": "technician"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"id": "x", "role": "technician", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let response = server
            .call(Method::POST, "/api/v1/users", Some(&op), Some(&bad))
            .await;
        problem(response, status).await;
    }
    // Only operators manage users.
    let tech = server.token("tech-1").await;
    let response = server
        .call(Method::POST, "/api/v1/users", Some(&tech), Some(&body))
        .await;
    problem(response, StatusCode::FORBIDDEN).await;

    // Revoke: the live token stops working at once.
    let response = server
        .call(Method::POST, "/api/v1/users/crm/revoke", Some(&op), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = server
        .call(Method::GET, "/api/v1/changes", Some(&crm), None)
        .await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    let response = server
        .call(Method::POST, "/api/v1/users/nobody/revoke", Some(&op), None)
        .await;
    problem(response, StatusCode::NOT_FOUND).await;
    let response = server
        .call(Method::POST, "/api/v1/users/op/revoke", Some(&op), None)
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_without_a_socket() {
    let server = Server::start().await;
    server.create("a", Some("tech-1")).await;
    let state = AppState::new(
        server.store.clone(),
        TokenKey::generate(),
        GatewayConfig::default(),
    )
    .unwrap();
    let app = fieldsync_gateway::app(state);
    let response = app
        .clone()
        .oneshot(
            axum::http::Request::get("/healthz")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let health: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(health["status"], "ok");
    // Protected routes still want a token.
    let response = app
        .oneshot(
            axum::http::Request::get("/api/v1/work-orders/a")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    server.stop().await;
}
