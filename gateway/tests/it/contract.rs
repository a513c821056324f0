//! The OpenAPI document tells the truth (hardening finding 9): each rule
//! the server enforces is stated in `/openapi.json`, and each request the
//! document allows is taken. `gateway/scripts/schemathesis.sh` checks the
//! whole document; these pin the server behaviours that changed for it.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{problem, Server};

async fn document(server: &Server) -> Value {
    let response = server.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The schema of parameter `name` of `method path`.
fn parameter<'a>(document: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    document["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has parameters"))
        .iter()
        .find(|parameter| parameter["name"] == name)
        .map(|parameter| &parameter["schema"])
        .unwrap_or_else(|| panic!("{method} {path} declares `{name}`"))
}

async fn send(
    server: &Server,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_work_order_is_404_to_get_and_listed_among_the_deleted() {
    let server = Server::start().await;
    server.create("gone", None).await;
    let op = server.token("op").await;
    let path = "/api/v1/work-orders/gone";
    let deleted = send(&server, Method::DELETE, path, &op, &[], None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let body: Value = deleted.json().await.unwrap();
    assert_eq!(body["deleted"], true, "DELETE answers with the tombstone");

    let body = problem(
        send(&server, Method::GET, path, &op, &[], None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "urn:fieldsync:problem:not-found");
    // Edits are refused as before: the office learns it is deleted.
    let patch = send(
        &server,
        Method::PATCH,
        path,
        &op,
        &[],
        Some(json!({"title": "x"})),
    )
    .await;
    let body = problem(patch, StatusCode::CONFLICT).await;
    assert_eq!(body["type"], "urn:fieldsync:problem:deleted");
    // The tombstone is still where deletions are listed.
    let (_, list) = server
        .get_json("/api/v1/work-orders?deleted=true", &op)
        .await;
    assert_eq!(list["items"][0]["id"], "gone", "{list}");
    let (_, feed) = server.get_json("/api/v1/changes?since=0", &op).await;
    let last = feed["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["id"].clone(), last["op"].clone()),
        (json!("gone"), json!("delete"))
    );
    // And the document says so.
    let document = document(&server).await;
    let get = &document["paths"]["/api/v1/work-orders/{id}"]["get"];
    assert!(
        get["responses"]["404"]["description"]
            .as_str()
            .unwrap()
            .contains("deleted"),
        "{get}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_timeout_above_its_maximum_is_400_as_documented() {
    let server = Server::start().await;
    server.create("a", None).await;
    let op = server.token("op").await;
    let document = document(&server).await;
    let timeout = parameter(&document, "/api/v1/changes", "get", "timeout");
    assert_eq!(timeout["maximum"], 600_000, "{timeout}");
    for too_long in ["600001", "9223372036854775808"] {
        let response = send(
            &server,
            Method::GET,
            &format!("/api/v1/changes?feed=longpoll&timeout={too_long}"),
            &op,
            &[],
            None,
        )
        .await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            body["type"], "urn:fieldsync:problem:invalid-query",
            "{too_long}"
        );
    }
    // The maximum itself is taken (without `feed=longpoll` it does not wait).
    let (status, _) = server.get_json("/api/v1/changes?timeout=600000", &op).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_null_patch_is_422_and_the_schema_says_so() {
    let server = Server::start().await;
    server.create("a", None).await;
    let op = server.token("op").await;
    let path = "/api/v1/work-orders/a";
    for body in [
        json!({}),
        json!({"title": null}),
        json!({"title": null, "description": "d"}),
        json!({"customer": {"name": " "}}),
    ] {
        let response = send(&server, Method::PATCH, path, &op, &[], Some(body.clone())).await;
        let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:fieldsync:problem:invalid-"),
            "{body}"
        );
    }
    let response = send(
        &server,
        Method::PATCH,
        path,
        &op,
        &[],
        Some(json!({"assignee": null})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let document = document(&server).await;
    let patch = &document["components"]["schemas"]["PatchWorkOrder"];
    assert_eq!(patch["minProperties"], 1, "{patch}");
    assert!(patch.get("maxProperties").is_none(), "{patch}");
    assert_eq!(patch["additionalProperties"], false, "{patch}");
    assert_eq!(
        patch["properties"]["title"]["type"], "string",
        "not nullable: {patch}"
    );
    assert_eq!(
        patch["properties"]["assignee"]["type"],
        json!(["string", "null"]),
        "{patch}"
    );
    let customer = &document["components"]["schemas"]["Customer"];
    assert!(
        customer["properties"]["name"]["pattern"].is_string(),
        "{customer}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_tags_are_parsed_as_rfc_9110_spells_them_and_documented() {
    let server = Server::start().await;
    server.create("a", None).await;
    let op = server.token("op").await;
    let note = || Some(json!({"text": "n"}));
    let path = "/api/v1/work-orders/a/notes";
    for malformed in ["0", "null", "abc", "\"a\" \"b\"", "*, \"a\"", "\"a b\""] {
        let response = send(
            &server,
            Method::POST,
            path,
            &op,
            &[("if-match", malformed)],
            note(),
        )
        .await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            body["type"], "urn:fieldsync:problem:invalid-header",
            "{malformed}"
        );
    }
    // Well formed (a comma inside a tag, weak tags, tabs): a stale version.
    for stale in ["\"a,b\"", "W/\"x\",\t\"y\""] {
        let response = send(
            &server,
            Method::POST,
            path,
            &op,
            &[("if-match", stale)],
            note(),
        )
        .await;
        problem(response, StatusCode::PRECONDITION_FAILED).await;
    }
    let response = send(
        &server,
        Method::POST,
        path,
        &op,
        &[("if-match", "*")],
        note(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tag = response.headers()["etag"].to_str().unwrap().to_string();
    let response = send(
        &server,
        Method::POST,
        path,
        &op,
        &[("if-match", &format!("\"x\", {tag}"))],
        note(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    let document = document(&server).await;
    let if_match = parameter(
        &document,
        "/api/v1/work-orders/{id}/notes",
        "post",
        "If-Match",
    );
    assert_eq!(if_match["type"], "string", "not nullable: {if_match}");
    let pattern = if_match["pattern"].as_str().unwrap();
    assert!(
        pattern.contains("W/") && pattern.contains("[!#-~]"),
        "{pattern}"
    );
    // No parameter anywhere is declared nullable: headers carry no `null`.
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let kind = &parameter["schema"]["type"];
                let nullable = kind == "null"
                    || kind
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|kind| kind == "null"));
                assert!(!nullable, "{method} {path} {parameter}");
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_parameters_stay_within_their_documented_maximum() {
    let server = Server::start().await;
    server.create("a", None).await;
    let op = server.token("op").await;
    let document = document(&server).await;
    let page_size = parameter(&document, "/api/v1/work-orders", "get", "page_size");
    assert_eq!(
        page_size["maximum"], 9_007_199_254_740_991_u64,
        "{page_size}"
    );
    for path in [
        "/api/v1/work-orders?page_size=9007199254740992",
        "/api/v1/changes?limit=9007199254740992",
        "/api/v1/commands?limit=9007199254740992",
        "/api/v1/commands?state=sometime",
    ] {
        let response = send(&server, Method::GET, path, &op, &[], None).await;
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    let (status, _) = server
        .get_json("/api/v1/work-orders?page_size=9007199254740991", &op)
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_follow_their_declared_bounds() {
    let server = Server::start().await;
    server.create("t", Some("tech-1")).await;
    let op = server.token("op").await;
    // A customer's fields are work-order text on create as on patch.
    let long = "x".repeat(65_537);
    let create = json!({"title": "t", "customer": {"name": "c", "phone": long}});
    let response = send(
        &server,
        Method::POST,
        "/api/v1/work-orders",
        &op,
        &[],
        Some(create),
    )
    .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    // `number` counts characters, as `maxLength` does: 64 of them fit.
    let number = "é".repeat(64);
    let create = json!({"title": "t", "number": number, "customer": {"name": "c"}});
    let response = send(
        &server,
        Method::POST,
        "/api/v1/work-orders",
        &op,
        &[],
        Some(create),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Time entries are RFC 3339 times, as declared.
    let tech = server.token("tech-1").await;
    let path = "/api/v1/work-orders/t/time";
    let bad = json!({"start": "yesterday", "end": "2026-01-01T10:00:00Z"});
    let response = send(&server, Method::POST, path, &tech, &[], Some(bad)).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(body["detail"].as_str().unwrap().contains("start"), "{body}");
    let good = json!({"start": "2026-01-01T09:00:00Z", "end": "2026-01-01T10:00:00Z"});
    let response = send(&server, Method::POST, path, &tech, &[], Some(good)).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Integer members take whole numbers however JSON spells them.
    let erp = server.token("erp-all").await;
    let message = json!({
        "tableName": "CUSTOMERS", "erp": "protheus", "messageNumber": 1.0, "recordCount": 1.0,
        "schema": {"columns": [{"name": "CODE"}], "primaryKey": {"columns": ["CODE"]}},
        "rows": [{"columns": [{"name": "CODE", "value": "c1"}]}],
    });
    let path = "/api/v1/batches/1700000000/messages";
    let response = send(
        &server,
        Method::POST,
        path,
        &erp,
        &[],
        Some(message.clone()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut half = message;
    half["messageNumber"] = json!(1.5);
    let response = send(&server, Method::POST, path, &erp, &[], Some(half)).await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    // An ERP's entities: `metadata` is an object, `{}` when absent.
    let entities = json!({"uploadVersion": 2.0, "queries": [{"table": "SA1010"}]});
    let response = send(
        &server,
        Method::PUT,
        "/api/v1/entities/protheus",
        &op,
        &[],
        Some(entities),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["queries"][0]["metadata"], json!({}), "{body}");
    let null = json!({"uploadVersion": 2, "queries": [{"table": "SA1010", "metadata": null}]});
    let response = send(
        &server,
        Method::PUT,
        "/api/v1/entities/protheus",
        &op,
        &[],
        Some(null),
    )
    .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_states_shared_answers_and_rules_made_of_constants() {
    let server = Server::start().await;
    let document = document(&server).await;
    let paths = document["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = &operation["responses"];
            assert!(responses.get("429").is_some(), "{method} {path}: 429");
            let secured = operation["security"].as_array().is_some_and(|all| {
                all.iter()
                    .all(|one| one.as_object().is_some_and(|o| !o.is_empty()))
            });
            if secured {
                assert!(responses.get("401").is_some(), "{method} {path}: 401");
            }
        }
    }
    let schemas = &document["components"]["schemas"];
    let events = &document["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert_eq!(events["$ref"], "#/components/schemas/EventEnvelope");
    let variants = schemas["EventEnvelope"]["properties"]["content"]["oneOf"]
        .as_array()
        .unwrap();
    assert_eq!(
        variants.len(),
        4,
        "INSERT, UPDATE, DELETE of a work order; a record"
    );
    let records = variants[3]["properties"]["schemaName"]["pattern"]
        .as_str()
        .unwrap();
    assert!(
        records.contains("[Uu][Ss][Ee][Rr][Ss]"),
        "internal names refused: {records}"
    );
    let table = schemas["BatchMessage"]["properties"]["tableName"]["pattern"]
        .as_str()
        .unwrap();
    assert!(
        table.contains("[Ww][Oo][Rr][Kk]_[Oo][Rr][Dd][Ee][Rr][Ss]"),
        "{table}"
    );
    assert_eq!(
        schemas["BatchMessage"]["properties"]["batchId"]["readOnly"],
        true
    );
    let user = &schemas["NewUser"];
    assert_eq!(
        user["properties"]["role"]["enum"],
        json!(["operator", "technician", "integration"])
    );
    assert_eq!(
        user["properties"]["scopes"]["items"]["enum"][0],
        "changes:read"
    );
    assert!(schemas["TokenRequest"]["properties"]["scope"]["pattern"]
        .as_str()
        .unwrap()
        .contains("work-orders:write"));
    server.stop().await;
}
