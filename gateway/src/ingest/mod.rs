//! ERP integration: table batches with summaries, over gRPC `TableStream`
//! and over HTTP, the entities an ERP uploads, and the event envelope.
//!
//! Pure cores, each table-tested in its own file: `rules.rs` (a batch's
//! numbering, idempotent resends and the summary check), `rows.rs` (a
//! message's rows against its schema: record keys, values, deletes),
//! `lease.rs` (one sender per ERP and client). Around them: `staging.rs`
//! (batches and their staged rows as internal records, written through
//! the node's committer), `service.rs` (the one code path both transports
//! call), `grpc.rs` (the tonic service), `expiry.rs` (abandoned batches),
//! `history.rs` (finished batches and event keys, pruned),
//! `views.rs` (what the API and the CLI show), `entities.rs` (which tables
//! an ERP uploads).

pub mod proto {
    //! The `TableStream` messages, server and client, generated at build
    //! time from `schemas/proto/tablestream.proto`.
    #![allow(unreachable_pub, clippy::all, missing_docs)]
    tonic::include_proto!("com.totvs.ingestion.grpc");
}

pub mod entities;
pub(crate) mod event;
pub(crate) mod expiry;
pub(crate) mod grpc;
pub(crate) mod history;
pub(crate) mod lease;
pub(crate) mod rows;
pub mod rules;
pub(crate) mod service;
pub(crate) mod staging;
pub mod views;
