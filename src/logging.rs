//! Logging through `tracing`, to stderr, human-readable or JSON.
//!
//! Why stderr: stdout carries command output (`status --json`, `show`,
//! secrets printed once by `user add`) that scripts read; logs must never
//! mix into it.
//!
//! Precedence: `--log-format` (or `FIELDSYNC_LOG_FORMAT`) over the config's
//! `[log] format`; `RUST_LOG` over the config's `[log] filter`.
//!
//! The demo is the exception ([`init_demo`]): its terminal tells the
//! scenario, and three nodes' INFO lines interleaved with it would bury
//! the story, so its logs go to a file in its data directory unless
//! `RUST_LOG` asks for them on stderr.

use std::io::IsTerminal;
use std::path::Path;

use clap::ValueEnum;
use fieldsync_node::config::{LogFormat, NodeConfig};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Set up the global subscriber. The config is read only to learn its
/// `[log]` section; a missing or broken config means defaults here (the
/// command itself reports the problem).
pub(crate) fn init(dir: &Path, flag: Option<LogFormatArg>) {
    let log = NodeConfig::load(dir).map(|c| c.log).unwrap_or_default();
    let format = match flag {
        Some(LogFormatArg::Human) => LogFormat::Human,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => log.format,
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second subscriber cannot be installed; ignoring that is right
    // (only tests could try).
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The demo's logs: to `path` (appended, no colours; JSON with
/// `--log-format json`, else human-readable) when `RUST_LOG` is unset, else
/// as [`init`] does. Answers the file it writes,
/// if it writes one.
pub(crate) fn init_demo(
    dir: &Path,
    flag: Option<LogFormatArg>,
    path: &Path,
) -> Option<std::path::PathBuf> {
    if std::env::var_os("RUST_LOG").is_some() {
        init(dir, flag);
        return None;
    }
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(file) => file,
        Err(error) => {
            eprintln!(
                "cannot write logs to {}: {error}; logging to stderr",
                path.display()
            );
            init(dir, flag);
            return None;
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false);
    // The demo has no config of its own: the flag alone picks JSON.
    let _ = match flag {
        Some(LogFormatArg::Json) => builder.json().try_init(),
        Some(LogFormatArg::Human) | None => builder.try_init(),
    };
    Some(path.to_path_buf())
}
