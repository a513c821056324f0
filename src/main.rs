//! `fieldsync`: the one binary. It parses the command line, sets up logging,
//! and hands each command to its module under `cli/`; the node itself (store,
//! config, identity, and later the sync driver and the gateway) is wired in
//! `node.rs`.
//!
//! Why errors end here: every command returns `anyhow::Result`; `main`
//! prints `error: <message>` and, when it knows one, a `hint:` saying what
//! to do, then exits with 1 (something failed) or 2 (the command line or
//! its input was wrong). Nothing prints a backtrace or panics at the user.

mod cli;
mod error;
mod field_app_task;
mod gateway_task;
mod logging;
mod node;
mod peers;
mod priming;
mod sync_driver;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cli::batches::BatchesCommand;
use crate::cli::demo::DemoArgs;
use crate::cli::enroll::EnrollArgs;
use crate::cli::entities::EntitiesCommand;
use crate::cli::import::ImportArgs;
use crate::cli::init::InitArgs;
use crate::cli::show::ShowArgs;
use crate::cli::status::StatusArgs;
use crate::cli::user::UserCommand;
use crate::cli::verify::VerifyArgs;
use crate::cli::wo::WoArgs;
use crate::logging::LogFormatArg;

/// Offline-first field-service work orders: Automerge documents in sled,
/// synced between a central office and technicians' laptops.
#[derive(Debug, Parser)]
#[command(name = "fieldsync", version, about, propagate_version = true)]
struct Cli {
    /// The node's data directory (config, identity, store).
    #[arg(
        long,
        global = true,
        env = "FIELDSYNC_DIR",
        default_value = "./fieldsync-data"
    )]
    dir: PathBuf,

    /// Log format on stderr (the demo: in its log file); overrides the
    /// config's `[log] format`.
    #[arg(long, global = true, env = "FIELDSYNC_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node: config file, key pair and certificate, empty store.
    Init(InitArgs),
    /// Run the node until Ctrl-C or SIGTERM.
    Run,
    /// Show the node's identity, store and sync state.
    Status(StatusArgs),
    /// Read every document and check the store; exit 1 on any problem.
    Verify(VerifyArgs),
    /// Print one work order as JSON.
    Show(ShowArgs),
    /// Manage users and integration clients.
    #[command(subcommand)]
    User(UserCommand),
    /// Bulk-load work orders from a JSONL file (gzip or plain).
    Import(ImportArgs),
    /// Enroll this laptop with a central, using a one-time code.
    Enroll(EnrollArgs),
    /// Create and work on work orders (the node must be stopped).
    Wo(WoArgs),
    /// ERP batches received (the node must be stopped).
    #[command(subcommand)]
    Batches(BatchesCommand),
    /// Which tables each ERP uploads (the node must be stopped).
    #[command(subcommand)]
    Entities(EntitiesCommand),
    /// A central and two technicians syncing on loopback, with the gateway:
    /// see sync happen in one command. Uses a temporary directory unless
    /// --dir is given.
    Demo(DemoArgs),
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            // Help and --version are "errors" to clap; print them as clap
            // does, with clap's exit code (0 for help, 2 for usage errors).
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    // The demo uses a temporary directory unless --dir was really given.
    let dir_given = matches!(
        matches.value_source("dir"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    // The demo sets up its own logging once its directory exists.
    if !matches!(cli.command, Command::Demo(_)) {
        logging::init(&cli.dir, cli.log_format);
    }
    let result = match &cli.command {
        Command::Init(args) => cli::init::run(&cli.dir, args),
        Command::Run => cli::run::run(&cli.dir),
        Command::Status(args) => cli::status::run(&cli.dir, args),
        Command::Verify(args) => cli::verify::run(&cli.dir, args),
        Command::Show(args) => cli::show::run(&cli.dir, args),
        Command::User(command) => cli::user::run(&cli.dir, command),
        Command::Import(args) => cli::import::run(&cli.dir, args),
        Command::Enroll(args) => cli::enroll::run(&cli.dir, args),
        Command::Wo(args) => cli::wo::run(&cli.dir, args),
        Command::Batches(command) => cli::batches::run(&cli.dir, command),
        Command::Entities(command) => cli::entities::run(&cli.dir, command),
        Command::Demo(args) => {
            cli::demo::run(dir_given.then_some(cli.dir.as_path()), args, cli.log_format)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error::report(&error),
    }
}
