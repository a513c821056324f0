//! Many technicians at once: one central, T technicians' laptops with W work
//! orders each; everybody primes, an outage cuts every laptop off, the office
//! changes 10% of all work orders and each technician 10% of their own, and
//! then every laptop reconnects at the same moment.
//!
//! `cargo run --release -p fieldsync-bench -- many --techs 200 --per-tech 50`
//!
//! Why this shape: a Monday morning is the central's worst hour, when every
//! laptop that was offline over the weekend comes back at once. The figures
//! that matter are how long until every document is the same on the central
//! and on its technician's laptop, what that costs the central (CPU, peak
//! memory) and what it costs each laptop's link (bytes).
//!
//! Processes: each run is a fresh child (`many-once`) so its threads, file
//! descriptors and memory start clean. That child holds the technicians:
//! real QUIC drivers, each with its own node identity and its own small sled
//! store on disk, all in one tokio runtime. The central is its own child
//! process (`many-central`, driven over stdin/stdout with one JSON line per
//! message), so its peak RSS (`VmHWM`) and CPU seconds are the central's
//! alone and `perf` can attach to it.
//!
//! Convergence is checked without asking the central to do extra work: the
//! runner knows which documents each side changed and their heads after the
//! change, so the merged heads are known in advance (one side's heads, or the
//! union of both when both edited). Each side watches its own changelog for
//! those heads. At the end every document's heads are compared on both
//! sides, so a run that "converged" to the wrong state fails loudly.
//!
//! Bytes are what QUIC put on the wire for the reconnect session, both
//! directions, as each technician's driver reports it (quinn's UDP counters,
//! `PeerState::udp_bytes_sent/received`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use fieldsync_node::config::{NodeConfig, NodeRole, PeerConfig};
use fieldsync_node::doc::Operation;
use fieldsync_node::identity::Identity;
use fieldsync_node::import::open_jsonl;
use fieldsync_node::quic::{Driver, DriverConfig, PeerMap};
use fieldsync_node::store::{Store, StoreConfig, User};
use fieldsync_schemas::fixture::FixtureWorkOrder;
use fieldsync_schemas::{Actor, NewWorkOrder, OperatorPatch, Priority, Role};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Creates queued at the central before the oldest is waited for.
const CREATE_IN_FLIGHT_MAX: usize = 256;
/// Threads applying the outage edits (each edit waits for its flush; more
/// writers share one flush).
const EDIT_THREADS: usize = 16;
/// How often the technicians' changelogs are looked at while waiting.
const POLL_INTERVAL_MS: u64 = 20;
/// Changelog entries read per look, at most.
const POLL_PAGE_ENTRIES_MAX: usize = 1_024;
/// How long to wait for every session to report "in sync" after the data
/// converged (the byte counters are read then).
const IN_SYNC_WAIT_MS: u64 = 10_000;
/// Longest line accepted from the central child.
const CENTRAL_LINE_BYTES_MAX: usize = 64 * 1024;
/// Largest plan or heads file read back.
const EXCHANGE_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// The time stamp written into work orders and edits.
const BENCH_TIME: &str = "2026-06-01T08:00:00Z";
const BENCH_TIME_S: i64 = 1_780_300_800;

#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ManyArgs {
    /// Technicians (node identities, stores and QUIC connections).
    #[arg(long, default_value_t = 200)]
    pub(crate) techs: usize,
    /// Work orders assigned to each technician.
    #[arg(long, default_value_t = 50)]
    pub(crate) per_tech: usize,
    /// Share of work orders changed on each side during the outage, in %.
    #[arg(long, default_value_t = 10)]
    pub(crate) edit_percent: u32,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: u32,
    /// Each phase (prime, reconnect) must finish within this, in seconds.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout_s: u64,
    /// Seed for choosing which documents are edited.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// The fixture the work orders are made from (cycled if too short).
    #[arg(long)]
    pub(crate) fixture: Option<PathBuf>,
    /// Where the stores are made (default: the system temp dir).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// sled page cache of each technician's store, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub(crate) tech_sled_cache_bytes: u64,
    /// Loaded documents kept by each technician's store, at most.
    #[arg(long, default_value_t = 16)]
    pub(crate) tech_cache_docs_max: usize,
    /// Technicians' redial backoff ceiling, in ms (the floor is 200 ms).
    #[arg(long, default_value_t = 5_000)]
    pub(crate) reconnect_delay_ms_max: u64,
    /// Connections the central serves at once (default: every technician,
    /// plus room; `fieldsync run` uses the driver's default, 256).
    #[arg(long)]
    pub(crate) central_connections_max: Option<usize>,
    /// Record the central with `perf record` during the reconnect phase,
    /// into this file.
    #[arg(long)]
    pub(crate) perf_out: Option<PathBuf>,
    /// Record the central with `perf record` during the prime phase.
    #[arg(long)]
    pub(crate) perf_prime_out: Option<PathBuf>,
}

impl ManyArgs {
    /// The arguments that repeat this configuration in a child process.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--techs={}", self.techs),
            format!("--per-tech={}", self.per_tech),
            format!("--edit-percent={}", self.edit_percent),
            format!("--timeout-s={}", self.timeout_s),
            format!("--seed={}", self.seed),
            format!("--tech-sled-cache-bytes={}", self.tech_sled_cache_bytes),
            format!("--tech-cache-docs-max={}", self.tech_cache_docs_max),
            format!("--reconnect-delay-ms-max={}", self.reconnect_delay_ms_max),
        ];
        if let Some(max) = self.central_connections_max {
            args.push(format!("--central-connections-max={max}"));
        }
        let paths = [
            ("--fixture", &self.fixture),
            ("--dir", &self.dir),
            ("--perf-out", &self.perf_out),
            ("--perf-prime-out", &self.perf_prime_out),
        ];
        for (flag, path) in paths {
            if let Some(path) = path {
                args.push(format!("{flag}={}", path.display()));
            }
        }
        args
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(self.techs > 0, "--techs must be at least 1");
        ensure!(self.per_tech > 0, "--per-tech must be at least 1");
        ensure!(
            (1..=100).contains(&self.edit_percent),
            "--edit-percent must be between 1 and 100"
        );
        ensure!(self.runs > 0, "--runs must be at least 1");
        ensure!(self.timeout_s > 0, "--timeout-s must be at least 1");
        ensure!(
            self.central_connections_max != Some(0),
            "--central-connections-max must be at least 1"
        );
        ensure!(
            self.reconnect_delay_ms_max >= 200,
            "--reconnect-delay-ms-max must be at least 200"
        );
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct CentralArgs {
    /// The plan the runner wrote (technicians, documents, seed).
    #[arg(long)]
    plan: PathBuf,
    /// The central's data directory (must not exist yet).
    #[arg(long)]
    dir: PathBuf,
}

/// What the runner tells the central child before it starts.
#[derive(Serialize, Deserialize)]
struct Plan {
    techs: Vec<PlanTech>,
    per_tech: usize,
    edit_percent: u32,
    seed: u64,
    fixture: PathBuf,
    connections_max: usize,
}

#[derive(Serialize, Deserialize)]
struct PlanTech {
    user: String,
    node_id: String,
}

/// A document as the central created it.
#[derive(Serialize, Deserialize)]
struct CreatedDoc {
    id: String,
    tech: usize,
    heads: Vec<String>,
}

/// Document id -> heads (hex, sorted).
type HeadsMap = BTreeMap<String, Vec<String>>;

/// One run's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ManyResult {
    pub(crate) techs: usize,
    pub(crate) per_tech: usize,
    pub(crate) docs: usize,
    pub(crate) central_create_s: f64,
    pub(crate) prime_s: f64,
    pub(crate) prime_bytes_per_tech: f64,
    pub(crate) central_edited: usize,
    pub(crate) techs_edited: usize,
    pub(crate) both_edited: usize,
    pub(crate) converge_s: f64,
    pub(crate) central_converged_s: f64,
    pub(crate) techs_converged_s: f64,
    pub(crate) reconnect_bytes_per_tech: f64,
    pub(crate) reconnect_bytes_per_tech_max: u64,
    pub(crate) reconnect_bytes_total: u64,
    pub(crate) central_cpu_reconnect_s: f64,
    pub(crate) central_cpu_total_s: f64,
    pub(crate) central_rss_reconnect_mb: f64,
    pub(crate) central_rss_peak_mb: f64,
    pub(crate) central_threads: u64,
    pub(crate) central_fds: u64,
    /// CPU seconds of the technicians' process (all laptops) while
    /// reconnecting.
    pub(crate) runner_cpu_reconnect_s: f64,
    pub(crate) runner_rss_mb: f64,
    pub(crate) runner_threads: u64,
    pub(crate) runner_fds: u64,
}

// ---------------------------------------------------------------------------
// The parent: several runs, medians, JSON.

pub(crate) fn many(args: &ManyArgs) -> anyhow::Result<Vec<ManyResult>> {
    args.check()?;
    let (_copy, exe) = crate::report::private_exe()?;
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let output = Command::new(&exe)
            .arg("many-once")
            .args(args.to_args())
            .stderr(Stdio::inherit())
            .output()
            .context("cannot start a benchmark run")?;
        ensure!(
            output.status.success(),
            "many-technicians run {run} failed ({})",
            output.status
        );
        let line = std::str::from_utf8(&output.stdout)?
            .lines()
            .last()
            .with_context(|| format!("run {run} printed nothing"))?;
        let result: ManyResult =
            serde_json::from_str(line).with_context(|| format!("run {run}'s output: {line}"))?;
        println!(
            "workload=many techs={} per_tech={} docs={} run={run} prime_s={:.3} converge_s={:.3} \
             central_cpu_s={:.2} central_rss_mb={:.1} bytes_per_tech={:.0} techs_cpu_s={:.2} \
             techs_rss_mb={:.0}",
            result.techs,
            result.per_tech,
            result.docs,
            result.prime_s,
            result.converge_s,
            result.central_cpu_reconnect_s,
            result.central_rss_peak_mb,
            result.reconnect_bytes_per_tech,
            result.runner_cpu_reconnect_s,
            result.runner_rss_mb,
        );
        runs.push(result);
    }
    let median = |pick: fn(&ManyResult) -> f64| median_of(runs.iter().map(pick).collect());
    let first = &runs[0];
    println!(
        "workload=many n={} stat=median runs={} techs={} per_tech={} wall_s={:.3} bytes={:.0} \
         rss_mb={:.1} prime_s={:.3} central_cpu_s={:.2} bytes_per_tech={:.0}",
        first.docs,
        runs.len(),
        first.techs,
        first.per_tech,
        median(|r| r.converge_s),
        median(|r| r.reconnect_bytes_total as f64),
        median(|r| r.central_rss_peak_mb),
        median(|r| r.prime_s),
        median(|r| r.central_cpu_reconnect_s),
        median(|r| r.reconnect_bytes_per_tech),
    );
    let report = json!({
        "workload": "many",
        "techs": args.techs,
        "per_tech": args.per_tech,
        "edit_percent": args.edit_percent,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "runs": runs,
        "median": {
            "converge_s": median(|r| r.converge_s),
            "prime_s": median(|r| r.prime_s),
            "central_cpu_reconnect_s": median(|r| r.central_cpu_reconnect_s),
            "central_rss_peak_mb": median(|r| r.central_rss_peak_mb),
            "reconnect_bytes_per_tech": median(|r| r.reconnect_bytes_per_tech),
            "prime_bytes_per_tech": median(|r| r.prime_bytes_per_tech),
        },
    });
    let dir = crate::results_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("many-{}x{}.json", args.techs, args.per_tech));
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("results written to {}", path.display());
    Ok(runs)
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------
// One run: the technicians' side, driving the central child.

/// A technician's laptop: identity, config, store, and its driver if online.
struct Tech {
    user: String,
    identity: Identity,
    config: NodeConfig,
    store: Store,
    online: Option<Online>,
    /// Where this technician's changelog was last read up to.
    seen_seq: u64,
    /// Documents still to reach their expected heads here.
    pending: HashMap<String, Vec<String>>,
}

struct Online {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    peers: PeerMap,
}

pub(crate) fn once(args: &ManyArgs) -> anyhow::Result<ExitCode> {
    args.check()?;
    let fixture = args
        .fixture
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(crate::FIXTURE_DEFAULT));
    ensure!(
        fixture.exists(),
        "no fixture at {} (pass --fixture PATH)",
        fixture.display()
    );
    let base = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temporary directory")?;
    let timeout = Duration::from_secs(args.timeout_s);

    let identities = (0..args.techs)
        .map(|index| Identity::generate(&tech_user(index)))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Plan {
        techs: identities
            .iter()
            .enumerate()
            .map(|(index, identity)| PlanTech {
                user: tech_user(index),
                node_id: identity.node_id().to_string(),
            })
            .collect(),
        per_tech: args.per_tech,
        edit_percent: args.edit_percent,
        seed: args.seed,
        fixture,
        connections_max: args.central_connections_max.unwrap_or(args.techs + 64),
    };
    let plan_path = base.path().join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;

    let mut central = CentralProcess::spawn(&plan_path, &base.path().join("central"))?;
    let ready = central.wait_event("ready", timeout)?.1;
    let central_address: SocketAddr = text(&ready, "address")?.parse()?;
    let central_node_id = text(&ready, "node_id")?.to_string();
    let created: Vec<CreatedDoc> = read_json(Path::new(text(&ready, "docs_file")?))?;
    ensure!(
        created.len() == args.techs * args.per_tech,
        "the central made {} documents, expected {}",
        created.len(),
        args.techs * args.per_tech
    );
    let central_create_s = number(&ready, "create_s")?;
    eprintln!(
        "many: central ready at {central_address} with {} documents ({central_create_s:.1} s)",
        created.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-techs")
        .build()
        .context("starting the async runtime")?;
    let mut techs = make_techs(
        args,
        identities,
        base.path(),
        central_address,
        &central_node_id,
    )?;
    for doc in &created {
        techs[doc.tech]
            .pending
            .insert(doc.id.clone(), doc.heads.clone());
    }

    // Prime: every laptop starts empty and receives its documents.
    let perf = args
        .perf_prime_out
        .as_deref()
        .map(|out| Perf::start(central.pid(), out))
        .transpose()?;
    let started = Instant::now();
    start_all(&runtime, &mut techs)?;
    wait_techs(&mut techs, started + timeout, "prime")?;
    let prime_s = started.elapsed().as_secs_f64();
    if let Some(perf) = perf {
        perf.stop()?;
    }
    let prime_bytes = session_bytes(&techs, &central_node_id);
    eprintln!("many: primed {} laptops in {prime_s:.2} s", techs.len());

    // Outage: every laptop goes offline; both sides edit.
    stop_all(&runtime, &mut techs);
    central.send("edit")?;
    let edited = central.wait_event("edited", timeout)?.1;
    let central_edits: HeadsMap = read_json(Path::new(text(&edited, "file")?))?;
    let tech_edits = edit_on_techs(args, &techs, &created)?;
    let expected_at_central = expected_at_central(&central_edits, &tech_edits);
    let both_edited = tech_edits
        .keys()
        .filter(|id| central_edits.contains_key(*id))
        .count();
    let owner: HashMap<&str, usize> = created
        .iter()
        .map(|doc| (doc.id.as_str(), doc.tech))
        .collect();
    for (id, heads) in &central_edits {
        let merged = match tech_edits.get(id) {
            Some(theirs) => union(heads, theirs),
            None => heads.clone(),
        };
        techs[owner[id.as_str()]].pending.insert(id.clone(), merged);
    }
    for tech in &mut techs {
        tech.seen_seq = tech.store.last_seq();
        // A document already in its final state needs nothing from the
        // central (an edit that was a no-op would otherwise wait forever).
        let mut done = Vec::new();
        for (id, expected) in &tech.pending {
            let held = tech.store.doc_index(id)?.map(|index| index.heads);
            if held
                .is_some_and(|heads| sorted(heads.iter().map(hex::encode).collect()) == *expected)
            {
                done.push(id.clone());
            }
        }
        for id in done {
            tech.pending.remove(&id);
        }
    }
    let expect_path = base.path().join("expect.json");
    std::fs::write(&expect_path, serde_json::to_vec(&expected_at_central)?)?;
    central.send(&format!("expect {}", expect_path.display()))?;
    let expecting = central.wait_event("expecting", timeout)?.1;
    let cpu_before = number(&expecting, "cpu_s")?;
    let rss_before_mb = number(&expecting, "rss_peak_mb")?;
    eprintln!(
        "many: outage: the central changed {}, the technicians {} ({both_edited} on both sides)",
        central_edits.len(),
        tech_edits.len()
    );

    // Reconnect: all at once.
    let runner_cpu_before = proc_stats()?.cpu_s;
    let perf = args
        .perf_out
        .as_deref()
        .map(|out| Perf::start(central.pid(), out))
        .transpose()?;
    let started = Instant::now();
    start_all(&runtime, &mut techs)?;
    wait_techs(&mut techs, started + timeout, "reconnect")?;
    let techs_converged_s = started.elapsed().as_secs_f64();
    let central_converged = central
        .wait_event(
            "converged",
            (started + timeout).saturating_duration_since(Instant::now()),
        )?
        .0;
    let central_converged_s = central_converged.duration_since(started).as_secs_f64();
    let converge_s = techs_converged_s.max(central_converged_s);
    let runner_cpu_reconnect_s = proc_stats()?.cpu_s - runner_cpu_before;
    central.send("stats")?;
    let stats = central.wait_event("stats", timeout)?.1;
    if let Some(perf) = perf {
        perf.stop()?;
    }
    eprintln!("many: converged in {converge_s:.2} s");
    wait_in_sync(&techs, &central_node_id);
    let reconnect_bytes = session_bytes(&techs, &central_node_id);

    // Every document, both sides, the same heads.
    let heads_path = base.path().join("central-heads.json");
    central.send(&format!("heads {}", heads_path.display()))?;
    central.wait_event("heads", timeout)?;
    let central_heads: HeadsMap = read_json(&heads_path)?;
    check_all_equal(&techs, &created, &central_heads)?;

    let runner = proc_stats()?;
    stop_all(&runtime, &mut techs);
    for tech in &techs {
        tech.store.close();
    }
    central.quit(timeout)?;

    let docs = created.len();
    let total: u64 = reconnect_bytes.iter().sum();
    let result = ManyResult {
        techs: techs.len(),
        per_tech: args.per_tech,
        docs,
        central_create_s,
        prime_s,
        prime_bytes_per_tech: mean(&prime_bytes),
        central_edited: central_edits.len(),
        techs_edited: tech_edits.len(),
        both_edited,
        converge_s,
        central_converged_s,
        techs_converged_s,
        reconnect_bytes_per_tech: mean(&reconnect_bytes),
        reconnect_bytes_per_tech_max: reconnect_bytes.iter().copied().max().unwrap_or(0),
        reconnect_bytes_total: total,
        central_cpu_reconnect_s: number(&stats, "cpu_s")? - cpu_before,
        central_cpu_total_s: number(&stats, "cpu_s")?,
        central_rss_reconnect_mb: number(&stats, "rss_peak_mb")?,
        central_rss_peak_mb: rss_before_mb.max(number(&stats, "rss_peak_mb")?),
        central_threads: number(&stats, "threads")? as u64,
        central_fds: number(&stats, "fds")? as u64,
        runner_cpu_reconnect_s,
        runner_rss_mb: runner.rss_peak_mb,
        runner_threads: runner.threads,
        runner_fds: runner.fds,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}

fn tech_user(index: usize) -> String {
    format!("tech-{index:04}")
}

fn mean(values: &[u64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<u64>() as f64 / values.len() as f64
}

/// Make every technician's store (in parallel: each init syncs files).
fn make_techs(
    args: &ManyArgs,
    identities: Vec<Identity>,
    base: &Path,
    central_address: SocketAddr,
    central_node_id: &str,
) -> anyhow::Result<Vec<Tech>> {
    let store_config = StoreConfig {
        cache_docs_max: args.tech_cache_docs_max,
        sled_cache_bytes: args.tech_sled_cache_bytes,
        queue_write_sets_max: 64,
        ..StoreConfig::default()
    };
    let dirs: Vec<PathBuf> = (0..identities.len())
        .map(|index| base.join("techs").join(tech_user(index)))
        .collect();
    let chunk = dirs.len().div_ceil(EDIT_THREADS);
    let stores: Vec<Store> = std::thread::scope(|scope| {
        let workers: Vec<_> = dirs
            .chunks(chunk)
            .map(|dirs| {
                let store_config = store_config.clone();
                scope.spawn(move || {
                    dirs.iter()
                        .map(|dir| {
                            std::fs::create_dir_all(dir)?;
                            Store::init(&dir.join("store"), store_config.clone()).with_context(
                                || format!("cannot make a store in {}", dir.display()),
                            )
                        })
                        .collect::<anyhow::Result<Vec<Store>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("store-making thread"))
            .collect::<anyhow::Result<Vec<Vec<Store>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    Ok(identities
        .into_iter()
        .zip(stores)
        .enumerate()
        .map(|(index, (identity, store))| {
            let user = tech_user(index);
            let mut config = NodeConfig::new(NodeRole::Field, user.clone());
            config.sync.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            config.sync.peers = vec![PeerConfig {
                address: central_address.to_string(),
                node_id: central_node_id.to_string(),
                user: None,
            }];
            config.sync.reconnect_delay_ms_min = 200;
            config.sync.reconnect_delay_ms_max = args.reconnect_delay_ms_max;
            Tech {
                user,
                identity,
                config,
                store,
                online: None,
                seen_seq: 0,
                pending: HashMap::new(),
            }
        })
        .collect())
}

/// Bring every laptop online at once: bind all, then let all dial.
fn start_all(runtime: &tokio::runtime::Runtime, techs: &mut [Tech]) -> anyhow::Result<()> {
    let _entered = runtime.enter();
    let mut drivers = Vec::with_capacity(techs.len());
    for tech in techs.iter() {
        let config = DriverConfig::new(&tech.config, &tech.identity)?;
        let driver = Driver::bind(config, tech.store.clone())
            .with_context(|| format!("{}: cannot bind its QUIC endpoint", tech.user))?;
        drivers.push(driver);
    }
    for (tech, driver) in techs.iter_mut().zip(drivers) {
        let (stop, mut stopped) = watch::channel(false);
        let peers = driver.peers();
        let user = tech.user.clone();
        let task = runtime.spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = driver.run(shutdown).await {
                eprintln!("many: {user}: the sync driver stopped: {error}");
            }
        });
        tech.online = Some(Online { stop, task, peers });
    }
    Ok(())
}

/// Take every laptop offline and wait until each driver has stopped.
fn stop_all(runtime: &tokio::runtime::Runtime, techs: &mut [Tech]) {
    let online: Vec<Online> = techs.iter_mut().filter_map(|t| t.online.take()).collect();
    for running in &online {
        let _ = running.stop.send(true);
    }
    runtime.block_on(async {
        for running in online {
            let _ = running.task.await;
        }
    });
}

/// Wait until every technician's pending documents show their expected
/// heads in its changelog.
fn wait_techs(techs: &mut [Tech], deadline: Instant, phase: &str) -> anyhow::Result<()> {
    loop {
        let mut left = 0usize;
        for tech in techs.iter_mut().filter(|tech| !tech.pending.is_empty()) {
            loop {
                let entries = tech
                    .store
                    .changes_since(tech.seen_seq, POLL_PAGE_ENTRIES_MAX)?;
                let Some(last) = entries.last() else { break };
                tech.seen_seq = last.seq;
                for entry in entries {
                    let arrived = tech
                        .pending
                        .get(&entry.id)
                        .is_some_and(|expected| *expected == sorted(entry.heads));
                    if arrived {
                        tech.pending.remove(&entry.id);
                    }
                }
            }
            left += tech.pending.len();
        }
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let stuck: Vec<&Tech> = techs.iter().filter(|t| !t.pending.is_empty()).collect();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            for tech in &stuck {
                let state = tech.online.as_ref().map(|online| online.peers.snapshot());
                let error = state
                    .and_then(|peers| peers.into_iter().find_map(|p| p.last_error))
                    .unwrap_or_else(|| "no error reported".into());
                *errors.entry(error).or_default() += 1;
            }
            let mut examples = Vec::new();
            for tech in stuck.iter().take(3) {
                for (id, expected) in tech.pending.iter().take(1) {
                    let held = tech
                        .store
                        .doc_index(id)?
                        .map(|index| sorted(index.heads.iter().map(hex::encode).collect()));
                    let log: Vec<(u64, Vec<String>)> = tech
                        .store
                        .changes_since(0, 100_000)?
                        .into_iter()
                        .filter(|entry| entry.id == *id)
                        .map(|entry| (entry.seq, entry.heads))
                        .collect();
                    examples.push(format!(
                        "{}: {id} expected {expected:?}, holds {held:?}, seen_seq {} last_seq {}, log {log:?}",
                        tech.user, tech.seen_seq, tech.store.last_seq()
                    ));
                }
            }
            bail!(
                "{phase}: timed out with {left} documents missing on {} of {} laptops; \
                 their last errors: {errors:?}; e.g. {examples:#?}",
                stuck.len(),
                techs.len()
            );
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
}

/// Wait (bounded) until every session reports "in sync", so the byte
/// counters include the session's last frames.
fn wait_in_sync(techs: &[Tech], central_node_id: &str) {
    let deadline = Instant::now() + Duration::from_millis(IN_SYNC_WAIT_MS);
    while Instant::now() < deadline {
        let all = techs.iter().all(|tech| {
            tech.online
                .as_ref()
                .and_then(|online| online.peers.get(central_node_id))
                .is_some_and(|peer| peer.connected && peer.in_sync)
        });
        if all {
            return;
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
    eprintln!("many: not every session reported in sync within {IN_SYNC_WAIT_MS} ms");
}

/// Each technician's UDP bytes (both directions) in its current session.
fn session_bytes(techs: &[Tech], central_node_id: &str) -> Vec<u64> {
    techs
        .iter()
        .map(|tech| {
            tech.online
                .as_ref()
                .and_then(|online| online.peers.get(central_node_id))
                .map_or(0, |peer| peer.udp_bytes_sent + peer.udp_bytes_received)
        })
        .collect()
}

/// Each technician adds a note to `edit_percent`% of its own work orders
/// (at least one). Returns the new heads per document.
fn edit_on_techs(
    args: &ManyArgs,
    techs: &[Tech],
    created: &[CreatedDoc],
) -> anyhow::Result<HeadsMap> {
    let mut own: Vec<Vec<&str>> = vec![Vec::new(); techs.len()];
    for doc in created {
        own[doc.tech].push(doc.id.as_str());
    }
    let per_tech = share(args.per_tech, args.edit_percent);
    let jobs: Vec<(usize, Vec<&str>)> = own
        .into_iter()
        .enumerate()
        .map(|(index, mut ids)| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed ^ (index as u64 + 1));
            ids.shuffle(&mut rng);
            ids.truncate(per_tech);
            (index, ids)
        })
        .collect();
    let chunk = jobs.len().div_ceil(EDIT_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .chunks(chunk)
            .map(|jobs| {
                scope.spawn(move || {
                    let mut heads = HeadsMap::new();
                    for (index, ids) in jobs {
                        let tech = &techs[*index];
                        let who = Actor::new(tech.user.clone(), Role::Technician);
                        for (n, id) in ids.iter().enumerate() {
                            let op = Operation::AddNote {
                                id: format!("{}-outage-{n}", tech.user),
                                at: BENCH_TIME.into(),
                                text: "Checked on site while offline; part ordered.".into(),
                            };
                            let committed = tech
                                .store
                                .update_work_order(id, &who, &op, BENCH_TIME_S)
                                .with_context(|| format!("{}: editing {id}", tech.user))?;
                            heads.insert(id.to_string(), sorted(committed.heads));
                        }
                    }
                    Ok::<_, anyhow::Error>(heads)
                })
            })
            .collect();
        let mut all = HeadsMap::new();
        for worker in workers {
            all.extend(worker.join().expect("edit thread")?);
        }
        Ok(all)
    })
}

/// `percent`% of `count`, at least one.
fn share(count: usize, percent: u32) -> usize {
    (count * percent as usize).div_ceil(100).clamp(1, count)
}

/// What the central must end up with for each document a technician edited.
fn expected_at_central(central: &HeadsMap, techs: &HeadsMap) -> HeadsMap {
    techs
        .iter()
        .map(|(id, theirs)| {
            let merged = match central.get(id) {
                Some(ours) => union(ours, theirs),
                None => theirs.clone(),
            };
            (id.clone(), merged)
        })
        .collect()
}

/// The heads after merging two concurrent edits of one base: both.
fn union(a: &[String], b: &[String]) -> Vec<String> {
    sorted(a.iter().chain(b).cloned().collect())
}

fn sorted(mut heads: Vec<String>) -> Vec<String> {
    heads.sort();
    heads.dedup();
    heads
}

fn check_all_equal(
    techs: &[Tech],
    created: &[CreatedDoc],
    central: &HeadsMap,
) -> anyhow::Result<()> {
    let mut differing = Vec::new();
    for doc in created {
        let at_tech = techs[doc.tech]
            .store
            .doc_index(&doc.id)?
            .map(|index| sorted(index.heads.iter().map(hex::encode).collect()));
        if at_tech.as_ref() != central.get(&doc.id) {
            differing.push(doc.id.as_str());
        }
    }
    ensure!(
        differing.is_empty(),
        "{} documents differ between the central and their laptop, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
    ensure!(
        central.len() == created.len(),
        "the central holds {} documents, expected {}",
        central.len(),
        created.len()
    );
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    ensure!(
        size <= EXCHANGE_FILE_BYTES_MAX,
        "{} is {size} bytes, more than {EXCHANGE_FILE_BYTES_MAX}",
        path.display()
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not what was expected", path.display()))
}

fn text<'a>(value: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    value[key]
        .as_str()
        .with_context(|| format!("no `{key}` in {value}"))
}

fn number(value: &Value, key: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("no `{key}` in {value}"))
}

/// The central child, its stdin, and the events it has printed.
struct CentralProcess {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<(Instant, Value)>,
    /// Events received while waiting for another one.
    early: VecDeque<(Instant, Value)>,
}

impl CentralProcess {
    fn spawn(plan: &Path, dir: &Path) -> anyhow::Result<CentralProcess> {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let mut child = Command::new(exe)
            .arg("many-central")
            .arg("--plan")
            .arg(plan)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the central process")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match (&mut reader)
                    .take(CENTRAL_LINE_BYTES_MAX as u64)
                    .read_line(&mut line)
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let at = Instant::now();
                match serde_json::from_str::<Value>(line.trim()) {
                    Ok(value) => {
                        if sender.send((at, value)).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("many: central said: {}", line.trim()),
                }
            }
        });
        Ok(CentralProcess {
            child,
            stdin,
            events,
            early: VecDeque::new(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, command: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .context("the central process is gone")
    }

    /// The next event named `name` (earlier ones of other names are kept).
    /// An `error` event from the central ends the run.
    fn wait_event(&mut self, name: &str, timeout: Duration) -> anyhow::Result<(Instant, Value)> {
        if let Some(position) = self.early.iter().position(|(_, v)| v["event"] == name) {
            return Ok(self.early.remove(position).expect("position is in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((at, value)) if value["event"] == name => return Ok((at, value)),
                Ok((_, value)) if value["event"] == "error" => {
                    bail!("the central failed: {}", value["message"])
                }
                Ok(other) => self.early.push_back(other),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "the central did not report `{name}` within {} s",
                        timeout.as_secs()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("the central exited ({status}) before reporting `{name}`")
                }
            }
        }
    }

    fn quit(mut self, timeout: Duration) -> anyhow::Result<()> {
        self.send("quit")?;
        self.wait_event("bye", timeout)?;
        let status = self.child.wait()?;
        ensure!(status.success(), "the central exited with {status}");
        Ok(())
    }
}

impl Drop for CentralProcess {
    fn drop(&mut self) {
        // A run that failed half-way must not leave the central running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `perf record` attached to the central for one phase.
struct Perf {
    child: Child,
}

impl Perf {
    fn start(pid: u32, out: &Path) -> anyhow::Result<Perf> {
        let child = Command::new("perf")
            // DWARF unwinding: release builds keep no frame pointers, and
            // the question is who calls the hot functions.
            .args(["record", "-F", "299", "--call-graph", "dwarf,16384", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start `perf record` (apt-get install linux-perf)")?;
        // perf needs a moment to attach to every thread.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Perf { child })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status()
            .context("cannot signal perf")?;
        ensure!(status.success(), "cannot signal perf ({status})");
        self.child.wait()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The central child.

/// Serve as the central: make the users and documents, run the QUIC driver,
/// and answer the runner's commands on stdin, one JSON line each on stdout.
pub(crate) fn central(args: &CentralArgs) -> anyhow::Result<ExitCode> {
    match central_inner(args) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            emit(&json!({"event": "error", "message": format!("{error:#}")}));
            Err(error)
        }
    }
}

fn emit(value: &Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

fn central_inner(args: &CentralArgs) -> anyhow::Result<()> {
    let plan: Plan = read_json(&args.plan)?;
    std::fs::create_dir_all(&args.dir)?;
    let store = Store::init(&args.dir.join("store"), StoreConfig::default())?;
    let identity = Identity::generate("bench-central")?;
    for tech in &plan.techs {
        store.put_user(&User {
            id: tech.user.clone(),
            role: Role::Technician,
            scopes: vec![],
            secret_hash: None,
            enroll_code_hash: None,
            enroll_code_expires_at_ms: None,
            node_ids: vec![tech.node_id.clone()],
            revoked: false,
            created_at: BENCH_TIME.into(),
        })?;
    }
    let started = Instant::now();
    let created = create_docs(&store, &plan)?;
    let create_s = started.elapsed().as_secs_f64();
    let docs_file = args.dir.join("created.json");
    std::fs::write(&docs_file, serde_json::to_vec(&created)?)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-central")
        .build()
        .context("starting the async runtime")?;
    let mut node = NodeConfig::new(NodeRole::Central, "bench-central");
    node.sync.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = DriverConfig::new(&node, &identity)?;
    config.connections_max = plan.connections_max;
    let driver = {
        let _entered = runtime.enter();
        Driver::bind(config, store.clone())?
    };
    let address = driver.local_addr();
    let (stop, mut stopped) = watch::channel(false);
    let task = runtime.spawn(driver.run(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    emit(&json!({
        "event": "ready",
        "address": address.to_string(),
        "node_id": identity.node_id(),
        "docs_file": docs_file.display().to_string(),
        "create_s": create_s,
    }));

    let mut watcher: Option<std::thread::JoinHandle<()>> = None;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let (command, argument) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match command {
            "edit" => {
                let started = Instant::now();
                let heads = edit_on_central(&store, &plan, &created)?;
                let file = args.dir.join("central-edits.json");
                std::fs::write(&file, serde_json::to_vec(&heads)?)?;
                emit(&json!({
                    "event": "edited",
                    "file": file.display().to_string(),
                    "docs": heads.len(),
                    "wall_s": started.elapsed().as_secs_f64(),
                }));
            }
            "expect" => {
                let expected: HeadsMap = read_json(Path::new(argument))?;
                let stats = proc_stats()?;
                reset_peak_rss()?;
                let count = expected.len();
                let store = store.clone();
                let from_seq = store.last_seq();
                watcher = Some(std::thread::spawn(move || {
                    watch_until(&store, from_seq, expected);
                }));
                emit(&json!({
                    "event": "expecting",
                    "docs": count,
                    "cpu_s": stats.cpu_s,
                    "rss_peak_mb": stats.rss_peak_mb,
                }));
            }
            "stats" => {
                let stats = proc_stats()?;
                emit(&json!({
                    "event": "stats",
                    "cpu_s": stats.cpu_s,
                    "rss_peak_mb": stats.rss_peak_mb,
                    "threads": stats.threads,
                    "fds": stats.fds,
                }));
            }
            "heads" => {
                let heads = all_heads(&store)?;
                std::fs::write(argument, serde_json::to_vec(&heads)?)?;
                emit(&json!({"event": "heads", "docs": heads.len()}));
            }
            "quit" => break,
            other => bail!("unknown command `{other}`"),
        }
    }
    let _ = stop.send(true);
    runtime.block_on(task)??;
    if let Some(watcher) = watcher {
        let _ = watcher.join();
    }
    store.close();
    emit(&json!({"event": "bye"}));
    Ok(())
}

/// The plan's documents: fixture work orders, cycled, each assigned to one
/// technician. Many creates are kept in flight so they share flushes.
fn create_docs(store: &Store, plan: &Plan) -> anyhow::Result<Vec<CreatedDoc>> {
    let total = plan.techs.len() * plan.per_tech;
    let reader = open_jsonl(&plan.fixture)
        .with_context(|| format!("cannot open {}", plan.fixture.display()))?;
    let mut templates: Vec<NewWorkOrder> = Vec::new();
    for line in reader.lines().take(total) {
        let parsed: FixtureWorkOrder = serde_json::from_str(&line?)?;
        templates.push(parsed.into_new_work_order(BENCH_TIME));
    }
    ensure!(!templates.is_empty(), "the fixture is empty");
    let operator = Actor::new("operator", Role::Operator);
    let mut ids = Vec::with_capacity(total);
    let mut in_flight = VecDeque::new();
    for index in 0..total {
        let cycle = index / templates.len();
        let mut new = templates[index % templates.len()].clone();
        new.id = None;
        if cycle > 0 {
            new.number = format!("{}-{cycle}", new.number);
        }
        let tech = index % plan.techs.len();
        new.assignee = Some(plan.techs[tech].user.clone());
        let (id, pending) = store.submit_create(&operator, &new, BENCH_TIME_S)?;
        ids.push((id, tech));
        in_flight.push_back(pending);
        if in_flight.len() >= CREATE_IN_FLIGHT_MAX {
            in_flight.pop_front().expect("not empty").wait()?;
        }
    }
    for pending in in_flight {
        pending.wait()?;
    }
    let tech_of: HashMap<String, usize> = ids.into_iter().collect();
    let mut created = Vec::with_capacity(total);
    let mut after = 0;
    loop {
        let entries = store.changes_since(after, POLL_PAGE_ENTRIES_MAX)?;
        let Some(last) = entries.last() else { break };
        after = last.seq;
        for entry in entries {
            if let Some(&tech) = tech_of.get(&entry.id) {
                created.push(CreatedDoc {
                    id: entry.id,
                    tech,
                    heads: sorted(entry.heads),
                });
            }
        }
    }
    Ok(created)
}

/// The office changes `edit_percent`% of all work orders: a note on half of
/// them, a new title and priority on the other half.
fn edit_on_central(store: &Store, plan: &Plan, created: &[CreatedDoc]) -> anyhow::Result<HeadsMap> {
    let mut ids: Vec<&str> = created.iter().map(|doc| doc.id.as_str()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed);
    ids.shuffle(&mut rng);
    ids.truncate(share(ids.len(), plan.edit_percent));
    let operator = Actor::new("operator", Role::Operator);
    let chunk = ids.len().div_ceil(EDIT_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .chunks(chunk)
            .enumerate()
            .map(|(worker, ids)| {
                let operator = &operator;
                scope.spawn(move || {
                    let mut heads = HeadsMap::new();
                    for (n, id) in ids.iter().enumerate() {
                        let op = if n % 2 == 0 {
                            Operation::AddNote {
                                id: format!("office-{worker}-{n}"),
                                at: BENCH_TIME.into(),
                                text: "Customer called: please bring the spare valve.".into(),
                            }
                        } else {
                            // A title no document has yet: an edit that
                            // changes nothing would make no change at all.
                            Operation::EditOperatorFields(OperatorPatch {
                                title: Some(format!("Revisited by the office ({worker}-{n})")),
                                priority: Some(Priority::Urgent),
                                ..OperatorPatch::default()
                            })
                        };
                        let committed = store
                            .update_work_order(id, operator, &op, BENCH_TIME_S)
                            .with_context(|| format!("central: editing {id}"))?;
                        heads.insert(id.to_string(), sorted(committed.heads));
                    }
                    Ok::<_, anyhow::Error>(heads)
                })
            })
            .collect();
        let mut all = HeadsMap::new();
        for worker in workers {
            all.extend(worker.join().expect("edit thread")?);
        }
        Ok(all)
    })
}

/// Follow the changelog from `from_seq` until every expected document shows
/// its expected heads, then say `converged`.
fn watch_until(store: &Store, from_seq: u64, mut expected: HeadsMap) {
    let mut seen = from_seq;
    while !expected.is_empty() {
        match store.changes_since(seen, POLL_PAGE_ENTRIES_MAX) {
            Ok(entries) if entries.is_empty() => {
                std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS / 4));
            }
            Ok(entries) => {
                for entry in entries {
                    seen = entry.seq;
                    if expected.get(&entry.id) == Some(&sorted(entry.heads)) {
                        expected.remove(&entry.id);
                    }
                }
            }
            Err(error) => {
                emit(&json!({"event": "error", "message": error.to_string()}));
                return;
            }
        }
    }
    emit(&json!({"event": "converged"}));
}

/// Every document's heads (hex, sorted).
fn all_heads(store: &Store) -> anyhow::Result<HeadsMap> {
    let mut heads = HeadsMap::new();
    let mut after: Option<String> = None;
    loop {
        let ids = store.doc_ids(after.as_deref(), POLL_PAGE_ENTRIES_MAX)?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        for id in ids {
            if let Some(index) = store.doc_index(&id)? {
                heads.insert(id, sorted(index.heads.iter().map(hex::encode).collect()));
            }
        }
        after = Some(last);
    }
    Ok(heads)
}

// ---------------------------------------------------------------------------
// This process's figures, from /proc.

struct ProcStats {
    cpu_s: f64,
    rss_peak_mb: f64,
    threads: u64,
    fds: u64,
}

fn proc_stats() -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .context("cannot read /proc/self/stat (these figures need Linux)")?;
    // Fields after the command name, which ends with the last ')':
    // state is field 3, utime 14, stime 15.
    let rest = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .context("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc/self/stat")?
            .parse::<u64>()? as f64)
    };
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    let cpu_s = (ticks(11)? + ticks(12)?) / per_second;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/self/status"))
    };
    let fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(ProcStats {
        cpu_s,
        rss_peak_mb: field("VmHWM:")? as f64 / 1024.0,
        threads: field("Threads:")?,
        fds,
    })
}

/// Start counting peak RSS afresh (Linux: `5` to `clear_refs`).
fn reset_peak_rss() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("cannot reset the peak RSS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_rounds_up_and_stays_in_range() {
        assert_eq!(share(50, 10), 5);
        assert_eq!(share(5, 10), 1);
        assert_eq!(share(3, 100), 3);
        assert_eq!(share(10_000, 10), 1_000);
    }

    #[test]
    fn union_of_concurrent_heads_is_sorted_and_deduplicated() {
        let a = vec!["bb".to_string()];
        let b = vec!["aa".to_string(), "bb".to_string()];
        assert_eq!(union(&a, &b), vec!["aa".to_string(), "bb".to_string()]);
    }

    #[test]
    fn proc_stats_reads_this_process() {
        let stats = proc_stats().unwrap();
        assert!(stats.rss_peak_mb > 0.0);
        assert!(stats.threads >= 1);
        assert!(stats.fds >= 3);
    }
}
