//! Every committed corpus and artifact file through its target's function,
//! on the stable toolchain and without libFuzzer: what CI runs
//! (`fuzz/replay.sh`). A crash artifact kept in `artifacts/<target>/` is a
//! regression test from then on.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            if path.is_file() {
                let bytes = fs::read(&path).unwrap();
                eprintln!("{target}: {}", path.display());
                run(&bytes);
                count += 1;
            }
        }
    }
    assert!(count > 0, "no corpus for {target}");
    println!("{target}: {count} inputs");
}

#[test]
fn sync_frame() {
    replay("sync_frame", fieldsync_fuzz::sync_frame);
}

#[test]
fn intake() {
    replay("intake", fieldsync_fuzz::intake);
}

#[test]
fn read_model() {
    replay("read_model", fieldsync_fuzz::read_model);
}

#[test]
fn tablestream() {
    replay("tablestream", fieldsync_fuzz::tablestream);
}

#[test]
fn event_envelope() {
    replay("event_envelope", fieldsync_fuzz::event_envelope);
}

#[test]
fn gateway_json() {
    replay("gateway_json", fieldsync_fuzz::gateway_json);
}
