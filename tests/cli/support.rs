//! Helpers for driving the real `fieldsync` binary in temporary data
//! directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_fieldsync");

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        run.assert_no_panic();
        run
    }

    /// No run of the binary, failed or not, may panic or show a backtrace.
    pub(crate) fn assert_no_panic(&self) {
        for text in [&self.stdout, &self.stderr] {
            assert!(
                !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
                "the binary panicked:\n{self:?}"
            );
        }
    }

    pub(crate) fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success:\n{self:?}");
        self
    }

    /// A failure with this exit code, an `error:` line and a `hint:` line.
    pub(crate) fn failure(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "expected exit {code}:\n{self:?}");
        assert!(self.stderr.contains("error: "), "no error line:\n{self:?}");
        assert!(self.stderr.contains("hint: "), "no hint line:\n{self:?}");
        self
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:?}"))
    }
}

/// A `fieldsync --dir <dir>` command with a clean environment.
pub(crate) fn command(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("FIELDSYNC_DIR")
        .env_remove("FIELDSYNC_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null());
    command
}

/// Run `fieldsync --dir <dir> <args>` to completion.
pub(crate) fn fieldsync(dir: &Path, args: &[&str]) -> Run {
    let output = command(dir)
        .args(args)
        .output()
        .expect("the fieldsync binary runs");
    Run::from_output(output)
}

/// A new central (or field) node in a fresh temporary directory.
pub(crate) struct TestNode {
    _temp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
}

impl TestNode {
    pub(crate) fn new(role: &str) -> TestNode {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join("node");
        fieldsync(&dir, &["init", "--role", role, "--name", "test-node"]).success();
        TestNode { _temp: temp, dir }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        fieldsync(&self.dir, args)
    }

    /// A file path beside the data directory (not inside it).
    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        self.dir.with_file_name(name)
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        self.run(&["status", "--json"]).success().json()
    }
}

/// One work order in the import (fixture) format.
pub(crate) fn work_order_line(index: usize) -> String {
    let statuses = ["open", "assigned", "in_progress", "on_hold", "completed"];
    serde_json::json!({
        "id": format!("wo-test-{index:05}"),
        "number": format!("WO-TEST-{index:06}"),
        "status": statuses[index % statuses.len()],
        "priority": "normal",
        "customer": {
            "name": format!("Customer {index}"),
            "address": "Rua Augusta, 1109 - Sao Paulo",
            "phone": "+55 11 95897-5662",
        },
        "description": format!("Work order {index}: replace the condenser fan."),
        "assignee": format!("tech-{:04}", index % 7),
        "scheduled_for": "2026-05-03T07:35:00Z",
        "notes": [{"author": "operator-0001", "text": "Customer called twice.", "at": "2026-04-30T12:27:00Z"}],
        "materials": [{"sku": "SKU-00966", "qty": 2, "description": "fan motor"}],
    })
    .to_string()
}

/// A JSONL file of `count` work orders; returns the path.
pub(crate) fn write_jsonl(path: &Path, count: usize) -> PathBuf {
    let mut text = String::new();
    for index in 0..count {
        text.push_str(&work_order_line(index));
        text.push('\n');
    }
    std::fs::write(path, text).expect("writing the JSONL file");
    path.to_path_buf()
}

/// The benchmark fixture, if this checkout has `shared/` beside it.
pub(crate) fn fixture() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/wo-10000-42.jsonl.gz");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "note: {} is absent; skipping the test that needs the benchmark fixture",
            path.display()
        );
        None
    }
}

/// Every file under `dir` with its bytes.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("readable file");
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// Wait for a child to exit, at most `limit`; kill it and fail if it does not.
pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Complete lines (ending in a newline) of a file that may still be growing.
pub(crate) fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `fieldsync run` in `dir`, started and seen saying it runs, with its
/// stderr lines collected.
pub(crate) struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    /// The stderr lines so far.
    pub(crate) seen: Vec<String>,
}

impl Running {
    /// Start `fieldsync run` and wait (30 s at most) for "node running".
    pub(crate) fn start(dir: &Path) -> Running {
        use std::io::{BufRead as _, BufReader};
        let mut child = command(dir)
            .arg("run")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start fieldsync run");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines_tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            lines,
            reader,
            seen: Vec::new(),
        };
        while !running
            .seen
            .iter()
            .any(|line| line.contains("node running"))
        {
            let line = running
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!(
                        "`fieldsync run` never said it was running: {:?}",
                        running.seen
                    )
                });
            running.seen.push(line);
        }
        running
    }

    /// SIGTERM, as a service manager stops it; wait for the exit (30 s at
    /// most) and every stderr line. Answers the exit status and the lines.
    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        self.reader.join().expect("the stderr reader");
        self.seen.extend(self.lines.try_iter());
        (status, self.seen)
    }
}
