//! The acceptance test of the sync issue, with real processes over QUIC on
//! loopback: a central and two technicians' laptops, and the three flows of
//! the original design (central → technician, technician → central,
//! status and acknowledgement back), plus a forbidden edit that must not
//! stick.

mod sync_support;

use automerge::transaction::Transactable;
use automerge::ReadDoc;
use fieldsync_node::doc::Edit;
use fieldsync_node::store::Store;
use fieldsync_schemas::ChangeOp;
use sync_support::*;

#[test]
fn three_flows_between_a_central_and_two_technicians() {
    // Flow 1: the office creates and assigns work orders.
    let (mut central, mut laptop1, laptop2) = central_and_two_primed_laptops();
    // Only the assigned technician got each work order.
    assert_eq!(laptop1.show("wo-a").unwrap()["assignee"], "tech-1");
    assert!(
        laptop1.show("wo-b").is_none(),
        "tech-1 must never see tech-2's work order"
    );
    assert_eq!(laptop2.show("wo-b").unwrap()["assignee"], "tech-2");
    assert!(
        laptop2.show("wo-a").is_none(),
        "tech-2 must never see tech-1's work order"
    );

    // Flow 2: offline, the technician works the order and closes it.
    for args in [
        &[
            "wo",
            "status",
            "wo-a",
            "--to",
            "in_progress",
            "--note",
            "on site",
        ][..],
        &["wo", "note", "wo-a", "--text", "Compressor relay replaced"],
        &[
            "wo",
            "material",
            "wo-a",
            "--sku",
            "SKU-00966",
            "--qty",
            "2",
            "--unit",
            "pc",
        ],
        &[
            "wo",
            "report",
            "wo-a",
            "--text",
            "Relay burnt; replaced and tested.",
        ],
        &[
            "wo",
            "close",
            "wo-a",
            "--resolution",
            "fixed",
            "--signed-by",
            "Ana Souza",
        ],
    ] {
        laptop1.run(args).success();
    }
    let closed_at_laptop = laptop1.show("wo-a").unwrap();
    assert_eq!(closed_at_laptop["status"], "completed");
    laptop1.start();
    wait_converged(&laptop1, &central);
    central.stop();
    let at_central = central.show("wo-a").unwrap();
    assert_eq!(at_central["status"], "completed");
    assert_eq!(at_central["notes"][0]["text"], "Compressor relay replaced");
    assert_eq!(at_central["materials"][0]["sku"], "SKU-00966");
    assert_eq!(at_central["report"], "Relay burnt; replaced and tested.");
    assert_eq!(at_central["closure"]["resolution"], "fixed");
    assert_eq!(at_central["heads"], closed_at_laptop["heads"]);

    // Flow 3: the office acknowledges; the acknowledgement and the status
    // flow back to the laptop.
    central
        .run(&[
            "wo",
            "note",
            "wo-a",
            "--text",
            "Closure acknowledged by the office",
        ])
        .success();
    central.start();
    wait_converged(&laptop1, &central);
    laptop1.stop();
    central.stop();
    let back = laptop1.show("wo-a").unwrap();
    assert_eq!(back["status"], "completed");
    let notes: Vec<&str> = back["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "Compressor relay replaced",
            "Closure acknowledged by the office"
        ]
    );
    assert_eq!(back["heads"], central.show("wo-a").unwrap()["heads"]);
    // The laptop's checkpoint for the central, as `status` shows it.
    let status = laptop1.run(&["status", "--json"]).success().json();
    let peers = status["sync"]["peers"].as_array().unwrap();
    assert!(
        peers.iter().any(|p| p["checkpoint_seq"].as_u64() > Some(0)),
        "{status:#}"
    );
    for node in [&central, &laptop1, &laptop2] {
        node.verify_clean();
    }
}

#[test]
fn a_forbidden_edit_from_a_laptop_does_not_stick() {
    let (mut central, codes) = central_with(&["tech-1"]);
    create(&central, "wo-a", "tech-1");
    central.start();
    let mut laptop = enrolled_laptop("laptop-1", &central, &codes[0]);
    laptop.start();
    wait_converged(&laptop, &central);
    laptop.stop();
    // The typed operations refuse a technician's priority change...
    let refused = laptop.run(&[
        "wo",
        "assign",
        "wo-a",
        "--to",
        "tech-9",
        "--as",
        "tech-1",
        "--role",
        "technician",
    ]);
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    // ...so a tampered laptop writes it straight into its store.
    tamper(&laptop, "wo-a");
    let tampered = laptop.show("wo-a").unwrap();
    assert_eq!(tampered["priority"], "urgent");
    assert_eq!(tampered["customer"]["name"], "Mallory");
    laptop
        .run(&["wo", "note", "wo-a", "--text", "a legitimate note"])
        .success();
    laptop.start();
    wait_converged(&laptop, &central);
    laptop.stop();
    central.stop();
    let at_central = central.show("wo-a").unwrap();
    assert_eq!(at_central["priority"], "normal");
    assert_eq!(at_central["customer"]["name"], "Ana Souza");
    assert_eq!(at_central["assignee"], "tech-1");
    assert_eq!(at_central["notes"][0]["text"], "a legitimate note");
    // The office's compensating change reached the laptop: both agree.
    let at_laptop = laptop.show("wo-a").unwrap();
    assert_eq!(at_laptop["priority"], "normal");
    assert_eq!(at_laptop["customer"]["name"], "Ana Souza");
    assert_eq!(at_laptop["heads"], at_central["heads"]);
    assert!(
        central.log_text().contains("forbidden change from peer"),
        "the central logs the violation"
    );
}

/// Write a change that breaks the field rules directly into a stopped
/// laptop's store, bypassing the typed operations.
fn tamper(laptop: &Node, id: &str) {
    let config = fieldsync_node::config::NodeConfig::load(&laptop.dir).unwrap();
    let store = Store::open(&laptop.dir, config.store_config()).unwrap();
    store
        .edit_work_order(id, |document| {
            let before = document.heads();
            let doc = document.automerge_mut();
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, "priority", "urgent").unwrap();
            let customer = match tx.get(automerge::ROOT, "customer").unwrap() {
                Some((_, customer)) => customer,
                None => panic!("no customer map"),
            };
            tx.put(&customer, "name", "Mallory").unwrap();
            tx.commit();
            Ok(Edit {
                change_bytes: doc.save_after(&before),
                heads: doc.get_heads(),
                op: ChangeOp::Update,
            })
        })
        .unwrap();
    store.close();
}

/// Two technicians' laptops on the same LAN sync directly, the central
/// unreachable: each side serves the other only what the other's user may
/// see, so neither work order crosses.
#[test]
fn two_laptops_syncing_directly_see_only_what_both_may_see() {
    let (mut central, mut laptop1, mut laptop2) = central_and_two_primed_laptops();
    central.stop();
    laptop1
        .run(&["wo", "note", "wo-a", "--text", "only for tech-1"])
        .success();
    // Each laptop lists the other as its user's laptop.
    let (id1, id2) = (laptop1.node_id(), laptop2.node_id());
    add_laptop_peer(&laptop1, &laptop2.address(), &id2, "tech-2");
    add_laptop_peer(&laptop2, &laptop1.address(), &id1, "tech-1");
    laptop1.start();
    laptop2.start();
    wait_converged(&laptop1, &laptop2);
    laptop1.stop();
    laptop2.stop();
    assert!(laptop2.show("wo-a").is_none(), "tech-1's order crossed");
    assert!(laptop1.show("wo-b").is_none(), "tech-2's order crossed");
    assert_eq!(
        laptop1.show("wo-a").unwrap()["notes"][0]["text"],
        "only for tech-1"
    );
    assert!(laptop2.show("wo-b").is_some());
    let status = laptop1.run(&["status", "--json"]).success().json();
    let peer = status["sync"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == id2.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("laptop-2 in laptop-1's status: {status:#}"));
    assert_eq!(peer["user"], "tech-2", "{peer:#}");
    for node in [&laptop1, &laptop2] {
        node.verify_clean();
    }
}

/// A running central with `wo-a` for tech-1 and `wo-b` for tech-2, and
/// each technician's laptop enrolled, primed and stopped.
fn central_and_two_primed_laptops() -> (Node, Node, Node) {
    let (mut central, codes) = central_with(&["tech-1", "tech-2"]);
    create(&central, "wo-a", "tech-1");
    create(&central, "wo-b", "tech-2");
    central.start();
    let mut laptop1 = enrolled_laptop("laptop-1", &central, &codes[0]);
    let mut laptop2 = enrolled_laptop("laptop-2", &central, &codes[1]);
    laptop1.start();
    laptop2.start();
    wait_converged(&laptop1, &central);
    wait_converged(&laptop2, &central);
    laptop1.stop();
    laptop2.stop();
    (central, laptop1, laptop2)
}

/// Add `{ address, node_id, user }` to a stopped node's `[sync] peers`.
fn add_laptop_peer(node: &Node, address: &str, node_id: &str, user: &str) {
    let path = node.dir.join("fieldsync.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let entry =
        format!("  {{ address = \"{address}\", node_id = \"{node_id}\", user = \"{user}\" }},\n");
    let updated = if text.contains("peers = [\n") {
        text.replacen("peers = [\n", &format!("peers = [\n{entry}"), 1)
    } else {
        assert!(text.contains("peers = []"), "a peers list in:\n{text}");
        text.replacen("peers = []", &format!("peers = [\n{entry}]"), 1)
    };
    std::fs::write(&path, updated).unwrap();
}
