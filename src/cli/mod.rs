//! One module per command. Each exposes its clap arguments and a `run`
//! that takes the data directory and returns `anyhow::Result<()>`; output
//! for people and scripts goes to stdout, logs and errors to stderr.

pub(crate) mod batches;
pub(crate) mod demo;
pub(crate) mod demo_receiver;
pub(crate) mod enroll;
pub(crate) mod entities;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod run;
pub(crate) mod show;
pub(crate) mod status;
pub(crate) mod sync_status;
pub(crate) mod user;
pub(crate) mod verify;
pub(crate) mod wo;
