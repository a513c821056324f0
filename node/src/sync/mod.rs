//! The sans-IO sync engine: frames and time in, frames, timers and store
//! writes out. No sockets, no clocks, no threads, no tokio, quinn or sled:
//! the QUIC driver (`crate::quic`) and the simulator are two thin drivers of
//! exactly this code.
//!
//! One [`Session`] per connected peer. Call order, per session:
//!
//! 1. [`Session::new`], then [`Session::start`] (queues our `Hello`).
//! 2. Feed inputs as they happen: [`Session::handle_frame`] (or
//!    `handle_bytes`) for each frame from the peer, in order;
//!    [`Session::handle_write_done`] when a write the session queued is
//!    durable; [`Session::handle_local_change`] when the local store's last
//!    seq advanced; [`Session::handle_timeout`] when the time from
//!    `poll_timeout` has come.
//! 3. After every input, drain the outputs: [`Session::poll_frame`] until
//!    `None` (send them in order), [`Session::poll_event`], and re-arm the
//!    timer from [`Session::poll_timeout`].
//!
//! An `Err` from any `handle_*` means the peer broke the protocol or the
//! store failed: close the connection and log the reason. The store is
//! never left half-written by a bad peer: every change is checked before it
//! is merged.
//!
//! The protocol, in one paragraph: each side sends `Hello` with the
//! checkpoint it holds for the other. Each side then pages through its own
//! changelog from the peer's checkpoint and `Announce`s the documents the
//! peer may see, with their heads. The receiver answers `Want`: whole
//! documents it has never seen (sent as `DocBatch`, zstd-compressed saved
//! bytes) and documents to reconcile (it starts Automerge's sync protocol
//! with `DocSync`). When every document of a page is merged, the receiver
//! queues its checkpoint write *after* the document writes (the store is
//! FIFO, so the checkpoint is never durable before them) and, once it is
//! durable, sends `PageDone`. An unchanged peer costs one round trip.
//!
//! Two shortcuts for an office, each negotiated in `Hello`: a peer holding
//! nothing of its changelog is primed with whole documents, unannounced
//! (`Prime`, version 2); and an announce page carries the changes the
//! office expects the peer to lack (`AnnouncePush`, version 3), which the
//! peer merges before deciding what is left to reconcile.

mod mem_store;
mod records;
mod session;
mod store;
#[cfg(test)]
mod tests;

pub use mem_store::{MemOp, MemStore};
pub use session::{Event, Progress, Session, SessionConfig, SessionError};
pub use store::{
    cut_reader_page, load_each, HeldRecord, LogEntry, ReaderPage, SyncStore, WriteId,
    REVOKED_DOCS_READ_MAX,
};
