//! The gateway workloads: `feed` (one reader paging through the changes
//! feed of a store holding 100,000 changes) and `rest` (64 concurrent
//! clients creating, then reading, work orders over REST).
//!
//! Why in-process, over real HTTP: what is measured is the gateway's path
//! (axum, auth, the feed's scan, the typed operations, the durable group
//! commit) as a client sees it, so requests go through reqwest over a
//! loopback TCP socket to `fieldsync_gateway::run`, the same entry point
//! `fieldsync run` uses. The server and the clients run on separate tokio
//! runtimes in one process; on a 2-core machine they compete for the same
//! cores, as they would on a small central that also runs its integrations.
//!
//! Why the fill is not timed: the feed's store is filled through the node's
//! own write paths (bulk import for the creates, `update_work_order` from
//! many threads for the typed edits, sharing flushes), which `w3` already
//! measures; the figure here is the read side. Edits go round-robin over
//! the documents, so a page of the feed holds distinct documents and every
//! change is an entry (the feed shows each document once per page).
//!
//! The rate limiter is raised for these runs: a single operator token would
//! otherwise be held to `requests_per_s` (200/s), which is a policy, not
//! the gateway's capacity.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use fieldsync_gateway::{AppState, GatewayConfig, TokenKey};
use fieldsync_node::doc::Operation;
use fieldsync_node::import::{import_jsonl, open_jsonl, ImportOptions};
use fieldsync_node::secret;
use fieldsync_node::store::{Store, StoreConfig, User};
use fieldsync_schemas::{Actor, OperatorPatch, Role};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;

/// The operator the benchmark signs in as.
const OPERATOR: &str = "bench-op";
/// Technicians the REST creates are assigned to, round-robin.
const TECHNICIANS: usize = 8;
/// Requests per second (and burst) allowed per client during the runs.
const RATE_LIMIT_PER_S: u32 = 1_000_000;
/// Server worker threads (the machine has 2 cores).
const SERVER_THREADS: usize = 2;
/// Client worker threads for the REST clients.
const CLIENT_THREADS: usize = 2;
/// Longest any one request may take before the run fails.
const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Largest feed page the server may be asked for.
const FEED_PAGE_SIZE_MAX: usize = 10_000;

#[derive(Args, Clone)]
pub(crate) struct FeedArgs {
    /// Work orders imported from the fixture (at most its 10,000 lines).
    #[arg(long, default_value_t = 10_000)]
    docs: u64,
    /// Typed edits per work order after its create: changes = docs × (1 + edits).
    #[arg(long, default_value_t = 9)]
    edits: u64,
    /// Entries per feed page (`limit`); the gateway's default maximum is 1000.
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    /// Passes over the whole feed; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Threads applying the edits (their flushes are shared).
    #[arg(long, default_value_t = 32)]
    edit_threads: usize,
    /// The fixture (JSONL, gzip or plain).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Where the store is made (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub(crate) struct RestArgs {
    /// Requests per phase (creates, then as many reads), split over the clients.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Runs, each on a fresh store; the median is reported.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Accepted for `all`; REST creates need no fixture.
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Where the stores are made (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn temp_dir(dir: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    match dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temporary store directory")
}

/// Add the benchmark's operator and the technicians work orders are
/// assigned to; returns the operator's client secret.
fn add_users(store: &Store) -> anyhow::Result<String> {
    let client_secret = secret::generate_client_secret();
    let user = |id: String, role: Role, secret_hash: Option<String>| User {
        id,
        role,
        scopes: Vec::new(),
        secret_hash,
        enroll_code_hash: None,
        enroll_code_expires_at_ms: None,
        node_ids: Vec::new(),
        revoked: false,
        created_at: "2026-01-01T00:00:00Z".into(),
    };
    store.put_user(&user(
        OPERATOR.into(),
        Role::Operator,
        Some(secret::hash(&client_secret)?),
    ))?;
    for n in 0..TECHNICIANS {
        store.put_user(&user(technician(n), Role::Technician, None))?;
    }
    Ok(client_secret)
}

fn technician(n: usize) -> String {
    format!("tech-{}", n % TECHNICIANS)
}

/// A gateway serving `store` on a loopback port, on its own runtime.
struct Server {
    runtime: tokio::runtime::Runtime,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    store: Store,
}

impl Server {
    fn start(store: &Store, page_size_max: usize) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SERVER_THREADS)
            .thread_name("bench-gateway")
            .enable_all()
            .build()
            .context("starting the server runtime")?;
        let config = GatewayConfig {
            requests_per_s: RATE_LIMIT_PER_S,
            request_burst: RATE_LIMIT_PER_S,
            page_size_max: page_size_max.max(GatewayConfig::default().page_size_max),
            scan_entries_max: page_size_max.max(GatewayConfig::default().scan_entries_max),
            ..GatewayConfig::default()
        };
        let state = AppState::new(store.clone(), TokenKey::generate(), config)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding a loopback port")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(fieldsync_gateway::run(listener, state, async move {
            let _ = stopped.await;
        }));
        Ok(Server {
            runtime,
            url,
            stop: Some(stop),
            task: Some(task),
            store: store.clone(),
        })
    }

    /// Stop serving and close the store.
    fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            self.runtime
                .block_on(task)
                .context("the gateway task")?
                .context("the gateway")?;
        }
        self.store.close();
        Ok(())
    }
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    fieldsync_gateway::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .build()
        .context("building an HTTP client")
}

async fn token(http: &reqwest::Client, url: &str, client_secret: &str) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Token {
        access_token: String,
    }
    let response = http
        .post(format!("{url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", OPERATOR),
            ("client_secret", client_secret),
        ])
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "token request answered {}",
        response.status()
    );
    Ok(response.json::<Token>().await?.access_token)
}

/// The value at percentile `p` (nearest rank) of sorted samples, in ms.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn write_results(name: &str, report: &serde_json::Value) -> anyhow::Result<()> {
    let dir = crate::results_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------- feed --

/// The typed edit number `round` of a work order.
fn bench_edit(round: u64, at: &str) -> Operation {
    match round % 3 {
        1 => Operation::AddNote {
            id: format!("bench-note-{round}"),
            at: at.to_string(),
            text: format!("Bench note {round}: checked the compressor relay"),
        },
        2 => Operation::EditReport {
            text: format!("Bench report, revision {round}: relay replaced, tested."),
        },
        _ => Operation::EditOperatorFields(OperatorPatch {
            title: Some(format!("Compressor relay trips (revision {round})")),
            ..OperatorPatch::default()
        }),
    }
}

/// Import `docs` work orders, then apply `edits` typed edits to each,
/// round-robin, from `threads` threads. Returns the changes written.
fn fill(store: &Store, args: &FeedArgs, fixture: &Path) -> anyhow::Result<u64> {
    let seq_before = store.last_seq();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.docs as usize);
    let reader =
        open_jsonl(fixture).with_context(|| format!("cannot open {}", fixture.display()))?;
    let options = ImportOptions {
        lines_max: Some(args.docs),
        ..ImportOptions::default()
    };
    let report = import_jsonl(store, reader, options, |_, id| ids.push(id.to_string()))?;
    if report.created != args.docs {
        bail!(
            "imported {} work orders, wanted {} (the fixture holds fewer lines?)",
            report.created,
            args.docs
        );
    }
    eprintln!(
        "feed: imported {} work orders in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let edits_started = Instant::now();
    let who = Actor::new(OPERATOR, Role::Operator);
    let threads = args.edit_threads.clamp(1, ids.len().max(1));
    let at = "2026-01-02T08:00:00Z";
    let time_s = 1_767_340_800;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (ids, who) = (&ids, &who);
                scope.spawn(move || -> anyhow::Result<()> {
                    for round in 1..=args.edits {
                        let op = bench_edit(round, at);
                        for id in ids.iter().skip(thread).step_by(threads) {
                            store
                                .update_work_order(id, who, &op, time_s)
                                .with_context(|| format!("edit {round} of {id}"))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("an edit thread panicked"))?
        })
    })?;
    let changes = store.last_seq() - seq_before;
    ensure!(
        changes == args.docs * (1 + args.edits),
        "expected {} changes, the store holds {changes}",
        args.docs * (1 + args.edits)
    );
    eprintln!(
        "feed: applied {} typed edits in {:.1} s ({:.0} edits/s, {} flushes in all)",
        args.docs * args.edits,
        edits_started.elapsed().as_secs_f64(),
        (args.docs * args.edits) as f64 / edits_started.elapsed().as_secs_f64(),
        store.flush_count()
    );
    Ok(changes)
}

#[derive(Deserialize)]
struct FeedPage {
    entries: Vec<FeedEntry>,
    last_seq: u64,
    next: Option<u64>,
}

#[derive(Deserialize)]
struct FeedEntry {
    seq: u64,
}

struct FeedPass {
    wall_s: f64,
    entries: u64,
    pages: u64,
    body_bytes: u64,
    /// Each page's request time, sorted.
    page_times: Vec<Duration>,
}

/// Read the whole feed from `since=0`, checking order and the cursor.
async fn read_feed(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    page_size: usize,
    last_seq: u64,
) -> anyhow::Result<FeedPass> {
    let started = Instant::now();
    let (mut since, mut entries, mut pages, mut body_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut page_times = Vec::new();
    loop {
        let sent = Instant::now();
        let response = http
            .get(format!("{url}/api/v1/changes"))
            .query(&[("since", since), ("limit", page_size as u64)])
            .bearer_auth(token)
            .send()
            .await?;
        ensure!(
            response.status() == 200,
            "feed page after {since} answered {}",
            response.status()
        );
        let body = response.bytes().await?;
        page_times.push(sent.elapsed());
        body_bytes += body.len() as u64;
        let page: FeedPage = serde_json::from_slice(&body).context("a feed page")?;
        let mut previous = since;
        for entry in &page.entries {
            ensure!(
                entry.seq > previous && entry.seq <= page.last_seq,
                "feed entries out of order"
            );
            previous = entry.seq;
        }
        ensure!(page.last_seq > since || page.next.is_none(), "stuck cursor");
        entries += page.entries.len() as u64;
        pages += 1;
        since = page.last_seq;
        if page.next.is_none() {
            break;
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    page_times.sort();
    ensure!(
        since == last_seq,
        "the feed ended at seq {since}, the store at {last_seq}"
    );
    Ok(FeedPass {
        wall_s,
        entries,
        pages,
        body_bytes,
        page_times,
    })
}

pub(crate) fn feed(args: &FeedArgs) -> anyhow::Result<()> {
    ensure!(args.docs > 0, "--docs must be at least 1");
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        (1..=FEED_PAGE_SIZE_MAX).contains(&args.page_size),
        "--page-size must be 1 to {FEED_PAGE_SIZE_MAX}"
    );
    let fixture = args
        .fixture
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(crate::FIXTURE_DEFAULT));
    ensure!(
        fixture.exists(),
        "no fixture at {} (pass --fixture PATH)",
        fixture.display()
    );
    let temp = temp_dir(args.dir.as_deref())?;
    // Every document stays loaded while the edits go round-robin over them.
    let store_config = StoreConfig {
        cache_docs_max: (args.docs as usize).max(StoreConfig::default().cache_docs_max),
        ..StoreConfig::default()
    };
    let store = Store::init(&temp.path().join("store"), store_config)?;
    let client_secret = add_users(&store)?;
    let fill_started = Instant::now();
    let changes = fill(&store, args, &fixture)?;
    let fill_s = fill_started.elapsed().as_secs_f64();
    let last_seq = store.last_seq();
    let server = Server::start(&store, args.page_size)?;
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    let passes = client.block_on(async {
        let http = http_client()?;
        let token = token(&http, &server.url, &client_secret).await?;
        let mut passes = Vec::new();
        for run in 1..=args.runs {
            let pass = read_feed(&http, &server.url, &token, args.page_size, last_seq).await?;
            println!(
                "workload=feed n={changes} run={run} page_size={} wall_s={:.3} entries={} \
                 pages={} entries_per_s={:.0} changes_per_s={:.0} body_mb={:.1} \
                 page_p50_ms={:.2} page_p99_ms={:.2} page_max_ms={:.2}",
                args.page_size,
                pass.wall_s,
                pass.entries,
                pass.pages,
                pass.entries as f64 / pass.wall_s,
                changes as f64 / pass.wall_s,
                pass.body_bytes as f64 / 1e6,
                percentile_ms(&pass.page_times, 50.0),
                percentile_ms(&pass.page_times, 99.0),
                percentile_ms(&pass.page_times, 100.0),
            );
            passes.push(pass);
        }
        anyhow::Ok(passes)
    })?;
    server.stop()?;
    let rss_mb = crate::peak_rss_mb()?;
    let wall_s = median(&mut passes.iter().map(|p| p.wall_s).collect::<Vec<_>>());
    let entries = median(&mut passes.iter().map(|p| p.entries as f64).collect::<Vec<_>>());
    println!(
        "workload=feed n={changes} stat=median runs={} page_size={} wall_s={wall_s:.3} \
         entries={entries:.0} entries_per_s={:.0} changes_per_s={:.0} fill_s={fill_s:.1} \
         rss_mb={rss_mb:.1}",
        args.runs,
        args.page_size,
        entries / wall_s,
        changes as f64 / wall_s,
    );
    write_results(
        "feed",
        &json!({
            "workload": "feed",
            "changes": changes,
            "docs": args.docs,
            "edits_per_doc": args.edits,
            "page_size": args.page_size,
            "fill_s": fill_s,
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "passes": passes.iter().map(|p| json!({
                "wall_s": p.wall_s,
                "entries": p.entries,
                "pages": p.pages,
                "body_bytes": p.body_bytes,
                "entries_per_s": p.entries as f64 / p.wall_s,
            })).collect::<Vec<_>>(),
            "median": { "wall_s": wall_s, "entries_per_s": entries / wall_s },
            "rss_mb": rss_mb,
        }),
    )
}

// ---------------------------------------------------------------- rest --

/// Latencies of one phase, sorted, and its wall time.
struct Phase {
    sorted: Vec<Duration>,
    wall_s: f64,
}

impl Phase {
    fn figures(&self) -> serde_json::Value {
        json!({
            "requests": self.sorted.len(),
            "wall_s": self.wall_s,
            "per_s": self.sorted.len() as f64 / self.wall_s,
            "p50_ms": percentile_ms(&self.sorted, 50.0),
            "p90_ms": percentile_ms(&self.sorted, 90.0),
            "p99_ms": percentile_ms(&self.sorted, 99.0),
            "max_ms": percentile_ms(&self.sorted, 100.0),
        })
    }

    fn line(&self, op: &str, clients: usize, run: u32) -> String {
        format!(
            "workload=rest op={op} clients={clients} requests={} run={run} wall_s={:.3} \
             per_s={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            self.sorted.len(),
            self.wall_s,
            self.sorted.len() as f64 / self.wall_s,
            percentile_ms(&self.sorted, 50.0),
            percentile_ms(&self.sorted, 90.0),
            percentile_ms(&self.sorted, 99.0),
            percentile_ms(&self.sorted, 100.0),
        )
    }
}

/// Builds request number `i` of client `client` on that client's
/// connection: `request(http, client, i)`.
type MakeRequest = dyn Fn(&reqwest::Client, usize, usize) -> reqwest::RequestBuilder + Send + Sync;

/// Run `clients` concurrent clients, each with its own connection, that
/// start together after one warm-up request each.
async fn phase(
    url: &str,
    clients: usize,
    requests: usize,
    expect: u16,
    request: Arc<MakeRequest>,
) -> anyhow::Result<Phase> {
    let start = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let count = requests / clients + usize::from(client < requests % clients);
        let (start, request, health) = (start.clone(), request.clone(), format!("{url}/healthz"));
        tasks.spawn(async move {
            let http = http_client()?;
            // Open the connection before the clock starts.
            let warm = http.get(&health).send().await?;
            ensure!(warm.status() == 200, "healthz answered {}", warm.status());
            start.wait().await;
            let mut latencies = Vec::with_capacity(count);
            for i in 0..count {
                let sent = Instant::now();
                let response = request(&http, client, i).send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                latencies.push(sent.elapsed());
                ensure!(
                    status == expect,
                    "client {client} request {i}: {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            anyhow::Ok(latencies)
        });
    }
    start.wait().await;
    let started = Instant::now();
    let mut sorted = Vec::with_capacity(requests);
    while let Some(done) = tasks.join_next().await {
        sorted.extend(done.context("a client task")??);
    }
    let wall_s = started.elapsed().as_secs_f64();
    sorted.sort();
    Ok(Phase { sorted, wall_s })
}

fn rest_once(args: &RestArgs, run: u32) -> anyhow::Result<(Phase, Phase)> {
    let temp = temp_dir(args.dir.as_deref())?;
    let store = Store::init(&temp.path().join("store"), StoreConfig::default())?;
    let client_secret = add_users(&store)?;
    let server = Server::start(&store, 0)?;
    let url = server.url.clone();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLIENT_THREADS)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    let clients = args.clients;
    let phases = client.block_on(async {
        let token = token(&http_client()?, &url, &client_secret).await?;
        let id = move |client: usize, i: usize| format!("rest-{run}-{client}-{i}");
        let create: Arc<MakeRequest> = {
            let (url, token) = (url.clone(), token.clone());
            Arc::new(move |http: &reqwest::Client, client: usize, i: usize| {
                http.post(format!("{url}/api/v1/work-orders"))
                    .bearer_auth(&token)
                    .json(&json!({
                        "id": id(client, i),
                        "number": format!("WO-B{run}-{client:03}-{i:06}"),
                        "title": "Compressor relay trips",
                        "description": "The outdoor unit stops after a few minutes.",
                        "customer": {
                            "name": format!("Customer {client}"),
                            "address": "Rua Augusta, 1109",
                            "phone": "+55 11 5555-0100",
                        },
                        "priority": "normal",
                        "assignee": technician(client),
                    }))
            })
        };
        let creates = phase(&url, clients, args.requests, 201, create).await?;
        // Reads pick created work orders at random (a fixed seed per client).
        let per_client: Vec<usize> = (0..clients)
            .map(|c| args.requests / clients + usize::from(c < args.requests % clients))
            .collect();
        let read: Arc<MakeRequest> = {
            let (url, token) = (url.clone(), token.clone());
            Arc::new(move |http: &reqwest::Client, client: usize, i: usize| {
                let mut rng = rand::rngs::StdRng::seed_from_u64((client * 1_000_003 + i) as u64);
                let owner = rng.random_range(0..clients);
                let n = rng.random_range(0..per_client[owner]);
                http.get(format!("{url}/api/v1/work-orders/{}", id(owner, n)))
                    .bearer_auth(&token)
            })
        };
        let reads = phase(&url, clients, args.requests, 200, read).await?;
        anyhow::Ok((creates, reads))
    })?;
    ensure!(
        store.last_seq() == args.requests as u64,
        "{} creates acknowledged, the store holds {} changes",
        args.requests,
        store.last_seq()
    );
    server.stop()?;
    Ok(phases)
}

pub(crate) fn rest(args: &RestArgs) -> anyhow::Result<()> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(
        args.requests >= args.clients,
        "--requests must be at least --clients"
    );
    ensure!(args.runs > 0, "--runs must be at least 1");
    if let Some(fixture) = &args.fixture {
        eprintln!(
            "rest: creates are made by the clients; --fixture {} is not used",
            fixture.display()
        );
    }
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let (creates, reads) = rest_once(args, run)?;
        println!("{}", creates.line("create", args.clients, run));
        println!("{}", reads.line("read", args.clients, run));
        runs.push((creates, reads));
    }
    let rss_mb = crate::peak_rss_mb()?;
    let pick = |phase: fn(&(Phase, Phase)) -> &Phase, figure: &dyn Fn(&Phase) -> f64| {
        median(&mut runs.iter().map(|r| figure(phase(r))).collect::<Vec<_>>())
    };
    let mut line = format!(
        "workload=rest n={} stat=median runs={} clients={}",
        args.requests, args.runs, args.clients
    );
    let wall_s = pick(|r| &r.0, &|p| p.wall_s) + pick(|r| &r.1, &|p| p.wall_s);
    line.push_str(&format!(" wall_s={wall_s:.3}"));
    for (op, phase) in [
        ("create", (|r| &r.0) as fn(&(Phase, Phase)) -> &Phase),
        ("read", |r| &r.1),
    ] {
        line.push_str(&format!(
            " {op}_per_s={:.0} {op}_p50_ms={:.2} {op}_p90_ms={:.2} {op}_p99_ms={:.2} \
             {op}_max_ms={:.2}",
            pick(phase, &|p| p.sorted.len() as f64 / p.wall_s),
            pick(phase, &|p| percentile_ms(&p.sorted, 50.0)),
            pick(phase, &|p| percentile_ms(&p.sorted, 90.0)),
            pick(phase, &|p| percentile_ms(&p.sorted, 99.0)),
            pick(phase, &|p| percentile_ms(&p.sorted, 100.0)),
        ));
    }
    line.push_str(&format!(" rss_mb={rss_mb:.1}"));
    println!("{line}");
    write_results(
        "rest",
        &json!({
            "workload": "rest",
            "requests_per_phase": args.requests,
            "clients": args.clients,
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "runs": runs.iter().map(|(creates, reads)| json!({
                "create": creates.figures(),
                "read": reads.figures(),
            })).collect::<Vec<_>>(),
            "rss_mb": rss_mb,
        }),
    )
}
