//! End-to-end request smuggling and request-target attacks: raw bytes over
//! TCP to the gateway binary in front of the real upstream, checked from
//! both sides.
//!
//! Each case is sent on a fresh connection. A rejected case must get its
//! status (and, when the gateway itself rejects, its reason code), close the
//! connection and leave the upstream untouched. An accepted case must reach
//! the upstream exactly once, at the canonical path, with unambiguous
//! framing, and no request hidden in its bytes may ever reach the upstream.
//!
//! Two layers reject: hyper's HTTP/1 parser responds with a bare 400 (or 431)
//! to heads it cannot parse, and the gateway's normalize stage returns a
//! problem body for heads that parse but are ambiguous or unsafe.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{config_for, Gateway, Provider, ProviderOptions, RecordedRequest, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Placeholder in a case's bytes for `Authorization: Bearer <token>`.
const AUTH: &str = "{auth}";
/// Placeholder in a case's bytes for the gateway's `host:port`.
const HOST: &str = "{host}";

/// Bound on one exchange, from connect to the last byte read.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that stays open is watched after the expected
/// responses, for a further response that a hidden request would cause.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

/// The path in every hidden request; no recorded upstream URL may contain it.
const SMUGGLED_MARK: &str = "smuggled";

/// What a case must lead to.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// hyper's HTTP/1 parser rejects the head: this status, an empty body,
    /// the connection closed and nothing forwarded.
    ParserRejects(u16),
    /// The gateway rejects with a problem body: status and reason. A 400
    /// closes the connection. Nothing is forwarded.
    GatewayRejects(u16, &'static str),
    /// Forwarded once: the client gets `status`, the upstream received
    /// exactly `url` (canonical path and query) and, for the echo route,
    /// a body of `body_length` bytes.
    Forwarded {
        status: u16,
        url: &'static str,
        body_length: Option<u64>,
    },
    /// The body breaks off while it streams to the upstream: 400 with
    /// this reason and the connection closed. The upstream may have received
    /// the head and the chunks before the bad one, as one aborted request.
    RejectedMidBody(&'static str),
    /// Like `Forwarded`, and the gateway closes the connection after the
    /// response, as it must after normalizing `Content-Length` together with
    /// `Transfer-Encoding: chunked`.
    ForwardedThenClosed {
        status: u16,
        url: &'static str,
        body_length: Option<u64>,
    },
}

/// (description, request bytes with placeholders, expected outcome)
type Case = (&'static str, &'static [u8], Expect);

use Expect::{Forwarded, ForwardedThenClosed, GatewayRejects, ParserRejects, RejectedMidBody};

/// Framing: `Content-Length`, `Transfer-Encoding`, chunked bodies, header
/// syntax, and requests hidden in bodies.
#[rustfmt::skip]
const FRAMING_CASES: &[Case] = &[
    // Content-Length together with Transfer-Encoding: chunked. hyper drops
    // Content-Length, reads the body as chunked and closes afterwards.
    ("CL then TE chunked, empty chunked body", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ForwardedThenClosed { status: 200, url: "/faults/echo", body_length: Some(0) }),
    ("TE chunked then CL, one 5-byte chunk", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ForwardedThenClosed { status: 200, url: "/faults/echo", body_length: Some(5) }),
    ("CL.TE: CL covers a request after the last chunk", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 47\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /users/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n", ForwardedThenClosed { status: 200, url: "/faults/echo", body_length: Some(0) }),
    ("TE.CL: a chunk holds a request, CL stops before it", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2a\r\nGET /users/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n\r\n0\r\n\r\n", ForwardedThenClosed { status: 200, url: "/faults/echo", body_length: Some(0x2a) }),
    ("CL.TE with TE in upper case", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 47\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\nGET /users/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n", ForwardedThenClosed { status: 200, url: "/faults/echo", body_length: Some(0) }),
    // Several Content-Length values.
    ("two differing CL lines", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", ParserRejects(400)),
    // hyper keeps one line of equal duplicates before the normalize stage
    // reads the head, so the upstream gets a single Content-Length (RFC 9110
    // section 8.6 allows this replacement).
    ("two equal CL lines folded into one", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", Forwarded { status: 200, url: "/faults/echo", body_length: Some(5) }),
    ("CL as a list of equal values", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5, 5\r\n\r\nhello", ParserRejects(400)),
    ("CL as a list of differing values", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5,6\r\n\r\nhello!", ParserRejects(400)),
    ("CL with a plus sign", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: +5\r\n\r\nhello", ParserRejects(400)),
    // Transfer-Encoding values.
    ("TE chunked, chunked in one line", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", GatewayRejects(400, "request_invalid_transfer_encoding")),
    ("TE xchunked", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("TE gzip, chunked", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", GatewayRejects(400, "request_invalid_transfer_encoding")),
    ("TE chunked, gzip (chunked not last)", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("TE on HTTP/1.0", b"POST /faults/echo HTTP/1.0\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    // Header syntax.
    ("obs-fold continuation line", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nX-Note: first\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("space before the colon of TE", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("raw 0x01 byte in a header value", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nX-Note: a\x01b\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("obs-text byte 0xE9 in a header value", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nX-Note: caf\xe9\r\nContent-Length: 5\r\n\r\nhello", GatewayRejects(400, "request_invalid_header")),
    ("header name content_length", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\ncontent_length: 40\r\nContent-Length: 5\r\n\r\nhello", GatewayRejects(400, "request_invalid_header")),
    ("header name transfer_encoding", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\ntransfer_encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", GatewayRejects(400, "request_invalid_header")),
    // RFC 9112 section 2.2 lets a recipient read a bare LF as a line end;
    // the upstream gets the request re-framed with CRLF.
    ("bare LF line endings", b"GET /users HTTP/1.1\nHost: {host}\n{auth}\n\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("bare CR inside a header line", b"GET /users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nX-Note: a\rTransfer-Encoding: chunked\r\n\r\n", ParserRejects(400)),
    // Chunked bodies.
    ("chunk-size with extensions", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;flag\r\nhello\r\n0;last=1\r\n\r\n", Forwarded { status: 200, url: "/faults/echo", body_length: Some(5) }),
    ("chunk-size that is not hex", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", RejectedMidBody("request_invalid_body")),
    ("chunk-size overflowing 64 bits", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", RejectedMidBody("request_invalid_body")),
    ("chunk longer than its size", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", RejectedMidBody("request_invalid_body")),
    // Requests hidden in bodies with a single framing header.
    ("request inside a CL body", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 42\r\n\r\nGET /users/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n", Forwarded { status: 200, url: "/faults/echo", body_length: Some(42) }),
    ("request inside a chunk", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n2a\r\nGET /users/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n\r\n0\r\n\r\n", Forwarded { status: 200, url: "/faults/echo", body_length: Some(0x2a) }),
    ("GET with a CL body holding a request", b"GET /users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 42\r\n\r\nGET /users/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
];

/// Request targets that are not plain origin-form paths.
#[rustfmt::skip]
const TARGET_CASES: &[Case] = &[
    ("absolute-form URI", b"GET http://{host}/users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("absolute-form URI with dot-segments", b"GET http://{host}/faults/../users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("asterisk-form OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "request_target_unsupported")),
    ("CONNECT authority-form", b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n{auth}\r\n\r\n", GatewayRejects(400, "request_target_unsupported")),
    ("GET with an authority-form target", b"GET 127.0.0.1:9 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "request_target_unsupported")),
];

/// Paths over the wire: the upstream must receive exactly the canonical form.
#[rustfmt::skip]
const PATH_CASES: &[Case] = &[
    ("dot-dot back into the same route", b"GET /users/../users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("encoded dot-dot out of the route", b"GET /users/%2e%2e/admin HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(404, "route_not_found")),
    ("leading double slash", b"GET //users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("encoded slash in a segment", b"GET /users/%2F1 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "path_encoded_slash")),
    ("encoded NUL", b"GET /users%00 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "path_nul")),
    ("dot-dot around an encoded backslash", b"GET /users/..%5c.. HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "path_encoded_backslash")),
    ("semicolon kept inside a segment", b"GET /users/1;x HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 404, url: "/users/1;x", body_length: None }),
    ("leading dot segment", b"GET /./users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("encoded unreserved digit decoded", b"GET /users/%31 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 200, url: "/users/1", body_length: None }),
    ("double-encoded dots stay encoded", b"GET /users/%252e%252e HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 404, url: "/users/%252e%252e", body_length: None }),
    ("dot-dot with a path parameter", b"GET /users/..;/admin HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "path_traversal")),
    ("dot-dot above the root", b"GET /../users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "path_traversal")),
    ("overlong UTF-8 dots", b"GET /users/%c0%ae%c0%ae/admin HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(400, "path_invalid_byte")),
    ("lower-case escape upper-cased", b"GET /users/a%3ab HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 404, url: "/users/a%3Ab", body_length: None }),
    ("trailing dot-segment keeps a trailing slash", b"GET /users/. HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", GatewayRejects(404, "route_not_found")),
    ("query on a canonical path", b"GET //users?page=2&q=a%2Fb HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 200, url: "/users?page=2&q=a%2Fb", body_length: None }),
];

/// Cases written after the language-neutral request-smuggling cases that
/// the crate `http_desync_guardian` 0.1.3 ships in its `tests/*.yaml`: the
/// same header names, values and versions, rewritten as complete requests
/// to the echo route. The gateway is stricter than that crate's "compliant"
/// verdict in places (any obs-text, any Transfer-Encoding but one
/// `chunked`), and each such case names the stricter rule in its description.
#[rustfmt::skip]
const DESYNC_CASES: &[Case] = &[
    // severe.yaml
    ("CL 1000,1000", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 1000,1000\r\n\r\nhello", ParserRejects(400)),
    ("CL 1000 1000", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 1000 1000\r\n\r\nhello", ParserRejects(400)),
    ("CL 1000.1000", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 1000.1000\r\n\r\nhello", ParserRejects(400)),
    ("CL overflowing 64 bits", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 18446744073709551616\r\n\r\nhello", ParserRejects(400)),
    ("TE chunked followed by 0x11", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\x11\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("CL followed by 0x11", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\x11\r\n\r\nhello", ParserRejects(400)),
    ("TE chunked in two lines", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", GatewayRejects(400, "request_invalid_transfer_encoding")),
    ("TE chunked,chunked without space", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked,chunked\r\n\r\n0\r\n\r\n", GatewayRejects(400, "request_invalid_transfer_encoding")),
    ("value folded over lines hiding TE", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\r\nSome-Custom-Header: multi-line values\r\n are deprecated\r\n Transfer-Encoding: chunked\r\n\r\nhello", ParserRejects(400)),
    ("CR inside a value", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\r\nSome-Custom-Header: parser error\r must not contain\r symbols\r\n\r\nhello", ParserRejects(400)),
    ("NUL inside a value", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nSome-Bad-Header: value\x00content-length: 1000\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("NUL at the end of a name", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nSome-Bad-Header\x00: 1000\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("NUL at the start of a name", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\x00Some-Bad-Header: value\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("CL with a space before the colon, then CL", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length : 100\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("TE with a space before the colon, then TE", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding : chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("method with a 0x01 byte", b"bad_method\x01 /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", ParserRejects(400)),
    // ambiguous.yaml
    ("TE name with a trailing tab", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("TE name after a 0x01 byte", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\x01Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("TE name with a space inside", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer- Encoding: chunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("TE name with an underscore", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", GatewayRejects(400, "request_invalid_header")),
    ("TE and CL both present", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n0\r\n\r\n", ForwardedThenClosed { status: 200, url: "/faults/echo", body_length: Some(0) }),
    ("TE gzip with CL", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("GET with a TE chunked body", b"GET /users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("empty header name", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n: chunked\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("header name starting with a colon", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n:SomeHeader:Transfer-Encoding:: chunked\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("HTTP/0.9 version", b"POST /faults/echo HTTP/0.9\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("empty version", b"POST /faults/echo\r\nHost: {host}\r\n{auth}\r\nContent-Length: 5\r\n\r\nhello", ParserRejects(400)),
    ("TE name with a Latin long s", "POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTran\u{17f}fer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello".as_bytes(), ParserRejects(400)),
    // A name of valid token characters that only resembles TE is an
    // ordinary field: the body is framed by CL alone.
    ("TE name with three hyphens", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer---Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", Forwarded { status: 200, url: "/faults/echo", body_length: Some(5) }),
    // bad-header-characters.yaml
    ("TE value starting with 0x01", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: \x01chunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("TE value starting with 0xA0", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    ("TE value ending with 0xA0", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n", ParserRejects(400)),
    // uri-specific-test-cases.yaml
    ("tab in the request target", b"GET /users\tHTTP/1.1 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", ParserRejects(400)),
    ("0x01 in the request target", b"GET /users\x01HTTP/1.1 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", ParserRejects(400)),
    ("request smuggled in the request target", b"GET /users\tHTTP/1.1\r\nHost: {host}\r\n\r\nGET\t/users/smuggled\t HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", ParserRejects(400)),
    ("unescaped spaces in the query", b"GET /users?param=not escaped spaces HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", ParserRejects(400)),
    ("extra space after the version", b"GET /users HTTP/1.1 \r\nHost: {host}\r\n{auth}\r\n\r\n", ParserRejects(400)),
    ("escaped tab in the path", b"GET /users/%09 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 404, url: "/users/%09", body_length: None }),
    ("escaped CR in the path", b"GET /users/%0D HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n", Forwarded { status: 404, url: "/users/%0D", body_length: None }),
    // acceptable.yaml and rfc-compliant.yaml
    ("HTTP/1.2 version", b"GET /users HTTP/1.2\r\nHost: {host}\r\n{auth}\r\n\r\n", ParserRejects(400)),
    ("GET with CL 0", b"GET /users HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 0\r\n\r\n", Forwarded { status: 200, url: "/users", body_length: None }),
    ("CL with whitespace around the value", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length:   5  \r\n\r\nhello", Forwarded { status: 200, url: "/faults/echo", body_length: Some(5) }),
    ("obs-text in a custom header (stricter than RFC 9110)", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nMy-Custom-Header: \t\t\tCustom-Value;\x60\x85\x93\xa0\r\nContent-Length: 5\r\n\r\nhello", GatewayRejects(400, "request_invalid_header")),
    ("tchar-only custom header name", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nMy-Custom-Header.!#$%&'*+^_`|~0123456789: value\r\nContent-Length: 5\r\n\r\nhello", Forwarded { status: 200, url: "/faults/echo", body_length: Some(5) }),
    ("five TE lines ending in chunked (stricter than RFC 9112)", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: deflate\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: compress\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", GatewayRejects(400, "request_invalid_transfer_encoding")),
    // edge-cases.yaml
    ("bad custom value before a bad CL", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nSome-Custom-Header: Non-Rfc Compliant\x12\r\nContent-Length: 5\x11\r\n\r\nhello", ParserRejects(400)),
    ("TE ending in DEL", b"POST /faults/echo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nTransfer-Encoding: chunked\x7f\r\n\r\n0\r\n\r\n", ParserRejects(400)),
];

/// The gateway, the upstream behind it, and a token for the users routes.
struct Setup {
    upstream: Upstream,
    _provider: Provider,
    gateway: Gateway,
    token: String,
}

async fn start() -> Setup {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    // Every case uses one subject, so a low limit would decide the status.
    let config = config_for(&upstream, &[&provider]).rate_limit(100_000, "1m");
    let gateway = Gateway::start(&config.yaml()).await;
    let token = provider.token("reader", "read:users").await;
    Setup {
        upstream,
        _provider: provider,
        gateway,
        token,
    }
}

#[tokio::test]
async fn framing_ambiguity_rejected_or_normalized() {
    let setup = start().await;
    run_cases(&setup, "framing", FRAMING_CASES).await;
}

#[tokio::test]
async fn request_target_forms_checked() {
    let setup = start().await;
    run_cases(&setup, "target", TARGET_CASES).await;
}

#[tokio::test]
async fn path_forwarded_only_canonical() {
    let setup = start().await;
    run_cases(&setup, "path", PATH_CASES).await;
}

#[tokio::test]
async fn desync_guardian_cases_hold() {
    let setup = start().await;
    run_cases(&setup, "desync", DESYNC_CASES).await;
    println!(
        "desync: {} cases written after http_desync_guardian 0.1.3",
        DESYNC_CASES.len()
    );
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let setup = start().await;
    let auth = format!("Authorization: Bearer {}", setup.token);

    // (description, extra header lines, expected status)
    let cases = [
        (
            "header block of 17 KiB",
            vec![format!("X-Pad: {}", "a".repeat(17 * 1024))],
            431,
        ),
        ("101 header fields", numbered_headers(99), 431),
        ("exactly 100 header fields", numbered_headers(98), 200),
    ];
    for (description, extra, status) in cases {
        let mut head = format!("GET /users HTTP/1.1\r\nHost: gw\r\n{auth}\r\n");
        for line in &extra {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        setup.upstream.reset().await;

        let exchange = exchange(setup.gateway.address, head.as_bytes(), status != 200).await;

        let response = exchange.only_response(description);
        assert_eq!(response.status, status, "{description}: status");
        let seen = setup.upstream.requests().await;
        let expected_forwards = usize::from(status == 200);
        assert_eq!(
            seen.len(),
            expected_forwards,
            "{description}: requests the upstream received"
        );
        if status != 200 {
            assert!(exchange.closed, "{description}: the connection stayed open");
            assert!(
                response.body.is_empty(),
                "{description}: the parser's rejection has a body"
            );
        }
        println!(
            "limits | {description} | {} | upstream saw {}",
            response.status,
            seen.len()
        );
    }
}

/// Returns `count` distinct header lines.
fn numbered_headers(count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("X-Field-{index}: {index}"))
        .collect()
}

#[tokio::test]
async fn pipelined_requests_each_forwarded() {
    let setup = start().await;
    let request = b"GET /users/1 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\nGET /users/2 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n";

    let exchange = exchange(setup.gateway.address, &fill(request, &setup), false).await;

    // The control for every hidden-request case: two complete requests on
    // one connection both get a response and are both forwarded, in order.
    let statuses: Vec<u16> = exchange
        .responses
        .iter()
        .map(|response| response.status)
        .collect();
    assert_eq!(statuses, [200, 200], "two pipelined requests");
    let urls: Vec<String> = setup
        .upstream
        .requests()
        .await
        .into_iter()
        .map(|request| request.url)
        .collect();
    assert_eq!(urls, ["/users/1", "/users/2"]);
}

#[tokio::test]
async fn truncated_body_counted_as_client_error() {
    let setup = start().await;
    let head = format!("POST /faults/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Length: 10\r\n\r\nhello", setup.token);

    // The client ends its side after 5 of 10 declared bytes.
    let mut stream = TcpStream::connect(setup.gateway.address)
        .await
        .expect("connecting to the gateway");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("writing the truncated request");
    stream.shutdown().await.expect("closing the write side");
    let mut received = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_to_end(&mut received)).await;
    assert!(
        read.is_ok(),
        "the gateway kept the connection open for {EXCHANGE_TIMEOUT:?}"
    );

    common::eventually(
        "the truncated body is counted as a denial",
        Duration::from_secs(5),
        || async {
            let metrics = setup.gateway.metrics().await;
            metrics.value(
                "portcullis_denials_total",
                &[("reason", "request_invalid_body")],
            ) == 1.0
        },
    )
    .await;
    let metrics = setup.gateway.metrics().await;
    assert_eq!(
        metrics.value("portcullis_upstream_errors_total", &[]),
        0.0,
        "the client's truncated body was counted as an upstream failure"
    );
    let seen = setup.upstream.requests().await;
    assert!(
        seen.len() <= 1,
        "the upstream received {} requests",
        seen.len()
    );
}

/// Sends every case on its own connection and checks it; collects every
/// failure before failing, and prints what each case led to.
async fn run_cases(setup: &Setup, group: &str, cases: &[Case]) {
    let mut failures = Vec::new();
    for (description, template, expect) in cases {
        setup.upstream.reset().await;
        let closes = !matches!(expect, Forwarded { .. } | GatewayRejects(404, _));
        let exchange = exchange(setup.gateway.address, &fill(template, setup), closes).await;
        let seen = setup.upstream.requests().await;

        println!(
            "{group} | {description} | {} | {}",
            exchange.summary(),
            upstream_summary(&seen)
        );
        if let Err(failure) = check_case(&exchange, &seen, *expect) {
            failures.push(format!("{description}: {failure}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {group} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let health = setup.gateway.readyz().await;
    assert_eq!(
        health.status(),
        200,
        "the gateway is not ready after the {group} cases"
    );
    let upstream_errors = setup
        .gateway
        .metrics()
        .await
        .value("portcullis_upstream_errors_total", &[]);
    assert_eq!(
        upstream_errors, 0.0,
        "a client's {group} case was counted as an upstream failure"
    );
}

/// Checks one case's exchange and what the upstream received.
fn check_case(exchange: &Exchange, seen: &[RecordedRequest], expect: Expect) -> Result<(), String> {
    if let Some(hidden) = seen
        .iter()
        .find(|request| request.url.contains(SMUGGLED_MARK))
    {
        return Err(format!(
            "a hidden request reached the upstream: {} {}",
            hidden.method, hidden.url
        ));
    }
    let response = match exchange.responses.as_slice() {
        [response] => response,
        responses => {
            return Err(format!(
                "expected one response, got {}: {}",
                responses.len(),
                exchange.summary()
            ))
        }
    };

    match expect {
        ParserRejects(status) => {
            expect_equal("status", response.status, status)?;
            expect_equal("body", String::from_utf8_lossy(&response.body).as_ref(), "")?;
            expect_equal("connection closed", exchange.closed, true)?;
            expect_equal("requests the upstream received", seen.len(), 0)
        }
        GatewayRejects(status, reason) => {
            expect_equal("status", response.status, status)?;
            expect_equal("reason", response.reason().as_deref(), Some(reason))?;
            expect_equal(
                "content type",
                response.header("content-type"),
                Some("application/problem+json"),
            )?;
            if status == 400 {
                expect_equal("connection closed", exchange.closed, true)?;
            }
            expect_equal("requests the upstream received", seen.len(), 0)
        }
        RejectedMidBody(reason) => {
            expect_equal("status", response.status, 400)?;
            expect_equal("reason", response.reason().as_deref(), Some(reason))?;
            expect_equal("connection closed", exchange.closed, true)?;
            if seen.len() > 1 {
                return Err(format!(
                    "the upstream received {} requests, expected at most 1",
                    seen.len()
                ));
            }
            Ok(())
        }
        Forwarded {
            status,
            url,
            body_length,
        } => check_forwarded(response, seen, status, url, body_length),
        ForwardedThenClosed {
            status,
            url,
            body_length,
        } => {
            expect_equal("connection closed", exchange.closed, true)?;
            check_forwarded(response, seen, status, url, body_length)
        }
    }
}

fn check_forwarded(
    response: &WireResponse,
    seen: &[RecordedRequest],
    status: u16,
    url: &str,
    body_length: Option<u64>,
) -> Result<(), String> {
    expect_equal("status", response.status, status)?;
    let request = match seen {
        [request] => request,
        _ => {
            return Err(format!(
                "the upstream received {} requests, expected 1: {}",
                seen.len(),
                upstream_summary(seen)
            ))
        }
    };
    expect_equal("upstream URL", request.url.as_str(), url)?;

    let lengths = request.raw_values("content-length");
    let codings = request.raw_values("transfer-encoding");
    if lengths.len() > 1 || (!lengths.is_empty() && !codings.is_empty()) {
        return Err(format!(
            "ambiguous upstream framing: content-length {lengths:?}, transfer-encoding {codings:?}"
        ));
    }
    if let Some(expected) = body_length {
        let echoed = response
            .json()
            .and_then(|body| body["body_length"].as_u64());
        expect_equal("body length the upstream read", echoed, Some(expected))?;
    }
    Ok(())
}

fn expect_equal<T: PartialEq + std::fmt::Debug>(
    what: &str,
    actual: T,
    expected: T,
) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("{what}: got {actual:?}, expected {expected:?}"))
    }
}

fn upstream_summary(seen: &[RecordedRequest]) -> String {
    if seen.is_empty() {
        return "upstream saw nothing".to_string();
    }
    let requests: Vec<String> = seen
        .iter()
        .map(|request| {
            let framing: Vec<String> = request
                .raw_headers
                .iter()
                .filter(|(name, _)| {
                    name.eq_ignore_ascii_case("content-length")
                        || name.eq_ignore_ascii_case("transfer-encoding")
                })
                .map(|(name, value)| format!("{}: {value}", name.to_ascii_lowercase()))
                .collect();
            format!(
                "{} {} [{}]",
                request.method,
                request.url,
                framing.join(", ")
            )
        })
        .collect();
    format!("upstream saw {}", requests.join("; "))
}

/// Replaces the placeholders of a case with the setup's values.
fn fill(template: &[u8], setup: &Setup) -> Vec<u8> {
    let authorization = format!("Authorization: Bearer {}", setup.token);
    let host = setup.gateway.address.to_string();
    let filled = replace(template, AUTH.as_bytes(), authorization.as_bytes());
    replace(&filled, HOST.as_bytes(), host.as_bytes())
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + to.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index..].starts_with(from) {
            out.extend_from_slice(to);
            index += from.len();
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    out
}

/// What came back on one connection.
struct Exchange {
    responses: Vec<WireResponse>,
    /// The server closed (or reset) the connection.
    closed: bool,
    /// Bytes after the last complete response.
    trailing: Vec<u8>,
}

impl Exchange {
    /// Returns the only response, or panics naming the case.
    fn only_response(&self, case: &str) -> &WireResponse {
        assert_eq!(
            self.responses.len(),
            1,
            "{case}: expected one response: {}",
            self.summary()
        );
        &self.responses[0]
    }

    fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .responses
            .iter()
            .map(|response| match response.reason() {
                Some(reason) => format!("{} {reason}", response.status),
                None => format!("{} (no problem body)", response.status),
            })
            .collect();
        if parts.is_empty() {
            parts.push("no response".to_string());
        }
        if !self.trailing.is_empty() {
            parts.push(format!(
                "{} bytes that are no response",
                self.trailing.len()
            ));
        }
        parts.push(if self.closed {
            "closed".to_string()
        } else {
            "kept open".to_string()
        });
        parts.join(", ")
    }
}

/// One HTTP/1.1 response as read off the wire.
struct WireResponse {
    status: u16,
    /// Header names in lowercase, values as text.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl WireResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Returns the `reason` of a problem details body.
    fn reason(&self) -> Option<String> {
        self.json()?.get("reason")?.as_str().map(str::to_string)
    }
}

/// Writes `request` on a fresh connection and reads responses. With
/// `until_closed`, reads until the server closes the connection; otherwise
/// until one response is complete and [`QUIET_PERIOD`] passes without more
/// bytes. Either way at most [`EXCHANGE_TIMEOUT`].
async fn exchange(address: SocketAddr, request: &[u8], until_closed: bool) -> Exchange {
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let mut stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(address))
        .await
        .unwrap_or_else(|_| panic!("connecting to {address} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    // A server that rejects the head early may close before every byte is
    // written. Its response is still read below.
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.write_all(request)).await;

    let mut received = Vec::new();
    let mut closed = false;
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let complete = !parse_responses(&received, false).0.is_empty();
        let wait = if complete && !until_closed {
            QUIET_PERIOD.min(deadline - now)
        } else {
            deadline - now
        };
        match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
            Err(_) => break,
        }
    }

    let (responses, consumed) = parse_responses(&received, closed);
    Exchange {
        responses,
        closed,
        trailing: received[consumed..].to_vec(),
    }
}

/// Parses complete responses from the start of `bytes`. A response without
/// `Content-Length` or chunked framing ends at the end of the connection,
/// so it counts only when `at_end` is true. Returns the responses and the
/// number of bytes they took.
fn parse_responses(bytes: &[u8], at_end: bool) -> (Vec<WireResponse>, usize) {
    let mut responses = Vec::new();
    let mut offset = 0;
    while let Some((response, length)) = parse_response(&bytes[offset..], at_end) {
        responses.push(response);
        offset += length;
    }
    (responses, offset)
}

fn parse_response(bytes: &[u8], at_end: bool) -> Option<(WireResponse, usize)> {
    let head_end = bytes.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.clone())
    };

    let rest = &bytes[head_end..];
    let (body, body_length) = if let Some(length) = header("content-length") {
        let length: usize = length.parse().ok()?;
        (rest.get(..length)?.to_vec(), length)
    } else if header("transfer-encoding")
        .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
    {
        decode_chunked(rest)?
    } else if status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if at_end {
        (rest.to_vec(), rest.len())
    } else {
        return None;
    };
    Some((
        WireResponse {
            status,
            headers,
            body,
        },
        head_end + body_length,
    ))
}

/// Decodes a complete chunked body without trailers. Returns the body and
/// the number of bytes it took on the wire.
fn decode_chunked(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut offset = 0;
    loop {
        let line_end = offset
            + bytes[offset..]
                .windows(2)
                .position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[offset..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        offset = line_end + 2;
        if size == 0 {
            return bytes
                .get(offset..offset + 2)
                .filter(|end| *end == b"\r\n")
                .map(|_| (body, offset + 2));
        }
        body.extend_from_slice(bytes.get(offset..offset + size)?);
        offset += size + 2;
    }
}
