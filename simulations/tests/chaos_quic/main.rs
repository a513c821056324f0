//! Chaos over real QUIC: real `fieldsync run` processes on loopback, every
//! laptop reaching the central through a fault-injecting UDP relay (loss,
//! delay and reordering, duplication, link flaps), and processes killed
//! with SIGKILL while the operators and technicians keep editing offline.
//! After a fixed time of faults everything heals; then every laptop must
//! hold the central's heads for each of its work orders, every edit the
//! CLI acknowledged (exit 0 means durable) must be on the central and on
//! the assigned laptop, and `fieldsync verify` must find nothing wrong.
//!
//! It takes about a minute, so it is ignored by default:
//!
//! ```sh
//! cargo test -p fieldsync-sim --release --test chaos_quic -- --ignored --nocapture
//! ```
//!
//! `FIELDSYNC_CHAOS_SECS` (default 30), `FIELDSYNC_CHAOS_LAPTOPS` (3) and
//! `FIELDSYNC_CHAOS_SEED` (1) shape the run; `FIELDSYNC_BIN` names a
//! prebuilt `fieldsync` binary (otherwise the test builds it with cargo).

mod relay;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use relay::{Faults, Relay};

/// How long any single wait may take before the test fails.
const WAIT_MS_MAX: u64 = 120_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `fieldsync` binary: `FIELDSYNC_BIN`, or built by cargo in the
/// profile this test runs in.
fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("FIELDSYNC_BIN") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(&workspace).args([
        "build",
        "-p",
        "fieldsync",
        "--bin",
        "fieldsync",
        "--message-format=json",
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "building fieldsync failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "fieldsync")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the fieldsync executable")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

struct Node {
    bin: PathBuf,
    _temp: tempfile::TempDir,
    name: String,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Node {
    fn init(bin: &Path, role: &str, name: &str) -> Node {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = temp.path().join(name);
        let port = free_udp_port();
        let log = temp.path().join(format!("{name}.log"));
        let node = Node {
            bin: bin.to_path_buf(),
            _temp: temp,
            name: name.into(),
            dir,
            port,
            log,
            child: None,
        };
        node.ok(&["init", "--role", role, "--name", name]);
        // Loopback, quick keep-alives and redials, no gateway.
        let path = node.dir.join("fieldsync.toml");
        let text = std::fs::read_to_string(&path).expect("the config file");
        let (mut section, mut out) = (String::new(), String::new());
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
                _ => line.to_string(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        std::fs::write(&path, out).expect("writing the config");
        node
    }

    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(&self.bin)
            .env_remove("FIELDSYNC_DIR")
            .env_remove("RUST_LOG")
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the fieldsync binary runs");
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "{} panicked: {}",
            self.name,
            run.stderr
        );
        run
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "{} {args:?} failed: {}{}",
            self.name,
            run.stdout,
            run.stderr
        );
        run
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the log file");
        let child = Command::new(&self.bin)
            .env_remove("FIELDSYNC_DIR")
            .env_remove("RUST_LOG")
            .arg("--dir")
            .arg(&self.dir)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("fieldsync run starts");
        let pid = u64::from(child.id());
        self.child = Some(child);
        wait_until("the sync driver to listen", || {
            self.status()
                .is_some_and(|s| s["pid"].as_u64() == Some(pid))
        });
    }

    /// SIGKILL: no flush, no goodbye.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 our own child");
            let _ = child.wait();
        }
    }

    /// SIGTERM and a clean exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            if let Some(exit) = child.try_wait().expect("waiting for our child") {
                assert!(
                    exit.success(),
                    "{} exited with {exit}:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("sync-status.json")).ok()?).ok()
    }

    fn node_id(&self) -> String {
        self.status()
            .and_then(|s| s["node_id"].as_str().map(str::to_string))
            .expect("a running node's status")
    }

    /// Connected, nothing in flight, everything acknowledged, as this node
    /// sees `peer`.
    fn settled_with(&self, peer: &str) -> bool {
        self.status().is_some_and(|s| {
            s["peers"].as_array().is_some_and(|peers| {
                peers.iter().any(|p| {
                    p["node_id"] == peer
                        && p["connected"] == true
                        && p["in_sync"] == true
                        && p["changes_unacked"] == 0
                })
            })
        })
    }

    /// A work order's read model (the node must be stopped).
    fn show(&self, id: &str) -> Option<serde_json::Value> {
        let run = self.run(&["show", id, "--compact"]);
        (run.code == Some(0)).then(|| serde_json::from_str(&run.stdout).expect("show prints JSON"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Note texts the CLI acknowledged, by work order.
type Acked = BTreeMap<String, Vec<String>>;

fn note(node: &Node, id: &str, text: &str, acked: &mut Acked) -> bool {
    let run = node.run(&["wo", "note", id, "--text", text]);
    if run.code == Some(0) {
        acked
            .entry(id.to_string())
            .or_default()
            .push(text.to_string());
    }
    run.code == Some(0)
}

#[test]
#[ignore = "chaos over real QUIC takes about a minute: cargo test -p fieldsync-sim --release --test chaos_quic -- --ignored"]
fn chaos_over_quic_converges_and_loses_nothing() {
    let chaos_secs = env_u64("FIELDSYNC_CHAOS_SECS", 30);
    let laptops_n = env_u64("FIELDSYNC_CHAOS_LAPTOPS", 3) as usize;
    let seed = env_u64("FIELDSYNC_CHAOS_SEED", 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bin = binary();

    // The office: technicians, two work orders each.
    let mut central = Node::init(&bin, "central", "central");
    let mut codes = Vec::new();
    let mut orders: BTreeMap<String, usize> = BTreeMap::new();
    for t in 0..laptops_n {
        let user = format!("tech-{t}");
        let added = central.ok(&["user", "add", &user, "--role", "technician"]);
        let code = added
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("enrollment code: "))
            .expect("a code")
            .trim()
            .to_string();
        codes.push(code);
        for k in 0..2 {
            let id = format!("wo-{t}-{k}");
            central.ok(&[
                "wo",
                "create",
                "--id",
                &id,
                "--title",
                &format!("Job {id}"),
                "--customer",
                "Ana",
                "--assignee",
                &user,
            ]);
            orders.insert(id, t);
        }
    }
    central.start();
    let central_id = central.node_id();

    // Laptops, enrolled through their relays (faults off until now).
    let mut relays = Vec::new();
    let mut laptops = Vec::new();
    for (t, code) in codes.iter().enumerate() {
        let relay = Relay::start(central.address(), seed * 1000 + t as u64);
        let mut laptop = Node::init(&bin, "field", &format!("laptop-{t}"));
        laptop.ok(&[
            "enroll",
            "--central",
            &relay.address.to_string(),
            "--code",
            code,
        ]);
        laptop.start();
        relays.push(relay);
        laptops.push(laptop);
    }
    let laptop_ids: Vec<String> = laptops.iter().map(Node::node_id).collect();
    for (laptop, id) in laptops.iter().zip(&laptop_ids) {
        wait_until("the first sync", || {
            laptop.settled_with(&central_id) && central.settled_with(id)
        });
    }

    // Chaos for a fixed time.
    let mut acked = Acked::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut edits = 0u64;
    let deadline = Instant::now() + Duration::from_secs(chaos_secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..=1200)));
        let t = rng.random_range(0..laptops_n);
        match rng.random_range(0..100) {
            0..=39 => {
                let faults = Faults {
                    loss: rng.random_range(0.0..0.3),
                    duplicate: rng.random_range(0.0..0.1),
                    delay_ms: rng.random_range(0..120),
                    jitter_ms: rng.random_range(0..120),
                    blackhole_until: None,
                };
                relays[t].set(faults);
                *counts.entry("link degraded").or_default() += 1;
            }
            40..=54 => {
                let flap = Duration::from_millis(rng.random_range(500..=4000));
                let mut faults = relays[t]
                    .faults
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                faults.blackhole_until = Some(Instant::now() + flap);
                relays[t].set(faults);
                *counts.entry("link flap").or_default() += 1;
            }
            55..=79 => {
                // The laptop dies; the technician keeps working offline.
                laptops[t].kill9();
                for _ in 0..rng.random_range(1..=3) {
                    let id = format!("wo-{t}-{}", rng.random_range(0..2));
                    edits += 1;
                    note(
                        &laptops[t],
                        &id,
                        &format!("field note {edits} on laptop-{t}"),
                        &mut acked,
                    );
                }
                laptops[t].start();
                *counts.entry("laptop kill -9").or_default() += 1;
            }
            80..=91 => {
                // The central dies; the office edits while it is down.
                central.kill9();
                for _ in 0..rng.random_range(1..=2) {
                    let ids: Vec<&String> = orders.keys().collect();
                    let id = ids[rng.random_range(0..ids.len())].clone();
                    edits += 1;
                    note(&central, &id, &format!("office note {edits}"), &mut acked);
                }
                central.start();
                *counts.entry("central kill -9").or_default() += 1;
            }
            _ => {
                relays[t].set(Faults::default());
                *counts.entry("link repaired").or_default() += 1;
            }
        }
    }

    // Heal: clean links, everything running, wait until all are in sync.
    for relay in &relays {
        relay.set(Faults::default());
    }
    let healed = Instant::now();
    for (laptop, id) in laptops.iter().zip(&laptop_ids) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while !(laptop.settled_with(&central_id) && central.settled_with(id)) {
            if Instant::now() > deadline {
                let tail = |node: &Node| {
                    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                    let lines: Vec<&str> = log.lines().collect();
                    lines[lines.len().saturating_sub(30)..].join("\n")
                };
                panic!(
                    "{} did not converge with the central after the heal\nlaptop status: {:#}\ncentral status: {:#}\nlaptop log:\n{}\ncentral log:\n{}",
                    laptop.name,
                    laptop.status().unwrap_or_default(),
                    central.status().unwrap_or_default(),
                    tail(laptop),
                    tail(&central)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let converge_ms = healed.elapsed().as_millis();
    central.stop();
    for laptop in &mut laptops {
        laptop.stop();
    }

    // Same heads everywhere; every acknowledged note on the central and on
    // the assigned laptop; stores verify.
    for (id, &t) in &orders {
        let at_central = central
            .show(id)
            .expect("the central holds every work order");
        let at_laptop = laptops[t]
            .show(id)
            .expect("the assigned laptop holds its work order");
        assert_eq!(
            at_central["heads"], at_laptop["heads"],
            "{id}: central and laptop-{t} disagree"
        );
        let texts = |view: &serde_json::Value| -> Vec<String> {
            view["notes"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .filter_map(|n| n["text"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        for text in acked.get(id).into_iter().flatten() {
            assert!(
                texts(&at_central).contains(text),
                "{id}: acknowledged `{text}` missing on the central"
            );
            assert!(
                texts(&at_laptop).contains(text),
                "{id}: acknowledged `{text}` missing on laptop-{t}"
            );
        }
        for (other, laptop) in laptops.iter().enumerate().filter(|(o, _)| *o != t) {
            assert!(
                laptop.show(id).is_none(),
                "laptop-{other} holds {id}, which is not its user's"
            );
        }
    }
    for node in std::iter::once(&central).chain(laptops.iter()) {
        let run = node.run(&["verify"]);
        assert_eq!(
            run.code,
            Some(0),
            "{} does not verify: {}{}",
            node.name,
            run.stdout,
            run.stderr
        );
    }
    let relayed: u64 = relays
        .iter()
        .map(|r| {
            r.counters
                .relayed
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    let dropped: u64 = relays
        .iter()
        .map(|r| {
            r.counters
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    let duplicated: u64 = relays
        .iter()
        .map(|r| {
            r.counters
                .duplicated
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    let notes: usize = acked.values().map(Vec::len).sum();
    println!(
        "chaos over QUIC (seed {seed}): 1 central + {laptops_n} laptops, {chaos_secs}s of faults {counts:?}; \
         {relayed} datagrams relayed, {dropped} dropped, {duplicated} duplicated; \
         {notes} acknowledged offline edits all on the central and the assigned laptop; converged {converge_ms} ms after the heal"
    );
}
