//! `fieldsync batches list|show`: ERP batches received by this node, as
//! `GET /api/v1/batches` shows them (the node must be stopped: the CLI
//! opens the store itself).

use std::path::Path;

use clap::{Args, Subcommand};
use fieldsync_gateway::ingest::rules::State;
use fieldsync_gateway::ingest::views;

use crate::error::CliError;
use crate::node::Node;

/// Batches listed, at most.
const LIST_BATCHES_MAX: usize = 10_000;

#[derive(Debug, Subcommand)]
pub(crate) enum BatchesCommand {
    /// List batches: client, ERP, id, state, messages, records.
    List(ListArgs),
    /// Show one batch: messages received, missing numbers, errors.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this integration client's batches.
    #[arg(long)]
    client: Option<String>,
    /// Only this ERP's.
    #[arg(long)]
    erp: Option<String>,
    /// Only batches in this state: open, committed or expired.
    #[arg(long)]
    state: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The batch id.
    batch_id: i64,
    /// The integration client that sent it.
    #[arg(long)]
    client: String,
    /// The ERP it belongs to.
    #[arg(long)]
    erp: String,
}

pub(crate) fn run(dir: &Path, command: &BatchesCommand) -> anyhow::Result<()> {
    if let BatchesCommand::List(ListArgs {
        state: Some(state), ..
    }) = command
    {
        if State::parse(state).is_none() {
            return Err(CliError::usage("--state must be open, committed or expired").into());
        }
    }
    let node = Node::open(dir)?;
    let result = match command {
        BatchesCommand::List(args) => list(&node, args),
        BatchesCommand::Show(args) => show(&node, args),
    };
    node.store.close();
    result
}

fn list(node: &Node, args: &ListArgs) -> anyhow::Result<()> {
    let wanted = |b: &views::BatchView| {
        args.erp.as_ref().is_none_or(|erp| *erp == b.erp)
            && args.state.as_ref().is_none_or(|state| *state == b.state)
    };
    let batches = views::list(
        &node.store,
        args.client.as_deref(),
        wanted,
        LIST_BATCHES_MAX,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&batches)?);
        return Ok(());
    }
    if batches.is_empty() {
        println!("no batches");
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:>12} {:<10} {:>8} {:>8}  UPDATED",
        "CLIENT", "ERP", "BATCH", "STATE", "MESSAGES", "RECORDS"
    );
    for b in &batches {
        println!(
            "{:<20} {:<16} {:>12} {:<10} {:>8} {:>8}  {}",
            b.client,
            b.erp,
            b.batch_id,
            b.state,
            b.messages_received.len(),
            b.records,
            b.updated_at
        );
    }
    Ok(())
}

fn show(node: &Node, args: &ShowArgs) -> anyhow::Result<()> {
    match views::get(&node.store, &args.client, &args.erp, args.batch_id)? {
        Some(batch) => {
            println!("{}", serde_json::to_string_pretty(&batch)?);
            Ok(())
        }
        None => Err(CliError::usage(format!(
            "no batch {} of ERP `{}` from client `{}`",
            args.batch_id, args.erp, args.client
        ))
        .into()),
    }
}
