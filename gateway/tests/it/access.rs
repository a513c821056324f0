//! The access matrix: every role against every endpoint, including a
//! technician probing work orders that are not theirs (404, never 403).

use base64::Engine;
use fieldsync_gateway::GatewayConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{problem, Server};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    Operator,
    /// tech-1 on a work order assigned to tech-1.
    TechOwn,
    /// tech-1 on a work order assigned to tech-2.
    TechOther,
    ErpAll,
    ErpNone,
    ErpRead,
}

impl Who {
    const ALL: [Who; 7] = [
        Who::Anonymous,
        Who::Operator,
        Who::TechOwn,
        Who::TechOther,
        Who::ErpAll,
        Who::ErpNone,
        Who::ErpRead,
    ];

    fn user(self) -> Option<&'static str> {
        match self {
            Who::Anonymous => None,
            Who::Operator => Some("op"),
            Who::TechOwn | Who::TechOther => Some("tech-1"),
            Who::ErpAll => Some("erp-all"),
            Who::ErpNone => Some("erp-none"),
            Who::ErpRead => Some("erp-read"),
        }
    }

    fn assignee(self) -> &'static str {
        if self == Who::TechOther {
            "tech-2"
        } else {
            "tech-1"
        }
    }
}

/// One per-document endpoint: method, path suffix, body, and the status
/// each caller must get.
struct Case {
    method: Method,
    suffix: &'static str,
    body: Option<Value>,
    /// Operator, own technician, integration with all scopes.
    office: u16,
    own: u16,
    all_scopes: u16,
}

fn document_cases() -> Vec<Case> {
    let case = |method: Method, suffix, body: Option<Value>, office, own, all_scopes| Case {
        method,
        suffix,
        body,
        office,
        own,
        all_scopes,
    };
    vec![
        case(Method::GET, "", None, 200, 200, 200),
        case(
            Method::PATCH,
            "",
            Some(json!({"title": "New"})),
            200,
            403,
            200,
        ),
        case(Method::DELETE, "", None, 200, 403, 200),
        case(
            Method::POST,
            "/notes",
            Some(json!({"text": "n"})),
            200,
            200,
            200,
        ),
        case(
            Method::POST,
            "/materials",
            Some(json!({"sku": "S", "qty": 1.5})),
            200,
            200,
            200,
        ),
        case(
            Method::POST,
            "/materials/{material}/state",
            Some(json!({"state": "approved"})),
            200,
            403,
            200,
        ),
        case(
            Method::POST,
            "/status",
            Some(json!({"to": "in_progress"})),
            200,
            200,
            200,
        ),
        case(
            Method::POST,
            "/closure",
            Some(json!({"resolution": "fixed", "signed_by": "Ann"})),
            200,
            200,
            200,
        ),
        case(
            Method::PUT,
            "/report",
            Some(json!({"text": "r"})),
            200,
            200,
            200,
        ),
        // The office may not log a technician's time (field rules).
        case(
            Method::POST,
            "/time",
            Some(json!({"start": "2026-01-01T08:00:00Z", "end": "2026-01-01T09:00:00Z"})),
            403,
            200,
            403,
        ),
    ]
}

fn expected(case: &Case, who: Who) -> u16 {
    match who {
        Who::Anonymous => 401,
        Who::Operator => case.office,
        Who::TechOwn => case.own,
        Who::TechOther => 404,
        Who::ErpAll => case.all_scopes,
        Who::ErpNone => 403,
        Who::ErpRead if case.method == Method::GET => 200,
        Who::ErpRead => 403,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_document_endpoint() {
    let server = Server::start().await;
    let mut tokens = std::collections::HashMap::new();
    for who in Who::ALL {
        if let Some(user) = who.user() {
            if !tokens.contains_key(user) {
                tokens.insert(user, server.token(user).await);
            }
        }
    }
    let mut n = 0;
    let mut checked = 0;
    for case in document_cases() {
        for who in Who::ALL {
            n += 1;
            let id = format!("m-{n}");
            server.create(&id, Some(who.assignee())).await;
            let path = format!(
                "/api/v1/work-orders/{id}{}",
                case.suffix.replace("{material}", &format!("{id}-m0"))
            );
            let token = who.user().map(|user| tokens[user].as_str());
            let response = server
                .call(case.method.clone(), &path, token, case.body.as_ref())
                .await;
            let want = expected(&case, who);
            let label = format!("{} {path} as {who:?}", case.method);
            if want == 200 {
                assert_eq!(response.status().as_u16(), want, "{label}");
                let body: Value = response.json().await.expect("json");
                assert_eq!(body["id"], id, "{label}");
            } else {
                let body = problem(response, StatusCode::from_u16(want).unwrap()).await;
                if who == Who::TechOther {
                    // Nothing in the answer tells the id exists.
                    assert_eq!(body["type"], "urn:fieldsync:problem:not-found", "{label}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, document_cases().len() * Who::ALL.len());
    // A technician probing an id that does not exist gets the same answer
    // as for one that exists but is someone else's.
    let tech = &tokens["tech-1"];
    let missing = server
        .call(Method::GET, "/api/v1/work-orders/no-such", Some(tech), None)
        .await;
    let other = server
        .call(Method::GET, "/api/v1/work-orders/m-4", Some(tech), None)
        .await;
    let missing = problem(missing, StatusCode::NOT_FOUND).await;
    let other = problem(other, StatusCode::NOT_FOUND).await;
    assert_eq!(missing["type"], other["type"]);
    assert_eq!(missing["title"], other["title"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_collection_and_operations_endpoints() {
    let server = Server::start().await;
    server.create("own", Some("tech-1")).await;
    server.create("other", Some("tech-2")).await;
    let create = json!({"title": "T", "customer": {"name": "C"}, "assignee": "tech-1"});
    // (method, path, body, [anonymous, operator, tech-1, erp-all, erp-none, erp-read])
    let cases: Vec<(Method, &str, Option<Value>, [u16; 6])> = vec![
        (
            Method::GET,
            "/api/v1/work-orders",
            None,
            [401, 200, 200, 200, 403, 200],
        ),
        (
            Method::POST,
            "/api/v1/work-orders",
            Some(create),
            [401, 201, 403, 201, 403, 403],
        ),
        // Authorization before body validation: an incomplete body is 422
        // only for a caller who may write (hardening finding 7).
        (
            Method::POST,
            "/api/v1/work-orders",
            Some(json!({"title": "T"})),
            [401, 422, 403, 422, 403, 403],
        ),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({})),
            [401, 422, 403, 403, 403, 403],
        ),
        (
            Method::GET,
            "/api/v1/changes",
            None,
            [401, 200, 200, 200, 403, 200],
        ),
        (
            Method::GET,
            "/api/v1/peers",
            None,
            [401, 200, 403, 403, 403, 403],
        ),
        (
            Method::GET,
            "/api/v1/users",
            None,
            [401, 200, 403, 403, 403, 403],
        ),
        (Method::GET, "/api/v1/registry", None, [200; 6]),
        (Method::GET, "/healthz", None, [200; 6]),
        (Method::GET, "/openapi.json", None, [200; 6]),
        (Method::GET, "/metrics", None, [200; 6]),
    ];
    let users = [
        None,
        Some("op"),
        Some("tech-1"),
        Some("erp-all"),
        Some("erp-none"),
        Some("erp-read"),
    ];
    let mut tokens = Vec::new();
    for user in users {
        tokens.push(match user {
            Some(user) => Some(server.token(user).await),
            None => None,
        });
    }
    for (method, path, body, want) in &cases {
        for (i, token) in tokens.iter().enumerate() {
            let response = server
                .call(method.clone(), path, token.as_deref(), body.as_ref())
                .await;
            let label = format!("{method} {path} as {:?}", users[i]);
            if want[i] >= 400 {
                problem(response, StatusCode::from_u16(want[i]).unwrap()).await;
            } else {
                assert_eq!(response.status().as_u16(), want[i], "{label}");
            }
        }
    }
    // The technician's list and feed hold only their own work orders.
    let tech = tokens[2].as_deref().unwrap();
    let (_, list) = server
        .get_json("/api/v1/work-orders?page_size=100", tech)
        .await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"own"), "{ids:?}");
    assert!(!ids.contains(&"other"), "{ids:?}");
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|item| item["assignee"] == "tech-1"));
    let (_, feed) = server.get_json("/api/v1/changes?limit=100", tech).await;
    let fed: Vec<&str> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_str().unwrap())
        .collect();
    assert!(fed.contains(&"own") && !fed.contains(&"other"), "{fed:?}");
    // The operator sees both.
    let op = tokens[1].as_deref().unwrap();
    let (_, all) = server.get_json("/api/v1/changes?limit=100", op).await;
    assert!(all["entries"].as_array().unwrap().len() >= 3);
    server.stop().await;
}

/// Hardening finding 7: when the list's scan budget runs out, `next_cursor`
/// must not name (nor merely encode) a work order the caller may not see.
/// Fails on the code before the fix, whose cursor was the last id scanned:
/// here another technician's work order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_cursor_names_no_work_order_the_caller_may_not_see() {
    let config = GatewayConfig {
        page_size_max: 2,
        page_size_default: 2,
        scan_entries_max: 3,
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    // In key order: one of tech-1's, six of tech-2's, one of tech-1's.
    server.create("a-mine-0001", Some("tech-1")).await;
    let theirs: Vec<String> = (1..=6).map(|i| format!("b-theirs-{i:04}")).collect();
    for id in &theirs {
        server.create(id, Some("tech-2")).await;
    }
    server.create("c-mine-0002", Some("tech-1")).await;
    let tech = server.token("tech-1").await;
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    let mut path = "/api/v1/work-orders".to_string();
    loop {
        let (status, page) = server.get_json(&path, &tech).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        assert!(cursors.len() < 10, "the list does not end");
        cursors.push(cursor.to_string());
        path = format!("/api/v1/work-orders?cursor={cursor}");
    }
    assert_eq!(seen, vec!["a-mine-0001", "c-mine-0002"]);
    // The budget ran out on tech-2's work orders, more than once.
    assert!(cursors.len() >= 2, "{cursors:?}");
    for cursor in &cursors {
        assert!(!cursor.contains("theirs"), "{cursor}");
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .unwrap_or_default();
        assert!(
            !decoded.windows(6).any(|window| window == b"theirs"),
            "the cursor {cursor} merely encodes an id"
        );
    }
    // An id is no cursor (the old cursors were ids), and neither is a
    // cursor of another gateway.
    let first = if cursors[0].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{first}{}", &cursors[0][1..]);
    for bad in [theirs[1].clone(), tampered] {
        let response = server
            .call(
                Method::GET,
                &format!("/api/v1/work-orders?cursor={bad}"),
                Some(&tech),
                None,
            )
            .await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["type"], "urn:fieldsync:problem:invalid-query");
    }
    server.stop().await;
}
