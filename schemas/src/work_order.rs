//! Work-order value types: what a request carries and what a read shows.
//!
//! The document itself is an Automerge map (see the node's `doc` module);
//! these are the plain values that go into and come out of it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::role::ParseNameError;

/// Current format of a work-order document's root map (`schema` key).
pub const WORK_ORDER_SCHEMA: i64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

impl FromStr for Priority {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "urgent" => Ok(Priority::Urgent),
            _ => Err(ParseNameError {
                what: "priority",
                value: s.to_string(),
                expected: "low, normal, high, urgent",
            }),
        }
    }
}

/// A work order's status. `Completed` and `Cancelled` are terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Assigned,
    EnRoute,
    InProgress,
    OnHold,
    Completed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Open,
        Status::Assigned,
        Status::EnRoute,
        Status::InProgress,
        Status::OnHold,
        Status::Completed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Assigned => "assigned",
            Status::EnRoute => "en_route",
            Status::InProgress => "in_progress",
            Status::OnHold => "on_hold",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled)
    }

    /// Transitions a technician may make in the field. The office owns
    /// opening, assigning and cancelling.
    pub fn is_field_transition(self) -> bool {
        matches!(
            self,
            Status::EnRoute | Status::InProgress | Status::OnHold | Status::Completed
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(ParseNameError {
                what: "status",
                value: s.to_string(),
                expected: "open, assigned, en_route, in_progress, on_hold, completed, cancelled",
            })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub phone: String,
    /// Tax or identity document number.
    #[serde(default)]
    pub document: String,
}

/// What an operator (or the import) supplies to create a work order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewWorkOrder {
    /// A caller-chosen UUID (imports keep theirs); a new one when absent.
    pub id: Option<String>,
    pub number: String,
    pub title: String,
    pub description: String,
    pub customer: Customer,
    pub priority: Priority,
    pub assignee: Option<String>,
    pub scheduled_for: Option<String>,
    pub created_at: String,
    pub initial_status: Status,
    /// Imported notes: (author, text, at).
    pub notes: Vec<(String, String, String)>,
    /// Imported materials: (sku, qty, description).
    pub materials: Vec<(String, f64, String)>,
}

/// An operator's edit of the office-owned fields. `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    /// `Some(None)` unassigns.
    pub assignee: Option<Option<String>>,
    pub scheduled_for: Option<String>,
    pub customer: Option<Customer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub at: String,
    pub by: String,
    /// The role of `by` when the transition was made: status derivation
    /// gives the operator's terminal transition precedence.
    pub role: String,
    pub to: Status,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub at: String,
    pub by: String,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialState {
    Requested,
    Approved,
    Rejected,
}

impl MaterialState {
    pub fn as_str(self) -> &'static str {
        match self {
            MaterialState::Requested => "requested",
            MaterialState::Approved => "approved",
            MaterialState::Rejected => "rejected",
        }
    }
}

impl FromStr for MaterialState {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "requested" => Ok(MaterialState::Requested),
            "approved" => Ok(MaterialState::Approved),
            "rejected" => Ok(MaterialState::Rejected),
            _ => Err(ParseNameError {
                what: "material state",
                value: s.to_string(),
                expected: "requested, approved, rejected",
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Material {
    pub id: String,
    pub sku: String,
    pub qty: f64,
    pub unit: String,
    pub description: String,
    pub by: String,
    pub at: String,
    pub state: MaterialState,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeEntry {
    pub by: String,
    pub start: String,
    pub end: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closure {
    pub at: String,
    pub by: String,
    pub resolution: String,
    pub signed_by: String,
    /// The customer's signature drawn on screen: an SVG path of `M`/`L`
    /// commands with integer coordinates; empty when none was drawn.
    #[serde(default)]
    pub signature: String,
}

/// The read model of a work order: what the API, the CLI and tests see.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkOrderView {
    pub id: String,
    pub number: String,
    pub schema: i64,
    pub created_at: String,
    pub created_by: String,
    pub title: String,
    pub description: String,
    pub customer: Customer,
    pub priority: Priority,
    pub assignee: Option<String>,
    pub scheduled_for: Option<String>,
    /// Derived from `status_log`; never stored.
    pub status: Status,
    /// True when the log holds conflicting terminal transitions.
    pub conflict: bool,
    pub status_log: Vec<StatusEntry>,
    pub notes: Vec<Note>,
    pub materials: Vec<Material>,
    pub report: String,
    pub time_log: Vec<TimeEntry>,
    pub closure: Option<Closure>,
    pub deleted: bool,
    /// Losing values of concurrently edited scalar fields, by field path
    /// (`title`, `customer.phone`, ...). Empty when nothing conflicts.
    pub conflicts: BTreeMap<String, Vec<serde_json::Value>>,
    /// Document heads, hex: the ETag of this version.
    pub heads: Vec<String>,
    /// List items that do not have a valid shape (`materials[2]: qty is
    /// not a number`): left out of their list, so the rest of the work
    /// order stays readable. Empty for documents written by typed
    /// operations.
    pub invalid_items: Vec<String>,
}
