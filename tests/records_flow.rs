//! Records to a laptop with real processes over QUIC on loopback: the
//! central's `fieldsync.toml` lets technicians read `materials`
//! (`[records.read]`), so an enrolled laptop receives those records with
//! its work orders, read-only, and never `customers`; an update and a
//! delete at the central follow on the next run.

mod sync_support;

use fieldsync_node::config::NodeConfig;
use fieldsync_node::store::{Expect, Store};
use sync_support::*;

/// Write records into a stopped node's store, durably.
fn write_records(node: &Node, writes: &[(&str, &str, Option<&str>)]) {
    let config = NodeConfig::load(&node.dir).unwrap();
    let store = Store::open(&node.dir, config.store_config()).unwrap();
    for (collection, key, value) in writes {
        let value = value.map(|v| v.as_bytes().to_vec());
        store
            .write_record(collection, key, value, Expect::Any)
            .unwrap();
    }
    store.close();
}

/// A stopped node's live records of `collection`: (key, version, value).
fn records(node: &Node, collection: &str) -> Vec<(String, u64, String)> {
    let config = NodeConfig::load(&node.dir).unwrap();
    let store = Store::open(&node.dir, config.store_config()).unwrap();
    let held = store
        .records(collection, None, 100)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.version, String::from_utf8(r.value).unwrap()))
        .collect();
    store.close();
    held
}

#[test]
fn a_laptop_receives_the_collections_its_role_may_read_and_their_changes() {
    let (mut central, codes) = central_with(&["tech-1"]);
    let path = central.dir.join("fieldsync.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}\n[records.read]\nmaterials = [\"technician\"]\n"),
    )
    .unwrap();
    create(&central, "wo-a", "tech-1");
    write_records(
        &central,
        &[
            ("materials", "M-1", Some(r#"{"sku":"M-1"}"#)),
            ("materials", "M-2", Some(r#"{"sku":"M-2"}"#)),
            ("customers", "C-1", Some(r#"{"name":"Ana"}"#)),
        ],
    );
    central.start();
    let mut laptop = enrolled_laptop("laptop-1", &central, &codes[0]);
    laptop.start();
    wait_converged(&laptop, &central);
    laptop.stop();
    assert_eq!(
        records(&laptop, "materials"),
        [
            ("M-1".to_string(), 1, r#"{"sku":"M-1"}"#.to_string()),
            ("M-2".to_string(), 1, r#"{"sku":"M-2"}"#.to_string()),
        ]
    );
    assert!(records(&laptop, "customers").is_empty());
    assert!(laptop.show("wo-a").is_some());
    // At the central: an update and a delete, then the laptop runs again.
    central.stop();
    write_records(
        &central,
        &[
            ("materials", "M-1", Some(r#"{"sku":"M-1","price":3}"#)),
            ("materials", "M-2", None),
        ],
    );
    central.start();
    laptop.start();
    wait_converged(&laptop, &central);
    laptop.stop();
    central.stop();
    assert_eq!(
        records(&laptop, "materials"),
        [(
            "M-1".to_string(),
            2,
            r#"{"sku":"M-1","price":3}"#.to_string()
        )]
    );
    laptop.verify_clean();
    central.verify_clean();
}
