//! `GET /api/v1/changes`: the ordered changes feed, with longpoll.

use std::time::Duration;

use axum::extract::State;
use fieldsync_schemas::{Role, Scope};

use super::model::{Change, ChangesPage, ChangesQuery, FeedMode, LONGPOLL_TIMEOUT_MS_ASKED_MAX};
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorKind, Problem};
use crate::feed::{read_page, FeedPage};
use crate::state::AppState;

/// Longest collection name accepted in the filter.
const COLLECTION_BYTES_MAX: usize = 64;

/// Read the changes the caller may see, in seq order.
#[utoipa::path(
    get, path = "/api/v1/changes", tag = "changes",
    params(ChangesQuery),
    responses(
        (status = 200, description = "A page of changes (empty at a longpoll timeout)", body = ChangesPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scope `changes:read` missing", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests, or this user already holds `longpolls_per_user_max` longpolls", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<axum::Json<ChangesPage>, ApiError> {
    caller.field_or_scope(Scope::ChangesRead)?;
    let config = state.config();
    let since = query.since.unwrap_or(0);
    let limit = super::page_size(config, query.limit, "limit")?;
    // The document says `maximum`: a larger wait is refused, not cut (a
    // client asking for hours has a bug worth hearing about). Asked waits
    // up to the maximum are cut to `longpoll_timeout_ms_max`.
    if query
        .timeout
        .is_some_and(|timeout| timeout > LONGPOLL_TIMEOUT_MS_ASKED_MAX)
    {
        return Err(ApiError::new(
            ErrorKind::InvalidQuery,
            format!("`timeout` must be 0 to {LONGPOLL_TIMEOUT_MS_ASKED_MAX} ms"),
        ));
    }
    if let Some(name) = &query.collection {
        if name.is_empty()
            || name.len() > COLLECTION_BYTES_MAX
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ApiError::new(
                ErrorKind::InvalidQuery,
                "`collection` must be a collection name (letters, digits, `_`, `-`)",
            ));
        }
    }
    let longpoll = query.feed == Some(FeedMode::Longpoll);
    // Held until the answer is sent: at most `longpolls_per_user_max` at
    // once per user.
    let _slot = if longpoll {
        Some(state.longpoll_slot(&caller.user_id)?)
    } else {
        None
    };
    let technician = caller.role == Role::Technician;
    // Subscribe before reading, so a write landing between the read and
    // the wait still wakes us.
    let mut watch = state.store().watch_seq();
    let mut closing = state.closing();
    let visible = *watch.borrow_and_update();
    if since > visible {
        // The office may learn the store's last seq; a technician may not.
        let last = if technician {
            String::new()
        } else {
            format!(" {visible}")
        };
        return Err(ApiError::new(
            ErrorKind::InvalidQuery,
            format!(
                "`since` {since} is past the last change{last}; \
                 the store may have been recreated (compare `epoch`), start from 0"
            ),
        ));
    }
    let scan_max = config.scan_entries_max;
    let read = |since: u64| {
        let caller = caller.clone();
        let collection = query.collection.clone();
        state.blocking(move |store| {
            read_page(
                store,
                &caller,
                since,
                limit,
                collection.as_deref(),
                scan_max,
            )
        })
    };
    let mut page = read(since).await?;
    if longpoll && page.entries.is_empty() && !page.more {
        let wait_ms = query
            .timeout
            .unwrap_or(config.longpoll_timeout_ms_default)
            .min(config.longpoll_timeout_ms_max);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        while page.entries.is_empty() && !*closing.borrow_and_update() {
            tokio::select! {
                changed = tokio::time::timeout_at(deadline, watch.changed()) => match changed {
                    Ok(Ok(())) => {
                        watch.borrow_and_update();
                        page = read(page.last_seq).await?;
                    }
                    // Timed out, or the store closed: answer with what we have.
                    Ok(Err(_)) | Err(_) => break,
                },
                // The gateway is shutting down: answer now.
                _ = closing.changed() => break,
            }
        }
    }
    Ok(axum::Json(to_body(&state, page, since, technician)))
}

/// The answer. The page's `last_seq` is where the scan stopped; when it
/// stopped at the end of the changelog that is the store's last seq, which
/// a technician may not learn (hardening finding 7: it tells how busy the
/// whole office is). So a technician's `last_seq` is their own cursor: the
/// seq of the last change they are shown (or the `since` they sent) when
/// the scan reached the end, and where the scan stopped only when it
/// stopped early (`next`). Their next request scans again the changes they
/// may not see past that, at most `scan_entries_max` of them.
fn to_body(state: &AppState, page: FeedPage, since: u64, technician: bool) -> ChangesPage {
    let lag = state.store().last_seq().saturating_sub(page.last_seq);
    metrics::histogram!("fieldsync_feed_lag_seqs").record(lag as f64);
    metrics::counter!("fieldsync_feed_entries_total").increment(page.entries.len() as u64);
    let last_seq = if technician && !page.more {
        page.entries
            .last()
            .map_or(since, |entry| entry.seq.max(since))
    } else {
        page.last_seq
    };
    ChangesPage {
        last_seq,
        next: page.more.then_some(page.last_seq),
        epoch: hex::encode(state.store().epoch()),
        entries: page.entries.into_iter().map(Change::from).collect(),
    }
}
