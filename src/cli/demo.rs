//! `fieldsync demo`: a central office and two technicians' laptops in one
//! process, syncing over real QUIC on loopback, with the gateway and web UI
//! on the central. It prints how to look, then plays a short scenario on a
//! timer: a technician goes offline, the office and the technician edit the
//! same work order, the technician comes back, the edits merge, and the
//! changes feed shows it. With `--centrals 2` a second central runs as
//! the first's office peer (an office pair), alice's laptop reaches both,
//! and a note written at the second central reaches her.
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
    /// Centrals: 1, or 2 for an office pair (each central the other's
    /// office peer; alice's laptop reaches both, bob's the first).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub(crate) centrals: u8,
}

/// Reassignment grace period of the demo's nodes: short, so a newcomer
/// who reassigns a work order sees it leave the laptop within a minute.
const DEMO_GRACE_MS: u64 = 60_000;

/// The second central's work-order numbers: `WO2-2026-000001`, apart
/// from the first's (`[gateway] work_order_prefix`, one per central).
const SECOND_CENTRAL_PREFIX: &str = "WO2";

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
    let mut central = create_node(base, "central", NodeRole::Central, |config| {
        config.gateway.listen = gateway_listen;
        // The demo's webhook receiver is on this machine.
        config.delivery.allow_networks = vec!["127.0.0.0/8".into()];
    })?;
    let (second, central_socket) = match args.centrals {
        2 => {
            let (second, sockets) = create_office_pair(base, &mut central)?;
            (Some((second, sockets.second)), Some(sockets.first))
        }
        _ => (None, None),
    };
    let options = StartOptions {
        gateway_listener: Some(listener),
        sync_socket: central_socket,
        ..StartOptions::default()
    };
    let mut central_run = start_node(&central, options).await?;
    let url = central_run
        .gateway_url()
        .context("the central runs no gateway")?
        .to_string();
    let second = match second {
        Some((second, socket)) => {
            let options = StartOptions {
                sync_socket: Some(socket),
                ..StartOptions::default()
            };
            let second_run = start_node(&second, options).await?;
            Some((second, second_run))
        }
        None => None,
    };
    let office = vec![office_peer(&central, &central_run)];
    let with_office = |config: &mut NodeConfig| config.sync.peers = office.clone();
    let alice = create_node(base, "alice-laptop", NodeRole::Field, |config| {
        with_office(config);
        // In an office pair, alice's laptop reaches both centrals.
        if let Some((second, second_run)) = &second {
            config.sync.peers.push(office_peer(second, second_run));
        }
    })?;
    let bob = create_node(base, "bob-laptop", NodeRole::Field, with_office)?;
    for (laptop, user) in [(&alice, "alice"), (&bob, "bob")] {
        enroll_demo_laptop(laptop, user, &central, central_run.sync_address())?;
    }
    let laptops = [&alice, &bob].map(|node| node.identity.node_id().to_string());
    let (operator_secret, erp_secret) = (
        secret::generate_client_secret(),
        secret::generate_client_secret(),
    );
    // Each central is told the users directly, so both serve sign-ins at
    // once; the two copies then meet over sync and merge into one (the
    // secrets are the same, their hashes differ only in salt).
    let stores = std::iter::once(&central)
        .chain(second.as_ref().map(|(node, _)| node))
        .map(|node| node.store.clone());
    for store in stores {
        let (laptops, operator_secret, erp_secret) =
            (laptops.clone(), operator_secret.clone(), erp_secret.clone());
        // Hashing secrets and waiting for flushes block: off the async threads.
        tokio::task::spawn_blocking(move || {
            seed_users(&store, laptops, &operator_secret, &erp_secret)
        })
        .await??;
    }
    let ids = load_samples(&central).await?;
    let mut alice_run = start_node(&alice, StartOptions::default()).await?;
    let bob_run = start_node(&bob, StartOptions::default()).await?;

    print_banner(
        base,
        args.centrals,
        &url,
        &operator_secret,
        &erp_secret,
        &ids[0],
    );
    let second_url = match &second {
        Some((_, second_run)) => {
            let second_url = second_run
                .gateway_url()
                .context("the second central runs no gateway")?
                .to_string();
            println!(
                "Office console, central 2: {second_url}/   (the same sign-in; \
                 each central is the other's office peer)"
            );
            Some(second_url)
        }
        None => None,
    };
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
        second: second.as_ref().map(|(node, _)| node),
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
            if let Some(second_url) = &second_url {
                println!(
                    "\nThe office pair: edit one of alice's work orders in central 2's console\n\
                     ({second_url}/) and watch it reach her field app and central 1's console.\n\
                     Type `c1 off` to take central 1 off the network: alice carries on with\n\
                     central 2, and what central 2's console writes still reaches her;\n\
                     `c1 on` brings central 1 back, and the two centrals catch up."
                );
            }
            let mut switches = Switches {
                alice: (&mut alice_run, &alice),
                central: second.is_some().then_some((&mut central_run, &central)),
            };
            switch_on_request(&mut switches, shutdown).await
        }
        Some(Err(e)) => Err(e),
        None => Ok(()),
    };
    println!("\nStopping...");
    let second_run = second.map(|(_, second_run)| second_run);
    for running in [alice_run, bob_run, central_run]
        .into_iter()
        .chain(second_run)
    {
        running.stop().await?;
    }
    played?;
    println!("Stopped cleanly. Data was in {}.", base.display());
    Ok(())
}

/// What the newcomer may take off the network and back by typing.
struct Switches<'a> {
    alice: (&'a mut RunningNode, &'a Node),
    /// The first central, in an office pair.
    central: Option<(&'a mut RunningNode, &'a Node)>,
}

/// Lines typed on the terminal, `off` and `on`, take alice's laptop off
/// the network and back (its sync driver stops and starts; its field app
/// keeps serving and says offline); in an office pair `c1 off` and `c1 on`
/// do the same to the first central, until `shutdown`. Without a terminal
/// (stdin closed) it only waits for `shutdown`.
async fn switch_on_request(
    switches: &mut Switches<'_>,
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
                switches.alice.0.stop_sync().await;
                println!(
                    "[you] alice's laptop is offline: her field app says so, and keeps working."
                );
            }
            Some("on") => {
                let (alice_run, alice) = &mut switches.alice;
                alice_run.start_sync(alice)?;
                println!("[you] alice's laptop is back online: what she did merges now.");
            }
            Some("c1 off") if switches.central.is_some() => {
                if let Some((central_run, _)) = &mut switches.central {
                    central_run.stop_sync().await;
                }
                println!(
                    "[you] central 1 is off the network: alice carries on with central 2; \
                     central 1's console still works, and keeps what it writes."
                );
            }
            Some("c1 on") if switches.central.is_some() => {
                let Some((central_run, central)) = &mut switches.central else {
                    continue;
                };
                // Its port (which the others dial) may still be held for a
                // moment by the connections it just closed.
                match central_run.start_sync(central) {
                    Ok(()) => println!(
                        "[you] central 1 is back on the network: the two centrals catch up."
                    ),
                    Err(e) => println!(
                        "[you] central 1 cannot listen again yet ({e:#}); type `c1 on` again in a moment."
                    ),
                }
            }
            Some("") => {}
            Some(other) if switches.central.is_some() => {
                println!("[you] `{other}`? Type `off`, `on`, `c1 off` or `c1 on`.")
            }
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

/// A central as an office peer: `[sync] peers` without `user`.
fn office_peer(central: &Node, running: &RunningNode) -> PeerConfig {
    PeerConfig {
        address: running.sync_address().to_string(),
        node_id: central.identity.node_id().to_string(),
        user: None,
    }
}

/// The office pair's sync sockets, bound before either central starts.
struct PairSockets {
    first: std::net::UdpSocket,
    second: std::net::UdpSocket,
}

/// `--centrals 2`: create a second central beside `central` (created,
/// not started), each listing the other in `[sync] peers` without `user`
/// as README's "office pair" says, at the address of a socket bound here
/// for it (so each knows the other's address before either runs; the
/// sockets are the ones they then run on). Written to both
/// `fieldsync.toml`s, so `fieldsync run` on kept data does the same. Only
/// the first dispatches webhooks (one central of a cluster may).
fn create_office_pair(base: &Path, central: &mut Node) -> anyhow::Result<(Node, PairSockets)> {
    let bind = || {
        let socket = std::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("binding a sync socket on 127.0.0.1")?;
        let address = socket.local_addr()?;
        Ok::<_, anyhow::Error>((socket, address))
    };
    let ((first, first_address), (second_socket, second_address)) = (bind()?, bind()?);
    let first_peer = PeerConfig {
        address: first_address.to_string(),
        node_id: central.identity.node_id().to_string(),
        user: None,
    };
    let second = create_node(base, "central-2", NodeRole::Central, |config| {
        config.sync.listen = second_address;
        config.gateway.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.gateway.work_order_prefix = SECOND_CENTRAL_PREFIX.into();
        config.delivery.enabled = Some(false);
        config.sync.peers = vec![first_peer];
    })?;
    central.config.sync.listen = first_address;
    central.config.sync.peers = vec![PeerConfig {
        address: second_address.to_string(),
        node_id: second.identity.node_id().to_string(),
        user: None,
    }];
    super::enroll::replace_file(
        &NodeConfig::path_in(&central.dir),
        central.config.to_commented_toml().as_bytes(),
    )?;
    let sockets = PairSockets {
        first,
        second: second_socket,
    };
    Ok((second, sockets))
}

/// The demo's nodes.
#[derive(Clone, Copy)]
struct Nodes<'a> {
    central: &'a Node,
    /// The second central, in an office pair.
    second: Option<&'a Node>,
    alice: &'a Node,
    bob: &'a Node,
}

/// The operator and an integration client with the given secrets, and the
/// two technicians, alice and bob, each enrolled with their laptop's node
/// id.
fn seed_users(
    store: &Store,
    laptops: [String; 2],
    operator_secret: &str,
    erp_secret: &str,
) -> anyhow::Result<()> {
    let [alice, bob] = laptops.map(|node_id| vec![node_id]);
    let users = [
        (
            "operator",
            Role::Operator,
            vec![],
            Some(operator_secret),
            vec![],
        ),
        (
            "erp-demo",
            Role::Integration,
            vec![Scope::ChangesRead, Scope::WorkOrdersRead],
            Some(erp_secret),
            vec![],
        ),
        ("alice", Role::Technician, vec![], None, alice),
        ("bob", Role::Technician, vec![], None, bob),
    ];
    for (id, role, scopes, secret_text, node_ids) in users {
        let secret_hash = secret_text.map(secret::hash).transpose()?;
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
    Ok(())
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

fn print_banner(
    base: &Path,
    centrals: u8,
    url: &str,
    operator_secret: &str,
    erp_secret: &str,
    first: &str,
) {
    let offices = match centrals {
        1 => "a central office",
        _ => "two centrals (an office pair)",
    };
    println!(
        "\nfieldsync demo: {offices} and two technicians (alice, bob) syncing over QUIC on loopback.\n\
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
        second,
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
    show_merge(central, id, url, last_seq_before)?;
    match second {
        Some(second) => {
            tokio::time::sleep(step).await;
            office_pair_step(central, second, alice, id).await
        }
        None => Ok(()),
    }
}

/// Step 7 of an office pair: a note written at the second central reaches
/// alice's laptop and the first central.
async fn office_pair_step(
    central: &Node,
    second: &Node,
    alice: &Node,
    id: &str,
) -> anyhow::Result<()> {
    wait_until("the second central holds the merged work order", || {
        heads(second, id).is_some() && heads(second, id) == heads(central, id)
    })
    .await?;
    let operator = Actor::new("operator", Role::Operator);
    let office_note = note(
        "office-note-2",
        "Central 2: the customer asks for a call first.",
    );
    edit(&second.store, id, operator, office_note).await?;
    println!("[7] The office pair: an operator at central 2 adds a note to {id}.");
    wait_until("the note reaches alice's laptop and central 1", || {
        let at_second = heads(second, id);
        at_second == heads(alice, id) && at_second == heads(central, id)
    })
    .await?;
    println!("    It reached alice's laptop and central 1: both centrals take writes.");
    Ok(())
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
