//! Which destination addresses an outbound webhook may reach.
//!
//! Why: a webhook URL is typed by a tenant's administrator, but the request
//! leaves from inside our network. Unchecked, `http://169.254.169.254/` or
//! `http://10.0.0.5:8500/` would turn the gateway into a proxy into the
//! cloud's metadata service or the private network (SSRF). So the rule is
//! about *addresses*, and it is applied where the address is known:
//!
//! - an IP literal in the URL never reaches a resolver, so [`check_url`] is
//!   the only check it gets;
//! - a name is checked after resolution, by the delivery client's resolver,
//!   on every new connection, so a name that later resolves to a private
//!   address (DNS rebinding) is refused at connect time, not just when the
//!   webhook was saved.
//!
//! An IPv6 address that carries an IPv4 address (IPv4-mapped, -compatible,
//! -translated, NAT64, 6to4, Teredo) is judged by the IPv4 address it
//! carries: `::ffff:127.0.0.1` is loopback under another spelling, and
//! 6to4 or Teredo tunnels deliver to the embedded address.
//!
//! The allow-list (`[delivery] allow_networks`, empty by default) is checked
//! first, against the address and against the IPv4 address it embeds: an
//! operator who lists a network (tests list `127.0.0.0/8`; an on-premises
//! ERP may live in `10.0.0.0/8`) means it to be reachable.
//!
//! Pure functions, no IO.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An IPv4 network and why addresses in it are refused.
struct Refused4 {
    network: Ipv4Addr,
    prefix_len: u32,
    reason: &'static str,
}

const fn refused4(octets: [u8; 4], prefix_len: u32, reason: &'static str) -> Refused4 {
    let [a, b, c, d] = octets;
    Refused4 {
        network: Ipv4Addr::new(a, b, c, d),
        prefix_len,
        reason,
    }
}

/// Refused IPv4 networks; the first match gives the reason, so the more
/// specific entries come first.
const IPV4_REFUSED: [Refused4; 21] = [
    // Metadata services: AWS, GCP, Azure IMDS; Azure WireServer;
    // Alibaba Cloud (inside CGNAT space); Oracle Cloud (inside 192.0.0/24).
    refused4([169, 254, 169, 254], 32, "cloud metadata endpoint"),
    refused4([168, 63, 129, 16], 32, "cloud metadata endpoint"),
    refused4([100, 100, 100, 200], 32, "cloud metadata endpoint"),
    refused4([192, 0, 0, 192], 32, "cloud metadata endpoint"),
    refused4([255, 255, 255, 255], 32, "broadcast"),
    // Linux connects 0.0.0.0 to the local host.
    refused4([0, 0, 0, 0], 32, "unspecified"),
    refused4([0, 0, 0, 0], 8, "reserved"),
    refused4([10, 0, 0, 0], 8, "private network"),
    refused4([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
    refused4([127, 0, 0, 0], 8, "loopback"),
    refused4([169, 254, 0, 0], 16, "link-local"),
    refused4([172, 16, 0, 0], 12, "private network"),
    refused4([192, 0, 0, 0], 24, "reserved"),
    refused4([192, 0, 2, 0], 24, "documentation range"),
    refused4([192, 88, 99, 0], 24, "reserved"),
    refused4([192, 168, 0, 0], 16, "private network"),
    refused4([198, 18, 0, 0], 15, "benchmarking range"),
    refused4([198, 51, 100, 0], 24, "documentation range"),
    refused4([203, 0, 113, 0], 24, "documentation range"),
    refused4([224, 0, 0, 0], 4, "multicast"),
    refused4([240, 0, 0, 0], 4, "reserved"),
];

/// The AWS metadata service over IPv6 (Nitro instances).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Why `ip` may not be a webhook destination, or `None` if it may.
///
/// A network in `allow` admits the addresses it contains and the IPv6
/// addresses that embed one of them; it is checked before any refusal.
pub(crate) fn address_refusal(ip: IpAddr, allow: &[IpNet]) -> Option<&'static str> {
    if is_allowed(ip, allow) {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => ipv4_refusal(v4),
        IpAddr::V6(v6) => ipv6_refusal(v6),
    }
}

/// Why `ip` was refused, as a sentence: "127.0.0.1 is a loopback address",
/// with the embedded IPv4 address named when it decided.
pub(crate) fn refusal_sentence(ip: IpAddr, reason: &str) -> String {
    let article = indefinite_article(reason);
    match ip {
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => {
                format!("{ip} is {article} {reason} address (it embeds the IPv4 address {v4})")
            }
            None => format!("{ip} is {article} {reason} address"),
        },
        IpAddr::V4(_) => format!("{ip} is {article} {reason} address"),
    }
}

fn indefinite_article(word: &str) -> &'static str {
    let vowel = word.starts_with(['a', 'e', 'i', 'o']);
    let un = word.starts_with("un") && !word.starts_with("uni");
    if vowel || un {
        "an"
    } else {
        "a"
    }
}

fn is_allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    let embedded = match ip {
        IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    allow
        .iter()
        .any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)))
}

fn in_ipv4_network(ip: Ipv4Addr, network: Ipv4Addr, prefix_len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix_len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn ipv4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    IPV4_REFUSED
        .iter()
        .find(|range| in_ipv4_network(ip, range.network, range.prefix_len))
        .map(|range| range.reason)
}

fn in_ipv6_network(ip: Ipv6Addr, network: Ipv6Addr, prefix_len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix_len).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

fn v6(segments: [u16; 8]) -> Ipv6Addr {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Addr::new(a, b, c, d, e, f, g, h)
}

/// The IPv4 address an IPv6 address delivers to, for the forms that embed
/// one: IPv4-mapped `::ffff:0:0/96`, IPv4-translated `::ffff:0:0:0/96`,
/// IPv4-compatible `::/96` (but `::` and `::1`), NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16` (bits 16..48) and Teredo `2001::/32` (the client's
/// address, stored inverted in the last 32 bits).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    let [a, b, ..] = ip.segments();
    if in_ipv6_network(ip, v6([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96)
        || in_ipv6_network(ip, v6([0, 0, 0, 0, 0xffff, 0, 0, 0]), 96)
        || in_ipv6_network(ip, v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96)
    {
        return Some(low32);
    }
    if in_ipv6_network(ip, Ipv6Addr::UNSPECIFIED, 96) && bits > 1 {
        return Some(low32);
    }
    if a == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    if a == 0x2001 && b == 0 {
        return Some(Ipv4Addr::from(!(bits as u32)));
    }
    None
}

/// IPv6 networks refused outright (checked after the embedded forms, so
/// Teredo, inside 2001::/23, is judged by its client's address).
const IPV6_REFUSED: [([u16; 8], u32, &str); 7] = [
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (IPv6)"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation range"),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation range"),
    ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking range"),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "reserved"),
];

/// Global unicast: what lies outside it and is not named above
/// (discard-only 100::/64, local-use NAT64 64:ff9b:1::/48, site-local
/// fec0::/10, ...) is not a public destination.
const GLOBAL_UNICAST: ([u16; 8], u32) = ([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

fn ipv6_refusal(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip == AWS_METADATA_V6 {
        return Some("cloud metadata endpoint");
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return ipv4_refusal(v4);
    }
    let named = IPV6_REFUSED
        .iter()
        .find(|(network, prefix_len, _)| in_ipv6_network(ip, v6(*network), *prefix_len))
        .map(|(_, _, reason)| *reason);
    if named.is_some() {
        return named;
    }
    let (network, prefix_len) = GLOBAL_UNICAST;
    if !in_ipv6_network(ip, v6(network), prefix_len) {
        return Some("reserved");
    }
    None
}

/// Why a webhook URL is refused before any connection is attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlRefusal {
    #[error("the webhook URL is not a valid URL: {reason}")]
    Invalid { reason: String },
    #[error("the webhook URL uses the scheme {scheme:?}; only http and https are allowed")]
    Scheme { scheme: String },
    #[error("the webhook URL has no host")]
    NoHost,
    #[error(
        "the webhook URL for {host} carries a user name or password; \
         send credentials in headers, not in the URL"
    )]
    Userinfo { host: String },
    #[error(
        "{}; add its network to [delivery] allow_networks to allow it",
        refusal_sentence(*.ip, .reason)
    )]
    Address { ip: IpAddr, reason: &'static str },
}

/// Parses a webhook URL and checks what can be checked without a resolver:
/// the scheme is http or https, there is a host and no user information,
/// and an IP-literal host passes [`address_refusal`].
///
/// Called when a webhook is saved and again at every delivery, since the
/// allow-list may have changed in between.
pub(crate) fn check_url(url: &str, allow: &[IpNet]) -> Result<reqwest::Url, UrlRefusal> {
    let parsed = reqwest::Url::parse(url).map_err(|err| UrlRefusal::Invalid {
        reason: err.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlRefusal::Scheme {
            scheme: parsed.scheme().to_owned(),
        });
    }
    let host = parsed.host_str().ok_or(UrlRefusal::NoHost)?;
    if host.is_empty() {
        return Err(UrlRefusal::NoHost);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefusal::Userinfo {
            host: host.to_owned(),
        });
    }
    if let Some(ip) = ip_literal(host) {
        if let Some(reason) = address_refusal(ip, allow) {
            return Err(UrlRefusal::Address { ip, reason });
        }
    }
    Ok(parsed)
}

/// The address of an IP-literal host as the URL parser serialises it
/// (IPv4 dotted, even when written `127.1` or `0x7f000001`; IPv6 bracketed).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `check_url` says, in a form a table can spell: "ok", the
    /// address refusal's reason, or the kind of URL refusal.
    fn verdict(url: &str, allow: &[&str]) -> String {
        let allow: Vec<IpNet> = allow.iter().map(|net| net.parse().unwrap()).collect();
        match check_url(url, &allow) {
            Ok(_) => "ok".to_owned(),
            Err(UrlRefusal::Address { reason, .. }) => reason.to_owned(),
            Err(UrlRefusal::Invalid { .. }) => "invalid".to_owned(),
            Err(UrlRefusal::Scheme { .. }) => "scheme".to_owned(),
            Err(UrlRefusal::NoHost) => "no host".to_owned(),
            Err(UrlRefusal::Userinfo { .. }) => "userinfo".to_owned(),
        }
    }

    const LOOPBACK_ALLOWED: &[&str] = &["127.0.0.0/8"];

    #[rustfmt::skip]
    const TABLE: &[(&str, &[&str], &str)] = &[
        // IPv4 literals.
        ("http://127.0.0.1/", &[], "loopback"),
        ("http://127.255.255.254:8080/x", &[], "loopback"),
        ("http://127.1/", &[], "loopback"),
        ("http://0x7f000001/", &[], "loopback"),
        ("http://2130706433/", &[], "loopback"),
        ("http://169.254.169.254/latest/meta-data/", &[], "cloud metadata endpoint"),
        ("http://169.254.1.1/", &[], "link-local"),
        ("http://10.0.0.1/", &[], "private network"),
        ("http://172.16.0.1/", &[], "private network"),
        ("http://172.31.255.255/", &[], "private network"),
        ("http://172.15.255.255/", &[], "ok"),
        ("http://172.32.0.0/", &[], "ok"),
        ("http://192.168.1.1/", &[], "private network"),
        ("http://100.64.0.1/", &[], "shared address space (CGNAT)"),
        ("http://100.127.255.255/", &[], "shared address space (CGNAT)"),
        ("http://100.128.0.0/", &[], "ok"),
        ("http://0.0.0.0/", &[], "unspecified"),
        ("http://0.1.2.3/", &[], "reserved"),
        ("http://192.0.0.8/", &[], "reserved"),
        ("http://192.0.2.1/", &[], "documentation range"),
        ("http://198.18.0.1/", &[], "benchmarking range"),
        ("http://198.19.255.255/", &[], "benchmarking range"),
        ("http://198.20.0.0/", &[], "ok"),
        ("http://198.51.100.7/", &[], "documentation range"),
        ("http://203.0.113.5/", &[], "documentation range"),
        ("http://224.0.0.1/", &[], "multicast"),
        ("http://239.255.255.250/", &[], "multicast"),
        ("http://240.0.0.1/", &[], "reserved"),
        ("http://255.255.255.255/", &[], "broadcast"),
        ("http://93.184.216.34/", &[], "ok"),
        ("https://1.1.1.1/dns-query", &[], "ok"),
        // IPv6 literals.
        ("http://[::]/", &[], "unspecified"),
        ("http://[::1]/", &[], "loopback"),
        ("http://[::ffff:127.0.0.1]/", &[], "loopback"),
        ("http://[::ffff:7f00:1]/", &[], "loopback"),
        ("http://[::ffff:169.254.169.254]/", &[], "cloud metadata endpoint"),
        ("http://[::ffff:10.0.0.1]/", &[], "private network"),
        ("http://[::ffff:0:7f00:1]/", &[], "loopback"),
        ("http://[::7f00:1]/", &[], "loopback"),
        ("http://[::a00:1]/", &[], "private network"),
        ("http://[64:ff9b::7f00:1]/", &[], "loopback"),
        ("http://[64:ff9b::a9fe:a9fe]/", &[], "cloud metadata endpoint"),
        ("http://[64:ff9b::5db8:d822]/", &[], "ok"),
        ("http://[2002:7f00:1::]/", &[], "loopback"),
        ("http://[2002:c0a8:101::1]/", &[], "private network"),
        ("http://[2002:5db8:d822::1]/", &[], "ok"),
        // Teredo: client 127.0.0.1 stored inverted as 80ff:fffe.
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", &[], "loopback"),
        ("http://[2001:0:4136:e378:8000:63bf:a247:2bdd]/", &[], "ok"),
        ("http://[fd00:ec2::254]/", &[], "cloud metadata endpoint"),
        ("http://[fc00::1]/", &[], "unique local (IPv6)"),
        ("http://[fdff:ffff::1]/", &[], "unique local (IPv6)"),
        ("http://[fe80::1]/", &[], "link-local"),
        ("http://[ff02::1]/", &[], "multicast"),
        ("http://[2001:db8::1]/", &[], "documentation range"),
        ("http://[100::1]/", &[], "reserved"),
        ("http://[fec0::1]/", &[], "reserved"),
        ("http://[2606:4700:4700::1111]/", &[], "ok"),
        ("https://[2a00:1450:4001:80b::200e]:8443/", &[], "ok"),
        // The allow-list admits its network, in every spelling, and only it.
        ("http://127.0.0.1:8080/hook", LOOPBACK_ALLOWED, "ok"),
        ("http://[::ffff:127.0.0.1]/", LOOPBACK_ALLOWED, "ok"),
        ("http://[64:ff9b::7f00:1]/", LOOPBACK_ALLOWED, "ok"),
        ("http://10.0.0.1/", LOOPBACK_ALLOWED, "private network"),
        ("http://[::1]/", LOOPBACK_ALLOWED, "loopback"),
        ("http://[::1]/", &["::1/128"], "ok"),
        ("http://10.1.2.3/", &["10.0.0.0/8", "127.0.0.0/8"], "ok"),
        // Names are for the resolver to judge.
        ("https://hooks.example.com/fieldsync", &[], "ok"),
        ("http://localhost:3000/", &[], "ok"),
        // Not a webhook URL at all.
        ("ftp://example.com/hook", &[], "scheme"),
        ("file:///etc/passwd", &[], "scheme"),
        ("mailto:ops@example.com", &[], "scheme"),
        ("http://user:pass@example.com/", &[], "userinfo"),
        ("https://token@example.com/", &[], "userinfo"),
        ("http://:secret@93.184.216.34/", &[], "userinfo"),
        ("http://", &[], "invalid"),
        ("http:///", &[], "invalid"),
        ("example.com/hook", &[], "invalid"),
        ("", &[], "invalid"),
        ("http://[::1/", &[], "invalid"),
        ("http://256.0.0.1/", &[], "invalid"),
    ];

    #[test]
    fn check_url_table() {
        assert!(TABLE.len() >= 40);
        let mut wrong = Vec::new();
        for &(url, allow, expected) in TABLE {
            let got = verdict(url, allow);
            if got != expected {
                wrong.push(format!(
                    "{url} allow={allow:?}: expected {expected:?}, got {got:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn address_refusal_judges_every_embedding_by_its_ipv4_address() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        for spelling in [
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "::7f00:1",
        ] {
            let ip: IpAddr = spelling.parse().unwrap();
            assert_eq!(address_refusal(ip, &[]), Some("loopback"), "{spelling}");
        }
        assert_eq!(address_refusal(loopback, &[]), Some("loopback"));
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert_eq!(address_refusal(loopback, &allow), None);
    }

    #[test]
    fn messages_name_the_host_and_the_reason() {
        let err = check_url("http://127.0.0.1:9/", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "127.0.0.1 is a loopback address; add its network to [delivery] allow_networks \
             to allow it"
        );
        let err = check_url("http://[::ffff:127.0.0.1]/", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "::ffff:127.0.0.1 is a loopback address (it embeds the IPv4 address 127.0.0.1); \
             add its network to [delivery] allow_networks to allow it"
        );
        let err = check_url("http://0.0.0.0/", &[]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("0.0.0.0 is an unspecified address"));
        let err = check_url("https://alice:hunter2@hooks.example/", &[]).unwrap_err();
        assert!(err.to_string().contains("hooks.example"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = check_url("ftp://hooks.example/", &[]).unwrap_err();
        assert!(err.to_string().contains("\"ftp\""), "{err}");
    }
}
