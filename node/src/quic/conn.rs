//! One sync session over one QUIC connection: the loop that pumps the
//! sans-IO [`Session`].
//!
//! Shape: a reader task turns the stream into frames (size-checked before
//! the body is read) and a writer task writes frames out; both talk to the
//! loop through small bounded channels. The loop never awaits a write or a
//! read inside a handler, so a slow peer in one direction cannot stop the
//! other direction (two nodes both blocked writing to each other would
//! otherwise deadlock). Inputs, in `select!`: a frame from the peer
//! (`handle_bytes`), a queued store write becoming durable
//! (`handle_write_done`), the store's `last_seq` moving (`handle_local_change`),
//! the session's timer (`handle_timeout`), the node stopping. After every
//! input the session's frames and events are drained.
//!
//! Any error closes this connection only, with the reason logged here and
//! sent to the peer as the close reason.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_schemas::sync_frame::FRAME_BYTES_MAX;
use tokio::sync::{mpsc, watch};

use super::directory::PeerIdentity;
use super::framing::{read_frame, write_frame, FramingError};
use super::peers::PeerMap;
use super::Context;
use crate::store::now_ms;
use crate::store::sync_adapter::SyncAdapter;
use crate::sync::{Event, Session, SessionConfig, SessionError};

/// Frames read ahead of the session, at most (each up to `FRAME_BYTES_MAX`).
const INBOUND_FRAMES_MAX: usize = 4;
/// Encoded frames waiting for the writer task, at most.
const OUTBOUND_FRAMES_MAX: usize = 16;
/// How long a closing session may spend delivering its last frames.
const CLOSE_FLUSH_MS: u64 = 1_000;
/// The peer map is refreshed at most this often while frames flow.
const REPORT_INTERVAL_MS: u64 = 100;
/// Close reasons longer than this are cut (QUIC carries them in one packet).
const CLOSE_REASON_BYTES_MAX: usize = 256;
/// While documents arrive, progress is logged at most this often.
const PROGRESS_LOG_INTERVAL_MS: u64 = 2_000;
/// Added to two round trips when waiting for the peer's first announce.
const SETTLE_MARGIN_MS: u64 = 100;

/// Application close codes.
pub(crate) const CLOSE_DONE: u32 = 0;
pub(crate) const CLOSE_PROTOCOL: u32 = 1;
pub(crate) const CLOSE_STORE: u32 = 2;
pub(crate) const CLOSE_DUPLICATE: u32 = 3;
pub(crate) const CLOSE_NOT_ALLOWED: u32 = 4;

/// How a session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionEnd {
    #[error("the node is stopping")]
    Stopping,
    #[error("the peer ended the session")]
    PeerFinished,
    #[error("{0}")]
    Protocol(String),
    #[error("store error: {0}")]
    Store(String),
    #[error("connection lost: {0}")]
    Lost(String),
}

impl SessionEnd {
    fn close_code(&self) -> u32 {
        match self {
            SessionEnd::Stopping | SessionEnd::PeerFinished | SessionEnd::Lost(_) => CLOSE_DONE,
            SessionEnd::Protocol(_) => CLOSE_PROTOCOL,
            SessionEnd::Store(_) => CLOSE_STORE,
        }
    }
}

impl From<SessionError> for SessionEnd {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Store(reason) => SessionEnd::Store(reason),
            other => SessionEnd::Protocol(other.to_string()),
        }
    }
}

impl From<FramingError> for SessionEnd {
    fn from(error: FramingError) -> Self {
        match error {
            FramingError::Read(reason) | FramingError::Write(reason) => SessionEnd::Lost(reason),
            other => SessionEnd::Protocol(other.to_string()),
        }
    }
}

pub(crate) fn close(connection: &quinn::Connection, code: u32, reason: &str) {
    let reason = fieldsync_schemas::sync_frame::prefix_within(reason, CLOSE_REASON_BYTES_MAX);
    connection.close(code.into(), reason.as_bytes());
}

/// Run the sync session on an established connection until it ends, then
/// close the connection. Returns whether both hellos were exchanged (the
/// link and the peer worked).
pub(crate) async fn run(
    ctx: Arc<Context>,
    connection: quinn::Connection,
    peer_id: String,
    identity: PeerIdentity,
    dialed: bool,
    address: SocketAddr,
) -> bool {
    let peers = ctx.peers.clone();
    let mut session = 0;
    peers.update(&peer_id, |peer| {
        peer.user = identity.user.clone();
        peer.role = identity.role_name();
        peer.address = Some(address.to_string());
        peer.connected = true;
        peer.in_sync = false;
        peer.sessions += 1;
        session = peer.sessions;
    });
    tracing::info!(peer = %peer_id, user = ?identity.user, %address, dialed, "sync session opening");
    let mut pump = Pump::new(&ctx, &connection, &peer_id, identity);
    let end = match open_streams(&connection, dialed).await {
        Ok((send, recv)) => pump.run(&ctx, send, recv).await,
        Err(end) => end,
    };
    let reached_ready = pump.reached_ready;
    match &end {
        SessionEnd::Stopping | SessionEnd::PeerFinished => {
            tracing::info!(peer = %peer_id, "sync session closed: {end}")
        }
        SessionEnd::Lost(_) => tracing::info!(peer = %peer_id, "sync session ended: {end}"),
        SessionEnd::Protocol(_) | SessionEnd::Store(_) => {
            tracing::warn!(peer = %peer_id, "closing the sync session: {end}")
        }
    }
    close(&connection, end.close_code(), &end.to_string());
    let error = match &end {
        SessionEnd::Stopping | SessionEnd::PeerFinished => None,
        other => Some(other.to_string()),
    };
    peers.update(&peer_id, |peer| {
        if error.is_some() {
            peer.last_error = error;
        }
        // A restarted peer redials before its old connection is known to
        // be dead: the newer session's state is not ours to clear (found
        // by the QUIC chaos test: a connected laptop showed as
        // disconnected for good).
        if peer.sessions == session {
            peer.connected = false;
            peer.in_sync = false;
        }
    });
    reached_ready
}

async fn open_streams(
    connection: &quinn::Connection,
    dialed: bool,
) -> Result<(quinn::SendStream, quinn::RecvStream), SessionEnd> {
    let streams = if dialed {
        connection.open_bi().await
    } else {
        connection.accept_bi().await
    };
    streams.map_err(|e| SessionEnd::Lost(e.to_string()))
}

/// The session and everything the loop keeps beside it.
struct Pump {
    session: Session,
    connection: quinn::Connection,
    adapter: SyncAdapter,
    peer_id: String,
    peers: PeerMap,
    reached_ready: bool,
    /// When both hellos were exchanged.
    ready_at_ms: Option<u64>,
    /// Frames received after the peer's hello.
    frames_after_hello: u64,
    was_idle: bool,
    last_seen_ms: Option<u64>,
    last_report_ms: u64,
    /// When receiving progress was last logged, and the count then.
    progress_logged: (u64, u64),
}

impl Pump {
    fn new(
        ctx: &Context,
        connection: &quinn::Connection,
        peer_id: &str,
        identity: PeerIdentity,
    ) -> Pump {
        let config = SessionConfig {
            peer_relays: identity.relays,
            ..ctx.session.clone()
        };
        let session = Session::new(config, peer_id, identity.access);
        Pump {
            session,
            connection: connection.clone(),
            adapter: SyncAdapter::new(ctx.shared.clone()),
            peer_id: peer_id.to_string(),
            peers: ctx.peers.clone(),
            reached_ready: false,
            ready_at_ms: None,
            frames_after_hello: 0,
            was_idle: false,
            last_seen_ms: None,
            last_report_ms: 0,
            progress_logged: (0, 0),
        }
    }

    async fn run(
        &mut self,
        ctx: &Context,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> SessionEnd {
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_FRAMES_MAX);
        let reader = tokio::spawn(read_loop(recv, inbound_tx));
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_FRAMES_MAX);
        let writer = tokio::spawn(write_loop(send, outbound_rx));
        let mut queued = VecDeque::new();
        let end = match self.session.start(&self.adapter) {
            Ok(()) => {
                self.pump(ctx.stop.clone(), inbound, &outbound, &mut queued)
                    .await
            }
            Err(error) => SessionEnd::from(error),
        };
        // Deliver what the session still has to say (a `Refuse`, a last
        // `PageDone`), briefly, then stop both tasks.
        while let Some(frame) = self.session.poll_frame() {
            queued.push_back(frame.encode());
        }
        let flush = async {
            for bytes in queued {
                if outbound.send(bytes).await.is_err() {
                    break;
                }
            }
            drop(outbound);
            let _ = writer.await;
        };
        let _ = tokio::time::timeout(Duration::from_millis(CLOSE_FLUSH_MS), flush).await;
        reader.abort();
        self.report(now_ms(), true);
        end
    }

    async fn pump(
        &mut self,
        mut stop: watch::Receiver<bool>,
        mut inbound: mpsc::Receiver<Result<Vec<u8>, FramingError>>,
        outbound: &mpsc::Sender<Vec<u8>>,
        queued: &mut VecDeque<Vec<u8>>,
    ) -> SessionEnd {
        let mut last_seq = self.adapter.store().watch_seq();
        loop {
            self.drain(queued);
            let now = now_ms();
            self.report(now, false);
            let timer = self.session.poll_timeout().map(|at| at.saturating_sub(now));
            let settle = self
                .settle_deadline_ms()
                .filter(|at| *at > now)
                .map(|at| at - now);
            let step: Result<(), SessionEnd> = tokio::select! {
                biased;
                _ = stop.changed() => return SessionEnd::Stopping,
                permit = outbound.reserve(), if !queued.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(bytes) = queued.pop_front() {
                            permit.send(bytes);
                        }
                        Ok(())
                    }
                    Err(_) => Err(SessionEnd::Lost("the writer stopped".into())),
                },
                done = self.adapter.next_durable(), if self.adapter.has_pending() => {
                    self.on_durable(done)
                }
                frame = inbound.recv() => match frame {
                    Some(Ok(bytes)) => {
                        let now = now_ms();
                        self.last_seen_ms = Some(now);
                        if self.reached_ready {
                            self.frames_after_hello += 1;
                        }
                        self.session
                            .handle_bytes(now, &bytes, &mut self.adapter)
                            .map_err(SessionEnd::from)
                    }
                    Some(Err(error)) => Err(SessionEnd::from(error)),
                    None => Err(SessionEnd::PeerFinished),
                },
                changed = last_seq.changed() => match changed {
                    Ok(()) => self
                        .session
                        .handle_local_change(now_ms(), &mut self.adapter)
                        .map_err(SessionEnd::from),
                    Err(_) => Err(SessionEnd::Stopping),
                },
                () = sleep_ms(timer), if timer.is_some() => self
                    .session
                    .handle_timeout(now_ms(), &mut self.adapter)
                    .map_err(SessionEnd::from),
                // Re-judge "in sync" once the peer's first announce is due.
                () = sleep_ms(settle), if settle.is_some() => Ok(()),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// A queued write is durable: fold in every later one that is too,
    /// and tell the session once.
    fn on_durable(
        &mut self,
        done: Option<(
            crate::sync::WriteId,
            Result<crate::store::Receipt, crate::store::WriteError>,
        )>,
    ) -> Result<(), SessionEnd> {
        let Some((mut write, outcome)) = done else {
            return Ok(());
        };
        outcome.map_err(|e| SessionEnd::Store(e.to_string()))?;
        while let Some(later) = self
            .adapter
            .durable_ready()
            .map_err(|e| SessionEnd::Store(e.to_string()))?
        {
            write = later;
        }
        self.adapter.durable(write);
        self.session
            .handle_write_done(now_ms(), write, &mut self.adapter)
            .map_err(SessionEnd::from)
    }

    fn drain(&mut self, queued: &mut VecDeque<Vec<u8>>) {
        while let Some(frame) = self.session.poll_frame() {
            let kind = frame.kind();
            let bytes = frame.encode();
            tracing::trace!(peer = %self.peer_id, kind, bytes = bytes.len(), "frame out");
            queued.push_back(bytes);
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Ready { .. } => {
                    self.reached_ready = true;
                    self.ready_at_ms = Some(now_ms());
                    tracing::debug!(peer = %self.peer_id, "sync session ready");
                }
                Event::Violation { id, reason, .. } => {
                    tracing::warn!(peer = %self.peer_id, %id, %reason, "refused or compensated a change from the peer");
                }
                Event::Rejected { id, reason } => {
                    tracing::warn!(peer = %self.peer_id, %id, %reason, "the peer refused one of our documents");
                }
                Event::Purged { ids } => {
                    tracing::info!(peer = %self.peer_id, count = ids.len(), "purged revoked documents");
                }
                Event::PeerCaughtUp { .. }
                | Event::CaughtUp { .. }
                | Event::DocsReceived { .. } => {}
            }
        }
    }

    /// Is the session idle *and* would the peer's first announce have
    /// arrived by now? Idle alone is not enough: right after the hellos
    /// nothing is in flight on our side while the peer's announce is still
    /// on its way. One frame after the hello, or two round trips without
    /// one (an unchanged peer sends nothing), settle it.
    fn in_sync(&self, now: u64) -> bool {
        let Some(ready_at) = self.ready_at_ms else {
            return false;
        };
        let waited = now >= ready_at + self.settle_ms();
        self.session.is_idle(&self.adapter) && (self.frames_after_hello > 0 || waited)
    }

    fn settle_ms(&self) -> u64 {
        2 * self.connection.rtt().as_millis() as u64 + SETTLE_MARGIN_MS
    }

    /// When to look again if "in sync" is only waiting for time to pass.
    fn settle_deadline_ms(&self) -> Option<u64> {
        let ready_at = self.ready_at_ms?;
        let waiting = self.frames_after_hello == 0 && !self.was_idle;
        waiting.then(|| ready_at + self.settle_ms())
    }

    /// Refresh this peer's entry in the map: on every change of "in sync",
    /// otherwise at most every `REPORT_INTERVAL_MS`.
    fn report(&mut self, now: u64, force: bool) {
        let idle = self.in_sync(now);
        let transition = idle != self.was_idle;
        if !force && !transition && now < self.last_report_ms + REPORT_INTERVAL_MS {
            return;
        }
        self.last_report_ms = now;
        self.was_idle = idle;
        let progress = self.session.progress();
        let last_seq = self.adapter.store().last_seq();
        let (logged_at, logged_docs) = self.progress_logged;
        if !idle
            && progress.docs_received > logged_docs
            && now >= logged_at + PROGRESS_LOG_INTERVAL_MS
        {
            // Priming a laptop takes a while: say how it goes.
            if logged_at != 0 {
                tracing::info!(
                    peer = %self.peer_id,
                    docs_received = progress.docs_received,
                    docs_pending = progress.pending_in,
                    "receiving documents"
                );
            }
            self.progress_logged = (now, progress.docs_received);
        }
        if transition && idle {
            tracing::info!(
                peer = %self.peer_id,
                docs_sent = progress.docs_sent,
                docs_received = progress.docs_received,
                "in sync with peer"
            );
        }
        let last_seen_ms = self.last_seen_ms;
        let udp = self.connection.stats();
        if transition && idle {
            tracing::debug!(peer = %self.peer_id, stats = ?udp, "connection stats when in sync");
        }
        self.peers.update(&self.peer_id, |peer| {
            peer.in_sync = idle;
            if idle {
                peer.last_sync_ms = Some(now);
            }
            if last_seen_ms.is_some() {
                peer.last_seen_ms = last_seen_ms;
            }
            peer.docs_pending_out = progress.pending_out;
            peer.docs_pending_in = progress.pending_in;
            peer.changes_unacked = last_seq.saturating_sub(progress.peer_acked_seq);
            peer.docs_sent = progress.docs_sent;
            peer.docs_received = progress.docs_received;
            peer.peer_acked_seq = progress.peer_acked_seq;
            peer.checkpoint_seq = progress.our_checkpoint_seq;
            peer.udp_bytes_sent = udp.udp_tx.bytes;
            peer.udp_bytes_received = udp.udp_rx.bytes;
        });
    }
}

async fn sleep_ms(delay_ms: Option<u64>) {
    match delay_ms {
        Some(delay_ms) => tokio::time::sleep(Duration::from_millis(delay_ms)).await,
        None => std::future::pending().await,
    }
}

async fn read_loop(
    mut recv: quinn::RecvStream,
    frames: mpsc::Sender<Result<Vec<u8>, FramingError>>,
) {
    loop {
        let frame = read_frame(&mut recv, FRAME_BYTES_MAX).await;
        let stop = !matches!(frame, Ok(Some(_)));
        let item = match frame {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => break,
            Err(error) => Err(error),
        };
        if frames.send(item).await.is_err() || stop {
            break;
        }
    }
}

async fn write_loop(mut send: quinn::SendStream, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = frames.recv().await {
        if let Err(error) = write_frame(&mut send, &bytes).await {
            tracing::debug!(%error, "sync stream write failed");
            return;
        }
    }
    if send.finish().is_ok() {
        let _ = send.stopped().await;
    }
}
