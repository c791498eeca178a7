//! HTTP(S) GET for discovery documents and JWKS, and form POST for token
//! introspection, each with a timeout and a body size bound.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Documents larger than this are rejected.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub enum FetchError {
    TimedOut,
    Connect(String),
    Status(StatusCode),
    /// The body exceeded this many bytes.
    TooLarge {
        max_bytes: usize,
    },
    Body(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::TimedOut => write!(f, "request timed out"),
            FetchError::Connect(error) => write!(f, "request failed: {error}"),
            FetchError::Status(status) => write!(f, "unexpected status {status}"),
            FetchError::TooLarge { max_bytes } => write!(f, "body larger than {max_bytes} bytes"),
            FetchError::Body(error) => write!(f, "reading the body failed: {error}"),
        }
    }
}

/// A fetched document and the lifetime the server gave it
/// (`Cache-Control: max-age`), if any.
pub struct Document {
    pub body: Bytes,
    pub max_age: Option<Duration>,
}

#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// Sends requests with a body (introspection); same TLS settings.
    form_client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Fetcher {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match builder.with_native_roots() {
            Ok(builder) => builder.https_or_http().enable_http1().wrap_connector(http),
            Err(error) => {
                tracing::warn!(error = %error, "no system root certificates found; https issuers will fail");
                let roots = rustls::RootCertStore::empty();
                let tls = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http)
            }
        };
        Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector.clone()),
            form_client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// POSTs an `application/x-www-form-urlencoded` body and returns the
    /// body of a 200 response, read up to `max_bytes`. `authorization` is
    /// sent marked sensitive, so hyper never prints it.
    pub async fn post_form(
        &self,
        uri: &Uri,
        form: String,
        authorization: Option<HeaderValue>,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        let mut builder = Request::post(uri.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(mut value) = authorization {
            value.set_sensitive(true);
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(form)))
            .expect("a POST with a parsed URI and valid headers is a valid request");
        let work = async {
            let response = self
                .form_client
                .request(request)
                .await
                .map_err(|e| FetchError::Connect(error_chain(&e)))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status()));
            }
            read_limited(response.into_body(), max_bytes).await
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchError::TimedOut)?
    }

    pub async fn get(&self, uri: &Uri, timeout: Duration) -> Result<Document, FetchError> {
        let request = Request::get(uri.clone())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .expect("a GET with a parsed URI is a valid request");
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Connect(error_chain(&e)))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status()));
            }
            let max_age = response
                .headers()
                .get(header::CACHE_CONTROL)
                .and_then(|v| parse_max_age(v.to_str().ok()?));
            let body = read_limited(response.into_body(), MAX_DOCUMENT_BYTES).await?;
            Ok(Document { body, max_age })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchError::TimedOut)?
    }
}

async fn read_limited(body: hyper::body::Incoming, max_bytes: usize) -> Result<Bytes, FetchError> {
    let collected = Limited::new(body, max_bytes)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                FetchError::TooLarge { max_bytes }
            } else {
                FetchError::Body(error.to_string())
            }
        })?;
    Ok(collected.to_bytes())
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new()
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

/// Reads `max-age` from a Cache-Control value; `no-store` and `no-cache`
/// give zero (the configured minimum then applies).
pub fn parse_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            max_age = seconds
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("private"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
