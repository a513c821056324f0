//! The web UI over HTTP: sign-in cookie, list, detail with escaping,
//! technician isolation, and the API refusing the cookie.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::Server;

async fn sign_in(server: &Server, user: &str, secret: &str) -> reqwest::Response {
    server
        .client
        .post(format!("{}/sign-in", server.url))
        .form(&[("client_id", user), ("client_secret", secret)])
        .send()
        .await
        .unwrap()
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

    // A wrong secret: the form again, 401, no cookie.
    let response = sign_in(&server, "tech-1", "wrong").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.headers().contains_key("set-cookie"));

    let response = sign_in(&server, "tech-1", &server.secret("tech-1")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
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

    // Sign out clears the cookie.
    let response = server
        .client
        .post(format!("{}/sign-out", server.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // The operator sees both, and the peers page.
    let response = sign_in(&server, "op", &server.secret("op")).await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
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
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
        set_cookie.split(';').next().unwrap().to_string()
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
