//! The field app: a technician's screen, served by the laptop's own node
//! (`fieldsync run` on an enrolled field node) to the laptop's browser.
//!
//! Why a local web app: the laptop already runs a node that holds the
//! technician's work orders and syncs them when it can; a browser page on
//! the same machine needs nothing installed and works offline. Every
//! action goes through the node's typed operations (`Store::edit_work_order`
//! with `WorkOrderDoc::apply`), the same field rules as sync and REST, and
//! the page says "Saved" only after the store's durable flush. What the
//! technician may see is `access::visible` (through [`Caller`]), with the
//! enrolled technician as the viewer.
//!
//! # Who can use it, and why nobody else can
//!
//! - It listens on a loopback address (`[field_app] listen`, default
//!   `127.0.0.1:7480`); another address is refused at start unless
//!   `[field_app] allow_remote = true` ([`check_listen`]). A process on
//!   another machine cannot open a TCP connection to a loopback address.
//! - There is no sign-in; the credential is a 32-byte key made on first
//!   start in the data directory (`field-app.key`, mode 0600). `fieldsync
//!   run` writes the URL `http://127.0.0.1:PORT/open?key=...` to
//!   `field-app.url` (mode 0600) for a launcher and prints it on stdout
//!   (`Field app: open URL`); its log line names the listening address
//!   and that file's path, never the URL (logs may be kept where others
//!   read them). `/open` compares the key in constant time, sets an
//!   `HttpOnly`, `SameSite=Strict` session cookie (an HMAC under the key,
//!   so it survives restarts and needs no storage) and redirects to `/`,
//!   so the key leaves the address bar. Any other request without a valid
//!   cookie gets a plain page saying how to open the app (401). Other
//!   users of the same laptop cannot read the key files.
//! - A web page in the browser cannot use it either: the `Host` header
//!   must name the listener (`127.0.0.1:PORT`, `localhost:PORT`, or the
//!   bound address), which defeats DNS rebinding; every POST must carry an
//!   `Origin` of this very app and a form token bound to the session
//!   cookie (`session.rs`), which defeats cross-site forms.
//!
//! # Element ids and names (for browser tests)
//!
//! Every page: `#sync-state` (the header bar; `data-online="yes|no"`),
//! `#sync-online`, `#sync-pending` (changes waiting to go out),
//! `#flash` ("Saved"), `#error` (why an action was refused), `#gone` (a
//! work order no longer on this laptop), `#unauthorized` (the 401 page).
//! List (`/`): `#work-orders` (table), rows `#wo-<id>`, links
//! `a.wo-link`, badges `.changed` ("Changed since you last looked"),
//! `.new`, notices `#gone-notices`. Detail (`/wo/<id>`): `#wo-status`,
//! forms `#note-form` (`text`), `#material-form` (`sku`, `qty`, `unit`,
//! `description`), `#report-form` (`text`), `#time-start-form`,
//! `#time-stop-form`, `#status-form` (`to`, `note`), `#close-form`
//! (`resolution`, `signed_by`, `signature` hidden, `no_signature`
//! checkbox), canvas `#signature-pad`, button `#signature-clear`. Every
//! form carries `csrf_token` and its submit button `button[type=submit]`.

mod actions;
mod guard;
mod local_state;
mod pages;
mod session;
pub(crate) mod signature;
mod state;
mod sync_bar;

use std::future::Future;
use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;

pub use session::{write_url_file, FieldKey, KEY_FILE, URL_FILE};
pub use state::{FieldOptions, FieldState};
pub use sync_bar::{SyncPeer, SyncSource};

/// Bytes of a form post, at most: a report (64 KiB of text, URL-encoded
/// up to three times larger) is the largest field.
pub const BODY_BYTES_MAX: usize = 256 * 1024;
/// A request taking longer than this is answered 504.
const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Why the field app did not start.
#[derive(Debug, thiserror::Error)]
pub enum FieldAppError {
    #[error(
        "the field app may listen only on a loopback address (127.0.0.1, ::1), not {address}: \
         other machines could reach it; set `[field_app] allow_remote = true` to allow that"
    )]
    NotLoopback { address: SocketAddr },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{path} is not a field-app key ({bytes} bytes, {expected} expected); delete it to make a new one")]
    BadKey {
        path: String,
        bytes: usize,
        expected: usize,
    },
}

/// Refuse a listen address other machines can reach, unless allowed.
pub fn check_listen(address: SocketAddr, allow_remote: bool) -> Result<(), FieldAppError> {
    if address.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(FieldAppError::NotLoopback { address })
    }
}

/// Bind `address` for [`run`], after [`check_listen`].
pub async fn bind(
    address: SocketAddr,
    allow_remote: bool,
) -> Result<tokio::net::TcpListener, FieldAppError> {
    check_listen(address, allow_remote)?;
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| FieldAppError::Bind { address, source })
}

/// The URL that opens the app on `address` with `key`.
pub fn open_url(address: SocketAddr, key: &FieldKey) -> String {
    format!("http://{address}/open?key={}", key.encoded())
}

/// The app's routes, guarded (`guard.rs`) and bounded.
pub fn router(state: FieldState) -> Router {
    Router::new()
        .route("/", get(pages::list))
        .route("/open", get(guard::open))
        .route("/app.js", get(signature::script))
        .route("/app.css", get(pages::stylesheet))
        .route("/wo/{id}", get(pages::detail))
        .route("/wo/{id}/note", post(actions::add_note))
        .route("/wo/{id}/material", post(actions::request_material))
        .route("/wo/{id}/report", post(actions::edit_report))
        .route("/wo/{id}/time/start", post(actions::start_time))
        .route("/wo/{id}/time/stop", post(actions::stop_time))
        .route("/wo/{id}/status", post(actions::set_status))
        .route("/wo/{id}/close", post(actions::close))
        .route("/wo/{id}/edit", post(actions::edit_fields))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(RequestBodyLimitLayer::new(BODY_BYTES_MAX))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            std::time::Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .with_state(state)
}

/// Serve the app on `listener` until `shutdown` resolves, then finish the
/// requests in flight. Refuses a listener other machines can reach unless
/// the state allows it (the same check as [`bind`], for listeners bound
/// elsewhere).
pub async fn run(
    listener: tokio::net::TcpListener,
    state: FieldState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FieldAppError> {
    let address = listener.local_addr().map_err(|source| FieldAppError::Io {
        what: "reading the field app's address".into(),
        source,
    })?;
    check_listen(address, state.allow_remote())?;
    tracing::info!(%address, "field app listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| FieldAppError::Io {
            what: "serving the field app".into(),
            source,
        })
}
