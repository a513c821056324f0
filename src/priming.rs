//! The priming progress bar of `fieldsync run`: while a peer's documents
//! arrive, a bar on stderr counts them.
//!
//! Why a bar beside the log: the driver logs receiving progress every 2 s,
//! which suits log files and services; a technician starting a fresh laptop
//! at a terminal wants to see at a glance how far priming is. indicatif
//! draws only when stderr is a terminal, so under a service manager or in
//! tests this task only reads the peer map.
//!
//! The total is what the peer has announced so far: the protocol pages the
//! changelog (a few pages in flight), so the bar's length grows while the
//! peer still has pages to announce, and the rate is the honest figure.

use std::collections::HashMap;
use std::time::Duration;

use fieldsync_node::quic::{PeerMap, PeerState};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

/// The bar is redrawn at most this often.
const REDRAW_INTERVAL_MS: u64 = 250;
/// A bar appears only for sessions receiving at least this many documents:
/// a handful of live edits is not priming.
const PRIMING_DOCS_MIN: u64 = 50;

/// Show a bar per peer while it sends us documents, until `stop`.
pub(crate) async fn show(peers: PeerMap, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut version = peers.subscribe();
    let mut bars: HashMap<String, Priming> = HashMap::new();
    loop {
        // `peers` holds the sender, so `changed` never fails; a task of
        // `run` must not end before it is told to stop.
        tokio::select! {
            _ = stop.changed() => break,
            _ = version.changed() => {}
        }
        for peer in peers.snapshot() {
            update(&mut bars, &peer);
        }
        tokio::time::sleep(Duration::from_millis(REDRAW_INTERVAL_MS)).await;
    }
    for (_, priming) in bars.drain() {
        priming.bar.abandon();
    }
    Ok(())
}

/// One session's bar: documents received since the bar appeared.
struct Priming {
    bar: ProgressBar,
    received_before: u64,
    sessions: u64,
}

fn update(bars: &mut HashMap<String, Priming>, peer: &PeerState) {
    if let Some(priming) = bars.get(&peer.node_id) {
        let ended = !peer.connected || peer.sessions != priming.sessions;
        let received = peer.docs_received.saturating_sub(priming.received_before);
        priming.bar.set_length(received + peer.docs_pending_in);
        priming.bar.set_position(received);
        if ended || (peer.in_sync && peer.docs_pending_in == 0) {
            let message = if ended {
                "connection lost; will resume"
            } else {
                "in sync"
            };
            priming.bar.finish_with_message(message);
            bars.remove(&peer.node_id);
        }
        return;
    }
    if !peer.connected || peer.docs_pending_in < PRIMING_DOCS_MIN {
        return;
    }
    let bar = ProgressBar::new(peer.docs_pending_in);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix}: {bar:30} {pos}/{len} documents announced so far ({per_sec}, {elapsed}) {msg}",
        )
        .expect("a valid progress template"),
    );
    let name = peer.user.clone().unwrap_or_else(|| peer.role.clone());
    bar.set_prefix(format!(
        "receiving from {name} {}",
        &peer.node_id[..peer.node_id.len().min(8)]
    ));
    bars.insert(
        peer.node_id.clone(),
        Priming {
            bar,
            received_before: peer.docs_received,
            sessions: peer.sessions,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(connected: bool, received: u64, pending: u64, in_sync: bool) -> PeerState {
        PeerState {
            node_id: "ab".repeat(32),
            role: "office".into(),
            connected,
            in_sync,
            docs_received: received,
            docs_pending_in: pending,
            sessions: 1,
            ..PeerState::default()
        }
    }

    #[test]
    fn a_bar_follows_a_priming_session_and_ends_in_sync() {
        let mut bars = HashMap::new();
        update(&mut bars, &peer(true, 0, 10, false));
        assert!(bars.is_empty(), "a few documents are not priming");
        update(&mut bars, &peer(true, 0, 800, false));
        let bar = bars.values().next().expect("a bar").bar.clone();
        assert_eq!((bar.position(), bar.length()), (0, Some(800)));
        update(&mut bars, &peer(true, 500, 1_300, false));
        assert_eq!((bar.position(), bar.length()), (500, Some(1_800)));
        update(&mut bars, &peer(true, 1_800, 0, true));
        assert!(bars.is_empty());
        assert!(bar.is_finished());
        assert_eq!(bar.position(), 1_800);
    }

    #[test]
    fn a_lost_connection_ends_the_bar() {
        let mut bars = HashMap::new();
        update(&mut bars, &peer(true, 100, 400, false));
        let bar = bars.values().next().expect("a bar").bar.clone();
        update(&mut bars, &peer(false, 300, 0, false));
        assert!(bars.is_empty());
        assert!(bar.is_finished());
        assert_eq!(bar.position(), 200, "counts this session's documents");
    }
}
