//! Where a request came from and how, and the headers every response
//! carries.
//!
//! Why one middleware at the outside of the stack: the client's address
//! (for rate limits, failed-token budgets and `metrics_networks`) and
//! whether it used HTTPS (for `Secure` cookies, HSTS and the registry's
//! scheme) must be decided once, the same way for every route, before
//! anything reads them; and the security headers must be on every answer,
//! errors, rate limits and panics included.
//!
//! Why `X-Forwarded-For` is believed only from `trusted_proxies`: anyone
//! can send it. Behind a proxy, though, every request's TCP peer is the
//! proxy, and without the header all clients would share one rate limit
//! (and a proxy on loopback would make everyone a metrics network). So a
//! request whose TCP peer is a trusted proxy is judged by the header read
//! from the right: each trusted proxy appends the address it saw, so the
//! rightmost address that is not itself a trusted proxy is the client; the
//! ones left of it are whatever the client chose to send. From any other
//! peer both headers are ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Addresses of `X-Forwarded-For` looked at, from the right, at most: a
/// chain of trusted proxies is a handful; past this the request is judged
/// by the last address looked at.
const FORWARDED_HOPS_MAX: usize = 16;

/// `Strict-Transport-Security` when clients come over HTTPS: a year, this
/// host only (other hosts of the domain are not ours to pin).
const HSTS: &str = "max-age=31536000";

/// Every response's `Content-Security-Policy` unless the route set its own
/// (the UI's allows its inline style): nothing may load, nobody may frame.
const CSP_DEFAULT: &str = "default-src 'none'; frame-ancestors 'none'";

/// Who sent a request, as the gateway believes it; in every request's
/// extensions (`edge` puts it there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Client {
    /// The client's address: the TCP peer's, or behind a trusted proxy the
    /// one `X-Forwarded-For` names. `None` when served without connect
    /// info (`oneshot` tests).
    pub(crate) ip: Option<IpAddr>,
    /// The client reached us over HTTPS: TLS is served here, the public URL
    /// is https, or a trusted proxy said so in `X-Forwarded-Proto`.
    pub(crate) https: bool,
    /// The scheme the client used, as far as this request tells: TLS here,
    /// else a trusted proxy's `X-Forwarded-Proto`, else plain HTTP. (The
    /// registry's scheme when no public URL is configured.)
    pub(crate) scheme_https: bool,
}

/// The parsed trusted proxies.
pub(crate) struct Proxies {
    networks: Vec<ipnet::IpNet>,
}

impl Proxies {
    pub(crate) fn new(networks: Vec<ipnet::IpNet>) -> Proxies {
        Proxies { networks }
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted
    /// proxy; then the rightmost `X-Forwarded-For` address that is not a
    /// trusted proxy (or the leftmost, when all are). An entry that is not
    /// an address ends the walk at the hop that wrote it: what is left of
    /// it cannot be believed.
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = forwarded_for(headers);
        for hop in hops.iter().rev().take(FORWARDED_HOPS_MAX) {
            match hop {
                Some(address) => {
                    client = *address;
                    if !self.trusts(client) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }

    /// `X-Forwarded-Proto` from a trusted proxy: the value the proxy next
    /// to us set (the rightmost), `https` or not.
    fn forwarded_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if !self.trusts(peer) {
            return false;
        }
        headers
            .get_all(X_FORWARDED_PROTO)
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }
}

/// The addresses of every `X-Forwarded-For` line, left to right; `None`
/// for an entry that is not an address (`unknown`, an obfuscated name).
/// Entries may carry a port (`192.0.2.1:5000`, `[2001:db8::1]:5000`).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| {
            let text = value.to_str().unwrap_or("?");
            text.split(',').map(|entry| parse_hop(entry.trim()))
        })
        .collect()
}

fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Ok(address) = entry.parse::<SocketAddr>() {
        return Some(address.ip().to_canonical());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(|address| address.to_canonical())
}

/// Middleware: decide the [`Client`] of the request, then put the security
/// headers on its response.
pub(crate) async fn edge(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_canonical());
    let proxies = state.proxies();
    let tls = state.config().tls.is_some();
    let (ip, forwarded_https) = match peer {
        Some(peer) => (
            Some(proxies.client_ip(peer, request.headers())),
            proxies.forwarded_https(peer, request.headers()),
        ),
        None => (None, false),
    };
    let client = Client {
        ip,
        https: state.config().serves_https() || forwarded_https,
        scheme_https: tls || forwarded_https,
    };
    request.extensions_mut().insert(client);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP_DEFAULT));
    if client.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(client(&parts.extensions))
    }
}

/// The client of a request, as [`edge`] decided it; without the middleware
/// (never in the app), the TCP peer over plain HTTP.
pub(crate) fn client(extensions: &axum::http::Extensions) -> Client {
    extensions
        .get::<Client>()
        .copied()
        .unwrap_or_else(|| Client {
            ip: extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip().to_canonical()),
            https: false,
            scheme_https: false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(networks: &[&str]) -> Proxies {
        Proxies::new(networks.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted = proxies(&["10.0.0.0/8", "::1/128"]);
        let xff = |value: &str| headers(&[("x-forwarded-for", value)]);
        let cases = [
            // An untrusted peer: its own address, whatever it sends.
            ("192.0.2.9", "203.0.113.7", "192.0.2.9"),
            // A trusted proxy: the address it appended.
            ("10.0.0.5", "203.0.113.7", "203.0.113.7"),
            // The client's own (spoofed) entries left of it are ignored.
            ("10.0.0.5", "1.2.3.4, 203.0.113.7", "203.0.113.7"),
            // Trusted hops are skipped, from the right.
            ("10.0.0.5", "1.2.3.4, 203.0.113.7, 10.9.9.9", "203.0.113.7"),
            // Ports and brackets.
            ("10.0.0.5", "203.0.113.7:5100", "203.0.113.7"),
            ("10.0.0.5", "[2001:db8::7]:443", "2001:db8::7"),
            ("10.0.0.5", "[2001:db8::7]", "2001:db8::7"),
            // IPv4-mapped IPv6 peers are their IPv4 address.
            ("::ffff:10.0.0.5", "203.0.113.7", "203.0.113.7"),
            ("::1", "::ffff:203.0.113.7", "203.0.113.7"),
            // Nothing forwarded: the proxy is the client.
            ("10.0.0.5", "", "10.0.0.5"),
            // Garbage written by the trusted hop: stop at that hop.
            ("10.0.0.5", "203.0.113.7, unknown", "10.0.0.5"),
            ("10.0.0.5", "unknown, 10.1.1.1", "10.1.1.1"),
            // All trusted: the leftmost.
            ("10.0.0.5", "10.1.1.1, 10.2.2.2", "10.1.1.1"),
        ];
        for (peer, forwarded, expected) in cases {
            assert_eq!(
                trusted.client_ip(ip(peer), &xff(forwarded)),
                ip(expected),
                "{peer} forwarding {forwarded:?}"
            );
        }
        // Several header lines read as one list, in order.
        let lines = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.7, 10.1.1.1"),
        ]);
        assert_eq!(trusted.client_ip(ip("10.0.0.5"), &lines), ip("203.0.113.7"));
        // No trusted proxies: nobody's header counts.
        assert_eq!(
            proxies(&[]).client_ip(ip("10.0.0.5"), &xff("203.0.113.7")),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn a_long_trusted_chain_is_walked_only_so_far() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let mut hops = vec!["203.0.113.7".to_string()];
        hops.extend((0..40).map(|i| format!("10.0.0.{i}")));
        let forwarded = headers(&[("x-forwarded-for", &hops.join(", "))]);
        let client = trusted.client_ip(ip("10.0.0.5"), &forwarded);
        assert!(trusted.trusts(client), "stops inside the chain: {client}");
    }

    #[test]
    fn forwarded_proto_is_believed_from_trusted_proxies_only() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let proto = |value: &str| headers(&[("x-forwarded-proto", value)]);
        assert!(trusted.forwarded_https(ip("10.0.0.5"), &proto("https")));
        assert!(trusted.forwarded_https(ip("10.0.0.5"), &proto("HTTPS")));
        assert!(trusted.forwarded_https(ip("10.0.0.5"), &proto("http, https")));
        assert!(!trusted.forwarded_https(ip("10.0.0.5"), &proto("https, http")));
        assert!(!trusted.forwarded_https(ip("10.0.0.5"), &proto("http")));
        assert!(!trusted.forwarded_https(ip("10.0.0.5"), &HeaderMap::new()));
        assert!(!trusted.forwarded_https(ip("192.0.2.9"), &proto("https")));
    }
}
