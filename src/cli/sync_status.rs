//! The sync part of `fieldsync status`: per-peer state from the file the
//! running node's sync driver keeps (`sync-status.json`).
//!
//! Why from a file: while `fieldsync run` holds the store, no other process
//! can open it (sled locks it), but the driver rewrites this file as
//! sessions progress, so `status` can show last seen, last sync and what is
//! pending each way for every peer, running or not.

use std::path::Path;

use fieldsync_node::quic::{read_status_file, PeerState, StatusFile};

/// The driver's last status, and whether the process that wrote it runs.
pub(crate) struct SyncStatus {
    pub(crate) file: StatusFile,
    pub(crate) running: bool,
}

pub(crate) fn load(dir: &Path) -> anyhow::Result<Option<SyncStatus>> {
    let Some(file) = read_status_file(dir)? else {
        return Ok(None);
    };
    let running = process_alive(file.pid);
    Ok(Some(SyncStatus { file, running }))
}

fn process_alive(pid: u32) -> bool {
    pid != 0 && pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) fn json(status: Option<&SyncStatus>) -> serde_json::Value {
    match status {
        None => serde_json::Value::Null,
        Some(status) => serde_json::json!({
            "running": status.running,
            "pid": status.file.pid,
            "listen": status.file.listen,
            "updated_at_ms": status.file.updated_at_ms,
            "peers": status.file.peers,
        }),
    }
}

/// Text lines, one block per peer.
pub(crate) fn print(status: Option<&SyncStatus>) {
    let Some(status) = status else {
        println!("sync       never run");
        return;
    };
    if status.running {
        println!(
            "sync       running (pid {}), listening on {}",
            status.file.pid, status.file.listen
        );
    } else {
        println!(
            "sync       stopped; last listened on {}",
            status.file.listen
        );
    }
    let now = fieldsync_node::store::now_ms();
    for peer in &status.file.peers {
        print_peer(peer, now, status.running);
    }
}

fn print_peer(peer: &PeerState, now_ms: u64, running: bool) {
    let who = match &peer.user {
        Some(user) => format!("{} `{user}`", peer.role),
        None => peer.role.clone(),
    };
    let state = match (running && peer.connected, peer.in_sync) {
        (true, true) => "connected, in sync",
        (true, false) => "connected, syncing",
        (false, _) => "not connected",
    };
    println!(
        "peer       {} {who} at {}: {state}",
        peer.node_id,
        peer.address.as_deref().unwrap_or("?")
    );
    println!(
        "             last seen {}, last sync {}",
        ago(peer.last_seen_ms, now_ms),
        ago(peer.last_sync_ms, now_ms)
    );
    println!(
        "             pending: {} out ({} changes unacknowledged), {} in; sent {}, received {}",
        peer.docs_pending_out,
        peer.changes_unacked,
        peer.docs_pending_in,
        peer.docs_sent,
        peer.docs_received
    );
    if let Some(error) = &peer.last_error {
        println!("             last error: {error}");
    }
}

fn ago(at_ms: Option<u64>, now_ms: u64) -> String {
    let Some(at_ms) = at_ms else {
        return "never".into();
    };
    let seconds = now_ms.saturating_sub(at_ms) / 1000;
    match seconds {
        0..=59 => format!("{seconds} s ago"),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=86_399 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}
