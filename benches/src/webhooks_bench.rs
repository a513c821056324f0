//! `webhooks`: how fast the webhook dispatcher turns the changes feed into
//! delivered notifications, and how long one durable write waits before a
//! receiver is told of it.
//!
//! Why these three figures in one run: a notification costs the feed read
//! (as the hook's owner sees it), a durable freeze before the first attempt,
//! a signed POST, and a durable attempt write that moves the cursor. The
//! feed reader's own rate over the same changes (phase 3) is the ceiling
//! delivery could reach on this machine; the gap between it and the
//! delivered rate (phase 1) is what freezing, signing, HTTP and the attempt
//! log cost. Phase 2 times one write at a time on an otherwise idle feed,
//! from its durable ack to the notification that carries its seq, which is
//! what an ERP waiting on a webhook sees.
//!
//! Why in one process, over real HTTP: the gateway and `run_delivery` run
//! on a multi-thread tokio runtime exactly as `fieldsync run` starts them,
//! over a fresh sled store on disk; the hook is registered through the REST
//! API; the receiver is an axum server on loopback (its own runtime) that
//! answers 204 at once, so neither the network nor the receiver is in the
//! figures. On the 2-core machine the writer, the committer, the dispatcher
//! and the receiver share the same cores, as on a small central.
//!
//! The targets (≥ 20,000 changes/s delivered in 200-change
//! notifications; p99 write → delivery ≤ 250 ms) are printed beside the
//! results and never asserted: timing depends on the machine.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Args;
use fieldsync_gateway::{AppState, GatewayConfig, TokenKey};
use fieldsync_node::access::{ReadGrants, Viewer};
use fieldsync_node::feed::{self, FeedAccess, FeedQuery};
use fieldsync_node::secret;
use fieldsync_node::store::{Expect, RecordWrite, Store, StoreConfig, User, WriteSet};
use fieldsync_schemas::Role;
use serde::Deserialize;
use serde_json::json;

/// The operator who owns the hook (an operator's hook sees the whole feed).
const OPERATOR: &str = "bench-webhooks";
/// The data collection every change is written to.
const COLLECTION: &str = "parts";
/// Record writes per write set in the throughput phase.
const WRITE_SET_RECORDS: u64 = 1_000;
/// Write sets submitted and not yet acknowledged, at most, in the
/// throughput phase (the committer groups them into shared flushes).
const WRITE_SETS_IN_FLIGHT_MAX: usize = 4;
/// Single-record writes timed in the latency phase.
const LATENCY_WRITES: u64 = 300;
/// Time from the start of one latency write to the start of the next.
const LATENCY_SPACING_MS: u64 = 10;
/// Entries per page of the feed reader's pass (a notification's most).
const FEED_PAGE_ENTRIES: usize = 200;
/// Changelog entries one feed page may scan.
const FEED_SCAN_ENTRIES_MAX: usize = 10_000;
/// Worker threads of the gateway's runtime (the machine has 2 cores).
const SERVER_THREADS: usize = 2;
/// Worker threads of the receiver's runtime.
const RECEIVER_THREADS: usize = 1;
/// Longest the receiver may wait for a seq before the run fails.
const DELIVERY_WAIT_MS_MAX: u64 = 300_000;
/// Pause between the throughput and latency phases, so the dispatcher's
/// last attempt write lands before the feed is called idle.
const SETTLE_MS: u64 = 500;
/// Longest one setup request (token, registration) may take.
const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// The targets, printed beside the results, never asserted.
const TARGET_CHANGES_PER_S: f64 = 20_000.0;
const TARGET_CHANGES_PER_NOTIFICATION: f64 = 200.0;
const TARGET_P99_MS: f64 = 250.0;

#[derive(Args, Clone)]
pub(crate) struct WebhooksArgs {
    /// Record changes written and delivered in the throughput phase.
    #[arg(long, default_value_t = 100_000)]
    n: u64,
    /// Runs, each on a fresh store; the median is reported.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Where the fresh stores are made (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

// ------------------------------------------------------------ receiver --

/// One notification as the receiver first got it.
#[derive(Clone, Debug)]
struct Arrival {
    at: Instant,
    count: u64,
    first_seq: u64,
    last_seq: u64,
}

#[derive(Default)]
struct Log {
    arrivals: Vec<Arrival>,
    /// `webhook-id`s seen: a retry carries the same id and is not counted.
    seen: HashSet<String>,
    /// Highest seq received so far.
    seq_max: u64,
    duplicates: u64,
    malformed: u64,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    grew: Condvar,
}

/// The part of a notification body the receiver reads.
#[derive(Deserialize)]
struct Notification {
    count: u64,
    last_seq: u64,
    changes: Vec<NotifiedChange>,
}

#[derive(Deserialize)]
struct NotifiedChange {
    seq: u64,
}

impl Log {
    /// Keep a notification the first time its `webhook-id` is seen.
    fn record(&mut self, at: Instant, webhook_id: String, body: &[u8]) {
        let parsed = serde_json::from_slice::<Notification>(body).ok();
        let Some(notification) = parsed.filter(|_| !webhook_id.is_empty()) else {
            self.malformed += 1;
            return;
        };
        if !self.seen.insert(webhook_id) {
            self.duplicates += 1;
            return;
        }
        let seqs = notification.changes.iter().map(|change| change.seq);
        let first_seq = seqs.clone().min().unwrap_or(notification.last_seq);
        let last_seq = seqs.max().unwrap_or(notification.last_seq);
        self.seq_max = self.seq_max.max(last_seq);
        self.arrivals.push(Arrival {
            at,
            count: notification.count,
            first_seq,
            last_seq,
        });
    }
}

/// Note the notification and answer 204 at once.
async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    shared
        .log
        .lock()
        .expect("receiver log")
        .record(at, webhook_id, &body);
    shared.grew.notify_all();
    StatusCode::NO_CONTENT
}

/// An axum receiver on a loopback port, on its own runtime.
struct Receiver {
    _runtime: tokio::runtime::Runtime,
    url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RECEIVER_THREADS)
            .thread_name("bench-receiver")
            .enable_all()
            .build()
            .context("starting the receiver runtime")?;
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding the receiver's port")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        runtime.spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("webhooks: the receiver stopped: {error}");
            }
        });
        Ok(Receiver {
            _runtime: runtime,
            url,
            shared,
        })
    }

    /// Wait until a notification carrying `seq` (or a later one) arrived.
    fn wait_for_seq(&self, seq: u64) -> anyhow::Result<()> {
        let log = self.shared.log.lock().expect("receiver log");
        let (log, waited) = self
            .shared
            .grew
            .wait_timeout_while(log, Duration::from_millis(DELIVERY_WAIT_MS_MAX), |log| {
                log.seq_max < seq
            })
            .expect("receiver log");
        ensure!(
            !waited.timed_out(),
            "the receiver waited {DELIVERY_WAIT_MS_MAX} ms for seq {seq}; it has up to seq {} \
             in {} notifications ({} malformed)",
            log.seq_max,
            log.arrivals.len(),
            log.malformed
        );
        Ok(())
    }

    /// The notifications whose changes lie in `(after, to]`.
    fn arrivals_between(&self, after: u64, to: u64) -> Vec<Arrival> {
        let log = self.shared.log.lock().expect("receiver log");
        log.arrivals
            .iter()
            .filter(|arrival| arrival.first_seq > after && arrival.last_seq <= to)
            .cloned()
            .collect()
    }

    /// Retries seen (by `webhook-id`) and bodies that were not notifications.
    fn anomalies(&self) -> (u64, u64) {
        let log = self.shared.log.lock().expect("receiver log");
        (log.duplicates, log.malformed)
    }
}

// ------------------------------------------------------------- gateway --

/// The gateway and the delivery tasks over `store`, on their own runtime.
struct Gateway {
    runtime: tokio::runtime::Runtime,
    url: String,
    stop_delivery: tokio::sync::watch::Sender<bool>,
    delivering: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    fn start(store: &Store) -> anyhow::Result<Gateway> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SERVER_THREADS)
            .thread_name("bench-gateway")
            .enable_all()
            .build()
            .context("starting the gateway runtime")?;
        let mut config = GatewayConfig::default();
        config.delivery.allow_networks = vec!["127.0.0.0/8".into()];
        let state = AppState::new(store.clone(), TokenKey::generate(), config)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding the gateway's port")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop_delivery, stopping) = tokio::sync::watch::channel(false);
        let delivering = runtime.spawn(fieldsync_gateway::run_delivery(state.clone(), stopping));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = runtime.spawn(fieldsync_gateway::run(listener, state, async move {
            let _ = stopped.await;
        }));
        Ok(Gateway {
            runtime,
            url,
            stop_delivery,
            delivering,
            shutdown,
            serving,
        })
    }

    /// Stop the dispatcher, then the server.
    fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop_delivery.send(true);
        self.runtime
            .block_on(self.delivering)
            .context("the delivery task")?;
        let _ = self.shutdown.send(());
        self.runtime
            .block_on(self.serving)
            .context("the gateway task")?
            .context("the gateway")?;
        Ok(())
    }

    /// Sign in as the operator and register a hook posting to `hook_url`
    /// from the current end of the feed; returns the hook's id.
    fn register_hook(&self, client_secret: &str, hook_url: &str) -> anyhow::Result<String> {
        fieldsync_gateway::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .build()
            .context("building an HTTP client")?;
        self.runtime.block_on(async {
            let response = http
                .post(format!("{}/oauth/token", self.url))
                .basic_auth(OPERATOR, Some(client_secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            ensure!(status == 200, "the token request answered {status}: {body}");
            let token = body["access_token"].as_str().context("no access_token")?;
            let response = http
                .post(format!("{}/api/v1/webhooks", self.url))
                .bearer_auth(token)
                .json(&json!({ "url": hook_url, "skip_url_test": true }))
                .send()
                .await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            ensure!(
                status == 201,
                "registering the hook answered {status}: {body}"
            );
            Ok(body["id"].as_str().context("no hook id")?.to_string())
        })
    }
}

/// Add the operator who owns the hook; returns its client secret.
fn add_operator(store: &Store) -> anyhow::Result<String> {
    let client_secret = secret::generate_client_secret();
    store.put_user(&User {
        id: OPERATOR.into(),
        role: Role::Operator,
        scopes: Vec::new(),
        secret_hash: Some(secret::hash(&client_secret)?),
        enroll_code_hash: None,
        enroll_code_expires_at_ms: None,
        node_ids: Vec::new(),
        revoked: false,
        created_at: "2026-01-01T00:00:00Z".into(),
    })?;
    Ok(client_secret)
}

// -------------------------------------------------------------- phases --

/// One part record (~150 bytes of JSON) at `key`.
fn part_write(key: String, index: u64) -> RecordWrite {
    let value = json!({
        "sku": key,
        "description": "Compressor relay, 24 V coil, 30 A contacts",
        "bin": format!("B-{:03}", index % 997),
        "stock": index % 500,
        "updated_at": "2026-12-02T10:00:00.000Z",
    });
    RecordWrite {
        collection: COLLECTION.into(),
        key,
        value: Some(serde_json::to_vec(&value).expect("JSON of a plain value")),
        expect: Expect::Any,
        replicated_version: None,
    }
}

/// Phase 1's figures.
struct Throughput {
    /// First submit to the last write set's ack.
    write_s: f64,
    /// First submit to the receiver holding the last seq.
    deliver_s: f64,
    notifications: u64,
    changes: u64,
    /// Flushes during the phase (the writer's and the dispatcher's).
    flushes: u64,
    /// The phase's last seq.
    last_seq: u64,
}

/// Phase 1: `n` changes in write sets of `WRITE_SET_RECORDS`, as fast as
/// the committer takes them; the clock stops when the receiver has them all.
fn throughput(store: &Store, receiver: &Receiver, n: u64) -> anyhow::Result<Throughput> {
    let seq_before = store.last_seq();
    let flushes_before = store.flush_count();
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut index = 0u64;
    while index < n {
        let end = (index + WRITE_SET_RECORDS).min(n);
        let records = (index..end)
            .map(|i| part_write(format!("P-{i:08}"), i))
            .collect();
        in_flight.push_back(store.submit(WriteSet {
            records,
            ..WriteSet::default()
        })?);
        if in_flight.len() >= WRITE_SETS_IN_FLIGHT_MAX {
            in_flight.pop_front().expect("not empty").wait()?;
        }
        index = end;
    }
    for write in in_flight {
        write.wait()?;
    }
    let write_s = started.elapsed().as_secs_f64();
    let last_seq = store.last_seq();
    ensure!(
        last_seq == seq_before + n,
        "{n} record writes took seqs {seq_before}..{last_seq}"
    );
    receiver.wait_for_seq(last_seq)?;
    let arrivals = receiver.arrivals_between(seq_before, last_seq);
    let arrived = arrivals.iter().map(|a| a.at).max().context("no arrivals")?;
    let changes = arrivals.iter().map(|a| a.count).sum();
    ensure!(
        changes == n,
        "{changes} changes delivered of {n} written (each key is written once)"
    );
    Ok(Throughput {
        write_s,
        deliver_s: arrived.duration_since(started).as_secs_f64(),
        notifications: arrivals.len() as u64,
        changes,
        flushes: store.flush_count() - flushes_before,
        last_seq,
    })
}

/// Phase 2's figures.
struct Latency {
    /// Durable ack to arrival, one per write, sorted.
    sorted: Vec<Duration>,
    notifications: u64,
}

/// Phase 2: `LATENCY_WRITES` single-record writes started every
/// `LATENCY_SPACING_MS` on an idle feed; each timed from its durable ack
/// to the arrival of the notification carrying its seq (0 if that came
/// first: the dispatcher may wake before the writer's thread does).
fn latency(store: &Store, receiver: &Receiver) -> anyhow::Result<Latency> {
    let seq_before = store.last_seq();
    let started = Instant::now();
    let mut acks = Vec::with_capacity(LATENCY_WRITES as usize);
    for i in 0..LATENCY_WRITES {
        let due = started + Duration::from_millis(LATENCY_SPACING_MS * i);
        if let Some(early) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(early);
        }
        let write = WriteSet {
            records: vec![part_write(format!("L-{i:05}"), i)],
            ..WriteSet::default()
        };
        let receipt = store.submit(write)?.wait()?;
        let acked = Instant::now();
        let seq = receipt
            .records
            .first()
            .and_then(|record| record.seq)
            .context("a data record write without a seq")?;
        acks.push((seq, acked));
    }
    let last_seq = store.last_seq();
    receiver.wait_for_seq(last_seq)?;
    let arrivals = receiver.arrivals_between(seq_before, last_seq);
    let mut sorted = acks
        .iter()
        .map(|(seq, acked)| {
            let arrival = arrivals
                .iter()
                .find(|a| (a.first_seq..=a.last_seq).contains(seq))
                .with_context(|| format!("no notification carried seq {seq}"))?;
            Ok(arrival.at.saturating_duration_since(*acked))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    sorted.sort();
    Ok(Latency {
        sorted,
        notifications: arrivals.len() as u64,
    })
}

/// Phase 3: the feed reader alone over seqs `1..=to_seq`, in pages of
/// `FEED_PAGE_ENTRIES`, as the office sees it. Returns (seconds, entries).
fn feed_pass(store: &Store, to_seq: u64) -> anyhow::Result<(f64, u64)> {
    let configured = std::collections::BTreeMap::<String, ReadGrants>::new();
    let access = FeedAccess {
        viewer: Viewer::Office,
        configured: &configured,
        now_ms: fieldsync_node::clock::now_ms(),
        grace_ms: 0,
    };
    let started = Instant::now();
    let (mut since, mut entries) = (0u64, 0u64);
    while since < to_seq {
        let query = FeedQuery {
            since,
            limit: FEED_PAGE_ENTRIES,
            collection: None,
            scan_max: FEED_SCAN_ENTRIES_MAX,
        };
        let page = feed::read_page(store, &access, &query)?;
        ensure!(page.last_seq > since, "the feed is stuck at seq {since}");
        entries += page
            .entries
            .iter()
            .filter(|entry| entry.seq <= to_seq)
            .count() as u64;
        since = page.last_seq;
    }
    Ok((started.elapsed().as_secs_f64(), entries))
}

// ----------------------------------------------------------------- run --

/// One run's figures, by name, in the order they are printed.
type Figures = Vec<(&'static str, f64)>;

/// The value at percentile `p` (nearest rank) of sorted samples, in ms.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

fn run_once(args: &WebhooksArgs) -> anyhow::Result<Figures> {
    let temp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temporary store directory")?;
    let store = Store::init(&temp.path().join("store"), StoreConfig::default())?;
    let client_secret = add_operator(&store)?;
    let receiver = Receiver::start()?;
    let gateway = Gateway::start(&store)?;
    gateway.register_hook(&client_secret, &receiver.url)?;
    let phase1 = throughput(&store, &receiver, args.n)?;
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    let phase2 = latency(&store, &receiver)?;
    let (feed_s, feed_entries) = feed_pass(&store, phase1.last_seq)?;
    ensure!(
        feed_entries == args.n,
        "the feed reader saw {feed_entries} of {} changes",
        args.n
    );
    let (duplicates, malformed) = receiver.anomalies();
    ensure!(
        malformed == 0,
        "the receiver got {malformed} malformed bodies"
    );
    gateway.stop()?;
    store.close();
    let n = args.n as f64;
    Ok(vec![
        ("wall_s", phase1.deliver_s),
        ("changes_per_s", phase1.changes as f64 / phase1.deliver_s),
        (
            "notifications_per_s",
            phase1.notifications as f64 / phase1.deliver_s,
        ),
        (
            "changes_per_notification",
            phase1.changes as f64 / phase1.notifications as f64,
        ),
        ("write_s", phase1.write_s),
        ("write_changes_per_s", n / phase1.write_s),
        ("flushes", phase1.flushes as f64),
        ("latency_p50_ms", percentile_ms(&phase2.sorted, 50.0)),
        ("latency_p99_ms", percentile_ms(&phase2.sorted, 99.0)),
        ("latency_max_ms", percentile_ms(&phase2.sorted, 100.0)),
        ("latency_notifications", phase2.notifications as f64),
        ("feed_s", feed_s),
        ("feed_changes_per_s", n / feed_s),
        ("duplicates", duplicates as f64),
    ])
}

/// `key=value` pairs, with as many decimals as the unit deserves.
fn pairs(figures: &[(&'static str, f64)]) -> String {
    figures
        .iter()
        .map(|(key, value)| {
            let decimals = if key.ends_with("_per_s") {
                0
            } else if key.ends_with("_s") {
                3
            } else if key.ends_with("_ms") {
                2
            } else if *key == "changes_per_notification" {
                1
            } else {
                0
            };
            format!("{key}={value:.decimals$}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The median of each figure over the runs.
fn medians(runs: &[Figures]) -> Figures {
    runs[0]
        .iter()
        .enumerate()
        .map(|(index, (key, _))| {
            let mut values: Vec<f64> = runs.iter().map(|run| run[index].1).collect();
            values.sort_by(f64::total_cmp);
            (*key, values[values.len() / 2])
        })
        .collect()
}

/// An issue target a figure is printed beside.
#[derive(Clone, Copy)]
enum Target {
    None,
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn describe(self, value: f64) -> String {
        let verdict = |met: bool| if met { "met" } else { "missed" };
        match self {
            Target::None => String::new(),
            Target::AtLeast(target) => format!(">= {target:.0}  {}", verdict(value >= target)),
            Target::AtMost(target) => format!("<= {target:.0}  {}", verdict(value <= target)),
        }
    }
}

/// The table's rows: phase and label, figure, decimals, target.
const TABLE_ROWS: [(&str, &str, usize, Target); 9] = [
    (
        "1 delivered changes/s",
        "changes_per_s",
        0,
        Target::AtLeast(TARGET_CHANGES_PER_S),
    ),
    ("1 notifications/s", "notifications_per_s", 0, Target::None),
    (
        "1 changes per notification",
        "changes_per_notification",
        1,
        Target::AtLeast(TARGET_CHANGES_PER_NOTIFICATION),
    ),
    (
        "1 first write to last delivery (s)",
        "wall_s",
        3,
        Target::None,
    ),
    (
        "1 writes acknowledged, changes/s",
        "write_changes_per_s",
        0,
        Target::None,
    ),
    (
        "2 write ack -> delivery p50 (ms)",
        "latency_p50_ms",
        2,
        Target::None,
    ),
    (
        "2 write ack -> delivery p99 (ms)",
        "latency_p99_ms",
        2,
        Target::AtMost(TARGET_P99_MS),
    ),
    (
        "2 write ack -> delivery max (ms)",
        "latency_max_ms",
        2,
        Target::None,
    ),
    (
        "3 feed reader alone, changes/s",
        "feed_changes_per_s",
        0,
        Target::None,
    ),
];

/// The human table: each phase's result, with the target beside it.
fn print_table(args: &WebhooksArgs, median: &[(&'static str, f64)]) {
    println!(
        "\nwebhooks: n={}, median of {} run(s), {} cpus",
        args.n,
        args.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{:<36} {:>12}   target", "phase figure", "result");
    for (label, key, decimals, target) in TABLE_ROWS {
        let value = median
            .iter()
            .find(|(name, _)| *name == key)
            .map_or(f64::NAN, |(_, value)| *value);
        let line = format!(
            "{label:<36} {value:>12.decimals$}   {}",
            target.describe(value)
        );
        println!("{}", line.trim_end());
    }
    println!();
}

pub(crate) fn webhooks(args: &WebhooksArgs) -> anyhow::Result<()> {
    ensure!(args.n > 0, "--n must be at least 1");
    ensure!(args.runs > 0, "--runs must be at least 1");
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let figures = run_once(args).with_context(|| format!("run {run}"))?;
        println!(
            "workload=webhooks n={} run={run} {}",
            args.n,
            pairs(&figures)
        );
        runs.push(figures);
    }
    let median = medians(&runs);
    let rss_mb = crate::peak_rss_mb()?;
    print_table(args, &median);
    println!(
        "workload=webhooks n={} stat=median runs={} {} rss_mb={rss_mb:.1}",
        args.n,
        args.runs,
        pairs(&median)
    );
    let as_object = |figures: &Figures| {
        serde_json::Value::Object(
            figures
                .iter()
                .map(|(key, value)| (key.to_string(), json!(value)))
                .collect(),
        )
    };
    let report = json!({
        "workload": "webhooks",
        "n": args.n,
        "write_set_records": WRITE_SET_RECORDS,
        "latency_writes": LATENCY_WRITES,
        "latency_spacing_ms": LATENCY_SPACING_MS,
        "feed_page_entries": FEED_PAGE_ENTRIES,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "runs": runs.iter().map(as_object).collect::<Vec<_>>(),
        "median": as_object(&median),
        "targets": {
            "changes_per_s_min": TARGET_CHANGES_PER_S,
            "changes_per_notification": TARGET_CHANGES_PER_NOTIFICATION,
            "latency_p99_ms_max": TARGET_P99_MS,
        },
        "rss_mb": rss_mb,
    });
    println!("{report}");
    let dir = crate::results_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("webhooks.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("results written to {}", path.display());
    Ok(())
}
