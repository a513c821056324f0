//! `fieldsync user add|code|list|revoke`: people and machine clients.
//!
//! Credentials are made here and shown once: operators and integration
//! clients get a client secret (for the gateway's token endpoint),
//! technicians get a one-time enrollment code (for `fieldsync enroll` on
//! their laptop). Only Argon2id hashes are stored.

use std::path::Path;

use clap::{Args, Subcommand};
use fieldsync_node::secret;
use fieldsync_node::store::User;
use fieldsync_schemas::{Role, Scope};

use crate::error::CliError;
use crate::node::Node;
use fieldsync_node::clock::now_rfc3339;

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user or integration client and print its credentials once.
    Add(AddArgs),
    /// A new one-time enrollment code for an existing user: another device
    /// (a technician's tablet), or this user's device at a second central.
    /// Devices already enrolled stay enrolled.
    Code(CodeArgs),
    /// List users (never their secrets).
    List(ListArgs),
    /// Revoke a user: its secret, code and enrolled laptops stop working.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The user id (letters, digits, `-`, `_`, `.`, `@`).
    id: String,
    /// operator, technician or integration.
    #[arg(long)]
    role: Role,
    /// An integration client's scope; repeat for several (changes:read,
    /// webhooks:manage, events:write, batches:write, work-orders:read,
    /// work-orders:write).
    #[arg(long = "scope")]
    scopes: Vec<Scope>,
    /// Also issue a one-time enrollment code (always issued for
    /// technicians; lets an operator enroll a laptop too).
    #[arg(long)]
    enroll_code: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CodeArgs {
    /// The user id.
    id: String,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The user id.
    id: String,
}

pub(crate) fn run(dir: &Path, command: &UserCommand) -> anyhow::Result<()> {
    // Check arguments before opening anything.
    if let UserCommand::Add(args) = command {
        check_add(args)?;
    }
    let node = Node::open(dir)?;
    let result = match command {
        UserCommand::Add(args) => add(&node, args),
        UserCommand::Code(args) => code(&node, args),
        UserCommand::List(args) => list(&node, args),
        UserCommand::Revoke(args) => revoke(&node, args),
    };
    node.store.close();
    result
}

fn check_add(args: &AddArgs) -> anyhow::Result<()> {
    let scopes_hint = "scopes: changes:read, webhooks:manage, events:write, batches:write, \
                       work-orders:read, work-orders:write";
    match args.role {
        Role::Integration if args.scopes.is_empty() => Err(CliError::usage(
            "an integration client needs at least one --scope",
        )
        .hint(format!(
            "e.g. --scope changes:read --scope work-orders:read ({scopes_hint})"
        ))
        .into()),
        Role::Integration if args.enroll_code => {
            Err(CliError::usage("integration clients do not enroll laptops")
                .hint("drop --enroll-code; the client authenticates with its secret")
                .into())
        }
        Role::Operator | Role::Technician if !args.scopes.is_empty() => {
            Err(CliError::usage(format!(
                "--scope is for integration clients, not for a {}",
                args.role
            ))
            .hint(format!(
                "drop --scope: a {} has the rights of its role",
                args.role
            ))
            .into())
        }
        _ => Ok(()),
    }
}

fn add(node: &Node, args: &AddArgs) -> anyhow::Result<()> {
    if node.store.user(&args.id)?.is_some() {
        return Err(
            CliError::usage(format!("user `{}` already exists", args.id))
                .hint("pick another id, or `fieldsync user revoke` the old one first")
                .into(),
        );
    }
    let mut scopes = args.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let client_secret = match args.role {
        Role::Operator | Role::Integration => Some(secret::generate_client_secret()),
        Role::Technician => None,
    };
    let code =
        (args.role == Role::Technician || args.enroll_code).then(secret::generate_one_time_code);
    let user = User {
        id: args.id.clone(),
        role: args.role,
        scopes,
        secret_hash: client_secret.as_deref().map(secret::hash).transpose()?,
        enroll_code_hash: code.as_deref().map(secret::hash).transpose()?,
        enroll_code_expires_at_ms: code
            .as_ref()
            .map(|_| fieldsync_node::clock::now_ms() + node.config.sync.enroll_code_ttl_ms),
        node_ids: Vec::new(),
        revoked: false,
        created_at: now_rfc3339(),
    };
    node.store.put_user(&user).map_err(|e| {
        CliError::usage(format!("cannot add user `{}`: {e}", args.id))
            .hint("user ids are 1 to 64 letters, digits, `-`, `_`, `.` or `@`")
    })?;
    tracing::info!(user = %user.id, role = %user.role, "user added");
    println!("Added {} `{}`.", user.role, user.id);
    if !user.scopes.is_empty() {
        let names: Vec<&str> = user.scopes.iter().map(|s| s.as_str()).collect();
        println!("scopes:          {}", names.join(" "));
    }
    if let Some(client_secret) = client_secret {
        println!("client id:       {}", user.id);
        println!("client secret:   {client_secret}");
    }
    if let Some(code) = code {
        print_code(node, &user, &code);
    }
    println!("Shown once: only a hash is stored. Keep it somewhere safe now.");
    Ok(())
}

/// The enrollment code and what to type on the device.
fn print_code(node: &Node, user: &User, code: &str) {
    println!("enrollment code: {code}");
    if let Some(at) = user.enroll_code_expires_at_ms {
        println!("code expires:    {}", fieldsync_node::clock::rfc3339_ms(at));
    }
    println!("central id:      {}", node.identity.node_id());
    println!(
        "On the laptop: fieldsync enroll --central <this central's host:port> \
         --central-id {} --code {code}",
        &node.identity.node_id()[..16]
    );
}

fn code(node: &Node, args: &CodeArgs) -> anyhow::Result<()> {
    let Some((mut user, version)) = node.store.user_versioned(&args.id)? else {
        return Err(CliError::failed(format!("no user `{}`", args.id))
            .hint("`fieldsync user list` shows the users")
            .into());
    };
    if user.revoked {
        return Err(CliError::failed(format!("`{}` is revoked", user.id))
            .hint("add a new user instead")
            .into());
    }
    if user.role == Role::Integration {
        return Err(CliError::usage(format!(
            "`{}` is an integration client, which never enrolls a device",
            user.id
        ))
        .hint("an integration client authenticates with its client secret")
        .into());
    }
    let code = secret::generate_one_time_code();
    user.enroll_code_hash = Some(secret::hash(&code)?);
    user.enroll_code_expires_at_ms =
        Some(fieldsync_node::clock::now_ms() + node.config.sync.enroll_code_ttl_ms);
    // Compare-and-set: an enrollment or a revocation meanwhile wins.
    node.store.put_user_if(&user, version).map_err(|e| {
        CliError::failed(format!("cannot issue a code for `{}`: {e}", user.id))
            .hint("the user changed meanwhile; run the command again")
    })?;
    tracing::info!(user = %user.id, "enrollment code issued");
    println!(
        "New enrollment code for {} `{}` ({} device(s) enrolled stay enrolled).",
        user.role,
        user.id,
        user.node_ids.len()
    );
    print_code(node, &user, &code);
    println!("Shown once: only a hash is stored. Keep it somewhere safe now.");
    Ok(())
}

fn list(node: &Node, args: &ListArgs) -> anyhow::Result<()> {
    let users = node.store.users()?;
    if args.json {
        let rows: Vec<_> = users
            .iter()
            .map(|u| {
                serde_json::json!({
                    "id": u.id,
                    "role": u.role,
                    "scopes": u.scopes,
                    "has_secret": u.secret_hash.is_some(),
                    "enroll_code_pending": u.enroll_code_hash.is_some(),
                    "node_ids": u.node_ids,
                    "revoked": u.revoked,
                    "created_at": u.created_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if users.is_empty() {
        println!("no users yet; add one with `fieldsync user add <id> --role operator`");
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:<8} {:<22} SCOPES",
        "ID", "ROLE", "STATE", "CREDENTIALS"
    );
    for user in &users {
        let mut credentials = Vec::new();
        if user.secret_hash.is_some() {
            credentials.push("secret".to_string());
        }
        if user.enroll_code_hash.is_some() {
            credentials.push("code pending".to_string());
        }
        if !user.node_ids.is_empty() {
            credentials.push(format!("{} laptop(s)", user.node_ids.len()));
        }
        let scopes: Vec<&str> = user.scopes.iter().map(|s| s.as_str()).collect();
        println!(
            "{:<24} {:<12} {:<8} {:<22} {}",
            user.id,
            user.role.as_str(),
            if user.revoked { "revoked" } else { "active" },
            if credentials.is_empty() {
                "-".to_string()
            } else {
                credentials.join(", ")
            },
            scopes.join(" ")
        );
    }
    Ok(())
}

fn revoke(node: &Node, args: &RevokeArgs) -> anyhow::Result<()> {
    let Some(mut user) = node.store.user(&args.id)? else {
        return Err(CliError::failed(format!("no user `{}`", args.id))
            .hint("`fieldsync user list` shows the users")
            .into());
    };
    if user.revoked {
        println!("`{}` was already revoked.", user.id);
        return Ok(());
    }
    user.revoked = true;
    // A revoked user can never use these again; dropping the hashes makes
    // that true even if a later version forgot to check `revoked`.
    user.secret_hash = None;
    user.enroll_code_hash = None;
    node.store.put_user(&user)?;
    tracing::info!(user = %user.id, "user revoked");
    println!(
        "Revoked {} `{}`: its credentials no longer work{}.",
        user.role,
        user.id,
        if user.node_ids.is_empty() {
            String::new()
        } else {
            format!(", nor do its {} enrolled laptop(s)", user.node_ids.len())
        }
    );
    Ok(())
}
