//! `kill -9` in the middle of an import: nothing acknowledged is lost, the
//! store verifies clean, and re-running the import completes it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use fieldsync_node::config::NodeConfig;
use fieldsync_node::store::Store;

use crate::support::{command, complete_lines, fixture, TestNode};

/// Acknowledged ids to wait for before the kill.
const ACKS_BEFORE_KILL: usize = 300;
const FIXTURE_DOCS: u64 = 10_000;

#[test]
fn kill_9_during_import_loses_no_acknowledged_write() {
    let Some(fixture) = fixture() else { return };
    let node = TestNode::new("central");
    let ack_log = node.scratch("acks.txt");
    let mut child = command(&node.dir)
        .args(["import", "--quiet", "--ack-log"])
        .arg(&ack_log)
        .arg(&fixture)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if complete_lines(&ack_log).len() >= ACKS_BEFORE_KILL {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the import ended ({status}) before {ACKS_BEFORE_KILL} acknowledgements");
        }
        assert!(Instant::now() < deadline, "the import is too slow to test");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL: no destructors, no flush, no chance to clean up.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the import was killed mid-way");
    let acknowledged = complete_lines(&ack_log);
    assert!(acknowledged.len() >= ACKS_BEFORE_KILL);
    assert!(
        (acknowledged.len() as u64) < FIXTURE_DOCS,
        "the kill came after the import finished; nothing was tested"
    );

    let verified = node.run(&["verify", "--quiet"]).success();
    assert!(verified.stdout.contains("no problems"), "{verified:?}");

    // Every acknowledged id is readable: a sample through the CLI...
    for id in [
        &acknowledged[0],
        &acknowledged[acknowledged.len() / 2],
        &acknowledged[acknowledged.len() - 1],
    ] {
        let shown = node.run(&["show", id]).success().json();
        assert_eq!(shown["id"].as_str(), Some(id.as_str()));
    }
    // ...and all of them through the store.
    let config = NodeConfig::load(&node.dir).unwrap();
    let stored = {
        let store = Store::open(&node.dir, config.store_config()).unwrap();
        for id in &acknowledged {
            let view = store
                .work_order(id)
                .unwrap_or_else(|e| panic!("acknowledged {id} unreadable: {e}"))
                .unwrap_or_else(|| panic!("acknowledged {id} was lost"));
            assert_eq!(&view.id, id);
        }
        let last_seq = store.last_seq();
        store.close();
        last_seq
    };
    assert!(stored >= acknowledged.len() as u64);

    // Re-running completes the import; what is there is skipped, not an error.
    let rerun = node
        .run(&["import", "--quiet", fixture.to_str().unwrap()])
        .success();
    let skipped = rerun
        .stdout
        .split('(')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no skipped count in {rerun:?}"));
    assert!(skipped >= acknowledged.len() as u64, "{rerun:?}");
    assert_eq!(skipped, stored, "every stored document was skipped once");
    let status = node.status();
    assert_eq!(status["documents"], FIXTURE_DOCS);
    assert_eq!(status["last_seq"], FIXTURE_DOCS);
    node.run(&["verify", "--quiet"]).success();
}
