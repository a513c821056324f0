//! Serve a gateway over a fresh store with sample users and work orders,
//! for trying the API by hand and for `scripts/schemathesis.sh`.
//!
//! `cargo run -p fieldsync-gateway --example serve -- [ADDR] [DATA_DIR]`
//! (defaults: 127.0.0.1:0 and a temporary directory). Prints the URL and
//! one `user=... role=... secret=...` line per sample user, then serves
//! until Ctrl-C. The gateway has a central's defaults, and takes the
//! `FIELDSYNC_GATEWAY_<KEY>` overrides a node takes (the schemathesis
//! script shortens longpolls with them).

use std::path::{Path, PathBuf};

use anyhow::Context;
use fieldsync_gateway::{AppState, GatewayConfig, TokenKey};
use fieldsync_node::config::NodeConfig;
use fieldsync_node::secret;
use fieldsync_node::store::{Store, StoreConfig, User};
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, Priority, Role, Scope, Status};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().join("store"));
    let node = NodeConfig::parse("role = \"central\"\nname = \"serve\"\n", Path::new("serve"))?
        .with_env_overrides(Path::new("(environment)"), |var| std::env::var(var).ok())?;
    let config = GatewayConfig::from_node(&node);
    let store = Store::init(&dir, StoreConfig::default()).context("creating the store")?;
    let users = [
        ("op", Role::Operator, vec![]),
        ("tech-1", Role::Technician, vec![]),
        ("tech-2", Role::Technician, vec![]),
        ("erp", Role::Integration, Scope::ALL.to_vec()),
    ];
    let mut lines = Vec::new();
    for (id, role, scopes) in users {
        let client_secret = secret::generate_client_secret();
        store.put_user(&User {
            id: id.into(),
            role,
            scopes,
            secret_hash: Some(secret::hash(&client_secret)?),
            enroll_code_hash: None,
            enroll_code_expires_at_ms: None,
            node_ids: Vec::new(),
            revoked: false,
            created_at: "2026-01-01T00:00:00Z".into(),
        })?;
        lines.push(format!("user={id} role={role} secret={client_secret}"));
    }
    let office = Actor::new("op", Role::Operator);
    for n in 0..6 {
        let assignee = ["tech-1", "tech-2", ""][n % 3];
        let new = NewWorkOrder {
            id: Some(format!("wo-{n}")),
            number: format!("WO-2026-{n:06}"),
            title: format!("Sample repair {n}"),
            description: "Compressor makes a noise <b>loudly</b> & often".into(),
            customer: Customer {
                name: format!("Customer {n}"),
                address: "1 Main St".into(),
                phone: "555-0100".into(),
                document: String::new(),
            },
            priority: Priority::Normal,
            assignee: (!assignee.is_empty()).then(|| assignee.to_string()),
            scheduled_for: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            initial_status: if assignee.is_empty() {
                Status::Open
            } else {
                Status::Assigned
            },
            notes: Vec::new(),
            materials: Vec::new(),
        };
        store.create_work_order(&office, &new, 1_767_225_600)?;
    }
    // Seeding waits on durable flushes (blocking); serving is async.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        println!("url=http://{}", listener.local_addr()?);
        for line in lines {
            println!("{line}");
        }
        let state = AppState::new(store.clone(), TokenKey::generate(), config)?;
        fieldsync_gateway::run(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        anyhow::Ok(())
    })?;
    store.close();
    Ok(())
}
