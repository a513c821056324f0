//! Operations endpoints: health, registry, OpenAPI, metrics, peers, and
//! request ids.

use std::sync::Arc;

use fieldsync_gateway::{GatewayConfig, PeerInfo, PeerTable};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{client_from, problem, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_registry_openapi_and_request_ids() {
    let server = Server::start().await;
    server.create("a", None).await;
    let response = server.call(Method::GET, "/healthz", None, None).await;
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36, "a UUID request id");
    let health: Value = response.json().await.unwrap();
    assert_eq!(
        health,
        serde_json::json!({"status": "ok"}),
        "no seq without a token"
    );
    // A client's request id is kept.
    let response = server
        .client
        .get(format!("{}/healthz", server.url))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-1");

    let registry: Value = server
        .call(Method::GET, "/api/v1/registry", None, None)
        .await
        .json()
        .await
        .unwrap();
    let services = registry.as_array().unwrap();
    let changes = services.iter().find(|s| s["service"] == "changes").unwrap();
    assert_eq!(changes["endpoints"][0]["version"], "1");
    assert_eq!(
        changes["endpoints"][0]["address"],
        format!("{}/api/v1/changes", server.url)
    );
    assert!(services.iter().any(|s| s["service"] == "token"));

    let spec: Value = server
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/oauth/token",
        "/api/v1/registry",
        "/api/v1/work-orders",
        "/api/v1/work-orders/{id}",
        "/api/v1/work-orders/{id}/notes",
        "/api/v1/work-orders/{id}/materials",
        "/api/v1/work-orders/{id}/status",
        "/api/v1/work-orders/{id}/closure",
        "/api/v1/changes",
        "/api/v1/peers",
        "/healthz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the spec");
    }
    for method in ["get", "patch", "delete"] {
        assert!(
            paths["/api/v1/work-orders/{id}"].get(method).is_some(),
            "{method}"
        );
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    assert!(spec["components"]["schemas"]["WorkOrder"].is_object());
    server.stop().await;
}

/// Hardening finding 7: `/healthz` tells the store's last seq (how busy the
/// whole office is) to operators and integration clients only. Fails on
/// the code before the fix, which told everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_the_last_seq_to_the_office_only() {
    let server = Server::start().await;
    server.create("a", Some("tech-1")).await;
    server.create("b", Some("tech-2")).await;
    let anonymous: Value = server
        .call(Method::GET, "/healthz", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(anonymous, serde_json::json!({"status": "ok"}));
    for (user, seq) in [
        ("tech-1", None),
        ("op", Some(server.base_seq + 2)),
        ("erp-read", Some(server.base_seq + 2)),
        ("erp-none", Some(server.base_seq + 2)),
    ] {
        let token = server.token(user).await;
        let (status, health) = server.get_json("/healthz", &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(health["status"], "ok", "{user}");
        assert_eq!(health["last_seq"].as_u64(), seq, "{user}: {health}");
    }
    // A bad token is no reason to fail a health check: the anonymous answer.
    let response = server
        .call(Method::GET, "/healthz", Some("not-a-token"), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health, serde_json::json!({"status": "ok"}));
    server.stop().await;
}

/// Hardening finding 7: `/metrics` (store size, last seq, sessions) is
/// served to `[gateway] metrics_networks` (loopback, 127.0.0.1/32 and
/// ::1/128, by default) and to operators' tokens from anywhere else.
/// Fails on the code before the fix, which served it to anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_the_configured_networks_and_operators() {
    let server = Server::start().await;
    server.create("a", None).await;
    // From 127.0.0.1, in the default networks: no token needed.
    assert!(metrics_text(&server)
        .await
        .contains("fieldsync_documents 1"));
    // From 127.0.0.2, outside them: an operator's token, nothing less.
    let outside = client_from([127, 0, 0, 2]);
    let scrape = |token: Option<String>| {
        let mut request = outside.get(format!("{}/metrics", server.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    let response = scrape(None).await;
    assert!(response.headers().contains_key("www-authenticate"));
    problem(response, StatusCode::UNAUTHORIZED).await;
    for user in ["tech-1", "erp-all"] {
        let response = scrape(Some(server.token(user).await)).await;
        problem(response, StatusCode::FORBIDDEN).await;
    }
    let response = scrape(Some(server.token("op").await)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("fieldsync_documents 1"));
    server.stop().await;
}

/// `[gateway] metrics_networks`: a configured list replaces the default;
/// an empty one leaves operators' tokens only (new with the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_metrics_networks_replace_the_default() {
    let outside = client_from([127, 0, 0, 2]);
    for (networks, from_1, from_2) in [
        (vec!["127.0.0.2/32".to_string()], 401, 200),
        (Vec::new(), 401, 401),
        (vec!["127.0.0.0/8".to_string()], 200, 200),
    ] {
        let config = GatewayConfig {
            metrics_networks: networks.clone(),
            ..GatewayConfig::default()
        };
        let server = Server::start_with(config, None).await;
        for (client, want) in [(&server.client, from_1), (&outside, from_2)] {
            let response = client
                .get(format!("{}/metrics", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), want, "{networks:?}");
        }
        let op = server.token("op").await;
        let response = outside
            .get(format!("{}/metrics", server.url))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{networks:?}");
        server.stop().await;
    }
}

/// `/metrics` as text (it needs no token from 127.0.0.1).
async fn metrics_text(server: &Server) -> String {
    server
        .call(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_documents() {
    let server = Server::start().await;
    server.create("a", None).await;
    server.create("b", None).await;
    let op = server.token("op").await;
    let (status, _) = server.get_json("/api/v1/changes", &op).await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics_text(&server).await;
    for needle in [
        "fieldsync_http_requests_total{method=\"GET\",route=\"/api/v1/changes\",status=\"200\"}",
        "fieldsync_http_request_duration_seconds_bucket",
        "fieldsync_feed_lag_seqs",
        "fieldsync_tokens_issued_total",
        "fieldsync_store_last_seq",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    // Metrics are process-wide (several test servers share them), but the
    // document gauge is set from this server's store on each scrape.
    let documents = text
        .lines()
        .find(|line| line.starts_with("fieldsync_documents "))
        .expect("documents gauge");
    assert_eq!(documents, "fieldsync_documents 2");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_show_what_the_directory_holds() {
    let table = Arc::new(PeerTable::default());
    let server = Server::start_with(GatewayConfig::default(), Some(table.clone())).await;
    let op = server.token("op").await;
    let (status, peers) = server.get_json("/api/v1/peers", &op).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(peers, serde_json::json!([]));
    let peer = |id: &str, connected| PeerInfo {
        node_id: id.into(),
        user: Some("tech-1".into()),
        address: Some("127.0.0.1:4433".into()),
        connected,
        last_seen: Some("2026-01-01T00:00:00Z".into()),
        last_sync: None,
        docs_pending: Some(3),
    };
    table.upsert(peer("bb", true));
    table.upsert(peer("aa", false));
    table.upsert(peer("bb", false));
    let (_, peers) = server.get_json("/api/v1/peers", &op).await;
    let ids: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .map(|peer| peer["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["aa", "bb"]);
    assert_eq!(peers[1]["connected"], false);
    assert_eq!(peers[1]["docs_pending"], 3);
    // The metrics count open sessions and pending documents from the same
    // directory.
    table.upsert(peer("cc", true));
    let text = metrics_text(&server).await;
    let gauge = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .map(str::to_string)
    };
    assert_eq!(gauge("fieldsync_peers").as_deref(), Some("3"));
    assert_eq!(gauge("fieldsync_sync_sessions").as_deref(), Some("1"));
    assert_eq!(gauge("fieldsync_sync_docs_pending").as_deref(), Some("9"));
    table.remove("cc");
    table.remove("aa");
    let (_, peers) = server.get_json("/api/v1/peers", &op).await;
    assert_eq!(peers.as_array().unwrap().len(), 1);
    server.stop().await;
}
