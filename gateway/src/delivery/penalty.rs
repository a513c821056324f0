//! Webhook retry scheduling: when to try a failing hook again, and when to
//! stop trying.
//!
//! Why a penalty and not a per-event retry count: a hook receives a stream of
//! events, and when its endpoint is down every queued event fails for the same
//! reason. Scheduling the *hook* rather than each event keeps one pending
//! attempt per hook, delivers the backlog in order once the endpoint is back,
//! and spares a struggling receiver a retry storm.
//!
//! Why by severity: a 5xx or 429 is usually a passing overload (retry soon), a
//! timeout or a refused connection suggests the receiver is down (wait
//! longer), and a 4xx or a redirect is a misconfiguration that no retry fixes
//! quickly (wait longest). Each consecutive failure doubles the remembered
//! penalty, up to `penalty_max_ms`, so a dead endpoint costs one attempt an
//! hour. A success halves the remembered penalty instead of clearing it: a
//! hook that flaps resumes at a high penalty, one that stays healthy forgets.
//!
//! Why disabling: `410 Gone` is the receiver saying "stop", and a hook that
//! has failed for `disable_after_ms` (default 5 days) is abandoned; both need
//! an explicit [`enable`] to resume. An API call asking for delivery now
//! ([`reset`]) clears the penalty but neither re-enables the hook nor forgets
//! when its failures began, so poking a broken hook cannot keep it alive.
//!
//! This module is a pure state machine: no clock, no IO, no randomness. The
//! caller passes `now_ms`, stores the returned [`Health`] (as JSON) and calls
//! [`due`] to pick the hooks to attempt.

use serde::{Deserialize, Serialize};

const SECOND_MS: u64 = 1_000;
const HOUR_MS: u64 = 3_600 * SECOND_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// The knobs of the retry schedule; every duration is in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PenaltyPolicy {
    /// Base penalty for a 5xx or 429 answer.
    pub(crate) server_error_base_ms: u64,
    /// Base penalty for an attempt that timed out.
    pub(crate) timeout_base_ms: u64,
    /// Base penalty for a connection that could not be made, a destination
    /// refused by the SSRF rules, or any other failure without an answer.
    pub(crate) connect_failed_base_ms: u64,
    /// Base penalty for a 3xx, a 4xx other than 410 and 429, or an answer
    /// outside 1xx–5xx.
    pub(crate) client_error_base_ms: u64,
    /// The penalty never grows past this.
    pub(crate) penalty_max_ms: u64,
    /// A hook failing without a success for this long is disabled.
    pub(crate) disable_after_ms: u64,
    /// A `Retry-After` longer than this is cut to this.
    pub(crate) retry_after_max_ms: u64,
}

impl Default for PenaltyPolicy {
    fn default() -> PenaltyPolicy {
        PenaltyPolicy {
            server_error_base_ms: 10 * SECOND_MS,
            timeout_base_ms: 30 * SECOND_MS,
            connect_failed_base_ms: 60 * SECOND_MS,
            client_error_base_ms: 180 * SECOND_MS,
            penalty_max_ms: HOUR_MS,
            disable_after_ms: 5 * DAY_MS,
            retry_after_max_ms: HOUR_MS,
        }
    }
}

/// How one delivery attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver answered something other than 2xx. `retry_after_ms` is
    /// its `Retry-After`, honoured on 429 and 503 only. A 2xx passed here
    /// anyway counts as delivered.
    Status {
        status: u16,
        retry_after_ms: Option<u64>,
    },
    /// No answer before the deadline.
    Timeout,
    /// The connection (DNS, TCP, TLS) could not be made.
    ConnectFailed,
    /// The destination is refused by the SSRF rules.
    Refused,
    /// Any other failure without an answer.
    Failed,
}

/// What the gateway remembers about one hook between attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Health {
    /// Consecutive failures since the last success or reset.
    pub(crate) failures: u32,
    /// The remembered penalty level: the base of the next failure's doubling.
    pub(crate) penalty_ms: u64,
    pub(crate) next_attempt_at_ms: u64,
    /// The first failure of the current run; kept by [`reset`], so the
    /// disable clock counts from the first failure, not the last API call.
    pub(crate) failing_since_ms: Option<u64>,
    pub(crate) disabled: Option<Disabled>,
    pub(crate) last_success_at_ms: Option<u64>,
}

/// Why a hook is no longer attempted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Disabled {
    /// The receiver answered `410 Gone`.
    Gone { at_ms: u64 },
    /// Every attempt since `since_ms` failed, for at least `disable_after_ms`.
    FailingTooLong { at_ms: u64, since_ms: u64 },
}

/// The severity classes of a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    ServerError,
    Timeout,
    ConnectFailed,
    ClientError,
    Gone,
}

/// `None` for a success, else the failure's class. 2xx is success; every
/// other answer, 3xx included, is a failure.
fn classify(outcome: &Outcome) -> Option<Failure> {
    match outcome {
        Outcome::Delivered => None,
        Outcome::Status { status, .. } => match status {
            200..=299 => None,
            410 => Some(Failure::Gone),
            429 | 500..=599 => Some(Failure::ServerError),
            // 3xx, other 4xx, and answers no HTTP server should give
            // (1xx as final, >= 600): a misconfiguration, not an overload.
            _ => Some(Failure::ClientError),
        },
        Outcome::Timeout => Some(Failure::Timeout),
        Outcome::ConnectFailed | Outcome::Refused | Outcome::Failed => Some(Failure::ConnectFailed),
    }
}

fn base_ms(failure: Failure, policy: &PenaltyPolicy) -> u64 {
    match failure {
        Failure::ServerError => policy.server_error_base_ms,
        Failure::Timeout => policy.timeout_base_ms,
        Failure::ConnectFailed => policy.connect_failed_base_ms,
        Failure::ClientError | Failure::Gone => policy.client_error_base_ms,
    }
}

/// The receiver's `Retry-After`, capped, where it is honoured (429, 503).
fn retry_after_ms(outcome: &Outcome, policy: &PenaltyPolicy) -> Option<u64> {
    match outcome {
        Outcome::Status {
            status: 429 | 503,
            retry_after_ms: Some(retry_after_ms),
        } => Some((*retry_after_ms).min(policy.retry_after_max_ms)),
        _ => None,
    }
}

/// The hook's health after an attempt that ended in `outcome` at `now_ms`.
/// A disabled hook stays as it is: an attempt already in flight when it was
/// disabled must not bring it back; only [`enable`] does.
pub(crate) fn after_attempt(
    health: &Health,
    outcome: &Outcome,
    now_ms: u64,
    policy: &PenaltyPolicy,
) -> Health {
    if health.disabled.is_some() {
        return health.clone();
    }
    match classify(outcome) {
        None => after_success(health, now_ms, policy),
        Some(failure) => after_failure(health, outcome, failure, now_ms, policy),
    }
}

fn after_success(health: &Health, now_ms: u64, policy: &PenaltyPolicy) -> Health {
    assert!(health.disabled.is_none());
    let halved_ms = health.penalty_ms / 2;
    let penalty_ms = if halved_ms < policy.server_error_base_ms {
        0
    } else {
        halved_ms
    };
    assert!(penalty_ms <= health.penalty_ms);
    Health {
        failures: 0,
        penalty_ms,
        // The backlog queued while failing goes out at once.
        next_attempt_at_ms: now_ms,
        failing_since_ms: None,
        disabled: None,
        last_success_at_ms: Some(now_ms),
    }
}

fn after_failure(
    health: &Health,
    outcome: &Outcome,
    failure: Failure,
    now_ms: u64,
    policy: &PenaltyPolicy,
) -> Health {
    assert!(health.disabled.is_none());
    let doubled_ms = health.penalty_ms.saturating_mul(2);
    let penalty_ms = policy
        .penalty_max_ms
        .min(base_ms(failure, policy).max(doubled_ms));
    let delay_ms = match retry_after_ms(outcome, policy) {
        Some(retry_after_ms) => penalty_ms.max(retry_after_ms),
        None => penalty_ms,
    };
    let since_ms = health.failing_since_ms.unwrap_or(now_ms);
    // A clock that went backwards gives 0 elapsed, never an underflow.
    let failing_ms = now_ms.saturating_sub(since_ms);
    let disabled = if failure == Failure::Gone {
        Some(Disabled::Gone { at_ms: now_ms })
    } else if failing_ms >= policy.disable_after_ms {
        Some(Disabled::FailingTooLong {
            at_ms: now_ms,
            since_ms,
        })
    } else {
        None
    };
    let next = Health {
        failures: health.failures.saturating_add(1),
        penalty_ms,
        next_attempt_at_ms: now_ms.saturating_add(delay_ms),
        failing_since_ms: Some(since_ms),
        disabled,
        last_success_at_ms: health.last_success_at_ms,
    };
    assert!(next.failures > 0);
    assert!(next.penalty_ms <= policy.penalty_max_ms);
    assert!(next.next_attempt_at_ms >= now_ms);
    next
}

/// An API call asked for delivery now: the penalty and the failure count are
/// cleared and the hook is due at `now_ms`. A disabled hook stays disabled
/// (see [`enable`]), and `failing_since_ms` is kept so the disable clock
/// still counts from the first failure.
pub(crate) fn reset(health: &Health, now_ms: u64) -> Health {
    Health {
        failures: 0,
        penalty_ms: 0,
        next_attempt_at_ms: now_ms,
        failing_since_ms: health.failing_since_ms,
        disabled: health.disabled.clone(),
        last_success_at_ms: health.last_success_at_ms,
    }
}

/// An operator re-enabled the hook: as [`reset`], and the hook is no longer
/// disabled and starts a fresh disable clock (else the next failure of a hook
/// disabled for failing too long would disable it again at once).
pub(crate) fn enable(health: &Health, now_ms: u64) -> Health {
    let mut next = reset(health, now_ms);
    next.disabled = None;
    next.failing_since_ms = None;
    next
}

/// Whether the hook should be attempted at `now_ms`.
pub(crate) fn due(health: &Health, now_ms: u64) -> bool {
    health.disabled.is_none() && health.next_attempt_at_ms <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000 * DAY_MS;
    const S: u64 = SECOND_MS;

    fn status(status: u16) -> Outcome {
        Outcome::Status {
            status,
            retry_after_ms: None,
        }
    }

    fn retry_after(status: u16, retry_after_ms: u64) -> Outcome {
        Outcome::Status {
            status,
            retry_after_ms: Some(retry_after_ms),
        }
    }

    /// A hook in a run of `failures` failures that began at `since_ms`.
    fn failing(failures: u32, penalty_ms: u64, since_ms: u64) -> Health {
        Health {
            failures,
            penalty_ms,
            next_attempt_at_ms: NOW,
            failing_since_ms: Some(since_ms),
            disabled: None,
            last_success_at_ms: Some(1),
        }
    }

    /// The health expected after a fresh hook's first failure at `NOW`.
    fn first(penalty_s: u64, delay_s: u64) -> Health {
        Health {
            failures: 1,
            penalty_ms: penalty_s * S,
            next_attempt_at_ms: NOW + delay_s * S,
            failing_since_ms: Some(NOW),
            disabled: None,
            last_success_at_ms: None,
        }
    }

    /// The health expected after a success at `NOW`.
    fn recovered(penalty_ms: u64) -> Health {
        Health {
            failures: 0,
            penalty_ms,
            next_attempt_at_ms: NOW,
            failing_since_ms: None,
            disabled: None,
            last_success_at_ms: Some(NOW),
        }
    }

    struct Case {
        name: &'static str,
        before: Health,
        outcome: Outcome,
        now_ms: u64,
        after: Health,
    }

    fn case(name: &'static str, before: Health, outcome: Outcome, after: Health) -> Case {
        Case {
            name,
            before,
            outcome,
            now_ms: NOW,
            after,
        }
    }

    fn cases_by_class() -> Vec<Case> {
        let new = Health::default;
        let (timeout, connect) = (Outcome::Timeout, Outcome::ConnectFailed);
        let (refused, failed) = (Outcome::Refused, Outcome::Failed);
        let gone = Health {
            disabled: Some(Disabled::Gone { at_ms: NOW }),
            ..first(180, 180)
        };
        vec![
            case("delivered", new(), Outcome::Delivered, recovered(0)),
            case("200 as status", new(), status(200), recovered(0)),
            case("204 as status", new(), status(204), recovered(0)),
            case("500", new(), status(500), first(10, 10)),
            case("502", new(), status(502), first(10, 10)),
            case("503 bare", new(), status(503), first(10, 10)),
            case("429 bare", new(), status(429), first(10, 10)),
            case("400", new(), status(400), first(180, 180)),
            case("404", new(), status(404), first(180, 180)),
            case("301", new(), status(301), first(180, 180)),
            case("304", new(), status(304), first(180, 180)),
            case("100", new(), status(100), first(180, 180)),
            case("600", new(), status(600), first(180, 180)),
            case("timeout", new(), timeout, first(30, 30)),
            case("connect failed", new(), connect, first(60, 60)),
            case("refused by ssrf", new(), refused, first(60, 60)),
            case("failed", new(), failed, first(60, 60)),
            case("410 disables", new(), status(410), gone),
        ]
    }

    fn cases_retry_after() -> Vec<Case> {
        let new = Health::default;
        let ra = |status, retry_after_s: u64| retry_after(status, retry_after_s.saturating_mul(S));
        let since = NOW - HOUR_MS;
        let grown = Health {
            next_attempt_at_ms: NOW + 320 * S,
            ..failing(6, 320 * S, since)
        };
        vec![
            case("429 ra 120s", new(), ra(429, 120), first(10, 120)),
            case("503 ra 120s", new(), ra(503, 120), first(10, 120)),
            case("503 ra < penalty", new(), ra(503, 5), first(10, 10)),
            case("429 ra capped", new(), ra(429, 7_200), first(10, 3_600)),
            case("429 ra max", new(), ra(429, u64::MAX), first(10, 3_600)),
            case("500 ra ignored", new(), ra(500, 120), first(10, 10)),
            case("404 ra ignored", new(), ra(404, 900), first(180, 180)),
            case(
                "ra < grown",
                failing(5, 160 * S, since),
                ra(503, 120),
                grown,
            ),
        ]
    }

    fn cases_growth_and_decay() -> Vec<Case> {
        let since = NOW - HOUR_MS;
        let before = |failures, penalty_s: u64| failing(failures, penalty_s * S, since);
        let after = |failures, penalty_s: u64| Health {
            next_attempt_at_ms: NOW + penalty_s * S,
            ..failing(failures, penalty_s * S, since)
        };
        let ok = Outcome::Delivered;
        vec![
            case("doubles", before(3, 40), status(500), after(4, 80)),
            case("base wins", before(1, 10), status(404), after(2, 180)),
            case(
                "double wins",
                before(4, 160),
                Outcome::Timeout,
                after(5, 320),
            ),
            case("capped", before(9, 2_560), status(500), after(10, 3_600)),
            case(
                "stays capped",
                before(10, 3_600),
                status(500),
                after(11, 3_600),
            ),
            case(
                "decay halves",
                before(10, 3_600),
                ok.clone(),
                recovered(1_800 * S),
            ),
            case(
                "decay to base",
                before(2, 20),
                status(201),
                recovered(10 * S),
            ),
            case("decay below base", before(2, 15), ok.clone(), recovered(0)),
            case("decay from zero", Health::default(), ok, recovered(0)),
        ]
    }

    fn cases_disable_and_edges() -> Vec<Case> {
        let five_days = 5 * DAY_MS;
        let gone = Health {
            disabled: Some(Disabled::Gone { at_ms: 7 }),
            ..failing(2, 20 * S, NOW - HOUR_MS)
        };
        let too_long = Disabled::FailingTooLong {
            at_ms: NOW,
            since_ms: NOW - five_days,
        };
        vec![
            case(
                "5 days exactly",
                failing(100, HOUR_MS, NOW - five_days),
                status(500),
                Health {
                    next_attempt_at_ms: NOW + HOUR_MS,
                    disabled: Some(too_long),
                    ..failing(101, HOUR_MS, NOW - five_days)
                },
            ),
            case(
                "just under 5 days",
                failing(100, HOUR_MS, NOW - five_days + 1),
                Outcome::Timeout,
                Health {
                    next_attempt_at_ms: NOW + HOUR_MS,
                    ..failing(101, HOUR_MS, NOW - five_days + 1)
                },
            ),
            case(
                "410 beats too long",
                failing(100, HOUR_MS, NOW - 6 * DAY_MS),
                status(410),
                Health {
                    next_attempt_at_ms: NOW + HOUR_MS,
                    disabled: Some(Disabled::Gone { at_ms: NOW }),
                    ..failing(101, HOUR_MS, NOW - 6 * DAY_MS)
                },
            ),
            case(
                "disabled ignores success",
                gone.clone(),
                Outcome::Delivered,
                gone.clone(),
            ),
            case("disabled ignores failure", gone.clone(), status(500), gone),
            case(
                "clock went back",
                failing(3, 40 * S, NOW + DAY_MS),
                status(500),
                Health {
                    next_attempt_at_ms: NOW + 80 * S,
                    ..failing(4, 80 * S, NOW + DAY_MS)
                },
            ),
        ]
    }

    fn cases_saturation() -> Vec<Case> {
        let huge = Health {
            failures: u32::MAX,
            penalty_ms: u64::MAX,
            next_attempt_at_ms: u64::MAX,
            failing_since_ms: Some(u64::MAX),
            disabled: None,
            last_success_at_ms: None,
        };
        vec![
            Case {
                name: "now at u64::MAX",
                before: Health::default(),
                outcome: retry_after(429, u64::MAX),
                now_ms: u64::MAX,
                after: Health {
                    failures: 1,
                    penalty_ms: 10 * S,
                    next_attempt_at_ms: u64::MAX,
                    failing_since_ms: Some(u64::MAX),
                    disabled: None,
                    last_success_at_ms: None,
                },
            },
            case(
                "everything at max",
                huge.clone(),
                Outcome::Failed,
                Health {
                    penalty_ms: HOUR_MS,
                    next_attempt_at_ms: NOW + HOUR_MS,
                    ..huge.clone()
                },
            ),
            case(
                "success from max",
                huge,
                Outcome::Delivered,
                Health {
                    penalty_ms: u64::MAX / 2,
                    ..recovered(0)
                },
            ),
        ]
    }

    #[test]
    fn after_attempt_table() {
        let policy = PenaltyPolicy::default();
        let tables = [
            cases_by_class(),
            cases_retry_after(),
            cases_growth_and_decay(),
            cases_disable_and_edges(),
            cases_saturation(),
        ];
        let mut count = 0;
        for case in tables.iter().flatten() {
            let got = after_attempt(&case.before, &case.outcome, case.now_ms, &policy);
            assert_eq!(got, case.after, "case {:?}", case.name);
            count += 1;
        }
        assert!(count >= 20, "{count} rows");
    }

    #[test]
    fn failures_double_to_the_cap_then_successes_decay_to_zero() {
        let policy = PenaltyPolicy::default();
        let failures_s: [u64; 12] = [
            10, 20, 40, 80, 160, 320, 640, 1_280, 2_560, 3_600, 3_600, 3_600,
        ];
        let mut health = Health::default();
        let mut now_ms = NOW;
        for (index, expected_s) in failures_s.iter().enumerate() {
            assert!(due(&health, now_ms));
            health = after_attempt(&health, &status(503), now_ms, &policy);
            assert_eq!(health.penalty_ms, expected_s * S, "failure {index}");
            assert_eq!(health.next_attempt_at_ms, now_ms + expected_s * S);
            assert_eq!(health.failing_since_ms, Some(NOW));
            assert!(!due(&health, now_ms + expected_s * S - 1));
            now_ms = health.next_attempt_at_ms;
        }
        assert_eq!(health.failures, 12);
        let successes_ms: [u64; 10] = [
            1_800_000, 900_000, 450_000, 225_000, 112_500, 56_250, 28_125, 14_062, 0, 0,
        ];
        for (index, expected_ms) in successes_ms.iter().enumerate() {
            health = after_attempt(&health, &Outcome::Delivered, now_ms, &policy);
            assert_eq!(health.penalty_ms, *expected_ms, "success {index}");
            assert_eq!(health.failures, 0);
            assert!(due(&health, now_ms));
            now_ms += S;
        }
    }

    #[test]
    fn a_hook_failing_soon_after_recovery_resumes_high() {
        let policy = PenaltyPolicy::default();
        let capped = failing(10, HOUR_MS, NOW - HOUR_MS);
        let recovered = after_attempt(&capped, &Outcome::Delivered, NOW, &policy);
        assert_eq!(recovered.penalty_ms, 1_800 * S);
        let again = after_attempt(&recovered, &status(500), NOW + S, &policy);
        assert_eq!(again.penalty_ms, HOUR_MS);
        assert_eq!(again.failures, 1);
        assert_eq!(again.failing_since_ms, Some(NOW + S));
    }

    #[test]
    fn a_hook_failing_for_five_days_is_disabled() {
        let policy = PenaltyPolicy::default();
        let start_ms = NOW;
        let mut health = Health::default();
        let mut now_ms = start_ms;
        // One attempt an hour at most: 5 days is at most 120 + a few attempts.
        for _ in 0..200 {
            if health.disabled.is_some() {
                break;
            }
            assert!(due(&health, now_ms));
            health = after_attempt(&health, &Outcome::ConnectFailed, now_ms, &policy);
            now_ms = health.next_attempt_at_ms;
        }
        let Some(Disabled::FailingTooLong { at_ms, since_ms }) = health.disabled else {
            panic!("not disabled: {health:?}");
        };
        assert_eq!(since_ms, start_ms);
        assert!(at_ms - start_ms >= 5 * DAY_MS);
        assert!(at_ms - start_ms < 5 * DAY_MS + HOUR_MS);
        assert!(!due(&health, u64::MAX));
        // Further reports change nothing; only `enable` brings it back.
        let later = after_attempt(&health, &Outcome::Delivered, at_ms + 1, &policy);
        assert_eq!(later, health);
        let enabled = enable(&health, at_ms + 2);
        assert!(due(&enabled, at_ms + 2));
        let failed = after_attempt(&enabled, &Outcome::ConnectFailed, at_ms + 2, &policy);
        assert_eq!(failed.disabled, None);
        assert_eq!(failed.failing_since_ms, Some(at_ms + 2));
    }

    #[test]
    fn reset_schedules_now_and_keeps_the_disable_clock() {
        let since_ms = NOW - DAY_MS;
        let health = failing(20, HOUR_MS, since_ms);
        let reset_health = reset(&health, NOW);
        assert_eq!(
            reset_health,
            Health {
                failures: 0,
                penalty_ms: 0,
                next_attempt_at_ms: NOW,
                ..health.clone()
            }
        );
        assert!(due(&reset_health, NOW));
        let policy = PenaltyPolicy::default();
        let failed = after_attempt(&reset_health, &status(500), NOW, &policy);
        assert_eq!(failed.penalty_ms, 10 * S);
        assert_eq!(failed.failing_since_ms, Some(since_ms));
    }

    #[test]
    fn reset_does_not_enable_but_enable_does() {
        let gone = Health {
            disabled: Some(Disabled::Gone { at_ms: NOW - S }),
            ..failing(1, 180 * S, NOW - S)
        };
        let reset_health = reset(&gone, NOW);
        assert_eq!(reset_health.disabled, gone.disabled);
        assert!(!due(&reset_health, NOW));
        let enabled = enable(&gone, NOW);
        assert_eq!(
            enabled,
            Health {
                failures: 0,
                penalty_ms: 0,
                next_attempt_at_ms: NOW,
                failing_since_ms: None,
                disabled: None,
                last_success_at_ms: Some(1),
            }
        );
        assert!(due(&enabled, NOW));
    }

    #[test]
    fn due_table() {
        let at = |next_attempt_at_ms| Health {
            next_attempt_at_ms,
            ..Health::default()
        };
        let disabled = Health {
            disabled: Some(Disabled::Gone { at_ms: 0 }),
            ..at(0)
        };
        let rows = [
            (at(0), 0, true),
            (at(NOW), NOW - 1, false),
            (at(NOW), NOW, true),
            (at(NOW), NOW + 1, true),
            (at(u64::MAX), u64::MAX, true),
            (disabled.clone(), 0, false),
            (disabled, u64::MAX, false),
        ];
        for (index, (health, now_ms, expected)) in rows.iter().enumerate() {
            assert_eq!(due(health, *now_ms), *expected, "row {index}");
        }
    }

    #[test]
    fn stored_as_json() {
        let health = Health {
            disabled: Some(Disabled::FailingTooLong {
                at_ms: 9,
                since_ms: 2,
            }),
            ..failing(3, 40 * S, 2)
        };
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(
            json["disabled"],
            serde_json::json!({ "failing_too_long": { "at_ms": 9, "since_ms": 2 } })
        );
        let back: Health = serde_json::from_value(json).unwrap();
        assert_eq!(back, health);
        let old: Health = serde_json::from_str("{}").unwrap();
        assert_eq!(old, Health::default());
        let policy: PenaltyPolicy = serde_json::from_str(r#"{"penalty_max_ms": 5}"#).unwrap();
        assert_eq!(policy.penalty_max_ms, 5);
        assert_eq!(policy.server_error_base_ms, 10 * S);
        let outcome = serde_json::to_string(&retry_after(429, 5)).unwrap();
        assert_eq!(outcome, r#"{"status":{"status":429,"retry_after_ms":5}}"#);
    }
}
