//! Asynchronous commands end to end: publish, fetch, fail, retry on the
//! formula's schedule (time moved by hand, never slept), succeed or die.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fieldsync_gateway::GatewayConfig;
use fieldsync_node::config::RetryRuleConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{problem, Options, Server};

const MINUTE_MS: u64 = 60_000;

struct Clock(AtomicU64);

async fn server(clock: &Arc<Clock>) -> Server {
    let mut config = GatewayConfig::default();
    // minutes = interval × factor × max_attempts × current_attempt
    config.delivery.command_rules.insert(
        "anonymise".into(),
        RetryRuleConfig {
            interval_ms: MINUTE_MS,
            factor: 2,
            attempts_max: 3,
        },
    );
    let reader = clock.clone();
    Server::start_full(Options {
        config,
        clock: Some(Arc::new(move || reader.0.load(Ordering::SeqCst))),
        ..Options::default()
    })
    .await
}

async fn json_of(response: reqwest::Response, status: StatusCode) -> Value {
    let got = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn publish(server: &Server, token: &str, key: &str) -> reqwest::Response {
    server
        .client
        .post(format!("{}/api/v1/commands", server.url))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"name": "anonymise", "subscriber": "erp-all", "payload": {"person": 42}}))
        .send()
        .await
        .unwrap()
}

async fn report(
    server: &Server,
    token: &str,
    id: &str,
    success: bool,
    logs: Value,
) -> reqwest::Response {
    server
        .call(
            Method::POST,
            &format!("/api/v1/commands/{id}/result"),
            Some(token),
            Some(&json!({"success": success, "logs": logs})),
        )
        .await
}

async fn listed(server: &Server, token: &str, state: &str) -> Vec<String> {
    let (status, body) = server
        .get_json(&format!("/api/v1/commands?state={state}"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_command_fails_twice_on_the_formulas_schedule_then_succeeds() {
    let clock = Arc::new(Clock(AtomicU64::new(1_800_000_000_000)));
    let server = server(&clock).await;
    let op = server.token("op").await;
    let erp = server.token("erp-all").await;

    let first = json_of(publish(&server, &op, "k-1").await, StatusCode::CREATED).await;
    let again = json_of(publish(&server, &op, "k-1").await, StatusCode::OK).await;
    assert_eq!(first["id"], again["id"], "idempotent by Idempotency-Key");
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["state"], "pending");
    assert_eq!(first["attempts_max"], 3);

    // The subscriber sees it, and what it subscribes to.
    assert_eq!(listed(&server, &erp, "pending").await, vec![id.clone()]);
    let (_, subscriptions) = server
        .get_json("/api/v1/commands/subscriptions", &erp)
        .await;
    assert_eq!(subscriptions, json!({"anonymise": 1}));

    // Fail 1: next attempt after 1 × 2 × 3 × 1 = 6 minutes.
    let t0 = clock.0.load(Ordering::SeqCst);
    let failed = json_of(
        report(
            &server,
            &erp,
            &id,
            false,
            json!([{"type": 2, "text": "database locked", "debug": {"code": 5}}]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(failed["state"], "pending");
    assert_eq!(failed["attempts"], 1);
    assert_eq!(
        failed["available_at"],
        fieldsync_node::clock::rfc3339_ms(t0 + 6 * MINUTE_MS)
    );
    assert!(
        listed(&server, &erp, "pending").await.is_empty(),
        "not due yet"
    );
    assert_eq!(listed(&server, &erp, "waiting").await, vec![id.clone()]);
    let early = report(&server, &erp, &id, true, json!([])).await;
    problem(early, StatusCode::CONFLICT).await;

    // Fail 2, six minutes later: next after 1 × 2 × 3 × 2 = 12 minutes.
    clock.0.fetch_add(6 * MINUTE_MS, Ordering::SeqCst);
    assert_eq!(listed(&server, &erp, "pending").await, vec![id.clone()]);
    let t1 = clock.0.load(Ordering::SeqCst);
    let failed = json_of(
        report(
            &server,
            &erp,
            &id,
            false,
            json!([{"type": 1, "text": "retrying"}]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        failed["available_at"],
        fieldsync_node::clock::rfc3339_ms(t1 + 12 * MINUTE_MS)
    );

    // Success on the third execution: done, out of the pending table.
    clock.0.fetch_add(12 * MINUTE_MS, Ordering::SeqCst);
    let done = json_of(
        report(
            &server,
            &erp,
            &id,
            true,
            json!([{"type": 0, "text": "anonymised"}]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["attempts"], 3);
    assert!(listed(&server, &erp, "pending").await.is_empty());
    assert!(listed(&server, &erp, "waiting").await.is_empty());
    assert_eq!(listed(&server, &op, "done").await, vec![id.clone()]);
    let again = report(&server, &erp, &id, true, json!([])).await;
    problem(again, StatusCode::CONFLICT).await;

    // History: three executions and their typed log rows.
    let (status, detail) = server
        .get_json(&format!("/api/v1/commands/{id}"), &op)
        .await;
    assert_eq!(status, StatusCode::OK);
    let executions = detail["executions"].as_array().unwrap();
    let outcomes: Vec<bool> = executions
        .iter()
        .map(|e| e["success"].as_bool().unwrap())
        .collect();
    assert_eq!(outcomes, vec![false, false, true]);
    assert_eq!(executions[0]["error"], "database locked");
    let logs = detail["logs"].as_array().unwrap();
    let kinds: Vec<u64> = logs.iter().map(|l| l["type"].as_u64().unwrap()).collect();
    assert_eq!(kinds, vec![2, 1, 0]);
    assert_eq!(logs[0]["debug"], json!({"code": 5}));
    assert_eq!(logs[0]["attempt"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_command_is_dead_after_max_attempts() {
    let clock = Arc::new(Clock(AtomicU64::new(1_800_000_000_000)));
    let server = server(&clock).await;
    let op = server.token("op").await;
    let erp = server.token("erp-all").await;
    let id = json_of(publish(&server, &op, "k-dead").await, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for attempt in 1..=3u64 {
        let state = json_of(
            report(&server, &erp, &id, false, json!([])).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(state["attempts"], attempt);
        clock.0.fetch_add(attempt * 6 * MINUTE_MS, Ordering::SeqCst);
    }
    assert_eq!(listed(&server, &op, "dead").await, vec![id.clone()]);
    assert!(listed(&server, &erp, "pending").await.is_empty());
    let (_, detail) = server
        .get_json(&format!("/api/v1/commands/{id}"), &erp)
        .await;
    assert_eq!(detail["state"], "dead");
    server.stop().await;
}

#[tokio::test]
async fn commands_check_who_asks_and_what_they_send() {
    let clock = Arc::new(Clock(AtomicU64::new(1_800_000_000_000)));
    let server = server(&clock).await;
    let op = server.token("op").await;
    let tech = server.token("tech-1").await;
    let none = server.token("erp-none").await;
    let id = json_of(publish(&server, &op, "k-x").await, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    problem(publish(&server, &tech, "k-y").await, StatusCode::FORBIDDEN).await;
    problem(publish(&server, &none, "k-y").await, StatusCode::FORBIDDEN).await;
    let response = server
        .call(Method::GET, "/api/v1/commands", Some(&none), None)
        .await;
    problem(response, StatusCode::FORBIDDEN).await;
    // Another client may not report on erp-all's command: answered as absent.
    let erp_read = server.token("erp-read").await;
    problem(
        report(&server, &erp_read, &id, true, json!([])).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let erp = server.token("erp-all").await;
    let bad = report(&server, &erp, &id, false, json!([{"type": 3, "text": "?"}])).await;
    problem(bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = server
        .call(
            Method::POST,
            "/api/v1/commands",
            Some(&op),
            Some(&json!({"name": "has space", "subscriber": "erp-all"})),
        )
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = server
        .call(Method::GET, "/api/v1/commands/cmd_nope", Some(&op), None)
        .await;
    problem(response, StatusCode::NOT_FOUND).await;
    // A bad type did not count as an execution.
    let (_, detail) = server
        .get_json(&format!("/api/v1/commands/{id}"), &op)
        .await;
    assert_eq!(detail["attempts"], 0);
    server.stop().await;
}
