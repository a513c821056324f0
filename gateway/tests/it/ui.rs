//! The web UI over HTTP: sign-in cookie, list, detail with escaping,
//! technician isolation, and the API refusing the cookie.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{cookie_named, form_token, set_cookies, ui_sign_in, Server};

/// Sign in through the form, as a browser does (the form's token with its
/// cookie).
async fn sign_in(server: &Server, user: &str, secret: &str) -> reqwest::Response {
    ui_sign_in(&server.client, &server.url, user, secret).await
}

async fn page(server: &Server, cookie: &str, path: &str) -> (StatusCode, String) {
    let response = server
        .client
        .get(format!("{}{path}", server.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_list_detail_and_isolation() {
    let server = Server::start().await;
    server.create("mine", Some("tech-1")).await;
    server.create("theirs", Some("tech-2")).await;
    let op = server.token("op").await;
    let note = json!({"text": "<script>alert(1)</script> & more"});
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/mine/notes",
            Some(&op),
            Some(&note),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Not signed in: sent to the sign-in page.
    let response = server
        .client
        .get(format!("{}/ui/work-orders", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/sign-in");
    let response = server
        .client
        .get(format!("{}/sign-in", server.url))
        .send()
        .await
        .unwrap();
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("name=\"client_secret\""));

    // A wrong secret: the form again, 401, no session cookie.
    let response = sign_in(&server, "tech-1", "wrong").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        cookie_named(&set_cookies(&response), "fieldsync_session"),
        None
    );

    let response = sign_in(&server, "tech-1", &server.secret("tech-1")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = session_set_cookie(&response);
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    let (status, list) = page(&server, &cookie, "/ui/work-orders").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("/ui/work-orders/mine"));
    assert!(!list.contains("/ui/work-orders/theirs"));
    let (_, filtered) = page(
        &server,
        &cookie,
        "/ui/work-orders?status=completed&priority=&assignee=",
    )
    .await;
    assert!(filtered.contains("No work orders match."));

    let (status, detail) = page(&server, &cookie, "/ui/work-orders/mine").await;
    assert_eq!(status, StatusCode::OK);
    assert!(detail.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
    assert!(!detail.contains("<script>alert"));
    assert!(
        detail.contains("Status log") && detail.contains("Materials") && detail.contains("SKU-1")
    );

    // Someone else's work order, or a bad id: 404, same page.
    let (status, not_found) = page(&server, &cookie, "/ui/work-orders/theirs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(not_found.contains("<title>Not found"), "{not_found}");
    let (status, _) = page(&server, &cookie, "/ui/work-orders/no-such").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Peers are for operators.
    let (status, _) = page(&server, &cookie, "/ui/peers").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, feed) = page(&server, &cookie, "/ui/changes").await;
    assert_eq!(status, StatusCode::OK);
    assert!(feed.contains("WO-mine") && !feed.contains("WO-theirs"));

    // The API does not accept the session cookie.
    let response = server
        .client
        .get(format!("{}/api/v1/work-orders", server.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Sign out (with the token of the page's form) clears the cookie.
    let (_, list) = page(&server, &cookie, "/ui/work-orders").await;
    let token = form_token(&list).expect("the sign-out form's token");
    let response = server
        .client
        .post(format!("{}/sign-out", server.url))
        .header("cookie", &cookie)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(session_set_cookie(&response).contains("Max-Age=0"));

    // The operator sees both, and the peers page.
    let response = sign_in(&server, "op", &server.secret("op")).await;
    let cookie = cookie_named(&set_cookies(&response), "fieldsync_session").unwrap();
    let (_, list) = page(&server, &cookie, "/ui/work-orders").await;
    assert!(list.contains("/ui/work-orders/mine") && list.contains("/ui/work-orders/theirs"));
    let (status, peers) = page(&server, &cookie, "/ui/peers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(peers.contains("No peers known yet."));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_page_lists_what_the_user_may_read() {
    let server = Server::start().await;
    let op = server.token("op").await;
    for path in [
        "/api/v1/collections/materials/records/m1",
        "/api/v1/collections/customers/records/c1",
    ] {
        let response = server
            .call(Method::PUT, path, Some(&op), Some(&json!({"n": 1})))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let grant = json!({"readers": ["technician"]});
    let response = server
        .call(
            Method::PUT,
            "/api/v1/collections/materials/grants",
            Some(&op),
            Some(&grant),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie_of = |response: reqwest::Response| {
        cookie_named(&set_cookies(&response), "fieldsync_session").unwrap()
    };
    let operator = cookie_of(sign_in(&server, "op", &server.secret("op")).await);
    let (status, html) = page(&server, &operator, "/ui/collections").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("href=\"/ui/collections\""), "nav link");
    assert!(html.contains("<code>customers</code>") && html.contains("<code>materials</code>"));
    assert!(html.contains("operator, technician") && !html.contains("<code>users</code>"));
    let tech = cookie_of(sign_in(&server, "tech-1", &server.secret("tech-1")).await);
    let (status, html) = page(&server, &tech, "/ui/collections").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<code>materials</code>") && !html.contains("<code>customers</code>"));
    server.stop().await;
}

/// The session cookie of `user`, signed in with its secret.
async fn signed_in(server: &Server, user: &str) -> String {
    let response = sign_in(server, user, &server.secret(user)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{user} signs in");
    cookie_named(&set_cookies(&response), "fieldsync_session").unwrap()
}

/// The whole `Set-Cookie` line of the session cookie.
fn session_set_cookie(response: &reqwest::Response) -> String {
    set_cookies(response)
        .into_iter()
        .find(|line| line.starts_with("fieldsync_session="))
        .expect("a session cookie")
}

async fn register_hook(server: &Server, token: &str, url: &str) -> String {
    let body = json!({"url": url, "skip_url_test": true});
    let response = server
        .call(Method::POST, "/api/v1/webhooks", Some(token), Some(&body))
        .await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let created: serde_json::Value = serde_json::from_str(&text).unwrap();
    created["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_page_shows_the_hooks_one_may_manage_escaped() {
    let server = Server::start_delivering(None, None).await;
    let op = server.token("op").await;
    let plain = register_hook(&server, &op, "http://127.0.0.1:9/hook").await;
    let scripted = register_hook(
        &server,
        &op,
        "http://127.0.0.1:9/hook?q=<script>alert(1)</script>",
    )
    .await;
    let tech_token = server.token("tech-1").await;
    let techs = register_hook(&server, &tech_token, "http://127.0.0.1:9/tech").await;

    let operator = signed_in(&server, "op").await;
    let (status, html) = page(&server, &operator, "/ui/webhooks").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("href=\"/ui/webhooks\""), "nav link");
    assert!(html.contains("href=\"/ui/commands\""), "nav link");
    for id in [&plain, &scripted, &techs] {
        assert!(html.contains(id.as_str()), "{id} listed");
    }
    assert!(html.contains("<code>http://127.0.0.1:9/hook</code>"));
    assert!(html.contains("http://127.0.0.1:9/hook?q=&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"), "no markup from the URL");
    assert!(html.contains("all collections") && html.contains(">tech-1<"));

    // A delivery to the closed port fails: the hook is penalised and the
    // attempt is listed.
    server.create("wo-1", Some("tech-1")).await;
    let mut html = String::new();
    for _ in 0..500 {
        html = page(&server, &operator, "/ui/webhooks").await.1;
        if html.contains("penalised until") && html.contains("<td>delivery</td>") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(html.contains("penalised until"), "{html}");
    assert!(html.contains("<td>delivery</td>"), "{html}");

    // A technician sees only their own hook, and no commands.
    let tech = signed_in(&server, "tech-1").await;
    let (status, html) = page(&server, &tech, "/ui/webhooks").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(techs.as_str()));
    assert!(!html.contains(plain.as_str()) && !html.contains(scripted.as_str()));
    assert!(!html.contains("href=\"/ui/commands\""));
    let (status, _) = page(&server, &tech, "/ui/commands").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another technician has none.
    let other = signed_in(&server, "tech-2").await;
    let (_, html) = page(&server, &other, "/ui/webhooks").await;
    assert!(html.contains("No webhooks you may manage.") && !html.contains(techs.as_str()));
    // An integration without `webhooks:manage` may not.
    let reader = signed_in(&server, "erp-read").await;
    let (status, _) = page(&server, &reader, "/ui/webhooks").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_page_lists_a_published_command_as_pending() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let body = json!({"name": "anonymise", "subscriber": "erp-all", "payload": {}});
    let response = server
        .call(Method::POST, "/api/v1/commands", Some(&op), Some(&body))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: serde_json::Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();

    let section = |html: &str, id: &str| {
        let at = html.find(id).expect("listed");
        let pending = html.find("Pending (available now)").unwrap();
        let waiting = html.find("Waiting (retry scheduled)").unwrap();
        (pending < at && at < waiting, html[waiting..].contains(id))
    };
    for user in ["op", "erp-all"] {
        let cookie = signed_in(&server, user).await;
        let (status, html) = page(&server, &cookie, "/ui/commands").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert_eq!(section(&html, &id), (true, false), "{user}: {html}");
        assert!(html.contains("<td>anonymise</td>") && html.contains("0 / 3"));
    }
    // Over 100 in a section: the first 100, and the page says so.
    for _ in 0..100 {
        let response = server
            .call(Method::POST, "/api/v1/commands", Some(&op), Some(&body))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let operator = signed_in(&server, "op").await;
    let (_, html) = page(&server, &operator, "/ui/commands").await;
    assert!(html.contains("Pending (available now) (100+)"), "{html}");
    assert_eq!(html.matches("<td>anonymise</td>").count(), 100);
    assert!(html.contains("Showing the first 100 only"));
    // No commands scope, or a technician: no page.
    let other = signed_in(&server, "erp-none").await;
    let (status, _) = page(&server, &other, "/ui/commands").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let tech = signed_in(&server, "tech-1").await;
    let (status, html) = page(&server, &tech, "/ui/commands").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!html.contains(id.as_str()));
    server.stop().await;
}

/// Hardening finding 7: a technician's web UI shows none of the store's
/// figures. Fails on the code before the fix, whose changes page told a
/// technician "(store at N)" and started at the store's last seq less 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technicians_changes_page_shows_no_store_figures() {
    let server = Server::start().await;
    server.create("mine", Some("tech-1")).await;
    for i in 0..6 {
        server.create(&format!("theirs-{i}"), Some("tech-2")).await;
    }
    let tech = signed_in(&server, "tech-1").await;
    let (status, html) = page(&server, &tech, "/ui/changes").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("WO-mine") && !html.contains("WO-theirs"),
        "{html}"
    );
    assert!(
        !html.contains("store at") && !html.contains("up to"),
        "{html}"
    );
    assert!(html.contains("Your changes after seq 0."), "{html}");
    // A `since` past the end is not clamped to the store's seq either.
    let (status, html) = page(&server, &tech, "/ui/changes?since=50").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("after seq 50.") && !html.contains("store at"),
        "{html}"
    );
    // The office sees where the store is.
    let op = signed_in(&server, "op").await;
    let (_, html) = page(&server, &op, "/ui/changes").await;
    let store_at = format!("(store at {})", server.base_seq + 7);
    assert!(html.contains(&store_at), "{html}");
    server.stop().await;
}

/// Post the sign-in form with these parts; `cookie` is the whole `Cookie`
/// header, if any.
async fn post_sign_in(
    server: &Server,
    cookie: Option<&str>,
    token: Option<&str>,
    user: &str,
    extra: Option<(&str, &str)>,
) -> reqwest::Response {
    let secret = server.secret(user);
    let mut fields = vec![("client_id", user), ("client_secret", secret.as_str())];
    if let Some(token) = token {
        fields.push(("csrf_token", token));
    }
    let mut request = server
        .client
        .post(format!("{}/sign-in", server.url))
        .form(&fields);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

/// The sign-in page's nonce cookie (`name=value`) and its form's token.
async fn sign_in_form(server: &Server) -> (String, String) {
    let response = server
        .client
        .get(format!("{}/sign-in", server.url))
        .send()
        .await
        .unwrap();
    let set = set_cookies(&response);
    let nonce = set
        .iter()
        .find(|line| line.starts_with("fieldsync_form="))
        .expect("a nonce cookie")
        .clone();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(nonce.contains(attribute), "{nonce}");
    }
    let nonce = cookie_named(&set, "fieldsync_form").unwrap();
    let token = form_token(&response.text().await.unwrap()).expect("a form token");
    (nonce, token)
}

/// Hardening finding 5: the sign-in and sign-out forms carry a token bound
/// to a cookie, and a post without it (another site's form, posted in the
/// user's browser) is a 403 page, not a sign-in or a sign-out. Fails on
/// the code before the fix, which signed in (303 and a session cookie)
/// anyone posting a user's id and secret, and signed out on any post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_sign_out_refuse_a_post_without_their_token() {
    let server = Server::start().await;
    let refused = |response: &reqwest::Response| {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            cookie_named(&set_cookies(response), "fieldsync_session"),
            None,
            "no session"
        );
    };
    // No token, no cookie: refused, with the form again.
    let response = post_sign_in(&server, None, None, "op", None).await;
    refused(&response);
    let html = response.text().await.unwrap();
    assert!(html.contains("did not come from this site"), "{html}");
    assert!(form_token(&html).is_some(), "a fresh form to sign in with");

    let (nonce, token) = sign_in_form(&server).await;
    // The token without its cookie, the cookie without the token, the
    // token with another browser's cookie, a made-up token.
    let (other_nonce, other_token) = sign_in_form(&server).await;
    assert_ne!(nonce, other_nonce);
    assert_ne!(token, other_token);
    for (cookie, token) in [
        (None, Some(token.as_str())),
        (Some(nonce.as_str()), None),
        (Some(other_nonce.as_str()), Some(token.as_str())),
        (
            Some(nonce.as_str()),
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
    ] {
        refused(&post_sign_in(&server, cookie, token, "op", None).await);
    }
    // The right pair, but the browser says another site sent it.
    let response = post_sign_in(
        &server,
        Some(&nonce),
        Some(&token),
        "op",
        Some(("sec-fetch-site", "cross-site")),
    )
    .await;
    refused(&response);
    // The pair from the same page signs in (a browser sends
    // `Sec-Fetch-Site: same-origin`), and the used nonce is cleared.
    let response = post_sign_in(
        &server,
        Some(&nonce),
        Some(&token),
        "op",
        Some(("sec-fetch-site", "same-origin")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = set_cookies(&response);
    let session = cookie_named(&set, "fieldsync_session").expect("signed in");
    assert!(
        set.iter()
            .any(|line| line.starts_with("fieldsync_form=;") && line.contains("Max-Age=0")),
        "{set:?}"
    );

    // Sign-out: without a token, or with the sign-in form's, or with
    // another session's: refused, and the session stays.
    let (_, html) = page(&server, &session, "/ui/work-orders").await;
    let sign_out_token = form_token(&html).expect("the sign-out form's token");
    let other_session = signed_in(&server, "op").await;
    let (_, other_html) = page(&server, &other_session, "/ui/work-orders").await;
    let other_sign_out = form_token(&other_html).unwrap();
    assert_ne!(sign_out_token, other_sign_out, "bound to the session");
    for token in [None, Some(token.as_str()), Some(other_sign_out.as_str())] {
        let mut request = server
            .client
            .post(format!("{}/sign-out", server.url))
            .header("cookie", &session);
        if let Some(token) = token {
            request = request.form(&[("csrf_token", token)]);
        }
        let response = request.send().await.unwrap();
        refused(&response);
        assert!(set_cookies(&response).is_empty(), "the session is kept");
        let html = response.text().await.unwrap();
        assert!(html.contains("did not come from this site"), "{html}");
    }
    let (status, _) = page(&server, &session, "/ui/work-orders").await;
    assert_eq!(status, StatusCode::OK, "still signed in");
    // With its own token, from another site: refused too.
    let response = server
        .client
        .post(format!("{}/sign-out", server.url))
        .header("cookie", &session)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf_token", sign_out_token.as_str())])
        .send()
        .await
        .unwrap();
    refused(&response);
    // With its own token: signed out.
    let response = server
        .client
        .post(format!("{}/sign-out", server.url))
        .header("cookie", &session)
        .form(&[("csrf_token", sign_out_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(session_set_cookie(&response).contains("Max-Age=0"));
    server.stop().await;
}
