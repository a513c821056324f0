//! The bulk-import line format (the benchmark fixture, `fieldsync import`).

use serde::Deserialize;

use crate::work_order::{Customer, NewWorkOrder, Priority, Status};

/// One line of a work-order JSONL import file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureWorkOrder {
    pub id: String,
    pub number: String,
    pub status: Status,
    pub priority: Priority,
    pub customer: Customer,
    #[serde(default)]
    pub title: Option<String>,
    pub description: String,
    pub assignee: Option<String>,
    pub scheduled_for: Option<String>,
    #[serde(default)]
    pub notes: Vec<FixtureNote>,
    #[serde(default)]
    pub materials: Vec<FixtureMaterial>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureNote {
    pub author: String,
    pub text: String,
    pub at: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureMaterial {
    pub sku: String,
    pub qty: f64,
    #[serde(default)]
    pub description: String,
}

impl FixtureWorkOrder {
    /// The creation request this line stands for. Notes and materials become
    /// list items; the status becomes the first status log entry.
    pub fn into_new_work_order(self, created_at: &str) -> NewWorkOrder {
        NewWorkOrder {
            id: Some(self.id),
            number: self.number,
            title: self.title.unwrap_or_default(),
            description: self.description,
            customer: self.customer,
            priority: self.priority,
            assignee: self.assignee,
            scheduled_for: self.scheduled_for,
            created_at: created_at.to_string(),
            initial_status: self.status,
            notes: self
                .notes
                .into_iter()
                .map(|n| (n.author, n.text, n.at))
                .collect(),
            materials: self
                .materials
                .into_iter()
                .map(|m| (m.sku, m.qty, m.description))
                .collect(),
        }
    }
}
