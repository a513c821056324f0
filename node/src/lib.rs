//! A fieldsync node: work orders as Automerge documents, the access policy,
//! the sans-IO sync engine, and (with the `runtime` feature) the sled store
//! and the QUIC driver that give them disk and network.
//!
//! Why the feature split: the core (documents, access, engine) must build and
//! run without tokio, quinn or sled, so the simulator can drive exactly the
//! code that runs in production, deterministically, in one thread.

pub mod access;
pub mod clock;
pub mod doc;
pub mod reassignment;
pub mod sync;
pub mod users;
pub mod vouch;

#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod delivery_config;
#[cfg(feature = "runtime")]
pub mod feed;
#[cfg(feature = "runtime")]
pub mod identity;
#[cfg(feature = "runtime")]
pub mod import;
pub mod ingest_config;
#[cfg(feature = "runtime")]
pub mod numbering;
#[cfg(feature = "runtime")]
pub mod quic;
#[cfg(feature = "runtime")]
pub mod secret;
#[cfg(feature = "runtime")]
pub mod store;
