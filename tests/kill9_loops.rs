//! `kill -9`, twenty times over: the receiving laptop during a prime (W1's
//! shape) and the central during an import (W3's shape). After every kill
//! the node restarts from its disk, `fieldsync verify` finds nothing wrong,
//! and in the end every acknowledged write is there.
//!
//! Why a loop and not one kill: a single kill lands in one phase of the
//! work (a flush, a checkpoint, a compaction); twenty land in many, with
//! the store reopened each time on whatever the previous kill left.

mod sync_support;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sync_support::*;

const KILLS: usize = 20;
/// Work orders the laptop primes from.
const PRIME_DOCS: usize = 2_000;
/// Work orders the central imports.
const IMPORT_DOCS: usize = 4_000;
/// New acknowledgements to wait for before each kill of the import.
const ACKS_PER_KILL: usize = 60;

fn documents(node: &Node) -> u64 {
    node.run(&["status", "--json"]).success().json()["documents"]
        .as_u64()
        .expect("a document count")
}

#[test]
fn twenty_kills_of_a_priming_laptop_each_restart_clean_and_it_completes() {
    let (mut central, codes) = central_with(&["tech-1"]);
    let file = central.dir.with_file_name("orders.jsonl");
    std::fs::write(&file, jsonl(PRIME_DOCS, "tech-1")).unwrap();
    central.run(&["import", file.to_str().unwrap()]).success();
    central.start();
    let mut laptop = enrolled_laptop("laptop-1", &central, &codes[0]);
    let mut mid_prime = 0;
    for kill in 0..KILLS {
        let before = documents(&laptop);
        laptop.start();
        // Let it receive something (or, once primed, settle), then kill.
        let deadline = Instant::now() + Duration::from_millis(50 + 20 * kill as u64);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        laptop.kill9();
        laptop.verify_clean();
        let after = documents(&laptop);
        assert!(
            after >= before,
            "kill {kill}: documents went from {before} to {after}"
        );
        if (after as usize) < PRIME_DOCS {
            mid_prime += 1;
        }
    }
    eprintln!("{mid_prime} of {KILLS} kills landed during the prime");
    assert!(mid_prime >= 1, "no kill landed during the prime");
    laptop.start();
    wait_converged(&central, &laptop);
    laptop.stop();
    laptop.verify_clean();
    assert_eq!(documents(&laptop), PRIME_DOCS as u64);
    central.stop();
    central.verify_clean();
}

/// Complete lines of the ack log (a kill can leave a partial last one).
fn acknowledged(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_string).collect()
}

#[test]
fn twenty_kills_of_an_importing_central_lose_no_acknowledged_write() {
    let central = Node::init("central", "central");
    let file = central.dir.with_file_name("orders.jsonl");
    let acks = central.dir.with_file_name("acks.txt");
    std::fs::write(&file, jsonl(IMPORT_DOCS, "tech-1")).unwrap();
    let mut kills = 0;
    for _ in 0..KILLS {
        let before = acknowledged(&acks).len();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fieldsync"))
            .arg("--dir")
            .arg(&central.dir)
            .args(["import", "--quiet", "--ack-log"])
            .arg(&acks)
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "the import failed: {status}");
                break true;
            }
            if acknowledged(&acks).len() >= before + ACKS_PER_KILL {
                break false;
            }
            assert!(Instant::now() < deadline, "the import is too slow to test");
            std::thread::sleep(Duration::from_millis(2));
        };
        if finished {
            break;
        }
        child.kill().unwrap();
        let _ = child.wait();
        kills += 1;
        central.verify_clean();
        assert_all_present(&central, &acknowledged(&acks));
    }
    eprintln!("{kills} kills landed mid-import");
    assert!(kills >= KILLS / 2, "only {kills} kills landed mid-import");
    // Re-running completes the import; everything acknowledged is there.
    central
        .run(&["import", "--quiet", file.to_str().unwrap()])
        .success();
    central.verify_clean();
    assert_eq!(documents(&central), IMPORT_DOCS as u64);
    assert_all_present(&central, &acknowledged(&acks));
}

/// Every acknowledged id is in the (stopped) node's store, readable.
fn assert_all_present(node: &Node, acked: &[String]) {
    let config = fieldsync_node::config::NodeConfig::load(&node.dir).unwrap();
    let store = fieldsync_node::store::Store::open(&node.dir, config.store_config()).unwrap();
    let distinct: HashSet<&String> = acked.iter().collect();
    for id in &distinct {
        let view = store
            .work_order(id)
            .unwrap_or_else(|e| panic!("acknowledged {id} unreadable: {e}"));
        assert!(view.is_some(), "acknowledged {id} was lost");
    }
    assert!(store.last_seq() >= distinct.len() as u64);
    store.close();
}
