//! `fieldsync status`: who this node is and what its store holds.

use std::path::Path;

use clap::Args;
use fieldsync_node::store::format::FORMAT_VERSION;

use crate::cli::sync_status;
use crate::node::Node;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(dir: &Path, args: &StatusArgs) -> anyhow::Result<()> {
    let sync = sync_status::load(dir)?;
    let node = match Node::open(dir) {
        Ok(node) => node,
        // The running node holds the store: show what its driver reports.
        Err(error) => match &sync {
            Some(running) if running.running => return running_view(dir, args, running),
            _ => return Err(error),
        },
    };
    let documents = node.document_count()?;
    let users = node.store.users()?;
    let active_users = users.iter().filter(|u| !u.revoked).count();
    let bytes = node.store_bytes_on_disk();
    let epoch = hex::encode(node.store.epoch());
    let last_seq = node.store.last_seq();
    let mut peers = Vec::new();
    for peer in &node.config.sync.peers {
        let checkpoint = node.store.checkpoint(&peer.node_id)?;
        peers.push(serde_json::json!({
            "address": peer.address,
            "node_id": peer.node_id,
            "received_seq": checkpoint.map(|c| c.seq),
        }));
    }
    if args.json {
        let status = serde_json::json!({
            "node_id": node.identity.node_id(),
            "name": node.config.name,
            "role": node.config.role.as_str(),
            "dir": node.dir.display().to_string(),
            "store_format": FORMAT_VERSION,
            "epoch": epoch,
            "last_seq": last_seq,
            "documents": documents,
            "users": users.len(),
            "users_active": active_users,
            "store_bytes": bytes,
            "sync_listen": node.config.sync.listen.to_string(),
            "peers": peers,
            "sync": sync_status::json(sync.as_ref()),
            "gateway_enabled": node.config.gateway.enabled,
            "gateway_listen": node.config.gateway.listen.to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("node       {} ({})", node.config.name, node.config.role);
        println!("node id    {}", node.identity.node_id());
        println!("data dir   {}", node.dir.display());
        println!(
            "store      format {FORMAT_VERSION}, epoch {epoch}, {}",
            human_bytes(bytes)
        );
        println!("last seq   {last_seq}");
        println!("documents  {documents}");
        println!("users      {} ({active_users} active)", users.len());
        sync_status::print(sync.as_ref());
        if node.config.sync.peers.is_empty() {
            println!("peers      none configured");
        }
        for peer in &peers {
            let synced = match peer["received_seq"].as_u64() {
                Some(seq) => format!("received up to its seq {seq}"),
                None => "never synced".to_string(),
            };
            println!(
                "peer       {} {} ({synced})",
                peer["address"].as_str().unwrap_or_default(),
                peer["node_id"].as_str().unwrap_or_default()
            );
        }
        if node.config.gateway.enabled {
            println!(
                "gateway    {} (not served by this build yet)",
                node.config.gateway.listen
            );
        } else {
            println!("gateway    disabled");
        }
    }
    node.store.close();
    Ok(())
}

/// `status` while `fieldsync run` holds the store: identity, config and
/// the sync driver's per-peer state.
fn running_view(
    dir: &Path,
    args: &StatusArgs,
    sync: &sync_status::SyncStatus,
) -> anyhow::Result<()> {
    let config = fieldsync_node::config::NodeConfig::load(dir)?;
    if args.json {
        let status = serde_json::json!({
            "node_id": sync.file.node_id,
            "name": config.name,
            "role": config.role.as_str(),
            "dir": dir.display().to_string(),
            "running": true,
            "sync": sync_status::json(Some(sync)),
        });
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("node       {} ({}), running", config.name, config.role);
        println!("node id    {}", sync.file.node_id);
        println!("data dir   {}", dir.display());
        println!(
            "store      in use by the running node (pid {})",
            sync.file.pid
        );
        sync_status::print(Some(sync));
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B on disk");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit} on disk")
}
