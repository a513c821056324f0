//! The changes feed: order, dedup per page, visibility, longpoll, and
//! paging under concurrent writers.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use fieldsync_gateway::GatewayConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{problem, Server};
use fieldsync_schemas::{Actor, Role};

fn seqs(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_appears_once_per_page_at_its_latest_change() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let b = server.base_seq;
    server.create("a", Some("tech-1")).await;
    server.create("b", Some("tech-2")).await;
    for text in ["one", "two", "three"] {
        let response = server
            .call(
                Method::POST,
                "/api/v1/work-orders/a/notes",
                Some(&op),
                Some(&json!({"text": text})),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Seqs after the users': a=1, b=2, a=3,4,5.
    let (status, page) = server.get_json("/api/v1/changes?since=0", &op).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seqs(&page), vec![b + 2, b + 5]);
    assert_eq!(page["entries"][1]["id"], "a");
    assert_eq!(page["entries"][1]["op"], "update");
    assert_eq!(page["entries"][1]["number"], "WO-a");
    assert_eq!(page["entries"][0]["op"], "create");
    assert_eq!(page["last_seq"], b + 5);
    assert!(page["next"].is_null());
    assert_eq!(page["epoch"].as_str().unwrap().len(), 32);
    // The heads are the document's heads after that change.
    let (_, order) = server.get_json("/api/v1/work-orders/a", &op).await;
    assert_eq!(page["entries"][1]["heads"], order["heads"]);
    // Small pages: limit counts documents; `next` says more is waiting.
    let (_, first) = server
        .get_json("/api/v1/changes?since=0&limit=1", &op)
        .await;
    assert_eq!(seqs(&first), vec![b + 1]);
    assert_eq!(first["last_seq"], b + 1);
    assert_eq!(first["next"], b + 1);
    let (_, second) = server
        .get_json(&format!("/api/v1/changes?since={}&limit=1", b + 1), &op)
        .await;
    assert_eq!(seqs(&second), vec![b + 2]);
    // Collection filter.
    let (_, none) = server
        .get_json("/api/v1/changes?collection=customers", &op)
        .await;
    assert_eq!(seqs(&none), Vec::<u64>::new());
    assert_eq!(none["last_seq"], b + 5);
    // A technician sees only their own document, and their cursor is
    // their own: the seq of the last change shown, not the store's.
    let tech = server.token("tech-2").await;
    let (_, mine) = server.get_json("/api/v1/changes?since=0", &tech).await;
    assert_eq!(seqs(&mine), vec![b + 2]);
    assert_eq!(mine["last_seq"], b + 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_wakes_on_a_visible_write_and_times_out_empty() {
    let server = Server::start().await;
    server.create("mine", Some("tech-1")).await;
    server.create("theirs", Some("tech-2")).await;
    let tech = server.token("tech-1").await;
    let op = server.token("op").await;
    let (_, now) = server.get_json("/api/v1/changes", &tech).await;
    let since = now["last_seq"].as_u64().unwrap();
    assert_eq!(
        since,
        server.base_seq + 1,
        "the technician's own cursor: their last change"
    );

    // Timeout: empty page after about the asked wait.
    let started = Instant::now();
    let (status, empty) = server
        .get_json(
            &format!("/api/v1/changes?since={since}&feed=longpoll&timeout=300"),
            &tech,
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seqs(&empty), Vec::<u64>::new());
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // A longpoll waits through an invisible write and wakes on a visible one.
    let poll = {
        let client = server.client.clone();
        let url = format!(
            "{}/api/v1/changes?since={since}&feed=longpoll&timeout=10000",
            server.url
        );
        let tech = tech.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let page: Value = client
                .get(url)
                .bearer_auth(tech)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), page)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let note = json!({"text": "not yours"});
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/theirs/notes",
            Some(&op),
            Some(&note),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "woke on a change it may not see");
    let note = json!({"text": "yours"});
    let response = server
        .call(
            Method::POST,
            "/api/v1/work-orders/mine/notes",
            Some(&op),
            Some(&note),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (elapsed, page) = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("longpoll did not wake")
        .unwrap();
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(seqs(&page), vec![server.base_seq + 4]);
    assert_eq!(page["entries"][0]["id"], "mine");
    assert_eq!(page["last_seq"], server.base_seq + 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_under_concurrent_writers_sees_every_change_once_in_order() {
    const WRITERS: usize = 4;
    const DOCS_PER_WRITER: usize = 10;
    const NOTES_PER_DOC: usize = 2;
    let config = GatewayConfig {
        requests_per_s: 10_000,
        request_burst: 10_000,
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    let op = server.token("op").await;
    let reader_token = server.token("erp-read").await;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = server.client.clone();
        let url = server.url.clone();
        let op = op.clone();
        writers.push(tokio::spawn(async move {
            for doc in 0..DOCS_PER_WRITER {
                let id = format!("w{writer}-{doc}");
                let body = json!({"id": id, "title": "t", "customer": {"name": "c"}});
                let response = client
                    .post(format!("{url}/api/v1/work-orders"))
                    .bearer_auth(&op)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                for note in 0..NOTES_PER_DOC {
                    let response = client
                        .post(format!("{url}/api/v1/work-orders/{id}/notes"))
                        .bearer_auth(&op)
                        .json(&json!({"text": format!("note {note}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                }
            }
        }));
    }
    let total = server.base_seq + (WRITERS * DOCS_PER_WRITER * (1 + NOTES_PER_DOC)) as u64;
    // Read concurrently, in small pages, following last_seq.
    let mut pages: Vec<Value> = Vec::new();
    // From after the setup's users (never on the feed).
    let base = server.base_seq;
    let mut since = base;
    let deadline = Instant::now() + Duration::from_secs(120);
    while since < total {
        assert!(Instant::now() < deadline, "reader stuck at {since}");
        let (status, page) = server
            .get_json(
                &format!("/api/v1/changes?since={since}&limit=7&feed=longpoll&timeout=2000"),
                &reader_token,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let last = page["last_seq"].as_u64().unwrap();
        assert!(last >= since, "cursor went back");
        since = last;
        pages.push(page);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(server.store.last_seq(), total);
    // The store's own changelog is the truth to compare with.
    let store = server.store.clone();
    let log = tokio::task::spawn_blocking(move || store.changes_since(base, 10_000).unwrap())
        .await
        .unwrap();
    assert_eq!(log.len() as u64, total - base);
    let by_seq: BTreeMap<u64, String> = log.iter().map(|e| (e.seq, e.id.clone())).collect();
    let mut seen = HashSet::new();
    let mut previous = base;
    let mut page_start = base;
    for page in &pages {
        let entries = page["entries"].as_array().unwrap();
        let mut ids_in_page = HashSet::new();
        for entry in entries {
            let seq = entry["seq"].as_u64().unwrap();
            assert!(
                seq > previous,
                "out of order or repeated: {seq} after {previous}"
            );
            previous = seq;
            let id = entry["id"].as_str().unwrap();
            assert_eq!(by_seq[&seq], id, "seq {seq} names another document");
            assert!(ids_in_page.insert(id.to_string()), "{id} twice in a page");
            assert!(seen.insert(seq));
        }
        // Every seq this page covers was returned, or superseded by a later
        // change of the same document in the same page.
        let last = page["last_seq"].as_u64().unwrap();
        for seq in page_start + 1..=last {
            if !seen.contains(&seq) {
                let id = &by_seq[&seq];
                let superseded = entries.iter().any(|entry| {
                    entry["id"] == id.as_str() && entry["seq"].as_u64().unwrap() > seq
                });
                assert!(superseded, "seq {seq} ({id}) skipped");
            }
        }
        page_start = last;
    }
    assert_eq!(page_start, total);
    // Every document's final change was delivered.
    for (seq, id) in &by_seq {
        let last_of_doc = by_seq
            .iter()
            .filter(|(_, other)| *other == id)
            .map(|(s, _)| *s)
            .max()
            .unwrap();
        if *seq == last_of_doc {
            assert!(seen.contains(seq), "final change {seq} of {id} missing");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feed_parameters_are_problems() {
    let server = Server::start().await;
    server.create("a", None).await;
    let op = server.token("op").await;
    for query in [
        "since=abc",
        "since=-1",
        "since=99",
        "limit=0",
        "limit=x",
        "feed=sometimes",
        "collection=bad%20name",
        "unknown=1",
        "since=18446744073709551616",
    ] {
        let response = server
            .call(
                Method::GET,
                &format!("/api/v1/changes?{query}"),
                Some(&op),
                None,
            )
            .await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            body["type"], "urn:fieldsync:problem:invalid-query",
            "{query}"
        );
    }
    // A limit above the maximum is capped, not refused.
    let (status, _) = server.get_json("/api/v1/changes?limit=1000000", &op).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_longpoll_answers_at_shutdown() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let poll = {
        let request = server
            .client
            .get(format!(
                "{}/api/v1/changes?feed=longpoll&timeout=20000",
                server.url
            ))
            .bearer_auth(&op);
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let page = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&page), Vec::<u64>::new());
}

/// Hardening finding 7: a technician's feed never tells the store's last
/// seq (how busy the whole office is), in `last_seq` or in a problem.
/// Fails on the code before the fix, which answered the technician's
/// `last_seq` with the store's when the scan reached the end, and named
/// the store's last seq when `since` was past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technicians_feed_never_tells_the_stores_last_seq() {
    let config = GatewayConfig {
        page_size_max: 2,
        page_size_default: 2,
        scan_entries_max: 3,
        ..GatewayConfig::default()
    };
    let server = Server::start_with(config, None).await;
    server.create("mine", Some("tech-1")).await;
    for i in 0..6 {
        server.create(&format!("theirs-{i}"), Some("tech-2")).await;
    }
    // Seqs after the users' (b): mine=b+1, theirs=b+2..b+7. The office's
    // cursor is the store's seq.
    let b = server.base_seq;
    let op = server.token("op").await;
    let (_, all) = server
        .get_json(&format!("/api/v1/changes?since={}", b + 5), &op)
        .await;
    assert_eq!(all["last_seq"], b + 7);
    let tech = server.token("tech-1").await;
    // The scan budget (3) runs out before the end: `next` is where the
    // scan stopped, the technician's own cursor.
    let (_, first) = server
        .get_json(&format!("/api/v1/changes?since={b}"), &tech)
        .await;
    assert_eq!(seqs(&first), vec![b + 1]);
    assert_eq!(
        (first["last_seq"].as_u64(), first["next"].as_u64()),
        (Some(b + 3), Some(b + 3))
    );
    // The scan reaches the end: the technician's cursor stays where they
    // were (the store is at b+7).
    let since = b + 5;
    let (_, end) = server
        .get_json(&format!("/api/v1/changes?since={since}"), &tech)
        .await;
    assert_eq!(seqs(&end), Vec::<u64>::new());
    assert_eq!(end["last_seq"], since);
    assert!(end["next"].is_null());
    let (_, end) = server
        .get_json(
            &format!("/api/v1/changes?since={since}&feed=longpoll&timeout=100"),
            &tech,
        )
        .await;
    assert_eq!(end["last_seq"], since);
    // A new change of theirs: the cursor moves to it, not past it.
    let store = server.store.clone();
    tokio::task::spawn_blocking(move || {
        store
            .create_work_order(
                &Actor::new("op", Role::Operator),
                &crate::support::sample("mine-2", Some("tech-1")),
                1,
            )
            .unwrap()
    })
    .await
    .unwrap();
    let (_, latest) = server
        .get_json(&format!("/api/v1/changes?since={since}"), &tech)
        .await;
    assert_eq!(seqs(&latest), vec![b + 8]);
    assert_eq!(latest["last_seq"], b + 8);
    server.create("theirs-late", Some("tech-2")).await;
    let (_, after) = server
        .get_json(&format!("/api/v1/changes?since={}", b + 8), &tech)
        .await;
    assert_eq!(after["last_seq"], b + 8, "not the store's b+9");
    // `since` past the end: refused, without the store's seq.
    let response = server
        .call(Method::GET, "/api/v1/changes?since=99", Some(&tech), None)
        .await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    let detail = body["detail"].as_str().unwrap();
    let store_seq = (b + 9).to_string();
    assert!(!detail.replace("99", "").contains(&store_seq), "{detail}");
    // The office is told.
    let response = server
        .call(Method::GET, "/api/v1/changes?since=99", Some(&op), None)
        .await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("last change {}", b + 9)),
        "{body}"
    );
    server.stop().await;
}

/// Hardening finding 7: a user holds at most `longpolls_per_user_max` (4 by
/// default) longpolls at once; the next is 429 with Retry-After. Fails on
/// the code before the fix, which let every longpoll wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_concurrent_longpoll_of_one_user_is_refused() {
    let server = Server::start().await;
    let tech = server.token("tech-1").await;
    let other = server.token("tech-2").await;
    let poll = || {
        let request = server
            .client
            .get(format!(
                "{}/api/v1/changes?feed=longpoll&timeout=20000",
                server.url
            ))
            .bearer_auth(&tech);
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    };
    let mut polls: Vec<_> = (0..4).map(|_| poll()).collect();
    // Probe with longpolls that answer at once (`timeout=0`) until one is
    // refused. Until the four have arrived a probe is let in, and a poll
    // arriving while a probe holds a slot may be the one refused: start
    // it again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for slot in polls.iter_mut() {
            if slot.is_finished() {
                let (status, _) = std::mem::replace(slot, poll()).await.unwrap();
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            }
        }
        let response = server
            .call(
                Method::GET,
                "/api/v1/changes?feed=longpoll&timeout=0",
                Some(&tech),
                None,
            )
            .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=25).contains(&retry), "{retry}");
            let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
            assert_eq!(body["type"], "urn:fieldsync:problem:rate-limited");
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            Instant::now() < deadline,
            "the fifth longpoll was never refused"
        );
    }
    // Another user's longpoll, and the same user's plain reads, go on.
    let (status, _) = server
        .get_json("/api/v1/changes?feed=longpoll&timeout=100", &other)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get_json("/api/v1/changes", &tech).await;
    assert_eq!(status, StatusCode::OK);
    // A change the technician sees answers the four, and frees their slots.
    server.create("wake", Some("tech-1")).await;
    for poll in polls {
        let (status, page) = tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .expect("the longpoll woke")
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["entries"][0]["id"], "wake");
    }
    let (status, _) = server
        .get_json("/api/v1/changes?feed=longpoll&timeout=100&since=1", &tech)
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

/// Users take changelog seqs (they travel between offices) but are never
/// on the feed, for anyone, not even asked for by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_never_on_the_feed() {
    let server = Server::start().await;
    let op = server.token("op").await;
    let body = json!({"id": "tech-9", "role": "technician"});
    let response = server
        .call(Method::POST, "/api/v1/users", Some(&op), Some(&body))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    server.create("a", Some("tech-1")).await;
    let last = server.store.last_seq();
    assert_eq!(last, server.base_seq + 2, "the user's write took a seq");
    for user in ["op", "tech-1", "erp-read"] {
        let token = server.token(user).await;
        for query in ["since=0", "since=0&collection=users"] {
            let (status, page) = server
                .get_json(&format!("/api/v1/changes?{query}"), &token)
                .await;
            assert_eq!(status, StatusCode::OK);
            let entries = page["entries"].as_array().unwrap();
            assert!(
                entries.iter().all(|entry| entry["collection"] != "users"),
                "{user} {query}: {page}"
            );
        }
    }
    let (_, page) = server.get_json("/api/v1/changes?since=0", &op).await;
    assert_eq!(seqs(&page), vec![last], "only the work order");
    let response = server
        .call(Method::GET, "/api/v1/records/users", Some(&op), None)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}
