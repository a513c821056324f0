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

/// Integer members of request bodies that JSON may spell as whole floats.
///
/// Why: JSON Schema's `integer` is a mathematical integer, so `2.0` is as
/// valid as `2` for every integer member the OpenAPI document declares,
/// and clients (JavaScript's `JSON.stringify`, generated code, schemathesis)
/// do send `2.0`. serde reads `2.0` only as a float, so these members go
/// through [`whole`](self::whole) instead: a whole number in the type's
/// range is taken however it is spelled; `2.5` and out-of-range values are
/// refused, naming the member, as before.
pub(crate) mod whole {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Error, Visitor};
    use serde::Deserializer;

    /// The largest float that still spells one integer exactly (2^53).
    const EXACT_F64: f64 = 9_007_199_254_740_992.0;

    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = i128;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number")
        }

        fn visit_i64<E: Error>(self, value: i64) -> Result<i128, E> {
            Ok(i128::from(value))
        }

        fn visit_u64<E: Error>(self, value: u64) -> Result<i128, E> {
            Ok(i128::from(value))
        }

        fn visit_f64<E: Error>(self, value: f64) -> Result<i128, E> {
            if value.fract() == 0.0 && value.abs() <= EXACT_F64 {
                Ok(value as i128)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(value), &self))
            }
        }
    }

    fn any<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
        let value = d.deserialize_any(Whole)?;
        T::try_from(value).map_err(|_| {
            D::Error::invalid_value(
                serde::de::Unexpected::Other(&value.to_string()),
                &"a whole number in range",
            )
        })
    }

    pub(crate) fn u8<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        any(d)
    }

    pub(crate) fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        any(d)
    }

    pub(crate) fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        any(d)
    }

    pub(crate) fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        any(d)
    }

    /// An optional whole number: `null` or absent is `None`.
    pub(crate) fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i128>,
    {
        struct Maybe<T>(PhantomData<T>);
        impl<'de, T: TryFrom<i128>> Visitor<'de> for Maybe<T> {
            type Value = Option<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number or null")
            }

            fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
                any(d).map(Some)
            }
        }
        d.deserialize_option(Maybe(PhantomData))
    }
}

/// Optional members that may be absent but not `null` (a patch's
/// `title: null` would say nothing; the document declares them not
/// nullable and the server agrees).
pub(crate) fn no_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
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

/// A customer as create and patch bodies give it: `name` must hold a
/// character that is not white space (Unicode `White_Space`, what Rust's
/// `trim` removes); every field is at most 65536 bytes of UTF-8 (the work
/// order's text limit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[schema(
        min_length = 1,
        max_length = 65536,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub address: String,
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub phone: String,
    /// Tax or identity document number.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub document: String,
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

/// A work order's customer as stored (what a peer or an import wrote; the
/// request rules of [`Customer`] are not promised here).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct CustomerView {
    pub name: String,
    pub address: String,
    pub phone: String,
    /// Tax or identity document number.
    pub document: String,
}

impl From<domain::Customer> for CustomerView {
    fn from(value: domain::Customer) -> Self {
        let domain::Customer {
            name,
            address,
            phone,
            document,
        } = value;
        CustomerView {
            name,
            address,
            phone,
            document,
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
    /// The customer's signature drawn in the field app: an SVG path of
    /// `M`/`L` commands in a 600×200 box; empty when none was drawn.
    pub signature: String,
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
    pub customer: CustomerView,
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
                signature: closure.signature,
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

/// The largest value of an integer query parameter without a smaller
/// bound of its own: 2^53 - 1, the largest integer every JSON client
/// (JavaScript's `Number`) holds exactly. Larger values are refused (400),
/// as the OpenAPI document's `maximum` says.
pub const QUERY_INTEGER_MAX: u64 = (1 << 53) - 1;

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
    /// this gateway did not give out is refused with 400).
    #[param(pattern = "^[A-Za-z0-9_-]+$", max_length = 256)]
    pub cursor: Option<String>,
    /// Items per page, 1 to 2^53 - 1; values above `page_size_max` are
    /// capped.
    #[param(minimum = 1, maximum = 9007199254740991_u64)]
    pub page_size: Option<usize>,
}

/// Create a work order (operators and `work-orders:write` clients).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkOrder {
    /// A caller-chosen id (letters, digits, `-`, `_`); a UUID when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub id: Option<String>,
    /// Human code, 1 to 64 characters; when absent the central's next
    /// number, sequential per year (`WO-2026-000123`; the prefix is
    /// `[gateway] work_order_prefix`).
    #[schema(min_length = 1, max_length = 64)]
    pub number: Option<String>,
    /// At most 65536 bytes of UTF-8.
    #[schema(max_length = 65536)]
    pub title: String,
    /// At most 65536 bytes of UTF-8.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub description: String,
    pub customer: Customer,
    /// `normal` when absent or `null`.
    pub priority: Option<Priority>,
    /// An active technician's user id; absent, `null` or empty: unassigned.
    pub assignee: Option<String>,
    pub scheduled_for: Option<String>,
}

/// Edit office-owned fields: at least one member (`minProperties: 1`,
/// set in `contract.rs`: utoipa 5.5 writes its `min_properties` as
/// `maxProperties`). Absent members stay;
/// `assignee: null` (or `""`) unassigns; the other members may not be
/// `null`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchWorkOrder {
    /// At most 65536 bytes of UTF-8.
    #[serde(default, deserialize_with = "no_null")]
    #[schema(nullable = false, max_length = 65536)]
    pub title: Option<String>,
    /// At most 65536 bytes of UTF-8.
    #[serde(default, deserialize_with = "no_null")]
    #[schema(nullable = false, max_length = 65536)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "no_null")]
    #[schema(nullable = false)]
    pub priority: Option<Priority>,
    /// An active technician's user id; `null` or `""` unassigns.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub assignee: Option<Option<String>>,
    /// At most 65536 bytes of UTF-8.
    #[serde(default, deserialize_with = "no_null")]
    #[schema(nullable = false, max_length = 65536)]
    pub scheduled_for: Option<String>,
    #[serde(default, deserialize_with = "no_null")]
    #[schema(nullable = false)]
    pub customer: Option<Customer>,
}

/// Tell "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    /// At most 65536 bytes of UTF-8.
    #[schema(max_length = 65536)]
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
    /// At most 65536 bytes of UTF-8.
    #[serde(default)]
    #[schema(max_length = 65536)]
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
    /// At most 65536 bytes of UTF-8.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub note: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClosure {
    /// At most 65536 bytes of UTF-8.
    #[schema(max_length = 65536)]
    pub resolution: String,
    #[serde(default)]
    pub signed_by: String,
    /// The customer's signature: an SVG path of `M`/`L` commands with
    /// integer coordinates in a 600×200 box, at most 16384 bytes; absent
    /// or empty when the customer could not sign.
    #[serde(default)]
    #[schema(max_length = 16384, pattern = "^(M[-0-9 ML]*)?$")]
    pub signature: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The whole new report text (at most 65536 bytes of UTF-8); stored as
    /// a minimal edit of the old one.
    #[schema(max_length = 65536)]
    pub text: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTimeEntry {
    /// RFC 3339 start (1970 or later).
    #[schema(format = DateTime)]
    pub start: String,
    /// RFC 3339 end, not before `start`.
    #[schema(format = DateTime)]
    pub end: String,
}

/// Changes feed parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Return changes with a seq above this (the previous `last_seq`); at
    /// most the store's last seq (a larger one is a 400: the store may have
    /// been recreated, compare `epoch`).
    #[param(minimum = 0, maximum = 9007199254740991_u64)]
    pub since: Option<u64>,
    /// Entries per page, 1 to 2^53 - 1; values above `page_size_max` are
    /// capped.
    #[param(minimum = 1, maximum = 9007199254740991_u64)]
    pub limit: Option<usize>,
    /// Only this collection (`work_orders`, or a reference table's name).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
    /// `longpoll`: wait for a visible change when there is none yet.
    #[param(inline)]
    pub feed: Option<FeedMode>,
    /// Longpoll wait in milliseconds, 0 to 600000 (waits are cut to
    /// `longpoll_timeout_ms_max`, 25 s by default; a larger value is a
    /// 400). Ignored without `feed=longpoll`.
    #[param(minimum = 0, maximum = 600000)]
    pub timeout: Option<u64>,
}

/// The largest `timeout` a longpoll may ask for, in ms (the wait itself is
/// cut to `longpoll_timeout_ms_max`).
pub const LONGPOLL_TIMEOUT_MS_ASKED_MAX: u64 = 600_000;

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
    /// `next_cursor` of the previous page: records with keys after it
    /// (any record key: 1 to 512 bytes of UTF-8, no control characters).
    #[param(
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub cursor: Option<String>,
    /// Records per page, 1 to 2^53 - 1; values above `page_size_max` are
    /// capped.
    #[param(minimum = 1, maximum = 9007199254740991_u64)]
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

/// `POST /oauth/token` form (RFC 6749 §4.4). The client authenticates
/// with HTTP Basic or with `client_id` and `client_secret`, not both.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Must be `client_credentials` (absent: 400 `invalid_request`).
    #[schema(value_type = String, pattern = "^client_credentials$")]
    pub grant_type: Option<String>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
    /// Space-separated scopes, each one the client holds; all it holds
    /// when absent.
    #[schema(nullable = false)]
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
