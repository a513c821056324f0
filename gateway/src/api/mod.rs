//! The REST API under `/api/v1` and `/oauth/token`, with its OpenAPI
//! document generated from the handlers (utoipa).
//!
//! Why the routes are collected here: each group of endpoints is one
//! `OpenApiRouter` call, so later groups (webhooks, events, batches,
//! commands) slot in as one more `.merge(...)` and appear in
//! `/openapi.json` without further wiring.

pub(crate) mod batches;
pub(crate) mod changes;
pub(crate) mod commands;
mod contract;
pub(crate) mod entities;
pub(crate) mod events;
pub mod model;
pub(crate) mod ops;
pub(crate) mod records;
pub mod users;
pub(crate) mod webhooks;
pub(crate) mod work_orders;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fieldsync gateway",
        description = "Work orders, reference records, the changes feed and operations of a fieldsync node. \
                       Errors are `application/problem+json` (RFC 9457).",
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "OAuth2 client credentials"),
        (name = "work-orders", description = "Work orders: list, create, read, edit, delete"),
        (name = "field-actions", description = "Notes, materials, status, closure, report, time"),
        (name = "changes", description = "Ordered changes feed"),
        (name = "operations", description = "Health, metrics, registry, peers"),
        (name = "users", description = "Users and integration clients (operators)"),
        (name = "records", description = "Reference data: collections of versioned JSON records, and who may read them"),
        (name = "webhooks", description = "Webhooks: signed notifications of what changed, with retries, penalties and an attempt log"),
        (name = "commands", description = "Asynchronous commands between apps and sites, with retries and execution logs"),
        (name = "ingest", description = "ERP integration: table batches with summaries (also over gRPC `TableStream`), entities, and the external event envelope"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A token from `POST /oauth/token`"))
                    .build(),
            ),
        );
    }
}

/// A page size asked for in query parameter `param`: 1 to
/// [`model::QUERY_INTEGER_MAX`] (as the document says), capped at
/// `page_size_max`, `page_size_default` when not asked (every paged list).
pub(crate) fn page_size(
    config: &crate::config::GatewayConfig,
    asked: Option<usize>,
    param: &str,
) -> Result<usize, crate::error::ApiError> {
    match asked {
        Some(size) if size == 0 || size as u64 > model::QUERY_INTEGER_MAX => {
            Err(crate::error::ApiError::new(
                crate::error::ErrorKind::InvalidQuery,
                format!("`{param}` must be 1 to {}", model::QUERY_INTEGER_MAX),
            ))
        }
        Some(size) => Ok(size.min(config.page_size_max)),
        None => Ok(config.page_size_default),
    }
}

/// An integer query parameter without a bound of its own: at most
/// [`model::QUERY_INTEGER_MAX`], as the document says (else 400).
pub(crate) fn query_integer(
    value: Option<u64>,
    param: &str,
) -> Result<Option<u64>, crate::error::ApiError> {
    match value {
        Some(value) if value > model::QUERY_INTEGER_MAX => Err(crate::error::ApiError::new(
            crate::error::ErrorKind::InvalidQuery,
            format!("`{param}` must be at most {}", model::QUERY_INTEGER_MAX),
        )),
        other => Ok(other),
    }
}

/// Every documented route, and the OpenAPI document describing them
/// (completed by [`contract::complete`]).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    let mut router = routes();
    contract::complete(router.get_openapi_mut());
    router
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(crate::oauth::token))
        .routes(routes!(
            work_orders::list_work_orders,
            work_orders::create_work_order
        ))
        .routes(routes!(
            work_orders::get_work_order,
            work_orders::patch_work_order,
            work_orders::delete_work_order
        ))
        .routes(routes!(work_orders::add_note))
        .routes(routes!(work_orders::request_material))
        .routes(routes!(work_orders::set_material_state))
        .routes(routes!(work_orders::append_status))
        .routes(routes!(work_orders::close))
        .routes(routes!(work_orders::edit_report))
        .routes(routes!(work_orders::log_time))
        .routes(routes!(changes::changes))
        .routes(routes!(records::list_collections))
        .routes(routes!(records::list_records))
        .routes(routes!(
            records::get_record,
            records::put_record,
            records::delete_record
        ))
        .routes(routes!(records::get_grants, records::put_grants))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::get_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::retry_webhook))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(commands::list, commands::publish))
        .routes(routes!(commands::subscriptions))
        .routes(routes!(commands::get_command))
        .routes(routes!(commands::post_result))
        .routes(routes!(events::post_event))
        .routes(routes!(batches::list_batches))
        .routes(routes!(batches::get_batch))
        .routes(routes!(batches::post_message))
        .routes(routes!(batches::post_summary))
        .routes(routes!(entities::get_entities, entities::put_entities))
        .routes(routes!(entities::reload))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::revoke_user))
        .routes(routes!(ops::peers))
        .routes(routes!(ops::registry))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
}
