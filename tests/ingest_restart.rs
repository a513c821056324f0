//! ERP batches across crashes: the central (`fieldsync run`, a real
//! process) is killed with SIGKILL between two messages and again after
//! the last message, before the summary. After each restart the sender
//! goes on (resending what it is unsure of); the summary commits the
//! batch with every row once: nothing lost, nothing doubled. The CLI then
//! shows the batch and the ERP's entities from the stopped node.

mod sync_support;

use fieldsync_gateway::ingest::proto::table_stream_client::TableStreamClient;
use fieldsync_gateway::ingest::proto::{
    BatchSummary, RowColumn, Schema, SchemaColumn, SchemaPrimaryKey, Table, TableRow,
};
use sync_support::*;

const ERP: &str = "protheus";
const BATCH: i64 = 1_780_000_000;
const ROWS_PER_MESSAGE: usize = 200;

fn message(number: i32) -> Table {
    let rows: Vec<TableRow> = (0..ROWS_PER_MESSAGE)
        .map(|i| TableRow {
            columns: vec![
                RowColumn {
                    name: "A1_COD".into(),
                    value: format!("{number:03}{i:04}"),
                },
                RowColumn {
                    name: "A1_NOME".into(),
                    value: format!("Customer {number}-{i}"),
                },
            ],
        })
        .collect();
    Table {
        table_name: "SA1010".into(),
        erp: ERP.into(),
        record_count: rows.len() as i32,
        rows,
        schema: Some(Schema {
            flexible: false,
            export_data: true,
            columns: ["A1_COD", "A1_NOME"]
                .iter()
                .map(|n| SchemaColumn {
                    name: n.to_string(),
                    r#type: "varchar".into(),
                })
                .collect(),
            primary_key: Some(SchemaPrimaryKey {
                name: "SA1010_PK".into(),
                columns: vec!["A1_COD".into()],
            }),
        }),
        batch_id: BATCH,
        message_number: number,
        is_base_load: false,
    }
}

/// Send `messages` then, if `summary`, the summary; every answer must be
/// a success. Runs its own runtime: the node helpers are blocking.
fn send(base: &str, token: &str, messages: &[i32], summary: bool) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = TableStreamClient::connect(base.to_string())
            .await
            .expect("connect");
        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        for number in messages {
            let mut request = tonic::Request::new(message(*number));
            request.metadata_mut().insert("authorization", auth.clone());
            request
                .metadata_mut()
                .insert("x-sender-instance", "erp-host-1".parse().unwrap());
            let answer = client.write(request).await.expect("write").into_inner();
            assert!(answer.success, "message {number}: {:?}", answer.errors);
        }
        if summary {
            let mut request = tonic::Request::new(BatchSummary {
                erp: ERP.into(),
                batch_id: BATCH,
                message_count: 3,
                record_count: 3 * ROWS_PER_MESSAGE as i64,
                timestamp_start: None,
                timestamp_end: None,
            });
            request.metadata_mut().insert("authorization", auth);
            request
                .metadata_mut()
                .insert("x-sender-instance", "erp-host-1".parse().unwrap());
            let answer = client.summary(request).await.expect("summary").into_inner();
            assert!(answer.success, "summary: {:?}", answer.errors);
        }
    });
}

#[test]
fn a_batch_survives_kill_9_between_messages_and_before_its_summary() {
    let mut central = Node::init("central", "central");
    let port = free_tcp_port();
    central.enable_gateway(port);
    let added = central
        .run(&[
            "user",
            "add",
            "erp",
            "--role",
            "integration",
            "--scope",
            "batches:write",
        ])
        .success();
    let secret = printed(&added, "client secret:");
    let entities = central.dir.join("entities.json");
    std::fs::write(
        &entities,
        r#"{"uploadVersion": 2, "queries": [{"table": "SA1010", "filter": "D_E_L_E_T_ <> '*'"}]}"#,
    )
    .unwrap();
    central
        .run(&["entities", "set", ERP, entities.to_str().unwrap()])
        .success();
    let base = format!("http://127.0.0.1:{port}");

    central.start();
    send(&base, &gateway_token(&base, "erp", &secret), &[1, 2], false);
    central.kill9();
    central.start();
    // Unsure whether 2 landed, the sender sends it again, then 3.
    send(&base, &gateway_token(&base, "erp", &secret), &[2, 3], false);
    central.kill9();
    central.start();
    send(&base, &gateway_token(&base, "erp", &secret), &[], true);
    // A resent summary is answered as the first.
    send(&base, &gateway_token(&base, "erp", &secret), &[], true);
    central.stop();

    let status = central.run(&["status", "--json"]).success().json();
    assert_eq!(
        status["last_seq"],
        3 * ROWS_PER_MESSAGE as u64 + 1,
        "each row once on the changelog, after the user `erp`"
    );
    let shown = central
        .run(&[
            "batches",
            "show",
            &BATCH.to_string(),
            "--client",
            "erp",
            "--erp",
            ERP,
        ])
        .success()
        .json();
    assert_eq!(shown["state"], "committed");
    assert_eq!(shown["records"], 3 * ROWS_PER_MESSAGE as u64);
    assert_eq!(shown["messagesReceived"], serde_json::json!([1, 2, 3]));
    let listed = central
        .run(&["batches", "list", "--state", "committed"])
        .success();
    assert!(listed.stdout.contains(&BATCH.to_string()), "{listed:?}");
    let tables = central.run(&["entities", "list"]).success();
    assert!(tables.stdout.contains("SA1010"), "{tables:?}");
    central
        .run(&["batches", "list", "--state", "lost"])
        .failure_code(2);
    central.verify_clean();
}
