//! The lifecycle of an asynchronous command: published, executed by a client,
//! retried after a failure, finally done or dead.
//!
//! Why the delay grows with the attempt: a command that failed once may fail
//! for a passing reason (a device offline, a lock held); one that failed twice
//! more likely waits on something slow. The delay before the next attempt is
//! `interval × factor × attempts_max × current_attempt`, so it grows
//! linearly, and a rule allowing more attempts also spaces them further apart,
//! keeping the whole retry window proportionate to the rule. After
//! `attempts_max` failed executions the command is dead: it stays in the
//! history for operators but is never handed out again.
//!
//! Why reports are checked: a report on a finished command, or before the
//! command was due, is a client bug or a duplicate delivery; accepting it
//! would resurrect a dead command or count an execution twice, so it is
//! refused with a [`ReportError`] the API turns into a conflict.
//!
//! This module is a pure state machine: no clock, no IO, no randomness. The
//! caller passes `now_ms` and stores the returned [`Progress`] (as JSON).

use serde::{Deserialize, Serialize};

/// How failed executions are retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RetryRule {
    /// One "interval" unit of the delay formula.
    pub(crate) interval_ms: u64,
    pub(crate) factor: u32,
    /// Failed executions after which the command is dead.
    pub(crate) attempts_max: u32,
}

impl Default for RetryRule {
    fn default() -> RetryRule {
        RetryRule {
            interval_ms: 60_000,
            factor: 1,
            attempts_max: 3,
        }
    }
}

/// The delay before the attempt after the `current_attempt`-th failure:
/// `interval_ms × factor × attempts_max × current_attempt`, saturating.
pub(crate) fn retry_delay_ms(rule: &RetryRule, current_attempt: u32) -> u64 {
    rule.interval_ms
        .saturating_mul(u64::from(rule.factor))
        .saturating_mul(u64::from(rule.attempts_max))
        .saturating_mul(u64::from(current_attempt))
}

/// Where a command is in its lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CommandState {
    /// Waiting for a client to execute it, from `available_at_ms` on.
    Pending { available_at_ms: u64 },
    /// An execution succeeded.
    Done { at_ms: u64 },
    /// `attempts_max` executions failed.
    Dead { at_ms: u64 },
}

/// What the gateway remembers about one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Executions reported so far, successful or not.
    pub(crate) attempts: u32,
    pub(crate) state: CommandState,
}

/// A client's report of one execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Report {
    Succeeded,
    Failed,
}

/// Why a report was refused; the command is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("the command has already finished")]
    AlreadyFinished,
    #[error("the command is not available before {available_at_ms} ms")]
    NotDue { available_at_ms: u64 },
}

/// A command just published: available at once, never executed.
pub(crate) fn published(now_ms: u64) -> Progress {
    Progress {
        attempts: 0,
        state: CommandState::Pending {
            available_at_ms: now_ms,
        },
    }
}

/// The command's progress after `report` arrived at `now_ms`.
pub(crate) fn after_report(
    progress: &Progress,
    report: Report,
    rule: &RetryRule,
    now_ms: u64,
) -> Result<Progress, ReportError> {
    let available_at_ms = match progress.state {
        CommandState::Done { .. } | CommandState::Dead { .. } => {
            return Err(ReportError::AlreadyFinished);
        }
        CommandState::Pending { available_at_ms } => available_at_ms,
    };
    if available_at_ms > now_ms {
        return Err(ReportError::NotDue { available_at_ms });
    }
    let attempts = progress.attempts.saturating_add(1);
    let state = match report {
        Report::Succeeded => CommandState::Done { at_ms: now_ms },
        Report::Failed if attempts >= rule.attempts_max => CommandState::Dead { at_ms: now_ms },
        Report::Failed => CommandState::Pending {
            available_at_ms: now_ms.saturating_add(retry_delay_ms(rule, attempts)),
        },
    };
    if let CommandState::Pending { available_at_ms } = state {
        assert!(available_at_ms >= now_ms);
        assert!(attempts < rule.attempts_max);
    }
    assert!(attempts >= progress.attempts);
    Ok(Progress { attempts, state })
}

/// Whether a client may execute the command at `now_ms`.
pub(crate) fn is_available(progress: &Progress, now_ms: u64) -> bool {
    match progress.state {
        CommandState::Pending { available_at_ms } => available_at_ms <= now_ms,
        CommandState::Done { .. } | CommandState::Dead { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    const RULE: RetryRule = RetryRule {
        interval_ms: 60_000,
        factor: 2,
        attempts_max: 3,
    };

    fn pending(attempts: u32, available_at_ms: u64) -> Progress {
        Progress {
            attempts,
            state: CommandState::Pending { available_at_ms },
        }
    }

    fn done(attempts: u32, at_ms: u64) -> Progress {
        Progress {
            attempts,
            state: CommandState::Done { at_ms },
        }
    }

    fn dead(attempts: u32, at_ms: u64) -> Progress {
        Progress {
            attempts,
            state: CommandState::Dead { at_ms },
        }
    }

    #[test]
    fn retry_delay_table() {
        let rule = |interval_ms, factor, attempts_max| RetryRule {
            interval_ms,
            factor,
            attempts_max,
        };
        let rows: [(RetryRule, u32, u64); 9] = [
            (RetryRule::default(), 1, 180_000),
            (RetryRule::default(), 2, 360_000),
            (RULE, 0, 0),
            (RULE, 1, 360_000),
            (RULE, 2, 720_000),
            (rule(60_000, 0, 3), 2, 0),
            (rule(u64::MAX, 2, 3), 1, u64::MAX),
            (rule(u64::MAX / 2, 1, 1), 3, u64::MAX),
            (rule(u64::MAX, u32::MAX, u32::MAX), u32::MAX, u64::MAX),
        ];
        for (index, (rule, attempt, expected_ms)) in rows.iter().enumerate() {
            assert_eq!(retry_delay_ms(rule, *attempt), *expected_ms, "row {index}");
        }
    }

    struct Case {
        name: &'static str,
        before: Progress,
        report: Report,
        rule: RetryRule,
        now_ms: u64,
        expected: Result<Progress, ReportError>,
    }

    /// A row under `RULE` at `NOW`; other rules and times by struct update.
    fn case(
        name: &'static str,
        before: Progress,
        report: Report,
        expected: Result<Progress, ReportError>,
    ) -> Case {
        Case {
            name,
            before,
            report,
            rule: RULE,
            now_ms: NOW,
            expected,
        }
    }

    fn cases_accepted() -> Vec<Case> {
        use Report::{Failed, Succeeded};
        let retry = |attempts, delay_ms| Ok(pending(attempts, NOW + delay_ms));
        let ok_done = |attempts| Ok(done(attempts, NOW));
        let ok_dead = |attempts| Ok(dead(attempts, NOW));
        let with_max = |attempts_max| RetryRule {
            attempts_max,
            ..RULE
        };
        vec![
            case("fresh succeeds", published(NOW), Succeeded, ok_done(1)),
            case("fresh fails", published(NOW), Failed, retry(1, 360_000)),
            case("second fails", pending(1, NOW), Failed, retry(2, 720_000)),
            case("third fails", pending(2, NOW), Failed, ok_dead(3)),
            case("third succeeds", pending(2, NOW), Succeeded, ok_done(3)),
            Case {
                now_ms: NOW + 5,
                ..case("late report", published(NOW), Failed, retry(1, 360_005))
            },
            Case {
                rule: with_max(1),
                ..case("one shot", published(NOW), Failed, ok_dead(1))
            },
            Case {
                rule: with_max(0),
                ..case("zero max", published(NOW), Failed, ok_dead(1))
            },
        ]
    }

    fn cases_refused_and_saturated() -> Vec<Case> {
        use Report::{Failed, Succeeded};
        let finished = || Err(ReportError::AlreadyFinished);
        let not_due = Err(ReportError::NotDue {
            available_at_ms: NOW + 1,
        });
        let huge = RetryRule {
            interval_ms: u64::MAX,
            factor: u32::MAX,
            attempts_max: u32::MAX,
        };
        vec![
            case("done refuses", done(1, NOW), Failed, finished()),
            case("dead refuses", dead(3, NOW), Succeeded, finished()),
            case("not due", pending(1, NOW + 1), Succeeded, not_due),
            Case {
                rule: huge.clone(),
                ..case(
                    "huge delay",
                    pending(1, 0),
                    Failed,
                    Ok(pending(2, u64::MAX)),
                )
            },
            Case {
                now_ms: u64::MAX,
                ..case("now at max", published(0), Failed, Ok(pending(1, u64::MAX)))
            },
            Case {
                rule: huge,
                ..case(
                    "attempts at max",
                    pending(u32::MAX, 0),
                    Failed,
                    Ok(dead(u32::MAX, NOW)),
                )
            },
        ]
    }

    #[test]
    fn after_report_table() {
        let mut count = 0;
        let tables = [cases_accepted(), cases_refused_and_saturated()];
        for case in tables.iter().flatten() {
            let got = after_report(&case.before, case.report, &case.rule, case.now_ms);
            assert_eq!(got, case.expected, "case {:?}", case.name);
            count += 1;
        }
        assert_eq!(count, 14);
    }

    #[test]
    fn publish_fail_fail_succeed() {
        let mut now_ms = NOW;
        let mut progress = published(now_ms);
        assert!(is_available(&progress, now_ms));
        let steps: [(Report, Progress); 3] = [
            (Report::Failed, pending(1, NOW + 360_000)),
            (Report::Failed, pending(2, NOW + 360_000 + 720_000)),
            (Report::Succeeded, done(3, NOW + 360_000 + 720_000)),
        ];
        for (report, expected) in steps {
            progress = after_report(&progress, report, &RULE, now_ms).unwrap();
            assert_eq!(progress, expected);
            if let CommandState::Pending { available_at_ms } = progress.state {
                assert!(!is_available(&progress, available_at_ms - 1));
                assert_eq!(
                    after_report(&progress, Report::Succeeded, &RULE, available_at_ms - 1),
                    Err(ReportError::NotDue { available_at_ms })
                );
                now_ms = available_at_ms;
            }
        }
        assert!(!is_available(&progress, u64::MAX));
        assert_eq!(
            after_report(&progress, Report::Failed, &RULE, now_ms),
            Err(ReportError::AlreadyFinished)
        );
    }

    #[test]
    fn dead_after_attempts_max_failures() {
        for attempts_max in 1..=5 {
            let rule = RetryRule {
                attempts_max,
                ..RULE
            };
            let mut progress = published(NOW);
            let mut now_ms = NOW;
            for failure in 1..=attempts_max {
                assert!(is_available(&progress, now_ms));
                progress = after_report(&progress, Report::Failed, &rule, now_ms).unwrap();
                assert_eq!(progress.attempts, failure);
                match progress.state {
                    CommandState::Pending { available_at_ms } => {
                        assert!(failure < attempts_max);
                        assert_eq!(available_at_ms, now_ms + retry_delay_ms(&rule, failure));
                        now_ms = available_at_ms;
                    }
                    CommandState::Dead { at_ms } => {
                        assert_eq!(failure, attempts_max);
                        assert_eq!(at_ms, now_ms);
                    }
                    CommandState::Done { .. } => panic!("done after a failure"),
                }
            }
            assert_eq!(progress.state, CommandState::Dead { at_ms: now_ms });
        }
    }

    #[test]
    fn is_available_table() {
        let rows = [
            (published(NOW), NOW - 1, false),
            (published(NOW), NOW, true),
            (published(NOW), u64::MAX, true),
            (pending(1, u64::MAX), u64::MAX - 1, false),
            (done(1, NOW), NOW, false),
            (dead(3, NOW), u64::MAX, false),
        ];
        for (index, (progress, now_ms, expected)) in rows.iter().enumerate() {
            assert_eq!(is_available(progress, *now_ms), *expected, "row {index}");
        }
    }

    #[test]
    fn stored_as_json() {
        let progress = pending(2, 7);
        let json = serde_json::to_string(&progress).unwrap();
        assert_eq!(
            json,
            r#"{"attempts":2,"state":{"pending":{"available_at_ms":7}}}"#
        );
        let back: Progress = serde_json::from_str(&json).unwrap();
        assert_eq!(back, progress);
        let rule: RetryRule = serde_json::from_str(r#"{"factor": 2}"#).unwrap();
        assert_eq!(
            rule,
            RetryRule {
                factor: 2,
                ..RetryRule::default()
            }
        );
        assert_eq!(
            serde_json::to_string(&Report::Failed).unwrap(),
            r#""failed""#
        );
    }
}
