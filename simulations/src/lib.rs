//! Deterministic partition testing of the sans-IO sync engine (the
//! simulation issue), in the spirit of FoundationDB's simulator and
//! TigerBeetle's VOPR.
//!
//! Why: offline-first sync is only trustworthy once it has survived every
//! ordering of partitions, crashes and reconnects, not only the ones a
//! person thought of. The harness drives the *real* engine
//! (`fieldsync_node::sync::Session`), the real documents and access policy,
//! and the engine's in-memory store (`MemStore`, which models flushes and
//! crashes), from one seeded RNG on one thread with a virtual clock. A seed
//! is therefore a complete, replayable test case: `--seed N` reruns it byte
//! for byte, and `--seeds N` sweeps.
//!
//! Layout: [`world`] holds nodes, links and faults; [`workload`] what users
//! do; [`invariants`] what must hold; [`trace`] the event lines; [`model`]
//! the harness's own memory of acknowledged writes and refusals.

mod config;
mod invariants;
mod model;
mod trace;
mod workload;
mod world;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use config::{
    Broken, ConfigError, SimConfig, UnknownBroken, CENTRALS_MAX, STEPS_MAX, TECHS_MAX,
};
pub use model::Stats;
pub use world::Sim;

/// The property that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// Connected, idle nodes hold the same heads for every shared document.
    Convergence,
    /// An acknowledged (flushed) write disappeared.
    NoLostWrite,
    /// A technician holds a document its user may not see.
    Visibility,
    /// A central shows a value only a tampered laptop wrote.
    Forbidden,
    /// A changelog has a gap, or its durable part is not a prefix.
    Changelog,
    /// A durable checkpoint runs ahead of the durable state.
    Checkpoint,
    /// Replicas of one document derive different statuses.
    DerivedStatus,
    /// Honest nodes broke the sync protocol (a session error).
    Protocol,
    /// An office judged another office's acknowledged write as the
    /// changes of the device that relayed it, and compensated it.
    OfficeChangeJudged,
    /// A store's reader index lacks an entry a full scan of its changelog
    /// finds a technician's device may see (`--slow-checks`).
    ReaderIndex,
    /// The final heal did not settle.
    Liveness,
    /// Engine or harness code panicked.
    Panic,
}

impl Invariant {
    pub fn as_str(self) -> &'static str {
        match self {
            Invariant::Convergence => "convergence",
            Invariant::NoLostWrite => "no-lost-write",
            Invariant::Visibility => "visibility",
            Invariant::Forbidden => "no-forbidden-change",
            Invariant::Changelog => "gap-free-changelog",
            Invariant::Checkpoint => "checkpoint-behind-durable-state",
            Invariant::DerivedStatus => "same-derived-status",
            Invariant::Protocol => "no-protocol-error",
            Invariant::OfficeChangeJudged => "no-office-change-compensated",
            Invariant::ReaderIndex => "reader-index-agrees-with-scan",
            Invariant::Liveness => "liveness",
            Invariant::Panic => "no-panic",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invariant that did not hold, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub invariant: Invariant,
    pub detail: String,
}

impl Failure {
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Failure {
        Failure {
            invariant,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant `{}` violated: {}",
            self.invariant, self.detail
        )
    }
}

/// What one seed did.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub failure: Option<Failure>,
    /// Trace lines (events) produced.
    pub events: u64,
    /// Virtual time at the end, in ms.
    pub end_ms: u64,
    /// SHA-256 of the whole trace: equal digests, equal runs.
    pub digest: String,
    /// The last trace lines (shown with a failure).
    pub tail: Vec<String>,
    /// Every trace line, when `keep_trace` was set.
    pub trace: Option<Vec<String>>,
    pub stats: Stats,
}

impl RunReport {
    /// A failure as a person reads it: seed, invariant, the trace's tail.
    pub fn failure_text(&self) -> Option<String> {
        let failure = self.failure.as_ref()?;
        let mut text = format!("seed {} FAILED: {failure}\nreplay: cargo run -p fieldsync-sim --release -- --seed {}\nlast {} events:\n", self.seed, self.seed, self.tail.len());
        for line in &self.tail {
            text.push_str(line);
            text.push('\n');
        }
        Some(text)
    }
}

/// Run one seed to the end (or to its first failure). Panics inside the
/// engine or the harness are caught and reported as failures of their own.
pub fn run(cfg: SimConfig) -> Result<RunReport, ConfigError> {
    cfg.validate()?;
    let seed = cfg.seed;
    let mut sim = Sim::new(cfg);
    let outcome = catch_unwind(AssertUnwindSafe(|| sim.run()));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic with a non-text payload".to_string());
            Some(Failure::new(Invariant::Panic, message))
        }
    };
    if let Some(failure) = &failure {
        let text = format!("FAILED {failure}");
        sim.log(&text);
    }
    Ok(RunReport {
        seed,
        failure,
        events: sim.trace.lines(),
        end_ms: sim.now_ms - crate::workload::CLOCK_ZERO_MS,
        digest: sim.trace.digest_hex(),
        tail: sim.trace.tail(),
        trace: sim.trace.take_full(),
        stats: sim.stats.clone(),
    })
}
