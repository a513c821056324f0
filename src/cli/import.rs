//! `fieldsync import FILE.jsonl[.gz]`: bulk-load work orders through the
//! node's normal, durable write path (`fieldsync_node::import`).
//!
//! Why `--ack-log`: it appends each acknowledged id on its own line, written
//! through to the OS before the next acknowledgement is reported, so a test
//! (or a cautious operator) that kills the process can check that every
//! write reported as acknowledged survived. Work orders already in the store
//! are skipped and counted, so re-running an interrupted import completes it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use fieldsync_node::config::NodeRole;
use fieldsync_node::import::{import_jsonl, ImportError, ImportOptions};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;
use crate::node::Node;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The JSONL file, one work order per line; gzip is detected.
    file: PathBuf,
    /// Append each acknowledged (durable) id to this file, one per line.
    #[arg(long, value_name = "FILE")]
    ack_log: Option<PathBuf>,
    /// Threads building documents (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Import at most this many lines.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Counts the bytes read from the file (compressed, if it is gzip), so
/// the progress bar can show how far through the file the import is.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

fn open_input(
    path: &Path,
    count: Arc<AtomicU64>,
) -> anyhow::Result<(Box<dyn BufRead + Send>, u64)> {
    let file = File::open(path).map_err(|e| {
        CliError::usage(format!("cannot open {}: {e}", path.display())).hint(
            "pass the path of a JSONL work-order file, e.g. ../shared/bench/wo-10000-42.jsonl.gz",
        )
    })?;
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::new(CountingReader { inner: file, count });
    let gzip = reader
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    };
    Ok((reader, length))
}

/// The ack log: one id per line, each written to the OS before returning.
struct AckLog {
    path: PathBuf,
    file: File,
}

impl AckLog {
    fn open(path: &Path) -> anyhow::Result<AckLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                CliError::usage(format!("cannot open the ack log {}: {e}", path.display()))
                    .hint("pass a writable file path to --ack-log")
            })?;
        Ok(AckLog {
            path: path.to_path_buf(),
            file,
        })
    }

    fn append(&mut self, id: &str) -> std::io::Result<()> {
        // One write call per line: no user-space buffer to lose on a kill.
        let mut line = Vec::with_capacity(id.len() + 1);
        line.extend_from_slice(id.as_bytes());
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

pub(crate) fn run(dir: &Path, args: &ImportArgs) -> anyhow::Result<()> {
    let node = Node::open(dir)?;
    if node.config.role != NodeRole::Central {
        node.store.close();
        return Err(CliError::usage(
            "this is a field node; work orders are created on a central node",
        )
        .hint("import on the central node; laptops receive their work orders by sync")
        .into());
    }
    let result = import(&node, args);
    node.store.close();
    result
}

fn import(node: &Node, args: &ImportArgs) -> anyhow::Result<()> {
    let read_bytes = Arc::new(AtomicU64::new(0));
    let (reader, length) = open_input(&args.file, read_bytes.clone())?;
    let mut ack_log = args.ack_log.as_deref().map(AckLog::open).transpose()?;
    let mut options = ImportOptions::default();
    if let Some(threads) = args.threads {
        options.threads = usize::from(threads);
    }
    options.lines_max = args.limit;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        // indicatif draws only when stderr is a terminal.
        ProgressBar::new(length).with_style(
            ProgressStyle::with_template(
                "importing {bar:40} {bytes}/{total_bytes} {msg} ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    };
    tracing::info!(file = %args.file.display(), threads = options.threads, "import started");
    let started = Instant::now();
    let mut acknowledged = 0u64;
    let mut ack_log_error: Option<std::io::Error> = None;
    let result = import_jsonl(&node.store, reader, options, |_line, id| {
        acknowledged += 1;
        if let (Some(log), None) = (ack_log.as_mut(), ack_log_error.as_ref()) {
            if let Err(e) = log.append(id) {
                ack_log_error = Some(e);
            }
        }
        if acknowledged.is_multiple_of(64) {
            bar.set_position(read_bytes.load(Ordering::Relaxed));
            bar.set_message(format!("{acknowledged} work orders"));
        }
    });
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if let (Some(e), Some(log)) = (ack_log_error, ack_log.as_ref()) {
        tracing::error!(path = %log.path.display(), "the ack log stopped being written: {e}");
    }
    match result {
        Ok(report) => {
            let rate = report.created as f64 / seconds.max(1e-9);
            tracing::info!(
                created = report.created,
                skipped = report.skipped,
                seconds,
                "import finished"
            );
            println!(
                "imported {} work orders ({} already present, skipped) from {} in {seconds:.2} s: \
                 {rate:.0} docs/s",
                report.created,
                report.skipped,
                args.file.display()
            );
            Ok(())
        }
        Err(error) => {
            let done = format!(
                "{acknowledged} work orders before the failure were imported and are durable"
            );
            let failure = match &error {
                ImportError::Read { .. }
                | ImportError::LineTooLong { .. }
                | ImportError::Malformed { .. }
                | ImportError::Refused { .. } => {
                    CliError::usage(format!("{}: {error}", args.file.display())).hint(format!(
                        "{done}; fix the line and run the same import again: work orders already \
                     present are skipped"
                    ))
                }
                ImportError::Store { .. } | ImportError::Thread(_) => {
                    CliError::failed(format!("import stopped: {error}")).hint(format!(
                        "{done}; check free disk space, run `fieldsync verify`, then run the \
                         same import again"
                    ))
                }
            };
            Err(failure.into())
        }
    }
}
