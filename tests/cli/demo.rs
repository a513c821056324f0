//! `fieldsync demo` as a newcomer runs it: the printed URL answers, the
//! printed integration client reads the changes feed, the scripted
//! offline edit merges, and typing `off` and `on` takes alice's laptop off
//! the network and back.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::BIN;

/// The whole scenario takes a few seconds at one second a step.
const DEMO_TIMEOUT_S: u64 = 90;

/// Never leave a demo running when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn field<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    line.strip_prefix(label).map(str::trim)
}

/// `fieldsync demo --port 0 --step-s 1` with `extra` arguments, and its
/// stdout lines as they come.
fn start_demo(extra: &[&str]) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args([
                "demo",
                "--port",
                "0",
                "--step-s",
                "1",
                "--exit-after-s",
                "120",
            ])
            .args(extra)
            .env_remove("FIELDSYNC_DIR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fieldsync demo"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// Ctrl-C, as the newcomer would press it: a clean stop, exit 0.
fn interrupt(mut child: KillOnDrop) {
    let interrupted = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    let status = child.0.wait().expect("demo exits on Ctrl-C");
    assert!(status.success(), "demo exit status {status}");
}

#[test]
fn demo_serves_the_printed_url_and_merges_the_offline_edit() {
    let (mut child, lines) = start_demo(&[]);
    let (mut url, mut client) = (None, None);
    let mut merged = None;
    let (mut log_file, mut printed) = (None, Vec::new());
    let mut apps = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(DEMO_TIMEOUT_S);
    while merged.is_none() && std::time::Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Some(value) = field(&line, "Office console (gateway and web UI):") {
            url = Some(value.trim_end_matches('/').to_string());
        }
        if let Some(value) = field(&line, "Integration client:") {
            let credentials = value.split_whitespace().collect::<Vec<_>>();
            client = Some((credentials[0].to_string(), credentials[2].to_string()));
        }
        if let Some(rest) = line.strip_prefix("The nodes' logs go to ") {
            log_file = rest.split(" (").next().map(std::path::PathBuf::from);
        }
        for user in ["alice", "bob"] {
            if let Some(app) = field(&line, &format!("{user}'s field app (on the laptop):")) {
                apps.insert(user, app.to_string());
            }
        }
        printed.push(line.clone());
        if line.starts_with("[6] Merged on both sides") {
            merged = Some(line);
        }
    }
    let merged = merged.expect("the scenario reached the merge");
    assert!(
        merged.contains("status in_progress") && merged.contains("2 notes"),
        "{merged}"
    );
    // The terminal tells the story; the nodes' logs are in the file.
    assert!(
        !printed.iter().any(|line| line.contains(" INFO ")),
        "{printed:#?}"
    );
    let log_file = log_file.expect("the log file was named");
    let logged = std::fs::read_to_string(&log_file).expect("the log file");
    assert!(logged.contains(" INFO "), "{logged}");
    let url = url.expect("a gateway URL was printed");
    let (client_id, secret) = client.expect("integration credentials were printed");

    fieldsync_gateway::install_crypto_provider();
    let http = reqwest::blocking::Client::new();
    let health = http
        .get(format!("{url}/healthz"))
        .send()
        .expect("GET /healthz");
    assert!(health.status().is_success());
    let token: serde_json::Value = http
        .post(format!("{url}/oauth/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("POST /oauth/token")
        .json()
        .expect("token JSON");
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let feed: serde_json::Value = http
        .get(format!("{url}/api/v1/changes?since=0&limit=50"))
        .bearer_auth(&token)
        .send()
        .expect("GET /api/v1/changes")
        .json()
        .expect("feed JSON");
    let entries = feed["entries"].as_array().expect("entries");
    assert!(
        entries.len() >= 6,
        "six work orders and their edits: {feed}"
    );
    assert!(
        entries.iter().any(|entry| entry["op"] == "update"),
        "the merged edit is in the feed: {feed}"
    );

    // Each laptop's own screen lists its technician's work orders only.
    for (user, theirs, others) in [("alice", "000001", "000002"), ("bob", "000002", "000001")] {
        let app = apps.get(user).expect("a field app URL was printed");
        let list = field_app_list(app);
        let year = &fieldsync_node::clock::now_rfc3339()[..4];
        assert!(
            list.contains(&format!("WO-{year}-{theirs}")),
            "{user}: {list}"
        );
        assert!(
            !list.contains(&format!("WO-{year}-{others}")),
            "{user}: {list}"
        );
    }

    // The newcomer takes alice offline by hand, and back: her field app
    // keeps serving and says so (one peer map across the driver restart).
    let alice_app = apps.get("alice").expect("alice's field app").clone();
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    for (typed, said, online) in [
        ("off", "[you] alice's laptop is offline", "no"),
        ("on", "[you] alice's laptop is back online", "yes"),
    ] {
        use std::io::Write as _;
        writeln!(stdin, "{typed}").expect("type on the demo's terminal");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(std::time::Instant::now() < deadline, "no `{said}`");
            if let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
                if line.starts_with(said) {
                    break;
                }
            }
        }
        let shown = format!("data-online=\"{online}\"");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !field_app_list(&alice_app).contains(&shown) {
            assert!(
                std::time::Instant::now() < deadline,
                "alice's field app never showed {shown} after `{typed}`"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    interrupt(child);
}

/// An operator token from a demo central's gateway.
fn operator_token(http: &reqwest::blocking::Client, url: &str, secret: &str) -> String {
    let token: serde_json::Value = http
        .post(format!("{url}/oauth/token"))
        .basic_auth("operator", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("POST /oauth/token")
        .json()
        .expect("token JSON");
    token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// Poll `check` every 100 ms for at most 30 s.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `demo --centrals 2`: the office pair. The scenario's note written at
/// central 2 reaches alice and central 1; then, over REST, a work order
/// created at either central shows up at the other, and one for alice
/// created at central 2 on her field app.
#[test]
fn demo_with_two_centrals_shows_the_office_pair() {
    // With `--log-format json` the log file holds one JSON object a line.
    let (child, lines) = start_demo(&["--centrals", "2", "--log-format", "json"]);
    let (mut urls, mut secret, mut apps) = (Vec::new(), None, Vec::new());
    let mut log_file = None;
    let mut printed = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(DEMO_TIMEOUT_S);
    let mut reached = false;
    while !reached && std::time::Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        for label in [
            "Office console (gateway and web UI):",
            "Office console, central 2:",
        ] {
            if let Some(value) = field(&line, label) {
                let url = value.split_whitespace().next().expect("a URL");
                urls.push(url.trim_end_matches('/').to_string());
            }
        }
        if let Some(value) = field(&line, "Operator sign-in:") {
            secret = value.split_whitespace().last().map(str::to_string);
        }
        if let Some(app) = field(&line, "alice's field app (on the laptop):") {
            apps.push(app.to_string());
        }
        if let Some(rest) = line.strip_prefix("The nodes' logs go to ") {
            log_file = rest.split(" (").next().map(std::path::PathBuf::from);
        }
        reached = line.starts_with("    It reached alice's laptop and central 1");
        printed.push(line);
    }
    assert!(reached, "the scenario's office-pair step: {printed:#?}");
    assert!(
        printed
            .iter()
            .any(|line| line.contains("two centrals (an office pair)")),
        "{printed:#?}"
    );
    let [c1, c2] = <[String; 2]>::try_from(urls).expect("two console URLs");
    assert_ne!(c1, c2);
    let secret = secret.expect("the operator's secret was printed");
    let alice_app = apps.pop().expect("alice's field app URL was printed");

    fieldsync_gateway::install_crypto_provider();
    let http = reqwest::blocking::Client::new();
    let tokens = [&c1, &c2].map(|url| operator_token(&http, url, &secret));
    let year = &fieldsync_node::clock::now_rfc3339()[..4];
    for (from, to, id, prefix) in [(0, 1, "pair-from-c1", "WO"), (1, 0, "pair-from-c2", "WO2")] {
        let urls = [&c1, &c2];
        let created = http
            .post(format!("{}/api/v1/work-orders", urls[from]))
            .bearer_auth(&tokens[from])
            .json(&serde_json::json!({
                "id": id,
                "title": format!("Written at central {}", from + 1),
                "customer": {"name": "Ana Souza", "address": "Rua Augusta, 1109"},
                "assignee": "alice",
            }))
            .send()
            .expect("POST a work order");
        assert_eq!(created.status(), 201, "{id}");
        let created: serde_json::Value = created.json().expect("the work order");
        let number = created["number"].as_str().expect("a number").to_string();
        assert!(number.starts_with(&format!("{prefix}-{year}-")), "{number}");
        wait_for(&format!("{id} at central {}", to + 1), || {
            let response = http
                .get(format!("{}/api/v1/work-orders/{id}", urls[to]))
                .bearer_auth(&tokens[to])
                .send()
                .expect("GET a work order");
            response.status() == 200
                && response.json::<serde_json::Value>().expect("JSON")["heads"] == created["heads"]
        });
        wait_for(&format!("{id} on alice's field app"), || {
            field_app_list(&alice_app).contains(&number)
        });
    }
    let log_file = log_file.expect("the log file was printed");
    let logs = std::fs::read_to_string(&log_file).expect("read the demo's log file");
    assert!(logs.lines().count() > 0, "{}", log_file.display());
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    interrupt(child);
}

/// The field app's work-order list, opened with the URL the demo printed
/// (its key becomes a session cookie).
fn field_app_list(open_url: &str) -> String {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let opened = client.get(open_url).send().expect("GET the open URL");
    assert_eq!(opened.status(), 303);
    let cookie = opened.headers()["set-cookie"]
        .to_str()
        .expect("ASCII cookie")
        .split(';')
        .next()
        .expect("a cookie")
        .to_string();
    let base = open_url.split("/open").next().expect("a base URL");
    let list = client
        .get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .expect("GET /");
    assert_eq!(list.status(), 200);
    list.text().expect("the list page")
}
