//! The upstream side of the proxy: one pooled keep-alive client per
//! upstream, request rewriting onto the upstream URL, and the response
//! timeout.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::pipeline::body::Body;
use crate::proxy::config::UpstreamConfig;

/// The reason an upstream exchange failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, TLS failure).
    Connect(String),
    /// No response headers within the response timeout, or the connect
    /// timeout passed.
    Timeout,
    /// The connection broke or the upstream sent an invalid response.
    Protocol(String),
}

impl UpstreamError {
    /// Returns the metric label of this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Protocol(_) => "protocol",
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(cause) => write!(f, "connection failed: {cause}"),
            UpstreamError::Timeout => write!(f, "timed out"),
            UpstreamError::Protocol(cause) => write!(f, "exchange failed: {cause}"),
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

pub struct Upstreams {
    clients: HashMap<String, HttpClient>,
}

impl Upstreams {
    pub fn new(configs: &HashMap<String, Arc<UpstreamConfig>>) -> Self {
        let clients = configs
            .iter()
            .map(|(name, config)| (name.clone(), build_client(config)))
            .collect();
        Upstreams { clients }
    }

    /// Sends a request to `upstream` at the canonical `path` (plus the
    /// original query) and returns the response with a streaming body.
    pub async fn send(
        &self,
        upstream: &UpstreamConfig,
        mut parts: Parts,
        path: &str,
        body: Body,
    ) -> Result<Response<Body>, UpstreamError> {
        let client = &self.clients[&upstream.name];
        let client_authority = parts.uri.authority().cloned();
        parts.uri = upstream_uri(upstream, path, parts.uri.query())?;
        set_host(&mut parts, client_authority, upstream);
        parts.version = Version::HTTP_11;

        let request = Request::from_parts(parts, body);
        let response = tokio::time::timeout(upstream.response_timeout, client.request(request))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(classify)?;

        let (mut parts, body) = response.into_parts();
        crate::normalize::headers::remove_hop_by_hop(&mut parts.headers);
        let body = body
            .map_err(|e| Box::new(e) as crate::pipeline::body::BoxError)
            .boxed();
        Ok(Response::from_parts(parts, body))
    }
}

fn build_client(config: &UpstreamConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match builder.with_native_roots() {
        Ok(builder) => builder.https_or_http().enable_http1().wrap_connector(http),
        Err(_) => {
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        }
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.max_idle_connections)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

fn upstream_uri(
    upstream: &UpstreamConfig,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, UpstreamError> {
    let base = &upstream.url;
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let mut target = String::with_capacity(scheme.len() + authority.len() + path.len() + 16);
    target.push_str(scheme);
    target.push_str("://");
    target.push_str(authority);
    target.push_str(upstream.path_prefix());
    target.push_str(path);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    target
        .parse()
        .map_err(|_| UpstreamError::Protocol("the upstream URL could not be built".into()))
}

/// Keeps the client's `Host` (HTTP/2 carries it as `:authority`, passed in
/// as `client_authority` because the URI is already rewritten) or uses the
/// upstream's, as configured.
fn set_host(parts: &mut Parts, client_authority: Option<Authority>, upstream: &UpstreamConfig) {
    if upstream.preserve_host {
        if parts.headers.contains_key(header::HOST) {
            return;
        }
        if let Some(authority) =
            client_authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, authority);
            return;
        }
    }
    if let Some(authority) = upstream
        .url
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, authority);
    }
}

fn classify(error: hyper_util::client::legacy::Error) -> UpstreamError {
    let text = chain(&error);
    let timed_out = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut found = false;
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                found |= io.kind() == std::io::ErrorKind::TimedOut;
            }
            source = cause.source();
        }
        found
    };
    if timed_out {
        UpstreamError::Timeout
    } else if error.is_connect() {
        UpstreamError::Connect(text)
    } else {
        UpstreamError::Protocol(text)
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
