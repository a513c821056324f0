//! An external event opens a work order that reaches the assigned
//! technician's laptop, with real processes on loopback: a central running
//! `fieldsync run` with its gateway, a call-centre integration client with
//! `events:write` only, and a laptop enrolled for tech-1 over QUIC.
//!
//! Why beside the gateway's own event tests: those run a router over a
//! store in one process; only here does a work order created by an event
//! travel to a laptop, through the binary people run. A resend of the
//! event while the laptop is connected must change nothing anywhere.

mod sync_support;

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};
use sync_support::*;

/// POST the event; its status and JSON answer.
fn post_event(http: &Client, url: &str, token: &str, event: &Value) -> (u16, Value) {
    let response = http
        .post(format!("{url}/api/v1/events"))
        .bearer_auth(token)
        .json(event)
        .send()
        .expect("the events endpoint answers");
    let status = response.status().as_u16();
    (status, response.json().expect("a JSON answer"))
}

fn last_seq(http: &Client, url: &str, token: &str) -> u64 {
    let health: Value = http
        .get(format!("{url}/healthz"))
        .bearer_auth(token)
        .send()
        .and_then(|response| response.json())
        .expect("/healthz answers");
    health["last_seq"]
        .as_u64()
        .expect("last_seq for the office")
}

#[test]
fn a_work_order_event_reaches_the_assigned_technicians_laptop_over_quic() {
    let (mut central, codes) = central_with(&["tech-1"]);
    let port = free_tcp_port();
    central.enable_gateway(port);
    let url = format!("http://127.0.0.1:{port}");
    let added = central
        .run(&[
            "user",
            "add",
            "callcentre",
            "--role",
            "integration",
            "--scope",
            "events:write",
        ])
        .success();
    let secret = printed(&added, "client secret:");
    central.start();
    // Waits for the gateway to answer, and installs the crypto provider.
    let callcentre = gateway_token(&url, "callcentre", &secret);
    let http = Client::builder()
        .timeout(Duration::from_millis(WAIT_MS_MAX))
        .build()
        .expect("an HTTP client");
    let mut laptop = enrolled_laptop("laptop-1", &central, &codes[0]);
    let laptop_id = laptop.node_id();
    laptop.start();

    // The call centre opens a work order for tech-1 with one event.
    let event = json!({
        "header": {"type": "WORK_ORDER", "generatedOn": "2026-05-01T12:00:01.000Z", "locale": "pt_BR"},
        "content": {
            "originApp": "callcentre", "appVersion": "4.2.0", "schemaName": "WORK_ORDER",
            "schemaVersion": "1", "action": "INSERT", "createdAt": "2026-05-01T12:00:00.123Z",
            "token": "site-7",
            "data": {
                "id": "wo-call-1", "number": "CC-2026-0001",
                "title": "No cooling in the server room",
                "customer": {"name": "Ana Souza", "address": "Rua Augusta, 1109"},
                "priority": "urgent", "assignee": "tech-1"
            }
        }
    });
    let (status, answer) = post_event(&http, &url, &callcentre, &event);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["id"], "wo-call-1");
    let seq = last_seq(&http, &url, &callcentre);
    wait_until("the laptop to acknowledge the event's work order", || {
        central
            .peer(&laptop_id)
            .is_some_and(|peer| peer["peer_acked_seq"].as_u64() >= Some(seq))
    });

    // A resend while the laptop is connected changes nothing.
    let (status, again) = post_event(&http, &url, &callcentre, &event);
    assert_eq!((status, &again), (201, &answer));
    assert_eq!(last_seq(&http, &url, &callcentre), seq);

    laptop.stop();
    let on_laptop = laptop.show("wo-call-1").expect("wo-call-1 on the laptop");
    assert_eq!(on_laptop["assignee"], "tech-1");
    assert_eq!(on_laptop["number"], "CC-2026-0001");
    assert_eq!(on_laptop["priority"], "urgent");
    assert_eq!(on_laptop["status"], "assigned");
    assert_eq!(on_laptop["created_by"], "callcentre");
    assert_eq!(on_laptop["heads"], answer["heads"]);
    central.stop();
    laptop.verify_clean();
}
