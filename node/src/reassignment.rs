//! The reassignment rule, in one place: what a write that changes a work
//! order's assignee does to the bookkeeping revocation rests on. The sled
//! committer, the sync adapter's view of queued writes and the simulator's
//! `MemStore` all apply it, so they agree by construction.
//!
//! Why the document's `unassigned` entries come first: they travel with
//! the document (`doc::note_unassigned` writes them with every
//! assignment), so a central that never saw the reassignment itself (the
//! other central of a pair, or one that received the document whole)
//! still learns that a user held it and when their grace period began,
//! and every central counts that grace period from the same instant. A
//! reassignment with no entry (a document from before the key, or a write
//! made around the typed operations) is stamped with the receiver's clock,
//! as before.

/// The reassignment fields of a document as stored before the write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Before<'a> {
    pub assignee: Option<&'a str>,
    pub previous_assignee: Option<&'a str>,
    pub reassigned_at_ms: u64,
}

impl<'a> Before<'a> {
    /// The fields as a store's view of a document holds them.
    pub fn of(meta: &'a crate::access::DocMeta) -> Before<'a> {
        Before {
            assignee: meta.assignee.as_deref(),
            previous_assignee: meta.previous_assignee.as_deref(),
            reassigned_at_ms: meta.reassigned_at_ms,
        }
    }
}

/// What the write does to the reassignment bookkeeping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reassignment {
    /// The assignee before the latest reassignment, and when that was.
    pub previous_assignee: Option<String>,
    pub reassigned_at_ms: u64,
    /// Revocation records to write: (former assignee, grace start in ms).
    pub revoke: Vec<(String, u64)>,
    /// The revocation record to drop: the document is (again) this user's.
    pub unrevoke: Option<String>,
}

/// The rule. `before`: the stored fields (`None`: the document is new
/// here); `assignee`: the document's assignee after the write;
/// `unassigned_changed`: the document's `unassigned` entries this write
/// added or changed ([`changed_entries`]); `now_ms`: the receiver's clock.
pub fn reassignment(
    before: Option<Before<'_>>,
    assignee: Option<&str>,
    unassigned_changed: &[(String, u64)],
    now_ms: u64,
) -> Reassignment {
    let mut revoke: Vec<(String, u64)> = unassigned_changed
        .iter()
        .filter(|(user, _)| Some(user.as_str()) != assignee)
        .cloned()
        .collect();
    let before = before.unwrap_or_default();
    let (mut previous_assignee, mut reassigned_at_ms) = (
        before.previous_assignee.map(str::to_string),
        before.reassigned_at_ms,
    );
    if let Some(previous) = before
        .assignee
        .filter(|previous| Some(*previous) != assignee)
    {
        let at_ms = match revoke.iter().find(|(user, _)| user == previous) {
            Some((_, at_ms)) => *at_ms,
            None => {
                revoke.push((previous.to_string(), now_ms));
                now_ms
            }
        };
        previous_assignee = Some(previous.to_string());
        reassigned_at_ms = at_ms;
    }
    debug_assert!(revoke
        .iter()
        .all(|(user, _)| Some(user.as_str()) != assignee));
    Reassignment {
        previous_assignee,
        reassigned_at_ms,
        revoke,
        unrevoke: assignee.map(str::to_string),
    }
}

/// The entries of `after` that `before` lacks or holds with another value
/// (both as [`crate::doc::unassigned`] reads them: sorted by user).
pub fn changed_entries(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter(|entry| !before.contains(entry))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, at_ms: u64) -> (String, u64) {
        (user.to_string(), at_ms)
    }

    #[test]
    fn the_rule_as_a_table() {
        let held = |assignee| Before {
            assignee,
            previous_assignee: None,
            reassigned_at_ms: 0,
        };
        // (before, assignee after, entries changed) => expected, at 9,000.
        type Case<'a> = (
            Option<Before<'a>>,
            Option<&'a str>,
            Vec<(String, u64)>,
            Reassignment,
        );
        let cases: Vec<Case<'_>> = vec![
            // New here, never reassigned: nothing to revoke.
            (
                None,
                Some("a"),
                vec![],
                Reassignment {
                    unrevoke: Some("a".into()),
                    ..Reassignment::default()
                },
            ),
            // New here, reassigned elsewhere from a to b at 500: a's record
            // comes from the document (the gap `--centrals 2` found).
            (
                None,
                Some("b"),
                vec![entry("a", 500)],
                Reassignment {
                    revoke: vec![entry("a", 500)],
                    unrevoke: Some("b".into()),
                    ..Reassignment::default()
                },
            ),
            // Seen here as a's, now b's with the document's instant.
            (
                Some(held(Some("a"))),
                Some("b"),
                vec![entry("a", 500)],
                Reassignment {
                    previous_assignee: Some("a".into()),
                    reassigned_at_ms: 500,
                    revoke: vec![entry("a", 500)],
                    unrevoke: Some("b".into()),
                },
            ),
            // No entry (an old document, or a write around the typed
            // operations): the receiver's clock.
            (
                Some(held(Some("a"))),
                None,
                vec![],
                Reassignment {
                    previous_assignee: Some("a".into()),
                    reassigned_at_ms: 9_000,
                    revoke: vec![entry("a", 9_000)],
                    unrevoke: None,
                },
            ),
            // Assigned back to a: a's entry is gone, nothing revoked from a.
            (
                Some(held(Some("b"))),
                Some("a"),
                vec![entry("b", 700)],
                Reassignment {
                    previous_assignee: Some("b".into()),
                    reassigned_at_ms: 700,
                    revoke: vec![entry("b", 700)],
                    unrevoke: Some("a".into()),
                },
            ),
            // Another write, same assignee: only what the write changed.
            (
                Some(Before {
                    assignee: Some("b"),
                    previous_assignee: Some("a"),
                    reassigned_at_ms: 500,
                }),
                Some("b"),
                vec![],
                Reassignment {
                    previous_assignee: Some("a".into()),
                    reassigned_at_ms: 500,
                    revoke: vec![],
                    unrevoke: Some("b".into()),
                },
            ),
        ];
        for (before, assignee, changed, expected) in cases {
            assert_eq!(
                reassignment(before, assignee, &changed, 9_000),
                expected,
                "{before:?} -> {assignee:?} with {changed:?}"
            );
        }
    }

    #[test]
    fn an_entry_for_the_new_assignee_is_never_a_revocation() {
        let got = reassignment(None, Some("a"), &[entry("a", 5), entry("b", 6)], 9);
        assert_eq!(got.revoke, vec![entry("b", 6)]);
    }

    #[test]
    fn changed_entries_are_new_or_moved() {
        let before = [entry("a", 1), entry("b", 2)];
        let after = [entry("a", 1), entry("b", 3), entry("c", 4)];
        assert_eq!(
            changed_entries(&before, &after),
            vec![entry("b", 3), entry("c", 4)]
        );
        assert!(changed_entries(&after, &after).is_empty());
    }
}
