//! `fieldsync show <id>`: one work order's read model as JSON (derived
//! status, conflicts and all), the way the gateway will serve it.

use std::path::Path;

use clap::Args;

use crate::error::CliError;
use crate::node::Node;

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The work order's id.
    id: String,
    /// One line instead of indented JSON.
    #[arg(long)]
    compact: bool,
}

pub(crate) fn run(dir: &Path, args: &ShowArgs) -> anyhow::Result<()> {
    let node = Node::open(dir)?;
    let found = node.store.work_order(&args.id);
    node.store.close();
    let view = match found {
        Ok(Some(view)) => view,
        Ok(None) => {
            return Err(CliError::failed(format!("no work order `{}`", args.id))
                .hint("check the id; `fieldsync status` shows how many documents the node holds")
                .into())
        }
        Err(e) => {
            return Err(
                CliError::failed(format!("cannot read work order `{}`: {e}", args.id))
                    .hint("run `fieldsync verify` to list every damaged document")
                    .into(),
            )
        }
    };
    let text = if args.compact {
        serde_json::to_string(&view)?
    } else {
        serde_json::to_string_pretty(&view)?
    };
    println!("{text}");
    Ok(())
}
