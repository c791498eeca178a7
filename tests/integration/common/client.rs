//! The tests' HTTP client: hyper over one fresh TCP connection per request,
//! HTTP/1.1 or HTTP/2 with prior knowledge (h2c). Every `Authorization`
//! value it sends is recorded for the log checks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::credentials::record_credential;

/// Bound on one whole exchange: connect, request, response and body.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

type RequestBody = BoxBody<Bytes, Infallible>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

enum BodyKind {
    Empty,
    /// Sent with `Content-Length`.
    Full(Bytes),
    /// Sent as these chunks with `Transfer-Encoding: chunked` (HTTP/1.1).
    Chunked(Vec<Bytes>),
    /// `Content-Length` is declared, and no body byte is ever sent.
    Stalled {
        declared_length: u64,
    },
}

/// One request to a server on loopback, built step by step and sent with
/// [`RequestBuilder::send`].
pub struct RequestBuilder {
    address: SocketAddr,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: BodyKind,
    protocol: Protocol,
}

impl RequestBuilder {
    pub fn new(address: SocketAddr, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder {
            address,
            method,
            path: path.to_string(),
            headers: HeaderMap::new(),
            body: BodyKind::Empty,
            protocol: Protocol::Http1,
        }
    }

    /// Adds a header; repeated names are sent as repeated lines.
    pub fn header(mut self, name: &str, value: &str) -> RequestBuilder {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|_| panic!("invalid header name {name:?}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|_| panic!("invalid value for header {name}"));
        if name == header::AUTHORIZATION {
            record_authorization(&value);
        }
        self.headers.append(name, value);
        self
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> RequestBuilder {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> RequestBuilder {
        self.body = BodyKind::Full(body.into());
        self
    }

    /// Sends `value` as a JSON body with its content type.
    pub fn json(self, value: &serde_json::Value) -> RequestBuilder {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Sends the body as these chunks with chunked transfer encoding.
    pub fn chunked_body(mut self, chunks: Vec<Bytes>) -> RequestBuilder {
        self.body = BodyKind::Chunked(chunks);
        self
    }

    /// Declares a body of `length` bytes and never sends it, to see what
    /// the server decides from the request head alone.
    pub fn declared_length_only(mut self, length: u64) -> RequestBuilder {
        self.body = BodyKind::Stalled {
            declared_length: length,
        };
        self
    }

    /// Uses HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub fn http2(mut self) -> RequestBuilder {
        self.protocol = Protocol::Http2;
        self
    }

    /// Sends the request and reads the whole response. Panics when the
    /// exchange fails or takes longer than 30 seconds.
    pub async fn send(self) -> Response {
        match self.try_send().await {
            Ok(response) => response,
            Err(message) => panic!("{message}"),
        }
    }

    /// Sends the request and reads the whole response, or returns what
    /// failed (connection refused, reset, timeout).
    pub async fn try_send(self) -> Result<Response, String> {
        let request_line = format!("{} {} to {}", self.method, self.path, self.address);
        match tokio::time::timeout(EXCHANGE_TIMEOUT, self.exchange()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(format!("{request_line} failed: {error}")),
            Err(_) => Err(format!(
                "{request_line} timed out after {EXCHANGE_TIMEOUT:?}"
            )),
        }
    }

    async fn exchange(self) -> Result<Response, String> {
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let io = TokioIo::new(stream);
        let (request, protocol) = self.into_request();

        let response = match protocol {
            Protocol::Http1 => {
                let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
            Protocol::Http2 => {
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
        }
        .map_err(|e| error_chain(&e))?;

        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the body: {}", error_chain(&e)))?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    fn into_request(self) -> (Request<RequestBody>, Protocol) {
        let uri = match self.protocol {
            Protocol::Http1 => self.path.clone(),
            Protocol::Http2 => format!("http://{}{}", self.address, self.path),
        };
        let mut builder = Request::builder().method(self.method).uri(uri);
        if self.protocol == Protocol::Http1 {
            builder = builder.header(header::HOST, self.address.to_string());
        }
        let mut headers = self.headers;
        let body = match self.body {
            BodyKind::Empty => Empty::new().boxed(),
            BodyKind::Full(bytes) => Full::new(bytes).boxed(),
            BodyKind::Chunked(chunks) => {
                let frames = chunks
                    .into_iter()
                    .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
                StreamBody::new(stream::iter(frames)).boxed()
            }
            BodyKind::Stalled { declared_length } => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(declared_length));
                StreamBody::new(stream::pending::<Result<Frame<Bytes>, Infallible>>()).boxed()
            }
        };
        let mut request = builder.body(body).expect("the request parts are valid");
        request.headers_mut().extend(headers);
        (request, self.protocol)
    }
}

fn record_authorization(value: &HeaderValue) {
    let Ok(text) = value.to_str() else { return };
    record_credential(text);
    if let Some((_, credential)) = text.split_once(' ') {
        record_credential(credential.trim());
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// Returns the header's value as text, if present and valid text: the
    /// first value when the header is repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON. Panics with the status and body when it is
    /// not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body from a {} response: {e}; body: {}",
                self.status,
                self.text()
            )
        })
    }

    /// Returns the `reason` of a problem details body, or `None` for another
    /// body.
    pub fn reason(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("reason")?.as_str().map(str::to_string)
    }
}

/// Writes `bytes` to `address` as they are and returns everything the
/// server sends until it closes the connection or `timeout` passes, for
/// requests that no HTTP client library would send. Panics when the bytes
/// cannot be written within `timeout`.
pub async fn send_raw(address: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let connect_and_write = async {
        let mut stream = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
        stream
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("writing to {address}: {e}"));
        stream
    };
    let mut stream = tokio::time::timeout(timeout, connect_and_write)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "writing {} bytes to {address} timed out after {timeout:?}",
                bytes.len()
            )
        });

    // Bytes read before the timeout stay in `received`.
    let mut received = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut received)).await;
    received
}
