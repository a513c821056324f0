//! Status is derived from the merged status log, never stored.
//!
//! Why: two replicas that each appended a transition offline must agree on
//! the status after merging, whatever order they merged in. A stored scalar
//! would keep Automerge's arbitrary winner; a function of the whole log is
//! deterministic and can also say when the log disagrees with itself.

use fieldsync_schemas::{Role, Status, StatusEntry};

/// The current status and whether terminal transitions conflict.
///
/// Rule: terminal states (`completed`, `cancelled`) win over open ones.
/// Between terminal transitions, the office's wins over the field's; among
/// equals, the latest `at` wins and then the later log position (the merged
/// log's order is the same on every replica). Two different terminal states
/// in one log set `conflict`. An empty log is `open`.
pub fn derive_status(log: &[StatusEntry]) -> (Status, bool) {
    let terminal: Vec<(usize, &StatusEntry)> = log
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.to.is_terminal())
        .collect();
    if terminal.is_empty() {
        let latest = log
            .iter()
            .enumerate()
            .max_by(|(ia, a), (ib, b)| (&a.at, ia).cmp(&(&b.at, ib)));
        return (latest.map_or(Status::Open, |(_, entry)| entry.to), false);
    }
    let conflict = terminal
        .iter()
        .any(|(_, entry)| entry.to != terminal[0].1.to);
    let office = |entry: &StatusEntry| entry.role != Role::Technician.as_str();
    let winner = terminal
        .iter()
        .max_by(|(ia, a), (ib, b)| (office(a), &a.at, ia).cmp(&(office(b), &b.at, ib)))
        .map(|(_, entry)| entry.to);
    // Unwrap-free: `terminal` is non-empty here.
    (winner.unwrap_or(Status::Open), conflict)
}
