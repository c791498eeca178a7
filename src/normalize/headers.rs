//! Request header checks and cleanup in the normalize stage.
//!
//! `check_framing` runs first and rejects requests whose body length two
//! HTTP parsers could read differently. `remove_hop_by_hop` and
//! `strip_spoofable` then drop what must not reach the upstream, before the
//! gateway adds its own headers.

use std::fmt;

use http::header::{
    InvalidHeaderName, CONNECTION, CONTENT_LENGTH, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

/// Fields that apply to one connection only (RFC 9110 section 7.6.1), plus
/// the non-standard `Keep-Alive` and `Proxy-Connection`.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Forwarding fields that the gateway sets itself, so a client must not.
///
/// `x-original-url` and `x-rewrite-url` are included because some upstream
/// frameworks route on them instead of the request path, which would let a
/// client reach a path that the gateway never authorized.
const FORWARDING: [&str; 12] = [
    "x-real-ip",
    "forwarded",
    "x-original-url",
    "x-rewrite-url",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    // Method overrides: an upstream with override middleware would run the
    // overriding method, which the route's method check never saw.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// Every field with this prefix is removed: besides `-for`, `-host` and
/// `-proto`, upstreams trust fields such as `x-forwarded-user` or
/// `x-forwarded-email` as identity.
const FORWARDING_PREFIX: &str = "x-forwarded-";

/// Removes `Connection`, every field that `Connection` names, and the fixed
/// hop-by-hop fields.
///
/// Fields named in `Connection` are removed whatever they are, as RFC 9110
/// requires, so a client can remove any of its own fields this way. The
/// gateway must therefore add its own fields after this call.
///
/// NOTE: `Upgrade` and `TE: trailers` are removed too. Proxying WebSocket or
/// gRPC needs the caller to restore them on purpose.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();

    for name in named {
        headers.remove(name);
    }

    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Names of the fields that the gateway sets for the upstream, which an
/// incoming request must not be able to supply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayHeaders {
    /// Prefix of every gateway field, lowercase, with `_` read as `-`.
    prefix: String,
    /// Further gateway fields outside the prefix, such as `x-tenant-id`.
    extra: Vec<HeaderName>,
}

impl GatewayHeaders {
    /// Creates the set from a field-name prefix such as `x-portcullis-` and
    /// extra field names such as `x-tenant-id` or `x-subject`.
    ///
    /// The prefix must be a non-empty header-name token, because an empty
    /// prefix would match, and strip, every field.
    pub fn new(prefix: &str, extra: Vec<HeaderName>) -> Result<Self, InvalidHeaderName> {
        let prefix = HeaderName::from_bytes(prefix.as_bytes())?;

        Ok(GatewayHeaders {
            prefix: fold_separators(prefix.as_str()),
            extra,
        })
    }

    /// Removes every incoming field that the gateway sets for the upstream:
    /// names starting with the prefix, the extra names, and the forwarding
    /// fields (`x-forwarded-*`, `x-real-ip`, `forwarded` and the URL
    /// overrides `x-original-url`, `x-rewrite-url`).
    ///
    /// Names are compared case-insensitively with `_` read as `-`. Upstreams
    /// that expose fields as CGI-style variables, such as Django's
    /// `request.META`, map `-` to `_`, so they would read a client's
    /// `x_tenant_id` as the gateway's `x-tenant-id`.
    pub fn strip_spoofable(&self, headers: &mut HeaderMap) {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.is_gateway_header(name))
            .cloned()
            .collect();

        for name in spoofed {
            headers.remove(name);
        }
    }

    fn is_gateway_header(&self, name: &HeaderName) -> bool {
        let folded = fold_separators(name.as_str());

        folded.starts_with(&self.prefix)
            || folded.starts_with(FORWARDING_PREFIX)
            || FORWARDING.contains(&folded.as_str())
            || self
                .extra
                .iter()
                .any(|extra| fold_separators(extra.as_str()) == folded)
    }
}

/// Reads `_` as `-` in a lowercase field name.
fn fold_separators(name: &str) -> String {
    name.replace('_', "-")
}

/// Reason a request's framing or header bytes were rejected. Each variant
/// maps to a 400 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding` are present, or
    /// `Content-Length` appears more than once or lists differing values.
    AmbiguousLength,
    /// `Content-Length` is not a single decimal number that fits in `u64`.
    InvalidContentLength,
    /// `Transfer-Encoding` is anything but one `chunked` on HTTP/1.1.
    InvalidTransferEncoding,
    /// A field value contains a byte other than visible ASCII, SP or HTAB,
    /// or a field name imitates a framing field with `_` for `-`.
    InvalidHeader {
        /// Name of the offending field. The value is never stored here,
        /// because it may be a credential.
        name: HeaderName,
    },
}

impl FramingError {
    /// Returns the stable reason code used in responses, logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FramingError::AmbiguousLength => "request_ambiguous_length",
            FramingError::InvalidContentLength => "request_invalid_content_length",
            FramingError::InvalidTransferEncoding => "request_invalid_transfer_encoding",
            FramingError::InvalidHeader { .. } => "request_invalid_header",
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::AmbiguousLength => f.write_str(
                "ambiguous request length: expected one Content-Length field or one Transfer-Encoding field, not both",
            ),
            FramingError::InvalidContentLength => {
                f.write_str("invalid Content-Length: expected one decimal number")
            }
            FramingError::InvalidTransferEncoding => {
                f.write_str("invalid Transfer-Encoding: expected exactly `chunked`, on HTTP/1.1 only")
            }
            FramingError::InvalidHeader { name } => write!(
                f,
                "invalid header `{name}`: expected visible ASCII, space or tab in the value and a standard name"
            ),
        }
    }
}

impl std::error::Error for FramingError {}

/// Checks that a request's body length can be read only one way and that
/// every field value is plain visible ASCII.
///
/// Rejects, in this order:
/// - a field value with a byte other than `0x21..=0x7E`, SP or HTAB, which
///   includes obs-text (`0x80..=0xFF`), and the names `content_length` and
///   `transfer_encoding` that CGI-style upstreams read as the framing fields.
/// - `Content-Length` together with `Transfer-Encoding`.
/// - `Content-Length` in more than one field line, even with equal values,
///   or as a comma list of differing values.
/// - a `Content-Length` value that is not 1*DIGIT within `u64`, including a
///   comma list of equal values, which RFC 9110 section 8.6 lets a recipient
///   accept but this gateway does not.
/// - `Transfer-Encoding` on any version but HTTP/1.1, in more than one field
///   line, or with any value but a single case-insensitive `chunked`.
///
/// Header names need no check of their own: `http::HeaderName` accepts only
/// RFC 9110 tokens and stores them lowercase.
pub fn check_framing(version: Version, headers: &HeaderMap) -> Result<(), FramingError> {
    check_field_bytes(headers)?;

    let has_content_length = headers.contains_key(CONTENT_LENGTH);
    let has_transfer_encoding = headers.contains_key(TRANSFER_ENCODING);

    if has_content_length && has_transfer_encoding {
        return Err(FramingError::AmbiguousLength);
    }
    if has_content_length {
        check_content_length(headers)?;
    }
    if has_transfer_encoding {
        check_transfer_encoding(version, headers)?;
    }
    Ok(())
}

fn check_field_bytes(headers: &HeaderMap) -> Result<(), FramingError> {
    for (name, value) in headers {
        let imitates_framing = matches!(name.as_str(), "content_length" | "transfer_encoding");

        if imitates_framing || !is_visible_ascii(value) {
            return Err(FramingError::InvalidHeader { name: name.clone() });
        }
    }
    Ok(())
}

fn is_visible_ascii(value: &HeaderValue) -> bool {
    // A fold without early exit compiles to a vectorized loop; this runs on
    // every byte of every request header.
    value.as_bytes().iter().fold(true, |valid, &byte| {
        valid & (byte == b'\t' || (b' '..=b'~').contains(&byte))
    })
}

fn check_content_length(headers: &HeaderMap) -> Result<(), FramingError> {
    let mut lines = headers.get_all(CONTENT_LENGTH).iter();
    let first = lines.next().ok_or(FramingError::InvalidContentLength)?;

    if lines.next().is_some() {
        return Err(FramingError::AmbiguousLength);
    }

    let bytes = first.as_bytes();
    if bytes.contains(&b',') {
        return Err(classify_length_list(bytes));
    }

    parse_decimal(bytes)
        .map(|_| ())
        .ok_or(FramingError::InvalidContentLength)
}

/// Tells a comma list of differing lengths (ambiguous) from any other list.
fn classify_length_list(bytes: &[u8]) -> FramingError {
    let values: Vec<Option<u64>> = bytes
        .split(|&byte| byte == b',')
        .map(|item| parse_decimal(item.trim_ascii()))
        .collect();

    let all_numbers = values.iter().all(Option::is_some);
    let all_equal = values.windows(2).all(|pair| pair[0] == pair[1]);

    if all_numbers && !all_equal {
        FramingError::AmbiguousLength
    } else {
        FramingError::InvalidContentLength
    }
}

/// Parses 1*DIGIT into `u64`, rejecting signs, spaces and overflow, which
/// `str::parse` would partly accept.
fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }

    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn check_transfer_encoding(version: Version, headers: &HeaderMap) -> Result<(), FramingError> {
    if version != Version::HTTP_11 {
        return Err(FramingError::InvalidTransferEncoding);
    }

    let mut lines = headers.get_all(TRANSFER_ENCODING).iter();
    let only_line = match (lines.next(), lines.next()) {
        (Some(line), None) => line,
        _ => return Err(FramingError::InvalidTransferEncoding),
    };

    if only_line
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"chunked")
    {
        Ok(())
    } else {
        Err(FramingError::InvalidTransferEncoding)
    }
}

/// Returns the number of field lines and their total size in bytes, counted
/// as name length plus value length per line, without separators or CRLF.
pub fn count_and_size(headers: &HeaderMap) -> (usize, usize) {
    let size = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();

    (headers.len(), size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a map from field lines, keeping repeated names as separate lines.
    fn header_map(lines: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("valid test header name");
            let value = HeaderValue::from_bytes(value).expect("valid test header value");
            headers.append(name, value);
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    /// (description, version, field lines, expected reason code or `None` when accepted)
    type FramingCase = (
        &'static str,
        Version,
        &'static [(&'static str, &'static [u8])],
        Option<&'static str>,
    );

    #[rustfmt::skip]
    const FRAMING_CASES: &[FramingCase] = &[
        // Accepted.
        ("no body fields accepted", Version::HTTP_11, &[("host", b"a")], None),
        ("single content-length accepted", Version::HTTP_11, &[("content-length", b"42")], None),
        ("zero content-length accepted", Version::HTTP_11, &[("content-length", b"0")], None),
        ("leading zeros accepted", Version::HTTP_11, &[("content-length", b"007")], None),
        ("maximum u64 length accepted", Version::HTTP_11, &[("content-length", b"18446744073709551615")], None),
        ("content-length on HTTP/1.0 accepted", Version::HTTP_10, &[("content-length", b"5")], None),
        ("chunked accepted", Version::HTTP_11, &[("transfer-encoding", b"chunked")], None),
        ("uppercase chunked accepted", Version::HTTP_11, &[("transfer-encoding", b"CHUNKED")], None),
        ("chunked with spaces accepted", Version::HTTP_11, &[("transfer-encoding", b" chunked ")], None),
        ("tab and space in value accepted", Version::HTTP_11, &[("x-note", b"a\tb c")], None),
        ("empty value accepted", Version::HTTP_11, &[("x-note", b"")], None),
        ("underscore in other names accepted", Version::HTTP_11, &[("x_custom", b"1")], None),
        // Content-Length and Transfer-Encoding together.
        ("content-length then transfer-encoding rejected", Version::HTTP_11, &[("content-length", b"5"), ("transfer-encoding", b"chunked")], Some("request_ambiguous_length")),
        ("transfer-encoding then content-length rejected", Version::HTTP_11, &[("transfer-encoding", b"chunked"), ("content-length", b"5")], Some("request_ambiguous_length")),
        ("both with zero length rejected", Version::HTTP_11, &[("content-length", b"0"), ("transfer-encoding", b"chunked")], Some("request_ambiguous_length")),
        // Several Content-Length values.
        ("two equal content-length lines rejected", Version::HTTP_11, &[("content-length", b"5"), ("content-length", b"5")], Some("request_ambiguous_length")),
        ("two differing content-length lines rejected", Version::HTTP_11, &[("content-length", b"5"), ("content-length", b"6")], Some("request_ambiguous_length")),
        ("differing comma list rejected as ambiguous", Version::HTTP_11, &[("content-length", b"5, 6")], Some("request_ambiguous_length")),
        ("equal comma list rejected as invalid", Version::HTTP_11, &[("content-length", b"5, 5")], Some("request_invalid_content_length")),
        ("comma list with garbage rejected as invalid", Version::HTTP_11, &[("content-length", b"5, x")], Some("request_invalid_content_length")),
        // Content-Length syntax.
        ("empty content-length rejected", Version::HTTP_11, &[("content-length", b"")], Some("request_invalid_content_length")),
        ("signed content-length rejected", Version::HTTP_11, &[("content-length", b"+5")], Some("request_invalid_content_length")),
        ("negative content-length rejected", Version::HTTP_11, &[("content-length", b"-1")], Some("request_invalid_content_length")),
        ("hex content-length rejected", Version::HTTP_11, &[("content-length", b"0x10")], Some("request_invalid_content_length")),
        ("inner space rejected", Version::HTTP_11, &[("content-length", b"1 0")], Some("request_invalid_content_length")),
        ("padded content-length rejected", Version::HTTP_11, &[("content-length", b" 5")], Some("request_invalid_content_length")),
        ("overflowing content-length rejected", Version::HTTP_11, &[("content-length", b"18446744073709551616")], Some("request_invalid_content_length")),
        // Transfer-Encoding.
        ("transfer-encoding on HTTP/1.0 rejected", Version::HTTP_10, &[("transfer-encoding", b"chunked")], Some("request_invalid_transfer_encoding")),
        ("transfer-encoding on HTTP/2 rejected", Version::HTTP_2, &[("transfer-encoding", b"chunked")], Some("request_invalid_transfer_encoding")),
        ("gzip before chunked rejected", Version::HTTP_11, &[("transfer-encoding", b"gzip, chunked")], Some("request_invalid_transfer_encoding")),
        ("chunked before gzip rejected", Version::HTTP_11, &[("transfer-encoding", b"chunked, gzip")], Some("request_invalid_transfer_encoding")),
        ("chunked twice in a list rejected", Version::HTTP_11, &[("transfer-encoding", b"chunked, chunked")], Some("request_invalid_transfer_encoding")),
        ("chunked in two lines rejected", Version::HTTP_11, &[("transfer-encoding", b"chunked"), ("transfer-encoding", b"chunked")], Some("request_invalid_transfer_encoding")),
        ("identity rejected", Version::HTTP_11, &[("transfer-encoding", b"identity")], Some("request_invalid_transfer_encoding")),
        ("chunked with parameter rejected", Version::HTTP_11, &[("transfer-encoding", b"chunked;q=1")], Some("request_invalid_transfer_encoding")),
        ("misspelled chunked rejected", Version::HTTP_11, &[("transfer-encoding", b"chunk")], Some("request_invalid_transfer_encoding")),
        ("empty transfer-encoding rejected", Version::HTTP_11, &[("transfer-encoding", b"")], Some("request_invalid_transfer_encoding")),
        // Field bytes and names.
        ("obs-text value rejected", Version::HTTP_11, &[("x-note", b"caf\xe9")], Some("request_invalid_header")),
        ("UTF-8 value rejected", Version::HTTP_11, &[("x-note", "café".as_bytes())], Some("request_invalid_header")),
        // Control bytes and DEL cannot be tested here: `HeaderValue::from_bytes`
        // rejects them, and httparse rejects them before hyper builds the map.
        ("obs-text checked before framing", Version::HTTP_11, &[("content-length", b"5"), ("x-note", b"\xff")], Some("request_invalid_header")),
        ("content_length name rejected", Version::HTTP_11, &[("content_length", b"5")], Some("request_invalid_header")),
        ("transfer_encoding name rejected", Version::HTTP_11, &[("transfer_encoding", b"chunked")], Some("request_invalid_header")),
    ];

    /// (description, field lines, expected remaining names)
    type NamesCase = (
        &'static str,
        &'static [(&'static str, &'static [u8])],
        &'static [&'static str],
    );

    #[test]
    fn check_framing_cases() {
        for (description, version, lines, expected) in FRAMING_CASES {
            let headers = header_map(lines);
            let actual = check_framing(*version, &headers).err();
            assert_eq!(
                actual.as_ref().map(FramingError::reason),
                *expected,
                "{description}"
            );
        }
    }

    #[test]
    fn invalid_header_error_names_field_only() {
        let headers = header_map(&[("authorization", b"Bearer secr\xe9t")]);
        let error = check_framing(Version::HTTP_11, &headers).unwrap_err();

        assert_eq!(
            error,
            FramingError::InvalidHeader {
                name: HeaderName::from_static("authorization")
            }
        );
        assert!(
            !error.to_string().contains("secr"),
            "message leaks the value: {error}"
        );
    }

    #[test]
    fn hop_by_hop_cases() {
        #[rustfmt::skip]
        let cases: &[NamesCase] = &[
            ("fixed hop-by-hop fields removed", &[
                ("connection", b"keep-alive"), ("keep-alive", b"timeout=5"), ("proxy-connection", b"close"),
                ("te", b"trailers"), ("trailer", b"x-sum"), ("transfer-encoding", b"chunked"),
                ("upgrade", b"websocket"), ("proxy-authenticate", b"Basic"), ("proxy-authorization", b"Basic eA=="),
                ("accept", b"*/*"),
            ], &["accept"]),
            ("field named in connection removed", &[("connection", b"x-debug"), ("x-debug", b"1"), ("accept", b"*/*")], &["accept"]),
            ("comma list in connection removed", &[("connection", b"x-a , X-B"), ("x-a", b"1"), ("x-b", b"2"), ("x-c", b"3")], &["x-c"]),
            ("every connection line honoured", &[("connection", b"x-a"), ("connection", b"x-b"), ("x-a", b"1"), ("x-b", b"2"), ("x-c", b"3")], &["x-c"]),
            ("invalid token in connection ignored", &[("connection", b"bad token, x-a"), ("x-a", b"1"), ("x-c", b"3")], &["x-c"]),
            ("end-to-end fields kept", &[("authorization", b"Bearer t"), ("content-type", b"text/plain")], &["authorization", "content-type"]),
        ];

        for (description, lines, expected) in cases {
            let mut headers = header_map(lines);
            remove_hop_by_hop(&mut headers);
            assert_eq!(names(&headers), *expected, "{description}");
        }
    }

    #[test]
    fn strip_spoofable_cases() {
        let gateway = GatewayHeaders::new(
            "X-Portcullis-",
            vec![
                HeaderName::from_static("x-tenant-id"),
                HeaderName::from_static("x-subject"),
            ],
        )
        .expect("valid prefix");

        #[rustfmt::skip]
        let cases: &[NamesCase] = &[
            ("prefixed field removed", &[("x-portcullis-identity", b"admin"), ("accept", b"*/*")], &["accept"]),
            ("prefix matched case-insensitively", &[("X-PORTCULLIS-TENANT", b"t1")], &[]),
            ("prefix with underscores removed", &[("x_portcullis_tenant", b"t1")], &[]),
            ("extra names removed", &[("x-tenant-id", b"t1"), ("x-subject", b"alice"), ("x-other", b"1")], &["x-other"]),
            ("extra name with underscores removed", &[("x_tenant_id", b"t1")], &[]),
            ("forwarding fields removed", &[
                ("x-forwarded-for", b"1.2.3.4"), ("x-forwarded-host", b"evil"), ("x-forwarded-proto", b"https"),
                ("x-forwarded-port", b"443"), ("x-forwarded-prefix", b"/admin"), ("x-real-ip", b"1.2.3.4"),
                ("forwarded", b"for=1.2.3.4"), ("x-original-url", b"/admin"), ("x-rewrite-url", b"/admin"),
            ], &[]),
            ("forwarding field with underscores removed", &[("x_forwarded_for", b"1.2.3.4")], &[]),
            ("every x-forwarded field removed", &[
                ("x-forwarded-user", b"admin"), ("x-forwarded-email", b"a@b"), ("x-forwarded-uri", b"/admin"),
                ("x-forwarded-server", b"s"), ("x-forwarded-ssl", b"on"), ("x-forwarded-scheme", b"https"),
            ], &[]),
            ("client address fields removed", &[
                ("x-client-ip", b"1.2.3.4"), ("true-client-ip", b"1.2.3.4"), ("cf-connecting-ip", b"1.2.3.4"),
                ("x-cluster-client-ip", b"1.2.3.4"),
            ], &[]),
            ("method overrides removed", &[
                ("x-http-method-override", b"DELETE"), ("x-http-method", b"DELETE"), ("x-method-override", b"DELETE"),
                ("x-original-method", b"DELETE"),
            ], &[]),
            ("every line of a repeated field removed", &[("x-forwarded-for", b"1.1.1.1"), ("x-forwarded-for", b"2.2.2.2")], &[]),
            ("name containing prefix later kept", &[("x-not-portcullis-a", b"1")], &["x-not-portcullis-a"]),
            ("ordinary fields kept", &[("authorization", b"Bearer t"), ("x-request-id", b"r1")], &["authorization", "x-request-id"]),
        ];

        for (description, lines, expected) in cases {
            let mut headers = header_map(lines);
            gateway.strip_spoofable(&mut headers);
            assert_eq!(names(&headers), *expected, "{description}");
        }
    }

    #[test]
    fn gateway_headers_reject_empty_prefix() {
        assert!(GatewayHeaders::new("", Vec::new()).is_err());
        assert!(GatewayHeaders::new("x portcullis", Vec::new()).is_err());
    }

    #[test]
    fn count_and_size_counts_field_lines() {
        let headers = header_map(&[("accept", b"*/*"), ("x-a", b"1"), ("x-a", b"22")]);

        assert_eq!(
            count_and_size(&headers),
            (3, "accept".len() + 3 + 3 + 1 + 3 + 2)
        );
        assert_eq!(count_and_size(&HeaderMap::new()), (0, 0));
    }
}
