//! A real webhook receiver on a loopback port: an axum server that keeps
//! what it is sent and answers what the test scripted (204 by default).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }

    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    pub(crate) fn is_test(&self) -> bool {
        self.header("webhook-id").starts_with("msg_test_")
    }
}

/// What to answer: status, extra headers.
pub(crate) type Answer = (u16, Vec<(&'static str, String)>);

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    shared: Arc<Shared>,
    _serving: tokio::task::JoinHandle<()>,
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let answer = shared.script.lock().unwrap().pop_front();
    let (status, extra) = answer.unwrap_or((204, Vec::new()));
    let mut response = StatusCode::from_u16(status).unwrap().into_response();
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let serving = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            shared,
            _serving: serving,
        }
    }

    /// Answer the next requests with these, then 204 again.
    pub(crate) fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Wait until `done` holds for what was received (at most 20 s).
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        for _ in 0..400 {
            let received = self.received();
            if done(&received) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "receiver: gave up waiting for {what}; got {:?}",
            self.received().len()
        );
    }
}

/// The changes a notification carries: (seq, collection, id).
pub(crate) fn changes_of(received: &Received) -> Vec<(u64, String, String)> {
    received.json()["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["seq"].as_u64().unwrap(),
                c["collection"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every change received, once per notification id (receivers dedupe by
/// `webhook-id`), in arrival order.
pub(crate) fn distinct_changes(received: &[Received]) -> Vec<(u64, String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut changes = Vec::new();
    for r in received.iter().filter(|r| !r.is_test()) {
        if seen.insert(r.header("webhook-id")) {
            changes.extend(changes_of(r));
        }
    }
    changes
}
