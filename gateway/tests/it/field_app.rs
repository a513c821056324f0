//! The field app (`fieldsync_gateway::field`): a real server on a loopback
//! port over a sled store in a temp dir, driven by reqwest as a browser
//! would (cookie, Origin, form tokens), and read back through the store.

use std::sync::Arc;

use fieldsync_gateway::field::{self, FieldKey, FieldOptions, FieldState, SyncPeer};
use fieldsync_node::store::Store;
use fieldsync_schemas::{Actor, Role, Status};
use reqwest::StatusCode;
use tokio::sync::oneshot;

use crate::support::{cookie_named, form_token, init_store, sample, set_cookies};

const TECH: &str = "tech-1";

struct App {
    base: String,
    host: String,
    key: FieldKey,
    store: Store,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), field::FieldAppError>>>,
    _dir: tempfile::TempDir,
}

impl App {
    /// The app for `tech-1` over a store holding `mine` (assigned to
    /// tech-1) and `theirs` (assigned to tech-2).
    async fn start() -> App {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        // Store writes wait for the durable flush: off the async workers.
        let store = tokio::task::spawn_blocking(move || {
            let store = init_store(&path);
            for (id, assignee) in [("mine", TECH), ("theirs", "tech-2")] {
                store
                    .create_work_order(
                        &Actor::new("op", Role::Operator),
                        &sample(id, Some(assignee)),
                        1,
                    )
                    .expect("create");
            }
            store
        })
        .await
        .expect("setup");
        let key = FieldKey::load_or_create(dir.path()).expect("key");
        let listener = field::bind("127.0.0.1:0".parse().unwrap(), false)
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let options = FieldOptions {
            user: TECH.into(),
            grace_ms: 0,
            allow_remote: false,
        };
        let peers = vec![SyncPeer {
            name: "central".into(),
            office: true,
            changes_unacked: Some(2),
            ..SyncPeer::default()
        }];
        let state = FieldState::new(
            store.clone(),
            key.clone(),
            options,
            address,
            Arc::new(peers),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(field::run(listener, state, async move {
            let _ = stopped.await;
        }));
        fieldsync_gateway::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        App {
            base: format!("http://{address}"),
            host: address.to_string(),
            key,
            store,
            client,
            stop: Some(stop),
            serving: Some(serving),
            _dir: dir,
        }
    }

    /// Open the app with its key: the session cookie (`name=value`).
    async fn open(&self) -> String {
        let url = field::open_url(self.host.parse().unwrap(), &self.key);
        let response = self.client.get(url).send().await.expect("open");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/");
        cookie_named(&set_cookies(&response), "fieldsync_field").expect("session cookie")
    }

    async fn get(&self, path: &str, cookie: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("get");
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    /// Post a form as the app's own page does (cookie, Origin).
    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("origin", format!("http://{}", self.host))
            .form(form)
            .send()
            .await
            .expect("post")
    }

    /// The session cookie and the form token of the detail page of `mine`.
    async fn session(&self) -> (String, String) {
        let cookie = self.open().await;
        let (status, html) = self.get("/wo/mine", &cookie).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let token = form_token(&html).expect("form token");
        (cookie, token)
    }

    async fn read(&self, id: &'static str) -> fieldsync_schemas::WorkOrderView {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.work_order(id).expect("read").expect("exists"))
            .await
            .expect("read")
    }

    async fn mine(&self) -> fieldsync_schemas::WorkOrderView {
        self.read("mine").await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        let served = self.serving.take().expect("running").await.expect("join");
        assert!(served.is_ok(), "{served:?}");
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .expect("close");
    }
}

#[tokio::test]
async fn a_request_without_the_cookie_is_refused_with_how_to_open_the_app() {
    let app = App::start().await;
    for path in ["/", "/wo/mine", "/app.js"] {
        let (status, html) = app.get(path, "fieldsync_field=forged").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            html.contains("id=\"unauthorized\"") && html.contains("field-app.url"),
            "{html}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_the_right_key_sets_a_strict_http_only_cookie() {
    let app = App::start().await;
    let wrong = FieldKey::generate();
    let url = field::open_url(app.host.parse().unwrap(), &wrong);
    let response = app.client.get(url).send().await.expect("open");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(&response).is_empty());
    let response = app
        .client
        .get(format!("{}/open", app.base))
        .send()
        .await
        .expect("open");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let url = field::open_url(app.host.parse().unwrap(), &app.key);
    let response = app.client.get(url).send().await.expect("open");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let line = set_cookies(&response).join("\n");
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict"),
        "{line}"
    );
    assert_eq!(response.headers()["referrer-policy"], "same-origin");
    let cookie = cookie_named(&set_cookies(&response), "fieldsync_field").expect("cookie");
    let (status, html) = app.get("/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("id=\"sync-state\"") && html.contains("2 changes waiting to go out"),
        "{html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused() {
    let app = App::start().await;
    let cookie = app.open().await;
    for host in ["evil.example", "evil.example:80", "127.0.0.1:1"] {
        let response = app
            .client
            .get(format!("{}/", app.base))
            .header("host", host)
            .header("cookie", &cookie)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    let port = app.host.rsplit(':').next().unwrap();
    let response = app
        .client
        .get(format!("{}/", app.base))
        .header("host", format!("localhost:{port}"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_post_without_the_form_token_or_from_another_origin_writes_nothing() {
    let app = App::start().await;
    let (cookie, token) = app.session().await;
    let before = app.mine().await.heads;
    let response = app
        .post("/wo/mine/note", &cookie, &[("text", "no token")])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("nothing was saved"));
    let response = app
        .post(
            "/wo/mine/note",
            &cookie,
            &[("csrf_token", "forged"), ("text", "bad token")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .client
        .post(format!("{}/wo/mine/note", app.base))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .form(&[("csrf_token", token.as_str()), ("text", "cross-site")])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.mine().await.heads, before, "nothing written");
    app.stop().await;
}

#[tokio::test]
async fn binding_a_non_loopback_address_without_allow_remote_is_refused() {
    let refused = field::bind("0.0.0.0:0".parse().unwrap(), false).await;
    assert!(
        matches!(refused, Err(field::FieldAppError::NotLoopback { .. })),
        "{refused:?}"
    );
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("allow_remote"), "{message}");

    // A listener bound elsewhere is checked by `run` too.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = init_store(dir.path());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let address = listener.local_addr().unwrap();
    let options = FieldOptions {
        user: TECH.into(),
        grace_ms: 0,
        allow_remote: false,
    };
    let state = FieldState::new(
        store.clone(),
        FieldKey::generate(),
        options,
        address,
        Arc::new(Vec::<SyncPeer>::new()),
    );
    let ran = field::run(listener, state, async {}).await;
    assert!(
        matches!(ran, Err(field::FieldAppError::NotLoopback { .. })),
        "{ran:?}"
    );
    assert!(field::check_listen(address, true).is_ok());
    tokio::task::spawn_blocking(move || store.close())
        .await
        .expect("close");
}

#[tokio::test]
async fn the_technicians_actions_through_the_forms_are_stored() {
    let app = App::start().await;
    let (cookie, token) = app.session().await;
    let token = token.as_str();
    let saved = |response: reqwest::Response| {
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{}",
            response.url()
        );
        assert_eq!(response.headers()["location"], "/wo/mine?saved=1");
    };
    saved(
        app.post(
            "/wo/mine/note",
            &cookie,
            &[("csrf_token", token), ("text", "Replaced the pump")],
        )
        .await,
    );
    saved(
        app.post(
            "/wo/mine/material",
            &cookie,
            &[
                ("csrf_token", token),
                ("sku", "SKU-9"),
                ("qty", "1.5"),
                ("unit", "m"),
                ("description", "hose"),
            ],
        )
        .await,
    );
    saved(
        app.post(
            "/wo/mine/report",
            &cookie,
            &[("csrf_token", token), ("text", "Pump worn out.")],
        )
        .await,
    );
    saved(
        app.post(
            "/wo/mine/status",
            &cookie,
            &[("csrf_token", token), ("to", "in_progress"), ("note", "")],
        )
        .await,
    );
    saved(
        app.post("/wo/mine/time/start", &cookie, &[("csrf_token", token)])
            .await,
    );
    saved(
        app.post("/wo/mine/time/stop", &cookie, &[("csrf_token", token)])
            .await,
    );
    let (status, html) = app.get("/wo/mine?saved=1", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("id=\"flash\"") && html.contains("Saved"),
        "{html}"
    );
    saved(
        app.post(
            "/wo/mine/close",
            &cookie,
            &[
                ("csrf_token", token),
                ("resolution", "Fixed"),
                ("signed_by", "Ann Customer"),
                ("signature", "M10 10 L20 25 L30 12"),
            ],
        )
        .await,
    );

    let order = app.mine().await;
    assert!(order
        .notes
        .iter()
        .any(|note| note.text == "Replaced the pump" && note.by == TECH));
    assert!(order
        .materials
        .iter()
        .any(|m| m.sku == "SKU-9" && m.qty == 1.5 && m.unit == "m"));
    assert_eq!(order.report, "Pump worn out.");
    assert!(order
        .status_log
        .iter()
        .any(|entry| entry.to == Status::InProgress && entry.by == TECH));
    assert_eq!(order.time_log.len(), 1);
    assert_eq!(order.time_log[0].by, TECH);
    let closure = order.closure.expect("closed");
    assert_eq!(
        (closure.resolution.as_str(), closure.signed_by.as_str()),
        ("Fixed", "Ann Customer")
    );
    assert_eq!(closure.signature, "M10 10 L20 25 L30 12");
    assert_eq!(order.status, Status::Completed);
    let (_, html) = app.get("/wo/mine", &cookie).await;
    assert!(
        html.contains("<svg") && html.contains("M10 10 L20 25 L30 12"),
        "{html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_forged_post_the_field_may_not_make_gets_a_clear_message_and_writes_nothing() {
    let app = App::start().await;
    let (cookie, token) = app.session().await;
    let before = app.mine().await.heads;
    let response = app
        .post(
            "/wo/mine/status",
            &cookie,
            &[("csrf_token", &token), ("to", "cancelled"), ("note", "")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("id=\"error\"")
            && html.contains("a work order to “Cancelled” from the field; the office does that"),
        "{html}"
    );
    let response = app
        .post(
            "/wo/mine/close",
            &cookie,
            &[
                ("csrf_token", &token),
                ("resolution", "x"),
                ("signed_by", "y"),
                ("signature", "M1 1 <script>"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("The signature could not be read"));
    // The app has no form for the office's fields; a crafted post is
    // judged by the field rules, as the technician.
    let response = app
        .post(
            "/wo/mine/edit",
            &cookie,
            &[("csrf_token", &token), ("customer_name", "Mallory")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("id=\"error\"")
            && html.contains("You can't change the customer from the field; ask the office."),
        "{html}"
    );
    assert_eq!(app.mine().await.heads, before, "nothing written");
    app.stop().await;
}

#[tokio::test]
async fn a_work_order_assigned_to_someone_else_is_not_listed_and_not_on_this_laptop() {
    let app = App::start().await;
    let cookie = app.open().await;
    let (status, html) = app.get("/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"wo-mine\""), "{html}");
    assert!(
        !html.contains("wo-theirs") && !html.contains("WO-theirs"),
        "{html}"
    );
    let (status, html) = app.get("/wo/theirs", &cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("id=\"gone\"") && html.contains("it is no longer on this laptop"),
        "{html}"
    );
    // A genuine session's form token: the post passes the token check and
    // is refused by visibility.
    let (cookie, token) = app.session().await;
    let before = app.read("theirs").await.heads;
    let response = app
        .post(
            "/wo/theirs/note",
            &cookie,
            &[("csrf_token", &token), ("text", "sneaky")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("no longer on this laptop"));
    assert_eq!(app.read("theirs").await.heads, before);
    app.stop().await;
}

#[tokio::test]
async fn a_work_order_looked_at_then_reassigned_is_named_on_the_list_once_it_is_gone() {
    let app = App::start().await;
    let cookie = app.open().await;
    let (status, _) = app.get("/wo/mine", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let (_, html) = app.get("/", &cookie).await;
    assert!(html.contains("No change"), "{html}");
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        let note = fieldsync_node::doc::Operation::AddNote {
            id: "n-office".into(),
            at: "2026-01-02T00:00:00Z".into(),
            text: "Customer called".into(),
        };
        store
            .update_work_order("mine", &Actor::new("op", Role::Operator), &note, 2)
            .expect("office note")
    })
    .await
    .unwrap();
    let (_, html) = app.get("/", &cookie).await;
    assert!(html.contains("Changed since you last looked"), "{html}");
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        let patch = fieldsync_schemas::OperatorPatch {
            assignee: Some(Some("tech-2".into())),
            ..Default::default()
        };
        store
            .update_work_order(
                "mine",
                &Actor::new("op", Role::Operator),
                &fieldsync_node::doc::Operation::EditOperatorFields(patch),
                2,
            )
            .expect("reassign")
    })
    .await
    .unwrap();
    let (_, html) = app.get("/", &cookie).await;
    assert!(html.contains("id=\"gone-notices\"") && html.contains("WO-mine was reassigned or withdrawn by the office; it is no longer on this laptop."), "{html}");
    let (status, html) = app.get("/wo/mine", &cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no longer on this laptop"), "{html}");
    app.stop().await;
}
