//! Work-order numbers a person can read over the phone: `WO-2026-000123`,
//! sequential per central and per year.
//!
//! Why a record's version is the counter: every record write goes through
//! the one committer, which gives the record the next version atomically
//! and answers only after the flush. Writing the year's counter record and
//! taking the version it got is therefore a durable, gap-free-unless-crashed
//! allocation with no compare-and-set loop: two creations at once get two
//! versions. A creation that fails after taking its number leaves a gap,
//! which is harmless (numbers are unique, not dense).
//!
//! Why per central: the counter is an internal record (`counters`), never
//! replicated, so two centrals count independently; each is configured
//! with its own prefix (`[gateway] work_order_prefix`, e.g. `WO-N` and
//! `WO-S`) so their numbers never collide.

use fieldsync_schemas::collection::COUNTERS;

use crate::clock::year_of;
use crate::store::{Expect, Store, WriteError};

/// Characters of a work-order number prefix, at most.
pub const PREFIX_CHARS_MAX: usize = 16;
/// Digits the sequence number is padded to (it grows past them, never
/// truncated).
const SEQUENCE_DIGITS: usize = 6;

/// Why a prefix cannot be used, if it cannot: 1 to [`PREFIX_CHARS_MAX`]
/// characters, ASCII capitals, digits and inner dashes.
pub fn prefix_problem(prefix: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-';
    if prefix.is_empty() || prefix.len() > PREFIX_CHARS_MAX {
        return Some(format!("must be 1 to {PREFIX_CHARS_MAX} characters"));
    }
    if !prefix.chars().all(allowed) || prefix.starts_with('-') || prefix.ends_with('-') {
        return Some("may hold only A-Z, 0-9 and inner dashes".into());
    }
    None
}

/// The number for sequence `sequence` of year `year`.
pub fn format_number(prefix: &str, year: i32, sequence: u64) -> String {
    format!("{prefix}-{year}-{sequence:0SEQUENCE_DIGITS$}")
}

/// The counter record's key for a year.
fn counter_key(year: i32) -> String {
    format!("work_order_number/{year}")
}

/// Take the next work-order number of the year `now_ms` falls in; durable
/// when it returns.
pub fn next_work_order_number(
    store: &Store,
    prefix: &str,
    now_ms: u64,
) -> Result<String, WriteError> {
    debug_assert!(prefix_problem(prefix).is_none(), "prefix checked at start");
    let year = year_of(now_ms);
    let receipt = store.write_record(
        COUNTERS,
        &counter_key(year),
        Some(b"{}".to_vec()),
        Expect::Any,
    )?;
    Ok(format_number(prefix, year, receipt.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    #[test]
    fn prefixes_are_checked() {
        for (prefix, fine) in [
            ("WO", true),
            ("WO-N", true),
            ("A1", true),
            ("", false),
            ("wo", false),
            ("-WO", false),
            ("WO-", false),
            ("WO 1", false),
            ("ABCDEFGHIJKLMNOPQ", false),
        ] {
            assert_eq!(prefix_problem(prefix).is_none(), fine, "{prefix:?}");
        }
    }

    #[test]
    fn numbers_are_padded_not_truncated() {
        assert_eq!(format_number("WO", 2026, 123), "WO-2026-000123");
        assert_eq!(format_number("WO-S", 2026, 1), "WO-S-2026-000001");
        assert_eq!(format_number("WO", 2027, 1_234_567), "WO-2027-1234567");
    }

    #[test]
    fn numbers_follow_each_other_per_year_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        // 2026-03-01 and 2027-01-02, UTC.
        let (in_2026, in_2027) = (1_772_323_200_000, 1_798_848_000_000);
        {
            let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
            let first = next_work_order_number(&store, "WO", in_2026).unwrap();
            let second = next_work_order_number(&store, "WO", in_2026).unwrap();
            assert_eq!(
                (first.as_str(), second.as_str()),
                ("WO-2026-000001", "WO-2026-000002")
            );
            let next_year = next_work_order_number(&store, "WO", in_2027).unwrap();
            assert_eq!(next_year, "WO-2027-000001");
            store.close();
        }
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(
            next_work_order_number(&store, "WO", in_2026).unwrap(),
            "WO-2026-000003"
        );
    }

    #[test]
    fn concurrent_takers_never_share_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), StoreConfig::default()).unwrap();
        let now_ms = 1_772_323_200_000;
        let numbers: Vec<String> = std::thread::scope(|scope| {
            let takers: Vec<_> = (0..4)
                .map(|_| {
                    let store = &store;
                    scope.spawn(move || {
                        (0..25)
                            .map(|_| next_work_order_number(store, "WO", now_ms).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            takers.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<_> = numbers.iter().collect();
        assert_eq!(distinct.len(), 100);
        assert!(distinct.contains(&"WO-2026-000100".to_string()));
    }
}
