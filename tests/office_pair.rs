//! Issue 16 as black-box processes: an office pair (two centrals, each the
//! other's office peer) and three devices, every one a real `fieldsync run`
//! with its sled store on disk, syncing over QUIC on loopback. tech-1 has
//! a laptop (reaches both centrals) and a tablet (reaches only central 2);
//! tech-2 has a laptop (reaches both).
//!
//! The same story as `quic::tests::two_centrals_and_three_devices` in the
//! node crate, which runs the driver in one process; here it goes through
//! what an operator does: `user add` at one central (users and
//! enrollments replicate to the other), `user code` at the other for the
//! tablet, `enroll`, `[[sync.peers]]` in `fieldsync.toml`, REST at the
//! centrals, `fieldsync wo` on a laptop, `kill -9`, `fieldsync verify`.
//!
//! How it looks: the centrals over REST while they run; a running device
//! through its field app (what its technician sees); a device's store with
//! `fieldsync show` while it is stopped (a purge is a fact of the store:
//! the field app hides a reassigned work order before it is purged).

mod sync_support;

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};
use sync_support::*;

/// Where a central looks for the other when they are kept apart: nothing
/// listens there (the discard port), so every dial fails.
const UNREACHABLE: &str = "127.0.0.1:9";

/// A central with its gateway on loopback and an operator client.
struct Central {
    node: Node,
    url: String,
    secret: String,
    token: String,
    http: Client,
}

impl Central {
    /// `fieldsync init --role central`, the gateway on a free port, a
    /// grace period of 0 (a reassignment revokes at once), its own
    /// work-order prefix. With `users`, it adds `tech-1` and `tech-2`
    /// (technicians), then `op` (operator), and answers the technicians'
    /// enrollment codes; without, it has none and learns them from the
    /// other central (users replicate between offices), `op`'s secret
    /// included.
    fn init(name: &str, prefix: &str, users: bool) -> (Central, [String; 2]) {
        let node = Node::init("central", name);
        let port = free_tcp_port();
        node.enable_gateway(port);
        node.edit_config(|config| {
            config.sync.grace_ms = 0;
            config.gateway.work_order_prefix = prefix.into();
        });
        let mut codes = [String::new(), String::new()];
        let mut secret = String::new();
        if users {
            codes = ["tech-1", "tech-2"].map(|user| {
                let added = node
                    .run(&["user", "add", user, "--role", "technician"])
                    .success();
                printed(&added, "enrollment code:")
            });
            // Last: once the other central knows `op`, it knows the rest
            // (records arrive in changelog order).
            let added = node
                .run(&["user", "add", "op", "--role", "operator"])
                .success();
            secret = printed(&added, "client secret:");
        }
        fieldsync_gateway::install_crypto_provider();
        let http = Client::builder()
            .timeout(Duration::from_millis(WAIT_MS_MAX))
            .build()
            .expect("an HTTP client");
        let central = Central {
            node,
            url: format!("http://127.0.0.1:{port}"),
            secret,
            token: String::new(),
            http,
        };
        (central, codes)
    }

    /// `fieldsync run`; waits for the sync driver and the gateway, and
    /// signs the operator in.
    fn start(&mut self) {
        self.node.start();
        self.token = gateway_token(&self.url, "op", &self.secret);
    }

    /// As [`Self::start`], at a central that learns `op` from the other
    /// one: waits until `op`'s secret from there signs in here.
    fn start_learning_users(&mut self, secret: &str) {
        self.secret = secret.into();
        self.node.start();
        wait_until("op to reach this central from the other", || {
            self.http
                .post(format!("{}/oauth/token", self.url))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "op"),
                    ("client_secret", secret),
                ])
                .send()
                .is_ok_and(|response| response.status() == 200)
        });
        self.token = gateway_token(&self.url, "op", secret);
    }

    fn stop(&mut self) {
        self.node.stop();
    }

    /// List `other` as this (stopped) central's office peer, at `address`.
    fn office_peer(&self, other: &Central, address: &str) {
        let mut peer = other.node.as_office_peer();
        peer.address = address.into();
        self.node
            .edit_config(|config| config.sync.peers = vec![peer]);
    }

    /// A work order as the operator reads it over REST; `None` on 404.
    fn work_order(&self, id: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/api/v1/work-orders/{id}", self.url))
            .bearer_auth(&self.token)
            .send()
            .expect("the gateway answers");
        match response.status().as_u16() {
            200 => Some(response.json().expect("a work order")),
            404 => None,
            status => panic!("GET {id}: {status} {}", response.text().unwrap_or_default()),
        }
    }

    /// Send a write as the operator; answers its body once the gateway
    /// said `expected` (acknowledged: durable at this central).
    fn write(&self, request: reqwest::blocking::RequestBuilder, expected: u16) -> Value {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .expect("the gateway answers");
        let status = response.status().as_u16();
        let body: Value = response.json().expect("a JSON answer");
        assert_eq!(status, expected, "{body:#}");
        body
    }

    fn create(&self, id: &str, assignee: &str) -> Value {
        let body = json!({
            "id": id,
            "title": format!("Work order {id}"),
            "customer": {"name": "Ana Souza", "address": "Rua Augusta, 1109"},
            "assignee": assignee,
        });
        let request = self
            .http
            .post(format!("{}/api/v1/work-orders", self.url))
            .json(&body);
        self.write(request, 201)
    }

    fn patch(&self, id: &str, patch: Value) -> Value {
        let request = self
            .http
            .patch(format!("{}/api/v1/work-orders/{id}", self.url))
            .json(&patch);
        self.write(request, 200)
    }

    fn note(&self, id: &str, text: &str) -> Value {
        let request = self
            .http
            .post(format!("{}/api/v1/work-orders/{id}/notes", self.url))
            .json(&json!({ "text": text }));
        self.write(request, 200)
    }
}

fn has_note(order: &Value, text: &str) -> bool {
    order["notes"]
        .as_array()
        .is_some_and(|notes| notes.iter().any(|note| note["text"] == text))
}

#[test]
fn an_office_pair_and_three_devices_over_quic() {
    let started = Instant::now();
    // Users are added at central 1 only: they replicate to central 2
    // (issue 16, step 5), enrolled devices included.
    let (mut c1, [c1_tech_1, c1_tech_2]) = Central::init("central-1", "C1", true);
    let (mut c2, _) = Central::init("central-2", "C2", false);
    // The office pair: each lists the other without `user`.
    c1.office_peer(&c2, &c2.node.address());
    c2.office_peer(&c1, &c1.node.address());
    c1.start();
    let op_secret = c1.secret.clone();
    c2.start_learning_users(&op_secret);

    // Each laptop enrolls once, at central 1, and lists central 2 as well:
    // its enrollment reaches central 2 with the user.
    let laptop_1 = enrolled_laptop("laptop-1", &c1.node, &c1_tech_1);
    let laptop_2 = enrolled_laptop("laptop-2", &c1.node, &c1_tech_2);
    for laptop in [&laptop_1, &laptop_2] {
        laptop.edit_config(|config| config.sync.peers.push(c2.node.as_office_peer()));
    }
    // tech-1's tablet: a code from central 2 for the user central 2
    // learned from central 1 (`user code`, on the stopped central), and
    // central 2 only.
    c2.stop();
    let tablet_code = c2.node.new_code("tech-1");
    c2.start();
    let mut tablet = enrolled_laptop("tablet", &c2.node, &tablet_code);
    let tablet_status = tablet.run(&["status", "--json"]).success().json();
    let tablet_peers: Vec<&Value> = tablet_status["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .collect();
    assert_eq!(
        tablet_peers
            .iter()
            .map(|peer| &peer["node_id"])
            .collect::<Vec<_>>(),
        [&json!(c2.node.central_id())],
        "the tablet lists central 2 only: {tablet_status:#}"
    );
    let (mut laptop_1, mut laptop_2) = (laptop_1, laptop_2);
    for device in [&mut laptop_1, &mut laptop_2, &mut tablet] {
        device.start();
    }

    // 1. Created and assigned at central 1, it reaches the tablet through
    // central 2.
    c1.create("wo-1", "tech-1");
    c1.create("wo-2", "tech-1");
    wait_until("wo-1 and wo-2 on the tablet", || {
        tablet.field_app_lists("wo-1") == Some(true) && tablet.field_app_lists("wo-2") == Some(true)
    });
    assert!(c2.work_order("wo-1").is_some(), "central 2 relayed wo-1");

    // 2. Reassigned to tech-2 at central 1: central 2 purges it from the
    // tablet, which never reaches central 1.
    c1.patch("wo-1", json!({ "assignee": "tech-2" }));
    wait_until("wo-1 on tech-2's laptop", || {
        laptop_2.field_app_lists("wo-1") == Some(true)
    });
    // This step found a product bug (4 failures in ~45 runs): central 2
    // revoked wo-1 from laptop-1 first, whose `Revoked` cleared tech-1's
    // revocation record before central 2's session with the tablet read
    // the records on the same change, so the connected tablet kept wo-1
    // until it reconnected. Fixed: with other devices of the user, the
    // record outlives the grace period (`SessionConfig::revocation_keep_ms`;
    // engine test
    // `a_record_one_device_confirmed_still_revokes_the_other_connected_one`).
    // On a timeout the tablet reconnects once, so a failure says whether
    // a new session would still purge it.
    let purged = |tablet: &Node| tablet.log_text().contains("purged revoked documents");
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while !purged(&tablet) {
        if Instant::now() > deadline {
            tablet.stop();
            let held = tablet.show("wo-1").is_some();
            tablet.start();
            let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
            while !purged(&tablet) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!(
                "central 2 never revoked wo-1 from the connected tablet in {WAIT_MS_MAX} ms \
                 (the tablet held it: {held}); after a reconnect it purged it: {}.\n\
                 tablet log:\n{}\ncentral 2 log:\n{}\nlaptop-1 log:\n{}",
                purged(&tablet),
                tablet.log_text(),
                c2.node.log_text(),
                laptop_1.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tablet.stop();
    assert!(
        tablet.show("wo-1").is_none(),
        "wo-1 is gone from the tablet's store"
    );
    assert_eq!(
        tablet.show("wo-2").expect("wo-2 stays")["assignee"],
        "tech-1"
    );
    tablet.verify_clean();
    tablet.start();

    // 3. The centrals apart: each restarts looking for the other where it
    // is not (the node id stays: each still knows the other is an office,
    // and central 2 keeps central 1's key from their sessions).
    wait_converged(&c1.node, &c2.node);
    c1.stop();
    c2.stop();
    c1.office_peer(&c2, UNREACHABLE);
    c2.office_peer(&c1, UNREACHABLE);
    c1.start();
    c2.start();
    // An office edit at central 1 on tech-1's work order reaches central 2
    // only through tech-1's laptop...
    let c2_log_before = c2.node.log_text().len();
    let urgent = c1.patch("wo-2", json!({ "priority": "urgent" }));
    wait_until("central 1's edit at central 2, through laptop-1", || {
        c2.work_order("wo-2")
            .is_some_and(|order| order["priority"] == "urgent")
    });
    // ...and stands there: once the laptop has settled with both centrals,
    // central 2 holds exactly central 1's document (a compensation would
    // be a change of central 2's own, on top).
    wait_converged(&laptop_1, &c2.node);
    wait_converged(&laptop_1, &c1.node);
    let at_c2 = c2.work_order("wo-2").expect("wo-2 at central 2");
    let at_c1 = c1.work_order("wo-2").expect("wo-2 at central 1");
    assert_eq!(at_c2["priority"], "urgent", "not compensated: {at_c2:#}");
    assert_eq!(at_c1["priority"], "urgent", "{at_c1:#}");
    assert_eq!(at_c2["heads"], urgent["heads"], "{at_c2:#}");
    assert_eq!(at_c1["heads"], urgent["heads"], "{at_c1:#}");
    // (Before this step central 2 may refuse laptop-1's offer of a
    // document it lacked yet, "a technician may not create work orders",
    // or of wo-1 after the reassignment, "not visible to this peer": the
    // relay's own offers, judged as designed.)
    let judged: Vec<String> = c2.node.log_text()[c2_log_before..]
        .lines()
        .filter(|line| line.contains("refused or compensated") && line.contains("id=wo-2"))
        .map(str::to_string)
        .collect();
    assert!(
        judged.is_empty(),
        "central 2 judged a relayed change to wo-2 as the laptop's:\n{judged:#?}"
    );

    // 4. Writes central 1 acknowledged, then kill -9 at once.
    let mut acknowledged = Vec::new();
    for index in 0..5 {
        let id = format!("wo-acked-{index}");
        acknowledged.push(c1.create(&id, "tech-2"));
    }
    let noted = c1.note("wo-2", "acknowledged just before the crash");
    let reassigned = c1.patch("wo-acked-0", json!({ "assignee": "tech-1" }));
    c1.node.kill9();
    // Meanwhile tech-1 works on the laptop; it carries on with central 2.
    laptop_1.stop();
    laptop_1
        .run(&[
            "wo",
            "note",
            "wo-2",
            "--text",
            "written while central 1 is dead",
        ])
        .success();
    laptop_1.start();
    wait_until("the laptop's note at central 2", || {
        c2.work_order("wo-2")
            .is_some_and(|order| has_note(&order, "written while central 1 is dead"))
    });
    // Central 1's store, as the kill left it: clean, and every
    // acknowledged write in it.
    c1.node.verify_clean();
    for created in &acknowledged {
        let id = created["id"].as_str().expect("an id");
        let on_disk = c1.node.show(id).unwrap_or_else(|| panic!("{id} lost"));
        assert_eq!(on_disk["title"], created["title"], "{id}");
    }
    let wo_2 = c1.node.show("wo-2").expect("wo-2");
    assert!(
        has_note(&wo_2, "acknowledged just before the crash"),
        "{wo_2:#}"
    );
    assert_eq!(wo_2["heads"], noted["heads"]);
    let wo_acked_0 = c1.node.show("wo-acked-0").expect("wo-acked-0");
    assert_eq!(wo_acked_0["assignee"], "tech-1");
    assert_eq!(wo_acked_0["heads"], reassigned["heads"]);
    // Restarted, it serves them, and the laptop brings it what central 2
    // got meanwhile.
    c1.start();
    for created in &acknowledged {
        let id = created["id"].as_str().expect("an id");
        assert!(c1.work_order(id).is_some(), "{id} after the restart");
    }
    wait_until("the laptop's note at central 1 too", || {
        c1.work_order("wo-2")
            .is_some_and(|order| has_note(&order, "written while central 1 is dead"))
    });

    for device in [&mut laptop_1, &mut laptop_2, &mut tablet] {
        device.stop();
        device.verify_clean();
    }
    for central in [&mut c1, &mut c2] {
        central.stop();
        central.node.verify_clean();
    }
    eprintln!("office pair test: {:?}", started.elapsed());
}
