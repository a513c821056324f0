//! `POST /api/v1/events`: WORK_ORDER events create, reassign and tombstone
//! work orders; other schemas become records on the changes feed; a
//! resend (same `Idempotency-Key`, or the same event without one) is a
//! no-op answered as the first send was; a used key with another event is
//! a 409; racing sends of one event apply it once; every malformed
//! envelope is a 4xx problem naming the member and writes nothing; only
//! operators and `events:write` clients may post.

use fieldsync_gateway::GatewayConfig;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::support::{problem, Server};

const EVENTS: &str = "/api/v1/events";

/// An envelope of `action` on `schema` with `data`, created at `created_at`.
fn envelope(schema: &str, action: &str, data: Value, created_at: &str) -> Value {
    json!({
        "header": {"type": schema, "generatedOn": "2026-05-01T12:00:01.000Z", "locale": "pt_BR"},
        "content": {
            "originApp": "callcentre", "appVersion": "4.2.0", "schemaName": schema,
            "schemaVersion": "1", "action": action, "data": data,
            "createdAt": created_at, "token": "site-7"
        }
    })
}

fn new_order(id: &str, assignee: &str) -> Value {
    json!({
        "id": id,
        "number": format!("CC-{id}"),
        "title": "No cooling in the server room",
        "customer": {"name": "Ana Souza", "address": "Rua Augusta, 1109", "phone": "+55 11 95897-5662"},
        "priority": "high",
        "assignee": assignee,
    })
}

async fn post(server: &Server, token: &str, body: &Value, key: Option<&str>) -> Response {
    let mut request = server
        .client
        .post(format!("{}{EVENTS}", server.url))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("request")
}

/// Post, expect `status`, return the body and whether it was a replay.
async fn accepted(
    server: &Server,
    token: &str,
    body: &Value,
    key: Option<&str>,
    status: StatusCode,
) -> (Value, bool) {
    let response = post(server, token, body, key).await;
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true");
    let got = response.status();
    let answer: Value = response.json().await.expect("json");
    assert_eq!(got, status, "{answer}");
    (answer, replayed)
}

/// What the store holds: (last seq, idempotency records).
fn written(server: &Server) -> (u64, u64) {
    let keys = server
        .store
        .collection("event_keys")
        .expect("collection")
        .map_or(0, |info| info.live);
    (server.store.last_seq(), keys)
}

/// Feed entries after `since`, as the operator sees them.
async fn feed(server: &Server, token: &str, since: u64) -> Vec<Value> {
    let (status, page) = server
        .get_json(&format!("/api/v1/changes?since={since}"), token)
        .await;
    assert_eq!(status, StatusCode::OK);
    page["entries"].as_array().expect("entries").clone()
}

#[tokio::test]
async fn a_work_order_insert_creates_it_assigned_and_a_resend_changes_nothing() {
    let server = Server::start().await;
    let (erp, op) = (server.token("erp-all").await, server.token("op").await);
    let event = envelope(
        "WORK_ORDER",
        "INSERT",
        new_order("wo-ev-1", "tech-1"),
        "2026-05-01T12:00:00.123Z",
    );
    let (answer, replayed) = accepted(&server, &erp, &event, None, StatusCode::CREATED).await;
    assert!(!replayed);
    assert_eq!(answer["collection"], "work_orders");
    assert_eq!(answer["id"], "wo-ev-1");
    assert_eq!(answer["op"], "create");
    assert_eq!(answer["idempotency_key"].as_str().map(str::len), Some(64));
    let (status, order) = server.get_json("/api/v1/work-orders/wo-ev-1", &op).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order["assignee"], "tech-1");
    assert_eq!(order["status"], "assigned");
    assert_eq!(order["priority"], "high");
    assert_eq!(order["number"], "CC-wo-ev-1");
    assert_eq!(order["created_by"], "erp-all");
    assert_eq!(order["heads"], answer["heads"]);
    // The assigned technician sees it.
    let tech = server.token("tech-1").await;
    let (status, _) = server.get_json("/api/v1/work-orders/wo-ev-1", &tech).await;
    assert_eq!(status, StatusCode::OK);

    // The same event again, re-stamped by its sender: the first answer,
    // and nothing written.
    let before = written(&server);
    let mut resend = event.clone();
    resend["header"]["generatedOn"] = json!("2026-05-01T12:05:00Z");
    let (again, replayed) = accepted(&server, &erp, &resend, None, StatusCode::CREATED).await;
    assert!(replayed);
    assert_eq!(again, answer);
    assert_eq!(written(&server), before);
    assert!(feed(&server, &op, before.0).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_insert_without_an_id_gets_one_from_its_key_and_is_created_once() {
    let server = Server::start().await;
    let erp = server.token("erp-all").await;
    let mut data = new_order("unused", "tech-1");
    data.as_object_mut().expect("object").remove("id");
    data.as_object_mut().expect("object").remove("number");
    let event = envelope("WORK_ORDER", "INSERT", data, "2026-05-01T12:00:00Z");
    // Eight sends of one event at once: one is applied, every answer is
    // the same, one work order exists.
    let answers = send_together(&server, &erp, &event, "call-991", 8).await;
    assert!(
        answers
            .iter()
            .all(|(status, _, _)| *status == StatusCode::CREATED),
        "{answers:?}"
    );
    let first = &answers[0].2;
    assert!(
        answers.iter().all(|(_, _, answer)| answer == first),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
    let id = first["id"].as_str().expect("id");
    assert!(id.starts_with("ev-"), "{id}");
    assert_eq!(first["idempotency_key"], "call-991");
    let op = server.token("op").await;
    let entries = feed(&server, &op, 0).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["id"], id);
    let (_, order) = server
        .get_json(&format!("/api/v1/work-orders/{id}"), &op)
        .await;
    // One of the central's first numbers of the year: sends racing past
    // the key check each take one before one create wins (a gap, never a
    // duplicate).
    let year = &fieldsync_node::clock::now_rfc3339()[..4];
    let number = order["number"].as_str().expect("a number");
    let sequence = number
        .strip_prefix(&format!("WO-{year}-"))
        .and_then(|sequence| sequence.parse::<u32>().ok());
    assert!(
        sequence.is_some_and(|n| (1..=8).contains(&n)) && number.len() == 14,
        "{order}"
    );
    server.stop().await;
}

/// `count` sends of `event` under `key` at once: (status, replayed, body)
/// of each.
async fn send_together(
    server: &Server,
    token: &str,
    event: &Value,
    key: &str,
    count: usize,
) -> Vec<(StatusCode, bool, Value)> {
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (client, url) = (server.client.clone(), format!("{}{EVENTS}", server.url));
        let (token, body, key) = (token.to_string(), event.clone(), key.to_string());
        sends.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .expect("request");
            let replayed = response.headers().contains_key("idempotent-replayed");
            let status = response.status();
            (
                status,
                replayed,
                response.json::<Value>().await.expect("json"),
            )
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = sends.join_next().await {
        answers.push(joined.expect("send"));
    }
    answers
}

#[tokio::test]
async fn racing_sends_of_an_update_apply_it_once() {
    let server = Server::start().await;
    let (erp, op) = (server.token("erp-all").await, server.token("op").await);
    server.create("wo-race", Some("tech-1")).await;
    let before = server.store.last_seq();
    let update = envelope(
        "WORK_ORDER",
        "UPDATE",
        json!({"id": "wo-race", "assignee": "tech-2"}),
        "2026-05-01T12:00:00Z",
    );
    // Hold the document's lock until every send waits for it: each has
    // found the key unused, so each loser makes its edit on the document
    // after the winner and has it refused with its key record. The
    // document must hold the winner's change only.
    let document = server.store.load("wo-race").expect("load").expect("cached");
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = tokio::task::spawn_blocking(move || {
        let _guard = document.lock().expect("lock");
        let _ = locked.send(());
        let _ = released.recv();
    });
    is_locked.await.expect("locked");
    let (answers, ()) = tokio::join!(
        send_together(&server, &erp, &update, "reassign-1", 4),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let _ = release.send(());
        }
    );
    holder.await.expect("holder");
    let first = &answers[0].2;
    assert!(
        answers
            .iter()
            .all(|(status, _, answer)| *status == StatusCode::OK && answer == first),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
    assert_eq!(server.store.last_seq(), before + 1);
    let (_, order) = server.get_json("/api/v1/work-orders/wo-race", &op).await;
    assert_eq!(order["assignee"], "tech-2");
    assert_eq!(order["heads"], first["heads"]);
    server.stop().await;
}

#[tokio::test]
async fn update_reassigns_and_delete_tombstones() {
    let server = Server::start().await;
    let (erp, op) = (server.token("erp-all").await, server.token("op").await);
    let created = envelope(
        "WORK_ORDER",
        "INSERT",
        new_order("wo-ev-2", "tech-1"),
        "2026-05-01T12:00:00Z",
    );
    accepted(&server, &erp, &created, None, StatusCode::CREATED).await;
    let update = envelope(
        "WORK_ORDER",
        "UPDATE",
        json!({"id": "wo-ev-2", "assignee": "tech-2", "priority": "urgent"}),
        "2026-05-01T12:10:00Z",
    );
    let (answer, _) = accepted(&server, &erp, &update, None, StatusCode::OK).await;
    assert_eq!(answer["op"], "update");
    let (_, order) = server.get_json("/api/v1/work-orders/wo-ev-2", &op).await;
    assert_eq!(order["assignee"], "tech-2");
    assert_eq!(order["priority"], "urgent");
    assert_eq!(order["heads"], answer["heads"]);
    // `assignee: null` unassigns, as in a PATCH.
    let unassign = envelope(
        "WORK_ORDER",
        "UPDATE",
        json!({"id": "wo-ev-2", "assignee": null}),
        "2026-05-01T12:11:00Z",
    );
    accepted(&server, &erp, &unassign, None, StatusCode::OK).await;
    let (_, order) = server.get_json("/api/v1/work-orders/wo-ev-2", &op).await;
    assert_eq!(order["assignee"], Value::Null);

    // A DELETE carries the row's last values; only `id` counts.
    let delete = envelope(
        "WORK_ORDER",
        "DELETE",
        json!({"id": "wo-ev-2", "title": "whatever", "status": "x"}),
        "2026-05-01T12:20:00Z",
    );
    let (answer, _) = accepted(&server, &erp, &delete, None, StatusCode::OK).await;
    assert_eq!(answer["op"], "delete");
    // Deleted: gone for `GET`, listed among the deleted ones.
    let (status, _) = server.get_json("/api/v1/work-orders/wo-ev-2", &op).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, deleted) = server
        .get_json("/api/v1/work-orders?deleted=true", &op)
        .await;
    assert!(
        deleted["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["id"] == "wo-ev-2" && item["deleted"] == true),
        "{deleted}"
    );
    // Deleting it again (another event) is refused as REST refuses it.
    let before = written(&server);
    let again = envelope(
        "WORK_ORDER",
        "DELETE",
        json!({"id": "wo-ev-2"}),
        "2026-05-01T12:21:00Z",
    );
    let body = problem(
        post(&server, &erp, &again, None).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("content.data"),
        "{body}"
    );
    assert_eq!(written(&server), before);
    server.stop().await;
}

#[tokio::test]
async fn a_record_event_lands_on_the_changes_feed() {
    let server = Server::start().await;
    let (erp, op) = (server.token("erp-all").await, server.token("op").await);
    let person = json!({"id": 42, "nome": "Ana Souza", "cidade": "São Paulo"});
    let insert = envelope("PESSOA", "INSERT", person.clone(), "2026-05-01T12:00:00Z");
    let (answer, _) = accepted(&server, &erp, &insert, None, StatusCode::CREATED).await;
    assert_eq!(answer["collection"], "pessoa");
    assert_eq!(answer["id"], "42");
    assert_eq!(answer["op"], "create");
    assert!(answer.get("heads").is_none(), "{answer}");
    let entries = feed(&server, &op, 0).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["collection"], "pessoa");
    assert_eq!(entries[0]["id"], "42");
    assert_eq!(entries[0]["op"], "create");
    let (status, record) = server
        .get_json("/api/v1/collections/pessoa/records/42", &erp)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["value"], person);

    // A resend writes nothing and puts nothing on the feed.
    let before = written(&server);
    let (again, replayed) = accepted(&server, &erp, &insert, None, StatusCode::CREATED).await;
    assert!(replayed);
    assert_eq!(again, answer);
    assert_eq!(written(&server), before);
    assert!(feed(&server, &op, before.0).await.is_empty());

    let update = envelope(
        "PESSOA",
        "UPDATE",
        json!({"id": 42, "nome": "Ana S. Lima"}),
        "2026-05-01T12:01:00Z",
    );
    let (answer, _) = accepted(&server, &erp, &update, None, StatusCode::OK).await;
    assert_eq!(answer["op"], "update");
    let delete = envelope(
        "PESSOA",
        "DELETE",
        json!({"id": 42}),
        "2026-05-01T12:02:00Z",
    );
    let (answer, _) = accepted(&server, &erp, &delete, None, StatusCode::OK).await;
    assert_eq!(answer["op"], "delete");
    // The feed shows a record's latest change in a page: the delete, at
    // version 3.
    let entries = feed(&server, &op, before.0).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["op"], "delete");
    assert_eq!(entries[0]["version"], 3);
    // Deleting what is not there changes nothing, and says so.
    let seq = server.store.last_seq();
    let gone = envelope(
        "PESSOA",
        "DELETE",
        json!({"key": "42"}),
        "2026-05-01T12:03:00Z",
    );
    let (answer, _) = accepted(&server, &erp, &gone, None, StatusCode::OK).await;
    assert_eq!(answer["op"], Value::Null);
    assert_eq!(server.store.last_seq(), seq);
    server.stop().await;
}

#[tokio::test]
async fn a_used_idempotency_key_with_another_event_is_a_conflict() {
    let server = Server::start().await;
    let (erp, op) = (server.token("erp-all").await, server.token("op").await);
    let first = envelope(
        "PESSOA",
        "INSERT",
        json!({"id": "P-1", "nome": "Ana"}),
        "2026-05-01T12:00:00Z",
    );
    let (answer, _) = accepted(&server, &erp, &first, Some("k-1"), StatusCode::CREATED).await;
    assert_eq!(answer["idempotency_key"], "k-1");
    let before = written(&server);
    let other = envelope(
        "PESSOA",
        "INSERT",
        json!({"id": "P-1", "nome": "Bia"}),
        "2026-05-01T12:00:00Z",
    );
    let body = problem(
        post(&server, &erp, &other, Some("k-1")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(body["type"], "urn:fieldsync:problem:conflict");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Idempotency-Key"),
        "{body}"
    );
    assert_eq!(written(&server), before);
    // The same event, sent again later under its key, is a replay.
    let mut resend = first.clone();
    resend["header"]["generatedOn"] = json!("2026-05-03T08:00:00Z");
    let (again, replayed) =
        accepted(&server, &erp, &resend, Some("k-1"), StatusCode::CREATED).await;
    assert!(replayed);
    assert_eq!(again, answer);
    // Keys are per client: the operator's `k-1` is another key.
    let (mine, replayed) = accepted(&server, &op, &other, Some("k-1"), StatusCode::OK).await;
    assert!(!replayed);
    assert_eq!(mine["op"], "update");
    server.stop().await;
}

fn remove(object: &mut Value, member: &str) {
    object.as_object_mut().expect("an object").remove(member);
}

/// `envelope()` of a valid record event with `edit` applied.
fn broken(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = envelope(
        "PESSOA",
        "INSERT",
        json!({"id": "P-9"}),
        "2026-05-01T12:00:00Z",
    );
    edit(&mut body);
    body
}

/// A WORK_ORDER envelope of `action` with `data`.
fn work_order(action: &str, data: Value) -> Value {
    envelope("WORK_ORDER", action, data, "2026-05-01T12:00:00Z")
}

/// One malformed event and the problem it must get: its status, its
/// `type` when the case pins it, and a fragment its `detail` must hold.
struct Malformed {
    case: &'static str,
    body: Value,
    status: StatusCode,
    kind: Option<&'static str>,
    detail: String,
}

/// A 422 case.
fn unprocessable(case: &'static str, body: Value, detail: &str) -> Malformed {
    Malformed {
        case,
        body,
        status: StatusCode::UNPROCESSABLE_ENTITY,
        kind: None,
        detail: detail.to_string(),
    }
}

/// A 413 `body-too-large` case.
fn too_large(case: &'static str, body: Value, detail: String) -> Malformed {
    Malformed {
        case,
        body,
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: Some("urn:fieldsync:problem:body-too-large"),
        detail,
    }
}

/// Post each case as `erp-all`: each must be its problem, and none may
/// write anything.
async fn refuse_each(cases: Vec<Malformed>) {
    let server = Server::start().await;
    let erp = server.token("erp-all").await;
    let before = written(&server);
    for Malformed {
        case,
        body,
        status,
        kind,
        detail,
    } in cases
    {
        let response = post(&server, &erp, &body, None).await;
        assert_eq!(response.status(), status, "{case}");
        let answer = problem(response, status).await;
        if let Some(kind) = kind {
            assert_eq!(answer["type"], kind, "{case}: {answer}");
        }
        let text = answer["detail"].as_str().unwrap_or_default();
        assert!(
            text.contains(&detail),
            "{case}: `{text}` should hold `{detail}`"
        );
        assert_eq!(written(&server), before, "{case} wrote something");
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_envelopes_name_the_member_and_write_nothing() {
    refuse_each(vec![
        unprocessable(
            "missing header",
            broken(|b| remove(b, "header")),
            "`header` is missing",
        ),
        unprocessable(
            "missing action",
            broken(|b| remove(&mut b["content"], "action")),
            "`content.action` is missing",
        ),
        unprocessable(
            "bad generatedOn",
            broken(|b| b["header"]["generatedOn"] = json!("01/05/2026")),
            "`header.generatedOn` must be an RFC 3339 time",
        ),
        unprocessable(
            "bad createdAt",
            broken(|b| b["content"]["createdAt"] = json!("2026-05-01T25:00:00Z")),
            "`content.createdAt` must be an RFC 3339 time",
        ),
        unprocessable(
            "unknown action",
            broken(|b| b["content"]["action"] = json!("MERGE")),
            "`content.action` must be INSERT, UPDATE or DELETE",
        ),
        unprocessable(
            "data not an object",
            broken(|b| b["content"]["data"] = json!([1, 2])),
            "`content.data` must be an object, not an array",
        ),
        unprocessable(
            "schemaVersion an object",
            broken(|b| b["content"]["schemaVersion"] = json!({"major": 1})),
            "`content.schemaVersion` must be a string or a number, not an object",
        ),
        unprocessable(
            "originApp a number",
            broken(|b| b["content"]["originApp"] = json!(7)),
            "`content.originApp` must be a string, not a number",
        ),
        unprocessable(
            "internal collection",
            broken(|b| b["content"]["schemaName"] = json!("EVENT_KEYS")),
            "`content.schemaName`",
        ),
        unprocessable(
            "record without a key",
            broken(|b| b["content"]["data"] = json!({"nome": "Ana"})),
            "`content.data.id` is missing",
        ),
    ])
    .await;
}

#[tokio::test]
async fn malformed_work_order_data_names_the_member_and_writes_nothing() {
    let mut missing_customer = new_order("wo-bad", "tech-1");
    remove(&mut missing_customer, "customer");
    refuse_each(vec![
        unprocessable(
            "work order without customer",
            work_order("INSERT", missing_customer),
            "`content.data`: Failed to deserialize",
        ),
        unprocessable(
            "customer name a number",
            work_order("INSERT", json!({"title": "t", "customer": {"name": 5}})),
            "customer.name",
        ),
        unprocessable(
            "unknown work-order field",
            work_order(
                "INSERT",
                json!({"title": "t", "customer": {"name": "A"}, "colour": "red"}),
            ),
            "unknown field `colour`",
        ),
        unprocessable(
            "assignee not a technician",
            work_order("INSERT", new_order("wo-bad", "op")),
            "`content.data`: `assignee` `op` is not an active technician",
        ),
        unprocessable(
            "update without id",
            work_order("UPDATE", json!({"assignee": "tech-1"})),
            "`content.data.id` is missing",
        ),
        unprocessable(
            "update of no work order",
            work_order("UPDATE", json!({"id": "wo-none", "priority": "low"})),
            "`content.data.id`: no work order `wo-none`",
        ),
        unprocessable(
            "update naming nothing",
            work_order("UPDATE", json!({"id": "wo-none"})),
            "the patch names no field to change",
        ),
    ])
    .await;
}

#[tokio::test]
async fn oversized_events_are_413_naming_the_limit_and_write_nothing() {
    let body_bytes_max = GatewayConfig::default().body_bytes_max;
    refuse_each(vec![
        too_large(
            "data over a record",
            broken(|b| b["content"]["data"]["blob"] = json!("x".repeat(70_000))),
            "`content.data` is".into(),
        ),
        too_large(
            "huge body",
            broken(|b| b["content"]["data"]["blob"] = json!("x".repeat(1_100_000))),
            body_bytes_max.to_string(),
        ),
    ])
    .await;
}

#[tokio::test]
async fn bodies_that_are_not_json_and_bad_idempotency_keys_are_400() {
    let server = Server::start().await;
    let erp = server.token("erp-all").await;
    let before = written(&server);
    let raw = server
        .client
        .post(format!("{}{EVENTS}", server.url))
        .bearer_auth(&erp)
        .header("content-type", "application/json")
        .body("{\"header\": ")
        .send()
        .await
        .expect("request");
    problem(raw, StatusCode::BAD_REQUEST).await;
    let valid = broken(|_| {});
    let answer = problem(
        post(&server, &erp, &valid, Some("two words")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(answer["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("Idempotency-Key"));
    let long = "k".repeat(201);
    problem(
        post(&server, &erp, &valid, Some(&long)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(written(&server), before);
    server.stop().await;
}

#[tokio::test]
async fn only_operators_and_events_write_clients_may_post() {
    let server = Server::start().await;
    let event = broken(|_| {});
    for user in ["tech-1", "erp-read", "erp-none"] {
        let token = server.token(user).await;
        let body = problem(
            post(&server, &token, &event, None).await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert_eq!(body["type"], "urn:fieldsync:problem:forbidden", "{user}");
    }
    let anonymous = server
        .client
        .post(format!("{}{EVENTS}", server.url))
        .json(&event)
        .send()
        .await
        .expect("request");
    problem(anonymous, StatusCode::UNAUTHORIZED).await;
    assert_eq!(written(&server), (server.base_seq, 0));
    let op = server.token("op").await;
    accepted(&server, &op, &event, None, StatusCode::CREATED).await;
    server.stop().await;
}
