//! `/api/v1/commands`: asynchronous commands between apps and sites
//! (reference §4). A publisher posts a command for a subscriber; the
//! subscriber fetches what is pending, executes it, and posts the outcome
//! with its log rows; failures come back after the retry formula's delay,
//! and after `attempts_max` failures the command is dead.
//!
//! Why a thin layer: the lifecycle is the pure `delivery/command_schedule.rs`,
//! storage is `delivery/commands.rs`. This file adds HTTP, idempotent
//! publishing (`Idempotency-Key`) and who may see what: operators all,
//! an integration client the commands it publishes or executes.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fieldsync_node::store::{Expect, RecordWrite, WriteError, WriteSet};
use fieldsync_schemas::{Role, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::model::whole;
use crate::auth::Caller;
use crate::delivery::attempts::{self, AttemptKind, AttemptRow};
use crate::delivery::command_schedule::{self, CommandState, Report, ReportError};
use crate::delivery::commands::{self, Command, LogRow};
use crate::error::store_write_error;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorKind, Problem};
use crate::state::AppState;

/// Bytes of a command name, subscriber or idempotency key, at most.
const NAME_BYTES_MAX: usize = 128;
/// Log rows one result may carry, at most.
const LOG_ROWS_MAX: usize = 100;
/// Characters of one log row's text, at most (as the document's
/// `maxLength` counts).
const LOG_TEXT_CHARS_MAX: usize = 4096;
/// Bytes of one log row's debug data (as JSON), at most.
const LOG_DEBUG_BYTES_MAX: usize = 4096;
/// Bytes of a command's payload (as JSON), at most: a command is one
/// record (64 KiB) with its envelope.
const PAYLOAD_BYTES_MAX: usize = 32 * 1024;
/// Commands listed per call, at most.
const LIST_COMMANDS_MAX: usize = 500;
/// Commands scanned per list call, at most.
const SCAN_COMMANDS_MAX: usize = 50_000;
/// Attempts and log rows shown with one command, at most.
const DETAIL_ROWS_MAX: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCommand {
    /// What to do, e.g. `anonymise-person`.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    pub name: String,
    /// Its arguments (any JSON, at most 32768 bytes as compact JSON).
    #[serde(default)]
    pub payload: Value,
    /// Who executes it: an integration client's id (or a site's name).
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    pub subscriber: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandResult {
    pub success: bool,
    /// At most 100 rows.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub logs: Vec<NewLogRow>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLogRow {
    /// 0 info, 1 warning, 2 error.
    #[serde(rename = "type", deserialize_with = "whole::u8")]
    #[schema(minimum = 0, maximum = 2)]
    pub kind: u8,
    /// At most 4096 characters.
    #[schema(max_length = 4096)]
    pub text: String,
    /// Any JSON, at most 4096 bytes as compact JSON.
    #[serde(default)]
    pub debug: Option<Value>,
}

/// A command as its publisher and subscriber see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommandView {
    pub id: String,
    pub name: String,
    pub payload: Value,
    pub subscriber: String,
    pub publisher: String,
    /// `pending`, `done` or `dead`.
    pub state: String,
    /// Executions reported so far.
    pub attempts: u32,
    pub attempts_max: u32,
    /// When a pending command may be executed (next attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub created_at: String,
}

/// A command with its execution attempts and log rows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommandDetail {
    #[serde(flatten)]
    pub command: CommandView,
    pub executions: Vec<AttemptRow>,
    pub logs: Vec<LogRow>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CommandQuery {
    /// Commands for this subscriber (integration clients: default and
    /// only themselves, unless they published the commands).
    pub subscriber: Option<String>,
    /// `pending` (default: available now), `waiting` (pending, retry not
    /// due yet), `done` or `dead`.
    #[param(inline)]
    pub state: Option<CommandStateFilter>,
    pub name: Option<String>,
    /// At most this many: 0 and 1 mean 1, values over 500 mean 500;
    /// default 100.
    #[param(minimum = 0, maximum = 9007199254740991_u64)]
    pub limit: Option<u64>,
}

/// Which commands a list shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CommandStateFilter {
    #[default]
    Pending,
    Waiting,
    Done,
    Dead,
}

fn view(command: &Command) -> CommandView {
    let at = fieldsync_node::clock::rfc3339_ms;
    let (state, available_at, finished_at) = match command.progress.state {
        CommandState::Pending { available_at_ms } => ("pending", Some(at(available_at_ms)), None),
        CommandState::Done { at_ms } => ("done", None, Some(at(at_ms))),
        CommandState::Dead { at_ms } => ("dead", None, Some(at(at_ms))),
    };
    CommandView {
        id: command.id.clone(),
        name: command.name.clone(),
        payload: command.payload.clone(),
        subscriber: command.subscriber.clone(),
        publisher: command.publisher.clone(),
        state: state.into(),
        attempts: command.progress.attempts,
        attempts_max: command.rule.attempts_max,
        available_at,
        finished_at,
        created_at: command.created_at.clone(),
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidValue, detail)
}

fn check_name(what: &str, text: &str) -> Result<(), ApiError> {
    let ok = !text.is_empty()
        && text.len() <= NAME_BYTES_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what}: 1 to {NAME_BYTES_MAX} characters of [A-Za-z0-9-_.:@]"
        )))
    }
}

/// May the caller see this command? Operators all; others the ones they
/// publish or execute.
pub(crate) fn sees(caller: &Caller, command: &Command) -> bool {
    caller.role == Role::Operator
        || command.publisher == caller.user_id
        || command.subscriber == caller.user_id
}

/// Listing commands takes `commands:consume` or `commands:publish`.
pub(crate) fn may_list(caller: &Caller) -> Result<(), ApiError> {
    caller
        .office_or_scope(Scope::CommandsConsume)
        .or_else(|_| caller.office_or_scope(Scope::CommandsPublish))
}

fn no_command(id: &str) -> ApiError {
    ApiError::not_found(format!("no command `{id}`"))
}

/// Publish a command (idempotent by `Idempotency-Key`).
#[utoipa::path(
    post, path = "/api/v1/commands", tag = "commands",
    request_body = NewCommand,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]([\t -~]{0,126}[!-~])?$",
            description = "1 to 128 visible ASCII characters (spaces inside). Publishing again with the same key returns the first command (200) instead of a new one")),
    responses(
        (status = 201, description = "Published and durable", body = CommandView),
        (status = 200, description = "Already published under this Idempotency-Key", body = CommandView),
        (status = 400, description = "Malformed body or `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope `commands:publish` missing", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad name or subscriber, or a payload over 32768 bytes", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<NewCommand>, ApiError>,
) -> Result<Response, ApiError> {
    caller.office_or_scope(Scope::CommandsPublish)?;
    let ApiJson(body) = body?;
    check_name("name", &body.name)?;
    check_name("subscriber", &body.subscriber)?;
    if body.payload.to_string().len() > PAYLOAD_BYTES_MAX {
        return Err(invalid(format!(
            "payload: at most {PAYLOAD_BYTES_MAX} bytes as JSON"
        )));
    }
    let key = match headers.get("idempotency-key") {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::new(ErrorKind::InvalidHeader, "Idempotency-Key: not text")
            })?;
            if text.is_empty() || text.len() > NAME_BYTES_MAX {
                return Err(ApiError::new(
                    ErrorKind::InvalidHeader,
                    format!("Idempotency-Key: 1 to {NAME_BYTES_MAX} bytes"),
                ));
            }
            Some(text.to_string())
        }
        None => None,
    };
    let now_ms = state.now_ms();
    let command = Command {
        id: commands::command_id(&caller.user_id, key.as_deref()),
        rule: state.delivery().settings.command_rule(&body.name),
        name: body.name,
        payload: body.payload,
        subscriber: body.subscriber,
        publisher: caller.user_id.clone(),
        idempotency_key: key,
        created_at: fieldsync_node::clock::rfc3339_ms(now_ms),
        progress: command_schedule::published(now_ms),
    };
    let (command, created) = state
        .blocking(move |store| {
            if let Some((existing, _, _)) = commands::load(store, &command.id)? {
                return Ok((existing, false));
            }
            let written = store.write_record(
                commands::PENDING,
                &command.id,
                Some(commands::encode(&command)),
                Expect::Absent,
            );
            match written {
                Ok(_) => Ok((command, true)),
                Err(WriteError::VersionMismatch { .. }) => {
                    let existing = commands::load(store, &command.id)?
                        .ok_or_else(|| ApiError::internal("command vanished"))?;
                    Ok((existing.0, false))
                }
                Err(error) => Err(store_write_error(error)),
            }
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view(&command))).into_response())
}

/// Commands: by default those pending for the caller and available now.
#[utoipa::path(
    get, path = "/api/v1/commands", tag = "commands",
    params(CommandQuery),
    responses(
        (status = 200, description = "Commands, in id order", body = [CommandView]),
        (status = 400, description = "Bad `state` or `limit`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither `commands:consume` nor `commands:publish`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CommandQuery>,
) -> Result<axum::Json<Vec<CommandView>>, ApiError> {
    may_list(&caller)?;
    let subscriber = match (&query.subscriber, caller.role) {
        (Some(subscriber), _) => Some(subscriber.clone()),
        (None, Role::Operator) => None,
        (None, _) => Some(caller.user_id.clone()),
    };
    let limit = super::query_integer(query.limit, "limit")?
        .map_or(100, |limit| {
            usize::try_from(limit).unwrap_or(LIST_COMMANDS_MAX)
        })
        .clamp(1, LIST_COMMANDS_MAX);
    let now_ms = state.now_ms();
    let wanted = query.state.unwrap_or_default();
    let keep = move |command: &Command| {
        sees(&caller, command)
            && subscriber.as_ref().is_none_or(|s| *s == command.subscriber)
            && query.name.as_ref().is_none_or(|n| *n == command.name)
    };
    let found = state
        .blocking(move |store| match wanted {
            CommandStateFilter::Pending => commands::pending(
                store,
                |c| keep(c) && command_schedule::is_available(&c.progress, now_ms),
                limit,
                SCAN_COMMANDS_MAX,
            ),
            CommandStateFilter::Waiting => commands::pending(
                store,
                |c| keep(c) && !command_schedule::is_available(&c.progress, now_ms),
                limit,
                SCAN_COMMANDS_MAX,
            ),
            CommandStateFilter::Done => commands::history(
                store,
                |c| keep(c) && matches!(c.progress.state, CommandState::Done { .. }),
                limit,
                SCAN_COMMANDS_MAX,
            ),
            CommandStateFilter::Dead => commands::history(
                store,
                |c| keep(c) && matches!(c.progress.state, CommandState::Dead { .. }),
                limit,
                SCAN_COMMANDS_MAX,
            ),
        })
        .await?;
    Ok(axum::Json(found.iter().map(view).collect()))
}

/// The command names pending for the caller, with how many of each.
#[utoipa::path(
    get, path = "/api/v1/commands/subscriptions", tag = "commands",
    responses(
        (status = 200, description = "Name → pending count, for the caller as subscriber", body = Object),
        (status = 403, description = "Scope `commands:consume` missing", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn subscriptions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<std::collections::BTreeMap<String, u64>>, ApiError> {
    caller.office_or_scope(Scope::CommandsConsume)?;
    let me = caller.user_id.clone();
    let counts = state
        .blocking(move |store| {
            let mut counts = std::collections::BTreeMap::new();
            commands::scan(store, commands::PENDING, SCAN_COMMANDS_MAX, |command| {
                if command.subscriber == me {
                    *counts.entry(command.name).or_insert(0u64) += 1;
                }
                true
            })?;
            Ok(counts)
        })
        .await?;
    Ok(axum::Json(counts))
}

/// One command: state, executions and log rows.
#[utoipa::path(
    get, path = "/api/v1/commands/{id}", tag = "commands",
    params(("id" = String, Path, description = "Command id")),
    responses(
        (status = 200, description = "The command", body = CommandDetail),
        (status = 403, description = "Technicians", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such command, or not yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_command(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<CommandDetail>, ApiError> {
    if caller.role == Role::Technician {
        return Err(ApiError::forbidden("technicians may not use this endpoint"));
    }
    let key = id.clone();
    let detail = state
        .blocking(move |store| {
            let Some((command, _, _)) = commands::load(store, &key)? else {
                return Ok(None);
            };
            let subject = attempts::command_subject(&key);
            let executions = attempts::list(store, &subject, 0, DETAIL_ROWS_MAX)?;
            let logs = commands::logs(store, &key, DETAIL_ROWS_MAX)?;
            Ok(Some((command, executions, logs)))
        })
        .await?;
    match detail {
        Some((command, executions, logs)) if sees(&caller, &command) => {
            Ok(axum::Json(CommandDetail {
                command: view(&command),
                executions,
                logs,
            }))
        }
        _ => Err(no_command(&id)),
    }
}

fn log_rows(
    id: &str,
    attempt: u32,
    rows: &[NewLogRow],
    now_ms: u64,
) -> Result<Vec<LogRow>, ApiError> {
    if rows.len() > LOG_ROWS_MAX {
        return Err(invalid(format!("at most {LOG_ROWS_MAX} log rows")));
    }
    rows.iter()
        .enumerate()
        .map(|(n, row)| {
            if row.kind > 2 {
                return Err(invalid("log type: 0 info, 1 warning, 2 error"));
            }
            if row.text.chars().count() > LOG_TEXT_CHARS_MAX {
                return Err(invalid(format!(
                    "log text: at most {LOG_TEXT_CHARS_MAX} characters"
                )));
            }
            if row
                .debug
                .as_ref()
                .is_some_and(|debug| debug.to_string().len() > LOG_DEBUG_BYTES_MAX)
            {
                return Err(invalid(format!(
                    "log debug: at most {LOG_DEBUG_BYTES_MAX} bytes as JSON"
                )));
            }
            Ok(LogRow {
                id: commands::log_key(id, attempt, n),
                command_id: id.to_string(),
                attempt,
                kind: row.kind,
                text: row.text.clone(),
                at: fieldsync_node::clock::rfc3339_ms(now_ms),
                debug: row.debug.clone(),
                at_ms: now_ms,
            })
        })
        .collect()
}

/// Post the outcome of one execution, with its log rows.
#[utoipa::path(
    post, path = "/api/v1/commands/{id}/result", tag = "commands",
    params(("id" = String, Path, description = "Command id")),
    request_body = CommandResult,
    responses(
        (status = 200, description = "Recorded and durable; the command's new state", body = CommandView),
        (status = 403, description = "Scope `commands:consume` missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such command, or not yours to execute", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished, its retry is not due yet, or it changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A log row's type over 2, or its debug data over 4096 bytes as JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_result(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: Result<ApiJson<CommandResult>, ApiError>,
) -> Result<axum::Json<CommandView>, ApiError> {
    caller.office_or_scope(Scope::CommandsConsume)?;
    let ApiJson(body) = body?;
    let now_ms = state.now_ms();
    let operator = caller.role == Role::Operator;
    let me = caller.user_id.clone();
    let command = state
        .blocking(move |store| {
            let Some((command, version, collection)) = commands::load(store, &id)? else {
                return Err(no_command(&id));
            };
            if !operator && command.subscriber != me {
                return Err(no_command(&id));
            }
            let report = if body.success {
                Report::Succeeded
            } else {
                Report::Failed
            };
            let progress =
                command_schedule::after_report(&command.progress, report, &command.rule, now_ms)
                    .map_err(|error| match error {
                        ReportError::AlreadyFinished => ApiError::new(
                            ErrorKind::Conflict,
                            format!("command `{id}` is already finished"),
                        ),
                        ReportError::NotDue { available_at_ms } => ApiError::new(
                            ErrorKind::Conflict,
                            format!(
                                "command `{id}` is waiting to be retried at {}",
                                fieldsync_node::clock::rfc3339_ms(available_at_ms)
                            ),
                        ),
                    })?;
            let updated = Command {
                progress,
                ..command
            };
            let logs = log_rows(&id, updated.progress.attempts, &body.logs, now_ms)?;
            let mut records = write_command(&updated, collection, version);
            records.push(attempts::write(&AttemptRow {
                subject: attempts::command_subject(&id),
                attempt: u64::from(updated.progress.attempts),
                kind: AttemptKind::Command,
                success: body.success,
                at: fieldsync_node::clock::rfc3339_ms(now_ms),
                at_ms: now_ms,
                notification_id: None,
                changes: 0,
                status: None,
                duration_ms: 0,
                error: logs
                    .iter()
                    .rev()
                    .find(|row| row.kind == 2)
                    .map(|row| row.text.clone()),
                response: None,
            }));
            records.extend(logs.iter().map(commands::log_write));
            match store
                .submit(WriteSet {
                    records,
                    ..WriteSet::default()
                })
                .and_then(|p| p.wait())
            {
                Ok(_) => Ok(updated),
                Err(WriteError::VersionMismatch { .. }) => Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!("command `{id}` changed meanwhile; read it and report again"),
                )),
                Err(error) => Err(store_write_error(error)),
            }
        })
        .await?;
    Ok(axum::Json(view(&command)))
}

/// The writes that store `command`: in place while pending, moved to the
/// history once finished (compare-and-set on the version read).
fn write_command(command: &Command, collection: &str, version: u64) -> Vec<RecordWrite> {
    let value = Some(commands::encode(command));
    if !command.finished() {
        return vec![RecordWrite {
            collection: collection.into(),
            key: command.id.clone(),
            value,
            expect: Expect::Version(version),
            replicated_version: None,
        }];
    }
    vec![
        RecordWrite {
            collection: commands::PENDING.into(),
            key: command.id.clone(),
            value: None,
            expect: Expect::Version(version),
            replicated_version: None,
        },
        RecordWrite {
            collection: commands::HISTORY.into(),
            key: command.id.clone(),
            value,
            expect: Expect::Absent,
            replicated_version: None,
        },
    ]
}
