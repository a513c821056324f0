//! Which tables an ERP uploads (reference §3, "entities"): operator
//! configuration per ERP, with `forceReload` set by an operator and
//! cleared when a complete base load of the table commits.
//!
//! Stored as one internal record per ERP (`erp_entities`, key: the ERP
//! name). Clearing `forceReload` happens in the same write set as the
//! base load's commit ([`clear_force_reload`]), so an ERP never sees the
//! flag cleared for a load that did not land, nor a landed load with the
//! flag still set.

use fieldsync_node::store::{Expect, ReadError, RecordWrite, Store};
use serde::{Deserialize, Serialize};

use super::rows::collection_of;
use super::staging::{self, put, Versioned};

pub(crate) const ENTITIES: &str = "erp_entities";
/// The newest entities format this gateway speaks (`x-upload-version`).
pub(crate) const UPLOAD_VERSION_MAX: u32 = 2;
/// Queries one ERP's configuration holds, at most.
pub(crate) const QUERIES_MAX: usize = 1000;
/// Bytes of a query's filter, at most.
pub(crate) const FILTER_BYTES_MAX: usize = 4096;

/// One table an ERP uploads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Query {
    /// The ERP's table name (`SA1010`); rows land in its lowercase
    /// collection.
    pub table: String,
    /// The ERP-side filter (its own syntax), passed through.
    #[serde(default)]
    pub filter: String,
    /// Send the whole table again (a base load), until one commits.
    #[serde(default)]
    pub force_reload: bool,
    #[serde(default)]
    pub is_native: bool,
    #[serde(default)]
    pub is_custom: bool,
    /// Free-form settings for the ERP's uploader (an object; `{}` when
    /// not given).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// An ERP's configuration, as stored and as `GET /api/v1/entities/{erp}`
/// answers a client of the newest upload version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entities {
    pub upload_version: u32,
    pub queries: Vec<Query>,
}

/// Check a configuration an operator sets.
pub(crate) fn check(entities: &Entities) -> Result<(), String> {
    if entities.queries.len() > QUERIES_MAX {
        return Err(format!(
            "{} queries, over the limit of {QUERIES_MAX}",
            entities.queries.len()
        ));
    }
    if entities.upload_version == 0 || entities.upload_version > UPLOAD_VERSION_MAX {
        return Err(format!("uploadVersion must be 1 to {UPLOAD_VERSION_MAX}"));
    }
    let bytes = serde_json::to_vec(entities).map_or(usize::MAX, |v| v.len());
    if bytes > fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX {
        return Err(format!(
            "the configuration is {bytes} bytes as JSON, over the limit of {}",
            fieldsync_schemas::collection::RECORD_VALUE_BYTES_MAX
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, query) in entities.queries.iter().enumerate() {
        let collection = collection_of(&query.table).map_err(|e| format!("queries[{i}]: {e}"))?;
        if !seen.insert(collection) {
            return Err(format!(
                "queries[{i}]: table `{}` is listed twice",
                query.table
            ));
        }
        if query.filter.len() > FILTER_BYTES_MAX {
            return Err(format!(
                "queries[{i}].filter is over {FILTER_BYTES_MAX} bytes"
            ));
        }
    }
    Ok(())
}

/// The answer for a client that speaks `asked` (`x-upload-version`;
/// absent: 1, the version of clients that predate the header): at most
/// the configured version; version 1 carries only `table`, `filter` and
/// `forceReload`.
pub(crate) fn answer(entities: &Entities, asked: Option<u32>) -> serde_json::Value {
    let version = asked.unwrap_or(1).clamp(1, entities.upload_version.max(1));
    let queries: Vec<serde_json::Value> = entities
        .queries
        .iter()
        .map(|q| {
            if version >= 2 {
                serde_json::to_value(q).unwrap_or_default()
            } else {
                serde_json::json!({
                    "table": q.table,
                    "filter": q.filter,
                    "forceReload": q.force_reload,
                })
            }
        })
        .collect();
    serde_json::json!({ "uploadVersion": version, "queries": queries })
}

/// An ERP's configuration as stored (empty, at the newest version, when
/// none was set).
pub(crate) fn load(store: &Store, erp: &str) -> Result<Versioned<Entities>, ReadError> {
    let stored = staging::read::<Entities>(store, ENTITIES, erp)?;
    Ok(Versioned {
        version: stored.as_ref().and_then(|s| s.version),
        value: stored.and_then(|s| s.value).unwrap_or_else(empty),
    })
}

fn empty() -> Entities {
    Entities {
        upload_version: UPLOAD_VERSION_MAX,
        queries: Vec::new(),
    }
}

/// The write that stores `entities` for `erp` if still at `expect`.
pub(crate) fn write(erp: &str, entities: &Entities, expect: Expect) -> RecordWrite {
    put(ENTITIES, erp, entities, expect)
}

/// The write clearing `forceReload` of the tables whose collections a
/// base load just replaced, or `None` when none had it set.
pub(crate) fn clear_force_reload(
    store: &Store,
    erp: &str,
    reloaded: &std::collections::BTreeSet<String>,
) -> Result<Option<RecordWrite>, ReadError> {
    let mut stored = load(store, erp)?;
    let mut changed = false;
    for query in &mut stored.value.queries {
        let replaced = collection_of(&query.table).is_ok_and(|c| reloaded.contains(&c));
        if replaced && query.force_reload {
            query.force_reload = false;
            changed = true;
        }
    }
    Ok(changed.then(|| write(erp, &stored.value, stored.expect())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Entities {
        Entities {
            upload_version: 2,
            queries: vec![Query {
                table: "SA1010".into(),
                filter: "A1_MSBLQL <> '1'".into(),
                force_reload: true,
                is_native: true,
                is_custom: false,
                metadata: serde_json::json!({"chunk": 200}),
            }],
        }
    }

    #[test]
    fn upload_versions() {
        let v2 = answer(&config(), Some(2));
        assert_eq!(v2["uploadVersion"], 2);
        assert_eq!(v2["queries"][0]["isNative"], true);
        assert_eq!(v2["queries"][0]["metadata"]["chunk"], 200);
        for asked in [None, Some(1), Some(0)] {
            let v1 = answer(&config(), asked);
            assert_eq!(v1["uploadVersion"], 1, "{asked:?}");
            assert_eq!(v1["queries"][0]["forceReload"], true);
            assert!(v1["queries"][0].get("isNative").is_none());
        }
        // A newer client gets what is configured.
        assert_eq!(answer(&config(), Some(9))["uploadVersion"], 2);
        let old = Entities {
            upload_version: 1,
            ..config()
        };
        assert_eq!(answer(&old, Some(2))["uploadVersion"], 1);
    }

    #[test]
    fn checks() {
        assert_eq!(check(&config()), Ok(()));
        let mut twice = config();
        twice.queries.push(Query {
            table: "sa1010".into(),
            ..config().queries[0].clone()
        });
        assert!(check(&twice).unwrap_err().contains("listed twice"));
        let internal = Entities {
            queries: vec![Query {
                table: "users".into(),
                ..config().queries[0].clone()
            }],
            ..config()
        };
        assert!(check(&internal)
            .unwrap_err()
            .contains("internal collection"));
        let version = Entities {
            upload_version: 3,
            ..config()
        };
        assert!(check(&version).unwrap_err().contains("uploadVersion"));
    }
}
