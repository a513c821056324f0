//! ERP batches end to end over a real port: a tonic client built from the
//! same `.proto` (gRPC `TableStream`), and reqwest for the HTTP twin, the
//! entities and the batch state. Time is moved by hand for the lease and
//! expiry, never slept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fieldsync_gateway::ingest::proto::table_stream_client::TableStreamClient;
use fieldsync_gateway::ingest::proto::{
    BatchSummary, RowColumn, Schema, SchemaColumn, SchemaPrimaryKey, Table, TableRow,
};
use fieldsync_gateway::GatewayConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::support::{problem, Options, Server};

const ERP: &str = "protheus";
const T0_MS: u64 = 1_800_000_000_000;

struct Clock(AtomicU64);

async fn server() -> (Server, Arc<Clock>) {
    let clock = Arc::new(Clock(AtomicU64::new(T0_MS)));
    let reader = clock.clone();
    let mut config = GatewayConfig::default();
    config.ingest.expiry_interval_ms = 20;
    config.ingest.batch_ttl_ms = 3_600_000;
    let server = Server::start_full(Options {
        config,
        clock: Some(Arc::new(move || reader.0.load(Ordering::SeqCst))),
        ..Options::default()
    })
    .await;
    (server, clock)
}

/// A gRPC client for `user`, as sender `instance`.
struct Sender {
    client: TableStreamClient<Channel>,
    token: String,
    instance: &'static str,
}

async fn sender(server: &Server, user: &str, instance: &'static str) -> Sender {
    let channel = Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .expect("grpc connect");
    Sender {
        client: TableStreamClient::new(channel).max_encoding_message_size(32 << 20),
        token: server.token(user).await,
        instance,
    }
}

impl Sender {
    /// `message` with this sender's metadata; no `authorization` at all
    /// when the token is empty (an anonymous caller).
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if !self.token.is_empty() {
            metadata.insert(
                "authorization",
                format!("Bearer {}", self.token).parse().unwrap(),
            );
        }
        metadata.insert("x-sender-instance", self.instance.parse().unwrap());
        request
    }

    /// `Write`; `Ok(errors)` (empty on success) or the gRPC status.
    async fn write(&mut self, table: Table) -> Result<Vec<String>, tonic::Status> {
        let request = self.request(table);
        let answer = self.client.write(request).await?.into_inner();
        assert_eq!(answer.success, answer.errors.is_empty(), "{answer:?}");
        Ok(answer.errors)
    }

    /// `Summary`; `Ok(errors)` (empty on success) or the gRPC status.
    async fn try_summary(
        &mut self,
        batch_id: i64,
        messages: i32,
        records: i64,
    ) -> Result<Vec<String>, tonic::Status> {
        let request = self.request(BatchSummary {
            erp: ERP.into(),
            batch_id,
            message_count: messages,
            record_count: records,
            timestamp_start: None,
            timestamp_end: None,
        });
        let answer = self.client.summary(request).await?.into_inner();
        assert_eq!(answer.success, answer.errors.is_empty(), "{answer:?}");
        Ok(answer.errors)
    }

    async fn summary(&mut self, batch_id: i64, messages: i32, records: i64) -> Vec<String> {
        self.try_summary(batch_id, messages, records)
            .await
            .expect("summary")
    }
}

fn schema(flexible: bool) -> Schema {
    Schema {
        flexible,
        export_data: true,
        columns: ["CODE", "NAME"]
            .iter()
            .map(|name| SchemaColumn {
                name: name.to_string(),
                r#type: "varchar".into(),
            })
            .collect(),
        primary_key: Some(SchemaPrimaryKey {
            name: "PK".into(),
            columns: vec!["CODE".into()],
        }),
    }
}

fn row(columns: &[(&str, &str)]) -> TableRow {
    TableRow {
        columns: columns
            .iter()
            .map(|(name, value)| RowColumn {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
    }
}

/// Message `number` of `batch_id` to table `CUSTOMERS`, with rows coded
/// `codes` named after `tag`.
fn table(batch_id: i64, number: i32, codes: &[&str], tag: &str) -> Table {
    let rows: Vec<TableRow> = codes
        .iter()
        .map(|code| row(&[("CODE", code), ("NAME", &format!("{tag}-{code}"))]))
        .collect();
    Table {
        table_name: "CUSTOMERS".into(),
        erp: ERP.into(),
        record_count: rows.len() as i32,
        rows,
        schema: Some(schema(false)),
        batch_id,
        message_number: number,
        is_base_load: false,
    }
}

async fn record(server: &Server, key: &str) -> Option<Value> {
    let store = server.store.clone();
    let key = key.to_string();
    tokio::task::spawn_blocking(move || store.record("customers", &key).unwrap())
        .await
        .unwrap()
        .filter(|record| !record.deleted)
        .map(|record| serde_json::from_slice(&record.value).unwrap())
}

async fn live_customers(server: &Server) -> Vec<String> {
    let store = server.store.clone();
    tokio::task::spawn_blocking(move || store.records("customers", None, 1000).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.key)
        .collect()
}

async fn batch(server: &Server, token: &str, batch_id: i64) -> Value {
    let (status, body) = server
        .get_json(&format!("/api/v1/batches/{batch_id}?erp={ERP}"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn three_messages_and_a_summary_commit_once() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let feed_before = server.store.last_seq();
    for (number, codes) in [(1, ["1", "2"]), (2, ["3", "4"]), (3, ["5", "6"])] {
        assert_eq!(
            erp.write(table(100, number, &codes, "v1")).await.unwrap(),
            Vec::<String>::new()
        );
    }
    // Staged, not yet applied.
    assert_eq!(record(&server, "1").await, None);
    assert_eq!(erp.summary(100, 3, 6).await, Vec::<String>::new());
    assert_eq!(record(&server, "3").await.unwrap()["NAME"], "v1-3");
    assert_eq!(live_customers(&server).await.len(), 6);
    // Each row is a change on the feed.
    assert_eq!(server.store.last_seq(), feed_before + 6);
    // A resend of a message and of the summary is answered as before.
    assert!(erp
        .write(table(100, 2, &["3", "4"], "v1"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp.summary(100, 3, 6).await.is_empty());
    assert_eq!(server.store.last_seq(), feed_before + 6, "nothing doubled");
    let token = server.token("erp-all").await;
    let state = batch(&server, &token, 100).await;
    assert_eq!(state["state"], "committed");
    assert_eq!(state["records"], 6);
    assert_eq!(state["messagesReceived"], json!([1, 2, 3]));
    // A late message of a committed batch is refused.
    let late = erp.write(table(100, 4, &["7"], "v1")).await.unwrap();
    assert!(late[0].contains("already committed"), "{late:?}");
}

#[tokio::test]
async fn gaps_and_repeats_are_reported_and_a_lost_message_can_be_resent() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let token = server.token("erp-all").await;
    // A gap: 1, 2, 4.
    for number in [1, 2, 4] {
        assert!(erp
            .write(table(200, number, &[&number.to_string()], "g"))
            .await
            .unwrap()
            .is_empty());
    }
    let errors = erp.summary(200, 3, 3).await;
    assert_eq!(
        errors,
        [
            "missing messages: 3",
            "extra messages beyond messageCount 3: 4"
        ]
    );
    let state = batch(&server, &token, 200).await;
    assert_eq!(state["state"], "open");
    assert_eq!(state["missing"], json!([3]));
    assert_eq!(state["errors"].as_array().unwrap().len(), 2);
    // A repeat: 1, 2, 2 (another payload), 3.
    assert!(erp
        .write(table(300, 1, &["a"], "r"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp
        .write(table(300, 2, &["b"], "r"))
        .await
        .unwrap()
        .is_empty());
    let repeat = erp.write(table(300, 2, &["c"], "r")).await.unwrap();
    assert!(
        repeat[0].contains("already received with a different payload"),
        "{repeat:?}"
    );
    assert!(erp
        .write(table(300, 3, &["d"], "r"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(erp.summary(300, 4, 4).await, ["missing messages: 4"]);
    // Lost message 3 of batch 400: the summary says so, the sender resends
    // it and summarises again; everything lands once.
    assert!(erp
        .write(table(400, 1, &["x1"], "l"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp
        .write(table(400, 2, &["x2"], "l"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp
        .write(table(400, 4, &["x4"], "l"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(erp.summary(400, 4, 4).await, ["missing messages: 3"]);
    assert_eq!(
        record(&server, "x1").await,
        None,
        "an incomplete batch applies nothing"
    );
    assert!(erp
        .write(table(400, 3, &["x3"], "l"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp.summary(400, 4, 4).await.is_empty());
    for code in ["x1", "x2", "x3", "x4"] {
        assert!(record(&server, code).await.is_some(), "{code}");
    }
    // recordCount must match the rows.
    let mut wrong = table(500, 1, &["y"], "c");
    wrong.record_count = 2;
    let errors = erp.write(wrong).await.unwrap();
    assert!(
        errors[0].contains("recordCount is 2 but the message holds 1 rows"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn oversized_messages_are_refused_and_the_connection_stays_usable() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let big_value = "x".repeat(60_000);
    let codes: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let mut big = table(600, 1, &[], "big");
    big.rows = codes
        .iter()
        .map(|code| row(&[("CODE", code), ("NAME", &big_value)]))
        .collect();
    big.record_count = big.rows.len() as i32;
    let errors = erp
        .write(big)
        .await
        .expect("answered, not a transport error");
    assert!(
        errors[0].contains("over the limit of 5242880"),
        "{errors:?}"
    );
    // The same connection still works.
    assert!(erp
        .write(table(600, 1, &["ok"], "small"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp.summary(600, 1, 1).await.is_empty());
    assert!(record(&server, "ok").await.is_some());
    // Past the decode limit (16 MiB) tonic itself answers OUT_OF_RANGE,
    // and the connection still works after that too.
    let mut huge = table(601, 1, &[], "huge");
    huge.rows = (0..300)
        .map(|i| row(&[("CODE", &i.to_string()), ("NAME", &big_value)]))
        .collect();
    huge.record_count = 300;
    let status = erp.write(huge).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(erp
        .write(table(601, 1, &["ok2"], "small"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn strict_and_flexible_schemas_deletes_and_base_loads() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let mut unknown = table(700, 1, &[], "s");
    unknown.rows = vec![row(&[("CODE", "1"), ("NAME", "n"), ("COLOR", "red")])];
    unknown.record_count = 1;
    let errors = erp.write(unknown.clone()).await.unwrap();
    assert!(
        errors[0].contains("column `COLOR` is not in the schema"),
        "{errors:?}"
    );
    unknown.schema = Some(schema(true));
    assert!(erp.write(unknown).await.unwrap().is_empty());
    assert!(erp
        .write(table(700, 2, &["2", "3", "4"], "s"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp.summary(700, 2, 4).await.is_empty());
    assert_eq!(record(&server, "1").await.unwrap()["COLOR"], "red");
    // DELETED=true deletes; the primary key decides update vs insert.
    let mut delta = table(701, 1, &["2"], "updated");
    delta.rows.push(row(&[("CODE", "3"), ("DELETED", "true")]));
    delta.record_count = 2;
    assert!(erp.write(delta).await.unwrap().is_empty());
    assert!(erp.summary(701, 1, 2).await.is_empty());
    assert_eq!(record(&server, "2").await.unwrap()["NAME"], "updated-2");
    assert_eq!(record(&server, "3").await, None);
    assert_eq!(live_customers(&server).await, ["1", "2", "4"]);
    // A base load replaces the table: what it does not hold is deleted.
    let mut load = table(702, 1, &["4", "9"], "base");
    load.is_base_load = true;
    assert!(erp.write(load).await.unwrap().is_empty());
    assert!(erp.summary(702, 1, 2).await.is_empty());
    assert_eq!(live_customers(&server).await, ["4", "9"]);
}

#[tokio::test]
async fn one_sender_holds_the_lease_until_it_goes_quiet() {
    let (server, clock) = server().await;
    let mut a = sender(&server, "erp-all", "host-a").await;
    let mut b = sender(&server, "erp-all", "host-b").await;
    assert!(a
        .write(table(800, 1, &["1"], "a"))
        .await
        .unwrap()
        .is_empty());
    let refused = b.write(table(801, 1, &["2"], "b")).await.unwrap();
    assert!(
        refused[0].contains("`host-a` holds the upload lease for ERP `protheus`"),
        "{refused:?}"
    );
    // Over HTTP too, as 409 naming the holder.
    let token = server.token("erp-all").await;
    let response = server
        .client
        .post(format!("{}/api/v1/batches/801/summary", server.url))
        .bearer_auth(&token)
        .header("x-sender-instance", "host-b")
        .json(&json!({"erp": ERP, "messageCount": 1, "recordCount": 1}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::CONFLICT).await;
    assert!(
        body["detail"].as_str().unwrap().contains("host-a"),
        "{body}"
    );
    // host-a goes quiet past the lease (60 s): host-b takes over, and
    // host-a is the one refused now.
    clock.0.fetch_add(60_000, Ordering::SeqCst);
    assert!(b
        .write(table(801, 1, &["2"], "b"))
        .await
        .unwrap()
        .is_empty());
    assert!(b.summary(801, 1, 1).await.is_empty());
    let refused = a.write(table(800, 2, &["3"], "a")).await.unwrap();
    assert!(refused[0].contains("`host-b` holds"), "{refused:?}");
}

#[tokio::test]
async fn tokens_without_batches_write_are_refused() {
    let (server, _) = server().await;
    for user in ["erp-read", "tech-1"] {
        let mut client = sender(&server, user, "host-a").await;
        let status = client.write(table(900, 1, &["1"], "x")).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{user}: {status:?}"
        );
    }
    let mut forged = sender(&server, "erp-all", "host-a").await;
    forged.token = "not-a-token".into();
    let status = forged.write(table(900, 1, &["1"], "x")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(live_customers(&server).await, Vec::<String>::new());
}

fn http_message(number: i32, codes: &[&str]) -> Value {
    json!({
        "tableName": "CUSTOMERS",
        "erp": ERP,
        "messageNumber": number,
        "recordCount": codes.len(),
        "schema": {
            "flexible": false,
            "exportData": true,
            "columns": [{"name": "CODE", "type": "varchar"}, {"name": "NAME", "type": "varchar"}],
            "primaryKey": {"name": "PK", "columns": ["CODE"]}
        },
        "rows": codes.iter().map(|code| json!({"columns": [
            {"name": "CODE", "value": code},
            {"name": "NAME", "value": format!("h-{code}")}
        ]})).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn http_batches_follow_the_same_rules_and_path_as_grpc() {
    let (server, _) = server().await;
    let token = server.token("erp-all").await;
    let post = |path: String, body: Value| {
        let request = server
            .client
            .post(format!("{}{path}", server.url))
            .bearer_auth(&token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let ok = post(
        "/api/v1/batches/1000/messages".into(),
        http_message(1, &["h1"]),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    // The identical message over gRPC is a resend: accepted, nothing new.
    let mut erp = sender(&server, "erp-all", "default").await;
    let mut same = table(1000, 1, &["h1"], "h");
    same.schema.as_mut().unwrap().export_data = true;
    assert!(erp.write(same).await.unwrap().is_empty());
    let different = post(
        "/api/v1/batches/1000/messages".into(),
        http_message(1, &["zz"]),
    )
    .await;
    let body = problem(different, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["type"], "urn:fieldsync:problem:batch-rejected");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("different payload"),
        "{body}"
    );
    let _ = post(
        "/api/v1/batches/1000/messages".into(),
        http_message(3, &["h3"]),
    )
    .await;
    let summary = json!({"erp": ERP, "messageCount": 3, "recordCount": 3,
        "timestampStart": "2026-12-06T10:00:00Z", "timestampEnd": "2026-12-06T10:05:00.5-03:00"});
    let refused = post("/api/v1/batches/1000/summary".into(), summary.clone()).await;
    let body = problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"], json!(["missing messages: 2"]));
    let (_, listed) = server
        .get_json(&format!("/api/v1/batches?erp={ERP}&state=open"), &token)
        .await;
    assert_eq!(listed["items"][0]["missing"], json!([2]));
    let _ = post(
        "/api/v1/batches/1000/messages".into(),
        http_message(2, &["h2"]),
    )
    .await;
    let done = post("/api/v1/batches/1000/summary".into(), summary).await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["records"], 3);
    assert_eq!(record(&server, "h2").await.unwrap()["NAME"], "h-h2");
    let (_, open) = server
        .get_json(&format!("/api/v1/batches?erp={ERP}&state=open"), &token)
        .await;
    assert_eq!(open["items"], json!([]));
    // Malformed bodies are problems naming what is wrong.
    let bad = post("/api/v1/batches/1000/messages".into(), json!({"erp": ERP})).await;
    let body = problem(bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["detail"].as_str().unwrap().contains("tableName"),
        "{body}"
    );
    let bad_time = post(
        "/api/v1/batches/1001/summary".into(),
        json!({"erp": ERP, "messageCount": 1, "recordCount": 1, "timestampEnd": "yesterday"}),
    )
    .await;
    let body = problem(bad_time, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["detail"].as_str().unwrap().contains("timestampEnd"),
        "{body}"
    );
    // Another client cannot read this client's batches.
    let other = server.token("op").await;
    let (status, _) = server
        .get_json(&format!("/api/v1/batches/1000?erp={ERP}"), &other)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an operator names the client"
    );
    let (status, seen) = server
        .get_json(
            &format!("/api/v1/batches/1000?erp={ERP}&client=erp-all"),
            &other,
        )
        .await;
    assert_eq!(
        (status, seen["state"].clone()),
        (StatusCode::OK, json!("committed"))
    );
}

#[tokio::test]
async fn force_reload_until_a_base_load_commits_and_upload_versions() {
    let (server, _) = server().await;
    let op = server.token("op").await;
    let erp_token = server.token("erp-all").await;
    let config = json!({"uploadVersion": 2, "queries": [
        {"table": "CUSTOMERS", "filter": "ACTIVE = 1", "isNative": true, "metadata": {"every_s": 5}},
        {"table": "PRODUCTS"}
    ]});
    let response = server
        .call(
            Method::PUT,
            &format!("/api/v1/entities/{ERP}"),
            Some(&op),
            Some(&config),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let entities = |version: Option<&'static str>| {
        let mut request = server
            .client
            .get(format!("{}/api/v1/entities/{ERP}", server.url))
            .bearer_auth(&erp_token);
        if let Some(version) = version {
            request = request.header("x-upload-version", version);
        }
        async move { request.send().await.unwrap() }
    };
    let v2: Value = entities(Some("2")).await.json().await.unwrap();
    assert_eq!(v2["uploadVersion"], 2);
    assert_eq!(v2["queries"][0]["metadata"]["every_s"], 5);
    assert_eq!(v2["queries"][0]["forceReload"], false);
    let v1: Value = entities(None).await.json().await.unwrap();
    assert_eq!(v1["uploadVersion"], 1);
    assert!(v1["queries"][0].get("metadata").is_none(), "{v1}");
    problem(entities(Some("two")).await, StatusCode::BAD_REQUEST).await;
    // The operator asks for the table again.
    let reload = server
        .call(
            Method::POST,
            &format!("/api/v1/entities/{ERP}/CUSTOMERS/reload"),
            Some(&op),
            None,
        )
        .await;
    assert_eq!(reload.status(), StatusCode::OK);
    let missing = server
        .call(
            Method::POST,
            &format!("/api/v1/entities/{ERP}/NOPE/reload"),
            Some(&op),
            None,
        )
        .await;
    problem(missing, StatusCode::NOT_FOUND).await;
    let flagged: Value = entities(Some("2")).await.json().await.unwrap();
    assert_eq!(flagged["queries"][0]["forceReload"], true);
    // A delta does not clear it; a committed base load does.
    let mut erp = sender(&server, "erp-all", "host-a").await;
    assert!(erp
        .write(table(1100, 1, &["1"], "d"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp.summary(1100, 1, 1).await.is_empty());
    let still: Value = entities(Some("2")).await.json().await.unwrap();
    assert_eq!(still["queries"][0]["forceReload"], true);
    let mut load = table(1101, 1, &["1", "2"], "base");
    load.is_base_load = true;
    assert!(erp.write(load).await.unwrap().is_empty());
    let open: Value = entities(Some("2")).await.json().await.unwrap();
    assert_eq!(
        open["queries"][0]["forceReload"], true,
        "not before the summary"
    );
    assert!(erp.summary(1101, 1, 2).await.is_empty());
    let cleared: Value = entities(Some("2")).await.json().await.unwrap();
    assert_eq!(cleared["queries"][0]["forceReload"], false);
    // Integration clients read entities but do not set them.
    let response = server
        .call(
            Method::PUT,
            &format!("/api/v1/entities/{ERP}"),
            Some(&erp_token),
            Some(&config),
        )
        .await;
    problem(response, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn abandoned_batches_expire_and_may_start_again() {
    let (server, clock) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let token = server.token("erp-all").await;
    assert!(erp
        .write(table(1200, 1, &["1"], "old"))
        .await
        .unwrap()
        .is_empty());
    clock.0.fetch_add(3_600_000, Ordering::SeqCst);
    let mut state = Value::Null;
    for _ in 0..200 {
        state = batch(&server, &token, 1200).await;
        if state["state"] == "expired" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(state["state"], "expired");
    // Its staged rows are gone, and the id starts again.
    assert!(erp
        .write(table(1200, 1, &["1"], "new"))
        .await
        .unwrap()
        .is_empty());
    assert!(erp.summary(1200, 1, 1).await.is_empty());
    assert_eq!(record(&server, "1").await.unwrap()["NAME"], "new-1");
}

#[tokio::test]
async fn the_registry_lists_the_ingest_services() {
    let (server, _) = server().await;
    let response = server
        .call(Method::GET, "/api/v1/registry", None, None)
        .await;
    let services: Value = response.json().await.unwrap();
    let address = |name: &str| {
        services
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .map(|s| s["endpoints"][0]["address"].as_str().unwrap().to_string())
    };
    assert_eq!(address("tablestream").as_deref(), Some(server.url.as_str()));
    assert_eq!(
        address("entities"),
        Some(format!("{}/api/v1/entities", server.url))
    );
    assert_eq!(
        address("events"),
        Some(format!("{}/api/v1/events", server.url))
    );
}

/// Live records of `customers`.
fn customer_count(server: &Server) -> u64 {
    server
        .store
        .collection("customers")
        .expect("collection")
        .map_or(0, |info| info.live)
}

/// POST `body` to `path` with a bearer `token` (none: anonymous) and, when
/// given, `x-sender-instance`.
async fn http_post(
    server: &Server,
    path: &str,
    token: Option<&str>,
    instance: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = server
        .client
        .post(format!("{}{path}", server.url))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(instance) = instance {
        request = request.header("x-sender-instance", instance);
    }
    request.send().await.unwrap()
}

fn http_summary(messages: Value) -> Value {
    json!({"erp": ERP, "messageCount": messages, "recordCount": 1})
}

/// A refused HTTP batch request and the problem it must get: its status,
/// its type (`urn:fieldsync:problem:{slug}`) and what `detail` (and, for
/// `batch-rejected`, one of `errors`) must name.
struct BadInput {
    case: &'static str,
    path: String,
    instance: Option<&'static str>,
    body: Value,
    status: StatusCode,
    slug: &'static str,
    names: String,
}

impl BadInput {
    /// A body that does not fit: 422 `invalid-body`.
    fn new(case: &'static str, path: &str, body: Value, names: &str) -> BadInput {
        BadInput {
            case,
            path: path.to_string(),
            instance: None,
            body,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            slug: "invalid-body",
            names: names.to_string(),
        }
    }

    fn answered(self, status: StatusCode, slug: &'static str) -> BadInput {
        BadInput {
            status,
            slug,
            ..self
        }
    }

    fn sent_by(self, instance: &'static str) -> BadInput {
        BadInput {
            instance: Some(instance),
            ..self
        }
    }
}

/// `body` with `member` set to `value`.
fn with(mut body: Value, member: &str, value: Value) -> Value {
    body[member] = value;
    body
}

/// Bad input to batch 1500's messages and summary.
fn bad_http_inputs() -> Vec<BadInput> {
    let (messages, summary) = (
        "/api/v1/batches/1500/messages",
        "/api/v1/batches/1500/summary",
    );
    let message = || http_message(1, &["b1"]);
    let counted = || http_summary(json!(1));
    let (bad_id, rejected) = (StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY);
    let (id_path, id) = ("/api/v1/batches/not-a-number", "`not-a-number`");
    vec![
        BadInput::new(
            "messageNumber a string",
            messages,
            with(message(), "messageNumber", json!("one")),
            "messageNumber",
        ),
        BadInput::new(
            "messageCount a string",
            summary,
            http_summary(json!("three")),
            "messageCount",
        ),
        BadInput::new(
            "message batchId not the path's",
            messages,
            with(message(), "batchId", json!(1501)),
            "batchId",
        ),
        BadInput::new(
            "summary batchId not the path's",
            summary,
            with(counted(), "batchId", json!(1501)),
            "batchId",
        ),
        BadInput::new(
            "message path id",
            &format!("{id_path}/messages"),
            message(),
            id,
        )
        .answered(bad_id, "invalid-id"),
        BadInput::new(
            "summary path id",
            &format!("{id_path}/summary"),
            counted(),
            id,
        )
        .answered(bad_id, "invalid-id"),
        BadInput::new("message instance", messages, message(), "x-sender-instance")
            .answered(rejected, "batch-rejected")
            .sent_by("host a"),
        BadInput::new("summary instance", summary, counted(), "x-sender-instance")
            .answered(rejected, "batch-rejected")
            .sent_by("host a"),
    ]
}

/// How `answer` (status, content type, body) differs from what `case`
/// expects; empty when it is that problem.
fn mismatches(case: &BadInput, answer: (StatusCode, &str, &Value)) -> Vec<String> {
    let (status, content_type, body) = answer;
    let kind = format!("urn:fieldsync:problem:{}", case.slug);
    let named = |text: &Value| text.as_str().is_some_and(|t| t.contains(&case.names));
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let checks = [
        (status == case.status, format!("status {}", case.status)),
        (
            content_type == "application/problem+json",
            "problem+json".into(),
        ),
        (body["status"] == case.status.as_u16(), "`status`".into()),
        (body["type"] == kind.as_str(), format!("type {kind}")),
        (
            named(&body["detail"]),
            format!("detail naming {}", case.names),
        ),
        (
            case.slug != "batch-rejected" || errors.iter().any(named),
            format!("errors naming {}", case.names),
        ),
    ];
    checks
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, wanted)| format!("{}: wanted {wanted}, got {status} {body}", case.case))
        .collect()
}

/// Send each case as `token`; each must be its problem document (every
/// case is sent, and every mismatch reported at once).
async fn refuse_each(server: &Server, token: &str, cases: Vec<BadInput>) {
    let mut wrong = Vec::new();
    for case in cases {
        let response = http_post(server, &case.path, Some(token), case.instance, &case.body).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        wrong.extend(mismatches(&case, (status, &content_type, &body)));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn http_bad_input_is_a_problem_naming_what_is_wrong() {
    let (server, _) = server().await;
    let token = server.token("erp-all").await;
    refuse_each(&server, &token, bad_http_inputs()).await;
    assert_eq!(live_customers(&server).await, Vec::<String>::new());
    let (status, body) = server
        .get_json(&format!("/api/v1/batches?erp={ERP}"), &token)
        .await;
    assert_eq!(
        (status, &body["items"]),
        (StatusCode::OK, &json!([])),
        "nothing staged"
    );
}

/// Needs `deny_unknown_fields` on the message body.
#[tokio::test]
async fn http_messages_with_an_unknown_field_are_refused_naming_it() {
    let (server, _) = server().await;
    let token = server.token("erp-all").await;
    let mut typo = http_message(1, &["u1"]);
    typo["isBaseLoadd"] = json!(true);
    let case = BadInput::new(
        "unknown field isBaseLoadd",
        "/api/v1/batches/1550/messages",
        typo,
        "isBaseLoadd",
    );
    refuse_each(&server, &token, vec![case]).await;
    assert_eq!(live_customers(&server).await, Vec::<String>::new());
}

/// Needs the summary to check `messageCount` against
/// `messages_per_batch_max`.
#[tokio::test]
async fn a_summary_over_the_message_limit_is_refused_naming_it() {
    let (server, _) = server().await;
    let token = server.token("erp-all").await;
    let max = GatewayConfig::default().ingest.messages_per_batch_max;
    let staged = http_post(
        &server,
        "/api/v1/batches/1600/messages",
        Some(&token),
        None,
        &http_message(1, &["m1"]),
    )
    .await;
    assert_eq!(staged.status(), StatusCode::OK);
    let over = i32::try_from(max + 1).unwrap();
    let summary = http_summary(json!(over));
    let case = BadInput::new(
        "messageCount over the limit",
        "/api/v1/batches/1600/summary",
        summary,
        &max.to_string(),
    )
    .answered(StatusCode::UNPROCESSABLE_ENTITY, "batch-rejected");
    refuse_each(&server, &token, vec![case]).await;
    // gRPC answers the same errors.
    let mut erp = sender(&server, "erp-all", "default").await;
    let errors = erp.summary(1600, over, 1).await;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("messageCount") && e.contains(&max.to_string())),
        "{errors:?}"
    );
    assert_eq!(batch(&server, &token, 1600).await["state"], "open");
    assert_eq!(record(&server, "m1").await, None);
}

#[tokio::test]
async fn grpc_summaries_without_batches_write_and_anonymous_calls_are_refused() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    assert!(erp
        .write(table(1800, 1, &["1"], "x"))
        .await
        .unwrap()
        .is_empty());
    let mut reader = sender(&server, "erp-read", "host-a").await;
    let status = reader.try_summary(1800, 1, 1).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // No authorization metadata at all.
    let mut anonymous = sender(&server, "erp-all", "host-a").await;
    anonymous.token.clear();
    let status = anonymous
        .write(table(1800, 2, &["2"], "x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = anonymous.try_summary(1800, 1, 1).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    // The batch is as it was: open, message 1 only, nothing applied.
    let token = server.token("erp-all").await;
    let state = batch(&server, &token, 1800).await;
    assert_eq!(state["state"], "open");
    assert_eq!(state["messagesReceived"], json!([1]));
    assert_eq!(live_customers(&server).await, Vec::<String>::new());
}

#[tokio::test]
async fn rest_batches_need_batches_write() {
    let (server, _) = server().await;
    let message = http_message(1, &["a1"]);
    let summary = http_summary(json!(1));
    let list = format!("/api/v1/batches?erp={ERP}");
    for user in [Some("erp-read"), Some("tech-1"), None] {
        let token = match user {
            Some(user) => Some(server.token(user).await),
            None => None,
        };
        let (status, kind) = match user {
            Some(_) => (StatusCode::FORBIDDEN, "urn:fieldsync:problem:forbidden"),
            None => (
                StatusCode::UNAUTHORIZED,
                "urn:fieldsync:problem:unauthorized",
            ),
        };
        for (path, body) in [
            ("/api/v1/batches/1700/messages", &message),
            ("/api/v1/batches/1700/summary", &summary),
        ] {
            let response = http_post(&server, path, token.as_deref(), None, body).await;
            let body = problem(response, status).await;
            assert_eq!(body["type"], kind, "{user:?} {path}");
        }
        let response = server
            .call(Method::GET, &list, token.as_deref(), None)
            .await;
        let body = problem(response, status).await;
        assert_eq!(body["type"], kind, "{user:?} GET {list}");
    }
    // Nothing was staged for anyone.
    let op = server.token("op").await;
    let (status, listed) = server.get_json("/api/v1/batches", &op).await;
    assert_eq!((status, &listed["items"]), (StatusCode::OK, &json!([])));
    assert_eq!(live_customers(&server).await, Vec::<String>::new());
}

#[tokio::test]
async fn an_identical_repeat_inside_a_batch_is_accepted_and_lands_once() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let feed_before = server.store.last_seq();
    // 1, 2, 2 (the same payload again), 3.
    for (number, codes) in [
        (1, ["r1", "r2"]),
        (2, ["r3", "r4"]),
        (2, ["r3", "r4"]),
        (3, ["r5", "r6"]),
    ] {
        let errors = erp.write(table(1900, number, &codes, "rep")).await.unwrap();
        assert_eq!(errors, Vec::<String>::new(), "message {number}");
    }
    assert_eq!(erp.summary(1900, 3, 6).await, Vec::<String>::new());
    assert_eq!(server.store.last_seq(), feed_before + 6, "each row once");
    assert_eq!(
        live_customers(&server).await,
        ["r1", "r2", "r3", "r4", "r5", "r6"]
    );
    let token = server.token("erp-all").await;
    let state = batch(&server, &token, 1900).await;
    assert_eq!(state["state"], "committed");
    assert_eq!(state["records"], 6);
    assert_eq!(state["messagesReceived"], json!([1, 2, 3]));
}

/// The batch record lists every message: 300 must still fit a record.
#[tokio::test]
async fn three_hundred_one_row_messages_commit() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let feed_before = server.store.last_seq();
    for number in 1..=300 {
        let code = number.to_string();
        let errors = erp.write(table(2000, number, &[&code], "m")).await.unwrap();
        assert_eq!(errors, Vec::<String>::new(), "message {number}");
    }
    assert_eq!(erp.summary(2000, 300, 300).await, Vec::<String>::new());
    assert_eq!(server.store.last_seq(), feed_before + 300);
    assert_eq!(customer_count(&server), 300);
    let token = server.token("erp-all").await;
    let state = batch(&server, &token, 2000).await;
    assert_eq!(state["state"], "committed");
    assert_eq!(state["records"], 300);
    assert_eq!(
        state["messagesReceived"].as_array().map(Vec::len),
        Some(300)
    );
}

/// Many tiny rows: each staging chunk must still fit a record.
#[tokio::test]
async fn one_message_of_2500_short_rows_commits() {
    let (server, _) = server().await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let feed_before = server.store.last_seq();
    let mut message = table(2100, 1, &[], "s");
    message.rows = (1..=2500)
        .map(|i| row(&[("CODE", &i.to_string()), ("NAME", "x")]))
        .collect();
    message.record_count = 2500;
    assert_eq!(erp.write(message).await.unwrap(), Vec::<String>::new());
    assert_eq!(erp.summary(2100, 1, 2500).await, Vec::<String>::new());
    assert_eq!(server.store.last_seq(), feed_before + 2500);
    assert_eq!(customer_count(&server), 2500);
    for code in ["1", "1250", "2500"] {
        let value = record(&server, code).await.expect(code);
        assert_eq!(
            (&value["CODE"], &value["NAME"]),
            (&json!(code), &json!("x"))
        );
    }
}

/// Fill the store with `DATA_COLLECTIONS_MAX` collections, one record each.
async fn fill_collections(server: &Server) {
    let store = server.store.clone();
    tokio::task::spawn_blocking(move || {
        let max = fieldsync_schemas::collection::DATA_COLLECTIONS_MAX;
        let records = (0..max)
            .map(|i| fieldsync_node::store::RecordWrite {
                collection: format!("c{i:04}"),
                key: "k".into(),
                value: Some(b"{}".to_vec()),
                expect: fieldsync_node::store::Expect::Any,
                replicated_version: None,
            })
            .collect();
        store
            .submit(fieldsync_node::store::WriteSet {
                records,
                ..Default::default()
            })
            .unwrap()
            .wait()
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn batches_and_events_create_a_bounded_number_of_collections() {
    let (server, _) = server().await;
    fill_collections(&server).await;
    let mut erp = sender(&server, "erp-all", "host-a").await;
    let errors = erp.write(table(1300, 1, &["1"], "x")).await.unwrap();
    assert!(
        errors[0].contains("the most batches and events may create"),
        "{errors:?}"
    );
    // An existing collection still takes rows.
    let mut existing = table(1300, 1, &["1"], "x");
    existing.table_name = "C0007".into();
    assert!(erp.write(existing).await.unwrap().is_empty());
    let token = server.token("erp-all").await;
    let event = json!({
        "header": {"type": "NEW_THING", "generatedOn": "2026-12-06T10:00:00Z", "locale": "pt_BR"},
        "content": {"originApp": "rm", "appVersion": "12.1", "schemaName": "NEW_THING",
            "schemaVersion": "1", "action": "INSERT", "data": {"id": "1"},
            "createdAt": "2026-12-06T10:00:00.000Z", "token": "t"}
    });
    let response = server
        .call(Method::POST, "/api/v1/events", Some(&token), Some(&event))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("content.schemaName"),
        "{body}"
    );
}
