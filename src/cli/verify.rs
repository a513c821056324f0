//! `fieldsync verify`: read and load every document, check the changelog
//! against the documents, list every problem, exit 1 if there is any.
//! `--repair` first rebuilds what derives from the rest (the reader index).

use std::path::Path;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;
use crate::node::Node;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// First rebuild what can be derived from the rest: the reader index
    /// (which changelog entries each technician's device may see). Run
    /// with the node stopped.
    #[arg(long)]
    repair: bool,
}

pub(crate) fn run(dir: &Path, args: &VerifyArgs) -> anyhow::Result<()> {
    let node = Node::open(dir)?;
    let started = Instant::now();
    if args.repair {
        let keys = node.store.rebuild_reader_index()?;
        println!("repaired: rebuilt the reader index ({keys} entries)");
    }
    let total = node.document_count()?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        // indicatif draws only when stderr is a terminal.
        ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} documents ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    };
    let result = node.store.verify(|checked| bar.set_position(checked));
    bar.finish_and_clear();
    let problems = result?;
    let seconds = started.elapsed().as_secs_f64();
    for problem in &problems {
        println!("problem: {}: {}", problem.what, problem.detail);
    }
    let last_seq = node.store.last_seq();
    node.store.close();
    if problems.is_empty() {
        println!(
            "ok: {total} documents and changelog up to seq {last_seq} checked in {seconds:.1} s, \
             no problems"
        );
        return Ok(());
    }
    let count = problems.len();
    Err(CliError::failed(format!(
        "verify found {count} problem{} in {total} documents (changelog up to seq {last_seq})",
        if count == 1 { "" } else { "s" }
    ))
    .hint(
        "restore the data directory from a backup, or re-create the node and let it sync \
         from its peers; damaged documents are listed above",
    )
    .into())
}
