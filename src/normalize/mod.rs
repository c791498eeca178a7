//! Normalization, the first stage. It rejects malformed or ambiguous
//! requests and computes the one canonical path used for routing and
//! forwarding alike. It finds the client address behind trusted proxies,
//! and removes hop-by-hop headers and every header a client could use to
//! impersonate the gateway.

pub mod forwarded;
pub mod headers;
pub mod path;

use std::net::IpAddr;

use http::request::Parts;
use http::HeaderValue;

use crate::config::Config;
use crate::pipeline::reject::Rejection;
use crate::pipeline::Connection;

/// The facts normalization learned about a request.
pub struct Normalized {
    /// The canonical path, without the query.
    pub path: String,
    pub client_ip: IpAddr,
    /// The `X-Forwarded-For` value to send upstream.
    pub forwarded_for: HeaderValue,
    pub tls: bool,
}

pub struct Normalizer {
    path_options: path::PathOptions,
    trusted: forwarded::TrustedProxies,
    gateway_headers: headers::GatewayHeaders,
    ipv6_prefix: u8,
    reject_pan_in_url: bool,
}

impl Normalizer {
    pub fn new(config: &Config) -> Result<Self, String> {
        let mut owned = config.identity_headers.owned_names();
        // The gateway sets each tenant's static headers, so a client copy is
        // removed too, also on requests of tenants that do not set them.
        let tenant_headers = config.tenants.values().flat_map(|tenant| &tenant.headers);
        owned.extend(tenant_headers.map(|(name, _)| name.clone()));
        let gateway_headers = headers::GatewayHeaders::new(&config.identity_headers.prefix, owned)
            .map_err(|error| format!("invalid identity header prefix: {error}"))?;
        Ok(Normalizer {
            path_options: config.server.path,
            trusted: config.server.trusted_proxies.clone(),
            gateway_headers,
            ipv6_prefix: config.server.ipv6_prefix,
            reject_pan_in_url: config.server.reject_pan_in_url,
        })
    }

    /// Checks and cleans the request head in place.
    pub fn normalize(
        &self,
        parts: &mut Parts,
        connection: Connection,
    ) -> Result<Normalized, Rejection> {
        headers::check_framing(parts.version, &parts.headers).map_err(|error| {
            Rejection::BadRequest {
                reason: error.reason(),
            }
        })?;
        check_host(parts)?;
        let path = self.canonical_path(parts)?;
        if self.reject_pan_in_url {
            reject_card_numbers(parts, &path)?;
        }

        let xff = parts.headers.get_all("x-forwarded-for");
        let client_ip = forwarded::client_ip(connection.peer.ip(), xff.iter(), &self.trusted);
        let forwarded_for =
            forwarded::forwarded_for_value(connection.peer.ip(), xff.iter(), &self.trusted);

        headers::remove_hop_by_hop(&mut parts.headers);
        self.gateway_headers.strip_spoofable(&mut parts.headers);

        Ok(Normalized {
            path,
            client_ip: forwarded::group_ipv6(client_ip, self.ipv6_prefix),
            forwarded_for,
            tls: connection.tls,
        })
    }

    /// Only origin-form targets (`/path?query`) and absolute-form targets
    /// with a path are served; `*` and CONNECT authority-form are rejected.
    fn canonical_path(&self, parts: &Parts) -> Result<String, Rejection> {
        if parts.method == http::Method::CONNECT {
            return Err(Rejection::BadRequest {
                reason: "request_target_unsupported",
            });
        }
        let raw = parts.uri.path();
        if !raw.starts_with('/') {
            return Err(Rejection::BadRequest {
                reason: "request_target_unsupported",
            });
        }
        path::canonicalize(raw, &self.path_options).map_err(|error| Rejection::BadRequest {
            reason: error.reason(),
        })
    }
}

/// An HTTP/1.1 request must carry exactly one `Host` (RFC 9112 section 3.2);
/// two could route by one and reach the upstream with the other. HTTP/2
/// carries the authority in `:authority` instead.
/// Rejects a request whose path or query string carries a payment card
/// number: PCI DSS keeps card numbers out of URLs, which end up in logs,
/// histories and referrers. Runs before the request reaches the upstream or
/// any log line.
fn reject_card_numbers(parts: &Parts, path: &str) -> Result<(), Rejection> {
    let raw_path = parts.uri.path();
    let query = parts.uri.query().unwrap_or_default();
    // A card number has at least 13 digits; most URLs have fewer in all.
    let digits = raw_path
        .bytes()
        .chain(query.bytes())
        .filter(u8::is_ascii_digit);
    if digits.count() < 13 {
        return Ok(());
    }

    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let texts = [
        path.to_string(),
        decode(raw_path),
        decode(&query.replace('+', " ")),
    ];
    let card = crate::mask::detect::Detector::Card;
    if texts.iter().any(|text| !card.find(text).is_empty()) {
        return Err(Rejection::BadRequest {
            reason: "pan_in_url",
        });
    }
    Ok(())
}

fn check_host(parts: &Parts) -> Result<(), Rejection> {
    let count = parts.headers.get_all(http::header::HOST).iter().count();
    let valid = match parts.version {
        http::Version::HTTP_11 => count == 1,
        _ => count <= 1,
    };
    if valid {
        Ok(())
    } else {
        Err(Rejection::BadRequest {
            reason: "request_invalid_host",
        })
    }
}
