//! What one simulated run looks like: sizes, length, faults to plant.
//!
//! Everything a run does follows from this value and its seed, so a failing
//! run is replayed by giving the same command line again.

use std::fmt;
use std::str::FromStr;

/// Most technician laptops in one world: the harness looks for orderings,
/// not for scale, and a small world keeps every seed fast.
pub const TECHS_MAX: usize = 32;
/// Most central nodes: the design's central tier is one or two machines.
pub const CENTRALS_MAX: usize = 2;
/// Longest run, in steps, that one seed may ask for.
pub const STEPS_MAX: u64 = 10_000_000;

/// A deliberately broken variant, to prove the harness can fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Broken {
    /// The real engine and store.
    #[default]
    Nothing,
    /// `MemStore::checkpoint_before_flush`: a checkpoint is durable before
    /// the documents it covers.
    CheckpointBeforeFlush,
    /// The central's driver treats technicians as office peers, so the
    /// engine's egress filter (and the field-rule check) never applies.
    EgressFilterOff,
    /// Offices sign nothing (no `signer`), so every office change a device
    /// relays is judged as the device's own.
    VouchersOff,
}

impl Broken {
    pub const ALL: [Broken; 4] = [
        Broken::Nothing,
        Broken::CheckpointBeforeFlush,
        Broken::EgressFilterOff,
        Broken::VouchersOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Broken::Nothing => "nothing",
            Broken::CheckpointBeforeFlush => "checkpoint-before-flush",
            Broken::EgressFilterOff => "egress-filter-off",
            Broken::VouchersOff => "vouchers-off",
        }
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--broken` named something this build does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown broken variant `{0}`; expected one of: nothing, checkpoint-before-flush, egress-filter-off, vouchers-off")]
pub struct UnknownBroken(pub String);

impl FromStr for Broken {
    type Err = UnknownBroken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Broken::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| UnknownBroken(s.to_string()))
    }
}

/// A configuration the harness refuses to run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("techs must be 1 to {TECHS_MAX}, got {0}")]
    Techs(usize),
    #[error("centrals must be 1 to {CENTRALS_MAX}, got {0}")]
    Centrals(usize),
    #[error("steps must be 1 to {STEPS_MAX}, got {0}")]
    Steps(u64),
    #[error("grace_ms must be 1 ms to one day, got {0}")]
    Grace(u64),
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Technician laptops at the start (some users have two).
    pub techs: usize,
    /// Central nodes; `None` lets the seed choose one or two.
    pub centrals: Option<usize>,
    /// Give some users two laptops, which then also sync with each other.
    pub shared_laptops: bool,
    /// Random steps before the final heal.
    pub steps: u64,
    /// The reassignment grace period, short so runs cross it often.
    pub grace_ms: u64,
    pub broken: Broken,
    /// Expensive invariant checks after every step (no-loss on every node,
    /// derived status on every converged pair, full checkpoint re-checks).
    pub slow_checks: bool,
    /// Keep every trace line (for `--trace` and the determinism test);
    /// otherwise only the tail is kept, and a digest of all of it.
    pub keep_trace: bool,
    /// Trace lines shown with a failure.
    pub tail_lines: usize,
}

impl SimConfig {
    /// The default world: one or two centrals, as the seed chooses, and
    /// some users with two devices (issue 16).
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            techs: 5,
            centrals: None,
            shared_laptops: true,
            steps: 1_500,
            grace_ms: 5_000,
            broken: Broken::Nothing,
            slow_checks: cfg!(feature = "slow-checks"),
            keep_trace: false,
            tail_lines: 50,
        }
    }

    /// The world before issue 16: one central, one device per user
    /// (`--centrals 1 --one-device`). The seeds found in it replay here.
    pub fn one_central(seed: u64) -> SimConfig {
        SimConfig {
            centrals: Some(1),
            shared_laptops: false,
            ..SimConfig::new(seed)
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.techs == 0 || self.techs > TECHS_MAX {
            return Err(ConfigError::Techs(self.techs));
        }
        if let Some(centrals) = self.centrals {
            if centrals == 0 || centrals > CENTRALS_MAX {
                return Err(ConfigError::Centrals(centrals));
            }
        }
        if self.steps == 0 || self.steps > STEPS_MAX {
            return Err(ConfigError::Steps(self.steps));
        }
        if self.grace_ms == 0 || self.grace_ms > 24 * 3600 * 1000 {
            return Err(ConfigError::Grace(self.grace_ms));
        }
        Ok(())
    }
}
