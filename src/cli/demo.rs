//! `fieldsync demo`: a central office and two technicians' laptops in one
//! process, syncing over real QUIC on loopback, with the gateway and web UI
//! on the central. It prints how to look, then plays a short scenario on a
//! timer: a technician goes offline, the office and the technician edit the
//! same work order, the technician comes back, the edits merge, and the
//! changes feed shows it.
//!
//! Why in one process with real parts: a newcomer should see sync happen
//! with one command and nothing to install, yet what they watch must be the
//! real thing — three sled stores on disk, three QUIC endpoints with pinned
//! certificates, the same driver and gateway `fieldsync run` starts.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use fieldsync_node::clock::now_rfc3339;
use fieldsync_node::config::{NodeConfig, NodeRole, PeerConfig};
use fieldsync_node::doc::Operation;
use fieldsync_node::secret;
use fieldsync_node::store::{Store, User};
use fieldsync_schemas::{
    Actor, Customer, NewWorkOrder, OperatorPatch, Priority, Role, Scope, Status,
};
use tokio::net::TcpListener;

use crate::node::{start_node, Node, RunningNode, StartOptions};

/// How long the scenario waits for the replicas to converge, at most.
const CONVERGE_TIMEOUT_MS: u64 = 30_000;
/// How often convergence is checked while waiting.
const CONVERGE_POLL_MS: u64 = 100;

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Gateway port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub(crate) port: u16,
    /// Seconds between the scenario's steps.
    #[arg(long, default_value_t = 4)]
    pub(crate) step_s: u64,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub(crate) exit_after_s: Option<u64>,
}

/// Reassignment grace period of the demo's nodes: short, so a newcomer
/// who reassigns a work order sees it leave the laptop within a minute.
const DEMO_GRACE_MS: u64 = 60_000;

/// What `fieldsync enroll` would record on a demo laptop (the demo seeds
/// its users itself), so the laptop's field app acts for `user`.
fn enroll_demo_laptop(
    laptop: &Node,
    user: &str,
    central: &Node,
    central_address: SocketAddr,
) -> anyhow::Result<()> {
    super::enroll::write_enrollment(
        &laptop.dir,
        &super::enroll::Enrollment {
            user: user.into(),
            role: Role::Technician,
            central_node_id: central.identity.node_id().to_string(),
            central_address: central_address.to_string(),
            enrolled_at: now_rfc3339(),
        },
    )
}

/// Create one demo node in `base/name`, laid out as `fieldsync init` lays
/// out a node (so `fieldsync run --dir base/name` can open it later), with
/// sync on loopback. `configure` adds what differs per node.
fn create_node(
    base: &Path,
    name: &str,
    role: NodeRole,
    configure: impl FnOnce(&mut NodeConfig),
) -> anyhow::Result<Node> {
    let mut config = NodeConfig::new(role, name);
    config.sync.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Field links in the demo are loopback: redial fast so the scenario
    // does not sit in a backoff.
    config.sync.reconnect_delay_ms_min = 200;
    config.sync.reconnect_delay_ms_max = 2_000;
    config.sync.grace_ms = DEMO_GRACE_MS;
    // Three nodes on one machine: each laptop's field app on a free port.
    config.field_app.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    configure(&mut config);
    Node::create(&base.join(name), config)
}

/// The demo's log file, in its data directory.
const LOG_FILE: &str = "demo.log";

pub(crate) fn run(
    dir: Option<&Path>,
    args: &DemoArgs,
    log_format: Option<crate::logging::LogFormatArg>,
) -> anyhow::Result<()> {
    let temporary = match dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("fieldsync-demo-")
                .tempdir()
                .context("creating a temporary directory")?,
        ),
    };
    let base: PathBuf = match (dir, &temporary) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(temporary)) => temporary.path().to_path_buf(),
        (None, None) => unreachable!("one of the two is set"),
    };
    if base.join("central").exists() {
        anyhow::bail!(crate::error::CliError::usage(format!(
            "{} already holds a demo",
            base.display()
        ))
        .hint("point --dir at an empty directory, or leave it out to use a temporary one"));
    }
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let log_file = crate::logging::init_demo(&base, log_format, &base.join(LOG_FILE));
    if let Some(log_file) = &log_file {
        println!(
            "The nodes' logs go to {} (set RUST_LOG=info to see them here).",
            log_file.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fieldsync-demo")
        .build()
        .context("starting the async runtime")?;
    let stop_after = args.exit_after_s.map(Duration::from_secs);
    runtime.block_on(demo(&base, args, async move {
        let timer = async {
            match stop_after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = timer => {}
        }
    }))
}

async fn demo(
    base: &Path,
    args: &DemoArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Bind the gateway's port first: a busy port is reported before any
    // node is created.
    let listener = bind_gateway_port(args.port).await?;
    let gateway_listen = listener.local_addr()?;
    let central = create_node(base, "central", NodeRole::Central, |config| {
        config.gateway.listen = gateway_listen;
        // The demo's webhook receiver is on this machine.
        config.delivery.allow_networks = vec!["127.0.0.0/8".into()];
    })?;
    let options = StartOptions {
        gateway_listener: Some(listener),
        ..StartOptions::default()
    };
    let central_run = start_node(&central, options).await?;
    let url = central_run
        .gateway_url()
        .context("the central runs no gateway")?
        .to_string();
    let office = vec![PeerConfig {
        address: central_run.sync_address().to_string(),
        node_id: central.identity.node_id().to_string(),
        user: None,
    }];
    let with_office = |config: &mut NodeConfig| config.sync.peers = office.clone();
    let alice = create_node(base, "alice-laptop", NodeRole::Field, with_office)?;
    let bob = create_node(base, "bob-laptop", NodeRole::Field, with_office)?;
    for (laptop, user) in [(&alice, "alice"), (&bob, "bob")] {
        enroll_demo_laptop(laptop, user, &central, central_run.sync_address())?;
    }
    let laptops = [&alice, &bob].map(|node| node.identity.node_id().to_string());
    let store = central.store.clone();
    // Hashing secrets and waiting for flushes block: off the async threads.
    let (operator_secret, erp_secret) =
        tokio::task::spawn_blocking(move || seed_users(&store, laptops)).await??;
    let ids = load_samples(&central).await?;
    let mut alice_run = start_node(&alice, StartOptions::default()).await?;
    let bob_run = start_node(&bob, StartOptions::default()).await?;

    print_banner(base, &url, &operator_secret, &erp_secret, &ids[0]);
    for (run, user) in [(&alice_run, "alice"), (&bob_run, "bob")] {
        if let Some(app) = run.field_app_url() {
            println!("{user}'s field app (on the laptop): {app}");
        }
    }
    println!();
    let receiver = super::demo_receiver::start().await?;
    receiver.register(&url, &operator_secret).await?;
    println!(
        "A webhook receiver at {} is registered on the central (from now on);\n\
         each signed notification it gets is printed below as it arrives.\n",
        receiver.url
    );
    let nodes = Nodes {
        central: &central,
        alice: &alice,
        bob: &bob,
    };
    let step = Duration::from_secs(args.step_s);
    tokio::pin!(shutdown);
    let played = {
        let scenario = scenario(nodes, &mut alice_run, &ids[0], &url, step);
        tokio::pin!(scenario);
        tokio::select! {
            result = &mut scenario => Some(result),
            () = &mut shutdown => None,
        }
    };
    let played = match played {
        Some(Ok(())) => {
            println!(
                "\nThe scenario is over; everything keeps running. Ctrl-C stops it.\n\
                 Type `off` and Enter to take alice's laptop off the network, `on` to\n\
                 bring it back: work in her field app meanwhile, and watch the office\n\
                 console merge it when she is back."
            );
            take_alice_offline_on_request(&mut alice_run, &alice, shutdown).await
        }
        Some(Err(e)) => Err(e),
        None => Ok(()),
    };
    println!("\nStopping...");
    for running in [alice_run, bob_run, central_run] {
        running.stop().await?;
    }
    played?;
    println!("Stopped cleanly. Data was in {}.", base.display());
    Ok(())
}

/// Lines typed on the terminal, `off` and `on`, take alice's laptop off
/// the network and back (its sync driver stops and starts; its field app
/// keeps serving and says offline), until `shutdown`. Without a terminal
/// (stdin closed) it only waits for `shutdown`.
async fn take_alice_offline_on_request(
    alice_run: &mut RunningNode,
    alice: &Node,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(8);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    tokio::pin!(shutdown);
    loop {
        let line = tokio::select! {
            () = &mut shutdown => return Ok(()),
            line = lines.recv() => line,
        };
        match line.as_deref().map(str::trim) {
            None => {
                shutdown.await;
                return Ok(());
            }
            Some("off") => {
                alice_run.stop_sync().await;
                println!(
                    "[you] alice's laptop is offline: her field app says so, and keeps working."
                );
            }
            Some("on") => {
                alice_run.start_sync(alice)?;
                println!("[you] alice's laptop is back online: what she did merges now.");
            }
            Some("") => {}
            Some(other) => println!("[you] `{other}`? Type `off` or `on`."),
        }
    }
}

async fn bind_gateway_port(port: u16) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(address).await.map_err(|e| {
        crate::error::CliError::usage(format!("cannot listen on {address}: {e}"))
            .hint("another program uses the port: pass --port 0 to pick a free one")
            .into()
    })
}

/// The demo's three nodes.
#[derive(Clone, Copy)]
struct Nodes<'a> {
    central: &'a Node,
    alice: &'a Node,
    bob: &'a Node,
}

/// The operator, an integration client, and the two technicians, alice
/// and bob, each enrolled with their laptop's node id. Returns the
/// operator's and the client's secrets.
fn seed_users(store: &Store, laptops: [String; 2]) -> anyhow::Result<(String, String)> {
    let operator_secret = secret::generate_client_secret();
    let erp_secret = secret::generate_client_secret();
    let [alice, bob] = laptops.map(|node_id| vec![node_id]);
    let users = [
        (
            "operator",
            Role::Operator,
            vec![],
            Some(&operator_secret),
            vec![],
        ),
        (
            "erp-demo",
            Role::Integration,
            vec![Scope::ChangesRead, Scope::WorkOrdersRead],
            Some(&erp_secret),
            vec![],
        ),
        ("alice", Role::Technician, vec![], None, alice),
        ("bob", Role::Technician, vec![], None, bob),
    ];
    for (id, role, scopes, secret_text, node_ids) in users {
        let secret_hash = secret_text.map(|s| secret::hash(s)).transpose()?;
        store.put_user(&User {
            id: id.into(),
            role,
            scopes,
            secret_hash,
            enroll_code_hash: None,
            enroll_code_expires_at_ms: None,
            node_ids,
            revoked: false,
            created_at: now_rfc3339(),
        })?;
    }
    Ok((operator_secret, erp_secret))
}

fn sample(number: String, index: u32, title: &str, customer: &str, assignee: &str) -> NewWorkOrder {
    NewWorkOrder {
        id: None,
        number,
        title: title.into(),
        description: format!("{title}: reported by phone."),
        customer: Customer {
            name: customer.into(),
            address: "Rua Augusta 1109, Sao Paulo".into(),
            phone: "+55 11 95897-5662".into(),
            document: String::new(),
        },
        priority: if index.is_multiple_of(3) {
            Priority::High
        } else {
            Priority::Normal
        },
        assignee: Some(assignee.into()),
        scheduled_for: Some("2026-12-01T09:00:00Z".into()),
        created_at: now_rfc3339(),
        initial_status: Status::Assigned,
        notes: vec![],
        materials: vec![],
    }
}

/// Six work orders, three for each technician. Returns their ids.
async fn load_samples(central: &Node) -> anyhow::Result<Vec<String>> {
    let store = central.store.clone();
    let prefix = central.config.gateway.work_order_prefix.clone();
    tokio::task::spawn_blocking(move || {
        let operator = Actor::new("operator", Role::Operator);
        let orders = [
            (1, "Boiler makes no hot water", "Hugo Costa", "alice"),
            (2, "Air conditioning leaks", "Kira Ribeiro", "bob"),
            (3, "Replace thermostat", "Ana Souza", "alice"),
            (4, "Heat pump noise", "Rui Lima", "bob"),
            (5, "Annual boiler inspection", "Clara Dias", "alice"),
            (6, "Condensate pump blocked", "Joao Alves", "bob"),
        ];
        let mut ids = Vec::new();
        for (index, title, customer, assignee) in orders {
            // The central's own sequence, as the console and REST take it.
            let number = fieldsync_node::numbering::next_work_order_number(
                &store,
                &prefix,
                fieldsync_node::clock::now_ms(),
            )?;
            let committed = store.create_work_order(
                &operator,
                &sample(number, index, title, customer, assignee),
                now_s(),
            )?;
            ids.push(committed.id);
        }
        Ok::<_, anyhow::Error>(ids)
    })
    .await?
}

fn now_s() -> i64 {
    fieldsync_node::clock::now_s() as i64
}

fn print_banner(base: &Path, url: &str, operator_secret: &str, erp_secret: &str, first: &str) {
    println!(
        "\nfieldsync demo: a central office and two technicians (alice, bob) syncing over QUIC on loopback.\n\
         Data: {base}\n\n\
         Office console (gateway and web UI): {url}/\n\
         Operator sign-in:   operator / {operator_secret}\n\
         Integration client: erp-demo / {erp_secret}   (scopes changes:read work-orders:read)\n\n\
         The changes feed, from a shell:\n\
         TOKEN=$(curl -s -u 'erp-demo:{erp_secret}' -d grant_type=client_credentials {url}/oauth/token \
         | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/api/v1/changes?since=0&limit=20'\n\n\
         Watch work order {first} in the UI: {url}/ui/work-orders/{first}\n",
        base = base.display()
    );
}

fn note(id: &str, text: &str) -> Operation {
    Operation::AddNote {
        id: id.into(),
        at: now_rfc3339(),
        text: text.into(),
    }
}

/// Apply a typed operation on a node's store, off the async threads (it
/// waits for the flush).
async fn edit(store: &Store, id: &str, who: Actor, op: Operation) -> anyhow::Result<()> {
    let (store, id) = (store.clone(), id.to_string());
    tokio::task::spawn_blocking(move || store.update_work_order(&id, &who, &op, now_s())).await??;
    Ok(())
}

/// The heads of a work order on a node, if it holds it.
fn heads(node: &Node, id: &str) -> Option<Vec<[u8; 32]>> {
    node.store
        .doc_index(id)
        .ok()
        .flatten()
        .map(|index| index.heads)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..CONVERGE_TIMEOUT_MS / CONVERGE_POLL_MS {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(CONVERGE_POLL_MS)).await;
    }
    anyhow::bail!("timed out after {CONVERGE_TIMEOUT_MS} ms waiting until {what}")
}

async fn scenario(
    nodes: Nodes<'_>,
    alice_run: &mut RunningNode,
    id: &str,
    url: &str,
    step: Duration,
) -> anyhow::Result<()> {
    let Nodes {
        central,
        alice,
        bob,
    } = nodes;
    let count = |node: &Node| {
        node.store
            .doc_ids(None, 64)
            .map(|ids| ids.len())
            .unwrap_or(0)
    };
    wait_until("both laptops have their work orders", || {
        count(alice) == 3 && count(bob) == 3
    })
    .await?;
    println!(
        "[1] Primed: alice's laptop holds 3 work orders, bob's holds 3 (each only their own)."
    );
    tokio::time::sleep(step).await;

    alice_run.stop_sync().await;
    println!("[2] alice's laptop goes offline.");
    tokio::time::sleep(step).await;

    edit_both_sides(central, alice, id).await?;
    tokio::time::sleep(step).await;

    let last_seq_before = central.store.last_seq();
    alice_run.start_sync(alice)?;
    println!("[5] alice's laptop comes back online.");
    wait_until("the two replicas of the work order converge", || {
        heads(central, id).is_some() && heads(central, id) == heads(alice, id)
    })
    .await?;
    show_merge(central, id, url, last_seq_before)
}

/// Steps 3 and 4: the office and alice (offline) edit the same work order.
async fn edit_both_sides(central: &Node, alice: &Node, id: &str) -> anyhow::Result<()> {
    let operator = Actor::new("operator", Role::Operator);
    let retitle = Operation::EditOperatorFields(OperatorPatch {
        title: Some("Boiler makes no hot water (customer called twice)".into()),
        ..Default::default()
    });
    edit(&central.store, id, operator.clone(), retitle).await?;
    let office_note = note("office-note-1", "Customer called: the gate code is 4411.");
    edit(&central.store, id, operator, office_note).await?;
    println!("[3] The office retitles {id} and adds a note.");
    let tech = Actor::new("alice", Role::Technician);
    let on_site = Operation::AppendStatus {
        at: now_rfc3339(),
        to: Status::InProgress,
        note: "on site".into(),
    };
    edit(&alice.store, id, tech.clone(), on_site).await?;
    let alice_note = note("alice-note-1", "Pressure valve stuck; replaced it.");
    edit(&alice.store, id, tech.clone(), alice_note).await?;
    let report = Operation::EditReport {
        text: "Replaced the pressure relief valve. Boiler tested for 20 minutes.".into(),
    };
    edit(&alice.store, id, tech, report).await?;
    println!(
        "[4] Meanwhile, offline, alice moves it to in_progress, adds a note and writes the report."
    );
    Ok(())
}

/// Step 6: the merged work order and its entries in the changes feed.
fn show_merge(central: &Node, id: &str, url: &str, since: u64) -> anyhow::Result<()> {
    let merged = central
        .store
        .work_order(id)?
        .context("the work order vanished")?;
    println!(
        "[6] Merged on both sides: title \"{}\", status {}, {} notes, report \"{}\".",
        merged.title,
        merged.status,
        merged.notes.len(),
        merged.report
    );
    let feed = central.store.changes_since(since, 20)?;
    for entry in feed.iter().filter(|entry| entry.id == id) {
        println!(
            "    changes feed: seq {} {:?} {} ({})",
            entry.seq,
            entry.op,
            entry.id,
            entry.number.as_deref().unwrap_or("-")
        );
    }
    println!("    See it: {url}/ui/work-orders/{id} and {url}/ui/changes");
    Ok(())
}
