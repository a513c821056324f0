//! Sync under faults, with real processes over QUIC on loopback: a stranger's
//! certificate, the central killed with SIGKILL in the middle of priming a
//! laptop, a peer sending malformed, oversized and out-of-order frames, and
//! an enrolled laptop sending a decompression bomb.

mod sync_support;

use std::net::SocketAddr;
use std::time::Duration;

use fieldsync_node::identity::Identity;
use fieldsync_node::quic::{self, tls, Credentials, LinkTiming};
use fieldsync_schemas::sync_frame::{Frame, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use sync_support::*;

#[test]
fn a_node_with_an_unknown_certificate_is_refused() {
    let (mut central, codes) = central_with(&["tech-1"]);
    create(&central, "wo-a", "tech-1");
    let central_id = central.node_id();
    central.start();
    // A laptop that never enrolled, configured by hand to dial the central.
    let mut stranger = Node::init("field", "stranger");
    let config = stranger.dir.join("fieldsync.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "peers = []",
        &format!(
            "peers = [{{ address = \"{}\", node_id = \"{central_id}\" }}]",
            central.address()
        ),
    );
    std::fs::write(&config, text).unwrap();
    stranger.start();
    wait_until("the stranger to be refused", || {
        stranger
            .peer(&central_id)
            .and_then(|p| p["last_error"].as_str().map(str::to_string))
            .is_some_and(|error| error.contains("not enrolled"))
    });
    assert!(central.log_text().contains("refused a certificate"));
    stranger.stop();
    assert!(
        stranger.show("wo-a").is_none(),
        "nothing reached the stranger"
    );
    // An enrolled laptop still syncs.
    let mut laptop = enrolled_laptop("laptop-1", &central, &codes[0]);
    laptop.start();
    wait_converged(&laptop, &central);
    laptop.stop();
    central.stop();
    assert!(laptop.show("wo-a").is_some());
}

#[test]
fn killing_the_central_mid_sync_loses_nothing_and_sync_resumes() {
    const DOCS: u64 = 4_000;
    let (mut central, codes) = central_with(&["tech-1"]);
    let file = central.dir.with_file_name("orders.jsonl");
    std::fs::write(&file, jsonl(DOCS as usize, "tech-1")).unwrap();
    central.run(&["import", file.to_str().unwrap()]).success();
    central.start();
    let central_id = central.node_id_from_status();
    let mut laptop = enrolled_laptop("laptop-1", &central, &codes[0]);
    laptop.start();
    wait_until("the laptop to start receiving", || {
        laptop
            .peer(&central_id)
            .is_some_and(|p| p["docs_received"].as_u64() > Some(0))
    });
    central.kill9();
    let at_kill = laptop.peer(&central_id).unwrap();
    let received_before = at_kill["docs_received"].as_u64().unwrap();
    assert!(
        received_before < DOCS,
        "the kill must land mid-sync: {at_kill:#}"
    );
    // The laptop notices and keeps redialling; the central comes back.
    wait_until("the laptop to notice", || {
        laptop
            .peer(&central_id)
            .is_some_and(|p| p["connected"] == false)
    });
    central.start();
    wait_converged(&laptop, &central);
    let resumed = laptop.peer(&central_id).unwrap();
    assert!(resumed["sessions"].as_u64() >= Some(2), "{resumed:#}");
    laptop.stop();
    central.stop();
    for node in [&central, &laptop] {
        node.verify_clean();
        let status = node.run(&["status", "--json"]).success().json();
        assert_eq!(status["documents"], DOCS, "{status:#}");
    }
    assert!(laptop.show("wo-03999").is_some());
}

/// An enrolled identity for a raw client (enrolled through the library,
/// as `fieldsync enroll` does).
async fn enrolled_identity(central: SocketAddr, central_id: &str, code: &str) -> Identity {
    let identity = Identity::generate("raw-client").unwrap();
    quic::enroll(
        central,
        central_id,
        identity.cert_der(),
        None,
        code,
        "raw",
        timing(),
    )
    .await
    .unwrap();
    identity
}

fn timing() -> LinkTiming {
    LinkTiming {
        keep_alive_ms: 1_000,
        idle_timeout_ms: 10_000,
    }
}

/// Open a sync stream as `identity`, send `bytes`, and return why the
/// central closed the connection.
async fn send_raw(
    central: SocketAddr,
    central_id: &str,
    identity: &Identity,
    bytes: &[u8],
) -> String {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let credentials = Credentials {
        cert: identity.cert_der().clone(),
        key: identity.key_der().unwrap(),
    };
    let client = tls::client_config(&credentials, central_id, timing()).unwrap();
    let connection = endpoint
        .connect_with(client, central, tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let mut sink = vec![0u8; 64 * 1024];
    while let Ok(Some(_)) = recv.read(&mut sink).await {}
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await;
    closed
        .expect("the central closes the connection")
        .to_string()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// A running central with tech-1's `wo-a` (and tech-2's `wo-b`), tech-1's
/// laptop in sync with it, tech-2's enrollment code for a raw client, and a
/// runtime to drive that client.
struct UnderAttack {
    central: Node,
    laptop: Node,
    central_id: String,
    address: SocketAddr,
    rogue_code: String,
    runtime: tokio::runtime::Runtime,
}

fn under_attack() -> UnderAttack {
    let (mut central, codes) = central_with(&["tech-1", "tech-2"]);
    create(&central, "wo-a", "tech-1");
    create(&central, "wo-b", "tech-2");
    central.start();
    let central_id = central.node_id_from_status();
    let address: SocketAddr = central.address().parse().unwrap();
    let mut laptop = enrolled_laptop("laptop-1", &central, &codes[0]);
    laptop.start();
    wait_converged(&laptop, &central);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    UnderAttack {
        central,
        laptop,
        central_id,
        address,
        rogue_code: codes[1].clone(),
        runtime,
    }
}

#[test]
fn bad_frames_close_only_that_connection() {
    let UnderAttack {
        mut central,
        mut laptop,
        central_id,
        address,
        rogue_code,
        runtime,
    } = under_attack();
    let reasons = runtime.block_on(async {
        let rogue = enrolled_identity(address, &central_id, &rogue_code).await;
        let mut reasons = Vec::new();
        for bytes in [
            framed(&[0xff, 0xfe, 0xfd, 0xfc]),
            (64u32 << 20).to_be_bytes().to_vec(),
            framed(
                &Frame::PageDone {
                    page: 0,
                    upto_seq: 7,
                }
                .encode(),
            ),
        ] {
            reasons.push(send_raw(address, &central_id, &rogue, &bytes).await);
        }
        reasons
    });
    assert!(reasons[0].contains("malformed frame"), "{reasons:?}");
    assert!(reasons[1].contains("limit"), "{reasons:?}");
    assert!(reasons[2].contains("page_done before hello"), "{reasons:?}");
    let log = central.log_text();
    for reason in ["malformed frame", "limit", "page_done before hello"] {
        assert!(
            log.lines()
                .any(|line| line.contains("closing the sync session") && line.contains(reason)),
            "the central logs `{reason}`:\n{log}"
        );
    }
    // The central kept serving: still running, the laptop's session intact,
    // and a new session works.
    still_serving(&mut central, &mut laptop, &central_id, "after the attack");
}

/// The central still runs, the laptop's session is intact, and a note the
/// laptop writes next reaches the central.
fn still_serving(central: &mut Node, laptop: &mut Node, central_id: &str, text: &str) {
    assert!(central.is_running());
    assert_eq!(laptop.peer(central_id).unwrap()["connected"], true);
    laptop.stop();
    laptop
        .run(&["wo", "note", "wo-a", "--text", text])
        .success();
    laptop.start();
    wait_converged(laptop, central);
    laptop.stop();
    central.stop();
    assert_eq!(central.show("wo-a").unwrap()["notes"][0]["text"], text);
}

/// An Automerge compressed change chunk (type 2) whose deflate body
/// inflates to `inflated_bytes` zeros: ~1000:1, and Automerge inflated it
/// with no cap before the intake check.
fn deflate_bomb(inflated_bytes: u64) -> Vec<u8> {
    use std::io::Read;
    let zeros = std::io::repeat(0).take(inflated_bytes);
    let mut body = Vec::new();
    flate2::read::DeflateEncoder::new(zeros, flate2::Compression::best())
        .read_to_end(&mut body)
        .unwrap();
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 2];
    let mut length = body.len() as u64;
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            chunk.push(byte);
            break;
        }
        chunk.push(byte | 0x80);
    }
    chunk.extend_from_slice(&body);
    chunk
}

#[test]
fn a_decompression_bomb_closes_the_session_and_the_central_stays_small() {
    let UnderAttack {
        mut central,
        mut laptop,
        central_id,
        address,
        rogue_code,
        runtime,
    } = under_attack();
    let rss_before_kib = central.peak_rss_kib().unwrap();
    // 1 GiB of zeros in ~1 MiB: one frame.
    let bomb = deflate_bomb(1 << 30);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let message = automerge::sync::Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: vec![bomb].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode();
    let reason = runtime.block_on(async {
        let rogue = enrolled_identity(address, &central_id, &rogue_code).await;
        let hello = Frame::Hello {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION,
            node_id: rogue.node_id().to_string(),
            epoch: [7; 16],
            your_checkpoint: None,
        };
        let doc_sync = Frame::DocSync {
            id: "wo-b".into(),
            message,
        };
        let bytes = [framed(&hello.encode()), framed(&doc_sync.encode())].concat();
        send_raw(address, &central_id, &rogue, &bytes).await
    });
    assert!(reason.contains("inflates past the limit"), "{reason}");
    let rss_after_kib = central.peak_rss_kib().unwrap();
    // Without the intake check the central's peak grew by over 2 GiB
    // (the inflated chunk, then a copy of it).
    assert!(
        rss_after_kib < rss_before_kib + 100 * 1024,
        "peak RSS grew from {rss_before_kib} KiB to {rss_after_kib} KiB"
    );
    // The other laptop keeps syncing.
    still_serving(&mut central, &mut laptop, &central_id, "after the bomb");
}
