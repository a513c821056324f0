//! Webhooks end to end: a real gateway with its dispatcher, real HTTP
//! receivers on loopback, signatures checked by independent code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use fieldsync_gateway::delivery::StaticLookup;
use fieldsync_node::store::{Expect, RecordWrite, WriteSet};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::receiver::{changes_of, distinct_changes, Received, Receiver};
use crate::support::{problem, Server};

/// A clock the test moves by hand (ms since the epoch).
struct ManualClock(AtomicU64);

impl ManualClock {
    fn start() -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(fieldsync_node::clock::now_ms())))
    }
    fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn clock_of(manual: &Arc<ManualClock>) -> fieldsync_gateway::state::Clock {
    let manual = manual.clone();
    Arc::new(move || manual.now_ms())
}

async fn register(server: &Server, token: &str, body: Value) -> Value {
    let response = server
        .call(Method::POST, "/api/v1/webhooks", Some(token), Some(&body))
        .await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Wait (at most 20 s) until the hook's state satisfies `done`.
async fn wait_state(
    server: &Server,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..1000 {
        let state = hook_state(server, token, id).await;
        if done(&state) {
            return state;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("hook {id}: gave up waiting for {what}");
}

async fn hook_state(server: &Server, token: &str, id: &str) -> Value {
    let (status, body) = server
        .get_json(&format!("/api/v1/webhooks/{id}"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Write `n` records of `collection` in one durable write set.
async fn write_records(server: &Server, collection: &str, from: usize, n: usize) {
    let store = server.store.clone();
    let collection = collection.to_string();
    tokio::task::spawn_blocking(move || {
        let records = (from..from + n)
            .map(|i| RecordWrite {
                collection: collection.clone(),
                key: format!("k{i:05}"),
                value: Some(format!("{{\"n\":{i},\"status\":\"s{}\"}}", i % 2).into_bytes()),
                expect: Expect::Any,
                replicated_version: None,
            })
            .collect();
        store
            .submit(WriteSet {
                records,
                ..WriteSet::default()
            })
            .unwrap()
            .wait()
            .unwrap();
    })
    .await
    .unwrap();
}

/// Verify a Standard Webhooks signature by hand (HMAC-SHA256 with `ring`),
/// independently of the crate that signed it.
fn signed_by(received: &Received, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let message = format!(
        "{}.{}.{}",
        received.header("webhook-id"),
        received.header("webhook-timestamp"),
        std::str::from_utf8(&received.body).unwrap()
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        message.as_bytes(),
    );
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    received
        .header("webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
}

#[tokio::test]
async fn a_delivery_is_signed_and_both_verifiers_accept_it() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    let created = register(
        &server,
        &token,
        json!({"url": receiver.url, "sec_key": "shared-key"}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    // The URL test came first, signed.
    let test = &receiver.received()[0];
    assert!(test.is_test());
    assert!(signed_by(test, &secret));

    server.create("wo-1", Some("tech-1")).await;
    let received = receiver
        .wait_for("a notification", |r| r.iter().any(|r| !r.is_test()))
        .await;
    let delivery = received.iter().find(|r| !r.is_test()).unwrap();
    assert!(signed_by(delivery, &secret), "hand-computed HMAC");
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, delivery.header(name).parse().unwrap());
    }
    verifier
        .verify(&delivery.body, &headers)
        .expect("standardwebhooks verifies");
    assert_eq!(delivery.header("seckey"), "shared-key");
    assert_eq!(delivery.header("content-type"), "application/json");
    let body = delivery.json();
    assert_eq!(body["count"], 1);
    assert_eq!(body["changes"][0]["id"], "wo-1");
    assert_eq!(body["changes"][0]["number"], "WO-wo-1");
    assert_eq!(body["changes"][0]["op"], "create");
    assert!(
        body["changes"][0].get("data").is_none(),
        "ids only by default"
    );
    let state = hook_state(&server, &token, created["id"].as_str().unwrap()).await;
    assert_eq!(state["cursor"], body["last_seq"]);
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_changes_arrive_at_most_200_per_notification_in_order() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    register(
        &server,
        &token,
        json!({"url": receiver.url, "skip_url_test": true}),
    )
    .await;
    write_records(&server, "parts", 0, 1000).await;
    let received = receiver
        .wait_for("1000 changes", |r| distinct_changes(r).len() >= 1000)
        .await;
    let notifications: Vec<_> = received.iter().filter(|r| !r.is_test()).collect();
    assert!(notifications.len() >= 5, "{}", notifications.len());
    assert!(notifications.iter().all(|n| changes_of(n).len() <= 200));
    let changes = distinct_changes(&received);
    assert_eq!(changes.len(), 1000);
    assert!(changes.windows(2).all(|w| w[0].0 < w[1].0), "in seq order");
    server.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_is_penalised_then_gets_everything_in_order() {
    let clock = ManualClock::start();
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(Some(clock_of(&clock)), None).await;
    let token = server.token("op").await;
    let hook = register(
        &server,
        &token,
        json!({"url": receiver.url, "skip_url_test": true}),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    receiver.script([
        (500, vec![]),
        (500, vec![]),
        (503, vec![("retry-after", "120".into())]),
    ]);
    write_records(&server, "parts", 0, 3).await;
    let mut penalties = Vec::new();
    for failures in 1..=3u64 {
        receiver
            .wait_for("an attempt", |r| r.len() as u64 >= failures)
            .await;
        let state = wait_state(&server, &token, id, "a failure", |s| {
            s["consecutive_failures"] == failures
        })
        .await;
        penalties.push(state["penalty_ms"].as_u64().unwrap());
        assert_eq!(
            state["cursor"].as_u64().unwrap(),
            hook["cursor"].as_u64().unwrap(),
            "not moved"
        );
        // Nothing is sent before the penalty is over.
        write_records(&server, "parts", 10 + failures as usize, 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(receiver.received().len() as u64, failures);
        let wait_ms = if failures == 3 {
            120_000
        } else {
            penalties[failures as usize - 1]
        };
        clock.advance_ms(wait_ms);
    }
    assert_eq!(penalties, vec![10_000, 20_000, 40_000], "growing");
    // The same notification every time: same id, same body.
    let attempts = receiver.received();
    assert!(attempts
        .windows(2)
        .all(|w| w[0].header("webhook-id") == w[1].header("webhook-id") && w[0].body == w[1].body));
    let received = receiver
        .wait_for("everything", |r| distinct_changes(r).len() >= 6)
        .await;
    let changes = distinct_changes(&received);
    assert_eq!(changes.len(), 6, "nothing lost, nothing twice");
    assert!(changes.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    // Two notifications got their 2xx (the frozen one, then the changes
    // written meanwhile): the penalty halved twice, 40 s → 20 s → 10 s.
    let state = wait_state(&server, &token, id, "two successes", |s| {
        s["pending_changes"] == 0 && s["attempts"] == 5
    })
    .await;
    assert_eq!(state["consecutive_failures"], 0);
    assert_eq!(state["penalty_ms"], 10_000, "decays by half per success");
    let (_, attempts) = server
        .get_json(&format!("/api/v1/webhooks/{id}/deliveries"), &token)
        .await;
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["success"], false);
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    assert_eq!(attempts[3]["success"], true);
    server.stop().await;
}

#[tokio::test]
async fn gone_disables_retry_enables_and_redelivery_resends_the_same_notification() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    let hook = register(
        &server,
        &token,
        json!({"url": receiver.url, "skip_url_test": true}),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    let operator_receiver = Receiver::start().await;
    register(
        &server,
        &token,
        json!({"url": operator_receiver.url, "skip_url_test": true, "collections": ["nothing"]}),
    )
    .await;
    receiver.script([(410, vec![])]);
    write_records(&server, "parts", 0, 2).await;
    receiver.wait_for("one attempt", |r| !r.is_empty()).await;
    let state = wait_state(&server, &token, id, "disabled", |s| {
        !s["disabled"].is_null()
    })
    .await;
    assert_eq!(state["disabled"], "gone");
    // An operator's other hook is told, with an alert of its own.
    let got = operator_receiver
        .wait_for("an alert", |r| {
            r.iter().any(|r| r.json()["type"] == "alert")
        })
        .await;
    let alert = got
        .iter()
        .find(|r| r.json()["type"] == "alert")
        .unwrap()
        .json();
    assert_eq!(alert["alert"]["kind"], "webhook_disabled");
    assert_eq!(alert["alert"]["hook_id"], id);
    assert_eq!(alert["alert"]["reason"], "gone");
    write_records(&server, "parts", 5, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a disabled hook is not called"
    );

    let response = server
        .call(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/retry"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let retried: Value = response.json().await.unwrap();
    assert!(retried["disabled"].is_null());
    assert_eq!(retried["penalty_ms"], 0);
    let received = receiver
        .wait_for("all three", |r| distinct_changes(r).len() >= 3)
        .await;
    assert_eq!(distinct_changes(&received).len(), 3);

    // Redeliver the successful attempt 2: same id and body, fresh signature.
    let first_delivered = received[1].clone();
    let response = server
        .call(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/deliveries/2/redeliver"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let row: Value = response.json().await.unwrap();
    assert_eq!(row["kind"], "redelivery");
    assert_eq!(row["success"], true);
    let again = receiver.received().last().unwrap().clone();
    assert_eq!(
        again.header("webhook-id"),
        first_delivered.header("webhook-id")
    );
    assert_eq!(again.body, first_delivered.body);
    let missing = server
        .call(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/deliveries/99/redeliver"),
            Some(&token),
            None,
        )
        .await;
    problem(missing, StatusCode::NOT_FOUND).await;
    server.stop().await;
}

#[tokio::test]
async fn during_a_rotation_old_and_new_secrets_both_verify() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    let hook = register(
        &server,
        &token,
        json!({"url": receiver.url, "skip_url_test": true}),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    let old = hook["secret"].as_str().unwrap().to_string();
    let response = server
        .call(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated: Value = response.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    write_records(&server, "parts", 0, 1).await;
    let received = receiver.wait_for("a delivery", |r| !r.is_empty()).await;
    assert_eq!(
        received[0].header("webhook-signature").split(' ').count(),
        2
    );
    assert!(signed_by(&received[0], &old));
    assert!(signed_by(&received[0], &new));
    assert_eq!(hook_state(&server, &token, id).await["signing_secrets"], 2);
    server.stop().await;
}

#[tokio::test]
async fn filters_by_collection_data_and_state_change() {
    let by_collection = Receiver::start().await;
    let by_data = Receiver::start().await;
    let by_state = Receiver::start().await;
    let with_data = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    register(
        &server,
        &token,
        json!({"url": by_collection.url, "skip_url_test": true, "collections": ["parts"]}),
    )
    .await;
    register(&server, &token, json!({"url": by_data.url, "skip_url_test": true, "data_filter": {"field": "status", "value": "s1"}})).await;
    register(
        &server,
        &token,
        json!({"url": by_state.url, "skip_url_test": true, "state_changes_only": true}),
    )
    .await;
    register(&server, &token, json!({"url": with_data.url, "skip_url_test": true, "include_data": true, "collections": ["work_orders"], "format": "xml"})).await;
    server.create("wo-1", Some("tech-1")).await;
    // Its first status is notified before it changes again (within one
    // feed page a document appears once, at its latest change).
    by_state
        .wait_for("the first status", |r| !r.is_empty())
        .await;
    write_records(&server, "parts", 0, 4).await;
    write_records(&server, "tools", 0, 2).await;
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/wo-1/notes",
            Some(&token),
            Some(&json!({"text": "hello"})),
        )
        .await;
    assert!(response.status().is_success());
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/wo-1/status",
            Some(&token),
            Some(&json!({"to": "in_progress"})),
        )
        .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let marker = 900;
    write_records(&server, "parts", marker, 1).await;

    let got = by_collection
        .wait_for("parts", |r| {
            distinct_changes(r)
                .iter()
                .any(|c| c.2 == format!("k{marker:05}"))
        })
        .await;
    assert!(distinct_changes(&got).iter().all(|c| c.1 == "parts"));
    assert_eq!(distinct_changes(&got).len(), 5);

    let got = by_data
        .wait_for("s1 records", |r| distinct_changes(r).len() >= 3)
        .await;
    let keys: Vec<String> = distinct_changes(&got).into_iter().map(|c| c.2).collect();
    assert_eq!(
        keys,
        vec!["k00001", "k00003", "k00001"],
        "odd parts, then odd tools"
    );

    let got = by_state
        .wait_for("two statuses", |r| distinct_changes(r).len() >= 2)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let changes = distinct_changes(&by_state.received());
    assert_eq!(
        changes.len(),
        2,
        "creation (assigned) and in_progress, not the note: {got:?}"
    );
    assert!(changes.iter().all(|c| c.2 == "wo-1"));

    let got = with_data.wait_for("xml with data", |r| !r.is_empty()).await;
    let text = std::str::from_utf8(&got[0].body).unwrap();
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(text.contains("<data>"), "{text}");
    assert_eq!(got[0].header("content-type"), "application/xml");
    server.stop().await;
}

#[tokio::test]
async fn a_technicians_hook_never_carries_another_technicians_work_order() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("tech-1").await;
    let mine = register(
        &server,
        &token,
        json!({"url": receiver.url, "skip_url_test": true}),
    )
    .await;
    assert!(
        mine["cursor"].is_null(),
        "the global seq is not a technician's to see"
    );
    server.create("mine", Some("tech-1")).await;
    server.create("theirs", Some("tech-2")).await;
    server.create("nobodys", None).await;
    write_records(&server, "secret_prices", 0, 3).await;
    server.create("mine-too", Some("tech-1")).await;
    let received = receiver
        .wait_for("both of mine", |r| {
            distinct_changes(r).iter().any(|c| c.2 == "mine-too")
        })
        .await;
    let ids: Vec<String> = distinct_changes(&received)
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(ids, vec!["mine", "mine-too"]);
    for r in &received {
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(
            !text.contains("theirs")
                && !text.contains("nobodys")
                && !text.contains("secret_prices")
        );
    }
    // Another user's hook is answered as absent.
    let op = server.token("op").await;
    let other = register(
        &server,
        &op,
        json!({"url": receiver.url, "skip_url_test": true}),
    )
    .await;
    let response = server
        .call(
            Method::GET,
            &format!("/api/v1/webhooks/{}", other["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    problem(response, StatusCode::NOT_FOUND).await;
    let (_, list) = server.get_json("/api/v1/webhooks", &token).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // An integration client without `webhooks:manage` may not register.
    let erp = server.token("erp-read").await;
    let response = server
        .call(
            Method::POST,
            "/api/v1/webhooks",
            Some(&erp),
            Some(&json!({"url": receiver.url})),
        )
        .await;
    problem(response, StatusCode::FORBIDDEN).await;
    server.stop().await;
}

#[tokio::test]
async fn private_and_tricky_destinations_are_refused_with_a_clear_error() {
    let lookup = StaticLookup::default();
    lookup.set("hooks.example", vec!["127.0.0.1".parse().unwrap()]);
    // No allow-list here: loopback is refused like any private address.
    let server = Server::start_full(crate::support::Options {
        lookup: Some(lookup.clone()),
        delivery: true,
        ..crate::support::Options::default()
    })
    .await;
    let token = server.token("op").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://100.64.0.1/hook",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
        "http://hooks.example:9/hook",
        "ftp://example.com/hook",
        "http://user:pass@example.com/hook",
    ] {
        let response = server
            .call(
                Method::POST,
                "/api/v1/webhooks",
                Some(&token),
                Some(&json!({"url": url, "skip_url_test": true})),
            )
            .await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            !body["detail"].as_str().unwrap().is_empty(),
            "{url}: {body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_a_name_that_turns_private_fails_delivery() {
    let receiver = Receiver::start().await;
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let lookup = StaticLookup::default();
    lookup.set("hooks.example", vec!["127.0.0.1".parse().unwrap()]);
    let server = Server::start_delivering(None, Some(lookup.clone())).await;
    let token = server.token("op").await;

    // The URL test follows no redirect: a 302 (to loopback) fails it.
    receiver.script([(302, vec![("location", "http://127.0.0.1:1/".into())])]);
    let response = server
        .call(
            Method::POST,
            "/api/v1/webhooks",
            Some(&token),
            Some(&json!({"url": receiver.url})),
        )
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(body["detail"].as_str().unwrap().contains("302"), "{body}");
    assert_eq!(receiver.received().len(), 1);

    // Allowed (127.0.0.0/8 is on this server's allow-list) at registration...
    let url = format!("http://hooks.example:{port}/hook");
    let hook = register(&server, &token, json!({"url": url})).await;
    let id = hook["id"].as_str().unwrap();
    // ...then the name moves to a private address outside the allow-list.
    lookup.set("hooks.example", vec!["10.1.2.3".parse().unwrap()]);
    write_records(&server, "parts", 0, 1).await;
    let state = wait_state(&server, &token, id, "a failed delivery", |s| {
        s["consecutive_failures"].as_u64() == Some(1)
    })
    .await;
    let error = state["last_error"].as_str().unwrap();
    assert!(
        error.contains("10.1.2.3") || error.contains("private"),
        "{error}"
    );
    assert_eq!(
        receiver.received().len(),
        2,
        "test call only; nothing delivered since"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_registrations_get_a_clear_problem_and_store_nothing() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    let url = receiver.url.clone();
    let cases: Vec<(Value, StatusCode)> = vec![
        (
            json!({"url": url, "format": "yaml"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "secret": "not-whsec"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "secret": "whsec_QUJD"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "sec_key": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "sec_key": "line\nbreak"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "last_seq": 1_000_000}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "collections": ["Bad Name"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "data_filter": {"field": "", "value": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": format!("{url}?{}", "x".repeat(3000))}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": "not a url"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": url, "surprise": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"format": "json"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!("just a string"), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, status) in cases {
        let response = server
            .call(Method::POST, "/api/v1/webhooks", Some(&token), Some(&body))
            .await;
        let got = response.status();
        assert!(
            got == status || got == StatusCode::BAD_REQUEST,
            "{body}: {got}"
        );
        problem(response, got).await;
    }
    let malformed = server
        .client
        .post(format!("{}/api/v1/webhooks", server.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"url\":")
        .send()
        .await
        .unwrap();
    problem(malformed, StatusCode::BAD_REQUEST).await;
    let (_, list) = server.get_json("/api/v1/webhooks", &token).await;
    assert_eq!(list, json!([]), "nothing was stored");
    assert!(receiver.received().is_empty(), "no URL was called");
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_owners_hook_pauses_and_says_why() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let erp = server.token("erp-all").await;
    let op = server.token("op").await;
    let hook = register(
        &server,
        &erp,
        json!({"url": receiver.url, "skip_url_test": true}),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    let response = server
        .call(
            Method::POST,
            "/api/v1/users/erp-all/revoke",
            Some(&op),
            None,
        )
        .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    write_records(&server, "parts", 0, 3).await;
    let state = wait_state(&server, &op, id, "paused", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("revoked"))
    })
    .await;
    assert_eq!(state["cursor"], hook["cursor"], "nothing delivered");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn rotations_keep_two_secrets_at_most() {
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    let hook = register(
        &server,
        &token,
        json!({"url": "http://127.0.0.1:9/hook", "skip_url_test": true}),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    for _ in 0..5 {
        let response = server
            .call(
                Method::POST,
                &format!("/api/v1/webhooks/{id}/rotate-secret"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(hook_state(&server, &token, id).await["signing_secrets"], 2);
    server.stop().await;
}

#[tokio::test]
async fn a_notification_whose_stored_form_is_too_big_goes_without_its_data() {
    let receiver = Receiver::start().await;
    let server = Server::start_delivering(None, None).await;
    let token = server.token("op").await;
    register(
        &server,
        &token,
        json!({"url": receiver.url, "skip_url_test": true, "include_data": true}),
    )
    .await;
    // 40 KB of quotes: under the 48 KiB body budget as JSON, but twice
    // that once the body is escaped into its stored record.
    let quotes = "\"".repeat(20_000);
    let value = json!({ "q": quotes });
    let response = server
        .call(
            Method::PUT,
            "/api/v1/collections/notes/records/quoted",
            Some(&token),
            Some(&value),
        )
        .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    write_records(&server, "notes", 0, 1).await;
    let received = receiver
        .wait_for("both changes", |r| distinct_changes(r).len() >= 2)
        .await;
    let first = received[0].json();
    assert_eq!(first["changes"][0]["id"], "quoted");
    assert_eq!(first["changes"][0]["data_omitted"], true);
    server.stop().await;
}
