//! `fieldsync enroll --central HOST:PORT --code CODE`: make this laptop a
//! node the central knows, and pin the central as its peer.
//!
//! Run it once on a new laptop, after `fieldsync init --role field`, with
//! the one-time code an operator got from `fieldsync user add <tech> --role
//! technician` on the central (which must be running). The exchange itself
//! is described in `fieldsync_node::quic::enroll`. On success the central's
//! node id and address are written into this node's `[sync] peers`, and
//! the enrolled user into `enrollment.json`, which `fieldsync wo` uses to
//! act as that user on this laptop.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use clap::Args;
use fieldsync_node::config::{NodeConfig, NodeRole, PeerConfig};
use fieldsync_node::identity::Identity;
use fieldsync_node::quic::{self, EnrollError, LinkTiming};
use fieldsync_schemas::Role;
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::node::require_node_dir;
use fieldsync_node::clock::now_rfc3339;

/// The file recording whom this laptop was enrolled for.
pub(crate) const ENROLLMENT_FILE: &str = "enrollment.json";
/// Largest enrollment file read.
const ENROLLMENT_FILE_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, Args)]
pub(crate) struct EnrollArgs {
    /// The central's sync address, `host:port` (its `[sync] listen`).
    #[arg(long)]
    central: String,
    /// The one-time code from `fieldsync user add` (case and dashes do not
    /// matter).
    #[arg(long)]
    code: String,
    /// The central's node id, or at least its first 16 hex digits, as
    /// `fieldsync user add` prints it (`central id:`). The code is sent
    /// only to a central whose certificate has this id.
    #[arg(long)]
    central_id: String,
    /// The user the code was issued for (optional: the central finds it).
    #[arg(long)]
    user: Option<String>,
}

/// What `enrollment.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Enrollment {
    pub(crate) user: String,
    pub(crate) role: Role,
    pub(crate) central_node_id: String,
    pub(crate) central_address: String,
    pub(crate) enrolled_at: String,
}

/// Record who this laptop acts for (`fieldsync wo`, the field app): the
/// enrollment, and the demo's laptops, whose users it seeds itself.
pub(crate) fn write_enrollment(dir: &Path, enrollment: &Enrollment) -> anyhow::Result<()> {
    replace_file(
        &dir.join(ENROLLMENT_FILE),
        &serde_json::to_vec_pretty(enrollment)?,
    )
}

/// The user this laptop was enrolled for, if it was.
pub(crate) fn enrollment(dir: &Path) -> anyhow::Result<Option<Enrollment>> {
    let path = dir.join(ENROLLMENT_FILE);
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if metadata.len() > ENROLLMENT_FILE_BYTES_MAX {
        anyhow::bail!(
            "{} is larger than {ENROLLMENT_FILE_BYTES_MAX} bytes",
            path.display()
        );
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let enrollment = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an enrollment record", path.display()))?;
    Ok(Some(enrollment))
}

pub(crate) fn run(dir: &Path, args: &EnrollArgs) -> anyhow::Result<()> {
    require_node_dir(dir)?;
    let mut config = NodeConfig::load(dir)?;
    if config.role != NodeRole::Field {
        return Err(CliError::usage("only a field node (a laptop) enrolls with a central")
            .hint(
                "central nodes trust each other by node id: add the other central to `[sync] peers`",
            )
            .into());
    }
    let identity = Identity::load(dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let timing = LinkTiming {
        keep_alive_ms: config.sync.keep_alive_ms,
        idle_timeout_ms: config.sync.idle_timeout_ms,
    };
    let enrolled = runtime.block_on(async {
        let address = resolve(&args.central).await?;
        quic::enroll(
            address,
            &args.central_id,
            identity.cert_der(),
            args.user.as_deref(),
            &args.code,
            &config.name,
            timing,
        )
        .await
        .map_err(|e| enroll_error(e, &args.central))
    })?;
    let peer = PeerConfig {
        address: args.central.clone(),
        node_id: enrolled.central_node_id.clone(),
        user: None,
    };
    match config
        .sync
        .peers
        .iter_mut()
        .find(|p| p.node_id == peer.node_id)
    {
        Some(existing) => existing.address = peer.address.clone(),
        None => config.sync.peers.push(peer.clone()),
    }
    replace_file(
        &NodeConfig::path_in(dir),
        config.to_commented_toml().as_bytes(),
    )?;
    write_enrollment(
        dir,
        &Enrollment {
            user: enrolled.user.clone(),
            role: enrolled.role,
            central_node_id: enrolled.central_node_id.clone(),
            central_address: args.central.clone(),
            enrolled_at: now_rfc3339(),
        },
    )?;
    tracing::info!(user = %enrolled.user, central = %enrolled.central_node_id, "enrolled");
    println!(
        "Enrolled this node ({}) for {} `{}`.",
        identity.node_id(),
        enrolled.role,
        enrolled.user
    );
    println!("central:  {} at {}", enrolled.central_node_id, args.central);
    println!(
        "Start syncing with `fieldsync --dir {} run`.",
        dir.display()
    );
    Ok(())
}

async fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    let bad = || {
        CliError::usage(format!("`{address}` is not a reachable `host:port`"))
            .hint("pass the central's sync address, e.g. --central central.example.com:7400")
    };
    let mut found = tokio::net::lookup_host(address).await.map_err(|_| bad())?;
    found.next().ok_or_else(|| bad().into())
}

fn enroll_error(error: EnrollError, central: &str) -> anyhow::Error {
    let hint = match &error {
        EnrollError::Refused(_) => {
            "codes work once; ask an operator for a new one (`fieldsync user add`)".to_string()
        }
        EnrollError::WrongCentral { .. } => "another node answered at this address: check the address, \
             and the central id `fieldsync user add` printed; the code was not sent"
            .to_string(),
        EnrollError::CentralId(_) => {
            "pass --central-id as `fieldsync user add` printed it (`central id:`)".to_string()
        }
        EnrollError::Connect { .. } | EnrollError::Timeout => format!(
            "is the central running (`fieldsync run`) and listening on {central} (its `[sync] listen`)?"
        ),
        _ => "try again; if it keeps failing, check both nodes' logs".to_string(),
    };
    CliError::failed(format!("enrollment failed: {error}"))
        .hint(hint)
        .into()
}

/// Replace `path` atomically: write a temporary file, sync it, rename.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(parent) = path.parent() {
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}
