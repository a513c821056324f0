//! Helpers for the sync black-box tests: real `fieldsync` processes, each
//! with its own data directory, syncing over QUIC on 127.0.0.1.
//!
//! A running node holds its store, so the tests do what an operator would:
//! edit with `fieldsync wo` while a node is stopped, start it with
//! `fieldsync run`, watch `sync-status.json` (the driver's per-peer state)
//! until the peers are in sync, stop it with SIGTERM, and read the result
//! with `fieldsync show`.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::fs::File;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_fieldsync");
/// How long any wait in these tests may take before failing.
pub(crate) const WAIT_MS_MAX: u64 = 30_000;

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success:\n{self:#?}");
        self
    }

    pub(crate) fn failure_code(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}:\n{self:#?}"
        );
        self
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:#?}"))
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

pub(crate) fn fieldsync(dir: &Path, args: &[&str]) -> Run {
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

/// A UDP port that was free a moment ago.
pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
        .port()
}

/// A TCP port that was free a moment ago.
pub(crate) fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free TCP port")
        .port()
}

/// The value of the first stdout line starting with `prefix` (the
/// credentials `fieldsync user add` prints once).
pub(crate) fn printed(run: &Run, prefix: &str) -> String {
    run.stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {run:?}"))
        .trim()
        .to_string()
}

/// Poll `check` every 20 ms until it holds; fail after `WAIT_MS_MAX`.
pub(crate) fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bearer token for `client_id` from the gateway at `base`
/// (`http://127.0.0.1:port`): waits until `/healthz` answers, then asks
/// `/oauth/token` for OAuth2 client credentials.
pub(crate) fn gateway_token(base: &str, client_id: &str, secret: &str) -> String {
    fieldsync_gateway::install_crypto_provider();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(WAIT_MS_MAX))
        .build()
        .expect("an HTTP client");
    wait_until("the gateway to answer /healthz", || {
        http.get(format!("{base}/healthz"))
            .send()
            .is_ok_and(|response| response.status().is_success())
    });
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .expect("the token endpoint answers");
    assert_eq!(response.status(), 200, "token for {client_id}");
    let body: serde_json::Value = response.json().expect("a token response");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// One node: a data directory and, while it runs, its process.
pub(crate) struct Node {
    _temp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Set config keys: each `(section, key, value)` replaces the line
    /// `key = ...` under `[section]` (`value` is TOML).
    pub(crate) fn configure(&self, settings: &[(&str, &str, String)]) {
        let path = self.dir.join("fieldsync.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        let mut section = String::new();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with('[') {
                section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            }
            let key = line.split(" = ").next().unwrap_or_default();
            let setting = settings.iter().find(|(s, k, _)| *s == section && *k == key);
            match setting {
                Some((_, key, value)) => out.push_str(&format!("{key} = {value}")),
                None => out.push_str(line),
            }
            out.push('\n');
        }
        std::fs::write(&path, out).expect("write config");
    }

    /// Turn the gateway on, on `127.0.0.1:port`.
    pub(crate) fn enable_gateway(&self, port: u16) {
        self.configure(&[
            ("gateway", "enabled", "true".into()),
            ("gateway", "listen", format!("\"127.0.0.1:{port}\"")),
        ]);
    }

    /// `fieldsync init`, then a config tuned for tests: loopback, a free
    /// port, quick redials, no gateway, a field app on a free port.
    pub(crate) fn init(role: &str, name: &str) -> Node {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join(name);
        fieldsync(&dir, &["init", "--role", role, "--name", name]).success();
        let port = free_udp_port();
        let path = dir.join("fieldsync.toml");
        let text = std::fs::read_to_string(&path).expect("the config file");
        let mut section = String::new();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with('[') {
                section = line.to_string();
            }
            let line = match (section.as_str(), line.split(" = ").next()) {
                ("[sync]", Some("listen")) => format!("listen = \"127.0.0.1:{port}\""),
                ("[sync]", Some("keep_alive_ms")) => "keep_alive_ms = 500".into(),
                ("[sync]", Some("idle_timeout_ms")) => "idle_timeout_ms = 3000".into(),
                ("[sync]", Some("reconnect_delay_ms_min")) => "reconnect_delay_ms_min = 100".into(),
                ("[sync]", Some("reconnect_delay_ms_max")) => {
                    "reconnect_delay_ms_max = 1000".into()
                }
                ("[gateway]", Some("enabled")) => "enabled = false".into(),
                // Many laptops on one machine: each field app on a free port.
                ("[field_app]", Some("listen")) => "listen = \"127.0.0.1:0\"".into(),
                _ => line.to_string(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        std::fs::write(&path, out).expect("writing the config");
        let log = temp.path().join(format!("{name}.log"));
        Node {
            _temp: temp,
            dir,
            port,
            log,
            child: None,
        }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        fieldsync(&self.dir, args)
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The node id from the node's certificate (works while it runs).
    pub(crate) fn central_id(&self) -> String {
        fieldsync_node::identity::Identity::load(&self.dir)
            .expect("the node's identity")
            .node_id()
            .to_string()
    }

    pub(crate) fn node_id(&self) -> String {
        self.run(&["status", "--json"]).success().json()["node_id"]
            .as_str()
            .expect("a node id")
            .to_string()
    }

    /// Start `fieldsync run` and wait until its sync driver listens.
    pub(crate) fn start(&mut self) {
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
        let pid = child.id();
        self.child = Some(child);
        wait_until("the sync driver to listen", || {
            self.sync_status()
                .is_some_and(|status| status["pid"].as_u64() == Some(u64::from(pid)))
        });
    }

    /// SIGTERM, and wait for a clean exit.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = wait_exit(&mut child);
        assert!(
            exit.success(),
            "fieldsync run exited with {exit}: {}",
            self.log_text()
        );
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            let _ = child.wait();
        }
    }

    pub(crate) fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// The running process's peak resident set size (`VmHWM`), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The driver's status file (`sync-status.json`), if written.
    pub(crate) fn sync_status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join("sync-status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// This node's view of `peer`, from the status file.
    pub(crate) fn peer(&self, peer: &str) -> Option<serde_json::Value> {
        let status = self.sync_status()?;
        status["peers"]
            .as_array()?
            .iter()
            .find(|p| p["node_id"] == peer)
            .cloned()
    }

    /// A work order's read model (the node must be stopped).
    pub(crate) fn show(&self, id: &str) -> Option<serde_json::Value> {
        let run = self.run(&["show", id, "--compact"]);
        (run.code == Some(0)).then(|| run.json())
    }

    pub(crate) fn verify_clean(&self) {
        let run = self.run(&["verify"]);
        assert_eq!(run.code, Some(0), "verify found problems:\n{run:#?}");
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A central with technicians `users`, each with a one-time code.
pub(crate) fn central_with(users: &[&str]) -> (Node, Vec<String>) {
    let central = Node::init("central", "central");
    let mut codes = Vec::new();
    for user in users {
        let added = central
            .run(&["user", "add", user, "--role", "technician"])
            .success();
        let code = added
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("enrollment code: "))
            .expect("an enrollment code")
            .trim()
            .to_string();
        codes.push(code);
    }
    (central, codes)
}

/// A laptop enrolled with the (running) central.
pub(crate) fn enrolled_laptop(name: &str, central: &Node, code: &str) -> Node {
    let laptop = Node::init("field", name);
    laptop.enroll_at(central, code);
    laptop
}

impl Node {
    /// `fieldsync enroll` this (stopped) field node at a running central
    /// with a code it issued; a second central is added to the peers.
    pub(crate) fn enroll_at(&self, central: &Node, code: &str) {
        let address = central.address();
        let central_id = central.central_id();
        self.run(&[
            "enroll",
            "--central",
            &address,
            "--central-id",
            &central_id,
            "--code",
            code,
        ])
        .success();
    }

    /// Change the (stopped) node's config as a whole: read, edit, write
    /// back with every key commented, as `init` writes it.
    pub(crate) fn edit_config(&self, edit: impl FnOnce(&mut fieldsync_node::config::NodeConfig)) {
        use fieldsync_node::config::NodeConfig;
        let mut config = NodeConfig::load(&self.dir).expect("the config");
        edit(&mut config);
        std::fs::write(NodeConfig::path_in(&self.dir), config.to_commented_toml())
            .expect("writing the config");
    }

    /// This node as another node's office peer (`[sync] peers`, no user).
    pub(crate) fn as_office_peer(&self) -> fieldsync_node::config::PeerConfig {
        fieldsync_node::config::PeerConfig {
            address: self.address(),
            node_id: self.central_id(),
            user: None,
        }
    }

    /// A new one-time enrollment code for `user` (the node must be
    /// stopped): `fieldsync user code`.
    pub(crate) fn new_code(&self, user: &str) -> String {
        let run = self.run(&["user", "code", user]).success();
        printed(&run, "enrollment code:")
    }

    /// A page of the running field node's field app (`/`, `/wo/<id>`),
    /// opened with the URL it wrote to `field-app.url`: its status and
    /// body, or `None` while the app does not answer yet.
    pub(crate) fn field_app_get(&self, path: &str) -> Option<(u16, String)> {
        fieldsync_gateway::install_crypto_provider();
        let open = std::fs::read_to_string(self.dir.join("field-app.url")).ok()?;
        let open = open.trim();
        let base = open.split("/open").next()?;
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(WAIT_MS_MAX))
            .build()
            .expect("an HTTP client");
        let opened = client.get(open).send().ok()?;
        if opened.status() != 303 {
            return None;
        }
        let cookie = opened
            .headers()
            .get("set-cookie")?
            .to_str()
            .ok()?
            .split(';')
            .next()?
            .to_string();
        let page = client
            .get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .ok()?;
        let status = page.status().as_u16();
        Some((status, page.text().ok()?))
    }

    /// Does the running field node's field app list work order `id`?
    /// `None` while the app does not answer.
    pub(crate) fn field_app_lists(&self, id: &str) -> Option<bool> {
        let (status, body) = self.field_app_get("/")?;
        (status == 200).then(|| body.contains(&format!("href=\"/wo/{id}\"")))
    }
}

/// Create a work order at a stopped central.
pub(crate) fn create(central: &Node, id: &str, assignee: &str) {
    central
        .run(&[
            "wo",
            "create",
            "--id",
            id,
            "--title",
            &format!("Work order {id}"),
            "--customer",
            "Ana Souza",
            "--address",
            "Rua Augusta, 1109",
            "--assignee",
            assignee,
        ])
        .success();
}

/// Wait until two running nodes have a session and each has durably
/// acknowledged everything the other has (checked on both sides: a node
/// alone cannot know the other has nothing more to send).
pub(crate) fn wait_converged(a: &Node, b: &Node) {
    let (a_id, b_id) = (a.node_id_from_status(), b.node_id_from_status());
    let settled = |p: Option<serde_json::Value>| {
        p.is_some_and(|p| {
            p["connected"] == true && p["in_sync"] == true && p["changes_unacked"] == 0
        })
    };
    wait_until("both nodes to be in sync", || {
        settled(a.peer(&b_id)) && settled(b.peer(&a_id))
    });
}

impl Node {
    /// The node id, from the running driver's status file.
    pub(crate) fn node_id_from_status(&self) -> String {
        self.sync_status()
            .and_then(|status| status["node_id"].as_str().map(str::to_string))
            .expect("a running node's status file")
    }
}

/// Work orders in the import format, all assigned to `assignee`.
pub(crate) fn jsonl(count: usize, assignee: &str) -> String {
    let mut text = String::new();
    for index in 0..count {
        let line = serde_json::json!({
            "id": format!("wo-{index:05}"),
            "number": format!("WO-2026-{index:06}"),
            "status": "assigned",
            "priority": "normal",
            "customer": {"name": format!("Customer {index}"), "address": "Rua Augusta, 1109", "phone": "+55 11 95897-5662"},
            "description": format!("Work order {index}: replace the condenser fan."),
            "assignee": assignee,
            "scheduled_for": "2026-05-03T07:35:00Z",
            "notes": [{"author": "operator-0001", "text": "Customer called twice.", "at": "2026-04-30T12:27:00Z"}],
            "materials": [{"sku": "SKU-00966", "qty": 2, "description": "fan motor"}],
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text
}
