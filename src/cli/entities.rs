//! `fieldsync entities set|list`: which tables each ERP uploads, as
//! `GET /api/v1/entities/{erp}` answers (the node must be stopped).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use fieldsync_gateway::ingest::entities::Entities;
use fieldsync_gateway::ingest::views;

use crate::error::CliError;
use crate::node::Node;

/// Bytes of a configuration file, at most.
const FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum EntitiesCommand {
    /// Set an ERP's tables from a JSON file
    /// (`{"uploadVersion": 2, "queries": [{"table": "SA1010", ...}]}`;
    /// `-` reads stdin).
    Set(SetArgs),
    /// List every ERP's tables.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The ERP's name.
    erp: String,
    /// The JSON file, or `-` for stdin.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(dir: &Path, command: &EntitiesCommand) -> anyhow::Result<()> {
    let config = match command {
        EntitiesCommand::Set(args) => Some(read_config(&args.file)?),
        EntitiesCommand::List(_) => None,
    };
    let node = Node::open(dir)?;
    let result = match (command, config) {
        (EntitiesCommand::Set(args), Some(config)) => {
            views::set_entities(&node.store, &args.erp, &config)
                .map_err(|e| anyhow::Error::from(CliError::usage(e.to_string())))
                .map(|()| println!("{}: {} tables", args.erp, config.queries.len()))
        }
        (EntitiesCommand::List(args), _) => list(&node, args),
        _ => Ok(()),
    };
    node.store.close();
    result
}

fn read_config(file: &Path) -> anyhow::Result<Entities> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .take(FILE_BYTES_MAX)
            .read_to_string(&mut text)?;
    } else {
        let opened = std::fs::File::open(file)
            .map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?;
        opened.take(FILE_BYTES_MAX).read_to_string(&mut text)?;
    }
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{}: not an entities configuration ({e}); expected \
             {{\"uploadVersion\": 2, \"queries\": [{{\"table\": \"SA1010\"}}]}}",
            file.display()
        ))
        .into()
    })
}

fn list(node: &Node, args: &ListArgs) -> anyhow::Result<()> {
    let all = views::all_entities(&node.store)?;
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = all
            .into_iter()
            .map(|(erp, config)| (erp, serde_json::to_value(config).unwrap_or_default()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&map)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no ERP configured; set one with `fieldsync entities set <erp> <file.json>`");
        return Ok(());
    }
    println!("{:<16} {:<24} {:<7} FILTER", "ERP", "TABLE", "RELOAD");
    for (erp, config) in &all {
        for query in &config.queries {
            println!(
                "{:<16} {:<24} {:<7} {}",
                erp,
                query.table,
                if query.force_reload { "yes" } else { "no" },
                query.filter
            );
        }
    }
    Ok(())
}
