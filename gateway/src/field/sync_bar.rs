//! The sync state bar on every page: online or not, the last sync with
//! each central, and the changes waiting to go out.
//!
//! Why a trait: like `peers.rs` for the office console, the gateway does
//! not know the QUIC driver's types; the binary hands the app a
//! [`SyncSource`] over the driver's peer map.

use maud::{html, Markup};

/// One sync peer as the technician sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPeer {
    /// A name for humans (the central's address, or its node id).
    pub name: String,
    /// An office node (a central), not another technician's laptop.
    pub office: bool,
    /// A session is open now.
    pub connected: bool,
    /// Last time both directions were caught up, ms since the Unix epoch.
    pub last_sync_ms: Option<u64>,
    /// Entries of this laptop's changelog the peer has not acknowledged
    /// (counted against what it acknowledged last, so edits made offline
    /// count); `None` until a session since the node started has told.
    pub changes_unacked: Option<u64>,
    /// Documents announced to the peer and not yet acknowledged.
    pub docs_pending_out: u64,
}

/// Anything that can tell the app the laptop's sync state.
pub trait SyncSource: Send + Sync + 'static {
    fn peers(&self) -> Vec<SyncPeer>;
}

/// No sync (tests without a driver): offline, nothing known.
impl SyncSource for Vec<SyncPeer> {
    fn peers(&self) -> Vec<SyncPeer> {
        self.clone()
    }
}

/// "3 min ago" for a time `ago_ms` before now.
fn ago(ago_ms: u64) -> String {
    let s = ago_ms / 1000;
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// The bar, for peers `peers` at `now_ms`.
pub(super) fn bar(peers: &[SyncPeer], now_ms: u64) -> Markup {
    let offices: Vec<&SyncPeer> = peers.iter().filter(|peer| peer.office).collect();
    let online = offices.iter().any(|peer| peer.connected);
    let known = offices.iter().all(|peer| peer.changes_unacked.is_some());
    let pending = offices
        .iter()
        .map(|peer| peer.changes_unacked.unwrap_or(0).max(peer.docs_pending_out))
        .max()
        .unwrap_or(0);
    html! {
        div id="sync-state" class="sync" role="status" data-online=(if online { "yes" } else { "no" }) {
            strong id="sync-online" {
                @if online { "Online" } @else { "Offline" }
            }
            @if offices.is_empty() {
                span { " · no central configured" }
            }
            @for peer in &offices {
                span class="sync-peer" {
                    " · " (peer.name) ": "
                    @match peer.last_sync_ms {
                        Some(at) => { "last sync " (fieldsync_node::clock::rfc3339_ms(at)) " (" (ago(now_ms.saturating_sub(at))) ")" }
                        None => { "never synced" }
                    }
                }
            }
            span id="sync-pending" {
                " · "
                @if pending == 0 && !known { "changes waiting to go out: known after the first sync" }
                @else if pending == 0 { "nothing waiting to go out" }
                @else if pending == 1 { "1 change waiting to go out" }
                @else { (pending) " changes waiting to go out" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_says_online_and_what_waits_in_words() {
        let peer = SyncPeer {
            name: "central".into(),
            office: true,
            connected: true,
            last_sync_ms: Some(1_000),
            changes_unacked: Some(3),
            docs_pending_out: 1,
        };
        let text = bar(std::slice::from_ref(&peer), 181_000).into_string();
        assert!(text.contains("Online"), "{text}");
        assert!(text.contains("3 min ago"), "{text}");
        assert!(text.contains("3 changes waiting to go out"), "{text}");
        let offline = SyncPeer {
            connected: false,
            changes_unacked: Some(0),
            docs_pending_out: 0,
            ..peer.clone()
        };
        let text = bar(std::slice::from_ref(&offline), 181_000).into_string();
        assert!(
            text.contains("Offline") && text.contains("nothing waiting"),
            "{text}"
        );
        let unknown = SyncPeer {
            changes_unacked: None,
            ..offline
        };
        let text = bar(&[unknown], 181_000).into_string();
        assert!(text.contains("known after the first sync"), "{text}");
        assert!(bar(&[], 0).into_string().contains("no central configured"));
    }
}
