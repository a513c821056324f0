//! Bad input gets a clear error naming the problem, never a panic, and
//! changes nothing it should not.

use std::path::Path;

use fieldsync_node::config::NodeConfig;
use fieldsync_node::store::format::FORMAT_VERSION;

use crate::support::{fieldsync, snapshot, work_order_line, write_jsonl, TestNode};

#[test]
fn a_truncated_line_is_named_and_the_lines_before_it_are_imported() {
    let node = TestNode::new("central");
    let mut text = String::new();
    for index in 0..3 {
        text.push_str(&work_order_line(index));
        text.push('\n');
    }
    let fourth = work_order_line(3);
    text.push_str(&fourth[..fourth.len() / 2]);
    let input = node.scratch("truncated.jsonl");
    std::fs::write(&input, text).unwrap();
    let run = node
        .run(&["import", "--quiet", input.to_str().unwrap()])
        .failure(2);
    assert!(run.stderr.contains("line 4"), "{run:?}");
    assert!(
        run.stderr.contains("3 work orders before the failure"),
        "{run:?}"
    );
    assert_eq!(node.status()["documents"], 3);
    node.run(&["verify", "--quiet"]).success();
}

#[test]
fn a_missing_import_file_is_a_usage_error() {
    let node = TestNode::new("central");
    let missing = node.scratch("no-such-file.jsonl");
    let run = node.run(&["import", missing.to_str().unwrap()]).failure(2);
    assert!(run.stderr.contains("no-such-file.jsonl"), "{run:?}");
}

#[test]
fn a_missing_data_dir_suggests_init_and_is_not_created() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("not-a-node");
    let commands: [&[&str]; 7] = [
        &["status"],
        &["verify"],
        &["run"],
        &["show", "x"],
        &["user", "list"],
        &["user", "add", "a", "--role", "operator"],
        &["import", "whatever.jsonl"],
    ];
    for args in commands {
        let run = fieldsync(&dir, args).failure(2);
        assert!(run.stderr.contains("does not exist"), "{args:?}: {run:?}");
        assert!(run.stderr.contains("fieldsync init"), "{args:?}: {run:?}");
        assert!(!dir.exists(), "{args:?} created the data dir");
    }
    // A directory that exists but holds no node says so too.
    std::fs::create_dir(&dir).unwrap();
    let run = fieldsync(&dir, &["status"]).failure(2);
    assert!(run.stderr.contains("no fieldsync node"), "{run:?}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn a_typo_in_the_config_names_the_key_and_the_line() {
    let node = TestNode::new("central");
    let path = NodeConfig::path_in(&node.dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("cache_docs_max"))
        .unwrap()
        + 1;
    std::fs::write(&path, text.replace("cache_docs_max", "cache_doc_max")).unwrap();
    for args in [&["status"][..], &["run"], &["verify"]] {
        let run = node.run(args).failure(2);
        assert!(run.stderr.contains("cache_doc_max"), "{run:?}");
        assert!(run.stderr.contains(&format!("line {line}")), "{run:?}");
        assert!(run.stderr.contains("fieldsync.toml"), "{run:?}");
    }
}

/// Overwrite every stored chunk of document `id` with bytes that are not
/// an Automerge document. Layout (node/src/store/keys.rs): tree `data`,
/// key b'd' + id + 0u8 + chunk number (u32 big-endian).
fn corrupt_document(dir: &Path, id: &str) {
    let db = sled::open(dir.join("sled")).unwrap();
    let data = db.open_tree("data").unwrap();
    let mut prefix = vec![b'd'];
    prefix.extend_from_slice(id.as_bytes());
    prefix.push(0);
    let keys: Vec<_> = data
        .scan_prefix(&prefix)
        .map(|item| item.unwrap().0)
        .collect();
    assert!(!keys.is_empty(), "no chunks for {id}");
    for key in keys {
        assert_eq!(key.len(), prefix.len() + 4);
        data.insert(key, &b"definitely not an automerge document"[..])
            .unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn corrupt_document_bytes_are_reported_by_verify_and_show() {
    let node = TestNode::new("central");
    let input = write_jsonl(&node.scratch("orders.jsonl"), 6);
    node.run(&["import", "--quiet", input.to_str().unwrap()])
        .success();
    corrupt_document(&node.dir, "wo-test-00002");

    let run = node.run(&["verify", "--quiet"]).failure(1);
    let problems: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    assert!(!problems.is_empty(), "{run:?}");
    for problem in &problems {
        assert!(problem.contains("document wo-test-00002"), "{run:?}");
    }
    assert!(run.stderr.contains("verify found"), "{run:?}");

    let shown = node.run(&["show", "wo-test-00002"]).failure(1);
    assert!(shown.stderr.contains("wo-test-00002"), "{shown:?}");
    assert!(shown.stderr.contains("fieldsync verify"), "{shown:?}");
    // The other documents are unharmed.
    let other = node.run(&["show", "wo-test-00003"]).success().json();
    assert_eq!(other["id"], "wo-test-00003");
    // And a missing one is a plain "not found".
    let missing = node.run(&["show", "wo-test-99999"]).failure(1);
    assert!(missing.stderr.contains("no work order"), "{missing:?}");
}

#[test]
fn a_store_from_a_newer_release_is_refused_and_left_untouched() {
    let node = TestNode::new("central");
    let input = write_jsonl(&node.scratch("orders.jsonl"), 3);
    node.run(&["import", "--quiet", input.to_str().unwrap()])
        .success();
    let newer = FORMAT_VERSION + 1;
    std::fs::write(
        node.dir.join("FORMAT"),
        format!("fieldsync-store {newer}\n"),
    )
    .unwrap();
    let before = snapshot(&node.dir);
    let commands: [&[&str]; 7] = [
        &["status"],
        &["verify"],
        &["run"],
        &["show", "wo-test-00001"],
        &["user", "add", "ops", "--role", "operator"],
        &["import", input.to_str().unwrap()],
        &["init"],
    ];
    for args in commands {
        let run = node.run(args);
        assert_ne!(run.code, Some(0), "{args:?}: {run:?}");
        if args != ["init"] {
            assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
            assert!(run.stderr.contains(&format!("format {newer}")), "{run:?}");
            assert!(run.stderr.contains("Nothing was changed"), "{run:?}");
            assert!(run.stderr.contains("newer"), "{run:?}");
        }
        assert!(before == snapshot(&node.dir), "{args:?} changed the store");
    }
}

#[test]
fn init_with_a_bad_name_creates_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    let run = fieldsync(&dir, &["init", "--name", ""]).failure(2);
    assert!(run.stderr.contains("--name"), "{run:?}");
    assert!(!dir.exists());
    let run = fieldsync(&dir, &["init", "--role", "boss"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("central"), "{run:?}");
    assert!(!dir.exists());
}
