//! Records over REST: versions as entity tags, compare-and-set, who may
//! write and create collections, read grants for technicians and
//! integrations (set over the API or in the gateway's config), the feed's
//! record changes, internal collections that never show, and bad input.

use std::collections::BTreeMap;

use fieldsync_gateway::GatewayConfig;
use fieldsync_node::access::ReadGrants;
use fieldsync_node::store::Expect;
use fieldsync_schemas::Role;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::support::{problem, Server};

const MATERIALS: &str = "/api/v1/collections/materials/records";
const GRANTS: &str = "/api/v1/collections/materials/grants";

/// Requests as one user.
struct As<'a> {
    server: &'a Server,
    token: String,
}

impl<'a> As<'a> {
    async fn user(server: &'a Server, user: &str) -> As<'a> {
        As {
            server,
            token: server.token(user).await,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        let mut request = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.url))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, &[], None).await
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    async fn put(&self, path: &str, value: Value) -> Response {
        self.send(Method::PUT, path, &[], Some(&value)).await
    }

    async fn put_if(&self, path: &str, header: (&str, &str), value: Value) -> Response {
        self.send(Method::PUT, path, &[header], Some(&value)).await
    }

    async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.send(Method::DELETE, path, headers, None).await
    }

    /// A raw PUT body with this content type.
    async fn put_raw(&self, path: &str, content_type: &str, body: &'static str) -> Response {
        self.server
            .client
            .put(format!("{}{path}", self.server.url))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Changes in the feed as (collection, id, op, version).
    async fn feed(&self, query: &str) -> Vec<(String, String, String, Value)> {
        let page = self
            .json(&format!("/api/v1/changes?since=0&limit=1000{query}"))
            .await;
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                (
                    entry["collection"].as_str().unwrap().to_string(),
                    entry["id"].as_str().unwrap().to_string(),
                    entry["op"].as_str().unwrap().to_string(),
                    entry["version"].clone(),
                )
            })
            .collect()
    }

    /// Names in `GET /api/v1/collections`.
    async fn collections(&self) -> Vec<String> {
        let list = self.json("/api/v1/collections").await;
        list.as_array()
            .unwrap()
            .iter()
            .map(|collection| collection["name"].as_str().unwrap().to_string())
            .collect()
    }
}

fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_string()
}

fn row(collection: &str, id: &str, op: &str, version: Value) -> (String, String, String, Value) {
    (collection.into(), id.into(), op.into(), version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_and_update_with_versions_as_etags() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    let path = format!("{MATERIALS}/SKU%2012%2F4");
    let created = op
        .put(&path, json!({"name": "filter", "price": 12.5}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(etag(&created), "\"1\"");
    assert_eq!(created.headers()["location"], path.as_str());
    let body: Value = created.json().await.unwrap();
    assert_eq!(
        body,
        json!({"collection": "materials", "key": "SKU 12/4", "version": 1,
               "value": {"name": "filter", "price": 12.5}, "deleted": false})
    );
    let read = op.get(&path).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(etag(&read), "\"1\"");
    assert_eq!(read.json::<Value>().await.unwrap(), body);
    let unchanged = op
        .send(Method::GET, &path, &[("if-none-match", "\"1\"")], None)
        .await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    let new = json!({"name": "filter", "price": 13});
    let updated = op.put_if(&path, ("if-match", "\"1\""), new.clone()).await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(etag(&updated), "\"2\"");
    assert_eq!(updated.json::<Value>().await.unwrap()["value"], new);
    // `If-Match: *` and `If-Match` with several tags, one current.
    let any = op.put_if(&path, ("if-match", "*"), new.clone()).await;
    assert_eq!(etag(&any), "\"3\"");
    let listed = op.put_if(&path, ("if-match", "\"1\", \"3\""), new).await;
    assert_eq!(etag(&listed), "\"4\"");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_versions_are_412_and_deletes_are_204_then_404() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    let path = format!("{MATERIALS}/m1");
    op.put(&path, json!(1)).await;
    op.put(&path, json!(2)).await;
    // A stale version, and create-only on an existing record: 412.
    for header in [("if-match", "\"1\""), ("if-none-match", "*")] {
        let stale = op.put_if(&path, header, json!(3)).await;
        let body = problem(stale, StatusCode::PRECONDITION_FAILED).await;
        assert_eq!(body["type"], "urn:fieldsync:problem:precondition-failed");
    }
    // If-Match on a record that does not exist fails too.
    let absent = op
        .put_if(
            &format!("{MATERIALS}/nope"),
            ("if-match", "\"1\""),
            json!(1),
        )
        .await;
    problem(absent, StatusCode::PRECONDITION_FAILED).await;
    let current = op.json(&path).await;
    assert_eq!(
        (current["version"].clone(), current["value"].clone()),
        (json!(2), json!(2))
    );

    let stale = op.delete(&path, &[("if-match", "\"1\"")]).await;
    problem(stale, StatusCode::PRECONDITION_FAILED).await;
    let deleted = op.delete(&path, &[("if-match", "\"2\"")]).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    problem(op.get(&path).await, StatusCode::NOT_FOUND).await;
    problem(op.delete(&path, &[]).await, StatusCode::NOT_FOUND).await;
    // Re-created after the delete: a create at the next version.
    let again = op.put(&path, json!("back")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(etag(&again), "\"4\"");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_collection_list() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    for key in ["a", "b", "c"] {
        let response = op
            .put(&format!("{MATERIALS}/{key}"), json!({"k": key}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = op.delete(&format!("{MATERIALS}/b"), &[]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    op.put("/api/v1/collections/customers/records/x", json!({}))
        .await;
    let first = op.json(&format!("{MATERIALS}?limit=1")).await;
    assert_eq!(first["items"][0]["key"], "a");
    assert_eq!(first["next_cursor"], "a");
    let rest = op.json(&format!("{MATERIALS}?limit=5&cursor=a")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["key"], "c");
    assert!(rest["next_cursor"].is_null());
    assert_eq!(
        op.json("/api/v1/collections").await,
        json!([
            {"name": "customers", "kind": "data", "count": 1, "readers": ["operator", "integration"]},
            {"name": "materials", "kind": "data", "count": 2, "readers": ["operator", "integration"]},
        ])
    );
    let grants = op.json(GRANTS).await;
    assert_eq!(grants, json!({"readers": ["operator", "integration"]}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_write_into_existing_collections_only() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    let erp = As::user(&server, "erp-all").await;
    op.put(&format!("{MATERIALS}/m1"), json!(1)).await;
    // records:write writes into an existing collection...
    let written = erp.put(&format!("{MATERIALS}/m2"), json!(2)).await;
    assert_eq!(written.status(), StatusCode::CREATED);
    let updated = erp.put(&format!("{MATERIALS}/m1"), json!(3)).await;
    assert_eq!(updated.status(), StatusCode::OK);
    // ...but does not create one; an operator does.
    let fresh = "/api/v1/collections/prices/records/p1";
    problem(erp.put(fresh, json!(1)).await, StatusCode::NOT_FOUND).await;
    assert_eq!(op.put(fresh, json!(1)).await.status(), StatusCode::CREATED);
    assert_eq!(erp.put(fresh, json!(2)).await.status(), StatusCode::OK);
    assert_eq!(
        erp.delete(fresh, &[]).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(erp.collections().await, ["materials", "prices"]);
    // Grants are for operators only.
    let grants = json!({"readers": ["technician"]});
    problem(erp.put(GRANTS, grants).await, StatusCode::FORBIDDEN).await;
    problem(erp.get(GRANTS).await, StatusCode::FORBIDDEN).await;
    // An operator can take reading away from integrations.
    let response = op.put(GRANTS, json!({"readers": []})).await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"readers": ["operator"]})
    );
    let hidden = erp.get(&format!("{MATERIALS}/m1")).await;
    problem(hidden, StatusCode::NOT_FOUND).await;
    assert_eq!(erp.collections().await, ["prices"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_without_record_scopes_get_403() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    op.put(&format!("{MATERIALS}/m1"), json!(1)).await;
    // As the work-order endpoints answer a missing scope: 403 before
    // anything is looked up, so it tells nothing about what exists.
    for user in ["erp-read", "erp-none"] {
        let erp = As::user(&server, user).await;
        let one = format!("{MATERIALS}/m1");
        for path in ["/api/v1/collections", MATERIALS, one.as_str()] {
            problem(erp.get(path).await, StatusCode::FORBIDDEN).await;
        }
        problem(erp.put(&one, json!(0)).await, StatusCode::FORBIDDEN).await;
        problem(erp.delete(&one, &[]).await, StatusCode::FORBIDDEN).await;
    }
    assert_eq!(op.json(&format!("{MATERIALS}/m1")).await["version"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn technicians_read_only_granted_collections_in_rest_and_feed() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    let tech = As::user(&server, "tech-1").await;
    op.put(&format!("{MATERIALS}/m1"), json!({"name": "pipe"}))
        .await;
    assert!(tech.collections().await.is_empty());
    let missing = tech.get("/api/v1/collections/nothing/records/x").await;
    let missing = problem(missing, StatusCode::NOT_FOUND).await;
    for path in [MATERIALS.to_string(), format!("{MATERIALS}/m1")] {
        let body = problem(tech.get(&path).await, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], missing["type"]);
    }
    let fed = tech.feed("").await;
    assert!(fed.iter().all(|(c, ..)| c != "materials"), "{fed:?}");
    // Technicians never write, whatever the body: 403 before validation.
    let response = tech
        .put_raw(&format!("{MATERIALS}/m1"), "text/plain", "not json")
        .await;
    problem(response, StatusCode::FORBIDDEN).await;
    problem(tech.get(GRANTS).await, StatusCode::FORBIDDEN).await;

    let response = op.put(GRANTS, json!({"readers": ["technician"]})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let both = json!({"readers": ["operator", "technician"]});
    assert_eq!(response.json::<Value>().await.unwrap(), both);
    assert_eq!(op.json(GRANTS).await, both);

    assert_eq!(tech.collections().await, ["materials"]);
    let record = tech.json(&format!("{MATERIALS}/m1")).await;
    assert_eq!(record["value"], json!({"name": "pipe"}));
    let page = tech.json(MATERIALS).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let fed = tech.feed("&collection=materials").await;
    assert_eq!(fed, [row("materials", "m1", "create", json!(1))]);
    server.stop().await;
}

/// A gateway whose config grants (as the node's `[records.read]` does):
/// `materials` to technicians and integrations, `prices` to operators only.
async fn configured_server() -> Server {
    let grants = |readers: &[Role]| ReadGrants {
        readers: readers.to_vec(),
    };
    let read_grants = BTreeMap::from([
        (
            "materials".to_string(),
            grants(&[Role::Operator, Role::Technician, Role::Integration]),
        ),
        ("prices".to_string(), grants(&[Role::Operator])),
    ]);
    let config = GatewayConfig {
        read_grants: std::sync::Arc::new(read_grants),
        ..GatewayConfig::default()
    };
    Server::start_with(config, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_grants_apply_until_an_operator_sets_others_over_the_api() {
    let server = configured_server().await;
    let op = As::user(&server, "op").await;
    let tech = As::user(&server, "tech-1").await;
    let erp = As::user(&server, "erp-all").await;
    for collection in ["materials", "prices", "customers"] {
        let path = format!("/api/v1/collections/{collection}/records/k1");
        let response = op.put(&path, json!({"in": collection})).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{collection}");
    }

    // Configured: technicians read materials without any API grant;
    // prices is operators only; customers takes the default.
    assert_eq!(tech.collections().await, ["materials"]);
    assert_eq!(
        tech.json(&format!("{MATERIALS}/k1")).await["value"],
        json!({"in": "materials"})
    );
    assert_eq!(
        tech.json(MATERIALS).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let fed = tech.feed("").await;
    let collections: Vec<&str> = fed.iter().map(|(c, ..)| c.as_str()).collect();
    assert_eq!(collections, ["materials"], "{fed:?}");
    for path in [
        "/api/v1/collections/prices/records/k1",
        "/api/v1/collections/customers/records/k1",
    ] {
        problem(tech.get(path).await, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(erp.collections().await, ["customers", "materials"]);
    problem(
        erp.get("/api/v1/collections/prices/records/k1").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(op.collections().await, ["customers", "materials", "prices"]);
    // The grants in force show the configured ones.
    assert_eq!(
        op.json(GRANTS).await,
        json!({"readers": ["operator", "technician", "integration"]})
    );
    let listed = op.json("/api/v1/collections").await;
    let materials = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "materials")
        .unwrap();
    assert_eq!(
        materials["readers"],
        json!(["operator", "technician", "integration"])
    );

    // An API grant overrides the configured one, both ways.
    let response = op.put(GRANTS, json!({"readers": []})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(op.json(GRANTS).await, json!({"readers": ["operator"]}));
    assert!(tech.collections().await.is_empty());
    problem(
        tech.get(&format!("{MATERIALS}/k1")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(tech.feed("").await.is_empty());
    assert_eq!(erp.collections().await, ["customers"]);
    let response = op
        .put(
            "/api/v1/collections/prices/grants",
            json!({"readers": ["technician"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(tech.collections().await, ["prices"]);
    assert_eq!(
        tech.feed("").await,
        [row("prices", "k1", "create", json!(1))]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_grace_period_decides_what_a_reassigned_technician_reads() {
    let config = GatewayConfig {
        grace_ms: 0,
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    server.create("a", Some("tech-1")).await;
    let op = As::user(&server, "op").await;
    let tech = As::user(&server, "tech-1").await;
    let path = "/api/v1/work-orders/a";
    assert_eq!(tech.get(path).await.status(), StatusCode::OK);
    let response = op
        .send(
            Method::PATCH,
            path,
            &[],
            Some(&json!({"assignee": "tech-2"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // No grace: gone at once (the default would keep it for a day).
    problem(tech.get(path).await, StatusCode::NOT_FOUND).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_carries_record_changes_and_filters_by_collection() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    server.create("wo", None).await;
    op.put(&format!("{MATERIALS}/a"), json!(1)).await;
    op.put("/api/v1/collections/customers/records/c", json!(1))
        .await;
    op.put(&format!("{MATERIALS}/a"), json!(2)).await;
    op.put(&format!("{MATERIALS}/b"), json!(1)).await;
    op.delete(&format!("{MATERIALS}/b"), &[]).await;
    let all = op.feed("").await;
    assert_eq!(
        all,
        [
            row("work_orders", "wo", "create", Value::Null),
            row("customers", "c", "create", json!(1)),
            row("materials", "a", "update", json!(2)),
            row("materials", "b", "delete", json!(2)),
        ]
    );
    assert_eq!(op.feed("&collection=materials").await, all[2..]);
    let erp = As::user(&server, "erp-all").await;
    assert_eq!(erp.feed("&collection=customers").await, all[1..2]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_collections_never_show() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    let erp = As::user(&server, "erp-all").await;
    let store = server.store.clone();
    tokio::task::spawn_blocking(move || {
        let value = Some(br#"{"url":"x"}"#.to_vec());
        store
            .write_record("webhooks", "h1", value, Expect::Any)
            .expect("internal write")
    })
    .await
    .unwrap();
    op.put(&format!("{MATERIALS}/m1"), json!(1)).await;
    assert_eq!(op.collections().await, ["materials"]);
    assert_eq!(erp.collections().await, ["materials"]);
    let internal = [
        ("webhooks", "h1"),
        ("users", "op"),
        ("collection_grants", "materials"),
        ("work_orders", "x"),
    ];
    for (collection, key) in internal {
        let base = format!("/api/v1/collections/{collection}");
        let record = format!("{base}/records/{key}");
        let grants = format!("{base}/grants");
        problem(
            op.get(&format!("{base}/records")).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        problem(op.get(&record).await, StatusCode::NOT_FOUND).await;
        let overwrite = op.put(&record, json!({"role": "operator"})).await;
        problem(overwrite, StatusCode::NOT_FOUND).await;
        problem(op.delete(&record, &[]).await, StatusCode::NOT_FOUND).await;
        problem(op.get(&grants).await, StatusCode::NOT_FOUND).await;
        let grant = op.put(&grants, json!({"readers": ["technician"]})).await;
        problem(grant, StatusCode::NOT_FOUND).await;
        let fed = op.feed(&format!("&collection={collection}")).await;
        assert!(fed.is_empty(), "{fed:?}");
    }
    let fed = op.feed("").await;
    assert_eq!(fed, [row("materials", "m1", "create", json!(1))]);
    // The operator's own user record is untouched.
    assert_eq!(op.json("/api/v1/users").await.as_array().unwrap().len(), 6);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_collection_names_and_keys_are_400() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    let long_name = format!("/api/v1/collections/{}/records/k", "x".repeat(65));
    let long_key = format!("{MATERIALS}/{}", "k".repeat(513));
    let control_key = format!("{MATERIALS}/a%01b");
    let bad_paths = [
        "/api/v1/collections/Materials/records/k",
        "/api/v1/collections/a%20b/records/k",
        long_name.as_str(),
        long_key.as_str(),
        control_key.as_str(),
    ];
    for path in bad_paths {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let response = op.send(method, path, &[], Some(&json!(1))).await;
            let body = problem(response, StatusCode::BAD_REQUEST).await;
            assert_eq!(body["type"], "urn:fieldsync:problem:invalid-id", "{path}");
        }
    }
    let bad_list = op.get("/api/v1/collections/Materials/records").await;
    problem(bad_list, StatusCode::BAD_REQUEST).await;
    for query in ["?limit=0", "?cursor=", "?bogus=1", "?limit=x"] {
        let response = op.get(&format!("{MATERIALS}{query}")).await;
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_headers_leave_the_record_alone() {
    let server = Server::start().await;
    let op = As::user(&server, "op").await;
    let path = format!("{MATERIALS}/m1");
    op.put(&path, json!(1)).await;
    let big = json!({"text": "x".repeat(70_000)});
    let body = problem(op.put(&path, big).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(body["detail"].as_str().unwrap().contains("65536"), "{body}");
    let response = op.put_raw(&path, "application/json", "{\"a\": ").await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "urn:fieldsync:problem:malformed-body");
    let response = op.put_raw(&path, "text/plain", "1").await;
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    for headers in [vec![("if-match", "1")], vec![("if-none-match", "\"1\"")]] {
        let response = op.send(Method::PUT, &path, &headers, Some(&json!(2))).await;
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    // Both: well formed, but never both true (RFC 9110 §13.2.2).
    let both = [("if-match", "\"1\""), ("if-none-match", "*")];
    let response = op.send(Method::PUT, &path, &both, Some(&json!(2))).await;
    problem(response, StatusCode::PRECONDITION_FAILED).await;
    let response = op.delete(&path, &[("if-none-match", "*")]).await;
    problem(response, StatusCode::BAD_REQUEST).await;
    let response = op.put(GRANTS, json!({"readers": ["boss"]})).await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = op.put(GRANTS, json!({"readers": [], "extra": 1})).await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(op.json(&path).await["version"], 1);
    assert_eq!(
        op.json(GRANTS).await["readers"],
        json!(["operator", "integration"])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_the_record_routes() {
    let server = Server::start().await;
    let response = server.call(Method::GET, "/openapi.json", None, None).await;
    let spec: Value = response.json().await.unwrap();
    let paths = &spec["paths"];
    for path in [
        "/api/v1/collections",
        "/api/v1/collections/{collection}/records",
        "/api/v1/collections/{collection}/grants",
    ] {
        assert!(paths[path]["get"].is_object(), "{path}");
    }
    assert!(paths["/api/v1/collections/{collection}/grants"]["put"].is_object());
    let record = &paths["/api/v1/collections/{collection}/records/{key}"];
    for method in ["get", "put", "delete"] {
        assert!(record[method].is_object(), "{method}");
    }
    let put = &record["put"];
    assert!(put["responses"]["412"].is_object());
    let params = put["parameters"].as_array().unwrap();
    let collection = params.iter().find(|p| p["name"] == "collection").unwrap();
    assert_eq!(collection["schema"]["pattern"], "^[a-z0-9_-]{1,64}$");
    let key = params.iter().find(|p| p["name"] == "key").unwrap();
    assert_eq!(key["schema"]["maxLength"], 512);
    assert!(params
        .iter()
        .any(|p| p["name"] == "If-Match" && p["in"] == "header"));
    assert!(spec["components"]["schemas"]["RecordBody"].is_object());
    server.stop().await;
}
