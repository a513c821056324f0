//! `/api/v1/entities/{erp}`: which tables an ERP uploads, set by
//! operators (here or `fieldsync entities set`), read by the ERP's sender
//! (honouring `x-upload-version`), and `forceReload` to ask for a table
//! again (cleared when its base load commits: `ingest/entities.rs`).

use axum::extract::State;
use axum::http::HeaderMap;
use fieldsync_node::store::WriteError;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorKind, Problem};
use crate::ingest::entities::{self, Entities};
use crate::ingest::rows::{check_erp, collection_of};
use crate::ingest::views::{self, SetError};
use crate::state::AppState;

/// Compare-and-set retries of a reload before giving up.
const RELOAD_TRIES_MAX: usize = 8;

fn erp_path(erp: &str) -> Result<(), ApiError> {
    check_erp(erp).map_err(|e| ApiError::new(ErrorKind::InvalidId, e))
}

fn upload_version(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    headers
        .get("x-upload-version")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::InvalidHeader,
                        "x-upload-version must be a whole number, such as 2",
                    )
                })
        })
        .transpose()
}

/// The tables an ERP uploads, in the format its `x-upload-version` speaks
/// (absent: 1).
#[utoipa::path(
    get, path = "/api/v1/entities/{erp}", tag = "ingest",
    params(
        ("erp" = String, Path, description = "The ERP's name"),
        ("x-upload-version" = Option<u32>, Header, description = "The newest entities format the client speaks (default 1)"),
    ),
    responses(
        (status = 200, description = "`{uploadVersion, queries}`", body = Entities),
        (status = 400, description = "Bad `x-upload-version`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_entities(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(erp): ApiPath<String>,
    headers: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.office_or_scope(fieldsync_schemas::Scope::BatchesWrite)?;
    erp_path(&erp)?;
    let asked = upload_version(&headers)?;
    let stored = entities::load(state.store(), &erp).map_err(ApiError::internal)?;
    Ok(axum::Json(entities::answer(&stored.value, asked)))
}

/// Set the tables an ERP uploads (operators).
#[utoipa::path(
    put, path = "/api/v1/entities/{erp}", tag = "ingest",
    params(("erp" = String, Path, description = "The ERP's name")),
    request_body = Entities,
    responses(
        (status = 200, description = "Stored", body = Entities),
        (status = 422, description = "Invalid configuration", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_entities(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(erp): ApiPath<String>,
    ApiJson(config): ApiJson<Entities>,
) -> Result<axum::Json<Entities>, ApiError> {
    caller.operator_only()?;
    erp_path(&erp)?;
    let store = state.store().clone();
    let stored = config.clone();
    tokio::task::spawn_blocking(move || views::set_entities(&store, &erp, &stored))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| match error {
            SetError::Invalid(why) => ApiError::new(ErrorKind::InvalidValue, why),
            SetError::Write(error) => crate::error::store_write_error(error),
        })?;
    Ok(axum::Json(config))
}

/// Ask the ERP to send a table again: `forceReload` until a complete base
/// load of it commits.
#[utoipa::path(
    post, path = "/api/v1/entities/{erp}/{table}/reload", tag = "ingest",
    params(
        ("erp" = String, Path, description = "The ERP's name"),
        ("table" = String, Path, description = "The table, as configured"),
    ),
    responses(
        (status = 200, description = "The configuration with the flag set", body = Entities),
        (status = 404, description = "The table is not configured for this ERP", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reload(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((erp, table)): ApiPath<(String, String)>,
) -> Result<axum::Json<Entities>, ApiError> {
    caller.operator_only()?;
    erp_path(&erp)?;
    let collection = collection_of(&table).map_err(|e| ApiError::new(ErrorKind::InvalidId, e))?;
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..RELOAD_TRIES_MAX {
            let mut stored = entities::load(&store, &erp).map_err(ApiError::internal)?;
            let Some(query) = stored
                .value
                .queries
                .iter_mut()
                .find(|q| collection_of(&q.table).is_ok_and(|c| c == collection))
            else {
                return Err(ApiError::not_found(format!(
                    "table `{table}` is not configured for ERP `{erp}`"
                )));
            };
            query.force_reload = true;
            let write = entities::write(&erp, &stored.value, stored.expect());
            match store.write_record(&write.collection, &write.key, write.value, write.expect) {
                Err(WriteError::VersionMismatch { .. }) => continue,
                Err(error) => return Err(crate::error::store_write_error(error)),
                Ok(_) => return Ok(axum::Json(stored.value)),
            }
        }
        Err(ApiError::new(
            ErrorKind::Conflict,
            "the configuration kept changing; retry",
        ))
    })
    .await
    .map_err(ApiError::internal)?
}
