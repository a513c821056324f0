//! The access policy: who may see a work order or a record (`visible`, the
//! one place visibility is decided), and which incoming changes a peer may
//! make. Enforced where data leaves (the sync engine announces only
//! visible documents) and where it enters (every change from a peer is
//! checked against `fieldsync_schemas::FIELD_RULES` before it counts).
//!
//! How a forbidden change is handled (see ARCHITECTURE.md, "Rejected
//! changes"): Automerge cannot drop one change from the middle of an
//! actor's history without stranding that actor's later changes, so the
//! central *accepts* the change graph and immediately appends a
//! compensating change, authored by the central, that restores every
//! forbidden field to its previous value. Both replicas converge on the
//! restored value; the violation is logged. A node that is not the office
//! (technician to technician) cannot speak for the office, so it refuses
//! the document's changes from that peer instead.

use std::collections::HashSet;

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{Automerge, ChangeHash, ObjId, ObjType, PatchAction, Prop, ReadDoc, Value, ROOT};
use fieldsync_schemas::field_rules::{self, FieldShape, Permission};
use fieldsync_schemas::{collection, CollectionKind, Role, Scope};
use serde::{Deserialize, Serialize};

/// Who is on the other end of a sync session, as established by the
/// driver from the peer's pinned certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAccess {
    /// Another office node: sees and may change everything.
    Office,
    /// A node enrolled for one user.
    User { user_id: String, role: Role },
}

impl PeerAccess {
    pub fn is_office(&self) -> bool {
        match self {
            PeerAccess::Office => true,
            PeerAccess::User { role, .. } => *role == Role::Operator,
        }
    }
}

/// What the policy needs to know about a document, without loading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocMeta {
    pub assignee: Option<String>,
    /// The assignee before the latest reassignment, kept for the grace period.
    pub previous_assignee: Option<String>,
    /// When the latest reassignment was stored (ms, the driver's clock).
    pub reassigned_at_ms: u64,
    pub heads: Vec<ChangeHash>,
    /// Is this what survives a crash? `false` while a write to the document
    /// is queued or not yet flushed: a decision to withhold the document
    /// must then also be judged on the durable state (a crash may undo
    /// the reassignment it rests on). Stores set it when they answer.
    pub durable: bool,
}

/// How long a technician still sees a work order reassigned away from it
/// (and may still send its pending changes), unless configured.
pub const GRACE_MS_DEFAULT: u64 = 24 * 3600 * 1000;

/// Who asks: a peer node, a gateway caller, or the node's own tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer<'a> {
    /// An office node, or the node itself (background tasks): everything.
    Office,
    User {
        id: &'a str,
        role: Role,
        /// An integration client's scopes (empty for people).
        scopes: &'a [Scope],
    },
}

impl<'a> Viewer<'a> {
    /// The viewer a sync peer is.
    pub fn of_peer(peer: &'a PeerAccess) -> Viewer<'a> {
        match peer {
            PeerAccess::Office => Viewer::Office,
            PeerAccess::User { user_id, role } => Viewer::User {
                id: user_id,
                role: *role,
                scopes: &[],
            },
        }
    }
}

/// What the rule needs to know about a work order (from its index entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkOrderFacts<'a> {
    pub assignee: Option<&'a str>,
    pub previous_assignee: Option<&'a str>,
    /// When the latest reassignment was stored (ms; 0: never).
    pub reassigned_at_ms: u64,
    pub deleted: bool,
    /// When the viewer's own revocation record for this work order was
    /// stored, if it has one: a second reassignment within the grace period
    /// moves `previous_assignee` on, but the first technician's grace still
    /// runs from its own record (simulator, seed 14).
    pub own_revocation_at_ms: Option<u64>,
}

/// Who may read a data collection, besides operators and office nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadGrants {
    /// Roles that may read. Operators always may; an integration client
    /// also needs the `records:read` scope.
    pub readers: Vec<Role>,
}

impl ReadGrants {
    /// Operators and the listed roles, each once, in `Role::ALL`'s order:
    /// the one way grants are built from a list (config, API).
    pub fn of(listed: impl IntoIterator<Item = Role>) -> ReadGrants {
        let listed: Vec<Role> = listed.into_iter().collect();
        ReadGrants {
            readers: Role::ALL
                .into_iter()
                .filter(|role| *role == Role::Operator || listed.contains(role))
                .collect(),
        }
    }
}

impl Default for ReadGrants {
    /// Operators and integrations with `records:read`; technicians only
    /// where configured.
    fn default() -> Self {
        ReadGrants {
            readers: vec![Role::Operator, Role::Integration],
        }
    }
}

/// What is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    WorkOrder(WorkOrderFacts<'a>),
    Record {
        collection: &'a str,
        grants: &'a ReadGrants,
    },
}

/// Why it is asked: sync must move tombstones (so deletes propagate), a
/// read (REST, web UI, the feed, webhooks) hides them from technicians.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Sync,
    Read,
}

/// The visibility rule: may `viewer` see `subject` at `now_ms`? The one
/// place this is decided; sync, REST, the feed and the web UI call it.
///
/// - Office nodes, the node itself and operators see everything, internal
///   records included for the node itself only.
/// - A technician sees a work order assigned to it, and one reassigned
///   away from it until `grace_ms` after the reassignment; never a deleted
///   one on a read. An integration client reads every work order (its
///   scopes are checked per endpoint) and syncs none.
/// - Data records: the roles in the collection's grants (an integration
///   client with `records:read`). Internal records: nobody but the node.
/// - Office-only records (`collection::office_only`: users and their
///   enrollments): an office peer over sync, and nobody else, ever: not a
///   technician's device, not an operator's, not the feed, REST or the UI
///   (they hold secret hashes and say which devices may connect; two
///   centrals must agree on them, nobody else needs them).
pub fn visible(
    viewer: &Viewer<'_>,
    subject: &Subject<'_>,
    purpose: Purpose,
    now_ms: u64,
    grace_ms: u64,
) -> bool {
    if let Subject::Record { collection, .. } = subject {
        if collection::office_only(collection) {
            return matches!(viewer, Viewer::Office) && purpose == Purpose::Sync;
        }
    }
    let Viewer::User { id, role, scopes } = viewer else {
        return true;
    };
    match subject {
        Subject::Record { collection, grants } => {
            CollectionKind::of(collection) == CollectionKind::Data
                && match role {
                    Role::Operator => true,
                    Role::Integration => {
                        grants.readers.contains(role) && scopes.contains(&Scope::RecordsRead)
                    }
                    Role::Technician => grants.readers.contains(role),
                }
        }
        Subject::WorkOrder(facts) => match (role, purpose) {
            (Role::Operator, _) | (Role::Integration, Purpose::Read) => true,
            (_, Purpose::Read) if facts.deleted => false,
            _ => {
                let in_grace = |at_ms: u64| now_ms < at_ms.saturating_add(grace_ms);
                facts.assignee == Some(id)
                    || (facts.previous_assignee == Some(id) && in_grace(facts.reassigned_at_ms))
                    || facts.own_revocation_at_ms.is_some_and(in_grace)
            }
        },
    }
}

/// May `peer` send us copies of records of `collection`? An office (the
/// only record writer) for data records; for office-only records, only a
/// peer that may also receive them ([`visible`]: an office node, not an
/// operator's device), since a copy enrolls devices.
pub fn may_send_records(peer: &PeerAccess, collection: &str) -> bool {
    if !collection::office_only(collection) {
        return peer.is_office();
    }
    let grants = ReadGrants::default();
    visible(
        &Viewer::of_peer(peer),
        &Subject::Record {
            collection,
            grants: &grants,
        },
        Purpose::Sync,
        0,
        0,
    )
}

/// May `peer` see (receive, and send changes to) this document at
/// `now_ms`? [`visible`] for a sync peer, with the peer's own revocation
/// record for the document when the caller has looked it up.
pub fn may_see(
    peer: &PeerAccess,
    meta: &DocMeta,
    own_revocation_at_ms: Option<u64>,
    now_ms: u64,
    grace_ms: u64,
) -> bool {
    let facts = WorkOrderFacts {
        assignee: meta.assignee.as_deref(),
        previous_assignee: meta.previous_assignee.as_deref(),
        reassigned_at_ms: meta.reassigned_at_ms,
        deleted: false,
        own_revocation_at_ms,
    };
    visible(
        &Viewer::of_peer(peer),
        &Subject::WorkOrder(facts),
        Purpose::Sync,
        now_ms,
        grace_ms,
    )
}

/// One forbidden change found in an incoming batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub reason: String,
}

fn root_key(patch: &automerge::Patch) -> Option<String> {
    match patch.path.first() {
        Some((_, Prop::Map(key))) => Some(key.clone()),
        Some((_, Prop::Seq(_))) => None,
        None => match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key.clone()),
            PatchAction::Conflict {
                prop: Prop::Map(key),
            }
            | PatchAction::Increment {
                prop: Prop::Map(key),
                ..
            } => Some(key.clone()),
            _ => None,
        },
    }
}

/// Check what `after` changed relative to `before_heads` against the field
/// rules for `role`. Returns every violation (empty: all allowed).
pub fn check_changes(role: Role, after: &Automerge, before_heads: &[ChangeHash]) -> Vec<Violation> {
    let patches = after.diff(before_heads, &after.get_heads());
    // Objects created by this batch: filling in a new list item is part of
    // appending it, not an edit of an existing item.
    let mut created: HashSet<ObjId> = HashSet::new();
    for patch in &patches {
        match &patch.action {
            PatchAction::Insert { values, .. } => {
                for (value, id, _) in values.iter() {
                    if matches!(value, Value::Object(_)) {
                        created.insert(id.clone());
                    }
                }
            }
            PatchAction::PutMap {
                value: (Value::Object(_), id),
                ..
            } if !patch.path.is_empty() => {
                created.insert(id.clone());
            }
            _ => {}
        }
    }
    let mut violations = Vec::new();
    let mut flag = |key: &str, reason: String| {
        if !violations.iter().any(|v: &Violation| v.key == key) {
            violations.push(Violation {
                key: key.to_string(),
                reason,
            });
        }
    };
    for patch in &patches {
        let Some(key) = root_key(patch) else {
            flag("?", "change outside any known field".into());
            continue;
        };
        let granted =
            field_rules::rule(&key).map_or(Permission::None, |rule| rule.permission(role));
        let in_new_object = created.contains(&patch.obj);
        let needed = match &patch.action {
            PatchAction::Insert { .. } if patch.path.len() == 1 => Permission::Append,
            _ if in_new_object => Permission::Append,
            _ => Permission::Write,
        };
        if granted < needed {
            flag(
                &key,
                format!(
                    "{role} may not {} `{key}`",
                    if needed == Permission::Append {
                        "append to"
                    } else {
                        "change"
                    }
                ),
            );
            continue;
        }
    }
    // The diff shows only what changed the visible winner. A forbidden
    // write that loses a conflict (a concurrent office write wins) leaves
    // no patch, yet stays in the document as a conflict value the API
    // shows and a later merge may surface: so look for new operations on
    // every key this role may not write, winners or not (simulator,
    // seed 11).
    for rule in field_rules::FIELD_RULES
        .iter()
        .filter(|rule| rule.permission(role) < Permission::Write)
    {
        if violations.iter().any(|v| v.key == rule.key) {
            continue;
        }
        if wrote_hidden(
            after,
            before_heads,
            &ROOT,
            rule.key,
            rule.shape == FieldShape::Map,
        ) {
            violations.push(Violation {
                key: rule.key.to_string(),
                reason: format!("{role} may not change `{}`", rule.key),
            });
        }
    }
    if !violations.iter().any(|v| v.key == "closure") {
        if let Some(reason) = bad_signature(after, before_heads) {
            violations.push(Violation {
                key: "closure".into(),
                reason,
            });
        }
    }
    violations
}

/// A new `closure.signature` value the typed operation would not write
/// (`doc::signature_problem`): markup, another type, or over the size
/// limit, from a peer that bypassed the operations. Judged on every new
/// value, winner or not, as the field rules are; the office's
/// compensation restores the closure as it was.
fn bad_signature(after: &Automerge, before_heads: &[ChangeHash]) -> Option<String> {
    let Ok(Some((Value::Object(_), closure))) = after.get(ROOT, "closure") else {
        return None;
    };
    let now = after.get_all(&closure, "signature").unwrap_or_default();
    let then = after
        .get_all_at(&closure, "signature", before_heads)
        .unwrap_or_default();
    now.iter()
        .filter(|(_, id)| !then.iter().any(|(_, old)| old == id))
        .find_map(|(value, _)| match value.as_str() {
            None => Some("a closure signature that is not text".to_string()),
            Some("") => None,
            Some(text) => crate::doc::signature_problem(text)
                .map(|problem| format!("a closure signature {problem}")),
        })
}

/// Did the changes after `before_heads` add a value under `key` of `obj`
/// (or, for a map present on both sides, under any of its keys)?
fn wrote_hidden(
    after: &Automerge,
    before_heads: &[ChangeHash],
    obj: &ObjId,
    key: &str,
    descend: bool,
) -> bool {
    let now = after.get_all(obj, key).unwrap_or_default();
    let then = after.get_all_at(obj, key, before_heads).unwrap_or_default();
    if now
        .iter()
        .any(|(_, id)| !then.iter().any(|(_, old)| old == id))
    {
        return true;
    }
    if !descend {
        return false;
    }
    now.iter().any(|(value, id)| {
        matches!(value, Value::Object(ObjType::Map))
            && after
                .keys(id)
                .any(|inner| wrote_hidden(after, before_heads, id, &inner, false))
    })
}

/// Append to `doc` (as this node's actor) a change that restores every
/// violated root key to its value at `before_heads` and deletes every bad
/// appended item (`doc::items`). Returns the change's bytes (empty if
/// nothing needed restoring).
pub fn compensate(
    doc: &mut Automerge,
    before_heads: &[ChangeHash],
    violations: &[Violation],
    bad_items: &[crate::doc::items::BadItem],
    time_s: i64,
) -> Result<Vec<u8>, automerge::AutomergeError> {
    let before = doc.fork_at(before_heads)?;
    let heads = doc.get_heads();
    let mut tx = doc.transaction();
    let mut result = Ok(());
    for violation in violations {
        if violation.key == "?" {
            continue;
        }
        result = restore_key(&mut tx, &before, &violation.key);
        if result.is_err() {
            break;
        }
    }
    for bad in bad_items {
        if result.is_err() {
            break;
        }
        result = delete_item(&mut tx, &bad.key, &bad.item);
    }
    match result {
        Ok(()) => {
            tx.commit_with(
                CommitOptions::default()
                    .with_time(time_s)
                    .with_message("fieldsync: restore forbidden change"),
            );
        }
        Err(error) => {
            tx.rollback();
            return Err(error);
        }
    }
    Ok(doc.save_after(&heads))
}

/// Delete `item` from root list `key`, wherever it sits now.
fn delete_item(
    tx: &mut Transaction<'_>,
    key: &str,
    item: &ObjId,
) -> Result<(), automerge::AutomergeError> {
    let Some((Value::Object(_), list)) = tx.get(ROOT, key)? else {
        return Ok(());
    };
    let index = (0..tx.length(&list))
        .find(|&index| matches!(tx.get(&list, index), Ok(Some((_, id))) if &id == item));
    match index {
        Some(index) => tx.delete(&list, index),
        None => Ok(()),
    }
}

fn restore_key(
    tx: &mut Transaction<'_>,
    before: &Automerge,
    key: &str,
) -> Result<(), automerge::AutomergeError> {
    match (before.get(ROOT, key)?, tx.get(ROOT, key)?) {
        (None, Some(_)) => tx.delete(ROOT, key),
        (None, None) => Ok(()),
        (Some((Value::Scalar(old), _)), current) => {
            let same = matches!(&current, Some((Value::Scalar(new), _)) if new == &old);
            let conflicted = tx.get_all(ROOT, key)?.len() > 1;
            if !same || conflicted {
                tx.put(ROOT, key, old.into_owned())?;
            }
            Ok(())
        }
        (Some((Value::Object(kind), old_id)), Some((Value::Object(_), new_id)))
            if old_id == new_id =>
        {
            restore_object(tx, before, &old_id, kind)
        }
        (Some((Value::Object(kind), old_id)), _) => {
            let fresh = tx.put_object(ROOT, key, kind)?;
            copy_object(tx, before, &old_id, &fresh, kind)
        }
    }
}

/// Bring an object that exists on both sides back to its earlier content.
/// Items a list gained are kept (appends are judged by the caller); items
/// it lost are appended again as copies.
fn restore_object(
    tx: &mut Transaction<'_>,
    before: &Automerge,
    obj: &ObjId,
    kind: ObjType,
) -> Result<(), automerge::AutomergeError> {
    match kind {
        ObjType::Map | ObjType::Table => {
            for key in before.keys(obj).collect::<Vec<_>>() {
                let old = before.get(obj, key.as_str())?;
                let new = tx.get(obj, key.as_str())?;
                match (old, new) {
                    (Some((Value::Scalar(o), _)), Some((Value::Scalar(n), _)))
                        if o == n && tx.get_all(obj, key.as_str())?.len() < 2 => {}
                    (Some((Value::Scalar(o), _)), _) => {
                        tx.put(obj, key.as_str(), o.into_owned())?
                    }
                    (Some((Value::Object(k), oid)), Some((Value::Object(_), nid)))
                        if oid == nid =>
                    {
                        restore_object(tx, before, &oid, k)?
                    }
                    (Some((Value::Object(k), oid)), _) => {
                        let fresh = tx.put_object(obj, key.as_str(), k)?;
                        copy_object(tx, before, &oid, &fresh, k)?;
                    }
                    (None, _) => {}
                }
            }
            for key in tx.keys(obj).collect::<Vec<_>>() {
                if before.get(obj, key.as_str())?.is_none() {
                    tx.delete(obj, key.as_str())?;
                }
            }
            Ok(())
        }
        ObjType::List => {
            let now_items: Vec<ObjId> = (0..tx.length(obj))
                .filter_map(|i| tx.get(obj, i).ok().flatten().map(|(_, id)| id))
                .collect();
            for index in 0..before.length(obj) {
                let Some((value, item)) = before.get(obj, index)? else {
                    continue;
                };
                match value {
                    Value::Object(k) if now_items.contains(&item) => {
                        restore_object(tx, before, &item, k)?
                    }
                    Value::Object(k) => {
                        let end = tx.length(obj);
                        let fresh = tx.insert_object(obj, end, k)?;
                        copy_object(tx, before, &item, &fresh, k)?;
                    }
                    Value::Scalar(_) => {}
                }
            }
            Ok(())
        }
        ObjType::Text => {
            let old = before.text(obj)?;
            if tx.text(obj)? != old {
                tx.update_text(obj, &old)?;
            }
            Ok(())
        }
    }
}

fn copy_object(
    tx: &mut Transaction<'_>,
    before: &Automerge,
    from: &ObjId,
    to: &ObjId,
    kind: ObjType,
) -> Result<(), automerge::AutomergeError> {
    match kind {
        ObjType::Map | ObjType::Table => {
            for key in before.keys(from).collect::<Vec<_>>() {
                match before.get(from, key.as_str())? {
                    Some((Value::Scalar(v), _)) => tx.put(to, key.as_str(), v.into_owned())?,
                    Some((Value::Object(k), id)) => {
                        let fresh = tx.put_object(to, key.as_str(), k)?;
                        copy_object(tx, before, &id, &fresh, k)?;
                    }
                    None => {}
                }
            }
        }
        ObjType::List => {
            for index in 0..before.length(from) {
                match before.get(from, index)? {
                    Some((Value::Scalar(v), _)) => tx.insert(to, index, v.into_owned())?,
                    Some((Value::Object(k), id)) => {
                        let fresh = tx.insert_object(to, index, k)?;
                        copy_object(tx, before, &id, &fresh, k)?;
                    }
                    None => {}
                }
            }
        }
        ObjType::Text => tx.splice_text(to, 0, 0, &before.text(from)?)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: u64 = 1_000;

    fn facts(
        assignee: &'static str,
        previous: Option<&'static str>,
        deleted: bool,
    ) -> WorkOrderFacts<'static> {
        WorkOrderFacts {
            assignee: Some(assignee),
            previous_assignee: previous,
            reassigned_at_ms: 10_000,
            deleted,
            own_revocation_at_ms: None,
        }
    }

    /// The rule, pinned: (viewer, subject, purpose, now) → visible.
    #[test]
    fn the_visibility_table() {
        let none: &[Scope] = &[];
        let read: &[Scope] = &[Scope::RecordsRead];
        let bob = Viewer::User {
            id: "bob",
            role: Role::Technician,
            scopes: none,
        };
        let ann = Viewer::User {
            id: "ann",
            role: Role::Technician,
            scopes: none,
        };
        let op = Viewer::User {
            id: "op",
            role: Role::Operator,
            scopes: none,
        };
        let erp = Viewer::User {
            id: "erp",
            role: Role::Integration,
            scopes: read,
        };
        let erp_unscoped = Viewer::User {
            id: "erp2",
            role: Role::Integration,
            scopes: none,
        };
        let defaults = ReadGrants::default();
        let field = ReadGrants {
            readers: vec![Role::Technician],
        };
        let bobs = Subject::WorkOrder(facts("bob", None, false));
        let moved = Subject::WorkOrder(facts("ann", Some("bob"), false));
        let deleted = Subject::WorkOrder(facts("bob", None, true));
        // Moved on to cy within bob's grace: bob's own record keeps it.
        let moved_twice = Subject::WorkOrder(WorkOrderFacts {
            own_revocation_at_ms: Some(10_000),
            ..facts("cy", Some("ann"), false)
        });
        let materials = Subject::Record {
            collection: "materials",
            grants: &field,
        };
        let customers = Subject::Record {
            collection: "customers",
            grants: &defaults,
        };
        let hooks = Subject::Record {
            collection: "webhooks",
            grants: &field,
        };
        let users = Subject::Record {
            collection: "users",
            grants: &field,
        };
        use Purpose::{Read, Sync};
        let table: &[(&str, Viewer, Subject, Purpose, u64, bool)] = &[
            (
                "users: an office peer",
                Viewer::Office,
                users,
                Sync,
                0,
                true,
            ),
            (
                "users: never on a read",
                Viewer::Office,
                users,
                Read,
                0,
                false,
            ),
            ("users: not a technician", bob, users, Sync, 0, false),
            ("users: not an operator's device", op, users, Sync, 0, false),
            ("users: not an operator's read", op, users, Read, 0, false),
            ("users: not an integration", erp, users, Read, 0, false),
            ("own work order", bob, bobs, Read, 0, true),
            ("own work order, sync", bob, bobs, Sync, 0, true),
            ("someone else's", ann, bobs, Read, 0, false),
            ("operator", op, bobs, Read, 0, true),
            ("integration reads all", erp_unscoped, bobs, Read, 0, true),
            ("integration never syncs others'", erp, bobs, Sync, 0, false),
            ("office node", Viewer::Office, bobs, Sync, 0, true),
            ("reassigned: in grace", bob, moved, Sync, 10_999, true),
            ("reassigned: in grace, read", bob, moved, Read, 10_999, true),
            ("reassigned: grace over", bob, moved, Sync, 11_000, false),
            ("reassigned: the new assignee", ann, moved, Read, 0, true),
            (
                "moved twice: own record in grace",
                bob,
                moved_twice,
                Sync,
                10_999,
                true,
            ),
            (
                "moved twice: own record over",
                bob,
                moved_twice,
                Sync,
                11_000,
                false,
            ),
            ("tombstone: read", bob, deleted, Read, 0, false),
            ("tombstone: sync moves it", bob, deleted, Sync, 0, true),
            ("tombstone: operator", op, deleted, Read, 0, true),
            ("granted collection", bob, materials, Sync, 0, true),
            ("ungranted collection", bob, customers, Read, 0, false),
            ("ungranted collection, sync", bob, customers, Sync, 0, false),
            (
                "operator: any data collection",
                op,
                customers,
                Read,
                0,
                true,
            ),
            (
                "integration with records:read",
                erp,
                customers,
                Read,
                0,
                true,
            ),
            (
                "integration without the scope",
                erp_unscoped,
                customers,
                Read,
                0,
                false,
            ),
            ("integration not granted", erp, materials, Read, 0, false),
            ("internal: not even an operator", op, hooks, Read, 0, false),
            ("internal: a technician", bob, hooks, Sync, 0, false),
            (
                "internal: the node itself",
                Viewer::Office,
                hooks,
                Read,
                0,
                true,
            ),
        ];
        for (name, viewer, subject, purpose, now_ms, expected) in table {
            assert_eq!(
                visible(viewer, subject, *purpose, *now_ms, GRACE),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn only_an_office_node_sends_users() {
        let operator = PeerAccess::User {
            user_id: "op".into(),
            role: Role::Operator,
        };
        let tech = PeerAccess::User {
            user_id: "bob".into(),
            role: Role::Technician,
        };
        assert!(may_send_records(&PeerAccess::Office, "users"));
        assert!(!may_send_records(&operator, "users"));
        assert!(!may_send_records(&tech, "users"));
        assert!(may_send_records(&operator, "materials"));
        assert!(!may_send_records(&tech, "materials"));
    }

    #[test]
    fn a_sync_peer_goes_through_the_same_rule() {
        let peer = PeerAccess::User {
            user_id: "bob".into(),
            role: Role::Technician,
        };
        let meta = DocMeta {
            assignee: Some("ann".into()),
            previous_assignee: Some("bob".into()),
            reassigned_at_ms: 10_000,
            ..DocMeta::default()
        };
        assert!(may_see(&peer, &meta, None, 10_500, GRACE));
        assert!(!may_see(&peer, &meta, None, 11_000, GRACE));
        assert!(may_see(&peer, &meta, Some(10_900), 11_000, GRACE));
        assert!(may_see(&PeerAccess::Office, &meta, None, 11_000, GRACE));
        let operator = PeerAccess::User {
            user_id: "op".into(),
            role: Role::Operator,
        };
        assert!(may_see(&operator, &meta, None, 11_000, GRACE));
    }
}
