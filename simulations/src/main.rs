//! `fieldsync-sim`: run one seed (`--seed N`) or sweep many (`--seeds N`).
//!
//! A failure prints the seed, the invariant and the last events, and the
//! process exits non-zero; rerunning with `--seed N` replays it exactly.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use fieldsync_sim::{run, Broken, RunReport, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "fieldsync-sim",
    about = "Deterministic simulation of the fieldsync sync engine"
)]
struct Args {
    /// Replay one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep this many seeds, starting at --first-seed.
    #[arg(long)]
    seeds: Option<u64>,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Technician laptops.
    #[arg(long, default_value_t = 5)]
    techs: usize,
    /// Central nodes: 1 or 2, or 0 (the default) to let each seed choose.
    #[arg(long, default_value_t = 0)]
    centrals: usize,
    /// Give some users two laptops, which also sync with each other (the
    /// default; kept so older command lines still read).
    #[arg(long, conflicts_with = "one_device")]
    shared_laptops: bool,
    /// One laptop per user: with `--centrals 1`, the world before issue 16.
    #[arg(long)]
    one_device: bool,
    /// Random steps per seed before the final heal.
    #[arg(long, default_value_t = 1_500)]
    steps: u64,
    /// Reassignment grace period, in virtual ms.
    #[arg(long, default_value_t = 5_000)]
    grace_ms: u64,
    /// Run a deliberately broken variant: checkpoint-before-flush,
    /// egress-filter-off or vouchers-off.
    #[arg(long, default_value = "nothing")]
    broken: Broken,
    /// Run the expensive invariant checks after every step.
    #[arg(long)]
    slow_checks: bool,
    /// Print the whole trace of a single seed.
    #[arg(long)]
    trace: bool,
    /// Trace lines shown with a failure.
    #[arg(long, default_value_t = 50)]
    tail: usize,
    /// Seeds run in parallel during a sweep.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Keep sweeping after a failure (and list every failing seed).
    #[arg(long)]
    keep_going: bool,
}

/// `println!` that does not panic when stdout is a closed pipe (`| head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn config(args: &Args, seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(seed);
    cfg.techs = args.techs;
    cfg.centrals = (args.centrals != 0).then_some(args.centrals);
    cfg.shared_laptops = !args.one_device;
    cfg.steps = args.steps;
    cfg.grace_ms = args.grace_ms;
    cfg.broken = args.broken;
    cfg.slow_checks |= args.slow_checks;
    cfg.tail_lines = args.tail;
    cfg
}

fn one(args: &Args, seed: u64) -> anyhow::Result<ExitCode> {
    let mut cfg = config(args, seed);
    cfg.keep_trace = args.trace;
    let started = Instant::now();
    let report = run(cfg).context("bad configuration")?;
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(trace) = &report.trace {
        let mut out = std::io::stdout().lock();
        for line in trace {
            // A closed pipe (`| head`) ends the listing, not the process.
            if writeln!(out, "{line}").is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    if let Some(text) = report.failure_text() {
        eprintln!("{text}");
        return Ok(ExitCode::FAILURE);
    }
    let s = &report.stats;
    out!(
        "seed {seed}: ok, {} events in {:.2}s ({:.0} events/s), virtual time {}s, trace sha256 {}",
        report.events,
        elapsed,
        report.events as f64 / elapsed.max(1e-9),
        report.end_ms / 1000,
        report.digest
    );
    out!(
        "  {} docs, {} ops ({} refused), {} forbidden edits, {} violations, {} connections, {} frames ({} bytes), {} crashes, {} wipes, {} revoked users, {} purges, {} acknowledged writes ({} excused)",
        s.docs, s.ops_ok, s.ops_refused, s.forbidden_edits, s.violations, s.connections, s.frames, s.frame_bytes, s.crashes, s.wipes, s.revoked_users, s.purges, s.acked_writes, s.excused_writes
    );
    Ok(ExitCode::SUCCESS)
}

fn sweep(args: &Args, count: u64) -> anyhow::Result<ExitCode> {
    if args.jobs == 0 || args.jobs > 256 {
        bail!("--jobs must be 1 to 256");
    }
    config(args, args.first_seed)
        .validate()
        .context("bad configuration")?;
    let next = AtomicU64::new(0);
    let events = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let progress_every = (count / 20).max(1);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let seed = args.first_seed + index;
                    let Ok(report) = run(config(args, seed)) else {
                        break;
                    };
                    events.fetch_add(report.events, Ordering::Relaxed);
                    if report.failure.is_some() {
                        if let Some(text) = report.failure_text() {
                            eprintln!("{text}");
                        }
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(report);
                        if !args.keep_going {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of(progress_every) {
                        let elapsed = started.elapsed().as_secs_f64();
                        eprintln!(
                            "  {finished}/{count} seeds, {:.0} events/s",
                            events.load(Ordering::Relaxed) as f64 / elapsed.max(1e-9)
                        );
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    let ran = done.load(Ordering::Relaxed);
    let events = events.load(Ordering::Relaxed);
    out!(
        "{ran} seeds ({}..{}), {} failures, {events} events in {elapsed:.1}s: {:.0} events/s, {:.1} seeds/s (jobs={}, steps={}, techs={}, broken={})",
        args.first_seed,
        args.first_seed + count - 1,
        failures.len(),
        events as f64 / elapsed.max(1e-9),
        ran as f64 / elapsed.max(1e-9),
        args.jobs,
        args.steps,
        args.techs,
        args.broken
    );
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut seeds: Vec<String> = failures
        .iter()
        .map(|r| {
            format!(
                "{} ({})",
                r.seed,
                r.failure.as_ref().map_or("?", |f| f.invariant.as_str())
            )
        })
        .collect();
    seeds.sort();
    out!("failing seeds: {}", seeds.join(", "));
    Ok(ExitCode::FAILURE)
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    match (args.seed, args.seeds) {
        (Some(seed), _) => one(&args, seed),
        (None, Some(count)) if count > 0 => sweep(&args, count),
        (None, Some(_)) => bail!("--seeds must be at least 1"),
        (None, None) => one(&args, 0),
    }
}
