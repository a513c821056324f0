//! Live updates of a work order's page: when a technician's change
//! arrives (by sync) or another operator saves, the open page follows
//! without the person reloading.
//!
//! Why polling a tiny endpoint: `GET /ui/work-orders/{id}/version`
//! answers the version's entity tag (the heads, as REST's `ETag`), a few
//! dozen bytes every 2 s per open page, judged by the same session cookie
//! and visibility rule as the page. It holds no connection open (a
//! server-sent stream would hold one per open tab against the
//! gateway's timeouts and connection budget) and needs no state here.
//! The script, `static/live.js`, is served by the gateway itself
//! (`script-src 'self'`, no inline script, no CDN, no build step). When
//! the tag changes it loads the page again, unless the person is typing
//! in one of its forms: then it shows the `live` notice with a reload
//! link, and their typing is kept (their save, made from the older
//! version, is then refused as stale rather than overwriting the news).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::{cookie, url_part, visible_order, SESSION_COOKIE};
use crate::api::model::WorkOrder;
use crate::api::work_orders::etag;
use crate::auth::authenticate_token;
use crate::error::ApiError;
use crate::state::AppState;

/// The live-update script.
const SCRIPT: &str = include_str!("static/live.js");

/// The hook a work order's page carries for the script: where to ask,
/// the version shown, and the notice it reveals.
pub(super) fn hook(order: &WorkOrder) -> Markup {
    let page = format!("/ui/work-orders/{}", url_part(&order.id));
    html! {
        div #live .notice hidden role="status"
            data-version-url={ (page) "/version" } data-page-url=(page) data-etag=(etag(&order.heads)) {
            "This work order changed since this page was loaded. "
            a href=(page) { "Reload to see the changes" }
        }
        script src="/ui/static/live.js" defer {}
    }
}

/// `GET /ui/work-orders/{id}/version`: the entity tag of the version the
/// caller would see now, as text (and as `ETag`). Without a valid session
/// cookie 401, for a work order the caller may not see 404: a problem
/// document, since a script asks, not a person.
pub(super) async fn version(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = cookie(&headers, SESSION_COOKIE)
        .ok_or_else(|| ApiError::unauthorized("sign in to the web UI first"))?;
    let caller = authenticate_token(&state, session)?;
    let order = visible_order(&state, &caller, id).await?;
    let tag = etag(&order.heads);
    let mut response = tag.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}

/// `GET /ui/static/live.js`.
pub(super) async fn script() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        SCRIPT,
    )
        .into_response()
}
