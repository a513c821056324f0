//! Building one notification: which of a feed page's changes a hook's
//! filters keep, and the body that carries them (JSON or XML).
//!
//! Why a pure core: what a receiver gets is decided here from the page, the
//! hook's filter and what [`Documents`] answers, with no store or clock,
//! so the table tests below pin filters, size limits and both formats.
//! The dispatcher supplies a `Documents` over the store.
//!
//! Why XML by hand: the body is five element kinds with attributes, and
//! the one rule that matters (escape `& < > " '`) is [`escape_xml`]; a
//! serializer crate would add a dependency for less control over the shape.

use fieldsync_schemas::{ChangeEntry, ChangeOp, Collection};
use serde::Serialize;
use serde_json::Value;

use super::hook::{DataFilter, Filter, Format};
use crate::error::ApiError;

/// What the filters need to know of a change's document or record.
pub(crate) trait Documents {
    /// A work order as the REST API shows it; `None` when it is gone.
    fn work_order(&mut self, id: &str) -> Result<Option<Value>, ApiError>;
    /// A data record's value; `None` when it is gone.
    fn record(&mut self, collection: &str, key: &str) -> Result<Option<Value>, ApiError>;
    /// The status last notified for this work order (`state_changes_only`).
    fn last_status(&mut self, id: &str) -> Result<Option<String>, ApiError>;
}

/// A change the hook's filters kept.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Kept {
    pub(crate) entry: ChangeEntry,
    pub(crate) data: Option<Value>,
    /// The work order's status now, when the hook follows status changes.
    pub(crate) status: Option<String>,
}

/// The changes of `entries` that pass `filter`, with their data when the
/// filter needs it or the hook carries it.
pub(crate) fn select(
    entries: &[ChangeEntry],
    filter: &Filter,
    documents: &mut dyn Documents,
) -> Result<Vec<Kept>, ApiError> {
    let mut kept = Vec::new();
    for entry in entries {
        let kind = entry.collection.name();
        if !filter.collections.is_empty() && !filter.collections.iter().any(|c| c == kind) {
            continue;
        }
        let is_work_order = matches!(entry.collection, Collection::WorkOrders);
        if filter.state_changes_only && !is_work_order {
            continue;
        }
        let needs_data = filter.include_data || filter.data.is_some() || filter.state_changes_only;
        let data = match (&entry.collection, entry.op, needs_data) {
            (_, _, false) | (_, ChangeOp::Delete, _) => None,
            (Collection::WorkOrders, _, true) => documents.work_order(&entry.id)?,
            (Collection::Reference(name), _, true) => documents.record(name, &entry.id)?,
        };
        if let Some(wanted) = &filter.data {
            if !data.as_ref().is_some_and(|data| matches(data, wanted)) {
                continue;
            }
        }
        let mut status = None;
        if filter.state_changes_only {
            let now = data
                .as_ref()
                .and_then(|data| data.get("status"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if now.is_none() || documents.last_status(&entry.id)? == now {
                continue;
            }
            status = now;
        }
        kept.push(Kept {
            entry: entry.clone(),
            data: data.filter(|_| filter.include_data),
            status,
        });
    }
    Ok(kept)
}

/// Whether `data` has `wanted.field` (a dotted path) equal to
/// `wanted.value` (strings compared as they are, other values as JSON).
fn matches(data: &Value, wanted: &DataFilter) -> bool {
    let mut at = data;
    for part in wanted.field.split('.') {
        match at.get(part) {
            Some(next) => at = next,
            None => return false,
        }
    }
    match at {
        Value::String(text) => *text == wanted.value,
        other => serde_json::to_string(other).is_ok_and(|text| text == wanted.value),
    }
}

/// A rendered notification.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Body {
    pub(crate) text: String,
    /// How many of the kept changes it carries (a prefix of them).
    pub(crate) changes: usize,
}

/// Who is notified of what, for the body's envelope.
pub(crate) struct Envelope<'a> {
    pub(crate) hook_id: &'a str,
    pub(crate) notification_id: &'a str,
}

#[derive(Serialize)]
struct JsonChange<'a> {
    seq: u64,
    collection: &'a str,
    op: ChangeOp,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    /// Set when the data alone would pass the body limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    data_omitted: bool,
}

/// Render as many of `kept` (at least one) as fit in `bytes_max`.
pub(crate) fn render(
    envelope: &Envelope<'_>,
    kept: &[Kept],
    format: Format,
    bytes_max: usize,
) -> Body {
    assert!(!kept.is_empty(), "a notification carries a change");
    let mut items: Vec<String> = Vec::with_capacity(kept.len());
    let mut used = envelope_bytes(envelope, format);
    for change in kept {
        let mut item = render_change(change, format, false);
        if used + item.len() > bytes_max && change.data.is_some() && items.is_empty() {
            item = render_change(change, format, true);
        }
        if used + item.len() > bytes_max && !items.is_empty() {
            break;
        }
        used += item.len() + 1;
        items.push(item);
    }
    let changes = items.len();
    let last_seq = kept[changes - 1].entry.seq;
    let text = match format {
        Format::Json => format!(
            "{{\"type\":\"changes\",\"hook_id\":{},\"notification_id\":{},\"count\":{changes},\"last_seq\":{last_seq},\"changes\":[{}]}}",
            Value::from(envelope.hook_id),
            Value::from(envelope.notification_id),
            items.join(",")
        ),
        Format::Xml => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><notification hook_id=\"{}\" notification_id=\"{}\" count=\"{changes}\" last_seq=\"{last_seq}\">{}</notification>",
            escape_xml(envelope.hook_id),
            escape_xml(envelope.notification_id),
            items.concat()
        ),
    };
    Body { text, changes }
}

fn envelope_bytes(envelope: &Envelope<'_>, format: Format) -> usize {
    // The envelope's fixed text and its numbers (count, last_seq: 20
    // digits each at most), rounded up.
    let fixed = match format {
        Format::Json => 160,
        Format::Xml => 224,
    };
    fixed + envelope.hook_id.len() + envelope.notification_id.len()
}

fn render_change(change: &Kept, format: Format, omit_data: bool) -> String {
    let entry = &change.entry;
    let data = if omit_data {
        None
    } else {
        change.data.as_ref()
    };
    match format {
        Format::Json => serde_json::to_string(&JsonChange {
            seq: entry.seq,
            collection: entry.collection.name(),
            op: entry.op,
            id: &entry.id,
            number: entry.number.as_deref(),
            version: entry.version,
            data,
            data_omitted: omit_data,
        })
        .expect("a change serializes"),
        Format::Xml => {
            let mut text = format!(
                "<change seq=\"{}\" collection=\"{}\" op=\"{}\" id=\"{}\"",
                entry.seq,
                escape_xml(entry.collection.name()),
                entry.op.as_str(),
                escape_xml(&entry.id)
            );
            if let Some(number) = &entry.number {
                text.push_str(&format!(" number=\"{}\"", escape_xml(number)));
            }
            if let Some(version) = entry.version {
                text.push_str(&format!(" version=\"{version}\""));
            }
            if omit_data {
                text.push_str(" data_omitted=\"true\"");
            }
            match data {
                Some(data) => text.push_str(&format!(
                    "><data>{}</data></change>",
                    escape_xml(&data.to_string())
                )),
                None => text.push_str("/>"),
            }
            text
        }
    }
}

/// Text safe inside an XML attribute or element.
pub(crate) fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all, not even as a reference.
            c if ((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
                || matches!(c, '\u{FFFE}' | '\u{FFFF}') =>
            {
                out.push('\u{FFFD}');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    #[derive(Default)]
    struct Fixture {
        work_orders: HashMap<String, Value>,
        records: HashMap<(String, String), Value>,
        statuses: HashMap<String, String>,
    }

    impl Documents for Fixture {
        fn work_order(&mut self, id: &str) -> Result<Option<Value>, ApiError> {
            Ok(self.work_orders.get(id).cloned())
        }
        fn record(&mut self, collection: &str, key: &str) -> Result<Option<Value>, ApiError> {
            Ok(self
                .records
                .get(&(collection.to_string(), key.to_string()))
                .cloned())
        }
        fn last_status(&mut self, id: &str) -> Result<Option<String>, ApiError> {
            Ok(self.statuses.get(id).cloned())
        }
    }

    fn wo(seq: u64, id: &str, op: ChangeOp) -> ChangeEntry {
        ChangeEntry {
            seq,
            collection: Collection::WorkOrders,
            id: id.into(),
            number: Some(format!("WO-{id}")),
            op,
            heads: vec![],
            version: None,
        }
    }

    fn rec(seq: u64, collection: &str, key: &str) -> ChangeEntry {
        ChangeEntry {
            seq,
            collection: Collection::Reference(collection.into()),
            id: key.into(),
            number: None,
            op: ChangeOp::Update,
            heads: vec![],
            version: Some(3),
        }
    }

    fn fixture() -> Fixture {
        let mut f = Fixture::default();
        f.work_orders.insert(
            "a".into(),
            json!({"id": "a", "status": "completed", "customer": {"name": "Acme"}, "priority": 2}),
        );
        f.work_orders.insert(
            "b".into(),
            json!({"id": "b", "status": "open", "priority": 1}),
        );
        f.records.insert(
            ("materials".into(), "m1".into()),
            json!({"name": "cable", "status": "completed"}),
        );
        f.statuses.insert("b".into(), "open".into());
        f
    }

    fn page() -> Vec<ChangeEntry> {
        vec![
            wo(1, "a", ChangeOp::Update),
            wo(2, "b", ChangeOp::Update),
            rec(3, "materials", "m1"),
            wo(4, "gone", ChangeOp::Delete),
        ]
    }

    fn ids(kept: &[Kept]) -> Vec<&str> {
        kept.iter().map(|k| k.entry.id.as_str()).collect()
    }

    #[test]
    fn filters_keep_what_they_name() {
        let data = |field: &str, value: &str| {
            Some(DataFilter {
                field: field.into(),
                value: value.into(),
            })
        };
        let cases: Vec<(&str, Filter, Vec<&str>)> = vec![
            (
                "no filter keeps all",
                Filter::default(),
                vec!["a", "b", "m1", "gone"],
            ),
            (
                "collection",
                Filter {
                    collections: vec!["materials".into()],
                    ..Filter::default()
                },
                vec!["m1"],
            ),
            (
                "two collections",
                Filter {
                    collections: vec!["materials".into(), "work_orders".into()],
                    ..Filter::default()
                },
                vec!["a", "b", "m1", "gone"],
            ),
            (
                "data equals, across kinds",
                Filter {
                    data: data("status", "completed"),
                    ..Filter::default()
                },
                vec!["a", "m1"],
            ),
            (
                "dotted path",
                Filter {
                    data: data("customer.name", "Acme"),
                    ..Filter::default()
                },
                vec!["a"],
            ),
            (
                "a number compared as JSON",
                Filter {
                    data: data("priority", "1"),
                    ..Filter::default()
                },
                vec!["b"],
            ),
            (
                "no such value",
                Filter {
                    data: data("status", "cancelled"),
                    ..Filter::default()
                },
                vec![],
            ),
            (
                "state changes: b is still open, a changed, records and deletes never",
                Filter {
                    state_changes_only: true,
                    ..Filter::default()
                },
                vec!["a"],
            ),
        ];
        for (name, filter, want) in cases {
            let kept = select(&page(), &filter, &mut fixture()).unwrap();
            assert_eq!(ids(&kept), want, "{name}");
            assert!(kept.iter().all(|k| k.data.is_none()), "{name}: ids only");
        }
    }

    #[test]
    fn include_data_carries_documents_and_records() {
        let filter = Filter {
            include_data: true,
            ..Filter::default()
        };
        let kept = select(&page(), &filter, &mut fixture()).unwrap();
        assert_eq!(kept[0].data.as_ref().unwrap()["status"], "completed");
        assert_eq!(kept[2].data.as_ref().unwrap()["name"], "cable");
        assert_eq!(kept[3].data, None, "a delete carries no data");
    }

    #[test]
    fn the_json_body_names_every_change() {
        let kept = select(&page(), &Filter::default(), &mut fixture()).unwrap();
        let envelope = Envelope {
            hook_id: "wh_1",
            notification_id: "msg_1",
        };
        let body = render(&envelope, &kept, Format::Json, 48 * 1024);
        assert_eq!(body.changes, 4);
        let parsed: Value = serde_json::from_str(&body.text).unwrap();
        assert_eq!(parsed["count"], 4);
        assert_eq!(parsed["last_seq"], 4);
        assert_eq!(parsed["notification_id"], "msg_1");
        assert_eq!(parsed["changes"][0]["number"], "WO-a");
        assert_eq!(parsed["changes"][2]["collection"], "materials");
        assert_eq!(parsed["changes"][2]["version"], 3);
        assert_eq!(parsed["changes"][3]["op"], "delete");
    }

    #[test]
    fn the_xml_body_is_escaped() {
        let mut entry = wo(9, "x<&>\"'", ChangeOp::Create);
        entry.number = Some("WO-<1>".into());
        let kept = vec![Kept {
            entry,
            data: Some(json!({"t": "<b>"})),
            status: None,
        }];
        let envelope = Envelope {
            hook_id: "wh_1",
            notification_id: "msg_1",
        };
        let body = render(&envelope, &kept, Format::Xml, 48 * 1024);
        assert!(
            body.text.contains("id=\"x&lt;&amp;&gt;&quot;&apos;\""),
            "{}",
            body.text
        );
        assert!(body.text.contains("number=\"WO-&lt;1&gt;\""));
        assert!(body
            .text
            .contains("<data>{&quot;t&quot;:&quot;&lt;b&gt;&quot;}</data>"));
        assert!(!body.text.contains("<b>"));
        assert_eq!(escape_xml("a\u{1}b\u{FFFF}"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn a_body_stops_at_its_byte_limit_and_a_lone_oversized_change_drops_its_data() {
        let big = json!({"text": "x".repeat(2000)});
        let kept: Vec<Kept> = (1..=10)
            .map(|seq| Kept {
                entry: wo(seq, &format!("d{seq}"), ChangeOp::Update),
                data: Some(big.clone()),
                status: None,
            })
            .collect();
        let envelope = Envelope {
            hook_id: "wh_1",
            notification_id: "msg_1",
        };
        let body = render(&envelope, &kept, Format::Json, 5000);
        assert_eq!(body.changes, 2);
        assert!(body.text.len() <= 5000);
        let tiny = render(&envelope, &kept, Format::Json, 500);
        assert_eq!(tiny.changes, 1);
        assert!(tiny.text.contains("\"data_omitted\":true"));
        assert!(tiny.text.len() <= 500);
    }
}
