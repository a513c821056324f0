//! Who is acting: roles, integration scopes, and the acting user.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The role of a user. Field rules and visibility are decided by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Central office staff: may do everything.
    Operator,
    /// Field technician: only work orders assigned to them, only field actions.
    Technician,
    /// A machine client (ERP, integration platform), limited by its scopes.
    Integration,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Operator, Role::Technician, Role::Integration];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Technician => "technician",
            Role::Integration => "integration",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsing a role or scope from user input failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct ParseNameError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Role {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "operator" => Ok(Role::Operator),
            "technician" => Ok(Role::Technician),
            "integration" => Ok(Role::Integration),
            _ => Err(ParseNameError {
                what: "role",
                value: s.to_string(),
                expected: "operator, technician, integration",
            }),
        }
    }
}

/// Scopes an integration client can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "changes:read")]
    ChangesRead,
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
    #[serde(rename = "events:write")]
    EventsWrite,
    #[serde(rename = "batches:write")]
    BatchesWrite,
    #[serde(rename = "work-orders:read")]
    WorkOrdersRead,
    #[serde(rename = "work-orders:write")]
    WorkOrdersWrite,
    #[serde(rename = "records:read")]
    RecordsRead,
    #[serde(rename = "records:write")]
    RecordsWrite,
    #[serde(rename = "commands:publish")]
    CommandsPublish,
    #[serde(rename = "commands:consume")]
    CommandsConsume,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::ChangesRead,
        Scope::WebhooksManage,
        Scope::EventsWrite,
        Scope::BatchesWrite,
        Scope::WorkOrdersRead,
        Scope::WorkOrdersWrite,
        Scope::RecordsRead,
        Scope::RecordsWrite,
        Scope::CommandsPublish,
        Scope::CommandsConsume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ChangesRead => "changes:read",
            Scope::WebhooksManage => "webhooks:manage",
            Scope::EventsWrite => "events:write",
            Scope::BatchesWrite => "batches:write",
            Scope::WorkOrdersRead => "work-orders:read",
            Scope::WorkOrdersWrite => "work-orders:write",
            Scope::RecordsRead => "records:read",
            Scope::RecordsWrite => "records:write",
            Scope::CommandsPublish => "commands:publish",
            Scope::CommandsConsume => "commands:consume",
        }
    }
}

impl FromStr for Scope {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or(ParseNameError {
                what: "scope",
                value: s.to_string(),
                expected: "changes:read, webhooks:manage, events:write, batches:write, \
                       work-orders:read, work-orders:write, records:read, records:write, \
                       commands:publish, commands:consume",
            })
    }
}

/// The user on whose behalf an operation runs. Every typed operation takes
/// one, so the field rules are checked at the single place writes happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: String,
    pub role: Role,
}

impl Actor {
    pub fn new(user_id: impl Into<String>, role: Role) -> Actor {
        Actor {
            user_id: user_id.into(),
            role,
        }
    }

    /// The central node itself (imports, compensating changes).
    pub fn system() -> Actor {
        Actor::new("system", Role::Operator)
    }
}
