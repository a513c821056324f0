//! How a failed command is shown: one `error:` line (the whole cause chain),
//! an optional `hint:` line, and an exit code.
//!
//! Why hints are found here, by looking at the error's causes: the library
//! errors (store format, config, identity) already say what is wrong; what
//! to do about it depends on the command line (which `--dir`, which
//! command), which only the binary knows.

use std::process::ExitCode;

use fieldsync_node::config::ConfigError;
use fieldsync_node::identity::IdentityError;
use fieldsync_node::store::format::FormatError;
use fieldsync_node::store::OpenError;

/// The command failed: storage, damage, a refused store, problems found.
pub(crate) const EXIT_FAILED: u8 = 1;
/// The command line or the input was wrong (clap also uses 2).
pub(crate) const EXIT_USAGE: u8 = 2;

/// An error that knows what the user should do and how to exit.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    pub(crate) exit: u8,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// The command failed (exit 1).
    pub(crate) fn failed(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
            exit: EXIT_FAILED,
        }
    }

    /// The command line or its input was wrong (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
            exit: EXIT_USAGE,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
}

/// Print the error and its hint to stderr; the exit code to return.
pub(crate) fn report(error: &anyhow::Error) -> ExitCode {
    // `{:#}` prints the chain on one line: "outer: inner: root".
    eprintln!("error: {error:#}");
    let (hint, exit) = advice(error);
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(exit)
}

fn advice(error: &anyhow::Error) -> (Option<String>, u8) {
    for cause in error.chain() {
        if let Some(cli) = cause.downcast_ref::<CliError>() {
            return (cli.hint.clone(), cli.exit);
        }
        if let Some(format) = cause.downcast_ref::<FormatError>() {
            return format_advice(format);
        }
        if let Some(open) = cause.downcast_ref::<OpenError>() {
            return match open {
                OpenError::Format(format) => format_advice(format),
                OpenError::AlreadyExists(_) => (
                    Some("pick another --dir, or use the existing node".into()),
                    EXIT_USAGE,
                ),
                OpenError::Io { .. } => (
                    Some("check the data directory's permissions and free disk space".into()),
                    EXIT_FAILED,
                ),
                OpenError::Corrupt { .. } => (
                    Some(
                        "run `fieldsync verify` for details; restore the data directory \
                         from a backup, or re-create the node and let it sync"
                            .into(),
                    ),
                    EXIT_FAILED,
                ),
            };
        }
        if let Some(config) = cause.downcast_ref::<ConfigError>() {
            return match config {
                ConfigError::Missing { .. } => (Some(init_hint()), EXIT_USAGE),
                ConfigError::Parse { .. } | ConfigError::Invalid { .. } => (
                    Some(
                        "fix the key in the config file; `fieldsync init --dir <new dir>` \
                         writes a commented example of every key"
                            .into(),
                    ),
                    EXIT_USAGE,
                ),
                ConfigError::Env { var, .. } => (
                    Some(format!(
                        "fix or unset {var}; without it the value in fieldsync.toml applies"
                    )),
                    EXIT_USAGE,
                ),
                _ => (None, EXIT_FAILED),
            };
        }
        if let Some(identity) = cause.downcast_ref::<IdentityError>() {
            return match identity {
                IdentityError::Missing { .. } => (Some(init_hint()), EXIT_USAGE),
                IdentityError::Mismatch { .. } | IdentityError::Invalid { .. } => (
                    Some(
                        "restore node.key and node.crt from a backup of this node; \
                         a new identity makes this node a stranger to its peers"
                            .into(),
                    ),
                    EXIT_FAILED,
                ),
                _ => (None, EXIT_FAILED),
            };
        }
    }
    (None, EXIT_FAILED)
}

fn init_hint() -> String {
    "create a node with `fieldsync init --dir <dir>`, or point --dir \
     (or FIELDSYNC_DIR) at an existing one"
        .into()
}

fn format_advice(error: &FormatError) -> (Option<String>, u8) {
    match error {
        FormatError::Missing(_) => (Some(init_hint()), EXIT_USAGE),
        FormatError::Newer { .. } => (
            Some(
                "this fieldsync is older than the one that wrote the store: install the newer \
                 release (see `fieldsync --version`)"
                    .into(),
            ),
            EXIT_FAILED,
        ),
        FormatError::TooOld { .. } => (
            Some(
                "open the store once with an intermediate fieldsync release to migrate it, \
                 or re-create the node and let it sync"
                    .into(),
            ),
            EXIT_FAILED,
        ),
        FormatError::Unreadable { .. } => (
            Some("the FORMAT file must hold one line, `fieldsync-store <number>`".into()),
            EXIT_FAILED,
        ),
    }
}
