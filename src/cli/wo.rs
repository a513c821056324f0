//! `fieldsync wo create|assign|note|material|report|status|close`: work
//! orders from the command line, through the same typed operations as the
//! gateway (field rules included), on a stopped node's store.
//!
//! Who acts: `--as USER` (with `--role`), else on a laptop the user it was
//! enrolled for (`enrollment.json`), else on a central the operator
//! `office`. A technician's laptop can only do what a technician may: the
//! typed operations refuse the rest before anything is written.

use std::path::Path;

use clap::{Args, Subcommand};
use fieldsync_node::config::NodeRole;
use fieldsync_node::doc::Operation;
use fieldsync_node::store::WriteError;
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, OperatorPatch, Priority, Role, Status};

use crate::cli::enroll::enrollment;
use crate::error::CliError;
use crate::node::Node;
use fieldsync_node::clock;

#[derive(Debug, Args)]
pub(crate) struct WoArgs {
    #[command(subcommand)]
    command: WoCommand,
    /// Act as this user (default: the enrolled user on a laptop, `office`
    /// on a central).
    #[arg(long = "as", global = true)]
    actor: Option<String>,
    /// The acting user's role (default: technician for the enrolled user,
    /// operator otherwise).
    #[arg(long, global = true)]
    role: Option<Role>,
}

#[derive(Debug, Subcommand)]
enum WoCommand {
    /// Create a work order (office only); prints its id.
    Create(CreateArgs),
    /// Assign a work order to a technician (office only).
    Assign {
        id: String,
        /// The technician's user id.
        #[arg(long)]
        to: String,
    },
    /// Append a note.
    Note {
        id: String,
        #[arg(long)]
        text: String,
    },
    /// Request a material.
    Material {
        id: String,
        #[arg(long)]
        sku: String,
        #[arg(long)]
        qty: f64,
        #[arg(long, default_value = "pc")]
        unit: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace the technical report's text.
    Report {
        id: String,
        #[arg(long)]
        text: String,
    },
    /// Record a status transition (en_route, in_progress, on_hold, ...).
    Status {
        id: String,
        #[arg(long)]
        to: Status,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Close the work order with a resolution and a signature.
    Close {
        id: String,
        #[arg(long)]
        resolution: String,
        #[arg(long)]
        signed_by: String,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Document id (default: a new UUID).
    #[arg(long)]
    id: Option<String>,
    /// Human code, e.g. WO-2026-000123 (default: from the id).
    #[arg(long)]
    number: Option<String>,
    #[arg(long)]
    title: String,
    #[arg(long, default_value = "")]
    description: String,
    #[arg(long)]
    customer: String,
    #[arg(long, default_value = "")]
    address: String,
    #[arg(long, default_value = "")]
    phone: String,
    #[arg(long, default_value = "normal")]
    priority: Priority,
    /// The technician's user id.
    #[arg(long)]
    assignee: Option<String>,
    #[arg(long)]
    scheduled_for: Option<String>,
}

pub(crate) fn run(dir: &Path, args: &WoArgs) -> anyhow::Result<()> {
    let node = Node::open(dir)?;
    let result = act(&node, dir, args);
    node.store.close();
    result
}

fn who(node: &Node, dir: &Path, args: &WoArgs) -> anyhow::Result<Actor> {
    if let Some(user) = &args.actor {
        return Ok(Actor::new(
            user.clone(),
            args.role.unwrap_or(Role::Operator),
        ));
    }
    match (node.config.role, enrollment(dir)?) {
        (NodeRole::Field, Some(enrolled)) => Ok(Actor::new(
            enrolled.user,
            args.role.unwrap_or(enrolled.role),
        )),
        (NodeRole::Field, None) => Err(CliError::usage("this laptop is not enrolled")
            .hint("enroll it (`fieldsync enroll`), or say who acts with --as USER --role ROLE")
            .into()),
        (NodeRole::Central, _) => Ok(Actor::new("office", args.role.unwrap_or(Role::Operator))),
    }
}

fn act(node: &Node, dir: &Path, args: &WoArgs) -> anyhow::Result<()> {
    let actor = who(node, dir, args)?;
    let now_ms = clock::now_ms();
    let now = clock::rfc3339_ms(now_ms);
    let time_s = (now_ms / 1000) as i64;
    let (id, op) = match &args.command {
        WoCommand::Create(create) => return create_order(node, &actor, create, &now, time_s),
        WoCommand::Assign { id, to } => (
            id,
            Operation::EditOperatorFields(OperatorPatch {
                assignee: Some(Some(to.clone())),
                ..OperatorPatch::default()
            }),
        ),
        WoCommand::Note { id, text } => (
            id,
            Operation::AddNote {
                id: uuid::Uuid::new_v4().to_string(),
                at: now.clone(),
                text: text.clone(),
            },
        ),
        WoCommand::Material {
            id,
            sku,
            qty,
            unit,
            description,
        } => (
            id,
            Operation::RequestMaterial {
                id: uuid::Uuid::new_v4().to_string(),
                at: now.clone(),
                sku: sku.clone(),
                qty: *qty,
                unit: unit.clone(),
                description: description.clone(),
            },
        ),
        WoCommand::Report { id, text } => (id, Operation::EditReport { text: text.clone() }),
        WoCommand::Status { id, to, note } => (
            id,
            Operation::AppendStatus {
                at: now.clone(),
                to: *to,
                note: note.clone(),
            },
        ),
        WoCommand::Close {
            id,
            resolution,
            signed_by,
        } => (
            id,
            Operation::Close {
                at: now.clone(),
                resolution: resolution.clone(),
                signed_by: signed_by.clone(),
                signature: String::new(),
            },
        ),
    };
    let committed = node
        .store
        .update_work_order(id, &actor, &op, time_s)
        .map_err(|e| refused(e, id))?;
    println!("{} seq {}", committed.id, committed.seq);
    Ok(())
}

fn create_order(
    node: &Node,
    actor: &Actor,
    create: &CreateArgs,
    now: &str,
    time_s: i64,
) -> anyhow::Result<()> {
    let id = create
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let new = NewWorkOrder {
        id: Some(id.clone()),
        number: match &create.number {
            Some(number) => number.clone(),
            None => fieldsync_node::numbering::next_work_order_number(
                &node.store,
                &node.config.gateway.work_order_prefix,
                fieldsync_node::clock::now_ms(),
            )?,
        },
        title: create.title.clone(),
        description: create.description.clone(),
        customer: Customer {
            name: create.customer.clone(),
            address: create.address.clone(),
            phone: create.phone.clone(),
            document: String::new(),
        },
        priority: create.priority,
        assignee: create.assignee.clone(),
        scheduled_for: create.scheduled_for.clone(),
        created_at: now.to_string(),
        initial_status: if create.assignee.is_some() {
            Status::Assigned
        } else {
            Status::Open
        },
        notes: Vec::new(),
        materials: Vec::new(),
    };
    let committed = node
        .store
        .create_work_order(actor, &new, time_s)
        .map_err(|e| refused(e, &id))?;
    println!("{} seq {}", committed.id, committed.seq);
    Ok(())
}

fn refused(error: WriteError, id: &str) -> anyhow::Error {
    match error {
        WriteError::NotFound(_) => CliError::failed(format!("no work order `{id}`"))
            .hint("`fieldsync status` shows how many documents this node holds")
            .into(),
        WriteError::Op(op) => CliError::usage(format!("refused: {op}")).into(),
        WriteError::AlreadyExists(_) => {
            CliError::usage(format!("work order `{id}` already exists")).into()
        }
        other => anyhow::Error::new(other).context(format!("cannot write work order `{id}`")),
    }
}
