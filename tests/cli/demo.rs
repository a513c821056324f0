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

#[test]
fn demo_serves_the_printed_url_and_merges_the_offline_edit() {
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

    // Ctrl-C, as the newcomer would press it: a clean stop, exit 0.
    let interrupted = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    let status = child.0.wait().expect("demo exits on Ctrl-C");
    assert!(status.success(), "demo exit status {status}");
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
