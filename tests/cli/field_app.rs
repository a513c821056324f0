//! `fieldsync run` on an enrolled field node serves the field app on
//! loopback, writes its open URL to `field-app.url`, and refuses an
//! address other machines could reach unless `allow_remote` says so (and
//! serves it there when it does).

use crate::support::{Running, TestNode};

/// A field node enrolled for `tech-1`, its field app on `field_app_listen`.
fn enrolled_field_node(field_app_listen: &str) -> TestNode {
    let node = TestNode::new("field");
    let config_path = node.dir.join("fieldsync.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let config = config
        .replace("\"0.0.0.0:7400\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:7480\"", &format!("\"{field_app_listen}\""));
    assert!(config.contains(field_app_listen), "{config}");
    std::fs::write(&config_path, config).unwrap();
    let enrollment = serde_json::json!({
        "user": "tech-1",
        "role": "technician",
        "central_node_id": "ab".repeat(32),
        "central_address": "127.0.0.1:9",
        "enrolled_at": "2026-01-01T00:00:00.000Z",
    });
    std::fs::write(node.dir.join("enrollment.json"), enrollment.to_string()).unwrap();
    node
}

#[test]
fn run_refuses_a_field_app_address_other_machines_reach_without_allow_remote() {
    let node = enrolled_field_node("0.0.0.0:0");
    let run = node.run(&["run"]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("allow_remote"), "{run:?}");
    assert!(run.stderr.contains("[field_app] listen"), "{run:?}");
    assert!(!node.dir.join("field-app.url").exists());
}

#[test]
fn run_serves_the_field_app_at_the_url_it_writes_and_only_with_its_key() {
    let node = enrolled_field_node("127.0.0.1:0");
    let running = Running::start(&node.dir);
    let url = std::fs::read_to_string(node.dir.join("field-app.url")).unwrap();
    let url = url.trim();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/open?key="),
        "{url}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for name in ["field-app.url", "field-app.key"] {
            let mode = std::fs::metadata(node.dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    fieldsync_gateway::install_crypto_provider();
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = url.split("/open").next().unwrap();
    assert_eq!(client.get(format!("{base}/")).send().unwrap().status(), 401);
    let opened = client.get(url).send().unwrap();
    assert_eq!(opened.status(), 303);
    let cookie = opened.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let list = client
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(list.status(), 200);
    assert!(list.text().unwrap().contains("id=\"sync-state\""));

    let (status, seen) = running.terminate();
    assert!(status.success(), "exit {status:?}: {seen:?}");
    assert!(
        !seen.join("\n").contains(url),
        "the key stays out of the logs"
    );
}

/// An IPv4 address of this machine other machines could reach: the source
/// address the kernel picks for a route out (a UDP `connect` sends
/// nothing); `None` when there is no such route.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // TEST-NET-2: never answered, only routed.
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn run_serves_the_field_app_on_another_interface_when_allow_remote_says_so() {
    let Some(ip) = non_loopback_address() else {
        println!("skipped: this machine has no non-loopback IPv4 address with a route");
        return;
    };
    let node = enrolled_field_node(&format!("{ip}:0"));
    let config_path = node.dir.join("fieldsync.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let config = config.replace("allow_remote = false", "allow_remote = true");
    assert!(config.contains("allow_remote = true"), "{config}");
    std::fs::write(&config_path, config).unwrap();

    let running = Running::start(&node.dir);
    let url = std::fs::read_to_string(node.dir.join("field-app.url")).unwrap();
    let url = url.trim().to_string();
    assert!(url.starts_with(&format!("http://{ip}:")), "{url}");
    fieldsync_gateway::install_crypto_provider();
    // Straight to the interface, never through a proxy from the environment.
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let base = url.split("/open").next().unwrap();
    assert_eq!(client.get(format!("{base}/")).send().unwrap().status(), 401);
    let opened = client.get(&url).send().unwrap();
    assert_eq!(opened.status(), 303);
    let cookie = opened.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let list = client
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(list.status(), 200);
    assert!(list.text().unwrap().contains("id=\"sync-state\""));

    let (status, seen) = running.terminate();
    assert!(status.success(), "exit {status:?}: {seen:?}");
}
