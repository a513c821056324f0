//! Which role may change which root key of a work order: one table, data not
//! code, so the node's typed operations, the sync engine's validation of
//! incoming changes and the gateway all enforce the same rules.

use crate::role::Role;

/// The shape of the value under a root key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldShape {
    Scalar,
    Map,
    /// A list whose existing items are never edited or removed.
    AppendOnlyList,
    /// A list whose items may be edited (materials change state).
    List,
    Text,
}

/// What a role may do to a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Set when the document is created, never changed after.
    None,
    /// May add new items at the end of a list; nothing else.
    Append,
    /// May change anything under the key.
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldRule {
    pub key: &'static str,
    pub shape: FieldShape,
    pub operator: Permission,
    /// The assigned technician. A technician never reaches other work orders.
    pub technician: Permission,
}

impl FieldRule {
    /// Integration clients with `work-orders:write` act with the office's
    /// rights; the gateway checks the scope before any write reaches here.
    pub fn permission(&self, role: Role) -> Permission {
        match role {
            Role::Operator | Role::Integration => self.operator,
            Role::Technician => self.technician,
        }
    }
}

use FieldShape::{AppendOnlyList, List, Map, Scalar, Text};
use Permission::{Append, None, Write};

/// Every root key of a work-order document, in document order.
pub const FIELD_RULES: &[FieldRule] = &[
    FieldRule {
        key: "kind",
        shape: Scalar,
        operator: None,
        technician: None,
    },
    FieldRule {
        key: "schema",
        shape: Scalar,
        operator: None,
        technician: None,
    },
    FieldRule {
        key: "id",
        shape: Scalar,
        operator: None,
        technician: None,
    },
    FieldRule {
        key: "number",
        shape: Scalar,
        operator: None,
        technician: None,
    },
    FieldRule {
        key: "created_at",
        shape: Scalar,
        operator: None,
        technician: None,
    },
    FieldRule {
        key: "created_by",
        shape: Scalar,
        operator: None,
        technician: None,
    },
    FieldRule {
        key: "customer",
        shape: Map,
        operator: Write,
        technician: None,
    },
    FieldRule {
        key: "title",
        shape: Scalar,
        operator: Write,
        technician: None,
    },
    FieldRule {
        key: "description",
        shape: Scalar,
        operator: Write,
        technician: None,
    },
    FieldRule {
        key: "priority",
        shape: Scalar,
        operator: Write,
        technician: None,
    },
    FieldRule {
        key: "assignee",
        shape: Scalar,
        operator: Write,
        technician: None,
    },
    // When each former assignee stopped being one: written with every
    // assignment, so every central knows each grace period's start.
    FieldRule {
        key: "unassigned",
        shape: Map,
        operator: Write,
        technician: None,
    },
    FieldRule {
        key: "scheduled_for",
        shape: Scalar,
        operator: Write,
        technician: None,
    },
    FieldRule {
        key: "status_log",
        shape: AppendOnlyList,
        operator: Append,
        technician: Append,
    },
    FieldRule {
        key: "notes",
        shape: AppendOnlyList,
        operator: Append,
        technician: Append,
    },
    // The assignee requests (appends); the office approves (edits state).
    FieldRule {
        key: "materials",
        shape: List,
        operator: Write,
        technician: Append,
    },
    FieldRule {
        key: "report",
        shape: Text,
        operator: Write,
        technician: Write,
    },
    FieldRule {
        key: "time_log",
        shape: AppendOnlyList,
        operator: None,
        technician: Append,
    },
    FieldRule {
        key: "closure",
        shape: Map,
        operator: Write,
        technician: Write,
    },
    FieldRule {
        key: "deleted",
        shape: Scalar,
        operator: Write,
        technician: None,
    },
];

/// The rule for a root key; `None` for a key the schema does not know, which
/// no role may write.
pub fn rule(key: &str) -> Option<&'static FieldRule> {
    FIELD_RULES.iter().find(|rule| rule.key == key)
}

/// May `role` change `key` at all (append or write)?
pub fn may_change(role: Role, key: &str) -> bool {
    rule(key).is_some_and(|rule| rule.permission(role) > Permission::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        for (i, a) in FIELD_RULES.iter().enumerate() {
            for b in &FIELD_RULES[i + 1..] {
                assert_ne!(a.key, b.key, "duplicate rule");
            }
        }
    }

    #[test]
    fn technician_cannot_touch_office_fields() {
        for key in [
            "customer", "assignee", "priority", "title", "deleted", "id", "number",
        ] {
            assert!(!may_change(Role::Technician, key), "{key}");
            assert!(!may_change(Role::Technician, key), "{key}");
        }
        assert!(may_change(Role::Technician, "notes"));
        assert!(may_change(Role::Operator, "assignee"));
        assert!(!may_change(Role::Operator, "number"));
        assert!(!may_change(Role::Operator, "no_such_key"));
    }
}
