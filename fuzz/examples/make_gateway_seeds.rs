//! Writes the seed corpora of the gateway's targets
//! (`corpus/{tablestream,event_envelope,gateway_json}/seed-*`) from the
//! inputs the gateway's own tests send (`gateway/tests/it/batches.rs`,
//! `events.rs`, `access.rs`, `input.rs`, `webhooks.rs`, `commands.rs`,
//! `users.rs`, `records.rs`, `auth.rs`): `TableStream` messages as prost
//! encodes them, event envelopes, REST bodies. Run from `fuzz/`:
//! `cargo run --release --example make_gateway_seeds`.

use std::fs;
use std::path::Path;

use fieldsync_gateway::ingest::proto::{
    BatchSummary, RowColumn, Schema, SchemaColumn, SchemaPrimaryKey, Table, TableRow,
};
use prost::Message;
use serde_json::{json, Value};

const ERP: &str = "protheus";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn json(target: &str, name: &str, value: &Value) {
    write(target, name, &serde_json::to_vec(value).unwrap());
}

// ---------------------------------------------------------------------------
// TableStream (`batches.rs`).

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

/// Message `number` of `batch_id` to table `CUSTOMERS` (as the tests' `table`).
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

fn summary(batch_id: i64, messages: i32, records: i64) -> BatchSummary {
    BatchSummary {
        erp: ERP.into(),
        batch_id,
        message_count: messages,
        record_count: records,
        timestamp_start: None,
        timestamp_end: None,
    }
}

enum Step {
    Write(Table),
    Again,
    Summary(BatchSummary),
    Expire,
}

/// A `tablestream` sequence: the setting byte, then each step's kind
/// byte and length-delimited message.
fn sequence(setting: u8, steps: Vec<Step>) -> Vec<u8> {
    let mut out = vec![setting];
    for step in steps {
        match step {
            Step::Write(table) => {
                out.push(0);
                table.encode_length_delimited(&mut out).unwrap();
            }
            Step::Again => out.push(1),
            Step::Summary(summary) => {
                out.push(2);
                summary.encode_length_delimited(&mut out).unwrap();
            }
            Step::Expire => out.push(3),
        }
    }
    out
}

fn tablestream() {
    let t = "tablestream";
    write(
        t,
        "table",
        &table(100, 1, &["1", "2"], "v1").encode_to_vec(),
    );
    let mut flexible = table(101, 2, &["000123"], "flex");
    flexible.schema = Some(schema(true));
    flexible.rows[0].columns.push(RowColumn {
        name: "COLOR".into(),
        value: "red".into(),
    });
    flexible
        .rows
        .push(row(&[("CODE", "7"), ("DELETED", "true")]));
    flexible.record_count = 2;
    flexible.is_base_load = true;
    write(t, "table-flexible-delete-base", &flexible.encode_to_vec());
    let mut escaped = table(102, 1, &["a|b", "a\\", "\\b"], "esc");
    escaped.schema.as_mut().unwrap().primary_key = Some(SchemaPrimaryKey {
        name: "PK".into(),
        columns: vec!["CODE".into(), "NAME".into()],
    });
    write(t, "table-two-column-key", &escaped.encode_to_vec());
    let big: Vec<String> = (0..300).map(|i| format!("{i:06}")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    // Control characters and quotes grow sixfold and twofold as JSON: the
    // staged rows take two chunks.
    let mut wide = table(103, 1, &big, &"\u{1}\"".repeat(30));
    wide.record_count = big.len() as i32;
    write(t, "table-300-rows", &wide.encode_to_vec());
    write(t, "summary", &summary(100, 3, 6).encode_to_vec());
    // Three messages and a summary commit once; the summary again.
    write(
        t,
        "seq-commit",
        &sequence(
            0,
            vec![
                Step::Write(table(100, 1, &["1", "2"], "v1")),
                Step::Write(table(100, 2, &["3", "4"], "v1")),
                Step::Again,
                Step::Write(table(100, 3, &["5", "6"], "v1")),
                Step::Summary(summary(100, 3, 6)),
                Step::Summary(summary(100, 3, 6)),
                Step::Again,
            ],
        ),
    );
    // A gap, a different payload under a taken number, a late message.
    write(
        t,
        "seq-gap-and-repeat",
        &sequence(
            0,
            vec![
                Step::Write(table(200, 1, &["1"], "a")),
                Step::Write(table(200, 3, &["3"], "a")),
                Step::Summary(summary(200, 3, 3)),
                Step::Write(table(200, 1, &["1"], "other")),
                Step::Write(table(200, 2, &["2"], "a")),
                Step::Summary(summary(200, 3, 4)),
                Step::Summary(summary(200, 3, 3)),
            ],
        ),
    );
    // Tight limits; an abandoned batch expires and its id starts again.
    write(
        t,
        "seq-tight-expire",
        &sequence(
            1,
            vec![
                Step::Write(table(300, 1, &["1", "2", "3"], "a")),
                Step::Write(table(300, 5, &["5"], "a")),
                Step::Expire,
                Step::Summary(summary(300, 1, 3)),
                Step::Write(table(300, 1, &["1"], "b")),
                Step::Summary(summary(300, 1, 1)),
            ],
        ),
    );
}

// ---------------------------------------------------------------------------
// Event envelopes (`events.rs`, `ingest/event.rs`).

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

fn event_envelope() {
    let t = "event_envelope";
    let at = "2026-05-01T12:00:00.123Z";
    json(
        t,
        "wo-insert",
        &envelope("WORK_ORDER", "INSERT", new_order("cc-1", "tech-1"), at),
    );
    let mut no_id = new_order("x", "");
    no_id.as_object_mut().unwrap().remove("id");
    json(
        t,
        "wo-insert-derived-id",
        &envelope("work_order", "INSERT", no_id, at),
    );
    json(
        t,
        "wo-update",
        &envelope(
            "WORK_ORDER",
            "UPDATE",
            json!({"id": "cc-1", "assignee": null, "priority": "urgent"}),
            "2026-05-01T13:00:00Z",
        ),
    );
    json(
        t,
        "wo-delete",
        &envelope(
            "WORK_ORDER",
            "DELETE",
            json!({"id": "cc-1", "title": "old"}),
            at,
        ),
    );
    json(
        t,
        "record-insert",
        &json!({
            "header": {"type": "PESSOA", "generatedOn": "2026-05-01T12:00:01.5Z", "locale": "pt_BR"},
            "content": {
                "originApp": "erp-a", "appVersion": "12.1.2310", "schemaName": "PESSOA",
                "schemaVersion": 3, "action": "INSERT", "data": {"id": 7, "nome": "Ana", "tags": [1, 2.5, {"x": null}]},
                "createdAt": "2026-05-01T12:00:00.123-03:00", "token": "tenant-1",
                "extra": {"ignored": true}
            }
        }),
    );
    json(
        t,
        "record-delete-key",
        &envelope(
            "NEW_THING",
            "DELETE",
            json!({"key": "SKU 12/4"}),
            "2026-12-06T10:00:00Z",
        ),
    );
    json(
        t,
        "internal-collection",
        &envelope("webhooks", "INSERT", json!({"id": "h"}), at),
    );
}

// ---------------------------------------------------------------------------
// REST bodies (`access.rs`, `input.rs`, `batches.rs`, `webhooks.rs`,
// `commands.rs`, `users.rs`, `records.rs`, `auth.rs`).

fn gateway_json() {
    let t = "gateway_json";
    let bodies: Vec<(&str, Value)> = vec![
        ("create", new_order("wo-7", "tech-1")),
        (
            "create-minimal",
            json!({"id": "dup", "title": "t", "customer": {"name": "c"}}),
        ),
        ("patch", json!({"title": "New"})),
        ("patch-unassign", json!({"assignee": null})),
        (
            "patch-customer",
            json!({"customer": {"name": "Ana", "phone": "2"}, "scheduled_for": "2026-02-01T09:00:00Z"}),
        ),
        ("note", json!({"text": "n"})),
        ("material", json!({"sku": "S", "qty": 1.5})),
        ("material-state", json!({"state": "approved"})),
        ("status", json!({"to": "in_progress"})),
        (
            "status-note",
            json!({"to": "en_route", "note": "on my way"}),
        ),
        (
            "closure",
            json!({"resolution": "fixed", "signed_by": "Ann"}),
        ),
        ("report", json!({"text": "r"})),
        (
            "time",
            json!({"start": "2026-01-01T08:00:00Z", "end": "2026-01-01T09:00:00Z"}),
        ),
        (
            "batch-message",
            json!({
                "tableName": "CUSTOMERS", "erp": ERP, "messageNumber": 1, "recordCount": 2,
                "schema": {
                    "flexible": false, "exportData": true,
                    "columns": [{"name": "CODE", "type": "varchar"}, {"name": "NAME", "type": "varchar"}],
                    "primaryKey": {"name": "PK", "columns": ["CODE"]}
                },
                "rows": [
                    {"columns": [{"name": "CODE", "value": "1"}, {"name": "NAME", "value": "h-1"}]},
                    {"columns": [{"name": "CODE", "value": "2"}, {"name": "DELETED", "value": "true"}]}
                ]
            }),
        ),
        (
            "batch-summary",
            json!({"erp": ERP, "messageCount": 3, "recordCount": 3,
                   "timestampStart": "2026-12-06T10:00:00Z", "timestampEnd": "2026-12-06T10:05:00.5-03:00"}),
        ),
        (
            "entities",
            json!({"uploadVersion": 2, "queries": [
                {"table": "CUSTOMERS", "filter": "ACTIVE = 1", "isNative": true, "metadata": {"every_s": 5}},
                {"table": "PRODUCTS"}
            ]}),
        ),
        (
            "webhook",
            json!({"url": "http://127.0.0.1:9/hook", "sec_key": "shared-key"}),
        ),
        (
            "webhook-filter",
            json!({"url": "https://example.com/h", "skip_url_test": true, "collections": ["parts"],
                   "data_filter": {"field": "status", "value": "s1"},
                   "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        ),
        (
            "command",
            json!({"name": "anonymise", "subscriber": "erp-all", "payload": {"person": 42}}),
        ),
        (
            "command-result",
            json!({"success": false, "logs": [{"type": 2, "text": "database locked", "debug": {"code": 5}}]}),
        ),
        (
            "user",
            json!({"id": "crm", "role": "integration", "scopes": ["changes:read"]}),
        ),
        ("grants", json!({"readers": ["operator", "integration"]})),
        ("record", json!({"name": "filter", "price": 12.5})),
    ];
    for (name, body) in &bodies {
        json(t, name, body);
    }
    write(
        t,
        "token-form",
        b"grant_type=client_credentials&client_id=erp-all&client_secret=s3cr%2Bt&scope=changes%3Aread",
    );
}

fn main() {
    tablestream();
    event_envelope();
    gateway_json();
}
