//! What people do: operators and an integration at the centrals,
//! technicians on their laptops, and the occasional tampered laptop.
//!
//! Everything goes through the same typed operations the gateway and the
//! CLI use (`MemStore::create/apply`), except the forbidden edits, which
//! write Automerge directly, bypassing the typed operations, the way a
//! modified client would. A world holds only a few work orders, so
//! concurrent edits of the same document are the common case.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, ReadDoc, Value, ROOT};
use fieldsync_node::doc::Operation;
use fieldsync_node::sync::SyncStore;
use fieldsync_schemas::{
    Actor, Customer, MaterialState, NewWorkOrder, OperatorPatch, Priority, Role, Status,
};
use rand::Rng;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::PendingWrite;
use crate::world::{Sim, FIELD_COLLECTION, OFFICE_COLLECTION};
use crate::Failure;

/// The virtual clock's start: 2026-01-01T00:00:00Z, in ms since the Unix
/// epoch. The engine's `now_ms` is a wall clock (it judges items' times
/// against it), so virtual time counts from a real date.
pub(crate) const CLOCK_ZERO_MS: u64 = 1_767_225_600_000;

/// Longest report a technician writes in a run, in bytes: reports are
/// rewritten often and must not dominate the run time.
const REPORT_BYTES_MAX: usize = 400;

/// Forged values only a tampered laptop writes: no operator ever writes
/// them, so the central showing one means a forbidden change got through.
pub(crate) const FORGED_PRIORITY: &str = "urgent";
pub(crate) const FORGED_ASSIGNEE_PREFIX: &str = "intruder-";
pub(crate) const FORGED_CUSTOMER_PREFIX: &str = "forged-";

/// The priorities operators use (never the forged one).
const OPERATOR_PRIORITIES: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::High];

/// The report's text, read in place (a whole view costs a clone).
fn report_text(doc: &Automerge) -> String {
    match doc.get(ROOT, "report") {
        Ok(Some((Value::Object(_), report))) => doc.text(&report).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The ids of the materials requested so far, read in place.
fn material_ids(doc: &Automerge) -> Vec<String> {
    let Ok(Some((Value::Object(_), list))) = doc.get(ROOT, "materials") else {
        return Vec::new();
    };
    (0..doc.length(&list))
        .filter_map(|index| match doc.get(&list, index) {
            Ok(Some((Value::Object(_), item))) => match doc.get(&item, "id") {
                Ok(Some((Value::Scalar(id), _))) => id.as_str().map(str::to_string),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

impl Sim {
    pub(crate) fn timestamp(&self) -> String {
        let seconds = (self.now_ms / 1000) as i64;
        OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "2026-01-01T00:00:00Z".to_string())
    }

    fn next_item(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}{}", self.next_item);
        self.next_item += 1;
        id
    }

    fn active_users(&self) -> Vec<usize> {
        (0..self.users.len())
            .filter(|&u| !self.users[u].revoked)
            .collect()
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.random_range(0..items.len())].clone())
    }

    fn pick_assignee(&mut self) -> Option<String> {
        if self.rng.random_bool(0.1) {
            return None;
        }
        let users = self.active_users();
        self.pick(&users).map(|u| self.users[u].id.clone())
    }

    fn record(
        &mut self,
        node: usize,
        doc: &str,
        result: Result<u64, impl std::fmt::Display>,
        what: String,
    ) {
        let name = self.nodes[node].name.clone();
        match result {
            Ok(write) => {
                self.stats.ops_ok += 1;
                let heads = self.nodes[node]
                    .store
                    .live_meta(doc)
                    .map(|m| m.heads.clone())
                    .unwrap_or_default();
                self.nodes[node].pending.push(PendingWrite {
                    write,
                    doc: doc.to_string(),
                    heads,
                    what: what.clone(),
                    doomed: false,
                });
                self.log(&format!("{name}: {what} (write {write})"));
            }
            Err(error) => {
                self.stats.ops_refused += 1;
                self.log(&format!("{name}: {what} refused: {error}"));
            }
        }
    }

    /// An operator or the integration acts at a central.
    pub(crate) fn central_op(&mut self) -> Result<(), Failure> {
        let centrals: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_central() && self.nodes[i].up)
            .collect();
        let Some(node) = self.pick(&centrals) else {
            return Ok(());
        };
        // Records have one writer: the first central (as the ERP's).
        if Some(node) == self.first_central() && self.rng.random_bool(0.1) {
            self.record_op(node);
            return Ok(());
        }
        let who = if self.rng.random_bool(0.8) {
            Actor::new(
                format!("op{}", self.rng.random_range(1..=2)),
                Role::Operator,
            )
        } else {
            Actor::new("erp", Role::Integration)
        };
        let docs = self.nodes[node].store.doc_ids();
        if docs.is_empty() || (self.next_doc <= self.docs_max && self.rng.random_bool(0.15)) {
            return self.create(node, &who);
        }
        let doc = self.pick(&docs).expect("docs is not empty");
        let roll = self.rng.random_range(0..100);
        let (op, what) = match roll {
            0..=29 => {
                let assignee = self.pick_assignee();
                let what = format!(
                    "{} reassigns {doc} to {}",
                    who.user_id,
                    assignee.as_deref().unwrap_or("nobody")
                );
                (
                    Operation::EditOperatorFields(OperatorPatch {
                        assignee: Some(assignee),
                        ..Default::default()
                    }),
                    what,
                )
            }
            30..=54 => self.operator_patch(&who, &doc),
            55..=69 => {
                let id = self.next_item("n");
                let at = self.timestamp();
                let what = format!("{} adds note {id} to {doc}", who.user_id);
                (
                    Operation::AddNote {
                        id,
                        at,
                        text: format!("office note {}", self.rng.random_range(0..1000)),
                    },
                    what,
                )
            }
            70..=76 => {
                let what = format!("{} cancels {doc}", who.user_id);
                (
                    Operation::AppendStatus {
                        at: self.timestamp(),
                        to: Status::Cancelled,
                        note: "cancelled".into(),
                    },
                    what,
                )
            }
            77..=81 => {
                let what = format!("{} reopens {doc} as assigned", who.user_id);
                (
                    Operation::AppendStatus {
                        at: self.timestamp(),
                        to: Status::Assigned,
                        note: String::new(),
                    },
                    what,
                )
            }
            82..=98 => {
                let ids = self.nodes[node]
                    .store
                    .live_doc(&doc)
                    .map(material_ids)
                    .unwrap_or_default();
                let Some(id) = self.pick(&ids) else {
                    return Ok(());
                };
                let state = if self.rng.random_bool(0.7) {
                    MaterialState::Approved
                } else {
                    MaterialState::Rejected
                };
                let what = format!(
                    "{} marks material {id} of {doc} {}",
                    who.user_id,
                    state.as_str()
                );
                (Operation::SetMaterialState { id, state }, what)
            }
            _ => (
                Operation::Tombstone,
                format!("{} deletes {doc}", who.user_id),
            ),
        };
        let result = self.nodes[node].store.apply(&doc, &who, &op, self.now_ms);
        if result.is_ok() {
            if let Operation::EditOperatorFields(OperatorPatch {
                assignee: Some(assignee),
                ..
            }) = &op
            {
                self.model
                    .assignees_ever
                    .entry(doc.clone())
                    .or_default()
                    .insert(assignee.clone().unwrap_or_default());
            }
        }
        self.record(node, &doc, result, what);
        Ok(())
    }

    /// The integration writes or deletes a record at `node`.
    fn record_op(&mut self, node: usize) {
        let collection = if self.rng.random_bool(0.5) {
            FIELD_COLLECTION
        } else {
            OFFICE_COLLECTION
        };
        let key = format!("k{}", self.rng.random_range(0..8));
        let value = (!self.rng.random_bool(0.2)).then(|| {
            let n = self.rng.random_range(0..1000);
            format!("{{\"n\":{n}}}").into_bytes()
        });
        let what = format!(
            "erp {} record {collection}/{key}",
            if value.is_some() { "writes" } else { "deletes" }
        );
        let name = self.nodes[node].name.clone();
        match self.nodes[node].store.write_record(collection, &key, value) {
            Ok(write) => {
                self.stats.ops_ok += 1;
                self.log(&format!("{name}: {what} (write {write})"));
            }
            Err(error) => {
                self.stats.ops_refused += 1;
                self.log(&format!("{name}: {what} refused: {error}"));
            }
        }
    }

    pub(crate) fn first_central(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.is_central())
    }

    fn operator_patch(&mut self, who: &Actor, doc: &str) -> (Operation, String) {
        let mut patch = OperatorPatch::default();
        let mut fields = Vec::new();
        if self.rng.random_bool(0.5) {
            patch.title = Some(format!("Job {}", self.rng.random_range(0..100)));
            fields.push("title");
        }
        if self.rng.random_bool(0.4) {
            patch.priority = self.pick(&OPERATOR_PRIORITIES);
            fields.push("priority");
        }
        if self.rng.random_bool(0.3) {
            patch.description = Some(format!("Symptom {}", self.rng.random_range(0..100)));
            fields.push("description");
        }
        if self.rng.random_bool(0.3) || fields.is_empty() {
            let n = self.rng.random_range(0..20);
            patch.customer = Some(Customer {
                name: format!("Customer {n}"),
                address: format!("Street {}", self.rng.random_range(0..50)),
                phone: format!("555-{n:04}"),
                document: String::new(),
            });
            fields.push("customer");
        }
        let what = format!("{} edits {} of {doc}", who.user_id, fields.join("+"));
        (Operation::EditOperatorFields(patch), what)
    }

    fn create(&mut self, node: usize, who: &Actor) -> Result<(), Failure> {
        if self.next_doc > self.docs_max {
            return Ok(());
        }
        let id = format!("wo-{}", self.next_doc);
        self.next_doc += 1;
        let assignee = self.pick_assignee();
        let new = NewWorkOrder {
            id: Some(id.clone()),
            number: format!("WO-2026-{:06}", self.next_doc - 1),
            title: format!("Job {}", self.rng.random_range(0..100)),
            description: "Reported by phone".into(),
            customer: Customer {
                name: format!("Customer {}", self.rng.random_range(0..20)),
                address: "Street 1".into(),
                phone: "555-0000".into(),
                document: String::new(),
            },
            priority: self.pick(&OPERATOR_PRIORITIES).unwrap_or(Priority::Normal),
            assignee: assignee.clone(),
            scheduled_for: None,
            created_at: self.timestamp(),
            initial_status: if assignee.is_some() {
                Status::Assigned
            } else {
                Status::Open
            },
            notes: vec![],
            materials: vec![],
        };
        self.model
            .assignees_ever
            .entry(id.clone())
            .or_default()
            .insert(assignee.clone().unwrap_or_default());
        self.stats.docs += 1;
        let result = self.nodes[node].store.create(who, &id, &new, self.now_ms);
        let what = format!(
            "{} creates {id} for {}",
            who.user_id,
            assignee.as_deref().unwrap_or("nobody")
        );
        self.record(node, &id, result, what);
        Ok(())
    }

    /// A technician on an up laptop works on one of their work orders.
    fn tech_and_doc(&mut self) -> Option<(usize, Actor, String)> {
        let techs: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].is_central() && self.nodes[i].up && !self.out_of_system(i))
            .collect();
        let node = self.pick(&techs)?;
        let user = self.users[self.nodes[node].user()?].id.clone();
        let store = &self.nodes[node].store;
        let mine: Vec<String> = store
            .doc_ids()
            .into_iter()
            .filter(|id| {
                store
                    .live_meta(id)
                    .is_some_and(|m| m.assignee.as_deref() == Some(user.as_str()))
            })
            .collect();
        let doc = self.pick(&mine)?;
        Some((node, Actor::new(user, Role::Technician), doc))
    }

    pub(crate) fn tech_op(&mut self) -> Result<(), Failure> {
        let Some((node, who, doc)) = self.tech_and_doc() else {
            return Ok(());
        };
        let at = self.timestamp();
        let roll = self.rng.random_range(0..100);
        let (op, what) = match roll {
            0..=24 => {
                let id = self.next_item("n");
                let what = format!("{} adds note {id} to {doc}", who.user_id);
                (
                    Operation::AddNote {
                        id,
                        at,
                        text: format!("field note {}", self.rng.random_range(0..1000)),
                    },
                    what,
                )
            }
            25..=39 => {
                let id = self.next_item("m");
                let what = format!("{} requests material {id} for {doc}", who.user_id);
                let qty = f64::from(self.rng.random_range(1..=5));
                (
                    Operation::RequestMaterial {
                        id,
                        at,
                        sku: format!("SKU-{}", self.rng.random_range(0..30)),
                        qty,
                        unit: "pc".into(),
                        description: "part".into(),
                    },
                    what,
                )
            }
            40..=59 => {
                let old = self.nodes[node]
                    .store
                    .live_doc(&doc)
                    .map(report_text)
                    .unwrap_or_default();
                let mut text = old.clone();
                if text.len() > REPORT_BYTES_MAX || (self.rng.random_bool(0.2) && !text.is_empty())
                {
                    let cut = self.rng.random_range(0..text.len().max(1));
                    // Reports are ASCII, so every index is a char boundary.
                    text.truncate(cut);
                }
                text.push_str(&format!(" step{}", self.rng.random_range(0..100)));
                let what = format!(
                    "{} edits the report of {doc} ({} -> {} bytes)",
                    who.user_id,
                    old.len(),
                    text.len()
                );
                (Operation::EditReport { text }, what)
            }
            60..=74 => {
                let minutes = self.rng.random_range(5..=120) as u64;
                let start = self.timestamp();
                let end_s = (self.now_ms / 1000 + minutes * 60) as i64;
                let end = OffsetDateTime::from_unix_timestamp(end_s)
                    .ok()
                    .and_then(|t| t.format(&Rfc3339).ok())
                    .unwrap_or_else(|| start.clone());
                (
                    Operation::AppendTime { start, end },
                    format!("{} logs {minutes} min on {doc}", who.user_id),
                )
            }
            75..=91 => {
                let to = self
                    .pick(&[
                        Status::EnRoute,
                        Status::InProgress,
                        Status::OnHold,
                        Status::Completed,
                    ])
                    .unwrap_or(Status::InProgress);
                let what = format!("{} moves {doc} to {to}", who.user_id);
                (
                    Operation::AppendStatus {
                        at,
                        to,
                        note: String::new(),
                    },
                    what,
                )
            }
            _ => {
                let what = format!("{} closes {doc}", who.user_id);
                (
                    Operation::Close {
                        at,
                        resolution: "fixed".into(),
                        signed_by: "Customer".into(),
                        signature: String::new(),
                    },
                    what,
                )
            }
        };
        let result = self.nodes[node].store.apply(&doc, &who, &op, self.now_ms);
        self.record(node, &doc, result, what);
        Ok(())
    }

    /// A tampered laptop writes an office-only field straight into its
    /// replica, bypassing the typed operations.
    pub(crate) fn forbidden_edit(&mut self) -> Result<(), Failure> {
        let Some((node, who, doc)) = self.tech_and_doc() else {
            return Ok(());
        };
        let Some(mut automerge) = self.nodes[node].store.live_doc(&doc).cloned() else {
            return Ok(());
        };
        let before = automerge.get_heads();
        let n = self.next_item("");
        let field = self.rng.random_range(0..3);
        let forged = match field {
            0 => FORGED_PRIORITY.to_string(),
            1 => format!("{FORGED_ASSIGNEE_PREFIX}{n}"),
            _ => format!("{FORGED_CUSTOMER_PREFIX}{n}"),
        };
        let mut tx = automerge.transaction();
        let written = match field {
            0 => tx.put(ROOT, "priority", forged.as_str()),
            1 => tx.put(ROOT, "assignee", forged.as_str()),
            _ => match tx.get(ROOT, "customer") {
                Ok(Some((Value::Object(_), customer))) => {
                    tx.put(&customer, "name", forged.as_str())
                }
                _ => Ok(()),
            },
        };
        if written.is_err() {
            tx.rollback();
            return Ok(());
        }
        tx.commit_with(CommitOptions::default().with_time((self.now_ms / 1000) as i64));
        let bytes = automerge.save_after(&before);
        if field == 1 {
            self.model
                .assignees_ever
                .entry(doc.clone())
                .or_default()
                .insert(forged.clone());
        }
        self.stats.forbidden_edits += 1;
        let name = self.nodes[node].name.clone();
        let key = ["priority", "assignee", "customer.name"][field];
        match self.nodes[node].store.merge(&doc, &bytes, self.now_ms) {
            Ok(_) => self.log(&format!(
                "{name}: TAMPERED {} writes {key}={forged} on {doc} directly",
                who.user_id
            )),
            Err(error) => self.log(&format!("{name}: tampered write on {doc} failed: {error}")),
        }
        Ok(())
    }
}
