//! The everyday path: init, import, status, show, users, verify, run.

use fieldsync_node::config::NodeConfig;
use fieldsync_node::identity::{Identity, KEY_FILE};
use fieldsync_node::secret;
use fieldsync_node::store::Store;

use crate::support::{fieldsync, write_jsonl, Running, TestNode, BIN};

#[test]
fn version_names_the_binary_and_its_release() {
    let run = fieldsync(std::path::Path::new("/nonexistent"), &["--version"]).success();
    assert_eq!(
        run.stdout.trim(),
        format!("fieldsync {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn init_import_status_show_verify_round_trip() {
    let node = TestNode::new("central");
    let status = node.status();
    let identity = Identity::load(&node.dir).unwrap();
    assert_eq!(status["node_id"], identity.node_id());
    assert_eq!(status["role"], "central");
    assert_eq!(status["name"], "test-node");
    assert_eq!(status["documents"], 0);
    assert_eq!(status["last_seq"], 0);
    let config = NodeConfig::load(&node.dir).unwrap();
    assert!(config.gateway.enabled, "central nodes run the gateway");

    let input = write_jsonl(&node.scratch("orders.jsonl"), 25);
    let run = node
        .run(&["import", input.to_str().unwrap(), "--quiet"])
        .success();
    assert!(run.stdout.contains("imported 25 work orders"), "{run:?}");
    assert!(run.stdout.contains("docs/s"), "{run:?}");

    let status = node.status();
    assert_eq!(status["documents"], 25);
    assert_eq!(status["last_seq"], 25);
    assert!(status["store_bytes"].as_u64().unwrap() > 0);

    let shown = node.run(&["show", "wo-test-00003"]).success().json();
    assert_eq!(shown["id"], "wo-test-00003");
    assert_eq!(shown["number"], "WO-TEST-000003");
    assert_eq!(shown["customer"]["name"], "Customer 3");
    assert_eq!(shown["status"], "on_hold");
    assert_eq!(shown["notes"][0]["text"], "Customer called twice.");

    let run = node.run(&["verify"]).success();
    assert!(run.stdout.contains("25 documents"), "{run:?}");
    assert!(run.stdout.contains("no problems"), "{run:?}");

    // Re-running the same import skips what is there.
    let run = node
        .run(&["import", input.to_str().unwrap(), "--quiet"])
        .success();
    assert!(
        run.stdout
            .contains("imported 0 work orders (25 already present"),
        "{run:?}"
    );
    assert_eq!(node.status()["documents"], 25);
}

#[test]
fn init_refuses_to_overwrite_a_node() {
    let node = TestNode::new("field");
    let key_before = std::fs::read(node.dir.join(KEY_FILE)).unwrap();
    let config_before = std::fs::read(NodeConfig::path_in(&node.dir)).unwrap();
    let run = node.run(&["init", "--role", "central"]).failure(2);
    assert!(run.stderr.contains("already exists"), "{run:?}");
    assert_eq!(std::fs::read(node.dir.join(KEY_FILE)).unwrap(), key_before);
    assert_eq!(
        std::fs::read(NodeConfig::path_in(&node.dir)).unwrap(),
        config_before
    );
    let status = node.status();
    assert_eq!(status["role"], "field");
    assert_eq!(status["gateway_enabled"], false);
}

#[test]
fn a_field_node_refuses_to_create_work_orders_by_import() {
    let node = TestNode::new("field");
    let input = write_jsonl(&node.scratch("orders.jsonl"), 2);
    let run = node.run(&["import", input.to_str().unwrap()]).failure(2);
    assert!(run.stderr.contains("field node"), "{run:?}");
    assert_eq!(node.status()["documents"], 0);
}

/// The secret printed by `user add`.
fn printed(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .map(|rest| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"))
}

#[test]
fn users_get_credentials_once_and_only_hashes_are_stored() {
    let node = TestNode::new("central");
    let operator = node
        .run(&["user", "add", "alice", "--role", "operator"])
        .success();
    let alice_secret = printed(&operator.stdout, "client secret:");
    let technician = node
        .run(&["user", "add", "tech-7", "--role", "technician"])
        .success();
    let code = printed(&technician.stdout, "enrollment code:");
    assert!(
        !technician.stdout.contains("client secret"),
        "{technician:?}"
    );
    let integration = node
        .run(&[
            "user",
            "add",
            "erp",
            "--role",
            "integration",
            "--scope",
            "changes:read",
            "--scope",
            "work-orders:read",
        ])
        .success();
    let erp_secret = printed(&integration.stdout, "client secret:");

    // Bad requests are refused before anything is stored.
    node.run(&["user", "add", "erp2", "--role", "integration"])
        .failure(2);
    node.run(&[
        "user",
        "add",
        "bob",
        "--role",
        "operator",
        "--scope",
        "changes:read",
    ])
    .failure(2);
    node.run(&["user", "add", "alice", "--role", "operator"])
        .failure(2);
    node.run(&["user", "add", "bad id!", "--role", "operator"])
        .failure(2);
    let bad_role = node.run(&["user", "add", "x", "--role", "boss"]);
    assert_eq!(bad_role.code, Some(2), "{bad_role:?}");
    assert!(
        bad_role
            .stderr
            .contains("operator, technician, integration"),
        "{bad_role:?}"
    );

    let listed = node.run(&["user", "list", "--json"]).success().json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "erp", "tech-7"]);
    let table = node.run(&["user", "list"]).success();
    assert!(
        !table.stdout.contains(&alice_secret),
        "secrets are never listed"
    );

    {
        let store = Store::open(
            &node.dir,
            NodeConfig::load(&node.dir).unwrap().store_config(),
        )
        .unwrap();
        let alice = store.user("alice").unwrap().unwrap();
        let hash = alice.secret_hash.as_deref().unwrap();
        assert!(!hash.contains(&alice_secret));
        assert_eq!(secret::verify(&alice_secret, hash), Ok(true));
        assert_eq!(secret::verify(&erp_secret, hash), Ok(false));
        let tech = store.user("tech-7").unwrap().unwrap();
        assert!(tech.secret_hash.is_none());
        let code_hash = tech.enroll_code_hash.as_deref().unwrap();
        assert_eq!(secret::verify(&code, code_hash), Ok(true));
        let erp = store.user("erp").unwrap().unwrap();
        assert_eq!(erp.scopes.len(), 2);
        store.close();
    }

    // A second device (or a second central's enrollment) gets a new code;
    // the first code no longer works, devices enrolled stay enrolled.
    let again = node.run(&["user", "code", "tech-7"]).success();
    let second = printed(&again.stdout, "enrollment code:");
    assert_ne!(second, code);
    {
        let store = Store::open(
            &node.dir,
            NodeConfig::load(&node.dir).unwrap().store_config(),
        )
        .unwrap();
        let tech = store.user("tech-7").unwrap().unwrap();
        let code_hash = tech.enroll_code_hash.as_deref().unwrap();
        assert_eq!(secret::verify(&second, code_hash), Ok(true));
        assert_eq!(secret::verify(&code, code_hash), Ok(false));
        store.close();
    }
    node.run(&["user", "code", "erp"]).failure(2);
    node.run(&["user", "code", "nobody"]).failure(1);

    node.run(&["user", "revoke", "alice"]).success();
    node.run(&["user", "code", "alice"]).failure(1);
    let listed = node.run(&["user", "list", "--json"]).success().json();
    let alice = &listed[0];
    assert_eq!(alice["revoked"], true);
    assert_eq!(alice["has_secret"], false);
    let missing = node.run(&["user", "revoke", "nobody"]).failure(1);
    assert!(missing.stderr.contains("no user `nobody`"), "{missing:?}");
    let status = node.status();
    assert_eq!(status["users"], 3);
    assert_eq!(status["users_active"], 2);
}

#[test]
fn json_logs_are_one_object_per_line_on_stderr() {
    let node = TestNode::new("central");
    let run = node
        .run(&[
            "--log-format",
            "json",
            "user",
            "add",
            "ops",
            "--role",
            "operator",
        ])
        .success();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty(), "{run:?}");
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["level"].is_string(), "{line}");
    }
    assert!(
        run.stdout.starts_with("Added operator"),
        "logs stay off stdout"
    );
}

#[test]
fn run_serves_until_sigterm_then_closes_the_store() {
    let node = TestNode::new("central");
    // Any free ports: other tests run nodes at the same time.
    let config_path = node.dir.join("fieldsync.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let config = config
        .replace("\"0.0.0.0:7400\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\"");
    assert!(config.matches("127.0.0.1:0").count() == 2, "{config}");
    std::fs::write(&config_path, config).unwrap();
    let running = Running::start(&node.dir);
    // While it runs, `status` cannot open the store; it says the running
    // node holds it and shows what the node publishes instead.
    let busy = node.run(&["status"]).success();
    assert!(
        busy.stdout.contains("in use by the running node"),
        "{busy:?}"
    );

    let (status, seen) = running.terminate();
    assert!(status.success(), "exit {status:?}: {seen:?}");
    let log = seen.join("\n");
    assert!(log.contains("received SIGTERM"), "{log}");
    assert!(log.contains("store closed cleanly"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("ERROR"), "a clean stop logs no error: {log}");
    // The lock is released: the node opens again.
    node.status();
}

#[test]
fn fieldsync_dir_can_come_from_the_environment() {
    let node = TestNode::new("central");
    let output = std::process::Command::new(BIN)
        .env("FIELDSYNC_DIR", &node.dir)
        .env_remove("RUST_LOG")
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["name"], "test-node");
}
