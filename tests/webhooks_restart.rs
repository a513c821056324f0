//! Webhook delivery across a crash: the central (`fieldsync run`, a real
//! process) is killed with SIGKILL while a receiver holds a notification
//! unanswered; after the restart the same notification (same id, same
//! body) is sent again, then everything after it, in order, nothing lost.

mod sync_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};
use sync_support::*;

/// Bytes of a request body the receiver reads, at most.
const BODY_BYTES_MAX: usize = 1 << 20;

/// One notification as received.
#[derive(Clone, Debug)]
struct Got {
    id: String,
    body: String,
}

impl Got {
    fn changes(&self) -> Vec<(u64, String)> {
        let body: Value = serde_json::from_str(&self.body).expect("json");
        body["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| {
                (
                    c["seq"].as_u64().unwrap(),
                    c["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// A plain HTTP/1.1 receiver on a thread: records every request; while
/// `stall` is set it keeps the connection open and never answers.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    stall: Arc<AtomicBool>,
}

fn read_request(stream: &TcpStream) -> Option<Got> {
    let mut reader = BufReader::new(stream);
    let mut id = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "webhook-id" => id = value.trim().to_string(),
                "content-length" => length = value.trim().parse().ok()?,
                _ => {}
            }
        }
    }
    let mut body = vec![0; length.min(BODY_BYTES_MAX)];
    reader.read_exact(&mut body).ok()?;
    Some(Got {
        id,
        body: String::from_utf8(body).ok()?,
    })
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stall = Arc::new(AtomicBool::new(false));
        let (got_in, stall_in) = (got.clone(), stall.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                got_in.lock().unwrap().push(request);
                if stall_in.load(Ordering::SeqCst) {
                    held.push(stream);
                    continue;
                }
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
            }
        });
        Receiver { port, got, stall }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

struct Api {
    http: Client,
    base: String,
    token: String,
}

impl Api {
    /// Wait for the gateway at `base`, and sign in as the operator.
    fn connect(base: String, secret: &str) -> Api {
        let token = gateway_token(&base, "op", secret);
        let http = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Api { http, base, token }
    }

    fn put(&self, key: &str) {
        let response = self
            .http
            .put(format!(
                "{}/api/v1/collections/parts/records/{key}",
                self.base
            ))
            .bearer_auth(&self.token)
            .json(&json!({ "name": key }))
            .send()
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().unwrap()
        );
    }
}

#[test]
fn a_central_killed_mid_delivery_resends_the_same_notification_and_loses_nothing() {
    let receiver = Receiver::start();
    let mut central = Node::init("central", "central");
    let gateway_port = free_tcp_port();
    central.enable_gateway(gateway_port);
    central.configure(&[("delivery", "allow_networks", "[\"127.0.0.0/8\"]".into())]);
    let added = central
        .run(&["user", "add", "op", "--role", "operator"])
        .success();
    let secret = printed(&added, "client secret:");
    central.start();
    let base = format!("http://127.0.0.1:{gateway_port}");
    let api = Api::connect(base.clone(), &secret);
    receiver.stall.store(true, Ordering::SeqCst);
    let url = format!("http://127.0.0.1:{}/hook", receiver.port);
    let response = api
        .http
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&api.token)
        .json(&json!({ "url": url, "skip_url_test": true }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());

    let keys: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    for key in &keys[..10] {
        api.put(key);
    }
    wait_until("the first notification to arrive", || {
        !receiver.got().is_empty()
    });
    // Acknowledged while the notification hangs: durable, not yet told.
    for key in &keys[10..15] {
        api.put(key);
    }
    let stalled = receiver.got()[0].clone();
    central.kill9();
    receiver.stall.store(false, Ordering::SeqCst);

    central.start();
    let api = Api::connect(base, &secret);
    for key in &keys[15..] {
        api.put(key);
    }
    wait_until("every change to be delivered", || {
        let seen: std::collections::HashSet<String> = receiver
            .got()
            .iter()
            .flat_map(|g| g.changes())
            .map(|(_, id)| id)
            .collect();
        keys.iter().all(|key| seen.contains(key))
    });
    let got = receiver.got();
    // The frozen notification again, byte for byte, first after the restart.
    let retried = got.get(1).expect("a second request");
    assert_eq!(retried.id, stalled.id);
    assert_eq!(retried.body, stalled.body);
    // Per notification id once, the changes are in seq order, each once.
    let mut seen_ids = std::collections::HashSet::new();
    let mut seqs = Vec::new();
    for g in &got {
        if seen_ids.insert(g.id.clone()) {
            seqs.extend(g.changes().into_iter().map(|(seq, _)| seq));
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ordered: {seqs:?}");
    assert_eq!(seqs.len(), keys.len(), "each change once: {seqs:?}");
    central.stop();
    central.verify_clean();
}
