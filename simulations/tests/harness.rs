//! The harness as a whole: replays are exact, it catches a deliberately
//! broken engine, the seeds that found bugs pass, and CI's fixed sweep.
//!
//! The sweep size is `FIELDSYNC_SIM_SEEDS` (default below, sized for CI in a
//! debug build); the long sweep is the release binary, see README.md.

use fieldsync_sim::{run, Broken, Invariant, RunReport, SimConfig};

/// Seeds in CI's fixed sweep (debug build).
const CI_SEEDS: u64 = 100;

fn run_seed(cfg: SimConfig) -> RunReport {
    run(cfg).expect("valid configuration")
}

#[test]
fn the_same_seed_gives_a_byte_identical_trace() {
    let mut cfg = SimConfig::new(7);
    cfg.keep_trace = true;
    let first = run_seed(cfg.clone());
    let second = run_seed(cfg.clone());
    assert!(first.failure.is_none(), "{:?}", first.failure_text());
    let (a, b) = (first.trace.expect("kept"), second.trace.expect("kept"));
    assert!(a.len() > 500, "a real run, {} lines", a.len());
    assert_eq!(a.join("\n").into_bytes(), b.join("\n").into_bytes());
    assert_eq!(first.digest, second.digest);
    cfg.seed = 8;
    assert_ne!(
        run_seed(cfg).digest,
        first.digest,
        "another seed is another run"
    );
}

/// Runs seeds until one fails; returns the seed and the failure.
fn first_failure(broken: Broken, seeds: u64) -> Option<(u64, Invariant, String)> {
    (0..seeds).find_map(|seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.broken = broken;
        let report = run_seed(cfg);
        report.failure.map(|f| (seed, f.invariant, f.detail))
    })
}

#[test]
fn a_checkpoint_durable_before_its_documents_is_caught() {
    let found = first_failure(Broken::CheckpointBeforeFlush, 5);
    let (seed, invariant, detail) = found.expect("caught within 5 seeds");
    assert_eq!(invariant, Invariant::Checkpoint, "seed {seed}: {detail}");
}

#[test]
fn an_egress_filter_switched_off_is_caught() {
    let found = first_failure(Broken::EgressFilterOff, 5);
    let (seed, invariant, detail) = found.expect("caught within 5 seeds");
    // The office then sends technicians documents they may not see, and
    // takes their forged values without compensation.
    assert!(
        matches!(invariant, Invariant::Visibility | Invariant::Forbidden),
        "seed {seed}: {invariant} {detail}"
    );
}

/// Seeds that found engine bugs in the default world (one central, one
/// laptop per user), with the bug; `engine_regressions.rs` pins each bug as
/// a scenario. Earlier finds came from worlds with two centrals and shared
/// laptops, whose known gaps README.md lists.
const FOUND_SEEDS: &[(u64, &str)] = &[
    (6, "DocBatch for a page that completed meanwhile"),
    (
        14,
        "second reassignment within grace refused the first technician's pending changes",
    ),
    (
        103,
        "central lost an unflushed assignment it had served; the laptop kept the document",
    ),
    (
        184,
        "write queued ahead of a revocation's purge (harness bookkeeping)",
    ),
    (
        252,
        "unknown-document DocSync settled a pending whole-document request",
    ),
    (262, "late Revoked cleared a refreshed revocation record"),
    (
        4528,
        "a Revoke lost with the connection was never sent again",
    ),
    (1786, "a revoke rested on a reassignment the crash undid"),
    (7249, "a revoke rested on a reassignment the crash undid"),
    (
        3101,
        "a change queued for a missing dependency was lost between messages",
    ),
    (
        3102,
        "a change queued for a missing dependency was lost between messages",
    ),
    (
        1756,
        "a change queued for a missing dependency was lost between messages",
    ),
    (
        3894,
        "a late Revoked cleared the revocation of a copy sent since",
    ),
    (
        8109,
        "a late Revoked cleared the revocation of a copy sent since",
    ),
    (153, "refusing a want rested on an unflushed reassignment"),
    (
        3563,
        "a page withheld a document on an unflushed reassignment",
    ),
    (
        6364,
        "a page withheld a document on an unflushed reassignment",
    ),
    (
        4726,
        "a page waited for changes the laptop's purge had destroyed",
    ),
    (
        1974,
        "a record page passed a version whose newer write a crash then lost",
    ),
];

#[test]
fn the_seeds_that_found_bugs_pass() {
    for &(seed, bug) in FOUND_SEEDS {
        let report = run_seed(SimConfig::one_central(seed));
        assert!(
            report.failure.is_none(),
            "seed {seed} ({bug}):\n{}",
            report.failure_text().unwrap_or_default()
        );
    }
}

#[test]
fn an_office_change_judged_as_its_relays_is_caught() {
    let found = first_failure(Broken::VouchersOff, 20);
    let (seed, invariant, detail) = found.expect("caught within 20 seeds");
    assert_eq!(
        invariant,
        Invariant::OfficeChangeJudged,
        "seed {seed}: {detail}"
    );
}

/// Seeds found in the worlds with several devices per user and one or two
/// centrals (issue 16), with the options that found them. They replay as
/// regressions on this harness revision; engine and QUIC tests pin each
/// behaviour itself (simulations/README.md, "What it found").
const WORLD_SEEDS: &[(u64, World, &str)] = &[
    (28, World::SharedLaptops, PER_USER_RECORD),
    (52, World::SharedLaptops, PER_USER_RECORD),
    (66, World::SharedLaptops, PER_USER_RECORD),
    (132, World::SharedLaptops, PER_USER_RECORD),
    (147, World::SharedLaptops, PER_USER_RECORD),
    (225, World::SharedLaptops, PER_USER_RECORD),
    (292, World::SharedLaptops, PER_USER_RECORD),
    (300, World::SharedLaptops, PER_USER_RECORD),
    (313, World::SharedLaptops, PER_USER_RECORD),
    (323, World::SharedLaptops, PER_USER_RECORD),
    (347, World::SharedLaptops, PER_USER_RECORD),
    (363, World::SharedLaptops, PER_USER_RECORD),
    (
        55,
        World::SharedLaptops,
        "a refusal's reason longer than a frame allows closed the session",
    ),
    (
        292,
        World::MixedSevenTechs,
        "a copy one central sent after the other revoked it stayed until the next hello",
    ),
    (
        118,
        World::SharedLaptops,
        "a write held by two devices revoked one after the other was never excused",
    ),
    (
        18,
        World::TwoCentrals,
        "a device's purged copy left its heads remembered: the other central's echo of them was never offered",
    ),
    (
        182,
        World::TwoCentrals,
        "a device purged on one central's word was never sent the document again by the other",
    ),
    (
        44,
        World::TwoCentrals,
        "a device that purged a document mid-reconciliation waited for it for ever",
    ),
    (
        156,
        World::TwoCentrals,
        "an office waited for heads a device announced and then purged on the other central's word",
    ),
    (
        117,
        World::TwoCentrals,
        "an office merged a technician's forged change apart from the other office's compensation on top of it",
    ),
    (
        194,
        World::TwoCentrals,
        "two offices compensated each other's edits relayed through a device for ever",
    ),
    (
        227,
        World::Mixed,
        "a prime page's echoed entry hid a later entry of the office's own change",
    ),
    (
        25,
        World::Mixed,
        "a device waited for a document whole from its sibling, which never sends one",
    ),
    (
        563,
        World::Mixed,
        "a device kept a work order its sole central had lost",
    ),
    (
        209,
        World::Mixed,
        "a device waited for a document its sibling announced and then purged on a central's word",
    ),
    (
        788,
        World::Mixed,
        "a push applied in part showed a forged value without the compensation behind it",
    ),
    (
        61,
        World::Mixed,
        "an office's newer vouchers replaced the one covering what the device held, so its relayed change was judged as the device's",
    ),
    (
        3056,
        World::Mixed,
        "a central offered again a creation still queued, crashed, and with another office no one revoked the device's copy",
    ),
    (
        3976,
        World::Mixed,
        "an office compensated a change another office had vouched for, before it knew that office's key",
    ),
    (
        144,
        World::Mixed,
        "an office judged a device's message applied in part, before the vouched head covering an office's change in it had arrived",
    ),
    (
        416,
        World::Mixed,
        "an office that had not learned the other's key vouched for nothing to a device with no sibling, and the other compensated its relayed edit",
    ),
    (
        142,
        World::Mixed,
        "a device's oldest vouchers fell off the end while the newest covered less: an office's change went unvouched",
    ),
    (
        2327,
        World::Mixed,
        "a device took a purged document in again without its own change and did not announce it: an office had announced those heads before the purge",
    ),
    (
        153,
        World::Mixed,
        "an office refused a device's change while it lacked the document; the device's reply when it was ahead went with a crash, and both checkpoints had passed it",
    ),
    (
        697,
        World::Mixed,
        "an office refused a relay whose vouched head waited for a change a bloom filter kept back, and the conversation ended with both sides apart",
    ),
    (
        1772,
        World::Mixed,
        "a device's answer while it waited for an office's missing changes carried other office changes without their vouchers: the other office judged them as the device's",
    ),
    (
        9929,
        World::Mixed,
        "the same echo after a purge, between a device and the central that had not revoked it",
    ),
    (
        2423,
        World::Mixed,
        "a device purged and took in again a document it had announced, without the heads announced: the office waited for them for ever",
    ),
];

const PER_USER_RECORD: &str =
    "the first of a user's laptops to confirm a purge cleared the user's record; the other kept the document";

#[derive(Clone, Copy, Debug)]
enum World {
    /// `--shared-laptops`
    SharedLaptops,
    /// `--centrals 0 --shared-laptops --techs 7`
    MixedSevenTechs,
    /// `--centrals 2`
    TwoCentrals,
    /// `--centrals 0 --shared-laptops`
    Mixed,
}

#[test]
fn the_seeds_found_with_several_devices_and_centrals_pass() {
    for &(seed, world, bug) in WORLD_SEEDS {
        let config = match world {
            World::SharedLaptops => SimConfig {
                shared_laptops: true,
                ..SimConfig::one_central(seed)
            },
            World::MixedSevenTechs => SimConfig {
                shared_laptops: true,
                centrals: None,
                techs: 7,
                ..SimConfig::new(seed)
            },
            World::TwoCentrals => SimConfig {
                centrals: Some(2),
                ..SimConfig::one_central(seed)
            },
            World::Mixed => SimConfig {
                shared_laptops: true,
                centrals: None,
                ..SimConfig::new(seed)
            },
        };
        let report = run_seed(config);
        assert!(
            report.failure.is_none(),
            "seed {seed} ({world:?}: {bug}):\n{}",
            report.failure_text().unwrap_or_default()
        );
    }
}

/// The default world: one or two centrals per seed, some users with two
/// devices (issue 16).
#[test]
fn ci_sweep() {
    sweep(SimConfig::new);
}

/// The same sweep in the world before issue 16: one central, one device
/// per user, where most of the engine's seeds were found.
#[test]
fn ci_sweep_one_central() {
    sweep(SimConfig::one_central);
}

/// `FIELDSYNC_SIM_SEEDS` seeds (default `CI_SEEDS`) of the world `world`
/// makes, from seed 1,000, on every core.
fn sweep(world: fn(u64) -> SimConfig) {
    let seeds: u64 = std::env::var("FIELDSYNC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CI_SEEDS);
    let jobs = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8) as u64;
    let results: Vec<(u64, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|job| {
                scope.spawn(move || {
                    let (mut events, mut failures) = (0, Vec::new());
                    // Seeds from 1,000 on: 0..1,000 are the ones read while
                    // developing, which every change was already run on.
                    for seed in (1_000 + job..1_000 + seeds).step_by(jobs as usize) {
                        let report = run_seed(world(seed));
                        events += report.events;
                        failures.extend(report.failure_text());
                    }
                    (events, failures)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a sweep worker"))
            .collect()
    });
    let events: u64 = results.iter().map(|(e, _)| e).sum();
    let failures: Vec<String> = results.into_iter().flat_map(|(_, f)| f).collect();
    assert!(events > seeds * 500, "runs did real work: {events} events");
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
