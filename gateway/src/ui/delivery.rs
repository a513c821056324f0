//! The web UI's delivery pages: webhooks (state, cursor, health and the
//! latest attempts) and asynchronous commands by state. Read-only, like
//! the rest of the UI; retries, rotations and results go through the API.
//!
//! Who sees what is the API's rule, repeated here because its helpers
//! are private to `api/`: hooks as `GET /api/v1/webhooks` (operators all,
//! others their own; technicians may register hooks for their work
//! orders, integrations need `webhooks:manage`), commands as
//! `GET /api/v1/commands` (operators all, integrations with
//! `commands:consume` or `commands:publish` the ones they publish or
//! execute, technicians none).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fieldsync_node::clock::rfc3339_ms;
use maud::{html, Markup};

use super::{error_page, page, UiCaller};
use crate::delivery::attempts::{self, AttemptKind, AttemptRow};
use crate::delivery::command_schedule::{is_available, CommandState};
use crate::delivery::commands::{self, Command};
use crate::delivery::hook::{self, Format, Hook};
use crate::delivery::penalty::Disabled;
use crate::state::AppState;

/// Attempts shown per hook (the most recent).
const HOOK_ATTEMPTS_SHOWN: u64 = 5;
/// Rows per command section, at most.
const COMMANDS_SHOWN: usize = 100;

/// A hook and its latest attempts, oldest first.
struct HookRows {
    hook: Hook,
    attempts: Vec<AttemptRow>,
}

pub(super) async fn webhooks(State(state): State<AppState>, session: UiCaller) -> Response {
    let caller = &session.caller;
    if let Err(error) = crate::api::webhooks::may_manage(caller) {
        return error_page(StatusCode::FORBIDDEN, Some(&session), &error);
    }
    let reader = caller.clone();
    let read = state
        .blocking(move |store| {
            hook::list(store)?
                .into_iter()
                .filter(|hook| crate::api::webhooks::manages(&reader, hook))
                .map(|hook| {
                    let after = hook.attempts.saturating_sub(HOOK_ATTEMPTS_SHOWN);
                    let attempts = attempts::list(
                        store,
                        &attempts::hook_subject(&hook.id),
                        after,
                        HOOK_ATTEMPTS_SHOWN as usize,
                    )?;
                    Ok(HookRows { hook, attempts })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let hooks = match read {
        Ok(hooks) => hooks,
        Err(error) => return error_page(error.kind.status(), Some(&session), &error),
    };
    let now_ms = state.now_ms();
    let body = html! {
        @if hooks.is_empty() { p { "No webhooks you may manage." } }
        @for rows in &hooks { (hook_section(rows, now_ms)) }
    };
    page("Webhooks", Some(&session), body).into_response()
}

fn hook_state(hook: &Hook, now_ms: u64) -> String {
    let health = &hook.health;
    match &health.disabled {
        Some(Disabled::Gone { at_ms }) => {
            format!("disabled: gone (410, {})", rfc3339_ms(*at_ms))
        }
        Some(Disabled::FailingTooLong { at_ms, since_ms }) => format!(
            "disabled: failing_too_long (failing since {}, disabled {})",
            rfc3339_ms(*since_ms),
            rfc3339_ms(*at_ms)
        ),
        None if health.next_attempt_at_ms > now_ms => {
            format!("penalised until {}", rfc3339_ms(health.next_attempt_at_ms))
        }
        None => "active".into(),
    }
}

fn filters_text(hook: &Hook) -> String {
    let filter = &hook.filter;
    let mut parts = Vec::new();
    if filter.collections.is_empty() {
        parts.push("all collections".to_string());
    } else {
        parts.push(format!("collections: {}", filter.collections.join(", ")));
    }
    if let Some(data) = &filter.data {
        parts.push(format!("{} = {}", data.field, data.value));
    }
    if filter.state_changes_only {
        parts.push("state changes only".into());
    }
    if filter.include_data {
        parts.push("with data".into());
    }
    parts.join("; ")
}

fn kind_text(kind: AttemptKind) -> &'static str {
    match kind {
        AttemptKind::Delivery => "delivery",
        AttemptKind::Test => "test",
        AttemptKind::Redelivery => "redelivery",
        AttemptKind::Command => "command",
    }
}

fn hook_section(rows: &HookRows, now_ms: u64) -> Markup {
    let hook = &rows.hook;
    let health = &hook.health;
    let format = match hook.format {
        Format::Json => "json",
        Format::Xml => "xml",
    };
    let state = hook_state(hook, now_ms);
    html! {
        section {
            h2 { code { (hook.id) } }
            table {
                tr { th { "Owner" } td { (hook.owner) } }
                tr { th { "URL" } td { code { (hook.url) } } }
                tr { th { "Format" } td { (format) } }
                tr { th { "Filters" } td { (filters_text(hook)) } }
                tr {
                    th { "State" }
                    td {
                        @if health.disabled.is_some() { span.badge.conflict { (state) } }
                        @else { span.badge { (state) } }
                    }
                }
                @if hook.owner_role != fieldsync_schemas::Role::Technician {
                    tr { th { "Cursor" } td { (hook.cursor) } }
                }
                tr {
                    th { "Pending notification" }
                    td {
                        @if let Some(pending) = &hook.pending {
                            code { (pending.id) } " (" (pending.changes)
                            @if pending.changes == 1 { " change)" } @else { " changes)" }
                        } @else { "none" }
                    }
                }
                tr { th { "Consecutive failures" } td { (health.failures) } }
                tr { th { "Penalty" } td { (health.penalty_ms) " ms" } }
                tr { th { "Last error" } td.error { (hook.last_error.as_deref().unwrap_or("")) } }
                tr {
                    th { "Last success" }
                    td { (health.last_success_at_ms.map_or_else(|| "never".into(), rfc3339_ms)) }
                }
            }
            h3 { "Latest attempts" }
            @if rows.attempts.is_empty() { p { "No attempts yet." } }
            @else {
                table {
                    tr { th { "#" } th { "Kind" } th { "Success" } th { "Status" } th { "Duration (ms)" } th { "Error" } th { "At" } }
                    @for attempt in rows.attempts.iter().rev() {
                        tr {
                            td { (attempt.attempt) }
                            td { (kind_text(attempt.kind)) }
                            td { @if attempt.success { "yes" } @else { span.error { "no" } } }
                            td { (attempt.status.map(|s| s.to_string()).unwrap_or_default()) }
                            td { (attempt.duration_ms) }
                            td { (attempt.error.as_deref().unwrap_or("")) }
                            td { (attempt.at) }
                        }
                    }
                }
            }
        }
    }
}

/// The four sections of the commands page, each read with one row more
/// than shown (to tell whether it was capped).
struct CommandSections {
    pending: Vec<Command>,
    waiting: Vec<Command>,
    done: Vec<Command>,
    dead: Vec<Command>,
}

pub(super) async fn commands_page(State(state): State<AppState>, session: UiCaller) -> Response {
    let caller = &session.caller;
    let allowed = crate::api::commands::may_list(caller);
    if let Err(error) = allowed {
        return error_page(StatusCode::FORBIDDEN, Some(&session), &error);
    }
    let reader = caller.clone();
    let now_ms = state.now_ms();
    let scan_max = state.config().scan_entries_max;
    let read = state
        .blocking(move |store| {
            let sees = |command: &Command| crate::api::commands::sees(&reader, command);
            let limit = COMMANDS_SHOWN + 1;
            Ok(CommandSections {
                pending: commands::pending(
                    store,
                    |c| sees(c) && is_available(&c.progress, now_ms),
                    limit,
                    scan_max,
                )?,
                waiting: commands::pending(
                    store,
                    |c| sees(c) && !is_available(&c.progress, now_ms),
                    limit,
                    scan_max,
                )?,
                done: commands::history(
                    store,
                    |c| sees(c) && matches!(c.progress.state, CommandState::Done { .. }),
                    limit,
                    scan_max,
                )?,
                dead: commands::history(
                    store,
                    |c| sees(c) && matches!(c.progress.state, CommandState::Dead { .. }),
                    limit,
                    scan_max,
                )?,
            })
        })
        .await;
    let sections = match read {
        Ok(sections) => sections,
        Err(error) => return error_page(error.kind.status(), Some(&session), &error),
    };
    let body = html! {
        (command_section("Pending (available now)", "Available at", &sections.pending))
        (command_section("Waiting (retry scheduled)", "Available at", &sections.waiting))
        (command_section("Done", "Finished at", &sections.done))
        (command_section("Dead", "Finished at", &sections.dead))
    };
    page("Commands", Some(&session), body).into_response()
}

/// When a command is available (pending) or finished.
fn command_time(command: &Command) -> String {
    match command.progress.state {
        CommandState::Pending { available_at_ms } => rfc3339_ms(available_at_ms),
        CommandState::Done { at_ms } | CommandState::Dead { at_ms } => rfc3339_ms(at_ms),
    }
}

fn command_section(title: &str, time_column: &str, found: &[Command]) -> Markup {
    let capped = found.len() > COMMANDS_SHOWN;
    let shown = &found[..found.len().min(COMMANDS_SHOWN)];
    html! {
        section {
            h2 { (title) " (" (shown.len()) @if capped { "+" } ")" }
            @if shown.is_empty() { p { "None." } }
            @else {
                table {
                    tr { th { "Id" } th { "Name" } th { "Subscriber" } th { "Publisher" } th { "Attempts" } th { (time_column) } }
                    @for command in shown {
                        tr {
                            td { code { (command.id) } }
                            td { (command.name) }
                            td { (command.subscriber) }
                            td { (command.publisher) }
                            td { (command.progress.attempts) " / " (command.rule.attempts_max) }
                            td { (command_time(command)) }
                        }
                    }
                }
                @if capped {
                    p.error { "Showing the first " (COMMANDS_SHOWN) " only; use the API (GET /api/v1/commands) for the rest." }
                }
            }
        }
    }
}
