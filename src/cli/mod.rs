//! One module per command. Each exposes its clap arguments and a `run`
//! that takes the data directory and returns `anyhow::Result<()>`; output
//! for people and scripts goes to stdout, logs and errors to stderr.

pub(crate) mod demo;
pub(crate) mod enroll;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod run;
pub(crate) mod show;
pub(crate) mod status;
pub(crate) mod sync_status;
pub(crate) mod user;
pub(crate) mod verify;
pub(crate) mod wo;

/// The current time as RFC 3339 UTC with whole seconds.
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}
