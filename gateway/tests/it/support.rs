//! Start a gateway on 127.0.0.1:0 over a fresh store with known users.

use std::collections::HashMap;
use std::sync::Arc;

use fieldsync_gateway::delivery::StaticLookup;
use fieldsync_gateway::state::Clock;
use fieldsync_gateway::{AppState, GatewayConfig, PeerDirectory, TokenKey};
use fieldsync_node::secret;
use fieldsync_node::store::{Store, StoreConfig, User};
use fieldsync_schemas::{Actor, Customer, NewWorkOrder, Priority, Role, Scope, Status};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// Users every test server has: (id, role, scopes).
pub(crate) fn users() -> Vec<(&'static str, Role, Vec<Scope>)> {
    vec![
        ("op", Role::Operator, vec![]),
        ("tech-1", Role::Technician, vec![]),
        ("tech-2", Role::Technician, vec![]),
        ("erp-all", Role::Integration, Scope::ALL.to_vec()),
        ("erp-none", Role::Integration, vec![]),
        (
            "erp-read",
            Role::Integration,
            vec![Scope::WorkOrdersRead, Scope::ChangesRead],
        ),
    ]
}

/// `Store::init` closes sled and reopens it at once; under parallel tests
/// sled's own threads sometimes still hold the directory lock for a few
/// milliseconds and the reopen fails with `WouldBlock` (a store issue,
/// reported). The store is already created then, so open it again.
pub(crate) fn init_store(path: &std::path::Path) -> Store {
    match Store::init(path, StoreConfig::default()) {
        Ok(store) => store,
        Err(first) => {
            for _ in 0..50 {
                std::thread::sleep(std::time::Duration::from_millis(20));
                if let Ok(store) = Store::open(path, StoreConfig::default()) {
                    return store;
                }
            }
            panic!("store: {first}");
        }
    }
}

pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) store: Store,
    pub(crate) client: reqwest::Client,
    /// The changelog seq after the setup's users (users take a seq: they
    /// travel between offices), where a test's own writes start.
    pub(crate) base_seq: u64,
    secrets: HashMap<String, String>,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_delivery: tokio::sync::watch::Sender<bool>,
    delivering: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// How to start a test server.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) config: GatewayConfig,
    pub(crate) peers: Option<Arc<dyn PeerDirectory>>,
    pub(crate) clock: Option<Clock>,
    pub(crate) lookup: Option<StaticLookup>,
    /// Run the webhook dispatcher and retention.
    pub(crate) delivery: bool,
}

/// A user record with a hashed secret.
pub(crate) fn user(id: &str, role: Role, scopes: Vec<Scope>, secret_text: &str) -> User {
    User {
        id: id.into(),
        role,
        scopes,
        secret_hash: Some(secret::hash(secret_text).expect("hash")),
        enroll_code_hash: None,
        enroll_code_expires_at_ms: None,
        node_ids: Vec::new(),
        revoked: false,
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

impl Server {
    pub(crate) async fn start() -> Server {
        Server::start_with(GatewayConfig::default(), None).await
    }

    pub(crate) async fn start_with(
        config: GatewayConfig,
        peers: Option<Arc<dyn PeerDirectory>>,
    ) -> Server {
        Server::start_full(Options {
            config,
            peers,
            ..Options::default()
        })
        .await
    }

    /// A server with delivery running (the dispatcher and retention),
    /// webhooks allowed to reach loopback receivers, and time read from
    /// `clock` when given.
    pub(crate) async fn start_delivering(
        clock: Option<Clock>,
        lookup: Option<StaticLookup>,
    ) -> Server {
        let mut config = GatewayConfig::default();
        config.delivery.allow_networks = vec!["127.0.0.0/8".into()];
        Server::start_full(Options {
            config,
            clock,
            lookup,
            delivery: true,
            ..Options::default()
        })
        .await
    }

    pub(crate) async fn start_full(options: Options) -> Server {
        let Options {
            config,
            peers,
            clock,
            lookup,
            delivery,
        } = options;
        fieldsync_gateway::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store");
        let (store, secrets) = tokio::task::spawn_blocking(move || {
            let store = init_store(&path);
            let mut secrets = HashMap::new();
            for (id, role, scopes) in users() {
                let text = format!("secret-of-{id}");
                store
                    .put_user(&user(id, role, scopes, &text))
                    .expect("put user");
                secrets.insert(id.to_string(), text);
            }
            (store, secrets)
        })
        .await
        .expect("setup");
        // Over HTTPS the client trusts the server's certificate (the test's
        // own) and nothing else.
        let root = config.tls.as_ref().map(|files| {
            reqwest::Certificate::from_pem(&std::fs::read(&files.cert).expect("cert"))
                .expect("certificate")
        });
        let mut state = AppState::new(store.clone(), TokenKey::generate(), config).expect("state");
        if let Some(peers) = peers {
            state = state.with_peers(peers);
        }
        if let Some(clock) = clock {
            state = state.with_clock(clock);
        }
        if let Some(lookup) = lookup {
            state = state.with_lookup(lookup).expect("lookup");
        }
        let (stop_delivery, stopping) = tokio::sync::watch::channel(false);
        let delivering = delivery
            .then(|| tokio::spawn(fieldsync_gateway::run_delivery(state.clone(), stopping)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let scheme = if root.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().expect("address"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = tokio::spawn(fieldsync_gateway::run(listener, state, async move {
            let _ = stop.await;
        }));
        let mut client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(root) = root {
            client = client.tls_certs_only([root]);
        }
        Server {
            url,
            base_seq: store.last_seq(),
            store,
            client: client.build().expect("client"),
            secrets,
            shutdown: Some(shutdown),
            serving: Some(serving),
            stop_delivery,
            delivering,
            _dir: dir,
        }
    }

    pub(crate) fn secret(&self, user: &str) -> String {
        self.secrets.get(user).cloned().unwrap_or_default()
    }

    /// A token for `user` from `/oauth/token`.
    pub(crate) async fn token(&self, user: &str) -> String {
        let response = self
            .client
            .post(format!("{}/oauth/token", self.url))
            .basic_auth(user, Some(self.secret(user)))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), StatusCode::OK, "token for {user}");
        let body: Value = response.json().await.expect("token json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Create a work order directly in the store (as the office).
    pub(crate) async fn create(&self, id: &str, assignee: Option<&str>) {
        let store = self.store.clone();
        let new = sample(id, assignee);
        tokio::task::spawn_blocking(move || {
            store
                .create_work_order(&Actor::new("op", Role::Operator), &new, 1)
                .expect("create")
        })
        .await
        .expect("join");
    }

    /// Send a request with an optional bearer token and JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    pub(crate) async fn get_json(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self.call(Method::GET, path, Some(token), None).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop_delivery.send(true);
        if let Some(delivering) = self.delivering.take() {
            delivering.await.expect("delivery stops");
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.expect("join").expect("serve");
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .expect("close");
    }
}

/// A client whose connections come from `source` (any 127.0.0.0/8 address
/// reaches the server on 127.0.0.1), so a test can act from several
/// source addresses.
pub(crate) fn client_from(source: [u8; 4]) -> reqwest::Client {
    fieldsync_gateway::install_crypto_provider();
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(source))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub(crate) fn sample(id: &str, assignee: Option<&str>) -> NewWorkOrder {
    NewWorkOrder {
        id: Some(id.into()),
        number: format!("WO-{id}"),
        title: format!("Repair {id}"),
        description: "Fix it".into(),
        customer: Customer {
            name: "ACME".into(),
            address: "1 Main St".into(),
            phone: "555".into(),
            document: String::new(),
        },
        priority: Priority::Normal,
        assignee: assignee.map(str::to_string),
        scheduled_for: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        initial_status: if assignee.is_some() {
            Status::Assigned
        } else {
            Status::Open
        },
        notes: vec![("op".into(), "first".into(), "2026-01-01T00:00:00Z".into())],
        materials: vec![("SKU-1".into(), 2.0, "filter".into())],
    }
}

/// Assert a response is a problem document with this status; return it.
pub(crate) async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:fieldsync:problem:")),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
    body
}

/// Every `Set-Cookie` of a response.
pub(crate) fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// The `name=value` part of the `Set-Cookie` for cookie `name` (or
/// `__Host-name`).
pub(crate) fn cookie_named(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies
        .iter()
        .map(|line| {
            line.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .find(|pair| {
            pair.split_once('=')
                .is_some_and(|(found, _)| found == name || found == format!("__Host-{name}"))
        })
}

/// The form token (`csrf_token`) an HTML page's form carries.
pub(crate) fn form_token(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_string())
}

/// Sign in through the web UI's form as a browser does: load the sign-in
/// page (its form token and the cookie it is bound to), then post the form
/// with that cookie.
pub(crate) async fn ui_sign_in(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    secret: &str,
) -> reqwest::Response {
    let page = client
        .get(format!("{url}/sign-in"))
        .send()
        .await
        .expect("sign-in page");
    let nonce = cookie_named(&set_cookies(&page), "fieldsync_form");
    let html = page.text().await.expect("sign-in html");
    let token = form_token(&html).unwrap_or_default();
    let mut request = client.post(format!("{url}/sign-in")).form(&[
        ("csrf_token", token.as_str()),
        ("client_id", user),
        ("client_secret", secret),
    ]);
    if let Some(nonce) = nonce {
        request = request.header("cookie", nonce);
    }
    request.send().await.expect("sign-in post")
}
