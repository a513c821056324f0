//! Wall-clock time for the values the gateway stamps on operations.
//!
//! Why a re-export: the node's `clock` is the one place the product reads
//! the wall clock and the one format it writes timestamps in; the gateway's
//! handlers keep naming `crate::clock` so they need not know where it lives.

pub(crate) use fieldsync_node::clock::{now_rfc3339, now_s};
