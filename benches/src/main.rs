//! The workload runner: `cargo run --release -p fieldsync-bench -- w3 --n 10000`.
//!
//! Why a runner and not a test: the workloads measure wall time, flushes and
//! peak memory of release builds on real disks, which a test suite on a busy
//! CI machine cannot judge. The workloads and the peers' figures are in
//! `../shared/bench/README.md`.
//!
//! Each run happens in a fresh child process (this same binary, re-run with a
//! hidden subcommand) so that its peak RSS (`VmHWM`) belongs to that run
//! alone. The parent prints one line per run and a median line, and writes
//! everything to `bench-results/<workload>.json` at the workspace root.
//!
//! `stages` times each step of W3's write path alone on one thread (read,
//! parse, build, and the save/load alternatives), to show where time goes.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use clap::{Args, Parser, Subcommand};
use fieldsync_node::import::{import_jsonl, open_jsonl, ImportOptions};
use fieldsync_node::store::{Store, StoreConfig};
use serde_json::json;

mod gateway_bench;
mod ingest_bench;
mod many;
mod records_bench;
mod report;
mod sync_bench;
mod vouch_bench;
mod webhooks_bench;

/// The fixture, relative to this crate's directory (the workspace root's
/// sibling `shared/bench`).
const FIXTURE_DEFAULT: &str = "../../shared/bench/wo-10000-42.jsonl.gz";

#[derive(Parser)]
#[command(version, about = "fieldsync workload runner (W1, W2, W3)")]
struct Cli {
    #[command(subcommand)]
    command: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// W1: prime a fresh node over QUIC (two node processes).
    W1(sync_bench::SyncRunArgs),
    /// W2: reconnect after 10 edits (two node processes).
    W2(sync_bench::SyncRunArgs),
    /// W3: import N work orders into a fresh store, durably.
    W3(RunArgs),
    /// Every workload implemented so far.
    All(RunArgs),
    /// One W3 run in this process; prints its result as one JSON line.
    #[command(hide = true)]
    W3Once(OnceArgs),
    /// Where W3's CPU time goes: each stage timed alone, on one thread.
    Stages(StagesArgs),
    /// W1/W2 setup: A's store and both identities (one process).
    #[command(hide = true)]
    SyncSetup(sync_bench::SetupArgs),
    /// W1/W2: node A or B in this process.
    #[command(hide = true)]
    SyncNode(sync_bench::NodeArgs),
    /// Many technicians reconnecting at once after an outage.
    Many(many::ManyArgs),
    /// One many-technicians run (the technicians' side).
    #[command(hide = true)]
    ManyOnce(many::ManyArgs),
    /// The central of a many-technicians run.
    #[command(hide = true)]
    ManyCentral(many::CentralArgs),
    /// Changes feed throughput: one reader over 100,000 changes.
    Feed(gateway_bench::FeedArgs),
    /// REST create/read latency percentiles under 64 concurrent clients.
    Rest(gateway_bench::RestArgs),
    /// Records written durably in write sets, beside raw sled; then the feed.
    Records(records_bench::RecordsArgs),
    /// Webhook delivery: changes/s delivered, write-to-delivery latency, and
    /// the feed reader's own rate over the same changes.
    Webhooks(webhooks_bench::WebhooksArgs),
    /// ERP ingest over gRPC TableStream: rows/s, Write latency, and the
    /// records rate of the same run.
    Ingest(ingest_bench::IngestArgs),
    /// Vouchers: an office's signature and its check, per voucher, and the
    /// bytes they add to priming a device that may relay.
    Vouch(vouch_bench::VouchArgs),
}

#[derive(Args)]
struct StagesArgs {
    /// Fixture lines to time.
    #[arg(long, default_value_t = 2_000)]
    n: u64,
    /// The fixture (JSONL, gzip or plain).
    #[arg(long)]
    fixture: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Documents to import (the first N fixture lines).
    #[arg(long, default_value_t = 10_000)]
    n: u64,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    #[command(flatten)]
    once: Tunables,
}

#[derive(Args, Clone)]
struct Tunables {
    /// The fixture (JSONL, gzip or plain).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Document-building threads (default: available parallelism).
    #[arg(long)]
    threads: Option<usize>,
    /// Creates queued and not yet acknowledged, at most.
    #[arg(long)]
    in_flight_max: Option<usize>,
    /// Where the fresh stores are made (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct OnceArgs {
    #[arg(long)]
    n: u64,
    #[command(flatten)]
    tunables: Tunables,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Node processes log only when asked (RUST_LOG), to stderr: e.g.
    // `RUST_LOG=fieldsync_node::quic::conn=trace` shows every frame sent.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let outcome = match cli.command {
        Workload::W1(args) => sync_bench::w1(&args).map(|()| ExitCode::SUCCESS),
        Workload::W2(args) => sync_bench::w2(&args).map(|()| ExitCode::SUCCESS),
        Workload::SyncSetup(args) => sync_bench::setup(&args).map(|()| ExitCode::SUCCESS),
        Workload::SyncNode(args) => sync_bench::node(&args).map(|()| ExitCode::SUCCESS),
        Workload::W3(args) => w3(&args).map(|()| ExitCode::SUCCESS),
        Workload::All(args) => report::all(&args),
        Workload::Many(args) => many::many(&args).map(|_| ExitCode::SUCCESS),
        Workload::ManyOnce(args) => many::once(&args),
        Workload::ManyCentral(args) => many::central(&args),
        Workload::Feed(args) => gateway_bench::feed(&args).map(|()| ExitCode::SUCCESS),
        Workload::Rest(args) => gateway_bench::rest(&args).map(|()| ExitCode::SUCCESS),
        Workload::Records(args) => records_bench::records(&args).map(|()| ExitCode::SUCCESS),
        Workload::Ingest(args) => ingest_bench::ingest(&args).map(|()| ExitCode::SUCCESS),
        Workload::Webhooks(args) => webhooks_bench::webhooks(&args).map(|()| ExitCode::SUCCESS),
        Workload::W3Once(args) => w3_once(&args),
        Workload::Stages(args) => stages(&args).map(|()| ExitCode::SUCCESS),
        Workload::Vouch(args) => vouch_bench::vouch(&args).map(|()| ExitCode::SUCCESS),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

fn fixture_path(tunables: &Tunables) -> PathBuf {
    tunables
        .fixture
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE_DEFAULT))
}

fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("bench-results")
}

/// One run's figures, as the child reports them.
struct RunResult {
    wall_s: f64,
    docs_per_s: f64,
    flushes: u64,
    rss_mb: f64,
}

fn w3(args: &RunArgs) -> anyhow::Result<()> {
    ensure!(args.n > 0, "--n must be at least 1");
    ensure!(args.runs > 0, "--runs must be at least 1");
    let fixture = fixture_path(&args.once);
    ensure!(
        fixture.exists(),
        "no fixture at {} (pass --fixture PATH)",
        fixture.display()
    );
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let mut command = Command::new(&exe);
        command
            .arg("w3-once")
            .arg("--n")
            .arg(args.n.to_string())
            .arg("--fixture")
            .arg(&fixture);
        if let Some(threads) = args.once.threads {
            command.arg("--threads").arg(threads.to_string());
        }
        if let Some(in_flight_max) = args.once.in_flight_max {
            command
                .arg("--in-flight-max")
                .arg(in_flight_max.to_string());
        }
        if let Some(dir) = &args.once.dir {
            command.arg("--dir").arg(dir);
        }
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .context("cannot start a benchmark run")?;
        ensure!(
            output.status.success(),
            "run {run} failed ({})",
            output.status
        );
        let result = parse_run(&output.stdout).with_context(|| format!("run {run}'s output"))?;
        println!(
            "workload=W3 n={} run={run} wall_s={:.3} docs_per_s={:.0} flushes={} rss_mb={:.1}",
            args.n, result.wall_s, result.docs_per_s, result.flushes, result.rss_mb
        );
        runs.push(result);
    }
    let median = |pick: fn(&RunResult) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (wall_s, flushes, rss_mb) = (
        median(|r| r.wall_s),
        median(|r| r.flushes as f64),
        median(|r| r.rss_mb),
    );
    let docs_per_s = args.n as f64 / wall_s;
    println!(
        "workload=W3 n={} stat=median runs={} wall_s={wall_s:.3} docs_per_s={docs_per_s:.0} \
         flushes={flushes:.0} rss_mb={rss_mb:.1}",
        args.n, args.runs
    );
    let report = json!({
        "workload": "W3",
        "n": args.n,
        "fixture": fixture.display().to_string(),
        "threads": args.once.threads,
        "in_flight_max": args.once.in_flight_max,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "runs": runs.iter().map(|r| json!({
            "wall_s": r.wall_s,
            "docs_per_s": r.docs_per_s,
            "flushes": r.flushes,
            "rss_mb": r.rss_mb,
        })).collect::<Vec<_>>(),
        "median": {
            "wall_s": wall_s,
            "docs_per_s": docs_per_s,
            "flushes": flushes,
            "rss_mb": rss_mb,
        },
    });
    let dir = results_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("w3.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

fn parse_run(stdout: &[u8]) -> anyhow::Result<RunResult> {
    let line = std::str::from_utf8(stdout)?
        .lines()
        .last()
        .context("no output")?;
    let value: serde_json::Value = serde_json::from_str(line)?;
    let number = |key: &str| {
        value[key]
            .as_f64()
            .with_context(|| format!("no `{key}` in {line}"))
    };
    Ok(RunResult {
        wall_s: number("wall_s")?,
        docs_per_s: number("docs_per_s")?,
        flushes: number("flushes")? as u64,
        rss_mb: number("rss_mb")?,
    })
}

/// One W3 run: a fresh store, the first N fixture lines through
/// `import_jsonl`, the clock stopped when the last one is acknowledged.
fn w3_once(args: &OnceArgs) -> anyhow::Result<ExitCode> {
    let fixture = fixture_path(&args.tunables);
    let parent = match &args.tunables.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("cannot make a temporary store directory")?;
    let store = Store::init(&parent.path().join("store"), StoreConfig::default())?;
    let mut options = ImportOptions {
        lines_max: Some(args.n),
        ..ImportOptions::default()
    };
    if let Some(threads) = args.tunables.threads {
        options.threads = threads;
    }
    if let Some(in_flight_max) = args.tunables.in_flight_max {
        options.in_flight_max = in_flight_max;
    }
    let reader =
        open_jsonl(&fixture).with_context(|| format!("cannot open {}", fixture.display()))?;
    let flushes_before = store.flush_count();
    let mut acked = 0u64;
    let started = Instant::now();
    let report = import_jsonl(&store, reader, options, |_, _| acked += 1)?;
    let wall_s = started.elapsed().as_secs_f64();
    let flushes = store.flush_count() - flushes_before;
    if report.created != args.n || acked != args.n {
        bail!(
            "expected {} documents, created {} (acknowledged {acked}); does the fixture hold {} lines?",
            args.n,
            report.created,
            args.n
        );
    }
    ensure!(
        store.last_seq() == args.n,
        "last seq {} after {} creates",
        store.last_seq(),
        args.n
    );
    store.close();
    let result = json!({
        "n": args.n,
        "wall_s": wall_s,
        "docs_per_s": args.n as f64 / wall_s,
        "flushes": flushes,
        "rss_mb": peak_rss_mb()?,
    });
    println!("{result}");
    Ok(ExitCode::SUCCESS)
}

/// This process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status (peak RSS needs Linux)")?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib / 1024.0)
}

/// Time each stage of the W3 write path on one thread, per document: read
/// and parse a line, build the document (`WorkOrderDoc::create`, which
/// includes `save_nocompress`), compare with a compressed `save`, and load
/// the stored bytes back.
fn stages(args: &StagesArgs) -> anyhow::Result<()> {
    use std::io::BufRead;

    use fieldsync_node::doc::WorkOrderDoc;
    use fieldsync_schemas::fixture::FixtureWorkOrder;
    use fieldsync_schemas::Actor;

    let fixture = args
        .fixture
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE_DEFAULT));
    let reader =
        open_jsonl(&fixture).with_context(|| format!("cannot open {}", fixture.display()))?;
    let started = Instant::now();
    let lines: Vec<String> = reader
        .lines()
        .take(args.n as usize)
        .collect::<Result<_, _>>()?;
    let read_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let parsed: Vec<FixtureWorkOrder> = lines
        .iter()
        .map(|line| serde_json::from_str(line))
        .collect::<Result<_, _>>()?;
    let parse_s = started.elapsed().as_secs_f64();
    let news: Vec<_> = parsed
        .into_iter()
        .map(|line| line.into_new_work_order("2026-01-01T00:00:00Z"))
        .collect();
    let actor = automerge_actor();
    let who = Actor::system();
    let started = Instant::now();
    let mut built = Vec::with_capacity(news.len());
    for new in &news {
        let id = new.id.clone().unwrap_or_default();
        built.push(WorkOrderDoc::create(&actor, &who, &id, new, 1)?);
    }
    let create_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let saved: Vec<Vec<u8>> = built.iter().map(|(doc, _)| doc.save()).collect();
    let save_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let uncompressed: Vec<Vec<u8>> = built
        .iter()
        .map(|(doc, _)| doc.automerge().save_nocompress())
        .collect();
    let save_nocompress_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let changes: Vec<Vec<u8>> = built
        .iter()
        .map(|(doc, _)| doc.automerge().save_after(&[]))
        .collect();
    let save_after_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (_, edit) in &built {
        WorkOrderDoc::load(&edit.change_bytes, &actor)?;
    }
    let load_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for bytes in &changes {
        WorkOrderDoc::load(bytes, &actor)?;
    }
    let load_change_s = started.elapsed().as_secs_f64();
    let n = news.len() as f64;
    let per_doc_us = |seconds: f64| seconds / n * 1e6;
    let mean_bytes = |all: &[Vec<u8>]| all.iter().map(Vec::len).sum::<usize>() as f64 / n;
    let stored: Vec<Vec<u8>> = built
        .iter()
        .map(|(_, edit)| edit.change_bytes.clone())
        .collect();
    println!(
        "stages n={} read_gunzip_us={:.1} parse_us={:.1} create_us={:.1} load_stored_us={:.1} \
         stored_bytes={:.0}",
        news.len(),
        per_doc_us(read_s),
        per_doc_us(parse_s),
        per_doc_us(create_s),
        per_doc_us(load_s),
        mean_bytes(&stored),
    );
    println!(
        "alternatives save_us={:.1} save_bytes={:.0} save_nocompress_us={:.1} \
         save_nocompress_bytes={:.0} save_after_us={:.1} save_after_bytes={:.0} \
         load_change_us={:.1}",
        per_doc_us(save_s),
        mean_bytes(&saved),
        per_doc_us(save_nocompress_s),
        mean_bytes(&uncompressed),
        per_doc_us(save_after_s),
        mean_bytes(&changes),
        per_doc_us(load_change_s),
    );
    Ok(())
}

fn automerge_actor() -> automerge::ActorId {
    automerge::ActorId::from(vec![7u8; 16])
}
