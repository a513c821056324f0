//! Domain and wire types shared by every fieldsync crate.
//!
//! Why a crate of its own: the node, the gateway and the simulator must agree
//! on what a work order is, who may change which field, and what travels on
//! the wire. Serializable types impose backwards-compatibility constraints, so
//! they live in one place where a change is visible as a change to the
//! contract. This crate does no IO and knows nothing of Automerge or sled.

pub mod change;
pub mod collection;
pub mod field_rules;
pub mod fixture;
pub mod role;
pub mod sync_frame;
pub mod work_order;

pub use change::{ChangeEntry, ChangeOp, Collection};
pub use collection::CollectionKind;
pub use field_rules::{FieldRule, FieldShape, Permission, FIELD_RULES};
pub use role::{Actor, Role, Scope};
pub use work_order::{
    Closure, Customer, Material, MaterialState, NewWorkOrder, Note, OperatorPatch, Priority,
    Status, StatusEntry, TimeEntry, WorkOrderView,
};
