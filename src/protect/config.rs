//! Configuration of the headers the gateway adds to and removes from
//! responses.

use http::{HeaderName, HeaderValue};

use crate::config::reader::{found, scalar_text, MapReader};

#[derive(Debug, Clone)]
pub struct ResponseHeadersConfig {
    /// `Strict-Transport-Security` value sent on TLS listeners. Default
    /// `max-age=31536000`; empty disables it.
    pub hsts: Option<HeaderValue>,
    /// Send `X-Content-Type-Options: nosniff`. Default true.
    pub nosniff: bool,
    /// Response headers removed before the response reaches the client.
    /// Default `server`, `x-powered-by`, `x-aspnet-version`,
    /// `x-aspnetmvc-version`.
    pub remove: Vec<HeaderName>,
    /// Extra headers set on every response (replacing the upstream's).
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl Default for ResponseHeadersConfig {
    fn default() -> Self {
        ResponseHeadersConfig {
            hsts: Some(HeaderValue::from_static("max-age=31536000")),
            nosniff: true,
            remove: [
                "server",
                "x-powered-by",
                "x-aspnet-version",
                "x-aspnetmvc-version",
            ]
            .into_iter()
            .map(HeaderName::from_static)
            .collect(),
            add: Vec::new(),
        }
    }
}

pub fn read(top: &MapReader) -> Option<ResponseHeadersConfig> {
    let mut config = ResponseHeadersConfig::default();
    let Some(map) = top.map("response_headers") else {
        return top.get("response_headers").is_none().then_some(config);
    };
    let mut ok = true;
    if let Some(text) = map.string("hsts") {
        config.hsts = match text.as_str() {
            "" => None,
            value => match HeaderValue::from_str(value) {
                Ok(value) => Some(value),
                Err(_) => {
                    let node = map.get("hsts").unwrap();
                    map.problems.at(
                        node,
                        &map.child_path("hsts"),
                        "expected a valid header value such as max-age=31536000",
                    );
                    ok = false;
                    None
                }
            },
        };
    }
    config.nosniff = map.bool("nosniff").unwrap_or(true);
    if let Some(items) = map.list("remove") {
        config.remove.clear();
        for (path, node) in items {
            match scalar_text(node).and_then(|t| HeaderName::from_bytes(t.as_bytes()).ok()) {
                Some(name) => config.remove.push(name),
                None => {
                    map.problems.at(
                        node,
                        &path,
                        format!("expected a header name, found {}", found(node)),
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(add) = map.map("add") {
        for (name, key, value) in add.named_entries() {
            let path = add.child_path(&name);
            let header = HeaderName::from_bytes(name.as_bytes());
            let text = scalar_text(value).map(HeaderValue::from_str);
            match (header, text) {
                (Ok(header), Some(Ok(value))) => config.add.push((header, value)),
                (Err(_), _) => {
                    add.problems.at(key, &path, "expected a valid header name");
                    ok = false;
                }
                _ => {
                    add.problems.at(
                        value,
                        &path,
                        format!("expected a header value, found {}", found(value)),
                    );
                    ok = false;
                }
            }
        }
    }
    map.finish();
    ok.then_some(config)
}
