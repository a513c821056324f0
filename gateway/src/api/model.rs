//! The JSON shapes of the REST API, with their OpenAPI schemas.
//!
//! Why mirror types instead of serializing `fieldsync_schemas` directly:
//! the schemas crate knows nothing of HTTP or OpenAPI, and the public JSON
//! contract should change only when this file changes. Conversions
//! destructure the domain types field by field, so a field added there
//! fails to compile here until it is placed in the contract.

use std::collections::BTreeMap;

use fieldsync_schemas as domain;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Declare an enum that mirrors a domain enum, with both conversions.
macro_rules! mirror_enum {
    ($(#[$meta:meta])* $name:ident => $domain:path { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl From<$domain> for $name {
            fn from(value: $domain) -> Self {
                use $domain as D;
                match value { $(D::$variant => $name::$variant),+ }
            }
        }

        impl From<$name> for $domain {
            fn from(value: $name) -> Self {
                use $domain as D;
                match value { $($name::$variant => D::$variant),+ }
            }
        }
    };
}

mirror_enum!(
    /// Work-order priority.
    Priority => domain::Priority { Low, Normal, High, Urgent }
);
mirror_enum!(
    /// Work-order status, derived from the status log.
    Status => domain::Status { Open, Assigned, EnRoute, InProgress, OnHold, Completed, Cancelled }
);
mirror_enum!(
    /// State of a requested material.
    MaterialState => domain::MaterialState { Requested, Approved, Rejected }
);
mirror_enum!(
    /// What a change did to its document.
    ChangeOp => domain::ChangeOp { Create, Update, Delete }
);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub phone: String,
    /// Tax or identity document number.
    #[serde(default)]
    pub document: String,
}

impl From<domain::Customer> for Customer {
    fn from(value: domain::Customer) -> Self {
        let domain::Customer {
            name,
            address,
            phone,
            document,
        } = value;
        Customer {
            name,
            address,
            phone,
            document,
        }
    }
}

impl From<Customer> for domain::Customer {
    fn from(value: Customer) -> Self {
        domain::Customer {
            name: value.name,
            address: value.address,
            phone: value.phone,
            document: value.document,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StatusEntry {
    pub at: String,
    pub by: String,
    /// Role of `by` when the transition was made.
    pub role: String,
    pub to: Status,
    pub note: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Note {
    pub id: String,
    pub at: String,
    pub by: String,
    pub text: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
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

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TimeEntry {
    pub by: String,
    pub start: String,
    pub end: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Closure {
    pub at: String,
    pub by: String,
    pub resolution: String,
    pub signed_by: String,
}

/// A work order as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WorkOrder {
    pub id: String,
    /// Human code, e.g. `WO-2026-000123`.
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
    /// Derived from `status_log`, never stored.
    pub status: Status,
    /// True when the status log holds conflicting terminal transitions.
    pub conflict: bool,
    pub status_log: Vec<StatusEntry>,
    pub notes: Vec<Note>,
    pub materials: Vec<Material>,
    pub report: String,
    pub time_log: Vec<TimeEntry>,
    pub closure: Option<Closure>,
    pub deleted: bool,
    /// Losing values of concurrently edited fields, by field path.
    #[schema(value_type = BTreeMap<String, Vec<Object>>)]
    pub conflicts: BTreeMap<String, Vec<serde_json::Value>>,
    /// Document heads (hex change hashes); the ETag of this version.
    pub heads: Vec<String>,
    /// List items without a valid shape, left out of their list
    /// (`materials[2]: qty is missing or invalid`). Empty unless a peer
    /// wrote around the typed operations.
    pub invalid_items: Vec<String>,
}

impl From<domain::WorkOrderView> for WorkOrder {
    fn from(view: domain::WorkOrderView) -> Self {
        let domain::WorkOrderView {
            id,
            number,
            schema,
            created_at,
            created_by,
            title,
            description,
            customer,
            priority,
            assignee,
            scheduled_for,
            status,
            conflict,
            status_log,
            notes,
            materials,
            report,
            time_log,
            closure,
            deleted,
            conflicts,
            heads,
            invalid_items,
        } = view;
        WorkOrder {
            id,
            number,
            schema,
            created_at,
            created_by,
            title,
            description,
            customer: customer.into(),
            priority: priority.into(),
            assignee,
            scheduled_for,
            status: status.into(),
            conflict,
            status_log: status_log
                .into_iter()
                .map(|entry| StatusEntry {
                    at: entry.at,
                    by: entry.by,
                    role: entry.role,
                    to: entry.to.into(),
                    note: entry.note,
                })
                .collect(),
            notes: notes
                .into_iter()
                .map(|note| Note {
                    id: note.id,
                    at: note.at,
                    by: note.by,
                    text: note.text,
                })
                .collect(),
            materials: materials
                .into_iter()
                .map(|material| Material {
                    id: material.id,
                    sku: material.sku,
                    qty: material.qty,
                    unit: material.unit,
                    description: material.description,
                    by: material.by,
                    at: material.at,
                    state: material.state.into(),
                })
                .collect(),
            report,
            time_log: time_log
                .into_iter()
                .map(|entry| TimeEntry {
                    by: entry.by,
                    start: entry.start,
                    end: entry.end,
                })
                .collect(),
            closure: closure.map(|closure| Closure {
                at: closure.at,
                by: closure.by,
                resolution: closure.resolution,
                signed_by: closure.signed_by,
            }),
            deleted,
            conflicts,
            heads,
            invalid_items,
        }
    }
}

/// One line of the work-order list.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WorkOrderSummary {
    pub id: String,
    pub number: String,
    pub title: String,
    pub customer_name: String,
    pub priority: Priority,
    pub status: Status,
    pub conflict: bool,
    pub assignee: Option<String>,
    pub scheduled_for: Option<String>,
    pub deleted: bool,
    pub heads: Vec<String>,
}

impl From<&WorkOrder> for WorkOrderSummary {
    fn from(order: &WorkOrder) -> Self {
        WorkOrderSummary {
            id: order.id.clone(),
            number: order.number.clone(),
            title: order.title.clone(),
            customer_name: order.customer.name.clone(),
            priority: order.priority,
            status: order.status,
            conflict: order.conflict,
            assignee: order.assignee.clone(),
            scheduled_for: order.scheduled_for.clone(),
            deleted: order.deleted,
            heads: order.heads.clone(),
        }
    }
}

/// A page of the work-order list.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WorkOrderPage {
    pub items: Vec<WorkOrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last page. Opaque:
    /// sealed by the gateway, it shows nothing of where the list stopped.
    pub next_cursor: Option<String>,
}

/// Filters and paging of the work-order list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkOrderQuery {
    /// Only work orders with this derived status.
    pub status: Option<Status>,
    /// Only work orders assigned to this user.
    pub assignee: Option<String>,
    pub priority: Option<Priority>,
    /// `true`: only deleted (tombstoned) work orders; default: only live ones.
    pub deleted: Option<bool>,
    /// `next_cursor` of the previous page, as given (an opaque token; one
    /// this gateway did not give out is refused).
    #[param(pattern = "^[A-Za-z0-9_-]+$", max_length = 256)]
    pub cursor: Option<String>,
    /// Items per page, 1 to `page_size_max` (larger values are capped).
    #[param(minimum = 1)]
    pub page_size: Option<usize>,
}

/// Create a work order (operators and `work-orders:write` clients).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkOrder {
    /// A caller-chosen id (letters, digits, `-`, `_`); a UUID when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub id: Option<String>,
    /// Human code; `WO-`, the year and the first 8 characters of the id
    /// when absent.
    #[schema(min_length = 1, max_length = 64)]
    pub number: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub customer: Customer,
    pub priority: Option<Priority>,
    pub assignee: Option<String>,
    pub scheduled_for: Option<String>,
}

/// Edit office-owned fields. Absent fields stay; `assignee: null` unassigns.
/// At least one field must be present.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchWorkOrder {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub assignee: Option<Option<String>>,
    pub scheduled_for: Option<String>,
    pub customer: Option<Customer>,
}

/// Tell "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    pub text: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMaterial {
    pub sku: String,
    /// Positive quantity.
    #[schema(exclusive_minimum = 0.0)]
    pub qty: f64,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMaterialState {
    pub state: MaterialState,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStatus {
    /// Technicians may move to `en_route`, `in_progress`, `on_hold`,
    /// `completed`; the office to any status.
    pub to: Status,
    #[serde(default)]
    pub note: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClosure {
    pub resolution: String,
    #[serde(default)]
    pub signed_by: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The whole new report text; stored as a minimal edit of the old one.
    pub text: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTimeEntry {
    /// RFC 3339 start.
    pub start: String,
    /// RFC 3339 end, not before `start`.
    pub end: String,
}

/// Changes feed parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Return changes with a seq above this (the previous `last_seq`).
    #[param(minimum = 0)]
    pub since: Option<u64>,
    /// Entries per page, 1 to `page_size_max` (larger values are capped).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
    /// Only this collection (`work_orders`, or a reference table's name).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
    /// `longpoll`: wait for a visible change when there is none yet.
    #[param(inline)]
    pub feed: Option<FeedMode>,
    /// Longpoll wait in milliseconds (capped at `longpoll_timeout_ms_max`;
    /// ignored without `feed=longpoll`).
    #[param(minimum = 0)]
    pub timeout: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedMode {
    Normal,
    Longpoll,
}

/// One change in the feed: the document's latest change in this page.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Change {
    pub seq: u64,
    pub collection: String,
    pub id: String,
    /// External id (the work order number), when the document has one.
    pub number: Option<String>,
    pub op: ChangeOp,
    /// Heads of the document after this change (empty for records).
    pub heads: Vec<String>,
    /// A record's version after this change (absent for work orders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl From<domain::ChangeEntry> for Change {
    fn from(entry: domain::ChangeEntry) -> Self {
        let domain::ChangeEntry {
            seq,
            collection,
            id,
            number,
            op,
            heads,
            version,
        } = entry;
        Change {
            seq,
            collection: collection.name().to_string(),
            id,
            number,
            op: op.into(),
            heads,
            version,
        }
    }
}

/// A page of the changes feed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChangesPage {
    pub entries: Vec<Change>,
    /// The highest seq this page covers: pass it as `since` next time. For
    /// a technician it is their own cursor, never the store's last seq: the
    /// seq of the last change shown (or the `since` sent) when the page
    /// reached the end, where the scan stopped when `next` is set.
    pub last_seq: u64,
    /// Set when more changes are already waiting (same value as `last_seq`).
    pub next: Option<u64>,
    /// The store's epoch (hex). A different epoch means the store was
    /// recreated: start again from `since=0`.
    pub epoch: String,
}

mirror_enum!(
    /// A role that may read a data collection.
    Reader => domain::Role { Operator, Technician, Integration }
);
mirror_enum!(
    /// Which kind of record collection: `data` (on the feed, readable per
    /// role) or `internal` (never served over the API).
    CollectionKind => domain::CollectionKind { Data, Internal }
);

/// One data collection the caller may read.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CollectionSummary {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
    /// Always `data`: internal collections are never listed.
    pub kind: CollectionKind,
    /// Live (not deleted) records.
    pub count: u64,
    /// Roles that may read it; an integration client also needs the
    /// `records:read` scope. Operators always may.
    pub readers: Vec<Reader>,
}

/// One record: a versioned JSON value under a key in a collection.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RecordBody {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub collection: String,
    /// 1 to 512 bytes of UTF-8 without control characters.
    #[schema(min_length = 1, max_length = 512)]
    pub key: String,
    /// Starts at 1 and grows by one per write; also the `ETag`, quoted.
    #[schema(minimum = 1)]
    pub version: u64,
    /// The record's JSON value (any JSON, at most 65536 bytes compact).
    pub value: serde_json::Value,
    /// Always `false`: deleted records are not served.
    pub deleted: bool,
}

/// A page of a collection's records, in key order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RecordPage {
    pub items: Vec<RecordBody>,
    /// Pass as `cursor` for the next page (the last key of this one);
    /// absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging of a collection's records.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    /// `next_cursor` of the previous page: records with keys after it.
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
    /// Records per page, 1 to `page_size_max` (larger values are capped).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
}

/// Who may read a data collection.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionGrants {
    /// Roles that may read. Operators always may and are always listed in
    /// answers; an integration client also needs `records:read`.
    pub readers: Vec<Reader>,
}

/// `POST /oauth/token` form (RFC 6749 §4.4).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Space-separated scopes; all the client holds when absent.
    pub scope: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub scope: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RegistryEndpoint {
    pub version: String,
    pub address: String,
}

/// One service in the registry (reference §3 format).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RegistryService {
    pub service: String,
    pub endpoints: Vec<RegistryEndpoint>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Highest durable seq of the store: only for operators and
    /// integration clients (with a bearer token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}
