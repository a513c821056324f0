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

/// `PUT /api/v1/entities/{erp}`'s body: [`Entities`] as an operator sends
/// it, with the rules `ingest::entities::check` applies stated for the
/// document (and `uploadVersion` taken as JSON spells it, `2.0` too).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EntitiesBody {
    /// The newest format the configuration uses: 1 or 2.
    #[serde(deserialize_with = "super::model::whole::u32")]
    #[schema(minimum = 1, maximum = 2)]
    pub(crate) upload_version: u32,
    /// At most 1000 tables, each once (by its lower-case name), and at most
    /// 65536 bytes as JSON in all.
    #[schema(max_items = 1000)]
    pub(crate) queries: Vec<EntityQuery>,
}

/// One table an ERP uploads (`ingest::entities::Query`).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EntityQuery {
    /// The ERP's table name (`SA1010`); rows land in its lower-case
    /// collection, which must be a data collection name (not reserved or
    /// internal).
    pub(crate) table: String,
    /// The ERP-side filter (its own syntax, at most 4096 characters),
    /// passed through.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub(crate) filter: String,
    /// Send the whole table again (a base load), until one commits.
    #[serde(default)]
    pub(crate) force_reload: bool,
    #[serde(default)]
    pub(crate) is_native: bool,
    #[serde(default)]
    pub(crate) is_custom: bool,
    /// Free-form settings for the ERP's uploader (an object; `{}` when
    /// absent).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) metadata: serde_json::Map<String, serde_json::Value>,
}

impl From<EntitiesBody> for Entities {
    fn from(body: EntitiesBody) -> Entities {
        Entities {
            upload_version: body.upload_version,
            queries: body
                .queries
                .into_iter()
                .map(|query| entities::Query {
                    table: query.table,
                    filter: query.filter,
                    force_reload: query.force_reload,
                    is_native: query.is_native,
                    is_custom: query.is_custom,
                    metadata: serde_json::Value::Object(query.metadata),
                })
                .collect(),
        }
    }
}

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
        ("erp" = String, Path, description = "The ERP's name", pattern = r"^(?:[!-$&-,\-0-~][!-$&-.0-~]{0,63}|\.[!-$&-,\-0-~][!-$&-.0-~]{0,62}|\.\.[!-$&-.0-~]{1,62})$"),
        ("x-upload-version" = Option<u32>, Header, description = "The newest entities format the client speaks (default 1; 0 to 4294967295)", format = Int64, minimum = 0, maximum = 4294967295_u64),
    ),
    responses(
        (status = 200, description = "`{uploadVersion, queries}`", body = Entities),
        (status = 400, description = "Bad ERP name or `x-upload-version`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an operator, and scope `batches:write` missing", body = Problem, content_type = "application/problem+json"),
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
    params(("erp" = String, Path, description = "The ERP's name", pattern = r"^(?:[!-$&-,\-0-~][!-$&-.0-~]{0,63}|\.[!-$&-,\-0-~][!-$&-.0-~]{0,62}|\.\.[!-$&-.0-~]{1,62})$")),
    request_body = EntitiesBody,
    responses(
        (status = 200, description = "Stored", body = Entities),
        (status = 400, description = "Bad ERP name, or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid configuration (a table listed twice, over 65536 bytes...)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put_entities(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(erp): ApiPath<String>,
    body: Result<ApiJson<EntitiesBody>, ApiError>,
) -> Result<axum::Json<Entities>, ApiError> {
    caller.operator_only()?;
    // Authorization before the body: a caller who may not write learns
    // nothing from validation.
    let ApiJson(body) = body?;
    let config = Entities::from(body);
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
        ("erp" = String, Path, description = "The ERP's name", pattern = r"^(?:[!-$&-,\-0-~][!-$&-.0-~]{0,63}|\.[!-$&-,\-0-~][!-$&-.0-~]{0,62}|\.\.[!-$&-.0-~]{1,62})$"),
        ("table" = String, Path, description = "The table, as configured: a data collection name in any letter case"),
    ),
    responses(
        (status = 200, description = "The configuration with the flag set", body = Entities),
        (status = 400, description = "Bad ERP or table name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators only", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The table is not configured for this ERP", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The configuration kept changing; retry", body = Problem, content_type = "application/problem+json"),
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
