//! Client address resolution in the normalize stage.
//!
//! Finds the client address behind trusted proxies for logs and rate-limit
//! keys, and builds the `X-Forwarded-For` value sent upstream.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderValue;
use ipnet::{IpNet, Ipv6Net};

/// Networks whose addresses are proxies that the gateway trusts to append
/// the address of their own peer to `X-Forwarded-For`.
///
/// An empty list trusts no proxy, so the client is always the TCP peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// Returns whether `ip` lies in a trusted network. An IPv4-mapped IPv6
    /// address is checked as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// One element of the combined `X-Forwarded-For` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Address(IpAddr),
    Unparsable,
}

/// Returns the client address for a request from `peer` carrying the
/// `X-Forwarded-For` field lines `xff_values`.
///
/// - If `peer` is not trusted, the result is `peer` and `X-Forwarded-For` is
///   ignored, because anyone can write it.
/// - Otherwise the field lines are joined in order into one comma-separated
///   list and walked from the right. Trusted addresses are skipped, and the
///   first untrusted address is the client.
/// - An unparsable element, or a field line that is not visible ASCII, stops
///   the walk. The result is then the last trusted address reached, which is
///   `peer` itself when the rightmost element is unparsable. Everything left
///   of that point was written by a sender the gateway cannot vouch for.
/// - If every element is trusted, the result is the leftmost one.
///
/// Empty list elements are skipped, as RFC 9110 section 5.6.1 requires.
/// Elements may be `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, or either form
/// with a port, which is dropped. IPv4-mapped IPv6 addresses are returned as
/// IPv4, here and in `peer`.
pub fn client_ip<'a>(
    peer: IpAddr,
    xff_values: impl Iterator<Item = &'a HeaderValue>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }

    let hops = parse_hops(xff_values);
    let mut nearest_trusted = peer;

    for hop in hops.iter().rev() {
        match *hop {
            Hop::Unparsable => return nearest_trusted,
            Hop::Address(address) if trusted.contains(address) => nearest_trusted = address,
            Hop::Address(address) => return address,
        }
    }
    nearest_trusted
}

/// Builds the `X-Forwarded-For` value to send upstream: the incoming chain if
/// `peer` is trusted, then `peer`.
///
/// The incoming chain of an untrusted peer is dropped, so a client that
/// connects directly cannot place addresses in the list. Kept elements are trimmed and
/// separated by `, `. Parsable ones are rewritten in canonical form (ports
/// dropped, IPv4-mapped IPv6 as IPv4), and unparsable ones are kept as they
/// came, so an upstream walking the list stops where the gateway stopped.
pub fn forwarded_for_value<'a>(
    peer: IpAddr,
    incoming_xff: impl Iterator<Item = &'a HeaderValue>,
    trusted: &TrustedProxies,
) -> HeaderValue {
    let peer = peer.to_canonical();
    let mut elements: Vec<Vec<u8>> = Vec::new();

    if trusted.contains(peer) {
        for value in incoming_xff {
            push_elements(value, &mut elements);
        }
    }
    elements.push(peer.to_string().into_bytes());

    let joined = elements.join(&b", "[..]);

    // Every element came from a valid `HeaderValue`, trimmed, or from an
    // address, so the joined bytes are a valid value too. The fallback only
    // guards that reasoning.
    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| peer_value(peer))
}

fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::try_from(peer.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Appends the elements of one field line, canonicalizing addresses.
fn push_elements(value: &HeaderValue, elements: &mut Vec<Vec<u8>>) {
    let Ok(line) = value.to_str() else {
        elements.push(value.as_bytes().trim_ascii().to_vec());
        return;
    };

    for element in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let canonical = match parse_address(element) {
            Some(address) => address.to_string(),
            None => element.to_owned(),
        };
        elements.push(canonical.into_bytes());
    }
}

/// Splits all field lines into one list of hops, in order.
fn parse_hops<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<Hop> {
    let mut hops = Vec::new();

    for value in values {
        let Ok(line) = value.to_str() else {
            hops.push(Hop::Unparsable);
            continue;
        };

        for element in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let hop = parse_address(element).map_or(Hop::Unparsable, Hop::Address);
            hops.push(hop);
        }
    }
    hops
}

/// Parses `ip`, `[ipv6]`, `ipv4:port` or `[ipv6]:port` into a canonical address.
fn parse_address(element: &str) -> Option<IpAddr> {
    let address = element
        .parse::<IpAddr>()
        .ok()
        .or_else(|| element.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| parse_bracketed_ipv6(element))?;

    Some(address.to_canonical())
}

fn parse_bracketed_ipv6(element: &str) -> Option<IpAddr> {
    let inner = element.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Masks an IPv6 address to its first `prefix_len` bits, so that one client
/// holding a whole prefix (commonly a /64) shares one rate-limit key.
///
/// IPv4 addresses, and IPv4-mapped IPv6 addresses after conversion to IPv4,
/// are returned unchanged. A `prefix_len` above 128 is treated as 128.
pub fn group_ipv6(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let network = Ipv6Net::new(v6, prefix_len.min(128)).map_or(v6, |net| net.network());
            IpAddr::V6(network)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(networks: &[&str]) -> TrustedProxies {
        TrustedProxies(
            networks
                .iter()
                .map(|net| net.parse().expect("valid test network"))
                .collect(),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid test address")
    }

    fn field_lines(lines: &[&[u8]]) -> Vec<HeaderValue> {
        lines
            .iter()
            .map(|line| HeaderValue::from_bytes(line).expect("valid test header value"))
            .collect()
    }

    const PROXIES: &[&str] = &["10.0.0.0/8", "2001:db8:ffff::/48"];

    /// (description, peer, X-Forwarded-For field lines, expected client, expected upstream X-Forwarded-For)
    type Case = (
        &'static str,
        &'static str,
        &'static [&'static [u8]],
        &'static str,
        &'static str,
    );

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // Untrusted peer.
        ("untrusted peer without xff is client", "203.0.113.7", &[], "203.0.113.7", "203.0.113.7"),
        ("spoofed xff from untrusted peer ignored", "203.0.113.7", &[b"1.2.3.4"], "203.0.113.7", "203.0.113.7"),
        ("spoofed trusted address from untrusted peer ignored", "203.0.113.7", &[b"10.0.0.1"], "203.0.113.7", "203.0.113.7"),
        // One trusted proxy.
        ("trusted peer without xff is client", "10.0.0.1", &[], "10.0.0.1", "10.0.0.1"),
        ("one trusted proxy", "10.0.0.1", &[b"198.51.100.9"], "198.51.100.9", "198.51.100.9, 10.0.0.1"),
        ("one trusted proxy under spoofed entries", "10.0.0.1", &[b"1.2.3.4, 198.51.100.9"], "198.51.100.9", "1.2.3.4, 198.51.100.9, 10.0.0.1"),
        // Two trusted proxies.
        ("two trusted proxies", "10.0.0.1", &[b"198.51.100.9, 10.0.0.2"], "198.51.100.9", "198.51.100.9, 10.0.0.2, 10.0.0.1"),
        ("two trusted proxies under spoofed entries", "10.0.0.1", &[b"6.6.6.6, 198.51.100.9, 10.0.0.2"], "198.51.100.9", "6.6.6.6, 198.51.100.9, 10.0.0.2, 10.0.0.1"),
        ("only trusted entries gives leftmost", "10.0.0.1", &[b"10.0.0.3, 10.0.0.2"], "10.0.0.3", "10.0.0.3, 10.0.0.2, 10.0.0.1"),
        // Several field lines.
        ("field lines joined in order", "10.0.0.1", &[b"6.6.6.6", b"198.51.100.9", b"10.0.0.2"], "198.51.100.9", "6.6.6.6, 198.51.100.9, 10.0.0.2, 10.0.0.1"),
        ("field lines with lists joined", "10.0.0.1", &[b"6.6.6.6, 7.7.7.7", b"198.51.100.9 ,10.0.0.2"], "198.51.100.9", "6.6.6.6, 7.7.7.7, 198.51.100.9, 10.0.0.2, 10.0.0.1"),
        ("empty elements and lines skipped", "10.0.0.1", &[b"198.51.100.9,, ", b"", b" ,10.0.0.2"], "198.51.100.9", "198.51.100.9, 10.0.0.2, 10.0.0.1"),
        // Unparsable elements.
        ("rightmost garbage gives peer", "10.0.0.1", &[b"198.51.100.9, garbage"], "10.0.0.1", "198.51.100.9, garbage, 10.0.0.1"),
        ("garbage behind trusted hop gives that hop", "10.0.0.1", &[b"198.51.100.9, unknown, 10.0.0.2"], "10.0.0.2", "198.51.100.9, unknown, 10.0.0.2, 10.0.0.1"),
        ("garbage left of client ignored", "10.0.0.1", &[b"garbage, 198.51.100.9"], "198.51.100.9", "garbage, 198.51.100.9, 10.0.0.1"),
        ("leading-zero IPv4 is garbage", "10.0.0.1", &[b"010.0.0.1"], "10.0.0.1", "010.0.0.1, 10.0.0.1"),
        ("IPv6 zone id is garbage", "10.0.0.1", &[b"fe80::1%eth0"], "10.0.0.1", "fe80::1%eth0, 10.0.0.1"),
        ("obs-text line is garbage", "10.0.0.1", &[b"198.51.100.9", b"\xff"], "10.0.0.1", "198.51.100.9, \u{ff}, 10.0.0.1"),
        // Ports and brackets.
        ("IPv4 with port accepted", "10.0.0.1", &[b"198.51.100.9:4711"], "198.51.100.9", "198.51.100.9, 10.0.0.1"),
        ("bracketed IPv6 accepted", "10.0.0.1", &[b"[2001:db8::7]"], "2001:db8::7", "2001:db8::7, 10.0.0.1"),
        ("bracketed IPv6 with port accepted", "10.0.0.1", &[b"[2001:db8::7]:443"], "2001:db8::7", "2001:db8::7, 10.0.0.1"),
        // IPv6 and mapped addresses.
        ("IPv6 client behind IPv6 proxy", "2001:db8:ffff::1", &[b"2001:db8::7"], "2001:db8::7", "2001:db8::7, 2001:db8:ffff::1"),
        ("IPv6 trusted hop skipped", "10.0.0.1", &[b"198.51.100.9, 2001:db8:ffff::2"], "198.51.100.9", "198.51.100.9, 2001:db8:ffff::2, 10.0.0.1"),
        ("mapped untrusted peer returned as IPv4", "::ffff:203.0.113.7", &[b"1.2.3.4"], "203.0.113.7", "203.0.113.7"),
        ("mapped trusted peer recognized", "::ffff:10.0.0.1", &[b"198.51.100.9"], "198.51.100.9", "198.51.100.9, 10.0.0.1"),
        ("mapped client returned as IPv4", "10.0.0.1", &[b"::ffff:198.51.100.9"], "198.51.100.9", "198.51.100.9, 10.0.0.1"),
        ("mapped trusted hop skipped", "10.0.0.1", &[b"198.51.100.9, ::ffff:10.0.0.2"], "198.51.100.9", "198.51.100.9, 10.0.0.2, 10.0.0.1"),
    ];

    #[test]
    fn client_ip_cases() {
        let proxies = trusted(PROXIES);

        for (description, peer, lines, expected_client, _) in CASES {
            let values = field_lines(lines);
            let actual = client_ip(ip(peer), values.iter(), &proxies);
            assert_eq!(actual, ip(expected_client), "{description}");
        }
    }

    #[test]
    fn forwarded_for_value_cases() {
        let proxies = trusted(PROXIES);

        for (description, peer, lines, _, expected_value) in CASES {
            let values = field_lines(lines);
            let actual = forwarded_for_value(ip(peer), values.iter(), &proxies);
            let expected: Vec<u8> = expected_value.chars().map(|c| c as u8).collect();
            assert_eq!(actual.as_bytes(), expected.as_slice(), "{description}");
        }
    }

    #[test]
    fn no_trusted_proxies_always_gives_peer() {
        let values = field_lines(&[b"198.51.100.9"]);
        let actual = client_ip(ip("10.0.0.1"), values.iter(), &TrustedProxies::default());

        assert_eq!(actual, ip("10.0.0.1"));
    }

    #[test]
    fn many_field_lines_walked_in_order() {
        let mut lines: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("192.0.2.{}", i % 250).into_bytes())
            .collect();
        lines.push(b"198.51.100.9".to_vec());
        lines.extend((2..50).map(|i| format!("10.0.1.{i}").into_bytes()));
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|line| HeaderValue::from_bytes(line).expect("valid test header value"))
            .collect();

        let actual = client_ip(ip("10.0.0.1"), values.iter(), &trusted(PROXIES));

        assert_eq!(actual, ip("198.51.100.9"));
    }

    #[test]
    fn group_ipv6_cases() {
        // (description, address, prefix length, expected key)
        let cases: &[(&str, &str, u8, &str)] = &[
            (
                "IPv6 masked to /64",
                "2001:db8:1:2:3:4:5:6",
                64,
                "2001:db8:1:2::",
            ),
            (
                "IPv6 masked to /48",
                "2001:db8:1:2:3:4:5:6",
                48,
                "2001:db8:1::",
            ),
            ("IPv6 /128 unchanged", "2001:db8::1", 128, "2001:db8::1"),
            ("IPv6 /0 gives unspecified", "2001:db8::1", 0, "::"),
            (
                "prefix above 128 treated as 128",
                "2001:db8::1",
                200,
                "2001:db8::1",
            ),
            ("IPv4 unchanged", "198.51.100.9", 64, "198.51.100.9"),
            (
                "mapped IPv4 unchanged as IPv4",
                "::ffff:198.51.100.9",
                64,
                "198.51.100.9",
            ),
        ];

        for (description, address, prefix_len, expected) in cases {
            assert_eq!(
                group_ipv6(ip(address), *prefix_len),
                ip(expected),
                "{description}"
            );
        }
    }

    #[test]
    fn trusted_proxies_contains_mapped_address() {
        let proxies = trusted(&["10.0.0.0/8"]);

        assert!(proxies.contains(ip("::ffff:10.1.2.3")));
        assert!(!proxies.contains(ip("::ffff:11.1.2.3")));
    }
}
