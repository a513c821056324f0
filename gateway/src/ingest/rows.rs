//! A message's rows against its schema: which collection, which record
//! key, which value, or a delete.
//!
//! Why here and pure: both transports (gRPC and HTTP) hand the same
//! [`Message`] to [`prepare`], so a row is judged the same way whichever
//! way it came, and the table of cases below pins the rules:
//!
//! - the table names the collection: lowercased, a valid data collection
//!   name (an ERP's `SA1010` lands in `sa1010`); internal collections are
//!   refused;
//! - the primary key's columns, in order, make the record key (joined by
//!   `|`, with `|` and `\` escaped, so two keys never collide);
//! - `DELETED = true` deletes; the column is not stored;
//! - a column not in the schema is an error naming it, unless the schema
//!   is `flexible`;
//! - `recordCount` must equal the rows sent.
//!
//! Values are kept as the strings the ERP sent (`{"A1_COD": "000123"}`):
//! the schema's column types are the ERP's own (`varchar`, `N(12,2)`...),
//! and converting them here would lose leading zeros and precision.

use std::collections::BTreeSet;

use fieldsync_schemas::collection::{
    data_collection_for, validate_record_key, RECORD_VALUE_BYTES_MAX,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Errors reported for one message, at most (the rest are counted).
pub(crate) const ERRORS_PER_MESSAGE_MAX: usize = 20;
/// Rows in one message, at most (senders pack 200).
pub(crate) const ROWS_PER_MESSAGE_MAX: usize = 10_000;
/// The column whose value `true` deletes the row's record.
pub(crate) const DELETED_COLUMN: &str = "DELETED";
/// Bytes a staged row adds around its key and value: `[{"key":"",
/// "value":}]`, rounded up.
const STAGED_ROW_ENVELOPE_BYTES: usize = 32;
/// Bytes of an ERP name, at most.
pub(crate) const ERP_NAME_BYTES_MAX: usize = 64;

/// One message of a batch, whichever transport brought it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) table: String,
    pub(crate) erp: String,
    pub(crate) batch_id: i64,
    pub(crate) number: i64,
    pub(crate) record_count: i64,
    pub(crate) base_load: bool,
    pub(crate) schema: Schema,
    /// Each row: its `(name, value)` columns in the order sent.
    pub(crate) rows: Vec<Vec<(String, String)>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Schema {
    pub(crate) flexible: bool,
    pub(crate) export_data: bool,
    /// `(name, type)`.
    pub(crate) columns: Vec<(String, String)>,
    pub(crate) primary_key: Vec<String>,
}

/// A row ready to stage: its record key and value (`None`: delete).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StagedRow {
    pub(crate) key: String,
    /// The JSON object, kept as text (staged chunks embed it as is, with
    /// no second escaping); `None` deletes.
    pub(crate) value: Option<Box<RawValue>>,
}

impl PartialEq for StagedRow {
    fn eq(&self, other: &StagedRow) -> bool {
        self.key == other.key
            && self.value.as_ref().map(|v| v.get()) == other.value.as_ref().map(|v| v.get())
    }
}

/// A message whose rows all passed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Prepared {
    pub(crate) collection: String,
    pub(crate) rows: Vec<StagedRow>,
}

/// Check an ERP name: 1 to 64 visible ASCII characters, no `/`.
pub(crate) fn check_erp(erp: &str) -> Result<(), String> {
    let ok = !erp.is_empty()
        && erp.len() <= ERP_NAME_BYTES_MAX
        // Not `%` either: in a URL path it reads as an escape, so a client
        // that sends it unescaped would name another ERP.
        && erp.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "erp `{}` must be 1 to {ERP_NAME_BYTES_MAX} visible ASCII characters without `/` or `%`",
            erp.chars().take(80).collect::<String>()
        ))
    }
}

/// The data collection a table's rows go to.
pub(crate) fn collection_of(table: &str) -> Result<String, String> {
    data_collection_for(table).map_err(|e| format!("tableName `{table}`: {e}"))
}

/// Judge a message: every error it has (at most
/// [`ERRORS_PER_MESSAGE_MAX`]), or its rows ready to stage.
pub(crate) fn prepare(message: &Message) -> Result<Prepared, Vec<String>> {
    let mut errors = Errors::default();
    if let Err(e) = check_erp(&message.erp) {
        errors.push(e);
    }
    let collection = collection_of(&message.table)
        .map_err(|e| errors.push(e))
        .ok();
    if message.number < 1 {
        errors.push(format!(
            "messageNumber {} must be 1 or more",
            message.number
        ));
    }
    if message.rows.len() > ROWS_PER_MESSAGE_MAX {
        errors.push(format!(
            "{} rows in one message, over the limit of {ROWS_PER_MESSAGE_MAX}",
            message.rows.len()
        ));
        return Err(errors.into_vec());
    }
    if message.record_count != message.rows.len() as i64 {
        errors.push(format!(
            "recordCount is {} but the message holds {} rows",
            message.record_count,
            message.rows.len()
        ));
    }
    let schema = &message.schema;
    if schema.primary_key.is_empty() {
        errors.push("schema.primaryKey names no columns".into());
    }
    let known: BTreeSet<&str> = schema.columns.iter().map(|(n, _)| n.as_str()).collect();
    for column in &schema.primary_key {
        if !known.is_empty() && !known.contains(column.as_str()) {
            errors.push(format!(
                "schema.primaryKey column `{column}` is not among schema.columns"
            ));
        }
    }
    let mut rows = Vec::with_capacity(message.rows.len());
    if !schema.primary_key.is_empty() {
        for (index, row) in message.rows.iter().enumerate() {
            match prepare_row(schema, &known, row) {
                Ok(staged) => rows.push(staged),
                Err(e) => errors.push(format!("row {}: {e}", index + 1)),
            }
        }
    }
    match collection {
        Some(collection) if errors.is_empty() => Ok(Prepared { collection, rows }),
        _ => Err(errors.into_vec()),
    }
}

fn prepare_row(
    schema: &Schema,
    known: &BTreeSet<&str>,
    row: &[(String, String)],
) -> Result<StagedRow, String> {
    let mut value = serde_json::Map::with_capacity(row.len());
    let mut deleted = false;
    for (name, text) in row {
        if name == DELETED_COLUMN {
            deleted = parse_deleted(text)?;
            continue;
        }
        if !schema.flexible && !known.contains(name.as_str()) {
            return Err(format!(
                "column `{name}` is not in the schema (the schema is not flexible)"
            ));
        }
        if value
            .insert(name.clone(), serde_json::Value::String(text.clone()))
            .is_some()
        {
            return Err(format!("column `{name}` appears twice"));
        }
    }
    let mut parts = Vec::with_capacity(schema.primary_key.len());
    for column in &schema.primary_key {
        match value.get(column) {
            Some(serde_json::Value::String(part)) => parts.push(part.as_str()),
            _ => return Err(format!("primary-key column `{column}` is missing")),
        }
    }
    let key = record_key(&parts);
    validate_record_key(&key).map_err(|e| format!("primary key `{key}`: {e}"))?;
    if deleted {
        return Ok(StagedRow { key, value: None });
    }
    let text = serde_json::Value::Object(value).to_string();
    // Staged as `{"key":<key>,"value":<text>}` in a chunk of one record:
    // the key's JSON is at most twice its bytes, plus quotes and envelope.
    let staged_bytes_max = 2 * key.len() + text.len() + STAGED_ROW_ENVELOPE_BYTES;
    if staged_bytes_max > RECORD_VALUE_BYTES_MAX {
        return Err(format!(
            "the row is {} bytes as JSON, over the limit of {} for one row",
            text.len(),
            RECORD_VALUE_BYTES_MAX - 2 * key.len() - STAGED_ROW_ENVELOPE_BYTES
        ));
    }
    let value = RawValue::from_string(text).map_err(|e| format!("the row is not JSON: {e}"))?;
    Ok(StagedRow {
        key,
        value: Some(value),
    })
}

fn parse_deleted(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(format!(
            "column `{DELETED_COLUMN}` is `{}`; expected true or false",
            text.chars().take(40).collect::<String>()
        )),
    }
}

/// The record key of primary-key values: joined by `|`, each `|` and `\`
/// escaped with `\`, so distinct value lists give distinct keys.
pub(crate) fn record_key(parts: &[&str]) -> String {
    let mut key = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        for c in part.chars() {
            if c == '|' || c == '\\' {
                key.push('\\');
            }
            key.push(c);
        }
    }
    key
}

/// Errors of one message, bounded.
#[derive(Default)]
struct Errors {
    shown: Vec<String>,
    more: usize,
}

impl Errors {
    fn push(&mut self, error: String) {
        if self.shown.len() < ERRORS_PER_MESSAGE_MAX {
            self.shown.push(error);
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.shown
                .push(format!("... and {} more errors", self.more));
        }
        self.shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(flexible: bool) -> Schema {
        Schema {
            flexible,
            export_data: false,
            columns: vec![
                ("CODE".into(), "varchar".into()),
                ("BRANCH".into(), "varchar".into()),
                ("NAME".into(), "varchar".into()),
            ],
            primary_key: vec!["BRANCH".into(), "CODE".into()],
        }
    }

    fn row(columns: &[(&str, &str)]) -> Vec<(String, String)> {
        columns
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn message(rows: Vec<Vec<(String, String)>>, flexible: bool) -> Message {
        Message {
            table: "SA1010".into(),
            erp: "protheus".into(),
            batch_id: 1_700_000_000,
            number: 1,
            record_count: rows.len() as i64,
            base_load: false,
            schema: schema(flexible),
            rows,
        }
    }

    #[test]
    fn rows_become_keys_values_and_deletes() {
        let prepared = prepare(&message(
            vec![
                row(&[("CODE", "000123"), ("BRANCH", "01"), ("NAME", "Ana")]),
                row(&[("CODE", "7"), ("BRANCH", "01"), ("DELETED", "true")]),
                row(&[("CODE", "8"), ("BRANCH", "01"), ("DELETED", "false")]),
            ],
            false,
        ))
        .unwrap();
        assert_eq!(prepared.collection, "sa1010");
        assert_eq!(prepared.rows[0].key, "01|000123");
        assert_eq!(
            prepared.rows[0].value.as_ref().map(|v| v.get()),
            Some(r#"{"BRANCH":"01","CODE":"000123","NAME":"Ana"}"#)
        );
        assert_eq!(
            prepared.rows[1],
            StagedRow {
                key: "01|7".into(),
                value: None
            }
        );
        assert!(prepared.rows[2].value.is_some());
    }

    #[test]
    fn every_rule_names_what_broke() {
        let cases: Vec<(Message, &str)> = vec![
            (
                message(
                    vec![row(&[("CODE", "1"), ("BRANCH", "1"), ("COLOR", "red")])],
                    false,
                ),
                "row 1: column `COLOR` is not in the schema",
            ),
            (
                message(vec![row(&[("CODE", "1"), ("NAME", "x")])], false),
                "row 1: primary-key column `BRANCH` is missing",
            ),
            (
                message(
                    vec![row(&[("CODE", "1"), ("BRANCH", "1"), ("CODE", "2")])],
                    false,
                ),
                "row 1: column `CODE` appears twice",
            ),
            (
                message(
                    vec![row(&[("CODE", "1"), ("BRANCH", "1"), ("DELETED", "maybe")])],
                    false,
                ),
                "row 1: column `DELETED` is `maybe`",
            ),
            (
                Message {
                    record_count: 5,
                    ..message(vec![], false)
                },
                "recordCount is 5 but the message holds 0 rows",
            ),
            (
                Message {
                    number: 0,
                    ..message(vec![], false)
                },
                "messageNumber 0 must be 1 or more",
            ),
            (
                Message {
                    table: "webhooks".into(),
                    ..message(vec![], false)
                },
                "is an internal collection",
            ),
            (
                Message {
                    table: "a b".into(),
                    ..message(vec![], false)
                },
                "tableName `a b`",
            ),
            (
                Message {
                    erp: "a/b".into(),
                    ..message(vec![], false)
                },
                "erp `a/b` must be",
            ),
            (
                Message {
                    erp: "a%2Fb".into(),
                    ..message(vec![], false)
                },
                "erp `a%2Fb` must be",
            ),
            (
                Message {
                    schema: Schema {
                        primary_key: vec![],
                        ..schema(false)
                    },
                    ..message(vec![], false)
                },
                "schema.primaryKey names no columns",
            ),
            (
                Message {
                    schema: Schema {
                        primary_key: vec!["NOPE".into()],
                        ..schema(false)
                    },
                    ..message(vec![], false)
                },
                "schema.primaryKey column `NOPE` is not among schema.columns",
            ),
        ];
        for (message, expected) in cases {
            let errors = prepare(&message).expect_err(expected);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected:?} not in {errors:?}"
            );
        }
    }

    #[test]
    fn flexible_schemas_take_unknown_columns() {
        let prepared = prepare(&message(
            vec![row(&[("CODE", "1"), ("BRANCH", "1"), ("COLOR", "red")])],
            true,
        ))
        .unwrap();
        assert!(prepared.rows[0]
            .value
            .as_ref()
            .unwrap()
            .get()
            .contains("\"COLOR\":\"red\""));
    }

    #[test]
    fn keys_never_collide() {
        assert_eq!(record_key(&["a|b", "c"]), "a\\|b|c");
        assert_ne!(record_key(&["a|b", "c"]), record_key(&["a", "b|c"]));
        assert_ne!(record_key(&["a\\", "b"]), record_key(&["a", "\\b"]));
        assert_eq!(record_key(&["solo"]), "solo");
    }

    #[test]
    fn errors_are_bounded() {
        let rows = (0..50).map(|_| row(&[("CODE", "1")])).collect();
        let errors = prepare(&message(rows, false)).unwrap_err();
        assert_eq!(errors.len(), ERRORS_PER_MESSAGE_MAX + 1);
        assert!(errors.last().unwrap().contains("and 30 more errors"));
    }
}
