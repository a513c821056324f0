//! The gateway and sync together, with real processes on loopback: a
//! central running `fieldsync run` with its HTTP gateway, and a technician's
//! laptop enrolled with a one-time code.
//!
//! Why this test exists beside the gateway's own tests and the sync tests:
//! the gateway tests run a router over a store in one process, and the sync
//! tests create work orders with the CLI. Only here does a write made over
//! REST travel to a laptop over QUIC, and a technician's offline edit travel
//! back into REST and the changes feed, through the binary people run.
//!
//! How it waits: a running node holds its store (sled locks it), so the
//! laptop's copy is read with `fieldsync show` while the laptop is stopped,
//! and "synced" is read from the central's `sync-status.json` (the driver's
//! per-peer state): the laptop has acknowledged the central's seq, or the
//! central holds the laptop's seq.

mod sync_support;

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fieldsync_node::config::NodeConfig;
use reqwest::blocking::Client;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_fieldsync");
/// How long any wait in this test may take before it fails.
const WAIT_MS_MAX: u64 = 30_000;
/// Poll interval of every wait.
const POLL_MS: u64 = 20;
/// Longest longpoll the test asks the feed for.
const LONGPOLL_MS: u64 = 2_000;

/// What one run of the binary printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success:\n{self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:#?}"))
    }

    /// The value after `prefix` on the first line that starts with it.
    fn field(&self, prefix: &str) -> String {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{self:#?}"))
            .trim()
            .to_string()
    }
}

fn command(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("FIELDSYNC_DIR")
        .env_remove("FIELDSYNC_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null());
    command
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free TCP port")
        .port()
}

/// One node: a data directory and, while it runs, its `fieldsync run`.
struct Node {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    sync_port: u16,
    /// Set when this node serves the gateway.
    gateway_port: Option<u16>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// `fieldsync init`, then loopback ports (free a moment ago), quick
    /// redials, and the gateway on a central.
    fn init(role: &str, name: &str) -> Node {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join(name);
        let node = |args: &[&str]| run_in(&dir, args);
        node(&["init", "--role", role, "--name", name]).success();
        let mut config = NodeConfig::load(&dir).expect("the config");
        let sync_port = free_udp_port();
        config.sync.listen = ([127, 0, 0, 1], sync_port).into();
        config.sync.keep_alive_ms = 500;
        config.sync.idle_timeout_ms = 3_000;
        config.sync.reconnect_delay_ms_min = 100;
        config.sync.reconnect_delay_ms_max = 1_000;
        let gateway_port = (role == "central").then(free_tcp_port);
        config.gateway.enabled = gateway_port.is_some();
        if let Some(port) = gateway_port {
            config.gateway.listen = ([127, 0, 0, 1], port).into();
        }
        std::fs::write(NodeConfig::path_in(&dir), config.to_commented_toml())
            .expect("writing the config");
        let log = temp.path().join(format!("{name}.log"));
        Node {
            _temp: temp,
            dir,
            sync_port,
            gateway_port,
            log,
            child: None,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        run_in(&self.dir, args)
    }

    fn sync_address(&self) -> String {
        format!("127.0.0.1:{}", self.sync_port)
    }

    fn url(&self, path: &str) -> String {
        let port = self.gateway_port.expect("this node serves the gateway");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// Start `fieldsync run`; wait until its sync driver (and gateway, if
    /// any) answer.
    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the log file");
        let child = command(&self.dir)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("fieldsync run starts");
        let pid = u64::from(child.id());
        self.child = Some(child);
        wait_until("the sync driver to write its status", || {
            self.assert_running();
            self.sync_status()
                .is_some_and(|status| status["pid"].as_u64() == Some(pid))
        });
        if self.gateway_port.is_some() {
            fieldsync_gateway::install_crypto_provider();
            let client = Client::new();
            wait_until("the gateway to answer /healthz", || {
                self.assert_running();
                client
                    .get(self.url("/healthz"))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
            });
        }
    }

    fn assert_running(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("fieldsync run exited with {status}:\n{}", self.log_text());
            }
        }
    }

    /// SIGTERM, and a clean exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for the child") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fieldsync run did not stop in time:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        };
        assert!(
            status.success(),
            "fieldsync run exited with {status}:\n{}",
            self.log_text()
        );
    }

    fn sync_status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.join("sync-status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn node_id(&self) -> String {
        self.run(&["status", "--json"]).success().json()["node_id"]
            .as_str()
            .expect("a node id")
            .to_string()
    }

    /// This running node's view of `peer` (by node id).
    fn peer(&self, peer: &str) -> Option<Value> {
        let status = self.sync_status()?;
        status["peers"]
            .as_array()?
            .iter()
            .find(|p| p["node_id"] == peer)
            .cloned()
    }

    /// A work order's read model from the stopped node's store.
    fn show(&self, id: &str) -> Option<Value> {
        let run = self.run(&["show", id, "--compact"]);
        (run.code == Some(0)).then(|| run.json())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_in(dir: &Path, args: &[&str]) -> Run {
    let output = command(dir)
        .args(args)
        .output()
        .expect("the fieldsync binary runs");
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "the binary panicked:\n{run:#?}"
    );
    run
}

/// GET a JSON body as the operator, expecting 200.
fn get_json(http: &Client, token: &str, url: &str) -> Value {
    let response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .expect("the gateway answers");
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().expect("a JSON body")
}

/// Every feed entry after `since` up to the current end, and the new
/// `last_seq` (pages of 2 entries, to exercise the cursor).
fn read_feed(http: &Client, central: &Node, token: &str, since: u64) -> (Vec<Value>, u64) {
    let mut entries = Vec::new();
    let mut since = since;
    loop {
        let page = get_json(
            http,
            token,
            &central.url(&format!("/api/v1/changes?since={since}&limit=2")),
        );
        entries.extend(page["entries"].as_array().expect("entries").iter().cloned());
        let last_seq = page["last_seq"].as_u64().expect("last_seq");
        assert!(last_seq >= since, "the cursor never moves back");
        since = last_seq;
        if page["next"].is_null() {
            return (entries, since);
        }
    }
}

#[test]
fn a_rest_work_order_reaches_the_laptop_and_field_edits_come_back_to_rest_and_the_feed() {
    let mut central = Node::init("central", "central");
    let operator = central
        .run(&["user", "add", "op", "--role", "operator"])
        .success();
    let op_secret = operator.field("client secret:");
    let code = central
        .run(&["user", "add", "tech-1", "--role", "technician"])
        .success()
        .field("enrollment code:");
    let central_id = central.run(&["status", "--json"]).success().json()["node_id"]
        .as_str()
        .expect("the central's node id")
        .to_string();
    central.start();
    fieldsync_gateway::install_crypto_provider();
    let http = Client::builder()
        .timeout(Duration::from_millis(WAIT_MS_MAX))
        .build()
        .expect("an HTTP client");
    let op = sync_support::gateway_token(&central.url(""), "op", &op_secret);

    // A laptop enrolls with its one-time code and starts syncing.
    let mut laptop = Node::init("field", "laptop-1");
    laptop
        .run(&[
            "enroll",
            "--central",
            &central.sync_address(),
            "--central-id",
            &central_id,
            "--code",
            &code,
        ])
        .success();
    let laptop_id = laptop.node_id();
    laptop.start();

    // The office creates two work orders over REST: one assigned to tech-1
    // (by a PATCH after the create), one left unassigned.
    for id in ["wo-rest-1", "wo-unassigned"] {
        let created = http
            .post(central.url("/api/v1/work-orders"))
            .bearer_auth(&op)
            .json(&json!({
                "id": id,
                "number": format!("WO-2026-{id}"),
                "title": "Compressor relay trips",
                "customer": { "name": "Ana Souza", "address": "Rua Augusta, 1109" },
                "priority": "high",
            }))
            .send()
            .expect("create answers");
        assert_eq!(created.status(), 201, "create {id}");
    }
    let assigned = http
        .patch(central.url("/api/v1/work-orders/wo-rest-1"))
        .bearer_auth(&op)
        .json(&json!({ "assignee": "tech-1" }))
        .send()
        .expect("patch answers");
    assert_eq!(assigned.status(), 200);
    let at_central: Value = assigned.json().expect("the patched work order");
    assert_eq!(at_central["assignee"], "tech-1");
    let central_seq = get_json(&http, &op, &central.url("/healthz"))["last_seq"]
        .as_u64()
        .expect("last_seq");
    assert!(central_seq >= 3, "two creates and a patch: {central_seq}");

    // The laptop has durably acknowledged everything up to that seq.
    wait_until("the laptop to acknowledge the REST writes", || {
        central
            .peer(&laptop_id)
            .is_some_and(|p| p["peer_acked_seq"].as_u64() >= Some(central_seq))
    });
    laptop.stop();
    let on_laptop = laptop.show("wo-rest-1").expect("wo-rest-1 on the laptop");
    assert_eq!(on_laptop["assignee"], "tech-1");
    assert_eq!(on_laptop["title"], "Compressor relay trips");
    assert_eq!(on_laptop["priority"], "high");
    assert_eq!(on_laptop["heads"], at_central["heads"]);
    assert!(
        laptop.show("wo-unassigned").is_none(),
        "an unassigned work order never reaches a technician"
    );

    // The feed's end before the technician's edits.
    let (_, since) = read_feed(&http, &central, &op, 0);
    assert_eq!(since, central_seq);

    // Offline, the technician starts work and adds a note.
    laptop
        .run(&[
            "wo",
            "status",
            "wo-rest-1",
            "--to",
            "in_progress",
            "--note",
            "on site",
        ])
        .success();
    let noted = laptop
        .run(&[
            "wo",
            "note",
            "wo-rest-1",
            "--text",
            "Relay replaced; <b>tested</b>",
        ])
        .success();
    // `wo-rest-1 seq N`: the laptop's seq of its last edit.
    let laptop_seq: u64 = noted
        .stdout
        .split_whitespace()
        .last()
        .and_then(|seq| seq.parse().ok())
        .unwrap_or_else(|| panic!("a seq in {noted:#?}"));
    let edited = laptop.show("wo-rest-1").expect("the edited work order");

    // A longpoll on the feed is waiting when the laptop comes back.
    let longpoll = {
        let http = http.clone();
        let op = op.clone();
        let url = central.url(&format!(
            "/api/v1/changes?since={since}&feed=longpoll&timeout={LONGPOLL_MS}"
        ));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
            loop {
                let page = get_json(&http, &op, &url);
                if !page["entries"].as_array().expect("entries").is_empty()
                    || Instant::now() > deadline
                {
                    return page;
                }
            }
        })
    };
    laptop.start();
    wait_until("the central to hold the laptop's edits", || {
        central
            .peer(&laptop_id)
            .is_some_and(|p| p["checkpoint_seq"].as_u64() >= Some(laptop_seq))
    });
    let woken = longpoll.join().expect("the longpoll thread");
    let woken_ids: Vec<&str> = woken["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["id"].as_str())
        .collect();
    assert_eq!(woken_ids, ["wo-rest-1"], "{woken:#}");

    // REST shows the technician's edits, as the technician made them.
    let order = get_json(&http, &op, &central.url("/api/v1/work-orders/wo-rest-1"));
    assert_eq!(order["status"], "in_progress");
    assert_eq!(order["heads"], edited["heads"]);
    assert_eq!(order["notes"][0]["text"], "Relay replaced; <b>tested</b>");
    assert_eq!(order["notes"][0]["by"], "tech-1");
    let last_status = order["status_log"]
        .as_array()
        .and_then(|log| log.last())
        .expect("a status log");
    assert_eq!(last_status["by"], "tech-1");
    assert_eq!(last_status["role"], "technician");
    assert_eq!(last_status["note"], "on site");

    // The feed lists the merge as an update of that one work order, with
    // the heads REST shows, after the cursor the reader held.
    let (entries, _) = read_feed(&http, &central, &op, since);
    let ids: Vec<&str> = entries.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["wo-rest-1"], "{entries:#?}");
    assert_eq!(entries[0]["op"], "update");
    assert_eq!(entries[0]["collection"], "work_orders");
    assert_eq!(entries[0]["number"], "WO-2026-wo-rest-1");
    assert_eq!(entries[0]["heads"], order["heads"]);
    assert!(entries[0]["seq"].as_u64() > Some(since));

    // The peers endpoint shows the laptop as tech-1's, connected.
    let peers = get_json(&http, &op, &central.url("/api/v1/peers"));
    let listed = peers
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["node_id"] == laptop_id.as_str()))
        .unwrap_or_else(|| panic!("the laptop in {peers:#}"));
    assert_eq!(listed["user"], "tech-1");
    assert_eq!(listed["connected"], true);

    laptop.stop();
    central.stop();
}
