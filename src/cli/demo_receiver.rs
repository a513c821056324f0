//! The demo's webhook receiver: a small HTTP server on loopback that the
//! demo registers as a webhook on its central, and that prints each
//! notification it gets, with its Standard Webhooks signature checked.
//!
//! Why the demo runs one: webhooks are how other systems hear about
//! changes, and a newcomer should see a signed notification arrive when
//! a technician's edit reaches the office, with nothing else to start.
//! It registers itself over the REST API as any integration would, so
//! the dispatcher, the SSRF rules (the demo allows loopback) and signing
//! are the real ones.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;

/// Notification ids remembered to spot redeliveries, at most.
const SEEN_IDS_MAX: usize = 10_000;
/// Changes named per printed line, at most.
const PRINTED_CHANGES_MAX: usize = 5;

#[derive(Default)]
struct Shared {
    /// The hook's secret, once registered.
    secret: OnceLock<String>,
    seen: Mutex<HashSet<String>>,
}

/// A running receiver.
pub(crate) struct DemoReceiver {
    pub(crate) url: String,
    shared: Arc<Shared>,
}

/// Serve on a free loopback port until the process ends.
pub(crate) async fn start() -> anyhow::Result<DemoReceiver> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo's webhook receiver")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let shared = Arc::new(Shared::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(shared.clone());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "demo webhook receiver stopped");
        }
    });
    Ok(DemoReceiver { url, shared })
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    let verified = shared.secret.get().map(|secret| {
        standardwebhooks::Webhook::new(secret)
            .and_then(|hook| hook.verify(&body, &headers))
            .is_ok()
    });
    let signature = match verified {
        Some(true) => "signature ok",
        Some(false) => "BAD SIGNATURE",
        None => "test call",
    };
    let again = {
        let mut seen = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= SEEN_IDS_MAX {
            seen.clear();
        }
        !seen.insert(id.clone())
    };
    let summary = summarize(&body);
    let again = if again {
        " (again: same id, already seen)"
    } else {
        ""
    };
    println!("    [webhook] {id}: {summary} [{signature}]{again}");
    StatusCode::NO_CONTENT
}

/// "2 changes: work_orders WO-… update, ..." from a notification body.
fn summarize(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return format!("{} bytes", body.len());
    };
    let Some(changes) = value["changes"].as_array() else {
        return "registration test".into();
    };
    let named: Vec<String> = changes
        .iter()
        .take(PRINTED_CHANGES_MAX)
        .map(|c| {
            let id = c["number"].as_str().or(c["id"].as_str()).unwrap_or("?");
            format!(
                "{} {id} {}",
                c["collection"].as_str().unwrap_or("?"),
                c["op"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let more = changes.len().saturating_sub(PRINTED_CHANGES_MAX);
    let more = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    format!("{} change(s): {}{more}", changes.len(), named.join(", "))
}

impl DemoReceiver {
    /// Register this receiver on the central at `gateway_url` as the
    /// operator (a token, then `POST /api/v1/webhooks`).
    pub(crate) async fn register(
        &self,
        gateway_url: &str,
        operator_secret: &str,
    ) -> anyhow::Result<()> {
        fieldsync_gateway::install_crypto_provider();
        let http = reqwest::Client::new();
        let token: Value = http
            .post(format!("{gateway_url}/oauth/token"))
            .basic_auth("operator", Some(operator_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .context("asking the demo gateway for a token")?
            .error_for_status()?
            .json()
            .await?;
        let token = token["access_token"].as_str().context("no access token")?;
        let created: Value = http
            .post(format!("{gateway_url}/api/v1/webhooks"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "url": self.url }))
            .send()
            .await
            .context("registering the demo's webhook")?
            .error_for_status()?
            .json()
            .await?;
        let secret = created["secret"].as_str().context("no webhook secret")?;
        let _ = self.shared.secret.set(secret.to_string());
        Ok(())
    }
}
