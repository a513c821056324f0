//! Bad input of every kind gets a 4xx problem document, never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{problem, Server};

/// (path, body, content type, expected status, problem kind)
type BadBody = (
    &'static str,
    Vec<u8>,
    Option<&'static str>,
    StatusCode,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_wrong_types_unknown_fields_and_huge_bodies() {
    let server = Server::start().await;
    server.create("a", Some("tech-1")).await;
    let op = server.token("op").await;
    // A fresh connection per request: after a 413 the server closes the
    // connection, and a pooled one reused by the next case would fail with
    // "incomplete message" depending on timing.
    fieldsync_gateway::install_crypto_provider();
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let raw = |path: &str, body: Vec<u8>, content_type: Option<&str>| {
        let mut request = unpooled
            .post(format!("{}{path}", server.url))
            .bearer_auth(&op)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json_type = Some("application/json");
    // The too-large body is just over the 256 KiB limit: small enough to
    // be fully written before the server answers 413 and closes.
    let cases: Vec<BadBody> = vec![
        (
            "/api/v1/work-orders",
            b"{\"title\": ".to_vec(),
            json_type,
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            "/api/v1/work-orders",
            b"not json".to_vec(),
            json_type,
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": 5, "customer": {"name": "c"}}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t", "customer": {"name": "c"}, "colour": "red"}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t", "customer": {"name": "c", "x": 1}}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t"}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t", "customer": {"name": "c"}, "priority": "whenever"}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t", "customer": {"name": ""}}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
        ),
        (
            "/api/v1/work-orders",
            br#"{"id": "bad id!", "title": "t", "customer": {"name": "c"}}"#.to_vec(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid-id",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t", "customer": {"name": "c"}, "assignee": "nobody"}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
        ),
        (
            "/api/v1/work-orders",
            br#"[]"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t", "customer": {"name": "c"}}"#.to_vec(),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "/api/v1/work-orders",
            br#"{"title": "t", "customer": {"name": "c"}}"#.to_vec(),
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "/api/v1/work-orders/a/notes",
            vec![b'x'; 300 * 1024],
            json_type,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        (
            "/api/v1/work-orders/a/notes",
            format!("{{\"text\": \"{}\"}}", "x".repeat(100 * 1024)).into_bytes(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
        ),
        (
            "/api/v1/work-orders/a/materials",
            br#"{"sku": "s", "qty": -1}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
        ),
        (
            "/api/v1/work-orders/a/materials",
            br#"{"sku": "s", "qty": "many"}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders/a/status",
            br#"{"to": "teleported"}"#.to_vec(),
            json_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "/api/v1/work-orders/a/time",
            br#"{"start": "b", "end": "a"}"#.to_vec(),
            json_type,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/api/v1/work-orders/a/materials/nope/state",
            br#"{"state": "approved"}"#.to_vec(),
            json_type,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "/api/v1/work-orders/missing/notes",
            br#"{"text": "x"}"#.to_vec(),
            json_type,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "/api/v1/work-orders/bad%20id/notes",
            br#"{"text": "x"}"#.to_vec(),
            json_type,
            StatusCode::BAD_REQUEST,
            "invalid-id",
        ),
    ];
    for (path, body, content_type, status, kind) in cases {
        let label = format!(
            "{path} {}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        let response = raw(path, body, content_type)
            .await
            .unwrap_or_else(|error| panic!("{label}: {error:?}"));
        let body = problem(response, status).await;
        assert_eq!(
            body["type"],
            format!("urn:fieldsync:problem:{kind}"),
            "{label}: {body}"
        );
    }
    // PATCH with nothing to change; with `assignee: null` it unassigns.
    let (server_ref, op_ref) = (&server, &op);
    let patch = |body: Value| async move {
        server_ref
            .call(
                Method::PATCH,
                "/api/v1/work-orders/a",
                Some(op_ref),
                Some(&body),
            )
            .await
    };
    problem(patch(json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = patch(json!({"assignee": null})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["assignee"].is_null());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_queries_routes_and_methods() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let long = "x".repeat(300);
    for path in [
        "/api/v1/work-orders/bad%20id".to_string(),
        "/api/v1/work-orders/%E2%9C%93".to_string(),
        format!("/api/v1/work-orders/{long}"),
        "/api/v1/work-orders?page_size=0".to_string(),
        "/api/v1/work-orders?page_size=-3".to_string(),
        "/api/v1/work-orders?status=sleeping".to_string(),
        "/api/v1/work-orders?deleted=maybe".to_string(),
        "/api/v1/work-orders?cursor=%00".to_string(),
        "/api/v1/work-orders?sort=title".to_string(),
    ] {
        let response = server.call(Method::GET, &path, Some(&op), None).await;
        let status = response.status();
        assert!(status.is_client_error(), "{path}: {status}");
        problem(response, status).await;
    }
    let response = server
        .call(Method::GET, "/api/v1/nothing-here", Some(&op), None)
        .await;
    problem(response, StatusCode::NOT_FOUND).await;
    let response = server
        .call(Method::DELETE, "/api/v1/changes", Some(&op), None)
        .await;
    assert!(response.headers().contains_key("allow"));
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    // A malformed Authorization header is a 401 problem on protected routes.
    let response = server
        .client
        .get(format!("{}/api/v1/work-orders", server.url))
        .header("authorization", "Token abc")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_and_preconditions() {
    let server = Server::start().await;
    server.create("a", Some("tech-1")).await;
    let op = server.token("op").await;
    let response = server
        .call(Method::GET, "/api/v1/work-orders/a", Some(&op), None)
        .await;
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", body["heads"][0].as_str().unwrap()));
    // Unchanged: 304.
    let response = server
        .client
        .get(format!("{}/api/v1/work-orders/a", server.url))
        .bearer_auth(&op)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let note = |tag: &str| {
        server
            .client
            .post(format!("{}/api/v1/work-orders/a/notes", server.url))
            .bearer_auth(&op)
            .header("if-match", tag)
            .json(&json!({"text": "guarded"}))
            .send()
    };
    // Matching If-Match applies and returns the new ETag.
    let response = note(&etag).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let newer = response.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(newer, etag);
    // The old ETag is now stale: 412, and nothing is written.
    let before = server.store.last_seq();
    let response = note(&etag).await.unwrap();
    problem(response, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(server.store.last_seq(), before);
    // Not an entity tag at all: 400.
    let response = note("null").await.unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "urn:fieldsync:problem:invalid-header");
    // Weak tags never match; `*` matches any version.
    let response = note(&format!("W/{newer}")).await.unwrap();
    problem(response, StatusCode::PRECONDITION_FAILED).await;
    let response = note("*").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A technician probing someone else's work order with If-Match still
    // gets 404, not 412.
    server.create("b", Some("tech-2")).await;
    let tech = server.token("tech-1").await;
    let response = server
        .client
        .post(format!("{}/api/v1/work-orders/b/notes", server.url))
        .bearer_auth(&tech)
        .header("if-match", "\"nope\"")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_writes_go_through_the_field_rules() {
    let server = Server::start().await;
    server.create("a", Some("tech-1")).await;
    let tech = server.token("tech-1").await;
    let op = server.token("op").await;
    // A technician may not cancel or reopen: office transitions.
    for to in ["cancelled", "open", "assigned"] {
        let response = server
            .call(
                Method::POST,
                "/api/v1/work-orders/a/status",
                Some(&tech),
                Some(&json!({"to": to})),
            )
            .await;
        problem(response, StatusCode::FORBIDDEN).await;
    }
    // Field transitions work, and the derived status follows.
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/a/status",
            Some(&tech),
            Some(&json!({"to": "en_route"})),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "en_route");
    // Conflicting terminal transitions: the office's wins, conflict shows.
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/a/closure",
            Some(&tech),
            Some(&json!({"resolution": "done"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/a/status",
            Some(&op),
            Some(&json!({"to": "cancelled"})),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["conflict"], true);
    assert_eq!(body["closure"]["resolution"], "done");
    // Tombstoned: hidden from the technician, 409 for more office edits,
    // listed only with deleted=true.
    let response = server
        .call(Method::DELETE, "/api/v1/work-orders/a", Some(&op), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = server
        .call(Method::GET, "/api/v1/work-orders/a", Some(&tech), None)
        .await;
    problem(response, StatusCode::NOT_FOUND).await;
    let response = server
        .call(Method::DELETE, "/api/v1/work-orders/a", Some(&op), None)
        .await;
    problem(response, StatusCode::CONFLICT).await;
    let (_, live) = server.get_json("/api/v1/work-orders", &op).await;
    assert_eq!(live["items"].as_array().unwrap().len(), 0);
    let (_, deleted) = server
        .get_json("/api/v1/work-orders?deleted=true", &op)
        .await;
    assert_eq!(deleted["items"][0]["id"], "a");
    // Creating twice with one id: 409.
    let body = json!({"id": "dup", "title": "t", "customer": {"name": "c"}});
    let response = server
        .call(Method::POST, "/api/v1/work-orders", Some(&op), Some(&body))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["location"], "/api/v1/work-orders/dup");
    let response = server
        .call(Method::POST, "/api/v1/work-orders", Some(&op), Some(&body))
        .await;
    problem(response, StatusCode::CONFLICT).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_cursor_paging() {
    let server = Server::start().await;
    for n in 0..7 {
        server
            .create(
                &format!("d{n}"),
                Some(if n % 2 == 0 { "tech-1" } else { "tech-2" }),
            )
            .await;
    }
    let op = server.token("op").await;
    let urgent = json!({"priority": "urgent"});
    let response = server
        .call(
            Method::PATCH,
            "/api/v1/work-orders/d3",
            Some(&op),
            Some(&urgent),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/d4/status",
            Some(&op),
            Some(&json!({"to": "on_hold"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, page) = server
        .get_json("/api/v1/work-orders?priority=urgent", &op)
        .await;
    assert_eq!(ids(&page), vec!["d3"]);
    let (_, page) = server
        .get_json("/api/v1/work-orders?status=on_hold", &op)
        .await;
    assert_eq!(ids(&page), vec!["d4"]);
    let (_, page) = server
        .get_json("/api/v1/work-orders?assignee=tech-2", &op)
        .await;
    assert_eq!(ids(&page), vec!["d1", "d3", "d5"]);
    // Cursor paging walks everything once.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/work-orders?page_size=3&cursor={cursor}"),
            None => "/api/v1/work-orders?page_size=3".to_string(),
        };
        let (status, page) = server.get_json(&path, &op).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page["items"].as_array().unwrap().len() <= 3);
        all.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(all, (0..7).map(|n| format!("d{n}")).collect::<Vec<_>>());
    server.stop().await;
}

/// Work orders created without a number get the central's next one, a
/// number a person can read over the phone; one the creator names is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_work_orders_are_numbered_in_sequence() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let year = &fieldsync_node::clock::now_rfc3339()[..4];
    let mut numbers = Vec::new();
    for body in [
        json!({"title": "a", "customer": {"name": "c"}}),
        json!({"title": "b", "customer": {"name": "c"}, "number": "ERP-77"}),
        json!({"title": "c", "customer": {"name": "c"}}),
    ] {
        let response = server
            .call(Method::POST, "/api/v1/work-orders", Some(&op), Some(&body))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.expect("json");
        numbers.push(order["number"].as_str().expect("number").to_string());
    }
    assert_eq!(
        numbers,
        [
            format!("WO-{year}-000001"),
            "ERP-77".to_string(),
            format!("WO-{year}-000002")
        ]
    );
    server.stop().await;
}
