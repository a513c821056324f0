//! The HTTP client that delivers webhooks, and only to checked addresses.
//!
//! Why a dedicated client: a webhook URL points wherever a tenant's
//! administrator chose, and `ssrf.rs` decides which addresses that may be.
//! This module makes the decision hold on the wire:
//!
//! - every delivery re-runs `check_url` (scheme, userinfo, IP literals: a
//!   literal never reaches a resolver, so that is its only check);
//! - names are resolved by `CheckedResolver`, which drops every refused
//!   address before reqwest sees the list, so a connection only ever goes
//!   to a checked address, and a name that starts resolving to a private
//!   address (DNS rebinding) fails at the next connection. reqwest's
//!   per-name overrides (`ClientBuilder::resolve`) would bypass it and are
//!   not used. A pooled connection was checked when it was opened;
//! - redirects are not followed (a 3xx is the receiver's answer: following
//!   it would reach an unchecked URL) and no proxy is used (a proxy would
//!   resolve the name itself);
//! - the response body is read only up to `response_bytes_max`, and the
//!   whole exchange is bounded by `timeout_ms`.
//!
//! TLS is rustls with the ring provider passed explicitly (no process-wide
//! default is installed) and the platform verifier, so certificates are
//! checked against the system's roots, which an operator can extend for an
//! on-premises receiver behind a private CA.
//!
//! `DeliveryClient::post` never fails: every way a delivery can go is an
//! `AttemptOutcome` with a reason a person can read.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::redirect::Policy;

use super::ssrf::{address_refusal, check_url, refusal_sentence};

/// The longest wait a `Retry-After` header may ask for: one day.
const RETRY_AFTER_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// How many refused addresses a resolver refusal lists by name.
const REFUSED_LISTED_MAX: usize = 4;

/// A boxed, sendable future, as [`Lookup`] returns.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Limits and reachable networks for webhook deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientConfig {
    /// Bound on establishing the TCP (and TLS) connection.
    pub connect_timeout_ms: u64,
    /// Bound on the whole exchange, response body included.
    pub timeout_ms: u64,
    /// Bytes of the response body kept; the rest is not read.
    pub response_bytes_max: usize,
    /// Networks reachable despite the refusal rules (`[delivery]
    /// allow_networks`): empty by default, `127.0.0.0/8` in tests.
    pub allow_networks: Vec<IpNet>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout_ms: 5_000,
            timeout_ms: 15_000,
            response_bytes_max: 4096,
            allow_networks: Vec::new(),
        }
    }
}

/// Name resolution, behind a trait so tests can make a name resolve to
/// whatever they need, and change it while a client is running.
pub(crate) trait Lookup: Send + Sync + 'static {
    /// The addresses of `host`; a `port` of 0 lets the client use the
    /// URL's port or the scheme's default.
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo`, through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.collect())
        })
    }
}

/// A fixed table of names, changeable at runtime and shared by its clones
/// (tests: keep a clone, hand one to the client, and make a name resolve
/// to a private address later). Public for the gateway's integration
/// tests (`AppState::with_lookup`).
#[derive(Debug, Clone, Default)]
pub struct StaticLookup {
    names: Arc<RwLock<HashMap<String, Vec<IpAddr>>>>,
}

impl StaticLookup {
    pub fn new() -> StaticLookup {
        StaticLookup::default()
    }

    /// Makes `host` resolve to `addrs` from now on (an empty list: to no
    /// address).
    pub fn set(&self, host: &str, addrs: Vec<IpAddr>) {
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        names.insert(host.to_ascii_lowercase(), addrs);
    }

    /// Makes `host` unknown again.
    pub fn remove(&self, host: &str) {
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        names.remove(&host.to_ascii_lowercase());
    }
}

impl Lookup for StaticLookup {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        let found = names.get(&host.to_ascii_lowercase()).map(|addrs| {
            addrs
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect::<Vec<_>>()
        });
        let result = found.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} is not a known name"),
            )
        });
        Box::pin(std::future::ready(result))
    }
}

/// Why the resolver gave reqwest no address for a name.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("cannot resolve {host}: {source}")]
    Lookup { host: String, source: io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    /// Every address was refused: the one error that is a `Refused`
    /// outcome rather than a failed connection.
    #[error(
        "{host} resolves only to refused addresses: {}; add their networks to \
         [delivery] allow_networks to allow them",
        list_refused(.refused)
    )]
    Refused {
        host: String,
        refused: Vec<(IpAddr, &'static str)>,
    },
}

fn list_refused(refused: &[(IpAddr, &'static str)]) -> String {
    let mut listed: Vec<String> = refused
        .iter()
        .take(REFUSED_LISTED_MAX)
        .map(|(ip, reason)| refusal_sentence(*ip, reason))
        .collect();
    if refused.len() > REFUSED_LISTED_MAX {
        listed.push(format!("and {} more", refused.len() - REFUSED_LISTED_MAX));
    }
    listed.join(", ")
}

/// The addresses of `host` a delivery may connect to: the refused ones
/// dropped, an error naming them all when none is left.
fn checked_addrs(
    host: &str,
    addrs: Vec<SocketAddr>,
    allow: &[IpNet],
) -> Result<Vec<SocketAddr>, ResolveError> {
    if addrs.is_empty() {
        return Err(ResolveError::NoAddress {
            host: host.to_owned(),
        });
    }
    let mut kept = Vec::with_capacity(addrs.len());
    let mut refused = Vec::new();
    for addr in addrs {
        match address_refusal(addr.ip(), allow) {
            None => kept.push(addr),
            Some(reason) => refused.push((addr.ip(), reason)),
        }
    }
    if kept.is_empty() {
        return Err(ResolveError::Refused {
            host: host.to_owned(),
            refused,
        });
    }
    if !refused.is_empty() {
        tracing::debug!(host, refused = %list_refused(&refused), "dropped refused addresses");
    }
    Ok(kept)
}

/// Resolve `host` with `lookup` and keep only the addresses a delivery may
/// reach: what the client's resolver does, for a registration's check.
pub(crate) async fn resolve_checked(
    lookup: &dyn Lookup,
    host: &str,
    port: u16,
    allow: &[IpNet],
) -> Result<Vec<SocketAddr>, String> {
    let addrs = lookup
        .lookup(host, port)
        .await
        .map_err(|source| ResolveError::Lookup {
            host: host.to_owned(),
            source,
        })
        .map_err(|e| e.to_string())?;
    checked_addrs(host, addrs, allow).map_err(|e| e.to_string())
}

/// reqwest's resolver for deliveries: a [`Lookup`], then [`checked_addrs`].
struct CheckedResolver {
    lookup: Arc<dyn Lookup>,
    allow: Arc<[IpNet]>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let lookup = self.lookup.lookup(&host, 0);
        let allow = Arc::clone(&self.allow);
        Box::pin(async move {
            let addrs = lookup.await.map_err(|source| ResolveError::Lookup {
                host: host.clone(),
                source,
            })?;
            let kept = checked_addrs(&host, addrs, &allow)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// Why a delivery client could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error(
        "cannot set up TLS for webhook deliveries (are the system's CA \
         certificates installed?): {0}"
    )]
    Tls(#[from] rustls::Error),
    #[error("cannot build the webhook HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// One delivery attempt: what happened and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub outcome: AttemptOutcome,
    pub duration_ms: u64,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    /// The receiver answered, whatever the status (3xx included: redirects
    /// are not followed).
    Answered {
        status: u16,
        /// `Retry-After` (seconds or HTTP-date), capped at one day.
        retry_after_ms: Option<u64>,
        /// At most `response_bytes_max` bytes of the body.
        body_prefix: Vec<u8>,
    },
    /// The URL or every address it resolves to is refused; no connection
    /// was attempted.
    Refused { reason: String },
    /// `timeout_ms` (or `connect_timeout_ms`) passed.
    Timeout,
    /// No connection: refused, unreachable, name not resolved, TLS failed.
    ConnectFailed { reason: String },
    /// Anything else (the connection broke mid-request, ...).
    Failed { reason: String },
}

/// The SSRF-safe HTTP client deliveries go through.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryClient {
    http: reqwest::Client,
    allow: Arc<[IpNet]>,
    response_bytes_max: usize,
}

/// rustls with ring and the platform verifier, offering HTTP/2 and 1.1.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous() // Not dangerous: the platform's own verification.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl DeliveryClient {
    pub(crate) fn new(
        config: ClientConfig,
        lookup: Arc<dyn Lookup>,
    ) -> Result<DeliveryClient, ClientError> {
        let allow: Arc<[IpNet]> = config.allow_networks.into();
        let resolver = CheckedResolver {
            lookup,
            allow: Arc::clone(&allow),
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .dns_resolver(Arc::new(resolver))
            .redirect(Policy::none())
            .no_proxy()
            // No pooled connections: every delivery resolves the name
            // again through the checking resolver, so a name that moves
            // to a refused address fails at the next delivery.
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()?;
        Ok(DeliveryClient {
            http,
            allow,
            response_bytes_max: config.response_bytes_max,
        })
    }

    /// POSTs `body` to `url` once. Never fails: see [`AttemptOutcome`].
    pub(crate) async fn post(&self, url: &str, headers: HeaderMap, body: Bytes) -> Attempt {
        let started = Instant::now();
        let outcome = self.deliver(url, headers, body).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Attempt {
            outcome,
            duration_ms,
        }
    }

    async fn deliver(&self, url: &str, headers: HeaderMap, body: Bytes) -> AttemptOutcome {
        let url = match check_url(url, &self.allow) {
            Ok(url) => url,
            Err(refusal) => {
                return AttemptOutcome::Refused {
                    reason: refusal.to_string(),
                }
            }
        };
        let sent = self.http.post(url).headers(headers).body(body).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return outcome_of_error(err),
        };
        let status = response.status().as_u16();
        let retry_after_ms = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry_after_ms(value, SystemTime::now()));
        let body_prefix = read_prefix(response, self.response_bytes_max).await;
        AttemptOutcome::Answered {
            status,
            retry_after_ms,
            body_prefix,
        }
    }
}

/// The first `bytes_max` bytes of the body, read chunk by chunk; the rest
/// is dropped unread with the response. A body that breaks off is only
/// logged: the status is the receiver's answer.
async fn read_prefix(mut response: reqwest::Response, bytes_max: usize) -> Vec<u8> {
    let mut prefix = Vec::new();
    while prefix.len() < bytes_max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = bytes_max - prefix.len();
                prefix.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(error = %error_chain(&err), "response body broke off");
                break;
            }
        }
    }
    prefix
}

/// `Retry-After` as milliseconds from `now`: delay-seconds or an HTTP-date
/// (a date in the past is 0), capped at [`RETRY_AFTER_MS_MAX`].
fn retry_after_ms(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1000).min(RETRY_AFTER_MS_MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    Some(wait_ms.min(RETRY_AFTER_MS_MAX))
}

/// A reqwest error as an outcome: our resolver's refusal first (it is a
/// connect error to reqwest), then timeouts, then connection failures.
fn outcome_of_error(err: reqwest::Error) -> AttemptOutcome {
    let err = err.without_url();
    let mut source: Option<&(dyn StdError + 'static)> = Some(&err);
    while let Some(current) = source {
        if let Some(refused @ ResolveError::Refused { .. }) = current.downcast_ref() {
            return AttemptOutcome::Refused {
                reason: refused.to_string(),
            };
        }
        source = current.source();
    }
    if err.is_timeout() {
        return AttemptOutcome::Timeout;
    }
    let reason = error_chain(&err);
    if err.is_connect() {
        AttemptOutcome::ConnectFailed { reason }
    } else {
        AttemptOutcome::Failed { reason }
    }
}

/// An error and its sources, joined with ": ", skipping a source whose
/// text the previous message already contains.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(current) = source {
        let message = current.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// What a test server sends once it has read a request.
    #[derive(Clone)]
    struct Reply {
        head: String,
        body: Vec<u8>,
        delay: Duration,
        /// Keep the connection open after `body` (a body that never ends).
        hang: bool,
    }

    fn reply(status_line: &str, headers: &str, body: &[u8]) -> Reply {
        let length = body.len();
        Reply {
            head: format!(
                "HTTP/1.1 {status_line}\r\n{headers}content-length: {length}\r\n\
                 connection: close\r\n\r\n"
            ),
            body: body.to_vec(),
            delay: Duration::ZERO,
            hang: false,
        }
    }

    /// A minimal HTTP/1.1 server on 127.0.0.1 that counts connections.
    struct TestServer {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
    }

    impl TestServer {
        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    async fn serve(reply: Reply) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(stream, reply.clone()));
            }
        });
        TestServer { addr, connections }
    }

    async fn answer(mut stream: TcpStream, reply: Reply) {
        read_request(&mut stream).await;
        tokio::time::sleep(reply.delay).await;
        let _ = stream.write_all(reply.head.as_bytes()).await;
        let _ = stream.write_all(&reply.body).await;
        if reply.hang {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        let _ = stream.shutdown().await;
    }

    /// Reads a request head and as much body as its content-length says.
    async fn read_request(stream: &mut TcpStream) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
            let Some(head_end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
            let body_len: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if request.len() >= head_end + 4 + body_len {
                return;
            }
        }
    }

    fn config(allow: &[&str]) -> ClientConfig {
        ClientConfig {
            connect_timeout_ms: 2_000,
            timeout_ms: 5_000,
            response_bytes_max: 4096,
            allow_networks: allow.iter().map(|net| net.parse().unwrap()).collect(),
        }
    }

    fn client(allow: &[&str]) -> DeliveryClient {
        DeliveryClient::new(config(allow), Arc::new(SystemLookup)).unwrap()
    }

    async fn post(client: &DeliveryClient, url: &str) -> AttemptOutcome {
        let body = Bytes::from_static(br#"{"event":"test"}"#);
        client.post(url, HeaderMap::new(), body).await.outcome
    }

    fn answered(status: u16) -> AttemptOutcome {
        AttemptOutcome::Answered {
            status,
            retry_after_ms: None,
            body_prefix: Vec::new(),
        }
    }

    fn refusal(outcome: &AttemptOutcome) -> &str {
        match outcome {
            AttemptOutcome::Refused { reason } => reason,
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    const LOOPBACK: &[&str] = &["127.0.0.0/8"];

    #[tokio::test]
    async fn loopback_needs_the_allow_list() {
        let server = serve(reply("204 No Content", "", b"")).await;
        let outcome = post(&client(&[]), &server.url("/hook")).await;
        let reason = refusal(&outcome);
        assert!(reason.contains("loopback"), "{reason}");
        assert!(reason.contains("allow_networks"), "{reason}");
        assert_eq!(server.connections(), 0);

        let outcome = post(&client(LOOPBACK), &server.url("/hook")).await;
        assert_eq!(outcome, answered(204));
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_and_is_not_followed() {
        let target = serve(reply("204 No Content", "", b"")).await;
        let location = format!("location: {}\r\n", target.url("/elsewhere"));
        let server = serve(reply("302 Found", &location, b"")).await;
        let outcome = post(&client(LOOPBACK), &server.url("/hook")).await;
        assert_eq!(outcome, answered(302));
        assert_eq!(target.connections(), 0);
    }

    #[tokio::test]
    async fn names_are_checked_at_every_connection() {
        let server = serve(reply("204 No Content", "", b"")).await;
        let lookup = StaticLookup::new();
        lookup.set("hooks.example", vec![[127, 0, 0, 1].into()]);
        let url = format!("http://hooks.example:{}/hook", server.addr.port());

        let strict = DeliveryClient::new(config(&[]), Arc::new(lookup.clone())).unwrap();
        let reason = refusal(&post(&strict, &url).await).to_owned();
        assert!(reason.contains("hooks.example"), "{reason}");
        assert!(
            reason.contains("127.0.0.1 is a loopback address"),
            "{reason}"
        );
        assert_eq!(server.connections(), 0);

        let allowing = DeliveryClient::new(config(LOOPBACK), Arc::new(lookup.clone())).unwrap();
        assert_eq!(post(&allowing, &url).await, answered(204));
        assert_eq!(server.connections(), 1);

        // The name now points into the private network (DNS rebinding).
        lookup.set("hooks.example", vec![[10, 0, 0, 1].into()]);
        let reason = refusal(&post(&allowing, &url).await).to_owned();
        assert!(
            reason.contains("10.0.0.1 is a private network address"),
            "{reason}"
        );

        // Refused addresses are dropped, the checked one is used.
        lookup.set(
            "hooks.example",
            vec![[10, 0, 0, 1].into(), [127, 0, 0, 1].into()],
        );
        assert_eq!(post(&allowing, &url).await, answered(204));
        assert_eq!(server.connections(), 2);
    }

    #[tokio::test]
    async fn the_system_resolver_is_checked_too() {
        let server = serve(reply("204 No Content", "", b"")).await;
        let url = format!("http://localhost:{}/hook", server.addr.port());
        let reason = refusal(&post(&client(&[]), &url).await).to_owned();
        assert!(reason.contains("localhost"), "{reason}");
        assert!(reason.contains("loopback"), "{reason}");
        assert_eq!(post(&client(LOOPBACK), &url).await, answered(204));
    }

    #[tokio::test]
    async fn a_refused_url_never_connects() {
        let outcome = post(&client(LOOPBACK), "ftp://127.0.0.1/hook").await;
        assert!(refusal(&outcome).contains("\"ftp\""), "{outcome:?}");
        let outcome = post(&client(LOOPBACK), "http://u:p@127.0.0.1/").await;
        assert!(
            refusal(&outcome).contains("user name or password"),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let mut slow = reply("204 No Content", "", b"");
        slow.delay = Duration::from_secs(3);
        let server = serve(slow).await;
        let mut config = config(LOOPBACK);
        config.timeout_ms = 300;
        let client = DeliveryClient::new(config, Arc::new(SystemLookup)).unwrap();
        let attempt = client
            .post(&server.url("/"), HeaderMap::new(), Bytes::new())
            .await;
        assert_eq!(attempt.outcome, AttemptOutcome::Timeout);
        assert!(attempt.duration_ms < 3_000, "{}", attempt.duration_ms);
    }

    #[tokio::test]
    async fn connection_failures_say_why() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let outcome = post(&client(LOOPBACK), &format!("http://{closed}/")).await;
        assert!(
            matches!(&outcome, AttemptOutcome::ConnectFailed { reason } if !reason.is_empty()),
            "{outcome:?}"
        );

        let lookup = StaticLookup::new();
        let unknown = DeliveryClient::new(config(&[]), Arc::new(lookup.clone())).unwrap();
        let outcome = post(&unknown, "http://hooks.unknown/").await;
        assert!(
            matches!(&outcome, AttemptOutcome::ConnectFailed { reason }
                if reason.contains("hooks.unknown")),
            "{outcome:?}"
        );
        lookup.set("hooks.unknown", Vec::new());
        let outcome = post(&unknown, "http://hooks.unknown/").await;
        assert!(
            matches!(&outcome, AttemptOutcome::ConnectFailed { reason }
                if reason.contains("hooks.unknown resolves to no address")),
            "{outcome:?}"
        );

        // TLS to a server that answers the handshake in plain HTTP.
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = format!("https://{}/", plain.local_addr().unwrap());
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = plain.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                let _ = stream.shutdown().await;
            }
        });
        let outcome = post(&client(LOOPBACK), &https).await;
        assert!(
            matches!(&outcome, AttemptOutcome::ConnectFailed { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn retry_after_is_read_from_the_answer() {
        let server = serve(reply(
            "429 Too Many Requests",
            "retry-after: 7\r\n",
            b"slow down",
        ))
        .await;
        let outcome = post(&client(LOOPBACK), &server.url("/")).await;
        assert_eq!(
            outcome,
            AttemptOutcome::Answered {
                status: 429,
                retry_after_ms: Some(7000),
                body_prefix: b"slow down".to_vec(),
            }
        );
    }

    #[tokio::test]
    async fn a_large_body_is_cut_without_reading_it_all() {
        // Claims 10 MB, sends 64 KiB, then never finishes.
        let mut large = reply("200 OK", "", &vec![b'x'; 64 * 1024]);
        large.head = large.head.replace("65536", "10000000");
        large.hang = true;
        let server = serve(large).await;
        let mut config = config(LOOPBACK);
        config.timeout_ms = 10_000;
        let client = DeliveryClient::new(config, Arc::new(SystemLookup)).unwrap();
        let attempt = client
            .post(&server.url("/"), HeaderMap::new(), Bytes::new())
            .await;
        let AttemptOutcome::Answered {
            status,
            body_prefix,
            ..
        } = attempt.outcome
        else {
            panic!("expected Answered, got {:?}", attempt.outcome);
        };
        assert_eq!(status, 200);
        assert_eq!(body_prefix, vec![b'x'; 4096]);
        assert!(attempt.duration_ms < 5_000, "{}", attempt.duration_ms);
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let in_30_s = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        let cases: &[(&str, Option<u64>)] = &[
            ("7", Some(7_000)),
            (" 120 ", Some(120_000)),
            ("0", Some(0)),
            ("86401", Some(RETRY_AFTER_MS_MAX)),
            ("99999999999999999999999", Some(RETRY_AFTER_MS_MAX)),
            (&in_30_s, Some(30_000)),
            (&past, Some(0)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(0)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(RETRY_AFTER_MS_MAX)),
            ("-1", None),
            ("1.5", None),
            ("", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            assert_eq!(retry_after_ms(value, now), *expected, "{value:?}");
        }
    }

    #[test]
    fn checked_addrs_keeps_only_reachable_addresses() {
        let addr = |text: &str| -> SocketAddr { text.parse().unwrap() };
        let mixed = vec![addr("10.0.0.1:0"), addr("93.184.216.34:0"), addr("[::1]:0")];
        let kept = checked_addrs("hooks.example", mixed, &[]).unwrap();
        assert_eq!(kept, vec![addr("93.184.216.34:0")]);

        let private: Vec<SocketAddr> = (1..=6).map(|i| addr(&format!("10.0.0.{i}:0"))).collect();
        let err = checked_addrs("hooks.example", private, &[]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("hooks.example resolves only to refused"),
            "{message}"
        );
        assert!(message.contains("and 2 more"), "{message}");

        let err = checked_addrs("hooks.example", Vec::new(), &[]).unwrap_err();
        assert_eq!(err.to_string(), "hooks.example resolves to no address");
    }
}
