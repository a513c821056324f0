//! The retention planner for delivery attempts, command history and logs:
//! which rows one cleanup run deletes.
//!
//! Why these rules: history older than `keep_ms` is only cost, but deleting
//! it all at once would hold the store for as long as the backlog is large,
//! so one run deletes at most `rows_per_run_max` rows and the next run takes
//! the rest, oldest first so the store converges on the policy. The newest
//! successful row of each subject (a hook, a command, a client) is kept
//! whatever its age: it answers "when did this last work?", the first
//! question asked about a subject that has been failing or idle for longer
//! than the retention window.
//!
//! This module is pure: the caller lists the rows (keys are unique), passes
//! `now_ms`, and deletes the keys returned.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

const DAY_MS: u64 = 24 * 3_600 * 1_000;

/// How long rows are kept and how many one run may delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RetentionPolicy {
    pub(crate) keep_ms: u64,
    pub(crate) rows_per_run_max: usize,
}

impl Default for RetentionPolicy {
    fn default() -> RetentionPolicy {
        RetentionPolicy {
            keep_ms: 30 * DAY_MS,
            rows_per_run_max: 10_000,
        }
    }
}

/// One row of history, as the planner needs to see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row<'a> {
    pub(crate) key: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) at_ms: u64,
    pub(crate) success: bool,
}

/// The keys of the rows to delete now: rows with `at_ms + keep_ms <= now_ms`,
/// oldest first (ties by key), at most `rows_per_run_max`, never the newest
/// successful row of a subject (newest by `at_ms`, ties to the greater key).
pub(crate) fn plan(rows: &[Row<'_>], now_ms: u64, policy: &RetentionPolicy) -> Vec<String> {
    let kept = newest_successes(rows);
    let mut old: Vec<&Row<'_>> = rows
        .iter()
        .filter(|row| row.at_ms.saturating_add(policy.keep_ms) <= now_ms)
        .filter(|row| !kept.contains(row.key))
        .collect();
    old.sort_unstable_by(|a, b| (a.at_ms, a.key).cmp(&(b.at_ms, b.key)));
    let mut chosen: BTreeSet<&str> = BTreeSet::new();
    let mut keys: Vec<String> = Vec::with_capacity(policy.rows_per_run_max.min(old.len()));
    for row in old {
        if keys.len() >= policy.rows_per_run_max {
            break;
        }
        // A repeated key (a caller bug) is deleted once.
        if chosen.insert(row.key) {
            keys.push(row.key.to_owned());
        }
    }
    assert!(keys.len() <= policy.rows_per_run_max);
    assert!(keys.len() <= rows.len());
    keys
}

/// The keys of the newest successful row of each subject.
fn newest_successes<'a>(rows: &[Row<'a>]) -> BTreeSet<&'a str> {
    let mut newest: BTreeMap<&'a str, (u64, &'a str)> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.success) {
        let candidate = (row.at_ms, row.key);
        newest
            .entry(row.subject)
            .and_modify(|best| *best = (*best).max(candidate))
            .or_insert(candidate);
    }
    newest.into_values().map(|(_, key)| key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000 * DAY_MS;

    /// `(key, subject, age in days, success)`.
    type Spec = (&'static str, &'static str, u64, bool);

    fn rows(specs: &[Spec]) -> Vec<Row<'static>> {
        specs
            .iter()
            .map(|&(key, subject, age_days, success)| Row {
                key,
                subject,
                at_ms: NOW - age_days * DAY_MS,
                success,
            })
            .collect()
    }

    fn policy(keep_days: u64, rows_per_run_max: usize) -> RetentionPolicy {
        RetentionPolicy {
            keep_ms: keep_days * DAY_MS,
            rows_per_run_max,
        }
    }

    struct Case {
        name: &'static str,
        rows: &'static [Spec],
        policy: RetentionPolicy,
        expected: &'static [&'static str],
    }

    /// A row under the default policy (keep 30 days, 10 000 a run).
    fn case(name: &'static str, rows: &'static [Spec], expected: &'static [&'static str]) -> Case {
        Case {
            name,
            rows,
            policy: RetentionPolicy::default(),
            expected,
        }
    }

    fn cases_age_and_subjects() -> Vec<Case> {
        let two_subjects: &[Spec] = &[
            ("h1", "hook", 90, true),
            ("h2", "hook", 80, false),
            ("c1", "cmd", 85, true),
            ("c2", "cmd", 70, true),
            ("c3", "cmd", 2, false),
        ];
        vec![
            case("empty", &[], &[]),
            case(
                "all young",
                &[
                    ("a", "h", 0, false),
                    ("b", "h", 29, true),
                    ("c", "g", 1, false),
                ],
                &[],
            ),
            case(
                "boundary is old",
                &[("a", "h", 30, false), ("b", "h", 29, false)],
                &["a"],
            ),
            case(
                "all old, newest success kept",
                &[
                    ("a", "h", 40, true),
                    ("b", "h", 35, true),
                    ("c", "h", 31, false),
                ],
                &["a", "c"],
            ),
            case(
                "a young success protects no old one",
                &[("a", "h", 40, true), ("b", "h", 1, true)],
                &["a"],
            ),
            case(
                "no success loses all old rows",
                &[
                    ("a", "h", 50, false),
                    ("b", "h", 40, false),
                    ("c", "h", 1, false),
                ],
                &["a", "b"],
            ),
            case("two subjects", two_subjects, &["c1", "h2"]),
            case(
                "subjects do not share a success",
                &[("a", "x", 60, true), ("b", "y", 50, false)],
                &["b"],
            ),
        ]
    }

    fn cases_cap_and_ties() -> Vec<Case> {
        let four_old: &[Spec] = &[
            ("d", "h", 31, false),
            ("a", "h", 60, false),
            ("c", "h", 40, false),
            ("b", "h", 50, false),
        ];
        let three_tied: &[Spec] = &[
            ("c", "h", 40, false),
            ("a", "h", 40, false),
            ("b", "h", 40, false),
        ];
        vec![
            Case {
                policy: policy(30, 2),
                ..case("cap takes the oldest", four_old, &["a", "b"])
            },
            Case {
                policy: policy(30, 2),
                ..case(
                    "cap skips the kept row",
                    &[
                        ("a", "h", 60, true),
                        ("b", "h", 50, false),
                        ("c", "h", 40, false),
                    ],
                    &["b", "c"],
                )
            },
            Case {
                policy: policy(30, 0),
                ..case("cap zero", four_old, &[])
            },
            Case {
                policy: policy(30, 2),
                ..case("ties in age by key", three_tied, &["a", "b"])
            },
            case(
                "tied newest success keeps the greater key",
                &[("a", "h", 40, true), ("b", "h", 40, true)],
                &["a"],
            ),
            Case {
                policy: policy(0, 10),
                ..case(
                    "keep zero deletes up to now",
                    &[
                        ("a", "h", 0, false),
                        ("b", "h", 0, true),
                        ("c", "h", 1, true),
                    ],
                    &["c", "a"],
                )
            },
            case(
                "repeated key deleted once",
                &[("a", "h", 40, false), ("a", "h", 50, false)],
                &["a"],
            ),
        ]
    }

    #[test]
    fn plan_table() {
        let mut count = 0;
        for case in [cases_age_and_subjects(), cases_cap_and_ties()]
            .into_iter()
            .flatten()
        {
            let rows = rows(case.rows);
            let got = plan(&rows, NOW, &case.policy);
            assert_eq!(got, case.expected, "case {:?}", case.name);
            count += 1;
        }
        assert_eq!(count, 15);
    }

    #[test]
    fn plan_saturates() {
        let rows = [
            Row {
                key: "a",
                subject: "h",
                at_ms: u64::MAX,
                success: false,
            },
            Row {
                key: "b",
                subject: "h",
                at_ms: 0,
                success: false,
            },
        ];
        let forever = RetentionPolicy {
            keep_ms: u64::MAX,
            rows_per_run_max: usize::MAX,
        };
        assert_eq!(plan(&rows, u64::MAX, &forever), ["b", "a"]);
        assert!(plan(&rows, u64::MAX - 1, &forever).is_empty());
        let none = RetentionPolicy {
            keep_ms: 0,
            rows_per_run_max: usize::MAX,
        };
        assert_eq!(plan(&rows, 0, &none), ["b"]);
    }

    #[test]
    fn repeated_runs_converge_on_the_policy() {
        let specs: Vec<(String, u64, bool)> = (0..25u64)
            .map(|index| (format!("k{index:02}"), 31 + index, index % 7 == 0))
            .collect();
        let mut left: Vec<Row<'_>> = specs
            .iter()
            .map(|(key, age_days, success)| Row {
                key,
                subject: "h",
                at_ms: NOW - age_days * DAY_MS,
                success: *success,
            })
            .collect();
        let policy = policy(30, 10);
        let mut runs = 0;
        // 25 rows, 10 a run: at most 3 runs delete anything.
        for _ in 0..10 {
            let keys = plan(&left, NOW, &policy);
            if keys.is_empty() {
                break;
            }
            assert!(keys.len() <= 10);
            left.retain(|row| !keys.iter().any(|key| key == row.key));
            runs += 1;
        }
        assert_eq!(runs, 3);
        // The newest success (the youngest row with index % 7 == 0: k00) stays.
        assert_eq!(left.iter().map(|row| row.key).collect::<Vec<_>>(), ["k00"]);
    }

    #[test]
    fn policy_as_json() {
        let policy: RetentionPolicy = serde_json::from_str(r#"{"rows_per_run_max": 5}"#).unwrap();
        assert_eq!(
            policy,
            RetentionPolicy {
                rows_per_run_max: 5,
                ..RetentionPolicy::default()
            }
        );
        assert_eq!(RetentionPolicy::default().keep_ms, 30 * DAY_MS);
    }
}
