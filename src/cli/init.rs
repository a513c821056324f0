//! `fieldsync init`: create a node's data directory: the commented config
//! file, the key pair and self-signed certificate, and an empty store.
//!
//! Why it refuses any existing node file: the identity is what peers pin
//! and the store epoch is what they checkpoint against; a second `init` on
//! the same directory would silently turn the node into a stranger.

use std::path::Path;

use clap::{Args, ValueEnum};
use fieldsync_node::config::{NodeConfig, NodeRole, CONFIG_FILE, NODE_NAME_CHARS_MAX};
use fieldsync_node::identity::{CERT_FILE, KEY_FILE};

use crate::error::CliError;
use crate::node::Node;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoleArg {
    /// The office node: creates work orders, runs the gateway.
    Central,
    /// A technician's laptop.
    Field,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// What this node is.
    #[arg(long, value_enum, default_value = "central")]
    role: RoleArg,
    /// A name for humans (default: the host name, else the role).
    #[arg(long)]
    name: Option<String>,
}

pub(crate) fn run(dir: &Path, args: &InitArgs) -> anyhow::Result<()> {
    let role = match args.role {
        RoleArg::Central => NodeRole::Central,
        RoleArg::Field => NodeRole::Field,
    };
    for name in [CONFIG_FILE, KEY_FILE, CERT_FILE, "FORMAT", "sled"] {
        if dir.join(name).exists() {
            return Err(CliError::usage(format!(
                "a fieldsync node already exists at {} (found {name}); refusing to overwrite it",
                dir.display()
            ))
            .hint("use that node, or pick another --dir")
            .into());
        }
    }
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(role),
    };
    let config = NodeConfig::new(role, name);
    // Check the config before creating anything, so a bad --name leaves
    // no half-made directory behind.
    if let Err(e) = NodeConfig::parse(&config.to_commented_toml(), &NodeConfig::path_in(dir)) {
        return Err(
            CliError::usage(format!("cannot create the node's config: {e}"))
                .hint(format!(
                    "pass --name with 1 to {NODE_NAME_CHARS_MAX} printable characters"
                ))
                .into(),
        );
    }
    let Node {
        config,
        identity,
        store,
        ..
    } = Node::create(dir, config)?;
    let epoch = hex::encode(store.epoch());
    store.close();
    tracing::info!(node_id = identity.node_id(), %role, "node created");
    let shown = dir.display();
    println!("Created a {role} node in {shown}");
    println!("  name     {}", config.name);
    println!("  node id  {}", identity.node_id());
    println!("  epoch    {epoch}");
    println!("  config   {}", NodeConfig::path_in(dir).display());
    println!();
    println!("Next:");
    if role == NodeRole::Central {
        println!("  fieldsync --dir {shown} import FILE.jsonl.gz   # load work orders");
        println!("  fieldsync --dir {shown} user add alice --role operator");
    }
    println!("  fieldsync --dir {shown} status");
    println!("  fieldsync --dir {shown} run");
    Ok(())
}

/// The host name if it makes a valid node name, else the role.
fn default_name(role: NodeRole) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim();
    let usable = !host.is_empty()
        && host.chars().count() <= NODE_NAME_CHARS_MAX
        && !host.chars().any(char::is_control);
    if usable {
        host.to_string()
    } else {
        role.as_str().to_string()
    }
}
