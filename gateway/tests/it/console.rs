//! The office console over HTTP, as a browser drives it: sign in through
//! the form, load a page, post one of its forms with the token it
//! carries, follow the 303. A small cookie jar (`Browser`) keeps the
//! session and flash cookies as a browser would; what the console wrote
//! is checked through the REST API and the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use fieldsync_schemas::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{set_cookies, Server};

/// A reqwest client with a cookie jar: cookies set by an answer are sent
/// with every later request (and dropped at `Max-Age=0`).
struct Browser {
    client: reqwest::Client,
    url: String,
    jar: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        Browser {
            client: server.client.clone(),
            url: server.url.clone(),
            jar: Mutex::new(BTreeMap::new()),
        }
    }

    /// A browser signed in as `user` through the sign-in form.
    async fn signed_in(server: &Server, user: &str) -> Browser {
        let browser = Browser::new(server);
        let (_, html) = browser.get("/sign-in").await;
        let token = token_in(&html, "sign-in");
        let secret = server.secret(user);
        let response = browser
            .post(
                "/sign-in",
                &[
                    ("csrf_token", &token),
                    ("client_id", user),
                    ("client_secret", &secret),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "sign in {user}");
        assert!(browser.cookie("fieldsync_session").is_some());
        browser
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    fn keep(&self, response: &reqwest::Response) {
        let mut jar = self.jar.lock().unwrap();
        for line in set_cookies(response) {
            let pair = line
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if line.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn cookie_header(&self) -> String {
        let jar = self.jar.lock().unwrap();
        jar.iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let cookies = self.cookie_header();
        let request = if cookies.is_empty() {
            request
        } else {
            request.header("cookie", cookies)
        };
        let response = request.send().await.expect("request");
        self.keep(&response);
        response
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .send(self.client.get(format!("{}{path}", self.url)))
            .await;
        let status = response.status();
        (status, response.text().await.expect("html"))
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let request = self
            .client
            .post(format!("{}{path}", self.url))
            .header("sec-fetch-site", "same-origin")
            .form(fields);
        self.send(request).await
    }

    /// Post, and when answered 303 load where it points.
    async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String, String) {
        let response = self.post(path, fields).await;
        let status = response.status();
        if status != StatusCode::SEE_OTHER {
            return (status, String::new(), response.text().await.expect("html"));
        }
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let (_, html) = self.get(&location).await;
        (status, location, html)
    }
}

/// Undo maud's attribute escaping.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The HTML of the form with id `form` (up to its end tag).
fn form_html<'a>(html: &'a str, form: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{form}\""))
        .unwrap_or_else(|| panic!("no form {form} in {html}"));
    let end = start + html[start..].find("</form>").expect("form end");
    &html[start..end]
}

/// The value of attribute `name="..."`'s `value` inside `form`.
fn value_in(html: &str, form: &str, name: &str) -> String {
    let form = form_html(html, form);
    let marker = format!("name=\"{name}\" value=\"");
    let start = form.find(&marker).unwrap_or_else(|| panic!("no {name}")) + marker.len();
    let end = start + form[start..].find('"').expect("quote");
    unescape(&form[start..end])
}

fn token_in(html: &str, form: &str) -> String {
    if form == "sign-in" {
        let marker = "name=\"csrf_token\" value=\"";
        let start = html.find(marker).expect("token") + marker.len();
        return html[start..start + html[start..].find('"').unwrap()].to_string();
    }
    value_in(html, form, "csrf_token")
}

fn action_of(html: &str, form: &str) -> String {
    let form = form_html(html, form);
    let marker = "action=\"";
    let start = form.find(marker).expect("action") + marker.len();
    unescape(&form[start..start + form[start..].find('"').unwrap()])
}

/// The text of the element with id `id` (up to the next tag).
fn text_of(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let open = start + html[start..].find('>')? + 1;
    let close = open + html[open..].find('<')?;
    Some(unescape(&html[open..close]))
}

/// The flash box's text, tags dropped.
fn flash_text(html: &str) -> Option<String> {
    let start = html.find("id=\"flash\"")?;
    let open = start + html[start..].find('>')? + 1;
    let close = open + html[open..].find("</div>")?;
    let mut text = String::new();
    let mut in_tag = false;
    for c in html[open..close].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(unescape(&text))
}

fn is_sequential_number(number: &str) -> bool {
    let parts: Vec<&str> = number.split('-').collect();
    parts.len() == 3
        && parts[0] == "WO"
        && parts[1].len() == 4
        && parts[2].len() == 6
        && parts[1..]
            .iter()
            .all(|part| part.bytes().all(|b| b.is_ascii_digit()))
}

async fn rest_order(server: &Server, id: &str) -> Value {
    let op = server.token("op").await;
    let (status, order) = server
        .get_json(&format!("/api/v1/work-orders/{id}"), &op)
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    order
}

/// Create a work order through the console form; its id.
async fn create_through_form(browser: &Browser, title: &str, assignee: &str) -> (String, String) {
    let (status, html) = browser.get("/ui/work-orders/new").await;
    assert_eq!(status, StatusCode::OK);
    let token = token_in(&html, "create-work-order");
    let (status, location, html) = browser
        .submit(
            "/ui/work-orders",
            &[
                ("csrf_token", &token),
                ("customer_name", "Ada & Co"),
                ("customer_address", "1 Main St"),
                ("customer_phone", "555-0100"),
                ("title", title),
                ("description", "Heating is off"),
                ("priority", "high"),
                ("scheduled_for", "2026-05-01T09:30"),
                ("assignee", assignee),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let id = location
        .strip_prefix("/ui/work-orders/")
        .expect("to the work order")
        .to_string();
    (id, html)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_edits_assigns_approves_and_cancels() {
    let server = Server::start().await;
    let browser = Browser::signed_in(&server, "op").await;
    let (_, list) = browser.get("/ui/work-orders").await;
    assert!(list.contains("id=\"new-work-order\"") && list.contains("id=\"work-orders\""));

    let (id, html) = create_through_form(&browser, "Boiler <b>down</b>", "tech-1").await;
    assert!(
        flash_text(&html).is_some_and(|text| text.contains("Done")),
        "{html}"
    );
    assert!(html.contains("Boiler &lt;b&gt;down&lt;/b&gt;") && !html.contains("<b>down"));
    let number = text_of(&html, "wo-number").expect("number");
    assert!(is_sequential_number(&number), "{number}");
    // The flash is shown once.
    let (_, again) = browser.get(&format!("/ui/work-orders/{id}")).await;
    assert!(!again.contains("id=\"flash\""));
    let order = rest_order(&server, &id).await;
    assert_eq!(order["number"], number.as_str());
    assert_eq!(order["title"], "Boiler <b>down</b>");
    assert_eq!(order["priority"], "high");
    assert_eq!(order["assignee"], "tech-1");
    assert_eq!(order["scheduled_for"], "2026-05-01T09:30:00.000Z");
    assert_eq!(order["customer"]["name"], "Ada & Co");

    // Edit: only the title changes.
    let path = format!("/ui/work-orders/{id}");
    let (_, page) = browser.get(&path).await;
    let (token, etag) = (
        token_in(&page, "edit-work-order"),
        value_in(&page, "edit-work-order", "etag"),
    );
    assert_eq!(etag, format!("\"{}\"", order["heads"][0].as_str().unwrap()));
    let mut fields = edit_fields(&order, &token, &etag);
    fields.insert("title", "Boiler down, urgent".into());
    let (status, _, html) = browser
        .submit(&format!("{path}/edit"), &pairs(&fields))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(flash_text(&html).unwrap().contains("Saved"));
    let edited = rest_order(&server, &id).await;
    assert_eq!(edited["title"], "Boiler down, urgent");
    assert_eq!(edited["description"], "Heating is off");
    assert_eq!(edited["scheduled_for"], "2026-05-01T09:30:00.000Z");

    // Reassign to tech-2.
    let (_, page) = browser.get(&path).await;
    let token = token_in(&page, "assign");
    let (status, _, _) = browser
        .submit(
            &format!("{path}/assign"),
            &[("csrf_token", &token), ("assignee", "tech-2")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(rest_order(&server, &id).await["assignee"], "tech-2");

    approve_and_cancel(&server, &browser, &id).await;
    server.stop().await;
}

/// The edit form's fields as the page rendered them for `order`.
fn edit_fields(order: &Value, token: &str, etag: &str) -> BTreeMap<&'static str, String> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    BTreeMap::from([
        ("csrf_token", token.to_string()),
        ("etag", etag.to_string()),
        ("title", text(&order["title"])),
        ("description", text(&order["description"])),
        ("customer_name", text(&order["customer"]["name"])),
        ("customer_address", text(&order["customer"]["address"])),
        ("customer_phone", text(&order["customer"]["phone"])),
        ("priority", text(&order["priority"])),
        (
            "scheduled_for",
            text(&order["scheduled_for"]).chars().take(16).collect(),
        ),
    ])
}

fn pairs<'a>(fields: &'a BTreeMap<&'static str, String>) -> Vec<(&'static str, &'a str)> {
    fields
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_or_forged_post_writes_nothing() {
    let server = Server::start().await;
    server.create("wo-1", Some("tech-1")).await;
    let browser = Browser::signed_in(&server, "op").await;
    let path = "/ui/work-orders/wo-1";
    let (_, page) = browser.get(path).await;
    let token = token_in(&page, "edit-work-order");
    let etag = value_in(&page, "edit-work-order", "etag");
    let before = rest_order(&server, "wo-1").await;
    let mut fields = edit_fields(&before, &token, &etag);
    fields.insert("title", "Changed from the console".into());

    assert_forged_posts_refused(&server, &browser, path, &page, &fields).await;
    let after = rest_order(&server, "wo-1").await;
    assert_eq!(after["heads"], before["heads"]);
    assert_eq!(after["title"], before["title"]);
    // A create without a token creates nothing.
    let response = browser
        .post(
            "/ui/work-orders",
            &[
                ("title", "forged"),
                ("customer_name", "x"),
                ("priority", "low"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let op = server.token("op").await;
    let (_, listed) = server.get_json("/api/v1/work-orders", &op).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // The technician adds a note meanwhile: the form's version is stale.
    let tech = server.token("tech-1").await;
    let note = json!({"text": "on my way"});
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/wo-1/notes",
            Some(&tech),
            Some(&note),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = browser.post(&format!("{path}/edit"), &pairs(&fields)).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let html = response.text().await.unwrap();
    assert_eq!(
        flash_text(&html).as_deref(),
        Some(
            "Not saved: This work order changed since you opened it; your edit was \
             not saved. Reload to see the changes."
        )
    );
    assert_eq!(rest_order(&server, "wo-1").await["title"], before["title"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_technician_and_a_client_and_revokes() {
    let server = Server::start().await;
    let browser = Browser::signed_in(&server, "op").await;
    let (status, page) = browser.get("/ui/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"users\"") && page.contains("id=\"user-tech-1\""));

    // A technician: an enrollment code, once.
    let token = token_in(&page, "add-technician");
    let response = browser
        .post(
            "/ui/users/technicians",
            &[("csrf_token", &token), ("id", "tech-new")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    let code = text_of(&html, "enroll-code").expect("the code");
    assert_eq!(code.len(), 14, "{code}");
    assert!(text_of(&html, "enroll-command").unwrap().contains(&code));
    let (_, reloaded) = browser.get("/ui/users").await;
    assert!(!reloaded.contains(&code) && !reloaded.contains("id=\"enroll-code\""));
    assert!(reloaded.contains("id=\"user-tech-new\""));
    let store = server.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.user("tech-new").unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.role, Role::Technician);
    assert!(stored.secret_hash.is_none());
    let hash = stored.enroll_code_hash.expect("a code hash");
    assert!(fieldsync_node::secret::verify(&code, &hash).unwrap());
    assert!(stored.enroll_code_expires_at_ms.is_some());

    // The same id again: refused in words, nothing shown.
    let token = token_in(&reloaded, "add-technician");
    let response = browser
        .post(
            "/ui/users/technicians",
            &[("csrf_token", &token), ("id", "tech-new")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let html = response.text().await.unwrap();
    assert!(flash_text(&html).is_some() && html.contains("already exists"));
    assert!(!html.contains("id=\"enroll-code\""));

    add_and_revoke_a_client(&server, &browser, &reloaded).await;
    server.stop().await;
}

async fn client_token_status(server: &Server, id: &str, secret: &str) -> StatusCode {
    server
        .client
        .post(format!("{}/oauth/token", server.url))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_may_not_use_the_console() {
    let server = Server::start().await;
    server.create("wo-1", Some("tech-1")).await;
    let browser = Browser::signed_in(&server, "tech-1").await;
    for path in ["/ui/work-orders/new", "/ui/users"] {
        let (status, html) = browser.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            flash_text(&html).unwrap().contains("Only operators"),
            "{html}"
        );
    }
    let (_, list) = browser.get("/ui/work-orders").await;
    assert!(!list.contains("new-work-order"));
    let (_, detail) = browser.get("/ui/work-orders/wo-1").await;
    assert!(!detail.contains("id=\"edit-work-order\"") && !detail.contains("id=\"cancel\""));
    let response = browser
        .post(
            "/ui/work-orders",
            &[("title", "mine"), ("customer_name", "x")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let refused = response.text().await.unwrap();
    assert!(
        refused.contains("Only operators may use the office console"),
        "{refused}"
    );
    let op = server.token("op").await;
    let (_, listed) = server.get_json("/api/v1/work-orders", &op).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_version_follows_changes_for_the_signed_in_only() {
    let server = Server::start().await;
    server.create("wo-1", Some("tech-1")).await;
    let browser = Browser::signed_in(&server, "op").await;
    let (_, page) = browser.get("/ui/work-orders/wo-1").await;
    assert!(page.contains("src=\"/ui/static/live.js\"") && !page.contains("<script>"));
    let shown = {
        let marker = "data-etag=\"";
        let start = page.find(marker).unwrap() + marker.len();
        unescape(&page[start..start + page[start..].find('"').unwrap()])
    };
    let (status, version) = browser.get("/ui/work-orders/wo-1/version").await;
    assert_eq!((status, version.as_str()), (StatusCode::OK, shown.as_str()));

    // A technician's change: a new version, the one REST answers.
    let tech = server.token("tech-1").await;
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/wo-1/notes",
            Some(&tech),
            Some(&json!({"text": "arrived"})),
        )
        .await;
    let rest_etag = response.headers()["etag"].to_str().unwrap().to_string();
    let (status, version) = browser.get("/ui/work-orders/wo-1/version").await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(version, shown);
    assert_eq!(version, rest_etag);

    // No cookie: 401; someone who may not see it: 404.
    let response = server
        .client
        .get(format!("{}/ui/work-orders/wo-1/version", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let other = Browser::signed_in(&server, "tech-2").await;
    let (status, body) = other.get("/ui/work-orders/wo-1/version").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains(&version));

    // The script comes from the gateway, allowed by the page's policy.
    let response = server
        .client
        .get(format!("{}/ui/static/live.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
    assert!(response.text().await.unwrap().contains("data-version-url"));
    server.stop().await;
}

/// Give work order `id` in `server`'s store a conflicting title: another
/// office's concurrent edit (made on a replica with its own actor) merged
/// after this office's edit over REST.
async fn conflicting_titles(server: &Server, id: &str, here: &str, there: &str) {
    use fieldsync_node::doc::{Edit, Operation, WorkOrderDoc};
    let bytes = server.store.doc_bytes(id).unwrap().expect("stored");
    let dir = tempfile::tempdir().unwrap();
    let other = crate::support::init_store(&dir.path().join("other"));
    let mut replica = WorkOrderDoc::load(&bytes, &other.actor()).unwrap();
    let patch = fieldsync_schemas::OperatorPatch {
        title: Some(there.into()),
        ..Default::default()
    };
    let who = fieldsync_schemas::Actor::new("op-2", Role::Operator);
    replica
        .apply(&who, &Operation::EditOperatorFields(patch), 2)
        .unwrap();
    other.close();
    let op = server.token("op").await;
    let response = server
        .call(
            Method::PATCH,
            &format!("/api/v1/work-orders/{id}"),
            Some(&op),
            Some(&json!({"title": here})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let store = server.store.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        store.edit_work_order(&id, |doc| {
            let before = doc.heads();
            doc.automerge_mut()
                .merge(replica.automerge_mut())
                .expect("merge");
            Ok(Edit {
                change_bytes: doc.automerge().save_after(&before),
                heads: doc.heads(),
                op: fieldsync_schemas::ChangeOp::Update,
            })
        })
    })
    .await
    .unwrap()
    .expect("merged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resolves_a_conflict_by_choosing_a_value() {
    let server = Server::start().await;
    server.create("wo-c", None).await;
    conflicting_titles(&server, "wo-c", "Title here", "Title there").await;
    let order = rest_order(&server, "wo-c").await;
    assert!(order["conflicts"]["title"].is_array(), "{order}");
    let loser = order["conflicts"]["title"][0].as_str().unwrap().to_string();

    let browser = Browser::signed_in(&server, "op").await;
    let path = "/ui/work-orders/wo-c";
    let (_, page) = browser.get(path).await;
    assert!(page.contains("id=\"conflicts\""));
    let form = "resolve-conflict-title";
    let (token, etag) = (token_in(&page, form), value_in(&page, form, "etag"));
    assert!(form_html(&page, form).contains(&format!("value=\"{loser}\"")));
    let fields = [
        ("csrf_token", token.as_str()),
        ("field", "title"),
        ("etag", etag.as_str()),
        ("value", loser.as_str()),
    ];
    let (status, _, html) = browser.submit(&format!("{path}/resolve"), &fields).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(flash_text(&html).unwrap().contains("Saved"));
    assert!(!html.contains("id=\"resolve-conflict-title\""));
    let resolved = rest_order(&server, "wo-c").await;
    assert_eq!(resolved["title"], loser.as_str());
    assert!(resolved["conflicts"].get("title").is_none(), "{resolved}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_and_pages_as_the_api_does() {
    let server = Server::start().await;
    for n in 0..51 {
        server.create(&format!("wo-{n:03}"), Some("tech-1")).await;
    }
    server.create("wo-other", Some("tech-2")).await;
    let browser = Browser::signed_in(&server, "op").await;
    let rows = |html: &str| html.matches("<tr id=\"wo-").count();

    let (_, first) = browser.get("/ui/work-orders?assignee=tech-1").await;
    assert!(first.contains("id=\"filters\""));
    assert_eq!(rows(&first), 50);
    assert!(!first.contains("id=\"wo-wo-other\""));
    let next = {
        let marker = "id=\"next-page\" href=\"";
        let start = first.find(marker).expect("a next page") + marker.len();
        unescape(&first[start..start + first[start..].find('"').unwrap()])
    };
    assert!(next.contains("assignee=tech-1"), "{next}");
    let (_, second) = browser.get(&next).await;
    assert_eq!(rows(&second), 1);
    assert!(!second.contains("id=\"next-page\""));

    let (_, theirs) = browser
        .get("/ui/work-orders?assignee=tech-2&status=assigned")
        .await;
    assert_eq!(rows(&theirs), 1);
    assert!(theirs.contains("id=\"wo-wo-other\""));
    let (_, deleted) = browser.get("/ui/work-orders?deleted=on").await;
    assert_eq!(rows(&deleted), 0);
    server.stop().await;
}

/// tech-2 requests a material over REST; the operator approves it, then
/// cancels the work order.
async fn approve_and_cancel(server: &Server, browser: &Browser, id: &str) {
    let path = format!("/ui/work-orders/{id}");
    // tech-2 requests a material over REST; the operator approves it.
    let tech = server.token("tech-2").await;
    let material = json!({"sku": "VALVE-9", "qty": 1.0, "unit": "pc", "description": "valve"});
    let response = server
        .call(
            Method::POST,
            &format!("/api/v1/work-orders/{id}/materials"),
            Some(&tech),
            Some(&material),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, page) = browser.get(&path).await;
    assert!(page.contains("id=\"reject-material-1\""));
    let (token, action) = (
        token_in(&page, "approve-material-1"),
        action_of(&page, "approve-material-1"),
    );
    let (status, _, _) = browser
        .submit(&action, &[("csrf_token", &token), ("state", "approved")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        rest_order(server, id).await["materials"][0]["state"],
        "approved"
    );

    // Cancel.
    let (_, page) = browser.get(&path).await;
    let token = token_in(&page, "cancel");
    let (status, _, html) = browser
        .submit(
            &format!("{path}/cancel"),
            &[("csrf_token", &token), ("note", "customer called")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(text_of(&html, "wo-status").as_deref(), Some("cancelled"));
    let cancelled = rest_order(server, id).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        cancelled["status_log"].as_array().unwrap().last().unwrap()["note"],
        "customer called"
    );
}

/// No token, a wrong one, the sign-out form's, another session's, or a
/// cross-site post: 403, nothing written.
async fn assert_forged_posts_refused(
    server: &Server,
    browser: &Browser,
    path: &str,
    page: &str,
    fields: &BTreeMap<&'static str, String>,
) {
    // No token, a wrong one, the sign-out form's, another session's: 403,
    // nothing written.
    let other = Browser::signed_in(server, "op").await;
    let (_, other_page) = other.get(path).await;
    let foreign = token_in(&other_page, "edit-work-order");
    let sign_out = value_in(page, "sign-out", "csrf_token");
    for bad in ["", "not-a-token", sign_out.as_str(), foreign.as_str()] {
        let mut forged = fields.clone();
        forged.insert("csrf_token", bad.to_string());
        let response = browser.post(&format!("{path}/edit"), &pairs(&forged)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "token {bad:?}");
        let html = response.text().await.unwrap();
        assert!(flash_text(&html)
            .unwrap()
            .contains("did not come from this site"));
    }
    let mut forged = fields.clone();
    forged.remove("csrf_token");
    let response = browser.post(&format!("{path}/edit"), &pairs(&forged)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Another site's post (the browser says so) with a good token too.
    let response = browser
        .send(
            browser
                .client
                .post(format!("{}{path}/edit", browser.url))
                .header("sec-fetch-site", "cross-site")
                .form(&pairs(fields)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// A client: its secret shown once and working; revoked, it stops.
async fn add_and_revoke_a_client(server: &Server, browser: &Browser, reloaded: &str) {
    // A client: its secret, once; it works at the token endpoint.
    let token = token_in(reloaded, "add-client");
    let response = browser
        .post(
            "/ui/users/clients",
            &[
                ("csrf_token", token.as_str()),
                ("id", "erp-new"),
                ("scopes", "changes:read"),
                ("scopes", "work-orders:read"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    let secret = text_of(&html, "client-secret").expect("the secret");
    let (_, reloaded) = browser.get("/ui/users").await;
    assert!(!reloaded.contains(&secret) && !reloaded.contains("id=\"client-secret\""));
    assert_eq!(
        client_token_status(server, "erp-new", &secret).await,
        StatusCode::OK
    );

    // Revoke it: its secret stops working.
    let token = token_in(&reloaded, "revoke-erp-new");
    let action = action_of(&reloaded, "revoke-erp-new");
    let (status, location, html) = browser.submit(&action, &[("csrf_token", &token)]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/users")
    );
    assert!(flash_text(&html).unwrap().contains("revoked"));
    assert!(!html.contains("id=\"revoke-erp-new\""));
    assert_eq!(
        client_token_status(server, "erp-new", &secret).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_customers_signature() {
    use fieldsync_node::doc::Operation;
    let server = Server::start().await;
    server.create("wo-s", Some("tech-1")).await;
    let store = server.store.clone();
    tokio::task::spawn_blocking(move || {
        let close = Operation::Close {
            at: "2026-05-01T10:00:00.000Z".into(),
            resolution: "Relay replaced".into(),
            signed_by: "Ada".into(),
            signature: "M10 10 L20 25 L30 12".into(),
        };
        let tech = fieldsync_schemas::Actor::new("tech-1", Role::Technician);
        store.update_work_order("wo-s", &tech, &close, 3)
    })
    .await
    .unwrap()
    .expect("closed");
    let browser = Browser::signed_in(&server, "op").await;
    let (_, page) = browser.get("/ui/work-orders/wo-s").await;
    assert!(page.contains("<svg class=\"signature\""), "{page}");
    assert!(page.contains("d=\"M10 10 L20 25 L30 12\""));
    assert!(page.contains("Relay replaced"));
    server.stop().await;
}
