//! W1 (prime a fresh node) and W2 (reconnect after 10 edits): two real node
//! processes syncing over QUIC on 127.0.0.1, as `../shared/bench/README.md`
//! describes.
//!
//! Each run, in a fresh temporary directory:
//! 1. `sync-setup` (its own process, untimed): imports the first N fixture
//!    lines into A's store through the normal write path, makes both node
//!    identities, and pre-authorises B as an operator's node in A's store.
//! 2. `sync-node a` (a fresh process): opens that store, listens on port 0,
//!    prints its address, then obeys `edit` and `exit` on stdin.
//! 3. `sync-node b` (W1): an empty store; loads the fixture's expectations;
//!    starts the clock, dials A; a checker thread reads every document that
//!    becomes durable back from B's own store and compares it with its
//!    fixture line; the clock stops when all N are checked.
//! 4. W2: B exits; A applies the fixture's edits (a note and a status, for
//!    each edit whose line is below N); a new B process reopens its store,
//!    starts the clock, dials, and stops it when every edit shows.
//!
//! Bytes are what quinn counted at the UDP socket for B's session with A
//! (`ConnectionStats::udp_tx.bytes + udp_rx.bytes`, both directions: QUIC,
//! TLS, acks and the handshake included; IP and UDP headers excluded).
//! Peak RSS is each process's `VmHWM`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use automerge::{Automerge, ObjId, ReadDoc, Value, ROOT};
use clap::{Args, ValueEnum};
use fieldsync_node::config::PeerConfig;
use fieldsync_node::doc::Operation;
use fieldsync_node::identity::Identity;
use fieldsync_node::import::{import_jsonl, open_jsonl, ImportOptions};
use fieldsync_node::quic::{Credentials, Driver, DriverConfig, LinkTiming};
use fieldsync_node::store::{Store, StoreConfig, User};
use fieldsync_node::sync::SessionConfig;
use fieldsync_schemas::fixture::FixtureWorkOrder;
use fieldsync_schemas::{Actor, Role, Status};
use serde_json::json;

use crate::{fixture_path, peak_rss_mb, results_dir, RunArgs};

/// The W2 edits, beside the fixture.
const MODS_FILE: &str = "wo-10000-42.mods.json";
/// Largest mods file read.
const MODS_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// B gives up after this long.
const NODE_DEADLINE_MS: u64 = 60_000;
/// B waits this long at most, untimed, for its session to go idle.
const IDLE_WAIT_MS: u64 = 10_000;
/// The checker looks for new durable documents this often when idle.
const CHECK_POLL_US: u64 = 200;
/// Changelog entries the checker reads at once, at most.
const CHECK_ENTRIES_MAX: usize = 4096;
/// Threads checking documents, at most (this machine has 2 cores).
const CHECK_THREADS_MAX: usize = 2;
/// Fewer documents than this per thread are checked on one thread.
const CHECK_IDS_PER_THREAD_MIN: usize = 64;
/// The operator user B's node is pre-authorised for.
const BENCH_USER: &str = "bench-operator";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Side {
    A,
    B,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Phase {
    W1,
    W2,
}

/// Knobs of the sync engine, to tune the workloads.
#[derive(Args, Clone, Debug)]
pub(crate) struct SyncTunables {
    /// Pages announced and not yet acknowledged, at most (default: what
    /// the QUIC driver runs).
    #[arg(long, default_value_t = fieldsync_node::quic::PAGES_IN_FLIGHT_MAX)]
    pages_in_flight: usize,
    /// Changelog entries per page, at most.
    #[arg(long, default_value_t = 512)]
    page_docs: usize,
    /// Uncompressed bytes per document batch, at most.
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_bytes: usize,
    /// zstd level of document batches.
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
}

impl SyncTunables {
    fn args(&self) -> Vec<String> {
        vec![
            "--pages-in-flight".into(),
            self.pages_in_flight.to_string(),
            "--page-docs".into(),
            self.page_docs.to_string(),
            "--batch-bytes".into(),
            self.batch_bytes.to_string(),
            "--zstd-level".into(),
            self.zstd_level.to_string(),
        ]
    }

    fn session(&self, identity: &Identity, office: bool) -> SessionConfig {
        let mut session = fieldsync_node::quic::session_config(identity.node_id(), office);
        session.pages_in_flight_max = self.pages_in_flight;
        session.page_scan_entries_max = self.page_docs;
        session.batch_bytes_max = self.batch_bytes;
        session.batch_zstd_level = self.zstd_level;
        session
    }
}

/// `w1` / `w2` arguments: the runner's, plus the engine's knobs.
#[derive(Args)]
pub(crate) struct SyncRunArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    sync: SyncTunables,
}

impl From<&RunArgs> for SyncRunArgs {
    fn from(run: &RunArgs) -> SyncRunArgs {
        SyncRunArgs {
            run: run.clone(),
            sync: SyncTunables::default(),
        }
    }
}

impl Default for SyncTunables {
    fn default() -> Self {
        SyncTunables {
            pages_in_flight: fieldsync_node::quic::PAGES_IN_FLIGHT_MAX,
            page_docs: 512,
            batch_bytes: 1024 * 1024,
            zstd_level: 3,
        }
    }
}

#[derive(Args)]
pub(crate) struct SetupArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    n: u64,
    #[arg(long)]
    fixture: PathBuf,
}

#[derive(Args)]
pub(crate) struct NodeArgs {
    #[arg(value_enum)]
    side: Side,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    n: u64,
    #[arg(long)]
    fixture: PathBuf,
    #[arg(long, value_enum, default_value = "w1")]
    phase: Phase,
    /// A's address (B only).
    #[arg(long)]
    peer_address: Option<String>,
    /// A's node id (B only).
    #[arg(long)]
    peer_id: Option<String>,
    #[command(flatten)]
    tunables: SyncTunables,
}

/// One run's figures for one workload.
#[derive(Clone, Debug)]
struct Figures {
    wall_s: f64,
    bytes: u64,
    docs: u64,
    rss_a_mb: f64,
    rss_b_mb: f64,
}

pub(crate) fn w1(args: &SyncRunArgs) -> anyhow::Result<()> {
    workload(&args.run, &args.sync, Phase::W1)
}

pub(crate) fn w2(args: &SyncRunArgs) -> anyhow::Result<()> {
    workload(&args.run, &args.sync, Phase::W2)
}

fn workload(args: &RunArgs, tunables: &SyncTunables, phase: Phase) -> anyhow::Result<()> {
    ensure!(
        args.n > 0 && args.n <= 10_000,
        "--n must be 1 to 10000 (the fixture's size)"
    );
    ensure!(args.runs > 0, "--runs must be at least 1");
    let fixture = fixture_path(&args.once);
    ensure!(
        fixture.exists(),
        "no fixture at {} (pass --fixture PATH)",
        fixture.display()
    );
    let name = match phase {
        Phase::W1 => "W1",
        Phase::W2 => "W2",
    };
    // Children run from a private copy: the shared target directory may be
    // rebuilt while the runs go on.
    let (_copy, exe) = crate::report::private_exe()?;
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let figures = one_run(&exe, args, tunables, &fixture, phase)
            .with_context(|| format!("{name} run {run}"))?;
        println!(
            "workload={name} n={} run={run} wall_s={:.4} bytes={} bytes_per_doc={:.0} docs={} \
             rss_mb=A:{:.1},B:{:.1}",
            args.n,
            figures.wall_s,
            figures.bytes,
            figures.bytes as f64 / figures.docs.max(1) as f64,
            figures.docs,
            figures.rss_a_mb,
            figures.rss_b_mb
        );
        runs.push(figures);
    }
    let median = |pick: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let wall_s = median(|f| f.wall_s);
    let bytes = median(|f| f.bytes as f64);
    let docs = median(|f| f.docs as f64);
    let (rss_a, rss_b) = (median(|f| f.rss_a_mb), median(|f| f.rss_b_mb));
    println!(
        "workload={name} n={} stat=median runs={} wall_s={wall_s:.4} bytes={bytes:.0} \
         bytes_per_doc={:.0} docs={docs:.0} rss_mb=A:{rss_a:.1},B:{rss_b:.1}",
        args.n,
        args.runs,
        bytes / docs.max(1.0)
    );
    let report = json!({
        "workload": name,
        "n": args.n,
        "fixture": fixture.display().to_string(),
        "bytes_counted": "quinn ConnectionStats udp_tx.bytes + udp_rx.bytes of B's session (UDP payloads, both directions)",
        "tunables": {
            "pages_in_flight": tunables.pages_in_flight,
            "page_docs": tunables.page_docs,
            "batch_bytes": tunables.batch_bytes,
            "zstd_level": tunables.zstd_level,
        },
        "runs": runs.iter().map(|f| json!({
            "wall_s": f.wall_s, "bytes": f.bytes, "docs": f.docs,
            "rss_mb_a": f.rss_a_mb, "rss_mb_b": f.rss_b_mb,
        })).collect::<Vec<_>>(),
        "median": {"wall_s": wall_s, "bytes": bytes, "docs": docs, "rss_mb_a": rss_a, "rss_mb_b": rss_b},
    });
    let dir = results_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}-n{}.json", name.to_lowercase(), args.n));
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

/// A child process speaking one JSON line per message on stdout.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl NodeProcess {
    fn spawn(exe: &Path, args: &[String]) -> anyhow::Result<NodeProcess> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a node process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(NodeProcess {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    fn read(&mut self) -> anyhow::Result<serde_json::Value> {
        let line = self
            .lines
            .next()
            .context("the node process ended without answering")??;
        serde_json::from_str(&line).with_context(|| format!("bad line from a node: {line}"))
    }

    fn send(&mut self, command: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        ensure!(status.success(), "a node process failed ({status})");
        Ok(())
    }
}

fn one_run(
    exe: &Path,
    args: &RunArgs,
    tunables: &SyncTunables,
    fixture: &Path,
    phase: Phase,
) -> anyhow::Result<Figures> {
    let parent = match &args.once.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temporary directory")?;
    let dir = parent.path();
    let n = args.n.to_string();
    let fixture_arg = fixture.display().to_string();
    let setup = Command::new(exe)
        .args(["sync-setup", "--dir", &dir.display().to_string(), "--n", &n])
        .args(["--fixture", &fixture_arg])
        .status()
        .context("cannot run the setup")?;
    ensure!(setup.success(), "setup failed ({setup})");
    let node_args = |side: &str, phase: &str, extra: &[String]| -> Vec<String> {
        let mut all: Vec<String> = vec![
            "sync-node".into(),
            side.into(),
            "--dir".into(),
            dir.join(side).display().to_string(),
            "--n".into(),
            n.clone(),
            "--fixture".into(),
            fixture_arg.clone(),
            "--phase".into(),
            phase.into(),
        ];
        all.extend(tunables.args());
        all.extend_from_slice(extra);
        all
    };
    let mut a = NodeProcess::spawn(exe, &node_args("a", "w1", &[]))?;
    let listening = a.read()?;
    let peer = vec![
        "--peer-address".to_string(),
        listening["listen"]
            .as_str()
            .context("no listen address")?
            .to_string(),
        "--peer-id".to_string(),
        listening["node_id"]
            .as_str()
            .context("no node id")?
            .to_string(),
    ];
    let mut b = NodeProcess::spawn(exe, &node_args("b", "w1", &peer))?;
    let primed = b.read()?;
    b.finish()?;
    let result = match phase {
        Phase::W1 => primed,
        Phase::W2 => {
            a.send("edit")?;
            let edited = a.read()?;
            ensure!(
                edited["edited"].as_u64() > Some(0),
                "A applied no edits: {edited}"
            );
            let mut b = NodeProcess::spawn(exe, &node_args("b", "w2", &peer))?;
            let reconnected = b.read()?;
            b.finish()?;
            reconnected
        }
    };
    a.send("exit")?;
    let a_done = a.read()?;
    a.finish()?;
    let number = |value: &serde_json::Value, key: &str| {
        value[key]
            .as_f64()
            .with_context(|| format!("no `{key}` in {value}"))
    };
    Ok(Figures {
        wall_s: number(&result, "wall_s")?,
        bytes: number(&result, "bytes")? as u64,
        docs: number(&result, "docs")? as u64,
        rss_a_mb: number(&a_done, "rss_mb")?,
        rss_b_mb: number(&result, "rss_mb")?,
    })
}

/// Build A's store (the W3 write path) and both identities; pre-authorise B.
pub(crate) fn setup(args: &SetupArgs) -> anyhow::Result<()> {
    let (dir_a, dir_b) = (args.dir.join("a"), args.dir.join("b"));
    let store = Store::init(&dir_a.join("store"), StoreConfig::default())?;
    let options = ImportOptions {
        lines_max: Some(args.n),
        ..ImportOptions::default()
    };
    let reader = open_jsonl(&args.fixture)
        .with_context(|| format!("cannot open {}", args.fixture.display()))?;
    let report = import_jsonl(&store, reader, options, |_, _| {})?;
    ensure!(
        report.created == args.n,
        "imported {} of {}",
        report.created,
        args.n
    );
    let a = Identity::generate("bench-a")?;
    a.save(&dir_a)?;
    std::fs::create_dir_all(&dir_b)?;
    let b = Identity::generate("bench-b")?;
    b.save(&dir_b)?;
    store.put_user(&User {
        id: BENCH_USER.into(),
        role: Role::Operator,
        scopes: Vec::new(),
        secret_hash: None,
        enroll_code_hash: None,
        enroll_code_expires_at_ms: None,
        node_ids: vec![b.node_id().to_string()],
        revoked: false,
        created_at: "2026-01-01T00:00:00Z".into(),
    })?;
    store.close();
    Ok(())
}

fn timing() -> LinkTiming {
    LinkTiming {
        keep_alive_ms: 10_000,
        idle_timeout_ms: 60_000,
    }
}

fn driver_config(
    identity: &Identity,
    office: bool,
    peers: Vec<PeerConfig>,
    tunables: &SyncTunables,
) -> anyhow::Result<DriverConfig> {
    Ok(DriverConfig {
        node_id: identity.node_id().to_string(),
        credentials: Credentials {
            cert: identity.cert_der().clone(),
            key: identity.key_der()?,
        },
        office,
        listen: "127.0.0.1:0".parse()?,
        peers,
        timing: timing(),
        reconnect_delay_ms_min: 50,
        reconnect_delay_ms_max: 1_000,
        session: tunables.session(identity, office),
        connections_max: 4,
        status_dir: None,
        read_grants: Default::default(),
    })
}

/// A or B, in this process.
pub(crate) fn node(args: &NodeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.side {
        Side::A => runtime.block_on(node_a(args)),
        Side::B => runtime.block_on(node_b(args)),
    }
}

async fn node_a(args: &NodeArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.dir)?;
    let store = Store::open(&args.dir.join("store"), StoreConfig::default())?;
    let config = driver_config(&identity, true, Vec::new(), &args.tunables)?;
    let driver = Driver::bind(config, store.clone())?;
    emit(&json!({"listen": driver.local_addr().to_string(), "node_id": identity.node_id()}))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(driver.run(async {
        let _ = stopped.await;
    }));
    let commands = {
        let store = store.clone();
        let (n, fixture) = (args.n, args.fixture.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for line in std::io::stdin().lock().lines() {
                match line?.trim() {
                    "edit" => {
                        let edited = apply_edits(&store, &fixture, n)?;
                        emit(&json!({"edited": edited}))?;
                    }
                    "exit" | "" => return Ok(()),
                    other => bail!("unknown command `{other}`"),
                }
            }
            Ok(())
        })
    };
    commands.await??;
    let _ = stop.send(());
    running.await??;
    store.close();
    emit(&json!({"rss_mb": peak_rss_mb()?}))?;
    Ok(())
}

/// One W2 edit, as the fixture gives it.
struct Edit {
    id: String,
    status: Status,
    author: String,
    text: String,
    at: String,
}

fn edits(fixture: &Path, n: u64) -> anyhow::Result<Vec<Edit>> {
    let path = fixture.with_file_name(MODS_FILE);
    let size = std::fs::metadata(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    ensure!(
        size <= MODS_FILE_BYTES_MAX,
        "{} is too large",
        path.display()
    );
    let mods: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let lines = fixture_lines(fixture, n)?;
    let mut edits = Vec::new();
    for item in mods.as_array().context("the mods file is not a list")? {
        let index = item["index"].as_u64().context("a mod without an index")?;
        if index >= n {
            continue;
        }
        let note = &item["note"];
        let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
        edits.push(Edit {
            id: lines[index as usize].id.clone(),
            status: text(&item["status"]).parse()?,
            author: text(&note["author"]),
            text: text(&note["text"]),
            at: text(&note["at"]),
        });
    }
    Ok(edits)
}

fn apply_edits(store: &Store, fixture: &Path, n: u64) -> anyhow::Result<usize> {
    let edits = edits(fixture, n)?;
    for edit in &edits {
        let who = Actor::new(edit.author.clone(), Role::Operator);
        let note = Operation::AddNote {
            id: format!("w2-{}", edit.id),
            at: edit.at.clone(),
            text: edit.text.clone(),
        };
        let status = Operation::AppendStatus {
            at: edit.at.clone(),
            to: edit.status,
            note: String::new(),
        };
        store.update_work_order(&edit.id, &who, &note, 1)?;
        store.update_work_order(&edit.id, &who, &status, 1)?;
    }
    Ok(edits.len())
}

fn fixture_lines(fixture: &Path, n: u64) -> anyhow::Result<Vec<FixtureWorkOrder>> {
    let reader = open_jsonl(fixture)?;
    let mut lines = Vec::with_capacity(n as usize);
    for line in reader.lines().take(n as usize) {
        lines.push(serde_json::from_str(&line?)?);
    }
    ensure!(
        lines.len() as u64 == n,
        "the fixture holds fewer than {n} lines"
    );
    Ok(lines)
}

async fn node_b(args: &NodeArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.dir)?;
    let path = args.dir.join("store");
    let store = match args.phase {
        Phase::W1 => Store::init(&path, StoreConfig::default())?,
        Phase::W2 => Store::open(&path, StoreConfig::default())?,
    };
    // Expectations are loaded before the clock starts.
    let checker = match args.phase {
        Phase::W1 => Checker::Prime(
            fixture_lines(&args.fixture, args.n)?
                .into_iter()
                .map(|line| (line.id.clone(), line))
                .collect(),
        ),
        Phase::W2 => Checker::Edits(edits(&args.fixture, args.n)?),
    };
    let expected = checker.count();
    let peer = PeerConfig {
        address: args.peer_address.clone().context("--peer-address")?,
        node_id: args.peer_id.clone().context("--peer-id")?,
        user: None,
    };
    let peer_id = peer.node_id.clone();
    let config = driver_config(&identity, false, vec![peer], &args.tunables)?;
    let driver = Driver::bind(config, store.clone())?;
    let peers = driver.peers();
    let done = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Read before dialling: the sync may finish before the checker thread
    // starts, and it must still see every change.
    let start_seq = store.last_seq();
    let started = Instant::now();
    let running = tokio::spawn(driver.run(async {
        let _ = stopped.await;
    }));
    let check = {
        let (store, done) = (store.clone(), done.clone());
        tokio::task::spawn_blocking(move || checker.run(&store, start_seq, &done))
    };
    // Whatever happens below, the checker stops: the runtime waits for it
    // before this process can exit.
    let _stop_checker = StopOnDrop(done.clone());
    let checked = match tokio::time::timeout(Duration::from_millis(NODE_DEADLINE_MS), check).await {
        Ok(checked) => checked??,
        Err(_) => bail!(
            "B did not finish within {NODE_DEADLINE_MS} ms; its view of A: {:?}",
            peers.get(&peer_id)
        ),
    };
    let wall_s = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    ensure!(checked == expected, "checked {checked} of {expected}");
    // Untimed: stay until the session is idle both ways, as a laptop left
    // connected would. B's own changelog (what it just received) is still
    // being acknowledged by A; leaving now would make the next session
    // announce some of it back to A, and W2's bytes would depend on how
    // far this one got (seen: 15 KB or 35 KB).
    let idle_deadline = Instant::now() + Duration::from_millis(IDLE_WAIT_MS);
    while !peers.get(&peer_id).is_some_and(|p| p.in_sync) && Instant::now() < idle_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    running.await??;
    let session = peers.get(&peer_id).context("no session with A")?;
    store.close();
    emit(&json!({
        "wall_s": wall_s,
        "bytes": session.udp_bytes_sent + session.udp_bytes_received,
        "docs": checked,
        "rss_mb": peak_rss_mb()?,
    }))
}

/// One JSON line to the runner. An error (the runner is gone), not a panic.
fn emit(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")
        .and_then(|()| stdout.flush())
        .context("cannot answer the runner")
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What B checks, as documents become durable in its own store.
enum Checker {
    Prime(HashMap<String, FixtureWorkOrder>),
    Edits(Vec<Edit>),
}

impl Checker {
    fn count(&self) -> u64 {
        match self {
            Checker::Prime(lines) => lines.len() as u64,
            Checker::Edits(edits) => edits.len() as u64,
        }
    }

    /// Follow the changelog until every expected document checks out.
    fn run(self, store: &Store, start_seq: u64, stop: &AtomicBool) -> anyhow::Result<u64> {
        let expected = self.count();
        let mut after = start_seq;
        let mut checked = 0u64;
        let mut done: std::collections::HashSet<String> = std::collections::HashSet::new();
        while checked < expected && !stop.load(Ordering::Relaxed) {
            let entries = store.changes_since(after, CHECK_ENTRIES_MAX)?;
            let Some(last) = entries.last() else {
                std::thread::sleep(Duration::from_micros(CHECK_POLL_US));
                continue;
            };
            after = last.seq;
            let ids: Vec<&str> = entries
                .iter()
                .map(|entry| entry.id.as_str())
                .filter(|id| !done.contains(*id))
                .collect();
            for id in self.check_all(store, &ids)? {
                if done.insert(id.to_string()) {
                    checked += 1;
                }
            }
        }
        Ok(checked)
    }

    /// The documents of `ids` that check out, each read back from disk
    /// and loaded. The check is the bench's own work, not the node's:
    /// it uses up to `CHECK_THREADS_MAX` threads, so that it keeps up
    /// with the node instead of finishing a second after it.
    fn check_all<'a>(&self, store: &Store, ids: &[&'a str]) -> anyhow::Result<Vec<&'a str>> {
        let threads = CHECK_THREADS_MAX
            .min(ids.len() / CHECK_IDS_PER_THREAD_MIN)
            .max(1);
        if threads == 1 {
            return self.check_chunk(store, ids);
        }
        let chunk_len = ids.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = ids
                .chunks(chunk_len)
                .map(|chunk| scope.spawn(move || self.check_chunk(store, chunk)))
                .collect();
            let mut ok = Vec::new();
            for worker in workers {
                let part = worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a checker thread panicked"))??;
                ok.extend(part);
            }
            Ok(ok)
        })
    }

    fn check_chunk<'a>(&self, store: &Store, ids: &[&'a str]) -> anyhow::Result<Vec<&'a str>> {
        let mut ok = Vec::new();
        for &id in ids {
            let Some(bytes) = store.doc_bytes(id)? else {
                continue;
            };
            let doc = automerge::Automerge::load(&bytes)?;
            let checks_out = match self {
                Checker::Prime(lines) => match lines.get(id) {
                    Some(line) => check_line(&doc, line).map(|()| true)?,
                    None => false,
                },
                Checker::Edits(edits) => match edits.iter().find(|e| e.id == id) {
                    Some(edit) => has_edit(&doc, edit)?,
                    None => false,
                },
            };
            if checks_out {
                ok.push(id);
            }
        }
        Ok(ok)
    }
}

fn text(doc: &Automerge, object: &ObjId, key: &str) -> Option<String> {
    match doc.get(object, key).ok()?? {
        (Value::Scalar(scalar), _) => scalar.as_str().map(str::to_string),
        _ => None,
    }
}

fn list(doc: &Automerge, key: &str) -> Option<ObjId> {
    doc.get(ROOT, key).ok()?.map(|(_, id)| id)
}

/// Compare a document with its fixture line, field by field (reading the
/// fields directly: the full read model costs more than the load).
fn check_line(doc: &Automerge, line: &FixtureWorkOrder) -> anyhow::Result<()> {
    let customer = doc.get(ROOT, "customer")?.map(|(_, id)| id);
    let customer_name = customer.and_then(|c| text(doc, &c, "name"));
    let notes = list(doc, "notes").context("no notes")?;
    let materials = list(doc, "materials").context("no materials")?;
    let status_log = list(doc, "status_log").context("no status log")?;
    let first_status = doc
        .get(&status_log, 0)?
        .and_then(|(_, entry)| text(doc, &entry, "to"));
    let same = text(doc, &ROOT, "id").as_deref() == Some(line.id.as_str())
        && text(doc, &ROOT, "number").as_deref() == Some(line.number.as_str())
        && text(doc, &ROOT, "description").as_deref() == Some(line.description.as_str())
        && text(doc, &ROOT, "priority").as_deref() == Some(line.priority.as_str())
        && text(doc, &ROOT, "assignee") == line.assignee
        && customer_name.as_deref() == Some(line.customer.name.as_str())
        && first_status.as_deref() == Some(line.status.as_str())
        && doc.length(&notes) == line.notes.len()
        && doc.length(&materials) == line.materials.len();
    ensure!(same, "document {} differs from its fixture line", line.id);
    Ok(())
}

/// Does the document show the W2 edit (its note, and its status last)?
fn has_edit(doc: &Automerge, edit: &Edit) -> anyhow::Result<bool> {
    let notes = list(doc, "notes").context("no notes")?;
    let noted = (0..doc.length(&notes)).any(|i| {
        doc.get(&notes, i)
            .ok()
            .flatten()
            .and_then(|(_, note)| text(doc, &note, "text"))
            .is_some_and(|t| t == edit.text)
    });
    let status_log = list(doc, "status_log").context("no status log")?;
    let last = doc.length(&status_log).checked_sub(1);
    let status = last
        .and_then(|i| doc.get(&status_log, i).ok().flatten())
        .and_then(|(_, entry)| text(doc, &entry, "to"));
    Ok(noted && status.as_deref() == Some(edit.status.as_str()))
}
